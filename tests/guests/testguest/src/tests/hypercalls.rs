//! `hypercalls`: every hypercall of the first guest ABI, with good and bad arguments.
//!
//! Pass: good calls succeed with the documented result; bad ones fail with exactly the errno
//! guest-abi documents (module `hypercall`, "Errors"), and a failed call has no effect that
//! the test can see. The `iret` hypercall returns from a trap handler restoring `rax`, `rcx`,
//! `r11` and the event mask from the frame.

use core::sync::atomic::Ordering;

use guest_abi::callback::{
    CALLBACKOP_REGISTER, CALLBACKOP_UNREGISTER, CALLBACKTYPE_EVENT, CallbackRegister,
    CallbackUnregister,
};
use guest_abi::console::{CONSOLEIO_READ, CONSOLEIO_WRITE};
use guest_abi::errno::Errno::{self, *};
use guest_abi::event::{
    EVTCHN_2L_NR_CHANNELS, EVTCHNSTAT_CLOSED, EVTCHNSTAT_INTERDOMAIN, EVTCHNSTAT_UNBOUND,
    EVTCHNSTAT_VIRQ, EvtchnPort, NR_VIRQS, VIRQ_DEBUG, VIRQ_TIMER,
};
use guest_abi::hypercall::*;
use guest_abi::selectors::{
    KERNEL_SS, SEGBASE_FS, SEGBASE_GS_KERNEL, SEGBASE_GS_USER, USER_CS, USER_SS,
};
use guest_abi::start_info::SIF_INITDOMAIN;
use guest_abi::trap::{TI_MASK_EVENTS, TrapInfo};
use guest_abi::types::{DOMID_SELF, DomId};
use guest_abi::vcpu::{
    VCPU_SSHOTTMR_FUTURE, VCPUOP_IS_UP, VCPUOP_SET_PERIODIC_TIMER, VCPUOP_SET_SINGLESHOT_TIMER,
    VCPUOP_STOP_PERIODIC_TIMER, VcpuSetPeriodicTimer, VcpuSetSingleshotTimer,
};
use guest_abi::version::{
    XENIA_CAPABILITIES, XENIA_VERSION, XENVER_CAPABILITIES, XENVER_GET_FEATURES, XENVER_VERSION,
    XenFeatureInfo,
};
use guest_abi::{calls, event, sched, vcpu};
use xenia_guest_rt::boot::{hypercall_page_va, image, start_info, vcpu as vcpu_info};
use xenia_guest_rt::check::Checks;
use xenia_guest_rt::time::now_ns;
use xenia_guest_rt::trap::{default_table, event_entry, kernel_stack_top, syscall_entry};
use xenia_guest_rt::{events, println};

use super::{ENTRY_AREA, HYPERVISOR_IMAGE, M2P, NON_CANONICAL, UNMAPPED, raw};

/// Issues hypercall `nr` with arguments that make the hypervisor touch nothing of ours
/// except the buffers the test set up.
fn call(nr: u64, args: [u64; 5]) -> i64 {
    // SAFETY: every call in this test is either refused (bad arguments) or does what the
    // test wants (good arguments); none changes mappings, and handler addresses always point
    // at the runtime's stubs.
    unsafe { raw::call(nr, args) }
}

fn addr<T>(r: &T) -> u64 {
    r as *const T as u64
}

fn addr_mut<T>(r: &mut T) -> u64 {
    r as *mut T as u64
}

/// Our own domain id, as the hypervisor reports it in event-channel status.
fn own_domid() -> Option<DomId> {
    (start_info().flags & SIF_INITDOMAIN != 0).then_some(0)
}

pub fn run() -> ! {
    let mut c = Checks::new();
    events::mask();
    hypercall_page_contents(&mut c);
    console_io(&mut c);
    xen_version(&mut c);
    set_trap_table(&mut c);
    callback_op(&mut c);
    stack_switch(&mut c);
    set_segment_base(&mut c);
    timers(&mut c);
    sched_op(&mut c);
    event_channel_op(&mut c);
    unknown_numbers(&mut c);
    iret(&mut c);
    super::copyout::run(&mut c);
    c.finish()
}

fn hypercall_page_contents(c: &mut Checks) {
    let page = hypercall_page_va();
    let expected = hypercall_page_image();
    // SAFETY: the page is part of our image, 4096 readable bytes.
    let actual = unsafe { core::slice::from_raw_parts(page as *const u8, expected.len()) };
    let first_bad = actual.iter().zip(expected.iter()).position(|(a, b)| a != b);
    c.check(
        "hypercall page filled by the builder",
        first_bad.is_none(),
        format_args!("page at {page:#x}, first difference at byte {first_bad:?}"),
    );
}

unsafe extern "C" {
    fn hc_iret_direct_entry();
    fn hc_iret_page_entry();
}

fn console_io(c: &mut Checks) {
    let msg = b"hypercalls: a console_io write of its own\n";
    let ret = call(
        HYPERVISOR_CONSOLE_IO,
        [CONSOLEIO_WRITE.into(), msg.len() as u64, addr(msg), 0, 0],
    );
    c.eq("console_io write returns the count", ret, msg.len() as i64);

    let write = |count: u64, ptr: u64| {
        call(
            HYPERVISOR_CONSOLE_IO,
            [CONSOLEIO_WRITE.into(), count, ptr, 0, 0],
        )
    };
    c.errno(
        "console_io write from an unmapped buffer",
        write(16, UNMAPPED),
        EFAULT,
    );
    // Nothing to copy touches no memory (Xen's copies of zero bytes check nothing): a
    // zero-length buffer may be a null or unmapped pointer.
    c.eq(
        "console_io write of 0 bytes from an unmapped buffer returns 0",
        write(0, UNMAPPED),
        0,
    );
    if start_info().flags & SIF_INITDOMAIN != 0 {
        c.eq(
            "console_io read of 0 bytes into an unmapped buffer returns 0",
            call(
                HYPERVISOR_CONSOLE_IO,
                [CONSOLEIO_READ.into(), 0, UNMAPPED, 0, 0],
            ),
            0,
        );
    }
    c.errno(
        "console_io write from a non-canonical buffer",
        write(16, NON_CANONICAL),
        EFAULT,
    );
    c.errno(
        "console_io write from the hypervisor image",
        write(16, HYPERVISOR_IMAGE),
        EFAULT,
    );
    c.errno(
        "console_io write from the entry area (guest-readable, not the guest's)",
        write(16, ENTRY_AREA),
        EFAULT,
    );
    c.errno(
        "console_io write from the M2P table",
        write(16, M2P),
        EFAULT,
    );
    let (image_start, _) = image();
    c.errno(
        "console_io write with a count that wraps the address space",
        write(u64::MAX, image_start),
        EFAULT,
    );
    c.errno(
        "console_io write with a count running past 2^64",
        write(0u64.wrapping_sub(image_start) + 16, image_start),
        EFAULT,
    );
    c.errno(
        "console_io write with a huge count (2^40) from a good buffer",
        write(1 << 40, image_start),
        EFAULT,
    );
    c.errno(
        "console_io write of a buffer that runs into unmapped memory",
        write(64, UNMAPPED - 32),
        EFAULT,
    );

    let mut buf = [0u8; 16];
    let ret = call(
        HYPERVISOR_CONSOLE_IO,
        [CONSOLEIO_READ.into(), 0, addr_mut(&mut buf), 0, 0],
    );
    c.eq("console_io read with count 0 returns 0", ret, 0);
    c.errno(
        "console_io with an unknown command",
        call(HYPERVISOR_CONSOLE_IO, [7, 1, addr(msg), 0, 0]),
        ENOSYS,
    );
}

fn xen_version(c: &mut Checks) {
    c.eq(
        "xen_version(XENVER_version)",
        call(HYPERVISOR_XEN_VERSION, [XENVER_VERSION.into(), 0, 0, 0, 0]),
        i64::from(XENIA_VERSION),
    );
    let mut caps = [0u8; 1024];
    let ret = call(
        HYPERVISOR_XEN_VERSION,
        [XENVER_CAPABILITIES.into(), addr_mut(&mut caps), 0, 0, 0],
    );
    let len = caps.iter().position(|&b| b == 0).unwrap_or(caps.len());
    let got = core::str::from_utf8(&caps[..len]).unwrap_or("<not text>");
    c.check(
        "xen_version(XENVER_capabilities)",
        ret == 0 && got == XENIA_CAPABILITIES,
        format_args!("returned {ret}, \"{got}\", expected \"{XENIA_CAPABILITIES}\""),
    );
    c.errno(
        "xen_version(XENVER_capabilities) into an unmapped buffer",
        call(
            HYPERVISOR_XEN_VERSION,
            [XENVER_CAPABILITIES.into(), UNMAPPED, 0, 0, 0],
        ),
        EFAULT,
    );
    // Our own L4, mapped read-only: the hypervisor must not write through it.
    let l4 = start_info().pt_base;
    c.errno(
        "xen_version(XENVER_capabilities) into the read-only page-table page",
        call(
            HYPERVISOR_XEN_VERSION,
            [XENVER_CAPABILITIES.into(), l4, 0, 0, 0],
        ),
        EFAULT,
    );
    let mut fi = XenFeatureInfo {
        submap_idx: 1,
        submap: 0,
    };
    c.errno(
        "xen_version(XENVER_get_features) of submap 1",
        call(
            HYPERVISOR_XEN_VERSION,
            [XENVER_GET_FEATURES.into(), addr_mut(&mut fi), 0, 0, 0],
        ),
        EINVAL,
    );
    c.errno(
        "xen_version with an unknown command",
        call(HYPERVISOR_XEN_VERSION, [0x7fff, 0, 0, 0, 0]),
        ENOSYS,
    );
}

fn set_trap_table(c: &mut Checks) {
    let table = default_table();
    c.eq(
        "set_trap_table (the runtime's table)",
        call(HYPERVISOR_SET_TRAP_TABLE, [addr(&table), 0, 0, 0, 0]),
        0,
    );
    c.errno(
        "set_trap_table from an unmapped array",
        call(HYPERVISOR_SET_TRAP_TABLE, [UNMAPPED, 0, 0, 0, 0]),
        EFAULT,
    );
    let good = table[0].address;
    // Vector 0x8f is never raised by the tests: a wrongly installed entry stays harmless.
    let bad_tables: [(&str, TrapInfo); 4] = [
        (
            "a handler in the hypervisor's range",
            TrapInfo::new(0x8f, 0, true, HYPERVISOR_IMAGE),
        ),
        (
            "a non-canonical handler",
            TrapInfo::new(0x8f, 0, true, NON_CANONICAL),
        ),
        (
            "a code selector other than KERNEL_CS",
            TrapInfo {
                cs: USER_CS,
                ..TrapInfo::new(0x8f, 0, true, good)
            },
        ),
        (
            "an entry for the hypercall vector",
            TrapInfo::new(HYPERCALL_VECTOR, 1, true, good),
        ),
    ];
    for (what, entry) in bad_tables {
        let t = [entry, TrapInfo::END];
        c.errno(
            format_args!("set_trap_table with {what}"),
            call(HYPERVISOR_SET_TRAP_TABLE, [addr(&t), 0, 0, 0, 0]),
            EINVAL,
        );
    }
}

fn callback_op(c: &mut Checks) {
    let register = |cb: &CallbackRegister| {
        call(
            HYPERVISOR_CALLBACK_OP,
            [CALLBACKOP_REGISTER.into(), addr(cb), 0, 0, 0],
        )
    };
    let event = CallbackRegister {
        callback_type: CALLBACKTYPE_EVENT,
        flags: 0,
        address: event_entry(),
    };
    c.eq(
        "callback_op register the event callback",
        register(&event),
        0,
    );
    c.eq(
        "callback_op register the syscall callback",
        register(&CallbackRegister {
            callback_type: guest_abi::callback::CALLBACKTYPE_SYSCALL,
            flags: 0,
            address: syscall_entry(),
        }),
        0,
    );
    c.errno(
        "callback_op register an unknown type",
        register(&CallbackRegister {
            callback_type: 99,
            ..event
        }),
        EINVAL,
    );
    c.errno(
        "callback_op register an address in the hypervisor's range",
        register(&CallbackRegister {
            address: HYPERVISOR_IMAGE,
            ..event
        }),
        EINVAL,
    );
    c.errno(
        "callback_op register a non-canonical address",
        register(&CallbackRegister {
            address: NON_CANONICAL,
            ..event
        }),
        EINVAL,
    );
    c.errno(
        "callback_op register from an unmapped argument",
        call(
            HYPERVISOR_CALLBACK_OP,
            [CALLBACKOP_REGISTER.into(), UNMAPPED, 0, 0, 0],
        ),
        EFAULT,
    );
    let unregister = CallbackUnregister {
        callback_type: CALLBACKTYPE_EVENT,
        unused: 0,
    };
    c.errno(
        "callback_op unregister the event callback",
        call(
            HYPERVISOR_CALLBACK_OP,
            [CALLBACKOP_UNREGISTER.into(), addr(&unregister), 0, 0, 0],
        ),
        EINVAL,
    );
    c.errno(
        "callback_op with an unknown command",
        call(HYPERVISOR_CALLBACK_OP, [9, addr(&event), 0, 0, 0]),
        ENOSYS,
    );
    // Still the runtime's event callback: the events test relies on the same code path.
    c.eq(
        "callback_op register the event callback again",
        register(&event),
        0,
    );
}

fn stack_switch(c: &mut Checks) {
    let top = kernel_stack_top();
    let switch = |ss: u16, rsp: u64| call(HYPERVISOR_STACK_SWITCH, [ss.into(), rsp, 0, 0, 0]);
    c.eq(
        "stack_switch(KERNEL_SS, ring-1 stack)",
        switch(KERNEL_SS, top),
        0,
    );
    c.errno("stack_switch with USER_SS", switch(USER_SS, top), EINVAL);
    c.errno("stack_switch with a null SS", switch(0, top), EINVAL);
    c.errno(
        "stack_switch to the hypervisor's range",
        switch(KERNEL_SS, HYPERVISOR_IMAGE),
        EINVAL,
    );
    c.errno(
        "stack_switch to a non-canonical rsp",
        switch(KERNEL_SS, NON_CANONICAL),
        EINVAL,
    );
    c.eq(
        "stack_switch back to the ring-1 stack",
        switch(KERNEL_SS, top),
        0,
    );
}

/// What `fs:[0]` / `gs:[0]` should read once the base points at it.
static SEGMENT_MARKER: u64 = 0x5e65_e47b_a5e0_0001;

fn read_fs0() -> u64 {
    let v: u64;
    // SAFETY: reads the quadword at the FS base, which the caller pointed at a static.
    unsafe {
        core::arch::asm!("mov {0}, qword ptr fs:[0]", out(reg) v, options(nostack, readonly))
    };
    v
}

fn read_gs0() -> u64 {
    let v: u64;
    // SAFETY: as for read_fs0, with GS.
    unsafe {
        core::arch::asm!("mov {0}, qword ptr gs:[0]", out(reg) v, options(nostack, readonly))
    };
    v
}

fn set_segment_base(c: &mut Checks) {
    let base =
        |which: u32, base: u64| call(HYPERVISOR_SET_SEGMENT_BASE, [which.into(), base, 0, 0, 0]);
    let marker = addr(&SEGMENT_MARKER);
    if c.success("set_segment_base(FS)", base(SEGBASE_FS, marker))
        .is_some()
    {
        c.eq_hex("FS base in effect", read_fs0(), SEGMENT_MARKER);
    }
    c.eq("set_segment_base(FS, 0)", base(SEGBASE_FS, 0), 0);
    if c.success("set_segment_base(GS user)", base(SEGBASE_GS_USER, marker))
        .is_some()
    {
        c.eq_hex("GS base in effect", read_gs0(), SEGMENT_MARKER);
    }
    c.eq("set_segment_base(GS user, 0)", base(SEGBASE_GS_USER, 0), 0);
    c.errno(
        "set_segment_base with an unknown which",
        base(99, 0),
        EINVAL,
    );
    c.errno(
        "set_segment_base(GS kernel)",
        base(SEGBASE_GS_KERNEL, 0),
        EOPNOTSUPP,
    );
    c.errno(
        "set_segment_base(FS) to a non-canonical base",
        base(SEGBASE_FS, NON_CANONICAL),
        EINVAL,
    );
}

fn timers(c: &mut Checks) {
    c.ok(
        "set_timer_op(now + 10 s)",
        calls::set_timer_op(now_ns() + 10_000_000_000),
    );
    c.ok("set_timer_op(0)", calls::set_timer_op(0));

    let vcpu_op = |cmd: u32, vcpu: u32, arg: u64| {
        call(HYPERVISOR_VCPU_OP, [cmd.into(), vcpu.into(), arg, 0, 0])
    };
    c.eq("vcpu_op(VCPUOP_is_up, 0)", vcpu_op(VCPUOP_IS_UP, 0, 0), 1);
    let past = VcpuSetSingleshotTimer {
        timeout_abs_ns: 1,
        flags: VCPU_SSHOTTMR_FUTURE,
    };
    c.errno(
        "VCPUOP_set_singleshot_timer in the past with VCPU_SSHOTTMR_future",
        vcpu_op(VCPUOP_SET_SINGLESHOT_TIMER, 0, addr(&past)),
        ETIME,
    );
    let future = VcpuSetSingleshotTimer {
        timeout_abs_ns: now_ns() + 10_000_000_000,
        flags: VCPU_SSHOTTMR_FUTURE,
    };
    c.eq(
        "VCPUOP_set_singleshot_timer in 10 s",
        vcpu_op(VCPUOP_SET_SINGLESHOT_TIMER, 0, addr(&future)),
        0,
    );
    c.ok(
        "VCPUOP_stop_singleshot_timer",
        calls::vcpu_stop_singleshot_timer(0),
    );
    c.errno(
        "VCPUOP_set_singleshot_timer from an unmapped argument",
        vcpu_op(VCPUOP_SET_SINGLESHOT_TIMER, 0, UNMAPPED),
        EFAULT,
    );
    c.errno(
        "vcpu_op(VCPUOP_is_up) on vCPU 1000",
        vcpu_op(VCPUOP_IS_UP, 1000, 0),
        ENOENT,
    );
    c.errno(
        "VCPUOP_stop_periodic_timer on vCPU 1000",
        vcpu_op(VCPUOP_STOP_PERIODIC_TIMER, 1000, 0),
        ENOENT,
    );
    for period in [1_000, vcpu::VCPU_PERIODIC_MIN_NS - 1] {
        let p = VcpuSetPeriodicTimer { period_ns: period };
        c.errno(
            format_args!("VCPUOP_set_periodic_timer with a period of {period} ns"),
            vcpu_op(VCPUOP_SET_PERIODIC_TIMER, 0, addr(&p)),
            EINVAL,
        );
    }
    let p = VcpuSetPeriodicTimer {
        period_ns: vcpu::VCPU_PERIODIC_MIN_NS,
    };
    c.eq(
        "VCPUOP_set_periodic_timer with a period of 1 ms",
        vcpu_op(VCPUOP_SET_PERIODIC_TIMER, 0, addr(&p)),
        0,
    );
    c.ok(
        "VCPUOP_stop_periodic_timer",
        calls::vcpu_stop_periodic_timer(0),
    );
    c.errno("vcpu_op with an unknown command", vcpu_op(99, 0, 0), ENOSYS);
}

fn sched_op(c: &mut Checks) {
    c.ok("sched_op(SCHEDOP_yield)", calls::sched_yield());
    c.errno(
        "sched_op with an unknown command",
        call(HYPERVISOR_SCHED_OP, [99, 0, 0, 0, 0]),
        ENOSYS,
    );
    let bad_reason = sched::SchedShutdown { reason: 99 };
    c.errno(
        "SCHEDOP_shutdown with an unknown reason",
        call(
            HYPERVISOR_SCHED_OP,
            [sched::SCHEDOP_SHUTDOWN.into(), addr(&bad_reason), 0, 0, 0],
        ),
        EINVAL,
    );
}

fn status(port: EvtchnPort) -> Result<event::EvtchnStatus, Errno> {
    calls::evtchn_status(DOMID_SELF, port)
}

fn event_channel_op(c: &mut Checks) {
    let own = own_domid();
    // VIRQ binding.
    let timer = c.ok(
        "EVTCHNOP_bind_virq(VIRQ_TIMER, vCPU 0)",
        calls::evtchn_bind_virq(VIRQ_TIMER, 0),
    );
    if let Some(t) = timer {
        match status(t) {
            Ok(s) => c.check(
                "EVTCHNOP_status of a VIRQ port",
                s.status == EVTCHNSTAT_VIRQ && s.virq() == VIRQ_TIMER && s.vcpu == 0,
                format_args!("status {} virq {} vcpu {}", s.status, s.virq(), s.vcpu),
            ),
            Err(e) => c.check(
                "EVTCHNOP_status of a VIRQ port",
                false,
                format_args!("{e:?}"),
            ),
        };
        c.fails(
            "EVTCHNOP_bind_virq of a VIRQ already bound",
            calls::evtchn_bind_virq(VIRQ_TIMER, 0),
            EEXIST,
        );
        c.fails(
            "EVTCHNOP_send on a VIRQ port",
            calls::evtchn_send(t),
            EINVAL,
        );
    }
    c.fails(
        "EVTCHNOP_bind_virq(NR_VIRQS)",
        calls::evtchn_bind_virq(NR_VIRQS, 0),
        EINVAL,
    );
    c.fails(
        "EVTCHNOP_bind_virq(1000)",
        calls::evtchn_bind_virq(1000, 0),
        EINVAL,
    );
    c.fails(
        "EVTCHNOP_bind_virq(VIRQ_DEBUG) on vCPU 1000",
        calls::evtchn_bind_virq(VIRQ_DEBUG, 1000),
        ENOENT,
    );

    // A loopback channel.
    let unbound = c.ok(
        "EVTCHNOP_alloc_unbound(self, self)",
        calls::evtchn_alloc_unbound(DOMID_SELF, DOMID_SELF),
    );
    if let Some(u) = unbound {
        match status(u) {
            Ok(s) => c.check(
                "EVTCHNOP_status of an unbound port",
                s.status == EVTCHNSTAT_UNBOUND
                    && own.is_none_or(|d| s.unbound_dom() == d)
                    && s.unbound_dom() != DOMID_SELF,
                format_args!("status {} remote domain {:#x}", s.status, s.unbound_dom()),
            ),
            Err(e) => c.check(
                "EVTCHNOP_status of an unbound port",
                false,
                format_args!("{e:?}"),
            ),
        };
        events::clear_pending(u);
        c.ok(
            "EVTCHNOP_send on an unbound port (dropped)",
            calls::evtchn_send(u),
        );
        c.check(
            "a send on an unbound port raises nothing",
            !events::is_pending(u),
            format_args!("pending bit {}", u8::from(events::is_pending(u))),
        );
        events::clear_pending(u);
        let local = c.ok(
            "EVTCHNOP_bind_interdomain(self, the unbound port)",
            calls::evtchn_bind_interdomain(DOMID_SELF, u),
        );
        if let Some(l) = local {
            // As in Xen: events the remote end sent while it was unbound were dropped, so the
            // new local port starts pending.
            c.check(
                "EVTCHNOP_bind_interdomain leaves the new local port pending",
                events::is_pending(l) && !events::is_pending(u),
                format_args!(
                    "pending: local port {l} {}, remote port {u} {}",
                    u8::from(events::is_pending(l)),
                    u8::from(events::is_pending(u))
                ),
            );
        }
        if let Some(l) = local {
            loopback_checks(c, own, u, l);
        }
        c.ok(
            "EVTCHNOP_close of the formerly unbound end",
            calls::evtchn_close(u),
        );
        c.fails("EVTCHNOP_close twice", calls::evtchn_close(u), EINVAL);
        match status(u) {
            Ok(s) => c.eq(
                "EVTCHNOP_status of a closed port",
                s.status,
                EVTCHNSTAT_CLOSED,
            ),
            Err(e) => c.check(
                "EVTCHNOP_status of a closed port",
                false,
                format_args!("{e:?}"),
            ),
        };
        c.fails(
            "EVTCHNOP_send on a closed port",
            calls::evtchn_send(u),
            EINVAL,
        );
    }
    match status(0) {
        Ok(s) => c.eq("EVTCHNOP_status of port 0", s.status, EVTCHNSTAT_CLOSED),
        Err(e) => c.check("EVTCHNOP_status of port 0", false, format_args!("{e:?}")),
    };
    if let Some(t) = timer {
        c.ok("EVTCHNOP_close of the VIRQ port", calls::evtchn_close(t));
    }

    for port in [EVTCHN_2L_NR_CHANNELS, u32::MAX] {
        c.fails(
            format_args!("EVTCHNOP_send on port {port}"),
            calls::evtchn_send(port),
            EINVAL,
        );
        c.fails(
            format_args!("EVTCHNOP_status of port {port}"),
            status(port),
            EINVAL,
        );
        c.fails(
            format_args!("EVTCHNOP_close of port {port}"),
            calls::evtchn_close(port),
            EINVAL,
        );
        c.fails(
            format_args!("EVTCHNOP_unmask of port {port}"),
            calls::evtchn_unmask(port),
            EINVAL,
        );
    }
    c.errno(
        "event_channel_op with an unknown command",
        call(HYPERVISOR_EVENT_CHANNEL_OP, [99, UNMAPPED, 0, 0, 0]),
        ENOSYS,
    );
}

fn loopback_checks(c: &mut Checks, own: Option<DomId>, u: EvtchnPort, l: EvtchnPort) {
    for (what, port, peer) in [("local end", l, u), ("remote end", u, l)] {
        match status(port) {
            Ok(s) => {
                let (dom, remote) = s.interdomain();
                c.check(
                    format_args!("EVTCHNOP_status of the loopback's {what}"),
                    s.status == EVTCHNSTAT_INTERDOMAIN
                        && remote == peer
                        && own.is_none_or(|d| dom == d),
                    format_args!("status {} remote {dom:#x}:{remote}", s.status),
                );
            }
            Err(e) => {
                c.check(
                    format_args!("EVTCHNOP_status of the loopback's {what}"),
                    false,
                    format_args!("{e:?}"),
                );
            }
        }
    }
    c.fails(
        "EVTCHNOP_bind_interdomain to a port that is not unbound",
        calls::evtchn_bind_interdomain(DOMID_SELF, l),
        EINVAL,
    );
    // Events are masked: sends only set pending bits.
    for (what, from, to) in [("local to remote", l, u), ("remote to local", u, l)] {
        events::clear_pending(to);
        events::clear_pending(from);
        c.ok(
            format_args!("EVTCHNOP_send {what}"),
            calls::evtchn_send(from),
        );
        c.check(
            format_args!("EVTCHNOP_send {what} makes the other end pending"),
            events::is_pending(to) && !events::is_pending(from),
            format_args!(
                "pending: port {to} {}, port {from} {}",
                u8::from(events::is_pending(to)),
                u8::from(events::is_pending(from))
            ),
        );
        events::clear_pending(to);
    }
    let v = vcpu_info();
    v.evtchn_upcall_pending.store(0, Ordering::SeqCst);
    v.evtchn_pending_sel.store(0, Ordering::SeqCst);
    c.ok("EVTCHNOP_unmask", calls::evtchn_unmask(u));
    c.ok("EVTCHNOP_close of the local end", calls::evtchn_close(l));
    match status(u) {
        Ok(s) => c.eq(
            "closing one end leaves the other unbound",
            s.status,
            EVTCHNSTAT_UNBOUND,
        ),
        Err(e) => c.check(
            "closing one end leaves the other unbound",
            false,
            format_args!("{e:?}"),
        ),
    };
}

fn unknown_numbers(c: &mut Checks) {
    for nr in [
        HYPERVISOR_SET_GDT,
        11,
        43,
        60,
        127,
        1000,
        0x8000_0000_0000_0000,
        u64::MAX,
    ] {
        c.errno(
            format_args!("hypercall number {nr:#x}"),
            call(nr, [0; 5]),
            ENOSYS,
        );
    }
}

/// What the `iret` hypercall must put in `rax`.
const IRET_RAX: u64 = 0x1e7_0000_0000_cafe;
/// The same, for the return through the hypercall page.
const IRET_PAGE_RAX: u64 = 0x1e7_0000_0000_babe;
/// What the handlers put in the context for `rcx` and `r11`.
const IRET_RCX: u64 = 0x1e7_0000_0000_0c0c;
const IRET_R11: u64 = 0x1e7_0000_0000_0b11;
/// Vectors of the two test handlers (DPL 1: raised by `int n` from ring 1).
const IRET_VECTOR: u8 = 0x81;
const IRET_PAGE_VECTOR: u8 = 0x83;

// The handlers: set rax, rcx and r11 to known values, complete the iret context (flags 0,
// then rcx, r11, rax) and make the iret hypercall, directly or through the hypercall page's
// stub (which pushes rcx, r11, rax itself). The interrupted code sees the known values only if
// the hypercall restored them from the context.
core::arch::global_asm!(
    ".pushsection .text.hc_iret, \"ax\", @progbits",
    ".globl hc_iret_direct_entry",
    "hc_iret_direct_entry:",
    "    mov rax, {rax}",
    "    mov rcx, {rcx}",
    "    mov r11, {r11}",
    "    push 0",
    "    push rcx",
    "    push r11",
    "    push rax",
    "    mov eax, {iret}",
    "    int 0x82",
    "    ud2",
    ".globl hc_iret_page_entry",
    "hc_iret_page_entry:",
    "    mov rax, {page_rax}",
    "    mov rcx, {rcx}",
    "    mov r11, {r11}",
    "    push 0",
    "    jmp hypercall_page + {iret} * 32",
    ".popsection",
    rax = const IRET_RAX,
    page_rax = const IRET_PAGE_RAX,
    rcx = const IRET_RCX,
    r11 = const IRET_R11,
    iret = const HYPERVISOR_IRET,
);

/// Raises `int IRET_VECTOR` (or the page one) with rcx and r11 set; returns rax, rcx, r11
/// after the return.
fn raise(page: bool, rcx: u64, r11: u64) -> (u64, u64, u64) {
    let (rax, rcx_after, r11_after);
    if page {
        // SAFETY: the handler returns here through the iret hypercall, restoring rax, rcx and
        // r11 (declared) and nothing else.
        unsafe {
            core::arch::asm!(
                "int {v}",
                v = const IRET_PAGE_VECTOR,
                out("rax") rax,
                inout("rcx") rcx => rcx_after,
                inout("r11") r11 => r11_after,
            )
        };
    } else {
        // SAFETY: as above.
        unsafe {
            core::arch::asm!(
                "int {v}",
                v = const IRET_VECTOR,
                out("rax") rax,
                inout("rcx") rcx => rcx_after,
                inout("r11") r11 => r11_after,
            )
        };
    }
    (rax, rcx_after, r11_after)
}

fn iret(c: &mut Checks) {
    let mut table = [TrapInfo::END; 3];
    table[0] = TrapInfo::new(
        IRET_VECTOR,
        1,
        true,
        hc_iret_direct_entry as *const () as u64,
    );
    table[1] = TrapInfo::new(
        IRET_PAGE_VECTOR,
        1,
        true,
        hc_iret_page_entry as *const () as u64,
    );
    debug_assert!(table[0].flags & TI_MASK_EVENTS != 0);
    // SAFETY: both handlers end in the iret hypercall with the frame `raise` expects.
    if c.ok("set_trap_table with two iret handlers", unsafe {
        calls::set_trap_table(&table)
    })
    .is_none()
    {
        return;
    }
    let page_filled = {
        let page = hypercall_page_va();
        let stub = hypercall_stub(HYPERVISOR_IRET as u32);
        // SAFETY: the iret stub lies inside our hypercall page.
        let actual = unsafe {
            core::slice::from_raw_parts((page + HYPERVISOR_IRET * 32) as *const u8, stub.len())
        };
        actual == stub
    };
    let v = vcpu_info();
    for page in [false, true] {
        if page && !page_filled {
            println!("note: the iret stub of the hypercall page is missing; not using it");
            continue;
        }
        let how = if page {
            "through the hypercall page"
        } else {
            "direct"
        };
        let want_rax = if page { IRET_PAGE_RAX } else { IRET_RAX };
        for enabled in [true, false] {
            if enabled {
                events::unmask_and_deliver();
            } else {
                events::mask();
            }
            let (rax, rcx, r11) = raise(page, 0x1111_2222, 0x3333_4444);
            let mask = v.evtchn_upcall_mask.load(Ordering::SeqCst);
            events::mask();
            c.check(
                format_args!(
                    "iret hypercall ({how}, events {}) restores rax, rcx, r11 and the mask",
                    if enabled { "enabled" } else { "masked" }
                ),
                rax == want_rax && rcx == IRET_RCX && r11 == IRET_R11 && mask == u8::from(!enabled),
                format_args!(
                    "rax {rax:#x} (expected {want_rax:#x}) rcx {rcx:#x} (expected {IRET_RCX:#x}) \
                     r11 {r11:#x} (expected {IRET_R11:#x}) mask {mask} (expected {})",
                    u8::from(!enabled)
                ),
            );
        }
    }
    // SAFETY: back to the runtime's table (the two extra vectors stay registered).
    let _ = unsafe { calls::set_trap_table(&default_table()) };
}
