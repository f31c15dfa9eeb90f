//! Building dom0 from the first multiboot2 module (DESIGN.md §4, "Start of day").
//!
//! The kernel ELF is checked by `elf::parse`, laid out by `layout::plan`, and what goes
//! into the bootstrap page tables, `start_info` and vCPU 0 is planned by
//! `xenia_pvboot::boot` — the same plan the toolstack's domU builder writes (all
//! host-tested in `xenia-pvboot`). This file does only the part that touches memory: it
//! allocates and zeroes the domain's frames, and copies in, through the direct map, the
//! kernel, the initrd, the p2m list, the hypercall page and the planned `start_info` and
//! page tables; then it pins the tables and installs the planned registers in vCPU 0.

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::sync::atomic::Ordering;

use guest_abi::start_info::{SIF_INITDOMAIN, SIF_PRIVILEGED, StartInfoConsole};
use guest_abi::types::{self as abi, DomId};
use xenia_pvboot::boot::{self, BootError, Frames, P2m};

use super::elf::{self, KernelImage};
use super::layout::{self, StartOfDay};
use super::{Domain, Vcpu};
use crate::event::EventChannels;
use crate::mm::frame_table::PageType;
use crate::mm::ft;
use crate::mm::{Mfn, PAGE_SIZE, frames, physmem};

/// dom0's memory when `dom0_mem=` does not say: enough for the tools, small enough
/// to leave room for other domains.
pub const DEFAULT_DOM0_MEM: u64 = 256 << 20;
/// Memory the hypervisor keeps for itself when sizing dom0 from what is free.
const HYPERVISOR_RESERVE: u64 = 16 << 20;

/// A module as GRUB loaded it: its bytes (in the direct map) and command line.
pub struct ModuleImage<'a> {
    pub bytes: &'a [u8],
    pub cmdline: &'a str,
}

/// How many pages dom0 gets: `dom0_mem=` (amount, clamped to min/max), else the
/// default, never more than is free minus the hypervisor's reserve.
pub fn dom0_pages(opt: Option<&crate::options::Dom0Mem>) -> u64 {
    let free = frames::free_count() * PAGE_SIZE;
    let available = free.saturating_sub(HYPERVISOR_RESERVE);
    let mut bytes = opt
        .and_then(|m| m.amount)
        .unwrap_or(DEFAULT_DOM0_MEM.min(available));
    if let Some(min) = opt.and_then(|m| m.min) {
        bytes = bytes.max(min);
    }
    if let Some(max) = opt.and_then(|m| m.max) {
        bytes = bytes.min(max);
    }
    if bytes > available {
        log::warn!(
            target: "domain",
            "dom0_mem asks for {} MiB but only {} MiB are free; dom0 gets {} MiB",
            bytes >> 20,
            available >> 20,
            available >> 20
        );
        bytes = available;
    }
    bytes / PAGE_SIZE
}

/// Why dom0 could not be built.
pub enum BuildError {
    Elf(elf::ElfError),
    Layout(layout::LayoutError),
    OutOfMemory { wanted: u64, free: u64 },
    Other(String),
}

impl core::fmt::Display for BuildError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            BuildError::Elf(e) => write!(f, "the kernel ELF is not usable: {e}"),
            BuildError::Layout(e) => write!(f, "{e}"),
            BuildError::OutOfMemory { wanted, free } => {
                write!(
                    f,
                    "{wanted} pages wanted but only {free} free; lower dom0_mem"
                )
            }
            BuildError::Other(s) => f.write_str(s),
        }
    }
}

impl From<BootError> for BuildError {
    fn from(e: BootError) -> Self {
        BuildError::Other(format!(
            "the start-of-day plan does not fit dom0's frames: {e}"
        ))
    }
}

/// dom0's p2m list as `xenia_pvboot::boot` reads it.
struct Dom0P2m<'a>(&'a [Mfn]);

impl P2m for Dom0P2m<'_> {
    fn mfn(&self, pfn: abi::Pfn) -> Option<abi::Mfn> {
        let i = usize::try_from(pfn.0).ok()?;
        self.0.get(i).map(|m| abi::Mfn(m.0))
    }
}

impl From<elf::ElfError> for BuildError {
    fn from(e: elf::ElfError) -> Self {
        BuildError::Elf(e)
    }
}

/// The domain's memory while it is being built: pseudo-physical frames and the
/// virtual layout that maps them.
struct Memory<'a> {
    p2m: &'a [Mfn],
    sod: &'a StartOfDay,
}

impl Memory<'_> {
    /// The frame behind guest virtual address `va` in the bootstrap mapping.
    fn frame_of(&self, va: u64) -> Result<Mfn, BuildError> {
        let pfn = self.sod.pfn_of(va).ok_or_else(|| {
            BuildError::Other(format!(
                "address {va:#x} is outside the start-of-day mapping"
            ))
        })?;
        self.p2m
            .get(pfn.0 as usize)
            .copied()
            .ok_or_else(|| BuildError::Other(format!("pfn {} beyond memory", pfn.0)))
    }

    /// Copies `data` to guest virtual `va`, page by page, through `mm::physmem`.
    fn write(&self, va: u64, data: &[u8]) -> Result<(), BuildError> {
        let mut done = 0usize;
        while done < data.len() {
            let at = va + done as u64;
            let n = ((PAGE_SIZE - at % PAGE_SIZE) as usize).min(data.len() - done);
            let mfn = self.frame_of(at)?;
            physmem::write(mfn, (at % PAGE_SIZE) as usize, &data[done..done + n]);
            done += n;
        }
        Ok(())
    }

    fn write_u64(&self, va: u64, value: u64) -> Result<(), BuildError> {
        self.write(va, &value.to_le_bytes())
    }
}

/// Gives every frame in `frames` back to the allocator (a build that failed).
fn release(frames_owned: &[Mfn], dom: DomId) {
    // The build failed before anything took references (validation rolls back), so every
    // frame comes back.
    let _ = ft::with(|t, mem| t.release_domain(mem, dom));
    for &m in frames_owned {
        let _ = ft::with(|t, _| t.set_hypervisor(m));
        crate::mm::m2p::set(m, crate::mm::m2p::INVALID);
        frames::free_contiguous(m, 1);
    }
}

/// Builds dom0 (domain 0) from `kernel`, with an optional initrd.
pub fn build_dom0(
    kernel: &ModuleImage<'_>,
    initrd: Option<&[u8]>,
    nr_pages: u64,
    max_pages: u64,
) -> Result<Domain, BuildError> {
    let id: DomId = 0;
    let image: KernelImage = elf::parse(kernel.bytes)?;
    let missing =
        xenia_pvboot::features::missing_required(image.notes.features.as_deref().unwrap_or(""));
    if !missing.is_empty() {
        return Err(BuildError::Other(format!(
            "the kernel requires features Xenia does not provide: {}",
            missing.join(", ")
        )));
    }
    let sod = layout::plan(
        image.virt_start..image.virt_end,
        nr_pages,
        initrd.map(|i| i.len() as u64),
        0,
    )
    .map_err(BuildError::Layout)?;

    let free = frames::free_count();
    if nr_pages + 1 > free {
        return Err(BuildError::OutOfMemory {
            wanted: nr_pages + 1,
            free,
        });
    }
    let mut p2m = Vec::with_capacity(nr_pages as usize);
    for _ in 0..nr_pages {
        let Some(mfn) = frames::alloc_zeroed() else {
            release(&p2m, id);
            return Err(BuildError::OutOfMemory {
                wanted: nr_pages + 1,
                free: frames::free_count(),
            });
        };
        if ft::give(mfn, id).is_err() {
            frames::free_contiguous(mfn, 1);
            release(&p2m, id);
            return Err(BuildError::Other(format!(
                "frame {:#x} is not free in the frame table",
                mfn.0
            )));
        }
        crate::mm::m2p::set(mfn, p2m.len() as u64);
        p2m.push(mfn);
    }
    let Some(shared_info) = frames::alloc_zeroed() else {
        release(&p2m, id);
        return Err(BuildError::OutOfMemory { wanted: 1, free: 0 });
    };
    // The hypervisor writes shared_info for as long as the domain lives (event bits, time,
    // the entry count): held writable, it can never become a page table or be freed.
    if ft::give(shared_info, id).is_err()
        || ft::with(|t, mem| t.hold_for_writes(mem, shared_info, id)).is_err()
    {
        let _ = ft::take_back(shared_info, id);
        frames::free_contiguous(shared_info, 1);
        release(&p2m, id);
        return Err(BuildError::Other(
            "the shared_info frame is not free".into(),
        ));
    }

    let fill = || -> Result<(Vcpu, u8), BuildError> {
        let mem = Memory {
            p2m: &p2m,
            sod: &sod,
        };
        let frames = Frames {
            p2m: &Dom0P2m(&p2m),
            shared_info: abi::Mfn(shared_info.0),
        };
        elf::load_into(
            &image,
            kernel.bytes,
            |va, data| mem.write(va, data),
            |va, len| {
                // Frames are zeroed already; only check that the range is mapped.
                mem.frame_of(va)?;
                mem.frame_of(va + len - 1).map(drop)
            },
        )?;
        if let (Some(region), Some(bytes)) = (sod.initrd, initrd) {
            mem.write(region.start, bytes)?;
        }
        if let Some(page) = image.notes.hypercall_page {
            mem.write(page, &guest_abi::hypercall::hypercall_page_image())?;
        }
        for (pfn, mfn) in p2m.iter().enumerate() {
            mem.write_u64(sod.p2m.start + 8 * pfn as u64, mfn.0)?;
        }
        write_start_info(&mem, &sod, kernel.cmdline, frames.shared_info)?;
        // The tables are frames of the bootstrap region: written like the rest of it,
        // before they are pinned (and so before they become read-only to anyone).
        for table in boot::page_tables(&sod, frames) {
            let table = table?;
            mem.write(
                sod.virt_start() + table.pfn.0 * PAGE_SIZE,
                &table.to_bytes(),
            )?;
        }

        let l4 = Mfn(boot::root_table(&sod, &frames)?.0);
        // Pinning the bootstrap L4 validates the whole hierarchy, as any guest table is
        // validated: page-table frames get their types, everything mapped writable the
        // writable type. The vCPU's base pointer holds another type reference.
        ft::with(|t, mem| {
            t.pin(mem, l4, id, PageType::L4)?;
            t.set_base(mem, id, None, l4)
        })
        .map_err(|e| {
            BuildError::Other(format!("the bootstrap page tables do not validate ({e:?})"))
        })?;
        // The registers the toolstack would pass to `setvcpucontext`, installed as that
        // does (only the ones it keeps: the data selectors stay null, as for a domU).
        let ctx = boot::initial_context(image.entry, &sod, abi::Mfn(l4.0));
        let r = &ctx.user_regs;
        let mut vcpu = Vcpu::new(0, l4);
        vcpu.regs.rip = r.rip;
        vcpu.regs.rsi = r.rsi;
        vcpu.regs.rsp = r.rsp;
        vcpu.regs.cs = u64::from(r.cs);
        vcpu.regs.ss = u64::from(r.ss);
        vcpu.regs.rflags = r.rflags;
        Ok((vcpu, r.saved_upcall_mask))
    };
    let (vcpu, upcall_mask) = match fill() {
        Ok(v) => v,
        Err(e) => {
            let _ = ft::with(|t, mem| t.release_writes(mem, shared_info, id));
            release(&p2m, id);
            release(&[shared_info], id);
            return Err(e);
        }
    };

    let dom = Domain {
        id,
        name: String::from(dom0_tools_name()),
        handle: [0; 16],
        privilege: super::Privilege::Control,
        p2m,
        shared_info,
        shared_view: crate::mm::physmem::atomics(shared_info),
        tot_pages: nr_pages,
        max_pages,
        vcpus: alloc::vec![vcpu],
        events: EventChannels::new(),
        pirqs: crate::pirq::PirqTable::new(),
        grants: crate::grant::GrantTable::with_defaults(id),
        shutdown: None,
        stop_announced: false,
        vm_assist: 0,
        guest_mode: crate::domain::GuestMode::Ring1,
        controller_pauses: 0,
        console_line: super::ConsoleLine::new(),
    };
    let info = dom.vcpu_info(0);
    info.evtchn_upcall_mask
        .store(upcall_mask, Ordering::Release);
    info.time.publish(&crate::time::snapshot());
    dom.shared().publish_wallclock(crate::time::wallclock());
    dom.shared().arch.max_pfn.store(nr_pages, Ordering::Relaxed);

    log::info!(
        target: "domain",
        "dom0: {} MiB ({} pages), kernel {:#x}-{:#x}, entry {:#x}, start_info {:#x}, {} page-table frames",
        (nr_pages * PAGE_SIZE) >> 20,
        nr_pages,
        image.virt_start,
        image.virt_end,
        image.entry,
        sod.start_info,
        sod.table_counts.total()
    );
    Ok(dom)
}

/// The name dom0 carries (`xl list` shows it).
fn dom0_tools_name() -> &'static str {
    "Domain-0"
}

/// Writes the planned `start_info` of dom0 (privileged, the initial domain, no console
/// ring: dom0 uses `console_io`).
fn write_start_info(
    mem: &Memory<'_>,
    sod: &StartOfDay,
    cmdline: &str,
    shared_info: abi::Mfn,
) -> Result<(), BuildError> {
    let (si, copied) = boot::start_info(
        sod,
        shared_info,
        SIF_PRIVILEGED | SIF_INITDOMAIN,
        StartInfoConsole::default(),
        cmdline.as_bytes(),
    );
    if copied < cmdline.len() {
        log::warn!(
            target: "domain",
            "dom0 command line is {} bytes; the kernel sees the first {copied}",
            cmdline.len()
        );
    }
    mem.write(sod.start_info, &boot::start_info_bytes(&si))
}
