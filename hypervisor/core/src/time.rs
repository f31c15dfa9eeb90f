//! System time: nanoseconds since boot from the TSC, the wall clock from the CMOS RTC
//! (DESIGN.md §5). Guests get the same TSC→ns scale through `vcpu_time_info`.

/// Days from 1970-01-01 to `year-month-day` (proleptic Gregorian; Howard Hinnant's
/// `days_from_civil`). Pure, for the RTC reading.
pub const fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let m = month as i64;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + day as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// A calendar reading as the RTC gives it, already decoded from BCD / 12-hour form.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RtcTime {
    pub year: u32,
    pub month: u32,
    pub day: u32,
    pub hour: u32,
    pub minute: u32,
    pub second: u32,
}

impl RtcTime {
    /// Seconds since the Unix epoch, or `None` for an impossible reading.
    pub fn unix_seconds(&self) -> Option<u64> {
        let valid = (1..=12).contains(&self.month)
            && (1..=31).contains(&self.day)
            && self.hour < 24
            && self.minute < 60
            && self.second < 61
            && self.year >= 1970;
        if !valid {
            return None;
        }
        let days = days_from_civil(i64::from(self.year), self.month, self.day);
        let secs = days * 86_400
            + i64::from(self.hour) * 3600
            + i64::from(self.minute) * 60
            + i64::from(self.second);
        u64::try_from(secs).ok()
    }
}

/// Decodes raw CMOS registers (seconds, minutes, hours, day, month, year, century)
/// according to status register B (bit 2: binary, bit 1: 24-hour).
pub fn decode_rtc(raw: [u8; 7], status_b: u8) -> RtcTime {
    let binary = status_b & 0x04 != 0;
    let h24 = status_b & 0x02 != 0;
    let bcd = |v: u8| {
        if binary {
            u32::from(v)
        } else {
            u32::from(v & 0x0F) + u32::from(v >> 4) * 10
        }
    };
    let pm = raw[2] & 0x80 != 0;
    let mut hour = bcd(raw[2] & 0x7F);
    if !h24 {
        hour %= 12;
        if pm {
            hour += 12;
        }
    }
    let century = if raw[6] != 0 { bcd(raw[6]) } else { 20 };
    RtcTime {
        second: bcd(raw[0]),
        minute: bcd(raw[1]),
        hour,
        day: bcd(raw[3]),
        month: bcd(raw[4]),
        year: century * 100 + bcd(raw[5]),
    }
}

#[cfg(target_os = "none")]
mod hw {
    use super::*;
    use core::sync::atomic::{AtomicU64, Ordering};
    use guest_abi::shared_info::{TimeSnapshot, Wallclock};
    use x86_64::instructions::port::Port;

    static SCALE: spin::Once<TimeSnapshot> = spin::Once::new();
    static WALLCLOCK_AT_BOOT: AtomicU64 = AtomicU64::new(0);
    static TSC_HZ: AtomicU64 = AtomicU64::new(0);

    pub fn rdtsc() -> u64 {
        // SAFETY: RDTSC has no memory effects; CR4.TSD is clear, so it never faults.
        unsafe { core::arch::x86_64::_rdtsc() }
    }

    /// Fixes the TSC→ns scale with TSC 'now' as system time 0, and reads the RTC.
    pub fn init(tsc_hz: u64) {
        let (mul, shift) = TimeSnapshot::scale_for_frequency(tsc_hz).unwrap_or((1 << 31, 1));
        let boot = TimeSnapshot {
            tsc_timestamp: rdtsc(),
            system_time: 0,
            tsc_to_system_mul: mul,
            tsc_shift: shift,
        };
        SCALE.call_once(|| boot);
        TSC_HZ.store(tsc_hz, Ordering::Relaxed);
        match read_rtc().unix_seconds() {
            Some(s) => WALLCLOCK_AT_BOOT.store(s, Ordering::Relaxed),
            None => {
                log::warn!(target: "time", "the RTC reads an impossible date; wall clock starts at 1970")
            }
        }
        log::info!(target: "time", "time: TSC {} MHz, wall clock {} s since 1970", tsc_hz / 1_000_000, WALLCLOCK_AT_BOOT.load(Ordering::Relaxed));
    }

    /// The TSC frequency measured at boot (Hz).
    pub fn tsc_hz() -> u64 {
        TSC_HZ.load(Ordering::Relaxed)
    }

    /// The parameters guests copy into `vcpu_time_info`.
    pub fn snapshot() -> TimeSnapshot {
        SCALE.get().copied().unwrap_or_default()
    }

    /// Nanoseconds since boot.
    pub fn now_ns() -> u64 {
        snapshot().system_time_at(rdtsc())
    }

    pub fn wallclock() -> Wallclock {
        Wallclock {
            sec: WALLCLOCK_AT_BOOT.load(Ordering::Relaxed),
            nsec: 0,
        }
    }

    fn cmos(reg: u8) -> u8 {
        // SAFETY: CMOS index/data ports; bit 7 of the index keeps NMIs enabled state as
        // firmware left it (we write 0 there, enabling NMI, as every PC OS does).
        unsafe {
            Port::<u8>::new(0x70).write(reg);
            Port::<u8>::new(0x71).read()
        }
    }

    fn read_rtc() -> RtcTime {
        // Wait (bounded) for no update in progress, then read twice until stable.
        let regs = || {
            for _ in 0..100_000 {
                if cmos(0x0A) & 0x80 == 0 {
                    break;
                }
            }
            [
                cmos(0x00),
                cmos(0x02),
                cmos(0x04),
                cmos(0x07),
                cmos(0x08),
                cmos(0x09),
                cmos(0x32),
            ]
        };
        let mut last = regs();
        for _ in 0..5 {
            let now = regs();
            if now == last {
                break;
            }
            last = now;
        }
        decode_rtc(last, cmos(0x0B))
    }
}

#[cfg(target_os = "none")]
pub use hw::*;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn epoch_and_known_dates() {
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(2000, 3, 1), 11_017);
        let t = RtcTime {
            year: 2026,
            month: 11,
            day: 21,
            hour: 14,
            minute: 45,
            second: 0,
        };
        assert_eq!(t.unix_seconds(), Some(1_795_272_300));
        assert_eq!(RtcTime { month: 13, ..t }.unix_seconds(), None);
        assert_eq!(RtcTime { year: 1969, ..t }.unix_seconds(), None);
    }

    #[test]
    fn rtc_bcd_and_12_hour() {
        // 2026-11-21 02:45:07 PM in BCD, 12-hour mode.
        let raw = [0x07, 0x45, 0x82, 0x21, 0x11, 0x26, 0x20];
        let t = decode_rtc(raw, 0x00);
        assert_eq!(
            (t.year, t.month, t.day, t.hour, t.minute, t.second),
            (2026, 11, 21, 14, 45, 7)
        );
        // Binary, 24-hour, no century register.
        let t = decode_rtc([7, 45, 14, 21, 11, 26, 0], 0x06);
        assert_eq!((t.year, t.hour), (2026, 14));
        // 12 AM is hour 0.
        assert_eq!(decode_rtc([0, 0, 0x12, 1, 1, 0x26, 0x20], 0).hour, 0);
    }
}
