//! Partition tables: MBR (primary partitions and the logical ones in an extended partition's
//! chain) and GPT, read as Linux's `block/partitions/{msdos,efi}.c` read them, numbered as
//! Linux numbers them (MBR: 1..4 primary, 5.. logical; GPT: the entry's slot plus one).
//!
//! A disk's partition table is whatever was written on it: every number read is checked
//! (entries past the disk's end are dropped, chains and entry arrays are bounded, a GPT
//! header must pass its CRC32), and a table that does not hold together yields no
//! partitions, never a panic.

use alloc::vec::Vec;

use crate::block::{SECTOR, Window};

/// A partition: its number and where it lies on the disk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Partition {
    /// Linux's number (`vda<number>`).
    pub number: u32,
    /// Its sectors.
    pub window: Window,
}

/// The MBR partition type of a GPT's protective entry.
const PROTECTIVE: u8 = 0xee;
/// Extended partition types (DOS, Windows LBA, Linux).
const EXTENDED: [u8; 3] = [0x05, 0x0f, 0x85];
/// The most logical partitions followed in an extended chain (Linux stops at disk minors).
const MAX_LOGICAL: u32 = 64;
/// The most GPT entries read (Linux's default array holds 128).
const MAX_GPT_ENTRIES: u32 = 256;

fn le32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn le64(b: &[u8], at: usize) -> u64 {
    u64::from(le32(b, at)) | (u64::from(le32(b, at + 4)) << 32)
}

/// CRC-32 (IEEE 802.3, reflected, as UEFI's GPT uses).
pub fn crc32(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xedb8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// One 16-byte MBR entry: (type, first sector, sectors).
fn mbr_entry(sector: &[u8; SECTOR], i: usize) -> (u8, u64, u64) {
    let e = &sector[446 + 16 * i..446 + 16 * (i + 1)];
    (e[4], u64::from(le32(e, 8)), u64::from(le32(e, 12)))
}

fn has_signature(sector: &[u8; SECTOR]) -> bool {
    sector[510] == 0x55 && sector[511] == 0xaa
}

/// A window of `count` sectors at `start` if it lies on a disk of `sectors` sectors.
fn on_disk(start: u64, count: u64, sectors: u64) -> Option<Window> {
    let end = start.checked_add(count)?;
    (count > 0 && start > 0 && end <= sectors).then_some(Window {
        start,
        sectors: count,
    })
}

/// The partitions of a disk of `sectors` 512-byte sectors, reading its sectors with `read`
/// (which says whether the read worked). Empty if there is no table.
pub fn scan(sectors: u64, mut read: impl FnMut(u64, &mut [u8; SECTOR]) -> bool) -> Vec<Partition> {
    let mut mbr = [0u8; SECTOR];
    if sectors == 0 || !read(0, &mut mbr) || !has_signature(&mbr) {
        return Vec::new();
    }
    if (0..4).any(|i| mbr_entry(&mbr, i).0 == PROTECTIVE) {
        return gpt(sectors, &mut read);
    }
    let mut found = Vec::new();
    for i in 0..4 {
        let (kind, start, count) = mbr_entry(&mbr, i);
        if kind == 0 {
            continue;
        }
        let number = i as u32 + 1;
        if EXTENDED.contains(&kind) {
            // Linux shows the extended partition itself as a stub of one or two sectors
            // (`vda2` of 1 KiB) and its logical partitions from 5.
            if let Some(w) = on_disk(start, count.min(2), sectors) {
                found.push(Partition { number, window: w });
            }
            logical(start, count, sectors, &mut read, &mut found);
        } else if let Some(window) = on_disk(start, count, sectors) {
            found.push(Partition { number, window });
        }
    }
    found
}

/// The logical partitions in the extended partition `[base, base + size)`.
fn logical(
    base: u64,
    size: u64,
    sectors: u64,
    read: &mut impl FnMut(u64, &mut [u8; SECTOR]) -> bool,
    found: &mut Vec<Partition>,
) {
    let mut ebr_at = base;
    let mut number = 5;
    let mut steps = 0;
    let limit = base.saturating_add(size).min(sectors);
    while steps < MAX_LOGICAL && ebr_at < limit {
        steps += 1;
        let mut ebr = [0u8; SECTOR];
        if !read(ebr_at, &mut ebr) || !has_signature(&ebr) {
            return;
        }
        let (kind, start, count) = mbr_entry(&ebr, 0);
        if kind != 0
            && !EXTENDED.contains(&kind)
            && let Some(window) = ebr_at
                .checked_add(start)
                .and_then(|s| on_disk(s, count, limit))
        {
            found.push(Partition { number, window });
            number += 1;
        }
        let (next_kind, next, _) = mbr_entry(&ebr, 1);
        if !EXTENDED.contains(&next_kind) || next == 0 {
            return;
        }
        match base.checked_add(next) {
            Some(n) if n > ebr_at => ebr_at = n,
            // A chain that points back would loop.
            _ => return,
        }
    }
}

/// The partitions of a GPT disk (the primary header at sector 1).
fn gpt(sectors: u64, read: &mut impl FnMut(u64, &mut [u8; SECTOR]) -> bool) -> Vec<Partition> {
    let mut header = [0u8; SECTOR];
    if !read(1, &mut header) || &header[..8] != b"EFI PART" {
        return Vec::new();
    }
    let header_size = le32(&header, 12) as usize;
    if !(92..=SECTOR).contains(&header_size) {
        return Vec::new();
    }
    let mut check = header;
    check[16..20].fill(0);
    if crc32(&check[..header_size]) != le32(&header, 16) || le64(&header, 24) != 1 {
        return Vec::new();
    }
    let (first_usable, last_usable) = (le64(&header, 40), le64(&header, 48));
    let entries_at = le64(&header, 72);
    let count = le32(&header, 80);
    let entry_size = le32(&header, 84) as usize;
    if count > MAX_GPT_ENTRIES
        || !(128..=SECTOR).contains(&entry_size)
        || !SECTOR.is_multiple_of(entry_size)
        || last_usable >= sectors
        || !(2..sectors).contains(&entries_at)
    {
        return Vec::new();
    }
    // The whole array, to check its CRC.
    let bytes = count as usize * entry_size;
    let mut array = Vec::new();
    if array
        .try_reserve_exact(bytes.next_multiple_of(SECTOR))
        .is_err()
    {
        return Vec::new();
    }
    for i in 0..bytes.div_ceil(SECTOR) as u64 {
        let mut s = [0u8; SECTOR];
        if entries_at + i >= sectors || !read(entries_at + i, &mut s) {
            return Vec::new();
        }
        array.extend_from_slice(&s);
    }
    if crc32(&array[..bytes]) != le32(&header, 88) {
        return Vec::new();
    }
    let mut found = Vec::new();
    for (slot, e) in array[..bytes].chunks(entry_size).enumerate() {
        if e[..16].iter().all(|&b| b == 0) {
            continue;
        }
        let (first, last) = (le64(e, 32), le64(e, 40));
        if first < first_usable || last > last_usable || last < first {
            continue;
        }
        if let Some(window) = on_disk(first, last - first + 1, sectors) {
            found.push(Partition {
                number: slot as u32 + 1,
                window,
            });
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    /// A disk image of `sectors` sectors in memory.
    struct Image(Vec<u8>);

    impl Image {
        fn new(sectors: u64) -> Image {
            Image(vec![0; sectors as usize * SECTOR])
        }
        fn sectors(&self) -> u64 {
            (self.0.len() / SECTOR) as u64
        }
        fn put(&mut self, sector: u64, at: usize, bytes: &[u8]) {
            let o = sector as usize * SECTOR + at;
            self.0[o..o + bytes.len()].copy_from_slice(bytes);
        }
        fn mbr_entry(&mut self, sector: u64, i: usize, kind: u8, start: u32, count: u32) {
            let mut e = [0u8; 16];
            e[4] = kind;
            e[8..12].copy_from_slice(&start.to_le_bytes());
            e[12..16].copy_from_slice(&count.to_le_bytes());
            self.put(sector, 446 + 16 * i, &e);
            self.put(sector, 510, &[0x55, 0xaa]);
        }
        fn scan(&self) -> Vec<(u32, u64, u64)> {
            scan(self.sectors(), |s, buf| {
                let o = s as usize * SECTOR;
                match self.0.get(o..o + SECTOR) {
                    Some(b) => {
                        buf.copy_from_slice(b);
                        true
                    }
                    None => false,
                }
            })
            .iter()
            .map(|p| (p.number, p.window.start, p.window.sectors))
            .collect()
        }

        /// A GPT with `parts` (slot, first, last), entries at sector 2, 128 entries of 128
        /// bytes, as `sgdisk` makes.
        fn gpt(&mut self, parts: &[(usize, u64, u64)]) {
            let n = self.sectors();
            self.mbr_entry(0, 0, PROTECTIVE, 1, (n - 1) as u32);
            let mut array = vec![0u8; 128 * 128];
            for &(slot, first, last) in parts {
                let e = &mut array[slot * 128..(slot + 1) * 128];
                e[..16].copy_from_slice(&[0xaf; 16]);
                e[16..32].copy_from_slice(&[slot as u8 + 1; 16]);
                e[32..40].copy_from_slice(&first.to_le_bytes());
                e[40..48].copy_from_slice(&last.to_le_bytes());
            }
            let mut h = [0u8; 92];
            h[..8].copy_from_slice(b"EFI PART");
            h[8..12].copy_from_slice(&0x0001_0000u32.to_le_bytes());
            h[12..16].copy_from_slice(&92u32.to_le_bytes());
            h[24..32].copy_from_slice(&1u64.to_le_bytes());
            h[32..40].copy_from_slice(&(n - 1).to_le_bytes());
            h[40..48].copy_from_slice(&34u64.to_le_bytes());
            h[48..56].copy_from_slice(&(n - 34).to_le_bytes());
            h[72..80].copy_from_slice(&2u64.to_le_bytes());
            h[80..84].copy_from_slice(&128u32.to_le_bytes());
            h[84..88].copy_from_slice(&128u32.to_le_bytes());
            h[88..92].copy_from_slice(&crc32(&array).to_le_bytes());
            let crc = crc32(&h);
            h[16..20].copy_from_slice(&crc.to_le_bytes());
            self.put(1, 0, &h);
            for (i, s) in array.chunks(SECTOR).enumerate() {
                self.put(2 + i as u64, 0, s);
            }
        }
    }

    #[test]
    fn crc32_is_ieee() {
        assert_eq!(crc32(b"123456789"), 0xcbf4_3926);
    }

    #[test]
    fn no_table_no_partitions() {
        let img = Image::new(100);
        assert!(img.scan().is_empty());
    }

    #[test]
    fn mbr_primary_and_logical() {
        let mut img = Image::new(10_000);
        img.mbr_entry(0, 0, 0x83, 2048, 1000);
        img.mbr_entry(0, 1, 0x05, 4000, 5000);
        img.mbr_entry(0, 3, 0x83, 9500, 1000); // past the end: dropped
        // Logical 5 at 4000+63, then the next EBR at 4000+2000 with logical 6.
        img.mbr_entry(4000, 0, 0x83, 63, 1000);
        img.mbr_entry(4000, 1, 0x05, 2000, 1500);
        img.mbr_entry(6000, 0, 0x83, 63, 500);
        assert_eq!(
            img.scan(),
            [
                (1, 2048, 1000),
                (2, 4000, 2),
                (5, 4063, 1000),
                (6, 6063, 500)
            ]
        );
    }

    #[test]
    fn ebr_chains_that_loop_end() {
        let mut img = Image::new(10_000);
        img.mbr_entry(0, 0, 0x0f, 100, 9000);
        img.mbr_entry(100, 0, 0x83, 10, 10);
        // Points back at itself.
        img.mbr_entry(100, 1, 0x05, 0, 10);
        assert_eq!(img.scan(), [(1, 100, 2), (5, 110, 10)]);
    }

    #[test]
    fn gpt_partitions_by_slot() {
        let mut img = Image::new(20_000);
        img.gpt(&[(0, 2048, 4095), (2, 4096, 19_000)]);
        assert_eq!(img.scan(), [(1, 2048, 2048), (3, 4096, 14_905)]);
    }

    #[test]
    fn gpt_with_bad_crcs_or_bounds_is_refused() {
        let mut img = Image::new(20_000);
        img.gpt(&[(0, 2048, 4095)]);
        let good = img.0.clone();
        // A flipped byte in an entry: the array's CRC fails.
        img.0[2 * SECTOR + 40] ^= 1;
        assert!(img.scan().is_empty());
        // A flipped byte in the header.
        img.0 = good.clone();
        img.0[SECTOR + 80] ^= 1;
        assert!(img.scan().is_empty());
        // An entry beyond the usable area is dropped, the others stay.
        let mut img = Image::new(20_000);
        img.gpt(&[(0, 2048, 4095), (1, 4096, 19_999)]);
        assert_eq!(img.scan(), [(1, 2048, 2048)]);
    }

    #[test]
    fn random_sectors_never_panic() {
        // A cheap generator: every table byte hostile.
        let mut x = 0x2545_f491_4f6c_dd1du64;
        for _ in 0..200 {
            let mut img = Image::new(64);
            for b in img.0.iter_mut() {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                *b = x as u8;
            }
            img.put(0, 510, &[0x55, 0xaa]);
            if x & 1 == 0 {
                img.put(0, 446 + 4, &[PROTECTIVE]);
                img.put(1, 0, b"EFI PART");
            }
            for (_, start, count) in img.scan() {
                assert!(start + count <= 64);
            }
        }
    }
}
