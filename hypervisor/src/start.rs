//! The boot path: from `boot/entry.s` to a running hypervisor.

use alloc::vec::Vec;
use core::fmt::Write;

use crate::arch::x86_64::{self as arch, apic, cpu, entry, gdt, layout, paging, pit, trap};
use crate::boot_info::{self, BootInfo};
use crate::cpuinfo::Features;
use crate::mm::efimap;
use crate::mm::memmap::{self, EntryKind, Exclusion, PhysRange};
use crate::mm::{frames, heap};
use crate::options::{self, SelfTest};
use crate::power::{self, ExitReason};

/// The boot path proper, from `arch::x86_64::boot`'s entry shim, with the physical address of
/// the multiboot2 boot information.
pub fn start(mbi_phys: u32) -> ! {
    crate::console::init();
    log::info!("Xenia {}", crate::VERSION);
    entry::install_boot();
    gdt::init();
    trap::init();
    heap::init();

    let boot = match boot_info::parse(mbi_phys) {
        Ok(b) => b,
        Err(why) => {
            // Without the boot information we cannot know whether `debug-exit` was
            // asked for; stop without touching unknown ports.
            log::error!("{why}; stopping");
            power::exit(ExitReason::HypervisorFailure)
        }
    };
    crate::boot_info::set_command_line(&boot.cmdline);
    let opts = options::parse(&boot.cmdline, |d| log::warn!("{d}"));
    power::set_debug_exit(opts.debug_exit);
    power::set_noreboot(opts.noreboot);
    crate::console::configure(opts.console, opts.loglvl, opts.console_timestamps);
    crate::guest::set_xenpv_fastpath(opts.xenpv_fastpath);
    if !opts.xenpv_fastpath {
        log::info!("xenpv_fastpath=0: Xen PV system calls and iret hypercalls take the trap path");
    }
    for p in &boot.problems {
        log::warn!(target: "boot", "{p}");
    }

    let cpu = cpu::identify();
    log::info!("cpu: {cpu}");
    if !cpu.features.contains(Features::APIC) {
        log::error!("this CPU has no local APIC, which Xenia needs; stopping");
        power::exit(ExitReason::HypervisorFailure);
    }

    log::info!("firmware: {}", boot.firmware);
    boot_info::set_firmware(boot.firmware);
    let map_source = match boot.memory_source {
        efimap::MapSource::Efi => "the EFI memory map (multiboot2 tag 17)",
        efimap::MapSource::Multiboot2 => "the multiboot2 memory map (tag 6)",
        efimap::MapSource::None => "the loader (none given)",
    };
    log::info!(target: "mm", "memory map: {} entries from {map_source}", boot.memory.len());
    let layout = memory_layout(&boot);
    log::info!("memory: {} MiB usable", layout.usable_bytes() >> 20);

    setup_memory(&boot, &layout, cpu.features);
    crate::console::attach_screen(boot.screen.as_ref(), opts.console);
    crate::console::attach_keyboard(opts.console);
    arch::enable_protections(cpu.features);
    pit::disable_legacy_pic();
    // The HPET, a calibration source, is found through the ACPI tables: this first look at
    // them also logs what is wrong with them.
    let hpet = crate::arch::x86_64::power::find_hpet(boot.acpi_root);
    match apic::init(cpu.clock, hpet) {
        Ok(tsc_hz) => crate::time::init(tsc_hz),
        Err(why) => {
            log::error!(target: "apic", "apic: {why}; guests need a timer, stopping");
            power::exit(ExitReason::HypervisorFailure);
        }
    }
    // After the local APIC: the I/O APIC route for COM1 names this CPU's APIC ID.
    crate::arch::x86_64::power::set_acpi_power_off(crate::arch::x86_64::power::discover_acpi(
        boot.acpi_root,
    ));
    // Dom0's ports: all but the hypervisor's, the ACPI ones just found among them.
    crate::arch::x86_64::ioport::init(crate::arch::x86_64::power::acpi_power_off_info().as_ref());
    // The other CPUs, once the boot CPU's APIC, time and page tables are in place.
    let mut avoid: Vec<PhysRange> = boot.modules.iter().map(|m| m.range).collect();
    avoid.push(boot.mbi);
    arch::smp::start_aps(
        crate::arch::x86_64::power::find_madt(boot.acpi_root),
        opts.max_cpus,
        &layout.usable,
        &avoid,
    );
    // The boot CPU's guest-root frames, as each AP took its own just now.
    if !entry::take_boot_root_frames() {
        log::warn!(target: "mm", "no memory for the boot CPU's guest-root copies yet");
    }

    match opts.selftest {
        Some(SelfTest::Ud) => provoke_invalid_opcode(),
        Some(SelfTest::Pf) => provoke_page_fault(),
        Some(SelfTest::Db) => provoke_debug_trap(),
        None => {}
    }

    for (i, m) in boot.modules.iter().enumerate() {
        log::info!(
            "module {i}: {} bytes, cmdline \"{}\"",
            m.range.len(),
            Printable(&m.cmdline)
        );
        if i >= 2 {
            log::warn!("module {i} is not used: module 0 is dom0's kernel and module 1 its initrd");
        }
    }
    let Some(kernel) = boot.modules.first() else {
        log::info!("no dom0 module given; powering off");
        power::exit(ExitReason::PowerOff)
    };
    start_dom0(&boot, kernel, &opts)
}

/// Builds dom0 from module 0 (module 1, if any, is its initrd) and runs it.
fn start_dom0(boot: &BootInfo, kernel: &boot_info::Module, opts: &options::Options) -> ! {
    let module_bytes =
        |m: &boot_info::Module| paging::firmware_bytes(m.range.start, m.range.len() as usize);
    let Some(kernel_bytes) = module_bytes(kernel) else {
        log::error!(
            "dom0: module 0 at {:#x} is outside mapped memory; stopping",
            kernel.range.start
        );
        power::exit(ExitReason::Dom0Crashed)
    };
    let initrd = boot.modules.get(1).and_then(module_bytes);
    let image = crate::domain::build::ModuleImage {
        bytes: kernel_bytes,
        cmdline: &kernel.cmdline,
    };
    let pages = crate::domain::build::dom0_pages(opts.dom0_mem.as_ref());
    // dom0 may grow back to `dom0_mem=max:` (Xen's rule), else stays at its size.
    let max_pages = opts
        .dom0_mem
        .as_ref()
        .and_then(|m| m.max)
        .map_or(pages, |max| (max / crate::mm::PAGE_SIZE).max(pages));
    match crate::domain::build::build_dom0(&image, initrd, pages, max_pages) {
        Ok(mut dom) => {
            // One grant-table frame from the start, as Xen's INITIAL_NR_GRANT_FRAMES.
            if crate::guest::grant_op::grow(&mut dom, 1).is_err() {
                log::warn!(target: "grant", "dom0: no memory for its first grant-table frame");
            }
            crate::guest::init_syscall_msrs();
            if opts.bootscrub {
                // After dom0's build, as Xen does (`heap_init_late`): the rest of free
                // memory, so that domains built later take frames already zero.
                log::info!(target: "mm", "Scrubbing Free RAM ({} MiB)...", frames::free_count() >> 8);
                let n = frames::scrub_free();
                log::info!(target: "mm", "Scrubbing Free RAM: done, {n} frames");
            }
            let id = dom.id;
            let (code, start_with_xen) = opts.conswitch;
            crate::guest::configure_input(code, start_with_xen);
            crate::console::announce_input(start_with_xen, code);
            crate::guest::lock_world().domains.insert(id, dom);
            crate::lockorder::guests_run();
            crate::guest::run(id)
        }
        Err(e) => {
            log::error!("dom0: {e}; stopping");
            power::exit(ExitReason::Dom0Crashed)
        }
    }
}

/// Usable RAM and free frames, with the image, the modules and the boot information
/// excluded. Problems with the map are logged, not fatal.
fn memory_layout(boot: &BootInfo) -> memmap::MemoryLayout {
    let image = arch::boot::image_phys_range();
    let names: Vec<alloc::string::String> = (0..boot.modules.len())
        .map(|i| alloc::format!("module {i}"))
        .collect();
    let mut exclusions = Vec::with_capacity(boot.modules.len() + 2);
    exclusions.push(Exclusion {
        range: image,
        what: "hypervisor image",
    });
    exclusions.push(Exclusion {
        range: boot.mbi,
        what: "multiboot2 information",
    });
    for (m, name) in boot.modules.iter().zip(&names) {
        exclusions.push(Exclusion {
            range: m.range,
            what: name,
        });
    }
    let layout = memmap::layout(&boot.memory, &exclusions, layout::LOW_MEMORY_LIMIT);
    for p in &layout.problems {
        log::warn!(target: "mm", "memory map: {p}");
    }
    if layout.free.is_empty() {
        log::error!("no usable memory left for the hypervisor; stopping");
        power::exit(ExitReason::HypervisorFailure);
    }
    layout
}

/// Frame allocator, real page tables, bigger heap.
fn setup_memory(boot: &BootInfo, layout: &memmap::MemoryLayout, features: Features) {
    // Page tables are built through the bootstrap direct map, which covers 4 GiB only.
    let low = crate::mm::directmap::LOW_WINDOW;
    for r in &layout.free {
        frames::add_free(PhysRange {
            start: r.start,
            end: r.end.min(low),
        });
    }
    let mut ram: Vec<PhysRange> = layout.usable.clone();
    ram.extend(
        boot.memory
            .iter()
            .filter(|e| matches!(e.kind, EntryKind::AcpiReclaimable | EntryKind::AcpiNvs))
            .filter_map(|e| {
                Some(PhysRange {
                    start: e.base,
                    end: e.base.checked_add(e.len)?,
                })
            }),
    );
    if let Err(e) = paging::build_and_switch(
        &ram,
        features.contains(Features::NX),
        features.contains(Features::PAGE_1G),
    ) {
        log::error!("cannot build the hypervisor page tables: {e:?}; stopping");
        power::exit(ExitReason::HypervisorFailure);
    }
    for r in &layout.free {
        let above = PhysRange {
            start: r.start.max(low),
            end: r.end.min(layout::DIRECTMAP_LIMIT),
        };
        frames::add_free(above);
    }
    if layout.highest_usable_end() > layout::DIRECTMAP_LIMIT {
        log::warn!(target: "mm", "RAM above {} TiB is not used", layout::DIRECTMAP_LIMIT >> 40);
    }
    let frames_described =
        layout.highest_usable_end().min(layout::DIRECTMAP_LIMIT) / crate::mm::PAGE_SIZE;
    // The heap: one run for the frame table (one allocation of 28 bytes a frame), plus
    // 1/64 of free memory between 2 and 64 MiB, on top of the boot heap.
    let general = (frames::free_count() * crate::mm::PAGE_SIZE / 64).clamp(2 << 20, 64 << 20);
    heap::grow_for_allocation(frames_described * 32);
    heap::grow(general);
    crate::mm::ft::init(frames_described, features.contains(Features::NX));
    // RAM the table does not describe is never I/O memory for dom0.
    for e in boot.memory.iter().filter(|e| {
        matches!(
            e.kind,
            EntryKind::Usable
                | EntryKind::AcpiReclaimable
                | EntryKind::AcpiNvs
                | EntryKind::Defective
        )
    }) {
        let end = e.base.saturating_add(e.len);
        if end > frames_described * crate::mm::PAGE_SIZE {
            crate::mm::iomem::deny(e.base, end, "RAM above the frame table");
        }
    }
    // Three bits a frame for memory offlining, from the heap.
    heap::grow_for_allocation(frames_described.div_ceil(8));
    frames::track(frames_described);
    crate::mm::m2p::init(frames_described, features.contains(Features::NX));
    log::debug!(
        target: "mm",
        "frames: {} free of {}; heap {} KiB",
        frames::free_count(),
        frames::total_count(),
        heap::size() / 1024
    );
}

fn provoke_invalid_opcode() {
    log::info!("selftest: executing ud2 in ring 0");
    arch::boot::raise_invalid_opcode();
}

fn provoke_debug_trap() {
    const UNMAPPED: u64 = 0x0dea_dbee_f000;
    log::info!("selftest: single-stepping in ring 0 with rsp at unmapped {UNMAPPED:#x}");
    let before = trap::DEBUG_DROPPED.load(core::sync::atomic::Ordering::Relaxed);
    arch::boot::single_step_on_unusable_stack(UNMAPPED);
    let dropped = trap::DEBUG_DROPPED.load(core::sync::atomic::Ordering::Relaxed) - before;
    log::info!("selftest: {dropped} #DB taken on its own stack and dropped; going on");
}

fn provoke_page_fault() {
    const UNMAPPED: u64 = 0x0dea_dbee_f000;
    log::info!("selftest: reading unmapped address {UNMAPPED:#x}");
    arch::boot::read_unmapped(UNMAPPED);
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    let mut out = crate::console::emergency();
    let _ = writeln!(out, "\nhypervisor panic: {info}");
    crate::console::fatal_on_screen(format_args!("hypervisor panic: {info}"));
    trap::write_call_trace(&mut out, 0, arch::boot::frame_pointer());
    power::exit(ExitReason::HypervisorFailure)
}

/// Shows a command line as given, except that control characters are escaped so that a
/// hostile one cannot forge log lines.
struct Printable<'a>(&'a str);

impl core::fmt::Display for Printable<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        for c in self.0.chars() {
            if c.is_control() {
                write!(f, "{}", c.escape_default())?;
            } else {
                f.write_char(c)?;
            }
        }
        Ok(())
    }
}
