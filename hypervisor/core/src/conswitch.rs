//! The serial-input switch (DESIGN.md §8): three Ctrl-As in a row move serial input
//! between dom0 and the hypervisor's debug keys, as on Xen.

/// What one byte of serial input does to the switch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Switch {
    /// An ordinary byte: it goes where input goes now.
    Pass,
    /// A Ctrl-A, held back (as Xen does, Ctrl-As are never passed on).
    Swallow,
    /// The third Ctrl-A in a row: switch.
    Toggle,
}

/// Ctrl-A.
pub const CTRL_A: u8 = 0x01;

/// Feeds `b` to the switch, whose state is `run` (Ctrl-As seen in a row).
pub fn input_switch(run: &mut u8, b: u8) -> Switch {
    if b != CTRL_A {
        *run = 0;
        return Switch::Pass;
    }
    *run += 1;
    if *run == 3 {
        *run = 0;
        Switch::Toggle
    } else {
        Switch::Swallow
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn three_ctrl_a_in_a_row_switch() {
        let mut run = 0;
        let feed = |run: &mut u8, bytes: &[u8]| -> Vec<Switch> {
            bytes.iter().map(|&b| input_switch(run, b)).collect()
        };
        use Switch::*;
        assert_eq!(
            feed(&mut run, b"a\x01\x01\x01b"),
            [Pass, Swallow, Swallow, Toggle, Pass]
        );
        // Interrupted runs start over; the held Ctrl-As are dropped.
        assert_eq!(
            feed(&mut run, b"\x01\x01x\x01"),
            [Swallow, Swallow, Pass, Swallow]
        );
        assert_eq!(feed(&mut run, b"\x01\x01"), [Swallow, Toggle]);
        assert_eq!(run, 0);
    }
}
