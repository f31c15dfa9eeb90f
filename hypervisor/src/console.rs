//! The hypervisor's console: the `log` backend writing to COM1 and to the dmesg ring
//! that `xl dmesg` reads (DESIGN.md §8).
//!
//! Line format, as Xen's: every line the hypervisor writes starts with `(XEN) `, then the
//! stamp `console_timestamps=` asks for (none by default), then the text: info lines plain
//! (the boot-log contract reads the text after `(XEN) `), other levels after a `warning: `,
//! `error: `, `debug: ` or `trace: ` prefix. Guests' lines carry `(d<id>) ` instead, and dom0's
//! own terminal output goes out as it wrote it.

use core::fmt::{self, Write};
use core::sync::atomic::{AtomicU8, Ordering};

use spin::Mutex;

use crate::arch::x86_64::serial::Serial;
use crate::dmesg::LogRing;
use crate::domain::ConsoleLine;
use crate::time::Stamps;

/// `console_timestamps=`, as a [`Stamps`] number.
static STAMPS: AtomicU8 = AtomicU8::new(Stamps::None as u8);

/// What each of the hypervisor's lines starts with.
const PREFIX: &str = "(XEN) ";

/// Bytes of log kept for `xl dmesg` (Xen's default console ring is 16 KiB; boot logs
/// with a few domains are longer).
const RING_BYTES: usize = 64 * 1024;

struct Console {
    serial: Serial,
    serial_enabled: bool,
    ring: LogRing<RING_BYTES>,
}

static CONSOLE: Mutex<Console> = Mutex::new(Console {
    serial: Serial::com1(),
    serial_enabled: true,
    ring: LogRing::new(),
});

impl Write for Console {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.ring.write(s.as_bytes());
        if self.serial_enabled {
            self.serial.write_bytes(s.as_bytes());
        }
        Ok(())
    }
}

/// Writes a record's text with `(XEN) ` and the stamp at the start of each of its lines.
struct Lines<'a> {
    console: &'a mut Console,
    at_start: bool,
}

impl Write for Lines<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for piece in s.split_inclusive('\n') {
            if self.at_start {
                self.console.write_str(PREFIX)?;
                let stamps = Stamps::from_u8(STAMPS.load(Ordering::Relaxed)).unwrap_or_default();
                if stamps != Stamps::None {
                    use crate::time;
                    let boot = time::now_ns();
                    let wall = time::wallclock().sec.saturating_mul(1_000_000_000) + boot;
                    stamps.write(self.console, boot, wall, time::rdtsc())?;
                }
            }
            self.console.write_str(piece)?;
            self.at_start = piece.ends_with('\n');
        }
        Ok(())
    }
}

struct Logger;

impl log::Log for Logger {
    fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &log::Record<'_>) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let prefix = match record.level() {
            log::Level::Error => "error: ",
            log::Level::Warn => "warning: ",
            log::Level::Info => "",
            log::Level::Debug => "debug: ",
            log::Level::Trace => "trace: ",
        };
        let _held = crate::lockorder::Held::new(crate::lockorder::Level::Console);
        let mut console = CONSOLE.lock();
        let mut lines = Lines {
            console: &mut console,
            at_start: true,
        };
        let _ = writeln!(lines, "{prefix}{}", record.args());
    }

    fn flush(&self) {}
}

static LOGGER: Logger = Logger;

/// Programs COM1 and installs the logger at `info`. Runs first thing on the boot CPU.
pub fn init() {
    let _held = crate::lockorder::Held::new(crate::lockorder::Level::Console);
    CONSOLE.lock().serial.init();
    // A second call would only fail because a logger is already set, which is harmless.
    let _ = log::set_logger(&LOGGER);
    log::set_max_level(log::LevelFilter::Info);
}

/// Applies the `console=`, `loglvl=` and `console_timestamps=` options.
pub fn configure(serial_enabled: bool, level: log::LevelFilter, stamps: Stamps) {
    let _held = crate::lockorder::Held::new(crate::lockorder::Level::Console);
    CONSOLE.lock().serial_enabled = serial_enabled;
    STAMPS.store(stamps as u8, Ordering::Relaxed);
    log::set_max_level(level);
}

/// A writer for fatal paths (exceptions, panics): straight to COM1, bypassing the
/// console lock, which the failing code may hold.
pub fn emergency() -> Serial {
    Serial::com1()
}

/// Writes one line on the fatal path (see [`emergency`]).
pub fn emergency_line(text: &str) {
    let mut out = emergency();
    let _ = writeln!(out, "{PREFIX}{text}");
}

/// Output a guest wrote with `console_io`: shown line by line, each line marked with
/// the domain it came from. The unfinished line is the domain's own (`line`, fixed size,
/// freed with the domain); a line longer than it is shown in pieces, never cut short.
/// Nothing here allocates.
pub fn guest_output(dom: guest_abi::types::DomId, line: &mut ConsoleLine, bytes: &[u8]) {
    for &b in bytes {
        if b == b'\n' || line.is_full() {
            let _held = crate::lockorder::Held::new(crate::lockorder::Level::Console);
            let mut console = CONSOLE.lock();
            let _ = writeln!(console, "(d{dom}) {}", Shown(line.text()));
            line.clear();
            if b == b'\n' {
                continue;
            }
        }
        if b != b'\r' {
            line.push(b); // alloc: none: a fixed-size ConsoleLine
        }
    }
}

/// Guest text as shown on the console: invalid UTF-8 as U+FFFD, control characters but tab
/// as `?`, so a guest cannot move the cursor or clear the operator's screen.
struct Shown<'a>(&'a [u8]);

impl fmt::Display for Shown<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use fmt::Write as _;
        for chunk in self.0.utf8_chunks() {
            for c in chunk.valid().chars() {
                f.write_char(if c.is_control() && c != '\t' { '?' } else { c })?;
            }
            if !chunk.invalid().is_empty() {
                f.write_char(char::REPLACEMENT_CHARACTER)?;
            }
        }
        Ok(())
    }
}

/// Output dom0 wrote with `CONSOLEIO_XENIA_WRITE_RAW`: its own terminal, straight to the
/// serial line, byte for byte (prompts without a newline, echo, escape sequences), as Xen
/// shows its hardware domain's console. It does not go into the dmesg ring: that is the
/// hypervisor's log, and `console=none` does not silence it: that option is about the
/// hypervisor's log only, and dom0's console is the operator's way in.
pub fn dom0_raw_output(bytes: &[u8]) {
    let _held = crate::lockorder::Held::new(crate::lockorder::Level::Console);
    CONSOLE.lock().serial.write_raw(bytes);
}

/// Copies the log from position `from` (the oldest kept byte if older) into `out` for
/// `xl dmesg`; returns the bytes copied and the position to continue from.
pub fn read_log(from: u64, out: &mut [u8]) -> (usize, u64) {
    let _held = crate::lockorder::Held::new(crate::lockorder::Level::Console);
    let console = CONSOLE.lock();
    let r = console.ring.read_from(from, out);
    (r.copied, r.next)
}

/// Empties the log (`xl dmesg -c`): later reads see only what is written from now on.
pub fn clear_log() {
    let _held = crate::lockorder::Held::new(crate::lockorder::Level::Console);
    CONSOLE.lock().ring.clear();
}

/// Says where serial input goes now, and how to switch (Xen's wording: the switch
/// character as `CTRL-<letter>`; none when switching is off).
pub fn announce_input(to_xen: bool, code: Option<u8>) {
    let target = if to_xen { "Xenia" } else { "DOM0" };
    match code {
        Some(c) => {
            let letter = char::from(b'a' + c.saturating_sub(1) % 26);
            log::info!(
                "*** Serial input to {target} (type 'CTRL-{letter}' three times to switch input{})",
                if to_xen {
                    "; 'h' for the debug keys"
                } else {
                    ""
                }
            );
        }
        None => log::info!("*** Serial input to {target}"),
    }
}
