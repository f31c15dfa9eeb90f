//! Where the TSC and local APIC timer frequencies come from (DESIGN.md §5, §13). Pure and
//! host-tested; `arch::x86_64::apic` reads CPUID and the clocks and does the timing.
//!
//! The sources, in the order they are trusted (as Linux's `native_calibrate_tsc` and
//! Xen's `init_tsc`/`calibrate_APIC_clock` order them):
//! 1. CPUID leaf 0x15: the TSC / core crystal clock ratio, with the crystal's frequency
//!    from the leaf itself, else from a table of known crystals, else derived from leaf
//!    0x16's base frequency (Intel SDM Vol. 3B §18.7.3). Exact: no measurement at all.
//! 2. CPUID leaf 0x16: the processor base frequency in MHz, which is the TSC's rate on
//!    processors that report it (SDM Vol. 2A, CPUID leaf 16H).
//! 3. The HPET's main counter, whose period the HPET reports in femtoseconds (IA-PC HPET
//!    specification 1.0a §2.3.4), found through the ACPI `HPET` table.
//! 4. The 8254 PIT's channel 2 at 1.193182 MHz.
//!
//! With none of them the boot stops with a line that says so: a guest cannot be timed
//! without a known clock.

/// A clock named by CPUID.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CpuidClock {
    /// TSC ticks a second.
    pub tsc_hz: u64,
    /// The core crystal clock, which drives the local APIC timer on processors that report
    /// leaf 0x15 (SDM Vol. 3A §11.5.4), when known.
    pub crystal_hz: Option<u64>,
    /// Which leaves gave it, for the log line.
    pub source: &'static str,
}

/// Leaf 0x15 as (EAX denominator, EBX numerator, ECX crystal Hz); leaf 0x16 EAX (base MHz).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CpuidLeaves {
    /// Leaf 0x15, when the CPU has it.
    pub leaf15: Option<(u32, u32, u32)>,
    /// Leaf 0x16 EAX bits 15:0, when the CPU has it.
    pub base_mhz: Option<u32>,
    /// Family and model (display values, SDM Vol. 2A Figure 3-6) of an Intel CPU, for the
    /// table of known crystals; `None` on other vendors.
    pub intel_model: Option<(u32, u32)>,
}

/// Crystal frequencies of Intel processors whose leaf 0x15 reports a ratio but no crystal
/// (SDM Vol. 3B Table 18-85, "Nominal Core Crystal Clock Frequency"; Linux's
/// `native_calibrate_tsc` has the same list).
fn known_crystal_hz(family: u32, model: u32) -> Option<u64> {
    if family != 6 {
        return None;
    }
    match model {
        // Skylake and Kaby Lake client: 24 MHz.
        0x4E | 0x5E | 0x8E | 0x9E => Some(24_000_000),
        // Goldmont-D (Denverton): 25 MHz.
        0x5F => Some(25_000_000),
        // Goldmont (Apollo Lake): 19.2 MHz.
        0x5C => Some(19_200_000),
        _ => None,
    }
}

/// The clock CPUID names, if it names one (sources 1 and 2 of the module docs).
pub fn cpuid_clock(l: &CpuidLeaves) -> Option<CpuidClock> {
    let base_hz = l
        .base_mhz
        .filter(|&m| m != 0)
        .map(|m| u64::from(m) * 1_000_000);
    if let Some((den, num, crystal)) = l.leaf15
        && den != 0
        && num != 0
    {
        let (den, num) = (u64::from(den), u64::from(num));
        let (crystal_hz, source) = if crystal != 0 {
            (Some(u64::from(crystal)), "CPUID leaf 0x15")
        } else if let Some(hz) = l.intel_model.and_then(|(f, m)| known_crystal_hz(f, m)) {
            (Some(hz), "CPUID leaf 0x15 and the model's known crystal")
        } else if let Some(base) = base_hz {
            // TSC = base frequency, so crystal = base * den / num.
            (Some(base * den / num), "CPUID leaves 0x15 and 0x16")
        } else {
            (None, "")
        };
        if let Some(hz) = crystal_hz.filter(|&hz| hz != 0) {
            return Some(CpuidClock {
                tsc_hz: hz * num / den,
                crystal_hz: Some(hz),
                source,
            });
        }
    }
    base_hz.map(|tsc_hz| CpuidClock {
        tsc_hz,
        crystal_hz: None,
        source: "CPUID leaf 0x16",
    })
}

/// The most femtoseconds an HPET tick may last (100 ns; HPET spec 1.0a §2.3.4,
/// COUNTER_CLK_PERIOD "must be less than or equal to 0x05F5E100").
pub const HPET_MAX_PERIOD_FS: u64 = 0x05F5_E100;

/// The tick period (femtoseconds) from the HPET's General Capabilities and ID register
/// (offset 0, bits 63:32), or `None` when it is zero or above the specification's maximum
/// (a missing or broken HPET reads all ones or zeros).
pub fn hpet_period_fs(capabilities: u64) -> Option<u64> {
    let period = capabilities >> 32;
    (period != 0 && period <= HPET_MAX_PERIOD_FS).then_some(period)
}

/// HPET ticks in `ns` nanoseconds at `period_fs` (at least 1).
pub fn hpet_ticks_for_ns(ns: u64, period_fs: u64) -> u64 {
    (u128::from(ns) * 1_000_000 / u128::from(period_fs.max(1))).max(1) as u64
}

/// Nanoseconds `ticks` HPET ticks of `period_fs` last.
pub fn hpet_ns(ticks: u64, period_fs: u64) -> u64 {
    (u128::from(ticks) * u128::from(period_fs) / 1_000_000) as u64
}

/// A rate: `count` events in `ns` nanoseconds, in Hz (0 when `ns` is 0).
pub fn rate_hz(count: u64, ns: u64) -> u64 {
    if ns == 0 {
        return 0;
    }
    let hz = u128::from(count) * 1_000_000_000 / u128::from(ns);
    u64::try_from(hz).unwrap_or(u64::MAX)
}

/// The slowest TSC accepted from a measurement: no x86-64 processor runs its TSC below
/// 200 MHz, so a lower result means the reference clock misbehaved.
pub const MIN_TSC_HZ: u64 = 200_000_000;
/// The fastest accepted.
pub const MAX_TSC_HZ: u64 = 20_000_000_000;
/// The slowest local APIC timer accepted after the divide-by-16: the slowest input clock
/// in use is a 19.2 MHz crystal (1.2 MHz after the divider).
pub const MIN_APIC_TIMER_HZ: u64 = 500_000;

/// Whether measured rates are believable (a clock that answers but does not run at its
/// stated rate, like a missing PIT's port reading all ones, gives absurd ones).
pub fn plausible(apic_timer_hz: u64, tsc_hz: u64) -> Result<(), &'static str> {
    if !(MIN_TSC_HZ..=MAX_TSC_HZ).contains(&tsc_hz) {
        return Err("the TSC rate measured is impossible (below 200 MHz or above 20 GHz)");
    }
    if apic_timer_hz < MIN_APIC_TIMER_HZ {
        return Err("the APIC timer rate measured is impossible (below 500 kHz)");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leaf_15_with_crystal() {
        // A 24 MHz crystal and a TSC/crystal ratio of 176/2: 2.112 GHz.
        let l = CpuidLeaves {
            leaf15: Some((2, 176, 24_000_000)),
            base_mhz: Some(2100),
            intel_model: Some((6, 0x8E)),
        };
        let c = cpuid_clock(&l).unwrap();
        assert_eq!(c.tsc_hz, 2_112_000_000);
        assert_eq!(c.crystal_hz, Some(24_000_000));
        assert_eq!(c.source, "CPUID leaf 0x15");
    }

    #[test]
    fn leaf_15_without_crystal() {
        // Kaby Lake reports the ratio only: the known 24 MHz crystal.
        let mut l = CpuidLeaves {
            leaf15: Some((2, 300, 0)),
            base_mhz: Some(3600),
            intel_model: Some((6, 0x9E)),
        };
        let c = cpuid_clock(&l).unwrap();
        assert_eq!((c.tsc_hz, c.crystal_hz), (3_600_000_000, Some(24_000_000)));
        assert!(c.source.contains("known crystal"));
        // An unknown model: the crystal derived from leaf 0x16 (3.6 GHz * 2 / 300 = 24 MHz).
        l.intel_model = Some((6, 0x01));
        let c = cpuid_clock(&l).unwrap();
        assert_eq!((c.tsc_hz, c.crystal_hz), (3_600_000_000, Some(24_000_000)));
        assert_eq!(c.source, "CPUID leaves 0x15 and 0x16");
        // Neither: leaf 0x15 alone cannot name a frequency, and there is no leaf 0x16.
        l.base_mhz = None;
        assert_eq!(cpuid_clock(&l), None);
    }

    #[test]
    fn leaf_16_alone_and_nothing() {
        let l = CpuidLeaves {
            leaf15: Some((0, 0, 0)),
            base_mhz: Some(2900),
            intel_model: None,
        };
        let c = cpuid_clock(&l).unwrap();
        assert_eq!((c.tsc_hz, c.crystal_hz), (2_900_000_000, None));
        assert_eq!(c.source, "CPUID leaf 0x16");
        // QEMU's TCG CPUs have neither leaf; zeros mean "not reported".
        assert_eq!(cpuid_clock(&CpuidLeaves::default()), None);
        let zeros = CpuidLeaves {
            leaf15: Some((1, 0, 0)),
            base_mhz: Some(0),
            intel_model: Some((6, 0x4E)),
        };
        assert_eq!(cpuid_clock(&zeros), None);
        // A model from another family is not in the table.
        assert_eq!(known_crystal_hz(15, 0x4E), None);
    }

    #[test]
    fn hpet_period() {
        // QEMU's HPET: 10 ns (10^7 fs), 100 MHz.
        let caps = (10_000_000u64 << 32) | 0x8086_a201;
        assert_eq!(hpet_period_fs(caps), Some(10_000_000));
        assert_eq!(hpet_ticks_for_ns(10_000_000, 10_000_000), 1_000_000);
        assert_eq!(hpet_ns(1_000_000, 10_000_000), 10_000_000);
        // An Intel chipset's 14.318 MHz HPET: 69841279 fs.
        assert_eq!(hpet_period_fs(69_841_279u64 << 32), Some(69_841_279));
        // Zero, all ones, or slower than 10 MHz: refused.
        assert_eq!(hpet_period_fs(0), None);
        assert_eq!(hpet_period_fs(u64::MAX), None);
        assert_eq!(hpet_period_fs((HPET_MAX_PERIOD_FS + 1) << 32), None);
        assert_eq!(hpet_ticks_for_ns(0, 10), 1);
    }

    #[test]
    fn plausibility() {
        // QEMU TCG: APIC timer 62.5 MHz, TSC about 2.3 GHz.
        assert_eq!(plausible(62_500_000, 2_300_000_000), Ok(()));
        // What a missing PIT gave: 100 kHz and 3 MHz.
        assert!(plausible(100_000, 3_000_000).is_err());
        assert!(plausible(62_500_000, 30_000_000_000).is_err());
        assert!(plausible(100_000, 2_300_000_000).is_err());
    }

    #[test]
    fn rates() {
        assert_eq!(rate_hz(62_500, 10_000_000), 6_250_000);
        assert_eq!(rate_hz(u64::MAX, 1), u64::MAX);
        assert_eq!(rate_hz(5, 0), 0);
    }
}
