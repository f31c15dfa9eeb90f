//! Direct paging (DESIGN.md §4): `mmu_update`, `update_va_mapping`, `mmuext_op` and
//! `memory_op`, on top of the frame table (`mm/frame_table.rs`), which validates every
//! page-table change.
//!
//! TLB flushing: a guest's root is reloaded (CR3 written) on every return to the guest,
//! and without PCID that flushes every non-global translation, so with one pCPU a stale
//! translation never survives a hypercall. The flush requests (`UVMF_*`, `MMUEXT_*FLUSH*`,
//! `INVLPG`) are therefore checked and then satisfied by the return itself. With SMP,
//! shootdowns go to the other pCPUs running the domain (the frame table's `flush_tlbs`).
//!
//! Long batches are not refused: after [`CHUNK`] items the hypercall is continued, as
//! Xen does: the guest's argument registers are advanced, its RIP is moved back onto the
//! `int 0x82`, and the progress is kept in the vCPU, so events can be delivered between
//! chunks.

use core::mem::offset_of;

use guest_abi::errno::Errno;
use guest_abi::memory as m;
use guest_abi::types::{DOMID_SELF, DomId};

use super::aspace;
use super::mem::{AsBytes, Pod};
use crate::arch::x86_64::frame::TrapFrame;
use crate::domain::{Continuation, Domain};
use crate::mm::frame_table::{PageMemory, PageType};
use crate::mm::{Mfn, PAGE_SIZE, frames, ft, m2p};

/// Items handled before a batch is continued.
pub const CHUNK: u64 = 1024;
/// Length of `int 0x82`, which a continued hypercall re-executes.
const HYPERCALL_INSN_LEN: u64 = 2;
/// Size of one `mmu_update` request and one `mmuext_op` operation in guest memory.
const MMU_UPDATE_SIZE: u64 = 16;
const MMUEXT_OP_SIZE: u64 = 24;

type HcResult = Result<u64, Errno>;
type Domains = alloc::collections::BTreeMap<DomId, Domain>;

/// What a batch hypercall did.
pub enum Batch {
    /// Finished (or failed): the result goes to `rax`.
    Done(HcResult),
    /// Continued: the registers were rewritten, `rax` holds the hypercall number again.
    Continued,
}

/// Only the calling domain may be named until domain control exists.
fn self_domain(dom: &Domain, named: u64) -> Result<(), Errno> {
    let named = DomId::try_from(named).map_err(|_| Errno::ESRCH)?;
    if named == DOMID_SELF || named == dom.id {
        Ok(())
    } else {
        Err(Errno::ESRCH)
    }
}

/// Common driver of `mmu_update` and `mmuext_op`: validates the batch arguments, resumes
/// a continued call, runs `one` on each item, records progress in `*done_ptr`, and
/// continues the call after [`CHUNK`] items.
fn batch(
    dom: &mut Domain,
    frame: &mut TrapFrame,
    item_size: u64,
    foreign_ok: impl Fn(DomId) -> bool,
    mut one: impl FnMut(&mut Domain, u64, DomId) -> Result<(), Errno>,
) -> Batch {
    let (list, count, done_ptr, foreign) = (frame.rdi, frame.rsi, frame.rdx, frame.r10);
    if count > u64::from(u32::MAX) {
        return Batch::Done(Err(Errno::EINVAL));
    }
    // The domain the items act on: the caller, or (dom0 only, where allowed) another.
    let subject = match DomId::try_from(foreign) {
        Ok(id) if id == DOMID_SELF || id == dom.id => dom.id,
        Ok(id) if dom.privileged && foreign_ok(id) => id,
        _ => return Batch::Done(Err(Errno::ESRCH)),
    };
    let Some(bytes) = count.checked_mul(item_size) else {
        return Batch::Done(Err(Errno::EFAULT));
    };
    if !super::mem::range_ok(list, bytes) {
        return Batch::Done(Err(Errno::EFAULT));
    }
    // An unusable `done` pointer fails the call before it acts (guest-abi's errors).
    if done_ptr != 0 {
        let space = aspace(dom);
        let mut current = [0u8; 4];
        if space
            .read(done_ptr, &mut current)
            .and_then(|()| space.write(done_ptr, &current))
            .is_err()
        {
            return Batch::Done(Err(Errno::EFAULT));
        }
    }
    let key = (frame.rax, list, count);
    let mut done = match dom.vcpu_mut().continuation.take() {
        Some(c) if (c.hypercall, c.next, c.remaining) == key => c.done,
        _ => 0,
    };
    let space = aspace(dom);
    let report = |done: u64| {
        if done_ptr != 0 {
            let _ = space.write(done_ptr, &(done as u32).to_le_bytes());
        }
    };
    for i in 0..count {
        if i == CHUNK {
            let next = list + i * item_size;
            let remaining = count - i;
            dom.vcpu_mut().continuation = Some(Continuation {
                hypercall: frame.rax,
                next,
                remaining,
                done,
            });
            frame.rdi = next;
            frame.rsi = remaining;
            frame.rip -= HYPERCALL_INSN_LEN;
            return Batch::Continued;
        }
        if let Err(e) = one(dom, list + i * item_size, subject) {
            report(done);
            return Batch::Done(Err(e));
        }
        done += 1;
    }
    report(done);
    Batch::Done(Ok(0))
}

/// `mmu_update(reqs, count, done, foreigndom)`.
pub fn mmu_update(dom: &mut Domain, frame: &mut TrapFrame) -> Batch {
    batch(
        dom,
        frame,
        MMU_UPDATE_SIZE,
        |_| false,
        |dom, at, _| {
            let req: m::MmuUpdate = aspace(dom).read_pod(at)?;
            let ptr = req.ptr & !m::MMU_UPDATE_CMD_MASK;
            match req.ptr & m::MMU_UPDATE_CMD_MASK {
                cmd @ (m::MMU_NORMAL_PT_UPDATE | m::MMU_PT_UPDATE_PRESERVE_AD) => {
                    if !ptr.is_multiple_of(8) {
                        return Err(Errno::EINVAL);
                    }
                    let table = Mfn::from_phys(ptr);
                    let index = ((ptr % PAGE_SIZE) / 8) as usize;
                    let preserve = cmd == m::MMU_PT_UPDATE_PRESERVE_AD;
                    ft::with(|t, mem| t.update_entry(mem, table, index, req.val, dom.id, preserve))
                        .map(drop)
                }
                m::MMU_MACHPHYS_UPDATE => {
                    let mfn = Mfn::from_phys(ptr);
                    if !ft::owned_by(mfn, dom.id) {
                        return Err(Errno::EPERM);
                    }
                    m2p::set(mfn, req.val);
                    Ok(())
                }
                _ => Err(Errno::ENOSYS),
            }
        },
    )
}

/// The L1 table and index that map `va` in the address space rooted at `l4`.
pub fn l1_slot(dom: &Domain, l4: Mfn, va: u64) -> Result<(Mfn, usize), Errno> {
    const PRESENT: u64 = 1;
    const HUGE: u64 = 1 << 7;
    const ADDR: u64 = 0x000F_FFFF_FFFF_F000;
    let mem = ft::DirectMem;
    let mut table = l4;
    for level in (1..4).rev() {
        if !ft::owned_by(table, dom.id) {
            return Err(Errno::EINVAL);
        }
        let entry = mem.read_entry(table, ((va >> (12 + 9 * level)) & 511) as usize);
        if entry & PRESENT == 0 || entry & HUGE != 0 {
            return Err(Errno::EINVAL);
        }
        table = Mfn::from_phys(entry & ADDR);
    }
    Ok((table, ((va >> 12) & 511) as usize))
}

/// `update_va_mapping(va, val, flags)`: sets the L1 entry that maps `va` in the current
/// address space.
pub fn update_va_mapping(dom: &mut Domain, va: u64, val: u64, flags: u64) -> HcResult {
    if !super::mem::range_ok(va, 1) {
        return Err(Errno::EINVAL);
    }
    let flush = flags & m::UVMF_FLUSHTYPE_MASK;
    if flush == m::UVMF_FLUSHTYPE_MASK {
        return Err(Errno::EINVAL);
    }
    let (l1, index) = l1_slot(dom, dom.vcpu().l4, va)?;
    // Only a validated L1 may be changed this way; a plain write would not map anything.
    if ft::with(|t, _| t.info(l1).map(|f| f.current_type())) != Some(PageType::L1) {
        return Err(Errno::EINVAL);
    }
    ft::with(|t, mem| t.update_entry(mem, l1, index, val, dom.id, false))?;
    Ok(0)
}

/// `mmuext_op(ops, count, done, foreigndom)`.
/// dom0 may pin and unpin another domain's tables (the domain builder's
/// `foreigndom`); everything else acts on the caller.
pub fn mmuext_op(dom: &mut Domain, others: &Domains, frame: &mut TrapFrame) -> Batch {
    batch(
        dom,
        frame,
        MMUEXT_OP_SIZE,
        |id| others.contains_key(&id),
        |dom, at, subject| {
            let op: m::MmuextOp = aspace(dom).read_pod(at)?;
            let foreign = subject != dom.id;
            let id = subject;
            let mfn = Mfn(op.arg1);
            let pin = |level| ft::with(|t, mem| t.pin(mem, mfn, id, level));
            match op.cmd {
                m::MMUEXT_PIN_L1_TABLE => pin(PageType::L1),
                m::MMUEXT_PIN_L2_TABLE => pin(PageType::L2),
                m::MMUEXT_PIN_L3_TABLE => pin(PageType::L3),
                m::MMUEXT_PIN_L4_TABLE => pin(PageType::L4),
                m::MMUEXT_UNPIN_TABLE => ft::with(|t, mem| t.unpin(mem, mfn, id)),
                _ if foreign
                    && !matches!(op.cmd, m::MMUEXT_PIN_L1_TABLE..=m::MMUEXT_UNPIN_TABLE) =>
                {
                    Err(Errno::EINVAL)
                }
                m::MMUEXT_NEW_BASEPTR => {
                    let old = dom.vcpu_mut().l4;
                    ft::with(|t, mem| t.set_base(mem, id, Some(old), mfn))?;
                    dom.vcpu_mut().l4 = mfn;
                    crate::arch::x86_64::entry::load_guest_root(mfn);
                    Ok(())
                }
                m::MMUEXT_TLB_FLUSH_LOCAL | m::MMUEXT_TLB_FLUSH_MULTI | m::MMUEXT_TLB_FLUSH_ALL => {
                    Ok(())
                }
                m::MMUEXT_INVLPG_LOCAL | m::MMUEXT_INVLPG_MULTI | m::MMUEXT_INVLPG_ALL => {
                    if super::mem::is_canonical(op.arg1) {
                        Ok(())
                    } else {
                        Err(Errno::EINVAL)
                    }
                }
                m::MMUEXT_CLEAR_PAGE => with_writable(id, mfn, |dst| dst.fill(0)),
                m::MMUEXT_COPY_PAGE => {
                    let src = Mfn(op.arg2);
                    if src == mfn {
                        // A frame copied onto itself: nothing to do, and the two views
                        // of it must not alias.
                        return with_writable(id, mfn, |_| ());
                    }
                    ft::with(|t, _| t.get_page(src, id))?;
                    let result =
                        with_writable(id, mfn, |dst| dst.copy_from_slice(frame_bytes(src)));
                    let _ = ft::with(|t, _| t.put_page(src));
                    result
                }
                m::MMUEXT_NEW_USER_BASEPTR => Err(Errno::EINVAL),
                _ => Err(Errno::ENOSYS),
            }
        },
    )
}

pub fn frame_bytes(mfn: Mfn) -> &'static [u8] {
    // SAFETY: the caller holds a reference on `mfn`, a RAM frame of the domain reached
    // through the direct map.
    unsafe {
        core::slice::from_raw_parts(
            crate::arch::x86_64::layout::phys_to_virt(mfn.phys()) as *const u8,
            PAGE_SIZE as usize,
        )
    }
}

/// Runs `f` on frame `mfn` of `dom` while holding a writable type reference on it, so it
/// cannot be a page table meanwhile.
pub fn with_writable(dom: DomId, mfn: Mfn, f: impl FnOnce(&mut [u8])) -> Result<(), Errno> {
    ft::with(|t, mem| t.get_page_type(mem, mfn, dom, PageType::Writable))?;
    // SAFETY: the writable type reference makes the frame a data frame of `dom` for the
    // duration; it is RAM reached through the direct map.
    let bytes = unsafe {
        core::slice::from_raw_parts_mut(
            crate::arch::x86_64::layout::phys_to_virt(mfn.phys()) as *mut u8,
            PAGE_SIZE as usize,
        )
    };
    f(bytes);
    ft::with(|t, mem| t.put_page_type(mem, mfn))
}

/// `memory_op(cmd, arg)`.
pub fn memory_op(dom: &mut Domain, others: &mut Domains, cmd: u64, arg: u64) -> HcResult {
    let space = aspace(dom);
    // The domain a reservation query names (dom0 may ask about any).
    let named_domain = |dom: &Domain, others: &Domains| -> Result<(u64, u64), Errno> {
        let mut raw = [0u8; 2];
        space.read(arg, &mut raw)?;
        let id = u16::from_le_bytes(raw);
        if id == DOMID_SELF || id == dom.id {
            return Ok((dom.tot_pages, dom.max_pages));
        }
        match others.get(&id) {
            Some(d) if dom.privileged => Ok((d.tot_pages, d.max_pages)),
            Some(_) => Err(Errno::EPERM),
            None => Err(Errno::ESRCH),
        }
    };
    match u32::try_from(cmd).map_err(|_| Errno::ENOSYS)? {
        m::XENMEM_MEMORY_MAP => {
            let map: m::MemoryMap = space.read_pod(arg)?;
            if map.nr_entries < 1 {
                return Err(Errno::EINVAL);
            }
            let entry = m::E820Entry {
                addr: 0,
                size: dom.max_pages * PAGE_SIZE,
                kind: m::E820_RAM,
            };
            space.write_pod(map.buffer, &entry)?;
            space.write(
                arg + offset_of!(m::MemoryMap, nr_entries) as u64,
                &1u32.to_le_bytes(),
            )?;
            Ok(0)
        }
        m::XENMEM_CURRENT_RESERVATION => Ok(named_domain(dom, others)?.0),
        m::XENMEM_MAXIMUM_RESERVATION => Ok(named_domain(dom, others)?.1),
        m::XENMEM_MAXIMUM_RAM_PAGE => Ok(ft::with(|t, _| t.len()).saturating_sub(1)),
        m::XENMEM_MACHPHYS_MAPPING => {
            let entries = ft::with(|t, _| t.len());
            let mapping = m::MachphysMapping {
                v_start: m2p::RO_M2P_BASE,
                v_end: m2p::RO_M2P_BASE + entries * 8,
                max_mfn: entries.saturating_sub(1),
            };
            space.write_pod(arg, &mapping)?;
            Ok(0)
        }
        m::XENMEM_POPULATE_PHYSMAP => populate_physmap(dom, others, arg),
        m::XENMEM_DECREASE_RESERVATION => decrease_reservation(dom, arg),
        m::XENMEM_XENIA_FRAME_COUNTS => {
            let (total, by_type) = ft::with(|t, _| {
                let by_type = t.count_by_type(dom.id);
                (by_type.iter().sum(), by_type)
            });
            space.write_pod(arg, &m::XeniaFrameCounts { total, by_type })?;
            Ok(0)
        }
        m::XENMEM_XENIA_CHECK_FRAME_TABLE => {
            // dom0 only: the check reads every frame (time in proportion to the machine).
            if !dom.privileged {
                return Err(Errno::EPERM);
            }
            check_frame_table(core::iter::once(&*dom).chain(others.values())).map(|_| 0)
        }
        _ => Err(Errno::ENOSYS),
    }
}

/// Runs the frame table's consistency check, and checks that every frame the hypervisor
/// writes for `domains` (all of them) is held for those writes and that no frame belongs to
/// a domain not among them; logs the outcome.
pub fn check_frame_table<'a>(
    domains: impl Iterator<Item = &'a Domain> + Clone,
) -> Result<u64, Errno> {
    let outcome = ft::with(|t, mem| {
        t.check_consistency(mem)?;
        t.check_hypervisor_writes(
            domains
                .clone()
                .flat_map(|d| d.hypervisor_written().map(move |m| (m, d.id))),
        )?;
        // Domain ids are 15-bit: a bitmap of the live ones, on the stack.
        let mut live = [0u64; 1 << 15 >> 6];
        for d in domains.clone() {
            live[usize::from(d.id >> 6) % live.len()] |= 1 << (d.id & 63);
        }
        t.check_owners(|id| live[usize::from(id >> 6) % live.len()] & (1 << (id & 63)) != 0)?;
        Ok::<u64, alloc::string::String>(t.len())
    });
    match outcome {
        Ok(frames) => {
            log::info!(target: "mm", "frame table check: consistent ({frames} frames)");
            Ok(frames)
        }
        Err(why) => {
            log::error!(target: "mm", "frame table check: INCONSISTENT: {why}");
            Err(Errno::EIO)
        }
    }
}

/// Reads a reservation request for the calling domain (order-0 extents only).
fn reservation(dom: &Domain, arg: u64) -> Result<m::MemoryReservation, Errno> {
    let r: m::MemoryReservation = aspace(dom).read_pod(arg)?;
    if r.extent_order != 0 {
        return Err(Errno::EINVAL);
    }
    let bytes = r.nr_extents.checked_mul(8).ok_or(Errno::EFAULT)?;
    if !super::mem::range_ok(r.extent_start, bytes) {
        return Err(Errno::EFAULT);
    }
    Ok(r)
}

/// `XENMEM_populate_physmap`: a fresh zeroed frame for each listed PFN, up to the
/// maximum reservation; each frame's MFN is written back over its PFN (PV). Returns how
/// many extents were populated (fewer than asked means memory or the maximum ran out).
fn populate_physmap(dom: &mut Domain, others: &mut Domains, arg: u64) -> HcResult {
    let r = reservation(dom, arg)?;
    let space = aspace(dom);
    // dom0 populates the domains it builds; everyone else only itself.
    let target: &mut Domain = if r.domid == DOMID_SELF || r.domid == dom.id {
        dom
    } else if dom.privileged {
        others.get_mut(&r.domid).ok_or(Errno::ESRCH)?
    } else {
        return Err(Errno::EPERM);
    };
    let mut done = 0;
    while done < r.nr_extents && target.tot_pages < target.max_pages {
        let at = r.extent_start + done * 8;
        let pfn: u64 = space.read_pod(at)?;
        // Guest memory never eats the hypervisor's reserve (mm::heap::RESERVE).
        if !crate::mm::heap::headroom(PAGE_SIZE) {
            break;
        }
        let Some(mfn) = frames::alloc_zeroed() else {
            break;
        };
        if let Err(e) = ft::give(mfn, target.id) {
            frames::free_contiguous(mfn, 1);
            return Err(e);
        }
        m2p::set(mfn, pfn);
        target.tot_pages += 1;
        if let Err(e) = space.write_pod(at, &mfn.0) {
            // The caller cannot learn the frame: take it back rather than leak it.
            let _ = ft::take_back(mfn, target.id);
            m2p::set(mfn, m2p::INVALID);
            frames::free_contiguous(mfn, 1);
            target.tot_pages -= 1;
            return Err(e);
        }
        target
            .shared()
            .arch
            .max_pfn
            .fetch_max(pfn.saturating_add(1), core::sync::atomic::Ordering::Relaxed);
        done += 1;
    }
    Ok(done)
}

/// `XENMEM_decrease_reservation`: gives back the listed machine frames (PV guests name
/// MFNs). A frame still mapped, pinned or otherwise referenced is not taken: the call
/// stops there and returns how many extents were released.
fn decrease_reservation(dom: &mut Domain, arg: u64) -> HcResult {
    let r = reservation(dom, arg)?;
    self_domain(dom, u64::from(r.domid))?;
    let space = aspace(dom);
    let mut done = 0;
    while done < r.nr_extents {
        let mfn = Mfn(space.read_pod::<u64>(r.extent_start + done * 8)?);
        if ft::take_back(mfn, dom.id).is_err() {
            break;
        }
        m2p::set(mfn, m2p::INVALID);
        frames::free_contiguous(mfn, 1);
        dom.tot_pages = dom.tot_pages.saturating_sub(1);
        done += 1;
    }
    Ok(done)
}

// SAFETY: repr(C) integer structures from guest-abi, filled from guest bytes.
unsafe impl Pod for m::MmuUpdate {}
// SAFETY: as above (u32, padding, u64, u64).
unsafe impl Pod for m::MmuextOp {}
// SAFETY: as above (u32, padding, u64).
unsafe impl Pod for m::MemoryMap {}
// SAFETY: as above (u64, u64, u32, u32, u16, padding).
unsafe impl Pod for m::MemoryReservation {}
// SAFETY: packed (u64, u64, u32): no padding.
unsafe impl Pod for m::E820Entry {}
// SAFETY: as above.
unsafe impl AsBytes for m::E820Entry {}
// SAFETY: three u64: no padding.
unsafe impl Pod for m::MachphysMapping {}
// SAFETY: as above.
unsafe impl AsBytes for m::MachphysMapping {}
// SAFETY: eight u64: no padding.
unsafe impl Pod for m::XeniaFrameCounts {}
// SAFETY: as above.
unsafe impl AsBytes for m::XeniaFrameCounts {}
