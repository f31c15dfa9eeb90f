//! Issue 18's benchmark program in Debian's Linux (`tests/programs/linuxbench`,
//! `/bin/linuxbench` in the initramfs `cargo xtask build` makes for the Debian kernel):
//! booting that kernel natively (QEMU's `-kernel`) or as a Xenia domU (`xl create -c
//! /etc/xen/debian.cfg`) with [`BENCH_PARAM`] on its command line, so that `/init` runs the
//! program and powers off, and reading the program's lines:
//!
//! ```text
//! linuxbench: start syscalls=100000 pages=1024 forks=100 trips=1000 primes=100000 runs=5
//! linuxbench: tsc_check ticks_per_1000_instructions=1000
//! linuxbench: null_syscall iters=100000 ticks_per_iter=312 ns_per_iter=312
//! ...
//! linuxbench: cpu_loop iters=1 ticks_per_iter=44497918 ns_per_iter=44497925 primes=9592
//! linuxbench: done
//! ```
//!
//! `cargo xtask bench --only linux` runs both under `-icount shift=0,sleep=off` (one TSC tick
//! per instruction, one virtual nanosecond each) and divides the domU's figures by the native
//! ones; the scenario `linux_bench_native_short` runs the program natively with few
//! iterations, so that it does not rot.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use crate::iso::{DEFAULT_HV_OPTIONS, DEFAULT_MODULES};
use crate::machine::{EXIT_ACPI_POWEROFF, Machine};
use crate::workspace::Workspace;

/// The kernel command-line parameter the initramfs's `/init` reads from `/proc/cmdline`:
/// `xenia.bench=1` runs the program with its defaults, `xenia.bench=syscalls=2000,runs=2`
/// with those settings (commas for blanks); `/init` then powers off.
pub const BENCH_PARAM: &str = "xenia.bench";

/// What every line of the program starts with.
pub const PREFIX: &str = "linuxbench: ";

/// The tests, in the order the program runs them.
pub const TESTS: [&str; 5] = [
    "null_syscall",
    "page_fault",
    "fork_exit",
    "pipe_pingpong",
    "cpu_loop",
];

/// The configuration of the Debian domU in the default image.
pub const DOMU_CONFIG: &str = "/etc/xen/debian.cfg";

/// dom0's shell prompt.
const PROMPT: &str = "dom0# ";

/// One test's line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Figure {
    /// Iterations of each run.
    pub iters: u64,
    /// TSC ticks per iteration of the best run (instructions under `-icount shift=0`).
    pub ticks: u64,
    /// `CLOCK_MONOTONIC` nanoseconds per iteration of the same run.
    pub ns: u64,
}

/// The program's output, parsed.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Output {
    /// Each test's figure, by test name.
    pub figures: BTreeMap<String, Figure>,
    /// The TSC's ticks per 1000 instructions (`tsc_check`).
    pub tsc_check: Option<u64>,
    /// The `primes=` count of the `cpu_loop` line.
    pub primes: Option<u64>,
    /// Whether the program said `linuxbench: done`.
    pub done: bool,
    /// What `linuxbench: failed: ...` said, if it did.
    pub failed: Option<String>,
}

/// The value of `key=` among `words`.
fn field(words: &[&str], key: &str) -> Option<u64> {
    words
        .iter()
        .find_map(|w| w.strip_prefix(key)?.strip_prefix('=')?.parse().ok())
}

/// Parses the program's lines in `log` (a line may carry a console's prefix before
/// [`PREFIX`]; lines of anything else are ignored).
pub fn parse(log: &str) -> Output {
    let mut out = Output::default();
    for line in log.lines() {
        let Some(at) = line.find(PREFIX) else {
            continue;
        };
        let rest = line[at + PREFIX.len()..].trim();
        if rest == "done" {
            out.done = true;
            continue;
        }
        if let Some(why) = rest.strip_prefix("failed: ") {
            out.failed = Some(why.to_string());
            continue;
        }
        let words: Vec<&str> = rest.split_whitespace().collect();
        let Some((&name, words)) = words.split_first() else {
            continue;
        };
        if name == "tsc_check" {
            out.tsc_check = field(words, "ticks_per_1000_instructions");
            continue;
        }
        if !TESTS.contains(&name) {
            continue;
        }
        if let (Some(iters), Some(ticks), Some(ns)) = (
            field(words, "iters"),
            field(words, "ticks_per_iter"),
            field(words, "ns_per_iter"),
        ) {
            out.figures
                .insert(name.to_string(), Figure { iters, ticks, ns });
        }
        if name == "cpu_loop" {
            out.primes = field(words, "primes");
        }
    }
    out
}

/// The program's settings (`syscalls=2000 runs=2`, or empty for its defaults) as the value of
/// [`BENCH_PARAM`]: commas for blanks, `1` for the defaults.
pub fn param_value(args: &str) -> String {
    let words: Vec<&str> = args.split_whitespace().collect();
    if words.is_empty() {
        "1".into()
    } else {
        words.join(",")
    }
}

/// Linux's command line natively: the serial console, quiet, the program with `args`.
/// Both command lines turn off the randomized address-space layout (`norandmaps`, as
/// `setarch -R` does for one program): where the stack and the mappings land decides how
/// many page tables the benchmark process has, and so what a `fork` copies and, in the
/// domU, pins and validates. With it on, the `fork` row moved by about 7 % from boot to
/// boot in both columns (native 160,468–168,892, domU 335,037–356,623 on one build); with
/// it off, by 0.3 % (issue 18, session 17).
pub fn native_cmdline(args: &str) -> String {
    format!(
        "console=ttyS0 quiet panic=-1 norandmaps {BENCH_PARAM}={}",
        param_value(args)
    )
}

/// Linux's command line as the domU: its console (`hvc0`), quiet, the program with `args`
/// (the event ABI is Linux's own choice: Xenia answers FIFO's `EVTCHNOP_init_control` with
/// `EOPNOTSUPP` and Linux takes 2-level events, as `/etc/xen/debian.cfg`);
/// and Xen's early console (`earlyprintk=xen`: `console_io`, in the hypervisor's log as
/// `(dN) ...`), so that a boot that stops before `hvc0` still says why (with `quiet` it
/// prints only warnings and worse, and Linux drops it once `hvc0` is up, before the program
/// runs).
pub fn domu_cmdline(args: &str) -> String {
    format!(
        "console=hvc0 earlyprintk=xen quiet norandmaps {BENCH_PARAM}={}",
        param_value(args)
    )
}

/// The lines of `log` from the first of the program's, for a message.
fn program_lines(log: &str) -> String {
    log.lines()
        .filter(|l| l.contains(PREFIX) || l.contains("xenia-initramfs: "))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The last `n` lines of `log`.
fn tail(log: &str, n: usize) -> String {
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Boots Debian's kernel (`kernel`, `initrd`) natively on `machine` (the caller sets its
/// memory and QEMU arguments such as `-icount`), running the program with `args`; waits up
/// to `timeout` for its last line and then for the power-off `/init` makes. Returns the
/// serial log.
pub fn run_native(
    machine: Machine,
    kernel: &Path,
    initrd: &Path,
    args: &str,
    timeout: Duration,
) -> Result<String, String> {
    let path = |p: &Path| p.to_string_lossy().into_owned();
    let mut vm = machine
        .qemu_arg("-kernel")
        .qemu_arg(&path(kernel))
        .qemu_arg("-initrd")
        .qemu_arg(&path(initrd))
        .qemu_arg("-append")
        .qemu_arg(&native_cmdline(args))
        .boot()?;
    let ended = vm.wait_for_line_matching(
        "the program's `linuxbench: done` or `failed` line",
        timeout,
        |l| l.contains("linuxbench: done") || l.contains("linuxbench: failed"),
    );
    let log = vm.serial_log();
    if let Err(e) = ended {
        vm.kill();
        return Err(format!(
            "{e}; the program's lines so far:\n{}",
            program_lines(&log)
        ));
    }
    let off = vm.expect_exit(EXIT_ACPI_POWEROFF, Duration::from_secs(60));
    vm.kill();
    off.map_err(|e| format!("after the program, /init's poweroff -f: {e}"))?;
    Ok(log)
}

/// Bounds of a domU run, in real time.
#[derive(Clone, Copy, Debug)]
pub struct DomuBounds {
    /// Xenia's boot to dom0's prompt.
    pub boot: Duration,
    /// `xl create` to the program's first line (Linux's boot in the domU).
    pub reach: Duration,
    /// The program's first line to its last.
    pub run: Duration,
}

/// Boots Xenia's default image on `machine` (the caller sets memory and QEMU arguments),
/// and at dom0's prompt runs `xl create -c` [`DOMU_CONFIG`] with [`domu_cmdline`] as the
/// kernel's command line; waits for the program's last line on the domain's console. Returns
/// the serial log from the `xl create` on. An error says where it stopped: `xl create`
/// refused, the console ended (the domain died) before the program ran, or a bound passed
/// (with what `xl list` says then, after leaving the console with Ctrl-]).
pub fn run_domu(
    ws: &Workspace,
    mut machine: Machine,
    args: &str,
    bounds: DomuBounds,
) -> Result<String, String> {
    machine = machine.hv_options(DEFAULT_HV_OPTIONS);
    for m in DEFAULT_MODULES {
        machine = machine.module(ws.require_artifact(m.artifact)?, m.cmdline);
    }
    let mut vm = machine.boot()?;
    let result = (|| {
        vm.wait_for(PROMPT, bounds.boot)?;
        let line = format!(
            "xl create -c {DOMU_CONFIG} 'extra=\"{}\"'",
            domu_cmdline(args)
        );
        vm.send(&format!("{line}\r"))?;
        let start = vm.serial_log().len();
        // The program's first line, or the prompt again (xl refused, or the domain ended
        // and its console with it).
        let first = vm.wait_until(
            "the program's first line on the domain's console",
            bounds.reach,
            |log, cursor| {
                let rest = &log[cursor..];
                match (rest.find("linuxbench: start"), rest.find(PROMPT)) {
                    (Some(i), _) => Some((true, cursor + i)),
                    (None, Some(i)) => Some((false, cursor + i + PROMPT.len())),
                    (None, None) => None,
                }
            },
        );
        // The log from the command on (all of it, should `start` not fall on a character).
        let since = |vm: &crate::machine::Qemu| {
            let log = vm.serial_log();
            log.get(start..).map_or_else(|| log.clone(), str::to_string)
        };
        match first {
            Ok(true) => {}
            Ok(false) => {
                return Err(format!(
                    "`{line}` returned to dom0's prompt before the program ran; its output:\n{}",
                    tail(&since(&vm), 30)
                ));
            }
            Err(e) => return Err(format!("{e}{}", state_after_timeout(&mut vm))),
        }
        // A profiling aid, never set by the suite: with `XENIA_PROFILE_MARK`, a snapshot of
        // the instruction-counting plugin at each of the program's lines, so that the counts
        // between two snapshots are one test's (`netbench::profile_mark`).
        let ended = if std::env::var_os("XENIA_PROFILE_MARK").is_some() {
            crate::netbench::profile_mark();
            loop {
                let l = vm.wait_for_line_matching(
                    "the program's next line (profiling)",
                    bounds.run,
                    |l| l.contains("linuxbench: "),
                );
                crate::netbench::profile_mark();
                match l {
                    Ok(l) if !l.contains("linuxbench: done") && !l.contains("failed") => {}
                    other => break other,
                }
            }
        } else {
            vm.wait_for_line_matching(
                "the program's `linuxbench: done` or `failed` line",
                bounds.run,
                |l| l.contains("linuxbench: done") || l.contains("linuxbench: failed"),
            )
        };
        if let Err(e) = ended {
            return Err(format!(
                "{e}; the program's lines so far:\n{}{}",
                program_lines(&since(&vm)),
                state_after_timeout(&mut vm)
            ));
        }
        Ok(since(&vm))
    })();
    vm.kill();
    result
}

/// After a bound passed with `xl create -c` attached: leaves the console (Ctrl-], as Xen's
/// `xl console`), and returns what `xl list` says, for the message.
fn state_after_timeout(vm: &mut crate::machine::Qemu) -> String {
    const SHORT: Duration = Duration::from_secs(30);
    let mut list = || -> Result<String, String> {
        vm.send("\x1d")?;
        vm.wait_for(PROMPT, SHORT)?;
        vm.send("xl list\r")?;
        vm.wait_until("the prompt after `xl list`", SHORT, |log, cursor| {
            log[cursor..]
                .find(PROMPT)
                .map(|i| (log[cursor..cursor + i].to_string(), cursor + i))
        })
    };
    match list() {
        Ok(out) => format!("; then `xl list` said:\n{}", out.trim()),
        Err(e) => format!("; dom0 did not answer after leaving the console: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_parse() {
        let log = "xenia-initramfs: running linuxbench\n\
            linuxbench: start syscalls=10 pages=4 forks=1 trips=2 primes=100 runs=1\n\
            linuxbench: tsc_check ticks_per_1000_instructions=1000\r\n\
            (d1) linuxbench: null_syscall iters=10 ticks_per_iter=312 ns_per_iter=311\n\
            linuxbench: page_fault iters=4 ticks_per_iter=x ns_per_iter=1\n\
            linuxbench: cpu_loop iters=1 ticks_per_iter=2000 ns_per_iter=2001 primes=25\n\
            linuxbench: unknown iters=1 ticks_per_iter=1 ns_per_iter=1\n\
            linuxbench: done\n";
        let out = parse(log);
        assert_eq!(out.tsc_check, Some(1000));
        assert_eq!(
            out.figures.get("null_syscall"),
            Some(&Figure {
                iters: 10,
                ticks: 312,
                ns: 311
            }),
            "a console prefix is allowed"
        );
        assert!(!out.figures.contains_key("page_fault"), "not a number");
        assert!(!out.figures.contains_key("unknown"));
        assert_eq!(out.figures["cpu_loop"].ticks, 2000);
        assert_eq!(out.primes, Some(25));
        assert!(out.done && out.failed.is_none());
        let failed = parse("linuxbench: failed: fork returned -12\n");
        assert_eq!(failed.failed.as_deref(), Some("fork returned -12"));
        assert!(!failed.done);
        assert_eq!(parse(""), Output::default());
    }

    #[test]
    fn command_lines() {
        assert_eq!(param_value(""), "1");
        assert_eq!(param_value(" syscalls=5  runs=2 "), "syscalls=5,runs=2");
        assert_eq!(
            native_cmdline("runs=2"),
            "console=ttyS0 quiet panic=-1 norandmaps xenia.bench=runs=2"
        );
        assert_eq!(
            domu_cmdline(""),
            "console=hvc0 earlyprintk=xen quiet norandmaps xenia.bench=1"
        );
    }
}
