//! The start of day of a kernel built for Xen's x86-64 PV ABI (Linux, Mini-OS, XTF), laid out
//! as Xen's libxc lays it out (`tools/libs/guest/xg_dom_core.c`, `xc_dom_build_image`, and
//! `xg_dom_x86.c`: `alloc_p2m_list_x86_64`, `alloc_magic_pages_pv`, `alloc_pgtables_pv`,
//! `count_pgtables`, `setup_pgtables_pv`, `start_info_x86_64`, `vcpu_x86_64`), so that such a
//! kernel finds at its first instruction what it finds on Xen.
//!
//! Pseudo-physical frames are handed out in order from 0, and virtual addresses from
//! `VIRT_BASE` (frame `n` at `VIRT_BASE + n × 4096` in the initial mapping):
//!
//! 1. padding up to the kernel (Linux: 16 MiB, its `p_paddr` 0x1000000);
//! 2. the kernel, its segments at `p_paddr - PADDR_OFFSET + VIRT_BASE` ([`crate::elf::place_xen_pv`]);
//! 3. the ramdisk, mapped, unless the kernel takes it by frame number (`MOD_START_PFN`);
//! 4. the p2m list, unless the kernel names where it wants it (`INIT_P2M`);
//! 5. `start_info`, the xenstore ring, the console ring (libxc's "magic pages");
//! 6. the bootstrap page tables (L4, L3s, L2s, L1s), mapped read-only;
//! 7. the boot stack, one page;
//! 8. padding: the mapping ends on a 4 MiB boundary with room for 512 KiB and the stack
//!    past the tables (libxc's search, `alloc_pgtables_pv`);
//!
//! then, outside the initial mapping:
//!
//! 9. the ramdisk when it is given by frame number (`SIF_MOD_START_PFN`: `mod_start` is its
//!    first frame, `mod_len` its whole pages);
//! 10. with `INIT_P2M`: the p2m list, mapped at that address by page tables of its own that
//!     follow it (`first_p2m_pfn`, `nr_p2m_frames` count both), sharing only the L4.
//!
//! Unlike Xenia's own layout ([`crate::layout`]) nothing maps `shared_info`: a Xen PV kernel
//! maps it itself from `start_info.shared_info`.
//!
//! Pure arithmetic, every sum checked: a hostile size gives an error.

use alloc::collections::BTreeMap;
use alloc::vec::Vec;
use core::fmt;
use core::ops::Range;

use guest_abi::pte;
use guest_abi::start_info::{SIF_MOD_START_PFN, StartInfo, StartInfoConsole};
use guest_abi::trap::RFLAGS_IF;
use guest_abi::types::{Mfn, PAGE_SIZE, Pfn};
use guest_abi::vcpu_context::{VGCF_IN_KERNEL, VGCF_ONLINE, VcpuGuestContext};

use crate::boot::{BootError, ENTRIES, P2m, RFLAGS_FIXED, TableImage};
use crate::layout::{
    BOOTSTRAP_ALIGN, Level, MIN_PADDING, PAGE, Region, is_canonical_range, touches_hypervisor_range,
};

/// The 48 bits of a virtual address that page tables translate (libxc's `vaddr_mask`).
const VADDR_MASK: u64 = (1 << 48) - 1;

/// Where the ramdisk goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Ramdisk {
    /// In the initial mapping: `mod_start` is its virtual address, `mod_len` its length.
    Mapped(Region),
    /// Outside it, by frame number (`SIF_MOD_START_PFN`): `mod_start` is `first`,
    /// `mod_len` is `pages` whole pages, as libxc gives it.
    Unmapped {
        /// Its first frame.
        first: Pfn,
        /// Its length in pages.
        pages: u64,
    },
}

/// What the builder knows before laying out a Xen PV kernel.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    /// `XEN_ELFNOTE_VIRT_BASE`: where frame 0 is mapped.
    pub virt_base: u64,
    /// Where the kernel's segments lie once placed (`virt_kstart..virt_kend`).
    pub kernel: Range<u64>,
    /// The domain's memory in pages (`start_info.nr_pages`, the p2m list's length).
    pub nr_pages: u64,
    /// The ramdisk's length in bytes, if there is one.
    pub ramdisk_len: Option<u64>,
    /// `XEN_ELFNOTE_MOD_START_PFN` non-zero: the kernel takes its ramdisk by frame number.
    pub mod_start_pfn: bool,
    /// `XEN_ELFNOTE_INIT_P2M`: where the kernel wants the p2m list mapped. libxc uses it only
    /// when it is page aligned and below `virt_base`; otherwise the list is in the mapping.
    pub init_p2m: Option<u64>,
}

/// One bootstrap page table: its level, which part of the address space it translates (its
/// slot: the masked address shifted right by the span of the whole table) and its frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Table {
    /// Its level.
    pub level: Level,
    /// Which table of that level it is, counted across the address space.
    pub slot: u64,
    /// The frame that holds it.
    pub pfn: Pfn,
}

/// The p2m list mapped at `INIT_P2M`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct P2mArea {
    /// Its virtual address range (`INIT_P2M`, whole pages).
    pub va: Region,
    /// Its first frame; its tables follow its pages.
    pub first: Pfn,
    /// Frames of the list and its page tables (`nr_p2m_frames`).
    pub frames: u64,
}

/// A Xen PV kernel's start of day, as [`plan`] computes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Layout {
    /// Where frame 0 is mapped.
    pub virt_base: u64,
    /// The kernel's pages.
    pub kernel: Region,
    /// The ramdisk, if any.
    pub ramdisk: Option<Ramdisk>,
    /// `start_info.mod_len`: the exact length when mapped, whole pages when not (libxc).
    pub ramdisk_len: u64,
    /// The p2m list inside the mapping (`None` when it is at `INIT_P2M`).
    pub p2m_mapped: Option<Region>,
    /// The p2m list at `INIT_P2M`.
    pub p2m_area: Option<P2mArea>,
    /// `start_info` (`rsi` at entry).
    pub start_info: u64,
    /// The xenstore ring.
    pub store_ring: u64,
    /// The console ring.
    pub console_ring: u64,
    /// The bootstrap page tables of the initial mapping (`pt_base`; `nr_pt_frames` pages).
    pub page_tables: Region,
    /// The boot stack (`rsp` at entry is its end).
    pub stack: Region,
    /// End of the initial mapping.
    pub mapped_end: u64,
    /// Every bootstrap page table, of both mappings, in frame order.
    pub tables: Vec<Table>,
    /// The domain's memory in pages.
    pub nr_pages: u64,
    /// Frames used at start of day (the rest of the domain's memory is free).
    pub used_pages: u64,
}

/// Why a Xen PV kernel cannot be laid out.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum LayoutError {
    /// The kernel range is empty or starts below `virt_base`.
    BadKernel {
        /// `virt_base`.
        virt_base: u64,
        /// Start of the kernel.
        start: u64,
        /// End of the kernel.
        end: u64,
    },
    /// The start of day needs more frames than the domain has.
    TooSmall {
        /// Frames needed (libxc refuses a mapping that reaches the last frame, so one more
        /// than the frames used).
        need_pages: u64,
        /// Frames the domain has.
        have_pages: u64,
    },
    /// The initial mapping or the p2m area is not canonical, reaches into the hypervisor's
    /// range, or the two overlap.
    BadRange {
        /// Start of the offending range.
        start: u64,
        /// Its end.
        end: u64,
    },
    /// A sum overflowed.
    Overflow,
}

impl fmt::Display for LayoutError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            LayoutError::BadKernel {
                virt_base,
                start,
                end,
            } => write!(
                f,
                "the kernel's segments {start:#x}..{end:#x} are empty or below its VIRT_BASE \
                 {virt_base:#x}"
            ),
            LayoutError::TooSmall {
                need_pages,
                have_pages,
            } => write!(
                f,
                "the start of day needs {need_pages} pages ({} MiB) and the domain has \
                 {have_pages}; give it more memory",
                need_pages.div_ceil((1 << 20) / PAGE)
            ),
            LayoutError::BadRange { start, end } => write!(
                f,
                "the start-of-day range {start:#x}..{end:#x} is not canonical, reaches into the \
                 hypervisor's range or overlaps another"
            ),
            LayoutError::Overflow => f.write_str("the start of day overflows the address space"),
        }
    }
}

/// log2 of the span a whole table of `level` translates.
const fn table_shift(level: Level) -> u32 {
    level.entry_shift() + 9
}

/// The first and last slot of the tables of `level` that translate `[from, to]` (inclusive,
/// masked addresses).
fn slots(level: Level, from: u64, to: u64) -> (u64, u64) {
    (from >> table_shift(level), to >> table_shift(level))
}

const LOWER: [Level; 3] = [Level::L3, Level::L2, Level::L1];

/// Counts the tables `[from, to]` needs besides those `taken` already has, as
/// `count_pgtables` does: per level, the slots of the range minus those of the earlier
/// mapping (the ranges are contiguous, so the difference is trimmed at its ends).
fn count(from: u64, to: u64, taken: Option<(u64, u64)>) -> [(u64, u64); 3] {
    let mut out = [(1, 0); 3];
    for (i, level) in LOWER.iter().enumerate() {
        let (mut first, mut last) = slots(*level, from, to);
        if let Some((tf, tt)) = taken {
            let (cf, cl) = slots(*level, tf, tt);
            if first >= cf && last <= cl {
                continue;
            }
            if first >= cf && first <= cl {
                first = cl + 1;
            }
            if last >= cf && last <= cl {
                last = cf - 1;
            }
        }
        out[i] = (first, last);
    }
    out
}

/// How many tables a [`count`] result holds.
fn total(c: &[(u64, u64); 3]) -> u64 {
    c.iter()
        .map(|&(f, l)| if f <= l { l - f + 1 } else { 0 })
        .sum()
}

/// Lays out a Xen PV kernel's start of day as libxc does (see the module documentation).
pub fn plan(req: &Request) -> Result<Layout, LayoutError> {
    let ovf = LayoutError::Overflow;
    let page_up = |x: u64| x.checked_next_multiple_of(PAGE).ok_or(ovf);
    let pages_of = |len: u64| len.div_ceil(PAGE);
    if req.kernel.is_empty()
        || req.kernel.start < req.virt_base
        || !req.virt_base.is_multiple_of(PAGE)
    {
        return Err(LayoutError::BadKernel {
            virt_base: req.virt_base,
            start: req.kernel.start,
            end: req.kernel.end,
        });
    }
    let base = req.virt_base;
    let kernel = Region {
        start: req.kernel.start & !(PAGE - 1),
        end: page_up(req.kernel.end)?,
    };
    // `alloc` hands out `n` pages at the current end of the mapping.
    let mut end = kernel.end;
    let mut alloc = |n: u64| -> Result<Region, LayoutError> {
        let start = end;
        end = n
            .checked_mul(PAGE)
            .and_then(|len| start.checked_add(len))
            .ok_or(ovf)?;
        Ok(Region { start, end })
    };
    let ramdisk_len = req.ramdisk_len.filter(|&l| l > 0);
    let mut ramdisk = None;
    if let (Some(len), false) = (ramdisk_len, req.mod_start_pfn) {
        ramdisk = Some(Ramdisk::Mapped(alloc(pages_of(len))?));
    }
    let p2m_bytes = req.nr_pages.checked_mul(8).ok_or(ovf)?;
    let p2m_pages = pages_of(p2m_bytes);
    // libxc's condition for using `INIT_P2M` (`xc_dom_build_image`).
    let init_p2m = req
        .init_p2m
        .filter(|&at| at < base && at.is_multiple_of(PAGE));
    let p2m_mapped = match init_p2m {
        None => Some(alloc(p2m_pages)?),
        Some(_) => None,
    };
    let start_info = alloc(1)?.start;
    let store_ring = alloc(1)?.start;
    let console_ring = alloc(1)?.start;
    let virt_alloc_end = alloc(0)?.start;

    // `alloc_pgtables_pv`: the boot stack and 512 KiB past the tables, the mapping's end on a
    // 4 MiB boundary (libxc's `round_up` ORs the mask in: an end already on a boundary moves
    // to the next).
    let extra = 1 + MIN_PADDING / PAGE;
    let mut pages = extra;
    let (try_end, main) = loop {
        let want = pages
            .checked_mul(PAGE)
            .and_then(|l| virt_alloc_end.checked_add(l))
            .ok_or(ovf)?;
        let try_end = want | (BOOTSTRAP_ALIGN - 1);
        let main = count(base & VADDR_MASK, try_end & VADDR_MASK, None);
        pages = 1 + total(&main) + extra;
        let need = pages
            .checked_mul(PAGE)
            .and_then(|l| virt_alloc_end.checked_add(l))
            .ok_or(ovf)?;
        if need <= try_end.checked_add(1).ok_or(ovf)? {
            break (try_end, main);
        }
    };
    let mapped_end = try_end + 1;
    if !is_canonical_range(base, mapped_end) || touches_hypervisor_range(base, mapped_end) {
        return Err(LayoutError::BadRange {
            start: base,
            end: mapped_end,
        });
    }
    // Refused before any table is listed, so that a hostile size costs no memory.
    let too_small = |need: u64| LayoutError::TooSmall {
        need_pages: need.saturating_add(1),
        have_pages: req.nr_pages,
    };
    if (mapped_end - base) / PAGE >= req.nr_pages {
        return Err(too_small((mapped_end - base) / PAGE));
    }
    let pfn_of = |va: u64| Pfn((va - base) / PAGE);
    let tables_start = virt_alloc_end;
    let mut tables = Vec::new();
    let mut next = pfn_of(tables_start).0;
    tables.push(Table {
        level: Level::L4,
        slot: 0,
        pfn: Pfn(next),
    });
    next += 1;
    for (level, (first, last)) in LOWER.iter().zip(main) {
        for slot in first..=last {
            tables.push(Table {
                level: *level,
                slot,
                pfn: Pfn(next),
            });
            next += 1;
        }
    }
    let page_tables = Region {
        start: tables_start,
        end: tables_start + (next - pfn_of(tables_start).0) * PAGE,
    };
    let stack = Region {
        start: page_tables.end,
        end: page_tables.end + PAGE,
    };
    // Frames past the mapping.
    let mut pfn_end = (mapped_end - base) / PAGE;
    let mut ramdisk_mod_len = ramdisk_len.unwrap_or(0);
    if let (Some(len), true) = (ramdisk_len, req.mod_start_pfn) {
        let pages = pages_of(len);
        ramdisk = Some(Ramdisk::Unmapped {
            first: Pfn(pfn_end),
            pages,
        });
        ramdisk_mod_len = pages.checked_mul(PAGE).ok_or(ovf)?;
        pfn_end = pfn_end.checked_add(pages).ok_or(ovf)?;
    }
    let p2m_area = match init_p2m {
        None => None,
        Some(at) => {
            let va = Region {
                start: at,
                end: p2m_pages
                    .checked_mul(PAGE)
                    .and_then(|len| at.checked_add(len))
                    .ok_or(ovf)?,
            };
            if va.is_empty()
                || !is_canonical_range(va.start, va.end)
                || touches_hypervisor_range(va.start, va.end)
                || (va.start < mapped_end && base < va.end)
            {
                return Err(LayoutError::BadRange {
                    start: va.start,
                    end: va.end,
                });
            }
            let first = Pfn(pfn_end);
            let own = count(
                va.start & VADDR_MASK,
                (va.end - 1) & VADDR_MASK,
                Some((base & VADDR_MASK, try_end & VADDR_MASK)),
            );
            let mut t = pfn_end.checked_add(p2m_pages).ok_or(ovf)?;
            let t_end = t.checked_add(total(&own)).ok_or(ovf)?;
            if t_end >= req.nr_pages {
                return Err(too_small(t_end));
            }
            for (level, (first, last)) in LOWER.iter().zip(own) {
                for slot in first..=last {
                    tables.push(Table {
                        level: *level,
                        slot,
                        pfn: Pfn(t),
                    });
                    t += 1;
                }
            }
            let frames = t - pfn_end;
            pfn_end = t;
            Some(P2mArea { va, first, frames })
        }
    };
    // `count_pgtables` refuses a mapping whose last frame is at or past the p2m's size.
    if pfn_end >= req.nr_pages {
        return Err(too_small(pfn_end));
    }
    Ok(Layout {
        virt_base: base,
        kernel,
        ramdisk,
        ramdisk_len: ramdisk_mod_len,
        p2m_mapped,
        p2m_area,
        start_info,
        store_ring,
        console_ring,
        page_tables,
        stack,
        mapped_end,
        tables,
        nr_pages: req.nr_pages,
        used_pages: pfn_end,
    })
}

impl Layout {
    /// The frame mapped at `va` in the initial mapping (or the p2m area).
    pub fn pfn_of(&self, va: u64) -> Option<Pfn> {
        if (self.virt_base..self.mapped_end).contains(&va) {
            return Some(Pfn((va - self.virt_base) / PAGE));
        }
        let a = self.p2m_area?;
        a.va.contains(va)
            .then(|| Pfn(a.first.0 + (va - a.va.start) / PAGE))
    }

    /// The bootstrap L4's frame.
    pub fn root_table(&self) -> Pfn {
        self.tables.first().map_or(Pfn(0), |t| t.pfn)
    }

    /// `nr_pt_frames`: the tables of the initial mapping (libxc counts the first mapping's).
    pub fn nr_pt_frames(&self) -> u64 {
        self.page_tables.pages()
    }

    /// The p2m list's first virtual address (`mfn_list`) and its first frame.
    pub fn p2m(&self) -> (u64, Pfn) {
        match (self.p2m_area, self.p2m_mapped) {
            (Some(a), _) => (a.va.start, a.first),
            (None, Some(r)) => (r.start, Pfn((r.start - self.virt_base) / PAGE)),
            (None, None) => (0, Pfn(0)),
        }
    }

    /// Whether frame `pfn` holds a bootstrap page table (mapped read-only).
    fn is_table(&self, pfn: Pfn) -> bool {
        self.tables.iter().any(|t| t.pfn == pfn)
    }

    /// The frame mapped at masked address `va` by the leaves, if any.
    fn leaf(&self, masked: u64) -> Option<Pfn> {
        // Back to a canonical address: sign-extend bit 47.
        let va = if masked & (1 << 47) != 0 {
            masked | !VADDR_MASK
        } else {
            masked
        };
        self.pfn_of(va)
    }

    /// Every bootstrap page table with its 512 entries, in the order of [`Layout::tables`],
    /// as libxc's `setup_pgtables_pv` fills them: upper levels present, writable,
    /// user-accessible, accessed and dirty; leaves present, accessed, writable except over the
    /// page tables themselves.
    pub fn table_images<'a, P: P2m + ?Sized>(
        &'a self,
        p2m: &'a P,
    ) -> impl Iterator<Item = Result<TableImage, BootError>> + 'a {
        let by_slot: BTreeMap<(u8, u64), Pfn> = self
            .tables
            .iter()
            .map(|t| ((level_no(t.level), t.slot), t.pfn))
            .collect();
        let mfn = move |pfn: Pfn| p2m.mfn(pfn).ok_or(BootError::BeyondMemory(pfn));
        self.tables.iter().map(move |t| {
            let mut entries = [0u64; ENTRIES];
            for (i, e) in entries.iter_mut().enumerate() {
                let child_slot = (t.slot << 9) | i as u64;
                *e = match t.level {
                    Level::L1 => {
                        let va = (child_slot << 12) & VADDR_MASK;
                        match self.leaf(va) {
                            Some(pfn) => {
                                let rw = if self.is_table(pfn) { 0 } else { pte::RW };
                                mfn(pfn)?.addr() | pte::PRESENT | pte::ACCESSED | rw
                            }
                            None => 0,
                        }
                    }
                    level => match by_slot.get(&(level_no(level) - 1, child_slot)) {
                        Some(&child) => {
                            mfn(child)?.addr() | pte::TABLE | pte::ACCESSED | pte::DIRTY
                        }
                        None => 0,
                    },
                };
            }
            Ok(TableImage {
                level: t.level,
                pfn: t.pfn,
                mfn: mfn(t.pfn)?,
                entries,
            })
        })
    }

    /// `start_info` as libxc's `start_info_x86_64` fills it: `nr_pages`, `shared_info` (the
    /// frame's machine address), `pt_base`, `nr_pt_frames`, `mfn_list`, with `INIT_P2M`
    /// `first_p2m_pfn` and `nr_p2m_frames`, `SIF_MOD_START_PFN` for a ramdisk given by frame,
    /// the store's and the console's frames and channels, the ramdisk and the command line.
    /// Returns it with how many bytes of `cmdline` fit.
    pub fn start_info(
        &self,
        shared_info: Mfn,
        store: (Mfn, u32),
        console: (Mfn, u32),
        cmdline: &[u8],
    ) -> (StartInfo, usize) {
        let mut si = StartInfo::new();
        si.nr_pages = self.nr_pages;
        si.shared_info = shared_info.addr();
        si.pt_base = self.page_tables.start;
        si.nr_pt_frames = self.nr_pt_frames();
        si.mfn_list = self.p2m().0;
        if let Some(a) = self.p2m_area {
            si.first_p2m_pfn = a.first;
            si.nr_p2m_frames = a.frames;
        }
        si.store_mfn = store.0;
        si.store_evtchn = store.1;
        si.console = StartInfoConsole::domu(console.0, console.1);
        match self.ramdisk {
            Some(Ramdisk::Mapped(r)) => {
                si.mod_start = r.start;
                si.mod_len = self.ramdisk_len;
            }
            Some(Ramdisk::Unmapped { first, .. }) => {
                si.flags |= SIF_MOD_START_PFN;
                si.mod_start = first.0;
                si.mod_len = self.ramdisk_len;
            }
            None => {}
        }
        let copied = si.set_cmdline(cmdline);
        (si, copied)
    }

    /// vCPU 0's context at entry ([`entry_context`]).
    pub fn initial_context(&self, entry: u64, l4: Mfn) -> VcpuGuestContext {
        entry_context(entry, self.stack.end, self.start_info, l4)
    }
}

const fn level_no(level: Level) -> u8 {
    match level {
        Level::L1 => 1,
        Level::L2 => 2,
        Level::L3 => 3,
        Level::L4 => 4,
    }
}

/// Xen's `FLAT_KERNEL_CS64` (`FLAT_RING3_CS64`, `xen-x86_64.h`).
pub const FLAT_KERNEL_CS64: u64 = 0xe033;
/// Xen's `FLAT_KERNEL_SS64` (`FLAT_RING3_SS64`).
pub const FLAT_KERNEL_SS64: u64 = 0xe02b;
/// Xen's `FLAT_KERNEL_DS64` (`FLAT_RING3_DS64`): the null selector.
pub const FLAT_KERNEL_DS64: u64 = 0;

// ---- Xen PV vCPU context: the one place the builder decides vCPU 0's registers for a
// ---- Xen PV kernel (the hypervisor's Xen PV mode installs it). Keep it small.
/// vCPU 0's context at a Xen PV kernel's entry, as libxc's `vcpu_x86_64`: `rip` the entry,
/// `rsp` and `kernel_sp` the top of the boot stack, `rsi` the `start_info` address, `IF` set,
/// Xen's flat ring-3 kernel selectors (`ds`, `es`, `fs`, `gs` null), `kernel_ss`, kernel mode
/// and online, the bootstrap L4 in `ctrlreg[3]`.
pub fn entry_context(entry: u64, stack_top: u64, start_info: u64, l4: Mfn) -> VcpuGuestContext {
    let mut ctx = VcpuGuestContext::new();
    ctx.flags = VGCF_IN_KERNEL | VGCF_ONLINE;
    let regs = &mut ctx.user_regs;
    regs.rip = entry;
    regs.rsp = stack_top;
    regs.rsi = start_info;
    regs.rflags = RFLAGS_IF | RFLAGS_FIXED;
    regs.cs = FLAT_KERNEL_CS64 as _;
    regs.ss = FLAT_KERNEL_SS64 as _;
    regs.ds = FLAT_KERNEL_DS64 as _;
    regs.es = FLAT_KERNEL_DS64 as _;
    regs.fs = FLAT_KERNEL_DS64 as _;
    regs.gs = FLAT_KERNEL_DS64 as _;
    regs.saved_upcall_mask = 1;
    ctx.kernel_ss = FLAT_KERNEL_SS64;
    ctx.kernel_sp = stack_top;
    ctx.set_l4_mfn(l4);
    ctx
}
// ---- end of the Xen PV vCPU context.

/// `PAGE_SIZE` as a `u64`, for tests and callers.
pub const PAGE_BYTES: u64 = PAGE_SIZE as u64;

#[cfg(test)]
mod tests;
