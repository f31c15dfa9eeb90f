//! Stopping the machine: clean power-off, failure, reboot (DESIGN.md §8). The reasons and
//! their exit codes are `xenia_core::power`; the ports and ACPI registers are
//! `arch::x86_64::power`.

#[cfg(target_os = "none")]
pub use crate::arch::x86_64::power::{exit, set_debug_exit, set_noreboot};
pub use xenia_core::power::*;
