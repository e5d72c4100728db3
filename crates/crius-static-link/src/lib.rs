//! Links a package's binaries statically, from its build script.
//!
//! Two binaries want no dynamic loader: `crius-pause`, the only file of the
//! pause image (no libc inside the container), and `crius-runtime`, which
//! is started three or four times per container, where the loader's symbol
//! lookups and relocations are a quarter of its start-up. Stable Rust offers
//! `-C target-feature=+crt-static` only through global RUSTFLAGS, which would
//! change every crate of the workspace (and break its proc macros). Instead:
//!
//! * the linker is asked for a static PIE (`-static-pie`, glibc's `rcrt1.o`),
//!   which fits the position-independent code rustc already emits for the host,
//!   or for a static executable at a fixed address (`-static -no-pie`), which
//!   skips even the start-up self-relocation (13,000 relative relocations in
//!   `crius-runtime`: 0.1-0.3 ms of each of its starts, measured);
//! * the libraries on the link line (`-lc`, `-lgcc_s`, `-lseccomp`, ...) are
//!   shadowed by a directory holding their static archives, searched before
//!   the system directories, so the linker never picks a shared object.
//!
//! When a static archive is missing (no libc6-dev, say) the binaries stay
//! dynamic and the build prints a warning; `file` then shows it.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The libraries std links on glibc targets, as static archives.
const STD_LIBS: &[&str] = &["c", "m", "dl", "rt", "pthread", "util"];

/// What a package asks of [`link_bins_statically`].
#[derive(Debug, Default)]
pub struct Options<'a> {
    /// Native libraries the package links besides std's (`"seccomp"`).
    pub extra_libs: &'a [&'a str],
    /// Strip symbols from release builds.
    pub strip_release: bool,
    /// A static PIE (loaded at a random address) rather than a static
    /// executable at a fixed one.
    pub pie: bool,
}

/// Absolute path of a file the C compiler would link, if it has one.
fn compiler_file(cc: &str, name: &str) -> Option<PathBuf> {
    let out = Command::new(cc)
        .arg(format!("-print-file-name={name}"))
        .output()
        .ok()?;
    let path = PathBuf::from(String::from_utf8(out.stdout).ok()?.trim());
    if path.is_absolute() && path.exists() {
        path.canonicalize().ok()
    } else {
        None
    }
}

fn shadow_dir(out: &Path, cc: &str, extra: &[&str]) -> Result<(), String> {
    std::fs::create_dir_all(out).map_err(|e| format!("{}: {e}", out.display()))?;
    for lib in STD_LIBS.iter().chain(extra) {
        let name = format!("lib{lib}.a");
        let src = compiler_file(cc, &name).ok_or_else(|| format!("{name} not found"))?;
        let dst = out.join(&name);
        let _ = std::fs::remove_file(&dst);
        std::os::unix::fs::symlink(&src, &dst).map_err(|e| format!("{}: {e}", dst.display()))?;
    }
    // std asks for -lgcc_s (unwinder); its static counterparts are libgcc_eh + libgcc.
    let eh = compiler_file(cc, "libgcc_eh.a").ok_or("libgcc_eh.a not found")?;
    let gcc = compiler_file(cc, "libgcc.a").ok_or("libgcc.a not found")?;
    let script = format!("GROUP ( {} {} )\n", eh.display(), gcc.display());
    let dst = out.join("libgcc_s.a");
    std::fs::write(&dst, script).map_err(|e| format!("{}: {e}", dst.display()))?;
    Ok(())
}

/// Called from a build script: makes the package's binaries static on
/// linux-gnu targets (other targets are left alone).
pub fn link_bins_statically(opts: &Options) {
    println!("cargo:rerun-if-changed=build.rs");
    let os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    let env = std::env::var("CARGO_CFG_TARGET_ENV").unwrap_or_default();
    if os != "linux" || env != "gnu" {
        return;
    }
    let Some(out_dir) = std::env::var_os("OUT_DIR") else {
        return;
    };
    let package = std::env::var("CARGO_PKG_NAME").unwrap_or_default();
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".to_string());
    let dir = PathBuf::from(out_dir).join("static-libs");
    match shadow_dir(&dir, &cc, opts.extra_libs) {
        Ok(()) => {
            println!("cargo:rustc-link-arg-bins=-L{}", dir.display());
            if opts.pie {
                println!("cargo:rustc-link-arg-bins=-static-pie");
            } else {
                println!("cargo:rustc-link-arg-bins=-static");
                println!("cargo:rustc-link-arg-bins=-no-pie");
            }
            if opts.strip_release && std::env::var("PROFILE").as_deref() == Ok("release") {
                println!("cargo:rustc-link-arg-bins=-Wl,--strip-all");
            }
        }
        Err(e) => println!("cargo:warning={package} will be dynamically linked: {e}"),
    }
}
