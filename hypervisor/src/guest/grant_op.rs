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

use core::mem::offset_of;

use super::context::{Hc, HcResult, Ret};
use super::mem::GuestPtr;
use crate::domain::Domain;
use crate::grant::{
    self as gt, EntryFrame, EntryFrames, FrameRefError, FrameRefs, GntError, Grants,
};
use crate::mm::frame_table::PageType;
use crate::mm::{Mfn, PAGE_SIZE, frames, ft, physmem};

use super::locks::Domains;

/// Writes the OUT field at `offset` of the operation at `op` back to the guest.
fn put<O, T: zerocopy::IntoBytes + zerocopy::Immutable>(
    cx: &mut Hc,
    op: GuestPtr<O>,
    offset: usize,
    value: T,
) -> Result<(), Errno> {
    cx.space().write(op.field::<T>(offset), &value)
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
        // Grant frames are held for the hypervisor's writes until teardown.
        *slot = physmem::atomics::<EntryFrame>(*m);
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
            if t.get_page_type(mem, mfn, owner, PageType::Writable)
                .is_err()
            {
                for _ in 0..i {
                    let _ = t.put_page_type(mem, mfn);
                }
                for _ in 0..refs.general {
                    let _ = t.put_page(mfn);
                }
                // Not the owner's (`GNTST_bad_page`), or in another use (Xen's
                // `gnttab_copy_claim_buf`: `GNTST_general_error`).
                return Err(if t.owned_by(mfn, owner) {
                    FrameRefError::NotWritable
                } else {
                    FrameRefError::NotOwned
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

/// `grant_table_op(cmd, uops, count)`.
/// `GNTTABOP_SET_VERSION` (count 1, as Xen): version 1 is the only one Xenia has, so it is
/// accepted; 2 is `EOPNOTSUPP` (Xen's answer for a domain whose maximum version is 1), any
/// other `EINVAL`. The version in force (1) is written back either way, as Xen does. Linux's
/// `gnttab_request_version` asks for 1 at boot.
fn set_version(cx: &mut Hc, uops: u64, count: u64) -> HcResult {
    if count != 1 {
        return Err(Errno::EINVAL);
    }
    let arg = GuestPtr::<g::GnttabSetVersion>::new(uops);
    let space = cx.space();
    let asked = space.read(arg)?;
    space.write(arg, &g::GnttabSetVersion { version: 1 })?;
    match asked.version {
        1 => Ok(Ret::Value(0)),
        2 => Err(Errno::EOPNOTSUPP),
        _ => Err(Errno::EINVAL),
    }
}

/// `GNTTABOP_GET_VERSION` (count 1): 1, for the caller itself (`DOMID_SELF` or its own id);
/// another domain is `EPERM` (Xen lets only a privileged caller ask about others).
fn get_version(cx: &mut Hc, uops: u64, count: u64) -> HcResult {
    if count != 1 {
        return Err(Errno::EINVAL);
    }
    let arg = GuestPtr::<g::GnttabGetVersion>::new(uops);
    let space = cx.space();
    let mut a = space.read(arg)?;
    if a.dom != DOMID_SELF && a.dom != cx.id() {
        return Err(Errno::EPERM);
    }
    a.version = 1;
    space.write(arg, &a)?;
    Ok(Ret::Value(0))
}

pub fn dispatch(cx: &mut Hc) -> HcResult {
    let (cmd, uops, count) = (cx.arg(0), cx.arg(1), cx.arg(2));
    if count > MAX_COUNT {
        return Err(Errno::EINVAL);
    }
    let size = match u32::try_from(cmd).map_err(|_| Errno::ENOSYS)? {
        g::GNTTABOP_SETUP_TABLE => size_of::<g::GnttabSetupTable>(),
        g::GNTTABOP_QUERY_SIZE => size_of::<g::GnttabQuerySize>(),
        g::GNTTABOP_MAP_GRANT_REF => size_of::<g::GnttabMapGrantRef>(),
        g::GNTTABOP_UNMAP_GRANT_REF => size_of::<g::GnttabUnmapGrantRef>(),
        g::GNTTABOP_COPY => size_of::<g::GnttabCopy>(),
        g::GNTTABOP_SET_VERSION => return set_version(cx, uops, count),
        g::GNTTABOP_GET_VERSION => return get_version(cx, uops, count),
        _ => return Err(Errno::ENOSYS),
    } as u64;
    if !super::mem::range_ok(uops, count * size) {
        return Err(Errno::EFAULT);
    }
    if cmd == u64::from(g::GNTTABOP_COPY) {
        copy_batch(cx, uops, count)?;
        return Ok(Ret::Value(0));
    }
    for i in 0..count {
        let at = uops + i * size;
        match cmd as u32 {
            g::GNTTABOP_SETUP_TABLE => setup_table(cx, GuestPtr::new(at))?,
            g::GNTTABOP_QUERY_SIZE => query_size(cx, GuestPtr::new(at))?,
            g::GNTTABOP_MAP_GRANT_REF => map(cx, GuestPtr::new(at))?,
            g::GNTTABOP_UNMAP_GRANT_REF => unmap(cx, GuestPtr::new(at))?,
            _ => return Err(Errno::ENOSYS),
        }
    }
    Ok(Ret::Value(0))
}

/// The domain a grant operation names: the caller (`DOMID_SELF` or its id), or, for the
/// control domain, another existing domain. Xen looks the domain up first
/// (`GNTST_bad_domain`), then checks the privilege (`GNTST_permission_denied`).
fn named<'a>(cx: &'a mut Hc, id: DomId) -> Result<&'a mut Domain, GntError> {
    if id == DOMID_SELF || id == cx.id() {
        return Ok(cx.me());
    }
    if !cx.exists(id) {
        return Err(GntError::BadDomain);
    }
    let token = cx.privileged().map_err(|_| GntError::PermissionDenied)?;
    cx.foreign(id, &token).map_err(|_| GntError::BadDomain)
}

fn query_size(cx: &mut Hc, at: GuestPtr<g::GnttabQuerySize>) -> Result<(), Errno> {
    let mut q = cx.space().read(at)?;
    match named(cx, q.dom) {
        Ok(target) => q = target.grants.grants.query_size(target.id),
        Err(e) => q.status = e.status(),
    }
    put(
        cx,
        at,
        offset_of!(g::GnttabQuerySize, nr_frames),
        q.nr_frames,
    )?;
    put(
        cx,
        at,
        offset_of!(g::GnttabQuerySize, max_nr_frames),
        q.max_nr_frames,
    )?;
    put(cx, at, offset_of!(g::GnttabQuerySize, status), q.status)
}

fn setup_table(cx: &mut Hc, at: GuestPtr<g::GnttabSetupTable>) -> Result<(), Errno> {
    let space = cx.space();
    let mut op = space.read(at)?;
    op.status = match named(cx, op.dom) {
        Err(e) => e.status(),
        Ok(target) => match grow(target, op.nr_frames) {
            Ok(()) => {
                let mut buf = [0u8; 8 * gt::DEFAULT_MAX_FRAMES as usize];
                let frames = target.grants.grants.frames();
                let n = (op.nr_frames as usize).min(frames.len());
                for (dst, m) in buf.chunks_exact_mut(8).zip(&frames[..n]) {
                    dst.copy_from_slice(&m.0.to_le_bytes());
                }
                match space.write_bytes(GuestPtr::new(op.frame_list), &buf[..8 * n]) {
                    Ok(()) => g::GNTST_OKAY,
                    Err(_) => GntError::BadVirtAddr.status(),
                }
            }
            Err(e) => e.status(),
        },
    };
    put(cx, at, offset_of!(g::GnttabSetupTable, status), op.status)
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
fn pte_slot(cx: &mut Hc, va: u64) -> Result<(Mfn, usize), GntError> {
    if !super::mem::range_ok(va, 1) || !va.is_multiple_of(PAGE_SIZE) {
        return Err(GntError::GeneralError);
    }
    super::mmu::l1_slot(cx.id(), cx.vcpu_ref().l4, va).map_err(|_| GntError::GeneralError)
}

/// Where `GNTMAP_guest_avail0` is in a map's flags (Xen's `_GNTMAP_guest_avail0`, bit 16).
const GNTMAP_GUEST_AVAIL_SHIFT: u32 = 16;

fn map(cx: &mut Hc, at: GuestPtr<g::GnttabMapGrantRef>) -> Result<(), Errno> {
    let mut op = cx.space().read(at)?;
    let mapper = cx.id();
    let slot = if op.flags & g::GNTMAP_HOST_MAP != 0 {
        pte_slot(cx, op.host_addr).map(Some)
    } else {
        Ok(None)
    };
    // A Xen PV kernel runs in ring 3: its mappings are user mappings, as all its entries
    // (`PageMemory::forced_user`).
    let user = op.flags & g::GNTMAP_APPLICATION_MAP != 0 || crate::mm::ft::forced_user(mapper);
    // Xen's `XENFEAT_gnttab_map_avail_bits`: `GNTMAP_guest_avail0..2` become PTE bits 9..11.
    let avail = (u64::from(op.flags) >> GNTMAP_GUEST_AVAIL_SHIFT & 7) << 9;
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
            let flags = 1 | if m.readonly { 0 } else { 2 } | if user { 4 } else { 0 } | avail;
            // The mapping holds its L1 as an L1 until the PTE is removed, so the PTE can
            // always be found and removed where it was written.
            let installed = ft::with(|t, mem| {
                // Only a table already in use as an L1 (the walk found it through the
                // mapper's validated tables): a hold must never promote a frame to an L1.
                if t.current_type(l1) != Some(PageType::L1) {
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
            let table = &mut cx.me().grants;
            let frames = entry_frames(&table.grants);
            gt::map_grant_ref(
                &mut table.maptrack,
                &mut table.grants,
                mapper,
                &EntryFrames(&frames),
                &op,
                install,
            )
        } else {
            let (dom, granter) = cx.pair(op.dom).map_err(|_| GntError::BadDomain)?;
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
    if cx.contended().is_some() {
        // The call runs again (guest::context::Hc): nothing is written back this time.
        return Err(Errno::EAGAIN);
    }
    gt::write_map_result(&mut op, &result);
    put(cx, at, offset_of!(g::GnttabMapGrantRef, status), op.status)?;
    put(cx, at, offset_of!(g::GnttabMapGrantRef, handle), op.handle)?;
    put(
        cx,
        at,
        offset_of!(g::GnttabMapGrantRef, dev_bus_addr),
        op.dev_bus_addr,
    )
}

fn unmap(cx: &mut Hc, at: GuestPtr<g::GnttabUnmapGrantRef>) -> Result<(), Errno> {
    let mut op = cx.space().read(at)?;
    // The maptrack checks `host_addr` is the handle's own; the PTE removed is the one the
    // map wrote, found where it was recorded, not through today's page tables.
    let result =
        cx.me()
            .grants
            .maptrack
            .unmap(op.handle, op.host_addr, op.dev_bus_addr, |_, entry| {
                remove_host_pte(entry.pte, entry.mfn)
            });
    op.status = match result {
        Ok(release) => {
            // The mapping must be gone from every TLB before the granter may reuse the frame.
            crate::mm::ft::flush_everywhere();
            if let Some(r) = release {
                // A granter destroyed meanwhile has nothing left to update.
                if let Ok(granter) = cx.domain(r.granter) {
                    let frames = entry_frames(&granter.grants.grants);
                    granter
                        .grants
                        .grants
                        .finish_unmap(&EntryFrames(&frames), &r);
                }
                drop_refs(r.mfn, r.frame_refs());
            }
            g::GNTST_OKAY
        }
        Err(e) => e.status(),
    };
    put(
        cx,
        at,
        offset_of!(g::GnttabUnmapGrantRef, status),
        op.status,
    )
}

/// `GNTTABOP_copy` operations read, done and written back at a time.
const COPY_CHUNK: usize = 16;

/// What a grant copy needs from the hypervisor ([`gt::CopyEnv`]), with what it keeps from
/// one operation to the next of a call: the entry frames of the granter last named, and
/// whether the operation's frames need references.
struct CopyCx<'a, 'b> {
    cx: &'a mut Hc<'b>,
    /// The granter last named, its grant frames, and their views (rebuilt whenever the
    /// domain's frames differ, so a list is never used for frames it was not made from).
    cached: Option<(
        DomId,
        [Mfn; gt::DEFAULT_MAX_FRAMES as usize],
        EntryFrameList,
    )>,
    /// Whether the current operation holds both its domains' locks from start to end, so
    /// that its frames may be used without references (`usable_while_locked`).
    locked_throughout: bool,
    /// For each end held (source, then destination), whether references were taken, and
    /// in whose name.
    took: [(bool, DomId); 2],
    depth: usize,
}

impl CopyCx<'_, '_> {
    /// Whether `op` keeps both its domains locked from start to end: it names at most one
    /// domain besides the caller (the context keeps the caller and one other locked; a
    /// second other would let go of the first).
    fn one_other(op: &g::GnttabCopy, caller: DomId) -> bool {
        let other = |p: &g::GnttabCopyPtr, flag: u16| {
            (op.flags & flag != 0 && p.domid != DOMID_SELF && p.domid != caller).then_some(p.domid)
        };
        match (
            other(&op.source, g::GNTCOPY_SOURCE_GREF),
            other(&op.dest, g::GNTCOPY_DEST_GREF),
        ) {
            (Some(a), Some(b)) => a == b,
            _ => true,
        }
    }
}

/// The entry frames of `d`'s `grants`, from `cache` if it holds that domain's list for the
/// same frames, else made and kept there.
fn cached_frames<'c>(
    cache: &'c mut Option<(
        DomId,
        [Mfn; gt::DEFAULT_MAX_FRAMES as usize],
        EntryFrameList,
    )>,
    d: DomId,
    grants: &Grants,
) -> &'c EntryFrameList {
    let fresh = match cache {
        Some((dom, mfns, list)) => *dom != d || grants.frames() != &mfns[..list.len],
        None => true,
    };
    if fresh {
        let mut mfns = [Mfn(0); gt::DEFAULT_MAX_FRAMES as usize];
        for (slot, m) in mfns.iter_mut().zip(grants.frames()) {
            *slot = *m;
        }
        *cache = Some((d, mfns, entry_frames(grants)));
    }
    match cache {
        Some((_, _, list)) => list,
        None => unreachable!("filled just above"),
    }
}

impl CopyCx<'_, '_> {
    /// The common operation done the short way: a copy between a grant and a frame of the
    /// caller's, which succeeds. One lookup of the granter, its grant pinned for the copy as
    /// always, and no frame references: the caller and the granter stay locked from start to
    /// end, and both frames are checked for it (`usable_while_locked`). `false` if the
    /// operation is of another kind or anything on the way would fail: nothing is left
    /// changed then, and [`gt::copy_one`] does it again and answers with the right status.
    fn quick(&mut self, op: &g::GnttabCopy, caller: DomId) -> bool {
        use gt::CopyTarget::{Frame, Grant};
        let Ok(args) = gt::check_copy(op, caller) else {
            return false;
        };
        let (granter, gref, frame, to_grant) = match (args.source.target, args.dest.target) {
            (Grant { granter, gref }, Frame(m)) => (granter, gref, m, false),
            (Frame(m), Grant { granter, gref }) => (granter, gref, m, true),
            _ => return false,
        };
        let usable = |mfn, owner, writable| {
            matches!(
                ft::with(|t, _| t.usable_while_locked(mfn, owner, writable)),
                Ok(true)
            )
        };
        if !usable(frame, caller, !to_grant) {
            return false;
        }
        let Ok(target) = self.cx.domain(granter) else {
            return false;
        };
        let grants = &mut target.grants.grants;
        let frames = EntryFrames(cached_frames(&mut self.cached, granter, grants));
        let Ok(mfn) = grants.acquire_for_copy(&frames, caller, gref, to_grant) else {
            return false;
        };
        if usable(mfn, granter, to_grant) {
            let ((src, so), (dst, dof)) = if to_grant {
                ((frame, args.source.offset), (mfn, args.dest.offset))
            } else {
                ((mfn, args.source.offset), (frame, args.dest.offset))
            };
            // Both frames are their owners', who stay locked (checked just above).
            physmem::copy(
                src,
                usize::from(so),
                dst,
                usize::from(dof),
                usize::from(args.len),
            );
            grants.release_for_copy(&frames, gref, to_grant);
            return true;
        }
        grants.release_for_copy(&frames, gref, to_grant);
        false
    }
}

impl gt::CopyEnv for CopyCx<'_, '_> {
    fn with_grants<R>(
        &mut self,
        d: DomId,
        f: impl FnOnce(&mut Grants, &dyn gt::GrantFrames) -> R,
    ) -> Option<R> {
        let target = self.cx.domain(d).ok()?;
        let grants = &mut target.grants.grants;
        let list = cached_frames(&mut self.cached, d, grants);
        Some(f(grants, &EntryFrames(list)))
    }
    fn get_frame(&mut self, mfn: Mfn, owner: DomId, writable: bool) -> Result<(), FrameRefError> {
        let free = self.locked_throughout
            && ft::with(|t, _| t.usable_while_locked(mfn, owner, writable))
                .map_err(|_| FrameRefError::NotOwned)?;
        if !free {
            take_refs(mfn, owner, one_use(writable))?;
        }
        if let Some(slot) = self.took.get_mut(self.depth) {
            *slot = (!free, owner);
            self.depth += 1;
        }
        Ok(())
    }
    fn put_frame(&mut self, mfn: Mfn, writable: bool) {
        self.depth = self.depth.saturating_sub(1);
        let (took, owner) = self
            .took
            .get(self.depth)
            .copied()
            .unwrap_or((true, DOMID_SELF));
        if took {
            // The owner's lock again before its frame's record changes (the frame table's
            // one-writer rule): an operation naming two other domains let go of the source's
            // granter when it locked the destination's (red team, session 10). Today
            // GNTTABOP_copy runs with the world exclusive (`guest::shared_path`), where this
            // is a look-up; it keeps the rule if the call ever runs shared.
            let _ = self.cx.domain(owner);
            drop_refs(mfn, one_use(writable));
        }
    }
    fn copy_bytes(&mut self, src: Mfn, src_offset: u16, dest: Mfn, dest_offset: u16, len: u16) {
        // Both frames are held (references taken, or their owners locked throughout).
        physmem::copy(
            src,
            usize::from(src_offset),
            dest,
            usize::from(dest_offset),
            usize::from(len),
        );
    }
}

/// `GNTTABOP_copy` for the `count` operations at `uops` (checked to lie in guest space),
/// [`COPY_CHUNK`] at a time: read, done, and written back with their statuses. A frame of
/// a domain that stays locked for the whole operation is used without references (two
/// atomic reads instead of four reference changes); any other takes them.
fn copy_batch(cx: &mut Hc, uops: u64, count: u64) -> Result<(), Errno> {
    use zerocopy::FromBytes;
    const SIZE: usize = size_of::<g::GnttabCopy>();
    const STATUS: usize = offset_of!(g::GnttabCopy, status);
    let caller = cx.id();
    let mut env = CopyCx {
        cx,
        cached: None,
        locked_throughout: false,
        took: [(false, DOMID_SELF); 2],
        depth: 0,
    };
    let mut done = 0u64;
    // The operations as the guest laid them out, padding included: written back as read,
    // but for the statuses.
    let mut raw = [0u8; COPY_CHUNK * SIZE];
    while done < count {
        let n = (count - done).min(COPY_CHUNK as u64) as usize;
        let at = uops + done * SIZE as u64;
        let raw = &mut raw[..n * SIZE];
        env.cx.space().read_bytes(GuestPtr::new(at), raw)?;
        for bytes in raw.chunks_exact_mut(SIZE) {
            let op = g::GnttabCopy::read_from_bytes(bytes).map_err(|_| Errno::EFAULT)?;
            let status = if env.quick(&op, caller) {
                g::GNTST_OKAY
            } else {
                env.locked_throughout = CopyCx::one_other(&op, caller);
                env.depth = 0;
                gt::status_of(&gt::copy_one(&mut env, caller, &op))
            };
            bytes[STATUS..STATUS + 2].copy_from_slice(&status.to_le_bytes());
        }
        env.cx.space().write_bytes(GuestPtr::new(at), raw)?;
        done += n as u64;
    }
    Ok(())
}

/// Teardown of `victim`'s grant state before its memory goes (`victim` is already out of
/// `domains`, which holds every other domain): its mappings of grants (PTEs removed,
/// references dropped), the mappings other domains hold of its grants (revoked), then its
/// grant frames (the hypervisor's references dropped so that the frame table can free them).
pub fn release(victim: &mut Domain, domains: &mut Domains) {
    let id = victim.id;
    // alloc: teardown is dom0's (destroydomain); bounded by the mappings that exist.
    let mut releases = victim.grants.maptrack.release_all();
    for other in domains.values_mut() {
        releases.extend(other.grants.maptrack.revoke(id)); // alloc: as above
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
    crate::mm::ft::flush_everywhere();
    for (i, r) in releases.into_iter().enumerate() {
        if kept.contains(&i) {
            continue;
        }
        let granter = if r.granter == id {
            Some(&mut *victim)
        } else {
            domains.get_mut(&r.granter)
        };
        if let Some(granter) = granter {
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
