//! The hypervisor as dom0 reaches it: every operation is one hypercall
//! made through a [`Raw`] call: in xl, `IOCTL_PRIVCMD_HYPERCALL` on
//! `/dev/xen/privcmd`; in dom0's kernel, the hypercall itself; in the
//! tests, a fake. Pointers in the arguments are the caller's addresses,
//! which the hypervisor reads and writes during the call.
//!
//! [`Xen`] implements the [`Hypervisor`] trait (what the domain builder
//! needs) and the other queries and controls xl's verbs and the kernel's
//! backends use.

use alloc::vec;
use alloc::vec::Vec;

use crate::control::{self, DomainInfo};
use crate::hypervisor::{CreateConfig, Hypervisor};
use guest_abi::Errno;
use guest_abi::domctl::{
    DomctlGetdomaininfo, DomctlGetvcpuinfo, DomctlSchedCredit, DomctlXeniaWriteFrame,
    XEN_DOMCTL_XENIA_READ_FRAME, XEN_DOMCTL_XENIA_WRITE_FRAME, XenDomctl,
};
use guest_abi::event::{EVTCHNOP_ALLOC_UNBOUND, EvtchnPort};
use guest_abi::hypercall::{
    HYPERVISOR_DOMCTL, HYPERVISOR_EVENT_CHANNEL_OP, HYPERVISOR_MEMORY_OP, HYPERVISOR_MMUEXT_OP,
    HYPERVISOR_SCHED_OP, HYPERVISOR_SYSCTL, HYPERVISOR_XEN_VERSION,
};
use guest_abi::memory::XENMEM_POPULATE_PHYSMAP;
use guest_abi::sched::{SCHEDOP_REMOTE_SHUTDOWN, SchedRemoteShutdown};
use guest_abi::sysctl::{SysctlGetdomaininfolist, SysctlPhysinfo, SysctlReadconsole, XenSysctl};
use guest_abi::types::{DomId, Mfn, PAGE_SIZE, Pfn};
use guest_abi::vcpu_context::VcpuGuestContext;
use xenia_pvboot::layout::Level;

/// One hypercall: number and five arguments in, the hypervisor's result
/// (or its error) out.
pub trait Raw {
    /// Makes hypercall `op` with `arg`.
    fn hypercall(&mut self, op: u64, arg: [u64; 5]) -> Result<u64, Errno>;
}

/// The address of `v`, as a hypercall argument.
fn addr<T>(v: &mut T) -> u64 {
    v as *mut T as u64
}

/// xl's handle on the hypervisor.
pub struct Xen<R> {
    /// How calls are made.
    pub raw: R,
}

impl<R: Raw> Xen<R> {
    /// A handle making its calls through `raw`.
    pub const fn new(raw: R) -> Self {
        Self { raw }
    }

    /// `domctl(op)`; on success `op` holds the answer.
    pub fn domctl(&mut self, op: &mut XenDomctl) -> Result<(), Errno> {
        self.raw
            .hypercall(HYPERVISOR_DOMCTL, [addr(op), 0, 0, 0, 0])
            .map(drop)
    }

    /// `sysctl(op)`; on success `op` holds the answer.
    pub fn sysctl(&mut self, op: &mut XenSysctl) -> Result<(), Errno> {
        self.raw
            .hypercall(HYPERVISOR_SYSCTL, [addr(op), 0, 0, 0, 0])
            .map(drop)
    }

    /// `getdomaininfo` of `dom`.
    pub fn domain_info(&mut self, dom: DomId) -> Result<DomctlGetdomaininfo, Errno> {
        let mut op = control::getdomaininfo(dom);
        self.domctl(&mut op)?;
        Ok(op.payload())
    }

    /// Every domain, in id order (`getdomaininfolist`, in batches).
    pub fn domains(&mut self) -> Result<Vec<DomainInfo>, Errno> {
        const RECORD: usize = core::mem::size_of::<DomctlGetdomaininfo>();
        const BATCH: u32 = 64;
        let mut all = Vec::new();
        let mut buf = vec![0u8; BATCH as usize * RECORD];
        let mut first: DomId = 0;
        loop {
            let mut op = control::getdomaininfolist(first, BATCH, buf.as_mut_ptr() as u64);
            self.sysctl(&mut op)?;
            let n = op.payload::<SysctlGetdomaininfolist>().num_domains;
            let records = control::domain_list(&buf, n);
            let Some(last) = records.last().map(|r| r.domain) else {
                break;
            };
            all.extend(records.iter().map(control::domain_info));
            if n < BATCH || last == DomId::MAX {
                break;
            }
            first = last + 1;
        }
        Ok(all)
    }

    /// `page_offline_op` `cmd` (`SYSCTL_PAGE_OFFLINE`, `_ONLINE`, `SYSCTL_QUERY_PAGE_OFFLINE`)
    /// on frame `mfn`: the hypervisor's answer and the status word it wrote
    /// (`PG_OFFLINE_INVALID` if it wrote none), which the tools read even after an error.
    pub fn page_offline(&mut self, cmd: u32, mfn: u32) -> (Result<(), Errno>, u32) {
        let mut status = [guest_abi::sysctl::PG_OFFLINE_INVALID];
        let arg = guest_abi::sysctl::SysctlPageOfflineOp {
            cmd,
            start: mfn,
            end: mfn,
            status: status.as_mut_ptr() as u64,
            ..Default::default()
        };
        let mut op = XenSysctl::new(guest_abi::sysctl::XEN_SYSCTL_PAGE_OFFLINE_OP, &arg);
        let r = self.sysctl(&mut op);
        // The hypervisor wrote `status` through the address the call took (as `readconsole`
        // writes its buffer).
        (r, core::hint::black_box(&mut status)[0])
    }

    /// `XEN_SYSCTL_cpu_hotplug`: CPU `cpu` online (`online`) or offline.
    pub fn cpu_hotplug(&mut self, cpu: u32, online: bool) -> Result<(), Errno> {
        use guest_abi::sysctl::{
            SysctlCpuHotplug, XEN_SYSCTL_CPU_HOTPLUG, XEN_SYSCTL_CPU_HOTPLUG_OFFLINE,
            XEN_SYSCTL_CPU_HOTPLUG_ONLINE,
        };
        let op = if online {
            XEN_SYSCTL_CPU_HOTPLUG_ONLINE
        } else {
            XEN_SYSCTL_CPU_HOTPLUG_OFFLINE
        };
        let mut op = XenSysctl::new(XEN_SYSCTL_CPU_HOTPLUG, &SysctlCpuHotplug { cpu, op });
        self.sysctl(&mut op)
    }

    /// Frames offlined and frames pending (Xenia's `XEN_SYSCTL_XENIA_MEM_OFFLINE_INFO`).
    pub fn mem_offline_info(&mut self) -> Result<(u64, u64), Errno> {
        let mut op = XenSysctl::new(
            guest_abi::sysctl::XEN_SYSCTL_XENIA_MEM_OFFLINE_INFO,
            &guest_abi::sysctl::SysctlXeniaMemOfflineInfo::default(),
        );
        self.sysctl(&mut op)?;
        let i: guest_abi::sysctl::SysctlXeniaMemOfflineInfo = op.payload();
        Ok((i.offlined, i.pending))
    }

    /// `XEN_SYSCTL_debug_keys`: the hypervisor handles `keys` as if typed at its console
    /// (their output goes to its log). `EINVAL` for more than
    /// [`DEBUG_KEYS_MAX`](guest_abi::sysctl::DEBUG_KEYS_MAX), before any call.
    pub fn debug_keys(&mut self, keys: &[u8]) -> Result<(), Errno> {
        use guest_abi::sysctl::{DEBUG_KEYS_MAX, SysctlDebugKeys, XEN_SYSCTL_DEBUG_KEYS};
        let nr_keys = u32::try_from(keys.len())
            .ok()
            .filter(|&n| n <= DEBUG_KEYS_MAX)
            .ok_or(Errno::EINVAL)?;
        let mut op = XenSysctl::new(
            XEN_SYSCTL_DEBUG_KEYS,
            &SysctlDebugKeys {
                keys: keys.as_ptr() as u64,
                nr_keys,
                _pad: 0,
            },
        );
        self.sysctl(&mut op)
    }

    /// `XEN_SYSCTL_scheduler_op` getinfo for the credit scheduler of cpupool `pool`:
    /// `(tslice_ms, ratelimit_us, vcpu_migr_delay_us)`.
    pub fn sched_credit_params(&mut self, pool: u32) -> Result<(u32, u32, u32), Errno> {
        use guest_abi::domctl::XEN_SCHEDULER_CREDIT;
        use guest_abi::sysctl::{
            SysctlSchedulerOp, XEN_SYSCTL_SCHEDOP_GETINFO, XEN_SYSCTL_SCHEDULER_OP,
        };
        let mut op = XenSysctl::new(
            XEN_SYSCTL_SCHEDULER_OP,
            &SysctlSchedulerOp {
                cpupool_id: pool,
                sched_id: XEN_SCHEDULER_CREDIT,
                cmd: XEN_SYSCTL_SCHEDOP_GETINFO,
                ..Default::default()
            },
        );
        self.sysctl(&mut op)?;
        let s: SysctlSchedulerOp = op.payload();
        Ok((s.tslice_ms, s.ratelimit_us, s.vcpu_migr_delay_us))
    }

    /// `physinfo`.
    pub fn physinfo(&mut self) -> Result<SysctlPhysinfo, Errno> {
        let mut op = control::physinfo();
        self.sysctl(&mut op)?;
        Ok(op.payload())
    }

    /// `readconsole` into `buf`: from `index` when `Some` (continuing a
    /// previous read), else from the oldest byte held; returns the bytes
    /// copied and the index to continue from.
    pub fn read_console(
        &mut self,
        index: Option<u32>,
        clear: bool,
        buf: &mut [u8],
    ) -> Result<(usize, u32), Errno> {
        let count = u32::try_from(buf.len()).unwrap_or(u32::MAX);
        let mut op = control::readconsole(index, clear, buf.as_mut_ptr() as u64, count);
        self.sysctl(&mut op)?;
        let answer: SysctlReadconsole = op.payload();
        Ok(((answer.count as usize).min(buf.len()), answer.index))
    }

    /// `pausedomain`.
    pub fn pause(&mut self, dom: DomId) -> Result<(), Errno> {
        self.domctl(&mut control::pausedomain(dom))
    }

    /// `scheduler_op getinfo` (credit).
    pub fn sched_credit(&mut self, dom: DomId) -> Result<DomctlSchedCredit, Errno> {
        let mut op = control::sched_credit_get(dom);
        self.domctl(&mut op)?;
        Ok(control::sched_credit(&op))
    }

    /// `getvcpuinfo`.
    pub fn vcpu_info(&mut self, dom: DomId, vcpu: u32) -> Result<DomctlGetvcpuinfo, Errno> {
        let mut op = control::getvcpuinfo(dom, vcpu);
        self.domctl(&mut op)?;
        Ok(op.payload())
    }

    /// `getvcpuaffinity`: the hard and soft masks of `dom`'s vCPU `vcpu`, each a bitmap of
    /// `nr_bits` bits (bit *n* of byte *n* / 8 is pCPU *n*).
    pub fn vcpu_affinity(
        &mut self,
        dom: DomId,
        vcpu: u32,
        nr_bits: u32,
    ) -> Result<(Vec<u8>, Vec<u8>), Errno> {
        use guest_abi::domctl::{
            DomctlVcpuaffinity, XEN_DOMCTL_GETVCPUAFFINITY, XEN_VCPUAFFINITY_HARD,
            XEN_VCPUAFFINITY_SOFT, XenctlBitmap,
        };
        let bytes = (nr_bits as usize).div_ceil(8);
        let (mut hard, mut soft) = (vec![0u8; bytes], vec![0u8; bytes]);
        let arg = DomctlVcpuaffinity {
            vcpu,
            flags: XEN_VCPUAFFINITY_HARD | XEN_VCPUAFFINITY_SOFT,
            cpumap_hard: XenctlBitmap {
                bitmap: hard.as_mut_ptr() as u64,
                nr_bits,
                _pad: 0,
            },
            cpumap_soft: XenctlBitmap {
                bitmap: soft.as_mut_ptr() as u64,
                nr_bits,
                _pad: 0,
            },
        };
        self.domctl(&mut XenDomctl::new(XEN_DOMCTL_GETVCPUAFFINITY, dom, &arg))?;
        // The hypervisor wrote both through the addresses the call took.
        Ok((core::hint::black_box(hard), core::hint::black_box(soft)))
    }

    /// `setvcpuaffinity`: sets the hard and/or soft mask (`None`: left as it is; at least one
    /// must be given) of `dom`'s vCPU `vcpu`, each a bitmap of `8 * len` bits.
    pub fn set_vcpu_affinity(
        &mut self,
        dom: DomId,
        vcpu: u32,
        hard: Option<&[u8]>,
        soft: Option<&[u8]>,
    ) -> Result<(), Errno> {
        use guest_abi::domctl::{
            DomctlVcpuaffinity, XEN_DOMCTL_SETVCPUAFFINITY, XEN_VCPUAFFINITY_HARD,
            XEN_VCPUAFFINITY_SOFT, XenctlBitmap,
        };
        // Copies: the hypervisor writes the effective masks back into them.
        let (mut h, mut s) = (
            hard.map(<[u8]>::to_vec).unwrap_or_default(),
            soft.map(<[u8]>::to_vec).unwrap_or_default(),
        );
        let map = |m: &mut Vec<u8>| XenctlBitmap {
            bitmap: m.as_mut_ptr() as u64,
            nr_bits: u32::try_from(m.len() * 8).unwrap_or(u32::MAX),
            _pad: 0,
        };
        let mut flags = 0;
        if hard.is_some() {
            flags |= XEN_VCPUAFFINITY_HARD;
        }
        if soft.is_some() {
            flags |= XEN_VCPUAFFINITY_SOFT;
        }
        let arg = DomctlVcpuaffinity {
            vcpu,
            flags,
            cpumap_hard: map(&mut h),
            cpumap_soft: map(&mut s),
        };
        let r = self.domctl(&mut XenDomctl::new(XEN_DOMCTL_SETVCPUAFFINITY, dom, &arg));
        core::hint::black_box((h, s));
        r
    }

    /// `SCHEDOP_remote_shutdown`: asks `dom` to stop with `reason`
    /// (`SHUTDOWN_*`).
    pub fn remote_shutdown(&mut self, dom: DomId, reason: u32) -> Result<(), Errno> {
        let mut arg = SchedRemoteShutdown {
            domain_id: dom,
            reason,
        };
        self.raw
            .hypercall(
                HYPERVISOR_SCHED_OP,
                [SCHEDOP_REMOTE_SHUTDOWN.into(), addr(&mut arg), 0, 0, 0],
            )
            .map(drop)
    }

    /// `xen_version(cmd)` with a result buffer of `N` bytes; returns the
    /// call's value and the buffer.
    pub fn xen_version<const N: usize>(&mut self, cmd: u32) -> Result<(u64, [u8; N]), Errno> {
        let mut buf = [0u8; N];
        let v = self.raw.hypercall(
            HYPERVISOR_XEN_VERSION,
            [cmd.into(), buf.as_mut_ptr() as u64, 0, 0, 0],
        )?;
        Ok((v, buf))
    }

    /// Copies `buf.len()` bytes at `offset` of `dom`'s machine frame `mfn` into `buf`
    /// (Xenia's read-frame domctl; `offset + buf.len()` at most 4096).
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
        self.domctl(&mut XenDomctl::new(XEN_DOMCTL_XENIA_READ_FRAME, dom, &arg))
    }
}

impl<R: Raw> Hypervisor for Xen<R> {
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

    fn set_guest_mode(&mut self, dom: DomId, mode: u32) -> Result<(), Errno> {
        self.domctl(&mut control::set_guest_mode(dom, mode))
    }

    fn hypercall_init(&mut self, dom: DomId, mfn: Mfn) -> Result<(), Errno> {
        self.domctl(&mut control::hypercall_init(dom, mfn.0))
    }

    fn populate(&mut self, dom: DomId, pfns: &[Pfn]) -> Result<Vec<Mfn>, Errno> {
        let mut extents: Vec<u64> = pfns.iter().map(|p| p.0).collect();
        let mut arg =
            control::populate_physmap(dom, extents.as_mut_ptr() as u64, extents.len() as u64);
        let done = self.raw.hypercall(
            HYPERVISOR_MEMORY_OP,
            [XENMEM_POPULATE_PHYSMAP.into(), addr(&mut arg), 0, 0, 0],
        )?;
        // Xen's convention: fewer extents than asked means it ran out.
        if done != pfns.len() as u64 {
            return Err(Errno::ENOMEM);
        }
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
        self.domctl(&mut XenDomctl::new(XEN_DOMCTL_XENIA_WRITE_FRAME, dom, &arg))
    }

    fn pin_table(&mut self, dom: DomId, mfn: Mfn, level: Level) -> Result<(), Errno> {
        let mut op = [control::pin_table(mfn, level)];
        let mut done: u32 = 0;
        self.raw
            .hypercall(
                HYPERVISOR_MMUEXT_OP,
                [
                    op.as_mut_ptr() as u64,
                    op.len() as u64,
                    addr(&mut done),
                    dom.into(),
                    0,
                ],
            )
            .map(drop)
    }

    fn alloc_unbound(&mut self, dom: DomId, remote: DomId) -> Result<EvtchnPort, Errno> {
        let mut arg = control::alloc_unbound(dom, remote);
        self.raw.hypercall(
            HYPERVISOR_EVENT_CHANNEL_OP,
            [EVTCHNOP_ALLOC_UNBOUND.into(), addr(&mut arg), 0, 0, 0],
        )?;
        Ok(arg.port)
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
        let ptr = ctx as *const VcpuGuestContext as u64;
        self.domctl(&mut control::setvcpucontext(dom, vcpu, ptr))
    }

    fn unpause(&mut self, dom: DomId) -> Result<(), Errno> {
        self.domctl(&mut control::unpausedomain(dom))
    }

    fn destroy(&mut self, dom: DomId) -> Result<(), Errno> {
        self.domctl(&mut control::destroydomain(dom))
    }
}

#[cfg(test)]
#[allow(unsafe_code)]
mod tests {
    use super::*;
    use guest_abi::domctl::{Payload, XEN_DOMCTL_GETDOMAININFO, XEN_DOMINF_BLOCKED};
    use guest_abi::sysctl::{self as sc, XEN_SYSCTL_GETDOMAININFOLIST, XEN_SYSCTL_PHYSINFO};

    /// A hypervisor with `n` domains that answers the list and info
    /// queries and records every call.
    struct Fake {
        n: u16,
        calls: Vec<(u64, [u64; 5])>,
        /// Payloads seen, copied out of the callers' structures.
        remote: Vec<SchedRemoteShutdown>,
        domctl_cmds: Vec<(u32, DomId)>,
        offline_ops: Vec<sc::SysctlPageOfflineOp>,
        hotplug: Vec<sc::SysctlCpuHotplug>,
        /// Debug keys received.
        keys: Vec<u8>,
    }

    impl Raw for Fake {
        fn hypercall(&mut self, op: u64, arg: [u64; 5]) -> Result<u64, Errno> {
            self.calls.push((op, arg));
            match op {
                HYPERVISOR_DOMCTL => {
                    // SAFETY: `Xen` passes the address of a live, exclusively
                    // borrowed XenDomctl as the first argument.
                    let d = unsafe { &mut *(arg[0] as *mut XenDomctl) };
                    self.domctl_cmds.push((d.cmd, d.domain));
                    if d.cmd == XEN_DOMCTL_GETDOMAININFO {
                        if d.domain >= self.n {
                            return Err(Errno::ESRCH);
                        }
                        d.set_payload(&DomctlGetdomaininfo {
                            domain: d.domain,
                            shared_info_frame: 0x500 + u64::from(d.domain),
                            ..Default::default()
                        });
                    }
                    Ok(0)
                }
                HYPERVISOR_SYSCTL => {
                    // SAFETY: as above, a XenSysctl.
                    let s = unsafe { &mut *(arg[0] as *mut XenSysctl) };
                    match s.cmd {
                        XEN_SYSCTL_GETDOMAININFOLIST => {
                            let mut l: SysctlGetdomaininfolist = s.payload();
                            const RECORD: usize = core::mem::size_of::<DomctlGetdomaininfo>();
                            // SAFETY: the caller's buffer holds `max_domains`
                            // records and is borrowed for the call.
                            let buf = unsafe {
                                core::slice::from_raw_parts_mut(
                                    l.buffer as *mut u8,
                                    l.max_domains as usize * RECORD,
                                )
                            };
                            let ids: Vec<u16> = (l.first_domain..self.n)
                                .take(l.max_domains as usize)
                                .collect();
                            for (i, id) in ids.iter().enumerate() {
                                DomctlGetdomaininfo {
                                    domain: *id,
                                    flags: XEN_DOMINF_BLOCKED,
                                    tot_pages: 256,
                                    ..Default::default()
                                }
                                .encode_prefix(&mut buf[i * RECORD..])
                                .unwrap();
                            }
                            l.num_domains = ids.len() as u32;
                            s.set_payload(&l);
                        }
                        XEN_SYSCTL_PHYSINFO => s.set_payload(&SysctlPhysinfo {
                            nr_cpus: 2,
                            free_pages: 1000,
                            ..Default::default()
                        }),
                        sc::XEN_SYSCTL_PAGE_OFFLINE_OP => {
                            let p: sc::SysctlPageOfflineOp = s.payload();
                            self.offline_ops.push(p);
                            // Frame 0x10 is the hypervisor's: refused, with a status.
                            let (status, result) = if p.start == 0x10 {
                                (
                                    sc::PG_OFFLINE_FAILED | sc::PG_OFFLINE_XENPAGE,
                                    Err(Errno::EPERM),
                                )
                            } else if p.start > 0xFFFF {
                                // Beyond the machine: no status written.
                                return Err(Errno::EINVAL);
                            } else {
                                (sc::PG_OFFLINE_OFFLINED, Ok(0))
                            };
                            // SAFETY: `page_offline` passes one live, borrowed u32.
                            unsafe { *(p.status as *mut u32) = status };
                            return result;
                        }
                        sc::XEN_SYSCTL_XENIA_MEM_OFFLINE_INFO => {
                            s.set_payload(&sc::SysctlXeniaMemOfflineInfo {
                                offlined: 3,
                                pending: 1,
                            })
                        }
                        sc::XEN_SYSCTL_CPU_HOTPLUG => {
                            let c: sc::SysctlCpuHotplug = s.payload();
                            self.hotplug.push(c);
                            return Err(Errno::EOPNOTSUPP);
                        }
                        sc::XEN_SYSCTL_DEBUG_KEYS => {
                            let k: sc::SysctlDebugKeys = s.payload();
                            // SAFETY: `debug_keys` passes a live, borrowed slice of
                            // `nr_keys` bytes.
                            let keys = unsafe {
                                core::slice::from_raw_parts(k.keys as *const u8, k.nr_keys as usize)
                            };
                            self.keys.extend_from_slice(keys);
                        }
                        sc::XEN_SYSCTL_SCHEDULER_OP => {
                            let mut o: sc::SysctlSchedulerOp = s.payload();
                            if o.cpupool_id != 0 {
                                return Err(Errno::ESRCH);
                            }
                            (o.tslice_ms, o.ratelimit_us, o.vcpu_migr_delay_us) = (30, 0, 0);
                            s.set_payload(&o);
                        }
                        _ => return Err(Errno::ENOSYS),
                    }
                    Ok(0)
                }
                HYPERVISOR_SCHED_OP => {
                    // SAFETY: a live SchedRemoteShutdown.
                    self.remote
                        .push(unsafe { *(arg[1] as *const SchedRemoteShutdown) });
                    Ok(0)
                }
                HYPERVISOR_MEMORY_OP => {
                    // SAFETY: a live MemoryReservation whose extent array
                    // holds `nr_extents` entries.
                    let r = unsafe { &*(arg[1] as *const guest_abi::memory::MemoryReservation) };
                    let ext = unsafe {
                        // SAFETY: see above.
                        core::slice::from_raw_parts_mut(
                            r.extent_start as *mut u64,
                            r.nr_extents as usize,
                        )
                    };
                    for e in ext.iter_mut() {
                        *e += 0x1000;
                    }
                    // Run short when asked for more than 3.
                    Ok(r.nr_extents.min(3))
                }
                HYPERVISOR_EVENT_CHANNEL_OP => {
                    // SAFETY: a live EvtchnAllocUnbound.
                    let a = unsafe { &mut *(arg[1] as *mut guest_abi::event::EvtchnAllocUnbound) };
                    a.port = 7;
                    Ok(0)
                }
                _ => Err(Errno::ENOSYS),
            }
        }
    }

    fn xen(n: u16) -> Xen<Fake> {
        Xen::new(Fake {
            n,
            calls: vec![],
            remote: vec![],
            domctl_cmds: vec![],
            offline_ops: vec![],
            hotplug: vec![],
            keys: vec![],
        })
    }

    #[test]
    fn debug_keys_and_scheduler_params() {
        let mut x = xen(1);
        x.debug_keys(b"qm").unwrap();
        assert_eq!(x.raw.keys, b"qm");
        let too_many = vec![b'q'; guest_abi::sysctl::DEBUG_KEYS_MAX as usize + 1];
        let calls = x.raw.calls.len();
        assert_eq!(x.debug_keys(&too_many), Err(Errno::EINVAL));
        assert_eq!(x.raw.calls.len(), calls, "refused before any call");
        assert_eq!(x.sched_credit_params(0), Ok((30, 0, 0)));
        assert_eq!(x.sched_credit_params(1), Err(Errno::ESRCH));
    }

    #[test]
    fn page_offline_one_frame_and_its_status() {
        let mut x = xen(1);
        assert_eq!(
            x.page_offline(sc::SYSCTL_PAGE_OFFLINE, 0x1234),
            (Ok(()), sc::PG_OFFLINE_OFFLINED)
        );
        let op = x.raw.offline_ops[0];
        assert_eq!(
            (op.cmd, op.start, op.end),
            (sc::SYSCTL_PAGE_OFFLINE, 0x1234, 0x1234),
            "one frame, start = end"
        );
        // A refusal still carries the status the hypervisor wrote.
        assert_eq!(
            x.page_offline(sc::SYSCTL_PAGE_OFFLINE, 0x10),
            (
                Err(Errno::EPERM),
                sc::PG_OFFLINE_FAILED | sc::PG_OFFLINE_XENPAGE
            )
        );
        // None written: the tools see PG_OFFLINE_INVALID.
        assert_eq!(
            x.page_offline(sc::SYSCTL_QUERY_PAGE_OFFLINE, 0x10_0000),
            (Err(Errno::EINVAL), sc::PG_OFFLINE_INVALID)
        );
        assert_eq!(x.mem_offline_info(), Ok((3, 1)));
    }

    #[test]
    fn cpu_hotplug_encodes_xens_ops() {
        let mut x = xen(1);
        assert_eq!(x.cpu_hotplug(3, false), Err(Errno::EOPNOTSUPP));
        assert_eq!(x.cpu_hotplug(2, true), Err(Errno::EOPNOTSUPP));
        assert_eq!(
            x.raw.hotplug,
            [
                sc::SysctlCpuHotplug { cpu: 3, op: 1 },
                sc::SysctlCpuHotplug { cpu: 2, op: 0 }
            ]
        );
    }

    #[test]
    fn lists_domains_across_batches() {
        let mut x = xen(150);
        let doms = x.domains().unwrap();
        assert_eq!(doms.len(), 150);
        assert!(doms.iter().enumerate().all(|(i, d)| d.dom == i as u16));
        assert!(doms[3].blocked);
        assert_eq!(doms[3].memory_mib(), 1);
        // 64 + 64 + 22.
        assert_eq!(x.raw.calls.len(), 3);
        assert_eq!(xen(0).domains().unwrap(), vec![]);
    }

    #[test]
    fn queries_and_controls() {
        let mut x = xen(4);
        assert_eq!(x.physinfo().unwrap().nr_cpus, 2);
        assert_eq!(x.shared_info_frame(2), Ok(Mfn(0x502)));
        assert_eq!(x.domain_info(9).unwrap_err(), Errno::ESRCH);
        x.remote_shutdown(3, 1).unwrap();
        assert_eq!(
            x.raw.remote,
            [SchedRemoteShutdown {
                domain_id: 3,
                reason: 1
            }]
        );
        assert_eq!(
            x.raw.calls.last().unwrap().1[0],
            4,
            "SCHEDOP_remote_shutdown"
        );
        x.pause(3).unwrap();
        x.unpause(3).unwrap();
        x.destroy(3).unwrap();
        let cmds: Vec<u32> = x
            .raw
            .domctl_cmds
            .iter()
            .rev()
            .take(3)
            .map(|c| c.0)
            .collect();
        assert_eq!(cmds, [2, 4, 3], "destroy, unpause, pause");
        assert_eq!(x.alloc_unbound(3, 0), Ok(7));
    }

    #[test]
    fn populate_returns_frames_and_refuses_short_answers() {
        let mut x = xen(1);
        assert_eq!(
            x.populate(1, &[Pfn(0), Pfn(1)]),
            Ok(vec![Mfn(0x1000), Mfn(0x1001)])
        );
        assert_eq!(
            x.populate(1, &[Pfn(0), Pfn(1), Pfn(2), Pfn(3)]),
            Err(Errno::ENOMEM)
        );
    }

    #[test]
    fn write_frame_bounds() {
        let mut x = xen(1);
        assert_eq!(
            x.write_frame(1, Mfn(1), 4000, &[0; 200]),
            Err(Errno::EINVAL)
        );
        assert!(x.raw.calls.is_empty(), "refused before any call");
        x.write_frame(1, Mfn(1), 0, &[0; 4096]).unwrap();
        assert_eq!(x.raw.domctl_cmds, [(XEN_DOMCTL_XENIA_WRITE_FRAME, 1)]);
        let mut buf = [0u8; 8];
        assert_eq!(x.read_frame(1, Mfn(1), 4092, &mut buf), Err(Errno::EINVAL));
        x.read_frame(1, Mfn(1), 4088, &mut buf).unwrap();
        assert_eq!(
            x.raw.domctl_cmds,
            [
                (XEN_DOMCTL_XENIA_WRITE_FRAME, 1),
                (XEN_DOMCTL_XENIA_READ_FRAME, 1)
            ]
        );
    }
}
