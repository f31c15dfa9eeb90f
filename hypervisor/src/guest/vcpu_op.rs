//! `vcpu_op(cmd, vcpu, arg)`: a domain's own vCPUs: bring-up (`initialise`, `up`), `down`,
//! `is_up`, and the per-vCPU timers (guest-abi `vcpu`), with Xen's rules (`do_vcpu_op` in
//! `xen/common/domain.c`).
//!
//! A domain names only its own vCPUs, `0..max_vcpus`; any other number is `ENOENT`, before
//! the command is looked at. The life of a vCPU:
//!
//! - created *uninitialised* and *down* (`domctl createdomain`): it holds one pause in the
//!   scheduler, which alone decides whether a vCPU runs;
//! - *initialised* once, by `XEN_DOMCTL_setvcpucontext` (dom0's builder, vCPU 0) or by
//!   `VCPUOP_initialise` (the guest, for its secondary vCPUs). Both check the context with
//!   the same function (`domctl::install_vcpu_context`). A second `VCPUOP_initialise` is
//!   `EEXIST`, whether the vCPU is up or down: as in Xen, a vCPU that went down keeps its
//!   registers and resumes where it stopped when it comes up again;
//! - *up* when the context carried `VGCF_online`, or after `VCPUOP_up` (`EINVAL` while it is
//!   uninitialised): the scheduler's pause is undone;
//! - *down* again after `VCPUOP_down` (on itself or on a sibling): paused again. Taking the
//!   last vCPU that is up down powers the domain off, as in Xen.

use core::mem::{align_of, offset_of, size_of};
use core::sync::atomic::Ordering;

use guest_abi::errno::Errno;
use guest_abi::shared_info::{SharedInfo, VcpuInfo};
use guest_abi::vcpu as v;
use guest_abi::vcpu_context::VcpuGuestContext;

use super::context::{Hc, HcResult, Ret};
use super::locks::Lock;
use super::mem::{AddressSpace, GuestPtr};
use crate::domain::{Domain, Periodic, Shutdown};
use crate::mm::{Mfn, PAGE_SIZE, ft, physmem};
use crate::runstate::{Runstate, UPDATE};
use crate::sched::{Scheduler, VcpuId};

/// `vcpu_op(cmd, vcpu, arg)`.
pub fn vcpu_op(cx: &mut Hc) -> HcResult {
    let cmd = cx.arg(0) as u32;
    // Xen's `vcpuid` is an unsigned int: the upper half of the register is not looked at,
    // and a negative int is a large number, which no domain has.
    let vcpu = cx.arg(1) as u32 as usize;
    if vcpu >= cx.me_ref().vcpus.len() {
        return Err(Errno::ENOENT);
    }
    let now = crate::time::now_ns();
    match cmd {
        v::VCPUOP_INITIALISE => initialise(cx, vcpu),
        v::VCPUOP_UP => up(cx, vcpu),
        v::VCPUOP_DOWN => down(cx, vcpu),
        v::VCPUOP_IS_UP => Ok(Ret::Value(u64::from(cx.me_ref().vcpus[vcpu].online))),
        v::VCPUOP_REGISTER_VCPU_INFO => register_vcpu_info(cx, vcpu),
        v::VCPUOP_GET_RUNSTATE_INFO => {
            let r = runstate_of(cx, vcpu, now);
            cx.space().write_bytes(cx.ptr(2), &r.to_bytes(false))?;
            Ok(Ret::Value(0))
        }
        v::VCPUOP_REGISTER_RUNSTATE_MEMORY_AREA => register_runstate(cx, vcpu, now),
        v::VCPUOP_SET_PERIODIC_TIMER => {
            let p = cx.space().read(cx.ptr::<v::VcpuSetPeriodicTimer>(2))?;
            if p.period_ns < v::VCPU_PERIODIC_MIN_NS {
                return Err(Errno::EINVAL);
            }
            let next = now.saturating_add(p.period_ns);
            cx.me().vcpus[vcpu].periodic = Some(Periodic {
                period: p.period_ns,
                next,
            });
            cx.timer_set(vcpu, next);
            Ok(Ret::Value(0))
        }
        v::VCPUOP_STOP_PERIODIC_TIMER => {
            cx.me().vcpus[vcpu].periodic = None;
            Ok(Ret::Value(0))
        }
        // The single-shot timer is the calling vCPU's own (Xen: `v != current` is EINVAL).
        v::VCPUOP_SET_SINGLESHOT_TIMER => {
            if vcpu != cx.vcpu_id() {
                return Err(Errno::EINVAL);
            }
            let s = cx.space().read(cx.ptr::<v::VcpuSetSingleshotTimer>(2))?;
            if s.flags & v::VCPU_SSHOTTMR_FUTURE != 0 && s.timeout_abs_ns < now {
                return Err(Errno::ETIME);
            }
            if s.timeout_abs_ns <= now {
                // Already due: the event now (`set_timer_op` does the same).
                cx.vcpu().singleshot = None;
                super::send_virq(cx.me(), vcpu as u32, guest_abi::event::VIRQ_TIMER);
                return Ok(Ret::Value(0));
            }
            cx.vcpu().singleshot = Some(s.timeout_abs_ns);
            cx.timer_set(vcpu, s.timeout_abs_ns);
            Ok(Ret::Value(0))
        }
        v::VCPUOP_STOP_SINGLESHOT_TIMER => {
            if vcpu != cx.vcpu_id() {
                return Err(Errno::EINVAL);
            }
            cx.vcpu().singleshot = None;
            Ok(Ret::Value(0))
        }
        _ => Err(Errno::ENOSYS),
    }
}

/// `VCPUOP_initialise(vcpu, ctx)`: the context is copied first (`EFAULT`), then refused on a
/// vCPU that was initialised before (`EEXIST`), then checked and installed as
/// `setvcpucontext` does (`EINVAL`, or the frame table's errno for the new root). With
/// `VGCF_online` the vCPU comes up at once, as Xen's `arch_set_info_guest` clears
/// `_VPF_down`; without it, `VCPUOP_up` brings it up.
fn initialise(cx: &mut Hc, vcpu: usize) -> HcResult {
    let ctx: VcpuGuestContext = cx.space().read(cx.ptr(2))?;
    let dom = cx.me();
    if dom.vcpus[vcpu].initialised {
        return Err(Errno::EEXIST);
    }
    if super::domctl::install_vcpu_context(dom, vcpu as u32, &ctx)? {
        cx.unpause_own_vcpu(vcpu);
    }
    log::debug!(target: "domain", "domain {} initialised vCPU {vcpu}", cx.id());
    Ok(Ret::Value(0))
}

/// `VCPUOP_up(vcpu)`: `EINVAL` while it was never initialised; nothing to do if it is up.
fn up(cx: &mut Hc, vcpu: usize) -> HcResult {
    let v = &mut cx.me().vcpus[vcpu];
    if !v.initialised {
        return Err(Errno::EINVAL);
    }
    if !v.online {
        v.online = true;
        cx.unpause_own_vcpu(vcpu);
    }
    Ok(Ret::Value(0))
}

/// `VCPUOP_down(vcpu)`: the vCPU stops where it is (a vCPU taking itself down returns 0
/// when it is brought up again). When no other vCPU of the domain is up, the domain powers
/// off instead (Xen: "last vcpu going down?").
fn down(cx: &mut Hc, vcpu: usize) -> HcResult {
    let dom = cx.me();
    let others_up = dom
        .vcpus
        .iter()
        .enumerate()
        .any(|(i, v)| i != vcpu && v.online);
    if !others_up {
        log::info!(
            target: "domain",
            "domain {}: its last vCPU that was up ({vcpu}) went down",
            dom.id
        );
        dom.shutdown.get_or_insert(Shutdown::PowerOff);
        return Ok(Ret::Stopped);
    }
    let v = &mut dom.vcpus[vcpu];
    if v.online {
        v.online = false;
        cx.pause_own_vcpu(vcpu);
    }
    Ok(Ret::Value(0))
}

/// `VCPUOP_register_vcpu_info(vcpu, {mfn, offset})`: moves the vCPU's `vcpu_info` into a
/// page of the guest's (Xen's `map_vcpu_info`; the rules and errnos are on guest-abi's
/// `VcpuRegisterVcpuInfo`). The frame is held with `hold_for_writes`, like `shared_info`,
/// and released when the domain is destroyed (`lifecycle::release`).
fn register_vcpu_info(cx: &mut Hc, vcpu: usize) -> HcResult {
    let arg: v::VcpuRegisterVcpuInfo = cx.space().read(cx.ptr(2))?;
    let offset = arg.offset as usize;
    let caller = cx.vcpu_id();
    // A sibling just taken down may still be on its pCPU until its kick lands, writing its
    // old `vcpu_info`: wait until it has left (a continuation after a yield).
    if vcpu != caller && cx.own_vcpu_running(vcpu) {
        return Ok(Ret::AgainAfter(cx.args(), super::context::Next::Yield));
    }
    let dom = cx.me();
    let target = &dom.vcpus[vcpu];
    if target.info_area.is_some() || (vcpu != caller && target.online) {
        return Err(Errno::EINVAL);
    }
    let mfn = Mfn(arg.mfn);
    // It fits in the page at an offset its atomics can live at (checked before the frame
    // is touched); then the frame must be the caller's and held writable.
    let fits = offset
        .checked_add(size_of::<VcpuInfo>())
        .is_some_and(|end| end <= PAGE_SIZE as usize);
    if !fits || !offset.is_multiple_of(align_of::<VcpuInfo>()) {
        return Err(Errno::EINVAL);
    }
    let id = dom.id;
    ft::with(|t, mem| t.hold_for_writes(mem, mfn, id)).map_err(|_| Errno::EINVAL)?;
    let Some(new) = physmem::atomics_at::<VcpuInfo>(mfn, offset) else {
        let _ = ft::with(|t, mem| t.release_writes(mem, mfn, id));
        return Err(Errno::EINVAL);
    };
    // The current contents move along (no other vCPU of the domain runs during this call
    // on one pCPU; with SMP the domain's event lock will cover it).
    let old = offset_of!(SharedInfo, vcpu_info) + vcpu * size_of::<VcpuInfo>();
    physmem::copy(dom.shared_info, old, mfn, offset, size_of::<VcpuInfo>());
    dom.vcpus[vcpu].info_area = Some((mfn, offset));
    dom.vcpus[vcpu].info_view = Some(new);
    // As Xen: everything pending, so that nothing set during the move is lost.
    new.evtchn_pending_sel.store(u64::MAX, Ordering::SeqCst);
    new.evtchn_upcall_pending.store(1, Ordering::SeqCst);
    super::notified(
        id,
        vcpu,
        crate::event::Notify {
            newly_pending: false,
            kick: true,
        },
    );
    log::debug!(
        target: "domain",
        "domain {id}: vCPU {vcpu}'s vcpu_info moved to frame {:#x} offset {offset:#x}",
        mfn.0
    );
    Ok(Ret::Value(0))
}

/// `vcpu`'s run-state accounting as of `now` (all zeros for a vCPU the scheduler does not
/// know, which cannot happen for a vCPU of a live domain).
fn runstate_of(cx: &mut Hc, vcpu: usize, now: u64) -> Runstate {
    let id = VcpuId {
        dom: cx.id(),
        vcpu: vcpu as u32,
    };
    cx.sched().runstate(id, now).unwrap_or_default()
}

/// `VCPUOP_register_runstate_memory_area(vcpu, {addr})` (Xen's rules): the address must be
/// a guest range for the 48 bytes (`EFAULT`, not checked for being mapped: the writes are);
/// 0 unregisters. The accounting is written there at once, and again whenever the vCPU is
/// switched in or out ([`publish_runstate`]), each time through the vCPU's tables as they
/// are then; a write that fails is dropped, as in Xen.
fn register_runstate(cx: &mut Hc, vcpu: usize, now: u64) -> HcResult {
    // `{ uint64_t addr; }` (Xen's `vcpu_register_runstate_memory_area`).
    let addr: u64 = cx.space().read(cx.ptr(2))?;
    if addr != 0 && !super::mem::range_ok(addr, size_of::<v::VcpuRunstateInfo>() as u64) {
        return Err(Errno::EFAULT);
    }
    let r = runstate_of(cx, vcpu, now);
    let dom = cx.me();
    dom.vcpus[vcpu].runstate_area = (addr != 0).then_some(addr);
    write_runstate(dom, vcpu, &r);
    Ok(Ret::Value(0))
}

/// Writes vCPU `v`'s run state to the area it registered, if any (called by the scheduling
/// path when the vCPU is switched out and in, with its domain locked).
pub fn publish_runstate(dom: &mut Domain, v: usize, sched: &Lock<Scheduler>) {
    if dom.vcpus[v].runstate_area.is_none() {
        return;
    }
    let id = VcpuId {
        dom: dom.id,
        vcpu: v as u32,
    };
    let r = sched
        .lock()
        .runstate(id, crate::time::now_ns())
        .unwrap_or_default();
    write_runstate(dom, v, &r);
}

/// The write itself. With `VMASST_TYPE_runstate_update_flag` on, `XEN_RUNSTATE_UPDATE` is set
/// in `state_entry_time` before the rest is written and cleared after, as Xen does, so that a
/// guest reading another vCPU's area can tell a torn copy.
fn write_runstate(dom: &Domain, v: usize, r: &Runstate) {
    use guest_abi::memory::VMASST_TYPE_RUNSTATE_UPDATE_FLAG;
    let Some(addr) = dom.vcpus[v].runstate_area else {
        return;
    };
    let space = AddressSpace {
        l4: dom.vcpus[v].l4,
        dom: dom.id,
    };
    let flag = dom.vm_assist & (1 << VMASST_TYPE_RUNSTATE_UPDATE_FLAG) != 0;
    let entry_at = GuestPtr::<u8>::new(addr.wrapping_add(8));
    if flag {
        let _ = space.write_bytes(entry_at, &(r.entry | UPDATE).to_le_bytes());
        core::sync::atomic::fence(Ordering::Release);
    }
    let _ = space.write_bytes(GuestPtr::new(addr), &r.to_bytes(flag));
    if flag {
        core::sync::atomic::fence(Ordering::Release);
        let _ = space.write_bytes(entry_at, &r.entry.to_le_bytes());
    }
}
