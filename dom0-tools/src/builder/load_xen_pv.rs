//! Building a domain for a kernel built for Xen's x86-64 PV ABI (Linux), as Xen's libxc
//! does: the layout is `xenia_pvboot::xenpv`'s; this module creates the domain, asks the
//! hypervisor for its Xen PV guest mode, and fills its frames.
//!
//! dom0 never holds the kernel's ELF image: a bzImage is decompressed twice, the first time
//! only as far as its headers and notes (`streamed_headers`), the second time straight into
//! the new domain's frames, 64 KiB (8 MiB for lz4) at a time, so that Debian's 51 MiB image
//! costs dom0 no more than the compressed file and one buffer.
//!
//! The order of the hypervisor calls: `createdomain`, `XEN_DOMCTL_XENIA_SET_GUEST_MODE`
//! (before anything else: a hypervisor without the mode refuses it, and the half-built
//! domain is destroyed with nothing in it), `max_mem`, `max_vcpus`, the scheduler, populate,
//! `shared_info`'s frame, the console's and the store's channels, the writes (kernel,
//! ramdisk, p2m list, `start_info`, rings, page tables), the L4's pin, vCPU 0's context and
//! the unpause.

use alloc::string::ToString;
use alloc::vec::Vec;

use guest_abi::Errno;
use guest_abi::domctl::XENIA_GUEST_MODE_XEN_PV;
use guest_abi::types::{DomId, Mfn, PAGE_SIZE, Pfn};
use xenia_pvboot::boot::P2m;
use xenia_pvboot::elf::{self, KernelImage};
use xenia_pvboot::layout::{Level, PAGE};
use xenia_pvboot::xenpv::{self, Ramdisk, Request};

use super::bzimage::{self, Compression};
use super::xenpv::KernelInfo;
use super::{
    BuildError, CONSOLE_BACKEND, ConsoleRing, DomainConfig, STORE_BACKEND, Step, StoreRing,
    populate,
};
use crate::hypervisor::Hypervisor;

/// A Xen PV domain that was built and is running.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BuiltXenPv {
    /// Its id.
    pub dom: DomId,
    /// Its memory, in pages.
    pub nr_pages: u64,
    /// Where it started.
    pub entry: u64,
    /// Its console.
    pub console: Option<ConsoleRing>,
    /// Its xenstore ring.
    pub store: Option<StoreRing>,
    /// Machine frame of its `shared_info` page.
    pub shared_info: Mfn,
    /// Its start-of-day layout.
    pub layout: xenpv::Layout,
}

/// Everything decided before the domain exists.
pub(super) struct PlanXenPv<'a> {
    /// The bzImage, if the kernel is one.
    bz: Option<bzimage::BzImage<'a>>,
    image: KernelImage,
    layout: xenpv::Layout,
}

impl PlanXenPv<'_> {
    /// The kernel's placed segments.
    #[cfg(test)]
    pub(super) fn image(&self) -> &KernelImage {
        &self.image
    }

    /// The layout.
    #[cfg(test)]
    pub(super) fn layout(&self) -> &xenpv::Layout {
        &self.layout
    }
}

/// The ELF image's length: a bzImage's size trailer, else the file's.
fn image_len(cfg: &DomainConfig<'_>, bz: Option<&bzimage::BzImage<'_>>) -> u64 {
    match bz {
        Some(b) if b.compression != Compression::None => b
            .payload
            .len()
            .checked_sub(4)
            .and_then(|at| b.payload.get(at..))
            .and_then(|t| t.try_into().ok())
            .map_or(0, |t: [u8; 4]| u64::from(u32::from_le_bytes(t))),
        Some(b) => b.payload.len() as u64,
        None => cfg.kernel.len() as u64,
    }
}

/// Checks the kernel's headers, places its segments and lays the domain out. Touches
/// nothing.
/// `headers` are a bzImage's streamed headers and notes when the caller has them.
pub(super) fn prepare<'a>(
    cfg: &DomainConfig<'a>,
    info: &KernelInfo,
    headers: Option<Vec<u8>>,
) -> Result<PlanXenPv<'a>, BuildError> {
    let (bz, image) = if bzimage::is_bzimage(cfg.kernel) {
        let bz = bzimage::parse(cfg.kernel).map_err(BuildError::BzImage)?;
        let (notes, headers) = match headers {
            Some(h) => (info.notes.clone(), h),
            None => super::streamed_headers(&bz)?,
        };
        let len = image_len(cfg, Some(&bz));
        (Some(bz), elf::place_xen_pv(&headers, len, notes)?)
    } else {
        let len = cfg.kernel.len() as u64;
        (
            None,
            elf::place_xen_pv(cfg.kernel, len, info.notes.clone())?,
        )
    };
    let layout = xenpv::plan(&Request {
        virt_base: image.virt_start,
        kernel: image.segments.first().map_or(image.virt_start, |s| s.vaddr)..image.virt_end,
        nr_pages: cfg.nr_pages(),
        ramdisk_len: cfg.ramdisk.map(|r| r.len() as u64),
        mod_start_pfn: image.notes.mod_start_pfn.is_some_and(|v| v != 0),
        init_p2m: image.notes.init_p2m,
    })
    .map_err(BuildError::XenPvLayout)?;
    Ok(PlanXenPv { bz, image, layout })
}

/// Builds and starts the Xen PV domain `cfg` describes (its kernel is `info`). On error
/// nothing is left behind; a hypervisor without the Xen PV guest mode gives
/// [`BuildError::XenPvKernel`], the refusal of a kernel Xenia cannot run.
pub(super) fn build(
    hv: &mut impl Hypervisor,
    cfg: &DomainConfig<'_>,
    info: &KernelInfo,
    headers: Option<Vec<u8>>,
) -> Result<BuiltXenPv, BuildError> {
    let plan = prepare(cfg, info, headers)?;
    let dom = hv
        .create_domain(&cfg.create_config())
        .map_err(BuildError::hv(Step::CreateDomain))?;
    fill(hv, dom, cfg, info, &plan).map_err(|cause| match hv.destroy(dom) {
        Ok(()) => cause,
        Err(errno) => BuildError::NotCleanedUp {
            dom,
            errno,
            cause: alloc::boxed::Box::new(cause),
        },
    })
}

/// The new domain's frames, reached through the hypervisor by pseudo-physical frame.
struct Frames<'a, H> {
    hv: &'a mut H,
    dom: DomId,
    p2m: &'a [Mfn],
}

impl<H: Hypervisor> Frames<'_, H> {
    fn mfn(&self, pfn: Pfn) -> Result<Mfn, BuildError> {
        self.p2m.mfn(pfn).ok_or(BuildError::Internal(
            "the Xen PV layout names a frame past the domain's memory",
        ))
    }

    /// Copies `data` into consecutive frames from `pfn`, byte `offset` of the first.
    fn write_at(&mut self, pfn: Pfn, offset: u64, data: &[u8]) -> Result<(), BuildError> {
        let mut done = 0usize;
        while done < data.len() {
            let at = offset + done as u64;
            let frame = Pfn(pfn.0 + at / PAGE);
            let in_page = (at % PAGE) as usize;
            let n = (PAGE_SIZE - in_page).min(data.len() - done);
            let mfn = self.mfn(frame)?;
            self.hv
                .write_frame(self.dom, mfn, in_page, &data[done..done + n])
                .map_err(BuildError::hv(Step::WriteFrame))?;
            done += n;
        }
        Ok(())
    }

    /// Copies `data` to virtual address `va` of the initial mapping.
    fn write_va(&mut self, l: &xenpv::Layout, va: u64, data: &[u8]) -> Result<(), BuildError> {
        if data.is_empty() {
            return Ok(());
        }
        let end = va
            .checked_add(data.len() as u64 - 1)
            .ok_or(BuildError::Internal("a write past the address space"))?;
        let (Some(first), Some(last)) = (l.pfn_of(va), l.pfn_of(end)) else {
            return Err(BuildError::Internal(
                "a write outside the Xen PV start-of-day mapping",
            ));
        };
        if last.0 - first.0 != (end / PAGE) - (va / PAGE) {
            return Err(BuildError::Internal("a write across two mappings"));
        }
        self.write_at(first, va % PAGE, data)
    }
}

/// Everything after `createdomain`.
fn fill<H: Hypervisor>(
    hv: &mut H,
    dom: DomId,
    cfg: &DomainConfig<'_>,
    info: &KernelInfo,
    plan: &PlanXenPv<'_>,
) -> Result<BuiltXenPv, BuildError> {
    // First: a hypervisor without the mode says so before the domain has anything.
    match hv.set_guest_mode(dom, XENIA_GUEST_MODE_XEN_PV) {
        Ok(()) => {}
        Err(Errno::ENOSYS | Errno::EINVAL) => {
            return Err(BuildError::XenPvKernel {
                kernel: info.to_string(),
                missing: super::xenpv::feature_names(info.features.missing()),
            });
        }
        Err(errno) => {
            return Err(BuildError::Hypervisor {
                step: Step::SetGuestMode,
                errno,
            });
        }
    }
    let l = &plan.layout;
    hv.set_max_mem(dom, cfg.max_mem_kib())
        .map_err(BuildError::hv(Step::SetMaxMem))?;
    hv.set_max_vcpus(dom, cfg.vcpus)
        .map_err(BuildError::hv(Step::SetMaxVcpus))?;
    hv.set_sched_credit(dom, cfg.credit())
        .map_err(BuildError::hv(Step::SetScheduler))?;
    let p2m = populate(hv, dom, cfg.nr_pages())?;
    let shared_info = hv
        .shared_info_frame(dom)
        .map_err(BuildError::hv(Step::SharedInfoFrame))?;
    let pfn = |va: u64| {
        l.pfn_of(va)
            .ok_or(BuildError::Internal("a magic page is not mapped"))
    };
    let (console_pfn, store_pfn) = (pfn(l.console_ring)?, pfn(l.store_ring)?);
    let frame = |p: Pfn| {
        p2m.mfn(p).ok_or(BuildError::Internal(
            "a magic page is past the domain's memory",
        ))
    };
    // libxc gives every PV domain both rings; the channels only when asked.
    let console = if cfg.console {
        let evtchn = hv
            .alloc_unbound(dom, CONSOLE_BACKEND)
            .map_err(BuildError::hv(Step::AllocConsoleChannel))?;
        Some(ConsoleRing {
            mfn: frame(console_pfn)?,
            pfn: console_pfn,
            evtchn,
        })
    } else {
        None
    };
    let store = if cfg.store {
        let evtchn = hv
            .alloc_unbound(dom, STORE_BACKEND)
            .map_err(BuildError::hv(Step::AllocStoreChannel))?;
        Some(StoreRing {
            mfn: frame(store_pfn)?,
            evtchn,
        })
    } else {
        None
    };

    let mut mem = Frames {
        hv: &mut *hv,
        dom,
        p2m: &p2m,
    };
    load_kernel(&mut mem, cfg, plan)?;
    match (l.ramdisk, cfg.ramdisk) {
        (Some(Ramdisk::Mapped(r)), Some(bytes)) => mem.write_va(l, r.start, bytes)?,
        (Some(Ramdisk::Unmapped { first, .. }), Some(bytes)) => mem.write_at(first, 0, bytes)?,
        _ => {}
    }
    // The p2m list, a page at a time, wherever it is.
    let (_, p2m_first) = l.p2m();
    let mut page = Vec::with_capacity(PAGE_SIZE);
    for (i, chunk) in p2m.chunks(PAGE_SIZE / 8).enumerate() {
        page.clear();
        for m in chunk {
            page.extend_from_slice(&m.0.to_le_bytes());
        }
        mem.write_at(Pfn(p2m_first.0 + i as u64), 0, &page)?;
    }
    let (si, _) = l.start_info(
        shared_info,
        store.map_or((Mfn(0), 0), |s| (s.mfn, s.evtchn)),
        console.map_or((Mfn(0), 0), |c| (c.mfn, c.evtchn)),
        cfg.cmdline.as_bytes(),
    );
    mem.write_va(l, l.start_info, &xenia_pvboot::boot::start_info_bytes(&si))?;
    // Populated frames are zero; the rings are zeroed explicitly because their backends rely
    // on it.
    mem.write_va(l, l.store_ring, &[0; PAGE_SIZE])?;
    mem.write_va(l, l.console_ring, &[0; PAGE_SIZE])?;
    // A kernel with a hypercall page gets it filled by the hypervisor, after the kernel's
    // own bytes were loaded there (libxc's `xc_dom_hypercall_page`).
    if let Some(va) = info.notes.hypercall_page {
        let pfn = l
            .pfn_of(va)
            .ok_or(BuildError::Internal("the hypercall page is not mapped"))?;
        hv.hypercall_init(dom, frame(pfn)?)
            .map_err(BuildError::hv(Step::WriteFrame))?;
    }
    for table in l.table_images(p2m.as_slice()) {
        let table = table?;
        hv.write_frame(dom, table.mfn, 0, &table.to_bytes())
            .map_err(BuildError::hv(Step::WriteFrame))?;
    }
    let l4 = p2m
        .mfn(l.root_table())
        .ok_or(BuildError::Internal("the L4 is past the domain's memory"))?;
    hv.pin_table(dom, l4, Level::L4)
        .map_err(BuildError::hv(Step::PinL4))?;
    let ctx = l.initial_context(plan.image.entry, l4);
    hv.set_vcpu_context(dom, 0, &ctx)
        .map_err(BuildError::hv(Step::SetVcpuContext))?;
    if !cfg.start_paused {
        hv.unpause(dom).map_err(BuildError::hv(Step::Unpause))?;
    }
    Ok(BuiltXenPv {
        dom,
        nr_pages: cfg.nr_pages(),
        entry: plan.image.entry,
        console,
        store,
        shared_info,
        layout: l.clone(),
    })
}

/// Copies the kernel's segments into their frames. A bzImage is decompressed straight into
/// them: each piece of output is written where the segments it overlaps are placed, and
/// nothing of the image is kept. `.bss` needs no writes (populated frames are zero).
fn load_kernel<H: Hypervisor>(
    mem: &mut Frames<'_, H>,
    cfg: &DomainConfig<'_>,
    plan: &PlanXenPv<'_>,
) -> Result<(), BuildError> {
    let l = &plan.layout;
    let segments = &plan.image.segments;
    let mut write_piece = |at: u64, piece: &[u8]| -> Result<(), BuildError> {
        let end = at + piece.len() as u64;
        for s in segments {
            let (from, to) = (
                s.file_offset.max(at),
                (s.file_offset + s.file_size).min(end),
            );
            if from < to {
                let va = s.vaddr + (from - s.file_offset);
                mem.write_va(l, va, &piece[(from - at) as usize..(to - at) as usize])?;
            }
        }
        Ok(())
    };
    let Some(bz) = &plan.bz else {
        return write_piece(0, cfg.kernel);
    };
    let expected = image_len(cfg, Some(bz));
    let last = segments
        .iter()
        .map(|s| s.file_offset + s.file_size)
        .max()
        .unwrap_or(0);
    let mut at = 0u64;
    let mut failed = None;
    let total = bzimage::stream(bz.compression, bz.payload, &mut |piece| {
        if let Err(e) = write_piece(at, piece) {
            failed = Some(e);
            return false;
        }
        at += piece.len() as u64;
        true
    })
    .map_err(BuildError::BzImage)?;
    if let Some(e) = failed {
        return Err(e);
    }
    if total != expected || total < last {
        return Err(BuildError::BzImage(bzimage::BzImageError::SizeMismatch {
            compression: bz.compression,
            expected,
            got: total,
        }));
    }
    Ok(())
}
