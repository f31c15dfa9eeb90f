//! The words of a kernel command line (`start_info.cmd_line`, set by the `cmdline` or
//! `extra` key of the domain's xl configuration).
//!
//! Words are separated by spaces; a word `key=value` sets `key`. The demos read:
//!
//! - `console=ring|hypervisor` (both demos): where output goes. `ring`, the default for a
//!   domU, is the console ring that dom0's console backend serves (`xl console`);
//!   `hypervisor` writes with `console_io` instead, into the hypervisor's log (each line
//!   shown as `(d<id>) ...`): useful while no backend runs, but input is then impossible
//!   for a domU. A kernel started as dom0 has no ring and always uses `console_io`.
//! - `limit=<n>` (`compute`): count the primes below `n` (default 1000000); digits,
//!   optionally grouped with `_`, or with a `k`/`M`/`G` suffix (powers of 1000).

/// The value of the last `key=value` word of `cmdline`; `None` if there is none.
pub fn value<'a>(cmdline: &'a [u8], key: &str) -> Option<&'a [u8]> {
    cmdline
        .split(|&b| b == b' ')
        .filter_map(|word| {
            let rest = word.strip_prefix(key.as_bytes())?;
            rest.strip_prefix(b"=")
        })
        .next_back()
}

/// Parses a count: decimal digits, `_` between them allowed, optionally followed by `k`
/// (thousand), `M` (million) or `G` (billion). `None` for anything else or on overflow.
pub fn parse_count(text: &[u8]) -> Option<u64> {
    let (digits, scale) = match text.last()? {
        b'k' | b'K' => (&text[..text.len() - 1], 1_000),
        b'M' => (&text[..text.len() - 1], 1_000_000),
        b'G' => (&text[..text.len() - 1], 1_000_000_000),
        _ => (text, 1),
    };
    if digits.first()?.is_ascii_digit() && digits.last()?.is_ascii_digit() {
        let mut n: u64 = 0;
        for &b in digits {
            match b {
                b'0'..=b'9' => n = n.checked_mul(10)?.checked_add(u64::from(b - b'0'))?,
                b'_' => {}
                _ => return None,
            }
        }
        n.checked_mul(scale)
    } else {
        None
    }
}

/// Where the console output goes (`console=`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConsoleChoice {
    /// The console ring, when the domain has one (the default).
    Ring,
    /// The hypervisor's console (`console_io`).
    Hypervisor,
}

/// The `console=` word of `cmdline`: `Ok(None)` when absent, `Err(value)` when unknown.
pub fn console_choice(cmdline: &[u8]) -> Result<Option<ConsoleChoice>, &[u8]> {
    match value(cmdline, "console") {
        None => Ok(None),
        Some(b"ring") => Ok(Some(ConsoleChoice::Ring)),
        Some(b"hypervisor") => Ok(Some(ConsoleChoice::Hypervisor)),
        Some(other) => Err(other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_by_key() {
        let line = b"console=ring limit=500 limitless=1 limit=7k";
        assert_eq!(value(line, "limit"), Some(&b"7k"[..]), "the last one wins");
        assert_eq!(value(line, "console"), Some(&b"ring"[..]));
        assert_eq!(value(line, "lim"), None);
        assert_eq!(value(b"", "limit"), None);
        assert_eq!(value(b"limit", "limit"), None, "a bare word sets nothing");
        assert_eq!(value(b"limit=", "limit"), Some(&b""[..]));
    }

    #[test]
    fn counts() {
        assert_eq!(parse_count(b"1000000"), Some(1_000_000));
        assert_eq!(parse_count(b"1_000_000"), Some(1_000_000));
        assert_eq!(parse_count(b"10k"), Some(10_000));
        assert_eq!(parse_count(b"2M"), Some(2_000_000));
        assert_eq!(parse_count(b"1G"), Some(1_000_000_000));
        assert_eq!(parse_count(b"0"), Some(0));
        for bad in [
            &b""[..],
            b"k",
            b"_1",
            b"1_",
            b"1x",
            b"-5",
            b"1.5M",
            b"99999999999999999999",
            b"99999999999999G",
        ] {
            assert_eq!(parse_count(bad), None, "{:?}", core::str::from_utf8(bad));
        }
    }

    #[test]
    fn console_words() {
        assert_eq!(console_choice(b"limit=5"), Ok(None));
        assert_eq!(
            console_choice(b"console=hypervisor"),
            Ok(Some(ConsoleChoice::Hypervisor))
        );
        assert_eq!(
            console_choice(b"console=ring"),
            Ok(Some(ConsoleChoice::Ring))
        );
        assert_eq!(console_choice(b"console=hvc0"), Err(&b"hvc0"[..]));
    }
}
