//! `cargo xtask bench --only linux`: issue 18's "Measured" — Debian's Linux as a Xenia domU
//! against the same kernel booted natively.
//!
//! One program, `linuxbench` (`tests/programs/linuxbench`, static, `x86_64-unknown-linux-musl`),
//! in the initramfs `cargo xtask build` makes for Debian's cloud kernel
//! (`target/xenia/debian-vmlinuz`, `debian-initrd.img`; the same files are dom0's
//! `/boot/debian/*`), run twice in one bench run, each under `-icount shift=0,sleep=off` on
//! `-cpu max`, one CPU:
//!
//! - **native** (the `native` column): the kernel booted by QEMU's `-kernel`/`-initrd` on a
//!   256 MiB machine (the domU's memory), command line `console=ttyS0 quiet panic=-1
//!   norandmaps xenia.bench=...`;
//! - **domU** (the `pv` column): Xenia's default image on a 1 GiB machine; at dom0's prompt
//!   `xl create -c /etc/xen/debian.cfg 'extra="console=hvc0 earlyprintk=xen quiet
//!   norandmaps xenia.bench=..."'`, the figures read from the domain's console (Xen's early console
//!   shows in the hypervisor's log why a boot stopped, if it does).
//!
//! `norandmaps` in both: the address-space layout is not randomized, so that the number of
//! page tables the program has, and with it the `fork` row, does not change from boot to
//! boot (`tests::linuxbench::native_cmdline`).
//!
//! `/init` runs the program when the command line has `xenia.bench=` and powers off after.
//! Each figure is TSC ticks per iteration of the best of `runs` runs: under `-icount
//! shift=0` one tick is one instruction of the whole machine (in the domU that includes the
//! hypervisor's and dom0's), one virtual nanosecond. The ratio is domU / native, with the
//! issue's goals. When the domU gives no figures (Linux does not reach the program, or the
//! program fails) the bench says why on a line of its own and prints the native column
//! alone; it fails only when neither environment gave figures.

use std::fmt::Write as _;
use std::time::Duration;

use xenia_tests::Workspace;
use xenia_tests::benchk::ICOUNT;
use xenia_tests::linuxbench::{self, DomuBounds, Output};
use xenia_tests::machine::Machine;
use xenia_tests::workspace::{DEBIAN_INITRD_ARTIFACT, DEBIAN_KERNEL_ARTIFACT};

use crate::vbench::{Goal, Measured};

/// The native machine's memory: the domU's (`memory = 256` in `debian.cfg`).
const NATIVE_MEMORY_MIB: u32 = 256;
/// Xenia's machine: dom0's 64 MiB, the domU's 256 MiB and room.
const XENIA_MEMORY_MIB: u32 = 1024;
/// Bound for the native boot and run in real time (about a minute here with the defaults).
const NATIVE_RUN: Duration = Duration::from_secs(1200);
/// Bound for Xenia's boot to dom0's prompt.
const XENIA_BOOT: Duration = Duration::from_secs(300);
/// Default bound for the domU's boot to the program's first line (`--linux-timeout`).
pub const DOMU_REACH_SECONDS: u64 = 1200;
/// Bound for the program's run in the domU, once it started.
const DOMU_RUN: Duration = Duration::from_secs(3600);

/// One row: its name in the table, the program's test, unit, goal (domU / native), what it is.
pub struct LinuxRow {
    pub name: &'static str,
    pub test: &'static str,
    pub unit: &'static str,
    pub goal: Goal,
    pub about: &'static str,
}

/// The rows, in the program's order ([`linuxbench::TESTS`]), with issue 18's goals.
pub const LINUX_ROWS: &[LinuxRow] = &[
    LinuxRow {
        name: "linux_null_syscall",
        test: "null_syscall",
        unit: "instructions/call",
        goal: Goal::Ratio(1.5),
        about: "getppid through a raw SYSCALL",
    },
    LinuxRow {
        name: "linux_page_fault",
        test: "page_fault",
        unit: "instructions/page",
        goal: Goal::Ratio(2.0),
        about: "first write to each page of a fresh anonymous mapping (no huge pages)",
    },
    LinuxRow {
        name: "linux_fork_exit",
        test: "fork_exit",
        unit: "instructions/fork",
        goal: Goal::Ratio(2.0),
        about: "fork, the child's exit_group(0), the parent's wait4",
    },
    LinuxRow {
        name: "linux_pipe_pingpong",
        test: "pipe_pingpong",
        unit: "instructions/round trip",
        goal: Goal::Ratio(2.0),
        about: "a byte to a child through a pipe and back through another",
    },
    LinuxRow {
        name: "linux_cpu_loop",
        test: "cpu_loop",
        unit: "instructions/run",
        goal: Goal::Ratio(1.01),
        about: "primes below the limit by trial division in ring 3",
    },
];

/// The rows with both environments' figures.
pub fn table(native: &Output, domu: &Output) -> Vec<Measured> {
    let ticks = |out: &Output, test: &str| out.figures.get(test).map(|f| f.ticks);
    LINUX_ROWS
        .iter()
        .map(|r| Measured {
            name: r.name,
            unit: r.unit,
            native: ticks(native, r.test),
            pv: ticks(domu, r.test),
            xen: None,
            goal: r.goal,
        })
        .collect()
}

/// What the rows are, printed under the table.
pub fn about() -> String {
    let mut out = String::new();
    for r in LINUX_ROWS {
        let _ = writeln!(out, "  {}: {} ({})", r.name, r.about, r.unit);
    }
    out.push_str(
        "  columns: native = Debian's Linux booted natively by QEMU, pv = the same kernel and \
         initramfs as a Xenia domU; ratio = pv / native\n",
    );
    out
}

/// Notes on one environment's output: the TSC's rate, the kernel's clock against the TSC,
/// the CPU-bound test's check.
pub fn notes(env: &str, out: &Output) -> Vec<String> {
    if out.figures.is_empty() {
        return Vec::new();
    }
    let mut notes = Vec::new();
    notes.push(match out.tsc_check {
        Some(t) if (990..=1010).contains(&t) => {
            format!("{env}: TSC ticks per 1000 instructions {t} (the TSC counts instructions)")
        }
        Some(t) => format!(
            "{env}: TSC ticks per 1000 instructions {t}: NOT one per instruction, the figures \
             are not instruction counts"
        ),
        None => format!("{env}: no TSC check"),
    });
    if let Some(cpu) = out.figures.get("cpu_loop") {
        let off = cpu.ns as f64 / cpu.ticks.max(1) as f64;
        notes.push(format!(
            "{env}: CLOCK_MONOTONIC over the CPU-bound run {} ns for {} ticks ({off:.3} ns a \
             tick{})",
            cpu.ns,
            cpu.ticks,
            if (0.99..=1.01).contains(&off) {
                ": the kernel's clock counts virtual time as the TSC does"
            } else {
                ": the kernel's clock does NOT agree with the TSC"
            }
        ));
    }
    if let Some(p) = out.primes {
        notes.push(format!("{env}: cpu_loop counted {p} primes"));
    }
    notes
}

/// The native run: its parsed output, or why there is none.
fn native(ws: &Workspace, args: &str) -> Result<Output, String> {
    let (kernel, initrd) = (
        ws.require_artifact(DEBIAN_KERNEL_ARTIFACT)?,
        ws.require_artifact(DEBIAN_INITRD_ARTIFACT)?,
    );
    let mut machine = Machine::new(ws, "bench-linux-native").memory_mib(NATIVE_MEMORY_MIB);
    for a in ICOUNT {
        machine = machine.qemu_arg(a);
    }
    let log = linuxbench::run_native(machine, &kernel, &initrd, args, NATIVE_RUN)?;
    Ok(linuxbench::parse(&log))
}

/// The domU run: its parsed output, or why there is none.
fn domu(ws: &Workspace, args: &str, reach: Duration) -> Result<Output, String> {
    let mut machine = Machine::new(ws, "bench-linux-domu").memory_mib(XENIA_MEMORY_MIB);
    for a in ICOUNT {
        machine = machine.qemu_arg(a);
    }
    let bounds = DomuBounds {
        boot: XENIA_BOOT,
        reach,
        run: DOMU_RUN,
    };
    let log = linuxbench::run_domu(ws, machine, args, bounds)?;
    Ok(linuxbench::parse(&log))
}

/// Prints one environment's program lines as they were parsed.
fn echo(env: &str, out: &Output) {
    for test in linuxbench::TESTS {
        if let Some(f) = out.figures.get(test) {
            println!(
                "  {env}: {test} iters={} ticks_per_iter={} ns_per_iter={}",
                f.iters, f.ticks, f.ns
            );
        }
    }
}

/// Runs the bench with the program's settings `args` (its defaults when empty) and the bound
/// `reach` for the domU to reach the program; prints the table and returns its rows.
pub fn run(ws: &Workspace, args: &str, reach: Duration) -> Result<Vec<Measured>, String> {
    let settings = if args.trim().is_empty() {
        "the program's defaults"
    } else {
        args
    };
    if !ws.artifact(DEBIAN_KERNEL_ARTIFACT).is_file() {
        return Err(format!(
            "no {}: `cargo xtask build` could not fetch Debian's \
             linux-image-*-cloud-amd64-unsigned (its output says why; it needs apt and \
             Debian's archive)",
            ws.artifact(DEBIAN_KERNEL_ARTIFACT).display()
        ));
    }
    println!(
        "bench linux: linuxbench ({settings}) in Debian's Linux, natively and as a Xenia domU; \
         instructions under -icount shift=0"
    );
    println!(
        "bench linux: native ({NATIVE_MEMORY_MIB} MiB, -kernel, {:?})...",
        linuxbench::native_cmdline(args)
    );
    let native = native(ws, args).unwrap_or_else(|e| {
        println!("bench linux: native Linux gave no figures: {e}");
        Output::default()
    });
    echo("native", &native);
    println!(
        "bench linux: domU (Xenia, {XENIA_MEMORY_MIB} MiB machine; xl create -c {} with {:?}; \
         up to {} s to reach the program)...",
        linuxbench::DOMU_CONFIG,
        linuxbench::domu_cmdline(args),
        reach.as_secs()
    );
    let domu = match domu(ws, args, reach) {
        Ok(out) if out.figures.is_empty() => {
            println!(
                "bench linux: the Linux domU gave no figures: the program printed none{}",
                out.failed
                    .as_deref()
                    .map(|w| format!(" (it failed: {w})"))
                    .unwrap_or_default()
            );
            out
        }
        Ok(out) => out,
        Err(e) => {
            println!("bench linux: the Linux domU gave no figures: {e}");
            Output::default()
        }
    };
    echo("domU", &domu);
    if native.figures.is_empty() && domu.figures.is_empty() {
        return Err("neither native Linux nor the domU gave figures".into());
    }
    let rows = table(&native, &domu);
    print!("{}", crate::vbench::render(&rows));
    print!("{}", about());
    for note in notes("native", &native)
        .into_iter()
        .chain(notes("domU", &domu))
    {
        println!("  {note}");
    }
    if domu.figures.is_empty() {
        println!(
            "  the pv column is empty: the domU did not run the program (above); the goals \
             are not judged"
        );
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rows_are_the_programs_tests() {
        let tests: Vec<&str> = LINUX_ROWS.iter().map(|r| r.test).collect();
        assert_eq!(tests, linuxbench::TESTS);
        assert!(
            LINUX_ROWS
                .iter()
                .all(|r| r.name == format!("linux_{}", r.test))
        );
    }

    #[test]
    fn ratios_and_goals() {
        let line = |t: &str, v: u64| {
            format!("linuxbench: {t} iters=1 ticks_per_iter={v} ns_per_iter={v}\n")
        };
        let native = linuxbench::parse(
            &[
                line("null_syscall", 300),
                line("page_fault", 8000),
                line("cpu_loop", 1_000_000),
            ]
            .concat(),
        );
        let domu = linuxbench::parse(
            &[
                line("null_syscall", 600),
                line("page_fault", 15000),
                line("cpu_loop", 1_005_000),
            ]
            .concat(),
        );
        let rows = table(&native, &domu);
        let row = |n: &str| rows.iter().find(|r| r.name == n).unwrap();
        assert_eq!(row("linux_null_syscall").met(), Some(false), "2x > 1.5x");
        assert_eq!(row("linux_page_fault").met(), Some(true), "1.875x <= 2x");
        assert_eq!(row("linux_cpu_loop").met(), Some(true), "1.005 <= 1.01");
        assert_eq!(row("linux_fork_exit").met(), None, "not measured");
        // Without the domU: the native column alone, nothing judged.
        let alone = table(&native, &Output::default());
        assert!(alone.iter().all(|r| r.pv.is_none() && r.met().is_none()));
        assert_eq!(alone[0].native, Some(300));
        let text = crate::vbench::render(&rows);
        assert!(text.contains("linux_null_syscall") && text.contains("NOT met"));
    }

    #[test]
    fn notes_say_whether_the_clocks_count_instructions() {
        let out = linuxbench::parse(
            "linuxbench: tsc_check ticks_per_1000_instructions=1000\n\
             linuxbench: cpu_loop iters=1 ticks_per_iter=1000000 ns_per_iter=1000500 primes=9\n",
        );
        let n = notes("native", &out).join("\n");
        assert!(
            n.contains("counts instructions") && n.contains("as the TSC does"),
            "{n}"
        );
        let bad = linuxbench::parse(
            "linuxbench: tsc_check ticks_per_1000_instructions=384\n\
             linuxbench: cpu_loop iters=1 ticks_per_iter=1000000 ns_per_iter=400000\n",
        );
        let n = notes("domU", &bad).join("\n");
        assert!(
            n.contains("NOT one per instruction") && n.contains("does NOT agree"),
            "{n}"
        );
        assert!(notes("domU", &Output::default()).is_empty());
    }
}
