//! Basic vocabulary shared by every part of the ABI: frame numbers, domain
//! identifiers and the page size.
//!
//! Frame numbers are newtypes so that the two numbering spaces a paravirtual
//! guest juggles — machine frames and its own pseudo-physical frames — cannot
//! be mixed up by accident. Both are `#[repr(transparent)]` over `u64`, so they
//! sit in `repr(C)` structures exactly where Xen puts an `xen_pfn_t`.

use core::fmt;

/// log2 of the page size. Every page the ABI talks about is a 4 KiB page.
pub const PAGE_SHIFT: u32 = 12;

/// Size in bytes of a page (and of a frame).
pub const PAGE_SIZE: usize = 1 << PAGE_SHIFT;

/// A machine frame number: a real, host-physical 4 KiB frame.
///
/// A paravirtual guest sees machine frame numbers in its page-table entries
/// (direct paging), in the p2m list the builder gives it and in a few
/// `start_info` fields. The read-only M2P table maps an `Mfn` back to the
/// owning guest's [`Pfn`].
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
#[repr(transparent)]
pub struct Mfn(pub u64);

/// A guest pseudo-physical frame number: an index into the guest's own,
/// contiguous view of its memory (its p2m list).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
#[repr(transparent)]
pub struct Pfn(pub u64);

impl Mfn {
    /// Machine address of the first byte of this frame.
    pub const fn addr(self) -> u64 {
        self.0 << PAGE_SHIFT
    }

    /// The frame that contains machine address `addr`.
    pub const fn containing(addr: u64) -> Self {
        Self(addr >> PAGE_SHIFT)
    }
}

impl Pfn {
    /// Pseudo-physical address of the first byte of this frame.
    pub const fn addr(self) -> u64 {
        self.0 << PAGE_SHIFT
    }

    /// The frame that contains pseudo-physical address `addr`.
    pub const fn containing(addr: u64) -> Self {
        Self(addr >> PAGE_SHIFT)
    }
}

impl fmt::Debug for Mfn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Mfn({:#x})", self.0)
    }
}

impl fmt::Debug for Pfn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Pfn({:#x})", self.0)
    }
}

/// A domain identifier (Xen's `domid_t`). dom0 is 0; ordinary domains get
/// identifiers below [`DOMID_FIRST_RESERVED`].
pub type DomId = u16;

/// Identifiers at or above this value are never given to a domain; they name
/// special pseudo-domains instead.
pub const DOMID_FIRST_RESERVED: DomId = 0x7FF0;

/// "The calling domain", accepted wherever a hypercall takes a domain
/// identifier.
pub const DOMID_SELF: DomId = 0x7FF0;

/// Pseudo-domain owning memory-mapped I/O frames; used as the foreign domain
/// of `mmu_update` to allow only I/O mappings.
pub const DOMID_IO: DomId = 0x7FF1;

/// Pseudo-domain owning the hypervisor's own frames (for instance the M2P).
pub const DOMID_XEN: DomId = 0x7FF2;

/// Pseudo-domain owning frames shared copy-on-write between domains.
pub const DOMID_COW: DomId = 0x7FF3;

/// "No domain": the owner of a frame whose owner is unknown.
pub const DOMID_INVALID: DomId = 0x7FF4;

/// The idle domain, which owns the per-pCPU idle vCPUs.
pub const DOMID_IDLE: DomId = 0x7FFF;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_numbers_have_the_layout_of_xen_pfn_t() {
        assert_eq!(core::mem::size_of::<Mfn>(), 8);
        assert_eq!(core::mem::align_of::<Mfn>(), 8);
        assert_eq!(core::mem::size_of::<Pfn>(), 8);
        assert_eq!(core::mem::align_of::<Pfn>(), 8);
    }

    #[test]
    fn frame_address_round_trip() {
        assert_eq!(Mfn(0x1234).addr(), 0x123_4000);
        assert_eq!(Mfn::containing(0x123_4fff), Mfn(0x1234));
        assert_eq!(Pfn(7).addr(), 0x7000);
        assert_eq!(Pfn::containing(0x7001), Pfn(7));
    }
}
