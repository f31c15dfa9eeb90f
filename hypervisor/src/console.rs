//! The hypervisor's console: the `log` backend writing to COM1, the screen and the dmesg
//! ring that `xl dmesg` reads (DESIGN.md §8, §13), dom0's terminal output on COM1 and the
//! screen, and the PS/2 keyboard's input.
//!
//! The screen (VGA text mode or the boot loader's framebuffer) and the keyboard are the
//! hypervisor's unless `console=com1` leaves them to dom0 (`options::Console`). The screen is
//! attached once paging is up ([`attach_screen`]); what was logged before is replayed from the
//! dmesg ring, so the boot banner shows. Log lines show in colour by level: warnings yellow,
//! errors red, debug grey.
//!
//! Line format, as Xen's: every line the hypervisor writes starts with `(XEN) `, then the
//! stamp `console_timestamps=` asks for (none by default), then the text: info lines plain
//! (the boot-log contract reads the text after `(XEN) `), other levels after a `warning: `,
//! `error: `, `debug: ` or `trace: ` prefix. Guests' lines carry `(d<id>) ` instead, and dom0's
//! own terminal output goes out as it wrote it.

use core::fmt::{self, Write};
use core::sync::atomic::{AtomicBool, AtomicU8, Ordering};

use spin::Mutex;

use crate::arch::x86_64::screen::{PixelMemory, TextMemory};
use crate::arch::x86_64::serial::Serial;
use crate::dmesg::LogRing;
use crate::domain::ConsoleLine;
use crate::time::Stamps;
use xenia_core::screen::{self, Surface, Terminal};

/// `console_timestamps=`, as a [`Stamps`] number.
static STAMPS: AtomicU8 = AtomicU8::new(Stamps::None as u8);

/// What each of the hypervisor's lines starts with.
const PREFIX: &str = "(XEN) ";

/// Bytes of log kept for `xl dmesg` (Xen's default console ring is 16 KiB; boot logs
/// with a few domains are longer).
const RING_BYTES: usize = 64 * 1024;

struct Console {
    serial: Serial,
    /// The log goes to COM1 (`console=`).
    serial_enabled: bool,
    /// The log goes to the screen (`console=`), if there is one.
    screen_enabled: bool,
    screen: Option<Screen>,
    /// The screen colour of the record being written.
    attr: u8,
    ring: LogRing<RING_BYTES>,
}

/// The screen: its text grid and the memory it is drawn into.
struct Screen {
    term: Terminal,
    memory: ScreenMemory,
}

enum ScreenMemory {
    Text(TextMemory),
    Pixels(PixelMemory),
}

impl Screen {
    /// Draws what changed.
    fn flush(&mut self) {
        match &mut self.memory {
            ScreenMemory::Text(m) => self.term.flush(m),
            ScreenMemory::Pixels(m) => self.term.flush(m),
        }
    }
}

/// Sends drawing to whichever memory the screen has.
impl Surface for ScreenMemory {
    fn draw(&mut self, col: usize, row: usize, cell: screen::Cell) {
        match self {
            ScreenMemory::Text(m) => m.draw(col, row, cell),
            ScreenMemory::Pixels(m) => m.draw(col, row, cell),
        }
    }
}

static CONSOLE: Mutex<Console> = Mutex::new(Console {
    serial: Serial::com1(),
    serial_enabled: true,
    screen_enabled: true,
    screen: None,
    attr: screen::ATTR_NORMAL,
    ring: LogRing::new(),
});

/// The hypervisor owns the PS/2 keyboard.
static KEYBOARD_OWNED: AtomicBool = AtomicBool::new(false);
/// The keyboard's decoding state (pCPU 0 reads it, in `poll_console`).
static KEYBOARD: Mutex<xenia_core::keyboard::Keyboard> =
    Mutex::new(xenia_core::keyboard::Keyboard::new());

impl Console {
    fn flush_screen(&mut self) {
        if let Some(s) = &mut self.screen {
            s.flush();
        }
    }
}

impl Write for Console {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.ring.write(s.as_bytes());
        if self.serial_enabled {
            self.serial.write_bytes(s.as_bytes());
        }
        if self.screen_enabled
            && let Some(screen) = &mut self.screen
        {
            screen.term.write_log(s.as_bytes(), self.attr);
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
        console.attr = match record.level() {
            log::Level::Error => screen::ATTR_ERROR,
            log::Level::Warn => screen::ATTR_WARNING,
            log::Level::Info => screen::ATTR_NORMAL,
            log::Level::Debug | log::Level::Trace => screen::ATTR_DEBUG,
        };
        let mut lines = Lines {
            console: &mut console,
            at_start: true,
        };
        let _ = writeln!(lines, "{prefix}{}", record.args());
        console.attr = screen::ATTR_NORMAL;
        console.flush_screen();
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
pub fn configure(console: crate::options::Console, level: log::LevelFilter, stamps: Stamps) {
    let _held = crate::lockorder::Held::new(crate::lockorder::Level::Console);
    {
        let mut c = CONSOLE.lock();
        c.serial_enabled = console.com1;
        c.screen_enabled = console.vga;
    }
    STAMPS.store(stamps as u8, Ordering::Relaxed);
    log::set_max_level(level);
}

/// Takes the screen GRUB left (`console=` permitting): maps its memory, clears it and shows
/// the log so far. Once, at boot, after the hypervisor's page tables are up.
pub fn attach_screen(found: Option<&crate::boot_info::Screen>, console: crate::options::Console) {
    use crate::boot_info::Screen as Found;
    if !console.owns_screen() {
        log::info!(target: "console", "screen: left to dom0 (console=com1)");
        return;
    }
    let Some(found) = found else {
        log::info!(target: "console", "screen: none reported by the boot loader; serial console only");
        return;
    };
    let (memory, cols, rows, step) = match *found {
        Found::Text {
            address,
            cols,
            rows,
        } => {
            let (cols, rows) = (cols.min(255) as usize, rows.min(255) as usize);
            match TextMemory::map(address, cols, rows) {
                Ok(m) => (ScreenMemory::Text(m), cols, rows, 1),
                Err(e) => {
                    log::warn!(target: "console", "screen: cannot map text memory at {address:#x}: {e:?}");
                    return;
                }
            }
        }
        Found::Pixels {
            address,
            pitch,
            width,
            height,
            format,
        } => {
            let (w, h) = (width.min(8192) as usize, height.min(8192) as usize);
            match PixelMemory::map(address, pitch as usize, w, h, format) {
                Ok(m) => {
                    let (cols, rows) = m.cells();
                    // A framebuffer is slow to redraw: scroll a quarter of the screen at once.
                    (ScreenMemory::Pixels(m), cols, rows, rows / 4)
                }
                Err(e) => {
                    log::warn!(target: "console", "screen: cannot map the framebuffer at {address:#x}: {e:?}");
                    return;
                }
            }
        }
    };
    let Some(term) = Terminal::new(cols, rows, step) else {
        log::warn!(target: "console", "screen: no memory for a {cols}x{rows} text grid; serial console only");
        return;
    };
    let mut screen = Screen { term, memory };
    {
        let _held = crate::lockorder::Held::new(crate::lockorder::Level::Console);
        let mut c = CONSOLE.lock();
        if c.screen_enabled {
            // The log so far, coloured by level as it would have been.
            let mut buf = [0u8; 512];
            let mut from = 0;
            let mut line_attr = screen::ATTR_NORMAL;
            let mut at_start = true;
            loop {
                let r = c.ring.read_from(from, &mut buf);
                if r.copied == 0 {
                    break;
                }
                for piece in buf[..r.copied].split_inclusive(|&b| b == b'\n') {
                    if at_start {
                        line_attr = replay_attr(piece);
                    }
                    screen.term.write_log(piece, line_attr);
                    at_start = piece.ends_with(b"\n");
                }
                from = r.next;
            }
        }
        screen.flush();
        c.screen = Some(screen);
    }
    let kind = match found {
        Found::Text { .. } => "VGA text",
        Found::Pixels { .. } => "framebuffer",
    };
    log::info!(target: "console", "screen: {kind}, {cols}x{rows} characters");
}

/// The colour of a replayed log line, from its level's prefix.
fn replay_attr(line: &[u8]) -> u8 {
    let text = line.strip_prefix(PREFIX.as_bytes()).unwrap_or(line);
    if text.starts_with(b"error: ") {
        screen::ATTR_ERROR
    } else if text.starts_with(b"warning: ") {
        screen::ATTR_WARNING
    } else if text.starts_with(b"debug: ") || text.starts_with(b"trace: ") {
        screen::ATTR_DEBUG
    } else {
        screen::ATTR_NORMAL
    }
}

/// Takes the PS/2 keyboard when the hypervisor owns the screen and a controller answers:
/// its ports leave dom0's I/O bitmap and its IRQ is routed to the boot CPU. At boot, before
/// the I/O bitmap is filled and the I/O APIC programmed.
pub fn attach_keyboard(console: crate::options::Console) {
    if !console.owns_screen() {
        return;
    }
    if !crate::arch::x86_64::i8042::present() {
        log::info!(target: "console", "keyboard: no PS/2 controller; input from COM1 only");
        return;
    }
    crate::arch::x86_64::i8042::drain(32);
    KEYBOARD_OWNED.store(true, Ordering::SeqCst);
    crate::arch::x86_64::ioapic::want_keyboard();
    log::info!(target: "console", "keyboard: PS/2 (US layout), input as from COM1");
}

/// Whether the hypervisor owns the PS/2 keyboard.
pub fn keyboard_owned() -> bool {
    KEYBOARD_OWNED.load(Ordering::Relaxed)
}

/// The keyboard's bytes waiting, as a terminal would send them, a bounded number of
/// scancodes per poll (a controller that never empties cannot keep pCPU 0 here).
#[derive(Default)]
pub struct KeyboardInput {
    pending: xenia_core::keyboard::Keys,
    at: usize,
    scancodes: u32,
}

impl KeyboardInput {
    /// Scancodes read per poll at most.
    const BUDGET: u32 = 64;

    /// The next byte, if any.
    pub fn next(&mut self) -> Option<u8> {
        if !keyboard_owned() {
            return None;
        }
        loop {
            if let Some(&b) = self.pending.as_bytes().get(self.at) {
                self.at += 1;
                return Some(b);
            }
            if self.scancodes >= Self::BUDGET {
                return None;
            }
            self.scancodes += 1;
            let code = crate::arch::x86_64::i8042::try_read()?;
            self.pending = KEYBOARD.lock().feed(code);
            self.at = 0;
        }
    }
}

/// Shows a fatal message on the screen too, if the console lock is free (the failing code
/// may hold it: then only COM1 has it). For the panic handler, after COM1.
pub fn fatal_on_screen(args: fmt::Arguments<'_>) {
    let Some(mut c) = CONSOLE.try_lock() else {
        return;
    };
    if let Some(s) = &mut c.screen {
        struct Text<'a>(&'a mut Terminal);
        impl Write for Text<'_> {
            fn write_str(&mut self, s: &str) -> fmt::Result {
                self.0.write_log(s.as_bytes(), screen::ATTR_ERROR);
                Ok(())
            }
        }
        let _ = writeln!(Text(&mut s.term), "\n{PREFIX}{args}");
        s.flush();
    }
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
            console.flush_screen();
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
/// shows its hardware domain's console, and to the screen when the hypervisor has one (its
/// escape sequences carried out there). It does not go into the dmesg ring: that is the
/// hypervisor's log, and `console=` does not silence it: that option is about the
/// hypervisor's log only, and dom0's console is the operator's way in.
pub fn dom0_raw_output(bytes: &[u8]) {
    let _held = crate::lockorder::Held::new(crate::lockorder::Level::Console);
    let mut c = CONSOLE.lock();
    c.serial.write_raw(bytes);
    if let Some(screen) = &mut c.screen {
        screen.term.write_terminal(bytes);
        screen.flush();
    }
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
