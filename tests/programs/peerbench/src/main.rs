//! `peerbench`: the benchmark program of issue 13's side-by-side with Xen. One static
//! binary for `x86_64-unknown-linux-musl`, built once (`cargo xtask bench --peer xen` and the
//! scenarios' initrd use the same file), run unchanged in three environments on the same
//! emulated machine: Linux booted natively, Linux as Xen's PV dom0, and Xenia's dom0.
//!
//! Usage: `peerbench [iters=N] [runs=N] [primes=N]`. Every row is the minimum over `runs`
//! runs of TSC ticks per operation; under QEMU's `-icount shift=0,sleep=off` one tick is one
//! instruction (the `tsc_check` line shows it: the ticks of 1000 instructions of a
//! `dec`/`jnz` loop, 1000 when it holds). Each figure includes its loop's own few
//! instructions, the same in every environment. Rows, each printed as
//! `peer <row> <ticks per operation>`:
//!
//! - `null_syscall`: `getpid` through a raw `syscall` instruction;
//! - `write_null`: a 1-byte `write` to `/dev/null` (raw `syscall`);
//! - `page_fault`: a 4 MiB anonymous private mapping, one write to each page, `munmap`,
//!   per page (both kernels fault each page in at its first write);
//! - `mmap_64k`: `mmap` of 64 KiB and `munmap`, untouched (both kernels map nothing until
//!   a page is touched: the row is the cost of recording and dropping the area);
//! - `clock_gettime`: `clock_gettime(CLOCK_MONOTONIC)` through musl (which uses the vDSO
//!   where the kernel offers one);
//! - `fork_exit_wait`: `fork`, the child's `exit_group(0)` at once, the parent's `wait4`;
//! - `pipe_pingpong`: one byte to a child through a pipe and back through another, per
//!   round trip (the child is forked once, before the runs);
//! - `cpu_loop`: the primes below `primes` by trial division, per run;
//!
//! then `peer primes_count <n>` (a check of the CPU-bound row's work) and `peer done`.
//! `iters` (default 10000) is the operations per run of the system-call rows, ten times
//! those of `mmap_64k` and `pipe_pingpong` and a hundred times those of `fork_exit_wait`;
//! `runs` defaults to 5 and `primes` to 100000.

use std::arch::asm;
use std::fs::OpenOptions;
use std::hint::black_box;
use std::os::fd::AsRawFd;

/// Linux x86-64 system call numbers (`arch/x86/entry/syscalls/syscall_64.tbl`).
const SYS_WRITE: u64 = 1;
const SYS_MMAP: u64 = 9;
const SYS_MUNMAP: u64 = 11;
const SYS_GETPID: u64 = 39;
const SYS_READ: u64 = 0;
const SYS_CLOSE: u64 = 3;
const SYS_FORK: u64 = 57;
const SYS_WAIT4: u64 = 61;
const SYS_EXIT_GROUP: u64 = 231;
const SYS_PIPE2: u64 = 293;
/// `PROT_READ | PROT_WRITE`.
const PROT_RW: u64 = 3;
/// `MAP_PRIVATE | MAP_ANONYMOUS`.
const MAP_PRIVATE_ANON: u64 = 0x22;
/// `CLOCK_MONOTONIC`.
const CLOCK_MONOTONIC: i32 = 1;
const PAGE: usize = 4096;
/// The page-fault row's mapping.
const FAULT_BYTES: usize = 4 << 20;
/// The mmap row's mapping.
const MMAP_BYTES: usize = 64 << 10;

/// Iterations of the `dec`/`jnz` loop that checks the TSC's rate.
const CHECK_LOOPS: u64 = 100_000;

/// `struct timespec` of the x86-64 ABI (written by the C library, never read here).
#[repr(C)]
#[allow(dead_code)]
struct Timespec {
    sec: i64,
    nsec: i64,
}

unsafe extern "C" {
    /// musl's `clock_gettime` (vDSO first, then the system call).
    fn clock_gettime(clock: i32, ts: *mut Timespec) -> i32;
}

/// The time-stamp counter.
fn rdtsc() -> u64 {
    let (lo, hi): (u32, u32);
    // SAFETY: RDTSC reads a counter and writes only EAX and EDX; ring 3 may run it in the
    // three environments (none sets CR4.TSD for its dom0 or for Linux processes).
    unsafe { asm!("lfence", "rdtsc", out("eax") lo, out("edx") hi, options(nostack, nomem)) };
    (u64::from(hi) << 32) | u64::from(lo)
}

/// A raw system call with up to six arguments.
fn syscall6(nr: u64, a: [u64; 6]) -> i64 {
    let ret: i64;
    // SAFETY: the calls made here are getpid, write from a live buffer, and mmap/munmap of
    // areas this program owns and no Rust object refers to; SYSCALL clobbers only RCX and
    // R11 besides the return register.
    unsafe {
        asm!("syscall", inlateout("rax") nr as i64 => ret, in("rdi") a[0], in("rsi") a[1],
            in("rdx") a[2], in("r10") a[3], in("r8") a[4], in("r9") a[5],
            lateout("rcx") _, lateout("r11") _, options(nostack));
    }
    ret
}

/// An anonymous private read-write mapping of `len` bytes.
fn map(len: usize) -> Result<u64, String> {
    let addr = syscall6(
        SYS_MMAP,
        [0, len as u64, PROT_RW, MAP_PRIVATE_ANON, u64::MAX, 0],
    );
    if (-4095..0).contains(&addr) {
        return Err(format!("mmap of {len} bytes failed: errno {}", -addr));
    }
    Ok(addr as u64)
}

/// Writes one byte to each page of the mapping at `addr`, then unmaps it.
fn touch_and_unmap(addr: u64, len: usize) -> Result<(), String> {
    for page in (0..len).step_by(PAGE) {
        // SAFETY: `addr..addr + len` is a read-write mapping of this program's (from
        // `map`) that nothing else refers to.
        unsafe { std::ptr::write_volatile((addr as usize + page) as *mut u8, 1) };
    }
    unmap(addr, len)
}

/// Unmaps the mapping at `addr`.
fn unmap(addr: u64, len: usize) -> Result<(), String> {
    let r = syscall6(SYS_MUNMAP, [addr, len as u64, 0, 0, 0, 0]);
    if r != 0 {
        return Err(format!("munmap of {len} bytes failed: {r}"));
    }
    Ok(())
}

/// The minimum over `runs` of the ticks `body` takes, divided by `ops` (rounded).
fn measure(
    runs: u64,
    ops: u64,
    mut body: impl FnMut() -> Result<(), String>,
) -> Result<u64, String> {
    let mut best = u64::MAX;
    for _ in 0..runs {
        let start = rdtsc();
        body()?;
        best = best.min(rdtsc().wrapping_sub(start));
    }
    Ok((best + ops / 2) / ops.max(1))
}

/// `fork`: the child's ID in the parent, 0 in the child.
fn fork() -> Result<u64, String> {
    let pid = syscall6(SYS_FORK, [0; 6]);
    if pid < 0 {
        return Err(format!("fork returned {pid}"));
    }
    Ok(pid as u64)
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

/// One byte through `fd`, each way: `Err` unless exactly one moved.
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

/// The child of the ping-pong row: echoes `count` bytes from `input` to `output`, then
/// exits (raw system calls only: it shares the parent's copied memory and nothing else).
fn echo_child(input: u64, output: u64, count: u64) -> ! {
    let mut code = 0;
    for _ in 0..count {
        if read_byte(input).is_err() || write_byte(output).is_err() {
            code = 1;
            break;
        }
    }
    syscall6(SYS_EXIT_GROUP, [code, 0, 0, 0, 0, 0]);
    unreachable!("exit_group returned")
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

/// Ticks per 1000 instructions of a `dec`/`jnz` loop (two instructions an iteration).
fn tsc_check() -> u64 {
    let start = rdtsc();
    // SAFETY: a register-only loop.
    unsafe {
        asm!("2:", "dec {n}", "jnz 2b", n = inout(reg) CHECK_LOOPS => _, options(nostack, nomem));
    }
    let ticks = rdtsc().wrapping_sub(start);
    ticks * 1000 / (2 * CHECK_LOOPS)
}

/// The command line's settings.
struct Settings {
    iters: u64,
    runs: u64,
    primes: u64,
}

fn parse_args(args: &[String]) -> Result<Settings, String> {
    let mut s = Settings {
        iters: 10_000,
        runs: 5,
        primes: 100_000,
    };
    for arg in args {
        let (key, value) = arg
            .split_once('=')
            .ok_or_else(|| format!("{arg:?}: expected key=value"))?;
        let value: u64 = value
            .parse()
            .ok()
            .filter(|&v| v > 0)
            .ok_or_else(|| format!("{arg:?}: the value must be a positive number"))?;
        match key {
            "iters" => s.iters = value,
            "runs" => s.runs = value,
            "primes" => s.primes = value,
            _ => return Err(format!("{arg:?}: unknown setting (iters, runs, primes)")),
        }
    }
    Ok(s)
}

fn bench(s: &Settings) -> Result<(), String> {
    let row = |name: &str, value: u64| println!("peer {name} {value}");
    row("tsc_check", tsc_check());
    let (runs, iters) = (s.runs, s.iters);

    row(
        "null_syscall",
        measure(runs, iters, || {
            for _ in 0..iters {
                black_box(syscall6(SYS_GETPID, [0; 6]));
            }
            Ok(())
        })?,
    );

    let null = OpenOptions::new()
        .write(true)
        .open("/dev/null")
        .map_err(|e| format!("cannot open /dev/null: {e}"))?;
    let fd = null.as_raw_fd() as u64;
    let byte = [0u8; 1];
    row(
        "write_null",
        measure(runs, iters, || {
            for _ in 0..iters {
                let r = syscall6(SYS_WRITE, [fd, byte.as_ptr() as u64, 1, 0, 0, 0]);
                if r != 1 {
                    return Err(format!("write to /dev/null returned {r}"));
                }
            }
            Ok(())
        })?,
    );

    row(
        "page_fault",
        measure(runs, (FAULT_BYTES / PAGE) as u64, || {
            touch_and_unmap(map(FAULT_BYTES)?, FAULT_BYTES)
        })?,
    );

    let maps = (iters / 10).max(1);
    row(
        "mmap_64k",
        measure(runs, maps, || {
            for _ in 0..maps {
                unmap(map(MMAP_BYTES)?, MMAP_BYTES)?;
            }
            Ok(())
        })?,
    );

    let mut ts = Timespec { sec: 0, nsec: 0 };
    row(
        "clock_gettime",
        measure(runs, iters, || {
            for _ in 0..iters {
                // SAFETY: `ts` is a live timespec the call writes.
                let r = unsafe { clock_gettime(CLOCK_MONOTONIC, &mut ts) };
                if r != 0 {
                    return Err(format!("clock_gettime returned {r}"));
                }
                black_box(&ts);
            }
            Ok(())
        })?,
    );

    let forks = (iters / 100).max(1);
    row(
        "fork_exit_wait",
        measure(runs, forks, || {
            for _ in 0..forks {
                match fork()? {
                    0 => {
                        syscall6(SYS_EXIT_GROUP, [0; 6]);
                        unreachable!("exit_group returned");
                    }
                    pid => reap(pid)?,
                }
            }
            Ok(())
        })?,
    );

    let trips = (iters / 10).max(1);
    let (to_child, from_parent) = pipe()?;
    let (to_parent, from_child) = pipe()?;
    let child = match fork()? {
        0 => echo_child(to_child, from_child, trips * runs),
        pid => pid,
    };
    for fd in [to_child, from_child] {
        syscall6(SYS_CLOSE, [fd, 0, 0, 0, 0, 0]);
    }
    row(
        "pipe_pingpong",
        measure(runs, trips, || {
            for _ in 0..trips {
                write_byte(from_parent).map_err(|e| format!("write to the child: {e}"))?;
                read_byte(to_parent).map_err(|e| format!("read from the child: {e}"))?;
            }
            Ok(())
        })?,
    );
    reap(child)?;
    for fd in [from_parent, to_parent] {
        syscall6(SYS_CLOSE, [fd, 0, 0, 0, 0, 0]);
    }

    let mut primes = 0;
    row(
        "cpu_loop",
        measure(runs, 1, || {
            primes = count_primes(black_box(s.primes));
            Ok(())
        })?,
    );
    row("primes_count", primes);
    Ok(())
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = parse_args(&args).and_then(|s| bench(&s));
    match result {
        Ok(()) => println!("peer done"),
        Err(e) => {
            println!("peer failed: {e}");
            eprintln!("usage: peerbench [iters=N] [runs=N] [primes=N]");
            std::process::exit(1);
        }
    }
}
