//! Privileged instructions from a guest kernel, answered as Xen answers a PV kernel
//! (`xen/arch/x86/pv/emul-priv-op.c`) instead of delivering the #GP they raise. The decoding
//! and Xen's answers are `xenia_core::privop` (host-tested); this is the glue: the code bytes
//! copied through the guest's own tables, the hardware's values, the guest's registers.
//!
//! Only a #GP with error code 0 from the guest's kernel mode (`Vcpu::in_guest_kernel_mode`)
//! is looked at; anything not decoded or refused is the guest's #GP, delivered as before, with
//! nothing changed. Port I/O is emulated only once the kernel raised its virtual I/O privilege
//! level (`PHYSDEVOP_set_iopl`, as Linux does first thing), as Xen's `guest_io_okay`: a domain
//! has no ports, so reads give all ones and writes are dropped (Xen's answer for a port the
//! domain was not given).
//!
//! Where this differs from Xen: `ins`/`outs` do not touch the string operand's source for
//! `outs` (nothing is written anywhere) and write `ins`'s all-ones through the guest's tables,
//! giving #GP (not #PF) if that fails; an emulated instruction under single-step does not
//! raise #DB.

use core::sync::atomic::Ordering;

use guest_abi::errno::Errno;

use super::context::Hc;
use super::mem::{AddressSpace, GuestPtr};
use super::ptwr::Frame;
use crate::arch::x86_64::msr as hw;
use crate::mm::PAGE_SIZE;
use crate::privop::{self as p, MsrEnv, Op, Port, Write};
use crate::ptwr::Regs;

/// RFLAGS.DF (Intel SDM Vol. 1 §3.4.3.2).
const RFLAGS_DF: u64 = 1 << 10;

/// The hardware and vCPU values the MSR answers need.
struct Env {
    vcpu: usize,
    fs_base: u64,
    gs_base: u64,
    shadow_gs_base: Option<u64>,
}

impl MsrEnv for Env {
    fn vcpu_id(&self) -> usize {
        self.vcpu
    }
    fn efer(&self) -> u64 {
        x86_64::registers::model_specific::Efer::read_raw()
    }
    fn misc_enable(&self) -> Option<u64> {
        hw::misc_enable()
    }
    fn ucode_rev(&self) -> Option<u64> {
        hw::ucode_rev()
    }
    fn tsc(&self) -> u64 {
        crate::arch::x86_64::time::rdtsc()
    }
    fn fs_base(&self) -> u64 {
        self.fs_base
    }
    fn gs_base(&self) -> u64 {
        self.gs_base
    }
    fn shadow_gs_base(&self) -> Option<u64> {
        self.shadow_gs_base
    }
}

/// Reads up to [`p::MAX_LEN`] instruction bytes at `rip` through the kernel's tables: fewer
/// when the next page cannot be read (the decoder then refuses an instruction cut short).
fn fetch(space: &AddressSpace, rip: u64, out: &mut [u8; p::MAX_LEN]) -> Result<usize, Errno> {
    let first = (PAGE_SIZE - rip % PAGE_SIZE).min(p::MAX_LEN as u64) as usize;
    super::forced::read_code(space, rip, false, &mut out[..first])?;
    if first < p::MAX_LEN
        && let Some(next) = rip.checked_add(first as u64)
        && super::forced::read_code(space, next, false, &mut out[first..]).is_ok()
    {
        return Ok(p::MAX_LEN);
    }
    Ok(first)
}

/// Emulates the privileged instruction that raised this #GP, if it is one Xen answers (see
/// the module docs); `true` if done (the guest resumes after it).
pub fn emulate(cx: &mut Hc) -> bool {
    let frame = *cx.regs();
    if frame.error_code != 0 || !cx.vcpu_ref().in_guest_kernel_mode(&frame) {
        return false;
    }
    let mut code = [0u8; p::MAX_LEN];
    let Ok(have) = fetch(&cx.space(), frame.rip, &mut code) else {
        return false;
    };
    let Ok(insn) = p::decode(&code[..have]) else {
        return false;
    };
    let done = match insn.op {
        Op::Rdmsr => rdmsr(cx),
        Op::Wrmsr => wrmsr(cx),
        Op::ReadCr { cr, reg } => {
            let value = read_cr(cx, cr);
            Frame(cx.regs()).set(reg, value);
            true
        }
        Op::WriteCr { cr, reg } => {
            let value = Frame(cx.regs()).get(reg);
            write_cr(cx, cr, value)
        }
        Op::Xsetbv => {
            let r = cx.regs();
            let value = (r.rdx << 32) | (r.rax & 0xFFFF_FFFF);
            hw::xcr0().is_some_and(|now| p::xsetbv_ok(r.rcx as u32, value, now))
        }
        // Ignored, as Xen does for a domain that may not flush caches ("Linux uses this in
        // some start-of-day code").
        Op::Wbinvd => true,
        // Xen's emulator runs `cli`/`sti` for a kernel whose virtual IOPL allows them
        // (`iopl_ok`), on the virtual interrupt flag: `evtchn_upcall_mask`. Linux's
        // `this_cpu_cmpxchg16b_emu` (`pushf; cli; ...; popf`) runs before its alternatives
        // replace it with `cmpxchg16b`. A pending event is delivered on the way out after
        // `sti`, as after any trap. Xen PV vCPUs only: a ring-1 kernel never needed it.
        Op::Cli | Op::Sti => {
            if !cx.vcpu_ref().xen_pv || !io_ok(cx) {
                return false;
            }
            let mask = u8::from(insn.op == Op::Cli);
            cx.info().evtchn_upcall_mask.store(mask, Ordering::Release);
            true
        }
        Op::In { port, size } => {
            if !io_ok(cx) {
                return false;
            }
            let _ = port_number(cx, port);
            let r = cx.regs();
            r.rax = p::port_read_result(r.rax, size);
            true
        }
        Op::Out { port, .. } => {
            let _ = port_number(cx, port);
            io_ok(cx)
        }
        Op::Ins { size, rep } => io_ok(cx) && string_io(cx, size, rep, true, insn.len),
        Op::Outs { size, rep } => io_ok(cx) && string_io(cx, size, rep, false, insn.len),
    };
    if !done {
        // Nothing may have changed: the #GP is delivered on the untouched frame.
        *cx.regs() = frame;
        log::debug!(target: "trap",
            "d{}v{}: privileged instruction {:?} at {:#x} refused: #GP",
            cx.id(), cx.vcpu_id(), insn.op, frame.rip);
        return false;
    }
    // A string instruction that has iterations left resumes at itself (`string_io` left
    // `rip` alone); everything else steps over.
    if cx.regs().rip == frame.rip && !matches!(insn.op, Op::Ins { .. } | Op::Outs { .. }) {
        cx.regs().rip = frame.rip.wrapping_add(insn.len as u64);
    }
    true
}

/// The port an `in`/`out` names (for the log; a domain has none, so it does not decide).
fn port_number(cx: &mut Hc, port: Port) -> u16 {
    match port {
        Port::Imm(n) => u16::from(n),
        Port::Dx => cx.regs().rdx as u16,
    }
}

/// Whether the kernel raised its virtual IOPL to its own level (Xen's `iopl_ok`: a PV
/// kernel's virtual CPL is 1).
fn io_ok(cx: &mut Hc) -> bool {
    cx.vcpu_ref().viopl >= 1
}

fn env(cx: &mut Hc) -> Env {
    let vcpu = cx.vcpu_id();
    let v = cx.vcpu_ref();
    Env {
        vcpu,
        fs_base: if v.xen_pv {
            x86_64::registers::model_specific::FsBase::read().as_u64()
        } else {
            v.fs_base
        },
        // A Xen PV vCPU's live GS base is the MSR's, the other mode's `KERNEL_GS_BASE`
        // (mode changes swap the two, `xenpv::toggle_mode`).
        gs_base: if v.xen_pv {
            x86_64::registers::model_specific::GsBase::read().as_u64()
        } else {
            v.gs_base
        },
        shadow_gs_base: v.xen_pv.then(crate::arch::x86_64::other_gs_base),
    }
}

fn rdmsr(cx: &mut Hc) -> bool {
    let e = env(cx);
    let r = cx.regs();
    let Some(value) = p::rdmsr(r.rcx as u32, &e) else {
        return false;
    };
    r.rax = value & 0xFFFF_FFFF;
    r.rdx = value >> 32;
    true
}

fn wrmsr(cx: &mut Hc) -> bool {
    use x86_64::registers::model_specific::{FsBase, GsBase};
    let e = env(cx);
    let r = cx.regs();
    let value = (r.rdx << 32) | (r.rax & 0xFFFF_FFFF);
    match p::wrmsr(r.rcx as u32, value, &e) {
        None => false,
        Some(Write::Ignore) => true,
        // As `set_segment_base`: kept for the vCPU and loaded now (`p::wrmsr` checked that
        // the base is canonical).
        Some(Write::FsBase(base)) => {
            cx.vcpu().fs_base = base;
            FsBase::write(x86_64::VirtAddr::new_truncate(base));
            true
        }
        Some(Write::GsBase(base)) => {
            cx.vcpu().gs_base = base;
            GsBase::write(x86_64::VirtAddr::new_truncate(base));
            true
        }
    }
}

/// CR0 as the kernel reads it: the hardware's, with its own virtual TS.
fn virtual_cr0(cx: &mut Hc) -> u64 {
    let hw = x86_64::registers::control::Cr0::read_raw() & !p::CR0_TS;
    hw | if cx.vcpu_ref().fpu_ts { p::CR0_TS } else { 0 }
}

/// Xen's `read_cr`: CR0 with the virtual TS, CR2 as last delivered to the guest
/// (`vcpu_info.arch.cr2`), CR3 as the kernel top-level table's MFN << 12, CR4's visible bits.
fn read_cr(cx: &mut Hc, cr: u8) -> u64 {
    use core::sync::atomic::Ordering;
    match cr {
        0 => virtual_cr0(cx),
        2 => cx.info().arch.cr2.load(Ordering::Relaxed),
        3 => cx.vcpu_ref().l4.0 * PAGE_SIZE,
        _ => p::cr4(x86_64::registers::control::Cr4::read_raw()),
    }
}

/// `mov cr0` (TS only, as `fpu_taskswitch`) and `mov cr4` (its present value only).
fn write_cr(cx: &mut Hc, cr: u8, value: u64) -> bool {
    match cr {
        0 => {
            let Some(ts) = p::cr0_write(value, virtual_cr0(cx)) else {
                return false;
            };
            cx.vcpu().fpu_ts = ts;
            crate::arch::x86_64::set_task_switched(ts);
            true
        }
        _ => p::cr4_write_ok(value, x86_64::registers::control::Cr4::read_raw()),
    }
}

/// `ins`/`outs`, with `rep` up to [`p::REP_CHUNK`] iterations per trap: `ins` stores all
/// ones at `rdi` (through the kernel's tables), `outs` drops the data; `rdi`/`rsi` move by
/// the size in the direction of RFLAGS.DF and `rcx` counts down. With iterations left the
/// guest resumes at the same instruction; else after it (`len` bytes on).
fn string_io(cx: &mut Hc, size: p::Size, rep: bool, ins: bool, len: usize) -> bool {
    let space = cx.space();
    let frame = *cx.regs();
    let count = if rep { frame.rcx } else { 1 };
    let n = count.min(p::REP_CHUNK);
    let step = if frame.rflags & RFLAGS_DF != 0 {
        (u64::from(size)).wrapping_neg()
    } else {
        u64::from(size)
    };
    let ones = [0xFFu8; 4];
    let mut at = if ins { frame.rdi } else { frame.rsi };
    for _ in 0..n {
        if ins
            && space
                .write_bytes(GuestPtr::new(at), &ones[..usize::from(size)])
                .is_err()
        {
            return false;
        }
        at = at.wrapping_add(step);
    }
    let r = cx.regs();
    if ins {
        r.rdi = at;
    } else {
        r.rsi = at;
    }
    if rep {
        r.rcx = count - n;
    }
    if !rep || r.rcx == 0 {
        r.rip = frame.rip.wrapping_add(len as u64);
    }
    true
}
