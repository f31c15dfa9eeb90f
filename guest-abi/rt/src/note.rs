//! A Xen ELF note as a Rust value, for the notes that differ between kernels.
//!
//! The notes every kernel shares (entry point, hypercall page, `VIRT_BASE`, ...) are in
//! `src/asm.rs`; [`entry!`](crate::entry) adds the one that names the kernel
//! (`XEN_ELFNOTE_GUEST_OS`, `Xenia-<binary name>`) with a [`StringNote`] in section
//! `.note.Xen`, which the linker script puts in the `PT_NOTE` segment.

/// Size of a note's name field: `"Xen\0"`.
const NAME_SIZE: u32 = 4;
/// Note fields are padded to 4 bytes (System V ABI, "Note Section").
const NOTE_ALIGN: usize = 4;

/// Room for a descriptor holding `text_len` bytes of text and its NUL, padded to 4 bytes:
/// the `N` of a [`StringNote`].
pub const fn room(text_len: usize) -> usize {
    (text_len + 1).next_multiple_of(NOTE_ALIGN)
}

/// A Xen ELF note whose descriptor is a NUL-terminated string. Put one in section
/// `.note.Xen` with `#[used]` and the builder reads it like the notes of `src/asm.rs`. `N`
/// is the descriptor's room ([`room`]).
#[repr(C, align(4))]
pub struct StringNote<const N: usize> {
    namesz: u32,
    descsz: u32,
    kind: u32,
    name: [u8; 4],
    desc: [u8; N],
}

impl<const N: usize> StringNote<N> {
    /// The note of type `kind` (`guest_abi::elfnote::XEN_ELFNOTE_*`) holding `text`.
    /// Checked at compile time when used in a `static`.
    pub const fn new(kind: u32, text: &[u8]) -> Self {
        assert!(
            N.is_multiple_of(NOTE_ALIGN),
            "a note's descriptor is padded to 4 bytes"
        );
        assert!(text.len() < N, "the text and its NUL must fit");
        let mut desc = [0u8; N];
        let mut i = 0;
        while i < text.len() {
            desc[i] = text[i];
            i += 1;
        }
        Self {
            namesz: NAME_SIZE,
            descsz: text.len() as u32 + 1,
            kind,
            name: *b"Xen\0",
            desc,
        }
    }

    /// The `XEN_ELFNOTE_GUEST_OS` note naming the kernel.
    pub const fn guest_os(text: &str) -> Self {
        Self::new(guest_abi::elfnote::XEN_ELFNOTE_GUEST_OS, text.as_bytes())
    }

    /// The descriptor's length as recorded (text and NUL).
    pub const fn descsz(&self) -> u32 {
        self.descsz
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pads_and_terminates() {
        assert_eq!(room(10), 12);
        assert_eq!(room(11), 12);
        assert_eq!(room(12), 16);
        const NOTE: StringNote<{ room(10) }> = StringNote::guest_os("Xenia-echo");
        assert_eq!(NOTE.descsz(), 11);
        assert_eq!(&NOTE.desc[..11], b"Xenia-echo\0");
        assert_eq!(NOTE.name, *b"Xen\0");
    }
}
