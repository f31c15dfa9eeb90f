//! The file system's system calls: paths, descriptors on files, and what they name, over
//! dom0's root ([`fs`], a tmpfs seeded from the initrd) and the generated `/proc`
//! ([`procfs`]).
//!
//! A path argument is copied in once, then resolved by the file system from the directory
//! it starts at (the working directory, a descriptor's directory, or `/`), symbolic links
//! and `..` as Linux walks them. Its lexical absolute form ([`PathArg::abs`]) is used only
//! to recognise the kernel's devices and `/proc`, which are not in the tree.

use alloc::string::String;
use alloc::vec::Vec;

use xenia_dom0::files::{self, O_CREAT, O_TRUNC, O_WRONLY, Stat};
use xenia_dom0::tmpfs::{Follow, Ino, RENAME_NOREPLACE, Tmpfs};

use crate::fs;
use crate::process::Process;

/// `AT_FDCWD`.
pub const AT_FDCWD: i64 = -100;
/// `AT_SYMLINK_NOFOLLOW`.
const AT_SYMLINK_NOFOLLOW: u64 = 0x100;
/// `AT_REMOVEDIR`.
const AT_REMOVEDIR: u64 = 0x200;
/// `AT_SYMLINK_FOLLOW`.
const AT_SYMLINK_FOLLOW: u64 = 0x400;
/// `AT_EMPTY_PATH`.
const AT_EMPTY_PATH: u64 = 0x1000;
/// The longest path taken (Linux's `PATH_MAX`, its NUL included).
const PATH_MAX: usize = 4096;

const ENOENT: i64 = -2;
const EBADF: i64 = -9;
const EFAULT: i64 = -14;
const EACCES: i64 = -13;
const EROFS: i64 = -30;
const EINVAL: i64 = -22;
const ERANGE: i64 = -34;
const ENOTDIR: i64 = -20;

/// A path a process passed, copied in.
pub struct PathArg {
    /// The directory a relative path starts at (the root for an absolute one).
    pub at: Ino,
    /// The path as given.
    pub raw: Vec<u8>,
    /// The path made absolute and normalised lexically: for devices and `/proc` only.
    pub abs: String,
}

impl PathArg {
    /// Whether it names something in `/proc` (or `/proc` itself).
    fn in_proc(&self) -> bool {
        self.abs == "/proc" || self.abs.starts_with("/proc/")
    }

    /// Follows `/proc`'s links into the root: `/proc/<pid>/cwd` when more of the path
    /// comes after it, or when `follow` (the last component's link is followed). The path
    /// then names the target in the root, resolved from `/`.
    fn through_proc_links(&mut self, p: &Process, follow: bool) -> Result<(), i64> {
        let Some(rest) = self.abs.strip_prefix("/proc/") else {
            return Ok(());
        };
        let mut parts = rest.splitn(3, '/');
        let (Some(pid), Some("cwd")) = (parts.next(), parts.next()) else {
            return Ok(());
        };
        let after = parts.next();
        if after.is_none() && !follow {
            return Ok(());
        }
        let target = procfs::readlink(p, &alloc::format!("/proc/{pid}/cwd"))?;
        let abs = match after {
            Some(after) => files::normalize(&target, after),
            None => target,
        };
        self.at = fs::lock().root();
        self.raw = abs.clone().into_bytes();
        self.abs = abs;
        Ok(())
    }
}

/// The inode of process `p`'s working directory (the root if it went away).
pub fn cwd_ino(fs: &Tmpfs<'_>, p: &Process) -> Ino {
    fs.lookup(fs.root(), p.cwd.as_bytes(), Follow::Yes)
        .unwrap_or(fs.root())
}

/// The path at `path` in process `p`, relative to `dirfd` (or [`AT_FDCWD`]). An empty path
/// is `ENOENT` unless `empty_ok` (`AT_EMPTY_PATH`: it names `dirfd` itself).
pub fn path_arg(p: &mut Process, dirfd: i64, path: u64, empty_ok: bool) -> Result<PathArg, i64> {
    if path == 0 && !empty_ok {
        return Err(EFAULT);
    }
    let raw = if path == 0 {
        String::new()
    } else {
        p.user_cstr(path, PATH_MAX - 1)?
    };
    if raw.is_empty() && !empty_ok {
        return Err(ENOENT);
    }
    let fs = fs::lock();
    let (at, base) = if raw.is_empty() {
        // `AT_EMPTY_PATH`: the call acts on `dirfd` itself, whatever it is.
        (fs.root(), String::from("/"))
    } else if raw.starts_with('/') {
        (fs.root(), String::from("/"))
    } else if dirfd == AT_FDCWD {
        (cwd_ino(&fs, p), p.cwd.clone())
    } else {
        let at = p.files.dir_of(&fs, dirfd)?;
        let base = String::from_utf8_lossy(&fs.path_of(at)?).into_owned();
        (at, base)
    };
    let abs = files::normalize(&base, &raw);
    Ok(PathArg {
        at,
        raw: raw.into_bytes(),
        abs,
    })
}

/// The root, locked, with its clock set to now (for what a call changes).
fn fs_now() -> spin::MutexGuard<'static, Tmpfs<'static>> {
    let mut fs = fs::lock();
    fs.set_time(crate::sys::wallclock_ns() / 1_000_000_000);
    fs
}

/// `open`, `openat`, `creat`.
pub fn openat(p: &mut Process, dirfd: i64, path: u64, flags: u32, mode: u32) -> i64 {
    let mut arg = match path_arg(p, dirfd, path, false) {
        Ok(a) => a,
        Err(e) => return e,
    };
    if let Err(e) = arg.through_proc_links(p, flags & files::O_NOFOLLOW == 0) {
        return e;
    }
    if arg.in_proc() {
        return match procfs::open(p, &arg.abs) {
            Ok(snapshot) => p
                .files
                .open_generated(snapshot, flags)
                .unwrap_or_else(|e| e),
            Err(e) => e,
        };
    }
    let mode = mode & 0o7777 & !p.umask;
    let mut fs = fs_now();
    p.files
        .open(&mut fs, arg.at, &arg.raw, &arg.abs, flags, mode)
        .unwrap_or_else(|e| e)
}

/// `creat(path, mode)`.
pub fn creat(p: &mut Process, path: u64, mode: u32) -> i64 {
    openat(p, AT_FDCWD, path, O_CREAT | O_WRONLY | O_TRUNC, mode)
}

/// `stat`, `lstat`, `newfstatat` (`AT_SYMLINK_NOFOLLOW`, `AT_EMPTY_PATH`).
pub fn fstatat(p: &mut Process, dirfd: i64, path: u64, out: u64, flags: u64) -> i64 {
    if flags & !(AT_SYMLINK_NOFOLLOW | AT_EMPTY_PATH | 0x800) != 0 {
        return EINVAL;
    }
    let empty_ok = flags & AT_EMPTY_PATH != 0;
    let mut arg = match path_arg(p, dirfd, path, empty_ok) {
        Ok(a) => a,
        Err(e) => return e,
    };
    // A trailing slash follows the last link whatever the flags say, as on Linux.
    let nofollow = flags & AT_SYMLINK_NOFOLLOW != 0 && !arg.raw.ends_with(b"/");
    if let Err(e) = arg.through_proc_links(p, !nofollow) {
        return e;
    }
    let st = if arg.raw.is_empty() {
        let fs = fs::lock();
        p.files.fstat(&fs, dirfd)
    } else if arg.in_proc()
        && nofollow
        && let Ok(target) = procfs::readlink(p, &arg.abs)
    {
        // `lstat` of `/proc/self` or `/proc/<pid>/cwd`: the link itself.
        Ok(Stat {
            ino: procfs::FIRST_INO + 1,
            nlink: 1,
            mode: xenia_dom0::cpio::S_IFLNK | 0o777,
            size: target.len() as u64,
            ..Stat::default()
        })
    } else if arg.in_proc() {
        procfs::open(p, &arg.abs).map(|s| files::generated_stat(&s))
    } else {
        let follow = if nofollow { Follow::No } else { Follow::Yes };
        let fs = fs::lock();
        files::stat_path(&fs, arg.at, &arg.raw, &arg.abs, follow)
    };
    match st {
        Ok(st) => put_stat(p, st, out),
        Err(e) => e,
    }
}

/// `fstat`.
pub fn fstat(p: &mut Process, fd: i64, out: u64) -> i64 {
    let st = {
        let fs = fs::lock();
        p.files.fstat(&fs, fd)
    };
    match st {
        Ok(st) => put_stat(p, st, out),
        Err(e) => e,
    }
}

fn put_stat(p: &mut Process, st: Stat, out: u64) -> i64 {
    let bytes = st.to_linux_bytes();
    match p.user_bytes(out, bytes.len() as u64, true) {
        Ok(dst) => {
            dst.copy_from_slice(&bytes);
            0
        }
        Err(e) => e,
    }
}

/// `access`, `faccessat`, `faccessat2`: the file exists, and, for `X_OK`, is a directory
/// or has an execute bit; dom0's processes run as root, whom nothing else stops but a
/// read-only `/proc` for `W_OK`.
pub fn faccessat(p: &mut Process, dirfd: i64, path: u64, mode: u64, flags: u64) -> i64 {
    if mode & !7 != 0 {
        return EINVAL;
    }
    let mut arg = match path_arg(p, dirfd, path, flags & AT_EMPTY_PATH != 0) {
        Ok(a) => a,
        Err(e) => return e,
    };
    if let Err(e) = arg.through_proc_links(p, flags & AT_SYMLINK_NOFOLLOW == 0) {
        return e;
    }
    let st = if arg.in_proc() {
        match procfs::open(p, &arg.abs) {
            Ok(s) if mode & 2 != 0 => {
                let _ = s;
                return EACCES;
            }
            Ok(s) => files::generated_stat(&s),
            Err(e) => return e,
        }
    } else {
        let fs = fs::lock();
        let follow = if flags & AT_SYMLINK_NOFOLLOW != 0 {
            Follow::No
        } else {
            Follow::Yes
        };
        match files::stat_path(&fs, arg.at, &arg.raw, &arg.abs, follow) {
            Ok(st) => st,
            Err(e) => return e,
        }
    };
    if mode & 1 != 0 && st.mode & 0o170000 != 0o040000 && st.mode & 0o111 == 0 {
        return EACCES;
    }
    0
}

/// Changes to the tree refuse `/proc` (`EROFS` for making, `EACCES`... as Linux's procfs
/// answers `EPERM`/`EACCES` variously: one clear refusal here).
fn refuse_proc(arg: &PathArg) -> Result<(), i64> {
    if arg.in_proc() { Err(EROFS) } else { Ok(()) }
}

/// `mkdir`, `mkdirat`.
pub fn mkdirat(p: &mut Process, dirfd: i64, path: u64, mode: u32) -> i64 {
    let arg = match path_arg(p, dirfd, path, false) {
        Ok(a) => a,
        Err(e) => return e,
    };
    if let Err(e) = refuse_proc(&arg) {
        return e;
    }
    let mode = mode & 0o7777 & !p.umask;
    fs_now()
        .mkdir(arg.at, &arg.raw, mode)
        .map_or_else(|e| e, |_| 0)
}

/// `unlink`, `rmdir`, `unlinkat` (`AT_REMOVEDIR`).
pub fn unlinkat(p: &mut Process, dirfd: i64, path: u64, flags: u64) -> i64 {
    if flags & !AT_REMOVEDIR != 0 {
        return EINVAL;
    }
    let arg = match path_arg(p, dirfd, path, false) {
        Ok(a) => a,
        Err(e) => return e,
    };
    if let Err(e) = refuse_proc(&arg) {
        return e;
    }
    let mut fs = fs_now();
    let r = if flags & AT_REMOVEDIR != 0 {
        fs.rmdir(arg.at, &arg.raw)
    } else {
        fs.unlink(arg.at, &arg.raw)
    };
    r.map_or_else(|e| e, |()| 0)
}

/// `rename`, `renameat`, `renameat2` (`RENAME_NOREPLACE`).
pub fn renameat(p: &mut Process, olddir: i64, old: u64, newdir: i64, new: u64, flags: u32) -> i64 {
    let (o, n) = match (
        path_arg(p, olddir, old, false),
        path_arg(p, newdir, new, false),
    ) {
        (Ok(o), Ok(n)) => (o, n),
        (Err(e), _) | (_, Err(e)) => return e,
    };
    if let Err(e) = refuse_proc(&o).and(refuse_proc(&n)) {
        return e;
    }
    if flags & !RENAME_NOREPLACE != 0 {
        return EINVAL;
    }
    fs_now()
        .rename(o.at, &o.raw, n.at, &n.raw, flags)
        .map_or_else(|e| e, |()| 0)
}

/// `link`, `linkat` (`AT_SYMLINK_FOLLOW`).
pub fn linkat(p: &mut Process, olddir: i64, old: u64, newdir: i64, new: u64, flags: u64) -> i64 {
    if flags & !(AT_SYMLINK_FOLLOW | AT_EMPTY_PATH) != 0 {
        return EINVAL;
    }
    let (o, n) = match (
        path_arg(p, olddir, old, false),
        path_arg(p, newdir, new, false),
    ) {
        (Ok(o), Ok(n)) => (o, n),
        (Err(e), _) | (_, Err(e)) => return e,
    };
    if let Err(e) = refuse_proc(&o).and(refuse_proc(&n)) {
        return e;
    }
    let follow = if flags & AT_SYMLINK_FOLLOW != 0 {
        Follow::Yes
    } else {
        Follow::No
    };
    fs_now()
        .link(o.at, &o.raw, n.at, &n.raw, follow)
        .map_or_else(|e| e, |_| 0)
}

/// `symlink`, `symlinkat`.
pub fn symlinkat(p: &mut Process, target: u64, newdir: i64, new: u64) -> i64 {
    let target = match p.user_cstr(target, PATH_MAX - 1) {
        Ok(t) if t.is_empty() => return ENOENT,
        Ok(t) => t,
        Err(e) => return e,
    };
    let n = match path_arg(p, newdir, new, false) {
        Ok(n) => n,
        Err(e) => return e,
    };
    if let Err(e) = refuse_proc(&n) {
        return e;
    }
    fs_now()
        .symlink(target.as_bytes(), n.at, &n.raw)
        .map_or_else(|e| e, |_| 0)
}

/// `readlink`, `readlinkat`: the target, cut to `size` bytes as Linux cuts it (no NUL).
pub fn readlinkat(p: &mut Process, dirfd: i64, path: u64, buf: u64, size: u64) -> i64 {
    if (size as i64) <= 0 {
        return EINVAL;
    }
    let arg = match path_arg(p, dirfd, path, false) {
        Ok(a) => a,
        Err(e) => return e,
    };
    let target: Vec<u8> = if arg.in_proc() {
        match procfs::readlink(p, &arg.abs) {
            Ok(t) => t.into_bytes(),
            Err(e) => return e,
        }
    } else {
        match fs::lock().readlink(arg.at, &arg.raw) {
            Ok(t) => t.to_vec(),
            Err(e) => return e,
        }
    };
    let n = target.len().min(size as usize);
    match p.user_bytes(buf, n as u64, true) {
        Ok(dst) => {
            dst.copy_from_slice(&target[..n]);
            n as i64
        }
        Err(e) => e,
    }
}

/// The inode a path or descriptor call acts on: `fd` when `path` is 0 (the `f*` calls).
fn target(p: &mut Process, dirfd: i64, path: u64, follow: Follow) -> Result<Ino, i64> {
    if path == 0 {
        return p
            .files
            .file_of(dirfd)
            .map_err(|e| if e == EINVAL { EBADF } else { e });
    }
    let arg = path_arg(p, dirfd, path, false)?;
    refuse_proc(&arg)?;
    if files::device_at(&arg.abs).is_some() {
        // The kernel's devices have no inode to change: as on a read-only /dev.
        return Err(EROFS);
    }
    fs::lock().lookup(arg.at, &arg.raw, follow)
}

/// `chmod`, `fchmod` (`path` 0), `fchmodat`.
pub fn chmodat(p: &mut Process, dirfd: i64, path: u64, mode: u32) -> i64 {
    match target(p, dirfd, path, Follow::Yes) {
        Ok(ino) => fs_now().chmod(ino, mode).map_or_else(|e| e, |()| 0),
        Err(e) => e,
    }
}

/// `chown`, `lchown`, `fchown` (`path` 0), `fchownat`: -1 leaves an ID as it is.
pub fn chownat(p: &mut Process, dirfd: i64, path: u64, uid: u64, gid: u64, flags: u64) -> i64 {
    let follow = if flags & AT_SYMLINK_NOFOLLOW != 0 {
        Follow::No
    } else {
        Follow::Yes
    };
    let id = |v: u64| (v as u32 != u32::MAX).then_some(v as u32);
    match target(p, dirfd, path, follow) {
        Ok(ino) => fs_now()
            .chown(ino, id(uid), id(gid))
            .map_or_else(|e| e, |()| 0),
        Err(e) => e,
    }
}

/// `utimensat` (and `utimes`, `utime` through it): sets the modification time, the one
/// time kept; `UTIME_NOW` or a null `times` is now, `UTIME_OMIT` leaves it.
pub fn utimensat(p: &mut Process, dirfd: i64, path: u64, times: u64, flags: u64) -> i64 {
    const UTIME_NOW: u64 = (1 << 30) - 1;
    const UTIME_OMIT: u64 = (1 << 30) - 2;
    let mtime = if times == 0 {
        None
    } else {
        match p.user_bytes(times, 32, false) {
            Ok(b) => {
                let sec = u64::from_le_bytes(b[16..24].try_into().unwrap_or([0; 8]));
                let nsec = u64::from_le_bytes(b[24..32].try_into().unwrap_or([0; 8]));
                match nsec {
                    UTIME_OMIT => return 0,
                    UTIME_NOW => None,
                    n if n >= 1_000_000_000 => return EINVAL,
                    _ => Some(sec),
                }
            }
            Err(e) => return e,
        }
    };
    let follow = if flags & AT_SYMLINK_NOFOLLOW != 0 {
        Follow::No
    } else {
        Follow::Yes
    };
    match target(p, dirfd, path, follow) {
        Ok(ino) => fs_now().set_mtime(ino, mtime).map_or_else(|e| e, |()| 0),
        Err(e) => e,
    }
}

/// `truncate`, `ftruncate`.
pub fn truncate(p: &mut Process, fd: i64, path: u64, size: i64) -> i64 {
    if size < 0 {
        return EINVAL;
    }
    if path == 0 {
        let mut fs = fs_now();
        return p
            .files
            .ftruncate(&mut fs, fd, size as u64)
            .map_or_else(|e| e, |()| 0);
    }
    match target(p, AT_FDCWD, path, Follow::Yes) {
        Ok(ino) => fs_now()
            .truncate(ino, size as u64)
            .map_or_else(|e| e, |()| 0),
        Err(e) => e,
    }
}

/// `statfs`, `fstatfs`: the root's size and use (tmpfs's magic number), for `df`.
pub fn statfs(p: &mut Process, fd: i64, path: u64, out: u64) -> i64 {
    const TMPFS_MAGIC: u64 = 0x0102_1994;
    const PROC_SUPER_MAGIC: u64 = 0x9fa0;
    let proc = if path == 0 {
        let fs = fs::lock();
        match p.files.fstat(&fs, fd) {
            Ok(st) => st.mode & 0o222 == 0 && st.ino >= procfs::FIRST_INO,
            Err(e) => return e,
        }
    } else {
        match path_arg(p, AT_FDCWD, path, false) {
            Ok(a) => {
                if !a.in_proc()
                    && let Err(e) = files::stat_path(&fs::lock(), a.at, &a.raw, &a.abs, Follow::Yes)
                {
                    return e;
                }
                a.in_proc()
            }
            Err(e) => return e,
        }
    };
    let (limits, usage) = {
        let fs = fs::lock();
        (fs.limits(), fs.usage())
    };
    let bsize = 4096u64;
    let (magic, blocks, free, files, ffree) = if proc {
        (PROC_SUPER_MAGIC, 0, 0, 0, 0)
    } else {
        let blocks = limits.bytes as u64 / bsize;
        let free = (limits.bytes.saturating_sub(usage.bytes)) as u64 / bsize;
        let files = limits.inodes as u64;
        (
            TMPFS_MAGIC,
            blocks,
            free,
            files,
            files.saturating_sub(usage.inodes as u64),
        )
    };
    // struct statfs (x86-64): type, bsize, blocks, bfree, bavail, files, ffree, fsid[2],
    // namelen, frsize, flags, spare[4].
    let mut b = [0u8; 120];
    let fields = [
        magic, bsize, blocks, free, free, files, ffree, 0, 255, bsize, 0,
    ];
    for (i, v) in fields.iter().enumerate() {
        b[i * 8..i * 8 + 8].copy_from_slice(&v.to_le_bytes());
    }
    match p.user_bytes(out, b.len() as u64, true) {
        Ok(dst) => {
            dst.copy_from_slice(&b);
            0
        }
        Err(e) => e,
    }
}

/// `getdents64`.
pub fn getdents(p: &mut Process, fd: i64, buf: u64, len: u64) -> i64 {
    let room = len.min(64 * 1024) as usize;
    let records = {
        let fs = fs::lock();
        p.files.getdents(&fs, fd, room)
    };
    match records {
        Ok(records) => match p.user_bytes(buf, records.len() as u64, true) {
            Ok(dst) => {
                dst.copy_from_slice(&records);
                records.len() as i64
            }
            Err(e) => e,
        },
        Err(e) => e,
    }
}

/// `getcwd`: the working directory's path (`ENOENT` once it is removed, as on Linux).
pub fn getcwd(p: &mut Process, buf: u64, size: u64) -> i64 {
    let cwd = if p.cwd == "/proc" || p.cwd.starts_with("/proc/") {
        p.cwd.clone().into_bytes()
    } else {
        let fs = fs::lock();
        let ino = fs.lookup(fs.root(), p.cwd.as_bytes(), Follow::Yes);
        match ino.and_then(|i| fs.path_of(i)) {
            Ok(path) => path,
            Err(e) => return e,
        }
    };
    if size < cwd.len() as u64 + 1 {
        return ERANGE;
    }
    match p.user_bytes(buf, cwd.len() as u64 + 1, true) {
        Ok(dst) => {
            dst[..cwd.len()].copy_from_slice(&cwd);
            dst[cwd.len()] = 0;
            cwd.len() as i64 + 1
        }
        Err(e) => e,
    }
}

/// `chdir`, and `fchdir` (`path` 0): the working directory becomes the directory's path
/// as the file system names it (links resolved, as `getcwd` shows on Linux).
pub fn chdir(p: &mut Process, fd: i64, path: u64) -> i64 {
    let dir = {
        if path == 0 {
            let fs = fs::lock();
            p.files.dir_of(&fs, fd).and_then(|d| fs.path_of(d))
        } else {
            match path_arg(p, AT_FDCWD, path, false).and_then(|mut arg| {
                arg.through_proc_links(p, true)?;
                Ok(arg)
            }) {
                // `/proc` and its directories: the working directory is their path.
                Ok(arg) if arg.in_proc() => match procfs::open(p, &arg.abs) {
                    // `self` resolved, as the kernel resolves the link.
                    Ok(xenia_dom0::files::Snapshot::Dir { .. }) => {
                        Ok(match arg.abs.strip_prefix("/proc/self") {
                            Some(rest) => alloc::format!("/proc/{}{rest}", p.pid).into_bytes(),
                            None => arg.abs.into_bytes(),
                        })
                    }
                    Ok(_) => Err(ENOTDIR),
                    Err(e) => Err(e),
                },
                Ok(arg) => {
                    let fs = fs::lock();
                    fs.lookup(arg.at, &arg.raw, Follow::Yes).and_then(|ino| {
                        if files::is_dir(&fs, ino) {
                            fs.path_of(ino)
                        } else {
                            Err(ENOTDIR)
                        }
                    })
                }
                Err(e) => Err(e),
            }
        }
    };
    match dir {
        Ok(dir) => {
            p.cwd = String::from_utf8_lossy(&dir).into_owned();
            0
        }
        Err(e) => e,
    }
}

/// `fsync`, `fdatasync`: nothing to write back for a file (the root is memory), but the
/// descriptor must be open; a block device's cache is flushed.
pub fn fsync(p: &mut Process, fd: i64) -> i64 {
    match p.files.describe(fd) {
        Ok((Some(xenia_dom0::files::Device::Block(n)), _)) => crate::blockfile::flush(n),
        Ok(_) => 0,
        Err(e) => e,
    }
}

/// `/proc`, made from the processes and memory as they are when a file is opened.
mod procfs {
    use alloc::string::String;

    use xenia_dom0::files::Snapshot;
    use xenia_dom0::procfs::{self, System};

    use crate::process::{self, Process};

    pub use procfs::FIRST_INO;

    fn system(p: &Process) -> System {
        let (free, total) = crate::frames::counts();
        System {
            uptime_ns: xenia_guest_rt::time::now_ns(),
            mem_total_kib: total as u64 * 4,
            mem_free_kib: free as u64 * 4,
            processes: process::list(p)
                .into_iter()
                .map(|i| procfs::Process {
                    pid: i.pid,
                    ppid: i.ppid,
                    pgid: i.pgid,
                    state: i.state,
                    comm: i.comm,
                    cmdline: i.cmdline,
                    started_ns: i.started,
                    vsize: i.vsize,
                    rss: i.rss,
                    cwd: i.cwd,
                })
                .collect(),
            caller: p.pid,
            release: String::from(crate::sys::RELEASE),
            partitions: crate::blockfile::partitions(),
            interrupts: crate::virtio_blk::interrupts(),
            pci_devices: crate::pcibus::proc_devices(),
            net: crate::netstack::proc_net(),
        }
    }

    /// The file `path` names under `/proc`.
    pub fn open(p: &Process, path: &str) -> Result<Snapshot, i64> {
        system(p).open(path)
    }

    /// A link's target under `/proc`.
    pub fn readlink(p: &Process, path: &str) -> Result<String, i64> {
        system(p).readlink(path)
    }
}
