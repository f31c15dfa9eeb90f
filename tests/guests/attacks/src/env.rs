//! What the attacks aim at: the guest's own page tables, its frames, frames that are not its
//! own, and the free slots where an entry can be tried.

use xenia_guest_rt::boot::{VIRT_BASE, start_info};
use xenia_guest_rt::mm::{self, PAGE, Slot, pte, window_va};

/// Window slot whose L1 entry the mapping attacks try to change (it keeps its padding frame
/// otherwise).
pub const TARGET_SLOT: usize = 1;
/// Window slot used as a writable alias of a frame under attack.
pub const ALIAS_SLOT: usize = 2;
/// Window slot that is never moved: its padding frame is "an ordinary data page, mapped
/// writable".
pub const DATA_SLOT: usize = 3;
/// Window slot for a second mapping.
pub const SPARE_SLOT: usize = 4;
/// A free slot of the bootstrap L4 (the guest's half, below the kernel's slot 511).
pub const FREE_L4_SLOT: usize = 300;
/// The first address [`FREE_L4_SLOT`] translates: slots 256 and up are the upper half, so
/// the address is sign-extended from bit 47 (Intel SDM Vol. 1 §3.3.7.1, canonical addresses).
pub const FREE_L4_VA: u64 = 0xFFFF_0000_0000_0000 | ((FREE_L4_SLOT as u64) << 39);
const _: () = assert!(FREE_L4_SLOT >= 256);
/// A free slot of the bootstrap L3 (the kernel's region is in slot 510).
pub const FREE_L3_SLOT: usize = 5;
/// A free slot of the bootstrap L2 (the region uses the first few).
pub const FREE_L2_SLOT: usize = 200;

/// The hypervisor's image: loaded at 1 MiB (the isolation test's `HYPERVISOR_IMAGE`).
pub const HYPERVISOR_IMAGE_MFN: u64 = 0x100;
/// The local APIC's registers (Intel SDM Vol. 3A §11.4.1, default base).
pub const LOCAL_APIC: u64 = 0xFEE0_0000;
/// The I/O APIC's registers (its usual base).
pub const IO_APIC: u64 = 0xFEC0_0000;

/// Everything the attacks share, found once at start.
pub struct Env {
    /// The bootstrap L4 (pinned, the current base pointer).
    pub l4: u64,
    /// The bootstrap L3, L2 and L1 on the path to the window slots.
    pub l3: u64,
    /// See `l3`.
    pub l2: u64,
    /// See `l3`.
    pub l1: u64,
    /// The L1 entry that maps [`TARGET_SLOT`].
    pub target: Slot,
    /// The frame behind [`DATA_SLOT`] and its address.
    pub data_mfn: u64,
    /// See `data_mfn`.
    pub data_va: u64,
    /// A machine frame of RAM the domain does not own (not in its p2m list, M2P not ours).
    pub foreign: u64,
    /// Whether the CPU has NX.
    pub nx: bool,
    /// The physical address width (CPUID 8000_0008h `EAX[7:0]`; Intel SDM Vol. 3A §4.1.4):
    /// address bits from here to 51 are reserved in every entry.
    pub phys_bits: u32,
}

impl Env {
    /// Finds everything, or says what is missing.
    pub fn find() -> Result<Env, &'static str> {
        let l4 = mm::bootstrap_l4();
        if mm::current_base() != l4 {
            return Err("not on the bootstrap L4");
        }
        let target_va = window_va(TARGET_SLOT);
        let [Some(s4), Some(s3), Some(s2), Some(s1)] = mm::walk(target_va) else {
            return Err("the window slots are not mapped with 4 KiB pages");
        };
        let data_va = window_va(DATA_SLOT);
        let data_mfn = mm::p2m((data_va - VIRT_BASE) / PAGE);
        if mm::walk(data_va)[3].map(|s| pte::mfn(s.entry)) != Some(data_mfn) {
            return Err("the data slot does not map its padding frame");
        }
        let ours = |mfn: u64| mm::p2m_contains(mfn) || start_info().shared_info >> 12 == mfn;
        // Low RAM first (mfn 1 is never given to a domain on a PC), then the hypervisor's
        // neighbourhood.
        let foreign = [1, 2, 0x9F, HYPERVISOR_IMAGE_MFN + 1]
            .into_iter()
            .find(|&m| !ours(m))
            .ok_or("no foreign frame found")?;
        if ours(HYPERVISOR_IMAGE_MFN) {
            return Err("the hypervisor image frame is the domain's");
        }
        let env = Env {
            l4,
            l3: pte::mfn(s4.entry),
            l2: pte::mfn(s3.entry),
            l1: pte::mfn(s2.entry),
            target: s1,
            data_mfn,
            data_va,
            foreign,
            nx: mm::has_nx(),
            phys_bits: phys_bits(),
        };
        for (table, slot, what) in [
            (env.l4, FREE_L4_SLOT, "free L4 slot"),
            (env.l3, FREE_L3_SLOT, "free L3 slot"),
            (env.l2, FREE_L2_SLOT, "free L2 slot"),
        ] {
            if mm::read_entry(table, slot) != Some(0) {
                return Err(what);
            }
        }
        Ok(env)
    }

    /// The current value of the target slot's L1 entry.
    pub fn target_entry(&self) -> u64 {
        mm::read_entry(self.target.table, self.target.index).unwrap_or(u64::MAX)
    }

    /// The address of the target slot.
    pub fn target_va(&self) -> u64 {
        window_va(TARGET_SLOT)
    }

    /// Machine address of entry `index` of table `mfn`.
    pub const fn entry_ma(mfn: u64, index: usize) -> u64 {
        (mfn << 12) + 8 * index as u64
    }
}

/// The CPU's physical address width; 36 when it does not say (Intel SDM Vol. 2A, CPUID).
fn phys_bits() -> u32 {
    use core::arch::x86_64::__cpuid;
    if __cpuid(0x8000_0000).eax >= 0x8000_0008 {
        __cpuid(0x8000_0008).eax & 0xFF
    } else {
        36
    }
}
