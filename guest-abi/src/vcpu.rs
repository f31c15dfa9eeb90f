//! Per-vCPU operations (`vcpu_op(cmd, vcpu, arg)`): bring-up, state and
//! timers (the porting guide's "SMP guests" section tells the whole story).
//!
//! Each vCPU has two timers besides `set_timer_op` (which is the single-shot
//! timer under another name): a single-shot timer with an absolute deadline
//! and a periodic one. Both raise `VIRQ_TIMER` on the vCPU. The single-shot
//! timer can only be set or stopped by the vCPU itself (`EINVAL` for another,
//! as in Xen); the periodic one of any vCPU of the domain. A guest may only
//! name its own vCPUs, `0..max_vcpus`; any other number fails with `ENOENT`
//! whatever the command.

/// Initialise a vCPU that was never initialised from a register context
/// (`arg`: a [`VcpuGuestContext`](crate::vcpu_context::VcpuGuestContext), checked
/// as `XEN_DOMCTL_setvcpucontext` checks one). `EFAULT` if it cannot be read,
/// `EEXIST` if the vCPU was initialised before (up, or down after running),
/// `EINVAL` for a context Xenia cannot honour. The vCPU stays down unless the
/// context has `VGCF_ONLINE`.
pub const VCPUOP_INITIALISE: u32 = 0;
/// Make an initialised vCPU runnable: it starts at its context, or resumes
/// where it went down. `EINVAL` if it was never initialised; 0 (nothing done)
/// if it is up. `arg` is null.
pub const VCPUOP_UP: u32 = 1;
/// Make a vCPU non-runnable where it is (the caller itself included: the call
/// returns 0 once the vCPU is up again). If no other vCPU of the domain is up,
/// the domain powers off instead. `arg` is null.
pub const VCPUOP_DOWN: u32 = 2;
/// Returns 1 if the vCPU is up, 0 if it is down (never initialised, or taken
/// down). `arg` is null.
pub const VCPUOP_IS_UP: u32 = 3;
/// Copy the vCPU's run-state accounting into a [`VcpuRunstateInfo`].
pub const VCPUOP_GET_RUNSTATE_INFO: u32 = 4;
/// Register memory the hypervisor keeps a [`VcpuRunstateInfo`] up to date in
/// ([`VcpuRegisterRunstateMemoryArea`]).
pub const VCPUOP_REGISTER_RUNSTATE_MEMORY_AREA: u32 = 5;
/// Start or change the periodic timer ([`VcpuSetPeriodicTimer`]).
pub const VCPUOP_SET_PERIODIC_TIMER: u32 = 6;
/// Stop the periodic timer. `arg` is null.
pub const VCPUOP_STOP_PERIODIC_TIMER: u32 = 7;
/// Arm the single-shot timer ([`VcpuSetSingleshotTimer`]).
pub const VCPUOP_SET_SINGLESHOT_TIMER: u32 = 8;
/// Disarm the single-shot timer. `arg` is null.
pub const VCPUOP_STOP_SINGLESHOT_TIMER: u32 = 9;
/// Move the vCPU's [`VcpuInfo`](crate::shared_info::VcpuInfo) into a guest
/// page ([`VcpuRegisterVcpuInfo`], which lists the rules); once per vCPU.
pub const VCPUOP_REGISTER_VCPU_INFO: u32 = 10;
/// Send an NMI to a vCPU.
pub const VCPUOP_SEND_NMI: u32 = 11;
/// Get the physical CPU identity of a pinned vCPU.
pub const VCPUOP_GET_PHYSID: u32 = 12;
/// Register a secondary copy of the vCPU's time information.
pub const VCPUOP_REGISTER_VCPU_TIME_MEMORY_AREA: u32 = 13;

/// Run state: running on a pCPU.
pub const RUNSTATE_RUNNING: i32 = 0;
/// Run state: runnable, waiting for a pCPU.
pub const RUNSTATE_RUNNABLE: i32 = 1;
/// Run state: blocked waiting for an event.
pub const RUNSTATE_BLOCKED: i32 = 2;
/// Run state: neither runnable nor blocked (down, paused).
pub const RUNSTATE_OFFLINE: i32 = 3;

/// Run-state accounting of a vCPU (Xen's `struct vcpu_runstate_info`,
/// 48 bytes). Written by the hypervisor.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
#[repr(C)]
pub struct VcpuRunstateInfo {
    /// Current `RUNSTATE_*`.
    pub state: i32,
    /// System time (ns) at which `state` was entered.
    pub state_entry_time: u64,
    /// Nanoseconds spent in each `RUNSTATE_*`, indexed by state; they sum to
    /// the system time elapsed since the vCPU was created.
    pub time: [u64; 4],
}

/// Argument of `VCPUOP_REGISTER_RUNSTATE_MEMORY_AREA` (8 bytes).
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
#[repr(C)]
pub struct VcpuRegisterRunstateMemoryArea {
    /// IN: virtual address of a [`VcpuRunstateInfo`] the hypervisor updates
    /// whenever it schedules the vCPU.
    pub addr: u64,
}

/// Argument of `VCPUOP_SET_PERIODIC_TIMER` (Xen's `struct
/// vcpu_set_periodic_timer`).
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
#[repr(C)]
#[derive(zerocopy::FromBytes, zerocopy::IntoBytes, zerocopy::Immutable, zerocopy::KnownLayout)]
pub struct VcpuSetPeriodicTimer {
    /// IN: period in nanoseconds; periods under one millisecond
    /// ([`VCPU_PERIODIC_MIN_NS`]) are refused with `EINVAL`. The first event
    /// comes one period after the call.
    pub period_ns: u64,
}

/// Shortest period `VCPUOP_SET_PERIODIC_TIMER` accepts: 1 ms (Xen's limit).
pub const VCPU_PERIODIC_MIN_NS: u64 = 1_000_000;

/// Flag of [`VcpuSetSingleshotTimer::flags`]: fail with `ETIME` instead of
/// firing at once if the deadline has already passed.
pub const VCPU_SSHOTTMR_FUTURE: u32 = 1 << 0;

/// Argument of `VCPUOP_SET_SINGLESHOT_TIMER` (Xen's `struct
/// vcpu_set_singleshot_timer`, 16 bytes).
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
#[repr(C)]
#[derive(zerocopy::FromBytes, zerocopy::Immutable, zerocopy::KnownLayout)]
pub struct VcpuSetSingleshotTimer {
    /// IN: absolute system time (ns) at which to raise `VIRQ_TIMER`.
    pub timeout_abs_ns: u64,
    /// IN: `VCPU_SSHOTTMR_*`.
    pub flags: u32,
}

/// Argument of `VCPUOP_REGISTER_VCPU_INFO` (Xen's `struct
/// vcpu_register_vcpu_info`, 16 bytes): moves vCPU `vcpu`'s
/// [`VcpuInfo`](crate::shared_info::VcpuInfo) out of `shared_info` into a page
/// of the guest's own, where the hypervisor reads and writes it from then on
/// (its slot in `shared_info` is no longer used).
///
/// The hypervisor copies the current contents there, then sets
/// `evtchn_upcall_pending` and every bit of `evtchn_pending_sel` so that no
/// event is lost in the move (the guest's upcall looks at every word once).
/// The frame is held for the hypervisor's writes for as long as the domain
/// lives: it stays writable and cannot become a page table or be given back.
///
/// Refused with `EINVAL` (Xen's rules, plus alignment): the structure does not
/// fit in the page at `offset` or `offset` is not a multiple of 8 (Xenia: the
/// fields are atomics); the vCPU has registered one already (once per vCPU);
/// the vCPU is up and is not the caller (only the caller itself or a vCPU that
/// is down may be moved); the frame is not the caller's or cannot be held
/// writable (a page table, a descriptor page). `EFAULT` if the argument cannot
/// be read; `ENOENT` for a vCPU the domain does not have.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
#[repr(C)]
#[derive(zerocopy::FromBytes, zerocopy::IntoBytes, zerocopy::Immutable, zerocopy::KnownLayout)]
pub struct VcpuRegisterVcpuInfo {
    /// IN: machine frame of the page to hold the `vcpu_info`.
    pub mfn: u64,
    /// IN: byte offset within that page.
    pub offset: u32,
    /// Reserved, zero.
    pub rsvd: u32,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_match_xen() {
        let ops = [
            VCPUOP_INITIALISE,
            VCPUOP_UP,
            VCPUOP_DOWN,
            VCPUOP_IS_UP,
            VCPUOP_GET_RUNSTATE_INFO,
            VCPUOP_REGISTER_RUNSTATE_MEMORY_AREA,
            VCPUOP_SET_PERIODIC_TIMER,
            VCPUOP_STOP_PERIODIC_TIMER,
            VCPUOP_SET_SINGLESHOT_TIMER,
            VCPUOP_STOP_SINGLESHOT_TIMER,
            VCPUOP_REGISTER_VCPU_INFO,
            VCPUOP_SEND_NMI,
            VCPUOP_GET_PHYSID,
            VCPUOP_REGISTER_VCPU_TIME_MEMORY_AREA,
        ];
        for (i, op) in ops.into_iter().enumerate() {
            assert_eq!(op as usize, i);
        }
        assert_eq!(
            [
                RUNSTATE_RUNNING,
                RUNSTATE_RUNNABLE,
                RUNSTATE_BLOCKED,
                RUNSTATE_OFFLINE
            ],
            [0, 1, 2, 3]
        );
        assert_eq!(VCPU_SSHOTTMR_FUTURE, 1);
    }

    #[test]
    fn layouts() {
        assert_layout!(VcpuRunstateInfo, 48, 8, { state: 0, state_entry_time: 8, time: 16 });
        assert_layout!(VcpuRegisterRunstateMemoryArea, 8, 8, { addr: 0 });
        assert_layout!(VcpuSetPeriodicTimer, 8, 8, { period_ns: 0 });
        assert_layout!(VcpuSetSingleshotTimer, 16, 8, { timeout_abs_ns: 0, flags: 8 });
        assert_layout!(VcpuRegisterVcpuInfo, 16, 8, { mfn: 0, offset: 8, rsvd: 12 });
    }
}
