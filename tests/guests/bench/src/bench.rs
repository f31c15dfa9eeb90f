//! The pv environment and the order of the rows. What each row measures, here and in
//! `bench-native` (the two must stay the same operation):
//!
//! | row | pv (this kernel) | native |
//! |---|---|---|
//! | `null_call` | `xen_version` hypercall (`int 0x82`) from ring 1 and back | `int 0x81` to a ring-0 handler that returns |
//! | `int80` | ring 3 `int 0x80` echo: the fast trap straight to ring 1 | `int 0x80` gate to ring 0 |
//! | `syscall` | ring 3 `SYSCALL` echo, bounced by the hypervisor to ring 1 | `syscall`/`sysretq` |
//! | `page_fault` | ring-3 write to an absent page: #PF bounced to ring 1, `update_va_mapping`, return | #PF to ring 0, PTE write, return |
//! | `pt_batch` | one `mmu_update` of 512 L1 entries plus `MMUEXT_TLB_FLUSH_LOCAL` | 512 PTE writes plus a CR3 reload |
//! | `process_switch` | ring 3 `int 0x80` asking for the other address space: `MMUEXT_NEW_BASEPTR` | the same call writing CR3 |
//! | `timer` | `set_timer_op` for a past deadline until the `VIRQ_TIMER` upcall runs | APIC one-shot until its handler runs |
//! | `primes` | primes below the limit by trial division in ring 3, per run | the same |

use core::arch::global_asm;
use core::sync::atomic::{AtomicU64, Ordering};

use guest_abi::calls;
use guest_abi::event::VIRQ_TIMER;
use guest_abi::memory::{
    MMU_NORMAL_PT_UPDATE, MMUEXT_TLB_FLUSH_LOCAL, MmuUpdate, UVMF_INVLPG, UVMF_LOCAL,
};
use guest_abi::pte;
use guest_abi::sched::ShutdownReason;
use xenia_bench_native::cmdline;
use xenia_guest_rt::boot::{VIRT_BASE, padding, start_info};
use xenia_guest_rt::check::shutdown;
use xenia_guest_rt::println;
use xenia_guest_rt::time::{NS_PER_MS, now_ns, rdtsc, spin_until_or};
use xenia_guest_rt::trap::{self, ExitKind, Regs, SVC_ECHO, SVC_EXIT};
use xenia_guest_rt::user::{self, Blob};
use xenia_guest_rt::{events, mm};

global_asm!(include_str!("../bodies/user.s"));

unsafe extern "C" {
    static bench_user_start: u8;
    static bench_user_end: u8;
    static bench_u_int80: u8;
    static bench_u_syscall: u8;
    static bench_u_primes: u8;
    static bench_u_touch: u8;
    static bench_u_switch: u8;
}

/// The ring-3 service of the switch body (`bodies/user.s`).
const SVC_SWITCH: u64 = 3;

/// Pages the page-fault row touches per run, at most.
const FAULT_PAGES: u64 = 256;

/// What the command line asks for.
struct Config {
    iters: u64,
    primes: u64,
    runs: u32,
}

fn config() -> Config {
    let line = start_info().cmdline_bytes();
    Config {
        iters: cmdline::number(line, "iters", 10_000).max(1),
        primes: cmdline::number(line, "primes", 2_000_000),
        runs: cmdline::number(line, "runs", 5).clamp(1, 100) as u32,
    }
}

/// The kernel's main: every row, then power off.
pub fn run() -> ! {
    let cfg = config();
    // The runtime's services answer the echo without keeping a record of every call (a test
    // aid the native kernel has no twin of).
    trap::record_services(false);
    println!("bench env pv");
    println!(
        "bench # iters={} primes={} runs={}; figures are instructions per operation",
        cfg.iters, cfg.primes, cfg.runs
    );
    let code = user::load(&Blob::new(
        &raw const bench_user_start,
        &raw const bench_user_end,
    ));
    let at = |label: *const u8| code + (label as u64 - (&raw const bench_user_start) as u64);
    let n = cfg.iters;

    report(
        "null_call",
        per_op(measure(cfg.runs, || null_calls(n)), 0, n),
    );
    let int80 = at(&raw const bench_u_int80);
    report("int80", ring3_per_op(&cfg, int80, n));
    // SYSCALL enters the kernel with events masked, as FMASK clears IF natively.
    let sys = at(&raw const bench_u_syscall);
    report(
        "syscall",
        trap::register_syscall(true)
            .ok()
            .and_then(|()| ring3_per_op(&cfg, sys, n)),
    );
    report(
        "page_fault",
        page_faults(&cfg, at(&raw const bench_u_touch)),
    );
    report("pt_batch", pt_batch(&cfg));
    report(
        "process_switch",
        process_switch(&cfg, at(&raw const bench_u_switch)),
    );
    report("timer", timer(&cfg));
    let primes = at(&raw const bench_u_primes);
    let mut count = 0;
    let per_run = measure(cfg.runs, || count = ring3(primes, cfg.primes, 0));
    report("primes", Some(per_run));
    println!("bench primes_count {count}");
    println!("bench done");
    shutdown(ShutdownReason::Poweroff)
}

/// Prints a row: the figure, or `failed` when the environment could not run it.
fn report(name: &str, figure: Option<u64>) {
    match figure {
        Some(v) => println!("bench {name} {v}"),
        None => println!("bench {name} failed"),
    }
}

/// The least TSC delta of `runs` runs of `f` (the rule both kernels share).
fn measure(runs: u32, f: impl FnMut()) -> u64 {
    xenia_bench_native::measure(runs, rdtsc, f)
}

/// `(total - base) / ops`, rounded to the nearest instruction (both kernels' rule).
fn per_op(total: u64, base: u64, ops: u64) -> Option<u64> {
    Some(xenia_bench_native::per_op(total, base, ops))
}

fn null_calls(n: u64) {
    for _ in 0..n {
        let _ = calls::xen_version();
    }
}

/// Runs the ring-3 body at `rip` with `rdi = a`, `rsi = b` to its exit; returns its result.
fn ring3(rip: u64, a: u64, b: u64) -> u64 {
    let exit = user::run(rip, a, b);
    if exit.kind != ExitKind::Service(0x80) {
        println!("bench: ring-3 body at {rip:#x} ended with {:?}", exit.kind);
        shutdown(ShutdownReason::Crash);
    }
    exit.entry.regs.rdi
}

/// A ring-3 loop of `n` operations, less the same body run for none.
fn ring3_per_op(cfg: &Config, rip: u64, n: u64) -> Option<u64> {
    let base = measure(cfg.runs, || {
        ring3(rip, 0, 0);
    });
    let total = measure(cfg.runs, || {
        ring3(rip, n, 0);
    });
    per_op(total, base, n)
}

/// The page-fault row's area: pages of the padding past the ring-3 code, data and stack
/// (the first 128 KiB) and before the window slots (the last 16 pages), which nothing else
/// uses. `(first address, pages)`.
fn fault_area() -> (u64, u64) {
    let (start, end) = padding();
    let first = start + 128 * 1024;
    let last = end - (mm::WINDOW_SLOTS as u64) * mm::PAGE;
    (
        first,
        ((last.saturating_sub(first)) / mm::PAGE).min(FAULT_PAGES),
    )
}

/// The entry that maps padding page `va` as the builder did: its own frame, user-accessible.
fn padding_entry(va: u64) -> u64 {
    let mfn = mm::p2m((va - VIRT_BASE) / mm::PAGE);
    pte::entry(mfn, pte::PRESENT | pte::RW | pte::USER)
}

/// The page-fault resolver: maps the faulting page of the area and resumes ring 3.
fn map_faulting_page(e: &trap::Entry) -> bool {
    let (first, pages) = fault_area();
    let va = e.cr2 & !(mm::PAGE - 1);
    if va < first || va >= first + pages * mm::PAGE {
        return false;
    }
    // SAFETY: the page is in the fault area, which only the touch body uses.
    unsafe { mm::update_va(va, padding_entry(va), 0) >= 0 }
}

/// Unmaps every page of the fault area (not measured).
fn unmap_fault_area() -> bool {
    let (first, pages) = fault_area();
    (0..pages).all(|i| {
        // SAFETY: as for map_faulting_page.
        unsafe { mm::update_va(first + i * mm::PAGE, 0, UVMF_INVLPG | UVMF_LOCAL) >= 0 }
    })
}

fn page_faults(cfg: &Config, touch: u64) -> Option<u64> {
    let (first, pages) = fault_area();
    if pages == 0 {
        return None;
    }
    trap::set_user_fault_resolver(Some(map_faulting_page));
    let mut ok = true;
    let base = measure(cfg.runs, || {
        ring3(touch, first, 0);
    });
    let mut best = u64::MAX;
    for _ in 0..cfg.runs {
        ok &= unmap_fault_area();
        let t0 = rdtsc();
        let touched = ring3(touch, first, pages);
        best = best.min(rdtsc().wrapping_sub(t0));
        ok &= touched == pages;
    }
    trap::set_user_fault_resolver(None);
    ok.then(|| per_op(best, base, pages)).flatten()
}

/// 512 entries of a pinned L1 rewritten by one `mmu_update`, then a local flush; per batch.
fn pt_batch(cfg: &Config) -> Option<u64> {
    let (_, l1) = mm::fresh_frame()?;
    let (_, data) = mm::fresh_frame()?;
    // SAFETY: both frames are fresh: mapped nowhere, no page table yet.
    unsafe {
        mm::fill_frame(l1, |_| {}).ok()?;
        if mm::pin(1, l1) < 0 {
            return None;
        }
    }
    let batches = (cfg.iters / 100).max(1);
    let mut reqs = [MmuUpdate::new(MMU_NORMAL_PT_UPDATE, 0, 0); mm::ENTRIES];
    let mut ok = true;
    let best = measure(cfg.runs, || {
        for b in 0..batches {
            let flags = if b % 2 == 0 {
                pte::PRESENT | pte::RW
            } else {
                pte::PRESENT
            };
            for (i, r) in reqs.iter_mut().enumerate() {
                *r = MmuUpdate::new(
                    MMU_NORMAL_PT_UPDATE,
                    pte::entry(l1, 0) + 8 * i as u64,
                    pte::entry(data, flags),
                );
            }
            // SAFETY: the L1 is pinned and hooked into no address space: its entries map
            // nothing Rust code uses.
            let (ret, done) = unsafe { mm::mmu_update(&reqs) };
            // SAFETY: a flush changes no mapping.
            let flush = unsafe { mm::mmuext_one(MMUEXT_TLB_FLUSH_LOCAL, 0) };
            ok &= ret >= 0 && done as usize == mm::ENTRIES && flush >= 0;
        }
    });
    ok.then(|| per_op(best, 0, batches)).flatten()
}

/// The two address spaces of the process-switch row (machine frames of their L4s).
static SPACE_A: AtomicU64 = AtomicU64::new(0);
static SPACE_B: AtomicU64 = AtomicU64::new(0);

/// The system calls of the process-switch row: switch, echo, exit.
fn switch_call(regs: &mut Regs) -> bool {
    match regs.rax {
        SVC_SWITCH => {
            let (a, b) = (
                SPACE_A.load(Ordering::Relaxed),
                SPACE_B.load(Ordering::Relaxed),
            );
            let other = if mm::current_base() == a { b } else { a };
            // SAFETY: both spaces map the kernel, the ring-3 code and its stack alike (B's
            // L4 is a copy of A's): nothing changes under the code that runs.
            regs.rax = unsafe { mm::new_baseptr(other) } as u64;
            true
        }
        SVC_ECHO => {
            regs.rax = regs.rdi.wrapping_add(1);
            true
        }
        SVC_EXIT => false,
        _ => false,
    }
}

fn process_switch(cfg: &Config, body: u64) -> Option<u64> {
    let a = mm::current_base();
    let (_, b) = mm::fresh_frame()?;
    let mut entries = [0u64; mm::ENTRIES];
    for (i, e) in entries.iter_mut().enumerate() {
        *e = mm::read_entry(a, i)?;
    }
    // SAFETY: b is fresh (mapped nowhere); once pinned it becomes an L4 equal to the current
    // one, which nothing refers to until the switch row loads it.
    unsafe {
        mm::fill_frame(b, |t| t.copy_from_slice(&entries)).ok()?;
        if mm::pin(4, b) < 0 {
            return None;
        }
    }
    SPACE_A.store(a, Ordering::Relaxed);
    SPACE_B.store(b, Ordering::Relaxed);
    trap::set_syscall_handler(Some(switch_call));
    let n = cfg.iters.next_multiple_of(2);
    let base = measure(cfg.runs, || {
        ring3(body, 0, 0);
    });
    let total = measure(cfg.runs, || {
        ring3(body, n, 0);
    });
    trap::set_syscall_handler(None);
    // An even number of switches ends where it started.
    (mm::current_base() == a)
        .then(|| per_op(total, base, n))
        .flatten()
}

/// From arming a timer already due to its event's handler, per event.
fn timer(cfg: &Config) -> Option<u64> {
    let port = events::bind_virq(VIRQ_TIMER).ok()?;
    let n = (cfg.iters / 10).max(1);
    events::unmask_only();
    let mut ok = true;
    // A bound on the whole row, so that a lost event fails it instead of hanging.
    let deadline = now_ns() + 60_000 * NS_PER_MS;
    let best = measure(cfg.runs, || {
        for _ in 0..n {
            let seen = events::count(port);
            let _ = calls::set_timer_op(1);
            ok &= spin_until_or(deadline, || events::count(port) > seen);
        }
    });
    events::mask();
    ok.then(|| per_op(best, 0, n)).flatten()
}
