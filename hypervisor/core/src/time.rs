//! Calendar arithmetic for system time (DESIGN.md §5): decoding a CMOS RTC reading and
//! turning it into seconds since the Unix epoch. Pure; the hypervisor's `time` module reads
//! the TSC and the RTC (`arch::x86_64::time`) and uses these.

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

/// `year-month-day` of the day `days` after 1970-01-01 (Howard Hinnant's `civil_from_days`,
/// the inverse of [`days_from_civil`]).
pub const fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = if z >= 0 { z } else { z - 146_096 } / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + if month <= 2 { 1 } else { 0 };
    (year, month, day)
}

/// How the hypervisor's console lines are stamped (`console_timestamps=`, Xen's option and
/// values; `none` by default).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(u8)]
pub enum Stamps {
    /// No stamp.
    #[default]
    None,
    /// The wall-clock date and time, `[YYYY-MM-DD HH:MM:SS] `.
    Date,
    /// The same with milliseconds, `[YYYY-MM-DD HH:MM:SS.mmm] `.
    DateMs,
    /// Seconds since boot, as Linux stamps its log: `[    s.uuuuuu] `.
    Boot,
    /// The raw cycle counter (the TSC), `[0123456789abcdef] `.
    Raw,
}

impl Stamps {
    /// The mode for its number (as kept in an atomic), `None` for an unknown one.
    pub const fn from_u8(n: u8) -> Option<Self> {
        Some(match n {
            0 => Self::None,
            1 => Self::Date,
            2 => Self::DateMs,
            3 => Self::Boot,
            4 => Self::Raw,
            _ => return None,
        })
    }

    /// Writes the stamp for a line written now: `boot_ns` since boot, `wall_ns` since the
    /// Unix epoch, `cycles` the TSC. Writes nothing for [`Stamps::None`].
    pub fn write(
        self,
        out: &mut impl core::fmt::Write,
        boot_ns: u64,
        wall_ns: u64,
        cycles: u64,
    ) -> core::fmt::Result {
        let (secs, ns) = (wall_ns / 1_000_000_000, wall_ns % 1_000_000_000);
        let (year, month, day) = civil_from_days((secs / 86_400) as i64);
        let (h, m, s) = (secs / 3600 % 24, secs / 60 % 60, secs % 60);
        match self {
            Self::None => Ok(()),
            Self::Date => write!(out, "[{year:04}-{month:02}-{day:02} {h:02}:{m:02}:{s:02}] "),
            Self::DateMs => write!(
                out,
                "[{year:04}-{month:02}-{day:02} {h:02}:{m:02}:{s:02}.{:03}] ",
                ns / 1_000_000
            ),
            Self::Boot => write!(
                out,
                "[{:5}.{:06}] ",
                boot_ns / 1_000_000_000,
                boot_ns % 1_000_000_000 / 1000
            ),
            Self::Raw => write!(out, "[{cycles:016x}] "),
        }
    }
}

#[cfg(test)]
mod stamp_tests {
    use super::*;

    fn stamp(mode: Stamps) -> std::string::String {
        let mut s = std::string::String::new();
        // 2026-12-05 17:50:01.234 UTC, 12.3456789 s after boot.
        let wall = (days_from_civil(2026, 12, 5) as u64 * 86_400 + 17 * 3600 + 50 * 60 + 1)
            * 1_000_000_000
            + 234_000_000;
        mode.write(&mut s, 12_345_678_900, wall, 0xabc).unwrap();
        s
    }

    #[test]
    fn stamps_as_xen_prints_them() {
        assert_eq!(stamp(Stamps::None), "");
        assert_eq!(stamp(Stamps::Date), "[2026-12-05 17:50:01] ");
        assert_eq!(stamp(Stamps::DateMs), "[2026-12-05 17:50:01.234] ");
        assert_eq!(stamp(Stamps::Boot), "[   12.345678] ");
        assert_eq!(stamp(Stamps::Raw), "[0000000000000abc] ");
        for n in 0..5 {
            assert_eq!(Stamps::from_u8(n).map(|m| m as u8), Some(n));
        }
        assert_eq!(Stamps::from_u8(5), None);
    }

    #[test]
    fn civil_days_round_trip() {
        for days in [
            -800_000i64,
            -1,
            0,
            1,
            59,
            60,
            365,
            10_957,
            20_792,
            2_000_000,
        ] {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days, "{y}-{m}-{d}");
        }
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(days_from_civil(2024, 2, 29)), (2024, 2, 29));
    }
}
