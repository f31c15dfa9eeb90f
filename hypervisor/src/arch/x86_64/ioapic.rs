//! The I/O APIC, used for one thing: COM1's receive interrupt, so that dom0's console
//! input arrives without polling (Intel 82093AA datasheet §3; ACPI MADT for where it is
//! and how ISA IRQ 4 is wired). Every other input stays masked.

use core::sync::atomic::{AtomicBool, Ordering};

use super::{apic, paging, trap};

const IOREGSEL: u64 = 0x00;
const IOWIN: u64 = 0x10;
/// Redirection-table entry `n` is registers 0x10 + 2n (low) and 0x11 + 2n (high).
const fn redirection(n: u32) -> u32 {
    0x10 + 2 * n
}
/// MPS INTI flags (ACPI 6.5 Table 5.26): polarity in bits 0–1 (3: active low), trigger mode
/// in bits 2–3 (3: level).
const ACTIVE_LOW: u16 = 3;
const LEVEL: u16 = 3 << 2;
const RTE_ACTIVE_LOW: u32 = 1 << 13;
const RTE_LEVEL: u32 = 1 << 15;

/// COM1's legacy IRQ.
const COM1_IRQ: u8 = 4;

static SERIAL_IRQ: AtomicBool = AtomicBool::new(false);

/// Whether COM1 input raises an interrupt (else the console is polled).
pub fn serial_interrupts() -> bool {
    SERIAL_IRQ.load(Ordering::Relaxed)
}

/// Routes COM1's IRQ through the I/O APIC described by `madt` to this CPU's local APIC at
/// [`trap::COM1_VECTOR`], and turns on the UART's receive interrupt. On any trouble the
/// console stays polled.
pub fn route_com1(madt: &[u8]) -> Result<(), &'static str> {
    let (phys, gsi_base) = crate::acpi::madt_ioapic(madt).ok_or("no I/O APIC in the MADT")?;
    let (gsi, flags) = crate::acpi::isa_irq(madt, COM1_IRQ);
    let pin = gsi
        .checked_sub(gsi_base)
        .ok_or("COM1's GSI is below the I/O APIC's")?;
    let base = paging::map_mmio(u64::from(phys), 0x20).map_err(|_| "cannot map the I/O APIC")?;
    let write = |reg: u32, value: u32| {
        // SAFETY: `base` maps the I/O APIC's register window uncached; IOREGSEL selects a
        // register and IOWIN writes it. Only COM1's redirection entry is written.
        unsafe {
            core::ptr::write_volatile((base + IOREGSEL) as *mut u32, reg);
            core::ptr::write_volatile((base + IOWIN) as *mut u32, value);
        }
    };
    let read = |reg: u32| -> u32 {
        // SAFETY: as above, reading.
        unsafe {
            core::ptr::write_volatile((base + IOREGSEL) as *mut u32, reg);
            core::ptr::read_volatile((base + IOWIN) as *const u32)
        }
    };
    // IOAPICVER (register 1), bits 16–23: the highest redirection entry.
    let entries = ((read(1) >> 16) & 0xFF) + 1;
    if pin >= entries {
        return Err("COM1's pin is beyond the I/O APIC's redirection table");
    }
    let mut low = u32::from(trap::COM1_VECTOR);
    if flags & 3 == ACTIVE_LOW {
        low |= RTE_ACTIVE_LOW;
    }
    if flags & (3 << 2) == LEVEL {
        low |= RTE_LEVEL;
    }
    write(redirection(pin) + 1, apic::id() << 24);
    write(redirection(pin), low);
    crate::arch::x86_64::serial::Serial::com1().enable_receive_interrupt();
    SERIAL_IRQ.store(true, Ordering::Relaxed);
    if let Some(cpu) = super::percpu::of(0) {
        cpu.requests
            .fetch_and(!super::percpu::REQ_POLL, Ordering::SeqCst);
    }
    Ok(())
}
