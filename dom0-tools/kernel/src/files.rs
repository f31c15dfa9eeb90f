//! A process's open files in dom0 (DESIGN.md §7): the read-only files of
//! the initrd and the kernel's devices, behind Linux's file descriptors.
//!
//! The file system is the initrd's directory view ([`cpio::Archive`]),
//! read-only: opening for writing, creating or truncating gives `EROFS`.
//! The devices — the console, `/dev/null`, `/dev/xen/privcmd` and
//! `/dev/xen/evtchn` — are known by path and handed back to the kernel as
//! a [`Device`] for it to serve. Descriptors 0, 1 and 2 start on the
//! console. Everything returns the negative errno Linux would.

use alloc::string::String;
use alloc::vec::Vec;

use crate::cpio::{self, Archive};

/// Linux errno values the calls here return (negated on return).
pub mod errno {
    /// No such file or directory.
    pub const ENOENT: i64 = 2;
    /// Bad file descriptor.
    pub const EBADF: i64 = 9;
    /// Not a directory.
    pub const ENOTDIR: i64 = 20;
    /// Is a directory.
    pub const EISDIR: i64 = 21;
    /// Invalid argument.
    pub const EINVAL: i64 = 22;
    /// Too many open files.
    pub const EMFILE: i64 = 24;
    /// Illegal seek.
    pub const ESPIPE: i64 = 29;
    /// Read-only file system.
    pub const EROFS: i64 = 30;
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
/// `O_TRUNC`.
pub const O_TRUNC: u32 = 0o1000;
/// `O_APPEND`.
pub const O_APPEND: u32 = 0o2000;
/// `O_NONBLOCK`.
pub const O_NONBLOCK: u32 = 0o4000;
/// `O_DIRECTORY`.
pub const O_DIRECTORY: u32 = 0o200000;
/// `O_CLOEXEC`.
pub const O_CLOEXEC: u32 = 0o2000000;
/// `FD_CLOEXEC`.
pub const FD_CLOEXEC: u64 = 1;

/// Most descriptors a process may hold open.
pub const MAX_FDS: usize = 256;
/// Symbolic links followed in one lookup before `ELOOP`.
const MAX_LINKS: usize = 8;

/// A device the kernel serves itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Device {
    /// The serial console (`/dev/console`, and descriptors 0–2 at start).
    Console,
    /// `/dev/null`.
    Null,
    /// `/dev/xen/privcmd`: hypercalls and foreign mappings.
    Privcmd,
    /// `/dev/xen/evtchn`: event channels.
    Evtchn,
    /// `/dev/xen/xenia`: the kernel's toolstack services (domain records,
    /// consoles; see [`devices`](dom0_tools::devices)).
    Xenia,
    /// `/dev/xen/xenbus`: xenstore requests and replies.
    Xenbus,
}

impl Device {
    fn by_path(path: &str) -> Option<Self> {
        Some(match path {
            "/dev/console" | "/dev/tty" => Self::Console,
            "/dev/null" => Self::Null,
            "/dev/xen/privcmd" => Self::Privcmd,
            "/dev/xen/evtchn" => Self::Evtchn,
            "/dev/xen/xenia" => Self::Xenia,
            "/dev/xen/xenbus" => Self::Xenbus,
            _ => return None,
        })
    }

    /// Major and minor numbers as Linux gives them (for `fstat`).
    const fn rdev(self) -> (u32, u32) {
        match self {
            Self::Console => (5, 1),
            Self::Null => (1, 3),
            // misc devices; the minors are dynamic on Linux.
            Self::Privcmd => (10, 60),
            Self::Evtchn => (10, 61),
            Self::Xenia => (10, 62),
            Self::Xenbus => (10, 63),
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

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Node<'a> {
    Entry(cpio::Entry<'a>),
    Device(Device),
    Pipe(PipeEnd),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Open<'a> {
    node: Node<'a>,
    offset: u64,
    status: u32,
    cloexec: bool,
}

/// What a `read` or `write` on a descriptor comes to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Io<'a> {
    /// These bytes of a file, to copy to the caller (empty at the end).
    Data(&'a [u8]),
    /// A device, for the kernel to serve.
    Device(Device),
    /// The reading end of pipe `id`, for the kernel to serve.
    Pipe(u32),
}

/// Where a `write` on a descriptor goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sink {
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
    /// Size of `struct stat` on x86-64 Linux.
    pub const SIZE: usize = 144;

    /// The bytes of `struct stat`, as `fstat` copies them out.
    pub fn to_linux_bytes(&self) -> [u8; Self::SIZE] {
        let mut b = [0u8; Self::SIZE];
        let mut put = |off: usize, v: &[u8]| b[off..off + v.len()].copy_from_slice(v);
        put(0, &1u64.to_le_bytes()); // st_dev: the initrd
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

/// A process's descriptor table.
#[derive(Clone, Debug)]
pub struct Files<'a> {
    fds: Vec<Option<Open<'a>>>,
}

impl<'a> Files<'a> {
    /// A table with descriptors 0, 1 and 2 open on the console.
    pub fn with_console() -> Self {
        let console = Open {
            node: Node::Device(Device::Console),
            offset: 0,
            status: O_RDWR,
            cloexec: false,
        };
        Self {
            fds: alloc::vec![Some(console); 3],
        }
    }

    fn get(&mut self, fd: i64) -> Result<&mut Open<'a>, i64> {
        usize::try_from(fd)
            .ok()
            .and_then(|i| self.fds.get_mut(i))
            .and_then(Option::as_mut)
            .ok_or(-EBADF)
    }

    fn install(&mut self, open: Open<'a>, min: usize) -> Result<i64, i64> {
        let free = (min..MAX_FDS)
            .find(|&i| self.fds.get(i).is_none_or(Option::is_none))
            .ok_or(-EMFILE)?;
        if free >= self.fds.len() {
            self.fds.resize(free + 1, None);
        }
        self.fds[free] = Some(open);
        Ok(free as i64)
    }

    /// `open(path, flags)`, relative paths from `/`.
    pub fn open(&mut self, fs: &Archive<'a>, path: &str, flags: u32) -> Result<i64, i64> {
        if path.is_empty() {
            return Err(-ENOENT);
        }
        let writing = flags & 3 != 0 || flags & (O_CREAT | O_TRUNC) != 0;
        let node = match Device::by_path(path) {
            Some(d) => Node::Device(d),
            None => {
                let entry = resolve(fs, path).map_err(|e| {
                    if e == -ENOENT && flags & O_CREAT != 0 {
                        -EROFS
                    } else {
                        e
                    }
                })?;
                if writing {
                    return Err(if entry.is_dir() { -EISDIR } else { -EROFS });
                }
                if flags & O_DIRECTORY != 0 && !entry.is_dir() {
                    return Err(-ENOTDIR);
                }
                Node::Entry(entry)
            }
        };
        let status = flags & (3 | O_APPEND | O_NONBLOCK);
        self.install(
            Open {
                node,
                offset: 0,
                status,
                cloexec: flags & O_CLOEXEC != 0,
            },
            0,
        )
    }

    /// What descriptor `fd` is: the device it names (`None` for a file)
    /// and its status flags (`O_ACCMODE`, `O_APPEND`, `O_NONBLOCK`).
    pub fn describe(&mut self, fd: i64) -> Result<(Option<Device>, u32), i64> {
        let f = self.get(fd)?;
        let device = match f.node {
            Node::Device(d) => Some(d),
            Node::Entry(_) | Node::Pipe(_) => None,
        };
        Ok((device, f.status))
    }

    /// `close(fd)`: the pipe end it held, if any, for the kernel's count.
    pub fn close(&mut self, fd: i64) -> Result<Option<PipeEnd>, i64> {
        let node = self.get(fd)?.node;
        self.fds[fd as usize] = None;
        Ok(match node {
            Node::Pipe(end) => Some(end),
            _ => None,
        })
    }

    /// `pipe2`: descriptors for the two ends of pipe `id` (`O_CLOEXEC` and `O_NONBLOCK`
    /// of `flags` apply to both); `(read, write)`. `EMFILE` with nothing installed if two
    /// descriptors are not free.
    pub fn open_pipe(&mut self, id: u32, flags: u32) -> Result<(i64, i64), i64> {
        if flags & !(O_CLOEXEC | O_NONBLOCK) != 0 {
            return Err(-EINVAL);
        }
        let end = |write: bool| Open {
            node: Node::Pipe(PipeEnd { id, write }),
            offset: 0,
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

    /// `dup3(old, new, flags)` (and `dup2` with `flags` 0; `old == new` is the caller's
    /// case): `new` is closed first if open, and its pipe end returned for the kernel's
    /// count. Only `O_CLOEXEC` may be in `flags`.
    pub fn dup3(&mut self, old: i64, new: i64, flags: u32) -> Result<Option<PipeEnd>, i64> {
        if flags & !O_CLOEXEC != 0 || old == new {
            return Err(-EINVAL);
        }
        let open = *self.get(old)?;
        let slot = usize::try_from(new)
            .ok()
            .filter(|&n| n < MAX_FDS)
            .ok_or(-EBADF)?;
        let closed = self
            .fds
            .get(slot)
            .copied()
            .flatten()
            .and_then(|o| match o.node {
                Node::Pipe(end) => Some(end),
                _ => None,
            });
        if slot >= self.fds.len() {
            self.fds.resize(slot + 1, None);
        }
        self.fds[slot] = Some(Open {
            cloexec: flags & O_CLOEXEC != 0,
            ..open
        });
        Ok(closed)
    }

    /// The pipe end descriptor `fd` holds, if it holds one.
    pub fn pipe_end(&self, fd: i64) -> Option<PipeEnd> {
        let open = usize::try_from(fd)
            .ok()
            .and_then(|i| self.fds.get(i))?
            .as_ref()?;
        match open.node {
            Node::Pipe(end) => Some(end),
            _ => None,
        }
    }

    /// `dup(old)`: the lowest free descriptor.
    pub fn dup(&mut self, old: i64) -> Result<i64, i64> {
        let open = *self.get(old)?;
        self.install(
            Open {
                cloexec: false,
                ..open
            },
            0,
        )
    }

    /// Every pipe end the table holds (one per descriptor): what a copy of the table (a
    /// fork) adds to the kernel's counts, and what dropping it takes away.
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

    /// Closes the descriptors marked close-on-exec (`execve`); the pipe ends they held.
    pub fn close_on_exec(&mut self) -> Vec<PipeEnd> {
        let mut ends = Vec::new();
        for slot in &mut self.fds {
            if let Some(o) = slot
                && o.cloexec
            {
                if let Node::Pipe(end) = o.node {
                    ends.push(end);
                }
                *slot = None;
            }
        }
        ends
    }

    /// `read(fd, _, len)`: the bytes to copy (and the offset moves past
    /// them), or the device to read from.
    pub fn read(&mut self, fd: i64, len: u64) -> Result<Io<'a>, i64> {
        let f = self.get(fd)?;
        if f.status & 3 == O_WRONLY {
            return Err(-EBADF);
        }
        match f.node {
            Node::Device(d) => Ok(Io::Device(d)),
            Node::Pipe(end) => Ok(Io::Pipe(end.id)),
            Node::Entry(e) if e.is_dir() => Err(-EISDIR),
            Node::Entry(e) => {
                let start = usize::try_from(f.offset)
                    .unwrap_or(usize::MAX)
                    .min(e.data.len());
                let n = usize::try_from(len)
                    .unwrap_or(usize::MAX)
                    .min(e.data.len() - start);
                f.offset += n as u64;
                Ok(Io::Data(&e.data[start..start + n]))
            }
        }
    }

    /// `write(fd, ..)`: only devices and pipes take writes (files are read-only
    /// and were refused at open).
    pub fn write(&mut self, fd: i64) -> Result<Sink, i64> {
        let f = self.get(fd)?;
        match f.node {
            Node::Device(d) if f.status & 3 != 0 => Ok(Sink::Device(d)),
            Node::Pipe(end) if end.write => Ok(Sink::Pipe(end.id)),
            _ => Err(-EBADF),
        }
    }

    /// `lseek(fd, offset, whence)`.
    pub fn lseek(&mut self, fd: i64, offset: i64, whence: u32) -> Result<u64, i64> {
        let f = self.get(fd)?;
        let size = match f.node {
            Node::Entry(e) => e.data.len() as u64,
            Node::Device(Device::Null) => 0,
            Node::Device(_) | Node::Pipe(_) => return Err(-ESPIPE),
        };
        let base = match whence {
            0 => 0,
            1 => f.offset,
            2 => size,
            _ => return Err(-EINVAL),
        };
        let new = base
            .checked_add_signed(offset)
            .filter(|&n| n <= i64::MAX as u64)
            .ok_or(-EINVAL)?;
        f.offset = new;
        Ok(new)
    }

    /// `fstat(fd)`.
    pub fn fstat(&mut self, fd: i64) -> Result<Stat, i64> {
        Ok(match self.get(fd)?.node {
            Node::Entry(e) => Stat {
                ino: e.ino.into(),
                nlink: e.nlink.max(1).into(),
                mode: e.mode,
                uid: e.uid,
                gid: e.gid,
                rdev: (e.rdev_major, e.rdev_minor),
                size: if e.is_dir() { 0 } else { e.data.len() as u64 },
                mtime: e.mtime.into(),
            },
            Node::Device(d) => Stat {
                ino: 0x1000 + d.rdev().1 as u64,
                nlink: 1,
                mode: cpio::S_IFCHR | 0o620,
                rdev: d.rdev(),
                ..Stat::default()
            },
            Node::Pipe(end) => Stat {
                ino: 0x10_0000 + u64::from(end.id),
                nlink: 1,
                mode: cpio::S_IFIFO | 0o600,
                ..Stat::default()
            },
        })
    }

    /// `fcntl(fd, cmd, arg)` for the commands programs use: duplicate
    /// (`F_DUPFD`, `F_DUPFD_CLOEXEC`), descriptor flags (`F_GETFD`,
    /// `F_SETFD`) and status flags (`F_GETFL`, `F_SETFL`, of which only
    /// `O_APPEND` and `O_NONBLOCK` change).
    pub fn fcntl(&mut self, fd: i64, cmd: u32, arg: u64) -> Result<i64, i64> {
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
                    ..*f
                };
                self.install(dup, min)
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

    /// Descriptors open now, for tests and `/proc`-like listings.
    pub fn open_count(&self) -> usize {
        self.fds.iter().flatten().count()
    }
}

/// The entry at `path`, following symbolic links (at most 8).
fn resolve<'a>(fs: &Archive<'a>, path: &str) -> Result<cpio::Entry<'a>, i64> {
    let mut path = String::from(path);
    for _ in 0..=MAX_LINKS {
        let entry = *fs.lookup(&path).ok_or(-ENOENT)?;
        let Some(target) = entry.link_target() else {
            return Ok(entry);
        };
        path = if target.starts_with('/') {
            String::from(target)
        } else {
            // Relative to the link's directory.
            let dir = path.rsplit_once('/').map_or("", |(d, _)| d);
            alloc::format!("{dir}/{target}")
        };
    }
    Err(-ELOOP)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpio::{S_IFDIR, S_IFLNK, S_IFREG, build};

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

    #[test]
    fn console_descriptors_at_start() {
        let mut f = Files::with_console();
        assert_eq!(f.open_count(), 3);
        for fd in 0..3 {
            assert_eq!(f.write(fd), Ok(Sink::Device(Device::Console)));
            assert_eq!(f.read(fd, 10), Ok(Io::Device(Device::Console)));
        }
        assert_eq!(f.lseek(1, 0, 0), Err(-ESPIPE));
        assert_eq!(f.write(3), Err(-EBADF));
        assert_eq!(f.write(-1), Err(-EBADF));
        assert_eq!(f.fstat(1).unwrap().mode, cpio::S_IFCHR | 0o620);
    }

    #[test]
    fn reading_a_file() {
        let bytes = initrd();
        let fs = Archive::parse(&bytes).unwrap();
        let mut f = Files::with_console();
        let fd = f.open(&fs, "/etc/xen/hello.cfg", 0).unwrap();
        assert_eq!(fd, 3);
        assert_eq!(f.read(fd, 4), Ok(Io::Data(b"name")));
        assert_eq!(f.read(fd, 100), Ok(Io::Data(b" = \"hello\"\n")));
        assert_eq!(f.read(fd, 100), Ok(Io::Data(b"")));
        assert_eq!(f.lseek(fd, -7, 2), Ok(8));
        assert_eq!(f.read(fd, 5), Ok(Io::Data(b"hello")));
        assert_eq!(f.lseek(fd, 5, 1), Ok(18));
        assert_eq!(
            f.read(fd, 5),
            Ok(Io::Data(b"")),
            "past the end reads nothing"
        );
        assert_eq!(f.lseek(fd, -1, 0), Err(-EINVAL));
        assert_eq!(f.lseek(fd, 0, 3), Err(-EINVAL));
        assert_eq!(f.lseek(fd, i64::MAX, 1), Err(-EINVAL));
        let st = f.fstat(fd).unwrap();
        assert_eq!((st.size, st.mode), (15, S_IFREG | 0o644));
        let raw = st.to_linux_bytes();
        assert_eq!(
            u32::from_le_bytes(raw[24..28].try_into().unwrap()),
            S_IFREG | 0o644
        );
        assert_eq!(u64::from_le_bytes(raw[48..56].try_into().unwrap()), 15);
        assert_eq!(f.write(fd), Err(-EBADF));
        f.close(fd).unwrap();
        assert_eq!(f.close(fd), Err(-EBADF));
        // The lowest free descriptor is reused.
        assert_eq!(f.open(&fs, "bin/xl", 0), Ok(3));
    }

    #[test]
    fn read_only_and_missing() {
        let bytes = initrd();
        let fs = Archive::parse(&bytes).unwrap();
        let mut f = Files::with_console();
        assert_eq!(f.open(&fs, "/bin/xl", O_WRONLY), Err(-EROFS));
        assert_eq!(f.open(&fs, "/bin/xl", O_RDWR), Err(-EROFS));
        assert_eq!(f.open(&fs, "/bin/xl", O_TRUNC), Err(-EROFS));
        assert_eq!(f.open(&fs, "/bin/new", O_CREAT | O_WRONLY), Err(-EROFS));
        assert_eq!(f.open(&fs, "/bin/new", 0), Err(-ENOENT));
        assert_eq!(f.open(&fs, "", 0), Err(-ENOENT));
        assert_eq!(f.open(&fs, "/bin", O_WRONLY), Err(-EISDIR));
        assert_eq!(f.open(&fs, "/bin/xl", O_DIRECTORY), Err(-ENOTDIR));
        let d = f.open(&fs, "/bin", O_DIRECTORY).unwrap();
        assert_eq!(f.read(d, 1), Err(-EISDIR));
        assert_eq!(f.open_count(), 4, "failed opens leave nothing behind");
    }

    #[test]
    fn links_and_devices() {
        let bytes = initrd();
        let fs = Archive::parse(&bytes).unwrap();
        let mut f = Files::with_console();
        let fd = f.open(&fs, "/etc/xen/default.cfg", 0).unwrap();
        assert_eq!(f.read(fd, 4), Ok(Io::Data(b"name")));
        assert_eq!(f.open(&fs, "/loop", 0), Err(-ELOOP));
        let p = f.open(&fs, "/dev/xen/privcmd", O_RDWR | O_CLOEXEC).unwrap();
        assert_eq!(f.write(p), Ok(Sink::Device(Device::Privcmd)));
        assert_eq!(f.fcntl(p, 1, 0), Ok(1), "O_CLOEXEC shows as FD_CLOEXEC");
        let e = f.open(&fs, "/dev/xen/evtchn", O_RDWR).unwrap();
        assert_eq!(f.read(e, 8), Ok(Io::Device(Device::Evtchn)));
        assert_eq!(f.fstat(e).unwrap().rdev, (10, 61));
        assert_eq!(f.describe(p), Ok((Some(Device::Privcmd), O_RDWR)));
        let n = f.open(&fs, "/dev/null", O_RDWR).unwrap();
        assert_eq!(f.lseek(n, 0, 0), Ok(0));
    }

    #[test]
    fn fcntl_and_limits() {
        let mut f = Files::with_console();
        assert_eq!(f.fcntl(1, 0, 10), Ok(10), "F_DUPFD at or above 10");
        assert_eq!(f.fcntl(1, 1030, 0), Ok(3));
        assert_eq!(f.fcntl(3, 1, 0), Ok(1));
        assert_eq!(f.fcntl(3, 2, 0), Ok(0));
        assert_eq!(f.fcntl(3, 1, 0), Ok(0));
        assert_eq!(f.fcntl(3, 3, 0), Ok(i64::from(O_RDWR)));
        assert_eq!(f.fcntl(3, 4, u64::from(O_NONBLOCK | O_WRONLY)), Ok(0));
        assert_eq!(
            f.fcntl(3, 3, 0),
            Ok(i64::from(O_RDWR | O_NONBLOCK)),
            "access mode unchanged"
        );
        assert_eq!(f.fcntl(3, 99, 0), Err(-EINVAL));
        assert_eq!(f.fcntl(3, 0, MAX_FDS as u64), Err(-EINVAL));
        assert_eq!(f.fcntl(42, 1, 0), Err(-EBADF));
        while f.open_count() < MAX_FDS {
            f.fcntl(0, 0, 0).unwrap();
        }
        assert_eq!(f.fcntl(0, 0, 0), Err(-EMFILE));
    }

    #[test]
    fn makedev_matches_glibc() {
        assert_eq!(makedev(5, 1), 0x501);
        assert_eq!(makedev(10, 300), 0x10_0a2c);
        assert_eq!(makedev(0x1234, 0), 0x1000_0002_3400);
    }

    /// Pipes: two ends, writes only on the writing one, reads only on the reading one;
    /// `dup3` and `dup` copy ends (reported for the kernel's counts), `close` gives the end
    /// back, close-on-exec drops the marked ones.
    #[test]
    fn pipe_ends_are_counted_through_dup_and_close() {
        let mut f = Files::with_console();
        let (r, w) = f.open_pipe(7, O_CLOEXEC).unwrap();
        assert_eq!((r, w), (3, 4));
        assert_eq!(f.write(w), Ok(Sink::Pipe(7)));
        assert_eq!(f.write(r), Err(-EBADF));
        assert_eq!(f.read(r, 1), Ok(Io::Pipe(7)));
        assert_eq!(f.read(w, 1), Err(-EBADF));
        assert_eq!(f.lseek(r, 0, 0), Err(-ESPIPE));
        assert_eq!(f.fstat(r).unwrap().mode & cpio::S_IFMT, cpio::S_IFIFO);
        assert_eq!(f.open_pipe(8, 0x1), Err(-EINVAL), "unknown flag");
        // stdout onto the writing end: the console end it replaces is no pipe end.
        assert_eq!(f.dup3(w, 1, 0), Ok(None));
        assert_eq!(f.write(1), Ok(Sink::Pipe(7)));
        assert_eq!(f.dup3(w, w, 0), Err(-EINVAL));
        assert_eq!(f.dup3(99, 1, 0), Err(-EBADF));
        let d = f.dup(r).unwrap();
        assert_eq!(d, 5);
        let mut ends = f.pipe_ends();
        ends.sort_by_key(|e| (e.id, e.write, 0));
        assert_eq!(ends.len(), 4);
        // dup2 over a pipe end reports it.
        assert_eq!(
            f.dup3(0, d, 0),
            Ok(Some(PipeEnd {
                id: 7,
                write: false
            }))
        );
        // exec drops the close-on-exec pair (3 and 4), not the copies made without the flag.
        let dropped = f.close_on_exec();
        assert_eq!(dropped.len(), 2);
        assert_eq!(f.pipe_ends(), [PipeEnd { id: 7, write: true }]);
        assert_eq!(f.close(1), Ok(Some(PipeEnd { id: 7, write: true })));
        assert!(f.pipe_ends().is_empty());
        assert_eq!(f.close(1), Err(-EBADF));
    }
}
