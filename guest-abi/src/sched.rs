//! Scheduler operations (`sched_op(cmd, arg)`).

use crate::types::DomId;

/// Give up the pCPU; the vCPU stays runnable. `arg` is null.
pub const SCHEDOP_YIELD: u32 = 0;
/// Block until an event is pending for this vCPU: the guest's "`sti; hlt`".
/// Clears `evtchn_upcall_mask` and checks for pending events atomically with
/// blocking, so an event that arrived just before the call is not missed; the
/// upcall runs when the vCPU is woken. `arg` is null.
pub const SCHEDOP_BLOCK: u32 = 1;
/// Stop the whole domain and report a reason to the tools
/// ([`SchedShutdown`]). Does not return, except for
/// [`SHUTDOWN_SUSPEND`] when the domain is resumed.
pub const SCHEDOP_SHUTDOWN: u32 = 2;
/// Block until one of a set of ports is pending (masked or not), an event
/// needs delivery to this vCPU, or a timeout passes ([`SchedPoll`]). Returns 0
/// however it wakes, at once if one of those already holds; leaves
/// `evtchn_upcall_mask` as it is. `EINVAL` for more than [`SCHED_POLL_MAX_PORTS`]
/// ports or a port past the 2-level limit, `EFAULT` for an unreadable argument
/// or port array. Inside a `multicall` it ends the batch for now (the rest runs
/// once the vCPU wakes).
pub const SCHEDOP_POLL: u32 = 3;
/// Most ports one `SCHEDOP_POLL` may name (Xen's limit).
pub const SCHED_POLL_MAX_PORTS: u32 = 128;
/// Shut down another domain (privileged; [`SchedRemoteShutdown`]).
pub const SCHEDOP_REMOTE_SHUTDOWN: u32 = 4;
/// Record the reason a later shutdown will report ([`SchedShutdown`]).
pub const SCHEDOP_SHUTDOWN_CODE: u32 = 5;
/// Set up, poke or destroy a domain watchdog ([`SchedWatchdog`]).
pub const SCHEDOP_WATCHDOG: u32 = 6;
/// Pin a vCPU to one pCPU temporarily (dom0).
pub const SCHEDOP_PIN_OVERRIDE: u32 = 7;

/// Shutdown reason: the domain exited normally.
pub const SHUTDOWN_POWEROFF: u32 = 0;
/// Shutdown reason: the domain wants to be restarted.
pub const SHUTDOWN_REBOOT: u32 = 1;
/// Shutdown reason: the domain is suspending for save or migration.
pub const SHUTDOWN_SUSPEND: u32 = 2;
/// Shutdown reason: the domain crashed. The hypervisor uses it too when it
/// crashes a domain.
pub const SHUTDOWN_CRASH: u32 = 3;
/// Shutdown reason: the domain's watchdog expired.
pub const SHUTDOWN_WATCHDOG: u32 = 4;
/// Shutdown reason: the domain asks for a soft reset.
pub const SHUTDOWN_SOFT_RESET: u32 = 5;
/// Largest valid shutdown reason.
pub const SHUTDOWN_MAX: u32 = 5;

/// A shutdown reason as a type.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Hash)]
#[repr(u32)]
pub enum ShutdownReason {
    /// [`SHUTDOWN_POWEROFF`].
    Poweroff = SHUTDOWN_POWEROFF,
    /// [`SHUTDOWN_REBOOT`].
    Reboot = SHUTDOWN_REBOOT,
    /// [`SHUTDOWN_SUSPEND`].
    Suspend = SHUTDOWN_SUSPEND,
    /// [`SHUTDOWN_CRASH`].
    Crash = SHUTDOWN_CRASH,
    /// [`SHUTDOWN_WATCHDOG`].
    Watchdog = SHUTDOWN_WATCHDOG,
    /// [`SHUTDOWN_SOFT_RESET`].
    SoftReset = SHUTDOWN_SOFT_RESET,
}

impl ShutdownReason {
    /// The reason for a raw value, if valid.
    pub const fn from_raw(raw: u32) -> Option<Self> {
        Some(match raw {
            SHUTDOWN_POWEROFF => Self::Poweroff,
            SHUTDOWN_REBOOT => Self::Reboot,
            SHUTDOWN_SUSPEND => Self::Suspend,
            SHUTDOWN_CRASH => Self::Crash,
            SHUTDOWN_WATCHDOG => Self::Watchdog,
            SHUTDOWN_SOFT_RESET => Self::SoftReset,
            _ => return None,
        })
    }

    /// The word `xl` uses for this reason.
    pub const fn name(self) -> &'static str {
        match self {
            Self::Poweroff => "poweroff",
            Self::Reboot => "reboot",
            Self::Suspend => "suspend",
            Self::Crash => "crash",
            Self::Watchdog => "watchdog",
            Self::SoftReset => "soft_reset",
        }
    }
}

impl TryFrom<u32> for ShutdownReason {
    type Error = u32;

    fn try_from(raw: u32) -> Result<Self, u32> {
        Self::from_raw(raw).ok_or(raw)
    }
}

/// Argument of `SCHEDOP_SHUTDOWN` and `SCHEDOP_SHUTDOWN_CODE` (Xen's
/// `struct sched_shutdown`).
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
#[repr(C)]
#[derive(zerocopy::FromBytes, zerocopy::IntoBytes, zerocopy::Immutable, zerocopy::KnownLayout)]
pub struct SchedShutdown {
    /// IN: `SHUTDOWN_*`.
    pub reason: u32,
}

/// Argument of `SCHEDOP_POLL` (Xen's `struct sched_poll`, 24 bytes).
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
#[repr(C)]
pub struct SchedPoll {
    /// IN: virtual address of an array of event-channel ports.
    pub ports: u64,
    /// IN: number of ports in the array.
    pub nr_ports: u32,
    /// IN: absolute system time (ns) at which to give up; 0 for none.
    pub timeout: u64,
}

/// Argument of `SCHEDOP_REMOTE_SHUTDOWN` (Xen's `struct
/// sched_remote_shutdown`, 8 bytes).
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
#[repr(C)]
#[derive(zerocopy::FromBytes, zerocopy::Immutable, zerocopy::KnownLayout)]
pub struct SchedRemoteShutdown {
    /// IN: the domain to shut down.
    pub domain_id: DomId,
    /// IN: `SHUTDOWN_*`.
    pub reason: u32,
}

/// Argument of `SCHEDOP_WATCHDOG` (Xen's `struct sched_watchdog`, 8 bytes).
/// With `id` 0 a new watchdog is created and its id returned; with a non-zero
/// `id`, a zero `timeout` destroys that watchdog and a non-zero one rearms it.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
#[repr(C)]
pub struct SchedWatchdog {
    /// IN: watchdog id, or 0 to create one.
    pub id: u32,
    /// IN: timeout in seconds.
    pub timeout: u32,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_match_xen() {
        let ops = [
            SCHEDOP_YIELD,
            SCHEDOP_BLOCK,
            SCHEDOP_SHUTDOWN,
            SCHEDOP_POLL,
            SCHEDOP_REMOTE_SHUTDOWN,
            SCHEDOP_SHUTDOWN_CODE,
            SCHEDOP_WATCHDOG,
            SCHEDOP_PIN_OVERRIDE,
        ];
        for (i, op) in ops.into_iter().enumerate() {
            assert_eq!(op as usize, i);
        }
        let reasons = [
            SHUTDOWN_POWEROFF,
            SHUTDOWN_REBOOT,
            SHUTDOWN_SUSPEND,
            SHUTDOWN_CRASH,
            SHUTDOWN_WATCHDOG,
            SHUTDOWN_SOFT_RESET,
        ];
        for (i, r) in reasons.into_iter().enumerate() {
            assert_eq!(r as usize, i);
            assert_eq!(ShutdownReason::from_raw(r).map(|r| r as u32), Some(r));
        }
        assert_eq!(SHUTDOWN_MAX, SHUTDOWN_SOFT_RESET);
        assert_eq!(ShutdownReason::try_from(6), Err(6));
        assert_eq!(ShutdownReason::Crash.name(), "crash");
    }

    #[test]
    fn layouts() {
        assert_layout!(SchedShutdown, 4, 4, { reason: 0 });
        assert_layout!(SchedPoll, 24, 8, { ports: 0, nr_ports: 8, timeout: 16 });
        assert_layout!(SchedRemoteShutdown, 8, 4, { domain_id: 0, reason: 4 });
        assert_layout!(SchedWatchdog, 8, 4, { id: 0, timeout: 4 });
    }
}
