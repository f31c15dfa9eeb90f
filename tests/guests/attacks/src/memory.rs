//! Attacks on the reservation: freeing frames that are still in use (mapped, pinned, a page
//! table in use, the shared-info page) or not the guest's, growing past the maximum, and
//! making the hypervisor write its results through a read-only mapping.
//!
//! As in Xen, `XENMEM_decrease_reservation` takes machine frame numbers from a PV guest and
//! returns how many extents it freed; a refusal is 0 of 1 (or an errno).

use guest_abi::memory::{
    MemoryReservation, UVMF_INVLPG, UVMF_LOCAL, XENMEM_DECREASE_RESERVATION,
    XENMEM_POPULATE_PHYSMAP,
};
use guest_abi::types::DOMID_SELF;
use xenia_guest_rt::boot::{VIRT_BASE, start_info};
use xenia_guest_rt::events;
use xenia_guest_rt::mm::{self, PAGE, Window, pte};

use crate::env::{Env, HYPERVISOR_IMAGE_MFN, SPARE_SLOT};
use crate::verdict::{Errname, Verdict};
use crate::{refused, setup_error, succeeded};

/// Most extents [`populate_beyond_maximum`] asks for (one page of `u64`s).
const MAX_EXTENTS: usize = 512;

/// `decrease_reservation` of the one frame `mfn`; returns `rax`.
fn free(mfn: u64) -> i64 {
    let mut extents = [mfn];
    // SAFETY: every frame this module tries to free is one the hypervisor must refuse to
    // free; if it does not, the checks report it (and this guest may crash, which the missing
    // result line reports).
    unsafe { mm::reservation(XENMEM_DECREASE_RESERVATION, &mut extents, DOMID_SELF) }
}

/// Refused when nothing was freed and `intact` holds.
fn verdict(ret: i64, intact: bool, state: core::fmt::Arguments) -> Verdict {
    if ret < 0 && intact {
        refused!("{}", Errname(ret))
    } else if ret == 0 && intact {
        refused!("freed 0 of 1")
    } else {
        succeeded!("returned {}; {state}", Errname(ret))
    }
}

/// The data page, which is mapped writable.
pub fn free_mapped_frame(env: &Env) -> Verdict {
    let pfn = (env.data_va - VIRT_BASE) / PAGE;
    let p = env.data_va as *mut u64;
    // SAFETY: the data slot's page is mapped writable and used by nothing else.
    unsafe { p.write_volatile(0x1234_5678) };
    let ret = free(env.data_mfn);
    // SAFETY: as above (if it was freed, the mapping must be gone; the write then faults and
    // the guest crashes, which the missing result line reports).
    let readback = unsafe {
        p.write_volatile(0x8765_4321);
        p.read_volatile()
    };
    let intact = readback == 0x8765_4321 && mm::m2p(env.data_mfn) == Some(pfn);
    verdict(
        ret,
        intact,
        format_args!("readback {readback:#x}, M2P {:?}", mm::m2p(env.data_mfn)),
    )
}

/// A fresh frame pinned as an L1.
pub fn free_pinned_table(_: &Env) -> Verdict {
    let Some((pfn, mfn)) = mm::fresh_frame() else {
        return setup_error!("no fresh frame");
    };
    // SAFETY: a fresh frame, mapped nowhere.
    if let Err(ret) = unsafe { mm::zero_frame(mfn) } {
        return setup_error!("zeroing a fresh frame: {}", Errname(ret));
    }
    // SAFETY: an empty table hooked in nowhere.
    let ret = unsafe { mm::pin(1, mfn) };
    if ret < 0 {
        return setup_error!("pinning an empty L1: {}", Errname(ret));
    }
    let freed = free(mfn);
    let intact = mm::m2p(mfn) == Some(pfn);
    // SAFETY: as above.
    let unpin = unsafe { mm::unpin(mfn) };
    verdict(
        freed,
        intact && unpin == 0,
        format_args!(
            "M2P {:?}, unpin afterwards {}",
            mm::m2p(mfn),
            Errname(unpin)
        ),
    )
}

/// The bootstrap L1 that maps the padding: not pinned itself, but in use.
pub fn free_page_table_in_use(env: &Env) -> Verdict {
    let pfn = mm::m2p(env.l1);
    let ret = free(env.l1);
    verdict(
        ret,
        mm::m2p(env.l1) == pfn && env.target_entry() != u64::MAX,
        format_args!("M2P {:?}", mm::m2p(env.l1)),
    )
}

/// The hypervisor's image. Read back: its M2P entry and the domain's reservation are as
/// they were.
pub fn free_foreign_frame(_: &Env) -> Verdict {
    let (m2p, res) = (mm::m2p(HYPERVISOR_IMAGE_MFN), mm::current_reservation());
    let ret = free(HYPERVISOR_IMAGE_MFN);
    let (m2p_after, res_after) = (mm::m2p(HYPERVISOR_IMAGE_MFN), mm::current_reservation());
    verdict(
        ret,
        m2p_after == m2p && res_after == res,
        format_args!(
            "M2P {m2p_after:x?} (was {m2p:x?}), reservation {} (was {})",
            Errname(res_after),
            Errname(res)
        ),
    )
}

/// The word of `shared_info.evtchn_mask` for the last event port, which this guest never
/// binds: the read-back of [`free_shared_info_frame`] toggles its top bit.
const LAST_PORT: u32 = guest_abi::event::EVTCHN_2L_NR_CHANNELS - 1;

/// The shared-info page: the hypervisor keeps writing it (time, events), so freeing it would
/// leave the hypervisor writing a freed frame. Read back: the reservation is as it was, the
/// frame's M2P entry too, and the page still takes a write (a mask bit set and cleared).
pub fn free_shared_info_frame(_: &Env) -> Verdict {
    let mfn = start_info().shared_info >> 12;
    let (m2p, res) = (mm::m2p(mfn), mm::current_reservation());
    let ret = free(mfn);
    let (m2p_after, res_after) = (mm::m2p(mfn), mm::current_reservation());
    // A freed page would fault here (mapping gone) or keep the bit in some other domain's
    // page; the guest crashing leaves no result line.
    events::set_port_masked(LAST_PORT, true);
    let took = events::is_port_masked(LAST_PORT);
    events::set_port_masked(LAST_PORT, false);
    verdict(
        ret,
        m2p_after == m2p && res_after == res && took && !events::is_port_masked(LAST_PORT),
        format_args!(
            "M2P {m2p_after:x?} (was {m2p:x?}), reservation {} (was {}), page writable {took}",
            Errname(res_after),
            Errname(res)
        ),
    )
}

/// Asks `populate_physmap` for one extent more than the maximum reservation leaves room for
/// (pfns past the p2m list); gives back whatever it got.
pub fn populate_beyond_maximum(_: &Env) -> Verdict {
    let (cur, max) = (mm::current_reservation(), mm::maximum_reservation());
    if cur < 0 || max < 0 {
        return setup_error!(
            "current reservation {}, maximum {}",
            Errname(cur),
            Errname(max)
        );
    }
    let room = max.saturating_sub(cur) as u64;
    let want = room + 1;
    if want > MAX_EXTENTS as u64 {
        return Verdict::new(
            crate::verdict::Outcome::Skipped,
            format_args!("the maximum leaves room for {room} pages, too many to exhaust"),
        );
    }
    let mut extents = [0u64; MAX_EXTENTS];
    let n = want as usize;
    for (i, e) in extents[..n].iter_mut().enumerate() {
        *e = mm::nr_pages() + i as u64;
    }
    // SAFETY: the pfns are past the p2m list: nothing maps them.
    let ret = unsafe { mm::reservation(XENMEM_POPULATE_PHYSMAP, &mut extents[..n], DOMID_SELF) };
    let got = usize::try_from(ret).unwrap_or(0).min(n);
    if got > 0 {
        // Give back what was populated: the array holds the machine frames now.
        // SAFETY: the frames are mapped nowhere.
        unsafe { mm::reservation(XENMEM_DECREASE_RESERVATION, &mut extents[..got], DOMID_SELF) };
    }
    let now = mm::current_reservation();
    // Read back: whatever was handed out went back, and the reservation never passed the
    // maximum.
    if (ret < 0 || (ret as u64) < want) && now == cur && now <= max {
        refused!(
            "populated {} of {want} (room for {room}), reservation back to {}",
            Errname(ret),
            Errname(now)
        )
    } else {
        succeeded!(
            "populated {} of {want} with room for {room}; reservation {} -> {} (maximum {max})",
            Errname(ret),
            Errname(cur),
            Errname(now)
        )
    }
}

/// `populate_physmap` whose extent array lies in a page the guest maps read-only: the
/// hypervisor must not write the new machine frame into it.
pub fn populate_into_read_only_array(_: &Env) -> Verdict {
    // Room for one frame: free a fresh one first.
    let Some((pfn, mfn)) = mm::fresh_frame() else {
        return setup_error!("no fresh frame");
    };
    if free(mfn) != 1 {
        return setup_error!("freeing an unused frame failed");
    }
    mm::set_p2m(pfn, mm::INVALID_P2M);
    let Some((_, array)) = mm::fresh_frame() else {
        return setup_error!("no fresh frame");
    };
    // SAFETY: a fresh frame, mapped nowhere.
    if let Err(ret) = unsafe { mm::fill_frame(array, |t| t[0] = pfn) } {
        return setup_error!("writing a fresh frame: {}", Errname(ret));
    }
    // SAFETY: the spare slot is free.
    let w = match unsafe { Window::read_only(SPARE_SLOT, array) } {
        Ok(w) => w,
        Err(ret) => return setup_error!("mapping a frame read-only: {}", Errname(ret)),
    };
    let r = MemoryReservation {
        extent_start: w.va(),
        nr_extents: 1,
        extent_order: 0,
        mem_flags: 0,
        domid: DOMID_SELF,
    };
    let before = mm::current_reservation();
    // SAFETY: the pfn has no frame; the only memory the call may write is the read-only
    // window, which it must not.
    let ret = unsafe { mm::memory_op_raw(XENMEM_POPULATE_PHYSMAP, &raw const r as u64) };
    let after = mm::current_reservation();
    let word = w.read(0);
    let _ = w.close();
    // Take the frame normally, so that the domain ends as big as it started.
    if after == before {
        let mut extents = [pfn];
        // SAFETY: as above.
        let again = unsafe { mm::reservation(XENMEM_POPULATE_PHYSMAP, &mut extents, DOMID_SELF) };
        if again == 1 {
            mm::set_p2m(pfn, extents[0]);
        }
    }
    let how = format_args!(
        "returned {}, array word {word:#x} (was {pfn:#x}), reservation {} -> {}",
        Errname(ret),
        Errname(before),
        Errname(after)
    );
    if ret <= 0 && word == pfn && after == before {
        refused!("{how}")
    } else {
        succeeded!("{how}")
    }
}

/// `decrease_reservation` whose extent array is in the hypervisor's range.
pub fn free_with_array_in_hypervisor(_: &Env) -> Verdict {
    let r = MemoryReservation {
        extent_start: 0xFFFF_8100_0010_0000,
        nr_extents: 1,
        extent_order: 0,
        mem_flags: 0,
        domid: DOMID_SELF,
    };
    let before = mm::current_reservation();
    // SAFETY: the call must fail without freeing anything.
    let ret = unsafe { mm::memory_op_raw(XENMEM_DECREASE_RESERVATION, &raw const r as u64) };
    let after = mm::current_reservation();
    if ret <= 0 && after == before {
        if ret < 0 {
            refused!("{}", Errname(ret))
        } else {
            refused!("freed 0 of 1")
        }
    } else {
        succeeded!(
            "returned {}, reservation {} -> {}",
            Errname(ret),
            Errname(before),
            Errname(after)
        )
    }
}

/// Maps the data page again at the target slot (a second writable mapping is legitimate),
/// then frees it: the hypervisor must see both mappings.
pub fn free_twice_mapped_frame(env: &Env) -> Verdict {
    let before = env.target_entry();
    // SAFETY: the target slot is a window page no Rust code uses.
    let ret = unsafe {
        mm::update_va(
            env.target_va(),
            pte::entry(env.data_mfn, pte::PRESENT | pte::RW),
            UVMF_INVLPG | UVMF_LOCAL,
        )
    };
    if ret < 0 {
        return setup_error!("a second writable mapping: {}", Errname(ret));
    }
    let freed = free(env.data_mfn);
    // SAFETY: as above.
    let restore = unsafe { mm::update_va(env.target_va(), before, UVMF_INVLPG | UVMF_LOCAL) };
    let pfn = (env.data_va - VIRT_BASE) / PAGE;
    verdict(
        freed,
        restore == 0 && mm::m2p(env.data_mfn) == Some(pfn),
        format_args!(
            "restore {}, M2P {:?}",
            Errname(restore),
            mm::m2p(env.data_mfn)
        ),
    )
}
