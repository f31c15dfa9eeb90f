//! `fasttrap`: `int 0x80` from ring 3 reaches the kernel's handler directly, without entering
//! the hypervisor.
//!
//! The vCPU's entry count (`vcpu_info.arch.pad`, guest-abi `ArchVcpuInfo::entry_count`) grows
//! by one on every entry into the hypervisor. Ring-3 code issues `int 0x80` N times; the ring-1
//! handler counts and returns with `iretq`, doing no hypercall; events are masked, so no
//! upcall needs the hypervisor either.
//!
//! The verdict rests on evidence the hypervisor does not write: the stack segment the handler
//! finds. On an interrupt that changes the privilege level in 64-bit mode the CPU loads a null
//! SS whose RPL is the new CPL (Intel SDM Vol. 3A §6.14.4; AMD APM Vol. 2 §8.9.3), so a handler
//! entered by the CPU straight from ring 3 sees SS = 1; a trap the hypervisor bounces arrives
//! with the SS the guest registered (`KERNEL_SS`). The entry count, which the hypervisor keeps,
//! is checked as well, but it only confirms.
//!
//! Pass: the entry count moves on a hypercall (so it can move at all); the handler ran N times
//! in ring 1 with a ring-3 frame and a null SS (entered by the CPU); over the N round trips
//! the entry count grew by far less than N (interrupts the hypervisor takes meanwhile are
//! allowed for: less than N/10). As a control, the same loop with an `int 0x80` entry that
//! does *not* qualify for the fast trap (it masks events) must show the opposite on both: the
//! handler finds `KERNEL_SS` and the count grows by at least N. Both measurements can fail.

use guest_abi::calls;
use guest_abi::hypercall::FAST_TRAP_VECTOR;
use guest_abi::selectors::{KERNEL_CS, KERNEL_SS, USER_CS, USER_SS};
use guest_abi::trap::TrapInfo;
use xenia_guest_rt::boot::vcpu;
use xenia_guest_rt::check::{Checks, note};
use xenia_guest_rt::trap::{
    self, ExitKind, default_table, kernel_stack_top, last_service, reset_service_count,
    service_count,
};
use xenia_guest_rt::{events, user};

use crate::ring3;

/// The SS a handler finds when the CPU entered it from ring 3: null, RPL 1 (Intel SDM Vol. 3A
/// §6.14.4).
const NULL_SS_RPL1: u64 = 1;

/// Round trips through the fast trap.
const N: u64 = 10_000;
/// Round trips through the slow path (the control).
const N_SLOW: u64 = 1_000;

fn entry_count() -> u64 {
    vcpu().arch.entry_count()
}

pub fn run() -> ! {
    let mut c = Checks::new();
    events::mask();

    // Register vector 0x80 with DPL 3 (the default table has it) and the ring-1 stack.
    let table = default_table();
    let fast = table.iter().find(|t| t.vector == FAST_TRAP_VECTOR);
    c.check(
        "trap table has a fast-trap entry for int 0x80",
        fast.is_some_and(TrapInfo::is_fast_trap),
        format_args!("{fast:?}"),
    );
    // SAFETY: the default table's handlers are the runtime's stubs.
    c.ok("set_trap_table with the int 0x80 entry", unsafe {
        calls::set_trap_table(&table)
    });
    // SAFETY: the runtime's ring-1 stack, used for nothing else.
    c.ok("stack_switch(KERNEL_SS, ring-1 stack)", unsafe {
        calls::stack_switch(KERNEL_SS, kernel_stack_top())
    });

    // The counter moves on a hypercall.
    let before = entry_count();
    let _ = calls::xen_version();
    let after = entry_count();
    c.check(
        "entry count grows on a hypercall",
        after > before,
        format_args!("{before} -> {after}"),
    );

    let prog = ring3::count();
    let base = user::load(&prog.blob);
    reset_service_count();
    let before = entry_count();
    let exit = user::run(base, user::data(), N);
    let after = entry_count();
    let grew = after.wrapping_sub(before);
    note(format_args!(
        "entry count grew by {grew} over {N} int 0x80 round trips"
    ));
    c.check(
        "ring-3 loop ended through int 0x80",
        exit.kind == ExitKind::Service(0x80),
        format_args!("{:?}", exit.kind),
    );
    c.eq("ring-1 handler counted every int 0x80", service_count(), N);
    c.check(
        "int 0x80 did not enter the hypervisor",
        grew < N / 10,
        format_args!("entry count grew by {grew} over {N} int 0x80 round trips"),
    );
    match last_service() {
        Some(e) => {
            let r = &e.regs;
            c.check(
                "fast-trap frame: ring 3, rip after int 0x80",
                r.cs == u64::from(USER_CS)
                    && r.ss == u64::from(USER_SS)
                    && r.rip == base + prog.mark,
                format_args!(
                    "cs {:#x} ss {:#x} rip {:#x} (expected {:#x})",
                    r.cs,
                    r.ss,
                    r.rip,
                    base + prog.mark
                ),
            );
            c.eq_hex(
                "fast-trap handler runs in ring 1",
                e.handler_cs.into(),
                KERNEL_CS.into(),
            );
            // The CPU, not the hypervisor, made this entry: it loads a null SS with RPL 1 on
            // the change to ring 1 (guest-abi `trap`); a bounce would give KERNEL_SS.
            c.eq_hex(
                "int 0x80 entered the ring-1 handler by the CPU (null SS, RPL 1), not bounced",
                e.handler_ss.into(),
                NULL_SS_RPL1,
            );
        }
        None => {
            c.check(
                "fast-trap frame",
                false,
                format_args!("no service call recorded"),
            );
        }
    }

    // Control: int 0x80 through an entry that masks events is not a fast trap, so every
    // round trip enters the hypervisor.
    let mut slow = default_table();
    for t in slow.iter_mut() {
        if t.vector == FAST_TRAP_VECTOR {
            *t = TrapInfo::new(FAST_TRAP_VECTOR, 3, true, t.address);
        }
    }
    // SAFETY: the same stubs; only the event-masking flag differs.
    if c.ok("set_trap_table with a slow int 0x80 entry", unsafe {
        calls::set_trap_table(&slow)
    })
    .is_some()
    {
        reset_service_count();
        let before = entry_count();
        let exit = user::run(base, user::data(), N_SLOW);
        let grew = entry_count().wrapping_sub(before);
        match last_service() {
            Some(e) => {
                c.eq_hex(
                    "control: slow int 0x80 bounced by the hypervisor (handler SS KERNEL_SS)",
                    e.handler_ss.into(),
                    KERNEL_SS.into(),
                );
            }
            None => {
                c.check(
                    "control: slow int 0x80 frame",
                    false,
                    format_args!("no service call recorded"),
                );
            }
        }
        note(format_args!(
            "control: entry count grew by {grew} over {N_SLOW} slow int 0x80 round trips"
        ));
        c.check(
            "control: slow int 0x80 enters the hypervisor every time",
            exit.kind == ExitKind::Service(0x80) && service_count() == N_SLOW && grew >= N_SLOW,
            format_args!(
                "entry count grew by {grew} over {} of {N_SLOW} round trips",
                service_count()
            ),
        );
        // SAFETY: back to the default table.
        let _ = unsafe { calls::set_trap_table(&default_table()) };
    }
    let _ = trap::take_caught();
    c.finish()
}
