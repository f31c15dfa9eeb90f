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
//! the least of five measurements, 1000 when it holds). Beside the ticks each line has the
//! same run's `clock_gettime(CLOCK_MONOTONIC)` difference: virtual nanoseconds as the
//! kernel's own clocksource (natively the TSC or the HPET, in a Xen PV domU the Xen
//! clocksource) counts them, which shows whether the guest's clock agrees with the TSC.
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
//!
//! **Small on purpose.** The program travels in the Debian domU's initramfs, which dom0 holds
//! in its initrd and `xl` reads whole at `xl create`. With Rust's `std` it was 560 KB, and
//! twice that in dom0's memory was more than the default `dom0_mem=64M` had to spare: `xl
//! create /etc/xen/debian.cfg` could no longer unpack the kernel. So its musl build is
//! `no_std`: musl's start-up code calls `main`, output goes through `core::fmt` and
//! `write`, and nothing allocates. Built for the host (its unit tests, clippy, `cargo build
//! --workspace`) it uses `std` and an ordinary `main`.
#![cfg_attr(all(not(test), target_env = "musl"), no_std, no_main)]

use core::arch::asm;
use core::fmt::{self, Write as _};
use core::hint::black_box;

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
    // writes of live buffers, pipe2 into a live array, fork, wait4 into a live status,
    // exit_group, and mmap/madvise/munmap of areas this program owns that no Rust object
    // refers to; SYSCALL clobbers only RCX and R11 besides the return register.
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

/// Standard output through `write`, unbuffered.
struct Stdout;

impl fmt::Write for Stdout {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let mut rest = s.as_bytes();
        while !rest.is_empty() {
            let n = syscall6(
                SYS_WRITE,
                [1, rest.as_ptr() as u64, rest.len() as u64, 0, 0, 0],
            );
            if n <= 0 {
                return Err(fmt::Error);
            }
            rest = &rest[(n as usize).min(rest.len())..];
        }
        Ok(())
    }
}

/// Prints one line on standard output.
fn line(args: fmt::Arguments<'_>) {
    let _ = Stdout.write_fmt(format_args!("{args}\n"));
}

/// Why the program stopped: what failed, about what (an argument, or empty), and a number
/// (a system call's return, or 0).
#[derive(Clone, Copy, Debug, PartialEq)]
struct Error<'a> {
    what: &'static str,
    about: &'a str,
    code: i64,
}

impl fmt::Display for Error<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.about.is_empty(), self.code) {
            (true, code) => write!(f, "{} ({code})", self.what),
            (false, 0) => write!(f, "{:?}: {}", self.about, self.what),
            (false, code) => write!(f, "{:?}: {} ({code})", self.about, self.what),
        }
    }
}

/// The error of a system call that returned `code`.
fn sys_error(what: &'static str, code: i64) -> Error<'static> {
    Error {
        what,
        about: "",
        code,
    }
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
fn parse_args<'a>(args: impl IntoIterator<Item = &'a str>) -> Result<Settings, Error<'a>> {
    let mut s = Settings::default();
    for arg in args {
        let bad = |what| Error {
            what,
            about: arg,
            code: 0,
        };
        let (key, value) = arg.split_once('=').ok_or(bad("expected key=value"))?;
        let value: u64 = value
            .parse()
            .ok()
            .filter(|v| (1..=MAX_SETTING).contains(v))
            .ok_or(bad("the value must be a number from 1 to 100000000"))?;
        match key {
            "syscalls" => s.syscalls = value,
            "pages" if value > MAX_PAGES => return Err(bad("at most 1048576 pages")),
            "pages" => s.pages = value,
            "forks" => s.forks = value,
            "trips" => s.trips = value,
            "primes" => s.primes = value,
            "runs" => s.runs = value,
            _ => {
                return Err(bad(
                    "unknown setting (syscalls, pages, forks, trips, primes, runs)",
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

/// What a test's run returns: the (TSC ticks, monotonic nanoseconds) of its timed part.
type Run = Result<(u64, u64), Error<'static>>;

/// Runs `body` `runs` times; each run returns what [`timed`] measured of it, so that set-up
/// such as a fresh mapping stays outside.
fn best_of(runs: u64, mut body: impl FnMut() -> Run) -> Result<Best, Error<'static>> {
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
fn timed(f: impl FnOnce() -> Result<(), Error<'static>>) -> Run {
    let ns0 = monotonic_ns();
    let t0 = rdtsc();
    f()?;
    let t1 = rdtsc();
    let ns1 = monotonic_ns();
    Ok((t1.wrapping_sub(t0), ns1.saturating_sub(ns0)))
}

/// Prints a test's line.
fn report(test: &str, iters: u64, best: Best, extra: fmt::Arguments<'_>) {
    let per = |v: u64| (v + iters / 2) / iters.max(1);
    line(format_args!(
        "linuxbench: {test} iters={iters} ticks_per_iter={} ns_per_iter={}{extra}",
        per(best.ticks),
        per(best.ns)
    ));
}

/// An anonymous private read-write mapping of `len` bytes, huge pages declined.
fn map(len: usize) -> Result<u64, Error<'static>> {
    let addr = syscall6(
        SYS_MMAP,
        [0, len as u64, PROT_RW, MAP_PRIVATE_ANON, u64::MAX, 0],
    );
    if (-4095..0).contains(&addr) {
        return Err(sys_error("mmap failed", addr));
    }
    // A kernel without transparent huge pages says EINVAL: nothing to decline then.
    let _ = syscall6(
        SYS_MADVISE,
        [addr as u64, len as u64, MADV_NOHUGEPAGE, 0, 0, 0],
    );
    Ok(addr as u64)
}

fn unmap(addr: u64, len: usize) -> Result<(), Error<'static>> {
    let r = syscall6(SYS_MUNMAP, [addr, len as u64, 0, 0, 0, 0]);
    if r != 0 {
        return Err(sys_error("munmap failed", r));
    }
    Ok(())
}

/// `fork`: the child's ID in the parent, 0 in the child.
fn fork() -> Result<u64, Error<'static>> {
    let pid = syscall6(SYS_FORK, [0; 6]);
    if pid < 0 {
        return Err(sys_error("fork failed", pid));
    }
    Ok(pid as u64)
}

/// Ends this process at once (no destructors, no buffered output: a forked child).
fn exit_now(code: u64) -> ! {
    syscall6(SYS_EXIT_GROUP, [code, 0, 0, 0, 0, 0]);
    // exit_group does not return; should it, spin rather than run the parent's code.
    loop {
        core::hint::spin_loop();
    }
}

/// Waits for child `pid` and checks it exited with status 0.
fn reap(pid: u64) -> Result<(), Error<'static>> {
    let mut status = 0i32;
    let r = syscall6(SYS_WAIT4, [pid, &mut status as *mut i32 as u64, 0, 0, 0, 0]);
    if r != pid as i64 {
        return Err(sys_error("wait4 failed", r));
    }
    if status != 0 {
        return Err(sys_error(
            "a child ended with a nonzero status",
            status.into(),
        ));
    }
    Ok(())
}

/// A pipe: (reading end, writing end).
fn pipe() -> Result<(u64, u64), Error<'static>> {
    let mut fds = [0i32; 2];
    let r = syscall6(SYS_PIPE2, [fds.as_mut_ptr() as u64, 0, 0, 0, 0, 0]);
    if r != 0 {
        return Err(sys_error("pipe2 failed", r));
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

fn bench(s: &Settings) -> Result<(), Error<'static>> {
    line(format_args!(
        "linuxbench: start syscalls={} pages={} forks={} trips={} primes={} runs={}",
        s.syscalls, s.pages, s.forks, s.trips, s.primes, s.runs
    ));
    line(format_args!(
        "linuxbench: tsc_check ticks_per_1000_instructions={}",
        // The least of five: an interrupt inside one loop (in a domU, dom0 relaying the
        // console) adds its own instructions to that measurement only.
        (0..5).map(|_| tsc_check()).min().unwrap_or(0)
    ));
    let runs = s.runs;
    let none = || format_args!("");

    let best = best_of(runs, || {
        timed(|| {
            for _ in 0..s.syscalls {
                black_box(syscall6(SYS_GETPPID, [0; 6]));
            }
            Ok(())
        })
    })?;
    report("null_syscall", s.syscalls, best, none());

    let len = (s.pages as usize) * PAGE;
    let best = best_of(runs, || {
        let addr = map(len)?;
        let t = timed(|| {
            for page in (0..len).step_by(PAGE) {
                // SAFETY: `addr..addr + len` is a fresh read-write mapping of this
                // program's (`map`) that nothing else refers to.
                unsafe { core::ptr::write_volatile((addr as usize + page) as *mut u8, 1) };
            }
            Ok(())
        });
        unmap(addr, len)?;
        t
    })?;
    report("page_fault", s.pages, best, none());

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
    report("fork_exit", s.forks, best, none());

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
                write_byte(from_parent).map_err(|e| sys_error("write to the child failed", e))?;
                read_byte(to_parent).map_err(|e| sys_error("read from the child failed", e))?;
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
    report("pipe_pingpong", s.trips, best, none());

    let mut primes = 0;
    let best = best_of(runs, || {
        timed(|| {
            primes = count_primes(black_box(s.primes));
            Ok(())
        })
    })?;
    report("cpu_loop", 1, best, format_args!(" primes={primes}"));
    Ok(())
}

/// Parses the settings, runs the tests, prints the last line; returns the exit status.
fn run<'a>(args: impl IntoIterator<Item = &'a str>) -> i32 {
    let settings = match parse_args(args) {
        Ok(s) => s,
        Err(e) => {
            line(format_args!("linuxbench: failed: {e}"));
            line(format_args!(
                "usage: linuxbench [syscalls=N] [pages=N] [forks=N] [trips=N] [primes=N] [runs=N]"
            ));
            return 1;
        }
    };
    match bench(&settings) {
        Ok(()) => {
            line(format_args!("linuxbench: done"));
            0
        }
        Err(e) => {
            line(format_args!("linuxbench: failed: {e}"));
            1
        }
    }
}

/// The musl build's entry, called by musl's start-up code (`__libc_start_main`) with the
/// command line.
#[cfg(all(not(test), target_env = "musl"))]
#[unsafe(no_mangle)]
extern "C" fn main(argc: i32, argv: *const *const core::ffi::c_char) -> i32 {
    let count = usize::try_from(argc).unwrap_or(0);
    let args = (1..count).filter_map(|i| {
        // SAFETY: the C start-up code passes `argc` pointers in `argv`, each to a
        // NUL-terminated string that lives as long as the process and is never written.
        let arg = unsafe { core::ffi::CStr::from_ptr(*argv.add(i)) };
        arg.to_str().ok()
    });
    run(args)
}

/// Without `std`, a panic (none is expected: nothing here indexes out of bounds or
/// unwraps) ends the process with status 101, as `std` would.
#[cfg(all(not(test), target_env = "musl"))]
#[panic_handler]
fn panic(_: &core::panic::PanicInfo<'_>) -> ! {
    line(format_args!("linuxbench: failed: panic"));
    exit_now(101)
}

// musl's `libc.a` (self-contained in Rust's musl target): its start-up code and
// `__libc_start_main`; nothing else of it is called.
#[cfg(all(not(test), target_env = "musl"))]
#[link(name = "c", kind = "static", modifiers = "-bundle")]
unsafe extern "C" {}

/// The host build (clippy, `cargo build --workspace`): the same program on `std`'s entry.
#[cfg(not(target_env = "musl"))]
fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    std::process::exit(run(args.iter().map(String::as_str)));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_parse_and_refuse() {
        assert_eq!(parse_args([]).unwrap(), Settings::default());
        let s = parse_args(["syscalls=10", "runs=2", "primes=100"]).unwrap();
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
            assert_eq!(parse_args([bad]).unwrap_err().about, bad);
        }
        let e = parse_args(["speed=3"]).unwrap_err().to_string();
        assert!(e.starts_with("\"speed=3\": unknown setting"), "{e}");
        assert_eq!(
            sys_error("fork failed", -11).to_string(),
            "fork failed (-11)"
        );
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
        assert!(best_of(2, || Err(sys_error("no", -1))).is_err());
    }
}
