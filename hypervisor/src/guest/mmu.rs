//! Direct paging (DESIGN.md §4): `mmu_update`, `update_va_mapping`, `mmuext_op` and
//! `memory_op`, on top of the frame table (`mm/frame_table.rs`), which validates every
//! page-table change.
//!
//! TLB flushing: a guest's root is reloaded (CR3 written) on every return to the guest,
//! and without PCID that flushes every non-global translation, so the calling vCPU's own
//! flush (`*_LOCAL`) is satisfied by the return itself. A flush of other vCPUs (`UVMF_ALL`,
//! a vCPU mask, `MMUEXT_*_ALL`, `*_MULTI`) is a flush request to the pCPUs running those
//! vCPUs, waited for before the call returns (`flush_vcpus`); a vCPU that is not running
//! holds no translation at all. Safety never depends on the guest's flushes: the frame
//! table flushes every pCPU before a frame changes use (`mm::ft`).
//!
//! Long batches are not refused: after [`CHUNK`] items the hypercall is continued, as
//! Xen does: the guest's argument registers are advanced, its RIP is moved back onto the
//! `int 0x82`, and the progress is kept in the vCPU, so events can be delivered between
//! chunks.

use core::mem::offset_of;

use guest_abi::errno::Errno;
use guest_abi::memory as m;
use guest_abi::types::{DOMID_IO, DOMID_SELF, DomId};

use super::context::{Hc, HcResult, Ret};
use super::mem::{GuestPtr, GuestSlice};
use crate::domain::{Continuation, Domain};
use crate::mm::frame_table::{PageMemory, PageType};
use crate::mm::{Mfn, PAGE_SIZE, frames, ft, m2p, physmem};

/// Items handled before a batch is continued.
pub const CHUNK: u64 = 1024;

/// Bytes of a batch's items copied from the guest at once when reading ahead (32
/// `mmu_update` requests).
const AHEAD_BYTES: usize = 512;

/// Common driver of `mmu_update` and `mmuext_op`: validates the batch arguments, resumes
/// a continued call, runs `one` on each item, records progress in `*done_ptr`, and
/// continues the call after [`CHUNK`] items. `foreign_ok` says whether the control domain
/// may name that domain as `foreigndom`. With `read_ahead`, items are copied from the guest
/// [`AHEAD_BYTES`] at a time rather than one by one (one page walk for many items): for
/// `mmu_update`, whose items cannot switch the address space the list is read through (an
/// item that rewrites a later item's bytes, by a plain-memory update of the list's own
/// frame, is acted on as the list was when read: the values are checked either way).
fn batch<T: zerocopy::FromBytes>(
    cx: &mut Hc,
    read_ahead: bool,
    foreign_ok: impl Fn(&mut Hc, DomId) -> bool,
    mut one: impl FnMut(&mut Hc, T, DomId) -> Result<(), Errno>,
) -> HcResult {
    let [list, count, done_ptr, foreign, _] = cx.args();
    if count > u64::from(u32::MAX) {
        return Err(Errno::EINVAL);
    }
    // The domain the items act on: the caller, or (dom0 only, where allowed) another.
    let subject = match DomId::try_from(foreign) {
        Ok(id) if id == DOMID_SELF || id == cx.id() => cx.id(),
        Ok(id) if cx.privileged().is_ok() && foreign_ok(cx, id) => id,
        _ => return Err(Errno::ESRCH),
    };
    let items = GuestSlice::<T>::new(list, count)?;
    let done_ptr = GuestPtr::<u32>::new(done_ptr);
    // Guest memory is always reached through the vCPU's *current* address space: an item
    // may switch it (`MMUEXT_NEW_BASEPTR`), and the old root may then be unpinned and
    // rewritten by a later item, so a space taken before the loop would walk forged tables
    // (the hypervisor would write `done` wherever they say).
    let space = cx.space();
    // An unusable `done` pointer fails the call before it acts (guest-abi's errors).
    if !done_ptr.is_null()
        && space
            .read(done_ptr)
            .and_then(|current| space.write(done_ptr, &current))
            .is_err()
    {
        return Err(Errno::EFAULT);
    }
    let key = (cx.call_number(), list, count);
    let mut done = match cx.vcpu().continuation.take() {
        Some(c) if (c.hypercall, c.next, c.remaining) == key => c.done,
        _ => 0,
    };
    let report = |cx: &mut Hc, done: u64| {
        if !done_ptr.is_null() {
            let _ = cx.space().write(done_ptr, &(done as u32));
        }
    };
    let size = size_of::<T>().max(1);
    let per_fill = if read_ahead { AHEAD_BYTES / size } else { 0 };
    let mut ahead = [0u8; AHEAD_BYTES];
    let (mut filled, mut next) = (0usize, 0usize);
    for i in 0..count {
        let item = items.get(i).ok_or(Errno::EFAULT)?;
        if i == CHUNK {
            let remaining = count - i;
            cx.vcpu().continuation = Some(Continuation {
                hypercall: key.0,
                next: item.addr(),
                remaining,
                done,
            });
            let [_, _, done_arg, foreign_arg, r8] = cx.args();
            return Ok(Ret::Again([
                item.addr(),
                remaining,
                done_arg,
                foreign_arg,
                r8,
            ]));
        }
        if next == filled && per_fill > 0 {
            // Up to the end of the list or of this chunk. A copy that faults (some item
            // unreadable) leaves the items to be read one by one, so that the error comes at
            // the item it belongs to.
            let n = (per_fill as u64).min(count - i).min(CHUNK - i) as usize;
            let bytes = &mut ahead[..n * size];
            let copied = cx
                .space()
                .read_bytes(GuestPtr::new(item.addr()), bytes)
                .is_ok();
            (filled, next) = (if copied { n } else { 0 }, 0);
        }
        let value = if next < filled {
            next += 1;
            T::read_from_bytes(&ahead[(next - 1) * size..next * size]).map_err(|_| Errno::EFAULT)
        } else {
            cx.space().read(item)
        };
        let result = value.and_then(|value| one(cx, value, subject));
        if let Err(e) = result {
            report(cx, done);
            return Err(e);
        }
        done += 1;
    }
    report(cx, done);
    Ok(Ret::Value(0))
}

/// `mmu_update(reqs, count, done, foreigndom)`.
///
/// With `foreigndom = DOMID_IO` (dom0 only; `EPERM` for anyone else, as Xen's
/// `iomem_access_permitted` answers) every present entry written must map I/O memory: a
/// frame outside the frame table that `mm::iomem` allows (`EPERM` otherwise: RAM, the
/// hypervisor's devices). Not-present entries (unmapping) are accepted as with `DOMID_SELF`.
pub fn mmu_update(cx: &mut Hc) -> HcResult {
    if cx.arg(3) == u64::from(DOMID_IO) {
        cx.privileged()?;
    }
    batch(
        cx,
        true,
        |_, id| id == DOMID_IO,
        |cx, req: m::MmuUpdate, subject| {
            let me = cx.id();
            let ptr = req.ptr & !m::MMU_UPDATE_CMD_MASK;
            match req.ptr & m::MMU_UPDATE_CMD_MASK {
                cmd @ (m::MMU_NORMAL_PT_UPDATE | m::MMU_PT_UPDATE_PRESERVE_AD) => {
                    if !ptr.is_multiple_of(8) {
                        return Err(Errno::EINVAL);
                    }
                    if subject == DOMID_IO
                        && req.val & guest_abi::pte::PRESENT != 0
                        && !io_target_ok(req.val, me)
                    {
                        return Err(Errno::EPERM);
                    }
                    let table = Mfn::from_phys(ptr);
                    let index = ((ptr % PAGE_SIZE) / 8) as usize;
                    let preserve = cmd == m::MMU_PT_UPDATE_PRESERVE_AD;
                    ft::with(|t, mem| t.update_entry(mem, table, index, req.val, me, preserve))
                        .map(drop)
                        .inspect_err(|e| {
                            refused(me, "mmu_update", table, Some((index, req.val)), *e)
                        })
                }
                m::MMU_MACHPHYS_UPDATE => {
                    let mfn = Mfn::from_phys(ptr);
                    if !ft::owned_by(mfn, me) {
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

/// Whether present entry `val` maps a frame `dom` may map as I/O memory (`mm::iomem`): not
/// RAM the frame table describes, not the hypervisor's.
fn io_target_ok(val: u64, dom: DomId) -> bool {
    let mfn = Mfn((val & guest_abi::pte::ADDR_MASK) >> 12);
    ft::with(|t, _| t.is_io_frame(mfn)) && crate::mm::iomem::allowed(mfn, dom)
}

/// Logs, at debug level (`loglvl=debug`), a page-table update the frame table refused: the
/// entry (level, index, table, new value) and the rule it broke, as the errors table of
/// `mm/frame_table.rs` (and guest-abi's porting guide) states it, so that a porter sees why
/// without a debugger. Never above debug: a guest could otherwise flood the log.
fn refused(dom: DomId, call: &str, table: Mfn, entry: Option<(usize, u64)>, e: Errno) {
    if !log::log_enabled!(target: "mm", log::Level::Debug) {
        return;
    }
    let kind = ft::with(|t, _| t.current_type(table));
    let level = match kind {
        Some(PageType::L1) => "L1",
        Some(PageType::L2) => "L2",
        Some(PageType::L3) => "L3",
        Some(PageType::L4) => "L4",
        _ => "non-table",
    };
    let rule = match (kind, e) {
        (_, Errno::EPERM) => "an L1 entry may not map a frame outside RAM (MMIO, holes)",
        (Some(PageType::L1), Errno::EBUSY) => {
            "an L1 entry may only map the domain's own frames; writable only a frame that \
             is no page table (and not read-only to the guest); reference counts must not \
             be full"
        }
        (Some(PageType::L1), Errno::EINVAL) => {
            "present L1 entries may not set cache attributes or bit 62, NX only if the CPU \
             has it, no address bit at or above the physical width; a not-present entry may \
             not name RAM (L1TF)"
        }
        (Some(PageType::L4), Errno::EINVAL) => {
            "L4 slots 256-271 belong to the hypervisor; an L4 entry must point at the \
             domain's own frame, which must validate as an L3"
        }
        (Some(_), Errno::EINVAL) => {
            "an L2/L3 entry must point at the domain's own frame that validates as the next \
             level down, with no PS, G or cache-attribute bits"
        }
        (None, _) | (Some(_), _) => {
            "the table must be the domain's own frame, and a page table (pinned or in use) \
             or a frame it may write"
        }
    };
    match entry {
        Some((index, val)) => log::debug!(
            target: "mm",
            "d{dom}: {call} refused ({e:?}): {level} entry {index} of frame {:#x} := {val:#x}: {rule}",
            table.0,
        ),
        None => log::debug!(
            target: "mm",
            "d{dom}: {call} refused ({e:?}): frame {:#x} (now {level}): {rule}",
            table.0,
        ),
    }
}

/// The L1 table and index that map `va` in `dom`'s address space rooted at `l4`.
pub fn l1_slot(dom: DomId, l4: Mfn, va: u64) -> Result<(Mfn, usize), Errno> {
    use guest_abi::pte::{ADDR_MASK, PRESENT, PS};
    let mem = ft::DirectMem;
    let mut table = l4;
    for level in (1..4).rev() {
        if !ft::owned_by(table, dom) {
            return Err(Errno::EINVAL);
        }
        let entry = mem.read_entry(table, ((va >> (12 + 9 * level)) & 511) as usize);
        if entry & PRESENT == 0 || entry & PS != 0 {
            return Err(Errno::EINVAL);
        }
        table = Mfn::from_phys(entry & ADDR_MASK);
    }
    Ok((table, ((va >> 12) & 511) as usize))
}

/// `update_va_mapping(va, val, flags)`: sets the L1 entry that maps `va` in the current
/// address space.
pub fn update_va_mapping(cx: &mut Hc) -> HcResult {
    let (va, val, flags) = (cx.arg(0), cx.arg(1), cx.arg(2));
    if !super::mem::range_ok(va, 1) {
        return Err(Errno::EINVAL);
    }
    let flush = flags & m::UVMF_FLUSHTYPE_MASK;
    if flush == m::UVMF_FLUSHTYPE_MASK {
        return Err(Errno::EINVAL);
    }
    // With a flush, the rest of the flags is the scope: this vCPU, all of them, or the
    // address of a vCPU bitmap, which must be readable (Xen: `EFAULT` otherwise).
    let scope = flags & !m::UVMF_FLUSHTYPE_MASK;
    let others = match (flush, scope) {
        (m::UVMF_NONE, _) | (_, m::UVMF_LOCAL) => 0,
        (_, m::UVMF_ALL) => u64::MAX,
        _ => vcpu_mask(cx, scope)?,
    };
    let me = cx.id();
    let (l1, index) = l1_slot(me, cx.vcpu_ref().l4, va)?;
    // Only a validated L1 may be changed this way; a plain write would not map anything.
    if ft::with(|t, _| t.current_type(l1)) != Some(PageType::L1) {
        return Err(Errno::EINVAL);
    }
    ft::with(|t, mem| t.update_entry(mem, l1, index, val, me, false))
        .inspect_err(|e| refused(me, "update_va_mapping", l1, Some((index, val)), *e))?;
    flush_vcpus(cx, others);
    Ok(Ret::Value(0))
}

/// Flushes the TLBs of the caller's vCPUs in `mask` (bit per vCPU) that run on other pCPUs,
/// and returns once they have; the caller's own is flushed by its return.
fn flush_vcpus(cx: &mut Hc, mask: u64) {
    if mask == 0 {
        return;
    }
    let me = cx.id();
    let targets = super::online_cpus()
        .filter(|(_, c)| {
            c.current()
                .is_some_and(|(d, v)| d == me && v < 64 && mask & (1 << v) != 0)
        })
        .fold(0u64, |m, (i, _)| m | 1 << i);
    crate::arch::x86_64::ipi::flush_others(targets);
}

/// `mmuext_op(ops, count, done, foreigndom)`.
/// dom0 may pin and unpin another domain's tables (the domain builder's
/// `foreigndom`); everything else acts on the caller.
pub fn mmuext_op(cx: &mut Hc) -> HcResult {
    batch(
        cx,
        false,
        |cx, id| cx.exists(id),
        |cx, op: m::MmuextOp, subject| {
            let foreign = subject != cx.id();
            let id = subject;
            let mfn = Mfn(op.arg1);
            let pin = |level| {
                ft::with(|t, mem| t.pin(mem, mfn, id, level))
                    .inspect_err(|e| refused(id, "mmuext_op pin", mfn, None, *e))
            };
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
                    let old = cx.vcpu_ref().l4;
                    ft::with(|t, mem| t.set_base(mem, id, Some(old), mfn))?;
                    cx.vcpu().l4 = mfn;
                    crate::arch::x86_64::entry::load_guest_root(mfn);
                    Ok(())
                }
                m::MMUEXT_NEW_USER_BASEPTR => super::xenpv::new_user_baseptr(cx, mfn),
                m::MMUEXT_SET_LDT => set_ldt(cx, op.arg1, op.nr_ents()),
                m::MMUEXT_TLB_FLUSH_LOCAL => Ok(()),
                m::MMUEXT_TLB_FLUSH_ALL => {
                    flush_vcpus(cx, u64::MAX);
                    Ok(())
                }
                m::MMUEXT_TLB_FLUSH_MULTI => {
                    let mask = vcpu_mask(cx, op.arg2)?;
                    flush_vcpus(cx, mask);
                    Ok(())
                }
                m::MMUEXT_INVLPG_LOCAL | m::MMUEXT_INVLPG_MULTI | m::MMUEXT_INVLPG_ALL => {
                    if !super::mem::is_canonical(op.arg1) {
                        return Err(Errno::EINVAL);
                    }
                    // One page or all: the other pCPUs flush everything (no ranged request).
                    let others = match op.cmd {
                        m::MMUEXT_INVLPG_MULTI => vcpu_mask(cx, op.arg2)?,
                        m::MMUEXT_INVLPG_ALL => u64::MAX,
                        _ => 0,
                    };
                    flush_vcpus(cx, others);
                    Ok(())
                }
                m::MMUEXT_CLEAR_PAGE => with_writable(id, mfn, || physmem::zero(mfn)),
                m::MMUEXT_COPY_PAGE => {
                    let src = Mfn(op.arg2);
                    if src == mfn {
                        // A frame copied onto itself: nothing to do but the checks.
                        return with_writable(id, mfn, || ());
                    }
                    ft::with(|t, _| t.get_page(src, id))?;
                    let result = with_writable(id, mfn, || {
                        physmem::copy(src, 0, mfn, 0, PAGE_SIZE as usize)
                    });
                    let _ = ft::with(|t, _| t.put_page(src));
                    result
                }
                _ => Err(Errno::ENOSYS),
            }
        },
    )
}

/// Most entries an LDT may have (Xen's `MMUEXT_SET_LDT` check: 64 KiB of descriptors).
const LDT_ENTRIES_MAX: u32 = 8192;

/// `MMUEXT_SET_LDT(linear_addr, nr_ents)` with Xen's checks: the address (ignored when
/// `nr_ents` is 0) page-aligned and the whole table inside the guest's range, at most
/// [`LDT_ENTRIES_MAX`] entries, else `EINVAL`. Linux's `load_mm_ldt` sets the empty LDT on
/// every CPU at boot and on every switch to a process without one (`nr_ents` 0): that is
/// what Xenia has, as it loads no guest LDT. A non-empty LDT is accepted and not loaded
/// yet (logged): a selector that names it then faults as with no LDT (#GP, delivered to the
/// guest), never reaching another table.
fn set_ldt(cx: &mut Hc, linear: u64, entries: u32) -> Result<(), Errno> {
    let base = if entries == 0 { 0 } else { linear };
    if base % PAGE_SIZE != 0
        || entries > LDT_ENTRIES_MAX
        || (entries != 0 && !super::mem::range_ok(base, u64::from(entries) * 8))
    {
        return Err(Errno::EINVAL);
    }
    if entries != 0 {
        log::debug!(target: "mm",
            "d{}v{}: MMUEXT_SET_LDT of {entries} entries at {base:#x} accepted, not loaded",
            cx.id(), cx.vcpu_id());
    }
    Ok(())
}

/// The vCPUs a `*_MULTI` flush names: the bitmap of `xen_ulong_t` words at guest address
/// `at`, as Xen's `vcpumask_to_pcpumask` reads it. One word covers every vCPU a domain can
/// have ([`lifecycle::MAX_VCPUS`](crate::domain::lifecycle::MAX_VCPUS) is 32); bits past the
/// domain's vCPUs are ignored, as in Xen. An unreadable bitmap (a null pointer included) is
/// `EFAULT`.
///
/// The mask picks the pCPUs to flush (`flush_vcpus`).
fn vcpu_mask(cx: &mut Hc, at: u64) -> Result<u64, Errno> {
    const _: () = assert!(crate::domain::lifecycle::MAX_VCPUS <= u64::BITS);
    let word = cx.space().read(GuestPtr::<u64>::new(at))?;
    let nr = cx.me_ref().vcpus.len() as u32;
    Ok(word & u64::MAX.checked_shl(nr).map_or(u64::MAX, |high| !high))
}

/// Runs `f` while holding a writable type reference on frame `mfn` of `dom`, so that it
/// cannot be a page table meanwhile (the bytes themselves go through `mm::physmem`).
pub fn with_writable(dom: DomId, mfn: Mfn, f: impl FnOnce()) -> Result<(), Errno> {
    ft::with(|t, mem| t.get_page_type(mem, mfn, dom, PageType::Writable))?;
    f();
    ft::with(|t, mem| t.put_page_type(mem, mfn))
}

/// `memory_op(cmd, arg)`.
pub fn memory_op(cx: &mut Hc) -> HcResult {
    let cmd = cx.arg(0);
    let space = cx.space();
    // The domain a reservation query names (dom0 may ask about any).
    let named_domain = |cx: &mut Hc| -> Result<(u64, u64), Errno> {
        let id = space.read(cx.ptr::<DomId>(1))?;
        if id == DOMID_SELF || id == cx.id() {
            let d = cx.me_ref();
            return Ok((d.tot_pages, d.max_pages));
        }
        if !cx.exists(id) {
            return Err(Errno::ESRCH);
        }
        let token = cx.privileged()?;
        let d = cx.foreign_ref(id, &token)?;
        Ok((d.tot_pages, d.max_pages))
    };
    // A reservation call carries, above `MEMOP_EXTENT_SHIFT`, the extent a continuation
    // resumes at (Xen's encoding); Xenia's own commands (0x58xx) are matched whole.
    let reservation_op = |c: u64| {
        if (XENIA_MEMOPS_FIRST..=XENIA_MEMOPS_LAST).contains(&c) {
            return None;
        }
        let op = (c & ((1 << MEMOP_EXTENT_SHIFT) - 1)) as u32;
        (op == m::XENMEM_POPULATE_PHYSMAP || op == m::XENMEM_DECREASE_RESERVATION)
            .then_some((op, c >> MEMOP_EXTENT_SHIFT))
    };
    if let Some((op, start)) = reservation_op(cmd) {
        let progress = if op == m::XENMEM_POPULATE_PHYSMAP {
            populate_physmap(cx, start)?
        } else {
            decrease_reservation(cx, start)?
        };
        return Ok(match progress {
            Extents::Done(n) => Ret::Value(n),
            Extents::More(next) => {
                let [_, a1, a2, a3, a4] = cx.args();
                Ret::Again([u64::from(op) | next << MEMOP_EXTENT_SHIFT, a1, a2, a3, a4])
            }
        });
    }
    let value = match u32::try_from(cmd).map_err(|_| Errno::ENOSYS)? {
        m::XENMEM_EXCHANGE => return exchange(cx),
        m::XENMEM_MEMORY_MAP => {
            let arg = cx.ptr::<m::MemoryMap>(1);
            let map = space.read(arg)?;
            if map.nr_entries < 1 {
                return Err(Errno::EINVAL);
            }
            let entry = m::E820Entry {
                addr: 0,
                size: cx.me_ref().max_pages * PAGE_SIZE,
                kind: m::E820_RAM,
            };
            space.write(GuestPtr::new(map.buffer), &entry)?;
            space.write(arg.field::<u32>(offset_of!(m::MemoryMap, nr_entries)), &1)?;
            0
        }
        m::XENMEM_CURRENT_RESERVATION => named_domain(cx)?.0,
        m::XENMEM_MAXIMUM_RESERVATION => named_domain(cx)?.1,
        m::XENMEM_MAXIMUM_RAM_PAGE => ft::with(|t, _| t.len()).saturating_sub(1),
        m::XENMEM_MACHPHYS_MAPPING => {
            let entries = ft::with(|t, _| t.len());
            let mapping = m::MachphysMapping {
                v_start: m2p::RO_M2P_BASE,
                v_end: m2p::RO_M2P_BASE + entries * 8,
                max_mfn: entries.saturating_sub(1),
            };
            space.write(cx.ptr(1), &mapping)?;
            0
        }
        m::XENMEM_XENIA_FRAME_COUNTS => {
            let me = cx.id();
            let (total, by_type) = ft::with(|t, _| {
                let by_type = t.count_by_type(me);
                (by_type.iter().sum(), by_type)
            });
            space.write(cx.ptr(1), &m::XeniaFrameCounts { total, by_type })?;
            0
        }
        m::XENMEM_XENIA_CHECK_FRAME_TABLE => {
            // dom0 only: the check reads every frame (time in proportion to the machine).
            let token = cx.privileged()?;
            let all = cx.world(&token).domains.all().ok_or(Errno::ENOMEM)?;
            check_frame_table(all.iter().copied())?;
            0
        }
        _ => return Err(Errno::ENOSYS),
    };
    Ok(Ret::Value(value))
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

/// Reads a reservation request (order-0 extents only) and its extent list.
fn reservation(cx: &mut Hc) -> Result<(m::MemoryReservation, GuestSlice<u64>), Errno> {
    let r = cx.space().read(cx.ptr::<m::MemoryReservation>(1))?;
    if r.extent_order != 0 {
        return Err(Errno::EINVAL);
    }
    let extents = GuestSlice::new(r.extent_start, r.nr_extents)?;
    Ok((r, extents))
}

/// `XENMEM_exchange` ([`m::MemoryExchange`]): the caller gives extents of its own frames
/// and gets machine-contiguous extents of another order in exchange, chunk by chunk
/// (`xenia_core::mm::exchange`), each chunk whole or not at all. A given frame must be the
/// caller's and unused (no mapping, no type, no reference: `ft::take_back`, else `EBUSY`);
/// new frames are zeroed, below `2^address_bits` bytes when `out.mem_flags` asks, and their
/// M2P entries point at the PFNs the caller listed. `nr_exchanged` is written back at every
/// chunk, also on failure; the reservation does not change. Only the caller's own memory:
/// `EPERM` for another domain (Xen lets a privileged caller name one; nothing needs it).
fn exchange(cx: &mut Hc) -> HcResult {
    use xenia_core::mm::exchange::plan;
    let space = cx.space();
    let arg = cx.ptr::<m::MemoryExchange>(1);
    let x = space.read(arg)?;
    let me = cx.id();
    if cx.resolve(x.input.domid) != me || cx.resolve(x.output.domid) != me {
        return Err(Errno::EPERM);
    }
    let p = plan(
        x.input.extent_order,
        x.input.nr_extents,
        x.output.extent_order,
        x.output.nr_extents,
        x.nr_exchanged,
    )?;
    let inputs = GuestSlice::<u64>::new(x.input.extent_start, x.input.nr_extents)?;
    let outputs = GuestSlice::<u64>::new(x.output.extent_start, x.output.nr_extents)?;
    let (in_order, out_order) = (x.input.extent_order, x.output.extent_order);
    let bits = m::xenmemf_get_address_bits(x.output.mem_flags);
    let done_at = arg.field::<u64>(m::MEMORY_EXCHANGE_NR_EXCHANGED_OFFSET);
    let chunk_frames = (p.in_per_chunk << in_order) as usize;
    // One chunk's frames, given and taken (at most 2^MAX_ORDER each way).
    let mut given = [Mfn(0); 1 << xenia_core::mm::exchange::MAX_ORDER];
    let mut got = [Mfn(0); 1 << xenia_core::mm::exchange::MAX_ORDER];
    let mut flushed = false;
    let mut frames_done = 0;
    for chunk in p.first_chunk..p.chunks {
        // The chunk's input frames: each listed extent's frames, taken back from the caller.
        let mut n = 0;
        let mut failed = None;
        'input: for k in 0..p.in_per_chunk {
            let at = inputs
                .get(chunk * p.in_per_chunk + k)
                .ok_or(Errno::EFAULT)?;
            let first = match space.read(at) {
                Ok(v) => v,
                Err(e) => {
                    failed = Some(e);
                    break;
                }
            };
            for j in 0..1u64 << in_order {
                let mfn = Mfn(first.wrapping_add(j));
                if let Err(e) = ft::take_back(mfn, me) {
                    failed = Some(e);
                    break 'input;
                }
                given[n] = mfn;
                n += 1;
            }
        }
        // The chunk's output extents, contiguous and below the limit.
        let mut m_count = 0;
        if failed.is_none() {
            if !crate::mm::heap::headroom(chunk_frames as u64 * PAGE_SIZE) {
                failed = Some(Errno::ENOMEM);
            }
            for _ in 0..p.out_per_chunk {
                if failed.is_some() {
                    break;
                }
                match alloc_below(out_order, bits) {
                    Some(first) => {
                        for j in 0..1u64 << out_order {
                            got[m_count] = Mfn(first.0 + j);
                            m_count += 1;
                        }
                    }
                    None => failed = Some(Errno::ENOMEM),
                }
            }
        }
        if let Some(e) = failed {
            // Undo: the input frames go back to the caller as they were (their M2P entries
            // were not touched), the new ones back to the allocator.
            for &mfn in &given[..n] {
                let _ = ft::give(mfn, me);
            }
            for &mfn in &got[..m_count] {
                frames::free_contiguous(mfn, 1);
            }
            let _ = space.write(done_at, &(chunk * p.in_per_chunk));
            return Err(e);
        }
        // The given frames are mapped nowhere (`take_back` refused them otherwise), but a
        // vCPU of the caller may still hold a stale translation: flushed before they go.
        // Once a call is enough (as in `decrease_reservation`): the call holds the world, so
        // no page table changes during it, and every frame a later chunk gives was unmapped
        // before the call began. A flush per chunk would be 2048 waits on every pCPU that
        // runs a vCPU, for one order-0 exchange, with the world held.
        if !flushed {
            ft::flush_everywhere();
            flushed = true;
        }
        for &mfn in &given[..n] {
            m2p::set(mfn, m2p::INVALID);
            frames::free_contiguous(mfn, 1);
        }
        for k in 0..p.out_per_chunk {
            let at = outputs
                .get(chunk * p.out_per_chunk + k)
                .ok_or(Errno::EFAULT)?;
            let first = got[(k << out_order) as usize];
            let pfn = space.read(at).unwrap_or(m2p::INVALID);
            for j in 0..1u64 << out_order {
                let mfn = Mfn(first.0 + j);
                // A fresh frame from the allocator: the hypervisor's, so `give` holds.
                let _ = ft::give(mfn, me);
                m2p::set(mfn, pfn.wrapping_add(j));
            }
            let _ = space.write(at, &first.0);
        }
        space.write(done_at, &((chunk + 1) * p.in_per_chunk))?;
        // At most one largest chunk's worth a run: then the call is continued (re-issued as
        // it was; it resumes from `nr_exchanged`, as Xen's preemption check does), so that
        // neither one call nor a multicall of them holds the world for long (a multicall
        // of 64 exchanges of 512 frames held it 0.9 s on the test machine).
        frames_done += chunk_frames;
        if frames_done >= 1 << xenia_core::mm::exchange::MAX_ORDER && chunk + 1 < p.chunks {
            return Ok(Ret::Again(cx.args()));
        }
    }
    Ok(Ret::Value(0))
}

/// `2^order` contiguous zeroed frames below `2^address_bits` bytes (0: anywhere). The
/// allocator has no address preference, so a few runs are tried and the ones above the
/// limit given back.
fn alloc_below(order: u32, address_bits: u32) -> Option<Mfn> {
    use xenia_core::mm::exchange::below_address_limit;
    const TRIES: usize = 8;
    let count = 1u64 << order;
    if below_address_limit(u64::MAX - count, order, address_bits) {
        // No limit: any run will do.
        return frames::alloc_contiguous_zeroed(count);
    }
    let mut rejected = [Mfn(0); TRIES];
    let mut found = None;
    let mut r = 0;
    while r < TRIES {
        // Runs are taken unzeroed and only the one kept is cleared: a limit no run meets
        // would otherwise cost TRIES zeroed extents (16 MiB) a call, with the world held.
        let Some(first) = frames::alloc_contiguous(count) else {
            break;
        };
        if below_address_limit(first.0, order, address_bits) {
            for k in 0..count {
                physmem::zero(Mfn(first.0 + k));
            }
            found = Some(first);
            break;
        }
        rejected[r] = first;
        r += 1;
    }
    for &first in &rejected[..r] {
        frames::free_contiguous(first, count);
    }
    found
}

/// `XENMEM_populate_physmap`: a fresh zeroed frame for each listed PFN, up to the
/// maximum reservation; each frame's MFN is written back over its PFN (PV). Returns how
/// many extents were populated (fewer than asked means memory or the maximum ran out).
fn populate_physmap(cx: &mut Hc, start: u64) -> Result<Extents, Errno> {
    let (r, extents) = reservation(cx)?;
    let space = cx.space();
    // dom0 populates the domains it builds; everyone else only itself.
    let target = if cx.resolve(r.domid) == cx.id() {
        cx.me()
    } else {
        let token = cx.privileged()?;
        cx.foreign(r.domid, &token)?
    };
    let mut done = start;
    let end = chunk_end(start, r.nr_extents);
    // Extents are copied in and out [`POPULATE_AHEAD`] at a time: two guest page walks per
    // group rather than per frame (issue 13's creation time).
    let mut pfns = [0u64; POPULATE_AHEAD];
    let mut mfns = [0u64; POPULATE_AHEAD];
    while done < end && target.tot_pages < target.max_pages {
        let room = (target.max_pages - target.tot_pages).min(end - done);
        let mut n = (POPULATE_AHEAD as u64).min(room) as usize;
        // Guest memory never eats the hypervisor's reserve (mm::heap::RESERVE): the whole
        // group fits, or the frames go one at a time until it does not.
        if !crate::mm::heap::headroom(n as u64 * PAGE_SIZE) {
            n = 1;
            if !crate::mm::heap::headroom(PAGE_SIZE) {
                break;
            }
        }
        let at = extents.get(done).ok_or(Errno::EFAULT)?;
        let bytes = &mut [0u8; POPULATE_AHEAD * 8][..n * 8];
        space.read_bytes(GuestPtr::new(at.addr()), bytes)?;
        for (pfn, b) in pfns.iter_mut().zip(bytes.chunks_exact(8)) {
            *pfn = u64::from_le_bytes(b.try_into().map_err(|_| Errno::EFAULT)?);
        }
        // Frames for the group, zeroed (only those not scrubbed ahead: `frames`): one run
        // from the allocator when it has one (one buddy operation instead of 64; the frames
        // go back one by one, and merge again).
        // A failure gives back this group's frames, whose MFNs the caller would never learn.
        let run = if n == POPULATE_AHEAD {
            frames::alloc_contiguous_zeroed(n as u64)
        } else {
            None
        };
        let mut got = 0;
        let mut failed = None;
        while got < n {
            let next = match run {
                Some(first) => Some(Mfn(first.0 + got as u64)),
                None => frames::alloc_zeroed(),
            };
            let Some(mfn) = next else {
                break;
            };
            if let Err(e) = ft::give(mfn, target.id) {
                // A run's frames not given go back below; a single frame now.
                if run.is_none() {
                    frames::free_contiguous(mfn, 1);
                }
                failed = Some(e);
                break;
            }
            m2p::set(mfn, pfns[got]);
            mfns[got] = mfn.0;
            got += 1;
        }
        target.tot_pages += got as u64;
        // The run's frames not given to the domain go back (on a failed `give`, that one too).
        if let Some(first) = run {
            for i in got as u64..n as u64 {
                frames::free_contiguous(Mfn(first.0 + i), 1);
            }
        }
        let mut out = [0u8; POPULATE_AHEAD * 8];
        for (o, m) in out.chunks_exact_mut(8).zip(&mfns[..got]) {
            o.copy_from_slice(&m.to_le_bytes());
        }
        if let Err(e) = space.write_bytes(GuestPtr::new(at.addr()), &out[..got * 8]) {
            for &m in &mfns[..got] {
                let mfn = Mfn(m);
                let _ = ft::take_back(mfn, target.id);
                m2p::set(mfn, m2p::INVALID);
                frames::free_contiguous(mfn, 1);
            }
            target.tot_pages -= got as u64;
            return Err(e);
        }
        if let Some(top) = pfns[..got].iter().max() {
            target
                .shared()
                .arch
                .max_pfn
                .fetch_max(top.saturating_add(1), core::sync::atomic::Ordering::Relaxed);
        }
        done += got as u64;
        if let Some(e) = failed {
            return Err(e);
        }
        if got < n {
            // Out of frames.
            break;
        }
    }
    Ok(Extents::progress(done, end, r.nr_extents))
}

/// Extents `populate_physmap` copies from and to the guest at once.
const POPULATE_AHEAD: usize = 64;

/// Extents a reservation call handles before it continues (Xen preempts its loop the same
/// way): the world lock is never held for a whole large reservation.
const MEMOP_CHUNK: u64 = 1024;
/// Xen's `MEMOP_EXTENT_SHIFT`: a continued reservation call carries the extent to start at
/// in the bits of `cmd` above this.
const MEMOP_EXTENT_SHIFT: u32 = 6;

/// Xenia's own `memory_op` commands (`XENMEM_XENIA_*`), never decoded as a continued
/// reservation call.
const XENIA_MEMOPS_FIRST: u64 = 0x5800;
const XENIA_MEMOPS_LAST: u64 = 0x58FF;
const _: () = assert!(
    m::XENMEM_XENIA_FRAME_COUNTS as u64 >= XENIA_MEMOPS_FIRST
        && m::XENMEM_XENIA_CHECK_FRAME_TABLE as u64 <= XENIA_MEMOPS_LAST
);

/// Where a reservation call that starts at extent `start` stops this time.
fn chunk_end(start: u64, nr_extents: u64) -> u64 {
    nr_extents.min(start.saturating_add(MEMOP_CHUNK))
}

/// How far a reservation call got.
enum Extents {
    /// Finished: this many extents done in all (fewer than asked: it stopped early).
    Done(u64),
    /// Stopped at the end of a chunk with more to do: continue at this extent.
    More(u64),
}

impl Extents {
    /// `done` extents reached, the chunk ended at `end`, `total` asked.
    fn progress(done: u64, end: u64, total: u64) -> Extents {
        if done == end && end < total {
            Extents::More(done)
        } else {
            Extents::Done(done)
        }
    }
}

/// `XENMEM_decrease_reservation`: gives back the listed machine frames (PV guests name
/// MFNs). A frame still mapped, pinned or otherwise referenced is not taken: the call
/// stops there and returns how many extents were released. Only the caller's own.
fn decrease_reservation(cx: &mut Hc, start: u64) -> Result<Extents, Errno> {
    let (r, extents) = reservation(cx)?;
    if cx.resolve(r.domid) != cx.id() {
        return Err(Errno::ESRCH);
    }
    let space = cx.space();
    let me = cx.id();
    let mut flushed = false;
    let mut done = start;
    let end = chunk_end(start, r.nr_extents);
    while done < end {
        let mfn = Mfn(space.read(extents.get(done).ok_or(Errno::EFAULT)?)?);
        if ft::take_back(mfn, me).is_err() {
            break;
        }
        // A frame given back is mapped nowhere (`take_back` refuses it otherwise), but
        // another vCPU of the caller may still hold a translation from before it was
        // unmapped. Every page-table change happens under the world lock, which this call
        // holds: after one flush, before the first frame goes back to the allocator, no pCPU
        // can reach any frame this chunk gives back. No frame given back: no flush.
        if !flushed {
            ft::flush_everywhere();
            flushed = true;
        }
        m2p::set(mfn, m2p::INVALID);
        frames::free_contiguous(mfn, 1);
        let dom = cx.me();
        dom.tot_pages = dom.tot_pages.saturating_sub(1);
        done += 1;
    }
    Ok(Extents::progress(done, end, r.nr_extents))
}
