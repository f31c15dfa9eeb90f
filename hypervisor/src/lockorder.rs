//! The lock order, written once, and its check in builds with debug assertions (the
//! `checked` profile: `cargo xtask build` makes `xenia-checked.elf`, and the scenario
//! `smp_lockcheck_4` runs dom0 and SMP guests on it).
//!
//! A pCPU may take a lock only while it holds none of the same or a later [`Level`]:
//!
//! 1. [`Level::World`]: the domain map, shared by every trap (`guest::read_world`) or
//!    exclusive for the control operations that change it (`guest::lock_world`);
//! 2. [`Level::Domain`]: one domain (`guest::locks::Domains::lock`);
//! 3. [`Level::Domain2`]: a second domain, while the first is held: only one with a higher
//!    id is waited for; one with a lower id is only tried, and a hypercall that finds it
//!    taken runs again with the world exclusive (`guest::context::Hc::pair`);
//! 4. [`Level::Sched`]: the scheduler (`World::sched`);
//! 5. [`Level::Input`]: the console input waiting for dom0 (`World::input`);
//! 6. [`Level::Frames`]: the frame allocator (`mm::frames`);
//! 7. [`Level::Console`]: the console (`console`).
//!
//! The frame table has no lock: each frame's record is atomic words, changed only on its
//! owner's behalf with the owner's domain lock held or the world exclusive
//! ([`may_change_frames`] checks that at every use).
//!
//! The heap's lock (inside `buddy_system_allocator`) is a leaf below all of these: it takes
//! the frame allocator only with `try_lock`, which cannot wait. Flush requests and kicks
//! take no lock (`arch::x86_64::ipi`), which is what lets a pCPU that holds the world lock
//! wait for the others.
//!
//! Each pCPU keeps the levels it holds in its `PerCpu`; taking a lock out of order panics
//! with both levels named, at the first such acquisition, whether or not another pCPU
//! happened to race it. Without debug assertions all of this compiles to nothing.

use core::sync::atomic::Ordering;

/// Lock levels, in the order they may be taken.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    World = 0,
    Domain = 1,
    Domain2 = 2,
    Sched = 3,
    Input = 4,
    Frames = 5,
    Console = 6,
}

/// Every level, in order (for the message of a failed check).
const LEVELS: [Level; 7] = [
    Level::World,
    Level::Domain,
    Level::Domain2,
    Level::Sched,
    Level::Input,
    Level::Frames,
    Level::Console,
];

/// A level held by this pCPU until dropped (taken just before the lock itself).
pub struct Held(Level);

/// This pCPU's data once it is reachable (never in host builds, where nothing is checked).
#[cfg(target_os = "none")]
fn cpu() -> Option<&'static crate::arch::x86_64::percpu::PerCpu> {
    crate::arch::x86_64::percpu::this_if_ready()
}

#[cfg(not(target_os = "none"))]
fn cpu() -> Option<&'static HostCpu> {
    None
}

/// What host builds stand in for a `PerCpu` with (never made).
#[cfg(not(target_os = "none"))]
struct HostCpu {
    locks_held: core::sync::atomic::AtomicU32,
}

#[cfg(not(target_os = "none"))]
impl HostCpu {
    fn index(&self) -> usize {
        0
    }
}

impl Held {
    /// Records that this pCPU takes a lock of `level`; panics (with debug assertions) if it
    /// holds one of the same or a later level.
    pub fn new(level: Level) -> Held {
        if cfg!(debug_assertions)
            && let Some(cpu) = cpu()
        {
            let bit = 1u32 << level as u32;
            let held = cpu.locks_held.load(Ordering::Relaxed);
            // Every bit at `level` or after it.
            let later = held & !(bit - 1);
            if later != 0 {
                let first = later.trailing_zeros();
                panic!(
                    "lock order: cpu {} takes {level:?} while holding {:?} (order: {LEVELS:?})",
                    cpu.index(),
                    LEVELS.get(first as usize)
                );
            }
            cpu.locks_held.fetch_or(bit, Ordering::Relaxed);
        }
        Held(level)
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        if cfg!(debug_assertions)
            && let Some(cpu) = cpu()
        {
            cpu.locks_held
                .fetch_and(!(1u32 << self.0 as u32), Ordering::Relaxed);
        }
    }
}

/// Whether the checks below apply: set once the first guest is about to run (the boot
/// builds dom0 on one pCPU, before any guest could race it, with no lock held).
static GUESTS_RUN: core::sync::atomic::AtomicBool = core::sync::atomic::AtomicBool::new(false);

/// From now on [`may_change_frames`] holds pCPUs to the frame table's rule.
pub fn guests_run() {
    GUESTS_RUN.store(true, Ordering::SeqCst);
}

/// Whether this pCPU may change frame-table records: it holds a domain lock, or the world
/// exclusive (held by this pCPU while the world is write-locked: no reader can be inside
/// then), or guests do not run yet. Always true without debug assertions (nothing is
/// recorded) and in host builds.
pub fn may_change_frames() -> bool {
    if !cfg!(debug_assertions) || !GUESTS_RUN.load(Ordering::SeqCst) {
        return true;
    }
    let Some(cpu) = cpu() else {
        return true;
    };
    let held = cpu.locks_held.load(Ordering::Relaxed);
    let domain = 1 << Level::Domain as u32 | 1 << Level::Domain2 as u32;
    held & domain != 0 || (held & 1 << Level::World as u32 != 0 && world_exclusive())
}

#[cfg(target_os = "none")]
fn world_exclusive() -> bool {
    crate::guest::world_write_locked()
}

#[cfg(not(target_os = "none"))]
fn world_exclusive() -> bool {
    true
}
