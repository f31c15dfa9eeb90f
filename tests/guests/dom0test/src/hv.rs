//! The hypervisor as dom0 reaches it: `domctl`, `sysctl` and the foreign-domain forms of
//! `memory_op`, `mmuext_op` and `event_channel_op`, behind dom0-tools'
//! [`Hypervisor`] trait and a few more calls the tests need.
//!
//! The requests are built by `dom0_tools::control`; this module only issues them. Every
//! failing call is remembered with its arguments ([`Xenia::last_failure`]), so that a test
//! that sees a build fail can say exactly which call the hypervisor refused, with what.

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

use dom0_tools::control;
use dom0_tools::hypervisor::{CreateConfig, Hypervisor};
use guest_abi::Errno;
use guest_abi::calls;
use guest_abi::domctl::{
    DomctlGetdomaininfo, DomctlSchedCredit, DomctlXeniaWriteFrame, XEN_DOMCTL_XENIA_READ_FRAME,
    XEN_DOMCTL_XENIA_WRITE_FRAME, XenDomctl,
};
use guest_abi::event::EvtchnPort;
use guest_abi::hypercall::{
    HYPERVISOR_DOMCTL, HYPERVISOR_MEMORY_OP, HYPERVISOR_SYSCTL, hypercall1, hypercall2,
};
use guest_abi::memory::XENMEM_POPULATE_PHYSMAP;
use guest_abi::sysctl::{SysctlGetdomaininfolist, SysctlPhysinfo, SysctlReadconsole, XenSysctl};
use guest_abi::types::{DomId, Mfn, PAGE_SIZE, Pfn};
use guest_abi::vcpu_context::VcpuGuestContext;
use xenia_pvboot::layout::Level;

/// A hypercall the hypervisor refused: what was asked, with its arguments, and the answer.
#[derive(Clone, Debug)]
pub struct Failure {
    /// The call and its arguments.
    pub call: String,
    /// What the hypervisor returned.
    pub errno: Errno,
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} returned -{:?}", self.call, self.errno)
    }
}

/// dom0's handle on the hypervisor. Holds no state but the last failure: the hypervisor
/// keeps everything else.
#[derive(Default)]
pub struct Xenia {
    last_failure: Option<Failure>,
    /// Hypercalls issued through this handle, for the per-cycle costs the tests print.
    pub calls: u64,
}

impl Xenia {
    /// A handle.
    pub const fn new() -> Self {
        Self {
            last_failure: None,
            calls: 0,
        }
    }

    /// The last call the hypervisor refused, if any.
    pub fn last_failure(&self) -> Option<&Failure> {
        self.last_failure.as_ref()
    }

    /// Forgets the last failure (before a step whose failures the caller wants to see).
    pub fn clear_failure(&mut self) {
        self.last_failure = None;
    }

    fn record<T>(
        &mut self,
        r: Result<T, Errno>,
        call: impl FnOnce() -> String,
    ) -> Result<T, Errno> {
        self.calls += 1;
        if let Err(errno) = r {
            self.last_failure = Some(Failure {
                call: call(),
                errno,
            });
        }
        r
    }

    /// Issues `domctl(op)`; on success `op` holds the hypervisor's answer.
    pub fn domctl(&mut self, op: &mut XenDomctl) -> Result<(), Errno> {
        // SAFETY: the hypervisor reads and writes back one XenDomctl, borrowed exclusively for
        // the call; pointers inside it (contexts, buffers) are the callers' and name dom0
        // memory that lives across the call (each caller says so).
        let ret = unsafe { hypercall1(HYPERVISOR_DOMCTL, op as *mut XenDomctl as u64) };
        let (cmd, dom) = (op.cmd, op.domain);
        self.record(Errno::decode_result(ret).map(drop), || {
            format!("domctl cmd {cmd:#x} domain {dom}")
        })
    }

    /// Issues `sysctl(op)`; on success `op` holds the hypervisor's answer.
    pub fn sysctl(&mut self, op: &mut XenSysctl) -> Result<(), Errno> {
        // SAFETY: as for `domctl`, with one XenSysctl.
        let ret = unsafe { hypercall1(HYPERVISOR_SYSCTL, op as *mut XenSysctl as u64) };
        let cmd = op.cmd;
        self.record(Errno::decode_result(ret).map(drop), || {
            format!("sysctl cmd {cmd}")
        })
    }

    /// `getdomaininfo` of `dom`.
    pub fn domain_info(&mut self, dom: DomId) -> Result<DomctlGetdomaininfo, Errno> {
        let mut op = control::getdomaininfo(dom);
        self.domctl(&mut op)?;
        Ok(op.payload())
    }

    /// `pausedomain`.
    pub fn pause(&mut self, dom: DomId) -> Result<(), Errno> {
        self.domctl(&mut control::pausedomain(dom))
    }

    /// `scheduler_op getinfo`: the domain's credit weight and cap.
    pub fn sched_credit(&mut self, dom: DomId) -> Result<DomctlSchedCredit, Errno> {
        let mut op = control::sched_credit_get(dom);
        self.domctl(&mut op)?;
        Ok(control::sched_credit(&op))
    }

    /// `physinfo`.
    pub fn physinfo(&mut self) -> Result<SysctlPhysinfo, Errno> {
        let mut op = control::physinfo();
        self.sysctl(&mut op)?;
        Ok(op.payload())
    }

    /// Every domain, from `getdomaininfolist`.
    pub fn domains(&mut self) -> Result<Vec<DomctlGetdomaininfo>, Errno> {
        const RECORD: usize = core::mem::size_of::<DomctlGetdomaininfo>();
        const BATCH: u32 = 64;
        let mut all = Vec::new();
        let mut buf = alloc::vec![0u8; BATCH as usize * RECORD];
        let mut first: DomId = 0;
        loop {
            let mut op = control::getdomaininfolist(first, BATCH, buf.as_mut_ptr() as u64);
            // The buffer lives until the end of the loop body; the hypervisor writes at most
            // BATCH records into it.
            self.sysctl(&mut op)?;
            let n = op.payload::<SysctlGetdomaininfolist>().num_domains;
            let records = control::domain_list(&buf, n);
            let Some(last) = records.last().map(|r| r.domain) else {
                break;
            };
            all.extend(records);
            if n < BATCH || last == DomId::MAX {
                break;
            }
            first = last + 1;
        }
        Ok(all)
    }

    /// `readconsole` from position `index` (incremental) into `buf`; returns the bytes copied
    /// and the position after them.
    pub fn read_console(&mut self, index: u32, buf: &mut [u8]) -> Result<(usize, u32), Errno> {
        let count = u32::try_from(buf.len()).unwrap_or(u32::MAX);
        let mut op = control::readconsole(Some(index), false, buf.as_mut_ptr() as u64, count);
        // The buffer is borrowed exclusively for the call; the hypervisor writes at most
        // `count` bytes.
        self.sysctl(&mut op)?;
        let answer: SysctlReadconsole = op.payload();
        Ok(((answer.count as usize).min(buf.len()), answer.index))
    }
}

impl Xenia {
    /// Copies bytes from frame `mfn` of `dom`, from byte `offset`, into `buf`
    /// (`XEN_DOMCTL_XENIA_READ_FRAME`).
    pub fn read_frame(
        &mut self,
        dom: DomId,
        mfn: Mfn,
        offset: usize,
        buf: &mut [u8],
    ) -> Result<(), Errno> {
        if offset + buf.len() > PAGE_SIZE {
            return Err(Errno::EINVAL);
        }
        let arg = DomctlXeniaWriteFrame {
            mfn: mfn.0,
            offset: offset as u32,
            len: buf.len() as u32,
            buffer: buf.as_mut_ptr() as u64,
        };
        // `buf` is borrowed exclusively across the call; the hypervisor writes at most its
        // length.
        let mut op = XenDomctl::new(XEN_DOMCTL_XENIA_READ_FRAME, dom, &arg);
        let r = self.domctl(&mut op);
        if let (Err(_), Some(f)) = (r, self.last_failure.as_mut()) {
            f.call = format!(
                "domctl XENIA_READ_FRAME domain {dom} mfn {:#x} offset {offset} len {}",
                mfn.0,
                buf.len()
            );
        }
        r
    }
}

impl Hypervisor for Xenia {
    fn create_domain(&mut self, cfg: &CreateConfig) -> Result<DomId, Errno> {
        let mut op = control::createdomain(cfg);
        self.domctl(&mut op)?;
        Ok(control::created_domain(&op))
    }

    fn set_max_mem(&mut self, dom: DomId, kib: u64) -> Result<(), Errno> {
        self.domctl(&mut control::max_mem(dom, kib))
    }

    fn set_max_vcpus(&mut self, dom: DomId, n: u32) -> Result<(), Errno> {
        self.domctl(&mut control::max_vcpus(dom, n))
    }

    fn set_sched_credit(&mut self, dom: DomId, credit: DomctlSchedCredit) -> Result<(), Errno> {
        self.domctl(&mut control::sched_credit_put(dom, credit))
    }

    fn populate(&mut self, dom: DomId, pfns: &[Pfn]) -> Result<Vec<Mfn>, Errno> {
        let mut extents: Vec<u64> = pfns.iter().map(|p| p.0).collect();
        let arg = control::populate_physmap(dom, extents.as_mut_ptr() as u64, extents.len() as u64);
        // SAFETY: the hypervisor reads `arg` and rewrites the extent array in place, both
        // borrowed for the call; the frames it allocates belong to `dom`, not to dom0, so no
        // dom0 memory changes hands.
        let ret = unsafe {
            hypercall2(
                HYPERVISOR_MEMORY_OP,
                XENMEM_POPULATE_PHYSMAP.into(),
                &raw const arg as u64,
            )
        };
        let n = pfns.len();
        let first = pfns.first().map_or(0, |p| p.0);
        let r = match Errno::decode_result(ret) {
            Ok(done) if done as usize == n => Ok(()),
            // Xen's convention: fewer extents done than asked means it ran out.
            Ok(_) => Err(Errno::ENOMEM),
            Err(e) => Err(e),
        };
        self.record(r, || {
            format!(
                "memory_op(XENMEM_populate_physmap, domid {dom}, {n} pfns from {first:#x}) \
                 [returned {ret}]"
            )
        })?;
        Ok(extents.into_iter().map(Mfn).collect())
    }

    fn write_frame(
        &mut self,
        dom: DomId,
        mfn: Mfn,
        offset: usize,
        bytes: &[u8],
    ) -> Result<(), Errno> {
        if offset + bytes.len() > PAGE_SIZE {
            return Err(Errno::EINVAL);
        }
        let arg = DomctlXeniaWriteFrame {
            mfn: mfn.0,
            offset: offset as u32,
            len: bytes.len() as u32,
            buffer: bytes.as_ptr() as u64,
        };
        // `bytes` is borrowed across the call; the hypervisor only reads it.
        let mut op = XenDomctl::new(XEN_DOMCTL_XENIA_WRITE_FRAME, dom, &arg);
        let r = self.domctl(&mut op);
        if let (Err(_), Some(f)) = (r, self.last_failure.as_mut()) {
            f.call = format!(
                "domctl XENIA_WRITE_FRAME domain {dom} mfn {:#x} offset {offset} len {}",
                mfn.0,
                bytes.len()
            );
        }
        r
    }

    fn pin_table(&mut self, dom: DomId, mfn: Mfn, level: Level) -> Result<(), Errno> {
        let op = [control::pin_table(mfn, level)];
        // SAFETY: pinning a table of another domain changes none of dom0's mappings.
        let r = unsafe { calls::mmuext_op(&op, dom) }.map(drop);
        self.record(r, || {
            format!(
                "mmuext_op(MMUEXT_PIN_L{}_TABLE, mfn {:#x}, foreigndom {dom})",
                op[0].cmd + 1,
                mfn.0
            )
        })
    }

    fn alloc_unbound(&mut self, dom: DomId, remote: DomId) -> Result<EvtchnPort, Errno> {
        let r = calls::evtchn_alloc_unbound(dom, remote);
        self.record(r, || {
            format!("event_channel_op(EVTCHNOP_alloc_unbound, dom {dom}, remote_dom {remote})")
        })
    }

    fn shared_info_frame(&mut self, dom: DomId) -> Result<Mfn, Errno> {
        Ok(Mfn(self.domain_info(dom)?.shared_info_frame))
    }

    fn set_vcpu_context(
        &mut self,
        dom: DomId,
        vcpu: u32,
        ctx: &VcpuGuestContext,
    ) -> Result<(), Errno> {
        // `ctx` is borrowed across the call; the hypervisor only reads it.
        let mut op = control::setvcpucontext(dom, vcpu, ctx as *const VcpuGuestContext as u64);
        self.domctl(&mut op)
    }

    fn unpause(&mut self, dom: DomId) -> Result<(), Errno> {
        self.domctl(&mut control::unpausedomain(dom))
    }

    fn destroy(&mut self, dom: DomId) -> Result<(), Errno> {
        self.domctl(&mut control::destroydomain(dom))
    }
}
