//! The file system against Linux itself: random operations applied to it and, through the
//! same system calls, to a directory of the host's file system, with every result (the
//! errno included) and the whole tree compared after each. The host is the reference for
//! what "the errno Linux would return" means.
//!
//! The operations work under a chain of [`DEPTH`] directories, mirrored in both, so that
//! `..` (in paths and in link targets, which climb at most once each) never leaves the
//! test's directory on the host: the walk is bounded by 40 links.

use super::*;
use std::ffi::OsStr;
use std::fs as host;
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::string::ToString;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Levels of directories above where the operations start.
const DEPTH: usize = 50;

/// Link targets: relative (the host's root is not the test's), each climbing at most once.
const TARGETS: &[&str] = &[
    "a", "b", "c", "..", "../a", "a/b", "b/c", "a/..", ".", "c/", "b/a/",
];

/// A path relative to where the operations start.
fn rel_path() -> impl Strategy<Value = String> {
    let part = prop_oneof![
        4 => Just("a"),
        4 => Just("b"),
        3 => Just("c"),
        1 => Just("."),
        1 => Just(".."),
    ];
    (proptest::collection::vec(part, 1..4), any::<bool>()).prop_map(|(parts, slash)| {
        let mut p = parts.join("/");
        if slash {
            p.push('/');
        }
        p
    })
}

#[derive(Clone, Debug)]
enum HostOp {
    Open(String, u32),
    Mkdir(String),
    Symlink(&'static str, String),
    Link(String, String),
    Write(String, u64, usize),
    Truncate(String, u64),
    Read(String),
    Unlink(String),
    Rmdir(String),
    Rename(String, String),
    Readlink(String),
    Stat(String, Follow),
}

fn host_op() -> impl Strategy<Value = HostOp> {
    let access = prop_oneof![Just(0), Just(O_WRONLY), Just(O_RDWR)];
    let extra = proptest::sample::subsequence(
        vec![O_CREAT, O_EXCL, O_TRUNC, O_DIRECTORY, O_NOFOLLOW],
        0..3,
    );
    let flags = (access, extra).prop_map(|(a, e)| e.into_iter().fold(a, |f, x| f | x));
    let target = proptest::sample::select(TARGETS);
    let follow = prop_oneof![Just(Follow::Yes), Just(Follow::No)];
    prop_oneof![
        4 => (rel_path(), flags).prop_map(|(p, f)| HostOp::Open(p, f)),
        4 => rel_path().prop_map(HostOp::Mkdir),
        3 => (target, rel_path()).prop_map(|(t, p)| HostOp::Symlink(t, p)),
        2 => (rel_path(), rel_path()).prop_map(|(o, n)| HostOp::Link(o, n)),
        3 => (rel_path(), 0..3 * PAGE, 0..2 * PAGE_SIZE).prop_map(|(p, o, n)| HostOp::Write(p, o, n)),
        1 => (rel_path(), 0..3 * PAGE).prop_map(|(p, n)| HostOp::Truncate(p, n)),
        2 => rel_path().prop_map(HostOp::Read),
        2 => rel_path().prop_map(HostOp::Unlink),
        2 => rel_path().prop_map(HostOp::Rmdir),
        4 => (rel_path(), rel_path()).prop_map(|(o, n)| HostOp::Rename(o, n)),
        1 => rel_path().prop_map(HostOp::Readlink),
        2 => (rel_path(), follow).prop_map(|(p, f)| HostOp::Stat(p, f)),
    ]
}

/// What an operation gave back, in terms both sides can show.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Seen {
    Done,
    Count(usize),
    Bytes(Vec<u8>),
    /// Type, links and (for anything but a directory, whose size is the file system's own)
    /// size.
    Stat(u32, u64, Option<u64>),
}

fn errno(e: std::io::Error) -> i64 {
    -i64::from(e.raw_os_error().expect("an error from the system"))
}

/// A directory of the host's, removed when the test is done: in `/dev/shm` if it can be
/// (Linux's own tmpfs, so nothing waits on a disk), else in the temporary directory.
struct Scratch(PathBuf);

impl Scratch {
    fn new() -> Self {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let name = std::format!("xenia-tmpfs-{}-{n}", std::process::id());
        for dir in [PathBuf::from("/dev/shm"), std::env::temp_dir()] {
            let top = dir.join(&name);
            let _ = host::remove_dir_all(&top);
            if host::create_dir(&top).is_ok() {
                return Self(top);
            }
        }
        panic!("no scratch directory for {name}");
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = host::remove_dir_all(&self.0);
    }
}

fn join(base: &Path, rel: &str) -> PathBuf {
    let mut bytes = base.as_os_str().as_bytes().to_vec();
    bytes.push(b'/');
    bytes.extend_from_slice(rel.as_bytes());
    PathBuf::from(OsStr::from_bytes(&bytes))
}

fn on_host(base: &Path, op: &HostOp) -> Result<Seen, i64> {
    let p = |rel: &str| join(base, rel);
    let open = |rel: &str, flags: u32| {
        let access = flags & 3;
        host::OpenOptions::new()
            .read(access != O_WRONLY)
            .write(access != 0)
            .custom_flags((flags & !3) as i32)
            .mode(0o644)
            .open(p(rel))
            .map_err(errno)
    };
    Ok(match op {
        HostOp::Open(rel, flags) => open(rel, *flags).map(|_| Seen::Done)?,
        HostOp::Mkdir(rel) => host::create_dir(p(rel))
            .map(|()| Seen::Done)
            .map_err(errno)?,
        HostOp::Symlink(t, rel) => std::os::unix::fs::symlink(t, p(rel))
            .map(|()| Seen::Done)
            .map_err(errno)?,
        HostOp::Link(o, n) => host::hard_link(p(o), p(n))
            .map(|()| Seen::Done)
            .map_err(errno)?,
        HostOp::Write(rel, off, n) => {
            let f = open(rel, O_WRONLY)?;
            Seen::Count(f.write_at(&vec![0x5a; *n], *off).map_err(errno)?)
        }
        HostOp::Truncate(rel, n) => {
            let f = open(rel, O_WRONLY)?;
            f.set_len(*n).map(|()| Seen::Done).map_err(errno)?
        }
        HostOp::Read(rel) => {
            let mut f = open(rel, 0)?;
            let mut data = Vec::new();
            f.read_to_end(&mut data).map_err(errno)?;
            Seen::Bytes(data)
        }
        HostOp::Unlink(rel) => host::remove_file(p(rel))
            .map(|()| Seen::Done)
            .map_err(errno)?,
        HostOp::Rmdir(rel) => host::remove_dir(p(rel))
            .map(|()| Seen::Done)
            .map_err(errno)?,
        HostOp::Rename(o, n) => host::rename(p(o), p(n))
            .map(|()| Seen::Done)
            .map_err(errno)?,
        HostOp::Readlink(rel) => Seen::Bytes(
            host::read_link(p(rel))
                .map_err(errno)?
                .as_os_str()
                .as_bytes()
                .to_vec(),
        ),
        HostOp::Stat(rel, follow) => {
            let m = match follow {
                Follow::Yes => host::metadata(p(rel)),
                Follow::No => host::symlink_metadata(p(rel)),
            }
            .map_err(errno)?;
            let kind = m.mode() & S_IFMT;
            Seen::Stat(kind, m.nlink(), (kind != S_IFDIR).then_some(m.size()))
        }
    })
}

fn on_tmpfs(fs: &mut Tmpfs<'_>, at: Ino, op: &HostOp) -> Result<Seen, i64> {
    let b = |s: &str| s.as_bytes().to_vec();
    Ok(match op {
        HostOp::Open(rel, flags) => fs.open(at, &b(rel), *flags, 0o644).map(|_| Seen::Done)?,
        HostOp::Mkdir(rel) => fs.mkdir(at, &b(rel), 0o755).map(|_| Seen::Done)?,
        HostOp::Symlink(t, rel) => fs.symlink(t.as_bytes(), at, &b(rel)).map(|_| Seen::Done)?,
        HostOp::Link(o, n) => fs
            .link(at, &b(o), at, &b(n), Follow::No)
            .map(|()| Seen::Done)?,
        HostOp::Write(rel, off, n) => {
            let f = fs.open(at, &b(rel), O_WRONLY, 0)?;
            Seen::Count(fs.write_at(f, *off, &vec![0x5a; *n])?)
        }
        HostOp::Truncate(rel, n) => {
            let f = fs.open(at, &b(rel), O_WRONLY, 0)?;
            fs.truncate(f, *n).map(|()| Seen::Done)?
        }
        HostOp::Read(rel) => {
            let f = fs.open(at, &b(rel), 0, 0)?;
            fs.read_at(f, 0, &mut [])?;
            Seen::Bytes(read_all(fs, f))
        }
        HostOp::Unlink(rel) => fs.unlink(at, &b(rel)).map(|()| Seen::Done)?,
        HostOp::Rmdir(rel) => fs.rmdir(at, &b(rel)).map(|()| Seen::Done)?,
        HostOp::Rename(o, n) => fs.rename(at, &b(o), at, &b(n), 0).map(|()| Seen::Done)?,
        HostOp::Readlink(rel) => Seen::Bytes(fs.readlink(at, &b(rel))?.to_vec()),
        HostOp::Stat(rel, follow) => {
            let st = fs.stat(fs.lookup(at, &b(rel), *follow)?)?;
            let kind = st.mode & S_IFMT;
            Seen::Stat(kind, st.nlink, (kind != S_IFDIR).then_some(st.size))
        }
    })
}

/// A tree as both sides can show it: path to type, links and contents (a file's bytes, a
/// link's target).
type Tree = BTreeMap<String, (u32, u64, Vec<u8>)>;

fn host_tree(dir: &Path, prefix: &str, out: &mut Tree) {
    for entry in host::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name().to_str().unwrap().to_string();
        let path = std::format!("{prefix}/{name}");
        let m = host::symlink_metadata(entry.path()).unwrap();
        let kind = m.mode() & S_IFMT;
        let data = match kind {
            S_IFREG => host::read(entry.path()).unwrap(),
            S_IFLNK => host::read_link(entry.path())
                .unwrap()
                .as_os_str()
                .as_bytes()
                .to_vec(),
            _ => Vec::new(),
        };
        out.insert(path.clone(), (kind, m.nlink(), data));
        if kind == S_IFDIR {
            host_tree(&entry.path(), &path, out);
        }
    }
}

fn tmpfs_tree(fs: &Tmpfs<'_>, dir: Ino, prefix: &str, out: &mut Tree) {
    for d in list_with(fs, dir, 200).into_iter().skip(2) {
        let ino = Ino(d.ino);
        let st = fs.stat(ino).unwrap();
        let kind = st.mode & S_IFMT;
        assert_eq!(u32::from(d.kind) << 12, kind, "d_type");
        let path = std::format!("{prefix}/{}", d.name);
        let data = match kind {
            S_IFREG => read_all(fs, ino),
            S_IFLNK => fs.readlink(dir, d.name.as_bytes()).unwrap().to_vec(),
            _ => Vec::new(),
        };
        out.insert(path.clone(), (kind, st.nlink, data));
        if kind == S_IFDIR {
            tmpfs_tree(fs, ino, &path, out);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(160))]

    /// Every operation returns what Linux returns, errno included, and leaves the same tree.
    #[test]
    fn behaves_as_linux(ops in proptest::collection::vec(host_op(), 1..30)) {
        let scratch = Scratch::new();
        let chain = ["d"; DEPTH].join("/");
        let base = join(&scratch.0, &chain);
        host::create_dir_all(&base).unwrap();
        let mut fs = empty();
        let mut at = fs.root();
        for _ in 0..DEPTH {
            at = fs.mkdir(at, b"d", 0o755).unwrap();
        }
        let prelude = [
            HostOp::Mkdir("a".into()),
            HostOp::Mkdir("b".into()),
            HostOp::Mkdir("a/b".into()),
            HostOp::Open("c".into(), O_CREAT | O_WRONLY),
            HostOp::Write("c".into(), 10, 100),
            HostOp::Open("a/c".into(), O_CREAT | O_WRONLY),
            HostOp::Open("b/a".into(), O_CREAT | O_WRONLY),
            HostOp::Symlink("../a", "b/c".into()),
            HostOp::Symlink("b/a/", "a/a".into()),
            HostOp::Symlink("a/b", "b/b".into()),
        ];
        for op in prelude.iter().chain(&ops) {
            let want = on_host(&base, op);
            let got = on_tmpfs(&mut fs, at, op);
            prop_assert_eq!(&got, &want, "{:?}", op);
            check(&fs);
            let (mut theirs, mut ours) = (Tree::new(), Tree::new());
            host_tree(&scratch.0, "", &mut theirs);
            tmpfs_tree(&fs, fs.root(), "", &mut ours);
            prop_assert_eq!(&ours, &theirs, "after {:?}", op);
        }
    }
}
