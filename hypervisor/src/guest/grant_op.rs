//! `grant_table_op(cmd, uops, count)`: the hypercall side of `crate::grant` (grant tables
//! v1). Status codes go in each operation's `status` field, as in Xen; the call itself
//! fails only for a bad command, count or pointer.
//!
//! Grant mappings are grant PTEs: the frame table marks them with Xen's `_PAGE_GNTTAB`, so
//! they take no page-table references (the grant holds them, through `get_page` /
//! `get_page_type(Writable)` in the granter's name) and no `mmu_update` can overwrite them.
//! Unmapping removes the PTE, flushes, and only then drops the pins and references.

use alloc::vec::Vec;

use guest_abi::errno::Errno;
use guest_abi::grant as g;
use guest_abi::types::{DOMID_SELF, DomId};

use super::aspace;
use core::mem::offset_of;

use super::mem::{AddressSpace, Pod};
use crate::arch::x86_64::layout::phys_to_virt;
use crate::domain::Domain;
use crate::grant::{
    self as gt, EntryFrame, EntryFrames, FrameRefError, FrameRefs, GntError, Grants,
};
use crate::mm::frame_table::PageType;
use crate::mm::{Mfn, PAGE_SIZE, frames, ft};

type Domains = alloc::collections::BTreeMap<DomId, Domain>;

/// Writes one OUT field of an operation back to the guest.
fn put<const N: usize>(
    space: &AddressSpace,
    at: u64,
    offset: usize,
    bytes: [u8; N],
) -> Result<(), Errno> {
    space.write(at + offset as u64, &bytes)
}

/// Most operations handled in one call.
const MAX_COUNT: u64 = 512;

/// The entry frames of `grants`, as the grant logic reads them (at most
/// [`gt::DEFAULT_MAX_FRAMES`], a fixed array: no allocation on the grant paths).
fn entry_frames(grants: &Grants) -> EntryFrameList {
    let mut list = EntryFrameList {
        frames: [&EMPTY_FRAME; gt::DEFAULT_MAX_FRAMES as usize],
        len: 0,
    };
    for (slot, m) in list.frames.iter_mut().zip(grants.frames()) {
        // SAFETY: grant frames are frames the hypervisor allocated, holds for its writes
        // until teardown and reaches through the direct map; `EntryFrame` is atomics only.
        *slot = unsafe { &*(phys_to_virt(m.phys()) as *const EntryFrame) };
        list.len += 1;
    }
    list
}

/// A grant table's entry frames, in a fixed array.
struct EntryFrameList {
    frames: [&'static EntryFrame; gt::DEFAULT_MAX_FRAMES as usize],
    len: usize,
}

impl core::ops::Deref for EntryFrameList {
    type Target = [&'static EntryFrame];
    fn deref(&self) -> &Self::Target {
        &self.frames[..self.len]
    }
}

/// What unused slots of an [`EntryFrameList`] point at (never read: the list's length
/// excludes them).
static EMPTY_FRAME: EntryFrame =
    [const { core::sync::atomic::AtomicU32::new(0) }; gt::WORDS_PER_FRAME];

/// Takes the frame references `refs` on `mfn` in `owner`'s name, or none.
fn take_refs(mfn: Mfn, owner: DomId, refs: FrameRefs) -> Result<(), FrameRefError> {
    ft::with(|t, mem| {
        for i in 0..refs.general {
            if t.get_page(mfn, owner).is_err() {
                for _ in 0..i {
                    let _ = t.put_page(mfn);
                }
                return Err(FrameRefError::NotOwned);
            }
        }
        for i in 0..refs.writable {
            if let Err(e) = t.get_page_type(mem, mfn, owner, PageType::Writable) {
                for _ in 0..i {
                    let _ = t.put_page_type(mem, mfn);
                }
                for _ in 0..refs.general {
                    let _ = t.put_page(mfn);
                }
                return Err(if e == Errno::EINVAL {
                    FrameRefError::NotOwned
                } else {
                    FrameRefError::NotWritable
                });
            }
        }
        Ok(())
    })
}

/// The references of one use of a frame: a writable type reference, or a general one.
fn one_use(writable: bool) -> FrameRefs {
    if writable {
        FrameRefs {
            general: 0,
            writable: 1,
        }
    } else {
        FrameRefs {
            general: 1,
            writable: 0,
        }
    }
}

fn drop_refs(mfn: Mfn, refs: FrameRefs) {
    ft::with(|t, mem| {
        for _ in 0..refs.writable {
            let _ = t.put_page_type(mem, mfn);
        }
        for _ in 0..refs.general {
            let _ = t.put_page(mfn);
        }
    });
}

pub fn dispatch(
    dom: &mut Domain,
    others: &mut Domains,
    cmd: u64,
    uops: u64,
    count: u64,
) -> Result<u64, Errno> {
    if count > MAX_COUNT {
        return Err(Errno::EINVAL);
    }
    let size = match u32::try_from(cmd).map_err(|_| Errno::ENOSYS)? {
        g::GNTTABOP_SETUP_TABLE => size_of::<g::GnttabSetupTable>(),
        g::GNTTABOP_QUERY_SIZE => size_of::<g::GnttabQuerySize>(),
        g::GNTTABOP_MAP_GRANT_REF => size_of::<g::GnttabMapGrantRef>(),
        g::GNTTABOP_UNMAP_GRANT_REF => size_of::<g::GnttabUnmapGrantRef>(),
        g::GNTTABOP_COPY => size_of::<g::GnttabCopy>(),
        _ => return Err(Errno::ENOSYS),
    } as u64;
    if !super::mem::range_ok(uops, count * size) {
        return Err(Errno::EFAULT);
    }
    for i in 0..count {
        let at = uops + i * size;
        match cmd as u32 {
            g::GNTTABOP_SETUP_TABLE => setup_table(dom, others, at)?,
            g::GNTTABOP_QUERY_SIZE => {
                let space = aspace(dom);
                let mut q: g::GnttabQuerySize = space.read_pod(at)?;
                match named(dom, others, q.dom) {
                    Ok(target) => q = target.grants.grants.query_size(target.id),
                    Err(e) => q.status = e.status(),
                }
                put(
                    &space,
                    at,
                    offset_of!(g::GnttabQuerySize, nr_frames),
                    q.nr_frames.to_le_bytes(),
                )?;
                put(
                    &space,
                    at,
                    offset_of!(g::GnttabQuerySize, max_nr_frames),
                    q.max_nr_frames.to_le_bytes(),
                )?;
                put(
                    &space,
                    at,
                    offset_of!(g::GnttabQuerySize, status),
                    q.status.to_le_bytes(),
                )?;
            }
            g::GNTTABOP_MAP_GRANT_REF => map(dom, others, at)?,
            g::GNTTABOP_UNMAP_GRANT_REF => unmap(dom, others, at)?,
            g::GNTTABOP_COPY => copy(dom, others, at)?,
            _ => return Err(Errno::ENOSYS),
        }
    }
    Ok(0)
}

/// The domain a grant operation names: the caller (`DOMID_SELF` or its id), or, for a
/// privileged caller, another existing domain. Xen looks the domain up first
/// (`GNTST_bad_domain`), then checks the privilege (`GNTST_permission_denied`).
fn named<'a>(
    dom: &'a mut Domain,
    others: &'a mut Domains,
    id: DomId,
) -> Result<&'a mut Domain, GntError> {
    if id == DOMID_SELF || id == dom.id {
        return Ok(dom);
    }
    let privileged = dom.privileged;
    match others.get_mut(&id) {
        None => Err(GntError::BadDomain),
        Some(_) if !privileged => Err(GntError::PermissionDenied),
        Some(d) => Ok(d),
    }
}

fn setup_table(dom: &mut Domain, others: &mut Domains, at: u64) -> Result<(), Errno> {
    let space = aspace(dom);
    let mut op: g::GnttabSetupTable = space.read_pod(at)?;
    op.status = match named(dom, others, op.dom) {
        Err(e) => e.status(),
        Ok(target) => match grow(target, op.nr_frames) {
            Ok(()) => {
                let mut buf = [0u8; 8 * gt::DEFAULT_MAX_FRAMES as usize];
                let frames = target.grants.grants.frames();
                let n = (op.nr_frames as usize).min(frames.len());
                for (dst, m) in buf.chunks_exact_mut(8).zip(&frames[..n]) {
                    dst.copy_from_slice(&m.0.to_le_bytes());
                }
                match space.write(op.frame_list, &buf[..8 * n]) {
                    Ok(()) => g::GNTST_OKAY,
                    Err(_) => GntError::BadVirtAddr.status(),
                }
            }
            Err(e) => e.status(),
        },
    };
    put(
        &space,
        at,
        offset_of!(g::GnttabSetupTable, status),
        op.status.to_le_bytes(),
    )
}

/// Grows `dom`'s grant table to `nr` frames: each new frame zeroed, given to the domain
/// (so it can map it) and held for the hypervisor's writes (`GTF_reading`/`GTF_writing`):
/// the domain can map it writable, but never make it a page table or free it.
pub fn grow(dom: &mut Domain, nr: u32) -> Result<(), GntError> {
    let need = dom.grants.grants.setup_table(nr)?;
    let mut new: Vec<Mfn> = Vec::new();
    if new.try_reserve_exact(need as usize).is_err()
        || !crate::mm::heap::headroom(u64::from(need) * PAGE_SIZE)
    {
        return Err(GntError::GeneralError);
    }
    for _ in 0..need {
        let held = frames::alloc_zeroed().map(|mfn| {
            let ok = ft::give(mfn, dom.id).is_ok();
            (
                mfn,
                ok && ft::with(|t, mem| t.hold_for_writes(mem, mfn, dom.id)).is_ok(),
            )
        });
        match held {
            Some((mfn, true)) => new.push(mfn), // alloc: room reserved above
            other => {
                if let Some((mfn, _)) = other {
                    let _ = ft::take_back(mfn, dom.id);
                    frames::free_contiguous(mfn, 1);
                }
                for m in new {
                    let _ = ft::with(|t, mem| t.release_writes(mem, m, dom.id));
                    let _ = ft::take_back(m, dom.id);
                    frames::free_contiguous(m, 1);
                }
                return Err(GntError::GeneralError);
            }
        }
    }
    dom.grants.grants.add_frames(&new)
}

/// The L1 and index mapping `va` in `dom`'s current address space.
fn pte_slot(dom: &Domain, va: u64) -> Result<(Mfn, usize), GntError> {
    if !super::mem::range_ok(va, 1) || !va.is_multiple_of(PAGE_SIZE) {
        return Err(GntError::GeneralError);
    }
    super::mmu::l1_slot(dom, dom.vcpu().l4, va).map_err(|_| GntError::GeneralError)
}

fn map(dom: &mut Domain, others: &mut Domains, at: u64) -> Result<(), Errno> {
    let space = aspace(dom);
    let mut op: g::GnttabMapGrantRef = space.read_pod(at)?;
    let mapper = dom.id;
    let slot = if op.flags & g::GNTMAP_HOST_MAP != 0 {
        pte_slot(dom, op.host_addr).map(Some)
    } else {
        Ok(None)
    };
    let user = op.flags & g::GNTMAP_APPLICATION_MAP != 0;
    // The maptrack may grow: only while the machine has memory to spare.
    let room = if crate::mm::heap::headroom(MAPTRACK_GROWTH) {
        Ok(())
    } else {
        Err(GntError::NoSpace)
    };
    let result = room.and(slot).and_then(|slot| {
        let install = |m: &gt::Mapping| -> Result<Option<gt::HostPte>, GntError> {
            take_refs(m.mfn, m.granter, m.frame_refs())?;
            let Some((l1, index)) = slot else {
                return Ok(None);
            };
            let flags = 1 | if m.readonly { 0 } else { 2 } | if user { 4 } else { 0 };
            // The mapping holds its L1 as an L1 until the PTE is removed, so the PTE can
            // always be found and removed where it was written.
            let installed = ft::with(|t, mem| {
                // Only a table already in use as an L1 (the walk found it through the
                // mapper's validated tables): a hold must never promote a frame to an L1.
                if t.info(l1).map(|f| f.current_type()) != Some(PageType::L1) {
                    return Err(Errno::EINVAL);
                }
                t.get_page_type(mem, l1, mapper, PageType::L1)?;
                t.install_grant_pte(mem, l1, index, mapper, m.mfn, flags)
                    .inspect_err(|_| {
                        let _ = t.put_page_type(mem, l1);
                    })
            });
            if installed.is_err() {
                drop_refs(m.mfn, m.frame_refs());
                return Err(GntError::GeneralError);
            }
            Ok(Some((l1, index)))
        };
        if op.dom == mapper {
            let frames = entry_frames(&dom.grants.grants);
            let table = &mut dom.grants;
            gt::map_grant_ref(
                &mut table.maptrack,
                &mut table.grants,
                mapper,
                &EntryFrames(&frames),
                &op,
                install,
            )
        } else {
            let granter = others.get_mut(&op.dom).ok_or(GntError::BadDomain)?;
            let frames = entry_frames(&granter.grants.grants);
            gt::map_grant_ref(
                &mut dom.grants.maptrack,
                &mut granter.grants.grants,
                op.dom,
                &EntryFrames(&frames),
                &op,
                install,
            )
        }
    });
    gt::write_map_result(&mut op, &result);
    put(
        &space,
        at,
        offset_of!(g::GnttabMapGrantRef, status),
        op.status.to_le_bytes(),
    )?;
    put(
        &space,
        at,
        offset_of!(g::GnttabMapGrantRef, handle),
        op.handle.to_le_bytes(),
    )?;
    put(
        &space,
        at,
        offset_of!(g::GnttabMapGrantRef, dev_bus_addr),
        op.dev_bus_addr.to_le_bytes(),
    )
}

fn unmap(dom: &mut Domain, others: &mut Domains, at: u64) -> Result<(), Errno> {
    let space = aspace(dom);
    let mut op: g::GnttabUnmapGrantRef = space.read_pod(at)?;
    // The maptrack checks `host_addr` is the handle's own; the PTE removed is the one the
    // map wrote, found where it was recorded, not through today's page tables.
    let result = dom
        .grants
        .maptrack
        .unmap(op.handle, op.host_addr, op.dev_bus_addr, |_, entry| {
            remove_host_pte(entry.pte, entry.mfn)
        });
    op.status = match result {
        Ok(release) => {
            // The mapping must be gone from every TLB before the granter may reuse the frame.
            x86_64::instructions::tlb::flush_all();
            if let Some(r) = release {
                let granter: &mut Domain = if r.granter == dom.id {
                    dom
                } else {
                    match others.get_mut(&r.granter) {
                        Some(d) => d,
                        None => {
                            drop_refs(r.mfn, r.frame_refs());
                            let status = g::GNTST_OKAY;
                            return put(
                                &space,
                                at,
                                offset_of!(g::GnttabUnmapGrantRef, status),
                                status.to_le_bytes(),
                            );
                        }
                    }
                };
                let frames = entry_frames(&granter.grants.grants);
                granter
                    .grants
                    .grants
                    .finish_unmap(&EntryFrames(&frames), &r);
                drop_refs(r.mfn, r.frame_refs());
            }
            g::GNTST_OKAY
        }
        Err(e) => e.status(),
    };
    put(
        &space,
        at,
        offset_of!(g::GnttabUnmapGrantRef, status),
        op.status.to_le_bytes(),
    )
}

/// `GNTTABOP_copy` for one operation, over this hypercall's view of the domains.
fn copy(dom: &mut Domain, others: &mut Domains, at: u64) -> Result<(), Errno> {
    struct Env<'a> {
        caller: &'a mut Domain,
        others: &'a mut Domains,
    }
    impl gt::CopyEnv for Env<'_> {
        fn with_grants<R>(
            &mut self,
            d: DomId,
            f: impl FnOnce(&mut Grants, &dyn gt::GrantFrames) -> R,
        ) -> Option<R> {
            let target = if d == self.caller.id {
                &mut *self.caller
            } else {
                self.others.get_mut(&d)?
            };
            let frames = entry_frames(&target.grants.grants);
            Some(f(&mut target.grants.grants, &EntryFrames(&frames)))
        }
        fn get_frame(
            &mut self,
            mfn: Mfn,
            owner: DomId,
            writable: bool,
        ) -> Result<(), FrameRefError> {
            take_refs(mfn, owner, one_use(writable))
        }
        fn put_frame(&mut self, mfn: Mfn, writable: bool) {
            drop_refs(mfn, one_use(writable));
        }
        fn copy_bytes(&mut self, src: Mfn, src_offset: u16, dest: Mfn, dest_offset: u16, len: u16) {
            // SAFETY: both ranges lie inside frames the caller holds references on, reached
            // through the direct map; `copy` allows overlap.
            unsafe {
                core::ptr::copy(
                    (phys_to_virt(src.phys()) + u64::from(src_offset)) as *const u8,
                    (phys_to_virt(dest.phys()) + u64::from(dest_offset)) as *mut u8,
                    usize::from(len),
                );
            }
        }
    }
    let space = aspace(dom);
    let mut op: g::GnttabCopy = space.read_pod(at)?;
    let caller = dom.id;
    let result = gt::copy_one(
        &mut Env {
            caller: dom,
            others,
        },
        caller,
        &op,
    );
    op.status = gt::status_of(&result);
    put(
        &space,
        at,
        offset_of!(g::GnttabCopy, status),
        op.status.to_le_bytes(),
    )
}

/// Teardown of `victim`'s grant state before its memory goes: its mappings of grants (PTEs
/// removed, references dropped), the mappings other domains (`caller`, dom0, and
/// `others`) hold of its grants (revoked), then its grant frames (the hypervisor's
/// references dropped so that the frame table can free them).
pub fn release(victim: &mut Domain, caller: &mut Domain, others: &mut Domains) {
    let id = victim.id;
    // alloc: teardown is dom0's (destroydomain); bounded by the mappings that exist.
    let mut releases = victim.grants.maptrack.release_all();
    releases.extend(caller.grants.maptrack.revoke(id)); // alloc: as above
    for other in others.values_mut() {
        releases.extend(other.grants.maptrack.revoke(id)); // alloc: as above
    }
    // Each domain involved, by id: the victim, the caller, the rest.
    fn find<'a>(
        d: DomId,
        victim: &'a mut Domain,
        caller: &'a mut Domain,
        others: &'a mut Domains,
    ) -> Option<&'a mut Domain> {
        if d == victim.id {
            Some(victim)
        } else if d == caller.id {
            Some(caller)
        } else {
            others.get_mut(&d)
        }
    }
    // A host PTE that cannot be removed keeps its frame references for good: the frame
    // stays allocated to its owner (which then cannot be freed entirely) rather than a live
    // mapping outliving the frame. Removal by the recorded entry of a held L1 never fails;
    // the log says so if it ever does.
    let mut kept = alloc::vec::Vec::new();
    for (i, r) in releases.iter().enumerate() {
        if r.host && remove_host_pte(r.pte, r.mfn).is_err() {
            log::error!(
                target: "grant",
                "d{}: grant mapping of frame {:#x} (ref {:#x} of d{}) could not be removed; \
                 its references are kept",
                r.mapper,
                r.mfn.0,
                r.gref,
                r.granter
            );
            if kept.try_reserve(1).is_ok() {
                kept.push(i); // alloc: room reserved just above
            }
        }
    }
    x86_64::instructions::tlb::flush_all();
    for (i, r) in releases.into_iter().enumerate() {
        if kept.contains(&i) {
            continue;
        }
        if let Some(granter) = find(r.granter, victim, caller, others) {
            let frames = entry_frames(&granter.grants.grants);
            granter
                .grants
                .grants
                .finish_unmap(&EntryFrames(&frames), &r);
        }
        drop_refs(r.mfn, r.frame_refs());
    }
    release_frames(victim);
}

/// The last step of a grant table's teardown: its entry frames, once no grant is in use,
/// are no longer written by the hypervisor (their holds go; the frame table frees them
/// with the domain).
pub fn release_frames(dom: &mut Domain) {
    if let Ok(frames) = dom.grants.grants.release() {
        for m in frames {
            let _ = ft::with(|t, mem| t.release_writes(mem, m, dom.id));
        }
    }
}

/// Heap a map may add to the mapper's maptrack; mapping is refused ("no space") when the
/// machine cannot spare it.
const MAPTRACK_GROWTH: u64 = 64 * 1024;

/// Removes the grant PTE a mapping of `mfn` wrote at `pte`, and drops the mapping's hold
/// on that L1. `GNTST_general_error` (nothing changed) if the entry is not that mapping.
fn remove_host_pte(pte: Option<gt::HostPte>, mfn: Mfn) -> Result<(), GntError> {
    let (l1, index) = pte.ok_or(GntError::GeneralError)?;
    ft::with(|t, mem| {
        t.remove_grant_pte(mem, l1, index, mfn)?;
        t.put_page_type(mem, l1)
    })
    .map_err(|_| GntError::GeneralError)
}

// SAFETY: repr(C) integer structures from guest-abi, only filled from guest bytes (their
// OUT fields are written back one by one, never the padding).
unsafe impl Pod for g::GnttabSetupTable {}
// SAFETY: as above.
unsafe impl Pod for g::GnttabQuerySize {}
// SAFETY: as above.
unsafe impl Pod for g::GnttabMapGrantRef {}
// SAFETY: as above.
unsafe impl Pod for g::GnttabUnmapGrantRef {}
// SAFETY: as above.
unsafe impl Pod for g::GnttabCopy {}
