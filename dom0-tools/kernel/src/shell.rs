//! The logic of dom0's `init` shell (DESIGN.md §7), kept apart from the
//! kernel so it is tested on the host: the line editor behind the
//! `dom0# ` prompt, the splitting of a line into a program's arguments,
//! and how the end of a program is reported.

use alloc::string::String;
use alloc::vec::Vec;

/// The prompt.
pub const PROMPT: &str = "dom0# ";
/// Longest line the editor keeps; further characters ring the bell.
pub const MAX_LINE: usize = 1024;

/// What a typed byte produced.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Input {
    /// Nothing complete yet.
    Pending,
    /// A finished line (without its end-of-line).
    Line(String),
    /// The line was abandoned (Ctrl-C).
    Cancelled,
}

/// A one-line editor for a serial terminal: printable ASCII, backspace
/// (DEL or BS), Ctrl-U to erase the line, Ctrl-C to abandon it, and CR,
/// LF or CR LF to finish it.
#[derive(Clone, Debug, Default)]
pub struct LineEditor {
    line: String,
    after_cr: bool,
    escape: Escape,
}

/// Where the editor is in a terminal escape sequence (arrow keys and the
/// like send `ESC [ ... final`), which it swallows whole.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
enum Escape {
    #[default]
    None,
    /// After ESC.
    Start,
    /// Inside `ESC [`, until a final byte 0x40..=0x7e.
    Csi,
}

impl LineEditor {
    /// An empty editor.
    pub const fn new() -> Self {
        Self {
            line: String::new(),
            after_cr: false,
            escape: Escape::None,
        }
    }

    /// The line so far.
    pub fn current(&self) -> &str {
        &self.line
    }

    /// Takes byte `b`; appends what the terminal should show to `echo`.
    pub fn feed(&mut self, b: u8, echo: &mut Vec<u8>) -> Input {
        let after_cr = core::mem::replace(&mut self.after_cr, false);
        match (self.escape, b) {
            (Escape::Start, b'[') => {
                self.escape = Escape::Csi;
                return Input::Pending;
            }
            (Escape::Start, _) | (Escape::Csi, 0x40..=0x7e) => {
                self.escape = Escape::None;
                return Input::Pending;
            }
            (Escape::Csi, _) => return Input::Pending,
            (Escape::None, 0x1b) => {
                self.escape = Escape::Start;
                return Input::Pending;
            }
            (Escape::None, _) => {}
        }
        match b {
            b'\n' if after_cr => Input::Pending,
            b'\r' | b'\n' => {
                self.after_cr = b == b'\r';
                echo.extend_from_slice(b"\r\n");
                Input::Line(core::mem::take(&mut self.line))
            }
            0x7f | 0x08 => {
                if self.line.pop().is_some() {
                    echo.extend_from_slice(b"\x08 \x08");
                }
                Input::Pending
            }
            0x15 => {
                for _ in 0..self.line.len() {
                    echo.extend_from_slice(b"\x08 \x08");
                }
                self.line.clear();
                Input::Pending
            }
            0x03 => {
                self.line.clear();
                echo.extend_from_slice(b"^C\r\n");
                Input::Cancelled
            }
            0x20..=0x7e if self.line.len() < MAX_LINE => {
                self.line.push(b as char);
                echo.push(b);
                Input::Pending
            }
            0x20..=0x7e => {
                echo.push(0x07);
                Input::Pending
            }
            _ => Input::Pending,
        }
    }
}

/// Splits a command line into words as a POSIX shell would for simple
/// commands: blanks separate words, `'...'` is literal, `"..."` keeps
/// blanks and honours `\"` and `\\`, a backslash outside quotes escapes the
/// next character. Returns the message to print for an unterminated quote
/// or a trailing backslash.
pub fn split_args(line: &str) -> Result<Vec<String>, &'static str> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            ' ' | '\t' => {
                if in_word {
                    words.push(core::mem::take(&mut word));
                    in_word = false;
                }
            }
            '\'' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(c) => word.push(c),
                        None => return Err("unterminated ' quote"),
                    }
                }
            }
            '"' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some(c @ ('"' | '\\')) => word.push(c),
                            Some(c) => {
                                word.push('\\');
                                word.push(c);
                            }
                            None => return Err("unterminated \" quote"),
                        },
                        Some(c) => word.push(c),
                        None => return Err("unterminated \" quote"),
                    }
                }
            }
            '\\' => {
                in_word = true;
                word.push(chars.next().ok_or("a backslash ends the line")?);
            }
            c => {
                in_word = true;
                word.push(c);
            }
        }
    }
    if in_word {
        words.push(word);
    }
    Ok(words)
}

/// How a program ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ended {
    /// It called `exit_group` (or `exit` in its only thread) with this status.
    Exited(i32),
    /// It took an exception it could not handle.
    Fault {
        /// The vector (14 for a page fault).
        vector: u8,
        /// Where.
        rip: u64,
        /// The faulting address, for a page fault.
        addr: Option<u64>,
    },
}

/// The line the shell prints after `program` ended, if any: nothing for a
/// zero status, the status otherwise, the fault in words for a fault.
pub fn report(program: &str, ended: Ended) -> Option<String> {
    let name = |v: u8| match v {
        0 => "divide error",
        6 => "invalid opcode",
        13 => "general protection fault",
        14 => "page fault",
        17 => "alignment check",
        19 => "SIMD floating-point exception",
        _ => "exception",
    };
    match ended {
        Ended::Exited(0) => None,
        Ended::Exited(status) => Some(alloc::format!("{program}: exited with status {status}")),
        Ended::Fault {
            vector,
            rip,
            addr: Some(a),
        } => Some(alloc::format!(
            "{program}: killed by {} (vector {vector}) at rip {rip:#x}, address {a:#x}",
            name(vector)
        )),
        Ended::Fault {
            vector,
            rip,
            addr: None,
        } => Some(alloc::format!(
            "{program}: killed by {} (vector {vector}) at rip {rip:#x}",
            name(vector)
        )),
    }
}

/// What `help` prints: the built-in commands and the programs found in
/// `/bin` (`names`, in any order; shown sorted, one per line).
pub fn help(names: &[&str]) -> String {
    let mut sorted: Vec<&str> = names.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    let mut out = String::from("built-in: help, time <command>, poweroff, reboot\nprograms:\n");
    for n in sorted {
        out.push_str("  ");
        out.push_str(n);
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    fn type_all(ed: &mut LineEditor, bytes: &[u8]) -> (Vec<Input>, Vec<u8>) {
        let mut echo = vec![];
        let out = bytes
            .iter()
            .map(|&b| ed.feed(b, &mut echo))
            .filter(|i| *i != Input::Pending)
            .collect();
        (out, echo)
    }

    #[test]
    fn typing_and_backspace() {
        let mut ed = LineEditor::new();
        let (out, echo) = type_all(&mut ed, b"xl lisx\x7ft\r");
        assert_eq!(out, [Input::Line("xl list".into())]);
        assert_eq!(echo, b"xl lisx\x08 \x08t\r\n");
        // Backspace on an empty line shows nothing.
        let (out, echo) = type_all(&mut ed, b"\x08\x7fa\x08\x08\n");
        assert_eq!(out, [Input::Line(String::new())]);
        assert_eq!(echo, b"a\x08 \x08\r\n");
    }

    #[test]
    fn line_ends() {
        let mut ed = LineEditor::new();
        // CR LF is one end of line; LF alone and CR alone are one each.
        let (out, _) = type_all(&mut ed, b"a\r\nb\nc\r\r");
        assert_eq!(
            out,
            [
                Input::Line("a".into()),
                Input::Line("b".into()),
                Input::Line("c".into()),
                Input::Line(String::new())
            ]
        );
    }

    #[test]
    fn kill_cancel_and_limits() {
        let mut ed = LineEditor::new();
        let (out, echo) = type_all(&mut ed, b"ab\x15c\r");
        assert_eq!(out, [Input::Line("c".into())]);
        assert_eq!(echo, b"ab\x08 \x08\x08 \x08c\r\n");
        let (out, echo) = type_all(&mut ed, b"xyz\x03");
        assert_eq!(out, [Input::Cancelled]);
        assert_eq!(echo, b"xyz^C\r\n");
        assert_eq!(ed.current(), "");
        // Escape sequences and other controls are dropped, not inserted.
        let (out, echo) = type_all(&mut ed, b"\x1b[A\x1b[1;5Dq\x01\xff\x1bxr\r");
        assert_eq!(out, [Input::Line("qr".into())]);
        assert_eq!(echo, b"qr\r\n");
        // A full line rings the bell instead of growing or losing the start.
        let long = vec![b'x'; MAX_LINE + 3];
        let (_, echo) = type_all(&mut ed, &long);
        assert_eq!(ed.current().len(), MAX_LINE);
        assert_eq!(&echo[MAX_LINE..], &[7, 7, 7]);
    }

    #[test]
    fn words() {
        assert_eq!(
            split_args("  xl   list  "),
            Ok(vec!["xl".into(), "list".into()])
        );
        assert_eq!(split_args(""), Ok(vec![]));
        assert_eq!(
            split_args(r#"xl create /etc/xen/a.cfg 'name=a b' "extra=x \"y\"" c\ d"#),
            Ok(vec![
                "xl".into(),
                "create".into(),
                "/etc/xen/a.cfg".into(),
                "name=a b".into(),
                "extra=x \"y\"".into(),
                "c d".into()
            ])
        );
        assert_eq!(
            split_args("a '' b"),
            Ok(vec!["a".into(), "".into(), "b".into()])
        );
        assert_eq!(split_args("a 'b"), Err("unterminated ' quote"));
        assert_eq!(split_args("a \"b"), Err("unterminated \" quote"));
        assert_eq!(split_args("a \\"), Err("a backslash ends the line"));
    }

    #[test]
    fn reports() {
        assert_eq!(report("xl", Ended::Exited(0)), None);
        assert_eq!(
            report("xl", Ended::Exited(1)).unwrap(),
            "xl: exited with status 1"
        );
        assert_eq!(
            report(
                "calc",
                Ended::Fault {
                    vector: 14,
                    rip: 0x401000,
                    addr: Some(0)
                }
            )
            .unwrap(),
            "calc: killed by page fault (vector 14) at rip 0x401000, address 0x0"
        );
        assert_eq!(
            report(
                "calc",
                Ended::Fault {
                    vector: 6,
                    rip: 0x10,
                    addr: None
                }
            )
            .unwrap(),
            "calc: killed by invalid opcode (vector 6) at rip 0x10"
        );
    }

    #[test]
    fn help_lists_programs_sorted() {
        assert_eq!(
            help(&["xl", "echo", "xl"]),
            "built-in: help, time <command>, poweroff, reboot\nprograms:\n  echo\n  xl\n"
        );
    }
}
