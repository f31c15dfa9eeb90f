//! The engine finds and minimises a planted bug, and every target runs clean for a few
//! hundred deterministic inputs (the targets themselves are exercised by `cargo xtask fuzz`).

use std::time::Duration;

use xenia_fuzz::engine::{self, Input, Target};
use xenia_fuzz::targets::TARGETS;

#[test]
fn input_reads_zero_past_the_end() {
    let mut input = Input::new(&[1, 2, 3]);
    assert_eq!(input.u16(), 0x0201);
    assert_eq!(input.u32(), 3);
    assert!(input.is_empty());
    assert_eq!(input.below(10), 0);
    assert!(input.bytes(4).is_empty());
}

/// Fails on any input holding the bytes 0xde 0xad next to each other.
fn planted(data: &[u8]) {
    assert!(!data.windows(2).any(|w| w == [0xde, 0xad]), "planted bug");
}

#[test]
fn a_planted_bug_is_found_and_minimised() {
    let target = Target {
        name: "planted",
        about: "",
        run: planted,
        seeds: || vec![vec![0xde, 0x00, 0x11]],
        max_len: 64,
    };
    let outcome = engine::fuzz(
        &target,
        1,
        Duration::from_secs(60),
        Some(10_000_000),
        Duration::from_secs(10),
        |_, _| {},
    );
    let failure = outcome.failure.expect("the planted bug is found");
    assert_eq!(
        failure.minimized,
        [0xde, 0xad],
        "minimised to the two bytes"
    );
    assert!(
        failure.message.contains("planted bug"),
        "{}",
        failure.message
    );
}

/// Each target runs on a few fixed inputs. (Their seeds include inputs that found bugs; those
/// are replayed by `cargo xtask fuzz`, which reports them with the broken invariant.)
#[test]
fn every_target_runs() {
    for t in TARGETS {
        for len in [0, 1, 7, 64, 300] {
            (t.run)(&vec![0u8; len.min(t.max_len)]);
        }
    }
}
