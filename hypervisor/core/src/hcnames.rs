//! Xen's names for hypercalls and their sub-ops, for log lines (`xen/include/public/xen.h`,
//! `vcpu.h`, `memory.h`, `sched.h`, `physdev.h`, `version.h`): what an operator greps a log
//! for when a guest asks for something Xenia does not have.

/// Hypercall names by number (`__HYPERVISOR_*`, 0–42).
const NAMES: [&str; 43] = [
    "set_trap_table",
    "mmu_update",
    "set_gdt",
    "stack_switch",
    "set_callbacks",
    "fpu_taskswitch",
    "sched_op_compat",
    "platform_op",
    "set_debugreg",
    "get_debugreg",
    "update_descriptor",
    "ni_hypercall_11",
    "memory_op",
    "multicall",
    "update_va_mapping",
    "set_timer_op",
    "event_channel_op_compat",
    "xen_version",
    "console_io",
    "physdev_op_compat",
    "grant_table_op",
    "vm_assist",
    "update_va_mapping_otherdomain",
    "iret",
    "vcpu_op",
    "set_segment_base",
    "mmuext_op",
    "xsm_op",
    "nmi_op",
    "sched_op",
    "callback_op",
    "xenoprof_op",
    "event_channel_op",
    "physdev_op",
    "hvm_op",
    "sysctl",
    "domctl",
    "kexec_op",
    "tmem_op",
    "argo_op",
    "xenpmu_op",
    "dm_op",
    "hypfs_op",
];

/// The name of hypercall `number` (`"unknown"` past Xen's list).
pub fn name(number: u64) -> &'static str {
    usize::try_from(number)
        .ok()
        .and_then(|n| NAMES.get(n))
        .copied()
        .unwrap_or("unknown")
}

/// For a hypercall whose first argument is a sub-op: `Some(name)` for the sub-ops named
/// here, `Some(None)` for one not named; `None` for a hypercall without sub-ops.
pub fn sub_op_name(number: u64, sub: u64) -> Option<Option<&'static str>> {
    let list: &[&str] = match number {
        // memory_op: the command is the low bits (a continuation's extent is above them).
        12 => {
            return Some(name_in(&MEMORY_OP, sub & 0x3F));
        }
        17 => &XEN_VERSION,
        24 => &VCPU_OP,
        29 => &SCHED_OP,
        33 => &PHYSDEV_OP,
        5 | 15 | 23 | 25 | 3 | 4 | 0 | 1 | 13 | 14 | 26 => return None,
        _ => return Some(None),
    };
    Some(name_in(list, sub))
}

fn name_in(list: &[&'static str], sub: u64) -> Option<&'static str> {
    usize::try_from(sub)
        .ok()
        .and_then(|n| list.get(n))
        .copied()
        .filter(|n| !n.is_empty())
}

const MEMORY_OP: [&str; 29] = [
    "increase_reservation",
    "decrease_reservation",
    "maximum_ram_page",
    "current_reservation",
    "maximum_reservation",
    "machphys_mfn_list",
    "populate_physmap",
    "add_to_physmap",
    "",
    "memory_map",
    "machine_memory_map",
    "exchange",
    "machphys_mapping",
    "set_memory_map",
    "maximum_gpfn",
    "remove_from_physmap",
    "set_pod_target",
    "get_pod_target",
    "get_sharing_freed_pages",
    "get_sharing_shared_pages",
    "paging_op",
    "access_op",
    "sharing_op",
    "add_to_physmap_batch",
    "claim_pages",
    "machphys_compat_mfn_list",
    "get_vnumainfo",
    "reserved_device_memory_map",
    "acquire_resource",
];

const XEN_VERSION: [&str; 15] = [
    "version",
    "extraversion",
    "compile_info",
    "capabilities",
    "changeset",
    "platform_parameters",
    "get_features",
    "pagesize",
    "guest_handle",
    "commandline",
    "build_id",
    "extraversion2",
    "capabilities2",
    "changeset2",
    "commandline2",
];

const VCPU_OP: [&str; 14] = [
    "initialise",
    "up",
    "down",
    "is_up",
    "get_runstate_info",
    "register_runstate_memory_area",
    "set_periodic_timer",
    "stop_periodic_timer",
    "set_singleshot_timer",
    "stop_singleshot_timer",
    "register_vcpu_info",
    "send_nmi",
    "get_physid",
    "register_vcpu_time_memory_area",
];

const SCHED_OP: [&str; 11] = [
    "yield",
    "block",
    "shutdown",
    "poll",
    "remote_shutdown",
    "shutdown_code",
    "watchdog",
    "pin_override",
    "",
    "",
    "",
];

const PHYSDEV_OP: [&str; 33] = [
    "",
    "",
    "",
    "",
    "",
    "irq_status_query",
    "set_iopl",
    "set_iobitmap",
    "apic_read",
    "apic_write",
    "alloc_irq_vector",
    "free_irq_vector",
    "eoi",
    "map_pirq",
    "unmap_pirq",
    "manage_pci_add",
    "manage_pci_remove",
    "pirq_eoi_gmfn_v1",
    "",
    "restore_msi",
    "manage_pci_add_ext",
    "setup_gsi",
    "",
    "get_free_pirq",
    "pci_mmcfg_reserved",
    "pci_device_add",
    "pci_device_remove",
    "restore_msi_ext",
    "pirq_eoi_gmfn_v2",
    "dbgp_op",
    "prepare_msix",
    "release_msix",
    "pci_device_reset",
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_match_xen() {
        assert_eq!(name(0), "set_trap_table");
        assert_eq!(name(24), "vcpu_op");
        assert_eq!(name(42), "hypfs_op");
        assert_eq!(name(43), "unknown");
        assert_eq!(name(u64::MAX), "unknown");
        assert_eq!(
            sub_op_name(24, 5),
            Some(Some("register_runstate_memory_area"))
        );
        assert_eq!(
            sub_op_name(12, 5 | (7 << 6)),
            Some(Some("machphys_mfn_list"))
        );
        assert_eq!(sub_op_name(33, 28), Some(Some("pirq_eoi_gmfn_v2")));
        assert_eq!(sub_op_name(29, 99), Some(None));
        assert_eq!(sub_op_name(15, 0), None);
    }
}
