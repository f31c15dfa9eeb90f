//! # attacks: a hostile Xenia guest
//!
//! A paravirtual kernel (built on `xenia-guest-rt`) that tries to escape its domain through
//! the memory interface: mapping frames that are not its own or its own page tables writable,
//! confusing page-table types, abusing pins, base pointers and the reservation, passing
//! absurd counts and pointers to the hypercalls, writing the hypervisor's read-only pages,
//! executing NX pages, and writing a page table through a stale TLB entry (DESIGN §2, §4; the
//! rules are Xen's direct paging as guest-abi `memory` describes, plus Xenia's: no linear
//! page tables, no superpages, no MMIO mappings, reserved entry bits refused).
//!
//! The last attacks are regression attacks for the findings of issue 10 (`f1-…` to `f7-…`:
//! `shared_info` and grant frames as page tables, grant unmaps naming the wrong address,
//! `CR0.TS` across a vCPU switch, memory exhaustion, argument registers across continued
//! batches, stacks and selectors); as dom0 the guest also creates throw-away domains for them
//! (`domctl`) so that a yield really switches vCPUs. The ones that stopped the hypervisor when
//! they were written run last, after a marker in the list.
//!
//! Each attack prints one line:
//!
//! - `attack <name>: refused (<how>)`: the hypervisor said no, with the errno (`EINVAL`) or the
//!   fault it delivered (`#PF, error code 0x3, cr2 …`), and the attack's effect did not happen
//!   (a refused entry reads back unchanged, a refused write left its target as it was);
//! - `attack <name>: SUCCEEDED (<what happened>)`: it got through;
//! - `attack <name>: ERROR (<why>)`: a legitimate set-up step failed, so it proves nothing;
//! - `attack <name>: SKIPPED (<why>)`: it does not apply here (no NX, say).
//!
//! Then `XENMEM_XENIA_CHECK_FRAME_TABLE` runs (`frame table check: <ret>`), and the result is
//! `Test result: SUCCESS` when no attack succeeded or erred and the check returned 0,
//! `FAILURE` otherwise; the domain powers off either way. A hypervisor that crashes the guest
//! instead of refusing leaves no result line, which is a failure too.
//!
//! On the build host this is an empty program, so that `cargo test --workspace` builds.

#![cfg_attr(target_os = "none", no_std, no_main)]
#![forbid(unsafe_op_in_unsafe_fn)]

#[cfg(target_os = "none")]
mod buffers;
#[cfg(target_os = "none")]
mod cpu;
#[cfg(target_os = "none")]
mod env;
#[cfg(target_os = "none")]
mod exhaust;
#[cfg(target_os = "none")]
mod faults;
#[cfg(target_os = "none")]
mod findings;
#[cfg(target_os = "none")]
mod hv;
#[cfg(target_os = "none")]
mod mappings;
#[cfg(target_os = "none")]
mod memory;
#[cfg(target_os = "none")]
mod tables;
#[cfg(target_os = "none")]
mod verdict;

#[cfg(target_os = "none")]
xenia_guest_rt::entry!(run::main);

/// On the build host there is no kernel to run.
#[cfg(not(target_os = "none"))]
fn main() {}

#[cfg(target_os = "none")]
mod run {
    use xenia_guest_rt::check::{Ret, TestResult, report};
    use xenia_guest_rt::{events, mm, println};

    use crate::env::Env;
    use crate::verdict::{Outcome, Verdict};
    use crate::{buffers, cpu, exhaust, faults, findings, mappings, memory, tables};

    /// One attack: its name on the output line and what it does.
    struct Attack {
        name: &'static str,
        run: fn(&Env) -> Verdict,
    }

    macro_rules! attacks {
        ($($name:literal => $f:path,)*) => {
            &[$(Attack { name: $name, run: $f },)*]
        };
    }

    /// Every attack, in the order they run.
    const ATTACKS: &[Attack] = attacks! {
        // Frames that are not the guest's.
        "map-foreign-frame" => mappings::map_foreign_frame,
        "map-hypervisor-image" => mappings::map_hypervisor_image,
        "map-hypervisor-image-mmu-update" => mappings::map_hypervisor_image_mmu_update,
        "map-hypervisor-frame-as-domid-xen" => mappings::map_hypervisor_frame_as_domid_xen,
        "map-frame-of-absent-domain" => mappings::map_frame_of_absent_domain,
        "map-mmio-local-apic" => mappings::map_mmio_local_apic,
        "map-mmio-io-apic" => mappings::map_mmio_io_apic,
        "map-beyond-physical-address-width" => mappings::map_beyond_physical_address_width,
        // Its own page tables, writable.
        "map-own-l1-writable" => mappings::map_own_l1_writable,
        "map-own-l2-writable-user" => mappings::map_own_l2_writable_user,
        "map-own-l4-writable-mmu-update" => mappings::map_own_l4_writable_mmu_update,
        // Linear page tables, wrong types, the hypervisor's slots and addresses.
        "linear-l4-writable" => mappings::linear_l4_writable,
        "linear-l4-read-only" => mappings::linear_l4_read_only,
        "l4-entry-to-l1-table" => mappings::l4_entry_to_l1_table,
        "l3-entry-to-l4-table" => mappings::l3_entry_to_l4_table,
        "l4-reserved-slot-256" => mappings::l4_reserved_slot_256,
        "l4-reserved-slot-257" => mappings::l4_reserved_slot_257,
        "l4-reserved-slot-271-preserve-ad" => mappings::l4_reserved_slot_271_preserve_ad,
        "update-va-mapping-hypervisor-va" => mappings::update_va_mapping_hypervisor_va,
        "update-va-mapping-m2p-va" => mappings::update_va_mapping_m2p_va,
        // Entry bits.
        "reserved-address-bit-l1" => mappings::reserved_address_bit_l1,
        "reserved-address-bit-l2" => mappings::reserved_address_bit_l2,
        "grant-bit-62-l1" => mappings::grant_bit_62_l1,
        "superpage-l2" => mappings::superpage_l2,
        "superpage-l3" => mappings::superpage_l3,
        // Pinning and types.
        "pin-writable-frame-as-l1" => tables::pin_writable_frame_as_l1,
        "pin-writable-frame-as-l2" => tables::pin_writable_frame_as_l2,
        "pin-writable-frame-as-l3" => tables::pin_writable_frame_as_l3,
        "pin-writable-frame-as-l4" => tables::pin_writable_frame_as_l4,
        "map-pinned-table-writable" => tables::map_pinned_table_writable,
        "pin-l1-mapping-itself-writable" => tables::pin_l1_mapping_itself_writable,
        "pin-l1-mapping-own-l4-writable" => tables::pin_l1_mapping_own_l4_writable,
        "pin-l4-with-reserved-slot" => tables::pin_l4_with_reserved_slot,
        "pin-l3-as-l4" => tables::pin_l3_as_l4,
        "pin-foreign-frame" => tables::pin_foreign_frame,
        "pin-l1-valid-entries-then-hostile-last" =>
            tables::pin_l1_valid_entries_then_hostile_last,
        "pin-l1-hostile-among-valid-entries" => tables::pin_l1_hostile_among_valid_entries,
        // Base pointers.
        "new-baseptr-l1" => tables::new_baseptr_l1,
        "new-baseptr-data-frame" => tables::new_baseptr_data_frame,
        "new-baseptr-foreign-frame" => tables::new_baseptr_foreign_frame,
        "new-baseptr-unvalidated-l4-with-reserved-slot" =>
            tables::new_baseptr_unvalidated_l4_with_reserved_slot,
        "free-current-l4-after-unpin" => tables::free_current_l4_after_unpin,
        // The reservation.
        "free-mapped-frame" => memory::free_mapped_frame,
        "free-twice-mapped-frame" => memory::free_twice_mapped_frame,
        "free-pinned-table" => memory::free_pinned_table,
        "free-page-table-in-use" => memory::free_page_table_in_use,
        "free-foreign-frame" => memory::free_foreign_frame,
        "free-shared-info-frame" => memory::free_shared_info_frame,
        "free-with-array-in-hypervisor" => memory::free_with_array_in_hypervisor,
        "populate-beyond-maximum" => memory::populate_beyond_maximum,
        "populate-into-read-only-array" => memory::populate_into_read_only_array,
        // Counts and pointers.
        "mmu-update-count-2-pow-31" => buffers::mmu_update_count_2_pow_31,
        "mmu-update-count-u64-max" => buffers::mmu_update_count_u64_max,
        "mmuext-count-2-pow-31" => buffers::mmuext_count_2_pow_31,
        "mmuext-count-u64-max" => buffers::mmuext_count_u64_max,
        "mmu-update-requests-in-hypervisor" => buffers::mmu_update_requests_in_hypervisor,
        "mmu-update-requests-in-m2p" => buffers::mmu_update_requests_in_m2p,
        "mmu-update-requests-non-canonical" => buffers::mmu_update_requests_non_canonical,
        "mmu-update-requests-run-into-non-canonical" =>
            buffers::mmu_update_requests_run_into_non_canonical,
        "mmu-update-requests-run-out-of-hypervisor-range" =>
            buffers::mmu_update_requests_run_out_of_hypervisor_range,
        "mmu-update-requests-wrap-around" => buffers::mmu_update_requests_wrap_around,
        "mmuext-ops-in-hypervisor" => buffers::mmuext_ops_in_hypervisor,
        "mmu-update-done-into-own-l4" => buffers::mmu_update_done_into_own_l4,
        "mmu-update-done-into-entry-area" => buffers::mmu_update_done_into_entry_area,
        "frame-counts-into-own-l1" => buffers::frame_counts_into_own_l1,
        "memory-map-into-m2p" => buffers::memory_map_into_m2p,
        "output-after-write-access-removed" => buffers::output_after_write_access_removed,
        // Requests with bad targets.
        "mmu-update-misaligned-pte-pointer" => buffers::mmu_update_misaligned_pte_pointer,
        "mmu-update-unknown-command" => buffers::mmu_update_unknown_command,
        "mmu-update-data-frame-then-pin" => buffers::mmu_update_data_frame_then_pin,
        "mmu-update-foreign-frame-as-table" => buffers::mmu_update_foreign_frame_as_table,
        "machphys-update-foreign-frame" => buffers::machphys_update_foreign_frame,
        "machphys-update-beyond-ram" => buffers::machphys_update_beyond_ram,
        // Faults.
        "write-entry-area-stubs" => faults::write_entry_area_stubs,
        "write-entry-area-gdt" => faults::write_entry_area_gdt,
        "write-entry-area-idt" => faults::write_entry_area_idt,
        "write-m2p" => faults::write_m2p,
        "execute-nx-page" => faults::execute_nx_page,
        // Stale TLB entries.
        "write-through-stale-tlb-after-pin" => tables::write_through_stale_tlb_after_pin,
        "write-through-stale-global-tlb-after-pin" =>
            tables::write_through_stale_global_tlb_after_pin,
        "write-through-stale-tlb-after-free" => tables::write_through_stale_tlb_after_free,
        // Issue 10's findings (F1 to F7), each tried for real.
        "f6-long-batch-keeps-locals" => cpu::long_batch_keeps_locals,
        "f7-stack-switch-first-non-canonical" => cpu::stack_switch_first_non_canonical,
        "f7-setvcpucontext-kernel-sp-in-hypervisor" =>
            cpu::setvcpucontext_kernel_sp_in_hypervisor,
        "f7-data-segments-across-switch" => cpu::data_segments_across_switch,
        "f7-entry-area-disclosure" => faults::entry_area_disclosure,
        "f4-pin-grant-frame" => findings::pin_grant_frame,
        "f2-grant-unmap-wrong-address" => findings::grant_unmap_wrong_address,
        "f2-grant-unmap-other-address-space" => findings::grant_unmap_other_address_space,
        "f1-shared-info-as-page-table" => findings::shared_info_as_page_table,
        "f1-shared-info-freed-while-unmapped" => findings::shared_info_freed_while_unmapped,
        "f5-event-ports-until-refused" => exhaust::event_ports_until_refused,
        "f5-grant-maps-until-refused" => exhaust::grant_maps_until_refused,
        // A hypervisor that crashes the guest for this (rather than #UD) ends the run here.
        "f7-syscall-from-ring-1" => cpu::syscall_from_ring1,
        // ---- Marker: the attacks below stop today's hypervisor (issue 10 F5, F3); they run
        // last so that everything above reports first. ----
        "f5-create-domains-until-refused" => exhaust::create_domains_until_refused,
        "f3-fpu-taskswitch-across-switch" => cpu::fpu_taskswitch_across_switch,
        // Issue 11's review.
        "r1-stale-root-done-write" => tables::stale_root_done_write,
    };

    /// The kernel's main: every attack, the frame-table check, the result.
    pub fn main() -> ! {
        events::mask();
        println!("attacks: {} attempts to escape the domain", ATTACKS.len());
        let env = match Env::find() {
            Ok(env) => env,
            Err(why) => {
                println!("attacks: cannot set up: {why}");
                report(TestResult::Error)
            }
        };
        println!(
            "attacks: L4 {:#x} L3 {:#x} L2 {:#x} L1 {:#x}, data frame {:#x}, foreign frame \
             {:#x}, NX {}",
            env.l4, env.l3, env.l2, env.l1, env.data_mfn, env.foreign, env.nx
        );
        mappings::note_software_bits(&env);
        let [mut refused, mut succeeded, mut errors, mut skipped] = [0u32; 4];
        for attack in ATTACKS {
            let verdict = (attack.run)(&env);
            verdict.print(attack.name);
            match verdict.outcome {
                Outcome::Refused => refused += 1,
                Outcome::Succeeded => succeeded += 1,
                Outcome::Error => errors += 1,
                Outcome::Skipped => skipped += 1,
            }
        }
        let check = mm::check_frame_table();
        println!("frame table check: {}", Ret(check));
        println!(
            "attacks: {refused} refused, {succeeded} succeeded, {errors} could not be set up, \
             {skipped} skipped"
        );
        let result = if succeeded == 0 && errors == 0 && check == 0 {
            TestResult::Success
        } else {
            TestResult::Failure
        };
        report(result)
    }
}
