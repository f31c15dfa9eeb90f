//! # dom0-tools: the toolstack library
//!
//! What dom0 uses to manage other domains, as a library: `xl` (`dom0-tools/xl`, a static
//! Linux program that dom0's kernel runs from its initrd) is built on it, and so are the
//! dom0 kernel's console backends and the test dom0 kernel (DESIGN.md §7). dom0's own
//! operating-system pieces (initrd, files, programs, the shell) are not here: they are the
//! library of the kernel crate, `dom0-tools/kernel`.
//!
//! * [`xlcfg`] parses an xl domain configuration (Xen's xl.cfg(5) syntax) and checks it;
//! * [`builder`] builds a paravirtual domU from a kernel image and a
//!   [`builder::DomainConfig`]: the same ELF checks and start-of-day layout as the
//!   hypervisor's dom0 builder (both come from `xenia-pvboot`), plus the console ring and
//!   device page a domU gets ([`guest_abi::device_page`]);
//! * [`hypervisor::Hypervisor`] is everything the builder asks of the hypervisor, as a
//!   trait; [`xen::Xen`] implements it over a raw hypercall interface (`privcmd` for `xl`,
//!   direct hypercalls in a kernel), and the host tests implement it with a fake that keeps
//!   frames in memory;
//! * [`control`] encodes the `domctl`/`sysctl` requests behind that trait and decodes their
//!   replies; [`xlfmt`] formats them as `xl` prints them (`xl list`'s state column, for
//!   instance), and [`json`] a domain's configuration as `xl list -l` prints it;
//! * [`disk`] and [`vif`] read Xen's disk and vif specifications and make the xenstore
//!   nodes libxl makes for a domain's disks and network interfaces;
//! * [`lifecycle`] decides what a domain's shutdown leads to (`on_poweroff`, `on_reboot`,
//!   `on_crash`); [`devices`] is the interface of dom0's devices (`/dev/xen/privcmd` and
//!   the others), shared by the kernel that serves them and the tools that use them.
//!
//! **What it trusts.** The hypervisor's answers (it is the one party dom0
//! must trust) and nothing else: kernel images and configurations are
//! checked before anything is created, and every size is checked arithmetic.
//!
//! **What it never does.** Touch memory or hardware itself (everything goes
//! through the trait), use `unsafe`, or leave a half-built domain behind:
//! a build that fails after the domain exists destroys it.
#![cfg_attr(target_os = "none", no_std)]
// No unsafe code; only the tests' fake hypervisor (`xen::tests`) writes through the
// pointers a hypercall carries, as the real one does.
#![cfg_attr(not(test), forbid(unsafe_code))]
#![cfg_attr(test, deny(unsafe_code))]
#![deny(missing_docs)]

extern crate alloc;

pub mod builder;
pub mod control;
pub mod devices;
pub mod disk;
pub mod hypervisor;
pub mod json;
pub mod lifecycle;
pub mod vif;
pub mod xen;
pub mod xlcfg;
pub mod xlfmt;

#[cfg(test)]
mod fake;

/// The name dom0 carries in `xl list`, as on Xen.
pub const DOM0_NAME: &str = "Domain-0";
