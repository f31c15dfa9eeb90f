//! `cargo xtask mutants [--timeout S] [--shard K/N]`: mutation testing of the hardware-
//! independent core. Runs `cargo-mutants` (installed into the user's cargo bin with `cargo
//! install cargo-mutants --locked` if missing) over [`FILES`], with the host tests of
//! `xenia-core` (where these files live) as the test suite, one job at a time, and prints per
//! file the share of viable mutants the tests caught (a timeout counts as caught, as
//! cargo-mutants counts it; a mutant that does not build is not viable). Slow — every mutant
//! rebuilds the core's test binary — and not part of CI; `--shard K/N` tests every Nth mutant
//! (a uniform sample).

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use crate::host;

/// The files mutated: the frame table, grants and events at least (issue 10), and the memory
/// map.
pub const FILES: &[&str] = &[
    "hypervisor/core/src/mm/frame_table.rs",
    "hypervisor/core/src/grant.rs",
    "hypervisor/core/src/event.rs",
    "hypervisor/core/src/mm/memmap.rs",
];

/// Where cargo-mutants writes its results (it adds `mutants.out/`).
const OUTPUT: &str = "target/mutants";

fn has_cargo_mutants() -> bool {
    Command::new("cargo")
        .args(["mutants", "--version"])
        .output()
        .is_ok_and(|o| o.status.success())
}

pub fn run(root: &Path, timeout: u32, shard: Option<&str>) -> Result<(), String> {
    if !has_cargo_mutants() {
        println!("installing cargo-mutants...");
        host::run(Command::new("cargo").args(["install", "cargo-mutants", "--locked"]))?;
    }
    let mut cmd = host::cargo(root);
    cmd.args([
        "mutants",
        "--package",
        "xenia-core",
        "--jobs",
        "1",
        "--no-shuffle",
    ])
    .args(["--timeout", &timeout.to_string(), "--output", OUTPUT]);
    for f in FILES {
        cmd.args(["--file", f]);
    }
    if let Some(s) = shard {
        cmd.args(["--shard", s, "--sharding", "round-robin"]);
    }
    // cargo-mutants exits non-zero when mutants survive; the figures are what matter here.
    let _ = cmd
        .status()
        .map_err(|e| format!("cannot run cargo mutants: {e}"))?;
    let outcomes = std::fs::read_to_string(root.join(OUTPUT).join("mutants.out/outcomes.json"))
        .map_err(|e| format!("no cargo-mutants outcomes: {e}"))?;
    print!("{}", summary(&outcomes));
    Ok(())
}

/// Per file: caught (including timeouts), missed, unviable, and the share caught of the viable.
/// Reads cargo-mutants' `outcomes.json` with plain string matching (no JSON dependency): each
/// mutant's outcome names its `"file"` and then its `"summary"`.
pub fn summary(outcomes: &str) -> String {
    let mut per_file: BTreeMap<String, [u32; 3]> = BTreeMap::new();
    let mut rest = outcomes;
    while let Some((file, after)) = string_field(rest, "file") {
        let Some((outcome, after)) = string_field(after, "summary") else {
            break;
        };
        let counts = per_file.entry(file.to_string()).or_default();
        match outcome {
            "CaughtMutant" | "Timeout" => counts[0] += 1,
            "MissedMutant" => counts[1] += 1,
            _ => counts[2] += 1,
        }
        rest = after;
    }
    let mut out = String::new();
    for (file, [caught, missed, unviable]) in per_file {
        let viable = caught + missed;
        let share = if viable == 0 {
            0.0
        } else {
            100.0 * f64::from(caught) / f64::from(viable)
        };
        out.push_str(&format!(
            "mutants {file}: {caught}/{viable} caught ({share:.1}%), {missed} missed, {unviable} unviable\n"
        ));
    }
    out
}

/// The string value of the next `"key": "value"` in `text`, and the text after it.
fn string_field<'a>(text: &'a str, key: &str) -> Option<(&'a str, &'a str)> {
    let quoted = format!("\"{key}\"");
    let at = text.find(&quoted)? + quoted.len();
    let rest = text[at..].trim_start().strip_prefix(':')?.trim_start();
    let rest = rest.strip_prefix('"')?;
    let end = rest.find('"')?;
    Some((&rest[..end], &rest[end + 1..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_file_exists() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
        for f in FILES {
            assert!(root.join(f).is_file(), "{f} does not exist");
        }
    }

    #[test]
    fn summary_counts_per_file() {
        let json = r#"{"outcomes":[{"scenario":"Baseline","summary":"Success"},
            {"scenario":{"Mutant":{"file":"a.rs","name":"x"}},"summary":"CaughtMutant"},
            {"scenario":{"Mutant":{"file":"a.rs","name":"y"}},"summary":"MissedMutant"},
            {"scenario":{"Mutant":{"file":"b.rs","name":"z"}},"summary":"Timeout"},
            {"scenario":{"Mutant":{"file":"b.rs","name":"w"}},"summary":"Unviable"}]}"#;
        let s = summary(json);
        assert!(
            s.contains("a.rs: 1/2 caught (50.0%), 1 missed, 0 unviable"),
            "{s}"
        );
        assert!(
            s.contains("b.rs: 1/1 caught (100.0%), 0 missed, 1 unviable"),
            "{s}"
        );
    }
}
