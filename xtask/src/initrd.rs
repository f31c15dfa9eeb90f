//! dom0's initrd, `target/xenia/initrd.cpio`: a cpio "newc" archive (written by
//! `xenia_dom0::cpio::build`, read by the same module in dom0's kernel) holding
//!
//! ```text
//! /bin/xl                  the toolstack (0755)
//! /bin/xen-hptool          CPU and memory hot-plug (0755)
//! /etc/xen/<name>.cfg      every file of dom0-tools/etc/xen/ (domain configurations)
//! /boot/echo.elf           the demo guest kernels the configurations name
//! /boot/compute.elf
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

/// The configurations' directory in the repository.
pub const CONFIG_DIR: &str = "dom0-tools/etc/xen";
/// Where configurations go in the initrd.
const CONFIG_DEST: &str = "etc/xen";
/// dom0's programs (built together by `userland::build_programs`) that go to `/bin/`.
pub const PROGRAMS: &[&str] = &["xl", "xen-hptool"];
/// The guest kernels (artifacts of `target/xenia/`) that go to `/boot/`.
pub const GUESTS: &[&str] = &["echo.elf", "compute.elf"];
/// Guest kernels only the scenarios' initrd has, in `/boot`.
pub const TEST_GUESTS: &[&str] = &["testguest.elf"];

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
    files.extend(
        programs
            .into_iter()
            .map(|(name, data)| (format!("bin/{name}"), PROGRAM, data.clone())),
    );
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
/// [`PROGRAMS`]) and the built guest kernels, unless it already holds exactly those bytes;
/// returns its path.
pub fn build(ws: &Workspace, bin_dir: &Path) -> Result<PathBuf, String> {
    build_with(ws, bin_dir, None)
}

/// The scenarios' initrd, `target/xenia/initrd-test.cpio`: the default one plus the test
/// programs (`/bin/probe`, `/bin/peerbench`: each file of `test_programs` under its own
/// name) and the test guest `/boot/testguest.elf` ([`TEST_GUESTS`]).
pub fn build_test(
    ws: &Workspace,
    bin_dir: &Path,
    test_programs: &[PathBuf],
) -> Result<PathBuf, String> {
    build_with(ws, bin_dir, Some(test_programs))
}

fn build_with(
    ws: &Workspace,
    bin_dir: &Path,
    test_programs: Option<&[PathBuf]>,
) -> Result<PathBuf, String> {
    let read =
        |path: &Path| fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()));
    let configs = read_configs(&ws.root().join(CONFIG_DIR))?;
    let mut guests = GUESTS
        .iter()
        .map(|name| Ok((name.to_string(), read(&ws.require_artifact(name)?)?)))
        .collect::<Result<Vec<_>, String>>()?;
    if test_programs.is_some() {
        // The scenarios also create test guests from dom0 (`xl create ... kernel=...`).
        for name in TEST_GUESTS {
            guests.push((name.to_string(), read(&ws.require_artifact(name)?)?));
        }
    }
    let programs = PROGRAMS
        .iter()
        .map(|name| Ok((name.to_string(), read(&bin_dir.join(name))?)))
        .collect::<Result<Vec<_>, String>>()?;
    let mut files = contents(&programs, &configs, &guests);
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

#[cfg(test)]
mod tests {
    use super::*;

    fn repo_configs() -> Vec<(String, Vec<u8>)> {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
        read_configs(&root.join(CONFIG_DIR)).unwrap()
    }

    fn fake_programs(xl: &[u8]) -> Vec<(String, Vec<u8>)> {
        vec![
            ("xl".into(), xl.to_vec()),
            ("xen-hptool".into(), b"hptool".to_vec()),
        ]
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
        assert_eq!(names, ["compute.cfg", "echo.cfg", "hello.cfg"]);
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
        assert_eq!(initrd.list("/bin").unwrap(), ["xen-hptool", "xl"]);
        assert_eq!(initrd.list("/").unwrap(), ["bin", "boot", "etc"]);
        assert_eq!(initrd.list("/boot").unwrap(), ["compute.elf", "echo.elf"]);
        assert_eq!(
            initrd.list("/etc/xen").unwrap(),
            ["compute.cfg", "echo.cfg", "hello.cfg"]
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
