//! Xen's split block device (issue 15, scenarios `block_*` of `blkif`): blkback in dom0's kernel, blkfront in the guest
//! runtime, disks given with `xl create`'s `disk = [...]`. The machine has three raw images
//! as virtio-blk disks (dom0's `/dev/vda`, `/dev/vdb`, `/dev/vdc`); the domUs are testguest
//! (`test=block_*`, testguest `src/tests/block.rs`) or the kv demo.

use std::time::Duration;

use crate::iso::DEFAULT_HV_OPTIONS;
use crate::machine::{DEFAULT_TIMEOUT as T, DiskImage, EXIT_POWEROFF, Qemu};
use crate::runner::Context;
use crate::scenarios::xl::{self, PROMPT};
use crate::workspace::{DOM0_ARTIFACT, TEST_INITRD_ARTIFACT};

/// The size of each disk image.
const DISK_BYTES: u64 = 4 << 20;
/// The pattern testguest writes: the word at byte `o` is `PATTERN ^ (o / 8)`.
const PATTERN: u64 = 0x584E_4941_424C_4B00;
/// How long a domU's whole-disk job may take under emulation.
const JOB: Duration = Duration::from_secs(240);

/// Boots the test image with three fresh disk images; returns the machine and the images.
fn boot(ctx: &Context) -> Result<(Qemu, Vec<DiskImage>), String> {
    boot_cpus(ctx, 1)
}

/// [`boot`] on `cpus` CPUs.
fn boot_cpus(ctx: &Context, cpus: u32) -> Result<(Qemu, Vec<DiskImage>), String> {
    let ws = ctx.workspace();
    let dir = ctx.work_dir()?;
    let mut images = Vec::new();
    let mut machine = ctx
        .machine()
        .memory_mib(512)
        .cpus(cpus)
        .hv_options(DEFAULT_HV_OPTIONS)
        .module(ws.require_artifact(DOM0_ARTIFACT)?, "")
        .module(ws.require_artifact(TEST_INITRD_ARTIFACT)?, "");
    for name in ["vda", "vdb", "vdc"] {
        let img = DiskImage::create(dir.join(format!("{name}.img")), DISK_BYTES)?;
        machine = machine.disk(img.path());
        images.push(img);
    }
    let mut vm = machine.boot()?;
    vm.wait_for(PROMPT, T)?;
    Ok((vm, images))
}

/// `xl create` of testguest running `test` with `disk`; returns the domain's id.
fn create(vm: &mut Qemu, name: &str, test: &str, disk: &str) -> Result<u32, String> {
    let out = xl::run(
        vm,
        &format!(
            "xl create /etc/xen/hello.cfg 'name=\"{name}\"' 'kernel=\"/boot/testguest.elf\"' \
             'cmdline=\"test={test}\"' \"disk=['{disk}']\""
        ),
    )?;
    created_id(&out, name)
}

pub(super) fn created_id(out: &str, name: &str) -> Result<u32, String> {
    out.lines()
        .find_map(|l| {
            l.trim()
                .strip_prefix(&format!("Domain {name} created with id "))
        })
        .and_then(|id| id.trim().parse().ok())
        .ok_or_else(|| format!("`xl create` of {name} failed:\n{out}"))
}

/// Waits for domain `id`'s `Test result:` line and requires SUCCESS with no failed check.
pub(super) fn passes(vm: &mut Qemu, id: u32, timeout: Duration) -> Result<(), String> {
    let prefix = format!("(d{id}) ");
    let result = vm.wait_for_line_starting(&format!("{prefix}Test result: "), timeout)?;
    let log = vm.serial_log();
    let failed: Vec<&str> = log
        .lines()
        .filter(|l| l.starts_with(&format!("{prefix}check ")) && !l.ends_with(": ok"))
        .collect();
    if result != format!("{prefix}Test result: SUCCESS") || !failed.is_empty() {
        return Err(format!("{result}; failed checks: {failed:?}"));
    }
    Ok(())
}

/// Waits (at most 50 `xl list`s) until `xl list` no longer shows `name`.
pub(super) fn gone(vm: &mut Qemu, name: &str) -> Result<(), String> {
    for _ in 0..50 {
        let list = xl::run(vm, "xl list")?;
        if !list
            .lines()
            .any(|l| l.split_whitespace().next() == Some(name))
        {
            return Ok(());
        }
    }
    Err(format!("domain {name} is still listed"))
}

/// Checks the pattern in `img` over `sectors` sectors at a few places.
fn pattern_on_host(img: &DiskImage, sectors: u64) -> Result<(), String> {
    for sector in [0, 1, 87, 88, sectors / 2, sectors - 1] {
        let at = sector * 512;
        let bytes = img.read_at(at, 512)?;
        for (i, w) in bytes.chunks_exact(8).enumerate() {
            let got = u64::from_le_bytes(w.try_into().unwrap_or([0; 8]));
            let want = PATTERN ^ (at / 8 + i as u64);
            if got != want {
                return Err(format!(
                    "{}: byte {}: {got:#x}, expected {want:#x}",
                    img.path().display(),
                    at + 8 * i as u64
                ));
            }
        }
    }
    Ok(())
}

/// The frame table is consistent and dom0 reported nothing wrong.
pub(super) fn frame_check(vm: &mut Qemu) -> Result<(), String> {
    let out = xl::run(vm, "probe frame-check")?;
    if !out.contains("frame table check: 0") {
        return Err(format!("frame table check: {out:?}"));
    }
    Ok(())
}

/// `free_memory` of `xl info`, in MiB.
pub(super) fn free_memory(vm: &mut Qemu) -> Result<u64, String> {
    let out = xl::run(vm, "xl info")?;
    out.lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            (k.trim() == "free_memory").then(|| v.trim().parse().ok())?
        })
        .ok_or_else(|| format!("no free_memory in {out:?}"))
}

/// Runs `line` (a `time ...` command) at dom0's prompt; the milliseconds of its `time:` line.
fn dom0_ms(vm: &mut Qemu, line: &str) -> Result<u64, String> {
    let out = xl::run(vm, line)?;
    out.lines()
        .find_map(|l| {
            l.trim()
                .strip_prefix("time: ")?
                .split('.')
                .next()?
                .parse()
                .ok()
        })
        .ok_or_else(|| format!("no time line from `{line}`: {out:?}"))
}

/// Notes the domain's `block: pattern <how> <n> sectors in <ms> ms` line as KiB/s
/// (virtual time under TCG: a figure to compare runs, not hardware).
fn note_speed(ctx: &Context, vm: &Qemu, id: u32, how: &str) {
    let prefix = format!("(d{id}) note: block: pattern {how} ");
    let log = vm.serial_log();
    let Some(line) = log.lines().find(|l| l.starts_with(&prefix)) else {
        return;
    };
    let words: Vec<&str> = line[prefix.len()..].split_whitespace().collect();
    if let (Some(sectors), Some(ms)) = (
        words.first().and_then(|w| w.parse::<u64>().ok()),
        words.get(3).and_then(|w| w.parse::<u64>().ok()),
    ) {
        let kib_s = sectors / 2 * 1000 / ms.max(1);
        ctx.note(format!(
            "domU through blkfront/blkback: {} KiB {how} the disk in {ms} ms ({kib_s} KiB/s)",
            sectors / 2
        ));
    }
}

/// A domU writes the pattern over its disk, flushes and powers off (destroyed); a second
/// domU reads the whole pattern back and disconnects; dom0 powers the machine off and the
/// harness finds the pattern in the image file at the right offsets.
pub fn persist(ctx: &Context) -> Result<(), String> {
    let (mut vm, images) = boot(ctx)?;
    // dom0 on a disk of its own directly, in the same run, for comparison (zeros, so /dev/vdc
    // stays as it was; 93 requests of 44 KiB, as blkfront makes them).
    let w = dom0_ms(
        &mut vm,
        "time dd if=/dev/zero of=/dev/vdc bs=45056 count=93 conv=fsync",
    )?;
    let r = dom0_ms(
        &mut vm,
        "time dd if=/dev/vdc of=/dev/null bs=45056 count=93",
    )?;
    ctx.note(format!(
        "dom0 directly (dd on /dev/vdc): 4092 KiB written in {w} ms ({} KiB/s), read in {r} ms ({} KiB/s)",
        4092 * 1000 / w.max(1),
        4092 * 1000 / r.max(1)
    ));
    let disk = "format=raw, vdev=xvda, access=rw, target=/dev/vdb";
    let id = create(&mut vm, "writer", "block_write", disk)?;
    passes(&mut vm, id, JOB)?;
    note_speed(ctx, &vm, id, "written to");
    gone(&mut vm, "writer")?;
    let id = create(&mut vm, "reader", "block_read", disk)?;
    passes(&mut vm, id, JOB)?;
    note_speed(ctx, &vm, id, "read from");
    gone(&mut vm, "reader")?;
    frame_check(&mut vm)?;
    vm.send("poweroff\r")?;
    vm.expect_exit(EXIT_POWEROFF, T)?;
    pattern_on_host(&images[1], DISK_BYTES / 512)?;
    // The other disks were not touched.
    if images[2].read_at(0, 512)?.iter().any(|&b| b != 0) {
        return Err("/dev/vdc was written".into());
    }
    Ok(())
}

/// A domain destroyed while it streams writes: dom0 keeps running, the backend lets go of
/// the device (its directory goes), the free memory comes back to what it was, and the
/// same disk serves a new domain.
pub fn destroy_midstream(ctx: &Context) -> Result<(), String> {
    let (mut vm, _images) = boot(ctx)?;
    let disk = "format=raw, vdev=xvda, access=rw, target=/dev/vdb";
    let before = free_memory(&mut vm)?;
    let id = create(&mut vm, "streamer", "block_stream", disk)?;
    vm.wait_for_line(&format!("(d{id}) note: block: streamed 64 requests"), JOB)?;
    xl::run(&mut vm, "xl destroy streamer")?;
    if !vm
        .serial_log()
        .contains(&format!("dom0: blkback: d{id} device 51712 released"))
    {
        vm.wait_for_line(&format!("dom0: blkback: d{id} device 51712 released"), T)?;
    }
    gone(&mut vm, "streamer")?;
    let out = xl::run(&mut vm, "xenstore-ls /local/domain/0/backend")?;
    if out.contains(&format!("{id} =")) || out.contains("params") {
        return Err(format!("backend nodes left after the domain: {out}"));
    }
    let after = free_memory(&mut vm)?;
    if after != before {
        return Err(format!(
            "free memory {after} MiB after the domain, {before} MiB before"
        ));
    }
    // dom0 is alive and the disk serves a new domain.
    let id = create(&mut vm, "writer", "block_write", disk)?;
    passes(&mut vm, id, JOB)?;
    gone(&mut vm, "writer")?;
    frame_check(&mut vm)?;
    vm.kill();
    Ok(())
}

/// `access=ro`: the backend says read-only and refuses a write the frontend sends anyway.
pub fn readonly(ctx: &Context) -> Result<(), String> {
    let (mut vm, images) = boot(ctx)?;
    let id = create(
        &mut vm,
        "ro",
        "block_readonly",
        "format=raw, vdev=xvda, access=ro, target=/dev/vdb",
    )?;
    passes(&mut vm, id, JOB)?;
    gone(&mut vm, "ro")?;
    vm.send("poweroff\r")?;
    vm.expect_exit(EXIT_POWEROFF, T)?;
    if images[1].read_at(0, 4096)?.iter().any(|&b| b != 0) {
        return Err("the read-only disk was written".into());
    }
    Ok(())
}

/// A hostile frontend on `/dev/vdc` (requests during the handshake, bad segment counts and
/// bounds, sectors past the end, grants it does not own, an indirect request, a producer
/// index far ahead) gets its errors, while a second domain streams writes to `/dev/vdb`
/// and keeps being served; afterwards that disk still reads back whole.
pub fn hostile_frontend(ctx: &Context) -> Result<(), String> {
    let (mut vm, images) = boot(ctx)?;
    let victim = create(
        &mut vm,
        "victim",
        "block_stream",
        "format=raw, vdev=xvda, access=rw, target=/dev/vdb",
    )?;
    vm.wait_for_line(&format!("(d{victim}) note: block: streaming"), JOB)?;
    let attacker = create(
        &mut vm,
        "attacker",
        "block_hostile",
        "format=raw, vdev=xvda, access=rw, target=/dev/vdc",
    )?;
    passes(&mut vm, attacker, JOB)?;
    let log = vm.serial_log();
    if !log.contains("is more than a ring ahead") {
        return Err("dom0 did not report the impossible producer index".into());
    }
    let refusals = log
        .lines()
        .filter(|l| l.starts_with(&format!("dom0: blkback: d{attacker} ")))
        .count();
    if refusals > 6 {
        return Err(format!(
            "{refusals} log lines about the attacker: not rate-limited"
        ));
    }
    // The victim is still served after the attack.
    let mark = log
        .lines()
        .filter(|l| l.starts_with(&format!("(d{victim}) note: block: streamed ")))
        .count();
    vm.wait_until("the victim streaming on", JOB, |log, cursor| {
        let n = log
            .lines()
            .filter(|l| l.starts_with(&format!("(d{victim}) note: block: streamed ")))
            .count();
        (n > mark + 1).then_some(((), cursor))
    })?;
    xl::run(&mut vm, "xl destroy victim")?;
    xl::run(&mut vm, "xl destroy attacker")?;
    gone(&mut vm, "victim")?;
    gone(&mut vm, "attacker")?;
    // The victim's disk, written by a well-behaved domain, reads back.
    let disk = "format=raw, vdev=xvda, access=rw, target=/dev/vdb";
    let id = create(&mut vm, "writer", "block_write", disk)?;
    passes(&mut vm, id, JOB)?;
    frame_check(&mut vm)?;
    vm.send("poweroff\r")?;
    vm.expect_exit(EXIT_POWEROFF, T)?;
    pattern_on_host(&images[1], DISK_BYTES / 512)?;
    Ok(())
}

/// On two CPUs, a hostile frontend (testguest `block_race`, pinned to CPU 1, on the
/// read-only `/dev/vdc`) rewrites its ring's entries and `req_prod` under the backend at full
/// speed while the backend, holding the ring mapped, serves it; meanwhile a second domain
/// streams writes to `/dev/vdb`. Then the attacker is destroyed with its ring still mapped:
/// dom0 keeps running (it unmaps before the destruction); so is one that powers off with a
/// ring's worth of requests outstanding (destroyed by dom0's shutdown action while it serves
/// them). The victim keeps being served, and once all are gone the free memory is what it
/// was. The read-only disk's image is
/// still all zeros (a backend that fetched an entry twice would have written the pattern
/// of a read turned write).
pub fn hostile_race(ctx: &Context) -> Result<(), String> {
    let (mut vm, images) = boot_cpus(ctx, 2)?;
    let before = free_memory(&mut vm)?;
    let victim = create(
        &mut vm,
        "victim",
        "block_stream",
        "format=raw, vdev=xvda, access=rw, target=/dev/vdb",
    )?;
    vm.wait_for_line(&format!("(d{victim}) note: block: streaming"), JOB)?;
    let attacker = create(
        &mut vm,
        "attacker",
        "block_race",
        "format=raw, vdev=xvda, access=ro, target=/dev/vdc",
    )?;
    xl::run(&mut vm, "xl vcpu-pin attacker 0 1")?;
    vm.wait_for_line(&format!("(d{attacker}) note: block: race done"), JOB)?;
    let log = vm.serial_log();
    let prefix = format!("(d{attacker}) ");
    let failed: Vec<&str> = log
        .lines()
        .filter(|l| l.starts_with(&format!("{prefix}check ")) && !l.ends_with(": ok"))
        .collect();
    if !failed.is_empty() || log.contains(&format!("{prefix}Test result: ")) {
        return Err(format!("the attacker's checks failed: {failed:?}"));
    }
    if let Some(l) = log
        .lines()
        .find(|l| l.starts_with(&format!("{prefix}note: block: race: ")))
    {
        ctx.note(l[prefix.len()..].to_string());
    }
    let streamed = |log: &str| {
        log.lines()
            .filter(|l| l.starts_with(&format!("(d{victim}) note: block: streamed ")))
            .count()
    };
    // Destroyed with its ring mapped in dom0.
    xl::run(&mut vm, "xl destroy attacker")?;
    gone(&mut vm, "attacker")?;
    let log = vm.serial_log();
    if !log.contains(&format!("dom0: grantmap: d{attacker} ref ")) {
        return Err("dom0 did not unmap the attacker's ring before destroying it".into());
    }
    // A second attacker publishes a ring's worth of reads and powers off at once: dom0
    // destroys it (its shutdown action) while serving them.
    let quitter = create(
        &mut vm,
        "quitter",
        "block_race rounds=200 end=poweroff",
        "format=raw, vdev=xvda, access=ro, target=/dev/vdc",
    )?;
    passes(&mut vm, quitter, JOB)?;
    gone(&mut vm, "quitter")?;
    let log = vm.serial_log();
    if !log.contains(&format!("dom0: grantmap: d{quitter} ref ")) {
        return Err("dom0 did not unmap the quitter's ring before destroying it".into());
    }
    // dom0 is alive and the victim still served.
    let mark = streamed(&log);
    vm.wait_until("the victim streaming on", JOB, |log, cursor| {
        (streamed(log) > mark + 1).then_some(((), cursor))
    })?;
    xl::run(&mut vm, "xl destroy victim")?;
    gone(&mut vm, "victim")?;
    let after = free_memory(&mut vm)?;
    if after != before {
        return Err(format!(
            "free memory {after} MiB after the domains, {before} MiB before"
        ));
    }
    frame_check(&mut vm)?;
    vm.send("poweroff\r")?;
    vm.expect_exit(EXIT_POWEROFF, T)?;
    if images[2]
        .read_at(0, DISK_BYTES as usize)?
        .iter()
        .any(|&b| b != 0)
    {
        return Err("the read-only disk /dev/vdc was written".into());
    }
    Ok(())
}

/// The kv demo: `put`, destroy, create again, `get` finds the value; `list` shows it.
pub fn kv(ctx: &Context) -> Result<(), String> {
    let (mut vm, _images) = boot(ctx)?;
    let out = xl::run(&mut vm, "xl create /etc/xen/kv.cfg")?;
    created_id(&out, "kv")?;
    vm.send("xl console kv\r")?;
    vm.wait_for("Ctrl-] detaches", T)?;
    vm.wait_for_line("kv: ready:", JOB)?;
    vm.send("put colour dark blue\r")?;
    vm.wait_for_line("kv: ok", JOB)?;
    vm.send("put answer 42\r")?;
    vm.wait_for_line("kv: ok", JOB)?;
    vm.send("\x1d")?;
    vm.wait_for(PROMPT, T)?;
    xl::run(&mut vm, "xl destroy kv")?;
    gone(&mut vm, "kv")?;
    let out = xl::run(&mut vm, "xl create /etc/xen/kv.cfg")?;
    created_id(&out, "kv")?;
    vm.send("xl console kv\r")?;
    vm.wait_for("Ctrl-] detaches", T)?;
    vm.wait_for_line("kv: ready:", JOB)?;
    vm.send("get colour\r")?;
    vm.wait_for_line("kv: colour = dark blue", JOB)?;
    vm.send("list\r")?;
    vm.wait_for_line("kv: 2 keys", JOB)?;
    vm.send("del answer\r")?;
    vm.wait_for_line("kv: deleted answer", JOB)?;
    vm.send("get answer\r")?;
    vm.wait_for_line("kv: no such key: answer", JOB)?;
    vm.send("\x1d")?;
    vm.wait_for(PROMPT, T)?;
    xl::run(&mut vm, "xl destroy kv")?;
    vm.kill();
    Ok(())
}
