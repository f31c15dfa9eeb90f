//! `frame_table`: random sequences of guest and hypervisor operations on the frame table of
//! two domains, with the invariants checked after every operation:
//!
//! - [`FrameTable::check_consistency`] passes, and a refused operation changes nothing (no
//!   frame's counts or flags, no page contents);
//! - the safety property, recomputed here independently: every present entry of a page table
//!   in use points at a frame of the same domain with the type the entry needs, so no frame is
//!   both a page table and mapped writable; a grant PTE is backed by a grant mapping the model
//!   holds, with the references it needs;
//! - **frames the hypervisor writes** (held with `get_page_type(.., Writable)`, as the
//!   hypervisor must hold `shared_info`, grant frames and the like) stay owned, keep the
//!   `Writable` type and are never freed — not by `unassign`, not by `release_domain`;
//! - the per-frame counts of base pointers and hypervisor references match what the model took;
//! - references balance at teardown: releasing a domain after dropping the hypervisor's
//!   references frees every frame it owned and leaves the other domain untouched; at the end
//!   both domains are released and every frame is free with every count zero.

use guest_abi::types::DomId;

use crate::engine::{Input, Target};
use crate::mm::Mfn;
use crate::mm::frame_table::{Config, ENTRIES, FrameInfo, FrameTable, Owner, PageMemory, PageType};

pub const TARGET: Target = Target {
    name: "frame_table",
    about: "page-table, pin, base-pointer, grant-PTE and hypervisor-reference sequences on two domains",
    run,
    seeds: super::no_seeds,
    max_len: 768,
};

/// Frames in the table: enough for two four-level hierarchies and spare frames, few enough
/// that random operations keep hitting the same ones.
const FRAMES: u64 = 16;
/// Frames outside the table that operations may name (MMIO, holes).
const BEYOND: u64 = 4;
/// Frames given to the domains at the start (alternately); the rest start free.
const ASSIGNED: u64 = FRAMES - 4;
const DOMS: [DomId; 2] = [1, 2];
const VCPUS: usize = 2;
/// The entries operations touch: the first and last of the guest half, the hypervisor's
/// reserved L4 slots 256 and 271 (guest-abi's `is_hypervisor_l4_slot`), and the top. Every
/// other entry stays zero, so the independent safety check need only look at these.
const INDICES: [usize; 6] = [0, 1, 255, 256, 271, 511];
/// Operations per input at most.
const MAX_OPS: usize = 48;

// Page-table entry bits: guest-abi's one definition (Intel SDM Vol. 3A §4.5), under the
// short names the generators below use.
use guest_abi::pte::{
    ACCESSED as A, ADDR_MASK as ADDR, DIRTY as D, GLOBAL as G, NX, PRESENT as P, PS, PWT, RW,
    USER as U,
};
/// Xen's `_PAGE_GNTTAB`, the frame table's grant-PTE mark.
const GNTTAB: u64 = 1 << 62;

fn config() -> Config {
    Config {
        phys_addr_bits: 40,
        nx: true,
        l1tf_mitigation: true,
    }
}

/// Page contents; counts writes so that a refused operation can be shown to have written
/// nothing.
struct Mem {
    pages: Vec<[u64; ENTRIES]>,
    writes: u64,
}

impl PageMemory for Mem {
    fn read_entry(&self, mfn: Mfn, index: usize) -> u64 {
        // Out of range panics: the table read a frame outside itself.
        self.pages[mfn.0 as usize][index]
    }

    fn write_entry(&mut self, mfn: Mfn, index: usize, value: u64) {
        self.writes += 1;
        self.pages[mfn.0 as usize][index] = value;
    }

    fn flush_tlbs(&mut self) {}

    fn sync_guest_roots(&mut self, _: Mfn) {}
}

/// A grant mapping as the grant-table code makes one: references on `target` in the
/// granter's name, then a grant PTE at `l1[index]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct GrantMap {
    l1: Mfn,
    index: usize,
    target: Mfn,
    writable: bool,
}

/// What the test remembers of what it took.
struct Model {
    bases: [[Option<Mfn>; VCPUS]; 2],
    /// References taken by "hypervisor code": general (`None`) or of a type.
    held: Vec<(Mfn, Option<PageType>)>,
    /// Frames the hypervisor writes on a domain's behalf, each held by a `Writable` type
    /// reference for as long as it writes them.
    hv_writes: Vec<(Mfn, DomId)>,
    grants: Vec<GrantMap>,
}

struct State {
    ft: FrameTable,
    mem: Mem,
    model: Model,
}

fn run(data: &[u8]) {
    let mut input = Input::new(data);
    let mut s = setup(input.bool());
    check(&s);
    let mut ops = 0;
    while !input.is_empty() && ops < MAX_OPS {
        ops += 1;
        step(&mut s, &mut input);
        check(&s);
    }
    for d in 0..DOMS.len() {
        release(&mut s, d, false);
    }
    for m in 0..FRAMES {
        assert_eq!(
            s.ft.info(Mfn(m)),
            Some(FrameInfo::new(Owner::Free)),
            "frame {m} not free after both domains were released"
        );
    }
    if let Err(msg) = s.ft.check_consistency(&s.mem) {
        panic!("after teardown: {msg}");
    }
}

/// Most frames start with a domain; with `hierarchy`, each domain starts with a four-level
/// table in use as vCPU 0's base (L4 at frame d, then d + 2, d + 4, d + 6, data at d + 8), so
/// that random updates find deep hierarchies to cut, graft and unmap.
fn setup(hierarchy: bool) -> State {
    let ft = FrameTable::new(FRAMES, config());
    for m in 0..FRAMES {
        ft.set_free(Mfn(m)).expect("set_free");
    }
    for m in 0..ASSIGNED {
        ft.assign(Mfn(m), DOMS[(m % 2) as usize]).expect("assign");
    }
    let mut s = State {
        ft,
        mem: Mem {
            pages: vec![[0; ENTRIES]; FRAMES as usize],
            writes: 0,
        },
        model: Model {
            bases: [[None; VCPUS]; 2],
            held: Vec::new(),
            hv_writes: Vec::new(),
            grants: Vec::new(),
        },
    };
    if hierarchy {
        for (d, &dom) in DOMS.iter().enumerate() {
            let d = d as u64;
            for level in 0..4 {
                s.mem.pages[(d + 2 * level) as usize][0] = ((d + 2 * level + 2) << 12) | P | RW | U;
            }
            assert_eq!(s.ft.set_base(&mut s.mem, dom, None, Mfn(d)), Ok(()));
            s.model.bases[d as usize][0] = Some(Mfn(d));
        }
    }
    s
}

fn mfn(input: &mut Input) -> Mfn {
    Mfn(input.below(FRAMES + BEYOND))
}

fn dom(input: &mut Input) -> usize {
    input.index(DOMS.len())
}

/// An entry value: mostly well-formed, pointing at frames of the same parity (the same domain
/// at the start) to grow hierarchies; the rest malformed, foreign, outside the table or above
/// the physical width.
fn entry(input: &mut Input, table: Mfn) -> u64 {
    let flags = if input.below(4) != 0 {
        input.pick(&[P, P | RW, P | U, P | RW | U, P | RW | U | A | D])
    } else {
        input.pick(&[
            P | RW | NX,
            P | PS,
            P | G,
            P | GNTTAB,
            P | PWT,
            P | (1 << 55),
            RW | U,
            0,
        ])
    };
    let target = match input.below(8) {
        0..=5 => (table.0 + 2 * input.below(FRAMES / 2)) % FRAMES,
        6 => input.below(FRAMES + BEYOND),
        _ => 1 << 30,
    };
    if input.below(10) == 0 {
        0
    } else {
        (target << 12) | flags
    }
}

/// A snapshot of every frame with the remembered type of unused frames erased: what a refused
/// operation must leave exactly as it found.
fn snapshot(ft: &FrameTable) -> Vec<FrameInfo> {
    (0..FRAMES)
        .map(|m| {
            let f = ft.info(Mfn(m)).expect("frame in table");
            FrameInfo {
                ty: f.current_type(),
                ..f
            }
        })
        .collect()
}

fn step(s: &mut State, input: &mut Input) {
    let op = input.below(24);
    if op == 23 {
        // Rare: destroy a domain (with or without the hypervisor dropping the frames it
        // writes first), then give it fresh frames.
        if input.below(4) == 0 {
            let d = dom(input);
            release(s, d, input.bool());
            for m in 0..FRAMES {
                if input.below(4) == 0 {
                    let _ = s.ft.assign(Mfn(m), DOMS[d]);
                }
            }
        }
        return;
    }
    let before = snapshot(&s.ft);
    let writes = s.mem.writes;
    let State { ft, mem, model } = s;
    let result: Result<(), guest_abi::errno::Errno> = match op {
        0 => ft.assign(mfn(input), DOMS[dom(input)]),
        1 => {
            let (m, d) = (mfn(input), dom(input));
            let r = ft.unassign(m, DOMS[d]);
            if r.is_ok() {
                assert!(
                    !model.hv_writes.iter().any(|h| h.0 == m),
                    "unassign freed frame {m:?}, which the hypervisor writes"
                );
                assert!(
                    !model.held.iter().any(|h| h.0 == m),
                    "unassign freed held {m:?}"
                );
            }
            r
        }
        2..=4 => {
            let (m, d) = (mfn(input), dom(input));
            let level = PageType::ALL[1 + input.index(4)];
            let r = ft.pin(mem, m, DOMS[d], level);
            if r.is_ok() {
                assert!(
                    !model.hv_writes.iter().any(|h| h.0 == m),
                    "frame {m:?}, which the hypervisor writes, was pinned as {level:?}"
                );
            }
            r
        }
        5 => ft.unpin(mem, mfn(input), DOMS[dom(input)]),
        6..=11 => {
            let table = mfn(input);
            let index = input.pick(&INDICES);
            let value = entry(input, table);
            let d = dom(input);
            let preserve_ad = input.bool();
            let old = mem.pages.get(table.0 as usize).map_or(0, |p| p[index]);
            let r = ft.update_entry(mem, table, index, value, DOMS[d], preserve_ad);
            if let Ok(effect) = r {
                let mut want = value;
                if preserve_ad && !effect.plain_write {
                    want |= old & (A | D);
                }
                assert_eq!(
                    mem.pages[table.0 as usize][index], want,
                    "update wrote another value"
                );
                // A translation the guest may still have cached grants more than the new
                // entry: it was present, and the new one is absent, maps another frame, or
                // takes away write, user or execute rights (`UpdateEffect::stale_translation`).
                let stale = !effect.plain_write
                    && old & P != 0
                    && (want & P == 0
                        || (old ^ want) & ADDR != 0
                        || old & !want & (RW | U) != 0
                        || want & !old & NX != 0);
                assert_eq!(
                    effect.stale_translation, stale,
                    "update {old:#x} -> {want:#x}: stale translation"
                );
                let l4 = ft.info(table).map(|f| f.current_type()) == Some(PageType::L4);
                assert_eq!(
                    effect.l4_changed,
                    (!effect.plain_write && l4 && old != want).then_some(table),
                    "update {old:#x} -> {want:#x}: L4 change"
                );
            }
            r.map(|_| ())
        }
        12 => {
            let (d, v, m) = (dom(input), input.index(VCPUS), mfn(input));
            let old = model.bases[d][v];
            let r = ft.set_base(mem, DOMS[d], old, m);
            if r.is_ok() {
                model.bases[d][v] = Some(m);
            }
            r
        }
        13 => {
            let (d, v) = (dom(input), input.index(VCPUS));
            if let Some(old) = model.bases[d][v].take() {
                assert_eq!(
                    ft.drop_base(mem, DOMS[d], old),
                    Ok(()),
                    "drop_base of a base"
                );
            }
            Ok(())
        }
        14 => {
            let m = mfn(input);
            let r = ft.get_page(m, DOMS[dom(input)]);
            if r.is_ok() {
                model.held.push((m, None));
            }
            r
        }
        15 => {
            let (m, d) = (mfn(input), dom(input));
            let ty = PageType::ALL[input.index(PageType::ALL.len())];
            let r = ft.get_page_type(mem, m, DOMS[d], ty);
            if r.is_ok() {
                model.held.push((m, Some(ty)));
            }
            r
        }
        16 => {
            if !model.held.is_empty() {
                let (m, ty) = model.held.swap_remove(input.index(model.held.len()));
                let r = match ty {
                    Some(_) => ft.put_page_type(mem, m),
                    None => ft.put_page(m),
                };
                assert_eq!(r, Ok(()), "dropping a reference taken");
            }
            Ok(())
        }
        17 => {
            let (m, d) = (mfn(input), dom(input));
            let r = ft.get_page_type(mem, m, DOMS[d], PageType::Writable);
            if r.is_ok() {
                model.hv_writes.push((m, DOMS[d]));
            }
            r
        }
        18 => {
            if !model.hv_writes.is_empty() {
                let (m, _) = model
                    .hv_writes
                    .swap_remove(input.index(model.hv_writes.len()));
                assert_eq!(
                    ft.put_page_type(mem, m),
                    Ok(()),
                    "dropping a hypervisor reference"
                );
            }
            Ok(())
        }
        19 | 20 => grant_map(ft, mem, model, input),
        _ => {
            if !model.grants.is_empty() {
                let i = input.index(model.grants.len());
                let g = model.grants[i];
                if ft.remove_grant_pte(mem, g.l1, g.index, g.target).is_ok() {
                    model.grants.swap_remove(i);
                    put_grant_refs(ft, mem, &g);
                }
            }
            Ok(())
        }
    };
    if let Err(e) = result {
        assert_eq!(
            snapshot(&s.ft),
            before,
            "operation {op} was refused ({e:?}) but changed the table"
        );
        assert_eq!(
            s.mem.writes, writes,
            "operation {op} was refused ({e:?}) but wrote memory"
        );
    }
}

/// The grant-table code mapping `target` for a mapper: references first, in the owner's name
/// (a `Writable` type reference for a writable mapping), then the grant PTE; a PTE refused
/// drops the references again. The L1 is mostly the one the mapper owns.
fn grant_map(
    ft: &mut FrameTable,
    mem: &mut Mem,
    model: &mut Model,
    input: &mut Input,
) -> Result<(), guest_abi::errno::Errno> {
    let target = mfn(input);
    let granter = DOMS[dom(input)];
    let l1 = mfn(input);
    let mapper = match ft.owner(l1) {
        Owner::Domain(d) if input.below(8) != 0 => d,
        _ => DOMS[dom(input)],
    };
    let index = input.pick(&INDICES);
    let writable = input.bool();
    let flags = input.pick(&[P | U, P | RW | U, P | RW | U | NX | A | D, P | PWT | RW]);
    let flags = if writable { flags | RW } else { flags & !RW };
    if writable {
        ft.get_page_type(mem, target, granter, PageType::Writable)?;
    } else {
        ft.get_page(target, granter)?;
    }
    let g = GrantMap {
        l1,
        index,
        target,
        writable,
    };
    match ft.install_grant_pte(mem, l1, index, mapper, target, flags) {
        Ok(()) => {
            let e = mem.pages[l1.0 as usize][index];
            assert_eq!(e & ADDR, target.phys(), "grant PTE maps another frame");
            assert_eq!(e & RW != 0, writable, "grant PTE writability");
            assert_eq!(e & (P | GNTTAB), P | GNTTAB, "grant PTE without its mark");
            model.grants.push(g);
            Ok(())
        }
        Err(e) => {
            put_grant_refs(ft, mem, &g);
            Err(e)
        }
    }
}

fn put_grant_refs(ft: &mut FrameTable, mem: &mut Mem, g: &GrantMap) {
    let r = if g.writable {
        ft.put_page_type(mem, g.target)
    } else {
        ft.put_page(g.target)
    };
    assert_eq!(r, Ok(()), "dropping a grant mapping's reference");
}

/// Whether `l1[index]` is a live grant PTE: in a validated L1, present, marked.
fn live_grant_pte(ft: &FrameTable, mem: &Mem, l1: Mfn, index: usize) -> bool {
    ft.info(l1).is_some_and(|f| {
        f.current_type() == PageType::L1 && f.validated && {
            let e = mem.pages[l1.0 as usize][index];
            e & (P | GNTTAB) == P | GNTTAB
        }
    })
}

/// Domain destruction as the hypervisor does it: grant mappings made by the domain and of its
/// frames go first (PTE removed, then the references), then its own references on the
/// domain's frames — except, with `keep_hv_writes`, those of frames it still writes, which
/// must then survive the release — then the frame table frees what nothing refers to.
fn release(s: &mut State, d: usize, keep_hv_writes: bool) {
    let State { ft, mem, model } = s;
    let dom = DOMS[d];
    let (gone, kept): (Vec<GrantMap>, Vec<GrantMap>) = model
        .grants
        .iter()
        .partition(|g| ft.owned_by(g.l1, dom) || ft.owned_by(g.target, dom));
    model.grants = kept;
    for g in gone {
        if ft.remove_grant_pte(mem, g.l1, g.index, g.target).is_err() {
            assert!(
                !live_grant_pte(ft, mem, g.l1, g.index),
                "grant PTE {g:?} could not be removed but is live"
            );
        }
        put_grant_refs(ft, mem, &g);
    }
    let (mine, others): (Vec<_>, Vec<_>) =
        model.held.iter().partition(|(m, _)| ft.owned_by(*m, dom));
    model.held = others;
    for (m, ty) in mine {
        let r = match ty {
            Some(_) => ft.put_page_type(mem, m),
            None => ft.put_page(m),
        };
        assert_eq!(r, Ok(()), "dropping a reference at teardown");
    }
    let (hv_mine, hv_others): (Vec<_>, Vec<_>) =
        model.hv_writes.iter().partition(|(_, owner)| *owner == dom);
    if !keep_hv_writes {
        model.hv_writes = hv_others;
        for (m, _) in &hv_mine {
            assert_eq!(
                ft.put_page_type(mem, *m),
                Ok(()),
                "dropping a hypervisor reference"
            );
        }
    }
    model.bases[d] = [None; VCPUS];
    let owned: Vec<Mfn> = (0..FRAMES)
        .map(Mfn)
        .filter(|m| ft.owned_by(*m, dom))
        .collect();
    let other = DOMS[1 - d];
    let others_before: Vec<FrameInfo> = (0..FRAMES)
        .filter(|m| ft.owned_by(Mfn(*m), other))
        .map(|m| ft.info(Mfn(m)).expect("in table"))
        .collect();
    let released = ft.release_domain(mem, dom);
    let others_after: Vec<FrameInfo> = (0..FRAMES)
        .filter(|m| ft.owned_by(Mfn(*m), other))
        .map(|m| ft.info(Mfn(m)).expect("in table"))
        .collect();
    assert_eq!(
        others_before, others_after,
        "releasing d{dom} changed d{other}'s frames"
    );
    if keep_hv_writes && !hv_mine.is_empty() {
        let mut kept: Vec<Mfn> = hv_mine.iter().map(|h| h.0).collect();
        kept.sort_unstable_by_key(|m| m.0);
        kept.dedup();
        assert_eq!(
            released.still_referenced, kept,
            "release_domain must keep exactly the frames the hypervisor still writes"
        );
        for m in &kept {
            assert!(
                !released.freed.contains(m),
                "freed {m:?}, which the hypervisor writes"
            );
            let f = ft.info(*m).expect("in table");
            assert_eq!(
                f.owner,
                Owner::Domain(dom),
                "{m:?} changed hands while written"
            );
            assert_eq!(
                f.current_type(),
                PageType::Writable,
                "{m:?} lost its Writable type"
            );
        }
        // Now the hypervisor stops writing them; a second release frees them.
        model.hv_writes.retain(|(_, owner)| *owner != dom);
        for (m, _) in &hv_mine {
            assert_eq!(
                ft.put_page_type(mem, *m),
                Ok(()),
                "dropping a hypervisor reference"
            );
        }
        let again = ft.release_domain(mem, dom);
        assert!(
            again.still_referenced.is_empty(),
            "second release kept {again:?}"
        );
        let mut freed = released.freed.clone();
        freed.extend(again.freed);
        freed.sort_unstable_by_key(|m| m.0);
        assert_eq!(freed, owned, "not every frame of d{dom} was freed");
    } else {
        assert_eq!(released.freed, owned, "not every frame of d{dom} was freed");
        assert!(
            released.still_referenced.is_empty(),
            "release kept {released:?}"
        );
    }
    for m in owned {
        assert_eq!(
            ft.info(m),
            Some(FrameInfo::new(Owner::Free)),
            "{m:?} freed with counts"
        );
    }
    // Frames freed must not be in any page table of the other domain: the consistency check
    // after the operation covers that (an entry pointing at a free frame is reported).
}

/// Every invariant, after every operation.
fn check(s: &State) {
    let State { ft, mem, model } = s;
    if let Err(msg) = ft.check_consistency(mem) {
        panic!("{msg}");
    }
    for i in 0..FRAMES as usize {
        let mfn = Mfn(i as u64);
        let f = ft.info(mfn).expect("in table");
        assert!(f.ref_count >= f.type_count, "frame {i}: {f:?}");
        // The model's references.
        let bases = model
            .bases
            .iter()
            .flatten()
            .filter(|b| **b == Some(mfn))
            .count();
        assert_eq!(f.base_refs as usize, bases, "frame {i}: base pointers");
        let general = model.held.iter().filter(|h| **h == (mfn, None)).count()
            + model
                .grants
                .iter()
                .filter(|g| g.target == mfn && !g.writable)
                .count();
        let typed = model
            .held
            .iter()
            .filter(|h| h.0 == mfn && h.1.is_some())
            .count()
            + model.hv_writes.iter().filter(|h| h.0 == mfn).count()
            + model
                .grants
                .iter()
                .filter(|g| g.target == mfn && g.writable)
                .count();
        assert_eq!(
            f.ext_refs as usize, general,
            "frame {i}: hypervisor general references"
        );
        assert_eq!(
            f.ext_type_refs as usize, typed,
            "frame {i}: hypervisor type references"
        );
        if !matches!(f.owner, Owner::Domain(_)) {
            assert_eq!(
                FrameInfo {
                    ty: PageType::None,
                    ..f
                },
                FrameInfo {
                    owner: f.owner,
                    ..FrameInfo::new(Owner::Free)
                },
                "frame {i} is not a domain's but has counts"
            );
            continue;
        }
        let level = f.current_type();
        if !level.is_page_table() {
            continue;
        }
        assert!(
            f.validated,
            "frame {i} is a {level:?} in use but not validated"
        );
        for index in INDICES {
            let e = mem.pages[i][index];
            if level == PageType::L4 && guest_abi::layout::is_hypervisor_l4_slot(index) {
                assert_eq!(e, 0, "L4 {i} has {e:#x} in reserved slot {index}");
                continue;
            }
            if e & P == 0 {
                continue;
            }
            let target = Mfn((e & ADDR) >> 12);
            let t = ft.info(target).unwrap_or_else(|| {
                panic!("{level:?} {i}[{index}] = {e:#x} maps outside the table")
            });
            if level == PageType::L1 && e & GNTTAB != 0 {
                // A mapping recorded for this slot, of this frame, with the references a
                // writable PTE needs (a stale record of an earlier PTE there may exist too).
                let backed = model.grants.iter().any(|g| {
                    g.l1 == mfn
                        && g.index == index
                        && g.target == target
                        && (e & RW == 0 || g.writable)
                });
                assert!(
                    backed,
                    "L1 {i}[{index}] = {e:#x}: a live grant PTE no mapping holds"
                );
                // Read-only, it may map anything its granter owns, page tables included (as
                // a guest may map its own tables read-only); writable, only Writable memory.
                if e & RW != 0 {
                    assert_eq!(
                        t.current_type(),
                        PageType::Writable,
                        "grant PTE {i}[{index}]"
                    );
                }
                continue;
            }
            assert!(
                level == PageType::L1 || e & PS == 0,
                "superpage at {i}[{index}]"
            );
            assert_eq!(
                t.owner, f.owner,
                "{level:?} {i}[{index}] maps another owner's frame"
            );
            let needs = match level {
                PageType::L1 if e & RW != 0 => Some(PageType::Writable),
                PageType::L1 => None,
                PageType::L2 => Some(PageType::L1),
                PageType::L3 => Some(PageType::L2),
                _ => Some(PageType::L3),
            };
            if let Some(needs) = needs {
                assert_eq!(t.current_type(), needs, "{level:?} {i}[{index}] = {e:#x}");
                assert!(t.validated, "{level:?} {i}[{index}] target not validated");
            }
        }
    }
    // Frames the hypervisor writes: still the domain's, still Writable, so never a page
    // table, a descriptor table or free.
    for &(m, owner) in &model.hv_writes {
        let f = ft.info(m).expect("in table");
        assert_eq!(
            f.owner,
            Owner::Domain(owner),
            "{m:?} (written by the hypervisor) changed hands"
        );
        assert_eq!(
            f.current_type(),
            PageType::Writable,
            "{m:?} (written by the hypervisor) retyped"
        );
    }
}
