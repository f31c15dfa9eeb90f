//! System time on x86-64 PCs (DESIGN.md §5): nanoseconds since boot from the TSC, the wall
//! clock from the CMOS RTC. Guests get the same TSC→ns scale through `vcpu_time_info`. The
//! calendar arithmetic is `xenia_core::time`.

use core::sync::atomic::{AtomicU64, Ordering};
use guest_abi::shared_info::{TimeSnapshot, Wallclock};
use x86_64::instructions::port::Port;
use xenia_core::time::{RtcTime, decode_rtc};

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

/// Waits about `seconds` seconds, spinning: by the TSC once its rate is known, else by the
/// RTC's seconds register (bounded, in case the clock does not tick). For the fatal path,
/// where no timer interrupt may be trusted.
pub fn spin_seconds(seconds: u64) {
    let hz = TSC_HZ.load(Ordering::Relaxed);
    if hz != 0 {
        let end = rdtsc().saturating_add(hz.saturating_mul(seconds));
        while rdtsc() < end {
            core::hint::spin_loop();
        }
        return;
    }
    let (mut last, mut ticks) = (cmos(0), 0);
    for _ in 0..4_000_000_000u64 {
        if ticks >= seconds {
            return;
        }
        let now = cmos(0);
        if now != last {
            ticks += 1;
            last = now;
        }
        core::hint::spin_loop();
    }
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
