//! Block devices as dom0's kernel sees them, apart from any driver: the errors of the block
//! API (`blockdev` in the kernel binary), the bounds of an access to a disk or to one of its
//! partitions, and the names Linux gives them (`vda`, `vdb`, ..., `vda1`).
//!
//! A partition is a window on its disk: its sectors are `start..start + sectors` of the disk,
//! and every access through it is checked against that window before it reaches the driver.

use alloc::string::String;

/// The sector size of every address in the block API (Linux's `SECTOR_SIZE`): an access's
/// sector number counts 512-byte units whatever the device's logical block size.
pub const SECTOR: usize = 512;

/// Why a block request failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BlockError {
    /// No such device (a stale or made-up device number).
    NoDevice,
    /// The access reaches past the end of the device or partition.
    OutOfRange,
    /// The buffer's length is not a multiple of [`SECTOR`].
    Misaligned,
    /// The device is read-only and the request writes.
    ReadOnly,
    /// The device does not do this (discard on a disk without it).
    Unsupported,
    /// The device reported an error for the request.
    Io,
    /// The device did not complete the request within its bound.
    Timeout,
    /// No memory for the request's buffers.
    NoMemory,
}

impl BlockError {
    /// The Linux errno a system call returns for it (negative).
    pub fn errno(self) -> i64 {
        match self {
            BlockError::NoDevice => -6,                 // ENXIO
            BlockError::OutOfRange => -28, // ENOSPC (a write past the end; reads stop short)
            BlockError::Misaligned => -22, // EINVAL
            BlockError::ReadOnly => -30,   // EROFS
            BlockError::Unsupported => -95, // EOPNOTSUPP
            BlockError::Io | BlockError::Timeout => -5, // EIO
            BlockError::NoMemory => -12,   // ENOMEM
        }
    }
}

impl core::fmt::Display for BlockError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            BlockError::NoDevice => "no such device",
            BlockError::OutOfRange => "beyond the end of the device",
            BlockError::Misaligned => "length not a multiple of 512",
            BlockError::ReadOnly => "read-only device",
            BlockError::Unsupported => "not supported by the device",
            BlockError::Io => "I/O error",
            BlockError::Timeout => "the device did not answer in time",
            BlockError::NoMemory => "out of memory",
        })
    }
}

/// A disk or a partition of it: sectors `start..start + sectors` of the disk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Window {
    /// The first sector, on the disk.
    pub start: u64,
    /// Its length in sectors.
    pub sectors: u64,
}

impl Window {
    /// The disk sector where an access of `len` bytes at `sector` of this window begins, after
    /// checking that `len` is whole sectors and that the access stays inside the window.
    pub fn check(&self, sector: u64, len: usize) -> Result<u64, BlockError> {
        if !len.is_multiple_of(SECTOR) {
            return Err(BlockError::Misaligned);
        }
        self.check_count(sector, (len / SECTOR) as u64)
    }

    /// Likewise for `count` sectors at `sector` (a discard).
    pub fn check_count(&self, sector: u64, count: u64) -> Result<u64, BlockError> {
        let end = sector.checked_add(count).ok_or(BlockError::OutOfRange)?;
        if end > self.sectors {
            return Err(BlockError::OutOfRange);
        }
        self.start.checked_add(sector).ok_or(BlockError::OutOfRange)
    }
}

/// Linux's name for virtio disk number `index`: `vda`..`vdz`, `vdaa`..`vdzz`, ...
pub fn disk_name(index: usize) -> String {
    // Bijective base 26, as Linux's `sd_format_disk_name`.
    let mut letters = alloc::vec::Vec::new();
    let mut n = index + 1;
    while n > 0 {
        n -= 1;
        letters.push(b'a' + (n % 26) as u8);
        n /= 26;
    }
    letters.reverse();
    let mut name = String::from("vd");
    name.extend(letters.iter().map(|&b| b as char));
    name
}

/// A partition's name: the disk's followed by its number (`vda1`; Linux puts a `p` between
/// only when the disk's name ends in a digit).
pub fn partition_name(disk: &str, number: u32) -> String {
    if disk.ends_with(|c: char| c.is_ascii_digit()) {
        alloc::format!("{disk}p{number}")
    } else {
        alloc::format!("{disk}{number}")
    }
}

/// `bytes` with three significant digits in `unit`-sized steps (`67.1 MB`, `64.0 MiB`), as
/// Linux's `string_get_size`.
fn human(bytes: u64, unit: f64, names: [&str; 6]) -> String {
    let mut v = bytes as f64;
    let mut i = 0;
    while v >= unit && i + 1 < names.len() {
        v /= unit;
        i += 1;
    }
    let name = names[i];
    if i == 0 {
        alloc::format!("{bytes} {name}")
    } else if v >= 100.0 {
        alloc::format!("{v:.0} {name}")
    } else if v >= 10.0 {
        alloc::format!("{v:.1} {name}")
    } else {
        alloc::format!("{v:.2} {name}")
    }
}

/// Linux's size line for a disk at boot: `131072 512-byte logical blocks (67.1 MB/64.0 MiB)`
/// (`sectors` counts 512-byte sectors).
pub fn size_text(sectors: u64, sector_size: u32) -> String {
    let bytes = sectors.saturating_mul(SECTOR as u64);
    alloc::format!(
        "{} {}-byte logical blocks ({}/{})",
        bytes / u64::from(sector_size.max(1)),
        sector_size,
        human(bytes, 1000.0, ["B", "kB", "MB", "GB", "TB", "PB"]),
        human(bytes, 1024.0, ["B", "KiB", "MiB", "GiB", "TiB", "PiB"])
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_bound_every_access() {
        let w = Window {
            start: 2048,
            sectors: 100,
        };
        assert_eq!(w.check(0, 512), Ok(2048));
        assert_eq!(w.check(99, 512), Ok(2147));
        assert_eq!(w.check(99, 1024), Err(BlockError::OutOfRange));
        assert_eq!(w.check(100, 0), Ok(2148));
        assert_eq!(w.check(101, 0), Err(BlockError::OutOfRange));
        assert_eq!(w.check(0, 511), Err(BlockError::Misaligned));
        assert_eq!(w.check(u64::MAX, 512), Err(BlockError::OutOfRange));
        assert_eq!(w.check_count(u64::MAX - 1, 5), Err(BlockError::OutOfRange));
        assert_eq!(w.check_count(50, 50), Ok(2098));
    }

    #[test]
    fn names_are_linuxs() {
        assert_eq!(disk_name(0), "vda");
        assert_eq!(disk_name(1), "vdb");
        assert_eq!(disk_name(25), "vdz");
        assert_eq!(disk_name(26), "vdaa");
        assert_eq!(disk_name(27), "vdab");
        assert_eq!(disk_name(26 + 26 * 26), "vdaaa");
        assert_eq!(partition_name("vda", 1), "vda1");
        assert_eq!(partition_name("nvme0n1", 2), "nvme0n1p2");
    }

    #[test]
    fn sizes_read_as_linuxs() {
        assert_eq!(
            size_text(131072, 512),
            "131072 512-byte logical blocks (67.1 MB/64.0 MiB)"
        );
        assert_eq!(
            size_text(2048, 512),
            "2048 512-byte logical blocks (1.05 MB/1.00 MiB)"
        );
        assert_eq!(
            size_text(41943040, 512),
            "41943040 512-byte logical blocks (21.5 GB/20.0 GiB)"
        );
        assert_eq!(
            size_text(8, 4096),
            "1 4096-byte logical blocks (4.10 kB/4.00 KiB)"
        );
    }

    #[test]
    fn errors_are_linux_errnos() {
        assert_eq!(BlockError::OutOfRange.errno(), -28);
        assert_eq!(BlockError::Misaligned.errno(), -22);
        assert_eq!(BlockError::Timeout.errno(), -5);
    }
}
