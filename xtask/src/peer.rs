//! `cargo xtask bench --peer xen` (also `--only peer`): issue 13's side by side with Xen.
//!
//! One static benchmark program, `peerbench` (`tests/programs/peerbench`, built once for
//! `x86_64-unknown-linux-musl`), runs in three environments on the same emulated machine
//! (`-accel tcg -machine pc -cpu max -m 1024 -smp 1 -icount shift=0,sleep=off`, where the
//! TSC counts instructions; the program checks it, `tsc_check`):
//!
//! - **native Linux** (the `native` column, the floor): Debian's generic kernel
//!   (`linux-image-<version>-amd64-unsigned`) booted with QEMU's `-kernel`/`-initrd`, a
//!   busybox-static initramfs whose `/init` runs the program and powers off;
//! - **Xen** (the `xen` column): Debian's `xen-hypervisor-4.17-amd64` booted by a
//!   grub-mkrescue image (multiboot2) with the same kernel as PV dom0 and the same
//!   initramfs;
//! - **Xenia** (the `pv` column): the program in Xenia dom0's initrd (the scenarios'
//!   `initrd-test.cpio`, where it is `/bin/peerbench`), typed at the `dom0# ` prompt.
//!
//! The packages come through `apt-get download` into `target/peer/debs/` (kept there and
//! reused; never committed) and are unpacked with `dpkg-deb -x`. The rows' goals (issue
//! 13): Xenia's dom0 at or below Xen's PV dom0 on every row, and the null system call within
//! 1.5× of native Linux. Like every bench, it measures and does not judge.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs;
use std::io::{ErrorKind, Read};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use xenia_dom0::cpio::{self, S_IFDIR, S_IFREG};
use xenia_tests::machine::Machine;
use xenia_tests::{QEMU, TEST_INITRD_ARTIFACT, Workspace, benchk, peer};

use crate::vbench::{Goal, Measured};

/// The program's arguments in every environment by default.
pub const PEER_ARGS: &str = "iters=10000 runs=5 primes=100000";

/// The Xen package.
const XEN_PACKAGE: &str = "xen-hypervisor-4.17-amd64";
/// The busybox package (a static busybox for the initramfs).
const BUSYBOX_PACKAGE: &str = "busybox-static";
/// The hypervisor's file in the Xen package (gzip-compressed).
const XEN_FILE: &str = "boot/xen-4.17-amd64.gz";
/// Xen's command line (COM1 console, a 512 MiB single-vCPU dom0, no reboot at the end;
/// `smap=0` as Xenia runs without SMAP).
pub const XEN_OPTIONS: &str =
    "console=com1 com1=115200,8n1 dom0_mem=512M,max:512M dom0_max_vcpus=1 noreboot smap=0";
/// Linux's command line as Xen's dom0.
pub const DOM0_CMDLINE: &str = "console=hvc0 rdinit=/init quiet";
/// Linux's command line booted natively.
pub const NATIVE_CMDLINE: &str = "console=ttyS0 rdinit=/init quiet";
/// The machine's memory in every environment, MiB.
const MEMORY_MIB: u32 = 1024;
/// Bound for one environment's boot and run in real time (icount slows the emulator down).
const RUN: Duration = Duration::from_secs(1800);
/// Bound for QEMU to end after the program said `peer done` and powered off.
const POWEROFF: Duration = Duration::from_secs(120);

/// One peer row of the table: its name there, the program's row, unit, goal, what it is.
pub struct PeerRow {
    pub name: &'static str,
    pub row: &'static str,
    pub unit: &'static str,
    pub goal: Goal,
    pub about: &'static str,
}

/// The peer rows, in the program's order ([`peer::ROWS`]).
pub const PEER_ROWS: &[PeerRow] = &[
    PeerRow {
        name: "peer_null_syscall",
        row: "null_syscall",
        unit: "instructions/call",
        goal: Goal::AtMostXen(Some(1.5)),
        about: "getpid through a raw SYSCALL from ring 3",
    },
    PeerRow {
        name: "peer_write_null",
        row: "write_null",
        unit: "instructions/call",
        goal: Goal::AtMostXen(None),
        about: "1-byte write to /dev/null",
    },
    PeerRow {
        name: "peer_page_fault",
        row: "page_fault",
        unit: "instructions/page",
        goal: Goal::AtMostXen(None),
        about: "4 MiB anonymous mmap, a write to each page, munmap; per page",
    },
    PeerRow {
        name: "peer_mmap_64k",
        row: "mmap_64k",
        unit: "instructions/call",
        goal: Goal::AtMostXen(None),
        about: "mmap and munmap of 64 KiB, untouched",
    },
    PeerRow {
        name: "peer_clock_gettime",
        row: "clock_gettime",
        unit: "instructions/call",
        goal: Goal::AtMostXen(None),
        about: "clock_gettime(CLOCK_MONOTONIC) through musl (vDSO where the kernel has one)",
    },
    PeerRow {
        name: "peer_fork_exit_wait",
        row: "fork_exit_wait",
        unit: "instructions/fork",
        goal: Goal::AtMostXen(None),
        about: "fork, the child's exit_group(0), the parent's wait4",
    },
    PeerRow {
        name: "peer_pipe_pingpong",
        row: "pipe_pingpong",
        unit: "instructions/round trip",
        goal: Goal::AtMostXen(None),
        about: "a byte to a child through a pipe and back through another",
    },
    PeerRow {
        name: "peer_cpu_loop",
        row: "cpu_loop",
        unit: "instructions/run",
        goal: Goal::AtMostXen(None),
        about: "primes below the limit by trial division in ring 3",
    },
];

/// The peer rows with the three environments' figures (each map: the program's row name
/// to its figure).
pub fn table(
    native: &BTreeMap<String, u64>,
    xenia: &BTreeMap<String, u64>,
    xen: &BTreeMap<String, u64>,
) -> Vec<Measured> {
    PEER_ROWS
        .iter()
        .map(|r| Measured {
            name: r.name,
            unit: r.unit,
            native: native.get(r.row).copied(),
            pv: xenia.get(r.row).copied(),
            xen: xen.get(r.row).copied(),
            goal: r.goal,
        })
        .collect()
}

/// What the peer rows are, printed under their table.
pub fn about() -> String {
    let mut out = String::new();
    for r in PEER_ROWS {
        let _ = writeln!(out, "  {}: {} ({})", r.name, r.about, r.unit);
    }
    out.push_str(
        "  columns: native = Linux booted natively, pv = Xenia's dom0, xen = Linux as Xen's PV dom0\n",
    );
    out
}

/// The newest generic kernel of an `apt-cache search` listing
/// (`linux-image-<version>-amd64-unsigned`, not the cloud or rt flavours), by version.
pub fn newest_linux(listing: &str) -> Option<String> {
    newest_image(listing, "-amd64-unsigned")
}

/// The newest `linux-image-<version><suffix>` of an `apt-cache search` listing, by version
/// (`<version>` all numbers between dots and dashes, so that `-cloud-amd64-unsigned` is not
/// a version of `-amd64-unsigned`).
pub fn newest_image(listing: &str, suffix: &str) -> Option<String> {
    let version = |name: &str| -> Option<Vec<u64>> {
        let v = name.strip_prefix("linux-image-")?.strip_suffix(suffix)?;
        v.split(['.', '-'])
            .map(|part| part.parse().ok())
            .collect::<Option<Vec<u64>>>()
    };
    listing
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter_map(|name| Some((version(name)?, name)))
        .max()
        .map(|(_, name)| name.to_string())
}

/// `command`'s standard output, or an error that shows its standard error.
pub fn output(command: &mut Command, what: &str) -> Result<String, String> {
    let out = command
        .output()
        .map_err(|e| format!("cannot run {what}: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "{what} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The `.deb` of `package` in `dir`, if one was downloaded.
pub fn cached_deb(dir: &Path, package: &str) -> Option<PathBuf> {
    let prefix = format!("{package}_");
    let mut debs: Vec<PathBuf> = fs::read_dir(dir)
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(&prefix) && n.ends_with(".deb"))
        })
        .collect();
    debs.sort();
    debs.pop()
}

/// `package`'s `.deb` in `dir`: the one downloaded before, or a fresh `apt-get download`
/// (after an `apt-get update` when the first try fails).
fn download(dir: &Path, package: &str) -> Result<PathBuf, String> {
    download_for(dir, package, "bench peer", "The peer bench")
}

/// [`download`] for `who` (`bench peer`, what progress lines start with), whose need
/// `needs` (`The peer bench`) the error message names.
pub fn download_for(dir: &Path, package: &str, who: &str, needs: &str) -> Result<PathBuf, String> {
    if let Some(deb) = cached_deb(dir, package) {
        return Ok(deb);
    }
    println!("{who}: downloading {package} (apt-get download)...");
    let get = || {
        output(
            Command::new("apt-get")
                .args(["download", "-qq", package])
                .current_dir(dir),
            &format!("apt-get download {package}"),
        )
    };
    if let Err(first) = get() {
        println!("{who}: {first}; trying again after apt-get update...");
        output(
            Command::new("apt-get").args(["update", "-qq"]),
            "apt-get update",
        )
        .and_then(|_| get())
        .map_err(|e| {
            format!(
                "{e}. {needs} needs Debian's {package}: on a Debian bookworm host with \
                 network access run `sudo apt-get update`, or put its .deb into {}",
                dir.display()
            )
        })?;
    }
    cached_deb(dir, package).ok_or_else(|| {
        format!(
            "apt-get download {package} left no {package}_*.deb in {}",
            dir.display()
        )
    })
}

/// Unpacks `deb` into `dest` with `dpkg-deb -x`, unless it was already (a stamp names the
/// package file).
pub fn extract(deb: &Path, dest: &Path) -> Result<(), String> {
    let stamp = dest.join(".extracted-from");
    let name = deb.file_name().and_then(|n| n.to_str()).unwrap_or_default();
    if fs::read_to_string(&stamp).is_ok_and(|s| s == name) {
        return Ok(());
    }
    if dest.exists() {
        fs::remove_dir_all(dest).map_err(|e| format!("cannot remove {}: {e}", dest.display()))?;
    }
    fs::create_dir_all(dest).map_err(|e| format!("cannot create {}: {e}", dest.display()))?;
    output(
        Command::new("dpkg-deb").arg("-x").arg(deb).arg(dest),
        &format!("dpkg-deb -x {}", deb.display()),
    )?;
    fs::write(&stamp, name).map_err(|e| format!("cannot write {}: {e}", stamp.display()))
}

/// The one file of `dir` whose name starts with `prefix`.
pub fn find_file(dir: &Path, prefix: &str) -> Result<PathBuf, String> {
    let mut found: Vec<PathBuf> = fs::read_dir(dir)
        .map_err(|e| format!("cannot list {}: {e}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(prefix))
        })
        .collect();
    found.sort();
    found
        .pop()
        .ok_or_else(|| format!("no {prefix}* in {}", dir.display()))
}

/// Debian's static busybox (`busybox-static`, downloaded once and unpacked under
/// `target/peer/`): its path. dom0's scenarios' initrd carries it too.
pub fn busybox(ws: &Workspace) -> Result<PathBuf, String> {
    let dir = ws.target_dir().join("peer");
    let debs = dir.join("debs");
    fs::create_dir_all(&debs).map_err(|e| format!("cannot create {}: {e}", debs.display()))?;
    let deb = download(&debs, BUSYBOX_PACKAGE)?;
    let dest = dir.join("root").join(BUSYBOX_PACKAGE);
    extract(&deb, &dest)?;
    let busybox = dest.join("bin/busybox");
    if busybox.is_file() {
        Ok(busybox)
    } else {
        Err(format!("{} is missing", busybox.display()))
    }
}

/// The unpacked inputs of the Linux and Xen runs.
pub struct Packages {
    /// Linux's bzImage.
    pub vmlinuz: PathBuf,
    /// Xen, decompressed.
    pub xen: PathBuf,
    /// A static busybox.
    pub busybox: PathBuf,
    /// The Linux package's name (its version).
    pub linux: String,
}

/// Downloads (or reuses) and unpacks the packages under `target/peer/`.
pub fn packages(ws: &Workspace) -> Result<Packages, String> {
    let dir = ws.target_dir().join("peer");
    let debs = dir.join("debs");
    fs::create_dir_all(&debs).map_err(|e| format!("cannot create {}: {e}", debs.display()))?;
    let listing = output(
        Command::new("apt-cache").args([
            "search",
            "--names-only",
            "^linux-image-[0-9.]+-[0-9]+-amd64-unsigned$",
        ]),
        "apt-cache search",
    )
    .map_err(|e| {
        format!(
            "{e}: the peer bench takes Linux, Xen and busybox from Debian's archive, so it needs \
             a Debian (bookworm) host with apt"
        )
    })?;
    // Without a package index, the kernel downloaded before.
    let linux = match newest_linux(&listing) {
        Some(linux) => linux,
        None => cached_deb(&debs, "linux-image-")
            .and_then(|p| {
                let n = p.file_name()?.to_str()?.to_string();
                Some(n[..n.find('_')?].to_string())
            })
            .ok_or(
                "no linux-image-<version>-amd64-unsigned package known to apt: run \
                 `sudo apt-get update` on a Debian bookworm host",
            )?,
    };
    let mut unpacked = Vec::new();
    for package in [linux.as_str(), XEN_PACKAGE, BUSYBOX_PACKAGE] {
        let deb = download(&debs, package)?;
        let dest = dir.join("root").join(package);
        extract(&deb, &dest)?;
        unpacked.push(dest);
    }
    let vmlinuz = find_file(&unpacked[0].join("boot"), "vmlinuz-")?;
    let xen = dir.join("xen");
    let xen_gz = unpacked[1].join(XEN_FILE);
    if !xen.is_file() || modified(&xen) < modified(&xen_gz) {
        let bytes = Command::new("gzip")
            .arg("-dc")
            .arg(&xen_gz)
            .output()
            .map_err(|e| format!("cannot run gzip: {e}"))?;
        if !bytes.status.success() {
            return Err(format!("gzip -dc {} failed", xen_gz.display()));
        }
        fs::write(&xen, bytes.stdout)
            .map_err(|e| format!("cannot write {}: {e}", xen.display()))?;
    }
    let busybox = unpacked[2].join("bin/busybox");
    if !busybox.is_file() {
        return Err(format!("{} is missing", busybox.display()));
    }
    Ok(Packages {
        vmlinuz,
        xen,
        busybox,
        linux,
    })
}

fn modified(path: &Path) -> Option<std::time::SystemTime> {
    fs::metadata(path).and_then(|m| m.modified()).ok()
}

/// The initramfs's `/init`: devtmpfs for `/dev/console` and `/dev/null`, the program with
/// `args`, power off.
pub fn init_script(args: &str) -> String {
    format!(
        "#!/bin/busybox sh\n\
         /bin/busybox mount -t devtmpfs devtmpfs /dev\n\
         exec 0</dev/console 1>/dev/console 2>&1\n\
         /bin/busybox mount -t proc proc /proc\n\
         echo \"peer env linux $(/bin/busybox uname -r)\"\n\
         /bin/{} {args}\n\
         /bin/busybox poweroff -f\n",
        peer::PROGRAM
    )
}

/// The initramfs (cpio newc): `/init`, `/bin/busybox`, `/bin/peerbench`, `/dev`, `/proc`.
pub fn initramfs(busybox: &[u8], program: &[u8], args: &str) -> Vec<u8> {
    const DIR: u32 = S_IFDIR | 0o755;
    const EXEC: u32 = S_IFREG | 0o755;
    let init = init_script(args);
    let program_path = format!("bin/{}", peer::PROGRAM);
    cpio::build(&[
        ("bin", DIR, &[]),
        ("bin/busybox", EXEC, busybox),
        (&program_path, EXEC, program),
        ("dev", DIR, &[]),
        ("init", EXEC, init.as_bytes()),
        ("proc", DIR, &[]),
    ])
}

/// The GRUB configuration of the Xen image.
pub fn xen_grub_cfg() -> String {
    format!(
        "serial --unit=0 --speed=115200\n\
         terminal_input serial\n\
         terminal_output serial\n\
         set timeout=0\n\
         menuentry \"Xen\" {{\n\
         \x20   multiboot2 /boot/xen {XEN_OPTIONS}\n\
         \x20   module2 /boot/vmlinuz {DOM0_CMDLINE}\n\
         \x20   module2 /boot/initrd.cpio\n\
         \x20   boot\n\
         }}\n"
    )
}

/// QEMU's arguments common to the three environments, after which each adds how it boots.
fn machine_args() -> Vec<String> {
    let mut args: Vec<String> = [
        "-accel", "tcg", "-machine", "pc", "-cpu", "max", "-m", "1024", "-smp", "1",
    ]
    .map(String::from)
    .to_vec();
    args.extend(benchk::ICOUNT.map(String::from));
    args.extend(
        [
            "-display",
            "none",
            "-serial",
            "stdio",
            "-monitor",
            "none",
            "-no-reboot",
        ]
        .map(String::from),
    );
    args
}

/// Runs QEMU with `args` until it exits or `RUN` passes, echoing the program's lines;
/// writes the serial log to `log` and returns it. Fails when the log has no `peer done`.
fn run_qemu(env: &str, args: &[String], log: &Path) -> Result<String, String> {
    let mut child = Command::new(QEMU)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| match e.kind() {
            ErrorKind::NotFound => {
                format!("{QEMU} is not installed: `sudo apt-get install -y qemu-system-x86`")
            }
            _ => format!("cannot start {QEMU}: {e}"),
        })?;
    let (tx, rx) = mpsc::channel::<Vec<u8>>();
    let mut stdout = child.stdout.take().ok_or("no QEMU stdout")?;
    let reader = std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        loop {
            match stdout.read(&mut buf) {
                Ok(0) => return,
                Ok(n) => {
                    if tx.send(buf[..n].to_vec()).is_err() {
                        return;
                    }
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(_) => return,
            }
        }
    });
    let started = Instant::now();
    let mut raw = Vec::new();
    let mut echoed = 0;
    let mut done_at: Option<Instant> = None;
    let outcome = loop {
        let bound = match done_at {
            Some(at) => (at + POWEROFF).saturating_duration_since(Instant::now()),
            None => RUN.saturating_sub(started.elapsed()),
        };
        match rx.recv_timeout(bound) {
            Ok(chunk) => {
                raw.extend_from_slice(&chunk);
                // Echo the program's complete lines as they come.
                let text = String::from_utf8_lossy(&raw).into_owned();
                if let Some(end) = text.rfind('\n') {
                    for line in text[echoed..end].lines() {
                        let line = line.trim();
                        if line.starts_with("peer ") {
                            println!("  {env}: {line}");
                        }
                    }
                    echoed = end;
                }
                if done_at.is_none() && peer::done(&text) {
                    done_at = Some(Instant::now());
                }
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => break Ok(()),
            Err(mpsc::RecvTimeoutError::Timeout) if done_at.is_some() => {
                println!("  {env}: QEMU still runs {POWEROFF:?} after `peer done`; stopping it");
                break Ok(());
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {
                break Err(format!("{env} did not finish within {RUN:?}"));
            }
        }
    };
    let _ = child.kill();
    let status = child.wait().ok();
    let _ = reader.join();
    let mut stderr = String::new();
    if let Some(mut e) = child.stderr.take() {
        let _ = e.read_to_string(&mut stderr);
    }
    let text = String::from_utf8_lossy(&raw).replace('\r', "");
    fs::write(log, &text).map_err(|e| format!("cannot write {}: {e}", log.display()))?;
    let tail = || {
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(15)..].join("\n")
    };
    outcome.map_err(|e| format!("{e}; log in {}; last lines:\n{}", log.display(), tail()))?;
    if !peer::done(&text) {
        return Err(format!(
            "{env}: the program did not finish (QEMU {}{}); log in {}; last lines:\n{}",
            status.map_or_else(|| "status unknown".into(), |s| s.to_string()),
            if stderr.trim().is_empty() {
                String::new()
            } else {
                format!(", stderr: {}", stderr.trim())
            },
            log.display(),
            tail()
        ));
    }
    Ok(text)
}

/// Linux booted natively with the initramfs: its serial output.
fn native(dir: &Path, pkgs: &Packages, initrd: &Path) -> Result<String, String> {
    let mut args = machine_args();
    args.extend([
        "-kernel".into(),
        pkgs.vmlinuz.display().to_string(),
        "-initrd".into(),
        initrd.display().to_string(),
        "-append".into(),
        NATIVE_CMDLINE.into(),
    ]);
    run_qemu("native Linux", &args, &dir.join("native.log"))
}

/// Xen with Linux as PV dom0 and the initramfs, from a grub-mkrescue image: its serial
/// output.
fn xen(dir: &Path, pkgs: &Packages, initrd: &Path) -> Result<String, String> {
    let staging = dir.join("xen-iso");
    if staging.exists() {
        fs::remove_dir_all(&staging)
            .map_err(|e| format!("cannot remove {}: {e}", staging.display()))?;
    }
    let boot = staging.join("boot");
    fs::create_dir_all(boot.join("grub"))
        .map_err(|e| format!("cannot create {}: {e}", boot.display()))?;
    for (from, to) in [
        (&pkgs.xen, "xen"),
        (&pkgs.vmlinuz, "vmlinuz"),
        (&initrd.to_path_buf(), "initrd.cpio"),
    ] {
        fs::copy(from, boot.join(to))
            .map_err(|e| format!("cannot copy {} into the image: {e}", from.display()))?;
    }
    fs::write(boot.join("grub/grub.cfg"), xen_grub_cfg())
        .map_err(|e| format!("cannot write the image's grub.cfg: {e}"))?;
    let iso = dir.join("xen.iso");
    output(
        Command::new("grub-mkrescue")
            .arg("-o")
            .arg(&iso)
            .arg(&staging),
        "grub-mkrescue (install grub-pc-bin, xorriso and mtools: `cargo xtask iso` does)",
    )?;
    let mut args = machine_args();
    args.extend(["-cdrom".into(), iso.display().to_string()]);
    run_qemu("Xen", &args, &dir.join("xen.log"))
}

/// Xenia's dom0 running the program at its prompt: the program's output.
fn xenia(ws: &Workspace, args: &str) -> Result<String, String> {
    let mut machine = Machine::new(ws, "peer-xenia").memory_mib(MEMORY_MIB);
    for a in benchk::ICOUNT {
        machine = machine.qemu_arg(a);
    }
    let out = peer::run_in_xenia(ws, machine, args, RUN)?;
    for line in out
        .lines()
        .map(str::trim)
        .filter(|l| l.starts_with("peer "))
    {
        println!("  Xenia: {line}");
    }
    if !peer::done(&out) {
        return Err(format!(
            "the program did not finish in Xenia's dom0: {out:?}"
        ));
    }
    Ok(out)
}

/// FNV-1a of `bytes`, to show that every environment runs the same file.
fn fnv64(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// The TSC check of one environment's output, as a note (under `-icount shift=0` a
/// `dec`/`jnz` loop of 1000 instructions takes 1000 ticks).
fn tsc_note(env: &str, figures: &BTreeMap<String, u64>) -> String {
    match figures.get("tsc_check") {
        Some(&t) if (990..=1010).contains(&t) => {
            format!("{env}: TSC ticks per 1000 instructions {t} (the TSC counts instructions)")
        }
        Some(&t) => format!(
            "{env}: TSC ticks per 1000 instructions {t}: NOT one per instruction, the figures are not instruction counts"
        ),
        None => format!("{env}: no TSC check"),
    }
}

/// Runs the bench: `args` are the program's, in all three environments. Prints the table
/// and returns its rows; an environment that cannot run leaves its column empty (and says
/// why), and only when none ran is it an error.
pub fn run(ws: &Workspace, args: &str, program: &Path) -> Result<Vec<Measured>, String> {
    let program_bytes =
        fs::read(program).map_err(|e| format!("cannot read {}: {e}", program.display()))?;
    // The program Xenia's dom0 runs is the initrd's copy: it must be the same file.
    let initrd_path = ws.require_artifact(TEST_INITRD_ARTIFACT)?;
    let initrd_bytes = fs::read(&initrd_path)
        .map_err(|e| format!("cannot read {}: {e}", initrd_path.display()))?;
    let in_initrd = cpio::Archive::parse(&initrd_bytes).ok().and_then(|a| {
        a.lookup(&format!("/bin/{}", peer::PROGRAM))
            .map(|f| f.data.to_vec())
    });
    if in_initrd.as_deref() != Some(program_bytes.as_slice()) {
        return Err(format!(
            "{}'s /bin/{} is not {}: run `cargo xtask build`",
            initrd_path.display(),
            peer::PROGRAM,
            program.display()
        ));
    }
    println!(
        "bench peer: {} ({} bytes, FNV-1a {:016x}) with `{args}` under native Linux, Xen's PV \
         dom0 and Xenia's dom0; instructions under -icount shift=0",
        peer::PROGRAM,
        program_bytes.len(),
        fnv64(&program_bytes)
    );
    let dir = ws.target_dir().join("peer");
    let mut notes = Vec::new();
    let (native_out, xen_out) = match packages(ws) {
        Ok(pkgs) => {
            println!(
                "bench peer: {}, {XEN_PACKAGE}, {BUSYBOX_PACKAGE} (cached in {})",
                pkgs.linux,
                dir.join("debs").display()
            );
            let busybox = fs::read(&pkgs.busybox)
                .map_err(|e| format!("cannot read {}: {e}", pkgs.busybox.display()))?;
            let initrd = dir.join("initrd.cpio");
            fs::write(&initrd, initramfs(&busybox, &program_bytes, args))
                .map_err(|e| format!("cannot write {}: {e}", initrd.display()))?;
            println!("bench peer: native Linux (-kernel {NATIVE_CMDLINE:?})...");
            let native_out = native(&dir, &pkgs, &initrd).unwrap_or_else(|e| {
                println!("bench peer: native Linux failed: {e}");
                String::new()
            });
            println!("bench peer: Xen ({XEN_OPTIONS}; dom0 {DOM0_CMDLINE:?})...");
            let xen_out = xen(&dir, &pkgs, &initrd).unwrap_or_else(|e| {
                println!("bench peer: Xen failed: {e}");
                String::new()
            });
            (native_out, xen_out)
        }
        Err(e) => {
            println!("bench peer: no Linux or Xen to run: {e}");
            (String::new(), String::new())
        }
    };
    println!("bench peer: Xenia's dom0 (at the dom0# prompt)...");
    let xenia_out = xenia(ws, args).unwrap_or_else(|e| {
        println!("bench peer: Xenia failed: {e}");
        String::new()
    });
    let (native, xen, xenia) = (
        peer::figures(&native_out),
        peer::figures(&xen_out),
        peer::figures(&xenia_out),
    );
    if native.is_empty() && xen.is_empty() && xenia.is_empty() {
        return Err("no environment ran the program".into());
    }
    for (env, figures) in [("native Linux", &native), ("Xen", &xen), ("Xenia", &xenia)] {
        notes.push(tsc_note(env, figures));
    }
    let rows = table(&native, &xenia, &xen);
    print!("{}", crate::vbench::render(&rows));
    print!("{}", about());
    for note in notes {
        println!("  {note}");
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rows_are_the_programs() {
        let rows: Vec<&str> = PEER_ROWS.iter().map(|r| r.row).collect();
        assert_eq!(rows, peer::ROWS);
        assert!(
            PEER_ROWS
                .iter()
                .all(|r| r.name == format!("peer_{}", r.row))
        );
    }

    #[test]
    fn newest_generic_kernel() {
        let listing = "linux-image-6.1.0-9-amd64-unsigned - Linux 6.1\n\
                       linux-image-6.1.0-57-cloud-amd64-unsigned - cloud\n\
                       linux-image-6.1.0-57-amd64-unsigned - Linux 6.1\n\
                       linux-image-6.1.0-10-amd64-unsigned - Linux 6.1\n\
                       linux-image-6.1.0-57-rt-amd64-unsigned - rt\n";
        assert_eq!(
            newest_linux(listing).as_deref(),
            Some("linux-image-6.1.0-57-amd64-unsigned")
        );
        assert_eq!(newest_linux(""), None);
        assert_eq!(
            newest_linux("linux-image-6.1.0-57-cloud-amd64-unsigned - x"),
            None
        );
    }

    #[test]
    fn initramfs_runs_the_program_and_powers_off() {
        let bytes = initramfs(b"busybox", b"\x7fELF peer", "iters=5");
        let archive = cpio::Archive::parse(&bytes).unwrap();
        let init = archive.lookup("/init").unwrap();
        assert_eq!(init.mode, S_IFREG | 0o755);
        let script = std::str::from_utf8(init.data).unwrap();
        assert!(script.starts_with("#!/bin/busybox sh\n"), "{script}");
        assert!(script.contains("\n/bin/peerbench iters=5\n"), "{script}");
        assert!(script.ends_with("poweroff -f\n"), "{script}");
        assert_eq!(
            archive.lookup("/bin/peerbench").unwrap().data,
            b"\x7fELF peer"
        );
        assert_eq!(archive.list("/").unwrap(), ["bin", "dev", "init", "proc"]);
        let cfg = xen_grub_cfg();
        assert!(
            cfg.contains(&format!("multiboot2 /boot/xen {XEN_OPTIONS}\n")),
            "{cfg}"
        );
        assert!(
            cfg.contains("module2 /boot/vmlinuz console=hvc0 rdinit=/init"),
            "{cfg}"
        );
    }

    #[test]
    fn peer_rows_judge_against_xen() {
        let f = |pairs: &[(&str, u64)]| -> BTreeMap<String, u64> {
            pairs.iter().map(|&(k, v)| (k.to_string(), v)).collect()
        };
        let native = f(&[("null_syscall", 300), ("write_null", 580)]);
        let xen = f(&[
            ("null_syscall", 970),
            ("write_null", 1240),
            ("cpu_loop", 10),
        ]);
        let xenia = f(&[
            ("null_syscall", 500),
            ("write_null", 1200),
            ("cpu_loop", 11),
        ]);
        let rows = table(&native, &xenia, &xen);
        let row = |n: &str| rows.iter().find(|r| r.name == n).unwrap();
        assert_eq!(
            row("peer_null_syscall").met(),
            Some(false),
            "below Xen but 1.67x native"
        );
        assert_eq!(row("peer_write_null").met(), Some(true), "below Xen");
        assert_eq!(row("peer_cpu_loop").met(), Some(false), "above Xen");
        assert_eq!(row("peer_mmap_64k").met(), None, "not measured");
        assert_eq!(row("peer_write_null").xen, Some(1240));
    }
}
