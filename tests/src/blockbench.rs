//! Issue 15's throughput comparison, shared by `cargo xtask bench --only block` and the
//! scenario `block_bench_short`: on one machine, dom0 writes (`dd ... conv=fsync`) and reads
//! its virtio disk `/dev/vdb` directly, then a domU (testguest `block_bench`) writes, flushes
//! and reads the same bytes of the same device through blkfront and dom0's blkback, with the
//! same request size: [`REQUEST`] bytes, the most one blkif request carries without indirect
//! descriptors (11 segments of a page). dom0's `dd` has one request outstanding at a time;
//! the domU's blkfront keeps up to four in flight (`QUEUE_DEPTH`, with persistent grants),
//! as a real frontend's queue does.
//!
//! Both sides time themselves with their own system time (dom0's shell `time`, the domU's
//! `now_ns`): under `-icount` one nanosecond per instruction, without it the host's wall
//! clock ([`round`]; `block_bench_short` and the bench's wall-time part).
//!
//! **Busy time** ([`busy_round`], the issue's figure: `block_bench_icount_goal` and the
//! bench's virtual-time part): under `-icount` [`ICOUNT`] with dom0's virtio-blk
//! interrupt-driven, the machine's busy virtual time (elapsed less the pCPU's idle time,
//! [`crate::netbench::Idle`]) per MiB, each figure a long run less a run of one request.
//! Elapsed virtual time is not used: a driver that waits for QEMU's I/O thread idles (or,
//! polling, spins) for as long as the host takes. dom0's `virtio_blk=poll` made the old
//! virtual-time figure follow the host's load (its spin was counted).

use std::time::Duration;

use crate::machine::{DiskImage, Machine, Qemu};
use crate::netbench::{Idle, read_idle};
use crate::workspace::{DOM0_ARTIFACT, TEST_INITRD_ARTIFACT, Workspace};

/// QEMU's `-icount` for the busy-time measure ([`busy_round`]): one instruction a nanosecond;
/// `sleep=on`, so that an idle machine's virtual time follows the host's clock. With
/// `sleep=off` each wait for QEMU's I/O jumps to the next timer deadline and runs its timer
/// work, again and again until the I/O is done: the slower the host, the more busy time
/// (runs read 2 ms of it per second of virtual time, and a `dd` of 4 MiB 6.2 or 11.1 ms).
pub const ICOUNT: &str = "shift=0,sleep=on";
/// Bytes of one request on both sides: `BLKIF_MAX_SEGMENTS_PER_REQUEST` (11) pages.
pub const REQUEST: u64 = 11 * 4096;
/// The goal: the domU at least this fraction of dom0's throughput.
pub const GOAL: f64 = 0.8;
/// dom0's prompt.
const PROMPT: &str = "dom0# ";
/// Bound for one dom0 command in real time (`-icount` slows the emulator down).
const COMMAND: Duration = Duration::from_secs(300);
/// Bound for the domU's whole run.
const JOB: Duration = Duration::from_secs(600);
/// The domU's figures line (after the `(dN) ` prefix).
const DOMU_LINE: &str = "block bench ";

/// One round's figures, in nanoseconds of each side's system time.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Round {
    /// Bytes written, then read, by each side.
    pub bytes: u64,
    /// dom0's `dd` to `/dev/vdb` with `conv=fsync`.
    pub dom0_write_ns: u64,
    /// dom0's `dd` from `/dev/vdb`.
    pub dom0_read_ns: u64,
    /// The domU's writes and its flush.
    pub domu_write_ns: u64,
    /// The domU's reads.
    pub domu_read_ns: u64,
}

/// MB/s (10^6 bytes a second) of `bytes` in `ns`.
pub fn mb_s(bytes: u64, ns: u64) -> f64 {
    bytes as f64 * 1000.0 / ns.max(1) as f64
}

impl Round {
    /// (dom0's write, dom0's read, domU's write, domU's read) in MB/s.
    pub fn throughputs(&self) -> [f64; 4] {
        [
            self.dom0_write_ns,
            self.dom0_read_ns,
            self.domu_write_ns,
            self.domu_read_ns,
        ]
        .map(|ns| mb_s(self.bytes, ns))
    }

    /// The domU's throughput over dom0's: (write, read).
    pub fn ratios(&self) -> (f64, f64) {
        (
            self.dom0_write_ns as f64 / self.domu_write_ns.max(1) as f64,
            self.dom0_read_ns as f64 / self.domu_read_ns.max(1) as f64,
        )
    }
}

/// The best of several rounds: each figure the fastest seen (for wall-time runs, where the
/// host's load only ever slows a round down).
pub fn best(rounds: &[Round]) -> Option<Round> {
    let first = *rounds.first()?;
    Some(rounds.iter().fold(first, |b, r| Round {
        bytes: b.bytes,
        dom0_write_ns: b.dom0_write_ns.min(r.dom0_write_ns),
        dom0_read_ns: b.dom0_read_ns.min(r.dom0_read_ns),
        domu_write_ns: b.domu_write_ns.min(r.domu_write_ns),
        domu_read_ns: b.domu_read_ns.min(r.domu_read_ns),
    }))
}

/// `(bytes, request, write_ns, read_ns)` of testguest's
/// `block bench bytes=<B> request=<R> write_ns=<W> read_ns=<N>` (any prefix before it).
pub fn parse_domu(line: &str) -> Option<(u64, u64, u64, u64)> {
    let rest = &line[line.find(DOMU_LINE)? + DOMU_LINE.len()..];
    let mut fields = [None; 4];
    for word in rest.split_whitespace() {
        let (k, v) = word.split_once('=')?;
        let i = ["bytes", "request", "write_ns", "read_ns"]
            .iter()
            .position(|&n| n == k)?;
        fields[i] = Some(v.parse().ok()?);
    }
    Some((fields[0]?, fields[1]?, fields[2]?, fields[3]?))
}

/// The nanoseconds of dom0's `time: <ms> ms` line.
pub fn parse_time_ns(out: &str) -> Option<u64> {
    out.lines().find_map(|l| {
        let ms: f64 = l
            .trim()
            .strip_prefix("time: ")?
            .strip_suffix(" ms")?
            .parse()
            .ok()?;
        Some((ms * 1e6).round() as u64)
    })
}

/// `machine` with dom0 (its command line `dom0_args`), the
/// scenarios' initrd (testguest in `/boot/`) and `disks` (the second is `/dev/vdb`).
pub fn machine(
    ws: &Workspace,
    machine: Machine,
    dom0_args: &str,
    disks: &[&std::path::Path],
) -> Result<Machine, String> {
    let mut m = machine
        .module(ws.require_artifact(DOM0_ARTIFACT)?, dom0_args)
        .module(ws.require_artifact(TEST_INITRD_ARTIFACT)?, "");
    for d in disks {
        m = m.disk(*d);
    }
    Ok(m)
}

/// A zero-filled image of `bytes` at `path` with every block allocated on the host (a sparse
/// one would make the first side to write pay for the host's allocation).
pub fn image(path: std::path::PathBuf, bytes: u64) -> Result<DiskImage, String> {
    let img = DiskImage::create(path, bytes)?;
    let zeros = vec![0u8; 1 << 20];
    let mut at = 0;
    while at < bytes {
        let n = (bytes - at).min(zeros.len() as u64);
        img.write_at(at, &zeros[..n as usize])?;
        at += n;
    }
    Ok(img)
}

/// A profiling aid, never set by the suite: with `XENIA_PROFILE_MARK=<path>`, creates that
/// file as the domU phase starts and ends (a QEMU plugin counting instructions snapshots its
/// counts when the file appears, then removes it), waiting (bounded) until it is taken.
fn profile_mark() {
    let Some(path) = std::env::var_os("XENIA_PROFILE_MARK") else {
        return;
    };
    let path = std::path::PathBuf::from(path);
    if std::fs::write(&path, b"").is_err() {
        return;
    }
    for _ in 0..200 {
        if !path.exists() {
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

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

/// A timed dd of `requests` requests; requires the whole count.
fn dd(vm: &mut Qemu, args: &str, requests: u64, what: &str) -> Result<u64, String> {
    let line = format!("time dd {args} bs={REQUEST} count={requests}");
    let out = run(vm, &line)?;
    if !out.contains(&format!("{requests}+0 records {what}")) {
        return Err(format!("`{line}`: {out:?}"));
    }
    parse_time_ns(&out).ok_or_else(|| format!("no time from `{line}`: {out:?}"))
}

/// A domU's figures line: (bytes, request, write_ns, read_ns), as [`parse_domu`] reads it.
type DomuFigures = (u64, u64, u64, u64);

/// Creates domain `name` (testguest `block_bench`, `requests` requests, `extra` more words
/// on its command line) on `/dev/vdb` and waits until it passes: its id, its figures line
/// (checked against `requests`) and what the command printed at dom0's prompt. With
/// `bracket`, a `probe cpuidle` runs right before `xl` on the same line.
fn domain(
    vm: &mut Qemu,
    name: &str,
    requests: u64,
    extra: &str,
    bracket: bool,
) -> Result<(u32, DomuFigures, String), String> {
    let xl = format!(
        "xl create /etc/xen/hello.cfg 'name=\"{name}\"' 'kernel=\"/boot/testguest.elf\"' \
         'cmdline=\"test=block_bench requests={requests}{extra}\"' \
         \"disk=['format=raw, vdev=xvda, access=rw, target=/dev/vdb']\""
    );
    // With `bracket`, busybox's sh runs `probe cpuidle` then `xl`, so that the reading comes
    // after the line is typed. dom0's own shell runs one program a line and honours `\"`
    // inside double quotes.
    let line = if bracket {
        format!("sh -c \"probe cpuidle; {}\"", xl.replace('"', "\\\""))
    } else {
        xl
    };
    profile_mark();
    let out = run(vm, &line)?;
    let id: u32 = out
        .lines()
        .find_map(|l| {
            l.trim()
                .strip_prefix(&format!("Domain {name} created with id "))
        })
        .and_then(|id| id.trim().parse().ok())
        .ok_or_else(|| format!("`xl create` of {name} failed:\n{out}"))?;
    let prefix = format!("(d{id}) ");
    let result = vm.wait_for_line_starting(&format!("{prefix}Test result: "), JOB)?;
    profile_mark();
    let log = vm.serial_log();
    if result != format!("{prefix}Test result: SUCCESS") {
        let failed: Vec<&str> = log
            .lines()
            .filter(|l| l.starts_with(&format!("{prefix}check ")) && !l.ends_with(": ok"))
            .collect();
        return Err(format!("{name}: {result}; failed checks: {failed:?}"));
    }
    let figures = log
        .lines()
        .filter(|l| l.starts_with(&prefix))
        .find_map(parse_domu)
        .ok_or_else(|| format!("no `block bench` line from d{id}"))?;
    let (bytes, request, _, _) = figures;
    if request != REQUEST || bytes != requests * REQUEST {
        return Err(format!(
            "d{id} moved {bytes} bytes in requests of {request}, not {requests} of {REQUEST}"
        ));
    }
    Ok((id, figures, out))
}

/// Waits (bounded) until `xl list` no longer lists domain `name` (it powers off after its
/// result).
fn wait_gone(vm: &mut Qemu, name: &str) -> Result<(), String> {
    for _ in 0..50 {
        let list = run(vm, "xl list")?;
        if !list
            .lines()
            .any(|l| l.split_whitespace().next() == Some(name))
        {
            return Ok(());
        }
    }
    Err(format!("domain {name} is still listed"))
}

/// One round at dom0's prompt: dom0's write (`conv=fsync`) and read of `requests` requests on
/// `/dev/vdb`, then domain `name` (testguest `block_bench`) on the same device, which must
/// pass; waits until it is gone.
pub fn round(vm: &mut Qemu, name: &str, requests: u64) -> Result<Round, String> {
    let dom0_write_ns = dd(vm, "if=/dev/zero of=/dev/vdb conv=fsync", requests, "out")?;
    let dom0_read_ns = dd(vm, "if=/dev/vdb of=/dev/null", requests, "in")?;
    let (_, (bytes, _, domu_write_ns, domu_read_ns), _) = domain(vm, name, requests, "", false)?;
    wait_gone(vm, name)?;
    Ok(Round {
        bytes,
        dom0_write_ns,
        dom0_read_ns,
        domu_write_ns,
        domu_read_ns,
    })
}

/// The figures of a [`busy_round`], in order.
pub const BUSY_FIGURES: [&str; 4] = ["dom0 write", "dom0 read", "domU write", "domU read"];

/// One round of the busy-time measure ([`busy_round`]): its seven runs.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct BusyRound {
    /// Requests of the long runs (the short ones make one).
    pub requests: u64,
    /// Each run's (busy, elapsed) virtual ns, readings included, in [`RUNS`]' order.
    pub runs: [(u64, u64); 7],
}

/// The runs of a [`busy_round`], in order.
pub const RUNS: [&str; 7] = [
    "dom0 dd write 1",
    "dom0 dd write N",
    "dom0 dd read 1",
    "dom0 dd read N",
    "domain write 1",
    "domain write N",
    "domain write+read N",
];

impl BusyRound {
    /// The machine's busy ns per MiB of each of [`BUSY_FIGURES`]: what a long run costs
    /// more than its short one (dom0's `dd` of `requests` less its `dd` of one; the domU's
    /// write: the domain writing `requests` less the one writing one; its read: the domain
    /// writing and reading `requests` less the one only writing them).
    pub fn busy_ns_per_mib(&self) -> [f64; 4] {
        let [w1, wn, r1, rn, c, a, b] = self.runs.map(|(busy, _)| busy);
        let mib = |n: u64| (n * REQUEST) as f64 / f64::from(1u32 << 20);
        let more = self.requests.saturating_sub(1).max(1);
        [
            wn.saturating_sub(w1) as f64 / mib(more),
            rn.saturating_sub(r1) as f64 / mib(more),
            a.saturating_sub(c) as f64 / mib(more),
            b.saturating_sub(a) as f64 / mib(self.requests.max(1)),
        ]
    }

    /// dom0's busy time per MiB over the domU's: (write, read). The throughput ratio where the
    /// machine's one pCPU is what limits.
    pub fn ratios(&self) -> (f64, f64) {
        let b = self.busy_ns_per_mib();
        (b[0] / b[2].max(1e-9), b[1] / b[3].max(1e-9))
    }

    /// Each run the median of `rounds` (the upper one of an even count). The host's timing
    /// moves a run both ways by a few hundred microseconds (when each I/O completes against
    /// the instructions: a halt and a wake-up more or less, events taken one by one or
    /// together), and one odd run of the three a figure uses would move it by 10–20 %.
    /// `None` without rounds.
    pub fn median(rounds: &[BusyRound]) -> Option<BusyRound> {
        let mut m = *rounds.first()?;
        for k in 0..m.runs.len() {
            let mut busy: Vec<u64> = rounds.iter().map(|r| r.runs[k].0).collect();
            let mut elapsed: Vec<u64> = rounds.iter().map(|r| r.runs[k].1).collect();
            busy.sort_unstable();
            elapsed.sort_unstable();
            m.runs[k] = (busy[busy.len() / 2], elapsed[elapsed.len() / 2]);
        }
        Some(m)
    }

    /// One line for round `i`: each figure in ms of busy time per MiB and the ratios.
    pub fn summary(&self, i: u32) -> String {
        let b = self.busy_ns_per_mib().map(|x| x / 1e6);
        let (w, r) = self.ratios();
        format!(
            "busy virtual time, round {i}: ms per MiB dom0 write {:.3} read {:.3}, domU write {:.3} read {:.3}; dom0/domU write {w:.2}, read {r:.2}; runs (busy, elapsed) ms: {}",
            b[0],
            b[1],
            b[2],
            b[3],
            self.runs
                .map(|(x, e)| format!("{:.3}/{:.1}", x as f64 / 1e6, e as f64 / 1e6))
                .join(" ")
        )
    }

    /// Report lines: each figure in ms of busy time per MiB, and the ratios against [`GOAL`].
    pub fn report(&self, how: &str) -> Vec<String> {
        let b = self.busy_ns_per_mib().map(|x| x / 1e6);
        let f = [self.runs[0].0, self.runs[2].0, self.runs[4].0].map(|x| x as f64 / 1e6);
        let (w, r) = self.ratios();
        let verdict = |x: f64| if x >= GOAL { "met" } else { "NOT met" };
        vec![
            format!(
                "{how}: busy per MiB over {} requests of {REQUEST} bytes: dom0 on /dev/vdb write+fsync {:.3} ms, read {:.3} ms; domU through blkfront/blkback write+flush {:.3} ms, read {:.3} ms (runs of one request: dom0 write {:.2} ms, read {:.2} ms, a domain {:.2} ms)",
                self.requests, b[0], b[1], b[2], b[3], f[0], f[1], f[2]
            ),
            format!(
                "{how}: busy per MiB, dom0/domU write {w:.2}, read {r:.2} (goal: at least {GOAL}; write {}, read {})",
                verdict(w),
                verdict(r)
            ),
        ]
    }
}

/// The `probe cpuidle` readings in `out`, in order.
fn readings(out: &str) -> Vec<Idle> {
    out.lines()
        .filter(|l| l.contains("cpuidle: now "))
        .filter_map(Idle::parse)
        .collect()
}

/// (busy, elapsed) virtual ns from `before` to `after`.
fn span(before: &Idle, after: &Idle) -> (u64, u64) {
    (
        after.busy_since(before),
        after.now.saturating_sub(before.now),
    )
}

/// dom0's `dd {args}` of `count` requests between two readings, all on one line (so no
/// typing falls inside the span); requires the whole count.
fn dd_busy(vm: &mut Qemu, args: &str, count: u64, what: &str) -> Result<(u64, u64), String> {
    let line =
        format!("sh -c 'probe cpuidle; dd {args} bs={REQUEST} count={count}; probe cpuidle'");
    let out = run(vm, &line)?;
    if !out.contains(&format!("{count}+0 records {what}")) {
        return Err(format!("`{line}`: {out:?}"));
    }
    match readings(&out).as_slice() {
        [a, b] => Ok(span(a, b)),
        _ => Err(format!("`{line}` did not print two readings:\n{out}")),
    }
}

/// One round of the busy-time measure at dom0's prompt, dom0's virtio-blk interrupt-driven:
/// the machine's busy virtual time (elapsed − idle, [`crate::netbench::Idle`]) over each run,
/// `probe cpuidle` before and after. dom0's `dd` writing (`conv=fsync`) then reading one
/// request and `requests` requests on `/dev/vdb`; then three domains on the same device
/// (testguest `block_bench`): one writing one request, one writing `requests` (both with
/// `phases=write`), one writing and reading `requests`. Each figure is a difference: dom0's
/// long `dd` less its short one, the domU's write the second domain less the first, its
/// read the third less the second; so the process start-ups, the domain's creation,
/// connection and destruction, and the readings themselves cancel. A `dd` run is one
/// `sh -c` line (reading, `dd`, reading); a domain run starts with a reading on `xl
/// create`'s line and ends with `probe cpuidle` typed once the hypervisor logs `domain <id>
/// destroyed`; `xl list` then confirms it is gone, after the run.
pub fn busy_round(vm: &mut Qemu, name: &str, requests: u64) -> Result<BusyRound, String> {
    if requests < 2 {
        return Err(format!(
            "a busy round needs at least 2 requests, not {requests}"
        ));
    }
    let write = "if=/dev/zero of=/dev/vdb conv=fsync";
    let read = "if=/dev/vdb of=/dev/null";
    let w1 = dd_busy(vm, write, 1, "out")?;
    let wn = dd_busy(vm, write, requests, "out")?;
    let r1 = dd_busy(vm, read, 1, "in")?;
    let rn = dd_busy(vm, read, requests, "in")?;
    // A domain's run: the first reading on `xl create`'s line; the second typed once the
    // hypervisor says `domain <id> destroyed`, so that dom0 waits at its prompt while the
    // domain runs, as it would with nobody at the console (a program waiting in dom0, such
    // as `sleep` or `xenstore-watch`, wakes and looks again at every event: each request
    // would cost it a wake-up). The same 14 characters are typed in every domain run.
    let one_domain = |vm: &mut Qemu, tag: &str, n: u64, extra: &str| {
        let name = format!("{name}{tag}");
        let (id, _, out) = domain(vm, &name, n, extra, true)?;
        let before = readings(&out)
            .pop()
            .ok_or_else(|| format!("no reading before {name}:\n{out}"))?;
        vm.wait_for_line(&format!("domain {id} destroyed"), COMMAND)?;
        let after = read_idle(vm)?;
        wait_gone(vm, &name)?;
        Ok::<(u64, u64), String>(span(&before, &after))
    };
    let c = one_domain(vm, "w1", 1, " phases=write")?;
    let a = one_domain(vm, "w", requests, " phases=write")?;
    let b = one_domain(vm, "wr", requests, "")?;
    Ok(BusyRound {
        requests,
        runs: [w1, wn, r1, rn, c, a, b],
    })
}

/// The report lines of `r` (`how`: "virtual time" or the like).
pub fn report(r: &Round, how: &str) -> Vec<String> {
    let [dw, dr, uw, ur] = r.throughputs();
    let (rw, rr) = r.ratios();
    let verdict = |x: f64| if x >= GOAL { "met" } else { "NOT met" };
    vec![
        format!(
            "{how}: {} KiB in requests of {REQUEST} bytes: dom0 on /dev/vdb write+fsync {dw:.1} MB/s, read {dr:.1} MB/s; domU through blkfront/blkback write+flush {uw:.1} MB/s, read {ur:.1} MB/s",
            r.bytes / 1024
        ),
        format!(
            "{how}: domU/dom0 write {rw:.2}, read {rr:.2} (goal: at least {GOAL}; write {}, read {})",
            verdict(rw),
            verdict(rr)
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn domu_line_parses() {
        assert_eq!(
            parse_domu("(d3) block bench bytes=90112 request=45056 write_ns=100 read_ns=50"),
            Some((90112, 45056, 100, 50))
        );
        assert_eq!(
            parse_domu("block bench read_ns=5 write_ns=6 request=1 bytes=2"),
            Some((2, 1, 6, 5))
        );
        assert_eq!(parse_domu("block bench bytes=1 request=2 write_ns=3"), None);
        assert_eq!(
            parse_domu("block bench bytes=x request=2 write_ns=3 read_ns=4"),
            None
        );
        assert_eq!(parse_domu("block: pattern written"), None);
    }

    #[test]
    fn dom0_time_parses() {
        assert_eq!(parse_time_ns("x\ntime: 12.500000 ms\n"), Some(12_500_000));
        assert_eq!(parse_time_ns("time: soon"), None);
    }

    #[test]
    fn busy_figures_are_differences_of_runs() {
        // 257 requests: 256 more than the short runs, 11 MiB.
        let ms = 1_000_000;
        let r = |extra: u64| BusyRound {
            requests: 257,
            runs: [
                (3 * ms, 0),
                (3 * ms + 11 * ms, 0),
                (3 * ms, 0),
                (3 * ms + 22 * ms, 0),
                (30 * ms + extra, 0),
                (30 * ms + 22 * ms + extra, 0),
                (30 * ms + 22 * ms + 257 * 11 * ms / 256 + extra, 9),
            ],
        };
        let b = r(0).busy_ns_per_mib();
        assert_eq!(b.map(|x| (x / 1e4).round() / 100.0), [1.0, 2.0, 2.0, 1.0]);
        let (w, rd) = r(0).ratios();
        assert!(
            (w - 0.5).abs() < 1e-6 && (rd - 2.0).abs() < 1e-6,
            "{w} {rd}"
        );
        assert!(r(0).report("t")[1].contains("write NOT met, read met"));
        // The median of each run: one odd round (a domain run 5 ms longer) moves nothing.
        let m = BusyRound::median(&[r(0), r(5 * ms), r(0)]).unwrap();
        assert_eq!(m, r(0));
        assert!(BusyRound::median(&[]).is_none());
        // Runs that went backwards give zero, never wrap.
        let mut bad = r(0);
        bad.runs[1].0 = 0;
        assert_eq!(bad.busy_ns_per_mib()[0], 0.0);
    }

    #[test]
    fn ratios_and_best() {
        let a = Round {
            bytes: 1_000_000,
            dom0_write_ns: 1_000_000,
            dom0_read_ns: 500_000,
            domu_write_ns: 2_000_000,
            domu_read_ns: 500_000,
        };
        assert_eq!(a.throughputs(), [1000.0, 2000.0, 500.0, 2000.0]);
        assert_eq!(a.ratios(), (0.5, 1.0));
        let b = Round {
            dom0_write_ns: 900_000,
            domu_read_ns: 600_000,
            ..a
        };
        let m = best(&[a, b]).unwrap();
        assert_eq!((m.dom0_write_ns, m.domu_read_ns), (900_000, 500_000));
        assert!(best(&[]).is_none());
        assert!(report(&a, "virtual time")[1].contains("write NOT met, read met"));
    }
}
