//! # Xenia, the hypervisor
//!
//! A ring-0, `no_std` hypervisor for x86-64 PCs that GRUB boots with multiboot2. It owns
//! the CPUs, physical memory, the interrupt controllers and COM1; guests (dom0 and the
//! domains it builds) run in ring 1 and ring 3 and reach it only through hypercalls, traps
//! and events.
//!
//! Principles: the hypervisor trusts its own image and the boot information only after
//! checking it; it never dereferences a guest address (a guest pointer is a `GuestPtr`, an
//! allegation copied in or out after a software walk of the guest's tables); a fault caused
//! by a guest is the guest's, never a hypervisor panic. Every hypercall and trap handler has
//! one shape, `fn(&mut guest::context::Hc) -> HcResult`, and dom0's powers are a token only
//! its context can make. `unsafe` code lives only under `arch/` (and the entry stubs there)
//! and in `mm::physmem`, the one module that turns machine frames into memory. Hardware is wrapped in small safe types under
//! `arch/`; the logic that does not need hardware (frame table, grants, event channels,
//! scheduler, memory map, options, ACPI parsing, the dmesg ring) is the `xenia-core` crate,
//! which has no `unsafe` code and is host-tested. This crate is `arch/`, the entry code and
//! the glue that gives the core's rules real memory; it re-exports the core's modules under
//! the paths its code has always used (`crate::grant`, `crate::mm::frame_table`, ...).
//!
//! This crate builds for the host too (`cargo test`), where only its hardware-independent
//! remainder is compiled.
#![cfg_attr(target_os = "none", no_std, no_main)]
#![forbid(unsafe_op_in_unsafe_fn)]
#![deny(clippy::undocumented_unsafe_blocks)]
// On the host only the hardware-independent logic is built, for its unit tests; the code
// that uses it is bare-metal only, so most of it looks unused there.
#![cfg_attr(not(target_os = "none"), allow(dead_code))]

extern crate alloc;

pub mod arch;
pub mod domain;
pub mod mm;
pub mod power;
pub mod time;

pub use xenia_core::{
    acpi, conswitch, cpuid, cpuinfo, debugreg, desc, dmesg, event, grant, hcnames, options, pirq,
    privop, ptwr, runstate, sched,
};

#[cfg(target_os = "none")]
mod boot_info;
#[cfg(target_os = "none")]
mod console;
#[cfg(target_os = "none")]
mod guest;
mod lockorder;
#[cfg(target_os = "none")]
mod start;

/// Version printed in the first boot-log line, and everywhere else: `xen_version` answers
/// its major and minor (`XENVER_version`, which must be `guest_abi::version::XENIA_VERSION`)
/// and the rest (`XENVER_extraversion`, [`VERSION_EXTRA`]), so that `xl info`'s
/// `xen_version` line reads the same as the banner.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
/// `VERSION` past `major.minor`: Xen's `xen_extra` (".3-pre" of "4.17.3-pre").
pub const VERSION_EXTRA: &str = {
    let v = VERSION.as_bytes();
    let (mut i, mut dots) = (0, 0);
    while i < v.len() {
        if v[i] == b'.' {
            dots += 1;
            if dots == 2 {
                break;
            }
        }
        i += 1;
    }
    match VERSION.split_at_checked(i) {
        Some((_, rest)) => rest,
        None => "",
    }
};

/// A decimal number of the version, at compile time.
const fn version_number(text: &str) -> u32 {
    let (b, mut i, mut n) = (text.as_bytes(), 0, 0u32);
    while i < b.len() {
        n = n * 10 + (b[i] - b'0') as u32;
        i += 1;
    }
    n
}
const _: () = assert!(
    guest_abi::version::XENIA_VERSION
        == version_number(env!("CARGO_PKG_VERSION_MAJOR")) << 16
            | version_number(env!("CARGO_PKG_VERSION_MINOR")),
    "XENVER_version and the package version disagree"
);

#[cfg(not(target_os = "none"))]
fn main() {
    eprintln!(
        "the Xenia hypervisor runs on bare metal: build it with `cargo xtask build` and boot it with `cargo xtask run`"
    );
    std::process::exit(1);
}

#[cfg(test)]
mod version_tests {
    use super::{VERSION, VERSION_EXTRA};

    /// `xl info` puts the version together from its parts: it must read as the banner does.
    #[test]
    fn parts_make_the_banner_version() {
        let v = guest_abi::version::XENIA_VERSION;
        assert_eq!(
            format!("{}.{}{}", v >> 16, v & 0xffff, VERSION_EXTRA),
            VERSION
        );
    }
}
