//! vCPU hot-plug through xenstore, as a Xen PV guest does it (porting guide, "Bringing
//! vCPUs up and down"): the toolstack (`xl vcpu-set`) writes `cpu/<n>/availability` =
//! `online` or `offline` under the domain's home, and the guest, which watches `cpu`,
//! takes vCPU *n* out of use and down (`VCPUOP_down`) or brings it up (`VCPUOP_up`, or
//! `VCPUOP_initialise` and `up` the first time).
//!
//! **Taking a vCPU out of use.** The runtime does not know what a kernel's secondary vCPUs
//! are doing, so a vCPU goes down only at a point where its kernel says it may: at
//! [`park_point`] (which [`idle`] calls every time it wakes). [`Hotplug::poll`] asks (a
//! flag per vCPU), wakes the vCPU with an IPI and waits, at most [`DOWN_WAIT_NS`], until the
//! hypervisor reports it down. The vCPU takes itself down inside `park_point` and, when
//! brought up again, returns from it and carries on. vCPU 0 never goes down (it runs the
//! kernel's main flow and this handler), as on Linux.
//!
//! **When it runs.** [`Hotplug::poll`] is called by the kernel from its main flow on
//! vCPU 0 with events masked, whenever it wakes (the store's channel wakes
//! [`events::block_until`]). Each watch event makes it read every vCPU's node and act on
//! the differences, so events merged or lost (the store drops them for a domain that does
//! not read) cost nothing but a later look.

use core::sync::atomic::{AtomicBool, AtomicU32, Ordering};

use guest_abi::Errno;
use guest_abi::calls;
use guest_abi::xenstore::{VCPU_OFFLINE, VCPU_ONLINE};

use crate::events;
use crate::smp::{self, MAX_VCPUS};
use crate::time::{NS_PER_MS, now_ns, spin_until_or};
use crate::xenbus::Xenbus;

/// How long [`Hotplug::poll`] waits for a vCPU to reach its [`park_point`].
pub const DOWN_WAIT_NS: u64 = 1_000 * NS_PER_MS;

/// Rounds of events one [`Hotplug::poll`] acts on at most.
pub const ROUNDS: usize = 16;

/// The token of the runtime's watch on `cpu`.
pub const TOKEN: &str = "xenia-rt-cpu";

/// vCPU *n* should go down at its next [`park_point`].
static WANT_DOWN: [AtomicBool; MAX_VCPUS] = [const { AtomicBool::new(false) }; MAX_VCPUS];
/// An IPI port that wakes vCPU *n* (0: not bound yet).
static KICK: [AtomicU32; MAX_VCPUS] = [const { AtomicU32::new(0) }; MAX_VCPUS];

/// Where a secondary vCPU may be taken down: if [`Hotplug::poll`] asked, it goes down here
/// (`VCPUOP_down` on itself) and returns once brought up again.
pub fn park_point(vcpu: u32) {
    let Some(want) = WANT_DOWN.get(vcpu as usize) else {
        return;
    };
    while vcpu != 0 && want.load(Ordering::SeqCst) {
        // Returns when the vCPU is up again (guest-abi `calls::vcpu_down`).
        let _ = calls::vcpu_down(vcpu);
    }
}

/// A secondary vCPU with nothing to do: sleeps until an event, and goes down when asked.
/// Give it to [`smp::start`] (and to [`Hotplug::new`], for vCPUs started later).
pub fn idle(vcpu: u32) -> ! {
    loop {
        park_point(vcpu);
        events::block_until(None);
    }
}

/// What [`Hotplug::poll`] did to one vCPU.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Change {
    /// It went down.
    Down(u32),
    /// It came up.
    Up(u32),
    /// It did not reach its park point in time (it will go down when it does).
    Late(u32),
    /// The hypervisor refused (the errno).
    Failed(u32, Errno),
}

/// The handler: the store connection and what a vCPU started for the first time runs.
pub struct Hotplug {
    bus: Xenbus,
    entry: fn(u32) -> !,
    nr_vcpus: u32,
}

impl Hotplug {
    /// Watches `cpu` on `bus`; vCPUs brought up for the first time start at `entry`
    /// (usually [`idle`]).
    pub fn new(mut bus: Xenbus, entry: fn(u32) -> !) -> Result<Self, Errno> {
        bus.watch("cpu", TOKEN)?;
        Ok(Self {
            bus,
            entry,
            nr_vcpus: smp::nr_vcpus().min(MAX_VCPUS as u32),
        })
    }

    /// The store connection, for the kernel's own requests.
    pub fn bus(&mut self) -> &mut Xenbus {
        &mut self.bus
    }

    /// Acts on the watch events that arrived; `report` is told of every change. Events
    /// that arrive while it reads the nodes are acted on too (their notification was taken
    /// with the replies, so no later wake-up would bring them), for at most [`ROUNDS`]
    /// rounds; returns whether some are still waiting (then call it again before sleeping).
    pub fn poll(&mut self, mut report: impl FnMut(Change)) -> bool {
        for _ in 0..ROUNDS {
            let mut fired = false;
            while let Some(e) = self.bus.next_event() {
                fired |= e.token() == TOKEN;
            }
            if !fired {
                return false;
            }
            self.reconcile(&mut report);
        }
        self.bus.has_events()
    }

    /// Reads every vCPU's node and takes down or brings up those that differ.
    fn reconcile(&mut self, report: &mut impl FnMut(Change)) {
        for n in 1..self.nr_vcpus {
            let mut value = [0u8; 16];
            let Ok(len) = self.bus.read(path_of(n).as_str(), &mut value) else {
                continue;
            };
            let value = &value[..len.min(value.len())];
            let up = calls::vcpu_is_up(n) == Ok(true);
            if value == VCPU_OFFLINE.as_bytes() && up {
                report(self.take_down(n));
            } else if value == VCPU_ONLINE.as_bytes() && !up {
                report(self.bring_up(n));
            }
        }
    }

    fn take_down(&mut self, n: u32) -> Change {
        let i = n as usize;
        WANT_DOWN[i].store(true, Ordering::SeqCst);
        let mut port = KICK[i].load(Ordering::SeqCst);
        if port == 0 {
            match events::bind_ipi(n) {
                Ok(p) => {
                    KICK[i].store(p, Ordering::SeqCst);
                    port = p;
                }
                Err(e) => return Change::Failed(n, e),
            }
        }
        let _ = calls::evtchn_send(port);
        let down = spin_until_or(now_ns() + DOWN_WAIT_NS, || {
            calls::vcpu_is_up(n) == Ok(false)
        });
        if down {
            Change::Down(n)
        } else {
            Change::Late(n)
        }
    }

    fn bring_up(&mut self, n: u32) -> Change {
        WANT_DOWN[n as usize].store(false, Ordering::SeqCst);
        let r = match smp::restart(n) {
            // Never initialised: its first start.
            Err(Errno::EINVAL) => smp::start(n, self.entry),
            r => r,
        };
        match r {
            Ok(()) => Change::Up(n),
            Err(e) => Change::Failed(n, e),
        }
    }
}

/// `cpu/<n>/availability`, without a heap.
fn path_of(n: u32) -> PathBuf {
    let mut p = PathBuf {
        bytes: [0; 32],
        len: 0,
    };
    p.push(b"cpu/");
    let mut digits = [0u8; 10];
    let mut k = digits.len();
    let mut v = n;
    loop {
        k -= 1;
        digits[k] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    p.push(&digits[k..]);
    p.push(b"/availability");
    p
}

struct PathBuf {
    bytes: [u8; 32],
    len: usize,
}

impl PathBuf {
    fn push(&mut self, s: &[u8]) {
        let n = s.len().min(self.bytes.len() - self.len);
        self.bytes[self.len..self.len + n].copy_from_slice(&s[..n]);
        self.len += n;
    }

    fn as_str(&self) -> &str {
        core::str::from_utf8(&self.bytes[..self.len]).unwrap_or("")
    }
}
