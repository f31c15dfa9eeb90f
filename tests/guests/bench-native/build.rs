//! Links `bench-native` with its own linker script (`linker.ld`: one identity-mapped image at
//! 2 MiB). Host builds (the workspace's `cargo test`) need nothing.

fn main() {
    let manifest = std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    let dir = std::path::Path::new(&manifest);
    let script = dir.join("linker.ld");
    println!("cargo:rerun-if-changed={}", script.display());
    println!(
        "cargo:rerun-if-changed={}",
        dir.join("src/boot.s").display()
    );
    println!(
        "cargo:rerun-if-changed={}",
        dir.join("../bench/bodies/user.s").display()
    );
    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("none") {
        println!(
            "cargo:rustc-link-arg-bin=bench-native=-T{}",
            script.display()
        );
        // The kernel runs where it is linked (the 32-bit entry uses absolute addresses):
        // a plain static executable, not a PIE.
        println!("cargo:rustc-link-arg-bin=bench-native=--no-pie");
        println!("cargo:rustc-link-arg-bin=bench-native=-zmax-page-size=4096");
    }
}
