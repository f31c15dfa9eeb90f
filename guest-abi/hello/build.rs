//! Links the `hello` kernel with the guest runtime's linker script (guest-abi/rt/linker.ld).
//! Host builds (the workspace's `cargo test`) need nothing: there `hello` is an empty program.

fn main() {
    let manifest = std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    let script = std::path::Path::new(&manifest).join("../rt/linker.ld");
    println!("cargo:rerun-if-changed={}", script.display());
    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("none") {
        println!("cargo:rustc-link-arg-bin=hello=-T{}", script.display());
        // A kernel runs where it is linked: a plain static executable, not a PIE that would
        // need relocating first.
        println!("cargo:rustc-link-arg-bin=hello=--no-pie");
        println!("cargo:rustc-link-arg-bin=hello=-zmax-page-size=4096");
    }
}
