//! Creating and destroying domains other than dom0 (the toolstack builds them through
//! domain control; DESIGN.md §5).
//!
//! A new domain starts paused, with no memory but its `shared_info` page and with
//! offline vCPUs; the builder in dom0 populates it, writes it, pins its page tables and
//! sets vCPU 0's context. Destroying it gives back everything: its frames (through the
//! frame table, which first drops every pin, base pointer and page-table reference), its
//! event channels (the other ends become unbound again), its timers and vCPUs.

use alloc::string::String;
use alloc::vec::Vec;
use core::sync::atomic::Ordering;

use guest_abi::errno::Errno;
use guest_abi::types::DomId;

use super::{Domain, Vcpu};
use crate::event::EventChannels;
use crate::mm::frame_table::Owner;
use crate::mm::{Mfn, PAGE_SIZE, frames, ft, m2p};

/// Most vCPUs a domain may have: one `vcpu_info` slot each in `shared_info` (Xen's
/// legacy limit; more would need `VCPUOP_register_vcpu_info`).
pub const MAX_VCPUS: u32 = guest_abi::shared_info::XEN_LEGACY_MAX_VCPUS as u32;

/// A new, paused, empty domain with `nr_vcpus` offline vCPUs. `ENOMEM` when the machine
/// cannot spare what it costs (its bookkeeping on the heap, its `shared_info`); nothing on
/// this path allocates infallibly.
pub fn create(id: DomId, name: String, nr_vcpus: u32) -> Result<Domain, Errno> {
    if nr_vcpus == 0 || nr_vcpus > MAX_VCPUS {
        return Err(Errno::EINVAL);
    }
    let cost = (core::mem::size_of::<Domain>() + nr_vcpus as usize * core::mem::size_of::<Vcpu>())
        as u64
        + PAGE_SIZE;
    if !crate::mm::heap::headroom(cost) {
        return Err(Errno::ENOMEM);
    }
    let vcpus = Vcpu::try_new_set(nr_vcpus, Mfn(0))?;
    // A new domain is in Xenia's ring-1 mode until dom0 says otherwise.
    ft::set_forced_user(id, false);
    let shared_info = frames::alloc_zeroed().ok_or(Errno::ENOMEM)?;
    // The hypervisor writes shared_info for as long as the domain lives (event bits, time,
    // the entry count): held writable, it can never become a page table or be freed.
    if let Err(e) = ft::give(shared_info, id)
        .and_then(|()| ft::with(|t, mem| t.hold_for_writes(mem, shared_info, id)))
    {
        let _ = ft::take_back(shared_info, id);
        frames::free_contiguous(shared_info, 1);
        return Err(e);
    }
    let dom = Domain {
        id,
        name,
        handle: [0; 16],
        privilege: super::Privilege::Guest,
        p2m: Vec::new(),
        shared_info,
        shared_view: crate::mm::physmem::atomics(shared_info),
        tot_pages: 0,
        max_pages: 0,
        vcpus,
        events: EventChannels::new(),
        pirqs: crate::pirq::PirqTable::new(),
        grants: crate::grant::GrantTable::with_defaults(id),
        shutdown: None,
        stop_announced: false,
        vm_assist: 0,
        guest_mode: crate::domain::GuestMode::Ring1,
        controller_pauses: 1,
        console_line: super::ConsoleLine::new(),
    };
    for v in 0..nr_vcpus as usize {
        let info = dom.vcpu_info(v);
        info.evtchn_upcall_mask.store(1, Ordering::Release);
        info.time.publish(&crate::time::snapshot());
    }
    dom.shared().publish_wallclock(crate::time::wallclock());
    Ok(dom)
}

/// Gives back the memory `dom` holds (the caller closes its event channels first, since
/// their other ends live in other domains). Frames another domain or the hypervisor still
/// references (for instance mapped by dom0) cannot be freed: `EBUSY`, with the domain
/// left in the table, dying, so that a later destroy finishes the job.
pub fn release(dom: &mut Domain) -> Result<(), Errno> {
    // The frame table drops the vCPUs' base pointers with everything else; the holds on
    // the frames the guest moved its `vcpu_info`s to go first, as the hypervisor stops
    // writing them now.
    for v in &mut dom.vcpus {
        v.online = false;
        v.singleshot = None;
        v.periodic = None;
        v.poll = None;
        v.l4 = Mfn(0);
        v.user_l4 = Mfn(0);
        // The GDT's frames are held by the hypervisor (`guest::desc`): let go first.
        crate::guest::desc::release_gdt(v);
        crate::guest::desc::release_ldt(v);
        v.info_view = None;
        if let Some((mfn, _)) = v.info_area.take() {
            let _ = ft::with(|t, mem| t.release_writes(mem, mfn, dom.id));
        }
    }
    // Every frame nothing refers to goes straight back to the frame allocator, without a
    // list (a domain may be most of the machine), wiped first (Xen's scrub on free): the
    // next domain's populate then takes it as it is (`frames::free_zeroed`).
    let mut freed = 0u64;
    let mut free = |mfn: Mfn| {
        m2p::set(mfn, m2p::INVALID);
        // Released: no mapping, no reference, no owner but the hypervisor.
        crate::mm::physmem::scrub(mfn);
        frames::free_zeroed(mfn, 1);
        freed += 1;
    };
    let mut still =
        ft::with(|t, mem| t.release_domain_with(mem, dom.id, Owner::Hypervisor, &mut free));
    // The hypervisor writes shared_info until the domain is gone: its hold goes last, once
    // nothing else of the domain is left (a destroy that must wait keeps a domain whose
    // shared_info is still its own).
    if still == [dom.shared_info] && dom.shared_info != Mfn(0) {
        let shared_info = dom.shared_info;
        still = ft::with(|t, mem| {
            let _ = t.release_writes(mem, shared_info, dom.id);
            t.release_domain_with(mem, dom.id, Owner::Hypervisor, &mut free)
        });
        dom.shared_info = Mfn(0);
    }
    dom.tot_pages = dom.tot_pages.saturating_sub(freed);
    let released = crate::mm::frame_table::Released {
        freed: Vec::new(),
        still_referenced: still,
    };
    if released.still_referenced.is_empty() {
        Ok(())
    } else {
        log::warn!(
            target: "domain",
            "domain {}: {} frames are still referenced; they will be freed when released",
            dom.id,
            released.still_referenced.len()
        );
        Err(Errno::EBUSY)
    }
}
