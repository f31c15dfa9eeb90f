//! Issue 14's operator scenarios: dom0 as an operator works in it, at the `dom0# ` prompt of
//! the default image (`cargo xtask test operator_` runs them all).

use std::time::Instant;

use crate::machine::Qemu;
use crate::runner::Context;

use super::xl::{Row, boot, parse_list, run, until_prompt};

/// How many times [`poweroff_repeated`] shuts a domain down (issue 14's acceptance).
const POWEROFFS: u32 = 200;
/// Failures after which [`poweroff_repeated`] stops looking (the report names each).
const FAILURES_SHOWN: usize = 5;
/// `xl list`s typed one at a time, when a domain outlived its shutdown, to tell the report
/// whether it went late or not at all.
const LATE_LISTS: u32 = 5;

/// `on_poweroff = "destroy"` applied every time, [`POWEROFFS`] times in one boot: `xl create`
/// the echo domain of `/etc/xen/hello.cfg`, then `xl shutdown -w hello` with `xl list`
/// queued right behind it (two lines pasted at once, as a script or a paste gives them):
/// `xl shutdown -w` must report the domain shut down, and that `xl list` must no longer
/// show it. dom0's kernel destroys the domain when it takes `VIRQ_DOM_EXC`, which must
/// happen before the shell starts the next command even though it never waits for input in
/// between (the command is already there): when dom0 counted that event only while blocked,
/// every queued `xl list` still showed the domain shut down, and it stayed so until dom0
/// next had nothing to do. At the end `xl info` reports the free memory it reported
/// before the first domain: each one was destroyed, not left behind.
pub fn poweroff_repeated(ctx: &Context) -> Result<(), String> {
    let mut vm = boot(ctx)?;
    let free_before = free_memory(&mut vm)?;
    let start = Instant::now();
    let mut failures = Vec::new();
    for i in 0..POWEROFFS {
        let out = run(&mut vm, "xl create /etc/xen/hello.cfg")?;
        let id = created_id(&out).ok_or_else(|| format!("round {i}: xl create: {out:?}"))?;
        vm.send("xl shutdown -w hello\rxl list\r")?;
        let shutdown = until_prompt(&mut vm, "xl shutdown -w hello")?;
        let listed = until_prompt(&mut vm, "xl list")?;
        for text in [
            format!("Shutting down domain {id}"),
            format!("Domain {id} has been shut down"),
        ] {
            if !shutdown.contains(&text) {
                return Err(format!(
                    "round {i}: `xl shutdown -w hello` did not say {text:?}: {shutdown:?}"
                ));
            }
        }
        let rows = parse_list(&listed)?;
        let Some(row) = domain(&rows, id) else {
            continue;
        };
        failures.push(format!(
            "round {i}: domain {id} still listed ({}) by the `xl list` after `xl shutdown -w`; {}",
            row.state,
            gone_later(&mut vm, id)?
        ));
        if failures.len() == FAILURES_SHOWN {
            break;
        }
    }
    let elapsed = start.elapsed().as_secs_f64();
    if !failures.is_empty() {
        return Err(format!(
            "on_poweroff not applied in time ({} failures, stopped looking after {FAILURES_SHOWN}):\n{}",
            failures.len(),
            failures.join("\n")
        ));
    }
    let rows = parse_list(&run(&mut vm, "xl list")?)?;
    if rows.len() != 1 || rows[0].name != "Domain-0" {
        return Err(format!("after the last round `xl list` shows {rows:?}"));
    }
    let free_after = free_memory(&mut vm)?;
    if free_after != free_before {
        return Err(format!(
            "free memory {free_before} MiB before the first domain, {free_after} MiB after \
             the last: destroyed domains left memory behind"
        ));
    }
    ctx.note(format!(
        "{POWEROFFS} rounds of create, shutdown -w and list in {elapsed:.1} s \
         ({:.0} ms each): destroyed every time; free memory {free_after} MiB as before",
        elapsed * 1000.0 / f64::from(POWEROFFS)
    ));
    vm.kill();
    Ok(())
}

/// Types `xl list` up to [`LATE_LISTS`] times, one at a time, until domain `id` is gone, and
/// destroys it if it stays; says what happened, for the report.
fn gone_later(vm: &mut Qemu, id: u32) -> Result<String, String> {
    for n in 1..=LATE_LISTS {
        if domain(&parse_list(&run(vm, "xl list")?)?, id).is_none() {
            return Ok(format!(
                "gone after {n} more `xl list`s typed one at a time"
            ));
        }
    }
    run(vm, &format!("xl destroy {id}"))?;
    Ok(format!(
        "still there after {LATE_LISTS} more `xl list`s (destroyed by hand)"
    ))
}

/// The row of domain `id`, if listed.
fn domain(rows: &[Row], id: u32) -> Option<&Row> {
    rows.iter().find(|r| r.id == id)
}

/// The id in `xl create`'s "Domain <name> created with id <id>".
fn created_id(out: &str) -> Option<u32> {
    let (_, rest) = out.split_once(" created with id ")?;
    rest.split_whitespace().next()?.parse().ok()
}

/// `free_memory` of `xl info`, in MiB.
fn free_memory(vm: &mut Qemu) -> Result<u64, String> {
    let out = run(vm, "xl info")?;
    out.lines()
        .find_map(|l| {
            let (key, value) = l.split_once(':')?;
            (key.trim() == "free_memory").then(|| value.trim().parse().ok())?
        })
        .ok_or_else(|| format!("no free_memory in `xl info`: {out:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn created_id_parses() {
        let out = "xl create /etc/xen/hello.cfg\nParsing config from /etc/xen/hello.cfg\n\
                   Domain hello created with id 17\n";
        assert_eq!(created_id(out), Some(17));
        assert_eq!(created_id("xl: cannot create \"hello\""), None);
    }
}
