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
