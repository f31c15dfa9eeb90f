//! What the domain builder asks of the hypervisor, as a trait.
//!
//! The dom0 kernel implements [`Hypervisor`] with hypercalls (the requests
//! are in [`control`](crate::control)); the host tests implement it with a
//! fake that keeps frames in memory. Each method is one hypervisor
//! operation on a *foreign* domain, so each needs dom0's privilege; the
//! errors are the hypervisor's, passed through unchanged.

use alloc::vec::Vec;

use guest_abi::Errno;
use guest_abi::domctl::{DomctlCreatedomain, DomctlSchedCredit, XenDomainHandle};
use guest_abi::event::EvtchnPort;
use guest_abi::types::{DomId, Mfn, Pfn};
use guest_abi::vcpu_context::VcpuGuestContext;
use xenia_pvboot::layout::Level;

/// The highest event-channel port a new domain may use when the
/// configuration does not say: xl's default (`max_event_channels = 1023`).
pub const DEFAULT_MAX_EVTCHN_PORT: u32 = 1023;

/// What `createdomain` needs: the part of a domain's configuration the
/// hypervisor fixes at creation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CreateConfig {
    /// The domain's UUID.
    pub handle: XenDomainHandle,
    /// Number of vCPUs.
    pub max_vcpus: u32,
    /// Highest event-channel port.
    pub max_evtchn_port: u32,
    /// Most grant-table frames; negative for the hypervisor's default.
    pub max_grant_frames: i32,
    /// Most maptrack frames; negative for the hypervisor's default.
    pub max_maptrack_frames: i32,
}

impl CreateConfig {
    /// A configuration for `max_vcpus` vCPUs with every limit at its
    /// default.
    pub const fn new(handle: XenDomainHandle, max_vcpus: u32) -> Self {
        Self {
            handle,
            max_vcpus,
            max_evtchn_port: DEFAULT_MAX_EVTCHN_PORT,
            max_grant_frames: -1,
            max_maptrack_frames: -1,
        }
    }

    /// The `createdomain` argument: a PV domain (no flags, no emulation)
    /// with these limits and grant tables of version 1.
    pub fn to_domctl(&self) -> DomctlCreatedomain {
        DomctlCreatedomain {
            handle: self.handle,
            max_vcpus: self.max_vcpus,
            max_evtchn_port: self.max_evtchn_port,
            max_grant_frames: self.max_grant_frames,
            max_maptrack_frames: self.max_maptrack_frames,
            grant_opts: 1,
            ..DomctlCreatedomain::default()
        }
    }
}

/// The hypervisor operations the domain builder uses, in the order it uses
/// them. See [`builder`](crate::builder) for what it expects of each.
pub trait Hypervisor {
    /// `domctl createdomain`: a new, paused, empty domain; returns its id.
    fn create_domain(&mut self, cfg: &CreateConfig) -> Result<DomId, Errno>;

    /// `domctl max_mem`: the domain's memory limit in KiB.
    fn set_max_mem(&mut self, dom: DomId, kib: u64) -> Result<(), Errno>;

    /// `domctl max_vcpus`: allocates vCPUs `0..n` (all down).
    fn set_max_vcpus(&mut self, dom: DomId, n: u32) -> Result<(), Errno>;

    /// `domctl scheduler_op` `putinfo` for the credit scheduler.
    fn set_sched_credit(&mut self, dom: DomId, credit: DomctlSchedCredit) -> Result<(), Errno>;

    /// `memory_op(XENMEM_populate_physmap)` with `domid = dom`: backs each
    /// pseudo-physical frame in `pfns` with a new, zeroed machine frame of
    /// the domain and returns those frames in the same order.
    fn populate(&mut self, dom: DomId, pfns: &[Pfn]) -> Result<Vec<Mfn>, Errno>;

    /// Copies `bytes` into machine frame `mfn` of `dom` at byte `offset`
    /// (`offset + bytes.len()` is at most 4096). The dom0 kernel maps the
    /// foreign frame (`mmu_update` with `foreigndom = dom`), copies and
    /// unmaps it.
    fn write_frame(
        &mut self,
        dom: DomId,
        mfn: Mfn,
        offset: usize,
        bytes: &[u8],
    ) -> Result<(), Errno>;

    /// `mmuext_op(MMUEXT_PIN_L{1..4}_TABLE)` with `foreigndom = dom`:
    /// validates the page table in `mfn` (and everything below it) as `dom`'s
    /// and pins it.
    fn pin_table(&mut self, dom: DomId, mfn: Mfn, level: Level) -> Result<(), Errno>;

    /// `event_channel_op(EVTCHNOP_alloc_unbound)` with `dom = dom` and
    /// `remote_dom = remote`: a port of `dom` that `remote` may bind.
    fn alloc_unbound(&mut self, dom: DomId, remote: DomId) -> Result<EvtchnPort, Errno>;

    /// The machine frame of the domain's `shared_info` page (`domctl
    /// getdomaininfo`, field `shared_info_frame`).
    fn shared_info_frame(&mut self, dom: DomId) -> Result<Mfn, Errno>;

    /// `domctl xenia_set_guest_mode` (`XEN_DOMCTL_XENIA_SET_GUEST_MODE`): the ABI the
    /// domain's kernel uses, `XENIA_GUEST_MODE_RING1` (the default) or
    /// `XENIA_GUEST_MODE_XEN_PV`; before the first `set_vcpu_context` (`EBUSY` after).
    fn set_guest_mode(&mut self, dom: DomId, mode: u32) -> Result<(), Errno>;

    /// `domctl hypercall_init`: fills the domain's page in machine frame `mfn` with the
    /// hypercall stubs of its guest mode (`int 0x82` ones for Xenia's ring-1 ABI, Xen's
    /// `syscall` ones for Xen's PV mode).
    fn hypercall_init(&mut self, dom: DomId, mfn: Mfn) -> Result<(), Errno>;

    /// `domctl setvcpucontext`.
    fn set_vcpu_context(
        &mut self,
        dom: DomId,
        vcpu: u32,
        ctx: &VcpuGuestContext,
    ) -> Result<(), Errno>;

    /// `domctl unpausedomain`.
    fn unpause(&mut self, dom: DomId) -> Result<(), Errno>;

    /// `domctl destroydomain`.
    fn destroy(&mut self, dom: DomId) -> Result<(), Errno>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_config_to_domctl() {
        let c = CreateConfig::new([7; 16], 2);
        let d = c.to_domctl();
        assert_eq!(d.handle, [7; 16]);
        assert_eq!(d.max_vcpus, 2);
        assert_eq!(d.max_evtchn_port, 1023);
        assert_eq!((d.max_grant_frames, d.max_maptrack_frames), (-1, -1));
        assert_eq!(d.grant_opts, 1);
        assert_eq!((d.flags, d.iommu_opts, d.cpupool_id), (0, 0, 0));
        assert_eq!(d.arch, Default::default());
    }
}
