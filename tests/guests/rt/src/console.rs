//! The console: `console_io` writes, one line at a time.
//!
//! The hypervisor prints dom0's console output line by line with a `(d0) ` prefix, so the
//! runtime hands it whole lines: text is collected until a newline (or until the line buffer
//! is full) and then written with one hypercall. A handler that prints while the main flow is
//! in the middle of a line (only fatal-error paths do) bypasses the buffer.

use core::fmt::{self, Write};
use core::sync::atomic::{AtomicBool, Ordering};

use guest_abi::calls;

use crate::global::Global;

/// Longest line handed to the hypervisor in one write.
const LINE_MAX: usize = 160;

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
    // A failed write has nowhere to be reported; the scenario sees the missing output.
    let _ = calls::console_write(bytes);
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

/// Writes out an unfinished line, if any.
pub fn flush() {
    if BUSY.swap(true, Ordering::Acquire) {
        return;
    }
    with_line(|line| {
        if line.len > 0 {
            write_line(&line.bytes[..line.len]);
            line.len = 0;
        }
    });
    BUSY.store(false, Ordering::Release);
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
