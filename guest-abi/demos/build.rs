//! Links the demo kernels (`echo`, `compute`) with the runtime's linker script
//! (guest-abi/rt/linker.ld). Host builds (the workspace's `cargo test`) need nothing: there
//! both are empty programs.

fn main() {
    let manifest = std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    let script = std::path::Path::new(&manifest).join("../rt/linker.ld");
    println!("cargo:rerun-if-changed={}", script.display());
    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("none") {
        println!("cargo:rustc-link-arg-bins=-T{}", script.display());
        // A kernel runs where it is linked: a plain static executable, not a PIE that would
        // need relocating first.
        println!("cargo:rustc-link-arg-bins=--no-pie");
        println!("cargo:rustc-link-arg-bins=-zmax-page-size=4096");
    }
}
