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
use guest_abi::sched::ShutdownReason;
#[cfg(target_os = "none")]
use xenia_demos::{cmdline, primes};
#[cfg(target_os = "none")]
use xenia_guest_rt::{check, console, println, time};

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
