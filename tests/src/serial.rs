//! Turning the raw serial byte stream into text that assertions can match line by line.
//!
//! What comes out of COM1 is GRUB's terminal output (VT100 escape sequences for colours,
//! cursor movement and clearing the screen, `\r\n` line ends) followed by the hypervisor's log.
//! The *normalized* view drops escape sequences, carriage returns and other control characters
//! (keeping `\n` and `\t`) and decodes UTF-8 (invalid bytes become U+FFFD). It also drops the
//! `(XEN) ` that the hypervisor, as Xen does, puts before each of its own lines, so that
//! assertions read the lines' text (the raw view, `Qemu::raw_serial`, keeps it). It is built
//! incrementally and only ever grows at the end, so positions in it stay valid.

/// Incremental normalizer; feed it bytes as they arrive.
#[derive(Debug, Default)]
pub struct Normalizer {
    state: State,
    /// Printable bytes not yet decoded (an incomplete UTF-8 sequence at the end).
    pending: Vec<u8>,
    /// Within a line (else at the start of one, where `(XEN) ` is dropped).
    mid_line: bool,
    /// The start of a line held back while it may still become `(XEN) `.
    head: Vec<u8>,
}

/// What the hypervisor puts before each of its console lines.
const XEN_PREFIX: &[u8] = b"(XEN) ";

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
enum State {
    #[default]
    Ground,
    /// After ESC.
    Escape,
    /// ESC followed by intermediate bytes (e.g. `ESC ( B`).
    EscapeIntermediate,
    /// Control sequence: ESC `[` parameters final.
    Csi,
    /// Operating system command: ESC `]` ... BEL or ESC `\`.
    Osc,
    /// ESC inside an operating system command.
    OscEscape,
}

const ESC: u8 = 0x1b;
const BEL: u8 = 0x07;

impl Normalizer {
    /// A normalizer at the start of a stream.
    pub fn new() -> Normalizer {
        Normalizer::default()
    }

    /// Normalizes `bytes` and appends the result to `out`.
    pub fn push(&mut self, bytes: &[u8], out: &mut String) {
        for &b in bytes {
            self.byte(b);
        }
        self.decode(out, false);
    }

    /// Ends the stream: an incomplete UTF-8 sequence left over becomes U+FFFD.
    pub fn finish(&mut self, out: &mut String) {
        self.pending.append(&mut self.head);
        self.decode(out, true);
    }

    /// A byte of text (or `\n`): held while a line's start may still be `(XEN) `, which
    /// is dropped whole.
    fn text(&mut self, b: u8) {
        if self.mid_line {
            self.pending.push(b);
            self.mid_line = b != b'\n';
            return;
        }
        self.head.push(b);
        if self.head == XEN_PREFIX {
            self.head.clear();
            self.mid_line = true;
        } else if !XEN_PREFIX.starts_with(&self.head) {
            self.pending.append(&mut self.head);
            self.mid_line = b != b'\n';
        }
    }

    fn byte(&mut self, b: u8) {
        use State::*;
        self.state = match self.state {
            Ground => match b {
                ESC => Escape,
                b'\n' | b'\t' => {
                    self.text(b);
                    Ground
                }
                0x00..=0x1f | 0x7f => Ground,
                _ => {
                    self.text(b);
                    Ground
                }
            },
            Escape => match b {
                b'[' => Csi,
                b']' => Osc,
                0x20..=0x2f => EscapeIntermediate,
                ESC => Escape,
                0x30..=0x7e => Ground,
                _ => return self.abort(b),
            },
            EscapeIntermediate => match b {
                0x20..=0x2f => EscapeIntermediate,
                0x30..=0x7e => Ground,
                _ => return self.abort(b),
            },
            Csi => match b {
                0x20..=0x3f => Csi,
                0x40..=0x7e => Ground,
                _ => return self.abort(b),
            },
            Osc => match b {
                BEL => Ground,
                ESC => OscEscape,
                _ => Osc,
            },
            OscEscape => match b {
                b'\\' => Ground,
                _ => {
                    self.state = Escape;
                    return self.byte(b);
                }
            },
        };
    }

    /// A byte that cannot continue the current escape sequence ends it and counts as text.
    fn abort(&mut self, b: u8) {
        self.state = State::Ground;
        self.byte(b);
    }

    fn decode(&mut self, out: &mut String, at_end: bool) {
        loop {
            match std::str::from_utf8(&self.pending) {
                Ok(text) => {
                    out.push_str(text);
                    self.pending.clear();
                    return;
                }
                Err(e) => {
                    let valid = e.valid_up_to();
                    out.push_str(&String::from_utf8_lossy(&self.pending[..valid]));
                    match e.error_len() {
                        Some(bad) => {
                            out.push(char::REPLACEMENT_CHARACTER);
                            self.pending.drain(..valid + bad);
                        }
                        None if at_end => {
                            out.push(char::REPLACEMENT_CHARACTER);
                            self.pending.clear();
                            return;
                        }
                        None => {
                            self.pending.drain(..valid);
                            return;
                        }
                    }
                }
            }
        }
    }
}

/// Normalizes a complete byte stream at once.
pub fn normalize(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    let mut normalizer = Normalizer::new();
    normalizer.push(bytes, &mut out);
    normalizer.finish(&mut out);
    out
}

/// The first complete line (terminated by `\n`) that ends at or after byte offset `from` of
/// `text` and satisfies `pred`, with the offset just past its `\n`. Lines are matched whole:
/// when `from` is inside a line, that whole line is a candidate.
pub fn find_line_from(
    text: &str,
    from: usize,
    mut pred: impl FnMut(&str) -> bool,
) -> Option<(&str, usize)> {
    let from = from.min(text.len());
    let mut start = text
        .get(..from)
        .and_then(|head| head.rfind('\n'))
        .map_or(0, |i| i + 1);
    while let Some(len) = text[start..].find('\n') {
        let line = &text[start..start + len];
        if pred(line) {
            return Some((line, start + len + 1));
        }
        start += len + 1;
    }
    None
}

/// The first complete line of `text` that contains `needle`.
pub fn line_containing<'t>(text: &'t str, needle: &str) -> Option<&'t str> {
    find_line_from(text, 0, |line| line.contains(needle)).map(|(line, _)| line)
}

/// The first complete line of `text` that starts with `prefix`.
pub fn line_starting<'t>(text: &'t str, prefix: &str) -> Option<&'t str> {
    find_line_from(text, 0, |line| line.starts_with(prefix)).map(|(line, _)| line)
}

/// The index (among `text.lines()`) of the first line that satisfies `pred`.
pub fn line_index(text: &str, pred: impl FnMut(&str) -> bool) -> Option<usize> {
    text.lines().position(pred)
}

/// The last non-empty line of `text` (complete or not), for short error messages.
pub fn last_line(text: &str) -> Option<&str> {
    text.lines()
        .rev()
        .map(str::trim_end)
        .find(|l| !l.trim().is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strips_escapes_and_carriage_returns() {
        let raw = b"\x1b[2J\x1b[H\x1b[0;37;40mBooting `Xenia'\r\n\r\n\x1b[?25lXenia 0.1.0\r\nwarning: x\r\n";
        assert_eq!(
            normalize(raw),
            "Booting `Xenia'\n\nXenia 0.1.0\nwarning: x\n"
        );
    }

    #[test]
    fn xen_prefixes_are_dropped_at_line_starts_only() {
        let raw = b"(XEN) Xenia 0.1.0\r\n(XEN) (XEN) twice\r\n(d1) hello (XEN) \n(XE\n(XEN)x\n(X";
        assert_eq!(
            normalize(raw),
            "Xenia 0.1.0\n(XEN) twice\n(d1) hello (XEN) \n(XE\n(XEN)x\n(X"
        );
        // Split anywhere, the same.
        let whole = normalize(raw);
        for split in 0..=raw.len() {
            let mut n = Normalizer::new();
            let mut out = String::new();
            n.push(&raw[..split], &mut out);
            n.push(&raw[split..], &mut out);
            n.finish(&mut out);
            assert_eq!(out, whole, "split at {split}");
        }
    }

    #[test]
    fn other_escape_forms() {
        assert_eq!(
            normalize(b"a\x1b(Bb\x1b=c\x1b]0;title\x07d\x1b]2;t\x1b\\e"),
            "abcde"
        );
        assert_eq!(normalize(b"a\x08\x07\x00b\x7fc\td"), "abc\td");
        // A control character inside a control sequence ends it and still counts.
        assert_eq!(normalize(b"x\x1b[1\ny"), "x\ny");
    }

    #[test]
    fn incremental_equals_one_shot_at_any_split() {
        let raw = "\x1b[1;1Hé\r\nmémoire: 256 MiB\x1b[0m\r\nend\n".as_bytes();
        let whole = normalize(raw);
        for split in 0..=raw.len() {
            let mut n = Normalizer::new();
            let mut out = String::new();
            n.push(&raw[..split], &mut out);
            let first = out.clone();
            n.push(&raw[split..], &mut out);
            assert!(out.starts_with(&first), "only appends");
            assert_eq!(out, whole, "split at {split}");
        }
    }

    #[test]
    fn invalid_utf8_is_replaced() {
        assert_eq!(normalize(b"a\xffb"), "a\u{fffd}b");
        assert_eq!(normalize(b"a\xc3"), "a\u{fffd}");
    }

    #[test]
    fn line_matching() {
        let text =
            "GRUB junk Xenia 0.1.0\ncpu: A B, features: +nx\nmemory: 255 MiB usable\npartial";
        assert_eq!(line_containing(text, "MiB"), Some("memory: 255 MiB usable"));
        assert_eq!(
            line_starting(text, "cpu: "),
            Some("cpu: A B, features: +nx")
        );
        assert_eq!(line_starting(text, "Xenia"), None);
        assert_eq!(
            line_containing(text, "partial"),
            None,
            "incomplete lines do not count"
        );
        assert_eq!(line_index(text, |l| l.starts_with("memory:")), Some(2));
        assert_eq!(last_line(text), Some("partial"));

        // From an offset inside a line, that line is a candidate; earlier lines are not.
        let mid = text.find("features").unwrap();
        let (line, next) = find_line_from(text, mid, |l| l.contains("cpu")).unwrap();
        assert_eq!(line, "cpu: A B, features: +nx");
        assert!(text[next..].starts_with("memory"));
        assert!(find_line_from(text, next, |l| l.contains("cpu")).is_none());
        assert!(find_line_from(text, 10_000, |_| true).is_none());
    }
}
