//! dom0's terminal: the serial line through the hypervisor.
//!
//! Output goes out raw (`CONSOLEIO_XENIA_WRITE_RAW`), with `\n` turned into `\r\n` as a
//! terminal driver's `ONLCR` would. Input is what the hypervisor queued for dom0
//! (`CONSOLEIO_READ`), collected here as it arrives ([`pump`]).
//!
//! While programs run ([`begin_programs`] to [`end_programs`]) input goes through the line
//! discipline ([`Tty`]) as it arrives: programs read edited lines (or raw bytes, as they ask
//! with `TCSETS`), what is typed is echoed, and Ctrl-C becomes a pending `SIGINT`
//! ([`take_signals`]) that the scheduler sends to the foreground process group. Otherwise
//! the built-in shell reads the bytes as typed ([`take`]) and edits lines itself; input typed
//! ahead and not read by the programs is handed back to it when they end.

use alloc::collections::VecDeque;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};

use guest_abi::calls;
use spin::Mutex;
use xenia_dom0::tty::{Termios, Tty};

/// Most input bytes kept unread; beyond that, the oldest are dropped (the hypervisor's own
/// queue is bounded the same way).
const INPUT_MAX: usize = 4096;

static INPUT: Mutex<VecDeque<u8>> = Mutex::new(VecDeque::new());
/// The terminal programs see.
static TTY: Mutex<Option<Tty>> = Mutex::new(None);
/// Whether input goes through [`TTY`] (programs run).
static DISCIPLINE: AtomicBool = AtomicBool::new(false);
/// Signals typed and not yet sent (bit `n - 1` for signal `n`).
static SIGNALS: AtomicU64 = AtomicU64::new(0);
/// The last byte written, so that a `\r\n` a program wrote itself stays `\r\n`.
static LAST: Mutex<u8> = Mutex::new(0);
/// `VIRQ_CONSOLE` events counted when [`pump`] last read the console.
static CONSOLE_SEEN: AtomicU32 = AtomicU32::new(u32::MAX);

/// Writes `bytes` to the terminal.
pub fn write(bytes: &[u8]) {
    let mut out = [0u8; 512];
    let mut n = 0;
    let mut last = LAST.lock();
    for &b in bytes {
        if n + 2 > out.len() {
            let _ = calls::console_write_raw(&out[..n]);
            n = 0;
        }
        if b == b'\n' && *last != b'\r' {
            out[n] = b'\r';
            n += 1;
        }
        out[n] = b;
        n += 1;
        *last = b;
    }
    if n > 0 {
        let _ = calls::console_write_raw(&out[..n]);
    }
}

/// Writes `bytes` exactly as they are (the line editor's echo, which has its own `\r`).
pub fn write_raw(bytes: &[u8]) {
    for chunk in bytes.chunks(4096) {
        let _ = calls::console_write_raw(chunk);
    }
}

/// Writes a string.
pub fn print(s: &str) {
    write(s.as_bytes());
}

/// Moves what the hypervisor holds for dom0 into the input queue (through the line
/// discipline while programs run).
pub fn pump() {
    // The hypervisor raises VIRQ_CONSOLE whenever it queues input: with the port's count
    // unchanged there is nothing to read, and no `console_io` on every round of the
    // services. (Before the VIRQ is bound, and on the first call, it reads.)
    let port = crate::wait::console_port();
    if port != 0 && (port as usize) < xenia_guest_rt::events::TRACKED_PORTS {
        crate::wait::take_events();
        let count = xenia_guest_rt::events::count(port);
        if CONSOLE_SEEN.swap(count, Ordering::Relaxed) == count {
            return;
        }
    }
    let mut buf = [0u8; 256];
    loop {
        match calls::console_read(&mut buf) {
            Ok(n) if n > 0 && DISCIPLINE.load(Ordering::Relaxed) => {
                discipline(&buf[..n as usize]);
            }
            Ok(n) if n > 0 => {
                let mut input = INPUT.lock();
                for &b in &buf[..n as usize] {
                    if input.len() == INPUT_MAX {
                        input.pop_front();
                    }
                    input.push_back(b);
                }
            }
            _ => return,
        }
    }
}

/// Typed bytes through the line discipline: echo written, signals kept for the scheduler.
fn discipline(bytes: &[u8]) {
    let mut echo = Vec::new();
    let signals = with_tty(|t| t.input(bytes, &mut echo));
    write_raw(&echo);
    for sig in signals {
        SIGNALS.fetch_or(1 << (sig - 1), Ordering::Relaxed);
    }
}

/// Runs `f` on the programs' terminal.
pub fn with_tty<R>(f: impl FnOnce(&mut Tty) -> R) -> R {
    f(TTY.lock().get_or_insert_with(Tty::new))
}

/// Programs start to run (the built-in shell's `run`): input typed ahead goes through the
/// line discipline, with the terminal's settings as a new Linux terminal has them, and
/// `foreground` as the foreground process group.
pub fn begin_programs(foreground: u32) {
    with_tty(|t| {
        *t = Tty::new();
        t.foreground = foreground;
    });
    SIGNALS.store(0, Ordering::Relaxed);
    DISCIPLINE.store(true, Ordering::Relaxed);
    let ahead: Vec<u8> = INPUT.lock().drain(..).collect();
    discipline(&ahead);
}

/// The programs ended: input goes to the built-in shell again, settings a program left
/// (raw mode, no echo) are forgotten, and so are signals nobody is left to get.
pub fn end_programs() {
    DISCIPLINE.store(false, Ordering::Relaxed);
    // What was typed ahead and not read goes to the built-in shell, in front of anything
    // newer.
    let unread = with_tty(|t| {
        let unread = t.take_unread();
        *t = Tty::new();
        unread
    });
    let mut input = INPUT.lock();
    for &b in unread.iter().rev() {
        if input.len() == INPUT_MAX {
            input.pop_back();
        }
        input.push_front(b);
    }
    SIGNALS.store(0, Ordering::Relaxed);
}

/// Signals typed since the last call (bit `n - 1` for signal `n`), for the foreground group.
pub fn take_signals() -> u64 {
    SIGNALS.swap(0, Ordering::Relaxed)
}

/// Puts signals taken with [`take_signals`] back, for the scheduler to send.
pub fn put_back_signals(signals: u64) {
    SIGNALS.fetch_or(signals, Ordering::Relaxed);
}

/// Whether a typed signal waits to be sent.
pub fn signals_pending() -> bool {
    SIGNALS.load(Ordering::Relaxed) != 0
}

/// Whether a program's read of the terminal would return now.
pub fn readable() -> bool {
    with_tty(|t| t.readable())
}

/// A program's read: `None` when it must wait.
pub fn read(out: &mut [u8]) -> Option<usize> {
    with_tty(|t| t.read(out))
}

/// A program's write: `\n` → `\r\n` unless it turned `OPOST` off.
pub fn write_program(bytes: &[u8]) {
    let post = with_tty(|t| t.termios.oflag & xenia_dom0::tty::oflag::OPOST != 0);
    if post {
        write(bytes);
    } else {
        write_raw(bytes);
    }
}

/// The terminal's settings (`TCGETS`).
pub fn termios() -> Termios {
    with_tty(|t| t.termios)
}

/// Whether input is waiting for the built-in shell.
pub fn has_input() -> bool {
    !INPUT.lock().is_empty()
}

/// Takes up to `out.len()` bytes of input; returns how many.
pub fn take(out: &mut [u8]) -> usize {
    let mut input = INPUT.lock();
    let n = out.len().min(input.len());
    for (o, b) in out.iter_mut().zip(input.drain(..n)) {
        *o = b;
    }
    n
}

/// Formatted output to the terminal, like `print!`.
#[macro_export]
macro_rules! tprint {
    ($($arg:tt)*) => ($crate::term::print(&alloc::format!($($arg)*)));
}

/// Formatted output to the terminal with a newline, like `println!`; the line is kept in
/// the kernel's log too (`dmesg`).
#[macro_export]
macro_rules! tprintln {
    () => ($crate::term::print("\n"));
    ($($arg:tt)*) => ($crate::term::kernel_line(&alloc::format!("{}\n", format_args!($($arg)*))));
}

/// Bytes of the kernel's own log kept for `dmesg` (`syslog(2)`); the oldest lines go first.
pub const KLOG_BYTES: usize = 16 * 1024;

/// The kernel's log, as `syslog(2)` reads it: `<6>[seconds.micros] text` lines.
static KLOG: Mutex<VecDeque<u8>> = Mutex::new(VecDeque::new());

/// Prints a kernel line (ending in `\n`) and keeps it in the kernel's log.
pub fn kernel_line(line: &str) {
    print(line);
    let ns = xenia_guest_rt::time::now_ns();
    let stamp = alloc::format!(
        "<6>[{:5}.{:06}] ",
        ns / 1_000_000_000,
        ns % 1_000_000_000 / 1000
    );
    let mut log = KLOG.lock();
    for &b in stamp.as_bytes().iter().chain(line.as_bytes()) {
        if log.len() == KLOG_BYTES {
            // Whole lines go: up to and including the oldest newline.
            while log.pop_front().is_some_and(|c| c != b'\n') {}
        }
        log.push_back(b);
    }
}

/// The kernel's log: its last `max` bytes, from a line's start.
pub fn kernel_log(max: usize) -> Vec<u8> {
    let log = KLOG.lock();
    let skip = log.len().saturating_sub(max);
    let mut out: Vec<u8> = log.iter().skip(skip).copied().collect();
    if skip > 0
        && let Some(nl) = out.iter().position(|&b| b == b'\n')
    {
        out.drain(..=nl);
    }
    out
}

/// Empties the kernel's log (`dmesg -c`).
pub fn clear_kernel_log() {
    KLOG.lock().clear();
}

/// Bytes in the kernel's log.
pub fn kernel_log_len() -> usize {
    KLOG.lock().len()
}
