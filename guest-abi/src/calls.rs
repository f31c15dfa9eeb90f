//! Typed wrappers for the hypercalls a kernel uses most, built on the raw
//! primitives in [`hypercall`](crate::hypercall).
//!
//! Wrappers whose only effect is on the arguments they borrow, or on things
//! that cannot break the caller's memory safety (scheduling, events, timers,
//! the console), are safe functions. Wrappers that change the caller's
//! mappings, stacks or entry points are `unsafe` and say what the caller
//! must guarantee.
//!
//! All of them issue `int 0x82` and so only work in a Xenia guest kernel.

use crate::callback::{CALLBACKOP_REGISTER, CallbackRegister};
use crate::console::{CONSOLEIO_READ, CONSOLEIO_WRITE, CONSOLEIO_XENIA_WRITE_RAW};
use crate::errno::Errno;
use crate::event::{
    EVTCHNOP_ALLOC_UNBOUND, EVTCHNOP_BIND_INTERDOMAIN, EVTCHNOP_BIND_IPI, EVTCHNOP_BIND_PIRQ,
    EVTCHNOP_BIND_VCPU, EVTCHNOP_BIND_VIRQ, EVTCHNOP_CLOSE, EVTCHNOP_SEND, EVTCHNOP_STATUS,
    EVTCHNOP_UNMASK, EvtchnAllocUnbound, EvtchnBindInterdomain, EvtchnBindIpi, EvtchnBindPirq,
    EvtchnBindVcpu, EvtchnBindVirq, EvtchnClose, EvtchnPort, EvtchnSend, EvtchnStatus,
    EvtchnUnmask,
};
use crate::hypercall::{
    HYPERVISOR_CALLBACK_OP, HYPERVISOR_CONSOLE_IO, HYPERVISOR_EVENT_CHANNEL_OP,
    HYPERVISOR_MEMORY_OP, HYPERVISOR_MMU_UPDATE, HYPERVISOR_MMUEXT_OP, HYPERVISOR_MULTICALL,
    HYPERVISOR_PHYSDEV_OP, HYPERVISOR_SCHED_OP, HYPERVISOR_SET_SEGMENT_BASE,
    HYPERVISOR_SET_TIMER_OP, HYPERVISOR_SET_TRAP_TABLE, HYPERVISOR_STACK_SWITCH,
    HYPERVISOR_UPDATE_VA_MAPPING, HYPERVISOR_VCPU_OP, HYPERVISOR_XEN_VERSION, MulticallEntry,
    hypercall1, hypercall2, hypercall3, hypercall4,
};
use crate::memory::{MemoryExchange, MmuUpdate, MmuextOp, XENMEM_EXCHANGE};
use crate::physdev::{
    MAP_PIRQ_TYPE_GSI, PHYSDEVOP_EOI, PHYSDEVOP_IRQ_STATUS_QUERY, PHYSDEVOP_MAP_PIRQ,
    PHYSDEVOP_SETUP_GSI, PHYSDEVOP_UNMAP_PIRQ, PhysdevEoi, PhysdevIrqStatusQuery, PhysdevMapPirq,
    PhysdevSetupGsi, PhysdevUnmapPirq,
};
use crate::sched::{
    SCHEDOP_BLOCK, SCHEDOP_POLL, SCHEDOP_SHUTDOWN, SCHEDOP_YIELD, SchedPoll, SchedShutdown,
    ShutdownReason,
};
use crate::trap::TrapInfo;
use crate::types::{DOMID_SELF, DomId};
use crate::vcpu::{
    VCPUOP_DOWN, VCPUOP_INITIALISE, VCPUOP_IS_UP, VCPUOP_SET_PERIODIC_TIMER,
    VCPUOP_SET_SINGLESHOT_TIMER, VCPUOP_STOP_PERIODIC_TIMER, VCPUOP_STOP_SINGLESHOT_TIMER,
    VCPUOP_UP, VcpuSetPeriodicTimer, VcpuSetSingleshotTimer,
};
use crate::version::{
    XENVER_EXTRAVERSION, XENVER_GET_FEATURES, XENVER_VERSION, XenExtraversion, XenFeatureInfo,
};

fn ptr<T>(r: &T) -> u64 {
    r as *const T as u64
}

fn ptr_mut<T>(r: &mut T) -> u64 {
    r as *mut T as u64
}

/// `console_io(CONSOLEIO_WRITE)`: writes `bytes` to the hypervisor console.
/// Returns the number of bytes written.
pub fn console_write(bytes: &[u8]) -> Result<u64, Errno> {
    // SAFETY: the hypervisor only reads `bytes.len()` bytes from `bytes`,
    // which the borrow keeps valid for the call.
    let ret = unsafe {
        hypercall3(
            HYPERVISOR_CONSOLE_IO,
            CONSOLEIO_WRITE.into(),
            bytes.len() as u64,
            bytes.as_ptr() as u64,
        )
    };
    Errno::decode_result(ret)
}

/// `console_io(CONSOLEIO_XENIA_WRITE_RAW)`: `bytes` to the serial line as
/// they are (dom0 only).
pub fn console_write_raw(bytes: &[u8]) -> Result<u64, Errno> {
    // SAFETY: the hypervisor only reads `bytes.len()` bytes from `bytes`,
    // which the borrow keeps valid for the call.
    let ret = unsafe {
        hypercall3(
            HYPERVISOR_CONSOLE_IO,
            CONSOLEIO_XENIA_WRITE_RAW.into(),
            bytes.len() as u64,
            bytes.as_ptr() as u64,
        )
    };
    Errno::decode_result(ret)
}

/// `console_io(CONSOLEIO_READ)`: reads pending console input into `buf`
/// (dom0 only). Returns the number of bytes read.
pub fn console_read(buf: &mut [u8]) -> Result<u64, Errno> {
    // SAFETY: the hypervisor writes at most `buf.len()` bytes into `buf`,
    // which the exclusive borrow keeps valid for the call.
    let ret = unsafe {
        hypercall3(
            HYPERVISOR_CONSOLE_IO,
            CONSOLEIO_READ.into(),
            buf.len() as u64,
            buf.as_mut_ptr() as u64,
        )
    };
    Errno::decode_result(ret)
}

/// `sched_op(SCHEDOP_YIELD)`.
pub fn sched_yield() -> Result<u64, Errno> {
    // SAFETY: yielding takes no pointer and changes no guest state.
    Errno::decode_result(unsafe { hypercall2(HYPERVISOR_SCHED_OP, SCHEDOP_YIELD.into(), 0) })
}

/// `sched_op(SCHEDOP_BLOCK)`: unmasks events and sleeps until one is pending.
/// The event upcall runs before this returns.
pub fn sched_block() -> Result<u64, Errno> {
    // SAFETY: blocking takes no pointer; the event upcall it may trigger is
    // the guest's own registered handler, entered as for any event.
    Errno::decode_result(unsafe { hypercall2(HYPERVISOR_SCHED_OP, SCHEDOP_BLOCK.into(), 0) })
}

/// `sched_op(SCHEDOP_SHUTDOWN)`: stops the domain. Returns only for
/// [`ShutdownReason::Suspend`] after a resume, or on error.
pub fn sched_shutdown(reason: ShutdownReason) -> Result<u64, Errno> {
    let arg = SchedShutdown {
        reason: reason as u32,
    };
    // SAFETY: the hypervisor reads one `SchedShutdown` from `arg`, which lives
    // for the call.
    Errno::decode_result(unsafe {
        hypercall2(HYPERVISOR_SCHED_OP, SCHEDOP_SHUTDOWN.into(), ptr(&arg))
    })
}

/// `sched_op(SCHEDOP_POLL)`: sleeps until one of `ports` is pending or the
/// absolute system time `timeout_ns` passes (0: no timeout).
pub fn sched_poll(ports: &[EvtchnPort], timeout_ns: u64) -> Result<u64, Errno> {
    let nr_ports = u32::try_from(ports.len()).map_err(|_| Errno::EINVAL)?;
    let arg = SchedPoll {
        ports: ports.as_ptr() as u64,
        nr_ports,
        timeout: timeout_ns,
    };
    // SAFETY: the hypervisor reads `arg` and `nr_ports` ports from `ports`,
    // both borrowed for the call.
    Errno::decode_result(unsafe { hypercall2(HYPERVISOR_SCHED_OP, SCHEDOP_POLL.into(), ptr(&arg)) })
}

/// `xen_version(XENVER_VERSION)`: `major << 16 | minor`.
pub fn xen_version() -> Result<u32, Errno> {
    // SAFETY: this sub-operation takes no pointer.
    let v = Errno::decode_result(unsafe {
        hypercall2(HYPERVISOR_XEN_VERSION, XENVER_VERSION.into(), 0)
    })?;
    Ok(v as u32)
}

/// `xen_version(XENVER_EXTRAVERSION)`: the version suffix, NUL-terminated.
pub fn xen_extraversion() -> Result<XenExtraversion, Errno> {
    let mut out: XenExtraversion = [0; 16];
    // SAFETY: the hypervisor writes 16 bytes into `out`, borrowed for the call.
    Errno::decode_result(unsafe {
        hypercall2(
            HYPERVISOR_XEN_VERSION,
            XENVER_EXTRAVERSION.into(),
            ptr_mut(&mut out),
        )
    })?;
    Ok(out)
}

/// `xen_version(XENVER_GET_FEATURES)`: feature word `submap_idx`.
pub fn xen_features(submap_idx: u32) -> Result<u32, Errno> {
    let mut info = XenFeatureInfo {
        submap_idx,
        submap: 0,
    };
    // SAFETY: the hypervisor reads and writes one `XenFeatureInfo`, borrowed
    // for the call.
    Errno::decode_result(unsafe {
        hypercall2(
            HYPERVISOR_XEN_VERSION,
            XENVER_GET_FEATURES.into(),
            ptr_mut(&mut info),
        )
    })?;
    Ok(info.submap)
}

/// `set_timer_op`: raise `VIRQ_TIMER` at absolute system time `deadline_ns`
/// (0 cancels).
pub fn set_timer_op(deadline_ns: u64) -> Result<u64, Errno> {
    // SAFETY: takes no pointer.
    Errno::decode_result(unsafe { hypercall1(HYPERVISOR_SET_TIMER_OP, deadline_ns) })
}

fn event_channel_op<T>(cmd: u32, arg: &mut T) -> Result<u64, Errno> {
    // SAFETY: every caller passes the structure that `cmd` takes; the
    // hypervisor reads and writes only that structure, borrowed for the call.
    Errno::decode_result(unsafe {
        hypercall2(HYPERVISOR_EVENT_CHANNEL_OP, cmd.into(), ptr_mut(arg))
    })
}

/// `EVTCHNOP_SEND`: notify the other end of `port`.
pub fn evtchn_send(port: EvtchnPort) -> Result<(), Errno> {
    event_channel_op(EVTCHNOP_SEND, &mut EvtchnSend { port }).map(drop)
}

/// `EVTCHNOP_UNMASK`: unmask `port` and deliver it if it is pending.
pub fn evtchn_unmask(port: EvtchnPort) -> Result<(), Errno> {
    event_channel_op(EVTCHNOP_UNMASK, &mut EvtchnUnmask { port }).map(drop)
}

/// `EVTCHNOP_CLOSE`: close `port`.
pub fn evtchn_close(port: EvtchnPort) -> Result<(), Errno> {
    event_channel_op(EVTCHNOP_CLOSE, &mut EvtchnClose { port }).map(drop)
}

/// `EVTCHNOP_BIND_VIRQ`: bind `virq` on `vcpu`; returns the new port.
pub fn evtchn_bind_virq(virq: u32, vcpu: u32) -> Result<EvtchnPort, Errno> {
    let mut arg = EvtchnBindVirq {
        virq,
        vcpu,
        port: 0,
    };
    event_channel_op(EVTCHNOP_BIND_VIRQ, &mut arg)?;
    Ok(arg.port)
}

/// `EVTCHNOP_BIND_IPI`: a port that notifies `vcpu`; returns it.
pub fn evtchn_bind_ipi(vcpu: u32) -> Result<EvtchnPort, Errno> {
    let mut arg = EvtchnBindIpi { vcpu, port: 0 };
    event_channel_op(EVTCHNOP_BIND_IPI, &mut arg)?;
    Ok(arg.port)
}

/// `EVTCHNOP_BIND_VCPU`: `port` (unbound, interdomain or a global VIRQ)
/// notifies `vcpu` from now on.
pub fn evtchn_bind_vcpu(port: EvtchnPort, vcpu: u32) -> Result<(), Errno> {
    event_channel_op(EVTCHNOP_BIND_VCPU, &mut EvtchnBindVcpu { port, vcpu }).map(drop)
}

/// `EVTCHNOP_ALLOC_UNBOUND`: a port in `dom` that `remote_dom` may connect
/// to; returns it.
pub fn evtchn_alloc_unbound(dom: DomId, remote_dom: DomId) -> Result<EvtchnPort, Errno> {
    let mut arg = EvtchnAllocUnbound {
        dom,
        remote_dom,
        port: 0,
    };
    event_channel_op(EVTCHNOP_ALLOC_UNBOUND, &mut arg)?;
    Ok(arg.port)
}

/// `EVTCHNOP_BIND_INTERDOMAIN`: connect to `remote_port` of `remote_dom`;
/// returns the local port.
pub fn evtchn_bind_interdomain(
    remote_dom: DomId,
    remote_port: EvtchnPort,
) -> Result<EvtchnPort, Errno> {
    let mut arg = EvtchnBindInterdomain {
        remote_dom,
        remote_port,
        local_port: 0,
    };
    event_channel_op(EVTCHNOP_BIND_INTERDOMAIN, &mut arg)?;
    Ok(arg.local_port)
}

/// `EVTCHNOP_STATUS`: the state of `port` in `dom`.
pub fn evtchn_status(dom: DomId, port: EvtchnPort) -> Result<EvtchnStatus, Errno> {
    let mut arg = EvtchnStatus {
        dom,
        port,
        ..Default::default()
    };
    event_channel_op(EVTCHNOP_STATUS, &mut arg)?;
    Ok(arg)
}

fn vcpu_op(cmd: u32, vcpu: u32, arg: u64) -> Result<u64, Errno> {
    // SAFETY: every caller passes null or the structure that `cmd` takes,
    // borrowed for the call; the hypervisor only reads it.
    Errno::decode_result(unsafe { hypercall3(HYPERVISOR_VCPU_OP, cmd.into(), vcpu.into(), arg) })
}

/// `VCPUOP_SET_SINGLESHOT_TIMER`: raise `VIRQ_TIMER` on `vcpu` at
/// `timer.timeout_abs_ns`.
pub fn vcpu_set_singleshot_timer(vcpu: u32, timer: &VcpuSetSingleshotTimer) -> Result<(), Errno> {
    vcpu_op(VCPUOP_SET_SINGLESHOT_TIMER, vcpu, ptr(timer)).map(drop)
}

/// `VCPUOP_STOP_SINGLESHOT_TIMER`.
pub fn vcpu_stop_singleshot_timer(vcpu: u32) -> Result<(), Errno> {
    vcpu_op(VCPUOP_STOP_SINGLESHOT_TIMER, vcpu, 0).map(drop)
}

/// `VCPUOP_SET_PERIODIC_TIMER`: raise `VIRQ_TIMER` on `vcpu` every
/// `period_ns`.
pub fn vcpu_set_periodic_timer(vcpu: u32, period_ns: u64) -> Result<(), Errno> {
    let arg = VcpuSetPeriodicTimer { period_ns };
    vcpu_op(VCPUOP_SET_PERIODIC_TIMER, vcpu, ptr(&arg)).map(drop)
}

/// `VCPUOP_STOP_PERIODIC_TIMER`.
pub fn vcpu_stop_periodic_timer(vcpu: u32) -> Result<(), Errno> {
    vcpu_op(VCPUOP_STOP_PERIODIC_TIMER, vcpu, 0).map(drop)
}

/// `VCPUOP_IS_UP`.
pub fn vcpu_is_up(vcpu: u32) -> Result<bool, Errno> {
    vcpu_op(VCPUOP_IS_UP, vcpu, 0).map(|v| v != 0)
}

/// `VCPUOP_INITIALISE`: gives `vcpu` (never initialised before: `EEXIST`
/// otherwise) the context `ctx`. It stays down unless `ctx.flags` has
/// `VGCF_ONLINE`; [`vcpu_up`] starts it.
///
/// # Safety
///
/// Once up, the vCPU runs the caller's kernel at `ctx.user_regs.rip` on the
/// stack `ctx.user_regs.rsp`, with the root table, trap table and callbacks
/// the context names: all of them must be fit for that, and the stack must be
/// used by nothing else.
pub unsafe fn vcpu_initialise(
    vcpu: u32,
    ctx: &crate::vcpu_context::VcpuGuestContext,
) -> Result<(), Errno> {
    vcpu_op(VCPUOP_INITIALISE, vcpu, core::ptr::from_ref(ctx) as u64).map(drop)
}

/// `VCPUOP_REGISTER_VCPU_INFO`: moves `vcpu`'s `vcpu_info` to byte
/// `info.offset` of the caller's frame `info.mfn` (see
/// [`VcpuRegisterVcpuInfo`](crate::vcpu::VcpuRegisterVcpuInfo)).
///
/// # Safety
///
/// From then on the hypervisor writes that part of the frame for as long as the
/// domain lives: the kernel must use it for nothing but that `vcpu_info`.
pub unsafe fn vcpu_register_vcpu_info(
    vcpu: u32,
    info: &crate::vcpu::VcpuRegisterVcpuInfo,
) -> Result<(), Errno> {
    vcpu_op(
        crate::vcpu::VCPUOP_REGISTER_VCPU_INFO,
        vcpu,
        core::ptr::from_ref(info) as u64,
    )
    .map(drop)
}

/// `VCPUOP_UP`: starts an initialised vCPU (`EINVAL` if it never was); a vCPU
/// that is up already is left alone.
pub fn vcpu_up(vcpu: u32) -> Result<(), Errno> {
    vcpu_op(VCPUOP_UP, vcpu, 0).map(drop)
}

/// `VCPUOP_DOWN`: stops `vcpu` where it is (itself included: the call then
/// returns when the vCPU is brought up again). Taking the domain's last vCPU
/// that is up down powers the domain off.
pub fn vcpu_down(vcpu: u32) -> Result<(), Errno> {
    vcpu_op(VCPUOP_DOWN, vcpu, 0).map(drop)
}

/// `multicall`: runs `entries` in order, each entry's result in its `result`
/// field (see [`MulticallEntry`]). Returns the call's own result: 0, or
/// `EFAULT` if the array could not be read or written back.
///
/// # Safety
///
/// Each entry is a hypercall with raw arguments: the caller gives each the
/// guarantees its own wrapper asks for.
pub unsafe fn multicall(entries: &mut [MulticallEntry]) -> Result<(), Errno> {
    // SAFETY: the array is borrowed mutably for the call, which writes only its
    // `result` fields and the arguments of a continued entry; the entries'
    // own guarantees are the caller's.
    Errno::decode_result(unsafe {
        hypercall2(
            HYPERVISOR_MULTICALL,
            entries.as_mut_ptr() as u64,
            entries.len() as u64,
        )
    })
    .map(drop)
}

/// `set_trap_table`: installs `table`, whose last entry must be
/// [`TrapInfo::END`] (`EINVAL` without issuing the call otherwise).
///
/// # Safety
///
/// Every handler address in `table` must be the entry point of code that
/// handles that vector with the frame described in [`trap`](crate::trap);
/// from now on the hypervisor transfers control there.
pub unsafe fn set_trap_table(table: &[TrapInfo]) -> Result<(), Errno> {
    match table.last() {
        Some(last) if last.is_end() => {}
        _ => return Err(Errno::EINVAL),
    }
    // SAFETY: the table is terminated, borrowed for the call and only read;
    // the caller vouches for the handlers.
    Errno::decode_result(unsafe { hypercall1(HYPERVISOR_SET_TRAP_TABLE, table.as_ptr() as u64) })
        .map(drop)
}

/// `callback_op(CALLBACKOP_REGISTER)`.
///
/// # Safety
///
/// `cb.address` must be the entry point of code that handles that callback
/// type with the frame described in [`callback`](crate::callback).
pub unsafe fn callback_register(cb: &CallbackRegister) -> Result<(), Errno> {
    // SAFETY: the hypervisor reads one `CallbackRegister`; the caller vouches
    // for the entry point.
    Errno::decode_result(unsafe {
        hypercall2(HYPERVISOR_CALLBACK_OP, CALLBACKOP_REGISTER.into(), ptr(cb))
    })
    .map(drop)
}

/// `stack_switch`: use `ss:rsp` as the ring-1 stack for entries from ring 3.
///
/// # Safety
///
/// `ss` must be [`KERNEL_SS`](crate::selectors::KERNEL_SS) and `rsp` the top
/// of a mapped, writable stack that nothing else uses while ring-3 code can
/// be interrupted.
pub unsafe fn stack_switch(ss: u16, rsp: u64) -> Result<(), Errno> {
    // SAFETY: the caller vouches for the stack.
    Errno::decode_result(unsafe { hypercall2(HYPERVISOR_STACK_SWITCH, ss.into(), rsp) }).map(drop)
}

/// `set_segment_base`.
///
/// # Safety
///
/// Changing the FS or GS base changes what every FS- or GS-relative access
/// reaches (for instance thread-local storage); the caller must make sure
/// nothing relies on the old base.
pub unsafe fn set_segment_base(which: u32, base: u64) -> Result<(), Errno> {
    // SAFETY: the caller vouches that nothing relies on the old base.
    Errno::decode_result(unsafe { hypercall2(HYPERVISOR_SET_SEGMENT_BASE, which.into(), base) })
        .map(drop)
}

/// `update_va_mapping`: sets the L1 entry for `va` to `pte` (machine
/// address and flags), flushing as `flags` (`UVMF_*`) says.
///
/// # Safety
///
/// Any memory the old mapping of `va` gave access to must not be in use
/// through `va` afterwards, and memory the new mapping exposes must be valid
/// for whatever the caller does with it.
pub unsafe fn update_va_mapping(va: u64, pte: u64, flags: u64) -> Result<(), Errno> {
    // SAFETY: the caller vouches for the old and new mappings.
    Errno::decode_result(unsafe { hypercall3(HYPERVISOR_UPDATE_VA_MAPPING, va, pte, flags) })
        .map(drop)
}

/// `mmu_update` on `reqs` with foreign domain `foreigndom`. Returns the number
/// of requests completed (all of them on success).
///
/// # Safety
///
/// As for [`update_va_mapping`], for every entry the requests change.
pub unsafe fn mmu_update(reqs: &[MmuUpdate], foreigndom: DomId) -> Result<u32, Errno> {
    let mut done: u32 = 0;
    // SAFETY: `reqs` is read and `done` written, both borrowed for the call;
    // the caller vouches for the mappings.
    let ret = unsafe {
        hypercall4(
            HYPERVISOR_MMU_UPDATE,
            reqs.as_ptr() as u64,
            reqs.len() as u64,
            ptr_mut(&mut done),
            foreigndom.into(),
        )
    };
    Errno::decode_result(ret).map(|_| done)
}

/// `mmuext_op` on `ops` with foreign domain `foreigndom`. Returns the number
/// of operations completed.
///
/// # Safety
///
/// As for [`update_va_mapping`]: unpinning, switching base pointer or
/// changing the LDT must not pull memory out from under code that uses it.
pub unsafe fn mmuext_op(ops: &[MmuextOp], foreigndom: DomId) -> Result<u32, Errno> {
    let mut done: u32 = 0;
    // SAFETY: `ops` is read and `done` written, both borrowed for the call;
    // the caller vouches for the effects.
    let ret = unsafe {
        hypercall4(
            HYPERVISOR_MMUEXT_OP,
            ops.as_ptr() as u64,
            ops.len() as u64,
            ptr_mut(&mut done),
            foreigndom.into(),
        )
    };
    Errno::decode_result(ret).map(|_| done)
}

/// `grant_table_op(GNTTABOP_SETUP_TABLE)` for the caller's own table: grows it to
/// `frames.len()` frames and writes their machine frames into `frames`. Returns the
/// operation's `GNTST_*` status (the call's own error if it could not run).
pub fn grant_setup_table(frames: &mut [u64]) -> Result<i16, Errno> {
    let nr_frames = u32::try_from(frames.len()).map_err(|_| Errno::EINVAL)?;
    let mut op = crate::grant::GnttabSetupTable {
        dom: crate::types::DOMID_SELF,
        nr_frames,
        status: 0,
        frame_list: frames.as_mut_ptr() as u64,
    };
    // SAFETY: the hypervisor reads `op` and writes its status and at most `nr_frames`
    // entries of `frames`, all borrowed for the call; no mapping changes.
    Errno::decode_result(unsafe {
        hypercall3(
            crate::hypercall::HYPERVISOR_GRANT_TABLE_OP,
            crate::grant::GNTTABOP_SETUP_TABLE.into(),
            ptr_mut(&mut op),
            1,
        )
    })?;
    Ok(op.status)
}

/// `grant_table_op(GNTTABOP_COPY)` on `ops`: each operation's `status` says how it went
/// (the call's own error if the array could not be read).
///
/// # Safety
///
/// Every frame of the caller an operation writes (a destination given as a frame, not a
/// grant) must be memory nothing else uses while the call runs: the hypervisor writes it
/// behind the compiler's back.
pub unsafe fn grant_copy(ops: &mut [crate::grant::GnttabCopy]) -> Result<(), Errno> {
    // SAFETY: the array is borrowed for the call (the hypervisor writes only the statuses);
    // the caller vouches for the frames written.
    Errno::decode_result(unsafe {
        hypercall3(
            crate::hypercall::HYPERVISOR_GRANT_TABLE_OP,
            crate::grant::GNTTABOP_COPY.into(),
            ops.as_mut_ptr() as u64,
            ops.len() as u64,
        )
    })
    .map(drop)
}

/// `EVTCHNOP_BIND_PIRQ` (dom0): a port for PIRQ `pirq`, notifying vCPU 0;
/// returns it. `flags` is 0 or `BIND_PIRQ_WILL_SHARE`.
pub fn evtchn_bind_pirq(pirq: u32, flags: u32) -> Result<EvtchnPort, Errno> {
    let mut arg = EvtchnBindPirq {
        pirq,
        flags,
        port: 0,
    };
    event_channel_op(EVTCHNOP_BIND_PIRQ, &mut arg)?;
    Ok(arg.port)
}

fn physdev_op<T>(cmd: u32, arg: &mut T) -> Result<u64, Errno> {
    // SAFETY: every caller passes the structure that `cmd` takes; the
    // hypervisor reads and writes only that structure, borrowed for the call.
    Errno::decode_result(unsafe { hypercall2(HYPERVISOR_PHYSDEV_OP, cmd.into(), ptr_mut(arg)) })
}

/// `PHYSDEVOP_setup_gsi` (dom0): set `gsi`'s trigger mode
/// (`GSI_TRIGGER_*`) and polarity (`GSI_POLARITY_*`).
pub fn physdev_setup_gsi(gsi: u32, triggering: u8, polarity: u8) -> Result<(), Errno> {
    let mut arg = PhysdevSetupGsi {
        gsi: gsi as i32,
        triggering,
        polarity,
        _pad0: 0,
    };
    physdev_op(PHYSDEVOP_SETUP_GSI, &mut arg).map(drop)
}

/// `PHYSDEVOP_map_pirq` with `MAP_PIRQ_TYPE_GSI` (dom0): a PIRQ for `gsi`,
/// `pirq` if given, else one the hypervisor chooses; returns it.
pub fn physdev_map_pirq_gsi(gsi: u32, pirq: Option<u32>) -> Result<u32, Errno> {
    let mut arg = PhysdevMapPirq {
        domid: DOMID_SELF,
        kind: MAP_PIRQ_TYPE_GSI,
        index: gsi as i32,
        pirq: pirq.map_or(-1, |p| p as i32),
        ..Default::default()
    };
    physdev_op(PHYSDEVOP_MAP_PIRQ, &mut arg)?;
    Ok(arg.pirq as u32)
}

/// `PHYSDEVOP_unmap_pirq` (dom0): give PIRQ `pirq` back (closing its port
/// first is the caller's business; an open port is closed with it).
pub fn physdev_unmap_pirq(pirq: u32) -> Result<(), Errno> {
    let mut arg = PhysdevUnmapPirq {
        domid: DOMID_SELF,
        _pad0: 0,
        pirq: pirq as i32,
    };
    physdev_op(PHYSDEVOP_UNMAP_PIRQ, &mut arg).map(drop)
}

/// `PHYSDEVOP_eoi` (dom0): PIRQ `pirq` is serviced; unmask its pin.
pub fn physdev_eoi(pirq: u32) -> Result<(), Errno> {
    physdev_op(PHYSDEVOP_EOI, &mut PhysdevEoi { irq: pirq }).map(drop)
}

/// `PHYSDEVOP_irq_status_query` (dom0): the `XENIRQSTAT_*` flags of PIRQ
/// `pirq`.
pub fn physdev_irq_status_query(pirq: u32) -> Result<u32, Errno> {
    let mut arg = PhysdevIrqStatusQuery {
        irq: pirq,
        flags: 0,
    };
    physdev_op(PHYSDEVOP_IRQ_STATUS_QUERY, &mut arg)?;
    Ok(arg.flags)
}

/// `memory_op(XENMEM_exchange)`: give the extents in `exch.input`, get those
/// described by `exch.output` ([`MemoryExchange`]). On return
/// `exch.nr_exchanged` says how many input extents were exchanged, also on
/// failure.
///
/// # Safety
///
/// The frames given must not be mapped or used by the caller any more (the
/// hypervisor refuses frames that are still mapped or typed, but the
/// caller's own bookkeeping, such as its p2m, is its business), and the two
/// `extent_start` arrays must be valid for the call.
pub unsafe fn memory_exchange(exch: &mut MemoryExchange) -> Result<(), Errno> {
    // SAFETY: the hypervisor reads `exch` and the arrays it names, writes
    // `exch.nr_exchanged` and the output array; the caller vouches for the
    // frames given away.
    let ret = unsafe { hypercall2(HYPERVISOR_MEMORY_OP, XENMEM_EXCHANGE.into(), ptr_mut(exch)) };
    Errno::decode_result(ret).map(drop)
}
