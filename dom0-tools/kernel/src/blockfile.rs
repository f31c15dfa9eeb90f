//! Block devices as files (`/dev/vda`, `/dev/vda1`, ...): the system calls on them, as
//! Linux's `block/fops.c` serves them. Reads and writes go at the file offset (`read`,
//! `write`) or at the one given (`pread64`, `pwrite64`), at any byte offset and length (a
//! partial sector is read whole, changed and written back: `xenia_dom0::block`); a read stops
//! at the device's end, a write at or past it fails with `ENOSPC`; `fsync`, `sync` and
//! `BLKFLSBUF` flush the device's cache; `BLKGETSIZE64`, `BLKGETSIZE`, `BLKSSZGET`,
//! `BLKPBSZGET`, `BLKBSZGET`, `BLKROGET` say what it is. Device file `n` is block device
//! `DevId(n)` ([`register_nodes`] makes them match).
//!
//! Nothing is cached: a write that returned is on the device (acknowledged by it), so a
//! power-off after `sync` loses nothing, and the host reads what dom0 wrote.

use alloc::string::String;
use alloc::vec::Vec;

use guest_abi::Errno;
use xenia_dom0::block::{self as lib, BlockError, SECTOR, virtblk_rdev};
use xenia_dom0::files::{self, BlockNode};

use crate::blockdev::{self, DevId};
use crate::process::Process;

/// Most bytes one call moves (a larger one returns this many, as a short transfer).
const CHUNK: u64 = 1 << 20;

/// The device numbers of every block device, by `DevId`: Linux's virtio_blk numbering.
fn numbers() -> Vec<(DevId, (u32, u32))> {
    let mut out = Vec::new();
    let mut disks: Vec<DevId> = Vec::new();
    let mut extended = 0;
    for dev in blockdev::all() {
        let Some((whole, part)) = blockdev::position(dev) else {
            continue;
        };
        if part == 0 {
            disks.push(dev);
        }
        let index = disks.iter().position(|&d| d == whole).unwrap_or(0);
        let rdev = virtblk_rdev(index, part, extended);
        if part >= 16 {
            extended += 1;
        }
        out.push((dev, rdev));
    }
    out
}

/// Makes `/dev/<name>` of every block device. Boot only, after the drivers.
pub fn register_nodes() {
    let nodes = numbers()
        .into_iter()
        .filter_map(|(dev, rdev)| {
            let info = blockdev::info(dev)?;
            Some(BlockNode {
                name: info.name,
                rdev,
                bytes: info.sectors.saturating_mul(SECTOR as u64),
            })
        })
        .collect();
    files::set_block_devices(nodes);
}

/// `/proc/partitions`' rows: major, minor, sectors, name.
pub fn partitions() -> Vec<(u32, u32, u64, String)> {
    numbers()
        .into_iter()
        .filter_map(|(dev, (major, minor))| {
            let info = blockdev::info(dev)?;
            Some((major, minor, info.sectors, info.name))
        })
        .collect()
}

fn errno(e: BlockError) -> i64 {
    e.errno()
}

/// Size in bytes of device `dev`.
fn size(dev: DevId) -> Result<u64, i64> {
    blockdev::info(dev)
        .map(|i| i.sectors.saturating_mul(SECTOR as u64))
        .ok_or(BlockError::NoDevice.errno())
}

/// `read` (at the file offset, moved) or `pread64` (at `at`) of `len` bytes into user
/// memory at `buf`.
pub fn read(p: &mut Process, fd: i64, n: u16, buf: u64, len: u64, at: Option<u64>) -> i64 {
    let dev = DevId(usize::from(n));
    let offset = match at.map_or_else(|| p.files.offset(fd), Ok) {
        Ok(o) => o,
        Err(e) => return e,
    };
    let size = match size(dev) {
        Ok(s) => s,
        Err(e) => return e,
    };
    let dst = match p.user_bytes(buf, len.min(CHUNK), true) {
        Ok(d) => d,
        Err(e) => return e,
    };
    match lib::read_bytes(size, offset, dst, |s, b| blockdev::read(dev, s, b)) {
        Ok(done) => {
            if at.is_none() {
                let _ = p.files.set_offset(fd, offset + done as u64);
            }
            done as i64
        }
        Err(e) => errno(e),
    }
}

/// `write` (at the file offset, moved) or `pwrite64` (at `at`) of `src`.
pub fn write(p: &mut Process, fd: i64, n: u16, src: &[u8], at: Option<u64>) -> i64 {
    let dev = DevId(usize::from(n));
    let offset = match at.map_or_else(|| p.files.offset(fd), Ok) {
        Ok(o) => o,
        Err(e) => return e,
    };
    let size = match size(dev) {
        Ok(s) => s,
        Err(e) => return e,
    };
    if blockdev::info(dev).is_some_and(|i| i.read_only) {
        // Linux's `blkdev_write_iter` on a read-only disk.
        return -(Errno::EPERM as i64);
    }
    let src = &src[..src.len().min(CHUNK as usize)];
    let written = lib::write_bytes(
        size,
        offset,
        src,
        |s, b| blockdev::read(dev, s, b),
        |s, b| blockdev::write(dev, s, b),
    );
    match written {
        Ok(done) => {
            if at.is_none() {
                let _ = p.files.set_offset(fd, offset + done as u64);
            }
            done as i64
        }
        Err(e) => errno(e),
    }
}

/// `fsync` on device `n`: the device's write cache flushed.
pub fn flush(n: u16) -> i64 {
    blockdev::flush(DevId(usize::from(n))).map_or_else(errno, |()| 0)
}

/// `sync`: every disk flushed.
pub fn sync_all() {
    for dev in blockdev::all() {
        if blockdev::position(dev).is_some_and(|(_, part)| part == 0) {
            let _ = blockdev::flush(dev);
        }
    }
}

// Linux's block ioctls (`include/uapi/linux/fs.h`).
const BLKROGET: u64 = 0x125e;
const BLKRRPART: u64 = 0x125f;
const BLKGETSIZE: u64 = 0x1260;
const BLKFLSBUF: u64 = 0x1261;
const BLKSSZGET: u64 = 0x1268;
const BLKBSZGET: u64 = 0x8008_1270;
const BLKGETSIZE64: u64 = 0x8008_1272;
const BLKPBSZGET: u64 = 0x127b;

/// Writes `bytes` to user memory at `arg`.
fn put(p: &mut Process, arg: u64, bytes: &[u8]) -> i64 {
    match p.user_bytes(arg, bytes.len() as u64, true) {
        Ok(dst) => {
            dst.copy_from_slice(bytes);
            0
        }
        Err(e) => e,
    }
}

/// `ioctl` on block device `n`.
pub fn ioctl(p: &mut Process, n: u16, req: u64, arg: u64) -> i64 {
    let dev = DevId(usize::from(n));
    let Some(info) = blockdev::info(dev) else {
        return BlockError::NoDevice.errno();
    };
    let bytes = info.sectors.saturating_mul(SECTOR as u64);
    match req {
        BLKGETSIZE64 => put(p, arg, &bytes.to_le_bytes()),
        BLKGETSIZE => put(p, arg, &info.sectors.to_le_bytes()),
        BLKSSZGET | BLKPBSZGET | BLKBSZGET => put(p, arg, &info.sector_size.to_le_bytes()),
        BLKROGET => put(p, arg, &u32::from(info.read_only).to_le_bytes()),
        BLKFLSBUF => flush(n),
        // The partitions were read at boot; a table written since is read at the next.
        BLKRRPART => -(Errno::EBUSY as i64),
        _ => -25, // ENOTTY
    }
}
