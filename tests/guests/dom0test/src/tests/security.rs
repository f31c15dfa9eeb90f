//! Issue 10's cross-domain tests: attacks on *other domains'* frames from a domU, and memory
//! exhaustion.
//!
//! **`security`.** dom0 builds an attacker domU (testguest `hostile role=attacker`) paused, then
//! a victim (`role=victim peer=<attacker>`), waits for the victim to report its grant table,
//! data and secret frames, and writes the attacker's command line: dom0's own L4, an L1, a data
//! frame and its `shared_info`; the victim's L4 and `shared_info` (from the p2m the builder
//! populated) and the frames the victim reported; and an interdomain event channel to dom0.
//! The attacker prints `attack <name>: refused|SUCCEEDED (…)` for every attempt. When it has
//! mapped the victim's grant twice and unmapped handle 1 naming the second address (finding 2)
//! it signals; dom0 reads the victim's frames back (the grant write must be there, the secret
//! untouched), destroys the victim and signals back. dom0 then waits for the attacker to
//! finish, judges its lines, checks its own data frame is unchanged, destroys it, and checks
//! that free memory is back where it started and that `XENMEM_XENIA_CHECK_FRAME_TABLE` says 0.
//!
//! **`exhaustion`.** A neighbour (`role=ticker`) prints ticks throughout. A hostile domU
//! (`role=exhaust`) takes event ports until refused, grant maps until `GNTST_no_space`, and
//! writes a line that never ends; [`PARTIAL_DOMAINS`] domUs each power off mid-line; dom0
//! creates domains of [`VCPUS`] vCPUs until `createdomain`/`max_vcpus` fails. Every
//! exhaustion must end in an error code, dom0 and the neighbour keep working, and after
//! everything is destroyed the hypervisor's heap use (`XEN_SYSCTL_XENIA_HEAP_INFO`) is back
//! within [`HEAP_SLACK`] of where it started (the figures are printed). Without the sysctl the
//! test ends `ERROR` (when nothing else failed).

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::cell::UnsafeCell;

use dom0_tools::builder::{self, BuildError, Built, DomainConfig};
use dom0_tools::hypervisor::{CreateConfig, Hypervisor};
use guest_abi::Errno;
use guest_abi::calls;
use guest_abi::domctl::DomctlSchedCredit;
use guest_abi::event::EvtchnPort;
use guest_abi::sched::SHUTDOWN_POWEROFF;
use guest_abi::start_info::{MAX_GUEST_CMDLINE, StartInfo};
use guest_abi::types::{DOMID_INVALID, DomId, Mfn, PAGE_SIZE, Pfn};
use guest_abi::vcpu_context::VcpuGuestContext;
use xenia_guest_rt::boot::{VIRT_BASE, start_info};
use xenia_guest_rt::check::{Checks, TestResult, note, report};
use xenia_guest_rt::mm;
use xenia_guest_rt::println;
use xenia_guest_rt::time::{NS_PER_MS, now_ns};
use xenia_pvboot::layout::Level;

use super::{Ctx, Outcome};
use crate::hv::{Recorded, Xenia, heap_info};
use crate::wait::{ConsoleLog, POLL_NS};

/// How often the neighbour ticks (testguest's `hostile::TICK_NS`).
const TICK_NS: u64 = 100 * NS_PER_MS;
/// Memory of each domU: room for the attacker's scratch frames and page tables.
const MIB: u64 = 16;
/// How long a domU may take to report that it is ready, or to finish.
const READY_NS: u64 = 20_000 * NS_PER_MS;
/// How long the attacker may take from start to its `Test result` line.
const ATTACKER_NS: u64 = 120_000 * NS_PER_MS;
/// How long the exhausting domU may take.
const EXHAUST_NS: u64 = 300_000 * NS_PER_MS;
/// Domains that power off in the middle of a line.
const PARTIAL_DOMAINS: u32 = 32;
/// vCPUs of each domain dom0 creates to exhaust memory (issue 10, finding 5).
const VCPUS: u32 = 32;
/// Most domains of [`VCPUS`] vCPUs dom0 tries: 4096 × 32 vCPUs cannot fit a 512 MiB machine
/// at any plausible size per vCPU, so a hypervisor that has not refused by then has no limit.
const MAX_DOMAINS: u32 = 4096;
/// Heap bytes that may stay in use after everything is destroyed: containers that grew
/// (the domain table) keep their capacity; one leaked partial line per domain of
/// [`PARTIAL_DOMAINS`] (512 bytes each) or one vCPU set of [`VCPUS`] would exceed it.
const HEAP_SLACK: u64 = 16 * 1024;
/// Must match testguest's `hostile.rs`: the victim's data and secret patterns, the word the
/// attacker writes through the grant, and the value it writes wherever it got through.
const DATA_PATTERN: u64 = 0x5649_4354_0000_0000;
const SECRET_PATTERN: u64 = 0x5345_4352_0000_0000;
const GRANT_MAGIC: u64 = 0x4752_414e_5457_5254;
const GRANT_MAGIC_WORD: usize = 9;
/// What dom0's data frame holds: word `i` is `DOM0_PATTERN | i`.
const DOM0_PATTERN: u64 = 0x444f_4d30_0000_0000;

/// A page of dom0 that the attacker is told about and must not change.
#[repr(C, align(4096))]
struct Page(UnsafeCell<[u64; 512]>);

// SAFETY: dom0test runs on one vCPU; the page is written once (fill) and read afterwards,
// never through a reference held across the two.
unsafe impl Sync for Page {}

static DOM0_DATA: Page = Page(UnsafeCell::new([0; 512]));

impl Page {
    fn fill(&self) {
        let p = self.0.get() as *mut u64;
        for i in 0..512 {
            // SAFETY: in bounds of the static page; see `Sync` above.
            unsafe { p.add(i).write_volatile(DOM0_PATTERN | i as u64) };
        }
    }

    /// The first word that differs from the pattern: `(index, value)`.
    fn first_change(&self) -> Option<(usize, u64)> {
        let p = self.0.get() as *const u64;
        (0..512).find_map(|i| {
            // SAFETY: as above.
            let v = unsafe { p.add(i).read_volatile() };
            (v != DOM0_PATTERN | i as u64).then_some((i, v))
        })
    }

    fn va(&self) -> u64 {
        self.0.get() as u64
    }
}

/// The builder's hypervisor, recording the frames it populates: the p2m the builder knows
/// (dom0 tells the attacker which of the victim's frames to aim at, and rewrites a paused
/// domain's `start_info`).
struct Recording<'a> {
    hv: &'a mut Xenia,
    p2m: Vec<u64>,
}

impl Hypervisor for Recording<'_> {
    fn create_domain(&mut self, cfg: &CreateConfig) -> Result<DomId, Errno> {
        self.hv.create_domain(cfg)
    }
    fn set_max_mem(&mut self, dom: DomId, kib: u64) -> Result<(), Errno> {
        self.hv.set_max_mem(dom, kib)
    }
    fn set_guest_mode(&mut self, dom: DomId, mode: u32) -> Result<(), Errno> {
        self.hv.set_guest_mode(dom, mode)
    }
    fn hypercall_init(&mut self, dom: DomId, mfn: Mfn) -> Result<(), Errno> {
        self.hv.hypercall_init(dom, mfn)
    }
    fn set_max_vcpus(&mut self, dom: DomId, n: u32) -> Result<(), Errno> {
        self.hv.set_max_vcpus(dom, n)
    }
    fn set_sched_credit(&mut self, dom: DomId, credit: DomctlSchedCredit) -> Result<(), Errno> {
        self.hv.set_sched_credit(dom, credit)
    }
    fn populate(&mut self, dom: DomId, pfns: &[Pfn]) -> Result<Vec<Mfn>, Errno> {
        let mfns = self.hv.populate(dom, pfns)?;
        // The builder populates pfns in order from 0.
        self.p2m.extend(mfns.iter().map(|m| m.0));
        Ok(mfns)
    }
    fn write_frame(&mut self, dom: DomId, mfn: Mfn, offset: usize, b: &[u8]) -> Result<(), Errno> {
        self.hv.write_frame(dom, mfn, offset, b)
    }
    fn pin_table(&mut self, dom: DomId, mfn: Mfn, level: Level) -> Result<(), Errno> {
        self.hv.pin_table(dom, mfn, level)
    }
    fn alloc_unbound(&mut self, dom: DomId, remote: DomId) -> Result<EvtchnPort, Errno> {
        self.hv.alloc_unbound(dom, remote)
    }
    fn shared_info_frame(&mut self, dom: DomId) -> Result<Mfn, Errno> {
        self.hv.shared_info_frame(dom)
    }
    fn set_vcpu_context(&mut self, d: DomId, v: u32, c: &VcpuGuestContext) -> Result<(), Errno> {
        self.hv.set_vcpu_context(d, v, c)
    }
    fn unpause(&mut self, dom: DomId) -> Result<(), Errno> {
        self.hv.unpause(dom)
    }
    fn destroy(&mut self, dom: DomId) -> Result<(), Errno> {
        self.hv.destroy(dom)
    }
}

/// A domU built by [`build`], with its p2m.
struct Domain {
    built: Built,
    p2m: Vec<u64>,
}

impl Domain {
    fn dom(&self) -> DomId {
        self.built.dom
    }

    /// The machine frame of pseudo-physical frame `pfn`.
    fn mfn(&self, pfn: Pfn) -> u64 {
        self.p2m.get(pfn.0 as usize).copied().unwrap_or(u64::MAX)
    }
}

/// Builds testguest with `cmdline`, paused or running.
fn build(ctx: &mut Ctx, name: &str, cmdline: &str, paused: bool) -> Result<Domain, String> {
    let mut cfg = DomainConfig::new(name, ctx.kernel, MIB);
    cfg.cmdline = cmdline;
    cfg.console = false;
    cfg.start_paused = paused;
    ctx.hv.clear_failure();
    let mut rec = Recording {
        hv: &mut ctx.hv,
        p2m: Vec::new(),
    };
    let r: Result<Built, BuildError> = builder::build(&mut rec, &cfg);
    let p2m = rec.p2m;
    match r {
        Ok(built) => {
            println!("built d{} ({cmdline})", built.dom);
            Ok(Domain { built, p2m })
        }
        Err(e) => Err(format!("build {name}: {}", ctx.explain(&e))),
    }
}

/// Replaces the command line in a paused domain's `start_info` (the builder wrote a
/// placeholder: the values are known only once the domains exist).
fn set_cmdline(ctx: &mut Ctx, d: &Domain, cmdline: &str) -> Result<(), String> {
    let sod = &d.built.layout.sod;
    let pfn = sod
        .pfn_of(d.built.start_info_va)
        .ok_or("start_info is outside the layout")?;
    let mut bytes = [0u8; MAX_GUEST_CMDLINE];
    if cmdline.len() >= MAX_GUEST_CMDLINE {
        return Err(format!("command line of {} bytes", cmdline.len()));
    }
    bytes[..cmdline.len()].copy_from_slice(cmdline.as_bytes());
    ctx.hv
        .write_frame(
            d.dom(),
            Mfn(d.mfn(pfn)),
            core::mem::offset_of!(StartInfo, cmd_line),
            &bytes,
        )
        .map_err(|e| format!("writing d{}'s command line: -{e:?}", d.dom()))
}

/// Everything the domUs printed, read from the hypervisor's console ring as it comes.
struct Log {
    reader: ConsoleLog,
    text: Vec<u8>,
}

impl Log {
    fn new(ctx: &mut Ctx) -> Result<Log, Errno> {
        Ok(Log {
            reader: ConsoleLog::now(&mut ctx.hv)?,
            text: Vec::new(),
        })
    }

    fn poll(&mut self, ctx: &mut Ctx) {
        match self.reader.read_new(&mut ctx.hv) {
            Ok(t) => self.text.extend_from_slice(&t),
            Err(e) => note(format_args!("readconsole failed: -{e:?}")),
        }
    }

    fn lines(&self, dom: DomId) -> Vec<String> {
        ConsoleLog::lines_of(&self.text, dom)
    }

    /// Waits (blocking, polling every [`POLL_NS`]) until `dom` printed a line starting with
    /// `prefix`, or `deadline`.
    fn wait_line(
        &mut self,
        ctx: &mut Ctx,
        dom: DomId,
        prefix: &str,
        deadline: u64,
    ) -> Option<String> {
        loop {
            self.poll(ctx);
            if let Some(l) = self.lines(dom).into_iter().find(|l| l.starts_with(prefix)) {
                return Some(l);
            }
            let now = now_ns();
            if now >= deadline {
                return None;
            }
            ctx.wait.block_until(deadline.min(now + POLL_NS));
        }
    }
}

/// The hexadecimal value of `key=` in a line of `key=value` words.
fn field(line: &str, key: &str) -> Option<u64> {
    line.split(' ')
        .find_map(|w| w.strip_prefix(key)?.strip_prefix('='))
        .and_then(|v| u64::from_str_radix(v, 16).ok())
}

/// Reads word `index` of `dom`'s frame `mfn`.
fn read_word(ctx: &mut Ctx, dom: DomId, mfn: u64, index: usize) -> Result<u64, Errno> {
    let mut b = [0u8; 8];
    ctx.hv.read_frame(dom, Mfn(mfn), 8 * index, &mut b)?;
    Ok(u64::from_le_bytes(b))
}

/// The first word of `dom`'s frame `mfn` that is not `pattern | i`, or the read's error.
fn frame_change(
    ctx: &mut Ctx,
    dom: DomId,
    mfn: u64,
    pattern: u64,
) -> Result<Option<(usize, u64)>, Errno> {
    let mut b = alloc::vec![0u8; PAGE_SIZE];
    ctx.hv.read_frame(dom, Mfn(mfn), 0, &mut b)?;
    Ok(b.chunks(8).enumerate().find_map(|(i, w)| {
        let v = u64::from_le_bytes(w.try_into().unwrap_or([0; 8]));
        (v != pattern | i as u64).then_some((i, v))
    }))
}

/// Free frames before, for the check at the end.
fn free_pages(ctx: &mut Ctx, c: &mut Checks) -> Option<u64> {
    match ctx.free_pages() {
        Ok(f) => Some(f),
        Err(e) => {
            c.check("sysctl physinfo", false, format_args!("returned -{e:?}"));
            None
        }
    }
}

/// The attack suite across domains.
pub fn two_domains(ctx: &mut Ctx, c: &mut Checks) -> Outcome {
    let Some(before) = free_pages(ctx, c) else {
        return Outcome::Ran;
    };
    DOM0_DATA.fill();
    let d0_data_pfn = (DOM0_DATA.va() - VIRT_BASE) / mm::PAGE;
    let d0_data = mm::p2m(d0_data_pfn);
    let Some(d0_l1) = mm::walk(DOM0_DATA.va())[3].map(|s| s.table) else {
        c.check(
            "find dom0's L1",
            false,
            format_args!("the walk stopped early"),
        );
        return Outcome::Ran;
    };
    let d0_l4 = mm::bootstrap_l4();
    let d0_si = start_info().shared_info >> 12;
    note(format_args!(
        "dom0's frames: L4 {d0_l4:#x}, L1 {d0_l1:#x}, data {d0_data:#x}, shared_info {d0_si:#x}"
    ));
    let mut log = match Log::new(ctx) {
        Ok(l) => l,
        Err(e) => {
            c.check("readconsole", false, format_args!("returned -{e:?}"));
            return Outcome::Ran;
        }
    };
    let mut doms: Vec<DomId> = Vec::new();
    let outcome = attack_run(ctx, c, &mut log, &mut doms, [d0_l4, d0_l1, d0_data, d0_si]);
    // Whatever happened, nothing may be left.
    let left: Vec<DomId> = doms
        .iter()
        .copied()
        .filter(|&d| ctx.hv.domain_info(d).is_ok())
        .collect();
    ctx.destroy_all(c, "the attacker and the victim", &left);
    let changed = DOM0_DATA.first_change();
    c.check(
        "dom0's data frame is unchanged",
        changed.is_none(),
        format_args!("word {:?} changed", changed),
    );
    if let Some(after) = free_pages(ctx, c) {
        println!("free frames before: {before} after: {after}");
        c.check(
            "free frames back to where they started",
            before == after,
            format_args!("{} missing", before as i64 - after as i64),
        );
    }
    frame_table_check(c);
    outcome
}

fn frame_table_check(c: &mut Checks) {
    let ret = mm::check_frame_table();
    c.check(
        "XENMEM_XENIA_CHECK_FRAME_TABLE returns 0",
        ret == 0,
        format_args!("returned {ret}"),
    );
}

fn attack_run(
    ctx: &mut Ctx,
    c: &mut Checks,
    log: &mut Log,
    doms: &mut Vec<DomId>,
    [d0_l4, d0_l1, d0_data, d0_si]: [u64; 4],
) -> Outcome {
    // The attacker first, paused: the victim needs its id.
    let placeholder = format!("test=hostile role=attacker {:1$}", "", 600);
    let attacker = match build(ctx, "attacker", &placeholder, true) {
        Ok(d) => d,
        Err(e) => {
            c.check("build the attacker", false, format_args!("{e}"));
            return Outcome::Ran;
        }
    };
    let att = attacker.dom();
    doms.push(att);
    let victim = match build(
        ctx,
        "victim",
        &format!("test=hostile role=victim peer={att}"),
        false,
    ) {
        Ok(d) => d,
        Err(e) => {
            c.check("build the victim", false, format_args!("{e}"));
            return Outcome::Ran;
        }
    };
    let vic = victim.dom();
    doms.push(vic);
    let Some(ready) = log.wait_line(ctx, vic, "victim: ready", now_ns() + READY_NS) else {
        c.check(
            "the victim reports its grants",
            false,
            format_args!("no `victim: ready` line from d{vic}: {:?}", log.lines(vic)),
        );
        return Outcome::Ran;
    };
    let (Some(v_gnt), Some(v_data), Some(v_secret)) = (
        field(&ready, "gnt"),
        field(&ready, "data"),
        field(&ready, "secret"),
    ) else {
        c.check("parse the victim's line", false, format_args!("{ready:?}"));
        return Outcome::Ran;
    };
    let v_l4 = victim.mfn(victim.built.layout.sod.root_table());
    let v_si = victim.built.shared_info.0;
    match frame_change(ctx, vic, v_secret, SECRET_PATTERN) {
        Ok(None) => {}
        other => {
            c.check(
                "dom0 reads the victim's secret frame",
                false,
                format_args!("{other:?}"),
            );
            return Outcome::Ran;
        }
    }
    // The channel between dom0 and the attacker.
    let p_att = match ctx.hv.alloc_unbound(att, 0) {
        Ok(p) => p,
        Err(e) => {
            c.check(
                "alloc_unbound in the attacker",
                false,
                format_args!("-{e:?}"),
            );
            return Outcome::Ran;
        }
    };
    let p0 = match calls::evtchn_bind_interdomain(att, p_att) {
        Ok(p) => p,
        Err(e) => {
            c.check(
                "bind_interdomain to the attacker",
                false,
                format_args!("-{e:?}"),
            );
            return Outcome::Ran;
        }
    };
    let cmdline = format!(
        "test=hostile role=attacker vic={vic:x} port={p_att:x} d0l4={d0_l4:x} d0l1={d0_l1:x} \
         d0data={d0_data:x} d0si={d0_si:x} vl4={v_l4:x} vsi={v_si:x} vgnt={v_gnt:x} \
         vdata={v_data:x} vsecret={v_secret:x}"
    );
    if let Err(e) = set_cmdline(ctx, &attacker, &cmdline) {
        c.check(
            "write the attacker's command line",
            false,
            format_args!("{e}"),
        );
        return Outcome::Ran;
    }
    println!("d{att}: {cmdline}");
    // Binding makes the new port pending (Xen does, so that no notification is lost): take
    // that event before counting the attacker's.
    ctx.wait.deliver_pending();
    let seen = xenia_guest_rt::events::count(p0);
    if let Err(e) = ctx.hv.unpause(att) {
        c.check("unpause the attacker", false, format_args!("-{e:?}"));
        return Outcome::Ran;
    }

    // Finding 2 needs the victim destroyed while the attacker holds its grant mapped.
    let deadline = now_ns() + ATTACKER_NS;
    let signalled = loop {
        ctx.wait.deliver_pending();
        if xenia_guest_rt::events::count(p0) > seen {
            break true;
        }
        let stopped = ctx
            .hv
            .domain_info(att)
            .map_or(true, |i| i.shutdown_reason().is_some());
        let now = now_ns();
        if stopped || now >= deadline {
            break false;
        }
        log.poll(ctx);
        ctx.wait.block_until(deadline.min(now + POLL_NS));
    };
    c.check(
        "the attacker asks for the victim to be destroyed (event from its channel)",
        signalled,
        format_args!(
            "no event on port {p0}; its last lines: {:?}",
            last(&log.lines(att), 4)
        ),
    );
    let magic = read_word(ctx, vic, v_data, GRANT_MAGIC_WORD);
    c.check(
        "the victim's frame holds what the attacker wrote through its grant mapping",
        magic == Ok(GRANT_MAGIC),
        format_args!("word {GRANT_MAGIC_WORD} reads {magic:x?}"),
    );
    let data = frame_change(ctx, vic, v_data, DATA_PATTERN);
    c.check(
        "the rest of the victim's granted frame is unchanged",
        matches!(data, Ok(None)) || matches!(data, Ok(Some((GRANT_MAGIC_WORD, GRANT_MAGIC)))),
        format_args!("first change {data:x?}"),
    );
    let secret = frame_change(ctx, vic, v_secret, SECRET_PATTERN);
    c.check(
        "the victim's secret frame is unchanged",
        matches!(secret, Ok(None)),
        format_args!("first change {secret:x?}"),
    );
    if let Err(e) = ctx.destroy(vic) {
        c.check("destroy the victim", false, format_args!("{e}"));
    }
    let _ = calls::evtchn_send(p0);

    // The attacker's verdicts.
    let result = log.wait_line(ctx, att, "Test result: ", deadline);
    let _ = ctx
        .wait
        .wait_shutdown(&mut ctx.hv, att, now_ns() + READY_NS);
    log.poll(ctx);
    let lines = log.lines(att);
    let attacks: Vec<&String> = lines.iter().filter(|l| l.starts_with("attack ")).collect();
    let bad: Vec<&&String> = attacks
        .iter()
        .filter(|l| !l.contains(": refused ("))
        .collect();
    println!(
        "two-domain attacks: {} tried, {} refused",
        attacks.len(),
        attacks.len() - bad.len()
    );
    for b in &bad {
        println!("not refused: {b}");
    }
    c.check(
        "every attack on dom0's and the victim's frames is refused",
        !attacks.is_empty() && bad.is_empty(),
        format_args!("{} of {} not refused", bad.len(), attacks.len()),
    );
    let failed: Vec<&String> = lines.iter().filter(|l| l.contains("FAILED")).collect();
    c.check(
        "the attacker's grant checks pass",
        failed.is_empty(),
        format_args!("{failed:?}"),
    );
    c.check(
        "the attacker reports SUCCESS and powers off",
        result.as_deref() == Some("Test result: SUCCESS")
            && ctx
                .hv
                .domain_info(att)
                .is_ok_and(|i| i.shutdown_reason() == Some(SHUTDOWN_POWEROFF)),
        format_args!(
            "result {result:?}, domain {:?}; last lines {:?}",
            ctx.hv.domain_info(att).map(|i| i.flags),
            last(&lines, 4)
        ),
    );
    let _ = calls::evtchn_close(p0);
    Outcome::Ran
}

fn last(lines: &[String], n: usize) -> &[String] {
    &lines[lines.len().saturating_sub(n)..]
}

/// The ticks the neighbour printed so far.
fn ticks(log: &mut Log, ctx: &mut Ctx, dom: DomId) -> usize {
    log.poll(ctx);
    log.lines(dom)
        .iter()
        .filter(|l| l.starts_with("tick "))
        .count()
}

/// Memory exhaustion from a domU and from dom0.
pub fn exhaustion(ctx: &mut Ctx, c: &mut Checks) -> Outcome {
    let heap_before = match heap_info(&mut ctx.hv, DOMID_INVALID) {
        Ok(h) => {
            println!(
                "heap before: {} bytes in use of {}",
                h.heap_used, h.heap_total
            );
            Some(h.heap_used)
        }
        Err(e) => {
            println!("heap before: XEN_SYSCTL_XENIA_HEAP_INFO returned -{e:?}");
            None
        }
    };
    let total_before = heap_info(&mut ctx.hv, DOMID_INVALID).map(|h| h.heap_total);
    let Some(before) = free_pages(ctx, c) else {
        return Outcome::Ran;
    };
    let mut log = match Log::new(ctx) {
        Ok(l) => l,
        Err(e) => {
            c.check("readconsole", false, format_args!("returned -{e:?}"));
            return Outcome::Ran;
        }
    };
    let ticker = match build(ctx, "ticker", "test=hostile role=ticker", false) {
        Ok(d) => d.dom(),
        Err(e) => {
            c.check("build the neighbour", false, format_args!("{e}"));
            return Outcome::Ran;
        }
    };
    exhaust_domu(ctx, c, &mut log, ticker);
    partial_lines(ctx, c);
    let t0 = ticks(&mut log, ctx, ticker);
    many_vcpus(ctx, c);
    ctx.wait.sleep(5 * TICK_NS);
    let t1 = ticks(&mut log, ctx, ticker);
    c.check(
        "the neighbour keeps ticking after dom0's domain flood",
        t1 > t0,
        format_args!("{t0} ticks before, {t1} after"),
    );
    ctx.destroy_all(c, "the neighbour", &[ticker]);

    // The hypervisor's heap grew from free frames while the domains lived and keeps them
    // (used again by the next domains): those count as given back when heap use came back,
    // which the check below the next one requires.
    let grown = match (total_before, heap_info(&mut ctx.hv, DOMID_INVALID)) {
        (Ok(b), Ok(a)) => a.heap_total.saturating_sub(b) / 4096,
        _ => 0,
    };
    if let Some(after) = free_pages(ctx, c) {
        println!("free frames before: {before} after: {after} (+{grown} the heap grew into)");
        c.check(
            "free frames back to where they started (with those the heap grew into)",
            before == after + grown,
            format_args!("{} missing", before as i64 - (after + grown) as i64),
        );
    }
    let heap_after = heap_info(&mut ctx.hv, DOMID_INVALID);
    match (heap_before, heap_after) {
        (Some(b), Ok(a)) => {
            println!(
                "heap after: {} bytes in use of {} (before: {b}; {} more)",
                a.heap_used,
                a.heap_total,
                a.heap_used as i64 - b as i64
            );
            c.check(
                format_args!("heap use back within {HEAP_SLACK} bytes of where it started"),
                a.heap_used <= b + HEAP_SLACK,
                format_args!("before {b}, after {}", a.heap_used),
            );
        }
        (_, r) => {
            println!("heap after: XEN_SYSCTL_XENIA_HEAP_INFO returned {r:?}");
        }
    }
    frame_table_check(c);
    if heap_before.is_none() && c.failures() == 0 {
        println!("exhaustion: the hypervisor has no XEN_SYSCTL_XENIA_HEAP_INFO; cannot measure");
        report(TestResult::Error);
    }
    Outcome::Ran
}

/// The hostile domU: ports, grant maps, a line that never ends.
fn exhaust_domu(ctx: &mut Ctx, c: &mut Checks, log: &mut Log, ticker: DomId) {
    let placeholder = format!("test=hostile role=exhaust {:1$}", "", 40);
    let d = match build(ctx, "exhaust", &placeholder, true) {
        Ok(d) => d,
        Err(e) => {
            c.check("build the exhausting domU", false, format_args!("{e}"));
            return;
        }
    };
    let dom = d.dom();
    if let Err(e) = set_cmdline(ctx, &d, &format!("test=hostile role=exhaust self={dom:x}")) {
        c.check("write its command line", false, format_args!("{e}"));
        ctx.destroy_all(c, "the exhausting domU", &[dom]);
        return;
    }
    let t0 = ticks(log, ctx, ticker);
    let start = now_ns();
    if let Err(e) = ctx.hv.unpause(dom) {
        c.check("unpause the exhausting domU", false, format_args!("-{e:?}"));
    }
    let result = log.wait_line(ctx, dom, "Test result: ", now_ns() + EXHAUST_NS);
    let took = now_ns() - start;
    let waited = ctx
        .wait
        .wait_shutdown(&mut ctx.hv, dom, now_ns() + READY_NS);
    let t1 = ticks(log, ctx, ticker);
    let lines = log.lines(dom);
    for l in lines.iter().filter(|l| l.starts_with("exhaust: ")) {
        println!("exhaustion: d{dom} says {l}");
    }
    c.check(
        "the exhausting domU gets errors, not a stop (its checks pass, it powers off)",
        result.as_deref() == Some("Test result: SUCCESS")
            && matches!(waited, Ok((ref i, true)) if i.shutdown_reason() == Some(SHUTDOWN_POWEROFF)),
        format_args!(
            "result {result:?}; failed: {:?}; last {:?}",
            lines.iter().filter(|l| l.contains("FAILED")).collect::<Vec<_>>(),
            last(&lines, 3)
        ),
    );
    match heap_info(&mut ctx.hv, dom) {
        Ok(h) => println!(
            "heap with the exhausting domU stopped: {} bytes in use, {} charged to it (limit {})",
            h.heap_used, h.charged, h.limit
        ),
        Err(e) => println!("heap with the exhausting domU stopped: -{e:?}"),
    }
    // A tick every 100 ms; a quarter of them is enough to show the neighbour was not starved.
    let want = (took / (400 * NS_PER_MS)) as usize;
    c.check(
        "the neighbour kept ticking meanwhile",
        t1 > t0 && t1 - t0 >= want,
        format_args!(
            "{} ticks in {} ms (want at least {want})",
            t1 - t0,
            took / NS_PER_MS
        ),
    );
    ctx.destroy_all(c, "the exhausting domU", &[dom]);
    print_heap_with(ctx, "heap after destroying the exhausting domU");
}

/// Prints the heap in use, `what` first.
fn print_heap_with(ctx: &mut Ctx, what: &str) {
    match heap_info(&mut ctx.hv, DOMID_INVALID) {
        Ok(h) => println!("{what}: {} bytes in use of {}", h.heap_used, h.heap_total),
        Err(e) => println!("{what}: -{e:?}"),
    }
}

/// Domains that power off mid-line.
fn partial_lines(ctx: &mut Ctx, c: &mut Checks) {
    let mut problem = None;
    for i in 0..PARTIAL_DOMAINS {
        let d = match build(ctx, "partial", "test=hostile role=partial", false) {
            Ok(d) => d.dom(),
            Err(e) => {
                problem = Some(format!("domain {i}: {e}"));
                break;
            }
        };
        let w = ctx.wait.wait_shutdown(&mut ctx.hv, d, now_ns() + READY_NS);
        if let Err(e) = ctx.destroy(d) {
            problem = Some(e);
            break;
        }
        if !matches!(w, Ok((_, true))) {
            problem = Some(format!("d{d} did not shut down: {w:?}"));
            break;
        }
    }
    print_heap_with(ctx, "heap after the domains that ended mid-line");
    c.check(
        format_args!("{PARTIAL_DOMAINS} domains that end mid-line run and go"),
        problem.is_none(),
        format_args!("{problem:?}"),
    );
}

/// dom0 creates domains of [`VCPUS`] vCPUs until refused.
fn many_vcpus(ctx: &mut Ctx, c: &mut Checks) {
    let mut created: Vec<DomId> = Vec::new();
    let mut refusal = None;
    for i in 0..MAX_DOMAINS {
        let mut handle = [0u8; 16];
        handle[..4].copy_from_slice(&i.to_le_bytes());
        let cfg = CreateConfig::new(handle, VCPUS);
        match ctx.hv.create_domain(&cfg) {
            Ok(d) => {
                created.push(d);
                if let Err(e) = ctx.hv.set_max_vcpus(d, VCPUS) {
                    refusal = Some(("max_vcpus", e));
                    break;
                }
            }
            Err(e) => {
                refusal = Some(("createdomain", e));
                break;
            }
        }
    }
    println!(
        "exhaustion: {} domains of {VCPUS} vCPUs created, then {refusal:?}",
        created.len()
    );
    c.check(
        format_args!("creating domains of {VCPUS} vCPUs ends in ENOMEM or ENOSPC"),
        matches!(refusal, Some((_, Errno::ENOMEM | Errno::ENOSPC))),
        format_args!("{} created, then {refusal:?}", created.len()),
    );
    print_heap_with(ctx, "heap with them all");
    c.check(
        "dom0 still gets answers (physinfo)",
        ctx.hv.physinfo().is_ok(),
        format_args!("physinfo failed"),
    );
    ctx.destroy_all(c, "the domains of many vCPUs", &created);
    print_heap_with(ctx, "heap after destroying them");
}
