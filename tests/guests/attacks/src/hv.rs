//! The hypercalls the finding attacks need that the runtime does not wrap: grant-table
//! operations, `domctl` and `sysctl` (the attack guest is dom0, so it may call both), and a
//! throw-away domain whose one vCPU is runnable, so that a `sched_op(yield)` really switches
//! vCPUs.
//!
//! Every wrapper returns the raw `rax` (or the `GNTST_*` status), so that an attack can tell
//! exactly what the hypervisor said.

use guest_abi::domctl::{
    DomctlCreatedomain, DomctlGetdomaininfo, DomctlMaxMem, DomctlMaxVcpus, DomctlVcpucontext,
    DomctlXeniaWriteFrame, NoArgument, Payload, XEN_DOMCTL_CREATEDOMAIN, XEN_DOMCTL_DESTROYDOMAIN,
    XEN_DOMCTL_GETDOMAININFO, XEN_DOMCTL_GETVCPUCONTEXT, XEN_DOMCTL_MAX_MEM, XEN_DOMCTL_MAX_VCPUS,
    XEN_DOMCTL_SETVCPUCONTEXT, XEN_DOMCTL_UNPAUSEDOMAIN, XEN_DOMCTL_XENIA_READ_FRAME, XenDomctl,
};
use guest_abi::grant::{
    GNTTABOP_MAP_GRANT_REF, GNTTABOP_SETUP_TABLE, GNTTABOP_UNMAP_GRANT_REF, GnttabMapGrantRef,
    GnttabSetupTable, GnttabUnmapGrantRef, GrantHandle, GrantRef,
};
use guest_abi::hypercall::{
    HYPERVISOR_DOMCTL, HYPERVISOR_GRANT_TABLE_OP, HYPERVISOR_MMUEXT_OP, HYPERVISOR_SYSCTL,
    hypercall1, hypercall3, hypercall4,
};
use guest_abi::memory::{MMUEXT_PIN_L4_TABLE, MmuextOp, XENMEM_POPULATE_PHYSMAP};
use guest_abi::selectors::{KERNEL_CS, KERNEL_SS};
use guest_abi::sysctl::{
    SysctlPhysinfo, SysctlXeniaHeapInfo, XEN_SYSCTL_PHYSINFO, XEN_SYSCTL_XENIA_HEAP_INFO, XenSysctl,
};
use guest_abi::types::{DOMID_INVALID, DomId};
use guest_abi::vcpu_context::{VGCF_IN_KERNEL, VGCF_ONLINE, VcpuGuestContext};
use xenia_guest_rt::mm;

/// The attack guest's own domain id: it is booted as dom0.
pub const SELF_ID: DomId = 0;

// ---------------------------------------------------------------------------------------------
// Grant tables.

/// `grant_table_op(cmd, ops, ops.len())`; returns `rax`.
///
/// # Safety
///
/// The operations' effect (mapping or unmapping a page) must not change memory Rust code uses.
pub unsafe fn gnttab_op<T>(cmd: u32, ops: &mut [T]) -> i64 {
    // SAFETY: the operations are borrowed for the call; the caller vouches for the effect.
    unsafe {
        hypercall3(
            HYPERVISOR_GRANT_TABLE_OP,
            cmd.into(),
            ops.as_mut_ptr() as u64,
            ops.len() as u64,
        )
    }
}

/// `GNTTABOP_setup_table` for one frame of the guest's own table: the frame's MFN, or the
/// `rax`/status that refused it.
pub fn grant_frame() -> Result<u64, (i64, i16)> {
    let mut frame: u64 = 0;
    let mut op = [GnttabSetupTable {
        dom: SELF_ID,
        nr_frames: 1,
        status: 0x7777,
        frame_list: &raw mut frame as u64,
    }];
    // SAFETY: setup_table only writes the frame list, borrowed for the call.
    let ret = unsafe { gnttab_op(GNTTABOP_SETUP_TABLE, &mut op) };
    if ret == 0 && op[0].status == 0 {
        Ok(frame)
    } else {
        Err((ret, op[0].status))
    }
}

/// `GNTTABOP_map_grant_ref` of one operation: `(rax, status, handle)`.
///
/// # Safety
///
/// `host_addr` (with `GNTMAP_HOST_MAP`) must be an address no Rust code uses.
pub unsafe fn grant_map(
    host_addr: u64,
    flags: u32,
    gref: GrantRef,
    dom: DomId,
) -> (i64, i16, GrantHandle) {
    let mut op = [GnttabMapGrantRef {
        host_addr,
        flags,
        gref,
        dom,
        status: 0x7777,
        handle: 0xFFFF_FFFF,
        dev_bus_addr: 0,
    }];
    // SAFETY: as the caller vouches.
    let ret = unsafe { gnttab_op(GNTTABOP_MAP_GRANT_REF, &mut op) };
    (ret, op[0].status, op[0].handle)
}

/// `GNTTABOP_unmap_grant_ref` of one operation: `(rax, status)`.
///
/// # Safety
///
/// Nothing but the attack may use the grant mapping at `host_addr`.
pub unsafe fn grant_unmap(host_addr: u64, dev_bus_addr: u64, handle: GrantHandle) -> (i64, i16) {
    let mut op = [GnttabUnmapGrantRef {
        host_addr,
        dev_bus_addr,
        handle,
        status: 0x7777,
    }];
    // SAFETY: as the caller vouches.
    let ret = unsafe { gnttab_op(GNTTABOP_UNMAP_GRANT_REF, &mut op) };
    (ret, op[0].status)
}

/// The name of a `GNTST_*` status (guest-abi `grant`, Xen's `grant_table.h`).
pub fn gntst(s: i16) -> &'static str {
    const NAMES: [&str; 14] = [
        "GNTST_okay",
        "GNTST_general_error",
        "GNTST_bad_domain",
        "GNTST_bad_gntref",
        "GNTST_bad_handle",
        "GNTST_bad_virt_addr",
        "GNTST_bad_dev_addr",
        "GNTST_no_device_space",
        "GNTST_permission_denied",
        "GNTST_bad_page",
        "GNTST_bad_copy_arg",
        "GNTST_address_too_big",
        "GNTST_eagain",
        "GNTST_no_space",
    ];
    usize::try_from(-i32::from(s))
        .ok()
        .and_then(|i| NAMES.get(i).copied())
        .unwrap_or("unknown GNTST")
}

/// A version-1 grant entry in a grant frame mapped writable at `table_va`: frame and domid
/// first, then the flags after a release fence (Xen's `gnttab_grant_foreign_access_ref`).
pub fn grant(table_va: u64, r: GrantRef, domid: DomId, frame: u64, flags: u16) {
    use core::sync::atomic::{Ordering, fence};
    let w = (table_va + 8 * u64::from(r)) as *mut u32;
    // SAFETY: the caller maps the grant frame writable at table_va; entry r is in the page
    // (r < 512) and not in use, so the hypervisor does not write it meanwhile.
    unsafe {
        w.add(1).write_volatile(frame as u32);
        (w as *mut u16).add(1).write_volatile(domid);
    }
    fence(Ordering::Release);
    // SAFETY: as above.
    unsafe { (w as *mut u16).write_volatile(flags) };
}

/// The flags of grant entry `r` in the grant frame mapped at `table_va`.
pub fn grant_flags(table_va: u64, r: GrantRef) -> u16 {
    // SAFETY: as for `grant`; a read.
    unsafe { ((table_va + 8 * u64::from(r)) as *const u16).read_volatile() }
}

/// Ends grant `r` by clearing its flags (used only once no mapping of it is left).
pub fn ungrant(table_va: u64, r: GrantRef) {
    // SAFETY: as for `grant`.
    unsafe { ((table_va + 8 * u64::from(r)) as *mut u64).write_volatile(0) };
}

// ---------------------------------------------------------------------------------------------
// domctl and sysctl.

/// `domctl(op)`; returns `rax`.
pub fn domctl(op: &mut XenDomctl) -> i64 {
    // SAFETY: the hypervisor reads and writes back the structure, borrowed for the call; the
    // commands this module issues act on domains the attack created, never on itself.
    unsafe { hypercall1(HYPERVISOR_DOMCTL, op as *mut XenDomctl as u64) }
}

/// `domctl(cmd)` on `dom` with argument `arg`; returns `rax` and the structure as written back.
pub fn domctl_with(cmd: u32, dom: DomId, arg: &impl Payload) -> (i64, XenDomctl) {
    let mut op = XenDomctl::new(cmd, dom, arg);
    let ret = domctl(&mut op);
    (ret, op)
}

/// `sysctl(cmd)` with argument `arg`; returns `rax` and the structure as written back.
pub fn sysctl_with(cmd: u32, arg: &impl Payload) -> (i64, XenSysctl) {
    let mut op = XenSysctl::new(cmd, arg);
    // SAFETY: the hypervisor reads and writes back the structure, borrowed for the call.
    let ret = unsafe { hypercall1(HYPERVISOR_SYSCTL, &raw mut op as u64) };
    (ret, op)
}

/// Free machine frames, from `XEN_SYSCTL_physinfo`.
pub fn free_pages() -> Result<u64, i64> {
    let (ret, op) = sysctl_with(XEN_SYSCTL_PHYSINFO, &SysctlPhysinfo::default());
    if ret < 0 {
        return Err(ret);
    }
    Ok(op.payload::<SysctlPhysinfo>().free_pages)
}

/// The hypervisor's heap, from `XEN_SYSCTL_XENIA_HEAP_INFO` (which a hypervisor without it
/// answers with `ENOSYS`): bytes in use and bytes under the allocator (it grows from free
/// frames and keeps what it grew), or the sysctl's `rax`.
fn heap() -> Result<SysctlXeniaHeapInfo, i64> {
    let arg = SysctlXeniaHeapInfo {
        domid: DOMID_INVALID,
        ..Default::default()
    };
    let (ret, op) = sysctl_with(XEN_SYSCTL_XENIA_HEAP_INFO, &arg);
    if ret < 0 {
        return Err(ret);
    }
    Ok(op.payload())
}

/// Heap bytes in use (see [`heap`]).
pub fn heap_used() -> Result<u64, i64> {
    heap().map(|h| h.heap_used)
}

/// Heap bytes under the allocator (see [`heap`]).
pub fn heap_total() -> Result<u64, i64> {
    heap().map(|h| h.heap_total)
}

/// `createdomain` with `vcpus` vCPUs: the new id, or `rax`.
pub fn create_domain(vcpus: u32) -> Result<DomId, i64> {
    let cfg = DomctlCreatedomain {
        max_vcpus: vcpus,
        max_evtchn_port: 1023,
        max_grant_frames: 1,
        max_maptrack_frames: 1,
        ..Default::default()
    };
    let (ret, op) = domctl_with(XEN_DOMCTL_CREATEDOMAIN, 0, &cfg);
    if ret < 0 { Err(ret) } else { Ok(op.domain) }
}

/// `destroydomain`; returns `rax`.
pub fn destroy_domain(dom: DomId) -> i64 {
    domctl_with(XEN_DOMCTL_DESTROYDOMAIN, dom, &NoArgument).0
}

/// `getdomaininfo`: the record, or `rax`.
pub fn domain_info(dom: DomId) -> Result<DomctlGetdomaininfo, i64> {
    let (ret, op) = domctl_with(
        XEN_DOMCTL_GETDOMAININFO,
        dom,
        &DomctlGetdomaininfo::default(),
    );
    if ret < 0 { Err(ret) } else { Ok(op.payload()) }
}

/// `setvcpucontext` of vCPU 0 of `dom`; returns `rax`.
pub fn set_vcpu_context(dom: DomId, ctx: &VcpuGuestContext) -> i64 {
    let arg = DomctlVcpucontext {
        vcpu: 0,
        _pad: 0,
        ctxt: ctx as *const VcpuGuestContext as u64,
    };
    domctl_with(XEN_DOMCTL_SETVCPUCONTEXT, dom, &arg).0
}

/// `getvcpucontext` of vCPU 0 of `dom` into `ctx`; returns `rax`.
pub fn get_vcpu_context(dom: DomId, ctx: &mut VcpuGuestContext) -> i64 {
    let arg = DomctlVcpucontext {
        vcpu: 0,
        _pad: 0,
        ctxt: ctx as *mut VcpuGuestContext as u64,
    };
    domctl_with(XEN_DOMCTL_GETVCPUCONTEXT, dom, &arg).0
}

/// Word `index` of frame `mfn` of domain `dom`, read through `XEN_DOMCTL_XENIA_READ_FRAME`
/// (dom0's view of another domain's memory), or `rax`.
pub fn read_foreign_word(dom: DomId, mfn: u64, index: usize) -> Result<u64, i64> {
    let mut word: u64 = 0;
    let arg = DomctlXeniaWriteFrame {
        mfn,
        offset: (8 * index) as u32,
        len: 8,
        buffer: &raw mut word as u64,
    };
    let (ret, _) = domctl_with(XEN_DOMCTL_XENIA_READ_FRAME, dom, &arg);
    if ret < 0 { Err(ret) } else { Ok(word) }
}

/// `unpausedomain`; returns `rax`.
pub fn unpause(dom: DomId) -> i64 {
    domctl_with(XEN_DOMCTL_UNPAUSEDOMAIN, dom, &NoArgument).0
}

/// A domain the attack made: one vCPU, one frame (an empty L4, pinned).
pub struct Scratch {
    /// Its id.
    pub id: DomId,
    /// The machine frame of its L4.
    pub l4: u64,
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = destroy_domain(self.id);
    }
}

/// An address in the lower half that the scratch domain maps nowhere (its L4 is empty).
pub const SCRATCH_RIP: u64 = 0x40_0000;

/// Creates a paused domain with one vCPU and one frame, pinned (foreign) as its empty L4:
/// enough for `setvcpucontext` to accept a context. Says which step failed, and its `rax`.
pub fn scratch_domain() -> Result<Scratch, (&'static str, i64)> {
    let id = create_domain(1).map_err(|r| ("createdomain", r))?;
    // Destroyed on every early return from here.
    let mut d = Scratch { id, l4: 0 };
    let ret = domctl_with(XEN_DOMCTL_MAX_VCPUS, id, &DomctlMaxVcpus { max: 1 }).0;
    if ret < 0 {
        return Err(("max_vcpus", ret));
    }
    // Four pages are plenty for one frame.
    let ret = domctl_with(XEN_DOMCTL_MAX_MEM, id, &DomctlMaxMem { max_memkb: 16 }).0;
    if ret < 0 {
        return Err(("max_mem", ret));
    }
    let mut extents = [0u64];
    // SAFETY: populating another domain changes nothing of this one.
    let ret = unsafe { mm::reservation(XENMEM_POPULATE_PHYSMAP, &mut extents, id) };
    if ret != 1 {
        return Err(("populate_physmap", ret));
    }
    let l4 = extents[0];
    let op = [MmuextOp {
        cmd: MMUEXT_PIN_L4_TABLE,
        arg1: l4,
        arg2: 0,
    }];
    let mut done: u32 = 0;
    // SAFETY: pins a frame of the scratch domain (zeroed by populate) as its L4; nothing of
    // this domain changes.
    let ret = unsafe {
        hypercall4(
            HYPERVISOR_MMUEXT_OP,
            op.as_ptr() as u64,
            1,
            &raw mut done as u64,
            u64::from(id),
        )
    };
    if ret < 0 {
        return Err(("pin its L4", ret));
    }
    d.l4 = l4;
    Ok(d)
}

/// A context the hypervisor must accept for a scratch domain: ring 1 at [`SCRATCH_RIP`]
/// (which faults at once when it runs: nothing is mapped), on the given L4, with `flags`.
pub fn scratch_context(l4: u64, flags: u64) -> VcpuGuestContext {
    let mut ctx = VcpuGuestContext::new();
    ctx.flags = VGCF_IN_KERNEL | flags;
    ctx.user_regs.cs = KERNEL_CS;
    ctx.user_regs.ss = KERNEL_SS;
    ctx.user_regs.rip = SCRATCH_RIP;
    ctx.user_regs.rsp = SCRATCH_RIP + 0x1000;
    ctx.kernel_ss = u64::from(KERNEL_SS);
    ctx.kernel_sp = SCRATCH_RIP + 0x2000;
    ctx.set_l4_mfn(guest_abi::types::Mfn(l4));
    ctx
}

/// A scratch domain whose vCPU is online and unpaused: the next `sched_op(yield)` of this
/// guest switches to it (it then faults on its first instruction and is crashed).
pub fn runnable_domain() -> Result<Scratch, (&'static str, i64)> {
    runnable_domain_with(|_| {})
}

/// [`runnable_domain`] with its context changed by `edit` first (registers to look for).
pub fn runnable_domain_with(
    edit: impl FnOnce(&mut VcpuGuestContext),
) -> Result<Scratch, (&'static str, i64)> {
    let d = scratch_domain()?;
    let mut ctx = scratch_context(d.l4, VGCF_ONLINE);
    edit(&mut ctx);
    let ret = set_vcpu_context(d.id, &ctx);
    if ret < 0 {
        return Err(("setvcpucontext", ret));
    }
    let ret = unpause(d.id);
    if ret < 0 {
        return Err(("unpausedomain", ret));
    }
    Ok(d)
}
