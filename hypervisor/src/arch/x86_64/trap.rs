//! Interrupts and exceptions (Intel SDM Vol. 3A ch. 6): the IDT and the Rust side of the
//! entry stubs in `entry.rs`.
//!
//! Every vector's stub pushes a dummy error code where the CPU does not push one, then
//! the vector number, and saves the general registers as a [`TrapFrame`]. Traps taken in
//! the hypervisor reach [`trap_dispatch`] on the current stack; an exception there is a
//! hypervisor bug, reported with registers and a call trace, and the machine stops as a
//! failure. Traps from a guest reach [`guest_trap_dispatch`] on the hypervisor stack.

use core::fmt::Write;

use super::entry;
use super::gdt;
use crate::power::{self, ExitReason};

/// Vector of the local APIC timer.
pub const APIC_TIMER_VECTOR: u8 = 0xF0;
/// Vector of COM1's receive interrupt (routed by the I/O APIC).
pub const COM1_VECTOR: u8 = 0xF1;
/// Vector of the PS/2 keyboard's interrupt (routed by the I/O APIC when the hypervisor owns
/// the keyboard). 0xF2 is the IPI's.
pub const KEYBOARD_VECTOR: u8 = 0xF3;
/// Vector the local APIC uses for spurious interrupts (low nibble all ones on old CPUs).
pub const SPURIOUS_VECTOR: u8 = 0xFF;

pub use super::frame::TrapFrame;

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
const GATE_TRAP: u8 = 0xF;
const fn gate_dpl(level: u8) -> u8 {
    level << 5
}

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

    fn interrupt(handler: u64, selector: u16, ist: u8, dpl: u8) -> Gate {
        Gate {
            offset_low: handler as u16,
            selector,
            ist,
            attributes: GATE_PRESENT | GATE_INTERRUPT | gate_dpl(dpl),
            offset_mid: (handler >> 16) as u16,
            offset_high: (handler >> 32) as u32,
            reserved: 0,
        }
    }
}

fn idt() -> *mut [Gate; 256] {
    entry::va(entry::IDT_OFFSET) as *mut [Gate; 256]
}

/// Vectors a guest may raise with `int n` (0x20–0xDF but the hypercall vector): they
/// reach the hypervisor, which delivers them to the guest's own handler if that entry's
/// DPL admits the caller, as hardware would. 0xE0–0xEF are where the masked legacy PICs
/// would deliver (spurious IRQs only); 0xF0–0xFF are the hypervisor's own (APIC timer,
/// spurious).
pub const GUEST_SOFTWARE_VECTORS: core::ops::RangeInclusive<u8> = 0x20..=0xDF;
/// Where the legacy PICs are moved to (and masked).
pub const LEGACY_PIC_BASE: u8 = 0xE0;

/// Who may raise a vector with `int n`: the hypercall gate is for ring 1 only; the
/// breakpoint and overflow traps and the guest software vectors for every ring; the rest
/// only the CPU (a guest's `int n` on them gets #GP from the hardware).
fn vector_dpl(vector: u8) -> u8 {
    match vector {
        guest_abi::hypercall::HYPERCALL_VECTOR => 1,
        3 | 4 => 3,
        v if GUEST_SOFTWARE_VECTORS.contains(&v) => 3,
        _ => 0,
    }
}

/// Fills this pCPU's IDT (in its entry area) with the entry stubs and loads it.
pub fn init() {
    let mut table = [Gate::MISSING; 256];
    for (vector, gate) in table.iter_mut().enumerate() {
        let vector = vector as u8;
        let ist = match vector {
            2 => gdt::IST_NMI,
            8 => gdt::IST_DOUBLE_FAULT,
            18 => gdt::IST_MACHINE_CHECK,
            // #DB can come due on the first instruction of the SYSCALL entry, on the guest's
            // stack (TF or a breakpoint held back by `mov ss`): it must not be pushed there.
            // It shares #MC's stack: an #MC stops the machine, so the two never nest.
            1 => gdt::IST_MACHINE_CHECK,
            _ => 0,
        };
        *gate = Gate::interrupt(entry::stub(vector), gdt::HV_CS, ist, vector_dpl(vector));
    }
    // SAFETY: the IDT page is mapped writable in the hypervisor root and belongs to this
    // pCPU; `lidt` makes the CPU use it only after it is complete.
    unsafe {
        core::ptr::write_volatile(idt(), table);
        let pointer = x86_64::structures::DescriptorTablePointer {
            limit: (core::mem::size_of::<[Gate; 256]>() - 1) as u16,
            base: x86_64::VirtAddr::new(idt() as u64),
        };
        x86_64::instructions::tables::lidt(&pointer);
    }
}

/// Points the fast-trap gate (`int 0x80`) straight at a guest kernel's ring-1 handler,
/// or back at the hypervisor's stub when `handler` is `None`.
pub fn set_fast_trap(handler: Option<u64>) {
    let v = guest_abi::hypercall::FAST_TRAP_VECTOR;
    let gate = match handler {
        // A trap gate: an interrupt gate would clear IF, and ring 1 cannot set it again
        // (IOPL is 0), which would leave the guest running with interrupts off.
        Some(rip) => Gate {
            attributes: GATE_PRESENT | GATE_TRAP | gate_dpl(3),
            ..Gate::interrupt(rip, guest_abi::selectors::KERNEL_CS, 0, 3)
        },
        None => Gate::interrupt(entry::stub(v), gdt::HV_CS, 0, 3),
    };
    // SAFETY: as in `init`; a single gate is replaced while interrupts are off, and the
    // guest cannot run (and so cannot raise the vector) until we return to it.
    unsafe { core::ptr::write_volatile(&raw mut (*idt())[usize::from(v)], gate) };
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

/// Traps taken in the hypervisor (called by the entry stubs).
pub(super) extern "C" fn trap_dispatch(frame: &mut TrapFrame) {
    match frame.vector {
        v if v == u64::from(APIC_TIMER_VECTOR) => super::apic::timer_interrupt(),
        v if v == u64::from(SPURIOUS_VECTOR) => {}
        v if v == u64::from(COM1_VECTOR) || v == u64::from(KEYBOARD_VECTOR) => {
            super::apic::end_of_interrupt()
        }
        v if v == u64::from(super::ipi::IPI_VECTOR) => super::ipi::interrupt(),
        // A device interrupt of dom0's: its pin is masked before the EOI (a level-triggered
        // line still asserted would otherwise come straight back).
        v if v <= 0xFF && super::ioapic::DEVICE_VECTORS.contains(&(v as u8)) => {
            super::ioapic::device_interrupt(v as u8);
            super::apic::end_of_interrupt();
        }
        2 => log::warn!(target: "trap", "NMI received at rip {:#x}; continuing", frame.rip),
        1 => debug_in_hypervisor(frame),
        0..=31 => fatal_exception(frame),
        v => {
            log::warn!(target: "trap", "unexpected interrupt vector {v}; ignored");
            super::apic::end_of_interrupt();
        }
    }
}

/// A #DB taken in the hypervisor: the hypervisor neither single-steps itself nor sets
/// breakpoints, so it is a guest's step or breakpoint held back by `mov ss` until the first
/// instruction of an entry (Xen drops these too). DR6 is reset, TF cleared, and the entry
/// goes on. Silent: a guest could otherwise fill the log.
fn debug_in_hypervisor(frame: &mut TrapFrame) {
    const DR6_DEFAULT: u64 = 0xFFFF_0FF0;
    const RFLAGS_TF: u64 = 1 << 8;
    // SAFETY: DR6 only reports debug conditions; writing its architectural default changes
    // nothing else.
    unsafe { core::arch::asm!("mov dr6, {v}", v = in(reg) DR6_DEFAULT) };
    frame.rflags &= !RFLAGS_TF;
    DEBUG_DROPPED.fetch_add(1, core::sync::atomic::Ordering::Relaxed);
}

/// #DBs taken in the hypervisor and dropped ([`debug_in_hypervisor`]).
pub static DEBUG_DROPPED: core::sync::atomic::AtomicU64 = core::sync::atomic::AtomicU64::new(0);

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
    crate::console::fatal_on_screen(format_args!(
        "fatal exception: vector {} ({}) at rip {:#x}, cr2 {:#x}; details on COM1",
        f.vector,
        exception_name(f.vector),
        f.rip,
        cr2
    ));
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
    entry::on_entry_stack(addr) || super::boot_stack_contains(addr)
}

/// A `syscall` of a Xen PV vCPU (Xen's `lstar_enter`): the frame says Xen's flat ring-3
/// selectors; from kernel mode (`kernel`) the `syscall` is a hypercall, from user mode a
/// system call for the kernel (never ring 1's short path). Out of line, so that
/// [`guest_trap_dispatch`]'s other paths keep their tail calls: with this call inlined the
/// dispatcher saved registers on every trap, 7 instructions on ring 1's null hypercall
/// (issue 13's goal of 150, `bench_goals_icount`).
#[inline(never)]
fn xen_pv_syscall(frame: &mut TrapFrame, kernel: bool) {
    use crate::guest::fast_pv::{self, Kind};
    frame.cs = u64::from(guest_abi::selectors::FLAT_RING3_CS64);
    frame.ss = u64::from(guest_abi::selectors::FLAT_RING3_SS64);
    let kind = if kernel {
        frame.vector = u64::from(guest_abi::hypercall::HYPERCALL_VECTOR);
        // The kernel's return to a program (`HYPERVISOR_iret`) and the hypercalls of its
        // context switch, the short way when they can (`guest::fast_pv`).
        match frame.rax {
            guest_abi::hypercall::HYPERVISOR_IRET => Some(Kind::Iret),
            guest_abi::hypercall::HYPERVISOR_SET_SEGMENT_BASE
            | guest_abi::hypercall::HYPERVISOR_STACK_SWITCH
            | guest_abi::hypercall::HYPERVISOR_MMUEXT_OP => Some(Kind::Hypercall),
            _ => None,
        }
    } else {
        Some(Kind::Syscall)
    };
    // One call site: the short ways are inlined here (this function is out of line).
    if let Some(kind) = kind
        && fast_pv::trap(frame, kind)
    {
        return;
    }
    crate::guest::trap(frame)
}

/// Traps from a guest (called by the entry stubs, on the hypervisor stack, with the
/// guest's registers in `frame`). The hypercalls answered and the SYSCALLs bounced without a
/// lock are tried here,
/// before the whole trap path (its prologue alone saves six registers).
pub(super) extern "C" fn guest_trap_dispatch(frame: &mut TrapFrame) {
    if frame.vector == entry::SYSCALL_VECTOR {
        use super::percpu::{MODE_FAST, MODE_RING1, MODE_XEN_PV_KERNEL};
        let mode = super::percpu::this()
            .entered_mode
            .load(core::sync::atomic::Ordering::Relaxed);
        if mode != MODE_RING1 {
            return xen_pv_syscall(frame, mode & !MODE_FAST == MODE_XEN_PV_KERNEL);
        }
    }
    if frame.vector == u64::from(guest_abi::hypercall::HYPERCALL_VECTOR)
        && crate::guest::fast::light(frame)
    {
        return;
    }
    if frame.vector == entry::SYSCALL_VECTOR && crate::guest::fast::light_syscall(frame) {
        return;
    }
    crate::guest::trap(frame);
}
