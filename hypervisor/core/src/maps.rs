//! Borrowing two entries of one map at once: the hypercall context's two-domain borrow
//! (`Hc::pair`), so that no handler ever takes a domain out of the map to reach another.

use alloc::collections::BTreeMap;

/// Entries `a` and `b` of `map`, mutably, in that order; `None` if either is missing or they
/// are the same key. Both ends of one range, so O(log n) whatever lies between them.
pub fn two_mut<K: Ord + Copy, V>(map: &mut BTreeMap<K, V>, a: K, b: K) -> Option<(&mut V, &mut V)> {
    if a == b {
        return None;
    }
    let (lo, hi) = if a < b { (a, b) } else { (b, a) };
    let mut range = map.range_mut(lo..=hi);
    let (first_key, first) = range.next()?;
    let (last_key, last) = range.next_back()?;
    if *first_key != lo || *last_key != hi {
        return None;
    }
    Some(if a == lo {
        (first, last)
    } else {
        (last, first)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map() -> BTreeMap<u16, u32> {
        [(0, 100), (3, 103), (7, 107), (9, 109)]
            .into_iter()
            .collect()
    }

    #[test]
    fn both_entries_in_the_order_asked() {
        let mut m = map();
        let (x, y) = two_mut(&mut m, 7, 0).unwrap();
        assert_eq!((*x, *y), (107, 100));
        *x += 1;
        *y += 1;
        assert_eq!((m[&7], m[&0]), (108, 101));
        let (x, y) = two_mut(&mut m, 3, 9).unwrap();
        assert_eq!((*x, *y), (103, 109));
        // Neighbours, with nothing between them.
        assert!(two_mut(&mut m, 7, 9).is_some());
    }

    #[test]
    fn missing_or_same_keys_are_refused() {
        let mut m = map();
        assert!(two_mut(&mut m, 3, 3).is_none(), "the same entry twice");
        assert!(
            two_mut(&mut m, 3, 5).is_none(),
            "5 is missing (7 lies beyond it)"
        );
        assert!(
            two_mut(&mut m, 1, 3).is_none(),
            "1 is missing (0 lies before it)"
        );
        assert!(two_mut(&mut m, 9, 12).is_none());
        assert!(two_mut(&mut BTreeMap::<u16, u32>::new(), 1, 2).is_none());
    }
}
