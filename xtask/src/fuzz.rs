//! `cargo xtask fuzz [TARGET] [--time S] [--seed N] [--replay FILE]`: the fuzz targets of
//! `hypervisor/fuzz` (crate `xenia-fuzz`), built with the `fuzz` profile (release speed, with
//! overflow checks and debug assertions on) and run one after another, each for `--time`
//! seconds on one thread.
//!
//! # The engine, and why
//!
//! cargo-fuzz needs a nightly toolchain (`-Z sanitizer=fuzzer`), and this project's machines
//! run the one stable toolchain `rust-toolchain.toml` pins and cannot fetch another. `cargo
//! afl` needs the AFL++ runtime and an LLVM plugin built on the machine; bolero's engines are
//! libFuzzer, AFL and honggfuzz again, and its stable mode is a random driver without coverage.
//! So `xenia-fuzz` carries its own small engine (`hypervisor/fuzz/src/engine.rs`): seeded
//! xoshiro256** random bytes and byte-level mutations of a per-target seed corpus, decoded by
//! each target into a well-formed operation sequence or a structured file it then damages,
//! with every invariant checked after every operation. It has no coverage feedback; what it
//! has is structure and throughput. A failure is minimised and written to
//! `target/fuzz/crashes/<target>/`, with the `--replay` command that reproduces it
//! (`XENIA_FUZZ_TRACE=1` prints the operations).
//!
//! `cargo xtask test` runs every target for [`CI_SECONDS`] seconds before the QEMU scenarios.

use std::path::Path;

use crate::host;

/// Seconds each target runs in `cargo xtask test`: 9 targets, about a minute in all.
pub const CI_SECONDS: u32 = 7;

/// The fuzzer binary built with the `fuzz` profile.
fn binary(root: &Path) -> std::path::PathBuf {
    root.join("target/fuzz/xenia-fuzz")
}

/// Builds `xenia-fuzz` with the `fuzz` profile.
pub fn build(root: &Path) -> Result<(), String> {
    host::run(host::cargo(root).args([
        "build",
        "--quiet",
        "--profile",
        "fuzz",
        "--package",
        "xenia-fuzz",
    ]))
}

/// The names of every target, from the binary itself.
fn targets(root: &Path) -> Result<Vec<String>, String> {
    let out = std::process::Command::new(binary(root))
        .arg("list")
        .output()
        .map_err(|e| format!("cannot run xenia-fuzz: {e}"))?;
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next().map(str::to_string))
        .collect())
}

/// Runs `target` (every target if `None`) for `seconds` each from `seed`; fails at the first
/// target that finds a failure, after running the rest. With `replay`, replays that input.
pub fn run(
    root: &Path,
    target: Option<&str>,
    seconds: f64,
    seed: u64,
    replay: Option<&Path>,
) -> Result<(), String> {
    build(root)?;
    let all = targets(root)?;
    let chosen: Vec<String> = match target {
        Some(t) if all.iter().any(|a| a == t) => vec![t.to_string()],
        Some(t) => return Err(format!("no fuzz target {t}; targets: {}", all.join(", "))),
        None => all,
    };
    if let Some(file) = replay {
        let [t] = chosen.as_slice() else {
            return Err("--replay needs a target".to_string());
        };
        return host::run(
            std::process::Command::new(binary(root))
                .current_dir(root)
                .args(["replay", t])
                .arg(file),
        );
    }
    let mut failed = Vec::new();
    for t in &chosen {
        let status = std::process::Command::new(binary(root))
            .current_dir(root)
            .args([
                "run",
                t,
                "--time",
                &seconds.to_string(),
                "--seed",
                &seed.to_string(),
            ])
            .status()
            .map_err(|e| format!("cannot run xenia-fuzz: {e}"))?;
        if !status.success() {
            failed.push(t.clone());
        }
    }
    if failed.is_empty() {
        Ok(())
    } else {
        Err(format!("fuzz targets failed: {}", failed.join(", ")))
    }
}
