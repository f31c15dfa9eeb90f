//! The hypervisor's virtual address layout (DESIGN.md §4). The constants and the range checks
//! are pure, so they live in `xenia_core::layout` (the memory-management code there needs
//! them); this module is their name inside `arch/`, where the code that maps them lives.

pub use xenia_core::layout::*;
