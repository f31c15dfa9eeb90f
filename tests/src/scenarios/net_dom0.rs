//! Issue 16, dom0's half: dom0 drives QEMU's virtio-net card (interrupt-driven), makes it
//! port `eth0` of the learning bridge `xenbr0`, and has its own address `10.0.2.15` on the
//! bridge with the discard (TCP 9) and chargen (TCP 19) services. The harness itself pushes
//! and pulls bytes through QEMU's port forwards ([`crate::netbench`]).

use std::time::Duration;

use crate::machine::{DEFAULT_TIMEOUT as T, Qemu};
use crate::netbench;
use crate::runner::Context;
use crate::scenarios::xl::{PROMPT, run};

/// dom0's address on `xenbr0` (the addressing plan).
pub const DOM0_IP: &str = "10.0.2.15";
/// Bytes pushed to the discard service.
const PUSH_BYTES: usize = 4 << 20;
/// Bytes pulled from the chargen service.
const PULL_BYTES: usize = 1 << 20;
/// Bound on one transfer (TCG on a shared 2-core host: a few MB/s at worst).
const TRANSFER: Duration = Duration::from_secs(120);

/// Boots the scenarios' initrd with busybox's ash on the console (or dom0's built-in shell
/// when `console` is false), a network card forwarding two free host ports to dom0's discard
/// and chargen services, and `dom0_args` on dom0's command line; waits for the prompt.
fn boot(ctx: &Context, dom0_args: &str, console: bool, ip: &str) -> Result<Qemu, String> {
    use crate::workspace::{DOM0_ARTIFACT, TEST_INITRD_ARTIFACT};
    let ws = ctx.workspace();
    let mut machine = ctx.machine();
    if console {
        machine = machine.console_shell();
    }
    let mut vm = machine
        .memory_mib(512)
        .hv_options(crate::iso::DEFAULT_HV_OPTIONS)
        .module(ws.require_artifact(DOM0_ARTIFACT)?, dom0_args)
        .module(ws.require_artifact(TEST_INITRD_ARTIFACT)?, "")
        .nic(&[(ip, 9), (ip, 19)])?
        .boot()?;
    vm.wait_for(PROMPT, T)?;
    Ok(vm)
}

/// One field of `/proc/net/dev`'s line for `iface` (1: receive bytes, 2: packets, 9:
/// transmit bytes, 10: packets).
fn dev_field(dev: &str, iface: &str, field: usize) -> Option<u64> {
    let line = dev
        .lines()
        .find(|l| l.trim_start().starts_with(&format!("{iface}:")))?;
    line.split_whitespace().nth(field)?.parse().ok()
}

/// `/proc/net/services`' byte count for `service`.
fn service_bytes(services: &str, service: &str) -> Option<u64> {
    let line = services.lines().find(|l| l.starts_with(service))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

/// RFC 864's pattern from its start: lines of 72 printable characters, each starting one
/// further along, CR LF.
fn chargen_head(n: usize) -> Vec<u8> {
    (0..n as u64)
        .map(|pos| {
            let (line, col) = (pos / 74, pos % 74);
            match col {
                72 => b'\r',
                73 => b'\n',
                _ => b' ' + ((line + col) % 95) as u8,
            }
        })
        .collect()
}

/// Pushes [`PUSH_BYTES`] to dom0's discard service at `ip` and pulls [`PULL_BYTES`] from its
/// chargen service; returns the two times.
fn transfer(vm: &Qemu, ip: &str) -> Result<(Duration, Duration), String> {
    let discard = vm.host_port(ip, 9).ok_or("no forward to discard")?;
    let chargen = vm.host_port(ip, 19).ok_or("no forward to chargen")?;
    let pushed = netbench::push(discard, PUSH_BYTES, TRANSFER)?;
    let (pulled, head) = netbench::pull(chargen, PULL_BYTES, TRANSFER)?;
    if head != chargen_head(head.len()) || head.is_empty() {
        return Err(format!(
            "chargen's first bytes: {:?}",
            String::from_utf8_lossy(&head)
        ));
    }
    Ok((pushed, pulled))
}

/// dom0 finds the card (`virtio_net ...: eth0: 52:54:00:12:34:56`), binds its interrupt to an
/// event channel, attaches it to `xenbr0` and takes `10.0.2.15/24`. The harness opens a TCP
/// connection from the host through QEMU's port forward to dom0's discard service and pushes
/// 4 MiB, then reads 1 MiB of chargen's RFC 864 pattern. Then `/proc/interrupts` shows the
/// card's interrupt counting, `/proc/net/dev` has eth0 and xenbr0 with at least the bytes
/// pushed received, `/proc/net/services` counts exactly the bytes pushed, `brctl show` lists
/// xenbr0 with eth0, and `ip addr` shows the address.
pub fn nic(ctx: &Context) -> Result<(), String> {
    let mut vm = boot(ctx, "", true, DOM0_IP)?;
    let log = vm.serial_log();
    for want in [
        "virtio_net eth0: GSI ",
        ": eth0: 52:54:00:12:34:56 (",
        "xenbr0: 10.0.2.15/24 via 10.0.2.2 (52:54:00:12:34:56); discard on TCP port 9, chargen on 19",
    ] {
        if !log.contains(want) {
            return Err(format!("missing from the boot log: {want:?}"));
        }
    }
    let (pushed, pulled) = transfer(&vm, DOM0_IP)?;
    ctx.note(format!(
        "host -> dom0 discard: {} MiB in {:.2} s ({:.1} MB/s); dom0 chargen -> host: {} MiB in \
         {:.2} s ({:.1} MB/s) (interrupts)",
        PUSH_BYTES >> 20,
        pushed.as_secs_f64(),
        netbench::mb_per_s(PUSH_BYTES, pushed),
        PULL_BYTES >> 20,
        pulled.as_secs_f64(),
        netbench::mb_per_s(PULL_BYTES, pulled),
    ));
    let interrupts = run(&mut vm, "cat /proc/interrupts")?;
    let eth0_irqs: u64 = interrupts
        .lines()
        .find(|l| l.ends_with(" eth0"))
        .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        .ok_or_else(|| format!("no eth0 row in /proc/interrupts: {interrupts:?}"))?;
    if eth0_irqs == 0 || !interrupts.contains("-ioapic-level  eth0") {
        return Err(format!(
            "the card's interrupt does not count: {interrupts:?}"
        ));
    }
    let dev = run(&mut vm, "cat /proc/net/dev")?;
    let eth0_rx = dev_field(&dev, "eth0", 1).ok_or_else(|| format!("/proc/net/dev: {dev:?}"))?;
    let br_rx = dev_field(&dev, "xenbr0", 1).ok_or_else(|| format!("/proc/net/dev: {dev:?}"))?;
    let br_tx = dev_field(&dev, "xenbr0", 9).ok_or_else(|| format!("/proc/net/dev: {dev:?}"))?;
    if eth0_rx < PUSH_BYTES as u64 || br_rx < PUSH_BYTES as u64 || br_tx < PULL_BYTES as u64 {
        return Err(format!(
            "/proc/net/dev does not count the bytes moved (eth0 rx {eth0_rx}, xenbr0 rx \
             {br_rx} tx {br_tx}): {dev:?}"
        ));
    }
    let services = run(&mut vm, "cat /proc/net/services")?;
    if service_bytes(&services, "discard") != Some(PUSH_BYTES as u64)
        || service_bytes(&services, "chargen").is_none_or(|b| b < PULL_BYTES as u64)
    {
        return Err(format!(
            "/proc/net/services: discard should count exactly {PUSH_BYTES} bytes: {services:?}"
        ));
    }
    let brctl = run(&mut vm, "brctl show")?;
    if !brctl.contains("bridge name\tbridge id\t\tSTP enabled\tinterfaces")
        || !brctl.contains("xenbr0\t\t8000.525400123456\tno\t\teth0")
    {
        return Err(format!("brctl show: {brctl:?}"));
    }
    let addr = run(&mut vm, "ip addr")?;
    if !addr.contains("inet 10.0.2.15/24 scope global xenbr0")
        || !addr.contains("eth0: <BROADCAST,MULTICAST,UP,LOWER_UP> mtu 1500 master xenbr0")
    {
        return Err(format!("ip addr: {addr:?}"));
    }
    ctx.note(format!(
        "{eth0_irqs} interrupts for {} frames received and {} sent on eth0",
        dev_field(&dev, "eth0", 2).unwrap_or(0),
        dev_field(&dev, "eth0", 10).unwrap_or(0)
    ));
    // A second connection to each service after the first closed: they listen again.
    transfer(&vm, DOM0_IP)?;
    let services = run(&mut vm, "cat /proc/net/services")?;
    if service_bytes(&services, "discard") != Some(2 * PUSH_BYTES as u64) {
        return Err(format!("a second push: {services:?}"));
    }
    vm.kill();
    Ok(())
}

/// The same transfers with the card polled (`virtio_net=poll` on dom0's command line): the
/// fallback works, counts no interrupt, and its throughput is noted beside the interrupt-driven
/// one. dom0's address comes from its command line (`ip=10.0.2.16/24,gw=10.0.2.2`), and the
/// forwards reach it there. dom0's built-in shell here: its `brctl show` and `ip addr` are the
/// kernel's.
pub fn poll(ctx: &Context) -> Result<(), String> {
    let ip = "10.0.2.16";
    let mut vm = boot(
        ctx,
        &format!("virtio_net=poll ip={ip}/24,gw=10.0.2.2"),
        false,
        ip,
    )?;
    if !vm
        .serial_log()
        .contains("virtio_net eth0: polling (virtio_net=poll)")
    {
        return Err("no `virtio_net eth0: polling` line at boot".into());
    }
    let (pushed, pulled) = transfer(&vm, ip)?;
    ctx.note(format!(
        "host -> dom0 discard: {} MiB in {:.2} s ({:.1} MB/s); dom0 chargen -> host: {} MiB in \
         {:.2} s ({:.1} MB/s) (polling)",
        PUSH_BYTES >> 20,
        pushed.as_secs_f64(),
        netbench::mb_per_s(PUSH_BYTES, pushed),
        PULL_BYTES >> 20,
        pulled.as_secs_f64(),
        netbench::mb_per_s(PULL_BYTES, pulled),
    ));
    let interrupts = run(&mut vm, "cat /proc/interrupts")?;
    if interrupts.contains(" eth0") {
        return Err(format!(
            "a polled card has an interrupt row: {interrupts:?}"
        ));
    }
    vm.kill();
    Ok(())
}

/// The card beside a disk (both virtio, their INTx lines possibly on one GSI, both in the one
/// DMA pool): while the host pushes 4 MiB to dom0's discard service, dom0 writes 8 MiB to
/// the disk, syncs and reads it back; both finish, the discard count is exact, and the boot
/// log shows each device's interrupt.
pub fn with_disk(ctx: &Context) -> Result<(), String> {
    use crate::workspace::{DOM0_ARTIFACT, TEST_INITRD_ARTIFACT};
    let ws = ctx.workspace();
    let disk =
        crate::machine::DiskImage::create(ws.scenario_dir(ctx.name()).join("disk.img"), 32 << 20)?;
    let mut vm = ctx
        .machine()
        .memory_mib(512)
        .hv_options(crate::iso::DEFAULT_HV_OPTIONS)
        .module(ws.require_artifact(DOM0_ARTIFACT)?, "")
        .module(ws.require_artifact(TEST_INITRD_ARTIFACT)?, "")
        .console_shell()
        .disk(disk.path())
        .nic(&[(DOM0_IP, 9)])?
        .boot()?;
    vm.wait_for(PROMPT, T)?;
    let log = vm.serial_log();
    let gsi = |prefix: &str| -> Option<String> {
        let line = log.lines().find(|l| l.starts_with(prefix))?;
        Some(line.split_whitespace().nth(3)?.to_string())
    };
    let (disk_gsi, nic_gsi) = match (
        gsi("virtio_blk virtio0: GSI "),
        gsi("virtio_net eth0: GSI "),
    ) {
        (Some(d), Some(n)) => (d, n),
        _ => return Err("no GSI line for the disk or the card at boot".into()),
    };
    // One disk leaves the pool room for the card's whole queue of receive buffers.
    receive_buffers(&log, 64)?;
    let port = vm.host_port(DOM0_IP, 9).ok_or("no forward to discard")?;
    let pusher = std::thread::spawn(move || netbench::push(port, PUSH_BYTES, TRANSFER));
    let out = run(
        &mut vm,
        "dd if=/dev/zero of=/dev/vda bs=65536 count=128 2>&1 && sync && \
         dd if=/dev/vda of=/dev/null bs=65536 count=128 2>&1",
    )?;
    let pushed = pusher
        .join()
        .map_err(|_| String::from("the push thread panicked"))??;
    if out.matches("128+0 records in").count() != 2 {
        return Err(format!("dd beside the network: {out:?}"));
    }
    let services = run(&mut vm, "cat /proc/net/services")?;
    if service_bytes(&services, "discard") != Some(PUSH_BYTES as u64) {
        return Err(format!("/proc/net/services: {services:?}"));
    }
    ctx.note(format!(
        "disk on GSI {disk_gsi}, card on GSI {nic_gsi}; 4 MiB pushed in {:.2} s beside 8 MiB \
         written and read",
        pushed.as_secs_f64()
    ));
    vm.kill();
    Ok(())
}

/// Fails unless the boot log's `eth0` line says the card keeps `n` receive buffers posted.
fn receive_buffers(log: &str, n: usize) -> Result<(), String> {
    let line = log
        .lines()
        .find(|l| l.starts_with("virtio_net ") && l.contains(": eth0: "))
        .ok_or("no `virtio_net ...: eth0:` line at boot")?;
    if !line.contains(&format!("({n} receive buffers, ")) {
        return Err(format!("expected {n} receive buffers: {line:?}"));
    }
    Ok(())
}

/// The card beside two disks, which leave the DMA pool too few pages for a whole queue of
/// receive buffers: the card comes up with the smaller count (32) instead of failing, and
/// the host's 4 MiB reach dom0's discard service exactly.
pub fn two_disks(ctx: &Context) -> Result<(), String> {
    use crate::workspace::{DOM0_ARTIFACT, TEST_INITRD_ARTIFACT};
    let ws = ctx.workspace();
    let dir = ws.scenario_dir(ctx.name());
    let a = crate::machine::DiskImage::create(dir.join("a.img"), 16 << 20)?;
    let b = crate::machine::DiskImage::create(dir.join("b.img"), 16 << 20)?;
    let mut vm = ctx
        .machine()
        .memory_mib(512)
        .hv_options(crate::iso::DEFAULT_HV_OPTIONS)
        .module(ws.require_artifact(DOM0_ARTIFACT)?, "")
        .module(ws.require_artifact(TEST_INITRD_ARTIFACT)?, "")
        .console_shell()
        .disk(a.path())
        .disk(b.path())
        .nic(&[(DOM0_IP, 9)])?
        .boot()?;
    vm.wait_for(PROMPT, T)?;
    let log = vm.serial_log();
    if !log.contains("virtio_blk virtio1") {
        return Err("the second disk was not probed".into());
    }
    receive_buffers(&log, 32)?;
    let port = vm.host_port(DOM0_IP, 9).ok_or("no forward to discard")?;
    let pushed = netbench::push(port, PUSH_BYTES, TRANSFER)?;
    let services = run(&mut vm, "cat /proc/net/services")?;
    if service_bytes(&services, "discard") != Some(PUSH_BYTES as u64) {
        return Err(format!("/proc/net/services: {services:?}"));
    }
    ctx.note(format!(
        "two disks: 32 receive buffers; 4 MiB pushed in {:.2} s",
        pushed.as_secs_f64()
    ));
    vm.kill();
    Ok(())
}
