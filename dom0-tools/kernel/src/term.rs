//! dom0's terminal: the serial line through the hypervisor.
//!
//! Output goes out raw (`CONSOLEIO_XENIA_WRITE_RAW`), with `\n` turned into `\r\n` as a
//! terminal driver's `ONLCR` would. Input is what the hypervisor queued for dom0
//! (`CONSOLEIO_READ`), collected here as it arrives; programs read it raw, byte by byte as
//! typed, without echo (the shell edits lines itself).

use alloc::collections::VecDeque;

use guest_abi::calls;
use spin::Mutex;

/// Most input bytes kept unread; beyond that, the oldest are dropped (the hypervisor's own
/// queue is bounded the same way).
const INPUT_MAX: usize = 4096;

static INPUT: Mutex<VecDeque<u8>> = Mutex::new(VecDeque::new());
/// The last byte written, so that a `\r\n` a program wrote itself stays `\r\n`.
static LAST: Mutex<u8> = Mutex::new(0);

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

/// Moves what the hypervisor holds for dom0 into the input queue.
pub fn pump() {
    let mut buf = [0u8; 256];
    loop {
        match calls::console_read(&mut buf) {
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

/// Whether input is waiting.
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

/// Formatted output to the terminal with a newline, like `println!`.
#[macro_export]
macro_rules! tprintln {
    () => ($crate::term::print("\n"));
    ($($arg:tt)*) => ($crate::term::print(&alloc::format!("{}\n", format_args!($($arg)*))));
}
