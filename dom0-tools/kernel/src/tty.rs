//! dom0's terminal line discipline: what Linux's `n_tty` does between the serial line and
//! the programs that read it, as far as a shell, `cat`, `vi` and `less` need.
//!
//! * **Canonical mode** (`ICANON`, the default): input is edited a line at a time — erase
//!   (`VERASE`, and backspace), kill the line (`VKILL`), erase a word (`VWERASE`) — and a
//!   read returns at most one line once `\n` (or `VEOL`) ends it; `VEOF` (Ctrl-D) hands over
//!   the line so far, or, on an empty line, makes a read return 0 (end of file).
//! * **Raw input** (`ICANON` off): bytes are readable as they come; `VMIN` 0 with `VTIME` 0
//!   makes a read with nothing to read return 0 rather than wait.
//! * **Echo** (`ECHO`, `ECHOE`, `ECHOK`, `ECHOCTL`, `ECHONL`): what is typed is written back,
//!   control characters as `^X`, an erase as `\b \b`.
//! * **Signals** (`ISIG`): `VINTR` (Ctrl-C), `VQUIT` (Ctrl-\) and `VSUSP` (Ctrl-Z) are taken
//!   out of the input and reported, for the kernel to send `SIGINT`, `SIGQUIT` or `SIGTSTP`
//!   to the foreground process group ([`Tty::foreground`]); the pending input is discarded
//!   (`NOFLSH` keeps it).
//! * **Input and output mapping**: `ICRNL` (`\r` becomes `\n`), `INLCR`, `IGNCR`, and
//!   `OPOST`+`ONLCR` (`\n` goes out as `\r\n`).
//!
//! [`Termios::to_bytes`] and [`Termios::from_bytes`] are the `TCGETS`/`TCSETS` layout of
//! x86-64 Linux (`struct termios`: four flag words, the line discipline, 19 control
//! characters).
//!
//! **What it trusts.** Nothing: any bytes typed and any settings a program asks for are taken;
//! input beyond [`INPUT_MAX`] is dropped (the oldest line first), never grown without bound.

use alloc::collections::VecDeque;
use alloc::vec::Vec;

/// Most bytes held for reading (finished lines and the line being edited); typed input
/// past it is dropped, as `n_tty`'s 4 KiB buffer drops it.
pub const INPUT_MAX: usize = 4096;

/// `c_iflag` bits.
pub mod iflag {
    /// Ignore a carriage return.
    pub const IGNCR: u32 = 0o200;
    /// Map a carriage return to a newline.
    pub const ICRNL: u32 = 0o400;
    /// Map a newline to a carriage return.
    pub const INLCR: u32 = 0o100;
    /// Strip the eighth bit.
    pub const ISTRIP: u32 = 0o040;
    /// Software flow control on output.
    pub const IXON: u32 = 0o2000;
    /// Input is UTF-8 (erase takes a whole character).
    pub const IUTF8: u32 = 0o40000;
}

/// `c_oflag` bits.
pub mod oflag {
    /// Process output.
    pub const OPOST: u32 = 0o1;
    /// Map a newline to carriage return and newline on output.
    pub const ONLCR: u32 = 0o4;
}

/// `c_lflag` bits.
pub mod lflag {
    /// Generate signals for `VINTR`, `VQUIT`, `VSUSP`.
    pub const ISIG: u32 = 0o1;
    /// Canonical (line) mode.
    pub const ICANON: u32 = 0o2;
    /// Echo input.
    pub const ECHO: u32 = 0o10;
    /// Erase echoes as backspace-space-backspace.
    pub const ECHOE: u32 = 0o20;
    /// Kill echoes a newline (with `ECHOKE` off) or erases the line.
    pub const ECHOK: u32 = 0o40;
    /// Echo a newline even with `ECHO` off.
    pub const ECHONL: u32 = 0o100;
    /// Do not flush input on a signal character.
    pub const NOFLSH: u32 = 0o200;
    /// Echo control characters as `^X`.
    pub const ECHOCTL: u32 = 0o1000;
    /// Kill erases each character.
    pub const ECHOKE: u32 = 0o4000;
    /// Extended input processing (`VWERASE`, `VLNEXT`).
    pub const IEXTEN: u32 = 0o100000;
}

/// Indexes of `c_cc`.
pub mod cc {
    /// Interrupt (Ctrl-C).
    pub const VINTR: usize = 0;
    /// Quit (Ctrl-\).
    pub const VQUIT: usize = 1;
    /// Erase a character (DEL).
    pub const VERASE: usize = 2;
    /// Kill the line (Ctrl-U).
    pub const VKILL: usize = 3;
    /// End of file (Ctrl-D).
    pub const VEOF: usize = 4;
    /// Raw-mode read timeout, tenths of a second.
    pub const VTIME: usize = 5;
    /// Raw-mode read minimum.
    pub const VMIN: usize = 6;
    /// Suspend (Ctrl-Z).
    pub const VSUSP: usize = 10;
    /// Another end of line.
    pub const VEOL: usize = 11;
    /// Erase a word (Ctrl-W).
    pub const VWERASE: usize = 14;
    /// Take the next character literally (Ctrl-V).
    pub const VLNEXT: usize = 15;
    /// Another end of line.
    pub const VEOL2: usize = 16;
}

/// `_POSIX_VDISABLE`: a control character set to this does nothing.
const VDISABLE: u8 = 0;

/// The signals the line discipline raises.
pub mod signal {
    /// Ctrl-C.
    pub const SIGINT: u32 = 2;
    /// Ctrl-\.
    pub const SIGQUIT: u32 = 3;
    /// Ctrl-Z.
    pub const SIGTSTP: u32 = 20;
}

/// `struct termios` as `TCGETS` and `TCSETS` pass it on x86-64 Linux.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Termios {
    /// Input modes.
    pub iflag: u32,
    /// Output modes.
    pub oflag: u32,
    /// Control modes.
    pub cflag: u32,
    /// Local modes.
    pub lflag: u32,
    /// Line discipline (0, `N_TTY`).
    pub line: u8,
    /// Control characters.
    pub cc: [u8; 19],
}

impl Default for Termios {
    /// Linux's settings for a new terminal (`tty_std_termios`): canonical, echoing,
    /// signals on, `\r` read as `\n`, `\n` written as `\r\n`, 38400 baud, 8 bits.
    fn default() -> Self {
        let mut cc = [0u8; 19];
        cc[cc::VINTR] = 0x03;
        cc[cc::VQUIT] = 0x1c;
        cc[cc::VERASE] = 0x7f;
        cc[cc::VKILL] = 0x15;
        cc[cc::VEOF] = 0x04;
        cc[cc::VMIN] = 1;
        cc[8] = 0x11; // VSTART
        cc[9] = 0x13; // VSTOP
        cc[cc::VSUSP] = 0x1a;
        cc[12] = 0x12; // VREPRINT
        cc[13] = 0x0f; // VDISCARD
        cc[cc::VWERASE] = 0x17;
        cc[cc::VLNEXT] = 0x16;
        Self {
            iflag: iflag::ICRNL | iflag::IXON,
            oflag: oflag::OPOST | oflag::ONLCR,
            cflag: 0o277, // B38400 | CS8 | CREAD | HUPCL
            lflag: lflag::ISIG
                | lflag::ICANON
                | lflag::ECHO
                | lflag::ECHOE
                | lflag::ECHOK
                | lflag::ECHOCTL
                | lflag::ECHOKE
                | lflag::IEXTEN,
            line: 0,
            cc,
        }
    }
}

impl Termios {
    /// Bytes of `struct termios`.
    pub const SIZE: usize = 36;

    /// The structure's bytes.
    pub fn to_bytes(&self) -> [u8; Self::SIZE] {
        let mut b = [0u8; Self::SIZE];
        for (i, v) in [self.iflag, self.oflag, self.cflag, self.lflag]
            .iter()
            .enumerate()
        {
            b[i * 4..i * 4 + 4].copy_from_slice(&v.to_le_bytes());
        }
        b[16] = self.line;
        b[17..].copy_from_slice(&self.cc);
        b
    }

    /// The structure from its bytes.
    pub fn from_bytes(b: &[u8; Self::SIZE]) -> Self {
        let word =
            |i: usize| u32::from_le_bytes([b[i * 4], b[i * 4 + 1], b[i * 4 + 2], b[i * 4 + 3]]);
        let mut cc = [0u8; 19];
        cc.copy_from_slice(&b[17..]);
        Self {
            iflag: word(0),
            oflag: word(1),
            cflag: word(2),
            lflag: word(3),
            line: b[16],
            cc,
        }
    }

    fn l(&self, bit: u32) -> bool {
        self.lflag & bit != 0
    }

    /// Whether `b` is control character `which`, enabled.
    fn is(&self, which: usize, b: u8) -> bool {
        self.cc[which] != VDISABLE && self.cc[which] == b
    }
}

/// What is ready to be read.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Ready {
    /// Bytes (raw input, or a finished line with its `\n`).
    Bytes(Vec<u8>),
    /// An end of file (`VEOF` on an empty line): one read returns 0.
    Eof,
}

/// A terminal: settings, foreground process group, window size, and input on its way to
/// the programs.
#[derive(Clone, Debug)]
pub struct Tty {
    /// Its settings.
    pub termios: Termios,
    /// The foreground process group (`TIOCSPGRP`): who gets its signals; 0 for none.
    pub foreground: u32,
    /// Its window size: rows, columns (`TIOCGWINSZ`).
    pub winsize: (u16, u16),
    /// The line being edited (canonical mode).
    line: Vec<u8>,
    /// What reads take, in order.
    ready: VecDeque<Ready>,
    /// Bytes in `ready` and `line`.
    held: usize,
    /// The next byte is taken literally (`VLNEXT`).
    literal: bool,
}

impl Default for Tty {
    fn default() -> Self {
        Self::new()
    }
}

impl Tty {
    /// A terminal with Linux's default settings, 24 rows of 80 columns, no foreground
    /// group.
    pub fn new() -> Self {
        Self {
            termios: Termios::default(),
            foreground: 0,
            winsize: (24, 80),
            line: Vec::new(),
            ready: VecDeque::new(),
            held: 0,
            literal: false,
        }
    }

    /// Takes bytes typed at the terminal: `echo` gets what to write back; returns the
    /// signals raised (in order), for the foreground group.
    pub fn input(&mut self, bytes: &[u8], echo: &mut Vec<u8>) -> Vec<u32> {
        let mut signals = Vec::new();
        for &b in bytes {
            if let Some(sig) = self.byte(b, echo) {
                signals.push(sig);
            }
        }
        signals
    }

    fn byte(&mut self, mut b: u8, echo: &mut Vec<u8>) -> Option<u32> {
        let t = self.termios;
        if t.iflag & iflag::ISTRIP != 0 {
            b &= 0x7f;
        }
        if self.literal {
            self.literal = false;
            self.put(b, echo);
            return None;
        }
        if b == b'\r' {
            if t.iflag & iflag::IGNCR != 0 {
                return None;
            }
            if t.iflag & iflag::ICRNL != 0 {
                b = b'\n';
            }
        } else if b == b'\n' && t.iflag & iflag::INLCR != 0 {
            b = b'\r';
        }
        if t.l(lflag::ISIG) {
            let sig = if t.is(cc::VINTR, b) {
                Some(signal::SIGINT)
            } else if t.is(cc::VQUIT, b) {
                Some(signal::SIGQUIT)
            } else if t.is(cc::VSUSP, b) {
                Some(signal::SIGTSTP)
            } else {
                None
            };
            if let Some(sig) = sig {
                if !t.l(lflag::NOFLSH) {
                    self.flush();
                }
                if t.l(lflag::ECHO) {
                    self.echo_char(b, echo);
                    if t.l(lflag::ICANON) {
                        echo.extend_from_slice(b"\r\n");
                    }
                }
                return Some(sig);
            }
        }
        if t.l(lflag::IEXTEN) && t.is(cc::VLNEXT, b) {
            self.literal = true;
            return None;
        }
        if !t.l(lflag::ICANON) {
            self.put(b, echo);
            return None;
        }
        if t.is(cc::VERASE, b) || b == 0x08 {
            self.erase(echo);
        } else if t.is(cc::VKILL, b) {
            while !self.line.is_empty() {
                self.erase(echo);
            }
        } else if t.l(lflag::IEXTEN) && t.is(cc::VWERASE, b) {
            while self.line.last().is_some_and(|c| *c == b' ' || *c == b'\t') {
                self.erase(echo);
            }
            while self.line.last().is_some_and(|c| *c != b' ' && *c != b'\t') {
                self.erase(echo);
            }
        } else if t.is(cc::VEOF, b) {
            let line = core::mem::take(&mut self.line);
            self.ready.push_back(if line.is_empty() {
                Ready::Eof
            } else {
                Ready::Bytes(line)
            });
        } else if b == b'\n' || t.is(cc::VEOL, b) || t.is(cc::VEOL2, b) {
            if self.held >= INPUT_MAX {
                self.drop_oldest();
            }
            self.line.push(b);
            self.held += 1;
            if t.l(lflag::ECHO) || (b == b'\n' && t.l(lflag::ECHONL)) {
                self.echo_out(b, echo);
            }
            let line = core::mem::take(&mut self.line);
            self.ready.push_back(Ready::Bytes(line));
        } else {
            self.put(b, echo);
        }
        None
    }

    /// Adds `b` to the line (canonical) or the readable bytes (raw), echoing it.
    fn put(&mut self, b: u8, echo: &mut Vec<u8>) {
        if self.held >= INPUT_MAX {
            if self.termios.l(lflag::ICANON) && self.ready.is_empty() {
                // A line longer than the buffer: what is typed past it is lost, as on Linux.
                return;
            }
            self.drop_oldest();
        }
        self.held += 1;
        if self.termios.l(lflag::ICANON) {
            self.line.push(b);
        } else {
            match self.ready.back_mut() {
                Some(Ready::Bytes(bytes)) => bytes.push(b),
                _ => self.ready.push_back(Ready::Bytes(alloc::vec![b])),
            }
        }
        if self.termios.l(lflag::ECHO) {
            self.echo_char(b, echo);
        }
    }

    fn drop_oldest(&mut self) {
        if let Some(Ready::Bytes(old)) = self.ready.pop_front() {
            self.held -= old.len();
        }
    }

    /// Echoes a typed character: a control character as `^X` with `ECHOCTL`.
    fn echo_char(&self, b: u8, echo: &mut Vec<u8>) {
        if self.termios.l(lflag::ECHOCTL) && (b < 0x20 && b != b'\t' && b != b'\n' || b == 0x7f) {
            echo.push(b'^');
            echo.push(b ^ 0x40);
        } else {
            self.echo_out(b, echo);
        }
    }

    /// Echoes `b` as output (a newline as `\r\n` with `ONLCR`).
    fn echo_out(&self, b: u8, echo: &mut Vec<u8>) {
        self.output(&[b], echo);
    }

    fn erase(&mut self, echo: &mut Vec<u8>) {
        let t = self.termios;
        // A whole UTF-8 character: continuation bytes and the byte that starts them.
        while let Some(&c) = self.line.last() {
            self.line.pop();
            self.held -= 1;
            if t.iflag & iflag::IUTF8 == 0 || c & 0xc0 != 0x80 {
                if t.l(lflag::ECHO) && t.l(lflag::ECHOE) {
                    // A control character echoed as ^X takes two columns.
                    let cols = if t.l(lflag::ECHOCTL) && (c < 0x20 && c != b'\t' || c == 0x7f) {
                        2
                    } else {
                        1
                    };
                    for _ in 0..cols {
                        echo.extend_from_slice(b"\x08 \x08");
                    }
                }
                break;
            }
        }
    }

    /// Drops all input: typed lines not yet read and the line being edited (`TCFLSH`,
    /// a signal character).
    pub fn flush(&mut self) {
        self.line.clear();
        self.ready.clear();
        self.held = 0;
        self.literal = false;
    }

    /// Takes everything typed and not read, finished lines and the line being edited, as
    /// bytes (ends of file dropped): for whoever reads the terminal next.
    pub fn take_unread(&mut self) -> Vec<u8> {
        let mut out = Vec::new();
        for r in self.ready.drain(..) {
            if let Ready::Bytes(b) = r {
                out.extend_from_slice(&b);
            }
        }
        out.append(&mut self.line);
        self.held = 0;
        out
    }

    /// Whether a read would return now (data, or an end of file).
    pub fn readable(&self) -> bool {
        !self.ready.is_empty()
            || !self.termios.l(lflag::ICANON)
                && self.termios.cc[cc::VMIN] == 0
                && self.termios.cc[cc::VTIME] == 0
    }

    /// Bytes a read could take now (`FIONREAD`).
    pub fn pending(&self) -> usize {
        self.ready
            .iter()
            .map(|r| match r {
                Ready::Bytes(b) => b.len(),
                Ready::Eof => 0,
            })
            .sum()
    }

    /// A read of at most `out.len()` bytes: `None` when it must wait; canonical mode returns
    /// at most one line, raw mode what there is.
    pub fn read(&mut self, out: &mut [u8]) -> Option<usize> {
        if out.is_empty() {
            return Some(0);
        }
        let canonical = self.termios.l(lflag::ICANON);
        let mut n = 0;
        while n < out.len() {
            match self.ready.front_mut() {
                None => break,
                Some(Ready::Eof) => {
                    if n == 0 {
                        self.ready.pop_front();
                    }
                    return Some(n);
                }
                Some(Ready::Bytes(bytes)) => {
                    let take = bytes.len().min(out.len() - n);
                    out[n..n + take].copy_from_slice(&bytes[..take]);
                    bytes.drain(..take);
                    self.held -= take;
                    n += take;
                    if bytes.is_empty() {
                        self.ready.pop_front();
                        if canonical {
                            return Some(n);
                        }
                    }
                }
            }
        }
        if n == 0 && !self.readable() {
            return None;
        }
        Some(n)
    }

    /// What a program's write puts on the line: `\n` as `\r\n` with `OPOST` and `ONLCR`.
    pub fn output(&self, bytes: &[u8], out: &mut Vec<u8>) {
        let crlf =
            self.termios.oflag & (oflag::OPOST | oflag::ONLCR) == oflag::OPOST | oflag::ONLCR;
        for &b in bytes {
            if b == b'\n' && crlf {
                out.push(b'\r');
            }
            out.push(b);
        }
    }

    /// New settings (`TCSETS`); `flush` drops pending input first (`TCSETSF`). Input kept
    /// across a change from canonical to raw stays readable: the line being edited
    /// becomes readable bytes.
    pub fn set(&mut self, termios: Termios, flush: bool) {
        if flush {
            self.flush();
        }
        let was_canonical = self.termios.l(lflag::ICANON);
        self.termios = termios;
        if was_canonical && !termios.l(lflag::ICANON) && !self.line.is_empty() {
            let line = core::mem::take(&mut self.line);
            self.ready.push_back(Ready::Bytes(line));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn typed(t: &mut Tty, s: &[u8]) -> (Vec<u8>, Vec<u32>) {
        let mut echo = Vec::new();
        let sigs = t.input(s, &mut echo);
        (echo, sigs)
    }

    fn read_all(t: &mut Tty) -> Option<Vec<u8>> {
        let mut buf = [0u8; 256];
        t.read(&mut buf).map(|n| buf[..n].to_vec())
    }

    #[test]
    fn termios_bytes_round_trip_in_linux_layout() {
        let t = Termios::default();
        let b = t.to_bytes();
        assert_eq!(&b[..4], &0o2400u32.to_le_bytes(), "ICRNL | IXON");
        assert_eq!(&b[12..16], &0o105073u32.to_le_bytes(), "lflag as stty sane");
        assert_eq!(b[17 + cc::VINTR], 3);
        assert_eq!(b[17 + cc::VEOF], 4);
        assert_eq!(Termios::from_bytes(&b), t);
    }

    #[test]
    fn canonical_lines_with_editing_and_echo() {
        let mut t = Tty::new();
        let (echo, sigs) = typed(&mut t, b"ls -x\x7fl\r");
        assert!(sigs.is_empty());
        assert_eq!(echo, b"ls -x\x08 \x08l\r\n");
        assert_eq!(read_all(&mut t).unwrap(), b"ls -l\n");
        assert_eq!(read_all(&mut t), None, "nothing more: a read waits");
        // Half a line is not readable; kill and word erase.
        typed(&mut t, b"abc def");
        assert!(!t.readable());
        typed(&mut t, b"\x17");
        typed(&mut t, b"x\n");
        assert_eq!(read_all(&mut t).unwrap(), b"abc x\n");
        typed(&mut t, b"gone\x15kept\n");
        assert_eq!(read_all(&mut t).unwrap(), b"kept\n");
    }

    #[test]
    fn one_line_per_read_and_short_buffers() {
        let mut t = Tty::new();
        typed(&mut t, b"one\ntwo\n");
        let mut small = [0u8; 2];
        assert_eq!(t.read(&mut small), Some(2));
        assert_eq!(&small, b"on");
        assert_eq!(read_all(&mut t).unwrap(), b"e\n");
        assert_eq!(read_all(&mut t).unwrap(), b"two\n");
        assert_eq!(t.pending(), 0);
    }

    #[test]
    fn ctrl_d_ends_a_file_and_hands_over_a_partial_line() {
        let mut t = Tty::new();
        typed(&mut t, b"part\x04");
        assert_eq!(read_all(&mut t).unwrap(), b"part");
        typed(&mut t, b"\x04");
        assert_eq!(read_all(&mut t), Some(Vec::new()), "end of file");
        assert_eq!(read_all(&mut t), None, "once");
    }

    #[test]
    fn ctrl_c_raises_sigint_and_flushes() {
        let mut t = Tty::new();
        let (echo, sigs) = typed(&mut t, b"half\x03");
        assert_eq!(sigs, [signal::SIGINT]);
        assert!(echo.ends_with(b"^C\r\n"), "{echo:?}");
        assert!(!t.readable(), "the half line is gone");
        let (_, sigs) = typed(&mut t, b"\x1c\x1a");
        assert_eq!(sigs, [signal::SIGQUIT, signal::SIGTSTP]);
        // With ISIG off (or VINTR disabled) Ctrl-C is a byte like any other.
        let mut raw = Termios::default();
        raw.lflag &= !(lflag::ICANON | lflag::ECHO);
        raw.cc[cc::VINTR] = 0;
        t.set(raw, false);
        let (echo, sigs) = typed(&mut t, b"\x03");
        assert!(sigs.is_empty() && echo.is_empty());
        assert_eq!(read_all(&mut t).unwrap(), b"\x03");
    }

    #[test]
    fn raw_mode_reads_bytes_as_they_come() {
        let mut t = Tty::new();
        let mut raw = Termios::default();
        raw.lflag &= !(lflag::ICANON | lflag::ECHO);
        raw.iflag &= !iflag::ICRNL;
        t.set(raw, false);
        let (echo, _) = typed(&mut t, b"q\r");
        assert!(echo.is_empty());
        assert_eq!(read_all(&mut t).unwrap(), b"q\r");
        assert_eq!(read_all(&mut t), None);
        raw.cc[cc::VMIN] = 0;
        t.set(raw, false);
        assert_eq!(
            read_all(&mut t),
            Some(Vec::new()),
            "VMIN 0, VTIME 0: no wait"
        );
    }

    #[test]
    fn switching_to_raw_keeps_a_half_typed_line() {
        let mut t = Tty::new();
        typed(&mut t, b"ab");
        let mut raw = Termios::default();
        raw.lflag &= !lflag::ICANON;
        t.set(raw, false);
        assert_eq!(read_all(&mut t).unwrap(), b"ab");
        typed(&mut t, b"cd");
        t.set(Termios::default(), true);
        assert!(!t.readable(), "TCSETSF flushed");
    }

    #[test]
    fn unread_input_is_handed_on() {
        let mut t = Tty::new();
        typed(&mut t, b"xl list\rhal");
        assert_eq!(t.take_unread(), b"xl list\nhal");
        assert!(!t.readable());
        assert_eq!(t.take_unread(), b"");
    }

    #[test]
    fn output_maps_newlines_unless_told_not_to() {
        let mut t = Tty::new();
        let mut out = Vec::new();
        t.output(b"a\nb", &mut out);
        assert_eq!(out, b"a\r\nb");
        let raw = Termios {
            oflag: 0,
            ..Termios::default()
        };
        t.set(raw, false);
        out.clear();
        t.output(b"a\nb", &mut out);
        assert_eq!(out, b"a\nb");
    }

    #[test]
    fn input_is_bounded() {
        let mut t = Tty::new();
        let long = alloc::vec![b'x'; INPUT_MAX * 2];
        typed(&mut t, &long);
        typed(&mut t, b"\n");
        let mut buf = alloc::vec![0u8; INPUT_MAX * 3];
        let n = t.read(&mut buf).unwrap();
        assert!(n <= INPUT_MAX + 1, "{n}");
        // Raw input: the oldest is dropped.
        let mut raw = Termios::default();
        raw.lflag &= !(lflag::ICANON | lflag::ECHO);
        t.set(raw, true);
        for _ in 0..3 {
            typed(&mut t, &long);
        }
        assert!(t.pending() <= INPUT_MAX);
    }
}
