//! dom0's root file system: a writable tree in memory, seeded from the initrd — a tmpfs.
//!
//! Issue 14 gives dom0 a root an operator can edit (`/etc/xen`, `/tmp`); until dom0 has
//! storage, that root lives in RAM and starts from the initrd at every boot, as an
//! initramfs on Linux's tmpfs (`mm/shmem.c`) does. This module is the file system alone —
//! inodes, directories, file contents and the operations behind Linux's file system calls,
//! each returning the negative errno Linux would — and knows nothing of processes or
//! descriptors: the kernel binary maps system calls onto it.
//!
//! * **Seeded from the initrd** ([`Tmpfs::from_archive`]): every directory, file, symbolic
//!   link and device node of the initrd's directory view, with its mode, owner and time;
//!   hard-linked members are one inode. File contents are not copied: a file reads the
//!   initrd's bytes in place until it is written, and a write copies only the pages it
//!   touches (the archive outlives the file system, which the lifetime `'a` states).
//! * **Inodes** have numbers that are never reused, link counts kept as Linux keeps them
//!   (a directory has 2 plus one per subdirectory) and sizes (a directory's is tmpfs's 20
//!   bytes an entry, `.` and `..` included). An inode lives while a directory entry names
//!   it or a holder has [`retain`](Tmpfs::retain)ed it: a file unlinked while open keeps
//!   its contents until it is [`release`](Tmpfs::release)d; a directory removed while it is
//!   someone's working directory stays, empty, refusing new entries with `ENOENT`.
//! * **Directories** are name maps in byte order; a second map keeps the order entries
//!   were made in, which is what listings follow (see [`Tmpfs::getdents`]).
//! * **Paths** resolve as in Linux's `fs/namei.c`: absolute or from a given directory,
//!   `.`, `..` (`/..` is `/`), repeated and trailing slashes, symbolic links followed up to
//!   [`MAXSYMLINKS`] (then `ELOOP`), paths of [`PATH_MAX`] bytes or more and names of more
//!   than [`NAME_MAX`] refused with `ENAMETOOLONG`.
//! * **Bounded** by [`Limits`]: a byte budget for file pages and metadata (an estimate
//!   that errs high: [`INODE_COST`], [`ENTRY_COST`], [`PAGE_COST`]; the initrd's bytes,
//!   which are not copied, are not counted) and an inode count; going past either is
//!   `ENOSPC`. A write that runs out part-way writes what fits and returns that count, as
//!   Linux's does.
//! * **No permission checks**: dom0's programs run as root, whom Linux lets through every
//!   check made here. New files belong to root, or to the directory's group if it has the
//!   set-group-ID bit. Only the modification time is kept (it stands for all three).
//!
//! **What it trusts.** Nothing it is given: paths, names, offsets and sizes are checked, an
//! operation that fails changes nothing (short writes aside), and no input makes it panic.
//!
//! **What it never does.** Touch a process's memory (the caller copies bytes in and out),
//! or recurse: directories may be as deep as the inode limit allows.

use alloc::boxed::Box;
use alloc::collections::BTreeMap;
use alloc::vec::Vec;

use crate::cpio::{Archive, Entry, S_IFDIR, S_IFLNK, S_IFMT, S_IFREG};
use crate::files::errno::{
    EBUSY, EEXIST, EFBIG, EINVAL, EISDIR, ELOOP, EMLINK, ENAMETOOLONG, ENFILE, ENOENT, ENOSPC,
    ENOTDIR, ENOTEMPTY, EPERM,
};
use crate::files::{O_CREAT, O_DIRECTORY, O_EXCL, O_NOFOLLOW, O_TRUNC, Stat};

mod file;
mod path;
#[cfg(test)]
mod tests;

use file::Contents;
pub use file::PAGE_SIZE;
pub use path::{MAXSYMLINKS, NAME_MAX, PATH_MAX};
use path::{Step, Walk, check_name};

/// The largest file (Linux's `MAX_LFS_FILESIZE` on 64-bit): writing or truncating past it
/// is `EFBIG`.
pub const MAX_FILE_SIZE: u64 = i64::MAX as u64;
/// What an inode costs against [`Limits::bytes`] besides its contents: the inode and its
/// slot in the inode table, rounded up.
pub const INODE_COST: usize = 128;
/// What a directory entry costs against [`Limits::bytes`] besides twice its name (the name
/// is in the directory's name map and in its listing order).
pub const ENTRY_COST: usize = 64;
/// What a page of a file's own memory costs against [`Limits::bytes`]: the page and its
/// slot.
pub const PAGE_COST: usize = PAGE_SIZE + 32;
/// `renameat2`'s `RENAME_NOREPLACE`: fail with `EEXIST` rather than replace.
pub const RENAME_NOREPLACE: u32 = 1;
/// `S_ISGID`: on a directory, new entries take its group (and new directories the bit).
const S_ISGID: u32 = 0o2000;
/// `S_ISUID`.
const S_ISUID: u32 = 0o4000;
/// `S_IXGRP`.
const S_IXGRP: u32 = 0o010;
/// What a directory's size grows by per entry on tmpfs (`BOGO_DIRENT_SIZE`, `mm/shmem.c`).
const BOGO_DIRENT_SIZE: u64 = 20;
/// The listing position of a directory's first entry: positions 0 and 1 are `.` and `..`.
const FIRST_COOKIE: u64 = 2;
/// Cookies stay below this, so that every `d_off` (a cookie plus one) is a positive `i64`.
const COOKIE_END: u64 = i64::MAX as u64;
/// The bytes of `struct linux_dirent64` before the name: `d_ino`, `d_off`, `d_reclen`,
/// `d_type` (`include/linux/dirent.h`).
const DIRENT_HEADER: usize = 19;
/// The root directory's inode number.
const ROOT: Ino = Ino(1);

/// An inode number: what names a file whatever its names are, for an open file description
/// or a working directory to hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Ino(u64);

impl Ino {
    /// The number, as `stat`'s `st_ino` and `getdents64`'s `d_ino` give it.
    pub const fn number(self) -> u64 {
        self.0
    }
}

/// Whether a symbolic link as the last component of a path is followed (links before it
/// always are; a trailing slash follows it too).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Follow {
    /// Follow it (`stat`, `open`, `linkat` with `AT_SYMLINK_FOLLOW`).
    Yes,
    /// Stop at the link itself (`lstat`, `O_NOFOLLOW`, `readlink`).
    No,
}

/// How much the file system may hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Bytes of memory for file pages and metadata, counted as the `*_COST` constants say.
    pub bytes: usize,
    /// Inodes, the root included.
    pub inodes: usize,
}

/// What the file system holds now, counted as [`Limits`] counts it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Usage {
    /// Bytes charged.
    pub bytes: usize,
    /// Inodes alive (named or retained).
    pub inodes: usize,
}

/// A file, directory, link or device node.
#[derive(Debug)]
struct Inode<'a> {
    /// Type and permission bits.
    mode: u32,
    uid: u32,
    gid: u32,
    /// Directory entries naming it, plus, for a directory, its `.` and its subdirectories'
    /// `..`; 0 once it is removed.
    nlink: u32,
    /// Modification time, seconds since the epoch.
    mtime: u64,
    /// Holders that keep it alive without a name ([`Tmpfs::retain`]).
    opens: u32,
    body: Body<'a>,
}

#[derive(Debug)]
enum Body<'a> {
    File(Contents<'a>),
    Dir(Dir),
    /// A symbolic link's target.
    Symlink(Box<[u8]>),
    /// A device node, FIFO or socket from the initrd: it has a name and a `stat`; the kernel
    /// serves the devices it knows by path.
    Special {
        rdev: (u32, u32),
    },
}

/// A directory's entries.
#[derive(Debug)]
struct Dir {
    /// Where `..` leads (itself for the root).
    parent: Ino,
    /// Name to inode and listing cookie.
    names: BTreeMap<Box<[u8]>, (Ino, u64)>,
    /// Listing cookie to name: the order entries were made in.
    order: BTreeMap<u64, Box<[u8]>>,
    /// The cookie the next entry gets.
    next_cookie: u64,
}

impl Dir {
    fn new(parent: Ino) -> Self {
        Self {
            parent,
            names: BTreeMap::new(),
            order: BTreeMap::new(),
            next_cookie: FIRST_COOKIE,
        }
    }
}

/// Where a walk to the last component of a path ended; `N` is how the name is held.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Last<N> {
    /// The path had no component (`/`, or a link to it).
    Root,
    /// `.`.
    Dot,
    /// `..`.
    DotDot,
    /// A name, to look up or make in the directory.
    Name(N),
}

/// Where `open` with `O_CREAT` lands.
#[derive(Debug)]
enum Place {
    /// On an inode that exists.
    Existing(Ino),
    /// On a name to make in a directory.
    New(Ino, Vec<u8>),
}

/// The file system: a tree of inodes under a root directory.
#[derive(Debug)]
pub struct Tmpfs<'a> {
    inodes: BTreeMap<u64, Inode<'a>>,
    next_ino: u64,
    limits: Limits,
    /// Bytes charged against `limits.bytes`.
    used: usize,
    /// The time stamped on what changes.
    now: u64,
}

/// What a directory entry for `name` costs.
const fn entry_cost(name: &[u8]) -> usize {
    ENTRY_COST + 2 * name.len()
}

impl<'a> Tmpfs<'a> {
    /// An empty file system: a root directory (mode 0755, owned by root, time 0).
    pub fn new(limits: Limits) -> Self {
        let root = Inode {
            mode: S_IFDIR | 0o755,
            uid: 0,
            gid: 0,
            nlink: 2,
            mtime: 0,
            opens: 0,
            body: Body::Dir(Dir::new(ROOT)),
        };
        Self {
            inodes: BTreeMap::from([(ROOT.0, root)]),
            next_ino: ROOT.0 + 1,
            limits,
            used: INODE_COST,
            now: 0,
        }
    }

    /// A file system holding what `archive` holds (see the module's documentation): the
    /// root takes the archive's `.` entry's mode, owner and time if it has one. `ENOSPC` if
    /// it does not fit `limits`, `ENAMETOOLONG` for a name of more than [`NAME_MAX`] bytes.
    pub fn from_archive(archive: &Archive<'a>, limits: Limits) -> Result<Self, i64> {
        let mut fs = Self::new(limits);
        // The first member (in archive order) of each hard-link group: its inode carries
        // that member's mode and owner, as Linux's unpacker links later members to it.
        let mut first: BTreeMap<(u32, u32, u32), &Entry<'a>> = BTreeMap::new();
        for (_, e) in archive.iter().filter(|(_, e)| is_linked(e)) {
            let slot = first.entry(link_key(e)).or_insert(e);
            if e.offset < slot.offset {
                *slot = e;
            }
        }
        let mut dirs: BTreeMap<&str, Ino> = BTreeMap::from([("", ROOT)]);
        let mut linked: BTreeMap<(u32, u32, u32), Ino> = BTreeMap::new();
        // Path order puts every directory before what is in it.
        for (path, e) in archive.iter() {
            if path.is_empty() {
                let root = fs.inode_mut(ROOT)?;
                (root.mode, root.uid, root.gid) = (S_IFDIR | e.permissions(), e.uid, e.gid);
                root.mtime = e.mtime.into();
                continue;
            }
            let (parent, name) = path.rsplit_once('/').unwrap_or(("", path));
            let dir = *dirs.get(parent).ok_or(-ENOENT)?;
            let name = name.as_bytes();
            if is_linked(e)
                && let Some(&ino) = linked.get(&link_key(e))
            {
                fs.add_link(dir, name, ino)?;
                continue;
            }
            let meta = first
                .get(&link_key(e))
                .filter(|_| is_linked(e))
                .unwrap_or(&e);
            let body = match e.mode & S_IFMT {
                S_IFDIR => Body::Dir(Dir::new(dir)),
                S_IFREG => Body::File(Contents::shared(e.data)),
                S_IFLNK => Body::Symlink(e.data.into()),
                _ => Body::Special {
                    rdev: (e.rdev_major, e.rdev_minor),
                },
            };
            let inode = Inode {
                mode: meta.mode,
                uid: meta.uid,
                gid: meta.gid,
                nlink: 0,
                mtime: meta.mtime.into(),
                opens: 0,
                body,
            };
            let ino = fs.make(dir, name, inode)?;
            if e.is_dir() {
                dirs.insert(path, ino);
            } else if is_linked(e) {
                linked.insert(link_key(e), ino);
            }
        }
        // Seeding stamped the directories it filled; they keep the archive's times.
        for (path, e) in archive.iter().filter(|(_, e)| e.is_dir()) {
            if let Some(&ino) = dirs.get(path) {
                fs.inode_mut(ino)?.mtime = e.mtime.into();
            }
        }
        Ok(fs)
    }

    /// The root directory.
    pub const fn root(&self) -> Ino {
        ROOT
    }

    /// Sets the time, in seconds since the epoch, that changes are stamped with from now on.
    pub fn set_time(&mut self, now: u64) {
        self.now = now;
    }

    /// The limits the file system was made with.
    pub const fn limits(&self) -> Limits {
        self.limits
    }

    /// What it holds now.
    pub fn usage(&self) -> Usage {
        Usage {
            bytes: self.used,
            inodes: self.inodes.len(),
        }
    }

    // ---- Looking up ----

    /// The inode `path` names, relative paths starting at directory `at`: `ENOENT`,
    /// `ENOTDIR` (a component before the last, or the last when a slash follows it, is not
    /// a directory), `ELOOP`, `ENAMETOOLONG`, `EINVAL` (a NUL in the path).
    pub fn lookup(&self, at: Ino, path: &[u8], follow: Follow) -> Result<Ino, i64> {
        let mut walk = Walk::new(path, at, ROOT)?;
        loop {
            let (dir, last) = self.walk_to_last(&mut walk)?;
            let ino = match last {
                Last::Root | Last::Dot => dir,
                Last::DotDot => self.parent_of(dir)?,
                Last::Name(name) => {
                    let child = self.child(dir, name)?;
                    if let Body::Symlink(target) = &self.inode(child)?.body
                        && (follow == Follow::Yes || walk.trailing())
                    {
                        walk.follow(target, ROOT)?;
                        continue;
                    }
                    child
                }
            };
            if walk.trailing() && !self.is_dir(ino) {
                return Err(-ENOTDIR);
            }
            return Ok(ino);
        }
    }

    /// Walks every component but the last, following links: the directory the last is in,
    /// and the last. The walk is left there, to go on if the last is a link to follow.
    fn walk_to_last<'s>(&'s self, walk: &mut Walk<'s>) -> Result<(Ino, Last<&'s [u8]>), i64> {
        loop {
            self.dir(walk.dir)?;
            let Some((step, last)) = walk.next() else {
                return Ok((walk.dir, Last::Root));
            };
            match (step, last) {
                (Step::Dot, true) => return Ok((walk.dir, Last::Dot)),
                (Step::DotDot, true) => return Ok((walk.dir, Last::DotDot)),
                (Step::Name(name), true) => return Ok((walk.dir, Last::Name(name))),
                (Step::Dot, false) => {}
                (Step::DotDot, false) => walk.dir = self.parent_of(walk.dir)?,
                (Step::Name(name), false) => {
                    let child = self.child(walk.dir, name)?;
                    match &self.inode(child)?.body {
                        Body::Symlink(target) => walk.follow(target, ROOT)?,
                        _ => walk.dir = child,
                    }
                }
            }
        }
    }

    /// The directory holding the last component of `path` and that component, links in it
    /// not followed (for the calls that make or remove a name), and whether a slash follows
    /// it. The name is copied out so that the caller may change the tree.
    fn parent_and_last(&self, at: Ino, path: &[u8]) -> Result<(Ino, Last<Vec<u8>>, bool), i64> {
        let mut walk = Walk::new(path, at, ROOT)?;
        let (dir, last) = self.walk_to_last(&mut walk)?;
        let last = match last {
            Last::Name(name) => Last::Name(name.to_vec()),
            Last::Root => Last::Root,
            Last::Dot => Last::Dot,
            Last::DotDot => Last::DotDot,
        };
        Ok((dir, last, walk.trailing()))
    }

    // ---- Making and opening ----

    /// `open(path, flags, mode)` for the file system's part: the inode to open. With
    /// `O_CREAT`, a missing regular file is made (permissions `mode & 0o7777`: the caller
    /// applies its umask), through a dangling symbolic link too; `O_EXCL` makes an existing
    /// name (a link included) `EEXIST`. `O_TRUNC` empties a regular file. `O_NOFOLLOW` on a
    /// link is `ELOOP`, `O_DIRECTORY` on anything but a directory `ENOTDIR`, writing to a
    /// directory (an access mode that writes, or `O_TRUNC`) `EISDIR`, `O_CREAT` with
    /// `O_DIRECTORY` `EINVAL`, `O_CREAT` on a name followed by a slash `EISDIR`.
    pub fn open(&mut self, at: Ino, path: &[u8], flags: u32, mode: u32) -> Result<Ino, i64> {
        let ino = if flags & O_CREAT != 0 {
            if flags & O_DIRECTORY != 0 {
                return Err(-EINVAL);
            }
            match self.find_or_place(at, path, flags)? {
                Place::Existing(ino) => ino,
                Place::New(dir, name) => {
                    let body = Body::File(Contents::default());
                    let inode = self.new_inode(dir, S_IFREG | (mode & 0o7777), body)?;
                    return self.make(dir, &name, inode);
                }
            }
        } else {
            let follow = if flags & O_NOFOLLOW != 0 {
                Follow::No
            } else {
                Follow::Yes
            };
            self.lookup(at, path, follow)?
        };
        let kind = self.inode(ino)?.mode & S_IFMT;
        if flags & O_DIRECTORY != 0 && kind != S_IFDIR {
            return Err(-ENOTDIR);
        }
        let writes = flags & 3 != 0 || flags & O_TRUNC != 0;
        match kind {
            S_IFLNK => return Err(-ELOOP),
            S_IFDIR if writes => return Err(-EISDIR),
            S_IFREG if flags & O_TRUNC != 0 => self.truncate(ino, 0)?,
            _ => {}
        }
        Ok(ino)
    }

    /// For `O_CREAT`: the inode that is there, or the directory and name to make it at,
    /// following links at the last component unless `O_EXCL` or `O_NOFOLLOW`.
    fn find_or_place(&self, at: Ino, path: &[u8], flags: u32) -> Result<Place, i64> {
        let exclusive = flags & O_EXCL != 0;
        let mut walk = Walk::new(path, at, ROOT)?;
        loop {
            let (dir, last) = self.walk_to_last(&mut walk)?;
            let Last::Name(name) = last else {
                // `.`, `..` and `/` name directories that exist.
                return Err(if exclusive { -EEXIST } else { -EISDIR });
            };
            if walk.trailing() {
                return Err(-EISDIR);
            }
            check_name(name)?;
            let Some(&(child, _)) = self.dir(dir)?.names.get(name) else {
                return Ok(Place::New(dir, name.to_vec()));
            };
            if exclusive {
                return Err(-EEXIST);
            }
            match &self.inode(child)?.body {
                Body::Symlink(target) if flags & O_NOFOLLOW == 0 => walk.follow(target, ROOT)?,
                Body::Dir(_) => return Err(-EISDIR),
                _ => return Ok(Place::Existing(child)),
            }
        }
    }

    /// `mkdir(path, mode)`: a new directory (permissions `mode & 0o1777`), `EEXIST` if the
    /// name is taken (by a dangling link too) or is `.`, `..` or `/`.
    pub fn mkdir(&mut self, at: Ino, path: &[u8], mode: u32) -> Result<Ino, i64> {
        let (dir, last, _) = self.parent_and_last(at, path)?;
        let Last::Name(name) = last else {
            return Err(-EEXIST);
        };
        let inode = self.new_inode(dir, S_IFDIR | (mode & 0o1777), Body::Dir(Dir::new(dir)))?;
        self.make(dir, &name, inode)
    }

    /// `symlink(target, path)`: a new symbolic link. `ENOENT` for an empty target,
    /// `ENAMETOOLONG` for one of [`PATH_MAX`] bytes or more, `EEXIST` if the name is taken,
    /// `ENOENT` if a slash follows a new name.
    pub fn symlink(&mut self, target: &[u8], at: Ino, path: &[u8]) -> Result<Ino, i64> {
        match target {
            [] => return Err(-ENOENT),
            _ if target.len() >= PATH_MAX => return Err(-ENAMETOOLONG),
            _ if target.contains(&0) => return Err(-EINVAL),
            _ => {}
        }
        let (dir, name) = self.place_new_name(at, path)?;
        let inode = self.new_inode(dir, S_IFLNK | 0o777, Body::Symlink(target.into()))?;
        self.make(dir, &name, inode)
    }

    /// `link(old, new)` (`linkat`, `follow` for `AT_SYMLINK_FOLLOW`): another name for an
    /// inode. `EEXIST` if the new name is taken, `ENOENT` if a slash follows it, `EPERM`
    /// for a directory, `EMLINK` past `u32::MAX` links.
    pub fn link(
        &mut self,
        old_at: Ino,
        old: &[u8],
        new_at: Ino,
        new: &[u8],
        follow: Follow,
    ) -> Result<(), i64> {
        let ino = self.lookup(old_at, old, follow)?;
        let (dir, name) = self.place_new_name(new_at, new)?;
        self.check_new_entry(dir, &name)?;
        let inode = self.inode(ino)?;
        if matches!(inode.body, Body::Dir(_)) {
            return Err(-EPERM);
        }
        if inode.nlink == u32::MAX {
            return Err(-EMLINK);
        }
        self.add_link(dir, &name, ino)
    }

    /// For the calls that make a name other than `mkdir` and `open`: the directory and
    /// the name, `EEXIST` for `.`, `..`, `/` and names taken, `ENOENT` for a new name
    /// followed by a slash.
    fn place_new_name(&self, at: Ino, path: &[u8]) -> Result<(Ino, Vec<u8>), i64> {
        let (dir, last, trailing) = self.parent_and_last(at, path)?;
        let Last::Name(name) = last else {
            return Err(-EEXIST);
        };
        check_name(&name)?;
        if self.dir(dir)?.names.contains_key(name.as_slice()) {
            return Err(-EEXIST);
        }
        if trailing {
            return Err(-ENOENT);
        }
        Ok((dir, name))
    }

    /// An inode to be made in `dir`: owned by root, or by `dir`'s group if `dir` is
    /// set-group-ID (and then a directory is set-group-ID too), stamped now.
    fn new_inode(&self, dir: Ino, mut mode: u32, body: Body<'a>) -> Result<Inode<'a>, i64> {
        let parent = self.inode(dir)?;
        let mut gid = 0;
        if parent.mode & S_ISGID != 0 {
            gid = parent.gid;
            if mode & S_IFMT == S_IFDIR {
                mode |= S_ISGID;
            }
        }
        Ok(Inode {
            mode,
            uid: 0,
            gid,
            nlink: 0,
            mtime: self.now,
            opens: 0,
            body,
        })
    }

    /// Checks that `name` can be added to `dir`: `ENOENT` if `dir` was removed,
    /// `ENAMETOOLONG`, `EEXIST`, and `ENOSPC` when the directory has made so many entries
    /// that its listing cookies ran out.
    fn check_new_entry(&self, dir: Ino, name: &[u8]) -> Result<(), i64> {
        let d = self.dir(dir)?;
        if self.inode(dir)?.nlink == 0 {
            return Err(-ENOENT);
        }
        check_name(name)?;
        if d.names.contains_key(name) {
            return Err(-EEXIST);
        }
        if d.next_cookie >= COOKIE_END {
            return Err(-ENOSPC);
        }
        Ok(())
    }

    /// Whether `bytes` more and `inodes` more fit the limits: `ENOSPC` if not.
    fn check_room(&self, bytes: usize, inodes: usize) -> Result<(), i64> {
        let bytes_ok = self
            .used
            .checked_add(bytes)
            .is_some_and(|b| b <= self.limits.bytes);
        let inodes_ok = self
            .inodes
            .len()
            .checked_add(inodes)
            .is_some_and(|n| n <= self.limits.inodes);
        if bytes_ok && inodes_ok {
            Ok(())
        } else {
            Err(-ENOSPC)
        }
    }

    /// Makes `inode` under `name` in `dir`, after every check; returns its number.
    fn make(&mut self, dir: Ino, name: &[u8], mut inode: Inode<'a>) -> Result<Ino, i64> {
        self.check_new_entry(dir, name)?;
        let is_dir = matches!(inode.body, Body::Dir(_));
        if is_dir && self.inode(dir)?.nlink == u32::MAX {
            return Err(-EMLINK);
        }
        let cost = INODE_COST + body_cost(&inode.body);
        self.check_room(cost + entry_cost(name), 1)?;
        let ino = Ino(self.next_ino);
        self.next_ino = self.next_ino.checked_add(1).ok_or(-ENOSPC)?;
        inode.nlink = if is_dir { 2 } else { 1 };
        self.inodes.insert(ino.0, inode);
        self.used += cost;
        self.insert_entry(dir, name, ino)?;
        if is_dir {
            self.inode_mut(dir)?.nlink += 1;
        }
        Ok(ino)
    }

    /// Adds `name` in `dir` for the existing (non-directory) inode `ino`.
    fn add_link(&mut self, dir: Ino, name: &[u8], ino: Ino) -> Result<(), i64> {
        self.check_new_entry(dir, name)?;
        self.check_room(entry_cost(name), 0)?;
        let inode = self.inode_mut(ino)?;
        inode.nlink = inode.nlink.checked_add(1).ok_or(-EMLINK)?;
        self.insert_entry(dir, name, ino)
    }

    /// Adds the entry, charging it and stamping the directory (checks made).
    fn insert_entry(&mut self, dir: Ino, name: &[u8], ino: Ino) -> Result<(), i64> {
        let now = self.now;
        let parent = self.inode_mut(dir)?;
        let Body::Dir(d) = &mut parent.body else {
            return Err(-ENOTDIR);
        };
        let cookie = d.next_cookie;
        d.next_cookie += 1;
        d.names.insert(name.into(), (ino, cookie));
        d.order.insert(cookie, name.into());
        parent.mtime = now;
        self.used += entry_cost(name);
        Ok(())
    }

    /// Removes the entry `name` from `dir`, stamping the directory; returns what it named.
    /// The inode's links are the caller's to count.
    fn remove_entry(&mut self, dir: Ino, name: &[u8]) -> Result<Ino, i64> {
        let now = self.now;
        let parent = self.inode_mut(dir)?;
        let Body::Dir(d) = &mut parent.body else {
            return Err(-ENOTDIR);
        };
        let (ino, cookie) = d.names.remove(name).ok_or(-ENOENT)?;
        d.order.remove(&cookie);
        parent.mtime = now;
        self.used = self.used.saturating_sub(entry_cost(name));
        Ok(ino)
    }

    /// Takes one link from a non-directory, freeing it when nothing holds it any more.
    fn drop_link(&mut self, ino: Ino) -> Result<(), i64> {
        let inode = self.inode_mut(ino)?;
        inode.nlink = inode.nlink.saturating_sub(1);
        self.free_if_unused(ino)
    }

    /// Marks a directory just taken out of `parent` removed, freeing it when nothing holds it.
    fn drop_dir(&mut self, ino: Ino, parent: Ino) -> Result<(), i64> {
        self.inode_mut(ino)?.nlink = 0;
        let p = self.inode_mut(parent)?;
        p.nlink = p.nlink.saturating_sub(1);
        self.free_if_unused(ino)
    }

    fn free_if_unused(&mut self, ino: Ino) -> Result<(), i64> {
        let inode = self.inode(ino)?;
        if inode.nlink == 0 && inode.opens == 0 && ino != ROOT {
            let freed = INODE_COST + body_cost(&inode.body);
            self.inodes.remove(&ino.0);
            self.used = self.used.saturating_sub(freed);
        }
        Ok(())
    }

    // ---- Removing and renaming ----

    /// `unlink(path)`: `EISDIR` for a directory (and `.`, `..`, `/`), `ENOTDIR` if a slash
    /// follows the name of anything else.
    pub fn unlink(&mut self, at: Ino, path: &[u8]) -> Result<(), i64> {
        let (dir, last, trailing) = self.parent_and_last(at, path)?;
        let Last::Name(name) = last else {
            return Err(-EISDIR);
        };
        let child = self.child(dir, &name)?;
        if self.is_dir(child) {
            return Err(-EISDIR);
        }
        if trailing {
            return Err(-ENOTDIR);
        }
        self.remove_entry(dir, &name)?;
        self.drop_link(child)
    }

    /// `rmdir(path)`: `ENOTDIR`, `ENOTEMPTY`, `EINVAL` for `.`, `ENOTEMPTY` for `..`,
    /// `EBUSY` for `/`.
    pub fn rmdir(&mut self, at: Ino, path: &[u8]) -> Result<(), i64> {
        let (dir, last, _) = self.parent_and_last(at, path)?;
        let name = match last {
            Last::Root => return Err(-EBUSY),
            Last::Dot => return Err(-EINVAL),
            Last::DotDot => return Err(-ENOTEMPTY),
            Last::Name(name) => name,
        };
        let child = self.child(dir, &name)?;
        match &self.inode(child)?.body {
            Body::Dir(d) if !d.names.is_empty() => return Err(-ENOTEMPTY),
            Body::Dir(_) => {}
            _ => return Err(-ENOTDIR),
        }
        self.remove_entry(dir, &name)?;
        self.drop_dir(child, dir)
    }

    /// `renameat2(old, new, flags)` with `flags` 0 or [`RENAME_NOREPLACE`] (anything else
    /// is `EINVAL`). Replaces what `new` names: a file by anything but a directory
    /// (`EISDIR` otherwise), an empty directory by a directory (`ENOTDIR` otherwise,
    /// `ENOTEMPTY` if not empty). `EINVAL` for moving a directory into itself, `ENOTEMPTY`
    /// for replacing an ancestor of `old`, `EBUSY` for `.`, `..` or `/` on either side,
    /// `ENOTDIR` for a trailing slash on either side when `old` is not a directory. Two
    /// names of one inode: nothing happens and both stay, as POSIX says.
    pub fn rename(
        &mut self,
        old_at: Ino,
        old: &[u8],
        new_at: Ino,
        new: &[u8],
        flags: u32,
    ) -> Result<(), i64> {
        if flags & !RENAME_NOREPLACE != 0 {
            return Err(-EINVAL);
        }
        let noreplace = flags & RENAME_NOREPLACE != 0;
        let (odir, olast, otrail) = self.parent_and_last(old_at, old)?;
        let (ndir, nlast, ntrail) = self.parent_and_last(new_at, new)?;
        let Last::Name(oname) = olast else {
            return Err(-EBUSY);
        };
        let Last::Name(nname) = nlast else {
            return Err(if noreplace { -EEXIST } else { -EBUSY });
        };
        let src = self.child(odir, &oname)?;
        check_name(&nname)?;
        let target = self
            .dir(ndir)?
            .names
            .get(nname.as_slice())
            .map(|&(ino, _)| ino);
        if noreplace && target.is_some() {
            return Err(-EEXIST);
        }
        let src_is_dir = self.is_dir(src);
        if !src_is_dir && (otrail || ntrail) {
            return Err(-ENOTDIR);
        }
        if self.is_ancestor(src, ndir) {
            return Err(-EINVAL);
        }
        if target.is_some_and(|t| self.is_ancestor(t, odir)) {
            return Err(-ENOTEMPTY);
        }
        if target == Some(src) {
            return Ok(());
        }
        match target {
            Some(t) => match (&self.inode(t)?.body, src_is_dir) {
                (Body::Dir(_), false) => return Err(-EISDIR),
                (Body::Dir(d), true) if !d.names.is_empty() => return Err(-ENOTEMPTY),
                (Body::Dir(_), true) => {}
                (_, true) => return Err(-ENOTDIR),
                (_, false) => {}
            },
            None => {
                self.check_new_entry(ndir, &nname)?;
                if src_is_dir && odir != ndir && self.inode(ndir)?.nlink == u32::MAX {
                    return Err(-EMLINK);
                }
            }
        }
        if self.dir(ndir)?.next_cookie >= COOKIE_END {
            return Err(-ENOSPC);
        }
        self.check_room(entry_cost(&nname).saturating_sub(entry_cost(&oname)), 0)?;
        // Checked: from here on nothing fails.
        if let Some(t) = target {
            self.remove_entry(ndir, &nname)?;
            if src_is_dir {
                self.drop_dir(t, ndir)?;
            } else {
                self.drop_link(t)?;
            }
        }
        self.remove_entry(odir, &oname)?;
        self.insert_entry(ndir, &nname, src)?;
        if src_is_dir && odir != ndir {
            let o = self.inode_mut(odir)?;
            o.nlink = o.nlink.saturating_sub(1);
            self.inode_mut(ndir)?.nlink += 1;
            if let Body::Dir(d) = &mut self.inode_mut(src)?.body {
                d.parent = ndir;
            }
        }
        Ok(())
    }

    /// Whether directory `ancestor` is `dir` or above it.
    fn is_ancestor(&self, ancestor: Ino, dir: Ino) -> bool {
        let mut cur = dir;
        // Parents form a tree; the bound only makes the loop's end plain.
        for _ in 0..=self.inodes.len() {
            if cur == ancestor {
                return true;
            }
            match self.dir(cur) {
                Ok(d) if cur != ROOT => cur = d.parent,
                _ => return false,
            }
        }
        false
    }

    // ---- Contents ----

    /// `pread`: the bytes of regular file `ino` at `offset` into `buf`; returns how many
    /// (0 at or past the end). `EISDIR` for a directory, `EINVAL` for anything else.
    pub fn read_at(&self, ino: Ino, offset: u64, buf: &mut [u8]) -> Result<usize, i64> {
        Ok(self.file(ino)?.read(offset, buf))
    }

    /// `pwrite`: writes `data` at `offset` into regular file `ino`, zeros filling any gap
    /// past the old end; returns how many bytes were written, fewer than asked when space
    /// ran out part-way (`ENOSPC` when none could be), or when the write reaches
    /// [`MAX_FILE_SIZE`] (`EFBIG` at or past it). `EISDIR` for a directory, `EINVAL` for
    /// anything else. An empty write changes nothing.
    pub fn write_at(&mut self, ino: Ino, offset: u64, data: &[u8]) -> Result<usize, i64> {
        self.file(ino)?;
        if data.is_empty() {
            return Ok(0);
        }
        if offset >= MAX_FILE_SIZE {
            return Err(-EFBIG);
        }
        let room = usize::try_from(MAX_FILE_SIZE - offset).unwrap_or(usize::MAX);
        let data = &data[..data.len().min(room)];
        let (limit, now) = (self.limits.bytes, self.now);
        let mut used = self.used;
        let inode = self.inode_mut(ino)?;
        let Body::File(contents) = &mut inode.body else {
            return Err(-EINVAL);
        };
        let written = contents.write(offset, data, || {
            match used.checked_add(PAGE_COST).filter(|&u| u <= limit) {
                Some(u) => {
                    used = u;
                    Ok(())
                }
                None => Err(-ENOSPC),
            }
        });
        if matches!(written, Ok(n) if n > 0) {
            inode.mtime = now;
        }
        self.used = used;
        written
    }

    /// A write with `O_APPEND`: `data` at the end of regular file `ino`, as
    /// [`write_at`](Self::write_at); returns the bytes written and the new end (the
    /// descriptor's new offset).
    pub fn append(&mut self, ino: Ino, data: &[u8]) -> Result<(usize, u64), i64> {
        let end = self.file(ino)?.size();
        let n = self.write_at(ino, end, data)?;
        Ok((n, end + n as u64))
    }

    /// `truncate`: sets the size of regular file `ino`, dropping what lies past a smaller
    /// one and reading zeros in what a larger one adds. `EISDIR` for a directory, `EINVAL`
    /// for anything else, `EFBIG` past [`MAX_FILE_SIZE`].
    pub fn truncate(&mut self, ino: Ino, size: u64) -> Result<(), i64> {
        self.file(ino)?;
        if size > MAX_FILE_SIZE {
            return Err(-EFBIG);
        }
        let now = self.now;
        let inode = self.inode_mut(ino)?;
        let Body::File(contents) = &mut inode.body else {
            return Err(-EINVAL);
        };
        let freed = contents.truncate(size);
        inode.mtime = now;
        self.used = self.used.saturating_sub(freed * PAGE_COST);
        Ok(())
    }

    /// The whole contents of regular file `ino` while they are still the initrd's bytes,
    /// unmodified: for running a program from the initrd without copying it.
    pub fn initrd_contents(&self, ino: Ino) -> Option<&'a [u8]> {
        self.file(ino).ok()?.unmodified()
    }

    fn file(&self, ino: Ino) -> Result<&Contents<'a>, i64> {
        match &self.inode(ino)?.body {
            Body::File(contents) => Ok(contents),
            Body::Dir(_) => Err(-EISDIR),
            _ => Err(-EINVAL),
        }
    }

    /// `readlink(path)`: the target of the symbolic link `path` names, `EINVAL` if it names
    /// something else.
    pub fn readlink(&self, at: Ino, path: &[u8]) -> Result<&[u8], i64> {
        let ino = self.lookup(at, path, Follow::No)?;
        match &self.inode(ino)?.body {
            Body::Symlink(target) => Ok(target),
            _ => Err(-EINVAL),
        }
    }

    // ---- Attributes ----

    /// `stat`: what [`Stat`] holds for inode `ino`.
    pub fn stat(&self, ino: Ino) -> Result<Stat, i64> {
        let inode = self.inode(ino)?;
        let (size, rdev) = match &inode.body {
            Body::File(contents) => (contents.size(), (0, 0)),
            Body::Dir(d) => (BOGO_DIRENT_SIZE * (2 + d.names.len() as u64), (0, 0)),
            Body::Symlink(target) => (target.len() as u64, (0, 0)),
            Body::Special { rdev } => (0, *rdev),
        };
        Ok(Stat {
            ino: ino.0,
            nlink: inode.nlink.into(),
            mode: inode.mode,
            uid: inode.uid,
            gid: inode.gid,
            rdev,
            size,
            mtime: inode.mtime,
        })
    }

    /// `chmod`: sets the permission bits (`mode & 0o7777`); the type stays.
    pub fn chmod(&mut self, ino: Ino, mode: u32) -> Result<(), i64> {
        let inode = self.inode_mut(ino)?;
        inode.mode = (inode.mode & S_IFMT) | (mode & 0o7777);
        Ok(())
    }

    /// `chown` (`None` leaves a field as it is, as -1 does). A change of owner takes the
    /// set-user-ID bit, and the set-group-ID bit of a group-executable file, from a
    /// non-directory, as Linux does even for root.
    pub fn chown(&mut self, ino: Ino, uid: Option<u32>, gid: Option<u32>) -> Result<(), i64> {
        let inode = self.inode_mut(ino)?;
        inode.uid = uid.unwrap_or(inode.uid);
        inode.gid = gid.unwrap_or(inode.gid);
        if inode.mode & S_IFMT != S_IFDIR && (uid.is_some() || gid.is_some()) {
            inode.mode &= !S_ISUID;
            if inode.mode & S_IXGRP != 0 {
                inode.mode &= !S_ISGID;
            }
        }
        Ok(())
    }

    /// `utimensat` for the one time kept: sets the modification time (`None`: now).
    pub fn set_mtime(&mut self, ino: Ino, mtime: Option<u64>) -> Result<(), i64> {
        let now = self.now;
        self.inode_mut(ino)?.mtime = mtime.unwrap_or(now);
        Ok(())
    }

    // ---- Directories ----

    /// `getdents64` on directory `dir` from listing position `pos` (0 at the start; then
    /// what the last call returned, which is also the last record's `d_off`): fills `out`
    /// with whole `struct linux_dirent64` records (`d_ino` u64, `d_off` i64, `d_reclen`
    /// u16, `d_type` u8, the name and a NUL, zero-padded to a multiple of 8) and returns
    /// the bytes filled and the position to go on from. 0 bytes: the end. `EINVAL` if the
    /// first record does not fit, `ENOTDIR`, `ENOENT` for a removed directory.
    ///
    /// `.` and `..` come first (positions 0 and 1), then the entries in the order they
    /// were made; each entry's position is a cookie its directory never gives again, and a
    /// position means "the entries from this cookie on". So, between calls, whatever
    /// changes: an entry present for the whole listing is returned exactly once; an entry
    /// is never returned twice (a name removed and made again, or renamed, is a new entry
    /// and may be returned under its new cookie too, as on Linux's tmpfs); an entry made
    /// during the listing is returned (it comes after every position given so far); one
    /// removed before the listing reaches it is not. Any `u64` is a valid position, so an
    /// `lseek` to any offset is harmless.
    pub fn getdents(&self, dir: Ino, pos: u64, out: &mut [u8]) -> Result<(usize, u64), i64> {
        let d = self.dir(dir)?;
        if self.inode(dir)?.nlink == 0 {
            return Err(-ENOENT);
        }
        let mut filled = 0;
        let mut pos = pos;
        loop {
            let (ino, name, next): (Ino, &[u8], u64) = match pos {
                0 => (dir, &b"."[..], 1),
                1 => (d.parent, &b".."[..], FIRST_COOKIE),
                _ => match d.order.range(pos..).next() {
                    Some((&cookie, name)) => {
                        let Some(&(ino, _)) = d.names.get(name) else {
                            break;
                        };
                        (ino, &name[..], cookie + 1)
                    }
                    None => break,
                },
            };
            let d_type = self
                .inode(ino)
                .map_or(0, |i| ((i.mode & S_IFMT) >> 12) as u8);
            let reclen = (DIRENT_HEADER + name.len() + 1).next_multiple_of(8);
            let Some(record) = out.get_mut(filled..filled + reclen) else {
                if filled == 0 {
                    return Err(-EINVAL);
                }
                break;
            };
            record[0..8].copy_from_slice(&ino.0.to_le_bytes());
            record[8..16].copy_from_slice(&next.to_le_bytes());
            record[16..18].copy_from_slice(&(reclen as u16).to_le_bytes());
            record[18] = d_type;
            record[DIRENT_HEADER..DIRENT_HEADER + name.len()].copy_from_slice(name);
            record[DIRENT_HEADER + name.len()..].fill(0);
            filled += reclen;
            pos = next;
        }
        Ok((filled, pos))
    }

    /// The absolute path of directory `dir`, for `getcwd`: `ENOENT` if it was removed,
    /// `ENOTDIR`, `ENAMETOOLONG` if it is [`PATH_MAX`] bytes or longer.
    pub fn path_of(&self, dir: Ino) -> Result<Vec<u8>, i64> {
        let mut names: Vec<&[u8]> = Vec::new();
        let mut cur = dir;
        for _ in 0..=self.inodes.len() {
            if cur == ROOT {
                let mut path = Vec::new();
                for name in names.iter().rev() {
                    path.push(b'/');
                    path.extend_from_slice(name);
                }
                if path.is_empty() {
                    path.push(b'/');
                }
                return if path.len() >= PATH_MAX {
                    Err(-ENAMETOOLONG)
                } else {
                    Ok(path)
                };
            }
            let d = self.dir(cur)?;
            if self.inode(cur)?.nlink == 0 {
                return Err(-ENOENT);
            }
            let parent = self.dir(d.parent)?;
            let (name, _) = parent
                .names
                .iter()
                .find(|(_, entry)| entry.0 == cur)
                .ok_or(-ENOENT)?;
            names.push(&name[..]);
            cur = d.parent;
        }
        Err(-ENOENT)
    }

    // ---- Holders ----

    /// Keeps inode `ino` alive while it is held (by an open file description, a working
    /// directory) even if its last name goes; each `retain` wants a [`release`](Self::release).
    /// `ENFILE` past `u32::MAX` holders.
    pub fn retain(&mut self, ino: Ino) -> Result<(), i64> {
        let inode = self.inode_mut(ino)?;
        inode.opens = inode.opens.checked_add(1).ok_or(-ENFILE)?;
        Ok(())
    }

    /// Lets go of inode `ino`; it is freed if it has no name left and no other holder.
    /// `EINVAL` if it is not held.
    pub fn release(&mut self, ino: Ino) -> Result<(), i64> {
        let inode = self.inode_mut(ino)?;
        inode.opens = inode.opens.checked_sub(1).ok_or(-EINVAL)?;
        self.free_if_unused(ino)
    }

    // ---- Inodes ----

    fn inode(&self, ino: Ino) -> Result<&Inode<'a>, i64> {
        self.inodes.get(&ino.0).ok_or(-ENOENT)
    }

    fn inode_mut(&mut self, ino: Ino) -> Result<&mut Inode<'a>, i64> {
        self.inodes.get_mut(&ino.0).ok_or(-ENOENT)
    }

    fn dir(&self, ino: Ino) -> Result<&Dir, i64> {
        match &self.inode(ino)?.body {
            Body::Dir(d) => Ok(d),
            _ => Err(-ENOTDIR),
        }
    }

    fn is_dir(&self, ino: Ino) -> bool {
        self.dir(ino).is_ok()
    }

    /// What `name` names in directory `dir`: `ENAMETOOLONG`, `ENOENT`.
    fn child(&self, dir: Ino, name: &[u8]) -> Result<Ino, i64> {
        check_name(name)?;
        self.dir(dir)?
            .names
            .get(name)
            .map(|&(ino, _)| ino)
            .ok_or(-ENOENT)
    }

    /// Where `..` in directory `dir` leads: `ENOENT` if that directory is gone (`dir` was
    /// removed and so was its parent).
    fn parent_of(&self, dir: Ino) -> Result<Ino, i64> {
        let parent = self.dir(dir)?.parent;
        self.inode(parent)?;
        Ok(parent)
    }
}

/// What an inode's contents cost, its entries aside (a directory's are charged one by one).
fn body_cost(body: &Body<'_>) -> usize {
    match body {
        Body::File(contents) => contents.owned_pages() * PAGE_COST,
        Body::Symlink(target) => target.len(),
        Body::Dir(_) | Body::Special { .. } => 0,
    }
}

/// Whether an initrd entry is a member of a hard-link group (as [`Archive`] groups them).
fn is_linked(e: &Entry<'_>) -> bool {
    e.is_file() && e.nlink >= 2
}

/// What identifies a hard-link group in the initrd.
fn link_key(e: &Entry<'_>) -> (u32, u32, u32) {
    (e.dev_major, e.dev_minor, e.ino)
}
