//! `debugreg`: `set_debugreg` / `get_debugreg` with Xen's checks, and a data breakpoint that
//! works:
//!
//! 1. Refused: DR0 on the hypervisor's image or a non-canonical address (`EPERM`), DR7 with GD
//!    or an I/O breakpoint (`EPERM`), DR6/DR7 above 32 bits and register 8 (`EINVAL`).
//! 2. DR7's reserved bits read back as the architecture wants them.
//! 3. DR0 on a variable, DR7 arming it for writes: a write raises #DB (delivered to the
//!    guest, after the write), and DR6 reports B0; disarmed, the same write does not.

use guest_abi::hypercall::{
    HYPERVISOR_GET_DEBUGREG, HYPERVISOR_SET_DEBUGREG, hypercall1, hypercall2,
};
use xenia_guest_rt::check::{Checks, Ret};
use xenia_guest_rt::probe;
use xenia_guest_rt::trap::DEBUG;

use super::HYPERVISOR_IMAGE;

fn set(reg: u64, value: u64) -> i64 {
    // SAFETY: the debug registers affect only this vCPU's own traps.
    unsafe { hypercall2(HYPERVISOR_SET_DEBUGREG, reg, value) }
}

fn get(reg: u64) -> i64 {
    // SAFETY: a read.
    unsafe { hypercall1(HYPERVISOR_GET_DEBUGREG, reg) }
}

static mut WATCHED: u64 = 0;

/// L0, R/W0 = 01 (writes), LEN0 = 10 (8 bytes).
const DR7_WRITE_8: u64 = 1 | (0b01 << 16) | (0b10 << 18);

pub fn run() -> ! {
    let mut c = Checks::new();
    for (what, reg, value, want) in [
        ("DR0 on the hypervisor's image", 0, HYPERVISOR_IMAGE, -1),
        ("DR1 non-canonical", 1, 0x8000_0000_0000, -1),
        ("DR7 with GD", 7, 1 << 13, -1),
        ("DR7 with an I/O breakpoint on DR0", 7, 1 | (0b10 << 16), -1),
        (
            "DR7 with an I/O breakpoint on DR3, not armed",
            7,
            0b10 << 28,
            -1,
        ),
        ("DR6 above 32 bits", 6, 1 << 40, -22),
        ("DR7 above 32 bits", 7, 1 << 40, -22),
        ("register 8", 8, 0, -22),
    ] {
        let r = set(reg, value);
        c.check(
            format_args!("set_debugreg: {what} refused"),
            r == want,
            format_args!("returned {} (expected {want})", Ret(r)),
        );
    }
    let r = get(8);
    c.check(
        "get_debugreg(8): EINVAL",
        r == -22,
        format_args!("returned {}", Ret(r)),
    );

    let r = set(7, 0xD800);
    let g = get(7);
    c.check(
        "DR7 keeps bit 10 set and bits 11, 12, 14, 15 clear",
        r == 0 && g == 0x400,
        format_args!("set {}, get {g:#x}", Ret(r)),
    );

    let at = &raw mut WATCHED as u64;
    let r0 = set(0, at);
    let r6 = set(6, 0);
    let r7 = set(7, DR7_WRITE_8);
    // SAFETY: writes this test's own static; the #DB (a trap) comes after the write.
    let p = unsafe { probe!(DEBUG, "mov qword ptr [{a}], 1"; a = in(reg) at) };
    let dr6 = get(6);
    c.check(
        "a write to the watched variable raises #DB, DR6 reports B0",
        r0 == 0 && r6 == 0 && r7 == 0 && p.caught.is_some() && dr6 & 1 == 1 && get(0) as u64 == at,
        format_args!(
            "set {} {} {}, caught {}, DR6 {dr6:#x}",
            Ret(r0),
            Ret(r6),
            Ret(r7),
            p.caught.is_some()
        ),
    );
    let r7 = set(7, 0);
    // SAFETY: as above.
    let p = unsafe { probe!(DEBUG, "mov qword ptr [{a}], 2"; a = in(reg) at) };
    c.check(
        "disarmed, the same write raises nothing",
        r7 == 0 && p.caught.is_none(),
        format_args!("set {}, caught {}", Ret(r7), p.caught.is_some()),
    );
    c.finish()
}
