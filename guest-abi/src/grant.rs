//! Grant tables, version 1 (`grant_table_op(cmd, args, count)`).
//!
//! A domain shares one of its frames with another domain by writing a
//! [`GrantEntryV1`] into its grant table and passing the entry's index (the
//! grant reference) to the other domain, which maps or copies the frame
//! through the hypervisor. The hypervisor checks every use against the entry.
//! `args` points to an array of `count` structures of the command's type.

use crate::types::DomId;

/// An index into a domain's grant table.
pub type GrantRef = u32;
/// A handle returned by `GNTTABOP_MAP_GRANT_REF`, needed to unmap.
pub type GrantHandle = u32;

/// Map a granted frame ([`GnttabMapGrantRef`]).
pub const GNTTABOP_MAP_GRANT_REF: u32 = 0;
/// Undo a mapping ([`GnttabUnmapGrantRef`]).
pub const GNTTABOP_UNMAP_GRANT_REF: u32 = 1;
/// Get the frames of a grant table ([`GnttabSetupTable`]).
pub const GNTTABOP_SETUP_TABLE: u32 = 2;
/// Dump a grant table to the hypervisor log (debugging).
pub const GNTTABOP_DUMP_TABLE: u32 = 3;
/// Transfer a frame to another domain.
pub const GNTTABOP_TRANSFER: u32 = 4;
/// Copy between granted frames.
pub const GNTTABOP_COPY: u32 = 5;
/// Query the size of a grant table.
pub const GNTTABOP_QUERY_SIZE: u32 = 6;
/// Unmap and replace a mapping.
pub const GNTTABOP_UNMAP_AND_REPLACE: u32 = 7;
/// Select the grant-table version (Xenia: version 1 only).
pub const GNTTABOP_SET_VERSION: u32 = 8;
/// Get the status frames (version 2).
pub const GNTTABOP_GET_STATUS_FRAMES: u32 = 9;
/// Get the grant-table version.
pub const GNTTABOP_GET_VERSION: u32 = 10;
/// Swap two grant entries.
pub const GNTTABOP_SWAP_GRANT_REF: u32 = 11;
/// Cache maintenance on granted frames.
pub const GNTTABOP_CACHE_FLUSH: u32 = 12;

/// Number of entries at the start of a table that tools may pre-populate.
pub const GNTTAB_NR_RESERVED_ENTRIES: u32 = 8;
/// Reserved entry for the console ring.
pub const GNTTAB_RESERVED_CONSOLE: GrantRef = 0;
/// Reserved entry for the xenstore ring (unused by Xenia).
pub const GNTTAB_RESERVED_XENSTORE: GrantRef = 1;

/// Entry type: grants nothing.
pub const GTF_INVALID: u16 = 0;
/// Entry type: `domid` may map or access `frame`.
pub const GTF_PERMIT_ACCESS: u16 = 1;
/// Entry type: `domid` may transfer a frame to this domain.
pub const GTF_ACCEPT_TRANSFER: u16 = 2;
/// Entry type: transitive grant.
pub const GTF_TRANSITIVE: u16 = 3;
/// Mask of the entry type.
pub const GTF_TYPE_MASK: u16 = 3;
/// Flag (written by the granter): read-only access only.
pub const GTF_READONLY: u16 = 1 << 2;
/// Flag (written by the hypervisor): currently mapped for reading.
pub const GTF_READING: u16 = 1 << 3;
/// Flag (written by the hypervisor): currently mapped for writing.
pub const GTF_WRITING: u16 = 1 << 4;
/// Cache attribute flag: PWT.
pub const GTF_PWT: u16 = 1 << 5;
/// Cache attribute flag: PCD.
pub const GTF_PCD: u16 = 1 << 6;
/// Cache attribute flag: PAT.
pub const GTF_PAT: u16 = 1 << 7;
/// Flag: only part of the page is granted (copy only).
pub const GTF_SUB_PAGE: u16 = 1 << 8;
/// Transfer flag (hypervisor): committed to transferring a frame.
pub const GTF_TRANSFER_COMMITTED: u16 = 1 << 2;
/// Transfer flag (hypervisor): the frame number has been written.
pub const GTF_TRANSFER_COMPLETED: u16 = 1 << 3;

/// One entry of a version-1 grant table (Xen's `struct grant_entry_v1`,
/// 8 bytes).
///
/// The granter writes `domid` and `frame`, then (after a write barrier)
/// `flags`; to revoke it clears `flags` with a compare-and-swap that fails if
/// `GTF_READING` or `GTF_WRITING` is set. The hypervisor sets and clears
/// those two bits as mappings come and go.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
#[repr(C)]
pub struct GrantEntryV1 {
    /// `GTF_*` type and flags.
    pub flags: u16,
    /// The domain being granted access.
    pub domid: DomId,
    /// The granted frame: the granter's machine frame for a paravirtual
    /// granter.
    pub frame: u32,
}

/// Flag of [`GnttabMapGrantRef::flags`]: map for device (DMA) access.
pub const GNTMAP_DEVICE_MAP: u32 = 1 << 0;
/// Flag: map for CPU access.
pub const GNTMAP_HOST_MAP: u32 = 1 << 1;
/// Flag: map read-only.
pub const GNTMAP_READONLY: u32 = 1 << 2;
/// Flag: the mapping is for a user-mode page table entry.
pub const GNTMAP_APPLICATION_MAP: u32 = 1 << 3;
/// Flag: `host_addr` is the machine address of a PTE, not a virtual address.
pub const GNTMAP_CONTAINS_PTE: u32 = 1 << 4;

/// Per-operation status: success.
pub const GNTST_OKAY: i16 = 0;
/// Per-operation status: unspecified error.
pub const GNTST_GENERAL_ERROR: i16 = -1;
/// Per-operation status: unknown or unusable domain.
pub const GNTST_BAD_DOMAIN: i16 = -2;
/// Per-operation status: unknown or unusable grant reference.
pub const GNTST_BAD_GNTREF: i16 = -3;
/// Per-operation status: unknown or unusable mapping handle.
pub const GNTST_BAD_HANDLE: i16 = -4;
/// Per-operation status: unusable virtual address.
pub const GNTST_BAD_VIRT_ADDR: i16 = -5;
/// Per-operation status: unusable device address.
pub const GNTST_BAD_DEV_ADDR: i16 = -6;
/// Per-operation status: no room for device mappings.
pub const GNTST_NO_DEVICE_SPACE: i16 = -7;
/// Per-operation status: the grant does not allow this.
pub const GNTST_PERMISSION_DENIED: i16 = -8;
/// Per-operation status: unusable page.
pub const GNTST_BAD_PAGE: i16 = -9;
/// Per-operation status: bad copy arguments.
pub const GNTST_BAD_COPY_ARG: i16 = -10;
/// Per-operation status: address too large for the page.
pub const GNTST_ADDRESS_TOO_BIG: i16 = -11;
/// Per-operation status: try again.
pub const GNTST_EAGAIN: i16 = -12;
/// Per-operation status: out of space.
pub const GNTST_NO_SPACE: i16 = -13;

/// `GNTTABOP_SET_VERSION` (Xen's `struct gnttab_set_version`): IN the version wanted, OUT
/// the version in force (always 1 on Xenia).
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
#[repr(C)]
#[derive(zerocopy::FromBytes, zerocopy::IntoBytes, zerocopy::Immutable, zerocopy::KnownLayout)]
pub struct GnttabSetVersion {
    /// IN/OUT: the version.
    pub version: u32,
}

/// `GNTTABOP_GET_VERSION` (Xen's `struct gnttab_get_version`, 8 bytes).
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
#[repr(C)]
#[derive(zerocopy::FromBytes, zerocopy::IntoBytes, zerocopy::Immutable, zerocopy::KnownLayout)]
pub struct GnttabGetVersion {
    /// IN: the domain (`DOMID_SELF` or the caller's own id).
    pub dom: DomId,
    /// Padding.
    pub pad: u16,
    /// OUT: its grant-table version.
    pub version: u32,
}

/// `GNTTABOP_MAP_GRANT_REF` (Xen's `struct gnttab_map_grant_ref`, 32 bytes).
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
#[repr(C)]
#[derive(zerocopy::FromBytes, zerocopy::IntoBytes, zerocopy::Immutable, zerocopy::KnownLayout)]
pub struct GnttabMapGrantRef {
    /// IN: virtual address to map at, or PTE machine address with
    /// `GNTMAP_CONTAINS_PTE`.
    pub host_addr: u64,
    /// IN: `GNTMAP_*`.
    pub flags: u32,
    /// IN: grant reference in `dom`'s table.
    pub gref: GrantRef,
    /// IN: the granting domain.
    pub dom: DomId,
    /// OUT: `GNTST_*`.
    pub status: i16,
    /// OUT: handle for unmapping.
    pub handle: GrantHandle,
    /// OUT: bus address for device mappings.
    pub dev_bus_addr: u64,
}

/// `GNTTABOP_UNMAP_GRANT_REF` (Xen's `struct gnttab_unmap_grant_ref`,
/// 24 bytes).
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
#[repr(C)]
#[derive(zerocopy::FromBytes, zerocopy::Immutable, zerocopy::KnownLayout)]
pub struct GnttabUnmapGrantRef {
    /// IN: as mapped, or 0 to ignore.
    pub host_addr: u64,
    /// IN: as mapped, or 0 to ignore.
    pub dev_bus_addr: u64,
    /// IN: the handle from the map operation.
    pub handle: GrantHandle,
    /// OUT: `GNTST_*`.
    pub status: i16,
}

/// `GNTTABOP_SETUP_TABLE` (Xen's `struct gnttab_setup_table`, 24 bytes).
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
#[repr(C)]
#[derive(zerocopy::FromBytes, zerocopy::Immutable, zerocopy::KnownLayout)]
pub struct GnttabSetupTable {
    /// IN: the domain (`DOMID_SELF` unless privileged).
    pub dom: DomId,
    /// IN: number of frames wanted.
    pub nr_frames: u32,
    /// OUT: `GNTST_*`.
    pub status: i16,
    /// IN: virtual address of an array of `nr_frames` `u64`, which receives
    /// the machine frames of the table.
    pub frame_list: u64,
}

/// Flag of [`GnttabCopy::flags`]: `source.u` is a grant reference in
/// `source.domid`'s table, not a frame of the caller.
pub const GNTCOPY_SOURCE_GREF: u16 = 1 << 0;
/// Flag of [`GnttabCopy::flags`]: `dest.u` is a grant reference in
/// `dest.domid`'s table, not a frame of the caller.
pub const GNTCOPY_DEST_GREF: u16 = 1 << 1;

/// One end of a [`GnttabCopy`] (Xen's `struct gnttab_copy_ptr`, 16 bytes).
///
/// Xen's `u` is a union of a `grant_ref_t` and an `xen_pfn_t`; here it is the
/// 64-bit field the union occupies. With the end's `GNTCOPY_*_GREF` flag set
/// the reference is its low 32 bits ([`GnttabCopyPtr::gref`]: a C guest that
/// writes only `u.ref` leaves the upper half as it was, so it must be
/// ignored); otherwise all 64 bits are a frame of the caller
/// ([`GnttabCopyPtr::gmfn`]: a machine frame for a paravirtual caller).
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
#[repr(C)]
#[derive(zerocopy::FromBytes, zerocopy::Immutable, zerocopy::KnownLayout)]
pub struct GnttabCopyPtr {
    /// IN: grant reference (low 32 bits) or frame number, by the flags.
    pub u: u64,
    /// IN: the domain whose grant `u` names; must be `DOMID_SELF` when `u` is
    /// a frame (only the caller's own frames can be named directly).
    pub domid: DomId,
    /// IN: byte offset in the frame.
    pub offset: u16,
}

impl GnttabCopyPtr {
    /// An end naming grant `gref` of domain `domid`.
    pub const fn from_gref(gref: GrantRef, domid: DomId, offset: u16) -> Self {
        Self {
            u: gref as u64,
            domid,
            offset,
        }
    }

    /// An end naming frame `gmfn` of the caller (`domid` is `DOMID_SELF`).
    pub const fn from_gmfn(gmfn: u64, offset: u16) -> Self {
        Self {
            u: gmfn,
            domid: crate::types::DOMID_SELF,
            offset,
        }
    }

    /// `u` read as a grant reference (Xen's `u.ref`).
    pub const fn gref(&self) -> GrantRef {
        self.u as GrantRef
    }

    /// `u` read as a frame number (Xen's `u.gmfn`).
    pub const fn gmfn(&self) -> u64 {
        self.u
    }
}

/// `GNTTABOP_COPY` (Xen's `struct gnttab_copy`, 40 bytes): the hypervisor
/// copies `len` bytes from `source` to `dest`. Neither range may cross the
/// end of its frame (`offset + len <= 4096`, else `GNTST_BAD_COPY_ARG`); a
/// granted destination must be granted writable.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
#[repr(C)]
#[derive(zerocopy::FromBytes, zerocopy::Immutable, zerocopy::KnownLayout)]
pub struct GnttabCopy {
    /// IN: where the bytes come from.
    pub source: GnttabCopyPtr,
    /// IN: where they go.
    pub dest: GnttabCopyPtr,
    /// IN: number of bytes.
    pub len: u16,
    /// IN: `GNTCOPY_*`.
    pub flags: u16,
    /// OUT: `GNTST_*`.
    pub status: i16,
}

/// `GNTTABOP_QUERY_SIZE` (Xen's `struct gnttab_query_size`, 16 bytes).
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
#[repr(C)]
#[derive(zerocopy::FromBytes, zerocopy::Immutable, zerocopy::KnownLayout)]
pub struct GnttabQuerySize {
    /// IN: the domain (`DOMID_SELF` unless privileged).
    pub dom: DomId,
    /// OUT: frames the table has now.
    pub nr_frames: u32,
    /// OUT: frames it may grow to with `GNTTABOP_SETUP_TABLE`.
    pub max_nr_frames: u32,
    /// OUT: `GNTST_*`.
    pub status: i16,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_match_xen() {
        let ops = [
            GNTTABOP_MAP_GRANT_REF,
            GNTTABOP_UNMAP_GRANT_REF,
            GNTTABOP_SETUP_TABLE,
            GNTTABOP_DUMP_TABLE,
            GNTTABOP_TRANSFER,
            GNTTABOP_COPY,
            GNTTABOP_QUERY_SIZE,
            GNTTABOP_UNMAP_AND_REPLACE,
            GNTTABOP_SET_VERSION,
            GNTTABOP_GET_STATUS_FRAMES,
            GNTTABOP_GET_VERSION,
            GNTTABOP_SWAP_GRANT_REF,
            GNTTABOP_CACHE_FLUSH,
        ];
        for (i, op) in ops.into_iter().enumerate() {
            assert_eq!(op as usize, i);
        }
        assert_eq!(
            [
                GTF_READONLY,
                GTF_READING,
                GTF_WRITING,
                GTF_PWT,
                GTF_PCD,
                GTF_PAT,
                GTF_SUB_PAGE
            ],
            [4, 8, 16, 32, 64, 128, 256]
        );
        assert_eq!(
            [
                GNTMAP_DEVICE_MAP,
                GNTMAP_HOST_MAP,
                GNTMAP_READONLY,
                GNTMAP_APPLICATION_MAP,
                GNTMAP_CONTAINS_PTE
            ],
            [1, 2, 4, 8, 16]
        );
        assert_eq!(
            [
                GNTST_OKAY,
                GNTST_GENERAL_ERROR,
                GNTST_BAD_DOMAIN,
                GNTST_BAD_GNTREF,
                GNTST_BAD_HANDLE,
                GNTST_BAD_VIRT_ADDR,
                GNTST_BAD_DEV_ADDR,
                GNTST_NO_DEVICE_SPACE,
                GNTST_PERMISSION_DENIED,
                GNTST_BAD_PAGE,
                GNTST_BAD_COPY_ARG,
                GNTST_ADDRESS_TOO_BIG,
                GNTST_EAGAIN,
                GNTST_NO_SPACE,
            ],
            [0, -1, -2, -3, -4, -5, -6, -7, -8, -9, -10, -11, -12, -13]
        );
        assert_eq!(
            [
                GTF_INVALID,
                GTF_PERMIT_ACCESS,
                GTF_ACCEPT_TRANSFER,
                GTF_TRANSITIVE,
                GTF_TYPE_MASK
            ],
            [0, 1, 2, 3, 3]
        );
        assert_eq!((GTF_TRANSFER_COMMITTED, GTF_TRANSFER_COMPLETED), (4, 8));
        assert_eq!((GNTCOPY_SOURCE_GREF, GNTCOPY_DEST_GREF), (1, 2));
    }

    #[test]
    fn layouts() {
        assert_layout!(GrantEntryV1, 8, 4, { flags: 0, domid: 2, frame: 4 });
        assert_layout!(GnttabMapGrantRef, 32, 8, {
            host_addr: 0,
            flags: 8,
            gref: 12,
            dom: 16,
            status: 18,
            handle: 20,
            dev_bus_addr: 24,
        });
        assert_layout!(GnttabUnmapGrantRef, 24, 8, { host_addr: 0, dev_bus_addr: 8, handle: 16, status: 20 });
        assert_layout!(GnttabSetupTable, 24, 8, { dom: 0, nr_frames: 4, status: 8, frame_list: 16 });
        assert_layout!(GnttabCopyPtr, 16, 8, { u: 0, domid: 8, offset: 10 });
        assert_layout!(GnttabCopy, 40, 8, {
            source: 0,
            dest: 16,
            len: 32,
            flags: 34,
            status: 36,
        });
        assert_layout!(GnttabQuerySize, 16, 4, {
            dom: 0,
            nr_frames: 4,
            max_nr_frames: 8,
            status: 12,
        });
    }

    #[test]
    fn copy_ptr_union() {
        // A C guest that writes only `u.ref` leaves the upper half of the union alone.
        let p = GnttabCopyPtr {
            u: 0xDEAD_BEEF_0000_0007,
            domid: 3,
            offset: 0,
        };
        assert_eq!(p.gref(), 7);
        assert_eq!(p.gmfn(), 0xDEAD_BEEF_0000_0007);
        assert_eq!(GnttabCopyPtr::from_gref(9, 4, 12).gref(), 9);
        let f = GnttabCopyPtr::from_gmfn(0x1_2345_6789, 100);
        assert_eq!(
            (f.gmfn(), f.domid, f.offset),
            (0x1_2345_6789, crate::types::DOMID_SELF, 100)
        );
    }
}
