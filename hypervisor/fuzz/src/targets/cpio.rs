//! `cpio`: dom0's initrd reader. Archives written by the crate's own writer from random files
//! must read back exactly (names, modes, data, and the directory view); the same archives,
//! damaged by mutations, and raw bytes must never panic the reader, and whatever it accepts
//! must be self-consistent (every entry inside the archive, lookups finding what was listed).

use xenia_dom0::cpio::{Archive, S_IFDIR, S_IFLNK, S_IFMT, S_IFREG, build, entries};

use crate::engine::{Input, Target};

pub const TARGET: Target = Target {
    name: "cpio",
    about: "cpio newc reader: writer round trips, damaged archives, no panics",
    run,
    seeds,
    max_len: 2048,
};

fn seeds() -> Vec<Vec<u8>> {
    vec![
        build(&[
            (".", S_IFDIR | 0o755, b""),
            ("bin", S_IFDIR | 0o755, b""),
            ("bin/xl", S_IFREG | 0o755, b"\x7fELF"),
        ]),
        build(&[
            ("etc", S_IFDIR | 0o755, b""),
            ("etc/a.cfg", S_IFREG | 0o644, b"name = \"a\"\n"),
            ("l", S_IFLNK | 0o777, b"etc/a.cfg"),
        ]),
    ]
}

fn run(data: &[u8]) {
    let mut input = Input::new(data);
    match input.below(3) {
        0 => round_trip(&mut input),
        1 => {
            // A written archive, then damaged at a few places.
            let mut bytes = random_archive(&mut input).0;
            for _ in 0..1 + input.below(4) {
                if bytes.is_empty() {
                    break;
                }
                let at = input.index(bytes.len());
                bytes[at] = input.u8();
            }
            if input.bool() {
                let cut = input.index(bytes.len() + 1);
                bytes.truncate(cut);
            }
            read_anything(&bytes);
        }
        _ => read_anything(input.rest()),
    }
}

/// Random files with parents first: (name, mode, data).
/// A file to archive: path, mode, data.
type File = (String, u32, Vec<u8>);

fn random_archive(input: &mut Input) -> (Vec<u8>, Vec<File>) {
    let mut files: Vec<File> = Vec::new();
    let mut dirs: Vec<String> = Vec::new();
    for i in 0..input.below(8) {
        let parent = if dirs.is_empty() || input.bool() {
            String::new()
        } else {
            format!("{}/", dirs[input.index(dirs.len())])
        };
        let name = format!("{parent}{}{i}", ["d", "f", "x.cfg", "a b"][input.index(4)]);
        let perms = input.u16() as u32 & 0o7777;
        match input.below(3) {
            0 => {
                dirs.push(name.clone());
                files.push((name, S_IFDIR | perms, Vec::new()));
            }
            1 => {
                let len = input.below(40) as usize;
                let data = input.bytes(len).to_vec();
                files.push((name, S_IFREG | perms, data));
            }
            _ => files.push((name, S_IFLNK | 0o777, b"target".to_vec())),
        }
    }
    let view: Vec<(&str, u32, &[u8])> = files
        .iter()
        .map(|(n, m, d)| (n.as_str(), *m, d.as_slice()))
        .collect();
    (build(&view), files)
}

fn round_trip(input: &mut Input) {
    let (bytes, files) = random_archive(input);
    let read: Vec<_> = entries(&bytes)
        .collect::<Result<_, _>>()
        .unwrap_or_else(|e| panic!("own archive refused: {e}"));
    assert_eq!(read.len(), files.len(), "entry count");
    for (e, (name, mode, data)) in read.iter().zip(&files) {
        assert_eq!(e.name, name, "name");
        assert_eq!(e.mode, *mode, "mode of {name}");
        assert_eq!(e.data, data.as_slice(), "data of {name}");
    }
    let archive = Archive::parse(&bytes).unwrap_or_else(|e| panic!("own archive refused: {e}"));
    assert_eq!(archive.len(), files.len(), "directory view size");
    for (name, mode, data) in &files {
        let e = archive
            .lookup(name)
            .unwrap_or_else(|| panic!("{name} not found"));
        assert_eq!(
            (e.mode, e.data),
            (*mode, data.as_slice()),
            "lookup of {name}"
        );
        if mode & S_IFMT == S_IFDIR {
            assert!(
                archive.list(name).is_some(),
                "directory {name} not listable"
            );
        }
    }
}

fn read_anything(bytes: &[u8]) {
    let base = bytes.as_ptr() as usize;
    for e in entries(bytes) {
        let Ok(e) = e else { break };
        let start = e.data.as_ptr() as usize;
        assert!(
            e.data.is_empty() || (start >= base && start + e.data.len() <= base + bytes.len()),
            "entry data outside the archive"
        );
        assert!(e.offset < bytes.len(), "entry offset outside the archive");
        let _ = (e.is_dir(), e.is_file(), e.permissions(), e.link_target());
    }
    if let Ok(archive) = Archive::parse(bytes) {
        let names: Vec<String> = archive.iter().map(|(n, _)| n.to_string()).collect();
        assert_eq!(names.len(), archive.len(), "iter and len disagree");
        for n in &names {
            assert!(archive.lookup(n).is_some(), "listed {n:?} not found");
            let _ = archive.list(n);
        }
    }
}
