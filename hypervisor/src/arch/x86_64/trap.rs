//! Interrupt and exception entry for the hypervisor itself (Intel SDM Vol. 3A ch. 6).
//!
//! Every vector has a 16-byte stub that pushes a dummy error code where the CPU does not
//! push one, then the vector number, and jumps to a common path that saves the general
//! registers as a [`TrapFrame`] and calls [`trap_dispatch`]. An exception taken in the
//! hypervisor is a hypervisor bug: it is reported with registers and a call trace and the
//! machine stops as a failure. Guest entry (ring 1/3) arrives with the guest issue.

use core::fmt::Write;

use super::gdt::{self, HYPERVISOR_CS};
use crate::power::{self, ExitReason};

/// Vector of the local APIC timer.
pub const APIC_TIMER_VECTOR: u8 = 0xF0;
/// Vector the local APIC uses for spurious interrupts (low nibble all ones on old CPUs).
pub const SPURIOUS_VECTOR: u8 = 0xFF;

/// The registers saved on entry, lowest address first.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct TrapFrame {
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
    // Pushed by the CPU.
    pub rip: u64,
    pub cs: u64,
    pub rflags: u64,
    pub rsp: u64,
    pub ss: u64,
}

// Vectors with a CPU-pushed error code: 8, 10–14, 17, 21, 29, 30 (SDM Vol. 3A Table 6-1).
core::arch::global_asm!(
    r#"
.set XENIA_ERRCODE_VECTORS, 0x60227D00
.section .text.trap_stubs, "ax"
.balign 16
.global trap_stubs
trap_stubs:
.set vec, 0
.rept 256
    .balign 16
    .if vec < 32
        .if (XENIA_ERRCODE_VECTORS >> vec) & 1
        .else
            push 0
        .endif
    .else
        push 0
    .endif
    push vec
    jmp trap_common
    .set vec, vec + 1
.endr

trap_common:
    push rax
    push rbx
    push rcx
    push rdx
    push rsi
    push rdi
    push rbp
    push r8
    push r9
    push r10
    push r11
    push r12
    push r13
    push r14
    push r15
    mov rdi, rsp
    cld
    call {dispatch}
    pop r15
    pop r14
    pop r13
    pop r12
    pop r11
    pop r10
    pop r9
    pop r8
    pop rbp
    pop rdi
    pop rsi
    pop rdx
    pop rcx
    pop rbx
    pop rax
    add rsp, 16
    iretq
"#,
    dispatch = sym trap_dispatch,
);

unsafe extern "C" {
    static trap_stubs: [u8; 256 * 16];
}

/// One IDT gate (SDM Vol. 3A §6.14.1, Figure 6-8).
#[repr(C)]
#[derive(Clone, Copy)]
struct Gate {
    offset_low: u16,
    selector: u16,
    ist: u8,
    attributes: u8,
    offset_mid: u16,
    offset_high: u32,
    reserved: u32,
}

const GATE_PRESENT: u8 = 1 << 7;
const GATE_INTERRUPT: u8 = 0xE;

impl Gate {
    const MISSING: Gate = Gate {
        offset_low: 0,
        selector: 0,
        ist: 0,
        attributes: 0,
        offset_mid: 0,
        offset_high: 0,
        reserved: 0,
    };

    fn interrupt(handler: u64, ist: u8) -> Gate {
        Gate {
            offset_low: handler as u16,
            selector: HYPERVISOR_CS,
            ist,
            attributes: GATE_PRESENT | GATE_INTERRUPT,
            offset_mid: (handler >> 16) as u16,
            offset_high: (handler >> 32) as u32,
            reserved: 0,
        }
    }
}

#[repr(C, align(16))]
struct Idt([Gate; 256]);

static mut IDT: Idt = Idt([Gate::MISSING; 256]);

/// Fills the IDT with the stubs (IST stacks for #DF, NMI and #MC) and loads it.
pub fn init() {
    let stubs = (&raw const trap_stubs) as u64;
    // SAFETY: runs once on the boot CPU with interrupts off; nothing else uses the IDT
    // until `lidt` below makes the CPU read it.
    unsafe {
        let idt = &raw mut IDT;
        for vector in 0..256 {
            let ist = match vector {
                2 => gdt::IST_NMI,
                8 => gdt::IST_DOUBLE_FAULT,
                18 => gdt::IST_MACHINE_CHECK,
                _ => 0,
            };
            (*idt).0[vector] = Gate::interrupt(stubs + vector as u64 * 16, ist);
        }
        let pointer = x86_64::structures::DescriptorTablePointer {
            limit: (core::mem::size_of::<Idt>() - 1) as u16,
            base: x86_64::VirtAddr::new((&raw const IDT) as u64),
        };
        x86_64::instructions::tables::lidt(&pointer);
    }
}

/// Mnemonics of the architectural exceptions (SDM Vol. 3A Table 6-1).
pub fn exception_name(vector: u64) -> &'static str {
    const NAMES: [&str; 32] = [
        "#DE", "#DB", "NMI", "#BP", "#OF", "#BR", "#UD", "#NM", "#DF", "CSO", "#TS", "#NP", "#SS",
        "#GP", "#PF", "reserved", "#MF", "#AC", "#MC", "#XM", "#VE", "#CP", "reserved", "reserved",
        "reserved", "reserved", "reserved", "reserved", "#HV", "#VC", "#SX", "reserved",
    ];
    NAMES.get(vector as usize).copied().unwrap_or("interrupt")
}

extern "C" fn trap_dispatch(frame: &mut TrapFrame) {
    match frame.vector {
        v if v == u64::from(APIC_TIMER_VECTOR) => super::apic::timer_interrupt(),
        v if v == u64::from(SPURIOUS_VECTOR) => {}
        2 => log::warn!(target: "trap", "NMI received at rip {:#x}; continuing", frame.rip),
        0..=31 => fatal_exception(frame),
        v => {
            log::warn!(target: "trap", "unexpected interrupt vector {v}; ignored");
            super::apic::end_of_interrupt();
        }
    }
}

/// Prints everything known about an exception taken in the hypervisor and stops the
/// machine as a failure.
fn fatal_exception(frame: &TrapFrame) -> ! {
    let cr2 = x86_64::registers::control::Cr2::read_raw();
    let cr3 = x86_64::registers::control::Cr3::read_raw()
        .0
        .start_address()
        .as_u64();
    let mut out = crate::console::emergency();
    let f = frame;
    let _ = writeln!(
        out,
        "\nfatal exception: vector {} ({}), error code {:#x}, in the hypervisor",
        f.vector,
        exception_name(f.vector),
        f.error_code
    );
    let _ = writeln!(
        out,
        "  rip {:#018x}  cs {:#x}  rflags {:#x}",
        f.rip, f.cs, f.rflags
    );
    let _ = writeln!(out, "  rsp {:#018x}  ss {:#x}", f.rsp, f.ss);
    let _ = writeln!(out, "  cr2 {:#x}  cr3 {:#x}", cr2, cr3);
    let regs = [
        ("rax", f.rax),
        ("rbx", f.rbx),
        ("rcx", f.rcx),
        ("rdx", f.rdx),
        ("rsi", f.rsi),
        ("rdi", f.rdi),
        ("rbp", f.rbp),
        ("r8", f.r8),
        ("r9", f.r9),
        ("r10", f.r10),
        ("r11", f.r11),
        ("r12", f.r12),
        ("r13", f.r13),
        ("r14", f.r14),
        ("r15", f.r15),
    ];
    for row in regs.chunks(4) {
        let _ = write!(out, " ");
        for (name, value) in row {
            let _ = write!(out, " {name:>3} {value:#018x}");
        }
        let _ = writeln!(out);
    }
    write_call_trace(&mut out, f.rip, f.rbp);
    power::exit(ExitReason::HypervisorFailure)
}

/// Writes `call trace: <rip> <ret> <ret> ...` by following the frame-pointer chain.
/// Every frame pointer is checked to lie on a hypervisor stack before it is read, so a
/// corrupt chain ends the trace instead of faulting again.
pub fn write_call_trace(out: &mut impl Write, rip: u64, mut rbp: u64) {
    const MAX_FRAMES: usize = 24;
    let _ = write!(out, "  call trace: {rip:#x}");
    for _ in 0..MAX_FRAMES {
        if rbp == 0
            || !rbp.is_multiple_of(8)
            || !(on_hypervisor_stack(rbp) && on_hypervisor_stack(rbp + 15))
        {
            break;
        }
        // SAFETY: `rbp..rbp+16` lies on a hypervisor stack, which is mapped and readable.
        let (next, ret) = unsafe { (*(rbp as *const u64), *((rbp + 8) as *const u64)) };
        if ret == 0 {
            break;
        }
        let _ = write!(out, " {ret:#x}");
        if next <= rbp {
            break;
        }
        rbp = next;
    }
    let _ = writeln!(out);
}

fn on_hypervisor_stack(addr: u64) -> bool {
    gdt::on_ist_stack(addr) || super::boot_stack_contains(addr)
}
