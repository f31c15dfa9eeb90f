//! Time: the vCPU's system time (nanoseconds since the hypervisor booted) from
//! `vcpu_time_info` and the TSC (guest-abi `shared_info`, "Time").

use crate::boot::vcpu;

/// Nanoseconds in a millisecond.
pub const NS_PER_MS: u64 = 1_000_000;

/// The TSC.
pub fn rdtsc() -> u64 {
    let lo: u32;
    let hi: u32;
    // SAFETY: rdtsc works in ring 1 (the porting guide: "cpuid and rdtsc work natively") and
    // has no side effects.
    unsafe { core::arch::asm!("rdtsc", out("eax") lo, out("edx") hi, options(nomem, nostack)) };
    (u64::from(hi) << 32) | u64::from(lo)
}

/// The current system time in nanoseconds.
pub fn now_ns() -> u64 {
    vcpu().time.snapshot().system_time_at(rdtsc())
}

/// Spins until system time `deadline_ns`.
pub fn spin_until(deadline_ns: u64) {
    while now_ns() < deadline_ns {
        core::hint::spin_loop();
    }
}

/// Spins until `cond` holds or system time `deadline_ns` passes; returns whether it held.
pub fn spin_until_or(deadline_ns: u64, mut cond: impl FnMut() -> bool) -> bool {
    loop {
        if cond() {
            return true;
        }
        if now_ns() >= deadline_ns {
            return cond();
        }
        core::hint::spin_loop();
    }
}

/// `ns` as milliseconds with three decimals, for messages.
pub struct Ms(pub i64);

impl core::fmt::Display for Ms {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let sign = if self.0 < 0 { "-" } else { "" };
        let abs = self.0.unsigned_abs();
        write!(
            f,
            "{sign}{}.{:03} ms",
            abs / NS_PER_MS,
            (abs % NS_PER_MS) / 1000
        )
    }
}
