//! `console`: typed input reaches dom0. The test binds `VIRQ_CONSOLE`, prints
//! `console: type a line`, waits (bounded) for the hypervisor to raise the VIRQ, reads what
//! was typed with `console_io(CONSOLEIO_read)` until a newline, and echoes it as
//! `console: got "<line>"`. The scenario types the line and checks the echo.
//!
//! Pass: the VIRQ arrives, the read returns the typed bytes (and 0 once drained), and the line
//! is complete before the deadline.

use guest_abi::calls;
use guest_abi::event::VIRQ_CONSOLE;
use xenia_guest_rt::check::{Checks, error};
use xenia_guest_rt::events::{self, count};
use xenia_guest_rt::println;
use xenia_guest_rt::time::{NS_PER_MS, now_ns};

/// How long the scenario has to type its line.
const WAIT_NS: u64 = 30_000 * NS_PER_MS;

pub fn run() -> ! {
    let mut c = Checks::new();
    let port = match events::bind_virq(VIRQ_CONSOLE) {
        Ok(p) => p,
        Err(e) => error(format_args!("cannot bind VIRQ_CONSOLE: {e:?}")),
    };
    println!("console: type a line");
    xenia_guest_rt::console::flush();
    let deadline = now_ns() + WAIT_NS;
    let mut line = [0u8; 128];
    let mut len = 0;
    let mut virqs = 0;
    let mut complete = false;
    while !complete && now_ns() < deadline {
        let seen = count(port);
        if events::wait_for(port, seen, deadline) {
            virqs += 1;
        }
        loop {
            let mut buf = [0u8; 32];
            let n = match calls::console_read(&mut buf) {
                Ok(n) => n as usize,
                Err(e) => error(format_args!("console_io read failed: {e:?}")),
            };
            if n == 0 {
                break;
            }
            for &b in &buf[..n] {
                if b == b'\r' || b == b'\n' {
                    complete = true;
                } else if len < line.len() {
                    line[len] = b;
                    len += 1;
                }
            }
        }
    }
    c.check(
        "VIRQ_CONSOLE raised for typed input",
        virqs > 0,
        format_args!("{virqs} events"),
    );
    c.check(
        "a whole line arrived before the deadline",
        complete,
        format_args!("{len} bytes"),
    );
    let text = core::str::from_utf8(&line[..len]).unwrap_or("<not UTF-8>");
    println!("console: got \"{text}\"");
    c.check(
        "the line is printable",
        !text.is_empty() && text.is_ascii(),
        format_args!("{text:?}"),
    );
    let mut rest = [0u8; 8];
    c.eq(
        "console_io read after draining returns 0",
        calls::console_read(&mut rest).ok(),
        Some(0),
    );
    c.finish()
}
