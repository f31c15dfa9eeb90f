//! Attacks through hypercall arguments: absurd counts with a small real buffer, buffers in
//! the hypervisor's range, non-canonical or wrapping, output pointers into read-only pages
//! (the guest's own page tables, the entry area, the M2P), and `mmu_update` requests whose
//! target is misaligned, not a page table, or not the guest's.
//!
//! Every request buffer that the hypervisor may legitimately start reading holds harmless
//! requests (an entry rewritten with its current value), so a hypervisor that reads further
//! than it should is seen by its `done` count and return value, not by damage.

use guest_abi::layout::{ENTRY_AREA_VIRT_START, MACH2PHYS_VIRT_START};
use guest_abi::memory::{
    MMU_MACHPHYS_UPDATE, MMU_NORMAL_PT_UPDATE, MMUEXT_TLB_FLUSH_LOCAL, MemoryMap, MmuUpdate,
    MmuextOp, XENMEM_MEMORY_MAP, XENMEM_XENIA_FRAME_COUNTS,
};
use guest_abi::types::DOMID_SELF;
use xenia_guest_rt::boot::padding;
use xenia_guest_rt::mm::{self, Mapping, pte, pte::entry};
use xenia_guest_rt::probe;
use xenia_guest_rt::trap::PAGE_FAULT;

use crate::env::{Env, FREE_L4_SLOT, HYPERVISOR_IMAGE_MFN};
use crate::verdict::{Errname, Verdict, expect_refusal};
use crate::{refused, setup_error, succeeded};

const SELF: u64 = DOMID_SELF as u64;
/// The hypervisor image's virtual address (slot 258).
const HYPERVISOR_IMAGE_VA: u64 = 0xFFFF_8100_0010_0000;

/// A request that rewrites the target slot's L1 entry with its current value.
fn harmless(env: &Env) -> MmuUpdate {
    MmuUpdate::new(MMU_NORMAL_PT_UPDATE, env.target.ma(), env.target_entry())
}

/// `mmu_update(reqs, count, &done, DOMID_SELF)`; returns `rax` and `done`.
fn mmu_update(reqs: u64, count: u64) -> (i64, u32) {
    let mut done: u32 = 0;
    // SAFETY: every request the hypervisor can reach through `reqs` is harmless or must be
    // refused; `done` is borrowed for the call.
    let ret = unsafe { mm::mmu_update_raw(reqs, count, &raw mut done as u64, SELF) };
    (ret, done)
}

/// `mmuext_op(ops, count, &done, DOMID_SELF)`; returns `rax` and `done`.
fn mmuext(ops: u64, count: u64) -> (i64, u32) {
    let mut done: u32 = 0;
    // SAFETY: every operation the hypervisor can reach through `ops` is a local TLB flush or
    // must be refused; `done` is borrowed for the call.
    let ret = unsafe { mm::mmuext_raw(ops, count, &raw mut done as u64, SELF) };
    (ret, done)
}

/// Refused when the call failed with `done` at most `real` (the requests actually there).
fn count_verdict(ret: i64, done: u32, real: u32) -> Verdict {
    if ret < 0 && done <= real {
        refused!("{}, done {done}", Errname(ret))
    } else {
        succeeded!("returned {}, done {done}", Errname(ret))
    }
}

/// Writes `reqs` at the very end of the bootstrap mappings, so that the next byte is
/// unmapped; returns their address.
fn at_end_of_mappings<T: Copy>(items: &[T]) -> u64 {
    let size = core::mem::size_of_val(items) as u64;
    let at = padding().1 - size;
    // SAFETY: the last bytes of the padding are mapped writable and used by nothing else
    // (window slot 0 is not open during these attacks); `T` is plain data.
    unsafe {
        core::ptr::copy_nonoverlapping(items.as_ptr(), at as *mut T, items.len());
    }
    at
}

fn mmu_update_count(env: &Env, count: u64) -> Verdict {
    let reqs = at_end_of_mappings(&[harmless(env), harmless(env)]);
    let (ret, done) = mmu_update(reqs, count);
    count_verdict(ret, done, 2)
}

/// `mmu_update` with count 2^31 on a buffer of two requests that ends the mappings.
pub fn mmu_update_count_2_pow_31(env: &Env) -> Verdict {
    mmu_update_count(env, 1 << 31)
}

/// The same with count `u64::MAX`.
pub fn mmu_update_count_u64_max(env: &Env) -> Verdict {
    mmu_update_count(env, u64::MAX)
}

fn mmuext_count(count: u64) -> Verdict {
    let flush = MmuextOp {
        cmd: MMUEXT_TLB_FLUSH_LOCAL,
        arg1: 0,
        arg2: 0,
    };
    let ops = at_end_of_mappings(&[flush, flush]);
    let (ret, done) = mmuext(ops, count);
    count_verdict(ret, done, 2)
}

/// `mmuext_op` with count 2^31 on a buffer of two TLB flushes that ends the mappings.
pub fn mmuext_count_2_pow_31(_: &Env) -> Verdict {
    mmuext_count(1 << 31)
}

/// The same with count `u64::MAX`.
pub fn mmuext_count_u64_max(_: &Env) -> Verdict {
    mmuext_count(u64::MAX)
}

/// `mmu_update` reading its requests from the hypervisor's image.
pub fn mmu_update_requests_in_hypervisor(_: &Env) -> Verdict {
    let (ret, done) = mmu_update(HYPERVISOR_IMAGE_VA, 1);
    count_verdict(ret, done, 0)
}

/// From the M2P (which the guest itself may read).
pub fn mmu_update_requests_in_m2p(_: &Env) -> Verdict {
    let (ret, done) = mmu_update(MACH2PHYS_VIRT_START, 1);
    count_verdict(ret, done, 0)
}

/// From a non-canonical address.
pub fn mmu_update_requests_non_canonical(_: &Env) -> Verdict {
    let (ret, done) = mmu_update(0x8000_0000_0000_0000, 1);
    count_verdict(ret, done, 0)
}

/// `mmuext_op` reading its operations from the hypervisor's image.
pub fn mmuext_ops_in_hypervisor(_: &Env) -> Verdict {
    let (ret, done) = mmuext(HYPERVISOR_IMAGE_VA, 1);
    count_verdict(ret, done, 0)
}

/// Maps a fresh frame at each of `pages` (creating tables as needed), runs `attack`, and
/// takes the mappings down again.
fn with_pages<const N: usize>(pages: [u64; N], attack: impl FnOnce() -> Verdict) -> Verdict {
    let mut maps: [Option<Mapping>; N] = [None; N];
    let mut failed = None;
    for (va, slot) in pages.iter().zip(maps.iter_mut()) {
        let Some((_, mfn)) = mm::fresh_frame() else {
            failed = Some(setup_error!("no fresh frame"));
            break;
        };
        // SAFETY: the addresses are outside everything Rust code uses.
        match unsafe { mm::map_page(*va, entry(mfn, pte::PRESENT | pte::RW)) } {
            Ok(m) => *slot = Some(m),
            Err((step, ret)) => {
                failed = Some(setup_error!("mapping {va:#x}: {step}: {}", Errname(ret)));
                break;
            }
        }
    }
    let verdict = failed.unwrap_or_else(attack);
    for m in maps.iter().rev().flatten() {
        // SAFETY: nothing uses the pages any more.
        if let Err((step, ret)) = unsafe { mm::unmap_page(m) } {
            return setup_error!("taking a mapping down: {step}: {}", Errname(ret));
        }
    }
    verdict
}

/// Stores a harmless request at `va` (mapped writable by `with_pages`).
fn put(env: &Env, va: u64) {
    // SAFETY: the page was just mapped writable for this attack; the address is 16-byte
    // aligned inside it.
    unsafe { (va as *mut MmuUpdate).write_volatile(harmless(env)) };
}

/// Two requests from the last 16 bytes of the lower half on into the non-canonical hole.
pub fn mmu_update_requests_run_into_non_canonical(env: &Env) -> Verdict {
    const PAGE: u64 = 0x7FFF_FFFF_F000;
    const REQS: u64 = 0x7FFF_FFFF_FFF0;
    with_pages([PAGE], || {
        put(env, REQS);
        let (ret, done) = mmu_update(REQS, 2);
        count_verdict(ret, done, 1)
    })
}

/// Two requests starting in the last 16 bytes of the hypervisor's range and running out of
/// it into the guest's (mapped) slot 272.
pub fn mmu_update_requests_run_out_of_hypervisor_range(env: &Env) -> Verdict {
    const GUEST_PAGE: u64 = 0xFFFF_8800_0000_0000;
    const REQS: u64 = GUEST_PAGE - 16;
    with_pages([GUEST_PAGE], || {
        put(env, GUEST_PAGE);
        let (ret, done) = mmu_update(REQS, 2);
        count_verdict(ret, done, 0)
    })
}

/// Two requests at the top of the address space, the second wrapping around to 0 (both
/// pages mapped).
pub fn mmu_update_requests_wrap_around(env: &Env) -> Verdict {
    const TOP_PAGE: u64 = 0xFFFF_FFFF_FFFF_F000;
    const REQS: u64 = 0xFFFF_FFFF_FFFF_FFF0;
    with_pages([TOP_PAGE, 0], || {
        put(env, REQS);
        put(env, 0);
        let (ret, done) = mmu_update(REQS, 2);
        count_verdict(ret, done, 1)
    })
}

/// A harmless request whose `done` pointer is the guest's own L4 entry (a free slot): the
/// hypervisor must not write through the read-only mapping of a page table.
pub fn mmu_update_done_into_own_l4(env: &Env) -> Verdict {
    let before = mm::read_entry(env.l4, FREE_L4_SLOT);
    let req = harmless(env);
    let done_va = xenia_guest_rt::boot::start_info().pt_base + 8 * FREE_L4_SLOT as u64;
    // SAFETY: the request is harmless; `done` must not be written.
    let ret = unsafe { mm::mmu_update_raw(&raw const req as u64, 1, done_va, SELF) };
    let after = mm::read_entry(env.l4, FREE_L4_SLOT);
    output_verdict(ret, after == before, format_args!("L4 entry is {after:?}"))
}

/// A harmless request whose `done` pointer is in the entry area's read-only IDT page.
pub fn mmu_update_done_into_entry_area(env: &Env) -> Verdict {
    let at = ENTRY_AREA_VIRT_START + 0x3000 + 0xFF8;
    let read = || {
        let v: u64;
        // SAFETY: a load from the entry area, readable by design; the probe resumes on #PF.
        let p = unsafe {
            probe!(PAGE_FAULT, "mov {v}, qword ptr [{a}]"; a = in(reg) at, v = out(reg) v)
        };
        p.caught.is_none().then_some(v)
    };
    let before = read();
    let req = harmless(env);
    // SAFETY: the request is harmless; `done` must not be written.
    let ret = unsafe { mm::mmu_update_raw(&raw const req as u64, 1, at, SELF) };
    let after = read();
    output_verdict(
        ret,
        after == before,
        format_args!("the IDT word is {after:?}"),
    )
}

/// The verdict of a call whose output pointer was unusable: refused when it failed (or, if
/// it reported success, when it left the target alone, as Xen, which ignores a failed write
/// of `done`, would).
fn output_verdict(ret: i64, unchanged: bool, state: core::fmt::Arguments) -> Verdict {
    match (ret < 0, unchanged) {
        (true, true) => refused!("{}", Errname(ret)),
        (false, true) => refused!("returned {ret} without writing through the pointer"),
        (_, false) => succeeded!("returned {}; {state}", Errname(ret)),
    }
}

/// `XENMEM_XENIA_FRAME_COUNTS` written into the guest's own (read-only) L1.
pub fn frame_counts_into_own_l1(env: &Env) -> Verdict {
    let Some(va) = mm::region_va(env.l1) else {
        return setup_error!("the L1 is not in the bootstrap region");
    };
    let snapshot = || {
        let mut words = [0u64; 8];
        for (i, w) in words.iter_mut().enumerate() {
            *w = mm::read_entry(env.l1, i).unwrap_or(u64::MAX);
        }
        words
    };
    let before = snapshot();
    // SAFETY: the output must not be written.
    let ret = unsafe { mm::memory_op_raw(XENMEM_XENIA_FRAME_COUNTS, va) };
    let after = snapshot();
    expect_refusal(
        ret,
        after == before,
        format_args!("the L1's first entries changed"),
    )
}

/// A hypercall's output kept writing after the page lost its write access (session 13: the
/// hypervisor keeps its translations across entry writes that change no walk, and must drop
/// them at one that does). The data frame is mapped writable at the target slot and
/// `XENMEM_XENIA_FRAME_COUNTS` writes through it (the hypervisor now knows the page as
/// writable); then one `mmu_update` batch makes the mapping read-only (a valid request) and
/// maps the hypervisor's image there (refused: the batch stops after one); then the counts
/// are asked into the read-only page, over a marker. The call must fail with the marker
/// intact.
pub fn output_after_write_access_removed(env: &Env) -> Verdict {
    const MARKER: u64 = 0x5EC1_3A77_AC4E_D000;
    let original = env.target_entry();
    let va = env.target_va();
    let map = |flags: u64| {
        let req = MmuUpdate::new(
            MMU_NORMAL_PT_UPDATE,
            env.target.ma(),
            entry(env.data_mfn, flags),
        );
        mmu_update(&raw const req as u64, 1).0
    };
    let restore = || {
        let req = MmuUpdate::new(MMU_NORMAL_PT_UPDATE, env.target.ma(), original);
        let _ = mmu_update(&raw const req as u64, 1);
    };
    let ret = map(pte::PRESENT | pte::RW);
    if ret < 0 {
        return setup_error!("mapping the data frame writable: {}", Errname(ret));
    }
    // SAFETY: the target slot maps the data frame writable now; a plain store.
    unsafe { core::ptr::write_volatile((va + 0x800) as *mut u64, MARKER) };
    // SAFETY: the output lands in the data frame, which holds nothing of the kernel's.
    let first = unsafe { mm::memory_op_raw(XENMEM_XENIA_FRAME_COUNTS, va) };
    if first < 0 {
        restore();
        return setup_error!("frame counts into a writable page: {}", Errname(first));
    }
    let batch = [
        MmuUpdate::new(
            MMU_NORMAL_PT_UPDATE,
            env.target.ma(),
            entry(env.data_mfn, pte::PRESENT),
        ),
        MmuUpdate::new(
            MMU_NORMAL_PT_UPDATE,
            env.target.ma(),
            entry(HYPERVISOR_IMAGE_MFN, pte::PRESENT),
        ),
    ];
    let (batch_ret, done) = mmu_update(batch.as_ptr() as u64, 2);
    let now = env.target_entry();
    if batch_ret >= 0 || done != 1 || pte::mfn(now) != env.data_mfn || now & pte::RW != 0 {
        restore();
        return succeeded!(
            "the batch of a valid and a hostile request returned {}, done {done}, entry              {now:#x}",
            Errname(batch_ret)
        );
    }
    // SAFETY: the output must not be written (the page is read-only now).
    let second = unsafe { mm::memory_op_raw(XENMEM_XENIA_FRAME_COUNTS, va + 0x800) };
    // SAFETY: a load through the read-only mapping of the data frame.
    let marker = unsafe { core::ptr::read_volatile((va + 0x800) as *const u64) };
    restore();
    expect_refusal(
        second,
        marker == MARKER,
        format_args!("the read-only page now holds {marker:#x}"),
    )
}

/// `XENMEM_memory_map` with its buffer in the M2P.
pub fn memory_map_into_m2p(_: &Env) -> Verdict {
    let before: [Option<u64>; 4] = core::array::from_fn(|i| mm::m2p(i as u64));
    let mut map = MemoryMap {
        nr_entries: 4,
        buffer: MACH2PHYS_VIRT_START,
    };
    // SAFETY: the structure is borrowed for the call; the buffer must not be written.
    let ret = unsafe { mm::memory_op_raw(XENMEM_MEMORY_MAP, &raw mut map as u64) };
    let after: [Option<u64>; 4] = core::array::from_fn(|i| mm::m2p(i as u64));
    expect_refusal(ret, after == before, format_args!("the M2P changed"))
}

/// One `mmu_update` request `req`; the verdict compares the target slot's entry and its
/// neighbour before and after.
fn request_against_target(env: &Env, req: MmuUpdate) -> Verdict {
    let neighbour = (env.target.index + 1) % mm::ENTRIES;
    let read = || {
        (
            env.target_entry(),
            mm::read_entry(env.target.table, neighbour),
        )
    };
    let before = read();
    let (ret, _) = mmu_update(&raw const req as u64, 1);
    let after = read();
    if ret >= 0 {
        // SAFETY: the target slot is a window page no Rust code uses.
        unsafe { mm::set_entry(env.target.ma(), before.0) };
    }
    expect_refusal(
        ret,
        after == before,
        format_args!("entries {after:x?}, were {before:x?}"),
    )
}

/// A request whose entry pointer is 4 bytes into the target entry, with a value that maps
/// the L4 writable.
pub fn mmu_update_misaligned_pte_pointer(env: &Env) -> Verdict {
    let req = MmuUpdate {
        ptr: (env.target.ma() + 4) | MMU_NORMAL_PT_UPDATE,
        val: entry(env.l4, pte::PRESENT | pte::RW),
    };
    request_against_target(env, req)
}

/// Command 3, which no one defined, on the target entry.
pub fn mmu_update_unknown_command(env: &Env) -> Verdict {
    let req = MmuUpdate {
        ptr: env.target.ma() | 3,
        val: entry(env.l4, pte::PRESENT | pte::RW),
    };
    request_against_target(env, req)
}

/// A request whose "page table" is an ordinary frame, writing an entry that maps the L4
/// writable; then the frame is pinned as an L1. Xen (and Xenia) let a normal update of a frame
/// that is no page table write it as data, which gives the guest nothing it could not write
/// itself; the escape would be the entry becoming live without validation, so the pin must
/// fail (or the write must have been refused).
pub fn mmu_update_data_frame_then_pin(env: &Env) -> Verdict {
    let Some((_, mfn)) = mm::fresh_frame() else {
        return setup_error!("no fresh frame");
    };
    // SAFETY: a fresh frame, mapped nowhere.
    if let Err(ret) = unsafe { mm::zero_frame(mfn) } {
        return setup_error!("zeroing a fresh frame: {}", Errname(ret));
    }
    let hostile = entry(env.l4, pte::PRESENT | pte::RW);
    let req = MmuUpdate::new(MMU_NORMAL_PT_UPDATE, mfn << 12, hostile);
    let (write, _) = mmu_update(&raw const req as u64, 1);
    // SAFETY: the frame is mapped nowhere and hooked in nowhere; a pin that wrongly succeeds
    // is undone below.
    let pin = unsafe { mm::pin(1, mfn) };
    let seen = mm::read_entry(mfn, 0);
    if pin >= 0 {
        // SAFETY: as above.
        unsafe { mm::unpin(mfn) };
    }
    let how = format_args!(
        "plain write {}, pin as L1 {}",
        if write >= 0 { "accepted" } else { "refused" },
        Errname(pin)
    );
    if write < 0 || pin < 0 {
        refused!("{how}")
    } else {
        succeeded!("{how}: an L1 holding {seen:x?} was pinned")
    }
}

/// A request whose "page table" is a frame of the hypervisor's image, then one whose table
/// is another domain's L4 (a domain this guest creates for it). The hypervisor's frame cannot
/// be read back from a guest; the other domain's can, through
/// `XEN_DOMCTL_XENIA_READ_FRAME`: its entry must still be empty.
pub fn mmu_update_foreign_frame_as_table(env: &Env) -> Verdict {
    let req = MmuUpdate::new(MMU_NORMAL_PT_UPDATE, (HYPERVISOR_IMAGE_MFN << 12) + 8, 0);
    let (ret, _) = mmu_update(&raw const req as u64, 1);
    let d = match crate::hv::scratch_domain() {
        Ok(d) => d,
        Err((step, r)) => return setup_error!("another domain: {step} {}", Errname(r)),
    };
    // Entry 1 of its L4, naming this guest's own L3 (which would give that domain this
    // guest's kernel mappings).
    const ENTRY: usize = 1;
    let hostile = entry(env.l3, pte::PRESENT | pte::RW | pte::USER);
    let req = MmuUpdate::new(MMU_NORMAL_PT_UPDATE, Env::entry_ma(d.l4, ENTRY), hostile);
    let (theirs, _) = mmu_update(&raw const req as u64, 1);
    let seen = crate::hv::read_foreign_word(d.id, d.l4, ENTRY);
    drop(d);
    let how = format_args!(
        "a hypervisor frame: {}; another domain's L4: {}, its entry reads {seen:x?}",
        Errname(ret),
        Errname(theirs)
    );
    match (ret < 0 && theirs < 0, seen) {
        (true, Ok(0)) => refused!("{how}"),
        (_, Err(_)) => setup_error!("{how}"),
        _ => succeeded!("{how}"),
    }
}

/// `MMU_MACHPHYS_UPDATE` of a frame the guest does not own.
pub fn machphys_update_foreign_frame(_: &Env) -> Verdict {
    let before = mm::m2p(HYPERVISOR_IMAGE_MFN);
    let req = MmuUpdate::new(MMU_MACHPHYS_UPDATE, HYPERVISOR_IMAGE_MFN << 12, 5);
    let (ret, _) = mmu_update(&raw const req as u64, 1);
    let after = mm::m2p(HYPERVISOR_IMAGE_MFN);
    expect_refusal(
        ret,
        after == before,
        format_args!("M2P entry {after:?}, was {before:?}"),
    )
}

/// `MMU_MACHPHYS_UPDATE` of a frame far beyond RAM (and the M2P). Read back: the M2P entry it
/// names (past the table's end, so it must stay unreadable) and the one it would wrap to if
/// the address were cut to the physical address width (frame 0) are as they were.
pub fn machphys_update_beyond_ram(_: &Env) -> Verdict {
    const TARGET: u64 = 1 << 48;
    let (far, zero) = (mm::m2p(TARGET >> 12), mm::m2p(0));
    let req = MmuUpdate::new(MMU_MACHPHYS_UPDATE, TARGET, 5);
    let (ret, _) = mmu_update(&raw const req as u64, 1);
    let (far_after, zero_after) = (mm::m2p(TARGET >> 12), mm::m2p(0));
    expect_refusal(
        ret,
        far_after == far && zero_after == zero,
        format_args!(
            "M2P of {:#x} {far_after:x?} (was {far:x?}), of 0 {zero_after:x?} (was {zero:x?})",
            TARGET >> 12
        ),
    )
}
