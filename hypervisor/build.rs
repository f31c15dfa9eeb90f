//! Links the bare-metal hypervisor with Xenia's linker script (boot/linker.ld).
//! Host builds (unit tests) need nothing.

fn main() {
    let target_os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    let manifest = std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    let boot = std::path::Path::new(&manifest).join("../boot");
    println!(
        "cargo:rerun-if-changed={}",
        boot.join("linker.ld").display()
    );
    println!("cargo:rerun-if-changed={}", boot.join("entry.s").display());
    build_info(&manifest);
    if target_os == "none" {
        println!(
            "cargo:rustc-link-arg-bin=xenia=-T{}",
            boot.join("linker.ld").display()
        );
        // The image runs at the addresses it was linked at, so it is linked as a plain
        // static executable: the 32-bit entry uses absolute addresses, which a PIE forbids.
        println!("cargo:rustc-link-arg-bin=xenia=--no-pie");
        println!("cargo:rustc-link-arg-bin=xenia=-zmax-page-size=4096");
        println!("cargo:rustc-link-arg-bin=xenia=--gc-sections");
    }
}

/// What `xen_version` reports of the build (`XENVER_compile_info`, `XENVER_changeset`; `xl
/// info`'s `cc_*` and `xen_changeset` lines), as Xen records its own: the compiler, who
/// built it where and when, and the commit. Whatever cannot be learnt is `unavailable`.
fn build_info(manifest: &str) {
    use std::process::Command;
    let run = |program: &str, args: &[&str]| -> Option<String> {
        let out = Command::new(program).args(args).output().ok()?;
        let text = String::from_utf8(out.stdout).ok()?;
        let text = text.trim();
        (out.status.success() && !text.is_empty()).then(|| text.to_string())
    };
    let unavailable = || String::from("unavailable");
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let compiler = run(&rustc, &["--version"]).unwrap_or_else(unavailable);
    let by = std::env::var("USER")
        .ok()
        .filter(|u| !u.is_empty())
        .or_else(|| run("id", &["-un"]))
        .unwrap_or_else(unavailable);
    let domain = run("hostname", &[]).unwrap_or_else(unavailable);
    let date = run("date", &["-u", "+%a %b %e %H:%M:%S UTC %Y"]).unwrap_or_else(unavailable);
    let root = std::path::Path::new(manifest).join("..");
    let git = |args: &[&str]| {
        let mut all = vec!["-C", root.to_str().unwrap_or(".")];
        all.extend_from_slice(args);
        run("git", &all)
    };
    let changeset =
        git(&["log", "-1", "--format=%cd git:%h", "--date=local"]).unwrap_or_else(unavailable);
    for (key, value) in [
        ("XENIA_CC_COMPILER", compiler),
        ("XENIA_CC_COMPILE_BY", by),
        ("XENIA_CC_COMPILE_DOMAIN", domain),
        ("XENIA_CC_COMPILE_DATE", date),
        ("XENIA_CHANGESET", changeset),
    ] {
        println!("cargo:rustc-env={key}={value}");
    }
    // A new commit changes the changeset: the branch's ref (or HEAD itself, detached). Only
    // files that exist: cargo reruns a build script whose watched file is missing every time.
    let git_dir = root.join(".git");
    let mut watched = vec![git_dir.join("HEAD"), git_dir.join("packed-refs")];
    if let Some(head) = git(&["symbolic-ref", "-q", "HEAD"]) {
        watched.push(git_dir.join(head));
    }
    for path in watched.iter().filter(|p| p.is_file()) {
        println!("cargo:rerun-if-changed={}", path.display());
    }
}
