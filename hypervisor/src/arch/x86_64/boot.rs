//! What the boot path needs from the machine before anything else exists: the entry from
//! `boot/entry.s`, the image's physical extent from the linker script, the multiboot2
//! information GRUB left, and the faults the `selftest=` option raises on purpose. Each is a
//! tiny shim; the logic is `crate::start` and `crate::boot_info`.

use multiboot2::{BootInformation, BootInformationHeader, LoadError};

use super::layout::phys_to_virt;
use crate::mm::memmap::PhysRange;

unsafe extern "C" {
    static __image_phys_start: u8;
    static __image_phys_end: u8;
}

/// Called by `boot/entry.s` in long mode on the bootstrap page tables, with the physical
/// address of the multiboot2 boot information.
#[unsafe(no_mangle)]
extern "C" fn xenia_start64(mbi_phys: u32) -> ! {
    crate::start::start(mbi_phys)
}

/// Where GRUB loaded the image (`boot/linker.ld`'s `__image_phys_start`/`_end`).
pub fn image_phys_range() -> PhysRange {
    PhysRange {
        start: (&raw const __image_phys_start) as u64,
        end: (&raw const __image_phys_end) as u64,
    }
}

/// The multiboot2 boot information at physical address `mbi_phys`, checked by the
/// `multiboot2` crate before anything is read through it.
pub fn multiboot_info(mbi_phys: u32) -> Result<BootInformation<'static>, LoadError> {
    let ptr = phys_to_virt(u64::from(mbi_phys)) as *const BootInformationHeader;
    // SAFETY: GRUB places the boot information below 4 GiB, which the bootstrap direct
    // map covers; `load` checks alignment, the total size and the tag sequence before
    // anything is read through it, and nothing writes that memory while we run.
    unsafe { BootInformation::load(ptr) }
}

/// `selftest=ud`: executes `ud2` in ring 0; the exception handler stops the machine.
pub fn raise_invalid_opcode() {
    // SAFETY: deliberately raises #UD; the exception handler stops the machine.
    unsafe { core::arch::asm!("ud2") };
}

/// `selftest=db`: single-steps one instruction in ring 0 with `rsp` pointing at `addr`, which
/// the caller knows is unmapped: the #DB comes with a stack the CPU cannot push to, as a
/// guest's `mov ss` + SYSCALL with TF set would bring it on the guest's stack (CVE-2018-8897's
/// shape). The #DB handler runs on its IST stack, drops the step and clears TF; the next
/// instruction puts the stack back. Without the IST stack the push faults, and the #DF stops
/// the machine.
pub fn single_step_on_unusable_stack(addr: u64) {
    // SAFETY: TF is set by `popfq` (the trap comes after the instruction following it, which
    // moves rsp to `addr`); the handler clears TF and returns to the next instruction, which
    // restores rsp before anything uses the stack. Interrupts are off (boot), so nothing
    // else is pushed meanwhile; rbx is saved and restored around the sequence.
    unsafe {
        core::arch::asm!(
            "mov {saved}, rsp",
            "pushfq",
            "or qword ptr [rsp], 0x100",
            "popfq",
            "mov rsp, {bad}",
            "mov rsp, {saved}",
            saved = out(reg) _,
            bad = in(reg) addr,
        )
    };
}

/// `selftest=pf`: reads `addr`, which the caller knows is unmapped in the hypervisor's
/// tables; the exception handler stops the machine.
pub fn read_unmapped(addr: u64) {
    // SAFETY: deliberately raises #PF (the lower half is unmapped in the hypervisor's
    // tables); the exception handler stops the machine.
    let _ = unsafe { core::ptr::read_volatile(addr as *const u64) };
}

/// The frame pointer (RBP) of the caller, for a call trace.
#[inline(always)]
pub fn frame_pointer() -> u64 {
    let rbp: u64;
    // SAFETY: reads the frame pointer register; no memory is touched.
    unsafe {
        core::arch::asm!("mov {}, rbp", out(reg) rbp, options(nomem, nostack, preserves_flags))
    };
    rbp
}
