//! Running code in ring 3.
//!
//! A ring-3 program is a piece of position-independent machine code between two symbols (a
//! [`Blob`], usually a `global_asm!` block). [`load`] copies it into the start-of-day padding,
//! which the builder maps user-accessible and executable (guest-abi porting guide); [`run`]
//! enters it in ring 3 with `iretq` and returns when it ends:
//!
//! - through [`SVC_EXIT`](crate::trap::SVC_EXIT), by `int 0x80` or `SYSCALL`;
//! - through an exception the test armed with [`expect`](crate::trap::expect).
//!
//! Any other exception in ring 3 is fatal, as in ring 1. The program starts with `rdi` and
//! `rsi` set by the caller (usually the address of [`data`] and an argument), `rsp` at the top
//! of a user stack, and every other register zero.
//!
//! Layout inside the padding (which is at least 512 KiB): the code at its start
//! ([`CODE_MAX`] bytes at most), a data page after it, then a user stack.

use core::sync::atomic::{AtomicU64, Ordering};

use crate::asm::rt_enter_user;
use crate::boot::{padding, vcpu};
use crate::trap::{self, UserExit};

/// Most bytes of code [`load`] accepts.
pub const CODE_MAX: u64 = 16 * 1024;
/// Offset of the data page in the padding.
const DATA_OFFSET: u64 = CODE_MAX;
/// Size of the data area.
pub const DATA_SIZE: u64 = 4096;
/// Offset of the top of the user stack in the padding.
const STACK_TOP_OFFSET: u64 = 64 * 1024;

/// `rflags` a ring-3 program starts with: IF and the always-one bit 1.
pub const USER_RFLAGS: u64 = 0x202;

/// Machine code between two symbols.
#[derive(Clone, Copy, Debug)]
pub struct Blob {
    start: *const u8,
    end: *const u8,
}

impl Blob {
    /// The code from `start` up to (not including) `end`.
    pub const fn new(start: *const u8, end: *const u8) -> Self {
        Self { start, end }
    }

    /// Length in bytes.
    pub fn len(&self) -> u64 {
        (self.end as u64).saturating_sub(self.start as u64)
    }

    /// Whether the blob is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Offset of `label` (a symbol inside the blob) from its start.
    pub fn offset_of(&self, label: *const u8) -> u64 {
        label as u64 - self.start as u64
    }
}

/// Where the code goes: the start of the padding.
pub fn code_base() -> u64 {
    padding().0
}

/// The data area ring-3 programs may use (user-accessible, [`DATA_SIZE`] bytes).
pub fn data() -> u64 {
    padding().0 + DATA_OFFSET
}

/// Top of the user stack.
pub fn stack_top() -> u64 {
    padding().0 + STACK_TOP_OFFSET
}

/// Word `i` of the data area.
pub fn data_word(i: usize) -> u64 {
    let p = data() as *const AtomicU64;
    assert!((i as u64) < DATA_SIZE / 8);
    // SAFETY: the data area is mapped, aligned and inside the padding, which nothing else
    // uses; atomics make the access well-defined whatever ring-3 code wrote.
    unsafe { (*p.add(i)).load(Ordering::SeqCst) }
}

/// Zeroes the data area.
pub fn clear_data() {
    let p = data() as *const AtomicU64;
    for i in 0..(DATA_SIZE / 8) as usize {
        // SAFETY: as for data_word.
        unsafe { (*p.add(i)).store(0, Ordering::SeqCst) };
    }
}

/// Copies `blob` to the start of the padding; returns the address it now starts at.
pub fn load(blob: &Blob) -> u64 {
    let len = blob.len();
    assert!(len > 0 && len <= CODE_MAX, "ring-3 code of {len} bytes");
    let base = code_base();
    let (start, end) = padding();
    // A domU built with no more memory than its start of day may have no padding at all.
    assert!(
        end - start >= STACK_TOP_OFFSET,
        "the start-of-day padding is too small for ring-3 code"
    );
    // SAFETY: the source is the blob's code in the image; the destination is the start of the
    // padding, mapped writable, at least CODE_MAX bytes, used only for ring-3 code and not
    // running while it is replaced. The regions cannot overlap (image vs padding).
    unsafe { core::ptr::copy_nonoverlapping(blob.start, base as *mut u8, len as usize) };
    base
}

/// Runs ring-3 code at `rip` with `rdi = arg0`, `rsi = arg1` and [`USER_RFLAGS`] until it
/// ends (see the module documentation). The event mask in ring 3 is the caller's, and is
/// restored when the run ends.
pub fn run(rip: u64, arg0: u64, arg1: u64) -> UserExit {
    run_with_flags(rip, arg0, arg1, USER_RFLAGS)
}

/// [`run`] with the given initial `rflags`.
pub fn run_with_flags(rip: u64, arg0: u64, arg1: u64, rflags: u64) -> UserExit {
    // The code at rip was loaded into the user-accessible padding by `load`, and the stack is
    // the padding's.
    enter(rip, stack_top(), arg0, arg1, rflags)
}

/// Runs ring-3 code at `rip` with its stack at `rsp`, `rdi = arg0`, `rsi = arg1` and
/// [`USER_RFLAGS`], as [`run`] does, for code the caller placed and mapped itself (in an address
/// space of its own, for instance): `rip` must be user-accessible code and `rsp` the top of a
/// user-accessible, writable stack in the current address space.
pub fn run_at(rip: u64, rsp: u64, arg0: u64, arg1: u64) -> UserExit {
    enter(rip, rsp, arg0, arg1, USER_RFLAGS)
}

fn enter(rip: u64, rsp: u64, arg0: u64, arg1: u64, rflags: u64) -> UserExit {
    trap::set_kernel_mask(vcpu().evtchn_upcall_mask.load(Ordering::SeqCst));
    if trap::user_events() {
        // `iretq` in ring 1 does not unmask: ring 3 starts with events as its flags say, and
        // the frames of its system calls carry that on (`trap::restore_events`).
        trap::restore_events(rflags & guest_abi::trap::RFLAGS_IF != 0);
    }
    // SAFETY: rt_enter_user saves the callee-saved registers and the stack pointer and
    // returns only through rt_exit_to_kernel, which restores them; ring-3 code can reach
    // ring 1 only through the trap table, whose handlers end the run or return to ring 3.
    // Whatever ring-3 code does with its own pages cannot touch ring-1 memory (U/S bit).
    unsafe { rt_enter_user(rip, rsp, arg0, arg1, rflags) };
    trap::take_user_exit().expect("ring-3 run ended without an exit record")
}
