//! `isolation`: from ring 1, the hypervisor's memory can be neither read nor written.
//!
//! While a guest runs, only two hypervisor slots are mapped: the read-only M2P table and the
//! per-pCPU entry area, whose stubs, GDT, TSS and IDT pages are read-only (DESIGN §2). Ring 1
//! is a supervisor ring, so it can *read* those read-only pages by design; every other probe
//! must fault.
//!
//! Pass: every probe below ends in a #PF delivered to the guest, with `cr2` = the probed
//! address, the error code's W bit matching the access and its U bit clear, and `rip` at the
//! probing instruction. Each probe prints `probe <what> <read|write> <addr>: #PF (…)`, or
//! `…: FAILED (…)`, and counts as a check; a last `check` line sums them up. Reads of the
//! entry area's read-only pages print `probe <what> read <addr>: readable by design` (or
//! that they faulted) and are not checks.

use xenia_guest_rt::boot::start_info;
use xenia_guest_rt::check::Checks;
use xenia_guest_rt::trap::{PAGE_FAULT, Probe};
use xenia_guest_rt::{events, println, probe};

use super::{DIRECT_MAP, ENTRY_AREA, HYPERVISOR_IMAGE, M2P, PF_USER, PF_WRITE};

/// The hypervisor's MMIO slot (261): the local APIC and other device registers.
const MMIO: u64 = 0xFFFF_8280_0000_0000;
/// The last page of the hypervisor's reserved range.
const LAST_RESERVED_PAGE: u64 = 0xFFFF_87FF_FFFF_F000;

#[derive(Clone, Copy, PartialEq)]
enum Access {
    Read,
    Write,
}

fn access(addr: u64, how: Access) -> Probe {
    match how {
        // SAFETY: a load from an address that must not be mapped; at worst it reads.
        Access::Read => unsafe {
            probe!(PAGE_FAULT, "mov {v}, qword ptr [{a}]"; a = in(reg) addr, v = out(reg) _)
        },
        // SAFETY: a store to an address that must not be writable. If isolation is broken
        // this corrupts hypervisor memory, which is what the test exists to detect.
        Access::Write => unsafe {
            probe!(PAGE_FAULT, "mov qword ptr [{a}], {v}"; a = in(reg) addr, v = in(reg) 0u64)
        },
    }
}

/// Prints the probe's line, counts it as a check, and returns whether it ended as it must.
fn check_probe(c: &mut Checks, what: &str, addr: u64, how: Access) -> bool {
    let rw = if how == Access::Write {
        "write"
    } else {
        "read"
    };
    let p = access(addr, how);
    let Some(e) = p.caught else {
        return c.line(
            false,
            format_args!("probe {what} {rw} {addr:#x}: FAILED (the {rw} succeeded)"),
        );
    };
    let ec = e.regs.error_code;
    let ok = e.cr2 == addr
        && (ec & PF_WRITE != 0) == (how == Access::Write)
        && ec & PF_USER == 0
        && e.regs.rip == p.insn_rip;
    if ok {
        c.line(
            true,
            format_args!("probe {what} {rw} {addr:#x}: #PF (error code {ec:#x})"),
        )
    } else {
        c.line(
            false,
            format_args!(
                "probe {what} {rw} {addr:#x}: FAILED (#PF with error code {ec:#x}, cr2 {:#x}, \
                 rip {:#x}, expected rip {:#x})",
                e.cr2, e.regs.rip, p.insn_rip
            ),
        )
    }
}

fn readable_by_design(what: &str, addr: u64) {
    let p = access(addr, Access::Read);
    match p.caught {
        None => println!("probe {what} read {addr:#x}: readable by design"),
        Some(e) => println!(
            "probe {what} read {addr:#x}: #PF (error code {:#x}): not readable, stricter than \
             designed",
            e.regs.error_code
        ),
    }
}

pub fn run() -> ! {
    let mut c = Checks::new();
    events::mask();

    // Our own first frame as the hypervisor's direct map would show it.
    let own_frame = {
        let si = start_info();
        // SAFETY: mfn_list is the builder's p2m list, mapped and nr_pages entries long.
        let mfn0 = unsafe { core::ptr::read_volatile(si.mfn_list as *const u64) };
        DIRECT_MAP + mfn0 * 4096
    };

    let both: [(&str, u64); 9] = [
        ("hypervisor-image", HYPERVISOR_IMAGE),
        ("hypervisor-image-slot", HYPERVISOR_IMAGE & !0xFFFF_FFFF),
        ("direct-map+1MiB", DIRECT_MAP + (1 << 20)),
        ("direct-map+16MiB", DIRECT_MAP + (16 << 20)),
        ("direct-map+64MiB", DIRECT_MAP + (64 << 20)),
        ("direct-map+128MiB", DIRECT_MAP + (128 << 20)),
        ("direct-map-own-frame", own_frame),
        ("mmio-slot", MMIO),
        ("last-reserved-page", LAST_RESERVED_PAGE),
    ];
    let mut probes = 0;
    let mut faulted = 0;
    let mut tally = |ok: bool| {
        probes += 1;
        faulted += u32::from(ok);
    };
    for (what, addr) in both {
        tally(check_probe(&mut c, what, addr, Access::Read));
        tally(check_probe(&mut c, what, addr, Access::Write));
    }

    // Mapped read-only for guests: writes only.
    let read_only: [(&str, u64); 4] = [
        ("m2p", M2P),
        ("entry-stubs", ENTRY_AREA),
        ("entry-gdt-tss", ENTRY_AREA + 0x2000),
        ("entry-idt", ENTRY_AREA + 0x3000),
    ];
    for (what, addr) in read_only {
        tally(check_probe(&mut c, what, addr, Access::Write));
    }
    for (what, addr) in &read_only[1..] {
        readable_by_design(what, *addr);
    }
    c.check(
        "every probe of hypervisor memory ended in a #PF",
        faulted == probes,
        format_args!("{} of {probes} did not", probes - faulted),
    );
    c.finish()
}
