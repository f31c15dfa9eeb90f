//! Grant tables, version 1: how a domain lets another map or copy its frames (DESIGN.md §6),
//! as pure logic the hypercall layer drives. The model and the status codes are Xen's
//! (`xen/common/grant_table.c`); the code is Xenia's.
//!
//! # The model
//!
//! A domain (the *granter*) shares a frame by filling an entry of its grant table — an array
//! of 8-byte [`GrantEntryV1`]s in frames the hypervisor allocated and mapped writable into
//! the granter — and handing the entry's index (the grant reference) to another domain, the
//! only one the entry names. That domain (the *mapper*) then asks the hypervisor to map the
//! frame (`GNTTABOP_map_grant_ref`) or to copy to or from it (`GNTTABOP_copy`).
//!
//! Per domain there are two halves, kept apart so that a domain mapping its own grant (Xen
//! allows it) borrows them separately:
//!
//! * [`Grants`]: the domain's own grant table — the shared entry frames and, per entry in
//!   use, an [`ActiveGrant`]: which domain uses it, the frame it resolved to when first used,
//!   and pin counts (Xen's `active_grant_entry`).
//! * [`MapTrack`]: the mappings the domain holds of other domains' grants, indexed by the
//!   handle the guest uses to unmap (Xen's maptrack).
//!
//! # What is trusted
//!
//! The entry frames are guest-writable memory. Every read of an entry is a snapshot, every
//! change of the `GTF_reading`/`GTF_writing` flags is an atomic operation on the 32-bit word
//! that holds `flags` and `domid` together — a compare-and-swap to set them, re-checking the
//! entry each time and giving up after [`STATUS_ATTEMPTS`] tries against a guest that keeps
//! changing the word (Xen's `_set_status_v1`), an atomic AND to clear them (Xen's
//! `gnttab_clear_flags`). The frame field is read once, when an entry is first pinned, and
//! the frame is remembered in the [`ActiveGrant`]: later changes to the entry do not move
//! an existing mapping.
//!
//! Safety never rests on those flags: they only tell the granter its frame is in use. What
//! keeps a granted frame from being freed, or becoming a page table while mapped writable,
//! is the frame table (`mm::frame_table`): the hypervisor takes a general reference for a
//! read-only use and a [`PageType::Writable`](crate::mm::frame_table::PageType::Writable)
//! type reference for a writable one ([`FrameRefs`]), and drops them only after the mapping
//! is gone from every TLB. A granter can scribble over its entries at any time; it confuses
//! only itself.
//!
//! Nothing here panics on guest input, touches hardware, or takes locks. The caller
//! serialises: one operation at a time on a domain's [`Grants`] and [`MapTrack`], and an
//! operation that involves two domains holds both (Xen's `double_gt_lock` takes the
//! lower-addressed table first; Xenia's single domain lock does it by construction).
//!
//! # What the hypervisor does around each operation
//!
//! `frames` below is the granter's [`GrantFrames`]: its entry frames as seen through the
//! direct map ([`EntryFrames`] does the indexing; the hypervisor only turns each frame of
//! [`Grants::frames`] into a `&'static EntryFrame`).
//!
//! * **`GNTTABOP_setup_table`** (`dom` must be `DOMID_SELF` unless the caller is privileged:
//!   `GNTST_permission_denied`; unknown domain: `GNTST_bad_domain`): `need =
//!   grants.setup_table(nr_frames)?`; allocate `need` frames, zero them, give them to the
//!   domain in the frame table (`assign`) and hold each for the hypervisor's writes
//!   (`hold_for_writes`: a `Writable` type reference) until teardown, so the guest can map
//!   them writable but never make them page tables or free them while the hypervisor writes
//!   `GTF_reading`/`GTF_writing` into them (Xen's `share_xen_page_with_guest(SHARE_rw)` on a
//!   Xen-heap page; a general reference alone, as before issue 10, let a guest pin one as a
//!   page table). If any allocation fails, undo and answer `GNTST_general_error`, as
//!   Xen's `gnttab_grow_table` does; otherwise [`Grants::add_frames`] and write the first
//!   `nr_frames` of [`Grants::frames`] to `frame_list` (`GNTST_bad_virt_addr` if that write
//!   faults). A new domain should get one frame at build time (Xen's
//!   `INITIAL_NR_GRANT_FRAMES`).
//! * **`GNTTABOP_query_size`**: [`Grants::query_size`].
//! * **`GNTTABOP_map_grant_ref`** (`op.dom` is looked up as a real domain ID: `DOMID_SELF`
//!   is `GNTST_bad_domain`, as in Xen): [`map_grant_ref`] with an `install` closure that
//!   takes the frame references of [`Mapping::frame_refs`] in the granter's name — a
//!   failure there is [`FrameRefError`], which converts to Xen's status — and writes the
//!   host PTE at `op.host_addr` (or the PTE at machine address `host_addr` with
//!   `GNTMAP_contains_pte`). If the closure fails it undoes what it did itself; the
//!   function undoes the rest. The PTE is a grant PTE: the frame table must not count it as
//!   an ordinary L1 entry (the references belong to the mapping), and a guest `mmu_update`
//!   that overwrites it must be refused (Xen marks such entries `_PAGE_GNTTAB` and crashes a
//!   domain that removes one behind the grant table's back). Write results back with
//!   [`write_map_result`].
//! * **`GNTTABOP_unmap_grant_ref`**: [`MapTrack::unmap`] with a closure that removes the
//!   PTE at `op.host_addr` after checking it maps [`MapTrackEntry::mfn`] (else
//!   `GNTST_general_error`, as Xen's `replace_grant_host_mapping`). Then, for a batch of at
//!   most [`UNMAP_BATCH`] operations, flush the mapper's TLBs on every pCPU that ran it,
//!   *then* [`Grants::finish_unmap`] on each granter and drop the frame references of
//!   [`Release::frame_refs`]. Not before the flush: once the pins are gone the granter may
//!   revoke the grant and reuse the frame while a stale TLB entry still reaches it (Xen's
//!   `unmap_common` / `gnttab_flush_tlb` / `unmap_common_complete`).
//! * **`GNTTABOP_copy`**: [`copy_one`] per operation, with a [`CopyEnv`] that reaches the
//!   domains' grant tables, the frame table and the direct map; or the same steps by hand:
//!   [`check_copy`], [`Grants::acquire_for_copy`] for each granted end, frame references,
//!   `memcpy`, then everything dropped again ([`Grants::release_for_copy`]).
//! * **Domain teardown**, for dying domain `d` (vCPUs stopped):
//!   1. its mappings of others' grants: [`MapTrack::release_all`]; clear each PTE (the
//!      frame table must not see foreign frames when it devalidates `d`'s page tables),
//!      flush, then [`Grants::finish_unmap`] on each granter and drop the frame references;
//!   2. others' mappings of `d`'s grants: [`Grants::users`] names each user; in each user
//!      `u != d`, [`MapTrack::revoke`]`(d)` and proceed as in step 1 (clear `u`'s PTEs, flush
//!      `u`'s TLBs, finish on `d`, drop references). Xen instead keeps `d` as a zombie until
//!      the mappers unmap; Xenia takes the mappings away, and the mapper's next unmap of such
//!      a handle is `GNTST_bad_handle`;
//!   3. [`Grants::release`] hands back the entry frames (refused while a pin remains): drop
//!      the hypervisor's references on them and let the frame table's release free them.
//!
//! # Departures from Xen
//!
//! * Map and copy ask the caller for the frame references (`install`, [`CopyEnv`]) instead of
//!   taking them here, and the maptrack keeps the frame and the host address of each
//!   mapping so teardown can find the PTE.
//! * `GNTTABOP_copy` checks `offset + len <= 4096` before pinning anything (Xen pins first):
//!   the answer for a bad range is the same, and a doomed copy never sets `GTF_reading` in the
//!   granter's entry, where the granter could see it and fail to revoke.
//! * Running out of maptrack handles is `GNTST_no_space` (-13), which Xen introduced for
//!   exactly this case; older Xen answered `GNTST_no_device_space`.
//! * No transitive or sub-page grants (version 2), no transfer, no IOMMU: a device mapping
//!   is counted like Xen's PV device mappings without an IOMMU, and its bus address is the
//!   machine address.

#![forbid(unsafe_code)]

use alloc::collections::VecDeque;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicU32, Ordering};

use guest_abi::grant::{
    GNTCOPY_DEST_GREF, GNTCOPY_SOURCE_GREF, GNTMAP_DEVICE_MAP, GNTMAP_HOST_MAP, GNTMAP_READONLY,
    GNTST_BAD_COPY_ARG, GNTST_BAD_DOMAIN, GNTST_BAD_GNTREF, GNTST_BAD_HANDLE, GNTST_BAD_PAGE,
    GNTST_BAD_VIRT_ADDR, GNTST_EAGAIN, GNTST_GENERAL_ERROR, GNTST_NO_SPACE, GNTST_OKAY,
    GNTST_PERMISSION_DENIED, GTF_PERMIT_ACCESS, GTF_READING, GTF_READONLY, GTF_SUB_PAGE,
    GTF_TYPE_MASK, GTF_WRITING, GnttabCopy, GnttabMapGrantRef, GnttabQuerySize, GrantEntryV1,
    GrantHandle, GrantRef,
};
use guest_abi::types::{DOMID_SELF, DomId};

use crate::mm::{Mfn, PAGE_SIZE};

// The flags/domid word is read as `flags | domid << 16`: `flags` is the first field of the
// entry, and x86-64 is little-endian.
const _: () = assert!(cfg!(target_endian = "little"));

/// Version-1 entries per frame: 4096 / 8 = 512.
pub const ENTRIES_PER_FRAME: u32 = (PAGE_SIZE as usize / size_of::<GrantEntryV1>()) as u32;

/// 32-bit words per entry frame; entry `i` of a frame is words `2i` (flags, domid) and
/// `2i + 1` (frame).
pub const WORDS_PER_FRAME: usize = PAGE_SIZE as usize / size_of::<u32>();

/// One entry frame seen as atomics, as the hypervisor reaches it through its direct map.
pub type EntryFrame = [AtomicU32; WORDS_PER_FRAME];

/// Frames a domain's table may grow to unless configured otherwise. Xen's
/// `gnttab_max_frames` default was 32 for a long time (it is 64 in current Xen): 16384
/// entries, far more than a handful of paravirtual devices need.
pub const DEFAULT_MAX_FRAMES: u32 = 32;

/// Mappings a domain may hold at once unless configured otherwise: Xen's default
/// `gnttab_max_maptrack_frames` (1024) times the 256 16-byte maptrack entries per frame.
/// dom0's limit; see [`DEFAULT_MAX_MAPTRACK_DOMU`] for other domains.
pub const DEFAULT_MAX_MAPTRACK: u32 = 1024 * 256;

/// Maptrack entries per frame in Xen's accounting (`max_maptrack_frames` counts frames of
/// 256 16-byte entries).
pub const MAPTRACK_PER_FRAME: u32 = 256;

/// Mappings a domain other than dom0 may hold unless its creator asks otherwise
/// (`max_maptrack_frames`, in Xen's frames of 256): 64 frames' worth. Xenia's entries
/// cost about 64 bytes of hypervisor heap each, four times Xen's, so Xen's default of 1024
/// frames would let every domU take 16 MiB of it; 16384 mappings (1 MiB) are plenty for a
/// domain's frontends and keep a hostile domU's share small.
pub const DEFAULT_MAX_MAPTRACK_DOMU: u32 = 64 * MAPTRACK_PER_FRAME;

/// Compare-and-swap attempts on a guest's entry word before the operation fails with
/// `GNTST_general_error`. The guest can change the word faster than the hypervisor can
/// re-read and retry, so an unbounded loop would be a livelock it controls; a few retries
/// allow the legitimate races (the granter toggling `GTF_readonly`). Xen's `_set_status_v1`
/// gives up when `retries++ == 4`, i.e. after five attempts.
pub const STATUS_ATTEMPTS: u32 = 5;

/// Unmap operations between two TLB flushes (Xen's `GNTTAB_UNMAP_BATCH_SIZE`).
pub const UNMAP_BATCH: usize = 32;

/// A pin count at or above this refuses new pins (Xen refuses when any count of
/// `active_grant_entry.pin` has bit 7 set: `act->pin & 0x80808080U`).
const PIN_LIMIT: u8 = 0x80;

/// Why a grant operation failed: Xen's `GNTST_*` codes, written to the operation's `status`
/// field ([`GntError::status`]). Every one is the guest's doing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(i16)]
pub enum GntError {
    /// Bad entry type or domain, read-only grant asked for writing, unstable entry, pin or
    /// frame-type trouble (`GNTST_general_error`).
    GeneralError = GNTST_GENERAL_ERROR,
    /// No such domain (`GNTST_bad_domain`): the caller's answer when a lookup fails, and
    /// [`copy_one`]'s.
    BadDomain = GNTST_BAD_DOMAIN,
    /// Reference beyond the table, or a map asking for neither host nor device mapping
    /// (`GNTST_bad_gntref`).
    BadGntref = GNTST_BAD_GNTREF,
    /// No such mapping handle (`GNTST_bad_handle`).
    BadHandle = GNTST_BAD_HANDLE,
    /// Unusable host address, or `frame_list` not writable (`GNTST_bad_virt_addr`). Not
    /// produced here; for the caller's PTE and copy-out steps.
    BadVirtAddr = GNTST_BAD_VIRT_ADDR,
    /// Naming another domain's frame without a grant in a copy; the caller's answer to an
    /// unprivileged request about another domain (`GNTST_permission_denied`).
    PermissionDenied = GNTST_PERMISSION_DENIED,
    /// The frame is not the owner's, or not a frame at all (`GNTST_bad_page`).
    BadPage = GNTST_BAD_PAGE,
    /// A copy range crosses the end of its frame (`GNTST_bad_copy_arg`).
    BadCopyArg = GNTST_BAD_COPY_ARG,
    /// Try again (`GNTST_eagain`). Not produced here; for callers that must back off.
    Eagain = GNTST_EAGAIN,
    /// The mapper's maptrack is full (`GNTST_no_space`).
    NoSpace = GNTST_NO_SPACE,
}

impl GntError {
    /// The `GNTST_*` value for the operation's `status` field.
    pub const fn status(self) -> i16 {
        self as i16
    }
}

/// The `status` field for an operation's outcome: `GNTST_okay` or the error's code.
pub fn status_of<T>(result: &Result<T, GntError>) -> i16 {
    match result {
        Ok(_) => GNTST_OKAY,
        Err(e) => e.status(),
    }
}

/// Why the caller could not take a frame reference: what [`FrameTable::get_page`] or
/// [`FrameTable::get_page_type`] refused, in the terms Xen answers with.
///
/// [`FrameTable::get_page`]: crate::mm::frame_table::FrameTable::get_page
/// [`FrameTable::get_page_type`]: crate::mm::frame_table::FrameTable::get_page_type
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FrameRefError {
    /// The frame is not the expected owner's (or is no RAM, or its count is full): Xen's
    /// `get_paged_frame` answers `GNTST_bad_page`.
    NotOwned,
    /// The frame cannot take the `Writable` type (it is a page table or a descriptor
    /// table): Xen's `could_not_pin` / `gnttab_copy_claim_buf` answer
    /// `GNTST_general_error`.
    NotWritable,
}

impl From<FrameRefError> for GntError {
    fn from(e: FrameRefError) -> GntError {
        match e {
            FrameRefError::NotOwned => GntError::BadPage,
            FrameRefError::NotWritable => GntError::GeneralError,
        }
    }
}

/// Frame-table references a use of a granted frame holds, taken in the granter's name:
/// `general` of [`FrameTable::get_page`] and `writable` of
/// [`FrameTable::get_page_type`]`(.., PageType::Writable)` (which includes its general
/// reference). One per kind of use (host, device), writable unless read-only: Xen's
/// `map_grant_ref` with `gnttab_host_mapping_get_page_type` true for PV mappers.
///
/// [`FrameTable::get_page`]: crate::mm::frame_table::FrameTable::get_page
/// [`FrameTable::get_page_type`]: crate::mm::frame_table::FrameTable::get_page_type
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FrameRefs {
    /// `get_page` / `put_page` calls.
    pub general: u8,
    /// `get_page_type(Writable)` / `put_page_type` calls.
    pub writable: u8,
}

impl FrameRefs {
    fn for_use(host: bool, device: bool, readonly: bool) -> FrameRefs {
        let uses = u8::from(host) + u8::from(device);
        if readonly {
            FrameRefs {
                general: uses,
                writable: 0,
            }
        } else {
            FrameRefs {
                general: 0,
                writable: uses,
            }
        }
    }
}

// ---- The shared entries. ----

/// A domain's grant-entry frames, as the hypervisor reaches them. Every method is one atomic
/// access to guest-writable memory and answers `None` for an entry that is not backed.
pub trait GrantFrames {
    /// Entry `gref`'s word holding `flags | domid << 16`.
    fn load_word(&self, gref: GrantRef) -> Option<u32>;
    /// Replaces the word with `new` if it still holds `current`: `Ok(current)`, or
    /// `Err(value found)` (a locked `cmpxchg`, Xen's `guest_cmpxchg`).
    fn compare_exchange_word(
        &self,
        gref: GrantRef,
        current: u32,
        new: u32,
    ) -> Option<Result<u32, u32>>;
    /// Clears `flags` bits of the word, whatever the rest holds (a locked `and`).
    fn clear_flags(&self, gref: GrantRef, flags: u16);
    /// Entry `gref`'s frame field.
    fn load_frame(&self, gref: GrantRef) -> Option<u32>;
}

/// A domain's entry frames as the hypervisor reaches them: one [`EntryFrame`] per frame of
/// [`Grants::frames`], in order. The hypervisor builds the references from its direct map
/// (the one `unsafe` step, outside this module); everything else is indexing done here.
#[derive(Clone, Copy, Debug)]
pub struct EntryFrames<'a>(pub &'a [&'a EntryFrame]);

impl EntryFrames<'_> {
    /// Entry `gref`'s frame and the index of its first word there.
    fn locate(&self, gref: GrantRef) -> Option<(&EntryFrame, usize)> {
        let frame = self
            .0
            .get(usize::try_from(gref / ENTRIES_PER_FRAME).ok()?)?;
        Some((frame, (gref % ENTRIES_PER_FRAME) as usize * 2))
    }

    /// Entry `gref`'s flags/domid word.
    pub fn word(&self, gref: GrantRef) -> Option<&AtomicU32> {
        let (frame, index) = self.locate(gref)?;
        frame.get(index)
    }
}

impl GrantFrames for EntryFrames<'_> {
    fn load_word(&self, gref: GrantRef) -> Option<u32> {
        Some(self.word(gref)?.load(Ordering::Acquire))
    }

    fn compare_exchange_word(
        &self,
        gref: GrantRef,
        current: u32,
        new: u32,
    ) -> Option<Result<u32, u32>> {
        Some(
            self.word(gref)?
                .compare_exchange(current, new, Ordering::SeqCst, Ordering::Acquire),
        )
    }

    fn clear_flags(&self, gref: GrantRef, flags: u16) {
        if let Some(w) = self.word(gref) {
            w.fetch_and(!u32::from(flags), Ordering::SeqCst);
        }
    }

    fn load_frame(&self, gref: GrantRef) -> Option<u32> {
        let (frame, index) = self.locate(gref)?;
        Some(frame.get(index + 1)?.load(Ordering::Acquire))
    }
}

/// The flags/domid word for `flags` and `domid` (Xen's `union grant_combo`).
pub const fn entry_word(flags: u16, domid: DomId) -> u32 {
    flags as u32 | (domid as u32) << 16
}

/// The `flags` half of an entry word.
pub const fn word_flags(word: u32) -> u16 {
    word as u16
}

/// The `domid` half of an entry word.
pub const fn word_domid(word: u32) -> DomId {
    (word >> 16) as DomId
}

// ---- Active entries and pins. ----

/// How one use holds a grant: as a host mapping, a device mapping, or both (a copy holds it
/// as a host use for its duration), read-only or writable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Access {
    host: bool,
    device: bool,
    readonly: bool,
}

/// Uses of one grant, by kind (Xen's `GNTPIN_hstw`, `hstr`, `devw`, `devr` counts).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Pins {
    /// Writable host mappings and writable copies in progress.
    pub host_write: u8,
    /// Read-only host mappings and reading copies in progress.
    pub host_read: u8,
    /// Writable device mappings.
    pub device_write: u8,
    /// Read-only device mappings.
    pub device_read: u8,
}

impl Pins {
    /// Nothing uses the grant.
    pub const fn is_empty(&self) -> bool {
        self.host_write == 0
            && self.host_read == 0
            && self.device_write == 0
            && self.device_read == 0
    }

    /// Something uses the grant writable: `GTF_writing` stays set.
    pub const fn has_writers(&self) -> bool {
        self.host_write != 0 || self.device_write != 0
    }

    const fn full(&self) -> bool {
        self.host_write >= PIN_LIMIT
            || self.host_read >= PIN_LIMIT
            || self.device_write >= PIN_LIMIT
            || self.device_read >= PIN_LIMIT
    }

    /// The counts `access` changes.
    fn counts(&mut self, access: Access) -> [Option<&mut u8>; 2] {
        let (host, device) = if access.readonly {
            (&mut self.host_read, &mut self.device_read)
        } else {
            (&mut self.host_write, &mut self.device_write)
        };
        [access.host.then_some(host), access.device.then_some(device)]
    }

    fn add(&mut self, access: Access) {
        for c in self.counts(access).into_iter().flatten() {
            // Below PIN_LIMIT: checked by the caller.
            *c += 1;
        }
    }

    fn remove(&mut self, access: Access) {
        for c in self.counts(access).into_iter().flatten() {
            debug_assert!(*c > 0, "grant pin underflow");
            *c = c.saturating_sub(1);
        }
    }
}

/// A grant in use (Xen's `active_grant_entry`): exists while any pin does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ActiveGrant {
    /// The domain using it: the entry's `domid` when it was first pinned.
    pub user: DomId,
    /// The frame the entry named when it was first pinned.
    pub mfn: Mfn,
    /// How it is used.
    pub pins: Pins,
}

/// A grant of a dying domain that another domain still uses ([`Grants::users`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GrantUse {
    /// The grant.
    pub gref: GrantRef,
    /// Its use.
    pub active: ActiveGrant,
}

/// One domain's own grant table: its shared entry frames and the entries in use.
///
/// Memory is taken when the table grows (`GNTTABOP_setup_table`), as Xen allocates its
/// active frames in `gnttab_grow_table`: mapping and copying allocate nothing here, so a
/// guest cannot make them exhaust the hypervisor's heap.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Grants {
    /// The entry frames, in table order: entry `r` lives in frame `r / 512`.
    frames: Vec<Mfn>,
    max_frames: u32,
    /// Per entry, its use: `nr_entries()` long.
    active: Vec<Option<ActiveGrant>>,
}

impl Grants {
    /// An empty table that may grow to `max_frames` frames.
    pub fn new(max_frames: u32) -> Grants {
        Grants {
            frames: Vec::new(),
            max_frames,
            active: Vec::new(),
        }
    }

    /// The entry frames, in order (what `GNTTABOP_setup_table` returns in `frame_list`).
    pub fn frames(&self) -> &[Mfn] {
        &self.frames
    }

    /// Frames in the table now.
    pub fn nr_frames(&self) -> u32 {
        // Never above max_frames, a u32.
        self.frames.len() as u32
    }

    /// Frames the table may grow to.
    pub fn max_frames(&self) -> u32 {
        self.max_frames
    }

    /// Valid grant references: `0..nr_entries()`.
    pub fn nr_entries(&self) -> u32 {
        self.nr_frames().saturating_mul(ENTRIES_PER_FRAME)
    }

    /// `GNTTABOP_query_size` for this table (`dom` as given).
    pub fn query_size(&self, dom: DomId) -> GnttabQuerySize {
        GnttabQuerySize {
            dom,
            nr_frames: self.nr_frames(),
            max_nr_frames: self.max_frames,
            status: GNTST_OKAY,
        }
    }

    /// `GNTTABOP_setup_table`, first step: how many frames to allocate so the table has at
    /// least `nr_frames` (zero if it has them already; it never shrinks), with the
    /// bookkeeping for them reserved. `GNTST_general_error` beyond the maximum, as Xen's
    /// `gnttab_setup_table`, or if the hypervisor is out of memory (`gnttab_grow_table`).
    pub fn setup_table(&mut self, nr_frames: u32) -> Result<u32, GntError> {
        if nr_frames > self.max_frames {
            let max = self.max_frames;
            log::debug!(target: "grant", "table limited to {max} frames, {nr_frames} asked");
            return Err(GntError::GeneralError);
        }
        let need = nr_frames.saturating_sub(self.nr_frames());
        self.reserve(need)?;
        Ok(need)
    }

    /// `GNTTABOP_setup_table`, second step: appends frames the caller allocated, zeroed and
    /// shared with the domain. `GNTST_general_error` if they would exceed the maximum (or,
    /// without the first step, if memory is short); nothing changes then.
    pub fn add_frames(&mut self, mfns: &[Mfn]) -> Result<(), GntError> {
        let room = self.max_frames - self.nr_frames();
        let added = u32::try_from(mfns.len()).map_err(|_| GntError::GeneralError)?;
        if added > room {
            return Err(GntError::GeneralError);
        }
        self.reserve(added)?;
        // alloc: within the capacity just reserved (both vectors).
        self.frames.extend_from_slice(mfns);
        // alloc: as above.
        self.active.resize(self.nr_entries() as usize, None);
        Ok(())
    }

    /// Room for `frames` more frames and their entries.
    fn reserve(&mut self, frames: u32) -> Result<(), GntError> {
        let entries = frames as usize * ENTRIES_PER_FRAME as usize;
        self.frames
            .try_reserve_exact(frames as usize)
            .and_then(|()| self.active.try_reserve_exact(entries))
            .map_err(|_| {
                log::warn!(target: "grant", "no memory for {frames} more grant frames");
                GntError::GeneralError
            })
    }

    fn slot(&self, gref: GrantRef) -> Option<&Option<ActiveGrant>> {
        self.active.get(usize::try_from(gref).ok()?)
    }

    fn slot_mut(&mut self, gref: GrantRef) -> Option<&mut Option<ActiveGrant>> {
        self.active.get_mut(usize::try_from(gref).ok()?)
    }

    /// The use of grant `gref`, if any.
    pub fn active(&self, gref: GrantRef) -> Option<&ActiveGrant> {
        self.slot(gref)?.as_ref()
    }

    /// Every grant in use, by whom: at teardown, the mappings to revoke (see the module
    /// docs). Xen only warns about them (`grant_table_warn_active_grants`).
    pub fn users(&self) -> Vec<GrantUse> {
        self.active
            .iter()
            .enumerate()
            .filter_map(|(gref, a)| {
                // gref < nr_entries, a u32.
                a.map(|active| GrantUse {
                    gref: gref as GrantRef,
                    active,
                })
            })
            // alloc: teardown only (dom0's destroydomain), bounded by the table's entries.
            .collect()
    }

    /// Teardown, last step: empties the table and returns its entry frames. Refused, with
    /// the uses that remain, while any grant is in use: finishing an unmap writes to the
    /// entry frames, so they must outlive every pin.
    pub fn release(&mut self) -> Result<Vec<Mfn>, Vec<GrantUse>> {
        if self.active.iter().any(Option::is_some) {
            return Err(self.users());
        }
        self.active = Vec::new();
        Ok(core::mem::take(&mut self.frames))
    }

    /// `GNTTABOP_copy`: pins grant `gref` for `copier`'s copy from it (`writable` false)
    /// or to it (`writable` true) and returns its frame. The caller takes the frame
    /// references (a general one, plus the `Writable` type if `writable`), copies, drops
    /// them and calls [`Grants::release_for_copy`] — or uses [`copy_one`], which does all
    /// that. Xen's `acquire_grant_for_copy` for a version-1 entry.
    pub fn acquire_for_copy(
        &mut self,
        frames: &(impl GrantFrames + ?Sized),
        copier: DomId,
        gref: GrantRef,
        writable: bool,
    ) -> Result<Mfn, GntError> {
        self.pin(frames, gref, copier, copy_access(writable), false)
    }

    /// Undoes [`Grants::acquire_for_copy`] (Xen's `release_grant_for_copy`).
    pub fn release_for_copy(
        &mut self,
        frames: &(impl GrantFrames + ?Sized),
        gref: GrantRef,
        writable: bool,
    ) {
        self.unpin(frames, gref, copy_access(writable));
    }

    /// Last step of an unmap, after the mapper's TLBs were flushed: drops the pins of
    /// `release` and clears `GTF_writing` when the last writer went and `GTF_reading` when
    /// the last user did (Xen's `unmap_common_complete`). The caller then drops
    /// [`Release::frame_refs`].
    pub fn finish_unmap(&mut self, frames: &(impl GrantFrames + ?Sized), release: &Release) {
        match self.active(release.gref) {
            Some(a) if a.user == release.mapper && a.mfn == release.mfn => {}
            other => {
                // The maptrack and the pins always agree; anything else is a hypervisor bug.
                let (gref, mapper) = (release.gref, release.mapper);
                log::error!(target: "grant", "unmap of {gref:#x} by d{mapper} is not {other:?}");
                debug_assert!(false, "unmap does not match the active grant");
                return;
            }
        }
        self.unpin(frames, release.gref, release.access());
    }

    /// Takes a pin of kind `access` on grant `gref` for domain `user`, setting the entry's
    /// busy flags first if this pin needs them (Xen's `map_grant_ref` and
    /// `acquire_grant_for_copy`, version-1 paths). `for_map` also refuses `GTF_sub_page`
    /// entries, as Xen does for mappings.
    fn pin(
        &mut self,
        frames: &(impl GrantFrames + ?Sized),
        gref: GrantRef,
        user: DomId,
        access: Access,
        for_map: bool,
    ) -> Result<Mfn, GntError> {
        if gref >= self.nr_entries() {
            log::debug!(target: "grant", "bad ref {gref:#x} (table has {})", self.nr_entries());
            return Err(GntError::BadGntref);
        }
        let active = self.active(gref).copied();
        if let Some(a) = active
            && (a.user != user || a.pins.full())
        {
            let (owner, pins) = (a.user, a.pins);
            log::debug!(target: "grant", "ref {gref:#x} used by d{owner} ({pins:?}), not d{user}");
            return Err(GntError::GeneralError);
        }
        let needs_flags = match active {
            None => true,
            Some(a) => !access.readonly && !a.pins.has_writers(),
        };
        if needs_flags {
            set_status(
                frames,
                gref,
                user,
                access.readonly,
                for_map,
                active.is_some(),
            )?;
        }
        let mfn = match active {
            Some(a) => a.mfn,
            None => match frames.load_frame(gref) {
                Some(frame) => Mfn(u64::from(frame)),
                None => {
                    // Cannot happen for a ref below nr_entries; undo the flags all the same.
                    frames.clear_flags(gref, GTF_READING | GTF_WRITING);
                    return Err(GntError::GeneralError);
                }
            },
        };
        let mut entry = active.unwrap_or(ActiveGrant {
            user,
            mfn,
            pins: Pins::default(),
        });
        entry.pins.add(access);
        if let Some(slot) = self.slot_mut(gref) {
            *slot = Some(entry);
        }
        Ok(mfn)
    }

    /// Drops a pin taken by [`Grants::pin`] and clears the busy flags it no longer needs.
    fn unpin(&mut self, frames: &(impl GrantFrames + ?Sized), gref: GrantRef, access: Access) {
        let Some(slot) = self.slot_mut(gref) else {
            debug_assert!(false, "unpin of a grant beyond the table");
            return;
        };
        let Some(a) = slot else {
            debug_assert!(false, "unpin of a grant not in use");
            return;
        };
        a.pins.remove(access);
        let mut clear = 0;
        if !access.readonly && !a.pins.has_writers() {
            clear |= GTF_WRITING;
        }
        if a.pins.is_empty() {
            clear |= GTF_READING;
            *slot = None;
        }
        if clear != 0 {
            frames.clear_flags(gref, clear);
        }
    }
}

fn copy_access(writable: bool) -> Access {
    Access {
        host: true,
        device: false,
        readonly: !writable,
    }
}

/// Sets `GTF_reading`, and `GTF_writing` unless `readonly`, in entry `gref`, checking the
/// entry on every attempt against the word the attempt replaces (Xen's `_set_status_v1`).
/// An entry already pinned was checked when first pinned (its use is recorded), so only the
/// read-only flag is checked again.
fn set_status(
    frames: &(impl GrantFrames + ?Sized),
    gref: GrantRef,
    user: DomId,
    readonly: bool,
    for_map: bool,
    pinned: bool,
) -> Result<(), GntError> {
    let mask = if for_map {
        GTF_TYPE_MASK | GTF_SUB_PAGE
    } else {
        GTF_TYPE_MASK
    };
    let mut current = frames.load_word(gref).ok_or(GntError::GeneralError)?;
    for _ in 0..STATUS_ATTEMPTS {
        let flags = word_flags(current);
        if !pinned && (flags & mask != GTF_PERMIT_ACCESS || word_domid(current) != user) {
            log::debug!(target: "grant", "ref {gref:#x}: flags {flags:#x}, dom {}; d{user} asked",
                word_domid(current));
            return Err(GntError::GeneralError);
        }
        let mut new = flags | GTF_READING;
        if !readonly {
            if flags & GTF_READONLY != 0 {
                log::debug!(target: "grant", "ref {gref:#x}: write access to a read-only grant");
                return Err(GntError::GeneralError);
            }
            new |= GTF_WRITING;
        }
        let new = entry_word(new, word_domid(current));
        match frames.compare_exchange_word(gref, current, new) {
            Some(Ok(_)) => return Ok(()),
            Some(Err(found)) => current = found,
            None => return Err(GntError::GeneralError),
        }
    }
    log::debug!(target: "grant", "ref {gref:#x}: entry unstable");
    Err(GntError::GeneralError)
}

// ---- Mappings held. ----

/// A mapping this domain holds of a grant (Xen's `grant_mapping`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MapTrackEntry {
    /// The granting domain.
    pub granter: DomId,
    /// The grant.
    pub gref: GrantRef,
    /// The `GNTMAP_*` flags it was mapped with; `GNTMAP_host_map` and `GNTMAP_device_map`
    /// are cleared as those parts are unmapped.
    pub flags: u32,
    /// The granted frame.
    pub mfn: Mfn,
    /// The host address it was mapped at (a virtual address, or a PTE's machine address with
    /// `GNTMAP_contains_pte`): an unmap must name it again.
    pub host_addr: u64,
    /// Where the host PTE was written: the L1 frame (which the mapping holds as an L1,
    /// so it stays a validated page table while the grant PTE is in it) and the index.
    /// Unmap and teardown remove exactly this entry, whatever the mapper's page tables
    /// look like by then.
    pub pte: Option<HostPte>,
}

/// A grant mapping's host PTE: the L1 table frame and the entry's index.
pub type HostPte = (Mfn, usize);

impl MapTrackEntry {
    /// Mapped read-only.
    pub const fn readonly(&self) -> bool {
        self.flags & GNTMAP_READONLY != 0
    }

    /// The host (CPU) mapping is in place.
    pub const fn host(&self) -> bool {
        self.flags & GNTMAP_HOST_MAP != 0
    }

    /// The device mapping is in place.
    pub const fn device(&self) -> bool {
        self.flags & GNTMAP_DEVICE_MAP != 0
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Slot {
    Free,
    /// Taken by a map in progress: not yet a handle the guest may use.
    Reserved,
    Used(MapTrackEntry),
}

/// The mappings one domain holds of grants, by handle. It grows as mappings are made, up to
/// its limit and as far as the hypervisor's heap allows: a guest that asks for more gets
/// `GNTST_no_space`, never a hypervisor allocation failure.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MapTrack {
    owner: DomId,
    slots: Vec<Slot>,
    /// Free slots, oldest first: a freed handle is reused as late as possible, so a guest
    /// that unmaps a handle twice is more likely to hit `GNTST_bad_handle` than someone
    /// else's mapping (Xen appends freed handles to the tail of its free list likewise).
    free: VecDeque<GrantHandle>,
    limit: u32,
}

impl MapTrack {
    /// An empty maptrack for domain `owner`, holding at most `limit` mappings.
    pub fn new(owner: DomId, limit: u32) -> MapTrack {
        MapTrack {
            owner,
            slots: Vec::new(),
            free: VecDeque::new(),
            limit,
        }
    }

    /// The domain whose mappings these are.
    pub fn owner(&self) -> DomId {
        self.owner
    }

    /// Mappings held.
    pub fn len(&self) -> usize {
        self.slots
            .iter()
            .filter(|s| matches!(s, Slot::Used(_)))
            .count()
    }

    /// No mapping held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Heap bytes it takes now.
    pub fn heap_bytes(&self) -> u64 {
        (self.slots.capacity() * size_of::<Slot>()
            + self.free.capacity() * size_of::<GrantHandle>()) as u64
    }

    /// The most [`MapTrack::heap_bytes`] can reach: its limit in slots, and room to spare
    /// for the vector's growth.
    pub fn heap_limit(&self) -> u64 {
        2 * self.limit as u64 * (size_of::<Slot>() + size_of::<GrantHandle>()) as u64
    }

    /// The mapping of `handle`; `GNTST_bad_handle` if there is none.
    pub fn lookup(&self, handle: GrantHandle) -> Result<&MapTrackEntry, GntError> {
        match usize::try_from(handle).ok().and_then(|i| self.slots.get(i)) {
            Some(Slot::Used(e)) => Ok(e),
            _ => Err(GntError::BadHandle),
        }
    }

    /// Every mapping held, as `(handle, mapping)`.
    pub fn entries(&self) -> impl Iterator<Item = (GrantHandle, &MapTrackEntry)> {
        self.slots.iter().enumerate().filter_map(|(i, s)| match s {
            // i < limit, a u32.
            Slot::Used(e) => Some((i as GrantHandle, e)),
            _ => None,
        })
    }

    /// `GNTTABOP_unmap_grant_ref` on this domain's side (Xen's `unmap_common`). A zero
    /// `host_addr` or `dev_bus_addr` leaves that part of the mapping alone, as Xen's ABI
    /// says; a non-zero `dev_bus_addr` must be the mapping's (`GNTST_general_error`).
    /// `remove_pte(host_addr, mapping)` removes the host mapping when one is to go: it checks
    /// the PTE at `host_addr` maps `mapping.mfn` and fails with nothing changed otherwise.
    /// The handle is freed when no part remains.
    ///
    /// Returns what was undone, for [`Grants::finish_unmap`] and the frame references, after
    /// the TLB flush; `None` if nothing was.
    pub fn unmap(
        &mut self,
        handle: GrantHandle,
        host_addr: u64,
        dev_bus_addr: u64,
        remove_pte: impl FnOnce(u64, &MapTrackEntry) -> Result<(), GntError>,
    ) -> Result<Option<Release>, GntError> {
        let entry = *self.lookup(handle)?;
        if dev_bus_addr != 0 && dev_bus_addr != entry.mfn.phys() {
            log::debug!(target: "grant", "handle {handle:#x}: wrong bus address {dev_bus_addr:#x}");
            return Err(GntError::GeneralError);
        }
        let host = host_addr != 0 && entry.host();
        let device = dev_bus_addr != 0 && entry.device();
        if host && host_addr != entry.host_addr {
            // Another address would make the unmap remove a PTE this handle did not
            // make (XSA-224's class): the handle's own address, or nothing.
            log::debug!(
                target: "grant",
                "handle {handle:#x}: mapped at {:#x}, not {host_addr:#x}",
                entry.host_addr
            );
            return Err(GntError::GeneralError);
        }
        if host {
            remove_pte(host_addr, &entry)?;
        }
        let mut remaining = entry;
        if host {
            remaining.flags &= !GNTMAP_HOST_MAP;
        }
        if device {
            remaining.flags &= !GNTMAP_DEVICE_MAP;
        }
        if !remaining.host() && !remaining.device() {
            self.free_slot(handle);
        } else {
            self.set(handle, Slot::Used(remaining));
        }
        Ok((host || device).then(|| Release::of(self.owner, &entry, host, device)))
    }

    /// Teardown of this domain: removes every mapping it holds and returns them, each to be
    /// unmapped as in [`MapTrack::unmap`] (PTE cleared, TLBs flushed, then
    /// [`Grants::finish_unmap`] and the frame references). Xen's `gnttab_release_mappings`.
    pub fn release_all(&mut self) -> Vec<Release> {
        self.take_where(|_| true)
    }

    /// Teardown of domain `granter`: removes every mapping this domain holds of its grants
    /// and returns them, to be unmapped as in [`MapTrack::release_all`]. The guest learns of
    /// it when its next use of the handle answers `GNTST_bad_handle`.
    pub fn revoke(&mut self, granter: DomId) -> Vec<Release> {
        self.take_where(|e| e.granter == granter)
    }

    fn take_where(&mut self, mut pred: impl FnMut(&MapTrackEntry) -> bool) -> Vec<Release> {
        let mut out = Vec::new();
        for i in 0..self.slots.len() {
            if let Slot::Used(e) = self.slots[i]
                && pred(&e)
            {
                // alloc: teardown only (dom0's destroydomain), one per mapping held.
                out.push(Release::of(self.owner, &e, e.host(), e.device()));
                // i < limit, a u32.
                self.free_slot(i as GrantHandle);
            }
        }
        out
    }

    /// A slot for a map in progress, or `None` if the maptrack is full or the hypervisor is
    /// out of memory (Xen's `get_maptrack_handle` fails for either). The free list keeps
    /// room for every slot, so freeing one never allocates.
    fn reserve(&mut self) -> Option<GrantHandle> {
        if let Some(h) = self.free.pop_front() {
            self.set(h, Slot::Reserved);
            return Some(h);
        }
        let next = u32::try_from(self.slots.len()).ok()?;
        if next >= self.limit {
            return None;
        }
        let slots = self.slots.len() + 1;
        self.slots.try_reserve(1).ok()?;
        self.free.try_reserve(slots - self.free.len()).ok()?;
        self.slots.push(Slot::Reserved); // alloc: room reserved just above
        Some(next)
    }

    fn set(&mut self, handle: GrantHandle, slot: Slot) {
        if let Some(s) = usize::try_from(handle)
            .ok()
            .and_then(|i| self.slots.get_mut(i))
        {
            *s = slot;
        }
    }

    fn free_slot(&mut self, handle: GrantHandle) {
        self.set(handle, Slot::Free);
        // alloc: the free list has room for every slot (`reserve`).
        self.free.push_back(handle);
    }
}

/// What an unmap (or a teardown) took away, still to be finished after the TLB flush with
/// [`Grants::finish_unmap`] on the granter and the frame references of
/// [`Release::frame_refs`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Release {
    /// The domain that held the mapping.
    pub mapper: DomId,
    /// The granting domain.
    pub granter: DomId,
    /// The grant.
    pub gref: GrantRef,
    /// The granted frame.
    pub mfn: Mfn,
    /// It was mapped read-only.
    pub readonly: bool,
    /// The host mapping went (its PTE must be gone before the flush; at teardown the caller
    /// clears it at `host_addr`).
    pub host: bool,
    /// The device mapping went.
    pub device: bool,
    /// Where the host mapping was made.
    pub host_addr: u64,
    /// The host PTE to remove at teardown (see [`MapTrackEntry::pte`]).
    pub pte: Option<HostPte>,
}

impl Release {
    fn of(mapper: DomId, e: &MapTrackEntry, host: bool, device: bool) -> Release {
        Release {
            mapper,
            granter: e.granter,
            gref: e.gref,
            mfn: e.mfn,
            readonly: e.readonly(),
            host,
            device,
            host_addr: e.host_addr,
            pte: e.pte,
        }
    }

    fn access(&self) -> Access {
        Access {
            host: self.host,
            device: self.device,
            readonly: self.readonly,
        }
    }

    /// The frame references to drop, in the granter's name, after the flush.
    pub fn frame_refs(&self) -> FrameRefs {
        FrameRefs::for_use(self.host, self.device, self.readonly)
    }
}

// ---- Both halves of a domain. ----

/// A domain's grant state: its own grants and the mappings it holds. The two are public
/// fields so that an operation on a domain's own grant borrows them separately.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GrantTable {
    /// The domain's grant table.
    pub grants: Grants,
    /// The mappings it holds.
    pub maptrack: MapTrack,
}

impl GrantTable {
    /// Empty tables for domain `dom`.
    pub fn new(dom: DomId, max_frames: u32, max_maptrack: u32) -> GrantTable {
        GrantTable {
            grants: Grants::new(max_frames),
            maptrack: MapTrack::new(dom, max_maptrack),
        }
    }

    /// Heap bytes the mappings it holds take now (its grant entries live in guest frames).
    pub fn heap_bytes(&self) -> u64 {
        self.maptrack.heap_bytes()
            + (self.grants.frames.capacity() * size_of::<Mfn>()) as u64
            + (self.grants.active.capacity() * size_of::<Option<ActiveGrant>>()) as u64
    }

    /// The most [`GrantTable::heap_bytes`] can reach under its limits.
    pub fn heap_limit(&self) -> u64 {
        let entries = self.grants.max_frames as usize * ENTRIES_PER_FRAME as usize;
        self.maptrack.heap_limit()
            + (self.grants.max_frames as usize * size_of::<Mfn>()) as u64
            + (entries * size_of::<Option<ActiveGrant>>()) as u64
    }

    /// Empty tables for domain `dom` with Xen's default limits.
    pub fn with_defaults(dom: DomId) -> GrantTable {
        GrantTable::new(dom, DEFAULT_MAX_FRAMES, DEFAULT_MAX_MAPTRACK)
    }
}

// ---- Mapping. ----

/// A mapping being made, as [`map_grant_ref`] hands it to its `install` closure and returns
/// it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Mapping {
    /// The handle the guest gets back.
    pub handle: GrantHandle,
    /// The granting domain, in whose name the frame references are taken.
    pub granter: DomId,
    /// The grant.
    pub gref: GrantRef,
    /// The granted frame.
    pub mfn: Mfn,
    /// Map read-only (the map asked `GNTMAP_readonly`).
    pub readonly: bool,
    /// Make a host (CPU) mapping at `host_addr`.
    pub host: bool,
    /// Make a device mapping (the bus address is [`Mapping::dev_bus_addr`]).
    pub device: bool,
    /// `op.host_addr`.
    pub host_addr: u64,
    /// `op.flags`.
    pub flags: u32,
}

impl Mapping {
    /// The frame references to take, in the granter's name, before writing the PTE.
    pub fn frame_refs(&self) -> FrameRefs {
        FrameRefs::for_use(self.host, self.device, self.readonly)
    }

    /// The bus address of a device mapping, without an IOMMU the machine address (Xen sets
    /// `dev_bus_addr` to it for every successful map).
    pub fn dev_bus_addr(&self) -> u64 {
        self.mfn.phys()
    }
}

/// `GNTTABOP_map_grant_ref`: `mapper` maps grant `op.gref` of `granter` (Xen's
/// `map_grant_ref`, in its order of checks):
///
/// 1. neither `GNTMAP_host_map` nor `GNTMAP_device_map`: `GNTST_bad_gntref`;
/// 2. the maptrack is full: `GNTST_no_space`;
/// 3. the reference is beyond the granter's table: `GNTST_bad_gntref`;
/// 4. the grant is in use by another domain, or a pin count is full; or, for its first use,
///    the entry is not `GTF_permit_access` for `mapper` (or is `GTF_sub_page`); or a
///    writable map of a `GTF_readonly` entry; or the entry kept changing under the
///    compare-and-swap: `GNTST_general_error`;
/// 5. `install` fails: its error (take [`Mapping::frame_refs`] in the granter's name —
///    [`FrameRefError`] converts — then write the PTE, returning where it wrote it).
///
/// On failure nothing is left behind: pins, entry flags and the handle are as before.
pub fn map_grant_ref(
    maptrack: &mut MapTrack,
    grants: &mut Grants,
    granter: DomId,
    frames: &(impl GrantFrames + ?Sized),
    op: &GnttabMapGrantRef,
    install: impl FnOnce(&Mapping) -> Result<Option<HostPte>, GntError>,
) -> Result<Mapping, GntError> {
    let host = op.flags & GNTMAP_HOST_MAP != 0;
    let device = op.flags & GNTMAP_DEVICE_MAP != 0;
    if !host && !device {
        log::debug!(target: "grant", "map flags {:#x} ask for no mapping", op.flags);
        return Err(GntError::BadGntref);
    }
    let access = Access {
        host,
        device,
        readonly: op.flags & GNTMAP_READONLY != 0,
    };
    let mapper = maptrack.owner;
    let Some(handle) = maptrack.reserve() else {
        log::debug!(target: "grant", "d{mapper}: no maptrack handle left");
        return Err(GntError::NoSpace);
    };
    let mfn = match grants.pin(frames, op.gref, mapper, access, true) {
        Ok(mfn) => mfn,
        Err(e) => {
            maptrack.free_slot(handle);
            return Err(e);
        }
    };
    let mapping = Mapping {
        handle,
        granter,
        gref: op.gref,
        mfn,
        readonly: access.readonly,
        host,
        device,
        host_addr: op.host_addr,
        flags: op.flags,
    };
    let pte = match install(&mapping) {
        Ok(pte) => pte,
        Err(e) => {
            grants.unpin(frames, op.gref, access);
            maptrack.free_slot(handle);
            return Err(e);
        }
    };
    maptrack.set(
        handle,
        Slot::Used(MapTrackEntry {
            granter,
            gref: op.gref,
            flags: op.flags,
            mfn,
            host_addr: op.host_addr,
            pte,
        }),
    );
    Ok(mapping)
}

/// Writes a map's outcome into the operation: `status`, and on success `handle` and
/// `dev_bus_addr` (Xen's `map_grant_ref` leaves them alone on failure).
pub fn write_map_result(op: &mut GnttabMapGrantRef, result: &Result<Mapping, GntError>) {
    op.status = status_of(result);
    if let Ok(m) = result {
        op.handle = m.handle;
        op.dev_bus_addr = m.dev_bus_addr();
    }
}

// ---- Copying. ----

/// One end of a checked copy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CopyTarget {
    /// Grant `gref` of domain `granter` (`DOMID_SELF` already resolved to the caller).
    Grant {
        /// The granting domain.
        granter: DomId,
        /// The grant.
        gref: GrantRef,
    },
    /// A frame of the caller's own (a paravirtual caller names machine frames).
    Frame(Mfn),
}

/// One end of a checked copy, with its byte offset.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CopyEnd {
    /// What is copied from or to.
    pub target: CopyTarget,
    /// Byte offset in the frame; `offset + len <= 4096`.
    pub offset: u16,
}

/// A `GNTTABOP_copy` operation whose arguments passed [`check_copy`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CopyArgs {
    /// Read from here.
    pub source: CopyEnd,
    /// Written to here.
    pub dest: CopyEnd,
    /// Bytes.
    pub len: u16,
}

/// Checks a `GNTTABOP_copy` operation's arguments for `caller`: an end that names a frame
/// rather than a grant must be the caller's (`domid` `DOMID_SELF`), else
/// `GNTST_permission_denied` (Xen's `gnttab_copy_lock_domain`); neither range may cross the
/// end of its frame, else `GNTST_bad_copy_arg` (Xen's `gnttab_copy_buf`). Unknown flag bits
/// are ignored, as in Xen.
pub fn check_copy(op: &GnttabCopy, caller: DomId) -> Result<CopyArgs, GntError> {
    let end = |ptr: &guest_abi::grant::GnttabCopyPtr, gref_flag: u16| {
        if op.flags & gref_flag != 0 {
            let granter = if ptr.domid == DOMID_SELF {
                caller
            } else {
                ptr.domid
            };
            Ok(CopyTarget::Grant {
                granter,
                gref: ptr.gref(),
            })
        } else if ptr.domid == DOMID_SELF {
            Ok(CopyTarget::Frame(Mfn(ptr.gmfn())))
        } else {
            log::debug!(target: "grant", "copy names a frame of d{} without a grant", ptr.domid);
            Err(GntError::PermissionDenied)
        }
    };
    let source = end(&op.source, GNTCOPY_SOURCE_GREF)?;
    let dest = end(&op.dest, GNTCOPY_DEST_GREF)?;
    let page = PAGE_SIZE as u32;
    let len = u32::from(op.len);
    if u32::from(op.source.offset) + len > page || u32::from(op.dest.offset) + len > page {
        log::debug!(target: "grant", "copy beyond the frame: {} / {} + {}", op.source.offset,
            op.dest.offset, op.len);
        return Err(GntError::BadCopyArg);
    }
    Ok(CopyArgs {
        source: CopyEnd {
            target: source,
            offset: op.source.offset,
        },
        dest: CopyEnd {
            target: dest,
            offset: op.dest.offset,
        },
        len: op.len,
    })
}

/// What [`copy_one`] needs from the hypervisor.
pub trait CopyEnv {
    /// Runs `f` on domain `dom`'s grant table and entry frames; `None` if there is no such
    /// domain (`GNTST_bad_domain`).
    fn with_grants<R>(
        &mut self,
        dom: DomId,
        f: impl FnOnce(&mut Grants, &dyn GrantFrames) -> R,
    ) -> Option<R>;
    /// Takes a general reference on `mfn` in `owner`'s name, and the `Writable` type if
    /// `writable` (a frame-table `get_page` or `get_page_type`).
    fn get_frame(&mut self, mfn: Mfn, owner: DomId, writable: bool) -> Result<(), FrameRefError>;
    /// Drops what [`CopyEnv::get_frame`] took.
    fn put_frame(&mut self, mfn: Mfn, writable: bool);
    /// Copies `len` bytes from `src` at `src_offset` to `dest` at `dest_offset` through the
    /// direct map. Both ranges lie within their frames; they may overlap (a copy within one
    /// frame), so copy as `core::ptr::copy` does, not `copy_nonoverlapping`. Guests may write
    /// both frames meanwhile: the bytes are theirs to garble.
    fn copy_bytes(&mut self, src: Mfn, src_offset: u16, dest: Mfn, dest_offset: u16, len: u16);
}

/// A copy end held for the duration of the copy.
struct Held {
    mfn: Mfn,
    owner: DomId,
    grant: Option<GrantRef>,
    writable: bool,
}

/// `GNTTABOP_copy`, one operation, for `caller` (Xen's `gnttab_copy_one` with fresh
/// buffers): [`check_copy`]; then for the source and then the destination, pin the grant
/// ([`Grants::acquire_for_copy`]) or take the caller's frame, and take the frame references
/// (writable for the destination); copy; drop everything in reverse order. A granted end
/// whose domain is gone is `GNTST_bad_domain`; a frame reference refused is
/// [`FrameRefError`]'s status.
pub fn copy_one(env: &mut impl CopyEnv, caller: DomId, op: &GnttabCopy) -> Result<(), GntError> {
    let args = check_copy(op, caller)?;
    let source = hold(env, caller, &args.source, false)?;
    let dest = match hold(env, caller, &args.dest, true) {
        Ok(d) => d,
        Err(e) => {
            drop_held(env, source);
            return Err(e);
        }
    };
    env.copy_bytes(
        source.mfn,
        args.source.offset,
        dest.mfn,
        args.dest.offset,
        args.len,
    );
    drop_held(env, dest);
    drop_held(env, source);
    Ok(())
}

fn hold(
    env: &mut impl CopyEnv,
    caller: DomId,
    end: &CopyEnd,
    writable: bool,
) -> Result<Held, GntError> {
    let held = match end.target {
        CopyTarget::Frame(mfn) => Held {
            mfn,
            owner: caller,
            grant: None,
            writable,
        },
        CopyTarget::Grant { granter, gref } => {
            let mfn = env
                .with_grants(granter, |g, frames| {
                    g.acquire_for_copy(frames, caller, gref, writable)
                })
                .ok_or(GntError::BadDomain)??;
            Held {
                mfn,
                owner: granter,
                grant: Some(gref),
                writable,
            }
        }
    };
    if let Err(e) = env.get_frame(held.mfn, held.owner, writable) {
        unpin_held(env, &held);
        return Err(e.into());
    }
    Ok(held)
}

fn drop_held(env: &mut impl CopyEnv, held: Held) {
    env.put_frame(held.mfn, held.writable);
    unpin_held(env, &held);
}

fn unpin_held(env: &mut impl CopyEnv, held: &Held) {
    if let Some(gref) = held.grant {
        // The granter cannot have gone: the caller holds the domains for the whole copy.
        let _ = env.with_grants(held.owner, |g, frames| {
            g.release_for_copy(frames, gref, held.writable)
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mm::frame_table::{Config, ENTRIES, FrameTable, PageMemory, PageType};
    use alloc::boxed::Box;
    use alloc::collections::BTreeMap;
    use alloc::vec;
    use core::cell::Cell;
    use guest_abi::grant::{
        GNTMAP_CONTAINS_PTE, GTF_ACCEPT_TRANSFER, GTF_INVALID, GTF_PCD, GTF_TRANSITIVE,
        GnttabCopyPtr,
    };

    // ---- Fixtures. ----

    const D0: DomId = 0;
    const D1: DomId = 1;
    const D2: DomId = 2;

    /// Entry frames in ordinary memory: what the hypervisor sees through its direct map.
    struct Pages(Vec<Box<EntryFrame>>);

    impl Pages {
        fn new(frames: usize) -> Pages {
            Pages(
                (0..frames)
                    .map(|_| Box::new(core::array::from_fn(|_| AtomicU32::new(0))))
                    .collect(),
            )
        }

        fn view(&self) -> Vec<&EntryFrame> {
            self.0.iter().map(|f| &**f).collect()
        }

        fn word(&self, gref: GrantRef) -> &AtomicU32 {
            let f = &self.0[(gref / ENTRIES_PER_FRAME) as usize];
            &f[(gref % ENTRIES_PER_FRAME) as usize * 2]
        }

        /// The granter fills an entry as the ABI says: domid and frame, then flags.
        fn grant(&self, gref: GrantRef, domid: DomId, frame: u32, flags: u16) {
            let f = &self.0[(gref / ENTRIES_PER_FRAME) as usize];
            let i = (gref % ENTRIES_PER_FRAME) as usize * 2;
            f[i].store(entry_word(0, domid), Ordering::SeqCst);
            f[i + 1].store(frame, Ordering::SeqCst);
            f[i].store(entry_word(flags, domid), Ordering::SeqCst);
        }

        fn flags(&self, gref: GrantRef) -> u16 {
            word_flags(self.word(gref).load(Ordering::SeqCst))
        }
    }

    /// The guest side of revoking a grant (Xen's `gnttab_end_foreign_access_ref_v1`, the
    /// protocol in `grant_table.h`): read the flags, refuse while `GTF_reading` or
    /// `GTF_writing` is set, else compare-and-swap them to zero. Here on the whole word,
    /// which leaves `domid` as it was.
    fn guest_end_foreign_access(word: &AtomicU32) -> bool {
        let mut current = word.load(Ordering::SeqCst);
        loop {
            if word_flags(current) & (GTF_READING | GTF_WRITING) != 0 {
                return false;
            }
            match word.compare_exchange(
                current,
                current & 0xFFFF_0000,
                Ordering::SeqCst,
                Ordering::SeqCst,
            ) {
                Ok(_) => return true,
                Err(found) => current = found,
            }
        }
    }

    fn map_op(gref: GrantRef, flags: u32) -> GnttabMapGrantRef {
        GnttabMapGrantRef {
            host_addr: 0x4000_0000 + u64::from(gref) * 0x1000,
            flags,
            gref,
            dom: D1,
            ..Default::default()
        }
    }

    const HOST: u32 = GNTMAP_HOST_MAP;
    const HOST_RO: u32 = GNTMAP_HOST_MAP | GNTMAP_READONLY;

    /// A granter `D1` with `frames` entry frames and a mapper `D2`, without a frame table.
    struct Pair {
        granter: GrantTable,
        pages: Pages,
        mapper: GrantTable,
    }

    impl Pair {
        fn new(frames: usize) -> Pair {
            Pair::with_limit(frames, 64)
        }

        fn with_limit(frames: usize, maptrack: u32) -> Pair {
            let mut granter = GrantTable::new(D1, 4, maptrack);
            let need = granter.grants.setup_table(frames as u32).unwrap();
            let mfns: Vec<Mfn> = (0..u64::from(need)).map(|i| Mfn(0x100 + i)).collect();
            granter.grants.add_frames(&mfns).unwrap();
            Pair {
                granter,
                pages: Pages::new(frames),
                mapper: GrantTable::new(D2, 4, maptrack),
            }
        }

        fn map(&mut self, gref: GrantRef, flags: u32) -> Result<Mapping, GntError> {
            self.map_with(gref, flags, |_| Ok(None))
        }

        fn map_with(
            &mut self,
            gref: GrantRef,
            flags: u32,
            install: impl FnOnce(&Mapping) -> Result<Option<HostPte>, GntError>,
        ) -> Result<Mapping, GntError> {
            let view = self.pages.view();
            map_grant_ref(
                &mut self.mapper.maptrack,
                &mut self.granter.grants,
                D1,
                &EntryFrames(&view),
                &map_op(gref, flags),
                install,
            )
        }

        /// The whole unmap: maptrack, (flush), finish on the granter.
        fn unmap(&mut self, handle: GrantHandle) -> Result<Option<Release>, GntError> {
            let host_addr = self
                .mapper
                .maptrack
                .lookup(handle)
                .map_or(1, |e| e.host_addr);
            let r = self
                .mapper
                .maptrack
                .unmap(handle, host_addr, 0, |_, _| Ok(()))?;
            if let Some(r) = &r {
                self.granter
                    .grants
                    .finish_unmap(&EntryFrames(&self.pages.view()), r);
            }
            Ok(r)
        }

        fn copy(&mut self, op: &GnttabCopy) -> Result<(), GntError> {
            let mut env = PairEnv {
                pair: self,
                copies: Vec::new(),
            };
            copy_one(&mut env, D2, op)
        }
    }

    /// A [`CopyEnv`] over a [`Pair`]: every frame is usable, copies are logged.
    struct PairEnv<'a> {
        pair: &'a mut Pair,
        copies: Vec<(Mfn, u16, Mfn, u16, u16)>,
    }

    impl CopyEnv for PairEnv<'_> {
        fn with_grants<R>(
            &mut self,
            dom: DomId,
            f: impl FnOnce(&mut Grants, &dyn GrantFrames) -> R,
        ) -> Option<R> {
            (dom == D1).then(|| {
                f(
                    &mut self.pair.granter.grants,
                    &EntryFrames(&self.pair.pages.view()),
                )
            })
        }

        fn get_frame(&mut self, _: Mfn, _: DomId, _: bool) -> Result<(), FrameRefError> {
            Ok(())
        }

        fn put_frame(&mut self, _: Mfn, _: bool) {}

        fn copy_bytes(&mut self, src: Mfn, so: u16, dest: Mfn, dof: u16, len: u16) {
            self.copies.push((src, so, dest, dof, len));
        }
    }

    fn copy_op(source: GnttabCopyPtr, dest: GnttabCopyPtr, len: u16, flags: u16) -> GnttabCopy {
        GnttabCopy {
            source,
            dest,
            len,
            flags,
            status: 0,
        }
    }

    // ---- The ABI as this module sees it. ----

    #[test]
    fn status_codes_are_xens() {
        use guest_abi::grant::*;
        let codes = [
            (GntError::GeneralError, GNTST_GENERAL_ERROR, -1),
            (GntError::BadDomain, GNTST_BAD_DOMAIN, -2),
            (GntError::BadGntref, GNTST_BAD_GNTREF, -3),
            (GntError::BadHandle, GNTST_BAD_HANDLE, -4),
            (GntError::BadVirtAddr, GNTST_BAD_VIRT_ADDR, -5),
            (GntError::PermissionDenied, GNTST_PERMISSION_DENIED, -8),
            (GntError::BadPage, GNTST_BAD_PAGE, -9),
            (GntError::BadCopyArg, GNTST_BAD_COPY_ARG, -10),
            (GntError::Eagain, GNTST_EAGAIN, -12),
            (GntError::NoSpace, GNTST_NO_SPACE, -13),
        ];
        for (e, abi, xen) in codes {
            assert_eq!((e.status(), abi), (xen, xen), "{e:?}");
        }
        assert_eq!(status_of(&Ok::<(), GntError>(())), GNTST_OKAY);
        assert_eq!(status_of::<()>(&Err(GntError::BadHandle)), -4);
        assert_eq!(GntError::from(FrameRefError::NotOwned), GntError::BadPage);
        assert_eq!(
            GntError::from(FrameRefError::NotWritable),
            GntError::GeneralError
        );
    }

    #[test]
    fn entry_frames_index_like_the_abi() {
        assert_eq!(ENTRIES_PER_FRAME, 512);
        assert_eq!(WORDS_PER_FRAME, 1024);
        assert_eq!(
            entry_word(GTF_PERMIT_ACCESS | GTF_READONLY, 0x7FF0),
            0x7FF0_0005
        );
        assert_eq!(
            (word_flags(0x7FF0_0005), word_domid(0x7FF0_0005)),
            (5, 0x7FF0)
        );
        let pages = Pages::new(2);
        let view = pages.view();
        let frames = EntryFrames(&view);
        pages.grant(513, 7, 0xABCD, GTF_PERMIT_ACCESS);
        // Entry 513 is entry 1 of frame 1: words 2 and 3.
        assert_eq!(pages.0[1][2].load(Ordering::SeqCst), entry_word(1, 7));
        assert_eq!(pages.0[1][3].load(Ordering::SeqCst), 0xABCD);
        assert_eq!(frames.load_word(513), Some(entry_word(1, 7)));
        assert_eq!(frames.load_frame(513), Some(0xABCD));
        assert_eq!(frames.load_word(1024), None);
        assert_eq!(frames.load_frame(u32::MAX), None);
        assert_eq!(frames.compare_exchange_word(1024, 0, 1), None);
        frames.clear_flags(1024, 0xFFFF); // out of range: nothing happens
        assert_eq!(
            frames.compare_exchange_word(513, 0, 1),
            Some(Err(entry_word(1, 7)))
        );
        assert_eq!(
            frames.compare_exchange_word(513, entry_word(1, 7), entry_word(9, 7)),
            Some(Ok(entry_word(1, 7)))
        );
        frames.clear_flags(513, 8);
        assert_eq!(frames.load_word(513), Some(entry_word(1, 7)));
    }

    // ---- setup_table, query_size. ----

    #[test]
    fn setup_table_grows_to_the_limit_and_never_shrinks() {
        let mut g = Grants::new(3);
        assert_eq!((g.nr_frames(), g.nr_entries()), (0, 0));
        assert_eq!(g.setup_table(1), Ok(1));
        g.add_frames(&[Mfn(10)]).unwrap();
        assert_eq!(g.setup_table(1), Ok(0));
        assert_eq!(g.setup_table(0), Ok(0));
        assert_eq!(g.setup_table(3), Ok(2));
        assert_eq!(g.setup_table(4), Err(GntError::GeneralError));
        assert_eq!(g.setup_table(u32::MAX), Err(GntError::GeneralError));
        g.add_frames(&[Mfn(11), Mfn(12)]).unwrap();
        assert_eq!(g.frames(), &[Mfn(10), Mfn(11), Mfn(12)]);
        assert_eq!(g.nr_entries(), 3 * 512);
        assert_eq!(g.add_frames(&[Mfn(13)]), Err(GntError::GeneralError));
        assert_eq!(g.nr_frames(), 3);
        let q = g.query_size(DOMID_SELF);
        assert_eq!(
            (q.dom, q.nr_frames, q.max_nr_frames, q.status),
            (DOMID_SELF, 3, 3, GNTST_OKAY)
        );
        let d = GrantTable::with_defaults(D1);
        assert_eq!(d.grants.max_frames(), 32);
        assert_eq!(d.maptrack.owner(), D1);
    }

    // ---- Mapping and unmapping. ----

    #[test]
    fn map_unmap_round_trip_leaves_the_entry_clean() {
        let mut p = Pair::new(1);
        p.pages.grant(5, D2, 0x1234, GTF_PERMIT_ACCESS);
        let m = p.map(5, HOST).unwrap();
        assert_eq!(
            (m.granter, m.gref, m.mfn, m.readonly, m.host, m.device),
            (D1, 5, Mfn(0x1234), false, true, false)
        );
        assert_eq!(
            m.frame_refs(),
            FrameRefs {
                general: 0,
                writable: 1
            }
        );
        assert_eq!(
            p.pages.flags(5),
            GTF_PERMIT_ACCESS | GTF_READING | GTF_WRITING
        );
        let a = *p.granter.grants.active(5).unwrap();
        assert_eq!((a.user, a.mfn, a.pins.host_write), (D2, Mfn(0x1234), 1));
        let e = *p.mapper.maptrack.lookup(m.handle).unwrap();
        assert_eq!(
            (
                e.granter,
                e.gref,
                e.mfn,
                e.host_addr,
                e.host(),
                e.readonly()
            ),
            (D1, 5, Mfn(0x1234), map_op(5, 0).host_addr, true, false)
        );

        let r = p.unmap(m.handle).unwrap().unwrap();
        assert_eq!(
            (
                r.mapper, r.granter, r.gref, r.mfn, r.host, r.device, r.readonly
            ),
            (D2, D1, 5, Mfn(0x1234), true, false, false)
        );
        assert_eq!(
            r.frame_refs(),
            FrameRefs {
                general: 0,
                writable: 1
            }
        );
        assert_eq!(p.pages.flags(5), GTF_PERMIT_ACCESS);
        assert_eq!(p.pages.word(5).load(Ordering::SeqCst) >> 16, u32::from(D2));
        assert!(p.granter.grants.active(5).is_none());
        assert!(p.mapper.maptrack.is_empty());
        assert_eq!(p.unmap(m.handle), Err(GntError::BadHandle));
    }

    #[test]
    fn read_only_map_sets_only_reading() {
        let mut p = Pair::new(1);
        p.pages.grant(1, D2, 77, GTF_PERMIT_ACCESS | GTF_READONLY);
        let m = p.map(1, HOST_RO).unwrap();
        assert!(m.readonly);
        assert_eq!(
            m.frame_refs(),
            FrameRefs {
                general: 1,
                writable: 0
            }
        );
        assert_eq!(
            p.pages.flags(1),
            GTF_PERMIT_ACCESS | GTF_READONLY | GTF_READING
        );
        p.unmap(m.handle).unwrap();
        assert_eq!(p.pages.flags(1), GTF_PERMIT_ACCESS | GTF_READONLY);
    }

    #[test]
    fn read_only_grant_mapped_writable_is_refused() {
        let mut p = Pair::new(1);
        p.pages.grant(1, D2, 77, GTF_PERMIT_ACCESS | GTF_READONLY);
        let before = p.pages.word(1).load(Ordering::SeqCst);
        // Xen: "Attempt to write-pin a r/o grant entry", GNTST_general_error.
        assert_eq!(p.map(1, HOST), Err(GntError::GeneralError));
        assert_eq!(p.pages.word(1).load(Ordering::SeqCst), before);
        assert!(p.granter.grants.active(1).is_none());
        assert!(p.mapper.maptrack.is_empty());
        // Also when a read-only mapping already pins it.
        let ro = p.map(1, HOST_RO).unwrap();
        assert_eq!(p.map(1, HOST), Err(GntError::GeneralError));
        assert_eq!(
            p.pages.flags(1),
            GTF_PERMIT_ACCESS | GTF_READONLY | GTF_READING
        );
        p.unmap(ro.handle).unwrap();
        assert_eq!(p.pages.word(1).load(Ordering::SeqCst), before);
    }

    #[test]
    fn reference_beyond_the_table_is_bad_gntref() {
        let mut p = Pair::new(1);
        assert_eq!(p.map(512, HOST), Err(GntError::BadGntref));
        assert_eq!(p.map(u32::MAX, HOST_RO), Err(GntError::BadGntref));
        let mut empty = Pair::new(0);
        assert_eq!(empty.map(0, HOST), Err(GntError::BadGntref));
        assert!(p.mapper.maptrack.is_empty());
    }

    #[test]
    fn map_without_host_or_device_is_bad_gntref() {
        let mut p = Pair::new(1);
        p.pages.grant(0, D2, 1, GTF_PERMIT_ACCESS);
        assert_eq!(p.map(0, GNTMAP_READONLY), Err(GntError::BadGntref));
        assert_eq!(p.map(0, GNTMAP_CONTAINS_PTE), Err(GntError::BadGntref));
        assert_eq!(p.pages.flags(0), GTF_PERMIT_ACCESS);
    }

    #[test]
    fn entry_for_another_domain_is_refused() {
        let mut p = Pair::new(1);
        p.pages.grant(3, D0, 1, GTF_PERMIT_ACCESS);
        // Xen's _set_status_v1: "Bad flags or dom", GNTST_general_error.
        assert_eq!(p.map(3, HOST), Err(GntError::GeneralError));
        assert_eq!(p.map(3, HOST_RO), Err(GntError::GeneralError));
        assert_eq!(p.pages.flags(3), GTF_PERMIT_ACCESS);
        assert!(p.mapper.maptrack.is_empty());
    }

    #[test]
    fn entry_that_grants_no_access_is_refused() {
        let mut p = Pair::new(1);
        for (gref, flags) in [
            (0, GTF_INVALID),
            (1, GTF_ACCEPT_TRANSFER),
            (2, GTF_TRANSITIVE),
            (3, GTF_PERMIT_ACCESS | GTF_SUB_PAGE),
            (4, GTF_READONLY | GTF_READING),
        ] {
            p.pages.grant(gref, D2, 1, flags);
            assert_eq!(
                p.map(gref, HOST_RO),
                Err(GntError::GeneralError),
                "{flags:#x}"
            );
            assert_eq!(p.pages.flags(gref), flags);
        }
        // Cache-attribute flags do not change the type.
        p.pages.grant(5, D2, 1, GTF_PERMIT_ACCESS | GTF_PCD);
        assert!(p.map(5, HOST_RO).is_ok());
    }

    #[test]
    fn a_grant_in_use_serves_only_its_user() {
        let mut p = Pair::new(1);
        p.pages.grant(0, D2, 9, GTF_PERMIT_ACCESS);
        let m = p.map(0, HOST_RO).unwrap();
        // The granter re-points the busy entry at D0; D0 cannot use it, D2 still can.
        p.pages.grant(0, D0, 10, GTF_PERMIT_ACCESS | GTF_READING);
        let mut other = MapTrack::new(D0, 4);
        let view = p.pages.view();
        let r = map_grant_ref(
            &mut other,
            &mut p.granter.grants,
            D1,
            &EntryFrames(&view),
            &map_op(0, HOST_RO),
            |_| Ok(None),
        );
        assert_eq!(r, Err(GntError::GeneralError));
        drop(view);
        // The pinned use keeps the frame it resolved to.
        assert_eq!(p.map(0, HOST_RO).unwrap().mfn, Mfn(9));
        assert_eq!(m.mfn, Mfn(9));
    }

    #[test]
    fn flags_follow_the_last_reader_and_writer() {
        let mut p = Pair::new(1);
        p.pages.grant(2, D2, 5, GTF_PERMIT_ACCESS);
        let ro1 = p.map(2, HOST_RO).unwrap();
        assert_eq!(p.pages.flags(2), GTF_PERMIT_ACCESS | GTF_READING);
        let rw = p.map(2, HOST).unwrap();
        let ro2 = p.map(2, HOST_RO).unwrap();
        assert_eq!(
            p.pages.flags(2),
            GTF_PERMIT_ACCESS | GTF_READING | GTF_WRITING
        );
        let pins = p.granter.grants.active(2).unwrap().pins;
        assert_eq!((pins.host_read, pins.host_write), (2, 1));
        p.unmap(rw.handle).unwrap();
        assert_eq!(p.pages.flags(2), GTF_PERMIT_ACCESS | GTF_READING);
        p.unmap(ro1.handle).unwrap();
        assert_eq!(p.pages.flags(2), GTF_PERMIT_ACCESS | GTF_READING);
        p.unmap(ro2.handle).unwrap();
        assert_eq!(p.pages.flags(2), GTF_PERMIT_ACCESS);
        assert!(p.granter.grants.users().is_empty());
    }

    #[test]
    fn host_and_device_mappings_are_counted_apart() {
        let mut p = Pair::new(1);
        p.pages.grant(0, D2, 0x42, GTF_PERMIT_ACCESS);
        let m = p.map(0, GNTMAP_HOST_MAP | GNTMAP_DEVICE_MAP).unwrap();
        assert_eq!(
            m.frame_refs(),
            FrameRefs {
                general: 0,
                writable: 2
            }
        );
        assert_eq!(m.dev_bus_addr(), 0x42_000);
        let pins = p.granter.grants.active(0).unwrap().pins;
        assert_eq!((pins.host_write, pins.device_write), (1, 1));

        // A wrong bus address changes nothing (Xen: GNTST_general_error).
        let mt = &mut p.mapper.maptrack;
        assert_eq!(
            mt.unmap(m.handle, 0, 0x43_000, |_, _| Ok(())),
            Err(GntError::GeneralError)
        );
        // Zero addresses undo nothing, as the ABI says.
        assert_eq!(mt.unmap(m.handle, 0, 0, |_, _| Ok(())), Ok(None));
        // The device part alone.
        let r = mt
            .unmap(m.handle, 0, 0x42_000, |_, _| Ok(()))
            .unwrap()
            .unwrap();
        assert_eq!((r.host, r.device), (false, true));
        assert_eq!(
            r.frame_refs(),
            FrameRefs {
                general: 0,
                writable: 1
            }
        );
        p.granter
            .grants
            .finish_unmap(&EntryFrames(&p.pages.view()), &r);
        // Still writable-mapped by the host part.
        assert_eq!(
            p.pages.flags(0),
            GTF_PERMIT_ACCESS | GTF_READING | GTF_WRITING
        );
        let e = *p.mapper.maptrack.lookup(m.handle).unwrap();
        assert!(e.host() && !e.device());
        let r = p.unmap(m.handle).unwrap().unwrap();
        assert_eq!((r.host, r.device), (true, false));
        assert_eq!(p.pages.flags(0), GTF_PERMIT_ACCESS);
        assert!(p.mapper.maptrack.is_empty());
    }

    /// Issue 10, finding 2: an unmap naming another address than the handle's (where another
    /// handle maps the same frame) must change nothing, and the PTE location recorded at map
    /// time is what the removal is given.
    #[test]
    fn unmap_must_name_the_handles_own_address() {
        let mut p = Pair::new(1);
        p.pages.grant(0, D2, 0x42, GTF_PERMIT_ACCESS);
        let m1 = p.map_with(0, HOST, |_| Ok(Some((Mfn(0x77), 5)))).unwrap();
        let mut op2 = map_op(0, HOST);
        op2.host_addr += 0x10_0000;
        let view = p.pages.view();
        let m2 = map_grant_ref(
            &mut p.mapper.maptrack,
            &mut p.granter.grants,
            D1,
            &EntryFrames(&view),
            &op2,
            |_| Ok(Some((Mfn(0x77), 6))),
        )
        .unwrap();
        drop(view);
        let before = p.mapper.maptrack.clone();
        let mut called = false;
        let r = p.mapper.maptrack.unmap(m1.handle, m2.host_addr, 0, |_, _| {
            called = true;
            Ok(())
        });
        assert_eq!(r, Err(GntError::GeneralError));
        assert!(!called, "the PTE of another handle must not be touched");
        assert_eq!(p.mapper.maptrack, before);
        // Its own address: the removal gets the recorded PTE.
        let r = p
            .mapper
            .maptrack
            .unmap(m1.handle, m1.host_addr, 0, |_, e| {
                assert_eq!(e.pte, Some((Mfn(0x77), 5)));
                Ok(())
            })
            .unwrap()
            .unwrap();
        assert_eq!(r.pte, Some((Mfn(0x77), 5)));
        // Teardown hands out the second mapping's recorded PTE.
        let rest = p.mapper.maptrack.release_all();
        assert_eq!(rest.len(), 1);
        assert_eq!(rest[0].pte, Some((Mfn(0x77), 6)));
    }

    #[test]
    fn unmap_is_refused_when_the_pte_is_not_the_grants() {
        let mut p = Pair::new(1);
        p.pages.grant(0, D2, 0x42, GTF_PERMIT_ACCESS);
        let m = p.map(0, HOST).unwrap();
        let r = p
            .mapper
            .maptrack
            .unmap(m.handle, 0xDEAD_0000, 0, |addr, e| {
                assert_eq!((addr, e.mfn), (0xDEAD_0000, Mfn(0x42)));
                Err(GntError::GeneralError)
            });
        assert_eq!(r, Err(GntError::GeneralError));
        assert!(p.mapper.maptrack.lookup(m.handle).is_ok());
        assert_eq!(
            p.pages.flags(0),
            GTF_PERMIT_ACCESS | GTF_READING | GTF_WRITING
        );
    }

    #[test]
    fn wrong_handles_are_bad_handle() {
        let mut p = Pair::new(1);
        for h in [0, 1, 63, 64, u32::MAX] {
            assert_eq!(p.unmap(h), Err(GntError::BadHandle));
            assert_eq!(p.mapper.maptrack.lookup(h).err(), Some(GntError::BadHandle));
        }
        p.pages.grant(0, D2, 1, GTF_PERMIT_ACCESS);
        let m = p.map(0, HOST_RO).unwrap();
        assert_eq!(p.unmap(m.handle + 1), Err(GntError::BadHandle));
        p.unmap(m.handle).unwrap();
        assert_eq!(p.unmap(m.handle), Err(GntError::BadHandle));
    }

    #[test]
    fn failed_install_is_rolled_back() {
        let mut p = Pair::new(1);
        p.pages.grant(0, D2, 0x42, GTF_PERMIT_ACCESS);
        let r = p.map_with(0, HOST, |m| {
            assert_eq!(m.mfn, Mfn(0x42));
            Err(FrameRefError::NotWritable.into())
        });
        assert_eq!(r, Err(GntError::GeneralError));
        assert_eq!(p.pages.flags(0), GTF_PERMIT_ACCESS);
        assert!(p.granter.grants.active(0).is_none());
        assert!(p.mapper.maptrack.is_empty());

        // With a read-only mapping in place, a failed writable one takes back only
        // GTF_writing.
        let ro = p.map(0, HOST_RO).unwrap();
        let r = p.map_with(0, HOST, |_| Err(GntError::BadVirtAddr));
        assert_eq!(r, Err(GntError::BadVirtAddr));
        assert_eq!(p.pages.flags(0), GTF_PERMIT_ACCESS | GTF_READING);
        let pins = p.granter.grants.active(0).unwrap().pins;
        assert_eq!(
            pins,
            Pins {
                host_read: 1,
                ..Pins::default()
            }
        );
        assert_eq!(p.mapper.maptrack.len(), 1);
        p.unmap(ro.handle).unwrap();
        assert_eq!(p.pages.flags(0), GTF_PERMIT_ACCESS);
    }

    #[test]
    fn maptrack_exhaustion_is_no_space() {
        let mut p = Pair::with_limit(1, 3);
        p.pages.grant(0, D2, 1, GTF_PERMIT_ACCESS);
        let handles: Vec<_> = (0..3).map(|_| p.map(0, HOST_RO).unwrap().handle).collect();
        assert_eq!(handles, [0, 1, 2]);
        // Xen >= 4.16 answers GNTST_no_space ("Failed to obtain maptrack handle").
        assert_eq!(p.map(0, HOST_RO), Err(GntError::NoSpace));
        // Checked before the reference, as in Xen.
        assert_eq!(p.map(9999, HOST_RO), Err(GntError::NoSpace));
        p.unmap(1).unwrap();
        assert_eq!(p.map(0, HOST_RO).unwrap().handle, 1);
        assert_eq!(p.map(0, HOST_RO), Err(GntError::NoSpace));
        assert_eq!(p.granter.grants.active(0).unwrap().pins.host_read, 3);
    }

    #[test]
    fn freed_handles_are_reused_oldest_first() {
        let mut p = Pair::new(1);
        p.pages.grant(0, D2, 1, GTF_PERMIT_ACCESS);
        let h: Vec<_> = (0..4).map(|_| p.map(0, HOST_RO).unwrap().handle).collect();
        p.unmap(h[2]).unwrap();
        p.unmap(h[0]).unwrap();
        assert_eq!(p.map(0, HOST_RO).unwrap().handle, h[2]);
        assert_eq!(p.map(0, HOST_RO).unwrap().handle, h[0]);
        assert_eq!(p.map(0, HOST_RO).unwrap().handle, 4);
    }

    #[test]
    fn pin_counts_stop_before_they_overflow() {
        let mut p = Pair::with_limit(1, 1000);
        p.pages.grant(0, D2, 1, GTF_PERMIT_ACCESS);
        for _ in 0..0x80 {
            p.map(0, HOST_RO).unwrap();
        }
        // Xen: "risk of counter overflow", GNTST_general_error.
        assert_eq!(p.map(0, HOST_RO), Err(GntError::GeneralError));
        // Each kind has its own count; any full count refuses every new pin.
        assert_eq!(p.map(0, HOST), Err(GntError::GeneralError));
        assert_eq!(p.mapper.maptrack.len(), 0x80);
        p.unmap(0).unwrap();
        assert!(p.map(0, HOST).is_ok());
    }

    #[test]
    fn map_result_is_written_back() {
        let mut p = Pair::new(1);
        p.pages.grant(0, D2, 0x42, GTF_PERMIT_ACCESS);
        let mut op = map_op(0, HOST);
        let r = p.map(0, HOST);
        write_map_result(&mut op, &r);
        assert_eq!((op.status, op.handle, op.dev_bus_addr), (0, 0, 0x42_000));
        let mut op = map_op(600, HOST);
        op.handle = 77;
        write_map_result(&mut op, &Err(GntError::BadGntref));
        assert_eq!((op.status, op.handle, op.dev_bus_addr), (-3, 77, 0));
    }

    #[test]
    fn a_domain_maps_its_own_grant() {
        let mut d = GrantTable::new(D1, 1, 8);
        d.grants.add_frames(&[Mfn(1)]).unwrap();
        let pages = Pages::new(1);
        pages.grant(0, D1, 0x99, GTF_PERMIT_ACCESS);
        let view = pages.view();
        let GrantTable { grants, maptrack } = &mut d;
        let m = map_grant_ref(
            maptrack,
            grants,
            D1,
            &EntryFrames(&view),
            &map_op(0, HOST),
            |_| Ok(None),
        )
        .unwrap();
        assert_eq!((m.granter, m.mfn), (D1, Mfn(0x99)));
        let r = maptrack
            .unmap(m.handle, m.host_addr, 0, |_, _| Ok(()))
            .unwrap()
            .unwrap();
        grants.finish_unmap(&EntryFrames(&view), &r);
        assert_eq!(pages.flags(0), GTF_PERMIT_ACCESS);
    }

    // ---- Ending a grant. ----

    #[test]
    fn granter_cannot_end_a_mapped_grant() {
        let mut p = Pair::new(1);
        p.pages.grant(4, D2, 0x42, GTF_PERMIT_ACCESS);
        let m = p.map(4, HOST).unwrap();
        assert!(!guest_end_foreign_access(p.pages.word(4)));
        assert_eq!(
            p.pages.flags(4),
            GTF_PERMIT_ACCESS | GTF_READING | GTF_WRITING
        );

        // Unmapped but not finished: the TLB flush has not happened, the grant stays busy.
        let r = p
            .mapper
            .maptrack
            .unmap(m.handle, m.host_addr, 0, |_, _| Ok(()))
            .unwrap()
            .unwrap();
        assert!(!guest_end_foreign_access(p.pages.word(4)));

        p.granter
            .grants
            .finish_unmap(&EntryFrames(&p.pages.view()), &r);
        assert!(guest_end_foreign_access(p.pages.word(4)));
        assert_eq!(p.pages.flags(4), GTF_INVALID);
        // Ended: no new mapping.
        assert_eq!(p.map(4, HOST_RO), Err(GntError::GeneralError));
    }

    #[test]
    fn granter_can_end_a_read_only_grant_only_after_the_last_reader() {
        let mut p = Pair::new(1);
        p.pages.grant(4, D2, 0x42, GTF_PERMIT_ACCESS | GTF_READONLY);
        let a = p.map(4, HOST_RO).unwrap();
        let b = p.map(4, HOST_RO).unwrap();
        p.unmap(a.handle).unwrap();
        assert!(!guest_end_foreign_access(p.pages.word(4)));
        p.unmap(b.handle).unwrap();
        assert!(guest_end_foreign_access(p.pages.word(4)));
    }

    // ---- A hostile granter. ----

    /// Entry frames whose owner changes the word after every read: a cache-attribute bit
    /// that does not make the entry invalid, so only the compare-and-swap notices.
    struct Flipping<'a> {
        inner: EntryFrames<'a>,
        /// Flips left; `u32::MAX` for a granter that never stops.
        flips: Cell<u32>,
        cas_attempts: Cell<u32>,
    }

    impl GrantFrames for Flipping<'_> {
        fn load_word(&self, gref: GrantRef) -> Option<u32> {
            let w = self.inner.load_word(gref);
            self.flip(gref);
            w
        }

        fn compare_exchange_word(
            &self,
            gref: GrantRef,
            current: u32,
            new: u32,
        ) -> Option<Result<u32, u32>> {
            self.cas_attempts.set(self.cas_attempts.get() + 1);
            let r = self.inner.compare_exchange_word(gref, current, new);
            if r.is_some_and(|r| r.is_err()) {
                self.flip(gref);
            }
            r
        }

        fn clear_flags(&self, gref: GrantRef, flags: u16) {
            self.inner.clear_flags(gref, flags);
        }

        fn load_frame(&self, gref: GrantRef) -> Option<u32> {
            self.inner.load_frame(gref)
        }
    }

    impl Flipping<'_> {
        fn flip(&self, gref: GrantRef) {
            if self.flips.get() > 0 {
                self.flips.set(self.flips.get().saturating_sub(1));
                self.inner
                    .word(gref)
                    .unwrap()
                    .fetch_xor(u32::from(GTF_PCD), Ordering::SeqCst);
            }
        }
    }

    #[test]
    fn a_granter_that_keeps_changing_its_entry_gets_bounded_retries() {
        let pages = Pages::new(1);
        pages.grant(0, D2, 0x42, GTF_PERMIT_ACCESS);
        let view = pages.view();
        let hostile = Flipping {
            inner: EntryFrames(&view),
            flips: Cell::new(u32::MAX),
            cas_attempts: Cell::new(0),
        };
        let mut grants = Grants::new(1);
        grants.add_frames(&[Mfn(1)]).unwrap();
        let mut mt = MapTrack::new(D2, 4);
        let r = map_grant_ref(&mut mt, &mut grants, D1, &hostile, &map_op(0, HOST), |_| {
            panic!("nothing to install")
        });
        // Xen: "Shared grant entry is unstable", GNTST_general_error.
        assert_eq!(r, Err(GntError::GeneralError));
        assert_eq!(hostile.cas_attempts.get(), STATUS_ATTEMPTS);
        assert_eq!(pages.flags(0) & (GTF_READING | GTF_WRITING), 0);
        assert!(grants.users().is_empty() && mt.is_empty());

        // Copies use the same bounded loop.
        hostile.cas_attempts.set(0);
        assert_eq!(
            grants.acquire_for_copy(&hostile, D2, 0, false),
            Err(GntError::GeneralError)
        );
        assert_eq!(hostile.cas_attempts.get(), STATUS_ATTEMPTS);

        // A granter that stops in time is served.
        hostile.flips.set(STATUS_ATTEMPTS - 1);
        hostile.cas_attempts.set(0);
        let before = pages.flags(0);
        let m = map_grant_ref(&mut mt, &mut grants, D1, &hostile, &map_op(0, HOST), |_| {
            Ok(None)
        })
        .unwrap();
        assert_eq!(hostile.cas_attempts.get(), STATUS_ATTEMPTS);
        // Four flips of GTF_PCD: the granter's bit is where it left it.
        assert_eq!(pages.flags(0), before | GTF_READING | GTF_WRITING);
        let r = mt
            .unmap(m.handle, m.host_addr, 0, |_, _| Ok(()))
            .unwrap()
            .unwrap();
        grants.finish_unmap(&hostile, &r);
        assert_eq!(pages.flags(0), before);
    }

    #[test]
    fn a_granter_flipping_its_entry_from_another_cpu_cannot_hurt() {
        extern crate std;
        use core::sync::atomic::AtomicBool;
        let pages = Pages::new(1);
        pages.grant(0, D2, 0x42, GTF_PERMIT_ACCESS);
        let mut grants = Grants::new(1);
        grants.add_frames(&[Mfn(1)]).unwrap();
        let mut mt = MapTrack::new(D2, 8);
        const ROUNDS: u32 = 20_000;
        let (started, stop) = (AtomicBool::new(false), AtomicBool::new(false));
        let (mut ok, mut refused) = (0, 0);
        std::thread::scope(|s| {
            // The granter toggles a cache bit, GTF_readonly and its domain field as fast as it
            // can: every retry path of the compare-and-swap loop gets its turn.
            s.spawn(|| {
                let w = pages.word(0);
                let mut i = 0u32;
                started.store(true, Ordering::SeqCst);
                while !stop.load(Ordering::Relaxed) {
                    w.fetch_xor(u32::from(GTF_PCD), Ordering::SeqCst);
                    if i.is_multiple_of(3) {
                        w.fetch_xor(u32::from(GTF_READONLY), Ordering::SeqCst);
                    }
                    if i.is_multiple_of(7) {
                        w.fetch_xor(1 << 16, Ordering::SeqCst);
                    }
                    i = i.wrapping_add(1);
                }
            });
            while !started.load(Ordering::SeqCst) {
                std::thread::yield_now();
            }
            let view = pages.view();
            let frames = EntryFrames(&view);
            let mut held = None;
            for i in 0..ROUNDS {
                // Half the time a read-only mapping is held, so writable maps take the
                // "already pinned" path.
                if i % 5000 == 0 {
                    if let Some(h) = held.take() {
                        let addr = mt.lookup(h).unwrap().host_addr;
                        let r = mt.unmap(h, addr, 0, |_, _| Ok(())).unwrap().unwrap();
                        grants.finish_unmap(&frames, &r);
                    } else {
                        held = map_grant_ref(
                            &mut mt,
                            &mut grants,
                            D1,
                            &frames,
                            &map_op(0, HOST_RO),
                            |_| Ok(None),
                        )
                        .ok()
                        .map(|m| m.handle);
                    }
                }
                let flags = if i % 2 == 0 { HOST } else { HOST_RO };
                match map_grant_ref(&mut mt, &mut grants, D1, &frames, &map_op(0, flags), |_| {
                    Ok(None)
                }) {
                    Ok(m) => {
                        ok += 1;
                        let r = mt
                            .unmap(m.handle, m.host_addr, 0, |_, _| Ok(()))
                            .unwrap()
                            .unwrap();
                        grants.finish_unmap(&frames, &r);
                    }
                    Err(e) => {
                        assert_eq!(e, GntError::GeneralError);
                        refused += 1;
                    }
                }
                assert_eq!(grants.users().len(), usize::from(held.is_some()));
                assert_eq!(mt.len(), usize::from(held.is_some()));
            }
            if let Some(h) = held {
                let addr = mt.lookup(h).unwrap().host_addr;
                let r = mt.unmap(h, addr, 0, |_, _| Ok(())).unwrap().unwrap();
                grants.finish_unmap(&frames, &r);
            }
            stop.store(true, Ordering::Relaxed);
        });
        assert_eq!(ok + refused, ROUNDS);
        // Every pin went, so every busy flag went.
        assert!(grants.users().is_empty() && mt.is_empty());
        assert_eq!(pages.flags(0) & (GTF_READING | GTF_WRITING), 0);
    }

    // ---- Copying. ----

    #[test]
    fn copy_arguments_are_checked() {
        let gref = |r, off| GnttabCopyPtr::from_gref(r, D1, off);
        let both = GNTCOPY_SOURCE_GREF | GNTCOPY_DEST_GREF;
        for (op, want) in [
            (copy_op(gref(0, 0), gref(1, 0), 4096, both), Ok(())),
            (copy_op(gref(0, 4095), gref(1, 0), 1, both), Ok(())),
            (copy_op(gref(0, 4096), gref(1, 0), 0, both), Ok(())),
            (
                copy_op(gref(0, 1), gref(1, 0), 4096, both),
                Err(GntError::BadCopyArg),
            ),
            (
                copy_op(gref(0, 0), gref(1, 4000), 97, both),
                Err(GntError::BadCopyArg),
            ),
            (
                copy_op(gref(0, u16::MAX), gref(1, 0), u16::MAX, both),
                Err(GntError::BadCopyArg),
            ),
            (
                copy_op(gref(0, 4097), gref(1, 0), 0, both),
                Err(GntError::BadCopyArg),
            ),
            // A frame must be the caller's own: Xen's gnttab_copy_lock_domain.
            (
                copy_op(
                    GnttabCopyPtr {
                        u: 5,
                        domid: D1,
                        offset: 0,
                    },
                    gref(1, 0),
                    8,
                    GNTCOPY_DEST_GREF,
                ),
                Err(GntError::PermissionDenied),
            ),
            (
                copy_op(
                    gref(0, 0),
                    GnttabCopyPtr {
                        u: 5,
                        domid: D0,
                        offset: 0,
                    },
                    8,
                    GNTCOPY_SOURCE_GREF,
                ),
                Err(GntError::PermissionDenied),
            ),
        ] {
            assert_eq!(check_copy(&op, D2).map(|_| ()), want, "{op:?}");
        }
        let a = check_copy(
            &copy_op(
                GnttabCopyPtr::from_gmfn(0x55, 8),
                GnttabCopyPtr::from_gref(3, DOMID_SELF, 16),
                32,
                GNTCOPY_DEST_GREF | 0xFF00,
            ),
            D2,
        )
        .unwrap();
        assert_eq!(
            a.source,
            CopyEnd {
                target: CopyTarget::Frame(Mfn(0x55)),
                offset: 8
            }
        );
        assert_eq!(
            a.dest,
            CopyEnd {
                target: CopyTarget::Grant {
                    granter: D2,
                    gref: 3
                },
                offset: 16
            }
        );
        assert_eq!(a.len, 32);
    }

    #[test]
    fn copy_between_a_grant_and_the_callers_frame() {
        let mut p = Pair::new(1);
        p.pages.grant(0, D2, 0x42, GTF_PERMIT_ACCESS | GTF_READONLY);
        p.pages.grant(1, D2, 0x43, GTF_PERMIT_ACCESS);
        // From a read-only grant to the caller's frame.
        let mut env = PairEnv {
            pair: &mut p,
            copies: Vec::new(),
        };
        let op = copy_op(
            GnttabCopyPtr::from_gref(0, D1, 100),
            GnttabCopyPtr::from_gmfn(0x77, 200),
            300,
            GNTCOPY_SOURCE_GREF,
        );
        copy_one(&mut env, D2, &op).unwrap();
        // From the caller's frame into a writable grant.
        let op = copy_op(
            GnttabCopyPtr::from_gmfn(0x77, 0),
            GnttabCopyPtr::from_gref(1, D1, 8),
            16,
            GNTCOPY_DEST_GREF,
        );
        copy_one(&mut env, D2, &op).unwrap();
        assert_eq!(
            env.copies,
            [
                (Mfn(0x42), 100, Mfn(0x77), 200, 300),
                (Mfn(0x77), 0, Mfn(0x43), 8, 16)
            ]
        );
        // Pins lasted only for the copy.
        assert_eq!(p.pages.flags(0), GTF_PERMIT_ACCESS | GTF_READONLY);
        assert_eq!(p.pages.flags(1), GTF_PERMIT_ACCESS);
        assert!(p.granter.grants.users().is_empty());
    }

    #[test]
    fn copy_refusals() {
        let mut p = Pair::new(1);
        p.pages.grant(0, D2, 0x42, GTF_PERMIT_ACCESS | GTF_READONLY);
        p.pages.grant(1, D2, 0x43, GTF_PERMIT_ACCESS);
        p.pages.grant(2, D0, 0x44, GTF_PERMIT_ACCESS);
        p.pages.grant(3, D2, 0x45, GTF_PERMIT_ACCESS | GTF_SUB_PAGE);
        let both = GNTCOPY_SOURCE_GREF | GNTCOPY_DEST_GREF;
        let g = |r| GnttabCopyPtr::from_gref(r, D1, 0);
        for (op, want) in [
            // Into a read-only grant: Xen's "write-pin a r/o grant entry".
            (copy_op(g(1), g(0), 8, both), GntError::GeneralError),
            // A grant for someone else.
            (copy_op(g(2), g(1), 8, both), GntError::GeneralError),
            (copy_op(g(1), g(2), 8, both), GntError::GeneralError),
            // Beyond the table.
            (copy_op(g(512), g(1), 8, both), GntError::BadGntref),
            (copy_op(g(1), g(512), 8, both), GntError::BadGntref),
            // No such domain.
            (
                copy_op(GnttabCopyPtr::from_gref(0, 9, 0), g(1), 8, both),
                GntError::BadDomain,
            ),
            (
                with_dest_offset(copy_op(g(0), g(1), 4096, both), 1),
                GntError::BadCopyArg,
            ),
        ] {
            assert_eq!(p.copy(&op), Err(want), "{op:?}");
            for r in 0..3 {
                assert_eq!(p.pages.flags(r) & (GTF_READING | GTF_WRITING), 0, "{op:?}");
            }
            assert!(p.granter.grants.users().is_empty(), "{op:?}");
        }
        // Sub-page entries can be copied, not mapped (Xen: mask GTF_sub_page for maps only).
        assert_eq!(p.copy(&copy_op(g(3), g(1), 8, both)), Ok(()));
        assert_eq!(p.map(3, HOST_RO), Err(GntError::GeneralError));
        // A copy alongside a mapping leaves the mapping's pins and flags alone.
        let m = p.map(1, HOST_RO).unwrap();
        assert_eq!(p.copy(&copy_op(g(0), g(1), 8, both)), Ok(()));
        assert_eq!(p.pages.flags(1), GTF_PERMIT_ACCESS | GTF_READING);
        let pins = p.granter.grants.active(1).unwrap().pins;
        assert_eq!(
            pins,
            Pins {
                host_read: 1,
                ..Pins::default()
            }
        );
        p.unmap(m.handle).unwrap();
        assert_eq!(p.pages.flags(1), GTF_PERMIT_ACCESS);
    }

    fn with_dest_offset(mut op: GnttabCopy, offset: u16) -> GnttabCopy {
        op.dest.offset = offset;
        op
    }

    // ---- Teardown. ----

    #[test]
    fn teardown_of_a_mapper() {
        let mut p = Pair::new(1);
        p.pages.grant(0, D2, 0x42, GTF_PERMIT_ACCESS);
        p.pages.grant(1, D2, 0x43, GTF_PERMIT_ACCESS | GTF_READONLY);
        let a = p.map(0, HOST).unwrap();
        let b = p.map(1, HOST_RO).unwrap();
        let c = p.map(1, GNTMAP_DEVICE_MAP | GNTMAP_READONLY).unwrap();
        let released = p.mapper.maptrack.release_all();
        assert!(p.mapper.maptrack.is_empty());
        assert_eq!(released.len(), 3);
        let refs: Vec<_> = released
            .iter()
            .map(|r| (r.gref, r.host_addr, r.frame_refs()))
            .collect();
        assert_eq!(
            refs,
            [
                (
                    0,
                    a.host_addr,
                    FrameRefs {
                        general: 0,
                        writable: 1
                    }
                ),
                (
                    1,
                    b.host_addr,
                    FrameRefs {
                        general: 1,
                        writable: 0
                    }
                ),
                (
                    1,
                    c.host_addr,
                    FrameRefs {
                        general: 1,
                        writable: 0
                    }
                ),
            ]
        );
        // Busy until the flush is done and the releases are finished.
        assert!(!guest_end_foreign_access(p.pages.word(0)));
        for r in &released {
            p.granter
                .grants
                .finish_unmap(&EntryFrames(&p.pages.view()), r);
        }
        assert!(p.granter.grants.users().is_empty());
        assert!(guest_end_foreign_access(p.pages.word(0)));
        assert!(guest_end_foreign_access(p.pages.word(1)));
    }

    #[test]
    fn teardown_of_a_granter_revokes_others_mappings() {
        let mut p = Pair::new(1);
        p.pages.grant(0, D2, 0x42, GTF_PERMIT_ACCESS);
        let m = p.map(0, HOST).unwrap();
        // D2 also maps a grant of D0, which must survive D1's death.
        let mut d0 = GrantTable::new(D0, 1, 4);
        d0.grants.add_frames(&[Mfn(7)]).unwrap();
        let d0_pages = Pages::new(1);
        d0_pages.grant(0, D2, 0x50, GTF_PERMIT_ACCESS);
        let d0_view = d0_pages.view();
        let other = map_grant_ref(
            &mut p.mapper.maptrack,
            &mut d0.grants,
            D0,
            &EntryFrames(&d0_view),
            &map_op(0, HOST_RO),
            |_| Ok(None),
        )
        .unwrap();

        // D1 dies: its entry frames cannot go while D2 maps its grant.
        let users = p.granter.grants.users();
        assert_eq!(users.len(), 1);
        assert_eq!((users[0].gref, users[0].active.user), (0, D2));
        assert_eq!(p.granter.grants.release(), Err(users.clone()));
        let revoked = p.mapper.maptrack.revoke(D1);
        assert_eq!(revoked.len(), 1);
        assert_eq!(
            (revoked[0].granter, revoked[0].host_addr),
            (D1, m.host_addr)
        );
        for r in &revoked {
            p.granter
                .grants
                .finish_unmap(&EntryFrames(&p.pages.view()), r);
        }
        assert_eq!(p.granter.grants.release(), Ok(vec![Mfn(0x100)]));
        assert_eq!(p.granter.grants.nr_frames(), 0);
        // D2's handle for D1's grant is gone; its mapping of D0's grant is not.
        assert_eq!(
            p.mapper.maptrack.lookup(m.handle).err(),
            Some(GntError::BadHandle)
        );
        assert_eq!(p.mapper.maptrack.lookup(other.handle).unwrap().granter, D0);
    }

    // ---- With the frame table. ----

    /// Page contents the frame table validates: all zero (not-present entries).
    struct ZeroMemory;

    impl PageMemory for ZeroMemory {
        fn read_entry(&self, _: crate::mm::Mfn, index: usize) -> u64 {
            assert!(index < ENTRIES);
            0
        }
        fn write_entry(&mut self, _: crate::mm::Mfn, _: usize, _: u64) {}
        fn flush_tlbs(&mut self) {}
        fn sync_guest_roots(&mut self, _: crate::mm::Mfn) {}
    }

    /// Domains D0..D2 with grant tables, a frame table, and host "PTEs".
    struct World {
        doms: Vec<(GrantTable, Pages)>,
        ft: FrameTable,
        mem: ZeroMemory,
        ptes: BTreeMap<(DomId, u64), Mfn>,
        fail_pte: bool,
        next_va: u64,
    }

    impl World {
        fn new() -> World {
            let ft = FrameTable::new(
                64,
                Config {
                    phys_addr_bits: 40,
                    nx: true,
                    l1tf_mitigation: false,
                },
            );
            for m in 0..64 {
                ft.set_free(Mfn(m)).unwrap();
            }
            let mut doms = Vec::new();
            for d in [D0, D1, D2] {
                let mut gt = GrantTable::new(d, 2, 16);
                let mfn = Mfn(60 + u64::from(d));
                // setup_table as the hypervisor does it.
                assert_eq!(gt.grants.setup_table(1), Ok(1));
                ft.assign(mfn, d).unwrap();
                ft.get_page(mfn, d).unwrap();
                gt.grants.add_frames(&[mfn]).unwrap();
                doms.push((gt, Pages::new(1)));
            }
            for m in 0..30 {
                ft.assign(Mfn(m), (m / 10) as DomId).unwrap();
            }
            World {
                doms,
                ft,
                mem: ZeroMemory,
                ptes: BTreeMap::new(),
                fail_pte: false,
                next_va: 0x1000_0000,
            }
        }

        fn pages(&self, d: DomId) -> &Pages {
            &self.doms[usize::from(d)].1
        }

        /// GNTTABOP_map_grant_ref as the hypercall layer does it.
        fn map(
            &mut self,
            mapper: DomId,
            granter: DomId,
            gref: GrantRef,
            flags: u32,
        ) -> Result<Mapping, GntError> {
            let World {
                doms,
                ft,
                mem,
                ptes,
                fail_pte,
                next_va,
            } = self;
            let op = GnttabMapGrantRef {
                host_addr: *next_va,
                ..map_op(gref, flags)
            };
            *next_va += 0x1000;
            let (maptrack, grants, pages) = if mapper == granter {
                let (gt, pages) = &mut doms[usize::from(mapper)];
                (&mut gt.maptrack, &mut gt.grants, &*pages)
            } else {
                let [m, g] = doms
                    .get_disjoint_mut([usize::from(mapper), usize::from(granter)])
                    .unwrap();
                (&mut m.0.maptrack, &mut g.0.grants, &g.1)
            };
            let view = pages.view();
            map_grant_ref(maptrack, grants, granter, &EntryFrames(&view), &op, |m| {
                let refs = m.frame_refs();
                let mut taken = Vec::new();
                let mut result = Ok(());
                for _ in 0..refs.general {
                    match ft.get_page(m.mfn, m.granter) {
                        Ok(()) => taken.push(false),
                        Err(_) => result = Err(FrameRefError::NotOwned.into()),
                    }
                }
                for _ in 0..refs.writable {
                    if result.is_err() {
                        break;
                    }
                    match ft.get_page_type(mem, m.mfn, m.granter, PageType::Writable) {
                        Ok(()) => taken.push(true),
                        Err(_) => {
                            result = Err(if ft.owned_by(m.mfn, m.granter) {
                                FrameRefError::NotWritable
                            } else {
                                FrameRefError::NotOwned
                            }
                            .into())
                        }
                    }
                }
                if result.is_ok() && (*fail_pte || ptes.contains_key(&(mapper, m.host_addr))) {
                    result = Err(GntError::BadVirtAddr);
                }
                if result.is_ok() && m.host {
                    ptes.insert((mapper, m.host_addr), m.mfn);
                }
                if result.is_err() {
                    // The closure undoes its own work.
                    for writable in taken {
                        if writable {
                            ft.put_page_type(mem, m.mfn).unwrap();
                        } else {
                            ft.put_page(m.mfn).unwrap();
                        }
                    }
                }
                result.map(|()| None)
            })
        }

        /// GNTTABOP_unmap_grant_ref: maptrack, PTE, flush, finish, frame references.
        fn unmap(&mut self, mapper: DomId, handle: GrantHandle) -> Result<(), GntError> {
            // The guest passes back what the map returned: the host address and, for a
            // device mapping, the bus address.
            let (host_addr, dev_bus_addr) = self.doms[usize::from(mapper)]
                .0
                .maptrack
                .lookup(handle)
                .map_or((0, 0), |e| {
                    (e.host_addr, if e.device() { e.mfn.phys() } else { 0 })
                });
            let ptes = &mut self.ptes;
            let r = self.doms[usize::from(mapper)].0.maptrack.unmap(
                handle,
                host_addr,
                dev_bus_addr,
                |addr, e| match ptes.get(&(mapper, addr)) {
                    Some(m) if *m == e.mfn => {
                        ptes.remove(&(mapper, addr));
                        Ok(())
                    }
                    _ => Err(GntError::GeneralError),
                },
            )?;
            // (TLB flush here.)
            if let Some(r) = r {
                self.finish(&r);
            }
            Ok(())
        }

        fn finish(&mut self, r: &Release) {
            let (gt, pages) = &mut self.doms[usize::from(r.granter)];
            gt.grants.finish_unmap(&EntryFrames(&pages.view()), r);
            let refs = r.frame_refs();
            for _ in 0..refs.general {
                self.ft.put_page(r.mfn).unwrap();
            }
            for _ in 0..refs.writable {
                self.ft.put_page_type(&mut self.mem, r.mfn).unwrap();
            }
        }
    }

    #[test]
    fn a_writable_mapping_keeps_the_frame_from_becoming_a_page_table() {
        let mut w = World::new();
        // D1 owns frames 10..20 and grants frame 12 to D2.
        w.pages(D1).grant(0, D2, 12, GTF_PERMIT_ACCESS);
        let m = w.map(D2, D1, 0, HOST).unwrap();
        assert_eq!(w.ptes.get(&(D2, m.host_addr)), Some(&Mfn(12)));
        let info = w.ft.info(Mfn(12)).unwrap();
        assert_eq!(
            (info.ty, info.type_count, info.ext_type_refs),
            (PageType::Writable, 1, 1)
        );
        // The granter can neither make it a page table nor give it back.
        assert!(w.ft.pin(&mut w.mem, Mfn(12), D1, PageType::L1).is_err());
        assert!(w.ft.unassign(Mfn(12), D1).is_err());
        w.ft.check_consistency(&w.mem).unwrap();

        w.unmap(D2, m.handle).unwrap();
        assert!(w.ptes.is_empty());
        assert_eq!(w.ft.info(Mfn(12)).unwrap().ref_count, 0);
        assert!(guest_end_foreign_access(w.pages(D1).word(0)));
        w.ft.pin(&mut w.mem, Mfn(12), D1, PageType::L1).unwrap();
        w.ft.check_consistency(&w.mem).unwrap();
    }

    #[test]
    fn a_page_table_cannot_be_mapped_writable_but_can_be_read() {
        let mut w = World::new();
        w.ft.pin(&mut w.mem, Mfn(13), D1, PageType::L1).unwrap();
        w.pages(D1).grant(0, D2, 13, GTF_PERMIT_ACCESS);
        assert_eq!(w.map(D2, D1, 0, HOST), Err(GntError::GeneralError));
        assert_eq!(w.pages(D1).flags(0), GTF_PERMIT_ACCESS);
        assert!(w.doms[2].0.maptrack.is_empty());
        let m = w.map(D2, D1, 0, HOST_RO).unwrap();
        assert!(w.ft.unassign(Mfn(13), D1).is_err());
        w.unmap(D2, m.handle).unwrap();
        w.ft.check_consistency(&w.mem).unwrap();
        assert_eq!(w.ft.info(Mfn(13)).unwrap().ext_refs, 0);
    }

    #[test]
    fn a_granted_frame_must_be_the_granters() {
        let mut w = World::new();
        // D1 names a frame of D0 (frames 0..10), and one outside the table.
        w.pages(D1).grant(0, D2, 3, GTF_PERMIT_ACCESS);
        w.pages(D1)
            .grant(1, D2, 0xFFFF_FFFF, GTF_PERMIT_ACCESS | GTF_READONLY);
        assert_eq!(w.map(D2, D1, 0, HOST), Err(GntError::BadPage));
        assert_eq!(w.map(D2, D1, 1, HOST_RO), Err(GntError::BadPage));
        assert_eq!(w.pages(D1).flags(0), GTF_PERMIT_ACCESS);
        assert_eq!(w.ft.info(Mfn(3)).unwrap().ref_count, 0);
        w.ft.check_consistency(&w.mem).unwrap();
    }

    #[test]
    fn a_failed_pte_write_drops_every_reference() {
        let mut w = World::new();
        w.pages(D1).grant(0, D2, 12, GTF_PERMIT_ACCESS);
        w.fail_pte = true;
        assert_eq!(
            w.map(D2, D1, 0, GNTMAP_HOST_MAP | GNTMAP_DEVICE_MAP),
            Err(GntError::BadVirtAddr)
        );
        let info = w.ft.info(Mfn(12)).unwrap();
        assert_eq!((info.ref_count, info.type_count), (0, 0));
        assert_eq!(w.pages(D1).flags(0), GTF_PERMIT_ACCESS);
        assert!(w.doms[2].0.maptrack.is_empty());
        w.ft.check_consistency(&w.mem).unwrap();
    }

    #[test]
    fn grant_frames_stay_while_the_table_holds_them() {
        let mut w = World::new();
        // The hypervisor's reference keeps the guest from giving the entry frame back.
        assert!(w.ft.unassign(Mfn(61), D1).is_err());
        // Teardown: nothing in use, the frames come back, the reference goes.
        let frames = w.doms[1].0.grants.release().unwrap();
        assert_eq!(frames, [Mfn(61)]);
        w.ft.put_page(Mfn(61)).unwrap();
        w.ft.unassign(Mfn(61), D1).unwrap();
    }

    #[test]
    fn teardown_with_the_frame_table() {
        let mut w = World::new();
        w.pages(D1).grant(0, D2, 12, GTF_PERMIT_ACCESS);
        w.pages(D2)
            .grant(0, D1, 25, GTF_PERMIT_ACCESS | GTF_READONLY);
        let a = w.map(D2, D1, 0, HOST).unwrap();
        let b = w.map(D1, D2, 0, HOST_RO).unwrap();
        let _ = (a, b);
        // D1 dies. Its own mappings first.
        for r in w.doms[1].0.maptrack.release_all() {
            w.ptes.remove(&(D1, r.host_addr));
            w.finish(&r);
        }
        // Then others' mappings of its grants.
        for u in w.doms[1].0.grants.users() {
            let revoked = w.doms[usize::from(u.active.user)].0.maptrack.revoke(D1);
            for r in revoked {
                w.ptes.remove(&(r.mapper, r.host_addr));
                w.finish(&r);
            }
        }
        assert!(w.ptes.is_empty());
        let frames = w.doms[1].0.grants.release().unwrap();
        for f in frames {
            w.ft.put_page(f).unwrap();
        }
        let released = w.ft.release_domain(&mut w.mem, D1);
        assert!(released.still_referenced.is_empty());
        assert!(released.freed.contains(&Mfn(12)) && released.freed.contains(&Mfn(61)));
        assert_eq!(w.pages(D2).flags(0), GTF_PERMIT_ACCESS | GTF_READONLY);
        w.ft.check_consistency(&w.mem).unwrap();
    }

    /// A [`CopyEnv`] over the world, with frame contents.
    struct WorldEnv<'a> {
        w: &'a mut World,
        data: BTreeMap<u64, Vec<u8>>,
        during: Vec<(u16, u16)>,
    }

    impl CopyEnv for WorldEnv<'_> {
        fn with_grants<R>(
            &mut self,
            dom: DomId,
            f: impl FnOnce(&mut Grants, &dyn GrantFrames) -> R,
        ) -> Option<R> {
            let (gt, pages) = self.w.doms.get_mut(usize::from(dom))?;
            Some(f(&mut gt.grants, &EntryFrames(&pages.view())))
        }

        fn get_frame(
            &mut self,
            mfn: Mfn,
            owner: DomId,
            writable: bool,
        ) -> Result<(), FrameRefError> {
            let ft = &mut self.w.ft;
            if !ft.owned_by(mfn, owner) {
                return Err(FrameRefError::NotOwned);
            }
            if writable {
                ft.get_page_type(&mut self.w.mem, mfn, owner, PageType::Writable)
                    .map_err(|_| FrameRefError::NotWritable)
            } else {
                ft.get_page(mfn, owner).map_err(|_| FrameRefError::NotOwned)
            }
        }

        fn put_frame(&mut self, mfn: Mfn, writable: bool) {
            if writable {
                self.w.ft.put_page_type(&mut self.w.mem, mfn).unwrap();
            } else {
                self.w.ft.put_page(mfn).unwrap();
            }
        }

        fn copy_bytes(&mut self, src: Mfn, so: u16, dest: Mfn, dof: u16, len: u16) {
            self.during
                .push((self.w.pages(D1).flags(0), self.w.pages(D1).flags(1)));
            let s = self
                .data
                .entry(src.0)
                .or_insert_with(|| vec![0; 4096])
                .clone();
            let d = self.data.entry(dest.0).or_insert_with(|| vec![0; 4096]);
            let (so, dof, len) = (usize::from(so), usize::from(dof), usize::from(len));
            d[dof..dof + len].copy_from_slice(&s[so..so + len]);
        }
    }

    #[test]
    fn copy_with_the_frame_table() {
        let mut w = World::new();
        w.pages(D1)
            .grant(0, D2, 11, GTF_PERMIT_ACCESS | GTF_READONLY);
        w.pages(D1).grant(1, D2, 12, GTF_PERMIT_ACCESS);
        w.ft.pin(&mut w.mem, Mfn(14), D1, PageType::L1).unwrap();
        w.pages(D1).grant(2, D2, 14, GTF_PERMIT_ACCESS);
        let mut env = WorldEnv {
            w: &mut w,
            data: BTreeMap::new(),
            during: Vec::new(),
        };
        env.data.insert(11, (0..4096).map(|i| i as u8).collect());
        let both = GNTCOPY_SOURCE_GREF | GNTCOPY_DEST_GREF;
        let g = |r, off| GnttabCopyPtr::from_gref(r, D1, off);

        copy_one(&mut env, D2, &copy_op(g(0, 10), g(1, 20), 5, both)).unwrap();
        assert_eq!(&env.data[&12][20..25], &[10, 11, 12, 13, 14]);
        // Both grants were busy during the copy, and only then.
        assert_eq!(
            env.during,
            [(
                GTF_PERMIT_ACCESS | GTF_READONLY | GTF_READING,
                GTF_PERMIT_ACCESS | GTF_READING | GTF_WRITING
            )]
        );
        // The caller's own frame (D2 owns 20..30) and a frame it does not own.
        copy_one(
            &mut env,
            D2,
            &copy_op(
                g(0, 0),
                GnttabCopyPtr::from_gmfn(21, 0),
                4096,
                GNTCOPY_SOURCE_GREF,
            ),
        )
        .unwrap();
        assert_eq!(env.data[&21], env.data[&11]);
        assert_eq!(
            copy_one(
                &mut env,
                D2,
                &copy_op(
                    GnttabCopyPtr::from_gmfn(11, 0),
                    g(1, 0),
                    8,
                    GNTCOPY_DEST_GREF
                )
            ),
            Err(GntError::BadPage)
        );
        // Into a page table: refused after the source was pinned, which is undone.
        assert_eq!(
            copy_one(&mut env, D2, &copy_op(g(0, 0), g(2, 0), 8, both)),
            Err(GntError::GeneralError)
        );
        let w = env.w;
        for r in 0..3 {
            assert_eq!(w.pages(D1).flags(r) & (GTF_READING | GTF_WRITING), 0);
        }
        assert!(w.doms[1].0.grants.users().is_empty());
        for m in [11, 12, 21] {
            assert_eq!(w.ft.info(Mfn(m)).unwrap().ref_count, 0);
        }
        w.ft.check_consistency(&w.mem).unwrap();
    }

    // ---- Random sequences. ----

    mod state_machine {
        use super::*;
        extern crate std;
        use alloc::collections::BTreeSet;
        use proptest::prelude::*;

        #[derive(Clone, Debug)]
        enum Step {
            /// The granter (re)writes an entry that is not in use.
            Grant {
                gref: u8,
                user: u8,
                flags: u16,
            },
            Map {
                mapper: u8,
                gref: u8,
                flags: u8,
            },
            Unmap {
                mapper: u8,
                handle: u8,
            },
            Copy {
                gref: u8,
                writable: bool,
            },
            End {
                gref: u8,
            },
            Scribble {
                gref: u8,
                bits: u16,
            },
        }

        fn step() -> impl Strategy<Value = Step> {
            prop_oneof![
                (0..6u8, 0..3u8, any::<u16>()).prop_map(|(gref, user, flags)| Step::Grant {
                    gref,
                    user,
                    flags: flags & 0x1FF
                }),
                (0..3u8, 0..6u8, 0..8u8).prop_map(|(mapper, gref, flags)| Step::Map {
                    mapper,
                    gref,
                    flags
                }),
                (0..3u8, 0..6u8).prop_map(|(mapper, handle)| Step::Unmap { mapper, handle }),
                (0..6u8, any::<bool>()).prop_map(|(gref, writable)| Step::Copy { gref, writable }),
                (0..6u8).prop_map(|gref| Step::End { gref }),
                (0..6u8, any::<u16>()).prop_map(|(gref, bits)| Step::Scribble { gref, bits }),
            ]
        }

        /// The pins of D1's grants agree with the mappings held of them; each busy flag is set
        /// exactly while a pin needs it, in entries the granter did not scribble over since it
        /// last filled them; frame references are consistent.
        fn check(w: &World, scribbled: &BTreeSet<GrantRef>) {
            let mut want: BTreeMap<GrantRef, Pins> = BTreeMap::new();
            for (gt, _) in &w.doms {
                for (_, e) in gt.maptrack.entries() {
                    if e.granter == D1 {
                        let access = Access {
                            host: e.host(),
                            device: e.device(),
                            readonly: e.readonly(),
                        };
                        want.entry(e.gref).or_default().add(access);
                    }
                }
            }
            let grants = &w.doms[1].0.grants;
            let have: BTreeMap<GrantRef, Pins> = grants
                .users()
                .iter()
                .map(|u| (u.gref, u.active.pins))
                .collect();
            assert_eq!(have, want);
            for r in (0..6).filter(|r| !scribbled.contains(r)) {
                let f = w.pages(D1).flags(r);
                let pins = grants.active(r).map(|a| a.pins).unwrap_or_default();
                assert_eq!(f & GTF_READING != 0, !pins.is_empty(), "ref {r}: {f:#x}");
                assert_eq!(f & GTF_WRITING != 0, pins.has_writers(), "ref {r}: {f:#x}");
            }
            w.ft.check_consistency(&w.mem).unwrap();
        }

        /// Runs `steps` on a fresh world, checking after each.
        fn run(steps: Vec<Step>) {
            let mut w = World::new();
            let mut scribbled = BTreeSet::new();
            for s in steps {
                match s {
                    Step::Grant { gref, user, flags } => {
                        let gref = u32::from(gref);
                        if w.doms[1].0.grants.active(gref).is_none()
                            && guest_end_foreign_access(w.pages(D1).word(gref))
                        {
                            let flags = flags & !(GTF_READING | GTF_WRITING);
                            w.pages(D1).grant(gref, DomId::from(user), 10 + gref, flags);
                            scribbled.remove(&gref);
                        }
                    }
                    Step::Map {
                        mapper,
                        gref,
                        flags,
                    } => {
                        let flags = u32::from(flags)
                            & (GNTMAP_HOST_MAP | GNTMAP_DEVICE_MAP | GNTMAP_READONLY);
                        let _ = w.map(DomId::from(mapper), D1, u32::from(gref), flags);
                    }
                    Step::Unmap { mapper, handle } => {
                        let _ = w.unmap(DomId::from(mapper), u32::from(handle));
                    }
                    Step::Copy { gref, writable } => {
                        let mut env = WorldEnv {
                            w: &mut w,
                            data: BTreeMap::new(),
                            during: Vec::new(),
                        };
                        let g = GnttabCopyPtr::from_gref(u32::from(gref), D1, 0);
                        let own = GnttabCopyPtr::from_gmfn(20, 0);
                        let op = if writable {
                            copy_op(own, g, 8, GNTCOPY_DEST_GREF)
                        } else {
                            copy_op(g, own, 8, GNTCOPY_SOURCE_GREF)
                        };
                        let _ = copy_one(&mut env, D2, &op);
                    }
                    Step::End { gref } => {
                        let gref = u32::from(gref);
                        let busy = w.doms[1].0.grants.active(gref).is_some();
                        let ended = guest_end_foreign_access(w.pages(D1).word(gref));
                        assert!(!(busy && ended) || scribbled.contains(&gref));
                    }
                    Step::Scribble { gref, bits } => {
                        // The granter writes whatever it likes over its entry.
                        let gref = u32::from(gref);
                        let word = w.pages(D1).word(gref);
                        word.fetch_xor(u32::from(bits), Ordering::SeqCst);
                        scribbled.insert(gref);
                    }
                }
                check(&w, &scribbled);
            }
            // Unmap everything: every pin and reference goes.
            for d in [D0, D1, D2] {
                let maptrack = &w.doms[usize::from(d)].0.maptrack;
                let handles: Vec<_> = maptrack.entries().map(|(h, _)| h).collect();
                for h in handles {
                    w.unmap(d, h).unwrap();
                }
            }
            assert!(w.doms[1].0.grants.users().is_empty());
            assert!(w.ptes.is_empty());
            for m in 10..16 {
                assert_eq!(w.ft.info(Mfn(m)).unwrap().ref_count, 0);
            }
            check(&w, &scribbled);
        }

        proptest! {
            #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]
            #[test]
            fn random_operations_keep_pins_flags_and_references_consistent(
                steps in proptest::collection::vec(step(), 1..60)
            ) {
                run(steps);
            }
        }
    }
}
