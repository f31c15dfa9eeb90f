//! Just enough ACPI to power the machine off: RSDP → RSDT/XSDT → FADT → DSDT's `\_S5`
//! (ACPI 6.5 §5.2 tables, §7.4.2 sleep states, §4.8.3 PM1 control), and to find the
//! processors, the I/O APIC and the ISA overrides in the MADT (§5.2.12).
//!
//! Everything here is a pure function over bytes that firmware wrote, so every length,
//! offset and checksum is checked: a broken table yields `None`, never a fault. The
//! caller supplies a reader for physical memory.

/// What the power-off path needs from the FADT and DSDT.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PowerOff {
    /// I/O port of the PM1a control block.
    pub pm1a_control: u16,
    /// I/O port of the PM1b control block, if the machine has one.
    pub pm1b_control: Option<u16>,
    /// SLP_TYPa and SLP_TYPb values of the S5 (soft-off) state.
    pub slp_typ_a: u8,
    pub slp_typ_b: u8,
    /// SMI command port and the value that hands ACPI to the OS, for firmware that
    /// starts in legacy mode (SCI_EN clear).
    pub smi_command: u16,
    pub acpi_enable: u8,
}

/// PM1 control register bits (ACPI 6.5 Table 4.13).
pub const SLP_EN: u16 = 1 << 13;
pub const SCI_EN: u16 = 1 << 0;
pub const fn slp_typ(value: u8) -> u16 {
    ((value as u16) & 0x7) << 10
}

const SDT_HEADER_LEN: usize = 36;

fn checksum_ok(bytes: &[u8]) -> bool {
    bytes.iter().fold(0u8, |sum, b| sum.wrapping_add(*b)) == 0
}

fn le_u32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?))
}
fn le_u64(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(b.get(at..at + 8)?.try_into().ok()?))
}

/// The root table address from an RSDP: the XSDT (64-bit entries) when the RSDP is
/// version 2+ and names one, else the RSDT (32-bit entries). Returns (address, entry size).
pub fn root_table(rsdp: &[u8]) -> Option<(u64, usize)> {
    if rsdp.get(0..8)? != b"RSD PTR " || !checksum_ok(rsdp.get(0..20)?) {
        return None;
    }
    let revision = *rsdp.get(15)?;
    if revision >= 2 {
        let len = le_u32(rsdp, 20)? as usize;
        if let Some(ext) = rsdp.get(0..len.max(36)) {
            let xsdt = le_u64(rsdp, 24)?;
            if checksum_ok(ext) && xsdt != 0 {
                return Some((xsdt, 8));
            }
        }
    }
    Some((u64::from(le_u32(rsdp, 16)?), 4))
}

/// The length a table's header claims, for the caller to read the whole table.
pub fn table_length(header: &[u8]) -> Option<usize> {
    let len = le_u32(header, 4)? as usize;
    (len >= SDT_HEADER_LEN).then_some(len)
}

/// Checks a whole table's signature and checksum.
pub fn valid_table(table: &[u8], signature: &[u8; 4]) -> bool {
    table.len() >= SDT_HEADER_LEN
        && &table[0..4] == signature
        && table_length(table) == Some(table.len())
        && checksum_ok(table)
}

/// What is wrong with a table's header or checksum (ACPI 6.5 §5.2.6: the whole table,
/// `length` bytes, must sum to zero).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TableProblem {
    /// The header's length is shorter than a header, or runs past what could be read.
    BadLength { length: u32 },
    /// The bytes do not sum to zero: the stored checksum byte and the one that would fit.
    BadChecksum { stored: u8, expected: u8 },
}

/// A table found wrong, with where it is: one log line each.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TableReport {
    pub signature: [u8; 4],
    pub address: u64,
    pub problem: TableProblem,
}

impl core::fmt::Display for TableReport {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let sig = Signature(self.signature);
        let at = self.address;
        match self.problem {
            TableProblem::BadLength { length } => write!(
                f,
                "ACPI: table {sig} at {at:#x} claims a length of {length} bytes; skipped"
            ),
            TableProblem::BadChecksum { stored, expected } => write!(
                f,
                "ACPI: table {sig} at {at:#x} has a bad checksum ({stored:#04x}, should be \
                 {expected:#04x}); skipped"
            ),
        }
    }
}

/// A table signature as text: printable ASCII as is, anything else as `?` (the bytes are
/// firmware's, or a corrupted table's).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Signature(pub [u8; 4]);

impl core::fmt::Display for Signature {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        use core::fmt::Write;
        for b in self.0 {
            f.write_char(if b.is_ascii_graphic() || b == b' ' {
                char::from(b)
            } else {
                '?'
            })?;
        }
        Ok(())
    }
}

/// The signature of a table (its first four bytes, `????` when shorter).
pub fn signature(table: &[u8]) -> [u8; 4] {
    table
        .get(0..4)
        .and_then(|s| s.try_into().ok())
        .unwrap_or(*b"????")
}

/// Checks a whole table (`table` holds the `length` bytes its header claims, or fewer if
/// they could not be read): `None` when its length and checksum hold.
pub fn table_problem(table: &[u8]) -> Option<TableProblem> {
    let length = le_u32(table, 4).unwrap_or(0);
    if (length as usize) < SDT_HEADER_LEN || table.len() != length as usize {
        return Some(TableProblem::BadLength { length });
    }
    let sum = table.iter().fold(0u8, |sum, b| sum.wrapping_add(*b));
    (sum != 0).then(|| TableProblem::BadChecksum {
        stored: table[9],
        expected: table[9].wrapping_sub(sum),
    })
}

/// The HPET's register block from the ACPI `HPET` table (IA-PC HPET specification 1.0a,
/// Table 3 "HPET Description Table"): the Base Address generic address structure at offset
/// 40, whose address (offset 44) must be in system memory (space ID 0) and page aligned
/// (the registers take 1 KiB at the start of a page).
pub fn hpet_base(hpet: &[u8]) -> Option<u64> {
    const BASE_ADDRESS: usize = 40;
    const SYSTEM_MEMORY: u8 = 0;
    if *hpet.get(BASE_ADDRESS)? != SYSTEM_MEMORY {
        return None;
    }
    let address = le_u64(hpet, BASE_ADDRESS + 4)?;
    (address != 0 && address % 4096 == 0).then_some(address)
}

/// The physical addresses listed by an RSDT (`entry_size` 4) or XSDT (8).
pub fn root_entries(root: &[u8], entry_size: usize) -> impl Iterator<Item = u64> + '_ {
    root.get(SDT_HEADER_LEN..)
        .unwrap_or(&[])
        .chunks_exact(entry_size)
        .map(move |c| {
            if entry_size == 8 {
                le_u64(c, 0).unwrap_or(0)
            } else {
                u64::from(le_u32(c, 0).unwrap_or(0))
            }
        })
}

/// From a validated FADT: (PM1a, PM1b, SMI command, ACPI enable, DSDT address).
/// Uses the 64-bit X_ fields when present and in system I/O space (ACPI 6.5 Table 5.9).
pub fn fadt_fields(fadt: &[u8]) -> Option<(u16, Option<u16>, u16, u8, u64)> {
    let mut dsdt = u64::from(le_u32(fadt, 40)?);
    let smi_command = le_u32(fadt, 48).unwrap_or(0) as u16;
    let acpi_enable = *fadt.get(52).unwrap_or(&0);
    let mut pm1a = le_u32(fadt, 64)? as u16;
    let mut pm1b = le_u32(fadt, 68).unwrap_or(0) as u16;
    if let Some(x_dsdt) = le_u64(fadt, 140).filter(|a| *a != 0) {
        dsdt = x_dsdt;
    }
    // Generic address structures: space id 1 = system I/O.
    for (at, port) in [(172usize, &mut pm1a), (184, &mut pm1b)] {
        if let (Some(1), Some(addr)) = (fadt.get(at).copied(), le_u64(fadt, at + 4))
            && addr != 0
            && addr <= u64::from(u16::MAX)
        {
            *port = addr as u16;
        }
    }
    (pm1a != 0).then_some((
        pm1a,
        (pm1b != 0).then_some(pm1b),
        smi_command,
        acpi_enable,
        dsdt,
    ))
}

/// Finds `Name(_S5, Package() { SLP_TYPa, SLP_TYPb, ... })` in AML and returns the two
/// values. This is a scan for the encoded name, not an AML interpreter, which is what
/// firmware in practice makes sufficient (every PC names \_S5 this way).
pub fn find_s5(aml: &[u8]) -> Option<(u8, u8)> {
    const NAME_OP: u8 = 0x08;
    const PACKAGE_OP: u8 = 0x12;
    let mut from = 0;
    while let Some(pos) = aml.get(from..)?.windows(4).position(|w| w == b"_S5_") {
        let at = from + pos;
        from = at + 4;
        // NameOp, optionally preceded by a root prefix '\'.
        let named = at >= 1
            && (aml[at - 1] == NAME_OP
                || (at >= 2 && aml[at - 1] == b'\\' && aml[at - 2] == NAME_OP));
        if !named || aml.get(at + 4) != Some(&PACKAGE_OP) {
            continue;
        }
        // PkgLength: the top two bits of the lead byte count the extra bytes.
        let lead = *aml.get(at + 5)?;
        let mut p = at + 5 + 1 + usize::from(lead >> 6);
        p += 1; // NumElements
        let mut values = [0u8; 2];
        for value in &mut values {
            *value = match *aml.get(p)? {
                0x00 => {
                    p += 1;
                    0
                } // ZeroOp
                0x01 => {
                    p += 1;
                    1
                } // OneOp
                0x0A => {
                    p += 2;
                    *aml.get(p - 1)?
                } // BytePrefix
                other if other < 0x08 => {
                    p += 1;
                    other
                }
                _ => return None,
            };
        }
        return Some((values[0], values[1]));
    }
    None
}

/// The first I/O APIC an MADT describes (ACPI 6.5 §5.2.12.3): (MMIO address, first GSI).
pub fn madt_ioapic(madt: &[u8]) -> Option<(u32, u32)> {
    madt_entries(madt).find_map(|(kind, e)| {
        (kind == 1 && e.len() >= 12)
            .then(|| Some((le_u32(e, 4)?, le_u32(e, 8)?)))
            .flatten()
    })
}

/// How ISA IRQ `irq` reaches the I/O APIC (ACPI 6.5 §5.2.12.5): (GSI, MPS INTI flags).
/// Without an override entry the GSI is the IRQ, active high and edge triggered.
pub fn isa_irq(madt: &[u8], irq: u8) -> (u32, u16) {
    madt_entries(madt)
        .find_map(|(kind, e)| {
            if kind == 2 && e.len() >= 10 && e[2] == 0 && e[3] == irq {
                Some((le_u32(e, 4)?, u16::from_le_bytes([e[8], e[9]])))
            } else {
                None
            }
        })
        .unwrap_or((u32::from(irq), 0))
}

/// MADT structure types (ACPI 6.5 Table 5.21).
const MADT_LOCAL_APIC: u8 = 0;
const MADT_X2APIC: u8 = 9;
/// Length of a Processor Local APIC structure (§5.2.12.2) and a Processor Local x2APIC
/// structure (§5.2.12.12).
const LOCAL_APIC_LEN: usize = 8;
const X2APIC_LEN: usize = 16;
/// Local APIC flags bit 0, "Enabled" (Table 5.23): clear means the processor is not usable
/// (it may be hot-added later, which Xenia does not support).
const LAPIC_ENABLED: u32 = 1 << 0;
/// The xAPIC broadcast destination: no processor can have this ID (Intel SDM Vol. 3A
/// §11.6.2.1, destination 0xFF addresses every processor in xAPIC physical mode).
pub const XAPIC_BROADCAST: u32 = 0xFF;
/// The x2APIC broadcast destination (SDM Vol. 3A §11.12.9).
pub const X2APIC_BROADCAST: u32 = 0xFFFF_FFFF;

/// A processor entry of the MADT that is not used, and why. Each is worth one log line;
/// none stops the boot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CpuEntryProblem {
    /// The entry's Enabled flag is clear.
    Disabled { apic_id: u32 },
    /// An earlier entry (or the boot CPU itself) already has this APIC ID.
    Duplicate { apic_id: u32 },
    /// No processor can have this ID: the broadcast ID, or an ID above 0xFE while the
    /// local APICs are in xAPIC mode (which addresses 8-bit IDs only).
    Impossible { apic_id: u32 },
    /// An ID above 0xFE while the local APICs are in xAPIC mode, which addresses 8-bit IDs
    /// only: the processor needs x2APIC mode, which Xenia does not turn on.
    NeedsX2apic { apic_id: u32 },
    /// A processor structure shorter than the specification says.
    Truncated { kind: u8 },
    /// Not a problem, worth a line: the table lists an ID lower than the one before it.
    /// CPUs are numbered in table order (the boot CPU first), as Xen numbers them.
    OutOfOrder { apic_id: u32, after: u32 },
    /// Not a problem, worth a line: the IDs of the usable CPUs are not 0..n (normal with
    /// SMT off or cores fused off).
    Gaps { cpus: u32, highest: u32 },
}

impl CpuEntryProblem {
    /// Whether this is a remark about a usable table rather than an entry skipped.
    pub fn is_note(&self) -> bool {
        matches!(self, Self::OutOfOrder { .. } | Self::Gaps { .. })
    }
}

impl core::fmt::Display for CpuEntryProblem {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::Disabled { apic_id } => {
                write!(f, "MADT: CPU with APIC ID {apic_id} is disabled; skipped")
            }
            Self::Duplicate { apic_id } => {
                write!(
                    f,
                    "MADT: APIC ID {apic_id} listed twice; the second entry is skipped"
                )
            }
            Self::Impossible { apic_id } => {
                write!(
                    f,
                    "MADT: impossible APIC ID {apic_id:#x} (a broadcast ID); skipped"
                )
            }
            Self::NeedsX2apic { apic_id } => write!(
                f,
                "MADT: CPU with APIC ID {apic_id:#x} needs x2APIC mode, which Xenia does not \
                 support (the firmware left the local APICs in xAPIC mode); skipped"
            ),
            Self::OutOfOrder { apic_id, after } => write!(
                f,
                "MADT: APIC IDs out of order ({apic_id} listed after {after}); CPUs are \
                 numbered in table order"
            ),
            Self::Gaps { cpus, highest } => write!(
                f,
                "MADT: APIC IDs of the {cpus} usable CPUs are not contiguous (highest \
                 {highest}); normal with SMT or cores turned off"
            ),
            Self::Truncated { kind } => {
                write!(
                    f,
                    "MADT: truncated processor structure of type {kind}; skipped"
                )
            }
        }
    }
}

/// The processors the MADT lists as usable, by APIC ID: `bsp_apic_id` (read from the boot
/// CPU's own local APIC) first, whether or not the table lists it, then the others in the
/// table's order (Processor Local APIC and Processor Local x2APIC structures, §5.2.12.2 and
/// §5.2.12.12). `x2apic_mode` says whether the local APICs address 32-bit IDs. Entries that
/// are disabled, repeat an ID or name one no processor can have are left out and reported
/// through `report`.
pub fn madt_cpus(
    madt: &[u8],
    bsp_apic_id: u32,
    x2apic_mode: bool,
    mut report: impl FnMut(CpuEntryProblem),
) -> alloc::vec::Vec<u32> {
    let mut ids = alloc::vec![bsp_apic_id];
    let mut bsp_listed = false;
    let mut previous: Option<u32> = None;
    let mut disorder_told = false;
    for (kind, e) in madt_entries(madt) {
        let parsed = match kind {
            MADT_LOCAL_APIC if e.len() >= LOCAL_APIC_LEN => {
                le_u32(e, 4).map(|flags| (u32::from(e[3]), flags))
            }
            MADT_X2APIC if e.len() >= X2APIC_LEN => le_u32(e, 4).zip(le_u32(e, 8)),
            MADT_LOCAL_APIC | MADT_X2APIC => None,
            _ => continue,
        };
        let Some((apic_id, flags)) = parsed else {
            report(CpuEntryProblem::Truncated { kind });
            continue;
        };
        let impossible =
            apic_id == X2APIC_BROADCAST || (kind == MADT_LOCAL_APIC && apic_id == XAPIC_BROADCAST);
        let needs_x2apic = !x2apic_mode && apic_id >= XAPIC_BROADCAST;
        if flags & LAPIC_ENABLED != 0 && !impossible && !needs_x2apic {
            if let Some(after) = previous
                && apic_id < after
                && !disorder_told
            {
                disorder_told = true;
                report(CpuEntryProblem::OutOfOrder { apic_id, after });
            }
            previous = Some(apic_id);
        }
        if flags & LAPIC_ENABLED == 0 {
            // A disabled entry for the boot CPU would be a firmware bug, but the boot CPU is
            // running: say nothing about it.
            if apic_id != bsp_apic_id {
                report(CpuEntryProblem::Disabled { apic_id });
            }
        } else if impossible {
            report(CpuEntryProblem::Impossible { apic_id });
        } else if needs_x2apic {
            report(CpuEntryProblem::NeedsX2apic { apic_id });
        } else if apic_id == bsp_apic_id && !bsp_listed {
            // The boot CPU's own entry: it is already first.
            bsp_listed = true;
        } else if ids.contains(&apic_id) {
            report(CpuEntryProblem::Duplicate { apic_id });
        } else {
            ids.push(apic_id);
        }
    }
    let highest = ids.iter().copied().max().unwrap_or(0);
    if ids.len() > 1 && u64::from(highest) + 1 != ids.len() as u64 {
        report(CpuEntryProblem::Gaps {
            cpus: ids.len() as u32,
            highest,
        });
    }
    ids
}

/// The MADT's interrupt-controller structures as (type, bytes), stopping at a malformed one.
fn madt_entries(madt: &[u8]) -> impl Iterator<Item = (u8, &[u8])> {
    // Header (36 bytes), local APIC address (4), flags (4), then the structures.
    let mut at = SDT_HEADER_LEN + 8;
    core::iter::from_fn(move || {
        let kind = *madt.get(at)?;
        let len = usize::from(*madt.get(at + 1)?);
        if len < 2 {
            return None;
        }
        let entry = madt.get(at..at + len)?;
        at += len;
        Some((kind, entry))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;
    use alloc::vec::Vec;

    fn fix_checksum(t: &mut [u8], at: usize, range: core::ops::Range<usize>) {
        t[at] = 0;
        let sum = t[range].iter().fold(0u8, |s, b| s.wrapping_add(*b));
        t[at] = 0u8.wrapping_sub(sum);
    }

    fn table(sig: &[u8; 4], body: &[u8]) -> Vec<u8> {
        let mut t = vec![0u8; SDT_HEADER_LEN];
        t[0..4].copy_from_slice(sig);
        t.extend_from_slice(body);
        let len = t.len() as u32;
        t[4..8].copy_from_slice(&len.to_le_bytes());
        let n = t.len();
        fix_checksum(&mut t, 9, 0..n);
        t
    }

    #[test]
    fn rsdp_v1_and_v2() {
        let mut r = vec![0u8; 36];
        r[0..8].copy_from_slice(b"RSD PTR ");
        r[16..20].copy_from_slice(&0x7fe1234u32.to_le_bytes());
        fix_checksum(&mut r, 8, 0..20);
        assert_eq!(root_table(&r[..20]), Some((0x7fe1234, 4)));

        r[15] = 2;
        r[20..24].copy_from_slice(&36u32.to_le_bytes());
        r[24..32].copy_from_slice(&0x1_2345_6000u64.to_le_bytes());
        fix_checksum(&mut r, 8, 0..20);
        fix_checksum(&mut r, 32, 0..36);
        assert_eq!(root_table(&r), Some((0x1_2345_6000, 8)));

        r[3] = b'X';
        assert_eq!(root_table(&r), None);
    }

    #[test]
    fn tables_checked() {
        let t = table(b"FACP", &[1, 2, 3]);
        assert!(valid_table(&t, b"FACP"));
        assert!(!valid_table(&t, b"APIC"));
        let mut bad = t.clone();
        bad[37] ^= 1;
        assert!(!valid_table(&bad, b"FACP"));
        assert!(!valid_table(&t[..20], b"FACP"));
    }

    #[test]
    fn root_entries_both_widths() {
        let rsdt = table(b"RSDT", &[0x10, 0, 0, 0, 0x20, 0, 0, 0, 0xff]);
        assert_eq!(root_entries(&rsdt, 4).collect::<Vec<_>>(), vec![0x10, 0x20]);
        let xsdt = table(b"XSDT", &0x1_0000_0000u64.to_le_bytes());
        assert_eq!(
            root_entries(&xsdt, 8).collect::<Vec<_>>(),
            vec![0x1_0000_0000]
        );
    }

    #[test]
    fn fadt_legacy_and_extended() {
        let mut body = vec![0u8; 244 - SDT_HEADER_LEN];
        let put32 = |b: &mut Vec<u8>, at: usize, v: u32| {
            b[at - SDT_HEADER_LEN..at - SDT_HEADER_LEN + 4].copy_from_slice(&v.to_le_bytes())
        };
        put32(&mut body, 40, 0x7fe0040);
        put32(&mut body, 48, 0xb2);
        body[52 - SDT_HEADER_LEN] = 0xf1;
        put32(&mut body, 64, 0x604);
        let f = table(b"FACP", &body);
        assert_eq!(fadt_fields(&f), Some((0x604, None, 0xb2, 0xf1, 0x7fe0040)));

        // X_PM1a_CNT_BLK in system I/O overrides the legacy field.
        body[172 - SDT_HEADER_LEN] = 1;
        body[176 - SDT_HEADER_LEN..184 - SDT_HEADER_LEN].copy_from_slice(&0xb004u64.to_le_bytes());
        let f = table(b"FACP", &body);
        assert_eq!(fadt_fields(&f).map(|x| x.0), Some(0xb004));

        // A truncated FADT without PM1a is refused.
        assert_eq!(fadt_fields(&f[..50]), None);
    }

    #[test]
    fn madt_ioapic_and_overrides() {
        let mut body = vec![0u8; 8]; // local APIC address, flags
        body.extend_from_slice(&[0, 8, 0, 0, 1, 0, 0, 0]); // a local APIC
        body.extend_from_slice(&[1, 12, 0, 0]); // I/O APIC
        body.extend_from_slice(&0xFEC0_0000u32.to_le_bytes());
        body.extend_from_slice(&0u32.to_le_bytes());
        body.extend_from_slice(&[2, 10, 0, 0, 2, 0, 0, 0, 0, 0]); // IRQ0 -> GSI 2
        let madt = table(b"APIC", &body);
        assert_eq!(madt_ioapic(&madt), Some((0xFEC0_0000, 0)));
        assert_eq!(isa_irq(&madt, 0), (2, 0));
        assert_eq!(
            isa_irq(&madt, 4),
            (4, 0),
            "no override: identity, edge, high"
        );
        // A zero-length structure ends the walk instead of looping.
        let mut bad = table(b"APIC", &[0u8; 8]);
        bad.extend_from_slice(&[1, 0]);
        assert_eq!(madt_ioapic(&bad), None);
        assert_eq!(madt_ioapic(&madt[..40]), None);
    }

    /// An MADT body with the given Local APIC (`(id, enabled)`) and x2APIC entries.
    fn madt_with(lapics: &[(u8, bool)], x2apics: &[(u32, bool)]) -> Vec<u8> {
        let mut body = vec![0u8; 8];
        for (uid, &(id, on)) in lapics.iter().enumerate() {
            body.extend_from_slice(&[0, 8, uid as u8, id]);
            body.extend_from_slice(&u32::from(on).to_le_bytes());
        }
        body.extend_from_slice(&[1, 12, 0, 0, 0, 0, 0xC0, 0xFE, 0, 0, 0, 0]); // an I/O APIC
        for (uid, &(id, on)) in x2apics.iter().enumerate() {
            body.extend_from_slice(&[9, 16, 0, 0]);
            body.extend_from_slice(&id.to_le_bytes());
            body.extend_from_slice(&u32::from(on).to_le_bytes());
            body.extend_from_slice(&(uid as u32).to_le_bytes());
        }
        table(b"APIC", &body)
    }

    fn cpus(madt: &[u8], bsp: u32, x2apic: bool) -> (Vec<u32>, Vec<CpuEntryProblem>) {
        let mut problems = Vec::new();
        let ids = madt_cpus(madt, bsp, x2apic, |p| problems.push(p));
        (ids, problems)
    }

    /// Only the entries skipped, without the notes.
    fn skipped(problems: &[CpuEntryProblem]) -> Vec<CpuEntryProblem> {
        problems.iter().copied().filter(|p| !p.is_note()).collect()
    }

    #[test]
    fn madt_cpus_plain() {
        let madt = madt_with(&[(0, true), (1, true), (2, true), (3, true)], &[]);
        assert_eq!(cpus(&madt, 0, false), (vec![0, 1, 2, 3], vec![]));
        // No MADT processor entries at all: the boot CPU alone.
        assert_eq!(cpus(&madt_with(&[], &[]), 5, false), (vec![5], vec![]));
    }

    #[test]
    fn madt_cpus_boot_cpu_first_and_order_kept() {
        use CpuEntryProblem::*;
        // Out of order, the boot CPU listed third: it comes first, the rest in table order;
        // the disorder is told once, and so are the gaps (IDs 0, 2, 4, 6).
        let madt = madt_with(&[(6, true), (2, true), (4, true), (0, true)], &[]);
        assert_eq!(
            cpus(&madt, 4, false),
            (
                vec![4, 6, 2, 0],
                vec![
                    OutOfOrder {
                        apic_id: 2,
                        after: 6
                    },
                    Gaps {
                        cpus: 4,
                        highest: 6
                    }
                ]
            )
        );
        // A boot CPU the table does not list still comes first.
        assert_eq!(cpus(&madt, 9, false).0, vec![9, 6, 2, 4, 0]);
        // Notes are not skipped entries, and say what they mean.
        assert!(
            OutOfOrder {
                apic_id: 2,
                after: 6
            }
            .is_note()
        );
        assert!(
            Gaps {
                cpus: 4,
                highest: 6
            }
            .to_string()
            .contains("not contiguous")
        );
    }

    #[test]
    fn madt_cpus_gaps_only() {
        // SMT off: even IDs only, in order. One note, nothing skipped.
        let madt = madt_with(&[(0, true), (2, true), (4, true), (6, true)], &[]);
        let (ids, problems) = cpus(&madt, 0, false);
        assert_eq!(ids, vec![0, 2, 4, 6]);
        assert_eq!(
            problems,
            vec![CpuEntryProblem::Gaps {
                cpus: 4,
                highest: 6
            }]
        );
    }

    #[test]
    fn madt_cpus_disabled_duplicate_impossible() {
        use CpuEntryProblem::*;
        let madt = madt_with(
            &[
                (0, true),
                (1, false),
                (2, true),
                (2, true),
                (0xFF, true),
                (0, true),
                (3, true),
            ],
            &[],
        );
        let (ids, problems) = cpus(&madt, 0, false);
        assert_eq!(ids, vec![0, 2, 3]);
        assert_eq!(
            skipped(&problems),
            vec![
                Disabled { apic_id: 1 },
                Duplicate { apic_id: 2 },
                Impossible { apic_id: 0xFF },
                Duplicate { apic_id: 0 },
            ]
        );
        // 0xFF is impossible in a Local APIC structure even in x2APIC mode.
        assert_eq!(
            skipped(&cpus(&madt, 0, true).1)[2],
            Impossible { apic_id: 0xFF }
        );
        // The messages say what was skipped.
        assert!(
            Duplicate { apic_id: 2 }
                .to_string()
                .contains("APIC ID 2 listed twice")
        );
        assert!(Impossible { apic_id: 255 }.to_string().contains("0xff"));
        assert!(
            Disabled { apic_id: 1 }
                .to_string()
                .contains("disabled; skipped")
        );
    }

    #[test]
    fn madt_cpus_x2apic_entries() {
        use CpuEntryProblem::*;
        let madt = madt_with(&[(0, true)], &[(0x100, true), (1, false), (u32::MAX, true)]);
        // x2APIC mode: 32-bit IDs are fine, the broadcast ID is not.
        let (ids, problems) = cpus(&madt, 0, true);
        assert_eq!(ids, vec![0, 0x100]);
        assert_eq!(
            skipped(&problems),
            vec![Disabled { apic_id: 1 }, Impossible { apic_id: u32::MAX }]
        );
        // xAPIC mode cannot address ID 0x100: skipped, saying x2APIC mode is not supported.
        let (ids, problems) = cpus(&madt, 0, false);
        assert_eq!(ids, vec![0]);
        assert_eq!(skipped(&problems)[0], NeedsX2apic { apic_id: 0x100 });
        let line = NeedsX2apic { apic_id: 0x100 }.to_string();
        assert!(line.contains("x2APIC mode") && line.contains("not") && line.contains("skipped"));
        // An x2APIC structure with a small ID is an ordinary CPU in xAPIC mode.
        let low = madt_with(&[(0, true)], &[(1, true)]);
        assert_eq!(cpus(&low, 0, false), (vec![0, 1], vec![]));
        // A Local APIC structure can only hold 8 bits: 0xFE is the highest real ID.
        let high = madt_with(&[(0, true), (0xFE, true)], &[]);
        assert_eq!(cpus(&high, 0, false).0, vec![0, 0xFE]);
    }

    #[test]
    fn madt_cpus_truncated_and_malformed() {
        // A Local APIC structure too short to hold its flags: reported, skipped.
        let mut body = vec![0u8; 8];
        body.extend_from_slice(&[0, 4, 0, 1]);
        body.extend_from_slice(&[0, 8, 0, 2, 1, 0, 0, 0]);
        let madt = table(b"APIC", &body);
        let (ids, problems) = cpus(&madt, 0, false);
        assert_eq!(ids, vec![0, 2]);
        assert_eq!(
            skipped(&problems),
            vec![CpuEntryProblem::Truncated { kind: 0 }]
        );
        // A table cut anywhere never panics and always keeps the boot CPU.
        let full = madt_with(&[(0, true), (1, true)], &[(0x200, true)]);
        for cut in 0..full.len() {
            assert_eq!(cpus(&full[..cut], 7, true).0[0], 7);
        }
    }

    #[test]
    fn table_checksums_reported() {
        let good = table(b"SSDT", &[0xA3]); // AML: NoopOp
        assert_eq!(table_problem(&good), None);
        let mut bad = good.clone();
        bad[9] = bad[9].wrapping_add(0x11);
        let problem = table_problem(&bad).unwrap();
        assert_eq!(
            problem,
            TableProblem::BadChecksum {
                stored: bad[9],
                expected: good[9]
            }
        );
        let report = TableReport {
            signature: signature(&bad),
            address: 0x7ffe_1000,
            problem,
        };
        let line = report.to_string();
        assert!(
            line.contains("SSDT") && line.contains("0x7ffe1000"),
            "{line}"
        );
        assert!(
            line.contains("bad checksum") && line.ends_with("skipped"),
            "{line}"
        );
        // Lengths: shorter than a header, or more than was read.
        let mut short = good.clone();
        short[4..8].copy_from_slice(&20u32.to_le_bytes());
        assert_eq!(
            table_problem(&short),
            Some(TableProblem::BadLength { length: 20 })
        );
        assert_eq!(
            table_problem(&good[..30]),
            Some(TableProblem::BadLength {
                length: good.len() as u32
            })
        );
        assert_eq!(
            table_problem(&[]),
            Some(TableProblem::BadLength { length: 0 })
        );
        // A signature of garbage prints as question marks, never as control characters.
        assert_eq!(Signature([b'S', 0, 0x1b, b'T']).to_string(), "S??T");
        assert_eq!(signature(&[1, 2]), *b"????");
    }

    #[test]
    fn hpet_table() {
        // QEMU's HPET table: block ID, then Base Address {0, 0, 0, 0, 0xFED00000}.
        let mut body = vec![0u8; 56 - SDT_HEADER_LEN];
        body[0..4].copy_from_slice(&0x8086_a201u32.to_le_bytes());
        body[8..16].copy_from_slice(&0xFED0_0000u64.to_le_bytes());
        let hpet = table(b"HPET", &body);
        assert_eq!(hpet_base(&hpet), Some(0xFED0_0000));
        // In I/O space, unaligned, zero or cut short: not usable.
        let mut io = hpet.clone();
        io[40] = 1;
        assert_eq!(hpet_base(&io), None);
        let mut odd = hpet.clone();
        odd[44] = 0x10;
        assert_eq!(hpet_base(&odd), None);
        assert_eq!(hpet_base(&table(b"HPET", &[0u8; 20])), None);
        assert_eq!(hpet_base(&hpet[..48]), None);
    }

    #[test]
    fn s5_forms() {
        // QEMU's DSDT: Name (_S5, Package (0x04) { Zero, Zero, Zero, Zero })
        let q = [
            0x10, 0x08, b'_', b'S', b'5', b'_', 0x12, 0x06, 0x04, 0x00, 0x00, 0x00, 0x00,
        ];
        assert_eq!(find_s5(&q), Some((0, 0)));
        // BytePrefix values, root prefix, two-byte PkgLength.
        let r = [
            0x08, b'\\', b'_', b'S', b'5', b'_', 0x12, 0x40, 0x0a, 0x02, 0x0a, 0x07, 0x0a, 0x05,
        ];
        assert_eq!(find_s5(&r), Some((7, 5)));
        // A method named _S5_ referenced, not a Name: skipped.
        let s = [0x14, b'_', b'S', b'5', b'_', 0x00];
        assert_eq!(find_s5(&s), None);
        // Truncated after the name: None, no panic.
        for cut in 0..q.len() {
            let _ = find_s5(&q[..cut]);
        }
        assert_eq!(find_s5(&[]), None);
    }
}
