//! Exceptions ("Exceptions"; guest-abi `trap`). The hypervisor delivers each exception to
//! the handler registered for its vector with a hardware frame on our stack: [error code],
//! rip, cs, rflags, rsp, ss. The demos expect none, so every handler reports what happened
//! and crashes the domain (the toolstack then applies `on_crash`). Without a trap table the
//! hypervisor would crash it for us, with less to say.

use core::sync::atomic::Ordering;

use guest_abi::calls;
use guest_abi::sched::ShutdownReason;
use guest_abi::trap::{self, TrapInfo};

use super::{console, shared_info, shut_down};

// One stub per vector: push a zero where the CPU pushes no error code, then the vector, so
// that every exception reaches `exception` with the same frame layout.
core::arch::global_asm!(
    ".macro EXCEPTION_STUB name, vector, has_error_code",
    ".globl \\name",
    "\\name:",
    ".if \\has_error_code == 0",
    "    push 0",
    ".endif",
    "    push \\vector",
    "    jmp exception_common",
    ".endm",
    "",
    ".pushsection .text, \"ax\", @progbits",
    "EXCEPTION_STUB divide_error_entry, 0, 0",
    "EXCEPTION_STUB debug_entry, 1, 0",
    "EXCEPTION_STUB breakpoint_entry, 3, 0",
    "EXCEPTION_STUB invalid_opcode_entry, 6, 0",
    "EXCEPTION_STUB device_not_available_entry, 7, 0",
    "EXCEPTION_STUB general_protection_entry, 13, 1",
    "EXCEPTION_STUB page_fault_entry, 14, 1",
    "EXCEPTION_STUB x87_error_entry, 16, 0",
    "EXCEPTION_STUB alignment_check_entry, 17, 1",
    "EXCEPTION_STUB simd_error_entry, 19, 0",
    "exception_common:",
    "    mov rdi, rsp",             // &ExceptionFrame
    "    and rsp, -16",             // the Rust ABI wants an aligned stack
    "    call {exception}",
    "    ud2",
    ".popsection",
    exception = sym exception,
);

unsafe extern "C" {
    fn divide_error_entry();
    fn debug_entry();
    fn breakpoint_entry();
    fn invalid_opcode_entry();
    fn device_not_available_entry();
    fn general_protection_entry();
    fn page_fault_entry();
    fn x87_error_entry();
    fn alignment_check_entry();
    fn simd_error_entry();
}

/// What the stubs leave on the stack: their two pushes, then the hardware frame.
#[repr(C)]
struct ExceptionFrame {
    vector: u64,
    error_code: u64,
    rip: u64,
    cs: u64,
    rflags: u64,
    rsp: u64,
    ss: u64,
}

extern "C" fn exception(frame: &ExceptionFrame) -> ! {
    // A page fault's address is in vcpu_info.arch.cr2: ring 1 cannot read CR2.
    let cr2 = shared_info().vcpu_info[0].arch.cr2.load(Ordering::Relaxed);
    crate::println!(
        "unexpected exception {} at rip {:#x} (error code {:#x}, cr2 {cr2:#x}, rsp {:#x})",
        frame.vector,
        frame.rip,
        frame.error_code,
        frame.rsp
    );
    console::flush(console::FLUSH_TIMEOUT_NS);
    shut_down(ShutdownReason::Crash)
}

/// Installs the trap table.
pub fn install() {
    // Vector, DPL, mask events on entry, handler. int3 is a software interrupt and checked
    // against the DPL like any `int n`: DPL 3 lets it work from every ring, as natively.
    // Masking events on entry makes these interrupt gates.
    let entry = |vector, dpl, handler: unsafe extern "C" fn()| {
        TrapInfo::new(vector, dpl, true, handler as *const () as u64)
    };
    let table = [
        entry(trap::DIVIDE_ERROR, 0, divide_error_entry),
        entry(trap::DEBUG, 0, debug_entry),
        entry(trap::BREAKPOINT, 3, breakpoint_entry),
        entry(trap::INVALID_OPCODE, 0, invalid_opcode_entry),
        entry(trap::DEVICE_NOT_AVAILABLE, 0, device_not_available_entry),
        entry(trap::GENERAL_PROTECTION, 0, general_protection_entry),
        entry(trap::PAGE_FAULT, 0, page_fault_entry),
        entry(trap::X87_FLOATING_POINT, 0, x87_error_entry),
        entry(trap::ALIGNMENT_CHECK, 0, alignment_check_entry),
        entry(trap::SIMD_FLOATING_POINT, 0, simd_error_entry),
        TrapInfo::END,
    ];
    // SAFETY: every handler is a stub above that handles its vector's frame and never
    // returns into the faulting code.
    if unsafe { calls::set_trap_table(&table) }.is_err() {
        let _ = calls::console_write(b"set_trap_table failed\n");
        shut_down(ShutdownReason::Crash);
    }
}
