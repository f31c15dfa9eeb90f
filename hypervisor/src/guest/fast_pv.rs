//! The short ways for a Xen PV vCPU's system calls (issue 18, session 13): a program's
//! `syscall` bounced to the kernel, the kernel's `HYPERVISOR_iret` back to the program, and
//! the hypercalls Linux makes at every context switch (`set_segment_base` three times,
//! `stack_switch` once, and since session 14 `mmuext_op` with the two base pointers).
//!
//! A system call of a Xen PV guest is two traps: the program's `syscall` (Xen's
//! `syscall_enter`, `switch_to_kernel` and `create_bounce_frame`) and the kernel's `iret`
//! hypercall (Xen's `do_iret`). The ordinary path ([`super::trap()`]) takes each through the
//! general dispatcher: the shared world, the domain's lock, a hypercall context, the
//! handler, the result applied, then the quiet way out ([`super::leave_quietly`]). These two
//! short ways do the same work with less around it. Since session 20 the entry stub
//! (`xenia_pv_fast` in `arch::x86_64::entry`) takes the common case of both first, in
//! assembly and without the locks (its notes, and docs/security.md §3.16); these ways take
//! what it hands on (and everything with `xenpv_fastpath=0`):
//!
//! - for the `syscall`, no event waits that the guest takes now. What else may be due (a
//!   request to this pCPU, a wake-up, a timer: `fast::may_leave_quietly`) is looked at once,
//!   after the work, as the ordinary path looks at it at the trap's end: a hypercall
//!   answered and then a request served is what the ordinary path does too (until session
//!   18 it was also looked at before, and a trap with something due went the ordinary way:
//!   about 13 instructions of every trap, some 200 of a pipe round trip);
//! - the world is taken shared and the caller's domain locked, as on the ordinary path, so
//!   the vCPU's mode, its GS bases and its tables change under the same lock as there, and
//!   the domain's page tables cannot change under the guest-memory access (the frame is
//!   written, and the `iret_context` read, while the lock is held, exactly as
//!   `AddressSpace::write_bytes` and `read` do on the ordinary path);
//! - the end is the ordinary path's own: [`super::leave_quietly`] (events delivered, the
//!   frame checked by `sanitize`, what the next trap reads recorded), or the whole trap end
//!   when that finds something due.
//!
//! Every check of the ordinary path is made, and anything these ways do not handle goes to
//! the ordinary path **before anything has changed**, which then does what it must (crash
//! the domain, or give the guest its fault):
//!
//! - `syscall` from user mode: no syscall callback (#UD), no kernel stack (`stack_switch`;
//!   a crash), a frame place that is not one page of plain guest memory mapped writable
//!   through the kernel's table (outside the guest's range: the hypervisor's addresses;
//!   a page table or descriptor page: `ft::current_type`; not mapped). The frame is Xen's:
//!   `rcx, r11, rip, cs (RPL 3, the event mask in bits 32–39), rflags (IF the inverse of the
//!   mask), rsp, ss` below `kernel_sp` aligned to 16 bytes; the handler is entered in kernel
//!   mode with `FLAT_KERNEL_CS`/`SS`, AC, VM, RF, NT and TF cleared, and events masked when
//!   the callback asked (`VGCF_syscall_disables_events`).
//! - `iret` from kernel mode: an `iret_context` that is not within one readable page at
//!   `rsp`, a return to user mode with no user table (a crash), or a frame the CPU's `iretq`
//!   would refuse (`xenpv::iret_refusal`: the guest's #GP). CS and SS get RPL 3; IOPL and VM
//!   are cleared and IF set; `rcx` and `r11` are restored unless `VGCF_in_syscall`; the
//!   event mask comes from the saved IF, and an event pending once it is unmasked is
//!   delivered by the way out, from user mode, as on the ordinary path.
//!
//! - `set_segment_base`, `stack_switch` from kernel mode: the ordinary handlers' own code
//!   (`xenpv::segment_base`, `xenpv::set_kernel_stack`) under the same lock; only a return
//!   address or stack pointer that is not canonical (which `sanitize` would crash the domain
//!   for) goes the ordinary way.
//!
//! - `mmuext_op` from kernel mode with one or two items, all `MMUEXT_NEW_BASEPTR` or
//!   `MMUEXT_NEW_USER_BASEPTR`, no `done` pointer and `DOMID_SELF` (Linux's `xen_write_cr3`
//!   at every switch of address space; session 14, [`base_switch`]). Xen's `new_guest_cr3`
//!   has the same shape: the new table referenced, the old one dropped. Each item is done by
//!   the ordinary path's own frame-table call under the same locks (the world shared, the
//!   caller's domain locked, the frame table entered through `ft::with`):
//!   `FrameTable::set_base` takes a general reference (refused unless the frame is the
//!   caller's own: another domain's, the hypervisor's, free or outside memory) and an L4
//!   type reference (a frame already an L4 shares it; any other frame is validated as an
//!   L4 now, which a data page mapped writable, a lower table or a descriptor page fails),
//!   and only then drops the old table's, which `check_base` first finds to be a base
//!   pointer of this domain. So an unpinned frame gets exactly the ordinary path's answer (a
//!   valid L4 validated and used, anything else refused), and a table another vCPU unpins
//!   meanwhile cannot go: the unpin takes the same domain lock, and a table that is some
//!   vCPU's base keeps its type while it is. The items are read through the kernel's
//!   table within one page (the memo below). The first item refused: nothing changed, and
//!   the ordinary path answers (and logs) it. The second refused after the first was done:
//!   its errno, the first kept, as the ordinary path (with no `done` pointer) and Xen.
//!   Another command, a `done` pointer, a foreign domain, or a continuation kept for an
//!   earlier batch (which the ordinary path would take or drop) go the ordinary way.
//!
//! A trap whose `PerCpu::entered_mode` hint says kernel or user mode is checked against
//! `Vcpu::kernel_mode` under the lock: a `syscall` from user mode can never be taken for a
//! hypercall here either.

use core::sync::atomic::Ordering;

use guest_abi::selectors::{FLAT_KERNEL_CS64, FLAT_KERNEL_SS64};
use guest_abi::shared_info::VcpuInfo;
use guest_abi::trap::{RFLAGS_IF, VGCF_IN_SYSCALL};

use super::{Shared, fast, mem, xenpv};
use crate::arch::x86_64::percpu;
use crate::arch::x86_64::trap::TrapFrame;
use crate::domain::Domain;
use crate::mm::frame_table::PageType;
use crate::mm::{Mfn, PAGE_SIZE, physmem};

/// Words of the bounce frame a `syscall` from user mode pushes: rcx, r11, rip, cs, rflags,
/// rsp, ss.
const BOUNCE_WORDS: usize = 7;
/// Words of Xen's `iret_context`: rax, r11, rcx, flags, rip, cs, rflags, rsp, ss.
const IRET_WORDS: usize = 9;

const RFLAGS_TF: u64 = 1 << 8;
const RFLAGS_IOPL: u64 = 3 << 12;
const RFLAGS_NT: u64 = 1 << 14;
const RFLAGS_RF: u64 = 1 << 16;
const RFLAGS_VM: u64 = 1 << 17;
const RFLAGS_AC: u64 = 1 << 18;

/// What the trap in `frame` is (the caller's reading of `PerCpu::entered_mode` and `rax`).
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A `syscall` from user mode.
    Syscall,
    /// The `iret` hypercall from kernel mode.
    Iret,
    /// `set_segment_base` or `stack_switch` from kernel mode (Linux's context switch).
    Hypercall,
}

/// Handles the trap in `frame` on the short way if it can; `false`: nothing changed, the
/// ordinary path takes it. Inlined into its one caller (`trap::xen_pv_syscall`, itself out
/// of line so that the ring-1 dispatcher keeps its tail calls).
#[inline(always)]
pub fn trap(frame: &mut TrapFrame, kind: Kind) -> bool {
    let cpu = percpu::this();
    let Some(info) = cpu.entered_info.get() else {
        return false;
    };
    let Some((id, v)) = cpu.current() else {
        return false;
    };
    if kind == Kind::Syscall && fast::event_waiting(info) {
        return false;
    }
    let world = super::read_world();
    let Some(mut dom) = world.domains.lock(id) else {
        return false;
    };
    if dom.shutdown.is_some() {
        return false;
    }
    // `info` is this vCPU's `vcpu_info` (`entered` recorded it at the last way out, and
    // only a way out records another).
    debug_assert!(core::ptr::eq(info, dom.vcpu_info_static(v)));
    // The mode each way leaves the vCPU in (`None`: not taken, nothing changed).
    let kernel_mode = match kind {
        Kind::Syscall => syscall(&mut dom, v, frame, info).then_some(true),
        Kind::Iret => iret(&mut dom, v, frame, info),
        Kind::Hypercall => hypercall(&mut dom, v, frame).then_some(true),
    };
    let Some(kernel_mode) = kernel_mode else {
        return false;
    };
    debug_assert_eq!(dom.vcpus.get(v).map(|c| c.kernel_mode), Some(kernel_mode));
    // The entry count of the ABI (`ArchVcpuInfo::entry_count`), as every entry counts.
    info.arch.pad.fetch_add(1, Ordering::Relaxed);
    // The vector the caller gave the frame, as a constant: neither is a hardware interrupt,
    // which the compiler then need not look for (`fast::light` does the same).
    let vector = if kind == Kind::Syscall {
        crate::arch::x86_64::entry::SYSCALL_VECTOR
    } else {
        u64::from(guest_abi::hypercall::HYPERCALL_VECTOR)
    };
    debug_assert_eq!(frame.vector, vector);
    if fast::may_leave_quietly(cpu, vector) && !fast::event_waiting(info) {
        // The quiet way out (`leave_quietly`) with what it would find known: no event to
        // deliver (none waited before the call, and an `iret` that unmasks one goes the
        // ordinary way), a frame `sanitize` passes (the selectors are Xen's flat ones in its
        // reserved GDT page, which every Xen PV vCPU has in force, with a canonical handler
        // and a stack in the guest's range; or the `iret` frame `iret_refusal` checked against
        // the GDT in force, with a canonical `rsp`), and of what `entered` records only the
        // mode changed.
        frame.rflags = super::clean_flags(frame.rflags);
        // The mode, and whether the entry stub takes the next system call (kept).
        let fast = cpu.entered_mode.load(Ordering::Relaxed) & percpu::MODE_FAST;
        cpu.entered_mode.store(
            fast + if kernel_mode {
                percpu::MODE_XEN_PV_KERNEL
            } else {
                percpu::MODE_XEN_PV_USER
            },
            Ordering::Relaxed,
        );
        cpu.entered_pending.store(false, Ordering::Relaxed);
        return true;
    }
    // Something is due (from before the trap or since): the ordinary way out, as the
    // ordinary path ends.
    match super::leave_quietly(dom, v, frame, vector) {
        Shared::Left => {}
        Shared::Done(reschedule) => super::finish_trap(world, frame, reschedule),
        Shared::Stopped | Shared::Contended => {
            drop(world);
            let mut world = super::lock_world();
            world.domain_stopped(id);
            super::finish_trap(world.downgrade(), frame, true);
        }
    }
    true
}

/// A `syscall` from user mode, bounced to the syscall callback in kernel mode (the module
/// docs); `false` (nothing changed) for anything the ordinary path must see.
#[inline(always)]
fn syscall(dom: &mut Domain, v: usize, frame: &mut TrapFrame, info: &VcpuInfo) -> bool {
    let id = dom.id;
    let Some(vcpu) = dom.vcpus.get_mut(v) else {
        return false;
    };
    let (handler, stack) = (vcpu.callbacks.syscall, vcpu.kernel_sp);
    if !vcpu.xen_pv || vcpu.kernel_mode || handler == 0 || stack == 0 || !mem::is_canonical(handler)
    {
        return false;
    }
    let Some(sp) = (stack & !0xF).checked_sub(8 * BOUNCE_WORDS as u64) else {
        return false;
    };
    let Some(place) = guest_words(vcpu.l4, id, sp, BOUNCE_WORDS, true, true) else {
        return false;
    };
    let mask = info.evtchn_upcall_mask.load(Ordering::Acquire);
    let rflags = (frame.rflags & !RFLAGS_IF) | if mask == 0 { RFLAGS_IF } else { 0 };
    let words: [u64; BOUNCE_WORDS] = [
        frame.rcx,
        frame.r11,
        frame.rip,
        (frame.cs & 0xFFFF) | (u64::from(mask) << 32),
        rflags,
        frame.rsp,
        frame.ss & 0xFFFF,
    ];
    physmem::write_u64s(
        Mfn::from_phys(place),
        ((place % PAGE_SIZE) / 8) as usize,
        &words,
    );
    // To kernel mode: always possible (the kernel's table is the base pointer).
    let _ = xenpv::toggle_mode(vcpu);
    frame.rip = handler;
    frame.cs = u64::from(FLAT_KERNEL_CS64);
    frame.ss = u64::from(FLAT_KERNEL_SS64);
    frame.rsp = sp;
    frame.rflags &= !(RFLAGS_AC | RFLAGS_VM | RFLAGS_RF | RFLAGS_NT | RFLAGS_TF);
    if vcpu.callbacks.syscall_masks_events {
        info.evtchn_upcall_mask.store(1, Ordering::Release);
    }
    true
}

/// `HYPERVISOR_iret` from kernel mode (the module docs, `xenpv::iret`): the mode it leaves
/// the vCPU in (`true`: kernel), or `None` (nothing changed) for anything the ordinary path
/// must see.
#[inline(always)]
fn iret(dom: &mut Domain, v: usize, frame: &mut TrapFrame, info: &VcpuInfo) -> Option<bool> {
    let id = dom.id;
    let vcpu = dom.vcpus.get_mut(v)?;
    if !vcpu.xen_pv || !vcpu.kernel_mode {
        return None;
    }
    let place = guest_words(vcpu.l4, id, frame.rsp, IRET_WORDS, false, true)?;
    let [rax, r11, rcx, flags, rip, cs, rflags, rsp, ss] = physmem::read_u64_array::<IRET_WORDS>(
        Mfn::from_phys(place),
        ((place % PAGE_SIZE) / 8) as usize,
    );
    // Xen keeps the low 16 bits (the bounce frame's event mask comes back in bits 32..39).
    let (cs16, ss16) = (cs as u16 | 3, ss as u16 | 3);
    let to_user = cs & 3 == 3;
    let mask = u8::from(rflags & RFLAGS_IF == 0);
    // What the ordinary path crashes the domain for, or gives the guest a fault for, and an
    // event the return unmasks (delivered there, on the way out).
    if (to_user && vcpu.user_l4 == Mfn(0))
        || !mem::is_canonical(rsp)
        || flat_or_checked_refusal(vcpu, cs16, ss16, rip)
        || (mask == 0 && info.evtchn_upcall_pending.load(Ordering::Acquire) != 0)
    {
        return None;
    }
    if to_user && xenpv::toggle_mode(vcpu).is_err() {
        // Not reached: the user table was just seen. Nothing changed.
        return None;
    }
    frame.rax = rax;
    if flags & VGCF_IN_SYSCALL == 0 {
        frame.r11 = r11;
        frame.rcx = rcx;
    }
    frame.rip = rip;
    frame.cs = u64::from(cs16);
    frame.rflags = (rflags & !(RFLAGS_IOPL | RFLAGS_VM)) | RFLAGS_IF;
    frame.rsp = rsp;
    frame.ss = u64::from(ss16);
    info.evtchn_upcall_mask.store(mask, Ordering::Release);
    Some(!to_user)
}

/// Whether the CPU's `iretq` would refuse `cs:rip` with `ss` (RPL 3) for a Xen PV vCPU:
/// `xenpv::iret_refusal`, except for the pair almost every return names, Xen's flat
/// `FLAT_RING3_CS64`/`FLAT_RING3_SS64`. Those two are in Xen's reserved GDT page
/// (`gdt::XEN_RESERVED_GDT`, page 14 of every Xen PV vCPU's GDT, whatever its own frames;
/// never written), as a present DPL-3 64-bit code segment and a present DPL-3 writable data
/// segment, so `iretq` takes them with any canonical `rip`: the `lar`/`lsl` checks would
/// only find that again (about 50 instructions of each `iret`, issue 18, session 15).
///
/// Linux returns to its programs with its own `__USER_CS`/`__USER_DS` (0x33, 0x2b) in its
/// GDT. A pair found good for any canonical `rip` (a 64-bit code segment) is remembered
/// with the count of descriptor-table changes (`Vcpu::iret_selectors`,
/// `guest::desc::changes`); while no table has changed, the same pair is taken as the flat
/// one is (issue 18, session 18). The count moves after every change of a GDT, an LDT or a
/// descriptor, under the domain's lock, which this caller holds.
#[inline(always)]
fn flat_or_checked_refusal(vcpu: &mut crate::domain::Vcpu, cs: u16, ss: u16, rip: u64) -> bool {
    use guest_abi::selectors::{FLAT_RING3_CS64, FLAT_RING3_SS64};
    let pair = u32::from(cs) << 16 | u32::from(ss);
    if cs == FLAT_RING3_CS64 && ss == FLAT_RING3_SS64 {
        return !mem::is_canonical(rip);
    }
    if vcpu.iret_selectors == (pair, super::desc::changes()) {
        // A writer of descriptors that forgot `desc::changed` is caught here in builds with
        // debug assertions (the scenarios' hypervisor).
        debug_assert!(
            !mem::is_canonical(rip) || xenpv::iret_refusal(cs, ss, rip).is_none(),
            "remembered iret selectors {cs:#x}:{ss:#x} refused"
        );
        return !mem::is_canonical(rip);
    }
    checked_refusal(vcpu, cs, ss, rip, pair)
}

/// [`flat_or_checked_refusal`]'s look at the descriptors (out of line: once after each
/// change of a table).
#[inline(never)]
fn checked_refusal(vcpu: &mut crate::domain::Vcpu, cs: u16, ss: u16, rip: u64, pair: u32) -> bool {
    // The count before the look: a change after it moves the count past what is kept.
    let changes = super::desc::changes();
    if xenpv::iret_refusal(cs, ss, rip).is_some() {
        return true;
    }
    if crate::arch::x86_64::gdt::iret_any_rip_ok(cs, ss) {
        vcpu.iret_selectors = (pair, changes);
    }
    false
}

/// `set_segment_base` or `stack_switch` from kernel mode, answered as the ordinary path's
/// handlers answer them (`xenpv::segment_base`, `xenpv::set_kernel_stack`, the same code);
/// `false` (nothing changed) for any other call, or a frame that the ordinary way out would
/// refuse (a non-canonical `rip` or `rsp`: the guest chose its `rsp`, and a `syscall` in the
/// last bytes of the lower half returns to a non-canonical address).
#[inline(always)]
fn hypercall(dom: &mut Domain, v: usize, frame: &mut TrapFrame) -> bool {
    use guest_abi::hypercall as nr;
    if frame.rax == nr::HYPERVISOR_MMUEXT_OP {
        return base_switch(dom, v, frame);
    }
    let Some(vcpu) = dom.vcpus.get_mut(v) else {
        return false;
    };
    if !vcpu.xen_pv
        || !vcpu.kernel_mode
        || !mem::is_canonical(frame.rip)
        || !mem::is_canonical(frame.rsp)
    {
        return false;
    }
    let result = match frame.rax {
        nr::HYPERVISOR_SET_SEGMENT_BASE => xenpv::segment_base(vcpu, frame.rdi as u32, frame.rsi),
        nr::HYPERVISOR_STACK_SWITCH => {
            let r = xenpv::set_kernel_stack(vcpu, frame.rsi);
            // What the next way out would record of it (`entered`).
            record_kernel_sp(percpu::this(), vcpu.kernel_sp);
            r
        }
        _ => return false,
    };
    frame.rax = match result {
        Ok(super::context::Ret::Value(value)) => value,
        Err(e) => guest_abi::errno::Errno::encode_result(Err(e)) as u64,
        // Neither handler answers anything else.
        Ok(_) => 0,
    };
    true
}

/// Records vCPU's kernel stack `kernel_sp` (the one `stack_switch` set) for this pCPU's short
/// ways: `PerCpu::entered_kernel_sp`, and for the entry stub's (`xenia_pv_fast`) where a
/// system call's bounce frame goes, as [`syscall`] finds it (`PerCpu::set_bounce_place`).
pub fn record_kernel_sp(cpu: &percpu::PerCpu, kernel_sp: u64) {
    cpu.entered_kernel_sp.store(kernel_sp, Ordering::Relaxed);
    cpu.set_bounce_place(kernel_sp, BOUNCE_WORDS as u64);
}

/// Words of an `mmuext_op` item: `cmd` (32 bits, then padding), `arg1`, `arg2`.
const OP_WORDS: usize = 3;
/// Items of the `mmuext_op` calls [`base_switch`] takes (Linux's `xen_write_cr3` makes two).
const BASE_OPS: usize = 2;

/// `mmuext_op(ops, count, NULL, DOMID_SELF)` from kernel mode whose one or two items are all
/// `MMUEXT_NEW_BASEPTR` or `MMUEXT_NEW_USER_BASEPTR`: Linux's `xen_write_cr3`, one call at
/// every switch of address space. The module docs give the reasoning. Each item is done by
/// the ordinary path's own code on the same frame-table functions (`FrameTable::set_base`:
/// a general and an L4 type reference taken on the new table, validating it if it is not yet
/// an L4, the old one's dropped); `false` (nothing changed) for anything else: another
/// command, a `done` pointer, a foreign domain, a continuation kept for an earlier batch, an
/// item list not within one readable page, or a first item the frame table refuses. A
/// refusal of the second item, after the first was done, is answered as the ordinary path
/// answers it (its errno, the first item's change kept, as Xen).
fn base_switch(dom: &mut Domain, v: usize, frame: &mut TrapFrame) -> bool {
    use guest_abi::memory::{MMUEXT_NEW_BASEPTR, MMUEXT_NEW_USER_BASEPTR};
    let id = dom.id;
    let Some(vcpu) = dom.vcpus.get_mut(v) else {
        return false;
    };
    let (list, count, done, foreign) = (frame.rdi, frame.rsi, frame.rdx, frame.r10);
    if !vcpu.xen_pv
        || !vcpu.kernel_mode
        || !(1..=BASE_OPS as u64).contains(&count)
        || done != 0
        || foreign != u64::from(guest_abi::types::DOMID_SELF)
        || vcpu.continuation.is_some()
        || !mem::is_canonical(frame.rip)
        || !mem::is_canonical(frame.rsp)
    {
        return false;
    }
    let words = OP_WORDS * count as usize;
    let Some(place) = guest_words(vcpu.l4, id, list, words, false, false) else {
        return false;
    };
    // Read with the count known at the call (a loop's bookkeeping was about 80 instructions
    // a switch): `guest_words` found `words` words within the page.
    let (list_frame, index) = (Mfn::from_phys(place), ((place % PAGE_SIZE) / 8) as usize);
    let raw: [u64; OP_WORDS * BASE_OPS] = if count == 2 {
        physmem::read_u64_array(list_frame, index)
    } else {
        let [cmd, arg1, arg2] = physmem::read_u64_array(list_frame, index);
        [cmd, arg1, arg2, 0, 0, 0]
    };
    let ops = raw[..words].chunks_exact(OP_WORDS);
    // Both commands looked at directly (the iterator's `any` was not inlined: about 40
    // instructions a switch).
    let other = |cmd: u64| !matches!(cmd as u32, MMUEXT_NEW_BASEPTR | MMUEXT_NEW_USER_BASEPTR);
    if other(raw[0]) || (count == 2 && other(raw[OP_WORDS])) {
        return false;
    }
    // The ordinary path reads each item through the table in force when it comes to it, so
    // a second item after a switch of the kernel's table is read through the new one. Taken
    // here only when that reads the same words: the new table is already an L4 (so the
    // switch validates nothing and writes nothing) and maps the list to the same place
    // (Linux's list is in the kernel's half, the same in every process).
    if count == 2 && raw[0] as u32 == MMUEXT_NEW_BASEPTR && Mfn(raw[1]) != vcpu.l4 {
        let new = Mfn(raw[1]);
        if crate::mm::ft::current_type(new) != Some(PageType::L4)
            || guest_words(new, id, list, words, false, false) != Some(place)
        {
            return false;
        }
    }
    let mut result = Ok(());
    for (i, op) in ops.enumerate() {
        let mfn = Mfn(op[1]);
        let r = if op[0] as u32 == MMUEXT_NEW_BASEPTR {
            // The ordinary path's `MMUEXT_NEW_BASEPTR` (`mmu::mmuext_op`): in kernel mode the
            // kernel's table is the one in force, so its copy is loaded.
            let old = vcpu.l4;
            crate::mm::ft::with(|t, mem| t.set_base(mem, id, Some(old), mfn)).map(|()| {
                vcpu.l4 = mfn;
                crate::arch::x86_64::entry::load_guest_root(mfn);
                // What the next way out would record of it (`entered`).
                percpu::this()
                    .entered_l4
                    .store(mfn.phys(), Ordering::Relaxed);
            })
        } else {
            xenpv::set_user_base(vcpu, id, mfn)
        };
        if let Err(e) = r {
            if i == 0 {
                // Nothing changed (`set_base` takes nothing when it refuses).
                return false;
            }
            result = Err(e);
            break;
        }
    }
    frame.rax = match result {
        Ok(()) => 0,
        Err(e) => guest_abi::errno::Errno::encode_result(Err(e)) as u64,
    };
    true
}

/// The machine address of `words` 8-byte words at the guest's `va` through the top-level
/// table `l4` of domain `dom`, if they lie in the guest's range, 8-byte aligned, within one
/// page, and that page is mapped (writable, when `write`, and then plain memory: never a
/// page table or a descriptor page, whatever the walk found, as `write_bytes`). The caller
/// holds the domain's lock, so the answer holds while it does. The kept page is also the
/// entry stub's (`xenia_pv_fast`), which has no lock: it uses it only at the generation it
/// was found at, with interrupts off (`fast::light_syscall`'s argument). `stack`: the words are on a
/// kernel stack (a frame place, an `iret_context`), whose page is kept
/// (`PerCpu::words_page`); other words (an `mmuext_op` list) do not take its place.
#[inline(always)]
fn guest_words(
    l4: Mfn,
    dom: guest_abi::types::DomId,
    va: u64,
    words: usize,
    write: bool,
    stack: bool,
) -> Option<u64> {
    let len = 8 * words as u64;
    // Within one page (checked first), so all of it lies in the same half and the same
    // 512 GiB slot as `va`: `mem::range_ok(va, len)` answers as `va` alone does.
    if !va.is_multiple_of(8)
        || (va % PAGE_SIZE) + len > PAGE_SIZE
        || !mem::is_canonical(va)
        || xenia_core::layout::in_hypervisor_range(va)
    {
        return None;
    }
    debug_assert!(mem::range_ok(va, len));
    // The generation before the walk, as the translation cache keeps it.
    let generation = crate::mm::ft::generation();
    if !stack {
        return guest_words_memo(l4, dom, va, write, generation);
    }
    // The last kernel-stack page first: a system call's frame place and the `iret_context`
    // after it lie in the same page at the top of the kernel stack (one look of a few
    // instructions where the memo's set and ways took about 50; issue 18, session 19).
    // Kept under the memo's rule (below): an answer the memo gave at this generation, for
    // the whole page (the words are within it, and a translation and a frame's use are the
    // page's); a page found writable plain memory answers reads too, one found readable
    // only answers reads. (Two pages, for two processes taking turns, measured no better
    // on the pipe round trip and worse on the null system call.)
    let page = &percpu::this().words_page;
    let (va_page, offset) = (va & !(PAGE_SIZE - 1), va % PAGE_SIZE);
    let direct_map = xenia_core::layout::DIRECTMAP_BASE;
    let kept = page[0].load(Ordering::Relaxed);
    // Written for a write, either for a read.
    let same = if write {
        kept == va_page | 3
    } else {
        kept | 2 == va_page | 3
    };
    if same
        && page[1].load(Ordering::Relaxed) == l4.phys()
        && page[2].load(Ordering::Relaxed) == u64::from(dom)
        && page[3].load(Ordering::Relaxed) == generation
    {
        let phys = page[4].load(Ordering::Relaxed) - direct_map + offset;
        // Builds with debug assertions (`xenia-checked.elf`, which `linux_smp_checked` runs
        // under Linux) walk again and compare.
        debug_assert_eq!(
            mem::AddressSpace { l4, dom }
                .translate_uncached(va, write)
                .filter(|&p| !write || plain(p)),
            Some(phys),
            "the kept page's answer for {va:#x} no longer holds"
        );
        return Some(phys);
    }
    let phys = guest_words_memo(l4, dom, va, write, generation)?;
    // This pCPU's own entry, which nothing else reads: emptied while it is rewritten, so
    // that no look could match a half-written one.
    page[0].store(0, Ordering::Relaxed);
    page[5].store(0, Ordering::Relaxed);
    page[1].store(l4.phys(), Ordering::Relaxed);
    page[2].store(u64::from(dom), Ordering::Relaxed);
    page[3].store(generation, Ordering::Relaxed);
    // The page in the direct map, and the key a read compares (the entry stub's).
    page[4].store(phys - offset + direct_map, Ordering::Relaxed);
    page[5].store(va_page | 3, Ordering::Relaxed);
    page[0].store(va_page | 1 | (u64::from(write) << 1), Ordering::Relaxed);
    Some(phys)
}

/// [`guest_words`] past the kept page: the memo, else a walk. Out of line: once after each
/// move of the generation or change of kernel stack, and for `mmuext_op` lists (their
/// caller is itself out of line); inlined, its registers cost the kept page's look.
#[inline(never)]
fn guest_words_memo(
    l4: Mfn,
    dom: guest_abi::types::DomId,
    va: u64,
    write: bool,
    generation: u64,
) -> Option<u64> {
    let key = va | 1 | (u64::from(write) << 1);
    if let Some(phys) = memo::get(key, l4.phys(), dom, generation) {
        return Some(phys);
    }
    let (phys, path) = mem::AddressSpace { l4, dom }
        .translate_path(va, write, false)
        .ok()?;
    // Plain memory stays plain while the generation holds (a frame that stops being plain
    // memory moves it: the memo's rule), so a kept answer needs no second look.
    if write && !plain(phys) {
        return None;
    }
    memo::put(key, l4.phys(), dom, phys, generation, path);
    Some(phys)
}

/// Whether the frame at machine address `phys` is plain memory (no page table, descriptor
/// page or pinned frame: what a guest's say-so may have written).
fn plain(phys: u64) -> bool {
    matches!(
        crate::mm::ft::current_type(Mfn::from_phys(phys)),
        Some(PageType::None | PageType::Writable)
    )
}

/// The last few answers of [`guest_words`], per pCPU: the frame's place on a kernel stack and
/// the `iret_context`'s, the same call after call (two of each for two processes taking
/// turns). Kept with the frame table's generation, as the translation cache
/// (`guest::mem`'s `tlb`) keeps its answers. The generation does not move at every entry
/// write or change of type (session 13, `FrameTable::use_changed`,
/// `frame_table::translation_changed`); what holds while it has not moved is:
///
/// - every walk that succeeded answers the same: no entry on its path was removed, pointed
///   elsewhere, or lost RW, U/S or execution (entries that were not present, rights given,
///   and accessed or dirty bits keep the generation; an L4 entry always moves it), and no
///   table on the path changed owner (a table on the path is referenced by the present
///   entry above it, so it cannot lose its type before that entry goes);
/// - a frame that was plain memory (`None` or `Writable`, not pinned) still is: every change
///   that makes a frame a page table (pinned, or referenced by an entry of the level
///   above, in any `mmu_update` batch), a descriptor page, another domain's or free moves
///   the generation;
///
/// so the walk and the type check, made once when the answer is kept, would answer the
/// same. Once the generation has moved, an answer none of whose frames (the walk's tables
/// and the written frame, `walk::Path`) was stamped since still holds for the same reasons,
/// and is kept at the new generation (`ft::unchanged_since`, as the translation cache). Used
/// only under the domain's lock (`trap`), so nothing of the domain changes between the look
/// and the write. The frame table's fuzzer checks both points
/// (`random_operations_keep_every_invariant`), and `linux_pv_hostile_crashes` the kept
/// frame place becoming an L1 by a pin and by an L2 entry. One look instead of the
/// cache's search, the generation read again and the type check.
mod memo {
    use core::sync::atomic::{AtomicU64, Ordering::Relaxed};

    use guest_abi::types::DomId;

    use crate::arch::x86_64::{percpu, smp::MAX_CPUS};
    use crate::mm::{Mfn, walk};

    /// Sets of four ways: a key has one set (at most four looks, no search). Two processes'
    /// kernel stacks (each a frame place and an `iret_context`) and their `mmuext_op` lists
    /// take six keys. With one way a set, two of six fell on one way about every other run;
    /// with two ways, three of six fell on one set in about one boot in five (kernel stacks
    /// are placed at random), and those three missed at every use: some 1,000 instructions
    /// a pipe round trip of the Linux benchmark (issue 18, session 16). Five of six on one
    /// set of four is about one boot in a thousand.
    const SETS: usize = 8;
    const WAYS: usize = 4;

    /// A way: key (address | write << 1 | 1; 0: empty), top-level table, domain,
    /// generation, answer, and the walk's frames below the top-level table (`walk::Path`).
    struct Way([AtomicU64; 9]);

    static MEMO: [[[Way; WAYS]; SETS]; MAX_CPUS] =
        [const { [const { [const { Way([const { AtomicU64::new(0) }; 9]) }; WAYS] }; SETS] };
            MAX_CPUS];

    /// The set of `key` through the table at machine address `l4`: bits of the address
    /// within a page and above it folded together (kernel stacks differ above bit 12, places
    /// on one stack below it), and the table's frame (Linux's `mmuext_op` list sits at the
    /// same address in every process, each with its own kernel table).
    #[inline(always)]
    fn set(key: u64, l4: u64) -> &'static [Way; WAYS] {
        let h = (key >> 3) ^ (key >> 9) ^ (key >> 14) ^ (key >> 19) ^ (l4 >> 12);
        &MEMO[percpu::this().index() % MAX_CPUS][h as usize % SETS]
    }

    #[inline(always)]
    fn answer(w: &Way, key: u64, l4: u64, dom: DomId, generation: u64) -> Option<u64> {
        let [k, t, d, g, answer, ..] = &w.0;
        if k.load(Relaxed) != key || t.load(Relaxed) != l4 || d.load(Relaxed) != u64::from(dom) {
            return None;
        }
        if g.load(Relaxed) != generation && !still(w, l4, generation) {
            return None;
        }
        Some(answer.load(Relaxed))
    }

    /// Whether `w`'s answer, kept at an older generation, still holds at `generation` (none
    /// of its frames stamped since: `ft::unchanged_since`); if so it is kept at `generation`.
    /// Out of line: it runs once after each move of the generation.
    #[inline(never)]
    fn still(w: &Way, l4: u64, generation: u64) -> bool {
        let frames = [1, 5, 6, 7, 8].map(|i| Mfn(w.0[i].load(Relaxed)));
        let [_, a, b, c, d] = frames;
        if !crate::mm::ft::unchanged_since(w.0[3].load(Relaxed), &[Mfn::from_phys(l4), a, b, c, d])
        {
            return false;
        }
        w.0[3].store(generation, Relaxed);
        true
    }

    #[inline(always)]
    pub fn get(key: u64, l4: u64, dom: DomId, generation: u64) -> Option<u64> {
        // Written out: `iter().find_map` was not inlined (a call and a closure's captures,
        // about 60 instructions a look more).
        let [a, b, c, d] = set(key, l4);
        answer(a, key, l4, dom, generation)
            .or_else(|| answer(b, key, l4, dom, generation))
            .or_else(|| answer(c, key, l4, dom, generation))
            .or_else(|| answer(d, key, l4, dom, generation))
    }

    /// Keeps an answer in the set's first way, each way's in the next (the oldest goes).
    /// Not inlined: it runs after a walk, rarely once the ways are warm.
    #[inline(never)]
    pub fn put(key: u64, l4: u64, dom: DomId, answer: u64, generation: u64, path: walk::Path) {
        let ways = set(key, l4);
        // A pCPU's own ways, which nothing else reads; each is emptied while it is rewritten
        // all the same, so that no look could match a half-written way.
        let fill = |w: &Way, words: [u64; 9]| {
            w.0[0].store(0, Relaxed);
            for (i, &word) in words.iter().enumerate().skip(1) {
                w.0[i].store(word, Relaxed);
            }
            w.0[0].store(words[0], Relaxed);
        };
        // A stale way of the same key goes first (the key is then in one way only).
        let same = |w: &Way| {
            w.0[0].load(Relaxed) == key
                && w.0[1].load(Relaxed) == l4
                && w.0[2].load(Relaxed) == u64::from(dom)
        };
        let last = ways.iter().position(same).unwrap_or(WAYS - 1);
        for i in (1..=last).rev() {
            let from = &ways[i - 1].0;
            fill(&ways[i], core::array::from_fn(|j| from[j].load(Relaxed)));
        }
        let [a, b, c, d] = path.map(|m| m.0);
        fill(
            &ways[0],
            [key, l4, u64::from(dom), generation, answer, a, b, c, d],
        );
    }
}
