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

/// Reads `dst.len()` bytes at byte `offset` of a device of `size` bytes, as Linux's block
/// device files read: 0 at or past the end, a short read across it, and bytes at any offset
/// (a partial first or last sector read whole into a sector buffer and copied from).
/// `read(sector, buf)` reads whole sectors. Returns the bytes read, or the error if none were.
pub fn read_bytes(
    size: u64,
    offset: u64,
    dst: &mut [u8],
    mut read: impl FnMut(u64, &mut [u8]) -> Result<(), BlockError>,
) -> Result<usize, BlockError> {
    if offset >= size || dst.is_empty() {
        return Ok(0);
    }
    let len = (dst.len() as u64).min(size - offset) as usize;
    let mut done = 0;
    let mut sector_buf = [0u8; SECTOR];
    while done < len {
        let at = offset + done as u64;
        let sector = at / SECTOR as u64;
        let skip = (at % SECTOR as u64) as usize;
        let step = if skip == 0 && len - done >= SECTOR {
            // Whole sectors straight into the caller's buffer.
            let whole = (len - done) / SECTOR * SECTOR;
            read(sector, &mut dst[done..done + whole]).map(|()| whole)
        } else {
            let n = (SECTOR - skip).min(len - done);
            read(sector, &mut sector_buf).map(|()| {
                dst[done..done + n].copy_from_slice(&sector_buf[skip..skip + n]);
                n
            })
        };
        match step {
            Ok(n) => done += n,
            Err(e) if done == 0 => return Err(e),
            Err(_) => break,
        }
    }
    Ok(done)
}

/// Writes `src` at byte `offset` of a device of `size` bytes, as Linux's block device files
/// write: `OutOfRange` (`ENOSPC`) at or past the end, a short write across it, a partial
/// sector read, changed and written back whole. Returns the bytes written, or the error if
/// none were; every byte counted was acknowledged by the device.
pub fn write_bytes(
    size: u64,
    offset: u64,
    src: &[u8],
    mut read: impl FnMut(u64, &mut [u8]) -> Result<(), BlockError>,
    mut write: impl FnMut(u64, &[u8]) -> Result<(), BlockError>,
) -> Result<usize, BlockError> {
    if src.is_empty() {
        return Ok(0);
    }
    if offset >= size {
        return Err(BlockError::OutOfRange);
    }
    let len = (src.len() as u64).min(size - offset) as usize;
    let mut done = 0;
    let mut sector_buf = [0u8; SECTOR];
    while done < len {
        let at = offset + done as u64;
        let sector = at / SECTOR as u64;
        let skip = (at % SECTOR as u64) as usize;
        let step = if skip == 0 && len - done >= SECTOR {
            let whole = (len - done) / SECTOR * SECTOR;
            write(sector, &src[done..done + whole]).map(|()| whole)
        } else {
            let n = (SECTOR - skip).min(len - done);
            read(sector, &mut sector_buf).and_then(|()| {
                sector_buf[skip..skip + n].copy_from_slice(&src[done..done + n]);
                write(sector, &sector_buf).map(|()| n)
            })
        };
        match step {
            Ok(n) => done += n,
            Err(e) if done == 0 => return Err(e),
            Err(_) => break,
        }
    }
    Ok(done)
}

/// Linux's line in `/proc/partitions` for a device: major, minor, size in KiB, name.
pub fn proc_partitions_line(major: u32, minor: u32, sectors: u64, name: &str) -> String {
    alloc::format!("{major:4}  {minor:7} {:10} {name}\n", sectors / 2)
}

/// The header of `/proc/partitions`.
pub const PROC_PARTITIONS_HEADER: &str = "major minor  #blocks  name\n\n";

/// The device numbers Linux's virtio_blk gives partition `partition` (0: the whole disk) of
/// disk `index`: its major (253 here, dynamic on Linux) and 16 minors per disk, then the
/// extended major 259 for partitions past 15.
pub fn virtblk_rdev(index: usize, partition: u32, extended_seq: u32) -> (u32, u32) {
    if partition < 16 {
        (VIRTBLK_MAJOR, index as u32 * 16 + partition)
    } else {
        (259, extended_seq)
    }
}

/// The major number of virtio disks.
pub const VIRTBLK_MAJOR: u32 = 253;

#[cfg(test)]
mod tests {
    use super::*;

    /// A disk in memory: `sectors` sectors of a pattern, read and written whole, with a
    /// count of the device requests.
    struct Mem {
        bytes: alloc::vec::Vec<u8>,
        requests: usize,
    }

    impl Mem {
        fn new(sectors: usize) -> Mem {
            Mem {
                bytes: (0..sectors * SECTOR).map(|i| (i * 7 % 251) as u8).collect(),
                requests: 0,
            }
        }
        fn read(&mut self, sector: u64, buf: &mut [u8]) -> Result<(), BlockError> {
            self.requests += 1;
            assert!(buf.len().is_multiple_of(SECTOR));
            let at = sector as usize * SECTOR;
            buf.copy_from_slice(
                self.bytes
                    .get(at..at + buf.len())
                    .ok_or(BlockError::OutOfRange)?,
            );
            Ok(())
        }
        fn write(&mut self, sector: u64, buf: &[u8]) -> Result<(), BlockError> {
            self.requests += 1;
            assert!(buf.len().is_multiple_of(SECTOR));
            let at = sector as usize * SECTOR;
            self.bytes
                .get_mut(at..at + buf.len())
                .ok_or(BlockError::OutOfRange)?
                .copy_from_slice(buf);
            Ok(())
        }
    }

    #[test]
    fn reads_at_any_offset_stop_at_the_end() {
        let disk = core::cell::RefCell::new(Mem::new(8));
        let size = 8 * SECTOR as u64;
        let expect = disk.borrow().bytes.clone();
        for (offset, len) in [
            (0, 4096),
            (1, 10),
            (511, 2),
            (100, 1500),
            (4000, 200),
            (0, 1),
        ] {
            let mut buf = alloc::vec![0u8; len];
            let n = read_bytes(size, offset, &mut buf, |s, b| disk.borrow_mut().read(s, b));
            let want = len.min((size - offset) as usize);
            assert_eq!(n, Ok(want), "{offset}+{len}");
            assert_eq!(buf[..want], expect[offset as usize..offset as usize + want]);
        }
        let mut buf = [0u8; 10];
        assert_eq!(
            read_bytes(size, size, &mut buf, |s, b| disk.borrow_mut().read(s, b)),
            Ok(0)
        );
        assert_eq!(
            read_bytes(size, size + 5, &mut buf, |s, b| disk
                .borrow_mut()
                .read(s, b)),
            Ok(0)
        );
        // Aligned whole sectors go in one request.
        disk.borrow_mut().requests = 0;
        let mut big = alloc::vec![0u8; 4096];
        read_bytes(size, 0, &mut big, |s, b| disk.borrow_mut().read(s, b)).unwrap();
        assert_eq!(disk.borrow().requests, 1);
    }

    #[test]
    fn writes_read_modify_write_partial_sectors() {
        let disk = core::cell::RefCell::new(Mem::new(8));
        let size = 8 * SECTOR as u64;
        let mut model = disk.borrow().bytes.clone();
        for (offset, len) in [
            (3u64, 5usize),
            (510, 4),
            (1024, 1024),
            (100, 2000),
            (4090, 6),
        ] {
            let data: alloc::vec::Vec<u8> = (0..len).map(|i| (i as u8) ^ 0x5a).collect();
            let n = write_bytes(
                size,
                offset,
                &data,
                |s, b| disk.borrow_mut().read(s, b),
                |s, b| disk.borrow_mut().write(s, b),
            );
            assert_eq!(n, Ok(len));
            model[offset as usize..offset as usize + len].copy_from_slice(&data);
            assert_eq!(disk.borrow().bytes, model, "{offset}+{len}");
        }
        // Across the end: short; at the end: ENOSPC.
        let n = write_bytes(
            size,
            size - 3,
            &[1; 10],
            |s, b| disk.borrow_mut().read(s, b),
            |s, b| disk.borrow_mut().write(s, b),
        );
        assert_eq!(n, Ok(3));
        let n = write_bytes(
            size,
            size,
            &[1; 10],
            |s, b| disk.borrow_mut().read(s, b),
            |s, b| disk.borrow_mut().write(s, b),
        );
        assert_eq!(n, Err(BlockError::OutOfRange));
        assert_eq!(BlockError::OutOfRange.errno(), -28);
    }

    #[test]
    fn errors_after_progress_shorten_the_transfer() {
        let mut buf = [0u8; 2048];
        let mut calls = 0;
        let n = read_bytes(1 << 20, 256, &mut buf, |_, _| {
            calls += 1;
            if calls > 1 {
                Err(BlockError::Io)
            } else {
                Ok(())
            }
        });
        assert_eq!(n, Ok(256));
        assert_eq!(
            read_bytes(1 << 20, 0, &mut buf, |_, _| Err(BlockError::Io)),
            Err(BlockError::Io)
        );
    }

    #[test]
    fn proc_partitions_lines_are_linuxs() {
        assert_eq!(
            proc_partitions_line(253, 0, 131072, "vda"),
            " 253        0      65536 vda\n"
        );
        assert_eq!(virtblk_rdev(1, 2, 0), (253, 18));
        assert_eq!(virtblk_rdev(0, 16, 0), (259, 0));
    }

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
