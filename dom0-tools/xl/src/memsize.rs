//! Memory sizes on xl's command line (`mem-set`, `mem-max`).
//!
//! A decimal number with an optional suffix, as Xen's xl reads them: none
//! or `k` for KiB, `m` MiB, `g` GiB, `t` TiB, `b` bytes (rounded up to
//! whole KiB); either case.

/// `text` as KiB, or the message xl prints.
pub fn parse_kib(text: &str) -> Result<u64, String> {
    let bad = || {
        format!(
            "invalid memory size \"{text}\": give a number with an optional unit b, k, m, g or t (e.g. 64m)"
        )
    };
    let (digits, unit) = match text.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
        Some((i, _)) => text.split_at(i),
        None => (text, ""),
    };
    if digits.is_empty() {
        return Err(bad());
    }
    let too_large = || format!("memory size \"{text}\" is too large");
    // Only digits here, so parsing can fail only by overflow.
    let n: u64 = digits.parse().map_err(|_| too_large())?;
    let kib = match unit.to_ascii_lowercase().as_str() {
        "" | "k" => Some(n),
        "b" => Some(n.div_ceil(1024)),
        "m" => n.checked_mul(1 << 10),
        "g" => n.checked_mul(1 << 20),
        "t" => n.checked_mul(1 << 30),
        _ => return Err(bad()),
    };
    kib.ok_or_else(too_large)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units() {
        assert_eq!(parse_kib("1024"), Ok(1024));
        assert_eq!(parse_kib("64k"), Ok(64));
        assert_eq!(parse_kib("64m"), Ok(65536));
        assert_eq!(parse_kib("64M"), Ok(65536));
        assert_eq!(parse_kib("2g"), Ok(2 << 20));
        assert_eq!(parse_kib("1t"), Ok(1 << 30));
        assert_eq!(parse_kib("1b"), Ok(1));
        assert_eq!(parse_kib("2048b"), Ok(2));
        assert_eq!(parse_kib("0"), Ok(0));
    }

    #[test]
    fn refusals() {
        for bad in ["", "m", "64mb", "-1", "1.5g", " 64", "64 ", "0x40"] {
            let e = parse_kib(bad).unwrap_err();
            assert!(e.contains("invalid memory size"), "{bad:?}: {e}");
        }
        assert!(
            parse_kib("99999999999999999999")
                .unwrap_err()
                .contains("too large")
        );
        assert!(parse_kib("17179869184t").unwrap_err().contains("too large"));
    }
}
