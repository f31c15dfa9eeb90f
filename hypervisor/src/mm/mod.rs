//! Physical memory: the memory map, the frame allocator, the heap and the direct map
//! (DESIGN.md §4).

pub mod directmap;
pub mod frame_table;
pub mod frames;
#[cfg(target_os = "none")]
pub mod ft;
#[cfg(target_os = "none")]
pub mod heap;
#[cfg(target_os = "none")]
pub mod m2p;
pub mod memmap;
#[cfg(target_os = "none")]
pub mod physmem;
pub mod walk;

pub use memmap::PAGE_SIZE;

/// A machine frame number: a physical address divided by the page size. Never mixed
/// with guest pseudo-physical frame numbers (`Pfn`, later) or virtual addresses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Mfn(pub u64);

impl Mfn {
    pub const fn from_phys(addr: u64) -> Mfn {
        Mfn(addr / PAGE_SIZE)
    }

    pub const fn phys(self) -> u64 {
        self.0 * PAGE_SIZE
    }
}
