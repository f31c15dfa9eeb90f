//! `grant`: random sequences of grant-table operations among three domains — guests writing
//! their grant entries (anything, including the busy flags), setup_table, map (host and device,
//! read-only and writable), unmap (with the mapping's own host address, another one, none),
//! copy, guests pinning and unpinning frames and rewriting their page tables, and domain
//! destruction — glued to a real frame table the way the module docs of `grant.rs` prescribe.
//! After every operation:
//!
//! - pin counts balance: every active grant's `host_write`, `host_read`, `device_write` and
//!   `device_read` equal the mappings the maptracks hold of it, its user and frame are theirs,
//!   and every mapping's grant is active;
//! - frame references balance: each frame's hypervisor references are exactly the grant
//!   entry frames the hypervisor writes (a `Writable` type reference each) plus one reference
//!   per use of a mapping (a `Writable` type reference if writable), and
//!   `check_consistency` passes;
//! - every live grant PTE (in a validated L1) is backed by a mapping recorded for that slot and
//!   frame: a PTE the grant table no longer accounts for would outlive its references (the
//!   XSA-224 class);
//! - the grant entry frames stay owned and `Writable`: never a page table, never freed.
//!
//! At the end every domain is torn down as the docs say (its mappings, others' mappings of its
//! grants, its table) and every frame must come back free.
//!
//! The glue holds entry frames with a `Writable` type reference (`get_page_type`), which the
//! class-wide measure of issue 10 requires of every frame the hypervisor writes; `grant.rs`
//! documents a general reference, with which a guest can pin its own grant frame as a page
//! table (finding 4).

use core::sync::atomic::AtomicU32;
use core::sync::atomic::Ordering::SeqCst;

use guest_abi::grant::{
    GNTCOPY_DEST_GREF, GNTCOPY_SOURCE_GREF, GNTMAP_DEVICE_MAP, GNTMAP_HOST_MAP, GNTMAP_READONLY,
    GTF_PERMIT_ACCESS, GTF_READING, GTF_READONLY, GTF_SUB_PAGE, GTF_TYPE_MASK, GTF_WRITING,
    GnttabCopy, GnttabCopyPtr, GnttabMapGrantRef, GrantHandle,
};
use guest_abi::types::{DOMID_SELF, DomId};

use crate::engine::{Input, Target};
use crate::grant::{
    CopyEnv, EntryFrame, EntryFrames, FrameRefError, GntError, GrantFrames, GrantTable, Grants,
    Release, WORDS_PER_FRAME, copy_one, entry_word, map_grant_ref, word_domid, word_flags,
};
use crate::mm::frame_table::{Config, ENTRIES, FrameTable, Owner, PageMemory, PageType};
use crate::mm::{Mfn, PAGE_SIZE};

pub const TARGET: Target = Target {
    name: "grant",
    about: "grant map/unmap/copy/revoke/teardown sequences over three domains and a frame table",
    run,
    seeds,
    max_len: 1024,
};

/// Inputs that found bugs, replayed first on every run.
fn seeds() -> Vec<Vec<u8>> {
    vec![
        // Issue 10, finding 2: d1 maps d3's grant 0 at 0x1000 (handle 0) and at 0x4000 (handle
        // 1), then unmaps handle 1 naming 0x1000. `MapTrack::unmap` does not compare the
        // address with the one recorded for the handle, so the PTE at 0x1000 goes, handle 1 is
        // freed with its references, and the PTE at 0x4000 stays live with no mapping recording
        // it (handle 0 still claims 0x1000). Teardown then drops handle 0's references while
        // the 0x4000 mapping lives on.
        include_bytes!("../../regressions/grant-unmap-names-another-host-addr.bin").to_vec(),
        // Found by a long run before this glue held the mapper's L1: d1 maps d3's grant at
        // 0x8000 and 0x1000; by d1's teardown the entry at 0x8000 is empty while its mapping
        // is still recorded (the unheld L1 could lose its type, and the entry with it). The
        // hypervisor holds the L1 as an L1 for as long as a grant PTE lives in it
        // (guest/grant_op.rs), and so does the glue now.
        include_bytes!("../../regressions/grant-pte-of-an-unheld-l1.bin").to_vec(),
    ]
}

const DOMS: [DomId; 3] = [1, 2, 3];
const FRAMES: u64 = 32;
/// Data frames each domain starts with.
const DATA: u64 = 3;
/// Grant frames a table may grow to: two, so that growing is exercised without exhausting the
/// free frames.
const MAX_GRANT_FRAMES: u32 = 2;
/// Mappings a domain may hold: small, so that `GNTST_no_space` is reached.
const MAX_MAPTRACK: u32 = 6;
/// Grant PTEs go in slots 1 to 8 of the mapper's L1 (host address `slot << 12`); the guest's
/// own mappings in slots 9 to 12.
const GRANT_SLOTS: u64 = 8;
const OWN_SLOTS: [usize; 4] = [9, 10, 11, 12];
const MAX_OPS: usize = 40;

// Page-table entry bits: guest-abi's one definition (Intel SDM Vol. 3A §4.5).
use guest_abi::pte::{ADDR_MASK as ADDR, PRESENT as P, RW, USER as U};
/// Xen's `_PAGE_GNTTAB`, the frame table's grant-PTE mark.
const GNTTAB: u64 = 1 << 62;

struct Mem {
    pages: Vec<[u64; ENTRIES]>,
}

impl PageMemory for Mem {
    fn read_entry(&self, mfn: Mfn, index: usize) -> u64 {
        self.pages[mfn.0 as usize][index]
    }
    fn write_entry(&mut self, mfn: Mfn, index: usize, value: u64) {
        self.pages[mfn.0 as usize][index] = value;
    }
    fn flush_tlbs(&mut self) {}
    fn sync_guest_roots(&mut self, _: Mfn) {}
}

struct Dom {
    id: DomId,
    alive: bool,
    gt: GrantTable,
    /// The entry frames' contents, one per frame of `gt.grants.frames()`.
    entries: Vec<Box<EntryFrame>>,
    /// The L1 the domain maps grants in (pinned at the start; the guest may unpin it).
    l1: Mfn,
    data: Vec<Mfn>,
}

fn new_entry_frame() -> Box<EntryFrame> {
    Box::new([const { AtomicU32::new(0) }; WORDS_PER_FRAME])
}

struct State {
    ft: FrameTable,
    mem: Mem,
    doms: Vec<Dom>,
}

fn config() -> Config {
    Config {
        phys_addr_bits: 40,
        nx: true,
        l1tf_mitigation: true,
    }
}

/// Runs `f` with domain `d`'s entry frames as the hypervisor sees them.
fn with_frames<R>(entries: &[Box<EntryFrame>], f: impl FnOnce(&EntryFrames) -> R) -> R {
    let refs: Vec<&EntryFrame> = entries.iter().map(|b| &**b).collect();
    f(&EntryFrames(&refs))
}

fn run(data: &[u8]) {
    let mut input = Input::new(data);
    let mut s = setup();
    check(&s);
    let mut ops = 0;
    while !input.is_empty() && ops < MAX_OPS {
        ops += 1;
        step(&mut s, &mut input);
        check(&s);
    }
    for d in 0..DOMS.len() {
        if s.doms[d].alive {
            destroy(&mut s, d);
            check(&s);
        }
    }
    for m in 0..FRAMES {
        let f = s.ft.info(Mfn(m)).expect("in table");
        assert_eq!(
            f.owner,
            Owner::Free,
            "frame {m} not freed at the end: {f:?}"
        );
    }
}

fn setup() -> State {
    let ft = FrameTable::new(FRAMES, config());
    let mut mem = Mem {
        pages: vec![[0; ENTRIES]; FRAMES as usize],
    };
    for m in 0..FRAMES {
        ft.set_free(Mfn(m)).expect("set_free");
    }
    let mut next = 0;
    let mut doms = Vec::new();
    for &id in &DOMS {
        let l1 = Mfn(next);
        next += 1;
        ft.assign(l1, id).expect("assign");
        ft.pin(&mut mem, l1, id, PageType::L1).expect("pin L1");
        let data: Vec<Mfn> = (0..DATA).map(|k| Mfn(next + k)).collect();
        next += DATA;
        for &m in &data {
            ft.assign(m, id).expect("assign");
        }
        doms.push(Dom {
            id,
            alive: true,
            gt: GrantTable::new(id, MAX_GRANT_FRAMES, MAX_MAPTRACK),
            entries: Vec::new(),
            l1,
            data,
        });
    }
    let mut s = State { ft, mem, doms };
    // Every domain starts with one grant frame (as a domain built with Xen's
    // INITIAL_NR_GRANT_FRAMES) whose first entries grant its data frames to the others, so that
    // maps and copies succeed from the first operation.
    for d in 0..DOMS.len() {
        setup_table(&mut s, d, 1);
        with_frames(&s.doms[d].entries, |f| {
            for r in 0..6u32 {
                let to = DOMS[(d + 1 + r as usize) % DOMS.len()];
                let flags = if r == 5 {
                    GTF_PERMIT_ACCESS | GTF_READONLY
                } else {
                    GTF_PERMIT_ACCESS
                };
                let frame = s.doms[d].data[r as usize % DATA as usize].0 as u32;
                f.word(r)
                    .expect("entry")
                    .store(entry_word(flags, to), SeqCst);
                f.0[0][r as usize * 2 + 1].store(frame, SeqCst);
            }
        });
    }
    s
}

fn dom(input: &mut Input) -> usize {
    input.index(DOMS.len())
}

/// A grant reference: mostly one of the first few, sometimes anywhere or beyond the table.
fn gref(input: &mut Input) -> u32 {
    match input.below(8) {
        0 => input.u32() % 1100,
        1 => input.u32(),
        _ => input.below(6) as u32,
    }
}

/// A frame number a guest might write into an entry: its own data, anyone's frame, or none.
fn frame_for(s: &State, d: usize, input: &mut Input) -> u32 {
    match input.below(6) {
        0..=2 => s.doms[d].data[input.index(s.doms[d].data.len())].0 as u32,
        3 => input.below(FRAMES) as u32,
        4 => s.doms[d].l1.0 as u32,
        _ => input.u32(),
    }
}

fn step(s: &mut State, input: &mut Input) {
    let op = input.below(20);
    match op {
        0..=2 => guest_writes_entry(s, input),
        3 => setup_table(s, dom(input), input.below(4) as u32),
        4..=8 => map(s, input),
        9..=12 => unmap(s, input),
        13 | 14 => copy(s, input),
        15 => guest_pins(s, input),
        16 => {
            // The guest unpins (and may re-pin) its grant L1: grant PTEs in it stop being live.
            let d = dom(input);
            let (l1, id) = (s.doms[d].l1, s.doms[d].id);
            if input.bool() {
                let _ = s.ft.unpin(&mut s.mem, l1, id);
            } else {
                let _ = s.ft.pin(&mut s.mem, l1, id, PageType::L1);
            }
        }
        17 | 18 => guest_updates_l1(s, input),
        _ => {
            if input.below(4) == 0 {
                let d = dom(input);
                if s.doms[d].alive {
                    destroy(s, d);
                }
            }
        }
    }
}

fn guest_writes_entry(s: &mut State, input: &mut Input) {
    let d = dom(input);
    if !s.doms[d].alive {
        return;
    }
    let r = gref(input);
    let flags = match input.below(8) {
        0..=3 => GTF_PERMIT_ACCESS,
        4 => GTF_PERMIT_ACCESS | GTF_READONLY,
        5 => GTF_PERMIT_ACCESS | input.pick(&[GTF_READING, GTF_WRITING, GTF_SUB_PAGE]),
        6 => 0,
        _ => input.u16(),
    };
    let domid = match input.below(8) {
        0..=5 => DOMS[dom(input)],
        6 => DOMID_SELF,
        _ => input.u16(),
    };
    let frame = frame_for(s, d, input);
    with_frames(&s.doms[d].entries, |f| {
        if let Some(w) = f.word(r) {
            w.store(entry_word(flags, domid), SeqCst);
        }
        // The frame field is the word after the flags/domid word (GrantEntryV1).
        let index = (r % crate::grant::ENTRIES_PER_FRAME) as usize * 2 + 1;
        if let Some(frame_words) = f.0.get((r / crate::grant::ENTRIES_PER_FRAME) as usize) {
            frame_words[index].store(frame, SeqCst);
        }
    });
}

/// `GNTTABOP_setup_table` as the docs prescribe: frames allocated, zeroed, assigned and held
/// (here with a `Writable` type reference), then added.
fn setup_table(s: &mut State, d: usize, nr: u32) {
    if !s.doms[d].alive {
        return;
    }
    let id = s.doms[d].id;
    let Ok(need) = s.doms[d].gt.grants.setup_table(nr) else {
        return;
    };
    let free: Vec<Mfn> = (0..FRAMES)
        .map(Mfn)
        .filter(|m| s.ft.owner(*m) == Owner::Free)
        .take(need as usize)
        .collect();
    if free.len() < need as usize {
        return;
    }
    for &m in &free {
        s.mem.pages[m.0 as usize] = [0; ENTRIES];
        s.ft.assign(m, id).expect("assign a free frame");
        s.ft.get_page_type(&mut s.mem, m, id, PageType::Writable)
            .expect("a fresh frame takes the Writable type");
    }
    s.doms[d]
        .gt
        .grants
        .add_frames(&free)
        .expect("add_frames after setup_table");
    for _ in &free {
        s.doms[d].entries.push(new_entry_frame());
    }
    assert_eq!(
        s.doms[d].gt.grants.nr_frames(),
        nr.max(s.doms[d].gt.grants.nr_frames())
    );
}

/// Takes the frame references of `general` and `writable` uses of `mfn` in `owner`'s name, all
/// or none.
fn take_refs(
    ft: &mut FrameTable,
    mem: &mut Mem,
    mfn: Mfn,
    owner: DomId,
    general: u8,
    writable: u8,
) -> Result<(), FrameRefError> {
    if !ft.owned_by(mfn, owner) {
        return Err(FrameRefError::NotOwned);
    }
    for i in 0..general {
        if ft.get_page(mfn, owner).is_err() {
            for _ in 0..i {
                ft.put_page(mfn).expect("put a reference taken");
            }
            return Err(FrameRefError::NotOwned);
        }
    }
    for i in 0..writable {
        if ft
            .get_page_type(mem, mfn, owner, PageType::Writable)
            .is_err()
        {
            for _ in 0..i {
                ft.put_page_type(mem, mfn).expect("put a reference taken");
            }
            for _ in 0..general {
                ft.put_page(mfn).expect("put a reference taken");
            }
            return Err(FrameRefError::NotWritable);
        }
    }
    Ok(())
}

fn put_refs(ft: &mut FrameTable, mem: &mut Mem, mfn: Mfn, general: u8, writable: u8) {
    for _ in 0..general {
        ft.put_page(mfn)
            .expect("dropping a general reference the grant held");
    }
    for _ in 0..writable {
        ft.put_page_type(mem, mfn)
            .expect("dropping a Writable reference the grant held");
    }
}

/// The L1 slot a host address names.
fn slot_of(host_addr: u64) -> usize {
    (host_addr >> 12) as usize
}

fn map(s: &mut State, input: &mut Input) {
    let (m, g) = (dom(input), dom(input));
    let mut flags = match input.below(8) {
        0..=2 => GNTMAP_HOST_MAP,
        3 | 4 => GNTMAP_HOST_MAP | GNTMAP_READONLY,
        5 => GNTMAP_DEVICE_MAP | input.pick(&[0, GNTMAP_READONLY]),
        6 => GNTMAP_HOST_MAP | GNTMAP_DEVICE_MAP | input.pick(&[0, GNTMAP_READONLY]),
        _ => input.u32() & 0x1f,
    };
    if input.below(16) == 0 {
        flags |= input.u32() & !0x1f;
    }
    let host_addr = match input.below(8) {
        0 => input.u64(),
        1 => 0,
        _ => (1 + input.below(GRANT_SLOTS)) << 12,
    };
    let op = GnttabMapGrantRef {
        host_addr,
        flags,
        gref: gref(input),
        dom: DOMS[g],
        ..GnttabMapGrantRef::default()
    };
    if !s.doms[m].alive || !s.doms[g].alive {
        return;
    }
    let State { ft, mem, doms } = s;
    let (mapper_l1, mapper_id) = (doms[m].l1, doms[m].id);
    let granter_id = doms[g].id;
    // The mapper's maptrack and the granter's grants, which are the same domain's two halves
    // when a domain maps its own grant.
    let (maptrack, grants, entries) = if m == g {
        let d = &mut doms[m];
        (&mut d.gt.maptrack, &mut d.gt.grants, &d.entries)
    } else {
        let (a, b) = if m < g {
            let (lo, hi) = doms.split_at_mut(g);
            (&mut lo[m], &mut hi[0])
        } else {
            let (lo, hi) = doms.split_at_mut(m);
            (&mut hi[0], &mut lo[g])
        };
        (&mut a.gt.maptrack, &mut b.gt.grants, &b.entries)
    };
    let before = grants.active(op.gref).copied();
    let result = with_frames(entries, |frames| {
        map_grant_ref(maptrack, grants, granter_id, frames, &op, |mapping| {
            let refs = mapping.frame_refs();
            take_refs(
                ft,
                mem,
                mapping.mfn,
                granter_id,
                refs.general,
                refs.writable,
            )?;
            if mapping.host {
                let pte_flags = if mapping.readonly { P | U } else { P | RW | U };
                let slot = slot_of(mapping.host_addr);
                // As guest/grant_op.rs does: the mapping holds its L1 as an L1 (only one
                // already in use as such) until the PTE is removed.
                let is_l1 = ft
                    .info(mapper_l1)
                    .is_some_and(|f| f.current_type() == PageType::L1);
                if slot == 0
                    || !is_l1
                    || ft
                        .get_page_type(mem, mapper_l1, mapper_id, PageType::L1)
                        .is_err()
                {
                    put_refs(ft, mem, mapping.mfn, refs.general, refs.writable);
                    return Err(GntError::BadVirtAddr);
                }
                if ft
                    .install_grant_pte(mem, mapper_l1, slot, mapper_id, mapping.mfn, pte_flags)
                    .is_err()
                {
                    let _ = ft.put_page_type(mem, mapper_l1);
                    put_refs(ft, mem, mapping.mfn, refs.general, refs.writable);
                    return Err(GntError::BadVirtAddr);
                }
                return Ok(Some((mapper_l1, slot)));
            }
            Ok(None)
        })
    });
    crate::trace!("map d{mapper_id} <- d{granter_id} {op:x?}: {result:x?}");
    // The busy flags are set when a use first needs them (the guest may clear them later; it
    // confuses only itself).
    if let Ok(mapping) = result {
        let word = with_frames(entries, |f| f.load_word(op.gref)).expect("entry of a mapped ref");
        if before.is_none() {
            // First use: the entry permitted it, to this mapper, as a whole page.
            assert_eq!(
                word_flags(word) & (GTF_TYPE_MASK | GTF_SUB_PAGE),
                GTF_PERMIT_ACCESS,
                "map of an entry that does not permit it"
            );
            assert_eq!(
                word_domid(word),
                mapper_id,
                "map of an entry granted to another domain"
            );
            assert!(
                word_flags(word) & GTF_READING != 0,
                "mapped grant without GTF_reading"
            );
        }
        if !mapping.readonly && !before.is_some_and(|a| a.pins.has_writers()) {
            assert!(
                word_flags(word) & GTF_WRITING != 0,
                "writable map without GTF_writing"
            );
            assert_eq!(
                word_flags(word) & GTF_READONLY,
                0,
                "writable map of a read-only grant"
            );
        }
    }
}

/// What an unmap or a teardown does after taking a mapping away: the PTE is already gone;
/// (flush;) finish on the granter; drop the frame references.
fn finish(ft: &mut FrameTable, mem: &mut Mem, doms: &mut [Dom], r: &Release) {
    let g = doms
        .iter_mut()
        .find(|d| d.id == r.granter && d.alive)
        .expect("a mapping's granter is alive");
    with_frames(&g.entries, |f| g.gt.grants.finish_unmap(f, r));
    // The flags this unmap no longer needs are cleared (a guest may have set others itself).
    let word = with_frames(&g.entries, |f| f.load_word(r.gref)).expect("entry");
    let active = g.gt.grants.active(r.gref);
    if active.is_none() {
        assert_eq!(
            word_flags(word) & GTF_READING,
            0,
            "grant {:#x} unused, GTF_reading set",
            r.gref
        );
    }
    if !r.readonly && !active.is_some_and(|a| a.pins.has_writers()) {
        assert_eq!(
            word_flags(word) & GTF_WRITING,
            0,
            "last writer of grant {:#x} gone, GTF_writing set",
            r.gref
        );
    }
    let refs = r.frame_refs();
    put_refs(ft, mem, r.mfn, refs.general, refs.writable);
}

fn unmap(s: &mut State, input: &mut Input) {
    let m = dom(input);
    if !s.doms[m].alive {
        return;
    }
    let handles: Vec<(GrantHandle, u64, Mfn)> = s.doms[m]
        .gt
        .maptrack
        .entries()
        .map(|(h, e)| (h, e.host_addr, e.mfn))
        .collect();
    let (handle, own_addr, mfn) = if !handles.is_empty() && input.below(8) != 0 {
        handles[input.index(handles.len())]
    } else {
        (input.u32() % 16, 0, Mfn(0))
    };
    let host_addr = match input.below(6) {
        0..=2 => own_addr,
        3 => 0,
        4 => handles
            .get(input.index(handles.len().max(1)))
            .map_or(0, |h| h.1),
        _ => (1 + input.below(GRANT_SLOTS)) << 12,
    };
    let dev_bus_addr = match input.below(4) {
        0 | 1 => mfn.phys(),
        2 => 0,
        _ => input.u64(),
    };
    let State { ft, mem, doms } = s;
    let l1 = doms[m].l1;
    let result = doms[m]
        .gt
        .maptrack
        .unmap(handle, host_addr, dev_bus_addr, |addr, entry| {
            // As guest/grant_op.rs does: remove the PTE where the map recorded it (the
            // maptrack checked `addr` is the handle's own), then drop the L1 hold.
            let (pl1, slot) = entry.pte.ok_or(GntError::GeneralError)?;
            assert_eq!(
                (pl1, slot),
                (l1, slot_of(addr)),
                "recorded PTE and address agree"
            );
            ft.remove_grant_pte(mem, pl1, slot, entry.mfn)
                .and_then(|()| ft.put_page_type(mem, pl1))
                .map_err(|_| GntError::GeneralError)
        });
    crate::trace!(
        "unmap d{} handle {handle} host_addr {host_addr:#x} dev {dev_bus_addr:#x}: {result:x?}",
        doms[m].id
    );
    if let Ok(Some(release)) = result {
        finish(ft, mem, doms, &release);
    }
}

/// The hypervisor's side of a copy.
struct Env<'a> {
    ft: &'a mut FrameTable,
    mem: &'a mut Mem,
    doms: &'a mut [Dom],
    held: i32,
}

impl CopyEnv for Env<'_> {
    fn with_grants<R>(
        &mut self,
        dom: DomId,
        f: impl FnOnce(&mut Grants, &dyn GrantFrames) -> R,
    ) -> Option<R> {
        let d = self.doms.iter_mut().find(|d| d.id == dom && d.alive)?;
        let refs: Vec<&EntryFrame> = d.entries.iter().map(|b| &**b).collect();
        Some(f(&mut d.gt.grants, &EntryFrames(&refs)))
    }

    fn get_frame(&mut self, mfn: Mfn, owner: DomId, writable: bool) -> Result<(), FrameRefError> {
        take_refs(
            self.ft,
            self.mem,
            mfn,
            owner,
            u8::from(!writable),
            u8::from(writable),
        )?;
        self.held += 1;
        Ok(())
    }

    fn put_frame(&mut self, mfn: Mfn, writable: bool) {
        put_refs(
            self.ft,
            self.mem,
            mfn,
            u8::from(!writable),
            u8::from(writable),
        );
        self.held -= 1;
    }

    fn copy_bytes(&mut self, src: Mfn, src_offset: u16, dest: Mfn, dest_offset: u16, len: u16) {
        let page = PAGE_SIZE as u32;
        assert!(
            u32::from(src_offset) + u32::from(len) <= page,
            "copy source beyond its frame"
        );
        assert!(
            u32::from(dest_offset) + u32::from(len) <= page,
            "copy beyond its frame"
        );
        for m in [src, dest] {
            let f = self.ft.info(m).expect("copy of a frame outside the table");
            assert!(f.ref_count > 0, "copy of {m:?}, on which nothing is held");
        }
        assert_eq!(
            self.ft.info(dest).map(|f| f.current_type()),
            Some(PageType::Writable),
            "copy into a frame that is not Writable"
        );
    }
}

fn copy_ptr(s: &State, caller: usize, input: &mut Input, is_gref: bool) -> GnttabCopyPtr {
    let offset = match input.below(4) {
        0 => input.u16(),
        _ => input.below(4096) as u16,
    };
    if is_gref {
        let domid = match input.below(4) {
            0 => DOMID_SELF,
            _ => DOMS[dom(input)],
        };
        GnttabCopyPtr::from_gref(gref(input), domid, offset)
    } else {
        let gmfn = u64::from(frame_for(s, caller, input));
        let mut p = GnttabCopyPtr::from_gmfn(gmfn, offset);
        if input.below(8) == 0 {
            p.domid = DOMS[dom(input)];
        }
        p
    }
}

fn copy(s: &mut State, input: &mut Input) {
    let c = dom(input);
    let flags = input.below(4) as u16 & (GNTCOPY_SOURCE_GREF | GNTCOPY_DEST_GREF);
    let source = copy_ptr(s, c, input, flags & GNTCOPY_SOURCE_GREF != 0);
    let dest = copy_ptr(s, c, input, flags & GNTCOPY_DEST_GREF != 0);
    let len = match input.below(4) {
        0 => input.u16(),
        _ => input.below(4097) as u16,
    };
    let op = GnttabCopy {
        source,
        dest,
        len,
        flags,
        status: 0,
    };
    if !s.doms[c].alive {
        return;
    }
    let caller = s.doms[c].id;
    // A copy into a grant needs it writable, checked unless a writer already holds it.
    let dest_grant = (flags & GNTCOPY_DEST_GREF != 0).then(|| {
        let granter = if dest.domid == DOMID_SELF {
            caller
        } else {
            dest.domid
        };
        let g = s.doms.iter().find(|d| d.id == granter && d.alive)?;
        let active = g.gt.grants.active(dest.gref());
        let held = active.is_some_and(|a| a.pins.has_writers());
        let word = with_frames(&g.entries, |f| f.load_word(dest.gref()))?;
        Some((held, active.is_some(), word))
    });
    let State { ft, mem, doms } = s;
    let mut env = Env {
        ft,
        mem,
        doms,
        held: 0,
    };
    let result = copy_one(&mut env, caller, &op);
    assert_eq!(env.held, 0, "a copy left frame references behind");
    if result.is_ok()
        && let Some(Some((false, active, word))) = dest_grant
    {
        // The entry's type and domain are checked on a grant's first use only (Xen's
        // `_set_status_v1`: "if not already pinned, check the grant domid and type"); its
        // read-only flag whenever write access is added.
        if !active {
            assert_eq!(
                word_domid(word),
                caller,
                "copy into a grant made to another domain"
            );
            assert_eq!(
                word_flags(word) & GTF_TYPE_MASK,
                GTF_PERMIT_ACCESS,
                "copy into a grant not permitted"
            );
        }
        assert_eq!(
            word_flags(word) & GTF_READONLY,
            0,
            "copy into a read-only grant"
        );
    }
}

/// A guest pins one of its frames as a page table: never one the hypervisor writes.
fn guest_pins(s: &mut State, input: &mut Input) {
    let d = dom(input);
    let id = s.doms[d].id;
    let grant_frames = s.doms[d].gt.grants.frames().to_vec();
    let m = match input.below(3) {
        0 if !grant_frames.is_empty() => grant_frames[input.index(grant_frames.len())],
        1 => s.doms[d].data[input.index(s.doms[d].data.len())],
        _ => Mfn(input.below(FRAMES)),
    };
    let level = PageType::ALL[1 + input.index(4)];
    if input.below(4) == 0 {
        let _ = s.ft.unpin(&mut s.mem, m, id);
        return;
    }
    if s.ft.pin(&mut s.mem, m, id, level).is_ok() {
        assert!(
            !s.doms
                .iter()
                .any(|x| x.alive && x.gt.grants.frames().contains(&m)),
            "grant frame {m:?} pinned as {level:?}"
        );
    }
}

/// A guest rewrites an entry of its L1 with `mmu_update`: maps its frames (or anyone's), or
/// tries to overwrite a grant PTE.
fn guest_updates_l1(s: &mut State, input: &mut Input) {
    let d = dom(input);
    let id = s.doms[d].id;
    let l1 = s.doms[d].l1;
    let index = if input.bool() {
        input.pick(&OWN_SLOTS)
    } else {
        1 + input.below(GRANT_SLOTS) as usize
    };
    let value = match input.below(4) {
        0 => 0,
        _ => (u64::from(frame_for(s, d, input)) << 12) | input.pick(&[P, P | RW, P | RW | U]),
    };
    let old = s.mem.pages[l1.0 as usize][index];
    let live_grant =
        s.ft.info(l1)
            .is_some_and(|f| f.current_type() == PageType::L1 && f.validated)
            && old & (P | GNTTAB) == P | GNTTAB;
    let r = s.ft.update_entry(&mut s.mem, l1, index, value, id, false);
    if live_grant {
        assert!(r.is_err(), "mmu_update overwrote a live grant PTE");
    }
}

/// Domain destruction as `grant.rs` documents it, then the frame table's release.
fn destroy(s: &mut State, d: usize) {
    let id = s.doms[d].id;
    crate::trace!("destroy d{id}");
    let State { ft, mem, doms } = s;
    // 1. Its mappings of others' grants (and of its own).
    let l1 = doms[d].l1;
    let releases = doms[d].gt.maptrack.release_all();
    for r in &releases {
        clear_pte(ft, mem, l1, r);
        finish(ft, mem, doms, r);
    }
    // 2. Others' mappings of its grants.
    for u in doms[d].gt.grants.users() {
        let user = u.active.user;
        assert_ne!(user, id, "d{id}'s own mappings were all released");
        let ui = doms
            .iter()
            .position(|x| x.id == user && x.alive)
            .expect("a grant's user is alive");
        let ul1 = doms[ui].l1;
        for r in doms[ui].gt.maptrack.revoke(id) {
            clear_pte(ft, mem, ul1, &r);
            finish(ft, mem, doms, &r);
        }
    }
    // 3. Its table.
    let frames = match doms[d].gt.grants.release() {
        Ok(frames) => frames,
        Err(users) => panic!("d{id}'s grants still in use after revocation: {users:?}"),
    };
    for m in frames {
        ft.put_page_type(mem, m)
            .expect("dropping the hypervisor's reference on a grant frame");
    }
    doms[d].entries.clear();
    doms[d].alive = false;
    for other in doms.iter().filter(|x| x.alive) {
        assert!(
            !other.gt.maptrack.entries().any(|(_, e)| e.granter == id),
            "d{} still maps a grant of destroyed d{id}",
            other.id
        );
    }
    // 4. The frame table frees everything.
    let owned: Vec<Mfn> = (0..FRAMES)
        .map(Mfn)
        .filter(|m| ft.owned_by(*m, id))
        .collect();
    let released = ft.release_domain(mem, id);
    assert!(
        released.still_referenced.is_empty(),
        "d{id}'s frames {:?} still referenced after teardown",
        released.still_referenced
    );
    assert_eq!(
        released.freed, owned,
        "not all of d{id}'s frames were freed"
    );
}

/// Teardown's PTE removal. Whether or not it succeeds, the references are dropped next, so a
/// grant PTE for this mapping must not stay live.
fn clear_pte(ft: &mut FrameTable, mem: &mut Mem, l1: Mfn, r: &Release) {
    if !r.host {
        return;
    }
    let (pl1, slot) = r.pte.expect("a host mapping records its PTE");
    assert_eq!(
        (pl1, slot),
        (l1, slot_of(r.host_addr)),
        "recorded PTE and address agree"
    );
    if ft
        .remove_grant_pte(mem, pl1, slot, r.mfn)
        .and_then(|()| ft.put_page_type(mem, pl1))
        .is_ok()
    {
        return;
    }
    assert!(
        !live_grant_ptes(ft, mem, l1).any(|(_, target)| target == r.mfn),
        "teardown could not remove the PTE of {r:?} and a grant PTE of that frame stays live"
    );
}

/// The live grant PTEs of `l1` (if it is a validated L1): (slot, frame).
fn live_grant_ptes<'a>(
    ft: &FrameTable,
    mem: &'a Mem,
    l1: Mfn,
) -> impl Iterator<Item = (usize, Mfn)> + 'a {
    let live = ft
        .info(l1)
        .is_some_and(|f| f.current_type() == PageType::L1 && f.validated);
    mem.pages[l1.0 as usize]
        .iter()
        .enumerate()
        .filter(move |(_, e)| live && **e & (P | GNTTAB) == P | GNTTAB)
        .map(|(i, e)| (i, Mfn((e & ADDR) >> 12)))
}

fn check(s: &State) {
    let State { ft, mem, doms } = s;
    if let Err(msg) = ft.check_consistency(mem) {
        panic!("{msg}");
    }
    let mut general = vec![0u32; FRAMES as usize];
    let mut writable = vec![0u32; FRAMES as usize];
    for d in doms.iter().filter(|d| d.alive) {
        // Entry frames: the hypervisor's Writable references.
        for &m in d.gt.grants.frames() {
            writable[m.0 as usize] += 1;
            let f = ft.info(m).expect("in table");
            assert_eq!(
                f.owner,
                Owner::Domain(d.id),
                "grant frame {m:?} changed hands"
            );
            assert_eq!(
                f.current_type(),
                PageType::Writable,
                "grant frame {m:?} retyped"
            );
        }
        // Pins against the maptracks.
        for u in d.gt.grants.users() {
            let mut want = crate::grant::Pins::default();
            for x in doms.iter().filter(|x| x.alive) {
                for (_, e) in x.gt.maptrack.entries() {
                    if e.granter != d.id || e.gref != u.gref {
                        continue;
                    }
                    assert_eq!(
                        x.id, u.active.user,
                        "grant {:#x} of d{} mapped by a non-user",
                        u.gref, d.id
                    );
                    assert_eq!(
                        e.mfn, u.active.mfn,
                        "mapping and active grant disagree on the frame"
                    );
                    let (h, dv) = (u8::from(e.host()), u8::from(e.device()));
                    if e.readonly() {
                        want.host_read += h;
                        want.device_read += dv;
                    } else {
                        want.host_write += h;
                        want.device_write += dv;
                    }
                }
            }
            assert_eq!(
                u.active.pins, want,
                "pins of grant {:#x} of d{}",
                u.gref, d.id
            );
        }
        for (h, e) in d.gt.maptrack.entries() {
            let g = doms
                .iter()
                .find(|g| g.id == e.granter && g.alive)
                .unwrap_or_else(|| panic!("d{} handle {h} maps a grant of a dead domain", d.id));
            assert!(
                g.gt.grants.active(e.gref).is_some(),
                "d{} handle {h}: its grant is not active",
                d.id
            );
            let uses = u32::from(e.host()) + u32::from(e.device());
            assert!(uses > 0, "d{} handle {h} maps nothing", d.id);
            if e.readonly() {
                general[e.mfn.0 as usize] += uses;
            } else {
                writable[e.mfn.0 as usize] += uses;
            }
            // A host mapping holds its L1 as an L1 (a type reference of the hypervisor's).
            if e.host() {
                let (l1, _) = e.pte.expect("a host mapping records its PTE");
                writable[l1.0 as usize] += 1;
            }
        }
        // Live grant PTEs are accounted for.
        for (slot, target) in live_grant_ptes(ft, mem, d.l1) {
            let backed =
                d.gt.maptrack
                    .entries()
                    .any(|(_, e)| e.host() && slot_of(e.host_addr) == slot && e.mfn == target);
            assert!(
                backed,
                "d{}'s L1 slot {slot} is a live grant PTE of {target:?} that no mapping records",
                d.id
            );
        }
    }
    for m in 0..FRAMES as usize {
        let f = ft.info(Mfn(m as u64)).expect("in table");
        assert_eq!(
            f.ext_refs, general[m],
            "frame {m}: read-only grant references"
        );
        assert_eq!(
            f.ext_type_refs, writable[m],
            "frame {m}: type references (Writable for grants, L1 for the tables holding their PTEs)"
        );
    }
}
