//! Links `xenpv` with its own linker script (`linker.ld`, beside this file). Host builds (the
//! workspace's `cargo test`) need nothing.

fn main() {
    let manifest = std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    let script = std::path::Path::new(&manifest).join("linker.ld");
    println!("cargo:rerun-if-changed={}", script.display());
    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("none") {
        println!("cargo:rustc-link-arg-bin=xenpv=-T{}", script.display());
        println!("cargo:rustc-link-arg-bin=xenpv=--no-pie");
        println!("cargo:rustc-link-arg-bin=xenpv=-zmax-page-size=4096");
    }
}
