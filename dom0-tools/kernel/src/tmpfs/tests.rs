//! The file system's tests: every operation and its errors, the invariants after random
//! operations, listings under change, and (on a Linux host) the same operations compared
//! with the host's own file system ([`linux`]).

use super::*;
use crate::cpio::{self, S_IFCHR};
use crate::files::{O_RDWR, O_WRONLY};
use alloc::collections::BTreeSet;
use alloc::string::String;
use alloc::vec;
use proptest::prelude::*;

#[cfg(target_os = "linux")]
mod linux;

const BIG: Limits = Limits {
    bytes: 64 << 20,
    inodes: 100_000,
};
const PAGE: u64 = PAGE_SIZE as u64;

// ---- Helpers ----

/// A newc member with every header field chosen (`cpio::build` fixes most of them).
#[derive(Clone, Copy, Default)]
struct Member<'x> {
    name: &'x str,
    ino: u32,
    mode: u32,
    uid: u32,
    gid: u32,
    nlink: u32,
    mtime: u32,
    rdev: (u32, u32),
    data: &'x [u8],
}

fn newc(members: &[Member<'_>]) -> Vec<u8> {
    let mut out = Vec::new();
    let trailer = Member {
        name: cpio::TRAILER,
        nlink: 1,
        ..Member::default()
    };
    for m in members.iter().chain([&trailer]) {
        out.extend_from_slice(cpio::MAGIC_NEWC);
        let fields = [
            m.ino,
            m.mode,
            m.uid,
            m.gid,
            m.nlink,
            m.mtime,
            m.data.len() as u32,
            0,
            0,
            m.rdev.0,
            m.rdev.1,
            m.name.len() as u32 + 1,
            0,
        ];
        for f in fields {
            out.extend_from_slice(alloc::format!("{f:08x}").as_bytes());
        }
        out.extend_from_slice(m.name.as_bytes());
        out.push(0);
        out.resize(out.len().next_multiple_of(4), 0);
        out.extend_from_slice(m.data);
        out.resize(out.len().next_multiple_of(4), 0);
    }
    out
}

/// A file system seeded from an archive that lives as long as the test.
fn seeded(bytes: Vec<u8>, limits: Limits) -> Result<Tmpfs<'static>, i64> {
    let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
    let archive: &'static Archive<'static> = Box::leak(Box::new(Archive::parse(bytes).unwrap()));
    Tmpfs::from_archive(archive, limits)
}

fn initrd() -> Tmpfs<'static> {
    use cpio::{S_IFDIR as D, S_IFLNK as L, S_IFREG as F};
    let tree = cpio::build(&[
        ("bin", D | 0o755, b""),
        ("bin/xl", F | 0o755, b"\x7fELF"),
        ("etc", D | 0o755, b""),
        ("etc/xen", D | 0o755, b""),
        ("etc/xen/hello.cfg", F | 0o644, b"name = \"hello\"\n"),
        ("etc/xen/default.cfg", L | 0o777, b"hello.cfg"),
        ("tmp", D | 0o1777, b""),
    ]);
    let fs = seeded(tree, BIG).unwrap();
    check(&fs);
    fs
}

fn empty() -> Tmpfs<'static> {
    Tmpfs::new(BIG)
}

fn at(fs: &Tmpfs<'_>, path: &str) -> Result<Ino, i64> {
    fs.lookup(fs.root(), path.as_bytes(), Follow::Yes)
}

fn lat(fs: &Tmpfs<'_>, path: &str) -> Result<Ino, i64> {
    fs.lookup(fs.root(), path.as_bytes(), Follow::No)
}

fn create(fs: &mut Tmpfs<'_>, path: &str) -> Ino {
    fs.open(fs.root(), path.as_bytes(), O_CREAT | O_WRONLY, 0o644)
        .unwrap()
}

fn mkdir(fs: &mut Tmpfs<'_>, path: &str) -> Result<Ino, i64> {
    fs.mkdir(fs.root(), path.as_bytes(), 0o755)
}

fn write(fs: &mut Tmpfs<'_>, path: &str, data: &[u8]) -> Ino {
    let ino = fs
        .open(
            fs.root(),
            path.as_bytes(),
            O_CREAT | O_WRONLY | O_TRUNC,
            0o644,
        )
        .unwrap();
    assert_eq!(fs.write_at(ino, 0, data), Ok(data.len()));
    ino
}

fn read_all(fs: &Tmpfs<'_>, ino: Ino) -> Vec<u8> {
    let mut out = Vec::new();
    let mut buf = [0u8; 1000];
    loop {
        let n = fs.read_at(ino, out.len() as u64, &mut buf).unwrap();
        if n == 0 {
            return out;
        }
        out.extend_from_slice(&buf[..n]);
    }
}

fn cat(fs: &Tmpfs<'_>, path: &str) -> Vec<u8> {
    read_all(fs, at(fs, path).unwrap())
}

fn unlink(fs: &mut Tmpfs<'_>, path: &str) -> Result<(), i64> {
    fs.unlink(fs.root(), path.as_bytes())
}

fn rmdir(fs: &mut Tmpfs<'_>, path: &str) -> Result<(), i64> {
    fs.rmdir(fs.root(), path.as_bytes())
}

fn rename(fs: &mut Tmpfs<'_>, old: &str, new: &str) -> Result<(), i64> {
    let r = fs.root();
    fs.rename(r, old.as_bytes(), r, new.as_bytes(), 0)
}

fn symlink(fs: &mut Tmpfs<'_>, target: &str, path: &str) -> Result<Ino, i64> {
    fs.symlink(target.as_bytes(), fs.root(), path.as_bytes())
}

fn nlink(fs: &Tmpfs<'_>, path: &str) -> u64 {
    fs.stat(lat(fs, path).unwrap()).unwrap().nlink
}

/// One `struct linux_dirent64`, decoded.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Dirent {
    ino: u64,
    off: i64,
    kind: u8,
    name: String,
}

fn decode(mut bytes: &[u8]) -> Vec<Dirent> {
    let mut out = Vec::new();
    while !bytes.is_empty() {
        let reclen = u16::from_le_bytes([bytes[16], bytes[17]]) as usize;
        assert!(reclen.is_multiple_of(8) && reclen >= 24 && reclen <= bytes.len());
        let name = &bytes[19..reclen];
        let nul = name.iter().position(|&b| b == 0).expect("NUL-terminated");
        assert!(name[nul..].iter().all(|&b| b == 0), "zero padding");
        assert!(reclen - 19 - nul - 1 < 8, "no more padding than needed");
        out.push(Dirent {
            ino: u64::from_le_bytes(bytes[0..8].try_into().unwrap()),
            off: i64::from_le_bytes(bytes[8..16].try_into().unwrap()),
            kind: bytes[18],
            name: String::from_utf8(name[..nul].to_vec()).unwrap(),
        });
        bytes = &bytes[reclen..];
    }
    out
}

/// A whole listing, read `chunk` bytes at a time.
fn list_with(fs: &Tmpfs<'_>, dir: Ino, chunk: usize) -> Vec<Dirent> {
    let mut out = Vec::new();
    let mut pos = 0;
    let mut buf = vec![0u8; chunk];
    loop {
        let (n, next) = fs.getdents(dir, pos, &mut buf).unwrap();
        if n == 0 {
            return out;
        }
        let records = decode(&buf[..n]);
        assert_eq!(records.last().unwrap().off as u64, next);
        out.extend(records);
        pos = next;
    }
}

fn names(fs: &Tmpfs<'_>, path: &str) -> Vec<String> {
    let dir = at(fs, path).unwrap();
    list_with(fs, dir, 4096)
        .into_iter()
        .map(|d| d.name)
        .collect()
}

/// Checks every invariant of the tree: entries name live inodes, link counts are what the
/// entries make them, directories' parents and listing maps agree, every live inode can
/// be reached from the root, the byte count is what everything costs, the limits hold.
fn check(fs: &Tmpfs<'_>) {
    let mut refs: BTreeMap<u64, u32> = BTreeMap::new();
    let mut subdirs: BTreeMap<u64, u32> = BTreeMap::new();
    let mut used = 0;
    for (&n, inode) in &fs.inodes {
        assert!(n < fs.next_ino);
        used += INODE_COST + body_cost(&inode.body);
        match &inode.body {
            Body::Dir(d) => {
                assert_eq!(d.names.len(), d.order.len());
                for (name, &(ino, cookie)) in &d.names {
                    assert_eq!(d.order.get(&cookie), Some(name));
                    assert!((FIRST_COOKIE..d.next_cookie).contains(&cookie));
                    assert!(d.next_cookie <= COOKIE_END);
                    assert!(!name.is_empty() && name.len() <= NAME_MAX);
                    assert!(!name.contains(&b'/') && !name.contains(&0));
                    assert!(&name[..] != b"." && &name[..] != b"..");
                    let child = fs.inodes.get(&ino.0).expect("an entry names a live inode");
                    assert!(child.nlink > 0, "a named inode has links");
                    *refs.entry(ino.0).or_default() += 1;
                    used += entry_cost(name);
                    if let Body::Dir(cd) = &child.body {
                        assert_eq!(cd.parent.0, n, "a directory's .. is where it is");
                        *subdirs.entry(n).or_default() += 1;
                    }
                }
            }
            Body::File(c) => assert!(c.invariants_hold()),
            Body::Symlink(t) => assert!(!t.is_empty() && t.len() <= PATH_MAX),
            Body::Special { .. } => {}
        }
    }
    for (&n, inode) in &fs.inodes {
        let r = refs.get(&n).copied().unwrap_or(0);
        match &inode.body {
            Body::Dir(d) if inode.nlink == 0 => {
                assert!(
                    r == 0 && inode.opens > 0 && d.names.is_empty(),
                    "removed dir"
                );
            }
            Body::Dir(_) => {
                assert_eq!(r, u32::from(n != ROOT.0), "one name per directory");
                assert_eq!(inode.nlink, 2 + subdirs.get(&n).copied().unwrap_or(0));
            }
            _ => {
                assert_eq!(inode.nlink, r, "a file's links are its names");
                assert!(r > 0 || inode.opens > 0, "an unnamed file is held");
            }
        }
    }
    // Every named inode is reachable from the root (no detached cycles).
    let mut seen = BTreeSet::from([ROOT.0]);
    let mut todo = vec![ROOT.0];
    while let Some(n) = todo.pop() {
        if let Body::Dir(d) = &fs.inodes[&n].body {
            for &(ino, _) in d.names.values() {
                if seen.insert(ino.0) {
                    todo.push(ino.0);
                }
            }
        }
    }
    for (n, inode) in &fs.inodes {
        assert!(
            seen.contains(n) || inode.nlink == 0,
            "inode {n} unreachable"
        );
    }
    assert_eq!(fs.used, used, "bytes charged are what is held");
    assert!(fs.inodes.len() <= fs.limits.inodes.max(1));
    assert!(fs.used <= fs.limits.bytes.max(INODE_COST));
}

// ---- Seeding ----

#[test]
fn seeds_every_kind_from_the_initrd() {
    let data = b"0123456789".repeat(1000);
    let bytes = newc(&[
        Member {
            name: ".",
            ino: 1,
            mode: S_IFDIR | 0o750,
            uid: 5,
            gid: 6,
            nlink: 3,
            mtime: 1000,
            ..Member::default()
        },
        Member {
            name: "etc",
            ino: 2,
            mode: S_IFDIR | 0o755,
            nlink: 2,
            mtime: 2000,
            ..Member::default()
        },
        Member {
            name: "etc/a",
            ino: 3,
            mode: S_IFREG | 0o600,
            uid: 7,
            gid: 8,
            nlink: 1,
            mtime: 3000,
            data: &data,
            ..Member::default()
        },
        // A hard-link pair as GNU cpio writes it: data with the last member.
        Member {
            name: "etc/h1",
            ino: 9,
            mode: S_IFREG | 0o640,
            nlink: 2,
            mtime: 4000,
            ..Member::default()
        },
        Member {
            name: "h2",
            ino: 9,
            mode: S_IFREG | 0o644,
            nlink: 2,
            mtime: 4000,
            data: b"shared",
            ..Member::default()
        },
        Member {
            name: "etc/l",
            ino: 4,
            mode: S_IFLNK | 0o777,
            nlink: 1,
            data: b"a",
            ..Member::default()
        },
        Member {
            name: "console",
            ino: 5,
            mode: S_IFCHR | 0o600,
            nlink: 1,
            rdev: (5, 1),
            ..Member::default()
        },
    ]);
    let fs = seeded(bytes, BIG).unwrap();
    check(&fs);
    let root = fs.stat(fs.root()).unwrap();
    assert_eq!(
        (root.mode, root.uid, root.gid, root.mtime, root.nlink),
        (S_IFDIR | 0o750, 5, 6, 1000, 3)
    );
    let etc = fs.stat(at(&fs, "/etc").unwrap()).unwrap();
    assert_eq!((etc.mode, etc.mtime, etc.nlink), (S_IFDIR | 0o755, 2000, 2));
    let a = at(&fs, "/etc/a").unwrap();
    let st = fs.stat(a).unwrap();
    assert_eq!(
        (st.mode, st.uid, st.gid, st.mtime, st.size, st.nlink),
        (S_IFREG | 0o600, 7, 8, 3000, 10_000, 1)
    );
    assert_eq!(read_all(&fs, a), data);
    // Hard links are one inode, with the first member's mode and the group's data.
    let (h1, h2) = (at(&fs, "etc/h1").unwrap(), at(&fs, "h2").unwrap());
    assert_eq!(h1, h2);
    let st = fs.stat(h1).unwrap();
    assert_eq!((st.nlink, st.mode), (2, S_IFREG | 0o640));
    assert_eq!(read_all(&fs, h1), b"shared");
    assert_eq!(fs.readlink(fs.root(), b"etc/l"), Ok(&b"a"[..]));
    assert_eq!(at(&fs, "etc/l"), Ok(a));
    let console = fs.stat(at(&fs, "console").unwrap()).unwrap();
    assert_eq!((console.mode, console.rdev), (S_IFCHR | 0o600, (5, 1)));
    assert_eq!(
        fs.read_at(at(&fs, "console").unwrap(), 0, &mut [0; 4]),
        Err(-EINVAL)
    );
    // Nothing of the file data is copied or charged.
    let dirs = 2;
    let entries = ["etc", "a", "h1", "h2", "l", "console"];
    let expected = INODE_COST * (dirs + 4)
        + 1
        + entries
            .iter()
            .map(|n| entry_cost(n.as_bytes()))
            .sum::<usize>();
    assert_eq!(
        fs.usage(),
        Usage {
            bytes: expected,
            inodes: 6
        }
    );
}

#[test]
fn initrd_files_are_read_in_place_and_copied_a_page_at_a_time() {
    let original = (0..3 * PAGE_SIZE + 100)
        .map(|i| i as u8)
        .collect::<Vec<_>>();
    let bytes = cpio::build(&[("big", S_IFREG | 0o644, &original)]);
    let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
    let archive = Archive::parse(bytes).unwrap();
    let mut fs = Tmpfs::from_archive(&archive, BIG).unwrap();
    let big = at(&fs, "big").unwrap();
    let shared = fs.initrd_contents(big).unwrap();
    assert!(core::ptr::eq(shared, archive.lookup("big").unwrap().data));
    let before = fs.usage().bytes;
    assert_eq!(fs.write_at(big, PAGE + 10, b"XY"), Ok(2));
    assert_eq!(fs.usage().bytes, before + PAGE_COST, "one page copied");
    assert_eq!(fs.initrd_contents(big), None);
    assert_eq!(fs.initrd_contents(fs.root()), None);
    let mut expect = original.clone();
    expect[PAGE_SIZE + 10..PAGE_SIZE + 12].copy_from_slice(b"XY");
    assert_eq!(read_all(&fs, big), expect);
    assert_eq!(
        archive.lookup("big").unwrap().data,
        &original[..],
        "initrd untouched"
    );
    // Shrinking into the initrd's bytes and growing again shows zeros, not the old bytes.
    fs.truncate(big, 50).unwrap();
    assert_eq!(fs.usage().bytes, before, "the copied page is given back");
    fs.truncate(big, PAGE * 2).unwrap();
    let now = read_all(&fs, big);
    assert_eq!(&now[..50], &original[..50]);
    assert!(now[50..].iter().all(|&b| b == 0));
    check(&fs);
}

#[test]
fn seeding_is_bounded() {
    let tree = || {
        cpio::build(&[
            ("d", S_IFDIR | 0o755, b""),
            ("d/f", S_IFREG | 0o644, b"x"),
            ("d/g", S_IFREG | 0o644, b"y"),
        ])
    };
    assert!(seeded(tree(), BIG).is_ok());
    let few_inodes = Limits {
        bytes: BIG.bytes,
        inodes: 3,
    };
    assert_eq!(seeded(tree(), few_inodes).unwrap_err(), -ENOSPC);
    let few_bytes = Limits {
        bytes: 4 * INODE_COST,
        inodes: 100,
    };
    assert_eq!(seeded(tree(), few_bytes).unwrap_err(), -ENOSPC);
    let long = "n".repeat(NAME_MAX + 1);
    let too_long = cpio::build(&[(&long, S_IFREG | 0o644, b"")]);
    assert_eq!(seeded(too_long, BIG).unwrap_err(), -ENAMETOOLONG);
}

// ---- Paths ----

#[test]
fn paths_resolve_as_on_linux() {
    let fs = initrd();
    let (root, etc, xen) = (
        fs.root(),
        at(&fs, "/etc").unwrap(),
        at(&fs, "/etc/xen").unwrap(),
    );
    for p in ["/", "//", "/.", "/..", "/../..", "///./../", "."] {
        assert_eq!(at(&fs, p), Ok(root), "{p}");
    }
    for p in [
        "/etc/xen",
        "etc//xen/",
        "./etc/./xen/.",
        "/../etc/xen",
        "etc/xen/../xen",
    ] {
        assert_eq!(at(&fs, p), Ok(xen), "{p}");
    }
    assert_eq!(fs.lookup(etc, b"xen", Follow::Yes), Ok(xen));
    assert_eq!(fs.lookup(xen, b"..", Follow::Yes), Ok(etc));
    assert_eq!(
        fs.lookup(xen, b"../../bin/xl", Follow::Yes),
        at(&fs, "/bin/xl")
    );
    assert_eq!(
        fs.lookup(xen, b"/etc", Follow::Yes),
        Ok(etc),
        "absolute ignores at"
    );
    let xl = at(&fs, "/bin/xl").unwrap();
    for (p, e) in [
        ("/bin/xl/", ENOTDIR),
        ("/bin/xl/.", ENOTDIR),
        ("/bin/xl/..", ENOTDIR),
        ("/bin/xl/x", ENOTDIR),
        ("/bin/nope", ENOENT),
        ("/nope/x", ENOENT),
        ("", ENOENT),
    ] {
        assert_eq!(at(&fs, p), Err(-e), "{p}");
    }
    assert_eq!(at(&fs, "a\0b"), Err(-EINVAL));
    assert_eq!(fs.lookup(xl, b"x", Follow::Yes), Err(-ENOTDIR), "at a file");
    assert_eq!(fs.lookup(xl, b"/bin", Follow::Yes), at(&fs, "/bin"));
    assert_eq!(fs.lookup(Ino(999), b"x", Follow::Yes), Err(-ENOENT));
}

#[test]
fn symbolic_links_are_followed() {
    let mut fs = initrd();
    let cfg = at(&fs, "/etc/xen/hello.cfg").unwrap();
    assert_eq!(
        at(&fs, "/etc/xen/default.cfg"),
        Ok(cfg),
        "relative to its dir"
    );
    symlink(&mut fs, "/etc/xen", "x").unwrap();
    symlink(&mut fs, "etc/xen/../xen/", "y").unwrap();
    symlink(&mut fs, "/", "r").unwrap();
    symlink(&mut fs, "nowhere", "dangling").unwrap();
    assert_eq!(at(&fs, "x/hello.cfg"), Ok(cfg));
    assert_eq!(at(&fs, "y/default.cfg"), Ok(cfg));
    assert_eq!(
        at(&fs, "x/../xen/../../x/hello.cfg"),
        Ok(cfg),
        ".. after a link"
    );
    assert_eq!(at(&fs, "r"), Ok(fs.root()));
    assert_eq!(at(&fs, "r/r/r/etc"), at(&fs, "etc"));
    assert_eq!(at(&fs, "dangling"), Err(-ENOENT));
    let x = lat(&fs, "x").unwrap();
    assert_eq!(fs.stat(x).unwrap().mode, S_IFLNK | 0o777);
    assert_eq!(
        lat(&fs, "x/"),
        at(&fs, "/etc/xen"),
        "a trailing slash follows"
    );
    assert_eq!(lat(&fs, "x/."), at(&fs, "/etc/xen"));
    assert_eq!(lat(&fs, "dangling"), Ok(lat(&fs, "dangling").unwrap()));
    symlink(&mut fs, "etc/xen/hello.cfg", "f").unwrap();
    assert_eq!(at(&fs, "f/"), Err(-ENOTDIR));
    // Linux's limit: 40 links in one walk, the 41st is ELOOP.
    symlink(&mut fs, "etc", "l0").unwrap();
    for i in 1..=40 {
        symlink(
            &mut fs,
            &alloc::format!("l{}", i - 1),
            &alloc::format!("l{i}"),
        )
        .unwrap();
    }
    assert_eq!(at(&fs, "l39"), at(&fs, "etc"));
    assert_eq!(at(&fs, "l39/xen"), at(&fs, "etc/xen"));
    assert_eq!(at(&fs, "l40"), Err(-ELOOP));
    assert_eq!(lat(&fs, "l40").map(|_| ()), Ok(()));
    assert_eq!(at(&fs, "l40/xen"), Err(-ELOOP));
    symlink(&mut fs, "loop", "loop").unwrap();
    assert_eq!(at(&fs, "loop"), Err(-ELOOP));
    symlink(&mut fs, "b/a", "a").unwrap();
    symlink(&mut fs, "a/b", "b").unwrap();
    assert_eq!(at(&fs, "a/x"), Err(-ELOOP));
}

#[test]
fn names_and_paths_have_linux_limits() {
    let mut fs = empty();
    let name = "n".repeat(NAME_MAX);
    let long = "n".repeat(NAME_MAX + 1);
    create(&mut fs, &name);
    assert!(at(&fs, &name).is_ok());
    let r = fs.root();
    assert_eq!(at(&fs, &long), Err(-ENAMETOOLONG));
    assert_eq!(at(&fs, &alloc::format!("{long}/x")), Err(-ENAMETOOLONG));
    assert_eq!(fs.open(r, long.as_bytes(), O_CREAT, 0), Err(-ENAMETOOLONG));
    assert_eq!(mkdir(&mut fs, &long), Err(-ENAMETOOLONG));
    assert_eq!(symlink(&mut fs, "x", &long), Err(-ENAMETOOLONG));
    assert_eq!(rename(&mut fs, &name, &long), Err(-ENAMETOOLONG));
    // PATH_MAX counts the NUL: 4095 bytes resolve, 4096 do not.
    let ok = "./".repeat((PATH_MAX - 1) / 2) + "/";
    assert_eq!(ok.len(), PATH_MAX - 1);
    assert_eq!(at(&fs, &ok), Ok(r));
    assert_eq!(at(&fs, &(ok.clone() + ".")), Err(-ENAMETOOLONG));
    assert_eq!(at(&fs, &"/".repeat(1 << 20)), Err(-ENAMETOOLONG));
    let target = "t".repeat(PATH_MAX - 1);
    assert!(symlink(&mut fs, &target, "t").is_ok());
    assert_eq!(fs.readlink(r, b"t"), Ok(target.as_bytes()));
    assert_eq!(
        at(&fs, "t"),
        Err(-ENAMETOOLONG),
        "the target's one name is too long"
    );
    assert_eq!(symlink(&mut fs, &(target + "t"), "u"), Err(-ENAMETOOLONG));
    // getcwd of a directory whose path reaches PATH_MAX.
    let mut dir = r;
    for _ in 0..15 {
        dir = fs.mkdir(dir, &[b'm'; NAME_MAX], 0o755).unwrap();
    }
    assert_eq!(fs.path_of(dir).unwrap().len(), 15 * 256);
    let deepest = fs.mkdir(dir, &[b'x'; 254], 0o755).unwrap();
    assert_eq!(fs.path_of(deepest).unwrap().len(), PATH_MAX - 1);
    let too_deep = fs.mkdir(dir, &[b'y'; 255], 0o755).unwrap();
    assert_eq!(fs.path_of(too_deep), Err(-ENAMETOOLONG));
    check(&fs);
}

// ---- Opening and making ----

#[test]
fn open_creates_excludes_and_truncates() {
    let mut fs = initrd();
    let r = fs.root();
    fs.set_time(77);
    let f = fs.open(r, b"/tmp/new", O_CREAT | O_WRONLY, 0o7644).unwrap();
    let st = fs.stat(f).unwrap();
    assert_eq!(
        (st.mode, st.uid, st.gid, st.size, st.nlink, st.mtime),
        (S_IFREG | 0o7644, 0, 0, 0, 1, 77)
    );
    assert_eq!(
        fs.stat(at(&fs, "/tmp").unwrap()).unwrap().mtime,
        77,
        "directory stamped"
    );
    assert_eq!(
        fs.open(r, b"/tmp/new", O_CREAT | O_RDWR, 0),
        Ok(f),
        "O_CREAT finds it"
    );
    assert_eq!(fs.open(r, b"/tmp/new", O_CREAT | O_EXCL, 0), Err(-EEXIST));
    assert_eq!(fs.open(r, b"/tmp/new", 0, 0), Ok(f));
    // Through a dangling link, O_CREAT makes the target; O_EXCL refuses the link.
    symlink(&mut fs, "made", "/tmp/link").unwrap();
    assert_eq!(
        fs.open(r, b"/tmp/link", O_CREAT | O_EXCL | O_WRONLY, 0o600),
        Err(-EEXIST)
    );
    assert_eq!(
        fs.open(r, b"/tmp/link", O_CREAT | O_NOFOLLOW, 0o600),
        Err(-ELOOP)
    );
    let made = fs.open(r, b"/tmp/link", O_CREAT | O_WRONLY, 0o600).unwrap();
    assert_eq!(at(&fs, "/tmp/made"), Ok(made));
    assert_eq!(fs.open(r, b"/tmp/link", O_NOFOLLOW, 0), Err(-ELOOP));
    assert_eq!(
        fs.open(r, b"/tmp/link", O_NOFOLLOW | O_DIRECTORY, 0),
        Err(-ENOTDIR)
    );
    symlink(&mut fs, "/nowhere/x", "/tmp/bad").unwrap();
    assert_eq!(fs.open(r, b"/tmp/bad", O_CREAT, 0), Err(-ENOENT));
    symlink(&mut fs, "/", "/tmp/root").unwrap();
    assert_eq!(fs.open(r, b"/tmp/root", O_CREAT, 0), Err(-EISDIR));
    assert_eq!(fs.open(r, b"/tmp/root", 0, 0), Ok(r));
    symlink(&mut fs, "newdir/", "/tmp/slash").unwrap();
    assert_eq!(fs.open(r, b"/tmp/slash", O_CREAT, 0), Err(-EISDIR));
    // Directories.
    for (path, flags, e) in [
        ("/tmp", O_CREAT, EISDIR),
        ("/tmp", O_CREAT | O_EXCL, EEXIST),
        ("/tmp/.", O_CREAT, EISDIR),
        ("/", O_CREAT | O_EXCL, EEXIST),
        ("/tmp/..", O_CREAT, EISDIR),
        ("/tmp/newfile/", O_CREAT, EISDIR),
        ("/tmp/new/", O_CREAT, EISDIR),
        ("/tmp/x", O_CREAT | O_DIRECTORY, EINVAL),
        ("/tmp", O_WRONLY, EISDIR),
        ("/tmp", O_RDWR, EISDIR),
        ("/tmp", O_TRUNC, EISDIR),
        ("/tmp/new", O_DIRECTORY, ENOTDIR),
        ("/tmp/new/", 0, ENOTDIR),
        ("/nope/x", O_CREAT, ENOENT),
        ("/tmp/new/x", O_CREAT, ENOTDIR),
    ] {
        assert_eq!(
            fs.open(r, path.as_bytes(), flags, 0o644),
            Err(-e),
            "{path} {flags:#o}"
        );
    }
    assert_eq!(fs.open(r, b"/tmp/", O_DIRECTORY, 0), at(&fs, "/tmp"));
    assert_eq!(
        at(&fs, "/tmp/newfile"),
        Err(-ENOENT),
        "failures make nothing"
    );
    // O_TRUNC empties a file and gives its pages back.
    let before = fs.usage().bytes;
    fs.write_at(f, 0, &[1; 3 * PAGE_SIZE]).unwrap();
    assert_eq!(fs.usage().bytes, before + 3 * PAGE_COST);
    fs.set_time(88);
    assert_eq!(fs.open(r, b"/tmp/new", O_TRUNC, 0), Ok(f));
    let st = fs.stat(f).unwrap();
    assert_eq!((st.size, st.mtime), (0, 88));
    assert_eq!(fs.usage().bytes, before);
    // Devices from the initrd open (the kernel serves them); O_TRUNC leaves them be.
    check(&fs);
}

#[test]
fn mkdir_makes_directories() {
    let mut fs = initrd();
    let root_links = nlink(&fs, "/");
    let d = mkdir(&mut fs, "/tmp/d/").unwrap();
    let st = fs.stat(d).unwrap();
    assert_eq!((st.mode, st.nlink, st.size), (S_IFDIR | 0o755, 2, 40));
    assert_eq!(nlink(&fs, "/tmp"), 3);
    assert_eq!(nlink(&fs, "/"), root_links);
    assert_eq!(fs.stat(at(&fs, "/tmp").unwrap()).unwrap().size, 60);
    assert_eq!(fs.lookup(d, b"..", Follow::Yes), at(&fs, "/tmp"));
    assert_eq!(
        fs.mkdir(fs.root(), b"/tmp/m", 0o7777)
            .map(|i| fs.stat(i).unwrap().mode),
        Ok(S_IFDIR | 0o1777)
    );
    symlink(&mut fs, "nowhere", "/tmp/l").unwrap();
    for p in [
        "/tmp/d",
        "/tmp/l",
        "/etc/xen/hello.cfg",
        "/",
        "/tmp/.",
        "/tmp/..",
        "/tmp/d/.",
    ] {
        assert_eq!(mkdir(&mut fs, p), Err(-EEXIST), "{p}");
    }
    assert_eq!(mkdir(&mut fs, "/nope/d"), Err(-ENOENT));
    assert_eq!(mkdir(&mut fs, "/bin/xl/d"), Err(-ENOTDIR));
    // A set-group-ID directory hands down its group, and the bit to directories.
    let sg = mkdir(&mut fs, "/sg").unwrap();
    fs.chmod(sg, 0o2775).unwrap();
    fs.chown(sg, None, Some(7)).unwrap();
    let sub = mkdir(&mut fs, "/sg/sub").unwrap();
    let file = create(&mut fs, "/sg/file");
    assert_eq!(fs.stat(sub).unwrap().gid, 7);
    assert_eq!(fs.stat(sub).unwrap().mode, S_IFDIR | 0o2755);
    assert_eq!(
        (fs.stat(file).unwrap().gid, fs.stat(file).unwrap().mode),
        (7, S_IFREG | 0o644)
    );
    check(&fs);
}

#[test]
fn symlink_and_readlink() {
    let mut fs = initrd();
    let r = fs.root();
    let l = symlink(&mut fs, "../some/where", "/tmp/l").unwrap();
    let st = fs.stat(l).unwrap();
    assert_eq!((st.mode, st.size, st.nlink), (S_IFLNK | 0o777, 13, 1));
    assert_eq!(fs.readlink(r, b"/tmp/l"), Ok(&b"../some/where"[..]));
    assert_eq!(fs.readlink(r, b"/etc/xen/hello.cfg"), Err(-EINVAL));
    assert_eq!(fs.readlink(r, b"/etc"), Err(-EINVAL));
    symlink(&mut fs, "/etc", "/tmp/e").unwrap();
    assert_eq!(
        fs.readlink(r, b"/tmp/e/"),
        Err(-EINVAL),
        "the slash follows it"
    );
    assert_eq!(fs.readlink(r, b"/tmp/nope"), Err(-ENOENT));
    assert_eq!(symlink(&mut fs, "", "/tmp/x"), Err(-ENOENT));
    assert_eq!(symlink(&mut fs, "a\0b", "/tmp/x"), Err(-EINVAL));
    assert_eq!(symlink(&mut fs, "x", "/tmp/l"), Err(-EEXIST));
    assert_eq!(symlink(&mut fs, "x", "/tmp/l/"), Err(-EEXIST));
    assert_eq!(symlink(&mut fs, "x", "/tmp/new/"), Err(-ENOENT));
    assert_eq!(symlink(&mut fs, "x", "/tmp"), Err(-EEXIST));
    assert_eq!(symlink(&mut fs, "x", "/"), Err(-EEXIST));
    assert_eq!(symlink(&mut fs, "x", "/tmp/.."), Err(-EEXIST));
    check(&fs);
}

#[test]
fn hard_links_share_an_inode() {
    let mut fs = initrd();
    let r = fs.root();
    let f = write(&mut fs, "/tmp/f", b"one");
    fs.link(r, b"/tmp/f", r, b"/etc/g", Follow::No).unwrap();
    assert_eq!(at(&fs, "/etc/g"), Ok(f));
    assert_eq!(nlink(&fs, "/tmp/f"), 2);
    fs.write_at(f, 3, b" two").unwrap();
    assert_eq!(cat(&fs, "/etc/g"), b"one two");
    unlink(&mut fs, "/tmp/f").unwrap();
    assert_eq!(nlink(&fs, "/etc/g"), 1);
    assert_eq!(cat(&fs, "/etc/g"), b"one two");
    // The link itself, or what it names.
    let l = symlink(&mut fs, "/etc/g", "/tmp/l").unwrap();
    fs.link(r, b"/tmp/l", r, b"/tmp/l2", Follow::No).unwrap();
    assert_eq!(lat(&fs, "/tmp/l2"), Ok(l));
    fs.link(r, b"/tmp/l", r, b"/tmp/g2", Follow::Yes).unwrap();
    assert_eq!(lat(&fs, "/tmp/g2"), Ok(f));
    assert_eq!(nlink(&fs, "/etc/g"), 2);
    for (old, new, e) in [
        ("/etc", "/tmp/d", EPERM),
        ("/etc", "/tmp/g2", EEXIST),
        ("/etc/g", "/tmp/g2", EEXIST),
        ("/etc/g", "/tmp/.", EEXIST),
        ("/etc/g", "/", EEXIST),
        ("/etc/g", "/tmp/new/", ENOENT),
        ("/etc/g/", "/tmp/new", ENOTDIR),
        ("/nope", "/tmp/new", ENOENT),
        ("/etc/g", "/nope/new", ENOENT),
    ] {
        assert_eq!(
            fs.link(r, old.as_bytes(), r, new.as_bytes(), Follow::No),
            Err(-e),
            "{old} {new}"
        );
    }
    // At u32::MAX links, EMLINK.
    fs.inode_mut(f).unwrap().nlink = u32::MAX;
    assert_eq!(
        fs.link(r, b"/etc/g", r, b"/tmp/h", Follow::No),
        Err(-EMLINK)
    );
    fs.inode_mut(f).unwrap().nlink = 2;
    check(&fs);
}

// ---- Contents ----

#[test]
fn reads_and_writes_with_holes() {
    let mut fs = empty();
    let f = create(&mut fs, "f");
    fs.set_time(5);
    assert_eq!(fs.write_at(f, 0, b"hello"), Ok(5));
    assert_eq!(fs.stat(f).unwrap().mtime, 5);
    assert_eq!(fs.write_at(f, 10_000, b"end"), Ok(3));
    let all = read_all(&fs, f);
    assert_eq!(all.len(), 10_003);
    assert_eq!(&all[..5], b"hello");
    assert!(
        all[5..10_000].iter().all(|&b| b == 0),
        "the hole reads as zeros"
    );
    assert_eq!(&all[10_000..], b"end");
    assert_eq!(
        fs.usage().bytes,
        INODE_COST * 2 + entry_cost(b"f") + 2 * PAGE_COST,
        "holes cost nothing"
    );
    let mut buf = [9u8; 8];
    assert_eq!(
        fs.read_at(f, PAGE - 4, &mut buf),
        Ok(8),
        "across a page boundary"
    );
    assert_eq!(buf, [0; 8]);
    assert_eq!(fs.read_at(f, 10_001, &mut buf), Ok(2));
    assert_eq!(&buf[..2], b"nd");
    assert_eq!(fs.read_at(f, 10_003, &mut buf), Ok(0));
    assert_eq!(fs.read_at(f, u64::MAX, &mut buf), Ok(0));
    assert_eq!(fs.read_at(f, 0, &mut []), Ok(0));
    // Appending.
    fs.set_time(6);
    assert_eq!(fs.append(f, b"!!"), Ok((2, 10_005)));
    assert_eq!(fs.stat(f).unwrap().size, 10_005);
    // An empty write changes nothing, not even the time.
    fs.set_time(7);
    assert_eq!(fs.write_at(f, 1 << 40, b""), Ok(0));
    assert_eq!(fs.stat(f).unwrap().mtime, 6);
    assert_eq!(fs.stat(f).unwrap().size, 10_005);
    // Linux's largest file.
    assert_eq!(fs.write_at(f, MAX_FILE_SIZE, b"x"), Err(-EFBIG));
    assert_eq!(fs.write_at(f, u64::MAX, b"x"), Err(-EFBIG));
    assert_eq!(
        fs.write_at(f, MAX_FILE_SIZE - 2, b"xyz"),
        Ok(2),
        "short at the limit"
    );
    assert_eq!(fs.stat(f).unwrap().size, MAX_FILE_SIZE);
    let mut tail = [0u8; 4];
    assert_eq!(fs.read_at(f, MAX_FILE_SIZE - 3, &mut tail), Ok(3));
    assert_eq!(&tail[..3], b"\0xy");
    // Not regular files.
    let r = fs.root();
    let l = symlink(&mut fs, "f", "l").unwrap();
    assert_eq!(fs.read_at(r, 0, &mut buf), Err(-EISDIR));
    assert_eq!(fs.write_at(r, 0, b"x"), Err(-EISDIR));
    assert_eq!(fs.append(r, b"x"), Err(-EISDIR));
    assert_eq!(fs.read_at(l, 0, &mut buf), Err(-EINVAL));
    assert_eq!(fs.write_at(l, 0, b"x"), Err(-EINVAL));
    assert_eq!(fs.read_at(Ino(12345), 0, &mut buf), Err(-ENOENT));
    check(&fs);
}

#[test]
fn truncate_drops_and_zero_fills() {
    let mut fs = empty();
    let f = create(&mut fs, "f");
    let base = fs.usage().bytes;
    fs.write_at(f, 0, &[0xff; 3 * PAGE_SIZE]).unwrap();
    fs.set_time(9);
    fs.truncate(f, 5000).unwrap();
    assert_eq!(fs.stat(f).unwrap().mtime, 9);
    assert_eq!(fs.usage().bytes, base + 2 * PAGE_COST);
    fs.truncate(f, 12_000).unwrap();
    assert_eq!(
        fs.usage().bytes,
        base + 2 * PAGE_COST,
        "growing takes no memory"
    );
    let all = read_all(&fs, f);
    assert_eq!(all.len(), 12_000);
    assert!(all[..5000].iter().all(|&b| b == 0xff));
    assert!(all[5000..].iter().all(|&b| b == 0));
    fs.truncate(f, PAGE).unwrap();
    assert_eq!(fs.usage().bytes, base + PAGE_COST);
    fs.truncate(f, 0).unwrap();
    assert_eq!(fs.usage().bytes, base);
    assert_eq!(fs.truncate(f, MAX_FILE_SIZE), Ok(()));
    assert_eq!(fs.truncate(f, MAX_FILE_SIZE + 1), Err(-EFBIG));
    let r = fs.root();
    assert_eq!(fs.truncate(r, 0), Err(-EISDIR));
    let l = symlink(&mut fs, "f", "l").unwrap();
    assert_eq!(fs.truncate(l, 0), Err(-EINVAL));
    check(&fs);
}

// ---- Removing ----

#[test]
fn unlink_removes_names_and_open_files_outlive_them() {
    let mut fs = initrd();
    let baseline = fs.usage();
    let f = write(&mut fs, "/tmp/f", &[7; 5000]);
    fs.retain(f).unwrap();
    fs.set_time(50);
    unlink(&mut fs, "/tmp/f").unwrap();
    assert_eq!(fs.stat(at(&fs, "/tmp").unwrap()).unwrap().mtime, 50);
    assert_eq!(at(&fs, "/tmp/f"), Err(-ENOENT));
    assert_eq!(fs.stat(f).unwrap().nlink, 0);
    assert_eq!(read_all(&fs, f), [7; 5000], "still readable while held");
    assert_eq!(fs.write_at(f, 0, b"x"), Ok(1), "and writable");
    check(&fs);
    fs.release(f).unwrap();
    assert_eq!(fs.stat(f), Err(-ENOENT));
    assert_eq!(fs.usage(), baseline, "everything given back");
    assert_eq!(fs.release(f), Err(-ENOENT));
    let g = create(&mut fs, "/tmp/g");
    assert_eq!(fs.release(g), Err(-EINVAL), "not held");
    // Errors.
    for (p, e) in [
        ("/tmp", EISDIR),
        ("/tmp/", EISDIR),
        ("/tmp/g/", ENOTDIR),
        ("/tmp/.", EISDIR),
        ("/tmp/..", EISDIR),
        ("/", EISDIR),
        ("/tmp/nope", ENOENT),
        ("/tmp/nope/", ENOENT),
        ("/tmp/g/x", ENOTDIR),
    ] {
        assert_eq!(unlink(&mut fs, p), Err(-e), "{p}");
    }
    // A link goes, not what it names.
    unlink(&mut fs, "/etc/xen/default.cfg").unwrap();
    assert!(at(&fs, "/etc/xen/hello.cfg").is_ok());
    check(&fs);
}

#[test]
fn rmdir_removes_empty_directories() {
    let mut fs = initrd();
    let baseline = fs.usage();
    let d = mkdir(&mut fs, "/tmp/d").unwrap();
    create(&mut fs, "/tmp/d/f");
    for (p, e) in [
        ("/tmp/d", ENOTEMPTY),
        ("/tmp/d/f", ENOTDIR),
        ("/tmp/d/.", EINVAL),
        ("/tmp/d/..", ENOTEMPTY),
        (".", EINVAL),
        ("/", EBUSY),
        ("/tmp/nope", ENOENT),
    ] {
        assert_eq!(rmdir(&mut fs, p), Err(-e), "{p}");
    }
    unlink(&mut fs, "/tmp/d/f").unwrap();
    // A working directory that is removed stays, empty and closed to new entries.
    fs.retain(d).unwrap();
    assert_eq!(nlink(&fs, "/tmp"), 3);
    rmdir(&mut fs, "/tmp/d/").unwrap();
    assert_eq!(nlink(&fs, "/tmp"), 2);
    assert_eq!(fs.stat(d).unwrap().nlink, 0);
    assert_eq!(fs.lookup(d, b".", Follow::Yes), Ok(d));
    assert_eq!(fs.lookup(d, b"..", Follow::Yes), at(&fs, "/tmp"));
    assert_eq!(fs.lookup(d, b"x", Follow::Yes), Err(-ENOENT));
    assert_eq!(fs.open(d, b"x", O_CREAT, 0o644), Err(-ENOENT));
    assert_eq!(fs.mkdir(d, b"x", 0o755), Err(-ENOENT));
    assert_eq!(fs.symlink(b"t", d, b"x"), Err(-ENOENT));
    let r = fs.root();
    assert_eq!(fs.link(r, b"/bin/xl", d, b"x", Follow::No), Err(-ENOENT));
    assert_eq!(fs.rename(r, b"/bin/xl", d, b"x", 0), Err(-ENOENT));
    assert_eq!(fs.getdents(d, 0, &mut [0; 100]), Err(-ENOENT));
    assert_eq!(fs.path_of(d), Err(-ENOENT));
    check(&fs);
    fs.release(d).unwrap();
    assert_eq!(fs.usage(), baseline);
    check(&fs);
}

#[test]
fn rename_moves_and_replaces() {
    let mut fs = initrd();
    let r = fs.root();
    // A file to a new name, then over another file (whose inode goes, unless held).
    let a = write(&mut fs, "/tmp/a", b"A");
    let b = write(&mut fs, "/tmp/b", b"B");
    rename(&mut fs, "/tmp/a", "/tmp/c").unwrap();
    assert_eq!(
        (at(&fs, "/tmp/a"), at(&fs, "/tmp/c")),
        (Err(-ENOENT), Ok(a))
    );
    fs.retain(b).unwrap();
    rename(&mut fs, "/tmp/c", "/tmp/b").unwrap();
    assert_eq!(at(&fs, "/tmp/b"), Ok(a));
    assert_eq!(
        (fs.stat(b).unwrap().nlink, read_all(&fs, b)),
        (0, b"B".to_vec())
    );
    fs.release(b).unwrap();
    assert_eq!(fs.stat(b), Err(-ENOENT));
    // A directory to another parent: link counts and `..` follow it.
    let d = mkdir(&mut fs, "/tmp/d").unwrap();
    create(&mut fs, "/tmp/d/inside");
    rename(&mut fs, "/tmp/d", "/etc/moved").unwrap();
    assert_eq!((nlink(&fs, "/tmp"), nlink(&fs, "/etc")), (2, 4));
    assert_eq!(fs.lookup(d, b"..", Follow::Yes), at(&fs, "/etc"));
    assert_eq!(fs.path_of(d).unwrap(), b"/etc/moved");
    assert!(at(&fs, "/etc/moved/inside").is_ok());
    // Over an empty directory; not over a full one, a file, or by a file.
    mkdir(&mut fs, "/tmp/empty").unwrap();
    mkdir(&mut fs, "/tmp/full").unwrap();
    create(&mut fs, "/tmp/full/x");
    rename(&mut fs, "/etc/moved", "/tmp/empty").unwrap();
    assert_eq!(at(&fs, "/tmp/empty"), Ok(d));
    assert_eq!((nlink(&fs, "/tmp"), nlink(&fs, "/etc")), (4, 3));
    for (old, new, e) in [
        ("/tmp/empty", "/tmp/full", ENOTEMPTY),
        ("/tmp/empty", "/tmp/b", ENOTDIR),
        ("/tmp/b", "/tmp/full", EISDIR),
        ("/tmp/empty", "/tmp/empty/inside/x", ENOTDIR),
        ("/tmp/empty", "/tmp/empty/new", EINVAL),
        ("/tmp", "/tmp/empty/new", EINVAL),
        ("/tmp/full/x", "/tmp", ENOTEMPTY),
        ("/tmp/full/x", "/tmp/full", ENOTEMPTY),
        ("/tmp/.", "/tmp/z", EBUSY),
        ("/tmp/..", "/tmp/z", EBUSY),
        ("/", "/tmp/z", EBUSY),
        ("/tmp/b", "/tmp/.", EBUSY),
        ("/tmp/b", "/", EBUSY),
        ("/tmp/b/", "/tmp/z", ENOTDIR),
        ("/tmp/b", "/tmp/z/", ENOTDIR),
        ("/tmp/nope", "/tmp/z", ENOENT),
        ("/tmp/b", "/nope/z", ENOENT),
        ("/tmp/b", "/tmp/b/z", ENOTDIR),
    ] {
        assert_eq!(rename(&mut fs, old, new), Err(-e), "{old} -> {new}");
    }
    check(&fs);
    // Trailing slashes are fine on directories.
    rename(&mut fs, "/tmp/full/", "/tmp/full2/").unwrap();
    // Two names of one inode: nothing happens.
    fs.link(r, b"/tmp/b", r, b"/tmp/b2", Follow::No).unwrap();
    rename(&mut fs, "/tmp/b", "/tmp/b2").unwrap();
    assert_eq!((at(&fs, "/tmp/b"), at(&fs, "/tmp/b2")), (Ok(a), Ok(a)));
    rename(&mut fs, "/tmp/b", "/tmp/b").unwrap();
    assert_eq!(nlink(&fs, "/tmp/b"), 2);
    // RENAME_NOREPLACE, and flags not known.
    assert_eq!(
        fs.rename(r, b"/tmp/b", r, b"/tmp/full2", RENAME_NOREPLACE),
        Err(-EEXIST)
    );
    assert_eq!(
        fs.rename(r, b"/tmp/b", r, b"/tmp/.", RENAME_NOREPLACE),
        Err(-EEXIST)
    );
    assert_eq!(fs.rename(r, b"/tmp/b", r, b"/tmp/n", 2), Err(-EINVAL));
    fs.rename(r, b"/tmp/b", r, b"/tmp/n", RENAME_NOREPLACE)
        .unwrap();
    // A link is moved, not followed.
    let l = symlink(&mut fs, "/etc", "/tmp/l").unwrap();
    rename(&mut fs, "/tmp/l", "/tmp/l2").unwrap();
    assert_eq!(lat(&fs, "/tmp/l2"), Ok(l));
    // Relative to two directories.
    let (tmp, etc) = (at(&fs, "/tmp").unwrap(), at(&fs, "/etc").unwrap());
    fs.rename(tmp, b"n", etc, b"n", 0).unwrap();
    assert_eq!(at(&fs, "/etc/n"), Ok(a));
    check(&fs);
}

// ---- Attributes ----

#[test]
fn attributes_change() {
    let mut fs = initrd();
    let f = at(&fs, "/bin/xl").unwrap();
    fs.chmod(f, 0o106_4755).unwrap();
    assert_eq!(fs.stat(f).unwrap().mode, S_IFREG | 0o4755, "the type stays");
    fs.chown(f, None, None).unwrap();
    assert_eq!(fs.stat(f).unwrap().mode, S_IFREG | 0o4755);
    fs.chown(f, Some(1), None).unwrap();
    let st = fs.stat(f).unwrap();
    assert_eq!(
        (st.uid, st.gid, st.mode),
        (1, 0, S_IFREG | 0o755),
        "set-user-ID dropped"
    );
    fs.chmod(f, 0o2755).unwrap();
    fs.chown(f, None, Some(3)).unwrap();
    assert_eq!(
        fs.stat(f).unwrap().mode,
        S_IFREG | 0o755,
        "set-group-ID of an executable"
    );
    fs.chmod(f, 0o2745).unwrap();
    fs.chown(f, None, Some(3)).unwrap();
    assert_eq!(
        fs.stat(f).unwrap().mode,
        S_IFREG | 0o2745,
        "a mandatory-lock mark stays"
    );
    let d = at(&fs, "/tmp").unwrap();
    fs.chown(d, Some(2), Some(2)).unwrap();
    assert_eq!(fs.stat(d).unwrap().mode, S_IFDIR | 0o1777);
    fs.set_time(1234);
    fs.set_mtime(f, Some(99)).unwrap();
    assert_eq!(fs.stat(f).unwrap().mtime, 99);
    fs.set_mtime(f, None).unwrap();
    assert_eq!(fs.stat(f).unwrap().mtime, 1234);
    let gone = Ino(4321);
    assert_eq!(fs.chmod(gone, 0), Err(-ENOENT));
    assert_eq!(fs.chown(gone, None, None), Err(-ENOENT));
    assert_eq!(fs.set_mtime(gone, None), Err(-ENOENT));
    assert_eq!(fs.stat(gone), Err(-ENOENT));
    assert_eq!(fs.retain(gone), Err(-ENOENT));
    // What fstat copies out.
    let raw = fs
        .stat(at(&fs, "/etc/xen/hello.cfg").unwrap())
        .unwrap()
        .to_linux_bytes();
    assert_eq!(
        u32::from_le_bytes(raw[24..28].try_into().unwrap()),
        S_IFREG | 0o644
    );
    assert_eq!(u64::from_le_bytes(raw[48..56].try_into().unwrap()), 15);
    check(&fs);
}

#[test]
fn path_of_gives_the_working_directory() {
    let mut fs = initrd();
    assert_eq!(fs.path_of(fs.root()).unwrap(), b"/");
    assert_eq!(
        fs.path_of(at(&fs, "/etc/xen").unwrap()).unwrap(),
        b"/etc/xen"
    );
    assert_eq!(fs.path_of(at(&fs, "/bin/xl").unwrap()), Err(-ENOTDIR));
    let d = mkdir(&mut fs, "/tmp/d").unwrap();
    rename(&mut fs, "/tmp/d", "/etc/xen/e").unwrap();
    assert_eq!(fs.path_of(d).unwrap(), b"/etc/xen/e");
}

// ---- Listing ----

#[test]
fn getdents_writes_linux_dirent64_records() {
    let mut fs = initrd();
    let xen = at(&fs, "/etc/xen").unwrap();
    let etc = at(&fs, "/etc").unwrap();
    let mut buf = [0xaau8; 24];
    assert_eq!(fs.getdents(xen, 0, &mut buf), Ok((24, 1)));
    let mut dot = [0u8; 24];
    dot[..8].copy_from_slice(&xen.number().to_le_bytes());
    dot[8] = 1; // d_off: the next position
    dot[16] = 24; // d_reclen: 19 + ".\0", rounded up to 8
    dot[18] = 4; // DT_DIR
    dot[19] = b'.';
    assert_eq!(buf, dot);
    let all = list_with(&fs, xen, 4096);
    let expect = [
        (xen.number(), 1, 4, "."),
        (etc.number(), 2, 4, ".."),
        (
            lat(&fs, "/etc/xen/default.cfg").unwrap().number(),
            3,
            10,
            "default.cfg",
        ),
        (
            at(&fs, "/etc/xen/hello.cfg").unwrap().number(),
            4,
            8,
            "hello.cfg",
        ),
    ];
    let got: Vec<_> = all
        .iter()
        .map(|d| (d.ino, d.off, d.kind, d.name.as_str()))
        .collect();
    assert_eq!(got, expect, "in the order made (the archive's path order)");
    assert_eq!(names(&fs, "/"), [".", "..", "bin", "etc", "tmp"]);
    assert_eq!(
        list_with(&fs, fs.root(), 24)[1].ino,
        fs.root().number(),
        "/.. is /"
    );
    // One record at a time gives the same listing.
    assert_eq!(list_with(&fs, xen, 32), all);
    // A buffer too small for the next record: EINVAL; at the end: nothing.
    assert_eq!(fs.getdents(xen, 2, &mut [0; 31]), Err(-EINVAL));
    assert_eq!(fs.getdents(xen, 0, &mut []), Err(-EINVAL));
    assert_eq!(fs.getdents(xen, 5, &mut []), Ok((0, 5)));
    assert_eq!(fs.getdents(xen, u64::MAX, &mut buf), Ok((0, u64::MAX)));
    assert_eq!(
        fs.getdents(at(&fs, "/bin/xl").unwrap(), 0, &mut buf),
        Err(-ENOTDIR)
    );
    // Longest name: 19 + 255 + 1 = 275, rounded to 280.
    let long = "n".repeat(NAME_MAX);
    create(&mut fs, &alloc::format!("/tmp/{long}"));
    let tmp = at(&fs, "/tmp").unwrap();
    let mut big = [0u8; 280];
    assert_eq!(fs.getdents(tmp, 2, &mut big[..279]), Err(-EINVAL));
    assert_eq!(fs.getdents(tmp, 2, &mut big).map(|(n, _)| n), Ok(280));
    assert_eq!(decode(&big)[0].name, long);
    check(&fs);
}

#[test]
fn getdents_resumes_across_changes() {
    let mut fs = empty();
    for n in ["a", "b", "c", "d", "e"] {
        create(&mut fs, n);
    }
    let r = fs.root();
    let mut buf = [0u8; 24 * 3];
    let (n, pos) = fs.getdents(r, 0, &mut buf).unwrap();
    let first: Vec<_> = decode(&buf[..n]).into_iter().map(|d| d.name).collect();
    assert_eq!(first, [".", "..", "a"]);
    // Remove one listed and one not yet listed, add two, rename one still to come.
    unlink(&mut fs, "a").unwrap();
    unlink(&mut fs, "c").unwrap();
    create(&mut fs, "a");
    create(&mut fs, "0");
    rename(&mut fs, "d", "dd").unwrap();
    let mut rest = Vec::new();
    let mut pos = pos;
    loop {
        let (n, next) = fs.getdents(r, pos, &mut buf).unwrap();
        if n == 0 {
            break;
        }
        rest.extend(decode(&buf[..n]).into_iter().map(|d| d.name));
        pos = next;
    }
    assert_eq!(rest, ["b", "e", "a", "0", "dd"]);
    // Made after the end was reached: the next call returns it.
    create(&mut fs, "late");
    let (n, _) = fs.getdents(r, pos, &mut buf).unwrap();
    assert_eq!(decode(&buf[..n])[0].name, "late");
}

#[test]
fn listing_cookies_run_out_cleanly() {
    let mut fs = empty();
    let r = fs.root();
    if let Body::Dir(d) = &mut fs.inode_mut(r).unwrap().body {
        d.next_cookie = COOKIE_END - 1;
    }
    create(&mut fs, "last");
    assert_eq!(fs.open(r, b"more", O_CREAT, 0o644), Err(-ENOSPC));
    assert_eq!(mkdir(&mut fs, "more"), Err(-ENOSPC));
    assert_eq!(rename(&mut fs, "last", "other"), Err(-ENOSPC));
    let all = list_with(&fs, r, 4096);
    assert_eq!(all[2].off, i64::MAX, "the last d_off still fits");
    unlink(&mut fs, "last").unwrap();
    check(&fs);
}

// ---- Limits ----

#[test]
fn limits_bound_memory_and_inodes() {
    let base = INODE_COST + INODE_COST + entry_cost(b"f");
    let mut fs = Tmpfs::new(Limits {
        bytes: base + 2 * PAGE_COST,
        inodes: 3,
    });
    let r = fs.root();
    let f = create(&mut fs, "f");
    assert_eq!(
        fs.write_at(f, 0, &[1; 3 * PAGE_SIZE]),
        Ok(2 * PAGE_SIZE),
        "short write"
    );
    assert_eq!(fs.stat(f).unwrap().size, 2 * PAGE);
    assert_eq!(fs.write_at(f, 2 * PAGE, b"x"), Err(-ENOSPC));
    assert_eq!(fs.append(f, b"x"), Err(-ENOSPC));
    assert_eq!(fs.write_at(f, PAGE, b"in a page it has"), Ok(16));
    assert_eq!(fs.truncate(f, 1 << 40), Ok(()), "a hole costs nothing");
    assert_eq!(fs.open(r, b"g", O_CREAT, 0o644), Err(-ENOSPC));
    assert_eq!(mkdir(&mut fs, "g"), Err(-ENOSPC));
    assert_eq!(symlink(&mut fs, "f", "g"), Err(-ENOSPC));
    assert_eq!(fs.link(r, b"f", r, b"g", Follow::No), Err(-ENOSPC));
    assert_eq!(rename(&mut fs, "f", "longer"), Err(-ENOSPC));
    check(&fs);
    fs.truncate(f, 0).unwrap();
    let g = create(&mut fs, "g");
    assert_eq!(fs.usage().inodes, 3);
    assert_eq!(mkdir(&mut fs, "h"), Err(-ENOSPC), "inode limit");
    fs.link(r, b"g", r, b"h", Follow::No).unwrap();
    rename(&mut fs, "h", "i").unwrap();
    unlink(&mut fs, "i").unwrap();
    unlink(&mut fs, "g").unwrap();
    assert_eq!(fs.stat(g), Err(-ENOENT));
    unlink(&mut fs, "f").unwrap();
    assert_eq!(
        fs.usage(),
        Usage {
            bytes: INODE_COST,
            inodes: 1
        }
    );
    check(&fs);
}

// ---- Properties ----

/// A small world of names, so that operations meet each other.
fn a_path() -> impl Strategy<Value = String> {
    let part = prop_oneof![
        4 => Just("a"),
        4 => Just("b"),
        3 => Just("c"),
        1 => Just("."),
        1 => Just(".."),
    ];
    (
        proptest::collection::vec(part, 1..4),
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(|(parts, absolute, slash)| {
            let mut p = parts.join("/");
            if absolute {
                p.insert(0, '/');
            }
            if slash {
                p.push('/');
            }
            p
        })
}

#[derive(Clone, Debug)]
enum Op {
    Create(String, u32),
    Mkdir(String),
    Symlink(String, String),
    Link(String, String),
    Write(String, u64, usize),
    Truncate(String, u64),
    Unlink(String),
    Rmdir(String),
    Rename(String, String, u32),
    /// Open and hold, or let go of the oldest held.
    Hold(String),
    Let,
    Chdir(String),
}

fn an_op() -> impl Strategy<Value = Op> {
    let flags = prop_oneof![
        Just(O_CREAT),
        Just(O_CREAT | O_EXCL),
        Just(O_TRUNC),
        Just(O_NOFOLLOW)
    ];
    prop_oneof![
        3 => (a_path(), flags).prop_map(|(p, f)| Op::Create(p, f)),
        3 => a_path().prop_map(Op::Mkdir),
        2 => (a_path(), a_path()).prop_map(|(t, p)| Op::Symlink(t, p)),
        2 => (a_path(), a_path()).prop_map(|(o, n)| Op::Link(o, n)),
        3 => (a_path(), 0..3 * PAGE, 0..2 * PAGE_SIZE).prop_map(|(p, o, n)| Op::Write(p, o, n)),
        1 => (a_path(), 0..3 * PAGE).prop_map(|(p, n)| Op::Truncate(p, n)),
        2 => a_path().prop_map(Op::Unlink),
        2 => a_path().prop_map(Op::Rmdir),
        3 => (a_path(), a_path(), 0..2u32).prop_map(|(o, n, f)| Op::Rename(o, n, f)),
        2 => a_path().prop_map(Op::Hold),
        2 => Just(Op::Let),
        1 => a_path().prop_map(Op::Chdir),
    ]
}

/// Applies `op` from working directory `cwd`, holding what it opens in `held`.
fn apply(fs: &mut Tmpfs<'_>, cwd: &mut Ino, held: &mut Vec<Ino>, op: &Op) -> Result<(), i64> {
    let c = *cwd;
    match op {
        Op::Create(p, f) => fs.open(c, p.as_bytes(), *f | O_WRONLY, 0o644).map(drop),
        Op::Mkdir(p) => fs.mkdir(c, p.as_bytes(), 0o755).map(drop),
        Op::Symlink(t, p) => fs.symlink(t.as_bytes(), c, p.as_bytes()).map(drop),
        Op::Link(o, n) => fs.link(c, o.as_bytes(), c, n.as_bytes(), Follow::No),
        Op::Write(p, off, n) => {
            let ino = fs.open(c, p.as_bytes(), O_WRONLY, 0)?;
            fs.write_at(ino, *off, &vec![0x5a; *n]).map(drop)
        }
        Op::Truncate(p, n) => {
            let ino = fs.open(c, p.as_bytes(), O_WRONLY, 0)?;
            fs.truncate(ino, *n)
        }
        Op::Unlink(p) => fs.unlink(c, p.as_bytes()),
        Op::Rmdir(p) => fs.rmdir(c, p.as_bytes()),
        Op::Rename(o, n, f) => fs.rename(c, o.as_bytes(), c, n.as_bytes(), *f),
        Op::Hold(p) => {
            let ino = fs.lookup(c, p.as_bytes(), Follow::Yes)?;
            fs.retain(ino)?;
            held.push(ino);
            Ok(())
        }
        Op::Let => match held.first().copied() {
            Some(ino) => {
                held.remove(0);
                fs.release(ino)
            }
            None => Ok(()),
        },
        Op::Chdir(p) => {
            let ino = fs.open(c, p.as_bytes(), O_DIRECTORY, 0)?;
            fs.retain(ino)?;
            fs.release(c)?;
            *cwd = ino;
            Ok(())
        }
    }
}

/// Removes everything under `dir` (a test's `rm -rf`, by listing).
fn remove_all(fs: &mut Tmpfs<'_>, dir: Ino) {
    for d in list_with(fs, dir, 512).into_iter().skip(2) {
        let ino = Ino(d.ino);
        if d.kind == 4 {
            remove_all(fs, ino);
            fs.rmdir(dir, d.name.as_bytes()).unwrap();
        } else {
            fs.unlink(dir, d.name.as_bytes()).unwrap();
        }
    }
}

proptest! {
    /// Any sequence of operations keeps every invariant, failed operations change nothing,
    /// and once everything is let go and removed, all the memory has come back.
    #[test]
    fn invariants_hold_and_nothing_leaks(
        ops in proptest::collection::vec(an_op(), 1..60),
        pages in 0..24usize,
        inodes in 1..12usize,
    ) {
        let limits = Limits { bytes: 2000 + pages * PAGE_COST, inodes };
        let mut fs = Tmpfs::new(limits);
        let mut cwd = fs.root();
        fs.retain(cwd).unwrap();
        let mut held = Vec::new();
        for op in &ops {
            let before = fs.usage();
            let listing = list_with(&fs, fs.root(), 4096);
            let r = apply(&mut fs, &mut cwd, &mut held, op);
            check(&fs);
            if r.is_err() && !matches!(op, Op::Write(..)) {
                prop_assert_eq!(fs.usage(), before, "{:?} failed with {:?} but changed", op, r);
                prop_assert_eq!(&list_with(&fs, fs.root(), 4096), &listing);
            }
            // Everything named can be looked up and stat'ed.
            for d in list_with(&fs, fs.root(), 4096).iter().skip(2) {
                let ino = fs.lookup(fs.root(), d.name.as_bytes(), Follow::No).unwrap();
                prop_assert_eq!(ino.number(), d.ino);
                let st = fs.stat(ino).unwrap();
                prop_assert_eq!(((st.mode & S_IFMT) >> 12) as u8, d.kind);
            }
        }
        for ino in held.drain(..) {
            fs.release(ino).unwrap();
        }
        fs.release(cwd).unwrap();
        let root = fs.root();
        remove_all(&mut fs, root);
        check(&fs);
        prop_assert_eq!(fs.usage(), Usage { bytes: INODE_COST, inodes: 1 });
    }

    /// A listing read a few records at a time while the directory changes returns every
    /// entry present throughout exactly once, nothing twice, and positions that only grow.
    #[test]
    fn listings_survive_changes(
        start in proptest::collection::btree_set("[a-h]{1,2}", 0..12),
        steps in proptest::collection::vec((0..3u8, "[a-h]{1,2}", "[a-h]{1,2}", 24..100usize), 1..40),
    ) {
        let mut fs = empty();
        let r = fs.root();
        for n in &start {
            create(&mut fs, n);
        }
        let mut always: BTreeSet<String> = start.iter().cloned().collect();
        let mut seen: Vec<String> = Vec::new();
        let mut offs: Vec<i64> = Vec::new();
        let mut pos = 0;
        let mut done = false;
        for (what, x, y, chunk) in &steps {
            if !done {
                let mut buf = vec![0u8; *chunk];
                match fs.getdents(r, pos, &mut buf) {
                    Ok((0, _)) => done = true,
                    Ok((n, next)) => {
                        for d in decode(&buf[..n]) {
                            prop_assert!(at(&fs, &d.name).is_ok() || d.name == "." || d.name == "..");
                            offs.push(d.off);
                            seen.push(d.name);
                        }
                        pos = next;
                    }
                    Err(e) => prop_assert_eq!(e, -EINVAL, "only a record too big for the buffer"),
                }
            }
            let _ = match what {
                0 => fs.open(r, x.as_bytes(), O_CREAT, 0o644).map(drop),
                1 => fs.unlink(r, x.as_bytes()),
                _ => fs.rename(r, x.as_bytes(), r, y.as_bytes(), 0),
            };
            always.remove(x);
            if *what == 2 {
                always.remove(y);
            }
        }
        let mut buf = vec![0u8; 4096];
        loop {
            let (n, next) = fs.getdents(r, pos, &mut buf).unwrap();
            if n == 0 {
                break;
            }
            for d in decode(&buf[..n]) {
                offs.push(d.off);
                seen.push(d.name);
            }
            pos = next;
        }
        prop_assert!(offs.windows(2).all(|w| w[0] < w[1]), "positions grow: {:?}", offs);
        prop_assert_eq!(&seen[..2], &[".", ".."]);
        for name in &always {
            prop_assert_eq!(seen.iter().filter(|s| *s == name).count(), 1, "{}", name);
        }
        check(&fs);
    }
}
