//! Debian's Linux domU with a disk (xen-blkfront) and a vif (xen-netfront) behind dom0's
//! blkback and netback (issue 18): scenarios `linux_disk` and `linux_net`, at the `dom0# `
//! prompt of the default image, skipped as [`super::linux`]'s are when Debian's package could
//! not be fetched.

use std::time::{Duration, Instant};

use super::xl::{PROMPT, run};
use crate::machine::{DiskImage, Qemu};
use crate::runner::Context;

/// The configuration `cargo xtask build` adds when it has the kernel.
const CONFIG: &str = "/etc/xen/debian.cfg";
/// The domU shell's prompt (the initramfs's `/etc/profile`).
const SHELL: &str = "debian# ";
/// Bound for Linux to boot from `xl create -c` to its shell under TCG (about 60 s here).
const BOOT: Duration = Duration::from_secs(150);
/// Bound for one command in the domU's shell or dom0's.
const COMMAND: Duration = Duration::from_secs(60);
/// The disk given to the domain (dom0's first virtio disk).
const DISK_BYTES: u64 = 64 << 20;
/// What the first boot writes and the second reads back.
const PAYLOAD: &str = "xenia-linux-disk-ok";

/// The default image at `loglvl=debug` with `disks` and optionally a NIC forwarding a host
/// port to `fwd`'s port 80; at dom0's prompt.
fn boot(ctx: &Context, disks: &[&DiskImage], fwd: Option<&str>) -> Result<Qemu, String> {
    let ws = ctx.workspace();
    let mut machine = ctx
        .machine()
        .memory_mib(512)
        .hv_options(&format!("{} loglvl=debug", crate::iso::DEFAULT_HV_OPTIONS));
    for module in crate::iso::DEFAULT_MODULES {
        machine = machine.module(ws.require_artifact(module.artifact)?, module.cmdline);
    }
    for d in disks {
        machine = machine.disk(d.path());
    }
    if let Some(ip) = fwd {
        machine = machine.nic(&[(ip, 80)])?;
    }
    let mut vm = machine.boot()?;
    vm.wait_for(PROMPT, Duration::from_secs(180))?;
    Ok(vm)
}

/// `xl create -c` of Debian's config with `extra` xl arguments, up to the domU's shell.
fn create(vm: &mut Qemu, extra: &str) -> Result<(), String> {
    vm.send(&format!("xl create -c {CONFIG} {extra}\r"))?;
    vm.wait_for("Ctrl-] detaches", COMMAND)?;
    vm.wait_for_line("Run /init as init process", BOOT)?;
    vm.wait_for("xenia-initramfs: ready", BOOT)?;
    vm.wait_for(SHELL, COMMAND)?;
    Ok(())
}

/// Runs `cmd` in the domU's shell followed by `echo <mark>=$?`: the lines between the echo
/// of the command and the mark, and the command's status. The mark as typed is `<mark>=$?`,
/// so the echoed command line never matches the status line.
pub(super) fn sh(vm: &mut Qemu, cmd: &str, mark: &str) -> Result<(String, i32), String> {
    let from = vm.cursor();
    vm.send(&format!("{cmd}; echo {mark}=$?\r"))?;
    let line = vm.wait_for_line_matching(&format!("{mark}=<status>"), COMMAND, |l| {
        l.trim()
            .strip_prefix(&format!("{mark}="))
            .is_some_and(|s| s.parse::<i32>().is_ok())
    })?;
    let status = line
        .trim()
        .strip_prefix(&format!("{mark}="))
        .and_then(|s| s.parse().ok())
        .unwrap_or(-1);
    let log = vm.serial_log();
    let out = log[from.min(log.len())..].to_string();
    vm.wait_for(SHELL, COMMAND)?;
    Ok((out, status))
}

/// `poweroff -f` in the domU: dom0's prompt comes back.
fn poweroff(vm: &mut Qemu) -> Result<(), String> {
    vm.send("poweroff -f\r")?;
    vm.wait_for(PROMPT, COMMAND)
}

/// `xl create -c /etc/xen/debian.cfg` with `disk=['format=raw, vdev=xvda, access=rw,
/// target=/dev/vda']`: xen-blkfront attaches `/dev/xvda` (its `blkfront: xvda:` line in
/// dmesg) with the disk's size; busybox's `mke2fs` makes an ext2 file system on it, it is
/// mounted, a file written, synced, unmounted; the domain powers off and a second domain
/// on the same disk mounts it and reads the file back. The image on the host has the ext2
/// magic afterwards.
pub fn disk(ctx: &Context) -> Result<(), String> {
    if let Some(reason) = super::linux::skip_reason(ctx)? {
        println!("scenario {}: {reason}", ctx.name());
        ctx.note(reason);
        return Ok(());
    }
    let img = DiskImage::create(ctx.work_dir()?.join("xvda.img"), DISK_BYTES)?;
    let mut vm = boot(ctx, &[&img], None)?;
    let from = vm.cursor();
    let start = Instant::now();
    let spec = "\"disk=['format=raw, vdev=xvda, access=rw, target=/dev/vda']\"";
    create(&mut vm, spec)?;
    let (out, _) = sh(&mut vm, "dmesg | grep blkfront", "BLKFRONT")?;
    let attach = out
        .lines()
        .find(|l| l.contains("blkfront: xvda:"))
        .ok_or_else(|| format!("no `blkfront: xvda:` line in dmesg: {out:?}"))?
        .trim()
        .to_string();
    let (out, status) = sh(&mut vm, "cat /sys/block/xvda/size", "SIZE")?;
    let sectors = (DISK_BYTES / 512).to_string();
    if status != 0 || !out.lines().any(|l| l.trim() == sectors) {
        return Err(format!("/sys/block/xvda/size should be {sectors}: {out:?}"));
    }
    let (out, status) = sh(
        &mut vm,
        &format!(
            "mke2fs -q /dev/xvda && mkdir -p /mnt && mount -t ext2 /dev/xvda /mnt && \
             echo {PAYLOAD} > /mnt/hello && sync && umount /mnt"
        ),
        "WRITE",
    )?;
    if status != 0 {
        return Err(format!(
            "mke2fs, mount, write, sync, umount failed ({status}): {out:?}"
        ));
    }
    poweroff(&mut vm)?;
    let first = start.elapsed();
    create(&mut vm, spec)?;
    let (out, status) = sh(
        &mut vm,
        "mkdir -p /mnt && mount -t ext2 -o ro /dev/xvda /mnt && cat /mnt/hello && umount /mnt",
        "READ",
    )?;
    if status != 0 || !out.lines().any(|l| l.trim() == PAYLOAD) {
        return Err(format!(
            "the second boot should read {PAYLOAD:?} back: {out:?}"
        ));
    }
    poweroff(&mut vm)?;
    super::linux::clean_session(&vm, from)?;
    let list = run(&mut vm, "xl list")?;
    if list.contains("debian") {
        return Err(format!("debian still listed after poweroff: {list:?}"));
    }
    vm.kill();
    // ext2's magic, 0xef53 at byte 56 of the superblock (at 1024).
    let magic = img.read_at(1024 + 56, 2)?;
    if magic != [0x53, 0xef] {
        return Err(format!("the image has no ext2 superblock: {magic:x?}"));
    }
    ctx.note(format!(
        "{attach}; ext2 made, written, read back by a second boot (first boot and write {:.0} s)",
        first.as_secs_f64()
    ));
    Ok(())
}

/// The domU's address: the first QEMU's DHCP gives (dom0 is 10.0.2.15, static).
const NET_IP: &str = "10.0.2.20";
/// The page the domU's httpd serves.
const PAGE: &str = "xenia-linux-web-ok";
/// Bound for the harness's HTTP GET through the forward.
const HTTP: Duration = Duration::from_secs(60);

/// One `GET /` at host port `port`: the whole response, tried again (a connection QEMU's
/// forward accepts and drops) until [`HTTP`] has passed.
fn http_get(port: u16) -> Result<String, String> {
    use std::io::{Read, Write};
    use std::net::{Ipv4Addr, SocketAddr, TcpStream};
    let deadline = Instant::now() + HTTP;
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let mut last = String::new();
    while Instant::now() < deadline {
        let attempt = || -> Result<String, String> {
            let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
                .map_err(|e| format!("connect: {e}"))?;
            s.set_read_timeout(Some(Duration::from_secs(10)))
                .map_err(|e| e.to_string())?;
            s.write_all(b"GET /index.html HTTP/1.0\r\nHost: debian\r\n\r\n")
                .map_err(|e| format!("write: {e}"))?;
            let mut body = Vec::new();
            s.read_to_end(&mut body).map_err(|e| format!("read: {e}"))?;
            String::from_utf8(body).map_err(|e| format!("not UTF-8: {e}"))
        };
        match attempt() {
            Ok(r) if r.starts_with("HTTP/1.") && r.contains(" 200 ") => return Ok(r),
            Ok(r) => last = format!("response {r:?}"),
            Err(e) => last = e,
        }
    }
    Err(format!(
        "no HTTP answer through the port forward in {HTTP:?}: {last}"
    ))
}

/// `xl create -c /etc/xen/debian.cfg "vif=['bridge=xenbr0']"` on a machine with a NIC on
/// QEMU's user network: xen-netfront brings up `eth0` with the vif's MAC; busybox's `udhcpc`
/// gets 10.0.2.20 from QEMU's DHCP through dom0's bridge and netback; busybox's `httpd` in
/// the domU serves a page that the harness gets from the host through the port forward
/// (TCP with the checksums netback completes for netfront); `poweroff -f` ends the domain.
pub fn net(ctx: &Context) -> Result<(), String> {
    if let Some(reason) = super::linux::skip_reason(ctx)? {
        println!("scenario {}: {reason}", ctx.name());
        ctx.note(reason);
        return Ok(());
    }
    let mut vm = boot(ctx, &[], Some(NET_IP))?;
    let port = vm
        .host_port(NET_IP, 80)
        .ok_or("the machine has no forward to 10.0.2.20:80")?;
    let from = vm.cursor();
    create(&mut vm, "\"vif=['bridge=xenbr0']\"")?;
    let (out, status) = sh(&mut vm, "cat /sys/class/net/eth0/address", "MAC")?;
    if status != 0 || !out.lines().any(|l| l.trim().starts_with("00:16:3e:")) {
        return Err(format!("netfront has no eth0 with a Xen MAC: {out:?}"));
    }
    let (out, status) = sh(
        &mut vm,
        "ip link set eth0 up && udhcpc -i eth0 -n -q -t 5 -T 3",
        "DHCP",
    )?;
    let want = format!("udhcpc: eth0 has {NET_IP}/");
    if status != 0 || !out.contains(&want) {
        return Err(format!("udhcpc should give eth0 {NET_IP}: {out:?}"));
    }
    let (out, status) = sh(
        &mut vm,
        &format!("mkdir -p /www && echo {PAGE} > /www/index.html && httpd -p 80 -h /www"),
        "HTTPD",
    )?;
    if status != 0 {
        return Err(format!("httpd did not start: {out:?}"));
    }
    let page = http_get(port)?;
    if !page.contains(PAGE) {
        return Err(format!("not the domU's page: {page:?}"));
    }
    poweroff(&mut vm)?;
    super::linux::clean_session(&vm, from)?;
    vm.kill();
    ctx.note(format!(
        "eth0 got {NET_IP} by DHCP; the host fetched the domU's httpd page through the forward"
    ));
    Ok(())
}
