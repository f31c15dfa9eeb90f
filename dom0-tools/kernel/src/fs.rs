//! dom0's files: a tmpfs root ([`Tmpfs`]) seeded from the initrd (cpio newc, GRUB's second
//! module), writable, in memory: what is written there is lost at the next boot.

use alloc::borrow::Cow;
use alloc::string::String;
use alloc::vec::Vec;

use spin::{Mutex, MutexGuard, Once};
use xenia_dom0::cpio::{self, Archive, CpioError};
use xenia_dom0::tmpfs::{Follow, Ino, Limits, Tmpfs};

/// How much dom0's root may hold beyond the initrd's own bytes (which are not copied):
/// new and changed files' pages and every inode's bookkeeping. It comes from the kernel
/// heap ([`crate::heap::HEAP_BYTES`]); writing past it is `ENOSPC` ("No space left on
/// device"), as a full tmpfs says.
pub const ROOT_BYTES: usize = 4 << 20;
/// Most files, directories and links dom0's root holds (the initrd's included).
pub const ROOT_INODES: usize = 4096;

const LIMITS: Limits = Limits {
    bytes: ROOT_BYTES,
    inodes: ROOT_INODES,
};

static ROOT: Once<Mutex<Tmpfs<'static>>> = Once::new();

/// Why the initrd gave no files.
pub enum InitError {
    /// Not a cpio newc archive.
    Archive(CpioError),
    /// It does not fit the root's limits (an errno).
    TooBig(i64),
}

/// Parses the initrd and seeds the root from it: the number of entries. On an error the root
/// is empty (the error says why); an absent initrd is an empty root.
pub fn init(bytes: &'static [u8]) -> Result<usize, InitError> {
    let seeded = if bytes.is_empty() {
        Ok((Tmpfs::new(LIMITS), 0))
    } else {
        Archive::parse(bytes)
            .map_err(InitError::Archive)
            .and_then(|a| {
                Tmpfs::from_archive(&a, LIMITS)
                    .map(|fs| (fs, a.len()))
                    .map_err(InitError::TooBig)
            })
    };
    let (fs, n, err) = match seeded {
        Ok((fs, n)) => (fs, n, None),
        Err(e) => (Tmpfs::new(LIMITS), 0, Some(e)),
    };
    ROOT.call_once(|| Mutex::new(fs));
    err.map_or(Ok(n), Err)
}

/// The root, locked (one holder at a time; never held across a block or a switch).
pub fn lock() -> MutexGuard<'static, Tmpfs<'static>> {
    ROOT.call_once(|| Mutex::new(Tmpfs::new(LIMITS))).lock()
}

/// The contents of regular file `path` (absolute), following symbolic links: the
/// initrd's bytes in place while unmodified, else a copy.
pub fn file(path: &str) -> Option<Cow<'static, [u8]>> {
    let fs = lock();
    let ino = fs.lookup(fs.root(), path.as_bytes(), Follow::Yes).ok()?;
    contents(&fs, ino)
}

/// The contents of regular file `ino`: the initrd's bytes in place while unmodified, else
/// a copy (`None` if it is no regular file, or there is no memory for the copy).
/// `Cow::Borrowed` means the initrd's bytes and nothing else: they are never written nor
/// freed while dom0 runs, and the program loader maps their frames into processes.
pub fn contents(fs: &Tmpfs<'static>, ino: Ino) -> Option<Cow<'static, [u8]>> {
    let st = fs.stat(ino).ok()?;
    if st.mode & cpio::S_IFMT != cpio::S_IFREG {
        return None;
    }
    if let Some(bytes) = fs.initrd_contents(ino) {
        return Some(Cow::Borrowed(bytes));
    }
    let mut copy = Vec::new();
    copy.try_reserve_exact(usize::try_from(st.size).ok()?)
        .ok()?;
    copy.resize(st.size as usize, 0);
    let n = fs.read_at(ino, 0, &mut copy).ok()?;
    copy.truncate(n);
    Some(Cow::Owned(copy))
}

/// Whether `path` names a regular file (links followed).
pub fn exists(path: &str) -> bool {
    let fs = lock();
    fs.lookup(fs.root(), path.as_bytes(), Follow::Yes)
        .and_then(|ino| fs.stat(ino))
        .is_ok_and(|st| st.mode & cpio::S_IFMT == cpio::S_IFREG)
}

/// The programs in `/bin`, by name.
pub fn programs() -> Vec<String> {
    let names = {
        let fs = lock();
        let Ok(bin) = fs.lookup(fs.root(), b"/bin", Follow::Yes) else {
            return Vec::new();
        };
        let mut names = Vec::new();
        let mut pos = 0;
        let mut buf = alloc::vec![0u8; 4096];
        while let Ok((n, next)) = fs.getdents(bin, pos, &mut buf) {
            if n == 0 {
                break;
            }
            let mut at = 0;
            while at + 19 < n {
                let len = usize::from(u16::from_le_bytes([buf[at + 16], buf[at + 17]]));
                if len == 0 {
                    break;
                }
                let name = &buf[at + 19..at + len];
                let end = name.iter().position(|&b| b == 0).unwrap_or(name.len());
                names.push(String::from_utf8_lossy(&name[..end]).into_owned());
                at += len;
            }
            pos = next;
        }
        names
    };
    let mut programs: Vec<String> = names
        .into_iter()
        .filter(|n| n != "." && n != ".." && exists(&alloc::format!("/bin/{n}")))
        .collect();
    programs.sort();
    programs
}
