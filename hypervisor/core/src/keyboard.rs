//! The PS/2 keyboard's scancodes as the bytes a serial terminal would send (DESIGN.md §13), so
//! that keyboard input takes the same path as COM1's: dom0's line editor, and Ctrl-A three
//! times for the hypervisor's debug keys.
//!
//! Decoding is `pc-keyboard`'s: scancode set 1 (what the 8042 hands over with translation on,
//! the firmware's default), US layout, Shift and Caps Lock, Ctrl with a letter as the control
//! code. What a terminal (VT100/xterm) sends for the keys that are not characters: Enter as CR,
//! Backspace as DEL (dom0's erase character), arrows as `ESC [ A` to `ESC [ D`, Home and End as
//! `ESC [ H` and `ESC [ F`, Delete, Page Up and Page Down as `ESC [ 3~`, `ESC [ 5~`, `ESC [ 6~`.
//! Other keys (function keys, Windows keys) send nothing.

use pc_keyboard::{
    DecodedKey, HandleControl, KeyCode, KeyState, PS2Keyboard, ScancodeSet1, layouts::Us104Key,
};

/// A keyboard's decoding state (modifiers held, a multi-byte scancode in progress).
pub struct Keyboard {
    decoder: PS2Keyboard<Us104Key, ScancodeSet1>,
}

impl Default for Keyboard {
    fn default() -> Self {
        Self::new()
    }
}

impl Keyboard {
    /// A keyboard with no key held.
    pub const fn new() -> Keyboard {
        Keyboard {
            decoder: PS2Keyboard::new(
                ScancodeSet1::new(),
                Us104Key,
                HandleControl::MapLettersToUnicode,
            ),
        }
    }

    /// Takes one byte from the controller; returns the bytes the key sends (none for a
    /// release, a modifier or half a scancode). A byte that is not a valid scancode resets
    /// the decoder's sequence and sends nothing.
    pub fn feed(&mut self, scancode: u8) -> Keys {
        let mut keys = Keys::default();
        let Ok(Some(event)) = self.decoder.add_byte(scancode) else {
            return keys;
        };
        let down = event.state == KeyState::Down;
        let code = event.code;
        let decoded = self.decoder.process_keyevent(event);
        if !down {
            return keys;
        }
        let sequence: &[u8] = match code {
            KeyCode::ArrowUp => b"\x1b[A",
            KeyCode::ArrowDown => b"\x1b[B",
            KeyCode::ArrowRight => b"\x1b[C",
            KeyCode::ArrowLeft => b"\x1b[D",
            KeyCode::Home => b"\x1b[H",
            KeyCode::End => b"\x1b[F",
            KeyCode::Delete => b"\x1b[3~",
            KeyCode::PageUp => b"\x1b[5~",
            KeyCode::PageDown => b"\x1b[6~",
            KeyCode::Backspace => b"\x7f",
            KeyCode::Return | KeyCode::NumpadEnter => b"\r",
            _ => b"",
        };
        if !sequence.is_empty() {
            keys.push(sequence);
            return keys;
        }
        if let Some(DecodedKey::Unicode(c)) = decoded {
            let mut utf8 = [0u8; 4];
            keys.push(c.encode_utf8(&mut utf8).as_bytes());
        }
        keys
    }
}

/// The bytes one key sends (at most [`Keys::MAX`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Keys {
    bytes: [u8; Keys::MAX],
    len: usize,
}

impl Keys {
    /// The longest sequence a key sends.
    pub const MAX: usize = 4;

    fn push(&mut self, bytes: &[u8]) {
        for &b in bytes {
            if self.len < Self::MAX {
                self.bytes[self.len] = b;
                self.len += 1;
            }
        }
    }

    /// The bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec::Vec;

    /// Set 1 make codes (release: the make code | 0x80).
    const SHIFT: u8 = 0x2A;
    const CTRL: u8 = 0x1D;
    const A: u8 = 0x1E;
    const L: u8 = 0x26;
    const X: u8 = 0x2D;
    const BACKSLASH: u8 = 0x2B;
    const ENTER: u8 = 0x1C;
    const BACKSPACE: u8 = 0x0E;

    fn typed(codes: &[u8]) -> Vec<u8> {
        let mut kb = Keyboard::new();
        codes
            .iter()
            .flat_map(|&c| kb.feed(c).as_bytes().to_vec())
            .collect()
    }

    #[test]
    fn letters_shift_and_control() {
        assert_eq!(typed(&[X, X | 0x80, L, L | 0x80]), b"xl");
        assert_eq!(typed(&[SHIFT, X, X | 0x80, SHIFT | 0x80, X]), b"Xx");
        assert_eq!(typed(&[SHIFT, BACKSLASH, SHIFT | 0x80]), b"|");
        // Ctrl-A three times: the serial line's switch character.
        assert_eq!(
            typed(&[CTRL, A, A | 0x80, A, A | 0x80, A, CTRL | 0x80]),
            b"\x01\x01\x01"
        );
    }

    #[test]
    fn terminal_keys() {
        assert_eq!(typed(&[ENTER, ENTER | 0x80, BACKSPACE]), b"\r\x7f");
        // Arrow up: the extended prefix 0xE0, then 0x48.
        assert_eq!(typed(&[0xE0, 0x48, 0xE0, 0xC8]), b"\x1b[A");
        assert_eq!(typed(&[0xE0, 0x4B]), b"\x1b[D");
        assert_eq!(typed(&[0xE0, 0x53]), b"\x1b[3~");
    }

    #[test]
    fn garbage_sends_nothing() {
        assert_eq!(typed(&[0xFF, 0xE0, 0xE0, 0x00, 0xFA]), b"");
        assert_eq!(typed(&[0xFF, X]), b"x");
    }
}
