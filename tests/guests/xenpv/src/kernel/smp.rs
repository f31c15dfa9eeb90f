//! A second vCPU, brought up as Linux's `cpu_initialize_context` (`arch/x86/xen/smp_pv.c`)
//! does: `VCPUOP_initialise` with a full `vcpu_guest_context` (Linux's RPL-0 selectors, a GDT
//! frame of its own, the kernel and user tables, the kernel GS base, callbacks), then
//! `VCPUOP_up`. Hostile contexts come first, each refused with nothing left behind.
//!
//! vCPU 1 runs `v1_main` on its own stack: it checks its GS base, makes hypercalls, binds
//! VIRQ_TIMER and an IPI port to itself, counts its periodic timer's events and vCPU 0's IPIs
//! through its own event callback (`xp_v1_event`, which returns with `HYPERVISOR_iret` as
//! Linux's `xen_iret` does), reports, and takes itself down with `VCPUOP_down`.
//!
//! Before vCPU 1 comes up, vCPU 0 makes a loopback channel and moves its receiving end to
//! vCPU 1 with `EVTCHNOP_bind_vcpu` (allowed for a vCPU that is down, as on Xen; Linux moves
//! xenstore's port so), and tries the bindings Xen refuses (a vCPU out of range `ENOENT`, a
//! port not in use `EINVAL`); later it sends on the channel and vCPU 1 must see the event.
//! vCPU 1 also reads an I/O port with `in`: its context asked for IOPL 1 (as Linux's does),
//! so the read is emulated (all ones), not a #GP.
//!
//! Only run when the domain has a second vCPU (`VCPUOP_is_up(1)` is not `ENOENT`).

use core::arch::global_asm;
use core::fmt::Write;
use core::sync::atomic::{AtomicU8, AtomicU32, AtomicU64, Ordering};

use guest_abi::event::{
    EVTCHNOP_ALLOC_UNBOUND, EVTCHNOP_BIND_INTERDOMAIN, EVTCHNOP_BIND_IPI, EVTCHNOP_BIND_VCPU,
    EVTCHNOP_BIND_VIRQ, EVTCHNOP_SEND, EvtchnAllocUnbound, EvtchnBindInterdomain, EvtchnBindVcpu,
    VIRQ_TIMER,
};
use guest_abi::hypercall as nr;
use guest_abi::selectors::{FLAT_KERNEL_CS64, HYPERVISOR_CS};
use guest_abi::trap::TrapInfo;
use guest_abi::types::DOMID_SELF;
use guest_abi::vcpu as vo;
use guest_abi::vcpu_context::{self as vc, VcpuGuestContext};

use super::gdt::{DPL3, LINUX_GDT, remap};
use super::{Mem, addr, check, gs_word, hypercall, write_u64, xp_failsafe, xp_trap_gp};

/// vCPU 1's GS marker (its kernel GS base from the context points here).
const V1_MARK_VALUE: u64 = 0x5643_5055_314D_524B;
static V1_MARK: u64 = V1_MARK_VALUE;

/// `vcpu_info[1]` in shared_info (64 bytes each).
static V1_VCPU_INFO: AtomicU64 = AtomicU64::new(0);
/// shared_info's address (the pending bitmap is at byte 2048).
static SHARED: AtomicU64 = AtomicU64::new(0);
static V1_TIMER_PORT: AtomicU32 = AtomicU32::new(0);
static V1_IPI_PORT: AtomicU32 = AtomicU32::new(0);
static V1_TIMER_EVENTS: AtomicU64 = AtomicU64::new(0);
static V1_IPI_EVENTS: AtomicU64 = AtomicU64::new(0);
static V1_UPCALLS: AtomicU64 = AtomicU64::new(0);
/// The loopback channel's end that vCPU 0 moved to vCPU 1, and the events vCPU 1 saw on it.
static V1_MOVED_PORT: AtomicU32 = AtomicU32::new(0);
static V1_MOVED_EVENTS: AtomicU64 = AtomicU64::new(0);
/// The byte vCPU 1's `in` read (`xp_v1_inb` stores it).
static V1_PORT_BYTE: AtomicU8 = AtomicU8::new(0);
/// 0: not started; 1: ports bound (vCPU 0 may send); 2: done, going down.
static V1_STATE: AtomicU32 = AtomicU32::new(0);
/// vCPU 0 sent its IPIs.
static V0_SENT: AtomicU32 = AtomicU32::new(0);
/// What vCPU 1 saw: bit 0 its GS marker, bit 1 `xen_version`, bit 2 both ports bound,
/// bit 3 the periodic timer set, bit 4 its events masked on entry (Xen starts a vCPU masked),
/// bit 5 DR7 disarmed (the context's I/O breakpoint dropped), bit 6 it runs on CS 0x13 (its
/// own GDT's kernel code, as Linux starts it), bit 7 its `in` emulated with all ones (the
/// context's IOPL 1 is its virtual IOPL).
static V1_SEEN: AtomicU64 = AtomicU64::new(0);
/// The CS vCPU 1 found itself running on.
static V1_CS: AtomicU32 = AtomicU32::new(0);

/// Timer events vCPU 1 waits for.
const WANT_TIMERS: u64 = 5;
/// Bound on vCPU 1's blocks and on vCPU 0's yields while it waits.
const BLOCK_BOUND: u64 = 20_000;
const YIELD_BOUND: u64 = 400_000;
const PENDING_OFFSET: u64 = 2048;

global_asm!(
    ".pushsection .bss.xp1, \"aw\", @nobits",
    ".balign 16",
    ".skip 16384",
    "xp_v1_stack_top:",
    ".skip 64",
    ".skip 16384",
    "xp_v1_kstack_top:",
    ".skip 64",
    ".popsection",
    ".text",
    ".globl xp_v1_entry, xp_v1_event, xp_v1_stack_top, xp_v1_kstack_top, xp_v1_inb",
    // rbx: where to store the byte. A port no domU has: with a virtual IOPL of 1 the
    // hypervisor answers all ones; without, #GP (the stub records vector 13).
    "xp_v1_inb:",
    "    mov edx, 0x3f9",
    "    mov al, 0x5a",
    "    in al, dx",
    "    mov [rbx], al",
    "    ret",
    // vCPU 1 starts here, in kernel mode, rsp its stack top (16-byte aligned).
    "xp_v1_entry:",
    "    call {main}",
    "    ud2",
    // Xen's event frame at rsp (kernel mode was interrupted: the current stack, 7 words
    // below a 16-byte boundary): rcx, r11, rip, cs, rflags, rsp, ss.
    "xp_v1_event:",
    "    push rax",
    "    push rdx",
    "    push rsi",
    "    push rdi",
    "    push r8",
    "    push r9",
    "    push r10",
    "    call {upcall}",
    "    pop r10",
    "    pop r9",
    "    pop r8",
    "    pop rdi",
    "    pop rsi",
    "    pop rdx",
    "    pop rax",
    // As Linux's xen_iret: rcx and r11 back from the frame, then Xen's iret_context
    // (rax, r11, rcx, flags) on top of rip, cs, rflags, rsp, ss.
    "    pop rcx",
    "    pop r11",
    "    push 0",
    "    push rcx",
    "    push r11",
    "    push rax",
    "    mov eax, {iret}",
    "    syscall",
    "    ud2",
    main = sym v1_main,
    upcall = sym v1_upcall,
    iret = const nr::HYPERVISOR_IRET,
);

unsafe extern "C" {
    static xp_v1_stack_top: u8;
    static xp_v1_kstack_top: u8;
    fn xp_v1_entry();
    fn xp_v1_event();
    fn xp_v1_inb();
}

fn vcpu_op(cmd: u32, vcpu: u64, arg: u64) -> i64 {
    hypercall(nr::HYPERVISOR_VCPU_OP, [u64::from(cmd), vcpu, arg, 0, 0])
}

fn evtchn_op(cmd: u32, arg: u64) -> i64 {
    hypercall(
        nr::HYPERVISOR_EVENT_CHANNEL_OP,
        [u64::from(cmd), arg, 0, 0, 0],
    )
}

fn bind_vcpu(port: u32, vcpu: u32) -> i64 {
    let b = EvtchnBindVcpu { port, vcpu };
    evtchn_op(EVTCHNOP_BIND_VCPU, &raw const b as u64)
}

fn sched_op(cmd: u32, arg: u64) -> i64 {
    hypercall(nr::HYPERVISOR_SCHED_OP, [u64::from(cmd), arg, 0, 0, 0])
}

fn byte_at(va: u64) -> &'static core::sync::atomic::AtomicU8 {
    // SAFETY: `va` is a byte of the mapped shared_info page, which lives as long as the
    // domain; the hypervisor updates it atomically too.
    unsafe { &*(va as *const core::sync::atomic::AtomicU8) }
}

fn word_at(va: u64) -> &'static AtomicU64 {
    // SAFETY: as `byte_at`, an 8-byte aligned word of shared_info.
    unsafe { &*(va as *const AtomicU64) }
}

/// Clears `port`'s pending bit; whether it was set.
fn take_pending(port: u32) -> bool {
    let shared = SHARED.load(Ordering::Relaxed);
    let word = word_at(shared + PENDING_OFFSET + 8 * u64::from(port / 64));
    let bit = 1u64 << (port % 64);
    word.fetch_and(!bit, Ordering::AcqRel) & bit != 0
}

/// vCPU 1's event callback body: counts what is pending on its two ports and clears it.
extern "C" fn v1_upcall() {
    let info = V1_VCPU_INFO.load(Ordering::Relaxed);
    V1_UPCALLS.fetch_add(1, Ordering::Relaxed);
    byte_at(info).store(0, Ordering::Release);
    word_at(info + 8).swap(0, Ordering::AcqRel);
    if take_pending(V1_TIMER_PORT.load(Ordering::Relaxed)) {
        V1_TIMER_EVENTS.fetch_add(1, Ordering::Relaxed);
    }
    if take_pending(V1_IPI_PORT.load(Ordering::Relaxed)) {
        V1_IPI_EVENTS.fetch_add(1, Ordering::Relaxed);
    }
    if take_pending(V1_MOVED_PORT.load(Ordering::Relaxed)) {
        V1_MOVED_EVENTS.fetch_add(1, Ordering::Relaxed);
    }
}

/// vCPU 1's life.
extern "C" fn v1_main() -> ! {
    // First, before any hypercall: a `syscall` returns on FLAT_KERNEL_CS, as on Xen (the
    // CPU does not save CS at a `syscall`).
    let cs = super::gdt::cs();
    let info = V1_VCPU_INFO.load(Ordering::Relaxed);
    let mut seen = 0;
    V1_CS.store(u32::from(cs), Ordering::Relaxed);
    if cs == 0x13 {
        seen |= 64;
    }
    if gs_word() == V1_MARK_VALUE {
        seen |= 1;
    }
    let version = hypercall(
        nr::HYPERVISOR_XEN_VERSION,
        [u64::from(guest_abi::version::XENVER_VERSION), 0, 0, 0, 0],
    );
    if version > 0 {
        seen |= 2;
    }
    if byte_at(info + 1).load(Ordering::Acquire) == 1 {
        seen |= 16;
    }
    let dr7 = hypercall(nr::HYPERVISOR_GET_DEBUGREG, [7, 0, 0, 0, 0]);
    if dr7 >= 0 && dr7 & 0xFF == 0 {
        seen |= 32;
    }
    // Nothing else uses `xp_run` meanwhile: vCPU 0 only yields until vCPU 1 reports.
    let vector = super::run(xp_v1_inb, V1_PORT_BYTE.as_ptr() as u64, 0);
    if vector == u64::MAX && V1_PORT_BYTE.load(Ordering::Relaxed) == 0xFF {
        seen |= 128;
    }
    let mut virq = guest_abi::event::EvtchnBindVirq {
        virq: VIRQ_TIMER,
        vcpu: 1,
        port: 0,
    };
    let mut ipi = guest_abi::event::EvtchnBindIpi { vcpu: 1, port: 0 };
    let b1 = evtchn_op(EVTCHNOP_BIND_VIRQ, &raw mut virq as u64);
    let b2 = evtchn_op(EVTCHNOP_BIND_IPI, &raw mut ipi as u64);
    if b1 == 0 && b2 == 0 {
        seen |= 4;
    }
    V1_TIMER_PORT.store(virq.port, Ordering::Relaxed);
    V1_IPI_PORT.store(ipi.port, Ordering::Relaxed);
    let period = vo::VcpuSetPeriodicTimer {
        period_ns: 1_000_000,
    };
    if vcpu_op(vo::VCPUOP_SET_PERIODIC_TIMER, 1, &raw const period as u64) == 0 {
        seen |= 8;
    }
    V1_SEEN.store(seen, Ordering::Relaxed);
    V1_STATE.store(1, Ordering::Release);
    for _ in 0..BLOCK_BOUND {
        let timers = V1_TIMER_EVENTS.load(Ordering::Relaxed);
        let ipis = V1_IPI_EVENTS.load(Ordering::Relaxed);
        let moved = V1_MOVED_EVENTS.load(Ordering::Relaxed);
        if timers >= WANT_TIMERS && ipis >= 1 && moved >= 1 && V0_SENT.load(Ordering::Acquire) == 1
        {
            break;
        }
        // Unmask and block: the hypervisor delivers what is pending through xp_v1_event on
        // the way back, which returns here.
        byte_at(info + 1).store(0, Ordering::Release);
        sched_op(guest_abi::sched::SCHEDOP_BLOCK, 0);
    }
    byte_at(info + 1).store(1, Ordering::Release);
    vcpu_op(vo::VCPUOP_STOP_PERIODIC_TIMER, 1, 0);
    say!(
        "xenpv: vcpu1: {} timer events, {} ipi events, {} on the moved port, {} upcalls",
        V1_TIMER_EVENTS.load(Ordering::Relaxed),
        V1_IPI_EVENTS.load(Ordering::Relaxed),
        V1_MOVED_EVENTS.load(Ordering::Relaxed),
        V1_UPCALLS.load(Ordering::Relaxed)
    );
    V1_STATE.store(2, Ordering::Release);
    loop {
        // Brought up again for a remap (`remap_on_vcpu1`): made, then down again.
        let va = V1_REMAP_VA.load(Ordering::Acquire);
        if va != 0 {
            let r = hypercall(
                nr::HYPERVISOR_UPDATE_VA_MAPPING,
                [
                    va,
                    V1_REMAP_PTE.load(Ordering::Relaxed),
                    guest_abi::memory::UVMF_INVLPG,
                    0,
                    0,
                ],
            );
            V1_REMAP_RESULT.store(r as u64, Ordering::Relaxed);
            V1_REMAP_VA.store(0, Ordering::Release);
        }
        vcpu_op(vo::VCPUOP_DOWN, 1, 0);
    }
}

/// A remap vCPU 0 asks of vCPU 1 once it is down (`remap_on_vcpu1`): the address (0: none),
/// the new entry, and the result, left by vCPU 1 before it clears the address.
static V1_REMAP_VA: AtomicU64 = AtomicU64::new(0);
static V1_REMAP_PTE: AtomicU64 = AtomicU64::new(0);
static V1_REMAP_RESULT: AtomicU64 = AtomicU64::new(0);

/// Has vCPU 1 (down, after [`run`]) brought up again to map kernel address `va` to `pte`
/// with `update_va_mapping`, and waits (bounded) until it is down again: its result, or
/// `None` when the domain has no vCPU 1. A wait out of bounds answers `EAGAIN` (-11).
pub fn remap_on_vcpu1(va: u64, pte: u64) -> Option<i64> {
    if vcpu_op(vo::VCPUOP_IS_UP, 1, 0) != 0 {
        return None;
    }
    V1_REMAP_PTE.store(pte, Ordering::Relaxed);
    V1_REMAP_VA.store(va, Ordering::Release);
    let up = vcpu_op(vo::VCPUOP_UP, 1, 0);
    let mut waited = 0;
    while (V1_REMAP_VA.load(Ordering::Acquire) != 0 || vcpu_op(vo::VCPUOP_IS_UP, 1, 0) != 0)
        && waited < YIELD_BOUND
    {
        sched_op(guest_abi::sched::SCHEDOP_YIELD, 0);
        waited += 1;
    }
    if up != 0 {
        return Some(up);
    }
    if V1_REMAP_VA.load(Ordering::Acquire) != 0 {
        return Some(-11);
    }
    Some(V1_REMAP_RESULT.load(Ordering::Relaxed) as i64)
}

/// What `main` gives this section.
pub struct Setup<'a> {
    pub mem: &'a Mem,
    pub shared: u64,
    /// The kernel's L4 and the user L4 (virtual addresses; the user one pinned).
    pub kernel_l4: u64,
    pub user_l4: u64,
    /// A data page of the kernel (never a page table).
    pub data_page: u64,
    /// Two free pages of the padding for GDTs.
    pub gdt_page: u64,
    pub bad_gdt_page: u64,
}

/// An address in the hypervisor's range, and a CR3 naming a frame no domain has.
const HYP: u64 = 0xFFFF_8000_0000_1000;
const FOREIGN_CR3: u64 = vc::xen_pfn_to_cr3(0xF_FFFF_FFFF);

/// The context Linux's `cpu_initialize_context` gives (RPL-0 selectors, IOPL 1 asked for).
fn good_context(s: &Setup<'_>) -> VcpuGuestContext {
    let mut c = VcpuGuestContext::new();
    c.flags = vc::VGCF_IN_KERNEL;
    c.user_regs.rip = addr(xp_v1_entry);
    c.user_regs.rsp = &raw const xp_v1_stack_top as u64;
    // Linux's __KERNEL_CS and __KERNEL_DS, of the GDT given below, with RPL 0.
    c.user_regs.cs = 0x10;
    c.user_regs.ss = 0x18;
    c.user_regs.rflags = 0x1000;
    c.kernel_ss = 0x18;
    c.kernel_sp = &raw const xp_v1_kstack_top as u64;
    c.ctrlreg[3] = vc::xen_pfn_to_cr3(s.mem.mfn_of(s.kernel_l4));
    c.ctrlreg[1] = vc::xen_pfn_to_cr3(s.mem.mfn_of(s.user_l4));
    c.event_callback_eip = addr(xp_v1_event);
    c.failsafe_callback_eip = addr(xp_failsafe);
    c.gs_base_kernel = &raw const V1_MARK as u64;
    c.gdt_frames[0] = s.mem.mfn_of(s.gdt_page);
    c.gdt_ents = 16;
    // DR7 asking for an I/O breakpoint (L0, R/W0 = 10b): Xen drops it, the vCPU starts
    // with DR7 disarmed (vCPU 1 checks).
    c.debugreg[7] = 0x2_0401;
    let mut gp = TrapInfo::new(13, 0, false, addr(xp_trap_gp));
    gp.cs = FLAT_KERNEL_CS64;
    c.trap_ctxt[13] = gp;
    c
}

/// The section: hostile contexts refused, vCPU 1 brought up, its events counted, its way down.
pub fn run(s: &Setup<'_>) {
    if vcpu_op(vo::VCPUOP_IS_UP, 1, 0) < 0 {
        say!("xenpv: one vCPU: the SMP checks are skipped");
        return;
    }
    SHARED.store(s.shared, Ordering::Relaxed);
    V1_VCPU_INFO.store(s.shared + 64, Ordering::Relaxed);
    // A GDT page as Linux's, and a hostile one with a call gate; both read-only. The hostile
    // one is first tried while still writable.
    for i in 0..512 {
        write_u64(s.gdt_page + i * 8, 0);
        write_u64(s.bad_gdt_page + i * 8, 0);
    }
    for (i, d) in LINUX_GDT.iter().enumerate() {
        write_u64(s.gdt_page + 8 * i as u64, *d);
        write_u64(s.bad_gdt_page + 8 * i as u64, *d);
    }
    // A call gate to the hypervisor's code selector (DPL 3, present).
    write_u64(
        s.bad_gdt_page + 8 * 8,
        (1 << 47) | DPL3 | (0xC << 40) | (u64::from(HYPERVISOR_CS) << 16),
    );
    let ro = remap(s.gdt_page, s.mem.mfn_of(s.gdt_page), false);

    // Hostile contexts: each refused with Xen's errno, vCPU 1 still down and uninitialised.
    type Mutate = fn(&mut VcpuGuestContext, &Setup<'_>);
    let hostile: [(&str, Mutate, i64); 14] = [
        ("cr3_foreign", |c, _| c.ctrlreg[3] = FOREIGN_CR3, -22),
        (
            "cr3_data_page",
            |c, s| c.ctrlreg[3] = vc::xen_pfn_to_cr3(s.mem.mfn_of(s.data_page)),
            -22,
        ),
        (
            "user_cr3_not_l4",
            |c, s| c.ctrlreg[1] = vc::xen_pfn_to_cr3(s.mem.mfn_of(s.data_page)),
            -22,
        ),
        ("gdt_foreign", |c, _| c.gdt_frames[0] = 0xF_FFFF_FFFF, -22),
        (
            "gdt_writable",
            |c, s| c.gdt_frames[0] = s.mem.mfn_of(s.bad_gdt_page),
            -22,
        ),
        ("gdt_too_many", |c, _| c.gdt_ents = 14 * 512 + 1, -22),
        ("rip_non_canonical", |c, _| c.user_regs.rip = 1 << 63, -22),
        ("rip_hypervisor", |c, _| c.user_regs.rip = HYP, -22),
        (
            "event_cb_hypervisor",
            |c, _| c.event_callback_eip = HYP,
            -22,
        ),
        ("trap_hypervisor", |c, _| c.trap_ctxt[13].address = HYP, -22),
        (
            "cs_hypervisor",
            |c, _| c.user_regs.cs = HYPERVISOR_CS | 0xe000,
            -22,
        ),
        ("dr0_hypervisor", |c, _| c.debugreg[0] = HYP, -22),
        ("dr7_above_32_bits", |c, _| c.debugreg[7] = 1 << 32, -22),
        ("ldt", |c, _| c.ldt_ents = 1, -22),
    ];
    let mut wrong = [""; 14];
    let mut n_wrong = 0;
    for (name, mutate, want) in hostile {
        let mut c = good_context(s);
        mutate(&mut c, s);
        let r = vcpu_op(vo::VCPUOP_INITIALISE, 1, &raw const c as u64);
        if r != want {
            say!("xenpv: hostile context {name}: {r}, expected {want}");
            wrong[n_wrong] = name;
            n_wrong += 1;
        }
    }
    // The call gate, now in a read-only page.
    let ro_bad = remap(s.bad_gdt_page, s.mem.mfn_of(s.bad_gdt_page), false);
    let mut c = good_context(s);
    c.gdt_frames[0] = s.mem.mfn_of(s.bad_gdt_page);
    let gate = vcpu_op(vo::VCPUOP_INITIALISE, 1, &raw const c as u64);
    let up_early = vcpu_op(vo::VCPUOP_UP, 1, 0);
    let still_down = vcpu_op(vo::VCPUOP_IS_UP, 1, 0);
    check(
        "smp_hostile_contexts_refused",
        n_wrong == 0 && ro == 0 && ro_bad == 0 && gate == -22 && up_early == -22 && still_down == 0,
        format_args!(
            "wrong answers {:?}, call gate {gate}, up before initialise {up_early}, \
             is_up {still_down}, remaps {ro} {ro_bad}",
            &wrong[..n_wrong]
        ),
    );

    // A loopback channel whose receiving end goes to vCPU 1 while it is down, and the
    // bindings Xen refuses. vCPU 0 keeps its events masked: the new sending end starts
    // pending for it (Xen's `evtchn_bind_interdomain`), which it clears by hand.
    byte_at(s.shared + 1).store(1, Ordering::Release);
    let mut unbound = EvtchnAllocUnbound {
        dom: DOMID_SELF,
        remote_dom: DOMID_SELF,
        port: 0,
    };
    let alloc = evtchn_op(EVTCHNOP_ALLOC_UNBOUND, &raw mut unbound as u64);
    let moved = unbound.port;
    let moved_down = bind_vcpu(moved, 1);
    let mut inter = EvtchnBindInterdomain {
        remote_dom: DOMID_SELF,
        remote_port: moved,
        local_port: 0,
    };
    let bound = evtchn_op(EVTCHNOP_BIND_INTERDOMAIN, &raw mut inter as u64);
    let sender = inter.local_port;
    take_pending(sender);
    V1_MOVED_PORT.store(moved, Ordering::Relaxed);
    let mut ipi_far = guest_abi::event::EvtchnBindIpi { vcpu: 2, port: 0 };
    let mut virq_far = guest_abi::event::EvtchnBindVirq {
        virq: VIRQ_TIMER,
        vcpu: 2,
        port: 0,
    };
    let refused = [
        bind_vcpu(moved, 2),
        bind_vcpu(moved, u32::MAX),
        bind_vcpu(0, 1),
        bind_vcpu(4095, 1),
        evtchn_op(EVTCHNOP_BIND_IPI, &raw mut ipi_far as u64),
        evtchn_op(EVTCHNOP_BIND_VIRQ, &raw mut virq_far as u64),
    ];
    const REFUSED: [i64; 6] = [-2, -2, -22, -22, -2, -2];

    // The context Linux gives, then up.
    let c = good_context(s);
    let init = vcpu_op(vo::VCPUOP_INITIALISE, 1, &raw const c as u64);
    let again = vcpu_op(vo::VCPUOP_INITIALISE, 1, &raw const c as u64);
    let before = vcpu_op(vo::VCPUOP_IS_UP, 1, 0);
    // SAFETY: the GDT page is this kernel's, mapped read-only now; reading it is fine.
    let fixed = unsafe { core::ptr::read_volatile((s.gdt_page + 16) as *const u64) };
    let up = vcpu_op(vo::VCPUOP_UP, 1, 0);
    let after = vcpu_op(vo::VCPUOP_IS_UP, 1, 0);
    check(
        "smp_initialise_up",
        init == 0
            && again == -17
            && before == 0
            && up == 0
            && after == 1
            && fixed == LINUX_GDT[2] | DPL3,
        format_args!(
            "initialise {init}, again {again}, is_up {before} then {after}, up {up}, \
             GDT entry 2 {fixed:#x}"
        ),
    );
    if init != 0 || up != 0 {
        return;
    }

    // vCPU 0 sends IPIs once vCPU 1 has bound its port, then waits for it to finish.
    let mut waited = 0;
    while V1_STATE.load(Ordering::Acquire) == 0 && waited < YIELD_BOUND {
        sched_op(guest_abi::sched::SCHEDOP_YIELD, 0);
        waited += 1;
    }
    let mut sent = 0;
    for _ in 0..3 {
        let send = guest_abi::event::EvtchnSend {
            port: V1_IPI_PORT.load(Ordering::Relaxed),
        };
        if evtchn_op(EVTCHNOP_SEND, &raw const send as u64) == 0 {
            sent += 1;
        }
        sched_op(guest_abi::sched::SCHEDOP_YIELD, 0);
    }
    // The event on the moved port notifies vCPU 1 only: vCPU 0's own flags (it is masked;
    // it has no timer and no other source of events now) stay clear. vCPU 1 scans the
    // pending bitmap on any upcall, so its count alone would not tell.
    byte_at(s.shared).store(0, Ordering::SeqCst);
    word_at(s.shared + 8).store(0, Ordering::SeqCst);
    let send = guest_abi::event::EvtchnSend { port: sender };
    let sent_moved = evtchn_op(EVTCHNOP_SEND, &raw const send as u64);
    let v0_flagged = byte_at(s.shared).load(Ordering::SeqCst);
    V0_SENT.store(1, Ordering::Release);
    while V1_STATE.load(Ordering::Acquire) != 2 && waited < YIELD_BOUND {
        sched_op(guest_abi::sched::SCHEDOP_YIELD, 0);
        waited += 1;
    }
    let seen = V1_SEEN.load(Ordering::Relaxed);
    let timers = V1_TIMER_EVENTS.load(Ordering::Relaxed);
    let ipis = V1_IPI_EVENTS.load(Ordering::Relaxed);
    check(
        "smp_vcpu1_runs",
        V1_STATE.load(Ordering::Acquire) == 2 && seen == 0xFF,
        format_args!(
            "state {}, seen {seen:#x} (1 gs, 2 xen_version, 4 ports, 8 timer, 16 masked, 32 dr7 off, 64 cs 0x13, 128 in emulated), cs {:#x}, in read {:#x}",
            V1_STATE.load(Ordering::Relaxed),
            V1_CS.load(Ordering::Relaxed),
            V1_PORT_BYTE.load(Ordering::Relaxed)
        ),
    );
    check(
        "smp_vcpu1_events",
        timers >= WANT_TIMERS && ipis >= 1 && sent == 3,
        format_args!("timer events {timers}, ipi events {ipis}, ipis sent {sent}"),
    );
    // vCPU 1's own ports cannot move (an IPI, a per-vCPU VIRQ: EINVAL, as Xen).
    let fixed = [
        bind_vcpu(V1_IPI_PORT.load(Ordering::Relaxed), 0),
        bind_vcpu(V1_TIMER_PORT.load(Ordering::Relaxed), 0),
    ];
    let moved_events = V1_MOVED_EVENTS.load(Ordering::Relaxed);
    check(
        "smp_event_binding",
        alloc == 0
            && moved_down == 0
            && bound == 0
            && refused == REFUSED
            && fixed == [-22, -22]
            && sent_moved == 0
            && v0_flagged == 0
            && moved_events >= 1,
        format_args!(
            "alloc {alloc}, move to down v1 {moved_down}, bind {bound}, refused {refused:?} \
             (want {REFUSED:?}), fixed {fixed:?}, send {sent_moved}, v0 flagged {v0_flagged}, \
             v1 saw {moved_events}"
        ),
    );
    // vCPU 1 takes itself down; this vCPU runs on.
    let mut down = vcpu_op(vo::VCPUOP_IS_UP, 1, 0);
    while down != 0 && waited < YIELD_BOUND {
        sched_op(guest_abi::sched::SCHEDOP_YIELD, 0);
        waited += 1;
        down = vcpu_op(vo::VCPUOP_IS_UP, 1, 0);
    }
    let me = vcpu_op(vo::VCPUOP_IS_UP, 0, 0);
    check(
        "smp_vcpu1_down",
        down == 0 && me == 1,
        format_args!("is_up(1) {down}, is_up(0) {me}, after {waited} yields"),
    );
}
