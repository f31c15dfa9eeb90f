//! Running scenarios: selection by name, parallel workers, per-scenario reports.

use std::io::Write;
use std::panic::{self, AssertUnwindSafe};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::contract;
use crate::machine::{Machine, Registry};
use crate::workspace::Workspace;

/// A scenario: a name and a function that boots machines and checks what they do, returning
/// a message that explains the failure.
#[derive(Clone, Copy, Debug)]
pub struct Scenario {
    /// Unique name (letters, digits, `_`); also the name of its working directory.
    pub name: &'static str,
    /// The test.
    pub run: fn(&Context) -> Result<(), String>,
}

impl Scenario {
    /// A scenario called `name` that runs `run`.
    pub const fn new(name: &'static str, run: fn(&Context) -> Result<(), String>) -> Scenario {
        Scenario { name, run }
    }
}

/// What a scenario function gets: where to work and a factory of machines whose serial logs
/// are shown if the scenario fails.
pub struct Context {
    ws: Workspace,
    name: String,
    registry: Registry,
    machines: AtomicUsize,
    notes: Mutex<Vec<String>>,
    /// CPUs of the machines this context starts unless a scenario says otherwise.
    cpus: AtomicUsize,
    /// The hypervisor image of the machines this context starts, if not the default.
    hypervisor: Mutex<Option<std::path::PathBuf>>,
}

impl Context {
    /// The context of scenario `name` in workspace `ws`.
    pub fn new(ws: &Workspace, name: &str) -> Context {
        Context {
            ws: ws.clone(),
            name: name.to_string(),
            registry: Arc::new(Mutex::new(Vec::new())),
            machines: AtomicUsize::new(0),
            cpus: AtomicUsize::new(1),
            hypervisor: Mutex::new(None),
            notes: Mutex::new(Vec::new()),
        }
    }

    /// The scenario's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The workspace.
    pub fn workspace(&self) -> &Workspace {
        &self.ws
    }

    /// The scenario's working directory (`<target>/xenia/scenarios/<name>/`), created if
    /// needed: a place for files the scenario makes, such as modules.
    pub fn work_dir(&self) -> Result<PathBuf, String> {
        let dir = self.ws.scenario_dir(&self.name);
        std::fs::create_dir_all(&dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        Ok(dir)
    }

    /// A new machine with the defaults of [`Machine::new`]. The first is named after the
    /// scenario, later ones get `-2`, `-3`, ... appended.
    pub fn machine(&self) -> Machine {
        let n = self.machines.fetch_add(1, Ordering::Relaxed);
        let name = if n == 0 {
            self.name.clone()
        } else {
            format!("{}-{}", self.name, n + 1)
        };
        let mut machine = Machine::new(&self.ws, &name).registered(Arc::clone(&self.registry));
        if let Some(image) = self.hypervisor.lock().ok().and_then(|h| h.clone()) {
            machine = machine.hypervisor(image);
        }
        match self.cpus.load(Ordering::Relaxed) {
            1 => machine,
            n => machine.cpus(n as u32),
        }
    }

    /// Makes every machine started from here on boot hypervisor image `image`.
    pub fn set_default_hypervisor(&self, image: &std::path::Path) {
        if let Ok(mut h) = self.hypervisor.lock() {
            *h = Some(image.to_path_buf());
        }
    }

    /// Makes every machine started from here on have `cpus` CPUs unless the scenario sets
    /// its own count: a scenario written for one CPU then runs unchanged on several.
    pub fn set_default_cpus(&self, cpus: u32) {
        self.cpus.store(cpus.max(1) as usize, Ordering::Relaxed);
    }

    /// Adds a line to the scenario's report, shown even when it passes: measured figures
    /// the issue asks to see (shares, latencies, counts).
    pub fn note(&self, line: impl Into<String>) {
        self.notes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(line.into());
    }

    /// The serial logs and QEMU standard errors of the machines booted so far.
    pub fn logs(&self) -> Vec<MachineLog> {
        let registry = self.registry.lock().unwrap_or_else(|e| e.into_inner());
        registry
            .iter()
            .map(|(name, shared)| MachineLog {
                machine: name.clone(),
                serial: shared.serial_log(),
                stderr: shared.stderr(),
                tolerated: shared.tolerated.clone(),
            })
            .collect()
    }
}

/// What one machine printed.
#[derive(Clone, Debug)]
pub struct MachineLog {
    /// The machine's name.
    pub machine: String,
    /// Its normalized serial log.
    pub serial: String,
    /// QEMU's standard error.
    pub stderr: String,
    /// The rejected marks the scenario provokes on this machine on purpose.
    pub tolerated: Vec<&'static str>,
}

impl MachineLog {
    /// The failure message for the lines of this log that show a hypervisor failure
    /// ([`contract::REJECTED`], less what the machine tolerates), if there are any.
    pub fn rejection(&self) -> Option<String> {
        let lines = contract::rejected_lines(&self.serial, &self.tolerated);
        if lines.is_empty() {
            return None;
        }
        let shown: Vec<String> = lines
            .iter()
            .map(|(n, line)| format!("line {n}: {line:?}"))
            .collect();
        Some(format!(
            "the serial log of {} shows a hypervisor failure ({} line{} containing one of {:?}): {}",
            self.machine,
            lines.len(),
            plural(lines.len()),
            contract::REJECTED,
            shown.join("; ")
        ))
    }
}

/// `result` failed as well for every machine whose log shows a hypervisor failure: whatever
/// the scenario checked, a panic, a ring-0 exception or an inconsistent frame table anywhere
/// fails it.
pub fn reject_failure_lines(result: Result<(), String>, logs: &[MachineLog]) -> Result<(), String> {
    let rejections: Vec<String> = logs.iter().filter_map(MachineLog::rejection).collect();
    if rejections.is_empty() {
        return result;
    }
    let mut message = match result {
        Ok(()) => String::new(),
        Err(e) => format!("{e}\n"),
    };
    message.push_str(&rejections.join("\n"));
    Err(message)
}

/// The result of one scenario.
#[derive(Clone, Debug)]
pub struct Outcome {
    /// The scenario's name.
    pub name: &'static str,
    /// `Err` holds the failure message.
    pub result: Result<(), String>,
    /// Wall-clock time taken.
    pub elapsed: Duration,
    /// The machines' logs.
    pub logs: Vec<MachineLog>,
    /// Lines the scenario asked to show ([`Context::note`]).
    pub notes: Vec<String>,
}

impl Outcome {
    /// The text to print: one line when the scenario passed; on failure also the message and
    /// every machine's whole normalized serial log and QEMU's standard error.
    pub fn report(&self) -> String {
        let secs = self.elapsed.as_secs_f64();
        let message = match &self.result {
            Ok(()) => {
                let mut out = format!("scenario {} ... ok ({secs:.1}s)\n", self.name);
                for note in &self.notes {
                    out.push_str(&format!("    {note}\n"));
                }
                return out;
            }
            Err(message) => message,
        };
        let mut out = format!("scenario {} ... FAILED ({secs:.1}s)\n", self.name);
        for line in message.lines() {
            out.push_str(&format!("    {line}\n"));
        }
        for log in &self.logs {
            out.push_str(&format!(
                "    ---- serial log of {} (normalized) ----\n",
                log.machine
            ));
            for line in log.serial.lines() {
                out.push_str(&format!("    | {line}\n"));
            }
            if !log.serial.is_empty() && !log.serial.ends_with('\n') {
                out.push_str("    (no newline at the end)\n");
            }
            if !log.stderr.trim().is_empty() {
                out.push_str(&format!(
                    "    ---- QEMU standard error of {} ----\n",
                    log.machine
                ));
                for line in log.stderr.lines() {
                    out.push_str(&format!("    | {line}\n"));
                }
            }
            out.push_str(&format!("    ---- end of {} ----\n", log.machine));
        }
        out
    }
}

/// The scenarios of `all` whose names contain `filter` (all of them for `None`).
pub fn select(all: Vec<Scenario>, filter: Option<&str>) -> Vec<Scenario> {
    select_held(all, filter, crate::scenarios::HELD)
}

/// [`select`] with `held` as the scenarios held back: those run only when a filter names one
/// exactly, never by default or by a part of their name.
fn select_held(all: Vec<Scenario>, filter: Option<&str>, held: &[&str]) -> Vec<Scenario> {
    // Several filters separated by commas: a scenario matching any of them.
    all.into_iter()
        .filter(|s| match filter {
            None => !held.contains(&s.name),
            Some(f) if held.contains(&s.name) => f.split(',').any(|f| f == s.name),
            Some(f) => f.split(',').any(|f| s.name.contains(f)),
        })
        .collect()
}

/// The registered scenarios whose names contain `filter`, or an error listing the scenarios
/// if none does.
pub fn matching(filter: Option<&str>) -> Result<Vec<Scenario>, String> {
    let all = crate::scenarios::all();
    let names: Vec<&str> = all.iter().map(|s| s.name).collect();
    let selected = select(all.clone(), filter);
    let held: Vec<&str> = crate::scenarios::HELD
        .iter()
        .copied()
        .filter(|h| !selected.iter().any(|s| s.name == *h))
        .collect();
    if !held.is_empty() {
        eprintln!(
            "held back (known failures under investigation, see tests/src/scenarios/mod.rs; \
             name one exactly to run it): {}",
            held.join(", ")
        );
    }
    if selected.is_empty() {
        return Err(format!(
            "no scenario name contains {:?}; the scenarios are: {}",
            filter.unwrap_or(""),
            names.join(", ")
        ));
    }
    Ok(selected)
}

/// Runs one scenario, turning a panic into a failure.
pub fn run_one(ws: &Workspace, scenario: &Scenario) -> Outcome {
    let ctx = Context::new(ws, scenario.name);
    let started = Instant::now();
    let result =
        panic::catch_unwind(AssertUnwindSafe(|| (scenario.run)(&ctx))).unwrap_or_else(|payload| {
            let what = payload
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "(no message)".into());
            Err(format!("the scenario panicked: {what}"))
        });
    // The machines are dropped (QEMU killed) by now; their logs stay in the registry.
    let logs = ctx.logs();
    Outcome {
        name: scenario.name,
        result: reject_failure_lines(result, &logs),
        elapsed: started.elapsed(),
        logs,
        notes: ctx.notes.lock().unwrap_or_else(|e| e.into_inner()).clone(),
    }
}

/// Runs `scenarios` on `workers` threads, calling `done` as each finishes (from the worker
/// thread; calls do not overlap). Returns the outcomes in the order of `scenarios`.
pub fn run(
    ws: &Workspace,
    scenarios: &[Scenario],
    workers: usize,
    done: impl Fn(&Outcome) + Sync,
) -> Vec<Outcome> {
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<Option<Outcome>>> = Mutex::new(vec![None; scenarios.len()]);
    let report = Mutex::new(());
    std::thread::scope(|scope| {
        for _ in 0..workers.clamp(1, scenarios.len().max(1)) {
            scope.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(scenario) = scenarios.get(i) else {
                        return;
                    };
                    let outcome = run_one(ws, scenario);
                    {
                        let _serialized = report.lock().unwrap_or_else(|e| e.into_inner());
                        done(&outcome);
                    }
                    results.lock().unwrap_or_else(|e| e.into_inner())[i] = Some(outcome);
                }
            });
        }
    });
    results
        .into_inner()
        .unwrap_or_else(|e| e.into_inner())
        .into_iter()
        .flatten()
        .collect()
}

/// Totals of a run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Summary {
    /// Scenarios that passed.
    pub passed: usize,
    /// Scenarios that failed.
    pub failed: usize,
}

/// Runs the registered scenarios whose names contain `filter` on `workers` threads, printing
/// each result to standard output as one block when it finishes and then `N passed, M failed`.
/// Fails without running anything if no scenario matches or the hypervisor is not built.
pub fn run_and_report(
    ws: &Workspace,
    filter: Option<&str>,
    workers: usize,
) -> Result<Summary, String> {
    let selected = matching(filter)?;
    ws.require_artifact(crate::HYPERVISOR_ARTIFACT)?;
    let workers = workers.clamp(1, selected.len());
    println!(
        "running {} scenario{} on {workers} worker{}",
        selected.len(),
        plural(selected.len()),
        plural(workers)
    );
    let outcomes = run(ws, &selected, workers, |outcome| {
        let mut stdout = std::io::stdout().lock();
        let _ = stdout.write_all(outcome.report().as_bytes());
        let _ = stdout.flush();
    });
    let failed = outcomes.iter().filter(|o| o.result.is_err()).count();
    let summary = Summary {
        passed: outcomes.len() - failed,
        failed,
    };
    println!("{} passed, {} failed", summary.passed, summary.failed);
    print!("{}", recap(&outcomes, RECAP_LINES));
    Ok(summary)
}

/// How many lines [`recap`] may print in all: CI keeps only the end of a run's output, so the
/// failures are repeated there, shortened, after the totals.
pub const RECAP_LINES: usize = 150;

/// The failed scenarios again, in at most `budget` lines: for each (the first ones, when
/// many failed) its name, the start of its message and the end of each machine's serial
/// log, the budget shared among them; then one line naming every failure, last, where a
/// reader of the output's end sees it first. Empty when nothing failed.
pub fn recap(outcomes: &[Outcome], budget: usize) -> String {
    let failed: Vec<(&Outcome, &String)> = outcomes
        .iter()
        .filter_map(|o| o.result.as_ref().err().map(|e| (o, e)))
        .collect();
    if failed.is_empty() {
        return String::new();
    }
    // The last line names them all; each detailed failure gets at least eight lines.
    let room = budget.saturating_sub(2);
    let detailed = failed.len().min((room / 8).max(1));
    let each = room / detailed;
    let mut out = String::new();
    for (outcome, message) in &failed[..detailed] {
        let mut block = Vec::new();
        let lines: Vec<&str> = message.lines().collect();
        block.push(format!(
            "== {} FAILED ({:.1}s): {} line{} of message ==",
            outcome.name,
            outcome.elapsed.as_secs_f64(),
            lines.len(),
            plural(lines.len())
        ));
        let for_message = (each / 3).max(2);
        block.extend(lines.iter().take(for_message).map(|l| format!("   {l}")));
        if lines.len() > for_message {
            block.push(format!("   ({} more)", lines.len() - for_message));
        }
        let logs = outcome.logs.len().max(1);
        let per_log = (each.saturating_sub(block.len()) / logs).saturating_sub(1);
        for log in &outcome.logs {
            let serial: Vec<&str> = log.serial.lines().collect();
            let mut from = serial.len().saturating_sub(per_log);
            // The part cut off may hold the cause (a boot-time warning): its warnings and
            // errors first, in at most a quarter of the log's room.
            let notable: Vec<&str> = serial[..from]
                .iter()
                .copied()
                .filter(|l| is_notable(l))
                .collect();
            if !notable.is_empty() && per_log >= 8 {
                let room = per_log / 4 - 1;
                block.push(format!(
                    "   -- {} warning and error line{} before that --",
                    notable.len(),
                    plural(notable.len())
                ));
                block.extend(notable.iter().take(room).map(|l| format!("   | {l}")));
                from = serial
                    .len()
                    .saturating_sub(per_log - 1 - notable.len().min(room));
            }
            block.push(format!(
                "   -- last {} of {} lines of {} --",
                serial.len() - from,
                serial.len(),
                log.machine
            ));
            block.extend(serial[from..].iter().map(|l| format!("   | {l}")));
        }
        block.truncate(each);
        for line in block {
            out.push_str(&line);
            out.push('\n');
        }
    }
    if detailed < failed.len() {
        out.push_str(&format!(
            "({} more failures: their blocks are printed where each finished)\n",
            failed.len() - detailed
        ));
    }
    out.push_str(&format!(
        "failed: {}\n",
        failed
            .iter()
            .map(|(o, _)| o.name)
            .collect::<Vec<_>>()
            .join(", ")
    ));
    out
}

/// A serial line worth repeating from the part of a log a recap leaves out.
fn is_notable(line: &str) -> bool {
    let lower = line.to_ascii_lowercase();
    ["warn", "error", "panic", "failed", "fault"]
        .iter()
        .any(|w| lower.contains(w))
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pass(_: &Context) -> Result<(), String> {
        Ok(())
    }
    fn fail(_: &Context) -> Result<(), String> {
        Err("it broke\nsecond line".into())
    }
    fn boom(_: &Context) -> Result<(), String> {
        panic!("kaboom")
    }

    #[test]
    fn recap_names_the_failures_within_its_budget() {
        let outcome = |name, result: Result<(), String>, serial: String| Outcome {
            name,
            result,
            elapsed: Duration::from_millis(1500),
            logs: vec![MachineLog {
                machine: "m".into(),
                serial,
                stderr: String::new(),
                tolerated: Vec::new(),
            }],
            notes: Vec::new(),
        };
        let long_log = || -> String {
            (0..500)
                .map(|i| {
                    if i == 3 {
                        "warning: AP 2 did not come online\n".to_string()
                    } else {
                        format!("line {i}\n")
                    }
                })
                .collect()
        };
        let long = long_log();
        let message: String = (0..100).map(|i| format!("why {i}\n")).collect();
        let outcomes = vec![
            outcome("a_ok", Ok(()), long.clone()),
            outcome("b_bad", Err(message), long.clone()),
            outcome("c_bad", Err("short".into()), long),
        ];
        let text = recap(&outcomes, 150);
        assert!(text.ends_with("failed: b_bad, c_bad\n"), "{text}");
        assert!(text.contains("== b_bad FAILED (1.5s): 100 lines of message =="));
        assert!(text.contains("why 0") && !text.contains("why 99"));
        assert!(text.contains("line 499") && !text.contains("line 0\n"));
        assert!(
            text.contains("1 warning and error line before that"),
            "{text}"
        );
        assert!(
            text.contains("| warning: AP 2 did not come online"),
            "{text}"
        );
        assert!(!text.contains("a_ok"));
        assert!(text.lines().count() <= 150, "{}", text.lines().count());
        assert_eq!(recap(&outcomes[..1], 150), "");
        // Many failures: the budget still holds, and the last line names every one.
        let many: Vec<Outcome> = (0..60)
            .map(|_| outcome("m_bad", Err("why\nand why".into()), long_log()))
            .collect();
        let text = recap(&many, 150);
        assert!(text.lines().count() <= 150, "{}", text.lines().count());
        assert_eq!(
            text.lines().last().map(|l| l.matches("m_bad").count()),
            Some(60)
        );
        assert!(text.contains("more failures"));
    }

    #[test]
    fn selection() {
        let all = vec![
            Scenario::new("boot_a", pass),
            Scenario::new("boot_b", pass),
            Scenario::new("x", pass),
        ];
        let names = |f| {
            select(all.clone(), f)
                .iter()
                .map(|s| s.name)
                .collect::<Vec<_>>()
        };
        assert_eq!(names(None), ["boot_a", "boot_b", "x"]);
        assert_eq!(names(Some("boot")), ["boot_a", "boot_b"]);
        assert_eq!(names(Some("_a,x")), ["boot_a", "x"]);
        assert!(names(Some("nothing")).is_empty());
        let held = |f| {
            select_held(all.clone(), f, &["boot_b"])
                .iter()
                .map(|s| s.name)
                .collect::<Vec<_>>()
        };
        assert_eq!(held(None), ["boot_a", "x"]);
        assert_eq!(held(Some("boot")), ["boot_a"]);
        assert_eq!(held(Some("boot_b,x")), ["boot_b", "x"]);
    }

    #[test]
    fn parallel_run_reports_every_outcome_in_order() {
        let ws = Workspace::new("/nonexistent");
        let scenarios = [
            Scenario::new("a", pass),
            Scenario::new("b", fail),
            Scenario::new("c", boom),
            Scenario::new("d", pass),
        ];
        let seen = Mutex::new(Vec::new());
        let outcomes = run(&ws, &scenarios, 2, |o| seen.lock().unwrap().push(o.name));
        assert_eq!(
            outcomes.iter().map(|o| o.name).collect::<Vec<_>>(),
            ["a", "b", "c", "d"]
        );
        assert_eq!(seen.into_inner().unwrap().len(), 4);
        assert!(outcomes[0].report().starts_with("scenario a ... ok ("));
        let b = outcomes[1].report();
        assert!(b.starts_with("scenario b ... FAILED ("), "{b}");
        assert!(b.contains("\n    it broke\n    second line\n"), "{b}");
        assert_eq!(
            outcomes[2].result,
            Err("the scenario panicked: kaboom".into())
        );
    }

    #[test]
    fn passing_report_shows_notes() {
        let outcome = Outcome {
            name: "s",
            result: Ok(()),
            elapsed: Duration::from_millis(500),
            logs: Vec::new(),
            notes: vec!["share d1: 25.0%".into()],
        };
        assert_eq!(
            outcome.report(),
            "scenario s ... ok (0.5s)\n    share d1: 25.0%\n"
        );
    }

    #[test]
    fn failure_report_shows_logs() {
        let outcome = Outcome {
            name: "s",
            result: Err("bad".into()),
            elapsed: Duration::from_millis(1500),
            logs: vec![MachineLog {
                machine: "s".into(),
                serial: "one\ntwo".into(),
                stderr: "warn\n".into(),
                tolerated: Vec::new(),
            }],
            notes: vec!["measured 42".into()],
        };
        let report = outcome.report();
        assert!(
            !report.contains("measured 42"),
            "notes belong to passing reports: {report}"
        );
        assert!(
            report.starts_with("scenario s ... FAILED (1.5s)\n    bad\n"),
            "{report}"
        );
        assert!(
            report.contains("    | one\n    | two\n    (no newline at the end)\n"),
            "{report}"
        );
        assert!(
            report.contains("QEMU standard error of s ----\n    | warn\n"),
            "{report}"
        );
    }

    fn log(serial: &str, tolerated: &[&'static str]) -> MachineLog {
        MachineLog {
            machine: "m".into(),
            serial: serial.into(),
            stderr: String::new(),
            tolerated: tolerated.to_vec(),
        }
    }

    #[test]
    fn failure_lines_fail_a_passing_scenario() {
        let clean = log(
            "Xenia 0.1.0\nframe table check: consistent (9 frames)\n",
            &[],
        );
        assert_eq!(
            reject_failure_lines(Ok(()), std::slice::from_ref(&clean)),
            Ok(())
        );
        let bad = log(
            "Xenia 0.1.0\n(d0) Test result: SUCCESS\nerror: frame table check: INCONSISTENT: x\n",
            &[],
        );
        let err = reject_failure_lines(Ok(()), &[clean.clone(), bad.clone()]).unwrap_err();
        assert!(
            err.starts_with("the serial log of m shows a hypervisor failure"),
            "{err}"
        );
        assert!(
            err.contains("line 3: \"error: frame table check: INCONSISTENT: x\""),
            "{err}"
        );
        // A scenario's own failure keeps its message first.
        let err = reject_failure_lines(Err("timed out".into()), &[bad]).unwrap_err();
        assert!(err.starts_with("timed out\nthe serial log of m"), "{err}");
        // A scenario that provokes a fatal exception declares it, and only that.
        let selftest = "fatal exception: vector 6 (#UD), error code 0x0, in the hypervisor\n";
        let tolerant = log(selftest, &[contract::FATAL_EXCEPTION_MARK]);
        assert_eq!(reject_failure_lines(Ok(()), &[tolerant]), Ok(()));
        assert!(reject_failure_lines(Ok(()), &[log(selftest, &[])]).is_err());
        let panicked = log(
            &format!("{selftest}hypervisor panic: twice\n"),
            &[contract::FATAL_EXCEPTION_MARK],
        );
        assert!(reject_failure_lines(Ok(()), &[panicked]).is_err());
    }

    #[test]
    fn tolerating_needs_a_rejected_mark() {
        let m = Context::new(&Workspace::new("/w"), "s").machine();
        let m = m.tolerate(contract::FATAL_EXCEPTION_MARK);
        let caught = panic::catch_unwind(AssertUnwindSafe(|| m.tolerate("warning: ")));
        assert!(caught.is_err());
    }

    #[test]
    fn machines_are_named_after_the_scenario() {
        let ctx = Context::new(&Workspace::new("/w"), "boot_x");
        assert_eq!(ctx.machine().name(), "boot_x");
        assert_eq!(ctx.machine().name(), "boot_x-2");
    }
}
