//! The descriptor tables: GDT (ring-0 and ring-3 segments, the TSS), TSS (`RSP0`, the stack
//! for traps from ring 3) and IDT. Intel SDM Vol. 3A §3.4.5 (segment descriptors), §8.2.3
//! (64-bit TSS), §6.14.1 (64-bit IDT gates). All three are statics of atomics: the CPU writes
//! the GDT (accessed and busy bits) behind Rust's back, which interior mutability allows.

use core::arch::asm;
use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};

/// Kernel code selector (64-bit, DPL 0).
pub const KERNEL_CS: u16 = 0x08;
/// Kernel data selector (DPL 0).
pub const KERNEL_DS: u16 = 0x10;
/// User data selector (DPL 3), RPL 3. `STAR`'s SYSRET base + 8, as SYSRET requires.
pub const USER_DS: u16 = 0x18 | 3;
/// User code selector (64-bit, DPL 3), RPL 3. `STAR`'s SYSRET base + 16.
pub const USER_CS: u16 = 0x20 | 3;
/// The TSS's selector (a 16-byte system descriptor).
const TSS_SEL: u16 = 0x28;
/// What SYSRET adds 8 and 16 to for the user SS and CS (Intel SDM Vol. 3A §5.8.8).
pub const SYSRET_BASE: u16 = 0x10;

/// Descriptors: flat, 4 KiB granularity; `L` set for the code segments.
const GDT_INIT: [u64; 5] = [
    0,
    0x00AF_9B00_0000_FFFF, // 0x08: 64-bit code, DPL 0, accessed
    0x00CF_9300_0000_FFFF, // 0x10: data, DPL 0, accessed
    0x00CF_F300_0000_FFFF, // 0x18: data, DPL 3, accessed
    0x00AF_FB00_0000_FFFF, // 0x20: 64-bit code, DPL 3, accessed
];
/// Descriptors plus the two slots of the TSS descriptor.
const GDT_LEN: usize = GDT_INIT.len() + 2;

static GDT: [AtomicU64; GDT_LEN] = [const { AtomicU64::new(0) }; GDT_LEN];

/// The 64-bit TSS: 104 bytes as 26 doublewords (`RSP0` at byte 4, the I/O map base at 102).
static TSS: [AtomicU32; 26] = [const { AtomicU32::new(0) }; 26];
const TSS_BYTES: u64 = 104;

/// Gate type and attributes: present, 64-bit interrupt gate (IF cleared on entry), DPL 0/3.
pub const GATE_KERNEL: u8 = 0x8E;
pub const GATE_USER: u8 = 0xEE;

/// 256 gates of 16 bytes.
#[repr(C, align(16))]
struct Idt([AtomicU64; 512]);
static IDT: Idt = Idt([const { AtomicU64::new(0) }; 512]);

/// The operand of `lgdt`/`lidt`.
#[repr(C, packed)]
struct Pointer {
    limit: u16,
    base: u64,
}

/// Fills the GDT and TSS (`RSP0` = `rsp0`), loads them, reloads every segment register.
pub fn load_gdt(rsp0: u64) {
    TSS[1].store(rsp0 as u32, Ordering::Relaxed);
    TSS[2].store((rsp0 >> 32) as u32, Ordering::Relaxed);
    // I/O map base past the end: no I/O permission bitmap.
    TSS[25].store((TSS_BYTES as u32) << 16, Ordering::Relaxed);
    for (slot, value) in GDT.iter().zip(GDT_INIT) {
        slot.store(value, Ordering::Relaxed);
    }
    // 64-bit available TSS (type 9), present, DPL 0 (Intel SDM Vol. 3A §8.2.3, figure 8-4).
    let base = TSS.as_ptr() as u64;
    let limit = TSS_BYTES - 1;
    let low = (limit & 0xFFFF)
        | ((base & 0xFF_FFFF) << 16)
        | (0x89 << 40)
        | (((limit >> 16) & 0xF) << 48)
        | (((base >> 24) & 0xFF) << 56);
    GDT[GDT_INIT.len()].store(low, Ordering::Relaxed);
    GDT[GDT_INIT.len() + 1].store(base >> 32, Ordering::Relaxed);
    let pointer = Pointer {
        limit: (GDT_LEN * 8 - 1) as u16,
        base: GDT.as_ptr() as u64,
    };
    // SAFETY: the GDT is a static with the selectors the code uses (the same kernel code and
    // data selectors as the boot GDT); the far return reloads CS with KERNEL_CS, the moves
    // reload the data segments, `ltr` loads the TSS descriptor just written.
    unsafe {
        asm!(
            "lgdt [{pointer}]",
            "push {cs}",
            "lea {tmp}, [rip + 2f]",
            "push {tmp}",
            "retfq",
            "2:",
            "mov ds, {ds:x}",
            "mov es, {ds:x}",
            "mov ss, {ds:x}",
            "ltr {tss:x}",
            pointer = in(reg) &raw const pointer,
            cs = const KERNEL_CS as u64,
            tmp = out(reg) _,
            ds = in(reg) u64::from(KERNEL_DS),
            tss = in(reg) u64::from(TSS_SEL),
        );
    }
}

/// Sets gate `vector` to `handler` with `kind` ([`GATE_KERNEL`] or [`GATE_USER`]).
pub fn set_gate(vector: u8, handler: u64, kind: u8) {
    let low = (handler & 0xFFFF)
        | (u64::from(KERNEL_CS) << 16)
        | (u64::from(kind) << 40)
        | (((handler >> 16) & 0xFFFF) << 48);
    let i = usize::from(vector) * 2;
    IDT.0[i].store(low, Ordering::Relaxed);
    IDT.0[i + 1].store(handler >> 32, Ordering::Relaxed);
}

/// Loads the IDT.
pub fn load_idt() {
    let pointer = Pointer {
        limit: (IDT.0.len() * 8 - 1) as u16,
        base: IDT.0.as_ptr() as u64,
    };
    // SAFETY: the IDT is a static that lives forever; its gates point at the stubs of
    // `trap.rs` (unset gates are not present: #NP, then #DF, then a triple fault, which QEMU
    // `-no-reboot` reports as an exit).
    unsafe { asm!("lidt [{}]", in(reg) &raw const pointer, options(nostack)) };
}
