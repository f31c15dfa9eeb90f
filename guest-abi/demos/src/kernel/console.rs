//! The console ("Consoles"; guest-abi `console` and `device_page`).
//!
//! A domU's console is a page shared with the console backend in dom0: two byte rings,
//! output (guest → backend) and input (backend → guest), with free-running indexes
//! ([`XenconsInterface`]). The builder names it Xen's way in `start_info.console` (machine
//! frame and event channel), lists it in the device page, and maps it two pages after
//! start_info ([`console_ring_va`]). To write, the guest appends to the output ring and
//! notifies the backend on the event channel; the backend notifies back when it consumed
//! output or produced input.
//!
//! The rules a frontend must keep, because the backend may be slow or absent:
//!
//! - **A full output ring is waited on, boundedly.** The writer sleeps until the backend
//!   frees room (its event or a re-notification timer wakes it), for at most
//!   [`STALL_TIMEOUT_NS`] without progress; then the output is dropped and later writes
//!   don't wait, until the backend consumes again. Nothing spins.
//! - **Input is consumed, then acknowledged** (a notification), so the backend can refill
//!   the ring.
//! - **Before powering off, flush** ([`flush`]): wait, boundedly, until the backend has read
//!   everything, or the last lines die with the domain.
//!
//! dom0, and a domU without a ring (or with `console=hypervisor` on its command line), use
//! the hypervisor console, `console_io`, instead: the hypervisor shows each line as
//! `(d<id>) ...`. Only dom0 can read from it.

use core::fmt::{self, Write};
use core::sync::atomic::{AtomicBool, AtomicPtr, AtomicU32, Ordering};

use guest_abi::calls;
use guest_abi::console::XenconsInterface;
use guest_abi::device_page::{DEVICE_CONSOLE, DevicePage, console_ring_va, device_page_va};
use guest_abi::event::{EvtchnPort, VIRQ_CONSOLE};
use guest_abi::start_info::{SIF_INITDOMAIN, StartInfo};
use guest_abi::types::PAGE_SIZE;
use xenia_demos::cmdline::{self, ConsoleChoice};

use super::events;
use super::time::{NS_PER_MS, now_ns};

/// How long a writer waits for room in a full output ring before it drops output.
pub const STALL_TIMEOUT_NS: u64 = 5_000 * NS_PER_MS;
/// How often a waiting writer notifies the backend again (a notification sent before the
/// backend bound its end of the channel is lost).
const RENOTIFY_NS: u64 = 100 * NS_PER_MS;
/// How long [`flush`] waits before a shutdown or crash, at most.
pub const FLUSH_TIMEOUT_NS: u64 = 2_000 * NS_PER_MS;

/// The console ring; null while the hypervisor console is used.
static RING: AtomicPtr<XenconsInterface> = AtomicPtr::new(core::ptr::null_mut());
/// The console ring's event channel.
static PORT: AtomicU32 = AtomicU32::new(0);
/// Whether `console_io` reads work (dom0 only).
static HYPERVISOR_INPUT: AtomicBool = AtomicBool::new(false);
/// The backend let a full ring sit for [`STALL_TIMEOUT_NS`]: drop output instead of waiting.
static STALLED: AtomicBool = AtomicBool::new(false);

/// The console chosen by [`init`], for the demos to report.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// The console ring, with its event channel.
    Ring(EvtchnPort),
    /// `console_io`; `true` if it can also read (dom0).
    Hypervisor(bool),
}

/// The console in use.
pub fn kind() -> Kind {
    if ring().is_some() {
        Kind::Ring(PORT.load(Ordering::Relaxed))
    } else {
        Kind::Hypervisor(HYPERVISOR_INPUT.load(Ordering::Relaxed))
    }
}

fn ring() -> Option<&'static XenconsInterface> {
    let p = RING.load(Ordering::Acquire);
    // SAFETY: a non-null RING is the console ring page the builder mapped writable for the
    // domain's lifetime (see init); every bit pattern is a valid XenconsInterface (atomics
    // only), and the backend's writes to the shared page are atomic too.
    (!p.is_null()).then(|| unsafe { &*p })
}

/// Chooses the console (see the [module docs](self)). Called once at boot, with events
/// masked.
pub fn init(si: &StartInfo, si_va: u64) {
    let choice = cmdline::console_choice(si.cmdline_bytes());
    let mfn = si.console.domu_mfn();
    let port = si.console.domu_evtchn();
    if si.flags & SIF_INITDOMAIN != 0 {
        // dom0 reads the serial line through console_io; VIRQ_CONSOLE says input came.
        let readable = calls::evtchn_bind_virq(VIRQ_CONSOLE, 0).is_ok();
        HYPERVISOR_INPUT.store(readable, Ordering::Relaxed);
    } else if mfn.0 != 0 && choice != Ok(Some(ConsoleChoice::Hypervisor)) {
        // Cross-check start_info against the device page (the device page is Xenia's
        // description of a domU's devices; a version this kernel does not know is skipped).
        // SAFETY: the builder maps the device page here, supervisor and writable, for as
        // long as the bootstrap mappings stay (guest-abi `device_page`); it is plain bytes.
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
        if agrees {
            PORT.store(port, Ordering::Relaxed);
            RING.store(
                console_ring_va(si_va) as *mut XenconsInterface,
                Ordering::Release,
            );
        } else {
            let _ = calls::console_write(
                b"start_info.console and the device page disagree; using console_io\n",
            );
        }
    }
    if let Err(word) = choice {
        let word = core::str::from_utf8(word).unwrap_or("?");
        crate::println!("unknown console={word} ignored (ring or hypervisor)");
    }
}

/// Writes `bytes` to the console (see the [module docs](self) for how long it may wait).
pub fn write(bytes: &[u8]) {
    let Some(ring) = ring() else {
        // The hypervisor console cannot fail in a way worth reporting.
        let _ = calls::console_write(bytes);
        return;
    };
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

/// Moves pending input into `buf` and returns how many bytes that was (0 when there is
/// none, or the console cannot be read). Never waits.
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
        None if HYPERVISOR_INPUT.load(Ordering::Relaxed) => {
            calls::console_read(buf).map_or(0, |n| n as usize)
        }
        None => 0,
    }
}

/// Waits until the backend has read all output, at most `timeout_ns`.
pub fn flush(timeout_ns: u64) {
    let Some(ring) = ring() else { return };
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

/// One line of output, formatted on the stack and written at once, so that a line reaches
/// the backend whole. Longer lines are cut at [`Line::MAX`] bytes.
pub struct Line {
    bytes: [u8; Line::MAX],
    len: usize,
}

impl Line {
    /// Longest line, end of line included.
    pub const MAX: usize = 256;

    /// An empty line.
    pub const fn new() -> Self {
        Line {
            bytes: [0; Line::MAX],
            len: 0,
        }
    }

    /// Ends the line with CR LF (what a terminal needs; the hypervisor console drops the
    /// CR) and writes it.
    pub fn finish(mut self) {
        let end = self.len.min(Line::MAX - 2);
        self.bytes[end..end + 2].copy_from_slice(b"\r\n");
        write(&self.bytes[..end + 2]);
    }
}

impl Write for Line {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let room = Line::MAX - 2 - self.len; // keep two bytes for the end of line
        let n = s.len().min(room);
        self.bytes[self.len..self.len + n].copy_from_slice(&s.as_bytes()[..n]);
        self.len += n;
        Ok(())
    }
}

/// Formats and writes one line (`println!`).
pub fn print_line(args: fmt::Arguments) {
    let mut line = Line::new();
    let _ = line.write_fmt(args);
    line.finish();
}

/// Writes one formatted line to the console.
#[macro_export]
macro_rules! println {
    ($($arg:tt)*) => { $crate::kernel::console::print_line(format_args!($($arg)*)) };
}
