//! Domain control (`domctl`) and system control (`sysctl`): how dom0 creates, builds,
//! runs, inspects and destroys other domains (DESIGN.md §5, §7). dom0 only: any other
//! caller gets `EPERM` (the handlers start by asking the context for the privilege token);
//! a request of another interface version gets `EACCES`, as on Xen.
//!
//! Every domain, dom0 included, stays in the domain map while dom0's trap is handled, so a
//! command names its target by id and finds it there, whoever it is.

use core::mem::offset_of;

use guest_abi::domctl::{self as dc, Payload, XenDomctl};
use guest_abi::errno::Errno;
use guest_abi::selectors::{KERNEL_CS, KERNEL_SS};
use guest_abi::sysctl::{self as sc, XenSysctl};
use guest_abi::trap::{RFLAGS_IF, TrapInfo};
use guest_abi::types::{DOMID_FIRST_RESERVED, DomId};
use guest_abi::vcpu_context::{self as vc, VcpuGuestContext};

use super::World;
use super::context::{Hc, HcResult, Privileged, Ret};
use super::mem::{AddressSpace, GuestPtr};
use crate::domain::{Domain, lifecycle};
use crate::mm::{Mfn, PAGE_SIZE, frames, ft, physmem};
use crate::sched::{Params, VcpuId};

/// Domain `id` of `world`, or `ESRCH`.
fn target(world: &mut World, id: DomId) -> Result<&mut Domain, Errno> {
    world.domains.get_mut(&id).ok_or(Errno::ESRCH)
}

/// `domctl(arg)`.
pub fn domctl(cx: &mut Hc) -> HcResult {
    let token = cx.privileged()?;
    let arg: GuestPtr<XenDomctl> = cx.ptr(0);
    let space = cx.space();
    let mut op = space.read(arg)?;
    if !op.version_matches() {
        return Err(Errno::EACCES);
    }
    let now = crate::time::now_ns();
    let me = cx.id();
    let id = op.domain;
    let args = cx.args();
    // An operation that needs a domain's vCPUs off every pCPU (their registers saved) while
    // some are still on one: their pCPUs were kicked; the call is re-issued after a yield
    // (Xen waits inside `domain_pause`; under one world lock the wait must be outside it).
    let wait = Ok(Ret::AgainAfter(args, super::context::Next::Yield));
    let world = cx.world(&token);
    match op.cmd {
        dc::XEN_DOMCTL_CREATEDOMAIN => {
            let cfg: dc::DomctlCreatedomain = op.payload();
            op.domain = create(&token, world, id, &cfg)?;
        }
        dc::XEN_DOMCTL_DESTROYDOMAIN => {
            if id != me && id != 0 && world.domains.contains_key(&id) && world.domain_running(id) {
                // Stop it everywhere first: nothing of it may be freed under a running vCPU.
                World::kick(world.sched.get_mut().pause_domain(id));
                return wait;
            }
            destroy(&token, world, me, id)?
        }
        dc::XEN_DOMCTL_PAUSEDOMAIN => {
            if id == me {
                return Err(Errno::EINVAL);
            }
            let d = target(world, id)?;
            d.controller_pauses = d.controller_pauses.checked_add(1).ok_or(Errno::EINVAL)?;
            World::kick(world.sched.get_mut().pause_domain(id));
        }
        dc::XEN_DOMCTL_UNPAUSEDOMAIN => {
            let d = target(world, id)?;
            if d.controller_pauses == 0 || d.shutdown.is_some() {
                return Err(Errno::EINVAL);
            }
            d.controller_pauses -= 1;
            World::kick(world.sched.get_mut().unpause_domain(id));
        }
        dc::XEN_DOMCTL_GETDOMAININFO => {
            let d = world.domains.get_mut(&id).ok_or(Errno::ESRCH)?;
            let info = domain_info(d, &*world.sched.get_mut(), now);
            op.set_payload(&info);
        }
        dc::XEN_DOMCTL_MAX_MEM => {
            let m: dc::DomctlMaxMem = op.payload();
            target(world, id)?.max_pages = m.max_memkb / (PAGE_SIZE / 1024);
        }
        dc::XEN_DOMCTL_MAX_VCPUS => {
            let m: dc::DomctlMaxVcpus = op.payload();
            if m.max as usize != target(world, id)?.vcpus.len() {
                return Err(Errno::EINVAL);
            }
        }
        dc::XEN_DOMCTL_SETVCPUCONTEXT => {
            let c: dc::DomctlVcpucontext = op.payload();
            let ctx: VcpuGuestContext = space.read(GuestPtr::new(c.ctxt))?;
            if id == me {
                return Err(Errno::EINVAL);
            }
            // A paused domain's vCPUs may still be leaving their pCPUs (the pause kicked them).
            if target(world, id)?.controller_pauses > 0
                && world.running_on((id, c.vcpu as usize)).is_some()
            {
                return wait;
            }
            let d = target(world, id)?;
            let online = set_vcpu_context(d, c.vcpu, &ctx)?;
            if online {
                World::kick(world.sched.get_mut().unpause(VcpuId {
                    dom: id,
                    vcpu: c.vcpu,
                }));
            }
        }
        dc::XEN_DOMCTL_GETVCPUCONTEXT => {
            let c: dc::DomctlVcpucontext = op.payload();
            // The registers of a vCPU on a pCPU are that pCPU's to save: a paused domain's
            // are waited for; an unpaused domain must be paused first (Xen pauses the vCPU
            // itself, synchronously, which one world lock cannot do).
            // dom0's own vCPUs (the caller's included: its registers are in this trap's
            // frame, not saved) cannot be paused by dom0: `EBUSY` while on a pCPU.
            if world.running_on((id, c.vcpu as usize)).is_some() {
                if id == me || target(world, id)?.controller_pauses == 0 {
                    return Err(Errno::EBUSY);
                }
                return wait;
            }
            let d = target(world, id)?;
            let v = d.vcpus.get(c.vcpu as usize).ok_or(Errno::EINVAL)?;
            write_vcpu_context(&space, GuestPtr::new(c.ctxt), v)?;
        }
        dc::XEN_DOMCTL_GETVCPUINFO => {
            let mut i: dc::DomctlGetvcpuinfo = op.payload();
            let d = target(world, id)?;
            let v = d.vcpus.get(i.vcpu as usize).ok_or(Errno::EINVAL)?;
            let vid = VcpuId {
                dom: id,
                vcpu: i.vcpu,
            };
            i.online = u8::from(v.online);
            i.blocked = u8::from(world.sched.get_mut().is_blocked(vid));
            let on = world.running_on((id, i.vcpu as usize));
            i.running = u8::from(on.is_some());
            i.cpu_time = world.sched.get_mut().runtime(vid, now);
            // Where it runs, or the pCPU whose queue it is on (Xen: `v->processor`).
            i.cpu = on
                .or_else(|| world.sched.get_mut().pcpu_of(vid))
                .unwrap_or(0) as u32;
            op.set_payload(&i);
        }
        dc::XEN_DOMCTL_SETVCPUAFFINITY | dc::XEN_DOMCTL_GETVCPUAFFINITY => {
            let a: dc::DomctlVcpuaffinity = op.payload();
            let set = op.cmd == dc::XEN_DOMCTL_SETVCPUAFFINITY;
            vcpu_affinity(&space, world, id, &a, set)?;
        }
        dc::XEN_DOMCTL_SCHEDULER_OP => {
            let mut s: dc::DomctlSchedulerOp = op.payload();
            if s.sched_id != dc::XEN_SCHEDULER_CREDIT {
                return Err(Errno::EINVAL);
            }
            target(world, id)?;
            let sched = world.sched.get_mut();
            let current = sched.params(id).ok_or(Errno::ESRCH)?;
            match s.cmd {
                dc::XEN_DOMCTL_SCHEDOP_PUTINFO => {
                    let c = s.credit_params();
                    // Weight 0 and cap 0xFFFF mean "unchanged" (libxl's convention).
                    let params = Params {
                        weight: if c.weight == 0 {
                            current.weight
                        } else {
                            u32::from(c.weight)
                        },
                        cap: if c.cap == u16::MAX {
                            current.cap
                        } else {
                            u32::from(c.cap)
                        },
                    };
                    sched.set_params(id, params)?;
                }
                dc::XEN_DOMCTL_SCHEDOP_GETINFO => {
                    s.set_credit_params(dc::DomctlSchedCredit {
                        weight: current.weight as u16,
                        cap: current.cap as u16,
                    });
                    op.set_payload(&s);
                }
                _ => return Err(Errno::EINVAL),
            }
        }
        dc::XEN_DOMCTL_XENIA_WRITE_FRAME => {
            let w: dc::DomctlXeniaWriteFrame = op.payload();
            let end = u64::from(w.offset) + u64::from(w.len);
            if end > PAGE_SIZE {
                return Err(Errno::EINVAL);
            }
            let mut buf = [0u8; PAGE_SIZE as usize];
            let bytes = &mut buf[..w.len as usize];
            space.read_bytes(GuestPtr::new(w.buffer), bytes)?;
            if id == me {
                return Err(Errno::EINVAL);
            }
            target(world, id)?;
            let mfn = Mfn(w.mfn);
            super::mmu::with_writable(id, mfn, || physmem::write(mfn, w.offset as usize, bytes))?;
        }
        dc::XEN_DOMCTL_HYPERCALL_INIT => {
            let h: dc::DomctlHypercallInit = op.payload();
            if id == me {
                return Err(Errno::EINVAL);
            }
            let page = match target(world, id)?.guest_mode {
                crate::domain::GuestMode::Ring1 => guest_abi::hypercall::hypercall_page_image(),
                crate::domain::GuestMode::XenPv => {
                    guest_abi::hypercall::xen_pv_hypercall_page_image()
                }
            };
            let mfn = Mfn(h.gmfn);
            super::mmu::with_writable(id, mfn, || physmem::write(mfn, 0, &page))?;
        }
        dc::XEN_DOMCTL_XENIA_SET_GUEST_MODE => {
            let m: dc::DomctlXeniaGuestMode = op.payload();
            let mode = match m.mode {
                dc::XENIA_GUEST_MODE_RING1 => crate::domain::GuestMode::Ring1,
                dc::XENIA_GUEST_MODE_XEN_PV => crate::domain::GuestMode::XenPv,
                _ => return Err(Errno::EINVAL),
            };
            if m._pad != 0 {
                return Err(Errno::EINVAL);
            }
            let d = target(world, id)?;
            // The mode decides how a context is read and what the vCPU runs with: fixed
            // once any vCPU has one (dom0 itself included).
            // Nor once it has memory: page tables validated in one mode keep that mode's
            // U/S rule (`ft::forced_user`).
            if d.vcpus.iter().any(|v| v.initialised) || d.tot_pages != 0 {
                return Err(Errno::EBUSY);
            }
            d.guest_mode = mode;
            crate::mm::ft::set_forced_user(id, mode == crate::domain::GuestMode::XenPv);
            if mode == crate::domain::GuestMode::XenPv {
                // Every Xen x86-64 PV kernel requires writable page tables (the builder
                // refuses one that does not say so), and Xen turns the assist on for the
                // kernels that require it, as libxc passes it in vCPU 0's context.
                d.vm_assist |= 1 << guest_abi::memory::VMASST_TYPE_WRITABLE_PAGETABLES;
            }
            for v in &mut d.vcpus {
                v.xen_pv = mode == crate::domain::GuestMode::XenPv;
                v.kernel_mode = true;
            }
            log::info!(target: "domain", "domain {id}: guest mode {mode:?}");
        }
        dc::XEN_DOMCTL_XENIA_READ_FRAME => {
            let w: dc::DomctlXeniaWriteFrame = op.payload();
            let end = u64::from(w.offset) + u64::from(w.len);
            if end > PAGE_SIZE || id == me {
                return Err(Errno::EINVAL);
            }
            target(world, id)?;
            let mfn = Mfn(w.mfn);
            ft::with(|t, _| t.get_page(mfn, id))?;
            let mut buf = [0u8; PAGE_SIZE as usize];
            let bytes = &mut buf[..w.len as usize];
            physmem::read(mfn, w.offset as usize, bytes);
            let _ = ft::with(|t, _| t.put_page(mfn));
            space.write_bytes(GuestPtr::new(w.buffer), bytes)?;
        }
        _ => return Err(Errno::ENOSYS),
    }
    space.write(arg, &op)?;
    Ok(Ret::Value(0))
}

/// Bytes of a CPU bitmap that can hold a set bit: the scheduler's masks are 64 bits.
const CPUMAP_BYTES: usize = 8;

/// `nr_bits` of a caller's bitmap, checked: 1 to `XENCTL_BITMAP_MAX_BITS`.
fn cpumap_bits(b: &dc::XenctlBitmap) -> Result<u32, Errno> {
    if b.nr_bits == 0 || b.nr_bits > dc::XENCTL_BITMAP_MAX_BITS {
        return Err(Errno::EINVAL);
    }
    Ok(b.nr_bits)
}

/// The bits of `mask` below `nr_bits`.
fn below(mask: u64, nr_bits: u32) -> u64 {
    if nr_bits >= 64 {
        mask
    } else {
        mask & ((1 << nr_bits) - 1)
    }
}

/// Reads a caller's CPU bitmap (Xen's `xenctl_bitmap_to_cpumask`): its first bytes, up to
/// the 64 pCPUs the scheduler knows; bits at and past `nr_bits` are ignored.
fn read_cpumap(space: &AddressSpace, b: &dc::XenctlBitmap) -> Result<u64, Errno> {
    let bits = cpumap_bits(b)?;
    let mut raw = [0u8; CPUMAP_BYTES];
    let n = (bits as usize).div_ceil(8).min(CPUMAP_BYTES);
    space.read_bytes(GuestPtr::new(b.bitmap), &mut raw[..n])?;
    Ok(below(u64::from_le_bytes(raw), bits))
}

/// Writes `mask` to a caller's CPU bitmap (Xen's `cpumask_to_xenctl_bitmap`): the pCPUs that
/// exist, then zeros up to `nr_bits` rounded up to bytes.
fn write_cpumap(space: &AddressSpace, b: &dc::XenctlBitmap, mask: u64) -> Result<(), Errno> {
    /// Zero bytes written at once.
    const ZERO_CHUNK: usize = 256;
    let bits = cpumap_bits(b)?;
    let total = (bits as usize).div_ceil(8);
    let mask = below(mask & crate::arch::x86_64::smp::online_mask(), bits);
    let head = total.min(CPUMAP_BYTES);
    space.write_bytes(GuestPtr::new(b.bitmap), &mask.to_le_bytes()[..head])?;
    let zeros = [0u8; ZERO_CHUNK];
    let mut at = head;
    while at < total {
        let n = (total - at).min(ZERO_CHUNK);
        let addr = b.bitmap.checked_add(at as u64).ok_or(Errno::EFAULT)?;
        space.write_bytes(GuestPtr::new(addr), &zeros[..n])?;
        at += n;
    }
    Ok(())
}

/// `XEN_DOMCTL_setvcpuaffinity` (`set`) and `getvcpuaffinity` (guest-abi's `domctl` docs have
/// the rules): everything is checked and both bitmaps read before anything changes.
fn vcpu_affinity(
    space: &AddressSpace,
    world: &mut World,
    id: DomId,
    a: &dc::DomctlVcpuaffinity,
    set: bool,
) -> Result<(), Errno> {
    let known = dc::XEN_VCPUAFFINITY_HARD | dc::XEN_VCPUAFFINITY_SOFT | dc::XEN_VCPUAFFINITY_FORCE;
    let hard = a.flags & dc::XEN_VCPUAFFINITY_HARD != 0;
    let soft = a.flags & dc::XEN_VCPUAFFINITY_SOFT != 0;
    if a.flags & !known != 0 || !(hard || soft) {
        return Err(Errno::EINVAL);
    }
    if a.vcpu as usize >= target(world, id)?.vcpus.len() {
        return Err(Errno::EINVAL);
    }
    let vid = VcpuId {
        dom: id,
        vcpu: a.vcpu,
    };
    let (old_hard, old_soft) = world.sched.get_mut().affinity(vid).ok_or(Errno::EINVAL)?;
    if hard {
        cpumap_bits(&a.cpumap_hard)?;
    }
    if soft {
        cpumap_bits(&a.cpumap_soft)?;
    }
    if !set {
        if hard {
            write_cpumap(space, &a.cpumap_hard, old_hard)?;
        }
        if soft {
            write_cpumap(space, &a.cpumap_soft, old_soft)?;
        }
        return Ok(());
    }
    let new_hard = if hard {
        read_cpumap(space, &a.cpumap_hard)?
    } else {
        old_hard
    };
    let new_soft = if soft {
        read_cpumap(space, &a.cpumap_soft)?
    } else {
        old_soft
    };
    if hard {
        World::kick(world.sched.get_mut().set_affinity(vid, new_hard)?);
    }
    world.sched.get_mut().set_soft_affinity(vid, new_soft)?;
    // The effective masks go back, as Xen's `vcpu_affinity_domctl` writes them.
    let online = world.sched.get_mut().online_mask();
    if hard {
        write_cpumap(space, &a.cpumap_hard, new_hard & online)?;
    }
    if soft {
        write_cpumap(space, &a.cpumap_soft, new_soft & new_hard & online)?;
    }
    Ok(())
}

/// `XEN_DOMCTL_createdomain`: a new, paused, empty domain; returns its id.
fn create(
    _: &Privileged,
    world: &mut World,
    wanted: DomId,
    cfg: &dc::DomctlCreatedomain,
) -> Result<DomId, Errno> {
    if cfg.flags & dc::XEN_DOMCTL_CDF_HVM != 0 {
        return Err(Errno::EINVAL);
    }
    let in_use = |d: DomId| world.domains.contains_key(&d);
    let id = if wanted == 0 || wanted >= DOMID_FIRST_RESERVED {
        crate::domain::free_domid(world.last_domid, in_use)?
    } else if in_use(wanted) {
        return Err(Errno::EEXIST);
    } else {
        wanted
    };
    // alloc: dom0 only (domctl), a few bytes, checked against the heap's reserve by create.
    let mut new = lifecycle::create(id, alloc::format!("d{id}"), cfg.max_vcpus)?;
    new.handle = cfg.handle;
    world.last_domid = id;
    // Its grant limits, as its creator asked (Xen's createdomain fields; negative: the
    // default), within the hypervisor's.
    let frames = u32::try_from(cfg.max_grant_frames)
        .map_or(crate::grant::DEFAULT_MAX_FRAMES, |f| {
            f.clamp(1, crate::grant::DEFAULT_MAX_FRAMES)
        });
    let maptrack = u32::try_from(cfg.max_maptrack_frames).map_or(
        crate::grant::DEFAULT_MAX_MAPTRACK_DOMU,
        |f| {
            f.saturating_mul(crate::grant::MAPTRACK_PER_FRAME)
                .min(crate::grant::DEFAULT_MAX_MAPTRACK)
        },
    );
    // No grant-table frame yet: Xen gives every domain INITIAL_NR_GRANT_FRAMES (one frame,
    // and a page of active entries) at creation; Xenia gives a domU its first at its first
    // `GNTTABOP_setup_table`, which every granting kernel calls before it grants anything,
    // so a domain that never grants costs the hypervisor 16 KiB less (issue 13's density).
    new.grants = crate::grant::GrantTable::new(id, frames, maptrack);
    let s = world.sched.get_mut();
    let added = s
        .add_domain(id, cfg.max_vcpus, Params::default())
        .and_then(|()| {
            // Spread over the pCPUs from the start; load balancing moves them after.
            let nr = s.nr_pcpus().max(1);
            (0..cfg.max_vcpus)
                .try_for_each(|v| s.add_vcpu(VcpuId { dom: id, vcpu: v }, v as usize % nr))
        });
    if let Err(e) = added {
        // Nothing of the domain may outlive the failure: its frames are held.
        let _ = s.remove_domain(id);
        super::grant_op::release_frames(&mut new);
        let _ = lifecycle::release(&mut new);
        return Err(e);
    }
    // The controller's pause a new domain starts with (`controller_pauses` is 1).
    let _ = s.pause_domain(id);
    log::info!(target: "domain", "domain {id} created ({} vCPUs)", cfg.max_vcpus);
    world.domains.insert(id, new); // alloc: dom0 only; one map node per domain
    Ok(id)
}

/// `XEN_DOMCTL_destroydomain`: everything the domain holds goes back.
fn destroy(_: &Privileged, world: &mut World, caller: DomId, id: DomId) -> Result<(), Errno> {
    if id == caller || id == 0 {
        return Err(Errno::EINVAL);
    }
    // Out of the map for its teardown: it is no one's to find any more.
    let mut victim = world.domains.remove(&id).ok_or(Errno::ESRCH)?;
    // Nothing of it runs anywhere (the caller waited for that): its pCPUs have nothing
    // to drop.
    let _ = world.sched.get_mut().remove_domain(id);
    super::forget_entry_stacks(id);
    // Grants: mappings it holds and mappings others hold of its grants go first.
    super::grant_op::release(&mut victim, &mut world.domains);
    // Event channels: the other ends become unbound again.
    if let Ok(peers) = victim.events.destroy(id) {
        for p in peers {
            if let Some(peer) = world.domains.get_mut(&p.remote_dom) {
                let _ = peer.events.unbind_peer(p.remote_port, id, p.local_port);
            }
        }
    }
    match lifecycle::release(&mut victim) {
        Ok(()) => {
            log::info!(target: "domain", "domain {id} destroyed");
            Ok(())
        }
        Err(e) => {
            victim
                .shutdown
                .get_or_insert(crate::domain::Shutdown::Crash);
            world.domains.insert(id, victim); // alloc: dom0 only; the node just freed
            Err(e)
        }
    }
}

/// `getdomaininfo` for `d`.
fn domain_info(d: &Domain, sched: &crate::sched::Scheduler, now: u64) -> dc::DomctlGetdomaininfo {
    let mut flags = 0;
    if let Some(reason) = d.shutdown {
        flags |= dc::XEN_DOMINF_SHUTDOWN | (reason.code() << dc::XEN_DOMINF_SHUTDOWNSHIFT);
    }
    if d.controller_pauses > 0 {
        flags |= dc::XEN_DOMINF_PAUSED;
    }
    let online: u32 = d.vcpus.iter().filter(|v| v.online).count() as u32;
    let blocked = |v: usize| {
        sched.is_blocked(VcpuId {
            dom: d.id,
            vcpu: v as u32,
        })
    };
    if online > 0
        && (0..d.vcpus.len())
            .filter(|&v| d.vcpus[v].online)
            .all(blocked)
    {
        flags |= dc::XEN_DOMINF_BLOCKED;
    } else if online > 0 && d.shutdown.is_none() && d.controller_pauses == 0 {
        flags |= dc::XEN_DOMINF_RUNNING;
    }
    dc::DomctlGetdomaininfo {
        domain: d.id,
        flags,
        handle: d.handle,
        tot_pages: d.tot_pages,
        max_pages: d.max_pages,
        shared_info_frame: d.shared_info.0,
        cpu_time: sched.domain_runtime(d.id, now),
        nr_online_vcpus: online,
        max_vcpu_id: (d.vcpus.len() as u32).wrapping_sub(1),
        ..Default::default()
    }
}

/// `XEN_DOMCTL_setvcpucontext`: only while the domain is paused (`EBUSY` otherwise), then
/// [`install_vcpu_context`]. Returns whether the vCPU came online with it.
fn set_vcpu_context(d: &mut Domain, vcpu: u32, ctx: &VcpuGuestContext) -> Result<bool, Errno> {
    if d.controller_pauses == 0 {
        return Err(Errno::EBUSY);
    }
    install_vcpu_context(d, vcpu, ctx)
}

/// Checks a whole vCPU context, then installs it in vCPU `vcpu` of `d` and marks it
/// initialised: the one validation behind both `XEN_DOMCTL_setvcpucontext` (dom0, on a
/// paused domain) and `VCPUOP_initialise` (a guest, on its own vCPU that was never
/// initialised). `EINVAL` for a vCPU the domain does not have or any field Xenia cannot
/// honour; the new root's type reference is taken through the frame table (its errno).
/// Returns whether the vCPU came online with it (`VGCF_online`, newly): the caller
/// unpauses it in the scheduler.
pub fn install_vcpu_context(
    d: &mut Domain,
    vcpu: u32,
    ctx: &VcpuGuestContext,
) -> Result<bool, Errno> {
    if d.guest_mode == crate::domain::GuestMode::XenPv {
        return super::xenpv::install_context(d, vcpu, ctx);
    }
    if vcpu as usize >= d.vcpus.len() {
        return Err(Errno::EINVAL);
    }
    let r = &ctx.user_regs;
    let refused = vc::VGCF_I387_VALID | guest_abi::trap::VGCF_IN_SYSCALL;
    let entry_point_ok = |a: u64| a == 0 || super::mem::range_ok(a, 1);
    if ctx.flags & vc::VGCF_IN_KERNEL == 0
        || ctx.flags & refused != 0
        || ctx.ldt_base != 0
        || ctx.ldt_ents != 0
        || ctx.gdt_ents != 0
        || ctx.gdt_frames.iter().any(|f| *f != 0)
        || ctx.ctrlreg[1] != 0
        || ctx.vm_assist != 0
        || ctx.gs_base_kernel != 0
        || r.cs != KERNEL_CS
        || r.ss != KERNEL_SS
        || !super::mem::is_canonical(r.rip)
        || !super::mem::is_canonical(r.rsp)
        || ctx.kernel_ss != u64::from(KERNEL_SS) && ctx.kernel_ss != 0
        || (ctx.kernel_sp != 0 && !super::hypercall::kernel_stack_ok(ctx.kernel_sp))
        || !entry_point_ok(ctx.event_callback_eip)
        || !entry_point_ok(ctx.failsafe_callback_eip)
        || !entry_point_ok(ctx.syscall_callback_eip)
        || !super::mem::is_canonical(ctx.fs_base)
        || !super::mem::is_canonical(ctx.gs_base_user)
        || ctx
            .trap_ctxt
            .iter()
            .any(|t: &TrapInfo| !t.is_end() && (t.cs != KERNEL_CS || !entry_point_ok(t.address)))
    {
        return Err(Errno::EINVAL);
    }
    // The trap table's new entries (NMI, #DF and #MC belong to the hypervisor), with room
    // for them made before anything changes.
    let mut traps = [TrapInfo::END; 256];
    let mut nr_traps = 0;
    for t in ctx.trap_ctxt.iter().filter(|t| !t.is_end()) {
        if !matches!(t.vector, 2 | 8 | 18) {
            traps[nr_traps] = *t;
            nr_traps += 1;
        }
    }
    let traps = &traps[..nr_traps];
    d.vcpus[vcpu as usize]
        .traps
        .reserve_for(traps)
        .map_err(|_| Errno::ENOMEM)?;
    let l4 = Mfn(ctx.l4_mfn().0);
    let old = d.vcpus[vcpu as usize].l4;
    ft::with(|t, mem| t.set_base(mem, d.id, (old != Mfn(0)).then_some(old), l4))?;
    let v = &mut d.vcpus[vcpu as usize];
    v.l4 = l4;
    let f = &mut v.regs;
    (f.r15, f.r14, f.r13, f.r12, f.rbp, f.rbx) = (r.r15, r.r14, r.r13, r.r12, r.rbp, r.rbx);
    (f.r11, f.r10, f.r9, f.r8, f.rax, f.rcx) = (r.r11, r.r10, r.r9, r.r8, r.rax, r.rcx);
    (f.rdx, f.rsi, f.rdi) = (r.rdx, r.rsi, r.rdi);
    f.rip = r.rip;
    f.rsp = r.rsp;
    f.cs = u64::from(KERNEL_CS);
    f.ss = u64::from(KERNEL_SS);
    f.rflags = (r.rflags & !(3 << 12)) | RFLAGS_IF | 2;
    v.kernel_sp = ctx.kernel_sp;
    v.callbacks.event = ctx.event_callback_eip;
    v.callbacks.failsafe = ctx.failsafe_callback_eip;
    v.callbacks.syscall = ctx.syscall_callback_eip;
    v.callbacks.syscall_masks_events = ctx.flags & vc::VGCF_SYSCALL_DISABLES_EVENTS != 0;
    // Cannot fail: room was made above.
    v.traps.set_all(traps).map_err(|_| Errno::ENOMEM)?;
    v.fs_base = ctx.fs_base;
    v.gs_base = ctx.gs_base_user;
    let online = ctx.flags & vc::VGCF_ONLINE != 0;
    let newly_online = online && !v.online;
    v.online |= online;
    v.initialised = true;
    d.vcpu_info(vcpu as usize)
        .evtchn_upcall_mask
        .store(1, core::sync::atomic::Ordering::Release);
    Ok(newly_online)
}

/// `XEN_DOMCTL_getvcpucontext`: the registers and settings Xenia keeps, in Xen's layout
/// (other fields zero).
fn write_vcpu_context(
    space: &AddressSpace,
    at: GuestPtr<VcpuGuestContext>,
    v: &crate::domain::Vcpu,
) -> Result<(), Errno> {
    let mut regs = vc::CpuUserRegs::default();
    let f = &v.regs;
    (regs.r15, regs.r14, regs.r13, regs.r12, regs.rbp, regs.rbx) =
        (f.r15, f.r14, f.r13, f.r12, f.rbp, f.rbx);
    (regs.r11, regs.r10, regs.r9, regs.r8, regs.rax, regs.rcx) =
        (f.r11, f.r10, f.r9, f.r8, f.rax, f.rcx);
    (regs.rdx, regs.rsi, regs.rdi) = (f.rdx, f.rsi, f.rdi);
    regs.rip = f.rip;
    regs.rsp = f.rsp;
    regs.rflags = f.rflags;
    regs.cs = f.cs as u16;
    regs.ss = f.ss as u16;
    space.write_bytes(
        at.field(0),
        &[0u8; core::mem::size_of::<VcpuGuestContext>()],
    )?;
    // A Xen PV vCPU in user mode is reported as Xen does: without `VGCF_in_kernel`.
    let mut flags = if v.xen_pv && !v.kernel_mode {
        0
    } else {
        vc::VGCF_IN_KERNEL
    };
    if v.online {
        flags |= vc::VGCF_ONLINE;
    }
    space.write(at.field(offset_of!(VcpuGuestContext, flags)), &flags)?;
    space.write(at.field(offset_of!(VcpuGuestContext, user_regs)), &regs)?;
    // Xen PV mode: the flat kernel SS, both GS bases (the live one is the current mode's)
    // and the user table in `ctrlreg[1]`.
    let (kernel_ss, gs_kernel, gs_user, user_cr3) = if v.xen_pv {
        let (k, u) = if v.kernel_mode {
            (v.gs_base, v.gs_base_other)
        } else {
            (v.gs_base_other, v.gs_base)
        };
        let user_cr3 = if v.user_l4 == Mfn(0) {
            0
        } else {
            vc::xen_pfn_to_cr3(v.user_l4.0)
        };
        (guest_abi::selectors::FLAT_KERNEL_SS64, k, u, user_cr3)
    } else {
        (KERNEL_SS, 0, v.gs_base, 0)
    };
    let words = [
        (
            offset_of!(VcpuGuestContext, kernel_ss),
            u64::from(kernel_ss),
        ),
        (offset_of!(VcpuGuestContext, ctrlreg) + 8, user_cr3),
        (offset_of!(VcpuGuestContext, gs_base_kernel), gs_kernel),
        (offset_of!(VcpuGuestContext, kernel_sp), v.kernel_sp),
        (
            offset_of!(VcpuGuestContext, ctrlreg) + 3 * 8,
            vc::xen_pfn_to_cr3(v.l4.0),
        ),
        (
            offset_of!(VcpuGuestContext, event_callback_eip),
            v.callbacks.event,
        ),
        (
            offset_of!(VcpuGuestContext, failsafe_callback_eip),
            v.callbacks.failsafe,
        ),
        (
            offset_of!(VcpuGuestContext, syscall_callback_eip),
            v.callbacks.syscall,
        ),
        (offset_of!(VcpuGuestContext, fs_base), v.fs_base),
        (offset_of!(VcpuGuestContext, gs_base_user), gs_user),
    ];
    for (offset, value) in words {
        space.write(at.field::<u64>(offset), &value)?;
    }
    Ok(())
}

/// `sysctl(arg)`.
pub fn sysctl(cx: &mut Hc) -> HcResult {
    let token = cx.privileged()?;
    let arg: GuestPtr<XenSysctl> = cx.ptr(0);
    let space = cx.space();
    let mut op = space.read(arg)?;
    if !op.version_matches() {
        return Err(Errno::EACCES);
    }
    let now = crate::time::now_ns();
    let world = cx.world(&token);
    match op.cmd {
        sc::XEN_SYSCTL_READCONSOLE => {
            let mut r: sc::SysctlReadconsole = op.payload();
            // alloc: dom0 only (sysctl), at most 64 KiB, within the heap's reserve.
            let mut buf = alloc::vec![0u8; (r.count as usize).min(64 * 1024)];
            let from = if r.incremental != 0 {
                u64::from(r.index)
            } else {
                0
            };
            let (copied, next) = crate::console::read_log(from, &mut buf);
            space.write_bytes(GuestPtr::new(r.buffer), &buf[..copied])?;
            if r.clear != 0 {
                // Xen's `clear`: the ring is emptied once the copy is made.
                crate::console::clear_log();
            }
            r.count = copied as u32;
            r.index = next as u32;
            op.set_payload(&r);
        }
        sc::XEN_SYSCTL_PHYSINFO => {
            let (ids, n) = crate::arch::x86_64::smp::online_apic_ids();
            let topology =
                xenia_core::topology::count(&ids[..n], crate::arch::x86_64::cpu::topology_shifts());
            let info = sc::SysctlPhysinfo {
                threads_per_core: topology.threads_per_core,
                cores_per_socket: topology.cores_per_socket,
                // Xen's `num_online_cpus()`: CPUs taken offline do not count.
                nr_cpus: world.sched.get_mut().online_mask().count_ones(),
                max_cpu_id: crate::arch::x86_64::smp::max_online_index(),
                nr_nodes: 1,
                max_node_id: 0,
                cpu_khz: (crate::time::tsc_hz() / 1000) as u32,
                capabilities: sc::XEN_SYSCTL_PHYSCAP_PV | sc::XEN_SYSCTL_PHYSCAP_GNTTAB_V1,
                total_pages: frames::total_count(),
                free_pages: frames::free_count(),
                max_mfn: ft::with(|t, _| t.len()).saturating_sub(1),
                ..Default::default()
            };
            op.set_payload(&info);
        }
        sc::XEN_SYSCTL_GETDOMAININFOLIST => {
            let mut l: sc::SysctlGetdomaininfolist = op.payload();
            let record = core::mem::size_of::<dc::DomctlGetdomaininfo>() as u64;
            let mut n = 0u32;
            // The map is ordered by id: the list comes out sorted.
            for d in world.domains.range_mut(l.first_domain..) {
                if n >= l.max_domains {
                    break;
                }
                let mut bytes = [0u8; 112];
                domain_info(d.1, &*world.sched.get_mut(), now).encode_prefix(&mut bytes);
                space.write_bytes(
                    GuestPtr::new(l.buffer + u64::from(n) * record),
                    &bytes[..record as usize],
                )?;
                n += 1;
            }
            l.num_domains = n;
            op.set_payload(&l);
        }
        sc::XEN_SYSCTL_GETCPUINFO => {
            let mut g: sc::SysctlGetcpuinfo = op.payload();
            g.nr_cpus = getcpuinfo(&space, &g, now)?;
            op.set_payload(&g);
        }
        sc::XEN_SYSCTL_XENIA_HEAP_INFO => {
            let mut h: sc::SysctlXeniaHeapInfo = op.payload();
            (h.charged, h.limit) = if h.domid == guest_abi::types::DOMID_INVALID {
                (0, 0)
            } else {
                let d = world.domains.get_mut(&h.domid).ok_or(Errno::ESRCH)?;
                (d.charged(), d.charge_limit())
            };
            h.heap_total = crate::mm::heap::size() as u64;
            h.heap_used = crate::mm::heap::used() as u64;
            op.set_payload(&h);
        }
        sc::XEN_SYSCTL_PAGE_OFFLINE_OP => {
            let p: sc::SysctlPageOfflineOp = op.payload();
            // Nothing is written back: Xen copies only the status array.
            return page_offline(&space, &p).map(|()| Ret::Value(0));
        }
        sc::XEN_SYSCTL_CPU_HOTPLUG => {
            let h: sc::SysctlCpuHotplug = op.payload();
            let done = cpu_hotplug(world, &h)?;
            if !done {
                // The pCPU still holds a vCPU's registers: it was kicked; ask again after a
                // yield (as destroy waits for a domain's vCPUs).
                return Ok(Ret::AgainAfter(cx.args(), super::context::Next::Yield));
            }
            // Nothing is written back: the argument is IN only.
            return Ok(Ret::Value(0));
        }
        sc::XEN_SYSCTL_XENIA_MEM_OFFLINE_INFO => {
            let (offlined, pending) = ft::offline_counts();
            op.set_payload(&sc::SysctlXeniaMemOfflineInfo { offlined, pending });
        }
        sc::XEN_SYSCTL_DEBUG_KEYS => {
            let k: sc::SysctlDebugKeys = op.payload();
            if k.nr_keys > sc::DEBUG_KEYS_MAX {
                return Err(Errno::EINVAL);
            }
            let mut keys = [0u8; sc::DEBUG_KEYS_MAX as usize];
            let keys = &mut keys[..k.nr_keys as usize];
            space.read_bytes(GuestPtr::new(k.keys), keys)?;
            for &key in keys.iter() {
                world.debug_key(key);
            }
            // Nothing is written back: the argument is IN only.
            return Ok(Ret::Value(0));
        }
        sc::XEN_SYSCTL_SCHEDULER_OP => {
            let mut s: sc::SysctlSchedulerOp = op.payload();
            scheduler_op(&mut s)?;
            op.set_payload(&s);
        }
        _ => return Err(Errno::ENOSYS),
    }
    space.write(arg, &op)?;
    Ok(Ret::Value(0))
}

/// `XEN_SYSCTL_getcpuinfo` (guest-abi's `SysctlGetcpuinfo` has the rules): each pCPU's
/// idle time up to `now` into the caller's array, for indexes up to the highest online one
/// (Xen's `nr_cpu_ids`; an index never started reads 0); how many records were written.
fn getcpuinfo(space: &AddressSpace, g: &sc::SysctlGetcpuinfo, now: u64) -> Result<u32, Errno> {
    use crate::arch::x86_64::{percpu, smp};
    let n = g.max_cpus.min(smp::max_online_index() + 1);
    let record = core::mem::size_of::<sc::SysctlCpuinfo>() as u64;
    for i in 0..n {
        let idle = percpu::of(i as usize).map_or(0, |c| c.idle_ns(now));
        let at = u64::from(i)
            .checked_mul(record)
            .and_then(|o| g.info.checked_add(o))
            .ok_or(Errno::EFAULT)?;
        space.write(GuestPtr::<u64>::new(at), &idle)?;
    }
    Ok(n)
}

/// `XEN_SYSCTL_scheduler_op` (guest-abi's `SysctlSchedulerOp` has the rules): the one
/// cpupool's credit parameters, read only.
fn scheduler_op(s: &mut sc::SysctlSchedulerOp) -> Result<(), Errno> {
    /// Xenia's only cpupool (xl's `Pool-0`).
    const POOL_0: u32 = 0;
    if s.cpupool_id != POOL_0 {
        return Err(Errno::ESRCH);
    }
    if s.sched_id != dc::XEN_SCHEDULER_CREDIT {
        return Err(Errno::EINVAL);
    }
    match s.cmd {
        sc::XEN_SYSCTL_SCHEDOP_GETINFO => {
            s.tslice_ms = (xenia_core::sched::TSLICE_NS / 1_000_000) as u32;
            // Neither a context-switch rate limit nor a migration delay exists in Xenia's
            // credit scheduler (xenia_core::sched, "Not provided"): both are off.
            s.ratelimit_us = 0;
            s.vcpu_migr_delay_us = 0;
            Ok(())
        }
        sc::XEN_SYSCTL_SCHEDOP_PUTINFO => Err(Errno::EOPNOTSUPP),
        _ => Err(Errno::EINVAL),
    }
}

/// `XEN_SYSCTL_cpu_hotplug` (guest-abi's `XEN_SYSCTL_CPU_HOTPLUG` has the rules). Returns
/// whether it is done: an offline returns `false` while the pCPU still holds a vCPU (it was
/// kicked and moves it away at its next `schedule`), and the caller asks again;
/// `World::cpus_draining` tells a repeated call from a new one.
fn cpu_hotplug(world: &mut World, h: &sc::SysctlCpuHotplug) -> Result<bool, Errno> {
    use crate::arch::x86_64::{percpu, smp};
    let n = h.cpu as usize;
    if n >= smp::MAX_CPUS || smp::online_mask() & (1 << n) == 0 {
        return Err(Errno::EINVAL);
    }
    let bit = 1u64 << n;
    let holds_vcpu = || percpu::of(n).is_some_and(|c| c.current().is_some());
    match h.op {
        sc::XEN_SYSCTL_CPU_HOTPLUG_OFFLINE => {
            if world.cpus_draining & bit != 0 {
                if holds_vcpu() {
                    World::kick([n]);
                    return Ok(false);
                }
                world.cpus_draining &= !bit;
                log::info!(target: "sched", "cpu {n} offline");
                return Ok(true);
            }
            if !world.sched.get_mut().is_pcpu_online(n) {
                return Err(Errno::EINVAL);
            }
            if n == 0 {
                log::warn!(
                    target: "sched",
                    "cpu 0 stays online: it is the boot CPU, which polls the console"
                );
                return Err(Errno::EBUSY);
            }
            if world.sched.get_mut().online_mask() == bit {
                log::warn!(target: "sched", "cpu {n} stays online: it is the last one");
                return Err(Errno::EBUSY);
            }
            let out = world.sched.get_mut().set_pcpu_online(n, false)?;
            for v in &out.broken {
                // Xen's words (`cpu_disable_scheduler`).
                log::warn!(target: "sched", "Breaking affinity for d{}v{}", v.dom, v.vcpu);
            }
            World::kick(out.kick);
            // Its vCPUs' timers are homed elsewhere now: the next trap's timer walk finds
            // them their new homes (the pCPU going away will not fire for them).
            super::timers_moved();
            if holds_vcpu() {
                world.cpus_draining |= bit;
                return Ok(false);
            }
            log::info!(target: "sched", "cpu {n} offline");
            Ok(true)
        }
        sc::XEN_SYSCTL_CPU_HOTPLUG_ONLINE => {
            let out = world.sched.get_mut().set_pcpu_online(n, true)?;
            world.cpus_draining &= !bit;
            World::kick(out.kick);
            log::info!(target: "sched", "cpu {n} online");
            Ok(true)
        }
        _ => Err(Errno::EINVAL),
    }
}

/// `XEN_SYSCTL_page_offline_op` (guest-abi `SysctlPageOfflineOp` has the rules): validates
/// the range and command, fills the status array with `PG_OFFLINE_INVALID` (which also
/// finds an unwritable array before any frame changes), then applies the command frame by
/// frame, writing each status as it goes. Stops at the first error, as Xen does. The frame
/// table's lock is never held across a write to the caller.
fn page_offline(space: &AddressSpace, p: &sc::SysctlPageOfflineOp) -> Result<(), Errno> {
    const STATUS_BYTES: u64 = core::mem::size_of::<u32>() as u64;
    /// Status words written at once while filling the array.
    const FILL_CHUNK: usize = 256;
    if p.end < p.start {
        return Err(Errno::EINVAL);
    }
    let frames = u64::from(p.end - p.start) + 1;
    if frames > u64::from(sc::PAGE_OFFLINE_MAX_FRAMES) {
        return Err(Errno::EINVAL);
    }
    if !matches!(
        p.cmd,
        sc::SYSCTL_PAGE_OFFLINE | sc::SYSCTL_PAGE_ONLINE | sc::SYSCTL_QUERY_PAGE_OFFLINE
    ) {
        return Err(Errno::EINVAL);
    }
    let at = |i: u64| p.status.checked_add(i * STATUS_BYTES).ok_or(Errno::EFAULT);
    let mut fill = [0u8; FILL_CHUNK * 4];
    for w in fill.chunks_exact_mut(4) {
        w.copy_from_slice(&sc::PG_OFFLINE_INVALID.to_le_bytes());
    }
    let mut done = 0u64;
    while done < frames {
        let n = (frames - done).min(FILL_CHUNK as u64);
        space.write_bytes(GuestPtr::new(at(done)?), &fill[..n as usize * 4])?;
        done += n;
    }
    for i in 0..frames {
        let mfn = Mfn(u64::from(p.start) + i);
        let (status, result) = match p.cmd {
            sc::SYSCTL_PAGE_OFFLINE => match ft::offline(mfn) {
                Ok(s) => (Some(s), Ok(())),
                Err((e, 0)) => (None, Err(e)),
                Err((e, s)) => (Some(s), Err(e)),
            },
            sc::SYSCTL_PAGE_ONLINE => match ft::online(mfn) {
                Ok(s) => (Some(s), Ok(())),
                Err(e) => (None, Err(e)),
            },
            _ => match ft::query_offline(mfn) {
                Ok(s) => (Some(s), Ok(())),
                Err(e) => (None, Err(e)),
            },
        };
        if let Some(s) = status {
            space.write(GuestPtr::<u32>::new(at(i)?), &s)?;
        }
        result?;
    }
    Ok(())
}
