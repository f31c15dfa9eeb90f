//! Which machine frames dom0 may map as I/O memory (DESIGN.md §11): `mmu_update` with
//! `foreigndom = DOMID_IO`, or an L1 entry of dom0's at a frame the frame table does not
//! describe (`FrameTable::is_io_frame`). Xen's `iomem_caps` of the hardware domain.
//!
//! A frame qualifies when it is outside the frame table (above the highest RAM frame it
//! describes), below the physical address width, and in none of the ranges denied here:
//! RAM the table does not cover (above the direct map's limit), the local APIC and MSI
//! window (0xFEE0_0000–0xFEEF_FFFF), the I/O APIC and HPET window
//! (0xFEC0_0000–0xFED0_0FFF), and everything the hypervisor maps for itself
//! (`paging::map_mmio` records each range here). Only the hardware domain (dom0) gets a yes.

use guest_abi::types::DomId;

use super::Mfn;

/// The hardware domain: the only one that may map I/O memory.
pub const HARDWARE_DOMAIN: DomId = 0;

/// Fixed ranges that are the hypervisor's on every PC: `(start, end)` byte addresses.
const FIXED_DENIED: [(u64, u64); 2] = [
    // I/O APICs (0xFEC0_0000 upwards) and the HPET (0xFED0_0000, one page).
    (0xFEC0_0000, 0xFED0_1000),
    // The local APIC and the MSI address window (Intel SDM Vol. 3A §11.4.1, §11.11.1).
    (0xFEE0_0000, 0xFEF0_0000),
];

/// At most this many ranges are recorded; more is a boot-time bug.
const MAX_DENIED: usize = 32;

struct Denied {
    ranges: [(u64, u64); MAX_DENIED],
    len: usize,
}

static DENIED: spin::Mutex<Denied> = spin::Mutex::new(Denied {
    ranges: [(0, 0); MAX_DENIED],
    len: 0,
});

/// Records `[start, end)` (bytes) as the hypervisor's or RAM: never dom0's I/O memory.
/// Called at boot (RAM above the frame table, `map_mmio`). A full list denies everything
/// (logged): better no device than one the hypervisor uses.
pub fn deny(start: u64, end: u64, what: &str) {
    let mut d = DENIED.lock();
    if d.len == MAX_DENIED {
        log::error!(target: "iomem", "too many reserved I/O ranges; {what} makes all I/O memory refused");
        d.ranges[MAX_DENIED - 1] = (0, u64::MAX);
        return;
    }
    let n = d.len;
    d.ranges[n] = (start, end);
    d.len += 1;
}

/// Whether domain `dom` may map frame `mfn`, which the frame table does not describe, as
/// I/O memory (`PageMemory::io_frame_allowed`).
pub fn allowed(mfn: Mfn, dom: DomId) -> bool {
    if dom != HARDWARE_DOMAIN {
        return false;
    }
    let Some(start) = mfn.0.checked_mul(crate::mm::PAGE_SIZE) else {
        return false;
    };
    let end = start + crate::mm::PAGE_SIZE;
    let overlaps = |&(s, e): &(u64, u64)| start < e && s < end;
    if FIXED_DENIED.iter().any(overlaps) {
        return false;
    }
    let d = DENIED.lock();
    !d.ranges[..d.len].iter().any(overlaps)
}
