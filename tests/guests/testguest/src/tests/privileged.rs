//! `privileged`: every instruction ring 1 may not execute raises #GP(0), delivered to the
//! guest with `rip` at the instruction.
//!
//! Pass: for each instruction below, the guest's #GP handler runs with error code 0, `rip` at
//! the instruction, ring-1 CS/SS and the interrupted `rsp`. Were one of them executed (or
//! emulated) instead, the probe would see no fault and the check fails. Operands are chosen
//! so that an instruction that wrongly ran would do as little harm as possible: port 0x3ff is
//! COM1's scratch register (the hypervisor's UART, never dom0's), the MSR written is
//! `IA32_TSC_AUX` with 0.
//!
//! Those Xen answers for a PV kernel instead (`wbinvd` ignored; `rdmsr`, `wrmsr`, `mov` from
//! a control register and, after `PHYSDEVOP_set_iopl`, port I/O emulated) are checked by
//! `linux_abi_privop`; the ones here are those Xen refuses too.

use xenia_guest_rt::check::Checks;
use xenia_guest_rt::trap::{GENERAL_PROTECTION, Probe};
use xenia_guest_rt::{events, probe};

use super::{Want, check_exception};

/// COM1's scratch register (16550 UART, offset 7).
const COM1_SCRATCH: u16 = 0x3FF;
/// `IA32_LSTAR` (Intel SDM Vol. 4): read only.
const IA32_LSTAR: u32 = 0xC000_0082;
/// `IA32_TSC_AUX`: the harmless one to write.
const IA32_TSC_AUX: u32 = 0xC000_0103;

pub fn run() -> ! {
    let mut c = Checks::new();
    events::mask();
    let descriptor = [0u8; 10];
    let d = descriptor.as_ptr();

    // SAFETY: (every probe below) in ring 1 each of these instructions raises #GP before it
    // has any effect; the operands limit the damage should one wrongly execute.
    let probes: [(&str, Probe); 17] = unsafe {
        [
            ("cli", probe!(GENERAL_PROTECTION, "cli")),
            ("sti", probe!(GENERAL_PROTECTION, "sti")),
            ("hlt", probe!(GENERAL_PROTECTION, "hlt")),
            (
                "in",
                probe!(GENERAL_PROTECTION, "in al, dx"; in("dx") COM1_SCRATCH, out("al") _),
            ),
            (
                "out",
                probe!(GENERAL_PROTECTION, "out dx, al"; in("dx") COM1_SCRATCH, in("al") 0u8),
            ),
            (
                "mov cr3",
                probe!(GENERAL_PROTECTION, "mov cr3, {r}"; r = in(reg) 0u64),
            ),
            (
                "wrmsr",
                probe!(GENERAL_PROTECTION, "wrmsr";
                    in("ecx") IA32_TSC_AUX, in("eax") 0u32, in("edx") 0u32),
            ),
            (
                "rdmsr",
                probe!(GENERAL_PROTECTION, "rdmsr";
                    in("ecx") IA32_LSTAR, out("eax") _, out("edx") _),
            ),
            (
                "lgdt",
                probe!(GENERAL_PROTECTION, "lgdt [{d}]"; d = in(reg) d),
            ),
            (
                "lidt",
                probe!(GENERAL_PROTECTION, "lidt [{d}]"; d = in(reg) d),
            ),
            (
                "invlpg",
                probe!(GENERAL_PROTECTION, "invlpg [{d}]"; d = in(reg) d),
            ),
            ("swapgs", probe!(GENERAL_PROTECTION, "swapgs")),
            (
                "sysret",
                probe!(GENERAL_PROTECTION, "sysretq"; out("rcx") _, out("r11") _),
            ),
            ("clts", probe!(GENERAL_PROTECTION, "clts")),
            (
                "mov cr0",
                probe!(GENERAL_PROTECTION, "mov cr0, {r}"; r = in(reg) 0u64),
            ),
            (
                "mov cr4",
                probe!(GENERAL_PROTECTION, "mov cr4, {r}"; r = in(reg) 0u64),
            ),
            ("invd", probe!(GENERAL_PROTECTION, "invd")),
        ]
    };
    for (name, p) in probes {
        check_exception(
            &mut c,
            format_args!("{name} raises #GP(0)"),
            p.caught,
            &Want {
                vector: GENERAL_PROTECTION,
                error_code: 0,
                rip: p.insn_rip,
                user: false,
                rsp: Some(p.rsp),
                interrupts: false,
                cr2: None,
            },
        );
    }
    c.finish()
}
