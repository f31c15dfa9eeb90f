//! Links `bench-pv` with the test guests' shared linker script (xenia-guest-rt's
//! linker.ld). Host builds (the workspace's `cargo test`) need nothing.

fn main() {
    let manifest = std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    let script = std::path::Path::new(&manifest).join("../../../guest-abi/rt/linker.ld");
    println!("cargo:rerun-if-changed={}", script.display());
    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("none") {
        println!("cargo:rustc-link-arg-bin=bench-pv=-T{}", script.display());
        // A kernel runs where it is linked: a plain static executable, not a PIE.
        println!("cargo:rustc-link-arg-bin=bench-pv=--no-pie");
        println!("cargo:rustc-link-arg-bin=bench-pv=-zmax-page-size=4096");
    }
}
