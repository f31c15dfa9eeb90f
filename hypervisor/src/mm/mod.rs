//! Physical memory (DESIGN.md §4): the frame allocator, the heap, the M2P table, the frame
//! table's lock and memory, and the direct map. The hardware-independent rules — the frame
//! number types, the memory map, the frame table, the page-table walk — are
//! `xenia_core::mm`, re-exported here under their old paths.

pub mod frames;
#[cfg(target_os = "none")]
pub mod ft;
#[cfg(target_os = "none")]
pub mod iomem;
#[cfg(target_os = "none")]
pub mod m2p;
#[cfg(target_os = "none")]
pub mod physmem;
#[cfg(target_os = "none")]
pub use physmem::heap;

pub use xenia_core::mm::{Mfn, PAGE_SIZE, Pfn, directmap, efimap, frame_table, memmap, walk};
