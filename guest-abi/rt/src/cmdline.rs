//! The kernel command line: `start_info.cmd_line`, words separated by spaces, of which a test
//! guest reads `test=<name>`.

/// The value of the first `key=value` word whose key is `key`, if any. Words are separated by
/// ASCII spaces or tabs; the first word may be the kernel's file name (some boot loaders pass
/// it), which never matches because it has no `=`.
pub fn value<'a>(cmdline: &'a [u8], key: &str) -> Option<&'a [u8]> {
    cmdline
        .split(|&b| b == b' ' || b == b'\t')
        .find_map(|word| {
            let eq = word.iter().position(|&b| b == b'=')?;
            (&word[..eq] == key.as_bytes()).then(|| &word[eq + 1..])
        })
}

/// The test name given with `test=<name>`, if any and if it is valid UTF-8.
pub fn test_name(cmdline: &[u8]) -> Option<&str> {
    value(cmdline, "test").and_then(|v| core::str::from_utf8(v).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_test_name() {
        assert_eq!(test_name(b"test=cpl"), Some("cpl"));
        assert_eq!(
            test_name(b"/boot/testguest.elf test=timers"),
            Some("timers")
        );
        assert_eq!(test_name(b"a=1  test=events\tb=2"), Some("events"));
        assert_eq!(test_name(b"test="), Some(""));
        assert_eq!(test_name(b""), None);
        assert_eq!(test_name(b"tests=cpl"), None);
        assert_eq!(test_name(b"xtest=cpl"), None);
        assert_eq!(test_name(b"test=\xff"), None);
        assert_eq!(value(b"x=1 x=2", "x"), Some(&b"1"[..]));
    }
}
