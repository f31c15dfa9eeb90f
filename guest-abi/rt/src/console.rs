//! The console: whole lines to the hypervisor's `console_io`, or to the console ring a domU
//! shares with dom0's console backend ("Consoles"; guest-abi `console` and `device_page`).
//!
//! **The hypervisor console.** The hypervisor prints a domain's `console_io` output line by
//! line with a `(d<id>) ` prefix, so the runtime hands it whole lines: text is collected
//! until a newline (or until the line buffer is full) and then written with one hypercall.
//! A handler that prints while the main flow is in the middle of a line (only fatal-error
//! paths do) bypasses the buffer. Only dom0 can read from it ([`read`]).
//!
//! **The console ring.** A domU's console is a page shared with the backend in dom0: two
//! byte rings, output (guest → backend) and input (backend → guest), with free-running
//! indexes ([`XenconsInterface`]). The builder names it in `start_info.console` (machine
//! frame and event channel), lists it in the device page, and maps it two pages after
//! `start_info`. [`use_ring`] switches the console to it; from then on lines end in CR LF
//! (what a terminal needs). The rules kept because the backend may be slow or absent:
//!
//! - **A full output ring is waited on, boundedly.** The writer sleeps
//!   ([`events::block_until`]; `VIRQ_TIMER` must be bound) until the backend frees room, for
//!   at most [`STALL_TIMEOUT_NS`] without progress; then the output is dropped and later
//!   writes don't wait, until the backend consumes again. Nothing spins.
//! - **Input is consumed, then acknowledged** (a notification), so the backend can refill
//!   the ring.
//! - **Before a shutdown, flush** ([`flush`], which [`crate::check::shutdown`] calls): wait,
//!   boundedly ([`FLUSH_TIMEOUT_NS`]), until the backend has read everything, or the last
//!   lines die with the domain.

use core::fmt::{self, Write};
use core::sync::atomic::{AtomicBool, AtomicPtr, AtomicU32, Ordering};

use guest_abi::calls;
use guest_abi::console::XenconsInterface;
use guest_abi::device_page::{DEVICE_CONSOLE, DevicePage, console_ring_va, device_page_va};
use guest_abi::event::EvtchnPort;
use guest_abi::start_info::StartInfo;
use guest_abi::types::PAGE_SIZE;

use crate::events;
use crate::global::Global;
use crate::time::{NS_PER_MS, now_ns};

/// Longest line handed to the hypervisor or the ring in one write.
const LINE_MAX: usize = 256;

/// How long a writer waits for room in a full output ring before it drops output.
pub const STALL_TIMEOUT_NS: u64 = 5_000 * NS_PER_MS;
/// How often a waiting writer notifies the backend again (a notification sent before the
/// backend bound its end of the channel is lost).
const RENOTIFY_NS: u64 = 100 * NS_PER_MS;
/// How long [`flush`] waits for the backend before a shutdown, at most.
pub const FLUSH_TIMEOUT_NS: u64 = 2_000 * NS_PER_MS;

/// The console ring; null while the hypervisor console is used.
static RING: AtomicPtr<XenconsInterface> = AtomicPtr::new(core::ptr::null_mut());
/// The console ring's event channel.
static PORT: AtomicU32 = AtomicU32::new(0);
/// The backend let a full ring sit for [`STALL_TIMEOUT_NS`]: drop output instead of waiting.
static STALLED: AtomicBool = AtomicBool::new(false);

/// Why [`use_ring`] kept the hypervisor console.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NoRing {
    /// `start_info.console` names no ring (dom0, or a domU built without a console).
    None,
    /// `start_info.console` and the device page disagree.
    Disagrees,
}

/// Switches the console to the ring `start_info.console` names, after checking it against
/// the device page (a device page of a version this runtime does not know is skipped).
/// Call it once, early, with events masked; returns the ring's event channel.
pub fn use_ring(si: &StartInfo) -> Result<EvtchnPort, NoRing> {
    let si_va = si as *const StartInfo as u64;
    let mfn = si.console.domu_mfn();
    let port = si.console.domu_evtchn();
    if mfn.0 == 0 {
        return Err(NoRing::None);
    }
    // SAFETY: the builder maps the device page here, supervisor and writable, for as long
    // as the bootstrap mappings stay (guest-abi `device_page`); it is plain bytes.
    let page =
        unsafe { core::slice::from_raw_parts(device_page_va(si_va) as *const u8, PAGE_SIZE) };
    let listed = DevicePage::from_bytes(page)
        .filter(DevicePage::is_valid)
        .map(|devices| devices.find(DEVICE_CONSOLE, 0).copied());
    let agrees = match listed {
        Some(Some(entry)) => entry.ring_mfn == mfn && entry.evtchn == port,
        Some(None) => false,
        None => true,
    };
    if !agrees {
        return Err(NoRing::Disagrees);
    }
    flush();
    PORT.store(port, Ordering::Relaxed);
    RING.store(
        console_ring_va(si_va) as *mut XenconsInterface,
        Ordering::Release,
    );
    Ok(port)
}

/// The console ring's event channel, if the console is the ring.
pub fn ring_port() -> Option<EvtchnPort> {
    ring().map(|_| PORT.load(Ordering::Relaxed))
}

fn ring() -> Option<&'static XenconsInterface> {
    let p = RING.load(Ordering::Acquire);
    // SAFETY: a non-null RING is the console ring page the builder mapped writable for the
    // domain's lifetime (see use_ring); every bit pattern is a valid XenconsInterface
    // (atomics only), and the backend's writes to the shared page are atomic too.
    (!p.is_null()).then(|| unsafe { &*p })
}

/// Writes `bytes` to the ring, waiting boundedly for room (see the module docs).
fn ring_write(ring: &XenconsInterface, bytes: &[u8]) {
    let port = PORT.load(Ordering::Relaxed);
    let mut rest = bytes;
    let mut last_progress = now_ns();
    let mut next_notify = last_progress;
    while !rest.is_empty() {
        let n = ring.write_output(rest);
        if n > 0 {
            rest = &rest[n..];
            let _ = calls::evtchn_send(port);
            STALLED.store(false, Ordering::Relaxed);
            last_progress = now_ns();
            next_notify = last_progress + RENOTIFY_NS;
            continue;
        }
        // Full. Wait for the backend, unless it already let us down.
        let now = now_ns();
        if STALLED.load(Ordering::Relaxed) || now >= last_progress + STALL_TIMEOUT_NS {
            STALLED.store(true, Ordering::Relaxed);
            return;
        }
        if now >= next_notify {
            let _ = calls::evtchn_send(port);
            next_notify = now + RENOTIFY_NS;
        }
        events::block_until(Some(next_notify.min(last_progress + STALL_TIMEOUT_NS)));
    }
}

/// Writes `bytes` as they are, now, bypassing the line buffer: for a terminal's echo of
/// typed characters.
pub fn write_raw(bytes: &[u8]) {
    match ring() {
        Some(ring) => ring_write(ring, bytes),
        // A failed write has nowhere to be reported; the reader sees the missing output.
        None => {
            let _ = calls::console_write(bytes);
        }
    }
}

/// Moves pending input into `buf` and returns how many bytes that was (0 when there is
/// none, or the console cannot be read: `console_io` reads are dom0's). Never waits.
pub fn read(buf: &mut [u8]) -> usize {
    match ring() {
        Some(ring) => {
            let n = ring.read_input(buf);
            if n > 0 {
                // Room was freed in the input ring: tell the backend.
                let _ = calls::evtchn_send(PORT.load(Ordering::Relaxed));
            }
            n
        }
        None => calls::console_read(buf).map_or(0, |n| n as usize),
    }
}

/// Waits until the backend has read all ring output, at most `timeout_ns`.
fn drain_ring(ring: &XenconsInterface, timeout_ns: u64) {
    let port = PORT.load(Ordering::Relaxed);
    let deadline = now_ns().saturating_add(timeout_ns);
    loop {
        let prod = ring.out_prod.load(Ordering::Relaxed);
        if ring.out_cons.load(Ordering::Acquire) == prod || STALLED.load(Ordering::Relaxed) {
            return;
        }
        let now = now_ns();
        if now >= deadline {
            return;
        }
        let _ = calls::evtchn_send(port);
        events::block_until(Some((now + RENOTIFY_NS).min(deadline)));
    }
}

#[derive(Clone, Copy)]
struct Line {
    bytes: [u8; LINE_MAX],
    len: usize,
}

/// The line being collected. Only the holder of `BUSY` touches it.
static LINE: Global<Line> = Global::new(Line {
    bytes: [0; LINE_MAX],
    len: 0,
});
static BUSY: AtomicBool = AtomicBool::new(false);

fn write_line(bytes: &[u8]) {
    match ring() {
        // A terminal wants CR LF.
        Some(ring) => match bytes.strip_suffix(b"\n") {
            Some(text) => {
                ring_write(ring, text);
                ring_write(ring, b"\r\n");
            }
            None => ring_write(ring, bytes),
        },
        // A failed write has nowhere to be reported; the reader sees the missing output.
        None => {
            let _ = calls::console_write(bytes);
        }
    }
}

fn with_line(f: impl FnOnce(&mut Line)) {
    // SAFETY: only the holder of BUSY gets here, so this is the only reference to the line.
    f(unsafe { &mut *LINE.as_ptr() })
}

/// Writes `bytes`, flushing at every newline.
pub fn write_bytes(bytes: &[u8]) {
    if BUSY.swap(true, Ordering::Acquire) {
        // A handler interrupted a print: do not touch the half-collected line.
        write_line(bytes);
        return;
    }
    with_line(|line| {
        for &b in bytes {
            line.bytes[line.len] = b;
            line.len += 1;
            if b == b'\n' || line.len == LINE_MAX {
                write_line(&line.bytes[..line.len]);
                line.len = 0;
            }
        }
    });
    BUSY.store(false, Ordering::Release);
}

/// Writes out an unfinished line, if any, and on the ring waits (at most
/// [`FLUSH_TIMEOUT_NS`]) until the backend has read everything.
pub fn flush() {
    if !BUSY.swap(true, Ordering::Acquire) {
        with_line(|line| {
            if line.len > 0 {
                write_line(&line.bytes[..line.len]);
                line.len = 0;
            }
        });
        BUSY.store(false, Ordering::Release);
    }
    if let Some(ring) = ring() {
        drain_ring(ring, FLUSH_TIMEOUT_NS);
    }
}

struct Console;

impl Write for Console {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        write_bytes(s.as_bytes());
        Ok(())
    }
}

/// Implementation of [`print!`](crate::print) and [`println!`](crate::println).
pub fn _print(args: fmt::Arguments) {
    let _ = Console.write_fmt(args);
}

/// Prints to the console, like `std::print!`.
#[macro_export]
macro_rules! print {
    ($($arg:tt)*) => ($crate::console::_print(format_args!($($arg)*)));
}

/// Prints a line to the console, like `std::println!`.
#[macro_export]
macro_rules! println {
    () => ($crate::console::_print(format_args!("\n")));
    ($($arg:tt)*) => ($crate::console::_print(format_args!("{}\n", format_args!($($arg)*))));
}
