//! The domU side of the test dom0 (`xenia-dom0test`): small workloads that dom0 builds with
//! the dom0-tools domain builder and watches from outside (CPU time, shutdown reason, the
//! console ring). Most of them never print a result line: dom0 judges them.
//!
//! - `hog`: spins forever doing arithmetic, events unmasked but nothing bound; never blocks.
//!   Built with several vCPUs, it starts every one of them (`VCPUOP_initialise` + `up`) and
//!   each spins the same way (dom0test's `churn` builds it with four).
//! - `spin_masked`: masks events and spins forever: the hypervisor must still take the CPU
//!   back (its timer interrupt does not depend on the guest's event mask).
//! - `flood`: calls `xen_version` in a loop forever: hypercalls must not starve anyone.
//! - `idle`: blocks forever with no timer and no port bound.
//! - `exit`: prints one line and powers off at once (the teardown loop's guest).
//! - `fault`: clears its trap table and reads an unmapped address: the hypervisor must crash
//!   it (reason `crash`), not stop anything else.
//! - `latency`: [`LATENCY_ROUNDS`] times sets a single-shot timer 1 ms ahead and blocks, and
//!   measures how late it woke (`now_ns()` after `SCHEDOP_block` minus the deadline); prints
//!   `latency max <us> us, mean <us> us` and passes if the maximum is under
//!   [`LATENCY_MAX_US`] and no wake-up came before its deadline.
//! - `console_ring`: writes [`CONSOLE_GREETING`] into its console ring (the page the device
//!   page and `start_info.console` name), notifies the console event channel, and waits
//!   (bounded, re-notifying) for the backend in dom0 to consume it.

use core::sync::atomic::Ordering;

use guest_abi::calls;
use guest_abi::console::XenconsInterface;
use guest_abi::device_page::{DEVICE_CONSOLE, DevicePage, console_ring_va, device_page_va};
use guest_abi::event::{EvtchnPort, VIRQ_TIMER};
use guest_abi::sched::ShutdownReason;
use guest_abi::types::PAGE_SIZE;
use guest_abi::vcpu::VcpuSetSingleshotTimer;
use xenia_guest_rt::boot::{start_info, start_info_va};
use xenia_guest_rt::check::{Checks, error, note, shutdown};
use xenia_guest_rt::events::{self, count};
use xenia_guest_rt::time::{NS_PER_MS, now_ns};
use xenia_guest_rt::{console, println};

/// Timer rounds of `latency`.
pub const LATENCY_ROUNDS: u32 = 1000;
/// How far ahead each `latency` timer is set.
const LATENCY_DELAY_NS: u64 = NS_PER_MS;
/// `latency` passes if no wake-up is this late or later.
pub const LATENCY_MAX_US: u64 = 2000;
/// What `console_ring` writes into its ring.
pub const CONSOLE_GREETING: &[u8] = b"hello from the console ring\n";
/// How long `console_ring` waits for the backend to consume its output.
const CONSOLE_WAIT_NS: u64 = 10_000 * NS_PER_MS;
/// How often `console_ring` notifies again while it waits.
const CONSOLE_RENOTIFY_NS: u64 = 100 * NS_PER_MS;

/// Work that the compiler cannot remove: a xorshift step.
fn churn(x: u64) -> u64 {
    let mut x = x ^ (x << 13);
    x ^= x >> 7;
    x ^ (x << 17)
}

/// Spins forever doing arithmetic.
fn spin_forever() -> ! {
    let mut x = now_ns() | 1;
    loop {
        for _ in 0..1024 {
            x = churn(core::hint::black_box(x));
        }
        core::hint::black_box(x);
    }
}

pub fn hog() -> ! {
    let nr = xenia_guest_rt::smp::nr_vcpus();
    println!("hog: spinning forever on {nr} vCPU(s), events unmasked, never blocking");
    for v in 1..nr {
        if let Err(e) = xenia_guest_rt::smp::start(v, hog_vcpu) {
            // dom0 sees the vCPU stay down (getvcpuinfo) and says so.
            println!("hog: vCPU {v} not started: {e:?}");
        }
    }
    console::flush();
    events::unmask_only();
    spin_forever()
}

/// A secondary vCPU of `hog`: spins with events masked (nothing is bound on it).
fn hog_vcpu(_vcpu: u32) -> ! {
    spin_forever()
}

pub fn spin_masked() -> ! {
    events::mask();
    println!("spin_masked: events masked, spinning forever");
    console::flush();
    spin_forever()
}

pub fn flood() -> ! {
    println!("flood: calling xen_version forever");
    console::flush();
    loop {
        core::hint::black_box(calls::xen_version().ok());
    }
}

pub fn idle() -> ! {
    println!("idle: blocking forever, no timer, no port");
    console::flush();
    loop {
        // Nothing is bound, so nothing should wake it; a spurious return just blocks again.
        let _ = calls::sched_block();
    }
}

pub fn exit() -> ! {
    println!("exit: powering off");
    shutdown(ShutdownReason::Poweroff)
}

pub fn fault() -> ! {
    super::shutdown::unhandled_fault()
}

pub fn latency() -> ! {
    events::mask();
    let port = match events::bind_virq(VIRQ_TIMER) {
        Ok(port) => port,
        Err(e) => error(format_args!("EVTCHNOP_bind_virq(VIRQ_TIMER) failed: {e:?}")),
    };
    let mut max_ns = 0u64;
    let mut total_ns = 0u64;
    let mut early = 0u32;
    let mut earliest_ns = 0i64;
    let mut spurious = 0u32;
    // Wake-ups by lateness: under 100 us, 500 us, 1 ms, 2 ms, 5 ms, 10 ms, 30 ms, and above.
    const BUCKETS_US: [u64; 7] = [100, 500, 1000, 2000, 5000, 10_000, 30_000];
    let mut histogram = [0u32; BUCKETS_US.len() + 1];
    let mut worst_round = 0u32;
    let mut late_rounds = [0u32; 8];
    let mut n_late = 0usize;
    for round in 0..LATENCY_ROUNDS {
        let seen = count(port);
        let deadline = now_ns() + LATENCY_DELAY_NS;
        let timer = VcpuSetSingleshotTimer {
            timeout_abs_ns: deadline,
            flags: 0,
        };
        if let Err(e) = calls::vcpu_set_singleshot_timer(0, &timer) {
            error(format_args!(
                "round {round}: VCPUOP_set_singleshot_timer failed: {e:?}"
            ));
        }
        // Block returns once an event is pending and the callback has run; only the timer
        // is bound, but a wake-up without its event is counted and blocked through.
        let mut blocks = 0u32;
        while count(port) == seen {
            if blocks == 100 {
                error(format_args!(
                    "round {round}: 100 wake-ups without the timer's event"
                ));
            }
            if let Err(e) = calls::sched_block() {
                error(format_args!("round {round}: SCHEDOP_block failed: {e:?}"));
            }
            blocks += 1;
        }
        let woke = now_ns();
        events::mask();
        spurious += blocks - 1;
        let late = woke as i64 - deadline as i64;
        if late < 0 {
            early += 1;
            earliest_ns = earliest_ns.min(late);
        } else {
            let late = late as u64;
            if late > max_ns {
                max_ns = late;
                worst_round = round;
            }
            total_ns += late;
            let bucket = BUCKETS_US
                .iter()
                .position(|&b| late < b * 1000)
                .unwrap_or(BUCKETS_US.len());
            histogram[bucket] += 1;
            if late >= LATENCY_MAX_US * 1000 {
                if let Some(slot) = late_rounds.get_mut(n_late) {
                    *slot = round;
                }
                n_late += 1;
            }
        }
    }
    let _ = calls::evtchn_close(port);
    let on_time = LATENCY_ROUNDS - early;
    let mean_ns = total_ns / u64::from(on_time.max(1));
    println!(
        "latency max {} us, mean {} us",
        max_ns / 1000,
        mean_ns / 1000
    );
    note(format_args!(
        "{LATENCY_ROUNDS} rounds of a 1 ms single-shot timer; {spurious} wake-ups without the \
         timer's event; the worst was round {worst_round}"
    ));
    note(format_args!(
        "lateness histogram (<0.1, <0.5, <1, <2, <5, <10, <30, >=30 ms): {histogram:?}"
    ));
    if n_late > 0 {
        note(format_args!(
            "{n_late} rounds {LATENCY_MAX_US} us late or more, the first of them: {:?}",
            &late_rounds[..n_late.min(late_rounds.len())]
        ));
    }
    let mut c = Checks::new();
    c.check(
        "no wake-up before its deadline",
        early == 0,
        format_args!(
            "{early} of {LATENCY_ROUNDS} woke early, the earliest {} ns before",
            -earliest_ns
        ),
    );
    c.check(
        format_args!("maximum wake-up latency under {LATENCY_MAX_US} us"),
        max_ns < LATENCY_MAX_US * 1000,
        format_args!("max {} us", max_ns / 1000),
    );
    c.finish()
}

pub fn console_ring() -> ! {
    let mut c = Checks::new();
    let si = start_info();
    let si_va = start_info_va();
    // SAFETY: the builder maps the device page at this address for a domU, supervisor and
    // writable, for as long as the guest keeps the bootstrap mappings (guest-abi
    // `device_page`); it is plain bytes.
    let page =
        unsafe { core::slice::from_raw_parts(device_page_va(si_va) as *const u8, PAGE_SIZE) };
    let devices = DevicePage::from_bytes(page).unwrap_or_default();
    c.check(
        "device page has the XENIADEV magic and version 1",
        devices.is_valid(),
        format_args!("magic {:?} version {}", devices.magic, devices.version),
    );
    let Some(entry) = devices.find(DEVICE_CONSOLE, 0).copied() else {
        c.check(
            "device page lists the console",
            false,
            format_args!("{} entries, no console", devices.entries().len()),
        );
        c.finish()
    };
    let port: EvtchnPort = si.console.domu_evtchn();
    c.check(
        "device page and start_info agree on the console",
        entry.evtchn == port && entry.ring_mfn == si.console.domu_mfn() && entry.backend == 0,
        format_args!(
            "device page: port {} mfn {:#x} backend {}; start_info: port {port} mfn {:#x}",
            entry.evtchn,
            entry.ring_mfn.0,
            entry.backend,
            si.console.domu_mfn().0
        ),
    );
    // SAFETY: the builder maps the console ring page here, zeroed, writable, for the domain's
    // lifetime (guest-abi `device_page`); every bit pattern is a valid XenconsInterface
    // (atomics only), and the backend's writes to it are atomic too.
    let ring = unsafe { &*(console_ring_va(si_va) as *const XenconsInterface) };
    let written = ring.write_output(CONSOLE_GREETING);
    c.eq(
        "greeting fits the empty output ring",
        written,
        CONSOLE_GREETING.len(),
    );
    let prod = ring.out_prod.load(Ordering::Acquire);
    events::mask();
    events::reset(port);
    let timer = match events::bind_virq(VIRQ_TIMER) {
        Ok(t) => t,
        Err(e) => error(format_args!("EVTCHNOP_bind_virq(VIRQ_TIMER) failed: {e:?}")),
    };
    c.ok(
        "EVTCHNOP_send on the console port",
        calls::evtchn_send(port),
    );

    // The backend may bind after the first notification (which is then dropped): notify
    // again every so often until it has consumed everything or the wait ends. Sleep in
    // between (the backend's event or the timer wakes us): dom0 needs the CPU.
    let start = now_ns();
    let mut notifications = 1u32;
    let mut next_notify = start + CONSOLE_RENOTIFY_NS;
    let consumed = loop {
        if ring.out_cons.load(Ordering::Acquire) == prod {
            break true;
        }
        let now = now_ns();
        if now >= start + CONSOLE_WAIT_NS {
            break false;
        }
        if now >= next_notify {
            let _ = calls::evtchn_send(port);
            notifications += 1;
            next_notify = now + CONSOLE_RENOTIFY_NS;
        }
        let _ = calls::set_timer_op(next_notify.min(start + CONSOLE_WAIT_NS));
        let _ = calls::sched_block();
        events::mask();
    };
    let _ = calls::set_timer_op(0);
    let _ = calls::evtchn_close(timer);
    events::mask();
    note(format_args!(
        "{notifications} notifications; {} events from the backend",
        count(port)
    ));
    c.check(
        "the backend consumed the output ring",
        consumed,
        format_args!(
            "out_cons {} out_prod {prod} after {} ms",
            ring.out_cons.load(Ordering::Acquire),
            CONSOLE_WAIT_NS / NS_PER_MS
        ),
    );
    c.finish()
}

/// `unprivileged`: a domU may not use domain control, system control, or act on another
/// domain: each attempt must fail with `EPERM` (and change nothing). Reports a result.
pub fn unprivileged() -> ! {
    use guest_abi::domctl::{self as dc, XenDomctl};
    use guest_abi::errno::Errno;
    use guest_abi::hypercall::{
        HYPERVISOR_CONSOLE_IO, HYPERVISOR_DOMCTL, HYPERVISOR_EVENT_CHANNEL_OP,
        HYPERVISOR_MEMORY_OP, HYPERVISOR_SYSCTL, hypercall1, hypercall2, hypercall3,
    };
    use guest_abi::memory::{MemoryReservation, XENMEM_POPULATE_PHYSMAP};
    use guest_abi::sysctl::{self as sc, XenSysctl};

    // Each refused call must also leave its argument as it was: a hypervisor that answers
    // EPERM after doing the work (or after filling the output) fails here. What the calls
    // would have changed in dom0 (its memory, its ports, its existence) dom0 reads back.
    let mut c = Checks::new();
    let mut domctl = XenDomctl::new(
        dc::XEN_DOMCTL_GETDOMAININFO,
        0,
        &dc::DomctlGetdomaininfo::default(),
    );
    let sent = domctl;
    // SAFETY: the hypervisor reads and may write the structure, borrowed for the call.
    let ret = unsafe { hypercall1(HYPERVISOR_DOMCTL, &raw mut domctl as u64) };
    c.errno("domctl getdomaininfo(0) from a domU", ret, Errno::EPERM);
    c.check(
        "the refused getdomaininfo(0) wrote nothing back",
        domctl == sent,
        format_args!("the structure changed: {domctl:?}"),
    );
    let mut destroy = XenDomctl::new(dc::XEN_DOMCTL_DESTROYDOMAIN, 0, &dc::NoArgument);
    // SAFETY: as above.
    let ret = unsafe { hypercall1(HYPERVISOR_DOMCTL, &raw mut destroy as u64) };
    c.errno("domctl destroydomain(0) from a domU", ret, Errno::EPERM);
    let mut sysctl = XenSysctl::new(sc::XEN_SYSCTL_PHYSINFO, &sc::SysctlPhysinfo::default());
    let sent = sysctl;
    // SAFETY: as above.
    let ret = unsafe { hypercall1(HYPERVISOR_SYSCTL, &raw mut sysctl as u64) };
    c.errno("sysctl physinfo from a domU", ret, Errno::EPERM);
    c.check(
        "the refused physinfo wrote nothing back",
        sysctl == sent,
        format_args!("the structure changed: {sysctl:?}"),
    );
    // Memory offlining is dom0's: a domU offlining its own console ring (a frame it owns,
    // which the hypervisor would mark pending) is refused, and no status is written.
    let ring = start_info().console.domu_mfn().0 as u32;
    let mut status = [sc::PG_OFFLINE_INVALID; 1];
    let mut offline = XenSysctl::new(
        sc::XEN_SYSCTL_PAGE_OFFLINE_OP,
        &sc::SysctlPageOfflineOp {
            cmd: sc::SYSCTL_PAGE_OFFLINE,
            start: ring,
            end: ring,
            status: status.as_mut_ptr() as u64,
            ..Default::default()
        },
    );
    let sent = offline;
    // SAFETY: as above; `status` too is borrowed for the call.
    let ret = unsafe { hypercall1(HYPERVISOR_SYSCTL, &raw mut offline as u64) };
    c.errno(
        "sysctl page_offline_op on its own frame from a domU",
        ret,
        Errno::EPERM,
    );
    c.check(
        "the refused page_offline_op wrote no status and left its argument",
        offline == sent && core::hint::black_box(&status)[0] == sc::PG_OFFLINE_INVALID,
        format_args!("status {:#x}, structure {offline:?}", status[0]),
    );
    let mut pfns = [0u64; 1];
    let mut reservation = MemoryReservation {
        extent_start: pfns.as_mut_ptr() as u64,
        nr_extents: 1,
        extent_order: 0,
        mem_flags: 0,
        domid: 0,
    };
    // SAFETY: as above; the extent array is borrowed too.
    let ret = unsafe {
        hypercall2(
            HYPERVISOR_MEMORY_OP,
            XENMEM_POPULATE_PHYSMAP.into(),
            &raw mut reservation as u64,
        )
    };
    c.errno(
        "populate_physmap for domain 0 from a domU",
        ret,
        Errno::EPERM,
    );
    c.check(
        "the refused populate_physmap returned no frame",
        pfns == [0] && reservation.nr_extents == 1,
        format_args!(
            "extent {:#x}, nr_extents {}",
            pfns[0], reservation.nr_extents
        ),
    );
    let mut alloc = guest_abi::event::EvtchnAllocUnbound {
        dom: 0,
        remote_dom: 0,
        port: 0,
    };
    // SAFETY: as above.
    let ret = unsafe {
        hypercall2(
            HYPERVISOR_EVENT_CHANNEL_OP,
            guest_abi::event::EVTCHNOP_ALLOC_UNBOUND.into(),
            &raw mut alloc as u64,
        )
    };
    c.errno("alloc_unbound in domain 0 from a domU", ret, Errno::EPERM);
    c.eq("the refused alloc_unbound returned no port", alloc.port, 0);
    const UNTOUCHED: u8 = 0xa7;
    let mut byte = [UNTOUCHED; 1];
    // SAFETY: as above.
    let ret = unsafe {
        hypercall3(
            HYPERVISOR_CONSOLE_IO,
            guest_abi::console::CONSOLEIO_READ.into(),
            1,
            byte.as_mut_ptr() as u64,
        )
    };
    c.errno("console_io read from a domU", ret, Errno::EPERM);
    c.eq("the refused console read wrote nothing", byte[0], UNTOUCHED);
    c.finish()
}
