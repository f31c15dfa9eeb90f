//! `efimap`: hostile multiboot2 EFI memory map tags (any descriptor size and version, partial
//! descriptors, huge page counts, every memory type) against a plain reading of the bytes:
//! the parse never panics, refuses exactly the tags UEFI does not define, reads every whole
//! descriptor up to the limit with the type mapping of UEFI 2.10 §7.2, and `choose` takes the
//! EFI map exactly when it parses and names usable memory.

use crate::engine::{Input, Target};
use crate::mm::efimap::{
    self, DESCRIPTOR_MIN_SIZE, DESCRIPTOR_VERSION, EFI_PAGE_SIZE, MAX_DESCRIPTORS, MapSource,
};
use crate::mm::memmap::{EntryKind, RawEntry};

pub const TARGET: Target = Target {
    name: "efimap",
    about: "EFI memory map tags against a plain reading of their bytes",
    run,
    seeds: super::no_seeds,
    max_len: 1024,
};

fn le(b: &[u8], at: usize, n: usize) -> u64 {
    b[at..at + n]
        .iter()
        .rev()
        .fold(0u64, |v, &x| (v << 8) | u64::from(x))
}

fn run(data: &[u8]) {
    let mut input = Input::new(data);
    let size = match input.below(6) {
        0 => 40,
        1 => 48,
        2 => 56,
        3 => input.below(64) as u32,
        _ => input.u32() % 4096,
    };
    let version = if input.below(8) == 0 {
        input.u32()
    } else {
        DESCRIPTOR_VERSION
    };
    let mut payload = Vec::new();
    payload.extend_from_slice(&size.to_le_bytes());
    payload.extend_from_slice(&version.to_le_bytes());
    // Descriptors whose fields come from a small grid, then raw bytes.
    let n = input.below(8) as usize;
    for _ in 0..n {
        let mut d = vec![0u8; (size as usize).max(DESCRIPTOR_MIN_SIZE)];
        let typ = if input.bool() {
            input.below(17) as u32
        } else {
            input.u32()
        };
        let pages = match input.below(3) {
            0 => input.below(0x400),
            1 => u64::MAX - input.below(2),
            _ => input.u64(),
        };
        d[0..4].copy_from_slice(&typ.to_le_bytes());
        d[8..16].copy_from_slice(&(input.below(0x400) * EFI_PAGE_SIZE).to_le_bytes());
        d[24..32].copy_from_slice(&pages.to_le_bytes());
        payload.extend_from_slice(&d[..(size as usize).max(DESCRIPTOR_MIN_SIZE)]);
    }
    payload.extend_from_slice(input.rest());
    let truncate = if payload.len() > 8 && input.bool() {
        input.index(payload.len())
    } else {
        payload.len()
    };
    let payload = &payload[..truncate];

    let parsed = efimap::parse(payload);
    let header_ok = payload.len() >= 8;
    let expected_ok =
        header_ok && version == DESCRIPTOR_VERSION && size as usize >= DESCRIPTOR_MIN_SIZE;
    assert_eq!(parsed.is_ok(), expected_ok, "size {size} version {version}");
    let Ok(map) = parsed else {
        let (_, source, problems) = efimap::choose(None, Some(payload));
        assert_eq!(source, MapSource::None);
        assert!(!problems.is_empty());
        return;
    };
    let body = &payload[8..];
    let whole = body.len() / size as usize;
    assert_eq!(map.entries.len(), whole.min(MAX_DESCRIPTORS));
    for (i, e) in map.entries.iter().enumerate() {
        let d = &body[i * size as usize..];
        let expected = RawEntry {
            base: le(d, 8, 8),
            len: le(d, 24, 8).saturating_mul(EFI_PAGE_SIZE),
            kind: efimap::kind_after_exit_boot_services(le(d, 0, 4) as u32),
        };
        assert_eq!(*e, expected, "descriptor {i}");
    }
    let usable = map
        .entries
        .iter()
        .any(|e| e.kind == EntryKind::Usable && e.len > 0);
    let fallback = vec![RawEntry {
        base: 0,
        len: EFI_PAGE_SIZE,
        kind: EntryKind::Usable,
    }];
    let (entries, source, _) = efimap::choose(Some(fallback.clone()), Some(payload));
    if usable {
        assert_eq!((source, entries), (MapSource::Efi, map.entries));
    } else {
        assert_eq!((source, entries), (MapSource::Multiboot2, fallback));
    }
}
