//! System control (`sysctl`): the machine as a whole, for the toolstack.
//!
//! `sysctl(op)` takes the address of one [`XenSysctl`] (Xen's `struct
//! xen_sysctl`, 136 bytes): a command, the interface version and a 128-byte
//! union holding the command's argument. Numbers and layouts are Xen's
//! (`xen/include/public/sysctl.h`, x86-64). The rules of
//! [`domctl`](crate::domctl) apply: privileged callers only (`EPERM`),
//! `interface_version` must be [`XEN_SYSCTL_INTERFACE_VERSION`] (`EACCES`),
//! unknown commands are `ENOSYS`, an unreadable `op` or buffer is `EFAULT`,
//! and the structure is written back on success.
//!
//! | command | argument | what it does |
//! |---|---|---|
//! | [`XEN_SYSCTL_READCONSOLE`] | [`SysctlReadconsole`] | reads the hypervisor's log ring (`xl dmesg`) |
//! | [`XEN_SYSCTL_PHYSINFO`] | [`SysctlPhysinfo`] (OUT) | CPUs and memory (`xl info`) |
//! | [`XEN_SYSCTL_SCHED_ID`] | [`SysctlSchedId`] (OUT) | the scheduler: [`XEN_SCHEDULER_CREDIT`](crate::domctl::XEN_SCHEDULER_CREDIT) |
//! | [`XEN_SYSCTL_GETDOMAININFOLIST`] | [`SysctlGetdomaininfolist`] | information about every domain (`xl list`) |
//! | [`XEN_SYSCTL_PAGE_OFFLINE_OP`] | [`SysctlPageOfflineOp`] | takes machine frames out of use, brings them back, reports (`xen-hptool mem-*`) |
//! | [`XEN_SYSCTL_CPU_HOTPLUG`] | [`SysctlCpuHotplug`] (IN) | takes a pCPU out of scheduling and brings it back (`xen-hptool cpu-*`) |
//! | [`XEN_SYSCTL_GETCPUINFO`] | [`SysctlGetcpuinfo`] | each pCPU's idle time so far, in ns |
//! | [`XEN_SYSCTL_DEBUG_KEYS`] | [`SysctlDebugKeys`] (IN) | runs debug keys, as typed on the console (`xl debug-keys`) |
//! | [`XEN_SYSCTL_SCHEDULER_OP`] | [`SysctlSchedulerOp`] | the cpupool's credit parameters (`xl sched-credit -s`) |
//! | [`XEN_SYSCTL_XENIA_MEM_OFFLINE_INFO`] | [`SysctlXeniaMemOfflineInfo`] (OUT) | Xenia: how many frames are offlined or pending (`xl info`) |

use crate::domctl::{PayloadBytes, impl_payload};
use crate::types::DomId;

pub use crate::domctl::Payload;

/// Xenia's sysctl interface version: [`XenSysctl::interface_version`] must
/// hold exactly this, else the hypervisor answers `EACCES` (Xen's rule).
/// Like [`XEN_DOMCTL_INTERFACE_VERSION`](crate::domctl::XEN_DOMCTL_INTERFACE_VERSION)
/// it is Xenia's own: `0x5800` in the high half, a revision in the low half.
pub const XEN_SYSCTL_INTERFACE_VERSION: u32 = 0x5800_0001;

/// Read the hypervisor's log ring ([`SysctlReadconsole`]).
pub const XEN_SYSCTL_READCONSOLE: u32 = 1;
/// Trace-buffer control.
pub const XEN_SYSCTL_TBUF_OP: u32 = 2;
/// Physical machine information ([`SysctlPhysinfo`]).
pub const XEN_SYSCTL_PHYSINFO: u32 = 3;
/// Identify the scheduler ([`SysctlSchedId`]).
pub const XEN_SYSCTL_SCHED_ID: u32 = 4;
/// Performance counters.
pub const XEN_SYSCTL_PERFC_OP: u32 = 5;
/// Information about a range of domains ([`SysctlGetdomaininfolist`]).
pub const XEN_SYSCTL_GETDOMAININFOLIST: u32 = 6;
/// Inject debug keys ([`SysctlDebugKeys`]): each key is handled as if typed on the
/// hypervisor's console after the Ctrl-A switch (`xl debug-keys`); what the keys print goes
/// to the hypervisor's log (`xl dmesg`).
pub const XEN_SYSCTL_DEBUG_KEYS: u32 = 7;
/// Per-pCPU idle time ([`SysctlGetcpuinfo`]; libxc's `xc_getcpuinfo`).
pub const XEN_SYSCTL_GETCPUINFO: u32 = 8;
/// Free memory.
pub const XEN_SYSCTL_AVAILHEAP: u32 = 9;
/// Power-management statistics.
pub const XEN_SYSCTL_GET_PMSTAT: u32 = 10;
/// CPU hotplug ([`SysctlCpuHotplug`]): a pCPU offline or online (dom0 only, `EPERM`
/// otherwise).
///
/// Offline: `EINVAL` for a CPU that was never started or is offline already, `EBUSY` for
/// CPU 0 and for the last online CPU (Xen answers `EINVAL` for CPU 0; Xenia says "busy"
/// because the CPU exists and works, the hypervisor needs it). Every vCPU waiting on it
/// moves to another pCPU, and the call returns once no vCPU runs on it any more; from then
/// on no vCPU runs there, and [`SysctlPhysinfo::nr_cpus`] counts one CPU fewer. A vCPU whose
/// hard affinity held no other online pCPU has it reset to all pCPUs, as Xen does
/// ("Breaking affinity", logged). The CPU stays powered, halted in the hypervisor's idle
/// loop (it still answers TLB-flush IPIs, which costs nothing).
///
/// Online: `EINVAL` for a CPU never started or online already; it takes vCPUs again.
pub const XEN_SYSCTL_CPU_HOTPLUG: u32 = 11;
/// Power-management control.
pub const XEN_SYSCTL_PM_OP: u32 = 12;
/// Page offlining ([`SysctlPageOfflineOp`]).
pub const XEN_SYSCTL_PAGE_OFFLINE_OP: u32 = 14;
/// Lock profiling.
pub const XEN_SYSCTL_LOCKPROF_OP: u32 = 15;
/// CPU topology.
pub const XEN_SYSCTL_CPUTOPOINFO: u32 = 16;
/// NUMA information.
pub const XEN_SYSCTL_NUMAINFO: u32 = 17;
/// CPU pools.
pub const XEN_SYSCTL_CPUPOOL_OP: u32 = 18;
/// A cpupool's scheduler parameters ([`SysctlSchedulerOp`]; `xl sched-credit -s`).
pub const XEN_SYSCTL_SCHEDULER_OP: u32 = 19;

/// The argument of `sysctl` (Xen's `struct xen_sysctl`, 136 bytes).
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
#[repr(C)]
#[derive(zerocopy::FromBytes, zerocopy::IntoBytes, zerocopy::Immutable, zerocopy::KnownLayout)]
pub struct XenSysctl {
    /// IN: `XEN_SYSCTL_*`.
    pub cmd: u32,
    /// IN: [`XEN_SYSCTL_INTERFACE_VERSION`].
    pub interface_version: u32,
    /// IN/OUT: the command's argument structure.
    pub u: PayloadBytes,
}

impl XenSysctl {
    /// A request for `cmd` with argument `arg`, at the current interface
    /// version.
    pub fn new(cmd: u32, arg: &impl Payload) -> Self {
        Self {
            cmd,
            interface_version: XEN_SYSCTL_INTERFACE_VERSION,
            u: PayloadBytes(arg.encode()),
        }
    }

    /// Whether `interface_version` is the one this ABI defines (the
    /// hypervisor answers `EACCES` otherwise).
    pub const fn version_matches(&self) -> bool {
        self.interface_version == XEN_SYSCTL_INTERFACE_VERSION
    }

    /// The union read as `T` (the structure `cmd` names).
    pub fn payload<T: Payload>(&self) -> T {
        T::decode(&self.u.0)
    }

    /// Replaces the union with `arg`.
    pub fn set_payload(&mut self, arg: &impl Payload) {
        self.u = PayloadBytes(arg.encode());
    }
}

/// Argument of [`XEN_SYSCTL_READCONSOLE`] (Xen's `struct
/// xen_sysctl_readconsole`, 24 bytes).
///
/// The hypervisor keeps its log in a ring of bytes; every byte ever logged
/// has an index (counting from boot, wrapping at 2^32), and the ring holds
/// the most recent ones. Without `incremental` the copy starts at the oldest
/// byte still held; with it, at `index` (or the oldest held, if `index` has
/// been overwritten). Up to `count` bytes are copied to `buffer`; `count`
/// comes back as the number copied and `index` as the index after the last
/// byte copied, so the next incremental read continues there. With `clear`
/// the ring is emptied after the copy.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
#[repr(C)]
pub struct SysctlReadconsole {
    /// IN: non-zero to empty the ring after reading.
    pub clear: u8,
    /// IN: non-zero to start at `index`.
    pub incremental: u8,
    /// Padding.
    pub pad0: u8,
    /// Padding.
    pub pad1: u8,
    /// IN: where to start (with `incremental`); OUT: where the next read
    /// continues.
    pub index: u32,
    /// IN: virtual address, in the caller, of the buffer.
    pub buffer: u64,
    /// IN: size of the buffer; OUT: bytes written to it.
    pub count: u32,
    /// Padding.
    pub pad2: u32,
}
impl_payload!(SysctlReadconsole {
    clear,
    incremental,
    pad0,
    pad1,
    index,
    buffer,
    count,
    pad2,
});

/// [`SysctlPhysinfo::capabilities`]: HVM guests are supported (never under
/// Xenia).
pub const XEN_SYSCTL_PHYSCAP_HVM: u32 = 1 << 0;
/// [`SysctlPhysinfo::capabilities`]: PV guests are supported.
pub const XEN_SYSCTL_PHYSCAP_PV: u32 = 1 << 1;
/// [`SysctlPhysinfo::capabilities`]: device pass-through with an IOMMU.
pub const XEN_SYSCTL_PHYSCAP_DIRECTIO: u32 = 1 << 2;
/// [`SysctlPhysinfo::capabilities`]: hardware-assisted paging.
pub const XEN_SYSCTL_PHYSCAP_HAP: u32 = 1 << 3;
/// [`SysctlPhysinfo::capabilities`]: shadow paging.
pub const XEN_SYSCTL_PHYSCAP_SHADOW: u32 = 1 << 4;
/// [`SysctlPhysinfo::capabilities`]: IOMMU shares HAP page tables.
pub const XEN_SYSCTL_PHYSCAP_IOMMU_HAP_PT_SHARE: u32 = 1 << 5;
/// [`SysctlPhysinfo::capabilities`]: VM tracing.
pub const XEN_SYSCTL_PHYSCAP_VMTRACE: u32 = 1 << 6;
/// [`SysctlPhysinfo::capabilities`]: virtual PMU.
pub const XEN_SYSCTL_PHYSCAP_VPMU: u32 = 1 << 7;
/// [`SysctlPhysinfo::capabilities`]: grant tables version 1.
pub const XEN_SYSCTL_PHYSCAP_GNTTAB_V1: u32 = 1 << 8;
/// [`SysctlPhysinfo::capabilities`]: grant tables version 2.
pub const XEN_SYSCTL_PHYSCAP_GNTTAB_V2: u32 = 1 << 9;

/// Argument of [`XEN_SYSCTL_PHYSINFO`] (Xen's `struct xen_sysctl_physinfo`,
/// 112 bytes). All OUT.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
#[repr(C)]
pub struct SysctlPhysinfo {
    /// Hardware threads per core.
    pub threads_per_core: u32,
    /// Cores per socket.
    pub cores_per_socket: u32,
    /// pCPUs online.
    pub nr_cpus: u32,
    /// Highest pCPU id possible on this host.
    pub max_cpu_id: u32,
    /// NUMA nodes online (1: Xenia does not use NUMA).
    pub nr_nodes: u32,
    /// Highest node id (0).
    pub max_node_id: u32,
    /// TSC frequency in kHz.
    pub cpu_khz: u32,
    /// `XEN_SYSCTL_PHYSCAP_*`: Xenia reports [`XEN_SYSCTL_PHYSCAP_PV`] and
    /// [`XEN_SYSCTL_PHYSCAP_GNTTAB_V1`].
    pub capabilities: u32,
    /// Architecture-specific capabilities: 0.
    pub arch_capabilities: u32,
    /// Padding.
    pub pad: u32,
    /// Frames of RAM the hypervisor manages.
    pub total_pages: u64,
    /// Frames free.
    pub free_pages: u64,
    /// Frames waiting to be scrubbed: 0 (Xenia scrubs free memory at boot and a domain's frames
    /// as they are freed, before they count as free).
    pub scrub_pages: u64,
    /// Frames claimed but not allocated: 0.
    pub outstanding_pages: u64,
    /// Highest machine frame number of RAM.
    pub max_mfn: u64,
    /// CPUID feature words of the boot CPU (Xen's `hw_cap`).
    pub hw_cap: [u32; 8],
}
impl_payload!(SysctlPhysinfo {
    threads_per_core,
    cores_per_socket,
    nr_cpus,
    max_cpu_id,
    nr_nodes,
    max_node_id,
    cpu_khz,
    capabilities,
    arch_capabilities,
    pad,
    total_pages,
    free_pages,
    scrub_pages,
    outstanding_pages,
    max_mfn,
    hw_cap,
});

/// Argument of [`XEN_SYSCTL_SCHED_ID`] (Xen's `struct xen_sysctl_sched_id`,
/// 4 bytes).
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
#[repr(C)]
pub struct SysctlSchedId {
    /// OUT: `XEN_SCHEDULER_*` ([`XEN_SCHEDULER_CREDIT`](crate::domctl::XEN_SCHEDULER_CREDIT)).
    pub sched_id: u32,
}
impl_payload!(SysctlSchedId { sched_id });

/// Argument of [`XEN_SYSCTL_GETDOMAININFOLIST`] (Xen's `struct
/// xen_sysctl_getdomaininfolist`, 24 bytes).
///
/// Writes one [`DomctlGetdomaininfo`](crate::domctl::DomctlGetdomaininfo)
/// record (112 bytes each, back to back) for each existing domain whose id
/// is at least `first_domain`, in increasing id order, until `max_domains`
/// records are written; dying domains are included (with
/// `XEN_DOMINF_DYING`). To list everything, start at 0 and continue from the
/// last id + 1 while a call fills the buffer.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
#[repr(C)]
pub struct SysctlGetdomaininfolist {
    /// IN: the lowest id to report.
    pub first_domain: DomId,
    /// Padding.
    pub _pad: u16,
    /// IN: capacity of the buffer, in records.
    pub max_domains: u32,
    /// IN: virtual address, in the caller, of the record buffer.
    pub buffer: u64,
    /// OUT: records written.
    pub num_domains: u32,
    /// Padding.
    pub _pad2: u32,
}
impl_payload!(SysctlGetdomaininfolist {
    first_domain,
    _pad,
    max_domains,
    buffer,
    num_domains,
    _pad2,
});

/// The most keys one [`XEN_SYSCTL_DEBUG_KEYS`] takes; more is `EINVAL` (Xenia's bound: Xen
/// has none, but every key runs with the domains locked, so a call stays short).
pub const DEBUG_KEYS_MAX: u32 = 256;

/// Argument of [`XEN_SYSCTL_DEBUG_KEYS`] (Xen's `struct xen_sysctl_debug_keys`, 16 bytes).
/// All IN.
///
/// The keys are read from the caller (`EFAULT` if they cannot be) and handled in order;
/// unknown keys print the debug keys' help, as typed ones do. Nothing is written back.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
#[repr(C)]
pub struct SysctlDebugKeys {
    /// Virtual address, in the caller, of the keys (bytes).
    pub keys: u64,
    /// How many, at most [`DEBUG_KEYS_MAX`].
    pub nr_keys: u32,
    /// Padding.
    pub _pad: u32,
}
impl_payload!(SysctlDebugKeys {
    keys,
    nr_keys,
    _pad
});

/// [`SysctlSchedulerOp::cmd`]: set the parameters (Xen's `XEN_SYSCTL_SCHEDOP_putinfo`).
pub const XEN_SYSCTL_SCHEDOP_PUTINFO: u32 = 0;
/// [`SysctlSchedulerOp::cmd`]: read them (Xen's `XEN_SYSCTL_SCHEDOP_getinfo`).
pub const XEN_SYSCTL_SCHEDOP_GETINFO: u32 = 1;

/// Argument of [`XEN_SYSCTL_SCHEDULER_OP`] (Xen's `struct xen_sysctl_scheduler_op` with
/// its credit member, `struct xen_sysctl_credit_schedule`; 32 bytes).
///
/// Xenia has one cpupool, id 0 (`Pool-0` in xl), run by the credit scheduler: another
/// `cpupool_id` is `ESRCH`, another `sched_id` than
/// [`XEN_SCHEDULER_CREDIT`](crate::domctl::XEN_SCHEDULER_CREDIT) `EINVAL` (Xen's answers).
/// [`XEN_SYSCTL_SCHEDOP_GETINFO`] fills the three credit fields: the time slice (30 ms,
/// Xen's default), and 0 for the rate limit and the migration delay, which Xenia's
/// scheduler does not have (0 is what Xen reports when they are off).
/// [`XEN_SYSCTL_SCHEDOP_PUTINFO`] is `EOPNOTSUPP`: the slice is fixed when the hypervisor
/// is built. Other commands are `EINVAL`.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
#[repr(C)]
pub struct SysctlSchedulerOp {
    /// IN: the cpupool (0).
    pub cpupool_id: u32,
    /// IN: `XEN_SCHEDULER_*`.
    pub sched_id: u32,
    /// IN: `XEN_SYSCTL_SCHEDOP_*`.
    pub cmd: u32,
    /// Padding (Xen's union is 8-byte aligned).
    pub _pad: u32,
    /// IN (putinfo) / OUT (getinfo): the time slice, in milliseconds.
    pub tslice_ms: u32,
    /// IN / OUT: the least time a vCPU runs before it may be preempted, in microseconds
    /// (0: no rate limit).
    pub ratelimit_us: u32,
    /// IN / OUT: how long a vCPU stays cache-hot on the pCPU it ran on, in microseconds.
    pub vcpu_migr_delay_us: u32,
    /// Padding (the rest of Xen's union).
    pub _pad2: u32,
}
impl_payload!(SysctlSchedulerOp {
    cpupool_id,
    sched_id,
    cmd,
    _pad,
    tslice_ms,
    ratelimit_us,
    vcpu_migr_delay_us,
    _pad2,
});

/// Xenia: the hypervisor's heap and what one domain is charged for (dom0 only, like every
/// `sysctl`). Argument: [`SysctlXeniaHeapInfo`].
///
/// Hypervisor memory used on a domain's behalf (its vCPUs, event channels, grant
/// mappings, console state) is charged to that domain against a limit set when it is
/// created; a request past the limit fails with `ENOMEM` (or the operation's own "no
/// space" status) instead of exhausting the heap. The heap itself grows from the frame
/// allocator when it runs low.
pub const XEN_SYSCTL_XENIA_HEAP_INFO: u32 = 0x5800;

/// Argument of [`XEN_SYSCTL_XENIA_HEAP_INFO`] (40 bytes).
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
#[repr(C)]
pub struct SysctlXeniaHeapInfo {
    /// IN: the domain whose charge to report; `DOMID_INVALID` for none (the charge fields
    /// come back zero). `ESRCH` if there is no such domain.
    pub domid: DomId,
    /// Padding.
    pub _pad: [u16; 3],
    /// OUT: bytes under the heap allocator (it grows from free frames as needed).
    pub heap_total: u64,
    /// OUT: bytes of the heap in use.
    pub heap_used: u64,
    /// OUT: bytes charged to `domid`.
    pub charged: u64,
    /// OUT: the most that may be charged to `domid`.
    pub limit: u64,
}
impl_payload!(SysctlXeniaHeapInfo {
    domid,
    _pad,
    heap_total,
    heap_used,
    charged,
    limit,
});

/// [`SysctlPageOfflineOp::cmd`]: take the frames out of use (Xen's `sysctl_page_offline`).
pub const SYSCTL_PAGE_OFFLINE: u32 = 1;
/// [`SysctlPageOfflineOp::cmd`]: bring offlined frames back, or cancel a pending offline
/// (Xen's `sysctl_page_online`).
pub const SYSCTL_PAGE_ONLINE: u32 = 2;
/// [`SysctlPageOfflineOp::cmd`]: report each frame's state (Xen's
/// `sysctl_query_page_offline`).
pub const SYSCTL_QUERY_PAGE_OFFLINE: u32 = 3;

/// Status word, offline/online results: the low byte (Xen's `PG_OFFLINE_STATUS_MASK`).
pub const PG_OFFLINE_STATUS_MASK: u32 = 0xFF;
/// Status word: not handled (what every entry holds before the hypervisor reaches it; the
/// entries after the one that failed keep it).
pub const PG_OFFLINE_INVALID: u32 = 1 << 0;
/// Offline result: the frame is out of use, for good until onlined.
pub const PG_OFFLINE_OFFLINED: u32 = 1 << 1;
/// Offline result: the frame is in use (by [`PG_OFFLINE_OWNED`] domain); it leaves when
/// its owner frees it.
pub const PG_OFFLINE_PENDING: u32 = 1 << 2;
/// Offline result: refused (the reason in the bits above the low byte).
pub const PG_OFFLINE_FAILED: u32 = 1 << 3;
/// Offline result: try again (Xen: a broken frame still owned). Xenia never answers it.
pub const PG_OFFLINE_AGAIN: u32 = 1 << 4;
/// Online result: refused.
pub const PG_ONLINE_FAILED: u32 = PG_OFFLINE_FAILED;
/// Online result: the frame is back in the allocator, or its pending offline cancelled.
pub const PG_ONLINE_ONLINED: u32 = PG_OFFLINE_OFFLINED;
/// Query result: the frame is offlined.
pub const PG_OFFLINE_STATUS_OFFLINED: u32 = 1 << 1;
/// Query result: online (Xen defines it but its query never sets it; neither does Xenia's:
/// a frame online answers 0).
pub const PG_OFFLINE_STATUS_ONLINE: u32 = 1 << 2;
/// Query result: offline requested, waiting for the owner to free the frame.
pub const PG_OFFLINE_STATUS_OFFLINE_PENDING: u32 = 1 << 3;
/// Query result: marked broken by machine-check handling (never, under Xenia).
pub const PG_OFFLINE_STATUS_BROKEN: u32 = 1 << 4;
/// Status word: the reason bits (Xen's `PG_OFFLINE_MISC_MASK`).
pub const PG_OFFLINE_MISC_MASK: u32 = 0xFF << 4;
/// Reason: the hypervisor's own frame (its heap, its page tables, the M2P table, a guest
/// root, a frame it holds to write on a domain's behalf such as `shared_info`), or a frame
/// the allocator never had (the image, the modules). With [`PG_OFFLINE_FAILED`].
pub const PG_OFFLINE_XENPAGE: u32 = 1 << 8;
/// Reason: dom0's frame (Xen defines it; Xenia treats dom0 as any owner and never sets it).
pub const PG_OFFLINE_DOM0PAGE: u32 = 1 << 9;
/// Reason: in use but owned by no one (Xen; never under Xenia).
pub const PG_OFFLINE_ANONYMOUS: u32 = 1 << 10;
/// Reason: not conventional RAM (Xen; Xenia reports frames the allocator never had as
/// [`PG_OFFLINE_XENPAGE`]).
pub const PG_OFFLINE_NOT_CONV_RAM: u32 = 1 << 11;
/// Reason: owned by a domain, whose id is in the bits from [`PG_OFFLINE_OWNER_SHIFT`]. With
/// [`PG_OFFLINE_PENDING`].
pub const PG_OFFLINE_OWNED: u32 = 1 << 12;
/// The frame is broken (never under Xenia).
pub const PG_OFFLINE_BROKEN: u32 = 1 << 13;
/// Online result: broken (never under Xenia).
pub const PG_ONLINE_BROKEN: u32 = PG_OFFLINE_BROKEN;
/// Status word: the owner's domain id is in bits 16–31 (`DOMID_XEN` for the hypervisor).
pub const PG_OFFLINE_OWNER_SHIFT: u32 = 16;

/// The most frames one [`XEN_SYSCTL_PAGE_OFFLINE_OP`] covers (`end - start + 1`); a larger
/// range is `EINVAL` (Xenia's bound: Xen has none, and allocates the status array whole).
/// The tools split larger ranges.
pub const PAGE_OFFLINE_MAX_FRAMES: u32 = 4096;

/// Argument of [`XEN_SYSCTL_PAGE_OFFLINE_OP`] (Xen's `struct xen_sysctl_page_offline_op`,
/// 24 bytes).
///
/// For each machine frame `start..=end`, in order, the command (`SYSCTL_*`) is applied and
/// a status word written to `status[mfn - start]` (a `u32` array in the caller): the low
/// bits are the `PG_OFFLINE_*` result, bits 16–31 the owner's domain id where one is
/// reported.
///
/// - [`SYSCTL_PAGE_OFFLINE`] — a free frame is taken out at once
///   ([`PG_OFFLINE_OFFLINED`]) and the allocator never hands it out again; a frame a domain
///   owns is marked ([`PG_OFFLINE_PENDING`] `|` [`PG_OFFLINE_OWNED`] `|` owner) and is taken
///   out when the domain frees it (`XENMEM_decrease_reservation`, its destruction); the
///   hypervisor's own frames are refused ([`PG_OFFLINE_FAILED`] `|` [`PG_OFFLINE_XENPAGE`]
///   `|` `DOMID_XEN` as owner) with `EPERM`. Offlining an offlined or pending frame again
///   answers the same state.
/// - [`SYSCTL_PAGE_ONLINE`] — an offlined frame goes back to the allocator, a pending offline
///   is cancelled ([`PG_ONLINE_ONLINED`] both); a frame online answers 0.
/// - [`SYSCTL_QUERY_PAGE_OFFLINE`] — [`PG_OFFLINE_STATUS_OFFLINED`],
///   [`PG_OFFLINE_STATUS_OFFLINE_PENDING`], or 0 for a frame in use normally.
///
/// Errors: `EINVAL` for `end < start`, a range of more than [`PAGE_OFFLINE_MAX_FRAMES`], an
/// unknown `cmd`, or a frame beyond the machine's last (processing stops there: that frame's
/// status and those after it stay [`PG_OFFLINE_INVALID`]); `EPERM` when a frame is refused
/// (processing stops after writing its status); `EFAULT` if `status` cannot be written. The
/// status array is written in every case but `EFAULT`, as Xen does, for every entry.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
#[repr(C)]
pub struct SysctlPageOfflineOp {
    /// IN: `SYSCTL_PAGE_OFFLINE`, `SYSCTL_PAGE_ONLINE` or `SYSCTL_QUERY_PAGE_OFFLINE`.
    pub cmd: u32,
    /// IN: first machine frame number.
    pub start: u32,
    /// IN: last machine frame number (inclusive).
    pub end: u32,
    /// Padding (Xen's handle is 8-byte aligned).
    pub _pad: u32,
    /// IN: virtual address, in the caller, of `end - start + 1` status words (OUT).
    pub status: u64,
}
impl_payload!(SysctlPageOfflineOp {
    cmd,
    start,
    end,
    _pad,
    status,
});

/// [`SysctlCpuHotplug::op`]: bring the CPU online (Xen's `XEN_SYSCTL_CPU_HOTPLUG_ONLINE`).
pub const XEN_SYSCTL_CPU_HOTPLUG_ONLINE: u32 = 0;
/// [`SysctlCpuHotplug::op`]: take the CPU offline (Xen's `XEN_SYSCTL_CPU_HOTPLUG_OFFLINE`).
pub const XEN_SYSCTL_CPU_HOTPLUG_OFFLINE: u32 = 1;

/// Argument of [`XEN_SYSCTL_CPU_HOTPLUG`] (Xen's `struct xen_sysctl_cpu_hotplug`, 8 bytes).
/// All IN.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
#[repr(C)]
pub struct SysctlCpuHotplug {
    /// The CPU's index, as `xl info` and `xl vcpu-list` number them.
    pub cpu: u32,
    /// [`XEN_SYSCTL_CPU_HOTPLUG_ONLINE`] or [`XEN_SYSCTL_CPU_HOTPLUG_OFFLINE`].
    pub op: u32,
}
impl_payload!(SysctlCpuHotplug { cpu, op });

/// Xenia: how many frames are offlined and how many wait to be (dom0 only). Argument:
/// [`SysctlXeniaMemOfflineInfo`]. Xen's `physinfo` has no such count; `xl info` shows it
/// in a Xenia line of its own.
pub const XEN_SYSCTL_XENIA_MEM_OFFLINE_INFO: u32 = 0x5801;

/// Argument of [`XEN_SYSCTL_XENIA_MEM_OFFLINE_INFO`] (16 bytes). All OUT.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
#[repr(C)]
pub struct SysctlXeniaMemOfflineInfo {
    /// Frames offlined (out of the allocator, or to be skipped by it).
    pub offlined: u64,
    /// Frames still owned by a domain whose offline is pending.
    pub pending: u64,
}
impl_payload!(SysctlXeniaMemOfflineInfo { offlined, pending });

/// Argument of [`XEN_SYSCTL_GETCPUINFO`] (Xen's `struct xen_sysctl_getcpuinfo`, 24 bytes).
///
/// The hypervisor writes one [`SysctlCpuinfo`] for each pCPU index `0..min(max_cpus, n)`,
/// where `n` is one more than the highest pCPU index the machine has, into the array at
/// `info`, and `nr_cpus` comes back as how many it wrote. A pCPU that never ran (or was
/// never started) reads 0. Idle time is what the pCPU spent halted in the hypervisor's idle
/// loop, counted to the moment of the call when it is halted then (Xen's
/// `get_cpu_idle_time`: the idle vCPU's running time). In nanoseconds of system time.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
#[repr(C)]
pub struct SysctlGetcpuinfo {
    /// IN: how many records `info` has room for.
    pub max_cpus: u32,
    /// Padding (`info` is 8-byte aligned).
    pub pad0: u32,
    /// IN: virtual address, in the caller, of an array of [`SysctlCpuinfo`].
    pub info: u64,
    /// OUT: how many records were written.
    pub nr_cpus: u32,
    /// Padding.
    pub pad1: u32,
}
impl_payload!(SysctlGetcpuinfo {
    max_cpus,
    pad0,
    info,
    nr_cpus,
    pad1,
});

/// One record of [`SysctlGetcpuinfo::info`] (Xen's `struct xen_sysctl_cpuinfo`, 8 bytes).
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
#[repr(C)]
#[derive(zerocopy::FromBytes, zerocopy::IntoBytes, zerocopy::Immutable, zerocopy::KnownLayout)]
pub struct SysctlCpuinfo {
    /// OUT: nanoseconds this pCPU has been idle since boot.
    pub idletime: u64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domctl::DomctlGetdomaininfo;

    #[test]
    fn numbers_match_xen() {
        let xen = [
            (XEN_SYSCTL_READCONSOLE, 1),
            (XEN_SYSCTL_TBUF_OP, 2),
            (XEN_SYSCTL_PHYSINFO, 3),
            (XEN_SYSCTL_SCHED_ID, 4),
            (XEN_SYSCTL_PERFC_OP, 5),
            (XEN_SYSCTL_GETDOMAININFOLIST, 6),
            (XEN_SYSCTL_DEBUG_KEYS, 7),
            (XEN_SYSCTL_GETCPUINFO, 8),
            (XEN_SYSCTL_AVAILHEAP, 9),
            (XEN_SYSCTL_GET_PMSTAT, 10),
            (XEN_SYSCTL_CPU_HOTPLUG, 11),
            (XEN_SYSCTL_PM_OP, 12),
            (XEN_SYSCTL_PAGE_OFFLINE_OP, 14),
            (XEN_SYSCTL_LOCKPROF_OP, 15),
            (XEN_SYSCTL_CPUTOPOINFO, 16),
            (XEN_SYSCTL_NUMAINFO, 17),
            (XEN_SYSCTL_CPUPOOL_OP, 18),
            (XEN_SYSCTL_SCHEDULER_OP, 19),
            (XEN_SYSCTL_PHYSCAP_HVM, 1),
            (XEN_SYSCTL_PHYSCAP_PV, 2),
            (XEN_SYSCTL_PHYSCAP_DIRECTIO, 4),
            (XEN_SYSCTL_PHYSCAP_HAP, 8),
            (XEN_SYSCTL_PHYSCAP_SHADOW, 16),
            (XEN_SYSCTL_PHYSCAP_IOMMU_HAP_PT_SHARE, 32),
            (XEN_SYSCTL_PHYSCAP_VMTRACE, 64),
            (XEN_SYSCTL_PHYSCAP_VPMU, 128),
            (XEN_SYSCTL_PHYSCAP_GNTTAB_V1, 256),
            (XEN_SYSCTL_PHYSCAP_GNTTAB_V2, 512),
            (SYSCTL_PAGE_OFFLINE, 1),
            (SYSCTL_PAGE_ONLINE, 2),
            (SYSCTL_QUERY_PAGE_OFFLINE, 3),
            (PG_OFFLINE_STATUS_MASK, 0xFF),
            (PG_OFFLINE_INVALID, 0x1),
            (PG_OFFLINE_OFFLINED, 0x2),
            (PG_OFFLINE_PENDING, 0x4),
            (PG_OFFLINE_FAILED, 0x8),
            (PG_OFFLINE_AGAIN, 0x10),
            (PG_ONLINE_FAILED, 0x8),
            (PG_ONLINE_ONLINED, 0x2),
            (PG_OFFLINE_STATUS_OFFLINED, 0x2),
            (PG_OFFLINE_STATUS_ONLINE, 0x4),
            (PG_OFFLINE_STATUS_OFFLINE_PENDING, 0x8),
            (PG_OFFLINE_STATUS_BROKEN, 0x10),
            (PG_OFFLINE_MISC_MASK, 0xFF0),
            (PG_OFFLINE_XENPAGE, 0x100),
            (PG_OFFLINE_DOM0PAGE, 0x200),
            (PG_OFFLINE_ANONYMOUS, 0x400),
            (PG_OFFLINE_NOT_CONV_RAM, 0x800),
            (PG_OFFLINE_OWNED, 0x1000),
            (PG_OFFLINE_BROKEN, 0x2000),
            (PG_ONLINE_BROKEN, 0x2000),
            (PG_OFFLINE_OWNER_SHIFT, 16),
            (XEN_SYSCTL_CPU_HOTPLUG_ONLINE, 0),
            (XEN_SYSCTL_CPU_HOTPLUG_OFFLINE, 1),
            (XEN_SYSCTL_SCHEDOP_PUTINFO, 0),
            (XEN_SYSCTL_SCHEDOP_GETINFO, 1),
        ];
        for (ours, theirs) in xen {
            assert_eq!(ours, theirs);
        }
        assert_eq!(XEN_SYSCTL_INTERFACE_VERSION >> 16, 0x5800);
    }

    #[test]
    fn layouts_match_xen() {
        assert_layout!(XenSysctl, 136, 8, { cmd: 0, interface_version: 4, u: 8 });
        assert_layout!(SysctlReadconsole, 24, 8, {
            clear: 0,
            incremental: 1,
            pad0: 2,
            pad1: 3,
            index: 4,
            buffer: 8,
            count: 16,
        });
        assert_layout!(SysctlPhysinfo, 112, 8, {
            threads_per_core: 0,
            cores_per_socket: 4,
            nr_cpus: 8,
            max_cpu_id: 12,
            nr_nodes: 16,
            max_node_id: 20,
            cpu_khz: 24,
            capabilities: 28,
            arch_capabilities: 32,
            pad: 36,
            total_pages: 40,
            free_pages: 48,
            scrub_pages: 56,
            outstanding_pages: 64,
            max_mfn: 72,
            hw_cap: 80,
        });
        assert_layout!(SysctlSchedId, 4, 4, { sched_id: 0 });
        assert_layout!(SysctlGetcpuinfo, 24, 8, {
            max_cpus: 0,
            info: 8,
            nr_cpus: 16
        });
        assert_layout!(SysctlCpuinfo, 8, 8, { idletime: 0 });
        assert_layout!(SysctlPageOfflineOp, 24, 8, {
            cmd: 0,
            start: 4,
            end: 8,
            status: 16,
        });
        assert_layout!(SysctlXeniaMemOfflineInfo, 16, 8, { offlined: 0, pending: 8 });
        assert_layout!(SysctlCpuHotplug, 8, 4, { cpu: 0, op: 4 });
        assert_layout!(SysctlDebugKeys, 16, 8, { keys: 0, nr_keys: 8 });
        assert_layout!(SysctlSchedulerOp, 32, 4, {
            cpupool_id: 0,
            sched_id: 4,
            cmd: 8,
            tslice_ms: 16,
            ratelimit_us: 20,
            vcpu_migr_delay_us: 24,
        });
        assert_layout!(SysctlGetdomaininfolist, 24, 8, {
            first_domain: 0,
            max_domains: 4,
            buffer: 8,
            num_domains: 16,
        });
    }

    #[test]
    fn payloads_round_trip() {
        let p = SysctlPhysinfo {
            threads_per_core: 1,
            cores_per_socket: 4,
            nr_cpus: 4,
            max_cpu_id: 3,
            nr_nodes: 1,
            cpu_khz: 2_400_000,
            capabilities: XEN_SYSCTL_PHYSCAP_PV | XEN_SYSCTL_PHYSCAP_GNTTAB_V1,
            total_pages: 0x40000,
            free_pages: 0x30000,
            max_mfn: 0x4_0000,
            hw_cap: [1, 2, 3, 4, 5, 6, 7, 8],
            ..Default::default()
        };
        let s = XenSysctl::new(XEN_SYSCTL_PHYSINFO, &p);
        assert!(s.version_matches());
        assert_eq!(s.u.0[28], 0x02);
        assert_eq!(s.u.0[29], 0x01);
        assert_eq!(s.u.0[40..48], 0x40000u64.to_le_bytes());
        assert_eq!(s.u.0[80..84], 1u32.to_le_bytes());
        assert_eq!(s.u.0[108..112], 8u32.to_le_bytes());
        assert_eq!(s.payload::<SysctlPhysinfo>(), p);

        let r = SysctlReadconsole {
            clear: 1,
            incremental: 1,
            index: 77,
            buffer: 0x1000,
            count: 4096,
            ..Default::default()
        };
        let raw = r.encode();
        assert_eq!(raw[..2], [1, 1]);
        assert_eq!(raw[4..8], 77u32.to_le_bytes());
        assert_eq!(raw[8..16], 0x1000u64.to_le_bytes());
        assert_eq!(raw[16..20], 4096u32.to_le_bytes());
        assert_eq!(SysctlReadconsole::decode(&raw), r);

        let l = SysctlGetdomaininfolist {
            first_domain: 5,
            max_domains: 64,
            buffer: 0xdead_0000,
            num_domains: 3,
            ..Default::default()
        };
        let mut s = XenSysctl::new(XEN_SYSCTL_GETDOMAININFOLIST, &l);
        assert_eq!(s.u.0[..2], 5u16.to_le_bytes());
        assert_eq!(s.u.0[4..8], 64u32.to_le_bytes());
        assert_eq!(s.payload::<SysctlGetdomaininfolist>(), l);
        s.set_payload(&SysctlSchedId { sched_id: 5 });
        assert_eq!(s.payload::<SysctlSchedId>().sched_id, 5);
    }

    #[test]
    fn domain_list_records_are_getdomaininfo() {
        // A buffer of two records, as the hypervisor writes it.
        let mut buf = [0u8; 2 * 112];
        for (i, id) in [1u16, 4].into_iter().enumerate() {
            let rec = DomctlGetdomaininfo {
                domain: id,
                tot_pages: u64::from(id) * 100,
                ..Default::default()
            };
            rec.encode_prefix(&mut buf[i * 112..]).unwrap();
        }
        let ids: Vec<_> = buf
            .chunks_exact(112)
            .map(|r| DomctlGetdomaininfo::decode_prefix(r).unwrap())
            .map(|r| (r.domain, r.tot_pages))
            .collect();
        assert_eq!(ids, [(1, 100), (4, 400)]);
    }
}
