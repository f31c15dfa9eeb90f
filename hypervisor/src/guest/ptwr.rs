//! Writable page tables: `vm_assist(cmd, type)` and the #PF side of Xen's `ptwr` emulation
//! (the decoding is `xenia_core::ptwr`, host-tested).
//!
//! With `VMASST_TYPE_writable_pagetables` on, a write by the guest kernel to an L1 page table
//! of its own, which it can map only read-only, faults; [`emulate`] reads the instruction at
//! the fault, decodes it, and, for the forms a kernel uses on an entry, sets the entry through
//! the frame table's `update_entry` — the same checks and references as `mmu_update` — and
//! steps over the instruction. Anything else, including an entry the frame table refuses, is
//! the guest's #PF, delivered as before. Xen does the same for L1 tables only
//! (`ptwr_do_page_fault`): higher levels change through `mmu_update`.

use guest_abi::errno::Errno;
use guest_abi::memory::{
    VMASST_CMD_DISABLE, VMASST_CMD_ENABLE, VMASST_TYPE_4GB_SEGMENTS,
    VMASST_TYPE_4GB_SEGMENTS_NOTIFY, VMASST_TYPE_PAE_EXTENDED_CR3,
    VMASST_TYPE_RUNSTATE_UPDATE_FLAG, VMASST_TYPE_WRITABLE_PAGETABLES,
};

use super::context::{Hc, HcResult, Ret};
use super::mem::GuestPtr;
use crate::arch::x86_64::frame::TrapFrame;
use crate::mm::frame_table::PageType;
use crate::mm::{Mfn, PAGE_SIZE, ft, physmem};
use crate::ptwr::{self as pw, Regs};

/// The writable page tables assist.
const VALID: u64 = 1 << VMASST_TYPE_WRITABLE_PAGETABLES;

/// The assists a domain may turn on (Xen's `VM_ASSIST_VALID` for 64-bit PV guests, less
/// those Xenia lacks): writable page tables, the run-state update flag
/// (`vcpu_op::publish_runstate`), and the three 32-bit assists Linux turns on, which change
/// nothing for a 64-bit guest.
const ACCEPTED: u64 = VALID
    | (1 << VMASST_TYPE_RUNSTATE_UPDATE_FLAG)
    | (1 << VMASST_TYPE_4GB_SEGMENTS)
    | (1 << VMASST_TYPE_4GB_SEGMENTS_NOTIFY)
    | (1 << VMASST_TYPE_PAE_EXTENDED_CR3);

/// `vm_assist(cmd, type)` (Xen's `do_vm_assist`): `EINVAL` for a type Xenia does not offer,
/// `ENOSYS` for an unknown command.
pub fn vm_assist(cx: &mut Hc) -> HcResult {
    let (cmd, ty) = (cx.arg(0), cx.arg(1));
    if ty >= 64 || ACCEPTED & (1 << ty) == 0 {
        return Err(Errno::EINVAL);
    }
    let d = cx.me();
    match u32::try_from(cmd) {
        Ok(VMASST_CMD_ENABLE) => d.vm_assist |= 1 << ty,
        Ok(VMASST_CMD_DISABLE) => d.vm_assist &= !(1 << ty),
        _ => return Err(Errno::ENOSYS),
    }
    Ok(Ret::Value(0))
}

/// #PF error-code bits (Intel SDM Vol. 3A §4.7).
const PF_PRESENT: u64 = 1 << 0;
const PF_WRITE: u64 = 1 << 1;
const PF_USER: u64 = 1 << 2;
const PF_RSVD: u64 = 1 << 3;
const PF_FETCH: u64 = 1 << 4;

/// The guest's registers as `xenia_core::ptwr` numbers them.
pub(super) struct Frame<'a>(pub(super) &'a mut TrapFrame);

impl Regs for Frame<'_> {
    fn get(&self, n: u8) -> u64 {
        let f = &*self.0;
        [
            f.rax, f.rcx, f.rdx, f.rbx, f.rsp, f.rbp, f.rsi, f.rdi, f.r8, f.r9, f.r10, f.r11,
            f.r12, f.r13, f.r14, f.r15,
        ][usize::from(n & 15)]
    }
    fn set(&mut self, n: u8, value: u64) {
        let f = &mut *self.0;
        *match n & 15 {
            0 => &mut f.rax,
            1 => &mut f.rcx,
            2 => &mut f.rdx,
            3 => &mut f.rbx,
            4 => &mut f.rsp,
            5 => &mut f.rbp,
            6 => &mut f.rsi,
            7 => &mut f.rdi,
            8 => &mut f.r8,
            9 => &mut f.r9,
            10 => &mut f.r10,
            11 => &mut f.r11,
            12 => &mut f.r12,
            13 => &mut f.r13,
            14 => &mut f.r14,
            _ => &mut f.r15,
        } = value;
    }
    fn rflags(&self) -> u64 {
        self.0.rflags
    }
    fn set_rflags(&mut self, value: u64) {
        self.0.rflags = value;
    }
}

/// Emulates the write to a page table that raised this #PF at `cr2`, if it is one (see the
/// module docs); `true` if done (the guest resumes after the instruction), `false` if the
/// fault is to be delivered.
pub fn emulate(cx: &mut Hc, cr2: u64) -> bool {
    let error = cx.regs().error_code;
    // A supervisor-mode write to a present, read-only page, by a guest kernel (not its user
    // mode) that asked for the assist.
    if cx.me_ref().vm_assist & VALID == 0
        || error & (PF_PRESENT | PF_WRITE | PF_USER | PF_RSVD | PF_FETCH) != (PF_PRESENT | PF_WRITE)
        || super::xenpv::caller_in_user_mode(cx)
    {
        return false;
    }
    let me = cx.id();
    let space = cx.space();
    let Ok(phys) = space.translate(cr2, false, false) else {
        return false;
    };
    let table = Mfn::from_phys(phys);
    if !ft::owned_by(table, me) || ft::current_type(table) != Some(PageType::L1) {
        return false;
    }
    // The instruction: up to 15 bytes, fewer if the next page cannot be read.
    let rip = cx.regs().rip;
    let mut code = [0u8; pw::MAX_LEN];
    let first = (PAGE_SIZE - rip % PAGE_SIZE).min(pw::MAX_LEN as u64) as usize;
    if space
        .read_bytes(GuestPtr::new(rip), &mut code[..first])
        .is_err()
    {
        return false;
    }
    // The next page, unless `rip` is on the last page of the address space: an instruction
    // there has only the bytes before the end (red team, session 10: `rip + first` overflowed,
    // a panic in builds with overflow checks).
    let mut have = first;
    if first < pw::MAX_LEN
        && let Some(next) = rip.checked_add(first as u64)
        && space
            .read_bytes(GuestPtr::new(next), &mut code[first..])
            .is_ok()
    {
        have = pw::MAX_LEN;
    }
    let Ok(insn) = pw::decode(&code[..have]) else {
        return false;
    };
    // A one-byte operation may name any byte of its entry; the others the whole entry.
    let offset = (cr2 % 8) as u32;
    if offset != 0 && !insn.op.is_byte() {
        return false;
    }
    let index = ((phys % PAGE_SIZE) / 8) as usize;
    let mut old = [0u8; 8];
    physmem::read(table, index * 8, &mut old);
    let old = u64::from_le_bytes(old);
    let saved = *cx.regs();
    let new = pw::apply(insn.op, old, offset, &mut Frame(cx.regs()));
    if let Some(new) = new {
        let r = ft::with(|t, mem| t.update_entry(mem, table, index, new, me, false));
        if let Err(e) = r {
            log::debug!(target: "mm",
                "d{me}: write of {new:#x} to L1 {:#x}[{index}] at rip {rip:#x} refused: {e:?}",
                table.0);
            *cx.regs() = saved;
            return false;
        }
    }
    cx.regs().rip = rip.wrapping_add(insn.len as u64);
    true
}
