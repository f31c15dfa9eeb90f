//! Memory: page-table updates (`mmu_update`, `update_va_mapping`,
//! `mmuext_op`), reservations (`memory_op`) and optional behaviours
//! (`vm_assist`).
//!
//! # Direct paging
//!
//! A Xenia guest's page tables are real page tables: their entries hold
//! machine frame numbers, and CR3 points at the guest's top-level table. The
//! hypervisor tracks every frame's type (L1 to L4 page table, or writable);
//! a frame is used as a page table only after it has been validated, which
//! happens when it is pinned (`MMUEXT_PIN_L*_TABLE`) or installed, and from
//! then on it is mapped read-only to the guest. All changes go through the
//! hypercalls below, which check each new entry: it must map a frame the
//! guest owns (or is allowed through a grant or a foreign-domain argument),
//! must not map a page-table frame writable, and must not touch the
//! hypervisor's PML4 slots ([`layout`](crate::layout)).
//!
//! Page-table entries follow the hardware format (Intel SDM Vol. 3A §4.5)
//! with a machine frame number in bits 12 to 51.
//!
//! # The p2m and M2P
//!
//! The guest's pseudo-physical frames 0 to `nr_pages - 1` are backed by the
//! machine frames listed in its p2m list (`start_info.mfn_list`), which the
//! guest keeps and updates. The read-only M2P table at
//! [`MACH2PHYS_VIRT_START`](crate::layout::MACH2PHYS_VIRT_START) answers
//! the reverse question for any machine frame; a guest changes its own entries
//! with `MMU_MACHPHYS_UPDATE`.

use crate::types::DomId;

// `mmu_update(reqs, count, done, foreigndom)`: the low two bits of each
// request's `ptr` select the command.

/// [`MmuUpdate`] command: checked write of `val` to the page-table entry at
/// machine address `ptr`.
pub const MMU_NORMAL_PT_UPDATE: u64 = 0;
/// [`MmuUpdate`] command: set the M2P entry of the frame containing machine
/// address `ptr` to PFN `val`.
pub const MMU_MACHPHYS_UPDATE: u64 = 1;
/// [`MmuUpdate`] command: as [`MMU_NORMAL_PT_UPDATE`], but keep the
/// accessed and dirty bits the entry already has.
pub const MMU_PT_UPDATE_PRESERVE_AD: u64 = 2;
/// Mask of the command bits in [`MmuUpdate::ptr`].
pub const MMU_UPDATE_CMD_MASK: u64 = 3;

/// One request of `mmu_update` (Xen's `struct mmu_update`, 16 bytes).
/// Written by the guest in an array; `done` (if not null) receives the number
/// of requests completed, including when one fails.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
#[repr(C)]
#[derive(zerocopy::FromBytes, zerocopy::IntoBytes, zerocopy::Immutable, zerocopy::KnownLayout)]
pub struct MmuUpdate {
    /// Machine address of the target, with the command in bits 0 and 1.
    pub ptr: u64,
    /// New entry value (or PFN for `MMU_MACHPHYS_UPDATE`).
    pub val: u64,
}

impl MmuUpdate {
    /// A request: `cmd` is one of the `MMU_*` commands, `ma` an 8-byte
    /// aligned machine address.
    pub const fn new(cmd: u64, ma: u64, val: u64) -> Self {
        Self {
            ptr: (ma & !MMU_UPDATE_CMD_MASK) | (cmd & MMU_UPDATE_CMD_MASK),
            val,
        }
    }

    /// The command bits.
    pub const fn cmd(&self) -> u64 {
        self.ptr & MMU_UPDATE_CMD_MASK
    }

    /// The machine address without the command bits.
    pub const fn machine_addr(&self) -> u64 {
        self.ptr & !MMU_UPDATE_CMD_MASK
    }
}

// `mmuext_op(ops, count, done, foreigndom)` commands.

/// Validate and pin frame `arg1` as an L1 table.
pub const MMUEXT_PIN_L1_TABLE: u32 = 0;
/// Validate and pin frame `arg1` as an L2 table.
pub const MMUEXT_PIN_L2_TABLE: u32 = 1;
/// Validate and pin frame `arg1` as an L3 table.
pub const MMUEXT_PIN_L3_TABLE: u32 = 2;
/// Validate and pin frame `arg1` as an L4 table.
pub const MMUEXT_PIN_L4_TABLE: u32 = 3;
/// Unpin the page table in frame `arg1`.
pub const MMUEXT_UNPIN_TABLE: u32 = 4;
/// Switch CR3 to the L4 table in frame `arg1` (validated if need be).
pub const MMUEXT_NEW_BASEPTR: u32 = 5;
/// Flush this vCPU's TLB.
pub const MMUEXT_TLB_FLUSH_LOCAL: u32 = 6;
/// Flush linear address `arg1` from this vCPU's TLB.
pub const MMUEXT_INVLPG_LOCAL: u32 = 7;
/// Flush the TLBs of the vCPUs in the bitmap at virtual address `arg2`.
pub const MMUEXT_TLB_FLUSH_MULTI: u32 = 8;
/// Flush linear address `arg1` on the vCPUs in the bitmap at `arg2`.
pub const MMUEXT_INVLPG_MULTI: u32 = 9;
/// Flush the TLBs of all the domain's vCPUs.
pub const MMUEXT_TLB_FLUSH_ALL: u32 = 10;
/// Flush linear address `arg1` on all the domain's vCPUs.
pub const MMUEXT_INVLPG_ALL: u32 = 11;
/// Write back and invalidate caches.
pub const MMUEXT_FLUSH_CACHE: u32 = 12;
/// Install an LDT at linear address `arg1` with `arg2` entries.
pub const MMUEXT_SET_LDT: u32 = 13;
/// Xen's separate user page table for 64-bit PV guests. Xenia guests keep
/// kernel and user in one page table (the U/S bit separates ring 3 from
/// ring 1), so this fails with `EINVAL`.
pub const MMUEXT_NEW_USER_BASEPTR: u32 = 15;
/// Zero frame `arg1`.
pub const MMUEXT_CLEAR_PAGE: u32 = 16;
/// Copy frame `arg2` to frame `arg1`.
pub const MMUEXT_COPY_PAGE: u32 = 17;
/// Write back and invalidate caches on all CPUs.
pub const MMUEXT_FLUSH_CACHE_GLOBAL: u32 = 18;
/// Mark frame `arg1` as the head of a superpage.
pub const MMUEXT_MARK_SUPER: u32 = 19;
/// Unmark a superpage.
pub const MMUEXT_UNMARK_SUPER: u32 = 20;

/// One request of `mmuext_op` (Xen's `struct mmuext_op`, 24 bytes).
///
/// Xen declares the two arguments as unions; both are one 64-bit word here.
/// `arg1` is a machine frame number or a linear address depending on `cmd`;
/// `arg2` is an entry count ([`MmuextOp::nr_ents`], low 32 bits), a
/// virtual address of a vCPU bitmap, or a source frame.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
#[repr(C)]
#[derive(zerocopy::FromBytes, zerocopy::Immutable, zerocopy::KnownLayout)]
pub struct MmuextOp {
    /// `MMUEXT_*`.
    pub cmd: u32,
    /// First argument.
    pub arg1: u64,
    /// Second argument.
    pub arg2: u64,
}

impl MmuextOp {
    /// The `nr_ents` view of `arg2` (`MMUEXT_SET_LDT`).
    pub const fn nr_ents(&self) -> u32 {
        self.arg2 as u32
    }
}

// `update_va_mapping(va, val, flags)` flags: a flush type ORed with a flush
// scope. With `UVMF_MULTI`, the flags also carry the virtual address of a
// vCPU bitmap (8-byte aligned, so its low bits are free).

/// No TLB flush.
pub const UVMF_NONE: u64 = 0;
/// Flush the whole TLB.
pub const UVMF_TLB_FLUSH: u64 = 1;
/// Flush only the entry for `va`.
pub const UVMF_INVLPG: u64 = 2;
/// Mask of the flush type.
pub const UVMF_FLUSHTYPE_MASK: u64 = 3;
/// Flush the vCPUs in the bitmap whose address is ORed into the flags.
pub const UVMF_MULTI: u64 = 0;
/// Flush this vCPU only (`UVMF_MULTI` with a null bitmap).
pub const UVMF_LOCAL: u64 = 0;
/// Flush all the domain's vCPUs.
pub const UVMF_ALL: u64 = 1 << 2;

// `memory_op(cmd, arg)` commands (`XENMEM_*`).

/// Allocate extents ([`MemoryReservation`]); returns the number done.
pub const XENMEM_INCREASE_RESERVATION: u32 = 0;
/// Free the extents listed ([`MemoryReservation`]); returns the number done.
pub const XENMEM_DECREASE_RESERVATION: u32 = 1;
/// Returns the highest machine frame number of RAM.
pub const XENMEM_MAXIMUM_RAM_PAGE: u32 = 2;
/// Returns a domain's current reservation in pages (`arg`: `DomId`).
pub const XENMEM_CURRENT_RESERVATION: u32 = 3;
/// Returns a domain's maximum reservation in pages (`arg`: `DomId`).
pub const XENMEM_MAXIMUM_RESERVATION: u32 = 4;
/// Lists the machine frames holding the M2P table.
pub const XENMEM_MACHPHYS_MFN_LIST: u32 = 5;
/// Back the listed PFNs with new frames ([`MemoryReservation`]); returns
/// the number done.
pub const XENMEM_POPULATE_PHYSMAP: u32 = 6;
/// Map a special page (such as shared info) at a PFN.
pub const XENMEM_ADD_TO_PHYSMAP: u32 = 7;
/// Returns the domain's pseudo-physical memory map ([`MemoryMap`]).
pub const XENMEM_MEMORY_MAP: u32 = 9;
/// Returns the machine memory map (dom0; [`MemoryMap`]).
pub const XENMEM_MACHINE_MEMORY_MAP: u32 = 10;
/// Exchange extents for others atomically.
pub const XENMEM_EXCHANGE: u32 = 11;
/// Returns where the M2P is mapped ([`MachphysMapping`]).
pub const XENMEM_MACHPHYS_MAPPING: u32 = 12;
/// Set a domain's pseudo-physical memory map (toolstack).
pub const XENMEM_SET_MEMORY_MAP: u32 = 13;
/// Returns the highest PFN the domain uses.
pub const XENMEM_MAXIMUM_GPFN: u32 = 14;
/// Unmap the page at a PFN.
pub const XENMEM_REMOVE_FROM_PHYSMAP: u32 = 15;
/// Batched `XENMEM_ADD_TO_PHYSMAP`.
pub const XENMEM_ADD_TO_PHYSMAP_BATCH: u32 = 23;
/// Reserve pages for a domain being built (toolstack).
pub const XENMEM_CLAIM_PAGES: u32 = 24;
/// Lists the frames of the compatibility M2P.
pub const XENMEM_MACHPHYS_COMPAT_MFN_LIST: u32 = 25;
/// Returns the domain's virtual NUMA topology.
pub const XENMEM_GET_VNUMAINFO: u32 = 26;
/// Map a resource (such as a grant table) of another domain.
pub const XENMEM_ACQUIRE_RESOURCE: u32 = 28;

/// Xenia extension: the hypervisor's count of the calling domain's frames by type
/// ([`XeniaFrameCounts`]). Numbers from `0x5800` up are Xenia's own; Xen never uses
/// them.
pub const XENMEM_XENIA_FRAME_COUNTS: u32 = 0x5800;
/// Xenia extension, dom0 only (`-EPERM` for any other domain): run the hypervisor's
/// consistency check of the whole frame table (every reference count recomputed from the
/// page tables, pins and base pointers; every frame the hypervisor writes for a domain held
/// writable; no frame left to a domain that is gone). Returns 0 when consistent, `-EIO`
/// otherwise; the hypervisor logs the outcome as
/// `frame table check: consistent (<N> frames)` or `frame table check: INCONSISTENT: ...`.
pub const XENMEM_XENIA_CHECK_FRAME_TABLE: u32 = 0x5801;

/// Frame types in the order of [`XeniaFrameCounts::by_type`] (DESIGN §4).
pub const XENIA_FRAME_TYPES: [&str; 7] = ["none", "l1", "l2", "l3", "l4", "descriptor", "writable"];

/// Argument of [`XENMEM_XENIA_FRAME_COUNTS`] (64 bytes).
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
#[repr(C)]
#[derive(zerocopy::FromBytes, zerocopy::IntoBytes, zerocopy::Immutable, zerocopy::KnownLayout)]
pub struct XeniaFrameCounts {
    /// OUT: frames the domain owns.
    pub total: u64,
    /// OUT: of those, how many have each type ([`XENIA_FRAME_TYPES`] order); a frame
    /// counts under its type only while its type count is non-zero, else under "none".
    pub by_type: [u64; 7],
}

/// Argument of the reservation commands (Xen's `struct
/// xen_memory_reservation`, 32 bytes).
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
#[repr(C)]
#[derive(zerocopy::FromBytes, zerocopy::Immutable, zerocopy::KnownLayout)]
pub struct MemoryReservation {
    /// IN/OUT: virtual address of an array of frame numbers — machine frames
    /// allocated (increase, OUT), frames to free (decrease, IN), or PFNs to
    /// populate (IN) that are replaced by the machine frames (OUT).
    pub extent_start: u64,
    /// IN: number of extents.
    pub nr_extents: u64,
    /// IN: each extent is `2^extent_order` contiguous pages.
    pub extent_order: u32,
    /// IN: `XENMEMF_*` flags; the low 8 bits limit the address width of
    /// allocated frames (0: no limit).
    pub mem_flags: u32,
    /// IN: the domain (`DOMID_SELF` unless privileged).
    pub domid: DomId,
}

/// [`MemoryReservation::mem_flags`]: allocated frames must lie below
/// `2^bits` bytes (Xen's `XENMEMF_address_bits`; 0 means no limit).
pub const fn xenmemf_address_bits(bits: u32) -> u32 {
    bits & 0xFF
}

/// The address-width limit carried by [`MemoryReservation::mem_flags`]
/// (Xen's `XENMEMF_get_address_bits`).
pub const fn xenmemf_get_address_bits(flags: u32) -> u32 {
    flags & 0xFF
}

/// Argument of [`XENMEM_EXCHANGE`] (Xen's `struct xen_memory_exchange`, 72
/// bytes): give back `in` extents, get `out` extents of another order, for
/// example 16 order-0 frames for one machine-contiguous order-4 extent (a
/// DMA buffer).
///
/// As in Xen for PV guests: `in.extent_start` lists the machine frames given
/// (each the first of an extent of order `in.extent_order`, owned by the
/// caller and not in use: no page-table type, no other reference);
/// `out.extent_start` lists, on entry, the PFNs where the new extents go,
/// and is overwritten with the first machine frame of each new extent, whose
/// frames are machine-contiguous and below `2^address_bits` bytes if
/// `out.mem_flags` says so. The hypervisor points the M2P of the new frames
/// at those PFNs; the guest updates its p2m and its mappings. `in.domid`
/// and `out.domid` must both be `DOMID_SELF` (or the caller's id), and
/// `in.nr_extents << in.extent_order` must equal
/// `out.nr_extents << out.extent_order`.
///
/// The exchange proceeds in chunks of the larger order; the first
/// `nr_exchanged` input extents were exchanged (their frames are gone and
/// the matching output entries are valid), the rest are untouched. Any
/// failure returns a negative errno with `nr_exchanged` saying how far it
/// got. The caller must set `nr_exchanged` to zero.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
#[repr(C)]
#[derive(zerocopy::FromBytes, zerocopy::Immutable, zerocopy::KnownLayout)]
pub struct MemoryExchange {
    /// IN: the extents given.
    pub input: MemoryReservation,
    /// IN/OUT: the extents wanted (see above).
    pub output: MemoryReservation,
    /// IN: zero; OUT: number of input extents exchanged.
    pub nr_exchanged: u64,
}

/// Byte offset of [`MemoryExchange::nr_exchanged`], the one field the
/// hypervisor writes back.
pub const MEMORY_EXCHANGE_NR_EXCHANGED_OFFSET: usize = 64;

/// Argument of `XENMEM_MEMORY_MAP` and `XENMEM_MACHINE_MEMORY_MAP` (Xen's
/// `struct xen_memory_map`, 16 bytes).
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
#[repr(C)]
#[derive(zerocopy::FromBytes, zerocopy::Immutable, zerocopy::KnownLayout)]
pub struct MemoryMap {
    /// IN: capacity of the buffer in entries; OUT: entries written.
    pub nr_entries: u32,
    /// IN: virtual address of a buffer of [`E820Entry`] records.
    pub buffer: u64,
}

/// One entry of a memory map (the BIOS E820 format, 20 bytes, packed).
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
#[repr(C, packed)]
#[derive(zerocopy::FromBytes, zerocopy::IntoBytes, zerocopy::Immutable, zerocopy::KnownLayout)]
pub struct E820Entry {
    /// First byte of the range.
    pub addr: u64,
    /// Length of the range in bytes.
    pub size: u64,
    /// `E820_*` type.
    pub kind: u32,
}

/// [`E820Entry::kind`]: usable RAM.
pub const E820_RAM: u32 = 1;
/// [`E820Entry::kind`]: reserved.
pub const E820_RESERVED: u32 = 2;

/// Argument of `XENMEM_MACHPHYS_MAPPING` (Xen's `struct
/// xen_machphys_mapping`, 24 bytes).
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
#[repr(C)]
#[derive(zerocopy::FromBytes, zerocopy::IntoBytes, zerocopy::Immutable, zerocopy::KnownLayout)]
pub struct MachphysMapping {
    /// OUT: first virtual address of the M2P.
    pub v_start: u64,
    /// OUT: end of the M2P.
    pub v_end: u64,
    /// OUT: largest machine frame number with an entry.
    pub max_mfn: u64,
}

// `vm_assist(cmd, type)`.

/// `vm_assist` command: turn an assist on.
pub const VMASST_CMD_ENABLE: u32 = 0;
/// `vm_assist` command: turn an assist off.
pub const VMASST_CMD_DISABLE: u32 = 1;
/// Assist: trap writes to L1 page tables and emulate them (Xen). Xenia guests
/// update page tables only through hypercalls.
pub const VMASST_TYPE_WRITABLE_PAGETABLES: u32 = 2;
/// Assist: hide the M2P from user mode strictly (Xen).
pub const VMASST_TYPE_M2P_STRICT: u32 = 32;
/// Assist: 4 GiB segments for 32-bit guests (Xen); accepted and without effect for 64-bit
/// guests, as on Xen (Linux turns it on).
pub const VMASST_TYPE_4GB_SEGMENTS: u32 = 0;
/// Assist: notify the guest of 4 GiB segment use (Xen); without effect for 64-bit guests.
pub const VMASST_TYPE_4GB_SEGMENTS_NOTIFY: u32 = 1;
/// Assist: page directories above 4 GiB for 32-bit PAE guests (Xen); without effect for
/// 64-bit guests, whose top-level table may be any frame. Turning it on makes
/// `XENVER_get_features` report `XENFEAT_pae_pgdir_above_4gb`, as Xen does (Linux turns it
/// on).
pub const VMASST_TYPE_PAE_EXTENDED_CR3: u32 = 3;
/// Assist: the hypervisor sets `XEN_RUNSTATE_UPDATE` (bit 63 of `state_entry_time`) in a
/// registered run-state area while it writes it (Xen; Linux turns it on to read other vCPUs'
/// areas safely).
pub const VMASST_TYPE_RUNSTATE_UPDATE_FLAG: u32 = 5;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xenia_extension_layout() {
        assert_eq!(core::mem::size_of::<XeniaFrameCounts>(), 64);
        const { assert!(XENMEM_XENIA_FRAME_COUNTS > XENMEM_ACQUIRE_RESOURCE) };
    }

    #[test]
    fn numbers_match_xen() {
        assert_eq!(
            [
                MMU_NORMAL_PT_UPDATE,
                MMU_MACHPHYS_UPDATE,
                MMU_PT_UPDATE_PRESERVE_AD
            ],
            [0, 1, 2]
        );
        let ext = [
            (MMUEXT_PIN_L1_TABLE, 0),
            (MMUEXT_PIN_L2_TABLE, 1),
            (MMUEXT_PIN_L3_TABLE, 2),
            (MMUEXT_PIN_L4_TABLE, 3),
            (MMUEXT_UNPIN_TABLE, 4),
            (MMUEXT_NEW_BASEPTR, 5),
            (MMUEXT_TLB_FLUSH_LOCAL, 6),
            (MMUEXT_INVLPG_LOCAL, 7),
            (MMUEXT_TLB_FLUSH_MULTI, 8),
            (MMUEXT_INVLPG_MULTI, 9),
            (MMUEXT_TLB_FLUSH_ALL, 10),
            (MMUEXT_INVLPG_ALL, 11),
            (MMUEXT_FLUSH_CACHE, 12),
            (MMUEXT_SET_LDT, 13),
            (MMUEXT_NEW_USER_BASEPTR, 15),
            (MMUEXT_CLEAR_PAGE, 16),
            (MMUEXT_COPY_PAGE, 17),
            (MMUEXT_FLUSH_CACHE_GLOBAL, 18),
            (MMUEXT_MARK_SUPER, 19),
            (MMUEXT_UNMARK_SUPER, 20),
        ];
        for (ours, xen) in ext {
            assert_eq!(ours, xen);
        }
        assert_eq!(
            [
                UVMF_NONE,
                UVMF_TLB_FLUSH,
                UVMF_INVLPG,
                UVMF_FLUSHTYPE_MASK,
                UVMF_MULTI,
                UVMF_LOCAL,
                UVMF_ALL
            ],
            [0, 1, 2, 3, 0, 0, 4]
        );
        let mem = [
            (XENMEM_INCREASE_RESERVATION, 0),
            (XENMEM_DECREASE_RESERVATION, 1),
            (XENMEM_MAXIMUM_RAM_PAGE, 2),
            (XENMEM_CURRENT_RESERVATION, 3),
            (XENMEM_MAXIMUM_RESERVATION, 4),
            (XENMEM_MACHPHYS_MFN_LIST, 5),
            (XENMEM_POPULATE_PHYSMAP, 6),
            (XENMEM_ADD_TO_PHYSMAP, 7),
            (XENMEM_MEMORY_MAP, 9),
            (XENMEM_MACHINE_MEMORY_MAP, 10),
            (XENMEM_EXCHANGE, 11),
            (XENMEM_MACHPHYS_MAPPING, 12),
            (XENMEM_SET_MEMORY_MAP, 13),
            (XENMEM_MAXIMUM_GPFN, 14),
            (XENMEM_REMOVE_FROM_PHYSMAP, 15),
            (XENMEM_ADD_TO_PHYSMAP_BATCH, 23),
            (XENMEM_CLAIM_PAGES, 24),
            (XENMEM_MACHPHYS_COMPAT_MFN_LIST, 25),
            (XENMEM_GET_VNUMAINFO, 26),
            (XENMEM_ACQUIRE_RESOURCE, 28),
        ];
        for (ours, xen) in mem {
            assert_eq!(ours, xen);
        }
        assert_eq!(
            [
                VMASST_CMD_ENABLE,
                VMASST_CMD_DISABLE,
                VMASST_TYPE_WRITABLE_PAGETABLES,
                VMASST_TYPE_M2P_STRICT
            ],
            [0, 1, 2, 32]
        );
    }

    #[test]
    fn layouts() {
        assert_layout!(MmuUpdate, 16, 8, { ptr: 0, val: 8 });
        assert_layout!(MmuextOp, 24, 8, { cmd: 0, arg1: 8, arg2: 16 });
        assert_layout!(MemoryReservation, 32, 8, {
            extent_start: 0,
            nr_extents: 8,
            extent_order: 16,
            mem_flags: 20,
            domid: 24,
        });
        assert_layout!(MemoryMap, 16, 8, { nr_entries: 0, buffer: 8 });
        assert_layout!(MemoryExchange, 72, 8, { input: 0, output: 32, nr_exchanged: 64 });
        assert_eq!(
            core::mem::offset_of!(MemoryExchange, nr_exchanged),
            MEMORY_EXCHANGE_NR_EXCHANGED_OFFSET
        );
        assert_eq!(
            xenmemf_get_address_bits(xenmemf_address_bits(32) | 0x100),
            32
        );
        assert_layout!(MachphysMapping, 24, 8, { v_start: 0, v_end: 8, max_mfn: 16 });
        assert_layout!(E820Entry, 20, 1, { addr: 0, size: 8, kind: 16 });
    }

    #[test]
    fn mmu_update_command_bits() {
        let u = MmuUpdate::new(MMU_PT_UPDATE_PRESERVE_AD, 0x1234_5678, 0xAB);
        assert_eq!(u.cmd(), MMU_PT_UPDATE_PRESERVE_AD);
        assert_eq!(u.machine_addr(), 0x1234_5678);
        assert_eq!(u.ptr, 0x1234_567A);
        let op = MmuextOp {
            cmd: MMUEXT_SET_LDT,
            arg1: 0,
            arg2: 0xFFFF_FFFF_0000_0010,
        };
        assert_eq!(op.nr_ents(), 16);
    }
}
