//! dom0's initrd: a reader (and a small writer) for the Linux cpio "newc"
//! archive format (DESIGN.md §7).
//!
//! dom0 gets its files (`/bin/xl`, `/etc/xen/*.cfg`, guest kernels) from an
//! initrd passed as a multiboot2 module, in the format the Linux kernel
//! unpacks into its initramfs: cpio "newc" (magic `070701`), or its "crc"
//! variant (`070702`), whose checksum is verified here. The layout is in
//! cpio(5) and Linux `Documentation/driver-api/early-userspace/buffer-format.rst`:
//!
//! ```text
//! header (110 bytes: magic, then 13 fields of 8 ASCII hex digits)
//! name   (c_namesize bytes, NUL included), zero-padded to a multiple of 4
//! data   (c_filesize bytes),                zero-padded to a multiple of 4
//! ... and so on, until an entry named "TRAILER!!!"
//! ```
//!
//! Three levels, each built on the one before:
//! * [`entries`] walks the archive without copying, one checked [`Entry`] at a
//!   time, exactly as stored (hard-link members keep their own, usually
//!   empty, data);
//! * [`Archive`] is the directory view: what the Linux kernel would have
//!   unpacked (later entries replace earlier ones, hard links share their
//!   data), with [`Archive::lookup`] and [`Archive::list`];
//! * [`find`] answers one path from the directory view.
//!
//! **What it trusts.** Nothing: the archive is untrusted input. Every header
//! field must be exactly 8 ASCII hex digits, every size is checked against
//! the bytes that remain (with checked arithmetic), names must be UTF-8,
//! NUL-terminated and not empty, the archive must end with its trailer, and
//! an archive may hold at most [`MAX_ENTRIES`] entries. Every refusal is a
//! [`CpioError`] naming the byte offset at fault; nothing here panics on any
//! input (a fuzz-style test mutates archives to check that).
//!
//! **What it never does.** Copy file data (entries borrow the archive), follow
//! symbolic links (lookups are lexical), or let a path escape the root.
//!
//! **Where it is stricter than Linux**, which trusts its initramfs: unknown
//! file types, data on directories or devices, oversized names or symlink
//! targets, and entries whose parent directory is nowhere in the archive are
//! refused rather than skipped. Where it is more lenient: the order of the
//! entries does not matter (cpio(1)'s `find . -depth | cpio -o` puts a
//! directory after its contents, which Linux would unpack only in part). Archives concatenated after the trailer (as Linux accepts for
//! early microcode) are not read: bytes after the trailer are ignored.

use alloc::collections::BTreeMap;
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;
use core::ops::Bound;

/// The magic of a "newc" header (cpio(5): "New ASCII Format").
pub const MAGIC_NEWC: &[u8; 6] = b"070701";
/// The magic of a "crc" header: newc plus a checksum of the file data.
pub const MAGIC_CRC: &[u8; 6] = b"070702";
/// The name of the entry that ends an archive.
pub const TRAILER: &str = "TRAILER!!!";
/// The length of a header: the 6-byte magic and 13 fields of 8 hex digits.
pub const HEADER_LEN: usize = MAGIC_LEN + FIELD_COUNT * FIELD_LEN;
/// The most entries (trailer excluded) an archive may hold: dom0's initrd
/// holds tens, and the bound keeps a hostile archive from costing unbounded
/// memory in [`Archive`].
pub const MAX_ENTRIES: usize = 65536;
/// The longest name, NUL included, and the longest symbolic-link target:
/// Linux's `PATH_MAX` (`include/uapi/linux/limits.h`), the bound its
/// initramfs unpacker applies to both.
pub const PATH_MAX: usize = 4096;

/// The file-type bits of a mode (`S_IFMT`, `include/uapi/linux/stat.h`).
pub const S_IFMT: u32 = 0o170000;
/// A socket.
pub const S_IFSOCK: u32 = 0o140000;
/// A symbolic link; its data is the target.
pub const S_IFLNK: u32 = 0o120000;
/// A regular file.
pub const S_IFREG: u32 = 0o100000;
/// A block device.
pub const S_IFBLK: u32 = 0o060000;
/// A directory.
pub const S_IFDIR: u32 = 0o040000;
/// A character device.
pub const S_IFCHR: u32 = 0o020000;
/// A FIFO.
pub const S_IFIFO: u32 = 0o010000;
/// Every bit a valid mode may have: the type and the permissions (with
/// set-uid, set-gid and sticky).
const MODE_MASK: u32 = S_IFMT | 0o7777;

const MAGIC_LEN: usize = 6;
const FIELD_LEN: usize = 8;
const FIELD_COUNT: usize = 13;
/// The header fields in order, named as in cpio(5).
const FIELD_NAMES: [&str; FIELD_COUNT] = [
    "c_ino",
    "c_mode",
    "c_uid",
    "c_gid",
    "c_nlink",
    "c_mtime",
    "c_filesize",
    "c_devmajor",
    "c_devminor",
    "c_rdevmajor",
    "c_rdevminor",
    "c_namesize",
    "c_check",
];

/// Which part of an entry an archive was cut short in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Part {
    /// The 110-byte header.
    Header,
    /// The name.
    Name,
    /// The file data.
    Data,
    /// The zero padding to a multiple of 4 after the name or the data.
    Padding,
}

impl fmt::Display for Part {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Part::Header => "header",
            Part::Name => "name",
            Part::Data => "file data",
            Part::Padding => "padding",
        })
    }
}

/// Why an archive was refused. Every variant names the byte offset (from the
/// start of the archive) where the fault is; the archive, not the reader, is
/// to blame for all of them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CpioError {
    /// The archive ends inside an entry.
    Truncated {
        /// Where the missing part starts.
        offset: usize,
        /// The part that is cut short.
        part: Part,
        /// The bytes that part needs.
        needed: usize,
        /// The bytes that are left.
        available: usize,
    },
    /// The archive ends, cleanly between entries, without its trailer.
    MissingTrailer {
        /// The end of the archive.
        offset: usize,
    },
    /// A header starts with neither `070701` nor `070702`.
    BadMagic {
        /// The start of the header.
        offset: usize,
    },
    /// A header field is not exactly 8 ASCII hex digits.
    BadField {
        /// The start of the field.
        offset: usize,
        /// The field's name in cpio(5), such as `c_filesize`.
        field: &'static str,
    },
    /// A name is empty (`c_namesize` is 0 or 1).
    EmptyName {
        /// The start of the header.
        offset: usize,
    },
    /// A name is longer than [`PATH_MAX`] bytes, NUL included.
    NameTooLong {
        /// The start of the header.
        offset: usize,
        /// `c_namesize`.
        size: usize,
    },
    /// A name's last byte is not its NUL, or it holds a NUL before the end.
    NameNotTerminated {
        /// The start of the name.
        offset: usize,
    },
    /// A name is not UTF-8.
    NameNotUtf8 {
        /// The start of the name.
        offset: usize,
    },
    /// A mode has bits outside type and permissions, or an unknown file type.
    BadMode {
        /// The start of the header.
        offset: usize,
        /// `c_mode`.
        mode: u32,
    },
    /// A directory, device, FIFO or socket carries file data.
    UnexpectedData {
        /// The start of the header.
        offset: usize,
    },
    /// A symbolic link's target is empty, longer than [`PATH_MAX`], not
    /// UTF-8, or holds a NUL.
    BadSymlink {
        /// The start of the target (the entry's data).
        offset: usize,
    },
    /// A "crc" entry's data does not add up to its `c_check`.
    ChecksumMismatch {
        /// The start of the header.
        offset: usize,
        /// `c_check`.
        expected: u32,
        /// The sum of the data bytes, modulo 2^32.
        computed: u32,
    },
    /// More than [`MAX_ENTRIES`] entries.
    TooManyEntries {
        /// The start of the first entry past the limit.
        offset: usize,
    },
    /// A name climbs above the root with `..`.
    PathEscapesRoot {
        /// The start of the header.
        offset: usize,
    },
    /// The root (`.`) is given as something other than a directory.
    RootNotDirectory {
        /// The start of the header.
        offset: usize,
    },
    /// An entry's parent directory is not in the archive (anywhere), or is
    /// not a directory.
    MissingParent {
        /// The start of the header.
        offset: usize,
    },
    /// An entry would replace a directory that has entries under it with
    /// something that is not a directory.
    ReplacesNonEmptyDirectory {
        /// The start of the header.
        offset: usize,
    },
}

impl CpioError {
    /// The byte offset the error is at.
    pub fn offset(&self) -> usize {
        match *self {
            CpioError::Truncated { offset, .. }
            | CpioError::MissingTrailer { offset }
            | CpioError::BadMagic { offset }
            | CpioError::BadField { offset, .. }
            | CpioError::EmptyName { offset }
            | CpioError::NameTooLong { offset, .. }
            | CpioError::NameNotTerminated { offset }
            | CpioError::NameNotUtf8 { offset }
            | CpioError::BadMode { offset, .. }
            | CpioError::UnexpectedData { offset }
            | CpioError::BadSymlink { offset }
            | CpioError::ChecksumMismatch { offset, .. }
            | CpioError::TooManyEntries { offset }
            | CpioError::PathEscapesRoot { offset }
            | CpioError::RootNotDirectory { offset }
            | CpioError::MissingParent { offset }
            | CpioError::ReplacesNonEmptyDirectory { offset } => offset,
        }
    }
}

/// Which entry `error` (found in `archive`) is about, for a person: `the entry
/// "<name>"` when its header reads, else `after the entry "<name>"` (the last
/// entry read before the fault), else `in the first entry`.
pub fn where_in(archive: &[u8], error: &CpioError) -> String {
    let at = error.offset();
    let mut before = None;
    for entry in entries(archive) {
        let Ok(entry) = entry else {
            break;
        };
        if entry.offset == at {
            return alloc::format!("the entry \"{}\"", entry.name);
        }
        if entry.offset > at {
            break;
        }
        before = Some(entry.name);
    }
    match before {
        Some(name) => alloc::format!("after the entry \"{name}\""),
        None => String::from("in the first entry"),
    }
}

impl fmt::Display for CpioError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            CpioError::Truncated {
                offset,
                part,
                needed,
                available,
            } => write!(
                f,
                "cpio: archive truncated in the {part} at offset {offset:#x}: \
                 {needed} bytes needed, {available} left"
            ),
            CpioError::MissingTrailer { offset } => {
                write!(
                    f,
                    "cpio: archive ends at offset {offset:#x} without {TRAILER}"
                )
            }
            CpioError::BadMagic { offset } => write!(
                f,
                "cpio: no newc magic (070701 or 070702) at offset {offset:#x}"
            ),
            CpioError::BadField { offset, field } => write!(
                f,
                "cpio: header field {field} at offset {offset:#x} is not 8 hex digits"
            ),
            CpioError::EmptyName { offset } => {
                write!(f, "cpio: empty name in the entry at offset {offset:#x}")
            }
            CpioError::NameTooLong { offset, size } => write!(
                f,
                "cpio: name of {size} bytes (more than {PATH_MAX}) in the entry at offset {offset:#x}"
            ),
            CpioError::NameNotTerminated { offset } => write!(
                f,
                "cpio: name at offset {offset:#x} is not NUL-terminated or holds a NUL"
            ),
            CpioError::NameNotUtf8 { offset } => {
                write!(f, "cpio: name at offset {offset:#x} is not UTF-8")
            }
            CpioError::BadMode { offset, mode } => write!(
                f,
                "cpio: invalid mode {mode:#o} in the entry at offset {offset:#x}"
            ),
            CpioError::UnexpectedData { offset } => write!(
                f,
                "cpio: the entry at offset {offset:#x} is not a file or symlink but has data"
            ),
            CpioError::BadSymlink { offset } => {
                write!(
                    f,
                    "cpio: invalid symbolic-link target at offset {offset:#x}"
                )
            }
            CpioError::ChecksumMismatch {
                offset,
                expected,
                computed,
            } => write!(
                f,
                "cpio: checksum of the entry at offset {offset:#x} is {computed:#010x}, \
                 header says {expected:#010x}"
            ),
            CpioError::TooManyEntries { offset } => write!(
                f,
                "cpio: more than {MAX_ENTRIES} entries (entry at offset {offset:#x})"
            ),
            CpioError::PathEscapesRoot { offset } => write!(
                f,
                "cpio: the name of the entry at offset {offset:#x} climbs above the root"
            ),
            CpioError::RootNotDirectory { offset } => write!(
                f,
                "cpio: the root entry at offset {offset:#x} is not a directory"
            ),
            CpioError::MissingParent { offset } => write!(
                f,
                "cpio: the parent of the entry at offset {offset:#x} is not a directory \
                 in the archive"
            ),
            CpioError::ReplacesNonEmptyDirectory { offset } => write!(
                f,
                "cpio: the entry at offset {offset:#x} replaces a non-empty directory"
            ),
        }
    }
}

/// One archive member, borrowed from the archive.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Entry<'a> {
    /// The path, without its leading `/` or `./` (the root, stored as `.`,
    /// is the empty string). Not otherwise normalised here; [`Archive`]
    /// resolves `.` and `..`.
    pub name: &'a str,
    /// File type ([`S_IFMT`] bits) and permissions; nothing else is set.
    pub mode: u32,
    /// The inode number: with [`Entry::dev_major`] and [`Entry::dev_minor`],
    /// what identifies the members of a hard-link group.
    pub ino: u32,
    /// The owner.
    pub uid: u32,
    /// The group.
    pub gid: u32,
    /// The number of links (more than 1 for a hard-linked regular file).
    pub nlink: u32,
    /// The modification time, in seconds since the Unix epoch.
    pub mtime: u32,
    /// The major number of the device the file was archived from.
    pub dev_major: u32,
    /// The minor number of the device the file was archived from.
    pub dev_minor: u32,
    /// For a device node, the major number it stands for.
    pub rdev_major: u32,
    /// For a device node, the minor number it stands for.
    pub rdev_minor: u32,
    /// The file data: a regular file's contents or a symlink's target,
    /// empty for everything else.
    pub data: &'a [u8],
    /// Where this entry's header starts in the archive.
    pub offset: usize,
}

impl<'a> Entry<'a> {
    /// Whether this is a directory.
    pub fn is_dir(&self) -> bool {
        self.mode & S_IFMT == S_IFDIR
    }

    /// Whether this is a regular file.
    pub fn is_file(&self) -> bool {
        self.mode & S_IFMT == S_IFREG
    }

    /// Whether this is a symbolic link.
    pub fn is_symlink(&self) -> bool {
        self.mode & S_IFMT == S_IFLNK
    }

    /// The permission bits (with set-uid, set-gid and sticky).
    pub fn permissions(&self) -> u32 {
        self.mode & 0o7777
    }

    /// A symbolic link's target (checked to be UTF-8 when read), or `None`
    /// for anything else.
    pub fn link_target(&self) -> Option<&'a str> {
        if self.is_symlink() {
            core::str::from_utf8(self.data).ok()
        } else {
            None
        }
    }
}

/// The entries of an archive, in archive order, up to (not including) the
/// trailer; see [`Entries`].
pub fn entries(archive: &[u8]) -> Entries<'_> {
    Entries {
        archive,
        pos: 0,
        count: 0,
        done: false,
    }
}

/// The iterator [`entries`] returns. It yields `Err` at most once, for the
/// first fault, and then ends; it also ends at the trailer, ignoring
/// whatever follows it.
#[derive(Clone, Debug)]
pub struct Entries<'a> {
    archive: &'a [u8],
    pos: usize,
    count: usize,
    done: bool,
}

impl<'a> Iterator for Entries<'a> {
    type Item = Result<Entry<'a>, CpioError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        match read_entry(self.archive, self.pos) {
            Ok(Some((entry, next))) => {
                self.count += 1;
                if self.count > MAX_ENTRIES {
                    self.done = true;
                    return Some(Err(CpioError::TooManyEntries { offset: self.pos }));
                }
                self.pos = next;
                Some(Ok(entry))
            }
            Ok(None) => {
                self.done = true;
                None
            }
            Err(e) => {
                self.done = true;
                Some(Err(e))
            }
        }
    }
}

impl core::iter::FusedIterator for Entries<'_> {}

/// Reads the entry whose header starts at `pos`: `None` for the trailer,
/// otherwise the entry and where the next header starts.
fn read_entry(archive: &[u8], pos: usize) -> Result<Option<(Entry<'_>, usize)>, CpioError> {
    let available = archive.len().saturating_sub(pos);
    if available == 0 {
        return Err(CpioError::MissingTrailer { offset: pos });
    }
    let header = take(archive, pos, HEADER_LEN, Part::Header)?;
    let crc = match &header[..MAGIC_LEN] {
        m if m == MAGIC_NEWC => false,
        m if m == MAGIC_CRC => true,
        _ => return Err(CpioError::BadMagic { offset: pos }),
    };
    let mut f = [0u32; FIELD_COUNT];
    for (i, value) in f.iter_mut().enumerate() {
        let start = MAGIC_LEN + i * FIELD_LEN;
        *value = parse_hex(&header[start..start + FIELD_LEN]).ok_or(CpioError::BadField {
            offset: pos + start,
            field: FIELD_NAMES[i],
        })?;
    }
    let [
        ino,
        mode,
        uid,
        gid,
        nlink,
        mtime,
        filesize,
        dev_major,
        dev_minor,
        rdev_major,
        rdev_minor,
        namesize,
        check,
    ] = f;
    let (filesize, namesize) = (to_usize(filesize), to_usize(namesize));

    // The name: NUL-terminated within c_namesize, then padded to 4.
    if namesize <= 1 {
        return Err(CpioError::EmptyName { offset: pos });
    }
    if namesize > PATH_MAX {
        return Err(CpioError::NameTooLong {
            offset: pos,
            size: namesize,
        });
    }
    let name_start = pos + HEADER_LEN;
    let raw_name = take(archive, name_start, namesize, Part::Name)?;
    let (nul, text) = raw_name
        .split_last()
        .ok_or(CpioError::EmptyName { offset: pos })?;
    if *nul != 0 || text.contains(&0) {
        return Err(CpioError::NameNotTerminated { offset: name_start });
    }
    let name =
        core::str::from_utf8(text).map_err(|_| CpioError::NameNotUtf8 { offset: name_start })?;
    let data_start = skip_padding(archive, name_start + namesize)?;
    // The trailer's other fields are meaningless (GNU cpio and Linux's
    // gen_init_cpio write a mode of 0), so it is recognised before they are
    // checked.
    if name == TRAILER {
        return Ok(None);
    }

    let kind = mode & S_IFMT;
    let known = matches!(
        kind,
        S_IFSOCK | S_IFLNK | S_IFREG | S_IFBLK | S_IFDIR | S_IFCHR | S_IFIFO
    );
    if mode & !MODE_MASK != 0 || !known {
        return Err(CpioError::BadMode { offset: pos, mode });
    }
    let data = take(archive, data_start, filesize, Part::Data)?;
    let next = skip_padding(archive, data_start + filesize)?;
    match kind {
        S_IFREG => {}
        S_IFLNK => {
            let target_ok = !data.is_empty()
                && data.len() <= PATH_MAX
                && !data.contains(&0)
                && core::str::from_utf8(data).is_ok();
            if !target_ok {
                return Err(CpioError::BadSymlink { offset: data_start });
            }
        }
        _ if !data.is_empty() => return Err(CpioError::UnexpectedData { offset: pos }),
        _ => {}
    }
    if crc {
        let computed = checksum(data);
        if computed != check {
            return Err(CpioError::ChecksumMismatch {
                offset: pos,
                expected: check,
                computed,
            });
        }
    }
    let entry = Entry {
        name: strip_root(name),
        mode,
        ino,
        uid,
        gid,
        nlink,
        mtime,
        dev_major,
        dev_minor,
        rdev_major,
        rdev_minor,
        data,
        offset: pos,
    };
    Ok(Some((entry, next)))
}

/// `len` bytes at `start`, or the error saying they are not all there.
fn take(archive: &[u8], start: usize, len: usize, part: Part) -> Result<&[u8], CpioError> {
    let truncated = CpioError::Truncated {
        offset: start,
        part,
        needed: len,
        available: archive.len().saturating_sub(start),
    };
    let end = start.checked_add(len).ok_or(truncated)?;
    archive.get(start..end).ok_or(truncated)
}

/// Where the next 4-aligned part starts after `end`, once the padding is
/// known to be in the archive. Padding is relative to the start of the
/// archive, as every header is 4-aligned. Its contents are not checked
/// (Linux does not either).
fn skip_padding(archive: &[u8], end: usize) -> Result<usize, CpioError> {
    let pad = end.wrapping_neg() % 4;
    take(archive, end, pad, Part::Padding)?;
    Ok(end + pad)
}

/// Exactly 8 ASCII hex digits, either case.
fn parse_hex(field: &[u8]) -> Option<u32> {
    if field.len() != FIELD_LEN {
        return None;
    }
    field.iter().try_fold(0u32, |acc, &b| {
        let digit = char::from(b).to_digit(16)?;
        Some(acc << 4 | digit)
    })
}

/// A u32 header value as a size; saturates on (theoretical) 16-bit targets,
/// where it then fails the bounds checks like any oversized field.
fn to_usize(v: u32) -> usize {
    usize::try_from(v).unwrap_or(usize::MAX)
}

/// The "crc" format's checksum: the sum of the data bytes, modulo 2^32.
fn checksum(data: &[u8]) -> u32 {
    data.iter()
        .fold(0u32, |sum, &b| sum.wrapping_add(u32::from(b)))
}

/// A stored name without its leading `/` and `./` (any number of them, as
/// `find / | cpio` and `find . | cpio` write them); `.` alone is the root,
/// the empty string.
fn strip_root(mut name: &str) -> &str {
    loop {
        if let Some(rest) = name.strip_prefix('/') {
            name = rest;
        } else if let Some(rest) = name.strip_prefix("./") {
            name = rest;
        } else if name == "." {
            return "";
        } else {
            return name;
        }
    }
}

/// Resolves `.`, `..` and repeated slashes lexically. Climbing above the
/// root gives `None` unless `clamp`, where, as for POSIX paths, `/..` is `/`.
fn canonical(path: &str, clamp: bool) -> Option<String> {
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                if parts.pop().is_none() && !clamp {
                    return None;
                }
            }
            _ => parts.push(part),
        }
    }
    Some(parts.join("/"))
}

/// The parent of a canonical path (the root's children have the root, `""`).
fn parent(path: &str) -> &str {
    path.rsplit_once('/').map_or("", |(dir, _)| dir)
}

/// The directory view of an archive: what the Linux kernel would unpack into
/// its initramfs, indexed by canonical path (no leading `/`, no `.` or `..`
/// components; the root is `""`).
///
/// * **Duplicate paths:** the later entry wins, as in Linux
///   (`init/initramfs.c`: `do_name` removes an existing path of another
///   type, re-opens regular files with `O_TRUNC` and re-applies owner and
///   mode to directories). Replacing a directory that has entries under it
///   with a non-directory is refused (Linux's `rmdir` would fail there,
///   leaving a mixture). One deliberate difference: for two device nodes,
///   FIFOs or sockets of the same type at one path Linux keeps the first
///   (its `mknod` fails with `EEXIST`); here the later wins, as for every
///   other type.
/// * **Hard links:** regular files with `c_nlink` ≥ 2 that share
///   (`c_devmajor`, `c_devminor`, `c_ino`) are one file. Writers store the
///   data once, usually with the last member (GNU cpio) and give the others
///   a size of 0; Linux links each later member to the first and writes any
///   non-empty data into the shared inode. So every member here reads the
///   data of the group's last member that has any (the rest of its header,
///   mode and owner included, stays its own).
/// * **Parents:** an entry's parent must be a directory of the view once the
///   whole archive is read (the root always is), wherever it comes in the
///   archive: `find . -depth` lists a directory after its contents. Missing
///   parents are not made up, and symlinks are not followed for them.
#[derive(Clone, Debug)]
pub struct Archive<'a> {
    /// The live entries, in order of first appearance; a later duplicate
    /// replaces its predecessor in place.
    entries: Vec<Entry<'a>>,
    /// Canonical path to index in `entries`.
    index: BTreeMap<String, usize>,
}

impl<'a> Archive<'a> {
    /// Reads and checks a whole archive.
    pub fn parse(bytes: &'a [u8]) -> Result<Self, CpioError> {
        let mut archive = Archive {
            entries: Vec::new(),
            index: BTreeMap::new(),
        };
        // Hard-link group -> the data of its last member that has any.
        let mut link_data: BTreeMap<(u32, u32, u32), &'a [u8]> = BTreeMap::new();
        for entry in entries(bytes) {
            let entry = entry?;
            if is_linked(&entry) && !entry.data.is_empty() {
                link_data.insert(link_key(&entry), entry.data);
            }
            archive.insert(entry)?;
        }
        // Parents, now that every directory is known: the first entry (in
        // archive order) whose parent is not a directory is the one named.
        let orphan = archive
            .index
            .iter()
            .filter(|(path, _)| {
                let parent = parent(path);
                !path.is_empty()
                    && !parent.is_empty()
                    && !archive.get(parent).is_some_and(|dir| dir.is_dir())
            })
            .filter_map(|(_, &i)| archive.entries.get(i).map(|e| e.offset))
            .min();
        if let Some(offset) = orphan {
            return Err(CpioError::MissingParent { offset });
        }
        for entry in archive.entries.iter_mut().filter(|e| is_linked(e)) {
            if let Some(data) = link_data.get(&link_key(entry)) {
                entry.data = data;
            }
        }
        Ok(archive)
    }

    fn insert(&mut self, entry: Entry<'a>) -> Result<(), CpioError> {
        let offset = entry.offset;
        let path = canonical(entry.name, false).ok_or(CpioError::PathEscapesRoot { offset })?;
        if path.is_empty() && !entry.is_dir() {
            return Err(CpioError::RootNotDirectory { offset });
        }
        match self.index.get(&path) {
            Some(&i) => {
                if self.entries[i].is_dir() && !entry.is_dir() && self.has_children(&path) {
                    return Err(CpioError::ReplacesNonEmptyDirectory { offset });
                }
                self.entries[i] = entry;
            }
            None => {
                self.index.insert(path, self.entries.len());
                self.entries.push(entry);
            }
        }
        Ok(())
    }

    fn get(&self, canonical_path: &str) -> Option<&Entry<'a>> {
        self.index
            .get(canonical_path)
            .and_then(|&i| self.entries.get(i))
    }

    /// The canonical paths under directory `dir` (`""` for the root), at any
    /// depth, in path order, relative to `dir`.
    fn descendants<'s>(&'s self, dir: &str) -> impl Iterator<Item = &'s str> + use<'s, 'a> {
        let prefix = if dir.is_empty() {
            String::new()
        } else {
            alloc::format!("{dir}/")
        };
        let skip = prefix.len();
        self.index
            .range::<str, _>((Bound::Included(prefix.as_str()), Bound::Unbounded))
            .take_while(move |(path, _)| path.starts_with(prefix.as_str()))
            .filter_map(move |(path, _)| path.get(skip..))
            .filter(|rest| !rest.is_empty())
    }

    fn has_children(&self, dir: &str) -> bool {
        self.descendants(dir).next().is_some()
    }

    /// The entry at `path`, resolving `.` and `..` lexically (`..` at the
    /// root stays at the root) and ignoring leading and repeated slashes.
    /// Symbolic links are not followed. The root has an entry only if the
    /// archive holds one (`.`).
    pub fn lookup(&self, path: &str) -> Option<&Entry<'a>> {
        self.get(&canonical(path, true)?)
    }

    /// The names directly under directory `dir` (resolved as by
    /// [`Archive::lookup`]), sorted; `None` if `dir` is not a directory. The
    /// root is always a directory, even when the archive has no `.` entry.
    pub fn list(&self, dir: &str) -> Option<Vec<&str>> {
        let dir = canonical(dir, true)?;
        if !dir.is_empty() && !self.get(&dir)?.is_dir() {
            return None;
        }
        Some(
            self.descendants(&dir)
                .filter(|rest| !rest.contains('/'))
                .collect(),
        )
    }

    /// Every entry with its canonical path, in path order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Entry<'a>)> {
        self.index
            .iter()
            .filter_map(|(path, &i)| Some((path.as_str(), self.entries.get(i)?)))
    }

    /// The number of paths in the view.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the view is empty (an archive holding only its trailer).
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// Whether an entry is a member of a hard-link group.
fn is_linked(entry: &Entry<'_>) -> bool {
    entry.is_file() && entry.nlink >= 2
}

/// What identifies a hard-link group (Linux `find_link` also compares the
/// file type, always "regular" here).
fn link_key(entry: &Entry<'_>) -> (u32, u32, u32) {
    (entry.dev_major, entry.dev_minor, entry.ino)
}

/// The entry at `path` in the directory view of `archive` (see [`Archive`]:
/// the last entry for a path wins, hard links share their data, `.` and `..`
/// are resolved). The whole archive is checked, so any fault in it is an
/// error even if `path` comes before it.
pub fn find<'a>(archive: &'a [u8], path: &str) -> Result<Option<Entry<'a>>, CpioError> {
    Ok(Archive::parse(archive)?.lookup(path).copied())
}

/// The name of the entry whose header starts at `offset` in `archive`, if
/// the archive reads well up to it: to name the entry an error is about
/// (errors themselves give offsets, which an operator cannot look up).
pub fn name_at(archive: &[u8], offset: usize) -> Option<&str> {
    for entry in entries(archive) {
        let entry = entry.ok()?;
        if entry.offset == offset {
            return Some(entry.name);
        }
        if entry.offset > offset {
            return None;
        }
    }
    None
}

/// The smallest ELF program [`build`] puts on a page of its own.
pub const PAGE_ALIGNED_MIN: usize = 4096;

/// The header values the writer sets.
#[derive(Clone, Copy, Debug, Default)]
struct Header {
    ino: u32,
    mode: u32,
    nlink: u32,
    check: u32,
}

/// Writes a "newc" archive holding `files`, each a path, a mode (type and
/// permissions: `S_IFDIR | 0o755`, `S_IFREG | 0o644`, `S_IFLNK | 0o777`
/// with the target as data) and its data, in the order given, then the
/// trailer. Everything else is fixed so the output is reproducible: inode
/// numbers count from 1, owner and times are 0, a directory has 2 links and
/// everything else 1. Every parent must be in `files` (anywhere) for
/// [`Archive`] to accept the result.
///
/// # Panics
///
/// **Programs start on a page.** The data of a regular file that is an ELF
/// program of a page or more starts at an offset that is a multiple of
/// 4096: a padding entry of the same name (zeros, replaced by the real one
/// right after it, as Linux and [`Archive`] unpack later entries over
/// earlier ones) goes before it. With the archive itself on a page, as the
/// dom0 builder puts it, dom0's kernel then loads every whole page of a
/// program by copying the initrd's frame (`MMUEXT_COPY_PAGE`) and maps it
/// with its final protection at once.
///
/// # Panics
///
/// If a path is empty or holds a NUL, or a path or data does not fit a
/// 32-bit size: the writer's input comes from the build, not from a guest.
pub fn build(files: &[(&str, u32, &[u8])]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut ino = 0u32;
    let mut next_ino = || {
        ino += 1;
        ino
    };
    for &(name, mode, data) in files {
        let nlink = if mode & S_IFMT == S_IFDIR { 2 } else { 1 };
        if mode & S_IFMT == S_IFREG
            && data.len() >= PAGE_ALIGNED_MIN
            && data.starts_with(b"\x7fELF")
        {
            // Each header plus name takes `h` bytes; the padding's data `p` puts the real
            // entry's data (at `out.len() + 2h + p`) on a page.
            let h = (HEADER_LEN + name.len() + 1).next_multiple_of(4);
            let p = (4096 - (out.len() + 2 * h) % 4096) % 4096;
            let pad_header = Header {
                ino: next_ino(),
                mode,
                nlink,
                check: 0,
            };
            write_entry(&mut out, MAGIC_NEWC, pad_header, name, &alloc::vec![0; p]);
        }
        let header = Header {
            ino: next_ino(),
            mode,
            nlink,
            check: 0,
        };
        write_entry(&mut out, MAGIC_NEWC, header, name, data);
    }
    let trailer = Header {
        nlink: 1,
        ..Header::default()
    };
    write_entry(&mut out, MAGIC_NEWC, trailer, TRAILER, &[]);
    out
}

fn write_entry(out: &mut Vec<u8>, magic: &[u8; 6], h: Header, name: &str, data: &[u8]) {
    assert!(
        !name.is_empty() && !name.contains('\0'),
        "cpio: bad name {name:?}"
    );
    let namesize = u32::try_from(name.len() + 1).expect("cpio: name too long");
    let filesize = u32::try_from(data.len()).expect("cpio: file too large");
    out.extend_from_slice(magic);
    let fields = [
        h.ino, h.mode, 0, 0, h.nlink, 0, filesize, 0, 0, 0, 0, namesize, h.check,
    ];
    for field in fields {
        out.extend_from_slice(alloc::format!("{field:08X}").as_bytes());
    }
    out.extend_from_slice(name.as_bytes());
    out.push(0);
    pad(out);
    out.extend_from_slice(data);
    pad(out);
}

fn pad(out: &mut Vec<u8>) {
    out.resize(out.len().next_multiple_of(4), 0);
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::ToString;
    use alloc::vec;

    const FILE: u32 = S_IFREG | 0o644;
    const DIR: u32 = S_IFDIR | 0o755;
    const LINK: u32 = S_IFLNK | 0o777;

    /// `build(&[("hello", FILE, b"hi\n")])`, laid out by hand.
    #[rustfmt::skip]
    const HELLO: &str = concat!(
        // Offset 0: the file. 110 + 6 = 116, already aligned.
        "070701", "00000001", "000081A4", "00000000", "00000000", "00000001", "00000000", "00000003",
        "00000000", "00000000", "00000000", "00000000", "00000006", "00000000",
        "hello\0",
        // Offset 116: 3 bytes of data and 1 of padding.
        "hi\n\0",
        // Offset 120: the trailer. 120 + 110 + 11 = 241, padded to 244.
        "070701", "00000000", "00000000", "00000000", "00000000", "00000001", "00000000", "00000000",
        "00000000", "00000000", "00000000", "00000000", "0000000B", "00000000",
        "TRAILER!!!\0", "\0\0\0",
    );

    /// What `find . | cpio -o -H newc` writes for a small tree, laid out by
    /// hand: lower-case hex, a `.` entry, a symlink, and the zero fill to a
    /// 512-byte block after the trailer (added by [`gnu_archive`]).
    #[rustfmt::skip]
    const GNU: &str = concat!(
        // Offset 0: ".", 110 + 2 = 112.
        "070701", "00b4c8a1", "000041ed", "000003e8", "000003e8", "00000003", "66a0f1c0", "00000000",
        "00000008", "00000001", "00000000", "00000000", "00000002", "00000000",
        ".\0",
        // Offset 112: "etc", 112 + 110 + 4 = 226, padded to 228.
        "070701", "00b4c8a2", "000041ed", "000003e8", "000003e8", "00000002", "66a0f1c0", "00000000",
        "00000008", "00000001", "00000000", "00000000", "00000004", "00000000",
        "etc\0", "\0\0",
        // Offset 228: "etc/motd", 228 + 110 + 9 = 347, padded to 348, then
        // 12 bytes of data to 360.
        "070701", "00b4c8a3", "000081a4", "000003e8", "000003e8", "00000001", "66a0f1c0", "0000000c",
        "00000008", "00000001", "00000000", "00000000", "00000009", "00000000",
        "etc/motd\0", "\0", "hello, dom0\n",
        // Offset 360: "etc/link" -> "motd", 360 + 110 + 9 = 479, padded to
        // 480, then 4 bytes of data to 484.
        "070701", "00b4c8a4", "0000a1ff", "000003e8", "000003e8", "00000001", "66a0f1c0", "00000004",
        "00000008", "00000001", "00000000", "00000000", "00000009", "00000000",
        "etc/link\0", "\0", "motd",
        // Offset 484: the trailer, 484 + 110 + 11 = 605, padded to 608.
        "070701", "00000000", "00000000", "00000000", "00000000", "00000001", "00000000", "00000000",
        "00000000", "00000000", "00000000", "00000000", "0000000b", "00000000",
        "TRAILER!!!\0", "\0\0\0",
    );

    /// A "crc" archive: file "a" holding "AB" (0x41 + 0x42 = 0x83).
    #[rustfmt::skip]
    const CRC: &str = concat!(
        "070702", "00000001", "000081a4", "00000000", "00000000", "00000001", "00000000", "00000002",
        "00000000", "00000000", "00000000", "00000000", "00000002", "00000083",
        "a\0", "AB\0\0",
        // Offset 116: the trailer, 116 + 121 = 237, padded to 240.
        "070702", "00000000", "00000000", "00000000", "00000000", "00000001", "00000000", "00000000",
        "00000000", "00000000", "00000000", "00000000", "0000000b", "00000000",
        "TRAILER!!!\0", "\0\0\0",
    );

    fn gnu_archive() -> Vec<u8> {
        let mut bytes = GNU.as_bytes().to_vec();
        bytes.resize(512 * 2, 0);
        bytes
    }

    fn all(archive: &[u8]) -> Result<Vec<Entry<'_>>, CpioError> {
        entries(archive).collect()
    }

    fn err(archive: &[u8]) -> CpioError {
        match all(archive) {
            Err(e) => e,
            Ok(v) => panic!("accepted: {v:?}"),
        }
    }

    /// The header offset of field `i` in the entry starting at `at`.
    fn field_at(at: usize, i: usize) -> usize {
        at + MAGIC_LEN + i * FIELD_LEN
    }

    /// `archive` with field `i` of the entry at `at` set to `value`.
    fn with_field(archive: &[u8], at: usize, i: usize, value: &[u8]) -> Vec<u8> {
        let mut bytes = archive.to_vec();
        let start = field_at(at, i);
        bytes[start..start + FIELD_LEN].copy_from_slice(value);
        bytes
    }

    /// One entry with raw name bytes (NUL included) and explicit header
    /// values, followed by a trailer.
    fn raw_archive(magic: &[u8; 6], mode: u32, name: &[u8], data: &[u8], check: u32) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(magic);
        let fields = [
            1,
            mode,
            0,
            0,
            1,
            0,
            data.len() as u32,
            0,
            0,
            0,
            0,
            name.len() as u32,
            check,
        ];
        for field in fields {
            out.extend_from_slice(alloc::format!("{field:08x}").as_bytes());
        }
        out.extend_from_slice(name);
        pad(&mut out);
        out.extend_from_slice(data);
        pad(&mut out);
        write_entry(&mut out, MAGIC_NEWC, Header::default(), TRAILER, &[]);
        out
    }

    #[test]
    fn writer_matches_hand_checked_bytes() {
        let built = build(&[("hello", FILE, b"hi\n")]);
        assert_eq!(built, HELLO.as_bytes());
        assert_eq!(built.len(), 244);
    }

    #[test]
    fn reads_hand_checked_newc() {
        let archive = gnu_archive();
        let got = all(&archive).unwrap();
        let names: Vec<_> = got.iter().map(|e| (e.name, e.offset)).collect();
        assert_eq!(
            names,
            [("", 0), ("etc", 112), ("etc/motd", 228), ("etc/link", 360)]
        );
        let motd = got[2];
        assert_eq!(motd.ino, 0x00b4_c8a3);
        assert_eq!(motd.mode, S_IFREG | 0o644);
        assert_eq!((motd.uid, motd.gid, motd.nlink), (1000, 1000, 1));
        assert_eq!(motd.mtime, 0x66a0_f1c0);
        assert_eq!((motd.dev_major, motd.dev_minor), (8, 1));
        assert_eq!((motd.rdev_major, motd.rdev_minor), (0, 0));
        assert_eq!(motd.data, b"hello, dom0\n");
        assert!(motd.is_file() && !motd.is_dir() && !motd.is_symlink());
        assert_eq!(motd.permissions(), 0o644);
        assert!(got[0].is_dir() && got[1].is_dir());
        assert_eq!(got[3].link_target(), Some("motd"));
        assert_eq!(motd.link_target(), None);

        let view = Archive::parse(&archive).unwrap();
        assert_eq!(view.len(), 4);
        assert_eq!(view.list("/").unwrap(), ["etc"]);
        assert_eq!(view.list("etc").unwrap(), ["link", "motd"]);
        assert!(view.lookup("/").unwrap().is_dir());
        assert_eq!(
            find(&archive, "/etc/motd").unwrap().unwrap().data,
            b"hello, dom0\n"
        );
    }

    #[test]
    fn reads_and_verifies_crc() {
        let got = all(CRC.as_bytes()).unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!((got[0].name, got[0].data), ("a", &b"AB"[..]));

        let bad = with_field(CRC.as_bytes(), 0, 12, b"00000084");
        assert_eq!(
            err(&bad),
            CpioError::ChecksumMismatch {
                offset: 0,
                expected: 0x84,
                computed: 0x83
            }
        );
        // The checksum is the sum of the data, modulo 2^32, and 0 with none.
        assert_eq!(checksum(&[0xff; 3]), 0x2fd);
        assert_eq!(checksum(&[]), 0);
        let dir = raw_archive(MAGIC_CRC, DIR, b"d\0", b"", 0);
        assert!(all(&dir).is_ok());
        let dir = raw_archive(MAGIC_CRC, DIR, b"d\0", b"", 1);
        assert!(matches!(err(&dir), CpioError::ChecksumMismatch { .. }));
        // In "newc", c_check is not a checksum and is ignored.
        let newc = raw_archive(MAGIC_NEWC, FILE, b"a\0", b"AB", 0x1234);
        assert!(all(&newc).is_ok());
    }

    #[test]
    fn round_trips_through_the_writer() {
        let big: Vec<u8> = (0..=255u8).cycle().take(1027).collect();
        let files: &[(&str, u32, &[u8])] = &[
            (".", DIR, b""),
            ("bin", DIR, b""),
            ("bin/xl", S_IFREG | 0o755, &big),
            ("etc", DIR, b""),
            ("etc/xen", DIR, b""),
            ("etc/xen/a.cfg", FILE, b"name = \"a\"\n"),
            ("etc/xen/empty.cfg", FILE, b""),
            ("etc/xen/b.cfg", LINK, b"a.cfg"),
            ("dev", DIR, b""),
            ("dev/console", S_IFCHR | 0o600, b""),
        ];
        // Names of every length modulo 4 and data of every length modulo 4.
        let mut names = Vec::new();
        for n in 1..=8 {
            names.push("x".repeat(n));
        }
        let mut files = files.to_vec();
        for (i, name) in names.iter().enumerate() {
            files.push((name, FILE, &big[..i]));
        }
        let archive = build(&files);
        assert_eq!(archive.len() % 4, 0);
        let got = all(&archive).unwrap();
        assert_eq!(got.len(), files.len());
        for (i, (entry, &(name, mode, data))) in got.iter().zip(&files).enumerate() {
            assert_eq!(entry.name, strip_root(name));
            assert_eq!(entry.mode, mode);
            assert_eq!(entry.data, data);
            assert_eq!(entry.ino as usize, i + 1);
            assert_eq!(entry.offset % 4, 0);
        }
        let view = Archive::parse(&archive).unwrap();
        assert_eq!(view.lookup("/bin/xl").unwrap().data, &big[..]);
        assert_eq!(
            view.lookup("etc/xen/b.cfg").unwrap().link_target(),
            Some("a.cfg")
        );
        assert_eq!(view.iter().count(), files.len());
        // An archive holding only its trailer.
        let empty = build(&[]);
        assert!(all(&empty).unwrap().is_empty());
        assert!(Archive::parse(&empty).unwrap().is_empty());
        assert_eq!(Archive::parse(&empty).unwrap().list("/").unwrap().len(), 0);
    }

    #[test]
    fn names_lose_their_leading_root() {
        assert_eq!(strip_root("/etc/x"), "etc/x");
        assert_eq!(strip_root("./etc/x"), "etc/x");
        assert_eq!(strip_root(".//./etc"), "etc");
        assert_eq!(strip_root("."), "");
        assert_eq!(strip_root("/"), "");
        assert_eq!(strip_root("./"), "");
        assert_eq!(strip_root(".x"), ".x");
        assert_eq!(strip_root("..x"), "..x");
        let archive = build(&[("/etc", DIR, b""), ("./etc/x", FILE, b"1")]);
        let names: Vec<_> = all(&archive).unwrap().iter().map(|e| e.name).collect();
        assert_eq!(names, ["etc", "etc/x"]);
    }

    #[test]
    fn directory_view() {
        let archive = build(&[
            ("a", DIR, b""),
            ("a/b", DIR, b""),
            ("a/b/c", FILE, b"c"),
            ("a/b2", FILE, b"b2"),
            ("a.txt", FILE, b"t"),
            ("z", LINK, b"a/b"),
        ]);
        let view = Archive::parse(&archive).unwrap();
        assert_eq!(view.list("").unwrap(), ["a", "a.txt", "z"]);
        assert_eq!(view.list("/a").unwrap(), ["b", "b2"]);
        assert_eq!(view.list("a/b/").unwrap(), ["c"]);
        assert_eq!(view.list("a/./b/../b").unwrap(), ["c"]);
        assert_eq!(view.list("a/b/c"), None, "a file is not a directory");
        assert_eq!(view.list("nope"), None);
        assert_eq!(view.list("z"), None, "symlinks are not followed");
        assert_eq!(view.list("/../../.."), view.list("/"));

        assert_eq!(view.lookup("a/b/c").unwrap().data, b"c");
        assert_eq!(view.lookup("//a//b/./c").unwrap().data, b"c");
        assert_eq!(view.lookup("a/b/../b2").unwrap().data, b"b2");
        assert_eq!(view.lookup("../../a/b2").unwrap().data, b"b2");
        assert_eq!(view.lookup("a/../../../a.txt").unwrap().data, b"t");
        assert_eq!(view.lookup("z/c"), None, "symlinks are not followed");
        assert_eq!(view.lookup("z").unwrap().link_target(), Some("a/b"));
        assert_eq!(view.lookup("a/b/c/"), view.lookup("a/b/c"));
        assert_eq!(view.lookup("A"), None);
        // Without a "." entry the root has no entry but is listable.
        assert_eq!(view.lookup("/"), None);
        assert_eq!(view.lookup(".."), None);

        let paths: Vec<_> = view.iter().map(|(p, _)| p).collect();
        assert_eq!(paths, ["a", "a.txt", "a/b", "a/b/c", "a/b2", "z"]);
    }

    #[test]
    fn stored_names_are_canonicalised() {
        let archive = build(&[
            ("a", DIR, b""),
            ("a/./b", FILE, b"1"),
            ("a//c", FILE, b"2"),
            ("a/b/../d", FILE, b"3"),
        ]);
        let view = Archive::parse(&archive).unwrap();
        assert_eq!(view.list("a").unwrap(), ["b", "c", "d"]);
        // The entry keeps its stored name; the view's path is canonical.
        assert_eq!(view.lookup("a/d").unwrap().name, "a/b/../d");

        let escape = build(&[("../etc", DIR, b"")]);
        assert_eq!(
            Archive::parse(&escape).unwrap_err(),
            CpioError::PathEscapesRoot { offset: 0 }
        );
        let escape = build(&[("a", DIR, b""), ("a/../../b", FILE, b"")]);
        assert!(matches!(
            Archive::parse(&escape),
            Err(CpioError::PathEscapesRoot { .. })
        ));
    }

    #[test]
    fn later_duplicates_win() {
        let archive = build(&[
            ("f", FILE, b"old"),
            ("d", DIR, b""),
            ("f", S_IFREG | 0o600, b"new"),
            ("d", S_IFDIR | 0o700, b""),
            ("e", DIR, b""),
            ("e", FILE, b"was an empty directory"),
            ("g", FILE, b"was a file"),
            ("g", DIR, b""),
            ("g/x", FILE, b"x"),
        ]);
        // The raw walk shows every entry ...
        assert_eq!(all(&archive).unwrap().len(), 9);
        // ... the view the last of each.
        let view = Archive::parse(&archive).unwrap();
        assert_eq!(view.len(), 5);
        let f = view.lookup("f").unwrap();
        assert_eq!((f.data, f.mode), (&b"new"[..], S_IFREG | 0o600));
        assert_eq!(view.lookup("d").unwrap().mode, S_IFDIR | 0o700);
        assert!(view.lookup("e").unwrap().is_file());
        assert_eq!(view.list("g").unwrap(), ["x"]);
        assert_eq!(find(&archive, "f").unwrap().unwrap().data, b"new");
        assert_eq!(view.list("").unwrap(), ["d", "e", "f", "g"]);

        let archive = build(&[("d", DIR, b""), ("d/x", FILE, b""), ("d", FILE, b"")]);
        let offset = all(&archive).unwrap()[2].offset;
        assert_eq!(
            Archive::parse(&archive).unwrap_err(),
            CpioError::ReplacesNonEmptyDirectory { offset }
        );
        // A directory replacing a non-empty directory keeps its children.
        let archive = build(&[("d", DIR, b""), ("d/x", FILE, b""), ("d", DIR, b"")]);
        assert_eq!(Archive::parse(&archive).unwrap().list("d").unwrap(), ["x"]);
    }

    /// Entries with explicit link fields, as GNU cpio writes a hard-link
    /// group: every member with the same (dev, ino), nlink = group size, and
    /// the data only with the last.
    fn linked(members: &[(&str, u32, &[u8])]) -> Vec<u8> {
        let mut out = Vec::new();
        for &(name, ino, data) in members {
            let header = Header {
                ino,
                mode: FILE,
                nlink: 2,
                check: 0,
            };
            write_entry(&mut out, MAGIC_NEWC, header, name, data);
        }
        write_entry(&mut out, MAGIC_NEWC, Header::default(), TRAILER, &[]);
        out
    }

    #[test]
    fn hard_links_share_the_last_data() {
        let archive = linked(&[
            ("a", 7, b""),
            ("b", 9, b"other group"),
            ("c", 7, b""),
            ("d", 7, b"shared"),
            ("e", 8, b""),
        ]);
        // The raw walk shows what is stored ...
        let raw = all(&archive).unwrap();
        assert_eq!(raw[0].data, b"");
        assert_eq!(raw[3].data, b"shared");
        // ... the view what Linux would unpack.
        let view = Archive::parse(&archive).unwrap();
        for path in ["a", "c", "d"] {
            assert_eq!(view.lookup(path).unwrap().data, b"shared", "{path}");
        }
        assert_eq!(view.lookup("b").unwrap().data, b"other group");
        assert_eq!(view.lookup("e").unwrap().data, b"", "a lone member");
        assert_eq!(find(&archive, "a").unwrap().unwrap().data, b"shared");

        // The last member with data wins; empty members do not truncate.
        let archive = linked(&[("a", 1, b"first"), ("b", 1, b"second"), ("c", 1, b"")]);
        let view = Archive::parse(&archive).unwrap();
        for path in ["a", "b", "c"] {
            assert_eq!(view.lookup(path).unwrap().data, b"second", "{path}");
        }

        // nlink = 1 means no group, even with the same inode number.
        let archive = build(&[("x", FILE, b"1"), ("y", FILE, b"")]);
        let archive = with_field(&archive, all(&archive).unwrap()[1].offset, 0, b"00000001");
        let view = Archive::parse(&archive).unwrap();
        assert_eq!(view.lookup("y").unwrap().data, b"");
    }

    #[test]
    fn parents_must_be_directories() {
        for files in [
            &[("a/b", FILE, &b""[..])][..],
            &[("a", FILE, b""), ("a/b", FILE, b"")],
            &[("d", DIR, b""), ("a", LINK, b"d"), ("a/b", FILE, b"")],
            &[("a/b", FILE, b""), ("a", FILE, b"")],
        ] {
            let archive = build(files);
            let offset = all(&archive)
                .unwrap()
                .into_iter()
                .find(|e| e.name == "a/b")
                .unwrap()
                .offset;
            assert_eq!(
                Archive::parse(&archive).unwrap_err(),
                CpioError::MissingParent { offset },
                "{files:?}"
            );
            assert_eq!(
                find(&archive, "a/b").unwrap_err(),
                CpioError::MissingParent { offset }
            );
        }
        let archive = build(&[(".", FILE, b"")]);
        assert_eq!(
            Archive::parse(&archive).unwrap_err(),
            CpioError::RootNotDirectory { offset: 0 }
        );
        let archive = build(&[(".", DIR, b""), ("/", S_IFDIR | 0o700, b"")]);
        let view = Archive::parse(&archive).unwrap();
        assert_eq!(view.lookup(".").unwrap().mode, S_IFDIR | 0o700);
        assert_eq!(view.len(), 1);
    }

    /// `find . -depth | cpio -o -H newc` (cpio(1)'s own example) lists a
    /// directory after everything in it: the same view as parents first.
    #[test]
    fn any_order_reads_the_same() {
        let depth_first = build(&[
            ("etc/xen/hello.cfg", FILE, b"name=1"),
            ("etc/xen", DIR, b""),
            ("bin/xl", FILE, b"\x7fELF"),
            ("bin", DIR, b""),
            ("etc", DIR, b""),
            (".", DIR, b""),
        ]);
        let view = Archive::parse(&depth_first).unwrap();
        assert_eq!(view.lookup("/etc/xen/hello.cfg").unwrap().data, b"name=1");
        assert_eq!(view.list("/").unwrap(), ["bin", "etc"]);
        assert_eq!(view.list("etc").unwrap(), ["xen"]);
        assert_eq!(view.len(), 6);
        // The entry an error names, by its offset.
        let entries = all(&depth_first).unwrap();
        assert_eq!(name_at(&depth_first, entries[2].offset), Some("bin/xl"));
        assert_eq!(name_at(&depth_first, entries[2].offset + 1), None);
        let orphan = build(&[("etc/xen/x.cfg", FILE, b""), ("etc", DIR, b"")]);
        let Err(CpioError::MissingParent { offset }) = Archive::parse(&orphan) else {
            panic!("a parent nowhere in the archive");
        };
        assert_eq!(name_at(&orphan, offset), Some("etc/xen/x.cfg"));
        let e = Archive::parse(&orphan).unwrap_err();
        assert_eq!(where_in(&orphan, &e), "the entry \"etc/xen/x.cfg\"");
        // A header that does not read: the entry before it is named.
        let bad = with_field(&depth_first, entries[3].offset, 1, b"0000000g");
        let e = Archive::parse(&bad).unwrap_err();
        assert_eq!(where_in(&bad, &e), "after the entry \"bin/xl\"", "{e}");
    }

    #[test]
    fn find_answers_one_path() {
        let archive = gnu_archive();
        assert_eq!(find(&archive, "etc/nope"), Ok(None));
        assert_eq!(find(&archive, "./etc/link").unwrap().unwrap().data, b"motd");
        // A fault anywhere in the archive fails the search.
        let broken = &archive[..400];
        assert!(matches!(
            find(broken, "etc/motd"),
            Err(CpioError::Truncated { .. })
        ));
    }

    #[test]
    fn trailer_ends_the_archive() {
        // Anything after the trailer is ignored, even another archive.
        let mut archive = build(&[("a", FILE, b"1")]);
        archive.extend_from_slice(&build(&[("b", FILE, b"2")]));
        archive.extend_from_slice(b"garbage");
        let names: Vec<_> = all(&archive).unwrap().iter().map(|e| e.name).collect();
        assert_eq!(names, ["a"]);
        // The trailer's header fields are not checked (only its name is).
        let odd = with_field(&archive, 116, 1, b"ffffffff");
        let odd = with_field(&odd, 116, 6, b"00001000");
        assert_eq!(all(&odd).unwrap().len(), 1);
    }

    #[test]
    fn refuses_missing_trailer() {
        assert_eq!(err(b""), CpioError::MissingTrailer { offset: 0 });
        let archive = build(&[("a", FILE, b"1")]);
        // 110 + 2 bytes of header and name, 1 of data and 3 of padding.
        let cut = &archive[..116];
        assert_eq!(err(cut), CpioError::MissingTrailer { offset: 116 });
    }

    #[test]
    fn refuses_truncation_naming_the_offset() {
        let archive = HELLO.as_bytes();
        let cut = |offset, part, needed, available| CpioError::Truncated {
            offset,
            part,
            needed,
            available,
        };
        let cases = [
            (50, cut(0, Part::Header, 110, 50)),
            (113, cut(110, Part::Name, 6, 3)),
            (117, cut(116, Part::Data, 3, 1)),
            (119, cut(119, Part::Padding, 1, 0)),
            (200, cut(120, Part::Header, 110, 80)),
            (235, cut(230, Part::Name, 11, 5)),
            (242, cut(241, Part::Padding, 3, 1)),
        ];
        for (len, want) in cases {
            assert_eq!(err(&archive[..len]), want, "cut at {len}");
        }
        // Every cut short of the end is refused, never accepted or a panic.
        for len in 0..archive.len() {
            assert!(all(&archive[..len]).is_err(), "cut at {len}");
        }
        // A size that points past the end, including one that would
        // overflow the offset arithmetic.
        for size in [b"00000100", b"ffffffff"] {
            let bad = with_field(archive, 0, 6, size);
            assert!(
                matches!(
                    err(&bad),
                    CpioError::Truncated {
                        offset: 116,
                        part: Part::Data,
                        ..
                    }
                ),
                "{:?}",
                err(&bad)
            );
        }
        let bad = with_field(archive, 0, 11, b"00000fff");
        assert!(matches!(
            err(&bad),
            CpioError::Truncated {
                offset: 110,
                part: Part::Name,
                ..
            }
        ));
    }

    #[test]
    fn refuses_bad_magic() {
        for magic in [b"070707", b"070700", b"070703", b"707010", b"\0\0\0\0\0\0"] {
            let mut bad = HELLO.as_bytes().to_vec();
            bad[..6].copy_from_slice(magic);
            assert_eq!(err(&bad), CpioError::BadMagic { offset: 0 });
        }
        let mut bad = HELLO.as_bytes().to_vec();
        bad[120..126].copy_from_slice(b"070707");
        assert_eq!(err(&bad), CpioError::BadMagic { offset: 120 });
    }

    #[test]
    fn refuses_fields_that_are_not_8_hex_digits() {
        let bad_values: [&[u8; 8]; 8] = [
            b"0000000g",
            b"0000000 ",
            b" 0000001",
            b"+0000001",
            b"-0000001",
            b"0x000001",
            b"0000\x00001",
            b"\xff0000000",
        ];
        for at in [0, 120] {
            for (i, field) in FIELD_NAMES.into_iter().enumerate() {
                for value in bad_values {
                    let bad = with_field(HELLO.as_bytes(), at, i, value);
                    assert_eq!(
                        err(&bad),
                        CpioError::BadField {
                            offset: field_at(at, i),
                            field
                        },
                        "field {i} = {value:?}"
                    );
                }
            }
        }
        // Either case is hex.
        assert_eq!(parse_hex(b"DeadBeef"), Some(0xdead_beef));
        assert_eq!(parse_hex(b"ffffffff"), Some(u32::MAX));
        assert_eq!(parse_hex(b"1234567"), None);
    }

    #[test]
    fn refuses_bad_names() {
        assert_eq!(
            err(&raw_archive(MAGIC_NEWC, FILE, b"\0", b"", 0)),
            CpioError::EmptyName { offset: 0 }
        );
        let zero = with_field(HELLO.as_bytes(), 0, 11, b"00000000");
        assert_eq!(err(&zero), CpioError::EmptyName { offset: 0 });
        assert_eq!(
            err(&raw_archive(MAGIC_NEWC, FILE, b"ab", b"", 0)),
            CpioError::NameNotTerminated { offset: 110 }
        );
        assert_eq!(
            err(&raw_archive(MAGIC_NEWC, FILE, b"a\0b\0", b"", 0)),
            CpioError::NameNotTerminated { offset: 110 }
        );
        assert_eq!(
            err(&raw_archive(MAGIC_NEWC, FILE, b"\xc3\x28\0", b"", 0)),
            CpioError::NameNotUtf8 { offset: 110 }
        );
        let mut long = "n".repeat(PATH_MAX).into_bytes();
        long.push(0);
        assert_eq!(
            err(&raw_archive(MAGIC_NEWC, FILE, &long, b"", 0)),
            CpioError::NameTooLong {
                offset: 0,
                size: PATH_MAX + 1
            }
        );
        long.truncate(PATH_MAX - 1);
        long.push(0);
        assert!(all(&raw_archive(MAGIC_NEWC, FILE, &long, b"", 0)).is_ok());
        // A namesize that disagrees with the NUL is caught either way.
        let longer = with_field(HELLO.as_bytes(), 0, 11, b"00000007");
        assert_eq!(err(&longer), CpioError::NameNotTerminated { offset: 110 });
        let shorter = with_field(HELLO.as_bytes(), 0, 11, b"00000005");
        assert_eq!(err(&shorter), CpioError::NameNotTerminated { offset: 110 });
        // Non-ASCII UTF-8 is fine.
        let archive = build(&[("état", FILE, b"")]);
        assert_eq!(all(&archive).unwrap()[0].name, "état");
    }

    #[test]
    fn refuses_bad_modes_and_data() {
        for mode in [0, 0o030644, 0o160644, 0o1100644, 0x8000_0000 | FILE] {
            assert_eq!(
                err(&raw_archive(MAGIC_NEWC, mode, b"a\0", b"", 0)),
                CpioError::BadMode { offset: 0, mode },
                "{mode:#o}"
            );
        }
        for mode in [S_IFDIR, S_IFCHR, S_IFBLK, S_IFIFO, S_IFSOCK] {
            assert!(all(&raw_archive(MAGIC_NEWC, mode | 0o7777, b"a\0", b"", 0)).is_ok());
            assert_eq!(
                err(&raw_archive(MAGIC_NEWC, mode | 0o755, b"a\0", b"x", 0)),
                CpioError::UnexpectedData { offset: 0 },
                "{mode:#o}"
            );
        }
        let long_target = "t".repeat(PATH_MAX + 1);
        for target in [&b""[..], b"a\0b", b"\xff", long_target.as_bytes()] {
            assert_eq!(
                err(&raw_archive(MAGIC_NEWC, LINK, b"l\0", target, 0)),
                CpioError::BadSymlink { offset: 112 }
            );
        }
        let max_target = "t".repeat(PATH_MAX);
        assert!(
            all(&raw_archive(
                MAGIC_NEWC,
                LINK,
                b"l\0",
                max_target.as_bytes(),
                0
            ))
            .is_ok()
        );
    }

    #[test]
    fn entry_limit() {
        let mut archive = Vec::new();
        let header = Header {
            ino: 1,
            mode: FILE,
            nlink: 1,
            check: 0,
        };
        for _ in 0..MAX_ENTRIES {
            write_entry(&mut archive, MAGIC_NEWC, header, "f", &[]);
        }
        let mut over = archive.clone();
        write_entry(&mut archive, MAGIC_NEWC, Header::default(), TRAILER, &[]);
        assert_eq!(entries(&archive).filter(Result::is_ok).count(), MAX_ENTRIES);
        assert!(entries(&archive).all(|e| e.is_ok()));
        let last = over.len();
        write_entry(&mut over, MAGIC_NEWC, header, "f", &[]);
        write_entry(&mut over, MAGIC_NEWC, Header::default(), TRAILER, &[]);
        assert_eq!(
            entries(&over).last().unwrap(),
            Err(CpioError::TooManyEntries { offset: last })
        );
        assert!(Archive::parse(&over).is_err());
    }

    #[test]
    fn errors_end_the_walk() {
        let mut archive = build(&[("a", FILE, b"1"), ("b", FILE, b"2")]);
        archive[116] = b'X';
        let mut walk = entries(&archive);
        assert!(walk.next().unwrap().is_ok());
        assert_eq!(walk.next(), Some(Err(CpioError::BadMagic { offset: 116 })));
        assert_eq!(walk.next(), None);
        assert_eq!(walk.next(), None);
    }

    #[test]
    fn errors_say_what_and_where() {
        let shown = CpioError::Truncated {
            offset: 0x74,
            part: Part::Data,
            needed: 3,
            available: 1,
        }
        .to_string();
        assert!(
            shown.contains("file data") && shown.contains("0x74"),
            "{shown}"
        );
        let shown = CpioError::BadField {
            offset: 0x1e,
            field: "c_filesize",
        }
        .to_string();
        assert!(
            shown.contains("c_filesize") && shown.contains("0x1e"),
            "{shown}"
        );
        let shown = CpioError::ChecksumMismatch {
            offset: 0,
            expected: 0x84,
            computed: 0x83,
        }
        .to_string();
        assert!(
            shown.contains("0x00000083") && shown.contains("0x00000084"),
            "{shown}"
        );
        let shown = CpioError::BadMode {
            offset: 4,
            mode: 0o30644,
        }
        .to_string();
        assert!(shown.contains("0o30644"), "{shown}");
    }

    /// xorshift64: deterministic, so a failure reproduces.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }

        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }
    }

    #[test]
    fn mutated_archives_never_panic() {
        let bases = [
            gnu_archive(),
            CRC.as_bytes().to_vec(),
            HELLO.as_bytes().to_vec(),
            linked(&[("a", 1, b""), ("b", 1, b"data")]),
            build(&[
                (".", DIR, b""),
                ("d", DIR, b""),
                ("d/f", FILE, b"0123456789"),
                ("d/l", LINK, b"f"),
                ("d/f", FILE, b"again"),
            ]),
        ];
        let interesting: &[u8] = b"0123456789abcdefABCDEFgxX/.\0\xff!";
        let mut rng = Rng(0x5eed_0fd0_0dc0_de01);
        let (mut accepted, mut refused) = (0, 0);
        for round in 0..20_000 {
            let mut bytes = bases[round % bases.len()].clone();
            for _ in 0..1 + rng.below(4) {
                let len = bytes.len();
                match rng.below(6) {
                    0 => bytes[rng.below(len)] = rng.next() as u8,
                    1 => bytes[rng.below(len)] = interesting[rng.below(interesting.len())],
                    2 => bytes.truncate(rng.below(len + 1)),
                    3 => {
                        // A whole header field set to random hex digits.
                        let at = rng.below(len) & !3;
                        let value = alloc::format!("{:08x}", rng.next() as u32);
                        let end = (at + 8).min(len);
                        bytes[at..end].copy_from_slice(&value.as_bytes()[..end - at]);
                    }
                    4 => {
                        let at = rng.below(len + 1);
                        let n = rng.below(8);
                        bytes.splice(at..at, (0..n).map(|_| rng.next() as u8));
                    }
                    _ => {
                        let at = rng.below(len + 1);
                        let n = rng.below(8).min(len - at);
                        bytes.drain(at..at + n);
                    }
                }
                if bytes.is_empty() {
                    bytes.push(b'0');
                }
            }
            for entry in entries(&bytes) {
                match entry {
                    Ok(e) => {
                        assert!(e.offset % 4 == 0 && e.offset < bytes.len());
                        let _ = (e.is_dir(), e.is_symlink(), e.link_target());
                    }
                    Err(e) => {
                        let _ = e.to_string();
                    }
                }
            }
            match Archive::parse(&bytes) {
                Ok(view) => {
                    accepted += 1;
                    for (path, entry) in view.iter() {
                        assert_eq!(view.lookup(path), Some(entry));
                        if entry.is_dir() {
                            assert!(view.list(path).is_some());
                        }
                    }
                    let _ = (view.list("/"), view.lookup("../d/./f"));
                }
                Err(_) => refused += 1,
            }
            let _ = find(&bytes, "d/f");
        }
        // The mutations exercise both outcomes.
        assert!(
            accepted > 100 && refused > 100,
            "{accepted} accepted, {refused} refused"
        );
    }

    #[test]
    fn builds_for_dom0s_initrd() {
        let archive = build(&[("bin", DIR, b""), ("bin/xl", S_IFREG | 0o755, b"\x7fELF")]);
        let xl = find(&archive, "/bin/xl").unwrap().unwrap();
        assert_eq!(xl.permissions(), 0o755);
        assert_eq!(xl.data, b"\x7fELF");
        assert_eq!(vec![xl.nlink, xl.uid, xl.gid, xl.mtime], [1, 0, 0, 0]);
    }

    /// Programs of a page or more start on a page, whatever comes before them; the padding
    /// entry is unpacked over, and small files and non-programs are not padded.
    #[test]
    fn programs_start_on_a_page() {
        let mut big = vec![0x5a; 3 * 4096 + 123];
        big[..4].copy_from_slice(b"\x7fELF");
        let not_elf = vec![7u8; 9000];
        for lead in 0..40 {
            let name = "x".repeat(lead + 1);
            let archive = build(&[
                ("bin", DIR, b""),
                (&name, S_IFREG | 0o644, b"abc"),
                ("bin/xl", S_IFREG | 0o755, &big),
                ("bin/small", S_IFREG | 0o755, b"\x7fELF"),
                ("data", S_IFREG | 0o644, &not_elf),
                ("bin/busybox-with-a-long-name", S_IFREG | 0o755, &big),
            ]);
            for path in ["/bin/xl", "/bin/busybox-with-a-long-name"] {
                let e = find(&archive, path).unwrap().unwrap();
                assert_eq!(e.data, &big[..]);
                let offset = e.data.as_ptr() as usize - archive.as_ptr() as usize;
                assert_eq!(offset % 4096, 0, "{path} at {offset:#x} (lead {lead})");
            }
            // Two entries each for the programs, one for everything else, and the trailer.
            assert_eq!(entries(&archive).count(), 8);
            let tree = Archive::parse(&archive).unwrap();
            assert_eq!(tree.lookup("/bin/small").unwrap().data, b"\x7fELF");
            assert_eq!(tree.lookup("/data").unwrap().data, &not_elf[..]);
        }
    }
}
