//! Domain control (`domctl`) and system control (`sysctl`): how dom0 creates, builds,
//! runs, inspects and destroys other domains (DESIGN.md §5, §7). dom0 only: any other
//! caller gets `EPERM`; a request of another interface version gets `EACCES`, as on Xen.
//!
//! The calling domain is out of the domain map while its trap is handled (`guest::trap`),
//! so a command naming it works on `dom`, and any other domain is looked up in the map.

use alloc::collections::BTreeMap;
use core::mem::offset_of;

use guest_abi::domctl::{self as dc, Payload, XenDomctl};
use guest_abi::errno::Errno;
use guest_abi::selectors::{KERNEL_CS, KERNEL_SS};
use guest_abi::sysctl::{self as sc, XenSysctl};
use guest_abi::trap::{RFLAGS_IF, TrapInfo};
use guest_abi::types::{DOMID_FIRST_RESERVED, DomId};
use guest_abi::vcpu_context::{self as vc, VcpuGuestContext};

use super::mem::{AsBytes, Pod};
use super::{World, aspace};
use crate::domain::{Domain, lifecycle};
use crate::mm::{Mfn, PAGE_SIZE, frames, ft};
use crate::sched::{Params, VcpuId};

type Domains = BTreeMap<DomId, Domain>;

/// The domain `id`: the caller itself or one in `others`.
fn target<'a>(
    dom: &'a mut Domain,
    others: &'a mut Domains,
    id: DomId,
) -> Result<&'a mut Domain, Errno> {
    if id == dom.id {
        Ok(dom)
    } else {
        others.get_mut(&id).ok_or(Errno::ESRCH)
    }
}

/// `domctl(arg)`.
pub fn domctl(dom: &mut Domain, world: &mut World, arg: u64) -> Result<u64, Errno> {
    if !dom.privileged {
        return Err(Errno::EPERM);
    }
    let space = aspace(dom);
    let mut op: XenDomctl = space.read_pod(arg)?;
    if !op.version_matches() {
        return Err(Errno::EACCES);
    }
    let now = crate::time::now_ns();
    let id = op.domain;
    match op.cmd {
        dc::XEN_DOMCTL_CREATEDOMAIN => {
            let cfg: dc::DomctlCreatedomain = op.payload();
            op.domain = create(dom, world, id, &cfg)?;
        }
        dc::XEN_DOMCTL_DESTROYDOMAIN => destroy(dom, world, id)?,
        dc::XEN_DOMCTL_PAUSEDOMAIN => {
            if id == dom.id {
                return Err(Errno::EINVAL);
            }
            let d = target(dom, &mut world.domains, id)?;
            d.paused = d.paused.checked_add(1).ok_or(Errno::EINVAL)?;
            if let Some(s) = world.sched.as_mut() {
                let _ = s.pause_domain(id);
            }
        }
        dc::XEN_DOMCTL_UNPAUSEDOMAIN => {
            let d = target(dom, &mut world.domains, id)?;
            if d.paused == 0 || d.shutdown.is_some() {
                return Err(Errno::EINVAL);
            }
            d.paused -= 1;
            if let Some(s) = world.sched.as_mut() {
                let _ = s.unpause_domain(id);
            }
        }
        dc::XEN_DOMCTL_GETDOMAININFO => {
            let info = domain_info(
                target(dom, &mut world.domains, id)?,
                world.sched.as_ref(),
                now,
            );
            op.set_payload(&info);
        }
        dc::XEN_DOMCTL_MAX_MEM => {
            let m: dc::DomctlMaxMem = op.payload();
            target(dom, &mut world.domains, id)?.max_pages = m.max_memkb / (PAGE_SIZE / 1024);
        }
        dc::XEN_DOMCTL_MAX_VCPUS => {
            let m: dc::DomctlMaxVcpus = op.payload();
            if m.max as usize != target(dom, &mut world.domains, id)?.vcpus.len() {
                return Err(Errno::EINVAL);
            }
        }
        dc::XEN_DOMCTL_SETVCPUCONTEXT => {
            let c: dc::DomctlVcpucontext = op.payload();
            let ctx: VcpuGuestContext = space.read_pod(c.ctxt)?;
            if id == dom.id {
                return Err(Errno::EINVAL);
            }
            let d = world.domains.get_mut(&id).ok_or(Errno::ESRCH)?;
            let online = set_vcpu_context(d, c.vcpu, &ctx)?;
            if online && let Some(s) = world.sched.as_mut() {
                let _ = s.unpause(VcpuId {
                    dom: id,
                    vcpu: c.vcpu,
                });
            }
        }
        dc::XEN_DOMCTL_GETVCPUCONTEXT => {
            let c: dc::DomctlVcpucontext = op.payload();
            let d = target(dom, &mut world.domains, id)?;
            let v = d.vcpus.get(c.vcpu as usize).ok_or(Errno::EINVAL)?;
            write_vcpu_context(&space, c.ctxt, v)?;
        }
        dc::XEN_DOMCTL_GETVCPUINFO => {
            let mut i: dc::DomctlGetvcpuinfo = op.payload();
            let running = world.current;
            let d = target(dom, &mut world.domains, id)?;
            let v = d.vcpus.get(i.vcpu as usize).ok_or(Errno::EINVAL)?;
            i.online = u8::from(v.online);
            i.blocked = u8::from(v.blocked);
            i.running = u8::from(running == Some((id, i.vcpu as usize)));
            i.cpu_time = world.sched.as_ref().map_or(0, |s| {
                s.runtime(
                    VcpuId {
                        dom: id,
                        vcpu: i.vcpu,
                    },
                    now,
                )
            });
            i.cpu = 0;
            op.set_payload(&i);
        }
        dc::XEN_DOMCTL_SCHEDULER_OP => {
            let mut s: dc::DomctlSchedulerOp = op.payload();
            if s.sched_id != dc::XEN_SCHEDULER_CREDIT {
                return Err(Errno::EINVAL);
            }
            target(dom, &mut world.domains, id)?;
            let sched = world.sched.as_mut().ok_or(Errno::ENOSYS)?;
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
            space.read(w.buffer, bytes)?;
            if id == dom.id {
                return Err(Errno::EINVAL);
            }
            world.domains.get(&id).ok_or(Errno::ESRCH)?;
            super::mmu::with_writable(id, Mfn(w.mfn), |frame| {
                frame[w.offset as usize..end as usize].copy_from_slice(bytes);
            })?;
        }
        dc::XEN_DOMCTL_XENIA_READ_FRAME => {
            let w: dc::DomctlXeniaWriteFrame = op.payload();
            let end = u64::from(w.offset) + u64::from(w.len);
            if end > PAGE_SIZE || id == dom.id {
                return Err(Errno::EINVAL);
            }
            world.domains.get(&id).ok_or(Errno::ESRCH)?;
            let mfn = Mfn(w.mfn);
            ft::with(|t, _| t.get_page(mfn, id))?;
            let mut buf = [0u8; PAGE_SIZE as usize];
            let bytes = &mut buf[..w.len as usize];
            bytes.copy_from_slice(&super::mmu::frame_bytes(mfn)[w.offset as usize..end as usize]);
            let _ = ft::with(|t, _| t.put_page(mfn));
            space.write(w.buffer, bytes)?;
        }
        _ => return Err(Errno::ENOSYS),
    }
    space.write_pod(arg, &op)?;
    Ok(0)
}

/// `XEN_DOMCTL_createdomain`: a new, paused, empty domain; returns its id.
fn create(
    dom: &Domain,
    world: &mut World,
    wanted: DomId,
    cfg: &dc::DomctlCreatedomain,
) -> Result<DomId, Errno> {
    if cfg.flags & dc::XEN_DOMCTL_CDF_HVM != 0 {
        return Err(Errno::EINVAL);
    }
    let in_use = |d: DomId| d == dom.id || world.domains.contains_key(&d);
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
    new.grants = crate::grant::GrantTable::new(id, frames, maptrack);
    // One grant-table frame from the start, as Xen's INITIAL_NR_GRANT_FRAMES.
    if super::grant_op::grow(&mut new, 1).is_err() {
        let _ = lifecycle::release(&mut new);
        return Err(Errno::ENOMEM);
    }
    if let Some(s) = world.sched.as_mut() {
        let added = s
            .add_domain(id, cfg.max_vcpus, Params::default())
            .and_then(|()| {
                (0..cfg.max_vcpus).try_for_each(|v| s.add_vcpu(VcpuId { dom: id, vcpu: v }, 0))
            });
        if let Err(e) = added {
            // Nothing of the domain may outlive the failure: its frames are held.
            let _ = s.remove_domain(id);
            super::grant_op::release_frames(&mut new);
            let _ = lifecycle::release(&mut new);
            return Err(e);
        }
        let _ = s.pause_domain(id);
    }
    log::info!(target: "domain", "domain {id} created ({} vCPUs)", cfg.max_vcpus);
    world.domains.insert(id, new); // alloc: dom0 only; one map node per domain
    Ok(id)
}

/// `XEN_DOMCTL_destroydomain`: everything the domain holds goes back.
fn destroy(dom: &mut Domain, world: &mut World, id: DomId) -> Result<(), Errno> {
    if id == dom.id || id == 0 {
        return Err(Errno::EINVAL);
    }
    let mut victim = world.domains.remove(&id).ok_or(Errno::ESRCH)?;
    if let Some(s) = world.sched.as_mut() {
        let _ = s.remove_domain(id);
    }
    // Grants: mappings it holds and mappings others hold of its grants go first.
    super::grant_op::release(&mut victim, dom, &mut world.domains);
    // Event channels: the other ends become unbound again.
    if let Ok(peers) = victim.events.destroy(id) {
        for p in peers {
            let peer = if p.remote_dom == dom.id {
                Some(&mut *dom)
            } else {
                world.domains.get_mut(&p.remote_dom)
            };
            if let Some(peer) = peer {
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
fn domain_info(
    d: &Domain,
    sched: Option<&crate::sched::Scheduler>,
    now: u64,
) -> dc::DomctlGetdomaininfo {
    let mut flags = 0;
    if let Some(reason) = d.shutdown {
        flags |= dc::XEN_DOMINF_SHUTDOWN | (reason.code() << dc::XEN_DOMINF_SHUTDOWNSHIFT);
    }
    if d.paused > 0 {
        flags |= dc::XEN_DOMINF_PAUSED;
    }
    let online: u32 = d.vcpus.iter().filter(|v| v.online).count() as u32;
    if online > 0 && d.vcpus.iter().filter(|v| v.online).all(|v| v.blocked) {
        flags |= dc::XEN_DOMINF_BLOCKED;
    } else if online > 0 && d.shutdown.is_none() && d.paused == 0 {
        flags |= dc::XEN_DOMINF_RUNNING;
    }
    dc::DomctlGetdomaininfo {
        domain: d.id,
        flags,
        handle: d.handle,
        tot_pages: d.tot_pages,
        max_pages: d.max_pages,
        shared_info_frame: d.shared_info.0,
        cpu_time: sched.map_or(0, |s| s.domain_runtime(d.id, now)),
        nr_online_vcpus: online,
        max_vcpu_id: (d.vcpus.len() as u32).wrapping_sub(1),
        ..Default::default()
    }
}

/// `XEN_DOMCTL_setvcpucontext`: checks the whole context, then installs it. Returns
/// whether the vCPU came online with it.
fn set_vcpu_context(d: &mut Domain, vcpu: u32, ctx: &VcpuGuestContext) -> Result<bool, Errno> {
    if d.paused == 0 {
        return Err(Errno::EBUSY);
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
    for t in ctx.trap_ctxt.iter().filter(|t| !t.is_end()) {
        if !matches!(t.vector, 2 | 8 | 18) {
            v.traps[usize::from(t.vector)] = *t;
        }
    }
    v.fs_base = ctx.fs_base;
    v.gs_base = ctx.gs_base_user;
    let online = ctx.flags & vc::VGCF_ONLINE != 0;
    let newly_online = online && !v.online;
    v.online |= online;
    d.vcpu_info(vcpu as usize)
        .evtchn_upcall_mask
        .store(1, core::sync::atomic::Ordering::Release);
    Ok(newly_online)
}

/// `XEN_DOMCTL_getvcpucontext`: the registers and settings Xenia keeps, in Xen's layout
/// (other fields zero).
fn write_vcpu_context(
    space: &super::mem::AddressSpace,
    at: u64,
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
    let base = |field: usize| at + field as u64;
    space.write(at, &[0u8; core::mem::size_of::<VcpuGuestContext>()])?;
    let mut flags = vc::VGCF_IN_KERNEL;
    if v.online {
        flags |= vc::VGCF_ONLINE;
    }
    space.write(
        base(offset_of!(VcpuGuestContext, flags)),
        &flags.to_le_bytes(),
    )?;
    space.write_pod(base(offset_of!(VcpuGuestContext, user_regs)), &regs)?;
    let words = [
        (
            offset_of!(VcpuGuestContext, kernel_ss),
            u64::from(KERNEL_SS),
        ),
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
        (offset_of!(VcpuGuestContext, gs_base_user), v.gs_base),
    ];
    for (offset, value) in words {
        space.write(base(offset), &value.to_le_bytes())?;
    }
    Ok(())
}

/// `sysctl(arg)`.
pub fn sysctl(dom: &mut Domain, world: &mut World, arg: u64) -> Result<u64, Errno> {
    if !dom.privileged {
        return Err(Errno::EPERM);
    }
    let space = aspace(dom);
    let mut op: XenSysctl = space.read_pod(arg)?;
    if !op.version_matches() {
        return Err(Errno::EACCES);
    }
    let now = crate::time::now_ns();
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
            space.write(r.buffer, &buf[..copied])?;
            r.count = copied as u32;
            r.index = next as u32;
            op.set_payload(&r);
        }
        sc::XEN_SYSCTL_PHYSINFO => {
            let info = sc::SysctlPhysinfo {
                threads_per_core: 1,
                cores_per_socket: 1,
                nr_cpus: 1,
                max_cpu_id: 0,
                nr_nodes: 1,
                max_node_id: 0,
                cpu_khz: (crate::time::tsc_hz() / 1000) as u32,
                capabilities: sc::XEN_SYSCTL_PHYSCAP_PV,
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
            let mut all: alloc::vec::Vec<&Domain> = alloc::vec::Vec::new();
            all.try_reserve_exact(world.domains.len() + 1)
                .map_err(|_| Errno::ENOMEM)?;
            // alloc: room reserved just above.
            all.extend(world.domains.values());
            all.push(dom); // alloc: room reserved above
            all.sort_by_key(|d| d.id);
            for d in all.into_iter().filter(|d| d.id >= l.first_domain) {
                if n >= l.max_domains {
                    break;
                }
                let mut bytes = [0u8; 112];
                domain_info(d, world.sched.as_ref(), now).encode_prefix(&mut bytes);
                space.write(l.buffer + u64::from(n) * record, &bytes[..record as usize])?;
                n += 1;
            }
            l.num_domains = n;
            op.set_payload(&l);
        }
        sc::XEN_SYSCTL_XENIA_HEAP_INFO => {
            let mut h: sc::SysctlXeniaHeapInfo = op.payload();
            (h.charged, h.limit) = if h.domid == guest_abi::types::DOMID_INVALID {
                (0, 0)
            } else {
                let d = if h.domid == dom.id {
                    &*dom
                } else {
                    world.domains.get(&h.domid).ok_or(Errno::ESRCH)?
                };
                (d.charged(), d.charge_limit())
            };
            h.heap_total = crate::mm::heap::size() as u64;
            h.heap_used = crate::mm::heap::used() as u64;
            op.set_payload(&h);
        }
        _ => return Err(Errno::ENOSYS),
    }
    space.write_pod(arg, &op)?;
    Ok(0)
}

// SAFETY: repr(C) integer structures (the union is bytes), no padding.
unsafe impl Pod for XenDomctl {}
// SAFETY: as above.
unsafe impl AsBytes for XenDomctl {}
// SAFETY: as above.
unsafe impl Pod for XenSysctl {}
// SAFETY: as above.
unsafe impl AsBytes for XenSysctl {}
// SAFETY: integers, explicit padding fields, arrays of TrapInfo (integers).
unsafe impl Pod for VcpuGuestContext {}
// SAFETY: integers with explicit padding fields only.
unsafe impl Pod for vc::CpuUserRegs {}
// SAFETY: as above.
unsafe impl AsBytes for vc::CpuUserRegs {}
