//! The locks inside the world: one per domain, one for the scheduler, one for dom0's console
//! input (the order: `crate::lockorder`).
//!
//! The world itself is a reader-writer lock (`guest::read_world`, `guest::lock_world`).
//! Every trap takes it shared; the domain map cannot change while any pCPU holds it, so a
//! domain found in the map stays there until the pCPU lets go, and its lock is all a trap
//! needs to work on it. The control operations that change the map, or act on many domains
//! at once, take the world exclusive, which waits for every pCPU to leave its trap: with the
//! world exclusive, nothing else holds any of these locks, and [`Domains::get_mut`] reaches a
//! domain without locking it.
//!
//! Every wait answers flush requests while it spins (a pCPU holding a lock may be waiting
//! for this one to flush) and is bounded: a lock not given up in 30 s is a bug, and the
//! hypervisor stops saying which lock and which pCPU.

use alloc::boxed::Box;
use core::ops::{Deref, DerefMut, RangeBounds};

use guest_abi::types::DomId;
use xenia_core::maps::IdMap;

use crate::arch::x86_64::{ipi, percpu, smp};
use crate::domain::Domain;
use crate::lockorder::{Held, Level};

/// How long a pCPU waits for a lock before it declares the hypervisor stuck. No path holds
/// one for more than a hypercall's chunk of work (long operations continue).
pub const LOCK_BOUND_US: u64 = 30_000_000;

/// Spins until `take` gives a value, answering flush requests meanwhile; panics, naming
/// `what`, after [`LOCK_BOUND_US`] in which no page-table validation made progress on any
/// pCPU (`mm::ft::validation_progress`). A holder validating a large tree (a domain of many
/// GiB pinning all its tables at once; validation is not preemptible yet) is making
/// progress, not stuck: the waiter keeps waiting, and says so once.
///
/// The first try is inlined into the caller (a lock is almost always free: one
/// compare-and-swap, no call); the wait is `spin_for_slow`.
#[inline]
pub fn spin_for<T>(what: &str, mut take: impl FnMut() -> Option<T>) -> T {
    if let Some(t) = take() {
        return t;
    }
    spin_for_slow(what, take)
}

/// The waiting half of [`spin_for`], after a first try failed.
#[cold]
#[inline(never)]
fn spin_for_slow<T>(what: &str, mut take: impl FnMut() -> Option<T>) -> T {
    let mut got = None;
    let mut said = false;
    loop {
        let progress = crate::mm::ft::validation_progress();
        let came = smp::wait_us(LOCK_BOUND_US, || {
            ipi::service_flush();
            got = take();
            got.is_some()
        });
        if let Some(t) = got.take().filter(|_| came) {
            return t;
        }
        if crate::mm::ft::validation_progress() == progress {
            panic!(
                "cpu {} waited 30 s for the lock of {what}",
                percpu::this().index()
            );
        }
        if !said {
            said = true;
            log::warn!(
                target: "locks",
                "cpu {} has waited 30 s for the lock of {what}: a page-table validation is \
                 still running; waiting on",
                percpu::this().index()
            );
        }
    }
}

/// A spin lock at a level of the lock order.
pub struct Lock<T> {
    level: Level,
    inner: spin::Mutex<T>,
}

/// A [`Lock`], held.
pub struct Guard<'a, T> {
    inner: spin::MutexGuard<'a, T>,
    _held: Held,
}

impl<T> Deref for Guard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.inner
    }
}

impl<T> DerefMut for Guard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        &mut self.inner
    }
}

impl<T> Lock<T> {
    pub const fn new(level: Level, value: T) -> Self {
        Lock {
            level,
            inner: spin::Mutex::new(value),
        }
    }

    /// Takes the lock, waiting (bounded) for it. Inlined: every trap takes its domain's.
    #[inline]
    pub fn lock(&self) -> Guard<'_, T> {
        self.lock_as(self.level)
    }

    /// Takes the lock as `level` (a second domain is [`Level::Domain2`]).
    #[inline]
    pub fn lock_as(&self, level: Level) -> Guard<'_, T> {
        let held = Held::new(level);
        // The first try as `spin_for`'s, with the lock's name looked up only for the wait
        // (its table lookup was about four instructions of every trap; session 19).
        let inner = match self.inner.try_lock() {
            Some(inner) => inner,
            None => spin_for_slow(level_name(level), || self.inner.try_lock()),
        };
        Guard { inner, _held: held }
    }

    /// Takes the lock as `level` if it is free now.
    pub fn try_lock_as(&self, level: Level) -> Option<Guard<'_, T>> {
        let held = Held::new(level);
        self.inner
            .try_lock()
            .map(|inner| Guard { inner, _held: held })
    }

    /// The value, through exclusive access to the lock itself (the world held exclusive).
    pub fn get_mut(&mut self) -> &mut T {
        self.inner.get_mut()
    }

    pub fn into_inner(self) -> T {
        self.inner.into_inner()
    }
}

fn level_name(level: Level) -> &'static str {
    match level {
        Level::World => "the world",
        Level::Domain | Level::Domain2 => "a domain",
        Level::Sched => "the scheduler",
        Level::Input => "the console input",
        Level::Frames => "the frame allocator",
        Level::Console => "the console",
    }
}

/// The domains by id, each behind its own lock (boxed, so a lookup's answer is the box's
/// place, whatever the list does). An `IdMap` (`xenia_core::maps`): a list sorted by id
/// with a hint per id, where every trap's lookup (`lock`, `cell`) takes a few instructions;
/// a `BTreeMap` search took about 40 (issue 18, session 15).
pub struct Domains(IdMap<Box<Lock<Domain>>>);

/// One domain, locked.
pub type DomainGuard<'a> = Guard<'a, Domain>;

impl Domains {
    pub const fn new() -> Self {
        Domains(IdMap::new())
    }

    pub fn contains_key(&self, id: &DomId) -> bool {
        self.0.contains_key(*id)
    }

    /// The ids, in order.
    pub fn ids(&self) -> impl Iterator<Item = DomId> + '_ {
        self.0.keys()
    }

    /// Domain `id`, locked (waiting for it).
    #[inline]
    pub fn lock(&self, id: DomId) -> Option<DomainGuard<'_>> {
        self.cell(id).map(Lock::lock)
    }

    /// Domain `id`'s lock.
    #[inline]
    pub fn cell(&self, id: DomId) -> Option<&Lock<Domain>> {
        self.0.get(id).map(|d| &**d)
    }

    /// Domain `id`, with the world exclusive: no lock needed.
    pub fn get_mut(&mut self, id: &DomId) -> Option<&mut Domain> {
        self.0.get_mut(*id).map(|d| d.get_mut())
    }

    /// Every domain, in id order, with the world exclusive.
    pub fn values_mut(&mut self) -> impl Iterator<Item = &mut Domain> {
        self.0.iter_mut().map(|(_, d)| d.get_mut())
    }

    /// Every domain, in id order, with the world exclusive, as a list (for the walks that
    /// pass over them more than once); `None` if there is no memory for the list.
    pub fn all(&mut self) -> Option<alloc::vec::Vec<&Domain>> {
        let mut all = alloc::vec::Vec::new();
        all.try_reserve_exact(self.0.len()).ok()?;
        // alloc: room reserved just above.
        all.extend(self.0.iter_mut().map(|(_, d)| &*d.get_mut()));
        Some(all)
    }

    /// The domains whose ids are in `range`, in order, with the world exclusive.
    pub fn range_mut(
        &mut self,
        range: impl RangeBounds<DomId>,
    ) -> impl Iterator<Item = (DomId, &mut Domain)> {
        self.0.range_mut(range).map(|(id, d)| (id, d.get_mut()))
    }

    /// Two different domains at once, with the world exclusive.
    pub fn two_mut(&mut self, a: DomId, b: DomId) -> Option<(&mut Domain, &mut Domain)> {
        self.0
            .two_mut(a, b)
            .map(|(x, y)| (x.get_mut(), y.get_mut()))
    }

    /// Adds a domain (the world exclusive); the one it replaces, if `id` was taken.
    pub fn insert(&mut self, id: DomId, dom: Domain) -> Option<Domain> {
        // alloc: dom0 only (domain creation) or boot; one box per domain.
        let boxed = Box::new(Lock::new(Level::Domain, dom));
        // alloc: dom0 only (domain creation) or boot; one list slot per domain.
        self.0.insert(id, boxed).map(|d| (*d).into_inner())
    }

    /// Takes a domain out (the world exclusive).
    pub fn remove(&mut self, id: &DomId) -> Option<Domain> {
        self.0.remove(*id).map(|d| (*d).into_inner())
    }
}

impl Default for Domains {
    fn default() -> Self {
        Self::new()
    }
}
