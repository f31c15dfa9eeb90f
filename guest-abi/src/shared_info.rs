//! `shared_info` and `vcpu_info`: the page the hypervisor and a guest share
//! for events and time.
//!
//! Each domain has one `shared_info` page, allocated and owned by the
//! hypervisor and mapped writable into the guest: at start of day the builder
//! maps it at the virtual page right after `start_info` (a Xenia addition;
//! see the [porting guide](crate#start-of-day-memory)), and its machine
//! address is in `start_info.shared_info` for a kernel that wants to map it
//! elsewhere. Both sides write it while the other may be
//! reading, so every field is an atomic: the Rust types say what the protocol
//! is, and neither side needs `unsafe` to follow it. Every bit pattern is a
//! valid value, so a guest scribbling on the page can confuse only itself.
//! Layouts are Xen's x86-64 ones.
//!
//! # Time
//!
//! [`VcpuTimeInfo`] describes the vCPU's clock: system time (nanoseconds
//! since the hypervisor booted) as a linear function of the TSC. The
//! hypervisor updates it under a version counter, odd while an update is in
//! progress; [`VcpuTimeInfo::snapshot`] reads a consistent copy and
//! [`TimeSnapshot::system_time_at`] evaluates it. Wall-clock time is
//! `shared_info.wc_*` (the time of day at system time 0) plus system time.

use core::sync::atomic::{AtomicI8, AtomicU8, AtomicU32, AtomicU64, Ordering, fence};

/// Number of `vcpu_info` slots in `shared_info` (Xen's
/// `XEN_LEGACY_MAX_VCPUS`). vCPUs beyond these need
/// `VCPUOP_register_vcpu_info`.
pub const XEN_LEGACY_MAX_VCPUS: usize = 32;

/// Number of 64-bit words in each event-channel bitmap.
pub const EVTCHN_WORDS: usize = 64;

/// A consistent copy of a [`VcpuTimeInfo`], without the version counter.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct TimeSnapshot {
    /// TSC value at which `system_time` was sampled.
    pub tsc_timestamp: u64,
    /// System time in nanoseconds at `tsc_timestamp`.
    pub system_time: u64,
    /// TSC-to-nanoseconds multiplier, a 32.32 fixed-point fraction applied
    /// after `tsc_shift`.
    pub tsc_to_system_mul: u32,
    /// Power of two applied to TSC deltas before the multiplier (negative:
    /// shift right).
    pub tsc_shift: i8,
}

impl TimeSnapshot {
    /// System time in nanoseconds at TSC value `tsc`:
    /// `system_time + (((tsc - tsc_timestamp) << tsc_shift) * tsc_to_system_mul) >> 32`.
    pub const fn system_time_at(&self, tsc: u64) -> u64 {
        let delta = tsc.wrapping_sub(self.tsc_timestamp);
        let shifted = if self.tsc_shift >= 0 {
            match delta.checked_shl(self.tsc_shift as u32) {
                Some(v) => v,
                None => 0,
            }
        } else {
            match delta.checked_shr(self.tsc_shift.unsigned_abs() as u32) {
                Some(v) => v,
                None => 0,
            }
        };
        let ns = ((shifted as u128 * self.tsc_to_system_mul as u128) >> 32) as u64;
        self.system_time.wrapping_add(ns)
    }

    /// The `(tsc_to_system_mul, tsc_shift)` pair for a TSC running at
    /// `tsc_hz`, with the multiplier in `[2^31, 2^32)` for the best
    /// precision. `None` for a zero frequency.
    pub const fn scale_for_frequency(tsc_hz: u64) -> Option<(u32, i8)> {
        const NS_PER_SEC: u128 = 1_000_000_000;
        if tsc_hz == 0 {
            return None;
        }
        // Find the shift that brings tsc_hz << shift into (1e9, 2e9]; then
        // mul = 1e9 * 2^32 / (tsc_hz << shift) lies in [2^31, 2^32).
        let mut scaled = tsc_hz as u128;
        let mut shift: i32 = 0;
        while scaled <= NS_PER_SEC {
            scaled <<= 1;
            shift += 1;
        }
        while scaled > 2 * NS_PER_SEC {
            scaled >>= 1;
            shift -= 1;
        }
        let mul = (NS_PER_SEC << 32) / scaled;
        Some((mul as u32, shift as i8))
    }
}

/// Per-vCPU time parameters (Xen's `struct vcpu_time_info`, 32 bytes).
///
/// Written only by the hypervisor, whenever it recalibrates or the vCPU
/// moves to another pCPU; read by the guest at any time.
#[derive(Debug)]
#[repr(C)]
pub struct VcpuTimeInfo {
    /// Update counter: odd while the hypervisor is rewriting the fields
    /// below, incremented before and after each update.
    pub version: AtomicU32,
    /// Padding.
    pub pad0: AtomicU32,
    /// See [`TimeSnapshot::tsc_timestamp`].
    pub tsc_timestamp: AtomicU64,
    /// See [`TimeSnapshot::system_time`].
    pub system_time: AtomicU64,
    /// See [`TimeSnapshot::tsc_to_system_mul`].
    pub tsc_to_system_mul: AtomicU32,
    /// See [`TimeSnapshot::tsc_shift`].
    pub tsc_shift: AtomicI8,
    /// Padding.
    pub pad1: [AtomicU8; 3],
}

impl VcpuTimeInfo {
    /// All zero.
    pub const fn new() -> Self {
        Self {
            version: AtomicU32::new(0),
            pad0: AtomicU32::new(0),
            tsc_timestamp: AtomicU64::new(0),
            system_time: AtomicU64::new(0),
            tsc_to_system_mul: AtomicU32::new(0),
            tsc_shift: AtomicI8::new(0),
            pad1: [const { AtomicU8::new(0) }; 3],
        }
    }

    /// Reads a consistent copy, retrying while an update is in progress or
    /// happened during the read. The reader is the guest; it spins only for
    /// as long as the hypervisor is mid-update.
    pub fn snapshot(&self) -> TimeSnapshot {
        loop {
            let before = self.version.load(Ordering::Acquire);
            if before & 1 != 0 {
                core::hint::spin_loop();
                continue;
            }
            let snap = TimeSnapshot {
                tsc_timestamp: self.tsc_timestamp.load(Ordering::Relaxed),
                system_time: self.system_time.load(Ordering::Relaxed),
                tsc_to_system_mul: self.tsc_to_system_mul.load(Ordering::Relaxed),
                tsc_shift: self.tsc_shift.load(Ordering::Relaxed),
            };
            fence(Ordering::Acquire);
            if self.version.load(Ordering::Relaxed) == before {
                return snap;
            }
        }
    }

    /// Publishes new parameters (hypervisor side; one writer per vCPU at a
    /// time). The version is forced odd for the update and even afterwards,
    /// whatever the guest may have written into it.
    pub fn publish(&self, snap: &TimeSnapshot) {
        let odd = self.version.load(Ordering::Relaxed) | 1;
        self.version.store(odd, Ordering::Relaxed);
        fence(Ordering::Release);
        self.tsc_timestamp
            .store(snap.tsc_timestamp, Ordering::Relaxed);
        self.system_time.store(snap.system_time, Ordering::Relaxed);
        self.tsc_to_system_mul
            .store(snap.tsc_to_system_mul, Ordering::Relaxed);
        self.tsc_shift.store(snap.tsc_shift, Ordering::Relaxed);
        self.version.store(odd.wrapping_add(1), Ordering::Release);
    }
}

impl Default for VcpuTimeInfo {
    fn default() -> Self {
        Self::new()
    }
}

/// The x86-specific part of [`VcpuInfo`] (Xen's `struct arch_vcpu_info`).
#[derive(Debug)]
#[repr(C)]
pub struct ArchVcpuInfo {
    /// Faulting linear address of the last page fault delivered to this vCPU.
    /// The hypervisor writes it just before it delivers a #PF through the
    /// trap table (the guest cannot read `CR2` itself); the guest's #PF
    /// handler reads it.
    pub cr2: AtomicU64,
    /// Xen's padding word, which Xenia uses as the vCPU's *entry count*: the
    /// number of times this vCPU has entered the hypervisor from guest code
    /// (hypercall, exception, interrupt, `SYSCALL`), incremented by the
    /// hypervisor on every such entry and wrapping at 2^64. It lets a guest
    /// prove that a path did not involve the hypervisor: an `int 0x80` fast
    /// trap (see [`trap`](crate::trap)) leaves it unchanged, a bounced
    /// exception does not. Interrupts the hypervisor takes while the guest
    /// runs (its own timer, other devices) also count, so compare deltas
    /// against what the measured code did rather than expecting zero. Read it
    /// with [`ArchVcpuInfo::entry_count`]; guest writes are overwritten.
    pub pad: AtomicU64,
}

impl ArchVcpuInfo {
    /// The vCPU's entry count (see [`ArchVcpuInfo::pad`]).
    pub fn entry_count(&self) -> u64 {
        self.pad.load(Ordering::Relaxed)
    }

    /// Counts one entry into the hypervisor (hypervisor side).
    pub fn count_entry(&self) {
        self.pad.fetch_add(1, Ordering::Relaxed);
    }
}

/// Per-vCPU event and time state (Xen's `struct vcpu_info`, 64 bytes).
#[derive(Debug)]
#[repr(C)]
pub struct VcpuInfo {
    /// Non-zero when an event is pending for this vCPU. The hypervisor sets
    /// it (after setting the port's bit in `evtchn_pending` and the word's bit
    /// in `evtchn_pending_sel`); the guest clears it *before* scanning for
    /// work, so that an event arriving during the scan sets it again.
    pub evtchn_upcall_pending: AtomicU8,
    /// The vCPU's virtual interrupt flag, inverted: while non-zero the
    /// hypervisor does not enter the event callback. Written by the guest at
    /// will (its `cli`/`sti`), set by the hypervisor when it enters the event
    /// callback or a handler whose trap-table entry asks for it, cleared by
    /// `SCHEDOP_block` and restored by the `iret` hypercall. It is 1 at boot.
    pub evtchn_upcall_mask: AtomicU8,
    /// Which 64-bit words of `shared_info.evtchn_pending` may have new
    /// unmasked pending bits for this vCPU: bit *i* covers word *i*. Set by
    /// the hypervisor; the guest takes it with an atomic exchange to zero.
    pub evtchn_pending_sel: AtomicU64,
    /// Architecture state.
    pub arch: ArchVcpuInfo,
    /// Time parameters.
    pub time: VcpuTimeInfo,
}

impl VcpuInfo {
    /// All zero (events unmasked).
    pub const fn new() -> Self {
        Self {
            evtchn_upcall_pending: AtomicU8::new(0),
            evtchn_upcall_mask: AtomicU8::new(0),
            evtchn_pending_sel: AtomicU64::new(0),
            arch: ArchVcpuInfo {
                cr2: AtomicU64::new(0),
                pad: AtomicU64::new(0),
            },
            time: VcpuTimeInfo::new(),
        }
    }
}

impl Default for VcpuInfo {
    fn default() -> Self {
        Self::new()
    }
}

/// The x86-specific part of [`SharedInfo`] (Xen's `struct arch_shared_info`,
/// 48 bytes). Written by the guest to describe its p2m list to the tools
/// (save, restore, dump); the hypervisor does not interpret it.
#[derive(Debug)]
#[repr(C)]
pub struct ArchSharedInfo {
    /// Number of valid entries in the p2m list.
    pub max_pfn: AtomicU64,
    /// Machine frame of the top page of the three-level p2m frame list; 0
    /// when not set up, `!0` when invalid.
    pub pfn_to_mfn_frame_list_list: AtomicU64,
    /// NMI reason bits (dom0).
    pub nmi_reason: AtomicU64,
    /// CR3 value of the address space in which `p2m_vaddr` is valid; the
    /// next two fields mean something only when this is non-zero.
    pub p2m_cr3: AtomicU64,
    /// Virtual address of the linear p2m list.
    pub p2m_vaddr: AtomicU64,
    /// Incremented by the guest before and after it changes the p2m list's
    /// mappings (odd while changing).
    pub p2m_generation: AtomicU64,
}

/// A consistent copy of the wall-clock base in [`SharedInfo`].
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct Wallclock {
    /// Seconds since 1970-01-01 00:00 UTC at system time 0.
    pub sec: u64,
    /// Nanoseconds to add to `sec`.
    pub nsec: u32,
}

/// The shared-info page (Xen's `struct shared_info`, x86-64).
///
/// Xen documents that the size of this structure may change between versions
/// and that guests must not depend on it; only the offsets of the fields
/// below are fixed.
#[derive(Debug)]
#[repr(C)]
pub struct SharedInfo {
    /// Event and time state of vCPUs 0 to 31.
    pub vcpu_info: [VcpuInfo; XEN_LEGACY_MAX_VCPUS],
    /// Event-channel pending bitmap: bit *p* (word `p / 64`, bit `p % 64`) is
    /// port *p*. Set atomically by the hypervisor when an event is sent to the
    /// port; cleared atomically by the guest when it handles the event.
    pub evtchn_pending: [AtomicU64; EVTCHN_WORDS],
    /// Event-channel mask bitmap, same indexing. Written only by the guest; a
    /// set bit stops the hypervisor from notifying a vCPU when the port
    /// becomes pending. After clearing a mask bit the guest must look at the
    /// pending bit itself (or use `EVTCHNOP_unmask`).
    pub evtchn_mask: [AtomicU64; EVTCHN_WORDS],
    /// Wall-clock update counter, protocol as [`VcpuTimeInfo::version`].
    pub wc_version: AtomicU32,
    /// Wall-clock seconds at system time 0, low 32 bits.
    pub wc_sec: AtomicU32,
    /// Wall-clock nanoseconds at system time 0.
    pub wc_nsec: AtomicU32,
    /// Wall-clock seconds at system time 0, high 32 bits.
    pub wc_sec_hi: AtomicU32,
    /// Architecture state.
    pub arch: ArchSharedInfo,
}

impl SharedInfo {
    /// All zero (every vCPU's events unmasked; the hypervisor sets the masks
    /// it needs before the guest starts).
    pub const fn new() -> Self {
        Self {
            vcpu_info: [const { VcpuInfo::new() }; XEN_LEGACY_MAX_VCPUS],
            evtchn_pending: [const { AtomicU64::new(0) }; EVTCHN_WORDS],
            evtchn_mask: [const { AtomicU64::new(0) }; EVTCHN_WORDS],
            wc_version: AtomicU32::new(0),
            wc_sec: AtomicU32::new(0),
            wc_nsec: AtomicU32::new(0),
            wc_sec_hi: AtomicU32::new(0),
            arch: ArchSharedInfo {
                max_pfn: AtomicU64::new(0),
                pfn_to_mfn_frame_list_list: AtomicU64::new(0),
                nmi_reason: AtomicU64::new(0),
                p2m_cr3: AtomicU64::new(0),
                p2m_vaddr: AtomicU64::new(0),
                p2m_generation: AtomicU64::new(0),
            },
        }
    }

    /// Reads a consistent wall-clock base.
    pub fn wallclock(&self) -> Wallclock {
        loop {
            let before = self.wc_version.load(Ordering::Acquire);
            if before & 1 != 0 {
                core::hint::spin_loop();
                continue;
            }
            let lo = self.wc_sec.load(Ordering::Relaxed);
            let hi = self.wc_sec_hi.load(Ordering::Relaxed);
            let nsec = self.wc_nsec.load(Ordering::Relaxed);
            fence(Ordering::Acquire);
            if self.wc_version.load(Ordering::Relaxed) == before {
                return Wallclock {
                    sec: (hi as u64) << 32 | lo as u64,
                    nsec,
                };
            }
        }
    }

    /// Publishes a new wall-clock base (hypervisor side).
    pub fn publish_wallclock(&self, wc: Wallclock) {
        let odd = self.wc_version.load(Ordering::Relaxed) | 1;
        self.wc_version.store(odd, Ordering::Relaxed);
        fence(Ordering::Release);
        self.wc_sec.store(wc.sec as u32, Ordering::Relaxed);
        self.wc_sec_hi
            .store((wc.sec >> 32) as u32, Ordering::Relaxed);
        self.wc_nsec.store(wc.nsec, Ordering::Relaxed);
        self.wc_version
            .store(odd.wrapping_add(1), Ordering::Release);
    }
}

impl Default for SharedInfo {
    fn default() -> Self {
        Self::new()
    }
}

// The whole structure must fit the one page it is shared through.
const _: () = assert!(core::mem::size_of::<SharedInfo>() <= crate::types::PAGE_SIZE);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vcpu_time_info_layout() {
        assert_layout!(VcpuTimeInfo, 32, 8, {
            version: 0,
            pad0: 4,
            tsc_timestamp: 8,
            system_time: 16,
            tsc_to_system_mul: 24,
            tsc_shift: 28,
            pad1: 29,
        });
    }

    #[test]
    fn vcpu_info_layout() {
        assert_layout!(ArchVcpuInfo, 16, 8, { cr2: 0, pad: 8 });
        assert_layout!(VcpuInfo, 64, 8, {
            evtchn_upcall_pending: 0,
            evtchn_upcall_mask: 1,
            evtchn_pending_sel: 8,
            arch: 16,
            time: 32,
        });
        assert_eq!(core::mem::offset_of!(VcpuInfo, arch.cr2), 16);
        assert_eq!(core::mem::offset_of!(VcpuInfo, arch.pad), 24);
    }

    #[test]
    fn entry_count_is_the_padding_word() {
        let v = VcpuInfo::new();
        assert_eq!(v.arch.entry_count(), 0);
        v.arch.count_entry();
        v.arch.count_entry();
        assert_eq!(v.arch.entry_count(), 2);
        v.arch.pad.store(u64::MAX, Ordering::Relaxed);
        v.arch.count_entry();
        assert_eq!(v.arch.entry_count(), 0, "wraps");
    }

    #[test]
    fn shared_info_layout() {
        assert_layout!(ArchSharedInfo, 48, 8, {
            max_pfn: 0,
            pfn_to_mfn_frame_list_list: 8,
            nmi_reason: 16,
            p2m_cr3: 24,
            p2m_vaddr: 32,
            p2m_generation: 40,
        });
        assert_layout!(SharedInfo, 3136, 8, {
            vcpu_info: 0,
            evtchn_pending: 2048,
            evtchn_mask: 2560,
            wc_version: 3072,
            wc_sec: 3076,
            wc_nsec: 3080,
            wc_sec_hi: 3084,
            arch: 3088,
        });
    }

    #[test]
    fn time_formula() {
        // 2 GHz TSC: two ticks per nanosecond.
        let s = TimeSnapshot {
            tsc_timestamp: 1_000,
            system_time: 5_000,
            tsc_to_system_mul: 1 << 31,
            tsc_shift: 0,
        };
        assert_eq!(s.system_time_at(1_000), 5_000);
        assert_eq!(s.system_time_at(3_000), 6_000);
        // Negative shift halves the delta first.
        let s = TimeSnapshot { tsc_shift: -1, ..s };
        assert_eq!(s.system_time_at(5_000), 6_000);
        // Positive shift doubles it.
        let s = TimeSnapshot { tsc_shift: 1, ..s };
        assert_eq!(s.system_time_at(2_000), 6_000);
    }

    #[test]
    fn scale_round_trips_one_second() {
        for hz in [
            1u64,
            1_000_000,
            999_999_999,
            1_000_000_000,
            2_400_000_000,
            3_000_000_000,
            5_000_000_000,
        ] {
            let (mul, shift) = TimeSnapshot::scale_for_frequency(hz).unwrap();
            assert!(mul >= 1 << 31, "{hz}: mul {mul:#x}");
            let s = TimeSnapshot {
                tsc_timestamp: 0,
                system_time: 0,
                tsc_to_system_mul: mul,
                tsc_shift: shift,
            };
            let ns = s.system_time_at(hz);
            assert!(
                ns.abs_diff(1_000_000_000) <= 2,
                "{hz} Hz: one second read as {ns} ns"
            );
        }
        assert_eq!(TimeSnapshot::scale_for_frequency(0), None);
        assert_eq!(
            TimeSnapshot::scale_for_frequency(1_000_000_000),
            Some((1 << 31, 1))
        );
    }

    #[test]
    fn publish_then_snapshot() {
        let t = VcpuTimeInfo::new();
        let s = TimeSnapshot {
            tsc_timestamp: 1,
            system_time: 2,
            tsc_to_system_mul: 3,
            tsc_shift: -4,
        };
        t.publish(&s);
        assert_eq!(t.snapshot(), s);
        assert_eq!(t.version.load(Ordering::Relaxed), 2);
        // A guest that left the version odd does not wedge the next update.
        t.version.store(7, Ordering::Relaxed);
        t.publish(&s);
        assert_eq!(t.version.load(Ordering::Relaxed), 8);
    }

    #[test]
    fn wallclock_round_trip() {
        let si = SharedInfo::new();
        let wc = Wallclock {
            sec: 0x1_2345_6789,
            nsec: 999_999_999,
        };
        si.publish_wallclock(wc);
        assert_eq!(si.wallclock(), wc);
    }
}
