//! From the firmware's memory map (as GRUB hands it over in the multiboot2 information) to the
//! RAM the hypervisor may use and the ranges its frame allocator may hand out.
//!
//! The map is an *allegation* by firmware: entries may come unsorted, overlap, have zero length,
//! or run past the end of the address space. Nothing here trusts it. When entries disagree the
//! conservative reading wins (memory any non-usable entry claims is not RAM), every oddity is
//! reported as a [`Problem`] rather than a panic, and the work stays `O(n log n)` so that even a
//! hostile map of thousands of entries costs little.
//!
//! Pure logic: no hardware access, no unsafe code.

use alloc::string::String;
use alloc::vec::Vec;
use core::cmp::Reverse;
use core::fmt;

/// Size of the frames the allocator hands out (Intel SDM Vol. 3A §4.5: 4-KByte pages).
pub const PAGE_SIZE: u64 = 4096;

/// A half-open range of physical addresses, `[start, end)`.
///
/// A range with `end <= start` is empty. Being half-open, it cannot name the very last byte of
/// the 64-bit space; no machine has RAM there (x86-64 physical addresses are at most 52 bits).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct PhysRange {
    /// First address in the range.
    pub start: u64,
    /// First address past the range.
    pub end: u64,
}

impl PhysRange {
    /// `[start, end)`.
    pub const fn new(start: u64, end: u64) -> Self {
        Self { start, end }
    }

    /// `[base, base + len)`, or `None` when that end does not fit in 64 bits.
    pub const fn from_base_len(base: u64, len: u64) -> Option<Self> {
        match base.checked_add(len) {
            Some(end) => Some(Self::new(base, end)),
            None => None,
        }
    }

    /// Number of bytes (0 for an empty or inverted range).
    pub const fn len(&self) -> u64 {
        self.end.saturating_sub(self.start)
    }

    /// Whether the range holds no byte.
    pub const fn is_empty(&self) -> bool {
        self.end <= self.start
    }

    /// Whether `addr` lies in the range.
    pub const fn contains(&self, addr: u64) -> bool {
        self.start <= addr && addr < self.end
    }

    /// Whether every byte of `other` lies in `self` (an empty `other` always does).
    pub const fn contains_range(&self, other: &PhysRange) -> bool {
        other.is_empty() || (self.start <= other.start && other.end <= self.end)
    }

    /// Whether the two ranges share at least one byte.
    pub const fn overlaps(&self, other: &PhysRange) -> bool {
        self.start < other.end && other.start < self.end && !self.is_empty() && !other.is_empty()
    }

    /// The bytes both ranges share, or `None` when they share none.
    pub fn intersect(&self, other: &PhysRange) -> Option<PhysRange> {
        let r = PhysRange::new(self.start.max(other.start), self.end.min(other.end));
        (!r.is_empty()).then_some(r)
    }

    /// The whole pages inside the range (start rounded up, end rounded down), or `None` when
    /// there is not a single whole page.
    pub fn page_aligned_inward(&self) -> Option<PhysRange> {
        let start = self.start.checked_next_multiple_of(PAGE_SIZE)?;
        let end = self.end - self.end % PAGE_SIZE;
        let r = PhysRange::new(start, end);
        (!r.is_empty()).then_some(r)
    }
}

impl fmt::Display for PhysRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[{:#x}, {:#x})", self.start, self.end)
    }
}

/// What a memory map entry says its range is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EntryKind {
    /// Free RAM.
    Usable,
    /// Not RAM, or RAM the firmware keeps for itself.
    Reserved,
    /// Holds ACPI tables; becomes RAM once they have been read. Xenia does not reclaim it.
    AcpiReclaimable,
    /// ACPI non-volatile storage that must survive sleep states.
    AcpiNvs,
    /// RAM the firmware found to be faulty.
    Defective,
    /// A type this code does not know, treated as reserved.
    Other(u32),
}

impl EntryKind {
    /// The kind of a multiboot2 memory map entry's `type` field (Multiboot2 specification
    /// §3.6.8, "Memory map": 1 available, 3 ACPI, 4 preserve on hibernation, 5 defective; any
    /// other value is reserved).
    pub const fn from_multiboot2(raw: u32) -> Self {
        match raw {
            1 => EntryKind::Usable,
            2 => EntryKind::Reserved,
            3 => EntryKind::AcpiReclaimable,
            4 => EntryKind::AcpiNvs,
            5 => EntryKind::Defective,
            other => EntryKind::Other(other),
        }
    }
}

impl fmt::Display for EntryKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EntryKind::Usable => f.write_str("usable"),
            EntryKind::Reserved => f.write_str("reserved"),
            EntryKind::AcpiReclaimable => f.write_str("ACPI reclaimable"),
            EntryKind::AcpiNvs => f.write_str("ACPI NVS"),
            EntryKind::Defective => f.write_str("defective"),
            EntryKind::Other(raw) => write!(f, "unknown type {raw}"),
        }
    }
}

/// One memory map entry as the firmware gave it, unchecked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RawEntry {
    /// First physical address.
    pub base: u64,
    /// Length in bytes.
    pub len: u64,
    /// What the range is.
    pub kind: EntryKind,
}

/// Memory that is in use before the allocator exists and must never be handed out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Exclusion<'a> {
    /// Where it lies.
    pub range: PhysRange,
    /// What it is, for messages: "hypervisor image", "module 0", "multiboot2 information".
    pub what: &'a str,
}

/// Something wrong with the memory map or the exclusions, and what [`layout`] did about it.
/// None of these stops the boot; the caller logs them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Problem {
    /// Entry `index` has length 0; it is ignored.
    ZeroLength {
        /// Position of the entry in the map.
        index: usize,
    },
    /// Entry `index` runs past the end of the 64-bit space. A usable one is ignored (a broken
    /// entry is no proof of RAM); any other kind reserves everything from `base` up.
    Wraps {
        /// Position of the entry in the map.
        index: usize,
        /// The entry's base.
        base: u64,
        /// The entry's length.
        len: u64,
        /// The entry's kind, which decides what was done.
        kind: EntryKind,
    },
    /// A usable entry and a non-usable one both claim `range`; it is treated as not usable.
    Overlap {
        /// Position of the usable entry in the map.
        usable_entry: usize,
        /// Position of the non-usable entry in the map.
        other_entry: usize,
        /// What the non-usable entry says the memory is.
        other_kind: EntryKind,
        /// The memory both claim.
        range: PhysRange,
    },
    /// An exclusion lies partly or wholly outside usable RAM (say, a module GRUB loaded beyond
    /// it). Whatever part is in RAM is still kept from the allocator.
    ExclusionOutsideRam {
        /// The exclusion's description.
        what: String,
        /// Where it lies.
        range: PhysRange,
    },
    /// An exclusion ends before it starts; it is ignored.
    InvertedExclusion {
        /// The exclusion's description.
        what: String,
        /// The range as given.
        range: PhysRange,
    },
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Problem::ZeroLength { index } => {
                write!(f, "memory map entry {index} has zero length; ignored")
            }
            Problem::Wraps {
                index,
                base,
                len,
                kind,
            } => {
                write!(
                    f,
                    "memory map entry {index} ({kind}, base {base:#x}, length {len:#x}) runs past \
                     the end of the 64-bit address space; "
                )?;
                if *kind == EntryKind::Usable {
                    f.write_str("not trusted as RAM, ignored")
                } else {
                    write!(f, "treated as reserved from {base:#x} up")
                }
            }
            Problem::Overlap {
                usable_entry,
                other_entry,
                other_kind,
                range,
            } => write!(
                f,
                "memory map entries {usable_entry} (usable) and {other_entry} ({other_kind}) \
                 overlap at {range}; that memory is treated as not usable"
            ),
            Problem::ExclusionOutsideRam { what, range } => write!(
                f,
                "{what} at {range} is not entirely in usable RAM; the part in RAM is kept from \
                 the frame allocator, booting on"
            ),
            Problem::InvertedExclusion { what, range } => {
                write!(f, "{what} at {range} ends before it starts; ignored")
            }
        }
    }
}

/// The outcome of reading the memory map.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MemoryLayout {
    /// RAM: sorted, disjoint, never adjacent (touching ranges are merged), none empty.
    pub usable: Vec<PhysRange>,
    /// What the frame allocator may hand out: `usable` less the exclusions and everything below
    /// the low limit, shrunk to whole pages. Sorted, disjoint, page aligned, none empty.
    pub free: Vec<PhysRange>,
    /// Everything odd that was found, in the order found.
    pub problems: Vec<Problem>,
}

impl MemoryLayout {
    /// Total bytes of RAM.
    pub fn usable_bytes(&self) -> u64 {
        self.usable.iter().map(PhysRange::len).sum()
    }

    /// Total bytes the frame allocator may hand out.
    pub fn free_bytes(&self) -> u64 {
        self.free.iter().map(PhysRange::len).sum()
    }

    /// End of the highest RAM range (0 when there is none), which bounds the direct map and the
    /// frame table.
    pub fn highest_usable_end(&self) -> u64 {
        self.usable.last().map_or(0, |r| r.end)
    }
}

/// Reads the memory map `entries` (in any order) and works out the RAM and the free ranges.
///
/// `exclusions` are the ranges already in use (hypervisor image, modules, boot information);
/// `low_limit` is the address below which nothing is handed out (the hypervisor keeps the first
/// MiB for real-mode trampolines and firmware leftovers).
pub fn layout(entries: &[RawEntry], exclusions: &[Exclusion<'_>], low_limit: u64) -> MemoryLayout {
    let mut problems = Vec::new();
    let mut usable_claims = Vec::new();
    let mut other_claims = Vec::new();

    for (index, entry) in entries.iter().enumerate() {
        if entry.len == 0 {
            problems.push(Problem::ZeroLength { index });
            continue;
        }
        let range = match PhysRange::from_base_len(entry.base, entry.len) {
            Some(range) => range,
            None => {
                problems.push(Problem::Wraps {
                    index,
                    base: entry.base,
                    len: entry.len,
                    kind: entry.kind,
                });
                if entry.kind == EntryKind::Usable {
                    continue;
                }
                PhysRange::new(entry.base, u64::MAX)
            }
        };
        let claim = Claim {
            range,
            index,
            kind: entry.kind,
        };
        if entry.kind == EntryKind::Usable {
            usable_claims.push(claim);
        } else {
            other_claims.push(claim);
        }
    }

    let usable_cover = cover(usable_claims);
    let other_cover = cover(other_claims);
    report_overlaps(&usable_cover, &other_cover, &mut problems);

    let usable = subtract(&merged(&usable_cover), &merged(&other_cover));

    let mut holes = Vec::with_capacity(exclusions.len() + 1);
    holes.push(PhysRange::new(0, low_limit));
    for exclusion in exclusions {
        if exclusion.range.end < exclusion.range.start {
            problems.push(Problem::InvertedExclusion {
                what: exclusion.what.into(),
                range: exclusion.range,
            });
            continue;
        }
        if exclusion.range.is_empty() {
            continue;
        }
        if !within(&usable, &exclusion.range) {
            problems.push(Problem::ExclusionOutsideRam {
                what: exclusion.what.into(),
                range: exclusion.range,
            });
        }
        holes.push(exclusion.range);
    }
    holes.sort_unstable();
    let holes = merge_sorted(holes.into_iter());

    let free = subtract(&usable, &holes)
        .iter()
        .filter_map(PhysRange::page_aligned_inward)
        .collect();

    MemoryLayout {
        usable,
        free,
        problems,
    }
}

/// A range some entry claims, with the entry's position and kind for messages.
#[derive(Clone, Copy, Debug)]
struct Claim {
    range: PhysRange,
    index: usize,
    kind: EntryKind,
}

/// The union of `claims` as sorted, disjoint pieces, each lying wholly inside the claim it names,
/// so that a later overlap can be blamed on real entries without comparing every pair.
fn cover(mut claims: Vec<Claim>) -> Vec<Claim> {
    // At equal starts the longest claim comes first so that shorter ones are swallowed; the
    // index breaks remaining ties so the blame is deterministic.
    claims.sort_unstable_by_key(|c| (c.range.start, Reverse(c.range.end), c.index));
    let mut pieces: Vec<Claim> = Vec::with_capacity(claims.len());
    let mut current: Option<Claim> = None;
    for claim in claims {
        match current {
            None => current = Some(claim),
            Some(cur) if claim.range.start >= cur.range.end => {
                pieces.push(cur);
                current = Some(claim);
            }
            Some(cur) if claim.range.end > cur.range.end => {
                // `claim` starts inside `cur` and runs past it: the rest is its own piece.
                pieces.push(cur);
                current = Some(Claim {
                    range: PhysRange::new(cur.range.end, claim.range.end),
                    ..claim
                });
            }
            Some(_) => {} // Wholly inside the current piece.
        }
    }
    pieces.extend(current);
    pieces
}

/// The ranges of a cover with touching pieces joined.
fn merged(cover: &[Claim]) -> Vec<PhysRange> {
    merge_sorted(cover.iter().map(|c| c.range))
}

/// Joins overlapping or touching ranges of a list sorted by start; drops empty ones.
fn merge_sorted(ranges: impl Iterator<Item = PhysRange>) -> Vec<PhysRange> {
    let mut out: Vec<PhysRange> = Vec::new();
    for r in ranges.filter(|r| !r.is_empty()) {
        match out.last_mut() {
            Some(last) if r.start <= last.end => last.end = last.end.max(r.end),
            _ => out.push(r),
        }
    }
    out
}

/// `a` less `b`; both sorted and disjoint. Linear in their lengths.
fn subtract(a: &[PhysRange], b: &[PhysRange]) -> Vec<PhysRange> {
    let mut out = Vec::with_capacity(a.len());
    let mut first = 0;
    for r in a {
        let mut cursor = r.start;
        // Ranges of `b` wholly before `r` can be skipped for good: `a` only moves up.
        while first < b.len() && b[first].end <= cursor {
            first += 1;
        }
        for hole in b[first..].iter().take_while(|h| h.start < r.end) {
            if hole.start > cursor {
                out.push(PhysRange::new(cursor, hole.start));
            }
            cursor = cursor.max(hole.end);
            if cursor >= r.end {
                break;
            }
        }
        if cursor < r.end {
            out.push(PhysRange::new(cursor, r.end));
        }
    }
    out
}

/// Whether `range` lies inside one range of `ranges` (sorted, disjoint, never adjacent, so a
/// range inside their union lies inside a single one of them).
fn within(ranges: &[PhysRange], range: &PhysRange) -> bool {
    let i = ranges.partition_point(|r| r.end <= range.start);
    ranges.get(i).is_some_and(|r| r.contains_range(range))
}

/// Reports where usable and non-usable claims meet. Each piece of the intersection of the two
/// covers lies inside one usable and one non-usable entry, and there are at most as many pieces
/// as the two covers hold together, so the report stays linear in the input even for a hostile
/// map where every entry overlaps every other.
fn report_overlaps(usable: &[Claim], other: &[Claim], problems: &mut Vec<Problem>) {
    let (mut i, mut j) = (0, 0);
    while i < usable.len() && j < other.len() {
        let (u, o) = (usable[i], other[j]);
        if let Some(range) = u.range.intersect(&o.range) {
            problems.push(Problem::Overlap {
                usable_entry: u.index,
                other_entry: o.index,
                other_kind: o.kind,
                range,
            });
        }
        if u.range.end <= o.range.end {
            i += 1;
        } else {
            j += 1;
        }
    }
}

/// The highest page-aligned run of `bytes` that lies inside one `usable` range, within
/// `[lowest, limit)`, and touches none of `avoid`: where the AP start-up trampoline goes (it
/// must be RAM below 1 MiB that nothing else holds). Pages below the frame allocator's low
/// limit are never handed out, so a run found below it stays the caller's for good.
pub fn low_run(
    usable: &[PhysRange],
    avoid: &[PhysRange],
    lowest: u64,
    limit: u64,
    bytes: u64,
) -> Option<u64> {
    let bytes = bytes.checked_next_multiple_of(PAGE_SIZE)?;
    usable
        .iter()
        .rev()
        .filter_map(|r| {
            let start = r.start.max(lowest).checked_next_multiple_of(PAGE_SIZE)?;
            let end = r.end.min(limit) / PAGE_SIZE * PAGE_SIZE;
            // Walk down from the top of the range, page by page, past what must be avoided.
            let mut at = end.checked_sub(bytes)?;
            loop {
                if at < start {
                    return None;
                }
                let run = PhysRange::new(at, at + bytes);
                match avoid
                    .iter()
                    .filter(|a| a.overlaps(&run))
                    .map(|a| a.start)
                    .min()
                {
                    None => return Some(at),
                    Some(blocked) => {
                        at = (blocked / PAGE_SIZE * PAGE_SIZE).checked_sub(bytes)?;
                    }
                }
            }
        })
        .next()
}

/// The physical range of a module from its multiboot2 tag's `mod_start` and `mod_end`.
///
/// Both are 32-bit (Multiboot2 specification §3.6.6), so no module can lie above 4 GiB:
/// GRUB's `module2` allocates every module below it (`grub_cmd_module` asks its relocator
/// for a chunk ending at most at `0xffffffff`). GRUB computes `mod_end` as `mod_start +
/// size` in 32 bits, so a module that ends exactly at 4 GiB arrives with `mod_end` 0: read
/// as ending at 4 GiB. Any other end before the start is refused (`None`).
pub fn module_range(mod_start: u32, mod_end: u32) -> Option<PhysRange> {
    const FOUR_GIB: u64 = 1 << 32;
    let start = u64::from(mod_start);
    let end = match mod_end {
        0 if mod_start != 0 => FOUR_GIB,
        e if e < mod_start => return None,
        e => u64::from(e),
    };
    Some(PhysRange { start, end })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn module_ranges_near_4_gib() {
        let r = |start, end| Some(PhysRange { start, end });
        assert_eq!(module_range(0x10_0000, 0x20_0000), r(0x10_0000, 0x20_0000));
        // The highest module GRUB can place: its last byte at 0xffff_fffe.
        assert_eq!(
            module_range(0xFFFF_F000, 0xFFFF_FFFF),
            r(0xFFFF_F000, 0xFFFF_FFFF)
        );
        // Ending exactly at 4 GiB: GRUB's 32-bit `mod_end` wrapped to 0.
        assert_eq!(module_range(0xFFFF_F000, 0), r(0xFFFF_F000, 1 << 32));
        // An empty module, anywhere (GRUB gives 0, 0 for an empty file).
        assert_eq!(module_range(0, 0), r(0, 0));
        assert_eq!(module_range(0x5000, 0x5000), r(0x5000, 0x5000));
        // Any other end before the start: refused.
        assert_eq!(module_range(0x20_0000, 0x10_0000), None);
        assert_eq!(module_range(0xFFFF_F000, 0x1000), None);
    }

    #[test]
    fn low_run_for_the_trampoline() {
        let r = PhysRange::new;
        let usable = [r(0, 0x9_FC00), r(0x10_0000, 0x4000_0000)];
        // The highest whole pages below 0xA0000 inside RAM: 0x9F000 is cut by the end at 0x9FC00.
        assert_eq!(
            low_run(&usable, &[], 0x1000, 0xA_0000, 0x4000),
            Some(0x9_B000)
        );
        // Something in the way moves it below.
        assert_eq!(
            low_run(&usable, &[r(0x9_C000, 0x9_C001)], 0x1000, 0xA_0000, 0x4000),
            Some(0x9_8000)
        );
        // Nothing fits: too little room above `lowest`.
        assert_eq!(low_run(&usable, &[], 0x9_C000, 0xA_0000, 0x4000), None);
        assert_eq!(
            low_run(&[r(0x10_0000, 0x20_0000)], &[], 0x1000, 0xA_0000, 0x1000),
            None
        );
        assert_eq!(low_run(&[], &[], 0, 0xA_0000, 0x1000), None);
        // Every answer is inside RAM, above `lowest`, below `limit` and clear of `avoid`.
        let avoid = [r(0x8_0000, 0x9_0000), r(0x2000, 0x3000)];
        for lowest in (0..0xA_0000).step_by(0x3000) {
            if let Some(at) = low_run(&usable, &avoid, lowest, 0xA_0000, 0x2000) {
                let run = r(at, at + 0x2000);
                assert!(at >= lowest && run.end <= 0xA_0000 && at % PAGE_SIZE == 0);
                assert!(usable.iter().any(|u| u.contains_range(&run)));
                assert!(!avoid.iter().any(|a| a.overlaps(&run)));
            }
        }
    }
    use alloc::string::ToString;
    use alloc::vec;

    const MIB: u64 = 1 << 20;

    fn usable(base: u64, len: u64) -> RawEntry {
        RawEntry {
            base,
            len,
            kind: EntryKind::Usable,
        }
    }

    fn reserved(base: u64, len: u64) -> RawEntry {
        RawEntry {
            base,
            len,
            kind: EntryKind::Reserved,
        }
    }

    fn r(start: u64, end: u64) -> PhysRange {
        PhysRange::new(start, end)
    }

    fn excl(start: u64, end: u64, what: &str) -> Exclusion<'_> {
        Exclusion {
            range: r(start, end),
            what,
        }
    }

    /// The map QEMU's SeaBIOS gives a 128 MiB guest.
    fn qemu_map() -> Vec<RawEntry> {
        vec![
            usable(0, 0x9fc00),
            reserved(0x9fc00, 0x400),
            reserved(0xf0000, 0x10000),
            usable(0x100000, 0x7fe0000 - 0x100000),
            reserved(0x7fe0000, 0x20000),
            reserved(0xfffc0000, 0x40000),
        ]
    }

    #[test]
    fn phys_range_helpers() {
        let a = r(0x1000, 0x3000);
        assert_eq!(a.len(), 0x2000);
        assert!(!a.is_empty());
        assert!(a.contains(0x1000) && a.contains(0x2fff) && !a.contains(0x3000));
        assert!(!a.contains(0xfff));
        assert!(a.overlaps(&r(0x2fff, 0x4000)));
        assert!(
            !a.overlaps(&r(0x3000, 0x4000)),
            "touching is not overlapping"
        );
        assert!(
            !a.overlaps(&r(0x2000, 0x2000)),
            "an empty range overlaps nothing"
        );
        assert_eq!(a.intersect(&r(0x2000, 0x5000)), Some(r(0x2000, 0x3000)));
        assert_eq!(a.intersect(&r(0x3000, 0x5000)), None);
        assert!(a.contains_range(&r(0x1000, 0x3000)));
        assert!(a.contains_range(&r(0x9000, 0x9000)));
        assert!(!a.contains_range(&r(0x1000, 0x3001)));
        assert_eq!(r(5, 3).len(), 0);
        assert!(r(5, 3).is_empty());
        assert_eq!(PhysRange::from_base_len(u64::MAX, 1), None);
        assert_eq!(
            PhysRange::from_base_len(u64::MAX - 1, 1),
            Some(r(u64::MAX - 1, u64::MAX))
        );
        assert_eq!(
            r(0x1001, 0x3fff).page_aligned_inward(),
            Some(r(0x2000, 0x3000))
        );
        assert_eq!(r(0x1001, 0x2fff).page_aligned_inward(), None);
        assert_eq!(
            r(0x1000, 0x2000).page_aligned_inward(),
            Some(r(0x1000, 0x2000))
        );
        assert_eq!(r(u64::MAX - 5, u64::MAX).page_aligned_inward(), None);
        assert_eq!(a.to_string(), "[0x1000, 0x3000)");
    }

    #[test]
    fn entry_kinds_from_multiboot2() {
        assert_eq!(EntryKind::from_multiboot2(1), EntryKind::Usable);
        assert_eq!(EntryKind::from_multiboot2(2), EntryKind::Reserved);
        assert_eq!(EntryKind::from_multiboot2(3), EntryKind::AcpiReclaimable);
        assert_eq!(EntryKind::from_multiboot2(4), EntryKind::AcpiNvs);
        assert_eq!(EntryKind::from_multiboot2(5), EntryKind::Defective);
        assert_eq!(EntryKind::from_multiboot2(0), EntryKind::Other(0));
        assert_eq!(EntryKind::from_multiboot2(77), EntryKind::Other(77));
        assert_eq!(EntryKind::Other(77).to_string(), "unknown type 77");
    }

    #[test]
    fn qemu_map_without_exclusions() {
        let l = layout(&qemu_map(), &[], MIB);
        assert_eq!(l.usable, vec![r(0, 0x9fc00), r(0x100000, 0x7fe0000)]);
        assert_eq!(l.free, vec![r(0x100000, 0x7fe0000)]);
        assert!(l.problems.is_empty(), "{:?}", l.problems);
        assert_eq!(l.highest_usable_end(), 0x7fe0000);
        assert_eq!(l.usable_bytes(), 0x9fc00 + 0x7ee0000);
        assert_eq!(l.free_bytes(), 0x7ee0000);
    }

    #[test]
    fn qemu_map_with_image_modules_and_mbi() {
        let exclusions = [
            excl(0x100000, 0x2a2456, "hypervisor image"),
            excl(0x2a4000, 0x900123, "module 0"),
            excl(0x900200, 0x900800, "multiboot2 information"),
        ];
        let l = layout(&qemu_map(), &exclusions, MIB);
        // The page holding the image's end is lost, the gap up to the module is one whole page,
        // the gap between module and MBI holds no whole page, and everything from the page
        // after the MBI is free.
        assert_eq!(l.free, vec![r(0x2a3000, 0x2a4000), r(0x901000, 0x7fe0000)]);
        assert!(l.problems.is_empty(), "{:?}", l.problems);
    }

    #[test]
    fn unsorted_input_gives_the_same_result() {
        let mut map = qemu_map();
        let sorted = layout(&map, &[], MIB);
        map.reverse();
        let reversed = layout(&map, &[], MIB);
        assert_eq!(sorted.usable, reversed.usable);
        assert_eq!(sorted.free, reversed.free);
    }

    #[test]
    fn usable_reserved_overlap_is_not_usable_and_reported() {
        let map = [usable(0, 0x10000), reserved(0x8000, 0x10000)];
        let l = layout(&map, &[], 0);
        assert_eq!(l.usable, vec![r(0, 0x8000)]);
        assert_eq!(
            l.problems,
            vec![Problem::Overlap {
                usable_entry: 0,
                other_entry: 1,
                other_kind: EntryKind::Reserved,
                range: r(0x8000, 0x10000)
            }]
        );
        assert_eq!(
            l.problems[0].to_string(),
            "memory map entries 0 (usable) and 1 (reserved) overlap at [0x8000, 0x10000); that \
             memory is treated as not usable"
        );
    }

    #[test]
    fn reserved_hole_in_the_middle_of_usable() {
        let map = [
            usable(0, 0x100000),
            RawEntry {
                base: 0x40000,
                len: 0x1000,
                kind: EntryKind::AcpiNvs,
            },
        ];
        let l = layout(&map, &[], 0);
        assert_eq!(l.usable, vec![r(0, 0x40000), r(0x41000, 0x100000)]);
        assert!(matches!(
            l.problems[..],
            [Problem::Overlap {
                other_kind: EntryKind::AcpiNvs,
                range: PhysRange {
                    start: 0x40000,
                    end: 0x41000
                },
                ..
            }]
        ));
    }

    #[test]
    fn usable_duplicates_and_overlaps_merge_silently() {
        let map = [
            usable(0x1000, 0x1000),
            usable(0x1000, 0x1000),
            usable(0x1800, 0x2000),
            usable(0x3800, 0x800),
        ];
        let l = layout(&map, &[], 0);
        assert_eq!(l.usable, vec![r(0x1000, 0x4000)]);
        assert!(l.problems.is_empty());
        // Identical reserved duplicates are harmless too.
        let l = layout(&[reserved(0, 0x1000), reserved(0, 0x1000)], &[], 0);
        assert!(l.usable.is_empty() && l.problems.is_empty());
    }

    #[test]
    fn adjacent_usable_entries_are_joined() {
        let l = layout(&[usable(0x2000, 0x1000), usable(0x1000, 0x1000)], &[], 0);
        assert_eq!(l.usable, vec![r(0x1000, 0x3000)]);
        assert_eq!(l.free, vec![r(0x1000, 0x3000)]);
    }

    #[test]
    fn zero_length_entries_are_dropped_and_reported() {
        let map = [
            usable(0x1000, 0),
            usable(0x2000, 0x1000),
            reserved(0x2800, 0),
        ];
        let l = layout(&map, &[], 0);
        assert_eq!(l.usable, vec![r(0x2000, 0x3000)]);
        assert_eq!(
            l.problems,
            vec![
                Problem::ZeroLength { index: 0 },
                Problem::ZeroLength { index: 2 }
            ]
        );
        assert_eq!(
            l.problems[0].to_string(),
            "memory map entry 0 has zero length; ignored"
        );
    }

    #[test]
    fn wrapping_usable_entry_is_dropped() {
        let map = [usable(0x1000, 0x1000), usable(u64::MAX - 0xfff, 0x2000)];
        let l = layout(&map, &[], 0);
        assert_eq!(l.usable, vec![r(0x1000, 0x2000)]);
        assert_eq!(
            l.problems,
            vec![Problem::Wraps {
                index: 1,
                base: u64::MAX - 0xfff,
                len: 0x2000,
                kind: EntryKind::Usable
            }]
        );
        assert!(l.problems[0].to_string().contains("not trusted as RAM"));
    }

    #[test]
    fn wrapping_reserved_entry_reserves_to_the_top() {
        let map = [
            usable(0x1000, u64::MAX - 0x1000),
            reserved(0x8000, u64::MAX),
        ];
        let l = layout(&map, &[], 0);
        assert_eq!(l.usable, vec![r(0x1000, 0x8000)]);
        assert!(matches!(l.problems[0], Problem::Wraps { index: 1, .. }));
        assert!(matches!(
            l.problems[1],
            Problem::Overlap {
                range: PhysRange {
                    start: 0x8000,
                    end: u64::MAX
                },
                ..
            }
        ));
        assert!(
            l.problems[0]
                .to_string()
                .contains("reserved from 0x8000 up")
        );
    }

    #[test]
    fn usable_entry_ending_exactly_at_the_top() {
        let l = layout(&[usable(u64::MAX - 0x2000, 0x2000)], &[], 0);
        assert_eq!(l.usable, vec![r(u64::MAX - 0x2000, u64::MAX)]);
        // Only one whole page fits below 2^64 - 1.
        assert_eq!(l.free, vec![r(u64::MAX - 0x1fff, u64::MAX - 0xfff)]);
        assert!(l.problems.is_empty());
    }

    #[test]
    fn unaligned_ranges_shrink_inward() {
        let map = [usable(0x1234, 0x5000), usable(0x10001, 0xffe)];
        let l = layout(&map, &[], 0);
        assert_eq!(l.usable, vec![r(0x1234, 0x6234), r(0x10001, 0x10fff)]);
        assert_eq!(l.free, vec![r(0x2000, 0x6000)]);
    }

    #[test]
    fn low_limit_is_never_free() {
        let l = layout(&[usable(0, 0x300000)], &[], MIB + 1);
        assert_eq!(l.free, vec![r(0x101000, 0x300000)]);
        let l = layout(&[usable(0, 0x300000)], &[], u64::MAX);
        assert!(l.free.is_empty());
        assert_eq!(l.usable, vec![r(0, 0x300000)]);
    }

    #[test]
    fn module_beyond_ram_is_reported_but_not_fatal() {
        let exclusions = [
            excl(0x200000, 0x280000, "hypervisor image"),
            excl(0x7f00000, 0x8100000, "module 0"),
            excl(0x1_0000_0000, 0x1_0010_0000, "module 1"),
        ];
        let l = layout(&qemu_map(), &exclusions, MIB);
        assert_eq!(l.free, vec![r(0x100000, 0x200000), r(0x280000, 0x7f00000)]);
        assert_eq!(
            l.problems,
            vec![
                Problem::ExclusionOutsideRam {
                    what: "module 0".into(),
                    range: r(0x7f00000, 0x8100000)
                },
                Problem::ExclusionOutsideRam {
                    what: "module 1".into(),
                    range: r(0x1_0000_0000, 0x1_0010_0000)
                },
            ]
        );
        assert_eq!(
            l.problems[1].to_string(),
            "module 1 at [0x100000000, 0x100100000) is not entirely in usable RAM; the part in \
             RAM is kept from the frame allocator, booting on"
        );
    }

    #[test]
    fn exclusion_across_a_reserved_gap_is_outside_ram() {
        // Straddles the 0x9fc00..0x100000 hole: both parts are in RAM, the middle is not.
        let l = layout(&qemu_map(), &[excl(0x90000, 0x110000, "module 0")], 0);
        assert!(matches!(
            l.problems[..],
            [Problem::ExclusionOutsideRam { .. }]
        ));
        assert_eq!(l.free, vec![r(0, 0x90000), r(0x110000, 0x7fe0000)]);
    }

    #[test]
    fn empty_and_inverted_exclusions() {
        let exclusions = [
            excl(0x5000, 0x5000, "empty"),
            excl(0x6000, 0x5000, "module 3"),
        ];
        let l = layout(&[usable(0, 0x10000)], &exclusions, 0);
        assert_eq!(l.free, vec![r(0, 0x10000)]);
        assert_eq!(
            l.problems,
            vec![Problem::InvertedExclusion {
                what: "module 3".into(),
                range: r(0x6000, 0x5000)
            }]
        );
        assert_eq!(
            l.problems[0].to_string(),
            "module 3 at [0x6000, 0x5000) ends before it starts; ignored"
        );
    }

    #[test]
    fn empty_map() {
        let l = layout(&[], &[excl(0x1000, 0x2000, "hypervisor image")], MIB);
        assert!(l.usable.is_empty() && l.free.is_empty());
        assert_eq!(l.highest_usable_end(), 0);
        assert_eq!(l.usable_bytes(), 0);
        assert_eq!(l.problems.len(), 1);
    }

    #[test]
    fn non_usable_kinds_all_reserve() {
        for kind in [
            EntryKind::Reserved,
            EntryKind::AcpiReclaimable,
            EntryKind::AcpiNvs,
            EntryKind::Defective,
            EntryKind::Other(0),
            EntryKind::Other(0xdead),
        ] {
            let map = [
                usable(0, 0x10000),
                RawEntry {
                    base: 0x4000,
                    len: 0x1000,
                    kind,
                },
            ];
            let l = layout(&map, &[], 0);
            assert_eq!(l.usable, vec![r(0, 0x4000), r(0x5000, 0x10000)], "{kind}");
        }
    }

    #[test]
    fn one_reserved_entry_across_many_usable_ones_reports_each() {
        let mut map: Vec<RawEntry> = (0..4).map(|i| usable(i * 0x2000, 0x1000)).collect();
        map.push(reserved(0, 0x10000));
        let l = layout(&map, &[], 0);
        assert!(l.usable.is_empty());
        let overlaps: Vec<_> = l
            .problems
            .iter()
            .map(|p| match p {
                Problem::Overlap {
                    usable_entry,
                    other_entry,
                    range,
                    ..
                } => (*usable_entry, *other_entry, *range),
                other => panic!("unexpected {other:?}"),
            })
            .collect();
        assert_eq!(
            overlaps,
            vec![
                (0, 4, r(0, 0x1000)),
                (1, 4, r(0x2000, 0x3000)),
                (2, 4, r(0x4000, 0x5000)),
                (3, 4, r(0x6000, 0x7000)),
            ]
        );
    }

    /// Deterministic xorshift64* so failures reproduce.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }
        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }
        /// An address in a small space so that entries collide often, sometimes unaligned,
        /// sometimes near the top of the 64-bit space.
        fn addr(&mut self) -> u64 {
            match self.below(10) {
                0 => u64::MAX - self.below(0x3000),
                1 => self.below(0x40000),
                2 => self.below(0x40) * 0x1000 + self.below(3),
                _ => self.below(0x40) * 0x1000 + [0, 0, 0, 0x800][self.below(4) as usize],
            }
        }
        fn kind(&mut self) -> EntryKind {
            match self.below(8) {
                0 => EntryKind::Reserved,
                1 => EntryKind::AcpiNvs,
                2 => EntryKind::Other(self.next() as u32),
                _ => EntryKind::Usable,
            }
        }
    }

    fn sorted_disjoint(ranges: &[PhysRange], allow_adjacent: bool) -> bool {
        ranges.iter().all(|r| !r.is_empty())
            && ranges.windows(2).all(|w| {
                if allow_adjacent {
                    w[0].end <= w[1].start
                } else {
                    w[0].end < w[1].start
                }
            })
    }

    fn in_any(ranges: &[PhysRange], addr: u64) -> bool {
        ranges.iter().any(|r| r.contains(addr))
    }

    /// Checks `layout` against brute-force definitions on many random maps. Membership only
    /// changes at an entry's or exclusion's boundary, so testing every boundary (and the
    /// address just before it, and the pages around it) tests everything.
    #[test]
    fn random_maps_satisfy_the_invariants() {
        let mut rng = Rng(0x5eed_1234_abcd_ef01);
        for _ in 0..3000 {
            let n = rng.below(12) as usize;
            let entries: Vec<RawEntry> = (0..n)
                .map(|_| {
                    let base = rng.addr();
                    let len = match rng.below(8) {
                        0 => 0,
                        1 => u64::MAX - rng.below(0x10000),
                        2 => rng.below(3) + 1,
                        3 => 0x1000 - rng.below(3),
                        _ => rng.below(0x10000) + 1,
                    };
                    RawEntry {
                        base,
                        len,
                        kind: rng.kind(),
                    }
                })
                .collect();
            let names: Vec<String> = (0..rng.below(4))
                .map(|i| alloc::format!("module {i}"))
                .collect();
            let exclusions: Vec<Exclusion<'_>> = names
                .iter()
                .map(|what| {
                    let start = rng.addr();
                    let end = start.saturating_add(rng.below(0x8000));
                    Exclusion {
                        range: PhysRange::new(start, end),
                        what,
                    }
                })
                .collect();
            let low_limit = match rng.below(6) {
                0 => 0,
                1 => 0x1001,
                2 => rng.below(0x20000),
                _ => rng.below(0x20) * 0x1000,
            };
            let l = layout(&entries, &exclusions, low_limit);

            // The oracle's view of each entry: usable ones that wrap are dropped, others clamp.
            let valid = |want_usable: bool| -> Vec<PhysRange> {
                entries
                    .iter()
                    .filter(|e| e.len != 0 && (e.kind == EntryKind::Usable) == want_usable)
                    .filter_map(|e| match PhysRange::from_base_len(e.base, e.len) {
                        Some(r) => Some(r),
                        None if !want_usable => Some(PhysRange::new(e.base, u64::MAX)),
                        None => None,
                    })
                    .collect()
            };
            let (raw_usable, raw_other) = (valid(true), valid(false));
            let excl_ranges: Vec<PhysRange> = exclusions.iter().map(|e| e.range).collect();
            let is_ram = |a: u64| in_any(&raw_usable, a) && !in_any(&raw_other, a);
            let is_available = |a: u64| is_ram(a) && a >= low_limit && !in_any(&excl_ranges, a);

            assert!(sorted_disjoint(&l.usable, false), "{:?}", l.usable);
            assert!(sorted_disjoint(&l.free, false), "{:?}", l.free);

            let mut points: Vec<u64> = vec![0, low_limit, u64::MAX];
            for r in raw_usable.iter().chain(&raw_other).chain(&excl_ranges) {
                points.extend([r.start, r.end]);
            }
            for &p in points.clone().iter() {
                points.extend([p.saturating_sub(1), p.saturating_add(1)]);
                let page = p - p % PAGE_SIZE;
                points.extend([
                    page,
                    page.saturating_sub(PAGE_SIZE),
                    page.saturating_add(PAGE_SIZE),
                ]);
            }
            for _ in 0..16 {
                points.push(rng.addr());
            }
            for &a in &points {
                assert_eq!(
                    in_any(&l.usable, a),
                    is_ram(a),
                    "usable at {a:#x}: {entries:?}"
                );
                let page = a - a % PAGE_SIZE;
                let whole_page_available = page.checked_add(PAGE_SIZE).is_some_and(|end| {
                    // Availability is constant between boundary points, so checking the page's
                    // first byte and each boundary inside it covers the whole page.
                    is_available(page)
                        && points
                            .iter()
                            .filter(|&&p| page < p && p < end)
                            .all(|&p| is_available(p))
                        && is_available(end - 1)
                });
                assert_eq!(
                    in_any(&l.free, a),
                    whole_page_available,
                    "free at {a:#x}: {entries:?} {exclusions:?} {low_limit:#x}"
                );
            }

            for f in &l.free {
                assert_eq!(f.start % PAGE_SIZE, 0);
                assert_eq!(f.end % PAGE_SIZE, 0);
                assert!(f.start >= low_limit);
                assert!(
                    l.usable.iter().any(|u| u.contains_range(f)),
                    "{f} not in RAM"
                );
                assert!(
                    excl_ranges.iter().all(|e| !e.overlaps(f)),
                    "{f} hits an exclusion"
                );
            }

            // Problems: overlaps name real entries that both cover the range, and together they
            // cover exactly what was lost to non-usable entries.
            let mut lost = 0u64;
            let mut zero = 0;
            let mut wraps = 0;
            let mut outside = 0;
            for p in &l.problems {
                match p {
                    Problem::Overlap {
                        usable_entry,
                        other_entry,
                        other_kind,
                        range,
                    } => {
                        let u = entries[*usable_entry];
                        let o = entries[*other_entry];
                        assert_eq!(u.kind, EntryKind::Usable);
                        assert_eq!(o.kind, *other_kind);
                        assert_ne!(o.kind, EntryKind::Usable);
                        assert!(PhysRange::new(u.base, u.base + u.len).contains_range(range));
                        let o_end = o.base.saturating_add(o.len);
                        assert!(PhysRange::new(o.base, o_end).contains_range(range));
                        lost += range.len();
                    }
                    Problem::ZeroLength { index } => {
                        assert_eq!(entries[*index].len, 0);
                        zero += 1;
                    }
                    Problem::Wraps { index, .. } => {
                        let e = entries[*index];
                        assert!(e.base.checked_add(e.len).is_none());
                        wraps += 1;
                    }
                    Problem::ExclusionOutsideRam { range, .. } => {
                        let inside = l.usable.iter().any(|u| u.contains_range(range));
                        assert!(!inside);
                        outside += 1;
                    }
                    Problem::InvertedExclusion { .. } => unreachable!("none generated"),
                }
            }
            assert_eq!(zero, entries.iter().filter(|e| e.len == 0).count());
            assert_eq!(
                wraps,
                entries
                    .iter()
                    .filter(|e| e.len != 0 && e.base.checked_add(e.len).is_none())
                    .count()
            );
            let expected_outside = exclusions
                .iter()
                .filter(|e| !e.range.is_empty())
                .filter(|e| !l.usable.iter().any(|u| u.contains_range(&e.range)))
                .count();
            assert_eq!(outside, expected_outside);
            let union_usable = merge_sorted({
                let mut v = raw_usable.clone();
                v.sort_unstable();
                v.into_iter()
            });
            let union_usable_bytes: u64 = union_usable.iter().map(PhysRange::len).sum();
            assert_eq!(lost, union_usable_bytes - l.usable_bytes(), "{entries:?}");
        }
    }

    /// A hostile map: thousands of entries, each overlapping many others. Must stay fast (the
    /// test would take minutes if anything were quadratic) and report a linear number of
    /// problems.
    #[test]
    fn thousands_of_overlapping_entries_stay_linear() {
        let n = 20_000u64;
        let mut map = Vec::new();
        for i in 0..n {
            // Nested usable ranges and nested reserved ranges over the same space.
            map.push(usable(i * 0x1000, (n - i) * 0x2000));
            map.push(reserved(i * 0x1000 + 0x800, 0x100));
        }
        let l = layout(&map, &[], 0);
        assert!(l.problems.len() <= map.len());
        assert_eq!(l.usable.len() as u64, n + 1);
        let exclusions: Vec<Exclusion<'_>> = (0..n)
            .map(|i| excl(i * 0x1000, i * 0x1000 + 0x10, "module"))
            .collect();
        let l = layout(&map, &exclusions, 0);
        // Every page below n * 4 KiB holds a reserved piece; above it the first entry's RAM
        // goes on untouched.
        assert_eq!(l.free, vec![r(n * 0x1000, 2 * n * 0x1000)]);
    }
}
