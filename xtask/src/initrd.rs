//! dom0's initrd, `target/xenia/initrd.cpio`: a cpio "newc" archive (written by
//! `xenia_dom0::cpio::build`, read by the same module in dom0's kernel) holding
//!
//! ```text
//! /bin/xl                  the toolstack (0755)
//! /bin/xen-hptool          CPU and memory hot-plug (0755)
//! /bin/xentop              the table of domains, as `xl top` shows it (0755)
//! /bin/xenstore            Xen's xenstore client, and its names as links to it:
//! /bin/xenstore-ls, -read, -write, -rm, -list, -exists, -watch, -chmod
//! /etc/xen/<name>.cfg      every file of dom0-tools/etc/xen/ (domain configurations)
//! /boot/echo.elf           the demo guest kernels the configurations name
//! /boot/compute.elf
//! /boot/kv.elf
//! /boot/web.elf
//! /boot/debian/vmlinuz     Debian's Xen PV Linux kernel and its initramfs, and
//! /boot/debian/initrd.img  /etc/xen/debian.cfg, when the package could be fetched
//!                          (`crate::debian`)
//! ```
//!
//! The archive is reproducible (fixed inode numbers, owners and times, files in a fixed
//! order), and the file is only rewritten when its bytes change, so the image cache sees an
//! unchanged initrd as unchanged. Every configuration is checked first with dom0-tools' xl.cfg
//! parser: it must parse without a warning, and its `kernel` (and `ramdisk`) must be a file
//! of the initrd.

use std::fs;
use std::path::{Path, PathBuf};

use dom0_tools::xlcfg;
use xenia_dom0::cpio::{self, S_IFDIR, S_IFMT, S_IFREG};
use xenia_tests::{INITRD_ARTIFACT, TEST_INITRD_ARTIFACT, Workspace};

use crate::debian::Guest;

/// The configurations' directory in the repository.
pub const CONFIG_DIR: &str = "dom0-tools/etc/xen";
/// Where configurations go in the initrd.
const CONFIG_DEST: &str = "etc/xen";
/// dom0's programs (built together by `userland::build_programs`) that go to `/bin/`.
pub const PROGRAMS: &[&str] = &["xl", "xen-hptool", "xentop", "xenstore"];
/// The names Xen's xenstore client is run under, each a link to `/bin/xenstore` (it
/// looks at the name it was run under, as Xen's does).
pub const XENSTORE_LINKS: &[&str] = &[
    "xenstore-chmod",
    "xenstore-exists",
    "xenstore-list",
    "xenstore-ls",
    "xenstore-read",
    "xenstore-rm",
    "xenstore-watch",
    "xenstore-write",
];
/// The guest kernels (artifacts of `target/xenia/`) that go to `/boot/`.
pub const GUESTS: &[&str] = &["echo.elf", "compute.elf", "kv.elf", "web.elf"];
/// Guest kernels only the scenarios' initrd has, in `/boot`.
pub const TEST_GUESTS: &[&str] = &["testguest.elf", "xenpv.elf"];

/// A file of the initrd: path (relative to its root), mode, contents.
pub type File = (String, u32, Vec<u8>);

/// The initrd's entries, parents before children, from its inputs: dom0's programs, the
/// configurations and the guest kernels (each a file name and its bytes).
pub fn contents(
    programs: &[(String, Vec<u8>)],
    configs: &[(String, Vec<u8>)],
    guests: &[(String, Vec<u8>)],
) -> Vec<File> {
    const DIR: u32 = S_IFDIR | 0o755;
    const PROGRAM: u32 = S_IFREG | 0o755;
    const DATA: u32 = S_IFREG | 0o644;
    let mut files: Vec<File> = vec![("bin".into(), DIR, Vec::new())];
    let mut programs: Vec<&(String, Vec<u8>)> = programs.iter().collect();
    programs.sort();
    let has_xenstore = programs.iter().any(|(name, _)| name == "xenstore");
    let mut bin: Vec<File> = programs
        .into_iter()
        .map(|(name, data)| (format!("bin/{name}"), PROGRAM, data.clone()))
        .collect();
    if has_xenstore {
        bin.extend(XENSTORE_LINKS.iter().map(|name| {
            (
                format!("bin/{name}"),
                cpio::S_IFLNK | 0o777,
                b"xenstore".to_vec(),
            )
        }));
        bin.sort();
    }
    files.extend(bin);
    files.push(("boot".into(), DIR, Vec::new()));
    let mut guests: Vec<&(String, Vec<u8>)> = guests.iter().collect();
    guests.sort();
    files.extend(
        guests
            .into_iter()
            .map(|(name, data)| (format!("boot/{name}"), DATA, data.clone())),
    );
    files.push(("etc".into(), DIR, Vec::new()));
    files.push((CONFIG_DEST.into(), DIR, Vec::new()));
    let mut configs: Vec<&(String, Vec<u8>)> = configs.iter().collect();
    configs.sort();
    files.extend(
        configs
            .into_iter()
            .map(|(name, data)| (format!("{CONFIG_DEST}/{name}"), DATA, data.clone())),
    );
    // Mount points as a Linux root has them: `/proc` (dom0's kernel serves it) and a
    // world-writable, sticky `/tmp`.
    files.push(("proc".into(), S_IFDIR | 0o555, Vec::new()));
    files.push(("tmp".into(), S_IFDIR | 0o1777, Vec::new()));
    files
}

/// The archive of `files`.
pub fn archive(files: &[File]) -> Vec<u8> {
    let entries: Vec<(&str, u32, &[u8])> = files
        .iter()
        .map(|(path, mode, data)| (path.as_str(), *mode, data.as_slice()))
        .collect();
    cpio::build(&entries)
}

/// Checks every configuration (file name, text) as xl will read it in dom0: no error, no
/// warning, and the files it names exist among `files`.
pub fn check_configs(configs: &[(String, Vec<u8>)], files: &[File]) -> Result<(), String> {
    let exists = |path: &str| {
        let path = path.trim_start_matches('/');
        files
            .iter()
            .any(|(p, mode, _)| p == path && mode & S_IFMT == S_IFREG)
    };
    for (name, text) in configs {
        let shown = format!("{CONFIG_DIR}/{name}");
        let parsed = xlcfg::parse_domain_config(&shown, text, &[]).map_err(|e| e.to_string())?;
        if !parsed.warnings.is_empty() {
            return Err(parsed.warnings.join("\n"));
        }
        let spec = parsed.spec;
        for path in std::iter::once(&spec.kernel).chain(spec.ramdisk.as_ref()) {
            if !exists(path) {
                return Err(format!("{shown}: {path} is not in dom0's initrd"));
            }
        }
    }
    Ok(())
}

/// The configurations of `dir`: every `*.cfg`, by name.
pub fn read_configs(dir: &Path) -> Result<Vec<(String, Vec<u8>)>, String> {
    let entries = fs::read_dir(dir).map_err(|e| format!("cannot list {}: {e}", dir.display()))?;
    let mut configs = Vec::new();
    for entry in entries {
        let path = entry
            .map_err(|e| format!("cannot list {}: {e}", dir.display()))?
            .path();
        let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        if name.ends_with(".cfg") {
            let data =
                fs::read(&path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
            configs.push((name.to_string(), data));
        }
    }
    configs.sort();
    Ok(configs)
}

/// Writes `target/xenia/initrd.cpio` from dom0's built programs in `bin_dir` (each of
/// [`PROGRAMS`]), the built guest kernels and, when `busybox` is given, Debian's static
/// busybox as `/bin/busybox` with its applets [`BUSYBOX_APPLETS`] as links to it in `/bin`
/// and the login shell's `/etc/profile` ([`PROFILE`]), unless it already holds exactly those
/// bytes; returns its path.
pub fn build(
    ws: &Workspace,
    bin_dir: &Path,
    busybox: Option<&Path>,
    debian: Option<&Guest>,
) -> Result<PathBuf, String> {
    build_with(ws, bin_dir, None, busybox, debian)
}

/// `/etc/profile`, which dom0's console shell (busybox's ash, a login shell) reads first.
pub const PROFILE: &str = "\
# /etc/profile: read by dom0's console shell (busybox ash) as it starts.
# dom0's root is a tmpfs in memory: what is written here is lost at the next boot.
export PS1='dom0# '
# Without -f, busybox's poweroff and reboot ask an init to do it, and dom0 has none.
alias poweroff='poweroff -f' reboot='reboot -f' halt='halt -f'
# brctl and ip as far as dom0 has them (busybox's need sockets and /sys): the bridge xenbr0
# and dom0's address, as dom0's kernel writes them in /proc/net.
brctl() { if [ $# = 0 ] || [ \"$1\" = show ]; then cat /proc/net/bridge; else echo \"brctl: only 'brctl show' here\" >&2; return 1; fi; }
ip() { case \"$1\" in a|addr|address) cat /proc/net/addr;; *) echo \"ip: only 'ip addr' here\" >&2; return 1;; esac; }
";

/// The scenarios' initrd, `target/xenia/initrd-test.cpio`: the default one (busybox too,
/// when given) plus the test programs (`/bin/probe`, `/bin/peerbench`: each file of
/// `test_programs` under its own name) and the test guest `/boot/testguest.elf`
/// ([`TEST_GUESTS`]).
pub fn build_test(
    ws: &Workspace,
    bin_dir: &Path,
    test_programs: &[PathBuf],
    busybox: Option<&Path>,
    debian: Option<&Guest>,
) -> Result<PathBuf, String> {
    build_with(ws, bin_dir, Some(test_programs), busybox, debian)
}

/// The busybox applets the initrds link in `/bin` (issue 14's list, what a shell script
/// needs, and `poweroff`/`reboot`/`halt`).
pub const BUSYBOX_APPLETS: &[&str] = &[
    "awk",
    "basename",
    "blockdev",
    "cat",
    "chmod",
    "clear",
    "cmp",
    "cp",
    "cut",
    "date",
    "dd",
    "df",
    "diff",
    "dirname",
    "dmesg",
    "du",
    "echo",
    "env",
    "expr",
    "false",
    "find",
    "free",
    "grep",
    "halt",
    "head",
    "hexdump",
    "hostname",
    "id",
    "kill",
    "less",
    "ln",
    "ls",
    "md5sum",
    "mkdir",
    "more",
    "mv",
    "od",
    "poweroff",
    "printf",
    "ps",
    "pwd",
    "readlink",
    "reboot",
    "rm",
    "rmdir",
    "sed",
    "seq",
    "sh",
    "sha256sum",
    "sleep",
    "sort",
    "stat",
    "sync",
    "tail",
    "tee",
    "test",
    "time",
    "top",
    "touch",
    "tr",
    "true",
    "uname",
    "uniq",
    "uptime",
    "vi",
    "watch",
    "wc",
    "xargs",
    "xxd",
    "yes",
];

fn build_with(
    ws: &Workspace,
    bin_dir: &Path,
    test_programs: Option<&[PathBuf]>,
    busybox: Option<&Path>,
    debian: Option<&Guest>,
) -> Result<PathBuf, String> {
    let read =
        |path: &Path| fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()));
    let mut configs = read_configs(&ws.root().join(CONFIG_DIR))?;
    if debian.is_some() {
        configs.push((
            crate::debian::CONFIG_NAME.to_string(),
            crate::debian::CONFIG.as_bytes().to_vec(),
        ));
    }
    // Guest kernels go in without their debug information, as distributions ship stripped
    // kernels: `xl create` reads the whole file (1.7 MB unstripped, 80 KB stripped for the
    // demos), and dom0 maps every page it reads into (issue 13's creation time).
    let guest = |name: &str| {
        let path = ws.require_artifact(name)?;
        strip_elf(&read(&path)?).map_err(|e| format!("{}: {e}", path.display()))
    };
    let mut guests = GUESTS
        .iter()
        .map(|name| Ok((name.to_string(), guest(name)?)))
        .collect::<Result<Vec<_>, String>>()?;
    if test_programs.is_some() {
        // The scenarios also create test guests from dom0 (`xl create ... kernel=...`).
        for name in TEST_GUESTS {
            guests.push((name.to_string(), guest(name)?));
        }
    }
    let programs = PROGRAMS
        .iter()
        .map(|name| Ok((name.to_string(), read(&bin_dir.join(name))?)))
        .collect::<Result<Vec<_>, String>>()?;
    let mut files = contents(&programs, &configs, &guests);
    if let Some(guest) = debian {
        add_debian(&mut files, guest);
    }
    check_configs(&configs, &files)?;
    let name = match test_programs {
        Some(test_programs) => {
            for program in test_programs {
                let file_name = program
                    .file_name()
                    .and_then(|n| n.to_str())
                    .ok_or_else(|| format!("{}: not a program's file", program.display()))?;
                let path = format!("bin/{file_name}");
                // Among the other programs, in name order.
                let at = 1 + files
                    .iter()
                    .filter(|(p, _, _)| p.starts_with("bin/") && *p < path)
                    .count();
                files.insert(at, (path, S_IFREG | 0o755, read(program)?));
            }
            TEST_INITRD_ARTIFACT
        }
        None => INITRD_ARTIFACT,
    };
    if let Some(busybox) = busybox {
        let mut extra = vec![("bin/busybox".to_string(), S_IFREG | 0o755, read(busybox)?)];
        for applet in BUSYBOX_APPLETS {
            let path = format!("bin/{applet}");
            if !files.iter().any(|(p, _, _)| *p == path) {
                extra.push((path, cpio::S_IFLNK | 0o777, b"busybox".to_vec()));
            }
        }
        for entry in extra {
            let at = 1 + files
                .iter()
                .filter(|(p, _, _)| p.starts_with("bin/") && *p < entry.0)
                .count();
            files.insert(at, entry);
        }
        let at = files
            .iter()
            .position(|(p, _, _)| p == "etc")
            .map_or(files.len(), |i| i + 1);
        // Who root is, for `ps`, `ls -l` and `id` (dom0's programs all run as root).
        let etc = [
            ("etc/group", "root:x:0:\n"),
            ("etc/passwd", "root:x:0:0:root:/:/bin/sh\n"),
            ("etc/profile", PROFILE),
        ];
        for (name, text) in etc.into_iter().rev() {
            files.insert(at, (name.into(), S_IFREG | 0o644, text.as_bytes().to_vec()));
        }
    }
    let bytes = archive(&files);
    let path = ws.artifact(name);
    if fs::read(&path).is_ok_and(|old| old == bytes) {
        return Ok(path);
    }
    let partial = ws.artifact(&format!("{name}.partial"));
    fs::write(&partial, &bytes).map_err(|e| format!("cannot write {}: {e}", partial.display()))?;
    fs::rename(&partial, &path).map_err(|e| format!("cannot create {}: {e}", path.display()))?;
    Ok(path)
}

/// Adds Debian's kernel and its initramfs ([`crate::debian`]) under `/boot/debian/`, after the
/// other guest kernels.
fn add_debian(files: &mut Vec<File>, guest: &Guest) {
    let at = files
        .iter()
        .rposition(|(p, _, _)| p == "boot" || p.starts_with("boot/"))
        .map_or(files.len(), |i| i + 1);
    let entries = [
        ("boot/debian".to_string(), S_IFDIR | 0o755, Vec::new()),
        (
            crate::debian::INITRD_PATH.to_string(),
            S_IFREG | 0o644,
            guest.initrd.clone(),
        ),
        (
            crate::debian::KERNEL_PATH.to_string(),
            S_IFREG | 0o644,
            guest.vmlinuz.clone(),
        ),
    ];
    for (i, entry) in entries.into_iter().enumerate() {
        files.insert(at + i, entry);
    }
}

/// An ELF-64 executable without what loading it does not need: the file cut after the last
/// byte a program header (or the program header table) covers, the section header table
/// dropped (`e_shoff`, `e_shnum`, `e_shstrndx` zero). The Xen notes a PV kernel carries are
/// read from its `PT_NOTE` segment, so they stay. Debug sections live past the segments, in
/// the part cut off.
pub fn strip_elf(elf: &[u8]) -> Result<Vec<u8>, String> {
    let u16_at = |at: usize| {
        elf.get(at..at + 2)
            .map(|b| u16::from_le_bytes([b[0], b[1]]))
    };
    let u64_at = |at: usize| {
        elf.get(at..at + 8)
            .map(|b| u64::from_le_bytes(b.try_into().expect("8 bytes")))
    };
    if elf.get(..6) != Some(b"\x7fELF\x02\x01".as_slice()) {
        return Err("not a little-endian ELF-64 file".into());
    }
    let bad = || "truncated ELF header or program headers".to_string();
    let phoff = u64_at(0x20).ok_or_else(bad)?;
    let phentsize = u64::from(u16_at(0x36).ok_or_else(bad)?);
    let phnum = u64::from(u16_at(0x38).ok_or_else(bad)?);
    let mut end = phoff
        .checked_add(phentsize.checked_mul(phnum).ok_or_else(bad)?)
        .ok_or_else(bad)?
        .max(0x40);
    for i in 0..phnum {
        let ph = usize::try_from(phoff + i * phentsize).map_err(|_| bad())?;
        let offset = u64_at(ph + 8).ok_or_else(bad)?;
        let filesz = u64_at(ph + 32).ok_or_else(bad)?;
        end = end.max(offset.checked_add(filesz).ok_or_else(bad)?);
    }
    let end = usize::try_from(end).map_err(|_| bad())?;
    let mut out = elf.get(..end).ok_or_else(bad)?.to_vec();
    out[0x28..0x30].fill(0); // e_shoff
    out[0x3C..0x40].fill(0); // e_shnum, e_shstrndx
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strip_keeps_the_segments_and_drops_the_rest() {
        // Header, two program headers (a LOAD at 0x1000 of 0x20 bytes, a NOTE inside it),
        // then "debug" bytes and a section header table at 0x2000.
        let mut elf = vec![0u8; 0x2100];
        elf[..8].copy_from_slice(b"\x7fELF\x02\x01\x01\x00");
        elf[0x20..0x28].copy_from_slice(&0x40u64.to_le_bytes()); // e_phoff
        elf[0x28..0x30].copy_from_slice(&0x2000u64.to_le_bytes()); // e_shoff
        elf[0x36..0x38].copy_from_slice(&56u16.to_le_bytes());
        elf[0x38..0x3A].copy_from_slice(&2u16.to_le_bytes());
        elf[0x3C..0x3E].copy_from_slice(&4u16.to_le_bytes());
        elf[0x3E..0x40].copy_from_slice(&3u16.to_le_bytes());
        for (i, (offset, filesz)) in [(0x1000u64, 0x20u64), (0x1008, 0x10)].iter().enumerate() {
            let ph = 0x40 + i * 56;
            elf[ph + 8..ph + 16].copy_from_slice(&offset.to_le_bytes());
            elf[ph + 32..ph + 40].copy_from_slice(&filesz.to_le_bytes());
        }
        elf[0x1000..0x1020].fill(0xAB);
        elf[0x1800..0x1900].fill(0xDB);
        let out = strip_elf(&elf).unwrap();
        assert_eq!(out.len(), 0x1020);
        assert_eq!(out[..0x28], elf[..0x28]);
        assert!(
            out[0x28..0x30].iter().all(|&b| b == 0),
            "no section headers"
        );
        assert!(out[0x3C..0x40].iter().all(|&b| b == 0));
        assert_eq!(out[0x30..0x3C], elf[0x30..0x3C]);
        assert_eq!(out[0x40..], elf[0x40..0x1020]);
        // Hostile inputs are errors, never panics.
        assert!(strip_elf(b"MZ").is_err());
        assert!(strip_elf(&elf[..0x30]).is_err());
        let mut huge = elf.clone();
        huge[0x40 + 32..0x40 + 40].copy_from_slice(&u64::MAX.to_le_bytes());
        assert!(strip_elf(&huge).is_err());
        let mut past = elf;
        past[0x40 + 32..0x40 + 40].copy_from_slice(&0x9000u64.to_le_bytes());
        assert!(strip_elf(&past).is_err());
    }

    fn repo_configs() -> Vec<(String, Vec<u8>)> {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
        read_configs(&root.join(CONFIG_DIR)).unwrap()
    }

    fn fake_programs(xl: &[u8]) -> Vec<(String, Vec<u8>)> {
        vec![
            ("xl".into(), xl.to_vec()),
            ("xen-hptool".into(), b"hptool".to_vec()),
            ("xentop".into(), b"xentop".to_vec()),
        ]
    }

    #[test]
    fn xenstore_names_link_to_one_program() {
        let mut programs = fake_programs(b"xl");
        programs.push(("xenstore".into(), b"xs".to_vec()));
        let files = contents(&programs, &[], &fake_guests());
        for name in XENSTORE_LINKS {
            let path = format!("bin/{name}");
            assert!(
                files
                    .iter()
                    .any(|(p, m, d)| *p == path && m & S_IFMT == cpio::S_IFLNK && d == b"xenstore"),
                "{name}"
            );
        }
        let bins: Vec<&str> = files
            .iter()
            .filter_map(|(p, _, _)| p.strip_prefix("bin/"))
            .collect();
        let mut sorted = bins.clone();
        sorted.sort();
        assert_eq!(bins, sorted);
    }

    fn fake_guests() -> Vec<(String, Vec<u8>)> {
        GUESTS
            .iter()
            .map(|g| (g.to_string(), format!("kernel {g}").into_bytes()))
            .collect()
    }

    #[test]
    fn shipped_configurations_parse_without_warnings() {
        let configs = repo_configs();
        let names: Vec<&str> = configs.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            ["compute.cfg", "echo.cfg", "hello.cfg", "kv.cfg", "web.cfg"]
        );
        let files = contents(&fake_programs(b"xl"), &configs, &fake_guests());
        check_configs(&configs, &files).unwrap();
        // The one the README walks through.
        let (_, hello) = configs.iter().find(|(n, _)| n == "hello.cfg").unwrap();
        let spec = xlcfg::parse_domain_config("hello.cfg", hello, &[])
            .unwrap()
            .spec;
        assert_eq!(
            (spec.name.as_str(), spec.kernel.as_str()),
            ("hello", "/boot/echo.elf")
        );
        assert_eq!(spec.memory_mib, 16);
    }

    #[test]
    fn bad_configurations_are_refused() {
        let files = contents(&fake_programs(b"xl"), &[], &fake_guests());
        let check =
            |text: &str| check_configs(&[("t.cfg".into(), text.as_bytes().to_vec())], &files);
        let ok = "name = \"t\"\nkernel = \"/boot/echo.elf\"\nmemory = 16\n";
        check(ok).unwrap();
        let warned = check(&format!("{ok}colour = \"blue\"\n")).unwrap_err();
        assert!(warned.contains("unknown key"), "{warned}");
        let missing =
            check("name = \"t\"\nkernel = \"/boot/nope.elf\"\nmemory = 16\n").unwrap_err();
        assert!(
            missing.contains("/boot/nope.elf is not in dom0's initrd"),
            "{missing}"
        );
        assert!(check("name = \"t\"\nmemory = 16\n").is_err());
    }

    #[test]
    fn layout_and_modes() {
        let configs = repo_configs();
        let bytes = archive(&contents(
            &fake_programs(b"\x7fELF xl"),
            &configs,
            &fake_guests(),
        ));
        let initrd = cpio::Archive::parse(&bytes).unwrap();
        let xl = initrd.lookup("/bin/xl").unwrap();
        assert_eq!(xl.mode, S_IFREG | 0o755);
        assert_eq!(xl.data, b"\x7fELF xl");
        let hptool = initrd.lookup("/bin/xen-hptool").unwrap();
        assert_eq!(
            (hptool.mode, hptool.data),
            (S_IFREG | 0o755, &b"hptool"[..])
        );
        let xentop = initrd.lookup("/bin/xentop").unwrap();
        assert_eq!(
            (xentop.mode, xentop.data),
            (S_IFREG | 0o755, &b"xentop"[..])
        );
        assert_eq!(initrd.list("/bin").unwrap(), ["xen-hptool", "xentop", "xl"]);
        assert_eq!(
            initrd.list("/").unwrap(),
            ["bin", "boot", "etc", "proc", "tmp"]
        );
        assert_eq!(initrd.lookup("/tmp").unwrap().mode, S_IFDIR | 0o1777);
        assert_eq!(
            initrd.list("/boot").unwrap(),
            ["compute.elf", "echo.elf", "kv.elf", "web.elf"]
        );
        assert_eq!(
            initrd.list("/etc/xen").unwrap(),
            ["compute.cfg", "echo.cfg", "hello.cfg", "kv.cfg", "web.cfg"]
        );
        let hello = initrd.lookup("/etc/xen/hello.cfg").unwrap();
        assert_eq!(hello.mode, S_IFREG | 0o644);
        assert!(hello.data.starts_with(b"# /etc/xen/hello.cfg"));
    }

    #[test]
    fn reproducible() {
        let configs = repo_configs();
        let a = archive(&contents(&fake_programs(b"xl"), &configs, &fake_guests()));
        let mut guests = fake_guests();
        guests.reverse();
        let mut configs_reversed = configs.clone();
        configs_reversed.reverse();
        let b = archive(&contents(&fake_programs(b"xl"), &configs_reversed, &guests));
        assert_eq!(a, b, "input order does not matter");
        let c = archive(&contents(&fake_programs(b"xm"), &configs, &fake_guests()));
        assert_ne!(a, c);
    }
}
