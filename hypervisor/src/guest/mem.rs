//! Reaching guest memory (DESIGN.md §2.5): a guest pointer is an allegation.
//!
//! A hypercall argument that names guest memory becomes a [`GuestPtr<T>`] or a
//! [`GuestSlice<T>`]: a claim that the guest has a `T` there, with no way to dereference it.
//! The only way in or out is a checked copy through the caller's [`AddressSpace`]: the
//! hypervisor walks the guest's page tables in software (`mm::walk`), checks that every
//! table and the final frame belong to the domain and that the access is allowed, and copies
//! through the direct map (`mm::physmem`). The byte views of the ABI structures are
//! zerocopy's derives, declared once in guest-abi where the types are defined.

use guest_abi::errno::Errno;
use guest_abi::types::DomId;
use zerocopy::{FromBytes, Immutable, IntoBytes};

use crate::mm::frame_table::PageType;
use crate::mm::{Mfn, PAGE_SIZE, ft, physmem, walk};

pub use crate::arch::x86_64::layout::{is_canonical, range_ok};
pub use xenia_core::guest_ptr::{GuestPtr, GuestSlice};

/// Largest structure [`AddressSpace::read`] copies in.
const READ_MAX: usize = 8192;

/// A guest's view of memory: its top-level table and who it is.
#[derive(Clone, Copy, Debug)]
pub struct AddressSpace {
    pub l4: Mfn,
    pub dom: DomId,
}

/// Page tables as the walk reads them: through the direct map, owners from the frame table.
struct Direct;

impl walk::GuestTables for Direct {
    #[inline]
    fn entry(&self, table: Mfn, index: u64) -> u64 {
        // The walk reads only tables it checked belong to the domain; the value it reads once
        // is validated by the walk.
        physmem::read_u64(table, index as usize)
    }

    #[inline]
    fn owned_by(&self, mfn: Mfn, dom: DomId) -> bool {
        ft::owned_by(mfn, dom)
    }
}

/// The last few walks' answers, per pCPU (a software TLB): a bounce writes its frame to the
/// same kernel stack page time after time, and every `SYSCALL` asks whether the same code
/// page is user-accessible, each a four-level walk with an ownership check per table
/// (about 250 instructions). An answer is kept with the frame table's generation
/// (`ft::generation`) and the frames the walk went through (`walk::Path`, and the top-level
/// table). The generation moves at every entry write that can change a walk that succeeded
/// (`frame_table::translation_changed`: an entry removed, pointed elsewhere, or losing RW,
/// U/S or execution; any L4 entry), and every change of a frame's owner, of an L4, or of a
/// frame that stops being plain memory (`FrameTable::use_changed`); each such change
/// stamps the frame it was made to. While the generation has not moved, every walk that
/// succeeded answers the same; once it has, an answer none of whose frames was stamped
/// since still does (a walk reads only those frames' entries and owners), and is kept at
/// the new generation (`ft::unchanged_since`, session 18: a `fork` write-protects the
/// parent's pages, which used to drop every answer, the kernel stack's included). Only
/// successful walks are kept (and, for ring 3, "present, not user", which U/S changes
/// either way move); a walk that failed may succeed since (a mapping added, rights given)
/// and is walked again. The caller's checks that are not the walk's (a written frame's
/// type) are made at every use. Each pCPU touches only its own ways.
mod tlb {
    use core::sync::atomic::{AtomicU64, Ordering::Relaxed};

    use crate::arch::x86_64::{percpu, smp::MAX_CPUS};
    use crate::mm::{Mfn, walk};

    const WAYS: usize = 4;
    /// A way: the key (page | kind | valid), the top-level table, the domain, the answer,
    /// the generation it holds at, and the walk's frames below the top-level table.
    struct Way([AtomicU64; 9]);

    struct Ways {
        ways: [Way; WAYS],
        next: AtomicU64,
    }

    static CACHE: [Ways; MAX_CPUS] = [const {
        Ways {
            ways: [const { Way([const { AtomicU64::new(0) }; 9]) }; WAYS],
            next: AtomicU64::new(0),
        }
    }; MAX_CPUS];

    pub const VALID: u64 = 1 << 11;

    #[inline]
    fn mine() -> &'static Ways {
        &CACHE[percpu::this().index() % MAX_CPUS]
    }

    /// The way that holds `key` through `l4` for `dom`, if any (a key is in one way at most).
    #[inline]
    fn find(ways: &Ways, key: u64, l4: u64, dom: u64) -> Option<&Way> {
        ways.ways.iter().find(|w| {
            w.0[0].load(Relaxed) == key && w.0[1].load(Relaxed) == l4 && w.0[2].load(Relaxed) == dom
        })
    }

    /// The answer kept for `key` and the walk's frames, if it holds at `generation` (the
    /// generation the caller loaded before asking).
    #[inline]
    pub fn get(key: u64, l4: u64, dom: u64, generation: u64) -> Option<(u64, walk::Path)> {
        let w = find(mine(), key, l4, dom)?;
        let path = [5, 6, 7, 8].map(|i| Mfn(w.0[i].load(Relaxed)));
        let kept = w.0[4].load(Relaxed);
        if kept != generation {
            let [a, b, c, d] = path;
            if !crate::mm::ft::unchanged_since(kept, &[Mfn::from_phys(l4), a, b, c, d]) {
                return None;
            }
            // Still the walk's answer: kept at the new generation.
            w.0[4].store(generation, Relaxed);
        }
        Some((w.0[3].load(Relaxed), path))
    }

    /// Keeps a walk's answer, found at `generation` through `path`: in the way that held the
    /// key before, if one did, else in the next way in turn.
    pub fn put(key: u64, l4: u64, dom: u64, answer: u64, generation: u64, path: walk::Path) {
        let me = mine();
        let w = match find(me, key, l4, dom) {
            Some(w) => w,
            None => &me.ways[me.next.fetch_add(1, Relaxed) as usize % WAYS],
        };
        // Invalid while it is rewritten (a pCPU's own ways: nothing else reads them).
        w.0[0].store(0, Relaxed);
        w.0[1].store(l4, Relaxed);
        w.0[2].store(dom, Relaxed);
        w.0[3].store(answer, Relaxed);
        w.0[4].store(generation, Relaxed);
        for (i, m) in path.iter().enumerate() {
            w.0[5 + i].store(m.0, Relaxed);
        }
        w.0[0].store(key, Relaxed);
    }
}

/// What a cached answer was asked: a translation for writing, for a user access, or
/// whether ring 3 could run there.
const ASK_WRITE: u64 = 1;
const ASK_USER: u64 = 2;
const ASK_EXEC: u64 = 4;

impl AddressSpace {
    /// The machine address behind `va`, if the page is mapped for a kernel-mode access
    /// (`write` asks for a writable mapping at every level; `user` for a user one). The
    /// rules are `mm::walk`'s.
    pub fn translate(&self, va: u64, write: bool, user: bool) -> Result<u64, Errno> {
        self.translate_path(va, write, user).map(|(phys, _)| phys)
    }

    /// [`AddressSpace::translate`], with the frames the walk went through (`walk::Path`).
    pub fn translate_path(
        &self,
        va: u64,
        write: bool,
        user: bool,
    ) -> Result<(u64, walk::Path), Errno> {
        let kind = if write { ASK_WRITE } else { 0 } | if user { ASK_USER } else { 0 };
        let key = (va & !(PAGE_SIZE - 1)) | kind | tlb::VALID;
        let generation = ft::generation();
        let (l4, dom) = (self.l4.phys(), u64::from(self.dom));
        if is_canonical(va)
            && let Some((page, path)) = tlb::get(key, l4, dom, generation)
        {
            return Ok((page | (va & (PAGE_SIZE - 1)), path));
        }
        let (phys, path) = walk::translate_path(&Direct, self.l4, self.dom, va, write, user)?;
        tlb::put(key, l4, dom, phys & !(PAGE_SIZE - 1), generation, path);
        Ok((phys, path))
    }

    /// [`Self::translate_path`]'s answer from a walk, past the translation cache: for the
    /// debug-build cross-checks of the caches in front of it (`fast_pv::guest_words`).
    pub fn translate_uncached(&self, va: u64, write: bool) -> Option<u64> {
        walk::translate_path(&Direct, self.l4, self.dom, va, write, false)
            .ok()
            .map(|(phys, _)| phys)
    }

    /// Whether ring 3 could run at `va` (`mm::walk::user_accessible`).
    pub fn user_accessible(&self, va: u64) -> Option<bool> {
        let key = (va & !(PAGE_SIZE - 1)) | ASK_EXEC | tlb::VALID;
        let generation = ft::generation();
        let (l4, dom) = (self.l4.phys(), u64::from(self.dom));
        if is_canonical(va)
            && let Some((answer, _)) = tlb::get(key, l4, dom, generation)
        {
            return Some(answer != 0);
        }
        let (answer, path) = walk::user_accessible_path(&Direct, self.l4, self.dom, va)?;
        tlb::put(key, l4, dom, u64::from(answer), generation, path);
        Some(answer)
    }

    /// Copies `out.len()` bytes from the guest's `at`.
    pub fn read_bytes(&self, at: GuestPtr<u8>, out: &mut [u8]) -> Result<(), Errno> {
        let va = at.addr();
        if !range_ok(va, out.len() as u64) {
            return Err(Errno::EFAULT);
        }
        if !out.is_empty() && (va % PAGE_SIZE) as usize + out.len() <= PAGE_SIZE as usize {
            let phys = self.translate(va, false, false)?;
            physmem::read(Mfn::from_phys(phys), (phys % PAGE_SIZE) as usize, out);
            return Ok(());
        }
        for (at, done, chunk) in walk::pieces(va, out.len()) {
            let phys = self.translate(at, false, false)?;
            physmem::read(
                Mfn::from_phys(phys),
                (phys % PAGE_SIZE) as usize,
                &mut out[done..done + chunk],
            );
        }
        Ok(())
    }

    /// Copies `data` to the guest's `at`, which must be mapped writable. Every page is checked
    /// first, so that a fault half-way leaves no torn write.
    pub fn write_bytes(&self, at: GuestPtr<u8>, data: &[u8]) -> Result<(), Errno> {
        /// Pages whose translation is kept from the check to the copy (a bounce frame, a
        /// hypercall's result: almost every write is one or two pages); the pages after
        /// these are walked again for the copy. Nothing can change between the two: the
        /// domain's page tables change only under its lock, which the caller holds, and a
        /// frame changes use only once every pCPU running a guest has flushed, which this
        /// one (interrupts off, answering no flush request here) has not (`guest::fast`
        /// writes a SYSCALL's frame without the lock on that second rule).
        const KEPT: usize = 4;
        let va = at.addr();
        if !range_ok(va, data.len() as u64) {
            return Err(Errno::EFAULT);
        }
        if !data.is_empty() && (va % PAGE_SIZE) as usize + data.len() <= PAGE_SIZE as usize {
            // One page, the common case (a bounce frame, a hypercall's result): one
            // translation, the check, the copy. (Nothing to copy reaches no page at all,
            // below: a zero-length buffer may be a null pointer.)
            let phys = self.translate(va, true, false)?;
            let mfn = Mfn::from_phys(phys);
            if !matches!(
                ft::current_type(mfn),
                Some(PageType::None | PageType::Writable)
            ) {
                return Err(Errno::EFAULT);
            }
            physmem::write(mfn, (phys % PAGE_SIZE) as usize, data);
            return Ok(());
        }
        let mut kept = [0u64; KEPT];
        for (i, (at, _, _)) in walk::pieces(va, data.len()).enumerate() {
            let phys = self.translate(at, true, false)?;
            // However the walk got there, the hypervisor never writes a frame that is a page
            // table or a descriptor table on a guest pointer's say-so: those change only
            // through the frame table's validated updates.
            let kind = ft::current_type(Mfn::from_phys(phys));
            if !matches!(kind, Some(PageType::None | PageType::Writable)) {
                return Err(Errno::EFAULT);
            }
            if let Some(slot) = kept.get_mut(i) {
                *slot = phys;
            }
        }
        for (i, (at, done, chunk)) in walk::pieces(va, data.len()).enumerate() {
            let phys = match kept.get(i) {
                Some(&phys) => phys,
                None => self.translate(at, true, false)?,
            };
            physmem::write(
                Mfn::from_phys(phys),
                (phys % PAGE_SIZE) as usize,
                &data[done..done + chunk],
            );
        }
        Ok(())
    }

    /// Copies the `T` the guest alleges at `p` (any byte pattern is a `T`: zerocopy's
    /// `FromBytes`, padding included).
    pub fn read<T: FromBytes>(&self, p: GuestPtr<T>) -> Result<T, Errno> {
        // Through a stack buffer just large enough, since a padded `T` has no byte view to
        // copy into; the largest ABI structure (a vCPU context) is 5168 bytes.
        match size_of::<T>() {
            0..=64 => self.read_via::<64, T>(p),
            65..=512 => self.read_via::<512, T>(p),
            _ => self.read_via::<READ_MAX, T>(p),
        }
    }

    fn read_via<const N: usize, T: FromBytes>(&self, p: GuestPtr<T>) -> Result<T, Errno> {
        const { assert!(size_of::<T>() <= READ_MAX) };
        let mut buf = [0u8; N];
        let bytes = &mut buf[..size_of::<T>()];
        self.read_bytes(GuestPtr::new(p.addr()), bytes)?;
        T::read_from_bytes(bytes).map_err(|_| Errno::EFAULT)
    }

    /// Copies `value` to the guest's `p`.
    pub fn write<T: IntoBytes + Immutable>(&self, p: GuestPtr<T>, value: &T) -> Result<(), Errno> {
        self.write_bytes(GuestPtr::new(p.addr()), value.as_bytes())
    }
}
