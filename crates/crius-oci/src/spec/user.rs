//! The container's uid, gid and supplementary groups: from the security
//! context, else the image's `User`, with names resolved through the
//! container rootfs's /etc/passwd and /etc/group (never outside the rootfs).

use std::fs;
use std::io::Read;
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::{Component, Path, PathBuf};

use crius_cri_api::v1::{LinuxContainerSecurityContext, SupplementalGroupsPolicy};
use tracing::debug;

use crate::Error;

/// How many symlinks a path inside the rootfs may cross.
const MAX_SYMLINKS: usize = 40;
/// /etc/passwd and /etc/group bigger than this are not believed.
const MAX_ID_FILE: u64 = 16 << 20;

/// The process user the spec gets.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub(crate) struct ResolvedUser {
    pub uid: u32,
    pub gid: u32,
    pub additional_gids: Vec<u32>,
    /// Home directory from /etc/passwd, for $HOME.
    pub home: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct PasswdEntry {
    name: String,
    uid: u32,
    gid: u32,
    home: String,
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct GroupEntry {
    name: String,
    gid: u32,
    members: Vec<String>,
}

fn parse_passwd(text: &str) -> Vec<PasswdEntry> {
    text.lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .filter_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            if f.len() < 4 {
                return None;
            }
            Some(PasswdEntry {
                name: f[0].to_string(),
                uid: f[2].parse().ok()?,
                gid: f[3].parse().ok()?,
                home: f.get(5).copied().unwrap_or("").to_string(),
            })
        })
        .collect()
}

fn parse_group(text: &str) -> Vec<GroupEntry> {
    text.lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .filter_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            if f.len() < 3 {
                return None;
            }
            Some(GroupEntry {
                name: f[0].to_string(),
                gid: f[2].parse().ok()?,
                members: f
                    .get(3)
                    .map(|m| {
                        m.split(',')
                            .map(str::trim)
                            .filter(|s| !s.is_empty())
                            .map(String::from)
                            .collect()
                    })
                    .unwrap_or_default(),
            })
        })
        .collect()
}

/// Resolves `rel` (a path relative to the rootfs) inside `rootfs` the way
/// the container would see it: absolute symlinks and `..` stay inside the
/// rootfs. Returns the host path of the final component (not followed).
pub(crate) fn resolve_in_root(rootfs: &Path, rel: &str) -> Result<PathBuf, String> {
    let mut pending: Vec<String> = rel
        .split('/')
        .filter(|c| !c.is_empty())
        .rev()
        .map(String::from)
        .collect();
    let mut stack: Vec<String> = Vec::new();
    let mut links = 0usize;
    while let Some(comp) = pending.pop() {
        match comp.as_str() {
            "." => continue,
            ".." => {
                stack.pop();
                continue;
            }
            _ => {}
        }
        let mut host = rootfs.to_path_buf();
        host.extend(stack.iter());
        host.push(&comp);
        match fs::symlink_metadata(&host) {
            Ok(md) if md.file_type().is_symlink() => {
                links += 1;
                if links > MAX_SYMLINKS {
                    return Err("too many levels of symbolic links".to_string());
                }
                let target = fs::read_link(&host).map_err(|e| format!("readlink: {e}"))?;
                if target.is_absolute() {
                    stack.clear();
                }
                // Target components go in front of what is still pending.
                let mut t: Vec<String> = target
                    .components()
                    .filter_map(|c| match c {
                        Component::Normal(s) => Some(s.to_string_lossy().into_owned()),
                        Component::ParentDir => Some("..".to_string()),
                        _ => None,
                    })
                    .collect();
                t.reverse();
                pending.extend(t);
            }
            Ok(_) => stack.push(comp),
            // Missing components: the caller sees it when it opens the file.
            Err(_) => stack.push(comp),
        }
    }
    let mut host = rootfs.to_path_buf();
    host.extend(stack.iter());
    Ok(host)
}

/// Reads `rel` (like "etc/passwd") from the rootfs if it exists as a regular
/// file there; `Ok(None)` when it does not exist.
pub(crate) fn read_rootfs_file(rootfs: &Path, rel: &str) -> Result<Option<String>, Error> {
    let fail = |reason: String| Error::RootfsFile {
        rootfs: rootfs.to_path_buf(),
        file: format!("/{rel}"),
        reason,
    };
    let host = resolve_in_root(rootfs, rel).map_err(fail)?;
    debug!(path = %host.display(), "reading file of container rootfs");
    // O_NOFOLLOW: the last component was resolved above; a symlink swapped in
    // since then is refused, not followed.
    let file = match fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(&host)
    {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(fail(e.to_string())),
    };
    let md = file.metadata().map_err(|e| fail(e.to_string()))?;
    let ft = md.file_type();
    if !ft.is_file() || ft.is_fifo() || ft.is_socket() {
        return Err(fail("not a regular file".to_string()));
    }
    if md.len() > MAX_ID_FILE {
        return Err(fail(format!("larger than {MAX_ID_FILE} bytes")));
    }
    let mut text = String::new();
    file.take(MAX_ID_FILE)
        .read_to_string(&mut text)
        .map_err(|e| fail(e.to_string()))?;
    Ok(Some(text))
}

/// Lazily read /etc/passwd and /etc/group of one rootfs.
struct IdFiles<'a> {
    rootfs: &'a Path,
    passwd: Option<Vec<PasswdEntry>>,
    group: Option<Vec<GroupEntry>>,
}

impl<'a> IdFiles<'a> {
    fn new(rootfs: &'a Path) -> Self {
        IdFiles {
            rootfs,
            passwd: None,
            group: None,
        }
    }

    fn passwd(&mut self) -> Result<&[PasswdEntry], Error> {
        if self.passwd.is_none() {
            let text = read_rootfs_file(self.rootfs, "etc/passwd")?.unwrap_or_default();
            self.passwd = Some(parse_passwd(&text));
        }
        Ok(self.passwd.as_deref().unwrap_or_default())
    }

    fn group(&mut self) -> Result<&[GroupEntry], Error> {
        if self.group.is_none() {
            let text = read_rootfs_file(self.rootfs, "etc/group")?.unwrap_or_default();
            self.group = Some(parse_group(&text));
        }
        Ok(self.group.as_deref().unwrap_or_default())
    }

    fn user_by_name(&mut self, name: &str) -> Result<Option<PasswdEntry>, Error> {
        Ok(self.passwd()?.iter().find(|e| e.name == name).cloned())
    }

    fn user_by_uid(&mut self, uid: u32) -> Result<Option<PasswdEntry>, Error> {
        Ok(self.passwd()?.iter().find(|e| e.uid == uid).cloned())
    }

    fn group_by_name(&mut self, name: &str) -> Result<Option<u32>, Error> {
        Ok(self.group()?.iter().find(|e| e.name == name).map(|e| e.gid))
    }

    fn groups_of(&mut self, user: &str) -> Result<Vec<u32>, Error> {
        Ok(self
            .group()?
            .iter()
            .filter(|g| g.members.iter().any(|m| m == user))
            .map(|g| g.gid)
            .collect())
    }
}

fn id_from_i64(field: &str, v: i64) -> Result<u32, Error> {
    u32::try_from(v).map_err(|_| Error::InvalidUser {
        field: field.to_string(),
        value: v.to_string(),
        reason: "not in 0..=4294967295".to_string(),
    })
}

fn numeric(s: &str) -> Option<u32> {
    if s.is_empty() || !s.bytes().all(|c| c.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// Resolves the container's user. Order: `run_as_user`, else
/// `run_as_username`, else the image's `User` ("name", "uid", "uid:gid",
/// "name:group"); `run_as_group` overrides the group in every case.
/// Supplementary groups: the user's memberships in /etc/group (unless the
/// policy is Strict), then the context's `supplemental_groups`.
pub(crate) fn resolve_user(
    rootfs: &Path,
    image_user: &str,
    sc: Option<&LinuxContainerSecurityContext>,
    image_name: &str,
) -> Result<ResolvedUser, Error> {
    let mut files = IdFiles::new(rootfs);
    let not_found = |user: &str| Error::UserNotFound {
        user: user.to_string(),
        image: image_name.to_string(),
    };

    // (uid, gid if explicit, user name for group membership, home)
    let (uid, mut gid, name, home) = if let Some(v) = sc.and_then(|s| s.run_as_user.as_ref()) {
        let uid = id_from_i64("run_as_user", v.value)?;
        let entry = files.user_by_uid(uid)?;
        (
            uid,
            entry.as_ref().map(|e| e.gid),
            entry.as_ref().map(|e| e.name.clone()),
            entry.map(|e| e.home),
        )
    } else if let Some(name) = sc
        .map(|s| s.run_as_username.as_str())
        .filter(|s| !s.is_empty())
    {
        let entry = files.user_by_name(name)?.ok_or_else(|| not_found(name))?;
        (
            entry.uid,
            Some(entry.gid),
            Some(entry.name),
            Some(entry.home),
        )
    } else {
        let (user_part, group_part) = match image_user.split_once(':') {
            Some((u, g)) => (u, Some(g)),
            None => (image_user, None),
        };
        let (uid, gid, name, home) = if user_part.is_empty() {
            let entry = files.user_by_uid(0)?;
            (
                0,
                entry.as_ref().map(|e| e.gid),
                entry.as_ref().map(|e| e.name.clone()),
                entry.map(|e| e.home),
            )
        } else if let Some(uid) = numeric(user_part) {
            let entry = files.user_by_uid(uid)?;
            (
                uid,
                entry.as_ref().map(|e| e.gid),
                entry.as_ref().map(|e| e.name.clone()),
                entry.map(|e| e.home),
            )
        } else {
            let entry = files
                .user_by_name(user_part)?
                .ok_or_else(|| not_found(user_part))?;
            (
                entry.uid,
                Some(entry.gid),
                Some(entry.name),
                Some(entry.home),
            )
        };
        let gid = match group_part {
            None => gid,
            Some("") => {
                return Err(Error::InvalidUser {
                    field: "image user".to_string(),
                    value: image_user.to_string(),
                    reason: "empty group after ':'".to_string(),
                })
            }
            Some(g) => Some(match numeric(g) {
                Some(gid) => gid,
                None => files
                    .group_by_name(g)?
                    .ok_or_else(|| Error::GroupNotFound {
                        group: g.to_string(),
                        image: image_name.to_string(),
                    })?,
            }),
        };
        (uid, gid, name, home)
    };

    if let Some(g) = sc.and_then(|s| s.run_as_group.as_ref()) {
        gid = Some(id_from_i64("run_as_group", g.value)?);
    }
    let gid = gid.unwrap_or(0);

    let strict =
        sc.is_some_and(|s| s.supplemental_groups_policy == SupplementalGroupsPolicy::Strict as i32);
    let mut additional: Vec<u32> = Vec::new();
    if !strict {
        if let Some(name) = &name {
            for g in files.groups_of(name)? {
                if g != gid && !additional.contains(&g) {
                    additional.push(g);
                }
            }
        }
    }
    for g in sc.map(|s| s.supplemental_groups.as_slice()).unwrap_or(&[]) {
        let g = id_from_i64("supplemental_groups", *g)?;
        if !additional.contains(&g) {
            additional.push(g);
        }
    }
    Ok(ResolvedUser {
        uid,
        gid,
        additional_gids: additional,
        home: home.filter(|h| !h.is_empty()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crius_cri_api::v1::Int64Value;
    use std::os::unix::fs::symlink;

    const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\n\
        daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin\n\
        # comment\n\
        alice:x:1000:1000:Alice:/home/alice:/bin/sh\n\
        bob:x:1001:100::/home/bob:/bin/sh\n\
        broken line\n";
    const GROUP: &str = "root:x:0:\n\
        users:x:100:\n\
        alice:x:1000:\n\
        wheel:x:10:alice,bob\n\
        audio:x:29:bob\n";

    fn rootfs() -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        fs::create_dir_all(d.path().join("etc")).unwrap();
        fs::write(d.path().join("etc/passwd"), PASSWD).unwrap();
        fs::write(d.path().join("etc/group"), GROUP).unwrap();
        d
    }

    fn sc() -> LinuxContainerSecurityContext {
        LinuxContainerSecurityContext::default()
    }

    fn user(uid: u32, gid: u32, extra: &[u32], home: Option<&str>) -> ResolvedUser {
        ResolvedUser {
            uid,
            gid,
            additional_gids: extra.to_vec(),
            home: home.map(String::from),
        }
    }

    #[test]
    fn user_resolution_table() {
        let root = rootfs();
        let with = |f: &dyn Fn(&mut LinuxContainerSecurityContext)| {
            let mut s = sc();
            f(&mut s);
            s
        };
        let rows: Vec<(&str, Option<LinuxContainerSecurityContext>, ResolvedUser)> = vec![
            ("", None, user(0, 0, &[], Some("/root"))),
            ("alice", None, user(1000, 1000, &[10], Some("/home/alice"))),
            ("1001", None, user(1001, 100, &[10, 29], Some("/home/bob"))),
            ("1001:29", None, user(1001, 29, &[10], Some("/home/bob"))),
            (
                "alice:users",
                None,
                user(1000, 100, &[10], Some("/home/alice")),
            ),
            ("4242", None, user(4242, 0, &[], None)),
            ("4242:7", None, user(4242, 7, &[], None)),
            (
                "alice",
                Some(with(&|s| s.run_as_user = Some(Int64Value { value: 1001 }))),
                user(1001, 100, &[10, 29], Some("/home/bob")),
            ),
            (
                "",
                Some(with(&|s| s.run_as_username = "alice".into())),
                user(1000, 1000, &[10], Some("/home/alice")),
            ),
            (
                "alice",
                Some(with(&|s| s.run_as_group = Some(Int64Value { value: 5 }))),
                user(1000, 5, &[10], Some("/home/alice")),
            ),
            (
                "",
                Some(with(&|s| {
                    s.run_as_user = Some(Int64Value { value: 1000 });
                    s.supplemental_groups = vec![4000, 10];
                })),
                user(1000, 1000, &[10, 4000], Some("/home/alice")),
            ),
            (
                "bob",
                Some(with(&|s| {
                    s.supplemental_groups_policy = SupplementalGroupsPolicy::Strict as i32;
                    s.supplemental_groups = vec![4000];
                })),
                user(1001, 100, &[4000], Some("/home/bob")),
            ),
        ];
        for (image_user, sc, want) in rows {
            let got = resolve_user(root.path(), image_user, sc.as_ref(), "busybox").unwrap();
            assert_eq!(got, want, "image user {image_user:?}, sc {sc:?}");
        }
    }

    #[test]
    fn unknown_names_are_errors_naming_user_and_image() {
        let root = rootfs();
        let err = resolve_user(root.path(), "nobody2", None, "busybox")
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "user \"nobody2\" not found in /etc/passwd of image busybox"
        );
        let err = resolve_user(root.path(), "alice:nogroup", None, "busybox")
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "group \"nogroup\" not found in /etc/group of image busybox"
        );
        let mut s = sc();
        s.run_as_username = "carol".into();
        assert!(matches!(
            resolve_user(root.path(), "", Some(&s), "img"),
            Err(Error::UserNotFound { .. })
        ));
        s.run_as_username.clear();
        s.run_as_user = Some(Int64Value { value: -1 });
        assert!(matches!(
            resolve_user(root.path(), "", Some(&s), "img"),
            Err(Error::InvalidUser { .. })
        ));
        assert!(resolve_user(root.path(), "alice:", None, "img").is_err());
    }

    #[test]
    fn missing_passwd_means_numeric_only() {
        let d = tempfile::tempdir().unwrap();
        assert_eq!(
            resolve_user(d.path(), "", None, "img").unwrap(),
            user(0, 0, &[], None)
        );
        assert_eq!(
            resolve_user(d.path(), "12:34", None, "img").unwrap(),
            user(12, 34, &[], None)
        );
        assert!(resolve_user(d.path(), "alice", None, "img").is_err());
    }

    #[test]
    fn symlinks_cannot_leave_the_rootfs() {
        // Outside the rootfs lives a passwd with a user the image lacks.
        let outside = tempfile::tempdir().unwrap();
        fs::write(outside.path().join("passwd"), "evil:x:7:7::/:/bin/sh\n").unwrap();
        let root = tempfile::tempdir().unwrap();
        fs::create_dir_all(root.path().join("etc")).unwrap();
        // Absolute link: resolved inside the rootfs, where it is missing.
        symlink(
            outside.path().join("passwd"),
            root.path().join("etc/passwd"),
        )
        .unwrap();
        assert!(matches!(
            resolve_user(root.path(), "evil", None, "img"),
            Err(Error::UserNotFound { .. })
        ));
        // Relative link climbing out: clamped at the rootfs.
        fs::remove_file(root.path().join("etc/passwd")).unwrap();
        let ups = "../".repeat(20);
        let rel = format!("{ups}{}", outside.path().join("passwd").display());
        symlink(&rel, root.path().join("etc/passwd")).unwrap();
        assert!(matches!(
            resolve_user(root.path(), "evil", None, "img"),
            Err(Error::UserNotFound { .. })
        ));
        // A link that stays inside works.
        fs::remove_file(root.path().join("etc/passwd")).unwrap();
        fs::create_dir_all(root.path().join("usr/share")).unwrap();
        fs::write(
            root.path().join("usr/share/passwd"),
            "svc:x:55:56::/srv:/bin/sh\n",
        )
        .unwrap();
        symlink("/usr/share/passwd", root.path().join("etc/passwd")).unwrap();
        assert_eq!(
            resolve_user(root.path(), "svc", None, "img").unwrap(),
            user(55, 56, &[], Some("/srv"))
        );
        // A directory in place of the file is refused.
        fs::remove_file(root.path().join("etc/passwd")).unwrap();
        fs::create_dir(root.path().join("etc/passwd")).unwrap();
        assert!(matches!(
            resolve_user(root.path(), "svc", None, "img"),
            Err(Error::RootfsFile { .. })
        ));
    }

    #[test]
    fn resolve_in_root_table() {
        let root = tempfile::tempdir().unwrap();
        let r = root.path();
        fs::create_dir_all(r.join("a/b")).unwrap();
        symlink("/a", r.join("abs")).unwrap();
        symlink("../../../..", r.join("a/up")).unwrap();
        symlink("loop", r.join("loop")).unwrap();
        assert_eq!(resolve_in_root(r, "a/b/c").unwrap(), r.join("a/b/c"));
        assert_eq!(resolve_in_root(r, "abs/b").unwrap(), r.join("a/b"));
        assert_eq!(resolve_in_root(r, "a/up/etc/x").unwrap(), r.join("etc/x"));
        assert_eq!(resolve_in_root(r, "../../etc").unwrap(), r.join("etc"));
        assert!(resolve_in_root(r, "loop/x").is_err());
    }
}
