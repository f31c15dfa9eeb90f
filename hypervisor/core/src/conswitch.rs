//! The serial-input switch (DESIGN.md §8), as Xen's `serial_rx`: the switch character (Ctrl-A
//! unless `conswitch=` says otherwise) three times in a row moves serial input between dom0
//! and the hypervisor's debug keys. Switch characters are held back while a run may still
//! become three; a run cut short by another byte is passed on in full before that byte, so a
//! single Ctrl-A reaches dom0 (a shell's line editor uses it).

/// What one byte of serial input does to the switch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Switch {
    /// An ordinary byte: it goes where input goes now, after `held` switch characters that
    /// were held back (a run of fewer than three).
    Pass {
        /// Switch characters to pass on first.
        held: u8,
    },
    /// A switch character, held back for now.
    Swallow,
    /// The third switch character in a row: switch.
    Toggle,
}

/// Ctrl-A, the default switch character.
pub const CTRL_A: u8 = 0x01;

/// The switch: its character (`None`: switching is off) and the run seen so far.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InputSwitch {
    code: Option<u8>,
    run: u8,
}

impl InputSwitch {
    /// A switch on `code` (`None`: every byte passes, nothing switches).
    pub const fn new(code: Option<u8>) -> Self {
        Self { code, run: 0 }
    }

    /// The switch character.
    pub fn code(&self) -> Option<u8> {
        self.code
    }

    /// Feeds byte `b`.
    pub fn feed(&mut self, b: u8) -> Switch {
        if Some(b) != self.code {
            let held = self.run;
            self.run = 0;
            return Switch::Pass { held };
        }
        self.run += 1;
        if self.run == 3 {
            self.run = 0;
            Switch::Toggle
        } else {
            Switch::Swallow
        }
    }
}

/// Xen's `conswitch=<char>[x]`: the switch is Ctrl-`<char>` (a letter; `` ` `` turns
/// switching off), and a trailing `x` keeps serial input on the hypervisor at boot instead
/// of giving it to dom0. `None` for anything else.
pub fn parse_conswitch(value: &str) -> Option<(Option<u8>, bool)> {
    let bytes = value.as_bytes();
    let (&c, rest) = bytes.split_first()?;
    let stay_with_xen = match rest {
        [] => false,
        [b'x'] => true,
        _ => return None,
    };
    let code = match c {
        b'`' => None,
        b'a'..=b'z' => Some(c - b'a' + 1),
        b'A'..=b'Z' => Some(c - b'A' + 1),
        _ => return None,
    };
    Some((code, stay_with_xen))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feed(s: &mut InputSwitch, bytes: &[u8]) -> Vec<Switch> {
        bytes.iter().map(|&b| s.feed(b)).collect()
    }

    #[test]
    fn three_in_a_row_switch_fewer_pass_on() {
        use Switch::*;
        let mut s = InputSwitch::new(Some(CTRL_A));
        assert_eq!(
            feed(&mut s, b"a\x01\x01\x01b"),
            [Pass { held: 0 }, Swallow, Swallow, Toggle, Pass { held: 0 }]
        );
        // A run cut short goes on, whole, before the byte that cut it (Xen's serial_rx).
        assert_eq!(
            feed(&mut s, b"\x01x\x01\x01y"),
            [
                Swallow,
                Pass { held: 1 },
                Swallow,
                Swallow,
                Pass { held: 2 }
            ]
        );
        assert_eq!(feed(&mut s, b"\x01\x01\x01"), [Swallow, Swallow, Toggle]);
        // Six in a row: two switches.
        assert_eq!(
            feed(&mut s, &[CTRL_A; 6]),
            [Swallow, Swallow, Toggle, Swallow, Swallow, Toggle]
        );
        // Switching off: every byte passes, Ctrl-A too.
        let mut off = InputSwitch::new(None);
        assert_eq!(
            feed(&mut off, b"\x01\x01\x01"),
            [Pass { held: 0 }, Pass { held: 0 }, Pass { held: 0 }]
        );
    }

    #[test]
    fn conswitch_option() {
        assert_eq!(parse_conswitch("a"), Some((Some(1), false)));
        assert_eq!(parse_conswitch("bx"), Some((Some(2), true)));
        assert_eq!(parse_conswitch("Z"), Some((Some(26), false)));
        assert_eq!(parse_conswitch("`"), Some((None, false)));
        assert_eq!(parse_conswitch("`x"), Some((None, true)));
        for bad in ["", "ab", "1", "a y", "xx?"] {
            assert_eq!(parse_conswitch(bad), None, "{bad:?}");
        }
    }
}
