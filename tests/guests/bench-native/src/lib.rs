//! The parts of `bench-native` that need no machine: reading the kernel command line out of
//! the multiboot2 boot information, its `key=value` words, and the arithmetic of a figure.
//! Built for the host as well, where the unit tests run; the kernel itself is `main.rs`.

#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

/// The multiboot2 boot information (Multiboot2 spec §3.6).
pub mod mb2 {
    /// Tag type of the boot command line (§3.6.3).
    pub const TAG_CMDLINE: u32 = 1;
    /// Tag type that ends the list.
    pub const TAG_END: u32 = 0;
    /// Size of the fixed part (`total_size`, `reserved`).
    const HEADER: usize = 8;

    fn u32_at(info: &[u8], at: usize) -> Option<u32> {
        let bytes = info.get(at..at.checked_add(4)?)?;
        Some(u32::from_le_bytes(bytes.try_into().ok()?))
    }

    /// The boot information's `total_size` field, read from its first 8 bytes.
    pub fn total_size(header: &[u8; HEADER]) -> usize {
        u32::from_le_bytes([header[0], header[1], header[2], header[3]]) as usize
    }

    /// The command line (without its NUL) of the boot information `info` (all of it,
    /// `total_size` bytes), or `None` when there is no command-line tag or the tags are
    /// malformed.
    pub fn cmdline(info: &[u8]) -> Option<&[u8]> {
        let mut at = HEADER;
        loop {
            let kind = u32_at(info, at)?;
            let size = u32_at(info, at + 4)? as usize;
            if kind == TAG_END || size < 8 {
                return None;
            }
            if kind == TAG_CMDLINE {
                let text = info.get(at + 8..at + size)?;
                let end = text.iter().position(|&b| b == 0).unwrap_or(text.len());
                return Some(&text[..end]);
            }
            // Tags are 8-byte aligned.
            at = at.checked_add(size.checked_add(7)? & !7)?;
        }
    }
}

/// The kernel's command line: words separated by spaces, `key=value` or a bare flag.
pub mod cmdline {
    /// The value of the first `key=value` word, if any.
    pub fn value<'a>(line: &'a [u8], key: &str) -> Option<&'a [u8]> {
        line.split(|&b| b == b' ').find_map(|word| {
            let (k, v) = word.split_at(word.iter().position(|&b| b == b'=')?);
            (k == key.as_bytes()).then_some(&v[1..])
        })
    }

    /// The number of `key=<decimal>`, or `default` when absent or not a number.
    pub fn number(line: &[u8], key: &str, default: u64) -> u64 {
        value(line, key)
            .and_then(|v| core::str::from_utf8(v).ok())
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    }

    /// Whether the bare word `flag` is on the line.
    pub fn flag(line: &[u8], flag: &str) -> bool {
        line.split(|&b| b == b' ').any(|w| w == flag.as_bytes())
    }
}

/// The least `clock` delta (TSC ticks) of `runs` runs of `f`: both benchmark kernels measure
/// with this, so both columns are taken alike.
pub fn measure(runs: u32, clock: impl Fn() -> u64, mut f: impl FnMut()) -> u64 {
    let mut best = u64::MAX;
    for _ in 0..runs {
        let t0 = clock();
        f();
        best = best.min(clock().wrapping_sub(t0));
    }
    best
}

/// `(total - base) / ops`, rounded to the nearest integer (both kernels' rule, so that both
/// columns round alike).
pub fn per_op(total: u64, base: u64, ops: u64) -> u64 {
    let ops = ops.max(1);
    (total.saturating_sub(base) + ops / 2) / ops
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn measure_takes_the_least_delta() {
        use core::cell::Cell;
        let now = Cell::new(0u64);
        let deltas = [7u64, 3, 9];
        let run = Cell::new(0usize);
        let best = measure(
            3,
            || now.get(),
            || {
                now.set(now.get() + deltas[run.get()]);
                run.set(run.get() + 1);
            },
        );
        assert_eq!(best, 3);
        assert_eq!(run.get(), 3);
    }

    /// A boot information block with the given tags (type, payload).
    fn info(tags: &[(u32, &[u8])]) -> Vec<u8> {
        let mut out = vec![0u8; 8];
        for (kind, payload) in tags {
            out.extend_from_slice(&kind.to_le_bytes());
            out.extend_from_slice(&(8 + payload.len() as u32).to_le_bytes());
            out.extend_from_slice(payload);
            while !out.len().is_multiple_of(8) {
                out.push(0);
            }
        }
        out.extend_from_slice(&[0, 0, 0, 0, 8, 0, 0, 0]);
        let size = out.len() as u32;
        out[..4].copy_from_slice(&size.to_le_bytes());
        out
    }

    #[test]
    fn finds_the_command_line_tag() {
        let i = info(&[(4, &[1, 2, 3, 4, 5, 6, 7, 8]), (1, b"iters=5 debug-exit\0")]);
        assert_eq!(mb2::total_size(i[..8].try_into().unwrap()), i.len());
        assert_eq!(mb2::cmdline(&i), Some(&b"iters=5 debug-exit"[..]));
        assert_eq!(mb2::cmdline(&info(&[(4, b"abc")])), None);
        // A tag that claims more than there is, or a size below 8, ends the walk.
        let mut bad = info(&[(1, b"x\0")]);
        bad[12] = 200;
        assert_eq!(mb2::cmdline(&bad), None);
        bad[12] = 4;
        assert_eq!(mb2::cmdline(&bad), None);
        assert_eq!(mb2::cmdline(&[0u8; 4]), None);
    }

    #[test]
    fn reads_keys_and_flags() {
        let line = b"iters=1000 primes=2000000 debug-exit runs=x";
        assert_eq!(cmdline::value(line, "iters"), Some(&b"1000"[..]));
        assert_eq!(cmdline::number(line, "primes", 7), 2_000_000);
        assert_eq!(cmdline::number(line, "runs", 5), 5);
        assert_eq!(cmdline::number(line, "missing", 9), 9);
        assert_eq!(cmdline::number(b"", "iters", 3), 3);
        assert!(cmdline::flag(line, "debug-exit"));
        assert!(!cmdline::flag(line, "debug"));
        assert_eq!(cmdline::value(b"xiters=4", "iters"), None);
    }

    #[test]
    fn figures_round_to_nearest() {
        assert_eq!(per_op(1000, 100, 10), 90);
        assert_eq!(per_op(1005, 0, 10), 101);
        assert_eq!(per_op(1004, 0, 10), 100);
        assert_eq!(per_op(5, 10, 3), 0);
        assert_eq!(per_op(7, 0, 0), 7);
    }
}
