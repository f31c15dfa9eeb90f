//! All of the runtime's assembly, in one place.
//!
//! What lives here, in order:
//!
//! 1. The Xen ELF notes that describe the kernel to the domain builder (section `.note.Xen`,
//!    which the linker script puts in a `PT_NOTE` segment).
//! 2. The hypercall page: one page of `int3` in `.text` that the builder overwrites with
//!    stubs (guest-abi `hypercall`), named by the `XEN_ELFNOTE_HYPERCALL_PAGE` note.
//! 3. The ring-1 stack for entries from ring 3 and the record of the entry registers (the
//!    boot stack and the note naming the kernel come from [`entry!`](crate::entry)).
//! 4. `_start`: records the registers the builder left, zeroes `.bss`, moves to the boot stack
//!    and calls [`crate::boot`]'s `rt_start` with the `start_info` address.
//! 5. The trap stubs: one per exception vector, plus `int 0x80`, the syscall callback and the
//!    event callback. Each pushes a zero error code where the CPU (or the hypervisor) pushes
//!    none, then its vector, and joins `rt_trap_common`, which saves every general-purpose
//!    register, calls [`crate::trap`]'s `rt_trap` with the resulting [`crate::trap::Regs`],
//!    and either returns with `iretq` or, when `rt_trap` says so, abandons the interrupted
//!    ring-3 context and returns from `rt_enter_user` instead.
//! 6. `rt_enter_user`: saves the kernel's callee-saved registers and stack pointer, and
//!    enters ring 3 with `iretq`.
//!
//! The frame every stub finds is the hardware one (guest-abi `trap`): the hypervisor writes it
//! for bounced exceptions and callbacks, the CPU itself for the `int 0x80` fast trap. Vectors
//! with an error code are exactly those of `guest_abi::trap::has_error_code` that a guest can
//! receive (10 to 14, 17, 21).

use core::arch::global_asm;

use guest_abi::elfnote::{
    XEN_ELFNOTE_ENTRY, XEN_ELFNOTE_FEATURES, XEN_ELFNOTE_GUEST_VERSION, XEN_ELFNOTE_HYPERCALL_PAGE,
    XEN_ELFNOTE_LOADER, XEN_ELFNOTE_PADDR_OFFSET, XEN_ELFNOTE_VIRT_BASE, XEN_ELFNOTE_XEN_VERSION,
};
use guest_abi::selectors::{KERNEL_DS, USER_CS, USER_DS, USER_SS};

use crate::boot::{ENTRY_STATE_WORDS, KERNEL_STACK_SIZE, VIRT_BASE};
use crate::trap::{VECTOR_EVENT, VECTOR_SYSCALL};

// 1. ELF notes (System V ABI "Note Section"; types from guest-abi `elfnote`). Each note is
// namesz (4: "Xen\0"), descsz, type, the name, the descriptor, padded to 4 bytes.
global_asm!(
    ".macro RT_XEN_NOTE_BEGIN type",
    "    .balign 4",
    "    .long 4",
    "    .long 7f - 6f",
    "    .long \\type",
    "    .asciz \"Xen\"",
    "6:",
    ".endm",
    ".macro RT_XEN_NOTE_END",
    "7:",
    "    .balign 4",
    ".endm",
    "",
    ".pushsection .note.Xen, \"a\", @note",
    // GUEST_OS, the kernel's name, comes from `entry!` (crate::note).
    "RT_XEN_NOTE_BEGIN {guest_version}",
    "    .asciz \"0.1\"",
    "RT_XEN_NOTE_END",
    "RT_XEN_NOTE_BEGIN {xen_version}",
    "    .asciz \"xen-3.0\"",
    "RT_XEN_NOTE_END",
    "RT_XEN_NOTE_BEGIN {loader}",
    "    .asciz \"generic\"",
    "RT_XEN_NOTE_END",
    // No optional XENFEAT_* features are requested or offered.
    "RT_XEN_NOTE_BEGIN {features}",
    "    .asciz \"\"",
    "RT_XEN_NOTE_END",
    "RT_XEN_NOTE_BEGIN {virt_base}",
    "    .quad {virt_base_value}",
    "RT_XEN_NOTE_END",
    // Physical addresses in the ELF file count from 0 (see linker.ld).
    "RT_XEN_NOTE_BEGIN {paddr_offset}",
    "    .quad 0",
    "RT_XEN_NOTE_END",
    "RT_XEN_NOTE_BEGIN {entry}",
    "    .quad _start",
    "RT_XEN_NOTE_END",
    "RT_XEN_NOTE_BEGIN {hypercall_page}",
    "    .quad hypercall_page",
    "RT_XEN_NOTE_END",
    ".popsection",
    guest_version = const XEN_ELFNOTE_GUEST_VERSION,
    xen_version = const XEN_ELFNOTE_XEN_VERSION,
    loader = const XEN_ELFNOTE_LOADER,
    features = const XEN_ELFNOTE_FEATURES,
    virt_base = const XEN_ELFNOTE_VIRT_BASE,
    virt_base_value = const VIRT_BASE,
    paddr_offset = const XEN_ELFNOTE_PADDR_OFFSET,
    entry = const XEN_ELFNOTE_ENTRY,
    hypercall_page = const XEN_ELFNOTE_HYPERCALL_PAGE,
);

// 2. The hypercall page, 3. stacks and the entry record.
global_asm!(
    ".pushsection .text.hypercall_page, \"ax\", @progbits",
    ".balign 4096",
    ".globl hypercall_page",
    "hypercall_page:",
    "    .fill 4096, 1, 0xcc",
    ".popsection",
    "",
    // The boot stack, `rt_boot_stack_top`, comes from `entry!`: its size is the kernel's
    // choice.
    ".pushsection .bss.rt_stacks, \"aw\", @nobits",
    ".balign 16",
    "    .skip {kernel_stack_size}",
    // The ring-1 stack for entries from ring 3 (`stack_switch`).
    ".globl rt_kernel_stack_top",
    "rt_kernel_stack_top:",
    // The kernel stack pointer saved by rt_enter_user.
    ".globl rt_user_return_rsp",
    "rt_user_return_rsp:",
    "    .skip 8",
    ".popsection",
    "",
    // In .data, not .bss: _start fills it before it zeroes .bss.
    ".pushsection .data.rt_entry_state, \"aw\", @progbits",
    ".balign 8",
    ".globl rt_entry_state",
    "rt_entry_state:",
    "    .fill {entry_words}, 8, 0",
    ".popsection",
    kernel_stack_size = const KERNEL_STACK_SIZE,
    entry_words = const ENTRY_STATE_WORDS,
);

// 4. _start. Entry state (guest-abi porting guide): ring 1, rsi = start_info, rsp = top of
// the one-page bootstrap stack, other registers zero, events masked. The layout of
// rt_entry_state is `boot::EntryState`.
global_asm!(
    ".pushsection .text.entry, \"ax\", @progbits",
    ".globl _start",
    "_start:",
    "    mov [rip + rt_entry_state + 0 * 8], rax",
    "    mov [rip + rt_entry_state + 1 * 8], rbx",
    "    mov [rip + rt_entry_state + 2 * 8], rcx",
    "    mov [rip + rt_entry_state + 3 * 8], rdx",
    "    mov [rip + rt_entry_state + 4 * 8], rsi",
    "    mov [rip + rt_entry_state + 5 * 8], rdi",
    "    mov [rip + rt_entry_state + 6 * 8], rbp",
    "    mov [rip + rt_entry_state + 7 * 8], rsp",
    "    mov [rip + rt_entry_state + 8 * 8], r8",
    "    mov [rip + rt_entry_state + 9 * 8], r9",
    "    mov [rip + rt_entry_state + 10 * 8], r10",
    "    mov [rip + rt_entry_state + 11 * 8], r11",
    "    mov [rip + rt_entry_state + 12 * 8], r12",
    "    mov [rip + rt_entry_state + 13 * 8], r13",
    "    mov [rip + rt_entry_state + 14 * 8], r14",
    "    mov [rip + rt_entry_state + 15 * 8], r15",
    "    pushfq",
    "    pop qword ptr [rip + rt_entry_state + 16 * 8]",
    "    xor eax, eax",
    "    mov ax, cs",
    "    mov [rip + rt_entry_state + 17 * 8], rax",
    "    mov ax, ss",
    "    mov [rip + rt_entry_state + 18 * 8], rax",
    "    mov ax, ds",
    "    mov [rip + rt_entry_state + 19 * 8], rax",
    "    mov ax, es",
    "    mov [rip + rt_entry_state + 20 * 8], rax",
    "    mov ax, fs",
    "    mov [rip + rt_entry_state + 21 * 8], rax",
    "    mov ax, gs",
    "    mov [rip + rt_entry_state + 22 * 8], rax",
    // Zero .bss: ELF says the loader does; a test kernel relies on nothing it can redo.
    "    cld",
    "    lea rdi, [rip + __bss_start]",
    "    lea rcx, [rip + __bss_end]",
    "    sub rcx, rdi",
    "    xor eax, eax",
    "    rep stosb",
    // The bootstrap stack is one page; Rust with formatting wants more.
    "    lea rsp, [rip + rt_boot_stack_top]",
    "    xor ebp, ebp",
    "    mov rdi, rsi",
    "    call {rt_start}",
    "    ud2",
    ".popsection",
    rt_start = sym crate::boot::rt_start,
);

// 5. Trap stubs and the common path. `rt_trap_stubs` lists (vector, stub) pairs for
// `trap::install_defaults`, ending with a zero stub address.
global_asm!(
    ".macro RT_TRAP_NOERR vector",
    "    push 0",
    "    push \\vector",
    "    jmp rt_trap_common",
    ".endm",
    ".macro RT_TRAP_ERR vector",
    "    push \\vector",
    "    jmp rt_trap_common",
    ".endm",
    "",
    ".pushsection .text.rt_traps, \"ax\", @progbits",
    "rt_trap_de: RT_TRAP_NOERR 0",
    "rt_trap_db: RT_TRAP_NOERR 1",
    "rt_trap_bp: RT_TRAP_NOERR 3",
    "rt_trap_of: RT_TRAP_NOERR 4",
    "rt_trap_br: RT_TRAP_NOERR 5",
    "rt_trap_ud: RT_TRAP_NOERR 6",
    "rt_trap_nm: RT_TRAP_NOERR 7",
    "rt_trap_cso: RT_TRAP_NOERR 9",
    "rt_trap_ts: RT_TRAP_ERR 10",
    "rt_trap_np: RT_TRAP_ERR 11",
    "rt_trap_ss: RT_TRAP_ERR 12",
    "rt_trap_gp: RT_TRAP_ERR 13",
    "rt_trap_pf: RT_TRAP_ERR 14",
    "rt_trap_mf: RT_TRAP_NOERR 16",
    "rt_trap_ac: RT_TRAP_ERR 17",
    "rt_trap_xm: RT_TRAP_NOERR 19",
    "rt_trap_ve: RT_TRAP_NOERR 20",
    "rt_trap_cp: RT_TRAP_ERR 21",
    "rt_trap_int80: RT_TRAP_NOERR 0x80",
    ".globl rt_syscall_entry",
    "rt_syscall_entry: RT_TRAP_NOERR {vector_syscall}",
    ".globl rt_event_entry",
    "rt_event_entry: RT_TRAP_NOERR {vector_event}",
    "",
    // Stack on entry, from rsp up: vector, error code, rip, cs, rflags, rsp, ss.
    "rt_trap_common:",
    "    push rax",
    "    push rbx",
    "    push rcx",
    "    push rdx",
    "    push rsi",
    "    push rdi",
    "    push rbp",
    "    push r8",
    "    push r9",
    "    push r10",
    "    push r11",
    "    push r12",
    "    push r13",
    "    push r14",
    "    push r15",
    // rsp now points at a trap::Regs. The Rust ABI wants DF clear and a 16-byte aligned
    // stack at the call; rbx (callee-saved, already stored) keeps the unaligned value.
    "    cld",
    "    mov rdi, rsp",
    "    mov rbx, rsp",
    "    and rsp, -16",
    "    call {rt_trap}",
    "    mov rsp, rbx",
    "    test rax, rax",
    "    jnz rt_exit_to_kernel",
    "    pop r15",
    "    pop r14",
    "    pop r13",
    "    pop r12",
    "    pop r11",
    "    pop r10",
    "    pop r9",
    "    pop r8",
    "    pop rbp",
    "    pop rdi",
    "    pop rsi",
    "    pop rdx",
    "    pop rcx",
    "    pop rbx",
    "    pop rax",
    "    add rsp, 16",
    "    iretq",
    "",
    // rt_trap asked to end the ring-3 run: drop the ring-3 context (its frame stays on the
    // stack_switch stack, which the next entry from ring 3 starts over) and return from
    // rt_enter_user on the kernel stack. The CPU left SS null after a ring change and DS/ES
    // hold the user selector: reload the kernel's. The push/popfq clears AC, DF and the
    // status flags the user left (ring 1 cannot change IF or IOPL this way, and need not).
    "rt_exit_to_kernel:",
    "    mov ax, {kernel_ds}",
    "    mov ss, ax",
    "    mov ds, ax",
    "    mov es, ax",
    "    mov rsp, [rip + rt_user_return_rsp]",
    "    push 0x202",
    "    popfq",
    "    pop r15",
    "    pop r14",
    "    pop r13",
    "    pop r12",
    "    pop rbp",
    "    pop rbx",
    "    ret",
    "",
    // 6. extern "C" fn rt_enter_user(rip, rsp, arg0, arg1, rflags): enters ring 3 at rip
    // with rsp, rdi = arg0, rsi = arg1, every other register zero; returns when rt_trap ends
    // the run. DS and ES get the user data selector, as a native kernel leaves them.
    ".globl rt_enter_user",
    "rt_enter_user:",
    "    push rbx",
    "    push rbp",
    "    push r12",
    "    push r13",
    "    push r14",
    "    push r15",
    "    mov [rip + rt_user_return_rsp], rsp",
    "    mov ax, {user_ds}",
    "    mov ds, ax",
    "    mov es, ax",
    "    push {user_ss}",
    "    push rsi",
    "    push r8",
    "    push {user_cs}",
    "    push rdi",
    "    mov rdi, rdx",
    "    mov rsi, rcx",
    "    xor eax, eax",
    "    xor ebx, ebx",
    "    xor ecx, ecx",
    "    xor edx, edx",
    "    xor ebp, ebp",
    "    xor r8d, r8d",
    "    xor r9d, r9d",
    "    xor r10d, r10d",
    "    xor r11d, r11d",
    "    xor r12d, r12d",
    "    xor r13d, r13d",
    "    xor r14d, r14d",
    "    xor r15d, r15d",
    "    iretq",
    ".popsection",
    "",
    ".pushsection .rodata.rt_trap_stubs, \"a\", @progbits",
    ".balign 8",
    ".globl rt_trap_stubs",
    "rt_trap_stubs:",
    "    .quad 0, rt_trap_de",
    "    .quad 1, rt_trap_db",
    "    .quad 3, rt_trap_bp",
    "    .quad 4, rt_trap_of",
    "    .quad 5, rt_trap_br",
    "    .quad 6, rt_trap_ud",
    "    .quad 7, rt_trap_nm",
    "    .quad 9, rt_trap_cso",
    "    .quad 10, rt_trap_ts",
    "    .quad 11, rt_trap_np",
    "    .quad 12, rt_trap_ss",
    "    .quad 13, rt_trap_gp",
    "    .quad 14, rt_trap_pf",
    "    .quad 16, rt_trap_mf",
    "    .quad 17, rt_trap_ac",
    "    .quad 19, rt_trap_xm",
    "    .quad 20, rt_trap_ve",
    "    .quad 21, rt_trap_cp",
    "    .quad 0x80, rt_trap_int80",
    "    .quad 0, 0",
    ".popsection",
    vector_syscall = const VECTOR_SYSCALL,
    vector_event = const VECTOR_EVENT,
    rt_trap = sym crate::trap::rt_trap,
    kernel_ds = const KERNEL_DS,
    user_ds = const USER_DS,
    user_ss = const USER_SS,
    user_cs = const USER_CS,
);

unsafe extern "C" {
    /// Enters ring 3 (see item 6 above). Returns when the trap handler ends the run.
    pub(crate) fn rt_enter_user(rip: u64, rsp: u64, arg0: u64, arg1: u64, rflags: u64);
}
