//! Time ("Time"; guest-abi `shared_info`): system time, in nanoseconds since the hypervisor
//! booted, is a linear function of the TSC that the hypervisor publishes in
//! `vcpu_info.time`.

/// Nanoseconds in a millisecond.
pub const NS_PER_MS: u64 = 1_000_000;

/// The current system time in nanoseconds.
pub fn now_ns() -> u64 {
    // SAFETY: rdtsc has no side effects and works in ring 1 (CR4.TSD is clear for guests).
    let tsc = unsafe { core::arch::x86_64::_rdtsc() };
    super::shared_info().vcpu_info[0]
        .time
        .snapshot()
        .system_time_at(tsc)
}
