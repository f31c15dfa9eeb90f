//! Memory for devices: what a driver's DMA and MMIO need on a PV dom0, and the
//! `virtio-drivers` [`Hal`] over it.
//!
//! * **Kernel addresses.** Pages of the start-of-day padding below the window slots (the
//!   padding is at least 512 KiB and dom0's kernel uses only its top 16 pages, for windows),
//!   taken from the top down, are where DMA memory and device registers are mapped. Their L1
//!   entries exist already (the builder's bootstrap tables); ring 3 never sees them (no USER
//!   bit in the new entries).
//! * **DMA.** A device sees machine addresses, so DMA memory must be machine-contiguous, which
//!   dom0's pseudo-physical pages need not be. At boot [`init`] takes [`POOL_PAGES`] padding
//!   pages; if their machine frames are not consecutive it unmaps them and trades them with
//!   `XENMEM_exchange` for one machine-contiguous extent, then maps that and points the p2m
//!   at it (Linux's `xen_create_contiguous_region`). [`XenHal::dma_alloc`] hands out pages of
//!   this pool. [`XenHal::share`] gives the machine address of a buffer whose pages are
//!   machine-contiguous (any pool buffer is; so is a buffer inside one page) and bounces any
//!   other through pool pages.
//! * **MMIO.** [`map_mmio`] maps a BAR's pages uncached with `mmu_update` and `foreigndom =
//!   DOMID_IO` (the hypervisor refuses frames that are RAM or its own);
//!   [`XenHal::mmio_phys_to_virt`] only looks up what a driver mapped before, and a region
//!   nobody mapped is a driver bug.

use alloc::vec::Vec;
use core::ptr::NonNull;
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use guest_abi::memory::{MMU_NORMAL_PT_UPDATE, MemoryExchange, MemoryReservation, MmuUpdate};
use guest_abi::types::{DOMID_IO, DOMID_SELF};
use spin::Mutex;
use virtio_drivers::{BufferDirection, Hal, PhysAddr};
use xenia_guest_rt::boot::{VIRT_BASE, padding};
use xenia_guest_rt::mm::{self, PAGE, WINDOW_SLOTS, pte};

/// Pages in the DMA pool: the virtqueues and each disk's request buffers (a power of two:
/// one `XENMEM_exchange` extent).
pub const POOL_PAGES: usize = 64;

/// The lowest padding address handed out so far (0: none yet); the next reservation ends
/// here.
static LOW: AtomicU64 = AtomicU64::new(0);

/// Reserves `pages` pages of kernel address space in the padding, each still mapping its
/// padding frame. Boot only.
fn reserve(pages: usize) -> Option<u64> {
    let (start, end) = padding();
    let top = match LOW.load(Ordering::SeqCst) {
        0 => end - (WINDOW_SLOTS as u64) * PAGE,
        low => low,
    };
    let base = top.checked_sub(pages as u64 * PAGE)?;
    // Keep the bottom 64 KiB of the padding to whoever uses it from there.
    if base < start + 16 * PAGE {
        return None;
    }
    LOW.store(base, Ordering::SeqCst);
    Some(base)
}

/// The pool: its first page's address and machine frame, and which pages are taken.
struct Pool {
    va: u64,
    mfn: u64,
    used: [bool; POOL_PAGES],
}

static POOL: Mutex<Option<Pool>> = Mutex::new(None);

/// Flags of a kernel data page: present, writable, not executable, not ring 3's.
fn data_flags() -> u64 {
    pte::PRESENT | pte::RW | if mm::has_nx() { pte::NX } else { 0 }
}

/// The pseudo-physical frame `va` maps in the bootstrap region.
fn pfn_of(va: u64) -> u64 {
    (va - VIRT_BASE) / PAGE
}

/// How the pool was made, for the boot log.
pub enum Made {
    /// The padding's frames were machine-contiguous already.
    Contiguous(u64),
    /// `XENMEM_exchange` traded them for a contiguous extent.
    Exchanged(u64),
}

/// Makes the DMA pool; `force_exchange` trades the frames even if they are contiguous
/// already (dom0's `dma=exchange`, to exercise the exchange). Boot only, before any process
/// runs.
pub fn init(force_exchange: bool) -> Result<Made, &'static str> {
    let va = reserve(POOL_PAGES).ok_or("no room in the start-of-day padding")?;
    let pfns: Vec<u64> = (0..POOL_PAGES as u64).map(|i| pfn_of(va) + i).collect();
    let mfns: Vec<u64> = pfns.iter().map(|&p| mm::p2m(p)).collect();
    let contiguous = mfns.windows(2).all(|w| w[1] == w[0] + 1);
    let made = if contiguous && !force_exchange {
        Made::Contiguous(mfns[0])
    } else {
        Made::Exchanged(exchange(va, &pfns, &mfns)?)
    };
    let first = match made {
        Made::Contiguous(m) | Made::Exchanged(m) => m,
    };
    // Remap without USER (the padding is user-accessible) and clear what the padding held.
    for i in 0..POOL_PAGES as u64 {
        // SAFETY: the page is the pool's, reserved above; nothing refers to it yet.
        let ret = unsafe {
            mm::update_va(
                va + i * PAGE,
                pte::entry(first + i, data_flags()),
                guest_abi::memory::UVMF_INVLPG | guest_abi::memory::UVMF_LOCAL,
            )
        };
        if ret < 0 {
            return Err("the hypervisor refused to map the DMA pool");
        }
    }
    // SAFETY: the pool's pages are mapped writable just above and used by nothing else.
    unsafe { core::ptr::write_bytes(va as *mut u8, 0, POOL_PAGES * PAGE as usize) };
    *POOL.lock() = Some(Pool {
        va,
        mfn: first,
        used: [false; POOL_PAGES],
    });
    Ok(made)
}

/// Trades the pool's frames for one machine-contiguous extent; returns its first frame.
fn exchange(va: u64, pfns: &[u64], mfns: &[u64]) -> Result<u64, &'static str> {
    let flags = guest_abi::memory::UVMF_INVLPG | guest_abi::memory::UVMF_LOCAL;
    for i in 0..pfns.len() as u64 {
        // SAFETY: the pages are reserved padding pages nothing uses; unmapping them lets the
        // hypervisor take their frames.
        if unsafe { mm::update_va(va + i * PAGE, 0, flags) } < 0 {
            return Err("cannot unmap the DMA pool's pages");
        }
    }
    let mut input = mfns.to_vec();
    let mut output = [pfns[0]];
    let mut exch = MemoryExchange {
        input: MemoryReservation {
            extent_start: input.as_mut_ptr() as u64,
            nr_extents: input.len() as u64,
            extent_order: 0,
            mem_flags: 0,
            domid: DOMID_SELF,
        },
        output: MemoryReservation {
            extent_start: output.as_mut_ptr() as u64,
            nr_extents: 1,
            extent_order: POOL_PAGES.trailing_zeros(),
            mem_flags: 0,
            domid: DOMID_SELF,
        },
        nr_exchanged: 0,
    };
    // SAFETY: the frames given are unmapped above and no longer used; both arrays live across
    // the call.
    let result = unsafe { guest_abi::calls::memory_exchange(&mut exch) };
    if result.is_err() || exch.nr_exchanged != input.len() as u64 {
        // Xen exchanges one output extent as a whole: nothing was taken. Map the old frames
        // back.
        for (i, &mfn) in mfns.iter().enumerate() {
            // SAFETY: as above; the frames are still ours.
            let _ = unsafe {
                mm::update_va(va + i as u64 * PAGE, pte::entry(mfn, data_flags()), flags)
            };
        }
        return Err("XENMEM_exchange refused to make the DMA pool contiguous");
    }
    let first = output[0];
    for (i, &pfn) in pfns.iter().enumerate() {
        mm::set_p2m(pfn, first + i as u64);
    }
    Ok(first)
}

/// Whether the pool was made ([`init`] succeeded).
pub fn ready() -> bool {
    POOL.lock().is_some()
}

/// `pages` zeroed pages of the pool: (machine address, kernel address).
pub fn alloc(pages: usize) -> Option<(u64, u64)> {
    let mut pool = POOL.lock();
    let pool = pool.as_mut()?;
    if pages == 0 || pages > POOL_PAGES {
        return None;
    }
    let at = (0..=POOL_PAGES - pages).find(|&i| pool.used[i..i + pages].iter().all(|u| !u))?;
    pool.used[at..at + pages].fill(true);
    let va = pool.va + at as u64 * PAGE;
    // SAFETY: the pages are the pool's, mapped writable, and were free: no reference to them
    // exists.
    unsafe { core::ptr::write_bytes(va as *mut u8, 0, pages * PAGE as usize) };
    Some(((pool.mfn + at as u64) * PAGE, va))
}

/// Gives `pages` pages at kernel address `va` back to the pool.
pub fn free(va: u64, pages: usize) {
    let mut pool = POOL.lock();
    if let Some(pool) = pool.as_mut()
        && va >= pool.va
    {
        let at = ((va - pool.va) / PAGE) as usize;
        if at + pages <= POOL_PAGES {
            pool.used[at..at + pages].fill(false);
        }
    }
}

/// The machine address of kernel address `va`, if the pool holds it.
fn pool_ma(va: u64, len: usize) -> Option<u64> {
    let pool = POOL.lock();
    let pool = pool.as_ref()?;
    let end = pool.va + POOL_PAGES as u64 * PAGE;
    (va >= pool.va && va.checked_add(len as u64)? <= end).then(|| pool.mfn * PAGE + (va - pool.va))
}

/// The machine frame behind the page at `va` in the current address space.
fn mfn_at(va: u64) -> Option<u64> {
    let leaf = mm::walk(va & !(PAGE - 1))[3]?;
    leaf.present().then(|| pte::mfn(leaf.entry))
}

/// Whether `share` bounces every buffer outside the pool (dom0's `dma=bounce`, to exercise
/// the bounce path: the driver's own buffers are pool buffers, which never need it).
pub static FORCE_BOUNCE: AtomicBool = AtomicBool::new(false);

/// The machine address of `[va, va + len)` if its pages are machine-contiguous.
fn contiguous_ma(va: u64, len: usize) -> Option<u64> {
    if let Some(ma) = pool_ma(va, len) {
        return Some(ma);
    }
    if FORCE_BOUNCE.load(Ordering::Relaxed) {
        return None;
    }
    let first = va & !(PAGE - 1);
    let last = (va + len.max(1) as u64 - 1) & !(PAGE - 1);
    let mfn0 = mfn_at(first)?;
    let mut page = first + PAGE;
    let mut expect = mfn0 + 1;
    while page <= last {
        if mfn_at(page)? != expect {
            return None;
        }
        page += PAGE;
        expect += 1;
    }
    Some(mfn0 * PAGE + (va & (PAGE - 1)))
}

/// MMIO pages mapped so far: (machine frame, kernel address).
static MMIO: Mutex<Vec<(u64, u64)>> = Mutex::new(Vec::new());

/// Maps `[phys, phys + size)` (device memory) uncached for the kernel. Pages mapped before
/// are reused. Boot only.
pub fn map_mmio(phys: u64, size: u64) -> Result<(), i64> {
    let first = phys / PAGE;
    let last = (phys + size.max(1) - 1) / PAGE;
    for mfn in first..=last {
        if MMIO.lock().iter().any(|&(m, _)| m == mfn) {
            continue;
        }
        let va = reserve(1).ok_or(-12i64)?;
        let leaf = mm::walk(va)[3].ok_or(-14i64)?;
        let req = [MmuUpdate {
            ptr: leaf.ma() | MMU_NORMAL_PT_UPDATE,
            val: pte::entry(mfn, data_flags() | pte::PCD | pte::PWT),
        }];
        // SAFETY: the entry maps a reserved padding page nothing refers to; the hypervisor
        // checks the frame is I/O memory (DOMID_IO).
        let ret = unsafe { mm::mmu_update_raw(req.as_ptr() as u64, 1, 0, u64::from(DOMID_IO)) };
        if ret < 0 {
            return Err(ret);
        }
        // SAFETY: flushing this vCPU's TLB changes no memory.
        unsafe { mm::mmuext_one(guest_abi::memory::MMUEXT_TLB_FLUSH_LOCAL, 0) };
        MMIO.lock().push((mfn, va));
    }
    Ok(())
}

/// The kernel address of device memory at `phys`, if mapped.
fn mmio_va(phys: u64, size: usize) -> Option<u64> {
    let mmio = MMIO.lock();
    let va_of = |mfn: u64| mmio.iter().find(|&&(m, _)| m == mfn).map(|&(_, v)| v);
    let base = va_of(phys / PAGE)?;
    // Every page of the region must be mapped, and consecutively.
    let last = (phys + size.max(1) as u64 - 1) / PAGE;
    for (i, mfn) in (phys / PAGE..=last).enumerate() {
        if va_of(mfn)? != base + i as u64 * PAGE {
            return None;
        }
    }
    Some(base + phys % PAGE)
}

/// Bounce buffers in use: (machine address given to the device, kernel address, pages).
static BOUNCES: Mutex<Vec<(u64, u64, usize)>> = Mutex::new(Vec::new());

/// Buffers bounced so far (they cost a copy; the driver's own buffers never bounce).
pub static BOUNCED: AtomicU64 = AtomicU64::new(0);

/// `virtio-drivers`' access to memory and devices on dom0.
pub struct XenHal;

// SAFETY: `dma_alloc` returns pool pages, zeroed, page-aligned, used by nothing else until
// `dma_dealloc`; `mmio_phys_to_virt` returns addresses of device pages mapped for this alone;
// `share` returns a machine address the device may use for the buffer's bytes.
unsafe impl Hal for XenHal {
    fn dma_alloc(pages: usize, _direction: BufferDirection) -> (PhysAddr, NonNull<u8>) {
        match alloc(pages) {
            Some((ma, va)) => (
                ma,
                NonNull::new(va as *mut u8).unwrap_or(NonNull::dangling()),
            ),
            // `Dma::new` reports a zero machine address as `Error::DmaError`.
            None => (0, NonNull::dangling()),
        }
    }

    unsafe fn dma_dealloc(_paddr: PhysAddr, vaddr: NonNull<u8>, pages: usize) -> i32 {
        free(vaddr.as_ptr() as u64, pages);
        0
    }

    unsafe fn mmio_phys_to_virt(paddr: PhysAddr, size: usize) -> NonNull<u8> {
        let va = mmio_va(paddr, size).unwrap_or_else(|| {
            panic!("dma: device memory {paddr:#x}+{size:#x} was not mapped by its driver")
        });
        NonNull::new(va as *mut u8).unwrap_or(NonNull::dangling())
    }

    unsafe fn share(buffer: NonNull<[u8]>, direction: BufferDirection) -> PhysAddr {
        let va = buffer.as_ptr() as *mut u8 as u64;
        let len = buffer.len();
        if let Some(ma) = contiguous_ma(va, len) {
            return ma;
        }
        let pages = len.div_ceil(PAGE as usize);
        let (ma, bounce) =
            alloc(pages).unwrap_or_else(|| panic!("dma: no pool pages to bounce {len} bytes"));
        if direction != BufferDirection::DeviceToDriver {
            // SAFETY: the caller's buffer is valid for `len` bytes; the bounce pages are ours.
            unsafe { core::ptr::copy_nonoverlapping(va as *const u8, bounce as *mut u8, len) };
        }
        if BOUNCED.fetch_add(1, Ordering::Relaxed) == 0 {
            crate::tprintln!(
                "dma: bouncing a {len}-byte buffer that is not machine-contiguous (first of its kind)"
            );
        }
        BOUNCES.lock().push((ma, bounce, pages));
        ma
    }

    unsafe fn unshare(paddr: PhysAddr, buffer: NonNull<[u8]>, direction: BufferDirection) {
        let found = {
            let mut bounces = BOUNCES.lock();
            let at = bounces.iter().position(|&(ma, _, _)| ma == paddr);
            at.map(|i| bounces.swap_remove(i))
        };
        let Some((_, bounce, pages)) = found else {
            return; // shared in place
        };
        if direction != BufferDirection::DriverToDevice {
            let len = buffer.len();
            // SAFETY: the caller's buffer is valid for `len` bytes; the bounce pages hold what
            // the device wrote.
            unsafe {
                core::ptr::copy_nonoverlapping(bounce as *const u8, buffer.as_ptr() as *mut u8, len)
            };
        }
        free(bounce, pages);
    }
}
