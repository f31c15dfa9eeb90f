//! What a Xen PV Linux kernel asks of the hypervisor besides its own page tables (issue 18),
//! driven from the ring-1 kernel:
//!
//! `linux_abi_privop`: privileged instructions answered as Xen answers a PV kernel.
//! 1. `rdmsr` of APIC_BASE, EFER, PAT, the FS base, platform info; #GP(0) at the instruction
//!    for LSTAR, SPEC_CTRL, an MTRR and a hypervisor MSR. `wrmsr` of LSTAR, STAR, SYSENTER_*,
//!    SPEC_CTRL, TSC_AUX, APIC_BASE, PAT: #GP; of EFER with its own value: accepted, with
//!    another: #GP; of the FS base: `set_segment_base`.
//! 2. `mov` from CR0 (virtual TS), CR2 (the last fault's address), CR3 (the L4's MFN << 12),
//!    CR4 (no PGE, no SMEP); `mov cr0` toggling TS only; `mov cr4` of its own value; any
//!    other CR write is #GP.
//! 3. `wbinvd` ignored; `invd` #GP; `xsetbv` not emulated while the hypervisor has no XSAVE.
//! 4. Port I/O #GP until `PHYSDEVOP_set_iopl(1)`; then `in` gives all ones (`al`/`ax` keep the
//!    rest of `rax`, `eax` clears the upper half), `out` is dropped, `rep insb` of 1000 bytes
//!    (several chunks) fills all ones, `rep outsw` moves `rsi`; an `ins` into a page-table
//!    page faults and leaves it alone; `set_iopl(0)` brings the #GP back.
//! 5. Attacks: `rdmsr` split across two pages is decoded whole; 15 bytes of prefixes and
//!    `rdmsr` is emulated, 16 are #GP; ring 3's `rdmsr` is never emulated.
//!
//! `linux_abi_hypercalls`: the hypercalls' answers.
//! 1. `xen_version`: capabilities, the feature word (and `pae_pgdir_above_4gb` once the assist
//!    is on), `pagesize` with a buffer `EINVAL`, `guest_handle` writes 16 bytes.
//! 2. `vm_assist` of the assists Linux turns on; `sched_op(shutdown_code)`;
//!    `physdev_op(set_iopl)` refusals.
//! 3. `vcpu_op(get_runstate_info)`; `register_runstate_memory_area`: written at once, updated
//!    across a block (blocked time counted), refused outside guest memory, never written into
//!    a page table, unregistered with 0.
//! 4. FIFO event channels (not built): `EVTCHNOP_init_control` and `expand_array` answer
//!    `EOPNOTSUPP`, as Xen built without them, and write nothing; `EFAULT` for an argument in
//!    the hypervisor's memory.
//! 5. A hypercall Xenia lacks: `ENOSYS` (the scenario checks the hypervisor's debug line).
//!
//! `linux_abi_domu` (run as a domU by dom0test `linux_abi_domu`): what Xen keeps from a domU.
//! `xen_version(commandline)` is `"<denied>"` (nine bytes written), `build_id` and the
//! variable-length strings `EPERM`, the feature word without `dom0`;
//! `PHYSDEVOP_pirq_eoi_gmfn_v2` of its own frame 0, of a frame not its own `EINVAL`;
//! `get_free_pirq` and `remote_shutdown` `EPERM`; `set_iopl(1)` makes its port I/O read all
//! ones (it has no ports at all).

use guest_abi::calls;
use guest_abi::errno::Errno::{EFAULT, EINVAL, ENOENT, ENOSYS};
use guest_abi::hypercall::{
    HYPERVISOR_PHYSDEV_OP, HYPERVISOR_SCHED_OP, HYPERVISOR_VCPU_OP, HYPERVISOR_VM_ASSIST,
    HYPERVISOR_XEN_VERSION, HYPERVISOR_XENOPROF_OP,
};
use guest_abi::memory::VMASST_CMD_ENABLE;
use guest_abi::physdev::{PHYSDEVOP_SET_IOPL, PhysdevSetIopl};
use guest_abi::version::{XENVER_GUEST_HANDLE, XENVER_PAGESIZE};
use xenia_guest_rt::check::{Checks, Ret, error};
use xenia_guest_rt::mm::{self, pte};
use xenia_guest_rt::trap::{Entry, ExitKind, GENERAL_PROTECTION, INVALID_OPCODE, PAGE_FAULT};
use xenia_guest_rt::{events, probe, time, user};

use super::{HYPERVISOR_IMAGE, NON_CANONICAL, raw};

/// Two pages outside everything Rust code uses, for code split across them.
const SPLIT_CODE: u64 = 0x5E10_0000_0000;
/// A user page for ring 3's `rdmsr`.
const USER_CODE: u64 = 0x5E20_0000_0000;

const APIC_BASE: u32 = 0x1B;
const PLATFORM_INFO: u32 = 0xCE;
const PAT: u32 = 0x277;
const MTRR_PHYS_BASE0: u32 = 0x200;
const SPEC_CTRL: u32 = 0x48;
const SYSENTER_CS: u32 = 0x174;
const SYSENTER_ESP: u32 = 0x175;
const SYSENTER_EIP: u32 = 0x176;
const EFER: u32 = 0xC000_0080;
const STAR: u32 = 0xC000_0081;
const LSTAR: u32 = 0xC000_0082;
const FS_BASE: u32 = 0xC000_0100;
const TSC_AUX: u32 = 0xC000_0103;
/// Xen's fixed PAT (`XEN_MSR_PAT`).
const XEN_MSR_PAT: u64 = 0x0000_0501_0007_0406;
/// EFER.LME, LMA.
const EFER_LONG: u64 = (1 << 8) | (1 << 10);
/// EFER.SVME, never shown.
const EFER_SVME: u64 = 1 << 12;
const CR0_TS: u64 = 1 << 3;
const CR4_PGE: u64 = 1 << 7;
const CR4_SMEP: u64 = 1 << 20;

/// An instruction's fate: emulated (the probe saw no exception) or the exception delivered.
fn delivered_gp(c: &mut Checks, what: core::fmt::Arguments, caught: Option<Entry>, rip: u64) {
    c.check(
        what,
        caught.is_some_and(|e| {
            e.regs.vector == u64::from(GENERAL_PROTECTION)
                && e.regs.error_code == 0
                && e.regs.rip == rip
        }),
        format_args!(
            "{:?}",
            caught.map(|e| (e.regs.vector, e.regs.error_code, e.regs.rip))
        ),
    );
}

fn rdmsr(msr: u32) -> (Result<u64, Option<Entry>>, u64) {
    let (lo, hi): (u64, u64);
    // SAFETY: `rdmsr` in ring 1 raises #GP; the hypervisor answers it or delivers the #GP.
    let p =
        unsafe { probe!(GENERAL_PROTECTION, "rdmsr"; in("ecx") msr, out("eax") lo, out("edx") hi) };
    match p.caught {
        None => (Ok((hi << 32) | (lo & 0xFFFF_FFFF)), p.insn_rip),
        Some(e) => (Err(Some(e)), p.insn_rip),
    }
}

fn wrmsr(msr: u32, value: u64) -> (Option<Entry>, u64) {
    // SAFETY: `wrmsr` in ring 1 raises #GP; the hypervisor performs only what Xen allows a
    // PV kernel (a segment base, a write of the value already there) and refuses the rest.
    let p = unsafe {
        probe!(GENERAL_PROTECTION, "wrmsr";
            in("ecx") msr, in("eax") value as u32, in("edx") (value >> 32) as u32)
    };
    (p.caught, p.insn_rip)
}

fn read_cr(n: u8) -> u64 {
    let v: u64;
    // SAFETY: reading a control register changes nothing; ring 1's #GP is emulated (if it
    // were not, the runtime's #GP handler would end the test, the failure to report).
    unsafe {
        match n {
            0 => core::arch::asm!("mov {}, cr0", out(reg) v),
            2 => core::arch::asm!("mov {}, cr2", out(reg) v),
            3 => core::arch::asm!("mov {}, cr3", out(reg) v),
            _ => core::arch::asm!("mov {}, cr4", out(reg) v),
        }
    }
    v
}

fn set_iopl(iopl: u32) -> i64 {
    let arg = PhysdevSetIopl { iopl };
    // SAFETY: the virtual IOPL only decides whether this kernel's port I/O is emulated.
    unsafe {
        raw::call(
            HYPERVISOR_PHYSDEV_OP,
            [PHYSDEVOP_SET_IOPL.into(), &arg as *const _ as u64, 0, 0, 0],
        )
    }
}

pub fn privop() -> ! {
    let mut c = Checks::new();
    events::mask();
    msrs(&mut c);
    control_registers(&mut c);
    caches(&mut c);
    ports(&mut c);
    split_and_prefixes(&mut c);
    ring3_rdmsr(&mut c);
    no_tsc_aux(&mut c);
    c.finish()
}

fn msrs(c: &mut Checks) {
    let (r, _) = rdmsr(APIC_BASE);
    c.eq(
        "rdmsr APIC_BASE: enabled, 0xfee00000, BSP",
        r.ok(),
        Some(0xFEE0_0900),
    );
    let (r, _) = rdmsr(EFER);
    c.check(
        "rdmsr EFER: long mode on, SVME hidden",
        r.is_ok_and(|v| v & EFER_LONG == EFER_LONG && v & EFER_SVME == 0),
        format_args!("{r:x?}"),
    );
    let efer = r.unwrap_or(0);
    c.eq("rdmsr PAT: Xen's", rdmsr(PAT).0.ok(), Some(XEN_MSR_PAT));
    c.eq(
        "rdmsr PLATFORM_INFO: 0",
        rdmsr(PLATFORM_INFO).0.ok(),
        Some(0),
    );
    for (name, msr) in [
        ("LSTAR", LSTAR),
        ("SPEC_CTRL", SPEC_CTRL),
        ("MTRRphysBase0", MTRR_PHYS_BASE0),
        ("0x40000000", 0x4000_0000),
    ] {
        let (r, rip) = rdmsr(msr);
        delivered_gp(
            c,
            format_args!("rdmsr {name}: #GP(0) at the instruction"),
            r.err().flatten(),
            rip,
        );
    }
    for (name, msr) in [
        ("LSTAR", LSTAR),
        ("STAR", STAR),
        ("SYSENTER_CS", SYSENTER_CS),
        ("SYSENTER_ESP", SYSENTER_ESP),
        ("SYSENTER_EIP", SYSENTER_EIP),
        ("SPEC_CTRL", SPEC_CTRL),
        ("TSC_AUX", TSC_AUX),
        ("APIC_BASE", APIC_BASE),
        ("PAT", PAT),
    ] {
        let (caught, rip) = wrmsr(msr, 0);
        delivered_gp(
            c,
            format_args!("wrmsr {name}: #GP(0), refused"),
            caught,
            rip,
        );
    }
    let (caught, _) = wrmsr(EFER, efer);
    c.check(
        "wrmsr EFER of its own value: accepted (Linux writes back what it read)",
        caught.is_none(),
        format_args!("{caught:?}"),
    );
    let (caught, rip) = wrmsr(EFER, efer ^ (1 << 11));
    delivered_gp(
        c,
        format_args!("wrmsr EFER changing NXE: #GP(0)"),
        caught,
        rip,
    );
    let (caught, rip) = wrmsr(FS_BASE, NON_CANONICAL);
    delivered_gp(
        c,
        format_args!("wrmsr FS_BASE non-canonical: #GP(0)"),
        caught,
        rip,
    );
    let (before, _) = rdmsr(FS_BASE);
    let (caught, _) = wrmsr(FS_BASE, 0x1234_5000);
    let (after, _) = rdmsr(FS_BASE);
    c.check(
        "wrmsr FS_BASE sets the base rdmsr reads back",
        caught.is_none() && after.as_ref().ok() == Some(&0x1234_5000),
        format_args!("{caught:?}, read {after:x?}"),
    );
    if let Ok(b) = before {
        let _ = wrmsr(FS_BASE, b);
    }
}

fn control_registers(c: &mut Checks) {
    let cr0 = read_cr(0);
    c.check(
        "mov from cr0: PE, PG set, TS clear",
        cr0 & 1 != 0 && cr0 & (1 << 31) != 0 && cr0 & CR0_TS == 0,
        format_args!("{cr0:#x}"),
    );
    let (set, cleared): (u64, u64);
    // SAFETY: TS is set and cleared again with no x87/SSE instruction between (this kernel
    // is built without SSE); each `mov cr0` changes TS only and is emulated as
    // `fpu_taskswitch`.
    unsafe {
        core::arch::asm!(
            "mov {t}, {v}", "or {t}, 8", "mov cr0, {t}", "mov {s}, cr0",
            "mov cr0, {v}", "mov {d}, cr0",
            v = in(reg) cr0, t = out(reg) _, s = out(reg) set, d = out(reg) cleared,
        );
    }
    c.check(
        "mov to cr0 toggles the virtual TS only",
        set == cr0 | CR0_TS && cleared == cr0,
        format_args!("set {set:#x}, cleared {cleared:#x}"),
    );
    // SAFETY: refused (#GP): the write would clear PE and PG.
    let p = unsafe { probe!(GENERAL_PROTECTION, "mov cr0, {r}"; r = in(reg) 0u64) };
    delivered_gp(
        c,
        format_args!("mov cr0 clearing PE/PG: #GP(0)"),
        p.caught,
        p.insn_rip,
    );
    // A fault, so that CR2 has something to show.
    // SAFETY: the read faults (nothing is mapped there) and is recovered from.
    let _ = unsafe {
        probe!(PAGE_FAULT, "mov {v}, [{a}]"; a = in(reg) super::UNMAPPED, v = out(reg) _)
    };
    c.eq_hex(
        "mov from cr2: the last fault's address",
        read_cr(2),
        super::UNMAPPED,
    );
    c.eq_hex(
        "mov from cr3: the L4's MFN << 12",
        read_cr(3),
        mm::current_base() << 12,
    );
    let cr4 = read_cr(4);
    c.check(
        "mov from cr4: no PGE, no SMEP",
        cr4 & (CR4_PGE | CR4_SMEP) == 0,
        format_args!("{cr4:#x}"),
    );
    // SAFETY: the value read is written back (emulated as accepted), or #GP.
    let p = unsafe { probe!(GENERAL_PROTECTION, "mov cr4, {r}"; r = in(reg) cr4 | CR4_PGE) };
    c.check(
        "mov to cr4 of its own value (and PGE, which Linux strips): accepted",
        p.caught.is_none(),
        format_args!("{:?}", p.caught),
    );
    // SAFETY: refused (#GP).
    let p = unsafe { probe!(GENERAL_PROTECTION, "mov cr4, {r}"; r = in(reg) cr4 | CR4_SMEP) };
    delivered_gp(
        c,
        format_args!("mov to cr4 setting SMEP: #GP(0)"),
        p.caught,
        p.insn_rip,
    );
    // SAFETY: refused (#GP): CR3 changes through MMUEXT_NEW_BASEPTR.
    let p = unsafe { probe!(GENERAL_PROTECTION, "mov cr3, {r}"; r = in(reg) read_cr(3)) };
    delivered_gp(c, format_args!("mov to cr3: #GP(0)"), p.caught, p.insn_rip);
    // `mov r9, cr0` (REX.B) names the right register.
    let r9: u64;
    // SAFETY: as `read_cr`.
    unsafe { core::arch::asm!("mov r9, cr0", out("r9") r9) };
    c.eq_hex("mov r9, cr0 (REX.B)", r9, cr0);
}

fn caches(c: &mut Checks) {
    // SAFETY: ignored by the hypervisor (and harmless if executed).
    let p = unsafe { probe!(GENERAL_PROTECTION, "wbinvd") };
    c.check(
        "wbinvd: ignored",
        p.caught.is_none(),
        format_args!("{:?}", p.caught),
    );
    // SAFETY: refused (#GP), as Xen refuses it; executed it would drop dirty cache lines,
    // which ring 1 cannot do.
    let p = unsafe { probe!(GENERAL_PROTECTION, "invd") };
    delivered_gp(c, format_args!("invd: #GP(0)"), p.caught, p.insn_rip);
    // SAFETY: `xsetbv` is not emulated while the hypervisor has XSAVE off: #UD (CR4.OSXSAVE
    // clear) or #GP.
    let p = unsafe {
        probe!([GENERAL_PROTECTION, INVALID_OPCODE], "xsetbv";
            in("ecx") 0u32, in("eax") 3u32, in("edx") 0u32)
    };
    c.check(
        "xsetbv: not emulated (#UD or #GP)",
        p.caught.is_some(),
        format_args!("it completed"),
    );
}

fn ports(c: &mut Checks) {
    // SAFETY: (each access below) the ports are the hypervisor's (the PIT gate, the PICs, the
    // CMOS index, COM1's scratch and modem status registers), which not even dom0's bitmap
    // grants: refused, or emulated with Xen's answer for a port the domain was not given
    // (nothing reaches the hardware).
    let p = unsafe { probe!(GENERAL_PROTECTION, "in al, 0x61"; out("al") _) };
    delivered_gp(
        c,
        format_args!("in before set_iopl: #GP(0)"),
        p.caught,
        p.insn_rip,
    );
    c.errno("set_iopl(4): EINVAL", set_iopl(4), EINVAL);
    let bad = unsafe {
        // SAFETY: refused: the argument cannot be read.
        raw::call(
            HYPERVISOR_PHYSDEV_OP,
            [PHYSDEVOP_SET_IOPL.into(), super::UNMAPPED, 0, 0, 0],
        )
    };
    c.errno("set_iopl from an unmapped argument: EFAULT", bad, EFAULT);
    c.eq("set_iopl(1)", set_iopl(1), 0);
    let (al, ax, eax): (u64, u64, u64);
    // SAFETY: as above.
    unsafe {
        core::arch::asm!("in al, 0x61", inout("rax") 0x1122_3344_5566_7700u64 => al);
        core::arch::asm!("in ax, dx", in("dx") 0x70u16, inout("rax") 0x1122_3344_5566_0000u64 => ax);
        core::arch::asm!("in eax, dx", in("dx") 0x20u16, inout("rax") 0x1122_3344_0000_0000u64 => eax);
    }
    c.eq_hex(
        "in al: all ones, the rest of rax kept",
        al,
        0x1122_3344_5566_77FF,
    );
    c.eq_hex(
        "in ax: all ones, the rest of rax kept",
        ax,
        0x1122_3344_5566_FFFF,
    );
    c.eq_hex("in eax: all ones, upper half cleared", eax, 0xFFFF_FFFF);
    // SAFETY: dropped.
    let p = unsafe { probe!(GENERAL_PROTECTION, "out dx, al"; in("dx") 0x3FFu16, in("al") 0u8) };
    c.check(
        "out: dropped",
        p.caught.is_none(),
        format_args!("{:?}", p.caught),
    );
    let mut buf = [0u8; 1024];
    let (rdi, rcx): (u64, u64);
    // SAFETY: `rep insb` writes 1000 bytes of `buf`, all ones.
    unsafe {
        core::arch::asm!("cld", "rep insb",
            in("dx") 0x61u16, inout("rdi") buf.as_mut_ptr() as u64 => rdi,
            inout("rcx") 1000u64 => rcx);
    }
    c.check(
        "rep insb of 1000 bytes: all ones, rdi and rcx moved, nothing past",
        buf[..1000].iter().all(|&b| b == 0xFF)
            && buf[1000..].iter().all(|&b| b == 0)
            && rdi == buf.as_ptr() as u64 + 1000
            && rcx == 0,
        format_args!("rdi +{}, rcx {rcx}", rdi.wrapping_sub(buf.as_ptr() as u64)),
    );
    let (rsi, rcx): (u64, u64);
    // SAFETY: `rep outsw` reads nothing the hypervisor keeps; it is dropped.
    unsafe {
        core::arch::asm!("cld", "rep outsw",
            in("dx") 0x3FEu16, inout("rsi") buf.as_ptr() as u64 => rsi,
            inout("rcx") 3u64 => rcx);
    }
    c.check(
        "rep outsw of 3 words: rsi +6, rcx 0",
        rsi == buf.as_ptr() as u64 + 6 && rcx == 0,
        format_args!("rsi +{}, rcx {rcx}", rsi.wrapping_sub(buf.as_ptr() as u64)),
    );
    // An `ins` into our own L4, which is mapped read-only: refused, the table unchanged.
    let l4 = mm::pfn_va(mm::bootstrap_l4_pfn());
    // SAFETY: a read of our own (read-only) L4.
    let before = unsafe { core::ptr::read_volatile(l4 as *const u64) };
    // SAFETY: the write is refused (the page is read-only to this kernel).
    let p = unsafe {
        probe!([GENERAL_PROTECTION, PAGE_FAULT], "insb";
            in("dx") 0x61u16, inout("rdi") l4 => _)
    };
    // SAFETY: as above.
    let after = unsafe { core::ptr::read_volatile(l4 as *const u64) };
    c.check(
        "insb into a page-table page: a fault, the table unchanged",
        p.caught.is_some() && before == after,
        format_args!(
            "{:?}, entry {before:#x} -> {after:#x}",
            p.caught.map(|e| e.regs.vector)
        ),
    );
    c.eq("set_iopl(0)", set_iopl(0), 0);
    // SAFETY: refused again.
    let p = unsafe { probe!(GENERAL_PROTECTION, "in al, 0x61"; out("al") _) };
    delivered_gp(
        c,
        format_args!("in after set_iopl(0): #GP(0)"),
        p.caught,
        p.insn_rip,
    );
}

fn map_fresh(va: u64, flags: u64) -> mm::Mapping {
    let Some((_, mfn)) = mm::fresh_frame() else {
        error(format_args!("no fresh frame"));
    };
    // SAFETY: the page is outside everything Rust code uses.
    match unsafe { mm::map_page(va, pte::entry(mfn, flags)) } {
        Ok(m) => m,
        Err((step, r)) => error(format_args!("mapping {va:#x}: {step}: {}", Ret(r))),
    }
}

fn unmap(m: &mm::Mapping) {
    // SAFETY: nothing runs from the page any more.
    if let Err((step, r)) = unsafe { mm::unmap_page(m) } {
        error(format_args!("unmapping: {step}: {}", Ret(r)));
    }
}

fn split_and_prefixes(c: &mut Checks) {
    let maps = [
        map_fresh(SPLIT_CODE, pte::PRESENT | pte::RW),
        map_fresh(SPLIT_CODE + 4096, pte::PRESENT | pte::RW),
    ];
    // `rdmsr` (0F | 32) across the boundary, then `jmp r11` back.
    let at = SPLIT_CODE + 4095;
    // SAFETY: both pages were just mapped writable (and executable) for this test.
    unsafe {
        core::ptr::write_volatile(at as *mut u8, 0x0F);
        core::ptr::write_volatile((at + 1) as *mut [u8; 4], [0x32, 0x41, 0xFF, 0xE3]);
    }
    let (lo, hi): (u64, u64);
    // SAFETY: the code at `at` is `rdmsr; jmp r11`, and r11 is the label after the jump.
    let p = unsafe {
        probe!(GENERAL_PROTECTION, "lea r11, [rip + 4f]", "jmp {f}", "4:";
            f = in(reg) at, in("ecx") APIC_BASE, out("eax") lo, out("edx") hi, out("r11") _)
    };
    c.check(
        "rdmsr split across two pages: decoded whole, emulated",
        p.caught.is_none() && (hi << 32 | (lo & 0xFFFF_FFFF)) == 0xFEE0_0900,
        format_args!("{:?}, {hi:#x}:{lo:#x}", p.caught.map(|e| e.regs.vector)),
    );
    for m in maps.iter().rev() {
        unmap(m);
    }
    let (lo, hi): (u64, u64);
    // SAFETY: 13 prefixes and `rdmsr` (15 bytes): emulated.
    let p = unsafe {
        probe!(GENERAL_PROTECTION,
            ".byte 0x2e,0x2e,0x2e,0x2e,0x2e,0x2e,0x2e,0x2e,0x2e,0x2e,0x2e,0x2e,0x2e,0x0f,0x32";
            in("ecx") APIC_BASE, out("eax") lo, out("edx") hi)
    };
    c.check(
        "13 prefixes and rdmsr (15 bytes): emulated",
        p.caught.is_none() && (hi << 32 | (lo & 0xFFFF_FFFF)) == 0xFEE0_0900,
        format_args!("{:?}", p.caught.map(|e| e.regs.vector)),
    );
    // SAFETY: 16 bytes: the CPU refuses it (#GP), and so does the hypervisor.
    let p = unsafe {
        probe!(GENERAL_PROTECTION,
            ".byte 0x2e,0x2e,0x2e,0x2e,0x2e,0x2e,0x2e,0x2e,0x2e,0x2e,0x2e,0x2e,0x2e,0x2e,0x0f,0x32";
            in("ecx") APIC_BASE, out("eax") _, out("edx") _)
    };
    delivered_gp(
        c,
        format_args!("14 prefixes and rdmsr (16 bytes): #GP(0)"),
        p.caught,
        p.insn_rip,
    );
}

/// `cpuid` through Xen's forced-emulation prefix: `[eax, ebx, ecx, edx]`.
fn forced_cpuid(leaf: u32, subleaf: u32) -> [u32; 4] {
    let (a, b, c, d): (u64, u64, u64, u64);
    // SAFETY: the prefix is emulated as a `cpuid` (testguest `fep` checks it); rbx, which asm
    // may not name, is swapped back.
    unsafe {
        core::arch::asm!(
            "xchg {b}, rbx", "ud2", ".ascii \"xen\"", "cpuid", "xchg {b}, rbx",
            b = inout(reg) 0u64 => b,
            inout("rax") u64::from(leaf) => a,
            inout("rcx") u64::from(subleaf) => c,
            out("rdx") d,
        );
    }
    [a as u32, b as u32, c as u32, d as u32]
}

/// TSC_AUX is not offered (its writes are #GP above), so neither are the instructions that
/// read it.
fn no_tsc_aux(c: &mut Checks) {
    let ext1 = forced_cpuid(0x8000_0001, 0)[3];
    let leaf7 = forced_cpuid(7, 0)[2];
    c.check(
        "PV CPUID: RDTSCP and RDPID hidden",
        ext1 & (1 << 27) == 0 && leaf7 & (1 << 22) == 0,
        format_args!("0x80000001 edx {ext1:#x}, leaf 7 ecx {leaf7:#x}"),
    );
}

fn ring3_rdmsr(c: &mut Checks) {
    let m = map_fresh(USER_CODE, pte::PRESENT | pte::RW | pte::USER);
    // SAFETY: the page was just mapped writable for this test: `rdmsr` for ring 3.
    unsafe { core::ptr::write_volatile(USER_CODE as *mut [u8; 2], [0x0F, 0x32]) };
    xenia_guest_rt::trap::expect(GENERAL_PROTECTION);
    let exit = user::run_at(USER_CODE, user::stack_top(), u64::from(APIC_BASE), 0);
    c.check(
        "ring 3's rdmsr: #GP delivered, never emulated",
        exit.kind == ExitKind::Fault(GENERAL_PROTECTION) && exit.entry.regs.rip == USER_CODE,
        format_args!("{:?} at rip {:#x}", exit.kind, exit.entry.regs.rip),
    );
    unmap(&m);
}

fn vm_assist(ty: u64) -> i64 {
    // SAFETY: the assists turned on change nothing this test relies on.
    unsafe {
        raw::call(
            HYPERVISOR_VM_ASSIST,
            [VMASST_CMD_ENABLE.into(), ty, 0, 0, 0],
        )
    }
}

fn vcpu_op(cmd: u32, vcpu: u64, arg: u64) -> i64 {
    // SAFETY: run-state queries and registrations write only the buffers given.
    unsafe { raw::call(HYPERVISOR_VCPU_OP, [cmd.into(), vcpu, arg, 0, 0]) }
}

/// `vcpu_runstate_info` as Xen lays it out: state, `state_entry_time`, `time[4]`.
fn parse(b: [u8; 48]) -> (u32, u64, [u64; 4]) {
    let word = |i: usize| u64::from_le_bytes(b[i..i + 8].try_into().unwrap_or([0; 8]));
    let state = u32::from_le_bytes(b[..4].try_into().unwrap_or([0; 4]));
    (state, word(8), [word(16), word(24), word(32), word(40)])
}

pub fn hypercalls() -> ! {
    use guest_abi::vcpu::{VCPUOP_GET_RUNSTATE_INFO, VCPUOP_REGISTER_RUNSTATE_MEMORY_AREA};
    let mut c = Checks::new();
    events::mask();

    // 1. xen_version.
    let f = calls::xen_features(0);
    c.check(
        "get_features: mmu_pt_update_preserve_ad, direct_mapped, dom0; no writable_page_tables",
        f.is_ok_and(|f| {
            f & (1 << 5) != 0 && f & (1 << 17) != 0 && f & (1 << 11) != 0 && f & 1 == 0
        }),
        format_args!("{f:x?}"),
    );
    c.check(
        "get_features: no pae_pgdir_above_4gb before the assist",
        f.is_ok_and(|f| f & (1 << 4) == 0),
        format_args!("{f:x?}"),
    );
    c.eq("vm_assist(4gb_segments)", vm_assist(0), 0);
    c.eq("vm_assist(4gb_segments_notify)", vm_assist(1), 0);
    c.eq("vm_assist(pae_extended_cr3)", vm_assist(3), 0);
    c.eq("vm_assist(runstate_update_flag)", vm_assist(5), 0);
    c.errno(
        "vm_assist(architectural_iopl): EINVAL (Xenia lacks it)",
        vm_assist(4),
        EINVAL,
    );
    c.errno("vm_assist(64): EINVAL", vm_assist(64), EINVAL);
    let f = calls::xen_features(0);
    c.check(
        "get_features: pae_pgdir_above_4gb once the assist is on",
        f.is_ok_and(|f| f & (1 << 4) != 0),
        format_args!("{f:x?}"),
    );
    let mut word = 0u64;
    // SAFETY: refused.
    let r = unsafe {
        raw::call(
            HYPERVISOR_XEN_VERSION,
            [
                XENVER_PAGESIZE.into(),
                &mut word as *mut u64 as u64,
                0,
                0,
                0,
            ],
        )
    };
    c.errno("xen_version(pagesize) with a buffer: EINVAL", r, EINVAL);
    // SAFETY: no argument.
    let r = unsafe { raw::call(HYPERVISOR_XEN_VERSION, [XENVER_PAGESIZE.into(), 0, 0, 0, 0]) };
    c.eq("xen_version(pagesize)", r, 4096);
    let mut handle = [0xA5u8; 24];
    // SAFETY: writes the 16-byte handle into `handle`.
    let r = unsafe {
        raw::call(
            HYPERVISOR_XEN_VERSION,
            [
                XENVER_GUEST_HANDLE.into(),
                handle.as_mut_ptr() as u64,
                0,
                0,
                0,
            ],
        )
    };
    c.check(
        "xen_version(guest_handle): 16 bytes written, no more",
        r == 0 && handle[..16].iter().any(|&b| b != 0xA5) && handle[16..] == [0xA5; 8],
        format_args!("returned {r}, {handle:x?}"),
    );

    // 2. sched_op(shutdown_code), physdev_op(set_iopl) are in privop.
    let code = guest_abi::sched::SchedShutdown { reason: 0 };
    // SAFETY: records a code; the domain does not shut down.
    let r = unsafe {
        raw::call(
            HYPERVISOR_SCHED_OP,
            [
                guest_abi::sched::SCHEDOP_SHUTDOWN_CODE.into(),
                &code as *const _ as u64,
                0,
                0,
                0,
            ],
        )
    };
    c.eq("sched_op(shutdown_code)", r, 0);
    // SAFETY: refused.
    let r = unsafe {
        raw::call(
            HYPERVISOR_SCHED_OP,
            [
                guest_abi::sched::SCHEDOP_SHUTDOWN_CODE.into(),
                super::UNMAPPED,
                0,
                0,
                0,
            ],
        )
    };
    c.errno(
        "sched_op(shutdown_code) from an unmapped argument: EFAULT",
        r,
        EFAULT,
    );

    // 3. Run state.
    let mut info = [0u8; 48];
    let r = vcpu_op(VCPUOP_GET_RUNSTATE_INFO, 0, info.as_mut_ptr() as u64);
    let now = time::now_ns();
    let (state, entry, t) = parse(info);
    c.check(
        "get_runstate_info: running, entered before now, running time counted",
        r == 0 && state == 0 && entry <= now && t[0] > 0,
        format_args!("returned {r}, state {state}, entry {entry}, now {now}, time {t:?}"),
    );
    c.errno(
        "get_runstate_info of vCPU 1 (none): ENOENT",
        vcpu_op(VCPUOP_GET_RUNSTATE_INFO, 1, info.as_mut_ptr() as u64),
        ENOENT,
    );
    c.errno(
        "get_runstate_info into the hypervisor: EFAULT",
        vcpu_op(VCPUOP_GET_RUNSTATE_INFO, 0, HYPERVISOR_IMAGE),
        EFAULT,
    );
    let mut area = [0u8; 48];
    let at = area.as_mut_ptr() as u64;
    for (what, bad) in [
        ("non-canonical", NON_CANONICAL),
        ("in the hypervisor", HYPERVISOR_IMAGE),
    ] {
        c.errno(
            format_args!("register_runstate_memory_area {what}: EFAULT"),
            vcpu_op(
                VCPUOP_REGISTER_RUNSTATE_MEMORY_AREA,
                0,
                &bad as *const u64 as u64,
            ),
            EFAULT,
        );
    }
    let r = vcpu_op(
        VCPUOP_REGISTER_RUNSTATE_MEMORY_AREA,
        0,
        &at as *const u64 as u64,
    );
    // SAFETY: the hypervisor wrote `area` during the call.
    let first = parse(unsafe { core::ptr::read_volatile(&area) });
    c.check(
        "register_runstate_memory_area: written at once (running)",
        r == 0 && first.0 == 0 && first.2[0] > 0,
        format_args!("returned {r}, {first:?}"),
    );
    // Block for 2 ms: switched out (blocked) and in (running) again. A host that preempts
    // QEMU for longer than that between taking the deadline and the poll (TCG follows the
    // host's clock) makes the deadline past and the poll return at once, unblocked: try
    // again, a bounded number of times.
    let mut second = first;
    for _ in 0..20 {
        let _ = calls::sched_poll(&[], time::now_ns() + 2_000_000);
        // SAFETY: as above.
        second = parse(unsafe { core::ptr::read_volatile(&area) });
        if second.2[2] > first.2[2] {
            break;
        }
    }
    c.check(
        "the area after a 2 ms block: running, re-entered, blocked time grew, no update flag",
        // Not "2 ms more blocked": the deadline is taken before the poll, and a host that
        // preempts QEMU in between (TCG, a loaded CI runner) shortens the blocked part.
        second.0 == 0
            && second.1 > first.1
            && second.1 & (1 << 63) == 0
            && second.2[2] > first.2[2],
        format_args!("{first:?} -> {second:?}"),
    );
    // Unregistered: no more writes.
    let zero = 0u64;
    c.eq(
        "register_runstate_memory_area(0): unregisters",
        vcpu_op(
            VCPUOP_REGISTER_RUNSTATE_MEMORY_AREA,
            0,
            &zero as *const u64 as u64,
        ),
        0,
    );
    area = [0x5A; 48];
    let _ = calls::sched_poll(&[], time::now_ns() + 1_000_000);
    // SAFETY: as above.
    let untouched = unsafe { core::ptr::read_volatile(&area) } == [0x5A; 48];
    c.check(
        "no writes once unregistered",
        untouched,
        format_args!("written"),
    );
    // An area in our own (read-only) L4: accepted as Xen does, never written.
    let l4 = mm::pfn_va(mm::bootstrap_l4_pfn());
    // SAFETY: reads of our own L4.
    let before = unsafe { core::ptr::read_volatile(l4 as *const [u8; 48]) };
    let r = vcpu_op(
        VCPUOP_REGISTER_RUNSTATE_MEMORY_AREA,
        0,
        &l4 as *const u64 as u64,
    );
    let _ = calls::sched_poll(&[], time::now_ns() + 1_000_000);
    // SAFETY: as above.
    let after = unsafe { core::ptr::read_volatile(l4 as *const [u8; 48]) };
    c.check(
        "an area on a page-table page: accepted, never written",
        r == 0 && before == after,
        format_args!("returned {r}"),
    );
    let _ = vcpu_op(
        VCPUOP_REGISTER_RUNSTATE_MEMORY_AREA,
        0,
        &zero as *const u64 as u64,
    );

    // 4. FIFO event channels: not built. Xen built without `CONFIG_EVTCHN_FIFO` answers
    // `EOPNOTSUPP` (after reading the argument), never `ENOSYS`, and writes nothing back.
    fifo_refused(&mut c);

    // 5. A hypercall Xenia lacks.
    // SAFETY: refused (ENOSYS).
    let r = unsafe { raw::call(HYPERVISOR_XENOPROF_OP, [0, 0, 0, 0, 0]) };
    c.errno("xenoprof_op: ENOSYS (logged by the hypervisor)", r, ENOSYS);
    c.finish()
}

/// `EVTCHNOP_init_control` and `expand_array`: `EOPNOTSUPP` for a well-formed request
/// (`link_bits` left alone), `EFAULT` for an argument the hypervisor cannot read.
fn fifo_refused(c: &mut Checks) {
    use guest_abi::errno::Errno::EOPNOTSUPP;
    use guest_abi::event::{
        EVTCHNOP_EXPAND_ARRAY, EVTCHNOP_INIT_CONTROL, EvtchnExpandArray, EvtchnInitControl,
    };
    use guest_abi::hypercall::HYPERVISOR_EVENT_CHANNEL_OP;
    let mut init = EvtchnInitControl {
        control_gfn: mm::bootstrap_l4_pfn(),
        offset: 0,
        vcpu: 0,
        link_bits: 0xAA,
        pad: [0; 7],
    };
    // SAFETY: the hypervisor may at most write `init`'s OUT field.
    let r = unsafe {
        raw::call(
            HYPERVISOR_EVENT_CHANNEL_OP,
            [
                EVTCHNOP_INIT_CONTROL.into(),
                &mut init as *mut EvtchnInitControl as u64,
                0,
                0,
                0,
            ],
        )
    };
    // SAFETY: a read of our own variable, which the hypervisor may have written.
    let link_bits = unsafe { core::ptr::read_volatile(&init.link_bits) };
    c.check(
        "evtchn init_control: EOPNOTSUPP (no FIFO ABI, as Xen without it), nothing written",
        r == Ret::err(EOPNOTSUPP).0 && link_bits == 0xAA,
        format_args!("returned {}, link_bits {link_bits:#x}", Ret(r)),
    );
    // SAFETY: refused before anything is read.
    let r = unsafe {
        raw::call(
            HYPERVISOR_EVENT_CHANNEL_OP,
            [EVTCHNOP_INIT_CONTROL.into(), HYPERVISOR_IMAGE, 0, 0, 0],
        )
    };
    c.errno(
        "evtchn init_control of the hypervisor's memory: EFAULT",
        r,
        EFAULT,
    );
    let expand = EvtchnExpandArray {
        array_gfn: mm::bootstrap_l4_pfn(),
    };
    // SAFETY: the hypervisor only reads `expand`.
    let r = unsafe {
        raw::call(
            HYPERVISOR_EVENT_CHANNEL_OP,
            [
                EVTCHNOP_EXPAND_ARRAY.into(),
                &expand as *const EvtchnExpandArray as u64,
                0,
                0,
                0,
            ],
        )
    };
    c.errno("evtchn expand_array: EOPNOTSUPP", r, EOPNOTSUPP);
}

pub fn domu() -> ! {
    use guest_abi::errno::Errno::EPERM;
    use guest_abi::physdev::{
        PHYSDEVOP_GET_FREE_PIRQ, PHYSDEVOP_PIRQ_EOI_GMFN_V2, PhysdevPirqEoiGmfn,
    };
    use guest_abi::version::{XENVER_BUILD_ID, XENVER_CAPABILITIES2, XENVER_COMMANDLINE};
    let mut c = Checks::new();
    events::mask();
    let xv = |cmd: u32, arg: u64| {
        // SAFETY: refused, or writes into the buffer given.
        unsafe { raw::call(HYPERVISOR_XEN_VERSION, [cmd.into(), arg, 0, 0, 0]) }
    };
    let mut line = [0xA5u8; 64];
    let r = xv(XENVER_COMMANDLINE, line.as_mut_ptr() as u64);
    c.check(
        "xen_version(commandline) from a domU: \"<denied>\" and its NUL, nothing more",
        r == 0 && &line[..9] == b"<denied>\0" && line[9..].iter().all(|&b| b == 0xA5),
        format_args!("returned {r}, {:x?}", &line[..12]),
    );
    let mut id = [0u8; 64];
    c.errno(
        "xen_version(build_id) from a domU: EPERM",
        xv(XENVER_BUILD_ID, id.as_mut_ptr() as u64),
        EPERM,
    );
    c.errno(
        "xen_version(capabilities2) from a domU: EPERM",
        xv(XENVER_CAPABILITIES2, id.as_mut_ptr() as u64),
        EPERM,
    );
    let f = calls::xen_features(0);
    c.check(
        "get_features from a domU: no dom0 bit; preserve_ad, direct_mapped",
        f.is_ok_and(|f| f & (1 << 11) == 0 && f & (1 << 5) != 0 && f & (1 << 17) != 0),
        format_args!("{f:x?}"),
    );
    let physdev = |cmd: u32, arg: u64| {
        // SAFETY: refused, or (pirq_eoi_gmfn_v2) a frame the hypervisor never writes.
        unsafe { raw::call(HYPERVISOR_PHYSDEV_OP, [cmd.into(), arg, 0, 0, 0]) }
    };
    let Some((_, mfn)) = mm::fresh_frame() else {
        error(format_args!("no fresh frame"));
    };
    let own = PhysdevPirqEoiGmfn { gmfn: mfn };
    c.eq(
        "pirq_eoi_gmfn_v2 of its own frame: 0",
        physdev(PHYSDEVOP_PIRQ_EOI_GMFN_V2, &own as *const _ as u64),
        0,
    );
    for (what, gmfn) in [
        ("frame 0 (the hypervisor's)", 0),
        ("a frame past memory", 1 << 40),
    ] {
        let bad = PhysdevPirqEoiGmfn { gmfn };
        c.errno(
            format_args!("pirq_eoi_gmfn_v2 of {what}: EINVAL"),
            physdev(PHYSDEVOP_PIRQ_EOI_GMFN_V2, &bad as *const _ as u64),
            EINVAL,
        );
    }
    c.errno(
        "pirq_eoi_gmfn_v2 from an unmapped argument: EFAULT",
        physdev(PHYSDEVOP_PIRQ_EOI_GMFN_V2, super::UNMAPPED),
        EFAULT,
    );
    let mut out = [0u32; 2];
    c.errno(
        "get_free_pirq from a domU: EPERM",
        physdev(PHYSDEVOP_GET_FREE_PIRQ, out.as_mut_ptr() as u64),
        EPERM,
    );
    let req = guest_abi::sched::SchedRemoteShutdown {
        domain_id: 0,
        reason: 0,
    };
    // SAFETY: refused (a domU may not shut another domain down).
    let r = unsafe {
        raw::call(
            HYPERVISOR_SCHED_OP,
            [
                guest_abi::sched::SCHEDOP_REMOTE_SHUTDOWN.into(),
                &req as *const _ as u64,
                0,
                0,
                0,
            ],
        )
    };
    c.errno("remote_shutdown of dom0 from a domU: EPERM", r, EPERM);
    c.eq("set_iopl(1) from a domU", set_iopl(1), 0);
    let al: u64;
    // SAFETY: a domU has no ports: the read is emulated (all ones), nothing reaches hardware.
    unsafe { core::arch::asm!("in al, dx", in("dx") 0x3F8u16, inout("rax") 0u64 => al) };
    c.eq_hex("in al from a domU after set_iopl: 0xff", al, 0xFF);
    c.finish()
}
