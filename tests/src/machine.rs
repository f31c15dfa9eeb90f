//! Booting an image in QEMU and talking to it over the serial console.
//!
//! [`Machine`] describes a PC (memory, CPUs, CPU model, hypervisor options, modules) and
//! [`Machine::boot`] builds its image and starts QEMU, giving a [`Qemu`]. A reader thread
//! appends everything QEMU writes to COM1 to a shared buffer and wakes waiters through a
//! condition variable; every wait has a deadline. QEMU is killed when the [`Qemu`] is dropped.
//!
//! The waits are *expect-style*: a [`Qemu`] has a cursor in the normalized serial text (see
//! [`crate::serial`]), each successful wait moves it past what it found, and the next wait
//! searches from there. Whole-log questions go through [`Qemu::serial_log`].

use std::ffi::OsString;
use std::io::{ErrorKind, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crate::contract;
use crate::iso::{self, ImageSpec, Module};
use crate::serial::{self, Normalizer};
use crate::workspace::DOM0_ARTIFACT;
use crate::workspace::Workspace;

/// The time a scenario should give any single wait. TCG reaches the hypervisor in well under
/// a second; this only bounds how long a hung machine can hold up the suite.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);

/// QEMU's exit status when the hypervisor wrote 0x10 to `isa-debug-exit`: clean power-off.
/// (QEMU exits with `(value << 1) | 1`.)
pub const EXIT_POWEROFF: i32 = debug_exit_status(0x10);
/// The hypervisor wrote 0x11: hypervisor panic or fatal exception.
pub const EXIT_HYPERVISOR_FATAL: i32 = debug_exit_status(0x11);
/// The hypervisor wrote 0x12: dom0 crashed.
pub const EXIT_DOM0_CRASHED: i32 = debug_exit_status(0x12);
/// The hypervisor wrote 0x13: dom0 asked for a reboot.
pub const EXIT_DOM0_REBOOT: i32 = debug_exit_status(0x13);
/// The hypervisor wrote 0x14: the frame table's consistency check failed when dom0 stopped
/// (`hypervisor/src/power.rs`, `ExitReason::FrameTableInconsistent`), whatever dom0's reason.
pub const EXIT_FRAME_TABLE_INCONSISTENT: i32 = debug_exit_status(0x14);
/// QEMU's status after an ACPI power-off (the hypervisor's way out without `debug-exit`).
pub const EXIT_ACPI_POWEROFF: i32 = 0;

/// The hypervisor option that makes the hypervisor report its end through `isa-debug-exit`.
pub const DEBUG_EXIT_OPTION: &str = "debug-exit";

/// The I/O port of QEMU's `isa-debug-exit` device, as configured by the harness.
pub const DEBUG_EXIT_PORT: u16 = 0xf4;

/// QEMU's exit status for `value` written to `isa-debug-exit`.
pub const fn debug_exit_status(value: u8) -> i32 {
    ((value as i32) << 1) | 1
}

/// A human description of QEMU exit status `code`, for messages.
pub fn describe_exit(code: i32) -> String {
    match code {
        EXIT_ACPI_POWEROFF => "ACPI power-off".into(),
        1 => "QEMU error, or 0 written to isa-debug-exit".into(),
        EXIT_POWEROFF => "clean power-off via isa-debug-exit".into(),
        EXIT_HYPERVISOR_FATAL => "hypervisor panic or fatal exception".into(),
        EXIT_DOM0_CRASHED => "dom0 crashed".into(),
        EXIT_DOM0_REBOOT => "dom0 asked for a reboot".into(),
        EXIT_FRAME_TABLE_INCONSISTENT => {
            "the frame-table consistency check failed at dom0 shutdown".into()
        }
        c if c > 0 && c % 2 == 1 && c < 512 => format!("isa-debug-exit value {:#x}", c >> 1),
        _ => "unexpected QEMU exit status".into(),
    }
}

/// What GRUB prints after failing to boot an entry; it then waits for a key forever, so a
/// wait that sees this fails at once.
pub const GRUB_FAILED: &str = "Press any key to continue...";

/// GRUB's error lines if the serial log shows that GRUB failed to boot the image.
fn grub_failure(log: &str) -> Option<String> {
    log.contains(GRUB_FAILED).then(|| {
        let errors: Vec<&str> = log.lines().filter(|l| l.starts_with("error: ")).collect();
        errors.join(" ")
    })
}

/// The QEMU binary.
pub const QEMU: &str = "qemu-system-x86_64";

/// The UEFI firmware a [`Machine::uefi`] machine boots: Debian's `ovmf` package's combined
/// image (code and a variable store in one file, without Secure Boot), given to QEMU as
/// `-bios`. QEMU 7.2 maps it read-only as the system ROM and OVMF keeps its variables in RAM,
/// so every boot starts from the same firmware state and no per-run copy of a variable file
/// is needed (the split `OVMF_CODE_4M.fd` + `OVMF_VARS_4M.fd` pair works only as two
/// `-drive if=pflash` devices, the second a writable copy).
pub const OVMF_FIRMWARE: &str = "/usr/share/ovmf/OVMF.fd";

/// The QEMU arguments that make a PC boot UEFI firmware (OVMF) instead of SeaBIOS.
pub fn uefi_args() -> Vec<OsString> {
    vec![OsString::from("-bios"), OsString::from(OVMF_FIRMWARE)]
}

/// Fails, saying what to install, when OVMF is missing.
pub fn check_uefi_firmware() -> Result<(), String> {
    if Path::new(OVMF_FIRMWARE).is_file() {
        Ok(())
    } else {
        Err(format!(
            "the UEFI firmware {OVMF_FIRMWARE} is missing: run `cargo xtask test` (it installs \
             the host tools) or `sudo apt-get install -y ovmf`"
        ))
    }
}

/// Where COM1 goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SerialConsole {
    /// QEMU's stdin/stdout, no monitor: for the harness, which pipes them.
    Piped,
    /// This terminal, multiplexed with the QEMU monitor (Ctrl-A C; Ctrl-A X quits): for
    /// `cargo xtask run`.
    Terminal,
}

/// The QEMU arguments that boot `iso` on a TCG PC with `isa-debug-exit` at port 0xf4 and no
/// reboot (a triple fault or reset ends QEMU), shared by the harness and `cargo xtask run`.
pub fn qemu_args(
    cpu_model: &str,
    memory_mib: u32,
    cpus: u32,
    iso: &Path,
    console: SerialConsole,
) -> Vec<OsString> {
    let serial: &[&str] = match console {
        SerialConsole::Piped => &["-serial", "stdio", "-monitor", "none"],
        SerialConsole::Terminal => &["-serial", "mon:stdio"],
    };
    let (memory, cpus) = (memory_mib.to_string(), cpus.to_string());
    let debug_exit = format!("isa-debug-exit,iobase={DEBUG_EXIT_PORT:#x},iosize=0x04");
    let mut args: Vec<OsString> = ["-accel", "tcg", "-machine", "pc", "-cpu", cpu_model]
        .into_iter()
        .chain(["-m", &memory, "-smp", &cpus, "-cdrom"])
        .map(OsString::from)
        .collect();
    args.push(iso.into());
    args.extend(
        ["-display", "none"]
            .iter()
            .chain(serial)
            .chain(&["-no-reboot", "-device", &debug_exit])
            .map(OsString::from),
    );
    args
}

/// The QEMU arguments that attach the raw image at `path` as virtio-blk PCI disk number
/// `index` (0 is dom0's `/dev/vda`): `-drive file=…,format=raw,if=none,id=disk<index>
/// -device virtio-blk-pci,drive=disk<index>`. Shared by the harness and `cargo xtask run`.
/// The first disk also brings `-boot order=d`: SeaBIOS would otherwise boot a disk whose
/// sector 0 ends in 0x55AA (any partitioned image) instead of GRUB's CD.
pub fn disk_args(path: &Path, index: usize) -> Vec<OsString> {
    let mut args = Vec::new();
    if index == 0 {
        args.extend([OsString::from("-boot"), OsString::from("order=d")]);
    }
    let mut drive = OsString::from("file=");
    // QEMU's option syntax doubles a comma inside a value.
    drive.push(path.as_os_str().to_string_lossy().replace(',', ",,"));
    drive.push(format!(",format=raw,if=none,id=disk{index}"));
    args.extend([
        OsString::from("-drive"),
        drive,
        OsString::from("-device"),
        OsString::from(format!("virtio-blk-pci,drive=disk{index}")),
    ]);
    args
}

/// A TCP port forward of QEMU's user-mode network: the host's `127.0.0.1:host_port` reaches
/// `guest:guest_port` on the machine's network (`hostfwd=tcp:...`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Forward {
    /// The port on the host's loopback.
    pub host_port: u16,
    /// The address on the machine's network (`10.0.2.15` is dom0, `10.0.2.20` the first
    /// domU that asks QEMU's DHCP server).
    pub guest: String,
    /// The port there.
    pub guest_port: u16,
}

/// The QEMU arguments that give the machine a network card on QEMU's user-mode network, as
/// the addressing plan says (`10.0.2.0/24`, gateway and DHCP server `10.0.2.2`, DHCP from
/// `10.0.2.20`), with `forwards` from the host: `-netdev user,id=net0,net=10.0.2.0/24,
/// dhcpstart=10.0.2.20,hostfwd=tcp:127.0.0.1:H-G:P,... -device virtio-net-pci,netdev=net0`.
/// The card has no option ROM (`romfile=`: nothing boots from the network, and Debian's
/// QEMU may lack the file). Shared by the harness and `cargo xtask run`.
pub fn nic_args(forwards: &[Forward]) -> Vec<OsString> {
    let mut netdev = String::from("user,id=net0,net=10.0.2.0/24,dhcpstart=10.0.2.20");
    for f in forwards {
        netdev.push_str(&format!(
            ",hostfwd=tcp:127.0.0.1:{}-{}:{}",
            f.host_port, f.guest, f.guest_port
        ));
    }
    [
        "-netdev",
        &netdev,
        "-device",
        "virtio-net-pci,netdev=net0,romfile=",
    ]
    .into_iter()
    .map(OsString::from)
    .collect()
}

/// `n` TCP ports free on the host's loopback now (each bound once by the system's choice and
/// released; QEMU binds them a moment later).
pub fn free_ports(n: usize) -> Result<Vec<u16>, String> {
    let listeners = (0..n)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0"))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("cannot find a free TCP port on 127.0.0.1: {e}"))?;
    listeners
        .iter()
        .map(|l| l.local_addr().map(|a| a.port()))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("cannot find a free TCP port on 127.0.0.1: {e}"))
}

/// A raw disk image on the host, for a machine's [`Machine::disk`]: made (sparse) before the
/// boot, inspected after QEMU exits.
#[derive(Clone, Debug)]
pub struct DiskImage {
    path: PathBuf,
}

impl DiskImage {
    /// Creates (or truncates) a sparse image of `size` bytes, zero-filled, at `path`, making
    /// its directory if needed.
    pub fn create(path: impl Into<PathBuf>, size: u64) -> Result<DiskImage, String> {
        let path = path.into();
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)
                .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        }
        let file = std::fs::File::create(&path)
            .map_err(|e| format!("cannot create {}: {e}", path.display()))?;
        file.set_len(size)
            .map_err(|e| format!("cannot size {}: {e}", path.display()))?;
        Ok(DiskImage { path })
    }

    /// An existing image.
    pub fn open(path: impl Into<PathBuf>) -> DiskImage {
        DiskImage { path: path.into() }
    }

    /// Its path, for [`Machine::disk`].
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Its size in bytes.
    pub fn size(&self) -> Result<u64, String> {
        std::fs::metadata(&self.path)
            .map(|m| m.len())
            .map_err(|e| format!("cannot stat {}: {e}", self.path.display()))
    }

    /// Writes `data` at byte `offset` (the image grows if it ends before).
    pub fn write_at(&self, offset: u64, data: &[u8]) -> Result<(), String> {
        use std::os::unix::fs::FileExt;
        let file = std::fs::OpenOptions::new()
            .write(true)
            .open(&self.path)
            .map_err(|e| format!("cannot open {}: {e}", self.path.display()))?;
        file.write_all_at(data, offset)
            .map_err(|e| format!("cannot write {}: {e}", self.path.display()))
    }

    /// Reads `len` bytes at byte `offset`; fails if the image ends before.
    pub fn read_at(&self, offset: u64, len: usize) -> Result<Vec<u8>, String> {
        use std::os::unix::fs::FileExt;
        let file = std::fs::File::open(&self.path)
            .map_err(|e| format!("cannot open {}: {e}", self.path.display()))?;
        let mut buf = vec![0; len];
        file.read_exact_at(&mut buf, offset).map_err(|e| {
            format!(
                "cannot read {} bytes at {offset} of {}: {e}",
                len,
                self.path.display()
            )
        })?;
        Ok(buf)
    }
}

/// A virtual PC to boot: a builder. Defaults: 256 MiB, 1 CPU, `-cpu max`, no hypervisor
/// options, `debug-exit` on, no modules.
#[derive(Clone, Debug)]
pub struct Machine {
    name: String,
    dir: PathBuf,
    hypervisor: PathBuf,
    memory_mib: u32,
    cpus: u32,
    cpu_model: String,
    hv_options: String,
    debug_exit: bool,
    modules: Vec<Module>,
    console_shell: bool,
    qemu_args: Vec<String>,
    tolerated: Vec<&'static str>,
    memory_file: Option<PathBuf>,
    /// Disk images and whether each is read-only.
    disks: Vec<(PathBuf, bool)>,
    /// ACPI tables GRUB adds ([`ImageSpec::acpi_tables`]).
    acpi_tables: Vec<PathBuf>,
    /// The network card's port forwards, if the machine has a card.
    nic: Option<Vec<Forward>>,
    /// Boot UEFI firmware (OVMF) instead of SeaBIOS.
    uefi: bool,
    /// QEMU's monitor on a Unix socket in the machine's directory ([`Qemu::monitor`]).
    monitor: bool,
    /// GRUB's `gfxpayload` (the template's `text` when `None`).
    gfxpayload: Option<String>,
    registry: Option<Registry>,
}

/// Where a scenario's context collects the consoles of the machines it booted, to show their
/// logs when the scenario fails.
pub(crate) type Registry = Arc<Mutex<Vec<(String, Arc<Shared>)>>>;

impl Machine {
    /// A machine called `name` (letters, digits, `_`, `-`), working in
    /// `<target>/xenia/scenarios/<name>/` and booting the built hypervisor. Scenarios get
    /// theirs from [`crate::Context::machine`].
    pub fn new(ws: &Workspace, name: &str) -> Machine {
        Machine {
            name: name.to_string(),
            dir: ws.scenario_dir(name),
            hypervisor: ws.hypervisor(),
            memory_mib: 256,
            cpus: 1,
            cpu_model: "max".into(),
            hv_options: String::new(),
            debug_exit: true,
            modules: Vec::new(),
            console_shell: false,
            qemu_args: Vec::new(),
            tolerated: Vec::new(),
            memory_file: None,
            disks: Vec::new(),
            acpi_tables: Vec::new(),
            nic: None,
            uefi: false,
            monitor: false,
            gfxpayload: None,
            registry: None,
        }
    }

    pub(crate) fn registered(mut self, registry: Registry) -> Machine {
        self.registry = Some(registry);
        self
    }

    /// The machine's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The machine's working directory (image staging tree and ISO).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// RAM in MiB (`-m`).
    pub fn memory_mib(mut self, mib: u32) -> Machine {
        self.memory_mib = mib;
        self
    }

    /// Number of CPUs (`-smp`).
    pub fn cpus(mut self, cpus: u32) -> Machine {
        self.cpus = cpus;
        self
    }

    /// CPU model (`-cpu`), e.g. `max`, `qemu64`.
    pub fn cpu(mut self, model: &str) -> Machine {
        self.cpu_model = model.to_string();
        self
    }

    /// The hypervisor's command line (before `debug-exit`, which [`Machine::debug_exit`]
    /// controls).
    pub fn hv_options(mut self, options: &str) -> Machine {
        self.hv_options = options.to_string();
        // A measuring aid, never set by the suite: options added to every machine's
        // hypervisor command line (e.g. `xenpv_fastpath=0`, to compare a bench with and
        // without the entry stub's short way), after the machine's own.
        if let Ok(extra) = std::env::var("XENIA_HV_EXTRA") {
            self.hv_options.push(' ');
            self.hv_options.push_str(extra.trim());
        }
        self
    }

    /// Whether to append `debug-exit` to the hypervisor options (default on), so that QEMU's
    /// exit status tells how the hypervisor ended (see the `EXIT_*` constants). Off, the
    /// hypervisor powers off through ACPI and QEMU exits with 0.
    pub fn debug_exit(mut self, on: bool) -> Machine {
        self.debug_exit = on;
        self
    }

    /// Adds a multiboot2 module: the file at `path` with command line `cmdline`.
    pub fn module(mut self, path: impl Into<PathBuf>, cmdline: &str) -> Machine {
        self.modules.push(Module::new(path, cmdline));
        self
    }

    /// Lets dom0 start its console shell (busybox's ash, when the initrd has `/bin/sh`), as
    /// the default image does. Without this, dom0's kernel module is given `shell=builtin`:
    /// the scenarios type at the kernel's built-in shell, whose messages (`sh: exited with
    /// status 3`, `time:`) they read.
    pub fn console_shell(mut self) -> Machine {
        self.console_shell = true;
        self
    }

    /// Appends an argument to the QEMU command line.
    pub fn qemu_arg(mut self, arg: &str) -> Machine {
        self.qemu_args.push(arg.to_string());
        self
    }

    /// Declares that this machine provokes serial lines containing `mark` (one of
    /// [`contract::REJECTED`]) on purpose, so that the runner does not fail the scenario for
    /// them. Every other machine's log is rejected for any such line.
    pub fn tolerate(mut self, mark: &'static str) -> Machine {
        assert!(
            contract::REJECTED.contains(&mark),
            "{mark:?} is not a rejected mark, so there is nothing to tolerate"
        );
        self.tolerated.push(mark);
        self
    }

    /// Backs the guest RAM with the file at `path` (created by QEMU, sparse: only the pages
    /// the machine touches take disk or page-cache space), so that a machine can have more RAM
    /// than the host: `-object memory-backend-file,…,share=on -machine memory-backend=…`.
    /// The caller deletes the file afterwards.
    pub fn memory_file(mut self, path: impl Into<PathBuf>) -> Machine {
        self.memory_file = Some(path.into());
        self
    }

    /// Gives the machine a virtio-net card on QEMU's user-mode network ([`nic_args`]) with a
    /// TCP port forward from a free port of the host's loopback to each `(address, port)` of
    /// `forwards`; [`Qemu::host_port`] says which host port reaches which.
    pub fn nic(mut self, forwards: &[(&str, u16)]) -> Result<Machine, String> {
        let ports = free_ports(forwards.len())?;
        self.nic = Some(
            forwards
                .iter()
                .zip(ports)
                .map(|(&(guest, guest_port), host_port)| Forward {
                    host_port,
                    guest: guest.to_string(),
                    guest_port,
                })
                .collect(),
        );
        Ok(self)
    }

    /// Attaches the raw disk image at `path` as a virtio-blk PCI device (`-drive
    /// file=…,format=raw,if=none,id=diskN -device virtio-blk-pci,drive=diskN`). The first disk
    /// attached is dom0's `/dev/vda`, the second `/dev/vdb`, and so on. The image must exist
    /// (see [`DiskImage`]); after QEMU exits the harness reads it back with
    /// [`DiskImage::read_at`].
    pub fn disk(mut self, path: impl Into<PathBuf>) -> Machine {
        self.disks.push((path.into(), false));
        self
    }

    /// Attaches the raw image at `path` as a read-only virtio-blk disk (`readonly=on`: the
    /// device offers `VIRTIO_BLK_F_RO` and QEMU refuses writes), next in order after the
    /// disks attached before.
    pub fn disk_read_only(mut self, path: impl Into<PathBuf>) -> Machine {
        self.disks.push((path.into(), true));
        self
    }

    /// Has GRUB add the ACPI table in the file at `path` to the firmware's (its `acpi`
    /// command), as it is: the way to give the hypervisor a table with a bad checksum, which
    /// QEMU's `-acpitable` would correct.
    pub fn grub_acpi_table(mut self, path: impl Into<PathBuf>) -> Machine {
        self.acpi_tables.push(path.into());
        self
    }

    /// Boots the machine with UEFI firmware (OVMF, [`OVMF_FIRMWARE`]) instead of SeaBIOS
    /// when `on`. The image is the same: it carries GRUB for both.
    pub fn uefi(mut self, on: bool) -> Machine {
        self.uefi = on;
        self
    }

    /// Gives the machine QEMU's monitor on a Unix socket in its directory, for
    /// [`Qemu::monitor`], [`Qemu::send_keys`], [`Qemu::read_vga_text`] and
    /// [`Qemu::screendump`].
    pub fn monitor(mut self, on: bool) -> Machine {
        self.monitor = on;
        self
    }

    /// GRUB's `gfxpayload` for the hypervisor, e.g. `1024x768x32` for a VBE framebuffer on
    /// BIOS (the image's default is `text`: VGA text mode).
    pub fn gfxpayload(mut self, mode: &str) -> Machine {
        self.gfxpayload = Some(mode.to_string());
        self
    }

    /// Where the monitor's socket is.
    pub fn monitor_path(&self) -> PathBuf {
        self.dir.join("monitor.sock")
    }

    /// Boots another hypervisor image than `<target>/xenia/xenia.elf`.
    pub fn hypervisor(mut self, path: impl Into<PathBuf>) -> Machine {
        self.hypervisor = path.into();
        self
    }

    /// The command line the hypervisor receives.
    pub fn hv_cmdline(&self) -> String {
        let mut words: Vec<&str> = vec![self.hv_options.trim()];
        if self.debug_exit {
            words.push(DEBUG_EXIT_OPTION);
        }
        words.retain(|w| !w.is_empty());
        words.join(" ")
    }

    /// The image this machine boots.
    pub fn image_spec(&self) -> ImageSpec {
        ImageSpec {
            hypervisor: self.hypervisor.clone(),
            hv_options: self.hv_cmdline(),
            modules: self
                .modules
                .iter()
                .map(|m| {
                    let dom0 = m.path.file_name().is_some_and(|n| n == DOM0_ARTIFACT);
                    if dom0 && !self.console_shell && !m.cmdline.contains("shell=") {
                        let cmdline = format!("{} shell=builtin", m.cmdline);
                        Module::new(m.path.clone(), cmdline.trim())
                    } else {
                        m.clone()
                    }
                })
                .collect(),
            acpi_tables: self.acpi_tables.clone(),
            gfxpayload: self.gfxpayload.clone(),
        }
    }

    /// The ISO path.
    pub fn iso_path(&self) -> PathBuf {
        self.dir.join("xenia.iso")
    }

    /// QEMU's arguments for booting `iso`.
    pub fn qemu_command_args(&self, iso: &Path) -> Vec<OsString> {
        let mut args = qemu_args(
            &self.cpu_model,
            self.memory_mib,
            self.cpus,
            iso,
            SerialConsole::Piped,
        );
        if self.uefi {
            args.extend(uefi_args());
        }
        if let Some(path) = &self.memory_file {
            let mut backend = OsString::from(format!(
                "memory-backend-file,id=xenia-ram,size={}M,share=on,mem-path=",
                self.memory_mib
            ));
            backend.push(path);
            args.extend([
                OsString::from("-object"),
                backend,
                OsString::from("-machine"),
                OsString::from("memory-backend=xenia-ram"),
            ]);
        }
        for (i, (disk, read_only)) in self.disks.iter().enumerate() {
            args.extend(disk_args(disk, i));
            if *read_only && let Some(drive) = args.iter_mut().rev().nth(2) {
                drive.push(",readonly=on");
            }
        }
        if let Some(forwards) = &self.nic {
            args.extend(nic_args(forwards));
        }
        if self.monitor {
            let mut socket = OsString::from("unix:");
            socket.push(self.monitor_path());
            socket.push(",server=on,wait=off");
            // In place of `-monitor none`.
            match args
                .iter()
                .position(|a| a == "none")
                .filter(|&i| i > 0 && args[i - 1] == "-monitor")
            {
                Some(i) => args[i] = socket,
                None => args.extend([OsString::from("-monitor"), socket]),
            }
        }
        args.extend(self.qemu_args.iter().map(OsString::from));
        // A profiling aid, never set by the suite: extra QEMU arguments for every machine
        // (e.g. `-plugin path/libhot.so`), split at blanks.
        if let Some(extra) = std::env::var_os("XENIA_QEMU_EXTRA") {
            args.extend(
                extra
                    .to_string_lossy()
                    .split_whitespace()
                    .map(OsString::from),
            );
        }
        args
    }

    /// Builds the image (if its inputs changed) and starts QEMU.
    pub fn boot(self) -> Result<Qemu, String> {
        let name_ok = !self.name.is_empty()
            && self
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
        if !name_ok {
            return Err(format!(
                "machine name {:?}: use only letters, digits, '_' and '-'",
                self.name
            ));
        }
        if self.memory_mib == 0 || self.cpus == 0 {
            return Err(format!(
                "machine {}: memory and CPU count must be non-zero",
                self.name
            ));
        }
        if let Some((missing, _)) = self.disks.iter().find(|(d, _)| !d.is_file()) {
            return Err(format!(
                "machine {}: the disk image {} does not exist",
                self.name,
                missing.display()
            ));
        }
        if !self.hypervisor.is_file() {
            return Err(format!(
                "the hypervisor image {} does not exist: run `cargo xtask build` first",
                self.hypervisor.display()
            ));
        }
        if self.uefi {
            check_uefi_firmware()?;
        }
        std::fs::create_dir_all(&self.dir)
            .map_err(|e| format!("cannot create {}: {e}", self.dir.display()))?;
        let monitor_path = self.monitor.then(|| self.monitor_path());
        if let Some(path) = &monitor_path {
            // A socket left by an earlier run would make QEMU fail to bind.
            let _ = std::fs::remove_file(path);
        }
        let image = iso::build_image(&self.image_spec(), &self.dir.join("iso"), &self.iso_path())?;

        let mut child = Command::new(QEMU)
            .args(self.qemu_command_args(&image.iso))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| match e.kind() {
                ErrorKind::NotFound => format!(
                    "{QEMU} is not installed: run `cargo xtask test` (it installs the host \
                     tools) or `sudo apt-get install -y qemu-system-x86`"
                ),
                _ => format!("cannot start {QEMU}: {e}"),
            })?;

        let shared = Arc::new(Shared {
            tolerated: self.tolerated.clone(),
            ..Shared::default()
        });
        let mut threads = Vec::new();
        if let Some(stdout) = child.stdout.take() {
            threads.push(spawn_reader(stdout, Arc::clone(&shared), Stream::Serial));
        }
        if let Some(stderr) = child.stderr.take() {
            threads.push(spawn_reader(stderr, Arc::clone(&shared), Stream::Stderr));
        }
        if let Some(registry) = &self.registry {
            lock(registry).push((self.name.clone(), Arc::clone(&shared)));
        }
        Ok(Qemu {
            dir: self.dir.clone(),
            monitor_path,
            monitor: None,
            forwards: self.nic.clone().unwrap_or_default(),
            name: self.name,
            stdin: child.stdin.take(),
            child,
            shared,
            cursor: 0,
            threads,
            status: None,
        })
    }
}

/// What the reader threads collect.
#[derive(Debug, Default)]
pub(crate) struct Shared {
    console: Mutex<Console>,
    changed: Condvar,
    /// The rejected marks this machine provokes on purpose ([`Machine::tolerate`]).
    pub(crate) tolerated: Vec<&'static str>,
}

#[derive(Debug, Default)]
struct Console {
    raw: Vec<u8>,
    text: String,
    normalizer: Normalizer,
    serial_closed: bool,
    stderr: Vec<u8>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Console> {
        lock(&self.console)
    }

    /// The normalized serial log so far.
    pub(crate) fn serial_log(&self) -> String {
        self.lock().text.clone()
    }

    /// QEMU's standard error so far.
    pub(crate) fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.lock().stderr).into_owned()
    }
}

/// Locks `mutex`, ignoring poisoning: the data (logs) stays meaningful after a panic.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

#[derive(Clone, Copy)]
enum Stream {
    Serial,
    Stderr,
}

fn spawn_reader(
    mut pipe: impl Read + Send + 'static,
    shared: Arc<Shared>,
    stream: Stream,
) -> JoinHandle<()> {
    thread::spawn(move || {
        let mut buf = [0u8; 4096];
        loop {
            let n = match pipe.read(&mut buf) {
                Ok(0) => 0,
                Ok(n) => n,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(_) => 0,
            };
            let mut console = shared.lock();
            let console = &mut *console;
            match stream {
                Stream::Serial if n == 0 => {
                    console.normalizer.finish(&mut console.text);
                    console.serial_closed = true;
                }
                Stream::Serial => {
                    console.raw.extend_from_slice(&buf[..n]);
                    console.normalizer.push(&buf[..n], &mut console.text);
                }
                Stream::Stderr => console.stderr.extend_from_slice(&buf[..n]),
            }
            shared.changed.notify_all();
            if n == 0 {
                return;
            }
        }
    })
}

/// A running QEMU. Dropping it kills QEMU.
pub struct Qemu {
    name: String,
    /// The machine's directory (dumps from the monitor go there).
    dir: PathBuf,
    /// The monitor's socket, if the machine has one, and the connection once made.
    monitor_path: Option<PathBuf>,
    monitor: Option<crate::monitor::Monitor>,
    /// The network card's port forwards.
    forwards: Vec<Forward>,
    child: Child,
    stdin: Option<ChildStdin>,
    shared: Arc<Shared>,
    cursor: usize,
    threads: Vec<JoinHandle<()>>,
    status: Option<ExitStatus>,
}

impl Qemu {
    /// The host port (on 127.0.0.1) that QEMU forwards to `guest:guest_port`, if the machine
    /// was given that forward ([`Machine::nic`]).
    pub fn host_port(&self, guest: &str, guest_port: u16) -> Option<u16> {
        self.forwards
            .iter()
            .find(|f| f.guest == guest && f.guest_port == guest_port)
            .map(|f| f.host_port)
    }

    /// The machine's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// QEMU's process id (benches read its CPU time in `/proc`).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Runs a QEMU monitor command (the machine needs [`Machine::monitor`]) and returns its
    /// answer; bounded by [`crate::monitor::COMMAND_TIMEOUT`].
    pub fn monitor(&mut self, command: &str) -> Result<String, String> {
        let Some(path) = &self.monitor_path else {
            return Err(format!(
                "{}: no QEMU monitor: build the machine with .monitor(true)",
                self.name
            ));
        };
        if self.monitor.is_none() {
            self.monitor = Some(crate::monitor::Monitor::connect(path)?);
        }
        let monitor = self.monitor.as_mut().expect("connected just above");
        monitor
            .command(command)
            .map_err(|e| format!("{}: monitor command {command:?}: {e}", self.name))
    }

    /// Presses one key through the monitor (`sendkey`, QEMU's key names: `ctrl-a`, `ret`,
    /// `shift-d`, `backspace`).
    pub fn sendkey(&mut self, key: &str) -> Result<(), String> {
        let answer = self.monitor(&format!("sendkey {key}"))?;
        if answer.trim().is_empty() {
            Ok(())
        } else {
            Err(format!("{}: sendkey {key}: {}", self.name, answer.trim()))
        }
    }

    /// Types `text` on the PS/2 keyboard, key by key ([`crate::monitor::key_names`]).
    pub fn send_keys(&mut self, text: &str) -> Result<(), String> {
        for key in crate::monitor::key_names(text)? {
            self.sendkey(&key)?;
        }
        Ok(())
    }

    /// The 80x25 VGA text screen, row by row (`pmemsave` of 0xB8000).
    pub fn read_vga_text(&mut self) -> Result<Vec<String>, String> {
        use crate::monitor::{VGA_COLS, VGA_ROWS, VGA_TEXT_ADDRESS};
        let file = self.dir.join("vga-text.bin");
        let _ = std::fs::remove_file(&file);
        let len = VGA_COLS * VGA_ROWS * 2;
        let answer = self.monitor(&format!(
            "pmemsave {VGA_TEXT_ADDRESS:#x} {len} \"{}\"",
            file.display()
        ))?;
        let memory = std::fs::read(&file).map_err(|e| {
            format!(
                "{}: pmemsave wrote no {} ({e}): {answer}",
                self.name,
                file.display()
            )
        })?;
        Ok(crate::monitor::vga_text(&memory))
    }

    /// A screenshot of the display (`screendump`, PPM).
    pub fn screendump(&mut self) -> Result<crate::monitor::Image, String> {
        let file = self.dir.join("screen.ppm");
        let _ = std::fs::remove_file(&file);
        let answer = self.monitor(&format!("screendump {}", file.display()))?;
        let data = std::fs::read(&file).map_err(|e| {
            format!(
                "{}: screendump wrote no {} ({e}): {answer}",
                self.name,
                file.display()
            )
        })?;
        crate::monitor::parse_ppm(&data).map_err(|e| format!("{}: {e}", self.name))
    }

    /// Waits until `text` appears in the normalized serial output after the cursor, and moves
    /// the cursor just past it.
    pub fn wait_for(&mut self, text: &str, timeout: Duration) -> Result<(), String> {
        self.wait_until(&format!("{text:?}"), timeout, |log, cursor| {
            log[cursor..]
                .find(text)
                .map(|i| ((), cursor + i + text.len()))
        })
    }

    /// Waits for a complete line containing `text` and returns it; the cursor moves past it.
    pub fn wait_for_line(&mut self, text: &str, timeout: Duration) -> Result<String, String> {
        self.wait_for_line_matching(&format!("a line containing {text:?}"), timeout, |line| {
            line.contains(text)
        })
    }

    /// Waits for a complete line starting with `prefix` and returns it; the cursor moves past
    /// it.
    pub fn wait_for_line_starting(
        &mut self,
        prefix: &str,
        timeout: Duration,
    ) -> Result<String, String> {
        self.wait_for_line_matching(
            &format!("a line starting with {prefix:?}"),
            timeout,
            |line| line.starts_with(prefix),
        )
    }

    /// Waits for a complete line that satisfies `pred` and returns it; the cursor moves past
    /// it. `what` describes the line for the error message.
    pub fn wait_for_line_matching(
        &mut self,
        what: &str,
        timeout: Duration,
        mut pred: impl FnMut(&str) -> bool,
    ) -> Result<String, String> {
        self.wait_until(what, timeout, |log, cursor| {
            serial::find_line_from(log, cursor, &mut pred)
                .map(|(line, next)| (line.to_string(), next))
        })
    }

    /// Waits until `found` (given the normalized log and the cursor) returns a value and the
    /// new cursor. Fails when QEMU's serial output ends first or `timeout` passes.
    pub fn wait_until<T>(
        &mut self,
        what: &str,
        timeout: Duration,
        mut found: impl FnMut(&str, usize) -> Option<(T, usize)>,
    ) -> Result<T, String> {
        let deadline = Instant::now() + timeout;
        let shared = Arc::clone(&self.shared);
        let mut console = shared.lock();
        loop {
            if let Some((value, cursor)) = found(&console.text, self.cursor) {
                self.cursor = cursor;
                return Ok(value);
            }
            let last = serial::last_line(&console.text).unwrap_or("").to_string();
            if let Some(errors) = grub_failure(&console.text) {
                return Err(format!(
                    "{}: GRUB could not boot the image ({errors}) while waiting for {what}",
                    self.name
                ));
            }
            if console.serial_closed {
                drop(console);
                let ended = match self.reap(Duration::from_secs(5)) {
                    Some(code) => format!("exited with status {code} ({})", describe_exit(code)),
                    None => "closed its serial output".into(),
                };
                return Err(format!(
                    "{}: QEMU {ended} before {what} appeared; last serial line: {last:?}",
                    self.name
                ));
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(format!(
                    "{}: timed out after {}s waiting for {what}; last serial line: {last:?}",
                    self.name,
                    timeout.as_secs_f32()
                ));
            }
            console = shared
                .changed
                .wait_timeout(console, deadline - now)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }

    /// Types `text` on the serial console.
    pub fn send(&mut self, text: &str) -> Result<(), String> {
        let stdin = self
            .stdin
            .as_mut()
            .ok_or_else(|| format!("{}: QEMU's input is closed", self.name))?;
        stdin
            .write_all(text.as_bytes())
            .and_then(|()| stdin.flush())
            .map_err(|e| format!("{}: cannot type on the serial console: {e}", self.name))
    }

    /// Waits for QEMU to exit and returns its exit status; kills QEMU and fails if it still
    /// runs after `timeout`.
    pub fn wait_exit(&mut self, timeout: Duration) -> Result<i32, String> {
        let deadline = Instant::now() + timeout;
        if self.status.is_none() {
            let shared = Arc::clone(&self.shared);
            let mut console = shared.lock();
            while !console.serial_closed {
                if let Some(errors) = grub_failure(&console.text) {
                    drop(console);
                    self.kill();
                    return Err(format!(
                        "{}: GRUB could not boot the image ({errors}); killed QEMU",
                        self.name
                    ));
                }
                let now = Instant::now();
                if now >= deadline {
                    drop(console);
                    self.kill();
                    return Err(format!(
                        "{}: QEMU still running after {}s; killed it",
                        self.name,
                        timeout.as_secs_f32()
                    ));
                }
                console = shared
                    .changed
                    .wait_timeout(console, deadline - now)
                    .unwrap_or_else(PoisonError::into_inner)
                    .0;
            }
        }
        match self.reap(Duration::from_secs(5)) {
            Some(code) => Ok(code),
            None => {
                let signalled = self.status.is_some();
                self.kill();
                Err(if signalled {
                    format!("{}: QEMU was killed by a signal", self.name)
                } else {
                    format!(
                        "{}: QEMU closed its output but did not exit; killed it",
                        self.name
                    )
                })
            }
        }
    }

    /// Checks that QEMU keeps running for `period` (a halted machine): fails, saying how it
    /// ended, if its serial output closes (exit status, or a signal) or GRUB fails first.
    /// QEMU is left running.
    pub fn expect_running(&mut self, period: Duration) -> Result<(), String> {
        let deadline = Instant::now() + period;
        let shared = Arc::clone(&self.shared);
        let mut console = shared.lock();
        loop {
            if let Some(errors) = grub_failure(&console.text) {
                return Err(format!(
                    "{}: GRUB could not boot the image ({errors})",
                    self.name
                ));
            }
            if console.serial_closed {
                drop(console);
                let ended = match self.reap(Duration::from_secs(5)) {
                    Some(code) => format!("exited with status {code} ({})", describe_exit(code)),
                    None if self.status.is_some() => "was killed by a signal".into(),
                    None => "closed its serial output".into(),
                };
                return Err(format!(
                    "{}: QEMU {ended} within {}s; it should have kept running",
                    self.name,
                    period.as_secs_f32()
                ));
            }
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            console = shared
                .changed
                .wait_timeout(console, deadline - now)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
        drop(console);
        if self.has_exited() {
            return Err(format!(
                "{}: QEMU ended ({:?}) within {}s; it should have kept running",
                self.name,
                self.status,
                period.as_secs_f32()
            ));
        }
        Ok(())
    }

    /// Waits for QEMU to exit with status `expected` (see the `EXIT_*` constants).
    pub fn expect_exit(&mut self, expected: i32, timeout: Duration) -> Result<(), String> {
        let code = self.wait_exit(timeout)?;
        if code == expected {
            Ok(())
        } else {
            Err(format!(
                "{}: QEMU exited with status {code} ({}), expected {expected} ({})",
                self.name,
                describe_exit(code),
                describe_exit(expected)
            ))
        }
    }

    /// After QEMU's output closed: collects its exit status, waiting at most `patience` for
    /// the process to finish exiting. `None` if it did not, or was killed by a signal.
    fn reap(&mut self, patience: Duration) -> Option<i32> {
        let deadline = Instant::now() + patience;
        let mut pause = Duration::from_millis(1);
        while self.status.is_none() {
            match self.child.try_wait() {
                Ok(Some(status)) => self.status = Some(status),
                Ok(None) if Instant::now() < deadline => {
                    // Polling for process exit (there is no portable way to wait with a
                    // deadline); QEMU has already closed its output, so this is brief.
                    thread::sleep(pause);
                    pause = (pause * 2).min(Duration::from_millis(50));
                }
                Ok(None) | Err(_) => return None,
            }
        }
        self.status.and_then(|s| s.code())
    }

    /// Kills QEMU (if it still runs) and reaps it.
    pub fn kill(&mut self) {
        if self.status.is_none() {
            let _ = self.child.kill();
            self.status = self.child.wait().ok();
        }
    }

    /// Whether QEMU has exited (as far as observed).
    pub fn has_exited(&mut self) -> bool {
        if self.status.is_none()
            && let Ok(Some(status)) = self.child.try_wait()
        {
            self.status = Some(status);
        }
        self.status.is_some()
    }

    /// The normalized serial log so far (escape sequences and `\r` removed).
    pub fn serial_log(&self) -> String {
        self.shared.serial_log()
    }

    /// The raw serial output so far.
    pub fn raw_serial(&self) -> Vec<u8> {
        self.shared.lock().raw.clone()
    }

    /// QEMU's standard error so far.
    pub fn stderr(&self) -> String {
        self.shared.stderr()
    }

    /// The cursor: an offset into [`Qemu::serial_log`] where the next wait starts searching.
    pub fn cursor(&self) -> usize {
        self.cursor
    }
}

impl Drop for Qemu {
    fn drop(&mut self) {
        self.stdin.take();
        self.kill();
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes() {
        assert_eq!(EXIT_POWEROFF, 33);
        assert_eq!(EXIT_HYPERVISOR_FATAL, 35);
        assert_eq!(EXIT_DOM0_CRASHED, 37);
        assert_eq!(EXIT_DOM0_REBOOT, 39);
        assert_eq!(EXIT_FRAME_TABLE_INCONSISTENT, 41);
        assert!(describe_exit(41).contains("frame-table consistency check failed"));
        assert!(describe_exit(35).contains("fatal"));
        assert!(describe_exit(0x55).contains("0x2a"));
    }

    #[test]
    fn hypervisor_command_line() {
        let ws = Workspace::new("/w");
        let m = Machine::new(&ws, "x");
        assert_eq!(m.hv_cmdline(), "debug-exit");
        assert_eq!(m.clone().debug_exit(false).hv_cmdline(), "");
        assert_eq!(
            m.clone().hv_options("a=1 b").hv_cmdline(),
            "a=1 b debug-exit"
        );
        assert_eq!(m.hv_options("a").debug_exit(false).hv_cmdline(), "a");
    }

    fn join(args: Vec<OsString>) -> String {
        args.iter()
            .map(|a| a.to_string_lossy())
            .collect::<Vec<_>>()
            .join(" ")
    }

    #[test]
    fn qemu_arguments() {
        let ws = Workspace::new("/w");
        let m = Machine::new(&ws, "x")
            .memory_mib(512)
            .cpus(2)
            .cpu("qemu64")
            .qemu_arg("-s");
        assert!(m.dir().ends_with("xenia/scenarios/x"));
        let args = join(m.qemu_command_args(Path::new("/i.iso")));
        assert_eq!(
            args,
            "-accel tcg -machine pc -cpu qemu64 -m 512 -smp 2 -cdrom /i.iso -display none \
             -serial stdio -monitor none -no-reboot -device isa-debug-exit,iobase=0xf4,iosize=0x04 -s"
        );
        let run = join(qemu_args(
            "max",
            1024,
            1,
            Path::new("x.iso"),
            SerialConsole::Terminal,
        ));
        assert!(
            run.contains(" -display none -serial mon:stdio -no-reboot "),
            "{run}"
        );
    }

    #[test]
    fn uefi_machines_boot_ovmf() {
        let ws = Workspace::new("/w");
        let m = Machine::new(&ws, "x");
        let bios = join(m.qemu_command_args(Path::new("/i.iso")));
        assert!(!bios.contains("-bios"), "{bios}");
        let uefi = join(
            m.uefi(true)
                .qemu_arg("-s")
                .qemu_command_args(Path::new("/i.iso")),
        );
        assert!(
            uefi.ends_with(&format!(" -bios {OVMF_FIRMWARE} -s")),
            "{uefi}"
        );
    }

    #[test]
    fn memory_file_backs_the_ram() {
        let ws = Workspace::new("/w");
        let m = Machine::new(&ws, "x")
            .memory_mib(40960)
            .memory_file("/t/ram");
        let args = join(m.qemu_command_args(Path::new("/i.iso")));
        assert!(
            args.ends_with(
                " -object memory-backend-file,id=xenia-ram,size=40960M,share=on,mem-path=/t/ram \
                 -machine memory-backend=xenia-ram"
            ),
            "{args}"
        );
        assert!(args.contains(" -m 40960 "), "{args}");
    }

    #[test]
    fn the_network_card_forwards_free_host_ports() {
        let ws = Workspace::new("/w");
        let m = Machine::new(&ws, "x")
            .nic(&[("10.0.2.15", 9), ("10.0.2.20", 80)])
            .unwrap();
        let args = join(m.qemu_command_args(Path::new("/i.iso")));
        let forwards = m.nic.clone().unwrap();
        let (a, b) = (forwards[0].host_port, forwards[1].host_port);
        assert_ne!(a, b);
        assert!(
            args.ends_with(&format!(
                " -netdev user,id=net0,net=10.0.2.0/24,dhcpstart=10.0.2.20,\
                 hostfwd=tcp:127.0.0.1:{a}-10.0.2.15:9,hostfwd=tcp:127.0.0.1:{b}-10.0.2.20:80 \
                 -device virtio-net-pci,netdev=net0,romfile="
            )),
            "{args}"
        );
    }

    #[test]
    fn disks_are_virtio_blk_pci_devices() {
        let ws = Workspace::new("/w");
        let m = Machine::new(&ws, "x")
            .disk("/t/a.img")
            .disk("/t/b,c.img")
            .disk_read_only("/t/r.img")
            .qemu_arg("-s");
        let args = join(m.qemu_command_args(Path::new("/i.iso")));
        assert!(
            args.ends_with(
                " -boot order=d -drive file=/t/a.img,format=raw,if=none,id=disk0 -device virtio-blk-pci,drive=disk0 \
                 -drive file=/t/b,,c.img,format=raw,if=none,id=disk1 -device virtio-blk-pci,drive=disk1 \
                 -drive file=/t/r.img,format=raw,if=none,id=disk2,readonly=on -device virtio-blk-pci,drive=disk2 -s"
            ),
            "{args}"
        );
        let err = Machine::new(&ws, "x").disk("/nonexistent.img").boot().err();
        assert!(err.unwrap().contains("does not exist"));
    }

    #[test]
    fn disk_images_are_written_and_read_back() {
        let dir = std::env::temp_dir().join(format!("xenia-disk-test-{}", std::process::id()));
        let image = DiskImage::create(dir.join("d.img"), 1 << 20).unwrap();
        assert_eq!(image.size().unwrap(), 1 << 20);
        image.write_at(4096, b"xenia").unwrap();
        assert_eq!(image.read_at(4095, 7).unwrap(), b"\0xenia\0");
        assert!(image.read_at((1 << 20) - 2, 4).is_err());
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn boot_without_hypervisor_says_what_to_do() {
        let ws = Workspace::new("/nonexistent");
        let err = Machine::new(&ws, "x").boot().err().unwrap();
        assert!(err.contains("run `cargo xtask build`"), "{err}");
        let err = Machine::new(&ws, "a/b").boot().err().unwrap();
        assert!(err.contains("letters, digits"), "{err}");
    }
}
