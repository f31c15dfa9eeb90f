//! Check 16 (session 14's review of the base-pointer short way and the frame table's
//! generations): attacks on `mmuext_op`'s `NEW_BASEPTR`/`NEW_USER_BASEPTR` as Linux makes
//! them (the hypervisor's `guest::fast_pv::base_switch`), each of which must be answered as
//! the ordinary path and Xen answer it:
//!
//! - `base_switch_list_remapped`: the item list's page is remapped between two calls (an L1
//!   entry changed by `update_va_mapping`); the second call reads the new page, not the
//!   one the hypervisor's kept translation named. `smp_base_switch_list_remapped_by_vcpu1`
//!   (with a second vCPU): the same with the remap made by vCPU 1, brought up again for it
//!   (`smp::remap_on_vcpu1`), on another pCPU when the machine has two.
//! - `base_switch_second_item_through_new_table`: a two-item call whose first item switches
//!   to a kernel table that does not map the list (already an L4, so the short way looks
//!   at it): the second item is read through the new table, as Xen reads it, and fails;
//!   the first is kept.
//! - `base_switch_refs_balanced`: a kernel table used as the base keeps its type when
//!   unpinned (it cannot be mapped writable), and once the base moves away it has no
//!   reference left (it can): no reference lost or leaked by the short way, with the same
//!   table set again and again between.
//! - `user_base_refs_balanced`: the same for a second user table, dropped by a
//!   `NEW_USER_BASEPTR` of 0 (the first is held by a second vCPU's context, when there is
//!   one).
//! - `user_l4_rewritten_while_plain`: that table, once no table (unpinned, no base), has an
//!   entry cut by `mmu_update` as plain memory; made an L4 and the user table again, a
//!   return to user mode sees the cut (the pCPU's copy of the table from before is not
//!   used), and the entry put back is seen too.

use core::fmt::Write;

use guest_abi::hypercall as nr;
use guest_abi::memory::{
    MMUEXT_NEW_BASEPTR, MMUEXT_NEW_USER_BASEPTR, MMUEXT_PIN_L4_TABLE, MMUEXT_TLB_FLUSH_LOCAL,
    MMUEXT_UNPIN_TABLE, UVMF_INVLPG,
};
use guest_abi::start_info::StartInfo;
use guest_abi::trap::IretContext;
use guest_abi::types::DOMID_SELF;

use super::{
    Mem, PTE_P, PTE_RW, PTE_U, USER_VA, VEC_SYSCALL, check, hypercall, iret_to_user,
    mmu_update_one, mmuext, recorded, user_context, write_u64,
};

/// A kernel address in an L4 slot the kernel's table leaves empty (slot 2), mapped only by
/// the chain this check builds.
const SCRATCH: u64 = 0x100_0000_0000;

/// The pages this check uses: free padding pages (the other checks use up to 12).
pub struct Pages {
    /// The first of six: a second kernel table, the chain mapping `SCRATCH` (L3, L2,
    /// L1) and two list pages.
    pub first: u64,
    /// The user table (pinned, the user base; its slot 1 maps the program at `USER_VA`).
    pub user_l4: u64,
    /// A free padding page for a second user table.
    pub spare_user_l4: u64,
    /// `xp_u_syscall`'s offset in the program's page.
    pub syscall_offset: u64,
}

fn read(va: u64) -> u64 {
    // SAFETY: `va` is one of this kernel's pages, mapped (some read-only).
    unsafe { core::ptr::read_volatile(va as *const u64) }
}

/// Maps kernel page `va` (one of this kernel's own) to frame `mfn` with `flags`.
fn map(va: u64, mfn: u64, flags: u64) -> i64 {
    hypercall(
        nr::HYPERVISOR_UPDATE_VA_MAPPING,
        [va, mfn << 12 | flags, UVMF_INVLPG, 0, 0],
    )
}

/// `mmuext_op` on the `count` items at `list` (no `done` pointer, `DOMID_SELF`).
fn ops_at(list: u64, count: u64) -> i64 {
    hypercall(
        nr::HYPERVISOR_MMUEXT_OP,
        [list, count, 0, u64::from(DOMID_SELF), 0],
    )
}

/// Writes two `mmuext_op` items at `at` (a writable page of this kernel's).
fn write_ops(at: u64, ops: [(u32, u64); 2]) {
    for (i, (cmd, arg)) in ops.into_iter().enumerate() {
        let item = at + 24 * i as u64;
        write_u64(item, u64::from(cmd));
        write_u64(item + 8, arg);
        write_u64(item + 16, 0);
    }
}

/// Linux's pair of items (kernel table `k`, user table `u`), from this kernel's stack.
fn pair(k: u64, u: u64) -> i64 {
    let ops = [
        guest_abi::memory::MmuextOp {
            cmd: MMUEXT_NEW_BASEPTR,
            arg1: k,
            arg2: 0,
        },
        guest_abi::memory::MmuextOp {
            cmd: MMUEXT_NEW_USER_BASEPTR,
            arg1: u,
            arg2: 0,
        },
    ];
    ops_at(ops.as_ptr() as u64, 2)
}

pub fn run_checks(mem: &Mem, si: &StartInfo, pages: &Pages) {
    let [k2, l3a, l2a, l1a, p1, p2] = [0u64, 1, 2, 3, 4, 5].map(|i| pages.first + i * 4096);
    for page in [k2, l3a, l2a, l1a, p1, p2] {
        for i in 0..512 {
            write_u64(page + i * 8, 0);
        }
    }
    let k1 = mem.mfn_of(si.pt_base);
    let u = mem.mfn_of(pages.user_l4);
    let data_page = mem.mfn_of(p2);
    // A second kernel table: the first one's entries (it maps everything the kernel runs
    // on, not SCRATCH).
    for i in 0..512 {
        write_u64(k2 + i * 8, read(si.pt_base + i * 8));
    }
    write_u64(l3a, mem.mfn_of(l2a) << 12 | PTE_P | PTE_RW | PTE_U);
    write_u64(l2a, mem.mfn_of(l1a) << 12 | PTE_P | PTE_RW | PTE_U);
    write_u64(l1a, mem.mfn_of(p1) << 12 | PTE_P | PTE_RW | PTE_U);
    // The lists: p1's are good, p2's second item is a data page (refused).
    write_ops(p1, [(MMUEXT_NEW_BASEPTR, k1), (MMUEXT_NEW_USER_BASEPTR, u)]);
    write_ops(
        p2,
        [
            (MMUEXT_NEW_BASEPTR, k1),
            (MMUEXT_NEW_USER_BASEPTR, data_page),
        ],
    );
    // Slot 2 of the kernel's table is empty (SCRATCH is this check's alone).
    let mut setup = read(si.pt_base + 2 * 8) as i64;
    for page in [k2, l3a, l2a, l1a] {
        setup |= map(page, mem.mfn_of(page), PTE_P | PTE_U);
    }
    setup |= mmuext(MMUEXT_PIN_L4_TABLE, mem.mfn_of(k2));
    setup |= mmu_update_one(
        (k1 << 12) | (2 * 8),
        mem.mfn_of(l3a) << 12 | PTE_P | PTE_RW | PTE_U,
    );

    // 16a. The list remapped between calls.
    let first = ops_at(SCRATCH, 2);
    let kept = ops_at(SCRATCH, 2);
    let to_p2 = map(SCRATCH, mem.mfn_of(p2), PTE_P | PTE_RW | PTE_U);
    let remapped = ops_at(SCRATCH, 2);
    let to_p1 = map(SCRATCH, mem.mfn_of(p1), PTE_P | PTE_RW | PTE_U);
    let back = ops_at(SCRATCH, 2);
    check(
        "base_switch_list_remapped",
        setup == 0
            && first == 0
            && kept == 0
            && to_p2 == 0
            && remapped < 0
            && to_p1 == 0
            && back == 0,
        format_args!(
            "set-up {setup}; calls {first} {kept}, remapped ({to_p2}) {remapped}, back \
             ({to_p1}) {back}"
        ),
    );

    // 16a'. With a second vCPU: the list remapped by it (on another pCPU when the machine
    // has two), after this pCPU's memo kept the first page.
    let warm = ops_at(SCRATCH, 2);
    if let Some(remote) =
        super::smp::remap_on_vcpu1(SCRATCH, mem.mfn_of(p2) << 12 | PTE_P | PTE_RW | PTE_U)
    {
        let after = ops_at(SCRATCH, 2);
        let local = map(SCRATCH, mem.mfn_of(p1), PTE_P | PTE_RW | PTE_U);
        let again = ops_at(SCRATCH, 2);
        check(
            "smp_base_switch_list_remapped_by_vcpu1",
            warm == 0 && remote == 0 && after < 0 && local == 0 && again == 0,
            format_args!(
                "call {warm}; remapped by vCPU 1 {remote}, call {after}; back {local}, call \
                 {again}"
            ),
        );
    }

    // 16b. The first item switches to k2, which does not map SCRATCH: the second item cannot
    // be read (Xen: EFAULT), the first is kept (k2 is the base: unpinned, it keeps its
    // type and cannot be mapped writable). Back to k1, k2 has no reference left.
    write_ops(
        p1,
        [
            (MMUEXT_NEW_BASEPTR, mem.mfn_of(k2)),
            (MMUEXT_NEW_USER_BASEPTR, u),
        ],
    );
    let through_new = ops_at(SCRATCH, 2);
    let unpin = mmuext(MMUEXT_UNPIN_TABLE, mem.mfn_of(k2));
    let in_use = map(k2, mem.mfn_of(k2), PTE_P | PTE_RW | PTE_U);
    let to_k1 = mmuext(MMUEXT_NEW_BASEPTR, k1);
    let free = map(k2, mem.mfn_of(k2), PTE_P | PTE_RW | PTE_U);
    check(
        "base_switch_second_item_through_new_table",
        through_new < 0 && unpin == 0 && in_use < 0 && to_k1 == 0 && free == 0,
        format_args!(
            "call {through_new} (the second item read through the new table must fail); k2 \
             unpinned {unpin}, mapped writable while the base {in_use}; back to k1 {to_k1}, \
             k2 writable then {free}"
        ),
    );

    // 16c. Linux's pair to k2 (pinned again: the short way) and back, the same table set
    // again in between; unpinned while the base, k2 keeps its type; after, none.
    let ro = map(k2, mem.mfn_of(k2), PTE_P | PTE_U);
    let pin = mmuext(MMUEXT_PIN_L4_TABLE, mem.mfn_of(k2));
    let k2_mfn = mem.mfn_of(k2);
    let switches = [pair(k2_mfn, u), pair(k2_mfn, u), pair(k2_mfn, u)];
    let unpin = mmuext(MMUEXT_UNPIN_TABLE, k2_mfn);
    let in_use = map(k2, k2_mfn, PTE_P | PTE_RW | PTE_U);
    let back = [pair(k1, u), pair(k1, u)];
    let free = map(k2, k2_mfn, PTE_P | PTE_RW | PTE_U);
    check(
        "base_switch_refs_balanced",
        ro == 0
            && pin == 0
            && switches == [0; 3]
            && unpin == 0
            && in_use < 0
            && back == [0; 2]
            && free == 0,
        format_args!(
            "k2 read-only {ro}, pinned {pin}; switches {switches:?}; unpinned {unpin}, \
             writable while the base {in_use}; back {back:?}; writable then {free}"
        ),
    );

    // 16d. A second user table u2 (the first one's entries; a second vCPU's context holds
    // the first): set, used once from user mode (this pCPU keeps its copy), set again and
    // again, unpinned while the user base (keeps its type), pinned again, dropped by
    // NEW_USER_BASEPTR 0, unpinned: no reference left.
    let masked = IretContext {
        rflags: 2,
        ..user_context(pages.syscall_offset)
    };
    let u2 = mem.mfn_of(pages.spare_user_l4);
    for i in 0..512 {
        write_u64(pages.spare_user_l4 + i * 8, read(pages.user_l4 + i * 8));
    }
    let ro = map(pages.spare_user_l4, u2, PTE_P | PTE_U);
    let pin = mmuext(MMUEXT_PIN_L4_TABLE, u2);
    let set = pair(k1, u2);
    let warm = iret_to_user(&masked, 0);
    let again = [pair(k1, u2), pair(k1, u2), pair(k1, u2)];
    let unpin = mmuext(MMUEXT_UNPIN_TABLE, u2);
    let in_use = map(pages.spare_user_l4, u2, PTE_P | PTE_RW | PTE_U);
    let repin = mmuext(MMUEXT_PIN_L4_TABLE, u2);
    let dropped = mmuext(MMUEXT_NEW_USER_BASEPTR, 0);
    let unpin2 = mmuext(MMUEXT_UNPIN_TABLE, u2);
    let free = map(pages.spare_user_l4, u2, PTE_P | PTE_RW | PTE_U);
    check(
        "user_base_refs_balanced",
        ro == 0
            && pin == 0
            && set == 0
            && warm == VEC_SYSCALL
            && again == [0; 3]
            && unpin == 0
            && in_use < 0
            && repin == 0
            && dropped == 0
            && unpin2 == 0
            && free == 0,
        format_args!(
            "u2 read-only {ro}, pinned {pin}, set {set}, used {warm:#x}; pairs {again:?};              unpinned {unpin}, writable while the user base {in_use}; pinned {repin},              dropped {dropped}, unpinned {unpin2}, writable then {free}"
        ),
    );

    // 16e. u2, plain memory now, has its slot-1 entry (the program) cut by `mmu_update` of
    // a plain frame; made an L4 and the user table again, a return to user mode faults at
    // the program's first instruction (this pCPU's copy of u2 from 16d is not used); the
    // entry put back, the program runs.
    let entry = read(pages.spare_user_l4 + 8);
    let cut = mmu_update_one(u2 << 12 | 8, 0);
    let ro = map(pages.spare_user_l4, u2, PTE_P | PTE_U);
    let pin = mmuext(MMUEXT_PIN_L4_TABLE, u2);
    let set = mmuext(MMUEXT_NEW_USER_BASEPTR, u2);
    // The TLB is the guest's to flush; the hypervisor's copies of the table are not.
    let flush = mmuext(MMUEXT_TLB_FLUSH_LOCAL, 0);
    let v_cut = iret_to_user(&masked, 0);
    let (w, _) = recorded();
    let faulted = v_cut == 14 && w[3] == USER_VA + pages.syscall_offset;
    let put_back = mmu_update_one(u2 << 12 | 8, entry);
    let v_back = iret_to_user(&masked, 0);
    // The first user table again (the hostile requests after use it), u2 no table.
    let restored = pair(k1, u) | mmuext(MMUEXT_UNPIN_TABLE, u2);
    check(
        "user_l4_rewritten_while_plain",
        entry & PTE_P != 0
            && cut == 0
            && ro == 0
            && pin == 0
            && set == 0
            && flush == 0
            && faulted
            && put_back == 0
            && v_back == VEC_SYSCALL
            && restored == 0,
        format_args!(
            "entry {entry:#x} cut {cut}; read-only {ro}, pinned {pin}, user base {set}; \
             return with the entry cut: vector {v_cut:#x} at {:#x}; put back {put_back}, \
             return: {v_back:#x}; the first table again {restored}",
            w[3]
        ),
    );

    // The kernel's table as it was: SCRATCH unmapped again.
    let undo = mmu_update_one((k1 << 12) | (2 * 8), 0);
    if undo != 0 {
        say!("xenpv: SCRATCH's L4 entry not removed: {undo}");
    }
}
