//! The I/O APIC (Intel 82093AA datasheet §3; ACPI MADT for where it is and how the ISA IRQs
//! are wired): COM1's receive interrupt for the hypervisor's console, and the pins dom0 maps
//! as PIRQs (DESIGN.md §11, `guest::physdev`). Every other input stays masked. Only the
//! first I/O APIC of the MADT is used; GSIs beyond it are refused.
//!
//! A device pin is programmed masked, to one of [`DEVICE_VECTORS`]; dom0's bind unmasks it.
//! Its interrupt ([`device_interrupt`]) masks the pin again and records the slot pending;
//! the trap's end hands it to dom0 as an event (`World::deliver_pirqs`), and dom0's
//! `PHYSDEVOP_eoi` unmasks it. So a device that keeps its line asserted (or an edge storm)
//! costs one interrupt per EOI dom0 makes.

use core::sync::atomic::{AtomicBool, AtomicU32, Ordering};

use super::{apic, paging, trap};
use crate::pirq::{GsiMode, SLOTS};

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
const RTE_MASKED: u32 = 1 << 16;

/// COM1's legacy IRQ.
const COM1_IRQ: u8 = 4;
/// The PS/2 keyboard's legacy IRQ.
const KEYBOARD_IRQ: u8 = 1;
/// The PIT's legacy IRQ (its GSI is the hypervisor's, though the PIT is only polled).
const PIT_IRQ: u8 = 0;

/// Vectors of dom0's device interrupts: slot `n` of the PIRQ table is vector `0xE0 + n`,
/// below the timer's, COM1's and the IPIs' priority class (0xF).
pub const DEVICE_VECTORS: core::ops::Range<u8> = 0xE0..0xE0 + SLOTS as u8;
const _: () = assert!(DEVICE_VECTORS.end <= trap::APIC_TIMER_VECTOR);

static SERIAL_IRQ: AtomicBool = AtomicBool::new(false);
/// The hypervisor owns the PS/2 keyboard (set before the routes are made).
static KEYBOARD_WANTED: AtomicBool = AtomicBool::new(false);
static KEYBOARD_ROUTED: AtomicBool = AtomicBool::new(false);
/// The keyboard's GSI once the hypervisor took it (`u32::MAX`: dom0 may have it).
static KEYBOARD_GSI: AtomicU32 = AtomicU32::new(u32::MAX);

/// The I/O APIC in use.
struct IoApic {
    /// Virtual address of its register window.
    base: u64,
    /// Its first GSI, and how many inputs it has.
    gsi_base: u32,
    entries: u32,
    /// The GSIs the hypervisor keeps: COM1's, the PIT's, and GSI 0 (the 8259's output on PCs).
    reserved: [u32; 3],
    /// MADT flags of the GSIs that ISA IRQs are routed to: `(gsi, flags)` per ISA IRQ.
    isa: [(u32, u16); 16],
    /// The boot CPU's local APIC ID: every pin is delivered there (pCPU 0's trap ends hand
    /// device interrupts to dom0).
    boot_apic: u32,
}

static IOAPIC: spin::Once<IoApic> = spin::Once::new();
/// IOREGSEL and IOWIN are a pair: one pCPU at a time.
static REGS: spin::Mutex<()> = spin::Mutex::new(());

/// The GSI each device vector's slot is programmed for (`u32::MAX`: none).
static SLOT_GSI: [AtomicU32; SLOTS] = [const { AtomicU32::new(u32::MAX) }; SLOTS];
/// Slots whose interrupt came and was not handed to dom0 yet (bit per slot).
static PENDING: AtomicU32 = AtomicU32::new(0);

impl IoApic {
    fn write(&self, reg: u32, value: u32) {
        let _held = REGS.lock();
        // SAFETY: `base` maps the I/O APIC's register window uncached (`init`); IOREGSEL
        // selects a register and IOWIN writes it, under the lock that keeps the pair whole.
        unsafe {
            core::ptr::write_volatile((self.base + IOREGSEL) as *mut u32, reg);
            core::ptr::write_volatile((self.base + IOWIN) as *mut u32, value);
        }
    }

    fn read(&self, reg: u32) -> u32 {
        let _held = REGS.lock();
        // SAFETY: as in `write`, reading.
        unsafe {
            core::ptr::write_volatile((self.base + IOREGSEL) as *mut u32, reg);
            core::ptr::read_volatile((self.base + IOWIN) as *const u32)
        }
    }

    fn pin(&self, gsi: u32) -> Option<u32> {
        gsi.checked_sub(self.gsi_base).filter(|&p| p < self.entries)
    }
}

/// Whether console input (COM1's, and the keyboard's when the hypervisor owns it) raises an
/// interrupt; else the console is polled.
pub fn serial_interrupts() -> bool {
    SERIAL_IRQ.load(Ordering::Relaxed)
        && (KEYBOARD_ROUTED.load(Ordering::Relaxed) || !KEYBOARD_WANTED.load(Ordering::Relaxed))
}

/// Says that the hypervisor owns the PS/2 keyboard: its IRQ is to be routed like COM1's and
/// its GSI refused to dom0. At boot, before [`route_com1`].
pub fn want_keyboard() {
    KEYBOARD_WANTED.store(true, Ordering::Relaxed);
}

/// Finds and maps the first I/O APIC of `madt`, masks every input, and notes how the ISA
/// IRQs are wired. Once, at boot.
fn init(madt: &[u8]) -> Result<&'static IoApic, &'static str> {
    if let Some(io) = IOAPIC.get() {
        return Ok(io);
    }
    let (phys, gsi_base) = crate::acpi::madt_ioapic(madt).ok_or("no I/O APIC in the MADT")?;
    let base = paging::map_mmio(u64::from(phys), 0x20).map_err(|_| "cannot map the I/O APIC")?;
    let mut io = IoApic {
        base,
        gsi_base,
        entries: 0,
        reserved: [0; 3],
        isa: [(0, 0); 16],
        boot_apic: apic::id(),
    };
    // IOAPICVER (register 1), bits 16–23: the highest redirection entry.
    io.entries = ((io.read(1) >> 16) & 0xFF) + 1;
    for irq in 0..16u8 {
        io.isa[usize::from(irq)] = crate::acpi::isa_irq(madt, irq);
    }
    io.reserved = [
        io.isa[usize::from(COM1_IRQ)].0,
        io.isa[usize::from(PIT_IRQ)].0,
        gsi_base,
    ];
    for pin in 0..io.entries {
        io.write(redirection(pin), RTE_MASKED);
    }
    Ok(IOAPIC.call_once(|| io))
}

/// Routes ISA IRQ `irq` (through the MADT's overrides: its GSI, polarity and trigger) to this
/// CPU's local APIC at `vector`; returns the GSI. `beyond`: the error when the GSI's pin is
/// not in the I/O APIC's table.
fn route_isa(madt: &[u8], irq: u8, vector: u8, beyond: &'static str) -> Result<u32, &'static str> {
    let io = init(madt)?;
    let (gsi, flags) = io.isa[usize::from(irq)];
    let pin = io.pin(gsi).ok_or(beyond)?;
    let mut low = u32::from(vector);
    if flags & 3 == ACTIVE_LOW {
        low |= RTE_ACTIVE_LOW;
    }
    if flags & (3 << 2) == LEVEL {
        low |= RTE_LEVEL;
    }
    io.write(redirection(pin) + 1, apic::id() << 24);
    io.write(redirection(pin), low);
    Ok(gsi)
}

/// Routes COM1's IRQ through the I/O APIC described by `madt` to this CPU's local APIC at
/// [`trap::COM1_VECTOR`], and turns on the UART's receive interrupt. On any trouble the
/// console stays polled.
pub fn route_com1(madt: &[u8]) -> Result<(), &'static str> {
    route_isa(
        madt,
        COM1_IRQ,
        trap::COM1_VECTOR,
        "COM1's pin is beyond the I/O APIC's redirection table",
    )?;
    crate::arch::x86_64::serial::Serial::com1().enable_receive_interrupt();
    SERIAL_IRQ.store(true, Ordering::Relaxed);
    if let Some(cpu) = super::percpu::of(0) {
        cpu.requests
            .fetch_and(!super::percpu::REQ_POLL, Ordering::SeqCst);
    }
    Ok(())
}

/// Routes the PS/2 keyboard's IRQ like COM1's ([`route_com1`]) to [`trap::KEYBOARD_VECTOR`],
/// and keeps its GSI from dom0. On trouble the console is polled.
pub fn route_keyboard(madt: &[u8]) -> Result<(), &'static str> {
    let routed = route_isa(
        madt,
        KEYBOARD_IRQ,
        trap::KEYBOARD_VECTOR,
        "the keyboard's pin is beyond the I/O APIC's redirection table",
    )
    .map(|gsi| KEYBOARD_GSI.store(gsi, Ordering::SeqCst));
    match routed {
        Ok(()) => KEYBOARD_ROUTED.store(true, Ordering::Relaxed),
        Err(_) => {
            // Polled: pCPU 0 looks at the console at every trap again.
            if let Some(cpu) = super::percpu::of(0) {
                cpu.requests
                    .fetch_or(super::percpu::REQ_POLL, Ordering::SeqCst);
            }
        }
    }
    routed
}

/// GSIs `0..nr_gsis()` may exist (those of the I/O APIC in use and below); 0 without one.
pub fn nr_gsis() -> u32 {
    IOAPIC.get().map_or(0, |io| io.gsi_base + io.entries)
}

/// Whether the hypervisor keeps `gsi` (or no I/O APIC has it): dom0 may not map it.
pub fn hypervisor_gsi(gsi: u32) -> bool {
    IOAPIC
        .get()
        .is_none_or(|io| io.reserved.contains(&gsi) || io.pin(gsi).is_none())
        || gsi == KEYBOARD_GSI.load(Ordering::SeqCst)
}

/// How `gsi` is wired when dom0 did not say (`PHYSDEVOP_setup_gsi`): as the MADT routes an
/// ISA IRQ to it (an override's flags, else ISA's edge and active high), else as PCI
/// interrupts are (level, active low: PCI Local Bus 3.0 §2.2.6).
pub fn default_mode(gsi: u32) -> GsiMode {
    let isa = IOAPIC
        .get()
        .and_then(|io| io.isa.iter().find(|&&(g, _)| g == gsi).copied());
    match isa {
        Some((_, flags)) => GsiMode {
            level: flags & (3 << 2) == LEVEL,
            active_low: flags & 3 == ACTIVE_LOW,
        },
        None => GsiMode {
            level: true,
            active_low: true,
        },
    }
}

/// Programs `gsi` for PIRQ slot `slot` (vector `0xE0 + slot`) with `mode`, masked, to the
/// boot CPU's local APIC. `false` if there is no such pin or slot.
pub fn program(gsi: u32, slot: usize, mode: GsiMode) -> bool {
    let (Some(io), Some(gsi_slot)) = (IOAPIC.get(), SLOT_GSI.get(slot)) else {
        return false;
    };
    let Some(pin) = io.pin(gsi) else {
        return false;
    };
    let mut low = (u32::from(DEVICE_VECTORS.start) + slot as u32) | RTE_MASKED;
    if mode.level {
        low |= RTE_LEVEL;
    }
    if mode.active_low {
        low |= RTE_ACTIVE_LOW;
    }
    gsi_slot.store(gsi, Ordering::SeqCst);
    PENDING.fetch_and(!(1 << slot), Ordering::SeqCst);
    io.write(redirection(pin), low);
    io.write(redirection(pin) + 1, io.boot_apic << 24);
    true
}

/// Masks (`true`) or unmasks `gsi`'s pin, keeping the rest of its entry.
pub fn set_masked(gsi: u32, masked: bool) {
    let Some(io) = IOAPIC.get() else { return };
    let Some(pin) = io.pin(gsi) else { return };
    let low = io.read(redirection(pin));
    let new = if masked {
        low | RTE_MASKED
    } else {
        low & !RTE_MASKED
    };
    if new != low {
        io.write(redirection(pin), new);
    }
}

/// Forgets slot `slot` (its PIRQ was unmapped): its pin is masked, a pending interrupt of it
/// dropped.
pub fn release(slot: usize, gsi: u32) {
    set_masked(gsi, true);
    if let Some(s) = SLOT_GSI.get(slot) {
        s.store(u32::MAX, Ordering::SeqCst);
    }
    PENDING.fetch_and(!(1 << slot), Ordering::SeqCst);
}

/// A device interrupt on `vector` (one of [`DEVICE_VECTORS`]; the local APIC's EOI is the
/// caller's): masks its pin and records its slot pending. Interrupts off.
pub fn device_interrupt(vector: u8) {
    let slot = usize::from(vector.wrapping_sub(DEVICE_VECTORS.start));
    let Some(gsi) = SLOT_GSI.get(slot).map(|g| g.load(Ordering::SeqCst)) else {
        return;
    };
    if gsi != u32::MAX {
        set_masked(gsi, true);
        PENDING.fetch_or(1 << slot, Ordering::SeqCst);
    }
}

/// The slots whose interrupts came since the last call (bit per slot).
pub fn take_pending() -> u32 {
    if PENDING.load(Ordering::Relaxed) == 0 {
        return 0;
    }
    PENDING.swap(0, Ordering::SeqCst)
}
