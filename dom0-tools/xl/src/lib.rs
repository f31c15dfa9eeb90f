//! # xl: dom0's toolstack command
//!
//! The command line ([`cli`]) and the logic behind xl's verbs that does not
//! need a hypervisor, so it is unit-tested on the build host: which domain
//! an argument names ([`target`]), memory sizes as xl reads them
//! ([`memsize`]), what to do when a domain shuts down (`dom0_tools::lifecycle`) and
//! `xl top`'s table ([`top`]). Configuration parsing and the other output
//! formats are in `dom0-tools` ([`dom0_tools::xlcfg`],
//! [`dom0_tools::xlfmt`]).
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod cli;
pub mod memsize;
pub mod target;
pub mod top;
