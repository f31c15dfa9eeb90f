//! A vCPU's run-state accounting, as Xen keeps it (`struct vcpu_runstate_info`,
//! `vcpu_runstate_change` in `xen/common/sched/core.c`): the state it is in, since when, and
//! the nanoseconds it spent in each state. The scheduler ([`crate::sched`]) reports every
//! change; the hypervisor copies [`Runstate`] to the guest (`VCPUOP_get_runstate_info`, and
//! the area of `VCPUOP_register_runstate_memory_area` when the vCPU is switched in or out).

/// `RUNSTATE_running`: on a pCPU.
pub const RUNNING: u32 = 0;
/// `RUNSTATE_runnable`: may run, waits for a pCPU.
pub const RUNNABLE: u32 = 1;
/// `RUNSTATE_blocked`: waits for an event.
pub const BLOCKED: u32 = 2;
/// `RUNSTATE_offline`: neither (down, paused, parked by its cap).
pub const OFFLINE: u32 = 3;

/// What the guest is shown (Xen's `vcpu_runstate_info`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Runstate {
    /// `RUNNING` … `OFFLINE`.
    pub state: u32,
    /// System time (ns) the state was entered.
    pub entry: u64,
    /// Nanoseconds in each state; they sum to the time since the vCPU was created.
    pub time: [u64; 4],
}

impl Runstate {
    /// Xen's 48-byte layout: `int state`, 4 bytes of padding, `uint64_t state_entry_time`,
    /// `uint64_t time[4]`, little-endian. `updating` sets `XEN_RUNSTATE_UPDATE` (bit 63 of
    /// `state_entry_time`), which a guest that turned on `VMASST_TYPE_runstate_update_flag`
    /// sees while the hypervisor writes the area.
    pub fn to_bytes(&self, updating: bool) -> [u8; 48] {
        let mut b = [0u8; 48];
        b[..4].copy_from_slice(&self.state.to_le_bytes());
        let entry = self.entry | if updating { UPDATE } else { 0 };
        b[8..16].copy_from_slice(&entry.to_le_bytes());
        for (i, t) in self.time.iter().enumerate() {
            b[16 + 8 * i..24 + 8 * i].copy_from_slice(&t.to_le_bytes());
        }
        b
    }
}

/// `XEN_RUNSTATE_UPDATE`: bit 63 of `state_entry_time`.
pub const UPDATE: u64 = 1 << 63;

/// The accounting of one vCPU.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Account {
    now: Runstate,
}

impl Account {
    /// A vCPU created at `at`, in `state`.
    pub const fn new(state: u32, at: u64) -> Self {
        Account {
            now: Runstate {
                state,
                entry: at,
                time: [0; 4],
            },
        }
    }

    /// The vCPU is in `state` from `at` on (nothing changes if it already was). A time
    /// before the current state's entry counts as that entry: the sums never go backwards.
    pub fn change(&mut self, state: u32, at: u64) {
        let r = &mut self.now;
        if state == r.state || state > OFFLINE {
            return;
        }
        let at = at.max(r.entry);
        r.time[r.state as usize] = r.time[r.state as usize].saturating_add(at - r.entry);
        r.state = state;
        r.entry = at;
    }

    /// The accounting as of `at`: the current state's time runs up to `at` (Xen's
    /// `vcpu_runstate_get`).
    pub fn at(&self, at: u64) -> Runstate {
        let mut r = self.now;
        let s = r.state as usize;
        r.time[s] = r.time[s].saturating_add(at.saturating_sub(r.entry));
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_add_up() {
        let mut a = Account::new(OFFLINE, 100);
        a.change(RUNNABLE, 150);
        a.change(RUNNING, 160);
        a.change(RUNNING, 170);
        a.change(BLOCKED, 200);
        let r = a.at(260);
        assert_eq!(r.state, BLOCKED);
        assert_eq!(r.entry, 200);
        assert_eq!(r.time, [40, 10, 60, 50]);
        assert_eq!(r.time.iter().sum::<u64>(), 260 - 100);
    }

    #[test]
    fn never_backwards() {
        let mut a = Account::new(RUNNING, 100);
        a.change(BLOCKED, 90);
        assert_eq!(
            a.at(80),
            Runstate {
                state: BLOCKED,
                entry: 100,
                time: [0; 4]
            }
        );
        a.change(7, 200);
        assert_eq!(a.at(200).state, BLOCKED);
    }

    #[test]
    fn layout_is_xens() {
        let r = Runstate {
            state: RUNNABLE,
            entry: 5,
            time: [1, 2, 3, 4],
        };
        let b = r.to_bytes(true);
        assert_eq!(&b[..8], &[1, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(u64::from_le_bytes(b[8..16].try_into().unwrap()), 5 | UPDATE);
        assert_eq!(u64::from_le_bytes(b[40..48].try_into().unwrap()), 4);
        assert_eq!(
            u64::from_le_bytes(r.to_bytes(false)[8..16].try_into().unwrap()),
            5
        );
    }
}
