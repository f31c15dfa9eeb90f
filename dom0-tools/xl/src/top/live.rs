//! xentop's main loop over dom0's devices, shared by the `xentop` program and `xl top`:
//! samples taken through [`Real`], drawn with [`super::keys::screen`] or, in batch mode,
//! printed whole; keys read from standard input while waiting. Thin glue: what is printed
//! and what a key does are decided (and tested) in the modules above.

use guest_abi::Errno;

use super::args::Options;
use super::keys::{self, View};
use super::{Domain, Sample};
use crate::real::Real;
use crate::sys;
use crate::verbs::{self, System};

const STDIN: i32 = 0;
const STDOUT: i32 = 1;

/// How long xentop waits for a key before looking at the clock again (curses'
/// `halfdelay(5)`: half a second).
const KEY_WAIT_MS: i32 = 500;
/// Linux's `TIOCGWINSZ` (`include/uapi/asm-generic/ioctls.h`), named here because `libc`
/// gives it a different type on musl and on glibc.
const TIOCGWINSZ: u64 = 0x5413;
/// The screen's size when the terminal does not tell (curses' fallback for a VT100).
const DEFAULT_SIZE: (usize, usize) = (24, 80);

/// xentop's words when a sample cannot be taken (`fail()`, exit status 1).
pub const STATS_FAILED: &str = "Failed to retrieve statistics from libxenstat\n";

/// Runs xentop with `o` until `q`, the last of `-i` iterations, or a failure (the message
/// for standard error, in xentop's words).
pub fn run(real: &mut Real, o: &Options) -> Result<(), String> {
    let version = real.version_string();
    let mut view = View::new(o);
    let mut iterations = o.iterations;
    let mut prev: Option<Sample> = None;
    if o.batch {
        loop {
            let now = sample(real, &version, view.vcpus)?;
            // Batch mode: no summary, no attributes (xentop leaves them out since 2007).
            let text = super::table(&view.table(false), 0, prev.as_ref(), &now);
            write(&text)?;
            prev = Some(now);
            if countdown(&mut iterations) {
                return Ok(());
            }
            real.sleep_ms(u64::from(view.delay) * 1000);
        }
    }
    // Keys as typed and unechoed (curses' cbreak and noecho) until the end; Ctrl-C arrives
    // as a key, which quits.
    let _raw = sys::RawInput::new(STDIN);
    let (rows, cols) = screen_size();
    let mut buf = [0u8; 64];
    let mut last_draw: Option<u64> = None;
    let mut key_typed = false;
    loop {
        let at = real.now_ns();
        let due =
            last_draw.is_none_or(|t| at.saturating_sub(t) >= u64::from(view.delay) * 1_000_000_000);
        if key_typed || due {
            let now = sample(real, &version, view.vcpus)?;
            view.first = view.first.min(now.domains.len().saturating_sub(1));
            let mut text = super::summary(&now);
            text += &super::table(&view.table(true), view.first, prev.as_ref(), &now);
            view.repaint = false;
            write(&keys::screen(&text, &view, rows, cols))?;
            prev = Some(now);
            last_draw = Some(at);
            if countdown(&mut iterations) {
                break;
            }
        }
        key_typed = false;
        let ready = sys::poll_readable(&[STDIN], KEY_WAIT_MS)
            .map_err(|e| format!("xentop: waiting for a key failed ({e})\n"))?;
        if !ready[0] {
            continue;
        }
        let n = sys::read(STDIN, &mut buf)
            .map_err(|e| format!("xentop: reading the keyboard failed ({e})\n"))?;
        if n == 0 {
            // No more input (not a terminal): xentop under curses would wait for `q`
            // forever; the samples go on with the clock.
            real.sleep_ms(KEY_WAIT_MS as u64);
            continue;
        }
        for key in keys::decode(&buf[..n]) {
            if !view.key(key) {
                write("\x1b[0m\r\n")?;
                return Ok(());
            }
        }
        key_typed = true;
    }
    write("\x1b[0m\r\n")?;
    Ok(())
}

/// xentop's `if (!loop && !--iterations) break;`: true when the last iteration is done.
fn countdown(iterations: &mut Option<u32>) -> bool {
    match iterations {
        Some(n) => {
            *n = n.wrapping_sub(1);
            *n == 0
        }
        None => false,
    }
}

fn write(s: &str) -> Result<(), String> {
    sys::write_all(STDOUT, s.as_bytes()).map_err(|e| format!("xentop: writing failed ({e})\n"))
}

/// One sample: physinfo, every domain with its name and, for `-v`, its vCPUs' times.
fn sample(real: &mut Real, version: &str, vcpus: bool) -> Result<Sample, String> {
    let p = real.physinfo().map_err(|_| STATS_FAILED.to_string())?;
    let mut domains: Vec<Domain> = verbs::named_domains(real)
        .map_err(|_| STATS_FAILED.to_string())?
        .into_iter()
        .map(|(name, info)| Domain::new(name, info))
        .collect();
    if vcpus {
        for d in &mut domains {
            d.vcpus = (0..d.num_vcpus())
                .map(|v| match real.vcpu_info(d.info.dom, v) {
                    Ok(i) if i.online != 0 => Some(i.cpu_time),
                    _ => None,
                })
                .collect();
        }
    }
    Ok(Sample {
        at_ns: real.now_ns(),
        wall_s: real.wall_s(),
        version: version.to_string(),
        total_pages: p.total_pages,
        free_pages: p.free_pages,
        nr_cpus: p.nr_cpus,
        cpu_khz: p.cpu_khz.into(),
        domains,
    })
}

/// The terminal's lines and columns (`TIOCGWINSZ`), else `LINES` and `COLUMNS` as curses
/// reads them, else 24 by 80.
fn screen_size() -> (usize, usize) {
    let mut ws = libc::winsize {
        ws_row: 0,
        ws_col: 0,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    let asked: Result<u64, Errno> = sys::ioctl_ref(STDOUT, TIOCGWINSZ, &mut ws);
    let env = |name: &str| {
        std::env::var(name)
            .ok()
            .and_then(|v| v.parse::<usize>().ok())
    };
    let (rows, cols) = match asked {
        Ok(_) if ws.ws_row > 0 && ws.ws_col > 0 => (usize::from(ws.ws_row), usize::from(ws.ws_col)),
        _ => (
            env("LINES").unwrap_or(DEFAULT_SIZE.0),
            env("COLUMNS").unwrap_or(DEFAULT_SIZE.1),
        ),
    };
    (rows.max(2), cols.max(1))
}
