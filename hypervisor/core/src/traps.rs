//! A vCPU's virtual IDT (`set_trap_table`, Xen's `trap_ctxt`), kept sparse.
//!
//! Xen keeps 256 `trap_info` entries per vCPU (4 KiB); a kernel sets a few dozen. Xenia keeps
//! only the entries set, sorted by vector, so a minimal domain's vCPU costs the hypervisor a
//! few hundred bytes instead of 4 KiB (issue 13's density). Growing is fallible and bounded:
//! one entry per vector, at most [`MAX_BYTES`] a vCPU, which the domain's charge limit counts.
//! A lookup is a binary search over the entries set.

use alloc::vec::Vec;
use core::mem::size_of;

use guest_abi::trap::TrapInfo;

/// Vectors a table can hold.
pub const VECTORS: usize = 256;
/// The most heap a table takes: an entry for every vector.
pub const MAX_BYTES: usize = VECTORS * size_of::<TrapInfo>();

/// The heap could not hold the table's new entries; nothing changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NoMemory;

/// The entries a vCPU set, at most one per vector, sorted by vector.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TrapTable {
    entries: Vec<TrapInfo>,
}

impl TrapTable {
    /// No handler for any vector.
    pub const fn new() -> TrapTable {
        TrapTable {
            entries: Vec::new(),
        }
    }

    /// The entry for `vector`: [`TrapInfo::END`] (address 0) when none was set.
    pub fn get(&self, vector: u8) -> TrapInfo {
        match self.entries.binary_search_by_key(&vector, |e| e.vector) {
            Ok(i) => self.entries[i],
            Err(_) => TrapInfo::END,
        }
    }

    /// Forgets every entry (and gives back their memory).
    pub fn clear(&mut self) {
        self.entries = Vec::new();
    }

    /// Sets every entry of `updates` (an entry with address 0 removes its vector's), all or
    /// nothing: [`NoMemory`] leaves the table as it was.
    pub fn set_all(&mut self, updates: &[TrapInfo]) -> Result<(), NoMemory> {
        self.reserve_for(updates)?;
        for u in updates {
            match self.entries.binary_search_by_key(&u.vector, |e| e.vector) {
                Ok(i) if u.is_end() => {
                    self.entries.remove(i);
                }
                Ok(i) => self.entries[i] = *u,
                Err(_) if u.is_end() => {}
                // alloc: within the capacity `reserve_for` made.
                Err(i) => self.entries.insert(i, *u),
            }
        }
        Ok(())
    }

    /// Makes room for [`TrapTable::set_all`]`(updates)`, which then cannot fail: for a caller
    /// that must not fail after it changed something else.
    pub fn reserve_for(&mut self, updates: &[TrapInfo]) -> Result<(), NoMemory> {
        let more = self.room_needed(updates);
        self.entries.try_reserve_exact(more).map_err(|_| NoMemory)
    }

    /// Heap bytes [`TrapTable::set_all`]`(updates)` may add (for a check against the heap's
    /// reserve before it).
    pub fn bytes_needed(&self, updates: &[TrapInfo]) -> u64 {
        (self.room_needed(updates) * size_of::<TrapInfo>()) as u64
    }

    /// Entries of room beyond the current length that `updates` may need.
    fn room_needed(&self, updates: &[TrapInfo]) -> usize {
        let added = updates
            .iter()
            .filter(|u| !u.is_end())
            .filter(|u| {
                self.entries
                    .binary_search_by_key(&u.vector, |e| e.vector)
                    .is_err()
            })
            .count();
        // Room for every new vector first (duplicates in `updates` only overestimate), never
        // beyond one entry per vector.
        let room = (self.entries.len() + added).min(VECTORS);
        room.saturating_sub(self.entries.len())
    }

    /// The entries set, by vector.
    pub fn entries(&self) -> &[TrapInfo] {
        &self.entries
    }

    /// Heap bytes the table takes now.
    pub fn heap_bytes(&self) -> u64 {
        (self.entries.capacity() * size_of::<TrapInfo>()) as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(vector: u8, address: u64) -> TrapInfo {
        TrapInfo {
            vector,
            flags: 0,
            cs: 0xe033,
            address,
        }
    }

    #[test]
    fn set_get_replace_remove() {
        let mut t = TrapTable::new();
        assert!(t.get(14).is_end());
        t.set_all(&[entry(14, 0x1000), entry(3, 0x2000), entry(0x80, 0x3000)])
            .unwrap();
        assert_eq!(
            t.bytes_needed(&[entry(14, 1), entry(15, 2)]),
            16,
            "one new vector"
        );
        assert_eq!(t.get(14).address, 0x1000);
        assert_eq!(t.get(3).address, 0x2000);
        assert_eq!(t.get(0x80).address, 0x3000);
        assert!(t.get(13).is_end());
        let vectors: Vec<u8> = t.entries().iter().map(|e| e.vector).collect();
        assert_eq!(vectors, [3, 14, 0x80]);
        // Replace one, remove one, a duplicate in one batch: the last wins.
        t.set_all(&[entry(14, 0x5000), entry(3, 0), entry(7, 1), entry(7, 2)])
            .unwrap();
        assert_eq!(t.get(14).address, 0x5000);
        assert!(t.get(3).is_end());
        assert_eq!(t.get(7).address, 2);
        assert_eq!(t.entries().len(), 3);
        t.clear();
        assert!(t.entries().is_empty() && t.heap_bytes() == 0);
    }

    #[test]
    fn every_vector_fits_within_the_bound() {
        let mut t = TrapTable::new();
        let all: Vec<TrapInfo> = (0..=255u8)
            .map(|v| entry(v, 0x1000 + u64::from(v)))
            .collect();
        t.set_all(&all).unwrap();
        t.set_all(&all).unwrap();
        assert_eq!(t.entries().len(), VECTORS);
        assert!(t.heap_bytes() <= MAX_BYTES as u64);
        for v in 0..=255u8 {
            assert_eq!(t.get(v).address, 0x1000 + u64::from(v));
        }
    }

    #[test]
    fn matches_a_dense_table() {
        // Against the 256-entry array it replaces, on a deterministic pseudo-random sequence.
        let mut dense = [TrapInfo::END; 256];
        let mut t = TrapTable::new();
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        for _ in 0..200 {
            let mut batch = Vec::new();
            for _ in 0..(x % 7) {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let vector = (x >> 8) as u8;
                let address = if x.is_multiple_of(5) { 0 } else { x >> 16 };
                batch.push(entry(vector, address));
            }
            for e in &batch {
                dense[usize::from(e.vector)] = if e.is_end() { TrapInfo::END } else { *e };
            }
            t.set_all(&batch).unwrap();
            for v in 0..=255u8 {
                let want = dense[usize::from(v)];
                let got = t.get(v);
                assert_eq!(got.is_end(), want.is_end(), "vector {v}");
                if !want.is_end() {
                    assert_eq!(got, want);
                }
            }
        }
    }
}
