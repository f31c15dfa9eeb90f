//! `start_info`: what the domain builder tells a kernel at its first
//! instruction.
//!
//! The builder (the hypervisor for dom0, the toolstack for domUs) writes this
//! page before the guest runs and never touches it again; `rsi` holds its
//! virtual address at entry. The layout is Xen's `struct start_info` for
//! x86-64 (1168 bytes). The page is the guest's: it may reuse it once it has
//! read what it needs.

use crate::types::{Mfn, Pfn};

/// Magic string at the start of [`StartInfo::magic`]. Xenia keeps Xen's format
/// `xen-<version>-<platform>` and Xen's value, so a ported kernel's check
/// passes unchanged; the hypervisor identifies itself through `xen_version`.
pub const START_INFO_MAGIC: &[u8] = b"xen-3.0-x86_64";

/// Size of [`StartInfo::cmd_line`], terminating NUL included.
pub const MAX_GUEST_CMDLINE: usize = 1024;

/// Least size of the start-of-day padding after the bootstrap stack (see the
/// [porting guide](crate#start-of-day-memory)).
pub const BOOTSTRAP_PADDING_MIN: u64 = 512 * 1024;

/// The bootstrap mappings end on a multiple of this (4 MiB), so the padding
/// runs from [`StartInfo::padding_start`] to the next such boundary that
/// leaves at least [`BOOTSTRAP_PADDING_MIN`] bytes.
pub const BOOTSTRAP_REGION_ALIGN: u64 = 4 << 20;

/// Flag: the domain is privileged (it may use `domctl`, `sysctl` and
/// privileged sub-operations).
pub const SIF_PRIVILEGED: u32 = 1 << 0;
/// Flag: the domain is the initial control domain (dom0).
pub const SIF_INITDOMAIN: u32 = 1 << 1;
/// Flag: the module at `mod_start` is a package of multiboot modules.
pub const SIF_MULTIBOOT_MOD: u32 = 1 << 2;
/// Flag: `mod_start` is a PFN rather than a virtual address.
pub const SIF_MOD_START_PFN: u32 = 1 << 3;
/// Flag: the tools understand a virtually mapped p2m list.
pub const SIF_VIRT_P2M_4TOOLS: u32 = 1 << 4;
/// Bits reserved for power-management options.
pub const SIF_PM_MASK: u32 = 0xFF << 8;

/// The start-of-day information page (Xen's `struct start_info`, x86-64).
///
/// Every field is written by the domain builder before the guest's first
/// instruction and is read-only in spirit afterwards. Addresses called
/// *virtual* are in the bootstrap address space the guest starts in.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[repr(C)]
pub struct StartInfo {
    /// [`START_INFO_MAGIC`], NUL-padded.
    pub magic: [u8; 32],
    /// Number of pages allocated to the domain (the length of the p2m list).
    pub nr_pages: u64,
    /// Machine address of the `shared_info` page. The bootstrap mappings
    /// already map it read-write at [`StartInfo::shared_info_va`] (this
    /// page's virtual address plus one page, a Xenia addition); a kernel that
    /// builds its own page tables maps it from this address.
    pub shared_info: u64,
    /// `SIF_*` flags.
    pub flags: u32,
    /// Machine frame of the xenstore ring ([`crate::xenstore`]): for a domU
    /// built by dom0's toolstack, the page mapped at
    /// [`store_ring_va`](crate::xenstore::store_ring_va); zero for dom0 and for
    /// a domain built without a store.
    pub store_mfn: Mfn,
    /// The domain's end of the xenstore ring's event channel (dom0 binds the
    /// other end); zero without a store.
    pub store_evtchn: u32,
    /// Console information; which half applies depends on
    /// [`SIF_INITDOMAIN`].
    pub console: StartInfoConsole,
    /// Virtual address of the bootstrap top-level page table (the L4 that CR3
    /// holds at entry). It is pinned, and mapped read-only like every
    /// bootstrap page-table frame.
    pub pt_base: u64,
    /// Number of bootstrap page-table frames, starting at `pt_base`.
    pub nr_pt_frames: u64,
    /// Virtual address of the p2m list: `nr_pages` machine frame numbers,
    /// one `u64` per pseudo-physical frame.
    pub mfn_list: u64,
    /// Virtual address of the initial ramdisk, or its first PFN when
    /// [`SIF_MOD_START_PFN`] is set; 0 if there is none.
    pub mod_start: u64,
    /// Length of the initial ramdisk in bytes; 0 if there is none.
    pub mod_len: u64,
    /// Kernel command line, NUL-terminated.
    pub cmd_line: [u8; MAX_GUEST_CMDLINE],
    /// First PFN of the frames holding the initial p2m list and page tables
    /// when the builder placed them outside the bootstrap region
    /// (`XEN_ELFNOTE_INIT_P2M`); 0 otherwise.
    pub first_p2m_pfn: Pfn,
    /// Number of frames starting at `first_p2m_pfn`; 0 if unused.
    pub nr_p2m_frames: u64,
}

/// The console part of [`StartInfo`]: a union in Xen, two 64-bit words here.
///
/// For a domU the first word is the machine frame of the console ring and the
/// low half of the second word its event channel. For dom0 the first word
/// holds the offset (low half) and size (high half) of a video console
/// description within the `start_info` page; Xenia's dom0 uses the serial
/// console through `console_io` and gets zeros. Fields are read little-endian,
/// as on x86-64.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
#[repr(C)]
pub struct StartInfoConsole {
    /// The raw union words.
    pub raw: [u64; 2],
}

impl StartInfoConsole {
    /// A domU console: ring frame and event channel.
    pub const fn domu(mfn: Mfn, evtchn: u32) -> Self {
        Self {
            raw: [mfn.0, evtchn as u64],
        }
    }

    /// A dom0 console description: offset and size within `start_info`.
    pub const fn dom0(info_off: u32, info_size: u32) -> Self {
        Self {
            raw: [(info_size as u64) << 32 | info_off as u64, 0],
        }
    }

    /// domU: machine frame of the console ring page.
    pub const fn domu_mfn(&self) -> Mfn {
        Mfn(self.raw[0])
    }

    /// domU: event channel of the console ring.
    pub const fn domu_evtchn(&self) -> u32 {
        self.raw[1] as u32
    }

    /// dom0: offset of the video console description in `start_info`.
    pub const fn dom0_info_off(&self) -> u32 {
        self.raw[0] as u32
    }

    /// dom0: size of the video console description.
    pub const fn dom0_info_size(&self) -> u32 {
        (self.raw[0] >> 32) as u32
    }
}

impl StartInfo {
    /// An all-zero page with the magic string filled in: the builder's
    /// starting point.
    pub const fn new() -> Self {
        let mut magic = [0u8; 32];
        let mut i = 0;
        while i < START_INFO_MAGIC.len() {
            magic[i] = START_INFO_MAGIC[i];
            i += 1;
        }
        Self {
            magic,
            nr_pages: 0,
            shared_info: 0,
            flags: 0,
            store_mfn: Mfn(0),
            store_evtchn: 0,
            console: StartInfoConsole { raw: [0; 2] },
            pt_base: 0,
            nr_pt_frames: 0,
            mfn_list: 0,
            mod_start: 0,
            mod_len: 0,
            cmd_line: [0; MAX_GUEST_CMDLINE],
            first_p2m_pfn: Pfn(0),
            nr_p2m_frames: 0,
        }
    }

    /// Whether `magic` starts with [`START_INFO_MAGIC`] followed by a NUL.
    pub fn magic_is_valid(&self) -> bool {
        self.magic.starts_with(START_INFO_MAGIC) && self.magic[START_INFO_MAGIC.len()] == 0
    }

    /// Where the bootstrap mappings put the `shared_info` page, given the
    /// virtual address this `start_info` page was found at (`rsi` at entry):
    /// the next page. A Xenia addition; Xen leaves `shared_info` unmapped.
    pub const fn shared_info_va(start_info_va: u64) -> u64 {
        start_info_va + crate::types::PAGE_SIZE as u64
    }

    /// Virtual address of the first byte after the bootstrap stack: the
    /// start of the start-of-day padding and the initial `rsp`. The
    /// bootstrap page tables are `nr_pt_frames` pages from `pt_base` and the
    /// one-page stack follows them (see the
    /// [porting guide](crate#start-of-day-memory)).
    pub const fn padding_start(&self) -> u64 {
        self.pt_base + (self.nr_pt_frames + 1) * crate::types::PAGE_SIZE as u64
    }

    /// First virtual address past the bootstrap mappings: the padding ends
    /// here, on the first [`BOOTSTRAP_REGION_ALIGN`] boundary that leaves at
    /// least [`BOOTSTRAP_PADDING_MIN`] bytes after [`StartInfo::padding_start`]
    /// (Xen's rule).
    pub const fn padding_end(&self) -> u64 {
        let min_end = self.padding_start() + BOOTSTRAP_PADDING_MIN;
        (min_end + BOOTSTRAP_REGION_ALIGN - 1) & !(BOOTSTRAP_REGION_ALIGN - 1)
    }

    /// [`StartInfo::padding_end`] for a kernel whose pseudo-physical frame 0
    /// is mapped at `virt_start`, on Xenia: a domU with less memory than
    /// Xen's region may be built with its region cut at the end of its
    /// memory (`nr_pages` pages from `virt_start`; the builder's
    /// `Padding::UpToMemory`), so the padding ends at whichever comes first,
    /// and may be empty. Never before [`StartInfo::padding_start`].
    pub const fn padding_end_within(&self, virt_start: u64) -> u64 {
        let xen = self.padding_end();
        let memory_end =
            virt_start.saturating_add(self.nr_pages.saturating_mul(crate::types::PAGE_SIZE as u64));
        let end = if memory_end < xen { memory_end } else { xen };
        if end < self.padding_start() {
            self.padding_start()
        } else {
            end
        }
    }

    /// Whether this is dom0's page.
    pub const fn is_initial_domain(&self) -> bool {
        self.flags & SIF_INITDOMAIN != 0
    }

    /// The command line up to its first NUL (all of it if there is none).
    pub fn cmdline_bytes(&self) -> &[u8] {
        let end = self
            .cmd_line
            .iter()
            .position(|&b| b == 0)
            .unwrap_or(MAX_GUEST_CMDLINE);
        &self.cmd_line[..end]
    }

    /// Stores `cmdline`, truncated to leave room for the terminating NUL,
    /// and returns how many bytes were kept.
    pub fn set_cmdline(&mut self, cmdline: &[u8]) -> usize {
        let n = cmdline.len().min(MAX_GUEST_CMDLINE - 1);
        self.cmd_line = [0; MAX_GUEST_CMDLINE];
        self.cmd_line[..n].copy_from_slice(&cmdline[..n]);
        n
    }
}

impl Default for StartInfo {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_matches_xen() {
        assert_layout!(StartInfo, 1168, 8, {
            magic: 0,
            nr_pages: 32,
            shared_info: 40,
            flags: 48,
            store_mfn: 56,
            store_evtchn: 64,
            console: 72,
            pt_base: 88,
            nr_pt_frames: 96,
            mfn_list: 104,
            mod_start: 112,
            mod_len: 120,
            cmd_line: 128,
            first_p2m_pfn: 1152,
            nr_p2m_frames: 1160,
        });
        assert_layout!(StartInfoConsole, 16, 8, { raw: 0 });
    }

    #[test]
    fn sif_flags_match_xen() {
        assert_eq!(SIF_PRIVILEGED, 1);
        assert_eq!(SIF_INITDOMAIN, 2);
        assert_eq!(SIF_MULTIBOOT_MOD, 4);
        assert_eq!(SIF_MOD_START_PFN, 8);
        assert_eq!(SIF_VIRT_P2M_4TOOLS, 16);
        assert_eq!(SIF_PM_MASK, 0xFF00);
    }

    #[test]
    fn console_union_views() {
        let c = StartInfoConsole::domu(Mfn(0xABCD), 7);
        assert_eq!(c.domu_mfn(), Mfn(0xABCD));
        assert_eq!(c.domu_evtchn(), 7);
        let c = StartInfoConsole::dom0(0x400, 0x40);
        assert_eq!(c.dom0_info_off(), 0x400);
        assert_eq!(c.dom0_info_size(), 0x40);
    }

    #[test]
    fn magic_and_cmdline() {
        let mut si = StartInfo::new();
        assert!(si.magic_is_valid());
        assert_eq!(&si.magic[..14], b"xen-3.0-x86_64");
        assert_eq!(si.cmdline_bytes(), b"");
        assert_eq!(si.set_cmdline(b"console=hvc0 loglevel=7"), 23);
        assert_eq!(si.cmdline_bytes(), b"console=hvc0 loglevel=7");
        let long = [b'x'; 2000];
        assert_eq!(si.set_cmdline(&long), MAX_GUEST_CMDLINE - 1);
        assert_eq!(si.cmd_line[MAX_GUEST_CMDLINE - 1], 0);
        si.pt_base = 0xFFFF_FFFF_8010_0000;
        si.nr_pt_frames = 4;
        assert_eq!(si.padding_start(), 0xFFFF_FFFF_8010_5000);
        assert_eq!(si.padding_end(), 0xFFFF_FFFF_8040_0000);
        si.pt_base = 0xFFFF_FFFF_803F_0000;
        assert_eq!(si.padding_end(), 0xFFFF_FFFF_8080_0000, "512 KiB at least");
        si.pt_base = 0xFFFF_FFFF_8010_0000;
        // Cut at the end of a small domain's memory, never before the stack's end.
        let base = 0xFFFF_FFFF_8000_0000;
        si.nr_pages = 1024;
        assert_eq!(si.padding_end_within(base), si.padding_end());
        si.nr_pages = 0x108;
        assert_eq!(si.padding_end_within(base), 0xFFFF_FFFF_8010_8000);
        si.nr_pages = 0x105;
        assert_eq!(si.padding_end_within(base), si.padding_start());
        si.nr_pages = 0x10;
        assert_eq!(si.padding_end_within(base), si.padding_start());
        si.nr_pages = u64::MAX;
        assert_eq!(si.padding_end_within(base), si.padding_end());
        assert_eq!(
            StartInfo::shared_info_va(0xFFFF_FFFF_8008_0000),
            0xFFFF_FFFF_8008_1000
        );
        si.magic[3] = b'!';
        assert!(!si.magic_is_valid());
    }
}
