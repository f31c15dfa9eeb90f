//! Version and feature queries (`xen_version(cmd, arg)`).
//!
//! All commands return 0 on success except [`XENVER_VERSION`].

/// Returns the interface version as `major << 16 | minor`; `arg` is null.
/// Xenia returns [`XENIA_VERSION`].
pub const XENVER_VERSION: u32 = 0;
/// Fills a [`XenExtraversion`] with the version suffix string.
pub const XENVER_EXTRAVERSION: u32 = 1;
/// Fills a `xen_compile_info` (compiler, user, domain, date strings).
pub const XENVER_COMPILE_INFO: u32 = 2;
/// Fills a [`XenCapabilitiesInfo`] with a space-separated list of guest types
/// the hypervisor runs; Xenia's is [`XENIA_CAPABILITIES`].
pub const XENVER_CAPABILITIES: u32 = 3;
/// Fills a 64-byte source-revision string.
pub const XENVER_CHANGESET: u32 = 4;
/// Fills a [`XenPlatformParameters`].
pub const XENVER_PLATFORM_PARAMETERS: u32 = 5;
/// Fills a [`XenFeatureInfo`] with one 32-bit word of `XENFEAT_*` bits.
pub const XENVER_GET_FEATURES: u32 = 6;
/// Returns the page size; `arg` is null.
pub const XENVER_PAGESIZE: u32 = 7;
/// Fills the 16-byte domain handle (UUID) the toolstack gave the domain.
pub const XENVER_GUEST_HANDLE: u32 = 8;
/// Fills a 1024-byte copy of the hypervisor command line (dom0).
pub const XENVER_COMMANDLINE: u32 = 9;
/// Returns the build id.
pub const XENVER_BUILD_ID: u32 = 10;
/// Variable-length form of [`XENVER_EXTRAVERSION`].
pub const XENVER_EXTRAVERSION2: u32 = 11;
/// Variable-length form of [`XENVER_CAPABILITIES`].
pub const XENVER_CAPABILITIES2: u32 = 12;
/// Variable-length form of [`XENVER_CHANGESET`].
pub const XENVER_CHANGESET2: u32 = 13;
/// Variable-length form of [`XENVER_COMMANDLINE`].
pub const XENVER_COMMANDLINE2: u32 = 14;

/// What `XENVER_VERSION` returns under Xenia: interface 0.1.
pub const XENIA_VERSION: u32 = 1;

/// What `XENVER_CAPABILITIES` reports under Xenia: 64-bit paravirtual guests,
/// named as Xen names them, each followed by a space (Xen's `xen_cap_info`).
pub const XENIA_CAPABILITIES: &str = "xen-3.0-x86_64 ";

/// Major part of a `XENVER_VERSION` result.
pub const fn version_major(v: u32) -> u16 {
    (v >> 16) as u16
}

/// Minor part of a `XENVER_VERSION` result.
pub const fn version_minor(v: u32) -> u16 {
    v as u16
}

/// Argument of `XENVER_EXTRAVERSION`: a NUL-terminated string.
pub type XenExtraversion = [u8; 16];

/// Argument of `XENVER_CAPABILITIES`: a NUL-terminated string.
pub type XenCapabilitiesInfo = [u8; 1024];

/// Argument of `XENVER_PLATFORM_PARAMETERS` (Xen's `struct
/// xen_platform_parameters`).
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
#[repr(C)]
pub struct XenPlatformParameters {
    /// OUT: start of the hypervisor's reserved virtual range
    /// ([`HYPERVISOR_VIRT_START`](crate::layout::HYPERVISOR_VIRT_START)).
    pub virt_start: u64,
}

/// Argument of `XENVER_GET_FEATURES` (Xen's `struct xen_feature_info`).
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
#[repr(C)]
pub struct XenFeatureInfo {
    /// IN: which 32-bit word of the feature bitmap; only 0 exists
    /// ([`XENFEAT_NR_SUBMAPS`]).
    pub submap_idx: u32,
    /// OUT: the word; bit *n* is feature *n* of word 0.
    pub submap: u32,
}

// Feature numbers (bit positions in submap 0; Xen's `features.h`).

/// Page tables may be written directly (not offered by Xenia).
pub const XENFEAT_WRITABLE_PAGE_TABLES: u32 = 0;
/// Descriptor tables may be written directly.
pub const XENFEAT_WRITABLE_DESCRIPTOR_TABLES: u32 = 1;
/// The hypervisor translates pseudo-physical addresses (not for Xenia's PV
/// guests).
pub const XENFEAT_AUTO_TRANSLATED_PHYSMAP: u32 = 2;
/// The guest kernel runs in ring 0.
pub const XENFEAT_SUPERVISOR_MODE_KERNEL: u32 = 3;
/// PAE page directories may live above 4 GiB.
pub const XENFEAT_PAE_PGDIR_ABOVE_4GB: u32 = 4;
/// `MMU_PT_UPDATE_PRESERVE_AD` is available.
pub const XENFEAT_MMU_PT_UPDATE_PRESERVE_AD: u32 = 5;
/// `MMUEXT_CLEAR_PAGE` and `MMUEXT_COPY_PAGE` are available.
pub const XENFEAT_HIGHMEM_ASSIST: u32 = 6;
/// Grant mapping honours guest-available PTE bits.
pub const XENFEAT_GNTTAB_MAP_AVAIL_BITS: u32 = 7;
/// HVM callback vector (not applicable).
pub const XENFEAT_HVM_CALLBACK_VECTOR: u32 = 8;
/// HVM-safe pvclock (not applicable).
pub const XENFEAT_HVM_SAFE_PVCLOCK: u32 = 9;
/// HVM PIRQs (not applicable).
pub const XENFEAT_HVM_PIRQS: u32 = 10;
/// The domain may act as dom0.
pub const XENFEAT_DOM0: u32 = 11;
/// Number of 32-bit feature words.
pub const XENFEAT_NR_SUBMAPS: u32 = 1;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_match_xen() {
        let ops = [
            XENVER_VERSION,
            XENVER_EXTRAVERSION,
            XENVER_COMPILE_INFO,
            XENVER_CAPABILITIES,
            XENVER_CHANGESET,
            XENVER_PLATFORM_PARAMETERS,
            XENVER_GET_FEATURES,
            XENVER_PAGESIZE,
            XENVER_GUEST_HANDLE,
            XENVER_COMMANDLINE,
            XENVER_BUILD_ID,
            XENVER_EXTRAVERSION2,
            XENVER_CAPABILITIES2,
            XENVER_CHANGESET2,
            XENVER_COMMANDLINE2,
        ];
        for (i, op) in ops.into_iter().enumerate() {
            assert_eq!(op as usize, i);
        }
        let feats = [
            XENFEAT_WRITABLE_PAGE_TABLES,
            XENFEAT_WRITABLE_DESCRIPTOR_TABLES,
            XENFEAT_AUTO_TRANSLATED_PHYSMAP,
            XENFEAT_SUPERVISOR_MODE_KERNEL,
            XENFEAT_PAE_PGDIR_ABOVE_4GB,
            XENFEAT_MMU_PT_UPDATE_PRESERVE_AD,
            XENFEAT_HIGHMEM_ASSIST,
            XENFEAT_GNTTAB_MAP_AVAIL_BITS,
            XENFEAT_HVM_CALLBACK_VECTOR,
            XENFEAT_HVM_SAFE_PVCLOCK,
            XENFEAT_HVM_PIRQS,
            XENFEAT_DOM0,
        ];
        for (i, f) in feats.into_iter().enumerate() {
            assert_eq!(f as usize, i);
        }
    }

    #[test]
    fn layouts_and_version_split() {
        assert_layout!(XenPlatformParameters, 8, 8, { virt_start: 0 });
        assert_layout!(XenFeatureInfo, 8, 4, { submap_idx: 0, submap: 4 });
        assert_eq!(core::mem::size_of::<XenExtraversion>(), 16);
        assert_eq!(core::mem::size_of::<XenCapabilitiesInfo>(), 1024);
        assert_eq!(version_major(0x0004_0011), 4);
        assert_eq!(version_minor(0x0004_0011), 17);
        assert_eq!(
            (version_major(XENIA_VERSION), version_minor(XENIA_VERSION)),
            (0, 1)
        );
    }
}
