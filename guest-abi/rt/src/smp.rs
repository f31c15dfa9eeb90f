//! Secondary vCPUs (guest-abi porting guide, "SMP"): starting them, knowing which vCPU runs,
//! and the IPIs between them.
//!
//! **Start-up.** [`start`] gives vCPU *n* a context with `VCPUOP_initialise` (the kernel's
//! bootstrap address space, the runtime's trap table and event callback, a stack of its own
//! from [`SECONDARY_STACK_SIZE`] bytes reserved in `.bss` for each of vCPUs 1 to
//! [`RUNTIME_STACKS`]), then `VCPUOP_up`. A kernel that runs more vCPUs gives the others
//! stacks of its own ([`start_on`]): every page of `.bss` is memory every domain on the
//! runtime must have from its first instruction, so it holds stacks for the common case only
//! (31 of them were half of a minimal domain's memory). The vCPU enters `entry(n)` in ring 1 with events masked, as vCPU 0 entered
//! `main`. A secondary vCPU never runs ring-3 code (it has no ring-1 stack for entries from
//! ring 3: `kernel_sp` is 0).
//!
//! **Which vCPU runs.** [`this_vcpu`] tells by the stack pointer: every secondary vCPU runs
//! on its own stack, everything else runs on vCPU 0. So a handler knows its vCPU without
//! segment registers, and [`crate::boot::vcpu`] returns the running vCPU's `vcpu_info`,
//! which is what the event callback and the masking helpers use.
//!
//! **Events.** Each vCPU's upcall handles only the ports bound to it (the runtime records
//! the binding, [`crate::events::bind_ipi`], [`crate::events::bind_virq_on`]); a port it did
//! not bind is vCPU 0's, as the hypervisor's default notify vCPU is 0.
//!
//! **What it does not do.** The console is shared without a lock: lines from different
//! vCPUs may interleave (each line stays whole on the hypervisor console, which is written
//! one line per hypercall). Kernels on this runtime print from vCPU 0 and let the others
//! report through atomics.

use core::cell::UnsafeCell;
use core::sync::atomic::{AtomicBool, AtomicPtr, AtomicU64, Ordering};

use guest_abi::shared_info::VcpuInfo;
use guest_abi::types::PAGE_SIZE;
use guest_abi::vcpu::VcpuRegisterVcpuInfo;

use guest_abi::calls;
use guest_abi::errno::Errno;
use guest_abi::selectors::{KERNEL_CS, KERNEL_SS};
use guest_abi::shared_info::XEN_LEGACY_MAX_VCPUS;
use guest_abi::trap::RFLAGS_IF;
use guest_abi::types::Mfn;
use guest_abi::vcpu_context::{VGCF_IN_KERNEL, VcpuGuestContext};

use crate::trap;

/// Most vCPUs the runtime can run: one `vcpu_info` each in `shared_info` (Xen's legacy
/// limit, which is also Xenia's per-domain limit).
pub const MAX_VCPUS: usize = XEN_LEGACY_MAX_VCPUS;

/// Stack of each secondary vCPU.
pub const SECONDARY_STACK_SIZE: usize = 16 * 1024;

/// How many secondary vCPUs (1 to this) [`start`] gives a stack of the runtime's own.
pub const RUNTIME_STACKS: usize = 7;

/// The secondary vCPUs' stacks, vCPU *n* at index *n − 1*.
#[repr(C, align(16))]
struct Stacks(UnsafeCell<[[u8; SECONDARY_STACK_SIZE]; RUNTIME_STACKS]>);

// SAFETY: the runtime never reads or writes the bytes: each stack is handed to one vCPU,
// which uses it as its stack and nothing else.
unsafe impl Sync for Stacks {}

static STACKS: Stacks = Stacks(UnsafeCell::new([[0; SECONDARY_STACK_SIZE]; RUNTIME_STACKS]));

/// What each secondary vCPU runs (a `fn(u32) -> !`, stored by [`start`] before the vCPU is
/// initialised, read by it once).
static ENTRIES: [AtomicPtr<()>; MAX_VCPUS] =
    [const { AtomicPtr::new(core::ptr::null_mut()) }; MAX_VCPUS];

/// Where each vCPU's `vcpu_info` was moved with [`register_vcpu_info`] (null: its slot in
/// `shared_info`).
static INFO: [AtomicPtr<VcpuInfo>; MAX_VCPUS] =
    [const { AtomicPtr::new(core::ptr::null_mut()) }; MAX_VCPUS];

/// A page of the kernel's image given to the hypervisor for `vcpu_info`s
/// ([`register_vcpu_info`]); a `static` of the kernel, so that it stays mapped and its frame
/// stays the kernel's.
#[repr(C, align(4096))]
pub struct InfoPage(UnsafeCell<[u8; PAGE_SIZE]>);

// SAFETY: the runtime never touches the bytes itself; once registered, they are read and
// written only as the atomics of a `VcpuInfo`.
unsafe impl Sync for InfoPage {}

impl InfoPage {
    /// A zeroed page.
    pub const fn new() -> Self {
        Self(UnsafeCell::new([0; PAGE_SIZE]))
    }
}

impl Default for InfoPage {
    fn default() -> Self {
        Self::new()
    }
}

/// vCPU `vcpu`'s `vcpu_info`: where [`register_vcpu_info`] moved it, or its slot in
/// `shared_info`.
pub fn info_of(vcpu: usize) -> &'static VcpuInfo {
    let moved = INFO
        .get(vcpu)
        .map_or(core::ptr::null_mut(), |p| p.load(Ordering::SeqCst));
    if moved.is_null() {
        &crate::boot::shared().vcpu_info[vcpu]
    } else {
        // SAFETY: `register_vcpu_info` stored the address of a `VcpuInfo` inside a static
        // `InfoPage` (aligned, in bounds: the hypervisor accepted it), all atomics.
        unsafe { &*moved }
    }
}

/// Moves vCPU `vcpu`'s `vcpu_info` to byte `offset` of `page` (`VCPUOP_register_vcpu_info`:
/// the vCPU is the caller, with events masked, or is down). Returns the hypervisor's
/// refusal, if any (guest-abi's `VcpuRegisterVcpuInfo` lists them).
pub fn register_vcpu_info(vcpu: u32, page: &'static InfoPage, offset: usize) -> Result<(), Errno> {
    let Some(slot) = INFO.get(vcpu as usize) else {
        return Err(Errno::EINVAL);
    };
    let va = page.0.get() as u64;
    // The image is mapped at VIRT_BASE + pfn * PAGE_SIZE (the builder's start of day).
    let pfn = (va - crate::boot::VIRT_BASE) / PAGE_SIZE as u64;
    let arg = VcpuRegisterVcpuInfo {
        mfn: crate::mm::p2m(pfn),
        offset: u32::try_from(offset).map_err(|_| Errno::EINVAL)?,
        rsvd: 0,
    };
    // SAFETY: the page is a static used for nothing else (`InfoPage`).
    unsafe { calls::vcpu_register_vcpu_info(vcpu, &arg) }?;
    slot.store((va + offset as u64) as *mut VcpuInfo, Ordering::SeqCst);
    Ok(())
}

/// A stack a kernel gives one secondary vCPU with [`start_on`], when
/// [`SECONDARY_STACK_SIZE`] is too small for what it runs: a `static` of the kernel.
#[repr(C, align(16))]
pub struct Stack<const N: usize> {
    claimed: AtomicBool,
    bytes: UnsafeCell<[u8; N]>,
}

// SAFETY: the bytes are never touched by the runtime; `claimed` hands them to one vCPU,
// which uses them as its stack and nothing else.
unsafe impl<const N: usize> Sync for Stack<N> {}

impl<const N: usize> Stack<N> {
    /// A stack of `N` bytes, not yet given to a vCPU.
    pub const fn new() -> Self {
        Self {
            claimed: AtomicBool::new(false),
            bytes: UnsafeCell::new([0; N]),
        }
    }
}

impl<const N: usize> Default for Stack<N> {
    fn default() -> Self {
        Self::new()
    }
}

/// `[start, end)` of the stack each vCPU got from [`start_on`] (0, 0: none).
static OWN_STACKS: [(AtomicU64, AtomicU64); MAX_VCPUS] =
    [const { (AtomicU64::new(0), AtomicU64::new(0)) }; MAX_VCPUS];

/// Whether any vCPU ever got its own stack ([`start_on`]): until one does, [`this_vcpu`]
/// does not scan [`OWN_STACKS`] (every trap asks which vCPU it is on).
static OWN_STACKS_USED: AtomicBool = AtomicBool::new(false);

/// `[start, end)` of the secondary stacks.
fn stacks() -> (u64, u64) {
    let start = STACKS.0.get() as u64;
    (
        start,
        start + (RUNTIME_STACKS * SECONDARY_STACK_SIZE) as u64,
    )
}

/// The vCPU running this code: the one whose stack the stack pointer is in (vCPU 0 for
/// anything that is not a secondary stack).
pub fn this_vcpu() -> usize {
    let sp: u64;
    // SAFETY: reads the stack pointer, nothing else.
    unsafe { core::arch::asm!("mov {}, rsp", out(reg) sp, options(nomem, nostack)) };
    let (start, end) = stacks();
    if (start..end).contains(&sp) {
        return 1 + ((sp - start) / SECONDARY_STACK_SIZE as u64) as usize;
    }
    if !OWN_STACKS_USED.load(Ordering::Relaxed) {
        return 0;
    }
    OWN_STACKS
        .iter()
        .position(|(lo, hi)| (lo.load(Ordering::Relaxed)..hi.load(Ordering::Relaxed)).contains(&sp))
        .unwrap_or(0)
}

/// Starts vCPU `vcpu` (1 to [`RUNTIME_STACKS`], and below the domain's own count) at
/// `entry(vcpu)`, in the bootstrap address space, with events masked. `EINVAL` for vCPU 0
/// or a number past the runtime's stacks (give it one of the kernel's with [`start_on`]); otherwise the hypervisor's answer to
/// `VCPUOP_initialise` (`ENOENT`: the domain has no such vCPU; `EEXIST`: it was started
/// before, see [`restart`]) or `VCPUOP_up`.
pub fn start(vcpu: u32, entry: fn(u32) -> !) -> Result<(), Errno> {
    if vcpu == 0 || vcpu as usize > RUNTIME_STACKS {
        return Err(Errno::EINVAL);
    }
    let top = stacks().0 + u64::from(vcpu) * SECONDARY_STACK_SIZE as u64;
    start_at(vcpu, top, entry)
}

/// [`start`] on a stack of the kernel's own instead of the runtime's. `EBUSY` if `stack`
/// was given to a vCPU before (a stack serves one vCPU for good).
pub fn start_on<const N: usize>(
    vcpu: u32,
    stack: &'static Stack<N>,
    entry: fn(u32) -> !,
) -> Result<(), Errno> {
    let index = vcpu as usize;
    if index == 0 || index >= MAX_VCPUS {
        return Err(Errno::EINVAL);
    }
    if stack.claimed.swap(true, Ordering::SeqCst) {
        return Err(Errno::EBUSY);
    }
    let lo = stack.bytes.get() as u64;
    let hi = lo + N as u64;
    OWN_STACKS[index].0.store(lo, Ordering::SeqCst);
    OWN_STACKS[index].1.store(hi, Ordering::SeqCst);
    OWN_STACKS_USED.store(true, Ordering::SeqCst);
    let started = start_at(vcpu, hi & !0xF, entry);
    if started.is_err() && calls::vcpu_is_up(vcpu) != Ok(true) {
        OWN_STACKS[index].0.store(0, Ordering::SeqCst);
        OWN_STACKS[index].1.store(0, Ordering::SeqCst);
    }
    started
}

/// The number of vCPUs the domain has: `VCPUOP_is_up` answers for each, `ENOENT` past the
/// last (how a Xen guest finds it without xenstore).
pub fn nr_vcpus() -> u32 {
    (0..MAX_VCPUS as u32)
        .find(|&v| calls::vcpu_is_up(v).is_err())
        .unwrap_or(MAX_VCPUS as u32)
}

/// How many vCPUs the toolstack wants up from the start (xl.cfg `vcpus`): the
/// `DEVICE_VCPU` entries of a domU's device page, `0..n` (guest-abi `device_page`); 1 for
/// dom0 or a device page without any. Never more than [`nr_vcpus`].
pub fn vcpus_at_start() -> u32 {
    use guest_abi::device_page::{DEVICE_VCPU, DevicePage, device_page_va};
    use guest_abi::start_info::SIF_INITDOMAIN;
    let si = crate::boot::start_info();
    if si.flags & SIF_INITDOMAIN != 0 {
        return 1;
    }
    // SAFETY: the builder maps a domU's device page here, supervisor and writable, for as
    // long as the bootstrap mappings stay (guest-abi `device_page`); it is plain bytes.
    let page = unsafe {
        core::slice::from_raw_parts(
            device_page_va(crate::boot::start_info_va()) as *const u8,
            PAGE_SIZE,
        )
    };
    let listed = DevicePage::from_bytes(page)
        .filter(DevicePage::is_valid)
        .map_or(0, |d| {
            (0..MAX_VCPUS as u32)
                .take_while(|&v| d.find(DEVICE_VCPU, v).is_some())
                .count() as u32
        });
    listed.clamp(1, nr_vcpus().max(1))
}

/// Starts `vcpu` at `entry(vcpu)` on the stack whose top is `top`.
fn start_at(vcpu: u32, top: u64, entry: fn(u32) -> !) -> Result<(), Errno> {
    let index = vcpu as usize;
    ENTRIES[index].store(entry as *mut (), Ordering::SeqCst);
    let ctx = context(vcpu, top, crate::mm::bootstrap_l4());
    // SAFETY: the context starts the vCPU at `secondary_main` on its own stack, unused by
    // anyone else, with the runtime's trap table and event callback, in the address space
    // this kernel runs in.
    unsafe { calls::vcpu_initialise(vcpu, &ctx) }?;
    calls::vcpu_up(vcpu)
}

/// Brings a vCPU that went down ([`calls::vcpu_down`]) up again: it resumes where it
/// stopped (Xen keeps its registers; `VCPUOP_initialise` is refused a second time).
pub fn restart(vcpu: u32) -> Result<(), Errno> {
    calls::vcpu_up(vcpu)
}

/// The start-up context of secondary vCPU `vcpu` with its stack top at `top` (16-byte
/// aligned) and its root table the L4 in `l4_mfn`.
fn context(vcpu: u32, top: u64, l4_mfn: u64) -> VcpuGuestContext {
    let mut ctx = VcpuGuestContext::new();
    ctx.flags = VGCF_IN_KERNEL;
    let r = &mut ctx.user_regs;
    r.rip = secondary_main as *const () as u64;
    // As if `secondary_main` had been called: the return address slot below a 16-byte
    // aligned top (System V AMD64 ABI §3.2.2).
    r.rsp = top - 8;
    r.rdi = u64::from(vcpu);
    r.cs = KERNEL_CS;
    r.ss = KERNEL_SS;
    r.rflags = RFLAGS_IF;
    for t in trap::default_table().iter().filter(|t| !t.is_end()) {
        ctx.trap_ctxt[usize::from(t.vector)] = *t;
    }
    ctx.event_callback_eip = trap::event_entry();
    ctx.kernel_ss = u64::from(KERNEL_SS);
    ctx.set_l4_mfn(Mfn(l4_mfn));
    ctx
}

/// Where a secondary vCPU starts, on its own stack, `vcpu` in `rdi`.
extern "C" fn secondary_main(vcpu: u64) -> ! {
    let entry = ENTRIES
        .get(vcpu as usize)
        .map_or(core::ptr::null_mut(), |e| e.load(Ordering::SeqCst));
    if entry.is_null() {
        crate::println!("vCPU {vcpu} started with no entry point");
        crate::check::shutdown(guest_abi::sched::ShutdownReason::Crash);
    }
    // SAFETY: `start` stored exactly a `fn(u32) -> !` here before it initialised the vCPU.
    let entry: fn(u32) -> ! = unsafe { core::mem::transmute::<*mut (), fn(u32) -> !>(entry) };
    entry(vcpu as u32)
}
