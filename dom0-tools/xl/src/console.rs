//! `xl console`: what the keys typed at it mean. The copying loop (poll on
//! the terminal and the console descriptor) is in `main.rs`.

/// Ctrl-]: detaches from the console, as in Xen's xl.
pub const ESCAPE: u8 = 0x1d;

/// How to handle `typed`: the number of leading bytes to send to the
/// domain, and whether Ctrl-] came after them (detach; anything after it
/// is dropped).
pub fn scan_input(typed: &[u8]) -> (usize, bool) {
    match typed.iter().position(|&b| b == ESCAPE) {
        Some(i) => (i, true),
        None => (typed.len(), false),
    }
}

/// The line xl prints (on stderr) when it attaches to domain `dom`.
pub fn attach_banner(dom: u16, name: &str) -> String {
    format!("Connected to the console of domain {dom} ({name}); Ctrl-] detaches\n")
}

/// Why the loop ended, for the closing message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum End {
    /// The user typed Ctrl-].
    Detached,
    /// The domain is gone.
    DomainGone,
}

/// What xl prints when it leaves the console: a newline after a detach
/// (the guest's line may be unfinished), and a note when the domain went.
pub fn end_message(end: End, dom: u16) -> String {
    match end {
        End::Detached => "\n".into(),
        End::DomainGone => format!("\nxl: domain {dom} is gone; console closed\n"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escape_splits_input() {
        assert_eq!(scan_input(b"ls\r"), (3, false));
        assert_eq!(scan_input(b"ab\x1dcd"), (2, true));
        assert_eq!(scan_input(b"\x1d"), (0, true));
        assert_eq!(scan_input(b""), (0, false));
    }

    #[test]
    fn messages() {
        assert_eq!(
            attach_banner(7, "web"),
            "Connected to the console of domain 7 (web); Ctrl-] detaches\n"
        );
        assert_eq!(end_message(End::Detached, 7), "\n");
        assert!(end_message(End::DomainGone, 7).contains("domain 7 is gone"));
    }
}
