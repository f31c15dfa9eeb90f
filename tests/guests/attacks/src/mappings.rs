//! Attacks on entries: mapping what is not the guest's (other domains' frames, the hypervisor,
//! MMIO), its own page tables writable, linear page tables, the reserved L4 slots, reserved
//! bits and superpages. Each tries one entry and reads it back afterwards through the
//! read-only mapping of its table: a refused update must leave it as it was.

use guest_abi::layout::{HYPERVISOR_FIRST_L4_SLOT, MACH2PHYS_VIRT_START};
use guest_abi::memory::{MMU_NORMAL_PT_UPDATE, MMU_PT_UPDATE_PRESERVE_AD, MmuUpdate};
use guest_abi::memory::{UVMF_INVLPG, UVMF_LOCAL};
use guest_abi::types::{DOMID_XEN, DomId};
use xenia_guest_rt::mm::{self, pte, pte::entry};
use xenia_guest_rt::probe;
use xenia_guest_rt::trap::PAGE_FAULT;

use crate::env::{
    Env, FREE_L2_SLOT, FREE_L3_SLOT, FREE_L4_SLOT, HYPERVISOR_IMAGE_MFN, IO_APIC, LOCAL_APIC,
};
use crate::setup_error;
use crate::verdict::{Errname, Outcome, Verdict, expect_refusal};

const P: u64 = pte::PRESENT;
const RW: u64 = pte::RW;
const U: u64 = pte::USER;

/// The hypervisor image's virtual address (slot 258; see the isolation test).
const HYPERVISOR_IMAGE_VA: u64 = 0xFFFF_8100_0010_0000;

/// Tries `update_va_mapping` of the target slot to `val`; puts the old entry back if the
/// hypervisor took it.
fn try_l1(env: &Env, val: u64) -> Verdict {
    let before = env.target_entry();
    // SAFETY: the target slot is a window page no Rust code uses.
    let ret = unsafe { mm::update_va(env.target_va(), val, UVMF_INVLPG | UVMF_LOCAL) };
    let after = env.target_entry();
    if ret >= 0 {
        // SAFETY: as above; the old entry is the padding frame.
        unsafe { mm::update_va(env.target_va(), before, UVMF_INVLPG | UVMF_LOCAL) };
    }
    expect_refusal(
        ret,
        after == before,
        format_args!("the L1 entry is {after:#x}, was {before:#x}"),
    )
}

/// Tries one `mmu_update` request `cmd` writing `val` to entry `index` of table `table` with
/// foreign domain `foreigndom`; puts the old entry back if the hypervisor took it.
fn try_entry_as(table: u64, index: usize, val: u64, cmd: u64, foreigndom: DomId) -> Verdict {
    let ma = Env::entry_ma(table, index);
    let Some(before) = mm::read_entry(table, index) else {
        return setup_error!("cannot read entry {index} of table {table:#x}");
    };
    let req = MmuUpdate::new(cmd, ma, val);
    let mut done: u32 = 0;
    // SAFETY: the entries tried are in free slots or the target window's L1 entry, which no
    // Rust code uses.
    let ret = unsafe {
        mm::mmu_update_raw(
            &raw const req as u64,
            1,
            &raw mut done as u64,
            foreigndom.into(),
        )
    };
    let after = mm::read_entry(table, index).unwrap_or(u64::MAX);
    if ret >= 0 {
        // SAFETY: as above.
        unsafe { mm::set_entry(ma, before) };
    }
    expect_refusal(
        ret,
        after == before,
        format_args!("entry {index} is {after:#x}, was {before:#x}"),
    )
}

fn try_entry(table: u64, index: usize, val: u64) -> Verdict {
    try_entry_as(
        table,
        index,
        val,
        MMU_NORMAL_PT_UPDATE,
        guest_abi::types::DOMID_SELF,
    )
}

/// A frame of RAM that belongs to no domain of ours, read-only.
pub fn map_foreign_frame(env: &Env) -> Verdict {
    try_l1(env, entry(env.foreign, P))
}

/// The hypervisor image at 1 MiB, writable.
pub fn map_hypervisor_image(env: &Env) -> Verdict {
    try_l1(env, entry(HYPERVISOR_IMAGE_MFN, P | RW))
}

/// The same through `mmu_update` on the L1 entry.
pub fn map_hypervisor_image_mmu_update(env: &Env) -> Verdict {
    try_entry(
        env.target.table,
        env.target.index,
        entry(HYPERVISOR_IMAGE_MFN, P),
    )
}

/// The same naming `DOMID_XEN` as the foreign domain (Xen lets a privileged domain map the
/// hypervisor's shared pages this way).
pub fn map_hypervisor_frame_as_domid_xen(env: &Env) -> Verdict {
    try_entry_as(
        env.target.table,
        env.target.index,
        entry(HYPERVISOR_IMAGE_MFN, P),
        MMU_NORMAL_PT_UPDATE,
        DOMID_XEN,
    )
}

/// A foreign frame naming a domain that does not exist as its owner.
pub fn map_frame_of_absent_domain(env: &Env) -> Verdict {
    try_entry_as(
        env.target.table,
        env.target.index,
        entry(env.foreign, P),
        MMU_NORMAL_PT_UPDATE,
        1,
    )
}

/// The local APIC's registers, uncached.
pub fn map_mmio_local_apic(env: &Env) -> Verdict {
    try_l1(env, LOCAL_APIC | P | RW | pte::PCD | pte::PWT)
}

/// The I/O APIC's registers, uncached.
pub fn map_mmio_io_apic(env: &Env) -> Verdict {
    try_l1(env, IO_APIC | P | RW | pte::PCD | pte::PWT)
}

/// A frame number beyond any physical address width (bit 51).
pub fn map_beyond_physical_address_width(env: &Env) -> Verdict {
    try_l1(env, (1 << 51) | P)
}

/// The guest's own L1 (the one mapping the windows), writable.
pub fn map_own_l1_writable(env: &Env) -> Verdict {
    try_l1(env, entry(env.l1, P | RW))
}

/// The guest's own L2, writable and user-accessible.
pub fn map_own_l2_writable_user(env: &Env) -> Verdict {
    try_l1(env, entry(env.l2, P | RW | U))
}

/// The guest's own L4 (pinned, in CR3), writable, through `mmu_update`.
pub fn map_own_l4_writable_mmu_update(env: &Env) -> Verdict {
    try_entry(env.target.table, env.target.index, entry(env.l4, P | RW))
}

/// An L4 entry pointing at the L4 itself, writable: the classic self-map that would expose
/// every page table writable.
pub fn linear_l4_writable(env: &Env) -> Verdict {
    try_entry(env.l4, FREE_L4_SLOT, entry(env.l4, P | RW))
}

/// The same read-only (Xen allows read-only linear page tables; Xenia allows none).
pub fn linear_l4_read_only(env: &Env) -> Verdict {
    try_entry(env.l4, FREE_L4_SLOT, entry(env.l4, P))
}

/// An L4 entry pointing at an L1 table (which would be used as an L3).
pub fn l4_entry_to_l1_table(env: &Env) -> Verdict {
    try_entry(env.l4, FREE_L4_SLOT, entry(env.l1, P | RW | U))
}

/// An L3 entry pointing at the L4 (which would be used as an L2).
pub fn l3_entry_to_l4_table(env: &Env) -> Verdict {
    try_entry(env.l3, FREE_L3_SLOT, entry(env.l4, P | RW))
}

/// An entry in the hypervisor's slot `slot` pointing at the kernel's own L3, with command
/// `cmd`.
fn reserved_slot(env: &Env, slot: usize, cmd: u64) -> Verdict {
    try_entry_as(
        env.l4,
        slot,
        entry(env.l3, P | RW | U),
        cmd,
        guest_abi::types::DOMID_SELF,
    )
}

/// Slot 256 (the M2P's).
pub fn l4_reserved_slot_256(env: &Env) -> Verdict {
    reserved_slot(env, HYPERVISOR_FIRST_L4_SLOT, MMU_NORMAL_PT_UPDATE)
}

/// Slot 257 (the entry area's).
pub fn l4_reserved_slot_257(env: &Env) -> Verdict {
    reserved_slot(env, HYPERVISOR_FIRST_L4_SLOT + 1, MMU_NORMAL_PT_UPDATE)
}

/// Slot 271 (the last reserved one), with `MMU_PT_UPDATE_PRESERVE_AD`.
pub fn l4_reserved_slot_271_preserve_ad(env: &Env) -> Verdict {
    reserved_slot(env, 271, MMU_PT_UPDATE_PRESERVE_AD)
}

/// `update_va_mapping` of a hypervisor address (the image) to one of the guest's frames.
pub fn update_va_mapping_hypervisor_va(env: &Env) -> Verdict {
    // SAFETY: a mapping in the hypervisor's range, which Rust code never uses.
    let ret = unsafe {
        mm::update_va(
            HYPERVISOR_IMAGE_VA,
            entry(env.data_mfn, P | RW),
            UVMF_INVLPG | UVMF_LOCAL,
        )
    };
    // SAFETY: a load from an address that must stay unmapped; the probe resumes on #PF.
    let p = unsafe {
        probe!(PAGE_FAULT, "mov {v}, qword ptr [{a}]"; a = in(reg) HYPERVISOR_IMAGE_VA, v = out(reg) _)
    };
    expect_refusal(
        ret,
        p.caught.is_some(),
        format_args!("{HYPERVISOR_IMAGE_VA:#x} is readable now"),
    )
}

/// `update_va_mapping` of the M2P's first page to a guest frame (making the "read-only"
/// table the guest's to write).
pub fn update_va_mapping_m2p_va(env: &Env) -> Verdict {
    let before = mm::m2p(0);
    // SAFETY: a mapping in the hypervisor's range, which Rust code does not use by reference
    // (the M2P is read with probes).
    let ret = unsafe {
        mm::update_va(
            MACH2PHYS_VIRT_START,
            entry(env.data_mfn, P | RW),
            UVMF_INVLPG | UVMF_LOCAL,
        )
    };
    let after = mm::m2p(0);
    expect_refusal(
        ret,
        after == before,
        format_args!("M2P[0] reads {after:?}, was {before:?}"),
    )
}

/// The lowest reserved address bit (MAXPHYADDR), or `None` when the CPU has none (52 bits).
fn reserved_address_bit(env: &Env) -> Option<u64> {
    (env.phys_bits < 52).then(|| 1 << env.phys_bits)
}

/// An L1 entry for the guest's own data page with the lowest reserved address bit set
/// (a reserved-bit page fault for the CPU; it would name a frame beyond RAM to a careless
/// hypervisor).
pub fn reserved_address_bit_l1(env: &Env) -> Verdict {
    match reserved_address_bit(env) {
        Some(bit) => try_l1(env, entry(env.data_mfn, P | RW) | bit),
        None => Verdict::new(Outcome::Skipped, format_args!("no reserved address bits")),
    }
}

/// An L2 entry for a fresh zeroed frame with the lowest reserved address bit set.
pub fn reserved_address_bit_l2(env: &Env) -> Verdict {
    let Some(bit) = reserved_address_bit(env) else {
        return Verdict::new(Outcome::Skipped, format_args!("no reserved address bits"));
    };
    let Some((_, mfn)) = mm::fresh_frame() else {
        return setup_error!("no fresh frame");
    };
    // SAFETY: a fresh frame, mapped nowhere.
    if let Err(ret) = unsafe { mm::zero_frame(mfn) } {
        return setup_error!("zeroing a fresh frame: {}", Errname(ret));
    }
    try_entry(env.l2, FREE_L2_SLOT, entry(mfn, P | RW) | bit)
}

/// An L1 entry for the data page with bit 62, Xen's `_PAGE_GNTTAB` (the mark of a grant
/// mapping, which only the grant-table interface may make).
pub fn grant_bit_62_l1(env: &Env) -> Verdict {
    try_l1(env, entry(env.data_mfn, P | RW) | (1 << 62))
}

/// Not an attack: whether an L1 entry may carry the software-available bits 52–61 (Xen's
/// `_PAGE_AVAIL_HIGH` less its grant bit), which the CPU ignores. Prints a `note:` line.
pub fn note_software_bits(env: &Env) {
    let val = entry(env.data_mfn, P | RW) | (0x3FF << 52);
    let before = env.target_entry();
    // SAFETY: the target slot is a window page no Rust code uses.
    let ret = unsafe { mm::update_va(env.target_va(), val, UVMF_INVLPG | UVMF_LOCAL) };
    if ret >= 0 {
        // SAFETY: as above.
        unsafe { mm::update_va(env.target_va(), before, UVMF_INVLPG | UVMF_LOCAL) };
    }
    xenia_guest_rt::check::note(format_args!(
        "an L1 entry with the software bits 52-61 set (ignored by the CPU; Xen's \
         _PAGE_AVAIL_HIGH) is {} ({})",
        if ret >= 0 { "accepted" } else { "refused" },
        Errname(ret)
    ));
}

/// A 2 MiB superpage at machine address 0 (which holds the hypervisor image at 1 MiB) in
/// an L2 entry.
pub fn superpage_l2(env: &Env) -> Verdict {
    try_entry(env.l2, FREE_L2_SLOT, entry(0, P | RW | pte::PS))
}

/// A 1 GiB superpage at machine address 0 in an L3 entry.
pub fn superpage_l3(env: &Env) -> Verdict {
    try_entry(env.l3, FREE_L3_SLOT, entry(0, P | RW | pte::PS))
}
