//! [`IdMap`], the map of domains by id that every trap looks up, with the hypercall
//! context's two-domain borrow (`IdMap::two_mut`, for `Hc::pair`), so that no handler ever
//! takes a domain out of the map to reach another.

use alloc::vec::Vec;
use core::ops::{Bound, RangeBounds};

/// Slots of an [`IdMap`]'s lookup hints (a power of two).
const HINTS: usize = 64;

/// A map from 16-bit ids (domain ids) to values, kept as a list sorted by id, with a hint
/// of each entry's place at its id modulo 64 (`HINTS`): a lookup whose hint is right (every
/// lookup while at most one live id falls on each hint slot) is one load and one compare,
/// where a `BTreeMap` search took about 40 instructions of every trap (issue 18, session
/// 15). A hint is only a guess, checked against the id it finds: a stale or shared one
/// costs a binary search, never a wrong entry. Inserting and removing are O(n) (the list
/// shifts and the hints are redone), for maps of at most a few thousand entries that
/// change far less often than they are read.
pub struct IdMap<V> {
    list: Vec<(u16, V)>,
    hints: [u16; HINTS],
}

impl<V> IdMap<V> {
    pub const fn new() -> Self {
        IdMap {
            list: Vec::new(),
            hints: [0; HINTS],
        }
    }

    /// Where `id` is in the list.
    #[inline]
    fn place(&self, id: u16) -> Option<usize> {
        let hint = usize::from(self.hints[usize::from(id) % HINTS]);
        if self.list.get(hint).is_some_and(|(at, _)| *at == id) {
            return Some(hint);
        }
        self.searched(id)
    }

    #[inline(never)]
    fn searched(&self, id: u16) -> Option<usize> {
        self.list.binary_search_by_key(&id, |(at, _)| *at).ok()
    }

    /// Points each hint slot at the last entry that falls on it.
    fn rehint(&mut self) {
        for (place, (id, _)) in self.list.iter().enumerate() {
            // At most 65,536 distinct ids, so every place fits.
            self.hints[usize::from(*id) % HINTS] = place as u16;
        }
    }

    pub fn len(&self) -> usize {
        self.list.len()
    }

    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    pub fn contains_key(&self, id: u16) -> bool {
        self.place(id).is_some()
    }

    #[inline]
    pub fn get(&self, id: u16) -> Option<&V> {
        let place = self.place(id)?;
        self.list.get(place).map(|(_, v)| v)
    }

    pub fn get_mut(&mut self, id: u16) -> Option<&mut V> {
        let place = self.place(id)?;
        self.list.get_mut(place).map(|(_, v)| v)
    }

    /// The ids, in order.
    pub fn keys(&self) -> impl DoubleEndedIterator<Item = u16> + '_ {
        self.list.iter().map(|(id, _)| *id)
    }

    /// The entries, in id order.
    pub fn iter_mut(&mut self) -> impl DoubleEndedIterator<Item = (u16, &mut V)> {
        self.list.iter_mut().map(|(id, v)| (*id, v))
    }

    /// The entries whose ids are in `range`, in order.
    pub fn range_mut(
        &mut self,
        range: impl RangeBounds<u16>,
    ) -> impl DoubleEndedIterator<Item = (u16, &mut V)> {
        let from = match range.start_bound() {
            Bound::Included(&a) => self.list.partition_point(|(id, _)| *id < a),
            Bound::Excluded(&a) => self.list.partition_point(|(id, _)| *id <= a),
            Bound::Unbounded => 0,
        };
        let to = match range.end_bound() {
            Bound::Included(&b) => self.list.partition_point(|(id, _)| *id <= b),
            Bound::Excluded(&b) => self.list.partition_point(|(id, _)| *id < b),
            Bound::Unbounded => self.list.len(),
        };
        self.list
            .get_mut(from..to.max(from))
            .unwrap_or_default()
            .iter_mut()
            .map(|(id, v)| (*id, v))
    }

    /// Entries `a` and `b`, mutably, in that order; `None` if either is missing or they are
    /// the same id.
    pub fn two_mut(&mut self, a: u16, b: u16) -> Option<(&mut V, &mut V)> {
        let (x, y) = (self.place(a)?, self.place(b)?);
        if x == y {
            return None;
        }
        let (low, high) = self.list.split_at_mut(x.max(y));
        let (first, second) = (&mut low.get_mut(x.min(y))?.1, &mut high.first_mut()?.1);
        Some(if x < y {
            (first, second)
        } else {
            (second, first)
        })
    }

    /// Adds `value` at `id`; the value it replaces, if `id` was taken. Allocates (the list
    /// may grow): the caller says why that is acceptable.
    pub fn insert(&mut self, id: u16, value: V) -> Option<V> {
        match self.list.binary_search_by_key(&id, |(at, _)| *at) {
            Ok(place) => Some(core::mem::replace(&mut self.list[place].1, value)),
            Err(place) => {
                self.list.insert(place, (id, value));
                self.rehint();
                None
            }
        }
    }

    /// Takes `id`'s entry out. A list left at a quarter of its room or less moves into one
    /// of twice its length (if that room can be had; otherwise it stays), so that the heap a
    /// crowd of domains took comes back when they go (the hypervisor's heap checks count it).
    pub fn remove(&mut self, id: u16) -> Option<V> {
        let place = self.place(id)?;
        let (_, value) = self.list.remove(place);
        let len = self.list.len();
        if self.list.capacity() >= 4 * len.max(2) {
            let mut smaller = Vec::new();
            if smaller.try_reserve_exact(2 * len).is_ok() {
                // Within the room reserved just above.
                smaller.append(&mut self.list);
                self.list = smaller;
            }
        }
        self.rehint();
        Some(value)
    }
}

impl<V> Default for IdMap<V> {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::collections::BTreeMap;

    /// The map against a `BTreeMap` model through a long mixed run: ids that share hint
    /// slots (multiples of 64 apart), inserts that shift the list, removals, replacements,
    /// lookups of ids never there.
    #[test]
    fn id_map_answers_as_a_btree_map() {
        let mut m = IdMap::new();
        let mut model = BTreeMap::new();
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for step in 0..20_000u32 {
            let r = next();
            // Ids from a small set with many hint collisions, and now and then a wide one.
            let id = if r % 8 == 0 {
                (r >> 16) as u16
            } else {
                ((r >> 8) % 40) as u16 * 64 + (r >> 32) as u16 % 3
            };
            match r % 5 {
                0 | 1 => assert_eq!(m.insert(id, step), model.insert(id, step), "insert {id}"),
                2 => assert_eq!(m.remove(id), model.remove(&id), "remove {id}"),
                _ => {
                    assert_eq!(m.get(id), model.get(&id), "get {id}");
                    assert_eq!(m.contains_key(id), model.contains_key(&id));
                }
            }
            assert_eq!(m.len(), model.len());
        }
        assert!(m.keys().eq(model.keys().copied()), "ids in order");
        for (id, v) in model.iter_mut() {
            assert_eq!(m.get_mut(*id), Some(v));
        }
    }

    /// The room a crowd of entries took goes back as they leave.
    #[test]
    fn id_map_gives_its_room_back() {
        let mut m = IdMap::new();
        for id in 0..1000u16 {
            m.insert(id, u64::from(id));
        }
        assert!(m.list.capacity() >= 1000);
        for id in 1..1000u16 {
            assert_eq!(m.remove(id), Some(u64::from(id)));
            assert!(
                m.list.capacity() <= 4 * m.len().max(2),
                "{}",
                m.list.capacity()
            );
        }
        assert_eq!(m.get(0), Some(&0));
        assert!(m.list.capacity() <= 8);
        assert_eq!(m.remove(0), Some(0));
        assert!(m.is_empty());
    }

    #[test]
    fn id_map_ranges_and_pairs() {
        let mut m = IdMap::new();
        for id in [9u16, 0, 7, 3, 64, 128] {
            assert_eq!(m.insert(id, u32::from(id) + 100), None);
        }
        let ids = |m: &mut IdMap<u32>, r: (Bound<u16>, Bound<u16>)| {
            m.range_mut(r).map(|(id, _)| id).collect::<Vec<_>>()
        };
        use Bound::{Excluded, Included, Unbounded};
        assert_eq!(ids(&mut m, (Included(3), Included(9))), [3, 7, 9]);
        assert_eq!(ids(&mut m, (Excluded(3), Excluded(64))), [7, 9]);
        assert_eq!(ids(&mut m, (Excluded(0), Unbounded)), [3, 7, 9, 64, 128]);
        assert_eq!(ids(&mut m, (Included(10), Included(63))), [] as [u16; 0]);
        assert_eq!(ids(&mut m, (Included(9), Included(3))), [] as [u16; 0]);
        let (x, y) = m.two_mut(128, 0).unwrap();
        assert_eq!((*x, *y), (228, 100));
        *x += 1;
        *y += 1;
        assert_eq!((m.get(128), m.get(0)), (Some(&229), Some(&101)));
        let (x, y) = m.two_mut(64, 128).unwrap();
        assert_eq!((*x, *y), (164, 229));
        assert!(m.two_mut(3, 3).is_none());
        assert!(m.two_mut(3, 5).is_none());
        assert!(m.two_mut(5, 3).is_none());
        assert!(IdMap::<u32>::new().two_mut(1, 2).is_none());
        // A replacement answers the old value and keeps one entry.
        assert_eq!(m.insert(64, 1), Some(164));
        assert_eq!(m.len(), 6);
        assert_eq!(m.remove(64), Some(1));
        assert_eq!(m.get(64), None);
        assert_eq!(m.get(128), Some(&229), "128 shares 64's hint slot");
    }

    /// Review of session 15 (red15): `two_mut`, `range_mut` and `get_mut` against a
    /// `BTreeMap` model, with the old `BTreeMap` pair borrow's answers, through a mixed run
    /// over many entries (more than the 64 hint slots, so most share one), with the extreme
    /// ids 0 and 65535: each answer is the entry of the id asked for, never a neighbour's.
    #[test]
    fn id_map_pairs_and_ranges_answer_as_a_btree_map() {
        let mut m = IdMap::new();
        let mut model = BTreeMap::new();
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let pick = |r: u64| -> u16 {
            match r % 16 {
                0 => 0,
                1 => u16::MAX,
                2 => (r >> 20) as u16,
                _ => ((r >> 8) % 300) as u16 * 64 + (r >> 40) as u16 % 5,
            }
        };
        for step in 0..30_000u32 {
            let r = next();
            let (a, b) = (pick(r >> 4), pick(next()));
            match r % 7 {
                0..=2 => assert_eq!(m.insert(a, step), model.insert(a, step)),
                3 => assert_eq!(m.remove(a), model.remove(&a)),
                4 => {
                    // The model: both present and different, else none.
                    let want = (a != b && model.contains_key(&a) && model.contains_key(&b))
                        .then(|| (model[&a], model[&b]));
                    let got = m.two_mut(a, b).map(|(x, y)| {
                        let got = (*x, *y);
                        // Writes land on the entries asked for.
                        *x = step.wrapping_mul(2);
                        *y = step.wrapping_mul(2) + 1;
                        got
                    });
                    assert_eq!(got, want, "two_mut({a}, {b})");
                    if got.is_some() {
                        model.insert(a, step.wrapping_mul(2));
                        model.insert(b, step.wrapping_mul(2) + 1);
                    }
                }
                5 => {
                    let (lo, hi) = (a.min(b), a.max(b));
                    let got: Vec<(u16, u32)> = m.range_mut(lo..=hi).map(|(k, v)| (k, *v)).collect();
                    let want: Vec<(u16, u32)> =
                        model.range(lo..=hi).map(|(k, v)| (*k, *v)).collect();
                    assert_eq!(got, want, "range {lo}..={hi}");
                    let got: Vec<u16> = m.range_mut(lo..hi).map(|(k, _)| k).collect();
                    let want: Vec<u16> = model.range(lo..hi).map(|(k, _)| *k).collect();
                    assert_eq!(got, want, "range {lo}..{hi}");
                }
                _ => {
                    if let Some(v) = m.get_mut(a) {
                        *v = step;
                    }
                    if let Some(v) = model.get_mut(&a) {
                        *v = step;
                    }
                    assert_eq!(m.get(a), model.get(&a));
                }
            }
            assert_eq!(m.len(), model.len());
        }
        assert!(
            m.len() > 2 * HINTS,
            "the run filled more than the hint slots"
        );
        assert!(
            m.iter_mut()
                .map(|(k, v)| (k, *v))
                .eq(model.iter().map(|(k, v)| (*k, *v)))
        );
    }
}
