//! dom0's programs: static Linux binaries for `x86_64-unknown-linux-musl`, which dom0's kernel
//! runs in ring 3 (DESIGN.md §7): `xl`, and for the scenarios the test program `probe`.

use std::path::PathBuf;

use xenia_tests::Workspace;

use crate::host;

/// The target dom0's programs are built for.
pub const USER_TARGET: &str = "x86_64-unknown-linux-musl";

/// Builds `xl` (release, without debug information: it goes into the initrd, which dom0
/// holds in memory) and returns the binary's path.
pub fn build_xl(ws: &Workspace) -> Result<PathBuf, String> {
    build_program(ws, "xl", "xl")
}

/// Builds the test program `probe` (tests/programs/probe) the same way.
pub fn build_probe(ws: &Workspace) -> Result<PathBuf, String> {
    build_program(ws, "xenia-probe", "probe")
}

fn build_program(ws: &Workspace, package: &str, bin: &str) -> Result<PathBuf, String> {
    host::run(
        host::cargo(ws.root())
            .args([
                "build",
                "--quiet",
                "--release",
                "--package",
                package,
                "--bin",
                bin,
                "--target",
                USER_TARGET,
            ])
            // The workspace's release profile keeps debug information for the kernels'
            // call traces; xl's would make the initrd 20 MiB instead of 2.
            .env("CARGO_PROFILE_RELEASE_STRIP", "debuginfo"),
    )?;
    Ok(ws.target_dir().join(USER_TARGET).join("release").join(bin))
}
