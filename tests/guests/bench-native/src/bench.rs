//! The rows, in the pv kernel's order (see the crate docs for what each one measures).

use core::arch::asm;
use core::sync::atomic::Ordering;

use xenia_bench_native::{cmdline, per_op};

use crate::serial::{EXIT_FATAL, EXIT_POWEROFF, power_off};
use crate::trap::{TIMER_ENTRY_TSC, TIMER_TICKS};
use crate::{apic, cpu, paging, println, trap};

unsafe extern "C" {
    static bench_u_int80: u8;
    static bench_u_syscall: u8;
    static bench_u_primes: u8;
    static bench_u_touch: u8;
    static bench_u_switch: u8;
}

/// Iterations of the TSC check's loop (two instructions each).
const CALIBRATION_LOOPS: u64 = 100_000;
/// TSC ticks to wait for one timer interrupt before giving up (a second of virtual time).
const TIMER_PATIENCE: u64 = 1_000_000_000;

/// What the command line asks for.
struct Config {
    iters: u64,
    primes: u64,
    runs: u32,
}

impl Config {
    fn from_cmdline(line: &[u8]) -> Config {
        Config {
            iters: cmdline::number(line, "iters", 10_000).max(1),
            primes: cmdline::number(line, "primes", 2_000_000),
            runs: cmdline::number(line, "runs", 5).clamp(1, 100) as u32,
        }
    }
}

/// The kernel's main: every row, then power off.
pub fn run(line: &[u8]) -> ! {
    let cfg = Config::from_cmdline(line);
    println!("bench env native");
    print_cpu();
    println!(
        "bench # iters={} primes={} runs={}; figures are instructions per operation",
        cfg.iters, cfg.primes, cfg.runs
    );
    check_tsc();
    let n = cfg.iters;

    report(
        "null_call",
        per_op(measure(cfg.runs, || null_traps(n)), 0, n),
    );
    let int80 = paging::user_address(&raw const bench_u_int80);
    report("int80", ring3_echo(&cfg, "int80", int80));
    let sys = paging::user_address(&raw const bench_u_syscall);
    report("syscall", ring3_echo(&cfg, "syscall", sys));
    report("page_fault", page_faults(&cfg));
    report("pt_batch", pt_batch(&cfg));
    report("process_switch", process_switch(&cfg));
    report("timer", timer(&cfg));
    let primes = paging::user_address(&raw const bench_u_primes);
    let mut count = 0;
    let per_run = measure(cfg.runs, || count = ring3(primes, cfg.primes, 0));
    report("primes", per_run);
    println!("bench primes_count {count}");
    println!("bench done");
    power_off(EXIT_POWEROFF)
}

fn report(name: &str, figure: u64) {
    println!("bench {name} {figure}");
}

/// Ends the run with a clear message: the environment failed a row.
fn fail(what: core::fmt::Arguments<'_>) -> ! {
    println!("bench fatal: {what}");
    power_off(EXIT_FATAL)
}

/// `bench # cpu: <vendor> <brand>` from CPUID leaves 0 and 0x80000002..4.
fn print_cpu() {
    let [_, b, c, d] = cpu::cpuid(0);
    let mut vendor = [0u8; 12];
    for (chunk, reg) in vendor.chunks_mut(4).zip([b, d, c]) {
        chunk.copy_from_slice(&reg.to_le_bytes());
    }
    let mut brand = [0u8; 48];
    if cpu::cpuid(0x8000_0000)[0] >= 0x8000_0004 {
        for (i, leaf) in (0x8000_0002u32..=0x8000_0004).enumerate() {
            for (j, reg) in cpu::cpuid(leaf).into_iter().enumerate() {
                let at = i * 16 + j * 4;
                brand[at..at + 4].copy_from_slice(&reg.to_le_bytes());
            }
        }
    }
    println!("bench # cpu: {} {}", text(&vendor), text(&brand));
}

/// A CPUID string: up to its first NUL, trimmed.
fn text(bytes: &[u8]) -> &str {
    let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    core::str::from_utf8(&bytes[..end]).unwrap_or("?").trim()
}

/// Checks that the TSC counts instructions: a loop of `dec; jnz`, two per iteration.
fn check_tsc() {
    let t0 = cpu::rdtsc();
    // SAFETY: a register-only loop.
    unsafe {
        asm!("2:", "dec {n}", "jnz 2b", n = inout(reg) CALIBRATION_LOOPS => _,
             options(nomem, nostack))
    };
    let delta = cpu::rdtsc().wrapping_sub(t0);
    println!(
        "bench # tsc check: {CALIBRATION_LOOPS} x (dec; jnz) took {delta} TSC ticks \
         (one per instruction: {} and a few)",
        2 * CALIBRATION_LOOPS
    );
    if delta.abs_diff(2 * CALIBRATION_LOOPS) > CALIBRATION_LOOPS / 100 {
        println!(
            "bench # warning: the TSC does not count instructions (QEMU without -icount shift=0?)"
        );
    }
}

/// The least TSC delta of `runs` runs of `f` (the rule both kernels share).
fn measure(runs: u32, f: impl FnMut()) -> u64 {
    xenia_bench_native::measure(runs, cpu::rdtsc, f)
}

/// `n` null traps from ring 0: `int 0x81`, whose handler is `iretq`.
fn null_traps(n: u64) {
    for _ in 0..n {
        // SAFETY: gate 0x81 is the null trap: it returns at once, changing nothing.
        unsafe { asm!("int {v}", v = const trap::VECTOR_NULL) };
    }
}

/// Runs the ring-3 body at `rip` with `rdi = a`, `rsi = b` to its exit; returns its result.
fn ring3(rip: u64, a: u64, b: u64) -> u64 {
    trap::enter_user(rip, a, b)
}

/// An echo loop of `n` calls, less the same body run for none; checks the last echo.
fn ring3_echo(cfg: &Config, name: &str, rip: u64) -> u64 {
    let base = measure(cfg.runs, || {
        ring3(rip, 0, 0);
    });
    let mut last = 0;
    let total = measure(cfg.runs, || last = ring3(rip, cfg.iters, 0));
    if last != cfg.iters {
        fail(format_args!(
            "{name}: the last echo returned {last}, not {}",
            cfg.iters
        ));
    }
    per_op(total, base, cfg.iters)
}

/// Ring-3 writes to [`paging::FAULT_PAGES`] absent pages, each mapped by the #PF handler;
/// less the touch body run over no page.
fn page_faults(cfg: &Config) -> u64 {
    let touch = paging::user_address(&raw const bench_u_touch);
    let pages = paging::FAULT_PAGES;
    let base = measure(cfg.runs, || {
        ring3(touch, paging::FAULT_BASE, 0);
    });
    let mut best = u64::MAX;
    for _ in 0..cfg.runs {
        paging::unmap_fault_area();
        let t0 = cpu::rdtsc();
        let touched = ring3(touch, paging::FAULT_BASE, pages);
        best = best.min(cpu::rdtsc().wrapping_sub(t0));
        if touched != pages {
            fail(format_args!(
                "page_fault: touched {touched} pages of {pages}"
            ));
        }
    }
    per_op(best, base, pages)
}

/// 512 entries of one L1 written, then a CR3 reload; per batch.
fn pt_batch(cfg: &Config) -> u64 {
    let batches = (cfg.iters / 100).max(1);
    let best = measure(cfg.runs, || {
        for b in 0..batches {
            let flags = if b % 2 == 0 {
                paging::PRESENT | paging::WRITABLE
            } else {
                paging::PRESENT
            };
            paging::pte_batch(flags);
        }
    });
    per_op(best, 0, batches)
}

/// The switch body: `n` ring-3 calls, each loading the other address space; less the body
/// run for none.
fn process_switch(cfg: &Config) -> u64 {
    let body = paging::user_address(&raw const bench_u_switch);
    let n = cfg.iters.next_multiple_of(2);
    let base = measure(cfg.runs, || {
        ring3(body, 0, 0);
    });
    let total = measure(cfg.runs, || {
        ring3(body, n, 0);
    });
    // An even number of switches ends where it started.
    if !paging::in_space_a() {
        fail(format_args!(
            "process_switch: {n} switches did not end in the first space"
        ));
    }
    per_op(total, base, n)
}

/// From arming the APIC timer (one-shot, one tick) to seeing its handler's count change,
/// per interrupt, `iters / 10` of them. Also reports, as a comment, arming to the
/// dispatcher's entry.
fn timer(cfg: &Config) -> u64 {
    let n = (cfg.iters / 10).max(1);
    let mut entry_best = u64::MAX;
    // SAFETY: every vector that can arrive has a gate: the timer, the spurious vector (the
    // PICs are masked).
    unsafe { cpu::enable_interrupts() };
    let best = measure(cfg.runs, || {
        let mut entry_sum = 0u64;
        for _ in 0..n {
            let seen = TIMER_TICKS.load(Ordering::Relaxed);
            let armed = cpu::rdtsc();
            apic::arm(1);
            while TIMER_TICKS.load(Ordering::Relaxed) == seen {
                if cpu::rdtsc().wrapping_sub(armed) > TIMER_PATIENCE {
                    fail(format_args!(
                        "timer: no interrupt within {TIMER_PATIENCE} TSC ticks"
                    ));
                }
                core::hint::spin_loop();
            }
            entry_sum += TIMER_ENTRY_TSC.load(Ordering::Relaxed).wrapping_sub(armed);
        }
        entry_best = entry_best.min(entry_sum / n);
    });
    cpu::disable_interrupts();
    println!("bench # timer: arming to the dispatcher's entry {entry_best}");
    per_op(best, 0, n)
}
