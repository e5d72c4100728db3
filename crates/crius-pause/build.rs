//! Links `crius-pause` statically.
//!
//! The pause image holds nothing but this binary, so it cannot rely on a
//! dynamic loader or a libc inside the container. Stable Rust offers
//! `-C target-feature=+crt-static` only through global RUSTFLAGS, which would
//! change every crate of the workspace. Instead this script:
//!
//! * asks the linker for a static PIE (`-static-pie`, glibc's `rcrt1.o`), which
//!   fits the position-independent code rustc already emits for the host;
//! * shadows the libraries std names on the link line (`-lc`, `-lgcc_s`, ...)
//!   with a directory holding their static archives, searched before the
//!   system directories, so the linker never picks a shared object.
//!
//! When a static archive is missing (no libc6-dev) the binary stays dynamic
//! and the build prints a warning; `file` then shows it.

use std::path::{Path, PathBuf};
use std::process::Command;

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

fn shadow_dir(out: &Path, cc: &str) -> Result<(), String> {
    std::fs::create_dir_all(out).map_err(|e| format!("{}: {e}", out.display()))?;
    for lib in ["c", "m", "dl", "rt", "pthread", "util"] {
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

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    let os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    let env = std::env::var("CARGO_CFG_TARGET_ENV").unwrap_or_default();
    if os != "linux" || env != "gnu" {
        return;
    }
    let Some(out_dir) = std::env::var_os("OUT_DIR") else {
        return;
    };
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".to_string());
    let dir = PathBuf::from(out_dir).join("static-libs");
    match shadow_dir(&dir, &cc) {
        Ok(()) => {
            println!("cargo:rustc-link-arg-bins=-L{}", dir.display());
            println!("cargo:rustc-link-arg-bins=-static-pie");
            // it becomes the only file of an image: no symbols in release builds
            if std::env::var("PROFILE").as_deref() == Ok("release") {
                println!("cargo:rustc-link-arg-bins=-Wl,--strip-all");
            }
        }
        Err(e) => println!("cargo:warning=crius-pause will be dynamically linked: {e}"),
    }
}
