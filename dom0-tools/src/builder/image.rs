//! What the builder writes into a new domain's frames, computed without
//! touching them: the `start_info` page, the bootstrap page tables, and
//! vCPU 0's initial context.

use alloc::collections::BTreeMap;
use alloc::vec;
use alloc::vec::Vec;
use core::mem::offset_of;

use guest_abi::selectors::{KERNEL_CS, KERNEL_DS, KERNEL_SS};
use guest_abi::start_info::StartInfo;
use guest_abi::trap::RFLAGS_IF;
use guest_abi::types::{Mfn, PAGE_SIZE, Pfn};
use guest_abi::vcpu_context::{VGCF_IN_KERNEL, VGCF_ONLINE, VcpuGuestContext};
use xenia_pvboot::layout::{PAGE, StartOfDay, Target};

use super::BuildError;

/// Present bit of a page-table entry (Intel SDM Vol. 3A §4.5, Tables 4-15
/// to 4-20).
pub const PTE_PRESENT: u64 = 1 << 0;
/// Read/write bit: writes allowed through this entry.
pub const PTE_WRITABLE: u64 = 1 << 1;
/// User/supervisor bit: ring 3 may use this entry.
pub const PTE_USER: u64 = 1 << 2;

/// `rflags` bit 1, reserved and always 1 (Intel SDM Vol. 1 §3.4.3).
const RFLAGS_FIXED: u64 = 1 << 1;

/// Entries in a page table.
const ENTRIES: usize = 512;

/// The bytes of a `start_info` page's structure (Xen's layout,
/// little-endian), for copying into the guest's frame.
pub fn start_info_bytes(si: &StartInfo) -> Vec<u8> {
    // Destructured so that a field added to `StartInfo` fails to compile here
    // instead of being left out of the page.
    let StartInfo {
        magic,
        nr_pages,
        shared_info,
        flags,
        store_mfn,
        store_evtchn,
        console,
        pt_base,
        nr_pt_frames,
        mfn_list,
        mod_start,
        mod_len,
        cmd_line,
        first_p2m_pfn,
        nr_p2m_frames,
    } = si;
    let mut out = vec![0u8; core::mem::size_of::<StartInfo>()];
    let mut put = |offset: usize, bytes: &[u8]| {
        out[offset..offset + bytes.len()].copy_from_slice(bytes);
    };
    put(offset_of!(StartInfo, magic), magic);
    put(offset_of!(StartInfo, nr_pages), &nr_pages.to_le_bytes());
    put(
        offset_of!(StartInfo, shared_info),
        &shared_info.to_le_bytes(),
    );
    put(offset_of!(StartInfo, flags), &flags.to_le_bytes());
    put(offset_of!(StartInfo, store_mfn), &store_mfn.0.to_le_bytes());
    put(
        offset_of!(StartInfo, store_evtchn),
        &store_evtchn.to_le_bytes(),
    );
    let console_at = offset_of!(StartInfo, console);
    put(console_at, &console.raw[0].to_le_bytes());
    put(console_at + 8, &console.raw[1].to_le_bytes());
    put(offset_of!(StartInfo, pt_base), &pt_base.to_le_bytes());
    put(
        offset_of!(StartInfo, nr_pt_frames),
        &nr_pt_frames.to_le_bytes(),
    );
    put(offset_of!(StartInfo, mfn_list), &mfn_list.to_le_bytes());
    put(offset_of!(StartInfo, mod_start), &mod_start.to_le_bytes());
    put(offset_of!(StartInfo, mod_len), &mod_len.to_le_bytes());
    put(offset_of!(StartInfo, cmd_line), cmd_line);
    put(
        offset_of!(StartInfo, first_p2m_pfn),
        &first_p2m_pfn.0.to_le_bytes(),
    );
    put(
        offset_of!(StartInfo, nr_p2m_frames),
        &nr_p2m_frames.to_le_bytes(),
    );
    out
}

/// The frame backing pseudo-physical frame `pfn`.
pub fn mfn_of(p2m: &[Mfn], pfn: Pfn) -> Result<Mfn, BuildError> {
    usize::try_from(pfn.0)
        .ok()
        .and_then(|i| p2m.get(i).copied())
        .ok_or(BuildError::Internal(
            "the layout names a frame beyond the domain's memory",
        ))
}

/// The bootstrap page tables as they must be written: for each table frame
/// (in frame order), its 512 entries. Follows the same rules as the
/// hypervisor's dom0 builder: upper-level entries present, writable and
/// user (the leaves decide), the tables themselves mapped read-only, the
/// `shared_info` page writable and supervisor-only, everything up to the
/// end of the stack supervisor-only and the padding after it user-accessible
/// (guest-abi's porting guide).
pub fn page_tables(
    sod: &StartOfDay,
    p2m: &[Mfn],
    shared_info: Mfn,
) -> Result<BTreeMap<Pfn, Vec<u64>>, BuildError> {
    let mut tables: BTreeMap<Pfn, Vec<u64>> = BTreeMap::new();
    for e in sod.table_entries() {
        let value = match e.target {
            Target::Table(child) => {
                mfn_of(p2m, child)?.addr() | PTE_PRESENT | PTE_WRITABLE | PTE_USER
            }
            Target::SharedInfo => shared_info.addr() | PTE_PRESENT | PTE_WRITABLE,
            Target::Page { pfn, writable } => {
                let va = sod.virt_start() + pfn.0 * PAGE;
                let user = if va >= sod.stack.end { PTE_USER } else { 0 };
                let rw = if writable { PTE_WRITABLE } else { 0 };
                mfn_of(p2m, pfn)?.addr() | PTE_PRESENT | rw | user
            }
        };
        let table = tables.entry(e.table).or_insert_with(|| vec![0; ENTRIES]);
        *table
            .get_mut(e.index)
            .ok_or(BuildError::Internal("a page-table index beyond 511"))? = value;
    }
    Ok(tables)
}

/// The bytes of one page table.
pub fn table_bytes(entries: &[u64]) -> Vec<u8> {
    let mut out = Vec::with_capacity(PAGE_SIZE);
    for e in entries {
        out.extend_from_slice(&e.to_le_bytes());
    }
    out
}

/// vCPU 0's context at start of day, the entry state of guest-abi's porting
/// guide: kernel mode, online, `rip` the entry point, `rsp` the top of the
/// bootstrap stack, `rsi` the `start_info` address, every other register 0,
/// the ring-1 selectors, `IF` set (the real one; events stay masked), the
/// bootstrap L4 in `ctrlreg[3]`, and no trap table, callbacks or ring-1
/// stack yet.
pub fn initial_context(entry: u64, sod: &StartOfDay, l4: Mfn) -> VcpuGuestContext {
    let mut ctx = VcpuGuestContext::new();
    ctx.flags = VGCF_IN_KERNEL | VGCF_ONLINE;
    let regs = &mut ctx.user_regs;
    regs.rip = entry;
    regs.rsp = sod.stack_top();
    regs.rsi = sod.start_info;
    regs.cs = KERNEL_CS;
    regs.ss = KERNEL_SS;
    regs.ds = KERNEL_DS;
    regs.es = KERNEL_DS;
    regs.rflags = RFLAGS_IF | RFLAGS_FIXED;
    regs.saved_upcall_mask = 1;
    ctx.set_l4_mfn(l4);
    ctx
}

#[cfg(test)]
mod tests {
    use super::*;
    use guest_abi::start_info::{START_INFO_MAGIC, StartInfoConsole};

    fn u64_at(bytes: &[u8], off: usize) -> u64 {
        let mut raw = [0u8; 8];
        raw.copy_from_slice(&bytes[off..off + 8]);
        u64::from_le_bytes(raw)
    }

    #[test]
    fn start_info_bytes_use_xens_offsets() {
        let mut si = StartInfo::new();
        si.nr_pages = 0x4000;
        si.shared_info = 0x1234_5000;
        si.flags = 0xA5;
        si.console = StartInfoConsole::domu(Mfn(0x777), 5);
        si.pt_base = 0xFFFF_FFFF_8040_0000;
        si.nr_pt_frames = 7;
        si.mfn_list = 0xFFFF_FFFF_8030_0000;
        si.mod_start = 0xFFFF_FFFF_8020_0000;
        si.mod_len = 12345;
        si.set_cmdline(b"console=hvc0");
        let b = start_info_bytes(&si);
        assert_eq!(b.len(), 1168);
        assert_eq!(&b[..START_INFO_MAGIC.len()], START_INFO_MAGIC);
        assert_eq!(u64_at(&b, 32), 0x4000);
        assert_eq!(u64_at(&b, 40), 0x1234_5000);
        assert_eq!(b[48], 0xA5);
        assert_eq!(u64_at(&b, 56), 0, "no xenstore");
        assert_eq!(u64_at(&b, 72), 0x777);
        assert_eq!(u64_at(&b, 80), 5);
        assert_eq!(u64_at(&b, 88), 0xFFFF_FFFF_8040_0000);
        assert_eq!(u64_at(&b, 96), 7);
        assert_eq!(u64_at(&b, 104), 0xFFFF_FFFF_8030_0000);
        assert_eq!(u64_at(&b, 112), 0xFFFF_FFFF_8020_0000);
        assert_eq!(u64_at(&b, 120), 12345);
        assert_eq!(&b[128..141], b"console=hvc0\0");
        assert_eq!(u64_at(&b, 1152), 0);
    }
}
