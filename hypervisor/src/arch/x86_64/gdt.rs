//! The GDT and TSS of the boot CPU (Intel SDM Vol. 3A §3.4.5, §8.2.3).
//!
//! Layout (fixed; guest-abi publishes the guest-visible selectors):
//! 0 null · 1 (0x08) hypervisor code · 2 (0x10) hypervisor data · 3 (0x19) ring-1
//! kernel code · 4 (0x21) ring-1 kernel data · 5 (0x2b) ring-3 data · 6 (0x33) ring-3
//! code · 7–8 (0x38) the 64-bit TSS. Ring-3 data/code follow each other so that
//! SYSRET's selector arithmetic works (SDM Vol. 2B, SYSRET).

use core::mem::size_of;

use x86_64::VirtAddr;
use x86_64::structures::tss::TaskStateSegment;

pub const HYPERVISOR_CS: u16 = 0x08;
pub const HYPERVISOR_DS: u16 = 0x10;
pub const TSS_SELECTOR: u16 = 0x38;

/// IST slots (1-based in the IDT, 0-based in the TSS array).
pub const IST_DOUBLE_FAULT: u8 = 1;
pub const IST_NMI: u8 = 2;
pub const IST_MACHINE_CHECK: u8 = 3;

const IST_STACK_SIZE: usize = 16 * 1024;

// Segment descriptor bits (SDM Vol. 3A §3.4.5): present, S (code/data), DPL, type, L, G.
const PRESENT: u64 = 1 << 47;
const CODE_DATA: u64 = 1 << 44;
const EXECUTABLE: u64 = 1 << 43;
const WRITABLE: u64 = 1 << 41;
const LONG_MODE: u64 = 1 << 53;
const GRANULARITY_4K: u64 = 1 << 55;
const LIMIT_MAX: u64 = 0xFFFF | (0xF << 48);
const fn dpl(level: u64) -> u64 {
    level << 45
}
const fn code64(level: u64) -> u64 {
    PRESENT
        | CODE_DATA
        | EXECUTABLE
        | WRITABLE
        | LONG_MODE
        | GRANULARITY_4K
        | LIMIT_MAX
        | dpl(level)
}
const fn data(level: u64) -> u64 {
    PRESENT | CODE_DATA | WRITABLE | GRANULARITY_4K | LIMIT_MAX | (1 << 54) | dpl(level)
}

#[repr(C, align(16))]
struct Stack([u8; IST_STACK_SIZE]);

#[repr(C, align(16))]
struct Gdt([u64; 9]);

static mut GDT: Gdt = Gdt([
    0,
    code64(0),
    data(0),
    code64(1),
    data(1),
    data(3),
    code64(3),
    0,
    0,
]);
static mut TSS: TaskStateSegment = TaskStateSegment::new();
static mut IST_STACKS: [Stack; 3] = [const { Stack([0; IST_STACK_SIZE]) }; 3];

/// Fills in the TSS (IST stacks for #DF, NMI, #MC), loads the GDT, reloads the segment
/// registers and loads the task register. Runs once on the boot CPU, before interrupts
/// are enabled.
pub fn init() {
    // SAFETY: runs once on the only running CPU with interrupts off, so nothing else
    // observes these statics while they are written; afterwards they are only read by
    // the CPU.
    unsafe {
        let tss = &raw mut TSS;
        let stacks = &raw mut IST_STACKS;
        for (i, slot) in [IST_DOUBLE_FAULT, IST_NMI, IST_MACHINE_CHECK]
            .into_iter()
            .enumerate()
        {
            let top = (&raw mut (*stacks)[i]) as u64 + IST_STACK_SIZE as u64;
            (*tss).interrupt_stack_table[usize::from(slot - 1)] = VirtAddr::new(top);
        }
        // No I/O permission bitmap yet: the base points past the TSS limit.
        (*tss).iomap_base = size_of::<TaskStateSegment>() as u16;

        let base = (&raw const TSS) as u64;
        let limit = (size_of::<TaskStateSegment>() - 1) as u64;
        // 64-bit available TSS descriptor, type 9 (SDM Vol. 3A §8.2.3, Figure 8-4).
        let low = (limit & 0xFFFF)
            | ((base & 0xFF_FFFF) << 16)
            | (0x9 << 40)
            | PRESENT
            | (((limit >> 16) & 0xF) << 48)
            | (((base >> 24) & 0xFF) << 56);
        let gdt = &raw mut GDT;
        (*gdt).0[7] = low;
        (*gdt).0[8] = base >> 32;

        let pointer = x86_64::structures::DescriptorTablePointer {
            limit: (size_of::<Gdt>() - 1) as u16,
            base: VirtAddr::new((&raw const GDT) as u64),
        };
        x86_64::instructions::tables::lgdt(&pointer);
        reload_segments();
        x86_64::instructions::tables::load_tss(x86_64::structures::gdt::SegmentSelector(
            TSS_SELECTOR,
        ));
    }
}

/// Reloads CS with a far return and the data segment registers.
///
/// # Safety
/// The GDT just loaded must hold the hypervisor code and data descriptors.
unsafe fn reload_segments() {
    // SAFETY: the caller guarantees HYPERVISOR_CS/DS are valid ring-0 descriptors.
    unsafe {
        core::arch::asm!(
            "push {cs}",
            "lea {tmp}, [rip + 2f]",
            "push {tmp}",
            "retfq",
            "2:",
            "mov ds, {ds:x}",
            "mov es, {ds:x}",
            "mov ss, {ds:x}",
            cs = const HYPERVISOR_CS as u64,
            ds = in(reg) u64::from(HYPERVISOR_DS),
            tmp = out(reg) _,
        );
    }
}

/// Whether `addr` lies on one of the IST stacks (used to bound stack walks).
pub fn on_ist_stack(addr: u64) -> bool {
    let start = (&raw const IST_STACKS) as u64;
    (start..start + 3 * IST_STACK_SIZE as u64).contains(&addr)
}
