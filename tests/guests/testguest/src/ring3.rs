//! The ring-3 programs the tests run, as position-independent machine code between
//! `<name>_start` and `<name>_end` symbols. `xenia_guest_rt::user` copies one into the
//! user-accessible padding and enters it with `rdi` = the user data area and `rsi` = an
//! argument; the labels in between mark instructions whose address a test compares with a
//! trap frame. A program ends with `SVC_EXIT` (`rax` = 0) through `int 0x80` or `SYSCALL`, with
//! `rdi` as its result, or with the exception its test expects.

use core::arch::global_asm;

use xenia_guest_rt::trap::{SVC_COUNT, SVC_ECHO, SVC_EXIT};
use xenia_guest_rt::user::Blob;

global_asm!(
    ".pushsection .text.ring3, \"ax\", @progbits",
    // cpl: stores CS, SS, DS, ES, rflags and rsp at data[0..6], then exits through int 0x80.
    ".globl ring3_cpl_start",
    "ring3_cpl_start:",
    "    xor eax, eax",
    "    mov ax, cs",
    "    mov [rdi], rax",
    "    mov ax, ss",
    "    mov [rdi + 8], rax",
    "    mov ax, ds",
    "    mov [rdi + 16], rax",
    "    mov ax, es",
    "    mov [rdi + 24], rax",
    "    pushfq",
    "    pop qword ptr [rdi + 32]",
    "    mov [rdi + 40], rsp",
    "    mov eax, {exit}",
    "    mov edi, 0x600d",
    "    int 0x80",
    ".globl ring3_cpl_after_int",
    "ring3_cpl_after_int:",
    "    ud2",
    ".globl ring3_cpl_end",
    "ring3_cpl_end:",
    "",
    // count: rsi times `int 0x80` with SVC_COUNT, then exit.
    ".globl ring3_count_start",
    "ring3_count_start:",
    "    mov rcx, rsi",
    "    test rcx, rcx",
    "    jz 3f",
    "2:",
    "    mov eax, {count}",
    "    int 0x80",
    ".globl ring3_count_after_int",
    "ring3_count_after_int:",
    "    dec rcx",
    "    jnz 2b",
    "3:",
    "    mov eax, {exit}",
    "    xor edi, edi",
    "    int 0x80",
    "    ud2",
    ".globl ring3_count_end",
    "ring3_count_end:",
    "",
    // syscall: SVC_ECHO(41) through SYSCALL with rbx = rsp and r12 = a marker, stores the
    // result at data[0], then exits through SYSCALL with the result.
    ".globl ring3_syscall_start",
    "ring3_syscall_start:",
    "    mov r13, rdi",
    "    mov rbx, rsp",
    "    mov r12, 0x5a5a5a5a",
    "    mov eax, {echo}",
    "    mov edi, 41",
    "    syscall",
    ".globl ring3_syscall_after",
    "ring3_syscall_after:",
    "    mov [r13], rax",
    "    mov [r13 + 8], r12",
    "    mov rdi, rax",
    "    mov eax, {exit}",
    "    syscall",
    "    ud2",
    ".globl ring3_syscall_end",
    "ring3_syscall_end:",
    "",
    // int82: a hypercall attempt from ring 3 (must raise #GP).
    ".globl ring3_int82_start",
    "ring3_int82_start:",
    ".globl ring3_int82_insn",
    "ring3_int82_insn:",
    "    int 0x82",
    "    mov eax, {exit}",
    "    mov edi, 1",
    "    int 0x80",
    "    ud2",
    ".globl ring3_int82_end",
    "ring3_int82_end:",
    "",
    // load: reads the quadword at rsi, exits with it.
    ".globl ring3_load_start",
    "ring3_load_start:",
    ".globl ring3_load_insn",
    "ring3_load_insn:",
    "    mov rdi, [rsi]",
    "    mov eax, {exit}",
    "    int 0x80",
    "    ud2",
    ".globl ring3_load_end",
    "ring3_load_end:",
    "",
    // store: writes zero to the quadword at rsi, exits.
    ".globl ring3_store_start",
    "ring3_store_start:",
    "    xor eax, eax",
    ".globl ring3_store_insn",
    "ring3_store_insn:",
    "    mov [rsi], rax",
    "    mov eax, {exit}",
    "    xor edi, edi",
    "    int 0x80",
    "    ud2",
    ".globl ring3_store_end",
    "ring3_store_end:",
    "",
    // ac: sets rflags.AC, then reads a misaligned doubleword of the data area (#AC when
    // CR0.AM is set).
    ".globl ring3_ac_start",
    "ring3_ac_start:",
    "    pushfq",
    "    or qword ptr [rsp], {ac}",
    "    popfq",
    ".globl ring3_ac_insn",
    "ring3_ac_insn:",
    "    mov eax, [rdi + 1]",
    "    mov eax, {exit}",
    "    xor edi, edi",
    "    int 0x80",
    "    ud2",
    ".globl ring3_ac_end",
    "ring3_ac_end:",
    "",
    // movss: sets rflags.TF, then `mov ss` (which holds the single-step trap back for one
    // instruction) and SYSCALL with SVC_EXIT: the #DB is due on the hypervisor's first
    // instruction of the SYSCALL entry, in ring 0, on the user's stack (CVE-2018-8897's
    // shape). Result 0x600d if the program gets to exit.
    ".globl ring3_movss_start",
    "ring3_movss_start:",
    "    mov r8d, ss",
    "    pushfq",
    "    or qword ptr [rsp], {tf}",
    "    mov eax, {exit}",
    "    mov edi, 0x600d",
    "    popfq",
    "    mov ss, r8d",
    ".globl ring3_movss_insn",
    "ring3_movss_insn:",
    "    syscall",
    "    ud2",
    ".globl ring3_movss_end",
    "ring3_movss_end:",
    ".popsection",
    exit = const SVC_EXIT,
    count = const SVC_COUNT,
    echo = const SVC_ECHO,
    ac = const xenia_guest_rt::trap::RFLAGS_AC,
    tf = const 0x100,
);

unsafe extern "C" {
    static ring3_cpl_start: u8;
    static ring3_cpl_after_int: u8;
    static ring3_cpl_end: u8;
    static ring3_count_start: u8;
    static ring3_count_after_int: u8;
    static ring3_count_end: u8;
    static ring3_syscall_start: u8;
    static ring3_syscall_after: u8;
    static ring3_syscall_end: u8;
    static ring3_int82_start: u8;
    static ring3_int82_insn: u8;
    static ring3_int82_end: u8;
    static ring3_load_start: u8;
    static ring3_load_insn: u8;
    static ring3_load_end: u8;
    static ring3_store_start: u8;
    static ring3_store_insn: u8;
    static ring3_store_end: u8;
    static ring3_ac_start: u8;
    static ring3_ac_insn: u8;
    static ring3_ac_end: u8;
    static ring3_movss_start: u8;
    static ring3_movss_insn: u8;
    static ring3_movss_end: u8;
}

/// A ring-3 program and the offset of its labelled instruction.
pub struct Program {
    /// The code.
    pub blob: Blob,
    /// Offset of the instruction the test looks at (see each constructor).
    pub mark: u64,
}

macro_rules! program {
    ($start:ident, $mark:ident, $end:ident) => {{
        let blob = Blob::new(core::ptr::addr_of!($start), core::ptr::addr_of!($end));
        let mark = blob.offset_of(core::ptr::addr_of!($mark));
        Program { blob, mark }
    }};
}

/// Stores CS, SS, DS, ES, rflags, rsp at data[0..6]; mark: after its `int 0x80`.
pub fn cpl() -> Program {
    program!(ring3_cpl_start, ring3_cpl_after_int, ring3_cpl_end)
}

/// `rsi` × `int 0x80` (SVC_COUNT); mark: after the `int 0x80`.
pub fn count() -> Program {
    program!(ring3_count_start, ring3_count_after_int, ring3_count_end)
}

/// SVC_ECHO(41) then SVC_EXIT through SYSCALL; mark: after the first SYSCALL.
pub fn syscall() -> Program {
    program!(ring3_syscall_start, ring3_syscall_after, ring3_syscall_end)
}

/// `int 0x82`; mark: that instruction.
pub fn int82() -> Program {
    program!(ring3_int82_start, ring3_int82_insn, ring3_int82_end)
}

/// Loads from `rsi`; mark: the load.
pub fn load() -> Program {
    program!(ring3_load_start, ring3_load_insn, ring3_load_end)
}

/// Stores to `rsi`; mark: the store.
pub fn store() -> Program {
    program!(ring3_store_start, ring3_store_insn, ring3_store_end)
}

/// Sets AC and reads misaligned; mark: the read.
pub fn alignment_check() -> Program {
    program!(ring3_ac_start, ring3_ac_insn, ring3_ac_end)
}

/// TF, `mov ss`, SYSCALL (SVC_EXIT, result 0x600d); mark: the SYSCALL.
pub fn movss_syscall() -> Program {
    program!(ring3_movss_start, ring3_movss_insn, ring3_movss_end)
}
