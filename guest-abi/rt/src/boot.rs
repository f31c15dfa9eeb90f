//! Start of day: what the builder handed over, recorded once, and the runtime's set-up before
//! the test kernel's main runs.

use guest_abi::shared_info::{SharedInfo, VcpuInfo};
use guest_abi::start_info::StartInfo;

use crate::check::{Ret, TestResult, report};
use crate::global::Global;
use crate::{println, trap};

/// Virtual address of pseudo-physical 0, where linker.ld links the image (PML4 slot 511).
pub const VIRT_BASE: u64 = 0xFFFF_FFFF_8000_0000;

/// Size of the ring-1 stack for entries from ring 3 (`stack_switch`).
pub const KERNEL_STACK_SIZE: usize = 32 * 1024;

/// Number of words in [`EntryState`].
pub const ENTRY_STATE_WORDS: usize = 23;

/// The registers as the builder left them at `_start`, recorded before any instruction
/// changed them (layout shared with `_start` in `src/asm.rs`).
#[derive(Clone, Copy, Debug, Default)]
#[repr(C)]
pub struct EntryState {
    /// `rax`.
    pub rax: u64,
    /// `rbx`.
    pub rbx: u64,
    /// `rcx`.
    pub rcx: u64,
    /// `rdx`.
    pub rdx: u64,
    /// `rsi`: the `start_info` address.
    pub rsi: u64,
    /// `rdi`.
    pub rdi: u64,
    /// `rbp`.
    pub rbp: u64,
    /// `rsp`: the top of the bootstrap stack.
    pub rsp: u64,
    /// `r8`.
    pub r8: u64,
    /// `r9`.
    pub r9: u64,
    /// `r10`.
    pub r10: u64,
    /// `r11`.
    pub r11: u64,
    /// `r12`.
    pub r12: u64,
    /// `r13`.
    pub r13: u64,
    /// `r14`.
    pub r14: u64,
    /// `r15`.
    pub r15: u64,
    /// `rflags`.
    pub rflags: u64,
    /// `cs`.
    pub cs: u64,
    /// `ss`.
    pub ss: u64,
    /// `ds`.
    pub ds: u64,
    /// `es`.
    pub es: u64,
    /// `fs`.
    pub fs: u64,
    /// `gs`.
    pub gs: u64,
}

const _: () = assert!(core::mem::size_of::<EntryState>() == ENTRY_STATE_WORDS * 8);

impl EntryState {
    /// The general-purpose registers the ABI says are zero at entry (all but `rsi` and
    /// `rsp`), with their names.
    pub fn zero_registers(&self) -> [(&'static str, u64); 14] {
        [
            ("rax", self.rax),
            ("rbx", self.rbx),
            ("rcx", self.rcx),
            ("rdx", self.rdx),
            ("rdi", self.rdi),
            ("rbp", self.rbp),
            ("r8", self.r8),
            ("r9", self.r9),
            ("r10", self.r10),
            ("r11", self.r11),
            ("r12", self.r12),
            ("r13", self.r13),
            ("r14", self.r14),
            ("r15", self.r15),
        ]
    }
}

unsafe extern "C" {
    /// Written by `_start` before anything else runs, never again.
    static rt_entry_state: EntryState;
    /// First byte of the linked image.
    static __image_start: u8;
    /// First byte past the linked image (`.bss` included), page-aligned.
    static __image_end: u8;
    /// The hypercall page (src/asm.rs).
    static hypercall_page: u8;
}

/// Address of the hypercall page the `XEN_ELFNOTE_HYPERCALL_PAGE` note names.
pub fn hypercall_page_va() -> u64 {
    core::ptr::addr_of!(hypercall_page) as u64
}

/// What the runtime learnt at start of day. Written once by `rt_start`, before any handler
/// can run; read-only afterwards.
#[derive(Clone, Copy)]
struct BootInfo {
    start_info: *const StartInfo,
    shared: *const SharedInfo,
    entry_upcall_mask: u8,
}

// SAFETY: the pointers refer to pages mapped for the domain's lifetime (guest-abi porting
// guide); the guest has one vCPU.
unsafe impl Send for BootInfo {}

static BOOT: Global<BootInfo> = Global::new(BootInfo {
    start_info: core::ptr::null(),
    shared: core::ptr::null(),
    entry_upcall_mask: 0,
});

/// The `start_info` page.
pub fn start_info() -> &'static StartInfo {
    // SAFETY: set by rt_start to the address the builder passed in rsi, which the ABI maps
    // for the domain's lifetime, before any code that can call this runs.
    unsafe { &*BOOT.get().start_info }
}

/// Its virtual address (`rsi` at entry).
pub fn start_info_va() -> u64 {
    BOOT.get().start_info as u64
}

/// The `shared_info` page, mapped by the builder right after `start_info`.
pub fn shared() -> &'static SharedInfo {
    // SAFETY: as for `start_info`; every bit pattern is a valid SharedInfo (all atomics).
    unsafe { &*BOOT.get().shared }
}

/// The running vCPU's `vcpu_info` (vCPU 0's unless the kernel started others, [`crate::smp`]).
pub fn vcpu() -> &'static VcpuInfo {
    crate::smp::info_of(crate::smp::this_vcpu())
}

/// The registers at entry.
pub fn entry_state() -> EntryState {
    // SAFETY: written by _start before Rust ran, never written again.
    unsafe { core::ptr::addr_of!(rt_entry_state).read_volatile() }
}

/// `vcpu_info[0].evtchn_upcall_mask` as the runtime found it, before it changed anything.
pub fn entry_upcall_mask() -> u8 {
    BOOT.get().entry_upcall_mask
}

/// The linked image: `[start, end)`.
pub fn image() -> (u64, u64) {
    (
        core::ptr::addr_of!(__image_start) as u64,
        core::ptr::addr_of!(__image_end) as u64,
    )
}

/// The user-accessible start-of-day padding, `[start, end)`, as `start_info` describes it.
pub fn padding() -> (u64, u64) {
    let si = start_info();
    (si.padding_start(), si.padding_end_within(VIRT_BASE))
}

unsafe extern "Rust" {
    /// The test kernel's main, defined with [`crate::entry!`].
    safe fn xenia_guest_main() -> !;
}

/// Called by `_start` on the boot stack with the `start_info` address.
pub(crate) extern "C" fn rt_start(start_info_va: u64) -> ! {
    let shared_va = StartInfo::shared_info_va(start_info_va);
    // Read the mask before anything can change it (the `cpl` test checks it was set).
    // SAFETY: the ABI maps shared_info read-write at this address; a fault here (it is not
    // mapped) is what the domain crash message would then report.
    let mask = unsafe { &*(shared_va as *const SharedInfo) }.vcpu_info[0]
        .evtchn_upcall_mask
        .load(core::sync::atomic::Ordering::SeqCst);
    BOOT.set(BootInfo {
        start_info: start_info_va as *const StartInfo,
        shared: shared_va as *const SharedInfo,
        entry_upcall_mask: mask,
    });

    if !start_info().magic_is_valid() {
        println!("start_info at {start_info_va:#x} has no valid magic");
        report(TestResult::Error);
    }
    if let Err((what, e)) = trap::install_defaults() {
        println!("start-up: {what} failed: {}", Ret::err(e));
        report(TestResult::Error);
    }
    xenia_guest_main()
}
