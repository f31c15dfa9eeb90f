//! Hypercalls (`int 0x82`): number in `rax`, arguments in `rdi, rsi, rdx, r10, r8`,
//! result in `rax`, a negative errno on failure (guest-abi's `hypercall` module).
//!
//! [`dispatch`] picks the handler; every handler has the shape `fn(&mut Hc) -> HcResult`
//! (`guest::context`), reads its arguments through the context's typed accessors, and reaches
//! guest memory only through checked copies of [`GuestPtr`]s. `context::finish` maps the
//! result onto the guest's registers, in one place.

use core::sync::atomic::{AtomicU64, Ordering};

use guest_abi::callback as cb;
use guest_abi::errno::Errno;
use guest_abi::hypercall as nr;
use guest_abi::selectors::{KERNEL_CS, KERNEL_SS, USER_CS, USER_SS};
use guest_abi::trap::{IretContext, RFLAGS_IF, TrapInfo};

use super::context::{Hc, HcResult, Ret};
use super::mem::{self, GuestPtr, GuestSlice};
use crate::arch::x86_64::{gdt, trap};
use crate::domain::{MAX_POLL_PORTS, Poll, Shutdown, Vcpu};

/// Longest console write handled in one call; the call returns how much it wrote.
const CONSOLE_WRITE_MAX: u64 = 64 * 1024;

/// A hypercall handler.
type Handler = fn(&mut Hc) -> HcResult;

/// The handler of hypercall `number`, if Xenia has it.
fn handler(number: u64) -> Option<Handler> {
    Some(match number {
        nr::HYPERVISOR_SET_TRAP_TABLE => set_trap_table,
        nr::HYPERVISOR_MMU_UPDATE => super::mmu::mmu_update,
        nr::HYPERVISOR_STACK_SWITCH => stack_switch,
        nr::HYPERVISOR_SET_CALLBACKS => set_callbacks,
        nr::HYPERVISOR_FPU_TASKSWITCH => fpu_taskswitch,
        nr::HYPERVISOR_SET_TIMER_OP => set_timer_op,
        nr::HYPERVISOR_MEMORY_OP => super::mmu::memory_op,
        nr::HYPERVISOR_MULTICALL => super::multicall::multicall,
        nr::HYPERVISOR_UPDATE_VA_MAPPING => super::mmu::update_va_mapping,
        nr::HYPERVISOR_XEN_VERSION => xen_version,
        nr::HYPERVISOR_CONSOLE_IO => console_io,
        nr::HYPERVISOR_GRANT_TABLE_OP => super::grant_op::dispatch,
        nr::HYPERVISOR_IRET => iret,
        nr::HYPERVISOR_VCPU_OP => super::vcpu_op::vcpu_op,
        nr::HYPERVISOR_SET_SEGMENT_BASE => set_segment_base,
        nr::HYPERVISOR_MMUEXT_OP => super::mmu::mmuext_op,
        nr::HYPERVISOR_SCHED_OP => sched_op,
        nr::HYPERVISOR_CALLBACK_OP => callback_op,
        nr::HYPERVISOR_EVENT_CHANNEL_OP => super::event_op::dispatch,
        nr::HYPERVISOR_PHYSDEV_OP => super::physdev::physdev_op,
        nr::HYPERVISOR_DOMCTL => super::domctl::domctl,
        nr::HYPERVISOR_SYSCTL => super::domctl::sysctl,
        nr::HYPERVISOR_VM_ASSIST => super::ptwr::vm_assist,
        nr::HYPERVISOR_SET_DEBUGREG => set_debugreg,
        nr::HYPERVISOR_GET_DEBUGREG => get_debugreg,
        nr::HYPERVISOR_SET_GDT => super::desc::set_gdt,
        nr::HYPERVISOR_UPDATE_DESCRIPTOR => super::desc::update_descriptor,
        nr::HYPERVISOR_XENPMU_OP => xenpmu_op,
        _ => return None,
    })
}

/// Runs the hypercall whose number is in `rax`. A hypercall or sub-op Xenia does not have
/// (`ENOSYS`) is logged at `debug` ([`log_enosys`]).
pub fn dispatch(cx: &mut Hc) -> HcResult {
    let number = cx.call_number();
    let r = match handler(number) {
        Some(h) => h(cx),
        None => Err(Errno::ENOSYS),
    };
    if r == Err(Errno::ENOSYS) {
        log_enosys(cx, number);
    }
    r
}

/// Lines [`log_enosys`] writes per second at most, across the machine.
const ENOSYS_LINES_PER_SECOND: u64 = 20;

/// The second of system time the `ENOSYS` lines are counted in, and how many so far (no
/// lock: two pCPUs starting a new second at once may let a few more lines through).
static ENOSYS_SECOND: AtomicU64 = AtomicU64::new(0);
static ENOSYS_LINES: AtomicU64 = AtomicU64::new(0);

/// Logs, at `debug`, a hypercall that got `ENOSYS`: the domain, the hypercall by Xen's name
/// and the sub-op (the first argument, for the hypercalls that have sub-ops), so that a
/// guest's use of what Xenia lacks shows (the Linux scenarios check none happened). At most
/// [`ENOSYS_LINES_PER_SECOND`] lines a second: a guest cannot flood the log.
fn log_enosys(cx: &Hc, number: u64) {
    if !log::log_enabled!(target: "hypercall", log::Level::Debug) {
        return;
    }
    let second = crate::time::now_ns() / 1_000_000_000;
    let seen = ENOSYS_SECOND.load(Ordering::Relaxed);
    if seen != second
        && ENOSYS_SECOND
            .compare_exchange(seen, second, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
    {
        ENOSYS_LINES.store(0, Ordering::Relaxed);
    }
    if ENOSYS_LINES.fetch_add(1, Ordering::Relaxed) >= ENOSYS_LINES_PER_SECOND {
        return;
    }
    let name = crate::hcnames::name(number);
    match crate::hcnames::sub_op_name(number, cx.arg(0)) {
        Some(Some(sub)) => log::debug!(target: "hypercall",
            "d{}v{}: ENOSYS: {name} ({number}) sub-op {sub} ({})", cx.id(), cx.vcpu_id(), cx.arg(0)),
        Some(None) => log::debug!(target: "hypercall",
            "d{}v{}: ENOSYS: {name} ({number}) sub-op {}", cx.id(), cx.vcpu_id(), cx.arg(0)),
        None => log::debug!(target: "hypercall",
            "d{}v{}: ENOSYS: {name} ({number})", cx.id(), cx.vcpu_id()),
    }
}

/// `xenpmu_op(cmd, arg)`: `EOPNOTSUPP` for every command, Xen's answer when its virtual PMU
/// is off (its default, `vpmu=0`). Linux's `xen_pmu_init` then says "PMU not supported" and
/// goes on without one.
fn xenpmu_op(_cx: &mut Hc) -> HcResult {
    Err(Errno::EOPNOTSUPP)
}

/// A handler address must be guest code: canonical and outside the hypervisor's slots.
fn valid_entry_point(address: u64) -> bool {
    address != 0 && mem::range_ok(address, 1)
}

/// `set_trap_table(table)`: the virtual IDT, a list of [`TrapInfo`] ended by a zero entry.
fn set_trap_table(cx: &mut Hc) -> HcResult {
    let table: GuestPtr<TrapInfo> = cx.ptr(0);
    if table.is_null() {
        let v = cx.vcpu();
        v.traps.clear();
        refresh_fast_trap(v);
        return Ok(Ret::Value(0));
    }
    let space = cx.space();
    // A Xen PV kernel's entries name its own GDT's kernel CS (Linux: `__KERNEL_CS`); Xen
    // enters every handler of a 64-bit guest with `FLAT_KERNEL_CS` whatever it says.
    let xen_pv = cx.vcpu_ref().xen_pv;
    // Read and check the whole table before changing anything.
    let mut updates = [TrapInfo::END; 256];
    let mut count = 0;
    loop {
        let entry = space.read(table.offset(count as u64))?;
        if entry.is_end() {
            break;
        }
        if count == updates.len() {
            return Err(Errno::E2BIG);
        }
        if (entry.cs != KERNEL_CS && !xen_pv)
            || !valid_entry_point(entry.address)
            || entry.vector == guest_abi::hypercall::HYPERCALL_VECTOR
        {
            return Err(Errno::EINVAL);
        }
        updates[count] = entry;
        count += 1;
    }
    // NMI, #DF and #MC belong to the hypervisor: their entries are ignored.
    let mut kept = 0;
    for i in 0..count {
        if !matches!(updates[i].vector, 2 | 8 | 18) {
            updates[kept] = updates[i];
            kept += 1;
        }
    }
    let v = cx.vcpu();
    // At most one entry per vector, bounded by the domain's charge limit, and never from the
    // heap's reserve.
    if !crate::mm::heap::headroom(v.traps.bytes_needed(&updates[..kept])) {
        return Err(Errno::ENOMEM);
    }
    v.traps
        .set_all(&updates[..kept])
        .map_err(|_| Errno::ENOMEM)?;
    refresh_fast_trap(v);
    Ok(Ret::Value(0))
}

/// Loads vCPU `v`'s `int 0x80` handler into the real IDT when it qualifies.
pub fn refresh_fast_trap(v: &Vcpu) {
    let entry = v.traps.get(guest_abi::hypercall::FAST_TRAP_VECTOR);
    // Never for a Xen PV kernel: the gate would enter its handler with Xenia's ring-1 CS.
    trap::set_fast_trap((entry.is_fast_trap() && !v.xen_pv).then_some(entry.address));
}

/// Whether `sp` can be a ring-1 stack top (`stack_switch`, `setvcpucontext`'s `kernel_sp`):
/// not 0 (which means "none"), the frame below it lies in guest addresses, and `sp` itself
/// is canonical, since the CPU loads TSS.RSP1 as it is (a top one past the lower half would
/// be sign-extended into the hypervisor's range).
#[inline]
pub fn kernel_stack_ok(sp: u64) -> bool {
    // Room below it for the largest frame the CPU or the hypervisor pushes there (error
    // code and five words, 16-aligned: 64 bytes), all guest addresses.
    const FRAME_BYTES: u64 = 64;
    sp != 0 && mem::is_canonical(sp) && mem::range_ok(sp.wrapping_sub(FRAME_BYTES), FRAME_BYTES)
}

/// `stack_switch(ss, sp)`: the ring-1 stack for entries from ring 3.
fn stack_switch(cx: &mut Hc) -> HcResult {
    if cx.vcpu_ref().xen_pv {
        return super::xenpv::stack_switch(cx);
    }
    let (ss, sp) = (cx.arg(0), cx.arg(1));
    if ss != u64::from(KERNEL_SS) || !kernel_stack_ok(sp) {
        return Err(Errno::EINVAL);
    }
    cx.vcpu().kernel_sp = sp;
    gdt::set_ring1_stack(sp);
    Ok(Ret::Value(0))
}

/// `set_callbacks(event, failsafe, syscall)`.
fn set_callbacks(cx: &mut Hc) -> HcResult {
    let (event, failsafe, syscall) = (cx.arg(0), cx.arg(1), cx.arg(2));
    if [event, failsafe, syscall]
        .iter()
        .any(|&a| a != 0 && !valid_entry_point(a))
    {
        return Err(Errno::EINVAL);
    }
    let c = &mut cx.vcpu().callbacks;
    c.event = event;
    c.failsafe = failsafe;
    c.syscall = syscall;
    c.syscall_masks_events = false;
    c.failsafe_masks_events = false;
    Ok(Ret::Value(0))
}

/// `callback_op(op, arg)`.
fn callback_op(cx: &mut Hc) -> HcResult {
    match cx.arg(0) as u32 {
        cb::CALLBACKOP_REGISTER => {
            let reg = cx.space().read(cx.ptr::<cb::CallbackRegister>(1))?;
            if !valid_entry_point(reg.address) {
                return Err(Errno::EINVAL);
            }
            let masks = reg.flags & cb::CALLBACKF_MASK_EVENTS != 0;
            let c = &mut cx.vcpu().callbacks;
            match reg.callback_type {
                cb::CALLBACKTYPE_EVENT => c.event = reg.address,
                cb::CALLBACKTYPE_FAILSAFE => {
                    c.failsafe = reg.address;
                    c.failsafe_masks_events = masks;
                }
                cb::CALLBACKTYPE_SYSCALL => {
                    c.syscall = reg.address;
                    c.syscall_masks_events = masks;
                }
                cb::CALLBACKTYPE_NMI => c.nmi = reg.address,
                _ => return Err(Errno::EINVAL),
            }
            Ok(Ret::Value(0))
        }
        cb::CALLBACKOP_UNREGISTER => {
            let unreg = cx.space().read(cx.ptr::<cb::CallbackUnregister>(1))?;
            match unreg.callback_type {
                cb::CALLBACKTYPE_NMI => {
                    cx.vcpu().callbacks.nmi = 0;
                    Ok(Ret::Value(0))
                }
                _ => Err(Errno::EINVAL),
            }
        }
        _ => Err(Errno::ENOSYS),
    }
}

/// `fpu_taskswitch(set)`: the guest's virtual CR0.TS, in force while its vCPU runs (saved
/// and restored with it; the hypervisor clears it again before it touches x87/SSE state).
fn fpu_taskswitch(cx: &mut Hc) -> HcResult {
    let set = cx.arg(0) != 0;
    cx.vcpu().fpu_ts = set;
    crate::arch::x86_64::set_task_switched(set);
    Ok(Ret::Value(0))
}

/// `set_timer_op(deadline)`: 0 cancels; a deadline now or in the past fires at once (the
/// event is marked before the call returns).
fn set_timer_op(cx: &mut Hc) -> HcResult {
    let deadline = cx.arg(0);
    let me = cx.vcpu_id();
    if deadline != 0 && deadline <= crate::time::now_ns() {
        // Already due: the event now, as Xen's timer fires at once (and a guest that loops
        // on a past deadline makes no timer walk run).
        cx.vcpu().singleshot = None;
        super::send_virq(cx.me(), me as u32, guest_abi::event::VIRQ_TIMER);
        return Ok(Ret::Value(0));
    }
    cx.vcpu().singleshot = (deadline != 0).then_some(deadline);
    if deadline != 0 {
        cx.timer_set(me, deadline);
    }
    Ok(Ret::Value(0))
}

/// `xen_version(cmd, arg)`.
fn xen_version(cx: &mut Hc) -> HcResult {
    use guest_abi::version as v;
    let space = cx.space();
    let arg: GuestPtr<u8> = cx.ptr(1);
    // The longest string buffer of the ABI (capabilities, command line): 1024 bytes.
    let write_str = |len: usize, text: &str| -> HcResult {
        let mut buf = [0u8; 1024];
        let buf = &mut buf[..len];
        let n = text.len().min(len - 1);
        buf[..n].copy_from_slice(&text.as_bytes()[..n]);
        space.write_bytes(arg, buf)?;
        Ok(Ret::Value(0))
    };
    // What Xen's default XSM policy keeps from domains other than dom0 (`xsm_xen_version`):
    // the command line ("<denied>") and the build id (`EPERM`).
    let deny = cx.me_ref().privilege != crate::domain::Privilege::Control;
    match cx.arg(0) as u32 {
        v::XENVER_VERSION => Ok(Ret::Value(u64::from(v::XENIA_VERSION))),
        v::XENVER_EXTRAVERSION => write_str(16, crate::VERSION_EXTRA),
        v::XENVER_COMPILE_INFO => {
            // compiler[64], compile_by[16], compile_domain[32], compile_date[32], each
            // NUL-terminated inside its field (cut if longer).
            let mut buf = [0u8; 144];
            for (at, len, text) in [
                (0, 64, env!("XENIA_CC_COMPILER")),
                (64, 16, env!("XENIA_CC_COMPILE_BY")),
                (80, 32, env!("XENIA_CC_COMPILE_DOMAIN")),
                (112, 32, env!("XENIA_CC_COMPILE_DATE")),
            ] {
                let n = text.len().min(len - 1);
                buf[at..at + n].copy_from_slice(&text.as_bytes()[..n]);
            }
            space.write_bytes(arg, &buf)?;
            Ok(Ret::Value(0))
        }
        v::XENVER_CAPABILITIES => write_str(1024, v::XENIA_CAPABILITIES),
        v::XENVER_CHANGESET => write_str(64, env!("XENIA_CHANGESET")),
        v::XENVER_PLATFORM_PARAMETERS => {
            let start = crate::arch::x86_64::layout::slot_base(256);
            space.write(cx.ptr::<u64>(1), &start)?;
            Ok(Ret::Value(0))
        }
        v::XENVER_GET_FEATURES => {
            // { u32 submap_idx; u32 submap; }
            let idx = space.read(cx.ptr::<u32>(1))?;
            // One feature word (Xen's XENFEAT_NR_SUBMAPS): the bits Xenia implements for the
            // caller's ABI (`guest::abi::features`).
            if idx >= v::XENFEAT_NR_SUBMAPS {
                return Err(Errno::EINVAL);
            }
            let features = super::abi::features(cx.me_ref());
            space.write(cx.ptr::<u32>(1).field::<u32>(4), &features)?;
            Ok(Ret::Value(0))
        }
        // Xen: the page size, and `EINVAL` if a buffer is given.
        v::XENVER_PAGESIZE if cx.arg(1) != 0 => Err(Errno::EINVAL),
        v::XENVER_PAGESIZE => Ok(Ret::Value(4096)),
        // The domain's handle (its UUID, 16 bytes), as Xen writes it.
        v::XENVER_GUEST_HANDLE => {
            let handle = cx.me_ref().handle;
            space.write_bytes(arg, &handle)?;
            Ok(Ret::Value(0))
        }
        // Xen copies "<denied>" and its NUL, nothing more.
        v::XENVER_COMMANDLINE if deny => write_str(9, "<denied>"),
        v::XENVER_COMMANDLINE => write_str(1024, crate::boot_info::command_line()),
        v::XENVER_BUILD_ID
        | v::XENVER_EXTRAVERSION2
        | v::XENVER_CAPABILITIES2
        | v::XENVER_CHANGESET2
        | v::XENVER_COMMANDLINE2
            if deny =>
        {
            Err(Errno::EPERM)
        }
        _ => Err(Errno::ENOSYS),
    }
}

/// `console_io(cmd, count, buffer)`.
fn console_io(cx: &mut Hc) -> HcResult {
    use guest_abi::console as c;
    let (count, buf) = (cx.arg(1), cx.ptr::<u8>(2));
    let space = cx.space();
    match cx.arg(0) as u32 {
        c::CONSOLEIO_WRITE => {
            let dom = cx.me();
            let id = dom.id;
            let line = &mut dom.console_line;
            write_out(&space, buf, count, |b| {
                crate::console::guest_output(id, line, b)
            })
        }
        c::CONSOLEIO_XENIA_WRITE_RAW => {
            cx.privileged()?;
            write_out(&space, buf, count, crate::console::dom0_raw_output)
        }
        c::CONSOLEIO_READ => {
            let token = cx.privileged()?;
            let dest = GuestSlice::<u8>::new(buf.addr(), count)?;
            let input = &mut cx.world(&token).input.get_mut().bytes;
            let mut bytes = [0u8; 4096];
            let n = (dest.count() as usize).min(input.len()).min(bytes.len());
            for (dst, b) in bytes.iter_mut().zip(input.iter()) {
                *dst = *b;
            }
            space.write_bytes(dest.start(), &bytes[..n])?;
            input.drain(..n);
            Ok(Ret::Value(n as u64))
        }
        _ => Err(Errno::ENOSYS),
    }
}

/// A console write: `count` bytes (at most [`CONSOLE_WRITE_MAX`]) from the guest's `buf`,
/// handed to `sink` in chunks as they are copied.
fn write_out(
    space: &mem::AddressSpace,
    buf: GuestPtr<u8>,
    count: u64,
    mut sink: impl FnMut(&[u8]),
) -> HcResult {
    let source = GuestSlice::<u8>::new(buf.addr(), count)?;
    let count = source.count().min(CONSOLE_WRITE_MAX);
    let mut chunk = [0u8; 256];
    let mut done = 0;
    while done < count {
        let n = (count - done).min(chunk.len() as u64) as usize;
        space.read_bytes(buf.offset(done), &mut chunk[..n])?;
        sink(&chunk[..n]);
        done += n as u64;
    }
    Ok(Ret::Value(done))
}

/// Restores a frame the guest built on its stack (`HYPERVISOR_IRET`), and the event
/// mask from its IF, in one step. A frame that cannot be used crashes the domain, as
/// the guest has nothing left to return to.
fn iret(cx: &mut Hc) -> HcResult {
    if cx.vcpu_ref().xen_pv {
        return super::xenpv::iret(cx);
    }
    let at = cx.regs().rsp;
    let ctx: IretContext = match cx.space().read(GuestPtr::new(at)) {
        Ok(c) => c,
        Err(_) => {
            return super::crash_caller(
                cx,
                format_args!("iret hypercall with an unreadable frame at {at:#x}"),
            );
        }
    };
    let (cs, ss) = if ctx.flags & guest_abi::trap::VGCF_IN_SYSCALL != 0 {
        (u64::from(USER_CS), u64::from(USER_SS))
    } else {
        (ctx.cs, ctx.ss)
    };
    let pair_ok = cs <= 0xFFFF && ss <= 0xFFFF && super::selectors_ok(cs as u16, ss as u16);
    if !pair_ok || !mem::is_canonical(ctx.rip) || !mem::is_canonical(ctx.rsp) {
        return super::crash_caller(
            cx,
            format_args!("iret hypercall to cs {cs:#x} ss {ss:#x} rip {:#x}", ctx.rip),
        );
    }
    let frame = cx.regs();
    frame.rax = ctx.rax;
    frame.r11 = ctx.r11;
    frame.rcx = ctx.rcx;
    frame.rip = ctx.rip;
    frame.cs = cs;
    frame.rflags = ctx.rflags;
    frame.rsp = ctx.rsp;
    frame.ss = ss;
    let mask = u8::from(ctx.rflags & RFLAGS_IF == 0);
    cx.info().evtchn_upcall_mask.store(mask, Ordering::Release);
    Ok(Ret::Resumed)
}

/// `set_segment_base(which, base)`.
/// `set_debugreg(reg, value)` (`xenia_core::debugreg::check` says what is refused); the value
/// takes effect at once for the calling vCPU.
fn set_debugreg(cx: &mut Hc) -> HcResult {
    use crate::debugreg::{self as dr, Target};
    let (target, value) = dr::check(cx.arg(0), cx.arg(1), |va| super::mem::range_ok(va, 8))?;
    let v = cx.vcpu();
    match target {
        Target::Address(n) => v.dr[n] = value,
        Target::Status => v.dr6 = value,
        Target::Control => v.dr7 = value,
    }
    v.load_debugregs();
    Ok(Ret::Value(0))
}

/// `get_debugreg(reg)`: the value kept (DR6 with what breakpoints reported since).
fn get_debugreg(cx: &mut Hc) -> HcResult {
    use crate::debugreg::{self as dr, Target};
    let target = dr::source(cx.arg(0)).ok_or(Errno::EINVAL)?;
    let v = cx.vcpu_ref();
    Ok(Ret::Value(match target {
        Target::Address(n) => v.dr[n],
        Target::Status => v.dr6,
        Target::Control => v.dr7,
    }))
}

fn set_segment_base(cx: &mut Hc) -> HcResult {
    use guest_abi::selectors as s;
    use x86_64::registers::model_specific::{FsBase, GsBase};
    if cx.vcpu_ref().xen_pv {
        return super::xenpv::set_segment_base(cx);
    }
    let (which, base) = (cx.arg(0) as u32, cx.arg(1));
    let vcpu = cx.vcpu();
    match which {
        s::SEGBASE_FS | s::SEGBASE_GS_USER => {
            if !mem::is_canonical(base) {
                return Err(Errno::EINVAL);
            }
            let addr = x86_64::VirtAddr::new(base);
            if which == s::SEGBASE_FS {
                vcpu.fs_base = base;
                FsBase::write(addr);
            } else {
                vcpu.gs_base = base;
                GsBase::write(addr);
            }
            Ok(Ret::Value(0))
        }
        s::SEGBASE_GS_KERNEL => Err(Errno::EOPNOTSUPP),
        s::SEGBASE_GS_USER_SEL => {
            if base > 0xFFFF || !crate::arch::x86_64::load_guest_gs(base as u16) {
                return Err(Errno::EINVAL);
            }
            vcpu.gs_base = 0;
            Ok(Ret::Value(0))
        }
        _ => Err(Errno::EINVAL),
    }
}

/// `sched_op(cmd, arg)`.
fn sched_op(cx: &mut Hc) -> HcResult {
    use guest_abi::sched as s;
    match cx.arg(0) as u32 {
        s::SCHEDOP_YIELD => Ok(Ret::Yield),
        s::SCHEDOP_BLOCK => super::block(cx),
        s::SCHEDOP_POLL => poll(cx),
        s::SCHEDOP_SHUTDOWN => {
            let req = cx.space().read(cx.ptr::<s::SchedShutdown>(1))?;
            let reason = Shutdown::from_reason(req.reason).ok_or(Errno::EINVAL)?;
            if reason == Shutdown::Crash {
                log::error!(target: "domain", "domain {} crashed: it asked to (SHUTDOWN_crash)", cx.id());
            }
            cx.me().shutdown = Some(reason);
            // The call succeeded: its saved registers (`getvcpucontext`) say 0, as on Xen.
            cx.regs().rax = 0;
            Ok(Ret::Stopped)
        }
        // Xen records the code a later shutdown reports to the toolstack, any value; Xenia
        // reads it (`EFAULT`) and has nothing to keep it for: a domain's shutdown names its
        // own reason.
        s::SCHEDOP_SHUTDOWN_CODE => {
            cx.space().read(cx.ptr::<s::SchedShutdown>(1))?;
            Ok(Ret::Value(0))
        }
        s::SCHEDOP_REMOTE_SHUTDOWN => {
            let token = cx.privileged()?;
            let req = cx.space().read(cx.ptr::<s::SchedRemoteShutdown>(1))?;
            let reason = Shutdown::from_reason(req.reason).ok_or(Errno::EINVAL)?;
            // dom0 shuts itself down with SCHEDOP_shutdown: never the target here.
            if req.domain_id == 0 || req.domain_id == cx.id() {
                return Err(Errno::EINVAL);
            }
            cx.world(&token).shut_down_other(req.domain_id, reason)?;
            Ok(Ret::Value(0))
        }
        _ => Err(Errno::ENOSYS),
    }
}

/// `SCHEDOP_poll(&sched_poll)`: blocks the calling vCPU until one of the listed ports is
/// pending (masked or not: that is the point, a guest polls a port it keeps masked), an
/// event needs delivery to it, or system time reaches `timeout` (absolute ns; 0: none; one
/// already past wakes it at once). Returns 0 however it wakes; the guest looks again.
/// Unlike `SCHEDOP_block` it leaves the event mask alone. Xen's `do_poll` checks, in its
/// order: more than [`MAX_POLL_PORTS`] ports is `EINVAL`, an array not in guest memory is
/// `EFAULT`; then it returns 0 at once if an event needs delivery or a listed port is
/// already pending; an unreadable port is `EFAULT`, one past the 2-level limit `EINVAL`.
///
/// Where this differs from Xen: with several ports, Xen wakes a poller on any event sent
/// to the domain; Xenia only on the listed ports (or a deliverable event), which is what
/// the guest asked for, and it looks again on return either way.
fn poll(cx: &mut Hc) -> HcResult {
    use guest_abi::event::{EVTCHN_2L_NR_CHANNELS, EvtchnPort};
    let space = cx.space();
    let arg = cx.ptr::<guest_abi::sched::SchedPoll>(1);
    let ports_at =
        space.read(arg.field::<u64>(core::mem::offset_of!(guest_abi::sched::SchedPoll, ports)))?;
    let nr = space
        .read(arg.field::<u32>(core::mem::offset_of!(guest_abi::sched::SchedPoll, nr_ports)))?
        as usize;
    let timeout = space
        .read(arg.field::<u64>(core::mem::offset_of!(guest_abi::sched::SchedPoll, timeout)))?;
    if nr > MAX_POLL_PORTS {
        return Err(Errno::EINVAL);
    }
    let list = GuestSlice::<EvtchnPort>::new(ports_at, nr as u64)?;
    let info = cx.info();
    if info.evtchn_upcall_pending.load(Ordering::Acquire) != 0
        && info.evtchn_upcall_mask.load(Ordering::Acquire) == 0
    {
        return Ok(Ret::Value(0));
    }
    let mut ports = [0 as EvtchnPort; MAX_POLL_PORTS];
    for (i, slot) in ports[..nr].iter_mut().enumerate() {
        let port = space.read(list.get(i as u64).ok_or(Errno::EFAULT)?)?;
        if port >= EVTCHN_2L_NR_CHANNELS {
            return Err(Errno::EINVAL);
        }
        if crate::event::is_pending(cx.me_ref().shared(), port) {
            return Ok(Ret::Value(0));
        }
        *slot = port;
    }
    cx.vcpu().poll = Some(Poll::new(&ports[..nr], (timeout != 0).then_some(timeout)));
    if timeout != 0 {
        let me = cx.vcpu_id();
        cx.timer_set(me, timeout);
    }
    Ok(Ret::Block)
}
