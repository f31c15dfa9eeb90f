//! # compute: a demo domU that counts primes, then powers off
//!
//! One of the two demo guests of Xenia's default image (`/boot/compute.elf` in dom0's
//! initrd, started by `xl create /etc/xen/compute.cfg`). It counts the primes below a
//! limit (1000000 by default) with a segmented sieve of Eratosthenes in ten steps, prints
//! its progress and a result anyone can check, and shuts its domain down with
//! `SCHEDOP_shutdown(poweroff)`, so the toolstack applies `on_poweroff`:
//!
//! ```text
//! compute: counting the primes below 1000000 in 10 steps (168 sieving primes)
//! compute: step 1/10: 9592 primes below 100000
//! ...
//! compute: step 10/10: 78498 primes below 1000000
//! compute: 78498 primes below 1000000
//! compute: the largest is 999983
//! compute: done in 412 ms; powering off
//! ```
//!
//! Command line: `limit=<n>` (digits, or with a `k`, `M` or `G` suffix: `limit=10M`; at
//! most 10G); `fault=after` to take an invalid-opcode exception after the first step
//! instead of finishing (its trap handler reports it and crashes the domain, so the
//! toolstack applies `on_crash`: a way to see that action at work); and `console=hypervisor` to write to the hypervisor's log instead of the
//! console ring. Run as dom0 it writes with `console_io`, which is how `cargo xtask test`
//! checks it.
//!
//! **On several vCPUs.** With `vcpus = N` in its xl.cfg (N > 1; the toolstack lists the
//! vCPUs to bring up in the device page), it starts vCPUs 1 to N−1 (at most
//! `MAX_WORKERS` in all) and splits the numbers below the limit into N equal shares, one
//! per vCPU, each sieved by its own vCPU on its own stack. vCPU 0 does its share in ten steps
//! and prints every vCPU's progress after each, then waits for the others, which take
//! themselves down (`VCPUOP_down`) when done, and prints each share and the sum, which is
//! the count `vcpus = 1` finds:
//!
//! ```text
//! compute: counting the primes below 1000000 in 10 steps on 4 vCPUs (168 sieving primes)
//! compute: progress: vCPU 0 10% (2261 primes), vCPU 1 0% (0 primes), ...
//! ...
//! compute: vCPU 2: 19556 primes in [500000, 750000)
//! compute: 78498 primes below 1000000
//! ```
//!
//! The sieve is `xenia_demos::primes`, unit-tested on the host; the runtime is
//! `xenia-guest-rt`, with `src/domu.rs` shared with `echo`. A CPU-bound domU needs nothing special: the
//! hypervisor's scheduler preempts it, and it only blocks to let dom0's console backend
//! catch up with its output.
//!
//! On the build host (`cargo test --workspace`) this is an empty program.

#![cfg_attr(target_os = "none", no_std, no_main)]
#![forbid(unsafe_op_in_unsafe_fn)]

#[cfg(target_os = "none")]
#[path = "../domu.rs"]
mod domu;

#[cfg(target_os = "none")]
use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};

#[cfg(target_os = "none")]
use guest_abi::sched::ShutdownReason;
#[cfg(target_os = "none")]
use xenia_demos::{cmdline, primes};
#[cfg(target_os = "none")]
use xenia_guest_rt::smp::{self, Stack};
#[cfg(target_os = "none")]
use xenia_guest_rt::{check, console, events, print, println, time};

/// Most vCPUs the work is split across (vCPU 0 included).
#[cfg(target_os = "none")]
pub const MAX_WORKERS: usize = 8;
/// Stack of each secondary vCPU: a sieve (about 70 KiB), the copies an unoptimised build
/// makes of it while it is built, and what calls it (as the boot stack).
#[cfg(target_os = "none")]
const WORKER_STACK: usize = BOOT_STACK_SIZE;
/// How long vCPU 0 waits for the other vCPUs' shares at most.
#[cfg(target_os = "none")]
const WORKERS_WAIT_NS: u64 = 600_000 * time::NS_PER_MS;
/// How often vCPU 0 prints progress while it waits for the others.
#[cfg(target_os = "none")]
const PROGRESS_NS: u64 = 500 * time::NS_PER_MS;

/// The secondary vCPUs' stacks.
#[cfg(target_os = "none")]
static STACKS: [Stack<WORKER_STACK>; MAX_WORKERS - 1] = [const { Stack::new() }; MAX_WORKERS - 1];

/// One vCPU's share: `[lo, hi)`, and how far it got (written by that vCPU, read by vCPU 0).
#[cfg(target_os = "none")]
struct Share {
    lo: AtomicU64,
    hi: AtomicU64,
    done: AtomicU64,
    count: AtomicU64,
    /// The largest prime found plus one (0: none yet).
    largest_plus_one: AtomicU64,
    finished: AtomicU32,
}

#[cfg(target_os = "none")]
static SHARES: [Share; MAX_WORKERS] = [const {
    Share {
        lo: AtomicU64::new(0),
        hi: AtomicU64::new(0),
        done: AtomicU64::new(0),
        count: AtomicU64::new(0),
        largest_plus_one: AtomicU64::new(0),
        finished: AtomicU32::new(0),
    }
}; MAX_WORKERS];
/// The limit, for the secondary vCPUs.
#[cfg(target_os = "none")]
static LIMIT: AtomicU64 = AtomicU64::new(0);

/// The sieve lives on the stack: room for it and for what calls it.
#[cfg(target_os = "none")]
const BOOT_STACK_SIZE: usize = 256 * 1024;

#[cfg(target_os = "none")]
xenia_guest_rt::entry!(main, boot_stack = BOOT_STACK_SIZE);

/// The limit without `limit=`.
#[cfg(target_os = "none")]
const DEFAULT_LIMIT: u64 = 1_000_000;
/// Progress lines.
#[cfg(target_os = "none")]
const STEPS: u64 = 10;

/// The demo, with events masked.
#[cfg(target_os = "none")]
fn main() -> ! {
    let si = domu::start();
    let limit = limit(si.cmdline_bytes());
    let workers = (smp::vcpus_at_start() as usize).min(MAX_WORKERS);
    if workers > 1 {
        split(limit, workers)
    }
    single(si, limit)
}

/// The work on vCPU 0 alone. Its own function, like [`split`], so that the two sieves'
/// frames are never on the boot stack at once.
#[cfg(target_os = "none")]
#[inline(never)]
fn single(si: &guest_abi::start_info::StartInfo, limit: u64) -> ! {
    let Ok(mut sieve) = primes::Sieve::new(limit) else {
        unreachable!("limit() keeps the limit within primes::MAX_LIMIT")
    };
    println!(
        "compute: counting the primes below {limit} in {STEPS} steps ({} sieving primes)",
        sieve.base_primes()
    );
    let start = time::now_ns();
    for k in 1..=STEPS {
        let end = primes::step_end(limit, k, STEPS);
        sieve.advance_to(end);
        println!(
            "compute: step {k}/{STEPS}: {} primes below {end}",
            sieve.count()
        );
        if k == 1 && cmdline::value(si.cmdline_bytes(), "fault") == Some(b"after") {
            println!("compute: fault=after: executing ud2");
            console::flush();
            // SAFETY: ud2 raises #UD, which the trap table sends to its handler; that
            // reports it and crashes the domain, as the command line asked.
            unsafe { core::arch::asm!("ud2") };
        }
    }
    let ms = (time::now_ns() - start) / time::NS_PER_MS;
    println!("compute: {} primes below {limit}", sieve.count());
    if let Some(largest) = sieve.largest() {
        println!("compute: the largest is {largest}");
    }
    println!("compute: done in {ms} ms; powering off");
    check::shutdown(ShutdownReason::Poweroff)
}

/// How many sieving primes `limit` needs; its own frame, gone before the sieving starts.
#[cfg(target_os = "none")]
#[inline(never)]
fn base_primes(limit: u64) -> usize {
    primes::Sieve::new(limit).map_or(0, |s| s.base_primes())
}

/// Share `k` of `workers` of the numbers below `limit`.
#[cfg(target_os = "none")]
fn share_bounds(limit: u64, k: usize, workers: usize) -> (u64, u64) {
    let (k, n) = (k as u64, workers as u64);
    (
        primes::step_end(limit, k, n),
        primes::step_end(limit, k + 1, n),
    )
}

/// Sieves `[lo, hi)` of `limit` for share `k`, in `steps` steps, publishing progress after
/// each; `after_step(step)` runs after each (vCPU 0 prints there). Its own function, so
/// that its sieve is not in [`split`]'s frame: inlined there, it shared the boot stack with
/// [`base_primes`]' sieve and overflowed it.
#[cfg(target_os = "none")]
#[inline(never)]
fn work(k: usize, limit: u64, steps: u64, mut after_step: impl FnMut(u64)) {
    let share = &SHARES[k];
    let (lo, hi) = (
        share.lo.load(Ordering::SeqCst),
        share.hi.load(Ordering::SeqCst),
    );
    let Ok(mut sieve) = primes::Sieve::starting_at(limit, lo) else {
        unreachable!("limit() keeps the limit within primes::MAX_LIMIT")
    };
    for step in 1..=steps {
        sieve.advance_to(lo + primes::step_end(hi - lo, step, steps));
        share.done.store(sieve.done() - lo, Ordering::SeqCst);
        share.count.store(sieve.count(), Ordering::SeqCst);
        if let Some(p) = sieve.largest() {
            share.largest_plus_one.store(p + 1, Ordering::SeqCst);
        }
        after_step(step);
    }
    share.finished.store(1, Ordering::SeqCst);
}

/// A secondary vCPU: its share, then down.
#[cfg(target_os = "none")]
#[inline(never)]
fn worker(vcpu: u32) -> ! {
    work(vcpu as usize, LIMIT.load(Ordering::SeqCst), STEPS, |_| {});
    // Done: the vCPU takes itself down (vCPU 0 stays up, so the domain goes on).
    let _ = guest_abi::calls::vcpu_down(vcpu);
    loop {
        let _ = guest_abi::calls::sched_block();
    }
}

/// Every share's progress, on one line.
#[cfg(target_os = "none")]
fn progress(workers: usize) {
    // One line in pieces: the console sends whole lines.
    print!("compute: progress:");
    for (k, share) in SHARES[..workers].iter().enumerate() {
        let size = share.hi.load(Ordering::SeqCst) - share.lo.load(Ordering::SeqCst);
        let pct = (share.done.load(Ordering::SeqCst) * 100)
            .checked_div(size)
            .unwrap_or(100);
        let sep = if k == 0 { " " } else { ", " };
        print!(
            "{sep}vCPU {k} {pct}% ({} primes)",
            share.count.load(Ordering::SeqCst)
        );
    }
    println!();
}

/// The work on `workers` vCPUs: vCPU 0 starts the others, does its own share with progress,
/// waits for the rest, reports and powers off.
#[cfg(target_os = "none")]
#[inline(never)]
fn split(limit: u64, workers: usize) -> ! {
    LIMIT.store(limit, Ordering::SeqCst);
    for (k, share) in SHARES.iter().enumerate().take(workers) {
        let (lo, hi) = share_bounds(limit, k, workers);
        share.lo.store(lo, Ordering::SeqCst);
        share.hi.store(hi, Ordering::SeqCst);
    }
    let base = base_primes(limit);
    println!(
        "compute: counting the primes below {limit} in {STEPS} steps on {workers} vCPUs ({base} sieving primes)"
    );
    let start = time::now_ns();
    let mut started = 1;
    for (k, stack) in STACKS.iter().enumerate().take(workers - 1) {
        let vcpu = k as u32 + 1;
        match smp::start_on(vcpu, stack, worker) {
            Ok(()) => started += 1,
            Err(e) => {
                println!("compute: cannot start vCPU {vcpu}: {e:?}; vCPU 0 does its share");
                break;
            }
        }
    }
    // Shares whose vCPU did not start are vCPU 0's too.
    for k in core::iter::once(0).chain(started..workers) {
        work(k, limit, STEPS, |_| progress(workers));
    }
    let deadline = start + WORKERS_WAIT_NS;
    let mut next_report = time::now_ns() + PROGRESS_NS;
    while SHARES[..workers]
        .iter()
        .any(|s| s.finished.load(Ordering::SeqCst) == 0)
    {
        let now = time::now_ns();
        if now >= deadline {
            println!("compute: the other vCPUs did not finish in time; powering off");
            check::shutdown(ShutdownReason::Crash);
        }
        if now >= next_report {
            progress(workers);
            next_report = now + PROGRESS_NS;
        }
        events::block_until(Some(next_report.min(deadline)));
    }
    progress(workers);
    let mut total = 0;
    let mut largest = None;
    for (k, share) in SHARES[..workers].iter().enumerate() {
        let count = share.count.load(Ordering::SeqCst);
        println!(
            "compute: vCPU {k}: {count} primes in [{}, {})",
            share.lo.load(Ordering::SeqCst),
            share.hi.load(Ordering::SeqCst)
        );
        total += count;
        largest = share
            .largest_plus_one
            .load(Ordering::SeqCst)
            .checked_sub(1)
            .or(largest);
    }
    let ms = (time::now_ns() - start) / time::NS_PER_MS;
    println!("compute: {total} primes below {limit}");
    if let Some(largest) = largest {
        println!("compute: the largest is {largest}");
    }
    println!("compute: done in {ms} ms on {started} vCPUs; powering off");
    check::shutdown(ShutdownReason::Poweroff)
}

/// The `limit=` of the command line, or [`DEFAULT_LIMIT`] (saying why) when it is absent,
/// not a count, or too large.
#[cfg(target_os = "none")]
fn limit(cmdline: &[u8]) -> u64 {
    let Some(text) = cmdline::value(cmdline, "limit") else {
        return DEFAULT_LIMIT;
    };
    let shown = core::str::from_utf8(text).unwrap_or("?");
    match cmdline::parse_count(text) {
        Some(n) if n <= primes::MAX_LIMIT => n,
        Some(_) => {
            println!(
                "compute: limit={shown} is above {}; using {DEFAULT_LIMIT}",
                primes::MAX_LIMIT
            );
            DEFAULT_LIMIT
        }
        None => {
            println!("compute: limit={shown} is not a count; using {DEFAULT_LIMIT}");
            DEFAULT_LIMIT
        }
    }
}

/// On the build host there is no kernel to run.
#[cfg(not(target_os = "none"))]
fn main() {}
