//! dom0's block devices: the disks its drivers found (`virtio_blk`), and their partitions, by
//! Linux's names (`/dev/vda`, `/dev/vda1`, ...). This is the one way to a disk for the rest
//! of the kernel: the device files (`sys`), and blkback serving domUs.
//!
//! A device is a [`DevId`]; a partition is a window on its disk ([`Window`]), and every
//! access is checked against its window here, before a driver sees it. Each disk sits behind
//! its own lock for the length of a request; a driver's wait for its device looks at the
//! device's event only (never at the backends), so a backend serving a domU from
//! `crate::service` cannot find the lock taken by a request it interrupted.

// Until the device files and blkback call all of it.
#![allow(dead_code)]

use alloc::boxed::Box;
use alloc::string::String;
use alloc::vec::Vec;

use spin::Mutex;
pub use xenia_dom0::block::BlockError;
use xenia_dom0::block::{Window, partition_name};

/// A block device: a disk or one of its partitions (an index into the registry; devices are
/// never removed, so a `DevId` stays valid).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct DevId(pub usize);

/// What a device is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Info {
    /// Its name under `/dev` (`vda`, `vda1`).
    pub name: String,
    /// Its length in 512-byte sectors.
    pub sectors: u64,
    /// The device's logical block size in bytes (512 for virtio-blk unless it says otherwise).
    pub sector_size: u32,
    /// Whether writes are refused.
    pub read_only: bool,
}

/// What [`Disk::read_direct`] and [`Disk::write_direct`] lend their transfer buffer to: given
/// its first machine frame (for copies by the hypervisor) and its bytes (for the kernel's).
pub type Lend<'a> = dyn FnMut(u64, &mut [u8]) -> Result<(), BlockError> + 'a;

/// A disk as its driver offers it. Sector numbers count 512-byte sectors from the start of the
/// disk and arrive checked against [`Disk::sectors`]; buffers are whole sectors.
pub trait Disk: Send {
    /// Its length in 512-byte sectors.
    fn sectors(&self) -> u64;
    /// Its logical block size in bytes.
    fn sector_size(&self) -> u32;
    /// Whether the device refuses writes.
    fn read_only(&self) -> bool;
    /// Reads `buf.len() / 512` sectors at `sector`, waiting a bounded time.
    fn read(&mut self, sector: u64, buf: &mut [u8]) -> Result<(), BlockError>;
    /// Writes them; on success the device has acknowledged the data.
    fn write(&mut self, sector: u64, buf: &[u8]) -> Result<(), BlockError>;
    /// Makes every acknowledged write durable (the device's cache flushed).
    fn flush(&mut self) -> Result<(), BlockError>;
    /// Tells the device that `count` sectors at `sector` are unused.
    fn discard(&mut self, sector: u64, count: u64) -> Result<(), BlockError>;
    /// Reads `len` bytes (whole sectors) at `sector` into the driver's own transfer buffer,
    /// then lends it to `drain` (given the buffer's first machine frame, for copies by the
    /// hypervisor, and its first `len` bytes, for copies by the kernel; the buffer is
    /// machine-contiguous) to copy them out, saving a copy. [`BlockError::Unsupported`], before anything is done, if the
    /// driver has no such buffer.
    fn read_direct(
        &mut self,
        _sector: u64,
        _len: usize,
        _drain: &mut Lend<'_>,
    ) -> Result<(), BlockError> {
        Err(BlockError::Unsupported)
    }
    /// Lends the driver's transfer buffer to `fill` (as for [`Disk::read_direct`]), which
    /// writes `len` bytes into it, then writes them at `sector`; nothing is written if `fill`
    /// fails.
    fn write_direct(
        &mut self,
        _sector: u64,
        _len: usize,
        _fill: &mut Lend<'_>,
    ) -> Result<(), BlockError> {
        Err(BlockError::Unsupported)
    }
}

/// A device of the registry.
struct Node {
    name: String,
    /// The index of its disk in [`DISKS`].
    disk: usize,
    window: Window,
    /// 0 for the disk itself, else the partition number.
    partition: u32,
}

/// A disk behind its lock, for the kernel's lifetime.
type DiskCell = &'static Mutex<Box<dyn Disk>>;

/// The disks, in the order their drivers found them.
static DISKS: Mutex<Vec<DiskCell>> = Mutex::new(Vec::new());
/// Every device, disks and partitions.
static NODES: Mutex<Vec<Node>> = Mutex::new(Vec::new());

/// Adds a disk called `name` (`vda`) and returns its device. Boot only.
pub fn add_disk(name: &str, disk: Box<dyn Disk>) -> DevId {
    let sectors = disk.sectors();
    let cell: DiskCell = Box::leak(Box::new(Mutex::new(disk)));
    let index = {
        let mut disks = DISKS.lock();
        disks.push(cell);
        disks.len() - 1
    };
    let mut nodes = NODES.lock();
    nodes.push(Node {
        name: String::from(name),
        disk: index,
        window: Window { start: 0, sectors },
        partition: 0,
    });
    DevId(nodes.len() - 1)
}

/// Adds partition `number` of disk `disk`, sectors `window` of it (checked to lie on the
/// disk). Boot only.
pub fn add_partition(disk: DevId, number: u32, window: Window) -> Option<DevId> {
    let mut nodes = NODES.lock();
    let parent = nodes.get(disk.0).filter(|n| n.partition == 0)?;
    parent
        .window
        .check_count(window.start, window.sectors)
        .ok()?;
    let node = Node {
        name: partition_name(&parent.name, number),
        disk: parent.disk,
        window,
        partition: number,
    };
    nodes.push(node);
    Some(DevId(nodes.len() - 1))
}

/// The device at `path` (`/dev/vdb`, `/dev/vda1`, or the bare name).
pub fn lookup(path: &str) -> Option<DevId> {
    let name = path.strip_prefix("/dev/").unwrap_or(path);
    NODES.lock().iter().position(|n| n.name == name).map(DevId)
}

/// Every device, disks followed by their partitions, in the order found.
pub fn all() -> Vec<DevId> {
    (0..NODES.lock().len()).map(DevId).collect()
}

/// What `dev` is.
pub fn info(dev: DevId) -> Option<Info> {
    let nodes = NODES.lock();
    let node = nodes.get(dev.0)?;
    let disk = DISKS.lock().get(node.disk).copied()?;
    let disk = disk.lock();
    Some(Info {
        name: node.name.clone(),
        sectors: node.window.sectors,
        sector_size: disk.sector_size(),
        read_only: disk.read_only(),
    })
}

/// The partition number of `dev` (0 for a whole disk) and its disk's device, for device
/// numbers (`st_rdev`) and `/proc/partitions`.
pub fn position(dev: DevId) -> Option<(DevId, u32)> {
    let nodes = NODES.lock();
    let node = nodes.get(dev.0)?;
    let whole = nodes
        .iter()
        .position(|n| n.disk == node.disk && n.partition == 0)?;
    Some((DevId(whole), node.partition))
}

/// The disk of `dev` and the disk sector where an access of `len` bytes at `sector` of `dev`
/// begins, checked.
fn place(dev: DevId, sector: u64, len: Result<usize, u64>) -> Result<(DiskCell, u64), BlockError> {
    let (disk, window) = {
        let nodes = NODES.lock();
        let node = nodes.get(dev.0).ok_or(BlockError::NoDevice)?;
        (node.disk, node.window)
    };
    let at = match len {
        Ok(bytes) => window.check(sector, bytes)?,
        Err(count) => window.check_count(sector, count)?,
    };
    let disk = DISKS
        .lock()
        .get(disk)
        .copied()
        .ok_or(BlockError::NoDevice)?;
    Ok((disk, at))
}

/// Reads `buf.len()` bytes (whole sectors) at 512-byte sector `sector` of `dev`. The wait
/// for the device is bounded ([`BlockError::Timeout`]).
pub fn read(dev: DevId, sector: u64, buf: &mut [u8]) -> Result<(), BlockError> {
    let (disk, at) = place(dev, sector, Ok(buf.len()))?;
    if buf.is_empty() {
        return Ok(());
    }
    disk.lock().read(at, buf)
}

/// Writes `buf` (whole sectors) at sector `sector` of `dev`; on success the device has
/// acknowledged it (use [`flush`] to make it durable).
pub fn write(dev: DevId, sector: u64, buf: &[u8]) -> Result<(), BlockError> {
    let (disk, at) = place(dev, sector, Ok(buf.len()))?;
    let mut disk = disk.lock();
    if disk.read_only() {
        return Err(BlockError::ReadOnly);
    }
    if buf.is_empty() {
        return Ok(());
    }
    disk.write(at, buf)
}

/// [`read`] of `len` bytes through the driver's transfer buffer, lent to `drain` (see
/// [`Disk::read_direct`]); checked against `dev`'s window as `read` is.
pub fn read_direct(
    dev: DevId,
    sector: u64,
    len: usize,
    drain: &mut Lend<'_>,
) -> Result<(), BlockError> {
    let (disk, at) = place(dev, sector, Ok(len))?;
    if len == 0 {
        return Ok(());
    }
    disk.lock().read_direct(at, len, drain)
}

/// [`write()`] of `len` bytes that `fill` puts in the driver's transfer buffer (see
/// [`Disk::write_direct`]); checked as `write` is.
pub fn write_direct(
    dev: DevId,
    sector: u64,
    len: usize,
    fill: &mut Lend<'_>,
) -> Result<(), BlockError> {
    let (disk, at) = place(dev, sector, Ok(len))?;
    let mut disk = disk.lock();
    if disk.read_only() {
        return Err(BlockError::ReadOnly);
    }
    if len == 0 {
        return Ok(());
    }
    disk.write_direct(at, len, fill)
}

/// Flushes the device's write cache (the whole disk's, for a partition).
pub fn flush(dev: DevId) -> Result<(), BlockError> {
    let (disk, _) = place(dev, 0, Ok(0))?;
    disk.lock().flush()
}

/// Discards `count` sectors at `sector` of `dev`; [`BlockError::Unsupported`] if the device
/// cannot.
pub fn discard(dev: DevId, sector: u64, count: u64) -> Result<(), BlockError> {
    let (disk, at) = place(dev, sector, Err(count))?;
    let mut disk = disk.lock();
    if disk.read_only() {
        return Err(BlockError::ReadOnly);
    }
    if count == 0 {
        return Ok(());
    }
    disk.discard(at, count)
}
