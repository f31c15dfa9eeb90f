//! Attacks on page-table types: pinning frames that are mapped writable or whose contents
//! are hostile, using one table type as another, switching CR3 to what is not a valid L4,
//! freeing the L4 in CR3 after unpinning it, and writing a page table through a stale TLB
//! entry left from its writable days.

use guest_abi::layout::{HYPERVISOR_FIRST_L4_SLOT, is_hypervisor_l4_slot};
use guest_abi::memory::XENMEM_POPULATE_PHYSMAP;
use guest_abi::memory::{UVMF_INVLPG, UVMF_LOCAL, UVMF_NONE, XENMEM_DECREASE_RESERVATION};
use guest_abi::types::DOMID_SELF;
use xenia_guest_rt::mm::{self, ENTRIES, Window, pte, pte::entry};
use xenia_guest_rt::probe;
use xenia_guest_rt::trap::PAGE_FAULT;

use crate::env::{ALIAS_SLOT, Env, FREE_L4_VA, HYPERVISOR_IMAGE_MFN};
use crate::verdict::{Errname, Fault, Verdict, expect_refusal};
use crate::{refused, setup_error, succeeded};

const P: u64 = pte::PRESENT;
const RW: u64 = pte::RW;
const U: u64 = pte::USER;

/// A fresh frame, zeroed, then written by `fill` (while it is still a plain page).
// The verdict is the error: a kernel without a heap returns it by value, once per attack.
#[allow(clippy::result_large_err)]
fn fresh(fill: impl FnOnce(&mut [u64; ENTRIES])) -> Result<(u64, u64), Verdict> {
    let (pfn, mfn) = mm::fresh_frame().ok_or_else(|| setup_error!("no fresh frame"))?;
    // SAFETY: a fresh frame, mapped nowhere and no page table.
    unsafe { mm::fill_frame(mfn, fill) }
        .map_err(|ret| setup_error!("writing a fresh frame: {}", Errname(ret)))?;
    Ok((pfn, mfn))
}

/// The kernel's entries of the bootstrap L4 (the hypervisor's slots left empty).
fn kernel_l4(env: &Env) -> [u64; ENTRIES] {
    let mut t = [0; ENTRIES];
    for (i, e) in t.iter_mut().enumerate() {
        if !is_hypervisor_l4_slot(i) {
            *e = mm::read_entry(env.l4, i).unwrap_or(0);
        }
    }
    t
}

/// Pins a fresh frame as a level-`level` table while a writable mapping of it exists.
fn pin_writable_frame(level: u32) -> Verdict {
    let (_, mfn) = match fresh(|_| {}) {
        Ok(f) => f,
        Err(v) => return v,
    };
    // SAFETY: the alias slot is free; the frame is fresh.
    let w = match unsafe { Window::writable(ALIAS_SLOT, mfn) } {
        Ok(w) => w,
        Err(ret) => return setup_error!("mapping a fresh frame writable: {}", Errname(ret)),
    };
    w.write(0, 0);
    let before = table_counts();
    // SAFETY: the frame holds zeros; pinning changes no mapping Rust code uses.
    let ret = unsafe { mm::pin(level, mfn) };
    // The mapping is still writable whatever happened: a pin that succeeded made a page
    // table the guest can write.
    w.write(8, 0);
    let _ = w.close();
    // SAFETY: the table is empty and referenced by nothing: undoes a pin that got through,
    // and must fail after one that was refused.
    let unpin = unsafe { mm::unpin(mfn) };
    let after = table_counts();
    expect_refusal(
        ret,
        unpin < 0 && after == before,
        format_args!(
            "frame {mfn:#x} pinned as an L{level} while mapped writable: unpin afterwards {}, \
             L1..L4 counts {before:?} -> {after:?}",
            Errname(unpin)
        ),
    )
}

/// The domain's page-table counts by level (L1 to L4), from `XENMEM_XENIA_FRAME_COUNTS`:
/// what a pin changes, read back after one that must have been refused.
fn table_counts() -> [u64; 4] {
    let c = mm::frame_counts().unwrap_or_default();
    [c.by_type[1], c.by_type[2], c.by_type[3], c.by_type[4]]
}

/// As an L1.
pub fn pin_writable_frame_as_l1(_: &Env) -> Verdict {
    pin_writable_frame(1)
}

/// As an L2.
pub fn pin_writable_frame_as_l2(_: &Env) -> Verdict {
    pin_writable_frame(2)
}

/// As an L3.
pub fn pin_writable_frame_as_l3(_: &Env) -> Verdict {
    pin_writable_frame(3)
}

/// As an L4.
pub fn pin_writable_frame_as_l4(_: &Env) -> Verdict {
    pin_writable_frame(4)
}

/// The reverse order: pin a fresh frame as an L1, then map it writable.
pub fn map_pinned_table_writable(env: &Env) -> Verdict {
    let (_, mfn) = match fresh(|_| {}) {
        Ok(f) => f,
        Err(v) => return v,
    };
    // SAFETY: an empty table, mapped nowhere.
    let ret = unsafe { mm::pin(1, mfn) };
    if ret < 0 {
        return setup_error!("pinning an empty L1: {}", Errname(ret));
    }
    let before = env.target_entry();
    // SAFETY: the target slot is a window page no Rust code uses.
    let ret = unsafe { mm::update_va(env.target_va(), entry(mfn, P | RW), UVMF_INVLPG) };
    let after = env.target_entry();
    if ret >= 0 {
        // SAFETY: as above.
        unsafe { mm::update_va(env.target_va(), before, UVMF_INVLPG | UVMF_LOCAL) };
    }
    // SAFETY: an empty table, no longer mapped.
    unsafe { mm::unpin(mfn) };
    expect_refusal(
        ret,
        after == before,
        format_args!("the L1 entry is {after:#x}"),
    )
}

/// Pins frame `mfn`, which must be refused; unpins it if that worked. Reads the refusal
/// back: the domain's table counts must not have moved, and (with `try_unpin`, for a frame
/// that is pinned as nothing) an unpin must fail too.
fn pin_frame(level: u32, mfn: u64, try_unpin: bool) -> Verdict {
    let before = table_counts();
    // SAFETY: the frame is mapped nowhere; a pin that wrongly succeeds changes no mapping Rust
    // code uses (the table is hooked in nowhere).
    let ret = unsafe { mm::pin(level, mfn) };
    let unpin = if ret >= 0 || try_unpin {
        // SAFETY: as above.
        unsafe { mm::unpin(mfn) }
    } else {
        -1
    };
    let after = table_counts();
    expect_refusal(
        ret,
        unpin < 0 && after == before,
        format_args!(
            "frame {mfn:#x} pinned as an L{level}: unpin afterwards {}, L1..L4 counts \
             {before:?} -> {after:?}",
            Errname(unpin)
        ),
    )
}

/// Pins a fresh frame written with `fill` as a level-`level` table.
fn pin_hostile(level: u32, fill: impl FnOnce(&mut [u64; ENTRIES])) -> Verdict {
    match fresh(fill) {
        Ok((_, mfn)) => pin_frame(level, mfn, true),
        Err(v) => v,
    }
}

/// An L1 whose first entry maps the L1 itself writable.
pub fn pin_l1_mapping_itself_writable(_: &Env) -> Verdict {
    let Some((_, mfn)) = mm::fresh_frame() else {
        return setup_error!("no fresh frame");
    };
    // SAFETY: a fresh frame, mapped nowhere.
    if let Err(ret) = unsafe { mm::fill_frame(mfn, |t| t[0] = entry(mfn, P | RW)) } {
        return setup_error!("writing a fresh frame: {}", Errname(ret));
    }
    pin_frame(1, mfn, true)
}

/// An L1 whose first entry maps the bootstrap L4 writable.
pub fn pin_l1_mapping_own_l4_writable(env: &Env) -> Verdict {
    let l4 = env.l4;
    pin_hostile(1, |t| t[0] = entry(l4, P | RW))
}

/// An L4 with the kernel's entries plus one in slot 256 (the M2P's).
pub fn pin_l4_with_reserved_slot(env: &Env) -> Verdict {
    let kernel = kernel_l4(env);
    let l3 = env.l3;
    pin_hostile(4, |t| {
        t.copy_from_slice(&kernel);
        t[HYPERVISOR_FIRST_L4_SLOT] = entry(l3, P | RW | U);
    })
}

/// An L1 with read-only mappings of the domain's own data frame in scattered slots (each
/// takes a reference as it is validated) and, in slot `bad`, a mapping of the hypervisor's
/// image: the pin must be refused and every reference the valid entries took given back
/// (the frame-table check at the end sees one left over). Validation skips the empty
/// entries a word group at a time (session 13), so the valid entries sit at group edges,
/// before and after the bad one.
fn pin_l1_valid_entries_and_one_hostile(env: &Env, bad: usize) -> Verdict {
    let data = env.data_mfn;
    pin_hostile(1, |t| {
        for i in [0, 7, 8, 63, 64, 100, 200, 257, 448, 510] {
            t[i] = entry(data, P);
        }
        t[bad] = entry(HYPERVISOR_IMAGE_MFN, P);
    })
}

/// The hostile entry last, after every valid one.
pub fn pin_l1_valid_entries_then_hostile_last(env: &Env) -> Verdict {
    pin_l1_valid_entries_and_one_hostile(env, 511)
}

/// The hostile entry in the middle, valid ones on both sides.
pub fn pin_l1_hostile_among_valid_entries(env: &Env) -> Verdict {
    pin_l1_valid_entries_and_one_hostile(env, 101)
}

/// The bootstrap L3 pinned as an L4 (type confusion). No unpin afterwards: it could not tell
/// a pin as an L4 from one the builder made as an L3.
pub fn pin_l3_as_l4(env: &Env) -> Verdict {
    pin_frame(4, env.l3, false)
}

/// The hypervisor's image pinned as an L1.
pub fn pin_foreign_frame(_: &Env) -> Verdict {
    pin_frame(1, HYPERVISOR_IMAGE_MFN, true)
}

/// `MMUEXT_NEW_BASEPTR` to `mfn`, which must be refused; if it is not, switches back at once.
/// Reads the refusal back: a page mapped (read-only, the data page) only in the bootstrap L4,
/// in its free slot, must still read as the data page afterwards.
fn new_baseptr(env: &Env, mfn: u64, what: &str) -> Verdict {
    let probe_va = FREE_L4_VA;
    // SAFETY: the free L4 slot maps nothing Rust code uses.
    let probe = match unsafe { mm::map_page(probe_va, entry(env.data_mfn, P)) } {
        Ok(m) => m,
        Err((step, r)) => return setup_error!("mapping a probe page: {step} {}", Errname(r)),
    };
    // SAFETY: the data slot's page is mapped and used by nothing else.
    let want = unsafe { (env.data_va as *const u64).read_volatile() };
    // SAFETY: if the hypervisor wrongly accepts, the kernel is not mapped any more and this
    // guest crashes, which the missing result line reports.
    let ret = unsafe { mm::new_baseptr(mfn) };
    if ret >= 0 {
        // SAFETY: back to the address space the kernel runs in.
        unsafe { mm::new_baseptr(env.l4) };
    }
    let seen = read_probe(probe_va);
    // SAFETY: nothing uses the probe page any more.
    let unmapped = unsafe { mm::unmap_page(&probe) };
    if unmapped.is_err() {
        return setup_error!("unmapping the probe page: {unmapped:?}");
    }
    expect_refusal(
        ret,
        seen == Some(want),
        format_args!("CR3 was switched to {what}: the old L4's page reads {seen:x?}"),
    )
}

/// A load from `va`, or `None` if it faults.
fn read_probe(va: u64) -> Option<u64> {
    let v: u64;
    // SAFETY: a load; the probe resumes on #PF.
    let p =
        unsafe { probe!(PAGE_FAULT, "mov {v}, qword ptr [{a}]"; a = in(reg) va, v = out(reg) v) };
    p.caught.is_none().then_some(v)
}

/// To the bootstrap L1.
pub fn new_baseptr_l1(env: &Env) -> Verdict {
    new_baseptr(env, env.l1, "an L1")
}

/// To a data page that is mapped writable.
pub fn new_baseptr_data_frame(env: &Env) -> Verdict {
    new_baseptr(env, env.data_mfn, "a writable data page")
}

/// To the hypervisor's image.
pub fn new_baseptr_foreign_frame(env: &Env) -> Verdict {
    new_baseptr(env, HYPERVISOR_IMAGE_MFN, "a hypervisor frame")
}

/// To a never-validated, unpinned L4 that holds the kernel's entries (so it would even run)
/// and one in slot 256.
pub fn new_baseptr_unvalidated_l4_with_reserved_slot(env: &Env) -> Verdict {
    let kernel = kernel_l4(env);
    let l3 = env.l3;
    let (_, mfn) = match fresh(|t| {
        t.copy_from_slice(&kernel);
        t[HYPERVISOR_FIRST_L4_SLOT] = entry(l3, P | RW | U);
    }) {
        Ok(f) => f,
        Err(v) => return v,
    };
    new_baseptr(env, mfn, "an L4 with an entry in slot 256")
}

/// Unpins the L4 that is in CR3 (Xen allows it: the base pointer keeps it an L4), then tries
/// to free it and to map it writable; both must fail. Re-pins it afterwards.
pub fn free_current_l4_after_unpin(env: &Env) -> Verdict {
    let l4_pfn = mm::bootstrap_l4_pfn();
    // SAFETY: the L4 stays in CR3; unpinning changes no mapping.
    let unpin = unsafe { mm::unpin(env.l4) };
    let mut extents = [env.l4];
    // SAFETY: if the hypervisor wrongly frees the L4 in CR3, this guest is running on a freed
    // frame, which the checks below and the frame-table check report.
    let freed = unsafe { mm::reservation(XENMEM_DECREASE_RESERVATION, &mut extents, DOMID_SELF) };
    let before = env.target_entry();
    // SAFETY: the target slot is a window page no Rust code uses.
    let writable = unsafe { mm::update_va(env.target_va(), entry(env.l4, P | RW), UVMF_INVLPG) };
    if writable >= 0 {
        // SAFETY: as above.
        unsafe { mm::update_va(env.target_va(), before, UVMF_INVLPG | UVMF_LOCAL) };
    }
    let repin = if unpin == 0 {
        // SAFETY: pinning the L4 in CR3 again changes nothing.
        unsafe { mm::pin(4, env.l4) }
    } else {
        0
    };
    let still_ours = mm::m2p(env.l4) == Some(l4_pfn);
    let how = format_args!(
        "unpin {}, decrease_reservation {}, writable mapping {}, re-pin {}, M2P still ours: \
         {still_ours}",
        Errname(unpin),
        Errname(freed),
        Errname(writable),
        Errname(repin)
    );
    if freed <= 0 && writable < 0 && still_ours {
        refused!("{how}")
    } else {
        succeeded!("{how}")
    }
}

/// Maps a fresh frame writable at the alias slot (global if `global`), writes it so that the
/// TLB holds a dirty writable entry, and unmaps it *without* a flush. Returns the window and
/// the frame.
#[allow(clippy::result_large_err)] // As for `fresh`.
fn stale_alias(global: bool) -> Result<(Window, u64, u64), Verdict> {
    let (pfn, mfn) = fresh(|_| {})?;
    let flags = P | RW | if global { pte::GLOBAL } else { 0 };
    // SAFETY: the alias slot is free; the frame is fresh.
    let w = unsafe { Window::open(ALIAS_SLOT, entry(mfn, flags)) }.map_err(|ret| {
        if global {
            // A hypervisor that refuses global mappings has closed this door already.
            refused!("a global mapping is refused: {}", Errname(ret))
        } else {
            setup_error!("mapping a fresh frame writable: {}", Errname(ret))
        }
    })?;
    w.write(0, 0);
    w.write(8, 0);
    // SAFETY: no reference into the window is live; the entry goes, the TLB entry may stay.
    let ret = unsafe { w.set(0, UVMF_NONE) };
    if ret < 0 {
        let _ = w.close();
        return Err(setup_error!("unmapping without a flush: {}", Errname(ret)));
    }
    Ok((w, pfn, mfn))
}

/// Writes `value` through the stale alias; returns the verdict on whether it faulted.
fn write_through_stale(w: &Window, value: u64) -> Option<xenia_guest_rt::trap::Entry> {
    // SAFETY: a store through an address whose entry is gone: it must fault. If the stale
    // TLB entry lets it through, it writes the frame under attack, which is what the attack
    // is about.
    let p = unsafe {
        probe!(PAGE_FAULT, "mov qword ptr [{a}], {v}"; a = in(reg) w.va(), v = in(reg) value)
    };
    p.caught
}

fn stale_tlb_after_pin(env: &Env, global: bool) -> Verdict {
    let (w, _, mfn) = match stale_alias(global) {
        Ok(a) => a,
        Err(v) => return v,
    };
    // SAFETY: the frame is mapped nowhere (only a stale TLB entry may remain).
    let ret = unsafe { mm::pin(1, mfn) };
    if ret < 0 {
        let _ = w.close();
        return setup_error!("pinning the unmapped frame: {}", Errname(ret));
    }
    let fault = write_through_stale(&w, entry(env.l4, P | RW));
    let _ = w.close();
    match fault {
        Some(e) => {
            // SAFETY: the table is empty and hooked in nowhere.
            unsafe { mm::unpin(mfn) };
            refused!("{}", Fault(&e))
        }
        None => {
            // The pinned L1 now maps the L4 writable behind the hypervisor's back: leave it
            // pinned (unpinning would drop a reference never taken).
            let seen = mm::read_entry(mfn, 0).unwrap_or(0);
            succeeded!("the store reached the pinned L1: entry 0 is {seen:#x}")
        }
    }
}

/// After pinning, through a stale ordinary TLB entry.
pub fn write_through_stale_tlb_after_pin(env: &Env) -> Verdict {
    stale_tlb_after_pin(env, false)
}

/// After pinning, through a stale *global* TLB entry (survives CR3 loads).
pub fn write_through_stale_global_tlb_after_pin(env: &Env) -> Verdict {
    stale_tlb_after_pin(env, true)
}

/// After giving the frame back (decrease_reservation), through a stale global TLB entry:
/// a write to a frame that is no longer the domain's. Repopulates the pfn afterwards.
pub fn write_through_stale_tlb_after_free(_: &Env) -> Verdict {
    let (w, pfn, mfn) = match stale_alias(true) {
        Ok(a) => a,
        Err(v) => return v,
    };
    let mut extents = [mfn];
    // SAFETY: the frame is mapped nowhere (only a stale TLB entry may remain).
    let freed = unsafe { mm::reservation(XENMEM_DECREASE_RESERVATION, &mut extents, DOMID_SELF) };
    if freed != 1 {
        let _ = w.close();
        return setup_error!("freeing an unmapped frame: {}", Errname(freed));
    }
    mm::set_p2m(pfn, mm::INVALID_P2M);
    let fault = write_through_stale(&w, 0x0BAD_F00D);
    let _ = w.close();
    let mut extents = [pfn];
    // SAFETY: the pfn has no frame; the new one is mapped nowhere.
    let again = unsafe { mm::reservation(XENMEM_POPULATE_PHYSMAP, &mut extents, DOMID_SELF) };
    if again == 1 {
        mm::set_p2m(pfn, extents[0]);
    }
    match fault {
        Some(e) => refused!("{}", Fault(&e)),
        None => succeeded!("the store reached frame {mfn:#x} after it was freed"),
    }
}

/// Issue 11's review (R1): one `mmuext_op` batch switches the base pointer to a copy B of the
/// kernel's L4, unpins the old L4 A, overwrites A (now a plain frame) with forged tables that
/// send the `done` pointer onto a live L1 entry, then fails. A hypervisor that reports `done`
/// through the address space it took before the batch walks the forged A and writes the count
/// into that L1. Succeeds if the entry changed. Afterwards A gets the kernel's entries back,
/// is pinned and loaded again, and B is unpinned.
pub fn stale_root_done_write(env: &Env) -> Verdict {
    use crate::env::{FREE_L4_SLOT, SPARE_SLOT};
    use guest_abi::memory::{
        MMUEXT_COPY_PAGE, MMUEXT_NEW_BASEPTR, MMUEXT_TLB_FLUSH_LOCAL, MMUEXT_UNPIN_TABLE, MmuextOp,
    };
    let Some(victim) = mm::walk(mm::window_va(SPARE_SLOT))[3] else {
        return setup_error!("the spare slot has no L1 entry");
    };
    let (t, k) = (victim.table, victim.index);
    let before = mm::read_entry(t, k);
    // The `done` pointer: in the free L4 slot, at the offset of entry k.
    let (_, done_page) = match fresh(|_| {}) {
        Ok(f) => f,
        Err(v) => return v,
    };
    // SAFETY: the free L4 slot maps nothing Rust code uses.
    let mapping = match unsafe { mm::map_page(FREE_L4_VA, entry(done_page, P | RW)) } {
        Ok(m) => m,
        Err((s, r)) => return setup_error!("mapping the done page: {s} {}", Errname(r)),
    };
    let done_va = FREE_L4_VA + 8 * k as u64;
    let kernel = kernel_l4(env);
    // B: the kernel's L4 (with the done page), pinned.
    let (_, b) = match fresh(|x| x.copy_from_slice(&kernel)) {
        Ok(f) => f,
        Err(v) => return v,
    };
    // SAFETY: a copy of the kernel's own tables.
    let r = unsafe { mm::pin(4, b) };
    if r < 0 {
        return setup_error!("pinning B: {}", Errname(r));
    }
    // The forged chain: slot FREE_L4_SLOT -> L3f -> L2f -> L1f -> the victim L1 `t`.
    let forged = (|| {
        let (_, l1f) = fresh(|x| x[0] = entry(t, P | RW))?;
        let (_, l2f) = fresh(|x| x[0] = entry(l1f, P | RW | U))?;
        let (_, l3f) = fresh(|x| x[0] = entry(l2f, P | RW | U))?;
        fresh(|x| {
            x.copy_from_slice(&kernel);
            x[FREE_L4_SLOT] = entry(l3f, P | RW | U);
        })
    })();
    let s = match forged {
        Ok((_, s)) => s,
        Err(v) => return v,
    };
    let op = |cmd, arg1, arg2| MmuextOp { cmd, arg1, arg2 };
    let ops = [
        op(MMUEXT_NEW_BASEPTR, b, 0),
        op(MMUEXT_UNPIN_TABLE, env.l4, 0),
        op(MMUEXT_COPY_PAGE, env.l4, s),
        op(MMUEXT_TLB_FLUSH_LOCAL, 0, 0),
        op(MMUEXT_TLB_FLUSH_LOCAL, 0, 0),
        op(MMUEXT_TLB_FLUSH_LOCAL, 0, 0),
        op(MMUEXT_TLB_FLUSH_LOCAL, 0, 0),
        op(0xFFFF, 0, 0),
    ];
    // SAFETY: the guest keeps running on B, a copy of its own tables.
    let ret = unsafe {
        mm::mmuext_raw(
            ops.as_ptr() as u64,
            ops.len() as u64,
            done_va,
            u64::from(DOMID_SELF),
        )
    };
    let after = mm::read_entry(t, k);
    // Put A back: the kernel's entries, pinned, loaded; B unpinned.
    let restore = [
        op(MMUEXT_COPY_PAGE, env.l4, b),
        op(guest_abi::memory::MMUEXT_PIN_L4_TABLE, env.l4, 0),
        op(MMUEXT_NEW_BASEPTR, env.l4, 0),
        op(MMUEXT_UNPIN_TABLE, b, 0),
    ];
    // SAFETY: A gets the same entries as B, which the guest runs on.
    let (r, n) = unsafe { mm::mmuext(&restore) };
    // SAFETY: the done page's mapping in the free slot goes.
    let unmapped = unsafe { mm::unmap_page(&mapping) };
    if r < 0 || unmapped.is_err() {
        return setup_error!(
            "restoring the kernel's L4: {} after {n} operations, unmap {unmapped:?}",
            Errname(r)
        );
    }
    let how = format_args!(
        "mmuext_op {}, L1 {t:#x} entry {k}: before {before:x?}, after {after:x?}",
        Errname(ret)
    );
    if after == before {
        refused!("{how}")
    } else {
        succeeded!("{how}")
    }
}
