//! The instructions the kernel needs, one function each: port I/O, MSRs, control registers,
//! the TSC, CPUID.

use core::arch::asm;

/// `IA32_EFER` (Intel SDM Vol. 4, table 2-2).
pub const MSR_EFER: u32 = 0xC000_0080;
/// `EFER.SCE`: SYSCALL/SYSRET enabled.
pub const EFER_SCE: u64 = 1 << 0;
/// `IA32_STAR`: the selectors SYSCALL and SYSRET load (Intel SDM Vol. 3A §5.8.8).
pub const MSR_STAR: u32 = 0xC000_0081;
/// `IA32_LSTAR`: SYSCALL's 64-bit entry point.
pub const MSR_LSTAR: u32 = 0xC000_0082;
/// `IA32_FMASK`: the RFLAGS bits SYSCALL clears.
pub const MSR_FMASK: u32 = 0xC000_0084;
/// `IA32_APIC_BASE` (Intel SDM Vol. 3A §11.4.4).
pub const MSR_APIC_BASE: u32 = 0x1B;

/// Writes `value` to I/O port `port`.
///
/// # Safety
/// The write must not break an invariant the kernel relies on (it owns every device it
/// touches: COM1, the PICs, QEMU's exit ports).
pub unsafe fn outb(port: u16, value: u8) {
    // SAFETY: the caller vouches for the device; `out` touches no memory.
    unsafe { asm!("out dx, al", in("dx") port, in("al") value, options(nomem, nostack)) };
}

/// Writes the word `value` to I/O port `port`.
///
/// # Safety
/// As for [`outb`].
pub unsafe fn outw(port: u16, value: u16) {
    // SAFETY: the caller vouches for the device; `out` touches no memory.
    unsafe { asm!("out dx, ax", in("dx") port, in("ax") value, options(nomem, nostack)) };
}

/// Reads I/O port `port`.
///
/// # Safety
/// As for [`outb`]: reading a device register may change its state.
pub unsafe fn inb(port: u16) -> u8 {
    let value: u8;
    // SAFETY: the caller vouches for the device; `in` touches no memory.
    unsafe { asm!("in al, dx", in("dx") port, out("al") value, options(nomem, nostack)) };
    value
}

/// Reads MSR `msr`.
///
/// # Safety
/// `msr` must exist on this CPU (else #GP).
pub unsafe fn rdmsr(msr: u32) -> u64 {
    let (lo, hi): (u32, u32);
    // SAFETY: the caller vouches that the MSR exists; reading one changes nothing.
    unsafe { asm!("rdmsr", in("ecx") msr, out("eax") lo, out("edx") hi, options(nomem, nostack)) };
    (u64::from(hi) << 32) | u64::from(lo)
}

/// Writes MSR `msr`.
///
/// # Safety
/// `msr` must exist, and the value must keep the kernel running (entry points, selectors).
pub unsafe fn wrmsr(msr: u32, value: u64) {
    // SAFETY: the caller vouches for the MSR and the value.
    unsafe {
        asm!("wrmsr", in("ecx") msr, in("eax") value as u32, in("edx") (value >> 32) as u32,
             options(nostack))
    };
}

/// The TSC. Under QEMU with `-icount shift=0` it advances by one per instruction.
#[inline(always)]
pub fn rdtsc() -> u64 {
    let (lo, hi): (u32, u32);
    // SAFETY: `rdtsc` reads a counter (CR4.TSD is clear: allowed at any CPL) and writes nothing.
    unsafe { asm!("rdtsc", out("eax") lo, out("edx") hi, options(nomem, nostack)) };
    (u64::from(hi) << 32) | u64::from(lo)
}

/// CR2: the address of the last page fault.
pub fn read_cr2() -> u64 {
    let value: u64;
    // SAFETY: reading CR2 changes nothing.
    unsafe { asm!("mov {}, cr2", out(reg) value, options(nomem, nostack)) };
    value
}

/// CR3: the current top-level page table.
pub fn read_cr3() -> u64 {
    let value: u64;
    // SAFETY: reading CR3 changes nothing.
    unsafe { asm!("mov {}, cr3", out(reg) value, options(nomem, nostack)) };
    value
}

/// Loads `root` into CR3, which also flushes every non-global TLB entry (the kernel uses no
/// global pages and no PCIDs; Intel SDM Vol. 3A §4.10.4.1).
///
/// # Safety
/// `root` must map the running code, its stack and everything the kernel touches next, at
/// the same addresses as now.
pub unsafe fn write_cr3(root: u64) {
    // SAFETY: the caller vouches for the new tables.
    unsafe { asm!("mov cr3, {}", in(reg) root, options(nostack)) };
}

/// CPUID leaf `leaf`, subleaf 0: `[eax, ebx, ecx, edx]`.
pub fn cpuid(leaf: u32) -> [u32; 4] {
    let r = core::arch::x86_64::__cpuid_count(leaf, 0);
    [r.eax, r.ebx, r.ecx, r.edx]
}

/// Enables maskable interrupts.
///
/// # Safety
/// Every vector that can arrive must have a handler in the IDT.
pub unsafe fn enable_interrupts() {
    // SAFETY: the caller vouches for the IDT.
    unsafe { asm!("sti", options(nomem, nostack)) };
}

/// Disables maskable interrupts.
pub fn disable_interrupts() {
    // SAFETY: `cli` only delays interrupts.
    unsafe { asm!("cli", options(nomem, nostack)) };
}
