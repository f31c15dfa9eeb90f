//! The registry of QEMU scenarios. Add a scenario by writing its function in one of the
//! modules here and listing it in [`all`].

mod boot;

use crate::runner::Scenario;

/// Every scenario, in the order they are started.
pub fn all() -> Vec<Scenario> {
    vec![
        // Slowest first, so that two workers finish at about the same time.
        Scenario::new("no_long_mode", boot::no_long_mode),
        Scenario::new("boot_mem_3072", |ctx| boot::memory(ctx, 3072)),
        Scenario::new("boot_mem_256", |ctx| boot::memory(ctx, 256)),
        Scenario::new("boot_mem_1024", |ctx| boot::memory(ctx, 1024)),
        Scenario::new("boot_cpu_max", boot::cpu_max),
        Scenario::new("boot_cpu_qemu64", boot::cpu_qemu64),
        Scenario::new("log_contract_order", boot::log_contract_order),
        Scenario::new("module_line", boot::module_line),
        Scenario::new("selftest_ud", boot::selftest_ud),
        Scenario::new("selftest_pf", boot::selftest_pf),
        Scenario::new("unknown_option_warns", boot::unknown_option_warns),
        Scenario::new("acpi_poweroff", boot::acpi_poweroff),
    ]
}

#[cfg(test)]
mod tests {
    #[test]
    fn names_are_unique_and_usable_as_directories() {
        let all = super::all();
        let mut names: Vec<&str> = all.iter().map(|s| s.name).collect();
        assert!(names.iter().all(|n| {
            n.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        }));
        names.sort();
        names.dedup();
        assert_eq!(names.len(), all.len());
    }
}
