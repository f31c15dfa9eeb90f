//! The fuzz targets, one module each, and their registry [`TARGETS`].

pub mod abi;
pub mod bzimage;
pub mod cpio;
pub mod efimap;
pub mod event;
pub mod frame_table;
pub mod grant;
pub mod memmap;
pub mod pvboot;
pub mod xlcfg;

use crate::engine::Target;

/// Every target, in the order `cargo xtask fuzz` runs them.
pub const TARGETS: &[Target] = &[
    frame_table::TARGET,
    grant::TARGET,
    event::TARGET,
    memmap::TARGET,
    efimap::TARGET,
    pvboot::TARGET,
    cpio::TARGET,
    xlcfg::TARGET,
    abi::TARGET,
    bzimage::TARGET,
];

/// The target called `name`.
pub fn find(name: &str) -> Option<&'static Target> {
    TARGETS.iter().find(|t| t.name == name)
}

/// No seeds: the target's decoder makes every byte string a meaningful input.
pub fn no_seeds() -> Vec<Vec<u8>> {
    Vec::new()
}
