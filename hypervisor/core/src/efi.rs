//! The UEFI system table, read for one thing only: where the firmware put the ACPI RSDP, for
//! the rare loader that passes the EFI system table but no ACPI tag. Xenia never calls UEFI
//! services; the table and its configuration table stay valid after `ExitBootServices()`
//! (UEFI 2.10 §4.3, §4.6).
//!
//! Pure logic: the caller reads the bytes at the addresses returned here and hands them back;
//! nothing is trusted, nothing panics.

use alloc::format;
use alloc::string::String;

/// `EFI_SYSTEM_TABLE_SIGNATURE` ("IBI SYST", UEFI 2.10 §4.3.1).
pub const SYSTEM_TABLE_SIGNATURE: &[u8; 8] = b"IBI SYST";

/// Bytes of the 64-bit `EFI_SYSTEM_TABLE` up to and including `ConfigurationTable`.
pub const SYSTEM_TABLE_LEN: usize = 120;

/// Offset of `NumberOfTableEntries` (UINTN) in the 64-bit system table.
const NUMBER_OF_TABLE_ENTRIES: usize = 104;
/// Offset of `ConfigurationTable` (a pointer) in the 64-bit system table.
const CONFIGURATION_TABLE: usize = 112;

/// Bytes of one `EFI_CONFIGURATION_TABLE` entry: `VendorGuid` (16), `VendorTable` (8).
pub const CONFIG_ENTRY_LEN: usize = 24;

/// At most this many configuration entries are read (firmware has a few dozen).
pub const MAX_CONFIG_ENTRIES: usize = 256;

/// `EFI_ACPI_20_TABLE_GUID` {8868e871-e4f1-11d3-bc22-0080c73c8881}, as stored (the first
/// three fields little-endian; UEFI 2.10 §4.6.1.1).
pub const ACPI_20_TABLE_GUID: [u8; 16] = [
    0x71, 0xe8, 0x68, 0x88, 0xf1, 0xe4, 0xd3, 0x11, 0xbc, 0x22, 0x00, 0x80, 0xc7, 0x3c, 0x88, 0x81,
];

/// `ACPI_TABLE_GUID` (ACPI 1.0) {eb9d2d30-2d88-11d3-9a16-0090273fc14d}, as stored.
pub const ACPI_10_TABLE_GUID: [u8; 16] = [
    0x30, 0x2d, 0x9d, 0xeb, 0x88, 0x2d, 0xd3, 0x11, 0x9a, 0x16, 0x00, 0x90, 0x27, 0x3f, 0xc1, 0x4d,
];

fn le_u64(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(b.get(at..at + 8)?.try_into().ok()?))
}

/// Where the configuration table is and how many bytes it has, from the first
/// [`SYSTEM_TABLE_LEN`] bytes of a 64-bit system table.
pub fn configuration_table(system_table: &[u8]) -> Result<(u64, usize), String> {
    if system_table.get(0..8) != Some(SYSTEM_TABLE_SIGNATURE.as_slice()) {
        return Err("the EFI system table has no \"IBI SYST\" signature".into());
    }
    let (Some(count), Some(at)) = (
        le_u64(system_table, NUMBER_OF_TABLE_ENTRIES),
        le_u64(system_table, CONFIGURATION_TABLE),
    ) else {
        return Err(format!(
            "the EFI system table is cut short ({} bytes)",
            system_table.len()
        ));
    };
    if at == 0 || count == 0 {
        return Err("the EFI system table has no configuration table".into());
    }
    let count = usize::try_from(count)
        .unwrap_or(usize::MAX)
        .min(MAX_CONFIG_ENTRIES);
    Ok((at, count * CONFIG_ENTRY_LEN))
}

/// The RSDP's address from a configuration table: the ACPI 2.0 entry, else the ACPI 1.0 one.
pub fn acpi_rsdp(config_table: &[u8]) -> Option<u64> {
    let find = |guid: &[u8; 16]| {
        config_table
            .chunks_exact(CONFIG_ENTRY_LEN)
            .find(|e| e[..16] == guid[..])
            .and_then(|e| le_u64(e, 16))
            .filter(|&at| at != 0)
    };
    find(&ACPI_20_TABLE_GUID).or_else(|| find(&ACPI_10_TABLE_GUID))
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;
    use alloc::vec::Vec;

    fn system_table(count: u64, at: u64) -> Vec<u8> {
        let mut t = vec![0u8; SYSTEM_TABLE_LEN];
        t[0..8].copy_from_slice(SYSTEM_TABLE_SIGNATURE);
        t[NUMBER_OF_TABLE_ENTRIES..NUMBER_OF_TABLE_ENTRIES + 8]
            .copy_from_slice(&count.to_le_bytes());
        t[CONFIGURATION_TABLE..CONFIGURATION_TABLE + 8].copy_from_slice(&at.to_le_bytes());
        t
    }

    fn entry(guid: &[u8; 16], at: u64) -> Vec<u8> {
        let mut e = guid.to_vec();
        e.extend_from_slice(&at.to_le_bytes());
        e
    }

    #[test]
    fn configuration_table_located_and_bounded() {
        assert_eq!(
            configuration_table(&system_table(11, 0x3f9e_c0a0)),
            Ok((0x3f9e_c0a0, 11 * CONFIG_ENTRY_LEN))
        );
        assert_eq!(
            configuration_table(&system_table(u64::MAX, 0x1000)),
            Ok((0x1000, MAX_CONFIG_ENTRIES * CONFIG_ENTRY_LEN))
        );
        assert!(configuration_table(&system_table(0, 0x1000)).is_err());
        assert!(configuration_table(&system_table(3, 0)).is_err());
        let mut bad = system_table(3, 0x1000);
        bad[0] = b'X';
        assert!(configuration_table(&bad).unwrap_err().contains("signature"));
        assert!(
            configuration_table(&system_table(3, 0x1000)[..100])
                .unwrap_err()
                .contains("cut short")
        );
    }

    #[test]
    fn acpi_20_preferred_to_10() {
        let other = [0x55u8; 16];
        let mut t = entry(&other, 0x1234);
        t.extend(entry(&ACPI_10_TABLE_GUID, 0xe_0000));
        assert_eq!(acpi_rsdp(&t), Some(0xe_0000));
        t.extend(entry(&ACPI_20_TABLE_GUID, 0x3fb7_e014));
        assert_eq!(acpi_rsdp(&t), Some(0x3fb7_e014));
        assert_eq!(acpi_rsdp(&entry(&other, 1)), None);
        assert_eq!(acpi_rsdp(&entry(&ACPI_20_TABLE_GUID, 0)), None);
        // A partial entry at the end is ignored.
        assert_eq!(acpi_rsdp(&entry(&ACPI_20_TABLE_GUID, 7)[..20]), None);
    }
}
