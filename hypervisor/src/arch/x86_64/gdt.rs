//! The GDT and TSS of each pCPU, in the CPU page of its entry area (Intel SDM Vol. 3A
//! §3.4.5, §8.7). The selectors are guest-visible and published by `guest_abi::selectors`:
//! 0 null · 0x08 hypervisor code · 0x10 hypervisor data · 0x19 ring-1 kernel code ·
//! 0x21 ring-1 kernel data · 0x2b ring-3 data · 0x33 ring-3 code · 0x38 TSS. Ring-3 data
//! and code follow each other so that SYSRET's selector arithmetic would work.
//!
//! The GDT spans 15 pages (`entry::GDT_PAGES`), as Xen's per-vCPU GDT: pages 0–13 are the
//! guest's, page 14 is the reserved page, and the hypervisor runs on Xen's selectors there,
//! [`HV_CS`] 0xe008 and [`HV_DS`] 0xe010 (its IDT gates, SYSCALL's STAR). Which frames are
//! behind the pages is chosen for each vCPU when it is switched in ([`load_for`]):
//!
//! - a Xen PV vCPU that gave its own GDT (`set_gdt`, or `gdt_frames` in its context): its
//!   frames in pages 0.., the null page after them, Xen's reserved page
//!   ([`XEN_RESERVED_GDT`], with Xen's flat ring-3 selectors) in page 14, as Xen does;
//! - a Xen PV vCPU without one: this pCPU's own page 0 (Xenia's descriptors above, with
//!   the ring-3 pair 0x2b/0x33 that Xen PV programs use too), null pages, Xen's page 14;
//! - a ring-1 vCPU: its own page 0, null pages, and [`RING1_RESERVED_GDT`] in page 14,
//!   which has only the hypervisor's two ring-0 descriptors, so a ring-1 guest's programs
//!   reach none of Xen's flat ring-3 selectors (a 32-bit code segment among them).
//!
//! The limit always covers the 15 pages. Return frames and data selectors of Xen PV vCPUs
//! are checked against the descriptors in force with `lar`/`lsl` ([`iret_code_ok`],
//! [`iret_stack_ok`], [`data_loadable`]).
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

/// The hypervisor's code selector (Xen's `__HYPERVISOR_CS`), in the reserved page.
pub const HV_CS: u16 = 0xe008;
/// The hypervisor's data and stack selector (Xen's `__HYPERVISOR_DS`).
pub const HV_DS: u16 = 0xe010;

/// Page 14 for ring-1 vCPUs: the hypervisor's two descriptors ([`HV_CS`], [`HV_DS`]),
/// nothing for ring 3. The same page for every pCPU, never written.
pub static RING1_RESERVED_GDT: XenGdtPage = {
    let mut t = [0u64; 512];
    t[1] = code64(0);
    t[2] = data(0);
    XenGdtPage(t)
};

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
    assert!(HV_CS as usize / 8 == base + 1 && HV_DS as usize / 8 == base + 2);
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
    // Page 0 is this pCPU's own again before it is written (a guest's GDT frame may have
    // been there).
    let own = super::percpu::this()
        .own_gdt_page
        .load(core::sync::atomic::Ordering::Relaxed);
    entry::map_gdt_page(0, own, false);
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

/// Puts the GDT of the vCPU about to run on this pCPU in force (the module docs): `frames`
/// its own GDT's frames (empty: none), `xen_pv` its mode. Only the pages that change are
/// remapped (`entry::map_gdt_page`).
pub fn load_for(xen_pv: bool, frames: &[crate::mm::Mfn]) {
    let (zero, xen, ring1) = entry::shared_gdt_pages();
    let own = super::percpu::this()
        .own_gdt_page
        .load(core::sync::atomic::Ordering::Relaxed);
    for p in 0..entry::XEN_GDT_PAGE {
        match frames.get(p as usize) {
            Some(f) => entry::map_gdt_page(p, f.phys(), true),
            None if p == 0 && frames.is_empty() => entry::map_gdt_page(0, own, false),
            None => entry::map_gdt_page(p, zero, false),
        }
    }
    entry::map_gdt_page(entry::XEN_GDT_PAGE, if xen_pv { xen } else { ring1 }, false);
}

/// Where the LDT's system descriptor goes in this pCPU's own GDT page 0 (16 bytes, entries
/// 10 and 11, unused by Xenia's descriptors): LDTR is loaded from it while page 0 is the
/// pCPU's own, and keeps what it loaded when a guest's frame takes page 0's place.
const LDT_INDEX: usize = 10;
const LDT_SELECTOR: u16 = (LDT_INDEX as u16) << 3;
const _: () = assert!(LDT_INDEX > (TSS_SELECTOR as usize >> 3) + 1 && LDT_INDEX + 1 < GDT_ENTRIES);

/// Puts the LDT of the vCPU about to run in force: `frames` (its `MMUEXT_SET_LDT` frames,
/// empty for none) in the LDT area, the null page in the rest, and LDTR loaded with
/// `entries` descriptors (the null selector for none). Called before [`load_for`], which
/// may put a guest's frame in page 0.
pub fn load_ldt(frames: &[crate::mm::Mfn], entries: u32) {
    use core::sync::atomic::Ordering::Relaxed;
    let (zero, _, _) = entry::shared_gdt_pages();
    for p in 0..entry::LDT_PAGES {
        match frames.get(p as usize) {
            Some(f) => entry::map_ldt_page(p, f.phys(), true),
            None => entry::map_ldt_page(p, zero, false),
        }
    }
    let cpu = super::percpu::this();
    let loaded = if entries == 0 {
        0
    } else {
        u64::from(entries) * 8
    };
    if cpu.ldt_loaded.load(Relaxed) == loaded {
        return;
    }
    if loaded == 0 {
        // SAFETY: a null selector in LDTR is always allowed and disables the LDT.
        unsafe { core::arch::asm!("lldt {0:x}", in(reg) 0u16, options(nostack, preserves_flags)) };
    } else {
        entry::map_gdt_page(0, cpu.own_gdt_page.load(Relaxed), false);
        let base = entry::va(entry::LDT_OFFSET);
        let limit = loaded - 1;
        // An LDT descriptor, type 2, present (SDM Vol. 3A §3.5, §8.2.3's layout).
        let low = (limit & 0xFFFF)
            | ((base & 0xFF_FFFF) << 16)
            | (0x2 << 40)
            | PRESENT
            | (((limit >> 16) & 0xF) << 48)
            | (((base >> 24) & 0xFF) << 56);
        // SAFETY: page 0 is this pCPU's own (mapped just above, writable in the hypervisor
        // root), entries 10 and 11 are reserved for this descriptor; `lldt` loads a present
        // LDT descriptor covering the LDT area, whose pages are mapped.
        unsafe {
            let table = gdt();
            (&raw mut (*table)[LDT_INDEX]).write_volatile(low);
            (&raw mut (*table)[LDT_INDEX + 1]).write_volatile(base >> 32);
            core::arch::asm!("lldt {0:x}", in(reg) LDT_SELECTOR, options(nostack, preserves_flags));
        }
    }
    cpu.ldt_loaded.store(loaded, Relaxed);
}

/// The access rights `lar` gives for `sel` in the tables in force (Intel SDM Vol. 2A, LAR:
/// bits 8–15 the type, S, DPL and P of the descriptor, bits 16–23 AVL, L, D/B, G), or
/// `None` when the CPU would not load it from ring 0 with that RPL (null, beyond the limit,
/// a system descriptor, DPL below the RPL for a non-conforming segment).
fn lar(sel: u16) -> Option<u32> {
    let rights: u32;
    let ok: u8;
    // SAFETY: `lar` only reads the descriptor table in force (mapped in the hypervisor
    // root) and sets ZF; it cannot fault on a selector from ring 0 in 64-bit mode.
    unsafe {
        core::arch::asm!(
            "xor {r:e}, {r:e}",
            "lar {r:e}, {s:e}",
            "setz {ok}",
            r = out(reg) rights,
            s = in(reg) u32::from(sel),
            ok = out(reg_byte) ok,
            options(nostack, readonly),
        )
    };
    (ok != 0).then_some(rights)
}

/// The limit `lsl` gives for `sel` (in bytes, granularity applied), if it is loadable.
fn lsl(sel: u16) -> Option<u32> {
    let limit: u32;
    let ok: u8;
    // SAFETY: as `lar`.
    unsafe {
        core::arch::asm!(
            "xor {r:e}, {r:e}",
            "lsl {r:e}, {s:e}",
            "setz {ok}",
            r = out(reg) limit,
            s = in(reg) u32::from(sel),
            ok = out(reg_byte) ok,
            options(nostack, readonly),
        )
    };
    (ok != 0).then_some(limit)
}

const AR_TYPE_ACCESSED_BITS: u32 = 0xF << 8;
const AR_CODE: u32 = 1 << 11;
const AR_CONFORMING_OR_EXPAND_DOWN: u32 = 1 << 10;
const AR_WRITABLE_OR_READABLE: u32 = 1 << 9;
const AR_S: u32 = 1 << 12;
const AR_DPL3: u32 = 3 << 13;
const AR_P: u32 = 1 << 15;
const AR_L: u32 = 1 << 21;
const AR_DB: u32 = 1 << 22;
const _: () = assert!(AR_TYPE_ACCESSED_BITS & AR_CODE != 0);

/// Whether `iretq` from ring 0 would accept `cs` (RPL 3) and `rip` for a return to ring 3
/// with the GDT and LDT in force (SDM Vol. 2A, IRET, "return to outer privilege level"): a
/// code segment, present, DPL 3 (or conforming), 64-bit (L without D) with a canonical RIP,
/// or 32-bit with RIP within its limit.
pub fn iret_code_ok(cs: u16, rip: u64) -> bool {
    if cs & 3 != 3 {
        return false;
    }
    let Some(ar) = lar(cs) else {
        return false;
    };
    let code = ar & (AR_S | AR_CODE | AR_P) == AR_S | AR_CODE | AR_P;
    let dpl_ok = ar & AR_DPL3 == AR_DPL3 || ar & AR_CONFORMING_OR_EXPAND_DOWN != 0;
    if !code || !dpl_ok {
        return false;
    }
    match (ar & AR_L != 0, ar & AR_DB != 0) {
        (true, false) => crate::guest::mem::is_canonical(rip),
        (true, true) => false,
        (false, _) => lsl(cs).is_some_and(|limit| rip <= u64::from(limit)),
    }
}

/// The #GP error code `iretq` would raise returning to `cs:rip` with `ss` (RPL already 3),
/// in the CPU's order (Intel SDM Vol. 2A, IRET: CS, then SS, then RIP), or `None` if it
/// would return: what [`iret_code_ok`] and [`iret_stack_ok`] decide, with one `lar` for
/// each selector (a Xen PV kernel's every `iret` comes here; issue 18, session 15).
#[inline(always)]
pub fn iret_refusal(cs: u16, ss: u16, rip: u64) -> Option<u64> {
    // A present code segment of DPL 3 (or conforming); L and D together are reserved, and
    // refused with the selector as `iret_code_ok` refuses them.
    let code = if cs & 3 == 3 { lar(cs) } else { None }.filter(|&ar| {
        ar & (AR_S | AR_CODE | AR_P) == AR_S | AR_CODE | AR_P
            && (ar & AR_DPL3 == AR_DPL3 || ar & AR_CONFORMING_OR_EXPAND_DOWN != 0)
            && ar & (AR_L | AR_DB) != AR_L | AR_DB
    });
    let Some(ar) = code else {
        return Some(u64::from(cs & !3));
    };
    if !iret_stack_ok(ss) {
        return Some(u64::from(ss & !3));
    }
    let rip_ok = if ar & AR_L != 0 {
        crate::guest::mem::is_canonical(rip)
    } else {
        lsl(cs).is_some_and(|limit| rip <= u64::from(limit))
    };
    if rip_ok { None } else { Some(0) }
}

/// Whether `iretq` would take `cs` and `ss` (RPL 3) with any canonical `rip`, in the tables
/// in force: `iret_refusal` finds them good and the code segment is a 64-bit one (a 32-bit
/// one has a limit to check `rip` against).
pub fn iret_any_rip_ok(cs: u16, ss: u16) -> bool {
    iret_refusal(cs, ss, 0).is_none() && lar(cs).is_some_and(|ar| ar & (AR_L | AR_DB) == AR_L)
}

/// Whether `iretq` would accept `ss` (RPL 3) for a return to ring 3: a writable data
/// segment, present, DPL 3.
pub fn iret_stack_ok(ss: u16) -> bool {
    if ss & 3 != 3 {
        return false;
    }
    lar(ss).is_some_and(|ar| {
        ar & (AR_S | AR_CODE | AR_WRITABLE_OR_READABLE | AR_P | AR_DPL3)
            == AR_S | AR_WRITABLE_OR_READABLE | AR_P | AR_DPL3
    })
}

/// Whether ring 0 can load `sel` into DS, ES, FS or GS without a fault, with the tables in
/// force: null, or a present data segment or readable code segment of DPL 3 that its
/// RPL may use (Intel SDM Vol. 2B, MOV to a segment register).
pub fn data_loadable(sel: u16) -> bool {
    if sel & !3 == 0 {
        return true;
    }
    lar(sel).is_some_and(|ar| {
        let data = ar & AR_CODE == 0;
        let readable_code =
            ar & (AR_CODE | AR_WRITABLE_OR_READABLE) == AR_CODE | AR_WRITABLE_OR_READABLE;
        ar & (AR_S | AR_P) == AR_S | AR_P && (data || readable_code)
    })
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
/// The GDT just loaded must hold the hypervisor code and data descriptors (page 14).
unsafe fn reload_segments() {
    // SAFETY: the caller guarantees HV_CS/HV_DS are valid ring-0 descriptors.
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
            cs = const HV_CS as u64,
            ds = in(reg) u64::from(HV_DS),
            tmp = out(reg) _,
        );
    }
}
