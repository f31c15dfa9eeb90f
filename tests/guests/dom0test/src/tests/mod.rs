//! The tests, the dispatcher that picks one from dom0's command line, and what they share:
//! building a domU running one of testguest's workloads, destroying domains and making sure
//! they went, CPU-time and memory readings.

mod churn;
mod console;
mod containment;
mod density;
mod devaccess;
mod linux_abi;
mod privilege;
mod sched;
mod scrub;
mod security;
mod smp;
mod smp_shares;
mod teardown;

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

use dom0_tools::builder::{self, BuildError, Built, DomainConfig};
use dom0_tools::hypervisor::Hypervisor;
use guest_abi::Errno;
use guest_abi::start_info::{SIF_INITDOMAIN, SIF_MOD_START_PFN, SIF_PRIVILEGED};
use guest_abi::types::{DomId, PAGE_SIZE};
use xenia_guest_rt::boot::{VIRT_BASE, start_info};
use xenia_guest_rt::check::{Checks, TestResult, error, note, report};
use xenia_guest_rt::time::{NS_PER_MS, now_ns};
use xenia_guest_rt::{cmdline, print, println};
use xenia_pvboot::layout::LayoutError;

use crate::heap;
use crate::hv::{Recorded, Xenia};
use crate::wait::Waiter;

/// Pages per MiB.
pub const PAGES_PER_MIB: u64 = (1 << 20) / PAGE_SIZE as u64;
/// The memory a domU is first tried with when a test wants the smallest whole-MiB domain
/// that boots with Xen's start of day (whose region ends on a 4 MiB boundary).
pub const SMALLEST_MIB: u64 = 4;
/// KiB per page.
pub const KIB_PER_PAGE: u64 = PAGE_SIZE as u64 / 1024;
/// The largest memory [`Ctx::build_smallest`] tries.
const LARGEST_TRY_MIB: u64 = 64;
/// How long a destroyed domain may take to disappear.
pub const GONE_NS: u64 = 2_000 * NS_PER_MS;

/// How a test ended, besides its checks.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Outcome {
    /// Ran as designed: the checks decide.
    Ran,
    /// Part of it could not run here (said why): `SKIP` unless a check failed.
    Skipped,
}

/// One test: its name on dom0's command line, its entry, and one line about it.
pub struct Test {
    /// `test=<name>`.
    pub name: &'static str,
    /// Runs the test.
    pub run: fn(&mut Ctx, &mut Checks) -> Outcome,
    /// What it checks.
    pub about: &'static str,
}

/// Every test.
pub const TESTS: &[Test] = &[
    Test {
        name: "sched",
        run: sched::run,
        about: "credit scheduler: weights 256/256/512 share 25/25/50, a 20% cap holds, \
                timer latency next to hogs",
    },
    Test {
        name: "teardown",
        run: teardown::run,
        about: "200 build/run/shut down/destroy cycles give back every frame",
    },
    Test {
        name: "containment",
        run: containment::run,
        about: "a faulting, a masked-spinning and a hypercall-flooding domU harm no one",
    },
    Test {
        name: "density",
        run: density::run,
        about: "as many minimal domUs as memory allows, then all destroyed",
    },
    Test {
        name: "devaccess",
        run: devaccess::run,
        about: "dom0 drives devices: PCI config ports, DOMID_IO mappings of BARs (RAM and the \
                hypervisor's refused), a PIRQ's interrupts as events with EOI, XENMEM_exchange",
    },
    Test {
        name: "devaccess_screen",
        run: devaccess::screen,
        about: "the screen and keyboard the hypervisor owns: ports, GSI 1 and the framebuffer refused",
    },
    Test {
        name: "devaccess_domu",
        run: devaccess::domu,
        about: "a domU's device accesses (physdev_op, bind_pirq, DOMID_IO, ports) are refused",
    },
    Test {
        name: "privilege",
        run: privilege::run,
        about: "a domU's domctl, sysctl and foreign operations fail with EPERM",
    },
    Test {
        name: "console",
        run: console::run,
        about: "dom0 as the console backend of a domU's console ring",
    },
    Test {
        name: "security",
        run: security::two_domains,
        about: "an attacker domU against dom0's and a victim domU's frames; findings 1 and 2",
    },
    Test {
        name: "smp",
        run: smp::run,
        about: "a domU with 4 vCPUs: bring-up, per-vCPU timers, an IPI ring, down/up, poll, \
                multicall",
    },
    Test {
        name: "smp_shares",
        run: smp_shares::run,
        about: "credit scheduler across pCPUs: weights 256/256/512/1024 share the machine \
                12.5/12.5/25/50, a 30% cap holds, no pCPU idles while a vCPU waits",
    },
    Test {
        name: "churn",
        run: churn::run,
        about: "create/destroy cycles of 4-vCPU domUs (every vCPU running) give back every \
                frame (cycles=<n>)",
    },
    Test {
        name: "scrub",
        run: scrub::run,
        about: "a destroyed domain's frames reach the next domain as zeros (scrubbed ahead)",
    },
    Test {
        name: "exhaustion",
        run: security::exhaustion,
        about: "a domU and dom0 try to exhaust hypervisor memory; errors, and it all comes back",
    },
    Test {
        name: "linux_abi_domu",
        run: linux_abi::domu,
        about: "testguest linux_abi_domu as a domU: what Xen keeps from a domU (issue 18)",
    },
];

/// What every test works with.
pub struct Ctx {
    /// The hypervisor.
    pub hv: Xenia,
    /// dom0's sleeps and waits.
    pub wait: Waiter,
    /// The testguest ELF image (dom0's initrd), every domU's kernel.
    pub kernel: &'static [u8],
}

/// A domU to build: testguest running `test`.
#[derive(Clone, Copy, Debug)]
pub struct Domu<'a> {
    /// testguest's test (`test=<name>` on the domU's command line).
    pub test: &'a str,
    /// Memory in KiB (a whole number of pages).
    pub kib: u64,
    /// Credit weight.
    pub weight: u16,
    /// Credit cap in percent of a pCPU (0: none).
    pub cap: u16,
    /// Whether it gets a console ring.
    pub console: bool,
    /// Its vCPUs (`max_vcpus`; the builder starts vCPU 0, the guest the others).
    pub vcpus: u32,
}

impl<'a> Domu<'a> {
    /// testguest's `test` in `mib` MiB, default weight, no cap, no console.
    pub const fn new(test: &'a str, mib: u64) -> Self {
        Self::in_kib(test, mib * 1024)
    }

    /// [`Domu::new`] with the memory in KiB.
    pub const fn in_kib(test: &'a str, kib: u64) -> Self {
        Self {
            test,
            kib,
            weight: guest_abi::domctl::CREDIT_DEFAULT_WEIGHT,
            cap: 0,
            console: false,
            vcpus: 1,
        }
    }
}

impl Ctx {
    /// Builds and starts `domu` with the dom0-tools builder.
    pub fn build(&mut self, domu: &Domu<'_>) -> Result<Built, BuildError> {
        let cmdline = format!("test={}", domu.test);
        let mut cfg = DomainConfig::in_kib(domu.test, self.kernel, domu.kib);
        cfg.cmdline = &cmdline;
        cfg.weight = domu.weight;
        cfg.cap = domu.cap;
        cfg.console = domu.console;
        cfg.vcpus = domu.vcpus;
        self.hv.clear_failure();
        builder::build(&mut self.hv, &cfg)
    }

    /// Builds `domu` with the least memory its start-of-day layout fits, starting from
    /// `domu.mib`; returns the domain and the memory used.
    pub fn build_smallest(&mut self, domu: &Domu<'_>) -> Result<(Built, u64), BuildError> {
        let mut mib = domu.kib / 1024;
        loop {
            match self.build(&Domu {
                kib: mib * 1024,
                ..*domu
            }) {
                Ok(b) => return Ok((b, mib)),
                Err(BuildError::Layout(LayoutError::TooSmall { need_pages, .. }))
                    if mib < LARGEST_TRY_MIB =>
                {
                    let need = need_pages.div_ceil(PAGES_PER_MIB);
                    note(format_args!(
                        "{} MiB is too small for testguest's start of day ({need_pages} pages); \
                         trying {need} MiB",
                        mib
                    ));
                    mib = need.max(mib + 1);
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Builds `domu` with the least memory, to the page, its start-of-day layout fits
    /// (the builder cuts the region at the end of a small domain's memory), climbing from
    /// `domu.kib`; returns the domain and the pages used.
    pub fn build_smallest_pages(&mut self, domu: &Domu<'_>) -> Result<(Built, u64), BuildError> {
        let mut pages = (domu.kib / KIB_PER_PAGE).max(1);
        loop {
            match self.build(&Domu {
                kib: pages * KIB_PER_PAGE,
                ..*domu
            }) {
                Ok(b) => return Ok((b, pages)),
                Err(BuildError::Layout(LayoutError::TooSmall { need_pages, .. }))
                    if pages < LARGEST_TRY_MIB * PAGES_PER_MIB =>
                {
                    pages = need_pages.max(pages + 1);
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// A build error with the hypervisor call behind it, if one failed.
    pub fn explain(&self, e: &BuildError) -> String {
        match self.hv.last_failure() {
            Some(f)
                if matches!(
                    e,
                    BuildError::Hypervisor { .. } | BuildError::NotCleanedUp { .. }
                ) =>
            {
                format!("{e} [{f}]")
            }
            _ => format!("{e}"),
        }
    }

    /// Destroys `dom` and waits until it has gone; says what went wrong if anything did.
    pub fn destroy(&mut self, dom: DomId) -> Result<(), String> {
        if let Err(e) = self.hv.destroy(dom) {
            return Err(format!("destroydomain({dom}) returned -{e:?}"));
        }
        let (gone, flags) = self.wait.wait_gone(&mut self.hv, dom, now_ns() + GONE_NS);
        if gone {
            Ok(())
        } else {
            Err(format!(
                "d{dom} still exists {} ms after destroydomain (flags {flags:#x})",
                GONE_NS / NS_PER_MS
            ))
        }
    }

    /// Destroys every domain in `doms`, one check for all of them.
    pub fn destroy_all(&mut self, c: &mut Checks, what: &str, doms: &[DomId]) -> bool {
        let mut problems = String::new();
        for &dom in doms {
            if let Err(e) = self.destroy(dom) {
                if !problems.is_empty() {
                    problems.push_str("; ");
                }
                problems.push_str(&e);
            }
        }
        c.check(
            format_args!("destroy {what} ({} domains)", doms.len()),
            problems.is_empty(),
            format_args!("{problems}"),
        )
    }

    /// The CPU time of each of `doms`, in nanoseconds (`getdomaininfo.cpu_time`).
    pub fn cpu_times(&mut self, doms: &[DomId]) -> Result<Vec<u64>, Errno> {
        doms.iter()
            .map(|&d| self.hv.domain_info(d).map(|i| i.cpu_time))
            .collect()
    }

    /// `physinfo.free_pages`.
    pub fn free_pages(&mut self) -> Result<u64, Errno> {
        self.hv.physinfo().map(|p| p.free_pages)
    }

    /// The domains other than dom0 that exist, from `getdomaininfolist`.
    pub fn domus(&mut self) -> Result<Vec<DomId>, Errno> {
        Ok(self
            .hv
            .domains()?
            .iter()
            .map(|d| d.dom)
            .filter(|&d| d != 0)
            .collect())
    }
}

/// A per-mille value shown as a percentage with one decimal (`24.8`).
#[derive(Clone, Copy, Debug)]
pub struct Pct(pub u64);

impl Pct {
    /// `part` of `whole`, in per mille, rounded.
    pub fn of(part: u64, whole: u64) -> Self {
        if whole == 0 {
            return Pct(0);
        }
        let p = (u128::from(part) * 1000 + u128::from(whole) / 2) / u128::from(whole);
        Pct(p as u64)
    }
}

impl fmt::Display for Pct {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.0 / 10, self.0 % 10)
    }
}

/// Nanoseconds as milliseconds with one decimal.
#[derive(Clone, Copy, Debug)]
pub struct Ms(pub u64);

impl fmt::Display for Ms {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}.{} ms",
            self.0 / NS_PER_MS,
            (self.0 % NS_PER_MS) / 100_000
        )
    }
}

/// dom0's main: checks what it was given and runs the test its command line names.
pub fn dispatch() -> ! {
    heap::init();
    let si = start_info();
    let cmd = si.cmdline_bytes();
    let Some(name) = cmdline::test_name(cmd) else {
        list_tests_and_fail(format_args!(
            "no test=<name> on the command line \"{}\"",
            core::str::from_utf8(cmd).unwrap_or("<not UTF-8>")
        ));
    };
    let Some(test) = TESTS.iter().find(|t| t.name == name) else {
        list_tests_and_fail(format_args!("unknown test \"{name}\""));
    };
    println!("dom0test: running test {}: {}", test.name, test.about);
    let wanted = SIF_PRIVILEGED | SIF_INITDOMAIN;
    if si.flags & wanted != wanted {
        error(format_args!(
            "start_info.flags {:#x}: not the privileged initial domain",
            si.flags
        ));
    }
    if si.mod_len == 0 {
        error(format_args!(
            "no initrd: GRUB module 1 must be the testguest ELF, every domU's kernel"
        ));
    }
    let start = if si.flags & SIF_MOD_START_PFN != 0 {
        VIRT_BASE + si.mod_start * PAGE_SIZE as u64
    } else {
        si.mod_start
    };
    // SAFETY: the builder maps the initrd at mod_start for mod_len bytes, in dom0's
    // start-of-day region, and nothing in dom0test writes there (porting guide, start-of-day
    // memory); it stays mapped for dom0's lifetime.
    let kernel = unsafe { core::slice::from_raw_parts(start as *const u8, si.mod_len as usize) };
    let wait = match Waiter::new() {
        Ok(w) => w,
        Err((what, e)) => error(format_args!("{what} failed: {e:?}")),
    };
    let mut ctx = Ctx {
        hv: crate::hv::xenia(),
        wait,
        kernel,
    };
    match ctx.hv.physinfo() {
        Ok(p) => note(format_args!(
            "{} pCPU(s), {} frames of RAM, {} free; domU kernel: {} bytes of ELF",
            p.nr_cpus,
            p.total_pages,
            p.free_pages,
            kernel.len()
        )),
        Err(e) => note(format_args!("sysctl physinfo failed: -{e:?}")),
    }

    let mut c = Checks::new();
    let outcome = (test.run)(&mut ctx, &mut c);
    leftovers(&mut ctx, &mut c);
    note(format_args!(
        "dom0 heap in use at the end: {} bytes",
        heap::in_use()
    ));
    if outcome == Outcome::Skipped && c.failures() == 0 {
        report(TestResult::Skip)
    }
    c.finish()
}

/// Checks that the test left no domU behind, and destroys what it left.
fn leftovers(ctx: &mut Ctx, c: &mut Checks) {
    match ctx.domus() {
        Ok(left) if left.is_empty() => {}
        Ok(left) => {
            c.check(
                "no domU left behind",
                false,
                format_args!("still there: {left:?}"),
            );
            for dom in left {
                let _ = ctx.hv.destroy(dom);
            }
        }
        Err(e) => note(format_args!(
            "cannot list the domains left (sysctl getdomaininfolist returned -{e:?})"
        )),
    }
}

fn list_tests_and_fail(why: fmt::Arguments) -> ! {
    println!("dom0test: {why}");
    print!("valid tests:");
    for t in TESTS {
        print!(" {}", t.name);
    }
    println!();
    report(TestResult::Error)
}

/// Builds testguest subcommand `name` as a domU of `mib` MiB, waits (20 s at most) for it to
/// shut down, prints its `check ...` lines prefixed with `tag`, checks its `Test result:`
/// line says SUCCESS (`what` names what that means), destroys it and checks every frame came
/// back and the frame table is consistent. The shape of `devaccess_domu` and
/// `linux_abi_domu`.
pub(crate) fn domu_verdict(
    ctx: &mut Ctx,
    c: &mut Checks,
    name: &str,
    mib: u64,
    tag: &str,
    what: &str,
) -> Outcome {
    use crate::wait::ConsoleLog;
    let mut log = match ConsoleLog::now(&mut ctx.hv) {
        Ok(l) => l,
        Err(e) => {
            c.check("sysctl readconsole", false, format_args!("returned -{e:?}"));
            return Outcome::Ran;
        }
    };
    let free_before = c.ok("sysctl physinfo before", ctx.free_pages());
    let built = match ctx.build(&Domu::new(name, mib)) {
        Ok(b) => b,
        Err(e) => {
            let why = ctx.explain(&e);
            c.check(format_args!("build {name}"), false, format_args!("{why}"));
            return Outcome::Ran;
        }
    };
    let dom = built.dom;
    let done = ctx
        .wait
        .wait_shutdown(&mut ctx.hv, dom, now_ns() + 20_000 * NS_PER_MS)
        .is_ok_and(|(_, done)| done);
    c.check(
        format_args!("d{dom} shuts down"),
        done,
        format_args!("still running"),
    );
    match log.read_new(&mut ctx.hv) {
        Ok(text) => {
            let lines = ConsoleLog::lines_of(&text, dom);
            for line in lines.iter().filter(|l| l.starts_with("check ")) {
                println!("{tag} d{dom}: {line}");
            }
            let verdict = lines.iter().find(|l| l.starts_with("Test result: "));
            c.check(
                format_args!("d{dom}'s {what}"),
                verdict.is_some_and(|v| v == "Test result: SUCCESS"),
                format_args!("its result line: {verdict:?}"),
            );
        }
        Err(e) => {
            c.check(
                "sysctl readconsole of the verdict",
                false,
                format_args!("-{e:?}"),
            );
        }
    }
    ctx.destroy_all(c, &format!("the {name} domU"), &[dom]);
    if let (Some(before), Some(after)) =
        (free_before, c.ok("sysctl physinfo after", ctx.free_pages()))
    {
        c.eq("free frames back where they were", after, before);
    }
    c.eq(
        "frame table consistent",
        xenia_guest_rt::mm::check_frame_table(),
        0,
    );
    Outcome::Ran
}
