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
//! - polled console input (no I/O APIC route for COM1): pCPU 0 takes the whole way out
//!   (`REQ_POLL`, a standing bit in its `requests`).
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
//!
//! [`light_syscall`] bounces a SYSCALL from ring 3 to the vCPU's syscall callback the same
//! way, with what the last way out recorded of the vCPU (`PerCpu::entered_syscall` and the
//! rest): Xen's `syscall_enter` and `create_bounce_frame`, which write the frame on the
//! guest's kernel stack without a lock. It writes guest memory without the domain's lock,
//! which the ordinary path holds so that the domain's page tables cannot change under the
//! copy. What makes the write sound without it is the frame table's flush rule: a frame
//! changes use (page table, descriptor table, freed) only after every pCPU running a guest
//! has flushed, and this pCPU, interrupts off since the SYSCALL, answers no flush request
//! until it is back in the guest. So the frame the walk (or the translation cache, valid for
//! the frame table's generation) found stays plain memory of the domain until the write is
//! done, exactly as a hardware TLB entry would keep it reachable (docs/security.md §3.10).

use core::sync::atomic::Ordering;

use guest_abi::shared_info::VcpuInfo;

use guest_abi::trap::RFLAGS_IF;

use super::{SYSCALL_INSN_LEN, WAKE_DUE, is_hardware_interrupt, mem};
use crate::arch::x86_64::percpu;
use crate::arch::x86_64::trap::TrapFrame;
use crate::mm::frame_table::PageType;
use crate::mm::{Mfn, PAGE_SIZE};

/// The frame a SYSCALL's bounce pushes: rip, cs, rflags, rsp, ss.
const FRAME_BYTES: u64 = 5 * 8;

/// The last SYSCALL's two walks, per pCPU: that its instruction's page is a user page and where
/// the frame's place on the kernel stack is (both the same call after call), kept with the frame
/// table's generation as the translation cache keeps its answers (`guest::mem`'s `tlb`, whose
/// argument holds here word for word): one look instead of two cache searches and the checks
/// around them.
mod memo {
    use core::sync::atomic::{AtomicU64, Ordering::Relaxed};

    use crate::arch::x86_64::{percpu, smp::MAX_CPUS};
    use crate::mm::PAGE_SIZE;

    /// generation, top-level table, domain, code page | 1 (0: empty), frame address, its
    /// machine address.
    struct Memo([AtomicU64; 6]);

    static MEMO: [Memo; MAX_CPUS] = [const { Memo([const { AtomicU64::new(0) }; 6]) }; MAX_CPUS];

    #[inline(always)]
    fn mine() -> &'static Memo {
        &MEMO[percpu::this().index() % MAX_CPUS]
    }

    /// The machine address of the frame's place `sp`, if the last walks were for this code
    /// page, this `sp` and this address space, at the frame table's current generation.
    #[inline(always)]
    pub fn get(l4: u64, dom: u16, code: u64, sp: u64) -> Option<u64> {
        let [g, t, d, c, at, phys] = &mine().0;
        (c.load(Relaxed) == (code & !(PAGE_SIZE - 1)) | 1
            && at.load(Relaxed) == sp
            && t.load(Relaxed) == l4
            && d.load(Relaxed) == u64::from(dom)
            && g.load(Relaxed) == crate::mm::ft::generation())
        .then(|| phys.load(Relaxed))
    }

    /// Keeps the walks' answer, found at `generation`.
    pub fn put(l4: u64, dom: u16, code: u64, sp: u64, phys: u64, generation: u64) {
        let [g, t, d, c, at, p] = &mine().0;
        // Empty while it is rewritten (a pCPU's own memo: nothing else reads it).
        c.store(0, Relaxed);
        g.store(generation, Relaxed);
        t.store(l4, Relaxed);
        d.store(u64::from(dom), Relaxed);
        at.store(sp, Relaxed);
        p.store(phys, Relaxed);
        c.store((code & !(PAGE_SIZE - 1)) | 1, Relaxed);
    }
}

/// Whether a trap of `vector` on this pCPU may return to its guest without the trap-end work
/// (the module's list). No clock is read: what falls due in time is the APIC timer's.
#[inline]
pub fn may_leave_quietly(cpu: &percpu::PerCpu, vector: u64) -> bool {
    cpu.requests.load(Ordering::Acquire) == 0
        && !is_hardware_interrupt(vector)
        && !WAKE_DUE.load(Ordering::Acquire)
        && cpu.timer_due.load(Ordering::SeqCst) >= cpu.armed.load(Ordering::SeqCst)
}

/// Whether `info` has an event waiting that the guest takes now (pending, unmasked).
pub fn event_waiting(info: &VcpuInfo) -> bool {
    info.evtchn_upcall_pending.load(Ordering::Acquire) != 0
        && info.evtchn_upcall_mask.load(Ordering::Acquire) == 0
}

/// Answers the hypercall in `frame` at once if it is one that reads nothing of the domain
/// and the trap may leave quietly; `false` (nothing changed) sends it down the ordinary path.
/// For a trap through the hypercall vector only (the caller checks): the vector is taken as
/// that constant, not read from the frame again, so that the compiler drops the
/// hardware-interrupt test of `may_leave_quietly` (it did not always see that the frame's
/// vector was the one just compared: four instructions of the null hypercall).
#[inline]
pub fn light(frame: &mut TrapFrame) -> bool {
    const VECTOR: u64 = guest_abi::hypercall::HYPERCALL_VECTOR as u64;
    debug_assert_eq!(frame.vector, VECTOR);
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
    if event_waiting(info) || !may_leave_quietly(cpu, VECTOR) {
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

/// Bounces a SYSCALL from ring 3 to the vCPU's syscall callback at once (the ordinary path's
/// `syscall` and `bounce`) if the trap may leave quietly and needs nothing else: an event
/// waiting, no callback or kernel stack, a SYSCALL that may have come from ring 1 (its
/// instruction not known to be on a user page), or a frame that cannot be written send it
/// down the ordinary path, which crashes or delivers as it must. `false`: nothing changed
/// (a frame written on the guest's stack is written again, the same, by the ordinary path).
/// Not inlined: the null hypercall's way through `guest_trap_dispatch` stays as short.
#[inline(never)]
pub fn light_syscall(frame: &mut TrapFrame) -> bool {
    let cpu = percpu::this();
    let Some(info) = cpu.entered_info.get() else {
        return false;
    };
    let Some((dom, _)) = cpu.current() else {
        return false;
    };
    let handler = cpu.entered_syscall.load(Ordering::Relaxed);
    let stack = cpu.entered_kernel_sp.load(Ordering::Relaxed);
    if handler == 0
        || stack == 0
        || !mem::is_canonical(handler)
        || event_waiting(info)
        || !may_leave_quietly(cpu, frame.vector)
    {
        return false;
    }
    let l4 = cpu.entered_l4.load(Ordering::Relaxed);
    let virtual_if = info.evtchn_upcall_mask.load(Ordering::Acquire) == 0;
    let rflags = (frame.rflags & !RFLAGS_IF) | if virtual_if { RFLAGS_IF } else { 0 };
    let words = [frame.rip, frame.cs, rflags, frame.rsp, frame.ss];
    let Some(sp) = (stack & !0xF).checked_sub(FRAME_BYTES) else {
        return false;
    };
    let code = frame.rip.wrapping_sub(SYSCALL_INSN_LEN);
    let phys = match memo::get(l4, dom, code, sp) {
        Some(phys) => phys,
        None => {
            // The generation before the walks, as the translation cache keeps it.
            let generation = crate::mm::ft::generation();
            let space = mem::AddressSpace {
                l4: Mfn::from_phys(l4),
                dom,
            };
            // Ring 3 runs only on user pages; anything else (a supervisor page: ring 1's own
            // SYSCALL, which gets #UD; a walk that cannot tell) is the ordinary path's.
            if space.user_accessible(code) != Some(true) || !mem::range_ok(sp, FRAME_BYTES) {
                return false;
            }
            let Ok(phys) = space.translate(sp, true, false) else {
                return false;
            };
            // However the walk got there, only plain memory is written on a guest's say-so
            // (as `AddressSpace::write_bytes`), in one piece. Plain memory stays plain
            // while the generation holds (a frame that stops being plain memory moves it,
            // `FrameTable::use_changed`), so a kept answer needs no second look; and until
            // this pCPU next answers a flush request, the frame cannot change use at all
            // (the module's note).
            if !phys.is_multiple_of(8)
                || (phys % PAGE_SIZE) + FRAME_BYTES > PAGE_SIZE
                || !matches!(
                    crate::mm::ft::current_type(Mfn::from_phys(phys)),
                    Some(PageType::None | PageType::Writable)
                )
            {
                return false;
            }
            memo::put(l4, dom, code, sp, phys, generation);
            phys
        }
    };
    crate::mm::physmem::write_u64s(
        Mfn::from_phys(phys),
        ((phys % PAGE_SIZE) / 8) as usize,
        &words,
    );
    // The frame the way out `iretq`s to, as `sanitize` would pass it: the kernel's
    // selectors, the canonical handler, a stack pointer the write found in guest range.
    super::enter_handler(frame, handler, sp);
    frame.rflags = super::clean_flags(frame.rflags);
    if cpu.entered_syscall_masks.load(Ordering::Relaxed) {
        info.evtchn_upcall_mask.store(1, Ordering::Release);
    }
    info.arch.pad.fetch_add(1, Ordering::Relaxed);
    true
}
