//! Traps and ring 3: the entry stubs (exceptions, `int 0x80`, `int 0x81`, the APIC timer,
//! SYSCALL), the Rust dispatcher they call, and entering and leaving ring 3.
//!
//! The stubs have the shape of the pv kernel's runtime (`xenia_guest_rt`'s `asm.rs`), so that
//! both columns pay for the same kernel-side work: push the error code (0 when the CPU
//! pushes none) and the vector, save the fifteen general registers as a [`Regs`], call
//! [`bench_trap`], restore and `iretq` (`sysretq` for SYSCALL). The exception is the null
//! trap, `int 0x81`, whose handler is a bare `iretq`: the cost of the gate alone.
//!
//! A trap from ring 3 arrives on the trap stack (`TSS.RSP0`; SYSCALL switches to it by hand),
//! never on the kernel stack that [`enter_user`] left. To end a ring-3 run, the dispatcher
//! returns 1 and the stub goes back to the kernel stack saved by `bench_enter_user` (a
//! setjmp/longjmp), returning the ring-3 `rdi` as `bench_enter_user`'s result.

use core::arch::global_asm;
use core::sync::atomic::{AtomicU64, Ordering};

use crate::desc::{self, GATE_KERNEL, GATE_USER, KERNEL_DS, USER_CS, USER_DS};
use crate::serial::{EXIT_FATAL, power_off};
use crate::{apic, cpu, paging, println};

/// The ring-3 service vector (DPL 3).
pub const VECTOR_SERVICE: u8 = 0x80;
/// The null trap (DPL 0): handler `iretq`.
pub const VECTOR_NULL: u8 = 0x81;
/// The local APIC timer.
pub const VECTOR_TIMER: u8 = 0x40;
/// The local APIC's spurious vector (no EOI: Intel SDM Vol. 3A §11.9).
pub const VECTOR_SPURIOUS: u8 = 0xFF;
/// Pseudo-vector of a SYSCALL entry in [`Regs::vector`].
pub const VECTOR_SYSCALL: u64 = 0x100;
/// The page-fault vector.
const VECTOR_PF: u64 = 14;

/// Ring-3 service (`rax`): end the run; `rdi` is its result (`bench/bodies/user.s`).
pub const SVC_EXIT: u64 = 0;
/// Ring-3 service: return `rdi + 1` in `rax`.
pub const SVC_ECHO: u64 = 2;
/// Ring-3 service: load the other address space and return.
pub const SVC_SWITCH: u64 = 3;

/// RFLAGS ring 3 starts with: IF and the reserved bit 1. Nothing interrupts ring 3 (the PICs
/// are masked and the APIC timer is idle outside the timer row), but a kernel runs its
/// programs with interrupts on, and so does this one.
const USER_RFLAGS: u64 = 0x202;
/// The RFLAGS bits SYSCALL clears: TF, IF, DF, AC (as Linux does).
const SYSCALL_FMASK: u64 = (1 << 8) | (1 << 9) | (1 << 10) | (1 << 18);

/// What the trap stubs save (lowest address first): the general registers, the vector and
/// error code the stub pushed, the hardware frame.
#[derive(Clone, Copy, Debug, Default)]
#[repr(C)]
#[allow(missing_docs)] // The register names say it all.
pub struct Regs {
    pub r15: u64,
    pub r14: u64,
    pub r13: u64,
    pub r12: u64,
    pub r11: u64,
    pub r10: u64,
    pub r9: u64,
    pub r8: u64,
    pub rbp: u64,
    pub rdi: u64,
    pub rsi: u64,
    pub rdx: u64,
    pub rcx: u64,
    pub rbx: u64,
    pub rax: u64,
    pub vector: u64,
    pub error_code: u64,
    pub rip: u64,
    pub cs: u64,
    pub rflags: u64,
    pub rsp: u64,
    pub ss: u64,
}

/// Timer interrupts taken, and the TSC at the last one's handler entry.
pub static TIMER_TICKS: AtomicU64 = AtomicU64::new(0);
pub static TIMER_ENTRY_TSC: AtomicU64 = AtomicU64::new(0);

global_asm!(
    ".macro BENCH_TRAP_NOERR vector",
    "    push 0",
    "    push \\vector",
    "    jmp bench_trap_common",
    ".endm",
    ".macro BENCH_TRAP_ERR vector",
    "    push \\vector",
    "    jmp bench_trap_common",
    ".endm",
    "",
    ".pushsection .text.bench_traps, \"ax\", @progbits",
    "bench_trap_0: BENCH_TRAP_NOERR 0",
    "bench_trap_1: BENCH_TRAP_NOERR 1",
    "bench_trap_2: BENCH_TRAP_NOERR 2",
    "bench_trap_3: BENCH_TRAP_NOERR 3",
    "bench_trap_4: BENCH_TRAP_NOERR 4",
    "bench_trap_5: BENCH_TRAP_NOERR 5",
    "bench_trap_6: BENCH_TRAP_NOERR 6",
    "bench_trap_7: BENCH_TRAP_NOERR 7",
    "bench_trap_8: BENCH_TRAP_ERR 8",
    "bench_trap_9: BENCH_TRAP_NOERR 9",
    "bench_trap_10: BENCH_TRAP_ERR 10",
    "bench_trap_11: BENCH_TRAP_ERR 11",
    "bench_trap_12: BENCH_TRAP_ERR 12",
    "bench_trap_13: BENCH_TRAP_ERR 13",
    "bench_trap_14: BENCH_TRAP_ERR 14",
    "bench_trap_16: BENCH_TRAP_NOERR 16",
    "bench_trap_17: BENCH_TRAP_ERR 17",
    "bench_trap_18: BENCH_TRAP_NOERR 18",
    "bench_trap_19: BENCH_TRAP_NOERR 19",
    "bench_trap_20: BENCH_TRAP_NOERR 20",
    "bench_trap_21: BENCH_TRAP_ERR 21",
    "bench_trap_service: BENCH_TRAP_NOERR {service}",
    "bench_trap_timer: BENCH_TRAP_NOERR {timer}",
    "",
    // The null trap and the spurious interrupt: nothing to do.
    "bench_trap_null:",
    "    iretq",
    "",
    // Stack on entry, from rsp up: vector, error code, rip, cs, rflags, rsp, ss.
    "bench_trap_common:",
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
    // rsp points at a Regs. The Rust ABI wants DF clear and a 16-byte aligned stack at the
    // call; rbx (callee-saved, already stored) keeps the unaligned value.
    "    cld",
    "    mov rdi, rsp",
    "    mov rbx, rsp",
    "    and rsp, -16",
    "    call {trap}",
    "    mov rsp, rbx",
    "    test rax, rax",
    "    jnz bench_exit_to_kernel",
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
    // SYSCALL (Intel SDM Vol. 3A §5.8.8): rcx = user rip, r11 = user rflags, rsp still the
    // user's. Switch to the trap stack, build the frame an interrupt from ring 3 would have
    // pushed, and go the common way; back with `sysretq`.
    ".globl bench_syscall_entry",
    "bench_syscall_entry:",
    "    mov [rip + bench_syscall_user_rsp], rsp",
    "    lea rsp, [rip + bench_trap_stack_top]",
    "    push {user_ds}",
    "    push qword ptr [rip + bench_syscall_user_rsp]",
    "    push r11",
    "    push {user_cs}",
    "    push rcx",
    "    push 0",
    "    push {syscall}",
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
    "    mov rdi, rsp",
    "    mov rbx, rsp",
    "    and rsp, -16",
    "    call {trap}",
    "    mov rsp, rbx",
    "    test rax, rax",
    "    jnz bench_exit_to_kernel",
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
    "    pop rcx",           // rip
    "    add rsp, 8",        // cs
    "    pop r11",           // rflags
    "    pop rsp",           // the user's rsp
    "    sysretq",
    "",
    // The dispatcher ended the ring-3 run: the result is the ring-3 rdi (Regs at rbx); drop
    // the ring-3 context (it stays on the trap stack, which the next entry from ring 3 starts
    // over) and return from bench_enter_user on the kernel stack, with the kernel's data
    // segments (the CPU left SS null after the ring change) and interrupts off.
    "bench_exit_to_kernel:",
    "    mov rax, [rbx + 9 * 8]",
    "    mov cx, {kernel_ds}",
    "    mov ss, cx",
    "    mov ds, cx",
    "    mov es, cx",
    "    mov rsp, [rip + bench_user_return_rsp]",
    "    push 0x2",
    "    popfq",
    "    pop r15",
    "    pop r14",
    "    pop r13",
    "    pop r12",
    "    pop rbp",
    "    pop rbx",
    "    ret",
    "",
    // extern "C" fn bench_enter_user(rip, rsp, arg0, arg1, rflags) -> u64: enters ring 3 at
    // rip with rsp, rdi = arg0, rsi = arg1, every other register zero; returns the run's
    // result when the dispatcher ends it. DS and ES get the user data selector.
    ".globl bench_enter_user",
    "bench_enter_user:",
    "    push rbx",
    "    push rbp",
    "    push r12",
    "    push r13",
    "    push r14",
    "    push r15",
    "    mov [rip + bench_user_return_rsp], rsp",
    "    mov ax, {user_ds}",
    "    mov ds, ax",
    "    mov es, ax",
    "    push {user_ds}",
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
    ".pushsection .rodata.bench_trap_stubs, \"a\", @progbits",
    ".balign 8",
    ".globl bench_trap_stubs",
    "bench_trap_stubs:",
    "    .quad 0, bench_trap_0, 1, bench_trap_1, 2, bench_trap_2, 3, bench_trap_3",
    "    .quad 4, bench_trap_4, 5, bench_trap_5, 6, bench_trap_6, 7, bench_trap_7",
    "    .quad 8, bench_trap_8, 9, bench_trap_9, 10, bench_trap_10, 11, bench_trap_11",
    "    .quad 12, bench_trap_12, 13, bench_trap_13, 14, bench_trap_14, 16, bench_trap_16",
    "    .quad 17, bench_trap_17, 18, bench_trap_18, 19, bench_trap_19, 20, bench_trap_20",
    "    .quad 21, bench_trap_21",
    "    .quad {timer}, bench_trap_timer",
    "    .quad {null}, bench_trap_null",
    "    .quad {spurious}, bench_trap_null",
    "bench_trap_stubs_end:",
    ".globl bench_trap_stubs_bytes",
    "bench_trap_stubs_bytes: .quad bench_trap_stubs_end - bench_trap_stubs",
    ".popsection",
    "",
    ".pushsection .bss.bench_trap, \"aw\", @nobits",
    ".balign 8",
    "bench_user_return_rsp: .skip 8",
    "bench_syscall_user_rsp: .skip 8",
    // The trap stack: TSS.RSP0, and SYSCALL's.
    ".balign 4096",
    "    .skip 16 * 1024",
    ".globl bench_trap_stack_top",
    "bench_trap_stack_top:",
    ".popsection",
    trap = sym bench_trap,
    service = const VECTOR_SERVICE,
    timer = const VECTOR_TIMER,
    null = const VECTOR_NULL,
    spurious = const VECTOR_SPURIOUS,
    syscall = const VECTOR_SYSCALL,
    user_ds = const USER_DS,
    user_cs = const USER_CS,
    kernel_ds = const KERNEL_DS,
);

/// Entries of `bench_trap_stubs` (checked against the table's size at [`init`]).
const STUBS: usize = 24;

unsafe extern "C" {
    /// (vector, stub address) pairs for the kernel gates.
    safe static bench_trap_stubs: [[u64; 2]; STUBS];
    /// The size in bytes of `bench_trap_stubs` as assembled.
    safe static bench_trap_stubs_bytes: u64;
    static bench_trap_service: u8;
    static bench_syscall_entry: u8;
    static bench_trap_stack_top: u8;
    fn bench_enter_user(rip: u64, rsp: u64, arg0: u64, arg1: u64, rflags: u64) -> u64;
}

/// Loads the GDT/TSS and IDT and enables SYSCALL.
pub fn init() {
    desc::load_gdt(&raw const bench_trap_stack_top as u64);
    if bench_trap_stubs_bytes != size_of_val(&bench_trap_stubs) as u64 {
        println!("bench fatal: bench_trap_stubs does not have STUBS entries (trap.rs)");
        power_off(EXIT_FATAL);
    }
    for [vector, stub] in bench_trap_stubs {
        desc::set_gate(vector as u8, stub, GATE_KERNEL);
    }
    desc::set_gate(
        VECTOR_SERVICE,
        &raw const bench_trap_service as u64,
        GATE_USER,
    );
    desc::load_idt();
    let star = (u64::from(desc::SYSRET_BASE) << 48) | (u64::from(desc::KERNEL_CS) << 32);
    // SAFETY: these MSRs exist on every x86-64 CPU; LSTAR is the SYSCALL stub above, STAR's
    // selectors are the GDT's (kernel CS/SS = 0x08/0x10, user SS/CS = 0x1b/0x23).
    unsafe {
        cpu::wrmsr(cpu::MSR_STAR, star);
        cpu::wrmsr(cpu::MSR_LSTAR, &raw const bench_syscall_entry as u64);
        cpu::wrmsr(cpu::MSR_FMASK, SYSCALL_FMASK);
        let efer = cpu::rdmsr(cpu::MSR_EFER);
        cpu::wrmsr(cpu::MSR_EFER, efer | cpu::EFER_SCE);
    }
}

/// Runs the ring-3 code at `rip` (a user address) with `rdi = a`, `rsi = b` until it asks to
/// exit; returns its result (`rdi` at the exit).
pub fn enter_user(rip: u64, a: u64, b: u64) -> u64 {
    // SAFETY: the user mappings (code and stack) are in place (`paging::init`), the GDT,
    // TSS.RSP0 and IDT are loaded (`init`), and the only ways out of ring 3 are traps to the
    // stubs above, which either resume ring 3 or return here through the saved kernel stack.
    unsafe { bench_enter_user(rip, paging::USER_STACK_TOP, a, b, USER_RFLAGS) }
}

/// The dispatcher: 0 resumes the interrupted code, 1 ends the ring-3 run.
extern "C" fn bench_trap(regs: &mut Regs) -> u64 {
    match regs.vector {
        v if v == u64::from(VECTOR_SERVICE) || v == VECTOR_SYSCALL => service(regs),
        v if v == u64::from(VECTOR_TIMER) => {
            TIMER_ENTRY_TSC.store(cpu::rdtsc(), Ordering::Relaxed);
            TIMER_TICKS.fetch_add(1, Ordering::Relaxed);
            apic::eoi();
            0
        }
        VECTOR_PF if regs.cs & 3 == 3 && paging::map_fault_page(cpu::read_cr2()) => 0,
        _ => fatal(regs),
    }
}

fn service(regs: &mut Regs) -> u64 {
    match regs.rax {
        SVC_EXIT => 1,
        SVC_ECHO => {
            regs.rax = regs.rdi.wrapping_add(1);
            0
        }
        SVC_SWITCH => {
            paging::switch_space();
            0
        }
        _ => fatal(regs),
    }
}

/// Reports an unexpected trap and powers off with the fatal code.
fn fatal(regs: &Regs) -> ! {
    println!(
        "bench fatal: vector {:#x}, error code {:#x}, rip {:#x} cs {:#x} rflags {:#x} rsp {:#x} \
         ss {:#x} cr2 {:#x} cr3 {:#x} rax {:#x} rdi {:#x}",
        regs.vector,
        regs.error_code,
        regs.rip,
        regs.cs,
        regs.rflags,
        regs.rsp,
        regs.ss,
        cpu::read_cr2(),
        cpu::read_cr3(),
        regs.rax,
        regs.rdi
    );
    power_off(EXIT_FATAL)
}
