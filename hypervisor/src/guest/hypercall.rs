//! Hypercalls (`int 0x82`): number in `rax`, arguments in `rdi, rsi, rdx, r10, r8`,
//! result in `rax`, a negative errno on failure (guest-abi's `hypercall` module).
//!
//! Every argument is checked before use; guest memory is reached only through
//! [`AddressSpace`](super::mem::AddressSpace) copies. A handler returns
//! `Result<u64, Errno>`, mapped onto `rax` in one place.

use alloc::collections::VecDeque;
use core::sync::atomic::Ordering;

use guest_abi::callback as cb;
use guest_abi::errno::Errno;
use guest_abi::hypercall as nr;
use guest_abi::selectors::{KERNEL_CS, KERNEL_DS, KERNEL_SS, USER_CS, USER_DS, USER_SS};
use guest_abi::trap::{IretContext, RFLAGS_IF, TrapInfo};

use super::mem::{self, AddressSpace, Pod};
use super::{Outcome, aspace};
use crate::arch::x86_64::trap::TrapFrame;
use crate::arch::x86_64::{gdt, trap};
use crate::domain::{Domain, Periodic, Shutdown};

type HcResult = Result<u64, Errno>;

/// Longest console write handled in one call; the call returns how much it wrote.
const CONSOLE_WRITE_MAX: u64 = 64 * 1024;
/// Shortest periodic timer (Xen refuses shorter periods too).
const MIN_PERIOD_NS: u64 = 1_000_000;

/// Handles the hypercall in `frame` and stores its result in `frame.rax`.
pub fn dispatch(dom: &mut Domain, world: &mut super::World, frame: &mut TrapFrame) -> Outcome {
    let (a1, a2, a3) = (frame.rdi, frame.rsi, frame.rdx);
    let result = match frame.rax {
        nr::HYPERVISOR_SET_TRAP_TABLE => set_trap_table(dom, a1),
        nr::HYPERVISOR_STACK_SWITCH => stack_switch(dom, a1, a2),
        nr::HYPERVISOR_SET_CALLBACKS => set_callbacks(dom, a1, a2, a3),
        nr::HYPERVISOR_FPU_TASKSWITCH => fpu_taskswitch(dom, a1),
        nr::HYPERVISOR_SET_TIMER_OP => set_timer_op(dom, a1),
        nr::HYPERVISOR_XEN_VERSION => xen_version(dom, a1, a2),
        nr::HYPERVISOR_CONSOLE_IO => console_io(dom, &mut world.console_input, a1, a2, a3),
        nr::HYPERVISOR_IRET => return iret(dom, frame),
        nr::HYPERVISOR_VCPU_OP => vcpu_op(dom, a1, a2, a3),
        nr::HYPERVISOR_SET_SEGMENT_BASE => set_segment_base(dom, a1, a2),
        nr::HYPERVISOR_SCHED_OP => match sched_op(dom, world, a1, a2) {
            Ok(outcome) => {
                frame.rax = 0;
                return outcome;
            }
            Err(e) => Err(e),
        },
        nr::HYPERVISOR_CALLBACK_OP => callback_op(dom, a1, a2),
        nr::HYPERVISOR_EVENT_CHANNEL_OP => {
            super::event_op::dispatch(dom, &mut world.domains, a1, a2)
        }
        nr::HYPERVISOR_MMU_UPDATE | nr::HYPERVISOR_MMUEXT_OP => {
            let batch = if frame.rax == nr::HYPERVISOR_MMU_UPDATE {
                super::mmu::mmu_update(dom, frame)
            } else {
                super::mmu::mmuext_op(dom, &world.domains, frame)
            };
            match batch {
                super::mmu::Batch::Done(r) => r,
                super::mmu::Batch::Continued => return Outcome::Continue,
            }
        }
        nr::HYPERVISOR_UPDATE_VA_MAPPING => super::mmu::update_va_mapping(dom, a1, a2, a3),
        nr::HYPERVISOR_MEMORY_OP => super::mmu::memory_op(dom, &mut world.domains, a1, a2),
        nr::HYPERVISOR_DOMCTL => super::domctl::domctl(dom, world, a1),
        nr::HYPERVISOR_GRANT_TABLE_OP => {
            super::grant_op::dispatch(dom, &mut world.domains, a1, a2, a3)
        }
        nr::HYPERVISOR_SYSCTL => super::domctl::sysctl(dom, world, a1),
        _ => Err(Errno::ENOSYS),
    };
    frame.rax = Errno::encode_result(result) as u64;
    Outcome::Continue
}

/// A handler address must be guest code: canonical and outside the hypervisor's slots.
fn valid_entry_point(address: u64) -> bool {
    address != 0 && mem::range_ok(address, 1)
}

fn set_trap_table(dom: &mut Domain, table: u64) -> HcResult {
    if table == 0 {
        dom.vcpu_mut().traps = [TrapInfo::END; 256];
        refresh_fast_trap(dom);
        return Ok(0);
    }
    let space = aspace(dom);
    // Read and check the whole table before changing anything.
    let mut updates = [TrapInfo::END; 256];
    let mut count = 0;
    loop {
        let entry: TrapInfo = space.read_pod(table + 16 * count as u64)?;
        if entry.is_end() {
            break;
        }
        if count == updates.len() {
            return Err(Errno::E2BIG);
        }
        if entry.cs != KERNEL_CS
            || !valid_entry_point(entry.address)
            || entry.vector == guest_abi::hypercall::HYPERCALL_VECTOR
        {
            return Err(Errno::EINVAL);
        }
        updates[count] = entry;
        count += 1;
    }
    let traps = &mut dom.vcpu_mut().traps;
    for entry in &updates[..count] {
        // NMI, #DF and #MC belong to the hypervisor: their entries are ignored.
        if !matches!(entry.vector, 2 | 8 | 18) {
            traps[usize::from(entry.vector)] = *entry;
        }
    }
    refresh_fast_trap(dom);
    Ok(0)
}

/// Loads the guest's `int 0x80` handler into the real IDT when it qualifies.
pub fn refresh_fast_trap(dom: &Domain) {
    let entry = dom.vcpu().traps[usize::from(guest_abi::hypercall::FAST_TRAP_VECTOR)];
    trap::set_fast_trap(entry.is_fast_trap().then_some(entry.address));
}

/// Whether `sp` can be a ring-1 stack top (`stack_switch`, `setvcpucontext`'s `kernel_sp`):
/// not 0 (which means "none"), the frame below it lies in guest addresses, and `sp` itself
/// is canonical, since the CPU
/// loads TSS.RSP1 as it is (a top one past the lower half would be sign-extended into the
/// hypervisor's range).
pub fn kernel_stack_ok(sp: u64) -> bool {
    // Room below it for the largest frame the CPU or the hypervisor pushes there (error
    // code and five words, 16-aligned: 64 bytes), all guest addresses.
    const FRAME_BYTES: u64 = 64;
    sp != 0 && mem::is_canonical(sp) && mem::range_ok(sp.wrapping_sub(FRAME_BYTES), FRAME_BYTES)
}

fn stack_switch(dom: &mut Domain, ss: u64, sp: u64) -> HcResult {
    if ss != u64::from(KERNEL_SS) || !kernel_stack_ok(sp) {
        return Err(Errno::EINVAL);
    }
    dom.vcpu_mut().kernel_sp = sp;
    gdt::set_ring1_stack(sp);
    Ok(0)
}

fn set_callbacks(dom: &mut Domain, event: u64, failsafe: u64, syscall: u64) -> HcResult {
    if [event, failsafe, syscall]
        .iter()
        .any(|&a| a != 0 && !valid_entry_point(a))
    {
        return Err(Errno::EINVAL);
    }
    let c = &mut dom.vcpu_mut().callbacks;
    c.event = event;
    c.failsafe = failsafe;
    c.syscall = syscall;
    c.syscall_masks_events = false;
    Ok(0)
}

fn callback_op(dom: &mut Domain, op: u64, arg: u64) -> HcResult {
    match op as u32 {
        cb::CALLBACKOP_REGISTER => {
            let reg: cb::CallbackRegister = aspace(dom).read_pod(arg)?;
            if !valid_entry_point(reg.address) {
                return Err(Errno::EINVAL);
            }
            let masks = reg.flags & cb::CALLBACKF_MASK_EVENTS != 0;
            let c = &mut dom.vcpu_mut().callbacks;
            match reg.callback_type {
                cb::CALLBACKTYPE_EVENT => c.event = reg.address,
                cb::CALLBACKTYPE_FAILSAFE => c.failsafe = reg.address,
                cb::CALLBACKTYPE_SYSCALL => {
                    c.syscall = reg.address;
                    c.syscall_masks_events = masks;
                }
                cb::CALLBACKTYPE_NMI => c.nmi = reg.address,
                _ => return Err(Errno::EINVAL),
            }
            Ok(0)
        }
        cb::CALLBACKOP_UNREGISTER => {
            let unreg: cb::CallbackUnregister = aspace(dom).read_pod(arg)?;
            match unreg.callback_type {
                cb::CALLBACKTYPE_NMI => {
                    dom.vcpu_mut().callbacks.nmi = 0;
                    Ok(0)
                }
                _ => Err(Errno::EINVAL),
            }
        }
        _ => Err(Errno::ENOSYS),
    }
}

/// `fpu_taskswitch(set)`: the guest's virtual CR0.TS, in force while its vCPU runs (saved
/// and restored with it; the hypervisor clears it again before it touches x87/SSE state).
fn fpu_taskswitch(dom: &mut Domain, set: u64) -> HcResult {
    let set = set != 0;
    dom.vcpu_mut().fpu_ts = set;
    crate::arch::x86_64::set_task_switched(set);
    Ok(0)
}

fn set_timer_op(dom: &mut Domain, deadline: u64) -> HcResult {
    // 0 cancels; a deadline in the past fires at once (at the next timer check).
    dom.vcpu_mut().singleshot = (deadline != 0).then_some(deadline);
    Ok(0)
}

fn xen_version(dom: &Domain, cmd: u64, arg: u64) -> HcResult {
    use guest_abi::version as v;
    let space = aspace(dom);
    // The longest string buffer of the ABI (capabilities, command line): 1024 bytes.
    let write_str = |len: usize, text: &str| -> HcResult {
        let mut buf = [0u8; 1024];
        let buf = &mut buf[..len];
        let n = text.len().min(len - 1);
        buf[..n].copy_from_slice(&text.as_bytes()[..n]);
        space.write(arg, buf)?;
        Ok(0)
    };
    match cmd as u32 {
        v::XENVER_VERSION => Ok(u64::from(v::XENIA_VERSION)),
        v::XENVER_EXTRAVERSION => write_str(16, ".1-xenia"),
        v::XENVER_COMPILE_INFO => {
            // compiler[64], compile_by[16], compile_domain[32], compile_date[32]
            let mut buf = [0u8; 144];
            buf[..5].copy_from_slice(b"rustc");
            buf[64..69].copy_from_slice(b"xenia");
            space.write(arg, &buf)?;
            Ok(0)
        }
        v::XENVER_CAPABILITIES => write_str(1024, "xen-3.0-x86_64"),
        v::XENVER_CHANGESET => write_str(64, crate::VERSION),
        v::XENVER_PLATFORM_PARAMETERS => {
            space.write_pod(arg, &crate::arch::x86_64::layout::slot_base(256))?;
            Ok(0)
        }
        v::XENVER_GET_FEATURES => {
            let idx: u32 = {
                let mut b = [0u8; 4];
                space.read(arg, &mut b)?;
                u32::from_le_bytes(b)
            };
            // One feature word (Xen's XENFEAT_NR_SUBMAPS); Xenia sets no optional bits.
            if idx >= 1 {
                return Err(Errno::EINVAL);
            }
            space.write(arg + 4, &0u32.to_le_bytes())?;
            Ok(0)
        }
        v::XENVER_PAGESIZE => Ok(4096),
        v::XENVER_GUEST_HANDLE => Ok(0),
        v::XENVER_COMMANDLINE => write_str(1024, ""),
        _ => Err(Errno::ENOSYS),
    }
}

fn console_io(
    dom: &mut Domain,
    input: &mut VecDeque<u8>,
    cmd: u64,
    count: u64,
    buf: u64,
) -> HcResult {
    use guest_abi::console as c;
    let space: AddressSpace = aspace(dom);
    match cmd as u32 {
        c::CONSOLEIO_WRITE => {
            let id = dom.id;
            let line = &mut dom.console_line;
            write_out(&space, buf, count, |b| {
                crate::console::guest_output(id, line, b)
            })
        }
        c::CONSOLEIO_XENIA_WRITE_RAW => {
            if !dom.privileged {
                return Err(Errno::EPERM);
            }
            write_out(&space, buf, count, crate::console::dom0_raw_output)
        }
        c::CONSOLEIO_READ => {
            if !dom.privileged {
                return Err(Errno::EPERM);
            }
            if !mem::range_ok(buf, count) {
                return Err(Errno::EFAULT);
            }
            let mut bytes = [0u8; 4096];
            let n = (count as usize).min(input.len()).min(bytes.len());
            for (dst, b) in bytes.iter_mut().zip(input.iter()) {
                *dst = *b;
            }
            space.write(buf, &bytes[..n])?;
            input.drain(..n);
            Ok(n as u64)
        }
        _ => Err(Errno::ENOSYS),
    }
}

/// A console write: `count` bytes (at most [`CONSOLE_WRITE_MAX`]) from guest address `buf`,
/// handed to `sink` in chunks as they are copied.
fn write_out(space: &AddressSpace, buf: u64, count: u64, mut sink: impl FnMut(&[u8])) -> HcResult {
    if !mem::range_ok(buf, count) {
        return Err(Errno::EFAULT);
    }
    let count = count.min(CONSOLE_WRITE_MAX);
    let mut chunk = [0u8; 256];
    let mut done = 0;
    while done < count {
        let n = (count - done).min(chunk.len() as u64) as usize;
        space.read(buf + done, &mut chunk[..n])?;
        sink(&chunk[..n]);
        done += n as u64;
    }
    Ok(done)
}

/// Restores a frame the guest built on its stack (`HYPERVISOR_IRET`), and the event
/// mask from its IF, in one step. A frame that cannot be used crashes the domain, as
/// the guest has nothing left to return to.
fn iret(dom: &mut Domain, frame: &mut TrapFrame) -> Outcome {
    let ctx: IretContext = match aspace(dom).read_pod(frame.rsp) {
        Ok(c) => c,
        Err(_) => {
            super::crash(
                dom,
                format_args!(
                    "iret hypercall with an unreadable frame at {:#x}",
                    frame.rsp
                ),
            );
            return Outcome::Stopped;
        }
    };
    let (cs, ss) = if ctx.flags & guest_abi::trap::VGCF_IN_SYSCALL != 0 {
        (u64::from(USER_CS), u64::from(USER_SS))
    } else {
        (ctx.cs, ctx.ss)
    };
    let pair_ok = cs <= 0xFFFF && ss <= 0xFFFF && super::selectors_ok(cs as u16, ss as u16);
    if !pair_ok || !mem::is_canonical(ctx.rip) || !mem::is_canonical(ctx.rsp) {
        super::crash(
            dom,
            format_args!("iret hypercall to cs {cs:#x} ss {ss:#x} rip {:#x}", ctx.rip),
        );
        return Outcome::Stopped;
    }
    frame.rax = ctx.rax;
    frame.r11 = ctx.r11;
    frame.rcx = ctx.rcx;
    frame.rip = ctx.rip;
    frame.cs = cs;
    frame.rflags = ctx.rflags;
    frame.rsp = ctx.rsp;
    frame.ss = ss;
    let mask = u8::from(ctx.rflags & RFLAGS_IF == 0);
    dom.info().evtchn_upcall_mask.store(mask, Ordering::Release);
    Outcome::Continue
}

fn vcpu_op(dom: &mut Domain, cmd: u64, vcpu: u64, arg: u64) -> HcResult {
    use guest_abi::vcpu as v;
    if vcpu >= dom.vcpus.len() as u64 {
        return Err(Errno::ENOENT);
    }
    let space = aspace(dom);
    let now = crate::time::now_ns();
    let target = &mut dom.vcpus[vcpu as usize];
    match cmd as u32 {
        v::VCPUOP_IS_UP => Ok(1),
        v::VCPUOP_SET_PERIODIC_TIMER => {
            let p: v::VcpuSetPeriodicTimer = space.read_pod(arg)?;
            if p.period_ns < MIN_PERIOD_NS {
                return Err(Errno::EINVAL);
            }
            target.periodic = Some(Periodic {
                period: p.period_ns,
                next: now.saturating_add(p.period_ns),
            });
            Ok(0)
        }
        v::VCPUOP_STOP_PERIODIC_TIMER => {
            target.periodic = None;
            Ok(0)
        }
        v::VCPUOP_SET_SINGLESHOT_TIMER => {
            let s: v::VcpuSetSingleshotTimer = space.read_pod(arg)?;
            if s.flags & v::VCPU_SSHOTTMR_FUTURE != 0 && s.timeout_abs_ns < now {
                return Err(Errno::ETIME);
            }
            target.singleshot = Some(s.timeout_abs_ns);
            Ok(0)
        }
        v::VCPUOP_STOP_SINGLESHOT_TIMER => {
            target.singleshot = None;
            Ok(0)
        }
        _ => Err(Errno::ENOSYS),
    }
}

fn set_segment_base(dom: &mut Domain, which: u64, base: u64) -> HcResult {
    use guest_abi::selectors as s;
    use x86_64::registers::model_specific::{FsBase, GsBase};
    let vcpu = dom.vcpu_mut();
    match which as u32 {
        s::SEGBASE_FS | s::SEGBASE_GS_USER => {
            if !mem::is_canonical(base) {
                return Err(Errno::EINVAL);
            }
            let addr = x86_64::VirtAddr::new(base);
            if which as u32 == s::SEGBASE_FS {
                vcpu.fs_base = base;
                FsBase::write(addr);
            } else {
                vcpu.gs_base = base;
                GsBase::write(addr);
            }
            Ok(0)
        }
        s::SEGBASE_GS_KERNEL => Err(Errno::EOPNOTSUPP),
        s::SEGBASE_GS_USER_SEL => {
            let sel = base as u16;
            if base > 0xFFFF || ![0, KERNEL_DS, USER_DS].contains(&sel) {
                return Err(Errno::EINVAL);
            }
            // SAFETY: a null or guest data selector; loading it changes only GS, which
            // the hypervisor does not use.
            unsafe {
                core::arch::asm!("mov gs, {0:x}", in(reg) sel, options(nostack, preserves_flags))
            };
            vcpu.gs_base = 0;
            Ok(0)
        }
        _ => Err(Errno::EINVAL),
    }
}

/// `sched_op`: on success the call returns 0, and the trap handling goes on as the
/// returned outcome says.
fn sched_op(
    dom: &mut Domain,
    world: &mut super::World,
    cmd: u64,
    arg: u64,
) -> Result<Outcome, Errno> {
    use guest_abi::sched as s;
    match cmd as u32 {
        s::SCHEDOP_YIELD => Ok(Outcome::Reschedule),
        s::SCHEDOP_BLOCK => Ok(super::block(dom)),
        s::SCHEDOP_SHUTDOWN => {
            let req: s::SchedShutdown = aspace(dom).read_pod(arg)?;
            let reason = Shutdown::from_reason(req.reason).ok_or(Errno::EINVAL)?;
            if reason == Shutdown::Crash {
                log::error!(target: "domain", "domain {} crashed: it asked to (SHUTDOWN_crash)", dom.id);
            }
            dom.shutdown = Some(reason);
            Ok(Outcome::Stopped)
        }
        s::SCHEDOP_REMOTE_SHUTDOWN => {
            if !dom.privileged {
                return Err(Errno::EPERM);
            }
            let req: s::SchedRemoteShutdown = aspace(dom).read_pod(arg)?;
            let reason = Shutdown::from_reason(req.reason).ok_or(Errno::EINVAL)?;
            // dom0 shuts itself down with SCHEDOP_shutdown; the caller (current, so out
            // of the table) is never the target.
            if req.domain_id == 0 || req.domain_id == dom.id {
                return Err(Errno::EINVAL);
            }
            super::shut_down_other(dom, world, req.domain_id, reason)?;
            Ok(Outcome::Continue)
        }
        _ => Err(Errno::ENOSYS),
    }
}

// SAFETY: this and the impls below are repr(C) structures of integers, as laid out by
// guest-abi (sizes checked by its tests); only ever filled from guest bytes.
unsafe impl Pod for cb::CallbackRegister {}
// SAFETY: as above.
unsafe impl Pod for cb::CallbackUnregister {}
// SAFETY: as above.
unsafe impl Pod for IretContext {}
// SAFETY: as above.
unsafe impl Pod for guest_abi::vcpu::VcpuSetPeriodicTimer {}
// SAFETY: as above (u64, u32, trailing padding).
unsafe impl Pod for guest_abi::vcpu::VcpuSetSingleshotTimer {}
// SAFETY: as above.
unsafe impl Pod for guest_abi::sched::SchedShutdown {}
// SAFETY: as above (u16, padding, u32).
unsafe impl Pod for guest_abi::sched::SchedRemoteShutdown {}
