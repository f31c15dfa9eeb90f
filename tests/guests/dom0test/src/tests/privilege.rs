//! `privilege`: domain control is dom0's alone. dom0 builds testguest `unprivileged`, which
//! tries domctl, sysctl, populating dom0's memory, allocating a port in dom0 and reading the
//! console, each of which must fail with `EPERM`, and reports. dom0 waits for it to power
//! off and finds its verdict in the hypervisor's console ring; then checks dom0 itself is
//! untouched (its memory reservation and its being domain 0 in the list).

use xenia_guest_rt::check::Checks;
use xenia_guest_rt::println;
use xenia_guest_rt::time::{NS_PER_MS, now_ns};

use super::{Ctx, Domu, Outcome};
use crate::wait::ConsoleLog;

/// Memory of the domU.
const MIB: u64 = 16;
/// How long dom0 waits for the domU's verdict.
const WAIT_NS: u64 = 20_000 * NS_PER_MS;

pub fn run(ctx: &mut Ctx, c: &mut Checks) -> Outcome {
    let mut log = ConsoleLog::now(&mut ctx.hv).ok();
    let free_before = ctx.free_pages().ok();
    let built = match ctx.build(&Domu::new("unprivileged", MIB)) {
        Ok(b) => b,
        Err(e) => {
            let why = ctx.explain(&e);
            c.check("build unprivileged", false, format_args!("{why}"));
            return Outcome::Ran;
        }
    };
    let dom = built.dom;
    println!("built d{dom} (unprivileged, {MIB} MiB)");
    let done = ctx
        .wait
        .wait_shutdown(&mut ctx.hv, dom, now_ns() + WAIT_NS)
        .is_ok_and(|(_, done)| done);
    c.check(
        format_args!("d{dom} shuts down"),
        done,
        format_args!("still running"),
    );
    let text = log
        .as_mut()
        .and_then(|l| l.read_new(&mut ctx.hv).ok())
        .unwrap_or_default();
    let lines = ConsoleLog::lines_of(&text, dom);
    for line in lines.iter().filter(|l| l.starts_with("check ")) {
        println!("privilege d{dom}: {line}");
    }
    let verdict = lines.iter().find(|l| l.starts_with("Test result: "));
    c.check(
        format_args!("d{dom}'s attempts were all refused with EPERM"),
        verdict.is_some_and(|v| v == "Test result: SUCCESS"),
        format_args!("its result line: {verdict:?}"),
    );
    ctx.destroy_all(c, "the unprivileged domU", &[dom]);
    if let (Some(before), Ok(after)) = (free_before, ctx.free_pages()) {
        c.eq("free frames back where they were", after, before);
    }
    Outcome::Ran
}
