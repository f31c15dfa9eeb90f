//! `set_gdt` and `update_descriptor` for Xen PV guests (issue 18), with Xen's descriptor
//! checks (`xenia_core::desc`).
//!
//! `set_gdt` takes each frame as a descriptor page, as Xen's `set_gdt` does: a general and a
//! `Descriptor` type reference, which only a frame with no writable mapping and no other use
//! can take and which then keeps the guest from mapping it writable or freeing it. Only once
//! the frame is held is its content checked (so the guest cannot change it between check
//! and use), and every present descriptor gets its DPL raised to 3 in place, as Xen writes
//! its fix-ups back. A refused frame leaves the previous GDT in force.
//!
//! The frames are in force whenever the vCPU runs (`load_gdt`, from the switch path and at
//! once for `set_gdt`'s caller): mapped into GDT pages 0.. of the pCPU's entry area, Xen's
//! reserved page above them (the hypervisor's own selectors are Xen's 0xe008/0xe010 there).
//! Every descriptor in them passed Xen's checks (DPL 3, no gates or system descriptors),
//! and `update_descriptor` checks each new one, so the guest's selectors give it ring-3
//! segments only.

use guest_abi::errno::Errno;

use super::context::{Hc, HcResult, Ret};
use super::mem::GuestPtr;
use crate::domain::Vcpu;
use crate::mm::frame_table::PageType;
use crate::mm::{Mfn, ft, physmem};

/// Descriptors in a page.
pub const PER_PAGE: u64 = 512;
/// Bytes in a page.
const PAGE_BYTES: u64 = 4096;

/// Changes of descriptor tables so far, on every pCPU: a GDT or LDT given or let go, a
/// descriptor page taken, a descriptor written. A check of selectors against the tables in
/// force (`fast_pv`'s `iret`) holds while this has not moved. Moved after the change, by
/// the changer, which holds the domain's lock as the checker does.
pub(crate) static CHANGES: core::sync::atomic::AtomicU64 = core::sync::atomic::AtomicU64::new(1);

/// [`CHANGES`] now.
#[inline]
pub fn changes() -> u64 {
    CHANGES.load(core::sync::atomic::Ordering::SeqCst)
}

/// A descriptor table changed (after the change).
fn changed() {
    CHANGES.fetch_add(1, core::sync::atomic::Ordering::SeqCst);
}

/// `set_gdt(frame_list, entries)`: Xen's `do_set_gdt` for the calling vCPU.
pub fn set_gdt(cx: &mut Hc) -> HcResult {
    let (list, entries) = (cx.arg(0), cx.arg(1));
    if !cx.vcpu_ref().xen_pv {
        return Err(Errno::ENOSYS);
    }
    if entries > crate::desc::MAX_GUEST_GDT_ENTRIES {
        return Err(Errno::EINVAL);
    }
    let n = entries.div_ceil(PER_PAGE) as usize;
    let mut frames = [0u64; 14];
    let space = cx.space();
    for (i, f) in frames[..n].iter_mut().enumerate() {
        *f = space.read(GuestPtr::<u64>::new(list.wrapping_add(8 * i as u64)))?;
    }
    let held = hold_frames(cx.id(), &frames[..n])?;
    let v = cx.vcpu();
    release_gdt(v);
    v.gdt_frames = held;
    v.gdt_entries = entries as u32;
    // In force at once for the caller, which runs on this pCPU (Xen loads it too).
    load_gdt(v);
    changed();
    Ok(Ret::Value(0))
}

/// Gives `v` (not running: a context being installed) the GDT `frames` held by
/// [`hold_frames`], `entries` long, after its old one was let go; the change counted after
/// it is made, and the vCPU's remembered `iret` selectors forgotten.
pub fn install_gdt(v: &mut Vcpu, frames: [Mfn; 14], entries: u32) {
    v.gdt_frames = frames;
    v.gdt_entries = entries;
    v.iret_selectors = (0, 0);
    changed();
}

/// Puts `v`'s GDT and LDT in force on this pCPU (`gdt::load_for`, `gdt::load_ldt`): its
/// own frames if it gave some.
pub fn load_gdt(v: &Vcpu) {
    let n = (u64::from(v.gdt_entries)).div_ceil(PER_PAGE) as usize;
    let l = (u64::from(v.ldt_entries)).div_ceil(PER_PAGE) as usize;
    let ldt = &v.ldt_frames[..l.min(v.ldt_frames.len())];
    crate::arch::x86_64::gdt::load_ldt(ldt, v.ldt_entries);
    crate::arch::x86_64::gdt::load_for(v.xen_pv, &v.gdt_frames[..n.min(v.gdt_frames.len())]);
}

/// Entries an LDT may have (Xen's limit: 64 KiB of descriptors).
pub const MAX_LDT_ENTRIES: u64 = 8192;

/// `MMUEXT_SET_LDT(linear_addr, nr_ents)` for a Xen PV vCPU (Xen's `MMUEXT_SET_LDT` in
/// `do_mmuext_op`): the address page-aligned and the caller's to use, at most 8192
/// entries (`EINVAL` otherwise); 0 entries removes the LDT. Xen maps the pages lazily, on the
/// first fault in the LDT area, typing each as a descriptor page then; Xenia takes them at
/// once: each page must be mapped in the caller's tables, and is held as `set_gdt` holds
/// GDT frames (a descriptor page of the caller's, every descriptor passing Xen's checks),
/// else `EINVAL` and the old LDT stays. In force at once (`load_gdt`).
pub fn set_ldt(cx: &mut Hc, base: u64, entries: u64) -> Result<(), Errno> {
    if entries > MAX_LDT_ENTRIES || !base.is_multiple_of(PAGE_BYTES) {
        return Err(Errno::EINVAL);
    }
    let mut frames = [0u64; 16];
    let n = entries.div_ceil(PER_PAGE) as usize;
    if entries != 0 && !super::mem::range_ok(base, entries * 8) {
        return Err(Errno::EINVAL);
    }
    let space = cx.space();
    for (i, f) in frames[..n].iter_mut().enumerate() {
        let va = base + i as u64 * PAGE_BYTES;
        *f = space
            .translate(va, false, false)
            .map_err(|_| Errno::EINVAL)?
            >> 12;
    }
    let mut held = [Mfn(0); 16];
    let first = hold_frames(cx.id(), &frames[..n.min(14)])?;
    held[..14].copy_from_slice(&first);
    if n > 14 {
        match hold_frames(cx.id(), &frames[14..n]) {
            Ok(rest) => held[14..16].copy_from_slice(&rest[..2]),
            Err(e) => {
                release_frames(&held[..14]);
                return Err(e);
            }
        }
    }
    let v = cx.vcpu();
    release_ldt(v);
    v.ldt_frames = held;
    v.ldt_entries = entries as u32;
    load_gdt(v);
    changed();
    Ok(())
}

/// Lets go of the frames of `v`'s LDT (a new `MMUEXT_SET_LDT`, a new context, the domain
/// destroyed).
pub fn release_ldt(v: &mut Vcpu) {
    let n = (u64::from(v.ldt_entries)).div_ceil(PER_PAGE) as usize;
    release_frames(&v.ldt_frames[..n.min(v.ldt_frames.len())]);
    v.ldt_frames = [Mfn(0); 16];
    v.ldt_entries = 0;
    changed();
}

/// Takes each of `frames` (at most 14) as a descriptor page of `dom`, checking its
/// descriptors (`hold_descriptor_page`); all or none: on a refusal the ones taken are let
/// go and the errno is `EINVAL`. `set_gdt` and a Xen PV `VCPUOP_initialise`'s `gdt_frames`.
pub fn hold_frames(dom: guest_abi::types::DomId, frames: &[u64]) -> Result<[Mfn; 14], Errno> {
    let mut held = [Mfn(0); 14];
    if frames.len() > held.len() {
        return Err(Errno::EINVAL);
    }
    for (i, &f) in frames.iter().enumerate() {
        if let Err(e) = hold_descriptor_page(dom, Mfn(f)) {
            release_frames(&held[..i]);
            return Err(e);
        }
        held[i] = Mfn(f);
    }
    Ok(held)
}

/// Lets go of descriptor pages taken by [`hold_frames`].
pub fn release_frames(frames: &[Mfn]) {
    for &m in frames {
        let _ = ft::with(|t, mem| t.put_page_type(mem, m));
    }
    changed();
}

/// Takes `mfn`, owned by `dom`, as a descriptor page and checks (and fixes up) every
/// descriptor in it; `EINVAL` if it cannot be one or holds a refused descriptor.
fn hold_descriptor_page(dom: guest_abi::types::DomId, mfn: Mfn) -> Result<(), Errno> {
    ft::with(|t, mem| t.get_page_type(mem, mfn, dom, PageType::Descriptor))
        .map_err(|_| Errno::EINVAL)?;
    let mut page = [0u64; PER_PAGE as usize];
    physmem::read_u64s(mfn, 0, &mut page);
    if !crate::desc::check_page(&mut page) {
        let _ = ft::with(|t, mem| t.put_page_type(mem, mfn));
        return Err(Errno::EINVAL);
    }
    for (i, &d) in page.iter().enumerate() {
        physmem::write_u64(mfn, i, d);
    }
    changed();
    Ok(())
}

/// Lets go of the frames of `v`'s GDT (a new `set_gdt`, the vCPU's context replaced, its
/// domain destroyed).
pub fn release_gdt(v: &mut Vcpu) {
    let n = (u64::from(v.gdt_entries)).div_ceil(PER_PAGE) as usize;
    release_frames(&v.gdt_frames[..n.min(v.gdt_frames.len())]);
    v.gdt_frames = [Mfn(0); 14];
    v.gdt_entries = 0;
    changed();
}

/// `update_descriptor(ma, desc)`: Xen's `do_update_descriptor`. The frame at machine address
/// `ma` (8-byte aligned) must be the caller's and a descriptor page or able to be written
/// (never a page table); the descriptor is checked as `set_gdt`'s are, then written.
pub fn update_descriptor(cx: &mut Hc) -> HcResult {
    let (ma, raw) = (cx.arg(0), cx.arg(1));
    if !cx.vcpu_ref().xen_pv {
        return Err(Errno::ENOSYS);
    }
    if !ma.is_multiple_of(8) {
        return Err(Errno::EINVAL);
    }
    let mfn = Mfn(ma >> 12);
    let index = ((ma & 0xFFF) / 8) as usize;
    let id = cx.id();
    // As Xen: a descriptor page takes another descriptor reference, anything else must be
    // able to take the writable type for the write.
    let ty = ft::with(|t, _| t.current_type(mfn));
    let ty = if ty == Some(PageType::Descriptor) {
        PageType::Descriptor
    } else {
        PageType::Writable
    };
    ft::with(|t, mem| t.get_page_type(mem, mfn, id, ty)).map_err(|_| Errno::EINVAL)?;
    let result = match crate::desc::check_descriptor(raw) {
        Some(d) => {
            physmem::write_u64(mfn, index, d);
            changed();
            Ok(Ret::Value(0))
        }
        None => Err(Errno::EINVAL),
    };
    let _ = ft::with(|t, mem| t.put_page_type(mem, mfn));
    result
}
