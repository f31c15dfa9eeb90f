//! The short ways out of a trap (issue 13): what lets a trap skip the trap-end work, and the
//! hypercalls answered before any lock is taken.
//!
//! A trap's end ([`super::finish_trap`]) runs the timer walk, the console poll, the wake-up
//! walk, the scheduler, event delivery and the timer plan. Almost always none of them has
//! anything to do, and each of them is driven by something this pCPU can see at a glance:
//!
//! - a timer falls due, or a time slice ends, or a backstop walk (`LAST_TIMER_WALK`,
//!   `LAST_WAKE_WALK`) is due: this pCPU's local APIC timer is armed for the earliest of
//!   them while it runs a guest (`World::plan_timer`), so that arrives as a timer interrupt
//!   (pending while the trap is handled, taken as soon as the guest runs), which takes the
//!   whole way out; a bound lowered by the trap's own handler is seen here (below what the
//!   APIC is armed for);
//! - a vCPU may wake, or this one must stop: the notifier set `WAKE_DUE`, or another pCPU
//!   (or this one) set `REQ_KICK` in `PerCpu::requests`, with an IPI that is pending while
//!   interrupts are off;
//! - a flush is asked: `REQ_FLUSH`, the same way;
//! - polled console input (no I/O APIC route for COM1): pCPU 0 takes the whole way out.
//!
//! When none holds, [`may_leave_quietly`] says so, and the trap returns after delivering
//! events and checking its frame, without the world's walks: Xen's `test_all_events`, which
//! looks at `softirq_pending` and the vCPU's `evtchn_upcall_pending` and returns.
//!
//! [`light`] goes further for the hypercalls that read nothing of the domain (Xen's
//! `xen_version(XENVER_version)`, the null hypercall of the benchmarks): they are answered
//! before the world or the domain is locked, with the vCPU's `vcpu_info` as the last way out
//! recorded it (`PerCpu::entered_info`). The domain cannot go away meanwhile: a
//! domain is destroyed only once none of its vCPUs is current on any pCPU, and this pCPU's
//! current vCPU changes only on the full way out. Events pending and unmasked, anything
//! above, or a frame the ordinary way out would refuse (`sanitize`: a non-canonical return
//! address, which `iretq` turns into a #GP in ring 0) send the call down the ordinary path
//! instead.

use core::sync::atomic::Ordering;

use guest_abi::shared_info::VcpuInfo;

use super::{WAKE_DUE, is_hardware_interrupt};
use crate::arch::x86_64::trap::TrapFrame;
use crate::arch::x86_64::{ioapic, percpu};

/// Whether a trap of `vector` on this pCPU may return to its guest without the trap-end work
/// (the module's list). No clock is read: what falls due in time is the APIC timer's.
#[inline]
pub fn may_leave_quietly(cpu: &percpu::PerCpu, vector: u64) -> bool {
    cpu.requests.load(Ordering::Acquire) == 0
        && !is_hardware_interrupt(vector)
        && !WAKE_DUE.load(Ordering::Acquire)
        && cpu.timer_due.load(Ordering::SeqCst) >= cpu.armed.load(Ordering::SeqCst)
        && (cpu.index() != 0 || ioapic::serial_interrupts())
}

/// Whether `info` has an event waiting that the guest takes now (pending, unmasked).
pub fn event_waiting(info: &VcpuInfo) -> bool {
    info.evtchn_upcall_pending.load(Ordering::Acquire) != 0
        && info.evtchn_upcall_mask.load(Ordering::Acquire) == 0
}

/// Answers the hypercall in `frame` at once if it is one that reads nothing of the domain
/// and the trap may leave quietly; `false` (nothing changed) sends it down the ordinary path.
#[inline]
pub fn light(frame: &mut TrapFrame) -> bool {
    use guest_abi::hypercall as nr;
    use guest_abi::version as v;
    let value = match (frame.rax, frame.rdi as u32) {
        (nr::HYPERVISOR_XEN_VERSION, v::XENVER_VERSION) => u64::from(v::XENIA_VERSION),
        _ => return false,
    };
    let cpu = percpu::this();
    let Some(info) = cpu.entered_info.get() else {
        return false;
    };
    if event_waiting(info) || !may_leave_quietly(cpu, frame.vector) {
        return false;
    }
    // The frame goes back as the CPU saved it, but not unchecked: an `int 0x82` in the last
    // two bytes of the lower canonical half saved a non-canonical return address (and ring 1
    // may make the call with any `rsp`), which `iretq` refuses with a #GP in ring 0 on Intel
    // CPUs, on the exit path: the hypervisor's fatal exception. The ordinary path's check
    // (`sanitize`) crashes the domain instead.
    // The checks of `sanitize` that a frame the CPU saved at a ring-1 `int 0x82` can fail:
    // its flags need no rewrite (ring 1 cannot change IF or IOPL, and long mode has no VM).
    if !(super::selectors_ok(frame.cs as u16, frame.ss as u16)
        && frame.cs <= 0xFFFF
        && frame.ss <= 0xFFFF
        && super::mem::is_canonical(frame.rip)
        && super::mem::is_canonical(frame.rsp))
    {
        return false;
    }
    // The entry count of the ABI (`ArchVcpuInfo::entry_count`), as every entry counts.
    info.arch.pad.fetch_add(1, Ordering::Relaxed);
    frame.rax = value;
    true
}
