//! # xl: dom0's toolstack command
//!
//! The command line ([`cli`]), the hypervisor calls behind it
//! ([`dom0_tools::xen`], generic over how a hypercall is made, so it is
//! tested with a fake, and shared with dom0's kernel) and
//! what each verb does ([`verbs`], over a `System` trait, likewise
//! tested): which domain an argument names ([`target`]), memory sizes as
//! xl reads them ([`memsize`]), `xl console`'s keys ([`console`]) and
//! xentop ([`top`]), which `xl top` runs. Configuration parsing and the other output
//! formats are in `dom0-tools` ([`dom0_tools::xlcfg`],
//! [`dom0_tools::xlfmt`]). The crate also builds `xen-hptool`, Xen's CPU and memory
//! hot-plug tool ([`hptool`]), and `xentop`. The only `unsafe` code is the system-call
//! layer, [`sys`].
#![deny(unsafe_code)]
#![deny(missing_docs)]

pub mod cli;
pub mod console;
pub mod hptool;
pub mod memsize;
pub mod real;
#[allow(unsafe_code)]
pub mod sys;
pub mod target;
pub mod top;
pub mod verbs;
