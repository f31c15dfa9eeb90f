//! `memmap`: hostile firmware memory maps (unsorted, overlapping, zero-length, wrapping
//! entries of every type) and exclusions, against a brute-force reference: an address is
//! usable exactly when some usable entry covers it and no other entry does (a wrapping
//! non-usable entry claims everything from its base up); the free ranges are the whole pages
//! of usable memory outside the exclusions and below-`low_limit` hole, sorted and disjoint.
//! Exact, because both sides are unions of intervals whose ends are among the entries' ends:
//! one point per elementary interval decides it.

use crate::engine::{Input, Target};
use crate::mm::memmap::{EntryKind, Exclusion, PAGE_SIZE, PhysRange, RawEntry, layout};

pub const TARGET: Target = Target {
    name: "memmap",
    about: "firmware memory maps and exclusions against a brute-force reference",
    run,
    seeds: super::no_seeds,
    max_len: 512,
};

/// An address from a small grid (so entries collide), page-scaled or raw, or an extreme.
fn addr(input: &mut Input) -> u64 {
    match input.below(8) {
        0..=3 => input.below(64) * PAGE_SIZE,
        4 | 5 => input.below(64) * PAGE_SIZE + input.below(3) * 0x7ff,
        6 => u64::MAX - input.below(3) * PAGE_SIZE,
        _ => input.u64(),
    }
}

fn run(data: &[u8]) {
    let mut input = Input::new(data);
    let n = input.below(12) as usize;
    let entries: Vec<RawEntry> = (0..n)
        .map(|_| {
            let base = addr(&mut input);
            let len = match input.below(4) {
                0 => 0,
                1 => input.u64(),
                _ => addr(&mut input),
            };
            let kind = EntryKind::from_multiboot2(input.below(7) as u32);
            RawEntry { base, len, kind }
        })
        .collect();
    let names = ["image", "modules", "boot info"];
    let x = input.below(4) as usize;
    let exclusions: Vec<Exclusion> = (0..x)
        .map(|i| Exclusion {
            range: PhysRange::new(addr(&mut input), addr(&mut input)),
            what: names[i % names.len()],
        })
        .collect();
    let low_limit = addr(&mut input);
    let out = layout(&entries, &exclusions, low_limit);

    // The reference, per point.
    let claims = |kind_usable: bool, a: u64| {
        entries.iter().any(|e| {
            if e.len == 0 || (e.kind == EntryKind::Usable) != kind_usable {
                return false;
            }
            match e.base.checked_add(e.len) {
                Some(end) => e.base <= a && a < end,
                // Wrapping: a usable one is ignored, any other claims from its base up.
                None => !kind_usable && e.base <= a,
            }
        })
    };
    let usable_ref = |a: u64| claims(true, a) && !claims(false, a);
    let mut points = vec![0, u64::MAX];
    for e in &entries {
        points.push(e.base);
        points.push(e.base.wrapping_add(e.len));
    }
    for r in &out.usable {
        points.push(r.start);
        points.push(r.end);
    }
    points.sort_unstable();
    points.dedup();
    let in_ranges = |ranges: &[PhysRange], a: u64| ranges.iter().any(|r| r.contains(a));
    for &p in &points {
        assert_eq!(
            in_ranges(&out.usable, p),
            usable_ref(p),
            "usable at {p:#x}: {entries:x?} -> {:x?}",
            out.usable
        );
    }
    for ranges in [&out.usable, &out.free] {
        for w in ranges.windows(2) {
            assert!(
                w[0].end < w[1].start || (ranges == &out.usable && w[0].end <= w[1].start),
                "ranges not sorted and disjoint: {ranges:x?}"
            );
        }
        for r in ranges.iter() {
            assert!(!r.is_empty(), "empty range in {ranges:x?}");
        }
    }
    for r in &out.free {
        assert_eq!(r.start % PAGE_SIZE, 0, "free range {r} not page aligned");
        assert_eq!(r.end % PAGE_SIZE, 0, "free range {r} not page aligned");
        assert!(
            out.usable.iter().any(|u| u.contains_range(r)),
            "free {r} not usable"
        );
        assert!(
            r.start >= low_limit,
            "free {r} below the low limit {low_limit:#x}"
        );
        for x in &exclusions {
            assert!(
                !r.overlaps(&x.range),
                "free {r} overlaps excluded {}",
                x.range
            );
        }
    }
    // Every whole usable page outside the holes is free: nothing usable is lost.
    for u in &out.usable {
        for page in [
            u.start.checked_next_multiple_of(PAGE_SIZE).unwrap_or(0),
            u.end.saturating_sub(PAGE_SIZE) / PAGE_SIZE * PAGE_SIZE,
        ] {
            let Some(end) = page.checked_add(PAGE_SIZE) else {
                continue;
            };
            let whole = PhysRange::new(page, end);
            let excluded = page < low_limit || exclusions.iter().any(|x| x.range.overlaps(&whole));
            if u.contains_range(&whole) && !excluded {
                assert!(
                    out.free.iter().any(|f| f.contains_range(&whole)),
                    "usable page {page:#x} not free"
                );
            }
        }
    }
    assert!(
        out.free_bytes() <= out.usable_bytes(),
        "more free than usable"
    );
    for p in &out.problems {
        let _ = p.to_string();
    }
}
