//! `xenstore` and its links `xenstore-ls`, `xenstore-read`, ... in dom0: the commands of
//! the library over `/dev/xen/xenbus` (whole `xsd_sockmsg` requests written, replies and
//! watch events read back, as Linux's device).

use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};

use guest_abi::Errno;
use guest_abi::xenstore::{XS_ERROR, XS_WATCH_EVENT, XsdSockmsg, error_from};
use xenstore_cli::{Bus, Io, run, strerror};

/// The store through `/dev/xen/xenbus`.
struct Xenbus {
    dev: File,
    next_id: u32,
    /// Bytes read and not yet made into a message.
    input: Vec<u8>,
    /// Watch events that came while a reply was awaited.
    events: VecDeque<(String, String)>,
}

impl Xenbus {
    fn open() -> std::io::Result<Self> {
        Ok(Self {
            dev: OpenOptions::new()
                .read(true)
                .write(true)
                .open("/dev/xen/xenbus")?,
            next_id: 1,
            input: Vec::new(),
            events: VecDeque::new(),
        })
    }

    /// The next whole message: header and payload.
    fn message(&mut self) -> Result<(XsdSockmsg, Vec<u8>), Errno> {
        loop {
            if let Some(h) = XsdSockmsg::from_bytes(&self.input) {
                let end = XsdSockmsg::SIZE + h.len as usize;
                if self.input.len() >= end {
                    let body = self.input[XsdSockmsg::SIZE..end].to_vec();
                    self.input.drain(..end);
                    return Ok((h, body));
                }
            }
            let mut buf = [0u8; 4096];
            match self.dev.read(&mut buf) {
                Ok(0) => return Err(Errno::EIO),
                Ok(n) => self.input.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(_) => return Err(Errno::EIO),
            }
        }
    }
}

fn event(body: &[u8]) -> (String, String) {
    let mut parts = body.split(|&b| b == 0);
    let mut next = || String::from_utf8_lossy(parts.next().unwrap_or(&[])).into_owned();
    (next(), next())
}

impl Bus for Xenbus {
    fn request(&mut self, msg_type: u32, tx: u32, payload: &[u8]) -> Result<Vec<u8>, Errno> {
        let req_id = self.next_id;
        self.next_id = self.next_id.wrapping_add(1).max(1);
        let hdr = XsdSockmsg {
            msg_type,
            req_id,
            tx_id: tx,
            len: payload.len() as u32,
        };
        let mut m = hdr.to_bytes().to_vec();
        m.extend_from_slice(payload);
        self.dev.write_all(&m).map_err(|_| Errno::EIO)?;
        loop {
            let (h, body) = self.message()?;
            if h.msg_type == XS_WATCH_EVENT {
                self.events.push_back(event(&body));
                continue;
            }
            if h.req_id != req_id {
                continue;
            }
            if h.msg_type == XS_ERROR {
                return Err(error_from(&body));
            }
            return Ok(body);
        }
    }

    fn watch_event(&mut self) -> Result<(String, String), Errno> {
        if let Some(e) = self.events.pop_front() {
            return Ok(e);
        }
        loop {
            let (h, body) = self.message()?;
            if h.msg_type == XS_WATCH_EVENT {
                return Ok(event(&body));
            }
        }
    }
}

/// The terminal's width, if standard output is one.
fn columns() -> Option<usize> {
    let mut ws = libc::winsize {
        ws_row: 0,
        ws_col: 0,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCGWINSZ writes one `winsize` through the pointer, which is valid for it.
    let r = unsafe { libc::ioctl(libc::STDOUT_FILENO, libc::TIOCGWINSZ, &mut ws) };
    (r == 0).then_some(usize::from(ws.ws_col))
}

fn main() {
    let argv: Vec<String> = std::env::args().collect();
    let argv0 = argv.first().cloned().unwrap_or_else(|| "xenstore".into());
    let short = argv0.rsplit('/').next().unwrap_or("xenstore").to_string();
    let stdout = std::io::stdout();
    let stderr = std::io::stderr();
    let (mut out, mut err) = (stdout.lock(), stderr.lock());
    let mut bus = match Xenbus::open() {
        Ok(b) => b,
        Err(e) => {
            let errno = e.raw_os_error().unwrap_or(5);
            let text = match errno {
                2 => strerror(Errno::ENOENT).to_string(),
                13 => strerror(Errno::EACCES).to_string(),
                _ => e.to_string(),
            };
            let _ = writeln!(err, "{short}: xs_open: {text}");
            std::process::exit(1);
        }
    };
    let mut io = Io {
        out: &mut out,
        err: &mut err,
        argv0,
        short,
        columns: columns(),
    };
    let code = run(&argv, &mut bus, &mut io);
    let _ = io.out.flush();
    std::process::exit(code);
}
