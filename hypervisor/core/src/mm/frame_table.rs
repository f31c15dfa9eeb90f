//! The frame table: for every machine frame, who owns it, what it is used as and who refers
//! to it (DESIGN.md §4).
//!
//! # The model, Xen's (`xen/arch/x86/mm.c`)
//!
//! Every frame has an owner (free, the hypervisor or a domain), a *type*, a *type count*, a
//! general *reference count* and two flags, pinned and validated. A frame can be put to one
//! of several exclusive uses — an L1, L2, L3 or L4 page table, a descriptor table, or memory
//! mapped writable — and its type count says how many users it has in its current use. A
//! frame changes type only while its type count is zero. Gaining a page-table type
//! *validates* the frame: every present entry is checked and takes a reference on what it
//! points to (an L4 entry a type reference as L3, an L3 entry as L2, an L2 entry as L1; an
//! L1 entry a general reference, plus a [`PageType::Writable`] type reference if the entry
//! is writable). Losing it (the type count falls back to zero) *devalidates* the frame: the
//! references its entries hold are dropped again, recursively. It follows that:
//!
//! - no frame is ever both a page table and mapped writable, the two being different types.
//!   That is what makes direct paging safe: a guest reads its page tables, but changes them
//!   only through `mmu_update`, which checks every new entry;
//! - a recursive mapping that needs one frame to have two types fails the type check. A
//!   frame being validated already holds its new type, so an L4 entry pointing back at its
//!   own table asks an L4 to be an L3 and is refused, and an L1 entry mapping its own table
//!   writable asks an L1 to be writable. (Xen accepts read-only "linear" page tables,
//!   `get_l4_linear_pagetable`; Xenia has no use for them and refuses them.)
//! - no frame is freed while anything refers to it.
//!
//! References come from exactly four places: entries of validated page tables, pins
//! (`MMUEXT_PIN_L*_TABLE`), vCPU base pointers (`MMUEXT_NEW_BASEPTR`), and hypervisor code
//! through [`FrameTable::get_page`] and [`FrameTable::get_page_type`]. The table counts the
//! last three per frame, so [`FrameTable::check_consistency`] can recompute every count from
//! scratch and no caller can drop a reference it does not hold.
//!
//! Page-table validation recurses at most four levels deep: each level asks for a strictly
//! lower type, and a type mismatch stops the descent.
//!
//! # Flushes and guest roots
//!
//! - **Type changes.** A frame that had one use and takes another may still be reachable
//!   through stale TLB or paging-structure-cache entries on any pCPU: a writable mapping of a
//!   frame about to become a page table, or a cached walk through a former page table about
//!   to become writable. The table calls [`PageMemory::flush_tlbs`] itself, at the moment of
//!   the change: before the frame's entries are validated and before anything maps it under
//!   its new type. Returning a flag for the caller to act on afterwards would be too late: a
//!   vCPU on another pCPU could rewrite the frame through a stale writable entry between
//!   validation and the flush. Xen flushes at the same point (`_get_page_type`:
//!   `flush_tlb_mask` of the owner's dirty CPUs, filtered by the frame's TLB-flush
//!   timestamp). The hypervisor's implementation must not filter: it asks every pCPU that
//!   runs a guest, whatever the frame's owner, and waits for each, because the SYSCALL
//!   bounce answered without a lock (`guest::fast::light_syscall`) relies on that wait to
//!   finish its write to a frame it found as plain memory, which may be another domain's
//!   granted frame (docs/security.md §3.10).
//! - **L4 changes.** Each pCPU's guest root holds a copy of the running guest's L4 entries
//!   (DESIGN.md §2, point 1). After a new L4 entry is written and *before* the old entry's
//!   references are dropped, the table calls [`PageMemory::sync_guest_roots`]: otherwise a
//!   stale copy could keep pointing at an L3 that, its type count gone, becomes writable.
//!   Xen does the same with `FLUSH_ROOT_PGTBL` and a deferred put of the old L3 (`mod_l4_entry`
//!   with `PTF_defer`, `sync_guest` in `do_mmu_update`).
//! - **Removed or downgraded entries** ([`UpdateEffect::stale_translation`]): the guest's own
//!   TLBs may still hold the old translation. As in Xen, flushing them is the guest's business
//!   (the `UVMF_*` flags, `MMUEXT_*` flushes): safety never depends on it, because every
//!   change of type flushes, and freed frames are flushed before reuse (next point).
//! - **Freed frames.** Frames returned by [`FrameTable::unassign`] and
//!   [`FrameTable::release_domain`] may still be in the TLBs of pCPUs that ran the domain;
//!   the caller flushes those before the frames go to anyone else (Xen checks TLB-flush
//!   timestamps in `alloc_heap_pages`).
//! - **New base pointer.** [`FrameTable::set_base`] drops the old base's reference, which may
//!   devalidate it; the caller loads the vCPU's guest root from the new L4 before it returns
//!   to the guest.
//!
//! The hooks run in the middle of an operation, while the caller holds the lock of the
//! domain whose frames change (see [`FrameTable`] on concurrency): a shootdown must need no
//! lock, and a pCPU waiting for a domain lock must answer flush requests while it waits.
//!
//! # Errors (Xen's, at the hypercall boundary)
//!
//! | refusal | errno | Xen |
//! |---|---|---|
//! | present entry with a disallowed bit: cache attributes, PS, G above L1, bit 62 in L1, NX without NX, an address bit at or above the physical width | `EINVAL` | `get_page_from_lNe`, `mod_lN_entry`: "Bad L%u flags" |
//! | L1 entry mapping a frame the domain does not own (another domain's, the hypervisor's, a free one), mapping writable a frame that cannot be `Writable`, or a reference count that is full | `EBUSY` | `get_page_from_l1e`: `could_not_pin` |
//! | L1 entry mapping a frame outside the table (MMIO) that the hypervisor does not allow the domain ([`PageMemory::io_frame_allowed`]: only dom0, never RAM or the hypervisor's devices) | `EPERM` | `get_page_from_l1e`: "non-privileged attempt to map MMIO space" |
//! | L2–L4 entry pointing at a frame the domain does not own, or whose type is wrong | `EINVAL` | `get_page_and_type_from_mfn`, `_get_page_type` |
//! | update of L4 slots 256–271; L4 with anything in them | `EINVAL` | `mod_l4_entry`: "L4 update in Xen-private area" |
//! | pin, unpin, base pointer or updated table not owned; pinned twice; unpinned when not pinned; type mismatch; type count full | `EINVAL` | `do_mmuext_op`, `do_mmu_update`, `_get_page_type` |
//! | not-present entry whose address names RAM (with the L1TF mitigation on) | `EINVAL` | `pv_l1tf_check_lNe` (Xen crashes or shadows the guest) |
//!
//! A failed operation changes nothing: every reference taken on the way is dropped again and
//! a frame whose validation failed is left untyped (type count zero).
//!
//! # Departures from Xen
//!
//! - Xen silently overwrites the hypervisor slots of an L4 it validates
//!   (`init_xen_l4_slots`); Xenia's guest L4s are never loaded as they are (the per-pCPU guest
//!   root copies them), so their reserved slots must simply be zero.
//! - No linear page tables, no superpages, no foreign mappings. I/O mappings (frames above the
//!   table, for dom0) are L1 entries that hold no reference, as Xen's; they may carry PCD and
//!   PWT (never PAT). I/O memory *inside* the table's range (holes below the top of RAM: the
//!   legacy VGA window, a PCI hole below 4 GiB on machines with RAM above it) is not mappable
//!   yet: such frames are the hypervisor's in the table.
//! - No preemption: validating a table is bounded by four levels of 512 entries each.
//! - A normal update of a frame that is no page table writes it as Xen does, taking the
//!   `Writable` type for the duration (`do_mmu_update`: `PGT_writable_page` case).

#![forbid(unsafe_code)]

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use core::sync::atomic::{AtomicU64, Ordering};

use guest_abi::errno::Errno;
use guest_abi::layout::is_hypervisor_l4_slot;
use guest_abi::memory::XENIA_FRAME_TYPES;
use guest_abi::sysctl as sc;
use guest_abi::types::{DOMID_FIRST_RESERVED, DOMID_XEN, DomId};

use super::Mfn;

/// Entries in one page-table frame (Intel SDM Vol. 3A §4.5: 512 eight-byte entries).
pub const ENTRIES: usize = 512;

/// Entries in use a table scan (validation, devalidation) takes at a time, onto the stack.
const SCAN_BATCH: usize = 16;

/// Frames whose counts [`FrameTable::check_consistency`] recomputes at once (eight bytes of
/// scratch each: 512 KiB, whatever the machine's size).
pub const CHECK_WINDOW: usize = 64 * 1024;

/// Page-table entry bits: guest-abi's, the one definition (Intel SDM Vol. 3A §4.5), under
/// the names this file uses, plus Xen's grant mark.
mod pte {
    pub use guest_abi::pte::{
        ACCESSED, ADDR_MASK as ADDR, DIRTY, GLOBAL, NX, PCD, PRESENT, PS as PS_PAT, PWT, RW, USER,
    };
    /// Ignored by the hardware; Xen reserves it in L1 entries to mark grant mappings
    /// (`_PAGE_GNTTAB`, `asm/x86_64/page.h`).
    pub const GNTTAB: u64 = 1 << 62;
}

/// Whether `e`, an entry of a table of type `level`, is a grant mapping installed by the
/// grant table (present, in an L1, with Xen's `_PAGE_GNTTAB` bit).
fn is_grant_pte(level: PageType, e: u64) -> bool {
    level == PageType::L1 && e & (pte::PRESENT | pte::GNTTAB) == (pte::PRESENT | pte::GNTTAB)
}

/// The software-available bits 9–11 of a PTE, which a grant mapper may ask for
/// (`GNTMAP_guest_avail0` upwards, Xen's `XENFEAT_gnttab_map_avail_bits`).
pub const GRANT_AVAIL_BITS: u64 = 0x7 << 9;

/// Bits a present L1 entry may not have: the cache attributes (Xen's `PAGE_CACHE_ATTRS`,
/// refused for domains without I/O memory, which is every Xenia domain) and Xen's grant bit.
/// Xen's `L1_DISALLOW_MASK`. The rest of bits 0–11 and 52–61 is the guest's: G, A, D, U/S
/// and software bits. (Bits 59–62 are protection keys only with CR4.PKE, and a key can
/// only take access away.)
const L1_DISALLOW: u64 = pte::PWT | pte::PCD | pte::PS_PAT | pte::GNTTAB;

/// Bits a present L2, L3 or L4 entry may not have: cache attributes, PS (PV superpages are
/// refused) and G. Xen's `base_disallow_mask`, i.e. `L2_DISALLOW_MASK`, `L3_DISALLOW_MASK`
/// (64-bit guests) and `L4_DISALLOW_MASK`.
const UPPER_DISALLOW: u64 = pte::PWT | pte::PCD | pte::PS_PAT | pte::GLOBAL;

/// Who owns a frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Owner {
    /// In the frame allocator.
    Free,
    /// The hypervisor's own memory; also what a frame outside the table answers.
    Hypervisor,
    /// A domain's.
    Domain(DomId),
}

/// What a frame is used as. Only one use at a time, and a use changes only while the type
/// count is zero.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[repr(u8)]
pub enum PageType {
    /// Not typed yet (a fresh frame; a frame whose validation failed).
    None = 0,
    /// A page table, L1 (PT) to L4 (PML4).
    L1 = 1,
    L2 = 2,
    L3 = 3,
    L4 = 4,
    /// A GDT or LDT frame. Its contents are checked by the descriptor-table code, after it
    /// took the type: from then on the frame cannot be mapped writable, so what was checked
    /// stays checked (Xen's `PGT_seg_desc_page`, `validate_segdesc_page`).
    Descriptor = 5,
    /// Mapped writable by the guest.
    Writable = 6,
}

impl PageType {
    /// Every type, in the order of [`PageType::index`].
    pub const ALL: [PageType; 7] = [
        PageType::None,
        PageType::L1,
        PageType::L2,
        PageType::L3,
        PageType::L4,
        PageType::Descriptor,
        PageType::Writable,
    ];

    /// Position in [`PageType::ALL`] and in [`FrameTable::count_by_type`].
    pub const fn index(self) -> usize {
        self as usize
    }

    pub const fn is_page_table(self) -> bool {
        matches!(
            self,
            PageType::L1 | PageType::L2 | PageType::L3 | PageType::L4
        )
    }

    /// The type an entry of a table of this type requires of the frame it points to (an
    /// L1 entry's requirement depends on its RW bit and is not given here).
    const fn child(self) -> Option<PageType> {
        match self {
            PageType::L2 => Some(PageType::L1),
            PageType::L3 => Some(PageType::L2),
            PageType::L4 => Some(PageType::L3),
            _ => None,
        }
    }

    /// The name the ABI gives the type (`XENIA_FRAME_TYPES`, the order of
    /// `XeniaFrameCounts::by_type` and of [`FrameTable::count_by_type`]).
    pub const fn name(self) -> &'static str {
        XENIA_FRAME_TYPES[self.index()]
    }
}

/// Whether a frame is taken out of use (Xen 3.4's memory offlining,
/// `XEN_SYSCTL_page_offline_op`: a frame with correctable errors is retired before it
/// fails).
///
/// The states: a free frame goes straight to `Offlined`; a frame a domain owns goes to
/// `Pending` and becomes `Offlined` when the domain frees it ([`FrameTable::unassign`],
/// [`FrameTable::release_domain_with`]); the hypervisor's own frames are refused. Online
/// takes `Offlined` and `Pending` back to `Online`. An `Offlined` frame is never assigned
/// to a domain ([`FrameTable::assign`] refuses it): the frame allocator withholds it (its
/// own record: the table does not know which hypervisor frames are free).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
#[repr(u8)]
pub enum Offline {
    /// In normal use.
    #[default]
    Online = 0,
    /// Owned by a domain; leaves when freed (Xen's `PGC_state_offlining`).
    Pending = 1,
    /// Out of use (Xen's `PGC_state_offlined`): the hypervisor's, never handed out.
    Offlined = 2,
}

/// Everything the table knows about one frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameInfo {
    pub owner: Owner,
    /// The frame's use while `type_count > 0`. At zero, the use it last had, kept so that
    /// the next change of use is seen and flushed (Xen keeps it in `type_info` likewise).
    pub ty: PageType,
    pub type_count: u32,
    /// General references; every type reference comes with one, so never below
    /// `type_count`.
    pub ref_count: u32,
    /// Pinned (`MMUEXT_PIN_L*_TABLE`): holds one type and one general reference.
    pub pinned: bool,
    /// The type is in force: set once a page table's entries passed validation, cleared when
    /// the type count falls to zero.
    pub validated: bool,
    /// vCPUs using this L4 as their base pointer, each holding a type and a general reference.
    pub base_refs: u32,
    /// General references held by hypervisor code ([`FrameTable::get_page`]).
    pub ext_refs: u32,
    /// Type references (each with its general reference) held by hypervisor code
    /// ([`FrameTable::get_page_type`]).
    pub ext_type_refs: u32,
    /// `Writable` type references (each with its general reference) held because the
    /// hypervisor itself writes the frame on its owner's behalf for as long as it holds
    /// them: `shared_info`, grant-table frames ([`FrameTable::hold_for_writes`]). While
    /// any is held the frame can be neither a page table nor a descriptor page nor freed.
    pub hv_writes: u32,
    /// Offlining state ([`Offline`]); kept across changes of owner.
    pub offline: Offline,
}

impl FrameInfo {
    /// A frame of `owner` with no type, count or flag.
    pub const fn new(owner: Owner) -> FrameInfo {
        FrameInfo {
            owner,
            ty: PageType::None,
            type_count: 0,
            ref_count: 0,
            pinned: false,
            validated: false,
            base_refs: 0,
            ext_refs: 0,
            ext_type_refs: 0,
            hv_writes: 0,
            offline: Offline::Online,
        }
    }

    /// A frame of `owner` with no type, count or flag, in offlining state `offline`.
    const fn with_offline(owner: Owner, offline: Offline) -> FrameInfo {
        let mut f = FrameInfo::new(owner);
        f.offline = offline;
        f
    }

    /// Nothing refers to the frame.
    const fn unreferenced(&self) -> bool {
        self.type_count == 0
            && self.ref_count == 0
            && !self.pinned
            && self.base_refs == 0
            && self.ext_refs == 0
            && self.ext_type_refs == 0
            && self.hv_writes == 0
    }

    /// The type in force: the frame's type if its type count is non-zero, else none.
    pub const fn current_type(&self) -> PageType {
        if self.type_count > 0 {
            self.ty
        } else {
            PageType::None
        }
    }
}

/// What the frame table needs from the machine: page contents, reached through the
/// hypervisor's direct map (a fake in tests), and the two shootdowns that must happen at a
/// precise moment (see the module docs).
pub trait PageMemory {
    /// Entry `index` (below [`ENTRIES`]) of frame `mfn`.
    fn read_entry(&self, mfn: Mfn, index: usize) -> u64;
    /// The entries of frame `mfn` from `from` on that are not zero, in order, as `(index,
    /// value)` pairs, as many as `out` holds: how many were put there, and the index to go on
    /// from ([`ENTRIES`] when the table is done). Each entry is read once; what a validation
    /// or devalidation acts on (most of a table is empty).
    fn nonzero_entries(&self, mfn: Mfn, from: usize, out: &mut [(usize, u64)]) -> (usize, usize) {
        let mut n = 0;
        let mut i = from;
        while i < ENTRIES && n < out.len() {
            let e = self.read_entry(mfn, i);
            if e != 0 {
                out[n] = (i, e);
                n += 1;
            }
            i += 1;
        }
        (n, i)
    }
    /// Writes entry `index` of frame `mfn`. Only called for frames owned by the domain the
    /// operation is for.
    fn write_entry(&mut self, mfn: Mfn, index: usize, value: u64);
    /// Writes entry `index` of `mfn`, a validated page table of type `level` whose entry was
    /// `old`, to `value` (an `mmu_update` or an emulated write). The default is
    /// [`write_entry`](Self::write_entry). The table moves its generation around the write
    /// only when a translation through the entry may change ([`translation_changed`]).
    fn update_entry_value(
        &mut self,
        mfn: Mfn,
        index: usize,
        level: PageType,
        old: u64,
        value: u64,
    ) {
        let _ = (level, old);
        self.write_entry(mfn, index, value);
    }
    /// Makes every pCPU drop its TLB and paging-structure-cache entries for guest mappings,
    /// and returns when all have. Called before a frame changes from one use to another.
    fn flush_tlbs(&mut self);
    /// The entries of L4 table `l4` changed: every pCPU whose guest root copies `l4` must
    /// recopy them (and flush) before this returns, and a pCPU that loads `l4` later copies
    /// the new contents.
    fn sync_guest_roots(&mut self, l4: Mfn);
    /// Called between two tables of a validation or devalidation, which for a large tree
    /// takes long (every frame of a domain as an L1: half a billion entries for 4 GiB):
    /// the hypervisor answers other pCPUs' flush requests here, so that one domain's
    /// validation never keeps another's flush waiting. Nothing by default.
    fn poll(&mut self) {}
    /// Whether domain `dom` may map frame `mfn`, which lies outside the table (no RAM the
    /// table describes), as I/O memory: Xen's `iomem_access_permitted`. The hypervisor says
    /// yes only for the hardware domain and only for frames that are neither RAM nor its
    /// own (local and I/O APICs, HPET, MSI range, whatever it mapped). No by default.
    fn io_frame_allowed(&self, mfn: Mfn, dom: DomId) -> bool {
        let _ = (mfn, dom);
        false
    }
    /// Whether every present entry of `dom`'s page tables gets the U/S bit forced on, as Xen
    /// does for 64-bit PV guests (`adjust_guest_l1e` to `adjust_guest_l4e`): their kernel
    /// runs in ring 3, so its own pages must be user pages; the guest's user mode is kept
    /// out of the kernel's memory by its separate top-level table, not by U/S. No by default.
    fn forced_user(&self, dom: DomId) -> bool {
        let _ = dom;
        false
    }
}

/// Machine facts that decide which entries are valid.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Config {
    /// MAXPHYADDR (CPUID 0x8000_0008, EAX bits 7:0): address bits from here to 51 are
    /// reserved in every entry (Intel SDM Vol. 3A §4.5). Taken as 52 if larger.
    pub phys_addr_bits: u8,
    /// EFER.NXE is set: bit 63 may be used; otherwise it is reserved.
    pub nx: bool,
    /// Refuse not-present entries whose address field names RAM: the L1 Terminal Fault
    /// (CVE-2018-3620) lets a guest read the L1 cache through such an entry. Off only on
    /// CPUs that are not affected (`ARCH_CAPABILITIES.RDCL_NO`). Xen: `pv_l1tf_check_lNe`.
    pub l1tf_mitigation: bool,
}

impl Config {
    /// Reserved address bits of a present entry.
    const fn reserved_addr_bits(&self) -> u64 {
        pte::ADDR & !self.addr_mask()
    }

    /// The address bits the CPU uses.
    const fn addr_mask(&self) -> u64 {
        let bits = if self.phys_addr_bits > 52 {
            52
        } else {
            self.phys_addr_bits
        };
        pte::ADDR & ((1u64 << bits) - 1)
    }
}

/// What a successful [`FrameTable::update_entry`] did, for the caller's flushes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct UpdateEffect {
    /// The old entry was present and the new one removes it, points elsewhere, or takes a
    /// right away (RW, U/S, execute): the old translation may still be cached. Flushing it is
    /// the guest's request to make (`UVMF_*`, `MMUEXT_*`), not a safety matter.
    pub stale_translation: bool,
    /// The L4 table whose entry changed. Its guest-root copies were already refreshed
    /// through [`PageMemory::sync_guest_roots`], before the old entry's references went.
    pub l4_changed: Option<Mfn>,
    /// The frame was no page table and was written as plain memory.
    pub plain_write: bool,
}

/// What [`FrameTable::release_domain`] did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Released {
    /// Frames the domain owned, now free with every count zero, in MFN order. The caller
    /// flushes the TLBs of the pCPUs that ran the domain before reusing them.
    pub freed: Vec<Mfn>,
    /// Frames still referenced by hypervisor code ([`FrameTable::get_page`],
    /// [`FrameTable::get_page_type`]) or by a table they keep alive, left with the domain.
    /// Drop those references and release again.
    pub still_referenced: Vec<Mfn>,
}

/// One frame's record ([`FrameInfo`]) in four words, each read and written atomically:
/// the owner, type and flags in the first, the counts in pairs in the others. A pCPU that
/// checks whether a frame is a domain's reads one word, whoever is changing the frame's counts
/// at the same moment.
#[derive(Debug, Default)]
struct Slot([AtomicU64; 4]);

const OWNER_FREE: u64 = 0;
const OWNER_HYPERVISOR: u64 = 1;
const OWNER_DOMAIN: u64 = 2;

/// Word 0's owner bits (kind and domain), and its `validated` bit.
const W0_OWNER_MASK: u64 = 0xFFFF_0003;
const W0_VALIDATED: u64 = 1 << 41;
/// One general reference in word 1 (`ref_count` is its high half, `type_count` its low).
const REF_ONE: u64 = 1 << 32;

const fn lo(x: u64) -> u32 {
    x as u32
}

const fn hi(x: u64) -> u32 {
    (x >> 32) as u32
}

impl Slot {
    /// Word 0's owner bits for `owner`.
    const fn owner_bits(owner: Owner) -> u64 {
        match owner {
            Owner::Free => OWNER_FREE,
            Owner::Hypervisor => OWNER_HYPERVISOR,
            Owner::Domain(d) => OWNER_DOMAIN | (d as u64) << 16,
        }
    }

    fn encode(f: &FrameInfo) -> [u64; 4] {
        let owner = Self::owner_bits(f.owner);
        let pair = |lo: u32, hi: u32| u64::from(lo) | u64::from(hi) << 32;
        [
            owner
                | (f.ty as u64) << 32
                | u64::from(f.pinned) << 40
                | if f.validated { W0_VALIDATED } else { 0 }
                | (f.offline as u64) << 42,
            pair(f.type_count, f.ref_count),
            pair(f.base_refs, f.ext_refs),
            pair(f.ext_type_refs, f.hv_writes),
        ]
    }

    fn decode_owner(w0: u64) -> Owner {
        match w0 & 3 {
            OWNER_FREE => Owner::Free,
            OWNER_DOMAIN => Owner::Domain((w0 >> 16) as u16),
            _ => Owner::Hypervisor,
        }
    }

    fn decode_type(w0: u64) -> PageType {
        PageType::ALL
            .get(((w0 >> 32) & 0xFF) as usize)
            .copied()
            .unwrap_or(PageType::None)
    }

    fn decode(w: [u64; 4]) -> FrameInfo {
        let ty = Self::decode_type(w[0]);
        let offline = match (w[0] >> 42) & 3 {
            1 => Offline::Pending,
            2 => Offline::Offlined,
            _ => Offline::Online,
        };
        FrameInfo {
            owner: Self::decode_owner(w[0]),
            ty,
            type_count: lo(w[1]),
            ref_count: hi(w[1]),
            pinned: w[0] & 1 << 40 != 0,
            validated: w[0] & 1 << 41 != 0,
            base_refs: lo(w[2]),
            ext_refs: hi(w[2]),
            ext_type_refs: lo(w[3]),
            hv_writes: hi(w[3]),
            offline,
        }
    }

    fn new(f: &FrameInfo) -> Slot {
        Slot(Self::encode(f).map(AtomicU64::new))
    }

    fn words(&self) -> [u64; 4] {
        core::array::from_fn(|i| self.0[i].load(Ordering::Acquire))
    }

    fn load(&self) -> FrameInfo {
        Self::decode(self.words())
    }

    fn owner(&self) -> Owner {
        Self::decode_owner(self.0[0].load(Ordering::Acquire))
    }

    /// Writes the words of `f` that differ from `old` (the words as loaded); says whether
    /// word 0 (owner, type, validation, pinning, offlining) changed.
    fn store(&self, old: &[u64; 4], f: &FrameInfo) -> bool {
        let new = Self::encode(f);
        for i in 0..4 {
            if old[i] != new[i] {
                self.0[i].store(new[i], Ordering::Release);
            }
        }
        old[0] != new[0]
    }
}

/// The frame table.
///
/// # Concurrency: per-frame atomic words, one writer per frame
///
/// Every method takes `&self`: each frame's record is its own four atomic words, and
/// there is no lock around the table. What keeps two pCPUs from changing one frame at once
/// is a rule the caller keeps: **a frame's record changes only on behalf of its owner, with
/// the owner's lock held** (in the hypervisor, the domain's lock, or the world exclusive),
/// or, for a frame no domain owns, by the one pCPU that took it from the frame allocator.
/// The rule holds because every reference a frame carries is its owner's: a domain's page
/// tables, pins and base pointers refer only to its own frames ([`FrameTable::get_page`]
/// and the entry checks refuse any other), and the hypervisor's references are taken in
/// the owner's name (a grant map holds both domains' locks). Operations on different
/// domains' frames therefore run at the same time on different pCPUs; a reader that is not
/// the owner looks only at the owner word (is this frame mine?), which is never torn.
///
/// Xen updates `count_info` and `type_info` with `cmpxchg` because two vCPUs of one domain
/// may run `mmu_update` at once; in Xenia they serialise on their domain's lock, so a
/// frame's words have a single writer at a time and plain atomic stores suffice (a
/// departure written down in `docs/architecture.md`).
pub struct FrameTable {
    frames: Vec<Slot>,
    config: Config,
    /// The largest count a frame may reach; `u32::MAX` except in tests of the overflow checks.
    count_limit: u32,
    /// Puts that found a count at zero. Never expected; reported by
    /// [`FrameTable::check_consistency`] rather than panicking.
    underflows: AtomicU64,
    /// Bumped whenever a change of a frame's record could change a cached answer
    /// ([`FrameTable::use_changed`]: owner, a frame that stops being plain memory, an L4),
    /// and around every write of a page-table entry the table makes (for updates of
    /// validated tables only when a walk's answer may change, [`translation_changed`]),
    /// with the changed frame's stamp (`stamps`): a translation of a guest
    /// address found at one value stays true while it has that value (the hypervisor's
    /// translation cache, `guest::mem`). The reference counts alone never bump it.
    generation: AtomicU64,
    /// The part of [`FrameTable::generation`] that copies of L4 tables depend on (the
    /// pCPUs' guest roots, `entry::load_guest_root`): bumped by every entry write that is
    /// not an update of an L1 to L3 table, and by a change of owner or offlining of a frame
    /// or one to, from or of an L4. Never bumped without `generation`.
    root_generation: AtomicU64,
    /// Per frame, the generation of its last change that [`FrameTable::generation`] moved
    /// for: an entry written in it, or a change of its use ([`FrameTable::use_changed`]);
    /// [`STAMP_CHANGING`] while such a change is under way. A walk's answer depends only on
    /// the frames it went through (`walk::Path`), so an answer found at generation `g` still
    /// holds while none of those frames has a stamp above `g`
    /// ([`FrameTable::unchanged_since`]): a `fork` that write-protects a process's pages
    /// moves the generation and yet keeps the translations of the kernel's stack and
    /// hypercall arguments (issue 18, session 18).
    stamps: Vec<AtomicU64>,
}

/// A frame's stamp while a change that moves the generation is made to it: above every
/// generation, so that no cached answer through the frame is taken meanwhile.
pub const STAMP_CHANGING: u64 = u64::MAX;

impl Clone for FrameTable {
    // alloc-block: tests and the fuzzer compare whole tables.
    fn clone(&self) -> FrameTable {
        FrameTable {
            frames: self.frames.iter().map(|s| Slot::new(&s.load())).collect(),
            config: self.config,
            count_limit: self.count_limit,
            underflows: AtomicU64::new(self.underflows.load(Ordering::Relaxed)),
            generation: AtomicU64::new(self.generation.load(Ordering::Relaxed)),
            root_generation: AtomicU64::new(self.root_generation.load(Ordering::Relaxed)),
            stamps: self
                .stamps
                .iter()
                .map(|s| AtomicU64::new(s.load(Ordering::Relaxed)))
                .collect(),
        }
    }
    // end alloc-block
}

impl PartialEq for FrameTable {
    fn eq(&self, other: &FrameTable) -> bool {
        self.config == other.config
            && self.count_limit == other.count_limit
            && self.underflows.load(Ordering::Relaxed) == other.underflows.load(Ordering::Relaxed)
            && self.frames.len() == other.frames.len()
            && self
                .frames
                .iter()
                .zip(&other.frames)
                .all(|(a, b)| a.load() == b.load())
    }
}

impl Eq for FrameTable {}

impl core::fmt::Debug for FrameTable {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("FrameTable")
            .field("frames", &self.frames.len())
            .field("config", &self.config)
            .field("underflows", &self.underflows.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl FrameTable {
    // alloc-block: built once at boot.
    /// A table for frames `0..frames`, all the hypervisor's. The frame allocator's frames are
    /// then handed over with [`FrameTable::set_free`].
    pub fn new(frames: u64, config: Config) -> FrameTable {
        // x86-64 only: usize has 64 bits, so the conversion is exact.
        let frames = usize::try_from(frames).unwrap_or(usize::MAX);
        let hypervisor = FrameInfo::new(Owner::Hypervisor);
        FrameTable {
            frames: (0..frames).map(|_| Slot::new(&hypervisor)).collect(),
            config,
            count_limit: u32::MAX,
            underflows: AtomicU64::new(0),
            generation: AtomicU64::new(0),
            root_generation: AtomicU64::new(0),
            stamps: (0..frames).map(|_| AtomicU64::new(0)).collect(),
        }
    }

    // end alloc-block
    /// Number of frames in the table.
    pub fn len(&self) -> u64 {
        self.frames.len() as u64
    }

    pub fn is_empty(&self) -> bool {
        self.frames.is_empty()
    }

    pub fn config(&self) -> Config {
        self.config
    }

    #[inline]
    fn slot(&self, mfn: Mfn) -> Option<usize> {
        usize::try_from(mfn.0)
            .ok()
            .filter(|&i| i < self.frames.len())
    }

    fn frame(&self, mfn: Mfn) -> Option<FrameInfo> {
        self.frames.get(self.slot(mfn)?).map(Slot::load)
    }

    /// Frame `i`'s record (`i` below the table's length).
    fn at(&self, i: usize) -> FrameInfo {
        self.frames[i].load()
    }

    /// Every frame's record, in MFN order.
    fn records(&self) -> impl Iterator<Item = FrameInfo> + '_ {
        self.frames.iter().map(Slot::load)
    }

    /// Changes `mfn`'s record with `change` (whatever it returns, the words it changed are
    /// written); `None` outside the table. The caller keeps the one-writer rule (type docs).
    fn edit<R>(&self, mfn: Mfn, change: impl FnOnce(&mut FrameInfo) -> R) -> Option<R> {
        let slot = self.frames.get(self.slot(mfn)?)?;
        let old = slot.words();
        let before = Slot::decode(old);
        let mut f = before;
        let r = change(&mut f);
        if Self::use_changed(&before, &f) {
            self.begin_change(mfn);
            slot.store(&old, &f);
            let roots = before.owner != f.owner
                || before.offline != f.offline
                || before.ty == PageType::L4
                || f.ty == PageType::L4;
            self.end_change(mfn, roots);
        } else {
            slot.store(&old, &f);
        }
        Some(r)
    }

    /// Marks `mfn` as being changed ([`STAMP_CHANGING`]), before a change that moves the
    /// generation is made to it (an entry written, a change of use). The one writer of the
    /// frame (type docs) makes the change, then [`FrameTable::end_change`].
    #[inline]
    fn begin_change(&self, mfn: Mfn) {
        if let Some(i) = self.slot(mfn) {
            self.stamps[i].store(STAMP_CHANGING, Ordering::SeqCst);
        }
    }

    /// The change to `mfn` begun with [`FrameTable::begin_change`] is made: the generation
    /// moves (and the roots' with it when `roots`), and the frame's stamp becomes the new
    /// generation. A reader that loaded the generation before this and then finds the stamp
    /// still old read the frame before the change began (the stamp was set to
    /// [`STAMP_CHANGING`] first); one that finds `STAMP_CHANGING` or the new stamp takes no
    /// kept answer through the frame.
    #[inline]
    fn end_change(&self, mfn: Mfn, roots: bool) {
        if roots {
            self.root_generation.fetch_add(1, Ordering::SeqCst);
        }
        let now = self.generation.fetch_add(1, Ordering::SeqCst) + 1;
        if let Some(i) = self.slot(mfn) {
            self.stamps[i].store(now, Ordering::SeqCst);
        }
    }

    /// Whether no frame of `frames` changed (an entry written, a change of use: what moves
    /// the generation) after generation `since`, and none is being changed. The caller
    /// loaded the generation it will keep an answer at before calling. Frames outside the
    /// table never are a walk's.
    #[inline]
    pub fn unchanged_since(&self, since: u64, frames: &[Mfn]) -> bool {
        frames.iter().all(|&m| {
            self.slot(m)
                .is_some_and(|i| self.stamps[i].load(Ordering::SeqCst) <= since)
        })
    }

    /// Writes entry `index` of table `table` through `mem`, with the table's stamp and the
    /// generations moved (every write of an entry outside an update: validation's forced
    /// U/S, grant mappings, plain writes of data frames).
    fn write_entry_noted<M: PageMemory>(&self, mem: &mut M, table: Mfn, index: usize, value: u64) {
        self.begin_change(table);
        mem.write_entry(table, index, value);
        self.end_change(table, true);
    }

    /// Whether a change of a frame's record from `before` to `after` can change what a cached
    /// answer relies on (the generation's rule), which is only:
    /// - who owns the frame, and whether it is offlined;
    /// - that a frame kept as the place of a write (`guest::fast`'s memo) is still plain
    ///   memory (`None` or `Writable`): a frame that stops being plain memory;
    /// - the contents of an L4, which the pCPUs copy (`entry::load_guest_root`) and from
    ///   which the translation cache's walks start: any change to, from or of an L4.
    ///
    /// What a walk found through L1 to L3 tables changes only by entry writes
    /// ([`translation_changed`]): a table on a cached walk's path is referenced by the
    /// present entry above it, so it cannot lose its type before that entry goes, which
    /// moves the generation. So a data page's type count going from zero to one and back
    /// (every fresh page a guest maps), and the pinning, validation and unpinning of L1 to
    /// L3 tables (every `fork` and `exit` of a Linux process), keep the caches.
    fn use_changed(before: &FrameInfo, after: &FrameInfo) -> bool {
        let plain = |f: &FrameInfo| {
            matches!(f.current_type(), PageType::None | PageType::Writable) && !f.pinned
        };
        let l4 = before.ty == PageType::L4 || after.ty == PageType::L4;
        before.owner != after.owner
            || before.offline != after.offline
            || (plain(before) && !plain(after))
            || (l4
                && (Slot::encode(before)[0] != Slot::encode(after)[0]
                    || before.current_type() != after.current_type()))
    }

    /// The table's generation (see the field): it changes whenever a translation through
    /// page tables may have changed.
    #[inline]
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::SeqCst)
    }

    /// The generation copies of L4 tables are kept at (see the field).
    #[inline]
    pub fn root_generation(&self) -> u64 {
        self.root_generation.load(Ordering::SeqCst)
    }

    /// Where [`FrameTable::generation`] and [`FrameTable::root_generation`] are kept, for
    /// code that reads them without a call (the hypervisor's entry stub for Xen PV system
    /// calls). Reading them there is what the two methods do.
    pub fn generation_cells(&self) -> (&AtomicU64, &AtomicU64) {
        (&self.generation, &self.root_generation)
    }

    fn underflow(&self) {
        self.underflows.fetch_add(1, Ordering::Relaxed);
    }

    /// Who owns `mfn`. Frames outside the table (device memory, holes) answer
    /// [`Owner::Hypervisor`]: they are never a domain's.
    pub fn owner(&self, mfn: Mfn) -> Owner {
        self.slot(mfn)
            .map_or(Owner::Hypervisor, |i| self.frames[i].owner())
    }

    /// Whether `mfn` belongs to domain `dom`: word 0's owner bits against `dom`'s, one load
    /// (every level of every walk of a guest's tables asks, five times a walk).
    #[inline]
    pub fn owned_by(&self, mfn: Mfn, dom: DomId) -> bool {
        self.slot(mfn).is_some_and(|i| {
            self.frames[i].0[0].load(Ordering::Acquire) & W0_OWNER_MASK
                == Slot::owner_bits(Owner::Domain(dom))
        })
    }

    /// `mfn`'s current use ([`FrameInfo::current_type`]), if it is in the table: two loads,
    /// not the whole record (every guest write the hypervisor makes asks).
    #[inline]
    pub fn current_type(&self, mfn: Mfn) -> Option<PageType> {
        let [w0, w1] = &self.frames.get(self.slot(mfn)?)?.0[..2] else {
            unreachable!("a record has four words")
        };
        Some(if lo(w1.load(Ordering::Acquire)) > 0 {
            Slot::decode_type(w0.load(Ordering::Acquire))
        } else {
            PageType::None
        })
    }

    /// Everything known about `mfn`, if it is in the table.
    pub fn info(&self, mfn: Mfn) -> Option<FrameInfo> {
        self.frame(mfn)
    }

    /// Hands a hypervisor frame to the frame allocator (boot, or the hypervisor freeing its
    /// own memory).
    pub fn set_free(&self, mfn: Mfn) -> Result<(), Errno> {
        self.edit(mfn, |f| {
            if f.owner != Owner::Hypervisor {
                return Err(Errno::EINVAL);
            }
            *f = FrameInfo::with_offline(Owner::Free, f.offline);
            Ok(())
        })
        .unwrap_or(Err(Errno::EINVAL))
    }

    /// Takes a free frame for the hypervisor's own use.
    pub fn set_hypervisor(&self, mfn: Mfn) -> Result<(), Errno> {
        self.edit(mfn, |f| {
            if f.owner != Owner::Free {
                return Err(Errno::EBUSY);
            }
            *f = FrameInfo::with_offline(Owner::Hypervisor, f.offline);
            Ok(())
        })
        .unwrap_or(Err(Errno::EINVAL))
    }

    /// Gives free frame `mfn` to domain `dom` (a real domain ID, not one of the reserved
    /// `DOMID_*`), untyped and unreferenced.
    pub fn assign(&self, mfn: Mfn, dom: DomId) -> Result<(), Errno> {
        if dom >= DOMID_FIRST_RESERVED {
            return Err(Errno::EINVAL);
        }
        self.edit(mfn, |f| {
            // An offlined frame is never a domain's again (the allocator withholds it: this
            // is the second line).
            if f.owner != Owner::Free || f.offline != Offline::Online {
                return Err(Errno::EBUSY);
            }
            *f = FrameInfo::new(Owner::Domain(dom));
            Ok(())
        })
        .unwrap_or(Err(Errno::EINVAL))
    }

    /// Gives frame `mfn`, which the hypervisor holds (just taken from the frame allocator),
    /// to domain `dom`, untyped and unreferenced: [`FrameTable::set_free`] then
    /// [`FrameTable::assign`] in one change of the record (every populated frame takes
    /// this). `EBUSY` for an offline frame, `EINVAL` for one the hypervisor does not hold;
    /// nothing changes then.
    pub fn give_from_hypervisor(&self, mfn: Mfn, dom: DomId) -> Result<(), Errno> {
        if dom >= DOMID_FIRST_RESERVED {
            return Err(Errno::EINVAL);
        }
        self.edit(mfn, |f| {
            if f.owner != Owner::Hypervisor {
                return Err(Errno::EINVAL);
            }
            if f.offline != Offline::Online {
                return Err(Errno::EBUSY);
            }
            *f = FrameInfo::new(Owner::Domain(dom));
            Ok(())
        })
        .unwrap_or(Err(Errno::EINVAL))
    }

    /// Takes frame `mfn` back from domain `dom` (`XENMEM_decrease_reservation`). Refused
    /// with `EBUSY` while anything refers to it. The caller flushes before reusing it.
    pub fn unassign(&self, mfn: Mfn, dom: DomId) -> Result<(), Errno> {
        self.edit(mfn, |f| {
            if f.owner != Owner::Domain(dom) {
                return Err(Errno::EINVAL);
            }
            if !f.unreferenced() {
                return Err(Errno::EBUSY);
            }
            *f = FrameInfo::with_offline(Owner::Free, Self::freed_state(f.offline));
            Ok(())
        })
        .unwrap_or(Err(Errno::EINVAL))
    }

    /// The offlining state of a frame its domain just freed: a pending offline completes.
    const fn freed_state(offline: Offline) -> Offline {
        match offline {
            Offline::Online => Offline::Online,
            Offline::Pending | Offline::Offlined => Offline::Offlined,
        }
    }

    /// Offlining state of `mfn`, if it is in the table.
    pub fn offline_state(&self, mfn: Mfn) -> Option<Offline> {
        self.frame(mfn).map(|f| f.offline)
    }

    /// `XEN_SYSCTL_page_offline_op`'s `sysctl_page_offline` for one frame: Xen's status word
    /// (`PG_OFFLINE_*`), or the error and the status word of a refusal. `free` says whether
    /// the frame allocator holds the frame (the table does not know which hypervisor frames
    /// are free, see [`Offline`]); a [`Owner::Free`] frame is free whatever it says.
    ///
    /// - free: `Offlined` at once, `PG_OFFLINE_OFFLINED`;
    /// - a domain's, nothing of the hypervisor's holding it: `Pending`,
    ///   `PG_OFFLINE_PENDING | PG_OFFLINE_OWNED | owner`;
    /// - the hypervisor's in use, or a domain's frame the hypervisor holds to write into it
    ///   (`shared_info`, grant frames): refused, `EPERM`,
    ///   `PG_OFFLINE_FAILED | PG_OFFLINE_XENPAGE | DOMID_XEN`;
    /// - outside the table: `EINVAL`, no status.
    ///
    /// Already offlined or pending: the same answer again, nothing changes.
    pub fn offline(&self, mfn: Mfn, free: bool) -> Result<u32, (Errno, u32)> {
        let xen_page = sc::PG_OFFLINE_FAILED
            | sc::PG_OFFLINE_XENPAGE
            | u32::from(DOMID_XEN) << sc::PG_OFFLINE_OWNER_SHIFT;
        let pending = |d: DomId| {
            sc::PG_OFFLINE_PENDING
                | sc::PG_OFFLINE_OWNED
                | u32::from(d) << sc::PG_OFFLINE_OWNER_SHIFT
        };
        self.edit(mfn, |f| match (f.offline, f.owner) {
            (Offline::Offlined, _) => Ok(sc::PG_OFFLINE_OFFLINED),
            (Offline::Pending, Owner::Domain(d)) => Ok(pending(d)),
            (_, Owner::Domain(_)) if f.hv_writes > 0 => Err((Errno::EPERM, xen_page)),
            (_, Owner::Domain(d)) => {
                f.offline = Offline::Pending;
                Ok(pending(d))
            }
            (_, Owner::Free) => {
                f.offline = Offline::Offlined;
                Ok(sc::PG_OFFLINE_OFFLINED)
            }
            (_, Owner::Hypervisor) if free => {
                f.offline = Offline::Offlined;
                Ok(sc::PG_OFFLINE_OFFLINED)
            }
            (_, Owner::Hypervisor) => Err((Errno::EPERM, xen_page)),
        })
        .unwrap_or(Err((Errno::EINVAL, 0)))
    }

    /// `sysctl_page_online` for one frame: an offlined frame is online again (the caller
    /// gives it back to the allocator), a pending offline is cancelled; both answer
    /// `PG_ONLINE_ONLINED`. A frame online answers 0. `EINVAL` outside the table.
    pub fn online(&self, mfn: Mfn) -> Result<u32, Errno> {
        self.edit(mfn, |f| match f.offline {
            Offline::Online => 0,
            Offline::Pending | Offline::Offlined => {
                f.offline = Offline::Online;
                sc::PG_ONLINE_ONLINED
            }
        })
        .ok_or(Errno::EINVAL)
    }

    /// `sysctl_query_page_offline` for one frame: `PG_OFFLINE_STATUS_OFFLINED`,
    /// `PG_OFFLINE_STATUS_OFFLINE_PENDING` or 0. `EINVAL` outside the table.
    pub fn query_offline(&self, mfn: Mfn) -> Result<u32, Errno> {
        Ok(match self.frame(mfn).ok_or(Errno::EINVAL)?.offline {
            Offline::Online => 0,
            Offline::Pending => sc::PG_OFFLINE_STATUS_OFFLINE_PENDING,
            Offline::Offlined => sc::PG_OFFLINE_STATUS_OFFLINED,
        })
    }

    /// Frames offlined and frames pending, in that order.
    pub fn offline_counts(&self) -> (u64, u64) {
        self.records()
            .fold((0, 0), |(off, pend), f| match f.offline {
                Offline::Online => (off, pend),
                Offline::Pending => (off, pend + 1),
                Offline::Offlined => (off + 1, pend),
            })
    }

    // ---- Counting primitives. Callers above them keep ref_count >= type_count. ----

    /// A general reference on a frame `dom` owns. `EINVAL` otherwise, as Xen's `get_page`
    /// fails and its callers (`get_page_from_mfn`) answer.
    ///
    /// The counting primitives work on the record's words, not the decoded record: they run
    /// for every entry of every page-table update (a 512-entry `mmu_update` makes thousands
    /// of them), and a decode and encode of all four words cost more than the change.
    fn ref_get(&self, mfn: Mfn, dom: DomId) -> Result<(), Errno> {
        let slot = self.slot(mfn).ok_or(Errno::EINVAL)?;
        let [w0, w1] = &self.frames[slot].0[..2] else {
            unreachable!("a record has four words")
        };
        let counts = w1.load(Ordering::Acquire);
        if w0.load(Ordering::Acquire) & W0_OWNER_MASK != Slot::owner_bits(Owner::Domain(dom))
            || hi(counts) >= self.count_limit
        {
            return Err(Errno::EINVAL);
        }
        w1.store(counts + REF_ONE, Ordering::Release);
        Ok(())
    }

    fn ref_put(&self, mfn: Mfn) {
        let Some(slot) = self.slot(mfn) else {
            return self.underflow();
        };
        let w1 = &self.frames[slot].0[1];
        let counts = w1.load(Ordering::Acquire);
        if hi(counts) == 0 {
            return self.underflow();
        }
        w1.store(counts - REF_ONE, Ordering::Release);
    }

    /// A type reference of type `ty` on `mfn`, whose owner the caller checked (it holds a
    /// general reference). Xen's `_get_page_type`.
    #[inline]
    fn type_get<M: PageMemory>(&self, mem: &mut M, mfn: Mfn, ty: PageType) -> Result<(), Errno> {
        let limit = self.count_limit;
        // Already in use as `ty` (the common case: a writable mapping of a data page that
        // has others): one more type reference, on the words.
        if let Some(slot) = self.slot(mfn) {
            let [w0, w1] = &self.frames[slot].0[..2] else {
                unreachable!("a record has four words")
            };
            let counts = w1.load(Ordering::Acquire);
            if lo(counts) > 0 {
                let head = w0.load(Ordering::Acquire);
                if (head >> 32) & 0xFF != ty as u64
                    || head & W0_VALIDATED == 0
                    || lo(counts) >= limit
                {
                    return Err(Errno::EINVAL);
                }
                w1.store(counts + 1, Ordering::Release);
                return Ok(());
            }
        }
        self.type_get_first(mem, mfn, ty)
    }

    /// [`FrameTable::type_get`] when the frame is not in use as anything (or outside the
    /// table): out of line, so that the common case above is inlined into its callers
    /// without this one's register saves (issue 18, session 18).
    #[inline(never)]
    fn type_get_first<M: PageMemory>(
        &self,
        mem: &mut M,
        mfn: Mfn,
        ty: PageType,
    ) -> Result<(), Errno> {
        let limit = self.count_limit;
        // The use the frame had, if it takes a new one.
        let step = self
            .edit(mfn, |f| {
                if f.type_count > 0 {
                    // In use: only the same use may share it. A frame still being validated
                    // cannot be asked for its own type (validation asks only for lower ones);
                    // refuse anyway.
                    if f.ty != ty || !f.validated || f.type_count >= limit {
                        return Err(Errno::EINVAL);
                    }
                    f.type_count += 1;
                    return Ok(None);
                }
                let previous = f.ty;
                // The new type is set before validation, so that an entry pointing back at
                // this frame sees it and fails the type check.
                f.ty = ty;
                f.type_count = 1;
                f.validated = false;
                Ok(Some(previous))
            })
            .unwrap_or(Err(Errno::EINVAL))?;
        let Some(previous) = step else {
            return Ok(());
        };
        if previous != ty && previous != PageType::None {
            mem.flush_tlbs();
        }
        if ty.is_page_table()
            && let Err(e) = self.validate(mem, mfn, ty)
        {
            // Untyped again, remembering the old use so that its next change of use still
            // flushes.
            self.edit(mfn, |f| {
                f.ty = previous;
                f.type_count = 0;
            });
            return Err(e);
        }
        self.edit(mfn, |f| f.validated = true);
        Ok(())
    }

    /// Drops a type reference; at zero a page table is devalidated. Xen's `_put_page_type`
    /// and `devalidate_page`.
    #[inline]
    fn type_put<M: PageMemory>(&self, mem: &mut M, mfn: Mfn) {
        // Others keep the type: one fewer, on the words.
        if let Some(slot) = self.slot(mfn) {
            let w1 = &self.frames[slot].0[1];
            let counts = w1.load(Ordering::Acquire);
            if lo(counts) > 1 {
                w1.store(counts - 1, Ordering::Release);
                return;
            }
        }
        self.type_put_last(mem, mfn);
    }

    /// [`FrameTable::type_put`] of the last type reference (or of a frame outside the
    /// table): out of line, as [`FrameTable::type_get_first`].
    #[inline(never)]
    fn type_put_last<M: PageMemory>(&self, mem: &mut M, mfn: Mfn) {
        // The use that ended, if the count fell to zero.
        let put = self.edit(mfn, |f| {
            f.type_count = f.type_count.checked_sub(1)?;
            let ended = (f.type_count == 0 && f.validated).then_some(f.ty);
            if f.type_count == 0 {
                f.validated = false;
            }
            Some(ended)
        });
        match put.flatten() {
            None => self.underflow(),
            Some(Some(ty)) if ty.is_page_table() => self.devalidate(mem, mfn, ty),
            Some(_) => {}
        }
    }

    // ---- Entries. ----

    /// Checks entry `e` of a table of type `level`: `Ok(Some(target))` for a present entry
    /// whose bits are allowed, `Ok(None)` for a harmless not-present one. Xen's flag checks
    /// in `get_page_from_lNe` and `mod_lN_entry`.
    fn check_entry(&self, level: PageType, e: u64) -> Result<Option<Mfn>, Errno> {
        if e & pte::PRESENT == 0 {
            // The hardware ignores every other bit (SDM Vol. 3A §4.5), but a speculative walk
            // still uses the address: it must not name RAM (L1TF).
            let addr = e & self.config.addr_mask();
            if self.config.l1tf_mitigation && addr != 0 && (addr >> 12) < self.len() {
                return Err(Errno::EINVAL);
            }
            return Ok(None);
        }
        let target = Mfn((e & pte::ADDR) >> 12);
        let mut disallowed = if level == PageType::L1 && self.is_io_frame(target) {
            // I/O memory may be mapped uncached (Xen lifts `PAGE_CACHE_ATTRS` for domains
            // with I/O memory); the PAT bit stays refused, as do PCD/PWT on RAM.
            L1_DISALLOW & !(pte::PWT | pte::PCD)
        } else if level == PageType::L1 {
            L1_DISALLOW
        } else {
            UPPER_DISALLOW
        } | self.config.reserved_addr_bits();
        if !self.config.nx {
            disallowed |= pte::NX;
        }
        if e & disallowed != 0 {
            return Err(Errno::EINVAL);
        }
        Ok(Some(target))
    }

    /// Whether `mfn` is I/O memory as far as the table is concerned: a frame it does not
    /// describe (above the highest RAM frame). Such a frame is never reference-counted and
    /// never typed: an L1 entry mapping it holds no reference, and only an L1 entry may
    /// point at it (an upper-level entry needs a page table the domain owns). Xen's
    /// `!mfn_valid(mfn)` case of `get_page_from_l1e`.
    pub fn is_io_frame(&self, mfn: Mfn) -> bool {
        self.slot(mfn).is_none()
    }

    /// Takes the references entry `e` of a table of type `level` owned by `dom` needs.
    /// Xen's `get_page_from_l1e` to `get_page_from_l4e`.
    fn get_entry_refs<M: PageMemory>(
        &self,
        mem: &mut M,
        level: PageType,
        e: u64,
        dom: DomId,
    ) -> Result<(), Errno> {
        let Some(target) = self.check_entry(level, e)? else {
            return Ok(());
        };
        if level == PageType::L1 {
            if self.is_io_frame(target) {
                // I/O memory: no reference, no type; only where the hypervisor allows it.
                return if mem.io_frame_allowed(target, dom) {
                    Ok(())
                } else {
                    Err(Errno::EPERM)
                };
            }
            self.ref_get(target, dom).map_err(|_| Errno::EBUSY)?;
            if e & pte::RW != 0 && self.type_get(mem, target, PageType::Writable).is_err() {
                self.ref_put(target);
                return Err(Errno::EBUSY);
            }
            return Ok(());
        }
        let child = level.child().ok_or(Errno::EINVAL)?;
        self.ref_get(target, dom)?;
        if let Err(err) = self.type_get(mem, target, child) {
            self.ref_put(target);
            return Err(err);
        }
        Ok(())
    }

    /// Drops the references a validated entry `e` of a `level` table holds. Xen's
    /// `put_page_from_l1e` to `put_page_from_l4e`.
    fn put_entry_refs<M: PageMemory>(&self, mem: &mut M, level: PageType, e: u64) {
        if e & pte::PRESENT == 0 || is_grant_pte(level, e) {
            return;
        }
        let target = Mfn((e & pte::ADDR) >> 12);
        if level == PageType::L1 && self.is_io_frame(target) {
            // An I/O mapping took nothing (`get_entry_refs`).
            return;
        }
        if level != PageType::L1 || e & pte::RW != 0 {
            self.type_put(mem, target);
        }
        self.ref_put(target);
    }

    /// Whether slot `index` of an L4 belongs to the hypervisor (Xen's `is_guest_l4_slot`,
    /// negated).
    fn reserved_slot(level: PageType, index: usize) -> bool {
        level == PageType::L4 && is_hypervisor_l4_slot(index)
    }

    /// Checks every entry of `table`, newly typed `level`, and takes their references; on
    /// failure drops those taken so far. Xen's `promote_l1_table` to `promote_l4_table`.
    fn validate<M: PageMemory>(
        &self,
        mem: &mut M,
        table: Mfn,
        level: PageType,
    ) -> Result<(), Errno> {
        let Owner::Domain(dom) = self.owner(table) else {
            return Err(Errno::EINVAL);
        };
        mem.poll();
        let forced = mem.forced_user(dom);
        // Only the entries that are not zero: an empty entry takes no reference and is
        // allowed in every slot (most of a new table), and the scan skips them in one string
        // step each rather than a call each. Each entry is read once, and that value is the
        // one checked, referenced and (U/S forced) written back.
        let mut found = [(0usize, 0u64); SCAN_BATCH];
        let mut from = 0;
        while from < ENTRIES {
            let (n, next) = mem.nonzero_entries(table, from, &mut found);
            from = next;
            for &(i, e) in &found[..n] {
                let result = if Self::reserved_slot(level, i) {
                    Err(Errno::EINVAL)
                } else {
                    self.get_entry_refs(mem, level, e, dom)
                };
                if result.is_ok() && e & pte::PRESENT != 0 && e & pte::USER == 0 && forced {
                    // Xen's `adjust_guest_lNe`: written back in the table, as Xen does.
                    self.write_entry_noted(mem, table, i, e | pte::USER);
                }
                if let Err(err) = result {
                    // The frame is typed, so nothing but the hardware's accessed and dirty
                    // bits can have changed in the entries read so far.
                    for j in (0..i).rev() {
                        if !Self::reserved_slot(level, j) {
                            let e = mem.read_entry(table, j);
                            self.put_entry_refs(mem, level, e);
                        }
                    }
                    return Err(err);
                }
            }
        }
        Ok(())
    }

    /// Drops the references every entry of `table` holds. Xen's `demote_l1_table` to
    /// `demote_l4_table`.
    fn devalidate<M: PageMemory>(&self, mem: &mut M, table: Mfn, level: PageType) {
        mem.poll();
        let mut found = [(0usize, 0u64); SCAN_BATCH];
        let mut from = 0;
        while from < ENTRIES {
            let (n, next) = mem.nonzero_entries(table, from, &mut found);
            from = next;
            for &(i, e) in &found[..n] {
                if !Self::reserved_slot(level, i) {
                    self.put_entry_refs(mem, level, e);
                }
            }
        }
    }

    // ---- References held by hypervisor code. ----

    /// Takes a general reference on `mfn` for hypervisor code, if `dom` owns it (Xen's
    /// `get_page`; `EINVAL` as its callers answer).
    pub fn get_page(&self, mfn: Mfn, dom: DomId) -> Result<(), Errno> {
        self.ref_get(mfn, dom)?;
        self.edit(mfn, |f| {
            // Below ref_count, which ref_get just kept below the limit: cannot saturate.
            f.ext_refs = f.ext_refs.saturating_add(1);
        });
        Ok(())
    }

    /// Whether hypervisor code that holds `dom`'s lock may read `mfn`, or write it if
    /// `writable`, until it lets go of that lock, without taking references (a grant copy
    /// that holds both domains for the whole operation). The one-writer rule (type docs)
    /// makes this sound: nothing changes the record of a frame `dom` owns while `dom`'s lock
    /// is held, so the frame can neither be freed nor change use meanwhile. `EINVAL` if `dom`
    /// does not own `mfn` (as [`FrameTable::get_page`]); `Ok(false)` if a write needs the
    /// frame to take the `Writable` type first (unused, but last typed as something else:
    /// only [`FrameTable::get_page_type`] may retype it, flushing the TLBs); `Ok(true)`
    /// otherwise. Two atomic reads, nothing written.
    pub fn usable_while_locked(&self, mfn: Mfn, dom: DomId, writable: bool) -> Result<bool, Errno> {
        let slot = self.slot(mfn).ok_or(Errno::EINVAL)?;
        let [w0, w1] = &self.frames[slot].0[..2] else {
            unreachable!("a record has four words")
        };
        let head = w0.load(Ordering::Acquire);
        if head & W0_OWNER_MASK != Slot::owner_bits(Owner::Domain(dom)) {
            return Err(Errno::EINVAL);
        }
        if !writable {
            return Ok(true);
        }
        let in_use = lo(w1.load(Ordering::Acquire)) > 0;
        Ok(match Slot::decode_type(head) {
            PageType::None => !in_use,
            PageType::Writable => !in_use || head & W0_VALIDATED != 0,
            _ => false,
        })
    }

    /// Drops a reference taken with [`FrameTable::get_page`]; `EINVAL` if there is none.
    pub fn put_page(&self, mfn: Mfn) -> Result<(), Errno> {
        self.edit(mfn, |f| {
            if f.ext_refs == 0 {
                return Err(Errno::EINVAL);
            }
            f.ext_refs -= 1;
            Ok(())
        })
        .unwrap_or(Err(Errno::EINVAL))?;
        self.ref_put(mfn);
        Ok(())
    }

    /// Takes a general and a type reference of type `ty` on a frame `dom` owns, for
    /// hypervisor code (Xen's `get_page_and_type`). A frame whose type count is zero takes
    /// the new type, flushing if it had another one, and a page-table type is validated; a
    /// frame in use must already have type `ty` (else `EINVAL`). On failure nothing changed.
    pub fn get_page_type<M: PageMemory>(
        &self,
        mem: &mut M,
        mfn: Mfn,
        dom: DomId,
        ty: PageType,
    ) -> Result<(), Errno> {
        if ty == PageType::None {
            return Err(Errno::EINVAL);
        }
        self.ref_get(mfn, dom)?;
        if let Err(e) = self.type_get(mem, mfn, ty) {
            self.ref_put(mfn);
            return Err(e);
        }
        self.edit(mfn, |f| {
            f.ext_type_refs = f.ext_type_refs.saturating_add(1);
        });
        Ok(())
    }

    /// Drops a type reference taken with [`FrameTable::get_page_type`] and its general
    /// reference (Xen's `put_page_and_type`); `EINVAL` if there is none. A page table whose
    /// type count reaches zero is devalidated: its entries' references go, recursively.
    pub fn put_page_type<M: PageMemory>(&self, mem: &mut M, mfn: Mfn) -> Result<(), Errno> {
        self.edit(mfn, |f| {
            if f.ext_type_refs == 0 {
                return Err(Errno::EINVAL);
            }
            f.ext_type_refs -= 1;
            Ok(())
        })
        .unwrap_or(Err(Errno::EINVAL))?;
        self.type_put(mem, mfn);
        self.ref_put(mfn);
        Ok(())
    }

    /// Holds `mfn`, owned by `dom`, as a frame the hypervisor writes on `dom`'s behalf
    /// (`shared_info`, a grant-table frame): a general and a `Writable` type reference,
    /// counted in [`FrameInfo::hv_writes`]. From then on the frame cannot become a page
    /// table or descriptor page, nor be freed, however the guest maps, pins or returns
    /// it; [`FrameTable::check_hypervisor_writes`] verifies that every such frame is held.
    /// `EINVAL` if `dom` does not own it or it is in another use.
    pub fn hold_for_writes<M: PageMemory>(
        &self,
        mem: &mut M,
        mfn: Mfn,
        dom: DomId,
    ) -> Result<(), Errno> {
        self.ref_get(mfn, dom)?;
        if let Err(e) = self.type_get(mem, mfn, PageType::Writable) {
            self.ref_put(mfn);
            return Err(e);
        }
        self.edit(mfn, |f| {
            f.hv_writes = f.hv_writes.saturating_add(1);
        });
        Ok(())
    }

    /// Drops a hold taken with [`FrameTable::hold_for_writes`] for `dom`, once the
    /// hypervisor no longer writes the frame; `EINVAL` if `dom` does not own it or there is
    /// no hold.
    pub fn release_writes<M: PageMemory>(
        &self,
        mem: &mut M,
        mfn: Mfn,
        dom: DomId,
    ) -> Result<(), Errno> {
        self.edit(mfn, |f| {
            if !(f.hv_writes > 0 && f.owner == Owner::Domain(dom)) {
                return Err(Errno::EINVAL);
            }
            f.hv_writes -= 1;
            Ok(())
        })
        .unwrap_or(Err(Errno::EINVAL))?;
        self.type_put(mem, mfn);
        self.ref_put(mfn);
        Ok(())
    }

    // alloc-block: dom0's consistency checks, and the error text of a failed one.
    /// Checks that every frame in `written` — the frames the hypervisor writes, as
    /// `(frame, the domain it writes it for)` — is that domain's and held with
    /// [`FrameTable::hold_for_writes`] (so it is `Writable` and cannot be retyped or
    /// freed). Returns the first problems found.
    pub fn check_hypervisor_writes(
        &self,
        written: impl IntoIterator<Item = (Mfn, DomId)>,
    ) -> Result<(), String> {
        let mut problems = String::new();
        let mut total = 0usize;
        for (mfn, dom) in written {
            let why = match self.frame(mfn) {
                None => Some("is outside the frame table"),
                Some(f) if f.owner != Owner::Domain(dom) => Some("is not that domain's"),
                Some(f) if f.hv_writes == 0 => Some("is not held for the hypervisor's writes"),
                Some(f) if f.current_type() != PageType::Writable => Some("is not writable"),
                Some(_) => None,
            };
            if let Some(why) = why {
                total += 1;
                if total <= 16 {
                    problems.push_str(&format!(
                        "\n  frame {:#x}, written by the hypervisor for domain {dom}, {why}",
                        mfn.0
                    ));
                }
            }
        }
        if total == 0 {
            Ok(())
        } else {
            Err(format!(
                "{total} frames the hypervisor writes are not protected:{problems}"
            ))
        }
    }

    /// Checks that every frame a domain owns belongs to a domain that exists (`live`): a
    /// frame owned by a destroyed domain is a frame no one will ever free.
    pub fn check_owners(&self, live: impl Fn(DomId) -> bool) -> Result<(), String> {
        let mut orphans = 0u64;
        let mut first = None;
        for (i, f) in self.frames.iter().enumerate() {
            if let Owner::Domain(d) = f.owner()
                && !live(d)
            {
                orphans += 1;
                first.get_or_insert((i, d));
            }
        }
        match first {
            None => Ok(()),
            Some((i, d)) => Err(format!(
                "{orphans} frames belong to domains that do not exist (the first, {i:#x}, to \
                 domain {d})"
            )),
        }
    }

    // end alloc-block
    // ---- Guest operations. ----

    /// `MMUEXT_PIN_L{1..4}_TABLE`: validates `mfn` as a `level` page table if need be and
    /// keeps a type reference on it until [`FrameTable::unpin`], so that it stays validated
    /// while nothing else uses it. Pinning is not counted: a second pin is `EINVAL`
    /// ("already pinned", `do_mmuext_op`).
    pub fn pin<M: PageMemory>(
        &self,
        mem: &mut M,
        mfn: Mfn,
        dom: DomId,
        level: PageType,
    ) -> Result<(), Errno> {
        if !level.is_page_table() {
            return Err(Errno::EINVAL);
        }
        match self.frame(mfn) {
            Some(f) if f.owner == Owner::Domain(dom) && !f.pinned => {}
            _ => return Err(Errno::EINVAL),
        }
        self.ref_get(mfn, dom)?;
        if let Err(e) = self.type_get(mem, mfn, level) {
            self.ref_put(mfn);
            return Err(e);
        }
        self.edit(mfn, |f| {
            f.pinned = true;
        });
        Ok(())
    }

    /// `MMUEXT_UNPIN_TABLE`: drops the pin's references. A frame still in use elsewhere (an
    /// entry of a higher table, a vCPU's base pointer) keeps its type; otherwise it is
    /// devalidated. `EINVAL` if `dom` does not own it or it is not pinned.
    pub fn unpin<M: PageMemory>(&self, mem: &mut M, mfn: Mfn, dom: DomId) -> Result<(), Errno> {
        self.edit(mfn, |f| {
            if !(f.owner == Owner::Domain(dom) && f.pinned) {
                return Err(Errno::EINVAL);
            }
            f.pinned = false;
            Ok(())
        })
        .unwrap_or(Err(Errno::EINVAL))?;
        self.type_put(mem, mfn);
        self.ref_put(mfn);
        Ok(())
    }

    /// `MMUEXT_NEW_BASEPTR` for a vCPU of `dom` whose base is `old`: takes an L4 type
    /// reference on `new` (validating it if need be), then drops `old`'s. A frame that is
    /// some vCPU's base therefore keeps its L4 type while in use: unpinning it leaves it
    /// validated, its count held by the base. `old == Some(new)` changes nothing, as in Xen's
    /// `new_guest_cr3`. `EINVAL` if `new` cannot be an L4 of `dom`'s or `old` is not a base.
    /// The caller loads the vCPU's guest root from `new` before it returns to the guest.
    pub fn set_base<M: PageMemory>(
        &self,
        mem: &mut M,
        dom: DomId,
        old: Option<Mfn>,
        new: Mfn,
    ) -> Result<(), Errno> {
        if old == Some(new) {
            return Ok(());
        }
        if let Some(old) = old {
            self.check_base(old, dom)?;
        }
        self.ref_get(new, dom)?;
        if let Err(e) = self.type_get(mem, new, PageType::L4) {
            self.ref_put(new);
            return Err(e);
        }
        self.base_ref_step(new, dom, true);
        if let Some(old) = old {
            // `check_base(old)` held above, and what happened since touched only `new`
            // (a different frame): no second look (issue 18, session 15).
            self.drop_checked_base(mem, dom, old);
        }
        Ok(())
    }

    /// Drops the base-pointer reference a vCPU of `dom` holds on `old` (vCPU teardown).
    pub fn drop_base<M: PageMemory>(&self, mem: &mut M, dom: DomId, old: Mfn) -> Result<(), Errno> {
        self.check_base(old, dom)?;
        self.drop_checked_base(mem, dom, old);
        Ok(())
    }

    /// [`FrameTable::drop_base`] after its `check_base` passed.
    fn drop_checked_base<M: PageMemory>(&self, mem: &mut M, dom: DomId, old: Mfn) {
        self.base_ref_step(old, dom, false);
        self.type_put(mem, old);
        self.ref_put(old);
    }

    #[inline]
    fn check_base(&self, mfn: Mfn, dom: DomId) -> Result<(), Errno> {
        let words = self.slot(mfn).map(|i| &self.frames[i].0);
        match words {
            Some([w0, _, w2, _])
                if w0.load(Ordering::Acquire) & W0_OWNER_MASK
                    == Slot::owner_bits(Owner::Domain(dom))
                    && lo(w2.load(Ordering::Acquire)) > 0 =>
            {
                Ok(())
            }
            _ => Err(Errno::EINVAL),
        }
    }

    /// One base-pointer reference more (`up`) or fewer on `mfn`, which `dom` owns (the caller
    /// checked: `ref_get` or `check_base`), on the record's words as the counting primitives
    /// do: a context switch of a Xen PV guest makes four of these (session 14), and the
    /// decode and encode of the whole record cost more than the change. `base_refs` is the
    /// low half of word 2; a change of it alone moves no generation (`use_changed` looks at
    /// the owner, word 0 and the type count, none of which changes), as through `edit`. Up
    /// saturates, as before; down below zero is not reached (`check_base` first) and is
    /// counted as an underflow.
    #[inline]
    fn base_ref_step(&self, mfn: Mfn, dom: DomId, up: bool) {
        let Some(slot) = self.slot(mfn) else {
            return self.underflow();
        };
        let [w0, _, w2, _] = &self.frames[slot].0;
        if w0.load(Ordering::Acquire) & W0_OWNER_MASK != Slot::owner_bits(Owner::Domain(dom)) {
            return self.underflow();
        }
        let words = w2.load(Ordering::Acquire);
        let base = lo(words);
        let base = match up {
            true => base.saturating_add(1),
            false => match base.checked_sub(1) {
                Some(b) => b,
                None => return self.underflow(),
            },
        };
        w2.store((words & !0xFFFF_FFFF) | u64::from(base), Ordering::Release);
    }

    /// `mmu_update` with `MMU_NORMAL_PT_UPDATE` (or `MMU_PT_UPDATE_PRESERVE_AD`): sets entry
    /// `index` of frame `table`, owned by `dom`, to `new`.
    ///
    /// If `table` is a validated page table, the new entry is checked as its level requires
    /// and takes its references, is written (keeping the old accessed and dirty bits if
    /// `preserve_ad`), and only then are the old entry's references dropped — after the guest
    /// roots were synchronised, for an L4 (Xen's `mod_l1_entry` to `mod_l4_entry`). The
    /// hypervisor's L4 slots cannot be updated at all (`EINVAL`).
    ///
    /// Otherwise the frame is written as plain memory, as Xen does: it must be writable
    /// already or able to become so for the duration of the write (a frame with no type
    /// count takes the `Writable` type, flushing if it had another use); a descriptor frame
    /// is refused with `EINVAL`.
    pub fn update_entry<M: PageMemory>(
        &self,
        mem: &mut M,
        table: Mfn,
        index: usize,
        new: u64,
        dom: DomId,
        preserve_ad: bool,
    ) -> Result<UpdateEffect, Errno> {
        if index >= ENTRIES {
            return Err(Errno::EINVAL);
        }
        // Owner, type and validation only (word 0 and the type count), not the whole record:
        // this runs once per entry of every update.
        let slot = self.slot(table).ok_or(Errno::EINVAL)?;
        let [w0, w1] = &self.frames[slot].0[..2] else {
            unreachable!("a record has four words")
        };
        let head = w0.load(Ordering::Acquire);
        if head & W0_OWNER_MASK != Slot::owner_bits(Owner::Domain(dom)) {
            return Err(Errno::EINVAL);
        }
        let current_type = if lo(w1.load(Ordering::Acquire)) > 0 {
            Slot::decode_type(head)
        } else {
            PageType::None
        };
        let validated = head & W0_VALIDATED != 0;
        let plain = UpdateEffect {
            plain_write: true,
            ..UpdateEffect::default()
        };
        match current_type {
            level if level.is_page_table() => {
                if !validated || Self::reserved_slot(level, index) {
                    return Err(Errno::EINVAL);
                }
                let old = mem.read_entry(table, index);
                if is_grant_pte(level, old) {
                    // Only the grant table removes a grant mapping (Xen's _PAGE_GNTTAB).
                    return Err(Errno::EINVAL);
                }
                let mut value = if preserve_ad {
                    new | (old & (pte::ACCESSED | pte::DIRTY))
                } else {
                    new
                };
                if value & pte::PRESENT != 0 && mem.forced_user(dom) {
                    value |= pte::USER;
                }
                self.get_entry_refs(mem, level, value, dom)?;
                // A walk's answer through the entry may change, or (an L4) the pCPUs' copies
                // of the table (`entry::load_guest_root`) must be made again: the generation
                // moves. Otherwise (an entry that was not present, an accessed or dirty bit)
                // every cached answer still holds and is kept ([`translation_changed`]).
                let walks = level == PageType::L4 || translation_changed(old, value);
                if walks {
                    self.begin_change(table);
                }
                mem.update_entry_value(table, index, level, old, value);
                if walks {
                    self.end_change(table, level == PageType::L4);
                }
                let l4_changed = (level == PageType::L4 && old != value).then_some(table);
                if let Some(l4) = l4_changed {
                    mem.sync_guest_roots(l4);
                }
                self.put_entry_refs(mem, level, old);
                Ok(UpdateEffect {
                    stale_translation: stale_translation(old, value),
                    l4_changed,
                    plain_write: false,
                })
            }
            PageType::Writable => {
                self.write_entry_noted(mem, table, index, new);
                Ok(plain)
            }
            PageType::None => {
                self.ref_get(table, dom)?;
                if let Err(e) = self.type_get(mem, table, PageType::Writable) {
                    self.ref_put(table);
                    return Err(e);
                }
                self.write_entry_noted(mem, table, index, new);
                self.type_put(mem, table);
                self.ref_put(table);
                Ok(plain)
            }
            _ => Err(Errno::EINVAL),
        }
    }

    /// Installs a grant mapping of frame `target` at entry `index` of `l1`, a validated L1
    /// of `mapper` whose entry there is empty (Xen's `create_grant_host_mapping`). The
    /// entry takes no references: the grant table holds them, in the granter's name, for
    /// as long as the mapping lasts. `flags` are the entry's low bits (present, RW, U/S,
    /// NX); the grant bit is added. `EINVAL` if the table or entry does not qualify.
    pub fn install_grant_pte<M: PageMemory>(
        &self,
        mem: &mut M,
        l1: Mfn,
        index: usize,
        mapper: DomId,
        target: Mfn,
        flags: u64,
    ) -> Result<(), Errno> {
        let f = self.frame(l1).ok_or(Errno::EINVAL)?;
        if index >= ENTRIES
            || f.owner != Owner::Domain(mapper)
            || f.current_type() != PageType::L1
            || !f.validated
            || mem.read_entry(l1, index) != 0
            || self.slot(target).is_none()
        {
            return Err(Errno::EINVAL);
        }
        let allowed = pte::PRESENT
            | pte::RW
            | pte::USER
            | pte::ACCESSED
            | pte::DIRTY
            | GRANT_AVAIL_BITS
            | if self.config.nx { pte::NX } else { 0 };
        self.write_entry_noted(
            mem,
            l1,
            index,
            target.phys() | (flags & allowed) | pte::PRESENT | pte::GNTTAB,
        );
        Ok(())
    }

    /// Removes the grant mapping of `target` at entry `index` of `l1` (Xen's
    /// `replace_grant_host_mapping`); `EINVAL` if the entry is not that mapping. The caller
    /// flushes the TLBs before it drops the grant's references.
    pub fn remove_grant_pte<M: PageMemory>(
        &self,
        mem: &mut M,
        l1: Mfn,
        index: usize,
        target: Mfn,
    ) -> Result<(), Errno> {
        let f = self.frame(l1).ok_or(Errno::EINVAL)?;
        let e = if index < ENTRIES {
            mem.read_entry(l1, index)
        } else {
            0
        };
        if f.current_type() != PageType::L1
            || !is_grant_pte(PageType::L1, e)
            || (e & pte::ADDR) >> 12 != target.0
        {
            return Err(Errno::EINVAL);
        }
        self.write_entry_noted(mem, l1, index, 0);
        Ok(())
    }

    // alloc-block: the listing form, for tests and the fuzzer; the hypervisor uses release_domain_with.
    /// Domain destruction: drops every base pointer and pin of `dom`'s frames — which
    /// devalidates all its page tables, dropping the references their entries hold — and
    /// frees every frame nothing refers to any more. Frames that hypervisor code still holds
    /// stay with the domain and are listed; releasing again after dropping them frees them.
    /// Other domains are untouched: no domain holds references on another's frames.
    pub fn release_domain<M: PageMemory>(&self, mem: &mut M, dom: DomId) -> Released {
        let mut released = Released::default();
        let still = self.release_domain_with(mem, dom, Owner::Free, |m| released.freed.push(m));
        released.still_referenced = still;
        released
    }

    // end alloc-block
    /// [`FrameTable::release_domain`] for the hypervisor: each freed frame becomes
    /// `freed_owner`'s (the hypervisor's, for its frame allocator) and is handed to
    /// `on_free` as it goes, so that teardown allocates nothing for the frames it frees,
    /// however large the domain. Returns the frames still referenced (few: those hypervisor
    /// code holds).
    pub fn release_domain_with<M: PageMemory>(
        &self,
        mem: &mut M,
        dom: DomId,
        freed_owner: Owner,
        mut on_free: impl FnMut(Mfn),
    ) -> Vec<Mfn> {
        let owner = Owner::Domain(dom);
        // Three passes over the whole table (base pointers, pins, then the frees, each of
        // which may cascade through devalidation to frames anywhere); a record of another
        // owner is passed over on one load of its word 0, not decoded (a machine's table is
        // far larger than a small domain: the teardown of 4 MiB domains on a 512 MiB machine
        // spent almost all of its time decoding other owners' records).
        let bits = Slot::owner_bits(owner);
        let mine = |i: usize| self.frames[i].0[0].load(Ordering::Acquire) & W0_OWNER_MASK == bits;
        for i in 0..self.frames.len() {
            if !mine(i) {
                continue;
            }
            let mfn = Mfn(i as u64);
            while self
                .edit(mfn, |f| {
                    let held = f.owner == owner && f.base_refs > 0;
                    if held {
                        f.base_refs -= 1;
                    }
                    held
                })
                .unwrap_or(false)
            {
                self.type_put(mem, mfn);
                self.ref_put(mfn);
            }
        }
        for i in 0..self.frames.len() {
            if !mine(i) {
                continue;
            }
            let mfn = Mfn(i as u64);
            let unpinned = self.edit(mfn, |f| {
                let pinned = f.owner == owner && f.pinned;
                f.pinned &= !pinned;
                pinned
            });
            if unpinned == Some(true) {
                self.type_put(mem, mfn);
                self.ref_put(mfn);
            }
        }
        let mut still = Vec::new();
        for i in 0..self.frames.len() {
            if !mine(i) {
                continue;
            }
            let mfn = Mfn(i as u64);
            let freed = self.edit(mfn, |f| {
                if f.owner != owner {
                    return None;
                }
                let free = f.unreferenced();
                if free {
                    *f = FrameInfo::with_offline(freed_owner, Self::freed_state(f.offline));
                }
                Some(free)
            });
            match freed.flatten() {
                None => {}
                Some(true) => on_free(mfn),
                // A frame that cannot be listed is still kept (it stays the domain's), only
                // not reported.
                Some(false) if still.try_reserve(1).is_ok() => {
                    // alloc: room reserved just above.
                    still.push(mfn);
                }
                Some(false) => {}
            }
        }
        still
    }

    /// How many of `dom`'s frames are in each use, indexed by [`PageType::index`]; a frame
    /// with no type count counts as [`PageType::None`] (`XENMEM_XENIA_FRAME_COUNTS`).
    pub fn count_by_type(&self, dom: DomId) -> [u64; PageType::ALL.len()] {
        let mut counts = [0u64; PageType::ALL.len()];
        for f in self.records().filter(|f| f.owner == Owner::Domain(dom)) {
            counts[f.current_type().index()] += 1;
        }
        counts
    }

    // alloc-block: dom0's consistency check (XENMEM_XENIA_CHECK_FRAME_TABLE, shutdown), error text included.
    /// Recomputes every frame's counts from what holds references — entries of validated
    /// page tables, pins, base pointers, hypervisor code — checks every entry again, and
    /// compares. Returns the first discrepancies found. The counts are recomputed for a
    /// window of [`CHECK_WINDOW`] frames at a time, so the scratch memory is bounded
    /// whatever the machine's size (each window reads the entries of every validated page
    /// table again); it is allocated fallibly, and a check that cannot get it says so.
    pub fn check_consistency<M: PageMemory>(&self, mem: &M) -> Result<(), String> {
        const MAX_REPORTED: usize = 16;
        let mut problems: Vec<String> = Vec::new();
        let mut total = 0usize;
        let mut report = |msg: String| {
            total += 1;
            if problems.len() < MAX_REPORTED {
                problems.push(msg);
            }
        };
        let underflows = self.underflows.load(Ordering::Relaxed);
        if underflows > 0 {
            report(format!("{underflows} puts found a count at zero"));
        }
        // Flags of each frame, and every entry of every validated page table, once.
        for (i, f) in self.records().enumerate() {
            let f = &f;
            let mfn = i as u64;
            if f.offline == Offline::Pending && !matches!(f.owner, Owner::Domain(_)) {
                report(format!(
                    "frame {mfn:#x} is pending offline but {:?}",
                    f.owner
                ));
            }
            if f.offline == Offline::Offlined && matches!(f.owner, Owner::Domain(_)) {
                report(format!("frame {mfn:#x} is offlined but {:?}'s", f.owner));
            }
            if !matches!(f.owner, Owner::Domain(_)) {
                if *f != FrameInfo::with_offline(f.owner, f.offline) {
                    report(format!(
                        "frame {mfn:#x} ({:?}) has counts or flags",
                        f.owner
                    ));
                }
                continue;
            }
            if f.type_count > 0 && (f.ty == PageType::None || !f.validated) {
                report(format!("frame {mfn:#x} has uses but no valid type"));
            }
            if f.type_count == 0 && f.validated {
                report(format!("frame {mfn:#x} is validated without uses"));
            }
            if f.pinned && !f.current_type().is_page_table() {
                report(format!("frame {mfn:#x} is pinned but no page table"));
            }
            if f.base_refs > 0 && f.current_type() != PageType::L4 {
                report(format!("frame {mfn:#x} is a base pointer but no L4"));
            }
            if f.hv_writes > 0 && f.current_type() != PageType::Writable {
                report(format!(
                    "frame {mfn:#x} is written by the hypervisor but is {:?}",
                    f.current_type()
                ));
            }
            self.for_each_entry(mem, Mfn(mfn), |index, e, target| match target {
                Err(why) => report(why),
                Ok((t, needs)) => {
                    let tf = self.at(t);
                    if tf.owner != f.owner {
                        report(format!(
                            "{:?} {mfn:#x}[{index}] = {e:#x} points at a frame of {:?}",
                            f.current_type(),
                            tf.owner
                        ));
                    }
                    if let Some(needs) = needs
                        && tf.current_type() != needs
                    {
                        report(format!(
                            "{:?} {mfn:#x}[{index}] needs {needs:?} of {t:#x}, which is {:?}",
                            f.current_type(),
                            tf.current_type()
                        ));
                    }
                }
            });
        }
        // The page tables whose entries hold references, listed once (few, next to the frames)
        // so that each window reads only them; without room for the list, every window
        // looks at every frame.
        let nr_tables = self
            .records()
            .filter(|f| f.current_type().is_page_table())
            .count();
        let mut list: Vec<u32> = Vec::new();
        let tables = (list.try_reserve_exact(nr_tables).is_ok()
            && u32::try_from(self.frames.len()).is_ok())
        .then(|| {
            list.extend(
                self.records()
                    .enumerate()
                    .filter(|(_, f)| f.current_type().is_page_table())
                    .map(|(i, _)| i as u32),
            );
            list
        });
        // The counts, window by window: (general, type) references each frame should have.
        let mut expected: Vec<[u32; 2]> = Vec::new();
        let window = CHECK_WINDOW.min(self.frames.len());
        if expected.try_reserve_exact(window).is_err() {
            report(format!(
                "no memory for the check's scratch ({window} frames)"
            ));
        } else {
            let mut lo = 0;
            while lo < self.frames.len() {
                let hi = (lo + window).min(self.frames.len());
                expected.clear();
                expected.resize(hi - lo, [0, 0]);
                for (i, f) in (lo..hi).map(|i| self.at(i)).enumerate() {
                    if matches!(f.owner, Owner::Domain(_)) {
                        let held_types = u32::from(f.pinned)
                            .saturating_add(f.base_refs)
                            .saturating_add(f.ext_type_refs)
                            .saturating_add(f.hv_writes);
                        expected[i] = [held_types.saturating_add(f.ext_refs), held_types];
                    }
                }
                let all = 0..self.frames.len() as u64;
                let mut all_iter;
                let mut listed_iter;
                let sources: &mut dyn Iterator<Item = u64> = match &tables {
                    Some(t) => {
                        listed_iter = t.iter().map(|&m| u64::from(m));
                        &mut listed_iter
                    }
                    None => {
                        all_iter = all.clone();
                        &mut all_iter
                    }
                };
                for i in sources {
                    let f = self.at(i as usize);
                    if !matches!(f.owner, Owner::Domain(_)) {
                        continue;
                    }
                    self.for_each_entry(mem, Mfn(i), |_, _, target| {
                        if let Ok((t, needs)) = target
                            && (lo..hi).contains(&t)
                        {
                            let x = &mut expected[t - lo];
                            x[0] = x[0].saturating_add(1);
                            if needs.is_some() {
                                x[1] = x[1].saturating_add(1);
                            }
                        }
                    });
                }
                for (i, f) in (lo..hi).map(|i| self.at(i)).enumerate() {
                    let [refs, types] = expected[i];
                    if f.ref_count != refs || f.type_count != types {
                        report(format!(
                            "frame {:#x}: {} references and {} type references, expected {refs} and {types}",
                            lo + i,
                            f.ref_count,
                            f.type_count
                        ));
                    }
                }
                lo = hi;
            }
        }
        if total == 0 {
            return Ok(());
        }
        let mut msg = format!("{total} frame-table inconsistencies:");
        for p in &problems {
            msg.push_str("\n  ");
            msg.push_str(p);
        }
        Err(msg)
    }

    /// Calls `f(index, entry, target)` for every present entry of `table` if it is a
    /// validated page table (grant PTEs and reserved slots excepted): `target` is the
    /// frame's slot and the type the entry requires of it, or why the entry is wrong.
    fn for_each_entry<M: PageMemory>(
        &self,
        mem: &M,
        table: Mfn,
        mut f: impl FnMut(usize, u64, Result<(usize, Option<PageType>), String>),
    ) {
        let Some(info) = self.frame(table) else {
            return;
        };
        let level = info.current_type();
        if !level.is_page_table() {
            return;
        }
        let mfn = table.0;
        for index in 0..ENTRIES {
            let e = mem.read_entry(table, index);
            if is_grant_pte(level, e) {
                // A grant mapping's references are the grant table's (held through
                // get_page / get_page_type, counted as the hypervisor's).
                continue;
            }
            if Self::reserved_slot(level, index) {
                if e != 0 {
                    f(
                        index,
                        e,
                        Err(format!("L4 {mfn:#x} has {e:#x} in reserved slot {index}")),
                    );
                }
                continue;
            }
            let target = match self.check_entry(level, e) {
                Ok(Some(target)) => target,
                Ok(None) => continue,
                Err(err) => {
                    f(
                        index,
                        e,
                        Err(format!(
                            "{level:?} {mfn:#x}[{index}] = {e:#x} is invalid ({err})"
                        )),
                    );
                    continue;
                }
            };
            if level == PageType::L1 && self.is_io_frame(target) {
                // An I/O mapping: it holds no reference (allowed when it was made).
                continue;
            }
            let Some(t) = self.slot(target) else {
                f(
                    index,
                    e,
                    Err(format!(
                        "{level:?} {mfn:#x}[{index}] points outside the table"
                    )),
                );
                continue;
            };
            let needs = match level.child() {
                Some(child) => Some(child),
                None if e & pte::RW != 0 => Some(PageType::Writable),
                None => None,
            };
            f(index, e, Ok((t, needs)));
        }
    }
    // end alloc-block
}

/// Whether replacing entry `old` with `new` in a page table can change what any walk
/// through the entry found (`mm::walk`: `translate`, `user_accessible`): `old` was present,
/// and `new` is not, or maps another frame, or differs in U/S or PS, or takes away RW or
/// execution. An entry that was not present was on no successful walk's path; a walk
/// that found a page writable, or a page to run, still does when rights are only added
/// (RW or execution given); one that changes only in bits no walk reads (accessed, dirty,
/// the software bits) leaves every answer as it was. The hypervisor's translation caches
/// (`guest::mem`, `guest::fast`) are kept across such writes
/// (`PageMemory::update_entry_value`); every other write drops them. U/S counts both ways:
/// the cache keeps "not user-accessible" answers too.
pub fn translation_changed(old: u64, new: u64) -> bool {
    const EITHER_WAY: u64 = pte::PRESENT | pte::USER | pte::PS_PAT | pte::ADDR;
    old & pte::PRESENT != 0
        && ((old ^ new) & EITHER_WAY != 0
            || (old & !new) & pte::RW != 0
            || (new & !old) & pte::NX != 0)
}

/// Whether replacing present entry `old` with `new` can leave a translation cached that
/// grants more than `new` does.
fn stale_translation(old: u64, new: u64) -> bool {
    if old & pte::PRESENT == 0 {
        return false;
    }
    new & pte::PRESENT == 0
        || (old ^ new) & pte::ADDR != 0
        || (old & !new) & (pte::RW | pte::USER) != 0
        || (new & !old) & pte::NX != 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::cell::RefCell;

    const P: u64 = pte::PRESENT;
    const RW: u64 = pte::RW;
    const U: u64 = pte::USER;
    const A: u64 = pte::ACCESSED;
    const D: u64 = pte::DIRTY;
    const PS: u64 = pte::PS_PAT;
    const G: u64 = pte::GLOBAL;
    const NX: u64 = pte::NX;
    const DOM_A: DomId = 1;
    const DOM_B: DomId = 2;

    /// Page contents any thread may read and write (each entry atomic): two threads
    /// changing two domains' tables through one [`FrameTable`].
    struct SharedMem(std::sync::Arc<Vec<[AtomicU64; ENTRIES]>>);

    impl PageMemory for SharedMem {
        fn read_entry(&self, mfn: Mfn, index: usize) -> u64 {
            self.0[mfn.0 as usize][index].load(Ordering::Relaxed)
        }

        fn write_entry(&mut self, mfn: Mfn, index: usize, value: u64) {
            self.0[mfn.0 as usize][index].store(value, Ordering::Relaxed);
        }

        fn flush_tlbs(&mut self) {}

        fn sync_guest_roots(&mut self, _: Mfn) {}
    }

    /// The rule of the type's docs, exercised: one thread per domain changes that domain's
    /// frames (an L4 → L3 → L2 → L1 tree pinned and unpinned, L1 entries mapping its data
    /// frames writable and read-only, hypervisor references) while a third reads every
    /// frame's owner, all through one shared table with no lock. Afterwards the table is
    /// consistent and every count is what the last state of the entries says; at no point
    /// does the reader see a frame change hands.
    #[test]
    fn two_domains_change_their_frames_on_two_threads_at_once() {
        use std::sync::Arc;
        use std::sync::atomic::AtomicBool;
        const PER_DOM: u64 = 16;
        const ROUNDS: u64 = 20_000;
        let ft = Arc::new(FrameTable::new(2 * PER_DOM + 1, config()));
        let pages: Arc<Vec<[AtomicU64; ENTRIES]>> = Arc::new(
            (0..2 * PER_DOM + 1)
                .map(|_| core::array::from_fn(|_| AtomicU64::new(0)))
                .collect(),
        );
        let doms = [DOM_A, DOM_B];
        for (d, &dom) in doms.iter().enumerate() {
            let base = d as u64 * PER_DOM;
            for m in base..base + PER_DOM {
                ft.set_free(Mfn(m)).unwrap();
                ft.assign(Mfn(m), dom).unwrap();
            }
            let mut mem = SharedMem(pages.clone());
            // L4 (base) -> L3 (base + 1) -> L2 (base + 2) -> L1 (base + 3); data after.
            for level in 0..3 {
                mem.write_entry(Mfn(base + level), 0, e(base + level + 1, P | RW));
            }
        }
        let stop = Arc::new(AtomicBool::new(false));
        let reader = {
            let (ft, stop) = (ft.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut reads = 0u64;
                // At least one pass, even if the workers are done before this thread runs
                // (a loaded host).
                loop {
                    for m in 0..2 * PER_DOM {
                        let want = Owner::Domain(if m < PER_DOM { DOM_A } else { DOM_B });
                        assert_eq!(ft.owner(Mfn(m)), want, "frame {m} changed hands");
                        reads += 1;
                    }
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                }
                reads
            })
        };
        let workers: Vec<_> = doms
            .iter()
            .enumerate()
            .map(|(d, &dom)| {
                let (ft, mut mem) = (ft.clone(), SharedMem(pages.clone()));
                std::thread::spawn(move || {
                    let base = d as u64 * PER_DOM;
                    let (l4, l1) = (Mfn(base), Mfn(base + 3));
                    let data = |i: u64| base + 4 + i % (PER_DOM - 4);
                    for i in 0..ROUNDS {
                        if i % 500 == 0 {
                            if i > 0 {
                                ft.unpin(&mut mem, l4, dom).unwrap();
                            }
                            ft.pin(&mut mem, l4, dom, PageType::L4).unwrap();
                        }
                        let index = (i % 8) as usize;
                        let flags = if i % 3 == 0 { P } else { P | RW };
                        ft.update_entry(&mut mem, l1, index, e(data(i), flags), dom, false)
                            .unwrap();
                        if i % 7 == 0 {
                            ft.get_page(Mfn(data(i)), dom).unwrap();
                            ft.put_page(Mfn(data(i))).unwrap();
                        }
                        // Another domain's frame is refused, whatever that domain is doing.
                        let theirs = e((1 - d as u64) * PER_DOM + 4, P);
                        assert_eq!(
                            ft.update_entry(&mut mem, l1, 9, theirs, dom, false),
                            Err(Errno::EBUSY)
                        );
                    }
                })
            })
            .collect();
        for w in workers {
            w.join().unwrap();
        }
        stop.store(true, Ordering::Relaxed);
        assert!(reader.join().unwrap() > 0);
        let mem = SharedMem(pages.clone());
        assert_eq!(ft.check_consistency(&mem), Ok(()));
        for (d, &dom) in doms.iter().enumerate() {
            let base = d as u64 * PER_DOM;
            assert_eq!(info(&ft, base).current_type(), PageType::L4);
            assert!(info(&ft, base).pinned);
            assert_eq!(info(&ft, base + 3).current_type(), PageType::L1);
            // Each of the eight L1 entries holds one reference on the frame it maps last.
            let mapped: u32 = (4..PER_DOM).map(|m| info(&ft, base + m).ref_count).sum();
            assert_eq!(mapped, 8, "domain {dom}");
        }
    }

    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    enum Event {
        Read(Mfn),
        Flush,
        Sync(Mfn),
    }

    /// Page contents in a vector, with a log of the calls the table makes.
    #[derive(Clone, Debug)]
    struct Fake {
        pages: Vec<[u64; ENTRIES]>,
        /// Entries written so far that move the table's generation (every write outside an
        /// update, and updates that change a walk: `FrameTable::write_entry_noted`).
        writes: u64,
        /// Whether reads are logged too (flushes and syncs always are).
        log_reads: bool,
        log: RefCell<Vec<Event>>,
        /// The domain allowed I/O memory and the frames it may map (`io_frame_allowed`).
        io: Option<(DomId, core::ops::Range<u64>)>,
    }

    impl Fake {
        fn new(frames: u64) -> Fake {
            Fake {
                pages: vec![[0; ENTRIES]; frames as usize],
                writes: 0,
                log_reads: false,
                log: RefCell::new(Vec::new()),
                io: None,
            }
        }

        fn set(&mut self, mfn: u64, index: usize, value: u64) {
            self.pages[mfn as usize][index] = value;
        }

        fn get(&self, mfn: u64, index: usize) -> u64 {
            self.pages[mfn as usize][index]
        }

        fn flushes(&self) -> usize {
            self.log
                .borrow()
                .iter()
                .filter(|e| **e == Event::Flush)
                .count()
        }

        fn syncs(&self) -> Vec<Mfn> {
            let log = self.log.borrow();
            log.iter()
                .filter_map(|e| match e {
                    Event::Sync(m) => Some(*m),
                    _ => None,
                })
                .collect()
        }
    }

    impl PageMemory for Fake {
        fn read_entry(&self, mfn: Mfn, index: usize) -> u64 {
            if self.log_reads {
                self.log.borrow_mut().push(Event::Read(mfn));
            }
            // Panics (fails the test) if the table reads a frame it has no business reading.
            self.pages[mfn.0 as usize][index]
        }

        fn write_entry(&mut self, mfn: Mfn, index: usize, value: u64) {
            self.pages[mfn.0 as usize][index] = value;
            self.writes += 1;
        }

        /// As the hypervisor's `DirectMem`: an update that changes no walk's answer
        /// ([`translation_changed`], an L1 to L3 table) keeps the caches, so it is not
        /// counted in `writes` (the fuzzer's check of the caches' rule then applies).
        fn update_entry_value(
            &mut self,
            mfn: Mfn,
            index: usize,
            level: PageType,
            old: u64,
            value: u64,
        ) {
            self.pages[mfn.0 as usize][index] = value;
            if level == PageType::L4 || translation_changed(old, value) {
                self.writes += 1;
            }
        }

        fn flush_tlbs(&mut self) {
            self.log.get_mut().push(Event::Flush);
        }

        fn sync_guest_roots(&mut self, l4: Mfn) {
            self.log.get_mut().push(Event::Sync(l4));
        }

        fn io_frame_allowed(&self, mfn: Mfn, dom: DomId) -> bool {
            self.io
                .as_ref()
                .is_some_and(|(d, r)| *d == dom && r.contains(&mfn.0))
        }
    }

    impl FrameTable {
        /// Changes frame `i`'s record behind the table's back (tests of the checks).
        fn poke(&self, i: impl TryInto<u64>, change: impl FnOnce(&mut FrameInfo)) {
            let mfn = Mfn(i.try_into().ok().expect("frame number"));
            self.edit(mfn, change).expect("frame in the table");
        }

        fn with_count_limit(mut self, limit: u32) -> FrameTable {
            self.count_limit = limit;
            self
        }

        /// The table with the remembered type of unused frames erased: what a failed
        /// operation must leave exactly as it found.
        fn effective(&self) -> (Vec<FrameInfo>, u64) {
            let frames = self
                .records()
                .map(|f| FrameInfo {
                    ty: f.current_type(),
                    ..f
                })
                .collect();
            (frames, self.underflows.load(Ordering::Relaxed))
        }
    }

    fn config() -> Config {
        Config {
            phys_addr_bits: 40,
            nx: true,
            l1tf_mitigation: true,
        }
    }

    /// A table of `frames` frames: the `a` ones for domain A, the `b` ones for B, the rest
    /// free except frame `frames - 1`, the hypervisor's.
    fn setup(frames: u64, a: &[u64], b: &[u64]) -> (FrameTable, Fake) {
        let ft = FrameTable::new(frames, config());
        for m in 0..frames - 1 {
            ft.set_free(Mfn(m)).unwrap();
        }
        for &m in a {
            ft.assign(Mfn(m), DOM_A).unwrap();
        }
        for &m in b {
            ft.assign(Mfn(m), DOM_B).unwrap();
        }
        (ft, Fake::new(frames))
    }

    fn e(mfn: u64, flags: u64) -> u64 {
        (mfn << 12) | flags
    }

    fn info(ft: &FrameTable, mfn: u64) -> FrameInfo {
        ft.info(Mfn(mfn)).unwrap()
    }

    /// (type in force, type count, reference count)
    fn counts(ft: &FrameTable, mfn: u64) -> (PageType, u32, u32) {
        let f = info(ft, mfn);
        (f.current_type(), f.type_count, f.ref_count)
    }

    fn consistent(ft: &FrameTable, mem: &Fake) {
        if let Err(msg) = ft.check_consistency(mem) {
            panic!("{msg}");
        }
        stamps_settled(ft);
    }

    /// Between operations no change is under way: every stamp is a generation already
    /// reached (none left at `STAMP_CHANGING`).
    fn stamps_settled(ft: &FrameTable) {
        let now = ft.generation();
        for (i, s) in ft.stamps.iter().enumerate() {
            let s = s.load(Ordering::SeqCst);
            assert!(
                s <= now,
                "frame {i}'s stamp {s:#x} is above the generation {now}"
            );
        }
    }

    fn update(
        ft: &mut FrameTable,
        mem: &mut Fake,
        table: u64,
        index: usize,
        value: u64,
        dom: DomId,
    ) -> Result<UpdateEffect, Errno> {
        ft.update_entry(mem, Mfn(table), index, value, dom, false)
    }

    #[test]
    fn type_order_is_the_abi_order() {
        for (i, ty) in PageType::ALL.into_iter().enumerate() {
            assert_eq!(ty.index(), i);
            assert_eq!(ty.name(), XENIA_FRAME_TYPES[i]);
        }
        assert_eq!(PageType::L4.name(), "l4");
    }

    #[test]
    fn ownership_life_cycle() {
        let ft = FrameTable::new(8, config());
        assert_eq!(ft.len(), 8);
        assert_eq!(ft.owner(Mfn(0)), Owner::Hypervisor);
        assert_eq!(ft.owner(Mfn(100)), Owner::Hypervisor, "outside the table");
        assert_eq!(ft.info(Mfn(8)), None);
        assert_eq!(ft.assign(Mfn(0), DOM_A), Err(Errno::EBUSY), "hypervisor's");
        ft.set_free(Mfn(0)).unwrap();
        assert_eq!(ft.set_free(Mfn(0)), Err(Errno::EINVAL));
        assert_eq!(
            ft.assign(Mfn(0), guest_abi::types::DOMID_SELF),
            Err(Errno::EINVAL)
        );
        ft.assign(Mfn(0), DOM_A).unwrap();
        assert!(ft.owned_by(Mfn(0), DOM_A));
        assert!(!ft.owned_by(Mfn(0), DOM_B));
        assert_eq!(ft.assign(Mfn(0), DOM_B), Err(Errno::EBUSY));
        assert_eq!(ft.assign(Mfn(9), DOM_B), Err(Errno::EINVAL));
        assert_eq!(ft.unassign(Mfn(0), DOM_B), Err(Errno::EINVAL));
        ft.get_page(Mfn(0), DOM_A).unwrap();
        assert_eq!(ft.unassign(Mfn(0), DOM_A), Err(Errno::EBUSY), "referenced");
        ft.put_page(Mfn(0)).unwrap();
        ft.unassign(Mfn(0), DOM_A).unwrap();
        assert_eq!(ft.owner(Mfn(0)), Owner::Free);
        ft.set_hypervisor(Mfn(0)).unwrap();
        assert_eq!(ft.set_hypervisor(Mfn(0)), Err(Errno::EBUSY));
        assert_eq!(ft.owner(Mfn(0)), Owner::Hypervisor);
    }

    #[test]
    fn grant_ptes_take_no_table_references_and_resist_mmu_update() {
        // Frame 0: A's L1; frame 1: B's data frame, granted to A (the grant logic holds a
        // writable reference on it in B's name).
        let (ft, mut mem) = setup(8, &[0], &[1]);
        ft.pin(&mut mem, Mfn(0), DOM_A, PageType::L1).unwrap();
        ft.get_page_type(&mut mem, Mfn(1), DOM_B, PageType::Writable)
            .unwrap();
        ft.install_grant_pte(&mut mem, Mfn(0), 5, DOM_A, Mfn(1), pte::PRESENT | pte::RW)
            .unwrap();
        consistent(&ft, &mem);
        assert_eq!(
            ft.install_grant_pte(&mut mem, Mfn(0), 5, DOM_A, Mfn(1), pte::PRESENT),
            Err(Errno::EINVAL),
            "slot in use"
        );
        assert_eq!(
            ft.install_grant_pte(&mut mem, Mfn(0), 6, DOM_B, Mfn(1), pte::PRESENT),
            Err(Errno::EINVAL),
            "not the mapper's table"
        );
        assert_eq!(
            ft.update_entry(&mut mem, Mfn(0), 5, 0, DOM_A, false),
            Err(Errno::EINVAL),
            "a guest cannot remove a grant mapping behind the grant table's back"
        );
        // Unpinning the table drops no reference for the grant PTE.
        ft.unpin(&mut mem, Mfn(0), DOM_A).unwrap();
        assert_eq!(counts(&ft, 1), (PageType::Writable, 1, 1));
        assert_eq!(
            ft.remove_grant_pte(&mut mem, Mfn(0), 5, Mfn(1)),
            Err(Errno::EINVAL),
            "no longer an L1"
        );
        ft.pin(&mut mem, Mfn(0), DOM_A, PageType::L1).unwrap_err();
        mem.set(0, 5, 0);
        ft.pin(&mut mem, Mfn(0), DOM_A, PageType::L1).unwrap();
        ft.install_grant_pte(&mut mem, Mfn(0), 5, DOM_A, Mfn(1), pte::PRESENT)
            .unwrap();
        assert_eq!(
            ft.remove_grant_pte(&mut mem, Mfn(0), 5, Mfn(2)),
            Err(Errno::EINVAL),
            "other frame"
        );
        ft.remove_grant_pte(&mut mem, Mfn(0), 5, Mfn(1)).unwrap();
        assert_eq!(mem.get(0, 5), 0);
        ft.put_page_type(&mut mem, Mfn(1)).unwrap();
        assert_eq!(counts(&ft, 1), (PageType::None, 0, 0));
        consistent(&ft, &mem);
    }

    #[test]
    fn general_references_need_ownership() {
        let (ft, mem) = setup(8, &[0], &[1]);
        ft.get_page(Mfn(0), DOM_A).unwrap();
        ft.get_page(Mfn(0), DOM_A).unwrap();
        assert_eq!(counts(&ft, 0), (PageType::None, 0, 2));
        assert_eq!(ft.get_page(Mfn(1), DOM_A), Err(Errno::EINVAL), "B's");
        assert_eq!(
            ft.get_page(Mfn(7), DOM_A),
            Err(Errno::EINVAL),
            "hypervisor's"
        );
        assert_eq!(ft.get_page(Mfn(3), DOM_A), Err(Errno::EINVAL), "free");
        assert_eq!(ft.get_page(Mfn(99), DOM_A), Err(Errno::EINVAL), "outside");
        consistent(&ft, &mem);
        ft.put_page(Mfn(0)).unwrap();
        ft.put_page(Mfn(0)).unwrap();
        assert_eq!(ft.put_page(Mfn(0)), Err(Errno::EINVAL), "none left");
        assert_eq!(ft.put_page(Mfn(1)), Err(Errno::EINVAL));
        assert_eq!(counts(&ft, 0), (PageType::None, 0, 0));
        consistent(&ft, &mem);
    }

    #[test]
    fn type_references_round_trip() {
        let (ft, mut mem) = setup(8, &[0, 1], &[]);
        let m = Mfn(0);
        ft.get_page_type(&mut mem, m, DOM_A, PageType::Writable)
            .unwrap();
        ft.get_page_type(&mut mem, m, DOM_A, PageType::Writable)
            .unwrap();
        assert_eq!(counts(&ft, 0), (PageType::Writable, 2, 2));
        assert_eq!(
            ft.get_page_type(&mut mem, m, DOM_A, PageType::L1),
            Err(Errno::EINVAL),
            "in use as another type"
        );
        assert_eq!(
            ft.get_page_type(&mut mem, m, DOM_A, PageType::None),
            Err(Errno::EINVAL)
        );
        assert_eq!(
            ft.get_page_type(&mut mem, m, DOM_B, PageType::Writable),
            Err(Errno::EINVAL)
        );
        consistent(&ft, &mem);
        ft.put_page_type(&mut mem, m).unwrap();
        ft.put_page_type(&mut mem, m).unwrap();
        assert_eq!(ft.put_page_type(&mut mem, m), Err(Errno::EINVAL));
        assert_eq!(counts(&ft, 0), (PageType::None, 0, 0));
        assert_eq!(mem.flushes(), 0, "an untyped frame has nothing to flush");
        // A general reference is not a type reference and the other way round.
        ft.get_page(m, DOM_A).unwrap();
        assert_eq!(ft.put_page_type(&mut mem, m), Err(Errno::EINVAL));
        ft.get_page_type(&mut mem, Mfn(1), DOM_A, PageType::Writable)
            .unwrap();
        assert_eq!(ft.put_page(Mfn(1)), Err(Errno::EINVAL));
        consistent(&ft, &mem);
    }

    #[test]
    fn usable_while_locked_needs_ownership_and_a_writable_use() {
        let (ft, mut mem) = setup(8, &[0, 1, 2], &[4]);
        for w in [false, true] {
            assert_eq!(
                ft.usable_while_locked(Mfn(0), DOM_A, w),
                Ok(true),
                "untyped"
            );
            assert_eq!(
                ft.usable_while_locked(Mfn(4), DOM_A, w),
                Err(Errno::EINVAL),
                "B's"
            );
            assert_eq!(
                ft.usable_while_locked(Mfn(7), DOM_A, w),
                Err(Errno::EINVAL),
                "hv's"
            );
            assert_eq!(
                ft.usable_while_locked(Mfn(3), DOM_A, w),
                Err(Errno::EINVAL),
                "free"
            );
            assert_eq!(
                ft.usable_while_locked(Mfn(99), DOM_A, w),
                Err(Errno::EINVAL),
                "outside"
            );
        }
        ft.get_page_type(&mut mem, Mfn(1), DOM_A, PageType::Writable)
            .unwrap();
        assert_eq!(
            ft.usable_while_locked(Mfn(1), DOM_A, true),
            Ok(true),
            "writable"
        );
        ft.pin(&mut mem, Mfn(2), DOM_A, PageType::L1).unwrap();
        assert_eq!(ft.usable_while_locked(Mfn(2), DOM_A, false), Ok(true));
        assert_eq!(
            ft.usable_while_locked(Mfn(2), DOM_A, true),
            Ok(false),
            "a page table"
        );
        ft.unpin(&mut mem, Mfn(2), DOM_A).unwrap();
        // Unused now, but last an L1: writing it needs the retype and its flush.
        assert_eq!(info(&ft, 2).ty, PageType::L1);
        assert_eq!(
            ft.usable_while_locked(Mfn(2), DOM_A, true),
            Ok(false),
            "was a page table"
        );
        assert_eq!(ft.usable_while_locked(Mfn(2), DOM_A, false), Ok(true));
        consistent(&ft, &mem);
    }

    #[test]
    fn pinned_l1_holds_references_on_what_it_maps() {
        let (ft, mut mem) = setup(8, &[0, 1, 2, 3], &[]);
        mem.set(0, 0, e(1, P | RW | U));
        mem.set(0, 1, e(2, P));
        mem.set(0, 2, e(2, P | U | A | D | G));
        mem.set(0, 3, 0x0000_0000_0000_0E00); // not present, software bits only
        ft.pin(&mut mem, Mfn(0), DOM_A, PageType::L1).unwrap();
        let f = info(&ft, 0);
        assert!(f.pinned && f.validated);
        assert_eq!(counts(&ft, 0), (PageType::L1, 1, 1));
        assert_eq!(counts(&ft, 1), (PageType::Writable, 1, 1));
        assert_eq!(counts(&ft, 2), (PageType::None, 0, 2));
        assert_eq!(counts(&ft, 3), (PageType::None, 0, 0));
        assert_eq!(ft.count_by_type(DOM_A), [2, 1, 0, 0, 0, 0, 1]);
        consistent(&ft, &mem);
        ft.unpin(&mut mem, Mfn(0), DOM_A).unwrap();
        for m in 0..4 {
            assert_eq!(counts(&ft, m).1..=counts(&ft, m).2, 0..=0, "frame {m}");
        }
        let f = info(&ft, 0);
        assert!(!f.pinned && !f.validated);
        assert_eq!(ft.count_by_type(DOM_A), [4, 0, 0, 0, 0, 0, 0]);
        consistent(&ft, &mem);
    }

    /// The word-level reads and counts agree with the decoded record, and the generation
    /// moves at every change of use and no count-only change (the translation cache's rule).
    #[test]
    fn current_type_and_generation_follow_the_uses() {
        let (ft, mut mem) = setup(8, &[0, 1, 2, 3], &[]);
        mem.set(0, 0, e(1, P | RW | U));
        mem.set(0, 1, e(1, P | RW | U));
        let check = |ft: &FrameTable| {
            for m in 0..8 {
                assert_eq!(
                    ft.current_type(Mfn(m)),
                    ft.info(Mfn(m)).map(|f| f.current_type()),
                    "frame {m}"
                );
            }
            assert_eq!(ft.current_type(Mfn(100)), None);
        };
        check(&ft);
        let before = ft.generation();
        ft.pin(&mut mem, Mfn(0), DOM_A, PageType::L1).unwrap();
        check(&ft);
        let pinned = ft.generation();
        assert!(pinned > before, "typing and pinning move the generation");
        // The stamps say which frames changed: the pinned table, not the pages it maps.
        assert!(!ft.unchanged_since(before, &[Mfn(0)]));
        assert!(ft.unchanged_since(pinned, &[Mfn(0)]));
        assert!(ft.unchanged_since(before, &[Mfn(2), Mfn(3)]));
        assert!(
            !ft.unchanged_since(u64::MAX - 1, &[Mfn(100)]),
            "outside the table"
        );
        assert_eq!(counts(&ft, 1), (PageType::Writable, 2, 2));
        // One more writable mapping of frame 1 only counts: the generation stays.
        let mut plain = ft.generation();
        let r = ft
            .ref_get(Mfn(1), DOM_A)
            .and_then(|()| ft.type_get(&mut mem, Mfn(1), PageType::Writable));
        assert_eq!(r, Ok(()));
        assert_eq!(ft.generation(), plain);
        ft.type_put(&mut mem, Mfn(1));
        ft.ref_put(Mfn(1));
        assert_eq!(ft.generation(), plain);
        assert_eq!(counts(&ft, 1), (PageType::Writable, 2, 2));
        // A write of an entry moves it, and stamps only the frame written.
        ft.write_entry_noted(&mut mem, Mfn(2), 7, 0);
        assert_eq!(ft.generation(), plain + 1);
        assert!(!ft.unchanged_since(plain, &[Mfn(2)]));
        assert!(ft.unchanged_since(plain, &[Mfn(0), Mfn(1), Mfn(3)]));
        plain += 1;
        ft.unpin(&mut mem, Mfn(0), DOM_A).unwrap();
        check(&ft);
        // No walk can have reached an L1 nothing references: its going keeps the caches.
        assert_eq!(
            ft.generation(),
            plain,
            "an L1 going out of use keeps the generation"
        );
        // Out of use, frame 0 is plain memory again (the fast SYSCALL path may keep it as
        // the place of a write): becoming a table again, with the same type it had, moves it.
        ft.pin(&mut mem, Mfn(0), DOM_A, PageType::L1).unwrap();
        assert!(
            ft.generation() > plain,
            "plain memory becoming a table again moves it"
        );
        let pinned = ft.generation();
        ft.unpin(&mut mem, Mfn(0), DOM_A).unwrap();
        // A data page of the domain changing hands moves it too.
        ft.unassign(Mfn(3), DOM_A).unwrap();
        assert!(ft.generation() > pinned, "a change of owner moves it");
        consistent(&ft, &mem);
    }

    /// Entry writes move the generation only when a walk through the entry may answer
    /// differently.
    #[test]
    fn translation_changes_condition_by_condition() {
        let old = e(5, P | RW | U);
        assert!(!translation_changed(0, old), "nothing was present");
        assert!(!translation_changed(e(5, 0), old), "a not-present entry");
        assert!(
            !translation_changed(old, old | A | D),
            "accessed and dirty only"
        );
        assert!(translation_changed(old, 0), "removed");
        assert!(translation_changed(old, e(6, P | RW | U)), "another frame");
        assert!(translation_changed(old, e(5, P | U)), "RW taken away");
        assert!(!translation_changed(e(5, P | U), old), "RW given");
        assert!(!translation_changed(old | NX, old), "execution given");
        assert!(translation_changed(old, e(5, P | RW)), "U taken away");
        assert!(translation_changed(old, old | NX), "execute taken away");
        assert!(translation_changed(old, old | PS), "a large page");
        assert!(translation_changed(e(5, P | RW), old), "U given");
    }

    /// L4 10 → L3 11 (twice) → L2 12 → L1 13 → data 14, and 13 maps the L4 read-only.
    fn hierarchy(mem: &mut Fake) {
        mem.set(10, 0, e(11, P | RW | U));
        mem.set(10, 511, e(11, P));
        mem.set(11, 0, e(12, P | RW | U));
        mem.set(12, 0, e(13, P | RW | U));
        mem.set(13, 0, e(14, P | RW | U | NX));
        mem.set(13, 1, e(10, P | NX));
    }

    /// Page tables as the hypervisor's walk reads them (`guest::mem::Direct`).
    struct Walked<'a>(&'a FrameTable, &'a Fake);

    impl crate::mm::walk::GuestTables for Walked<'_> {
        fn entry(&self, table: Mfn, index: u64) -> u64 {
            self.1.pages[table.0 as usize][index as usize]
        }

        fn owned_by(&self, mfn: Mfn, dom: DomId) -> bool {
            self.0.owned_by(mfn, dom)
        }
    }

    /// The stamps' rule (`unchanged_since`, the translation cache's finer rule): an update
    /// that changes a walk stamps the table it is in, so every walk through that table is
    /// found changed; walks through other tables are kept, though the generation moved.
    #[test]
    fn updates_stamp_the_table_they_change() {
        use crate::mm::walk;
        let a: Vec<u64> = (10..22).collect();
        let (ft, mut mem) = setup(24, &a, &[]);
        hierarchy(&mut mem);
        // A second L1 beside 13, mapping data frame 15, reached through L2 entry 1.
        mem.set(12, 1, e(16, P | RW | U));
        mem.set(16, 0, e(15, P | RW | U));
        ft.pin(&mut mem, Mfn(10), DOM_A, PageType::L4).unwrap();
        let tables = Walked(&ft, &mem);
        let va_13 = 0x8;
        let va_16 = (1 << 21) | 0x8;
        let (phys, path_13) =
            walk::translate_path(&tables, Mfn(10), DOM_A, va_13, true, true).unwrap();
        assert_eq!(
            (phys, path_13),
            (e(14, 0) | 8, [Mfn(11), Mfn(12), Mfn(13), Mfn(14)])
        );
        let (_, path_16) =
            walk::translate_path(&tables, Mfn(10), DOM_A, va_16, true, true).unwrap();
        let (_, ring3) = walk::user_accessible_path(&tables, Mfn(10), DOM_A, va_16).unwrap();
        assert_eq!(ring3, [Mfn(11), Mfn(12), Mfn(16), Mfn(16)]);
        let with_root = |p: walk::Path| [Mfn(10), p[0], p[1], p[2], p[3]];
        let found = ft.generation();
        assert!(ft.unchanged_since(found, &with_root(path_13)));
        // Write-protecting the page behind 16 (what a `fork` does to every page of the parent).
        let r = ft.update_entry(&mut mem, Mfn(16), 0, e(15, P | U), DOM_A, false);
        assert!(r.is_ok_and(|effect| effect.stale_translation));
        assert!(ft.generation() > found, "the generation moves");
        assert!(
            !ft.unchanged_since(found, &with_root(path_16)),
            "the walk through 16"
        );
        assert!(
            !ft.unchanged_since(found, &with_root(ring3)),
            "ring 3's walk through 16"
        );
        assert!(
            ft.unchanged_since(found, &with_root(path_13)),
            "the walk through 13 is kept"
        );
        // Accessed and dirty bits change no walk: nothing is stamped.
        let quiet = ft.generation();
        let r = ft.update_entry(
            &mut mem,
            Mfn(13),
            0,
            e(14, P | RW | U | NX | A | D),
            DOM_A,
            false,
        );
        assert!(r.is_ok());
        assert_eq!(ft.generation(), quiet);
        assert!(ft.unchanged_since(found, &with_root(path_13)));
        // A change of use of the final frame (the write's place becoming a table) is found.
        let r = ft.update_entry(&mut mem, Mfn(13), 0, 0, DOM_A, false);
        assert!(r.is_ok());
        assert!(
            !ft.unchanged_since(quiet, &with_root(path_13)),
            "the L1 written"
        );
        let before_pin = ft.generation();
        ft.pin(&mut mem, Mfn(14), DOM_A, PageType::L1).unwrap();
        assert!(
            !ft.unchanged_since(before_pin, &[Mfn(14)]),
            "a data page pinned"
        );
        assert!(ft.unchanged_since(before_pin, &[Mfn(10), Mfn(11), Mfn(12)]));
        consistent(&ft, &mem);
        // An L2 entry removed: the walks through it are found changed at the L2, whatever
        // becomes of the L1 below it.
        let (_, path_16) =
            walk::translate_path(&Walked(&ft, &mem), Mfn(10), DOM_A, va_16, false, false).unwrap();
        let cut = ft.generation();
        let r = ft.update_entry(&mut mem, Mfn(12), 1, 0, DOM_A, false);
        assert!(r.is_ok());
        assert!(
            !ft.unchanged_since(cut, &with_root(path_16)),
            "the L2 written"
        );
        // The final frame changing hands is found at the frame itself.
        let frames = [Mfn(10), Mfn(11), Mfn(12), Mfn(13), Mfn(17)];
        let given = ft.generation();
        assert!(ft.unchanged_since(given, &frames));
        ft.unassign(Mfn(17), DOM_A).unwrap();
        assert!(
            !ft.unchanged_since(given, &frames),
            "the final frame given away"
        );
        // The top-level table going out of use is found at the table.
        let unpinned = ft.generation();
        ft.unpin(&mut mem, Mfn(10), DOM_A).unwrap();
        assert!(!ft.unchanged_since(unpinned, &[Mfn(10)]), "the L4 unpinned");
        consistent(&ft, &mem);
    }

    #[test]
    fn four_levels_pins_and_base_pointers() {
        let a: Vec<u64> = (10..22).collect();
        let (ft, mut mem) = setup(24, &a, &[]);
        hierarchy(&mut mem);
        ft.pin(&mut mem, Mfn(10), DOM_A, PageType::L4).unwrap();
        assert_eq!(counts(&ft, 10), (PageType::L4, 1, 2), "pin + read-only map");
        assert_eq!(counts(&ft, 11), (PageType::L3, 2, 2));
        assert_eq!(counts(&ft, 12), (PageType::L2, 1, 1));
        assert_eq!(counts(&ft, 13), (PageType::L1, 1, 1));
        assert_eq!(counts(&ft, 14), (PageType::Writable, 1, 1));
        assert_eq!(ft.count_by_type(DOM_A), [7, 1, 1, 1, 1, 0, 1]);
        consistent(&ft, &mem);

        ft.set_base(&mut mem, DOM_A, None, Mfn(10)).unwrap();
        assert_eq!(counts(&ft, 10), (PageType::L4, 2, 3));
        // Unpinning the current base keeps it: the base pointer holds a type reference.
        ft.unpin(&mut mem, Mfn(10), DOM_A).unwrap();
        assert_eq!(counts(&ft, 10), (PageType::L4, 1, 2));
        assert!(info(&ft, 10).validated);
        assert_eq!(counts(&ft, 14), (PageType::Writable, 1, 1));
        consistent(&ft, &mem);

        // Switching to an empty L4 drops the last use of the old one: all of it goes.
        ft.set_base(&mut mem, DOM_A, Some(Mfn(10)), Mfn(20))
            .unwrap();
        for m in 10..15 {
            assert_eq!(counts(&ft, m).1..=counts(&ft, m).2, 0..=0, "frame {m}");
        }
        assert_eq!(counts(&ft, 20), (PageType::L4, 1, 1));
        assert_eq!(info(&ft, 20).base_refs, 1);
        consistent(&ft, &mem);
        ft.drop_base(&mut mem, DOM_A, Mfn(20)).unwrap();
        assert_eq!(counts(&ft, 20), (PageType::None, 0, 0));
        consistent(&ft, &mem);
    }

    #[test]
    fn frames_the_domain_does_not_own_cannot_be_mapped() {
        let (mut ft, mut mem) = setup(16, &[0, 1, 2], &[5]);
        ft.pin(&mut mem, Mfn(0), DOM_A, PageType::L1).unwrap();
        ft.pin(&mut mem, Mfn(1), DOM_A, PageType::L2).unwrap();
        let before = (ft.clone(), mem.pages.clone());
        // Xen's get_page_from_l1e: could_not_pin → -EBUSY; MMIO space → -EPERM.
        for (value, err) in [
            (e(5, P), Errno::EBUSY),      // domain B's
            (e(5, P | RW), Errno::EBUSY), // domain B's, writable
            (e(15, P), Errno::EBUSY),     // the hypervisor's
            (e(7, P), Errno::EBUSY),      // free
            (e(1000, P), Errno::EPERM),   // outside the table: device memory or a hole
        ] {
            assert_eq!(
                update(&mut ft, &mut mem, 0, 0, value, DOM_A),
                Err(err),
                "{value:#x}"
            );
        }
        // Higher levels: get_page_and_type_from_mfn → -EINVAL.
        for value in [e(5, P), e(15, P), e(7, P), e(1000, P)] {
            assert_eq!(
                update(&mut ft, &mut mem, 1, 0, value, DOM_A),
                Err(Errno::EINVAL),
                "{value:#x}"
            );
        }
        // Nor can A edit B's frames, nor B A's tables.
        assert_eq!(
            update(&mut ft, &mut mem, 5, 0, 0, DOM_A),
            Err(Errno::EINVAL)
        );
        assert_eq!(
            update(&mut ft, &mut mem, 0, 0, 0, DOM_B),
            Err(Errno::EINVAL)
        );
        assert_eq!(ft, before.0);
        assert_eq!(mem.pages, before.1);
        // The same entries met while validating fail the pin, which leaves nothing behind.
        mem.set(2, 7, e(5, P));
        assert_eq!(
            ft.pin(&mut mem, Mfn(2), DOM_A, PageType::L1),
            Err(Errno::EBUSY)
        );
        assert_eq!(counts(&ft, 2), (PageType::None, 0, 0));
        assert_eq!(counts(&ft, 5), (PageType::None, 0, 0));
        consistent(&ft, &mem);
    }

    #[test]
    fn io_frames_map_without_references_and_only_where_allowed() {
        // Frames 0..16 are RAM; 0x1000.. is device memory, of which domain A may map
        // 0x1000..0x1010 (the hypervisor's answer); B may map none.
        let (mut ft, mut mem) = setup(16, &[0, 1, 2], &[5]);
        mem.io = Some((DOM_A, 0x1000..0x1010));
        ft.pin(&mut mem, Mfn(0), DOM_A, PageType::L1).unwrap();
        ft.pin(&mut mem, Mfn(1), DOM_A, PageType::L2).unwrap();
        let before = ft.effective();
        // Allowed device frames, writable and uncached too: no record changes.
        for (i, value) in [
            e(0x1000, P),
            e(0x1001, P | RW),
            e(0x100F, P | RW | pte::PCD | pte::PWT),
        ]
        .into_iter()
        .enumerate()
        {
            update(&mut ft, &mut mem, 0, i, value, DOM_A).unwrap();
            assert_eq!(mem.get(0, i), value);
        }
        assert_eq!(ft.effective(), before);
        consistent(&ft, &mem);
        // Refused: a device frame not allowed, the PAT bit, cache attributes on RAM, an
        // upper-level entry at a device frame; each changes nothing.
        for (table, value, err) in [
            (0, e(0x1010, P), Errno::EPERM),
            (0, e(0x2000, P | RW), Errno::EPERM),
            (0, e(0x1002, P | pte::PS_PAT), Errno::EINVAL),
            (0, e(2, P | pte::PCD), Errno::EINVAL),
            (1, e(0x1000, P), Errno::EINVAL),
        ] {
            assert_eq!(
                update(&mut ft, &mut mem, table, 10, value, DOM_A),
                Err(err),
                "{value:#x}"
            );
        }
        assert_eq!(ft.effective(), before);
        // B is allowed none of them.
        ft.pin(&mut mem, Mfn(5), DOM_B, PageType::L1).unwrap();
        assert_eq!(
            update(&mut ft, &mut mem, 5, 0, e(0x1000, P), DOM_B),
            Err(Errno::EPERM)
        );
        // Replacing and clearing I/O entries drops nothing; RAM may follow in the same slot.
        update(&mut ft, &mut mem, 0, 0, e(2, P), DOM_A).unwrap();
        assert_eq!(counts(&ft, 2), (PageType::None, 0, 1));
        update(&mut ft, &mut mem, 0, 0, 0, DOM_A).unwrap();
        assert_eq!(counts(&ft, 2), (PageType::None, 0, 0));
        consistent(&ft, &mem);
        // Unpinning devalidates the table with its I/O entries; pinning again revalidates it
        // (still allowed), and fails cleanly once the hypervisor no longer allows them.
        ft.unpin(&mut mem, Mfn(0), DOM_A).unwrap();
        consistent(&ft, &mem);
        ft.pin(&mut mem, Mfn(0), DOM_A, PageType::L1).unwrap();
        ft.unpin(&mut mem, Mfn(0), DOM_A).unwrap();
        mem.io = None;
        assert_eq!(
            ft.pin(&mut mem, Mfn(0), DOM_A, PageType::L1),
            Err(Errno::EPERM)
        );
        assert_eq!(counts(&ft, 0), (PageType::None, 0, 0));
        consistent(&ft, &mem);
        // A domain whose tables hold I/O entries is released cleanly.
        mem.io = Some((DOM_A, 0x1000..0x1010));
        ft.pin(&mut mem, Mfn(0), DOM_A, PageType::L1).unwrap();
        ft.release_domain(&mut mem, DOM_A);
        consistent(&ft, &mem);
        assert_eq!(ft.underflows.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn page_tables_cannot_be_mapped_writable() {
        let (mut ft, mut mem) = setup(16, &[0, 1, 2], &[]);
        ft.pin(&mut mem, Mfn(0), DOM_A, PageType::L1).unwrap();
        mem.set(1, 0, e(0, P | RW));
        ft.pin(&mut mem, Mfn(1), DOM_A, PageType::L2).unwrap();
        ft.pin(&mut mem, Mfn(2), DOM_A, PageType::L1).unwrap();
        for target in [0, 1, 2] {
            assert_eq!(
                update(&mut ft, &mut mem, 2, 0, e(target, P | RW), DOM_A),
                Err(Errno::EBUSY),
                "writable map of page table {target}"
            );
        }
        // Read-only views of page tables, its own included, are the guest's to have.
        for (i, target) in [0u64, 1, 2].into_iter().enumerate() {
            update(&mut ft, &mut mem, 2, i, e(target, P), DOM_A).unwrap();
        }
        assert_eq!(counts(&ft, 2), (PageType::L1, 1, 2));
        consistent(&ft, &mem);
        ft.unpin(&mut mem, Mfn(2), DOM_A).unwrap();
        assert_eq!(counts(&ft, 2), (PageType::None, 0, 0));
        consistent(&ft, &mem);
    }

    #[test]
    fn writable_frames_cannot_become_page_tables() {
        let (mut ft, mut mem) = setup(16, &[0, 3, 4], &[]);
        ft.pin(&mut mem, Mfn(0), DOM_A, PageType::L1).unwrap();
        update(&mut ft, &mut mem, 0, 0, e(3, P | RW), DOM_A).unwrap();
        assert_eq!(counts(&ft, 3), (PageType::Writable, 1, 1));
        let before = ft.clone();
        for level in [PageType::L1, PageType::L2, PageType::L3, PageType::L4] {
            assert_eq!(ft.pin(&mut mem, Mfn(3), DOM_A, level), Err(Errno::EINVAL));
        }
        assert_eq!(
            ft.set_base(&mut mem, DOM_A, None, Mfn(3)),
            Err(Errno::EINVAL)
        );
        // Nor through an entry of a higher table.
        mem.set(4, 0, e(3, P));
        assert_eq!(
            ft.pin(&mut mem, Mfn(4), DOM_A, PageType::L2),
            Err(Errno::EINVAL)
        );
        assert_eq!(ft.effective(), before.effective());
        // Once the writable mapping is gone the frame may become a page table, after a
        // flush of whatever writable translations of it are still cached.
        let effect = update(&mut ft, &mut mem, 0, 0, 0, DOM_A).unwrap();
        assert!(effect.stale_translation);
        assert_eq!(mem.flushes(), 0);
        ft.pin(&mut mem, Mfn(3), DOM_A, PageType::L1).unwrap();
        assert_eq!(mem.flushes(), 1);
        consistent(&ft, &mem);
    }

    #[test]
    fn recursive_mappings_are_refused() {
        let (mut ft, mut mem) = setup(16, &[0, 1, 2, 3, 4, 5, 6], &[]);
        // An L4 pointing at itself asks an L4 to be an L3.
        for flags in [P, P | RW] {
            mem.set(0, 0, e(0, flags));
            assert_eq!(
                ft.pin(&mut mem, Mfn(0), DOM_A, PageType::L4),
                Err(Errno::EINVAL)
            );
            assert_eq!(counts(&ft, 0), (PageType::None, 0, 0));
            assert_eq!(
                ft.set_base(&mut mem, DOM_A, None, Mfn(0)),
                Err(Errno::EINVAL)
            );
        }
        // An L2 pointing at itself asks an L2 to be an L1.
        mem.set(3, 9, e(3, P));
        assert_eq!(
            ft.pin(&mut mem, Mfn(3), DOM_A, PageType::L2),
            Err(Errno::EINVAL)
        );
        // An L1 mapping itself writable asks an L1 to be writable; read-only is fine.
        mem.set(1, 5, e(1, P | RW));
        assert_eq!(
            ft.pin(&mut mem, Mfn(1), DOM_A, PageType::L1),
            Err(Errno::EBUSY)
        );
        assert_eq!(counts(&ft, 1), (PageType::None, 0, 0));
        mem.set(2, 5, e(2, P));
        ft.pin(&mut mem, Mfn(2), DOM_A, PageType::L1).unwrap();
        assert_eq!(counts(&ft, 2), (PageType::L1, 1, 2));
        consistent(&ft, &mem);
        // The same through updates of live tables.
        ft.pin(&mut mem, Mfn(4), DOM_A, PageType::L4).unwrap();
        ft.pin(&mut mem, Mfn(5), DOM_A, PageType::L3).unwrap();
        for flags in [P, P | RW] {
            assert_eq!(
                update(&mut ft, &mut mem, 4, 0, e(4, flags), DOM_A),
                Err(Errno::EINVAL)
            );
        }
        update(&mut ft, &mut mem, 4, 1, e(5, P | RW), DOM_A).unwrap();
        ft.pin(&mut mem, Mfn(6), DOM_A, PageType::L1).unwrap();
        for target in [4, 5, 6] {
            assert_eq!(
                update(&mut ft, &mut mem, 6, 0, e(target, P | RW), DOM_A),
                Err(Errno::EBUSY)
            );
        }
        update(&mut ft, &mut mem, 6, 0, e(4, P), DOM_A).unwrap();
        consistent(&ft, &mem);
    }

    #[test]
    fn hypervisor_l4_slots_stay_empty() {
        assert!(is_hypervisor_l4_slot(256) && is_hypervisor_l4_slot(271));
        assert!(!is_hypervisor_l4_slot(255) && !is_hypervisor_l4_slot(272));
        let (mut ft, mut mem) = setup(16, &[0, 1], &[]);
        for (slot, value) in [
            (256, e(1, P)),
            (256, 2),
            (271, e(1, P | RW)),
            (263, 1 << 40),
        ] {
            mem.set(0, slot, value);
            assert_eq!(
                ft.pin(&mut mem, Mfn(0), DOM_A, PageType::L4),
                Err(Errno::EINVAL),
                "slot {slot} = {value:#x}"
            );
            assert_eq!(counts(&ft, 0), (PageType::None, 0, 0));
            assert_eq!(counts(&ft, 1), (PageType::None, 0, 0));
            mem.set(0, slot, 0);
        }
        ft.pin(&mut mem, Mfn(0), DOM_A, PageType::L4).unwrap();
        ft.pin(&mut mem, Mfn(1), DOM_A, PageType::L3).unwrap();
        for slot in [256, 260, 271] {
            for value in [0, e(1, P)] {
                assert_eq!(
                    update(&mut ft, &mut mem, 0, slot, value, DOM_A),
                    Err(Errno::EINVAL),
                    "Xen's mod_l4_entry: L4 update in Xen-private area"
                );
            }
        }
        update(&mut ft, &mut mem, 0, 255, e(1, P), DOM_A).unwrap();
        update(&mut ft, &mut mem, 0, 272, e(1, P | RW | U), DOM_A).unwrap();
        assert_eq!(counts(&ft, 1), (PageType::L3, 3, 3));
        assert_eq!(
            update(&mut ft, &mut mem, 0, 512, 0, DOM_A),
            Err(Errno::EINVAL)
        );
        consistent(&ft, &mem);
    }

    #[test]
    fn entry_bits() {
        // 0: L1, 1: L2, 2: L3, 3: data, 4: L1 for L2 entries, 5: L2 for L3 entries.
        let (mut ft, mut mem) = setup(16, &[0, 1, 2, 3, 4, 5], &[]);
        ft.pin(&mut mem, Mfn(0), DOM_A, PageType::L1).unwrap();
        ft.pin(&mut mem, Mfn(1), DOM_A, PageType::L2).unwrap();
        ft.pin(&mut mem, Mfn(2), DOM_A, PageType::L3).unwrap();
        ft.pin(&mut mem, Mfn(4), DOM_A, PageType::L1).unwrap();
        ft.pin(&mut mem, Mfn(5), DOM_A, PageType::L2).unwrap();
        let high = 1u64 << 45; // above the 40-bit physical width: reserved
        let cases: &[(u64, u64, Option<Errno>)] = &[
            // L1: PAT, PCD, PWT and Xen's grant bit are refused; G, the software bits
            // (9–11, 52–61), U/S, A, D and NX are the guest's.
            (0, e(3, P | pte::PWT), Some(Errno::EINVAL)),
            (0, e(3, P | pte::PCD), Some(Errno::EINVAL)),
            (0, e(3, P | PS), Some(Errno::EINVAL)),
            (0, e(3, P | pte::GNTTAB), Some(Errno::EINVAL)),
            (0, e(3, P) | high, Some(Errno::EINVAL)),
            (
                0,
                e(3, P | RW | U | A | D | G | NX | 0xE00 | (0x3FF << 52)),
                None,
            ),
            // L2, L3: no superpages, no G; bit 62 is the guest's.
            (1, e(4, P | PS), Some(Errno::EINVAL)),
            (1, e(4, P | G), Some(Errno::EINVAL)),
            (1, e(4, P | pte::PCD), Some(Errno::EINVAL)),
            (1, e(4, P) | high, Some(Errno::EINVAL)),
            (
                1,
                e(4, P | RW | U | A | D | NX | 0xE00 | (0x7FF << 52)),
                None,
            ),
            (2, e(5, P | PS), Some(Errno::EINVAL)),
            (2, e(5, P | G), Some(Errno::EINVAL)),
            (2, e(5, P | RW | U | A), None),
            // Not present: only the L1TF rule applies. An address naming RAM is refused,
            // also when it hides above the physical width; other bits are ignored.
            (0, RW | U | PS | pte::PCD | pte::GNTTAB | NX | 0xE00, None),
            (0, e(3, RW), Some(Errno::EINVAL)),
            (0, e(3, 0) | high, Some(Errno::EINVAL)),
            (0, e(1 << 20, RW), None),
            (1, e(4, 0), Some(Errno::EINVAL)),
            (1, e(1 << 27, PS), None),
        ];
        for &(table, value, err) in cases {
            let result = update(&mut ft, &mut mem, table, 7, value, DOM_A);
            assert_eq!(result.err(), err, "table {table}, entry {value:#x}");
            update(&mut ft, &mut mem, table, 7, 0, DOM_A).unwrap();
            consistent(&ft, &mem);
        }

        // Without NX, bit 63 is reserved; without the L1TF mitigation, stale addresses in
        // not-present entries are accepted.
        let (mut ft, mut mem) = setup(16, &[0, 3], &[]);
        ft.config = Config {
            nx: false,
            l1tf_mitigation: false,
            ..config()
        };
        ft.pin(&mut mem, Mfn(0), DOM_A, PageType::L1).unwrap();
        assert_eq!(
            update(&mut ft, &mut mem, 0, 0, e(3, P | NX), DOM_A),
            Err(Errno::EINVAL)
        );
        update(&mut ft, &mut mem, 0, 0, e(3, 0), DOM_A).unwrap();
        consistent(&ft, &mem);
    }

    #[test]
    fn pin_and_unpin_refusals() {
        let (ft, mut mem) = setup(16, &[0, 1], &[5]);
        ft.pin(&mut mem, Mfn(0), DOM_A, PageType::L1).unwrap();
        let before = ft.clone();
        // Xen's do_mmuext_op: "already pinned", "not pinned", bad owner: all -EINVAL.
        assert_eq!(
            ft.pin(&mut mem, Mfn(0), DOM_A, PageType::L1),
            Err(Errno::EINVAL)
        );
        assert_eq!(
            ft.pin(&mut mem, Mfn(0), DOM_A, PageType::L2),
            Err(Errno::EINVAL)
        );
        for ty in [PageType::None, PageType::Writable, PageType::Descriptor] {
            assert_eq!(ft.pin(&mut mem, Mfn(1), DOM_A, ty), Err(Errno::EINVAL));
        }
        assert_eq!(
            ft.pin(&mut mem, Mfn(5), DOM_A, PageType::L1),
            Err(Errno::EINVAL)
        );
        assert_eq!(ft.unpin(&mut mem, Mfn(1), DOM_A), Err(Errno::EINVAL));
        assert_eq!(ft.unpin(&mut mem, Mfn(0), DOM_B), Err(Errno::EINVAL));
        assert_eq!(ft.unpin(&mut mem, Mfn(99), DOM_A), Err(Errno::EINVAL));
        assert_eq!(ft, before);
        ft.unpin(&mut mem, Mfn(0), DOM_A).unwrap();
        assert_eq!(ft.unpin(&mut mem, Mfn(0), DOM_A), Err(Errno::EINVAL));
        assert_eq!(counts(&ft, 0), (PageType::None, 0, 0));
        consistent(&ft, &mem);
    }

    #[test]
    fn base_pointer_refusals() {
        let (mut ft, mut mem) = setup(16, &[0, 2, 3, 4, 6], &[1]);
        ft.pin(&mut mem, Mfn(0), DOM_A, PageType::L3).unwrap();
        ft.pin(&mut mem, Mfn(6), DOM_A, PageType::L1).unwrap();
        update(&mut ft, &mut mem, 6, 0, e(2, P | RW), DOM_A).unwrap();
        let before = ft.clone();
        for (mfn, what) in [(0, "an L3"), (1, "B's"), (2, "writable"), (99, "outside")] {
            assert_eq!(
                ft.set_base(&mut mem, DOM_A, None, Mfn(mfn)),
                Err(Errno::EINVAL),
                "{what}"
            );
        }
        // An `old` that is no base pointer is refused before anything changes.
        assert_eq!(
            ft.set_base(&mut mem, DOM_A, Some(Mfn(4)), Mfn(3)),
            Err(Errno::EINVAL)
        );
        assert_eq!(ft, before);
        ft.set_base(&mut mem, DOM_A, None, Mfn(3)).unwrap();
        ft.set_base(&mut mem, DOM_A, Some(Mfn(3)), Mfn(3)).unwrap();
        assert_eq!(info(&ft, 3).base_refs, 1, "same base: nothing to do");
        // A second vCPU on the same L4.
        ft.set_base(&mut mem, DOM_A, None, Mfn(3)).unwrap();
        assert_eq!(counts(&ft, 3), (PageType::L4, 2, 2));
        assert_eq!(ft.drop_base(&mut mem, DOM_B, Mfn(3)), Err(Errno::EINVAL));
        ft.drop_base(&mut mem, DOM_A, Mfn(3)).unwrap();
        ft.drop_base(&mut mem, DOM_A, Mfn(3)).unwrap();
        assert_eq!(ft.drop_base(&mut mem, DOM_A, Mfn(3)), Err(Errno::EINVAL));
        assert_eq!(counts(&ft, 3), (PageType::None, 0, 0));
        consistent(&ft, &mem);
    }

    #[test]
    fn failed_validation_rolls_everything_back() {
        let (ft, mut mem) = setup(16, &[0, 1, 2, 3, 5, 6], &[9]);
        // L2 0: entries 0 and 1 validate whole L1s, entry 2's L1 maps B's frame.
        mem.set(0, 0, e(1, P | RW));
        mem.set(0, 1, e(2, P));
        mem.set(0, 2, e(3, P));
        mem.set(0, 3, e(1, P));
        mem.set(1, 0, e(5, P | RW));
        mem.set(1, 1, e(6, P));
        mem.set(2, 0, e(5, P | RW));
        mem.set(3, 0, e(6, P | RW));
        mem.set(3, 1, e(9, P));
        let before = ft.effective();
        assert_eq!(
            ft.pin(&mut mem, Mfn(0), DOM_A, PageType::L2),
            Err(Errno::EBUSY)
        );
        assert_eq!(ft.effective(), before);
        consistent(&ft, &mem);
        // With the bad entry gone the same tables validate.
        mem.set(3, 1, 0);
        ft.pin(&mut mem, Mfn(0), DOM_A, PageType::L2).unwrap();
        assert_eq!(counts(&ft, 1), (PageType::L1, 2, 2));
        assert_eq!(counts(&ft, 5), (PageType::Writable, 2, 2));
        assert_eq!(counts(&ft, 6), (PageType::Writable, 1, 2));
        consistent(&ft, &mem);
    }

    #[test]
    fn changes_of_use_flush_before_validation() {
        let (ft, mut mem) = setup(16, &[0, 3], &[]);
        // A fresh frame has no stale translations.
        ft.pin(&mut mem, Mfn(0), DOM_A, PageType::L1).unwrap();
        ft.unpin(&mut mem, Mfn(0), DOM_A).unwrap();
        ft.pin(&mut mem, Mfn(0), DOM_A, PageType::L1).unwrap();
        assert_eq!(mem.flushes(), 0, "None → L1 → L1: no change of use");
        ft.unpin(&mut mem, Mfn(0), DOM_A).unwrap();
        // Writable → L1: the flush comes before the first read of the frame.
        ft.get_page_type(&mut mem, Mfn(3), DOM_A, PageType::Writable)
            .unwrap();
        ft.put_page_type(&mut mem, Mfn(3)).unwrap();
        mem.log_reads = true;
        ft.pin(&mut mem, Mfn(3), DOM_A, PageType::L1).unwrap();
        let log = mem.log.borrow().clone();
        assert_eq!(log.first(), Some(&Event::Flush));
        assert_eq!(log.len(), 1 + ENTRIES);
        assert!(log[1..].iter().all(|e| *e == Event::Read(Mfn(3))));
        // L1 → writable flushes too: a cached walk may still go through the old table.
        ft.unpin(&mut mem, Mfn(3), DOM_A).unwrap();
        ft.get_page_type(&mut mem, Mfn(3), DOM_A, PageType::Writable)
            .unwrap();
        assert_eq!(mem.flushes(), 2);
        // L1 → L2 as well.
        ft.put_page_type(&mut mem, Mfn(0)).unwrap_err();
        ft.pin(&mut mem, Mfn(0), DOM_A, PageType::L2).unwrap();
        assert_eq!(mem.flushes(), 3);
    }

    #[test]
    fn updates_swap_references_and_report() {
        let a: Vec<u64> = (0..16).collect();
        let (mut ft, mut mem) = setup(24, &a, &[]);
        ft.pin(&mut mem, Mfn(0), DOM_A, PageType::L1).unwrap();
        let effect = update(&mut ft, &mut mem, 0, 0, e(3, P | RW), DOM_A).unwrap();
        assert_eq!(effect, UpdateEffect::default());
        assert_eq!(counts(&ft, 3), (PageType::Writable, 1, 1));
        let effect = update(&mut ft, &mut mem, 0, 0, e(3, P), DOM_A).unwrap();
        assert!(effect.stale_translation, "write access removed");
        assert_eq!(counts(&ft, 3), (PageType::None, 0, 1));
        let effect = update(&mut ft, &mut mem, 0, 0, e(3, P | RW | A | D), DOM_A).unwrap();
        assert!(!effect.stale_translation, "more rights only");
        // MMU_PT_UPDATE_PRESERVE_AD keeps the bits the hardware set.
        ft.update_entry(&mut mem, Mfn(0), 0, e(4, P | U), DOM_A, true)
            .unwrap();
        assert_eq!(mem.get(0, 0), e(4, P | U | A | D));
        assert_eq!(counts(&ft, 3), (PageType::None, 0, 0));
        assert_eq!(counts(&ft, 4), (PageType::None, 0, 1));
        let effect = update(&mut ft, &mut mem, 0, 0, e(4, P | U | NX), DOM_A).unwrap();
        assert!(effect.stale_translation, "execute removed");
        let effect = update(&mut ft, &mut mem, 0, 0, e(4, P | NX), DOM_A).unwrap();
        assert!(effect.stale_translation, "user access removed");
        let effect = update(&mut ft, &mut mem, 0, 0, 0, DOM_A).unwrap();
        assert!(effect.stale_translation);
        assert_eq!(counts(&ft, 4), (PageType::None, 0, 0));
        assert!(mem.syncs().is_empty(), "no L4 involved");
        consistent(&ft, &mem);

        // An L4 change synchronises the guest roots before the old L3 loses its type: the
        // old L3 is devalidated (its entries read) only after the sync.
        ft.pin(&mut mem, Mfn(10), DOM_A, PageType::L4).unwrap();
        ft.pin(&mut mem, Mfn(11), DOM_A, PageType::L3).unwrap();
        let effect = update(&mut ft, &mut mem, 10, 3, e(12, P | RW), DOM_A).unwrap();
        assert_eq!(effect.l4_changed, Some(Mfn(10)));
        assert_eq!(counts(&ft, 12), (PageType::L3, 1, 1));
        let effect = update(&mut ft, &mut mem, 10, 3, e(12, P | RW), DOM_A).unwrap();
        assert_eq!(effect.l4_changed, None, "same value");
        mem.log.borrow_mut().clear();
        mem.log_reads = true;
        let effect = update(&mut ft, &mut mem, 10, 3, e(11, P), DOM_A).unwrap();
        mem.log_reads = false;
        assert_eq!(effect.l4_changed, Some(Mfn(10)));
        assert!(effect.stale_translation);
        let log = mem.log.borrow().clone();
        let sync = log.iter().position(|e| *e == Event::Sync(Mfn(10))).unwrap();
        let first_read_of_old = log.iter().position(|e| *e == Event::Read(Mfn(12))).unwrap();
        assert!(sync < first_read_of_old, "{log:?}");
        assert_eq!(counts(&ft, 12), (PageType::None, 0, 0));
        assert_eq!(counts(&ft, 11), (PageType::L3, 2, 2));
        assert_eq!(mem.syncs(), [Mfn(10)]);
        consistent(&ft, &mem);
    }

    #[test]
    fn frames_that_are_no_page_tables_are_written_plainly() {
        let (mut ft, mut mem) = setup(16, &[0, 3, 4, 5, 6], &[9]);
        let effect = update(&mut ft, &mut mem, 3, 7, 0xDEAD, DOM_A).unwrap();
        assert!(effect.plain_write && !effect.stale_translation);
        assert_eq!(mem.get(3, 7), 0xDEAD);
        assert_eq!(counts(&ft, 3), (PageType::None, 0, 0));
        assert_eq!(info(&ft, 3).ty, PageType::Writable, "remembered");
        // Already writable.
        ft.get_page_type(&mut mem, Mfn(4), DOM_A, PageType::Writable)
            .unwrap();
        update(&mut ft, &mut mem, 4, 0, e(0, P), DOM_A).unwrap();
        assert_eq!(counts(&ft, 4), (PageType::Writable, 1, 1));
        assert_eq!(counts(&ft, 0), (PageType::None, 0, 0), "no entry semantics");
        // A descriptor frame is neither.
        ft.get_page_type(&mut mem, Mfn(5), DOM_A, PageType::Descriptor)
            .unwrap();
        assert_eq!(
            update(&mut ft, &mut mem, 5, 0, 1, DOM_A),
            Err(Errno::EINVAL)
        );
        // A former page table with no users becomes writable, with a flush.
        ft.pin(&mut mem, Mfn(6), DOM_A, PageType::L1).unwrap();
        ft.unpin(&mut mem, Mfn(6), DOM_A).unwrap();
        let flushes = mem.flushes();
        update(&mut ft, &mut mem, 6, 0, 0x1234, DOM_A).unwrap();
        assert_eq!(mem.flushes(), flushes + 1);
        assert_eq!(
            update(&mut ft, &mut mem, 9, 0, 1, DOM_A),
            Err(Errno::EINVAL)
        );
        assert_eq!(
            update(&mut ft, &mut mem, 3, 512, 1, DOM_A),
            Err(Errno::EINVAL)
        );
        consistent(&ft, &mem);
    }

    #[test]
    fn descriptor_frames_cannot_be_mapped_writable() {
        let (mut ft, mut mem) = setup(16, &[0, 5], &[]);
        ft.get_page_type(&mut mem, Mfn(5), DOM_A, PageType::Descriptor)
            .unwrap();
        assert!(info(&ft, 5).validated);
        ft.pin(&mut mem, Mfn(0), DOM_A, PageType::L1).unwrap();
        assert_eq!(
            update(&mut ft, &mut mem, 0, 0, e(5, P | RW), DOM_A),
            Err(Errno::EBUSY)
        );
        update(&mut ft, &mut mem, 0, 0, e(5, P), DOM_A).unwrap();
        assert_eq!(ft.count_by_type(DOM_A), [0, 1, 0, 0, 0, 1, 0]);
        consistent(&ft, &mem);
    }

    #[test]
    fn release_domain_frees_everything() {
        let a: Vec<u64> = (10..22).collect();
        let (ft, mut mem) = setup(32, &a, &[24, 25, 26]);
        hierarchy(&mut mem);
        ft.pin(&mut mem, Mfn(10), DOM_A, PageType::L4).unwrap();
        ft.pin(&mut mem, Mfn(13), DOM_A, PageType::L1).unwrap();
        ft.set_base(&mut mem, DOM_A, None, Mfn(10)).unwrap();
        ft.set_base(&mut mem, DOM_A, None, Mfn(10)).unwrap();
        mem.set(15, 0, e(16, P | RW));
        ft.pin(&mut mem, Mfn(15), DOM_A, PageType::L1).unwrap();
        // B has its own tables; they must survive A's release untouched.
        mem.set(24, 0, e(25, P | RW));
        ft.pin(&mut mem, Mfn(24), DOM_B, PageType::L1).unwrap();
        ft.get_page(Mfn(26), DOM_B).unwrap();
        let b_before: Vec<FrameInfo> = [24, 25, 26].iter().map(|&m| info(&ft, m)).collect();
        consistent(&ft, &mem);

        let released = ft.release_domain(&mut mem, DOM_A);
        assert_eq!(
            released.freed,
            a.iter().map(|&m| Mfn(m)).collect::<Vec<_>>()
        );
        assert!(released.still_referenced.is_empty());
        for &m in &a {
            assert_eq!(info(&ft, m), FrameInfo::new(Owner::Free), "frame {m}");
        }
        assert_eq!(ft.count_by_type(DOM_A), [0; 7]);
        let b_after: Vec<FrameInfo> = [24, 25, 26].iter().map(|&m| info(&ft, m)).collect();
        assert_eq!(b_before, b_after);
        consistent(&ft, &mem);

        // References hypervisor code holds keep their frames (and what they keep validated)
        // until they are dropped.
        ft.put_page(Mfn(26)).unwrap();
        ft.get_page_type(&mut mem, Mfn(24), DOM_B, PageType::L1)
            .unwrap();
        let released = ft.release_domain(&mut mem, DOM_B);
        assert_eq!(released.freed, [Mfn(26)]);
        assert_eq!(released.still_referenced, [Mfn(24), Mfn(25)]);
        assert_eq!(counts(&ft, 24), (PageType::L1, 1, 1));
        consistent(&ft, &mem);
        ft.put_page_type(&mut mem, Mfn(24)).unwrap();
        let released = ft.release_domain(&mut mem, DOM_B);
        assert_eq!(released.freed, [Mfn(24), Mfn(25)]);
        assert!(released.still_referenced.is_empty());
        assert_eq!(ft.release_domain(&mut mem, DOM_B), Released::default());
        consistent(&ft, &mem);
    }

    /// Finding 1 of issue 10 (shared_info became the guest's own L1) and finding 4 (grant
    /// frames pinned as page tables): a frame the hypervisor writes is held writable, so
    /// no pin, no table entry and no return of the frame gets it.
    #[test]
    fn frames_the_hypervisor_writes_cannot_be_retyped_or_freed() {
        let a: Vec<u64> = (10..22).collect();
        let (mut ft, mut mem) = setup(32, &a, &[]);
        hierarchy(&mut mem);
        let shared = Mfn(20);
        // Before the hold: the unheld frame is what the check must refuse.
        assert!(ft.check_hypervisor_writes([(shared, DOM_A)]).is_err());
        ft.hold_for_writes(&mut mem, shared, DOM_A).unwrap();
        ft.check_hypervisor_writes([(shared, DOM_A)]).unwrap();
        assert!(ft.check_hypervisor_writes([(shared, DOM_B)]).is_err());
        for level in [PageType::L1, PageType::L2, PageType::L3, PageType::L4] {
            assert_eq!(ft.pin(&mut mem, shared, DOM_A, level), Err(Errno::EINVAL));
        }
        assert_eq!(
            ft.get_page_type(&mut mem, shared, DOM_A, PageType::Descriptor),
            Err(Errno::EINVAL)
        );
        // An L2 entry asking for it as an L1 is refused; mapping it writable is fine.
        ft.pin(&mut mem, Mfn(10), DOM_A, PageType::L4).unwrap();
        let before = ft.effective();
        assert!(update(&mut ft, &mut mem, 12, 7, e(20, P | RW), DOM_A).is_err());
        assert_eq!(ft.effective(), before);
        update(&mut ft, &mut mem, 13, 7, e(20, P | RW), DOM_A).unwrap();
        assert_eq!(ft.unassign(shared, DOM_A), Err(Errno::EBUSY));
        consistent(&ft, &mem);
        // Teardown keeps it until the hypervisor lets go.
        let released = ft.release_domain(&mut mem, DOM_A);
        assert_eq!(released.still_referenced, [shared]);
        assert_eq!(counts(&ft, 20), (PageType::Writable, 1, 1));
        assert_eq!(
            ft.release_writes(&mut mem, shared, DOM_B),
            Err(Errno::EINVAL)
        );
        ft.release_writes(&mut mem, shared, DOM_A).unwrap();
        assert_eq!(
            ft.release_writes(&mut mem, shared, DOM_A),
            Err(Errno::EINVAL)
        );
        let released = ft.release_domain(&mut mem, DOM_A);
        assert_eq!(released.freed, [shared]);
        consistent(&ft, &mem);
    }

    #[test]
    fn frames_of_domains_that_are_gone_are_reported() {
        let (ft, _) = setup(16, &[3, 4], &[5]);
        ft.check_owners(|d| d == DOM_A || d == DOM_B).unwrap();
        let msg = ft.check_owners(|d| d == DOM_A).unwrap_err();
        assert!(
            msg.contains("1 frames") && msg.contains("domain 2"),
            "{msg}"
        );
    }

    /// The consistency check's windows: counts are right across a window boundary.
    #[test]
    fn consistency_windows_cover_every_frame() {
        let frames = CHECK_WINDOW as u64 + 64;
        let ft = FrameTable::new(frames, config());
        let mut mem = Fake::new(frames);
        let last = frames - 1;
        for m in [10, last] {
            ft.set_free(Mfn(m)).unwrap();
            ft.assign(Mfn(m), DOM_A).unwrap();
        }
        mem.set(10, 0, e(last, P | RW));
        ft.pin(&mut mem, Mfn(10), DOM_A, PageType::L1).unwrap();
        ft.check_consistency(&mem).unwrap();
        ft.poke(last as usize, |f| f.ref_count += 1);
        let msg = ft.check_consistency(&mem).unwrap_err();
        assert!(msg.contains(&format!("frame {last:#x}")), "{msg}");
    }

    #[test]
    fn counts_never_overflow() {
        let (ft, mut mem) = setup(16, &[0, 1, 2, 3], &[]);
        let mut ft = ft.with_count_limit(3);
        for _ in 0..3 {
            ft.get_page(Mfn(2), DOM_A).unwrap();
        }
        assert_eq!(ft.get_page(Mfn(2), DOM_A), Err(Errno::EINVAL));
        ft.pin(&mut mem, Mfn(0), DOM_A, PageType::L1).unwrap();
        let before = ft.clone();
        // Xen: a full count in get_page_from_l1e is could_not_pin, -EBUSY.
        assert_eq!(
            update(&mut ft, &mut mem, 0, 0, e(2, P), DOM_A),
            Err(Errno::EBUSY)
        );
        assert_eq!(ft, before);
        // Type counts: three writable mappings, then no more.
        for i in 0..3 {
            update(&mut ft, &mut mem, 0, i, e(3, P | RW), DOM_A).unwrap();
        }
        assert_eq!(counts(&ft, 3), (PageType::Writable, 3, 3));
        assert_eq!(
            update(&mut ft, &mut mem, 0, 3, e(3, P | RW), DOM_A),
            Err(Errno::EBUSY)
        );
        assert_eq!(
            ft.get_page_type(&mut mem, Mfn(3), DOM_A, PageType::Writable),
            Err(Errno::EINVAL)
        );
        consistent(&ft, &mem);
    }

    #[test]
    fn consistency_check_finds_corruption() {
        let a: Vec<u64> = (10..16).collect();
        let (ft, mut mem) = setup(24, &a, &[]);
        hierarchy(&mut mem);
        ft.pin(&mut mem, Mfn(10), DOM_A, PageType::L4).unwrap();
        consistent(&ft, &mem);

        let bad = ft.clone();
        bad.poke(14, |f| f.ref_count += 1);
        let msg = bad.check_consistency(&mem).unwrap_err();
        assert!(msg.contains("frame 0xe"), "{msg}");

        let bad = ft.clone();
        bad.poke(12, |f| f.type_count -= 1);
        assert!(bad.check_consistency(&mem).is_err());

        let bad = ft.clone();
        bad.poke(13, |f| f.ty = PageType::L2);
        assert!(bad.check_consistency(&mem).is_err());

        let bad = ft.clone();
        bad.ref_put(Mfn(15));
        assert!(bad.check_consistency(&mem).unwrap_err().contains("at zero"));

        // An entry changed behind the table's back.
        let mut bad_mem = mem.clone();
        bad_mem.set(13, 5, e(12, P | RW));
        assert!(ft.check_consistency(&bad_mem).is_err());
        let mut bad_mem = mem.clone();
        bad_mem.set(10, 300, e(11, P));
        assert!(ft.check_consistency(&bad_mem).is_err());

        // Each flag rule on its own (the messages say which).
        let bad = ft.clone();
        bad.poke(14, |f| f.validated = false);
        let msg = bad.check_consistency(&mem).unwrap_err();
        assert!(msg.contains("uses but no valid type"), "{msg}");
        let bad = ft.clone();
        bad.poke(15, |f| f.validated = true);
        let msg = bad.check_consistency(&mem).unwrap_err();
        assert!(msg.contains("validated without uses"), "{msg}");
        let bad = ft.clone();
        bad.poke(15, |f| f.pinned = true);
        let msg = bad.check_consistency(&mem).unwrap_err();
        assert!(msg.contains("pinned but no page table"), "{msg}");
        let bad = ft.clone();
        bad.poke(11, |f| f.base_refs = 1);
        let msg = bad.check_consistency(&mem).unwrap_err();
        assert!(msg.contains("base pointer but no L4"), "{msg}");
        let bad = ft.clone();
        bad.poke(12, |f| f.hv_writes = 1);
        let msg = bad.check_consistency(&mem).unwrap_err();
        assert!(msg.contains("written by the hypervisor"), "{msg}");
        let bad = ft.clone();
        bad.poke(20, |f| {
            *f = FrameInfo {
                ref_count: 1,
                ..FrameInfo::new(Owner::Hypervisor)
            }
        });
        let msg = bad.check_consistency(&mem).unwrap_err();
        assert!(msg.contains("has counts or flags"), "{msg}");
    }

    const XEN_PAGE: u32 = sc::PG_OFFLINE_FAILED
        | sc::PG_OFFLINE_XENPAGE
        | (DOMID_XEN as u32) << sc::PG_OFFLINE_OWNER_SHIFT;

    /// Memory offlining: a free frame leaves at once and is never assigned again, until
    /// onlined.
    #[test]
    fn offline_free_frame_is_never_assigned() {
        let (ft, mem) = setup(8, &[1], &[]);
        assert_eq!(ft.offline(Mfn(3), false), Ok(sc::PG_OFFLINE_OFFLINED));
        assert_eq!(ft.offline_state(Mfn(3)), Some(Offline::Offlined));
        assert_eq!(ft.query_offline(Mfn(3)), Ok(sc::PG_OFFLINE_STATUS_OFFLINED));
        assert_eq!(ft.assign(Mfn(3), DOM_A), Err(Errno::EBUSY));
        // Through the hypervisor's give/take-back path too: the state survives owners.
        ft.set_hypervisor(Mfn(3)).unwrap();
        ft.set_free(Mfn(3)).unwrap();
        assert_eq!(ft.assign(Mfn(3), DOM_B), Err(Errno::EBUSY));
        // Again: same answer, nothing changes.
        assert_eq!(ft.offline(Mfn(3), false), Ok(sc::PG_OFFLINE_OFFLINED));
        assert_eq!(ft.offline_counts(), (1, 0));
        consistent(&ft, &mem);
        assert_eq!(ft.online(Mfn(3)), Ok(sc::PG_ONLINE_ONLINED));
        assert_eq!(ft.query_offline(Mfn(3)), Ok(0));
        assert_eq!(ft.online(Mfn(3)), Ok(0), "already online");
        ft.assign(Mfn(3), DOM_B).unwrap();
        assert_eq!(ft.offline_counts(), (0, 0));
        consistent(&ft, &mem);
    }

    /// `give_from_hypervisor` is `set_free` then `assign` in one change: the same record
    /// for a held frame, and the same refusals (with nothing changed) for a free, owned or
    /// offline one, or a reserved domain ID.
    #[test]
    fn give_from_hypervisor_is_free_then_assign() {
        let (ft, mem) = setup(8, &[1], &[]);
        let (twin, _) = setup(8, &[1], &[]);
        for t in [&ft, &twin] {
            t.set_hypervisor(Mfn(3)).unwrap();
            t.set_hypervisor(Mfn(4)).unwrap();
        }
        ft.give_from_hypervisor(Mfn(3), DOM_A).unwrap();
        twin.set_free(Mfn(3)).unwrap();
        twin.assign(Mfn(3), DOM_A).unwrap();
        assert_eq!(ft.info(Mfn(3)), twin.info(Mfn(3)));
        let before = ft.clone();
        assert_eq!(
            ft.give_from_hypervisor(Mfn(3), DOM_B),
            Err(Errno::EINVAL),
            "owned"
        );
        assert_eq!(
            ft.give_from_hypervisor(Mfn(5), DOM_B),
            Err(Errno::EINVAL),
            "free"
        );
        assert_eq!(
            ft.give_from_hypervisor(Mfn(4), DOMID_XEN),
            Err(Errno::EINVAL)
        );
        assert_eq!(ft.give_from_hypervisor(Mfn(99), DOM_B), Err(Errno::EINVAL));
        assert_eq!(ft, before);
        assert_eq!(ft.offline(Mfn(4), true), Ok(sc::PG_OFFLINE_OFFLINED));
        let before = ft.clone();
        assert_eq!(
            ft.give_from_hypervisor(Mfn(4), DOM_B),
            Err(Errno::EBUSY),
            "offline"
        );
        assert_eq!(ft, before);
        consistent(&ft, &mem);
    }

    /// A hypervisor frame the allocator holds (`free`) is offlined; one in use is refused
    /// with Xen's status, and nothing changes.
    #[test]
    fn offline_hypervisor_frames() {
        let (ft, mem) = setup(8, &[], &[]);
        ft.set_hypervisor(Mfn(2)).unwrap();
        assert_eq!(ft.offline(Mfn(2), true), Ok(sc::PG_OFFLINE_OFFLINED));
        let before = ft.clone();
        assert_eq!(ft.offline(Mfn(7), false), Err((Errno::EPERM, XEN_PAGE)));
        assert_eq!(ft, before);
        assert_eq!(ft.query_offline(Mfn(7)), Ok(0));
        assert_eq!(ft.offline(Mfn(8), true), Err((Errno::EINVAL, 0)), "outside");
        assert_eq!(ft.online(Mfn(8)), Err(Errno::EINVAL));
        assert_eq!(ft.query_offline(Mfn(99)), Err(Errno::EINVAL));
        consistent(&ft, &mem);
    }

    /// A domain's frame goes pending and leaves when the domain frees it, by
    /// `decrease_reservation` or by its destruction.
    #[test]
    fn offline_owned_frame_pends_until_freed() {
        let (ft, mut mem) = setup(8, &[1, 2, 3], &[]);
        let pending = sc::PG_OFFLINE_PENDING
            | sc::PG_OFFLINE_OWNED
            | u32::from(DOM_A) << sc::PG_OFFLINE_OWNER_SHIFT;
        assert_eq!(ft.offline(Mfn(1), false), Ok(pending));
        assert_eq!(ft.offline(Mfn(2), false), Ok(pending));
        assert_eq!(ft.offline(Mfn(2), false), Ok(pending), "again");
        assert_eq!(
            ft.query_offline(Mfn(1)),
            Ok(sc::PG_OFFLINE_STATUS_OFFLINE_PENDING)
        );
        assert_eq!(ft.owner(Mfn(1)), Owner::Domain(DOM_A), "still the domain's");
        assert_eq!(ft.offline_counts(), (0, 2));
        consistent(&ft, &mem);
        // decrease_reservation.
        ft.unassign(Mfn(1), DOM_A).unwrap();
        assert_eq!(ft.offline_state(Mfn(1)), Some(Offline::Offlined));
        assert_eq!(ft.assign(Mfn(1), DOM_B), Err(Errno::EBUSY));
        // Destruction.
        let released = ft.release_domain(&mut mem, DOM_A);
        assert_eq!(released.freed, [Mfn(2), Mfn(3)]);
        assert_eq!(ft.offline_state(Mfn(2)), Some(Offline::Offlined));
        assert_eq!(ft.offline_state(Mfn(3)), Some(Offline::Online));
        assert_eq!(ft.offline_counts(), (2, 0));
        consistent(&ft, &mem);
    }

    /// Online cancels a pending offline: the frame stays the domain's and is freed normally.
    #[test]
    fn online_cancels_pending() {
        let (ft, mem) = setup(8, &[1], &[]);
        ft.offline(Mfn(1), false).unwrap();
        assert_eq!(ft.online(Mfn(1)), Ok(sc::PG_ONLINE_ONLINED));
        assert_eq!(ft.query_offline(Mfn(1)), Ok(0));
        ft.unassign(Mfn(1), DOM_A).unwrap();
        assert_eq!(ft.offline_state(Mfn(1)), Some(Offline::Online));
        ft.assign(Mfn(1), DOM_A).unwrap();
        consistent(&ft, &mem);
    }

    /// A domain's frame the hypervisor holds for its own writes (`shared_info`) is refused.
    #[test]
    fn offline_refuses_frames_held_for_hypervisor_writes() {
        let (ft, mut mem) = setup(8, &[1], &[]);
        ft.hold_for_writes(&mut mem, Mfn(1), DOM_A).unwrap();
        let before = ft.clone();
        assert_eq!(ft.offline(Mfn(1), false), Err((Errno::EPERM, XEN_PAGE)));
        assert_eq!(ft, before);
        ft.release_writes(&mut mem, Mfn(1), DOM_A).unwrap();
        assert!(ft.offline(Mfn(1), false).is_ok(), "released: pending now");
    }

    /// The consistency check sees offlining states that cannot happen.
    #[test]
    fn check_sees_bad_offline_states() {
        let (ft, mem) = setup(8, &[1], &[]);
        let bad = ft.clone();
        bad.poke(1, |f| f.offline = Offline::Offlined);
        let msg = bad.check_consistency(&mem).unwrap_err();
        assert!(msg.contains("offlined but"), "{msg}");
        let bad = ft.clone();
        bad.poke(4, |f| f.offline = Offline::Pending);
        let msg = bad.check_consistency(&mem).unwrap_err();
        assert!(msg.contains("pending offline"), "{msg}");
    }

    /// Every way an update can leave a stale, more permissive translation, one at a time
    /// (the flush a guest must be told about), and the ways it cannot.
    #[test]
    fn stale_translations_condition_by_condition() {
        let old = e(5, P | RW | U);
        assert!(!stale_translation(0, old), "nothing was present");
        assert!(!stale_translation(old, old), "the same entry");
        assert!(!stale_translation(e(5, P), old), "rights only added");
        assert!(stale_translation(old, 0), "removed");
        assert!(stale_translation(old, e(6, P | RW | U)), "another frame");
        assert!(stale_translation(old, e(5, P | U)), "RW taken away");
        assert!(stale_translation(old, e(5, P | RW)), "U taken away");
        assert!(
            stale_translation(old, e(5, P | RW | U | NX)),
            "execute taken away"
        );
        assert!(!stale_translation(e(5, P | NX), e(5, P)), "execute given");
    }

    /// Frames at and past the end of the table are outside it, never a slot.
    #[test]
    fn the_last_frame_is_in_the_table_and_the_next_is_not() {
        let (ft, _) = setup(16, &[14], &[]);
        assert_eq!(ft.owner(Mfn(14)), Owner::Domain(DOM_A));
        assert!(ft.info(Mfn(15)).is_some());
        assert!(ft.info(Mfn(16)).is_none());
        assert_eq!(ft.owner(Mfn(16)), Owner::Hypervisor);
        assert_eq!(ft.slot(Mfn(16)), None);
        assert_eq!(ft.slot(Mfn(15)), Some(15));
    }

    /// Random sequences of guest and hypervisor operations over two domains.
    mod random {
        use super::*;
        use proptest::prelude::*;

        const FRAMES: u64 = 32;
        const DOMS: [DomId; 2] = [DOM_A, DOM_B];
        const VCPUS: usize = 2;
        const INDICES: [usize; 6] = [0, 1, 255, 256, 271, 511];

        #[derive(Clone, Debug)]
        enum Op {
            Assign(u64, usize),
            Unassign(u64, usize),
            Pin(u64, usize, usize),
            Unpin(u64, usize),
            Update {
                table: u64,
                index: usize,
                value: u64,
                dom: usize,
                preserve_ad: bool,
            },
            SetBase(usize, usize, u64),
            DropBase(usize, usize),
            GetPage(u64, usize),
            GetType(u64, usize, usize),
            PutHeld(usize),
            Release(usize),
        }

        /// An update: mostly well-formed entries pointing at frames of the same domain (frames
        /// alternate between the two at the start), to grow deep hierarchies; the rest
        /// malformed, foreign, outside the table or above the physical width.
        fn update() -> impl Strategy<Value = Op> {
            let flags = prop_oneof![
                6 => prop::sample::select(vec![P, P | RW, P | U, P | RW | U, P | RW | U | A | D]),
                2 => prop::sample::select(vec![
                    P | RW | NX,
                    P | PS,
                    P | G,
                    P | pte::GNTTAB,
                    P | pte::PWT,
                    P | (1 << 55),
                    RW | U,
                    0,
                ]),
            ];
            let target = prop_oneof![
                6 => (0..FRAMES / 2).prop_map(|k| (true, k)),
                2 => (0..FRAMES + 4).prop_map(|m| (false, m)),
                1 => Just((false, 1u64 << 30)),
            ];
            (
                0..FRAMES + 1,
                prop::sample::select(INDICES.to_vec()),
                0..DOMS.len(),
                any::<bool>(),
                target,
                flags,
                prop::bool::weighted(0.1),
            )
                .prop_map(
                    |(table, index, dom, preserve_ad, (near, n), flags, clear)| {
                        let target = if near { (table + 2 * n) % FRAMES } else { n };
                        let value = if clear { 0 } else { (target << 12) | flags };
                        Op::Update {
                            table,
                            index,
                            value,
                            dom,
                            preserve_ad,
                        }
                    },
                )
        }

        fn op() -> impl Strategy<Value = Op> {
            let mfn = || 0..FRAMES + 1;
            let dom = || 0..DOMS.len();
            prop_oneof![
                1 => (mfn(), dom()).prop_map(|(m, d)| Op::Assign(m, d)),
                1 => (mfn(), dom()).prop_map(|(m, d)| Op::Unassign(m, d)),
                6 => (mfn(), dom(), 0..4usize).prop_map(|(m, d, l)| Op::Pin(m, d, l)),
                2 => (mfn(), dom()).prop_map(|(m, d)| Op::Unpin(m, d)),
                14 => update(),
                2 => (dom(), 0..VCPUS, mfn()).prop_map(|(d, v, m)| Op::SetBase(d, v, m)),
                1 => (dom(), 0..VCPUS).prop_map(|(d, v)| Op::DropBase(d, v)),
                1 => (mfn(), dom()).prop_map(|(m, d)| Op::GetPage(m, d)),
                1 => (mfn(), dom(), 0..PageType::ALL.len())
                    .prop_map(|(m, d, t)| Op::GetType(m, d, t)),
                2 => any::<usize>().prop_map(Op::PutHeld),
                1 => (dom(), prop::bool::weighted(0.3)).prop_filter_map("rare", |(d, go)| go.then_some(Op::Release(d))),
            ]
        }

        /// What the test remembers: base pointers and references held for "hypervisor code".
        struct Model {
            bases: [[Option<Mfn>; VCPUS]; 2],
            /// (frame, typed) references taken through get_page / get_page_type.
            held: Vec<(Mfn, bool)>,
        }

        /// The safety property itself, checked independently of `check_consistency`: every
        /// present entry of a page table in use points at a frame of the same domain that
        /// has the type the entry needs, so nothing is a page table and writable at once.
        fn check_safety(ft: &FrameTable, mem: &Fake) -> Result<(), TestCaseError> {
            for (i, f) in ft.records().enumerate() {
                let f = &f;
                prop_assert!(f.ref_count >= f.type_count, "frame {}: {:?}", i, f);
                if !matches!(f.owner, Owner::Domain(_)) {
                    prop_assert_eq!(*f, FrameInfo::new(f.owner));
                    continue;
                }
                let level = f.current_type();
                if !level.is_page_table() {
                    continue;
                }
                prop_assert!(f.validated);
                for index in 0..ENTRIES {
                    let entry = mem.pages[i][index];
                    if level == PageType::L4 && is_hypervisor_l4_slot(index) {
                        prop_assert_eq!(entry, 0);
                        continue;
                    }
                    if entry & P == 0 {
                        continue;
                    }
                    prop_assert!(level == PageType::L1 || entry & PS == 0);
                    let target = ft.info(Mfn((entry & pte::ADDR) >> 12));
                    prop_assert!(
                        target.is_some(),
                        "{:?} {}[{}] = {:#x}",
                        level,
                        i,
                        index,
                        entry
                    );
                    let t = target.unwrap();
                    prop_assert_eq!(t.owner, f.owner);
                    let needs = match level {
                        PageType::L1 if entry & RW != 0 => Some(PageType::Writable),
                        PageType::L1 => None,
                        _ => level.child(),
                    };
                    if let Some(needs) = needs {
                        prop_assert_eq!(t.current_type(), needs, "{:?} {}[{}]", level, i, index);
                        prop_assert!(t.validated);
                    }
                    if level == PageType::L1 && entry & RW != 0 {
                        prop_assert!(!t.current_type().is_page_table());
                    }
                }
            }
            Ok(())
        }

        fn check(ft: &FrameTable, mem: &Fake, model: &Model) -> Result<(), TestCaseError> {
            if let Err(msg) = ft.check_consistency(mem) {
                return Err(TestCaseError::fail(msg));
            }
            check_safety(ft, mem)?;
            stamps_settled(ft);
            for (i, f) in ft.records().enumerate() {
                let f = &f;
                let mfn = Mfn(i as u64);
                let bases = model
                    .bases
                    .iter()
                    .flatten()
                    .filter(|b| **b == Some(mfn))
                    .count();
                prop_assert_eq!(f.base_refs as usize, bases, "frame {}", i);
                let held = |typed| model.held.iter().filter(|h| **h == (mfn, typed)).count();
                prop_assert_eq!(f.ext_refs as usize, held(false));
                prop_assert_eq!(f.ext_type_refs as usize, held(true));
            }
            Ok(())
        }

        /// What every walk the hypervisor could cache answers now: from each frame in use as
        /// an L4, as its owner, at addresses through the indices the updates use, for a
        /// kernel read, a kernel write, a user write and ring 3's execute question.
        /// Each answer with, for a write that succeeded, whether its frame is plain memory
        /// (`None` or `Writable`: what the fast SYSCALL paths' memos check once and keep).
        /// Every walk of the sample: its answer, ring 3's answer, whether a write's frame
        /// is plain memory, and the frames the walk went through (top-level table first;
        /// `None` when it failed).
        type Walk = (Result<u64, Errno>, Option<bool>, bool, Option<[Mfn; 5]>);
        /// Each walk with what it asked: top-level table, address, kind.
        fn walks(ft: &FrameTable, mem: &Fake) -> Vec<((u64, u64, u8), Walk)> {
            use crate::mm::walk;
            let tables = Walked(ft, mem);
            let mut out = Vec::new();
            for l4 in 0..FRAMES {
                let Some(f) = ft.info(Mfn(l4)) else { continue };
                let Owner::Domain(dom) = f.owner else {
                    continue;
                };
                if f.current_type() != PageType::L4 {
                    continue;
                }
                let frames = |p: walk::Path| [Mfn(l4), p[0], p[1], p[2], p[3]];
                for i4 in INDICES {
                    for (i3, i2, i1) in [(0, 0, 0), (0, 0, 1), (1, 0, 0), (0, 511, 0), (0, 0, 511)]
                    {
                        let low = (i4 as u64) << 39 | i3 << 30 | i2 << 21 | i1 << 12 | 8;
                        let va = if i4 >= 256 {
                            low | 0xFFFF_0000_0000_0000
                        } else {
                            low
                        };
                        for (write, user) in [(false, false), (true, false), (true, true)] {
                            let r = walk::translate_path(&tables, Mfn(l4), dom, va, write, user);
                            let plain = write
                                && r.is_ok_and(|(phys, _)| {
                                    matches!(
                                        ft.current_type(Mfn::from_phys(phys)),
                                        Some(PageType::None | PageType::Writable)
                                    )
                                });
                            let path = r.as_ref().ok().map(|&(_, p)| frames(p));
                            let kind = u8::from(write) | u8::from(user) << 1;
                            out.push((
                                (l4, va, kind),
                                (r.map(|(phys, _)| phys), None, plain, path),
                            ));
                        }
                        let ring3 = walk::user_accessible_path(&tables, Mfn(l4), dom, va);
                        out.push((
                            (l4, va, 4),
                            (
                                Err(Errno::EINVAL),
                                ring3.map(|(user, _)| user),
                                false,
                                ring3.map(|(_, p)| frames(p)),
                            ),
                        ));
                    }
                }
            }
            out
        }

        fn run(ops: Vec<Op>) -> Result<(), TestCaseError> {
            let mut ft = FrameTable::new(FRAMES, config());
            for m in 0..FRAMES {
                ft.set_free(Mfn(m)).unwrap();
            }
            // Most frames start with a domain; the last few are free for Assign.
            for m in 0..FRAMES - 6 {
                ft.assign(Mfn(m), DOMS[(m % 2) as usize]).unwrap();
            }
            let mut mem = Fake::new(FRAMES);
            let mut model = Model {
                bases: [[None; VCPUS]; 2],
                held: Vec::new(),
            };
            // Each domain starts with a four-level table in use as vCPU 0's base: L4 at frame
            // d, then d + 2, d + 4, d + 6 down to data at d + 8, so random updates find deep
            // hierarchies to cut, graft and unmap.
            for (d, &dom) in DOMS.iter().enumerate() {
                let d = d as u64;
                for level in 0..4 {
                    mem.set(d + 2 * level, 0, ((d + 2 * level + 2) << 12) | P | RW | U);
                }
                prop_assert_eq!(ft.set_base(&mut mem, dom, None, Mfn(d)), Ok(()));
                model.bases[d as usize][0] = Some(Mfn(d));
            }
            check(&ft, &mem, &model)?;
            for op in ops {
                let op_name = format!("{op:?}");
                let before = (ft.effective(), mem.pages.clone());
                // The translation cache's rule (`guest::mem::tlb`): while the generation has
                // not moved and no entry was written, every walk answers as before.
                let (generation, writes, walked) = (ft.generation(), mem.writes, walks(&ft, &mem));
                let result: Result<(), Errno> = match op {
                    Op::Assign(m, d) => ft.assign(Mfn(m), DOMS[d]),
                    Op::Unassign(m, d) => ft.unassign(Mfn(m), DOMS[d]),
                    Op::Pin(m, d, l) => ft.pin(&mut mem, Mfn(m), DOMS[d], PageType::ALL[l + 1]),
                    Op::Unpin(m, d) => ft.unpin(&mut mem, Mfn(m), DOMS[d]),
                    Op::Update {
                        table,
                        index,
                        value,
                        dom,
                        preserve_ad,
                    } => {
                        let old = mem.pages[table.min(FRAMES - 1) as usize][index];
                        let r = ft.update_entry(
                            &mut mem,
                            Mfn(table),
                            index,
                            value,
                            DOMS[dom],
                            preserve_ad,
                        );
                        if let Ok(effect) = r {
                            let mut want = value;
                            if preserve_ad && !effect.plain_write {
                                want |= old & (A | D);
                            }
                            prop_assert_eq!(mem.pages[table as usize][index], want);
                        }
                        r.map(|_| ())
                    }
                    Op::SetBase(d, v, m) => {
                        let old = model.bases[d][v];
                        let r = ft.set_base(&mut mem, DOMS[d], old, Mfn(m));
                        if r.is_ok() {
                            model.bases[d][v] = Some(Mfn(m));
                        }
                        r
                    }
                    Op::DropBase(d, v) => match model.bases[d][v].take() {
                        Some(old) => {
                            let r = ft.drop_base(&mut mem, DOMS[d], old);
                            prop_assert_eq!(r, Ok(()));
                            r
                        }
                        None => Ok(()),
                    },
                    Op::GetPage(m, d) => {
                        let r = ft.get_page(Mfn(m), DOMS[d]);
                        if r.is_ok() {
                            model.held.push((Mfn(m), false));
                        }
                        r
                    }
                    Op::GetType(m, d, t) => {
                        let r = ft.get_page_type(&mut mem, Mfn(m), DOMS[d], PageType::ALL[t]);
                        if r.is_ok() {
                            model.held.push((Mfn(m), true));
                        }
                        r
                    }
                    Op::PutHeld(i) => {
                        if model.held.is_empty() {
                            Ok(())
                        } else {
                            let (mfn, typed) = model.held.swap_remove(i % model.held.len());
                            let r = if typed {
                                ft.put_page_type(&mut mem, mfn)
                            } else {
                                ft.put_page(mfn)
                            };
                            prop_assert_eq!(r, Ok(()));
                            r
                        }
                    }
                    Op::Release(d) => {
                        release(&mut ft, &mut mem, &mut model, d)?;
                        Ok(())
                    }
                };
                // What a cache keeps is an answer found: a walk that succeeded answers the
                // same, a write's frame that was plain memory still is, and ring 3's answer
                // is the same (a walk that failed may succeed now: a mapping added, rights
                // given). That holds for every walk while the generation has not moved and no
                // entry was written, and for each walk none of whose frames changed
                // (`FrameTable::unchanged_since`: the translation cache's finer rule).
                let quiet = ft.generation() == generation && mem.writes == writes;
                let now: std::collections::BTreeMap<_, _> = walks(&ft, &mem).into_iter().collect();
                if quiet {
                    prop_assert_eq!(now.len(), walked.len(), "{:?}", op_name);
                }
                for (k, (asked, before)) in walked.iter().enumerate() {
                    let kept = before
                        .3
                        .is_some_and(|frames| ft.unchanged_since(generation, &frames));
                    if !quiet && !kept {
                        continue;
                    }
                    let Some(after) = now.get(asked) else {
                        // Its top-level table is no longer an L4: that moves the generation
                        // and stamps the table.
                        prop_assert!(false, "{} ended walk {} {:?} unnoticed", op_name, k, asked);
                        continue;
                    };
                    prop_assert!(
                        before.0.is_err() || before.0 == after.0,
                        "{} changed walk {} (frames {:?}) without moving the generation or \
                         stamping a frame: {:?} -> {:?}",
                        op_name,
                        k,
                        before.3,
                        before.0,
                        after.0
                    );
                    prop_assert!(
                        before.1.is_none() || before.1 == after.1,
                        "{} changed ring 3's answer {} without moving the generation",
                        op_name,
                        k
                    );
                    prop_assert!(
                        !before.2 || after.2,
                        "{} made written frame {:?} a table or descriptor page without \
                         moving the generation",
                        op_name,
                        before.0
                    );
                }
                if result.is_err() {
                    // A refused operation changes nothing.
                    prop_assert!(ft.effective() == before.0, "{:?} changed the table", result);
                    prop_assert!(mem.pages == before.1, "{:?} changed memory", result);
                }
                check(&ft, &mem, &model)?;
            }
            release(&mut ft, &mut mem, &mut model, 0)?;
            release(&mut ft, &mut mem, &mut model, 1)?;
            for m in 0..FRAMES {
                prop_assert_eq!(ft.info(Mfn(m)), Some(FrameInfo::new(Owner::Free)));
            }
            Ok(())
        }

        /// Domain destruction as the hypervisor does it: its own references first, then the
        /// frame table; every frame of the domain must come back free.
        fn release(
            ft: &mut FrameTable,
            mem: &mut Fake,
            model: &mut Model,
            d: usize,
        ) -> Result<(), TestCaseError> {
            let dom = DOMS[d];
            let (mine, others): (Vec<_>, Vec<_>) =
                model.held.iter().partition(|(m, _)| ft.owned_by(*m, dom));
            for (mfn, typed) in mine {
                let r = if typed {
                    ft.put_page_type(mem, mfn)
                } else {
                    ft.put_page(mfn)
                };
                prop_assert_eq!(r, Ok(()));
            }
            model.held = others;
            model.bases[d] = [None; VCPUS];
            let owned: Vec<Mfn> = (0..FRAMES)
                .map(Mfn)
                .filter(|m| ft.owned_by(*m, dom))
                .collect();
            let other = DOMS[1 - d];
            let others_before: Vec<FrameInfo> = (0..FRAMES)
                .filter(|m| ft.owned_by(Mfn(*m), other))
                .map(|m| ft.info(Mfn(m)).unwrap())
                .collect();
            let released = ft.release_domain(mem, dom);
            prop_assert_eq!(released.freed, owned.clone());
            prop_assert!(released.still_referenced.is_empty());
            for m in owned {
                prop_assert_eq!(ft.info(m), Some(FrameInfo::new(Owner::Free)));
            }
            let others_after: Vec<FrameInfo> = (0..FRAMES)
                .filter(|m| ft.owned_by(Mfn(*m), other))
                .map(|m| ft.info(Mfn(m)).unwrap())
                .collect();
            prop_assert_eq!(others_before, others_after);
            Ok(())
        }

        proptest! {
            #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

            #[test]
            fn random_operations_keep_every_invariant(ops in prop::collection::vec(op(), 1..100)) {
                run(ops)?;
            }
        }
    }
}
