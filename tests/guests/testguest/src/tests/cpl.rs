//! `cpl`: the kernel runs in ring 1, user code in ring 3, and the entry state is the one the
//! porting guide documents.
//!
//! Pass: CS has RPL 1 in the kernel and equals `KERNEL_CS`; at entry SS = DS = ES =
//! `KERNEL_DS`, FS = GS = 0, every general-purpose register but `rsi`/`rsp` is zero, `rsp` is
//! the top of the bootstrap stack (the start of the padding), IF = 1, IOPL = 0, DF = 0, events
//! masked; `shared_info` is readable after `start_info` with live time; ring-3 code reads CS
//! with RPL 3 (= `USER_CS`), SS = `USER_SS`, and its `int 0x80` frame says the same; with SMEP,
//! ring 1 cannot execute a user page.

use core::fmt::Write;
use core::sync::atomic::Ordering;

use guest_abi::selectors::{KERNEL_CS, KERNEL_DS, KERNEL_SS, USER_CS, USER_DS, USER_SS};
use guest_abi::start_info::StartInfo;
use guest_abi::trap::RFLAGS_IF;
use xenia_guest_rt::boot::{
    entry_state, entry_upcall_mask, image, padding, shared, start_info, start_info_va,
};
use xenia_guest_rt::check::{Checks, Text};
use xenia_guest_rt::time::now_ns;
use xenia_guest_rt::trap::{ExitKind, PAGE_FAULT, current_cs, current_ds, current_ss};
use xenia_guest_rt::{println, probe, user};

use super::{PF_FETCH, PF_PRESENT, PF_USER, fault, run_user};
use crate::ring3;

/// rflags.IOPL (Intel SDM Vol. 1 §3.4.3).
const RFLAGS_IOPL: u64 = 3 << 12;
/// rflags.DF.
const RFLAGS_DF: u64 = 1 << 10;

pub fn run() -> ! {
    let mut c = Checks::new();

    // Ring 1, from CS now.
    let cs = current_cs();
    c.check(
        "kernel runs in CPL 1",
        cs & 3 == 1,
        format_args!("CS {cs:#x}, CPL {}", cs & 3),
    );
    c.eq_hex("kernel CS is KERNEL_CS", cs.into(), KERNEL_CS.into());
    c.eq_hex(
        "kernel SS is KERNEL_SS",
        current_ss().into(),
        KERNEL_SS.into(),
    );
    c.eq_hex(
        "kernel DS is KERNEL_DS",
        current_ds().into(),
        KERNEL_DS.into(),
    );

    entry_state_checks(&mut c);
    ring3_checks(&mut c);
    mapping_checks(&mut c);
    smep_check(&mut c);
    c.finish()
}

fn entry_state_checks(c: &mut Checks) {
    let e = entry_state();
    c.eq_hex("entry CS", e.cs, KERNEL_CS.into());
    c.eq_hex("entry SS", e.ss, KERNEL_SS.into());
    c.eq_hex("entry DS", e.ds, KERNEL_DS.into());
    c.eq_hex("entry ES", e.es, KERNEL_DS.into());
    c.check(
        "entry FS and GS are null",
        e.fs == 0 && e.gs == 0,
        format_args!("fs {:#x} gs {:#x}", e.fs, e.gs),
    );
    let mut nonzero = Text::<200>::new();
    for (name, value) in e.zero_registers() {
        if value != 0 {
            let _ = write!(nonzero, " {name}={value:#x}");
        }
    }
    c.check(
        "entry general-purpose registers are zero",
        nonzero.is_empty(),
        format_args!("non-zero:{nonzero}"),
    );
    let (pad_start, _) = padding();
    c.check(
        "entry rsp is the top of the bootstrap stack",
        e.rsp == pad_start,
        format_args!(
            "rsp {:#x}, pt_base + (nr_pt_frames + 1) pages = {pad_start:#x}",
            e.rsp
        ),
    );
    c.check(
        "entry rflags: IF 1, IOPL 0, DF 0",
        e.rflags & RFLAGS_IF != 0 && e.rflags & RFLAGS_IOPL == 0 && e.rflags & RFLAGS_DF == 0,
        format_args!("rflags {:#x}", e.rflags),
    );
    c.eq("events masked at entry", entry_upcall_mask(), 1);

    // shared_info, which the runtime found at start_info + 4096, is the real one: its time
    // is live, and it is writable.
    let time = shared().vcpu_info[0].time.snapshot();
    let t1 = now_ns();
    let t2 = now_ns();
    c.check(
        "shared_info has live vcpu_time_info",
        time.tsc_to_system_mul != 0 && t1 > 0 && t2 >= t1,
        format_args!(
            "tsc_to_system_mul {:#x} tsc_shift {} system time {t1} ns",
            time.tsc_to_system_mul, time.tsc_shift
        ),
    );
    // Writable: the guest owns the per-port mask bits (a bit no test uses).
    let mask_word = &shared().evtchn_mask[63];
    let old = mask_word.fetch_or(1 << 63, Ordering::SeqCst);
    let readback = mask_word.load(Ordering::SeqCst);
    mask_word.store(old, Ordering::SeqCst);
    c.check(
        "shared_info is writable",
        readback & (1 << 63) != 0,
        format_args!("evtchn_mask[63] read back {readback:#x}"),
    );
}

/// The padding is mapped writable up to its end and ring 3 can use all of it; the bootstrap
/// pages before it are supervisor-only.
fn mapping_checks(c: &mut Checks) {
    let (start, end) = padding();
    println!(
        "padding {start:#x}..{end:#x} ({} KiB)",
        (end - start) / 1024
    );
    let last = end - 8;
    // SAFETY: the last word of the padding, which nothing uses; if it is not mapped the
    // probe catches the fault.
    let p = unsafe {
        probe!(PAGE_FAULT, "mov qword ptr [{a}], {v}", "mov {r}, qword ptr [{a}]";
            a = in(reg) last, v = in(reg) 0x1234_5678u64, r = out(reg) _)
    };
    c.check(
        "padding is mapped writable up to its end",
        p.caught.is_none(),
        format_args!(
            "{last:#x}: {}",
            if p.caught.is_some() {
                "#PF"
            } else {
                "written and read"
            }
        ),
    );
    // SAFETY: a read just past the padding; a fault is caught.
    let p =
        unsafe { probe!(PAGE_FAULT, "mov {r}, qword ptr [{a}]"; a = in(reg) end, r = out(reg) _) };
    println!(
        "note: {end:#x}, just past the padding, is {}",
        if p.caught.is_some() {
            "not mapped"
        } else {
            "mapped too"
        }
    );

    let (exit, _, _) = run_user(PAGE_FAULT, ring3::load(), last);
    let faulted = fault(&exit).is_some();
    c.check(
        "ring 3 can read the end of the padding",
        !faulted,
        format_args!("{last:#x}: {}", if faulted { "#PF" } else { "read" }),
    );

    // Bootstrap items 1 to 8 of the porting guide are supervisor mappings.
    let si = start_info();
    let supervisor: [(&str, u64); 6] = [
        ("the kernel image", image().0),
        ("the p2m list", si.mfn_list),
        ("start_info", start_info_va()),
        ("shared_info", StartInfo::shared_info_va(start_info_va())),
        ("the bootstrap page tables", si.pt_base),
        ("the bootstrap stack", start - 8),
    ];
    let want = PF_PRESENT | PF_USER;
    for (what, addr) in supervisor {
        let (exit, _, _) = run_user(PAGE_FAULT, ring3::load(), addr);
        match fault(&exit) {
            Some(e) => c.check(
                format_args!("ring 3 cannot read {what}"),
                e.regs.error_code == want && e.cr2 == addr,
                format_args!(
                    "{addr:#x}: #PF error code {:#x} (expected {want:#x}) cr2 {:#x}",
                    e.regs.error_code, e.cr2
                ),
            ),
            None => c.check(
                format_args!("ring 3 cannot read {what}"),
                false,
                format_args!("{addr:#x}: the read succeeded"),
            ),
        };
    }
}

fn ring3_checks(c: &mut Checks) {
    let p = ring3::cpl();
    let base = user::load(&p.blob);
    user::clear_data();
    let exit = user::run(base, user::data(), 0);
    if !c.check(
        "ring-3 program returned through int 0x80",
        exit.kind == ExitKind::Service(0x80) && exit.entry.regs.rdi == 0x600d,
        format_args!("{:?}, result {:#x}", exit.kind, exit.entry.regs.rdi),
    ) {
        return;
    }
    let user_cs = user::data_word(0);
    c.check(
        "user code runs in CPL 3",
        user_cs & 3 == 3,
        format_args!("CS {user_cs:#x}, CPL {}", user_cs & 3),
    );
    c.eq_hex("user CS is USER_CS", user_cs, USER_CS.into());
    c.eq_hex("user SS is USER_SS", user::data_word(1), USER_SS.into());
    c.eq_hex("user DS is USER_DS", user::data_word(2), USER_DS.into());
    let rflags = user::data_word(4);
    c.check(
        "user rflags: IOPL 0",
        rflags & RFLAGS_IOPL == 0,
        format_args!("rflags {rflags:#x}"),
    );
    let r = &exit.entry.regs;
    c.check(
        "int 0x80 frame says ring 3",
        r.cs == u64::from(USER_CS) && r.ss == u64::from(USER_SS),
        format_args!("cs {:#x} ss {:#x}", r.cs, r.ss),
    );
    c.eq_hex("int 0x80 frame rip", r.rip, base + p.mark);
    c.eq_hex("int 0x80 frame rsp", r.rsp, user::data_word(5));
    c.check(
        "int 0x80 handler runs in CPL 1",
        exit.entry.handler_cs == KERNEL_CS,
        format_args!("handler CS {:#x}", exit.entry.handler_cs),
    );
    c.eq_hex(
        "back in the kernel: CS",
        current_cs().into(),
        KERNEL_CS.into(),
    );
}

/// CPUID.(EAX=7,ECX=0):EBX bit 7 (Intel SDM Vol. 2A, CPUID).
fn cpu_has_smep() -> bool {
    core::arch::x86_64::__cpuid_count(7, 0).ebx & (1 << 7) != 0
}

fn smep_check(c: &mut Checks) {
    if !cpu_has_smep() {
        println!("note: the CPU has no SMEP; ring-1 execution of user pages not checked");
        return;
    }
    // A user page holding `jmp rax`: without SMEP enforcement ring 1 would run it and come
    // straight back (rax = the probe's recovery address), and the probe would see no fault.
    let target = user::code_base() + user::CODE_MAX - 16;
    // SAFETY: the end of the code area of the padding is writable and unused by any program.
    unsafe { core::ptr::write_volatile(target as *mut [u8; 2], [0xFF, 0xE0]) };
    // SAFETY: the jump either faults (SMEP) or runs `jmp rax` back to the recovery label.
    let probe = unsafe {
        probe!(
            PAGE_FAULT,
            "lea rax, [rip + 3f]",
            "jmp {t}";
            t = in(reg) target,
            out("rax") _,
        )
    };
    match probe.caught {
        Some(e) => {
            c.check(
                "SMEP: ring 1 cannot execute a user page",
                e.regs.error_code == PF_PRESENT | PF_FETCH
                    && e.cr2 == target
                    && e.regs.rip == target,
                format_args!(
                    "#PF error code {:#x} cr2 {:#x} rip {:#x}, expected {:#x} at {target:#x}",
                    e.regs.error_code,
                    e.cr2,
                    e.regs.rip,
                    PF_PRESENT | PF_FETCH
                ),
            );
        }
        None => {
            c.check(
                "SMEP: ring 1 cannot execute a user page",
                false,
                format_args!("ring 1 executed code at {target:#x}"),
            );
        }
    }
}
