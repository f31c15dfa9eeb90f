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
