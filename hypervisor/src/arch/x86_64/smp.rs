//! Starting the application processors (APs): the first step of issue 12.
//!
//! The boot CPU reads the processors from the ACPI MADT (`xenia_core::acpi::madt_cpus`),
//! copies a real-mode trampoline to low memory and wakes each AP in turn with INIT-SIPI-SIPI
//! (Intel SDM Vol. 3A §9.4.4, "MP Initialization Example", and §11.6.1, the ICR). Each AP gets
//! its own entry area (`entry::build_ap_area`: CPU page with GDT and TSS, IDT, entry/NMI/#DF/#MC
//! stacks, `PerCpu` page; the stubs shared), its own hypervisor root (the boot CPU's with its
//! own slot 257, `paging::ap_root`) and its own hypervisor stack. It goes 16 → 32 → 64-bit in
//! the trampoline, switches to its root, loads its GDT, TSS and IDT, turns on the same
//! protections as the boot CPU and its local APIC, says it is online, and enters the
//! scheduler's idle loop (`guest::ap_run`): from then on it runs vCPUs like the boot CPU.
//!
//! APs are started one at a time: the trampoline's parameter block and its temporary page
//! tables serve one AP, and the next is only woken once the previous one runs on its own root.
//!
//! Low memory: the trampoline takes [`LOW_PAGES`] pages of RAM below [`SIPI_LIMIT`] that the
//! memory map calls usable and that hold none of the boot modules or the boot information.
//! The frame allocator never hands out anything below `layout::LOW_MEMORY_LIMIT` (1 MiB), so
//! those pages stay the trampoline's; they are not returned after the APs are up, as a later
//! CPU-online (issue 12's `xen-hptool cpu-online`) will need them again.

use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use super::{apic, entry, gdt, layout::phys_to_virt, paging, trap};
use crate::mm::memmap::PhysRange;

/// CPUs Xenia can run: the online set is a 64-bit mask. The scheduler has no such bound;
/// this one is the first step's and is said in the log when it cuts the list.
pub const MAX_CPUS: usize = 64;

/// The trampoline's pages: code and parameters, then the temporary L4, L3 and L2 that map
/// the first 2 MiB one-to-one besides the hypervisor's half.
const LOW_PAGES: u64 = 4;
const PAGE: u64 = 4096;
/// A SIPI vector names a page below 1 MiB; vectors 0xA0–0xBF are reserved (SDM Vol. 3A
/// §11.6.1, "Start-Up"), so the trampoline stays below 0xA0000.
const SIPI_LIMIT: u64 = 0xA_0000;
/// Page 0 holds the real-mode interrupt vector table and BIOS data area.
const LOW_FIRST: u64 = 0x1000;

/// The SDM's delays (Vol. 3A §9.4.4.1): 10 ms after INIT, 200 µs after each SIPI.
const INIT_DELAY_US: u64 = 10_000;
const SIPI_DELAY_US: u64 = 200;
/// How long an AP has, after the second SIPI, to reach Rust code and then to say it is
/// online. Generous: under emulation an AP's first instructions can wait for the host.
const CALLIN_BOUND_US: u64 = 2_000_000;
const ONLINE_BOUND_US: u64 = 2_000_000;

/// Pages of an AP's hypervisor stack (as the boot CPU's 64 KiB).
const STACK_PAGES: u64 = 16;

/// Bits of the APs' boot descriptors (SDM Vol. 3A §3.4.5): flat 32-bit code, flat data,
/// 64-bit code.
const GDT_CODE32: u64 = 0x00CF_9A00_0000_FFFF;
const GDT_DATA: u64 = 0x00CF_9200_0000_FFFF;
const GDT_CODE64: u64 = 0x00AF_9A00_0000_FFFF;
const SEL_CODE32: u16 = 0x08;
const SEL_CODE64: u16 = 0x18;

const MSR_EFER_LME: u32 = 1 << 8;
const MSR_EFER_NXE: u32 = 1 << 11;

/// The trampoline's parameter block, at [`DATA_OFFSET`] in its page. The boot CPU fills it
/// for each AP; the asm reads it at the offsets passed in as constants.
#[repr(C)]
struct TrampolineData {
    /// `lgdt` operand: 16-bit limit, then the 32-bit linear base (the GDT below); packed.
    gdt_pointer: [u8; 8],
    /// Far pointer (m16:32: 32-bit offset, then selector) to the 32-bit code.
    far32: [u8; 8],
    /// Far pointer (m16:32) to the 64-bit code (still at its low address).
    far64: [u8; 8],
    /// CR3 of the temporary tables (below 4 GiB: loaded in 32-bit mode).
    temp_cr3: u32,
    /// Bits OR-ed into EFER: LME, and NXE when the CPU has NX (the hypervisor's tables use it).
    efer: u32,
    /// The AP's own hypervisor root, its stack top, where it goes and with what.
    final_cr3: u64,
    stack_top: u64,
    entry: u64,
    arg: u64,
    gdt: [u64; 4],
}

/// Where the parameter block starts: after the 2-byte jump over it, 8-aligned (`.balign 8`).
const DATA_OFFSET: u64 = 8;
const _: () = assert!(core::mem::size_of::<TrampolineData>() == 96);

macro_rules! data_offset {
    ($field:ident) => {
        DATA_OFFSET as usize + core::mem::offset_of!(TrampolineData, $field)
    };
}

// The trampoline. It is copied to a low page and entered by SIPI in real mode with
// CS = page >> 4, IP = 0 (SDM Vol. 3A §9.4.4.1 / §11.6.1). It runs from its copy only, so every
// address it uses comes from the parameter block (relative to CS in real mode, to EBX, the
// copy's linear base, afterwards). Instructions with a memory operand whose encoding the
// assembler might pick differently in 16-bit mode are spelled out as bytes.
core::arch::global_asm!(
    r#"
.pushsection .rodata.xenia_ap_trampoline, "a"
.balign 16
.global xenia_ap_trampoline
xenia_ap_trampoline:
.code16
    jmp 2f
.balign 8
    .skip {data_size}
2:
    cli
    cld
    mov ax, cs
    mov ds, ax
    xor ebx, ebx
    mov bx, ax
    shl ebx, 4
    /* lgdt [gdt operand], 32-bit base: 66 0F 01 /2, ModRM 0x16 = [disp16] */
    .byte 0x66, 0x0F, 0x01, 0x16
    .word {d_gdt}
    mov eax, cr0
    or eax, 1
    mov cr0, eax
    /* jmp far m16:32 [far32]: 66 FF /5, ModRM 0x2E = [disp16] */
    .byte 0x66, 0xFF, 0x2E
    .word {d_far32}

.code32
.global xenia_ap_trampoline_32
xenia_ap_trampoline_32:
    mov ax, {sel_data}
    mov ds, ax
    mov es, ax
    mov ss, ax
    mov eax, cr4
    or eax, 1 << 5
    mov cr4, eax
    mov eax, [ebx + {d_temp_cr3}]
    mov cr3, eax
    mov ecx, 0xC0000080
    rdmsr
    or eax, [ebx + {d_efer}]
    wrmsr
    mov eax, cr0
    or eax, (1 << 31) | (1 << 16)
    mov cr0, eax
    /* jmp far m16:32 [ebx + far64]: FF /5, ModRM 0xAB = [ebx + disp32] */
    .byte 0xFF, 0xAB
    .long {d_far64}

.code64
.global xenia_ap_trampoline_64
xenia_ap_trampoline_64:
    mov ebx, ebx
    mov rsp, [rbx + {d_stack}]
    mov rdi, [rbx + {d_arg}]
    mov rsi, [rbx + {d_final_cr3}]
    mov rax, [rbx + {d_entry}]
    jmp rax
.global xenia_ap_trampoline_end
xenia_ap_trampoline_end:
.popsection

/* In the image: the AP leaves the low identity mapping for its own root, then Rust. */
.section .text.xenia_ap_entry64, "ax"
.global xenia_ap_entry64
xenia_ap_entry64:
    mov cr3, rsi
    xor ebp, ebp
    call {ap_main}
3:
    cli
    hlt
    jmp 3b
"#,
    data_size = const core::mem::size_of::<TrampolineData>(),
    d_gdt = const data_offset!(gdt_pointer),
    d_far32 = const data_offset!(far32),
    d_far64 = const data_offset!(far64),
    d_temp_cr3 = const data_offset!(temp_cr3),
    d_efer = const data_offset!(efer),
    d_stack = const data_offset!(stack_top),
    d_arg = const data_offset!(arg),
    d_final_cr3 = const data_offset!(final_cr3),
    d_entry = const data_offset!(entry),
    sel_data = const 0x10,
    ap_main = sym ap_main,
);

unsafe extern "C" {
    static xenia_ap_trampoline: u8;
    static xenia_ap_trampoline_32: u8;
    static xenia_ap_trampoline_64: u8;
    static xenia_ap_trampoline_end: u8;
    static xenia_ap_entry64: u8;
}

/// CPUs online, bit per CPU index.
static ONLINE: AtomicU64 = AtomicU64::new(1);
/// The index of the AP that last reached Rust code (0: none yet).
static CALLED_IN: AtomicU64 = AtomicU64::new(0);

/// The APIC ID of each CPU index that came online (for the topology `physinfo` reports).
static APIC_IDS: [AtomicU32; MAX_CPUS] = [const { AtomicU32::new(0) }; MAX_CPUS];

/// The APIC IDs of the online CPUs, CPU 0's first, in the first `n` entries; `n`.
pub fn online_apic_ids() -> ([u32; MAX_CPUS], usize) {
    let online = online_mask();
    let mut ids = [0; MAX_CPUS];
    let mut n = 0;
    for (i, id) in APIC_IDS.iter().enumerate() {
        if online & (1 << i) != 0 {
            ids[n] = id.load(Ordering::SeqCst);
            n += 1;
        }
    }
    (ids, n)
}

/// How many CPUs are online.
pub fn online_count() -> u32 {
    ONLINE.load(Ordering::SeqCst).count_ones()
}

/// The online CPUs, a bit per index.
pub fn online_mask() -> u64 {
    ONLINE.load(Ordering::SeqCst)
}

/// The highest online CPU index.
pub fn max_online_index() -> u32 {
    63 - ONLINE.load(Ordering::SeqCst).leading_zeros()
}

/// Waits up to `us` microseconds (by the TSC, calibrated at boot) for `done`; whether it came.
pub fn wait_us(us: u64, mut done: impl FnMut() -> bool) -> bool {
    let cycles = crate::time::tsc_hz().max(1).saturating_mul(us) / 1_000_000;
    let start = crate::time::rdtsc();
    loop {
        if done() {
            return true;
        }
        if crate::time::rdtsc().wrapping_sub(start) >= cycles {
            return done();
        }
        core::hint::spin_loop();
    }
}

fn delay_us(us: u64) {
    wait_us(us, || false);
}

/// Starts the processors the MADT lists, at most `max_cpus` in all (the boot CPU included),
/// and logs `cpus: <n> online`, after one line per CPU that could not be started.
/// `usable` is RAM by the memory map; `avoid` what low memory must not be touched.
pub fn start_aps(
    madt: Option<&[u8]>,
    max_cpus: Option<u32>,
    usable: &[PhysRange],
    avoid: &[PhysRange],
) {
    let bsp = apic::id();
    APIC_IDS[0].store(bsp, Ordering::SeqCst);
    let mut cpus = match madt {
        Some(madt) => xenia_core::acpi::madt_cpus(madt, bsp, apic::x2apic_mode(), |p| {
            if p.is_note() {
                log::info!(target: "smp", "{p}")
            } else {
                log::warn!(target: "smp", "{p}")
            }
        }),
        None => {
            log::warn!(target: "smp", "no ACPI MADT: only the boot CPU runs");
            alloc::vec![bsp]
        }
    };
    let limit = max_cpus.map_or(MAX_CPUS, |m| (m as usize).min(MAX_CPUS));
    if cpus.len() > limit {
        if max_cpus.is_some_and(|m| m as usize <= MAX_CPUS) {
            log::info!(target: "smp", "smp: maxcpus={limit}: starting {limit} of {} CPUs", cpus.len());
        } else {
            log::warn!(target: "smp", "{} CPUs listed; Xenia runs at most {MAX_CPUS}", cpus.len());
        }
        cpus.truncate(limit);
    }
    if cpus.len() > 1 {
        match prepare_trampoline(usable, avoid) {
            Some(low) => {
                let started = crate::time::now_ns();
                for &apic_id in &cpus[1..] {
                    let index = u64::from(online_count());
                    if let Some(slot) = APIC_IDS.get(index as usize) {
                        slot.store(apic_id, Ordering::SeqCst);
                    }
                    match start_one(low, apic_id, index) {
                        Ok(()) => {
                            log::debug!(target: "smp", "smp: cpu {index} (APIC ID {apic_id}) online")
                        }
                        Err(why) => {
                            log::warn!(target: "smp", "cpu with APIC ID {apic_id}: not started: {why}")
                        }
                    }
                }
                log::debug!(
                    target: "smp",
                    "smp: {} APs started in {} us",
                    cpus.len() - 1,
                    (crate::time::now_ns() - started) / 1000
                );
            }
            None => log::warn!(
                target: "smp",
                "no free low memory for the AP trampoline: {} CPUs not started",
                cpus.len() - 1
            ),
        }
    }
    log::info!(target: "smp", "cpus: {} online", online_count());
}

/// Finds the trampoline's low pages and copies the code there. Returns their address.
fn prepare_trampoline(usable: &[PhysRange], avoid: &[PhysRange]) -> Option<u64> {
    let low = crate::mm::memmap::low_run(usable, avoid, LOW_FIRST, SIPI_LIMIT, LOW_PAGES * PAGE)?;
    let code = (&raw const xenia_ap_trampoline) as u64;
    let len = (&raw const xenia_ap_trampoline_end) as u64 - code;
    assert!(len <= PAGE, "the AP trampoline outgrew its page");
    // SAFETY: `low..low + LOW_PAGES pages` is RAM below 1 MiB that nothing uses (the frame
    // allocator never hands it out, the boot modules and information are elsewhere: `avoid`),
    // covered by the direct map's low window; the source is the image's read-only copy.
    unsafe {
        core::ptr::write_bytes(phys_to_virt(low) as *mut u8, 0, (LOW_PAGES * PAGE) as usize);
        core::ptr::copy_nonoverlapping(
            code as *const u8,
            phys_to_virt(low) as *mut u8,
            len as usize,
        );
    }
    log::debug!(target: "smp", "smp: AP trampoline at {low:#x}");
    Some(low)
}

/// Builds AP `index`'s entry area, root and stack, fills the trampoline for it and wakes it.
fn start_one(low: u64, apic_id: u32, index: u64) -> Result<(), &'static str> {
    use crate::mm::frames;
    let stack = frames::alloc_contiguous(STACK_PAGES).ok_or("no memory for its stack")?;
    let stack_top = phys_to_virt(stack.phys()) + STACK_PAGES * PAGE;
    let Some(area) = entry::build_ap_area(index, stack_top) else {
        frames::free_contiguous(stack, STACK_PAGES);
        return Err("no memory for its entry area");
    };
    let root = paging::ap_root(area.hv_slot_entry).map_err(|_| "no memory for its page tables")?;
    area.set_hv_cr3(root);
    fill_trampoline(low, root, stack_top, index);

    CALLED_IN.store(0, Ordering::SeqCst);
    let vector = (low / PAGE) as u8;
    apic::send_init(apic_id)?;
    delay_us(INIT_DELAY_US);
    for _ in 0..2 {
        apic::send_startup(apic_id, vector)?;
        delay_us(SIPI_DELAY_US);
    }
    let bit = 1u64 << index;
    let called_in = wait_us(CALLIN_BOUND_US, || {
        CALLED_IN.load(Ordering::SeqCst) == index
    });
    let online = called_in && wait_us(ONLINE_BOUND_US, || ONLINE.load(Ordering::SeqCst) & bit != 0);
    if online {
        return Ok(());
    }
    // Put it back in wait-for-SIPI, so that a late start cannot run the trampoline that the
    // next AP's parameters are about to be written into. Its frames are not reused: it may
    // have written to them until now.
    let _ = apic::send_init(apic_id);
    Err(if called_in {
        "it started but did not come online within 2 s"
    } else {
        "no answer to INIT-SIPI-SIPI within 2 s"
    })
}

/// The parameter block and temporary tables for the next AP.
fn fill_trampoline(low: u64, root: u64, stack_top: u64, index: u64) {
    let base = (&raw const xenia_ap_trampoline) as u64;
    let offset_of = |sym: u64| (low + sym - base) as u32;
    let mut efer = MSR_EFER_LME;
    if super::cpu::has_nx() {
        efer |= MSR_EFER_NXE;
    }
    let pack = |low16: u16, high32: u32| -> [u8; 8] {
        let mut b = [0u8; 8];
        b[0..2].copy_from_slice(&low16.to_le_bytes());
        b[2..6].copy_from_slice(&high32.to_le_bytes());
        b
    };
    let far = |offset: u32, selector: u16| -> [u8; 8] {
        let mut b = [0u8; 8];
        b[0..4].copy_from_slice(&offset.to_le_bytes());
        b[4..6].copy_from_slice(&selector.to_le_bytes());
        b
    };
    let gdt_base = (low + DATA_OFFSET) as u32 + core::mem::offset_of!(TrampolineData, gdt) as u32;
    let data = TrampolineData {
        gdt_pointer: pack((core::mem::size_of::<[u64; 4]>() - 1) as u16, gdt_base),
        far32: far(
            offset_of((&raw const xenia_ap_trampoline_32) as u64),
            SEL_CODE32,
        ),
        far64: far(
            offset_of((&raw const xenia_ap_trampoline_64) as u64),
            SEL_CODE64,
        ),
        temp_cr3: (low + PAGE) as u32,
        efer,
        final_cr3: root,
        stack_top,
        entry: (&raw const xenia_ap_entry64) as u64,
        arg: index,
        gdt: [0, GDT_CODE32, GDT_DATA, GDT_CODE64],
    };
    // The temporary L4: the AP's root (the hypervisor's half, so that its stack and the
    // image are there), plus slot 0 mapping the first 2 MiB one-to-one, executable, for the
    // instructions between enabling paging and the jump into the image.
    const PRESENT_RW: u64 = guest_abi::pte::PRESENT | guest_abi::pte::RW;
    let mut l4 = crate::mm::physmem::read_table(crate::mm::Mfn::from_phys(root));
    l4[0] = (low + 2 * PAGE) | PRESENT_RW;
    let mut l3 = [0u64; 512];
    l3[0] = (low + 3 * PAGE) | PRESENT_RW;
    let mut l2 = [0u64; 512];
    l2[0] = PRESENT_RW | guest_abi::pte::PS;
    for (page, table) in [(1, &l4), (2, &l3), (3, &l2)] {
        crate::mm::physmem::write_table(crate::mm::Mfn::from_phys(low + page * PAGE), table);
    }
    // SAFETY: the parameter block lies inside the trampoline's first low page (DATA_OFFSET
    // plus its size is below 4 KiB), which only this code and the AP being started use; no
    // AP runs the trampoline now (the previous one is online or was sent INIT again).
    unsafe {
        core::ptr::write_volatile(phys_to_virt(low + DATA_OFFSET) as *mut TrampolineData, data)
    };
}

/// An AP's first Rust code, on its own root and stack, interrupts off. Never returns.
extern "C" fn ap_main(index: u64) -> ! {
    CALLED_IN.store(index, Ordering::SeqCst);
    gdt::init();
    trap::init();
    let cpu = super::cpu::identify();
    super::enable_protections(cpu.features);
    super::enable_syscall(entry::syscall_entry());
    apic::init_ap();
    debug_assert_eq!(super::percpu::this().index() as u64, index);
    if super::percpu::this().index() as u64 != index {
        park()
    }
    ONLINE.fetch_or(1 << index, Ordering::SeqCst);
    crate::guest::ap_run()
}

/// Where an AP that found itself confused stays: interrupts off, halted.
fn park() -> ! {
    loop {
        x86_64::instructions::interrupts::disable();
        x86_64::instructions::hlt();
    }
}
