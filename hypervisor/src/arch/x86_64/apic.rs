//! The local APIC and its timer (Intel SDM Vol. 3A ch. 11).
//!
//! xAPIC registers are memory-mapped (uncached, in the MMIO slot); if firmware left the
//! APIC in x2APIC mode, the same registers are MSRs 0x800 + offset/16 (§11.12.1).
//! x2APIC and TSC-deadline are optional: QEMU's TCG CPUs have neither.

use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use core::time::Duration;

use x86_64::registers::model_specific::Msr;
use xenia_core::calibrate::{self, CpuidClock};

use super::{paging, pit, trap};

const IA32_APIC_BASE: u32 = 0x1B;
const APIC_BASE_ENABLE: u64 = 1 << 11;
const APIC_BASE_X2APIC: u64 = 1 << 10;

const REG_EOI: u32 = 0xB0;
const REG_SPURIOUS: u32 = 0xF0;
const REG_LVT_TIMER: u32 = 0x320;
const REG_TIMER_INITIAL: u32 = 0x380;
const REG_TIMER_CURRENT: u32 = 0x390;
const REG_TIMER_DIVIDE: u32 = 0x3E0;

const SPURIOUS_ENABLE: u32 = 1 << 8;
const LVT_MASKED: u32 = 1 << 16;
/// Divide configuration 0b0011: divide by 16 (§11.5.4, Figure 11-10).
const DIVIDE_BY_16: u32 = 0b0011;
const TIMER_DIVISOR: u64 = 16;

static MMIO: AtomicU64 = AtomicU64::new(0);
static X2APIC: AtomicBool = AtomicBool::new(false);
/// Timer ticks per second after the divider.
static TIMER_HZ: AtomicU64 = AtomicU64::new(0);

fn read(reg: u32) -> u32 {
    if X2APIC.load(Ordering::Relaxed) {
        // SAFETY: reading an x2APIC register MSR has no side effect on memory.
        unsafe { Msr::new(0x800 + (reg >> 4)).read() as u32 }
    } else {
        let base = MMIO.load(Ordering::Relaxed);
        // SAFETY: `base` maps the APIC's 4 KiB register page uncached; `reg` is one of
        // the architectural register offsets above, 16-byte aligned inside that page.
        unsafe { core::ptr::read_volatile((base + u64::from(reg)) as *const u32) }
    }
}

fn write(reg: u32, value: u32) {
    if X2APIC.load(Ordering::Relaxed) {
        // SAFETY: as for `read`; the registers written here only affect this CPU's APIC.
        unsafe { Msr::new(0x800 + (reg >> 4)).write(u64::from(value)) }
    } else {
        let base = MMIO.load(Ordering::Relaxed);
        // SAFETY: as for `read`.
        unsafe { core::ptr::write_volatile((base + u64::from(reg)) as *mut u32, value) }
    }
}

/// This CPU's local APIC ID (the xAPIC ID register keeps it in bits 24–31).
pub fn id() -> u32 {
    const REG_ID: u32 = 0x20;
    let raw = read(REG_ID);
    if X2APIC.load(Ordering::Relaxed) {
        raw
    } else {
        raw >> 24
    }
}

pub fn end_of_interrupt() {
    if MMIO.load(Ordering::Relaxed) != 0 || X2APIC.load(Ordering::Relaxed) {
        write(REG_EOI, 0);
    }
}

/// The timer fired (in the hypervisor or in a guest): it is armed for nothing now, so the
/// next plan programs it whatever deadline it had (`guest::program_timer` leaves an armed
/// timer alone when the deadline is unchanged; one that fired a little early, by the
/// rounding of nanoseconds to ticks, must not be taken for armed).
pub fn timer_fired() {
    super::percpu::this().programmed.store(0, Ordering::SeqCst);
}

pub(super) fn timer_interrupt() {
    super::percpu::this().ticked.store(true, Ordering::SeqCst);
    timer_fired();
    end_of_interrupt();
}

/// Enables this CPU's local APIC, calibrates its timer and the TSC from the best clock
/// there is (`xenia_core::calibrate`: CPUID 15h/16h, then the HPET at `hpet` from the ACPI
/// tables, then the PIT) and checks that a timer interrupt arrives. Logs one line naming
/// the source and the frequencies. Returns the TSC frequency in Hz.
pub fn init(clock: Option<CpuidClock>, hpet: Option<u64>) -> Result<u64, &'static str> {
    // SAFETY: IA32_APIC_BASE exists on every CPU with an APIC (checked by the caller).
    let base_msr = unsafe { Msr::new(IA32_APIC_BASE).read() };
    if base_msr & APIC_BASE_X2APIC != 0 {
        X2APIC.store(true, Ordering::Relaxed);
    } else {
        let phys = base_msr & 0x000F_FFFF_FFFF_F000;
        let virt = paging::map_mmio(phys, 4096).map_err(|_| "cannot map the local APIC")?;
        MMIO.store(virt, Ordering::Relaxed);
        if base_msr & APIC_BASE_ENABLE == 0 {
            // SAFETY: setting the global enable bit keeps the base address unchanged.
            unsafe { Msr::new(IA32_APIC_BASE).write(base_msr | APIC_BASE_ENABLE) };
        }
    }
    write(
        REG_SPURIOUS,
        SPURIOUS_ENABLE | u32::from(trap::SPURIOUS_VECTOR),
    );
    write(REG_TIMER_DIVIDE, DIVIDE_BY_16);
    write(
        REG_LVT_TIMER,
        LVT_MASKED | u32::from(trap::APIC_TIMER_VECTOR),
    );

    let (hz, tsc_hz, source) = calibrate(clock, hpet)?;
    TIMER_HZ.store(hz, Ordering::Relaxed);
    super::percpu::this().apic_id.store(id(), Ordering::SeqCst);
    log::info!(
        target: "apic",
        "apic: timer {} kHz, TSC {} MHz (calibrated with {source}), {} mode",
        hz / 1000,
        tsc_hz / 1_000_000,
        if X2APIC.load(Ordering::Relaxed) { "x2APIC" } else { "xAPIC" }
    );
    check_interrupt(hz)?;
    Ok(tsc_hz)
}

/// The source named in the log line: static text, or the HPET with its frequency.
enum Source {
    Named(&'static str),
    Hpet(u64),
}

impl core::fmt::Display for Source {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Source::Named(s) => f.write_str(s),
            Source::Hpet(hz) => write!(f, "the HPET at {} kHz", hz / 1000),
        }
    }
}

/// (APIC timer Hz, TSC Hz, source), from the first source that works, in the order of trust
/// of `xenia_core::calibrate`. A source that is there but fails is logged and the next one
/// tried; with none, the error names them all.
fn calibrate(
    clock: Option<CpuidClock>,
    hpet: Option<u64>,
) -> Result<(u64, u64, Source), &'static str> {
    if let Some(c) = clock {
        if let Some(crystal) = c.crystal_hz {
            return Ok((crystal / TIMER_DIVISOR, c.tsc_hz, Source::Named(c.source)));
        }
        // The TSC's rate is known; the APIC timer's is counted over a TSC-timed interval.
        match count_during(|start| tsc_interval(c.tsc_hz, start)) {
            Ok((apic, _)) => return Ok((apic, c.tsc_hz, Source::Named(c.source))),
            Err(why) => log::warn!(target: "apic", "apic: calibration with {}: {why}", c.source),
        }
    }
    match hpet.map(super::hpet::Hpet::open) {
        Some(Ok(h)) => match count_during(|start| h.time_interval(start)) {
            Ok((apic, tsc)) => return Ok((apic, tsc, Source::Hpet(h.hz()))),
            Err(why) => {
                log::warn!(target: "apic", "apic: calibration with the HPET: {why}; trying the PIT")
            }
        },
        Some(Err(why)) => log::warn!(target: "apic", "apic: {why}; trying the PIT"),
        None => {
            log::info!(target: "apic", "apic: no HPET in the ACPI tables; calibrating with the PIT")
        }
    }
    match count_during(|start| pit::time_interval(start)) {
        Ok((apic, tsc)) => Ok((apic, tsc, Source::Named("the PIT"))),
        Err(why) => {
            log::error!(
                target: "apic",
                "apic: calibration with the PIT: {why}; CPUID names no TSC frequency (leaves \
                 0x15/0x16) and there is no usable HPET: no clock to calibrate the timers with"
            );
            Err("no clock to calibrate the APIC timer and the TSC with")
        }
    }
}

/// Times a 10 ms interval that begins right after `start` with the TSC running at `tsc_hz`.
fn tsc_interval(tsc_hz: u64, start: impl FnOnce()) -> Result<Duration, &'static str> {
    let cycles = tsc_hz / 100;
    let first = crate::time::rdtsc();
    start();
    loop {
        let now = crate::time::rdtsc().wrapping_sub(first);
        if now >= cycles {
            let ns = u128::from(now) * 1_000_000_000 / u128::from(tsc_hz.max(1));
            return Ok(Duration::from_nanos(u64::try_from(ns).unwrap_or(u64::MAX)));
        }
        core::hint::spin_loop();
    }
}

/// Counts APIC timer ticks and TSC cycles during an interval that `time` measures, started
/// by the closure it is given. Returns (APIC timer Hz, TSC Hz).
fn count_during(
    time: impl FnOnce(&mut dyn FnMut()) -> Result<Duration, &'static str>,
) -> Result<(u64, u64), &'static str> {
    let mut tsc_start = 0;
    let elapsed = time(&mut || {
        write(REG_TIMER_INITIAL, u32::MAX);
        tsc_start = crate::time::rdtsc();
    })?;
    let remaining = read(REG_TIMER_CURRENT);
    let tsc_cycles = crate::time::rdtsc() - tsc_start;
    write(REG_TIMER_INITIAL, 0);
    let ticks = u64::from(u32::MAX - remaining);
    if ticks == 0 {
        return Err("the APIC timer did not count");
    }
    let ns = elapsed.as_nanos().max(1) as u64;
    let (apic_hz, tsc_hz) = (
        calibrate::rate_hz(ticks, ns),
        calibrate::rate_hz(tsc_cycles, ns),
    );
    calibrate::plausible(apic_hz, tsc_hz)?;
    Ok((apic_hz, tsc_hz))
}

/// Whether the local APICs run in x2APIC mode (32-bit IDs).
pub fn x2apic_mode() -> bool {
    X2APIC.load(Ordering::Relaxed)
}

/// Turns on an application processor's local APIC as the boot CPU's is (same mode, software
/// enabled, spurious vector, timer divider, timer masked). The timer's frequency is the
/// boot CPU's calibration: every local APIC timer of a machine runs from the same clock
/// (the bus or core crystal clock, SDM Vol. 3A §11.5.4).
pub fn init_ap() {
    // SAFETY: IA32_APIC_BASE exists (the boot CPU checked for an APIC); only the enable
    // bits change, the base address stays the one the boot CPU mapped.
    unsafe {
        let base = Msr::new(IA32_APIC_BASE).read();
        let mut want = base | APIC_BASE_ENABLE;
        if X2APIC.load(Ordering::Relaxed) {
            // xAPIC→x2APIC goes through enabled xAPIC mode (SDM Vol. 3A §11.12.5).
            if base & APIC_BASE_ENABLE == 0 {
                Msr::new(IA32_APIC_BASE).write(want);
            }
            want |= APIC_BASE_X2APIC;
        }
        if want != base {
            Msr::new(IA32_APIC_BASE).write(want);
        }
    }
    write(
        REG_SPURIOUS,
        SPURIOUS_ENABLE | u32::from(trap::SPURIOUS_VECTOR),
    );
    write(REG_TIMER_DIVIDE, DIVIDE_BY_16);
    write(
        REG_LVT_TIMER,
        LVT_MASKED | u32::from(trap::APIC_TIMER_VECTOR),
    );
    super::percpu::this().apic_id.store(id(), Ordering::SeqCst);
}

// The interrupt command register (SDM Vol. 3A §11.6.1, Figure 11-12).
const REG_ICR_LOW: u32 = 0x300;
const REG_ICR_HIGH: u32 = 0x310;
/// x2APIC: the whole ICR is one 64-bit MSR, destination in bits 32–63 (§11.12.9).
const MSR_X2APIC_ICR: u32 = 0x830;
const ICR_DELIVERY_INIT: u32 = 0b101 << 8;
const ICR_DELIVERY_STARTUP: u32 = 0b110 << 8;
const ICR_LEVEL_ASSERT: u32 = 1 << 14;
/// Delivery status: set while the IPI is still being sent (xAPIC only; §11.6.1).
const ICR_SEND_PENDING: u32 = 1 << 12;
/// How long the previous IPI may stay pending before we give up on the ICR.
const ICR_IDLE_BOUND_US: u64 = 10_000;

/// Sends an INIT IPI (level assert) to the processor with APIC ID `apic_id`.
pub fn send_init(apic_id: u32) -> Result<(), &'static str> {
    send_ipi(apic_id, ICR_DELIVERY_INIT | ICR_LEVEL_ASSERT)
}

/// Sends a start-up IPI: the processor `apic_id` starts in real mode at `vector << 12`.
pub fn send_startup(apic_id: u32, vector: u8) -> Result<(), &'static str> {
    send_ipi(
        apic_id,
        ICR_DELIVERY_STARTUP | ICR_LEVEL_ASSERT | u32::from(vector),
    )
}

/// Sends interrupt `vector` (fixed delivery, physical destination) to the processor with
/// APIC ID `apic_id`.
pub fn send_fixed(apic_id: u32, vector: u8) -> Result<(), &'static str> {
    send_ipi(apic_id, ICR_LEVEL_ASSERT | u32::from(vector))
}

/// Writes the ICR (destination first, the low word last: writing it sends) and waits,
/// bounded, until the local APIC has sent it.
fn send_ipi(apic_id: u32, low: u32) -> Result<(), &'static str> {
    if X2APIC.load(Ordering::Relaxed) {
        // SAFETY: an INIT or start-up IPI to one processor, which is what the caller wants;
        // the x2APIC ICR has no delivery-status bit to wait on (§11.12.9).
        unsafe { Msr::new(MSR_X2APIC_ICR).write((u64::from(apic_id) << 32) | u64::from(low)) };
        return Ok(());
    }
    wait_icr_idle()?;
    write(REG_ICR_HIGH, apic_id << 24);
    write(REG_ICR_LOW, low);
    wait_icr_idle()
}

fn wait_icr_idle() -> Result<(), &'static str> {
    let done = crate::arch::x86_64::smp::wait_us(ICR_IDLE_BOUND_US, || {
        read(REG_ICR_LOW) & ICR_SEND_PENDING == 0
    });
    if done {
        Ok(())
    } else {
        Err("the local APIC did not send the IPI within 10 ms")
    }
}

/// Arms the one-shot timer to fire `ns` from now (at least one tick, at most what the
/// 32-bit counter holds), replacing any earlier setting.
pub fn arm_oneshot(ns: u64) {
    let hz = TIMER_HZ.load(Ordering::Relaxed);
    let ticks = (u128::from(ns) * u128::from(hz) / 1_000_000_000).clamp(1, u128::from(u32::MAX));
    write(REG_LVT_TIMER, u32::from(trap::APIC_TIMER_VECTOR));
    write(REG_TIMER_INITIAL, ticks as u32);
}

/// Stops the timer.
pub fn disarm() {
    write(REG_TIMER_INITIAL, 0);
}

/// Whether the timer fired since the last call (and forgets it).
pub fn take_tick() -> bool {
    super::percpu::this().ticked.swap(false, Ordering::SeqCst)
}

/// Arms a 1 ms one-shot and waits, bounded, for its interrupt.
fn check_interrupt(hz: u64) -> Result<(), &'static str> {
    super::percpu::this().ticked.store(false, Ordering::SeqCst);
    write(REG_LVT_TIMER, u32::from(trap::APIC_TIMER_VECTOR)); // one-shot, unmasked
    write(
        REG_TIMER_INITIAL,
        (hz / 1000).clamp(1, u64::from(u32::MAX)) as u32,
    );
    // Each `hlt` ends at the next interrupt; the PIT is masked, so only the APIC timer
    // (or a stray NMI) wakes us. Bound the wait by a busy-poll count as well.
    for _ in 0..100_000 {
        if super::percpu::this().ticked.load(Ordering::SeqCst) {
            break;
        }
        x86_64::instructions::interrupts::enable_and_hlt();
        x86_64::instructions::interrupts::disable();
    }
    write(
        REG_LVT_TIMER,
        LVT_MASKED | u32::from(trap::APIC_TIMER_VECTOR),
    );
    if super::percpu::this().ticked.load(Ordering::SeqCst) {
        log::debug!(target: "apic", "timer interrupt delivered");
        Ok(())
    } else {
        Err("no APIC timer interrupt arrived")
    }
}
