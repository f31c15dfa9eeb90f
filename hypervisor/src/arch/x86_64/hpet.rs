//! The HPET's main counter, used only to time an interval for calibration (IA-PC HPET
//! specification 1.0a §2.3). No HPET timer is programmed and no interrupt is involved.
//! Where it is: the ACPI `HPET` table (`xenia_core::acpi::hpet_base`).

use core::time::Duration;

use xenia_core::calibrate;

use super::paging;

/// General Capabilities and ID register (§2.3.4): bit 13 COUNT_SIZE_CAP (64-bit counter),
/// bits 63:32 the tick period in femtoseconds.
const REG_CAPABILITIES: u64 = 0x000;
/// General Configuration register (§2.3.5): bit 0 ENABLE_CNF runs the main counter.
const REG_CONFIG: u64 = 0x010;
/// Main Counter Value register (§2.3.7).
const REG_COUNTER: u64 = 0x0F0;
const ENABLE_CNF: u64 = 1 << 0;
const COUNT_SIZE_64: u64 = 1 << 13;
/// The register block's size (§2.3.1: 1 KiB).
const REGISTER_BLOCK: u64 = 1024;
/// How long a calibration interval lasts.
const INTERVAL: Duration = Duration::from_millis(10);
/// Most counter reads while waiting for the interval to end: an HPET that does not count
/// must not hang the boot (a read takes well under a microsecond; 10 ms is a few thousand).
const MAX_POLLS: u64 = 50_000_000;

/// An HPET whose registers are mapped and whose period is valid.
pub struct Hpet {
    regs: u64,
    period_fs: u64,
    wide: bool,
}

impl Hpet {
    /// Maps the HPET at physical `base` and reads its period.
    pub fn open(base: u64) -> Result<Hpet, &'static str> {
        let regs = paging::map_mmio(base, REGISTER_BLOCK).map_err(|_| "cannot map the HPET")?;
        let mut hpet = Hpet {
            regs,
            period_fs: 0,
            wide: false,
        };
        let caps = hpet.read(REG_CAPABILITIES);
        hpet.period_fs = calibrate::hpet_period_fs(caps)
            .ok_or("the HPET reports no valid tick period (is it there?)")?;
        hpet.wide = caps & COUNT_SIZE_64 != 0;
        Ok(hpet)
    }

    /// The counter's frequency (Hz).
    pub fn hz(&self) -> u64 {
        1_000_000_000_000_000 / self.period_fs.max(1)
    }

    fn read(&self, reg: u64) -> u64 {
        // SAFETY: `regs` maps the HPET's 1 KiB register block uncached (`open`); `reg` is one
        // of the architectural 64-bit register offsets above, 8-byte aligned inside it.
        unsafe { core::ptr::read_volatile((self.regs + reg) as *const u64) }
    }

    fn write(&self, reg: u64, value: u64) {
        // SAFETY: as for `read`; only the General Configuration register is written, to run
        // or stop the main counter, which nothing else uses.
        unsafe { core::ptr::write_volatile((self.regs + reg) as *mut u64, value) }
    }

    fn counter(&self) -> u64 {
        let c = self.read(REG_COUNTER);
        if self.wide { c } else { c & 0xFFFF_FFFF }
    }

    /// Runs `start` and measures a 10 ms interval that begins right after it with the main
    /// counter (started for the purpose if firmware left it stopped, and stopped again
    /// after). Returns the interval's length as the HPET counted it.
    pub fn time_interval(&self, start: impl FnOnce()) -> Result<Duration, &'static str> {
        let config = self.read(REG_CONFIG);
        if config & ENABLE_CNF == 0 {
            self.write(REG_CONFIG, config | ENABLE_CNF);
        }
        let ticks = calibrate::hpet_ticks_for_ns(INTERVAL.as_nanos() as u64, self.period_fs);
        let mask = if self.wide { u64::MAX } else { 0xFFFF_FFFF };
        let first = self.counter();
        start();
        let mut elapsed = 0;
        let mut polls = 0u64;
        while elapsed < ticks {
            polls += 1;
            if polls > MAX_POLLS {
                self.write(REG_CONFIG, config);
                return Err("the HPET's main counter did not count");
            }
            elapsed = self.counter().wrapping_sub(first) & mask;
            core::hint::spin_loop();
        }
        if config & ENABLE_CNF == 0 {
            self.write(REG_CONFIG, config);
        }
        Ok(Duration::from_nanos(calibrate::hpet_ns(
            elapsed,
            self.period_fs,
        )))
    }
}
