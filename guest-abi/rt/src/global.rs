//! [`Global`]: state shared between a test kernel's main flow and its handlers.

use core::cell::UnsafeCell;

/// A value shared between the main flow of a single-vCPU guest kernel and the trap and event
/// handlers that interrupt it.
///
/// Reads and writes are volatile copies, so the compiler neither caches a value across an
/// instruction that may trap nor drops a write a handler will read. Soundness rests on two
/// facts the users of each `Global` uphold: there is one vCPU, and a value is never written by
/// the main flow and a handler at the same time (each `Global` documents who writes it when).
/// A handler that interrupts a read of a multi-word value could make it tear, which is why
/// handlers only write values the main flow is not reading at that moment (for example a
/// record the main flow takes only after the instruction that traps).
pub struct Global<T> {
    value: UnsafeCell<T>,
}

// SAFETY: the kernel runs on one vCPU, and the protocol above keeps accesses from
// overlapping; `T: Send` because handlers and the main flow hand values to each other.
unsafe impl<T: Send> Sync for Global<T> {}

impl<T: Copy> Global<T> {
    /// A global holding `value`.
    pub const fn new(value: T) -> Self {
        Self {
            value: UnsafeCell::new(value),
        }
    }

    /// A copy of the value.
    pub fn get(&self) -> T {
        // SAFETY: the pointer is valid and aligned for the global's lifetime (it is a static's
        // cell), and by the protocol above no write overlaps this read.
        unsafe { self.value.get().read_volatile() }
    }

    /// Replaces the value.
    pub fn set(&self, value: T) {
        // SAFETY: as for `get`; no other access overlaps this write.
        unsafe { self.value.get().write_volatile(value) }
    }

    /// Replaces the value and returns the old one.
    pub fn replace(&self, value: T) -> T {
        let old = self.get();
        self.set(value);
        old
    }

    /// Address of the value, for assembly that writes it (see `trap::recovery_slot`).
    pub fn as_ptr(&self) -> *mut T {
        self.value.get()
    }
}

#[cfg(test)]
mod tests {
    use super::Global;

    #[test]
    fn get_set_replace() {
        static G: Global<Option<u64>> = Global::new(None);
        assert_eq!(G.get(), None);
        G.set(Some(3));
        assert_eq!(G.replace(None), Some(3));
        assert_eq!(G.get(), None);
    }
}
