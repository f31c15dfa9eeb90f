//! `xenia-fuzz`: runs the fuzz targets (`cargo xtask fuzz` builds and calls this).
//!
//! ```text
//! xenia-fuzz list
//! xenia-fuzz run <target> [--time S] [--seed N] [--execs N] [--crash-dir DIR]
//! xenia-fuzz replay <target> <file>
//! ```
//!
//! `run` prints one summary line, `fuzz <target>: N executions in S s (R/s), ...`, and exits
//! 1 after writing the failing input (as found and minimised) to the crash directory.
#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use xenia_fuzz::engine;
use xenia_fuzz::targets::{self, TARGETS};

/// How long minimising a failure may take.
const MINIMIZE_TIME: Duration = Duration::from_secs(60);

fn usage() -> ExitCode {
    eprintln!(
        "usage: xenia-fuzz list\n       xenia-fuzz run <target> [--time S] [--seed N] [--execs N] [--crash-dir DIR]\n       xenia-fuzz replay <target> <file>"
    );
    ExitCode::from(2)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("list") => {
            for t in TARGETS {
                println!("{:<12} {}", t.name, t.about);
            }
            ExitCode::SUCCESS
        }
        Some("run") => run(&args[1..]),
        Some("replay") => replay(&args[1..]),
        _ => usage(),
    }
}

fn run(args: &[String]) -> ExitCode {
    let Some(target) = args.first().and_then(|n| targets::find(n)) else {
        eprintln!("error: unknown target; `xenia-fuzz list` names them");
        return ExitCode::from(2);
    };
    let mut time = Duration::from_secs(10);
    let mut seed = 0x5EED_u64;
    let mut execs = None;
    let mut crash_dir = PathBuf::from("target/fuzz/crashes");
    let mut rest = args[1..].iter();
    while let Some(flag) = rest.next() {
        let Some(value) = rest.next() else {
            return usage();
        };
        let ok = match flag.as_str() {
            "--time" => value.parse::<f64>().ok().filter(|t| *t >= 0.0).map(|t| {
                time = Duration::from_secs_f64(t);
            }),
            "--seed" => value.parse().ok().map(|s| seed = s),
            "--execs" => value.parse().ok().map(|n| execs = Some(n)),
            "--crash-dir" => {
                crash_dir = PathBuf::from(value);
                Some(())
            }
            _ => None,
        };
        if ok.is_none() {
            return usage();
        }
    }
    let name = target.name;
    let outcome = engine::fuzz(target, seed, time, execs, MINIMIZE_TIME, |n, t| {
        eprintln!("fuzz {name}: {n} executions after {:.0} s", t.as_secs_f64());
    });
    let secs = outcome.elapsed.as_secs_f64();
    let rate = outcome.execs as f64 / secs.max(1e-9);
    let Some(failure) = outcome.failure else {
        println!(
            "fuzz {name}: {} executions in {secs:.1} s ({rate:.0}/s), seed {seed}, no failure",
            outcome.execs
        );
        return ExitCode::SUCCESS;
    };
    println!(
        "fuzz {name}: FAILED after {} executions in {secs:.1} s, seed {seed}",
        outcome.execs
    );
    println!("fuzz {name}: {}", failure.message);
    let dir = crash_dir.join(name);
    let found = dir.join(format!("seed-{seed}-exec-{}.bin", outcome.execs));
    let minimized = dir.join(format!("seed-{seed}-exec-{}.min.bin", outcome.execs));
    let written = std::fs::create_dir_all(&dir)
        .and_then(|()| std::fs::write(&found, &failure.input))
        .and_then(|()| std::fs::write(&minimized, &failure.minimized));
    match written {
        Ok(()) => println!(
            "fuzz {name}: input written to {} ({} bytes, minimised {} bytes); replay with\n  cargo xtask fuzz {name} --replay {}",
            found.display(),
            failure.input.len(),
            failure.minimized.len(),
            minimized.display()
        ),
        Err(e) => println!(
            "fuzz {name}: cannot write the input to {}: {e}",
            dir.display()
        ),
    }
    println!("fuzz {name}: minimised input: {:02x?}", failure.minimized);
    ExitCode::FAILURE
}

fn replay(args: &[String]) -> ExitCode {
    let (Some(target), Some(file)) = (args.first().and_then(|n| targets::find(n)), args.get(1))
    else {
        return usage();
    };
    let data = match std::fs::read(file) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("error: cannot read {file}: {e}");
            return ExitCode::from(2);
        }
    };
    // The default panic hook prints the broken invariant (and a backtrace with
    // RUST_BACKTRACE=1); the panic ends the process with a failure.
    (target.run)(&data);
    println!("replay {}: {file} passes", target.name);
    ExitCode::SUCCESS
}
