//! Issue 15, "dom0 drives a real disk": dom0 finds QEMU's virtio-blk PCI disks, drives them
//! with interrupts, and offers them (and their MBR or GPT partitions) as `/dev/vd*` block
//! devices that busybox's `dd`, `hexdump`, `cmp` work on. Every scenario here is named
//! `block_dom0_*`; the images are made and read back on the host.

use std::path::PathBuf;

use crate::machine::{DEFAULT_TIMEOUT as T, DiskImage, Qemu};
use crate::runner::Context;
use crate::scenarios::xl::{PROMPT, run};

/// Bytes in a test disk.
const DISK_BYTES: u64 = 32 << 20;

/// Boots the scenarios' initrd (busybox) with `disks` attached (the first is `/dev/vda`),
/// `dom0_args` on dom0's kernel command line, and waits for the prompt.
fn boot(ctx: &Context, disks: &[&DiskImage], dom0_args: &str) -> Result<Qemu, String> {
    use crate::workspace::{DOM0_ARTIFACT, TEST_INITRD_ARTIFACT};
    let ws = ctx.workspace();
    let mut machine = ctx
        .machine()
        .memory_mib(512)
        .hv_options(crate::iso::DEFAULT_HV_OPTIONS)
        .module(ws.require_artifact(DOM0_ARTIFACT)?, dom0_args)
        .module(ws.require_artifact(TEST_INITRD_ARTIFACT)?, "");
    for d in disks {
        machine = machine.disk(d.path());
    }
    let mut vm = machine.boot()?;
    vm.wait_for(PROMPT, T)?;
    Ok(vm)
}

/// A fresh image called `name` in the scenario's directory.
fn image(ctx: &Context, name: &str, bytes: u64) -> Result<DiskImage, String> {
    let dir: PathBuf = ctx.workspace().scenario_dir(ctx.name());
    DiskImage::create(dir.join(format!("{name}.img")), bytes)
}

/// The pattern block `i` of a test carries: 512 bytes naming it, so that a misplaced
/// sector shows where it came from.
fn pattern(tag: &str, i: u64) -> Vec<u8> {
    let mut block = format!("{tag}:{i:08}:").into_bytes();
    while block.len() < 512 {
        block.push(b'a' + (block.len() % 26) as u8);
    }
    block.truncate(512);
    block
}

/// dom0 enumerates PCI and finds the disk: Linux's lines for the function and its BARs,
/// `virtio_blk virtio0: [vda] ... 512-byte logical blocks (33.6 MB/32.0 MiB)`, its interrupt
/// as an event channel, and no partitions (` vda:`) on a blank image; `/proc/bus/pci/devices`
/// lists it and `/proc/interrupts` its interrupt.
///
/// With `dma=exchange` dom0 makes its DMA pool with `XENMEM_exchange` (its frames are
/// contiguous already otherwise), and the disk still reads and writes.
pub fn probe(ctx: &Context) -> Result<(), String> {
    let disk = image(ctx, "blank", DISK_BYTES)?;
    let mut vm = boot(ctx, &[&disk], "dma=exchange")?;
    let out = sh(
        &mut vm,
        "echo xenia | dd of=/dev/vda bs=512 seek=3 conv=sync 2>/dev/null; \
         dd if=/dev/vda bs=512 skip=3 count=1 2>/dev/null | head -c 5; echo",
    )?;
    let proc = sh(&mut vm, "cat /proc/bus/pci/devices /proc/interrupts")?;
    if !proc.contains("\t1af41001\t") || !proc.contains("-ioapic-level  virtio0") {
        return Err(format!(
            "/proc/bus/pci/devices and /proc/interrupts: {proc:?}"
        ));
    }
    let log = vm.serial_log();
    vm.kill();
    let mut missing = Vec::new();
    for want in [
        "PCI: Using configuration type 1 for base access",
        "[1af4:1001] type 00 class 0x010000",
        "64bit pref]",
        "(made contiguous by XENMEM_exchange)",
        "virtio_blk virtio0: GSI ",
        "virtio_blk virtio0: [vda] 65536 512-byte logical blocks (33.6 MB/32.0 MiB)",
        " vda:",
    ] {
        if !log.contains(want) {
            missing.push(want);
        }
    }
    if !out.lines().any(|l| l == "xenia") {
        return Err(format!(
            "write and read back through the exchanged pool: {out:?}"
        ));
    }
    if missing.is_empty() {
        Ok(())
    } else {
        Err(format!("missing from the boot log: {missing:?}"))
    }
}

/// Runs `command` in busybox's shell at dom0's built-in prompt and returns its output.
fn sh(vm: &mut Qemu, command: &str) -> Result<String, String> {
    run(vm, &format!("sh -c '{command}'"))
}

/// Powers dom0 off and waits for QEMU to end cleanly, so that the images can be read.
fn power_off(vm: &mut Qemu) -> Result<(), String> {
    vm.send("poweroff\r")?;
    vm.expect_exit(crate::machine::EXIT_POWEROFF, T)
}

/// Where the write scenario puts pattern block `i` on `/dev/vdb`, in sectors.
fn pattern_sector(i: u64) -> u64 {
    i * 1000 + 7
}

/// dom0 writes with `dd` to `/dev/vdb` (the second disk): four 512-byte pattern blocks at
/// known sectors, a 64 KiB run of them past the 16 MiB mark (one request per 64 KiB), and 5
/// bytes at an odd byte offset (read-modify-write of one sector); `sync`; powers off. On the
/// host, the image has every byte where it was written, the bytes around the odd write are
/// still the ones the host put there, and `/dev/vda` (the first disk) is untouched.
pub fn write_pattern(ctx: &Context) -> Result<(), String> {
    let vda = image(ctx, "vda", DISK_BYTES)?;
    let vdb = image(ctx, "vdb", DISK_BYTES)?;
    // Around the odd write: a sector of 0xee the write must keep (but for its 5 bytes).
    let odd = 20 * 1024 * 1024 + 3;
    vdb.write_at(odd - 3, &[0xee; 512])?;
    let mut vm = boot(ctx, &[&vda, &vdb], "")?;
    for i in 0..4 {
        let block = String::from_utf8(pattern("vdb", i)).unwrap_or_default();
        let out = sh(
            &mut vm,
            &format!(
                "printf %s {block} | dd of=/dev/vdb bs=512 seek={} conv=notrunc 2>&1",
                pattern_sector(i)
            ),
        )?;
        if !out.contains("1+0 records out") {
            return Err(format!("dd of block {i}: {out:?}"));
        }
    }
    // 128 pattern blocks from a file, in one 64 KiB write.
    let out = sh(
        &mut vm,
        "for i in $(seq 0 127); do printf \"run:%08d:%0499d\" $i 0; done > /tmp/run && \
         dd if=/tmp/run of=/dev/vdb bs=65536 seek=256 conv=notrunc 2>&1",
    )?;
    if !out.contains("1+0 records out") {
        return Err(format!("dd of the 64 KiB run: {out:?}"));
    }
    let out = sh(
        &mut vm,
        &format!(
            "printf HELLO | dd of=/dev/vdb bs=1 seek={odd} conv=notrunc 2>&1; sync; echo synced"
        ),
    )?;
    if !out.contains("5+0 records out") || !out.contains("synced") {
        return Err(format!("the odd write: {out:?}"));
    }
    power_off(&mut vm)?;
    drop(vm);
    let mut wrong = Vec::new();
    for i in 0..4 {
        let got = vdb.read_at(pattern_sector(i) * 512, 512)?;
        if got != pattern("vdb", i) {
            wrong.push(format!(
                "sector {}: {:?}",
                pattern_sector(i),
                String::from_utf8_lossy(&got[..40])
            ));
        }
    }
    let run = vdb.read_at(16 << 20, 65536)?;
    for (i, block) in run.chunks(512).enumerate() {
        let want = format!("run:{i:08}:{:0499}", 0);
        if block != want.as_bytes() {
            wrong.push(format!(
                "run block {i}: {:?}",
                String::from_utf8_lossy(&block[..30])
            ));
            break;
        }
    }
    let around = vdb.read_at(odd - 3, 512)?;
    let mut want = vec![0xee; 512];
    want[3..8].copy_from_slice(b"HELLO");
    if around != want {
        wrong.push(format!("around the odd write: {:?}", &around[..16]));
    }
    if vda.read_at(0, 1 << 20)?.iter().any(|&b| b != 0) {
        wrong.push("vda was written".into());
    }
    if wrong.is_empty() {
        Ok(())
    } else {
        Err(format!("the image on the host: {}", wrong.join("; ")))
    }
}

/// Writes an MBR partition entry `i` (type, first sector, sectors) into `sector` of `disk`.
fn mbr_entry(
    disk: &DiskImage,
    sector: u64,
    i: u64,
    kind: u8,
    start: u32,
    count: u32,
) -> Result<(), String> {
    let mut e = [0u8; 16];
    e[4] = kind;
    e[8..12].copy_from_slice(&start.to_le_bytes());
    e[12..16].copy_from_slice(&count.to_le_bytes());
    disk.write_at(sector * 512 + 446 + 16 * i, &e)?;
    disk.write_at(sector * 512 + 510, &[0x55, 0xaa])
}

/// CRC-32 as GPT uses it (IEEE, reflected).
fn crc32(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xedb8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// Writes a GPT (protective MBR, primary header at sector 1, 128 entries at sector 2) with
/// partitions `(slot, first, last)`.
fn gpt(disk: &DiskImage, parts: &[(usize, u64, u64)]) -> Result<(), String> {
    let sectors = disk.size()? / 512;
    mbr_entry(
        disk,
        0,
        0,
        0xee,
        1,
        (sectors - 1).min(u64::from(u32::MAX)) as u32,
    )?;
    let mut array = vec![0u8; 128 * 128];
    for &(slot, first, last) in parts {
        let e = &mut array[slot * 128..(slot + 1) * 128];
        // Linux filesystem data: 0FC63DAF-8483-4772-8E79-3D69D8477DE4.
        e[..16].copy_from_slice(&[
            0xaf, 0x3d, 0xc6, 0x0f, 0x83, 0x84, 0x72, 0x47, 0x8e, 0x79, 0x3d, 0x69, 0xd8, 0x47,
            0x7d, 0xe4,
        ]);
        e[16..32].copy_from_slice(&[slot as u8 + 1; 16]);
        e[32..40].copy_from_slice(&first.to_le_bytes());
        e[40..48].copy_from_slice(&last.to_le_bytes());
    }
    let mut h = [0u8; 92];
    h[..8].copy_from_slice(b"EFI PART");
    h[8..12].copy_from_slice(&0x0001_0000u32.to_le_bytes());
    h[12..16].copy_from_slice(&92u32.to_le_bytes());
    h[24..32].copy_from_slice(&1u64.to_le_bytes());
    h[32..40].copy_from_slice(&(sectors - 1).to_le_bytes());
    h[40..48].copy_from_slice(&34u64.to_le_bytes());
    h[48..56].copy_from_slice(&(sectors - 34).to_le_bytes());
    h[72..80].copy_from_slice(&2u64.to_le_bytes());
    h[80..84].copy_from_slice(&128u32.to_le_bytes());
    h[84..88].copy_from_slice(&128u32.to_le_bytes());
    h[88..92].copy_from_slice(&crc32(&array).to_le_bytes());
    let crc = crc32(&h);
    h[16..20].copy_from_slice(&crc.to_le_bytes());
    disk.write_at(512, &h)?;
    disk.write_at(1024, &array)
}

/// Host-made images: `/dev/vda` with an MBR (a primary partition, an extended one with two
/// logical partitions), `/dev/vdb` with a GPT (slots 1 and 3), pattern blocks at the start
/// and end of each partition. dom0 logs ` vda: vda1 vda2 vda5 vda6` and ` vdb: vdb1 vdb3`,
/// `/proc/partitions` gives every size in KiB, `blockdev --getsize64` the bytes (the
/// `BLKGETSIZE64` ioctl), and `dd` of a partition's first and last sectors gives the host's
/// bytes (`cmp` against a copy read through the whole disk agrees). dom0 runs with
/// `dma=bounce`: every request header and status byte (outside the DMA pool) is bounced
/// through pool pages, and the statuses still come back.
pub fn read_tables(ctx: &Context) -> Result<(), String> {
    let vda = image(ctx, "mbr", DISK_BYTES)?;
    mbr_entry(&vda, 0, 0, 0x83, 2048, 8192)?;
    mbr_entry(&vda, 0, 1, 0x05, 16384, 40000)?;
    mbr_entry(&vda, 16384, 0, 0x83, 2048, 4096)?;
    mbr_entry(&vda, 16384, 1, 0x05, 10000, 20000)?;
    mbr_entry(&vda, 26384, 0, 0x83, 2048, 10000)?;
    let vdb = image(ctx, "gpt", DISK_BYTES)?;
    gpt(&vdb, &[(0, 2048, 10239), (2, 20480, 40959)])?;
    // (disk, partition, first sector, sectors)
    let parts: &[(&DiskImage, &str, u64, u64)] = &[
        (&vda, "vda1", 2048, 8192),
        (&vda, "vda5", 18432, 4096),
        (&vda, "vda6", 28432, 10000),
        (&vdb, "vdb1", 2048, 8192),
        (&vdb, "vdb3", 20480, 20480),
    ];
    for (disk, name, first, count) in parts {
        disk.write_at(first * 512, &pattern(name, 0))?;
        disk.write_at((first + count - 1) * 512, &pattern(name, count - 1))?;
    }
    let mut vm = boot(ctx, &[&vda, &vdb], "dma=bounce")?;
    let log = vm.serial_log();
    let mut wrong = Vec::new();
    if !log.contains("dma: bouncing a 16-byte buffer") {
        wrong.push(String::from(
            "dma=bounce did not bounce the request headers",
        ));
    }
    for want in [" vda: vda1 vda2 vda5 vda6", " vdb: vdb1 vdb3"] {
        if !log.lines().any(|l| l.trim_end() == want) {
            wrong.push(format!("no boot line {want:?}"));
        }
    }
    let table = sh(&mut vm, "cat /proc/partitions")?;
    for want in [
        " 253        0      32768 vda",
        " 253        1       4096 vda1",
        " 253        2          1 vda2",
        " 253        5       2048 vda5",
        " 253        6       5000 vda6",
        " 253       16      32768 vdb",
        " 253       17       4096 vdb1",
        " 253       19      10240 vdb3",
    ] {
        if !table.lines().any(|l| l.trim_end() == want) {
            wrong.push(format!("no /proc/partitions line {want:?}"));
        }
    }
    for (_, name, _, count) in parts {
        let size = sh(&mut vm, &format!("blockdev --getsize64 /dev/{name}"))?;
        if !size.lines().any(|l| l.trim() == (count * 512).to_string()) {
            wrong.push(format!("blockdev --getsize64 /dev/{name}: {size:?}"));
        }
        for sector in [0, count - 1] {
            let out = sh(
                &mut vm,
                &format!(
                    "dd if=/dev/{name} bs=512 skip={sector} count=1 2>/dev/null | head -c 20; echo"
                ),
            )?;
            let want = String::from_utf8_lossy(&pattern(name, sector)[..20]).into_owned();
            if !out.contains(&want) {
                wrong.push(format!("sector {sector} of {name}: {out:?}, want {want:?}"));
            }
        }
    }
    // The same bytes through the disk and through the partition.
    let out = sh(
        &mut vm,
        "dd if=/dev/vdb bs=512 skip=20480 count=2048 of=/tmp/a 2>/dev/null; \
         dd if=/dev/vdb3 bs=512 count=2048 2>/dev/null | cmp - /tmp/a && echo same; rm /tmp/a",
    )?;
    if !out.contains("same") {
        wrong.push(format!("cmp of vdb3 and its bytes through vdb: {out:?}"));
    }
    vm.kill();
    if wrong.is_empty() {
        Ok(())
    } else {
        Err(wrong.join("; "))
    }
}

/// Out-of-range access, as Linux answers it: reading at a partition's end gives nothing
/// (`0+0 records in`), a read across it stops there (`0+1`), a write at its end fails with
/// `No space left on device`, a write across it is cut short (its part inside lands, as the
/// host sees); the sector after the partition
/// (the next one's first) is unchanged on the host, and a partition that does not exist is
/// no device. dom0 keeps working throughout.
pub fn out_of_range(ctx: &Context) -> Result<(), String> {
    let vda = image(ctx, "edge", DISK_BYTES)?;
    mbr_entry(&vda, 0, 0, 0x83, 2048, 100)?;
    mbr_entry(&vda, 0, 1, 0x83, 2148, 100)?;
    vda.write_at(2148 * 512, &pattern("next", 0))?;
    vda.write_at(2144 * 512, &[0xaa; 2048])?;
    let mut vm = boot(ctx, &[&vda], "")?;
    let mut wrong = Vec::new();
    let cases: &[(&str, &str)] = &[
        (
            "dd if=/dev/vda1 bs=512 skip=100 count=1 2>&1",
            "0+0 records in",
        ),
        (
            "dd if=/dev/vda1 bs=1024 skip=49 count=2 2>&1",
            "1+0 records in",
        ),
        (
            "dd if=/dev/vda1 bs=4096 skip=12 count=1 2>&1",
            "0+1 records in",
        ),
        (
            "dd if=/dev/zero of=/dev/vda1 bs=512 seek=100 count=1 2>&1",
            "No space left on device",
        ),
        // A write across the end is cut short (2048 bytes written, as the host sees) and
        // busybox's `full_write` then meets ENOSPC.
        (
            "dd if=/dev/zero of=/dev/vda1 bs=4096 seek=12 count=1 conv=notrunc 2>&1",
            "No space left on device",
        ),
        (
            "dd if=/dev/vda bs=512 skip=65536 count=1 2>&1",
            "0+0 records in",
        ),
        (
            "dd if=/dev/vda3 bs=512 count=1 2>&1",
            "No such file or directory",
        ),
    ];
    for (command, want) in cases {
        let out = sh(&mut vm, command)?;
        if !out.contains(want) {
            wrong.push(format!("`{command}`: {out:?}, want {want:?}"));
        }
    }
    let out = sh(
        &mut vm,
        "sync; dd if=/dev/vda2 bs=512 count=1 2>/dev/null | head -c 20; echo",
    )?;
    let want = String::from_utf8_lossy(&pattern("next", 0)[..20]).into_owned();
    if !out.contains(&want) {
        wrong.push(format!("vda2 after the writes at vda1's end: {out:?}"));
    }
    power_off(&mut vm)?;
    drop(vm);
    if vda.read_at(2148 * 512, 512)? != pattern("next", 0) {
        wrong.push("the sector after vda1 changed on the host".into());
    }
    if vda.read_at(2144 * 512, 2048)?.iter().any(|&b| b != 0) {
        wrong.push("vda1's last sectors are not the zeros written".into());
    }
    if wrong.is_empty() {
        Ok(())
    } else {
        Err(wrong.join("; "))
    }
}

/// The milliseconds in the built-in shell's `time: <ms>.<us> ms` line of `out`.
fn millis(out: &str) -> Result<f64, String> {
    out.lines()
        .find_map(|l| l.trim().strip_prefix("time: "))
        .and_then(|t| t.strip_suffix(" ms"))
        .and_then(|t| t.trim().parse().ok())
        .ok_or_else(|| format!("no `time:` line in {out:?}"))
}

/// The interrupts `/proc/interrupts` counts for virtio1 (`/dev/vdb`).
fn interrupts(vm: &mut Qemu) -> Result<u64, String> {
    let out = sh(vm, "cat /proc/interrupts")?;
    Ok(out
        .lines()
        .find(|l| l.ends_with("virtio1"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|n| n.parse().ok())
        .unwrap_or(0))
}

/// Sequential throughput of dom0 on its disk, interrupt-driven and polling (dom0's
/// `virtio_blk=poll`), in one run: `dd` of 16 MiB in 1 MiB blocks to `/dev/vdb` (with
/// `conv=fsync`: the cache flushed at the end), and back, each timed by the built-in shell's `time` (dom0's system time: QEMU's virtual clock,
/// which without `-icount` follows the host's wall clock). Reported as notes; the checks: every
/// transfer completes with the right count, the interrupt-driven run takes interrupts (at
/// least one per 64 KiB request), the polling run none, and the data written is read back
/// (`md5sum` of the device's first 16 MiB equals that of what was written).
pub fn throughput(ctx: &Context) -> Result<(), String> {
    const MIB: u64 = 16;
    let mut notes = Vec::new();
    for mode in ["irq", "poll"] {
        let vda = image(ctx, &format!("{mode}-a"), 1 << 20)?;
        let vdb = image(ctx, &format!("{mode}-b"), DISK_BYTES)?;
        let args = if mode == "poll" {
            "virtio_blk=poll"
        } else {
            ""
        };
        let mut vm = boot(ctx, &[&vda, &vdb], args)?;
        let before = interrupts(&mut vm)?;
        let write = run(
            &mut vm,
            &format!("time dd if=/dev/zero of=/dev/vdb bs=1M count={MIB} conv=fsync"),
        )?;
        let write_ms = millis(&write)?;
        if !write.contains(&format!("{MIB}+0 records out")) {
            return Err(format!("{mode}: the write: {write:?}"));
        }
        let read = run(
            &mut vm,
            &format!("time dd if=/dev/vdb of=/dev/null bs=1M count={MIB}"),
        )?;
        let read_ms = millis(&read)?;
        if !read.contains(&format!("{MIB}+0 records in")) {
            return Err(format!("{mode}: the read: {read:?}"));
        }
        let taken = interrupts(&mut vm)? - before;
        let requests = 2 * MIB * 16;
        match mode {
            "irq" if taken < requests => {
                return Err(format!(
                    "{mode}: {taken} interrupts for {requests} requests of 64 KiB"
                ));
            }
            "poll" if taken != 0 => return Err(format!("{mode}: {taken} interrupts")),
            _ => {}
        }
        // What was written is what is read: 1 MiB of `yes` output, written 16 times over
        // the zeros, read back whole.
        let sums = sh(
            &mut vm,
            &format!(
                "yes xenia-block | head -c 1048576 > /tmp/mib; \
                 for i in $(seq 0 {}); do dd if=/tmp/mib of=/dev/vdb bs=1M seek=$i 2>/dev/null; done; \
                 dd if=/dev/vdb bs=1M count={MIB} 2>/dev/null | md5sum; \
                 for i in $(seq 1 {MIB}); do cat /tmp/mib; done | md5sum",
                MIB - 1
            ),
        )?;
        let sums: Vec<&str> = sums.lines().filter(|l| l.ends_with("  -")).collect();
        if sums.len() != 2 || sums[0] != sums[1] {
            return Err(format!(
                "{mode}: the device does not hold what was written: {sums:?}"
            ));
        }
        power_off(&mut vm)?;
        let mb_s = |ms: f64| MIB as f64 * 1.048_576 / (ms / 1000.0);
        notes.push(format!(
            "{mode}: write {MIB} MiB + fsync {write_ms:.0} ms ({:.1} MB/s), read {read_ms:.0} ms ({:.1} MB/s), {taken} interrupts",
            mb_s(write_ms),
            mb_s(read_ms)
        ));
    }
    for n in notes {
        ctx.note(n);
    }
    Ok(())
}

/// A read-only disk (QEMU's `readonly=on`: the device offers `VIRTIO_BLK_F_RO`): dom0 says so
/// at boot (`(read-only)`), `blockdev --getro` gives 1 (`BLKROGET`), a write fails with
/// `Operation not permitted` (Linux's `EPERM`) and never reaches the device (the host's image
/// is unchanged), and reads work.
pub fn read_only(ctx: &Context) -> Result<(), String> {
    use crate::workspace::{DOM0_ARTIFACT, TEST_INITRD_ARTIFACT};
    let vda = image(ctx, "ro", DISK_BYTES)?;
    vda.write_at(100 * 512, &pattern("ro", 100))?;
    let ws = ctx.workspace();
    let mut vm = ctx
        .machine()
        .memory_mib(512)
        .hv_options(crate::iso::DEFAULT_HV_OPTIONS)
        .module(ws.require_artifact(DOM0_ARTIFACT)?, "")
        .module(ws.require_artifact(TEST_INITRD_ARTIFACT)?, "")
        .disk_read_only(vda.path())
        .boot()?;
    vm.wait_for(PROMPT, T)?;
    let mut wrong = Vec::new();
    if !vm
        .serial_log()
        .contains("[vda] 65536 512-byte logical blocks (33.6 MB/32.0 MiB) (read-only)")
    {
        wrong.push(String::from("no `(read-only)` at boot"));
    }
    let cases: &[(&str, &str)] = &[
        ("blockdev --getro /dev/vda", "1"),
        (
            "dd if=/dev/zero of=/dev/vda bs=512 seek=100 count=1 conv=notrunc 2>&1",
            "Operation not permitted",
        ),
        (
            "dd if=/dev/vda bs=512 skip=100 count=1 2>/dev/null | head -c 12; echo",
            "ro:00000100:",
        ),
    ];
    for (command, want) in cases {
        let out = sh(&mut vm, command)?;
        if !out.lines().any(|l| l.contains(want)) {
            wrong.push(format!("`{command}`: {out:?}, want {want:?}"));
        }
    }
    power_off(&mut vm)?;
    drop(vm);
    if vda.read_at(100 * 512, 512)? != pattern("ro", 100) {
        wrong.push("the read-only image changed".into());
    }
    if wrong.is_empty() {
        Ok(())
    } else {
        Err(wrong.join("; "))
    }
}
