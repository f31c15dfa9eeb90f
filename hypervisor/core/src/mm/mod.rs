//! Physical memory, the hardware-independent part (DESIGN.md §4): the frame number types,
//! the firmware memory map, the frame table and the software page-table walk. The frame
//! allocator, the heap, the M2P table and the direct map are the hypervisor's (`mm` there
//! re-exports this module's contents under the same names).

pub mod directmap;
pub mod efimap;
pub mod exchange;
pub mod frame_table;
pub mod memmap;
pub mod walk;

pub use guest_abi::types::Pfn;
pub use memmap::PAGE_SIZE;

/// A machine frame number: a physical address divided by the page size. Never mixed with a
/// guest's pseudo-physical frame numbers ([`Pfn`], guest-abi's) or with virtual addresses.
/// Transparent: the hypervisor's entry stub reads a vCPU's tables as the bare number.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[repr(transparent)]
pub struct Mfn(pub u64);

impl Mfn {
    pub const fn from_phys(addr: u64) -> Mfn {
        Mfn(addr / PAGE_SIZE)
    }

    pub const fn phys(self) -> u64 {
        self.0 * PAGE_SIZE
    }
}
