//! Pages of other domains mapped into dom0's kernel with `GNTTABOP_map_grant_ref` (a
//! backend's shared ring), and their safe end.
//!
//! **Where.** A mapping takes one page-aligned page of the kernel heap: the page's own
//! entry (from the builder's bootstrap tables, shared by every address space) is emptied
//! with `update_va_mapping`, the grant is mapped there (`GNTMAP_host_map`, writable), and at
//! unmap the page's own frame is put back before the page returns to the heap. A page whose
//! unmap or restore fails is never given back (kept, unused, with a log line).
//!
//! **Access.** The granter may write the page at any moment, so nothing here hands out a
//! Rust reference to it: [`with`] gives a [`Shared`] whose reads and writes are volatile
//! and bounds-checked, for the length of a closure that must not wait (the table's lock is
//! held).
//!
//! **Destruction.** Xenia revokes every mapping of a domain's grants when the domain is
//! destroyed (`XEN_DOMCTL_destroydomain`: the PTE removed, then the frame freed), where Xen
//! keeps the frame until the mapper unmaps it. A revoked mapping would fault dom0's next
//! access, so dom0 unmaps first: every `destroydomain` dom0 issues (its own, in
//! [`crate::direct`], and its processes', in privcmd) calls [`before_destroy`] first, which
//! unmaps the domain's pages and marks them gone; [`with`] then gives `None`, and the owner
//! lets go. dom0's kernel runs on one vCPU and never waits inside [`with`], so no access is
//! in flight when a destroy runs.

use alloc::alloc::{Layout, alloc, dealloc};
use alloc::vec::Vec;

use guest_abi::grant::{
    GNTMAP_HOST_MAP, GNTST_GENERAL_ERROR, GNTST_NO_SPACE, GNTST_OKAY, GNTTABOP_MAP_GRANT_REF,
    GNTTABOP_UNMAP_GRANT_REF, GnttabMapGrantRef, GnttabUnmapGrantRef,
};
use guest_abi::hypercall::{HYPERVISOR_GRANT_TABLE_OP, hypercall3};
use guest_abi::memory::{UVMF_INVLPG, UVMF_LOCAL};
use guest_abi::types::DomId;
use spin::Mutex;
use xenia_guest_rt::boot::VIRT_BASE;
use xenia_guest_rt::mm::{self, pte};

use crate::tprintln;

const PAGE: usize = 4096;

/// One mapped page.
struct Slot {
    dom: DomId,
    gref: u32,
    /// The heap page it is mapped at.
    va: u64,
    /// The page's own entry, put back at unmap.
    original: u64,
    handle: u32,
    /// Still mapped (not unmapped because its domain is being destroyed).
    live: bool,
}

/// The mapped pages; `None`: a free entry.
static SLOTS: Mutex<Vec<Option<Slot>>> = Mutex::new(Vec::new());

/// A mapped page, owned by its user (a device's ring); [`unmap`] ends it.
#[must_use = "a mapped page stays mapped until unmapped"]
pub struct Mapped {
    index: usize,
}

/// The mapped page's bytes, while [`with`]'s closure runs: every access volatile and
/// bounds-checked (an access out of the page reads 0 or writes nothing).
pub struct Shared {
    va: u64,
}

impl Shared {
    fn at(&self, offset: usize, len: usize) -> Option<u64> {
        (offset.checked_add(len)? <= PAGE).then_some(self.va + offset as u64)
    }

    /// The little-endian `u32` at `offset` (4-aligned), read once.
    pub fn read_u32(&self, offset: usize) -> u32 {
        match self.at(offset, 4) {
            // SAFETY: inside the mapped page, 4-aligned (the caller's offsets are); the
            // granter may change it at any moment: a volatile read of plain bytes.
            Some(a) if a.is_multiple_of(4) => unsafe { (a as *const u32).read_volatile() },
            _ => 0,
        }
    }

    /// Writes the `u32` at `offset` (4-aligned).
    pub fn write_u32(&self, offset: usize, value: u32) {
        if let Some(a) = self.at(offset, 4)
            && a.is_multiple_of(4)
        {
            // SAFETY: inside the mapped page, which is mapped writable; nothing in dom0
            // holds a reference to it.
            unsafe { (a as *mut u32).write_volatile(value) }
        }
    }

    /// Copies `out.len()` bytes at `offset` out, once each (8 bytes at a time where
    /// aligned).
    pub fn read(&self, offset: usize, out: &mut [u8]) {
        let Some(a) = self.at(offset, out.len()) else {
            out.fill(0);
            return;
        };
        let mut i = 0;
        if a.is_multiple_of(8) {
            while i + 8 <= out.len() {
                // SAFETY: inside the mapped page, 8-aligned; a volatile read.
                let w = unsafe { ((a + i as u64) as *const u64).read_volatile() };
                out[i..i + 8].copy_from_slice(&w.to_le_bytes());
                i += 8;
            }
        }
        while i < out.len() {
            // SAFETY: inside the mapped page; a volatile read.
            out[i] = unsafe { ((a + i as u64) as *const u8).read_volatile() };
            i += 1;
        }
    }

    /// Writes `bytes` at `offset` (8 bytes at a time where aligned).
    pub fn write(&self, offset: usize, bytes: &[u8]) {
        let Some(a) = self.at(offset, bytes.len()) else {
            return;
        };
        let mut i = 0;
        if a.is_multiple_of(8) {
            while i + 8 <= bytes.len() {
                let mut w = [0u8; 8];
                w.copy_from_slice(&bytes[i..i + 8]);
                // SAFETY: inside the mapped page, 8-aligned, mapped writable.
                unsafe { ((a + i as u64) as *mut u64).write_volatile(u64::from_le_bytes(w)) };
                i += 8;
            }
        }
        while i < bytes.len() {
            // SAFETY: inside the mapped page, mapped writable.
            unsafe { ((a + i as u64) as *mut u8).write_volatile(bytes[i]) };
            i += 1;
        }
    }
}

impl Shared {
    /// Copies `src` into the page at `offset` (one `rep movs`: the granter may change the
    /// page meanwhile, which only garbles its own bytes). Nothing if it does not fit.
    pub fn copy_in(&self, offset: usize, src: &[u8]) {
        if let Some(a) = self.at(offset, src.len()) {
            // SAFETY: the destination is inside the mapped page (mapped writable) and the
            // source is the caller's slice: distinct memory.
            unsafe { movs(a as *mut u8, src.as_ptr(), src.len()) }
        }
    }

    /// Copies the page's bytes at `offset` into `dst` (one `rep movs`; each byte read once).
    /// Zeros if it does not fit.
    pub fn copy_out(&self, offset: usize, dst: &mut [u8]) {
        match self.at(offset, dst.len()) {
            // SAFETY: the source is inside the mapped page and the destination the caller's
            // slice: distinct memory.
            Some(a) => unsafe { movs(dst.as_mut_ptr(), a as *const u8, dst.len()) },
            None => dst.fill(0),
        }
    }
}

/// `len` bytes from `src` to `dst` with `rep movsq` (and `rep movsb` for a tail): in asm,
/// so that memory another domain writes meanwhile is only ever read once, as bytes.
///
/// # Safety
///
/// `src` readable and `dst` writable for `len` bytes; the two do not overlap.
unsafe fn movs(dst: *mut u8, src: *const u8, len: usize) {
    // SAFETY: as the caller vouches; the direction flag is clear (the ABI's rule at any
    // call), the registers named are the only ones changed.
    unsafe {
        core::arch::asm!(
            "rep movsq",
            "mov rcx, {tail}",
            "rep movsb",
            tail = in(reg) len % 8,
            inout("rcx") len / 8 => _,
            inout("rdi") dst => _,
            inout("rsi") src => _,
            options(nostack, preserves_flags)
        );
    }
}

fn grant_op<T>(cmd: u32, op: &mut T) -> i64 {
    // SAFETY: one operation, borrowed for the call; the map or unmap changes only the entry
    // of a heap page this module emptied for it (and holds: nothing else refers to it).
    unsafe {
        hypercall3(
            HYPERVISOR_GRANT_TABLE_OP,
            cmd.into(),
            op as *mut T as u64,
            1,
        )
    }
}

/// Maps grant `gref` of `dom` writable into the kernel. `Err` with the `GNTST_*` status
/// (`GNTST_NO_SPACE` when dom0 has no heap page or table entry to spare).
pub fn map(dom: DomId, gref: u32) -> Result<Mapped, i16> {
    let layout = Layout::from_size_align(PAGE, PAGE).map_err(|_| GNTST_GENERAL_ERROR)?;
    let mut slots = SLOTS.lock();
    let index = match slots.iter().position(Option::is_none) {
        Some(i) => i,
        None => {
            slots.try_reserve(1).map_err(|_| GNTST_NO_SPACE)?;
            slots.push(None);
            slots.len() - 1
        }
    };
    // SAFETY: a non-zero-sized layout.
    let page = unsafe { alloc(layout) };
    if page.is_null() {
        return Err(GNTST_NO_SPACE);
    }
    let va = page as u64;
    // The heap is in the bootstrap mappings: one 4 KiB entry per page, the frame the p2m says.
    let leaf = mm::walk(va)[3];
    let own = va.checked_sub(VIRT_BASE).map(|o| mm::p2m(o / PAGE as u64));
    let original = match leaf {
        Some(l) if l.entry & pte::PRESENT != 0 && Some(pte::mfn(l.entry)) == own => l.entry,
        _ => {
            // SAFETY: allocated just above with this layout, never used.
            unsafe { dealloc(page, layout) };
            return Err(GNTST_GENERAL_ERROR);
        }
    };
    // SAFETY: the page was just allocated and nothing refers to it; its frame stays dom0's.
    if unsafe { mm::update_va(va, 0, UVMF_INVLPG | UVMF_LOCAL) } < 0 {
        // SAFETY: as above; its mapping did not change.
        unsafe { dealloc(page, layout) };
        return Err(GNTST_GENERAL_ERROR);
    }
    let mut op = GnttabMapGrantRef {
        host_addr: va,
        flags: GNTMAP_HOST_MAP,
        gref,
        dom,
        ..Default::default()
    };
    let ret = grant_op(GNTTABOP_MAP_GRANT_REF, &mut op);
    if ret < 0 || op.status != GNTST_OKAY {
        let status = if ret < 0 {
            GNTST_GENERAL_ERROR
        } else {
            op.status
        };
        restore_or_keep(va, original, layout);
        return Err(status);
    }
    slots[index] = Some(Slot {
        dom,
        gref,
        va,
        original,
        handle: op.handle,
        live: true,
    });
    Ok(Mapped { index })
}

/// Puts the page's own frame back at `va` and frees it; if that fails, keeps it for good.
fn restore_or_keep(va: u64, original: u64, layout: Layout) {
    // SAFETY: `va` is a heap page of this module's, mapped nowhere else in dom0 now.
    if unsafe { mm::update_va(va, original, UVMF_INVLPG | UVMF_LOCAL) } < 0 {
        tprintln!("dom0: grantmap: heap page {va:#x} could not be mapped again; kept");
        return;
    }
    // SAFETY: allocated by `map` with this layout, its own frame mapped again, unused.
    unsafe { dealloc(va as *mut u8, layout) };
}

/// Unmaps `s` (its grant, then the page's own frame back). `false` when the hypervisor
/// refused the unmap (the page is then kept, never reused).
fn unmap_slot(s: &Slot) -> bool {
    let mut op = GnttabUnmapGrantRef {
        host_addr: s.va,
        dev_bus_addr: 0,
        handle: s.handle,
        status: 0,
    };
    let ret = grant_op(GNTTABOP_UNMAP_GRANT_REF, &mut op);
    if ret < 0 || op.status != GNTST_OKAY {
        tprintln!(
            "dom0: grantmap: unmap of d{} ref {} at {:#x} refused ({ret}, status {}); page kept",
            s.dom,
            s.gref,
            s.va,
            op.status
        );
        return false;
    }
    if let Ok(layout) = Layout::from_size_align(PAGE, PAGE) {
        restore_or_keep(s.va, s.original, layout);
    }
    true
}

/// Runs `f` on the mapped page, or gives it `None` when the page was unmapped because its
/// domain is being destroyed. `f` must not wait (the table is locked meanwhile).
pub fn with<R>(m: &Mapped, f: impl FnOnce(Option<&Shared>) -> R) -> R {
    let slots = SLOTS.lock();
    match slots.get(m.index).and_then(Option::as_ref) {
        Some(s) if s.live => f(Some(&Shared { va: s.va })),
        _ => f(None),
    }
}

/// Ends a mapping (unmapped now, unless [`before_destroy`] did it already).
pub fn unmap(m: Mapped) {
    let mut slots = SLOTS.lock();
    if let Some(entry) = slots.get_mut(m.index)
        && let Some(s) = entry.take()
        && s.live
    {
        unmap_slot(&s);
    }
}

/// Unmaps every page of `dom`'s that dom0 maps: called before dom0 destroys `dom`.
pub fn before_destroy(dom: DomId) {
    let mut slots = SLOTS.lock();
    for s in slots.iter_mut().flatten() {
        if s.dom == dom && s.live {
            s.live = false;
            unmap_slot(s);
            tprintln!(
                "dom0: grantmap: d{dom} ref {} unmapped before the domain's destruction",
                s.gref
            );
        }
    }
}
