//! The UEFI memory map as GRUB hands it over on UEFI machines (multiboot2 tag 17, "EFI memory
//! map"), turned into the same [`RawEntry`] list as the multiboot2 map, and the choice between
//! the two when GRUB gives both.
//!
//! The tag's payload is `descr_size: u32`, `descr_vers: u32`, then the firmware's
//! `EFI_MEMORY_DESCRIPTOR`s, each `descr_size` bytes long (Multiboot2 specification §3.6.13;
//! UEFI 2.10 §7.2, `GetMemoryMap()`). A descriptor starts with `Type: u32`, 4 bytes of
//! padding, `PhysicalStart: u64`, `VirtualStart: u64`, `NumberOfPages: u64` (4 KiB pages) and
//! `Attribute: u64`: 40 bytes, and firmware may make each one longer (OVMF uses 48).
//!
//! GRUB writes this map at `ExitBootServices()` (it exits boot services because Xenia's
//! multiboot2 header does not ask it to keep them), so boot-services code and data, loader
//! code and data and conventional memory are all free RAM by then.
//!
//! Pure logic: the payload is parsed from bytes, nothing is trusted, nothing panics.

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use super::memmap::{EntryKind, RawEntry};

/// The only descriptor version UEFI has defined (`EFI_MEMORY_DESCRIPTOR_VERSION`).
pub const DESCRIPTOR_VERSION: u32 = 1;

/// Bytes of an `EFI_MEMORY_DESCRIPTOR` as UEFI 2.10 §7.2 defines it; `descr_size` may be more.
pub const DESCRIPTOR_MIN_SIZE: usize = 40;

/// Size of a UEFI page (`NumberOfPages` counts these, whatever the CPU's page size).
pub const EFI_PAGE_SIZE: u64 = 4096;

/// At most this many descriptors are read; a larger map is cut there, with a problem reported.
/// Real firmware has a few hundred.
pub const MAX_DESCRIPTORS: usize = 4096;

/// What an `EFI_MEMORY_TYPE` (UEFI 2.10 §7.2, table "Memory Type Usage after
/// ExitBootServices()") is once boot services have been exited.
pub const fn kind_after_exit_boot_services(efi_type: u32) -> EntryKind {
    match efi_type {
        // EfiLoaderCode, EfiLoaderData, EfiBootServicesCode, EfiBootServicesData,
        // EfiConventionalMemory: free for the OS after ExitBootServices().
        1..=4 | 7 => EntryKind::Usable,
        // EfiUnusableMemory: memory with errors.
        8 => EntryKind::Defective,
        // EfiACPIReclaimMemory.
        9 => EntryKind::AcpiReclaimable,
        // EfiACPIMemoryNVS.
        10 => EntryKind::AcpiNvs,
        // EfiReservedMemoryType, EfiRuntimeServicesCode/Data (the firmware's for good),
        // EfiMemoryMappedIO, EfiMemoryMappedIOPortSpace, EfiPalCode, EfiPersistentMemory (not
        // RAM for an allocator), EfiUnacceptedMemoryType (must be accepted first, which Xenia
        // does not do), and every OEM, OS or future type: not Xenia's to use.
        _ => EntryKind::Reserved,
    }
}

/// The name of an `EFI_MEMORY_TYPE`, for log lines.
pub const fn type_name(efi_type: u32) -> &'static str {
    match efi_type {
        0 => "reserved",
        1 => "loader code",
        2 => "loader data",
        3 => "boot services code",
        4 => "boot services data",
        5 => "runtime services code",
        6 => "runtime services data",
        7 => "conventional",
        8 => "unusable",
        9 => "ACPI reclaim",
        10 => "ACPI NVS",
        11 => "MMIO",
        12 => "MMIO port space",
        13 => "PAL code",
        14 => "persistent",
        15 => "unaccepted",
        _ => "OEM or unknown",
    }
}

/// A parsed EFI memory map: the entries, and what was odd about the tag.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EfiMap {
    /// One entry per descriptor, in the firmware's order.
    pub entries: Vec<RawEntry>,
    /// Oddities that did not stop the parse (a trailing partial descriptor, a cut map).
    pub problems: Vec<String>,
}

fn le_u32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

fn le_u64(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(b.get(at..at + 8)?.try_into().ok()?))
}

/// Parses the payload of a multiboot2 EFI memory map tag (everything after its 8-byte type and
/// size header). An error says why the whole tag is unusable (the caller then falls back to
/// the multiboot2 memory map).
pub fn parse(payload: &[u8]) -> Result<EfiMap, String> {
    let (Some(descr_size), Some(descr_vers)) = (le_u32(payload, 0), le_u32(payload, 4)) else {
        return Err(format!(
            "the EFI memory map tag is {} bytes, too short for its header",
            payload.len()
        ));
    };
    if descr_vers != DESCRIPTOR_VERSION {
        return Err(format!(
            "the EFI memory map has descriptor version {descr_vers}, not {DESCRIPTOR_VERSION}"
        ));
    }
    let size = descr_size as usize;
    if size < DESCRIPTOR_MIN_SIZE {
        return Err(format!(
            "the EFI memory map's descriptors are {size} bytes, fewer than the \
             {DESCRIPTOR_MIN_SIZE} UEFI defines"
        ));
    }
    let map = &payload[8..];
    let mut out = EfiMap::default();
    let whole = map.len() / size;
    if !map.len().is_multiple_of(size) {
        out.problems.push(format!(
            "the EFI memory map ends with {} bytes of a partial descriptor; they are ignored",
            map.len() % size
        ));
    }
    if whole > MAX_DESCRIPTORS {
        out.problems.push(format!(
            "the EFI memory map has {whole} descriptors; only the first {MAX_DESCRIPTORS} are read"
        ));
    }
    out.entries.reserve(whole.min(MAX_DESCRIPTORS));
    for desc in map.chunks_exact(size).take(MAX_DESCRIPTORS) {
        // `desc` is at least DESCRIPTOR_MIN_SIZE bytes, so these reads cannot fail.
        let (Some(typ), Some(base), Some(pages)) =
            (le_u32(desc, 0), le_u64(desc, 8), le_u64(desc, 24))
        else {
            continue;
        };
        out.entries.push(RawEntry {
            base,
            // An impossible page count becomes a length that runs past the address space,
            // which `memmap::layout` reports and handles.
            len: pages.saturating_mul(EFI_PAGE_SIZE),
            kind: kind_after_exit_boot_services(typ),
        });
    }
    Ok(out)
}

/// Which memory map the hypervisor uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MapSource {
    /// The UEFI memory map (multiboot2 tag 17).
    Efi,
    /// The multiboot2 memory map (tag 6: E820 on BIOS, GRUB's translation of the UEFI map on
    /// UEFI).
    Multiboot2,
    /// Neither: no memory is known.
    None,
}

/// Chooses between the multiboot2 map and the EFI map when GRUB gives either or both.
///
/// The EFI map wins when it parses and names some usable memory: it is the firmware's own,
/// with its own types, taken at `ExitBootServices()`, after GRUB's last allocation; GRUB
/// builds the multiboot2 map earlier, from the same firmware call, and translates the types
/// (on firmware whose map GRUB reads right, the two agree). The multiboot2 map is the
/// fallback when the EFI one is missing, malformed or empty. Returns the entries, their
/// source and the problems found (to be logged).
///
/// When both are given and their usable totals differ by more than 1/64 (a few MiB on a
/// small machine: more than GRUB's own allocations explain), that is reported too: on a real
/// PC it points at firmware or a GRUB build that reads the map wrong.
pub fn choose(
    multiboot2: Option<Vec<RawEntry>>,
    efi_payload: Option<&[u8]>,
) -> (Vec<RawEntry>, MapSource, Vec<String>) {
    let mut problems = Vec::new();
    if let Some(payload) = efi_payload {
        match parse(payload) {
            Ok(map)
                if map
                    .entries
                    .iter()
                    .any(|e| e.kind == EntryKind::Usable && e.len > 0) =>
            {
                problems.extend(map.problems);
                if let Some(basic) = &multiboot2 {
                    let (efi, mb2) = (usable_total(&map.entries), usable_total(basic));
                    if efi.abs_diff(mb2) > efi.max(mb2) / 64 {
                        problems.push(format!(
                            "the EFI memory map names {} MiB usable and the multiboot2 map {} \
                             MiB; the EFI one is used",
                            efi >> 20,
                            mb2 >> 20
                        ));
                    }
                }
                return (map.entries, MapSource::Efi, problems);
            }
            Ok(map) => {
                problems.extend(map.problems);
                problems.push("the EFI memory map names no usable memory; it is not used".into());
            }
            Err(why) => problems.push(format!("{why}; it is not used")),
        }
    }
    match multiboot2 {
        Some(entries) => (entries, MapSource::Multiboot2, problems),
        None => (Vec::new(), MapSource::None, problems),
    }
}

/// The bytes `entries` call usable, overlaps counted twice (only for comparing two maps).
fn usable_total(entries: &[RawEntry]) -> u64 {
    entries
        .iter()
        .filter(|e| e.kind == EntryKind::Usable)
        .fold(0u64, |sum, e| sum.saturating_add(e.len))
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    /// A descriptor of `size` bytes (at least 40).
    fn desc(size: usize, typ: u32, base: u64, pages: u64) -> Vec<u8> {
        let mut d = vec![0u8; size];
        d[0..4].copy_from_slice(&typ.to_le_bytes());
        d[8..16].copy_from_slice(&base.to_le_bytes());
        d[16..24].copy_from_slice(&0xdead_0000u64.to_le_bytes());
        d[24..32].copy_from_slice(&pages.to_le_bytes());
        d[32..40].copy_from_slice(&0xfu64.to_le_bytes());
        d
    }

    fn payload(size: u32, version: u32, descs: &[Vec<u8>]) -> Vec<u8> {
        let mut p = Vec::new();
        p.extend_from_slice(&size.to_le_bytes());
        p.extend_from_slice(&version.to_le_bytes());
        for d in descs {
            p.extend_from_slice(d);
        }
        p
    }

    fn usable(base: u64, len: u64) -> RawEntry {
        RawEntry {
            base,
            len,
            kind: EntryKind::Usable,
        }
    }

    #[test]
    fn types_after_exit_boot_services() {
        for t in [1, 2, 3, 4, 7] {
            assert_eq!(kind_after_exit_boot_services(t), EntryKind::Usable, "{t}");
        }
        for t in [0, 5, 6, 11, 12, 13, 14, 15, 16, 0x7000_0000, 0x8000_0001] {
            assert_eq!(kind_after_exit_boot_services(t), EntryKind::Reserved, "{t}");
        }
        assert_eq!(kind_after_exit_boot_services(8), EntryKind::Defective);
        assert_eq!(kind_after_exit_boot_services(9), EntryKind::AcpiReclaimable);
        assert_eq!(kind_after_exit_boot_services(10), EntryKind::AcpiNvs);
        assert_eq!(type_name(7), "conventional");
        assert_eq!(type_name(99), "OEM or unknown");
    }

    #[test]
    fn ovmf_like_map_with_48_byte_descriptors() {
        let p = payload(
            48,
            1,
            &[
                desc(48, 3, 0, 0xa0),
                desc(48, 7, 0x10_0000, 0x700),
                desc(48, 10, 0x80_0000, 8),
                desc(48, 6, 0x3f00_0000, 0x10),
                desc(48, 9, 0x3fb0_0000, 4),
            ],
        );
        let map = parse(&p).unwrap();
        assert!(map.problems.is_empty());
        assert_eq!(
            map.entries,
            vec![
                usable(0, 0xa_0000),
                usable(0x10_0000, 0x70_0000),
                RawEntry {
                    base: 0x80_0000,
                    len: 0x8000,
                    kind: EntryKind::AcpiNvs
                },
                RawEntry {
                    base: 0x3f00_0000,
                    len: 0x1_0000,
                    kind: EntryKind::Reserved
                },
                RawEntry {
                    base: 0x3fb0_0000,
                    len: 0x4000,
                    kind: EntryKind::AcpiReclaimable
                },
            ]
        );
    }

    #[test]
    fn malformed_tags_are_refused_with_a_reason() {
        assert!(parse(&[]).unwrap_err().contains("too short"));
        assert!(parse(&[48, 0, 0]).unwrap_err().contains("too short"));
        let p = payload(48, 2, &[desc(48, 7, 0, 1)]);
        assert!(parse(&p).unwrap_err().contains("version 2"));
        let p = payload(24, 1, &[]);
        assert!(parse(&p).unwrap_err().contains("24 bytes"));
        let p = payload(0, 1, &[]);
        assert!(parse(&p).is_err());
    }

    #[test]
    fn partial_descriptor_and_huge_page_counts() {
        let mut p = payload(
            40,
            1,
            &[desc(40, 7, 0x10_0000, 1), desc(40, 7, 0x1000, u64::MAX)],
        );
        p.extend_from_slice(&[1, 2, 3]);
        let map = parse(&p).unwrap();
        assert_eq!(map.entries.len(), 2);
        assert_eq!(map.entries[0], usable(0x10_0000, 0x1000));
        assert_eq!(map.entries[1].len, u64::MAX);
        assert_eq!(map.problems.len(), 1);
        assert!(map.problems[0].contains("3 bytes of a partial descriptor"));
    }

    #[test]
    fn too_many_descriptors_are_cut() {
        let descs: Vec<Vec<u8>> = (0..MAX_DESCRIPTORS as u64 + 3)
            .map(|i| desc(40, 7, i * 0x1000, 1))
            .collect();
        let map = parse(&payload(40, 1, &descs)).unwrap();
        assert_eq!(map.entries.len(), MAX_DESCRIPTORS);
        assert!(map.problems[0].contains("only the first 4096"));
    }

    #[test]
    fn efi_map_preferred_then_multiboot2() {
        // GRUB's translation, with the low 640 KiB as one entry where the firmware has two.
        let basic = vec![usable(0, 0xa_0000), usable(0x10_0000, 0x10_0000)];
        let efi = payload(
            48,
            1,
            &[
                desc(48, 3, 0, 0x10),
                desc(48, 7, 0x1_0000, 0x90),
                desc(48, 7, 0x10_0000, 0x100),
            ],
        );
        let (entries, source, problems) = choose(Some(basic.clone()), Some(&efi));
        assert_eq!(source, MapSource::Efi);
        assert_eq!(entries[2], usable(0x10_0000, 0x10_0000));
        assert!(problems.is_empty(), "{problems:?}");

        // Maps that disagree by more than 1/64: the EFI one, and a report.
        let small = vec![usable(0x10_0000, 0x8_0000)];
        let (_, source, problems) = choose(Some(small), Some(&efi));
        assert_eq!(source, MapSource::Efi);
        assert_eq!(problems.len(), 1);
        assert!(
            problems[0].contains("names 1 MiB usable and the multiboot2 map 0 MiB"),
            "{problems:?}"
        );

        // Only the EFI map: used.
        let (_, source, _) = choose(None, Some(&efi));
        assert_eq!(source, MapSource::Efi);

        // A broken EFI map: the multiboot2 one, with the reason.
        let (entries, source, problems) = choose(Some(basic.clone()), Some(&[1, 2]));
        assert_eq!((entries, source), (basic.clone(), MapSource::Multiboot2));
        assert!(problems[0].ends_with("it is not used"), "{problems:?}");

        // An EFI map without usable memory: the multiboot2 one.
        let reserved_only = payload(48, 1, &[desc(48, 0, 0, 0x100)]);
        let (_, source, problems) = choose(Some(basic.clone()), Some(&reserved_only));
        assert_eq!(source, MapSource::Multiboot2);
        assert!(problems[0].contains("no usable memory"));

        // BIOS: no EFI tag.
        let (entries, source, problems) = choose(Some(basic.clone()), None);
        assert_eq!((entries, source), (basic, MapSource::Multiboot2));
        assert!(problems.is_empty());

        let (entries, source, _) = choose(None, None);
        assert!(entries.is_empty());
        assert_eq!(source, MapSource::None);
    }
}
