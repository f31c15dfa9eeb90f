//! `syscall`: `SYSCALL` in ring 3 enters the hypervisor, which bounces it to the registered
//! syscall callback with a hardware-format frame.
//!
//! Ring-3 code sets `rbx` = its `rsp` and `r12` = a marker, calls service ECHO(41) with
//! `SYSCALL`, stores the result, and exits with a second `SYSCALL`.
//!
//! Pass: the callback ran in ring 1 with `rip` = the instruction after `SYSCALL`, `cs` =
//! `USER_CS`, `ss` = `USER_SS`, `rsp` = the user `rsp`, `rcx` = that `rip` and `r11` = the
//! `rflags` of the frame (as `SYSCALL` left them), other registers intact; with
//! `CALLBACKF_MASK_EVENTS` events were masked on entry and without it they were not; the
//! callback's `iretq` returned to ring 3 with the result (42); each `SYSCALL` entered the
//! hypervisor (the entry count grew by at least 2).

use guest_abi::selectors::{KERNEL_CS, USER_CS, USER_SS};
use xenia_guest_rt::boot::vcpu;
use xenia_guest_rt::check::{Checks, note};
use xenia_guest_rt::trap::{
    ExitKind, VECTOR_SYSCALL, last_service, register_syscall, reset_service_count,
};
use xenia_guest_rt::{events, user};

use crate::ring3;

/// rflags.RF, which SYSCALL clears in r11 (Intel SDM Vol. 2B, SYSCALL).
const RFLAGS_RF: u64 = 1 << 16;

pub fn run() -> ! {
    let mut c = Checks::new();
    let prog = ring3::syscall();
    let base = user::load(&prog.blob);

    for mask_events in [true, false] {
        let flag = if mask_events {
            "with CALLBACKF_MASK_EVENTS"
        } else {
            "without CALLBACKF_MASK_EVENTS"
        };
        if c.ok(
            format_args!("register the syscall callback {flag}"),
            register_syscall(mask_events),
        )
        .is_none()
        {
            continue;
        }
        // Events enabled in ring 3, so that the flag makes a difference.
        events::unmask_and_deliver();
        reset_service_count();
        user::clear_data();
        let before = vcpu().arch.entry_count();
        let exit = user::run(base, user::data(), 0);
        let grew = vcpu().arch.entry_count().wrapping_sub(before);
        events::mask();
        note(format_args!(
            "entry count grew by {grew} over the 2 SYSCALLs ({flag})"
        ));

        c.check(
            format_args!("ring-3 program exited through SYSCALL ({flag})"),
            exit.kind == ExitKind::Service(VECTOR_SYSCALL) && exit.entry.regs.rdi == 42,
            format_args!("{:?}, result {}", exit.kind, exit.entry.regs.rdi),
        );
        c.eq(
            format_args!("the callback's iretq returned 42 to ring 3 ({flag})"),
            user::data_word(0),
            42,
        );
        c.eq_hex(
            format_args!("user r12 survived the callback ({flag})"),
            user::data_word(1),
            0x5a5a_5a5a,
        );
        c.check(
            format_args!("SYSCALL entered the hypervisor ({flag})"),
            grew >= 2,
            format_args!("entry count grew by {grew} over 2 SYSCALLs"),
        );
        let Some(e) = last_service() else {
            c.check(
                format_args!("syscall frame ({flag})"),
                false,
                format_args!("the ECHO call was not recorded"),
            );
            continue;
        };
        let r = &e.regs;
        let rip = base + prog.mark;
        c.check(
            format_args!("syscall frame: rip after SYSCALL, USER_CS, USER_SS, user rsp ({flag})"),
            r.vector == VECTOR_SYSCALL
                && r.rip == rip
                && r.cs == u64::from(USER_CS)
                && r.ss == u64::from(USER_SS)
                && r.rsp == r.rbx,
            format_args!(
                "rip {:#x} (expected {rip:#x}) cs {:#x} ss {:#x} rsp {:#x} (user rsp {:#x})",
                r.rip, r.cs, r.ss, r.rsp, r.rbx
            ),
        );
        c.check(
            format_args!("rcx and r11 as SYSCALL left them ({flag})"),
            r.rcx == rip && (r.r11 ^ r.rflags) & !RFLAGS_RF == 0,
            format_args!(
                "rcx {:#x} (expected {rip:#x}) r11 {:#x} frame rflags {:#x}",
                r.rcx, r.r11, r.rflags
            ),
        );
        c.check(
            format_args!("other registers intact at the callback ({flag})"),
            r.r12 == 0x5a5a_5a5a && r.rdi == 41,
            format_args!("r12 {:#x} rdi {}", r.r12, r.rdi),
        );
        c.eq(
            format_args!("events masked on entry to the callback ({flag})"),
            e.mask_at_entry,
            u8::from(mask_events),
        );
        c.eq_hex(
            format_args!("syscall callback runs in ring 1 ({flag})"),
            e.handler_cs.into(),
            KERNEL_CS.into(),
        );
    }

    // CVE-2018-8897's shape: TF set, `mov ss` holding the single-step trap back, SYSCALL. The
    // #DB comes due on the hypervisor's first instruction in ring 0, on the user's stack, with
    // the user's GS; the hypervisor must take it on a stack of its own, drop it, and carry on.
    let prog = ring3::movss_syscall();
    let base = user::load(&prog.blob);
    events::unmask_and_deliver();
    let exit = user::run(base, user::data(), 0);
    events::mask();
    c.check(
        "TF + mov ss + SYSCALL: the hypervisor survives and the SYSCALL is served",
        exit.kind == ExitKind::Service(VECTOR_SYSCALL) && exit.entry.regs.rdi == 0x600d,
        format_args!("{:?}, result {:#x}", exit.kind, exit.entry.regs.rdi),
    );
    c.finish()
}
