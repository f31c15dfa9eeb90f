//! Which Xen guest features (`XEN_ELFNOTE_FEATURES`) Xenia provides.
//!
//! A kernel lists the features it can use, `|`-separated, and marks those it
//! cannot run without with a leading `!` (Xen's convention,
//! `xen/include/public/elfnote.h`). A domain is built only if every required
//! feature is provided.
//!
//! Both builders apply this rule: the hypervisor to dom0's kernel, the toolstack
//! to every other domain's.

use alloc::vec::Vec;

/// Xen ELF-note features that Xenia provides. `pae_pgdir_above_4gb` means
/// nothing for 64-bit guests; `dom0` says the kernel can be the control
/// domain.
pub const SUPPORTED_FEATURES: [&str; 2] = ["pae_pgdir_above_4gb", "dom0"];

/// The features `features` (Xen's `|`-separated list) requires that Xenia
/// lacks, in the order given.
pub fn missing_required(features: &str) -> Vec<&str> {
    features
        .split('|')
        .filter_map(|f| f.trim().strip_prefix('!'))
        .filter(|f| !SUPPORTED_FEATURES.contains(f))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn required_features() {
        assert!(missing_required("").is_empty());
        assert!(missing_required("writable_page_tables|pae_pgdir_above_4gb").is_empty());
        assert!(missing_required("!pae_pgdir_above_4gb|!dom0").is_empty());
        assert_eq!(
            missing_required("!writable_page_tables|dom0| !auto_translated_physmap"),
            ["writable_page_tables", "auto_translated_physmap"]
        );
    }
}
