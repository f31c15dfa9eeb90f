//! `cargo xtask bench`: the benchmarks. Times are QEMU's virtual time with a fixed
//! instruction rate (`-icount shift=0,sleep=off`: one nanosecond per instruction, idle time
//! skipped), so they measure path lengths, not the build host's load. (`shift=auto` would
//! let the host's speed, and the harness reading the serial line, leak into the figures.)
//!
//! **Creation** (`create`): boots the default image and, at the `dom0# ` prompt, runs
//! `time xl create /etc/xen/hello.cfg name="bench" memory=8` and `xl destroy bench` in
//! sequence, N times (1000 by default). Each `time` line is the whole command as an operator
//! sees it: loading `xl`, parsing the configuration, building the domain and handing it to
//! dom0's kernel. Reported: the 1st, the last, the median and the slowest, and the ratio
//! last/first, whose goal is at most 1.2 (DESIGN.md §7: no directory daemon on the creation
//! path, so the thousandth domain costs what the first did).

use std::time::{Duration, Instant};

use xenia_tests::Workspace;
use xenia_tests::iso::{DEFAULT_HV_OPTIONS, DEFAULT_MODULES};
use xenia_tests::machine::{Machine, Qemu};

const PROMPT: &str = "dom0# ";
/// Bound for one command in real time (icount slows the emulator down).
const COMMAND: Duration = Duration::from_secs(120);
/// The goal for last/first.
pub const GOAL: f64 = 1.2;

fn run(vm: &mut Qemu, line: &str) -> Result<String, String> {
    vm.send(&format!("{line}\r"))?;
    vm.wait_until(
        &format!("the prompt after `{line}`"),
        COMMAND,
        |log, cursor| {
            log[cursor..].find(PROMPT).map(|i| {
                (
                    log[cursor..cursor + i].to_string(),
                    cursor + i + PROMPT.len(),
                )
            })
        },
    )
}

/// The milliseconds of a `time: <ms> ms` line.
pub fn parse_time(out: &str) -> Option<f64> {
    out.lines().find_map(|l| {
        l.trim()
            .strip_prefix("time: ")?
            .strip_suffix(" ms")?
            .parse()
            .ok()
    })
}

/// Summary of the creation times, in ms.
#[derive(Debug, PartialEq)]
pub struct Summary {
    pub first: f64,
    pub last: f64,
    pub median: f64,
    pub max: f64,
}

pub fn summarize(times: &[f64]) -> Option<Summary> {
    let (&first, &last) = (times.first()?, times.last()?);
    let mut sorted = times.to_vec();
    sorted.sort_by(f64::total_cmp);
    Some(Summary {
        first,
        last,
        median: sorted[sorted.len() / 2],
        max: sorted[sorted.len() - 1],
    })
}

/// Runs the creation benchmark with `n` domains.
pub fn create(ws: &Workspace, n: u32) -> Result<Summary, String> {
    let mut machine = Machine::new(ws, "bench-create")
        .memory_mib(512)
        .hv_options(DEFAULT_HV_OPTIONS)
        .qemu_arg("-icount")
        .qemu_arg("shift=0,sleep=off");
    for m in DEFAULT_MODULES {
        machine = machine.module(ws.require_artifact(m.artifact)?, m.cmdline);
    }
    let mut vm = machine.boot()?;
    vm.wait_for(PROMPT, COMMAND)?;
    let started = Instant::now();
    let mut times = Vec::with_capacity(n as usize);
    for i in 1..=n {
        let out = run(
            &mut vm,
            "time xl create /etc/xen/hello.cfg 'name=\"bench\"' memory=8",
        )?;
        if !out.contains("Domain bench created") {
            return Err(format!("creation {i} failed: {out:?}"));
        }
        times.push(parse_time(&out).ok_or_else(|| format!("no time in {out:?}"))?);
        let out = run(&mut vm, "xl destroy bench")?;
        if out.contains("xl:") {
            return Err(format!("destroy {i} failed: {out:?}"));
        }
        if i % 100 == 0 || i == 1 {
            println!(
                "  {i}/{n}: this creation {:.3} ms (virtual), {:.0} s elapsed",
                times[times.len() - 1],
                started.elapsed().as_secs_f64()
            );
        }
    }
    vm.kill();
    summarize(&times).ok_or_else(|| "no creations".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_parse_and_summarize() {
        assert_eq!(parse_time("x\ntime: 12.500000 ms\n"), Some(12.5));
        assert_eq!(parse_time("time: soon"), None);
        let s = summarize(&[10.0, 30.0, 20.0, 11.0]).unwrap();
        assert_eq!(
            s,
            Summary {
                first: 10.0,
                last: 11.0,
                median: 20.0,
                max: 30.0
            }
        );
        assert!(summarize(&[]).is_none());
    }
}
