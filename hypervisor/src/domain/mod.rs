//! Domains and their vCPUs: what the hypervisor knows about each guest.

#[cfg(target_os = "none")]
pub mod build;
#[cfg(target_os = "none")]
pub mod lifecycle;
pub use xenia_pvboot::{elf, layout};

use alloc::string::String;
use alloc::vec::Vec;

#[cfg(target_os = "none")]
use guest_abi::shared_info::{SharedInfo, VcpuInfo};
use guest_abi::types::DomId;
use xenia_core::traps::TrapTable;

use crate::arch::x86_64::frame::TrapFrame;
use crate::event::EventChannels;
use crate::mm::Mfn;

/// Why a domain stopped (Xen's `SHUTDOWN_*` plus a hypervisor-detected crash).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shutdown {
    PowerOff,
    Reboot,
    Suspend,
    Crash,
    Watchdog,
}

impl Shutdown {
    pub fn from_reason(code: u32) -> Option<Shutdown> {
        use guest_abi::sched::ShutdownReason as R;
        Some(match R::from_raw(code)? {
            R::Poweroff => Shutdown::PowerOff,
            R::Reboot => Shutdown::Reboot,
            R::Suspend => Shutdown::Suspend,
            R::Crash => Shutdown::Crash,
            R::Watchdog => Shutdown::Watchdog,
            _ => return None,
        })
    }

    /// Xen's `SHUTDOWN_*` number of the reason.
    pub fn code(self) -> u32 {
        use guest_abi::sched as s;
        match self {
            Shutdown::PowerOff => s::SHUTDOWN_POWEROFF,
            Shutdown::Reboot => s::SHUTDOWN_REBOOT,
            Shutdown::Suspend => s::SHUTDOWN_SUSPEND,
            Shutdown::Crash => s::SHUTDOWN_CRASH,
            Shutdown::Watchdog => s::SHUTDOWN_WATCHDOG,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Shutdown::PowerOff => "poweroff",
            Shutdown::Reboot => "reboot",
            Shutdown::Suspend => "suspend",
            Shutdown::Crash => "crash",
            Shutdown::Watchdog => "watchdog",
        }
    }
}

/// Callbacks a kernel registers (`set_callbacks` / `callback_op`).
#[derive(Clone, Copy, Debug, Default)]
pub struct Callbacks {
    pub event: u64,
    pub failsafe: u64,
    pub syscall: u64,
    pub syscall_masks_events: bool,
    /// Entering the failsafe callback masks events (`CALLBACKF_mask_events`,
    /// `VGCF_failsafe_disables_events`).
    pub failsafe_masks_events: bool,
    pub nmi: u64,
}

/// A periodic timer: fires every `period` ns, next at `next`.
#[derive(Clone, Copy, Debug)]
pub struct Periodic {
    pub period: u64,
    pub next: u64,
}

/// A batch hypercall cut short to let events through (`guest::mmu`): it resumes when the
/// guest re-issues the same call with the advanced arguments.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Continuation {
    pub hypercall: u64,
    /// Guest address of the next item.
    pub next: u64,
    /// Items left.
    pub remaining: u64,
    /// Items done so far (reported through the call's `done` pointer).
    pub done: u64,
}

/// Most ports one `SCHEDOP_poll` may name (Xen's "fairly arbitrary limit" in `do_poll`).
pub const MAX_POLL_PORTS: usize = guest_abi::sched::SCHED_POLL_MAX_PORTS as usize;

/// A vCPU waiting in `SCHEDOP_poll`: blocked until one of `ports` is pending (masked or
/// not), an event needs delivery to it, or system time reaches `deadline`.
#[derive(Clone, Copy, Debug)]
pub struct Poll {
    ports: [guest_abi::event::EvtchnPort; MAX_POLL_PORTS],
    len: usize,
    /// Absolute system time (ns) at which the poll gives up, if any.
    pub deadline: Option<u64>,
}

impl Poll {
    /// A poll of `ports` (at most [`MAX_POLL_PORTS`]; more are ignored).
    pub fn new(ports: &[guest_abi::event::EvtchnPort], deadline: Option<u64>) -> Poll {
        let mut p = Poll {
            ports: [0; MAX_POLL_PORTS],
            len: ports.len().min(MAX_POLL_PORTS),
            deadline,
        };
        p.ports[..p.len].copy_from_slice(&ports[..p.len]);
        p
    }

    /// The ports it waits on.
    pub fn ports(&self) -> &[guest_abi::event::EvtchnPort] {
        &self.ports[..self.len]
    }
}

pub struct Vcpu {
    pub id: u32,
    /// Saved registers while the vCPU is not on a pCPU.
    pub regs: TrapFrame,
    /// Machine frame of its current top-level page table.
    pub l4: Mfn,
    /// The virtual IDT (`set_trap_table`): the entries set, by vector.
    pub traps: TrapTable,
    pub callbacks: Callbacks,
    /// Ring-1 stack for entries from ring 3 (`stack_switch`), 0 until set.
    pub kernel_sp: u64,
    /// The FS and GS bases as the last switch-out saved them (`save_cpu_state`) and the next
    /// switch-in loads them. While the vCPU is loaded the MSRs are the truth (a guest's own
    /// `mov gs` changes the GS base, and a Xen PV mode change swaps it, without touching
    /// these): no one reads them for a vCPU on a pCPU (`getvcpucontext` refuses one).
    pub fs_base: u64,
    pub gs_base: u64,
    /// One-shot timer deadline (system time, ns).
    pub singleshot: Option<u64>,
    pub periodic: Option<Periodic>,
    /// A batch hypercall in progress.
    pub continuation: Option<Continuation>,
    /// Has been given a context (`setvcpucontext`, `VCPUOP_initialise`; dom0's vCPU 0 at
    /// build): Xen's `is_initialised`. `VCPUOP_initialise` refuses it again (`EEXIST`).
    pub initialised: bool,
    /// Up (Xen: `_VPF_down` clear): brought up by `VGCF_online` or `VCPUOP_up`, taken down
    /// by `VCPUOP_down`. A vCPU that is down holds one pause in the scheduler; whether it
    /// may run is the scheduler's answer alone (`Scheduler::is_runnable`).
    pub online: bool,
    /// Waiting in `SCHEDOP_poll`.
    pub poll: Option<Poll>,
    /// Where the guest moved this vCPU's `vcpu_info` (`VCPUOP_register_vcpu_info`): a frame
    /// of its own, held with `hold_for_writes` while the domain lives, and the byte offset
    /// in it. `None`: its slot in `shared_info`.
    pub info_area: Option<(Mfn, usize)>,
    /// `info_area` as the hypervisor reads and writes it, made once when it was registered
    /// (every trap reads the `vcpu_info` several times).
    pub info_view: Option<&'static guest_abi::shared_info::VcpuInfo>,
    /// x87/SSE state while the vCPU is off the pCPU (`fxsave` format).
    pub fpu: FpuState,
    /// The guest's virtual CR0.TS (`fpu_taskswitch`): loaded into CR0 when the vCPU runs, so
    /// its next x87/SSE instruction raises #NM, delivered to it; never left set for another
    /// vCPU or for the hypervisor's own `fxsave`.
    /// Debug registers as `set_debugreg` left them (`xenia_core::debugreg`): DR0–DR3, DR6,
    /// DR7. Loaded into the CPU only while the vCPU runs with a breakpoint armed.
    pub dr: [u64; 4],
    pub dr6: u64,
    pub dr7: u64,
    pub fpu_ts: bool,
    /// Data segment selectors (DS, ES, FS, GS) while the vCPU is off the pCPU: a guest may
    /// load its own, and the next vCPU must not inherit them.
    pub data_selectors: [u16; 4],
    /// The domain runs in Xen's 64-bit PV mode ([`GuestMode::XenPv`]; a copy of the
    /// domain's mode, so that the trap paths need not look it up).
    pub xen_pv: bool,
    /// Xen PV mode: the vCPU is in guest kernel mode (Xen's `TF_kernel_mode`). Both modes
    /// run in ring 3; this says which top-level table and GS base are in force.
    pub kernel_mode: bool,
    /// Xen PV mode: the user-mode top-level table (`MMUEXT_NEW_USER_BASEPTR`,
    /// `ctrlreg[1]`), held as a base pointer like `l4`; `Mfn(0)` while there is none.
    pub user_l4: Mfn,
    /// Xen PV mode: the GS base of the mode not in force (the user one while in kernel
    /// mode, the kernel one in user mode), swapped with the live one on each mode change
    /// as Xen's `toggle_guest_mode` does with `swapgs`. While the vCPU is loaded on a pCPU
    /// the `KERNEL_GS_BASE` MSR holds it (`swapgs` swaps the two there); this field is
    /// what the last switch-out saved and the next switch-in loads, as `gs_base` is for
    /// the live one.
    pub gs_base_other: u64,
    /// The kernel's virtual I/O privilege level (`PHYSDEVOP_set_iopl`, 0–3): at 1 or more,
    /// its port I/O is emulated with Xen's answers (`guest::privop`) instead of raising #GP.
    pub viopl: u8,
    /// Where the guest asked for its run-state accounting (`VCPUOP_register_runstate_memory_area`):
    /// a guest virtual address, written through the vCPU's tables when it is switched in or out.
    pub runstate_area: Option<u64>,
    /// Xen PV mode: the frames of the GDT given by `set_gdt` (`gdt_frames[..n]`, `n` from
    /// `gdt_entries`), each held with a general and a `Descriptor` type reference so the guest
    /// can neither map it writable nor free it (`guest::desc`).
    pub gdt_frames: [Mfn; 14],
    /// Entries of that GDT (0: none given).
    pub gdt_entries: u32,
    /// Xen PV mode: the frames behind the LDT given by `MMUEXT_SET_LDT` (`ldt_frames[..n]`,
    /// `n` from `ldt_entries`), held as the GDT's are (`guest::desc`).
    pub ldt_frames: [Mfn; 16],
    /// Entries of that LDT (0: none).
    pub ldt_entries: u32,
    /// Xen PV mode: the code and stack selectors of the last `iret` to user mode whose
    /// descriptors `xenpv::iret_refusal` found good for any canonical `rip` (a 64-bit code
    /// segment), as `cs << 16 | ss` (0: none), and `guest::desc::changes()` when it did. While
    /// no descriptor table has changed since, the same pair needs no second look
    /// (`fast_pv::iret`; Linux returns with its own `__USER_CS`/`__USER_DS`, not Xen's flat
    /// selectors).
    pub iret_selectors: (u32, u64),
}

/// Which ABI a domain's kernel was built for (DESIGN.md §12), set by
/// `XEN_DOMCTL_XENIA_SET_GUEST_MODE` before its first vCPU context.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub enum GuestMode {
    /// Xenia's own ABI: the kernel in ring 1.
    #[default]
    Ring1,
    /// Xen's x86-64 PV ABI: the kernel in ring 3, with Xen's flat selectors, its own
    /// user-mode top-level table, hypercalls by `syscall`.
    XenPv,
}

/// The x87/SSE register file in `fxsave` format (Intel SDM Vol. 1 §10.5.1).
#[repr(C, align(16))]
#[derive(Clone)]
pub struct FpuState(pub [u8; 512]);

impl FpuState {
    /// The state after `fninit` with MXCSR at its reset value 0x1F80 (FCW 0x37F, all
    /// registers empty), what a new vCPU starts with.
    pub fn reset() -> FpuState {
        let mut s = FpuState([0; 512]);
        s.0[0..2].copy_from_slice(&0x037Fu16.to_le_bytes()); // FCW
        s.0[24..28].copy_from_slice(&0x1F80u32.to_le_bytes()); // MXCSR
        s.0[28..32].copy_from_slice(&0xFFFFu32.to_le_bytes()); // MXCSR_MASK
        s
    }
}

impl Vcpu {
    pub fn new(id: u32, l4: Mfn) -> Vcpu {
        Vcpu {
            id,
            regs: TrapFrame::default(),
            l4,
            traps: TrapTable::new(),
            callbacks: Callbacks::default(),
            kernel_sp: 0,
            fs_base: 0,
            gs_base: 0,
            singleshot: None,
            periodic: None,
            continuation: None,
            initialised: false,
            online: false,
            poll: None,
            info_area: None,
            info_view: None,
            fpu: FpuState::reset(),
            fpu_ts: false,
            dr: [0; 4],
            dr6: crate::debugreg::DR6_DEFAULT,
            dr7: crate::debugreg::DR7_DEFAULT,
            data_selectors: [0; 4],
            xen_pv: false,
            kernel_mode: true,
            user_l4: Mfn(0),
            gs_base_other: 0,
            viopl: 0,
            runstate_area: None,
            gdt_frames: [Mfn(0); 14],
            gdt_entries: 0,
            iret_selectors: (0, 0),
            ldt_frames: [Mfn(0); 16],
            ldt_entries: 0,
        }
    }

    /// The top-level table in force: the user one in Xen PV user mode, else `l4`.
    pub fn active_l4(&self) -> Mfn {
        if self.xen_pv && !self.kernel_mode {
            self.user_l4
        } else {
            self.l4
        }
    }

    /// `n` new vCPUs, numbered from 0, with base pointer `l4`; `ENOMEM` if the heap cannot
    /// take them (a guest-reachable path: never an infallible allocation).
    pub fn try_new_set(n: u32, l4: Mfn) -> Result<Vec<Vcpu>, guest_abi::Errno> {
        let mut vcpus = Vec::new();
        vcpus
            .try_reserve_exact(n as usize)
            .map_err(|_| guest_abi::Errno::ENOMEM)?;
        vcpus.extend((0..n).map(|v| Vcpu::new(v, l4))); // alloc: room reserved above
        Ok(vcpus)
    }

    /// Clears the timers that expired by `now` (re-arming the periodic one) and says
    /// whether VIRQ_TIMER is due.
    pub fn expire_timers(&mut self, now: u64) -> bool {
        let mut fire = false;
        if self.singleshot.is_some_and(|d| d <= now) {
            self.singleshot = None;
            fire = true;
        }
        if let Some(p) = self.periodic.as_mut()
            && p.next <= now
        {
            // Missed periods are not replayed: one event, next period from now.
            let missed = (now - p.next) / p.period;
            p.next += (missed + 1) * p.period;
            fire = true;
        }
        fire
    }

    /// The earliest timer deadline (a `SCHEDOP_poll` timeout included), if any.
    pub fn next_deadline(&self) -> Option<u64> {
        [
            self.singleshot,
            self.periodic.map(|p| p.next),
            self.poll.and_then(|p| p.deadline),
        ]
        .into_iter()
        .flatten()
        .min()
    }
}

/// Longest console line a guest can leave unfinished; longer lines are shown in pieces.
pub const CONSOLE_LINE_MAX: usize = 256;

/// A guest's console output not yet ended by a newline: fixed-size, part of its domain, so
/// a guest that never finishes a line costs nothing beyond its own domain.
pub struct ConsoleLine {
    bytes: [u8; CONSOLE_LINE_MAX],
    len: usize,
}

impl ConsoleLine {
    pub const fn new() -> ConsoleLine {
        ConsoleLine {
            bytes: [0; CONSOLE_LINE_MAX],
            len: 0,
        }
    }

    pub fn is_full(&self) -> bool {
        self.len == CONSOLE_LINE_MAX
    }

    /// Appends `b`; a full line takes nothing (the caller shows it first).
    pub fn push(&mut self, b: u8) {
        if let Some(slot) = self.bytes.get_mut(self.len) {
            *slot = b;
            self.len += 1;
        }
    }

    pub fn text(&self) -> &[u8] {
        &self.bytes[..self.len]
    }

    pub fn clear(&mut self) {
        self.len = 0;
    }
}

impl Default for ConsoleLine {
    fn default() -> Self {
        Self::new()
    }
}

/// Hypervisor heap bytes a domain may cost beyond its vCPUs, event channels and grant
/// mappings (which are bounded by their own limits): its name, its bookkeeping.
const DOMAIN_BASE_COST: u64 = 16 * 1024;

/// What a domain may do beyond its own resources. Only the hypercall context reads it, to
/// make the privilege token (`guest::context::Privileged`) for dom0; no handler checks it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Privilege {
    /// The control domain (dom0): domain control, other domains' memory and ports.
    Control,
    /// Any other domain.
    Guest,
}

pub struct Domain {
    pub id: DomId,
    pub name: String,
    /// The toolstack's UUID for it (`createdomain`'s handle; zero for dom0).
    pub handle: [u8; 16],
    pub privilege: Privilege,
    /// `VMASST_TYPE_*` assists turned on (`vm_assist`; a bitmap, as Xen's `d->vm_assist`).
    pub vm_assist: u64,
    /// The ABI its kernel uses (`XEN_DOMCTL_XENIA_SET_GUEST_MODE`).
    pub guest_mode: GuestMode,
    /// Pseudo-physical to machine frames.
    pub p2m: Vec<Mfn>,
    pub shared_info: Mfn,
    /// `shared_info` as the hypervisor reads and writes it, made once when the frame was
    /// given (`mm::physmem::atomics` checks the frame then, not on every event).
    #[cfg(target_os = "none")]
    pub shared_view: &'static SharedInfo,
    /// Pages the domain holds (Xen's `tot_pages`; shared_info not counted).
    pub tot_pages: u64,
    /// The most it may hold (`XENMEM_maximum_reservation`).
    pub max_pages: u64,
    pub vcpus: Vec<Vcpu>,
    pub events: EventChannels,
    /// Its physical IRQs (the hardware domain's only: `guest::physdev`).
    pub pirqs: crate::pirq::PirqTable,
    /// Its grant table and the grant mappings it holds.
    pub grants: crate::grant::GrantTable,
    pub shutdown: Option<Shutdown>,
    /// The stop was handled (`guest::World::domain_stopped`: paused, announced), once.
    pub stop_announced: bool,
    /// How many times the toolstack paused it (Xen's `controller_pause_count`: what
    /// `getdomaininfo` reports and `unpausedomain` checks). Each pause is also a pause of
    /// every vCPU in the scheduler, which alone decides whether a vCPU runs.
    pub controller_pauses: u32,
    /// Console output not yet ended by a newline.
    pub console_line: ConsoleLine,
}

impl Domain {
    /// The domain's shared-info page. All its fields are atomics: the guest writes it
    /// concurrently, by design.
    #[cfg(target_os = "none")]
    pub fn shared(&self) -> &SharedInfo {
        // The frame is held for the hypervisor's writes for the domain's lifetime.
        self.shared_view
    }

    /// vCPU `vcpu`'s `vcpu_info`: where the guest registered it, or its slot in
    /// `shared_info`.
    #[cfg(target_os = "none")]
    pub fn vcpu_info(&self, vcpu: usize) -> &VcpuInfo {
        self.vcpu_info_static(vcpu)
    }

    /// [`Self::vcpu_info`], not tied to a borrow of the domain: the frame is held for the
    /// hypervisor's writes while the domain lives, and the caller uses it only for as long
    /// as it handles a trap of the domain (which keeps the domain alive).
    #[cfg(target_os = "none")]
    #[inline(always)]
    pub fn vcpu_info_static(&self, vcpu: usize) -> &'static VcpuInfo {
        self.vcpus
            .get(vcpu)
            .and_then(|v| v.info_view)
            .unwrap_or(&self.shared_view.vcpu_info[vcpu])
    }

    /// The frames the hypervisor writes on this domain's behalf: each must be held with
    /// `FrameTable::hold_for_writes` for as long as the domain lives (docs/security.md).
    pub fn hypervisor_written(&self) -> impl Iterator<Item = Mfn> + '_ {
        core::iter::once(self.shared_info)
            .chain(self.grants.grants.frames().iter().copied())
            .chain(
                self.vcpus
                    .iter()
                    .filter_map(|v| v.info_area.map(|(mfn, _)| mfn)),
            )
    }

    /// Hypervisor heap bytes used on this domain's behalf now.
    pub fn charged(&self) -> u64 {
        let vcpus = (self.vcpus.capacity() * core::mem::size_of::<Vcpu>()) as u64
            + self.vcpus.iter().map(|v| v.traps.heap_bytes()).sum::<u64>();
        let p2m = (self.p2m.capacity() * core::mem::size_of::<Mfn>()) as u64;
        core::mem::size_of::<Domain>() as u64
            + self.name.capacity() as u64
            + vcpus
            + p2m
            + self.events.heap_bytes()
            + self.grants.heap_bytes()
    }

    /// The most that can be charged to it: every structure it can grow is bounded by a
    /// limit set when it was created, and this is their sum.
    pub fn charge_limit(&self) -> u64 {
        let vcpus = (self.vcpus.len()
            * (core::mem::size_of::<Vcpu>() + xenia_core::traps::MAX_BYTES))
            as u64;
        let p2m = (self.p2m.len() * core::mem::size_of::<Mfn>()) as u64;
        core::mem::size_of::<Domain>() as u64
            + DOMAIN_BASE_COST
            + vcpus
            + p2m
            + self.events.heap_limit()
            + self.grants.heap_limit()
    }
}

/// The first domain ID after `last` (wrapping from the last ordinary ID to 1) that `in_use`
/// does not hold, as Xen's `domctl createdomain` picks one.
pub fn free_domid(last: DomId, in_use: impl Fn(DomId) -> bool) -> Result<DomId, guest_abi::Errno> {
    let n = guest_abi::types::DOMID_FIRST_RESERVED - 1;
    let start = last % n;
    (0..n)
        .map(|i| (start + i) % n + 1)
        .find(|d| !in_use(*d))
        .ok_or(guest_abi::Errno::ENOSPC)
}

#[cfg(test)]
mod tests {
    use super::free_domid;

    #[test]
    fn ids_are_not_reused_at_once() {
        let none = |_| false;
        assert_eq!(free_domid(0, none), Ok(1));
        assert_eq!(free_domid(1, none), Ok(2));
        // A destroyed domain 1 is not picked again while later IDs are free.
        assert_eq!(free_domid(5, |d| d == 3), Ok(6));
        assert_eq!(free_domid(6, |d| d == 7), Ok(8));
        // Wraps past the last ordinary ID back to 1, skipping IDs in use.
        let last = guest_abi::types::DOMID_FIRST_RESERVED - 1;
        assert_eq!(free_domid(last, |d| d == 1), Ok(2));
        assert_eq!(free_domid(last - 1, none), Ok(last));
        assert!(free_domid(3, |_| true).is_err());
    }
}
