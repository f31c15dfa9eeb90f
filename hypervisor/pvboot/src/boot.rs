//! What a builder writes into a new domain at start of day, planned in one place for both
//! builders: the bootstrap page tables (which frame holds which table, and every entry's
//! value), the `start_info` page and vCPU 0's initial context.
//!
//! [`crate::layout::plan`] says where things go in the guest's virtual address space; this
//! module turns that layout and the machine frames the builder obtained (the p2m list and the
//! `shared_info` frame, [`Frames`]) into bytes and registers. The builders only copy the
//! result through their own access to the domain's memory: the hypervisor, building dom0,
//! through its direct map; the toolstack, building a domU, through `XEN_DOMCTL_XENIA_WRITE_FRAME`
//! and `setvcpucontext`. Neither builder holds a rule of its own about what the entries, the
//! `start_info` fields or the entry registers contain.
//!
//! The rules (guest-abi's porting guide, "Start-of-day memory" and "Entry state"):
//!
//! - upper-level entries ([`pte::TABLE`]) are present, writable and user-accessible: the
//!   leaves decide;
//! - the page tables themselves are mapped read-only (they are pinned, so they cannot be
//!   writable);
//! - everything up to the end of the bootstrap stack is supervisor-only; the padding after
//!   it is user-accessible, so a kernel can run ring-3 code before it has tables of its own;
//! - the `shared_info` page maps the hypervisor-owned `shared_info` frame, writable and
//!   supervisor-only;
//! - nothing is mapped executable-disabled (no [`pte::NX`]), global or with cache attributes.
//!
//! Pure and host-tested like the rest of the crate: no memory is touched, every lookup of a
//! frame is checked.

use alloc::vec;
use alloc::vec::Vec;
use core::fmt;
use core::mem::offset_of;

use guest_abi::pte;
use guest_abi::selectors::{KERNEL_CS, KERNEL_DS, KERNEL_SS};
use guest_abi::start_info::{StartInfo, StartInfoConsole};
use guest_abi::trap::RFLAGS_IF;
use guest_abi::types::{Mfn, PAGE_SIZE, Pfn};
use guest_abi::vcpu_context::{VGCF_IN_KERNEL, VGCF_ONLINE, VcpuGuestContext};

use crate::layout::{Level, PAGE, StartOfDay, TableEntry, Target};

/// Entries in a page table of any level (Intel SDM Vol. 3A §4.5: 512 eight-byte entries).
pub const ENTRIES: usize = 512;

/// `rflags` bit 1, reserved and always 1 (Intel SDM Vol. 1 §3.4.3, Figure 3-8).
pub const RFLAGS_FIXED: u64 = 1 << 1;

/// A builder's p2m list: the machine frame behind each pseudo-physical frame of the new
/// domain. A slice of [`Mfn`]s is one; a builder that keeps frame numbers in a type of its
/// own implements it over that.
pub trait P2m {
    /// The machine frame behind `pfn`, if the domain has that frame.
    fn mfn(&self, pfn: Pfn) -> Option<Mfn>;
}

impl P2m for [Mfn] {
    fn mfn(&self, pfn: Pfn) -> Option<Mfn> {
        usize::try_from(pfn.0)
            .ok()
            .and_then(|i| self.get(i).copied())
    }
}

/// The machine frames a builder obtained for the new domain.
#[derive(Debug)]
pub struct Frames<'a, P: P2m + ?Sized = [Mfn]> {
    /// The p2m list: entry `pfn` is the machine frame behind pseudo-physical frame `pfn`.
    pub p2m: &'a P,
    /// The hypervisor-owned `shared_info` frame.
    pub shared_info: Mfn,
}

impl<P: P2m + ?Sized> Clone for Frames<'_, P> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<P: P2m + ?Sized> Copy for Frames<'_, P> {}

impl<P: P2m + ?Sized> Frames<'_, P> {
    /// The machine frame behind `pfn`.
    pub fn mfn(&self, pfn: Pfn) -> Result<Mfn, BootError> {
        self.p2m.mfn(pfn).ok_or(BootError::BeyondMemory(pfn))
    }
}

/// Why a start-of-day plan cannot be made from a layout and frames. Both are a builder's
/// bug, never the guest's: a layout from [`crate::layout::plan`] and a p2m list of
/// `nr_pages` frames never produce them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BootError {
    /// The layout names a pseudo-physical frame the p2m list does not have.
    BeyondMemory(Pfn),
    /// The layout names an entry index past the end of a table.
    BadIndex(usize),
}

impl fmt::Display for BootError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            BootError::BeyondMemory(pfn) => write!(
                f,
                "the layout names pfn {:#x}, beyond the domain's memory",
                pfn.0
            ),
            BootError::BadIndex(i) => write!(f, "the layout names page-table entry {i}"),
        }
    }
}

/// The flags of a leaf (L1) entry that maps the page at `va` of the bootstrap region.
fn leaf_flags(sod: &StartOfDay, va: u64, writable: bool) -> u64 {
    let rw = if writable { pte::RW } else { 0 };
    let user = if va >= sod.stack.end { pte::USER } else { 0 };
    pte::PRESENT | rw | user
}

/// The value of bootstrap page-table entry `e` of layout `sod`.
pub fn entry_value<P: P2m + ?Sized>(
    sod: &StartOfDay,
    e: &TableEntry,
    frames: &Frames<'_, P>,
) -> Result<u64, BootError> {
    Ok(match e.target {
        Target::Table(child) => frames.mfn(child)?.addr() | pte::TABLE,
        Target::SharedInfo => frames.shared_info.addr() | pte::PRESENT | pte::RW,
        Target::Page { pfn, writable } => {
            let va = sod.virt_start().wrapping_add(pfn.0.wrapping_mul(PAGE));
            frames.mfn(pfn)?.addr() | leaf_flags(sod, va, writable)
        }
    })
}

/// One bootstrap page table as it must be written: which frame holds it and all 512 entries
/// (those the layout does not list are zero, not present).
#[derive(Clone, PartialEq, Eq)]
pub struct TableImage {
    /// Its level.
    pub level: Level,
    /// The pseudo-physical frame that holds it.
    pub pfn: Pfn,
    /// The machine frame that holds it.
    pub mfn: Mfn,
    /// Its entries.
    pub entries: [u64; ENTRIES],
}

impl TableImage {
    /// The table's bytes (little-endian entries), for a builder that copies whole frames.
    pub fn to_bytes(&self) -> [u8; PAGE_SIZE] {
        let mut out = [0u8; PAGE_SIZE];
        for (chunk, e) in out.chunks_exact_mut(8).zip(&self.entries) {
            chunk.copy_from_slice(&e.to_le_bytes());
        }
        out
    }
}

impl fmt::Debug for TableImage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let used = self.entries.iter().filter(|e| **e != 0).count();
        f.debug_struct("TableImage")
            .field("level", &self.level)
            .field("pfn", &self.pfn)
            .field("mfn", &self.mfn)
            .field("present_entries", &used)
            .finish()
    }
}

/// The bootstrap page tables of `sod`, one [`TableImage`] at a time, in frame order (the L4,
/// then the L3s, L2s and L1s): what both builders write. One table is built at a time, so
/// the plan needs no memory proportional to the domain's size.
pub fn page_tables<'a, P: P2m + ?Sized>(
    sod: &'a StartOfDay,
    frames: Frames<'a, P>,
) -> impl Iterator<Item = Result<TableImage, BootError>> + 'a {
    // `table_entries` lists the entries of one table together (each level in address order,
    // and a table's entries are a contiguous run of slots), so tables are cut where the
    // table frame changes.
    let mut entries = sod.table_entries().peekable();
    core::iter::from_fn(move || {
        let first = entries.next()?;
        let mut image = TableImage {
            level: first.level,
            pfn: first.table,
            mfn: match frames.mfn(first.table) {
                Ok(m) => m,
                Err(e) => return Some(Err(e)),
            },
            entries: [0; ENTRIES],
        };
        let mut next = Some(first);
        while let Some(e) = next {
            let result = entry_value(sod, &e, &frames).and_then(|value| {
                let slot = image
                    .entries
                    .get_mut(e.index)
                    .ok_or(BootError::BadIndex(e.index))?;
                *slot = value;
                Ok(())
            });
            if let Err(err) = result {
                return Some(Err(err));
            }
            next = entries.next_if(|n| n.table == image.pfn);
        }
        Some(Ok(image))
    })
}

/// The frame of the bootstrap L4 (the `cr3` at entry, and the frame the builder pins).
pub fn root_table<P: P2m + ?Sized>(
    sod: &StartOfDay,
    frames: &Frames<'_, P>,
) -> Result<Mfn, BootError> {
    frames.mfn(sod.root_table())
}

/// The `start_info` of a domain built with layout `sod`: `nr_pages`, the `shared_info`
/// frame's machine address, `flags` (`SIF_PRIVILEGED | SIF_INITDOMAIN` for dom0, 0 for a
/// domU), the console (zero for dom0, the ring's frame and channel for a domU), `pt_base`,
/// `nr_pt_frames`, `mfn_list`, the initrd (`mod_start`, `mod_len` in bytes) and the command
/// line. Returns it with how many bytes of `cmdline` fit (the rest is cut; the builder says
/// so).
pub fn start_info(
    sod: &StartOfDay,
    shared_info: Mfn,
    flags: u32,
    console: StartInfoConsole,
    cmdline: &[u8],
) -> (StartInfo, usize) {
    let mut si = StartInfo::new();
    si.nr_pages = sod.nr_pages;
    si.shared_info = shared_info.addr();
    si.flags = flags;
    si.console = console;
    si.pt_base = sod.page_tables.start;
    si.nr_pt_frames = sod.table_counts.total();
    si.mfn_list = sod.p2m.start;
    if let Some(initrd) = sod.initrd {
        si.mod_start = initrd.start;
        si.mod_len = sod.initrd_len;
    }
    let copied = si.set_cmdline(cmdline);
    (si, copied)
}

/// The bytes of a `start_info` structure (Xen's layout, little-endian), for copying into the
/// guest's `start_info` page (the rest of the page stays zero).
pub fn start_info_bytes(si: &StartInfo) -> Vec<u8> {
    // Destructured so that a field added to `StartInfo` fails to compile here instead of
    // being left out of the page.
    let StartInfo {
        magic,
        nr_pages,
        shared_info,
        flags,
        store_mfn,
        store_evtchn,
        console,
        pt_base,
        nr_pt_frames,
        mfn_list,
        mod_start,
        mod_len,
        cmd_line,
        first_p2m_pfn,
        nr_p2m_frames,
    } = si;
    let mut out = vec![0u8; core::mem::size_of::<StartInfo>()];
    let mut put = |offset: usize, bytes: &[u8]| {
        out[offset..offset + bytes.len()].copy_from_slice(bytes);
    };
    put(offset_of!(StartInfo, magic), magic);
    put(offset_of!(StartInfo, nr_pages), &nr_pages.to_le_bytes());
    put(
        offset_of!(StartInfo, shared_info),
        &shared_info.to_le_bytes(),
    );
    put(offset_of!(StartInfo, flags), &flags.to_le_bytes());
    put(offset_of!(StartInfo, store_mfn), &store_mfn.0.to_le_bytes());
    put(
        offset_of!(StartInfo, store_evtchn),
        &store_evtchn.to_le_bytes(),
    );
    let console_at = offset_of!(StartInfo, console);
    put(console_at, &console.raw[0].to_le_bytes());
    put(console_at + 8, &console.raw[1].to_le_bytes());
    put(offset_of!(StartInfo, pt_base), &pt_base.to_le_bytes());
    put(
        offset_of!(StartInfo, nr_pt_frames),
        &nr_pt_frames.to_le_bytes(),
    );
    put(offset_of!(StartInfo, mfn_list), &mfn_list.to_le_bytes());
    put(offset_of!(StartInfo, mod_start), &mod_start.to_le_bytes());
    put(offset_of!(StartInfo, mod_len), &mod_len.to_le_bytes());
    put(offset_of!(StartInfo, cmd_line), cmd_line);
    put(
        offset_of!(StartInfo, first_p2m_pfn),
        &first_p2m_pfn.0.to_le_bytes(),
    );
    put(
        offset_of!(StartInfo, nr_p2m_frames),
        &nr_p2m_frames.to_le_bytes(),
    );
    out
}

/// vCPU 0's context at start of day, the entry state of guest-abi's porting guide: kernel
/// mode, online, `rip` the entry point, `rsp` the top of the bootstrap stack, `rsi` the
/// `start_info` address, every other register 0, the ring-1 selectors, `IF` set (the real
/// one; events stay masked: `saved_upcall_mask` 1, and the builder sets
/// `vcpu_info.evtchn_upcall_mask`), the bootstrap L4 `l4` in `ctrlreg[3]`, and no trap
/// table, callbacks or ring-1 stack yet.
///
/// The toolstack hands this to `setvcpucontext`; the hypervisor, building dom0, installs
/// the same registers in vCPU 0 directly.
pub fn initial_context(entry: u64, sod: &StartOfDay, l4: Mfn) -> VcpuGuestContext {
    let mut ctx = VcpuGuestContext::new();
    ctx.flags = VGCF_IN_KERNEL | VGCF_ONLINE;
    let regs = &mut ctx.user_regs;
    regs.rip = entry;
    regs.rsp = sod.stack_top();
    regs.rsi = sod.start_info;
    regs.cs = KERNEL_CS;
    regs.ss = KERNEL_SS;
    regs.ds = KERNEL_DS;
    regs.es = KERNEL_DS;
    regs.rflags = RFLAGS_IF | RFLAGS_FIXED;
    regs.saved_upcall_mask = 1;
    ctx.set_l4_mfn(l4);
    ctx
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layout::{DOMU_EXTRA_PAGES, plan};
    use alloc::collections::BTreeMap;
    use guest_abi::start_info::{SIF_INITDOMAIN, SIF_PRIVILEGED, START_INFO_MAGIC};

    const LINUX: u64 = 0xFFFF_FFFF_8000_0000;
    const MIB: u64 = 1 << 20;

    /// Machine frames for a domain of `n` pages: deliberately not contiguous, nor in order.
    fn p2m(n: u64) -> Vec<Mfn> {
        (0..n)
            .map(|i| Mfn(0x10_0000 + (i * 7919) % (4 * n)))
            .collect()
    }

    const SHARED: Mfn = Mfn(0xBEEF);

    /// Every table, keyed by machine frame.
    fn tables(sod: &StartOfDay, p2m: &[Mfn]) -> BTreeMap<Mfn, TableImage> {
        let frames = Frames {
            p2m,
            shared_info: SHARED,
        };
        let mut out = BTreeMap::new();
        for t in page_tables(sod, frames) {
            let t = t.unwrap();
            assert_eq!(frames.mfn(t.pfn), Ok(t.mfn));
            let old = out.insert(t.mfn, t);
            assert!(old.is_none(), "a table planned twice");
        }
        out
    }

    /// Walks the planned tables for `va` as the MMU would: the leaf entry, and the flags
    /// that hold at every level (Intel SDM Vol. 3A §4.6: a page is writable or
    /// user-accessible only if every level says so).
    fn walk(tables: &BTreeMap<Mfn, TableImage>, root: Mfn, va: u64) -> Option<(u64, u64)> {
        let mut table = root;
        let mut all = pte::RW | pte::USER;
        for level in [Level::L4, Level::L3, Level::L2, Level::L1] {
            let t = tables.get(&table)?;
            assert_eq!(t.level, level);
            let e = t.entries[((va >> level.entry_shift()) % 512) as usize];
            if !pte::is_present(e) {
                return None;
            }
            all &= e;
            if level == Level::L1 {
                return Some((e, all));
            }
            table = pte::frame(e);
        }
        None
    }

    fn check(sod: &StartOfDay, p2m: &[Mfn]) {
        let t = tables(sod, p2m);
        assert_eq!(t.len() as u64, sod.table_counts.total());
        let frames = Frames {
            p2m,
            shared_info: SHARED,
        };
        let root = root_table(sod, &frames).unwrap();
        assert_eq!(t[&root].level, Level::L4);
        let table_frames: Vec<Mfn> = (0..sod.page_tables.pages())
            .map(|i| p2m[(sod.pfn_of(sod.page_tables.start).unwrap().0 + i) as usize])
            .collect();
        for m in &table_frames {
            assert!(t.contains_key(m), "every table frame holds a table");
        }
        let mut va = sod.virt_start();
        while va < sod.mapped_end {
            let (leaf, all) = walk(&t, root, va).unwrap_or_else(|| panic!("{va:#x} unmapped"));
            let want_frame = if va == sod.shared_info {
                SHARED
            } else {
                p2m[sod.pfn_of(va).unwrap().0 as usize]
            };
            assert_eq!(pte::frame(leaf), want_frame, "{va:#x}");
            assert_eq!(
                all & pte::RW != 0,
                !sod.page_tables.contains(va),
                "only the tables are read-only: {va:#x}"
            );
            assert_eq!(
                all & pte::USER != 0,
                va >= sod.stack.end,
                "only the padding is user-accessible: {va:#x}"
            );
            let forbidden = pte::NX | pte::GLOBAL | pte::PWT | pte::PCD | pte::PAT;
            assert_eq!(leaf & forbidden, 0);
            va += PAGE;
        }
        assert!(walk(&t, root, sod.virt_start() - PAGE).is_none());
        assert!(walk(&t, root, sod.mapped_end).is_none());
    }

    #[test]
    fn tables_map_the_region_as_the_guide_says() {
        for (kernel, mem, initrd, extra) in [
            (LINUX + 0x100_0000..LINUX + 0x1A3_4567, 64 * MIB, None, 0),
            (
                0x40_0000..0x52_0000,
                32 * MIB,
                Some(3 * MIB + 1),
                DOMU_EXTRA_PAGES,
            ),
            ((1 << 30) - 2 * MIB..(1 << 30) + MIB, 16 * MIB, Some(1), 2),
        ] {
            let sod = plan(kernel, mem / PAGE, initrd, extra).unwrap();
            check(&sod, &p2m(sod.nr_pages));
        }
    }

    /// The two builders' input differs only in the extra pages (and flags, console, command
    /// line); with the same input they get the same plan, byte for byte, and a domU's extra
    /// pages only move the tables, the stack and nothing before them.
    #[test]
    fn both_builders_get_the_same_plan() {
        let kernel = LINUX + 0x100_0000..LINUX + 0x123_4567;
        let nr = 16 * MIB / PAGE;
        let mfns = p2m(nr);
        let frames = Frames {
            p2m: mfns.as_slice(),
            shared_info: SHARED,
        };
        let a = plan(kernel.clone(), nr, Some(12345), DOMU_EXTRA_PAGES).unwrap();
        let b = plan(kernel.clone(), nr, Some(12345), DOMU_EXTRA_PAGES).unwrap();
        assert_eq!(a, b);
        let ta: Vec<_> = page_tables(&a, frames).map(Result::unwrap).collect();
        let tb: Vec<_> = page_tables(&b, frames).map(Result::unwrap).collect();
        assert_eq!(ta, tb);
        assert_eq!(
            initial_context(0x1234, &a, ta[0].mfn),
            initial_context(0x1234, &b, tb[0].mfn)
        );

        let dom0 = plan(kernel, nr, Some(12345), 0).unwrap();
        assert_eq!(dom0.start_info, a.start_info);
        assert_eq!(dom0.table_counts, a.table_counts);
        assert_eq!(
            a.page_tables.start,
            dom0.page_tables.start + DOMU_EXTRA_PAGES * PAGE
        );
        let t0: Vec<_> = page_tables(&dom0, frames).map(Result::unwrap).collect();
        assert_eq!(t0.len(), ta.len());
        // Same L4 slot use, and the same leaves for everything before the extra pages.
        let leaves = |t: &[TableImage], sod: &StartOfDay| {
            let map: BTreeMap<Mfn, TableImage> = t.iter().map(|i| (i.mfn, i.clone())).collect();
            let root = root_table(sod, &frames).unwrap();
            let mut out = Vec::new();
            let mut va = sod.virt_start();
            while va < sod.extra.start {
                out.push(walk(&map, root, va).unwrap());
                va += PAGE;
            }
            out
        };
        assert_eq!(leaves(&t0, &dom0), leaves(&ta, &a));
    }

    #[test]
    fn a_short_p2m_is_an_error_not_a_panic() {
        let sod = plan(0x40_0000..0x50_0000, 4096, None, 0).unwrap();
        let mfns = p2m(sod.mapped_pages() - 1);
        let frames = Frames {
            p2m: mfns.as_slice(),
            shared_info: SHARED,
        };
        let results: Vec<_> = page_tables(&sod, frames).collect();
        assert!(
            results
                .iter()
                .any(|r| matches!(r, Err(BootError::BeyondMemory(_))))
        );
        let empty = Frames {
            p2m: &[] as &[Mfn],
            shared_info: SHARED,
        };
        assert_eq!(
            root_table(&sod, &empty),
            Err(BootError::BeyondMemory(sod.root_table()))
        );
        assert_eq!(
            page_tables(&sod, empty).next(),
            Some(Err(BootError::BeyondMemory(sod.root_table())))
        );
    }

    #[test]
    fn start_info_says_where_everything_is() {
        let sod = plan(LINUX..LINUX + 3 * MIB, 8192, Some(5000), 0).unwrap();
        let (si, copied) = start_info(
            &sod,
            SHARED,
            SIF_PRIVILEGED | SIF_INITDOMAIN,
            StartInfoConsole::default(),
            b"loglvl=all",
        );
        assert_eq!(copied, 10);
        assert!(si.magic_is_valid());
        assert_eq!(si.nr_pages, 8192);
        assert_eq!(si.shared_info, SHARED.addr());
        assert_eq!(si.pt_base, sod.page_tables.start);
        assert_eq!(si.nr_pt_frames, sod.table_counts.total());
        assert_eq!(si.mfn_list, sod.p2m.start);
        assert_eq!(si.mod_start, sod.initrd.unwrap().start);
        assert_eq!(si.mod_len, 5000, "the initrd's length in bytes");
        assert_eq!(si.cmdline_bytes(), b"loglvl=all");
        assert_eq!(StartInfo::shared_info_va(sod.start_info), sod.shared_info);
        assert_eq!(si.padding_start(), sod.stack.end);
        assert_eq!(si.padding_end(), sod.mapped_end);
        let (cut, copied) = start_info(&sod, SHARED, 0, StartInfoConsole::default(), &[b'x'; 2000]);
        assert!(copied < 2000 && cut.cmdline_bytes().len() == copied);
    }

    fn u64_at(bytes: &[u8], off: usize) -> u64 {
        let mut raw = [0u8; 8];
        raw.copy_from_slice(&bytes[off..off + 8]);
        u64::from_le_bytes(raw)
    }

    #[test]
    fn start_info_bytes_use_xens_offsets() {
        let mut si = StartInfo::new();
        si.nr_pages = 0x4000;
        si.shared_info = 0x1234_5000;
        si.flags = 0xA5;
        si.console = StartInfoConsole::domu(Mfn(0x777), 5);
        si.pt_base = 0xFFFF_FFFF_8040_0000;
        si.nr_pt_frames = 7;
        si.mfn_list = 0xFFFF_FFFF_8030_0000;
        si.mod_start = 0xFFFF_FFFF_8020_0000;
        si.mod_len = 12345;
        si.set_cmdline(b"console=hvc0");
        let b = start_info_bytes(&si);
        assert_eq!(b.len(), 1168);
        assert_eq!(&b[..START_INFO_MAGIC.len()], START_INFO_MAGIC);
        assert_eq!(u64_at(&b, 32), 0x4000);
        assert_eq!(u64_at(&b, 40), 0x1234_5000);
        assert_eq!(b[48], 0xA5);
        assert_eq!(u64_at(&b, 56), 0, "no xenstore");
        assert_eq!(u64_at(&b, 72), 0x777);
        assert_eq!(u64_at(&b, 80), 5);
        assert_eq!(u64_at(&b, 88), 0xFFFF_FFFF_8040_0000);
        assert_eq!(u64_at(&b, 96), 7);
        assert_eq!(u64_at(&b, 104), 0xFFFF_FFFF_8030_0000);
        assert_eq!(u64_at(&b, 112), 0xFFFF_FFFF_8020_0000);
        assert_eq!(u64_at(&b, 120), 12345);
        assert_eq!(&b[128..141], b"console=hvc0\0");
        assert_eq!(u64_at(&b, 1152), 0);
    }

    #[test]
    fn initial_context_is_the_guides_entry_state() {
        let sod = plan(LINUX..LINUX + MIB, 4096, None, 0).unwrap();
        let ctx = initial_context(LINUX + 0x40, &sod, Mfn(0x99));
        let r = &ctx.user_regs;
        assert_eq!(
            (r.rip, r.rsp, r.rsi),
            (LINUX + 0x40, sod.stack.end, sod.start_info)
        );
        assert_eq!(
            (r.cs, r.ss, r.ds, r.es),
            (KERNEL_CS, KERNEL_SS, KERNEL_DS, KERNEL_DS)
        );
        assert_eq!(r.rflags, RFLAGS_IF | RFLAGS_FIXED);
        assert_eq!(r.saved_upcall_mask, 1, "events masked");
        assert_eq!((r.rax, r.rdi, r.rbx, r.rbp), (0, 0, 0, 0));
        assert_eq!(ctx.flags, VGCF_IN_KERNEL | VGCF_ONLINE);
        assert_eq!(ctx.l4_mfn(), Mfn(0x99));
        assert_eq!((ctx.event_callback_eip, ctx.kernel_sp), (0, 0));
    }

    #[test]
    fn table_bytes_are_little_endian_entries() {
        let mut t = TableImage {
            level: Level::L1,
            pfn: Pfn(1),
            mfn: Mfn(2),
            entries: [0; ENTRIES],
        };
        t.entries[1] = 0x8000_0000_0000_1003;
        let b = t.to_bytes();
        assert_eq!(u64_at(&b, 8), 0x8000_0000_0000_1003);
        assert!(b[..8].iter().chain(&b[16..]).all(|x| *x == 0));
    }
}
