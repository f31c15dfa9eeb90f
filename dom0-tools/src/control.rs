//! The hypercall arguments behind [`Hypervisor`](crate::hypervisor::Hypervisor),
//! and the decoding of what comes back.
//!
//! Each function here builds the structure one operation passes to the
//! hypervisor; the caller (the dom0 kernel, or `xl` through
//! `/dev/xen/privcmd`) issues the hypercall and, where there is an answer,
//! decodes it with the functions at the end. Nothing here issues a
//! hypercall, so all of it is host-tested.

use alloc::vec::Vec;

use guest_abi::domctl::{
    DomctlGetdomaininfo, DomctlGetvcpuinfo, DomctlHypercallInit, DomctlMaxMem, DomctlMaxVcpus,
    DomctlSchedCredit, DomctlSchedulerOp, DomctlVcpucontext, DomctlXeniaGuestMode, NoArgument,
    Payload, XEN_DOMCTL_CREATEDOMAIN, XEN_DOMCTL_DESTROYDOMAIN, XEN_DOMCTL_GETDOMAININFO,
    XEN_DOMCTL_GETVCPUCONTEXT, XEN_DOMCTL_GETVCPUINFO, XEN_DOMCTL_HYPERCALL_INIT,
    XEN_DOMCTL_MAX_MEM, XEN_DOMCTL_MAX_VCPUS, XEN_DOMCTL_PAUSEDOMAIN, XEN_DOMCTL_SCHEDOP_GETINFO,
    XEN_DOMCTL_SCHEDOP_PUTINFO, XEN_DOMCTL_SCHEDULER_OP, XEN_DOMCTL_SETVCPUCONTEXT,
    XEN_DOMCTL_UNPAUSEDOMAIN, XEN_DOMCTL_XENIA_SET_GUEST_MODE, XEN_DOMINF_BLOCKED,
    XEN_DOMINF_DYING, XEN_DOMINF_PAUSED, XEN_DOMINF_RUNNING, XenDomainHandle, XenDomctl,
};
use guest_abi::event::EvtchnAllocUnbound;
use guest_abi::memory::{
    MMUEXT_PIN_L1_TABLE, MMUEXT_PIN_L2_TABLE, MMUEXT_PIN_L3_TABLE, MMUEXT_PIN_L4_TABLE,
    MemoryReservation, MmuextOp,
};
use guest_abi::sysctl::{
    SysctlGetdomaininfolist, SysctlPhysinfo, SysctlReadconsole, SysctlSchedId,
    XEN_SYSCTL_GETDOMAININFOLIST, XEN_SYSCTL_PHYSINFO, XEN_SYSCTL_READCONSOLE, XEN_SYSCTL_SCHED_ID,
    XenSysctl,
};
use guest_abi::types::{DomId, Mfn, PAGE_SHIFT};
use xenia_pvboot::layout::Level;

use crate::hypervisor::CreateConfig;

// --- domctl requests. ---

/// `createdomain`, letting the hypervisor choose the id (it comes back in
/// [`XenDomctl::domain`]; see [`created_domain`]).
pub fn createdomain(cfg: &CreateConfig) -> XenDomctl {
    XenDomctl::new(XEN_DOMCTL_CREATEDOMAIN, 0, &cfg.to_domctl())
}

/// `destroydomain`.
pub fn destroydomain(dom: DomId) -> XenDomctl {
    XenDomctl::new(XEN_DOMCTL_DESTROYDOMAIN, dom, &NoArgument)
}

/// `pausedomain`.
pub fn pausedomain(dom: DomId) -> XenDomctl {
    XenDomctl::new(XEN_DOMCTL_PAUSEDOMAIN, dom, &NoArgument)
}

/// `unpausedomain`.
pub fn unpausedomain(dom: DomId) -> XenDomctl {
    XenDomctl::new(XEN_DOMCTL_UNPAUSEDOMAIN, dom, &NoArgument)
}

/// `getdomaininfo` (decode the answer with [`domain_info`]).
pub fn getdomaininfo(dom: DomId) -> XenDomctl {
    XenDomctl::new(
        XEN_DOMCTL_GETDOMAININFO,
        dom,
        &DomctlGetdomaininfo::default(),
    )
}

/// `max_mem` with the limit in KiB.
pub fn max_mem(dom: DomId, kib: u64) -> XenDomctl {
    XenDomctl::new(XEN_DOMCTL_MAX_MEM, dom, &DomctlMaxMem { max_memkb: kib })
}

/// `max_vcpus`.
pub fn max_vcpus(dom: DomId, n: u32) -> XenDomctl {
    XenDomctl::new(XEN_DOMCTL_MAX_VCPUS, dom, &DomctlMaxVcpus { max: n })
}

/// `hypercall_init`.
pub fn hypercall_init(dom: DomId, gmfn: u64) -> XenDomctl {
    XenDomctl::new(
        XEN_DOMCTL_HYPERCALL_INIT,
        dom,
        &DomctlHypercallInit { gmfn },
    )
}

/// `xenia_set_guest_mode` (Xenia's own domctl).
pub fn set_guest_mode(dom: DomId, mode: u32) -> XenDomctl {
    XenDomctl::new(
        XEN_DOMCTL_XENIA_SET_GUEST_MODE,
        dom,
        &DomctlXeniaGuestMode { mode, _pad: 0 },
    )
}

/// `scheduler_op` `putinfo` for the credit scheduler.
pub fn sched_credit_put(dom: DomId, credit: DomctlSchedCredit) -> XenDomctl {
    let op = DomctlSchedulerOp::credit(XEN_DOMCTL_SCHEDOP_PUTINFO, credit);
    XenDomctl::new(XEN_DOMCTL_SCHEDULER_OP, dom, &op)
}

/// `scheduler_op` `getinfo` for the credit scheduler (decode the answer with
/// [`sched_credit`]).
pub fn sched_credit_get(dom: DomId) -> XenDomctl {
    let op = DomctlSchedulerOp::credit(XEN_DOMCTL_SCHEDOP_GETINFO, DomctlSchedCredit::default());
    XenDomctl::new(XEN_DOMCTL_SCHEDULER_OP, dom, &op)
}

/// `setvcpucontext` for `vcpu`, the context being at virtual address
/// `ctxt` in the caller.
pub fn setvcpucontext(dom: DomId, vcpu: u32, ctxt: u64) -> XenDomctl {
    let arg = DomctlVcpucontext {
        vcpu,
        _pad: 0,
        ctxt,
    };
    XenDomctl::new(XEN_DOMCTL_SETVCPUCONTEXT, dom, &arg)
}

/// `getvcpucontext` for `vcpu`, into the buffer at virtual address `ctxt`.
pub fn getvcpucontext(dom: DomId, vcpu: u32, ctxt: u64) -> XenDomctl {
    let arg = DomctlVcpucontext {
        vcpu,
        _pad: 0,
        ctxt,
    };
    XenDomctl::new(XEN_DOMCTL_GETVCPUCONTEXT, dom, &arg)
}

/// `getvcpuinfo` for `vcpu` (decode with `reply.payload::<DomctlGetvcpuinfo>()`).
pub fn getvcpuinfo(dom: DomId, vcpu: u32) -> XenDomctl {
    let arg = DomctlGetvcpuinfo {
        vcpu,
        ..DomctlGetvcpuinfo::default()
    };
    XenDomctl::new(XEN_DOMCTL_GETVCPUINFO, dom, &arg)
}

// --- Other hypercall arguments the builder's operations need. ---

/// `XENMEM_populate_physmap` for `nr` single pages of `dom`, the PFN array
/// (replaced by the machine frames) at virtual address `extent_start`.
pub fn populate_physmap(dom: DomId, extent_start: u64, nr: u64) -> MemoryReservation {
    MemoryReservation {
        extent_start,
        nr_extents: nr,
        extent_order: 0,
        mem_flags: 0,
        domid: dom,
    }
}

/// The `mmuext_op` command that pins a table of `level`.
pub const fn pin_command(level: Level) -> u32 {
    match level {
        Level::L1 => MMUEXT_PIN_L1_TABLE,
        Level::L2 => MMUEXT_PIN_L2_TABLE,
        Level::L3 => MMUEXT_PIN_L3_TABLE,
        Level::L4 => MMUEXT_PIN_L4_TABLE,
    }
}

/// The `mmuext_op` request that pins the table in `mfn` (issued with
/// `foreigndom` = the domain being built).
pub const fn pin_table(mfn: Mfn, level: Level) -> MmuextOp {
    MmuextOp {
        cmd: pin_command(level),
        arg1: mfn.0,
        arg2: 0,
    }
}

/// `EVTCHNOP_alloc_unbound`: a port of `dom` that `remote` may bind.
pub const fn alloc_unbound(dom: DomId, remote: DomId) -> EvtchnAllocUnbound {
    EvtchnAllocUnbound {
        dom,
        remote_dom: remote,
        port: 0,
    }
}

// --- sysctl requests. ---

/// `physinfo` (decode with `reply.payload::<SysctlPhysinfo>()`).
pub fn physinfo() -> XenSysctl {
    XenSysctl::new(XEN_SYSCTL_PHYSINFO, &SysctlPhysinfo::default())
}

/// `sched_id`.
pub fn sched_id() -> XenSysctl {
    XenSysctl::new(XEN_SYSCTL_SCHED_ID, &SysctlSchedId::default())
}

/// `getdomaininfolist` from `first`, for up to `max` records in the buffer
/// at virtual address `buffer` (decode it with [`domain_list`]).
pub fn getdomaininfolist(first: DomId, max: u32, buffer: u64) -> XenSysctl {
    let arg = SysctlGetdomaininfolist {
        first_domain: first,
        max_domains: max,
        buffer,
        ..SysctlGetdomaininfolist::default()
    };
    XenSysctl::new(XEN_SYSCTL_GETDOMAININFOLIST, &arg)
}

/// `readconsole` into `count` bytes at virtual address `buffer`: from
/// `index` when `Some` (an incremental read, continuing a previous one),
/// else from the oldest byte held; `clear` empties the ring afterwards.
pub fn readconsole(index: Option<u32>, clear: bool, buffer: u64, count: u32) -> XenSysctl {
    let arg = SysctlReadconsole {
        clear: u8::from(clear),
        incremental: u8::from(index.is_some()),
        index: index.unwrap_or(0),
        buffer,
        count,
        ..SysctlReadconsole::default()
    };
    XenSysctl::new(XEN_SYSCTL_READCONSOLE, &arg)
}

// --- Decoding answers. ---

/// The id a successful `createdomain` gave.
pub const fn created_domain(reply: &XenDomctl) -> DomId {
    reply.domain
}

/// The credit parameters a `scheduler_op` `getinfo` returned.
pub fn sched_credit(reply: &XenDomctl) -> DomctlSchedCredit {
    reply.payload::<DomctlSchedulerOp>().credit_params()
}

/// The records a `getdomaininfolist` wrote: the first `num_domains` records
/// of `buffer` (fewer if the buffer is shorter).
pub fn domain_list(buffer: &[u8], num_domains: u32) -> Vec<DomctlGetdomaininfo> {
    buffer
        .chunks_exact(core::mem::size_of::<DomctlGetdomaininfo>())
        .take(num_domains as usize)
        .filter_map(DomctlGetdomaininfo::decode_prefix)
        .collect()
}

/// A domain as `xl list` describes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DomainInfo {
    /// Its id.
    pub dom: DomId,
    /// Its UUID.
    pub handle: XenDomainHandle,
    /// Some vCPU is on a pCPU now.
    pub running: bool,
    /// Every vCPU waits for an event.
    pub blocked: bool,
    /// Paused by the toolstack.
    pub paused: bool,
    /// The guest's shutdown reason (`SHUTDOWN_*`), once it has shut down.
    pub shutdown: Option<u32>,
    /// Being destroyed.
    pub dying: bool,
    /// Pages it owns.
    pub tot_pages: u64,
    /// Most pages it may own.
    pub max_pages: u64,
    /// vCPUs up.
    pub online_vcpus: u32,
    /// Highest vCPU id ([`XEN_INVALID_MAX_VCPU_ID`] with none): xentop counts the vCPUs
    /// as this plus one.
    ///
    /// [`XEN_INVALID_MAX_VCPU_ID`]: guest_abi::domctl::XEN_INVALID_MAX_VCPU_ID
    pub max_vcpu_id: u32,
    /// XSM label (xentop's SSID column): 0 under Xenia.
    pub ssidref: u32,
    /// CPU time consumed, in nanoseconds.
    pub cpu_time_ns: u64,
    /// Its `shared_info` frame.
    pub shared_info: Mfn,
}

/// Decodes a `getdomaininfo` answer (or a `getdomaininfolist` record).
pub fn domain_info(info: &DomctlGetdomaininfo) -> DomainInfo {
    DomainInfo {
        dom: info.domain,
        handle: info.handle,
        running: info.flags & XEN_DOMINF_RUNNING != 0,
        blocked: info.flags & XEN_DOMINF_BLOCKED != 0,
        paused: info.flags & XEN_DOMINF_PAUSED != 0,
        shutdown: info.shutdown_reason(),
        dying: info.flags & XEN_DOMINF_DYING != 0,
        tot_pages: info.tot_pages,
        max_pages: info.max_pages,
        online_vcpus: info.nr_online_vcpus,
        max_vcpu_id: info.max_vcpu_id,
        ssidref: info.ssidref,
        cpu_time_ns: info.cpu_time,
        shared_info: Mfn(info.shared_info_frame),
    }
}

impl DomainInfo {
    /// `xl list`'s State column: `r`unning, `b`locked, `p`aused, `s`hut
    /// down, `c`rashed (shut down with reason crash), `d`ying, each or `-`.
    pub fn state(&self) -> [u8; 6] {
        crate::xlfmt::list_state(self)
    }

    /// Memory in MiB, as `xl list`'s Mem column shows it (rounded down).
    pub const fn memory_mib(&self) -> u64 {
        self.tot_pages >> (20 - PAGE_SHIFT)
    }

    /// CPU time in tenths of a second, for `xl list`'s `Time(s)` column
    /// (`%.1f`) without floating point.
    pub const fn cpu_time_tenths(&self) -> u64 {
        self.cpu_time_ns / 100_000_000
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use guest_abi::domctl::{
        DomctlCreatedomain, XEN_DOMCTL_INTERFACE_VERSION, XEN_DOMINF_SHUTDOWN,
        XEN_DOMINF_SHUTDOWNSHIFT, XEN_SCHEDULER_CREDIT,
    };
    use guest_abi::sched::SHUTDOWN_CRASH;
    use guest_abi::sched::SHUTDOWN_POWEROFF;
    use guest_abi::sysctl::XEN_SYSCTL_INTERFACE_VERSION;

    #[test]
    fn domctl_requests() {
        let d = createdomain(&CreateConfig::new([1; 16], 3));
        assert_eq!(
            (d.cmd, d.interface_version, d.domain),
            (1, XEN_DOMCTL_INTERFACE_VERSION, 0)
        );
        let c: DomctlCreatedomain = d.payload();
        assert_eq!((c.max_vcpus, c.handle, c.flags), (3, [1; 16], 0));

        assert_eq!((destroydomain(5).cmd, destroydomain(5).domain), (2, 5));
        assert_eq!(pausedomain(5).cmd, 3);
        assert_eq!(unpausedomain(5).cmd, 4);
        assert_eq!(getdomaininfo(5).cmd, 5);
        let m = max_mem(5, 65536);
        assert_eq!((m.cmd, m.payload::<DomctlMaxMem>().max_memkb), (11, 65536));
        assert_eq!(max_vcpus(5, 2).payload::<DomctlMaxVcpus>().max, 2);
        let s = setvcpucontext(5, 1, 0x7000);
        let arg: DomctlVcpucontext = s.payload();
        assert_eq!((s.cmd, arg.vcpu, arg.ctxt), (12, 1, 0x7000));
        assert_eq!(getvcpucontext(5, 0, 0x7000).cmd, 13);
        assert_eq!(getvcpuinfo(5, 1).payload::<DomctlGetvcpuinfo>().vcpu, 1);

        let credit = DomctlSchedCredit {
            weight: 128,
            cap: 20,
        };
        let put = sched_credit_put(5, credit);
        let op: DomctlSchedulerOp = put.payload();
        assert_eq!(
            (put.cmd, op.sched_id, op.cmd),
            (16, XEN_SCHEDULER_CREDIT, 0)
        );
        assert_eq!(sched_credit(&put), credit);
        assert_eq!(sched_credit_get(5).payload::<DomctlSchedulerOp>().cmd, 1);

        let mut reply = createdomain(&CreateConfig::new([0; 16], 1));
        reply.domain = 9;
        assert_eq!(created_domain(&reply), 9);
    }

    #[test]
    fn other_arguments() {
        let r = populate_physmap(4, 0x1000, 512);
        assert_eq!((r.domid, r.nr_extents, r.extent_order), (4, 512, 0));
        assert_eq!(pin_command(Level::L4), 3);
        assert_eq!(pin_command(Level::L1), 0);
        let op = pin_table(Mfn(0x99), Level::L4);
        assert_eq!((op.cmd, op.arg1), (MMUEXT_PIN_L4_TABLE, 0x99));
        let a = alloc_unbound(4, 0);
        assert_eq!((a.dom, a.remote_dom), (4, 0));
    }

    #[test]
    fn sysctl_requests() {
        let p = physinfo();
        assert_eq!(
            (p.cmd, p.interface_version),
            (3, XEN_SYSCTL_INTERFACE_VERSION)
        );
        assert_eq!(sched_id().cmd, 4);
        let l = getdomaininfolist(1, 64, 0x2000);
        let arg: SysctlGetdomaininfolist = l.payload();
        assert_eq!(
            (l.cmd, arg.first_domain, arg.max_domains, arg.buffer),
            (6, 1, 64, 0x2000)
        );
        let r = readconsole(Some(100), true, 0x3000, 4096);
        let arg: SysctlReadconsole = r.payload();
        assert_eq!(r.cmd, 1);
        assert_eq!(
            (arg.clear, arg.incremental, arg.index, arg.count),
            (1, 1, 100, 4096)
        );
        let arg: SysctlReadconsole = readconsole(None, false, 0x3000, 10).payload();
        assert_eq!((arg.clear, arg.incremental), (0, 0));
    }

    #[test]
    fn xl_list_columns() {
        let info = DomctlGetdomaininfo {
            domain: 3,
            flags: XEN_DOMINF_BLOCKED,
            tot_pages: 64 * 256,
            cpu_time: 12_345_678_901,
            nr_online_vcpus: 1,
            ..Default::default()
        };
        let d = domain_info(&info);
        assert_eq!(&d.state(), b"-b----");
        assert_eq!(d.memory_mib(), 64);
        assert_eq!(d.cpu_time_tenths(), 123);

        let crashed = DomctlGetdomaininfo {
            flags: XEN_DOMINF_SHUTDOWN
                | XEN_DOMINF_DYING
                | SHUTDOWN_CRASH << XEN_DOMINF_SHUTDOWNSHIFT,
            ..info
        };
        assert_eq!(&domain_info(&crashed).state(), b"---scd");
        let off = DomctlGetdomaininfo {
            flags: XEN_DOMINF_SHUTDOWN | XEN_DOMINF_PAUSED | SHUTDOWN_POWEROFF,
            ..info
        };
        assert_eq!(&domain_info(&off).state(), b"--ps--");
        let running = DomctlGetdomaininfo {
            flags: XEN_DOMINF_RUNNING,
            ..info
        };
        assert_eq!(&domain_info(&running).state(), b"r-----");
    }

    #[test]
    fn domain_lists() {
        let mut buf = alloc::vec![0u8; 3 * 112 + 50];
        for (i, id) in [0u16, 1, 7].into_iter().enumerate() {
            let rec = DomctlGetdomaininfo {
                domain: id,
                ..Default::default()
            };
            rec.encode_prefix(&mut buf[i * 112..]).unwrap();
        }
        let ids = |n| -> Vec<DomId> { domain_list(&buf, n).iter().map(|r| r.domain).collect() };
        assert_eq!(ids(3), [0, 1, 7]);
        assert_eq!(ids(2), [0, 1]);
        assert_eq!(ids(100), [0, 1, 7], "never past the buffer");
    }
}
