//! Guest pointers as allegations (DESIGN.md §2.5, STYLE.md's `USlice`): a hypercall
//! argument that names guest memory becomes a [`GuestPtr<T>`] or a [`GuestSlice<T>`], a claim
//! that the guest has a `T` there. Neither can be dereferenced: the hypervisor's
//! `guest::mem::AddressSpace` is the only way in or out, by a checked copy (a software walk
//! of the guest's page tables, then the direct map).

use core::marker::PhantomData;

use guest_abi::errno::Errno;

use crate::layout::range_ok;

/// A guest virtual address at which the guest says a `T` lies. Copy it in or out with
/// `AddressSpace::read` and `AddressSpace::write`; nothing else can use it.
pub struct GuestPtr<T> {
    addr: u64,
    _claims: PhantomData<fn() -> T>,
}

impl<T> Clone for GuestPtr<T> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<T> Copy for GuestPtr<T> {}

impl<T> core::fmt::Debug for GuestPtr<T> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "GuestPtr({:#x})", self.addr)
    }
}

impl<T> GuestPtr<T> {
    pub const fn new(addr: u64) -> Self {
        GuestPtr {
            addr,
            _claims: PhantomData,
        }
    }

    /// The address as the guest gave it (for log lines and continuations).
    pub const fn addr(self) -> u64 {
        self.addr
    }

    pub const fn is_null(self) -> bool {
        self.addr == 0
    }

    /// The field of type `U` at byte `offset` of the `T` (use `offset_of!`).
    pub const fn field<U>(self, offset: usize) -> GuestPtr<U> {
        GuestPtr::new(self.addr.wrapping_add(offset as u64))
    }

    /// The `T` `n` places further on (array indexing; the address may wrap, which the copy
    /// then refuses).
    pub const fn offset(self, n: u64) -> Self {
        GuestPtr::new(
            self.addr
                .wrapping_add(n.wrapping_mul(core::mem::size_of::<T>() as u64)),
        )
    }
}

/// `len` consecutive `T`s at a guest address: an allegation whose extent was checked to lie
/// in guest addresses (not yet to be mapped: each copy checks that).
pub struct GuestSlice<T> {
    start: GuestPtr<T>,
    len: u64,
}

impl<T> Clone for GuestSlice<T> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<T> Copy for GuestSlice<T> {}

impl<T> GuestSlice<T> {
    /// `EFAULT` when `len` elements from `addr` overflow or leave the guest's addresses.
    pub fn new(addr: u64, len: u64) -> Result<Self, Errno> {
        let bytes = len
            .checked_mul(core::mem::size_of::<T>() as u64)
            .ok_or(Errno::EFAULT)?;
        if !range_ok(addr, bytes) {
            return Err(Errno::EFAULT);
        }
        Ok(GuestSlice {
            start: GuestPtr::new(addr),
            len,
        })
    }

    /// How many `T`s.
    pub const fn count(self) -> u64 {
        self.len
    }

    /// Element `i`, if the slice has one.
    pub const fn get(self, i: u64) -> Option<GuestPtr<T>> {
        if i < self.len {
            Some(self.start.offset(i))
        } else {
            None
        }
    }

    pub const fn start(self) -> GuestPtr<T> {
        self.start
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layout::slot_base;

    #[test]
    fn slices_must_lie_in_guest_addresses() {
        let s = GuestSlice::<u64>::new(0x1000, 4).unwrap();
        assert_eq!(s.count(), 4);
        assert_eq!(s.get(0).map(GuestPtr::addr), Some(0x1000));
        assert_eq!(s.get(3).map(GuestPtr::addr), Some(0x1018));
        assert!(s.get(4).is_none(), "one past the end");
        // Overflowing lengths and ranges that reach the hypervisor's slots are EFAULT.
        assert_eq!(
            GuestSlice::<u64>::new(0x1000, u64::MAX / 4).err(),
            Some(Errno::EFAULT)
        );
        // The hypervisor's slots end at slot 272: a range reaching back into them is refused,
        // one starting right above them is fine.
        let above = slot_base(crate::layout::LAST_RESERVED_SLOT + 1);
        assert_eq!(
            GuestSlice::<u8>::new(above - 8, 16).err(),
            Some(Errno::EFAULT)
        );
        assert_eq!(GuestSlice::<u8>::new(above, 8).map(|s| s.count()), Ok(8));
        assert_eq!(
            GuestSlice::<u32>::new(u64::MAX - 3, 1).map(|s| s.count()),
            Ok(1)
        );
        assert_eq!(
            GuestSlice::<u32>::new(u64::MAX - 3, 2).err(),
            Some(Errno::EFAULT),
            "wraps"
        );
    }

    #[test]
    fn fields_and_offsets_are_addresses_only() {
        #[repr(C)]
        struct Pair {
            a: u32,
            b: u64,
        }
        let p = GuestPtr::<Pair>::new(0x2000);
        assert_eq!(
            p.field::<u64>(core::mem::offset_of!(Pair, b)).addr(),
            0x2008
        );
        assert_eq!(p.offset(2).addr(), 0x2000 + 2 * 16);
        // Wrapping is left to the copy to refuse.
        assert_eq!(GuestPtr::<u64>::new(u64::MAX).offset(1).addr(), 7);
        assert!(GuestPtr::<u8>::new(0).is_null());
    }
}
