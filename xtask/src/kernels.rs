//! The bare-metal kernels: built for `x86_64-unknown-none` and copied into `target/xenia/`.

use std::fs;

use xenia_tests::{CHECKED_HYPERVISOR_ARTIFACT, DOM0_ARTIFACT, HYPERVISOR_ARTIFACT, Workspace};

use crate::host;

/// The target the kernels are built for.
pub const KERNEL_TARGET: &str = "x86_64-unknown-none";

/// A bare-metal kernel: which binary of which package, and its file name in `target/xenia/`.
pub struct Kernel {
    /// What the progress line calls it (`building <label>...`).
    pub label: &'static str,
    /// Cargo package.
    pub package: &'static str,
    /// Binary target in that package.
    pub bin: &'static str,
    /// File name in `target/xenia/`.
    pub artifact: &'static str,
}

/// Every bare-metal kernel, one line each (guest kernels and test guests go here too, e.g.
/// `Kernel { label: "hello guest", package: "xenia-hello", bin: "hello", artifact: "hello.elf" }`).
pub const KERNELS: &[Kernel] = &[
    Kernel {
        label: "hypervisor",
        package: "xenia-hypervisor",
        bin: "xenia",
        artifact: HYPERVISOR_ARTIFACT,
    },
    Kernel {
        label: "dom0 kernel",
        package: "xenia-dom0",
        bin: "dom0",
        artifact: DOM0_ARTIFACT,
    },
    Kernel {
        label: "echo demo guest",
        package: "xenia-demos",
        bin: "echo",
        artifact: "echo.elf",
    },
    Kernel {
        label: "compute demo guest",
        package: "xenia-demos",
        bin: "compute",
        artifact: "compute.elf",
    },
    Kernel {
        label: "kv demo guest",
        package: "xenia-demos",
        bin: "kv",
        artifact: "kv.elf",
    },
    Kernel {
        label: "web demo guest",
        package: "xenia-demos",
        bin: "web",
        artifact: "web.elf",
    },
    Kernel {
        label: "example guest",
        package: "xenia-hello",
        bin: "hello",
        artifact: "hello.elf",
    },
    Kernel {
        label: "test guest",
        package: "xenia-testguest",
        bin: "testguest",
        artifact: "testguest.elf",
    },
    Kernel {
        label: "Xen PV test kernel",
        package: "xenia-xenpv-test",
        bin: "xenpv",
        artifact: "xenpv.elf",
    },
    Kernel {
        label: "attack guest",
        package: "xenia-attacks",
        bin: "attacks",
        artifact: "attacks.elf",
    },
    Kernel {
        label: "test dom0",
        package: "xenia-dom0test",
        bin: "dom0test",
        artifact: "dom0test.elf",
    },
    Kernel {
        label: "benchmark kernel (pv)",
        package: "xenia-bench",
        bin: "bench-pv",
        artifact: xenia_tests::benchk::PV_ARTIFACT,
    },
    Kernel {
        label: "benchmark kernel (native)",
        package: "xenia-bench-native",
        bin: "bench-native",
        artifact: xenia_tests::benchk::NATIVE_ARTIFACT,
    },
];

/// Builds `kernel` (release profile if `release`, else dev) and copies it into `target/xenia/`.
pub fn build(ws: &Workspace, kernel: &Kernel, release: bool) -> Result<(), String> {
    let mut cargo = host::cargo(ws.root());
    cargo.args([
        "build",
        "--quiet",
        "--package",
        kernel.package,
        "--bin",
        kernel.bin,
        "--target",
        KERNEL_TARGET,
    ]);
    if release {
        cargo.arg("--release");
    }
    host::run(&mut cargo)?;
    let built = ws
        .target_dir()
        .join(KERNEL_TARGET)
        .join(if release { "release" } else { "debug" })
        .join(kernel.bin);
    let artifact = ws.artifact(kernel.artifact);
    fs::create_dir_all(ws.artifact_dir())
        .map_err(|e| format!("cannot create {}: {e}", ws.artifact_dir().display()))?;
    fs::copy(&built, &artifact).map_err(|e| {
        format!(
            "cannot copy {} to {}: {e}",
            built.display(),
            artifact.display()
        )
    })?;
    Ok(())
}

/// The hypervisor again, in the `checked` profile (release speed, debug assertions and the
/// lock-order checks on), as [`CHECKED_HYPERVISOR_ARTIFACT`].
pub fn build_checked_hypervisor(ws: &Workspace) -> Result<(), String> {
    let mut cargo = host::cargo(ws.root());
    cargo.args([
        "build",
        "--quiet",
        "--package",
        "xenia-hypervisor",
        "--bin",
        "xenia",
        "--target",
        KERNEL_TARGET,
        "--profile",
        "checked",
    ]);
    host::run(&mut cargo)?;
    let built = ws
        .target_dir()
        .join(KERNEL_TARGET)
        .join("checked")
        .join("xenia");
    let artifact = ws.artifact(CHECKED_HYPERVISOR_ARTIFACT);
    fs::copy(&built, &artifact).map_err(|e| {
        format!(
            "cannot copy {} to {}: {e}",
            built.display(),
            artifact.display()
        )
    })?;
    Ok(())
}
