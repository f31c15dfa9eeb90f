//! A process's open files in dom0 (DESIGN.md §7): the files of dom0's root (a
//! [`Tmpfs`], writable, seeded from the initrd), the kernel's devices, pipes and the
//! kernel's generated files (`/proc`), behind Linux's file descriptors.
//!
//! * Descriptors name **open file descriptions**, shared as Linux shares them: a `dup`ed
//!   descriptor, and the copy a forked child inherits, move one file offset together, so
//!   that `{ echo a; xl list; } > f` keeps both outputs.
//! * A descriptor on a file **holds** its inode ([`Tmpfs::retain`]): a file unlinked while
//!   open keeps its contents until its last descriptor closes. Every method that makes or
//!   drops a descriptor takes the file system to keep that count.
//! * The devices — the console, `/dev/null`, `/dev/zero`, `/dev/xen/*` — are known by path
//!   and handed back to the kernel as a [`Device`] for it to serve; pipe ends, as a
//!   [`PipeEnd`] the kernel counts.
//! * Descriptors 0, 1 and 2 start on the console. Everything returns the negative errno
//!   Linux would.

use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicU64, Ordering};

use crate::cpio;
use crate::tmpfs::{Follow, Ino, Tmpfs};

/// Linux errno values the calls here return (negated on return).
pub mod errno {
    /// Operation not permitted.
    pub const EPERM: i64 = 1;
    /// No such file or directory.
    pub const ENOENT: i64 = 2;
    /// Bad file descriptor.
    pub const EBADF: i64 = 9;
    /// Out of memory.
    pub const ENOMEM: i64 = 12;
    /// Device or resource busy.
    pub const EBUSY: i64 = 16;
    /// File exists.
    pub const EEXIST: i64 = 17;
    /// Not a directory.
    pub const ENOTDIR: i64 = 20;
    /// Is a directory.
    pub const EISDIR: i64 = 21;
    /// Invalid argument.
    pub const EINVAL: i64 = 22;
    /// Too many open files in the system.
    pub const ENFILE: i64 = 23;
    /// Too many open files.
    pub const EMFILE: i64 = 24;
    /// File too large.
    pub const EFBIG: i64 = 27;
    /// No space left on device.
    pub const ENOSPC: i64 = 28;
    /// Permission denied.
    pub const EACCES: i64 = 13;
    /// Illegal seek.
    pub const ESPIPE: i64 = 29;
    /// Read-only file system.
    pub const EROFS: i64 = 30;
    /// Too many links.
    pub const EMLINK: i64 = 31;
    /// File name too long.
    pub const ENAMETOOLONG: i64 = 36;
    /// Directory not empty.
    pub const ENOTEMPTY: i64 = 39;
    /// Too many levels of symbolic links.
    pub const ELOOP: i64 = 40;
}
use errno::*;

/// `O_WRONLY`.
pub const O_WRONLY: u32 = 0o1;
/// `O_RDWR`.
pub const O_RDWR: u32 = 0o2;
/// `O_CREAT`.
pub const O_CREAT: u32 = 0o100;
/// `O_EXCL`.
pub const O_EXCL: u32 = 0o200;
/// `O_TRUNC`.
pub const O_TRUNC: u32 = 0o1000;
/// `O_APPEND`.
pub const O_APPEND: u32 = 0o2000;
/// `O_NONBLOCK`.
pub const O_NONBLOCK: u32 = 0o4000;
/// `O_DIRECTORY`.
pub const O_DIRECTORY: u32 = 0o200000;
/// `O_NOFOLLOW`.
pub const O_NOFOLLOW: u32 = 0o400000;
/// `O_CLOEXEC`.
pub const O_CLOEXEC: u32 = 0o2000000;
/// `FD_CLOEXEC`.
pub const FD_CLOEXEC: u64 = 1;

/// Most descriptors a process may hold open.
pub const MAX_FDS: usize = 256;

/// A device the kernel serves itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Device {
    /// The serial console (`/dev/console`, and descriptors 0–2 at start).
    Console,
    /// `/dev/null`.
    Null,
    /// `/dev/zero`.
    Zero,
    /// `/dev/xen/privcmd`: hypercalls and foreign mappings.
    Privcmd,
    /// `/dev/xen/evtchn`: event channels.
    Evtchn,
    /// `/dev/xen/xenia`: the kernel's toolstack services (domain records,
    /// consoles; see [`devices`](dom0_tools::devices)).
    Xenia,
    /// `/dev/xen/xenbus`: xenstore requests and replies.
    Xenbus,
    /// A block device (`/dev/vda`, `/dev/vda1`): entry `n` of [`block_devices`].
    Block(u16),
}

/// A block device node, as the kernel registered it at boot ([`set_block_devices`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BlockNode {
    /// Its name under `/dev` (`vda1`).
    pub name: String,
    /// Its major and minor numbers.
    pub rdev: (u32, u32),
    /// Its size in bytes (`lseek(SEEK_END)`, `BLKGETSIZE64`).
    pub bytes: u64,
}

/// The block device nodes, by [`Device::Block`] index.
static BLOCKS: spin::Mutex<Vec<BlockNode>> = spin::Mutex::new(Vec::new());

/// Sets the block devices `/dev` shows (entry `n` is [`Device::Block`]`(n)`). Boot only.
pub fn set_block_devices(nodes: Vec<BlockNode>) {
    *BLOCKS.lock() = nodes;
}

/// The block devices `/dev` shows.
pub fn block_devices() -> Vec<BlockNode> {
    BLOCKS.lock().clone()
}

/// Block device `n`.
pub fn block_device(n: u16) -> Option<BlockNode> {
    BLOCKS.lock().get(usize::from(n)).cloned()
}

impl Device {
    fn by_path(path: &str) -> Option<Self> {
        Some(match path {
            "/dev/console" | "/dev/tty" => Self::Console,
            "/dev/null" => Self::Null,
            "/dev/zero" => Self::Zero,
            "/dev/xen/privcmd" => Self::Privcmd,
            "/dev/xen/evtchn" => Self::Evtchn,
            "/dev/xen/xenia" => Self::Xenia,
            "/dev/xen/xenbus" => Self::Xenbus,
            _ => {
                let name = path.strip_prefix("/dev/")?;
                let at = BLOCKS.lock().iter().position(|b| b.name == name)?;
                Self::Block(u16::try_from(at).ok()?)
            }
        })
    }

    /// Major and minor numbers as Linux gives them (for `fstat`).
    fn rdev(self) -> (u32, u32) {
        match self {
            Self::Console => (5, 1),
            Self::Null => (1, 3),
            Self::Zero => (1, 5),
            // misc devices; the minors are dynamic on Linux.
            Self::Privcmd => (10, 60),
            Self::Evtchn => (10, 61),
            Self::Xenia => (10, 62),
            Self::Xenbus => (10, 63),
            Self::Block(n) => block_device(n).map_or((0, 0), |b| b.rdev),
        }
    }
}

/// One end of a pipe: the kernel's pipe table holds the buffer, by `id`; descriptors hold
/// ends, and the kernel counts them (every end a table gains or loses is reported to it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PipeEnd {
    /// The pipe, in the kernel's table.
    pub id: u32,
    /// The writing end (else the reading end).
    pub write: bool,
}

/// A file the kernel generated as it was opened (`/proc`'s): read-only, its contents fixed
/// for as long as it is open, as a `seq_file` read in one go is.
#[derive(Debug, PartialEq, Eq)]
pub enum Snapshot {
    /// A file's bytes.
    File {
        /// Its inode number, for `fstat`.
        ino: u64,
        /// Its contents.
        bytes: Vec<u8>,
    },
    /// A directory's entries.
    Dir {
        /// Its inode number.
        ino: u64,
        /// Its parent's inode number (for `..`).
        parent: u64,
        /// Name, inode number and `d_type` of each entry, in listing order.
        entries: Vec<(String, u64, u8)>,
    },
}

#[derive(Clone, Debug)]
enum Node {
    File(Ino),
    Device(Device),
    Pipe(PipeEnd),
    Generated(Arc<Snapshot>),
}

/// What an open file description shares between the descriptors naming it.
#[derive(Debug, Default)]
struct Shared {
    offset: AtomicU64,
}

#[derive(Clone, Debug)]
struct Open {
    node: Node,
    shared: Arc<Shared>,
    status: u32,
    cloexec: bool,
}

impl Open {
    fn offset(&self) -> u64 {
        self.shared.offset.load(Ordering::Relaxed)
    }

    fn set_offset(&self, at: u64) {
        self.shared.offset.store(at, Ordering::Relaxed);
    }

    fn readable(&self) -> bool {
        self.status & 3 != O_WRONLY
    }

    fn writable(&self) -> bool {
        self.status & 3 != 0
    }
}

/// What a `read` on a descriptor comes to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Io {
    /// A file: read it with [`Files::read_file`].
    File,
    /// A device, for the kernel to serve.
    Device(Device),
    /// The reading end of pipe `id`, for the kernel to serve.
    Pipe(u32),
}

/// Where a `write` on a descriptor goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sink {
    /// A file: write it with [`Files::write_file`].
    File,
    /// A device, for the kernel to serve.
    Device(Device),
    /// The writing end of pipe `id`.
    Pipe(u32),
}

/// `struct stat` for x86-64 Linux, the fields dom0 fills.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stat {
    /// Inode number.
    pub ino: u64,
    /// Links.
    pub nlink: u64,
    /// Type and permissions.
    pub mode: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Device numbers of a device node (major, minor).
    pub rdev: (u32, u32),
    /// Size in bytes.
    pub size: u64,
    /// Modification time, seconds since the epoch (also used for atime and ctime).
    pub mtime: u64,
}

/// Linux's `makedev` for x86-64.
const fn makedev(major: u32, minor: u32) -> u64 {
    let (ma, mi) = (major as u64, minor as u64);
    ((ma & 0xffff_f000) << 32) | ((ma & 0xfff) << 8) | ((mi & 0xffff_ff00) << 12) | (mi & 0xff)
}

impl Stat {
    /// Size of `struct stat` on x86-64.
    pub const SIZE: usize = 144;

    /// The structure as Linux lays it out on x86-64.
    pub fn to_linux_bytes(&self) -> [u8; Self::SIZE] {
        let mut b = [0u8; Self::SIZE];
        let mut put = |off: usize, v: &[u8]| b[off..off + v.len()].copy_from_slice(v);
        // st_dev: `/proc`'s files are on a file system of their own (as `df` and `find
        // -xdev` tell them apart), everything else on the root.
        let dev: u64 = if self.ino >= crate::procfs::FIRST_INO {
            4
        } else {
            1
        };
        put(0, &dev.to_le_bytes());
        put(8, &self.ino.to_le_bytes());
        put(16, &self.nlink.to_le_bytes());
        put(24, &self.mode.to_le_bytes());
        put(28, &self.uid.to_le_bytes());
        put(32, &self.gid.to_le_bytes());
        put(40, &makedev(self.rdev.0, self.rdev.1).to_le_bytes());
        put(48, &self.size.to_le_bytes());
        put(56, &4096u64.to_le_bytes()); // st_blksize
        put(64, &self.size.div_ceil(512).to_le_bytes()); // st_blocks
        for off in [72, 88, 104] {
            put(off, &self.mtime.to_le_bytes()); // atime, mtime, ctime (nsec 0)
        }
        b
    }
}

/// A device's `stat`.
fn device_stat(d: Device) -> Stat {
    Stat {
        ino: 0x1000 + u64::from(d.rdev().0) * 256 + u64::from(d.rdev().1),
        nlink: 1,
        mode: match d {
            Device::Console => cpio::S_IFCHR | 0o620,
            // Linux's block device nodes: root's disk group, and `st_size` 0.
            Device::Block(_) => cpio::S_IFBLK | 0o660,
            _ => cpio::S_IFCHR | 0o666,
        },
        rdev: d.rdev(),
        ..Stat::default()
    }
}

/// The device an absolute, normalised path names, if any, with its `stat`.
pub fn device_at(path: &str) -> Option<(Device, Stat)> {
    Device::by_path(path).map(|d| (d, device_stat(d)))
}

/// A process's descriptor table. Cloning it (for a fork) shares every open file
/// description; the clone's holds on files are taken with [`Files::retain_all`].
#[derive(Clone, Debug)]
pub struct Files {
    fds: Vec<Option<Open>>,
}

impl Files {
    /// Descriptors 0, 1 and 2 on the console, read-write, sharing one description.
    pub fn with_console() -> Self {
        let console = Open {
            node: Node::Device(Device::Console),
            shared: Arc::new(Shared::default()),
            status: O_RDWR,
            cloexec: false,
        };
        Self {
            fds: alloc::vec![Some(console); 3],
        }
    }

    fn get(&mut self, fd: i64) -> Result<&mut Open, i64> {
        usize::try_from(fd)
            .ok()
            .and_then(|i| self.fds.get_mut(i))
            .and_then(Option::as_mut)
            .ok_or(-EBADF)
    }

    fn peek(&self, fd: i64) -> Option<&Open> {
        usize::try_from(fd)
            .ok()
            .and_then(|i| self.fds.get(i))?
            .as_ref()
    }

    /// Puts `open` at the lowest free descriptor at or above `min`.
    fn install(&mut self, open: Open, min: usize) -> Result<i64, i64> {
        let free = (min..MAX_FDS)
            .find(|&i| self.fds.get(i).is_none_or(Option::is_none))
            .ok_or(-EMFILE)?;
        if free >= self.fds.len() {
            self.fds.resize(free + 1, None);
        }
        self.fds[free] = Some(open);
        Ok(free as i64)
    }

    /// Installs a copy of `open` (a `dup`), holding its file once more.
    fn install_copy(&mut self, fs: &mut Tmpfs<'_>, open: Open, min: usize) -> Result<i64, i64> {
        if let Node::File(ino) = open.node {
            fs.retain(ino)?;
        }
        self.install(open.clone(), min).inspect_err(|_| {
            if let Node::File(ino) = open.node {
                let _ = fs.release(ino);
            }
        })
    }

    /// Lets go of what a dropped descriptor held: its file (released here) or its pipe end
    /// (returned, for the kernel to count).
    fn drop_open(fs: &mut Tmpfs<'_>, open: Open) -> Option<PipeEnd> {
        match open.node {
            Node::File(ino) => {
                let _ = fs.release(ino);
                None
            }
            Node::Pipe(end) => Some(end),
            Node::Device(_) | Node::Generated(_) => None,
        }
    }

    /// `openat(at, path, flags, mode)`: a device by its path (`abs` is `path` made absolute
    /// and normalised, for that), else the file system's file. `mode` is applied as given
    /// (the caller takes its umask off).
    pub fn open(
        &mut self,
        fs: &mut Tmpfs<'_>,
        at: Ino,
        path: &[u8],
        abs: &str,
        flags: u32,
        mode: u32,
    ) -> Result<i64, i64> {
        if path.is_empty() {
            return Err(-ENOENT);
        }
        let status = flags & (3 | O_APPEND | O_NONBLOCK);
        let cloexec = flags & O_CLOEXEC != 0;
        if let Some(d) = Device::by_path(abs) {
            if flags & O_DIRECTORY != 0 {
                return Err(-ENOTDIR);
            }
            return self.install(
                Open {
                    node: Node::Device(d),
                    shared: Arc::default(),
                    status,
                    cloexec,
                },
                0,
            );
        }
        if flags & 3 == 3 {
            return Err(-EINVAL);
        }
        let ino = fs.open(at, path, flags, mode)?;
        fs.retain(ino)?;
        let open = Open {
            node: Node::File(ino),
            shared: Arc::default(),
            status,
            cloexec,
        };
        self.install(open, 0).inspect_err(|_| {
            let _ = fs.release(ino);
        })
    }

    /// A descriptor on a generated file (read-only: opening it to write is `EACCES`).
    pub fn open_generated(&mut self, snapshot: Snapshot, flags: u32) -> Result<i64, i64> {
        if flags & 3 != 0 || flags & (O_CREAT | O_TRUNC) != 0 {
            return Err(-EACCES);
        }
        if flags & O_DIRECTORY != 0 && !matches!(snapshot, Snapshot::Dir { .. }) {
            return Err(-ENOTDIR);
        }
        self.install(
            Open {
                node: Node::Generated(Arc::new(snapshot)),
                shared: Arc::default(),
                status: flags & O_NONBLOCK,
                cloexec: flags & O_CLOEXEC != 0,
            },
            0,
        )
    }

    /// The device `fd` is on (if it is one) and its status flags (`O_NONBLOCK`, ...).
    pub fn describe(&mut self, fd: i64) -> Result<(Option<Device>, u32), i64> {
        let f = self.get(fd)?;
        let device = match f.node {
            Node::Device(d) => Some(d),
            _ => None,
        };
        Ok((device, f.status))
    }

    /// `close`: the pipe end it held, if any, for the kernel to count.
    pub fn close(&mut self, fs: &mut Tmpfs<'_>, fd: i64) -> Result<Option<PipeEnd>, i64> {
        self.get(fd)?;
        let open = self.fds[fd as usize].take().ok_or(-EBADF)?;
        Ok(Self::drop_open(fs, open))
    }

    /// `pipe2`: descriptors on the two ends of the kernel's pipe `id` (reading end first).
    /// Flags: `O_CLOEXEC`, `O_NONBLOCK`.
    pub fn open_pipe(&mut self, id: u32, flags: u32) -> Result<(i64, i64), i64> {
        if flags & !(O_CLOEXEC | O_NONBLOCK) != 0 {
            return Err(-EINVAL);
        }
        let end = |write: bool| Open {
            node: Node::Pipe(PipeEnd { id, write }),
            shared: Arc::default(),
            status: (if write { O_WRONLY } else { 0 }) | (flags & O_NONBLOCK),
            cloexec: flags & O_CLOEXEC != 0,
        };
        let read = self.install(end(false), 0)?;
        match self.install(end(true), 0) {
            Ok(write) => Ok((read, write)),
            Err(e) => {
                self.fds[read as usize] = None;
                Err(e)
            }
        }
    }

    /// `dup3(old, new, flags)` (`flags`: `O_CLOEXEC`): `new` names what `old` names,
    /// closing what it named before; that pipe end, if one, is returned.
    pub fn dup3(
        &mut self,
        fs: &mut Tmpfs<'_>,
        old: i64,
        new: i64,
        flags: u32,
    ) -> Result<Option<PipeEnd>, i64> {
        if flags & !O_CLOEXEC != 0 || old == new {
            return Err(-EINVAL);
        }
        let open = self.get(old)?.clone();
        let slot = usize::try_from(new)
            .ok()
            .filter(|&n| n < MAX_FDS)
            .ok_or(-EBADF)?;
        if let Node::File(ino) = open.node {
            fs.retain(ino)?;
        }
        if slot >= self.fds.len() {
            self.fds.resize(slot + 1, None);
        }
        let replaced = self.fds[slot].replace(Open {
            cloexec: flags & O_CLOEXEC != 0,
            ..open
        });
        Ok(replaced.and_then(|o| Self::drop_open(fs, o)))
    }

    /// `dup(old)`: the lowest free descriptor, naming what `old` names (close-on-exec off).
    pub fn dup(&mut self, fs: &mut Tmpfs<'_>, old: i64) -> Result<i64, i64> {
        let open = Open {
            cloexec: false,
            ..self.get(old)?.clone()
        };
        self.install_copy(fs, open, 0)
    }

    /// The directory `fd` is open on, for the `*at` calls and `fchdir` (`ENOTDIR` for
    /// anything else).
    pub fn dir_of(&self, fs: &Tmpfs<'_>, fd: i64) -> Result<Ino, i64> {
        match self.peek(fd).ok_or(-EBADF)?.node {
            Node::File(ino) if fs.stat(ino)?.mode & cpio::S_IFMT == cpio::S_IFDIR => Ok(ino),
            _ => Err(-ENOTDIR),
        }
    }

    /// The file `fd` is open on (`EBADF`; `EINVAL` for a device, pipe or generated file).
    pub fn file_of(&self, fd: i64) -> Result<Ino, i64> {
        match self.peek(fd).ok_or(-EBADF)?.node {
            Node::File(ino) => Ok(ino),
            _ => Err(-EINVAL),
        }
    }

    /// `getdents64` on `fd`: records for at most `room` bytes, from where the last call
    /// ended (empty at the end). `ENOTDIR` unless `fd` is a directory, `EINVAL` if even one
    /// record does not fit.
    pub fn getdents(&mut self, fs: &Tmpfs<'_>, fd: i64, room: usize) -> Result<Vec<u8>, i64> {
        let f = self.get(fd)?;
        match &f.node {
            Node::File(ino) => {
                let mut out = alloc::vec![0u8; room];
                let (n, next) = fs.getdents(*ino, f.offset(), &mut out)?;
                out.truncate(n);
                f.set_offset(next);
                Ok(out)
            }
            Node::Generated(snapshot) => {
                let Snapshot::Dir {
                    ino,
                    parent,
                    entries,
                } = &**snapshot
                else {
                    return Err(-ENOTDIR);
                };
                let mut out = Vec::new();
                let mut at = f.offset();
                loop {
                    let (name, ino, d_type) = match at {
                        0 => (".", *ino, 4),
                        1 => ("..", *parent, 4),
                        i => match usize::try_from(i - 2).ok().and_then(|i| entries.get(i)) {
                            Some((name, ino, t)) => (name.as_str(), *ino, *t),
                            None => break,
                        },
                    };
                    let reclen = (19 + name.len() + 1).next_multiple_of(8);
                    if out.len() + reclen > room {
                        if out.is_empty() {
                            return Err(-EINVAL);
                        }
                        break;
                    }
                    let start = out.len();
                    out.resize(start + reclen, 0);
                    let rec = &mut out[start..];
                    rec[..8].copy_from_slice(&ino.to_le_bytes());
                    rec[8..16].copy_from_slice(&(at + 1).to_le_bytes());
                    rec[16..18].copy_from_slice(&(reclen as u16).to_le_bytes());
                    rec[18] = d_type;
                    rec[19..19 + name.len()].copy_from_slice(name.as_bytes());
                    at += 1;
                }
                f.set_offset(at);
                Ok(out)
            }
            Node::Device(_) | Node::Pipe(_) => Err(-ENOTDIR),
        }
    }

    /// The pipe end `fd` is, if it is one.
    pub fn pipe_end(&self, fd: i64) -> Option<PipeEnd> {
        match self.peek(fd)?.node {
            Node::Pipe(end) => Some(end),
            _ => None,
        }
    }

    /// Every pipe end the table holds, one per descriptor (a fork's child adds them).
    pub fn pipe_ends(&self) -> Vec<PipeEnd> {
        self.fds
            .iter()
            .flatten()
            .filter_map(|o| match o.node {
                Node::Pipe(end) => Some(end),
                _ => None,
            })
            .collect()
    }

    /// Takes a hold on every file the table names: after cloning it for a fork. Files that
    /// cannot be held any more (a hold count at its limit) are closed in this table.
    pub fn retain_all(&mut self, fs: &mut Tmpfs<'_>) {
        for slot in &mut self.fds {
            if let Some(Open {
                node: Node::File(ino),
                ..
            }) = slot
                && fs.retain(*ino).is_err()
            {
                *slot = None;
            }
        }
    }

    /// Closes every descriptor (the process ended): the pipe ends they held, to count.
    pub fn close_all(&mut self, fs: &mut Tmpfs<'_>) -> Vec<PipeEnd> {
        let mut ends = Vec::new();
        for slot in &mut self.fds {
            if let Some(open) = slot.take() {
                ends.extend(Self::drop_open(fs, open));
            }
        }
        ends
    }

    /// `execve`'s part: closes the descriptors marked close-on-exec; the pipe ends they
    /// held are returned for the kernel to count.
    pub fn close_on_exec(&mut self, fs: &mut Tmpfs<'_>) -> Vec<PipeEnd> {
        let mut ends = Vec::new();
        for slot in &mut self.fds {
            if slot.as_ref().is_some_and(|o| o.cloexec)
                && let Some(open) = slot.take()
            {
                ends.extend(Self::drop_open(fs, open));
            }
        }
        ends
    }

    /// `read(fd, ...)`: what the read comes to (`EBADF` if not open for reading, `EISDIR`
    /// for a directory).
    pub fn read(&mut self, fs: &Tmpfs<'_>, fd: i64) -> Result<Io, i64> {
        let f = self.get(fd)?;
        if !f.readable() {
            return Err(-EBADF);
        }
        match &f.node {
            Node::Device(d) => Ok(Io::Device(*d)),
            Node::Pipe(end) => Ok(Io::Pipe(end.id)),
            Node::Generated(s) if matches!(**s, Snapshot::Dir { .. }) => Err(-EISDIR),
            Node::Generated(_) => Ok(Io::File),
            Node::File(ino) if is_dir(fs, *ino) => Err(-EISDIR),
            Node::File(_) => Ok(Io::File),
        }
    }

    /// Reads file `fd` at its offset into `buf`, moving the offset: the bytes read (0 at
    /// the end).
    pub fn read_file(&mut self, fs: &Tmpfs<'_>, fd: i64, buf: &mut [u8]) -> Result<usize, i64> {
        let f = self.get(fd)?;
        if !f.readable() {
            return Err(-EBADF);
        }
        let at = f.offset();
        let n = read_node(fs, &f.node, at, buf)?;
        f.set_offset(at + n as u64);
        Ok(n)
    }

    /// The file offset of `fd` (for a device the kernel reads at an offset: a block device).
    pub fn offset(&mut self, fd: i64) -> Result<u64, i64> {
        Ok(self.get(fd)?.offset())
    }

    /// Moves the file offset of `fd` to `at`.
    pub fn set_offset(&mut self, fd: i64, at: u64) -> Result<(), i64> {
        self.get(fd)?.set_offset(at);
        Ok(())
    }

    /// `pread64`: reads file `fd` at `offset`, leaving its offset.
    pub fn pread(
        &mut self,
        fs: &Tmpfs<'_>,
        fd: i64,
        offset: u64,
        buf: &mut [u8],
    ) -> Result<usize, i64> {
        let f = self.get(fd)?;
        if !f.readable() {
            return Err(-EBADF);
        }
        if matches!(f.node, Node::Pipe(_) | Node::Device(_)) {
            return Err(-ESPIPE);
        }
        read_node(fs, &f.node, offset, buf)
    }

    /// `write(fd, ...)`: where the write goes (`EBADF` if not open for writing).
    pub fn write(&mut self, fd: i64) -> Result<Sink, i64> {
        let f = self.get(fd)?;
        match f.node {
            Node::Device(d) if f.writable() => Ok(Sink::Device(d)),
            Node::Pipe(end) if end.write => Ok(Sink::Pipe(end.id)),
            Node::File(_) if f.writable() => Ok(Sink::File),
            _ => Err(-EBADF),
        }
    }

    /// Writes `data` into file `fd` at its offset (at the end with `O_APPEND`), moving the
    /// offset: the bytes written, fewer when the file system fills part-way (`ENOSPC` when
    /// none fit).
    pub fn write_file(&mut self, fs: &mut Tmpfs<'_>, fd: i64, data: &[u8]) -> Result<usize, i64> {
        let f = self.get(fd)?;
        let Node::File(ino) = f.node else {
            return Err(-EBADF);
        };
        if !f.writable() {
            return Err(-EBADF);
        }
        if f.status & O_APPEND != 0 {
            let (n, end) = fs.append(ino, data)?;
            f.set_offset(end);
            return Ok(n);
        }
        let at = f.offset();
        let n = fs.write_at(ino, at, data)?;
        f.set_offset(at + n as u64);
        Ok(n)
    }

    /// `pwrite64`: writes file `fd` at `offset`, leaving its offset (Linux writes at the
    /// end with `O_APPEND`, whatever `offset` says, and so does this).
    pub fn pwrite(
        &mut self,
        fs: &mut Tmpfs<'_>,
        fd: i64,
        offset: u64,
        data: &[u8],
    ) -> Result<usize, i64> {
        let f = self.get(fd)?;
        match f.node {
            Node::File(ino) if f.writable() && f.status & O_APPEND != 0 => {
                fs.append(ino, data).map(|(n, _)| n)
            }
            Node::File(ino) if f.writable() => fs.write_at(ino, offset, data),
            Node::Pipe(_) | Node::Device(_) => Err(-ESPIPE),
            _ => Err(-EBADF),
        }
    }

    /// `ftruncate`: `EINVAL` unless `fd` is a regular file open for writing.
    pub fn ftruncate(&mut self, fs: &mut Tmpfs<'_>, fd: i64, size: u64) -> Result<(), i64> {
        let f = self.get(fd)?;
        match f.node {
            Node::File(ino) if f.writable() => fs.truncate(ino, size),
            Node::File(_) => Err(-EINVAL),
            _ => Err(-EINVAL),
        }
    }

    /// `lseek`: `whence` 0 (`SEEK_SET`), 1 (`SEEK_CUR`) or 2 (`SEEK_END`). Directories keep
    /// a listing position, which only `SEEK_SET` to a position given before (or 0) means
    /// anything for.
    pub fn lseek(&mut self, fs: &Tmpfs<'_>, fd: i64, offset: i64, whence: u32) -> Result<u64, i64> {
        let f = self.get(fd)?;
        let size = match &f.node {
            Node::File(ino) => fs.stat(*ino)?.size,
            Node::Generated(s) => match &**s {
                Snapshot::File { bytes, .. } => bytes.len() as u64,
                Snapshot::Dir { .. } => 0,
            },
            Node::Device(Device::Null | Device::Zero) => 0,
            Node::Device(Device::Block(n)) => block_device(*n).map_or(0, |b| b.bytes),
            Node::Device(_) | Node::Pipe(_) => return Err(-ESPIPE),
        };
        let base = match whence {
            0 => 0,
            1 => f.offset(),
            2 => size,
            _ => return Err(-EINVAL),
        };
        let new = base
            .checked_add_signed(offset)
            .filter(|&n| n <= i64::MAX as u64)
            .ok_or(-EINVAL)?;
        f.set_offset(new);
        Ok(new)
    }

    /// `fstat`.
    pub fn fstat(&mut self, fs: &Tmpfs<'_>, fd: i64) -> Result<Stat, i64> {
        Ok(match &self.get(fd)?.node {
            Node::File(ino) => fs.stat(*ino)?,
            Node::Device(d) => device_stat(*d),
            Node::Pipe(end) => Stat {
                ino: 0x10_0000 + u64::from(end.id),
                nlink: 1,
                mode: cpio::S_IFIFO | 0o600,
                ..Stat::default()
            },
            Node::Generated(s) => generated_stat(s),
        })
    }

    /// `fcntl`: `F_DUPFD`, `F_DUPFD_CLOEXEC`, `F_GETFD`, `F_SETFD`, `F_GETFL`, `F_SETFL`
    /// (`O_APPEND` and `O_NONBLOCK` change; the access mode stays); `EINVAL` for others.
    pub fn fcntl(&mut self, fs: &mut Tmpfs<'_>, fd: i64, cmd: u32, arg: u64) -> Result<i64, i64> {
        const F_DUPFD: u32 = 0;
        const F_GETFD: u32 = 1;
        const F_SETFD: u32 = 2;
        const F_GETFL: u32 = 3;
        const F_SETFL: u32 = 4;
        const F_DUPFD_CLOEXEC: u32 = 1030;
        let f = self.get(fd)?;
        match cmd {
            F_DUPFD | F_DUPFD_CLOEXEC => {
                let min = usize::try_from(arg)
                    .ok()
                    .filter(|&m| m < MAX_FDS)
                    .ok_or(-EINVAL)?;
                let dup = Open {
                    cloexec: cmd == F_DUPFD_CLOEXEC,
                    ..f.clone()
                };
                self.install_copy(fs, dup, min)
            }
            F_GETFD => Ok(if f.cloexec { FD_CLOEXEC as i64 } else { 0 }),
            F_SETFD => {
                f.cloexec = arg & FD_CLOEXEC != 0;
                Ok(0)
            }
            F_GETFL => Ok(i64::from(f.status)),
            F_SETFL => {
                let changeable = O_APPEND | O_NONBLOCK;
                f.status = (f.status & !changeable) | (arg as u32 & changeable);
                Ok(0)
            }
            _ => Err(-EINVAL),
        }
    }

    /// Descriptors open.
    pub fn open_count(&self) -> usize {
        self.fds.iter().flatten().count()
    }
}

/// Reads a file or generated file at `at`.
fn read_node(fs: &Tmpfs<'_>, node: &Node, at: u64, buf: &mut [u8]) -> Result<usize, i64> {
    match node {
        Node::File(ino) => fs.read_at(*ino, at, buf),
        Node::Generated(s) => match &**s {
            Snapshot::File { bytes, .. } => {
                let start = usize::try_from(at).unwrap_or(usize::MAX).min(bytes.len());
                let n = buf.len().min(bytes.len() - start);
                buf[..n].copy_from_slice(&bytes[start..start + n]);
                Ok(n)
            }
            Snapshot::Dir { .. } => Err(-EISDIR),
        },
        Node::Device(_) | Node::Pipe(_) => Err(-EINVAL),
    }
}

/// A generated file's `stat`: read-only, owned by root, as `/proc`'s are.
pub fn generated_stat(s: &Snapshot) -> Stat {
    match s {
        Snapshot::File { ino, bytes } => Stat {
            ino: *ino,
            nlink: 1,
            mode: cpio::S_IFREG | 0o444,
            size: bytes.len() as u64,
            ..Stat::default()
        },
        Snapshot::Dir { ino, entries, .. } => Stat {
            ino: *ino,
            nlink: 2 + entries.iter().filter(|e| e.2 == 4).count() as u64,
            mode: cpio::S_IFDIR | 0o555,
            ..Stat::default()
        },
    }
}

/// `path` made absolute against directory `cwd` and normalised lexically: no `.`, `..`
/// or repeated slashes (`..` at the root stays at the root). For matching device paths;
/// the file system resolves paths itself, links and all.
pub fn normalize(cwd: &str, path: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    let full = if path.starts_with('/') { "" } else { cwd };
    for part in full.split('/').chain(path.split('/')) {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            p => parts.push(p),
        }
    }
    let mut out = String::new();
    for p in parts {
        out.push('/');
        out.push_str(p);
    }
    if out.is_empty() {
        out.push('/');
    }
    out
}

/// Whether `ino` names a directory.
pub fn is_dir(fs: &Tmpfs<'_>, ino: Ino) -> bool {
    fs.stat(ino)
        .is_ok_and(|s| s.mode & cpio::S_IFMT == cpio::S_IFDIR)
}

/// `stat(path)` / `lstat(path)` on the file system, devices by their path first.
pub fn stat_path(
    fs: &Tmpfs<'_>,
    at: Ino,
    path: &[u8],
    abs: &str,
    follow: Follow,
) -> Result<Stat, i64> {
    if let Some((_, st)) = device_at(abs) {
        return Ok(st);
    }
    if path.is_empty() {
        return Err(-ENOENT);
    }
    fs.stat(fs.lookup(at, path, follow)?)
}
#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpio::{Archive, S_IFDIR, S_IFLNK, S_IFREG, build};
    use crate::tmpfs::Limits;

    const LIMITS: Limits = Limits {
        bytes: 1 << 20,
        inodes: 100,
    };

    fn initrd() -> Vec<u8> {
        build(&[
            ("bin", S_IFDIR | 0o755, b""),
            ("bin/xl", S_IFREG | 0o755, b"\x7fELF..."),
            ("etc", S_IFDIR | 0o755, b""),
            ("etc/xen", S_IFDIR | 0o755, b""),
            ("etc/xen/hello.cfg", S_IFREG | 0o644, b"name = \"hello\"\n"),
            ("etc/xen/default.cfg", S_IFLNK | 0o777, b"hello.cfg"),
            ("loop", S_IFLNK | 0o777, b"/loop"),
        ])
    }

    fn open(f: &mut Files, fs: &mut Tmpfs<'_>, path: &str, flags: u32) -> Result<i64, i64> {
        let root = fs.root();
        f.open(
            fs,
            root,
            path.as_bytes(),
            &normalize("/", path),
            flags,
            0o644,
        )
    }

    fn read_all(f: &mut Files, fs: &Tmpfs<'_>, fd: i64, n: usize) -> Vec<u8> {
        assert_eq!(f.read(fs, fd), Ok(Io::File));
        let mut buf = alloc::vec![0; n];
        let got = f.read_file(fs, fd, &mut buf).unwrap();
        buf.truncate(got);
        buf
    }

    #[test]
    fn console_descriptors_at_start() {
        let fs = Tmpfs::new(LIMITS);
        let mut f = Files::with_console();
        assert_eq!(f.open_count(), 3);
        for fd in 0..3 {
            assert_eq!(f.write(fd), Ok(Sink::Device(Device::Console)));
            assert_eq!(f.read(&fs, fd), Ok(Io::Device(Device::Console)));
        }
        assert_eq!(f.lseek(&fs, 1, 0, 0), Err(-ESPIPE));
        assert_eq!(f.write(3), Err(-EBADF));
        assert_eq!(f.write(-1), Err(-EBADF));
        assert_eq!(f.fstat(&fs, 1).unwrap().mode, cpio::S_IFCHR | 0o620);
    }

    #[test]
    fn reading_a_file() {
        let bytes = initrd();
        let archive = Archive::parse(&bytes).unwrap();
        let mut fs = Tmpfs::from_archive(&archive, LIMITS).unwrap();
        let mut f = Files::with_console();
        let fd = open(&mut f, &mut fs, "/etc/xen/hello.cfg", 0).unwrap();
        assert_eq!(fd, 3);
        assert_eq!(read_all(&mut f, &fs, fd, 4), b"name");
        assert_eq!(read_all(&mut f, &fs, fd, 100), b" = \"hello\"\n");
        assert_eq!(read_all(&mut f, &fs, fd, 100), b"");
        assert_eq!(f.lseek(&fs, fd, -7, 2), Ok(8));
        assert_eq!(read_all(&mut f, &fs, fd, 5), b"hello");
        assert_eq!(f.lseek(&fs, fd, 5, 1), Ok(18));
        assert_eq!(
            read_all(&mut f, &fs, fd, 5),
            b"",
            "past the end reads nothing"
        );
        assert_eq!(f.lseek(&fs, fd, -1, 0), Err(-EINVAL));
        assert_eq!(f.lseek(&fs, fd, 0, 3), Err(-EINVAL));
        assert_eq!(f.lseek(&fs, fd, i64::MAX, 1), Err(-EINVAL));
        let mut two = [0; 2];
        assert_eq!(f.pread(&fs, fd, 1, &mut two), Ok(2));
        assert_eq!(&two, b"am");
        let st = f.fstat(&fs, fd).unwrap();
        assert_eq!((st.size, st.mode), (15, S_IFREG | 0o644));
        let raw = st.to_linux_bytes();
        assert_eq!(
            u32::from_le_bytes(raw[24..28].try_into().unwrap()),
            S_IFREG | 0o644
        );
        assert_eq!(u64::from_le_bytes(raw[48..56].try_into().unwrap()), 15);
        assert_eq!(f.write(fd), Err(-EBADF), "opened for reading only");
        f.close(&mut fs, fd).unwrap();
        assert_eq!(f.close(&mut fs, fd), Err(-EBADF));
        // The lowest free descriptor is reused; relative paths start at the given directory.
        let etc = fs.lookup(fs.root(), b"/etc", Follow::Yes).unwrap();
        assert_eq!(
            f.open(
                &mut fs,
                etc,
                b"xen/default.cfg",
                "/etc/xen/default.cfg",
                0,
                0
            ),
            Ok(3)
        );
        assert_eq!(read_all(&mut f, &fs, 3, 4), b"name", "through the link");
    }

    #[test]
    fn writing_creating_and_errors() {
        let bytes = initrd();
        let archive = Archive::parse(&bytes).unwrap();
        let mut fs = Tmpfs::from_archive(&archive, LIMITS).unwrap();
        let mut f = Files::with_console();
        assert_eq!(open(&mut f, &mut fs, "/bin/new", 0), Err(-ENOENT));
        assert_eq!(open(&mut f, &mut fs, "", 0), Err(-ENOENT));
        assert_eq!(open(&mut f, &mut fs, "/bin", O_WRONLY), Err(-EISDIR));
        assert_eq!(open(&mut f, &mut fs, "/bin/xl", O_DIRECTORY), Err(-ENOTDIR));
        assert_eq!(open(&mut f, &mut fs, "/loop", 0), Err(-ELOOP));
        assert_eq!(open(&mut f, &mut fs, "/bin/xl", 3), Err(-EINVAL));
        let d = open(&mut f, &mut fs, "/bin", O_DIRECTORY).unwrap();
        assert_eq!(f.read(&fs, d), Err(-EISDIR));
        assert_eq!(f.open_count(), 4, "failed opens leave nothing behind");
        f.close(&mut fs, d).unwrap();

        let w = open(&mut f, &mut fs, "/etc/xen/mine.cfg", O_WRONLY | O_CREAT).unwrap();
        assert_eq!(f.write(w), Ok(Sink::File));
        assert_eq!(f.write_file(&mut fs, w, b"name = \"mine\"\n"), Ok(14));
        assert_eq!(f.read(&fs, w), Err(-EBADF), "opened for writing only");
        // Appending moves the shared offset to the end, whatever it was.
        let a = open(&mut f, &mut fs, "/etc/xen/mine.cfg", O_WRONLY | O_APPEND).unwrap();
        assert_eq!(f.write_file(&mut fs, a, b"memory = 8\n"), Ok(11));
        assert_eq!(f.lseek(&fs, a, 0, 1), Ok(25));
        let r = open(&mut f, &mut fs, "/etc/xen/mine.cfg", 0).unwrap();
        assert_eq!(
            read_all(&mut f, &fs, r, 100),
            b"name = \"mine\"\nmemory = 8\n"
        );
        assert_eq!(
            open(&mut f, &mut fs, "/etc/xen/mine.cfg", O_CREAT | O_EXCL),
            Err(-EEXIST)
        );
        // Truncating at open, and through the descriptor.
        let t = open(&mut f, &mut fs, "/etc/xen/hello.cfg", O_RDWR | O_TRUNC).unwrap();
        assert_eq!(f.fstat(&fs, t).unwrap().size, 0);
        assert_eq!(f.pwrite(&mut fs, t, 3, b"x"), Ok(1));
        assert_eq!(f.fstat(&fs, t).unwrap().size, 4, "a gap reads as zeros");
        assert_eq!(f.ftruncate(&mut fs, t, 1), Ok(()));
        assert_eq!(
            f.ftruncate(&mut fs, r, 1),
            Err(-EINVAL),
            "not open for writing"
        );
        assert_eq!(f.fstat(&fs, t).unwrap().size, 1);
    }

    #[test]
    fn descriptions_are_shared_by_dup_and_fork() {
        let mut fs = Tmpfs::new(LIMITS);
        let mut f = Files::with_console();
        let fd = open(&mut f, &mut fs, "/log", O_WRONLY | O_CREAT).unwrap();
        let copy = f.dup(&mut fs, fd).unwrap();
        let mut child = f.clone();
        child.retain_all(&mut fs);
        assert_eq!(f.write_file(&mut fs, fd, b"parent\n"), Ok(7));
        assert_eq!(child.write_file(&mut fs, fd, b"child\n"), Ok(6));
        assert_eq!(f.write_file(&mut fs, copy, b"again\n"), Ok(6));
        assert_eq!(child.close_all(&mut fs), Vec::new());
        f.close(&mut fs, copy).unwrap();
        let r = open(&mut f, &mut fs, "/log", 0).unwrap();
        assert_eq!(read_all(&mut f, &fs, r, 100), b"parent\nchild\nagain\n");
    }

    #[test]
    fn an_unlinked_file_lives_while_open() {
        let mut fs = Tmpfs::new(LIMITS);
        let mut f = Files::with_console();
        let fd = open(&mut f, &mut fs, "/tmpfile", O_RDWR | O_CREAT).unwrap();
        assert_eq!(f.write_file(&mut fs, fd, b"kept"), Ok(4));
        let inodes = fs.usage().inodes;
        fs.unlink(fs.root(), b"/tmpfile").unwrap();
        let copy = f.dup(&mut fs, fd).unwrap();
        f.close(&mut fs, fd).unwrap();
        let mut buf = [0; 8];
        assert_eq!(f.pread(&fs, copy, 0, &mut buf), Ok(4));
        assert_eq!(fs.usage().inodes, inodes);
        let ends = f.close_on_exec(&mut fs);
        assert!(ends.is_empty());
        assert_eq!(f.fcntl(&mut fs, copy, 2, FD_CLOEXEC), Ok(0));
        f.close_on_exec(&mut fs);
        assert_eq!(
            fs.usage().inodes,
            inodes - 1,
            "freed with its last descriptor"
        );
        assert_eq!(f.pread(&fs, copy, 0, &mut buf), Err(-EBADF));
    }

    #[test]
    fn block_devices_are_nodes_with_sizes() {
        let mut fs = Tmpfs::new(LIMITS);
        let mut f = Files::with_console();
        set_block_devices(alloc::vec![
            BlockNode {
                name: String::from("vdq"),
                rdev: (253, 0),
                bytes: 1 << 20,
            },
            BlockNode {
                name: String::from("vdq1"),
                rdev: (253, 1),
                bytes: 4096,
            },
        ]);
        let d = open(&mut f, &mut fs, "/dev/vdq1", O_RDWR).unwrap();
        assert_eq!(f.read(&fs, d), Ok(Io::Device(Device::Block(1))));
        assert_eq!(f.write(d), Ok(Sink::Device(Device::Block(1))));
        let st = f.fstat(&fs, d).unwrap();
        assert_eq!(
            (st.mode, st.rdev, st.size),
            (cpio::S_IFBLK | 0o660, (253, 1), 0)
        );
        assert_eq!(f.lseek(&fs, d, -512, 2), Ok(4096 - 512));
        assert_eq!(f.offset(d), Ok(3584));
        f.set_offset(d, 7).unwrap();
        assert_eq!(f.lseek(&fs, d, 1, 1), Ok(8));
        assert!(device_at("/dev/vdq").is_some());
        assert!(device_at("/dev/vdq2").is_none());
        assert!(device_at("/dev/vdqq").is_none());
    }

    #[test]
    fn devices_and_generated_files() {
        let mut fs = Tmpfs::new(LIMITS);
        let mut f = Files::with_console();
        let p = open(&mut f, &mut fs, "/dev/xen/privcmd", O_RDWR | O_CLOEXEC).unwrap();
        assert_eq!(f.write(p), Ok(Sink::Device(Device::Privcmd)));
        assert_eq!(
            f.fcntl(&mut fs, p, 1, 0),
            Ok(1),
            "O_CLOEXEC shows as FD_CLOEXEC"
        );
        let e = open(&mut f, &mut fs, "/dev/xen/evtchn", O_RDWR).unwrap();
        assert_eq!(f.read(&fs, e), Ok(Io::Device(Device::Evtchn)));
        assert_eq!(f.fstat(&fs, e).unwrap().rdev, (10, 61));
        assert_eq!(f.describe(p), Ok((Some(Device::Privcmd), O_RDWR)));
        let n = open(&mut f, &mut fs, "/dev/../dev/null", O_RDWR).unwrap();
        assert_eq!(f.lseek(&fs, n, 0, 0), Ok(0));
        assert_eq!(f.read(&fs, n), Ok(Io::Device(Device::Null)));
        let z = open(&mut f, &mut fs, "/dev/zero", 0).unwrap();
        assert_eq!(f.read(&fs, z), Ok(Io::Device(Device::Zero)));
        assert_eq!(
            stat_path(&fs, fs.root(), b"/dev/zero", "/dev/zero", Follow::Yes).map(|s| s.rdev),
            Ok((1, 5))
        );

        let snap = Snapshot::File {
            ino: 9,
            bytes: b"MemTotal: 1 kB\n".to_vec(),
        };
        assert_eq!(
            f.open_generated(
                Snapshot::File {
                    ino: 9,
                    bytes: Vec::new()
                },
                O_WRONLY
            ),
            Err(-EACCES)
        );
        let m = f.open_generated(snap, 0).unwrap();
        assert_eq!(read_all(&mut f, &fs, m, 3), b"Mem");
        assert_eq!(f.lseek(&fs, m, 0, 2), Ok(15));
        assert_eq!(f.write(m), Err(-EBADF));
        assert_eq!(f.fstat(&fs, m).unwrap().mode, cpio::S_IFREG | 0o444);
        let dir = Snapshot::Dir {
            ino: 1,
            parent: 1,
            entries: alloc::vec![(String::from("self"), 2, 10), (String::from("1"), 3, 4)],
        };
        let d = f.open_generated(dir, O_DIRECTORY).unwrap();
        let recs = f.getdents(&fs, d, 4096).unwrap();
        assert_eq!(names(&recs), [".", "..", "self", "1"]);
        assert_eq!(f.getdents(&fs, d, 4096), Ok(Vec::new()));
    }

    fn names(recs: &[u8]) -> Vec<String> {
        let mut names = Vec::new();
        let mut at = 0;
        while at < recs.len() {
            let len = u16::from_le_bytes([recs[at + 16], recs[at + 17]]) as usize;
            assert_eq!(len % 8, 0);
            let name = &recs[at + 19..at + len];
            let end = name.iter().position(|&b| b == 0).unwrap();
            names.push(String::from_utf8(name[..end].to_vec()).unwrap());
            at += len;
        }
        names
    }

    #[test]
    fn listing_a_directory() {
        let bytes = initrd();
        let archive = Archive::parse(&bytes).unwrap();
        let mut fs = Tmpfs::from_archive(&archive, LIMITS).unwrap();
        let mut f = Files::with_console();
        let d = open(&mut f, &mut fs, "/etc/xen", O_DIRECTORY).unwrap();
        assert_eq!(
            f.dir_of(&fs, d),
            fs.lookup(fs.root(), b"/etc/xen", Follow::Yes)
        );
        assert_eq!(f.dir_of(&fs, 0), Err(-ENOTDIR));
        let all = f.getdents(&fs, d, 4096).unwrap();
        let mut got = names(&all);
        got.sort();
        assert_eq!(got, [".", "..", "default.cfg", "hello.cfg"]);
        assert_eq!(f.getdents(&fs, d, 4096), Ok(Vec::new()));
        assert_eq!(f.lseek(&fs, d, 0, 0), Ok(0));
        assert_eq!(f.getdents(&fs, d, 8), Err(-EINVAL));
        assert_eq!(f.getdents(&fs, 1, 4096), Err(-ENOTDIR));
    }

    #[test]
    fn fcntl_and_limits() {
        let mut fs = Tmpfs::new(LIMITS);
        let mut f = Files::with_console();
        assert_eq!(f.fcntl(&mut fs, 1, 0, 10), Ok(10), "F_DUPFD at or above 10");
        assert_eq!(f.fcntl(&mut fs, 1, 1030, 0), Ok(3));
        assert_eq!(f.fcntl(&mut fs, 3, 1, 0), Ok(1));
        assert_eq!(f.fcntl(&mut fs, 3, 2, 0), Ok(0));
        assert_eq!(f.fcntl(&mut fs, 3, 1, 0), Ok(0));
        assert_eq!(f.fcntl(&mut fs, 3, 3, 0), Ok(i64::from(O_RDWR)));
        assert_eq!(
            f.fcntl(&mut fs, 3, 4, u64::from(O_NONBLOCK | O_WRONLY)),
            Ok(0)
        );
        assert_eq!(
            f.fcntl(&mut fs, 3, 3, 0),
            Ok(i64::from(O_RDWR | O_NONBLOCK)),
            "access mode unchanged"
        );
        assert_eq!(f.fcntl(&mut fs, 3, 99, 0), Err(-EINVAL));
        assert_eq!(f.fcntl(&mut fs, 3, 0, MAX_FDS as u64), Err(-EINVAL));
        assert_eq!(f.fcntl(&mut fs, 42, 1, 0), Err(-EBADF));
        while f.open_count() < MAX_FDS {
            f.fcntl(&mut fs, 0, 0, 0).unwrap();
        }
        assert_eq!(f.fcntl(&mut fs, 0, 0, 0), Err(-EMFILE));
        // A file that cannot get a descriptor is not held.
        let before = fs.usage();
        assert_eq!(
            open(&mut f, &mut fs, "/x", O_CREAT | O_WRONLY),
            Err(-EMFILE)
        );
        assert_eq!(
            fs.usage().inodes,
            before.inodes + 1,
            "created, then not held"
        );
        fs.unlink(fs.root(), b"/x").unwrap();
        assert_eq!(fs.usage(), before);
    }

    #[test]
    fn makedev_matches_glibc() {
        assert_eq!(makedev(5, 1), 0x501);
        assert_eq!(makedev(10, 300), 0x10_0a2c);
        assert_eq!(makedev(0x1234, 0), 0x1000_0002_3400);
    }

    #[test]
    fn pipe_ends_are_counted_through_dup_and_close() {
        let mut fs = Tmpfs::new(LIMITS);
        let mut f = Files::with_console();
        let (r, w) = f.open_pipe(7, O_CLOEXEC).unwrap();
        assert_eq!((r, w), (3, 4));
        assert_eq!(f.write(w), Ok(Sink::Pipe(7)));
        assert_eq!(f.write(r), Err(-EBADF));
        assert_eq!(f.read(&fs, r), Ok(Io::Pipe(7)));
        assert_eq!(f.read(&fs, w), Err(-EBADF));
        assert_eq!(f.lseek(&fs, r, 0, 0), Err(-ESPIPE));
        assert_eq!(f.fstat(&fs, r).unwrap().mode & cpio::S_IFMT, cpio::S_IFIFO);
        assert_eq!(f.open_pipe(8, 0x1), Err(-EINVAL), "unknown flag");
        // stdout onto the writing end: the console end it replaces is no pipe end.
        assert_eq!(f.dup3(&mut fs, w, 1, 0), Ok(None));
        assert_eq!(f.write(1), Ok(Sink::Pipe(7)));
        assert_eq!(f.dup3(&mut fs, w, w, 0), Err(-EINVAL));
        assert_eq!(f.dup3(&mut fs, 99, 1, 0), Err(-EBADF));
        let d = f.dup(&mut fs, r).unwrap();
        assert_eq!(d, 5);
        assert_eq!(f.pipe_ends().len(), 4);
        // dup2 over a pipe end reports it.
        assert_eq!(
            f.dup3(&mut fs, 0, d, 0),
            Ok(Some(PipeEnd {
                id: 7,
                write: false
            }))
        );
        // exec drops the close-on-exec pair (3 and 4), not the copies made without the flag.
        let dropped = f.close_on_exec(&mut fs);
        assert_eq!(dropped.len(), 2);
        assert_eq!(f.pipe_ends(), [PipeEnd { id: 7, write: true }]);
        assert_eq!(
            f.close(&mut fs, 1),
            Ok(Some(PipeEnd { id: 7, write: true }))
        );
        assert!(f.pipe_ends().is_empty());
        assert_eq!(f.close(&mut fs, 1), Err(-EBADF));
    }

    #[test]
    fn paths_normalise_against_the_working_directory() {
        assert_eq!(normalize("/", "etc/xen"), "/etc/xen");
        assert_eq!(
            normalize("/etc", "xen/../xen/./hello.cfg"),
            "/etc/xen/hello.cfg"
        );
        assert_eq!(normalize("/etc/xen", "/bin//xl/"), "/bin/xl");
        assert_eq!(normalize("/", "../../.."), "/");
        assert_eq!(normalize("/a", ".."), "/");
    }
}
