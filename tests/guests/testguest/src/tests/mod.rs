//! The tests, the dispatcher that picks one from the command line, and what several tests
//! share: addresses that must fault, and the check of a delivered exception.

mod block;
mod console;
mod copyout;
mod cpl;
mod debugreg;
mod domu;
mod events;
mod exceptions;
mod fasttrap;
mod fep;
mod grants;
mod hostile;
mod hypercalls;
mod isolation;
mod linux_abi;
mod net;
mod pagetables;
mod physdev;
mod privileged;
mod shutdown;
mod smp;
mod syscall;
mod timers;
mod wrpt;
mod xenstore;

use core::fmt::Write;

use guest_abi::layout;
use guest_abi::selectors::{KERNEL_CS, KERNEL_SS, USER_CS, USER_SS};
use xenia_guest_rt::boot::start_info;
use xenia_guest_rt::check::{Checks, TestResult, Text, report};
use xenia_guest_rt::trap::{Entry, ExitKind, UserExit, expect, take_caught, vector_name};
use xenia_guest_rt::{cmdline, print, println, user};

use crate::ring3::Program;

/// One test: its name on the command line, its entry, and one line about it.
pub struct Test {
    /// `test=<name>`.
    pub name: &'static str,
    /// Runs the test; ends with the result line and a shutdown.
    pub run: fn() -> !,
    /// What it checks.
    pub about: &'static str,
}

/// Every test.
pub const TESTS: &[Test] = &[
    Test {
        name: "cpl",
        run: cpl::run,
        about: "the kernel runs in ring 1 and user code in ring 3; entry state",
    },
    Test {
        name: "hypercalls",
        run: hypercalls::run,
        about: "every hypercall with good and bad arguments, exact errno",
    },
    Test {
        name: "exceptions",
        run: exceptions::run,
        about: "each exception class is bounced with the right frame and error code",
    },
    Test {
        name: "privileged",
        run: privileged::run,
        about: "privileged instructions in ring 1 raise #GP at the instruction",
    },
    Test {
        name: "fasttrap",
        run: fasttrap::run,
        about: "int 0x80 from ring 3 reaches the kernel without entering the hypervisor",
    },
    Test {
        name: "syscall",
        run: syscall::run,
        about: "SYSCALL from ring 3 is bounced to the syscall callback",
    },
    Test {
        name: "timers",
        run: timers::run,
        about: "set_timer_op, single-shot and periodic timers fire on time; block wakes",
    },
    Test {
        name: "console",
        run: console::run,
        about: "typed input reaches dom0 through VIRQ_CONSOLE and console_io read",
    },
    Test {
        name: "events",
        run: events::run,
        about: "event masking: vCPU mask, per-port mask, EVTCHNOP_unmask",
    },
    Test {
        name: "isolation",
        run: isolation::run,
        about: "ring 1 cannot read or write the hypervisor",
    },
    Test {
        name: "pagetables",
        run: pagetables::run,
        about: "a small OS: builds, pins and switches to a process address space, demand-pages it",
    },
    Test {
        name: "debugreg",
        run: debugreg::run,
        about: "set_debugreg/get_debugreg: Xen's refusals, a data breakpoint raising #DB",
    },
    Test {
        name: "fep",
        run: fep::run,
        about: "Xen's forced-emulation prefix: cpuid answered with the PV policy and Xen's leaves",
    },
    Test {
        name: "wrpt",
        run: wrpt::run,
        about: "writable page tables: vm_assist, L1 writes emulated (mov, xchg, cmpxchg), refusals",
    },
    Test {
        name: "grants",
        run: grants::run,
        about: "grant tables v1: setup, map/unmap own grants, busy bits, bad refs, copy",
    },
    Test {
        name: "smp",
        run: smp::run,
        about: "4 vCPUs: bring-up rules, per-vCPU timers, an IPI ring, down/up, poll, \
                flush masks, multicall (a domU: dom0test's smp builds it)",
    },
    Test {
        name: "smp_crash",
        run: smp::crash_while_running,
        about: "every vCPU busy with a 1 ms timer, then a crash at the end of a long multicall",
    },
    Test {
        name: "smp_spin",
        run: smp::spin,
        about: "every vCPU up and busy until destroyed (dom0test's smp destroys it running)",
    },
    Test {
        name: "shutdown_poweroff",
        run: shutdown::poweroff,
        about: "SCHEDOP_shutdown(poweroff)",
    },
    Test {
        name: "shutdown_reboot",
        run: shutdown::reboot,
        about: "SCHEDOP_shutdown(reboot)",
    },
    Test {
        name: "shutdown_crash",
        run: shutdown::crash,
        about: "SCHEDOP_shutdown(crash)",
    },
    Test {
        name: "unhandled_fault",
        run: shutdown::unhandled_fault,
        about: "a fault with no trap table crashes the domain",
    },
    Test {
        name: "hypercall_at_canonical_end",
        run: shutdown::hypercall_at_canonical_end,
        about: "a hypercall whose return address is non-canonical crashes the domain",
    },
    Test {
        name: "syscall_stack_on_page_table",
        run: shutdown::syscall_stack_on_page_table,
        about: "a SYSCALL whose kernel stack is a page table crashes the domain, unwritten",
    },
    // The domU side of the test dom0 (xenia-dom0test), which builds these and judges them.
    Test {
        name: "hog",
        run: domu::hog,
        about: "domU workload: spins forever, never blocks",
    },
    Test {
        name: "spin_masked",
        run: domu::spin_masked,
        about: "domU workload: masks events and spins forever",
    },
    Test {
        name: "flood",
        run: domu::flood,
        about: "domU workload: calls xen_version forever",
    },
    Test {
        name: "idle",
        run: domu::idle,
        about: "domU workload: blocks forever with no timer",
    },
    Test {
        name: "exit",
        run: domu::exit,
        about: "domU workload: powers off at once",
    },
    Test {
        name: "fault",
        run: domu::fault,
        about: "domU workload: faults with no trap table, so the hypervisor crashes it",
    },
    Test {
        name: "latency",
        run: domu::latency,
        about: "1000 single-shot timers 1 ms ahead: wake-up latency under 2 ms",
    },
    Test {
        name: "unprivileged",
        run: domu::unprivileged,
        about: "domain and system control and foreign operations from a domU get EPERM",
    },
    Test {
        name: "physdev_domu",
        run: physdev::run,
        about: "device access from a domU: physdev_op, bind_pirq, DOMID_IO mappings and an \
                exchange of dom0's memory get EPERM; PCI and keyboard ports raise #GP",
    },
    Test {
        name: "hostile",
        run: hostile::run,
        about: "dom0test's security domUs: role=victim|attacker|exhaust|ticker|partial",
    },
    Test {
        name: "console_ring",
        run: domu::console_ring,
        about: "writes to the domU console ring and notifies the backend in dom0",
    },
    Test {
        name: "xenstore",
        run: xenstore::run,
        about: "a hostile domU against dom0's xenstore: permissions, quotas, malformed messages",
    },
    Test {
        name: "net_echo",
        run: net::echo,
        about: "answers pings on its vif (netback), counts what it receives, ends at done",
    },
    Test {
        name: "net_ping",
        run: net::ping,
        about: "pings peer=<mac> count=N times through netback and the bridge",
    },
    Test {
        name: "net_stream",
        run: net::stream,
        about: "sends frames to peer=<mac> until destroyed",
    },
    Test {
        name: "net_hostile",
        run: net::hostile,
        about: "a hostile netif frontend: bad grants, oversized frames, 19 slots, a flood, a producer far ahead",
    },
    Test {
        name: "net_spoof",
        run: net::spoof,
        about: "sends frames with another domain's MAC (victim=<mac>) as source: refused; keeps trying until destroyed",
    },
    Test {
        name: "net_race",
        run: net::race,
        about: "rewrites its transmit ring's entries and req_prod under netback at full speed (rounds=N), then keeps it busy until destroyed",
    },
    Test {
        name: "block_write",
        run: block::write,
        about: "writes a pattern over its disk (blkfront), flushes, reads some back",
    },
    Test {
        name: "block_read",
        run: block::read,
        about: "reads the pattern back from its whole disk, then disconnects",
    },
    Test {
        name: "block_stream",
        run: block::stream,
        about: "writes to its disk until destroyed",
    },
    Test {
        name: "block_bench",
        run: block::bench,
        about: "sequential write, flush and read of requests=N requests of 44 KiB, timed",
    },
    Test {
        name: "block_readonly",
        run: block::readonly,
        about: "a read-only disk: writes refused by the backend, reads served",
    },
    Test {
        name: "block_hostile",
        run: block::hostile,
        about: "a hostile blkfront: bad requests get errors, an impossible producer stops the ring",
    },
    Test {
        name: "block_race",
        run: block::race,
        about: "rewrites its ring's entries and req_prod under the backend while it serves (read-only disk)",
    },
    Test {
        name: "linux_abi_privop",
        run: linux_abi::privop,
        about: "privileged instructions answered as Xen answers a PV kernel: MSRs, control \
                registers, wbinvd, port I/O under set_iopl; refusals",
    },
    Test {
        name: "linux_abi_hypercalls",
        run: linux_abi::hypercalls,
        about: "xen_version, vm_assist, shutdown_code, run-state info and areas, ENOSYS",
    },
    Test {
        name: "linux_abi_domu",
        run: linux_abi::domu,
        about: "domU: xen_version's denials, pirq_eoi_gmfn_v2, get_free_pirq, remote_shutdown, \
                set_iopl",
    },
];

/// The kernel's main: runs the test the command line names.
pub fn dispatch() -> ! {
    let cmdline = start_info().cmdline_bytes();
    let Some(name) = cmdline::test_name(cmdline) else {
        list_tests_and_fail(format_args!(
            "no test=<name> on the command line \"{}\"",
            core::str::from_utf8(cmdline).unwrap_or("<not UTF-8>")
        ));
    };
    let Some(test) = TESTS.iter().find(|t| t.name == name) else {
        list_tests_and_fail(format_args!("unknown test \"{name}\""));
    };
    println!("testguest: running test {}: {}", test.name, test.about);
    (test.run)()
}

fn list_tests_and_fail(why: core::fmt::Arguments) -> ! {
    println!("testguest: {why}");
    print!("valid tests:");
    for t in TESTS {
        print!(" {}", t.name);
    }
    println!();
    report(TestResult::Error)
}

/// A lower-half address nothing maps: the bootstrap tables map only the kernel's region.
pub const UNMAPPED: u64 = 0x0000_0000_dead_b000;
/// An address that is not canonical (bits 63:47 differ).
pub const NON_CANONICAL: u64 = 0x8000_0000_0000_0000;
/// The hypervisor image (slot 258 plus its 1 MiB load address): never mapped for a guest.
pub const HYPERVISOR_IMAGE: u64 = 0xFFFF_8100_0010_0000;
/// The hypervisor's direct map of RAM (slot 262): never mapped for a guest.
pub const DIRECT_MAP: u64 = 0xFFFF_8300_0000_0000;
/// The per-pCPU entry area: mapped, read-only except its stacks, hypervisor-owned.
pub const ENTRY_AREA: u64 = layout::ENTRY_AREA_VIRT_START;
/// The read-only M2P table.
pub const M2P: u64 = layout::MACH2PHYS_VIRT_START;

/// Page-fault error code bits (Intel SDM Vol. 3A §4.7).
pub const PF_PRESENT: u64 = 1 << 0;
/// The access was a write.
pub const PF_WRITE: u64 = 1 << 1;
/// The access was from ring 3.
pub const PF_USER: u64 = 1 << 2;
/// The access was an instruction fetch.
pub const PF_FETCH: u64 = 1 << 4;

/// What a delivered exception must look like.
pub struct Want {
    /// Its vector.
    pub vector: u8,
    /// Its error code (0 for vectors without one).
    pub error_code: u64,
    /// The saved `rip`.
    pub rip: u64,
    /// Whether it came from ring 3 (saved CS/SS are then the user selectors, else the
    /// kernel's).
    pub user: bool,
    /// The saved `rsp`, when the test knows it.
    pub rsp: Option<u64>,
    /// The saved virtual interrupt flag.
    pub interrupts: bool,
    /// `vcpu_info.arch.cr2`, for page faults.
    pub cr2: Option<u64>,
}

/// Checks that `caught` is the exception `want` describes, entered the way the default trap
/// table asks (ring 1, events masked, TF clear). One check line with every field.
pub fn check_exception(
    c: &mut Checks,
    what: impl core::fmt::Display,
    caught: Option<Entry>,
    want: &Want,
) -> bool {
    let Some(e) = caught else {
        return c.check(
            what,
            false,
            format_args!(
                "no {} delivered: the instruction completed",
                vector_name(want.vector.into())
            ),
        );
    };
    let r = &e.regs;
    let (cs, ss) = if want.user {
        (USER_CS, USER_SS)
    } else {
        (KERNEL_CS, KERNEL_SS)
    };
    let mut bad = Text::<256>::new();
    if r.vector != u64::from(want.vector) {
        let _ = write!(bad, " vector (expected {:#x})", want.vector);
    }
    if r.error_code != want.error_code {
        let _ = write!(bad, " error code (expected {:#x})", want.error_code);
    }
    if r.rip != want.rip {
        let _ = write!(bad, " rip (expected {:#x})", want.rip);
    }
    if r.cs != u64::from(cs) {
        let _ = write!(bad, " cs (expected {cs:#x})");
    }
    if r.ss != u64::from(ss) {
        let _ = write!(bad, " ss (expected {ss:#x})");
    }
    if let Some(rsp) = want.rsp
        && r.rsp != rsp
    {
        let _ = write!(bad, " rsp (expected {rsp:#x})");
    }
    if r.interrupts_enabled() != want.interrupts {
        let _ = write!(bad, " IF (expected {})", u8::from(want.interrupts));
    }
    if let Some(cr2) = want.cr2
        && e.cr2 != cr2
    {
        let _ = write!(bad, " cr2 {:#x} (expected {cr2:#x})", e.cr2);
    }
    if e.mask_at_entry == 0 {
        let _ = write!(bad, " events not masked on entry");
    }
    if e.handler_cs != KERNEL_CS {
        let _ = write!(bad, " handler CS {:#x}", e.handler_cs);
    }
    if e.handler_rflags & xenia_guest_rt::trap::RFLAGS_TF != 0 {
        let _ = write!(bad, " handler runs with TF set");
    }
    c.check(
        what,
        bad.is_empty(),
        format_args!(
            "{} error code {:#x} rip {:#x} cs {:#x} ss {:#x} rsp {:#x} IF {}{}{}",
            vector_name(r.vector),
            r.error_code,
            r.rip,
            r.cs,
            r.ss,
            r.rsp,
            u8::from(r.interrupts_enabled()),
            if bad.is_empty() { "" } else { "; wrong:" },
            bad
        ),
    )
}

/// Runs `prog` in ring 3 with `rdi` = the data area and `rsi = arg`, expecting exception
/// `vector`; returns how the run ended, the program's load address, and the program.
pub fn run_user(vector: u8, prog: Program, arg: u64) -> (UserExit, u64, Program) {
    let base = user::load(&prog.blob);
    user::clear_data();
    expect(vector);
    let exit = user::run(base, user::data(), arg);
    let _ = take_caught();
    (exit, base, prog)
}

/// What the handler saw, if a ring-3 run ended with its expected fault (`None` if it ran to
/// its end).
pub fn fault(exit: &UserExit) -> Option<Entry> {
    matches!(exit.kind, ExitKind::Fault(_)).then_some(exit.entry)
}

/// Raw hypercalls with arbitrary (possibly bad) arguments.
pub mod raw {
    use guest_abi::hypercall;

    /// Issues hypercall `nr` with up to five arguments and returns the raw `rax`.
    ///
    /// # Safety
    ///
    /// The call, with these arguments, must not change anything the caller relies on if the
    /// hypervisor accepts it (tests pass bad arguments the hypervisor must refuse, or good
    /// ones whose effect they expect).
    pub unsafe fn call(nr: u64, args: [u64; 5]) -> i64 {
        // SAFETY: the caller vouches for the effect of the call.
        unsafe { hypercall::hypercall5(nr, args[0], args[1], args[2], args[3], args[4]) }
    }
}
