//! Attacks answered by a fault: writing the read-only hypervisor pages every guest sees (the
//! entry area and the M2P), and executing a page mapped NX.

use guest_abi::calls;
use guest_abi::domctl::XEN_DOMINF_SHUTDOWN;
use guest_abi::layout::{ENTRY_AREA_VIRT_START, MACH2PHYS_VIRT_START};
use xenia_guest_rt::mm::{self, Window, pte, pte::entry};
use xenia_guest_rt::probe;
use xenia_guest_rt::trap::{Entry, PAGE_FAULT};

use crate::env::{ALIAS_SLOT, Env, SPARE_SLOT};
use crate::verdict::{Errname, Fault, Outcome, Verdict};
use crate::{refused, setup_error, succeeded};

/// The write bit of a page-fault error code (Intel SDM Vol. 3A §4.7).
const PF_WRITE: u64 = 1 << 1;

fn read(at: u64) -> Option<u64> {
    let v: u64;
    // SAFETY: a load; the probe resumes on #PF.
    let p =
        unsafe { probe!(PAGE_FAULT, "mov {v}, qword ptr [{a}]"; a = in(reg) at, v = out(reg) v) };
    p.caught.is_none().then_some(v)
}

fn write(at: u64, value: u64) -> Option<Entry> {
    // SAFETY: a store to a page that must be read-only: it must fault. If it does not, it
    // writes hypervisor memory, which is what the attack detects.
    let p = unsafe {
        probe!(PAGE_FAULT, "mov qword ptr [{a}], {v}"; a = in(reg) at, v = in(reg) value)
    };
    p.caught
}

/// Writes back the value a read-only hypervisor page holds (so that even a write that gets
/// through changes nothing the machine depends on): it must fault with the W bit.
fn write_same(at: u64) -> Verdict {
    let before = read(at);
    match write(at, before.unwrap_or(0)) {
        Some(e) if e.regs.error_code & PF_WRITE != 0 && e.cr2 == at => refused!("{}", Fault(&e)),
        Some(e) => succeeded!("faulted, but not as a write to it: {}", Fault(&e)),
        None => succeeded!("the write to {at:#x} went through"),
    }
}

/// The entry stubs.
pub fn write_entry_area_stubs(_: &Env) -> Verdict {
    write_same(ENTRY_AREA_VIRT_START)
}

/// The GDT and TSS page.
pub fn write_entry_area_gdt(_: &Env) -> Verdict {
    write_same(ENTRY_AREA_VIRT_START + 0x2000)
}

/// The IDT page.
pub fn write_entry_area_idt(_: &Env) -> Verdict {
    write_same(ENTRY_AREA_VIRT_START + 0x3000)
}

/// The guest's own M2P entry, with a different value (which would re-map the frame's pfn if
/// it got through; it is put back then).
pub fn write_m2p(_: &Env) -> Verdict {
    let mfn = mm::p2m(0);
    let at = MACH2PHYS_VIRT_START + 8 * mfn;
    let Some(before) = read(at) else {
        return setup_error!("the M2P entry of mfn {mfn:#x} is not readable");
    };
    let fault = write(at, before ^ 0x5A);
    let after = read(at);
    match fault {
        Some(e) if after == Some(before) && e.regs.error_code & PF_WRITE != 0 => {
            refused!("{}", Fault(&e))
        }
        _ => {
            let _ = write(at, before);
            succeeded!("M2P entry of mfn {mfn:#x} reads {after:?}, was {before:#x}")
        }
    }
}

/// Writes `jmp rcx` into a fresh frame through a writable alias, maps the frame supervisor,
/// read-only and NX, and jumps to it with `rcx` = the way back. The jump must fault with the
/// instruction-fetch bit.
pub fn execute_nx_page(env: &Env) -> Verdict {
    if !env.nx {
        return Verdict::new(Outcome::Skipped, format_args!("the CPU has no NX"));
    }
    let Some((_, mfn)) = mm::fresh_frame() else {
        return setup_error!("no fresh frame");
    };
    // `jmp rcx` (FF E1), then int3 padding.
    const CODE: u64 = 0xCCCC_CCCC_CCCC_E1FF;
    // SAFETY: the alias slot is free; the frame is fresh.
    let alias = match unsafe { Window::writable(ALIAS_SLOT, mfn) } {
        Ok(w) => w,
        Err(ret) => return setup_error!("writable alias: {}", Errname(ret)),
    };
    alias.write(0, CODE);
    let _ = alias.close();
    // SAFETY: the spare slot is free.
    let x = match unsafe { Window::open(SPARE_SLOT, entry(mfn, pte::PRESENT | pte::NX)) } {
        Ok(w) => w,
        Err(ret) => return setup_error!("mapping the page NX: {}", Errname(ret)),
    };
    let target = x.va();
    // SAFETY: a jump into a page holding `jmp rcx` back to the probe's recovery point; with
    // NX honoured it faults on the fetch, and the probe resumes at the same point. Nothing is
    // pushed, so the stack is the same either way.
    let p = unsafe {
        probe!(PAGE_FAULT, "lea rcx, [rip + 3f]", "jmp {t}"; t = in(reg) target, out("rcx") _)
    };
    let _ = x.close();
    match p.caught {
        // The fetch bit is what NX gives; a fault at the target without it (a reserved-bit
        // fault, say) still kept the code from running, and the line shows the error code.
        Some(e) if e.regs.rip == target => refused!("{}", Fault(&e)),
        Some(e) => succeeded!("faulted elsewhere: {} at {:#x}", Fault(&e), e.regs.rip),
        None => succeeded!("the code in the NX page ran"),
    }
}

/// The entry area's guest-readable pages (the CPU page, the entry and NMI stacks), by
/// offset and length, as the hypervisor lays them out (`arch/x86_64/entry.rs`).
const READABLE: [(u64, u64); 3] = [(0x2000, 0x1000), (0x5000, 0x2000), (0x8000, 0x2000)];
/// The hypervisor's own virtual slots beyond the M2P and the entry area (258–271: image,
/// device registers, direct map): no address there may be readable by a guest.
const PRIVATE: core::ops::Range<u64> = 0xFFFF_8100_0000_0000..0xFFFF_8800_0000_0000;
/// What the attack leaves in RAX and RCX across a hypercall, to look for afterwards.
const MARKER: u64 = 0x5EC2_E7F0_0D15_C105;

/// Writes [`MARKER`] into `field` as two 32-bit halves: no register of this guest ever holds
/// it whole, so an entry of its own (a timer interrupt, a hypercall), whose registers the
/// entry stack shows, cannot leave it there and be taken for the scratch domain's.
fn plant(field: &mut u64) {
    let halves = (field as *mut u64).cast::<u32>();
    // SAFETY: `field` is a valid, aligned u64; its two halves are written in place.
    unsafe {
        core::ptr::write_volatile(halves, core::hint::black_box(MARKER as u32));
        core::ptr::write_volatile(halves.add(1), core::hint::black_box((MARKER >> 32) as u32));
    }
}

/// Whether `v` is [`MARKER`], compared by opaque halves, for the same reason.
fn is_marker(v: u64) -> bool {
    v as u32 == core::hint::black_box(MARKER as u32)
        && (v >> 32) as u32 == core::hint::black_box((MARKER >> 32) as u32)
}

/// F7 (issue 10): what ring 1 can read in the entry area. A scratch domain starts with a
/// marker in RAX and RCX and faults on its first instruction, on this pCPU (the entry stub
/// leaves both on the entry stack); right after the yield that ran it, before any trap of its
/// own, this guest reads the top of its entry stack: another domain's registers must not be
/// there (the stacks are wiped when a vCPU of another domain runs, `scrub_entry_stacks`; this
/// guest's own may be). Then it reads the CPU page and the entry and NMI stacks: no
/// hypervisor address (image, direct map) may be there, nor the marker. On several pCPUs the
/// scratch domain may run elsewhere, where this guest cannot look: the `-smp 1` run checks.
pub fn entry_area_disclosure(_: &Env) -> Verdict {
    /// Yields before giving up (one is enough on one pCPU).
    const TRIES: usize = 2000;
    /// The entry stack's top words, where an entry leaves RAX and RCX.
    const STACK_TOP: u64 = ENTRY_AREA_VIRT_START + 0x5000 + 0x2000;
    let d = match crate::hv::runnable_domain_with(|ctx| {
        plant(&mut ctx.user_regs.rax);
        plant(&mut ctx.user_regs.rcx);
    }) {
        Ok(d) => d,
        Err((what, r)) => return setup_error!("runnable domain: {what} {}", Errname(r)),
    };
    // Nothing between a hypercall's return (the unpause, which may switch to the scratch
    // domain at once, or a yield) and these loads enters the hypervisor (the words are
    // readable: no fault), so what an entry of another domain left is still there to see.
    let look = || {
        (1..=9u64)
            .map(|i| STACK_TOP - 8 * i)
            .find(|&at| read(at).is_some_and(is_marker))
    };
    let mut ran = false;
    for _ in 0..TRIES {
        if let Some(at) = look() {
            return succeeded!(
                "the scratch domain's RAX/RCX marker read at {at:#x}, at the top of the entry \
                 stack, after it ran"
            );
        }
        if crate::hv::domain_info(d.id).is_ok_and(|i| i.flags & XEN_DOMINF_SHUTDOWN != 0) {
            ran = true;
            break;
        }
        let _ = calls::sched_yield();
    }
    if !ran {
        return setup_error!("the scratch domain did not run in {TRIES} yields");
    }
    let (mut words, mut private, mut marker, mut unreadable) = (0u64, None, None, 0u64);
    for (offset, len) in READABLE {
        let base = ENTRY_AREA_VIRT_START + offset;
        for at in (base..base + len).step_by(8) {
            match read(at) {
                None => unreadable += 1,
                Some(v) => {
                    words += 1;
                    if PRIVATE.contains(&v) && private.is_none() {
                        private = Some((at, v));
                    }
                    if is_marker(v) && marker.is_none() {
                        marker = Some(at);
                    }
                }
            }
        }
    }
    if words == 0 {
        return setup_error!("none of the entry area's pages could be read ({unreadable} faults)");
    }
    match (private, marker) {
        (None, None) => refused!(
            "{words} words read, {unreadable} unreadable: no hypervisor address and no other \
             domain's register"
        ),
        (p, m) => succeeded!("hypervisor address {p:x?}, the scratch domain's marker at {m:x?}"),
    }
}
