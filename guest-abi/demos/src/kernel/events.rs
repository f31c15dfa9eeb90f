//! Events ("Events"; guest-abi `event`): a PV kernel's interrupts.
//!
//! The demos keep events masked (`vcpu_info.evtchn_upcall_mask = 1`, their "interrupts
//! off") and only let them in while asleep in [`block_until`]: check the condition with
//! events masked, then `SCHEDOP_block`, which unmasks and sleeps as one step ("sti; hlt")
//! and returns once an event is pending and the callback has run. An event that arrives
//! between the check and the block leaves its port pending, so the block returns at once
//! instead of sleeping through it.
//!
//! The callback itself only acknowledges: it clears every pending port. Whoever blocked
//! looks again at what it waits for (the console ring's indexes, the clock), which is the
//! state that matters; the event only says "look again".

use core::sync::atomic::Ordering;

use guest_abi::callback::{CALLBACKTYPE_EVENT, CallbackRegister};
use guest_abi::calls;
use guest_abi::sched::ShutdownReason;

use super::{shared_info, shut_down};

// The callback entry: save the registers a Rust function may clobber, acknowledge, restore,
// return. `iretq` in ring 1 cannot set the (virtual) interrupt flag; `event_upcall` clears
// the mask itself before we return, as the callback runs only inside SCHEDOP_block, which
// had unmasked events.
core::arch::global_asm!(
    ".pushsection .text, \"ax\", @progbits",
    ".globl event_callback_entry",
    "event_callback_entry:",
    "    push rax",
    "    push rcx",
    "    push rdx",
    "    push rsi",
    "    push rdi",
    "    push r8",
    "    push r9",
    "    push r10",
    "    push r11",
    "    push rbp",
    "    mov rbp, rsp",
    "    and rsp, -16",
    "    cld",
    "    call {upcall}",
    "    mov rsp, rbp",
    "    pop rbp",
    "    pop r11",
    "    pop r10",
    "    pop r9",
    "    pop r8",
    "    pop rdi",
    "    pop rsi",
    "    pop rdx",
    "    pop rcx",
    "    pop rax",
    "    iretq",
    ".popsection",
    upcall = sym event_upcall,
);

unsafe extern "C" {
    fn event_callback_entry();
}

/// Registers the event callback ("Events" → "The callback").
pub fn register_callback() {
    let cb = CallbackRegister {
        callback_type: CALLBACKTYPE_EVENT,
        flags: 0,
        address: event_callback_entry as *const () as u64,
    };
    // SAFETY: event_callback_entry saves what it clobbers, handles the callback frame and
    // returns with iretq.
    if unsafe { calls::callback_register(&cb) }.is_err() {
        let _ = calls::console_write(b"registering the event callback failed\n");
        shut_down(ShutdownReason::Crash);
    }
}

/// The event handler: guest-abi `event`'s recipe for the 2-level bitmaps, clearing every
/// pending, unmasked port.
extern "C" fn event_upcall() {
    let shared = shared_info();
    let vcpu = &shared.vcpu_info[0];
    loop {
        // Clear the summary flag first, so that an event arriving during the scan sets it
        // again and we go round once more.
        vcpu.evtchn_upcall_pending.store(0, Ordering::SeqCst);
        let mut words = vcpu.evtchn_pending_sel.swap(0, Ordering::SeqCst);
        while words != 0 {
            let w = words.trailing_zeros() as usize;
            words &= words - 1;
            if let Some(pending) = shared.evtchn_pending.get(w) {
                let ports =
                    pending.load(Ordering::SeqCst) & !shared.evtchn_mask[w].load(Ordering::SeqCst);
                pending.fetch_and(!ports, Ordering::SeqCst);
            }
        }
        // Entered because events were enabled: enable them again ("sti"), then look once
        // more for an event that came in between.
        vcpu.evtchn_upcall_mask.store(0, Ordering::SeqCst);
        if vcpu.evtchn_upcall_pending.load(Ordering::SeqCst) == 0 {
            break;
        }
        vcpu.evtchn_upcall_mask.store(1, Ordering::SeqCst);
    }
}

/// Masks events ("cli").
pub fn mask() {
    shared_info().vcpu_info[0]
        .evtchn_upcall_mask
        .store(1, Ordering::SeqCst);
}

/// Sleeps until an event arrives, or until system time `deadline_ns` if given (the timer
/// VIRQ is bound at boot), then masks events again. Call it with events masked, after
/// checking what you wait for. May return early (any event wakes it): callers check again.
pub fn block_until(deadline_ns: Option<u64>) {
    if let Some(deadline) = deadline_ns {
        // A deadline already past raises the timer event at once. 0 would mean "no timer".
        let _ = calls::set_timer_op(deadline.max(1));
    }
    if calls::sched_block().is_err() {
        let _ = calls::console_write(b"SCHEDOP_block failed\n");
        shut_down(ShutdownReason::Crash);
    }
    mask();
}
