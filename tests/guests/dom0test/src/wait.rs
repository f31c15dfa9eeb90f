//! Waiting without spinning: dom0 shares the pCPU with the domains it measures, so it sleeps
//! in `SCHEDOP_block` with `set_timer_op` set, woken by `VIRQ_TIMER` or `VIRQ_DOM_EXC` (a
//! domain changed state). Events stay masked outside the block; `SCHEDOP_block` unmasks them
//! atomically with blocking, and the runtime's event callback counts what arrived before the
//! call returns.
//!
//! Also here: reading the hypervisor's console ring (`sysctl readconsole`), where the domUs'
//! `console_io` lines land as `(d<id>) <line>`, so that dom0 can see what a domU reported.

use alloc::string::String;
use alloc::vec::Vec;

use guest_abi::Errno;
use guest_abi::calls;
use guest_abi::domctl::DomctlGetdomaininfo;
use guest_abi::event::{EvtchnPort, VIRQ_DOM_EXC, VIRQ_TIMER};
use guest_abi::types::DomId;
use xenia_guest_rt::events;
use xenia_guest_rt::time::{NS_PER_MS, now_ns};

use crate::hv::{Recorded, Xenia};

/// How often a wait for a domain's state looks again even without `VIRQ_DOM_EXC`.
pub const POLL_NS: u64 = 50 * NS_PER_MS;

/// dom0's two wake-up sources.
pub struct Waiter {
    /// `VIRQ_TIMER`'s port.
    pub timer: EvtchnPort,
    /// `VIRQ_DOM_EXC`'s port.
    pub dom_exc: EvtchnPort,
}

impl Waiter {
    /// Masks events and binds `VIRQ_TIMER` and `VIRQ_DOM_EXC` on vCPU 0.
    pub fn new() -> Result<Self, (&'static str, Errno)> {
        events::mask();
        let timer = events::bind_virq(VIRQ_TIMER).map_err(|e| ("bind VIRQ_TIMER", e))?;
        let dom_exc = events::bind_virq(VIRQ_DOM_EXC).map_err(|e| ("bind VIRQ_DOM_EXC", e))?;
        Ok(Self { timer, dom_exc })
    }

    /// Blocks once: until an event arrives or system time `deadline`, whichever is first.
    /// Returns the time it woke.
    pub fn block_until(&self, deadline: u64) -> u64 {
        if now_ns() < deadline {
            let _ = calls::set_timer_op(deadline);
            let _ = calls::sched_block();
            events::mask();
        }
        now_ns()
    }

    /// Sleeps until system time `deadline` (through any number of other events); returns the
    /// time it woke, at or after the deadline.
    pub fn sleep_until(&self, deadline: u64) -> u64 {
        loop {
            let now = self.block_until(deadline);
            if now >= deadline {
                return now;
            }
        }
    }

    /// Sleeps `ns` nanoseconds; returns the time it woke.
    pub fn sleep(&self, ns: u64) -> u64 {
        self.sleep_until(now_ns() + ns)
    }

    /// Has the hypervisor deliver events that became pending while they were masked, so the
    /// counters are up to date.
    pub fn deliver_pending(&self) {
        events::unmask_and_deliver();
        events::mask();
    }

    /// `VIRQ_TIMER` events handled so far.
    pub fn timer_events(&self) -> u32 {
        events::count(self.timer)
    }

    /// `VIRQ_DOM_EXC` events handled so far.
    pub fn dom_exc_seen(&self) -> u32 {
        events::count(self.dom_exc)
    }

    /// Waits until `dom` has shut down (its `getdomaininfo` shows `XEN_DOMINF_SHUTDOWN`) or
    /// system time `deadline` passes; returns its last `getdomaininfo`, and whether it had
    /// shut down.
    pub fn wait_shutdown(
        &self,
        hv: &mut Xenia,
        dom: DomId,
        deadline: u64,
    ) -> Result<(DomctlGetdomaininfo, bool), Errno> {
        loop {
            let info = hv.domain_info(dom)?;
            if info.shutdown_reason().is_some() {
                return Ok((info, true));
            }
            let now = now_ns();
            if now >= deadline {
                return Ok((info, false));
            }
            self.block_until(deadline.min(now + POLL_NS));
        }
    }

    /// Waits until `dom` no longer exists (`getdomaininfo` answers `ESRCH`) or system time
    /// `deadline` passes; returns whether it has gone, and its last flags if not.
    pub fn wait_gone(&self, hv: &mut Xenia, dom: DomId, deadline: u64) -> (bool, u32) {
        loop {
            let flags = match hv.domain_info(dom) {
                Err(Errno::ESRCH) => {
                    hv.clear_failure();
                    return (true, 0);
                }
                Err(_) => 0,
                Ok(info) => info.flags,
            };
            let now = now_ns();
            if now >= deadline {
                return (false, flags);
            }
            self.block_until(deadline.min(now + POLL_NS / 5));
        }
    }
}

/// Most `readconsole` calls one [`ConsoleLog::read_new`] makes.
const MAX_READS: usize = 64;

/// A reader of the hypervisor's console ring that continues where it left off.
pub struct ConsoleLog {
    index: u32,
}

impl ConsoleLog {
    /// A reader positioned after everything logged so far.
    pub fn now(hv: &mut Xenia) -> Result<Self, Errno> {
        let mut log = Self { index: 0 };
        log.read_new(hv)?;
        Ok(log)
    }

    /// Everything logged since the last read.
    pub fn read_new(&mut self, hv: &mut Xenia) -> Result<Vec<u8>, Errno> {
        let mut out = Vec::new();
        let mut buf = alloc::vec![0u8; 4096];
        // The ring holds 64 KiB; a reader that has not caught up after many full buffers is
        // chasing a writer faster than itself, and stops rather than loop forever.
        for _ in 0..MAX_READS {
            let (n, next) = hv.read_console(Some(self.index), false, &mut buf)?;
            self.index = next;
            out.extend_from_slice(&buf[..n]);
            if n < buf.len() {
                break;
            }
        }
        Ok(out)
    }

    /// The lines of `text` that domain `dom` wrote (`(d<dom>) ` prefix removed).
    pub fn lines_of(text: &[u8], dom: DomId) -> Vec<String> {
        let prefix = alloc::format!("(d{dom}) ");
        text.split(|&b| b == b'\n')
            .filter_map(|line| line.strip_prefix(prefix.as_bytes()))
            .map(|l| String::from_utf8_lossy(l).trim_end().into())
            .collect()
    }
}
