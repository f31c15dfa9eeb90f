//! `cargo xtask bench`: the benchmarks. Times are QEMU's virtual time with a fixed
//! instruction rate (`-icount shift=0,sleep=off`: one nanosecond per instruction, idle time
//! skipped), so they measure path lengths, not the build host's load. (`shift=auto` would
//! let the host's speed, and the harness reading the serial line, leak into the figures.)
//!
//! **Creation** (`create`): boots the default image and, at the `dom0# ` prompt, runs
//! `time xl create /etc/xen/hello.cfg name="bench" memory=8` and `xl destroy bench` in
//! sequence, N times (1000 by default). Each `time` line is the whole command as an operator
//! sees it: loading `xl`, parsing the configuration, building the domain and handing it to
//! dom0's kernel. Reported: the 1st, the last, the median and the slowest, and the ratio
//! last/first, whose goal is at most 1.2 (DESIGN.md §7: no directory daemon on the creation
//! path, so the thousandth domain costs what the first did).
//!
//! **Creation with a disk** (`create-disk`, issue 15): the same with
//! `disk=['format=raw, vdev=xvda, access=rw, target=/dev/vdb']` on a machine with two small
//! images, so each creation also writes the backend and frontend directories and blkback
//! opens, announces and (at destroy) releases the device. Same figures and goal.
//!
//! **Creation with a vif** (`create-vif`, issue 16): the same with `vif=['bridge=xenbr0']`,
//! so each creation also writes the vif's backend and frontend directories and its MAC's
//! index entry (the MAC made from the name, the same each time), and netback, where there
//! is one, announces and (at destroy) releases the interface. Same figures and goal.
//!
//! **Block throughput** (`block`, issue 15; [`xenia_tests::blockbench`]): dom0's `time dd`
//! on `/dev/vdb` (write with `conv=fsync`, then read) against testguest `block_bench`
//! (write, flush, read) through blkfront/blkback on the same device and the same bytes
//! (372 requests of 44 KiB, about 16 MiB, on a host image allocated beforehand); goal: the
//! domU at least 0.8 of dom0. Two boots of [`BLOCK_ROUNDS`] rounds each:
//! - **busy virtual time** ([`block_busy`], [`blockbench::busy_round`]): under
//!   `-icount shift=0,sleep=on`, dom0 interrupt-driven, the machine's busy time (elapsed less
//!   the pCPU's idle time, `probe cpuidle`) per MiB, each side's long run less its run of one
//!   request; ratio dom0/domU; each run the median of the rounds. Instructions, so the
//!   host's load moves the ratio by about ±0.05 only (longer waits halt more often).
//! - **wall time**: interrupt-driven, QEMU's clock following the host's: the whole path,
//!   host disk and host load included (noisy on a shared build host); each figure the best
//!   of the rounds.
//!
//! **Network throughput** (`net`, issue 16; [`xenia_tests::netbench`]): one boot with a
//! virtio-net card on QEMU's user network; the host pushes [`NET_BYTES`] into dom0's discard
//! service (10.0.2.15:9, dom0's own address on `xenbr0`) and into a web domU's (10.0.2.20:9,
//! behind netback and the bridge), and pulls as many from their chargen services (port 19),
//! through QEMU's port forwards, alternating dom0 and the domU, [`NET_ROUNDS`] rounds, each
//! figure the best of its rounds; goal: the domU at least [`NET_GOAL`] of dom0 each way. Wall
//! time: the host's TCP and QEMU's user network are on the path, which `-icount` does not
//! count. Beside it, QEMU's CPU time per MiB of each transfer ([`cpu_ns`], the median of the
//! rounds), which the host's other load hardly moves, and its ratios. Then a second web domU pushes [`NET_BYTES`] into the first's discard service across
//! the bridge (`push=`, timed by the pushing domU's clock) and pings it: the median round trip.
//! Then a second boot under `-icount shift=0,sleep=off` ([`net_icount`]): the same four
//! transfers, the machine's busy virtual time per MiB of each ([`xenia_tests::netbench::busy_round`]:
//! instructions, the host's speed out of it), the measure `net_bench_icount_goal` judges.
//!
//! **SMP** (issue 12), each its own boot:
//! - `churn`: dom0test `churn cycles=N` (1000 by default) on `-smp 4`: N create/destroy
//!   cycles of 4-vCPU domUs, every vCPU up and running before each destroy. Reported: the
//!   free-frame counts before and after, which must be equal once the frames the
//!   hypervisor's heap grew into are added (a result line, not a time).
//! - `compute`: the `compute` demo with `vcpus=1`, then `vcpus=2`, in one boot of the
//!   default image on `-smp 2`, without `-icount` (`-icount` runs every pCPU on one emulator
//!   thread, so there would be nothing to gain): the speed-up is the ratio of the two times
//!   the demo reports (its own clock, which follows the host's under TCG), goal at least
//!   [`SPEEDUP_GOAL`]. A wall-time ratio, so the host's load moves it.
//! - `ipi`: dom0test `smp` on `-smp 4` under `-icount shift=0`: testguest's token ring
//!   across four vCPUs on four pCPUs; each hop is an `EVTCHNOP_send` to a vCPU blocked on
//!   another pCPU, so the nanoseconds per hop (virtual: one instruction each) are the
//!   event-channel wake-up latency of a blocked vCPU on another pCPU, and two hops an IPI
//!   round trip between two vCPUs on different pCPUs.
//!
//! **Native** (issue 13, the `native` column): `bench-native.elf`
//! (`tests/guests/bench-native`) booted by GRUB as the multiboot2 kernel itself, no
//! hypervisor, under `-icount shift=0,sleep=off` on `-cpu max`, 1 GiB: it prints
//! `bench <row> <instructions per operation>` lines and `bench done`, then powers off.

use std::time::{Duration, Instant};

use xenia_tests::Workspace;
use xenia_tests::blockbench::{self, Round};
use xenia_tests::contract;
use xenia_tests::iso::{DEFAULT_HV_OPTIONS, DEFAULT_MODULES};
use xenia_tests::machine::{DiskImage, EXIT_POWEROFF, Machine, Qemu};
use xenia_tests::netbench::profile_mark;

const PROMPT: &str = "dom0# ";
/// Bound for one command in real time (icount slows the emulator down).
const COMMAND: Duration = Duration::from_secs(120);
/// The goal for last/first.
pub const GOAL: f64 = 1.2;

fn run(vm: &mut Qemu, line: &str) -> Result<String, String> {
    vm.send(&format!("{line}\r"))?;
    vm.wait_until(
        &format!("the prompt after `{line}`"),
        COMMAND,
        |log, cursor| {
            log[cursor..].find(PROMPT).map(|i| {
                (
                    log[cursor..cursor + i].to_string(),
                    cursor + i + PROMPT.len(),
                )
            })
        },
    )
}

/// The milliseconds of a `time: <ms> ms` line.
pub fn parse_time(out: &str) -> Option<f64> {
    out.lines().find_map(|l| {
        l.trim()
            .strip_prefix("time: ")?
            .strip_suffix(" ms")?
            .parse()
            .ok()
    })
}

/// Summary of the creation times, in ms.
#[derive(Debug, PartialEq)]
pub struct Summary {
    pub first: f64,
    pub last: f64,
    pub median: f64,
    pub max: f64,
}

pub fn summarize(times: &[f64]) -> Option<Summary> {
    let (&first, &last) = (times.first()?, times.last()?);
    let mut sorted = times.to_vec();
    sorted.sort_by(f64::total_cmp);
    Some(Summary {
        first,
        last,
        median: sorted[sorted.len() / 2],
        max: sorted[sorted.len() - 1],
    })
}

/// The disk `create-disk` gives each domain (dom0's second virtio disk, Xen's spec syntax).
pub const CREATE_DISK: &str = "format=raw, vdev=xvda, access=rw, target=/dev/vdb";

/// The vif `create-vif` gives each domain (Xen's vif spec syntax).
pub const CREATE_VIF: &str = "bridge=xenbr0";

/// What each domain of the creation benchmark is given.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CreateWith {
    /// Nothing but its console (`create`).
    Nothing,
    /// [`CREATE_DISK`] (`create-disk`).
    Disk,
    /// [`CREATE_VIF`] (`create-vif`).
    Vif,
}

impl CreateWith {
    /// The bench's name.
    pub fn bench(self) -> &'static str {
        match self {
            CreateWith::Nothing => "create",
            CreateWith::Disk => "create-disk",
            CreateWith::Vif => "create-vif",
        }
    }
}

/// Runs the creation benchmark with `n` domains, each given what `with` says (with a disk,
/// the machine has two small disk images, `/dev/vda` and `/dev/vdb`).
pub fn create(ws: &Workspace, n: u32, with: CreateWith) -> Result<Summary, String> {
    let disk = with == CreateWith::Disk;
    let name = format!("bench-{}", with.bench());
    let name = name.as_str();
    let mut machine = Machine::new(ws, name)
        .memory_mib(512)
        .hv_options(DEFAULT_HV_OPTIONS)
        .qemu_arg("-icount")
        .qemu_arg("shift=0,sleep=off");
    for m in DEFAULT_MODULES {
        machine = machine.module(ws.require_artifact(m.artifact)?, m.cmdline);
    }
    let mut images = Vec::new();
    if disk {
        let dir = ws.scenario_dir(name);
        for (file, size) in [("vda.img", 1u64 << 20), ("vdb.img", 4 << 20)] {
            images.push(DiskImage::create(dir.join(file), size)?);
        }
        for img in &images {
            machine = machine.disk(img.path());
        }
    }
    let line = match with {
        CreateWith::Disk => format!(
            "time xl create /etc/xen/hello.cfg 'name=\"bench\"' memory=8 \"disk=['{CREATE_DISK}']\""
        ),
        CreateWith::Vif => format!(
            "time xl create /etc/xen/hello.cfg 'name=\"bench\"' memory=8 \"vif=['{CREATE_VIF}']\""
        ),
        CreateWith::Nothing => {
            "time xl create /etc/xen/hello.cfg 'name=\"bench\"' memory=8".to_string()
        }
    };
    let mut vm = machine.boot()?;
    vm.wait_for(PROMPT, COMMAND)?;
    let started = Instant::now();
    let mut times = Vec::with_capacity(n as usize);
    for i in 1..=n {
        let out = run(&mut vm, &line)?;
        if !out.contains("Domain bench created") {
            return Err(format!("creation {i} failed: {out:?}"));
        }
        times.push(parse_time(&out).ok_or_else(|| format!("no time in {out:?}"))?);
        let out = run(&mut vm, "xl destroy bench")?;
        if out.contains("xl:") {
            return Err(format!("destroy {i} failed: {out:?}"));
        }
        if i % 100 == 0 || i == 1 {
            println!(
                "  {i}/{n}: this creation {:.3} ms (virtual), {:.0} s elapsed",
                times[times.len() - 1],
                started.elapsed().as_secs_f64()
            );
        }
    }
    vm.kill();
    summarize(&times).ok_or_else(|| "no creations".into())
}

/// The size of the `block` bench's `/dev/vdb`.
pub const BLOCK_DISK_BYTES: u64 = 16 << 20;
/// The `block` bench's requests: as many of [`blockbench::REQUEST`] bytes as fit in
/// [`BLOCK_DISK_BYTES`] (372, 16,760,832 bytes).
pub const BLOCK_REQUESTS: u64 = BLOCK_DISK_BYTES / blockbench::REQUEST;
/// Rounds of each `block` run (the best of each figure is kept).
pub const BLOCK_ROUNDS: u32 = 5;

/// The `block` bench in wall time: one boot, dom0 interrupt-driven, [`BLOCK_ROUNDS`] rounds
/// of dom0's `dd` then the domU on the same `/dev/vdb` ([`blockbench::round`]), the best of
/// each figure kept.
pub fn block(ws: &Workspace) -> Result<Round, String> {
    let name = "bench-block-wall";
    let dir = ws.scenario_dir(name);
    let vda = DiskImage::create(dir.join("vda.img"), 1 << 20)?;
    let vdb = blockbench::image(dir.join("vdb.img"), BLOCK_DISK_BYTES)?;
    let machine = Machine::new(ws, name)
        .memory_mib(512)
        .hv_options(DEFAULT_HV_OPTIONS);
    let machine = blockbench::machine(ws, machine, "", &[vda.path(), vdb.path()])?;
    let mut vm = machine.boot()?;
    vm.wait_for(PROMPT, Duration::from_secs(300))?;
    let mut all = Vec::new();
    for i in 1..=BLOCK_ROUNDS {
        match blockbench::round(&mut vm, &format!("bench{i}"), BLOCK_REQUESTS) {
            Ok(r) => {
                let [dw, dr, uw, ur] = r.throughputs();
                println!(
                    "  round {i}: dom0 write {dw:.1} read {dr:.1} MB/s, domU write {uw:.1} read {ur:.1} MB/s"
                );
                all.push(r);
            }
            Err(e) => {
                vm.kill();
                return Err(e);
            }
        }
    }
    vm.kill();
    blockbench::best(&all).ok_or_else(|| "no rounds".into())
}

/// The `block` bench in busy virtual time, the measure `block_bench_icount_goal` judges:
/// one boot under [`blockbench::ICOUNT`], dom0 interrupt-driven, [`BLOCK_ROUNDS`] rounds of
/// [`blockbench::busy_round`] over [`BLOCK_REQUESTS`]; each round printed, each run the
/// median of the rounds.
pub fn block_busy(ws: &Workspace) -> Result<blockbench::BusyRound, String> {
    let name = "bench-block-busy";
    let dir = ws.scenario_dir(name);
    let vda = DiskImage::create(dir.join("vda.img"), 1 << 20)?;
    let vdb = blockbench::image(dir.join("vdb.img"), BLOCK_DISK_BYTES)?;
    let machine = Machine::new(ws, name)
        .memory_mib(512)
        .hv_options(DEFAULT_HV_OPTIONS)
        .qemu_arg("-icount")
        .qemu_arg(blockbench::ICOUNT);
    let machine = blockbench::machine(ws, machine, "", &[vda.path(), vdb.path()])?;
    let mut vm = machine.boot()?;
    vm.wait_for(PROMPT, Duration::from_secs(300))?;
    let mut all = Vec::new();
    for i in 1..=BLOCK_ROUNDS {
        match blockbench::busy_round(&mut vm, &format!("bench{i}"), BLOCK_REQUESTS) {
            Ok(r) => {
                println!("  {}", r.summary(i));
                all.push(r);
            }
            Err(e) => {
                vm.kill();
                return Err(e);
            }
        }
    }
    vm.kill();
    blockbench::BusyRound::median(&all).ok_or_else(|| "no rounds".into())
}

/// The goal for the `compute` speed-up with two vCPUs on two pCPUs.
pub const SPEEDUP_GOAL: f64 = 1.7;
/// The primes the `compute` bench counts below (long enough for a stable ratio). The bench
/// also passes `cap=0`: compute.cfg caps the demo at half a CPU.
const COMPUTE_LIMIT: &str = "40M";
/// Bound for a whole dom0test run of the benches (1000 churn cycles take a while).
const DOM0TEST_RUN: Duration = Duration::from_secs(3600);

/// Boots dom0test `test` (its command line `test=<test>`) with testguest as the domUs'
/// kernel on `-smp cpus`, with `extra` QEMU arguments; waits for its verdict, requires
/// SUCCESS and a power-off; returns dom0's lines (without the `(d0) ` prefix).
fn dom0test(
    ws: &Workspace,
    name: &str,
    cpus: u32,
    test: &str,
    extra: &[&str],
) -> Result<Vec<String>, String> {
    dom0test_on(ws, name, (cpus, 512, "dom0_mem=64M"), test, extra)
}

/// [`dom0test`] on a machine of (CPUs, MiB, hypervisor options).
fn dom0test_on(
    ws: &Workspace,
    name: &str,
    (cpus, memory_mib, hv_options): (u32, u32, &str),
    test: &str,
    extra: &[&str],
) -> Result<Vec<String>, String> {
    let mut machine = Machine::new(ws, name)
        .cpus(cpus)
        .memory_mib(memory_mib)
        .hv_options(hv_options)
        .module(
            ws.require_artifact("dom0test.elf")?,
            &format!("test={test}"),
        )
        .module(ws.require_artifact("testguest.elf")?, "");
    for arg in extra {
        machine = machine.qemu_arg(arg);
    }
    let mut vm = machine.boot()?;
    let result = vm.wait_for_line_starting(&contract::guest_line("Test result: "), DOM0TEST_RUN)?;
    vm.expect_exit(EXIT_POWEROFF, COMMAND)?;
    let prefix = contract::guest_line("");
    let lines: Vec<String> = vm
        .serial_log()
        .lines()
        .filter_map(|l| l.strip_prefix(&prefix).map(str::to_string))
        .collect();
    if result != contract::guest_line("Test result: SUCCESS") {
        let failed: Vec<&String> = lines.iter().filter(|l| l.contains("FAILED")).collect();
        return Err(format!("dom0test {test}: {result}; {failed:?}"));
    }
    Ok(lines)
}

/// What the churn bench found.
#[derive(Debug, PartialEq)]
pub struct Churn {
    /// dom0test's summary line (cycles, time per cycle).
    pub summary: String,
    /// Free frames before the first cycle and after the last.
    pub before: u64,
    pub after: u64,
    /// Frames the hypervisor's heap grew into in between (kept for the next domains).
    pub heap_grown: u64,
}

/// The counts of a `churn free frames before: <N> after: <M>[ (+<G> the heap grew
/// into)...]` line: before, after, and what the heap grew into (0 when not given).
pub fn parse_churn_frames(line: &str) -> Option<(u64, u64, u64)> {
    let rest = line.strip_prefix("churn free frames before: ")?;
    let (before, rest) = rest.split_once(" after: ")?;
    let (after, grown) = match rest.split_once(" (+") {
        Some((after, tail)) => (after, tail.split_once(' ')?.0.parse().ok()?),
        None => (rest, 0),
    };
    Some((
        before.trim().parse().ok()?,
        after.trim().parse().ok()?,
        grown,
    ))
}

/// Runs `cycles` create/destroy cycles of 4-vCPU domUs on `-smp 4`.
pub fn churn(ws: &Workspace, cycles: u32) -> Result<Churn, String> {
    let lines = dom0test(ws, "bench-churn", 4, &format!("churn cycles={cycles}"), &[])?;
    let summary = lines
        .iter()
        .find(|l| l.starts_with("churn: ") && l.contains(" cycles of "))
        .cloned()
        .ok_or("no churn summary line")?;
    let (before, after, heap_grown) = lines
        .iter()
        .find_map(|l| parse_churn_frames(l))
        .ok_or("no churn free-frames line")?;
    Ok(Churn {
        summary,
        before,
        after,
        heap_grown,
    })
}

/// The machine of the `density` bench (issue 13: "in 1 GiB of RAM").
pub const DENSITY_MEMORY_MIB: u32 = 1024;
/// dom0's share of it: dom0test and the builder need little.
const DENSITY_DOM0_MEM: &str = "dom0_mem=32M";

/// What the density bench found (dom0test `density`'s lines).
#[derive(Debug, PartialEq)]
pub struct Density {
    /// Minimal domUs running (booted and blocked) at once.
    pub domains: u64,
    /// The memory of each, the least that boots.
    pub smallest_kib: u64,
    /// Hypervisor memory per domain beyond its own pages.
    pub hv_kib: f64,
}

/// The figures of dom0test density's `density: ...` lines.
pub fn parse_density<S: AsRef<str>>(lines: &[S]) -> Option<Density> {
    let mut domains = None;
    let mut smallest_kib = None;
    let mut hv_kib = None;
    for l in lines {
        let Some(rest) = l.as_ref().trim().strip_prefix("density: ") else {
            continue;
        };
        if let Some(r) = rest.strip_prefix("smallest domain ") {
            smallest_kib = r.split_once(" KiB").and_then(|(k, _)| k.parse().ok());
        } else if let Some(r) = rest.strip_prefix("hypervisor memory per domain: ") {
            hv_kib = r.split_once(" KiB").and_then(|(k, _)| k.parse().ok());
        } else if rest.contains(" running at once with ") {
            domains = rest
                .split_once(" domUs of ")
                .and_then(|(n, _)| n.parse().ok());
        }
    }
    Some(Density {
        domains: domains?,
        smallest_kib: smallest_kib?,
        hv_kib: hv_kib?,
    })
}

/// Runs dom0test `density` on a [`DENSITY_MEMORY_MIB`] machine (not under `-icount`: it
/// counts domains and bytes, not time).
pub fn density(ws: &Workspace) -> Result<Density, String> {
    let lines = dom0test_on(
        ws,
        "bench-density",
        (1, DENSITY_MEMORY_MIB, DENSITY_DOM0_MEM),
        "density",
        &[],
    )?;
    parse_density(&lines).ok_or_else(|| "no density figures in dom0test's output".into())
}

/// The milliseconds of compute's `compute: done in <ms> ms...` line.
pub fn parse_compute_ms(out: &str) -> Option<u64> {
    out.lines().find_map(|l| {
        l.trim()
            .strip_prefix("compute: done in ")?
            .split_once(" ms")?
            .0
            .parse()
            .ok()
    })
}

/// `compute` with one vCPU and with two on `-smp 2`, in one boot: (ms with 1, ms with 2).
pub fn compute_speedup(ws: &Workspace) -> Result<(u64, u64), String> {
    let mut machine = Machine::new(ws, "bench-compute")
        .cpus(2)
        .memory_mib(512)
        .hv_options(DEFAULT_HV_OPTIONS);
    for m in DEFAULT_MODULES {
        machine = machine.module(ws.require_artifact(m.artifact)?, m.cmdline);
    }
    let mut vm = machine.boot()?;
    vm.wait_for(PROMPT, COMMAND)?;
    let mut times = [0u64; 2];
    for (vcpus, time) in [1, 2].into_iter().zip(&mut times) {
        let out = run(
            &mut vm,
            &format!(
                "xl create -c /etc/xen/compute.cfg vcpus={vcpus} cap=0 'cmdline=\"limit={COMPUTE_LIMIT}\"'"
            ),
        )?;
        if vcpus > 1 && !out.contains(&format!("on {vcpus} vCPUs")) {
            return Err(format!(
                "compute with vcpus={vcpus} did not run on {vcpus} vCPUs: {out:?}"
            ));
        }
        *time = parse_compute_ms(&out)
            .ok_or_else(|| format!("compute vcpus={vcpus}: no `done in` line in {out:?}"))?;
        println!("  compute with vcpus={vcpus}: done in {time} ms");
    }
    vm.kill();
    Ok((times[0], times[1]))
}

/// The `(hops, ns per hop)` of testguest's `ring: <H> hops in <ms> ms (<ns> ns per hop)`.
pub fn parse_ring(line: &str) -> Option<(u64, u64)> {
    let rest = &line[line.find("ring: ")? + "ring: ".len()..];
    let (hops, rest) = rest.split_once(" hops in ")?;
    let (_, rest) = rest.split_once(" (")?;
    let ns = rest.strip_suffix(" ns per hop)")?;
    Some((hops.parse().ok()?, ns.parse().ok()?))
}

/// The IPI ring of a 4-vCPU domU on `-smp 4` in virtual time: `(hops, ns per hop)`.
pub fn ipi(ws: &Workspace) -> Result<(u64, u64), String> {
    let lines = dom0test(ws, "bench-ipi", 4, "smp", &["-icount", "shift=0,sleep=off"])?;
    lines
        .iter()
        .find_map(|l| parse_ring(l))
        .ok_or_else(|| "no `ring:` figure from the smp domU".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pushed_and_ping_lines() {
        assert_eq!(
            parse_pushed("(d2) web: pushed 8388608 bytes to 10.0.2.20 in 812345 us (10 MB/s)"),
            Some((8_388_608, 812_345))
        );
        assert_eq!(
            parse_pushed("(d2) web: push to 10.0.2.20 failed after 5 us"),
            None
        );
        assert_eq!(
            parse_ping_us(
                "(d3) web: ping reply from 10.0.2.20 seq 4 in 1580 us (foreign frames: 0)"
            ),
            Some(1580)
        );
    }

    #[test]
    fn density_figures_parse() {
        let lines = [
            "note: 1 pCPU(s)",
            "density: smallest domain 792 KiB (198 pages)",
            "density: 100 domUs built",
            "density: 1130 domUs of 792 KiB running at once with 1024 MiB",
            "density: hypervisor memory per domain: 9.0 KiB (4096 bytes of frames and 5175 \
             bytes of heap each) beyond its own 198 pages (1 frames taken for 2 domUs, 0 of \
             them by the heap's growth)",
        ];
        assert_eq!(
            parse_density(&lines),
            Some(Density {
                domains: 1130,
                smallest_kib: 792,
                hv_kib: 9.0
            })
        );
        assert_eq!(parse_density(&lines[..3]), None, "a figure missing");
        assert_eq!(parse_density::<&str>(&[]), None);
    }

    #[test]
    fn smp_figures_parse() {
        assert_eq!(
            parse_churn_frames("churn free frames before: 100 after: 99"),
            Some((100, 99, 0))
        );
        assert_eq!(
            parse_churn_frames(
                "churn free frames before: 100 after: 94 (+6 the heap grew into); heap in use \
                 1 -> 2 bytes"
            ),
            Some((100, 94, 6))
        );
        assert_eq!(
            parse_churn_frames("churn free frames before: 100 after: 94 (+x the heap"),
            None
        );
        assert_eq!(
            parse_churn_frames("churn free frames before: x after: 1"),
            None
        );
        assert_eq!(
            parse_compute_ms("x\ncompute: done in 412 ms on 2 vCPUs; powering off\n"),
            Some(412)
        );
        assert_eq!(
            parse_compute_ms("compute: done in 7 ms; powering off"),
            Some(7)
        );
        assert_eq!(parse_compute_ms("compute: done soon"), None);
        assert_eq!(
            parse_ring("smp figure d1: note: ring: 40000 hops in 12 ms (300 ns per hop)"),
            Some((40000, 300))
        );
        assert_eq!(parse_ring("ring: many hops"), None);
    }

    #[test]
    fn times_parse_and_summarize() {
        assert_eq!(parse_time("x\ntime: 12.500000 ms\n"), Some(12.5));
        assert_eq!(parse_time("time: soon"), None);
        let s = summarize(&[10.0, 30.0, 20.0, 11.0]).unwrap();
        assert_eq!(
            s,
            Summary {
                first: 10.0,
                last: 11.0,
                median: 20.0,
                max: 30.0
            }
        );
        assert!(summarize(&[]).is_none());
    }
}

/// Bytes of each transfer of the `net` bench.
pub const NET_BYTES: usize = 8 << 20;
/// Rounds of the `net` bench (the best of each figure is kept: the host's load only ever
/// slows a round down).
pub const NET_ROUNDS: u32 = 3;
/// The `net` bench's throughput goal: the domU at least this fraction of dom0's.
pub const NET_GOAL: f64 = xenia_tests::netbench::GOAL;
/// The first domU's address on QEMU's user network (its DHCP starts there).
const NET_DOMU_IP: &str = "10.0.2.20";
/// dom0's address on `xenbr0`.
const NET_DOM0_IP: &str = "10.0.2.15";
/// Bound for one transfer.
const NET_TRANSFER: Duration = Duration::from_secs(300);
/// Bound for a domU's address.
const NET_UP: Duration = Duration::from_secs(300);

/// The `net` bench's figures: MB/s (wall time, best of [`NET_ROUNDS`]) of the host's writes
/// to (`push`) and reads from (`pull`) dom0's and the web domU's discard and chargen
/// services, and the median round trip of a domU's ping of another domU across the bridge.
#[derive(Debug, Default)]
pub struct Net {
    /// Host to dom0, dom0 to host.
    pub dom0_push: f64,
    pub dom0_pull: f64,
    /// Host to the domU, the domU to host.
    pub domu_push: f64,
    pub domu_pull: f64,
    /// Round trips of domU-to-domU pings, in microseconds (the domU's clock).
    pub ping_us: Vec<u64>,
    /// A second domU's push of [`NET_BYTES`] into the first's discard service across the
    /// bridge: MB/s (the pushing domU's clock).
    pub domu_domu: f64,
    /// QEMU's CPU time (all its threads: the vCPU and the user network) per MiB moved, in
    /// milliseconds, the median of the rounds: host to dom0, host to the domU, dom0 to host,
    /// the domU to host. Unlike wall time, the host's other load hardly moves it.
    pub cpu_ms_per_mib: [f64; 4],
}

/// Nanoseconds QEMU process `pid` has run on a CPU so far (the sum of its threads'
/// `schedstat`), if `/proc` says.
pub fn cpu_ns(pid: u32) -> Option<u64> {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).ok()?;
    let mut total = 0u64;
    for t in tasks.flatten() {
        let text = std::fs::read_to_string(t.path().join("schedstat")).unwrap_or_default();
        total += text
            .split_whitespace()
            .next()
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0);
    }
    Some(total)
}

impl Net {
    /// The domU's throughput over dom0's: (push, pull).
    pub fn ratios(&self) -> (f64, f64) {
        (
            self.domu_push / self.dom0_push.max(1e-9),
            self.domu_pull / self.dom0_pull.max(1e-9),
        )
    }

    /// QEMU's CPU time per MiB, dom0's over the domU's: (push, pull). The throughput ratio
    /// a host with a CPU to spare would see when the transfers are CPU-bound.
    pub fn cpu_ratios(&self) -> (f64, f64) {
        let c = &self.cpu_ms_per_mib;
        (c[0] / c[1].max(1e-9), c[2] / c[3].max(1e-9))
    }

    /// The median ping round trip, if any.
    pub fn ping_median(&self) -> Option<u64> {
        let mut v = self.ping_us.clone();
        v.sort_unstable();
        v.get(v.len() / 2).copied()
    }
}

/// `(<n>, <t>)` of a web domU's `web: pushed <n> bytes to <a> in <t> us ...` line.
pub fn parse_pushed(line: &str) -> Option<(u64, u64)> {
    let rest = &line[line.find("web: pushed ")? + 12..];
    let mut w = rest.split_whitespace();
    let bytes = w.next()?.parse().ok()?;
    let us = w.nth(4)?.parse().ok()?;
    Some((bytes, us))
}

/// `<t>` of a web domU's `web: ping reply from <a> seq <n> in <t> us ...` line.
pub fn parse_ping_us(line: &str) -> Option<u64> {
    let rest = &line[line.find(" in ")? + 4..];
    rest.split_whitespace().next()?.parse().ok()
}

/// `xl create /etc/xen/web.cfg` as `name` with `extra` on its command line; its domain id.
fn create_web(vm: &mut Qemu, name: &str, extra: &str) -> Result<u32, String> {
    let out = run(
        vm,
        &format!(
            "xl create /etc/xen/web.cfg 'name=\"{name}\"' \
             'cmdline=\"console=hypervisor {extra}\"'"
        ),
    )?;
    out.lines()
        .find_map(|l| {
            l.trim()
                .strip_prefix(&format!("Domain {name} created with id "))
        })
        .and_then(|id| id.trim().parse().ok())
        .ok_or_else(|| format!("`xl create` of {name} failed:\n{out}"))
}

/// The `net` bench: one boot with a virtio-net card on QEMU's user network; a web domU
/// (10.0.2.20); [`NET_ROUNDS`] rounds of the host pushing [`NET_BYTES`] to dom0's and the
/// domU's discard services and pulling as many from their chargen services, through QEMU's
/// port forwards, alternating dom0 and the domU; then a second web domU pushing
/// [`NET_BYTES`] into the first's discard service and pinging it, across the bridge.
pub fn net(ws: &Workspace) -> Result<Net, String> {
    use xenia_tests::netbench::{mb_per_s, pull, push};
    let forwards = [
        (NET_DOM0_IP, 9),
        (NET_DOM0_IP, 19),
        (NET_DOMU_IP, 9),
        (NET_DOMU_IP, 19),
    ];
    let machine = Machine::new(ws, "bench-net")
        .memory_mib(512)
        .hv_options(DEFAULT_HV_OPTIONS)
        .module(ws.require_artifact(xenia_tests::DOM0_ARTIFACT)?, "")
        .module(ws.require_artifact(xenia_tests::TEST_INITRD_ARTIFACT)?, "")
        .nic(&forwards)?;
    let mut vm = machine.boot()?;
    let port = |vm: &Qemu, ip: &str, p: u16| {
        vm.host_port(ip, p)
            .ok_or_else(|| format!("no forward to {ip}:{p}"))
    };
    let (d0_push, d0_pull) = (port(&vm, NET_DOM0_IP, 9)?, port(&vm, NET_DOM0_IP, 19)?);
    let (du_push, du_pull) = (port(&vm, NET_DOMU_IP, 9)?, port(&vm, NET_DOMU_IP, 19)?);
    let result = (|| {
        vm.wait_for(PROMPT, Duration::from_secs(300))?;
        let web = create_web(&mut vm, "web", "")?;
        vm.wait_for_line(&format!("(d{web}) web: address {NET_DOMU_IP}/"), NET_UP)?;
        let mut n = Net { ..Net::default() };
        let mut cpus: Vec<[f64; 4]> = Vec::new();
        let pid = vm.pid();
        let mib = NET_BYTES as f64 / f64::from(1u32 << 20);
        for i in 1..=NET_ROUNDS {
            // Each transfer's wall time, and QEMU's CPU time over it in ms per MiB.
            let mut cpu = [0f64; 4];
            let mut timed = |k: usize, f: &mut dyn FnMut() -> Result<Duration, String>| {
                profile_mark();
                let before = cpu_ns(pid);
                let d = f()?;
                profile_mark();
                if let (Some(a), Some(b)) = (before, cpu_ns(pid)) {
                    cpu[k] = b.saturating_sub(a) as f64 / 1e6 / mib;
                }
                Ok::<f64, String>(mb_per_s(NET_BYTES, d))
            };
            let dp = timed(0, &mut || push(d0_push, NET_BYTES, NET_TRANSFER))?;
            let up = timed(1, &mut || push(du_push, NET_BYTES, NET_TRANSFER))?;
            let dl = timed(2, &mut || Ok(pull(d0_pull, NET_BYTES, NET_TRANSFER)?.0))?;
            let ul = timed(3, &mut || Ok(pull(du_pull, NET_BYTES, NET_TRANSFER)?.0))?;
            println!(
                "  round {i}: host->dom0 {dp:.1} host->domU {up:.1} dom0->host {dl:.1} domU->host {ul:.1} MB/s; \
                 QEMU's CPU {:.1} {:.1} {:.1} {:.1} ms/MiB",
                cpu[0], cpu[1], cpu[2], cpu[3]
            );
            cpus.push(cpu);
            n.dom0_push = n.dom0_push.max(dp);
            n.domu_push = n.domu_push.max(up);
            n.dom0_pull = n.dom0_pull.max(dl);
            n.domu_pull = n.domu_pull.max(ul);
        }
        // The median: a thread that ended during a transfer can make one round read low.
        for (k, m) in n.cpu_ms_per_mib.iter_mut().enumerate() {
            let mut v: Vec<f64> = cpus.iter().map(|c| c[k]).collect();
            v.sort_by(f64::total_cmp);
            *m = v.get(v.len() / 2).copied().unwrap_or(0.0);
        }
        let pinger = create_web(
            &mut vm,
            "web2",
            &format!("ping={NET_DOMU_IP} push={NET_DOMU_IP} push_bytes={NET_BYTES}"),
        )?;
        let line = vm.wait_for_line(&format!("(d{pinger}) web: push"), NET_TRANSFER)?;
        let (bytes, us) =
            parse_pushed(&line).ok_or_else(|| format!("domU to domU push: {line:?}"))?;
        if bytes != NET_BYTES as u64 {
            return Err(format!("domU to domU push moved {bytes} bytes: {line:?}"));
        }
        n.domu_domu = bytes as f64 / us.max(1) as f64;
        for _ in 0..10 {
            let line = vm.wait_for_line(
                &format!("(d{pinger}) web: ping reply from {NET_DOMU_IP} seq "),
                NET_UP,
            )?;
            n.ping_us.extend(parse_ping_us(&line));
        }
        Ok(n)
    })();
    vm.kill();
    result
}

/// The `net` bench's virtual-time part: one boot under `-icount shift=0,sleep=off` with a
/// web domU, [`NET_ROUNDS`] rounds of [`xenia_tests::netbench::busy_round`] over
/// [`NET_BYTES`]; each round printed, and each figure the least of the rounds. The measure
/// of `net_bench_icount_goal`, on the bench's transfer size.
pub fn net_icount(ws: &Workspace) -> Result<xenia_tests::netbench::BusyRound, String> {
    use xenia_tests::netbench::{BusyRound, Ports, busy_round};
    let forwards = [
        (NET_DOM0_IP, 9),
        (NET_DOM0_IP, 19),
        (NET_DOMU_IP, 9),
        (NET_DOMU_IP, 19),
    ];
    let machine = Machine::new(ws, "bench-net-icount")
        .memory_mib(512)
        .hv_options(DEFAULT_HV_OPTIONS)
        .module(ws.require_artifact(xenia_tests::DOM0_ARTIFACT)?, "")
        .module(ws.require_artifact(xenia_tests::TEST_INITRD_ARTIFACT)?, "")
        .qemu_arg("-icount")
        .qemu_arg("shift=0,sleep=off")
        .nic(&forwards)?;
    let mut vm = machine.boot()?;
    let result = (|| {
        let port = |vm: &Qemu, ip: &str, p: u16| {
            vm.host_port(ip, p)
                .ok_or_else(|| format!("no forward to {ip}:{p}"))
        };
        let ports = Ports {
            dom0_discard: port(&vm, NET_DOM0_IP, 9)?,
            dom0_chargen: port(&vm, NET_DOM0_IP, 19)?,
            domu_discard: port(&vm, NET_DOMU_IP, 9)?,
            domu_chargen: port(&vm, NET_DOMU_IP, 19)?,
        };
        vm.wait_for(PROMPT, Duration::from_secs(300))?;
        let web = create_web(&mut vm, "web", "")?;
        vm.wait_for_line(&format!("(d{web}) web: address {NET_DOMU_IP}/"), NET_UP)?;
        let mut rounds = Vec::new();
        for i in 1..=NET_ROUNDS {
            let r = busy_round(&mut vm, &ports, NET_BYTES, NET_TRANSFER, &mut profile_mark)?;
            let b = r.busy_ns_per_mib;
            let (a, o) = r.ratios();
            println!(
                "  virtual time, round {i}: busy per MiB host->dom0 {:.2} host->domU {:.2} dom0->host {:.2} domU->host {:.2} ms; dom0/domU {a:.2} in, {o:.2} out",
                b[0] / 1e6,
                b[1] / 1e6,
                b[2] / 1e6,
                b[3] / 1e6
            );
            rounds.push(r);
        }
        BusyRound::best(&rounds).ok_or_else(|| "no rounds".to_string())
    })();
    vm.kill();
    result
}
