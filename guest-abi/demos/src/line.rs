//! The line editor behind `echo`: bytes typed on a terminal in, lines out.
//!
//! A terminal attached to the console (`xl console`, or a serial line) sends what is typed,
//! byte by byte, and shows only what the guest sends back. So the editor tells its caller,
//! for every byte, what to show: the character itself, an erased character, or the end of
//! a line. It knows what terminals send:
//!
//! - Enter is CR (`\r`), LF (`\n`) or CR LF; each ends one line (the LF of a CR LF pair
//!   ends nothing).
//! - Backspace is DEL (`0x7f`) or BS (`0x08`); it erases the last character, if any.
//! - Printable ASCII is kept, up to [`LineEditor::MAX`] bytes; anything else (control
//!   characters, escape sequences' bytes, non-ASCII) is dropped and not shown.

/// What the caller should do after a byte was fed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Edit<'a> {
    /// Nothing to show: the byte was dropped.
    Nothing,
    /// The byte joined the line: show it.
    Echo(u8),
    /// The last character was erased: take it off the screen (`"\x08 \x08"`).
    Erase,
    /// The line is complete (without its end-of-line bytes): start a new line on the
    /// screen and act on the text. The next byte starts a new, empty line.
    Line(&'a [u8]),
}

/// A line being typed.
#[derive(Clone, Debug)]
pub struct LineEditor {
    buf: [u8; LineEditor::MAX],
    len: usize,
    /// The previous byte was a CR: an LF now is the rest of the same Enter.
    after_cr: bool,
    /// The line was returned by [`Edit::Line`]; forget it on the next byte.
    done: bool,
}

impl LineEditor {
    /// The longest line kept; further characters are dropped.
    pub const MAX: usize = 200;

    /// An empty line.
    pub const fn new() -> Self {
        Self {
            buf: [0; Self::MAX],
            len: 0,
            after_cr: false,
            done: false,
        }
    }

    /// What has been typed of the current line so far.
    pub fn text(&self) -> &[u8] {
        if self.done {
            &[]
        } else {
            &self.buf[..self.len]
        }
    }

    /// Takes one typed byte.
    pub fn feed(&mut self, byte: u8) -> Edit<'_> {
        if self.done {
            self.len = 0;
            self.done = false;
        }
        let after_cr = core::mem::replace(&mut self.after_cr, byte == b'\r');
        match byte {
            b'\n' if after_cr => Edit::Nothing,
            b'\r' | b'\n' => {
                self.done = true;
                Edit::Line(&self.buf[..self.len])
            }
            0x08 | 0x7f if self.len > 0 => {
                self.len -= 1;
                Edit::Erase
            }
            0x20..=0x7e if self.len < Self::MAX => {
                self.buf[self.len] = byte;
                self.len += 1;
                Edit::Echo(byte)
            }
            _ => Edit::Nothing,
        }
    }
}

impl Default for LineEditor {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::string::String;
    use std::vec;
    use std::vec::Vec;

    /// Feeds `input` and returns the completed lines and what the screen got (`<` for an
    /// erase, `|` for a line end).
    fn run(input: &[u8]) -> (Vec<String>, String) {
        let mut ed = LineEditor::new();
        let mut lines = Vec::new();
        let mut screen = String::new();
        for &b in input {
            match ed.feed(b) {
                Edit::Nothing => {}
                Edit::Echo(c) => screen.push(char::from(c)),
                Edit::Erase => screen.push('<'),
                Edit::Line(text) => {
                    lines.push(String::from_utf8(text.to_vec()).unwrap());
                    screen.push('|');
                }
            }
        }
        (lines, screen)
    }

    #[test]
    fn every_enter_ends_one_line() {
        assert_eq!(run(b"ab\rcd\nef\r\ngh").0, ["ab", "cd", "ef"]);
        assert_eq!(run(b"\r\n\r\n").0, ["", ""], "two empty lines, not four");
        assert_eq!(run(b"\n\n").0, ["", ""]);
        assert_eq!(run(b"a\r\rb\r").0, ["a", "", "b"]);
    }

    #[test]
    fn typed_characters_are_shown_as_they_come() {
        assert_eq!(run(b"hi\r").1, "hi|");
        assert_eq!(
            run(b"ab\x7fc\x08\x08\x08d\r"),
            (vec!["d".into()], "ab<c<<d|".into())
        );
    }

    #[test]
    fn control_bytes_and_overflow_are_dropped() {
        let (lines, screen) = run(b"a\x1b[Ab\x01\xc3\xa9\r");
        assert_eq!(
            lines,
            ["a[Ab"],
            "the printable bytes of an escape sequence stay"
        );
        assert_eq!(screen, "a[Ab|");
        let long = [b'x'; LineEditor::MAX + 10];
        let (lines, screen) = run(&[&long[..], b"\r"].concat());
        assert_eq!(lines[0].len(), LineEditor::MAX);
        assert_eq!(screen.len(), LineEditor::MAX + 1);
    }

    #[test]
    fn text_so_far() {
        let mut ed = LineEditor::new();
        for &b in b"abc" {
            ed.feed(b);
        }
        assert_eq!(ed.text(), b"abc");
        assert_eq!(ed.feed(b'\r'), Edit::Line(b"abc"));
        assert_eq!(ed.text(), b"");
        ed.feed(b'z');
        assert_eq!(ed.text(), b"z");
    }
}
