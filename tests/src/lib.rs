//! Xenia's scenario harness: boots real GRUB images of the hypervisor in QEMU, reads the serial
//! console, types on it, and checks what comes back, every wait bounded.
//!
//! The pieces, bottom up:
//!
//! - [`grub`]: renders `boot/grub.cfg.in`, quoting the hypervisor's and the modules' command
//!   lines so that they arrive unchanged.
//! - [`iso`]: stages an image and runs `grub-mkrescue`, with a content-based cache. `cargo
//!   xtask iso` builds the default image ([`ImageSpec::default_image`]) with the same code.
//! - [`machine`]: the [`Machine`] builder and the running [`Qemu`], with expect-style waits on
//!   the serial output and QEMU's exit status (the `EXIT_*` constants decode `isa-debug-exit`).
//! - [`serial`]: the normalized view of the serial stream (escape sequences and `\r` removed)
//!   and line matching.
//! - [`contract`]: the hypervisor's boot-log contract and parsers for its lines.
//! - [`runner`] and [`scenarios`]: the scenario registry and the parallel runner behind
//!   `cargo xtask test [FILTER]`.
//!
//! A scenario is a function from a [`Context`] to `Result<(), String>`:
//!
//! ```no_run
//! use xenia_tests::{contract, Context, DEFAULT_TIMEOUT, EXIT_POWEROFF};
//!
//! fn boot_mem_512(ctx: &Context) -> Result<(), String> {
//!     let mut vm = ctx.machine().memory_mib(512).boot()?;
//!     let line = vm.wait_for_line_starting(contract::MEMORY, DEFAULT_TIMEOUT)?;
//!     let mib = contract::parse_memory_line(&line)?;
//!     if mib < 500 {
//!         return Err(format!("only {mib} MiB usable"));
//!     }
//!     vm.expect_exit(EXIT_POWEROFF, DEFAULT_TIMEOUT)
//! }
//! ```
//!
//! Whatever a scenario checks, the runner fails it when the serial log of any machine it
//! booted has a line showing a hypervisor failure ([`contract::REJECTED`]: a panic, a fatal
//! exception, an inconsistent frame table), unless that machine declared the line as the
//! point of the test ([`Machine::tolerate`]). When a scenario fails, the runner prints its
//! message and the whole normalized serial log of every machine it booted.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod benchk;
pub mod blockbench;
pub mod contract;
pub mod grub;
pub mod iso;
pub mod linuxbench;
pub mod machine;
pub mod monitor;
pub mod netbench;
pub mod peer;
pub mod runner;
pub mod scenarios;
pub mod serial;
pub mod workspace;

pub use iso::{
    DEFAULT_HV_OPTIONS, DEFAULT_MODULES, DefaultModule, Image, ImageSpec, Module, build_image,
};
pub use machine::{
    DEBUG_EXIT_OPTION, DEFAULT_TIMEOUT, DiskImage, EXIT_ACPI_POWEROFF, EXIT_DOM0_CRASHED,
    EXIT_DOM0_REBOOT, EXIT_FRAME_TABLE_INCONSISTENT, EXIT_HYPERVISOR_FATAL, EXIT_POWEROFF, Machine,
    QEMU, Qemu, debug_exit_status, describe_exit, disk_args,
};
pub use runner::{Context, Outcome, Scenario, Summary, run_and_report};
pub use workspace::{
    CHECKED_HYPERVISOR_ARTIFACT, DOM0_ARTIFACT, HYPERVISOR_ARTIFACT, INITRD_ARTIFACT,
    TEST_INITRD_ARTIFACT, Workspace,
};
