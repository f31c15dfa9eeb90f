//! Disks through xl at dom0's prompt (issue 15): `disk=` at create, the sharing refusal,
//! `block-list`/`-attach`/`-detach`, `list -l`, the nodes going at destroy and coming back
//! at a restart. The target is an image file made at the prompt; with no block backend
//! in this dom0 yet, the disks stay in `XenbusStateInitialising` (state 1) and a
//! `block-detach` without `-f` times out as libxl's does.

use std::time::Duration;

use crate::machine::Qemu;
use crate::runner::Context;

use super::operator::{Initrd, boot_with};
use super::xl::run;

/// Lines of the hypervisor's and dom0's kernel's logs, and guests' console lines, which
/// share the serial line with xl.
fn log_line(line: &str) -> bool {
    let domain_n = line
        .strip_prefix("domain ")
        .is_some_and(|r| r.starts_with(|c: char| c.is_ascii_digit()));
    domain_n
        || line.starts_with("(XEN)")
        || line.starts_with("(d")
        || line.starts_with("dom0: ")
        || line.starts_with("memory: ")
}

/// `line` at the prompt: what it printed, without the echoed command and others' logs.
fn shell(vm: &mut Qemu, line: &str) -> Result<String, String> {
    let raw = run(vm, line)?.replace('\r', "");
    let mut lines = raw.split_inclusive('\n');
    lines.next();
    Ok(lines
        .filter(|l| !log_line(l.trim_end_matches('\n')))
        .collect())
}

/// `want` must be in what `line` printed.
fn expect(vm: &mut Qemu, line: &str, want: &str) -> Result<String, String> {
    let out = shell(vm, line)?;
    if out.contains(want) {
        Ok(out)
    } else {
        Err(format!("`{line}` printed\n{out}\nwhich lacks\n{want}"))
    }
}

/// The id in `Domain <name> created with id <n>`.
fn created(vm: &mut Qemu, line: &str) -> Result<u32, String> {
    let out = shell(vm, line)?;
    out.lines()
        .find_map(|l| l.split_once(" created with id ").map(|(_, id)| id.trim()))
        .and_then(|id| id.parse().ok())
        .ok_or_else(|| format!("`{line}` printed {out:?}"))
}

const HEADER: &str = "Vdev  BE  handle state evt-ch ring-ref BE-path                       \n";
const FAILED: &str = "xl: exited with status 1\n";

fn create_line(name: &str, disk: &str) -> String {
    format!("xl create /etc/xen/echo.cfg 'name=\"{name}\"' memory=16 'disk=[\"{disk}\"]'")
}

/// `block_xl_without_backend`.
pub fn without_backend(ctx: &Context) -> Result<(), String> {
    let mut vm = boot_with(ctx, "", Initrd::Test)?;
    let r = steps(&mut vm);
    vm.kill();
    r
}

fn steps(vm: &mut Qemu) -> Result<(), String> {
    expect(
        vm,
        "sh -c 'mkdir -p /srv && printf disk > /srv/d.img && echo made'",
        "made",
    )?;
    // Xen's example, as Xen's `check-xl-disk-parse` expects it.
    let out = shell(
        vm,
        "xl -N block-attach 0 format=raw vdev=hda access=rw target=/dev/vg/guest-volume",
    )?;
    let want = "disk: {\n    \"pdev_path\": \"/dev/vg/guest-volume\",\n    \"vdev\": \"hda\",\n    \
                \"format\": \"raw\",\n    \"readwrite\": 1\n}\n\n";
    if out != want {
        return Err(format!(
            "`xl -N block-attach` printed {out:?}, not {want:?}"
        ));
    }
    // Bad specs and targets, in Xen's words, before anything is built.
    expect(
        vm,
        &create_line("bq", "/srv/d.img,qcow9,xvda"),
        "config parsing error in disk specification: unknown value for format: near `qcow9' \
         in `/srv/d.img,qcow9,xvda'",
    )?;
    expect(
        vm,
        &create_line("bq", "/srv/d.img,qcow2,xvda"),
        "format=qcow2 is not supported by Xenia",
    )?;
    expect(
        vm,
        &create_line("bm", "/dev/nope,raw,xvda,rw"),
        "cannot create \"bm\": disk xvda: /dev/nope does not exist.\n",
    )?;

    // A domain with the image writable; nothing serves it, so it stays Initialising.
    let a = created(vm, &create_line("ba", "/srv/d.img,raw,xvda,rw"))?;
    let out = shell(vm, "xl block-list ba")?;
    let row = format!(
        "{:<5} {:<3} {:<6} {:<5} {:<6} {:<8} {:<30}\n",
        51712,
        0,
        a,
        1,
        -1,
        -1,
        format!("/local/domain/0/backend/vbd/{a}/51712")
    );
    if out != format!("{HEADER}{row}") {
        return Err(format!("`xl block-list ba` printed {out:?}"));
    }
    let out = expect(vm, "xl list -l ba", "\"pdev_path\": \"/srv/d.img\"")?;
    for want in [
        "\"vdev\": \"xvda\"",
        "\"backend\": \"phy\"",
        "\"readwrite\": 1",
    ] {
        if !out.contains(want) {
            return Err(format!("`xl list -l ba` lacks {want}: {out}"));
        }
    }

    // The same image to another domain, writable or not: Xen's block script's words.
    expect(
        vm,
        &create_line("bb", "/srv/d.img,raw,xvda,rw"),
        "Device /srv/d.img is mounted in a guest domain,\nand so cannot be mounted now.",
    )?;
    expect(
        vm,
        &create_line("bc", "/srv/d.img,raw,xvda,ro"),
        "Device /srv/d.img is mounted read-write in a guest domain,\nand so cannot be mounted \
         read-only now.",
    )?;
    // ... and to the same domain a second time.
    let out = expect(
        vm,
        "xl block-attach ba /srv/d.img,raw,xvdb,ro",
        "libxl_device_disk_add failed.\n",
    )?;
    if !out.ends_with(FAILED) {
        return Err(format!("`xl block-attach` twice: {out:?}"));
    }
    // The refused domains are gone again.
    let listed = shell(vm, "xl list")?;
    if listed
        .lines()
        .any(|l| l.starts_with("bb ") || l.starts_with("bc "))
    {
        return Err(format!("a refused domain is left: {listed}"));
    }

    // Detach: no backend closes, so xl gives up after libxl's 10 s; -f takes it anyway.
    let out = expect(
        vm,
        "xl block-detach ba xvda",
        "libxl_device_disk_safe_remove failed.\n",
    )?;
    if !out.ends_with(FAILED) {
        return Err(format!("`xl block-detach ba xvda`: {out:?}"));
    }
    expect(
        vm,
        "xl block-list ba",
        &format!("{:<5} {:<3} {:<6} {:<5}", 51712, 0, a, 1),
    )?;
    let out = shell(vm, "xl block-detach -f ba xvda")?;
    if !out.is_empty() {
        return Err(format!("`xl block-detach -f ba xvda` printed {out:?}"));
    }
    let out = shell(vm, "xl block-list ba")?;
    if out != HEADER {
        return Err(format!(
            "after the detach `xl block-list ba` printed {out:?}"
        ));
    }
    expect(
        vm,
        "xl block-detach ba xvda",
        "Error: Device xvda not connected.\n",
    )?;

    // Read-only now, and shared read-only with another domain.
    let out = shell(vm, "xl block-attach ba /srv/d.img,raw,xvdb,ro")?;
    if !out.is_empty() {
        return Err(format!("`xl block-attach ba ...,ro` printed {out:?}"));
    }
    expect(
        vm,
        "xl block-list ba",
        &format!("{:<5} {:<3} {:<6} {:<5}", 51728, 0, a, 1),
    )?;
    let c = created(vm, &create_line("bc", "/srv/d.img,raw,xvda,ro"))?;

    // Destroyed, their backends go (the dom0 kernel removes them), so a writer is let in.
    shell(vm, "xl destroy ba")?;
    shell(vm, &format!("xl destroy {c}"))?;
    let b = created(vm, &create_line("bb", "/srv/d.img,raw,xvda,rw"))?;

    // Rebooted, the domain gets its disk again from its configuration, and keeps it.
    // The kernel says so on the console, maybe before the prompt is back.
    let said = run(vm, "xl reboot bb")?.replace('\r', "");
    let wanted = "\"bb\" restarted as domain";
    let line = match said.lines().find(|l| l.contains(wanted)) {
        Some(l) => l.to_string(),
        None => vm.wait_for_line(wanted, Duration::from_secs(30))?,
    };
    let b2: u32 = line
        .rsplit(' ')
        .next()
        .and_then(|id| id.trim().parse().ok())
        .ok_or_else(|| format!("no id in {line:?}"))?;
    if b2 == b {
        return Err(format!("restarted as the same id {b}"));
    }
    expect(
        vm,
        "xl block-list bb",
        &format!(
            "{:<5} {:<3} {:<6} {:<5} {:<6} {:<8} /local/domain/0/backend/vbd/{b2}/51712",
            51712, 0, b2, 1, -1, -1
        ),
    )?;
    expect(
        vm,
        &create_line("bd", "/srv/d.img,raw,xvda,ro"),
        "Device /srv/d.img is mounted read-write in a guest domain,",
    )?;
    Ok(())
}

/// `block_xl_dom0_disks`: dom0 has two virtio disks (`/dev/vda`, `/dev/vdb`, from the
/// dom0-blk work); `xl create` gives a domain `/dev/vdb` in the spelling, and the
/// nodes are libxl's, read with `xenstore-ls -p`/`xenstore-read`: the frontend directory
/// the domain's and readable by dom0, the backend's dom0's and readable by the domain. The
/// device refused to a second domain under another spelling (`vdb`), and `/dev/vdz`
/// refused as missing. Destroyed, the domain's frontend and backend directories are gone,
/// and its entries in the sharing index.
pub fn dom0_disks(ctx: &Context) -> Result<(), String> {
    use crate::machine::DiskImage;
    use crate::workspace::{DOM0_ARTIFACT, TEST_INITRD_ARTIFACT};
    let ws = ctx.workspace();
    let dir = ws.scenario_dir(ctx.name());
    let images = [
        DiskImage::create(dir.join("vda.img"), 8 << 20)?,
        DiskImage::create(dir.join("vdb.img"), 8 << 20)?,
    ];
    let mut machine = ctx
        .machine()
        .memory_mib(512)
        .hv_options(crate::iso::DEFAULT_HV_OPTIONS)
        .module(ws.require_artifact(DOM0_ARTIFACT)?, "")
        .module(ws.require_artifact(TEST_INITRD_ARTIFACT)?, "");
    for d in &images {
        machine = machine.disk(d.path());
    }
    let mut vm = machine.boot()?;
    vm.wait_for(super::xl::PROMPT, crate::machine::DEFAULT_TIMEOUT)?;
    let r = dom0_disk_steps(&mut vm);
    vm.kill();
    r
}

fn dom0_disk_steps(vm: &mut Qemu) -> Result<(), String> {
    expect(vm, "sh -c 'ls -l /dev/vdb'", "/dev/vdb")?;
    expect(
        vm,
        &create_line("bz", "/dev/vdz,raw,xvda,rw"),
        "disk xvda: /dev/vdz does not exist.\n",
    )?;
    let id = created(
        vm,
        &create_line("bv", "format=raw, vdev=xvda, access=rw, target=/dev/vdb"),
    )?;
    let be = format!("/local/domain/0/backend/vbd/{id}/51712");
    let fe = format!("/local/domain/{id}/device/vbd/51712");
    let out = shell(vm, &format!("xenstore-ls -p {be}"))?;
    for want in [
        format!("frontend = \"{fe}\""),
        format!("frontend-id = \"{id}\""),
        "params = \"/dev/vdb\"".to_string(),
        "mode = \"w\"".to_string(),
        "type = \"phy\"".to_string(),
        "online = \"1\"".to_string(),
        "removable = \"0\"".to_string(),
        "bootable = \"1\"".to_string(),
        "dev = \"xvda\"".to_string(),
        "device-type = \"disk\"".to_string(),
        "state = \"1\"".to_string(),
        format!("(n0,r{id})"),
    ] {
        if !out.contains(&want) {
            return Err(format!("`xenstore-ls -p {be}` lacks {want:?}:\n{out}"));
        }
    }
    let out = shell(vm, &format!("xenstore-ls -p {fe}"))?;
    for want in [
        format!("backend = \"{be}\""),
        "backend-id = \"0\"".to_string(),
        "state = \"1\"".to_string(),
        "virtual-device = \"51712\"".to_string(),
        "device-type = \"disk\"".to_string(),
        format!("(n{id},r0)"),
    ] {
        if !out.contains(&want) {
            return Err(format!("`xenstore-ls -p {fe}` lacks {want:?}:\n{out}"));
        }
    }
    // The same device under another spelling, read-only: refused all the same.
    expect(
        vm,
        &create_line("bw", "vdb,raw,xvda,ro"),
        "Device /dev/vdb is mounted read-write in a guest domain,\nand so cannot be mounted \
         read-only now.",
    )?;
    // The sharing index names the writer.
    let index = "/tool/xenia/disks/dev/vdb";
    expect(
        vm,
        &format!("xenstore-read {index}/writer"),
        &format!("{id}-51712"),
    )?;
    // Destroyed: both directories go, and the index entries (dom0's kernel removes them
    // at release).
    shell(vm, "xl destroy bv")?;
    for path in [
        format!("{be}/params"),
        format!("{fe}/state"),
        format!("{index}/writer"),
        format!("{index}/{id}-51712"),
    ] {
        let out = shell(vm, &format!("sh -c 'xenstore-read {path}; echo rc=$?'"))?;
        if !out.contains("rc=1") {
            return Err(format!("after destroy {path} is still there: {out}"));
        }
    }
    // And the device may be given again.
    created(vm, &create_line("bw", "vdb,raw,xvda,ro"))?;
    Ok(())
}

/// Create/destroy cycles with a disk in [`create_flat_icount`].
const FLAT_CYCLES: u32 = 20;
/// Domains made alive with one shared read-only disk in [`create_flat_icount`].
const FLAT_DOMAINS: u32 = 40;

/// The time `time <command>` reports, in ms.
fn timed_ms(out: &str) -> Option<f64> {
    out.lines().find_map(|l| {
        l.trim()
            .strip_prefix("time: ")?
            .strip_suffix(" ms")?
            .parse::<f64>()
            .ok()
    })
}

/// `block_xl_create_icount`: under `-icount shift=0` (virtual time: one nanosecond an
/// instruction), `time xl create` of an 8 MiB hello with a writable disk over
/// [`FLAT_CYCLES`] create/destroy cycles (the last at most 1.2× the first, issue 13's goal
/// for creation), then [`FLAT_DOMAINS`] live domains sharing one read-only image, each
/// against a domain without a disk made at the same population: what the disk adds grows
/// no faster than creation itself (within 10%; the sharing check reads the index, not
/// every backend).
pub fn create_flat_icount(ctx: &Context) -> Result<(), String> {
    use crate::benchk::ICOUNT;
    use crate::workspace::{DOM0_ARTIFACT, TEST_INITRD_ARTIFACT};
    let ws = ctx.workspace();
    let mut vm = ctx
        .machine()
        .memory_mib(512)
        .hv_options(crate::iso::DEFAULT_HV_OPTIONS)
        .qemu_arg(ICOUNT[0])
        .qemu_arg(ICOUNT[1])
        .module(ws.require_artifact(DOM0_ARTIFACT)?, "")
        .module(ws.require_artifact(TEST_INITRD_ARTIFACT)?, "")
        .boot()?;
    vm.wait_for(super::xl::PROMPT, Duration::from_secs(180))?;
    let r = create_flat_steps(&mut vm);
    vm.kill();
    for line in r? {
        ctx.note(line);
    }
    Ok(())
}

fn create_flat_steps(vm: &mut Qemu) -> Result<Vec<String>, String> {
    expect(
        vm,
        "sh -c 'mkdir -p /srv && printf disk > /srv/d.img && echo made'",
        "made",
    )?;
    let create = |vm: &mut Qemu, name: &str, disk: &str| -> Result<f64, String> {
        let line = format!("time xl create /etc/xen/hello.cfg 'name=\"{name}\"' memory=8{disk}");
        let out = run(vm, &line)?;
        if !out.contains(&format!("Domain {name} created")) {
            return Err(format!("`{line}`: {out:?}"));
        }
        timed_ms(&out).ok_or_else(|| format!("no time in {out:?}"))
    };
    let rw = " 'disk=[\"/srv/d.img,raw,xvda,rw\"]'";
    let ro = " 'disk=[\"/srv/d.img,raw,xvda,ro\"]'";
    let mut cycles = Vec::new();
    for _ in 0..FLAT_CYCLES {
        cycles.push(create(vm, "c", rw)?);
        shell(vm, "xl destroy c")?;
    }
    let (c1, cn) = (cycles[0], cycles[cycles.len() - 1]);
    let mut notes = vec![format!(
        "xl create with a disk, create/destroy cycles: {c1:.2} ms the 1st, {cn:.2} ms the \
         {FLAT_CYCLES}th (ratio {:.2})",
        cn / c1
    )];
    let mut failed = Vec::new();
    if cn > 1.2 * c1 {
        failed.push("the cycles are not flat");
    }
    let plain_first = create(vm, "p1", "")?;
    let mut times = Vec::new();
    for i in 1..=FLAT_DOMAINS {
        times.push(create(vm, &format!("d{i}"), ro)?);
    }
    let plain_last = create(vm, "p2", "")?;
    let (d1, dn) = (times[0], times[times.len() - 1]);
    let (added_first, added_last) = (d1 - plain_first, dn - plain_last);
    notes.push(format!(
        "xl create among live domains: without a disk {plain_first:.2} ms (1st) and \
         {plain_last:.2} ms ({}th); with a shared read-only disk {d1:.2} ms (1st) and {dn:.2} \
         ms ({FLAT_DOMAINS}th): the disk adds {added_first:.2} ms, then {added_last:.2} ms",
        FLAT_DOMAINS + 2
    ));
    // Creation itself grows with the live domains (xl lists them; dom0's kernel looks at
    // every ring after each xenstore request). What the disk adds may grow as much, and no
    // more: a scan of every backend would add two reads per live domain.
    let growth = plain_last / plain_first;
    if added_last > 1.1 * growth * added_first.max(0.1) {
        failed.push("what the disk costs grows faster than creation");
    }
    if failed.is_empty() {
        Ok(notes)
    } else {
        Err(format!("{}: {}", failed.join(", "), notes.join("; ")))
    }
}
