//! Debian's Xen PV Linux kernel as a domU of dom0's image (issue 18).
//!
//! Debian builds its cloud kernel (`linux-image-<version>-cloud-amd64-unsigned`) with
//! `CONFIG_XEN_PV=y` and `CONFIG_HVC_XEN=y`, and xen-blkfront and xen-netfront as modules. The
//! newest such package `apt-cache` knows is fetched with `apt-get download` into
//! `target/debian/debs/` (kept and reused; never committed) and unpacked there with
//! `dpkg-deb -x`. From it come:
//!
//! - the kernel, `/boot/debian/vmlinuz` in dom0's initrd (a bzImage, as Debian ships it);
//! - an initramfs, `/boot/debian/initrd.img` (cpio newc): Debian's static busybox (the one
//!   dom0's initrd carries, `peer::busybox`), the Xen block and net modules with their
//!   dependencies (read from each module's `.modinfo`, as `depmod` would; the package has no
//!   `modules.dep`), issue 18's benchmark program `/bin/linuxbench`, and an `/init`
//!   ([`init_script`]) that mounts `/proc`, `/sys` and devtmpfs, loads the modules and starts a
//!   shell on `hvc0` (or, with `xenia.bench=` on the kernel's command line, runs
//!   `linuxbench` and powers off: [`BENCH_PARAM`]);
//! - `/etc/xen/debian.cfg` ([`CONFIG`]), which names both.
//!
//! Without the package (no apt, no network) everything else builds and the `linux_`
//! scenarios are skipped, each saying why.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use xenia_dom0::cpio::{self, S_IFDIR, S_IFLNK, S_IFREG};
use xenia_tests::Workspace;
use xenia_tests::workspace::{DEBIAN_INITRD_ARTIFACT, DEBIAN_KERNEL_ARTIFACT};

use crate::peer;

/// The package flavour: Debian's kernel for clouds, the one built for Xen PV.
const FLAVOUR: &str = "cloud-amd64";
/// The modules the initramfs loads, in this order (their dependencies first).
pub const MODULES: &[&str] = &["xen-blkfront", "xen-netfront"];
/// Where the kernel and initramfs go in dom0's initrd.
pub const KERNEL_PATH: &str = "boot/debian/vmlinuz";
/// See [`KERNEL_PATH`].
pub const INITRD_PATH: &str = "boot/debian/initrd.img";
/// The configuration's name in `/etc/xen/`.
pub const CONFIG_NAME: &str = "debian.cfg";
/// `/etc/xen/debian.cfg`.
pub const CONFIG: &str = "\
# /etc/xen/debian.cfg: Debian's stock Linux kernel (linux-image-*-cloud-amd64), built for
# Xen PV, with a busybox initramfs whose shell runs on the console (hvc0).
# Try it: xl create -c /etc/xen/debian.cfg
# Event channels: Xenia has Xen's 2-level ABI, not the FIFO one. Linux asks for FIFO first
# (EVTCHNOP_init_control), gets EOPNOTSUPP as from a Xen built without FIFO, and uses
# the 2-level ABI (its log: xen:events: Using 2-level ABI).
name = \"debian\"
type = \"pv\"
kernel = \"/boot/debian/vmlinuz\"
ramdisk = \"/boot/debian/initrd.img\"
extra = \"console=hvc0\"
memory = 256
";

/// The kernel's files, ready for dom0's initrd.
pub struct Guest {
    /// The package's name (`linux-image-6.1.0-48-cloud-amd64-unsigned`).
    pub package: String,
    /// The kernel's release (`6.1.0-48-cloud-amd64`).
    pub release: String,
    /// The bzImage.
    pub vmlinuz: Vec<u8>,
    /// The initramfs.
    pub initrd: Vec<u8>,
}

/// The newest `linux-image-<version>-cloud-amd64-unsigned` of an `apt-cache search` listing.
pub fn newest_cloud_kernel(listing: &str) -> Option<String> {
    crate::peer::newest_image(listing, &format!("-{FLAVOUR}-unsigned"))
}

/// Fetches (or reuses) and unpacks the kernel package under `target/debian/`, and builds the
/// initramfs around `busybox` and the benchmark program `linuxbench`.
pub fn guest(ws: &Workspace, busybox: &Path, linuxbench: &Path) -> Result<Guest, String> {
    let dir = ws.target_dir().join("debian");
    let debs = dir.join("debs");
    fs::create_dir_all(&debs).map_err(|e| format!("cannot create {}: {e}", debs.display()))?;
    let pattern = format!("^linux-image-[0-9.]+-[0-9]+-{FLAVOUR}-unsigned$");
    let listing = peer::output(
        Command::new("apt-cache").args(["search", "--names-only", &pattern]),
        "apt-cache search",
    );
    // Without a package index, the kernel downloaded before.
    let package = listing
        .as_deref()
        .ok()
        .and_then(newest_cloud_kernel)
        .or_else(|| {
            let deb = peer::cached_deb(&debs, "linux-image-")?;
            let name = deb.file_name()?.to_str()?;
            Some(name[..name.find('_')?].to_string())
        })
        .ok_or_else(|| {
            let why = match &listing {
                Err(e) => format!("{e}; "),
                Ok(_) => String::new(),
            };
            format!(
                "{why}apt knows no linux-image-<version>-{FLAVOUR}-unsigned package: run \
                 `sudo apt-get update` on a Debian bookworm host"
            )
        })?;
    let deb = peer::download_for(&debs, &package, "debian", "The Linux domU")?;
    let root = dir.join("root").join(&package);
    peer::extract(&deb, &root)?;
    let vmlinuz_path = peer::find_file(&root.join("boot"), "vmlinuz-")?;
    let release = vmlinuz_path
        .file_name()
        .and_then(|n| n.to_str())
        .and_then(|n| n.strip_prefix("vmlinuz-"))
        .ok_or_else(|| format!("{}: not a vmlinuz-<release>", vmlinuz_path.display()))?
        .to_string();
    let read = |p: &Path| fs::read(p).map_err(|e| format!("cannot read {}: {e}", p.display()));
    let vmlinuz = read(&vmlinuz_path)?;
    let modules_dir = root.join("lib/modules").join(&release);
    let modules = modules_in_order(&modules_dir, MODULES)?;
    let mut loaded = Vec::new();
    for (relative, path) in &modules {
        loaded.push((relative.clone(), module_bytes(path)?));
    }
    let initrd = initramfs(&read(busybox)?, &read(linuxbench)?, &release, &loaded);
    Ok(Guest {
        package,
        release,
        vmlinuz,
        initrd,
    })
}

/// Copies the kernel and its initramfs to the artifact directory
/// (`xenia_tests::workspace::DEBIAN_KERNEL_ARTIFACT`, `DEBIAN_INITRD_ARTIFACT`), where the
/// `linux_` scenarios find them, each only when its bytes changed; without a guest, removes
/// them, so that the scenarios do not run a stale kernel.
pub fn write_artifacts(ws: &Workspace, guest: Option<&Guest>) -> Result<(), String> {
    let files = [
        (DEBIAN_KERNEL_ARTIFACT, guest.map(|g| g.vmlinuz.as_slice())),
        (DEBIAN_INITRD_ARTIFACT, guest.map(|g| g.initrd.as_slice())),
    ];
    for (name, bytes) in files {
        let path = ws.artifact(name);
        match bytes {
            Some(bytes) if fs::read(&path).is_ok_and(|old| old == bytes) => {}
            Some(bytes) => fs::write(&path, bytes)
                .map_err(|e| format!("cannot write {}: {e}", path.display()))?,
            None if path.exists() => fs::remove_file(&path)
                .map_err(|e| format!("cannot remove {}: {e}", path.display()))?,
            None => {}
        }
    }
    Ok(())
}

/// A module's name as the kernel compares it (`-` and `_` are the same).
fn canonical(name: &str) -> String {
    name.replace('-', "_")
}

/// The module files under `dir` (`lib/modules/<release>`), by canonical name: each a path
/// relative to `dir` with `.ko` (a compressed module's suffix dropped) and its file.
fn module_index(dir: &Path) -> Result<BTreeMap<String, (String, PathBuf)>, String> {
    let mut index = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let entries = fs::read_dir(&d).map_err(|e| format!("cannot list {}: {e}", d.display()))?;
        for entry in entries {
            let path = entry
                .map_err(|e| format!("cannot list {}: {e}", d.display()))?
                .path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
                continue;
            };
            let Some((stem, _)) = name.split_once(".ko") else {
                continue;
            };
            let relative = path
                .strip_prefix(dir)
                .ok()
                .and_then(|r| r.parent())
                .map(|p| format!("{}/{stem}.ko", p.display()))
                .unwrap_or_else(|| format!("{stem}.ko"));
            index.insert(canonical(stem), (relative, path));
        }
    }
    Ok(index)
}

/// The `depends=` of a module's `.modinfo`: the modules it needs loaded first.
pub fn depends(module: &[u8]) -> Vec<String> {
    module
        .split(|&b| b == 0)
        .find_map(|field| field.strip_prefix(b"depends="))
        .map(|list| {
            String::from_utf8_lossy(list)
                .split(',')
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

/// `wanted` with their dependencies, each after what it depends on: (path relative to the
/// modules directory, file).
fn modules_in_order(dir: &Path, wanted: &[&str]) -> Result<Vec<(String, PathBuf)>, String> {
    let index = module_index(dir)?;
    let mut order: Vec<String> = Vec::new();
    // Depth-first, dependencies first; the depth bound stops a cycle.
    fn visit(
        name: &str,
        index: &BTreeMap<String, (String, PathBuf)>,
        order: &mut Vec<String>,
        depth: usize,
    ) -> Result<(), String> {
        let key = canonical(name);
        if order.contains(&key) {
            return Ok(());
        }
        if depth > 32 {
            return Err(format!("module dependencies of {name} loop"));
        }
        let (_, path) = index
            .get(&key)
            .ok_or_else(|| format!("no module {name} in the kernel package"))?;
        for dep in depends(&module_bytes(path)?) {
            visit(&dep, index, order, depth + 1)?;
        }
        order.push(key);
        Ok(())
    }
    for name in wanted {
        visit(name, &index, &mut order, 0)?;
    }
    Ok(order
        .into_iter()
        .filter_map(|key| index.get(&key).cloned())
        .collect())
}

/// A module's bytes, decompressed if the package compresses it (`.ko.xz`, `.ko.zst`,
/// `.ko.gz`): busybox's insmod takes plain ELF.
fn module_bytes(path: &Path) -> Result<Vec<u8>, String> {
    let name = path.to_string_lossy();
    let tool = if name.ends_with(".xz") {
        "xz"
    } else if name.ends_with(".zst") {
        "zstd"
    } else if name.ends_with(".gz") {
        "gzip"
    } else {
        return fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()));
    };
    let out = Command::new(tool)
        .arg("-dc")
        .arg(path)
        .output()
        .map_err(|e| format!("cannot run {tool}: {e}"))?;
    if !out.status.success() {
        return Err(format!("{tool} -dc {} failed", path.display()));
    }
    Ok(out.stdout)
}

/// The kernel command-line parameter that makes `/init` run `/bin/linuxbench` instead of the
/// shell, then power off: `xenia.bench=1` with the program's default settings, or its
/// settings with commas for blanks (`xenia.bench=syscalls=2000,runs=2`). Linux keeps a
/// parameter with a dot for a module and passes it to no one, so it reaches `/init` only
/// through `/proc/cmdline`; without it (or with `xenia.bench=0`) the boot is as before.
pub use xenia_tests::linuxbench::BENCH_PARAM;

/// The part of `/init` that runs the benchmark program when the kernel's command line has
/// [`BENCH_PARAM`], then powers off.
fn bench_script() -> String {
    [
        r#"bench="#.to_string(),
        r#"for word in $(cat /proc/cmdline); do"#.into(),
        format!(r#"  case "$word" in {BENCH_PARAM}=*) bench="${{word#{BENCH_PARAM}=}}" ;; esac"#),
        r#"done"#.into(),
        r#"if [ -n "$bench" ] && [ "$bench" != 0 ]; then"#.into(),
        r#"  args="#.into(),
        r#"  [ "$bench" = 1 ] || args=$(echo "$bench" | tr , ' ')"#.into(),
        r#"  echo "xenia-initramfs: running linuxbench $args""#.into(),
        r#"  /bin/linuxbench $args"#.into(),
        r#"  echo "xenia-initramfs: linuxbench exited with status $?; powering off""#.into(),
        r#"  poweroff -f"#.into(),
        r#"fi"#.into(),
        String::new(),
    ]
    .join("\n")
}

/// The initramfs's `/init`: busybox's applets, `/proc`, `/sys` and devtmpfs, the modules (each
/// path relative to `/lib/modules/<release>`), then, with [`BENCH_PARAM`], the benchmark
/// program and a power-off, else busybox's `init` ([`INITTAB`]).
pub fn init_script(modules: &[String]) -> String {
    let mut script = String::from(
        "#!/bin/busybox sh\n\
         # /init of Xenia's Debian domU initramfs (built by cargo xtask).\n\
         /bin/busybox mkdir -p /sbin /usr/bin /usr/sbin /proc /sys /dev /tmp /root\n\
         /bin/busybox --install -s\n\
         mount -t devtmpfs devtmpfs /dev\n\
         mount -t proc proc /proc\n\
         mount -t sysfs sysfs /sys\n\
         hostname debian\n\
         echo \"xenia-initramfs: Linux $(uname -r) on $(cat /sys/hypervisor/type 2>/dev/null || echo unknown)\"\n",
    );
    for m in modules {
        script.push_str(&format!(
            "insmod /lib/modules/$(uname -r)/{m} || echo \"xenia-initramfs: insmod {m} failed\"\n"
        ));
    }
    script.push_str(&bench_script());
    // Issue 18's lifecycle: busybox's `init` becomes PID 1 (`/etc/inittab`, [`INITTAB`]), so
    // that `poweroff`, `reboot` and Linux's `orderly_poweroff` (`xl shutdown`) reach it.
    script.push_str(
        "echo \"xenia-initramfs: ready\"\n\
         exec /bin/busybox init\n",
    );
    script
}

/// `/etc/inittab` of busybox's `init`, PID 1 after `/init`: a login shell on the console
/// (`cttyhack` finds the real one, `hvc0` under Xen, `ttyS0` natively, and makes it the
/// shell's controlling terminal, so Ctrl-C works), again whenever it exits. busybox's
/// `poweroff` sends init `SIGUSR2`, `reboot` `SIGTERM` (`halt` `SIGUSR1`); init then runs
/// the `shutdown` actions, stops every process and asks the kernel to power off or restart,
/// which Linux on Xen turns into `SCHEDOP_shutdown`.
pub const INITTAB: &str = "\
::respawn:/bin/cttyhack /bin/sh -l
::ctrlaltdel:/sbin/reboot
::shutdown:/bin/echo xenia-initramfs: shutting down
::shutdown:/bin/sync
";

/// `/etc/profile` of the domU's shell.
const PROFILE: &str = "export PS1='debian# '\nexport PATH=/bin:/sbin:/usr/bin:/usr/sbin\n";

/// Debian's busybox `udhcpc` runs this script (`/etc/udhcpc/default.script`, Debian's path)
/// for each DHCP event; without it an address is got but never set. Minimal: on `bound` and
/// `renew` the address, the default route and `/etc/resolv.conf`; on `deconfig` the
/// interface is cleared.
const UDHCPC_SCRIPT: &str = "#!/bin/sh\n\
# udhcpc's default script of Xenia's Debian domU initramfs (built by cargo xtask).\n\
case \"$1\" in\n\
deconfig) ip addr flush dev \"$interface\"; ip link set \"$interface\" up ;;\n\
bound|renew)\n\
  ip addr flush dev \"$interface\"\n\
  ip addr add \"$ip/${mask:-24}\" dev \"$interface\"\n\
  for r in $router; do ip route add default via \"$r\" dev \"$interface\"; break; done\n\
  : > /etc/resolv.conf\n\
  for d in $dns; do echo \"nameserver $d\" >> /etc/resolv.conf; done\n\
  echo \"udhcpc: $interface has $ip/${mask:-24}\" ;;\n\
esac\n\
exit 0\n";

/// The initramfs (cpio newc): `/init`, `/bin/busybox` with `/bin/sh` linked to it,
/// `/bin/linuxbench`, `/etc/profile`, udhcpc's script, the `modules` (path relative to
/// `lib/modules/<release>`, bytes) and the mount points.
pub fn initramfs(
    busybox: &[u8],
    linuxbench: &[u8],
    release: &str,
    modules: &[(String, Vec<u8>)],
) -> Vec<u8> {
    const DIR: u32 = S_IFDIR | 0o755;
    const EXEC: u32 = S_IFREG | 0o755;
    const DATA: u32 = S_IFREG | 0o644;
    let names: Vec<String> = modules.iter().map(|(p, _)| p.clone()).collect();
    let init = init_script(&names);
    let mut entries: Vec<(String, u32, Vec<u8>)> = vec![
        ("bin".into(), DIR, Vec::new()),
        ("bin/busybox".into(), EXEC, busybox.to_vec()),
        ("bin/linuxbench".into(), EXEC, linuxbench.to_vec()),
        ("bin/sh".into(), S_IFLNK | 0o777, b"busybox".to_vec()),
        ("dev".into(), DIR, Vec::new()),
        ("etc".into(), DIR, Vec::new()),
        ("etc/profile".into(), DATA, PROFILE.as_bytes().to_vec()),
        ("etc/inittab".into(), DATA, INITTAB.as_bytes().to_vec()),
        ("init".into(), EXEC, init.into_bytes()),
        ("lib".into(), DIR, Vec::new()),
        ("lib/modules".into(), DIR, Vec::new()),
        ("etc/udhcpc".into(), DIR, Vec::new()),
        (
            "etc/udhcpc/default.script".into(),
            EXEC,
            UDHCPC_SCRIPT.as_bytes().to_vec(),
        ),
    ];
    let base = format!("lib/modules/{release}");
    let mut dirs: Vec<String> = vec![base.clone()];
    for (path, _) in modules {
        let mut at = base.clone();
        for part in Path::new(path)
            .parent()
            .into_iter()
            .flat_map(|p| p.components())
        {
            at = format!("{at}/{}", part.as_os_str().to_string_lossy());
            if !dirs.contains(&at) {
                dirs.push(at.clone());
            }
        }
    }
    entries.extend(dirs.into_iter().map(|d| (d, DIR, Vec::new())));
    entries.extend(
        modules
            .iter()
            .map(|(path, data)| (format!("{base}/{path}"), DATA, data.clone())),
    );
    for dir in ["proc", "root", "sys", "tmp"] {
        entries.push((dir.into(), DIR, Vec::new()));
    }
    let refs: Vec<(&str, u32, &[u8])> = entries
        .iter()
        .map(|(p, m, d)| (p.as_str(), *m, d.as_slice()))
        .collect();
    cpio::build(&refs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn newest_cloud_kernel_by_version() {
        let listing = "linux-image-6.1.0-42-cloud-amd64-unsigned - Linux 6.1 for x86-64 cloud\n\
             linux-image-6.1.0-9-cloud-amd64-unsigned - Linux 6.1 for x86-64 cloud\n\
             linux-image-6.1.0-48-cloud-amd64-dbg - Debug symbols\n\
             linux-image-6.1.0-48-amd64-unsigned - Linux 6.1 for 64-bit PCs\n\
             linux-image-6.1.0-44-cloud-amd64-unsigned - Linux 6.1 for x86-64 cloud\n";
        assert_eq!(
            newest_cloud_kernel(listing).as_deref(),
            Some("linux-image-6.1.0-44-cloud-amd64-unsigned")
        );
        assert_eq!(newest_cloud_kernel(""), None);
    }

    #[test]
    fn depends_from_modinfo() {
        let ko = b"\x7fELF...\0license=GPL\0depends=xen-front,libcrc32c\0vermagic=6.1\0";
        assert_eq!(depends(ko), ["xen-front", "libcrc32c"]);
        assert!(depends(b"\0depends=\0").is_empty());
        assert!(depends(b"no modinfo").is_empty());
    }

    #[test]
    fn initramfs_layout() {
        let bytes = initramfs(
            b"BB",
            b"LB",
            "6.1.0-48-cloud-amd64",
            &[
                (
                    "kernel/drivers/block/xen-blkfront.ko".into(),
                    b"blk".to_vec(),
                ),
                ("kernel/drivers/net/xen-netfront.ko".into(), b"net".to_vec()),
            ],
        );
        let archive = cpio::Archive::parse(&bytes).unwrap();
        let init = archive.lookup("/init").unwrap();
        assert_eq!(init.mode, S_IFREG | 0o755);
        let script = String::from_utf8(init.data.to_vec()).unwrap();
        assert!(script.starts_with("#!/bin/busybox sh\n"));
        for needed in [
            "mount -t proc proc /proc",
            "mount -t sysfs sysfs /sys",
            "mount -t devtmpfs devtmpfs /dev",
            "insmod /lib/modules/$(uname -r)/kernel/drivers/block/xen-blkfront.ko",
            "insmod /lib/modules/$(uname -r)/kernel/drivers/net/xen-netfront.ko",
            "exec /bin/busybox init",
        ] {
            assert!(script.contains(needed), "{needed}: {script}");
        }
        // Block before net, as listed.
        assert!(script.find("xen-blkfront").unwrap() < script.find("xen-netfront").unwrap());
        let blk = archive
            .lookup("/lib/modules/6.1.0-48-cloud-amd64/kernel/drivers/block/xen-blkfront.ko")
            .unwrap();
        assert_eq!(blk.data, b"blk");
        assert_eq!(archive.lookup("/bin/busybox").unwrap().data, b"BB");
        assert_eq!(archive.lookup("/bin/linuxbench").unwrap().data, b"LB");
        let inittab =
            String::from_utf8(archive.lookup("/etc/inittab").unwrap().data.to_vec()).unwrap();
        assert!(
            inittab.contains("::respawn:/bin/cttyhack /bin/sh -l\n"),
            "{inittab}"
        );
        // The benchmark runs before the shell, and only with the parameter.
        for needed in [
            "case \"$word\" in xenia.bench=*) bench=\"${word#xenia.bench=}\" ;; esac",
            "/bin/linuxbench $args\n",
            "poweroff -f\n",
        ] {
            assert!(script.contains(needed), "{needed}: {script}");
        }
        assert!(
            script.find("/bin/linuxbench").unwrap() < script.find("busybox init").unwrap(),
            "{script}"
        );
        assert!(script.ends_with("\nexec /bin/busybox init\n"), "{script}");
        // The host's shell parses it (`sh -n`: no command runs), as busybox's must.
        let checked = Command::new("sh")
            .args(["-n", "-c", &script])
            .status()
            .expect("run sh -n");
        assert!(checked.success(), "sh -n refused /init:\n{script}");
        // udhcpc's script: executable, parsed by the host's shell, sets what it got.
        let udhcpc = archive.lookup("/etc/udhcpc/default.script").unwrap();
        assert_eq!(udhcpc.mode, S_IFREG | 0o755);
        let text = String::from_utf8(udhcpc.data.to_vec()).unwrap();
        assert!(text.contains("ip addr add \"$ip/${mask:-24}\" dev \"$interface\""));
        let checked = Command::new("sh")
            .args(["-n", "-c", &text])
            .status()
            .expect("run sh -n");
        assert!(checked.success(), "sh -n refused udhcpc's script:\n{text}");
        for dir in ["/proc", "/sys", "/dev", "/tmp"] {
            assert_eq!(
                archive.lookup(dir).unwrap().mode & 0o170000,
                S_IFDIR,
                "{dir}"
            );
        }
    }

    #[test]
    fn the_configuration_parses_without_warnings() {
        let parsed =
            dom0_tools::xlcfg::parse_domain_config(CONFIG_NAME, CONFIG.as_bytes(), &[]).unwrap();
        assert!(parsed.warnings.is_empty(), "{:?}", parsed.warnings);
        let spec = parsed.spec;
        assert_eq!(spec.name, "debian");
        assert_eq!(spec.kernel, format!("/{KERNEL_PATH}"));
        assert_eq!(spec.ramdisk.as_deref(), Some(&*format!("/{INITRD_PATH}")));
        assert_eq!(spec.cmdline.as_deref(), Some("console=hvc0"));
        assert_eq!(spec.memory_mib, 256);
    }
}
