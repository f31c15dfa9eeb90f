//! Regression attacks for finding 5 of issue 10: exhausting the hypervisor's memory through
//! what a guest may ask for. Each grows one kind of hypervisor state until the hypervisor
//! says no; the attack is refused when it ends in an error (not a stopped machine), the
//! suite goes on, and giving everything back returns the memory (free frames and, where the
//! hypervisor reports it, heap bytes in use, compared before and after).

use guest_abi::errno::Errno;
use guest_abi::event::EVTCHN_2L_NR_CHANNELS;
use guest_abi::grant::{
    GNTMAP_DEVICE_MAP, GNTST_GENERAL_ERROR, GNTST_NO_SPACE, GNTST_OKAY, GNTTABOP_MAP_GRANT_REF,
    GNTTABOP_UNMAP_GRANT_REF, GTF_PERMIT_ACCESS, GnttabMapGrantRef, GnttabUnmapGrantRef,
    GrantHandle, GrantRef,
};
use guest_abi::types::{DOMID_SELF, DomId};
use guest_abi::{calls, domctl::XEN_DOMCTL_MAX_VCPUS};
use xenia_guest_rt::mm::{self, PAGE, Window};
use xenia_guest_rt::println;

use crate::env::Env;
use crate::hv::{self, SELF_ID, gntst};
use crate::verdict::{Errname, Verdict};
use crate::{refused, setup_error, succeeded};

/// vCPUs per domain: the most a domain may have (one `vcpu_info` slot each, Xen's
/// `XEN_LEGACY_MAX_VCPUS`).
const VCPUS: u32 = guest_abi::shared_info::XEN_LEGACY_MAX_VCPUS as u32;
/// Most domains the attack creates before it calls the hypervisor's limits absent: far more
/// than the heap of a test machine holds (issue 10: 52 such domains stopped a 512 MiB one).
const MAX_DOMAINS: usize = 2048;
/// Heap bytes that may stay in use after every domain went back: the capacity the
/// hypervisor's collections (domain map, scheduler lists) keep after growing. A leak of one
/// vCPU's trap table (4 KiB) per vCPU, or of a few KiB per domain, over the tens of domains a
/// test machine holds, exceeds it.
const HEAP_SLACK: u64 = 64 * 1024;

/// Most free frames (1 GiB) on which the domain-creation attack tries to exhaust memory.
const EXHAUSTIBLE_FREE_PAGES: u64 = 1 << 18;

/// Window slot of the grant frame (see `findings` for the others).
const SLOT_GRANT_TABLE: usize = 9;
/// Grant references the map flood cycles through (above Xen's reserved 0–7, within the first
/// grant frame of 512 entries).
const FLOOD_REFS: core::ops::Range<GrantRef> = 16..512;
/// Operations per `grant_table_op` of the flood.
const FLOOD_BATCH: usize = 128;
/// Most grant maps the flood tries: one more than Xen's default maptrack limit
/// (`gnttab_max_maptrack_frames` 1024 × 256 entries, the hypervisor's
/// `DEFAULT_MAX_MAPTRACK`).
const MAX_GRANT_MAPS: usize = 1024 * 256 + 1;

/// Free frames and heap bytes in use (`Err` holds the heap query's `rax`: `ENOSYS` where the
/// hypervisor has no `XEN_SYSCTL_XENIA_HEAP_INFO`).
fn memory() -> (u64, Result<u64, i64>) {
    (hv::free_pages().unwrap_or(0), hv::heap_used())
}

fn heap_back(before: Result<u64, i64>, after: Result<u64, i64>) -> bool {
    match (before, after) {
        (Ok(b), Ok(a)) => a <= b + HEAP_SLACK,
        (Err(b), Err(a)) => b == Errno::ENOSYS.to_return() && a == b,
        _ => false,
    }
}

fn heap_text(h: Result<u64, i64>) -> impl core::fmt::Display {
    struct H(Result<u64, i64>);
    impl core::fmt::Display for H {
        fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
            match self.0 {
                Ok(b) => write!(f, "{b}"),
                Err(r) => write!(f, "{}", Errname(r)),
            }
        }
    }
    H(h)
}

/// F5: `createdomain` with 32 vCPUs until the hypervisor refuses (it must say `ENOMEM` or
/// `ENOSPC`, not stop), then every one destroyed: the free frames and the heap in use come
/// back to what they were, and a new domain can still be made.
pub fn create_domains_until_refused(_: &Env) -> Verdict {
    let (free0, heap0) = memory();
    if free0 > EXHAUSTIBLE_FREE_PAGES {
        // Exhausting a large machine takes hundreds of thousands of domains: the same code
        // is exhausted on the small test machines (attacks_max, attacks_qemu64).
        return crate::verdict::Verdict::new(
            crate::verdict::Outcome::Skipped,
            format_args!("{free0} free frames: too much memory to exhaust in a test"),
        );
    }
    let total0 = hv::heap_total();
    let mut ids: [DomId; MAX_DOMAINS] = [0; MAX_DOMAINS];
    let mut n = 0;
    let mut refusal = 0;
    while n < MAX_DOMAINS {
        match hv::create_domain(VCPUS) {
            Ok(id) => {
                ids[n] = id;
                n += 1;
                // As the toolstack does: the vCPUs are allocated by now, this confirms them.
                let _ = hv::domctl_with(
                    XEN_DOMCTL_MAX_VCPUS,
                    id,
                    &guest_abi::domctl::DomctlMaxVcpus { max: VCPUS },
                );
            }
            Err(r) => {
                refusal = r;
                break;
            }
        }
    }
    let (free_full, heap_full) = memory();
    let mut destroy_failed = 0;
    for &id in &ids[..n] {
        if hv::destroy_domain(id) < 0 {
            destroy_failed += 1;
        }
    }
    let (free1, heap1) = memory();
    // The heap grew from free frames while the domains lived and keeps those frames (in
    // use again by the next domains): they count as given back when the heap's use did.
    let grown = match (total0, hv::heap_total()) {
        (Ok(a), Ok(b)) => b.saturating_sub(a) / PAGE,
        _ => 0,
    };
    let again = hv::create_domain(1);
    if let Ok(id) = again {
        let _ = hv::destroy_domain(id);
    }
    println!(
        "attacks: {n} domains of {VCPUS} vCPUs: free frames {free0} -> {free_full} -> {free1}, \
         heap in use {} -> {} -> {}",
        heap_text(heap0),
        heap_text(heap_full),
        heap_text(heap1)
    );
    let how = format_args!(
        "{n} created, then {}; {destroy_failed} destroys failed; free frames {free0} -> \
         {free1} (+{grown} now the heap's); heap in use {} -> {}; one more afterwards {}",
        Errname(refusal),
        heap_text(heap0),
        heap_text(heap1),
        Errname(again.map_or_else(|r| r, i64::from)),
    );
    let proper = refusal == Errno::ENOMEM.to_return() || refusal == Errno::ENOSPC.to_return();
    if proper
        && destroy_failed == 0
        && free1 + grown == free0
        && heap_back(heap0, heap1)
        && again.is_ok()
    {
        refused!("{how}")
    } else {
        succeeded!("{how}")
    }
}

/// F5: unbound event ports until the hypervisor refuses (`ENOSPC`, or `ENOMEM` where a charge
/// limit comes first); all closed again, a port can be had again and the heap is back.
pub fn event_ports_until_refused(_: &Env) -> Verdict {
    const MAX: usize = EVTCHN_2L_NR_CHANNELS as usize;
    let (_, heap0) = memory();
    let mut ports = [0u32; MAX];
    let mut n = 0;
    let mut refusal = None;
    while n < MAX {
        match calls::evtchn_alloc_unbound(DOMID_SELF, SELF_ID) {
            Ok(p) => {
                ports[n] = p;
                n += 1;
            }
            Err(e) => {
                refusal = Some(e);
                break;
            }
        }
    }
    let mut close_failed = 0;
    for &p in &ports[..n] {
        if calls::evtchn_close(p).is_err() {
            close_failed += 1;
        }
    }
    let again = calls::evtchn_alloc_unbound(DOMID_SELF, SELF_ID);
    if let Ok(p) = again {
        let _ = calls::evtchn_close(p);
    }
    let (_, heap1) = memory();
    let how = format_args!(
        "{n} ports, then {}; {close_failed} closes failed; one more afterwards {}; heap in use \
         {} -> {}",
        refusal.map_or("no refusal", |e| e.name()),
        again.map_or_else(|e| e.name(), |_| "ok"),
        heap_text(heap0),
        heap_text(heap1)
    );
    // The heap is reported, not judged: like Xen, the hypervisor may keep a domain's event
    // buckets until the domain dies.
    let proper = matches!(refusal, Some(Errno::ENOSPC | Errno::ENOMEM));
    if proper && close_failed == 0 && again.is_ok() {
        refused!("{how}")
    } else {
        succeeded!("{how}")
    }
}

/// `grant_table_op` on a batch; returns `rax`.
fn batch<T>(cmd: u32, ops: &mut [T]) -> i64 {
    // SAFETY: the operations are device mappings (no page table changes), borrowed for the
    // call.
    unsafe { hv::gnttab_op(cmd, ops) }
}

/// F5: grant maps of the guest's own grants (device mappings: no page table involved) until
/// the hypervisor refuses; they must end in an error (`GNTST_no_space` when the maptrack is
/// full), then all unmap, and the heap is back.
pub fn grant_maps_until_refused(_: &Env) -> Verdict {
    let gframe = match hv::grant_frame() {
        Ok(f) => f,
        Err((ret, st)) => return setup_error!("setup_table: {} {}", Errname(ret), gntst(st)),
    };
    let Some((_, data)) = mm::fresh_frame() else {
        return setup_error!("no fresh frame");
    };
    // SAFETY: the slot is this module's.
    let table = match unsafe { Window::writable(SLOT_GRANT_TABLE, gframe) } {
        Ok(w) => w,
        Err(r) => return setup_error!("mapping the grant frame: {}", Errname(r)),
    };
    for r in FLOOD_REFS {
        hv::grant(table.va(), r, SELF_ID, data, GTF_PERMIT_ACCESS);
    }
    let (_, heap0) = memory();
    let mut ops = [GnttabMapGrantRef::default(); FLOOD_BATCH];
    let (mut mapped, mut lo, mut hi) = (0usize, GrantHandle::MAX, 0);
    let mut last = (0i64, GNTST_OKAY);
    let refs = FLOOD_REFS.end - FLOOD_REFS.start;
    'flood: while mapped < MAX_GRANT_MAPS {
        for (i, op) in ops.iter_mut().enumerate() {
            *op = GnttabMapGrantRef {
                host_addr: 0,
                flags: GNTMAP_DEVICE_MAP,
                gref: FLOOD_REFS.start + ((mapped + i) as u32 % refs),
                dom: SELF_ID,
                status: 0x7777,
                handle: 0,
                dev_bus_addr: 0,
            };
        }
        let ret = batch(GNTTABOP_MAP_GRANT_REF, &mut ops);
        for op in &ops {
            if ret != 0 || op.status != GNTST_OKAY {
                last = (ret, op.status);
                // The rest of the batch may have got handles too: count them for the unmap.
                for o in ops.iter().filter(|o| o.status == GNTST_OKAY && ret == 0) {
                    lo = lo.min(o.handle);
                    hi = hi.max(o.handle);
                }
                break 'flood;
            }
            lo = lo.min(op.handle);
            hi = hi.max(op.handle);
            mapped += 1;
        }
    }
    // Every handle between the lowest and highest seen, as device mappings of `data`.
    let mut unmap_failed = 0u64;
    let mut h = lo;
    let mut uops = [GnttabUnmapGrantRef::default(); FLOOD_BATCH];
    while lo <= hi && h <= hi {
        let k = ((hi - h) as usize + 1).min(FLOOD_BATCH);
        for (i, op) in uops[..k].iter_mut().enumerate() {
            *op = GnttabUnmapGrantRef {
                host_addr: 0,
                dev_bus_addr: data << 12,
                handle: h + i as GrantHandle,
                status: 0x7777,
            };
        }
        let ret = batch(GNTTABOP_UNMAP_GRANT_REF, &mut uops[..k]);
        unmap_failed += uops[..k]
            .iter()
            .filter(|o| ret != 0 || o.status != GNTST_OKAY)
            .count() as u64;
        h += k as GrantHandle;
    }
    let busy = FLOOD_REFS
        .filter(|&r| hv::grant_flags(table.va(), r) & !GTF_PERMIT_ACCESS != 0)
        .count();
    for r in FLOOD_REFS {
        hv::ungrant(table.va(), r);
    }
    let _ = table.close();
    let (_, heap1) = memory();
    let how = format_args!(
        "{mapped} maps, then {} {}; unmapping handles {lo}..={hi}: {unmap_failed} failed, {busy} \
         grants still busy; heap in use {} -> {}",
        Errname(last.0),
        gntst(last.1),
        heap_text(heap0),
        heap_text(heap1)
    );
    // GNTST_no_space when the maptrack is full; a per-grant pin limit (Xen keeps 8-bit pin
    // counts) may come first, with GNTST_general_error. The heap is reported, not judged:
    // like Xen, the hypervisor may keep maptrack frames until the domain dies.
    let ended = last.0 != 0 || last.1 != GNTST_OKAY;
    let proper = last.0 == 0 && matches!(last.1, GNTST_NO_SPACE | GNTST_GENERAL_ERROR);
    if proper && busy == 0 {
        refused!("{how}")
    } else if !ended {
        succeeded!("{how}: never refused")
    } else {
        succeeded!("{how}")
    }
}
