//! A regular file's contents: the initrd's bytes, under a sparse set of pages of its own.
//!
//! A file seeded from the initrd reads the archive's bytes in place; the first write to a
//! page copies that page (and only that page) into memory the file owns. Pages that were
//! never written and lie past the initrd's bytes are holes and read as zeros, so a sparse
//! file costs only the pages written into it, as on Linux's tmpfs.

use alloc::boxed::Box;
use alloc::collections::BTreeMap;
use alloc::vec::Vec;

use crate::files::errno::ENOMEM;

/// The granule of the memory a file owns: the x86-64 page, as tmpfs's page cache has it.
pub const PAGE_SIZE: usize = 4096;
const PAGE: u64 = PAGE_SIZE as u64;

/// One page of a file's own memory.
type Page = Box<[u8; PAGE_SIZE]>;

/// What a regular file holds.
///
/// Invariants (checked by the module's tests): `base.len() <= size`; no page lies wholly
/// at or past `size`; every byte of a page at or past `size` is zero (so a file that grows
/// again shows zeros there).
#[derive(Debug, Default)]
pub(super) struct Contents<'a> {
    /// The file's size in bytes.
    size: u64,
    /// The initrd's bytes for the start of the file, where no page of its own covers them.
    base: &'a [u8],
    /// The pages the file owns, by page index; they hide `base` where both exist.
    pages: BTreeMap<u64, Page>,
}

impl<'a> Contents<'a> {
    /// A file holding `data`, read in place.
    pub fn shared(data: &'a [u8]) -> Self {
        Self {
            size: data.len() as u64,
            base: data,
            pages: BTreeMap::new(),
        }
    }

    /// The size in bytes.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// How many pages the file owns.
    pub fn owned_pages(&self) -> usize {
        self.pages.len()
    }

    /// The whole contents, when they are still exactly the initrd's bytes.
    pub fn unmodified(&self) -> Option<&'a [u8]> {
        (self.pages.is_empty() && self.base.len() as u64 == self.size).then_some(self.base)
    }

    /// Copies the bytes at `offset` into `buf`, up to the end of the file; returns how many.
    pub fn read(&self, offset: u64, buf: &mut [u8]) -> usize {
        let Some(left) = self.size.checked_sub(offset) else {
            return 0;
        };
        let n = usize::try_from(left).map_or(buf.len(), |left| left.min(buf.len()));
        let mut done = 0;
        while done < n {
            let pos = offset + done as u64;
            let within = (pos % PAGE) as usize;
            let chunk = (PAGE_SIZE - within).min(n - done);
            let dst = &mut buf[done..done + chunk];
            match self.pages.get(&(pos / PAGE)) {
                Some(page) => dst.copy_from_slice(&page[within..within + chunk]),
                None => copy_or_zero(self.base, pos, dst),
            }
            done += chunk;
        }
        n
    }

    /// Writes `data` at `offset`, giving the file a page of its own wherever it writes into
    /// one it does not have yet. `charge` is asked before each new page is kept; when it or
    /// the allocation refuses, the write stops there: it returns the bytes written, or the
    /// refusal if there were none (a short write, as Linux's). The caller makes sure
    /// `offset + data.len()` does not overflow.
    pub fn write(
        &mut self,
        offset: u64,
        data: &[u8],
        mut charge: impl FnMut() -> Result<(), i64>,
    ) -> Result<usize, i64> {
        let mut done = 0;
        while done < data.len() {
            let pos = offset + done as u64;
            let (index, within) = (pos / PAGE, (pos % PAGE) as usize);
            let chunk = (PAGE_SIZE - within).min(data.len() - done);
            if !self.pages.contains_key(&index) {
                let fresh = new_page().and_then(|mut page| {
                    copy_or_zero(self.base, index * PAGE, &mut page[..]);
                    charge().map(|()| page)
                });
                match fresh {
                    Ok(page) => {
                        self.pages.insert(index, page);
                    }
                    Err(e) if done == 0 => return Err(e),
                    Err(_) => break,
                }
            }
            if let Some(page) = self.pages.get_mut(&index) {
                page[within..within + chunk].copy_from_slice(&data[done..done + chunk]);
            }
            done += chunk;
        }
        self.size = self.size.max(offset + done as u64);
        Ok(done)
    }

    /// Sets the size: shrinking forgets what lies past it (and returns how many pages of
    /// its own the file gave up), growing adds zeros without taking memory.
    pub fn truncate(&mut self, size: u64) -> usize {
        let mut freed = 0;
        if size < self.size {
            let keep = usize::try_from(size).map_or(self.base.len(), |s| s.min(self.base.len()));
            self.base = self.base.get(..keep).unwrap_or_default();
            freed = self.pages.split_off(&size.div_ceil(PAGE)).len();
            // The page the new end falls in keeps its head and is zeroed past the end.
            if let Some(page) = self.pages.get_mut(&(size / PAGE)) {
                page[(size % PAGE) as usize..].fill(0);
            }
        }
        self.size = size;
        freed
    }

    /// Whether the invariants hold (for the module's tests).
    #[cfg(test)]
    pub fn invariants_hold(&self) -> bool {
        let end_page = self.size / PAGE;
        let tail = (self.size % PAGE) as usize;
        self.base.len() as u64 <= self.size
            && self.pages.iter().all(|(&i, page)| {
                i < self.size.div_ceil(PAGE)
                    && (i != end_page || page[tail..].iter().all(|&b| b == 0))
            })
    }
}

/// Fills `dst` with the bytes of `base` from `pos` on, and zeros past its end.
fn copy_or_zero(base: &[u8], pos: u64, dst: &mut [u8]) {
    let from = usize::try_from(pos)
        .ok()
        .and_then(|p| base.get(p..))
        .unwrap_or_default();
    let k = from.len().min(dst.len());
    dst[..k].copy_from_slice(&from[..k]);
    dst[k..].fill(0);
}

/// A zeroed page, or `ENOMEM` when the heap has none (allocation failure is an error
/// returned, not the allocator's abort).
fn new_page() -> Result<Page, i64> {
    let mut bytes = Vec::new();
    bytes.try_reserve_exact(PAGE_SIZE).map_err(|_| -ENOMEM)?;
    bytes.resize(PAGE_SIZE, 0);
    bytes.into_boxed_slice().try_into().map_err(|_| -ENOMEM)
}
