//! `/proc` as Linux lays it out, as far as busybox's `ps`, `free`, `uptime`, `df` and
//! `top` read it: made from a [`System`] snapshot the kernel takes as a file is opened.
//!
//! * `/proc`: a directory per process, `self` (a link to the caller's), `meminfo`,
//!   `uptime`, `loadavg`, `mounts`, `version`, `stat`.
//! * `/proc/<pid>`: `stat`, `status`, `cmdline`, `comm`, and `cwd` (a link).
//!
//! The formats are Linux's (`fs/proc/array.c`, `meminfo.c`, `uptime.c`, `loadavg.c`), with
//! the figures dom0 keeps; those it does not keep (CPU time per process, page cache) are 0.

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use crate::files::Snapshot;
use crate::files::errno::{EINVAL, ENOENT, ENOTDIR};

/// Inode numbers of `/proc`'s entries start here (far above the root file system's).
pub const FIRST_INO: u64 = 1 << 48;
/// Clock ticks a second, as `/proc` counts them (`USER_HZ`).
pub const USER_HZ: u64 = 100;

/// A process, as `/proc` shows it.
#[derive(Clone, Debug, Default)]
pub struct Process {
    /// Its ID.
    pub pid: u32,
    /// Its parent's.
    pub ppid: u32,
    /// Its process group (also shown as its session).
    pub pgid: u32,
    /// `R`, `S` or `Z`.
    pub state: char,
    /// Its name (`comm`, at most 15 bytes).
    pub comm: String,
    /// Its arguments, each ended by a NUL.
    pub cmdline: Vec<u8>,
    /// When it started, ns since boot.
    pub started_ns: u64,
    /// Bytes of address space.
    pub vsize: u64,
    /// Pages resident.
    pub rss: u64,
    /// Its working directory.
    pub cwd: String,
}

/// What the whole of `/proc` is made from.
#[derive(Clone, Debug, Default)]
pub struct System {
    /// ns since boot.
    pub uptime_ns: u64,
    /// dom0's memory, KiB.
    pub mem_total_kib: u64,
    /// Of which free, KiB.
    pub mem_free_kib: u64,
    /// The processes, by ID.
    pub processes: Vec<Process>,
    /// The caller's ID (`self`).
    pub caller: u32,
    /// `uname -r`.
    pub release: String,
    /// The block devices for `/proc/partitions`: major, minor, 512-byte sectors, name.
    pub partitions: Vec<(u32, u32, u64, String)>,
    /// The device interrupts for `/proc/interrupts`: GSI, count, device name.
    pub interrupts: Vec<(u32, u64, String)>,
    /// `/proc/bus/pci/devices`, as the kernel made it (one line per PCI function).
    pub pci_devices: String,
    /// The files of `/proc/net` (`dev` in Linux's layout, and Xenia's `bridge`, `addr`,
    /// `services`), as the kernel made them: name and contents.
    pub net: Vec<(&'static str, String)>,
}

/// What a path under `/proc` names.
enum Place<'p> {
    Root,
    Top(&'static str),
    NetDir,
    Net(usize),
    Pid(&'p Process),
    PidFile(&'p Process, &'static str),
}

const TOP_FILES: [&str; 8] = [
    "meminfo",
    "uptime",
    "loadavg",
    "mounts",
    "version",
    "stat",
    "partitions",
    "interrupts",
];
/// `/proc/net`'s inode number (its files follow).
const NET_INO: u64 = FIRST_INO + 64;
const PID_FILES: [&str; 4] = ["stat", "status", "cmdline", "comm"];

/// `d_type`s.
const DT_DIR: u8 = 4;
const DT_REG: u8 = 8;
const DT_LNK: u8 = 10;

impl System {
    fn process(&self, name: &str) -> Result<&Process, i64> {
        let pid = if name == "self" {
            self.caller
        } else {
            name.parse::<u32>().map_err(|_| -ENOENT)?
        };
        self.processes.iter().find(|p| p.pid == pid).ok_or(-ENOENT)
    }

    fn place(&self, path: &str) -> Result<Place<'_>, i64> {
        let rest = path.strip_prefix("/proc").ok_or(-ENOENT)?;
        let parts: Vec<&str> = rest.split('/').filter(|s| !s.is_empty()).collect();
        match parts[..] {
            [] => Ok(Place::Root),
            ["bus", "pci", "devices"] => Ok(Place::Top("bus/pci/devices")),
            ["net"] => Ok(Place::NetDir),
            ["net", name] => self
                .net
                .iter()
                .position(|(n, _)| *n == name)
                .map(Place::Net)
                .ok_or(-ENOENT),
            [name] => match TOP_FILES.iter().find(|f| **f == name) {
                Some(f) => Ok(Place::Top(f)),
                None => self.process(name).map(Place::Pid),
            },
            [pid, file] => {
                let p = self.process(pid)?;
                match PID_FILES.iter().find(|f| **f == file) {
                    Some(f) => Ok(Place::PidFile(p, f)),
                    None if file == "cwd" => Err(-ENOTDIR),
                    None => Err(-ENOENT),
                }
            }
            [pid, "cwd", ..] => {
                self.process(pid)?;
                // Paths through the link are the caller's to resolve in the root.
                Err(-ENOENT)
            }
            _ => {
                if let [pid, f, ..] = parts[..] {
                    self.process(pid)?;
                    if PID_FILES.contains(&f) {
                        return Err(-ENOTDIR);
                    }
                }
                Err(-ENOENT)
            }
        }
    }

    /// The snapshot of the file or directory `path` (absolute, normalised, under `/proc`)
    /// names, `self` followed.
    pub fn open(&self, path: &str) -> Result<Snapshot, i64> {
        Ok(match self.place(path)? {
            Place::Root => {
                let mut entries = Vec::new();
                for p in &self.processes {
                    entries.push((format!("{}", p.pid), pid_ino(p.pid, 0), DT_DIR));
                }
                entries.push((String::from("self"), FIRST_INO + 1, DT_LNK));
                for (i, f) in TOP_FILES.iter().enumerate() {
                    entries.push((String::from(*f), FIRST_INO + 2 + i as u64, DT_REG));
                }
                entries.push((String::from("net"), NET_INO, DT_DIR));
                Snapshot::Dir {
                    ino: FIRST_INO,
                    parent: 1,
                    entries,
                }
            }
            Place::Top("bus/pci/devices") => Snapshot::File {
                ino: FIRST_INO + 2 + TOP_FILES.len() as u64,
                bytes: self.pci_devices.clone().into_bytes(),
            },
            Place::NetDir => Snapshot::Dir {
                ino: NET_INO,
                parent: FIRST_INO,
                entries: self
                    .net
                    .iter()
                    .enumerate()
                    .map(|(i, (n, _))| (String::from(*n), NET_INO + 1 + i as u64, DT_REG))
                    .collect(),
            },
            Place::Net(i) => Snapshot::File {
                ino: NET_INO + 1 + i as u64,
                bytes: self.net[i].1.clone().into_bytes(),
            },
            Place::Top(f) => Snapshot::File {
                ino: FIRST_INO + 2 + TOP_FILES.iter().position(|t| *t == f).unwrap_or(0) as u64,
                bytes: self.top_file(f).into_bytes(),
            },
            Place::Pid(p) => {
                let mut entries: Vec<(String, u64, u8)> = PID_FILES
                    .iter()
                    .enumerate()
                    .map(|(i, f)| (String::from(*f), pid_ino(p.pid, 1 + i as u64), DT_REG))
                    .collect();
                entries.push((String::from("cwd"), pid_ino(p.pid, 9), DT_LNK));
                Snapshot::Dir {
                    ino: pid_ino(p.pid, 0),
                    parent: FIRST_INO,
                    entries,
                }
            }
            Place::PidFile(p, f) => Snapshot::File {
                ino: pid_ino(
                    p.pid,
                    1 + PID_FILES.iter().position(|t| *t == f).unwrap_or(0) as u64,
                ),
                bytes: pid_file(p, f, self.uptime_ns),
            },
        })
    }

    /// `readlink` under `/proc`: `self` and `<pid>/cwd`; `EINVAL` for anything else that
    /// exists.
    pub fn readlink(&self, path: &str) -> Result<String, i64> {
        let rest = path.strip_prefix("/proc").ok_or(-ENOENT)?;
        let parts: Vec<&str> = rest.split('/').filter(|s| !s.is_empty()).collect();
        match parts[..] {
            ["self"] => Ok(format!("{}", self.caller)),
            [pid, "cwd"] => Ok(self.process(pid)?.cwd.clone()),
            _ => {
                self.place(path)?;
                Err(-EINVAL)
            }
        }
    }

    fn top_file(&self, f: &str) -> String {
        let secs = self.uptime_ns / 1_000_000_000;
        let hundredths = self.uptime_ns / 10_000_000 % 100;
        match f {
            "meminfo" => {
                let mut s = String::new();
                let used_by_processes = 0;
                for (name, kib) in [
                    ("MemTotal:", self.mem_total_kib),
                    ("MemFree:", self.mem_free_kib),
                    ("MemAvailable:", self.mem_free_kib),
                    ("Buffers:", 0),
                    ("Cached:", used_by_processes),
                    ("SwapCached:", 0),
                    ("Active:", 0),
                    ("Inactive:", 0),
                    ("SwapTotal:", 0),
                    ("SwapFree:", 0),
                    ("Shmem:", 0),
                    ("SReclaimable:", 0),
                ] {
                    s.push_str(&format!("{name:<16}{kib:>8} kB\n"));
                }
                s
            }
            "uptime" => format!("{secs}.{hundredths:02} {secs}.{hundredths:02}\n"),
            "loadavg" => {
                let running = self.processes.iter().filter(|p| p.state == 'R').count();
                let last = self.processes.iter().map(|p| p.pid).max().unwrap_or(0);
                format!("0.00 0.00 0.00 {running}/{} {last}\n", self.processes.len())
            }
            // The root is `tmpfs`, not `rootfs`: busybox's `df` passes over `rootfs` entries
            // (an initramfs that a real root was mounted over).
            "mounts" => String::from(
                "tmpfs / tmpfs rw,relatime 0 0\nproc /proc proc rw,nosuid,nodev,noexec,relatime 0 0\n",
            ),
            "version" => format!("Linux version {} (xenia dom0) #1 SMP\n", self.release),
            "stat" => {
                let ticks = self.uptime_ns / (1_000_000_000 / USER_HZ);
                format!(
                    "cpu  0 0 0 {ticks} 0 0 0 0 0 0\ncpu0 0 0 0 {ticks} 0 0 0 0 0 0\n\
                     intr 0\nctxt 0\nbtime 0\nprocesses {}\nprocs_running {}\n\
                     procs_blocked 0\n",
                    self.processes.len(),
                    self.processes.iter().filter(|p| p.state == 'R').count()
                )
            }
            // Linux's layout for a Xen PV dom0's PIRQs, one CPU.
            "interrupts" => {
                let mut s = String::from("           CPU0       \n");
                for (gsi, count, name) in &self.interrupts {
                    s.push_str(&format!(
                        "{gsi:>4}: {count:>10}  xen-pirq    -ioapic-level  {name}\n"
                    ));
                }
                s
            }
            "partitions" => {
                let mut s = String::from(crate::block::PROC_PARTITIONS_HEADER);
                for (major, minor, sectors, name) in &self.partitions {
                    s.push_str(&crate::block::proc_partitions_line(
                        *major, *minor, *sectors, name,
                    ));
                }
                s
            }
            _ => String::new(),
        }
    }
}

fn pid_ino(pid: u32, k: u64) -> u64 {
    FIRST_INO + 0x100 + u64::from(pid) * 16 + k
}

/// `/proc/<pid>/<f>`.
fn pid_file(p: &Process, f: &str, _uptime_ns: u64) -> Vec<u8> {
    let state_name = match p.state {
        'R' => "R (running)",
        'Z' => "Z (zombie)",
        _ => "S (sleeping)",
    };
    match f {
        "stat" => {
            let start = p.started_ns / (1_000_000_000 / USER_HZ);
            // Fields 1-52 of proc(5): pid (comm) state ppid pgrp session tty_nr tpgid
            // flags minflt cminflt majflt cmajflt utime stime cutime cstime priority nice
            // num_threads itrealvalue starttime vsize rss rsslim, then zeros.
            let mut s = format!(
                "{} ({}) {} {} {} {} 0 -1 4194560 0 0 0 0 0 0 0 0 20 0 1 0 {start} {} {} \
                 18446744073709551615",
                p.pid, p.comm, p.state, p.ppid, p.pgid, p.pgid, p.vsize, p.rss
            );
            for _ in 26..=52 {
                s.push_str(" 0");
            }
            s.push('\n');
            s.into_bytes()
        }
        "status" => format!(
            "Name:\t{}\nUmask:\t0022\nState:\t{state_name}\nTgid:\t{}\nNgid:\t0\nPid:\t{}\n\
             PPid:\t{}\nTracerPid:\t0\nUid:\t0\t0\t0\t0\nGid:\t0\t0\t0\t0\nFDSize:\t256\n\
             VmSize:\t{:>8} kB\nVmRSS:\t{:>8} kB\nThreads:\t1\n",
            p.comm,
            p.pid,
            p.pid,
            p.ppid,
            p.vsize / 1024,
            p.rss * 4
        )
        .into_bytes(),
        "cmdline" => p.cmdline.clone(),
        "comm" => format!("{}\n", p.comm).into_bytes(),
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn system() -> System {
        System {
            uptime_ns: 75_250_000_000,
            mem_total_kib: 262_144,
            mem_free_kib: 200_000,
            processes: alloc::vec![
                Process {
                    pid: 1,
                    ppid: 0,
                    pgid: 1,
                    state: 'S',
                    comm: String::from("sh"),
                    cmdline: b"sh\0".to_vec(),
                    cwd: String::from("/"),
                    ..Process::default()
                },
                Process {
                    pid: 7,
                    ppid: 1,
                    pgid: 7,
                    state: 'R',
                    comm: String::from("ps"),
                    cmdline: b"ps\0-o\0pid\0".to_vec(),
                    started_ns: 2_000_000_000,
                    vsize: 1 << 20,
                    rss: 10,
                    cwd: String::from("/etc/xen"),
                },
            ],
            caller: 7,
            release: String::from("4.17.0-xenia"),
            partitions: alloc::vec![
                (253, 0, 131072, String::from("vda")),
                (253, 1, 2048, String::from("vda1")),
            ],
            interrupts: alloc::vec![(11, 42, String::from("virtio0"))],
            pci_devices: String::from("0020\t1af41001\tb\n"),
            net: alloc::vec![("dev", String::from("eth0: 1 2\n"))],
        }
    }

    fn text(s: Snapshot) -> String {
        match s {
            Snapshot::File { bytes, .. } => String::from_utf8(bytes).unwrap(),
            Snapshot::Dir { .. } => panic!("a directory"),
        }
    }

    #[test]
    fn the_top_directory_lists_processes_and_files() {
        let Snapshot::Dir { entries, .. } = system().open("/proc").unwrap() else {
            panic!()
        };
        let names: Vec<&str> = entries.iter().map(|e| e.0.as_str()).collect();
        assert_eq!(
            names,
            [
                "1",
                "7",
                "self",
                "meminfo",
                "uptime",
                "loadavg",
                "mounts",
                "version",
                "stat",
                "partitions",
                "interrupts",
                "net"
            ]
        );
        assert_eq!(entries[0].2, DT_DIR);
        assert_eq!(entries[2].2, DT_LNK);
    }

    #[test]
    fn meminfo_and_uptime_as_linux_prints_them() {
        let s = system();
        let m = text(s.open("/proc/meminfo").unwrap());
        assert!(
            m.starts_with("MemTotal:         262144 kB\nMemFree:          200000 kB\n"),
            "{m}"
        );
        assert_eq!(text(s.open("/proc/uptime").unwrap()), "75.25 75.25\n");
        assert_eq!(
            text(s.open("/proc/loadavg").unwrap()),
            "0.00 0.00 0.00 1/2 7\n"
        );
        assert!(text(s.open("/proc/mounts").unwrap()).starts_with("tmpfs / tmpfs rw"));
        assert_eq!(
            text(s.open("/proc/bus/pci/devices").unwrap()),
            "0020\t1af41001\tb\n"
        );
        assert_eq!(s.open("/proc/bus/pci").unwrap_err(), -ENOENT);
        assert_eq!(text(s.open("/proc/net/dev").unwrap()), "eth0: 1 2\n");
        assert_eq!(s.open("/proc/net/nothing").unwrap_err(), -ENOENT);
        let Snapshot::Dir { entries, .. } = s.open("/proc/net").unwrap() else {
            panic!("/proc/net is a directory")
        };
        assert_eq!(entries[0].0, "dev");
        assert_eq!(
            text(s.open("/proc/interrupts").unwrap()),
            "           CPU0       \n  11:         42  xen-pirq    -ioapic-level  virtio0\n"
        );
        assert_eq!(
            text(s.open("/proc/partitions").unwrap()),
            "major minor  #blocks  name\n\n 253        0      65536 vda\n 253        1       1024 vda1\n"
        );
    }

    #[test]
    fn per_process_files() {
        let s = system();
        let stat = text(s.open("/proc/self/stat").unwrap());
        let fields: Vec<&str> = stat.split_whitespace().collect();
        assert_eq!(fields.len(), 52, "{stat}");
        assert_eq!(&fields[..5], ["7", "(ps)", "R", "1", "7"]);
        assert_eq!(fields[21], "200", "start time in clock ticks");
        assert_eq!(fields[22], "1048576");
        assert_eq!(fields[23], "10");
        assert_eq!(
            s.open("/proc/7/cmdline").unwrap(),
            Snapshot::File {
                ino: pid_ino(7, 3),
                bytes: b"ps\0-o\0pid\0".to_vec()
            }
        );
        assert!(
            text(s.open("/proc/1/status").unwrap()).contains("State:\tS (sleeping)\nTgid:\t1\n")
        );
        assert_eq!(text(s.open("/proc/1/comm").unwrap()), "sh\n");
        let Snapshot::Dir {
            entries, parent, ..
        } = s.open("/proc/1").unwrap()
        else {
            panic!()
        };
        assert_eq!(parent, FIRST_INO);
        assert_eq!(entries.len(), 5);
    }

    #[test]
    fn links_and_errors() {
        let s = system();
        assert_eq!(s.readlink("/proc/self").as_deref(), Ok("7"));
        assert_eq!(s.readlink("/proc/7/cwd").as_deref(), Ok("/etc/xen"));
        assert_eq!(s.readlink("/proc/meminfo"), Err(-EINVAL));
        assert_eq!(s.readlink("/proc/9/cwd"), Err(-ENOENT));
        assert_eq!(s.open("/proc/9").unwrap_err(), -ENOENT);
        assert_eq!(s.open("/proc/nothing").unwrap_err(), -ENOENT);
        assert_eq!(s.open("/proc/1/nothing").unwrap_err(), -ENOENT);
        assert_eq!(s.open("/proc/1/stat/x").unwrap_err(), -ENOTDIR);
        assert_eq!(s.open("/procfoo").unwrap_err(), -ENOENT);
    }
}
