//! Xen's x86-64 PV guest mode (DESIGN.md §12): the kernel runs in ring 3, as on Xen.
//!
//! A domain is put in this mode by `XEN_DOMCTL_XENIA_SET_GUEST_MODE` before its first vCPU
//! context. Its kernel and its programs both run in ring 3 with Xen's flat selectors
//! (`guest_abi::selectors::FLAT_*`, real descriptors in Xen's reserved GDT page); what tells
//! them apart is the vCPU's mode (`Vcpu::kernel_mode`, Xen's `TF_kernel_mode`), which only
//! the hypervisor changes:
//!
//! - kernel → user: the `iret` hypercall to a frame whose CS has RPL 3 (Xen's `do_iret`);
//! - user → kernel: every exception, event and `syscall` taken from user mode
//!   (Xen's `create_bounce_frame` and `switch_to_kernel`).
//!
//! Each change swaps the GS base (Xen's `swapgs` in `toggle_guest_mode`) and the top-level
//! table this pCPU's guest root copies: the kernel's (`Vcpu::l4`) or the user one
//! (`Vcpu::user_l4`, `MMUEXT_NEW_USER_BASEPTR`). A switch to user mode without a user table
//! crashes the domain (Xen does the same), so the kernel's table is never in force in user
//! mode. A `syscall` from kernel mode is a hypercall (Xen's 64-bit convention: number in
//! `rax`, arguments in `rdi rsi rdx r10 r8`, `rcx` and `r11` clobbered); the gate of Xenia's
//! `int 0x82` (DPL 1) is closed to such guests.
//!
//! Bounce frames are Xen's: `{ rcx, r11, [error code,] rip, cs, rflags, rsp, ss }` from the
//! lowest address, CS with RPL 0 when kernel mode was interrupted (Xen clears it so the
//! kernel can tell) and the saved `evtchn_upcall_mask` in bits 32–39, `rflags.IF` the
//! inverse of that mask.

use core::sync::atomic::Ordering;

use guest_abi::errno::Errno;
use guest_abi::selectors::{FLAT_KERNEL_CS64, FLAT_KERNEL_SS64};
use guest_abi::trap::{IretContext, RFLAGS_IF, TrapInfo, VGCF_IN_SYSCALL};
use guest_abi::vcpu_context::{self as vc, VcpuGuestContext};

use super::context::{Hc, HcResult, Ret};
use super::mem::{self, GuestPtr};
use super::{crash, crash_caller};
use crate::arch::x86_64::entry;
use crate::arch::x86_64::trap::TrapFrame;
use crate::domain::{Domain, Vcpu};
use crate::mm::{Mfn, ft};

const RFLAGS_TF: u64 = 1 << 8;
const RFLAGS_IOPL: u64 = 3 << 12;
const RFLAGS_NT: u64 = 1 << 14;
const RFLAGS_RF: u64 = 1 << 16;
const RFLAGS_VM: u64 = 1 << 17;
const RFLAGS_AC: u64 = 1 << 18;

/// Whether the guest code that trapped runs in the guest's user mode: for a Xen PV vCPU
/// its mode, for a ring-1 one the saved CS's RPL.
pub fn caller_in_user_mode(cx: &mut Hc) -> bool {
    let cs = cx.regs().cs;
    let v = cx.vcpu_ref();
    if v.xen_pv {
        !v.kernel_mode
    } else {
        cs & 3 == 3
    }
}

/// Xen's `toggle_guest_mode`: kernel ↔ user, the GS bases swapped, and this pCPU's guest
/// root refilled from the other top-level table. `Err` (nothing changed) when user mode
/// has no table of its own. Only for the vCPU this pCPU runs. Inlined: the Xen PV short ways
/// make two a system call, and the call's own prologue was a tenth of it (session 16).
#[inline(always)]
pub fn toggle_mode(v: &mut Vcpu) -> Result<(), ()> {
    if v.kernel_mode && v.user_l4 == Mfn(0) {
        return Err(());
    }
    v.kernel_mode = !v.kernel_mode;
    // The other mode's base goes live; the one that was live is kept for the way back, in
    // `KERNEL_GS_BASE` while the vCPU is loaded (`gs_base` and `gs_base_other` are what the
    // last switch-out saved, `Vcpu::save_cpu_state`).
    crate::arch::x86_64::swap_gs();
    entry::load_guest_root(v.active_l4());
    Ok(())
}

/// A `syscall` that reached the trap path as a system call: from user mode, bounced to the
/// syscall callback in kernel mode (Xen's `switch_to_kernel`), or #UD without one.
pub fn syscall(cx: &mut Hc) -> HcResult {
    let cb = cx.vcpu_ref().callbacks;
    if cb.syscall == 0 {
        return super::deliver_to_trap_table(cx, guest_abi::trap::INVALID_OPCODE, None);
    }
    super::bounce_caller(cx, None, cb.syscall, cb.syscall_masks_events)
}

/// Enters guest kernel code of vCPU `v` at `handler` with Xen's 64-bit bounce frame (the
/// module docs), switching to kernel mode first when user mode was interrupted (the frame
/// then goes on the `stack_switch` stack). `Err` when the domain crashed trying.
pub fn bounce(
    dom: &mut Domain,
    v: usize,
    frame: &mut TrapFrame,
    error: Option<u64>,
    handler: u64,
    mask_events: bool,
) -> Result<(), ()> {
    let info = dom.vcpu_info_static(v);
    let vcpu = &mut dom.vcpus[v];
    let from_user = !vcpu.kernel_mode;
    let (stack, saved_cs) = if from_user {
        if vcpu.kernel_sp == 0 {
            crash(
                dom,
                format_args!(
                    "trap from user mode at rip {:#x} but no kernel stack was set (stack_switch)",
                    frame.rip
                ),
            );
            return Err(());
        }
        // To kernel mode: always possible (the kernel table is the base pointer).
        let _ = toggle_mode(vcpu);
        (vcpu.kernel_sp, frame.cs & 0xFFFF)
    } else {
        // "Indicate kernel context to guest": RPL 0 in the saved CS.
        (frame.rsp, frame.cs & 0xFFFC)
    };
    let mask = info.evtchn_upcall_mask.load(Ordering::Relaxed);
    let rflags = (frame.rflags & !RFLAGS_IF) | if mask == 0 { RFLAGS_IF } else { 0 };
    let mut words = [0u64; 8];
    let mut n = 0;
    let mut push = |w: u64| {
        words[n] = w;
        n += 1;
    };
    push(frame.rcx);
    push(frame.r11);
    if let Some(code) = error {
        push(code);
    }
    push(frame.rip);
    push(saved_cs | (u64::from(mask) << 32));
    push(rflags);
    push(frame.rsp);
    push(frame.ss & 0xFFFF);
    let top = stack & !0xF;
    let space = mem::AddressSpace {
        l4: vcpu.l4,
        dom: dom.id,
    };
    let Some(sp) = top.checked_sub(8 * n as u64) else {
        crash(
            dom,
            format_args!("guest stack pointer {stack:#x} is not usable"),
        );
        return Err(());
    };
    if space
        .write_bytes(
            GuestPtr::new(sp),
            zerocopy::IntoBytes::as_bytes(&words[..n]),
        )
        .is_err()
    {
        crash(
            dom,
            format_args!(
                "cannot write an exception frame at {sp:#x} (rip {:#x})",
                frame.rip
            ),
        );
        return Err(());
    }
    frame.rip = handler;
    frame.cs = u64::from(FLAT_KERNEL_CS64);
    frame.ss = u64::from(FLAT_KERNEL_SS64);
    frame.rsp = sp;
    frame.rflags &= !(RFLAGS_AC | RFLAGS_VM | RFLAGS_RF | RFLAGS_NT | RFLAGS_TF);
    if mask_events {
        info.evtchn_upcall_mask.store(1, Ordering::Release);
    }
    Ok(())
}

/// Xen's failsafe callback (`load_segments` in `xen/arch/x86/domain.c`): vCPU `v`, just
/// switched in with `frame`, had data selectors its GDT no longer gives (`failed`: the
/// ones that could not be loaded, each now null). The kernel is entered at its failsafe
/// callback in kernel mode (switching from user mode first, onto `kernel_sp`; from kernel
/// mode on the current stack with CS's RPL cleared), with Xen's frame
/// `{ rcx, r11, ds, es, fs, gs, rip, cs, rflags, rsp, ss }` from the lowest address (the
/// selectors as the guest had them), 16-byte aligned, the event mask in bits 32–39 of the
/// CS word and IF its inverse; events masked if it asked (`VGCF_failsafe_disables_events`).
/// No failsafe callback, or a frame that cannot be written, crashes the domain.
pub fn failsafe(dom: &mut Domain, v: usize, frame: &mut TrapFrame, failed: [u16; 4]) {
    let info = dom.vcpu_info_static(v);
    let vcpu = &mut dom.vcpus[v];
    let sels = vcpu.data_selectors;
    let handler = vcpu.callbacks.failsafe;
    if handler == 0 || (!vcpu.kernel_mode && vcpu.kernel_sp == 0) {
        crash(
            dom,
            format_args!(
                "data selectors {failed:#x?} no longer loadable and no failsafe callback or kernel stack to report them to"
            ),
        );
        return;
    }
    log::debug!(target: "domain", "d{}v{v}: data selectors {failed:#x?} not loadable: failsafe callback", dom.id);
    // As Xen: the stack chosen in the mode interrupted, then into kernel mode.
    let (stack, saved_cs) = if vcpu.kernel_mode {
        (frame.rsp, frame.cs & 0xFFFC)
    } else {
        let _ = toggle_mode(vcpu);
        (vcpu.kernel_sp, frame.cs & 0xFFFF)
    };
    let mask = info.evtchn_upcall_mask.load(Ordering::Relaxed);
    let rflags =
        (frame.rflags & !(RFLAGS_IF | RFLAGS_IOPL)) | if mask == 0 { RFLAGS_IF } else { 0 };
    let words: [u64; 11] = [
        frame.rcx,
        frame.r11,
        u64::from(sels[0]),
        u64::from(sels[1]),
        u64::from(sels[2]),
        u64::from(sels[3]),
        frame.rip,
        saved_cs | (u64::from(mask) << 32),
        rflags,
        frame.rsp,
        frame.ss & 0xFFFF,
    ];
    let space = mem::AddressSpace {
        l4: vcpu.l4,
        dom: dom.id,
    };
    let sp = (stack & !0xF).wrapping_sub(8 * words.len() as u64);
    if !mem::is_canonical(sp)
        || space
            .write_bytes(GuestPtr::new(sp), zerocopy::IntoBytes::as_bytes(&words[..]))
            .is_err()
    {
        crash(
            dom,
            format_args!("error while creating failsafe callback frame at {sp:#x}"),
        );
        return;
    }
    if vcpu.callbacks.failsafe_masks_events {
        info.evtchn_upcall_mask.store(1, Ordering::Release);
    }
    frame.rip = handler;
    frame.cs = u64::from(FLAT_KERNEL_CS64);
    frame.ss = u64::from(FLAT_KERNEL_SS64);
    frame.rsp = sp;
    frame.rflags &= !(RFLAGS_AC | RFLAGS_VM | RFLAGS_RF | RFLAGS_NT | RFLAGS_IOPL | RFLAGS_TF);
}

/// `HYPERVISOR_iret` in Xen's 64-bit PV form (Xen's `do_iret`): the `iret_context` at the
/// guest's `rsp`; to user mode when its CS has RPL 3 (which needs a user table, or the
/// domain is crashed, as Xen does); CS and SS forced to RPL 3, IOPL and VM cleared, IF set;
/// `rcx` and `r11` restored unless `VGCF_in_syscall`; the event mask from the saved IF.
///
/// A frame the CPU would refuse (`iret_refusal`: a CS or SS that is not a ring-3 selector
/// of the GDT in force, a non-canonical RIP) is handled as Xen handles the fault its own
/// `iretq` takes on it (`exception_with_ints_disabled` → `handle_exception`, "as if this
/// exception occurred in guest context"): the registers are those of the frame, and the
/// guest gets the #GP the CPU raises, with its error code (the selector, or 0), through its
/// trap table. Nothing of the frame reaches `iretq` unchecked.
pub fn iret(cx: &mut Hc) -> HcResult {
    let at = cx.regs().rsp;
    let ctx: IretContext = match cx.space().read(GuestPtr::new(at)) {
        Ok(c) => c,
        Err(_) => {
            return crash_caller(
                cx,
                format_args!("iret hypercall with an unreadable frame at {at:#x}"),
            );
        }
    };
    // Xen keeps the low 16 bits (`regs->cs` is a `uint16_t`): the bounce frame's event mask
    // in bits 32..39 of CS comes back here, as Linux hands its frames back whole.
    let (cs, ss) = (ctx.cs as u16 | 3, ctx.ss as u16 | 3);
    if ctx.cs & 3 == 3 && toggle_mode(cx.vcpu()).is_err() {
        return crash_caller(
            cx,
            format_args!(
                "switching to user mode with no user page table (MMUEXT_NEW_USER_BASEPTR)"
            ),
        );
    }
    let frame = cx.regs();
    frame.rax = ctx.rax;
    if ctx.flags & VGCF_IN_SYSCALL == 0 {
        frame.r11 = ctx.r11;
        frame.rcx = ctx.rcx;
    }
    frame.rip = ctx.rip;
    frame.cs = u64::from(cs);
    frame.rflags = (ctx.rflags & !(RFLAGS_IOPL | RFLAGS_VM)) | RFLAGS_IF;
    frame.rsp = ctx.rsp;
    frame.ss = u64::from(ss);
    let mask = u8::from(ctx.rflags & RFLAGS_IF == 0);
    cx.info().evtchn_upcall_mask.store(mask, Ordering::Release);
    if let Some(code) = iret_refusal(cs, ss, ctx.rip) {
        log::debug!(
            target: "hypercall",
            "d{}v{}: iret to cs {cs:#x} ss {ss:#x} rip {:#x}: #GP({code:#x}) to the guest",
            cx.id(),
            cx.vcpu_id(),
            ctx.rip
        );
        return super::deliver_to_trap_table(cx, guest_abi::trap::GENERAL_PROTECTION, Some(code));
    }
    Ok(Ret::Resumed)
}

/// The #GP error code `iretq` would raise returning to `cs:rip` with `ss` (RPL already 3),
/// in the CPU's order (Intel SDM Vol. 2A, IRET: CS, then SS, then RIP), or `None` if it
/// would return: a selector the GDT in force does not give as ring-3 code (CS) or writable
/// data (SS) gives its index (RPL cleared), a RIP the code segment cannot take (not
/// canonical, or beyond a 32-bit segment's limit) 0.
#[inline(always)]
pub fn iret_refusal(cs: u16, ss: u16, rip: u64) -> Option<u64> {
    // The descriptors in force are the caller's GDT (it runs on this pCPU).
    crate::arch::x86_64::gdt::iret_refusal(cs, ss, rip)
}

/// `set_segment_base` for a Xen PV vCPU (Xen's `do_set_segment_base`): FS, the user and
/// kernel GS bases (whichever is live in the current mode goes to the MSR, the other is
/// kept for the next mode change), and `SEGBASE_GS_USER_SEL`, which loads GS for user mode
/// and leaves the kernel's base in force.
pub fn set_segment_base(cx: &mut Hc) -> HcResult {
    let (which, base) = (cx.arg(0) as u32, cx.arg(1));
    segment_base(cx.vcpu(), which, base)
}

/// [`set_segment_base`] for vCPU `vcpu`, the one this pCPU runs (also `fast_pv`'s).
pub fn segment_base(vcpu: &mut Vcpu, which: u32, base: u64) -> HcResult {
    use guest_abi::selectors as s;
    use x86_64::registers::model_specific::{FsBase, GsBase};
    // In kernel mode the kernel GS base is live, in user mode the user one (hypercalls come
    // from kernel mode, but the rule stays right either way).
    let live_is_kernel = vcpu.kernel_mode;
    match which {
        s::SEGBASE_FS | s::SEGBASE_GS_USER | s::SEGBASE_GS_KERNEL => {
            if !mem::is_canonical(base) {
                return Err(Errno::EINVAL);
            }
            let addr = x86_64::VirtAddr::new(base);
            match which {
                s::SEGBASE_FS => {
                    vcpu.fs_base = base;
                    FsBase::write(addr);
                }
                _ if (which == s::SEGBASE_GS_KERNEL) == live_is_kernel => {
                    vcpu.gs_base = base;
                    GsBase::write(addr);
                }
                _ => {
                    vcpu.gs_base_other = base;
                    crate::arch::x86_64::set_other_gs_base(base);
                }
            }
            Ok(Ret::Value(0))
        }
        s::SEGBASE_GS_USER_SEL => {
            let live = GsBase::read();
            // Ring-3 data selectors only (the ring-1 ones are Xenia's other mode's).
            let ring3 = [0, s::USER_DS, s::FLAT_RING3_DS32].contains(&(base as u16));
            if base > 0xFFFF || !ring3 || !crate::arch::x86_64::load_guest_gs(base as u16) {
                return Err(Errno::EINVAL);
            }
            // Loading the selector set the live base to the descriptor's (zero): that is
            // the user base now; the kernel's stays in force.
            GsBase::write(live);
            if live_is_kernel {
                vcpu.gs_base_other = 0;
                crate::arch::x86_64::set_other_gs_base(0);
            } else {
                vcpu.gs_base = 0;
                GsBase::write(x86_64::VirtAddr::zero());
            }
            Ok(Ret::Value(0))
        }
        _ => Err(Errno::EINVAL),
    }
}

/// `stack_switch(ss, sp)` for a Xen PV vCPU: the kernel stack for bounces from user mode.
/// `ss` is ignored, as Xen ignores it for 64-bit guests (their kernel SS is always
/// `FLAT_KERNEL_SS`).
pub fn stack_switch(cx: &mut Hc) -> HcResult {
    let sp = cx.arg(1);
    set_kernel_stack(cx.vcpu(), sp)
}

/// [`stack_switch`] for vCPU `vcpu` (also `fast_pv`'s).
#[inline]
pub fn set_kernel_stack(vcpu: &mut Vcpu, sp: u64) -> HcResult {
    if !super::hypercall::kernel_stack_ok(sp) {
        return Err(Errno::EINVAL);
    }
    vcpu.kernel_sp = sp;
    Ok(Ret::Value(0))
}

/// `MMUEXT_NEW_USER_BASEPTR`: the user-mode top-level table, referenced as an L4 of the
/// caller's own (validated as for `MMUEXT_NEW_BASEPTR`); `mfn` 0 drops it. Only in Xen PV
/// mode (`EINVAL` otherwise).
pub fn new_user_baseptr(cx: &mut Hc, mfn: Mfn) -> Result<(), Errno> {
    let id = cx.id();
    set_user_base(cx.vcpu(), id, mfn)
}

/// [`new_user_baseptr`] on vCPU `v` of domain `id` (the caller holds the domain): the
/// ordinary path's code and the short way's (`fast_pv`), the same.
pub fn set_user_base(v: &mut Vcpu, id: guest_abi::types::DomId, mfn: Mfn) -> Result<(), Errno> {
    if !v.xen_pv {
        return Err(Errno::EINVAL);
    }
    let old = (v.user_l4 != Mfn(0)).then_some(v.user_l4);
    if mfn == Mfn(0) {
        if let Some(old) = old {
            ft::with(|t, mem| t.drop_base(mem, id, old))?;
        }
    } else {
        ft::with(|t, mem| t.set_base(mem, id, old, mfn)).inspect_err(|e| {
            log::debug!(target: "mm", "domain {id}: MMUEXT_NEW_USER_BASEPTR {:#x} refused: {e:?}", mfn.0);
        })?;
    }
    v.user_l4 = mfn;
    Ok(())
}

/// The checks and effects of `setvcpucontext`/`VCPUOP_initialise` for a Xen PV domain (the
/// ring-1 rules are `domctl::install_vcpu_context`'s), as Xen's `arch_set_info_guest` for a
/// 64-bit PV vCPU. Everything is checked before anything changes:
///
/// - `VGCF_in_kernel` required (a vCPU starts in kernel mode); `VGCF_i387_valid` refused
///   (no FPU image is loaded: the vCPU starts with the reset FPU state);
/// - `user_regs.cs`/`ss` with their RPL raised to 3 (Xen's `fixup_guest_*_selector`) must be
///   Xen's flat kernel selectors (`FLAT_KERNEL_CS64`/`SS64`) or entries of the context's own
///   GDT (`own_gdt_selector`, as Linux gives `__KERNEL_CS`/`__KERNEL_DS`); `kernel_ss` has its RPL raised
///   and is then unused, as on Xen for a 64-bit guest (its kernel stack segment is always
///   `FLAT_KERNEL_SS`); `rip`, `rsp`, the callbacks, the trap entries, FS and both GS bases
///   canonical and outside the hypervisor's range where they are code;
/// - `ctrlreg[3]` the kernel L4 and `ctrlreg[1]` the user L4 (0: none yet), each taken as a
///   base pointer (validated as an L4 of the domain's own: a foreign frame or a page that is
///   not a valid L4 is refused with the frame table's errno);
/// - `gdt_frames[..]`/`gdt_ents` (at most 14 pages' worth) taken as `set_gdt` takes them
///   (`desc::hold_frames`: each frame the domain's own, a descriptor page, every descriptor
///   passing Xen's `check_descriptor`), else `EINVAL`;
/// - `debugreg` as Xen takes it (`check_debugregs`: a breakpoint on the hypervisor's
///   addresses `EINVAL`, a DR7 with GD or an I/O breakpoint dropped);
/// - IOPL in `user_regs.rflags` becomes the vCPU's virtual IOPL (`Vcpu::viopl`, Xen's
///   `v->arch.pv.iopl`) and is cleared in the flags it runs with;
/// - no LDT yet (`ldt_base`/`ldt_ents` non-zero: `EINVAL`); `vm_assist` must be 0 for vCPU 0
///   and is ignored for the others, as Xen takes it from vCPU 0 only.
///
/// Trap-table selectors are not looked at: Xen enters every handler of a 64-bit guest with
/// `FLAT_KERNEL_CS`. The vCPU is left in kernel mode with the kernel GS base live and the
/// user one kept.
pub fn install_context(d: &mut Domain, vcpu: u32, ctx: &VcpuGuestContext) -> Result<bool, Errno> {
    let v = vcpu as usize;
    if v >= d.vcpus.len() {
        return Err(Errno::EINVAL);
    }
    check_context(ctx, v)?;
    let debugregs = check_debugregs(ctx)?;
    let mut traps = [TrapInfo::END; 256];
    let mut nr_traps = 0;
    for t in ctx.trap_ctxt.iter().filter(|t| !t.is_end()) {
        if !matches!(t.vector, 2 | 8 | 18) {
            traps[nr_traps] = *t;
            nr_traps += 1;
        }
    }
    let traps = &traps[..nr_traps];
    d.vcpus[v]
        .traps
        .reserve_for(traps)
        .map_err(|_| Errno::ENOMEM)?;
    let id = d.id;
    // The GDT's frames first: all or none, and let go again if a table is refused below.
    let gdt_pages = ctx.gdt_ents.div_ceil(super::desc::PER_PAGE) as usize;
    let gdt = super::desc::hold_frames(id, &ctx.gdt_frames[..gdt_pages])?;
    if let Err(e) = install_tables(d, v, ctx) {
        super::desc::release_frames(&gdt[..gdt_pages]);
        return Err(e);
    }
    let cs = u64::from(ctx.user_regs.cs) | 3;
    let ss = u64::from(ctx.user_regs.ss) | 3;
    let r = &ctx.user_regs;
    let v = &mut d.vcpus[v];
    super::desc::release_gdt(v);
    super::desc::release_ldt(v);
    super::desc::install_gdt(v, gdt, ctx.gdt_ents as u32);
    v.xen_pv = true;
    v.kernel_mode = true;
    let f = &mut v.regs;
    (f.r15, f.r14, f.r13, f.r12, f.rbp, f.rbx) = (r.r15, r.r14, r.r13, r.r12, r.rbp, r.rbx);
    (f.r11, f.r10, f.r9, f.r8, f.rax, f.rcx) = (r.r11, r.r10, r.r9, r.r8, r.rax, r.rcx);
    (f.rdx, f.rsi, f.rdi) = (r.rdx, r.rsi, r.rdi);
    f.rip = r.rip;
    f.rsp = r.rsp;
    f.cs = cs;
    f.ss = ss;
    f.rflags = (r.rflags & !(RFLAGS_IOPL | RFLAGS_VM | RFLAGS_NT)) | RFLAGS_IF | 2;
    // The context's IOPL is the vCPU's virtual one, as Xen's `arch_set_info_guest` keeps it
    // (`v->arch.pv.iopl`): Linux's `cpu_initialize_context` gives IOPL 1 (its boot vCPU
    // asks with `PHYSDEVOP_set_iopl`), and its secondary vCPUs' port I/O and `cli`/`sti`
    // rely on it.
    v.viopl = ((r.rflags & RFLAGS_IOPL) >> 12) as u8;
    v.kernel_sp = ctx.kernel_sp;
    v.callbacks.event = ctx.event_callback_eip;
    v.callbacks.failsafe = ctx.failsafe_callback_eip;
    v.callbacks.syscall = ctx.syscall_callback_eip;
    v.callbacks.syscall_masks_events = ctx.flags & vc::VGCF_SYSCALL_DISABLES_EVENTS != 0;
    v.callbacks.failsafe_masks_events = ctx.flags & vc::VGCF_FAILSAFE_DISABLES_EVENTS != 0;
    v.traps.set_all(traps).map_err(|_| Errno::ENOMEM)?;
    v.fs_base = ctx.fs_base;
    v.gs_base = ctx.gs_base_kernel;
    v.gs_base_other = ctx.gs_base_user;
    (v.dr, v.dr6, v.dr7) = debugregs;
    let online = ctx.flags & vc::VGCF_ONLINE != 0;
    let newly_online = online && !v.online;
    v.online |= online;
    v.initialised = true;
    d.vcpu_info(vcpu as usize)
        .evtchn_upcall_mask
        .store(1, Ordering::Release);
    Ok(newly_online)
}

/// The checks of [`install_context`] that need nothing but the context (`EINVAL`).
fn check_context(ctx: &VcpuGuestContext, vcpu: usize) -> Result<(), Errno> {
    let r = &ctx.user_regs;
    let entry_point_ok = |a: u64| a == 0 || mem::range_ok(a, 1);
    let known = vc::VGCF_IN_KERNEL
        | vc::VGCF_ONLINE
        | vc::VGCF_SYSCALL_DISABLES_EVENTS
        | vc::VGCF_FAILSAFE_DISABLES_EVENTS;
    let cs = r.cs | 3;
    let ss = r.ss | 3;
    let refused = ctx.flags & vc::VGCF_IN_KERNEL == 0
        || ctx.flags & !known != 0
        || ctx.ldt_base != 0
        || ctx.ldt_ents != 0
        || ctx.gdt_ents > crate::desc::MAX_GUEST_GDT_ENTRIES
        || (vcpu == 0 && ctx.vm_assist != 0)
        || !(cs == FLAT_KERNEL_CS64 || own_gdt_selector(cs, ctx.gdt_ents))
        || !(ss == FLAT_KERNEL_SS64 || own_gdt_selector(ss, ctx.gdt_ents))
        || !mem::is_canonical(r.rip)
        || !mem::is_canonical(r.rsp)
        || (ctx.kernel_sp != 0 && !super::hypercall::kernel_stack_ok(ctx.kernel_sp))
        || !entry_point_ok(r.rip)
        || !entry_point_ok(ctx.event_callback_eip)
        || !entry_point_ok(ctx.failsafe_callback_eip)
        || !entry_point_ok(ctx.syscall_callback_eip)
        || !mem::is_canonical(ctx.fs_base)
        || !mem::is_canonical(ctx.gs_base_kernel)
        || !mem::is_canonical(ctx.gs_base_user)
        || ctx
            .trap_ctxt
            .iter()
            .any(|t: &TrapInfo| !t.is_end() && !entry_point_ok(t.address));
    if refused {
        return Err(Errno::EINVAL);
    }
    Ok(())
}

/// Whether `sel` names an entry of the context's own GDT (`gdt_ents` entries; not the null
/// one, not the LDT): Linux starts its secondary vCPUs on its `__KERNEL_CS`/`__KERNEL_DS`.
/// Whether the descriptor is one `iretq` takes is checked when the vCPU first runs, with
/// its GDT in force (`sanitize`).
fn own_gdt_selector(sel: u16, gdt_ents: u64) -> bool {
    sel & 4 == 0 && sel >> 3 != 0 && u64::from(sel >> 3) < gdt_ents
}

/// `debugreg[]` as Xen's `arch_set_info_guest` takes it: DR0–DR3 must be addresses the
/// guest may break on and DR6/DR7 must fit in 32 bits (`EINVAL` otherwise); a DR7 that
/// `set_debugreg` would refuse (GD, an I/O breakpoint) is dropped, leaving DR7 disarmed, as
/// Xen ignores `set_debugreg`'s answer there. DR4 and DR5 are not looked at (Xen writes them
/// as zero). Returns DR0–DR3, DR6, DR7 as kept.
fn check_debugregs(ctx: &VcpuGuestContext) -> Result<([u64; 4], u64, u64), Errno> {
    use crate::debugreg::{self as dr, Target};
    let d = &ctx.debugreg;
    if d[6] >> 32 != 0 || d[7] >> 32 != 0 {
        return Err(Errno::EINVAL);
    }
    let mut regs = ([0u64; 4], dr::DR6_DEFAULT, dr::DR7_DEFAULT);
    for (kept, &addr) in regs.0.iter_mut().zip(&d[..4]) {
        // 0 is what an unused register holds (Xen's `breakpoint_addr_ok(0)` is true).
        if addr != 0 && !mem::range_ok(addr, 8) {
            return Err(Errno::EINVAL);
        }
        *kept = addr;
    }
    if let Ok((Target::Status, v)) = dr::check(6, d[6], |_| false) {
        regs.1 = v;
    }
    match dr::check(7, d[7], |_| false) {
        Ok((Target::Control, v)) => regs.2 = v,
        _ => {
            log::debug!(target: "domain", "vCPU context: DR7 {:#x} dropped (GD or an I/O breakpoint)", d[7])
        }
    }
    Ok(regs)
}

/// The kernel (`ctrlreg[3]`) and user (`ctrlreg[1]`, 0: none) top-level tables of a new
/// context, each taken as a base pointer of the domain's own in place of vCPU `v`'s old one.
fn install_tables(d: &mut Domain, v: usize, ctx: &VcpuGuestContext) -> Result<(), Errno> {
    let kernel_l4 = Mfn(vc::xen_cr3_to_pfn(ctx.ctrlreg[vc::CTRLREG_CR3]));
    let user_l4 = Mfn(vc::xen_cr3_to_pfn(ctx.ctrlreg[vc::CTRLREG_USER_CR3]));
    let id = d.id;
    // The new references first (nothing changes if either is refused), then the old ones
    // let go.
    if user_l4 != Mfn(0) {
        ft::with(|t, mem| t.set_base(mem, id, None, user_l4))?;
    }
    if let Err(e) = ft::with(|t, mem| t.set_base(mem, id, None, kernel_l4)) {
        if user_l4 != Mfn(0) {
            let _ = ft::with(|t, mem| t.drop_base(mem, id, user_l4));
        }
        return Err(e);
    }
    for old in [d.vcpus[v].l4, d.vcpus[v].user_l4] {
        if old != Mfn(0) {
            let _ = ft::with(|t, mem| t.drop_base(mem, id, old));
        }
    }
    d.vcpus[v].user_l4 = user_l4;
    d.vcpus[v].l4 = kernel_l4;
    Ok(())
}
