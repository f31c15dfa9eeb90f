//! What happens when a domain xl created shuts down (the dom0 kernel carries it out).
//!
//! The guest's shutdown reason picks one of the config's `on_poweroff`,
//! `on_reboot` and `on_crash` actions, as in Xen's xl: a watchdog expiry
//! and a reason xl does not know destroy the domain (xl's defaults), a
//! suspend is left alone (it is the save path's business). Restarting is
//! rate-limited so a kernel that crashes at boot does not spin the
//! machine: a domain that restarts too often within a window is kept
//! (preserved) for inspection instead, with a message saying so.

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use crate::xlcfg::{Action, DomainSpec};
use guest_abi::sched::{
    SHUTDOWN_CRASH, SHUTDOWN_POWEROFF, SHUTDOWN_REBOOT, SHUTDOWN_SOFT_RESET, SHUTDOWN_SUSPEND,
    SHUTDOWN_WATCHDOG,
};

/// What to do about a domain that shut down.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Nothing: the domain stays as it is (suspend).
    Leave,
    /// Carry out this action.
    Act(Action),
}

/// The word xl prints for a shutdown reason.
pub fn reason_name(reason: u32) -> &'static str {
    match reason {
        SHUTDOWN_POWEROFF => "poweroff",
        SHUTDOWN_REBOOT => "reboot",
        SHUTDOWN_SUSPEND => "suspend",
        SHUTDOWN_CRASH => "crash",
        SHUTDOWN_WATCHDOG => "watchdog",
        SHUTDOWN_SOFT_RESET => "soft_reset",
        _ => "unknown",
    }
}

/// The configured response to a shutdown with `reason`.
pub fn decide(spec: &DomainSpec, reason: u32) -> Decision {
    match reason {
        SHUTDOWN_POWEROFF => Decision::Act(spec.on_poweroff),
        SHUTDOWN_REBOOT => Decision::Act(spec.on_reboot),
        SHUTDOWN_CRASH => Decision::Act(spec.on_crash),
        // xl's on_soft_reset has no equivalent yet; a soft reset is a
        // reboot that keeps memory, so the reboot action is the nearest.
        SHUTDOWN_SOFT_RESET => Decision::Act(spec.on_reboot),
        SHUTDOWN_SUSPEND => Decision::Leave,
        // SHUTDOWN_WATCHDOG and anything unknown: xl destroys.
        _ => Decision::Act(Action::Destroy),
    }
}

/// Restarts allowed within [`RESTART_WINDOW_S`] before a domain is kept
/// instead of restarted again.
pub const MAX_RESTARTS: usize = 5;
/// The window, in seconds, over which restarts are counted.
pub const RESTART_WINDOW_S: u64 = 60;

/// Recent restarts of one domain configuration, to stop restart loops.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RestartGuard {
    /// Times (seconds, any monotonic clock) of the restarts within the window.
    recent: Vec<u64>,
}

impl RestartGuard {
    /// Whether a restart at `now` is allowed; records it when it is.
    pub fn allow(&mut self, now: u64) -> bool {
        self.recent
            .retain(|&t| now.saturating_sub(t) < RESTART_WINDOW_S);
        if self.recent.len() >= MAX_RESTARTS {
            return false;
        }
        self.recent.push(now);
        true
    }

    /// The final decision, after the restart guard: a restart refused by the
    /// guard becomes `Preserve`, with the message to print.
    pub fn apply(
        &mut self,
        decision: Decision,
        name: &str,
        now: u64,
    ) -> (Decision, Option<String>) {
        match decision {
            Decision::Act(Action::Restart) if !self.allow(now) => (
                Decision::Act(Action::Preserve),
                Some(format!(
                    "domain \"{name}\" restarted {MAX_RESTARTS} times within {RESTART_WINDOW_S} s; \
                     keeping it shut down for inspection (xl destroy {name} to remove it)"
                )),
            ),
            other => (other, None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> DomainSpec {
        let text = b"name = \"g\"\nkernel = \"/boot/g.elf\"\nmemory = 16\n\
            on_poweroff = \"destroy\"\non_reboot = \"restart\"\non_crash = \"preserve\"\n";
        crate::xlcfg::parse_domain_config("g.cfg", text, &[])
            .unwrap()
            .spec
    }

    #[test]
    fn reasons_pick_actions() {
        let s = spec();
        assert_eq!(
            decide(&s, SHUTDOWN_POWEROFF),
            Decision::Act(Action::Destroy)
        );
        assert_eq!(decide(&s, SHUTDOWN_REBOOT), Decision::Act(Action::Restart));
        assert_eq!(decide(&s, SHUTDOWN_CRASH), Decision::Act(Action::Preserve));
        assert_eq!(
            decide(&s, SHUTDOWN_SOFT_RESET),
            Decision::Act(Action::Restart)
        );
        assert_eq!(decide(&s, SHUTDOWN_SUSPEND), Decision::Leave);
        assert_eq!(
            decide(&s, SHUTDOWN_WATCHDOG),
            Decision::Act(Action::Destroy)
        );
        assert_eq!(decide(&s, 77), Decision::Act(Action::Destroy));
        assert_eq!(reason_name(SHUTDOWN_CRASH), "crash");
        assert_eq!(reason_name(77), "unknown");
    }

    #[test]
    fn restart_loops_are_stopped() {
        let mut g = RestartGuard::default();
        let restart = Decision::Act(Action::Restart);
        for t in 0..MAX_RESTARTS as u64 {
            assert_eq!(g.apply(restart, "g", t), (restart, None));
        }
        let (d, msg) = g.apply(restart, "g", 10);
        assert_eq!(d, Decision::Act(Action::Preserve));
        assert!(msg.unwrap().contains("xl destroy g"));
        // Other actions are untouched by the guard.
        let destroy = Decision::Act(Action::Destroy);
        assert_eq!(g.apply(destroy, "g", 11), (destroy, None));
        // Once the early restarts leave the window, restarting is allowed again.
        assert_eq!(g.apply(restart, "g", RESTART_WINDOW_S), (restart, None));
    }
}
