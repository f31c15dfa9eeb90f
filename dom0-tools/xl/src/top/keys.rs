//! xentop's interactive side: the keys it reads (`handle_key`) and the screen it draws
//! with curses, here with the terminal's own escape sequences. The keys are xentop's:
//! `q`/`Q`/Escape quit, `d` asks for the delay (`Delay(sec): `, Enter sets it, Escape
//! cancels), `s` makes the next column the sort key, `r` repeats the header, `v` shows the
//! vCPUs, `n` and `b` the networks and block devices (none under Xenia: they add no line),
//! the arrow keys scroll the domains, Ctrl-L redraws. Ctrl-C also quits: under curses it
//! is the terminal's interrupt, which dom0's console passes through as a byte.

use super::Table;
use super::args::Options;

/// A key as curses would give it to xentop, from the bytes the terminal sends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Key {
    /// A plain byte.
    Byte(u8),
    /// Escape on its own.
    Escape,
    /// The up arrow (`ESC [ A` or `ESC O A`).
    Up,
    /// The down arrow.
    Down,
    /// Backspace or Delete (curses' `KEY_BACKSPACE`).
    Backspace,
    /// Another escape sequence (another arrow, a function key): xentop ignores it.
    Other,
}

/// Escape.
const ESC: u8 = 0x1b;
/// Ctrl-L, xentop's `KEY_REPAINT`.
const REPAINT: u8 = 0x0c;
/// Ctrl-C.
const INTERRUPT: u8 = 0x03;

/// Splits what the terminal sent into keys. An Escape followed in the same read by `[` or
/// `O` starts a sequence (what curses' `keypad` decodes), up to its final letter or `~`.
pub fn decode(bytes: &[u8]) -> Vec<Key> {
    let mut keys = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        i += 1;
        match b {
            ESC if matches!(bytes.get(i), Some(b'[' | b'O')) => {
                i += 1;
                let start = i;
                while i < bytes.len() && !(bytes[i].is_ascii_alphabetic() || bytes[i] == b'~') {
                    i += 1;
                }
                let end = bytes.get(i).copied();
                i += 1;
                keys.push(match (end, i - 1 - start) {
                    (Some(b'A'), 0) => Key::Up,
                    (Some(b'B'), 0) => Key::Down,
                    _ => Key::Other,
                });
            }
            ESC => keys.push(Key::Escape),
            0x08 | 0x7f => keys.push(Key::Backspace),
            _ => keys.push(Key::Byte(b)),
        }
    }
    keys
}

/// The longest delay value the prompt takes (xentop's `PROMPT_VAL_LEN` less its NUL).
const PROMPT_VAL_MAX: usize = 79;

/// What the keys change: xentop's globals that `handle_key` sets.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct View {
    /// Seconds between samples.
    pub delay: u32,
    /// The index of the sort column in [`super::FIELDS`] (NAME at first).
    pub sort: usize,
    /// The first domain shown.
    pub first: usize,
    /// `v`.
    pub vcpus: bool,
    /// `n` (no lines under Xenia).
    pub networks: bool,
    /// `b` (no lines under Xenia).
    pub vbds: bool,
    /// `r`.
    pub repeat_header: bool,
    /// `-f`.
    pub full_name: bool,
    /// What has been typed at the `Delay(sec)` prompt, while it is open.
    pub prompt: Option<String>,
    /// Ctrl-L was typed: clear the screen before the next draw.
    pub repaint: bool,
}

impl View {
    /// The view the command line starts with.
    pub fn new(o: &Options) -> View {
        View {
            delay: o.delay,
            sort: 0,
            first: 0,
            vcpus: o.vcpus,
            networks: o.networks,
            vbds: o.vbds,
            repeat_header: o.repeat_header,
            full_name: o.full_name,
            prompt: None,
            repaint: false,
        }
    }

    /// How the table is drawn (`attributes` on the screen, off in batch mode).
    pub fn table(&self, attributes: bool) -> Table {
        Table {
            sort: self.sort,
            full_name: self.full_name,
            repeat_header: self.repeat_header,
            vcpus: self.vcpus,
            attributes,
        }
    }

    /// xentop's `handle_key`: false when the key quits.
    pub fn key(&mut self, key: Key) -> bool {
        if let Some(val) = &mut self.prompt {
            match key {
                Key::Byte(b'\r' | b'\n') => {
                    // `set_delay`: `atoi`, and only a positive delay is taken.
                    let d = crate::cli::getopt::strtol(val).unwrap_or(0);
                    if d > 0 {
                        self.delay = d.min(i64::from(i32::MAX)) as u32;
                    }
                    self.prompt = None;
                }
                Key::Escape => self.prompt = None,
                Key::Backspace => {
                    val.pop();
                }
                Key::Byte(b) if (b' '..=b'~').contains(&b) && val.len() < PROMPT_VAL_MAX => {
                    val.push(char::from(b));
                }
                _ => {}
            }
            return true;
        }
        match key {
            Key::Byte(b'n' | b'N') => self.networks ^= true,
            Key::Byte(b'b' | b'B') => self.vbds ^= true,
            Key::Byte(b'r' | b'R') => self.repeat_header ^= true,
            Key::Byte(b's' | b'S') => self.sort = (self.sort + 1) % super::FIELDS.len(),
            Key::Byte(b'v' | b'V') => self.vcpus ^= true,
            Key::Down => self.first += 1,
            Key::Up => self.first = self.first.saturating_sub(1),
            Key::Byte(b'd' | b'D') => self.prompt = Some(String::new()),
            Key::Byte(REPAINT) => self.repaint = true,
            Key::Byte(b'q' | b'Q' | INTERRUPT) | Key::Escape => return false,
            _ => {}
        }
        true
    }
}

const REVERSE: &str = "\x1b[7m";
const NOT_REVERSE: &str = "\x1b[27m";
/// xentop's colour pair 1 (default foreground on yellow), for the options that are on.
const ON: &str = "\x1b[43m";
const NOT_ON: &str = "\x1b[49m";

/// xentop's bottom line (`do_bottom_line`), drawn two columns in on the last line: the
/// prompt while one is open, else the keys with their letter in reverse video and the
/// options that are on highlighted.
pub fn bottom_line(view: &View) -> String {
    if let Some(val) = &view.prompt {
        return format!("Delay(sec): {val}");
    }
    let key = |c: char| format!("{REVERSE}{c}{NOT_REVERSE}");
    let lit = |on: bool, s: &str| {
        if on {
            format!("{ON}{s}{NOT_ON}")
        } else {
            s.to_string()
        }
    };
    format!(
        "{}elay  {}{}  {}{}{}  {}{}  {}{}  {}ort order  {}uit  ",
        key('D'),
        key('N'),
        lit(view.networks, "etworks"),
        lit(view.vbds, "v"),
        key('B'),
        lit(view.vbds, "ds"),
        key('V'),
        lit(view.vcpus, "CPUs"),
        key('R'),
        lit(view.repeat_header, "epeat header"),
        key('S'),
        key('Q'),
    )
}

/// What fits on a screen of `rows` lines of `cols` columns above its last line, as
/// xentop's `print` keeps it (it prints nothing once the cursor is on the last line, which
/// is the bottom line's): long lines wrap as curses wraps them; escape sequences take no
/// room. Lines end with CR LF, as curses moves to the next line on a raw terminal.
pub fn clip(text: &str, rows: usize, cols: usize) -> String {
    let (mut row, mut col) = (0usize, 0usize);
    let mut out = String::new();
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if row + 1 >= rows {
            break;
        }
        match c {
            '\x1b' => {
                out.push(c);
                // A CSI sequence: up to its final byte.
                while let Some(&n) = chars.peek() {
                    out.push(n);
                    chars.next();
                    if n.is_ascii_alphabetic() {
                        break;
                    }
                }
            }
            '\n' => {
                out += "\r\n";
                row += 1;
                col = 0;
            }
            _ => {
                out.push(c);
                col += 1;
                if col == cols {
                    row += 1;
                    col = 0;
                }
            }
        }
    }
    out
}

/// The whole screen: home and clear (all of it after Ctrl-L, as curses' `clear`; else
/// erase, which comes to the same on a terminal), the text clipped to the screen, and the
/// bottom line at the last line's third column.
pub fn screen(text: &str, view: &View, rows: usize, cols: usize) -> String {
    format!(
        "\x1b[0m\x1b[H\x1b[2J{}\x1b[{rows};3H{}\x1b[0m",
        clip(text, rows, cols),
        bottom_line(view)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_from_bytes() {
        assert_eq!(decode(b"q"), [Key::Byte(b'q')]);
        assert_eq!(decode(b"\x1b[A\x1b[B\x1bOA"), [Key::Up, Key::Down, Key::Up]);
        assert_eq!(decode(b"\x1b"), [Key::Escape]);
        assert_eq!(
            decode(b"\x1b[C\x1b[15~x"),
            [Key::Other, Key::Other, Key::Byte(b'x')]
        );
        assert_eq!(decode(b"\x7f\x08"), [Key::Backspace, Key::Backspace]);
    }

    #[test]
    fn xentop_keys() {
        let mut v = View::new(&Options::default());
        for k in decode(b"sssvrnb\x1b[B\x1b[B\x1b[A") {
            assert!(v.key(k));
        }
        assert_eq!((v.sort, v.first), (3, 1));
        assert!(v.vcpus && v.repeat_header && v.networks && v.vbds);
        // `s` goes round the nineteen columns.
        for _ in 0..16 {
            v.key(Key::Byte(b'S'));
        }
        assert_eq!(v.sort, 0);
        for q in [&b"q"[..], b"Q", b"\x1b", b"\x03"] {
            assert!(!View::new(&Options::default()).key(decode(q)[0]), "{q:?}");
        }
        assert!(v.key(Key::Byte(b'x')));
    }

    #[test]
    fn delay_prompt() {
        let mut v = View::new(&Options::default());
        assert_eq!(v.delay, 3);
        for k in decode(b"d12\x7f5") {
            v.key(k);
        }
        assert_eq!(bottom_line(&v), "Delay(sec): 15");
        // `q` at the prompt is typed, not a quit.
        assert!(v.key(Key::Byte(b'q')));
        v.key(Key::Backspace);
        v.key(Key::Byte(b'\r'));
        assert_eq!((v.delay, v.prompt.clone()), (15, None));
        // Zero or a word leaves the delay; Escape cancels.
        for typed in [&b"d0\r"[..], b"dsoon\r", b"d7\x1b"] {
            for k in decode(typed) {
                v.key(k);
            }
        }
        assert_eq!((v.delay, v.prompt.clone()), (15, None));
    }

    #[test]
    fn bottom_line_marks_keys_and_options() {
        let mut v = View::new(&Options::default());
        let plain = |s: &str| s.replace(REVERSE, "").replace(NOT_REVERSE, "");
        assert_eq!(
            plain(&bottom_line(&v)),
            "Delay  Networks  vBds  VCPUs  Repeat header  Sort order  Quit  "
        );
        v.vcpus = true;
        assert!(bottom_line(&v).contains(&format!("{ON}CPUs{NOT_ON}")));
    }

    #[test]
    fn clip_wraps_and_keeps_the_last_line() {
        // Five rows: four for the text; a 12-character line takes two rows of 8.
        let text = "one\n\x1b[1mtwelve chars\x1b[22m\nthree\nfour\n";
        assert_eq!(
            clip(text, 5, 8),
            "one\r\n\x1b[1mtwelve chars\x1b[22m\r\nthree\r\n"
        );
        assert_eq!(clip("a\nb\n", 24, 80), "a\r\nb\r\n");
    }
}
