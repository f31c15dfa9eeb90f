//! Per-pCPU state, found through the entry area (DESIGN.md §10).
//!
//! The entry area sits at the same virtual address on every pCPU and is backed by different
//! frames on each. One of its pages, at `entry::PERCPU_OFFSET`, holds that pCPU's
//! [`PerCpu`], and is mapped in the hypervisor root only: the entry stubs read it once they
//! run on the hypervisor root, and Rust code reaches it with [`this`]. No `swapgs`, no GS
//! base games, nothing per-pCPU in a global `static`.
//!
//! DESIGN.md §10 puts a pointer to this data in the read-only CPU page; Xenia keeps the data
//! itself in a page of the entry area that guest roots do not map instead, because the CPU
//! page is readable from ring 1 and must show a guest no hypervisor address (issue 10's
//! finding F7, which the attack suite checks). The effect is the same: one address, a
//! different frame per pCPU.
//!
//! Another pCPU reaches a `PerCpu` through the direct map ([`of`]): to ask it for a TLB
//! flush or a reschedule ([`PerCpu::requests`], then an IPI), or to see which vCPU it runs.
//! Every field is an atomic, so no lock is needed for either; what a pCPU's fields mean
//! (which vCPU's registers it holds) changes only under the world lock.

use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};

use guest_abi::types::DomId;

/// The `current` and `run_until` value meaning "none".
const NONE: u64 = u64::MAX;

/// Guest roots a pCPU keeps copied (two address spaces ping-ponging, or two vCPUs sharing
/// the pCPU, switch without a copy). Six: two Xen PV processes taking turns use four (each
/// its kernel and its user table, in a cycle that three slots taken in turn would miss
/// every time: a 4 KiB copy at each change of mode), and dom0 one more.
pub const ROOT_SLOTS: usize = 6;

/// One pCPU's hypervisor data. The first two fields are read by the entry stubs at fixed
/// [`PerCpu::entered_mode`]: a vCPU of Xenia's ring-1 ABI.
pub const MODE_RING1: u8 = 0;
/// [`PerCpu::entered_mode`]: a Xen PV vCPU in kernel mode.
pub const MODE_XEN_PV_KERNEL: u8 = 1;
/// [`PerCpu::entered_mode`]: a Xen PV vCPU in user mode.
pub const MODE_XEN_PV_USER: u8 = 2;
/// [`PerCpu::entered_mode`], added to the Xen PV modes: the entry stub takes this vCPU's
/// system calls and `iret` hypercalls itself when it can (`entry.rs`, `xenia_pv_fast`; the
/// `xenpv_fastpath=` option, on by default). The mode proper is the value less this.
pub const MODE_FAST: u8 = 4;

/// offsets (asserted below).
#[repr(C)]
pub struct PerCpu {
    /// Top of this pCPU's hypervisor stack; a guest's registers live just below it.
    pub hv_stack_top: AtomicU64,
    /// CR3 value of this pCPU's guest root (the exit path loads it).
    pub guest_cr3: AtomicU64,
    /// This pCPU's number (the scheduler's pCPU index).
    index: AtomicU64,
    /// The vCPU whose registers are at the top of this pCPU's hypervisor stack, as
    /// `dom << 32 | vcpu`, or [`NONE`].
    current: AtomicU64,
    /// When the scheduler wants to decide again on this pCPU, or [`NONE`].
    run_until: AtomicU64,
    /// Machine address of this pCPU's guest-root frame (0 until first used).
    pub guest_root: AtomicU64,
    /// Machine address of the guest L4 that the guest root copies (0: none yet).
    pub guest_root_source: AtomicU64,
    /// The guest roots this pCPU keeps (`entry::load_guest_root`): slot 0's frame is
    /// `guest_root`, the others' are here (0: none); for each slot, the L4 it copies (0:
    /// none) and the frame table's generation when it was copied.
    pub root_frames: [AtomicU64; ROOT_SLOTS],
    pub root_sources: [AtomicU64; ROOT_SLOTS],
    pub root_generations: [AtomicU64; ROOT_SLOTS],
    /// The slot the next copy goes to.
    pub root_next: AtomicU64,
    /// The slots of the last two roots loaded, `previous << 8 | last`: a Xen PV vCPU's
    /// system call goes from the user table to the kernel's and back, so the root wanted
    /// next is most often the one before the last (`entry::load_guest_root` looks there
    /// first).
    pub root_recent: AtomicU64,
    /// The slot-257 (entry area) entries of this pCPU's hypervisor and guest roots.
    pub hv_slot_entry: AtomicU64,
    pub guest_slot_entry: AtomicU64,
    /// The local APIC timer fired since the last look.
    pub ticked: AtomicBool,
    /// This pCPU's local APIC ID (where IPIs for it go).
    pub apic_id: AtomicU32,
    /// When this pCPU's timer fires next (system time, ns), `u64::MAX` if it is off: another
    /// pCPU that finds an earlier deadline for this one's vCPUs kicks it to re-arm.
    pub armed: AtomicU64,
    /// No timer of a vCPU homed on this pCPU (queued on it or last run by it) falls due
    /// before this (system time, ns; a lower bound). Timer setters lower it; the timer walk,
    /// which runs only once some pCPU's bound is reached, sets it anew
    /// (`guest::timer_set`, `World::run_timers`).
    pub timer_due: AtomicU64,
    /// The deadline this pCPU's local APIC timer was last programmed for (system time, ns;
    /// `u64::MAX`: disarmed; 0: it fired since, see `apic::timer_fired`): a plan that
    /// arrives at the same future deadline leaves the timer alone (`guest::program_timer`),
    /// sparing every trap two APIC writes.
    pub programmed: AtomicU64,
    /// The vCPU this pCPU returned to had an event pending and unmasked that it could not
    /// take (no event callback): other pCPUs do not kick it for events (`kick_for_events`).
    pub entered_pending: AtomicBool,
    /// The lock levels this pCPU holds (`lockorder`, debug assertions only).
    pub locks_held: AtomicU32,
    /// What other pCPUs asked of this one ([`REQ_FLUSH`], [`REQ_KICK`]); the asker sets a
    /// bit, then sends the IPI; this pCPU clears a bit once it has done what it asks.
    pub requests: AtomicU32,
    /// The `vcpu_info` of the vCPU the last way out of a trap returned to (none since this
    /// pCPU last let go of a vCPU): what the hypercalls answered before any lock read
    /// (`guest::fast`).
    pub entered_info: crate::mm::physmem::ViewCell<guest_abi::shared_info::VcpuInfo>,
    /// What a SYSCALL answered before any lock needs of that vCPU (`guest::fast::light_syscall`,
    /// and for a Xen PV vCPU the entry stub, `xenia_pv_fast`), as the last way out found it
    /// (valid while `entered_info` is set): its syscall callback (0: none, or not canonical),
    /// whether entering it masks events, its ring-1 (or Xen PV kernel) stack for entries from
    /// ring 3 (0: none), and its top-level table. Only that vCPU's own hypercalls change
    /// them, and each of those ends in a way out that records them again (or, for
    /// `stack_switch` on its short way, records the stack itself).
    pub entered_syscall: AtomicU64,
    pub entered_syscall_masks: AtomicBool,
    pub entered_kernel_sp: AtomicU64,
    pub entered_l4: AtomicU64,
    /// The guest mode of that vCPU as the last way out (or the entry stub) left it
    /// ([`MODE_RING1`], [`MODE_XEN_PV_KERNEL`], [`MODE_XEN_PV_USER`], the last two plus
    /// [`MODE_FAST`] when the entry stub takes its system calls): a `syscall` from a Xen PV
    /// kernel is a hypercall (`trap::guest_trap_dispatch`); the trap path checks again under
    /// the lock, and the entry stub against `Vcpu::kernel_mode`.
    pub entered_mode: core::sync::atomic::AtomicU8,
    /// Where the entry stub writes a system call's bounce frame for that vCPU, as the
    /// last way out found it ([`PerCpu::set_bounce_place`], the only writer): `entered_kernel_sp`
    /// 16-byte aligned, less the frame's seven words, if that is not 0 and the frame lies in
    /// one page (else 0); and that page's key as `words_page` keeps it when found writable
    /// (`u64::MAX`, which no key is, when there is none).
    pub(super) bounce_sp: AtomicU64,
    pub(super) bounce_key: AtomicU64,
    /// The guest-root slots (`root_frames`) the entry stub loaded last for that vCPU's user
    /// and kernel tables: where it looks first.
    pub fast_root_slots: [core::sync::atomic::AtomicU8; 2],
    /// The `Vcpu` of that vCPU, by address (valid while `entered_info` is set: the vCPU is
    /// this pCPU's current one, and a domain's `vcpus` never move): the entry stub reads its
    /// mode, tables, stack and callback there, and changes its mode, as the short ways do
    /// under the domain's lock (the argument is at `xenia_pv_fast`).
    pub fast_vcpu: AtomicU64,
    /// Where the frame table's two generations are (`mm::ft::generation_cells`), for the
    /// entry stub's checks of the kept kernel-stack page and guest roots.
    pub generation_at: AtomicU64,
    pub root_generation_at: AtomicU64,
    /// The last kernel-stack page a Xen PV short way wrote or read words in
    /// (`guest::fast_pv::guest_words`): its guest address with bit 0 set and bit 1 when it
    /// was found writable plain memory (0: none), the top-level table and domain it was
    /// found through, the frame table's generation then, the page's address in the direct
    /// map, and its guest address with bits 0 and 1 set (0: none), the key a read compares.
    pub words_page: [AtomicU64; 6],
    /// The domain whose registers the entry stubs may have left on this pCPU's entry-area
    /// stacks, plus one (0: none): `entry::scrub_entry_stacks` runs before another domain's
    /// vCPU runs here.
    pub stacks_of: AtomicU32,
    /// The frame behind each page of this pCPU's GDT in its entry area, as
    /// `entry::map_gdt_page` last mapped it (0: not known, map again), and this pCPU's own
    /// page 0 (Xenia's descriptors, its TSS descriptor): `gdt::load_for` maps a Xen PV
    /// vCPU's own GDT frames there and the own page back for everyone else.
    pub gdt_pages: [AtomicU64; super::entry::GDT_PAGES as usize],
    pub own_gdt_page: AtomicU64,
    /// The same for the LDT area's pages (`entry::map_ldt_page`), and the LDT limit plus
    /// one that LDTR holds (0: no LDT loaded).
    pub ldt_pages: [AtomicU64; super::entry::LDT_PAGES as usize],
    pub ldt_loaded: AtomicU64,
    /// Idle accounting (`XEN_SYSCTL_getcpuinfo`, see [`PerCpu::idle_ns`]): nanoseconds of
    /// system time this pCPU spent halted in the idle loop, the idle period under way
    /// (its start, 0: none), and a sequence count that is odd while this pCPU changes the
    /// two (only this pCPU writes them).
    idle_total: AtomicU64,
    idle_since: AtomicU64,
    idle_seq: AtomicU64,
}

/// Request: drop every guest translation (recopy the guest root from the running vCPU's
/// L4, flush the TLB), then clear the bit; the asker waits for that.
pub const REQ_FLUSH: u32 = 1 << 0;
/// Request: ask the scheduler again at the next chance (a vCPU woke for this pCPU, the one
/// it runs was paused, or an event waits for it).
pub const REQ_KICK: u32 = 1 << 1;
/// Not a request but a standing state, kept in the same word so that one look sees it:
/// pCPU 0 polls the console at every trap (COM1's interrupt is not routed), so none of its
/// traps leaves quietly (`guest::fast`). Cleared once the interrupt is routed.
pub const REQ_POLL: u32 = 1 << 2;

/// Where each pCPU's `PerCpu` is in the direct map (0: no such pCPU), by index.
static ALL: [AtomicU64; super::smp::MAX_CPUS] = [const { AtomicU64::new(0) }; super::smp::MAX_CPUS];

/// Records where pCPU `index`'s `PerCpu` lives (its page, initialised), so that [`of`] finds
/// it. An index out of range is ignored (`smp::MAX_CPUS` bounds the CPUs started).
pub fn register(index: u64, at: u64) {
    if let Some(slot) = ALL.get(index as usize) {
        slot.store(at, Ordering::SeqCst);
    }
}

/// pCPU `index`'s data, if it was set up.
pub fn of(index: usize) -> Option<&'static PerCpu> {
    let at = ALL.get(index)?.load(Ordering::SeqCst);
    if at == 0 {
        return None;
    }
    // SAFETY: `register` stored the direct-map address of an initialised `PerCpu` page that
    // stays allocated and mapped for the hypervisor's whole run; it is only accessed through
    // atomics.
    Some(unsafe { &*(at as *const PerCpu) })
}

const _: () = {
    // The entry stub sends a mode above MODE_FAST to its short way, and the trap path takes
    // the mode less MODE_FAST: both need the modes below it and MODE_FAST a bit of its own.
    assert!(MODE_RING1 < MODE_FAST && MODE_XEN_PV_KERNEL < MODE_FAST);
    assert!(MODE_XEN_PV_USER < MODE_FAST && MODE_FAST.is_power_of_two());
    assert!((MODE_XEN_PV_KERNEL | MODE_XEN_PV_USER) & MODE_FAST == 0);
    assert!(core::mem::offset_of!(PerCpu, hv_stack_top) == 0);
    assert!(core::mem::offset_of!(PerCpu, guest_cr3) == 8);
};

impl PerCpu {
    pub const fn new(index: u64) -> PerCpu {
        PerCpu {
            hv_stack_top: AtomicU64::new(0),
            guest_cr3: AtomicU64::new(0),
            index: AtomicU64::new(index),
            gdt_pages: [const { AtomicU64::new(0) }; super::entry::GDT_PAGES as usize],
            own_gdt_page: AtomicU64::new(0),
            ldt_pages: [const { AtomicU64::new(0) }; super::entry::LDT_PAGES as usize],
            ldt_loaded: AtomicU64::new(0),
            idle_total: AtomicU64::new(0),
            idle_since: AtomicU64::new(0),
            idle_seq: AtomicU64::new(0),
            current: AtomicU64::new(NONE),
            run_until: AtomicU64::new(NONE),
            guest_root: AtomicU64::new(0),
            guest_root_source: AtomicU64::new(0),
            root_frames: [const { AtomicU64::new(0) }; ROOT_SLOTS],
            root_sources: [const { AtomicU64::new(0) }; ROOT_SLOTS],
            root_generations: [const { AtomicU64::new(0) }; ROOT_SLOTS],
            root_next: AtomicU64::new(0),
            root_recent: AtomicU64::new(0),
            hv_slot_entry: AtomicU64::new(0),
            guest_slot_entry: AtomicU64::new(0),
            ticked: AtomicBool::new(false),
            apic_id: AtomicU32::new(0),
            armed: AtomicU64::new(u64::MAX),
            timer_due: AtomicU64::new(u64::MAX),
            programmed: AtomicU64::new(u64::MAX),
            // Polled until COM1's interrupt is routed (`ioapic::route_com1`).
            requests: AtomicU32::new(if index == 0 { REQ_POLL } else { 0 }),
            locks_held: AtomicU32::new(0),
            entered_pending: AtomicBool::new(false),
            entered_info: crate::mm::physmem::ViewCell::new(),
            entered_syscall: AtomicU64::new(0),
            entered_syscall_masks: AtomicBool::new(false),
            entered_kernel_sp: AtomicU64::new(0),
            entered_l4: AtomicU64::new(0),
            entered_mode: core::sync::atomic::AtomicU8::new(MODE_RING1),
            bounce_sp: AtomicU64::new(0),
            bounce_key: AtomicU64::new(u64::MAX),
            fast_root_slots: [const { core::sync::atomic::AtomicU8::new(0) }; 2],
            fast_vcpu: AtomicU64::new(0),
            generation_at: AtomicU64::new(0),
            root_generation_at: AtomicU64::new(0),
            words_page: [const { AtomicU64::new(0) }; 6],
            stacks_of: AtomicU32::new(0),
        }
    }

    /// Records where a system call's bounce frame goes for a Xen PV kernel stack
    /// `kernel_sp` ([`PerCpu::bounce_sp`], `bounce_key`): its seven words (`words`) below
    /// `kernel_sp` aligned to 16 bytes, if none is 0, they do not wrap and they lie in one
    /// page; else nothing (a key no kept page has). The entry stub trusts these two (it writes
    /// the frame at `bounce_sp` once the key matched the kept page), so they are written
    /// here only.
    pub fn set_bounce_place(&self, kernel_sp: u64, words: u64) {
        const PAGE: u64 = 4096;
        let len = 8 * words;
        let place = (kernel_sp & !0xF)
            .checked_sub(len)
            .filter(|&sp| kernel_sp != 0 && sp != 0 && (sp % PAGE) + len <= PAGE);
        let (sp, key) = match place {
            Some(sp) => (sp, (sp & !(PAGE - 1)) | 3),
            None => (0, u64::MAX),
        };
        self.bounce_sp.store(sp, Ordering::Relaxed);
        self.bounce_key.store(key, Ordering::Relaxed);
    }

    /// This pCPU's number.
    pub fn index(&self) -> usize {
        self.index.load(Ordering::Relaxed) as usize
    }

    /// The vCPU this pCPU runs (or last ran, while idle).
    pub fn current(&self) -> Option<(DomId, usize)> {
        match self.current.load(Ordering::Relaxed) {
            NONE => None,
            packed => Some(((packed >> 32) as DomId, (packed & 0xFFFF_FFFF) as usize)),
        }
    }

    pub fn set_current(&self, vcpu: Option<(DomId, usize)>) {
        let packed = vcpu.map_or(NONE, |(d, v)| (u64::from(d) << 32) | v as u64);
        self.current.store(packed, Ordering::Relaxed);
    }

    /// When the scheduler wants to decide again, if ever.
    pub fn run_until(&self) -> Option<u64> {
        match self.run_until.load(Ordering::Relaxed) {
            NONE => None,
            t => Some(t),
        }
    }

    pub fn set_run_until(&self, t: Option<u64>) {
        self.run_until.store(t.unwrap_or(NONE), Ordering::Relaxed);
    }
}

/// Set once the boot CPU's entry area (and so [`this`]) works.
static READY: AtomicBool = AtomicBool::new(false);

/// Says [`this`] works from now on (the boot CPU's `PerCpu` is initialised and mapped).
pub fn set_ready() {
    READY.store(true, Ordering::SeqCst);
}

/// This pCPU's data, or `None` this early in boot (for code that also runs before).
pub fn this_if_ready() -> Option<&'static PerCpu> {
    READY.load(Ordering::Relaxed).then(this)
}

/// This pCPU's data, in its entry area.
pub fn this() -> &'static PerCpu {
    let at = super::entry::va(super::entry::PERCPU_OFFSET) as *const PerCpu;
    // SAFETY: from `install_boot` on (before any code that calls this), the page at this
    // address holds this pCPU's initialised `PerCpu`, mapped for the hypervisor's whole run;
    // it is only accessed through atomics.
    unsafe { &*at }
}

/// Idle accounting: what Xen keeps as the idle vCPU's running time (`get_cpu_idle_time`).
impl PerCpu {
    /// This pCPU (the caller's own) halts from `now`.
    pub fn idle_begin(&self, now: u64) {
        self.idle_seq.fetch_add(1, Ordering::SeqCst);
        self.idle_since.store(now.max(1), Ordering::SeqCst);
        self.idle_seq.fetch_add(1, Ordering::SeqCst);
    }

    /// This pCPU (the caller's own) woke at `now`: the period since [`PerCpu::idle_begin`]
    /// counts as idle.
    pub fn idle_end(&self, now: u64) {
        self.idle_seq.fetch_add(1, Ordering::SeqCst);
        let since = self.idle_since.swap(0, Ordering::SeqCst);
        if since != 0 {
            self.idle_total
                .fetch_add(now.saturating_sub(since), Ordering::SeqCst);
        }
        self.idle_seq.fetch_add(1, Ordering::SeqCst);
    }

    /// Nanoseconds this pCPU has been idle up to `now`, the period under way included. Any
    /// pCPU may ask; a read that overlaps the owner's update is made again (a few times at
    /// most: the owner's update is a handful of instructions; after that the last read is
    /// taken, off by at most one period).
    pub fn idle_ns(&self, now: u64) -> u64 {
        let mut value = 0;
        for _ in 0..8 {
            let seq = self.idle_seq.load(Ordering::SeqCst);
            let total = self.idle_total.load(Ordering::SeqCst);
            let since = self.idle_since.load(Ordering::SeqCst);
            value = match since {
                0 => total,
                s => total.saturating_add(now.saturating_sub(s)),
            };
            if seq.is_multiple_of(2) && self.idle_seq.load(Ordering::SeqCst) == seq {
                break;
            }
            core::hint::spin_loop();
        }
        value
    }
}
