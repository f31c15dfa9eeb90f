//! Inter-processor interrupts: one vector, [`IPI_VECTOR`], and a word of requests in each
//! pCPU's `PerCpu` saying what it is for (DESIGN.md §10).
//!
//! * **Kick** ([`kick`]): "ask the scheduler again". The scheduler names the pCPUs to kick
//!   when a vCPU wakes for them, or the vCPU they run is paused or taken down; an event for a
//!   vCPU running elsewhere kicks its pCPU too, so the upcall is delivered now rather than at
//!   that pCPU's next timer. Nobody waits for a kick.
//! * **Flush** ([`flush_others`]): "drop every guest translation you may hold". Sent by the
//!   pCPU holding the world lock when a frame changes use or leaves a domain, or a guest's
//!   L4 changed, or a guest asked for a flush of its other vCPUs; it waits, bounded, until
//!   every target has done it. The target recopies its guest root from the running vCPU's
//!   L4 and flushes its TLB.
//!
//! Why waiting cannot deadlock: a pCPU services its requests while it spins for the world
//! lock (`guest::lock_world`), and runs with interrupts on only while halted idle, where the
//! IPI wakes it; every hardware interrupt a guest trap brings is acknowledged first thing
//! (`guest::trap`), so no vector is ever left in service to block the IPI's class. So every target answers whether it is in
//! a guest (the IPI traps it out), halted, or waiting for the lock; the requester holds the
//! lock and takes no other lock while it waits.
//!
//! A pCPU in the hypervisor holds no guest translation at all: every entry from a guest loads
//! the hypervisor root, and global pages are off (`enable_protections`), so the CR3 write
//! dropped them. What a flush must reach is the pCPUs in guest mode and the guest-root copies
//! they return to.

use core::sync::atomic::Ordering;

use super::percpu::{self, REQ_FLUSH, REQ_KICK};

/// The IPI vector (above the guests' software-interrupt range, with DPL 0: a guest's `int`
/// with it raises #GP).
pub const IPI_VECTOR: u8 = 0xF2;

/// How long a flush waits for each target. Generous: under emulation a pCPU's host thread
/// may not run for a while. A target that never answers is a hypervisor bug, and carrying on
/// would leave a stale writable translation: the machine stops.
const FLUSH_BOUND_US: u64 = 5_000_000;

/// Asks pCPU `index` to call the scheduler again (for this pCPU: nothing is sent, the
/// request is noted for the end of the trap it handles). An unknown pCPU is ignored.
pub fn kick(index: usize) {
    let this = percpu::this();
    if index == this.index() {
        // No IPI to itself: the request is noted, and the end of the trap it is handling
        // takes it (`take_kick`) and asks the scheduler again.
        this.requests.fetch_or(REQ_KICK, Ordering::SeqCst);
        return;
    }
    let Some(cpu) = percpu::of(index) else {
        return;
    };
    // One IPI is enough until the target has looked: it takes every request at once.
    if cpu.requests.fetch_or(REQ_KICK, Ordering::SeqCst) & REQ_KICK == 0 {
        send(cpu);
    }
}

fn send(cpu: &percpu::PerCpu) {
    if let Err(why) = super::apic::send_fixed(cpu.apic_id.load(Ordering::SeqCst), IPI_VECTOR) {
        log::warn!(target: "smp", "IPI to cpu {}: {why}", cpu.index());
    }
}

/// Makes every pCPU in `targets` (a bit per index; this pCPU and unknown ones are skipped)
/// drop its guest translations, and returns once each has. Several pCPUs may flush at once
/// (each holds only its own domains' locks): while one waits it answers the requests made
/// of it, or two flushing pCPUs would wait for each other for ever.
pub fn flush_others(targets: u64) {
    let me = percpu::this().index();
    let mut waiting: u64 = 0;
    // The set bits only (a frame's change of use asks with every running pCPU's bit: on a
    // one-pCPU machine, none but this one's).
    let mut asked = targets & !(1u64.checked_shl(me as u32).unwrap_or(0));
    while asked != 0 {
        let index = asked.trailing_zeros() as usize;
        asked &= asked - 1;
        if index >= super::smp::MAX_CPUS {
            break;
        }
        let Some(cpu) = percpu::of(index) else {
            continue;
        };
        cpu.requests.fetch_or(REQ_FLUSH, Ordering::SeqCst);
        send(cpu);
        waiting |= 1 << index;
    }
    while waiting != 0 {
        let index = waiting.trailing_zeros() as usize;
        waiting &= waiting - 1;
        let Some(cpu) = percpu::of(index) else {
            continue;
        };
        let done = super::smp::wait_us(FLUSH_BOUND_US, || {
            service_flush();
            cpu.requests.load(Ordering::SeqCst) & REQ_FLUSH == 0
        });
        if !done {
            panic!("cpu {index} did not answer a TLB flush request within 5 s");
        }
    }
}

/// Does a flush other pCPUs asked of this one, and says it is done. Runs with interrupts
/// off, on the hypervisor root (the trap entry or the idle loop put it there), so the CR3
/// write drops every guest translation; the guest-root copy is what the exit path loads next.
pub fn service_flush() {
    let cpu = percpu::this();
    if cpu.requests.load(Ordering::SeqCst) & REQ_FLUSH != 0 {
        super::entry::recopy_guest_root();
        x86_64::instructions::tlb::flush_all();
        cpu.requests.fetch_and(!REQ_FLUSH, Ordering::SeqCst);
    }
}

/// Whether a kick came since the last look (and forgets it). Called with the world lock
/// held, just before the scheduler is asked.
pub fn take_kick() -> bool {
    percpu::this()
        .requests
        .fetch_and(!REQ_KICK, Ordering::SeqCst)
        & REQ_KICK
        != 0
}

/// The IPI arrived (in the hypervisor, or from a guest): acknowledge it at the local APIC
/// and do the flush part at once; the kick is kept for the trap path.
pub fn interrupt() {
    super::apic::end_of_interrupt();
    service_flush();
}
