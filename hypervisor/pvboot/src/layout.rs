//! The start-of-day virtual layout of a paravirtual domain: where the builder puts the kernel,
//! the initrd, the p2m list, `start_info`, the bootstrap page tables and stack, and how much
//! memory all of that takes.
//!
//! The layout is Xen's (`xen/include/public/xen.h`, the comment above `struct start_info`, and
//! `dom0_construct_pv` in `xen/arch/x86/pv/dom0_build.c`), so that knowledge of Xen PV start of
//! day carries over. One contiguous virtual region starting at the kernel's `virt_start` holds,
//! in order and each page aligned:
//!
//! 1. the kernel image;
//! 2. the initrd, if any;
//! 3. the p2m list, one 8-byte MFN per pseudo-physical page of the domain;
//! 4. the `start_info` page (its address is passed in `rsi`);
//! 5. the `shared_info` page: *a Xenia addition*, so that a kernel can read its event and time
//!    state before it has set up any mapping of its own (Xen leaves the guest to map it);
//! 6. the extra pages the builder asks for (none for dom0; a domU's console ring, device
//!    page and xenstore ring, `guest_abi::device_page`), mapped like any page of the domain's
//!    memory;
//! 7. the bootstrap page tables (one L4, then the L3s, L2s and L1s, each level in address
//!    order), which map the whole region with 4 KiB pages and are themselves mapped read-only;
//! 8. the one-page bootstrap stack;
//! 9. padding: the region ends on a 4 MiB boundary at least 512 KiB past the stack, which is
//!    what Xen guarantees (xen.h, start-of-day rules 2 and 7) and what early kernel code that
//!    carves its first allocations out of that space relies on. A domU smaller than that
//!    region may be built with [`Padding::UpToMemory`] instead (a Xenia departure, for dense
//!    minimal domains): the padding is then whatever of its memory follows the stack, possibly
//!    none, and `start_info` says so ([`guest_abi::start_info::StartInfo::padding_end_within`]).
//!
//! Virtual page `v` of the region maps pseudo-physical frame `(v - virt_start) / 4096`, so the
//! region's size is also the memory it needs; the one exception is the `shared_info` page, which
//! maps the hypervisor-owned shared-info frame instead (its pseudo-physical frame stays unused at
//! start of day).
//!
//! The page-table count depends on the span the tables map, and that span includes the tables
//! themselves: [`plan`] solves for the least count that suffices, as Xen does by search.
//!
//! Pure arithmetic on numbers the caller supplies: no hardware access, no unsafe code, every
//! sum checked, so a hostile size (from a config file or a kernel image) yields an error.

#![forbid(unsafe_code)]

use core::fmt;
use core::ops::Range;

use guest_abi::layout::{HYPERVISOR_VIRT_END, HYPERVISOR_VIRT_START};
use guest_abi::types::{PAGE_SHIFT, PAGE_SIZE, Pfn};

/// Size of a page, and the alignment of every region in the layout.
pub const PAGE: u64 = PAGE_SIZE as u64;

/// The bootstrap region ends on a multiple of this (xen.h, start-of-day rule 2: "The contiguous
/// region ends on an aligned 4MB boundary").
pub const BOOTSTRAP_ALIGN: u64 = 4 << 20;

/// At least this much mapped, unused space follows the bootstrap stack (xen.h, start-of-day
/// rule 7: "at least 512kB padding after the final bootstrap element").
pub const MIN_PADDING: u64 = 512 << 10;

/// How the bootstrap region ends after the stack.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Padding {
    /// Xen's rule: on a [`BOOTSTRAP_ALIGN`] boundary at least [`MIN_PADDING`] past the stack;
    /// a domain with less memory than that does not fit ([`LayoutError::TooSmall`]).
    Xen,
    /// Xen's rule when the domain's memory reaches that far; otherwise the region is all of the
    /// domain's memory, whatever follows the stack being the padding (none when the stack ends
    /// on the last page). A domain whose memory ends before its stack does not fit.
    UpToMemory,
}

/// Pages a domU has at start of day that dom0 does not: the console ring, the device page and
/// the xenstore ring, in that order ([`guest_abi::device_page::console_ring_va`],
/// [`guest_abi::device_page::device_page_va`], [`guest_abi::xenstore::store_ring_va`]).
pub const DOMU_EXTRA_PAGES: u64 = 3;

/// Size of one p2m list entry: an MFN as a 64-bit `xen_pfn_t`.
const P2M_ENTRY_SIZE: u64 = 8;

/// Entries in a page table of any level (Intel SDM Vol. 3A §4.5, 4-level paging).
const ENTRIES_PER_TABLE: u64 = 512;

/// Width of the canonical part of a 4-level-paging address: bits 63..47 must all be equal
/// (Intel SDM Vol. 1 §3.3.7.1).
const VIRT_ADDR_BITS: u32 = 48;

/// Whether `va` is canonical under 4-level paging.
pub const fn is_canonical(va: u64) -> bool {
    let shift = u64::BITS - VIRT_ADDR_BITS;
    (((va << shift) as i64) >> shift) as u64 == va
}

/// Whether the non-empty half-open range `[start, end)` is canonical throughout: both ends
/// canonical and in the same half, so that it cannot straddle the non-canonical hole.
pub const fn is_canonical_range(start: u64, end: u64) -> bool {
    if end <= start {
        return false;
    }
    let last = end - 1;
    is_canonical(start) && is_canonical(last) && (start >> 63) == (last >> 63)
}

/// Whether the half-open range `[start, end)` touches the hypervisor's reserved slots, which no
/// guest mapping may ever use (DESIGN.md §4).
pub const fn touches_hypervisor_range(start: u64, end: u64) -> bool {
    start < HYPERVISOR_VIRT_END && end > HYPERVISOR_VIRT_START
}

/// `addr` rounded down to a page boundary.
pub const fn page_align_down(addr: u64) -> u64 {
    addr & !(PAGE - 1)
}

/// `addr` rounded up to a page boundary, or `None` past the top of the address space.
pub const fn page_align_up(addr: u64) -> Option<u64> {
    align_up(addr, PAGE)
}

/// `addr` rounded up to a multiple of the power of two `align`, or `None` on overflow.
const fn align_up(addr: u64, align: u64) -> Option<u64> {
    match addr.checked_add(align - 1) {
        Some(v) => Some(v & !(align - 1)),
        None => None,
    }
}

/// A page-aligned, half-open range of guest virtual addresses `[start, end)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Region {
    /// First address.
    pub start: u64,
    /// First address past the region.
    pub end: u64,
}

impl Region {
    /// Size in bytes.
    pub const fn len(&self) -> u64 {
        self.end.saturating_sub(self.start)
    }

    /// Size in pages.
    pub const fn pages(&self) -> u64 {
        self.len() / PAGE
    }

    /// Whether the region holds no byte.
    pub const fn is_empty(&self) -> bool {
        self.end <= self.start
    }

    /// Whether `va` lies in the region.
    pub const fn contains(&self, va: u64) -> bool {
        self.start <= va && va < self.end
    }
}

/// How many bootstrap page tables of each level the layout needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct TableCounts {
    /// Always 1: the root.
    pub l4: u64,
    /// One per 512 GiB slot the region touches.
    pub l3: u64,
    /// One per 1 GiB slot the region touches.
    pub l2: u64,
    /// One per 2 MiB slot the region touches.
    pub l1: u64,
}

impl TableCounts {
    /// The tables needed to map `[start, end)` (non-empty) with 4 KiB pages.
    fn covering(start: u64, end: u64) -> Self {
        let slots = |level: Level| {
            let shift = level.entry_shift() + ENTRIES_PER_TABLE.trailing_zeros();
            ((end - 1) >> shift) - (start >> shift) + 1
        };
        Self {
            l4: 1,
            l3: slots(Level::L3),
            l2: slots(Level::L2),
            l1: slots(Level::L1),
        }
    }

    /// All the tables: Xen's `nr_pt_frames`.
    pub const fn total(&self) -> u64 {
        self.l4 + self.l3 + self.l2 + self.l1
    }
}

/// A page-table level (Intel SDM Vol. 3A §4.5: PML4, PDPT, PD, PT).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Level {
    /// The root (PML4); its entries point at L3 tables.
    L4,
    /// Page-directory-pointer table; its entries point at L2 tables.
    L3,
    /// Page directory; its entries point at L1 tables.
    L2,
    /// Page table; its entries map 4 KiB pages.
    L1,
}

impl Level {
    /// log2 of the span one entry of a table of this level maps.
    pub const fn entry_shift(self) -> u32 {
        let per_level = ENTRIES_PER_TABLE.trailing_zeros();
        PAGE_SHIFT
            + per_level
                * match self {
                    Level::L1 => 0,
                    Level::L2 => 1,
                    Level::L3 => 2,
                    Level::L4 => 3,
                }
    }
}

/// What a bootstrap page-table entry points at.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Target {
    /// The next-level table held in this pseudo-physical frame.
    Table(Pfn),
    /// A page of the domain's own memory. Only the page tables themselves are read-only.
    Page {
        /// The frame mapped.
        pfn: Pfn,
        /// Whether the mapping is writable.
        writable: bool,
    },
    /// The domain's `shared_info` page, a hypervisor-owned frame that the builder substitutes.
    SharedInfo,
}

/// One entry the builder must write into a bootstrap page table.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TableEntry {
    /// Level of the table written.
    pub level: Level,
    /// The frame that holds the table written.
    pub table: Pfn,
    /// Index of the entry in that table (0 to 511).
    pub index: usize,
    /// What the entry points at.
    pub target: Target,
}

/// The start-of-day layout of a PV domain, as [`plan`] computes it. Every region is page
/// aligned, and they follow one another in field order without gaps.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct StartOfDay {
    /// The kernel image; its start is `virt_start`, where pseudo-physical frame 0 is mapped.
    pub kernel: Region,
    /// The initrd, if one was given and it is not empty (`start_info.mod_start`); the region
    /// is rounded up to whole pages.
    pub initrd: Option<Region>,
    /// The initrd's length in bytes (`start_info.mod_len`), 0 when there is none.
    pub initrd_len: u64,
    /// The p2m list (`start_info.mfn_list`).
    pub p2m: Region,
    /// The `start_info` page (`rsi` at entry).
    pub start_info: u64,
    /// The page that maps the domain's `shared_info` (Xenia addition).
    pub shared_info: u64,
    /// The extra pages the builder asked [`plan`] for, right after `shared_info` (empty when
    /// none: its start is then the start of `page_tables`).
    pub extra: Region,
    /// The bootstrap page tables (`start_info.pt_base`, and `cr3` at its start).
    pub page_tables: Region,
    /// How many tables of each level `page_tables` holds (their sum is `nr_pt_frames`).
    pub table_counts: TableCounts,
    /// The bootstrap stack (`rsp` at entry is its end).
    pub stack: Region,
    /// End of everything mapped at start of day, padding included.
    pub mapped_end: u64,
    /// The domain's memory in pages (`start_info.nr_pages`).
    pub nr_pages: u64,
}

impl StartOfDay {
    /// Where pseudo-physical frame 0 is mapped.
    pub const fn virt_start(&self) -> u64 {
        self.kernel.start
    }

    /// Pages mapped at start of day: frames `0..mapped_pages()` back them.
    pub const fn mapped_pages(&self) -> u64 {
        self.mapped_end.saturating_sub(self.kernel.start) / PAGE
    }

    /// The pseudo-physical frame mapped at `va` at start of day, or `None` when `va` is outside
    /// the bootstrap region or in the `shared_info` page (which maps a hypervisor frame).
    pub const fn pfn_of(&self, va: u64) -> Option<Pfn> {
        if va < self.kernel.start
            || va >= self.mapped_end
            || page_align_down(va) == self.shared_info
        {
            return None;
        }
        Some(Pfn((va - self.kernel.start) / PAGE))
    }

    /// The initial stack pointer: the end of the bootstrap stack.
    pub const fn stack_top(&self) -> u64 {
        self.stack.end
    }

    /// The frame of the root page table (the guest's `cr3` at entry).
    pub const fn root_table(&self) -> Pfn {
        self.table_frame(0)
    }

    /// The frame of table `index` of `level` (tables of one level in address order), or `None`
    /// when the layout has no such table.
    pub const fn table_pfn(&self, level: Level, index: u64) -> Option<Pfn> {
        let c = &self.table_counts;
        let (first, count) = match level {
            Level::L4 => (0, c.l4),
            Level::L3 => (c.l4, c.l3),
            Level::L2 => (c.l4.wrapping_add(c.l3), c.l2),
            Level::L1 => (c.l4.wrapping_add(c.l3).wrapping_add(c.l2), c.l1),
        };
        if index < count {
            Some(self.table_frame(first.wrapping_add(index)))
        } else {
            None
        }
    }

    /// Every entry the bootstrap page tables hold, so that the builder can fill them without
    /// knowing the layout rules: the L4 entries, then the L3, L2 and L1 entries, each in address
    /// order. Entries not listed stay zero (not present).
    ///
    /// The arithmetic wraps instead of panicking, so that a layout built by hand rather than by
    /// [`plan`] yields wrong entries at worst; for a layout from [`plan`] nothing wraps.
    pub fn table_entries(&self) -> impl Iterator<Item = TableEntry> + '_ {
        let start = self.kernel.start;
        let first = move |level: Level| start >> level.entry_shift();
        let c = self.table_counts;
        let l3_base = c.l4;
        let l2_base = l3_base.wrapping_add(c.l3);
        let l1_base = l2_base.wrapping_add(c.l2);
        // Entry `slot` (counted across the whole address space) of a table of `level` lives in
        // table `slot / 512 - first(parent level)` of that level: a parent entry covers 512
        // child entries.
        let entry = move |level: Level, level_base: u64, slot: u64, target: Target| {
            let table = (slot / ENTRIES_PER_TABLE).wrapping_sub(first(level) / ENTRIES_PER_TABLE);
            TableEntry {
                level,
                table: self.table_frame(level_base.wrapping_add(table)),
                index: (slot % ENTRIES_PER_TABLE) as usize,
                target,
            }
        };
        let l4 = (0..c.l3).map(move |i| {
            let target = Target::Table(self.table_frame(l3_base.wrapping_add(i)));
            entry(Level::L4, 0, first(Level::L4).wrapping_add(i), target)
        });
        let l3 = (0..c.l2).map(move |i| {
            let target = Target::Table(self.table_frame(l2_base.wrapping_add(i)));
            entry(Level::L3, l3_base, first(Level::L3).wrapping_add(i), target)
        });
        let l2 = (0..c.l1).map(move |i| {
            let target = Target::Table(self.table_frame(l1_base.wrapping_add(i)));
            entry(Level::L2, l2_base, first(Level::L2).wrapping_add(i), target)
        });
        let l1 = (0..self.mapped_pages()).map(move |pfn| {
            let va = start.wrapping_add(pfn.wrapping_mul(PAGE));
            let target = if va == self.shared_info {
                Target::SharedInfo
            } else {
                Target::Page {
                    pfn: Pfn(pfn),
                    writable: !self.page_tables.contains(va),
                }
            };
            entry(
                Level::L1,
                l1_base,
                first(Level::L1).wrapping_add(pfn),
                target,
            )
        });
        l4.chain(l3).chain(l2).chain(l1)
    }

    /// The frame of page `n` of the page-table region.
    const fn table_frame(&self, n: u64) -> Pfn {
        let first = self.page_tables.start.wrapping_sub(self.kernel.start) / PAGE;
        Pfn(first.wrapping_add(n))
    }
}

/// Why a domain's start-of-day layout cannot be built.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum LayoutError {
    /// The kernel range given is empty.
    EmptyKernel {
        /// Its start.
        start: u64,
        /// Its end.
        end: u64,
    },
    /// Everything mapped at start of day needs more pages than the domain has.
    TooSmall {
        /// Pages the bootstrap region needs.
        need_pages: u64,
        /// Pages the domain has.
        have_pages: u64,
        /// Pages the kernel image alone takes.
        kernel_pages: u64,
    },
    /// The bootstrap region would reach into the hypervisor's reserved range.
    ReservedRange {
        /// Start of the bootstrap region.
        start: u64,
        /// End of the bootstrap region.
        end: u64,
    },
    /// The bootstrap region would include non-canonical addresses.
    NonCanonical {
        /// Start of the bootstrap region.
        start: u64,
        /// End of the bootstrap region.
        end: u64,
    },
    /// The bootstrap region would run past the top of the address space.
    Overflow,
}

/// `pages` in MiB, rounded up.
fn mib_up(pages: u64) -> u64 {
    pages.div_ceil((1 << 20) / PAGE)
}

impl fmt::Display for LayoutError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            LayoutError::EmptyKernel { start, end } => {
                write!(f, "the kernel image {start:#x}..{end:#x} is empty")
            }
            LayoutError::TooSmall {
                need_pages,
                have_pages,
                kernel_pages,
            } => write!(
                f,
                "dom0_mem of {} MiB is too small for a kernel of {} MiB: need at least {} MiB \
                 ({need_pages} pages, have {have_pages})",
                have_pages / ((1 << 20) / PAGE),
                mib_up(kernel_pages),
                mib_up(need_pages),
            ),
            LayoutError::ReservedRange { start, end } => write!(
                f,
                "the start-of-day region {start:#x}..{end:#x} reaches into the hypervisor's \
                 reserved range {HYPERVISOR_VIRT_START:#x}..{HYPERVISOR_VIRT_END:#x}"
            ),
            LayoutError::NonCanonical { start, end } => write!(
                f,
                "the start-of-day region {start:#x}..{end:#x} includes non-canonical addresses"
            ),
            LayoutError::Overflow => {
                f.write_str("the start-of-day region runs past the top of the address space")
            }
        }
    }
}

/// Plans the start-of-day layout of a domain of `nr_pages` pages whose kernel image occupies
/// `kernel` (rounded out to whole pages; pseudo-physical frame 0 is mapped at its first page)
/// and that is given an initrd of `initrd_len` bytes (none when `None` or zero), with
/// `extra_pages` more pages right after `shared_info` for the builder's own use
/// ([`StartOfDay::extra`]; 0 for dom0, [`DOMU_EXTRA_PAGES`] for a domU).
pub fn plan(
    kernel: Range<u64>,
    nr_pages: u64,
    initrd_len: Option<u64>,
    extra_pages: u64,
) -> Result<StartOfDay, LayoutError> {
    plan_with(kernel, nr_pages, initrd_len, extra_pages, Padding::Xen)
}

/// [`plan`] with the region's end chosen by `padding`.
pub fn plan_with(
    kernel: Range<u64>,
    nr_pages: u64,
    initrd_len: Option<u64>,
    extra_pages: u64,
    padding: Padding,
) -> Result<StartOfDay, LayoutError> {
    if kernel.is_empty() {
        return Err(LayoutError::EmptyKernel {
            start: kernel.start,
            end: kernel.end,
        });
    }
    let start = page_align_down(kernel.start);
    let after = |from: u64, len: u64| {
        from.checked_add(len)
            .and_then(page_align_up)
            .ok_or(LayoutError::Overflow)
    };
    let kernel = Region {
        start,
        end: after(kernel.end, 0)?,
    };
    let initrd = match initrd_len {
        Some(len) if len > 0 => Some(Region {
            start: kernel.end,
            end: after(kernel.end, len)?,
        }),
        _ => None,
    };
    let p2m_start = initrd.map_or(kernel.end, |r| r.end);
    let p2m_len = nr_pages
        .checked_mul(P2M_ENTRY_SIZE)
        .ok_or(LayoutError::Overflow)?;
    let p2m = Region {
        start: p2m_start,
        end: after(p2m_start, p2m_len)?,
    };
    let start_info = p2m.end;
    let shared_info = after(start_info, PAGE)?;
    let extra_start = after(shared_info, PAGE)?;
    let extra_len = extra_pages.checked_mul(PAGE).ok_or(LayoutError::Overflow)?;
    let extra = Region {
        start: extra_start,
        end: after(extra_start, extra_len)?,
    };
    let pt_start = extra.end;
    // The end of the domain's memory in the region (saturating: a size past the address space
    // is only compared with, and the region's own checks refuse what cannot be mapped).
    let memory_end = nr_pages
        .checked_mul(PAGE)
        .and_then(|len| start.checked_add(len))
        .unwrap_or(u64::MAX);

    // Least fixed point of `tables = needed(end(tables))`. `needed` is monotone, so iterating
    // from zero climbs to it; each step adds far fewer tables than the one before (512 new
    // tables need about one more L1), so this ends after a few rounds, or in `Overflow` at the
    // top of the address space.
    let mut tables: u64 = 0;
    let (stack, mapped_end, table_counts) = loop {
        let pt_len = tables.checked_mul(PAGE).ok_or(LayoutError::Overflow)?;
        let stack_start = after(pt_start, pt_len)?;
        let stack = Region {
            start: stack_start,
            end: after(stack_start, PAGE)?,
        };
        let mut end = align_up(stack.end, BOOTSTRAP_ALIGN).ok_or(LayoutError::Overflow)?;
        if end - stack.end < MIN_PADDING {
            end = end
                .checked_add(BOOTSTRAP_ALIGN)
                .ok_or(LayoutError::Overflow)?;
        }
        if padding == Padding::UpToMemory && end > memory_end {
            // Monotone in the stack's end as well, so the fixed point stays the least one.
            end = memory_end.max(stack.end);
        }
        let counts = TableCounts::covering(start, end);
        if counts.total() <= tables {
            break (stack, end, counts);
        }
        tables = counts.total();
    };

    if !is_canonical_range(start, mapped_end) {
        return Err(LayoutError::NonCanonical {
            start,
            end: mapped_end,
        });
    }
    if touches_hypervisor_range(start, mapped_end) {
        return Err(LayoutError::ReservedRange {
            start,
            end: mapped_end,
        });
    }
    let need_pages = (mapped_end - start) / PAGE;
    if need_pages > nr_pages {
        return Err(LayoutError::TooSmall {
            need_pages,
            have_pages: nr_pages,
            kernel_pages: kernel.pages(),
        });
    }
    Ok(StartOfDay {
        kernel,
        initrd,
        initrd_len: initrd.map_or(0, |_| initrd_len.unwrap_or(0)),
        p2m,
        start_info,
        shared_info,
        extra,
        page_tables: Region {
            start: pt_start,
            end: stack.start,
        },
        table_counts,
        stack,
        mapped_end,
        nr_pages,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::collections::{BTreeMap, BTreeSet};
    use alloc::string::ToString;

    const MIB: u64 = 1 << 20;
    const GIB: u64 = 1 << 30;
    const LINUX: u64 = 0xFFFF_FFFF_8000_0000;

    fn pages(bytes: u64) -> u64 {
        bytes / PAGE
    }

    /// Distinct tables of each level that 4 KiB mappings of `[start, end)` need, counted page
    /// by page.
    fn brute_force_tables(start: u64, end: u64) -> TableCounts {
        let mut sets: [BTreeSet<u64>; 3] = Default::default();
        let mut va = start;
        while va < end {
            sets[0].insert(va >> 21);
            sets[1].insert(va >> 30);
            sets[2].insert(va >> 39);
            va += PAGE;
        }
        TableCounts {
            l4: 1,
            l3: sets[2].len() as u64,
            l2: sets[1].len() as u64,
            l1: sets[0].len() as u64,
        }
    }

    /// The end of the bootstrap region if the page tables took `tables` pages (xen.h rules 2
    /// and 7, restated independently of `plan`).
    fn end_with(page_tables_start: u64, tables: u64) -> u64 {
        let stack_end = page_tables_start + (tables + 1) * PAGE;
        let mut end = stack_end.next_multiple_of(BOOTSTRAP_ALIGN);
        if end - stack_end < MIN_PADDING {
            end += BOOTSTRAP_ALIGN;
        }
        end
    }

    /// Checks everything a layout promises, independently of how `plan` computed it.
    fn check(sod: &StartOfDay) {
        let start = sod.virt_start();
        // Page aligned, in order, without gaps.
        let mut regions = vec![sod.kernel];
        regions.extend(sod.initrd);
        regions.push(sod.p2m);
        regions.push(Region {
            start: sod.start_info,
            end: sod.start_info + PAGE,
        });
        regions.push(Region {
            start: sod.shared_info,
            end: sod.shared_info + PAGE,
        });
        regions.push(sod.extra);
        regions.push(sod.page_tables);
        regions.push(sod.stack);
        for r in &regions {
            assert_eq!(r.start % PAGE, 0, "{r:?}");
            assert_eq!(r.end % PAGE, 0, "{r:?}");
            assert!(!r.is_empty() || *r == sod.p2m || *r == sod.extra, "{r:?}");
        }
        for w in regions.windows(2) {
            assert_eq!(w[0].end, w[1].start, "{:?} then {:?}", w[0], w[1]);
        }
        assert_eq!(sod.stack.pages(), 1);
        assert_eq!(sod.stack_top(), sod.stack.end);
        assert!(sod.p2m.len() >= sod.nr_pages * 8 && sod.p2m.len() < sod.nr_pages * 8 + PAGE);

        // The padding Xen promises.
        assert_eq!(sod.mapped_end % BOOTSTRAP_ALIGN, 0);
        let padding = sod.mapped_end - sod.stack.end;
        assert!(
            (MIN_PADDING..MIN_PADDING + BOOTSTRAP_ALIGN).contains(&padding),
            "{padding:#x}"
        );

        // The table count is exactly what the region needs, and the least that works.
        let counts = sod.table_counts;
        assert_eq!(counts, brute_force_tables(start, sod.mapped_end));
        assert_eq!(counts.total(), sod.page_tables.pages());
        let fewer = counts.total() - 1;
        let end = end_with(sod.page_tables.start, fewer);
        assert!(
            brute_force_tables(start, end).total() > fewer,
            "{fewer} tables would do"
        );

        // Memory: everything fits, pfn 0 is virt_start, the mapping is linear.
        assert!(sod.mapped_pages() <= sod.nr_pages);
        assert_eq!(sod.pfn_of(start), Some(Pfn(0)));
        assert_eq!(sod.pfn_of(start - 1), None);
        assert_eq!(
            sod.pfn_of(sod.mapped_end - 1),
            Some(Pfn(sod.mapped_pages() - 1))
        );
        assert_eq!(sod.pfn_of(sod.mapped_end), None);
        assert_eq!(sod.pfn_of(sod.shared_info + 8), None);
        assert_eq!(
            sod.pfn_of(sod.start_info + 8),
            Some(Pfn(pages(sod.start_info - start)))
        );
        assert!(is_canonical_range(start, sod.mapped_end));
        assert!(!touches_hypervisor_range(start, sod.mapped_end));

        check_tables(sod);
    }

    /// Fills tables from `table_entries` and walks them for every mapped page, as the MMU would.
    fn check_tables(sod: &StartOfDay) {
        let first_table = Pfn(pages(sod.page_tables.start - sod.virt_start()));
        let tables = first_table.0..first_table.0 + sod.page_tables.pages();
        let mut entries: BTreeMap<(Pfn, usize), (Level, Target)> = BTreeMap::new();
        for e in sod.table_entries() {
            assert!(
                tables.contains(&e.table.0),
                "{e:?} writes outside the tables"
            );
            assert!(e.index < 512);
            let old = entries.insert((e.table, e.index), (e.level, e.target));
            assert!(old.is_none(), "{e:?} written twice");
        }
        let used: BTreeSet<Pfn> = entries.keys().map(|(t, _)| *t).collect();
        assert_eq!(
            used.len() as u64,
            sod.page_tables.pages(),
            "every table holds entries"
        );
        assert_eq!(sod.root_table(), first_table);

        let walk = |table: Pfn, level: Level, va: u64| {
            let index = ((va >> level.entry_shift()) % 512) as usize;
            let (l, target) = entries[&(table, index)];
            assert_eq!(l, level);
            target
        };
        let mut va = sod.virt_start();
        let mut mapped = 0;
        while va < sod.mapped_end {
            let mut table = sod.root_table();
            for level in [Level::L4, Level::L3, Level::L2] {
                match walk(table, level, va) {
                    Target::Table(t) => table = t,
                    other => panic!("{other:?} at {level:?} for {va:#x}"),
                }
            }
            let expected = if va == sod.shared_info {
                Target::SharedInfo
            } else {
                let pfn = sod.pfn_of(va).unwrap();
                assert!(pfn.0 < sod.nr_pages);
                Target::Page {
                    pfn,
                    writable: !sod.page_tables.contains(va),
                }
            };
            assert_eq!(walk(table, Level::L1, va), expected, "{va:#x}");
            mapped += 1;
            va += PAGE;
        }
        // Nothing but the region is mapped: one leaf per page and nothing more.
        let leaves = entries.values().filter(|(l, _)| *l == Level::L1).count();
        assert_eq!(leaves, mapped);
        for level in [Level::L1, Level::L2, Level::L3] {
            assert!(sod.table_pfn(level, 0).is_some());
        }
        let c = sod.table_counts;
        assert_eq!(sod.table_pfn(Level::L4, 0), Some(sod.root_table()));
        assert_eq!(sod.table_pfn(Level::L4, 1), None);
        assert_eq!(sod.table_pfn(Level::L1, c.l1), None);
        assert_eq!(
            sod.table_pfn(Level::L1, c.l1 - 1),
            Some(Pfn(tables.end - 1))
        );
    }

    #[test]
    fn linux_like_kernel_with_64_mib() {
        let sod = plan(
            LINUX + 0x100_0000..LINUX + 0x1A3_4567,
            pages(64 * MIB),
            None,
            0,
        )
        .unwrap();
        check(&sod);
        assert_eq!(
            sod.kernel,
            Region {
                start: LINUX + 0x100_0000,
                end: LINUX + 0x1A3_5000
            }
        );
        assert_eq!(sod.initrd, None);
        assert_eq!(
            sod.p2m,
            Region {
                start: LINUX + 0x1A3_5000,
                end: LINUX + 0x1A5_5000
            }
        );
        assert_eq!(sod.start_info, LINUX + 0x1A5_5000);
        assert_eq!(sod.shared_info, LINUX + 0x1A5_6000);
        assert_eq!(sod.page_tables.start, LINUX + 0x1A5_7000);
        // 0x100_0000..0x1C0_0000 needs 6 L1s, one L2, one L3, one L4.
        assert_eq!(
            sod.table_counts,
            TableCounts {
                l4: 1,
                l3: 1,
                l2: 1,
                l1: 6
            }
        );
        assert_eq!(sod.page_tables.end, LINUX + 0x1A6_0000);
        assert_eq!(
            sod.stack,
            Region {
                start: LINUX + 0x1A6_0000,
                end: LINUX + 0x1A6_1000
            }
        );
        assert_eq!(
            sod.mapped_end,
            LINUX + 0x1C0_0000,
            "the next 4 MiB boundary"
        );
        // Slot 511 of the L4, slot 510 of the L3, as for Linux.
        let l4: Vec<_> = sod
            .table_entries()
            .filter(|e| e.level == Level::L4)
            .collect();
        assert_eq!(l4.len(), 1);
        assert_eq!(l4[0].index, 511);
        let l3: Vec<_> = sod
            .table_entries()
            .filter(|e| e.level == Level::L3)
            .collect();
        assert_eq!(l3[0].index, 510);
    }

    #[test]
    fn lower_half_kernel_with_initrd() {
        let sod = plan(0x40_0000..0x52_0000, pages(128 * MIB), Some(3 * MIB + 1), 0).unwrap();
        check(&sod);
        assert_eq!(
            sod.initrd,
            Some(Region {
                start: 0x52_0000,
                end: 0x82_1000
            })
        );
        assert_eq!(sod.p2m.start, 0x82_1000);
        assert_eq!(sod.p2m.len(), pages(128 * MIB) * 8);
        assert_eq!(sod.table_counts.l3, 1);
        let l4: Vec<_> = sod
            .table_entries()
            .filter(|e| e.level == Level::L4)
            .collect();
        assert_eq!(l4[0].index, 0);
    }

    #[test]
    fn extra_pages_follow_shared_info() {
        let kernel = LINUX + 0x100_0000..LINUX + 0x123_4567;
        let dom0 = plan(kernel.clone(), pages(16 * MIB), Some(5000), 0).unwrap();
        let domu = plan(kernel, pages(16 * MIB), Some(5000), DOMU_EXTRA_PAGES).unwrap();
        check(&dom0);
        check(&domu);
        assert!(dom0.extra.is_empty());
        assert_eq!(dom0.extra.start, dom0.page_tables.start);
        assert_eq!(domu.initrd_len, 5000);
        assert_eq!(domu.initrd.unwrap().len(), 2 * PAGE);
        // Nothing before the extra pages moves; the tables follow them.
        assert_eq!(
            (
                domu.kernel,
                domu.initrd,
                domu.p2m,
                domu.start_info,
                domu.shared_info
            ),
            (
                dom0.kernel,
                dom0.initrd,
                dom0.p2m,
                dom0.start_info,
                dom0.shared_info
            )
        );
        assert_eq!(
            domu.extra,
            Region {
                start: domu.shared_info + PAGE,
                end: domu.shared_info + 4 * PAGE
            }
        );
        assert_eq!(domu.page_tables.start, dom0.page_tables.start + 3 * PAGE);
        use guest_abi::device_page::{console_ring_va, device_page_va};
        assert_eq!(console_ring_va(domu.start_info), domu.extra.start);
        assert_eq!(device_page_va(domu.start_info), domu.extra.start + PAGE);
        assert_eq!(
            guest_abi::xenstore::store_ring_va(domu.start_info),
            domu.extra.start + 2 * PAGE
        );
        // The extra pages are the domain's own memory, mapped writable.
        assert!(domu.pfn_of(domu.extra.start).is_some());
    }

    #[test]
    fn extra_pages_count_towards_memory() {
        let kernel = 0x40_0000..0x40_0000 + 3 * MIB;
        let mut nr = 1;
        let need = |nr, extra| match plan(kernel.clone(), nr, None, extra) {
            Ok(sod) => Ok(sod.mapped_pages()),
            Err(LayoutError::TooSmall { need_pages, .. }) => Err(need_pages),
            Err(e) => panic!("{e}"),
        };
        // Find the least memory that fits with the extra pages, then check one page less
        // does not.
        while let Err(more) = need(nr, DOMU_EXTRA_PAGES) {
            assert!(more > nr);
            nr = more;
        }
        assert_eq!(need(nr, DOMU_EXTRA_PAGES), Ok(nr));
        assert!(need(nr - 1, DOMU_EXTRA_PAGES).is_err());
        assert_eq!(
            plan(LINUX..LINUX + MIB, 4096, None, u64::MAX),
            Err(LayoutError::Overflow)
        );
    }

    #[test]
    fn empty_initrd_is_no_initrd() {
        let a = plan(0x40_0000..0x50_0000, 4096, Some(0), 0).unwrap();
        let b = plan(0x40_0000..0x50_0000, 4096, None, 0).unwrap();
        assert_eq!(a, b);
        assert_eq!(a.p2m.start, 0x50_0000);
    }

    #[test]
    fn crossing_a_1_gib_boundary_needs_two_l2s() {
        let sod = plan(GIB - 2 * MIB..GIB + MIB, pages(32 * MIB), None, 0).unwrap();
        check(&sod);
        assert_eq!((sod.table_counts.l3, sod.table_counts.l2), (1, 2));
    }

    #[test]
    fn crossing_a_512_gib_boundary_needs_two_l3s() {
        let slot = 512 * GIB;
        let sod = plan(slot - 2 * MIB..slot + MIB, pages(32 * MIB), None, 0).unwrap();
        check(&sod);
        assert_eq!((sod.table_counts.l3, sod.table_counts.l2), (2, 2));
        let indices: Vec<_> = sod
            .table_entries()
            .filter(|e| e.level == Level::L4)
            .map(|e| e.index)
            .collect();
        assert_eq!(indices, [0, 1]);
        // And in the upper half, from slot 510 into 511.
        let slot = LINUX & !(512 * GIB - 1);
        let sod = plan(slot - MIB..slot + MIB, pages(32 * MIB), None, 0).unwrap();
        check(&sod);
        assert_eq!(sod.table_counts.l3, 2);
    }

    #[test]
    fn page_tables_pushing_the_region_over_a_boundary() {
        // Sweep kernel sizes and memory sizes so that some layouts need one more table only
        // because of the tables themselves; `check` verifies the count by brute force and that
        // one fewer would not do.
        let mut kinds = BTreeSet::new();
        for start in [0xFFFF_FFFF_81F0_0000, 0xFFFF_FFFF_BFE0_0000, 0x7F_FFE0_0000] {
            for kernel_pages in (1..1200).step_by(11) {
                for nr_pages in [2048, 4096 + 3, 70_000] {
                    let extra = kernel_pages % 3;
                    let Ok(sod) = plan(start..start + kernel_pages * PAGE, nr_pages, None, extra)
                    else {
                        continue;
                    };
                    check(&sod);
                    let c = sod.table_counts;
                    kinds.insert((c.l3, c.l2, c.l1));
                }
            }
        }
        assert!(
            kinds.len() >= 5,
            "the sweep covers several table shapes: {kinds:?}"
        );
    }

    #[test]
    fn page_tables_that_push_the_region_past_the_next_boundary() {
        // With 4 tables the stack would end exactly 512 KiB before the 4 MiB boundary, but a
        // region ending there needs 5 (L4, L3, L2, 2 L1s), which moves the stack past the limit;
        // the region grows by 4 MiB and then needs 7.
        let start = LINUX;
        let nr_pages = 4096; // an 8-page p2m
        let kernel_end = start + BOOTSTRAP_ALIGN - MIN_PADDING - 15 * PAGE;
        let sod = plan(start..kernel_end, nr_pages, None, 0).unwrap();
        check(&sod);
        assert_eq!(end_with(sod.page_tables.start, 4), start + BOOTSTRAP_ALIGN);
        assert_eq!(sod.mapped_end, start + 2 * BOOTSTRAP_ALIGN);
        assert_eq!(
            sod.table_counts,
            TableCounts {
                l4: 1,
                l3: 1,
                l2: 1,
                l1: 4
            }
        );
        // One page less of kernel and 5 tables fit before the limit.
        let sod = plan(start..kernel_end - PAGE, nr_pages, None, 0).unwrap();
        check(&sod);
        assert_eq!(sod.mapped_end, start + BOOTSTRAP_ALIGN);
        assert_eq!(sod.table_counts.total(), 5);
    }

    #[test]
    fn a_large_domain() {
        let sod = plan(
            LINUX + 0x100_0000..LINUX + 0x300_0000,
            pages(8 * GIB),
            None,
            0,
        )
        .unwrap();
        check(&sod);
        assert_eq!(sod.p2m.len(), 16 * MIB);
    }

    #[test]
    fn too_small() {
        let err = plan(LINUX..LINUX + 30 * MIB, pages(16 * MIB), None, 0).unwrap_err();
        let LayoutError::TooSmall {
            need_pages,
            have_pages,
            kernel_pages,
        } = err
        else {
            panic!("{err:?}");
        };
        assert_eq!((have_pages, kernel_pages), (4096, pages(30 * MIB)));
        assert_eq!(need_pages, pages(32 * MIB));
        assert_eq!(
            err.to_string(),
            "dom0_mem of 16 MiB is too small for a kernel of 30 MiB: need at least 32 MiB \
             (8192 pages, have 4096)"
        );
        // The boundary: a domain exactly as large as its region fits, one page less does not.
        let kernel = 0x40_0000..0x40_0000 + 5 * MIB;
        let fits = |nr| plan(kernel.clone(), nr, None, 0);
        // The need grows with the domain (its p2m list does): climb from the first answer.
        let mut nr = 1;
        let sod = loop {
            match fits(nr) {
                Ok(sod) => break sod,
                Err(LayoutError::TooSmall { need_pages, .. }) => nr = need_pages,
                Err(e) => panic!("{e}"),
            }
        };
        assert_eq!(
            sod.mapped_pages(),
            nr,
            "the least memory that fits is used to the page"
        );
        assert!(matches!(fits(nr - 1), Err(LayoutError::TooSmall { .. })));
        assert!(matches!(
            plan(kernel, 0, None, 0),
            Err(LayoutError::TooSmall { .. })
        ));
    }

    #[test]
    fn up_to_memory_is_xen_when_memory_allows() {
        let kernel = LINUX + 0x100_0000..LINUX + 0x123_4567;
        for mib in [16, 64, 1024] {
            let xen = plan(kernel.clone(), pages(mib * MIB), None, DOMU_EXTRA_PAGES).unwrap();
            let up = plan_with(
                kernel.clone(),
                pages(mib * MIB),
                None,
                DOMU_EXTRA_PAGES,
                Padding::UpToMemory,
            )
            .unwrap();
            assert_eq!(xen, up);
        }
    }

    #[test]
    fn up_to_memory_fits_a_small_domain_to_the_page() {
        // A 600 KiB kernel: Xen's rule needs 4 MiB; without it, a little more than the kernel.
        let kernel = LINUX..LINUX + 600 * 1024;
        let fits = |nr| {
            plan_with(
                kernel.clone(),
                nr,
                None,
                DOMU_EXTRA_PAGES,
                Padding::UpToMemory,
            )
        };
        let mut nr = 1;
        let sod = loop {
            match fits(nr) {
                Ok(sod) => break sod,
                Err(LayoutError::TooSmall { need_pages, .. }) => {
                    assert!(need_pages > nr);
                    nr = need_pages;
                }
                Err(e) => panic!("{e}"),
            }
        };
        // Kernel, p2m, start_info, shared_info, 3 extra, L4/L3/L2/L1, stack: no padding.
        assert_eq!(nr, 150 + 1 + 1 + 1 + DOMU_EXTRA_PAGES + 4 + 1);
        assert_eq!(sod.mapped_pages(), nr);
        assert_eq!(
            sod.mapped_end, sod.stack.end,
            "no padding at the least size"
        );
        assert!(matches!(fits(nr - 1), Err(LayoutError::TooSmall { .. })));
        assert_eq!(sod.table_counts, brute_force_tables(LINUX, sod.mapped_end));
        // More memory is padding, up to Xen's region.
        let more = fits(nr + 5).unwrap();
        assert_eq!(more.mapped_end, more.stack.end + 5 * PAGE);
        assert_eq!(more.mapped_pages(), nr + 5);
        let mut leaves = 0;
        for e in more.table_entries() {
            if matches!(e.target, Target::Page { .. } | Target::SharedInfo) {
                leaves += 1;
            }
        }
        assert_eq!(
            leaves,
            more.mapped_pages(),
            "every page of the region is mapped"
        );
        let xen = plan(kernel.clone(), 4096, None, DOMU_EXTRA_PAGES).unwrap();
        assert_eq!(fits(4096).unwrap(), xen);
        // Xen's rule itself refuses the small domain.
        assert!(matches!(
            plan(kernel.clone(), nr + 5, None, DOMU_EXTRA_PAGES),
            Err(LayoutError::TooSmall { .. })
        ));
    }

    #[test]
    fn overflow_near_the_top() {
        let top = 0xFFFF_FFFF_FFC0_0000;
        assert_eq!(
            plan(top..top + MIB, pages(64 * MIB), None, 0),
            Err(LayoutError::Overflow)
        );
        assert_eq!(plan(top..u64::MAX, 16, None, 0), Err(LayoutError::Overflow));
        assert_eq!(
            plan(LINUX..LINUX + MIB, u64::MAX, None, 0),
            Err(LayoutError::Overflow)
        );
        assert_eq!(
            plan(LINUX..LINUX + MIB, 16, Some(u64::MAX), 0),
            Err(LayoutError::Overflow)
        );
        assert_eq!(
            plan(LINUX..LINUX + MIB, 1 << 61, None, 0),
            Err(LayoutError::Overflow),
            "a p2m of 2^64 bytes"
        );
    }

    #[test]
    fn non_canonical() {
        // The kernel fits below the hole, but the region's padding would not.
        let near_hole = 0x7FFF_FFC0_0000;
        assert_eq!(
            plan(near_hole..near_hole + 0x38_0000, pages(64 * MIB), None, 0),
            Err(LayoutError::NonCanonical {
                start: near_hole,
                end: 0x8000_0040_0000
            })
        );
        // Ending exactly at the hole is fine.
        check(&plan(near_hole..near_hole + 3 * MIB, pages(64 * MIB), None, 0).unwrap());
        let inside = 0x8000_0000_0000;
        assert!(matches!(
            plan(inside..inside + MIB, 4096, None, 0),
            Err(LayoutError::NonCanonical { .. })
        ));
    }

    #[test]
    fn reserved_range() {
        let start = HYPERVISOR_VIRT_START + 0x10_0000;
        assert!(matches!(
            plan(start..start + MIB, 4096, None, 0),
            Err(LayoutError::ReservedRange { start: s, .. }) if s == start
        ));
        let start = HYPERVISOR_VIRT_END - 0x10_0000;
        let err = plan(start..start + 0x1000, 4096, None, 0).unwrap_err();
        assert_eq!(
            err.to_string(),
            "the start-of-day region 0xffff87fffff00000..0xffff880000000000 reaches into the \
             hypervisor's reserved range 0xffff800000000000..0xffff880000000000"
        );
        check(
            &plan(
                HYPERVISOR_VIRT_END..HYPERVISOR_VIRT_END + MIB,
                4096,
                None,
                0,
            )
            .unwrap(),
        );
    }

    #[test]
    fn empty_kernel() {
        assert_eq!(
            plan(LINUX..LINUX, 4096, None, 0),
            Err(LayoutError::EmptyKernel {
                start: LINUX,
                end: LINUX
            })
        );
        assert!(matches!(
            plan(
                Range {
                    start: LINUX + 1,
                    end: LINUX
                },
                4096,
                None,
                0
            ),
            Err(LayoutError::EmptyKernel { .. })
        ));
    }

    #[test]
    fn extreme_inputs_never_panic() {
        let addresses = [
            0,
            1,
            PAGE,
            0x7FFF_FFFF_F000,
            0x8000_0000_0000,
            HYPERVISOR_VIRT_START,
            HYPERVISOR_VIRT_END - 1,
            LINUX,
            u64::MAX - PAGE,
            u64::MAX,
        ];
        let sizes = [0, 1, PAGE, GIB, 1 << 40, u64::MAX / 8, u64::MAX];
        for &start in &addresses {
            for &len in &sizes {
                for nr_pages in [0, 1, 4096, 1 << 40, u64::MAX] {
                    for initrd in [None, Some(0), Some(1), Some(u64::MAX)] {
                        let end = start.saturating_add(len);
                        for extra in [0, DOMU_EXTRA_PAGES, u64::MAX / PAGE, u64::MAX] {
                            for padding in [Padding::Xen, Padding::UpToMemory] {
                                if let Ok(sod) =
                                    plan_with(start..end, nr_pages, initrd, extra, padding)
                                {
                                    assert!(sod.mapped_pages() <= nr_pages);
                                    assert!(is_canonical_range(sod.virt_start(), sod.mapped_end));
                                }
                            }
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn canonical_helpers() {
        assert!(is_canonical(0) && is_canonical(0x7FFF_FFFF_FFFF));
        assert!(!is_canonical(0x8000_0000_0000) && !is_canonical(0xFFFF_7FFF_FFFF_FFFF));
        assert!(is_canonical(0xFFFF_8000_0000_0000) && is_canonical(u64::MAX));
        assert!(is_canonical_range(0x7FFF_FFFF_F000, 0x8000_0000_0000));
        assert!(!is_canonical_range(0x7FFF_FFFF_F000, 0x8000_0000_1000));
        assert!(!is_canonical_range(5, 5));
        assert_eq!(Level::L1.entry_shift(), 12);
        assert_eq!(Level::L4.entry_shift(), 39);
    }
}
