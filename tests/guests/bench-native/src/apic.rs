//! The local APIC (xAPIC, memory-mapped; Intel SDM Vol. 3A §11.4, §11.5.4): enabled with a
//! spurious vector, its timer in one-shot mode at the bus clock (divide by 1). The legacy
//! PICs are masked so that nothing else interrupts.

use core::sync::atomic::{AtomicU64, Ordering};

use crate::cpu;
use crate::trap::{VECTOR_SPURIOUS, VECTOR_TIMER};

/// Register offsets (Intel SDM Vol. 3A table 11-1).
const EOI: u64 = 0xB0;
const SVR: u64 = 0xF0;
const LVT_TIMER: u64 = 0x320;
const TIMER_INITIAL: u64 = 0x380;
const TIMER_DIVIDE: u64 = 0x3E0;
/// SVR: APIC software enable.
const SVR_ENABLE: u32 = 1 << 8;
/// Divide configuration 1011b: divide by 1.
const DIVIDE_BY_1: u32 = 0b1011;
/// `IA32_APIC_BASE`: global enable, and the base address bits.
const APIC_BASE_ENABLE: u64 = 1 << 11;
const APIC_BASE_MASK: u64 = 0xF_FFFF_F000;
/// The PICs' data ports (mask registers).
const PIC1_DATA: u16 = 0x21;
const PIC2_DATA: u16 = 0xA1;

/// The APIC's physical (= virtual) base; 0 until [`init`].
static BASE: AtomicU64 = AtomicU64::new(0);

fn write(reg: u64, value: u32) {
    let base = BASE.load(Ordering::Relaxed);
    if base == 0 {
        return;
    }
    // SAFETY: `base` is the APIC's page, inside the identity map (below 4 GiB, uncached);
    // `reg` is one of the register offsets above, 16-byte aligned.
    unsafe { ((base + reg) as *mut u32).write_volatile(value) };
}

/// Masks the PICs, enables the APIC and programs its timer: one-shot, [`VECTOR_TIMER`].
pub fn init() {
    // SAFETY: the PICs' mask registers; masking every line only silences them.
    unsafe {
        cpu::outb(PIC1_DATA, 0xFF);
        cpu::outb(PIC2_DATA, 0xFF);
    }
    // SAFETY: IA32_APIC_BASE exists on every CPU with an APIC (all x86-64 ones); setting the
    // global enable keeps the base where it is.
    let msr = unsafe { cpu::rdmsr(cpu::MSR_APIC_BASE) };
    // SAFETY: as above.
    unsafe { cpu::wrmsr(cpu::MSR_APIC_BASE, msr | APIC_BASE_ENABLE) };
    BASE.store(msr & APIC_BASE_MASK, Ordering::Relaxed);
    write(SVR, SVR_ENABLE | u32::from(VECTOR_SPURIOUS));
    write(TIMER_DIVIDE, DIVIDE_BY_1);
    write(LVT_TIMER, u32::from(VECTOR_TIMER));
}

/// Arms the one-shot timer to fire after `count` bus clocks.
#[inline(always)]
pub fn arm(count: u32) {
    write(TIMER_INITIAL, count);
}

/// Signals the end of the interrupt being handled.
pub fn eoi() {
    write(EOI, 0);
}
