//! `linuxbench`: the benchmark program of issue 18 ("Measured"). One static binary for
//! `x86_64-unknown-linux-musl`, in the initramfs `cargo xtask build` makes for Debian's
//! Linux (`/bin/linuxbench`); its `/init` runs it when the kernel's command line has
//! `xenia.bench=...`. `cargo xtask bench --only linux` boots that kernel natively
//! (QEMU's `-kernel`) and as a Xenia domU, both under `-icount shift=0,sleep=off`, and
//! divides the domU's figures by the native ones.
//!
//! Usage: `linuxbench [syscalls=N] [pages=N] [forks=N] [trips=N] [primes=N] [runs=N]`.
//! Each test runs `runs` times (default 5); its figure is the run that took the fewest TSC
//! ticks, divided by its iterations. Under `-icount shift=0` QEMU's TSC advances one tick
//! per instruction the machine executes (the guest's, its kernel's and, in a domU, the
//! hypervisor's and other domains'), which is also one nanosecond of virtual time: the
//! `tsc_check` line shows the rate (the ticks of 1000 instructions of a `dec`/`jnz` loop,
//! 1000 when it holds). Beside the ticks each line has the same run's
//! `clock_gettime(CLOCK_MONOTONIC)` difference: virtual nanoseconds as the kernel's own
//! clocksource (natively the TSC or the HPET, in a Xen PV domU the Xen clocksource) counts
//! them, which shows whether the guest's clock agrees with the TSC.
//!
//! Tests, each printed as
//! `linuxbench: <test> iters=<n> ticks_per_iter=<t> ns_per_iter=<ns>`:
//!
//! - `null_syscall`: `getppid` through a raw `syscall` instruction (`syscalls`, default
//!   100000, per run);
//! - `page_fault`: the first write to each page of a fresh private anonymous mapping
//!   (`pages`, default 1024, 4 MiB), huge pages declined (`MADV_NOHUGEPAGE`) so that each
//!   page faults; the `mmap` and `munmap` are outside the timing;
//! - `fork_exit`: `fork`, the child's `exit_group(0)` at once, the parent's `wait4`
//!   (`forks`, default 100);
//! - `pipe_pingpong`: one byte to a child through a pipe and back through another, per
//!   round trip (`trips`, default 1000; the child is forked once, before the runs);
//! - `cpu_loop`: the primes below `primes` (default 100000) by trial division, one
//!   iteration a run; the line ends with `primes=<count>`, a check of the work.
//!
//! The first line is `linuxbench: start ...` with the settings, the last `linuxbench: done`,
//! or `linuxbench: failed: <why>` (exit status 1).

use std::arch::asm;
use std::hint::black_box;

/// Linux x86-64 system call numbers (`arch/x86/entry/syscalls/syscall_64.tbl`).
const SYS_READ: u64 = 0;
const SYS_WRITE: u64 = 1;
const SYS_CLOSE: u64 = 3;
const SYS_MMAP: u64 = 9;
const SYS_MUNMAP: u64 = 11;
const SYS_MADVISE: u64 = 28;
const SYS_FORK: u64 = 57;
const SYS_WAIT4: u64 = 61;
const SYS_GETPPID: u64 = 110;
const SYS_CLOCK_GETTIME: u64 = 228;
const SYS_EXIT_GROUP: u64 = 231;
const SYS_PIPE2: u64 = 293;
/// `PROT_READ | PROT_WRITE`.
const PROT_RW: u64 = 3;
/// `MAP_PRIVATE | MAP_ANONYMOUS`.
const MAP_PRIVATE_ANON: u64 = 0x22;
/// `MADV_NOHUGEPAGE` (`include/uapi/asm-generic/mman-common.h`).
const MADV_NOHUGEPAGE: u64 = 14;
/// `CLOCK_MONOTONIC`.
const CLOCK_MONOTONIC: u64 = 1;
const PAGE: usize = 4096;
/// Iterations of the `dec`/`jnz` loop that checks the TSC's rate.
const CHECK_LOOPS: u64 = 100_000;

/// The time-stamp counter (`lfence` first, so that earlier instructions are done).
fn rdtsc() -> u64 {
    let (lo, hi): (u32, u32);
    // SAFETY: RDTSC reads a counter and writes only EAX and EDX; Linux does not set CR4.TSD
    // for its processes unless one asks (`PR_SET_TSC`), natively or under Xen PV.
    unsafe { asm!("lfence", "rdtsc", out("eax") lo, out("edx") hi, options(nostack, nomem)) };
    (u64::from(hi) << 32) | u64::from(lo)
}

/// A raw system call with up to six arguments.
fn syscall6(nr: u64, a: [u64; 6]) -> i64 {
    let ret: i64;
    // SAFETY: the calls made here are getppid, clock_gettime into a live struct, reads and
    // writes of live one-byte buffers, pipe2 into a live array, fork, wait4 into a live
    // status, exit_group, and mmap/madvise/munmap of areas this program owns that no Rust
    // object refers to; SYSCALL clobbers only RCX and R11 besides the return register.
    unsafe {
        asm!("syscall", inlateout("rax") nr as i64 => ret, in("rdi") a[0], in("rsi") a[1],
            in("rdx") a[2], in("r10") a[3], in("r8") a[4], in("r9") a[5],
            lateout("rcx") _, lateout("r11") _, options(nostack));
    }
    ret
}

/// `CLOCK_MONOTONIC` in nanoseconds, through the system call (not the vDSO: the same path
/// in every kernel; two readings per run, outside the loops).
fn monotonic_ns() -> u64 {
    let mut ts = [0i64; 2];
    let r = syscall6(
        SYS_CLOCK_GETTIME,
        [CLOCK_MONOTONIC, ts.as_mut_ptr() as u64, 0, 0, 0, 0],
    );
    if r != 0 {
        return 0;
    }
    (ts[0] as u64)
        .saturating_mul(1_000_000_000)
        .saturating_add(ts[1] as u64)
}

/// The settings, from the command line.
#[derive(Clone, Debug, PartialEq)]
struct Settings {
    syscalls: u64,
    pages: u64,
    forks: u64,
    trips: u64,
    primes: u64,
    runs: u64,
}

impl Default for Settings {
    fn default() -> Settings {
        Settings {
            syscalls: 100_000,
            pages: 1024,
            forks: 100,
            trips: 1000,
            primes: 100_000,
            runs: 5,
        }
    }
}

/// The largest value of a setting (a bound, so that a typo cannot run for days).
const MAX_SETTING: u64 = 100_000_000;
/// The most pages the page-fault test maps (4 GiB).
const MAX_PAGES: u64 = 1 << 20;

/// `key=value` words, each value a positive number.
fn parse_args(args: &[String]) -> Result<Settings, String> {
    let mut s = Settings::default();
    for arg in args {
        let (key, value) = arg
            .split_once('=')
            .ok_or_else(|| format!("{arg:?}: expected key=value"))?;
        let value: u64 = value
            .parse()
            .ok()
            .filter(|v| (1..=MAX_SETTING).contains(v))
            .ok_or_else(|| {
                format!("{arg:?}: the value must be a number from 1 to {MAX_SETTING}")
            })?;
        match key {
            "syscalls" => s.syscalls = value,
            "pages" if value > MAX_PAGES => {
                return Err(format!("{arg:?}: at most {MAX_PAGES} pages"));
            }
            "pages" => s.pages = value,
            "forks" => s.forks = value,
            "trips" => s.trips = value,
            "primes" => s.primes = value,
            "runs" => s.runs = value,
            _ => {
                return Err(format!(
                    "{arg:?}: unknown setting (syscalls, pages, forks, trips, primes, runs)"
                ));
            }
        }
    }
    Ok(s)
}

/// A test's best run: TSC ticks and monotonic nanoseconds of the run with the fewest ticks.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Best {
    ticks: u64,
    ns: u64,
}

/// Runs `body` `runs` times; each run returns the (TSC ticks, monotonic nanoseconds) of
/// its timed part ([`timed`]), so that set-up such as a fresh mapping stays outside.
fn best_of(
    runs: u64,
    mut body: impl FnMut() -> Result<(u64, u64), String>,
) -> Result<Best, String> {
    let mut best = Best {
        ticks: u64::MAX,
        ns: 0,
    };
    for _ in 0..runs {
        let (ticks, ns) = body()?;
        if ticks < best.ticks {
            best = Best { ticks, ns };
        }
    }
    Ok(best)
}

/// Times `f`: (TSC ticks, monotonic nanoseconds).
fn timed(f: impl FnOnce() -> Result<(), String>) -> Result<(u64, u64), String> {
    let ns0 = monotonic_ns();
    let t0 = rdtsc();
    f()?;
    let t1 = rdtsc();
    let ns1 = monotonic_ns();
    Ok((t1.wrapping_sub(t0), ns1.saturating_sub(ns0)))
}

/// Prints a test's line.
fn report(test: &str, iters: u64, best: Best, extra: &str) {
    let per = |v: u64| (v + iters / 2) / iters.max(1);
    println!(
        "linuxbench: {test} iters={iters} ticks_per_iter={} ns_per_iter={}{extra}",
        per(best.ticks),
        per(best.ns)
    );
}

/// An anonymous private read-write mapping of `len` bytes, huge pages declined.
fn map(len: usize) -> Result<u64, String> {
    let addr = syscall6(
        SYS_MMAP,
        [0, len as u64, PROT_RW, MAP_PRIVATE_ANON, u64::MAX, 0],
    );
    if (-4095..0).contains(&addr) {
        return Err(format!("mmap of {len} bytes failed: errno {}", -addr));
    }
    // A kernel without transparent huge pages says EINVAL: nothing to decline then.
    let _ = syscall6(
        SYS_MADVISE,
        [addr as u64, len as u64, MADV_NOHUGEPAGE, 0, 0, 0],
    );
    Ok(addr as u64)
}

fn unmap(addr: u64, len: usize) -> Result<(), String> {
    let r = syscall6(SYS_MUNMAP, [addr, len as u64, 0, 0, 0, 0]);
    if r != 0 {
        return Err(format!("munmap of {len} bytes failed: {r}"));
    }
    Ok(())
}

/// `fork`: the child's ID in the parent, 0 in the child.
fn fork() -> Result<u64, String> {
    let pid = syscall6(SYS_FORK, [0; 6]);
    if pid < 0 {
        return Err(format!("fork returned {pid}"));
    }
    Ok(pid as u64)
}

/// Ends this process at once (no destructors, no buffered output: a forked child).
fn exit_now(code: u64) -> ! {
    syscall6(SYS_EXIT_GROUP, [code, 0, 0, 0, 0, 0]);
    // exit_group does not return; should it, spin rather than run the parent's code.
    loop {
        std::hint::spin_loop();
    }
}

/// Waits for child `pid` and checks it exited with status 0.
fn reap(pid: u64) -> Result<(), String> {
    let mut status = 0i32;
    let r = syscall6(SYS_WAIT4, [pid, &mut status as *mut i32 as u64, 0, 0, 0, 0]);
    if r != pid as i64 || status != 0 {
        return Err(format!("wait4({pid}) returned {r}, status {status:#x}"));
    }
    Ok(())
}

/// A pipe: (reading end, writing end).
fn pipe() -> Result<(u64, u64), String> {
    let mut fds = [0i32; 2];
    let r = syscall6(SYS_PIPE2, [fds.as_mut_ptr() as u64, 0, 0, 0, 0, 0]);
    if r != 0 {
        return Err(format!("pipe2 returned {r}"));
    }
    Ok((fds[0] as u64, fds[1] as u64))
}

fn write_byte(fd: u64) -> Result<(), i64> {
    let b = [7u8; 1];
    match syscall6(SYS_WRITE, [fd, b.as_ptr() as u64, 1, 0, 0, 0]) {
        1 => Ok(()),
        r => Err(r),
    }
}

fn read_byte(fd: u64) -> Result<(), i64> {
    let mut b = [0u8; 1];
    match syscall6(SYS_READ, [fd, b.as_mut_ptr() as u64, 1, 0, 0, 0]) {
        1 => Ok(()),
        r => Err(r),
    }
}

fn close(fd: u64) {
    syscall6(SYS_CLOSE, [fd, 0, 0, 0, 0, 0]);
}

/// The ping-pong child: echoes `count` bytes from `input` to `output`, then exits with 0,
/// or 1 at the first failure (raw system calls only).
fn echo_child(input: u64, output: u64, count: u64) -> ! {
    for _ in 0..count {
        if read_byte(input).is_err() || write_byte(output).is_err() {
            exit_now(1);
        }
    }
    exit_now(0)
}

/// The primes below `limit`, by trial division.
fn count_primes(limit: u64) -> u64 {
    let mut count = 0;
    for n in 2..limit {
        let mut d = 2;
        let mut prime = true;
        while d * d <= n {
            if n % d == 0 {
                prime = false;
                break;
            }
            d += 1;
        }
        count += u64::from(prime);
    }
    count
}

/// TSC ticks per 1000 instructions of a `dec`/`jnz` loop (two instructions an iteration).
fn tsc_check() -> u64 {
    let start = rdtsc();
    // SAFETY: a loop on one register.
    unsafe {
        asm!("2:", "dec {n}", "jnz 2b", n = inout(reg) CHECK_LOOPS => _, options(nostack, nomem));
    }
    rdtsc().wrapping_sub(start) * 1000 / (2 * CHECK_LOOPS)
}

fn bench(s: &Settings) -> Result<(), String> {
    println!(
        "linuxbench: start syscalls={} pages={} forks={} trips={} primes={} runs={}",
        s.syscalls, s.pages, s.forks, s.trips, s.primes, s.runs
    );
    println!(
        "linuxbench: tsc_check ticks_per_1000_instructions={}",
        tsc_check()
    );
    let runs = s.runs;

    let best = best_of(runs, || {
        timed(|| {
            for _ in 0..s.syscalls {
                black_box(syscall6(SYS_GETPPID, [0; 6]));
            }
            Ok(())
        })
    })?;
    report("null_syscall", s.syscalls, best, "");

    let len = (s.pages as usize) * PAGE;
    let best = best_of(runs, || {
        let addr = map(len)?;
        let t = timed(|| {
            for page in (0..len).step_by(PAGE) {
                // SAFETY: `addr..addr + len` is a fresh read-write mapping of this
                // program's (`map`) that nothing else refers to.
                unsafe { std::ptr::write_volatile((addr as usize + page) as *mut u8, 1) };
            }
            Ok(())
        });
        unmap(addr, len)?;
        t
    })?;
    report("page_fault", s.pages, best, "");

    let best = best_of(runs, || {
        timed(|| {
            for _ in 0..s.forks {
                match fork()? {
                    0 => exit_now(0),
                    pid => reap(pid)?,
                }
            }
            Ok(())
        })
    })?;
    report("fork_exit", s.forks, best, "");

    let (to_child, from_parent) = pipe()?;
    let (to_parent, from_child) = pipe()?;
    let child = match fork()? {
        0 => echo_child(to_child, from_child, s.trips.saturating_mul(runs)),
        pid => pid,
    };
    close(to_child);
    close(from_child);
    let best = best_of(runs, || {
        timed(|| {
            for _ in 0..s.trips {
                write_byte(from_parent).map_err(|e| format!("write to the child: {e}"))?;
                read_byte(to_parent).map_err(|e| format!("read from the child: {e}"))?;
            }
            Ok(())
        })
    });
    close(from_parent);
    close(to_parent);
    // Reaped even when a round trip failed (the child sees the pipes close and ends).
    let reaped = reap(child);
    let best = best?;
    reaped?;
    report("pipe_pingpong", s.trips, best, "");

    let mut primes = 0;
    let best = best_of(runs, || {
        timed(|| {
            primes = count_primes(black_box(s.primes));
            Ok(())
        })
    })?;
    report("cpu_loop", 1, best, &format!(" primes={primes}"));
    Ok(())
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match parse_args(&args).and_then(|s| bench(&s)) {
        Ok(()) => println!("linuxbench: done"),
        Err(e) => {
            println!("linuxbench: failed: {e}");
            eprintln!(
                "usage: linuxbench [syscalls=N] [pages=N] [forks=N] [trips=N] [primes=N] [runs=N]"
            );
            std::process::exit(1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(words: &[&str]) -> Vec<String> {
        words.iter().map(|w| w.to_string()).collect()
    }

    #[test]
    fn settings_parse_and_refuse() {
        assert_eq!(parse_args(&[]).unwrap(), Settings::default());
        let s = parse_args(&args(&["syscalls=10", "runs=2", "primes=100"])).unwrap();
        assert_eq!((s.syscalls, s.runs, s.primes), (10, 2, 100));
        assert_eq!(s.pages, Settings::default().pages);
        for bad in [
            "syscalls",
            "runs=0",
            "forks=-1",
            "trips=x",
            "speed=3",
            "pages=2000000",
        ] {
            assert!(parse_args(&args(&[bad])).is_err(), "{bad}");
        }
    }

    #[test]
    fn primes_are_counted() {
        assert_eq!(count_primes(10), 4);
        assert_eq!(count_primes(100_000), 9592);
    }

    #[test]
    fn the_best_run_is_the_one_with_fewest_ticks() {
        let mut runs = [(30, 31), (10, 12), (20, 19)].into_iter();
        let best = best_of(3, || Ok(runs.next().unwrap())).unwrap();
        assert_eq!(best, Best { ticks: 10, ns: 12 });
        assert!(best_of(2, || Err::<(u64, u64), _>("no".into())).is_err());
    }
}
