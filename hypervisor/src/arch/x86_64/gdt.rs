//! The GDT and TSS of each pCPU, in the CPU page of its entry area (Intel SDM Vol. 3A
//! §3.4.5, §8.7). The selectors are guest-visible and published by `guest_abi::selectors`:
//! 0 null · 0x08 hypervisor code · 0x10 hypervisor data · 0x19 ring-1 kernel code ·
//! 0x21 ring-1 kernel data · 0x2b ring-3 data · 0x33 ring-3 code · 0x38 TSS. Ring-3 data
//! and code follow each other so that SYSRET's selector arithmetic would work.
//!
//! The GDT spans 15 pages (`entry::GDT_PAGES`): Xenia's descriptors above sit at the bottom
//! of page 0; page 14 is Xen's reserved page ([`XEN_RESERVED_GDT`]), so that Xen's flat
//! selectors (`guest_abi::selectors::FLAT_RING3_*`) are real for Xen PV guests; the pages
//! between are null descriptors. The hypervisor still runs on 0x08/0x10 (Xen's 0xe008/0xe010
//! are in page 14 already, for when `set_gdt` gives a Xen PV guest the low pages).
//!
//! The pages are read-only in guest roots, so every descriptor is written with its
//! accessed bit already set: the CPU would otherwise write that bit when it first loads
//! a selector, and fault on the read-only page.

use guest_abi::selectors::{self, HYPERVISOR_CS, HYPERVISOR_DS, TSS_SELECTOR};
use x86_64::VirtAddr;
use x86_64::structures::tss::TaskStateSegment;

use super::entry::{self, GDT_ENTRIES, GDT_OFFSET, TSS_OFFSET_IN_PAGE};
use super::entry::{CPU_PAGE_OFFSET, GDT_PAGES};

/// IST slots (1-based, as the IDT names them).
pub const IST_NMI: u8 = 1;
pub const IST_DOUBLE_FAULT: u8 = 2;
pub const IST_MACHINE_CHECK: u8 = 3;

// Segment descriptor bits (SDM Vol. 3A §3.4.5).
const ACCESSED: u64 = 1 << 40;
const WRITABLE: u64 = 1 << 41;
const EXECUTABLE: u64 = 1 << 43;
const CODE_DATA: u64 = 1 << 44;
const PRESENT: u64 = 1 << 47;
const LONG_MODE: u64 = 1 << 53;
const BIG: u64 = 1 << 54;
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
        | ACCESSED
        | LONG_MODE
        | GRANULARITY_4K
        | LIMIT_MAX
        | dpl(level)
}
const fn data(level: u64) -> u64 {
    PRESENT | CODE_DATA | WRITABLE | ACCESSED | BIG | GRANULARITY_4K | LIMIT_MAX | dpl(level)
}
/// 32-bit (compatibility-mode) code: D set, L clear.
const fn code32(level: u64) -> u64 {
    PRESENT
        | CODE_DATA
        | EXECUTABLE
        | WRITABLE
        | ACCESSED
        | BIG
        | GRANULARITY_4K
        | LIMIT_MAX
        | dpl(level)
}

/// Xen's reserved GDT page as Xen fills it (`xen/arch/x86/boot/x86_64.S`, `gdt_table`), at
/// GDT page 14: 0xe008 ring-0 code, 0xe010 ring-0 data, 0xe023 ring-3 compatibility code,
/// 0xe02b ring-3 data, 0xe033 ring-3 64-bit code; the rest null (no ring-0 compatibility
/// code, no per-CPU entry). The same page for every pCPU, never written.
#[repr(C, align(4096))]
pub struct XenGdtPage([u64; 512]);

pub static XEN_RESERVED_GDT: XenGdtPage = {
    let mut t = [0u64; 512];
    t[1] = code64(0);
    t[2] = data(0);
    t[4] = code32(3);
    t[5] = data(3);
    t[6] = code64(3);
    XenGdtPage(t)
};

const _: () = {
    use guest_abi::selectors as s;
    let base = s::FIRST_RESERVED_GDT_BYTE as usize / 8;
    assert!(s::FLAT_RING3_CS32 as usize / 8 == base + 4);
    assert!(s::FLAT_RING3_DS32 as usize / 8 == base + 5);
    assert!(s::FLAT_RING3_CS64 as usize / 8 == base + 6);
    assert!(s::FIRST_RESERVED_GDT_BYTE as u64 == entry::XEN_GDT_PAGE * entry::PAGE);
};

fn gdt() -> *mut [u64; GDT_ENTRIES] {
    entry::va(GDT_OFFSET) as *mut [u64; GDT_ENTRIES]
}

pub fn tss() -> *mut TaskStateSegment {
    entry::va(CPU_PAGE_OFFSET + TSS_OFFSET_IN_PAGE) as *mut TaskStateSegment
}

/// Writes this pCPU's GDT and TSS into its entry area and loads them. Runs once per pCPU
/// with interrupts off, after `entry::install_boot` mapped the entry area.
pub fn init() {
    let top = |offset: u64| VirtAddr::new(entry::va(offset) + entry::STACK_BYTES);
    let mut t = TaskStateSegment::new();
    t.privilege_stack_table[0] = top(entry::ENTRY_STACK_OFFSET);
    t.interrupt_stack_table[usize::from(IST_NMI - 1)] = top(entry::NMI_STACK_OFFSET);
    t.interrupt_stack_table[usize::from(IST_DOUBLE_FAULT - 1)] = top(entry::DF_STACK_OFFSET);
    t.interrupt_stack_table[usize::from(IST_MACHINE_CHECK - 1)] = top(entry::MC_STACK_OFFSET);
    // No port for anyone until dom0 runs here: the base points past the TSS limit, so ring
    // 1 and 3 get #GP on every port.
    t.iomap_base = NO_IO_PORTS;

    let base = tss() as u64;
    // The limit covers dom0's I/O bitmap and its end byte (SDM Vol. 1 §19.5.2: the CPU reads
    // two bytes of the bitmap, so the byte after it must be there, all ones).
    let limit = u64::from(DOM0_IO_PORTS) + IO_BITMAP_BYTES;
    // 64-bit available TSS descriptor, type 9 (SDM Vol. 3A §8.2.3, Figure 8-4).
    let tss_low = (limit & 0xFFFF)
        | ((base & 0xFF_FFFF) << 16)
        | (0x9 << 40)
        | PRESENT
        | (((limit >> 16) & 0xF) << 48)
        | (((base >> 24) & 0xFF) << 56);
    let mut table = [0u64; GDT_ENTRIES];
    table[usize::from(HYPERVISOR_CS >> 3)] = code64(0);
    table[usize::from(HYPERVISOR_DS >> 3)] = data(0);
    table[usize::from(selectors::KERNEL_CS >> 3)] = code64(1);
    table[usize::from(selectors::KERNEL_DS >> 3)] = data(1);
    table[usize::from(selectors::USER_DS >> 3)] = data(3);
    table[usize::from(selectors::USER_CS >> 3)] = code64(3);
    table[usize::from(TSS_SELECTOR >> 3)] = tss_low;
    table[usize::from(TSS_SELECTOR >> 3) + 1] = base >> 32;

    // SAFETY: the CPU page is mapped writable in the hypervisor root (install_boot) and
    // belongs to this pCPU; nothing uses the new GDT or TSS before the loads below.
    unsafe {
        core::ptr::write_volatile(tss(), t);
        core::ptr::write_volatile(gdt(), table);
        let pointer = x86_64::structures::DescriptorTablePointer {
            limit: (GDT_PAGES * entry::PAGE - 1) as u16,
            base: VirtAddr::new(gdt() as u64),
        };
        x86_64::instructions::tables::lgdt(&pointer);
        reload_segments();
        x86_64::instructions::tables::load_tss(x86_64::structures::gdt::SegmentSelector(
            TSS_SELECTOR,
        ));
    }
}

/// Sets this pCPU's GDT limit for the vCPU about to run: the whole 15 pages (Xen's reserved
/// page at selector 0xe000 included) for a Xen PV vCPU, Xenia's own descriptors only for a
/// ring-1 one, whose programs then get #GP on any 0xe0xx selector. The GDT's base and
/// contents do not change, so the selectors in force stay valid.
pub fn set_limit(xen_pv: bool) {
    let limit = if xen_pv {
        GDT_PAGES * entry::PAGE - 1
    } else {
        (GDT_ENTRIES * 8 - 1) as u64
    };
    let pointer = x86_64::structures::DescriptorTablePointer {
        limit: limit as u16,
        base: VirtAddr::new(gdt() as u64),
    };
    // SAFETY: the same table `init` loaded, only its limit changes; every selector the
    // hypervisor uses (0x08, 0x10, the TSS at 0x38) is inside both limits.
    unsafe { x86_64::instructions::tables::lgdt(&pointer) };
}

/// Bytes of an I/O permission bitmap covering every port (one bit each).
pub const IO_BITMAP_BYTES: u64 = 65536 / 8;
/// `iomap_base` for dom0's vCPUs: the offset of the entry area's I/O bitmap from the TSS.
pub const DOM0_IO_PORTS: u16 =
    (entry::IO_BITMAP_OFFSET - entry::CPU_PAGE_OFFSET - TSS_OFFSET_IN_PAGE) as u16;
/// `iomap_base` for every other vCPU: past the TSS limit, so every `in`/`out` from ring 1
/// or 3 raises #GP (SDM Vol. 1 §19.5.2).
pub const NO_IO_PORTS: u16 = 0xFFFF;
const _: () = assert!(DOM0_IO_PORTS as u64 + IO_BITMAP_BYTES < NO_IO_PORTS as u64);

/// Gives the vCPU about to run on this pCPU dom0's I/O ports (`true`) or none: one 16-bit
/// store into the TSS, read by the CPU at each `in`/`out` from ring 1 or 3.
pub fn set_io_ports(dom0: bool) {
    let base = if dom0 { DOM0_IO_PORTS } else { NO_IO_PORTS };
    // SAFETY: the TSS belongs to this pCPU and is mapped writable in the hypervisor root;
    // the CPU reads `iomap_base` only at a port access from ring 1 or 3, which cannot
    // happen while we run.
    unsafe { (&raw mut (*tss()).iomap_base).write_volatile(base) };
}

/// The `iomap_base` in force on this pCPU (for the switch path's checks and the tests).
pub fn io_ports() -> u16 {
    // SAFETY: as above, reading.
    unsafe { (&raw const (*tss()).iomap_base).read_volatile() }
}

/// Sets the ring-1 stack that a ring-3 `int 0x80` (the fast trap) switches to.
pub fn set_ring1_stack(rsp: u64) {
    // SAFETY: the TSS belongs to this pCPU and is mapped writable in the hypervisor root;
    // the CPU reads RSP1 only on a privilege change, which cannot happen while we run.
    unsafe { (*tss()).privilege_stack_table[1] = VirtAddr::new_truncate(rsp) };
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
