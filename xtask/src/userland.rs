//! dom0's programs: static Linux binaries for `x86_64-unknown-linux-musl`, which dom0's kernel
//! runs in ring 3 (DESIGN.md §7): `xl`, `xen-hptool`, `xentop` and `xenstore`, and for the scenarios the test
//! program `probe` and the peer benchmark `peerbench` (which `cargo xtask bench --peer xen`
//! also runs under Linux and Xen).

use std::path::PathBuf;

use xenia_tests::Workspace;

use crate::host;

/// The target dom0's programs are built for.
pub const USER_TARGET: &str = "x86_64-unknown-linux-musl";

/// Builds dom0's programs, the `xl` package's binaries `xl`, `xen-hptool` and `xentop` (release,
/// optimized for size, without debug information: they go into the initrd, which dom0
/// holds in memory and copies from at each exec), and
/// returns the directory that holds them.
pub fn build_programs(ws: &Workspace) -> Result<PathBuf, String> {
    build_program(ws, "xl", &["xl", "xen-hptool", "xentop"])?;
    build_program(ws, "xenstore-cli", &["xenstore"])?;
    Ok(bin_dir(ws))
}

/// Builds the scenarios' programs the same way, the test program `probe`
/// (tests/programs/probe) and the peer benchmark `peerbench` (tests/programs/peerbench),
/// and returns their paths.
pub fn build_test_programs(ws: &Workspace) -> Result<Vec<PathBuf>, String> {
    build_program(ws, "xenia-probe", &["probe"])?;
    Ok(vec![bin_dir(ws).join("probe"), build_peerbench(ws)?])
}

/// Builds `peerbench` (tests/programs/peerbench) and returns its path: the one binary the
/// peer bench runs in every environment.
pub fn build_peerbench(ws: &Workspace) -> Result<PathBuf, String> {
    build_program(ws, "xenia-peerbench", &["peerbench"])?;
    Ok(bin_dir(ws).join("peerbench"))
}

/// Builds `linuxbench` (tests/programs/linuxbench, issue 18's benchmark program) and returns
/// its path: it goes into the initramfs of Debian's Linux (`/bin/linuxbench`, see
/// [`crate::debian`]), which `cargo xtask bench --only linux` boots natively and as a domU.
/// Its musl build is `no_std` (so that it stays small: it rides in dom0's memory twice), which
/// needs `panic = "abort"`; symbols are stripped too (39 KB; with `std` it was 560 KB).
pub fn build_linuxbench(ws: &Workspace) -> Result<PathBuf, String> {
    host::run(
        host::cargo(ws.root())
            .args([
                "build",
                "--quiet",
                "--release",
                "--package",
                "xenia-linuxbench",
                "--bin",
                "linuxbench",
                "--target",
                USER_TARGET,
            ])
            .env("CARGO_PROFILE_RELEASE_PANIC", "abort")
            .env("CARGO_PROFILE_RELEASE_STRIP", "symbols")
            .env("CARGO_PROFILE_RELEASE_OPT_LEVEL", "s")
            .env("CARGO_PROFILE_RELEASE_CODEGEN_UNITS", "1"),
    )?;
    Ok(bin_dir(ws).join("linuxbench"))
}

/// Where the programs are built.
fn bin_dir(ws: &Workspace) -> PathBuf {
    ws.target_dir().join(USER_TARGET).join("release")
}

fn build_program(ws: &Workspace, package: &str, bins: &[&str]) -> Result<(), String> {
    let mut args = vec!["build", "--quiet", "--release", "--package", package];
    for bin in bins {
        args.extend(["--bin", bin]);
    }
    args.extend(["--target", USER_TARGET]);
    host::run(
        host::cargo(ws.root())
            .args(args)
            // The workspace's release profile keeps debug information for the kernels'
            // call traces; xl's would make the initrd 20 MiB instead of 2.
            .env("CARGO_PROFILE_RELEASE_STRIP", "debuginfo")
            // Small rather than fast: dom0 maps and fills every page of a program at each
            // exec, which costs more than the code's speed gains (issue 13's creation time).
            // Only these programs' build sees it. (With fat LTO as well, `xl create` once
            // jumped to address 0, in dom0 as on Linux: a call to musl's `getrandom`, which LTO
            // had left unlinked; `dom0-tools/xl/src/sys.rs` makes the system call instead.)
            .env("CARGO_PROFILE_RELEASE_OPT_LEVEL", "s")
            .env("CARGO_PROFILE_RELEASE_CODEGEN_UNITS", "1"),
    )
}
