//! System time (DESIGN.md §5): the calendar arithmetic of `xenia_core::time` and, on bare
//! metal, the clock itself (`arch::x86_64::time`: TSC scale, RTC, `now_ns`).

#[cfg(target_os = "none")]
pub use crate::arch::x86_64::time::*;
pub use xenia_core::time::*;
