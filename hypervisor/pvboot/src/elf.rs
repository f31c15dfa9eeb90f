//! Reading a PV guest kernel's ELF image: the first thing the domain builder does with bytes
//! that the domain's owner supplied.
//!
//! The image is hostile input. [`parse`] checks, once, everything the builder relies on later,
//! so that [`load_into`] and the start-of-day layout (`super::layout`) can take its result on
//! trust: an `ELF64`, little-endian, x86-64 `ET_EXEC` image whose loadable segments lie inside
//! the file and at canonical guest addresses outside the hypervisor's reserved range, do not
//! overlap, span at most [`MAX_KERNEL_SPAN`], and contain the entry point in an executable
//! segment. Anything else is refused with an [`ElfError`] that names the problem, never a panic.
//!
//! A PV kernel is loaded at its link addresses: each `PT_LOAD` segment at `p_vaddr`, which is
//! why only `ET_EXEC` is accepted. (Xen places segments at `p_paddr - PADDR_OFFSET + VIRT_BASE`,
//! which is the same address for Xenia's kernels; `p_vaddr` needs no notes to be right.
//! `XEN_ELFNOTE_PADDR_OFFSET` is therefore checked for form and otherwise ignored. Linux differs:
//! its `.data..percpu` segment has `p_vaddr` 0, so a loader of Xen PV kernels must place by
//! `p_paddr` as Xen does; [`parse`] refuses such an image, and [`notes`] reads its notes.)
//!
//! The ELF container (file header, program and section header tables) is read with the `elf`
//! crate. The Xen notes are decoded here: their rules are Xen's (numeric values of 4 or 8 bytes,
//! `xen/include/public/elfnote.h`; names and values padded to 4 bytes, or 8 in an 8-aligned
//! note container), and a malformed note must be an error, where the crate's note iterator would
//! silently stop. As Xen's `elf_xen_parse` does, notes are taken from `PT_NOTE` segments, and from
//! `SHT_NOTE` sections only when no segment held a Xen note.
//!
//! Pure logic: no hardware access, no unsafe code.

#![forbid(unsafe_code)]

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;
use core::ops::Range;

use elf::ParseError;
use elf::abi;
use elf::endian::LittleEndian;
use elf::file::{Class, FileHeader};
use elf::section::SectionHeaderTable;
use elf::segment::{ProgramHeader, SegmentTable};
use guest_abi::elfnote::{
    XEN_ELFNOTE_BSD_SYMTAB, XEN_ELFNOTE_ENTRY, XEN_ELFNOTE_FEATURES, XEN_ELFNOTE_GUEST_OS,
    XEN_ELFNOTE_GUEST_VERSION, XEN_ELFNOTE_HV_START_LOW, XEN_ELFNOTE_HYPERCALL_PAGE,
    XEN_ELFNOTE_INIT_P2M, XEN_ELFNOTE_LOADER, XEN_ELFNOTE_MOD_START_PFN, XEN_ELFNOTE_NAME,
    XEN_ELFNOTE_PADDR_OFFSET, XEN_ELFNOTE_PAE_MODE, XEN_ELFNOTE_PHYS32_ENTRY,
    XEN_ELFNOTE_SUPPORTED_FEATURES, XEN_ELFNOTE_SUSPEND_CANCEL, XEN_ELFNOTE_VIRT_BASE,
    XEN_ELFNOTE_XEN_VERSION,
};
use guest_abi::layout::{HYPERVISOR_VIRT_END, HYPERVISOR_VIRT_START};

use crate::layout::{
    PAGE, is_canonical, is_canonical_range, page_align_down, page_align_up,
    touches_hypervisor_range,
};

/// The hypervisor's reserved virtual range (PML4 slots 256–271, DESIGN.md §4): no guest segment
/// may touch it.
pub const HYPERVISOR_RESERVED: Range<u64> = HYPERVISOR_VIRT_START..HYPERVISOR_VIRT_END;

/// Largest span of guest virtual memory a kernel image may cover, from its lowest page to the
/// end of its highest segment. Real PV kernels take tens of MiB; the limit keeps a hostile image
/// from making the builder reserve (or zero) absurd amounts of memory.
pub const MAX_KERNEL_SPAN: u64 = 1 << 30;

/// Most program headers an image may have. Kernels have a handful; the limit bounds the work
/// [`parse`] does for a hostile image.
pub const MAX_PROGRAM_HEADERS: u16 = 64;

/// Longest string note value, in bytes. Feature lists, the longest real notes, are about 100.
pub const MAX_NOTE_STRING: usize = 1024;

/// Size of an `Elf64_Phdr` (System V ABI, "Program Header").
const PHDR_SIZE: u16 = 56;
/// Size of an `Elf64_Shdr` (System V ABI, "Sections").
const SHDR_SIZE: u16 = 64;
/// Size of the note header (`namesz`, `descsz`, `type`; 32-bit fields in ELF64 too).
const NOTE_HEADER_SIZE: u64 = 12;

/// A loadable segment, checked: inside the file, canonical, outside [`HYPERVISOR_RESERVED`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Segment {
    /// Index of its program header, as `readelf -l` counts them (for messages).
    pub program_header: usize,
    /// Guest virtual address of its first byte.
    pub vaddr: u64,
    /// Where its initialised bytes start in the file.
    pub file_offset: u64,
    /// How many initialised bytes it has; the rest of `mem_size` is zero-filled (bss).
    pub file_size: u64,
    /// Its size in memory (never 0, never less than `file_size`).
    pub mem_size: u64,
    /// `PF_W`.
    pub writable: bool,
    /// `PF_X`.
    pub executable: bool,
}

impl Segment {
    /// First address past the segment ([`parse`] ensures it does not overflow; saturated for a
    /// segment built by hand).
    pub const fn end(&self) -> u64 {
        self.vaddr.saturating_add(self.mem_size)
    }
}

/// The Xen ELF notes Xenia's builder reads (`guest_abi::elfnote`). Each is `None` when absent.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct XenNotes {
    /// `XEN_ELFNOTE_HYPERCALL_PAGE`: the page to fill with hypercall stubs (checked: page
    /// aligned, inside the image).
    pub hypercall_page: Option<u64>,
    /// `XEN_ELFNOTE_VIRT_BASE`: where pseudo-physical frame 0 is mapped (checked: page aligned,
    /// at or below the lowest segment).
    pub virt_base: Option<u64>,
    /// `XEN_ELFNOTE_ENTRY`: the entry point; it overrides `e_entry`, which Linux sets to a
    /// physical address.
    pub entry: Option<u64>,
    /// `XEN_ELFNOTE_PADDR_OFFSET`: read for completeness; segments are placed at `p_vaddr`.
    pub paddr_offset: Option<u64>,
    /// `XEN_ELFNOTE_FEATURES`: `|`-separated feature names, `!` marking required ones, e.g.
    /// `"!writable_page_tables|pae_pgdir_above_4gb"`.
    pub features: Option<String>,
    /// `XEN_ELFNOTE_GUEST_OS`, e.g. `"linux"`.
    pub guest_os: Option<String>,
    /// `XEN_ELFNOTE_GUEST_VERSION`.
    pub guest_version: Option<String>,
    /// `XEN_ELFNOTE_XEN_VERSION`, e.g. `"xen-3.0"`.
    pub xen_version: Option<String>,
    /// `XEN_ELFNOTE_LOADER`, e.g. `"generic"`.
    pub loader: Option<String>,
    /// `XEN_ELFNOTE_SUPPORTED_FEATURES`: the `XENFEAT_*` bitmap (submap 0, the only one Xen
    /// reads) of optional features the kernel can use, on top of those `features` names.
    pub supported_features: Option<u32>,
    /// `XEN_ELFNOTE_INIT_P2M`: where a Xen PV kernel wants the initial p2m list mapped (Linux:
    /// `0x8000000000`); absent means "in the start-of-day region", as Xenia's kernels expect.
    pub init_p2m: Option<u64>,
    /// `XEN_ELFNOTE_MOD_START_PFN`: non-zero when the kernel accepts its initrd given by
    /// frame number (`SIF_MOD_START_PFN`) rather than mapped.
    pub mod_start_pfn: Option<u64>,
    /// `XEN_ELFNOTE_PAE_MODE`, e.g. `"yes"` (meaningful for 32-bit kernels only).
    pub pae_mode: Option<String>,
    /// `XEN_ELFNOTE_HV_START_LOW`: lowest address of the hypervisor hole (32-bit PAE kernels).
    pub hv_start_low: Option<u64>,
    /// `XEN_ELFNOTE_SUSPEND_CANCEL`: the kernel supports cooperative suspend cancellation.
    pub suspend_cancel: Option<u64>,
    /// `XEN_ELFNOTE_BSD_SYMTAB`, `"yes"` when the kernel wants its symbol table loaded.
    pub bsd_symtab: Option<String>,
    /// `XEN_ELFNOTE_PHYS32_ENTRY`: the 32-bit entry point for PVH (Xenia runs no PVH guests;
    /// read so that tools can say the kernel has one).
    pub phys32_entry: Option<u64>,
}

/// A checked kernel image: what the builder needs to lay out and load the domain.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KernelImage {
    /// Where the kernel starts: `XEN_ELFNOTE_ENTRY` if present, else `e_entry`; inside an
    /// executable segment.
    pub entry: u64,
    /// The loadable segments (empty ones left out), sorted by address, not overlapping.
    pub segments: Vec<Segment>,
    /// Start of the image: `XEN_ELFNOTE_VIRT_BASE` if given, else the lowest segment's page.
    /// Pseudo-physical frame 0 is mapped here.
    pub virt_start: u64,
    /// End of the highest segment, rounded up to a page.
    pub virt_end: u64,
    /// The Xen notes found.
    pub notes: XenNotes,
}

/// A part of the file, for [`ElfError::Truncated`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Part {
    /// The ELF file header.
    Header,
    /// The program header table.
    ProgramHeaders,
    /// The section header table.
    SectionHeaders,
    /// The file contents of the segment with this program-header index.
    Segment(usize),
    /// The contents of the note section with this section-header index.
    NoteSection(usize),
}

/// Which header table, for [`ElfError::BadEntrySize`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Table {
    /// `e_phentsize`.
    ProgramHeaders,
    /// `e_shentsize`.
    SectionHeaders,
}

/// Where a note came from, for [`ElfError::MalformedNote`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum NoteContainer {
    /// A `PT_NOTE` segment, by program-header index.
    Segment(usize),
    /// An `SHT_NOTE` section, by section-header index.
    Section(usize),
}

/// What is wrong with a note.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum NoteProblem {
    /// Fewer than 12 bytes remain for the note header.
    TruncatedHeader,
    /// The name runs past the end of the container.
    NamePastEnd {
        /// Its claimed size.
        namesz: u32,
    },
    /// The value runs past the end of the container.
    DescPastEnd {
        /// Its claimed size.
        descsz: u32,
    },
    /// A numeric note whose value is not 4 or 8 bytes.
    NumericSize {
        /// The note type.
        note_type: u32,
        /// Its value's size.
        size: u32,
    },
    /// A string note with a byte that is not printable ASCII before its NUL.
    NotPrintable {
        /// The note type.
        note_type: u32,
    },
    /// A string note longer than [`MAX_NOTE_STRING`].
    TooLong {
        /// The note type.
        note_type: u32,
        /// Its length.
        len: usize,
    },
    /// A second note of a type already seen, with a different value.
    Conflicting {
        /// The note type.
        note_type: u32,
    },
}

/// What is wrong with `XEN_ELFNOTE_VIRT_BASE`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum VirtBaseProblem {
    /// Not a multiple of the page size.
    Misaligned,
    /// Above the lowest segment, so that segment would precede pseudo-physical frame 0.
    AboveImage,
    /// Not a canonical address.
    NonCanonical,
    /// Inside [`HYPERVISOR_RESERVED`].
    Reserved,
}

/// Why a kernel image was refused. Every variant is the image's fault.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ElfError {
    /// The file does not start with the ELF magic.
    NotElf,
    /// A part of the image extends past the end of the file.
    Truncated {
        /// Which part.
        part: Part,
        /// Where it ends (saturated at `u64::MAX` when that overflows).
        end: u64,
        /// The file's length.
        file_len: u64,
    },
    /// `e_ident[EI_CLASS]` is not `ELFCLASS64`.
    WrongClass {
        /// The class found.
        class: u8,
    },
    /// `e_ident[EI_DATA]` is not `ELFDATA2LSB`.
    WrongEncoding {
        /// The encoding found.
        encoding: u8,
    },
    /// The ELF version (`e_ident[EI_VERSION]` or `e_version`) is not `EV_CURRENT`.
    UnsupportedVersion {
        /// The version found.
        version: u64,
    },
    /// `e_machine` is not `EM_X86_64`.
    WrongMachine {
        /// The machine found.
        machine: u16,
    },
    /// `e_type` is not `ET_EXEC`.
    WrongType {
        /// The type found.
        e_type: u16,
    },
    /// A header table's entry size is not the ELF64 one.
    BadEntrySize {
        /// Which table.
        table: Table,
        /// The size found.
        size: u16,
    },
    /// More than [`MAX_PROGRAM_HEADERS`] program headers.
    TooManyProgramHeaders {
        /// How many the header claims.
        count: u16,
    },
    /// No non-empty `PT_LOAD` segment.
    NoLoadSegments,
    /// A segment has more file bytes than memory bytes.
    FileSizeExceedsMemSize {
        /// Program-header index.
        segment: usize,
        /// `p_filesz`.
        file_size: u64,
        /// `p_memsz`.
        mem_size: u64,
    },
    /// A segment is larger than [`MAX_KERNEL_SPAN`].
    SegmentTooLarge {
        /// Program-header index.
        segment: usize,
        /// `p_memsz`.
        mem_size: u64,
    },
    /// A segment's address and file offset differ modulo the page size, so it cannot be mapped
    /// page by page.
    Misaligned {
        /// Program-header index.
        segment: usize,
        /// `p_vaddr`.
        vaddr: u64,
        /// `p_offset`.
        offset: u64,
    },
    /// A segment's end (rounded up to a page) is past the top of the address space.
    AddressOverflow {
        /// Program-header index.
        segment: usize,
        /// `p_vaddr`.
        vaddr: u64,
        /// `p_memsz`.
        mem_size: u64,
    },
    /// A segment includes non-canonical addresses.
    NonCanonical {
        /// Program-header index.
        segment: usize,
        /// Its first address.
        start: u64,
        /// Its end.
        end: u64,
    },
    /// A segment touches [`HYPERVISOR_RESERVED`].
    ReservedRange {
        /// Program-header index.
        segment: usize,
        /// Its first address.
        start: u64,
        /// Its end.
        end: u64,
    },
    /// Two segments share virtual addresses.
    Overlap {
        /// Program-header index of the lower one.
        first: usize,
        /// Program-header index of the other.
        second: usize,
        /// Where the second starts, inside the first.
        at: u64,
    },
    /// The image spans more than [`MAX_KERNEL_SPAN`].
    SpanTooLarge {
        /// `virt_start`.
        start: u64,
        /// `virt_end`.
        end: u64,
    },
    /// The entry point is in no segment.
    EntryOutsideSegments {
        /// The entry point.
        entry: u64,
    },
    /// The entry point is in a segment without `PF_X`.
    EntryNotExecutable {
        /// The entry point.
        entry: u64,
        /// Program-header index of its segment.
        segment: usize,
    },
    /// `XEN_ELFNOTE_VIRT_BASE` is unusable.
    BadVirtBase {
        /// The note's value.
        virt_base: u64,
        /// The lowest segment address.
        lowest: u64,
        /// What is wrong with it.
        problem: VirtBaseProblem,
    },
    /// `XEN_ELFNOTE_HYPERCALL_PAGE` is not page aligned.
    HypercallPageMisaligned {
        /// The note's value.
        address: u64,
    },
    /// `XEN_ELFNOTE_HYPERCALL_PAGE` names a page no segment covers.
    HypercallPageOutside {
        /// The note's value.
        address: u64,
    },
    /// A note is malformed.
    MalformedNote {
        /// Where it is.
        container: NoteContainer,
        /// Its offset in the container.
        offset: u64,
        /// What is wrong.
        problem: NoteProblem,
    },
}

impl fmt::Display for Part {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Part::Header => f.write_str("the ELF header"),
            Part::ProgramHeaders => f.write_str("the program header table"),
            Part::SectionHeaders => f.write_str("the section header table"),
            Part::Segment(i) => write!(f, "the file data of segment {i}"),
            Part::NoteSection(i) => write!(f, "note section {i}"),
        }
    }
}

impl fmt::Display for NoteContainer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            NoteContainer::Segment(i) => write!(f, "note segment {i}"),
            NoteContainer::Section(i) => write!(f, "note section {i}"),
        }
    }
}

/// The name of Xen note type `t` as `elfnote.h` spells it, for messages.
fn note_name(t: u32) -> &'static str {
    match t {
        XEN_ELFNOTE_ENTRY => "ENTRY",
        XEN_ELFNOTE_HYPERCALL_PAGE => "HYPERCALL_PAGE",
        XEN_ELFNOTE_VIRT_BASE => "VIRT_BASE",
        XEN_ELFNOTE_PADDR_OFFSET => "PADDR_OFFSET",
        XEN_ELFNOTE_XEN_VERSION => "XEN_VERSION",
        XEN_ELFNOTE_GUEST_OS => "GUEST_OS",
        XEN_ELFNOTE_GUEST_VERSION => "GUEST_VERSION",
        XEN_ELFNOTE_LOADER => "LOADER",
        XEN_ELFNOTE_FEATURES => "FEATURES",
        XEN_ELFNOTE_PAE_MODE => "PAE_MODE",
        XEN_ELFNOTE_BSD_SYMTAB => "BSD_SYMTAB",
        XEN_ELFNOTE_HV_START_LOW => "HV_START_LOW",
        XEN_ELFNOTE_SUSPEND_CANCEL => "SUSPEND_CANCEL",
        XEN_ELFNOTE_INIT_P2M => "INIT_P2M",
        XEN_ELFNOTE_MOD_START_PFN => "MOD_START_PFN",
        XEN_ELFNOTE_SUPPORTED_FEATURES => "SUPPORTED_FEATURES",
        XEN_ELFNOTE_PHYS32_ENTRY => "PHYS32_ENTRY",
        _ => "unknown",
    }
}

impl fmt::Display for NoteProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            NoteProblem::TruncatedHeader => f.write_str("the note header is cut short"),
            NoteProblem::NamePastEnd { namesz } => {
                write!(f, "its name of {namesz} bytes runs past the end")
            }
            NoteProblem::DescPastEnd { descsz } => {
                write!(f, "its value of {descsz} bytes runs past the end")
            }
            NoteProblem::NumericSize { note_type, size } => write!(
                f,
                "Xen note {} (type {note_type}) has a {size}-byte value, expected 4 or 8",
                note_name(note_type)
            ),
            NoteProblem::NotPrintable { note_type } => write!(
                f,
                "Xen note {} (type {note_type}) is not a printable ASCII string",
                note_name(note_type)
            ),
            NoteProblem::TooLong { note_type, len } => write!(
                f,
                "Xen note {} (type {note_type}) is {len} bytes long, more than {MAX_NOTE_STRING}",
                note_name(note_type)
            ),
            NoteProblem::Conflicting { note_type } => write!(
                f,
                "Xen note {} (type {note_type}) appears twice with different values",
                note_name(note_type)
            ),
        }
    }
}

impl fmt::Display for VirtBaseProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            VirtBaseProblem::Misaligned => "is not page aligned",
            VirtBaseProblem::AboveImage => "is above the lowest segment",
            VirtBaseProblem::NonCanonical => "is not a canonical address",
            VirtBaseProblem::Reserved => "lies in the hypervisor's reserved range",
        })
    }
}

impl fmt::Display for ElfError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let reserved = HYPERVISOR_RESERVED;
        match *self {
            ElfError::NotElf => f.write_str("not an ELF file (bad magic)"),
            ElfError::Truncated {
                part,
                end,
                file_len,
            } => write!(
                f,
                "truncated image: {part} extends to byte {end:#x} but the file has {file_len:#x} \
                 bytes"
            ),
            ElfError::WrongClass { class } => write!(
                f,
                "ELF class {class} ({}), expected ELFCLASS64",
                if class == abi::ELFCLASS32 {
                    "ELFCLASS32"
                } else {
                    "invalid"
                }
            ),
            ElfError::WrongEncoding { encoding } => write!(
                f,
                "ELF data encoding {encoding} ({}), expected little endian (ELFDATA2LSB)",
                if encoding == abi::ELFDATA2MSB {
                    "big endian"
                } else {
                    "invalid"
                }
            ),
            ElfError::UnsupportedVersion { version } => {
                write!(f, "ELF version {version}, expected {}", abi::EV_CURRENT)
            }
            ElfError::WrongMachine { machine } => {
                write!(
                    f,
                    "ELF machine {machine}, expected x86-64 ({})",
                    abi::EM_X86_64
                )
            }
            ElfError::WrongType { e_type } => write!(
                f,
                "ELF type {e_type}, expected an executable (ET_EXEC, {}): a PV kernel is loaded \
                 at its link addresses",
                abi::ET_EXEC
            ),
            ElfError::BadEntrySize { table, size } => {
                let (name, expected) = match table {
                    Table::ProgramHeaders => ("program", PHDR_SIZE),
                    Table::SectionHeaders => ("section", SHDR_SIZE),
                };
                write!(
                    f,
                    "{name} header entries of {size} bytes, expected {expected}"
                )
            }
            ElfError::TooManyProgramHeaders { count } => {
                write!(
                    f,
                    "{count} program headers, at most {MAX_PROGRAM_HEADERS} allowed"
                )
            }
            ElfError::NoLoadSegments => f.write_str("no loadable (PT_LOAD) segment"),
            ElfError::FileSizeExceedsMemSize {
                segment,
                file_size,
                mem_size,
            } => write!(
                f,
                "segment {segment} has {file_size:#x} bytes in the file but only {mem_size:#x} \
                 in memory"
            ),
            ElfError::SegmentTooLarge { segment, mem_size } => write!(
                f,
                "segment {segment} is {mem_size:#x} bytes, more than the {MAX_KERNEL_SPAN:#x} a \
                 kernel may span"
            ),
            ElfError::Misaligned {
                segment,
                vaddr,
                offset,
            } => write!(
                f,
                "segment {segment} at {vaddr:#x} starts at file offset {offset:#x}: address and \
                 offset differ modulo the page size"
            ),
            ElfError::AddressOverflow {
                segment,
                vaddr,
                mem_size,
            } => write!(
                f,
                "segment {segment} at {vaddr:#x} of {mem_size:#x} bytes runs past the top of the \
                 address space"
            ),
            ElfError::NonCanonical {
                segment,
                start,
                end,
            } => write!(
                f,
                "segment {segment} at {start:#x}..{end:#x} includes non-canonical addresses"
            ),
            ElfError::ReservedRange {
                segment,
                start,
                end,
            } => write!(
                f,
                "segment {segment} at {start:#x}..{end:#x} lies in the hypervisor's reserved \
                 range {:#x}..{:#x}",
                reserved.start, reserved.end
            ),
            ElfError::Overlap { first, second, at } => {
                write!(f, "segment {second} at {at:#x} overlaps segment {first}")
            }
            ElfError::SpanTooLarge { start, end } => write!(
                f,
                "the image spans {start:#x}..{end:#x}, more than the {MAX_KERNEL_SPAN:#x} bytes \
                 a kernel may span"
            ),
            ElfError::EntryOutsideSegments { entry } => {
                write!(f, "the entry point {entry:#x} is in no loadable segment")
            }
            ElfError::EntryNotExecutable { entry, segment } => write!(
                f,
                "the entry point {entry:#x} is in segment {segment}, which is not executable"
            ),
            ElfError::BadVirtBase {
                virt_base,
                lowest,
                problem,
            } => write!(
                f,
                "Xen note VIRT_BASE {virt_base:#x} {problem} (lowest segment at {lowest:#x})"
            ),
            ElfError::HypercallPageMisaligned { address } => {
                write!(
                    f,
                    "Xen note HYPERCALL_PAGE {address:#x} is not page aligned"
                )
            }
            ElfError::HypercallPageOutside { address } => write!(
                f,
                "Xen note HYPERCALL_PAGE {address:#x} names a page no loadable segment covers"
            ),
            ElfError::MalformedNote {
                container,
                offset,
                problem,
            } => {
                write!(
                    f,
                    "malformed note at offset {offset:#x} of {container}: {problem}"
                )
            }
        }
    }
}

/// Checks `bytes` as a PV kernel image and describes it. See the module documentation for what
/// is checked.
pub fn parse(bytes: &[u8]) -> Result<KernelImage, ElfError> {
    let file_len = bytes.len() as u64;
    let ehdr = file_header(bytes)?;
    let phdrs = program_headers(&ehdr, bytes)?;

    let mut segments = Vec::new();
    for index in 0..phdrs.len() {
        let ph = program_header(&phdrs, index, file_len)?;
        if ph.p_type == abi::PT_LOAD
            && let Some(segment) = load_segment(index, &ph, file_len)?
        {
            segments.push(segment);
        }
    }
    segments.sort_unstable_by_key(|s| s.vaddr);
    for pair in segments.windows(2) {
        if let [a, b] = pair
            && b.vaddr < a.end()
        {
            let (first, second) = (a.program_header, b.program_header);
            return Err(ElfError::Overlap {
                first,
                second,
                at: b.vaddr,
            });
        }
    }
    let (Some(lowest), Some(highest)) = (segments.first(), segments.last()) else {
        return Err(ElfError::NoLoadSegments);
    };
    let lowest = lowest.vaddr;
    // Checked by `load_segment`: every segment's end rounds up without overflow.
    let virt_end = page_align_up(highest.end()).unwrap_or(u64::MAX);

    let notes = xen_notes(&ehdr, &phdrs, bytes)?;

    let entry = notes.entry.unwrap_or(ehdr.e_entry);
    match segments
        .iter()
        .find(|s| s.vaddr <= entry && entry < s.end())
    {
        None => return Err(ElfError::EntryOutsideSegments { entry }),
        Some(s) if !s.executable => {
            return Err(ElfError::EntryNotExecutable {
                entry,
                segment: s.program_header,
            });
        }
        Some(_) => {}
    }

    if let Some(address) = notes.hypercall_page {
        if address % PAGE != 0 {
            return Err(ElfError::HypercallPageMisaligned { address });
        }
        let covered = segments.iter().any(|s| {
            page_align_down(s.vaddr) <= address
                && page_align_up(s.end()).is_some_and(|end| address < end)
        });
        if !covered {
            return Err(ElfError::HypercallPageOutside { address });
        }
    }

    let virt_start = match notes.virt_base {
        None => page_align_down(lowest),
        Some(virt_base) => {
            let problem = if virt_base % PAGE != 0 {
                Some(VirtBaseProblem::Misaligned)
            } else if virt_base > lowest {
                Some(VirtBaseProblem::AboveImage)
            } else if !is_canonical(virt_base) {
                Some(VirtBaseProblem::NonCanonical)
            } else if HYPERVISOR_RESERVED.contains(&virt_base) {
                Some(VirtBaseProblem::Reserved)
            } else {
                None
            };
            if let Some(problem) = problem {
                return Err(ElfError::BadVirtBase {
                    virt_base,
                    lowest,
                    problem,
                });
            }
            virt_base
        }
    };
    // Every segment is canonical and clear of the reserved range, and so is `virt_start`; a span
    // that straddled the non-canonical hole or the reserved range would be terabytes long, so
    // this check also keeps the whole span canonical and clear of it.
    if virt_end - virt_start > MAX_KERNEL_SPAN {
        return Err(ElfError::SpanTooLarge {
            start: virt_start,
            end: virt_end,
        });
    }

    Ok(KernelImage {
        entry,
        segments,
        virt_start,
        virt_end,
        notes,
    })
}

/// The Xen notes of the ELF image `bytes` alone, without the checks of its segments that
/// [`parse`] makes: how a builder tells which ABI a kernel was built for before it decides how
/// to load it (a Xen PV kernel such as Linux places a segment by `p_paddr`, which [`parse`]
/// refuses). The file header and the note containers are checked as [`parse`] checks them.
pub fn notes(bytes: &[u8]) -> Result<XenNotes, ElfError> {
    let ehdr = file_header(bytes)?;
    let phdrs = program_headers(&ehdr, bytes)?;
    xen_notes(&ehdr, &phdrs, bytes)
}

/// Checks a Xen PV kernel's headers and places its segments as Xen's libelf does
/// (`elf_xen_addr_calc_check`): at `p_paddr - PADDR_OFFSET + VIRT_BASE`, `PADDR_OFFSET` 0
/// and `VIRT_BASE` 0 when absent. `headers` is the start of the image, holding at least its
/// file header and program headers (a builder streaming a compressed kernel has only that);
/// `image_len` is the whole image's length, against which segments are checked. The
/// segments' `vaddr` is their placed address; every check [`parse`] makes of a segment is
/// made of it. `notes` are the image's Xen notes ([`notes`]).
pub fn place_xen_pv(
    headers: &[u8],
    image_len: u64,
    notes: XenNotes,
) -> Result<KernelImage, ElfError> {
    let ehdr = file_header(headers)?;
    let phdrs = program_headers(&ehdr, headers)?;
    let virt_base = notes.virt_base.unwrap_or(0);
    let offset = virt_base.wrapping_sub(notes.paddr_offset.unwrap_or(0));
    let mut segments = Vec::new();
    for index in 0..phdrs.len() {
        let mut ph = program_header(&phdrs, index, headers.len() as u64)?;
        if ph.p_type != abi::PT_LOAD {
            continue;
        }
        ph.p_vaddr = ph.p_paddr.wrapping_add(offset);
        if let Some(segment) = load_segment(index, &ph, image_len)? {
            segments.push(segment);
        }
    }
    segments.sort_unstable_by_key(|s| s.vaddr);
    for pair in segments.windows(2) {
        if let [a, b] = pair
            && b.vaddr < a.end()
        {
            return Err(ElfError::Overlap {
                first: a.program_header,
                second: b.program_header,
                at: b.vaddr,
            });
        }
    }
    let (Some(lowest), Some(highest)) = (segments.first(), segments.last()) else {
        return Err(ElfError::NoLoadSegments);
    };
    let lowest = lowest.vaddr;
    let virt_end = page_align_up(highest.end()).unwrap_or(u64::MAX);
    let entry = notes.entry.unwrap_or(ehdr.e_entry);
    match segments
        .iter()
        .find(|s| s.vaddr <= entry && entry < s.end())
    {
        None => return Err(ElfError::EntryOutsideSegments { entry }),
        Some(s) if !s.executable => {
            return Err(ElfError::EntryNotExecutable {
                entry,
                segment: s.program_header,
            });
        }
        Some(_) => {}
    }
    let problem = if !virt_base.is_multiple_of(PAGE) {
        Some(VirtBaseProblem::Misaligned)
    } else if virt_base > lowest {
        Some(VirtBaseProblem::AboveImage)
    } else if !is_canonical(virt_base) {
        Some(VirtBaseProblem::NonCanonical)
    } else if HYPERVISOR_RESERVED.contains(&virt_base) {
        Some(VirtBaseProblem::Reserved)
    } else {
        None
    };
    if let Some(problem) = problem {
        return Err(ElfError::BadVirtBase {
            virt_base,
            lowest,
            problem,
        });
    }
    if virt_end - virt_base > MAX_KERNEL_SPAN {
        return Err(ElfError::SpanTooLarge {
            start: virt_base,
            end: virt_end,
        });
    }
    Ok(KernelImage {
        entry,
        segments,
        virt_start: virt_base,
        virt_end,
        notes,
    })
}

/// Copies each segment of `image` (as [`parse`] returned it for `bytes`) to its guest virtual
/// address through `write`, and zero-fills its bss tail through `zero`. The caller translates
/// guest addresses and may receive ranges that cross pages. If `bytes` is not the file `image`
/// was parsed from and is too short, the copy stops with [`ElfError::Truncated`].
pub fn load_into<E: From<ElfError>>(
    image: &KernelImage,
    bytes: &[u8],
    mut write: impl FnMut(u64, &[u8]) -> Result<(), E>,
    mut zero: impl FnMut(u64, u64) -> Result<(), E>,
) -> Result<(), E> {
    for s in &image.segments {
        if s.file_size > 0 {
            let data = file_range(bytes, s.file_offset, s.file_size).ok_or_else(|| {
                truncated(
                    Part::Segment(s.program_header),
                    bytes,
                    s.file_offset,
                    s.file_size,
                )
            })?;
            write(s.vaddr, data)?;
        }
        if s.mem_size > s.file_size {
            let overflow = || ElfError::AddressOverflow {
                segment: s.program_header,
                vaddr: s.vaddr,
                mem_size: s.mem_size,
            };
            let bss = s.vaddr.checked_add(s.file_size).ok_or_else(overflow)?;
            zero(bss, s.mem_size - s.file_size)?;
        }
    }
    Ok(())
}

/// `bytes[offset..offset + len]`, or `None` when that is not inside `bytes`.
fn file_range(bytes: &[u8], offset: u64, len: u64) -> Option<&[u8]> {
    let start = usize::try_from(offset).ok()?;
    let end = start.checked_add(usize::try_from(len).ok()?)?;
    bytes.get(start..end)
}

/// The error for `part`, `len` bytes at `offset`, not fitting in `bytes`.
fn truncated(part: Part, bytes: &[u8], offset: u64, len: u64) -> ElfError {
    ElfError::Truncated {
        part,
        end: offset.saturating_add(len),
        file_len: bytes.len() as u64,
    }
}

/// Reads and checks the file header: magic, class, encoding, version, machine, type.
fn file_header(bytes: &[u8]) -> Result<FileHeader<LittleEndian>, ElfError> {
    // The magic first, so that a short file of something else is "not ELF", not "truncated".
    if bytes.get(..abi::ELFMAGIC.len()) != Some(&abi::ELFMAGIC[..]) {
        return Err(ElfError::NotElf);
    }
    let ident = file_range(bytes, 0, abi::EI_NIDENT as u64)
        .ok_or_else(|| truncated(Part::Header, bytes, 0, abi::EI_NIDENT as u64))?;
    let ident = elf::file::parse_ident::<LittleEndian>(ident).map_err(|e| match e {
        ParseError::UnsupportedElfClass(class) => ElfError::WrongClass { class },
        ParseError::UnsupportedElfEndianness(encoding) => ElfError::WrongEncoding { encoding },
        ParseError::UnsupportedVersion((version, _)) => ElfError::UnsupportedVersion { version },
        _ => ElfError::NotElf,
    })?;
    if ident.1 != Class::ELF64 {
        return Err(ElfError::WrongClass {
            class: abi::ELFCLASS32,
        });
    }
    let tail_len = elf::file::ELF64_EHDR_TAILSIZE as u64;
    let tail = file_range(bytes, abi::EI_NIDENT as u64, tail_len)
        .ok_or_else(|| truncated(Part::Header, bytes, abi::EI_NIDENT as u64, tail_len))?;
    let header_len = abi::EI_NIDENT as u64 + tail_len;
    let ehdr = FileHeader::parse_tail(ident, tail)
        .map_err(|_| truncated(Part::Header, bytes, 0, header_len))?;
    if ehdr.version != u32::from(abi::EV_CURRENT) {
        return Err(ElfError::UnsupportedVersion {
            version: u64::from(ehdr.version),
        });
    }
    if ehdr.e_machine != abi::EM_X86_64 {
        return Err(ElfError::WrongMachine {
            machine: ehdr.e_machine,
        });
    }
    if ehdr.e_type != abi::ET_EXEC {
        return Err(ElfError::WrongType {
            e_type: ehdr.e_type,
        });
    }
    Ok(ehdr)
}

/// The program header table, bounded by [`MAX_PROGRAM_HEADERS`] and inside the file (empty when
/// the image has none).
fn program_headers<'a>(
    ehdr: &FileHeader<LittleEndian>,
    bytes: &'a [u8],
) -> Result<SegmentTable<'a, LittleEndian>, ElfError> {
    let count = if ehdr.e_phoff == 0 { 0 } else { ehdr.e_phnum };
    if count > MAX_PROGRAM_HEADERS {
        return Err(ElfError::TooManyProgramHeaders { count });
    }
    if count > 0 && ehdr.e_phentsize != PHDR_SIZE {
        return Err(ElfError::BadEntrySize {
            table: Table::ProgramHeaders,
            size: ehdr.e_phentsize,
        });
    }
    let len = u64::from(count) * u64::from(PHDR_SIZE);
    let table = file_range(bytes, ehdr.e_phoff, len)
        .ok_or_else(|| truncated(Part::ProgramHeaders, bytes, ehdr.e_phoff, len))?;
    Ok(SegmentTable::new(LittleEndian, Class::ELF64, table))
}

/// Program header `index` of `table`. [`program_headers`] sized the table to hold every index
/// below its length, so the error (reported as a truncated table) cannot happen.
fn program_header(
    table: &SegmentTable<'_, LittleEndian>,
    index: usize,
    file_len: u64,
) -> Result<ProgramHeader, ElfError> {
    table.get(index).map_err(|_| ElfError::Truncated {
        part: Part::ProgramHeaders,
        end: file_len.saturating_add(1),
        file_len,
    })
}

/// Checks `PT_LOAD` program header `index`; `None` for an empty segment, which loads nothing.
fn load_segment(
    index: usize,
    ph: &ProgramHeader,
    file_len: u64,
) -> Result<Option<Segment>, ElfError> {
    let (vaddr, offset, file_size, mem_size) = (ph.p_vaddr, ph.p_offset, ph.p_filesz, ph.p_memsz);
    if file_size > mem_size {
        return Err(ElfError::FileSizeExceedsMemSize {
            segment: index,
            file_size,
            mem_size,
        });
    }
    if mem_size == 0 {
        return Ok(None);
    }
    if mem_size > MAX_KERNEL_SPAN {
        return Err(ElfError::SegmentTooLarge {
            segment: index,
            mem_size,
        });
    }
    if file_size > 0
        && offset
            .checked_add(file_size)
            .is_none_or(|end| end > file_len)
    {
        let end = offset.saturating_add(file_size);
        return Err(ElfError::Truncated {
            part: Part::Segment(index),
            end,
            file_len,
        });
    }
    if vaddr % PAGE != offset % PAGE {
        return Err(ElfError::Misaligned {
            segment: index,
            vaddr,
            offset,
        });
    }
    let Some(end) = vaddr
        .checked_add(mem_size)
        .filter(|&end| page_align_up(end).is_some())
    else {
        return Err(ElfError::AddressOverflow {
            segment: index,
            vaddr,
            mem_size,
        });
    };
    if !is_canonical_range(vaddr, end) {
        return Err(ElfError::NonCanonical {
            segment: index,
            start: vaddr,
            end,
        });
    }
    if touches_hypervisor_range(vaddr, end) {
        return Err(ElfError::ReservedRange {
            segment: index,
            start: vaddr,
            end,
        });
    }
    Ok(Some(Segment {
        program_header: index,
        vaddr,
        file_offset: offset,
        file_size,
        mem_size,
        writable: ph.p_flags & abi::PF_W != 0,
        executable: ph.p_flags & abi::PF_X != 0,
    }))
}

/// The Xen notes: from the `PT_NOTE` segments, or from the `SHT_NOTE` sections when no segment
/// holds one (Xen's order).
fn xen_notes(
    ehdr: &FileHeader<LittleEndian>,
    phdrs: &SegmentTable<'_, LittleEndian>,
    bytes: &[u8],
) -> Result<XenNotes, ElfError> {
    let file_len = bytes.len() as u64;
    let mut notes = XenNotes::default();
    let mut found = 0;
    for index in 0..phdrs.len() {
        let ph = program_header(phdrs, index, file_len)?;
        if ph.p_type != abi::PT_NOTE {
            continue;
        }
        let data = file_range(bytes, ph.p_offset, ph.p_filesz)
            .ok_or_else(|| truncated(Part::Segment(index), bytes, ph.p_offset, ph.p_filesz))?;
        found += read_notes(data, ph.p_align, NoteContainer::Segment(index), &mut notes)?;
    }
    if found > 0 {
        return Ok(notes);
    }

    // Extended section numbering (`e_shnum == 0` with the count in section 0) is left out: a
    // kernel with 65280 sections is not a kernel, and its notes would be in a segment anyway.
    if ehdr.e_shoff == 0 || ehdr.e_shnum == 0 {
        return Ok(notes);
    }
    if ehdr.e_shentsize != SHDR_SIZE {
        return Err(ElfError::BadEntrySize {
            table: Table::SectionHeaders,
            size: ehdr.e_shentsize,
        });
    }
    let len = u64::from(ehdr.e_shnum) * u64::from(SHDR_SIZE);
    let table = file_range(bytes, ehdr.e_shoff, len)
        .ok_or_else(|| truncated(Part::SectionHeaders, bytes, ehdr.e_shoff, len))?;
    let sections = SectionHeaderTable::new(LittleEndian, Class::ELF64, table);
    for index in 0..sections.len() {
        let sh = sections
            .get(index)
            .map_err(|_| truncated(Part::SectionHeaders, bytes, 0, len))?;
        if sh.sh_type != abi::SHT_NOTE {
            continue;
        }
        let data = file_range(bytes, sh.sh_offset, sh.sh_size)
            .ok_or_else(|| truncated(Part::NoteSection(index), bytes, sh.sh_offset, sh.sh_size))?;
        read_notes(
            data,
            sh.sh_addralign,
            NoteContainer::Section(index),
            &mut notes,
        )?;
    }
    Ok(notes)
}

/// Decodes the notes in `data` (a note segment or section aligned to `align`) into `notes`, and
/// returns how many Xen notes there were. Notes of other owners and Xen notes of types Xenia
/// does not use are skipped, as Xen skips them.
fn read_notes(
    data: &[u8],
    align: u64,
    container: NoteContainer,
    notes: &mut XenNotes,
) -> Result<usize, ElfError> {
    // Names and values are padded to 4 bytes, or to 8 in a container aligned to 8 (as GNU
    // property notes are in ELF64).
    let pad = |n: u64| {
        if align >= 8 {
            n.next_multiple_of(8)
        } else {
            n.next_multiple_of(4)
        }
    };
    let len = data.len() as u64;
    let mut found = 0;
    let mut offset = 0u64;
    while offset < len {
        let malformed = |problem| ElfError::MalformedNote {
            container,
            offset,
            problem,
        };
        let word = |at: u64| {
            file_range(data, offset + at, 4)
                .and_then(|w| w.try_into().ok())
                .map(u32::from_le_bytes)
                .ok_or(malformed(NoteProblem::TruncatedHeader))
        };
        let (namesz, descsz, note_type) = (word(0)?, word(4)?, word(8)?);
        let name_start = offset + NOTE_HEADER_SIZE;
        let name = file_range(data, name_start, namesz.into())
            .ok_or(malformed(NoteProblem::NamePastEnd { namesz }))?;
        let desc_start = pad(name_start + u64::from(namesz));
        let desc = file_range(data, desc_start, descsz.into())
            .ok_or(malformed(NoteProblem::DescPastEnd { descsz }))?;
        if name.strip_suffix(b"\0").unwrap_or(name) == XEN_ELFNOTE_NAME.as_bytes() {
            found += 1;
            read_xen_note(note_type, desc, notes).map_err(malformed)?;
        }
        offset = pad(desc_start + u64::from(descsz));
    }
    Ok(found)
}

/// Decodes one Xen note of `note_type` with value `desc` into `notes`.
fn read_xen_note(note_type: u32, desc: &[u8], notes: &mut XenNotes) -> Result<(), NoteProblem> {
    let numeric = || match *desc {
        [a, b, c, d] => Ok(u64::from(u32::from_le_bytes([a, b, c, d]))),
        [a, b, c, d, e, f, g, h] => Ok(u64::from_le_bytes([a, b, c, d, e, f, g, h])),
        _ => Err(NoteProblem::NumericSize {
            note_type,
            size: desc.len() as u32,
        }),
    };
    let string = || {
        let text = desc.split(|&b| b == 0).next().unwrap_or_default();
        if text.len() > MAX_NOTE_STRING {
            return Err(NoteProblem::TooLong {
                note_type,
                len: text.len(),
            });
        }
        // Printable ASCII only: these strings end up in logs and on the console.
        if !text.iter().all(|b| b.is_ascii_graphic() || *b == b' ') {
            return Err(NoteProblem::NotPrintable { note_type });
        }
        Ok(String::from_utf8_lossy(text).into_owned())
    };
    match note_type {
        XEN_ELFNOTE_ENTRY => set(&mut notes.entry, numeric()?, note_type),
        XEN_ELFNOTE_HYPERCALL_PAGE => set(&mut notes.hypercall_page, numeric()?, note_type),
        XEN_ELFNOTE_VIRT_BASE => set(&mut notes.virt_base, numeric()?, note_type),
        XEN_ELFNOTE_PADDR_OFFSET => set(&mut notes.paddr_offset, numeric()?, note_type),
        XEN_ELFNOTE_FEATURES => set(&mut notes.features, string()?, note_type),
        XEN_ELFNOTE_GUEST_OS => set(&mut notes.guest_os, string()?, note_type),
        XEN_ELFNOTE_GUEST_VERSION => set(&mut notes.guest_version, string()?, note_type),
        XEN_ELFNOTE_XEN_VERSION => set(&mut notes.xen_version, string()?, note_type),
        XEN_ELFNOTE_LOADER => set(&mut notes.loader, string()?, note_type),
        XEN_ELFNOTE_PAE_MODE => set(&mut notes.pae_mode, string()?, note_type),
        XEN_ELFNOTE_BSD_SYMTAB => set(&mut notes.bsd_symtab, string()?, note_type),
        XEN_ELFNOTE_INIT_P2M => set(&mut notes.init_p2m, numeric()?, note_type),
        XEN_ELFNOTE_MOD_START_PFN => set(&mut notes.mod_start_pfn, numeric()?, note_type),
        XEN_ELFNOTE_HV_START_LOW => set(&mut notes.hv_start_low, numeric()?, note_type),
        XEN_ELFNOTE_SUSPEND_CANCEL => set(&mut notes.suspend_cancel, numeric()?, note_type),
        XEN_ELFNOTE_PHYS32_ENTRY => set(&mut notes.phys32_entry, numeric()?, note_type),
        // An array of 32-bit submaps (Xen's `elf_note_numeric_array`); Xen reads submap 0.
        XEN_ELFNOTE_SUPPORTED_FEATURES => match *desc {
            [a, b, c, d, ..] => set(
                &mut notes.supported_features,
                u32::from_le_bytes([a, b, c, d]),
                note_type,
            ),
            _ => Err(NoteProblem::NumericSize {
                note_type,
                size: desc.len() as u32,
            }),
        },
        _ => Ok(()),
    }
}

/// Records a note's value; a repeat must agree with the first (a kernel that says two things
/// about its entry point does not get to have both).
fn set<T: PartialEq>(slot: &mut Option<T>, value: T, note_type: u32) -> Result<(), NoteProblem> {
    match slot {
        Some(old) if *old != value => Err(NoteProblem::Conflicting { note_type }),
        _ => {
            *slot = Some(value);
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    const TEXT: u64 = 0xFFFF_FFFF_8100_0000;
    const DATA: u64 = 0xFFFF_FFFF_8100_4000;
    const BASE: u64 = 0xFFFF_FFFF_8000_0000;
    const FEATURES: &str = "!writable_page_tables|pae_pgdir_above_4gb";
    const PF_RX: u32 = abi::PF_R | abi::PF_X;
    const PF_RW: u32 = abi::PF_R | abi::PF_W;

    /// A program header as the builder writes it.
    #[derive(Clone)]
    struct Ph {
        p_type: u32,
        flags: u32,
        offset: u64,
        vaddr: u64,
        filesz: u64,
        memsz: u64,
        align: u64,
    }

    fn load(flags: u32, offset: u64, vaddr: u64, filesz: u64, memsz: u64) -> Ph {
        Ph {
            p_type: abi::PT_LOAD,
            flags,
            offset,
            vaddr,
            filesz,
            memsz,
            align: PAGE,
        }
    }

    /// A section header as the builder writes it.
    #[derive(Clone)]
    struct Sh {
        sh_type: u32,
        offset: u64,
        size: u64,
        align: u64,
    }

    /// One note: owner name, type, value, padded to 4 bytes.
    fn note(name: &str, note_type: u32, desc: &[u8]) -> Vec<u8> {
        note_padded(name, note_type, desc, 4)
    }

    fn note_padded(name: &str, note_type: u32, desc: &[u8], align: usize) -> Vec<u8> {
        let mut out = Vec::new();
        let name = [name.as_bytes(), b"\0"].concat();
        out.extend_from_slice(&(name.len() as u32).to_le_bytes());
        out.extend_from_slice(&(desc.len() as u32).to_le_bytes());
        out.extend_from_slice(&note_type.to_le_bytes());
        out.extend_from_slice(&name);
        out.resize(out.len().next_multiple_of(align), 0);
        out.extend_from_slice(desc);
        out.resize(out.len().next_multiple_of(align), 0);
        out
    }

    fn xen(note_type: u32, desc: &[u8]) -> Vec<u8> {
        note("Xen", note_type, desc)
    }

    fn xen_u64(note_type: u32, value: u64) -> Vec<u8> {
        xen(note_type, &value.to_le_bytes())
    }

    fn xen_str(note_type: u32, value: &str) -> Vec<u8> {
        xen(note_type, &[value.as_bytes(), b"\0"].concat())
    }

    /// Builds ELF64 images field by field, so that each test can break exactly one thing.
    #[derive(Clone)]
    struct Builder {
        ident: [u8; 16],
        e_type: u16,
        machine: u16,
        version: u32,
        entry: u64,
        phoff: u64,
        phentsize: u16,
        phnum: Option<u16>,
        phdrs: Vec<Ph>,
        shentsize: u16,
        shdrs: Vec<Sh>,
        blobs: Vec<(u64, Vec<u8>)>,
    }

    impl Builder {
        /// An empty x86-64 executable: no segments yet.
        fn empty() -> Self {
            let mut ident = [0; 16];
            ident[..4].copy_from_slice(&abi::ELFMAGIC);
            ident[abi::EI_CLASS] = abi::ELFCLASS64;
            ident[abi::EI_DATA] = abi::ELFDATA2LSB;
            ident[abi::EI_VERSION] = abi::EV_CURRENT;
            Self {
                ident,
                e_type: abi::ET_EXEC,
                machine: abi::EM_X86_64,
                version: 1,
                entry: 0,
                phoff: 64,
                phentsize: PHDR_SIZE,
                phnum: None,
                phdrs: Vec::new(),
                shentsize: SHDR_SIZE,
                shdrs: Vec::new(),
                blobs: Vec::new(),
            }
        }

        /// A Linux-like kernel: text, data with bss, and a note segment with the usual notes
        /// (plus a GNU one to be skipped). `e_entry` is physical, as Linux's is.
        fn kernel() -> Self {
            let mut b = Self::empty();
            b.entry = 0x100_0000;
            b.blob(0x1000, (0..0x3000).map(|i| (i % 251) as u8).collect());
            b.blob(0x4000, vec![0xDA; 0x1000]);
            b.phdrs.push(load(PF_RX, 0x1000, TEXT, 0x3000, 0x3000));
            b.phdrs.push(load(PF_RW, 0x4000, DATA, 0x1000, 0x3000));
            b.note_segment(
                [
                    note("GNU", 3, &[1, 2, 3, 4]),
                    xen_str(XEN_ELFNOTE_GUEST_OS, "linux"),
                    xen_str(XEN_ELFNOTE_GUEST_VERSION, "2.6"),
                    xen_str(XEN_ELFNOTE_XEN_VERSION, "xen-3.0"),
                    xen_u64(XEN_ELFNOTE_VIRT_BASE, BASE),
                    xen_u64(XEN_ELFNOTE_PADDR_OFFSET, 0),
                    xen_u64(XEN_ELFNOTE_ENTRY, TEXT + 0x10),
                    xen_u64(XEN_ELFNOTE_HYPERCALL_PAGE, TEXT + 0x1000),
                    xen_str(XEN_ELFNOTE_FEATURES, FEATURES),
                    xen_str(XEN_ELFNOTE_LOADER, "generic"),
                    xen(17, &[0xFF; 4]),
                ]
                .concat(),
            );
            b
        }

        fn blob(&mut self, offset: u64, bytes: Vec<u8>) {
            self.blobs.push((offset, bytes));
        }

        fn next_offset(&self) -> u64 {
            let end = self
                .blobs
                .iter()
                .map(|(o, b)| o + b.len() as u64)
                .max()
                .unwrap_or(0);
            end.max(0x1000).next_multiple_of(0x1000)
        }

        /// Adds a `PT_NOTE` segment holding `notes`.
        fn note_segment(&mut self, notes: Vec<u8>) {
            let offset = self.next_offset();
            let size = notes.len() as u64;
            self.blob(offset, notes);
            self.phdrs.push(Ph {
                p_type: abi::PT_NOTE,
                flags: abi::PF_R,
                offset,
                vaddr: 0,
                filesz: size,
                memsz: size,
                align: 4,
            });
        }

        /// Adds an `SHT_NOTE` section holding `notes`.
        fn note_section(&mut self, notes: Vec<u8>) {
            let offset = self.next_offset();
            let size = notes.len() as u64;
            self.blob(offset, notes);
            if self.shdrs.is_empty() {
                self.shdrs.push(Sh {
                    sh_type: 0,
                    offset: 0,
                    size: 0,
                    align: 0,
                });
            }
            self.shdrs.push(Sh {
                sh_type: abi::SHT_NOTE,
                offset,
                size,
                align: 4,
            });
        }

        /// Drops the note segments (their contents stay in the file).
        fn without_note_segments(mut self) -> Self {
            self.phdrs.retain(|p| p.p_type != abi::PT_NOTE);
            self
        }

        fn shoff(&self) -> u64 {
            self.next_offset()
        }

        fn build(&self) -> Vec<u8> {
            let shoff = if self.shdrs.is_empty() {
                0
            } else {
                self.shoff()
            };
            let mut out = vec![0u8; self.shoff() as usize];
            out.resize(out.len() + self.shdrs.len() * 64, 0);
            // A table at offset 0 or far away is left unwritten: those tests are about the header.
            let write_phdrs = self.phoff != 0 && self.phoff < 1 << 24;
            let phend = if write_phdrs {
                self.phoff as usize + self.phdrs.len() * 56
            } else {
                0
            };
            if out.len() < phend {
                out.resize(phend, 0);
            }
            for (offset, bytes) in &self.blobs {
                out[*offset as usize..][..bytes.len()].copy_from_slice(bytes);
            }
            let mut h = Vec::new();
            h.extend_from_slice(&self.ident);
            h.extend_from_slice(&self.e_type.to_le_bytes());
            h.extend_from_slice(&self.machine.to_le_bytes());
            h.extend_from_slice(&self.version.to_le_bytes());
            h.extend_from_slice(&self.entry.to_le_bytes());
            h.extend_from_slice(&self.phoff.to_le_bytes());
            h.extend_from_slice(&shoff.to_le_bytes());
            h.extend_from_slice(&0u32.to_le_bytes());
            h.extend_from_slice(&64u16.to_le_bytes());
            h.extend_from_slice(&self.phentsize.to_le_bytes());
            let phnum = self.phnum.unwrap_or(self.phdrs.len() as u16);
            h.extend_from_slice(&phnum.to_le_bytes());
            h.extend_from_slice(&self.shentsize.to_le_bytes());
            h.extend_from_slice(&(self.shdrs.len() as u16).to_le_bytes());
            h.extend_from_slice(&0u16.to_le_bytes());
            out[..64].copy_from_slice(&h);
            for (i, p) in self.phdrs.iter().enumerate().filter(|_| write_phdrs) {
                let mut e = Vec::new();
                e.extend_from_slice(&p.p_type.to_le_bytes());
                e.extend_from_slice(&p.flags.to_le_bytes());
                e.extend_from_slice(&p.offset.to_le_bytes());
                e.extend_from_slice(&p.vaddr.to_le_bytes());
                e.extend_from_slice(&p.vaddr.to_le_bytes());
                e.extend_from_slice(&p.filesz.to_le_bytes());
                e.extend_from_slice(&p.memsz.to_le_bytes());
                e.extend_from_slice(&p.align.to_le_bytes());
                out[self.phoff as usize + i * 56..][..56].copy_from_slice(&e);
            }
            for (i, s) in self.shdrs.iter().enumerate() {
                let mut e = Vec::new();
                e.extend_from_slice(&0u32.to_le_bytes());
                e.extend_from_slice(&s.sh_type.to_le_bytes());
                e.extend_from_slice(&0u64.to_le_bytes());
                e.extend_from_slice(&0u64.to_le_bytes());
                e.extend_from_slice(&s.offset.to_le_bytes());
                e.extend_from_slice(&s.size.to_le_bytes());
                e.extend_from_slice(&0u32.to_le_bytes());
                e.extend_from_slice(&0u32.to_le_bytes());
                e.extend_from_slice(&s.align.to_le_bytes());
                e.extend_from_slice(&0u64.to_le_bytes());
                out[shoff as usize + i * 64..][..64].copy_from_slice(&e);
            }
            out
        }

        fn parse(&self) -> Result<KernelImage, ElfError> {
            parse(&self.build())
        }
    }

    /// A kernel with no notes whose one text segment at `vaddr` of `memsz` bytes holds the
    /// entry point.
    fn bare(vaddr: u64, memsz: u64) -> Builder {
        let mut b = Builder::empty();
        b.entry = vaddr;
        b.blob(0x1000, vec![0x90; 0x1000]);
        b.phdrs
            .push(load(PF_RX, 0x1000 + vaddr % PAGE, vaddr, 0x10, memsz));
        b
    }

    fn malformed(b: &Builder) -> NoteProblem {
        match b.parse() {
            Err(ElfError::MalformedNote { problem, .. }) => problem,
            other => panic!("expected a malformed note, got {other:?}"),
        }
    }

    #[test]
    fn linux_like_kernel() {
        let image = Builder::kernel().parse().unwrap();
        assert_eq!(
            image.entry,
            TEXT + 0x10,
            "ENTRY overrides the physical e_entry"
        );
        assert_eq!(image.virt_start, BASE, "VIRT_BASE below the image is pfn 0");
        assert_eq!(image.virt_end, DATA + 0x3000);
        assert_eq!(
            image.segments,
            [
                Segment {
                    program_header: 0,
                    vaddr: TEXT,
                    file_offset: 0x1000,
                    file_size: 0x3000,
                    mem_size: 0x3000,
                    writable: false,
                    executable: true,
                },
                Segment {
                    program_header: 1,
                    vaddr: DATA,
                    file_offset: 0x4000,
                    file_size: 0x1000,
                    mem_size: 0x3000,
                    writable: true,
                    executable: false,
                },
            ]
        );
        let n = &image.notes;
        assert_eq!(n.hypercall_page, Some(TEXT + 0x1000));
        assert_eq!(n.virt_base, Some(BASE));
        assert_eq!(n.entry, Some(TEXT + 0x10));
        assert_eq!(n.paddr_offset, Some(0));
        assert_eq!(n.features.as_deref(), Some(FEATURES));
        assert_eq!(n.guest_os.as_deref(), Some("linux"));
        assert_eq!(n.guest_version.as_deref(), Some("2.6"));
        assert_eq!(n.xen_version.as_deref(), Some("xen-3.0"));
        assert_eq!(n.loader.as_deref(), Some("generic"));
    }

    #[test]
    fn lower_half_kernel_with_four_byte_notes_and_no_virt_base() {
        let mut b = bare(0x40_1000, 0x2000);
        b.entry = 0;
        b.note_segment(
            [
                xen(XEN_ELFNOTE_ENTRY, &0x40_1004u32.to_le_bytes()),
                xen(XEN_ELFNOTE_HYPERCALL_PAGE, &0x40_2000u32.to_le_bytes()),
            ]
            .concat(),
        );
        let image = b.parse().unwrap();
        assert_eq!(image.entry, 0x40_1004);
        assert_eq!(
            image.virt_start, 0x40_1000,
            "no VIRT_BASE: the lowest segment's page"
        );
        assert_eq!(image.virt_end, 0x40_3000);
        assert_eq!(image.notes.hypercall_page, Some(0x40_2000));
        assert_eq!(image.notes.virt_base, None);
    }

    #[test]
    fn unaligned_segment_start_and_end_round_out_to_pages() {
        let image = bare(0x40_0123, 0x1000).parse().unwrap();
        assert_eq!((image.virt_start, image.virt_end), (0x40_0000, 0x40_2000));
    }

    #[test]
    fn segments_are_sorted_and_empty_ones_dropped() {
        let mut b = Builder::kernel();
        b.phdrs.swap(0, 1);
        b.phdrs.push(load(PF_RW, 0, 0x1234_5000, 0, 0));
        let image = b.parse().unwrap();
        let order: Vec<_> = image.segments.iter().map(|s| s.program_header).collect();
        assert_eq!(order, [1, 0]);
        assert!(image.segments.windows(2).all(|w| w[0].end() <= w[1].vaddr));
    }

    #[test]
    fn load_copies_file_bytes_and_zeroes_bss() {
        let b = Builder::kernel();
        let bytes = b.build();
        let image = parse(&bytes).unwrap();
        let mut writes = Vec::new();
        let mut zeroes = Vec::new();
        load_into::<ElfError>(
            &image,
            &bytes,
            |va, data| {
                writes.push((va, data.to_vec()));
                Ok(())
            },
            |va, len| {
                zeroes.push((va, len));
                Ok(())
            },
        )
        .unwrap();
        assert_eq!(writes.len(), 2);
        assert_eq!(writes[0], (TEXT, bytes[0x1000..0x4000].to_vec()));
        assert_eq!(writes[1], (DATA, vec![0xDA; 0x1000]));
        assert_eq!(zeroes, [(DATA + 0x1000, 0x2000)]);
    }

    #[test]
    fn load_reports_caller_errors_and_short_files() {
        let bytes = Builder::kernel().build();
        let image = parse(&bytes).unwrap();
        let stop = ElfError::NoLoadSegments;
        let r = load_into(&image, &bytes, |_, _| Err(stop), |_, _| Ok(()));
        assert_eq!(r, Err(stop), "the callback's error comes back");
        let r = load_into(&image, &bytes[..0x2000], |_, _| Ok(()), |_, _| Ok(()));
        assert_eq!(
            r,
            Err(ElfError::Truncated {
                part: Part::Segment(0),
                end: 0x4000,
                file_len: 0x2000
            })
        );
    }

    #[test]
    fn not_elf() {
        assert_eq!(parse(b""), Err(ElfError::NotElf));
        assert_eq!(
            parse(b"\x7fEL"),
            Err(ElfError::NotElf),
            "too short to hold the magic"
        );
        assert_eq!(
            parse(b"MZ\x90\0 not an ELF file at all"),
            Err(ElfError::NotElf)
        );
        let mut bytes = Builder::kernel().build();
        bytes[1] = b'e';
        assert_eq!(parse(&bytes), Err(ElfError::NotElf));
    }

    #[test]
    fn truncated_header() {
        let bytes = Builder::kernel().build();
        assert_eq!(
            parse(&bytes[..10]),
            Err(ElfError::Truncated {
                part: Part::Header,
                end: 16,
                file_len: 10
            })
        );
        assert_eq!(
            parse(&bytes[..40]),
            Err(ElfError::Truncated {
                part: Part::Header,
                end: 64,
                file_len: 40
            })
        );
    }

    #[test]
    fn truncated_program_headers() {
        // The table starts inside the file and runs 2 entries past its end.
        let mut b = Builder::kernel();
        let len = b.build().len() as u64;
        b.phoff = len - 56;
        let bytes = b.build();
        assert_eq!(
            parse(&bytes[..len as usize]),
            Err(ElfError::Truncated {
                part: Part::ProgramHeaders,
                end: len - 56 + 3 * 56,
                file_len: len
            })
        );
        let mut b = Builder::kernel();
        b.phoff = u64::MAX - 8;
        assert!(matches!(
            b.parse(),
            Err(ElfError::Truncated {
                part: Part::ProgramHeaders,
                end: u64::MAX,
                ..
            })
        ));
    }

    #[test]
    fn truncated_segment_data() {
        let mut b = Builder::kernel();
        let len = b.build().len() as u64;
        b.phdrs[1].filesz = len;
        b.phdrs[1].memsz = len;
        assert_eq!(
            b.parse(),
            Err(ElfError::Truncated {
                part: Part::Segment(1),
                end: 0x4000 + len,
                file_len: len
            })
        );
        let mut b = Builder::kernel();
        b.phdrs[0].offset = u64::MAX - 0xFFF;
        assert!(matches!(
            b.parse(),
            Err(ElfError::Truncated {
                part: Part::Segment(0),
                end: u64::MAX,
                ..
            })
        ));
    }

    #[test]
    fn wrong_class() {
        let mut b = Builder::kernel();
        b.ident[abi::EI_CLASS] = abi::ELFCLASS32;
        assert_eq!(b.parse(), Err(ElfError::WrongClass { class: 1 }));
        b.ident[abi::EI_CLASS] = 7;
        assert_eq!(b.parse(), Err(ElfError::WrongClass { class: 7 }));
    }

    #[test]
    fn wrong_encoding() {
        let mut b = Builder::kernel();
        b.ident[abi::EI_DATA] = abi::ELFDATA2MSB;
        assert_eq!(b.parse(), Err(ElfError::WrongEncoding { encoding: 2 }));
        b.ident[abi::EI_DATA] = 0;
        assert_eq!(b.parse(), Err(ElfError::WrongEncoding { encoding: 0 }));
    }

    #[test]
    fn unsupported_version() {
        let mut b = Builder::kernel();
        b.ident[abi::EI_VERSION] = 2;
        assert_eq!(b.parse(), Err(ElfError::UnsupportedVersion { version: 2 }));
        let mut b = Builder::kernel();
        b.version = 0;
        assert_eq!(b.parse(), Err(ElfError::UnsupportedVersion { version: 0 }));
    }

    #[test]
    fn wrong_machine() {
        let mut b = Builder::kernel();
        b.machine = abi::EM_386;
        assert_eq!(b.parse(), Err(ElfError::WrongMachine { machine: 3 }));
    }

    #[test]
    fn wrong_type() {
        for e_type in [abi::ET_REL, abi::ET_DYN, abi::ET_CORE, 0] {
            let mut b = Builder::kernel();
            b.e_type = e_type;
            assert_eq!(b.parse(), Err(ElfError::WrongType { e_type }));
        }
    }

    #[test]
    fn bad_program_header_size() {
        let mut b = Builder::kernel();
        b.phentsize = 32;
        assert_eq!(
            b.parse(),
            Err(ElfError::BadEntrySize {
                table: Table::ProgramHeaders,
                size: 32
            })
        );
    }

    #[test]
    fn too_many_program_headers() {
        let mut b = Builder::kernel();
        b.phnum = Some(MAX_PROGRAM_HEADERS + 1);
        assert_eq!(
            b.parse(),
            Err(ElfError::TooManyProgramHeaders { count: 65 })
        );
        b.phnum = Some(abi::PN_XNUM);
        assert_eq!(
            b.parse(),
            Err(ElfError::TooManyProgramHeaders {
                count: abi::PN_XNUM
            })
        );
        // Exactly the limit is fine.
        let mut b = Builder::kernel();
        while b.phdrs.len() < usize::from(MAX_PROGRAM_HEADERS) {
            b.phdrs.push(Ph {
                p_type: abi::PT_NULL,
                ..b.phdrs[0].clone()
            });
        }
        assert!(b.parse().is_ok());
    }

    #[test]
    fn no_load_segments() {
        let mut b = Builder::kernel();
        b.phdrs.retain(|p| p.p_type != abi::PT_LOAD);
        assert_eq!(b.parse(), Err(ElfError::NoLoadSegments));
        let mut b = Builder::kernel();
        b.phoff = 0;
        assert_eq!(b.parse(), Err(ElfError::NoLoadSegments));
        let mut b = Builder::empty();
        b.phdrs.push(load(PF_RX, 0x1000, TEXT, 0, 0));
        assert_eq!(
            b.parse(),
            Err(ElfError::NoLoadSegments),
            "empty segments do not count"
        );
    }

    #[test]
    fn file_size_exceeds_mem_size() {
        let mut b = Builder::kernel();
        b.phdrs[1].memsz = 0x800;
        assert_eq!(
            b.parse(),
            Err(ElfError::FileSizeExceedsMemSize {
                segment: 1,
                file_size: 0x1000,
                mem_size: 0x800
            })
        );
    }

    #[test]
    fn overlapping_segments() {
        let mut b = Builder::kernel();
        b.phdrs[1].vaddr = TEXT + 0x2000;
        assert_eq!(
            b.parse(),
            Err(ElfError::Overlap {
                first: 0,
                second: 1,
                at: TEXT + 0x2000
            })
        );
        // Listed in the other order, and sharing only one byte.
        let mut b = Builder::kernel();
        b.phdrs[0].vaddr = DATA + 0x2000;
        b.phdrs[0].offset = 0x3000;
        b.phdrs[0].memsz = 0x1000;
        b.phdrs[0].filesz = 0x1000;
        b.phdrs[1].memsz = 0x2001;
        b.entry = DATA + 0x2000;
        b = b.without_note_segments();
        assert_eq!(
            b.parse(),
            Err(ElfError::Overlap {
                first: 1,
                second: 0,
                at: DATA + 0x2000
            })
        );
        // Touching is not overlapping.
        b.phdrs[1].memsz = 0x2000;
        assert!(b.parse().is_ok());
    }

    #[test]
    fn entry_outside_segments() {
        let mut b = Builder::kernel().without_note_segments();
        assert_eq!(
            b.parse(),
            Err(ElfError::EntryOutsideSegments { entry: 0x100_0000 })
        );
        b.entry = TEXT + 0x3000; // one past the end of text
        assert_eq!(
            b.parse(),
            Err(ElfError::EntryOutsideSegments {
                entry: TEXT + 0x3000
            })
        );
        b.entry = TEXT + 0x2FFF;
        assert_eq!(b.parse().unwrap().entry, TEXT + 0x2FFF);
    }

    #[test]
    fn entry_in_data_segment() {
        let mut b = Builder::kernel().without_note_segments();
        b.entry = DATA + 0x2000;
        assert_eq!(
            b.parse(),
            Err(ElfError::EntryNotExecutable {
                entry: DATA + 0x2000,
                segment: 1
            })
        );
    }

    #[test]
    fn segment_in_reserved_range() {
        let start = 0xFFFF_8000_0010_0000;
        let b = bare(start, 0x10_0000);
        let err = b.parse().unwrap_err();
        assert_eq!(
            err,
            ElfError::ReservedRange {
                segment: 0,
                start,
                end: 0xFFFF_8000_0020_0000
            }
        );
        assert_eq!(
            err.to_string(),
            "segment 0 at 0xffff800000100000..0xffff800000200000 lies in the hypervisor's \
             reserved range 0xffff800000000000..0xffff880000000000"
        );
        // Starting inside and ending past it.
        let start = HYPERVISOR_RESERVED.end - 0x1000;
        assert_eq!(
            bare(start, 0x2000).parse(),
            Err(ElfError::ReservedRange {
                segment: 0,
                start,
                end: start + 0x2000
            })
        );
        // Just past it is the guest's.
        assert!(bare(HYPERVISOR_RESERVED.end, 0x2000).parse().is_ok());
        // The last page below it is non-canonical, not reserved.
        assert!(matches!(
            bare(HYPERVISOR_RESERVED.start - PAGE, 0x1000).parse(),
            Err(ElfError::NonCanonical { .. })
        ));
    }

    #[test]
    fn non_canonical_segments() {
        let start = 0x0000_9000_0000_0000;
        assert_eq!(
            bare(start, 0x1000).parse(),
            Err(ElfError::NonCanonical {
                segment: 0,
                start,
                end: start + 0x1000
            })
        );
        // Starting canonical at the top of the lower half and running into the hole.
        let start = 0x7FFF_FFFF_F000;
        assert_eq!(
            bare(start, 0x2000).parse(),
            Err(ElfError::NonCanonical {
                segment: 0,
                start,
                end: start + 0x2000
            })
        );
        assert!(
            bare(start, 0x1000).parse().is_ok(),
            "ending exactly at the hole is fine"
        );
    }

    #[test]
    fn address_overflow() {
        let vaddr = 0xFFFF_FFFF_FFFF_F000;
        assert_eq!(
            bare(vaddr, 0x2000).parse(),
            Err(ElfError::AddressOverflow {
                segment: 0,
                vaddr,
                mem_size: 0x2000
            })
        );
        // Ending exactly at 2^64: not representable as a half-open end.
        assert_eq!(
            bare(vaddr, 0x1000).parse(),
            Err(ElfError::AddressOverflow {
                segment: 0,
                vaddr,
                mem_size: 0x1000
            })
        );
        // Ending inside the last page, whose end rounds up past 2^64.
        let vaddr = 0xFFFF_FFFF_FFFF_F800;
        assert_eq!(
            bare(vaddr, 0x100).parse(),
            Err(ElfError::AddressOverflow {
                segment: 0,
                vaddr,
                mem_size: 0x100
            })
        );
        assert!(bare(0xFFFF_FFFF_FFFF_E000, 0x1000).parse().is_ok());
    }

    #[test]
    fn absurd_sizes() {
        let mut b = Builder::kernel();
        b.phdrs[1].memsz = MAX_KERNEL_SPAN + 1;
        assert_eq!(
            b.parse(),
            Err(ElfError::SegmentTooLarge {
                segment: 1,
                mem_size: MAX_KERNEL_SPAN + 1
            })
        );
        b.phdrs[1].memsz = u64::MAX;
        assert!(matches!(b.parse(), Err(ElfError::SegmentTooLarge { .. })));
        // Two small segments 1 GiB apart.
        let mut b = Builder::kernel().without_note_segments();
        b.entry = TEXT;
        b.phdrs[1].vaddr = TEXT + MAX_KERNEL_SPAN;
        assert_eq!(
            b.parse(),
            Err(ElfError::SpanTooLarge {
                start: TEXT,
                end: TEXT + MAX_KERNEL_SPAN + 0x3000
            })
        );
        // The span counts from VIRT_BASE.
        let mut b = Builder::kernel();
        b.note_segment(xen_u64(XEN_ELFNOTE_VIRT_BASE, BASE).repeat(1));
        assert!(b.parse().is_ok(), "an identical repeated note is fine");
        let mut b = Builder::kernel().without_note_segments();
        b.entry = TEXT;
        b.note_segment(xen_u64(XEN_ELFNOTE_VIRT_BASE, TEXT - MAX_KERNEL_SPAN));
        assert_eq!(
            b.parse(),
            Err(ElfError::SpanTooLarge {
                start: TEXT - MAX_KERNEL_SPAN,
                end: DATA + 0x3000
            })
        );
    }

    #[test]
    fn misaligned_segment() {
        let mut b = Builder::kernel();
        b.phdrs[1].offset = 0x4010;
        assert_eq!(
            b.parse(),
            Err(ElfError::Misaligned {
                segment: 1,
                vaddr: DATA,
                offset: 0x4010
            })
        );
        // Congruent but not page aligned is fine.
        let mut b = Builder::kernel();
        b.phdrs[1].offset = 0x4010;
        b.phdrs[1].vaddr = DATA + 0x10;
        b.phdrs[1].filesz = 0xFF0;
        assert!(b.parse().is_ok());
    }

    /// The kernel with its notes replaced by `notes` (ENTRY kept so the image stays valid).
    fn with_notes(notes: Vec<u8>) -> Builder {
        let mut b = Builder::kernel().without_note_segments();
        b.note_segment([xen_u64(XEN_ELFNOTE_ENTRY, TEXT), notes].concat());
        b
    }

    #[test]
    fn hypercall_page_checks() {
        let address = TEXT + 0x1800;
        assert_eq!(
            with_notes(xen_u64(XEN_ELFNOTE_HYPERCALL_PAGE, address)).parse(),
            Err(ElfError::HypercallPageMisaligned { address })
        );
        for address in [TEXT - PAGE, DATA + 0x3000, TEXT + 0x3000, 0] {
            assert_eq!(
                with_notes(xen_u64(XEN_ELFNOTE_HYPERCALL_PAGE, address)).parse(),
                Err(ElfError::HypercallPageOutside { address }),
                "{address:#x}"
            );
        }
        // Any segment's page range will do, including the bss.
        let image = with_notes(xen_u64(XEN_ELFNOTE_HYPERCALL_PAGE, DATA + 0x2000)).parse();
        assert_eq!(image.unwrap().notes.hypercall_page, Some(DATA + 0x2000));
    }

    #[test]
    fn virt_base_checks() {
        let bad = |virt_base: u64, b: Builder| match b.parse() {
            Err(ElfError::BadVirtBase {
                virt_base: v,
                problem,
                ..
            }) if v == virt_base => problem,
            other => panic!("{other:?}"),
        };
        let note = |v| with_notes(xen_u64(XEN_ELFNOTE_VIRT_BASE, v));
        assert_eq!(bad(BASE + 1, note(BASE + 1)), VirtBaseProblem::Misaligned);
        assert_eq!(
            bad(TEXT + PAGE, note(TEXT + PAGE)),
            VirtBaseProblem::AboveImage
        );
        // An image just above the reserved range, with VIRT_BASE inside it or below it.
        let lowest = HYPERVISOR_RESERVED.end;
        let mut b = bare(lowest, 0x1000);
        b.note_segment(xen_u64(XEN_ELFNOTE_VIRT_BASE, lowest - 0x10_0000));
        assert_eq!(bad(lowest - 0x10_0000, b), VirtBaseProblem::Reserved);
        let mut b = bare(lowest, 0x1000);
        b.note_segment(xen_u64(XEN_ELFNOTE_VIRT_BASE, 0x0000_9000_0000_0000));
        assert_eq!(bad(0x0000_9000_0000_0000, b), VirtBaseProblem::NonCanonical);
        // VIRT_BASE equal to the lowest segment is fine.
        assert_eq!(note(TEXT).parse().unwrap().virt_start, TEXT);
    }

    #[test]
    fn numeric_notes_must_be_four_or_eight_bytes() {
        for len in [0usize, 1, 2, 3, 5, 16] {
            let b = with_notes(xen(XEN_ELFNOTE_VIRT_BASE, &vec![0; len]));
            assert_eq!(
                malformed(&b),
                NoteProblem::NumericSize {
                    note_type: XEN_ELFNOTE_VIRT_BASE,
                    size: len as u32
                }
            );
        }
    }

    #[test]
    fn string_notes_must_be_printable_and_short() {
        let b = with_notes(xen(XEN_ELFNOTE_GUEST_OS, b"li\x1b[2Jnux\0"));
        assert_eq!(
            malformed(&b),
            NoteProblem::NotPrintable {
                note_type: XEN_ELFNOTE_GUEST_OS
            }
        );
        let b = with_notes(xen(XEN_ELFNOTE_FEATURES, "é".as_bytes()));
        assert_eq!(
            malformed(&b),
            NoteProblem::NotPrintable {
                note_type: XEN_ELFNOTE_FEATURES
            }
        );
        let long = "x".repeat(MAX_NOTE_STRING + 1);
        let b = with_notes(xen_str(XEN_ELFNOTE_LOADER, &long));
        assert_eq!(
            malformed(&b),
            NoteProblem::TooLong {
                note_type: XEN_ELFNOTE_LOADER,
                len: MAX_NOTE_STRING + 1
            }
        );
        // No NUL at all, or bytes after it: the text before the first NUL counts.
        let b = with_notes(
            [
                xen(XEN_ELFNOTE_GUEST_OS, b"xenia"),
                xen(7, b"1.0\0junk\x01"),
            ]
            .concat(),
        );
        let notes = b.parse().unwrap().notes;
        assert_eq!(notes.guest_os.as_deref(), Some("xenia"));
        assert_eq!(notes.guest_version.as_deref(), Some("1.0"));
    }

    #[test]
    fn conflicting_notes() {
        let b = with_notes(xen_u64(XEN_ELFNOTE_ENTRY, TEXT + 4));
        assert_eq!(
            malformed(&b),
            NoteProblem::Conflicting {
                note_type: XEN_ELFNOTE_ENTRY
            }
        );
        let b = with_notes(xen_u64(XEN_ELFNOTE_ENTRY, TEXT));
        assert_eq!(
            b.parse().unwrap().entry,
            TEXT,
            "a repeat that agrees is fine"
        );
        let b = with_notes([xen_str(6, "a"), xen_str(6, "b")].concat());
        assert_eq!(malformed(&b), NoteProblem::Conflicting { note_type: 6 });
        // Across two note segments too.
        let mut b = Builder::kernel();
        b.note_segment(xen_str(XEN_ELFNOTE_FEATURES, ""));
        assert_eq!(
            malformed(&b),
            NoteProblem::Conflicting {
                note_type: XEN_ELFNOTE_FEATURES
            }
        );
    }

    #[test]
    fn broken_note_framing() {
        // A header cut short.
        let b = with_notes(vec![4, 0, 0, 0, 0, 0]);
        assert_eq!(malformed(&b), NoteProblem::TruncatedHeader);
        // A name running past the end.
        let mut n = xen_str(6, "linux");
        n[0] = 200;
        assert_eq!(
            malformed(&with_notes(n)),
            NoteProblem::NamePastEnd { namesz: 200 }
        );
        let mut n = xen_str(6, "linux");
        n[0..4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(
            malformed(&with_notes(n)),
            NoteProblem::NamePastEnd { namesz: u32::MAX }
        );
        // A value running past the end.
        let mut n = xen_str(6, "linux");
        n[4..8].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(
            malformed(&with_notes(n)),
            NoteProblem::DescPastEnd { descsz: u32::MAX }
        );
        // Where and in which segment, in the message.
        let b = with_notes(vec![1, 2, 3]);
        let err = b.parse().unwrap_err();
        assert_eq!(
            err,
            ElfError::MalformedNote {
                container: NoteContainer::Segment(2),
                offset: 0x18,
                problem: NoteProblem::TruncatedHeader
            }
        );
        assert_eq!(
            err.to_string(),
            "malformed note at offset 0x18 of note segment 2: the note header is cut short"
        );
    }

    #[test]
    fn note_segment_past_end_of_file() {
        let mut b = Builder::kernel();
        let len = b.build().len() as u64;
        b.phdrs[2].filesz = len;
        assert!(matches!(
            b.parse(),
            Err(ElfError::Truncated {
                part: Part::Segment(2),
                ..
            })
        ));
    }

    #[test]
    fn notes_in_an_eight_aligned_segment() {
        let mut b = Builder::kernel().without_note_segments();
        let notes = [
            note_padded("GNU", 5, &[1, 2, 3, 4, 5], 8),
            note_padded("Xen", XEN_ELFNOTE_GUEST_OS, b"xenia\0", 8),
            note_padded("Xen", XEN_ELFNOTE_ENTRY, &TEXT.to_le_bytes(), 8),
        ]
        .concat();
        b.note_segment(notes);
        b.phdrs.last_mut().unwrap().align = 8;
        let image = b.parse().unwrap();
        assert_eq!(image.notes.guest_os.as_deref(), Some("xenia"));
        assert_eq!(image.entry, TEXT);
    }

    #[test]
    fn notes_from_sections_when_no_segment_has_any() {
        let mut b = Builder::kernel().without_note_segments();
        b.note_section(note("GNU", 1, b"abcd"));
        b.note_section([xen_u64(XEN_ELFNOTE_ENTRY, TEXT + 8), xen_str(6, "xenia")].concat());
        let image = b.parse().unwrap();
        assert_eq!(image.entry, TEXT + 8);
        assert_eq!(image.notes.guest_os.as_deref(), Some("xenia"));
        // A note segment without Xen notes does not hide the sections.
        b.note_segment(note("GNU", 1, b"abcd"));
        assert_eq!(b.parse().unwrap().entry, TEXT + 8);
        // Segments win when they have Xen notes: the section's conflicting values are unread.
        let mut b = Builder::kernel();
        b.note_section(xen_u64(XEN_ELFNOTE_ENTRY, 0));
        assert_eq!(b.parse().unwrap().entry, TEXT + 0x10);
    }

    #[test]
    fn broken_section_headers() {
        let mut b = Builder::kernel().without_note_segments();
        b.note_section(xen_u64(XEN_ELFNOTE_ENTRY, TEXT));
        b.shentsize = 40;
        assert_eq!(
            b.parse(),
            Err(ElfError::BadEntrySize {
                table: Table::SectionHeaders,
                size: 40
            })
        );
        b.shentsize = SHDR_SIZE;
        let bytes = b.build();
        let cut = bytes.len() - 1;
        assert_eq!(
            parse(&bytes[..cut]),
            Err(ElfError::Truncated {
                part: Part::SectionHeaders,
                end: bytes.len() as u64,
                file_len: cut as u64
            })
        );
        b.shdrs[1].size = 0x10_0000;
        assert!(matches!(
            b.parse(),
            Err(ElfError::Truncated {
                part: Part::NoteSection(1),
                ..
            })
        ));
        b.shdrs[1].size = 3;
        assert!(matches!(
            b.parse(),
            Err(ElfError::MalformedNote {
                container: NoteContainer::Section(1),
                ..
            })
        ));
    }

    #[test]
    fn every_error_has_its_own_message() {
        let errors = [
            ElfError::NotElf,
            ElfError::Truncated {
                part: Part::Header,
                end: 64,
                file_len: 3,
            },
            ElfError::Truncated {
                part: Part::ProgramHeaders,
                end: 64,
                file_len: 3,
            },
            ElfError::Truncated {
                part: Part::SectionHeaders,
                end: 64,
                file_len: 3,
            },
            ElfError::Truncated {
                part: Part::Segment(1),
                end: 64,
                file_len: 3,
            },
            ElfError::Truncated {
                part: Part::NoteSection(1),
                end: 64,
                file_len: 3,
            },
            ElfError::WrongClass { class: 1 },
            ElfError::WrongEncoding { encoding: 2 },
            ElfError::UnsupportedVersion { version: 2 },
            ElfError::WrongMachine { machine: 3 },
            ElfError::WrongType { e_type: 3 },
            ElfError::BadEntrySize {
                table: Table::ProgramHeaders,
                size: 1,
            },
            ElfError::BadEntrySize {
                table: Table::SectionHeaders,
                size: 1,
            },
            ElfError::TooManyProgramHeaders { count: 65 },
            ElfError::NoLoadSegments,
            ElfError::FileSizeExceedsMemSize {
                segment: 1,
                file_size: 2,
                mem_size: 1,
            },
            ElfError::SegmentTooLarge {
                segment: 1,
                mem_size: 1 << 40,
            },
            ElfError::Misaligned {
                segment: 1,
                vaddr: 0x1000,
                offset: 0x10,
            },
            ElfError::AddressOverflow {
                segment: 1,
                vaddr: !0,
                mem_size: 2,
            },
            ElfError::NonCanonical {
                segment: 1,
                start: 1 << 47,
                end: (1 << 47) + 1,
            },
            ElfError::ReservedRange {
                segment: 1,
                start: 0,
                end: 1,
            },
            ElfError::Overlap {
                first: 1,
                second: 2,
                at: 0x1000,
            },
            ElfError::SpanTooLarge {
                start: 0,
                end: 1 << 40,
            },
            ElfError::EntryOutsideSegments { entry: 1 },
            ElfError::EntryNotExecutable {
                entry: 1,
                segment: 2,
            },
            ElfError::HypercallPageMisaligned { address: 1 },
            ElfError::HypercallPageOutside { address: 0x1000 },
        ];
        let problems = [
            VirtBaseProblem::Misaligned,
            VirtBaseProblem::AboveImage,
            VirtBaseProblem::NonCanonical,
            VirtBaseProblem::Reserved,
        ]
        .map(|problem| ElfError::BadVirtBase {
            virt_base: 1,
            lowest: 0,
            problem,
        });
        let notes = [
            NoteProblem::TruncatedHeader,
            NoteProblem::NamePastEnd { namesz: 9 },
            NoteProblem::DescPastEnd { descsz: 9 },
            NoteProblem::NumericSize {
                note_type: 2,
                size: 3,
            },
            NoteProblem::NotPrintable { note_type: 6 },
            NoteProblem::TooLong {
                note_type: 10,
                len: 2000,
            },
            NoteProblem::Conflicting { note_type: 1 },
        ]
        .map(|problem| ElfError::MalformedNote {
            container: NoteContainer::Section(3),
            offset: 0,
            problem,
        });
        let all: Vec<String> = errors
            .iter()
            .chain(&problems)
            .chain(&notes)
            .map(|e| e.to_string())
            .collect();
        for (i, m) in all.iter().enumerate() {
            assert!(!all[..i].contains(m), "duplicate message {m}");
        }
        assert_eq!(
            ElfError::WrongClass { class: 1 }.to_string(),
            "ELF class 1 (ELFCLASS32), expected ELFCLASS64"
        );
        assert_eq!(
            notes[3].to_string(),
            "malformed note at offset 0x0 of note section 3: Xen note HYPERCALL_PAGE (type 2) \
             has a 3-byte value, expected 4 or 8"
        );
    }

    /// Flipping bytes anywhere and cutting the file anywhere must give an answer, never a panic.
    #[test]
    fn mutated_images_never_panic() {
        let mut b = Builder::kernel();
        b.note_section(xen_u64(XEN_ELFNOTE_ENTRY, TEXT));
        let bytes = b.build();
        let interesting: Vec<usize> = (0..0x200).chain(0x5000..bytes.len()).collect();
        for &i in &interesting {
            for v in [0x00, 0x01, 0x7F, 0x80, 0xFF] {
                let mut m = bytes.clone();
                m[i] = v;
                let _ = parse(&m);
            }
        }
        for len in 0..bytes.len() {
            let _ = parse(&bytes[..len]);
        }
    }
}
