//! Who owns each machine frame: free, the hypervisor, or a domain.
//!
//! This is the part of the frame table (DESIGN.md §4) that the guest issue needs: every
//! guest page-table walk checks that each table and the final frame belong to the
//! domain. Types and reference counts join it with the memory-management issue.

use alloc::vec::Vec;
use core::sync::atomic::{AtomicU16, Ordering};

use guest_abi::types::DomId;

use super::Mfn;

const FREE: u16 = 0xFFFF;
const HYPERVISOR: u16 = 0xFFFE;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Owner {
    Free,
    Hypervisor,
    Domain(DomId),
}

static TABLE: spin::Once<Vec<AtomicU16>> = spin::Once::new();

/// Sizes the table for frames `0..frames`. Frames start out owned by the hypervisor;
/// the frame allocator's frames are marked free by the caller.
pub fn init(frames: u64) {
    TABLE.call_once(|| (0..frames).map(|_| AtomicU16::new(HYPERVISOR)).collect());
}

fn slot(mfn: Mfn) -> Option<&'static AtomicU16> {
    TABLE.get()?.get(usize::try_from(mfn.0).ok()?)
}

pub fn owner(mfn: Mfn) -> Owner {
    match slot(mfn).map(|s| s.load(Ordering::Acquire)) {
        None | Some(HYPERVISOR) => Owner::Hypervisor,
        Some(FREE) => Owner::Free,
        Some(d) => Owner::Domain(d),
    }
}

pub fn set(mfn: Mfn, owner: Owner) {
    let value = match owner {
        Owner::Free => FREE,
        Owner::Hypervisor => HYPERVISOR,
        Owner::Domain(d) => d,
    };
    if let Some(s) = slot(mfn) {
        s.store(value, Ordering::Release);
    }
}

/// Whether `mfn` belongs to domain `dom`.
pub fn owned_by(mfn: Mfn, dom: DomId) -> bool {
    owner(mfn) == Owner::Domain(dom)
}
