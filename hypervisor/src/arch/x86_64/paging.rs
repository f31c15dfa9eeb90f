//! The hypervisor's own page tables (Intel SDM Vol. 3A §4.5, 4-level paging).
//!
//! At boot the hypervisor runs on the bootstrap tables of `boot/entry.s` (first 4 GiB
//! only, everything writable and executable). `build_and_switch` replaces them with:
//! the image mapped section by section (text read-only executable, rodata read-only,
//! data and bss writable, never both writable and executable), the direct map of
//! `mm::directmap`, and nothing else: no identity map, no lower half.

use alloc::vec::Vec;
use core::sync::atomic::{AtomicU64, Ordering};

use x86_64::structures::paging::{PageTable, PageTableFlags};

use self::flags as F;

use super::layout::{self, phys_to_virt};
use crate::mm::directmap::{self, Chunk};
use crate::mm::{Mfn, PAGE_SIZE, frames};

const SIZE_2M: u64 = 2 << 20;
const SIZE_1G: u64 = 1 << 30;

/// Entry flags of the hypervisor's own tables: guest-abi's bits (`guest_abi::pte`, the one
/// definition of page-table-entry bits, Intel SDM Vol. 3A §4.5), in the flag type the
/// `x86_64` crate's `PageTable` takes.
mod flags {
    use guest_abi::pte;
    use x86_64::structures::paging::PageTableFlags as F;

    pub const PRESENT: F = F::from_bits_retain(pte::PRESENT);
    pub const WRITABLE: F = F::from_bits_retain(pte::RW);
    pub const WRITE_THROUGH: F = F::from_bits_retain(pte::PWT);
    pub const NO_CACHE: F = F::from_bits_retain(pte::PCD);
    /// `PS` in an L3 or L2 entry: a 1 GiB or 2 MiB page.
    pub const HUGE_PAGE: F = F::from_bits_retain(pte::PS);
    pub const NO_EXECUTE: F = F::from_bits_retain(pte::NX);

    /// No flags.
    pub const fn empty() -> F {
        F::empty()
    }
}

#[derive(Debug)]
pub enum MapError {
    OutOfFrames,
    /// A huge page is in the way of a smaller mapping: a bug in the caller's plan.
    Conflict(u64),
}

static ROOT: AtomicU64 = AtomicU64::new(0);
static DIRECT_CHUNKS: spin::Once<Vec<Chunk>> = spin::Once::new();
static NX_SUPPORTED: core::sync::atomic::AtomicBool = core::sync::atomic::AtomicBool::new(false);
static MMIO_NEXT: AtomicU64 = AtomicU64::new(layout::MMIO_BASE);

fn table(mfn: Mfn) -> &'static mut PageTable {
    // SAFETY: page-table frames come from the frame allocator, are owned by the paging
    // code alone and are reachable through the direct map; callers never hold two
    // references to the same table at once (the walk goes strictly downwards).
    unsafe { &mut *(phys_to_virt(mfn.phys()) as *mut PageTable) }
}

fn new_table() -> Result<Mfn, MapError> {
    let mfn = frames::alloc().ok_or(MapError::OutOfFrames)?;
    table(mfn).zero();
    Ok(mfn)
}

fn nx() -> PageTableFlags {
    if NX_SUPPORTED.load(Ordering::Relaxed) {
        F::NO_EXECUTE
    } else {
        F::empty()
    }
}

/// The table one level below `entry`, creating it if needed.
fn next_level(parent: Mfn, index: usize, virt: u64) -> Result<Mfn, MapError> {
    let entry = &mut table(parent)[index];
    if entry.is_unused() {
        let child = new_table()?;
        entry.set_addr(
            x86_64::PhysAddr::new(child.phys()),
            F::PRESENT | F::WRITABLE,
        );
        return Ok(child);
    }
    if entry.flags().contains(F::HUGE_PAGE) {
        return Err(MapError::Conflict(virt));
    }
    Ok(Mfn::from_phys(entry.addr().as_u64()))
}

/// Maps `[virt, virt + len)` to `[phys, ...)` with `flags` (PRESENT is implied), using
/// the largest pages that alignment allows.
fn map(
    root: Mfn,
    mut virt: u64,
    mut phys: u64,
    mut len: u64,
    flags: PageTableFlags,
    use_1g: bool,
) -> Result<(), MapError> {
    let flags = flags | F::PRESENT;
    let idx = |v: u64, shift: u32| ((v >> shift) & 511) as usize;
    while len > 0 {
        let l3 = next_level(root, idx(virt, 39), virt)?;
        let aligned =
            |size: u64| virt.is_multiple_of(size) && phys.is_multiple_of(size) && len >= size;
        let step = if use_1g && aligned(SIZE_1G) {
            table(l3)[idx(virt, 30)].set_addr(x86_64::PhysAddr::new(phys), flags | F::HUGE_PAGE);
            SIZE_1G
        } else {
            let l2 = next_level(l3, idx(virt, 30), virt)?;
            if aligned(SIZE_2M) {
                table(l2)[idx(virt, 21)]
                    .set_addr(x86_64::PhysAddr::new(phys), flags | F::HUGE_PAGE);
                SIZE_2M
            } else {
                let l1 = next_level(l2, idx(virt, 21), virt)?;
                table(l1)[idx(virt, 12)].set_addr(x86_64::PhysAddr::new(phys), flags);
                PAGE_SIZE
            }
        };
        virt += step;
        phys += step;
        len = len.saturating_sub(step);
    }
    Ok(())
}

unsafe extern "C" {
    static __text_start: u8;
    static __text_end: u8;
    static __rodata_start: u8;
    static __rodata_end: u8;
    static __data_start: u8;
    static __data_end: u8;
}

/// Builds the hypervisor's page tables and switches to them. Page-table frames must be
/// reachable through the bootstrap direct map, so the caller has only given the frame
/// allocator memory below 4 GiB so far.
pub fn build_and_switch(
    ram: &[crate::mm::memmap::PhysRange],
    nx_supported: bool,
    use_1g: bool,
) -> Result<(), MapError> {
    NX_SUPPORTED.store(nx_supported, Ordering::Relaxed);
    let root = new_table()?;
    let sections = [
        (
            (&raw const __text_start) as u64,
            (&raw const __text_end) as u64,
            F::empty(),
        ),
        (
            (&raw const __rodata_start) as u64,
            (&raw const __rodata_end) as u64,
            nx(),
        ),
        (
            (&raw const __data_start) as u64,
            (&raw const __data_end) as u64,
            F::WRITABLE | nx(),
        ),
    ];
    for (start, end, flags) in sections {
        map(
            root,
            start,
            start - layout::IMAGE_BASE,
            end - start,
            flags,
            false,
        )?;
    }
    let chunks = directmap::plan(ram, layout::DIRECTMAP_LIMIT);
    for c in &chunks {
        let cache = if c.cached {
            F::empty()
        } else {
            F::NO_CACHE | F::WRITE_THROUGH
        };
        map(
            root,
            phys_to_virt(c.range.start),
            c.range.start,
            c.range.len(),
            F::WRITABLE | nx() | cache,
            use_1g,
        )?;
    }
    DIRECT_CHUNKS.call_once(|| chunks);
    table(root)[layout::ENTRY_AREA_SLOT as usize] =
        x86_64::structures::paging::page_table::PageTableEntry::new();
    // SAFETY: writing a raw entry: the value is the entry area's L3, built by
    // `entry::install_boot` from present, correctly flagged tables.
    unsafe {
        let slot = (phys_to_virt(root.phys()) as *mut u64).add(layout::ENTRY_AREA_SLOT as usize);
        core::ptr::write_volatile(slot, super::entry::hypervisor_slot_entry());
    }
    // SAFETY: the new tables map the image (so the next instruction, the stack and all
    // statics stay where they are) and the direct map (so the frame allocator and heap
    // keep working); nothing refers to the lower half any more.
    unsafe {
        x86_64::registers::control::Cr3::write(
            x86_64::structures::paging::PhysFrame::containing_address(x86_64::PhysAddr::new(
                root.phys(),
            )),
            x86_64::registers::control::Cr3Flags::empty(),
        );
    }
    ROOT.store(root.0, Ordering::SeqCst);
    // SAFETY: the constants page belongs to this pCPU and is writable in this root.
    unsafe { (*super::entry::consts()).hv_cr3 = root.phys() };
    Ok(())
}

/// A hypervisor root for an application processor: a copy of the boot CPU's root whose
/// entry-area slot is `entry_slot` (each pCPU's entry area has its own frames). Everything
/// below the top level is shared, so the copy must be taken once every top-level slot the
/// hypervisor uses is populated (the image, the direct map, the M2P, the MMIO slot: all
/// are by the time APs start; `map_mmio` only fills the MMIO slot's lower tables).
/// Returns the new root's physical address.
pub fn ap_root(entry_slot: u64) -> Result<u64, MapError> {
    let boot = Mfn(ROOT.load(Ordering::SeqCst));
    let root = frames::alloc().ok_or(MapError::OutOfFrames)?;
    let mut entries = crate::mm::physmem::read_table(boot);
    entries[layout::ENTRY_AREA_SLOT as usize] = entry_slot;
    crate::mm::physmem::write_table(root, &entries);
    Ok(root.phys())
}

/// The boot CPU's hypervisor root (physical address).
pub fn boot_root() -> u64 {
    Mfn(ROOT.load(Ordering::SeqCst)).phys()
}

/// Maps device registers uncached in the MMIO slot and returns their virtual address.
pub fn map_mmio(phys: u64, len: u64) -> Result<u64, MapError> {
    let root = Mfn(ROOT.load(Ordering::SeqCst));
    let offset = phys % PAGE_SIZE;
    let pages = (offset + len).div_ceil(PAGE_SIZE);
    // Never dom0's I/O memory from now on.
    crate::mm::iomem::deny(phys - offset, phys - offset + pages * PAGE_SIZE, "map_mmio");
    let virt = MMIO_NEXT.fetch_add(pages * PAGE_SIZE, Ordering::SeqCst);
    map(
        root,
        virt,
        phys - offset,
        pages * PAGE_SIZE,
        F::WRITABLE | F::NO_CACHE | F::WRITE_THROUGH | nx(),
        false,
    )?;
    Ok(virt + offset)
}

/// Whether the direct map covers `[phys, phys + len)` (before the real tables exist: the low
/// window the bootstrap tables map).
pub fn direct_map_covers(phys: u64, len: u64) -> bool {
    // The low window is always mapped, before and after the real tables.
    if phys
        .checked_add(len)
        .is_some_and(|end| end <= directmap::LOW_WINDOW)
    {
        return true;
    }
    match DIRECT_CHUNKS.get() {
        Some(chunks) => directmap::covers(chunks, phys, len),
        None => phys
            .checked_add(len)
            .is_some_and(|end| end <= directmap::LOW_WINDOW),
    }
}

/// Firmware-owned physical memory as a byte slice, if the direct map covers all of it.
/// Used for ACPI tables; the hypervisor never reads guest memory this way.
pub fn firmware_bytes(phys: u64, len: usize) -> Option<&'static [u8]> {
    let covered = match DIRECT_CHUNKS.get() {
        Some(chunks) => directmap::covers(chunks, phys, len as u64),
        None => phys.checked_add(len as u64)? <= directmap::LOW_WINDOW,
    };
    // SAFETY: the range is mapped by the direct map (checked above) and firmware tables
    // are not written while the hypervisor reads them.
    covered.then(|| unsafe { core::slice::from_raw_parts(phys_to_virt(phys) as *const u8, len) })
}
