//! Debian's Linux domU beside a Xenia ring-1 domU (issue 18: "Linux and a Xenia ring-1 domU
//! run side by side; destroying the Linux domain returns every frame"): scenario
//! `linux_side_by_side`, at the `dom0# ` prompt of the default image, skipped as
//! [`super::linux`]'s are when Debian's package could not be fetched.
//!
//! The ring-1 domU is the `web` demo (`/etc/xen/web.cfg`): it serves a page whose request
//! counter and uptime the harness reads through QEMU's port forward, before, during and
//! after Linux's life. Free memory is counted in frames, with the `m` debug key (`xl
//! debug-keys m`), which also gives the hypervisor heap's size: the heap grows from free
//! frames and keeps them, so "every frame back" is the free frames plus what the heap grew by.

use std::time::{Duration, Instant};

use super::xl::{PROMPT, Row, parse_list, run};
use crate::machine::Qemu;
use crate::runner::Context;
use crate::serial;

/// The configuration `cargo xtask build` adds when it has the kernel.
const CONFIG: &str = "/etc/xen/debian.cfg";
/// The domU shell's prompt (the initramfs's `/etc/profile`).
const SHELL: &str = "debian# ";
/// Bound for Linux to boot from `xl create -c` to its shell under TCG (about 60 s here).
const BOOT: Duration = Duration::from_secs(150);
/// Bound for one command in the domU's shell or dom0's.
const COMMAND: Duration = Duration::from_secs(60);
/// The web domU's address: the first QEMU's DHCP gives (dom0 is 10.0.2.15, static).
const WEB_IP: &str = "10.0.2.20";
/// Bound for the web domU to take its address and answer its first GET.
const WEB_UP: Duration = Duration::from_secs(180);
/// Bound for one GET of a domU that already answered.
const HTTP: Duration = Duration::from_secs(60);
/// `xl debug-keys m` rounds while frames come back after a destroy (each about a second).
const FRAME_ROUNDS: usize = 5;

/// What the `m` debug key says: free frames, and the hypervisor heap's size in bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Memory {
    free_frames: u64,
    heap_bytes: u64,
}

impl Memory {
    /// The free frames `self` would have if the heap had not grown since `earlier`
    /// (`None` if it shrank, which it never does).
    fn free_frames_since(&self, earlier: &Memory) -> Option<u64> {
        let grown = self.heap_bytes.checked_sub(earlier.heap_bytes)?;
        Some(self.free_frames + grown / 4096)
    }
}

/// Parses `memory: <m> MiB free (<f> frames); heap <u> of <t> bytes in use`.
fn parse_memory(line: &str) -> Option<Memory> {
    let rest = line.split("MiB free (").nth(1)?;
    let (frames, rest) = rest.split_once(" frames); heap ")?;
    let (_, rest) = rest.split_once(" of ")?;
    let heap = rest.split_once(" bytes in use")?.0;
    Some(Memory {
        free_frames: frames.trim().parse().ok()?,
        heap_bytes: heap.trim().parse().ok()?,
    })
}

/// `xl debug-keys m` at dom0's prompt: the hypervisor's answer (its line may come before or
/// after the prompt).
fn memory(vm: &mut Qemu) -> Result<Memory, String> {
    let from = vm.cursor();
    run(vm, "xl debug-keys m")?;
    let line = vm.wait_until("the `m` debug key's memory line", COMMAND, |log, cursor| {
        serial::find_line_from(log, from, |l| {
            l.contains("MiB free (") && l.contains(" frames); heap ")
        })
        .map(|(l, next)| (l.to_string(), next.max(cursor)))
    })?;
    parse_memory(&line).ok_or_else(|| format!("the `m` debug key printed {line:?}"))
}

/// Free frames, heap growth allowed for, back at `want` within [`FRAME_ROUNDS`]; `what`
/// names the step for the error.
fn frames_back(vm: &mut Qemu, want: &Memory, what: &str) -> Result<(), String> {
    let mut last = None;
    for _ in 0..FRAME_ROUNDS {
        let now = memory(vm)?;
        match now.free_frames_since(want) {
            Some(free) if free == want.free_frames => return Ok(()),
            Some(free) => last = Some((now, free)),
            None => return Err(format!("the heap shrank: {want:?} -> {now:?}")),
        }
    }
    let (now, free) = last.unwrap_or((*want, want.free_frames));
    Err(format!(
        "after {what}: {} free frames (heap growth counted), {} before; not back: {} \
         ({want:?} -> {now:?})",
        free,
        want.free_frames,
        want.free_frames as i64 - free as i64
    ))
}

/// What the web domU's page said.
#[derive(Debug)]
struct Page {
    request: u64,
    uptime_ms: u64,
}

/// One `GET /` of the web domU at host port `port`, tried again (a connection QEMU's forward
/// accepts and drops, a domU still taking its address) until `bound` has passed.
fn get(port: u16, bound: Duration) -> Result<Page, String> {
    use std::io::{Read, Write};
    use std::net::{Ipv4Addr, SocketAddr, TcpStream};
    let deadline = Instant::now() + bound;
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let mut last = String::new();
    while Instant::now() < deadline {
        let attempt = || -> Result<String, String> {
            let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
                .map_err(|e| format!("connect: {e}"))?;
            s.set_read_timeout(Some(Duration::from_secs(10)))
                .map_err(|e| e.to_string())?;
            s.write_all(b"GET / HTTP/1.0\r\nHost: web\r\n\r\n")
                .map_err(|e| format!("write: {e}"))?;
            let mut body = Vec::new();
            s.read_to_end(&mut body).map_err(|e| format!("read: {e}"))?;
            String::from_utf8(body).map_err(|e| format!("not UTF-8: {e}"))
        };
        match attempt() {
            Ok(r) if r.starts_with("HTTP/1.0 200 OK") => return parse_page(&r),
            Ok(r) => last = format!("response {r:?}"),
            Err(e) => last = e,
        }
        // A refused connection returns at once: pace the next attempt (not a synchronisation:
        // the loop is bounded by the deadline whatever the pace).
        std::thread::sleep(Duration::from_millis(500));
    }
    Err(format!(
        "no HTTP answer from the web domU through the port forward in {bound:?}: {last}"
    ))
}

/// The request counter and uptime of the web demo's page (`xenia_demos::web::page`).
fn parse_page(r: &str) -> Result<Page, String> {
    if !r.contains("<p>domain: web</p>") {
        return Err(format!("not the web domU's page: {r:?}"));
    }
    let field = |name: &str| {
        r.split(&format!("<p>{name}: "))
            .nth(1)
            .and_then(|rest| rest.split("</p>").next())
            .map(str::to_string)
    };
    let request = field("request")
        .and_then(|n| n.trim().parse().ok())
        .ok_or_else(|| format!("no request counter in {r:?}"))?;
    let uptime_ms = field("uptime")
        .and_then(|u| {
            let (s, ms) = u.trim().strip_suffix(" s")?.split_once('.')?;
            Some(s.parse::<u64>().ok()? * 1000 + ms.parse::<u64>().ok()?)
        })
        .ok_or_else(|| format!("no uptime in {r:?}"))?;
    Ok(Page { request, uptime_ms })
}

/// A GET that must be the web domU's `n`th, later than `after`.
fn get_next(port: u16, bound: Duration, n: u64, after: &Page, when: &str) -> Result<Page, String> {
    let page = get(port, bound).map_err(|e| format!("{when}: {e}"))?;
    if page.request != n || page.uptime_ms <= after.uptime_ms {
        return Err(format!(
            "{when}: the web domU should answer request {n} later than {after:?}: {page:?}"
        ));
    }
    Ok(page)
}

/// The domains of `xl list` without their states (a running domain is `r` or `b` by chance).
fn domains(rows: &[Row]) -> Vec<(&str, u32, u64, u32)> {
    rows.iter()
        .map(|r| (r.name.as_str(), r.id, r.mem, r.vcpus))
        .collect()
}

/// The row named `name`, running or blocked (not paused, shut down or crashed).
fn live<'a>(rows: &'a [Row], name: &str) -> Result<&'a Row, String> {
    let row = rows
        .iter()
        .find(|r| r.name == name)
        .ok_or_else(|| format!("`xl list` has no {name}: {rows:?}"))?;
    if !(row.state.contains('r') || row.state.contains('b')) || row.state.contains('c') {
        return Err(format!("{name} should be running: {row:?}"));
    }
    Ok(row)
}

/// `linux_side_by_side`: the web demo (a ring-1 domU) is created and answers GET 1; Linux is
/// created beside it with `xl create -c /etc/xen/debian.cfg`; while Linux boots the web domU
/// answers GET 2, and once Linux is at its shell GET 3 (the counter and the uptime move on);
/// Linux's shell answers; detached, `xl list` shows both running (debian with its 256 MiB,
/// web with 16); `xl destroy debian` gives back every frame Linux had (free frames, heap
/// growth counted, exactly as before Linux was created) and the list as it was; the web
/// domU answers GET 4; `xl destroy web` then gives back every frame since the start. No
/// `BUG`, `Oops`, `WARNING:`, `Call Trace`, panic or crash line, no `ENOSYS` at
/// `loglvl=debug`.
pub fn side_by_side(ctx: &Context) -> Result<(), String> {
    if let Some(reason) = super::linux::skip_reason(ctx)? {
        println!("scenario {}: {reason}", ctx.name());
        ctx.note(reason);
        return Ok(());
    }
    let ws = ctx.workspace();
    let mut machine = ctx
        .machine()
        .memory_mib(512)
        .hv_options(&format!("{} loglvl=debug", crate::iso::DEFAULT_HV_OPTIONS));
    for module in crate::iso::DEFAULT_MODULES {
        machine = machine.module(ws.require_artifact(module.artifact)?, module.cmdline);
    }
    let mut vm = machine.nic(&[(WEB_IP, 80)])?.boot()?;
    let port = vm
        .host_port(WEB_IP, 80)
        .ok_or("the machine has no forward to 10.0.2.20:80")?;
    vm.wait_for(PROMPT, Duration::from_secs(180))?;
    let from = vm.cursor();
    let list_start = parse_list(&run(&mut vm, "xl list")?)?;
    let mem_start = memory(&mut vm)?;

    // The ring-1 domU, at work.
    let out = run(&mut vm, "xl create /etc/xen/web.cfg")?;
    if !out.contains("Domain web created with id") {
        return Err(format!("xl create of the web domU failed: {out:?}"));
    }
    let first = get(port, WEB_UP)?;
    if first.request != 1 {
        return Err(format!("the web domU's first page: {first:?}"));
    }
    let list_web = parse_list(&run(&mut vm, "xl list")?)?;
    live(&list_web, "web")?;
    let mem_web = memory(&mut vm)?;

    // Linux beside it: the web domU answers while Linux boots, and at Linux's shell.
    let start = Instant::now();
    vm.send(&format!("xl create -c {CONFIG}\r"))?;
    vm.wait_for("Ctrl-] detaches", COMMAND)?;
    let during = get_next(port, HTTP, 2, &first, "while Linux boots")?;
    if let Err(e) = vm.wait_for_line("Run /init as init process", BOOT) {
        // The hypervisor's view, for the log (as `linux::boot_debian`): domains, vCPU
        // registers, timers and event flags, run queues, ports; the help line comes last.
        vm.send("\x01\x01\x01qdreh")?;
        let _ = vm.wait_for("gives the input back to dom0", COMMAND);
        return Err(e);
    }
    vm.wait_for("xenia-initramfs: ready", BOOT)?;
    vm.wait_for(SHELL, COMMAND)?;
    let booted = start.elapsed();
    let beside = get_next(port, HTTP, 3, &during, "with Linux at its shell")?;
    vm.send("echo side-by-side-$((6*7))\r")?;
    vm.wait_for_line("side-by-side-42", COMMAND)?;
    vm.wait_for(SHELL, COMMAND)?;
    vm.send("\x1d")?;
    vm.wait_for(PROMPT, COMMAND)?;
    let both = parse_list(&run(&mut vm, "xl list")?)?;
    let debian = live(&both, "debian")?;
    let web = live(&both, "web")?;
    if !(250..=256).contains(&debian.mem) || !(15..=16).contains(&web.mem) {
        return Err(format!(
            "`xl list` should show debian with 256 MiB and web with 16: {both:?}"
        ));
    }

    // Destroying Linux gives back every frame it had; the web domU goes on.
    run(&mut vm, "xl destroy debian")?;
    let after = parse_list(&run(&mut vm, "xl list")?)?;
    if domains(&after) != domains(&list_web) {
        return Err(format!(
            "after xl destroy debian: {list_web:?} -> {after:?}"
        ));
    }
    live(&after, "web")?;
    frames_back(&mut vm, &mem_web, "xl destroy debian")?;
    let fourth = get_next(port, HTTP, 4, &beside, "after Linux was destroyed")?;

    // Then the web domU: every frame since the start.
    run(&mut vm, "xl destroy web")?;
    let end = parse_list(&run(&mut vm, "xl list")?)?;
    if domains(&end) != domains(&list_start) {
        return Err(format!("after xl destroy web: {list_start:?} -> {end:?}"));
    }
    frames_back(&mut vm, &mem_start, "xl destroy web")?;
    super::linux::clean_session(&vm, from)?;
    ctx.note(format!(
        "Linux reached its shell in {:.1} s beside the web domU, which answered requests 2 \
         and 3 meanwhile (uptime {:.1} s -> {:.1} s) and 4 after; every frame back after each \
         destroy ({} free frames with web, {} at the start)",
        booted.as_secs_f64(),
        first.uptime_ms as f64 / 1000.0,
        fourth.uptime_ms as f64 / 1000.0,
        mem_web.free_frames,
        mem_start.free_frames
    ));
    vm.kill();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_line_parses() {
        let m = parse_memory(
            "(XEN) keys: memory: 301 MiB free (77123 frames); heap 123456 of 4194304 bytes in use",
        )
        .unwrap();
        assert_eq!(
            m,
            Memory {
                free_frames: 77123,
                heap_bytes: 4194304
            }
        );
        let later = Memory {
            free_frames: 77123 - 512,
            heap_bytes: 4194304 + (2 << 20),
        };
        assert_eq!(later.free_frames_since(&m), Some(77123));
        assert_eq!(m.free_frames_since(&later), None);
        assert!(parse_memory("memory: 301 MiB free (77123 frames)").is_none());
    }

    #[test]
    fn page_parses() {
        let r = "HTTP/1.0 200 OK\r\n\r\n<p>domain: web</p>\n<p>uptime: 12.034 s</p>\n<p>request: 3</p>\n";
        let p = parse_page(r).unwrap();
        assert_eq!((p.request, p.uptime_ms), (3, 12_034));
        assert!(parse_page("HTTP/1.0 200 OK\r\n\r\n<p>domain: kv</p>").is_err());
    }
}
