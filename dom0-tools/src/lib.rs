//! dom0's toolstack library (placeholder until the dom0 issues).
#![cfg_attr(target_os = "none", no_std)]
#![forbid(unsafe_code)]

/// The name dom0 carries in `xl list`, as on Xen.
pub const DOM0_NAME: &str = "Domain-0";
