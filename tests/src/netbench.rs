//! TCP throughput between the host and a machine's network, through QEMU's user-mode port
//! forwards ([`crate::machine::Machine::nic`]): [`push`] writes bytes to a discard service
//! (RFC 863, dom0's on port 9), [`pull`] reads them from a chargen service (RFC 864, dom0's on
//! port 19). Both are bounded by a timeout and return how long the transfer took, so a bench
//! can set a domU's figure beside dom0's on the same card in the same run.
//!
//! **Busy time** ([`busy_round`]): under `-icount shift=0` one guest instruction is one
//! nanosecond of virtual time, so the virtual time the machine was *not* idle over a
//! transfer is the instructions it ran for it (the hypervisor's, dom0's and the domU's).
//! dom0's test program reads each pCPU's idle time (`probe cpuidle`:
//! `XEN_SYSCTL_getcpuinfo`, and `CLOCK_MONOTONIC`) before and after each transfer; busy =
//! elapsed - idle, less what the two readings cost themselves (a back-to-back pair, measured
//! first). Elapsed time is not used: while the host's side (its TCP, QEMU's user network,
//! real time) is slow, the guest idles, and under `sleep=off` idle virtual time jumps from
//! timer to timer, so it measures the host, not the path.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::time::{Duration, Instant};

/// Issue 16's throughput goal: the domU at least this fraction of dom0's, each way.
pub const GOAL: f64 = 0.7;

/// The size of each write and read.
const CHUNK: usize = 64 << 10;

fn connect(port: u16, deadline: Instant) -> Result<TcpStream, String> {
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let left = deadline.saturating_duration_since(Instant::now());
    let stream = TcpStream::connect_timeout(&addr, left.max(Duration::from_millis(1)))
        .map_err(|e| format!("connect to 127.0.0.1:{port}: {e}"))?;
    stream.set_nodelay(true).ok();
    Ok(stream)
}

/// What is left of `deadline` as a socket timeout (never zero, which would mean none).
fn left(deadline: Instant, what: &str) -> Result<Duration, String> {
    let d = deadline.saturating_duration_since(Instant::now());
    if d.is_zero() {
        Err(format!("{what}: timed out"))
    } else {
        Ok(d)
    }
}

/// Connects to `127.0.0.1:port`, writes `bytes` bytes, closes its side and waits for the peer
/// to close (so every byte was taken by the service), all within `timeout`. Returns the time
/// from the connection to the peer's close.
pub fn push(port: u16, bytes: usize, timeout: Duration) -> Result<Duration, String> {
    let deadline = Instant::now() + timeout;
    let start = Instant::now();
    let mut s = connect(port, deadline)?;
    let chunk = vec![0x5au8; CHUNK];
    let mut sent = 0;
    while sent < bytes {
        s.set_write_timeout(Some(left(deadline, "push")?))
            .map_err(|e| e.to_string())?;
        let n = (bytes - sent).min(CHUNK);
        s.write_all(&chunk[..n])
            .map_err(|e| format!("push to port {port} after {sent} bytes: {e}"))?;
        sent += n;
    }
    s.shutdown(Shutdown::Write)
        .map_err(|e| format!("push: shutdown: {e}"))?;
    // The service closes when it has read everything: wait for that end of stream.
    let mut sink = [0u8; 512];
    loop {
        s.set_read_timeout(Some(left(deadline, "push: waiting for the peer's close")?))
            .map_err(|e| e.to_string())?;
        match s.read(&mut sink) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break,
            Err(e) => return Err(format!("push: waiting for the peer's close: {e}")),
        }
    }
    Ok(start.elapsed())
}

/// Connects to `127.0.0.1:port` and reads `bytes` bytes within `timeout`, then closes. Returns
/// the time from the connection to the last byte, and the first bytes read (at most 256, to
/// check what the service sends).
pub fn pull(port: u16, bytes: usize, timeout: Duration) -> Result<(Duration, Vec<u8>), String> {
    let deadline = Instant::now() + timeout;
    let start = Instant::now();
    let mut s = connect(port, deadline)?;
    let mut buf = vec![0u8; CHUNK];
    let mut head = Vec::new();
    let mut got = 0;
    while got < bytes {
        s.set_read_timeout(Some(left(deadline, "pull")?))
            .map_err(|e| e.to_string())?;
        let want = (bytes - got).min(CHUNK);
        match s.read(&mut buf[..want]) {
            Ok(0) => return Err(format!("pull from port {port}: closed after {got} bytes")),
            Ok(n) => {
                if head.len() < 256 {
                    let take = n.min(256 - head.len());
                    head.extend_from_slice(&buf[..take]);
                }
                got += n;
            }
            Err(e) => return Err(format!("pull from port {port} after {got} bytes: {e}")),
        }
    }
    let took = start.elapsed();
    let _ = s.shutdown(Shutdown::Both);
    Ok((took, head))
}

/// `bytes` over `took` in MB/s (10^6 bytes a second).
pub fn mb_per_s(bytes: usize, took: Duration) -> f64 {
    bytes as f64 / took.as_secs_f64().max(1e-9) / 1e6
}

/// One reading of `probe cpuidle` (dom0's test program): system time and each pCPU's idle
/// time so far, in nanoseconds.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Idle {
    /// System time (dom0's `CLOCK_MONOTONIC`).
    pub now: u64,
    /// Each pCPU's idle time since boot, by index.
    pub idle: Vec<u64>,
}

impl Idle {
    /// The `cpuidle: now <ns> idle <ns>...` line in `out`.
    pub fn parse(out: &str) -> Option<Idle> {
        let line = out
            .lines()
            .find_map(|l| l.trim().strip_prefix("cpuidle: now "))?;
        let mut words = line.split_whitespace();
        let now = words.next()?.parse().ok()?;
        if words.next()? != "idle" {
            return None;
        }
        let idle = words
            .map(|w| w.parse().ok())
            .collect::<Option<Vec<u64>>>()?;
        if idle.is_empty() {
            return None;
        }
        Some(Idle { now, idle })
    }

    /// Nanoseconds the machine was busy since `before`: each pCPU's elapsed time less its
    /// idle time, summed. A reading that goes backwards counts as nothing.
    pub fn busy_since(&self, before: &Idle) -> u64 {
        let elapsed = self.now.saturating_sub(before.now);
        self.idle
            .iter()
            .zip(&before.idle)
            .map(|(a, b)| elapsed.saturating_sub(a.saturating_sub(*b)))
            .sum()
    }
}

/// dom0's prompt.
const PROMPT: &str = "dom0# ";
/// Bound for one `probe cpuidle` in real time (icount slows the emulator down).
const READING: Duration = Duration::from_secs(60);

/// Runs `probe cpuidle` at dom0's prompt and reads it.
pub fn read_idle(vm: &mut crate::machine::Qemu) -> Result<Idle, String> {
    let line = "probe cpuidle";
    vm.send(&format!("{line}\r"))?;
    let out = vm.wait_until(
        &format!("the prompt after `{line}`"),
        READING,
        |log, cursor| {
            log[cursor..].find(PROMPT).map(|i| {
                (
                    log[cursor..cursor + i].to_string(),
                    cursor + i + PROMPT.len(),
                )
            })
        },
    )?;
    Idle::parse(&out).ok_or_else(|| format!("`{line}` printed no reading:\n{out}"))
}

/// The busy time of the machine left to itself (timers, the domains' own wake-ups), per
/// second of virtual time: the difference between `sh -c 'probe cpuidle; sleep N; probe
/// cpuidle'` with N = 1 and N = 3 (the programs' own cost cancels), over the difference of
/// their elapsed time. Under `sleep=off` such wake-ups also land in a transfer that waits on
/// the host, in proportion to its virtual duration (the notes show how much).
pub fn idle_background(vm: &mut crate::machine::Qemu) -> Result<f64, String> {
    let mut pair = |secs: u32| -> Result<(u64, u64), String> {
        let line = format!("sh -c 'probe cpuidle; sleep {secs}; probe cpuidle'");
        vm.send(&format!("{line}\r"))?;
        let out = vm.wait_until(
            &format!("the prompt after `{line}`"),
            READING,
            |log, cursor| {
                log[cursor..].find(PROMPT).map(|i| {
                    (
                        log[cursor..cursor + i].to_string(),
                        cursor + i + PROMPT.len(),
                    )
                })
            },
        )?;
        let readings: Vec<Idle> = out
            .lines()
            .filter(|l| l.contains("cpuidle: now "))
            .filter_map(Idle::parse)
            .collect();
        match readings.as_slice() {
            [a, b] => Ok((b.busy_since(a), b.now.saturating_sub(a.now))),
            _ => Err(format!("`{line}` did not print two readings:\n{out}")),
        }
    };
    let (busy1, elapsed1) = pair(1)?;
    let (busy3, elapsed3) = pair(3)?;
    let elapsed = elapsed3.saturating_sub(elapsed1).max(1) as f64 / 1e9;
    Ok(busy3.saturating_sub(busy1) as f64 / elapsed)
}

/// A profiling aid, never set by the suite: with `XENIA_PROFILE_MARK=<path>`, creates that
/// file (a QEMU plugin counting instructions, passed with `XENIA_QEMU_EXTRA`, snapshots its
/// counts when the file appears and removes it), waiting (bounded) until it is taken. The
/// benches and `net_bench_icount_goal` call it right before and after each transfer.
pub fn profile_mark() {
    let Some(path) = std::env::var_os("XENIA_PROFILE_MARK") else {
        return;
    };
    let path = std::path::PathBuf::from(path);
    if std::fs::write(&path, b"").is_err() {
        return;
    }
    // Polling a file another process removes: no event to wait on; bounded at 2 s.
    for _ in 0..200 {
        if !path.exists() {
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The host ports forwarded to dom0's and a domU's discard (9) and chargen (19) services.
#[derive(Clone, Copy, Debug)]
pub struct Ports {
    /// To dom0's discard (10.0.2.15:9).
    pub dom0_discard: u16,
    /// To dom0's chargen (10.0.2.15:19).
    pub dom0_chargen: u16,
    /// To the domU's discard.
    pub domu_discard: u16,
    /// To the domU's chargen.
    pub domu_chargen: u16,
}

/// The transfers of a [`busy_round`], in order.
pub const TRANSFERS: [&str; 4] = ["host->dom0", "host->domU", "dom0->host", "domU->host"];

/// One round of [`busy_round`]: the machine's busy nanoseconds per MiB of each transfer
/// ([`TRANSFERS`]' order), with the readings' own cost taken off, and the virtual time each
/// transfer took (elapsed, idle included: for the notes).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct BusyRound {
    /// Busy ns of a back-to-back pair of readings (taken off each transfer's figure).
    pub readings_ns: u64,
    /// Busy ns per MiB of each transfer.
    pub busy_ns_per_mib: [f64; 4],
    /// Virtual ns from the reading before each transfer to the one after it.
    pub elapsed_ns: [u64; 4],
    /// The machine's busy ns per second of virtual time when left to itself
    /// ([`idle_background`]).
    pub background_ns_per_s: f64,
}

impl BusyRound {
    /// dom0's busy time per MiB over the domU's: (host to guest, guest to host). The
    /// throughput ratio of the two paths where the machine is what limits it.
    pub fn ratios(&self) -> (f64, f64) {
        let b = &self.busy_ns_per_mib;
        (b[0] / b[1].max(1e-9), b[2] / b[3].max(1e-9))
    }

    /// Each figure the least of `rounds` (the host's load only ever adds to a round: timer
    /// wake-ups while the guest waits for it); `None` without rounds.
    pub fn best(rounds: &[BusyRound]) -> Option<BusyRound> {
        let mut best = rounds.first()?.clone();
        for r in &rounds[1..] {
            best.readings_ns = best.readings_ns.min(r.readings_ns);
            for k in 0..4 {
                best.busy_ns_per_mib[k] = best.busy_ns_per_mib[k].min(r.busy_ns_per_mib[k]);
                best.elapsed_ns[k] = best.elapsed_ns[k].min(r.elapsed_ns[k]);
            }
            best.background_ns_per_s = best.background_ns_per_s.min(r.background_ns_per_s);
        }
        Some(best)
    }

    /// At most how much of transfer `k`'s busy time were timer wake-ups while it waited on
    /// the host: the background rate over its idle virtual time, as a fraction of its busy
    /// time (an upper bound: the rate is measured with a sleeping program, whose own
    /// wake-ups count too).
    pub fn background_share(&self, k: usize, bytes: usize) -> f64 {
        let mib = bytes as f64 / f64::from(1u32 << 20);
        let busy = self.busy_ns_per_mib[k] * mib;
        let idle = (self.elapsed_ns[k] as f64 - busy).max(0.0);
        self.background_ns_per_s * idle / 1e9 / busy.max(1.0)
    }

    /// Lines for a report of transfers of `bytes`: each transfer's busy ms per MiB and the
    /// ratios.
    pub fn report(&self, bytes: usize) -> Vec<String> {
        let mut lines: Vec<String> = TRANSFERS
            .iter()
            .enumerate()
            .map(|(k, name)| {
                format!(
                    "{name}: {:.2} ms busy per MiB (virtual time; the transfer took {:.1} ms, \
                     timer wake-ups at most {:.1}% of the busy time)",
                    self.busy_ns_per_mib[k] / 1e6,
                    self.elapsed_ns[k] as f64 / 1e6,
                    100.0 * self.background_share(k, bytes)
                )
            })
            .collect();
        let (i, o) = self.ratios();
        lines.push(format!(
            "busy per MiB, dom0/domU: {i:.2} host->guest, {o:.2} guest->host \
             (readings cost {:.2} ms a pair; left to itself the machine is busy {:.2} ms a second)",
            self.readings_ns as f64 / 1e6,
            self.background_ns_per_s / 1e6
        ));
        lines
    }
}

/// One round of the busy-time measure (see the module docs): the machine's background
/// ([`idle_background`]), a pair of readings back to back (their own cost), then for each of [`TRANSFERS`] a reading, the transfer of `bytes`
/// (bounded by `timeout`), a reading. `mark` runs right before and after each transfer (the
/// bench's profiling hook).
pub fn busy_round(
    vm: &mut crate::machine::Qemu,
    ports: &Ports,
    bytes: usize,
    timeout: Duration,
    mark: &mut dyn FnMut(),
) -> Result<BusyRound, String> {
    let background_ns_per_s = idle_background(vm)?;
    let a = read_idle(vm)?;
    let b = read_idle(vm)?;
    let readings_ns = b.busy_since(&a);
    let mib = bytes as f64 / f64::from(1u32 << 20);
    let mut r = BusyRound {
        readings_ns,
        background_ns_per_s,
        ..BusyRound::default()
    };
    for k in 0..4 {
        let before = read_idle(vm)?;
        mark();
        match k {
            0 => push(ports.dom0_discard, bytes, timeout).map(drop)?,
            1 => push(ports.domu_discard, bytes, timeout).map(drop)?,
            2 => pull(ports.dom0_chargen, bytes, timeout).map(drop)?,
            _ => pull(ports.domu_chargen, bytes, timeout).map(drop)?,
        }
        mark();
        let after = read_idle(vm)?;
        let busy = after.busy_since(&before).saturating_sub(readings_ns);
        r.busy_ns_per_mib[k] = busy as f64 / mib;
        r.elapsed_ns[k] = after.now.saturating_sub(before.now);
    }
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    #[test]
    fn push_and_pull_against_local_services() {
        // A discard service that closes when the client has closed.
        let discard = TcpListener::bind("127.0.0.1:0").unwrap();
        let dport = discard.local_addr().unwrap().port();
        let server = std::thread::spawn(move || {
            let (mut c, _) = discard.accept().unwrap();
            let mut total = 0;
            let mut buf = [0u8; 4096];
            loop {
                match c.read(&mut buf).unwrap() {
                    0 => break,
                    n => total += n,
                }
            }
            total
        });
        push(dport, 1 << 20, Duration::from_secs(10)).unwrap();
        assert_eq!(server.join().unwrap(), 1 << 20);

        let chargen = TcpListener::bind("127.0.0.1:0").unwrap();
        let cport = chargen.local_addr().unwrap().port();
        std::thread::spawn(move || {
            let (mut c, _) = chargen.accept().unwrap();
            let line = [b'x'; 1024];
            while c.write_all(&line).is_ok() {}
        });
        let (_, head) = pull(cport, 300_000, Duration::from_secs(10)).unwrap();
        assert_eq!(head, vec![b'x'; 256]);

        // Nobody listening: an error, not a hang.
        let closed = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = closed.local_addr().unwrap().port();
        drop(closed);
        assert!(push(port, 10, Duration::from_secs(2)).is_err());
    }

    #[test]
    fn idle_readings() {
        let a = Idle::parse("probe cpuidle\r\ncpuidle: now 1000 idle 400 900\r\n").unwrap();
        assert_eq!(a.idle, [400, 900]);
        let b = Idle::parse("cpuidle: now 3000 idle 1400 2900").unwrap();
        // CPU 0 idle 1000 of 2000, CPU 1 idle 2000 of 2000.
        assert_eq!(b.busy_since(&a), 1000);
        // Backwards readings count as nothing, never wrap.
        assert_eq!(a.busy_since(&b), 0);
        for bad in [
            "",
            "cpuidle: now x idle 1",
            "cpuidle: now 1 idle",
            "cpuidle: now 1 busy 2",
        ] {
            assert_eq!(Idle::parse(bad), None, "{bad:?}");
        }
        let r = |x: f64| BusyRound {
            readings_ns: 5,
            busy_ns_per_mib: [x, 2.0 * x, 4.0, 8.0],
            elapsed_ns: [9; 4],
            background_ns_per_s: 1e6,
        };
        let best = BusyRound::best(&[r(3.0), r(1.0)]).unwrap();
        assert_eq!(best.busy_ns_per_mib, [1.0, 2.0, 4.0, 8.0]);
        assert_eq!(best.ratios(), (0.5, 0.5));
        assert!(BusyRound::best(&[]).is_none());
        // 1 MiB with 1 ms busy in 1001 ms: 1 s idle at 1 ms a second, as much as the busy time.
        let one = BusyRound {
            busy_ns_per_mib: [1e6; 4],
            elapsed_ns: [1_001_000_000; 4],
            background_ns_per_s: 1e6,
            ..BusyRound::default()
        };
        assert!((one.background_share(0, 1 << 20) - 1.0).abs() < 1e-9);
    }

    #[test]
    fn a_silent_peer_times_out() {
        let silent = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = silent.local_addr().unwrap().port();
        let keep = std::thread::spawn(move || silent.accept().map(|(c, _)| c));
        let err = pull(port, 10, Duration::from_millis(300)).unwrap_err();
        assert!(err.contains("pull"), "{err}");
        drop(keep);
    }
}
