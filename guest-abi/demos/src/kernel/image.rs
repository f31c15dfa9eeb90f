//! The image ("Booting a kernel" → "The image"): the ELF notes that tell the domain builder
//! how to load the kernel, the hypercall page, the boot stack and `_start`. Laid out by
//! `linker.ld`, as for `guest-abi/hello`.

use guest_abi::elfnote;

use super::VIRT_BASE;

// The domain builder reads ELF notes named "Xen" from the PT_NOTE segment (linker.ld puts
// section .note.Xen there). Each note is: name size (4, for "Xen\0"), descriptor size, type,
// the name, the descriptor, each padded to 4 bytes. These are the notes both demos share;
// each demo adds its GUEST_OS name with [`StringNote`].
core::arch::global_asm!(
    ".macro XEN_NOTE_BEGIN type",
    "    .balign 4",
    "    .long 4",          // namesz
    "    .long 7f - 6f",    // descsz
    "    .long \\type",
    "    .asciz \"Xen\"",
    "6:",                   // the descriptor follows
    ".endm",
    ".macro XEN_NOTE_END",
    "7:",
    "    .balign 4",
    ".endm",
    "",
    ".pushsection .note.Xen, \"a\", @note",
    "XEN_NOTE_BEGIN {guest_version}",
    "    .asciz \"0.1\"",
    "XEN_NOTE_END",
    // The interface generation and loader, as for Xen.
    "XEN_NOTE_BEGIN {xen_version}",
    "    .asciz \"xen-3.0\"",
    "XEN_NOTE_END",
    "XEN_NOTE_BEGIN {loader}",
    "    .asciz \"generic\"",
    "XEN_NOTE_END",
    // No optional XENFEAT_* features requested or offered.
    "XEN_NOTE_BEGIN {features}",
    "    .asciz \"\"",
    "XEN_NOTE_END",
    // Where pseudo-physical 0 is mapped, and how ELF physical addresses relate to
    // pseudo-physical ones (linker.ld counts them from 0).
    "XEN_NOTE_BEGIN {virt_base}",
    "    .quad {virt_base_value}",
    "XEN_NOTE_END",
    "XEN_NOTE_BEGIN {paddr_offset}",
    "    .quad 0",
    "XEN_NOTE_END",
    // The entry point, and the page the builder fills with hypercall stubs.
    "XEN_NOTE_BEGIN {entry}",
    "    .quad _start",
    "XEN_NOTE_END",
    "XEN_NOTE_BEGIN {hypercall_page}",
    "    .quad hypercall_page",
    "XEN_NOTE_END",
    ".popsection",
    guest_version = const elfnote::XEN_ELFNOTE_GUEST_VERSION,
    xen_version = const elfnote::XEN_ELFNOTE_XEN_VERSION,
    loader = const elfnote::XEN_ELFNOTE_LOADER,
    features = const elfnote::XEN_ELFNOTE_FEATURES,
    virt_base = const elfnote::XEN_ELFNOTE_VIRT_BASE,
    virt_base_value = const VIRT_BASE,
    paddr_offset = const elfnote::XEN_ELFNOTE_PADDR_OFFSET,
    entry = const elfnote::XEN_ELFNOTE_ENTRY,
    hypercall_page = const elfnote::XEN_ELFNOTE_HYPERCALL_PAGE,
);

/// A Xen ELF note whose descriptor is a NUL-terminated string, as a Rust value: put one in
/// section `.note.Xen` with `#[used]` and the builder reads it like the notes above. `N` is
/// the descriptor's room, a multiple of 4 (the format pads descriptors to 4 bytes) larger
/// than the text.
#[repr(C, align(4))]
pub struct StringNote<const N: usize> {
    namesz: u32,
    descsz: u32,
    kind: u32,
    name: [u8; 4],
    desc: [u8; N],
}

impl<const N: usize> StringNote<N> {
    /// The note of type `kind` (`elfnote::XEN_ELFNOTE_*`) holding `text`. Checked at
    /// compile time when used in a `static`.
    pub const fn new(kind: u32, text: &[u8]) -> Self {
        assert!(
            N.is_multiple_of(4),
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
            namesz: 4,
            descsz: text.len() as u32 + 1,
            kind,
            name: *b"Xen\0",
            desc,
        }
    }
}

// The hypercall page ("Making hypercalls"): a page-aligned page of code that the builder
// overwrites with one 32-byte stub per hypercall. The demos call through guest-abi's `calls`
// wrappers, which issue `int 0x82` directly (equally supported), so nothing jumps here.
//
// _start: the builder enters here in ring 1 with rsi = the start_info page and rsp = the top
// of a one-page bootstrap stack, events masked ("Entry state"). One page is little for Rust
// code (and `compute`'s sieve lives on the stack), so _start moves to a 256 KiB stack in
// .bss (zeroed by the builder), then calls kernel_entry.
core::arch::global_asm!(
    ".pushsection .text.hypercall_page, \"ax\", @progbits",
    ".balign 4096",
    ".globl hypercall_page",
    "hypercall_page:",
    "    .fill 4096, 1, 0xcc",      // int3 until the builder fills it
    ".popsection",
    "",
    ".pushsection .bss.stack, \"aw\", @nobits",
    ".balign 16",
    "    .skip {stack_size}",
    "stack_top:",
    ".popsection",
    "",
    ".pushsection .text.entry, \"ax\", @progbits",
    ".globl _start",
    "_start:",
    "    lea rsp, [rip + stack_top]",
    "    mov rdi, rsi",             // kernel_entry(start_info)
    "    call {kernel_entry}",
    "    ud2",                      // kernel_entry never returns
    ".popsection",
    stack_size = const STACK_SIZE,
    kernel_entry = sym super::kernel_entry,
);

/// Size of the kernel stack.
const STACK_SIZE: usize = 256 * 1024;
