//! Reaching guest memory (DESIGN.md §2.5): a guest pointer is an allegation. The
//! hypervisor walks the guest's page tables in software, checks that every table and the
//! final frame belong to the domain and that the access is allowed, and copies through
//! its own direct map. It never dereferences a guest address.

use guest_abi::errno::Errno;
use guest_abi::types::DomId;

use crate::arch::x86_64::layout::phys_to_virt;
use crate::mm::{Mfn, ft, walk};

/// A guest's view of memory: its top-level table and who it is.
#[derive(Clone, Copy, Debug)]
pub struct AddressSpace {
    pub l4: Mfn,
    pub dom: DomId,
}

pub use crate::arch::x86_64::layout::{is_canonical, range_ok};

/// Page tables as the walk reads them: through the direct map, owners from the frame table.
struct Direct;

impl walk::GuestTables for Direct {
    fn entry(&self, table: Mfn, index: u64) -> u64 {
        // SAFETY: the walk reads only tables it checked are RAM owned by the domain, so
        // the direct map covers them; the index is below 512. The guest may write the
        // frame concurrently (it cannot today: page-table frames are read-only to it), so
        // the read is volatile and its value is validated by the walk.
        unsafe {
            core::ptr::read_volatile((phys_to_virt(table.phys()) as *const u64).add(index as usize))
        }
    }

    fn owned_by(&self, mfn: Mfn, dom: DomId) -> bool {
        ft::owned_by(mfn, dom)
    }
}

impl AddressSpace {
    /// The machine address behind `va`, if the page is mapped for a kernel-mode access
    /// (`write` asks for a writable mapping at every level; `user` for a user one). The
    /// rules are `mm::walk`'s.
    pub fn translate(&self, va: u64, write: bool, user: bool) -> Result<u64, Errno> {
        walk::translate(&Direct, self.l4, self.dom, va, write, user)
    }

    /// Whether ring 3 could run at `va` (`mm::walk::user_accessible`).
    pub fn user_accessible(&self, va: u64) -> Option<bool> {
        walk::user_accessible(&Direct, self.l4, self.dom, va)
    }

    /// Copies `out.len()` bytes from guest virtual address `va`.
    pub fn read(&self, va: u64, out: &mut [u8]) -> Result<(), Errno> {
        if !range_ok(va, out.len() as u64) {
            return Err(Errno::EFAULT);
        }
        for (at, done, chunk) in walk::pieces(va, out.len()) {
            let phys = self.translate(at, false, false)?;
            // SAFETY: `phys..phys + chunk` lies in one frame owned by the domain, reached
            // through the direct map; the guest may change it meanwhile, which only
            // changes the bytes we copy.
            unsafe {
                core::ptr::copy_nonoverlapping(
                    phys_to_virt(phys) as *const u8,
                    out[done..].as_mut_ptr(),
                    chunk,
                );
            }
        }
        Ok(())
    }

    /// Copies `data` to guest virtual address `va`, which must be mapped writable.
    pub fn write(&self, va: u64, data: &[u8]) -> Result<(), Errno> {
        if !range_ok(va, data.len() as u64) {
            return Err(Errno::EFAULT);
        }
        // Check every page first, so that a fault half-way does not leave a torn write.
        walk::check_writable(&Direct, self.l4, self.dom, va, data.len())?;
        for (at, done, chunk) in walk::pieces(va, data.len()) {
            let phys = self.translate(at, true, false)?;
            // SAFETY: as in `read`, for a frame mapped writable to the guest.
            unsafe {
                core::ptr::copy_nonoverlapping(
                    data[done..].as_ptr(),
                    phys_to_virt(phys) as *mut u8,
                    chunk,
                );
            }
        }
        Ok(())
    }

    /// Reads a plain-old-data value.
    pub fn read_pod<T: Pod>(&self, va: u64) -> Result<T, Errno> {
        let mut value = T::zeroed();
        self.read(va, value.as_bytes_mut())?;
        Ok(value)
    }

    pub fn write_pod<T: AsBytes>(&self, va: u64, value: &T) -> Result<(), Errno> {
        self.write(va, value.as_bytes())
    }
}

/// Types for which every byte pattern is a valid value, so they can be filled from
/// guest memory (they may have padding).
///
/// # Safety
/// Implement only for `repr(C)` types made of integers (and arrays of them).
pub unsafe trait Pod: Copy {
    fn zeroed() -> Self {
        // SAFETY: all-zero is a valid value of a Pod type (integers only).
        unsafe { core::mem::zeroed() }
    }
    fn as_bytes_mut(&mut self) -> &mut [u8] {
        // SAFETY: any byte pattern written through the slice is a valid value, padding
        // included.
        unsafe { core::slice::from_raw_parts_mut((self as *mut Self).cast(), size_of::<Self>()) }
    }
}

/// [`Pod`] types without padding, whose bytes can also be copied out to a guest.
///
/// # Safety
/// Implement only for `Pod` types with no padding bytes.
pub unsafe trait AsBytes: Pod {
    fn as_bytes(&self) -> &[u8] {
        // SAFETY: no padding, so every byte is initialized.
        unsafe { core::slice::from_raw_parts((self as *const Self).cast(), size_of::<Self>()) }
    }
}

// SAFETY: an integer.
unsafe impl Pod for u64 {}
// SAFETY: an integer, no padding.
unsafe impl AsBytes for u64 {}
// SAFETY: repr(C), integer fields (u8, u8, u16, padding, u64).
unsafe impl Pod for guest_abi::trap::TrapInfo {}
