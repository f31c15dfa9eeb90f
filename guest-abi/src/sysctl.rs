//! System-control command numbers (`sysctl`), as constants only.
//!
//! `sysctl` queries and controls the machine as a whole; only a privileged
//! domain (dom0) may issue it. Numbers are Xen's
//! (`xen/include/public/sysctl.h`); the argument structures are defined with
//! the toolstack.

/// Read the hypervisor's log ring (`xl dmesg`).
pub const XEN_SYSCTL_READCONSOLE: u32 = 1;
/// Trace-buffer control.
pub const XEN_SYSCTL_TBUF_OP: u32 = 2;
/// Physical machine information (CPUs, memory).
pub const XEN_SYSCTL_PHYSINFO: u32 = 3;
/// Identify the scheduler.
pub const XEN_SYSCTL_SCHED_ID: u32 = 4;
/// Performance counters.
pub const XEN_SYSCTL_PERFC_OP: u32 = 5;
/// Information about a range of domains (`xl list`).
pub const XEN_SYSCTL_GETDOMAININFOLIST: u32 = 6;
/// Inject debug keys.
pub const XEN_SYSCTL_DEBUG_KEYS: u32 = 7;
/// Per-pCPU idle time.
pub const XEN_SYSCTL_GETCPUINFO: u32 = 8;
/// Free memory.
pub const XEN_SYSCTL_AVAILHEAP: u32 = 9;
/// Power-management statistics.
pub const XEN_SYSCTL_GET_PMSTAT: u32 = 10;
/// CPU hotplug.
pub const XEN_SYSCTL_CPU_HOTPLUG: u32 = 11;
/// Power-management control.
pub const XEN_SYSCTL_PM_OP: u32 = 12;
/// Page offlining.
pub const XEN_SYSCTL_PAGE_OFFLINE_OP: u32 = 14;
/// Lock profiling.
pub const XEN_SYSCTL_LOCKPROF_OP: u32 = 15;
/// CPU topology.
pub const XEN_SYSCTL_CPUTOPOINFO: u32 = 16;
/// NUMA information.
pub const XEN_SYSCTL_NUMAINFO: u32 = 17;
/// CPU pools.
pub const XEN_SYSCTL_CPUPOOL_OP: u32 = 18;
/// System-wide scheduler parameters.
pub const XEN_SYSCTL_SCHEDULER_OP: u32 = 19;

#[cfg(test)]
mod tests {
    use super::*;

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
        ];
        for (ours, theirs) in xen {
            assert_eq!(ours, theirs);
        }
    }
}
