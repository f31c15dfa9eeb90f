//! `cargo xtask bench --only kernel`: the cost of virtualization (issue 13), one table.
//!
//! The benchmark kernel runs twice on the same emulated machine (`-cpu max`, 1 GiB,
//! `-icount shift=0,sleep=off`, where the TSC counts instructions): `bench-native` booted by
//! GRUB on the bare machine (ring 0; `tests/guests/bench-native`) and `bench-pv` as Xenia's
//! dom0 (ring 1; `tests/guests/bench`). Both run the same ring-3 bodies (one assembly file,
//! `tests/guests/bench/bodies/user.s`) and print `bench <row> <instructions per operation>`
//! lines; this module puts them side by side with the goals of the issue, prints the table
//! and writes it to `target/xenia/bench.json` (one object per row: `name`, `unit`,
//! `native`, `pv`, `ratio`, `goal`, `met`). It measures; it does not judge: a missed goal is
//! a row that says so, not a failure.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use xenia_tests::Workspace;
use xenia_tests::benchk;
use xenia_tests::machine::Machine;

/// The command line both kernels get.
pub const KERNEL_ARGS: &str = "iters=10000 primes=2000000 runs=5";

/// Bound for one kernel's whole run (icount slows the emulator down; the primes row alone
/// is a few billion instructions).
const RUN: Duration = Duration::from_secs(1800);

/// What a row's goal asks.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Goal {
    /// pv / native at most this.
    Ratio(f64),
    /// pv at most this many instructions.
    PvAtMost(f64),
    /// pv at least this (a count that should be high: density).
    PvAtLeast(f64),
    /// pv at most Xen's figure (the `xen` column) and, when given, pv / native at most this
    /// (the peer rows of `cargo xtask bench --peer xen`).
    AtMostXen(Option<f64>),
    /// No goal (measured for the record).
    None,
}

impl Goal {
    fn text(self) -> String {
        match self {
            Goal::Ratio(r) => format!("<= {r}x"),
            Goal::PvAtMost(n) => format!("pv <= {n}"),
            Goal::PvAtLeast(n) => format!("pv >= {n}"),
            Goal::AtMostXen(None) => "pv <= xen".into(),
            Goal::AtMostXen(Some(r)) => format!("pv <= xen, <= {r}x"),
            Goal::None => "-".into(),
        }
    }
}

/// One row of the table: its name in the kernels' output, unit, goal, and what it is.
pub struct Row {
    pub name: &'static str,
    pub unit: &'static str,
    pub goal: Goal,
    /// Printed under the table.
    pub about: &'static str,
}

/// The rows, in the order printed (the table; creation and density are the
/// `create` bench and issue 13's density work).
pub const ROWS: &[Row] = &[
    Row {
        name: "null_call",
        unit: "instructions/call",
        goal: Goal::PvAtMost(150.0),
        about: "null trap (native int to ring 0) / null hypercall (xen_version)",
    },
    Row {
        name: "int80",
        unit: "instructions/call",
        goal: Goal::Ratio(1.05),
        about: "system call from ring 3 through int 0x80",
    },
    Row {
        name: "syscall",
        unit: "instructions/call",
        goal: Goal::None,
        about: "SYSCALL round trip from ring 3 (pv: bounced by the hypervisor)",
    },
    Row {
        name: "page_fault",
        unit: "instructions/fault",
        goal: Goal::Ratio(1.5),
        about: "ring-3 touch of an absent page, handler maps it, return",
    },
    Row {
        name: "pt_batch",
        unit: "instructions/batch",
        goal: Goal::Ratio(2.0),
        about: "512 PTE writes and a flush (pv: one mmu_update)",
    },
    Row {
        name: "process_switch",
        unit: "instructions/switch",
        goal: Goal::Ratio(1.5),
        about: "address-space switch through a system call (pv: MMUEXT_NEW_BASEPTR)",
    },
    Row {
        name: "timer",
        unit: "instructions/event",
        goal: Goal::Ratio(2.0),
        about: "timer armed to fire at once, until its handler runs (pv: VIRQ_TIMER upcall)",
    },
    Row {
        name: "primes",
        unit: "instructions/run",
        goal: Goal::Ratio(1.01),
        about: "primes below 2,000,000 by trial division in ring 3",
    },
];

/// The `bench <name> <value>` figures of a kernel's output.
pub fn parse(out: &str) -> BTreeMap<String, u64> {
    xenia_tests::benchk::figures(out)
}

/// A row as measured.
#[derive(Debug, PartialEq)]
pub struct Measured {
    pub name: &'static str,
    pub unit: &'static str,
    pub native: Option<u64>,
    pub pv: Option<u64>,
    /// Xen's figure, for the rows measured under Xen too (the peer rows).
    pub xen: Option<u64>,
    pub goal: Goal,
}

impl Measured {
    /// pv / native, when both exist and native is not zero.
    pub fn ratio(&self) -> Option<f64> {
        match (self.native, self.pv) {
            (Some(n), Some(p)) if n > 0 => Some(p as f64 / n as f64),
            _ => None,
        }
    }

    /// Whether the goal is met (`None`: no goal, or a figure is missing).
    pub fn met(&self) -> Option<bool> {
        match self.goal {
            Goal::Ratio(r) => self.ratio().map(|x| x <= r),
            Goal::PvAtMost(n) => self.pv.map(|p| p as f64 <= n),
            Goal::PvAtLeast(n) => self.pv.map(|p| p as f64 >= n),
            Goal::AtMostXen(ratio) => {
                let below_xen = self.pv? <= self.xen?;
                match ratio {
                    Some(r) => Some(below_xen && self.ratio()? <= r),
                    None => Some(below_xen),
                }
            }
            Goal::None => None,
        }
    }
}

/// The rows with both kernels' figures.
pub fn table(native: &BTreeMap<String, u64>, pv: &BTreeMap<String, u64>) -> Vec<Measured> {
    ROWS.iter()
        .map(|r| Measured {
            name: r.name,
            unit: r.unit,
            native: native.get(r.name).copied(),
            pv: pv.get(r.name).copied(),
            xen: None,
            goal: r.goal,
        })
        .collect()
}

fn figure(v: Option<u64>) -> String {
    v.map_or_else(|| "-".into(), |v| v.to_string())
}

/// The table as printed; with a `xen` column when a row has Xen's figure.
pub fn render(rows: &[Measured]) -> String {
    let with_xen = rows.iter().any(|r| r.xen.is_some());
    let xen = |v: &str| {
        if with_xen {
            format!(" {v:>14}")
        } else {
            String::new()
        }
    };
    let goal_width = rows
        .iter()
        .map(|r| r.goal.text().len())
        .fold(10, usize::max);
    let mut out = format!(
        "{:<20} {:>14} {:>14}{} {:>8}  {:<goal_width$} {}\n",
        "benchmark",
        "native",
        "pv",
        xen("xen"),
        "ratio",
        "goal",
        "met"
    );
    for r in rows {
        let _ = writeln!(
            out,
            "{:<20} {:>14} {:>14}{} {:>8}  {:<goal_width$} {}",
            r.name,
            figure(r.native),
            figure(r.pv),
            xen(&figure(r.xen)),
            r.ratio().map_or_else(|| "-".into(), |x| format!("{x:.2}")),
            r.goal.text(),
            match r.met() {
                Some(true) => "met",
                Some(false) => "NOT met",
                None => "-",
            }
        );
    }
    for row in ROWS
        .iter()
        .filter(|row| rows.iter().any(|r| r.name == row.name))
    {
        let _ = writeln!(out, "  {}: {} ({})", row.name, row.about, row.unit);
    }
    out
}

/// The table as JSON: an array of `{name, unit, native, pv, ratio, goal, met}` (missing
/// figures are `null`), with `xen` after `pv` in the rows that have Xen's figure.
pub fn json(rows: &[Measured]) -> String {
    merge_json("", rows)
}

/// One row's JSON object, on one line.
fn json_item(r: &Measured) -> String {
    let num = |v: Option<u64>| v.map_or_else(|| "null".into(), |v| v.to_string());
    let xen = r
        .xen
        .map_or_else(String::new, |x| format!(" \"xen\": {x},"));
    format!(
        "  {{\"name\": \"{}\", \"unit\": \"{}\", \"native\": {}, \"pv\": {},{xen} \
         \"ratio\": {}, \"goal\": \"{}\", \"met\": {}}}",
        r.name,
        r.unit,
        num(r.native),
        num(r.pv),
        r.ratio()
            .map_or_else(|| "null".into(), |x| format!("{x:.4}")),
        r.goal.text(),
        r.met().map_or_else(|| "null".into(), |m| m.to_string())
    )
}

/// `rows` merged into `old`, a table [`json`] wrote (one row an object a line): a row
/// measured now replaces the old row of its name, in its place; the old rows not measured
/// now stay; new rows follow. So benches run one at a time build up one `bench.json`.
pub fn merge_json(old: &str, rows: &[Measured]) -> String {
    const NAME: &str = "{\"name\": \"";
    let mut items: Vec<(String, String)> = old
        .lines()
        .filter_map(|l| {
            let rest = l.trim().strip_prefix(NAME)?;
            let name = &rest[..rest.find('"')?];
            Some((
                name.to_string(),
                l.trim_end().trim_end_matches(',').to_string(),
            ))
        })
        .collect();
    for r in rows {
        let item = json_item(r);
        match items.iter_mut().find(|(name, _)| name == r.name) {
            Some(old) => old.1 = item,
            None => items.push((r.name.to_string(), item)),
        }
    }
    let items: Vec<String> = items.into_iter().map(|(_, item)| item).collect();
    format!("[\n{}\n]\n", items.join(",\n"))
}

/// Writes `rows` into `target/xenia/bench.json`, merged with the rows already there (see
/// [`merge_json`]); returns its path.
pub fn write_json(ws: &Workspace, rows: &[Measured]) -> Result<std::path::PathBuf, String> {
    let path = ws.artifact_dir().join("bench.json");
    let old = match std::fs::read_to_string(&path) {
        Ok(old) => old,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
    };
    let text = if old.is_empty() {
        json(rows)
    } else {
        merge_json(&old, rows)
    };
    std::fs::write(&path, text).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    Ok(path)
}

/// The native kernel's output, `-icount shift=0,sleep=off`.
pub fn native_kernel(ws: &Workspace, args: &str) -> Result<String, String> {
    let mut machine = Machine::new(ws, "bench-native");
    for a in benchk::ICOUNT {
        machine = machine.qemu_arg(a);
    }
    benchk::run_native(ws, machine, args, RUN)
}

/// The pv kernel's output (dom0's lines), `-icount shift=0,sleep=off`.
pub fn pv_kernel(ws: &Workspace, args: &str) -> Result<String, String> {
    let mut machine = Machine::new(ws, "bench-pv");
    for a in benchk::ICOUNT {
        machine = machine.qemu_arg(a);
    }
    benchk::run_pv(ws, machine, args, RUN)
}

// ---- Xenia-only rows: domain creation (the `create` bench) and density (`density`). ----

/// Rows only Xenia has (no native column), each filled by its own bench: `create_*` by
/// `create`, the rest by `density`; like every bench's rows they go to `bench.json` through
/// [`write_json`], merged with the rows already there. Their figures are integers like the kernel rows', so
/// creation is in microseconds of virtual time (one instruction a nanosecond) and the ratio
/// in thousandths.
pub const XENIA_ROWS: &[Row] = &[
    Row {
        name: "create_first",
        unit: "us virtual",
        goal: Goal::PvAtMost(5000.0),
        about: "`time xl create` of the 1st 8 MiB hello domain (goal: 5 ms)",
    },
    Row {
        name: "create_ratio",
        unit: "thousandths",
        goal: Goal::PvAtMost(1200.0),
        about: "`xl create` of the 1000th domain over the 1st, x1000 (goal: 1.2)",
    },
    Row {
        name: "density_domains",
        unit: "domains in 1 GiB",
        goal: Goal::PvAtLeast(1000.0),
        about: "minimal domUs (testguest idle) running at once in a 1 GiB machine",
    },
    Row {
        name: "hv_per_domain",
        unit: "KiB",
        goal: Goal::PvAtMost(16.0),
        about: "hypervisor memory per minimal domain beyond its own pages (heap and frames)",
    },
    Row {
        name: "smallest_domain",
        unit: "KiB",
        goal: Goal::None,
        about: "the least memory a minimal domU (testguest idle) boots in",
    },
];

/// The Xenia-only rows whose figures `pv` holds (the others left out).
pub fn xenia_table(pv: &BTreeMap<&str, u64>) -> Vec<Measured> {
    XENIA_ROWS
        .iter()
        .filter_map(|r| {
            pv.get(r.name).map(|&v| Measured {
                name: r.name,
                unit: r.unit,
                native: None,
                pv: Some(v),
                xen: None,
                goal: r.goal,
            })
        })
        .collect()
}

/// The Xenia-only rows as printed (the table and what each row is).
pub fn render_xenia(rows: &[Measured]) -> String {
    let table = render(rows);
    // `render` explains the kernel rows; these rows get their own lines.
    let mut out: String = table
        .lines()
        .take(rows.len() + 1)
        .map(|l| format!("{l}\n"))
        .collect();
    for row in XENIA_ROWS
        .iter()
        .filter(|r| rows.iter().any(|m| m.name == r.name))
    {
        let _ = writeln!(out, "  {}: {} ({})", row.name, row.about, row.unit);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn figures_parse_and_rows_judge() {
        let native =
            parse("bench env native\nbench null_call 60\nbench int80 100\nbench timer failed\n");
        let pv = parse("bench env pv\nbench null_call 900\nbench int80 104\nbench primes 7\n");
        assert_eq!(native.get("null_call"), Some(&60));
        assert!(!native.contains_key("timer"), "failed rows have no figure");
        let rows = table(&native, &pv);
        let row = |n: &str| rows.iter().find(|r| r.name == n).unwrap();
        assert_eq!(row("null_call").met(), Some(false), "900 > 150");
        assert_eq!(row("int80").met(), Some(true), "1.04 <= 1.05");
        assert_eq!(row("primes").ratio(), None, "no native figure");
        assert_eq!(row("syscall").met(), None);
        let text = render(&rows);
        assert!(text.contains("NOT met") && text.contains("int80"), "{text}");
        let j = json(&rows);
        assert!(j.contains("\"name\": \"int80\", \"unit\": \"instructions/call\", \"native\": 100, \"pv\": 104, \"ratio\": 1.0400"), "{j}");
        assert!(j.contains("\"native\": null"), "{j}");
        assert_eq!(j.matches("\"name\"").count(), ROWS.len());
    }

    fn xen_row(name: &'static str, native: u64, pv: u64, xen: Option<u64>, goal: Goal) -> Measured {
        Measured {
            name,
            unit: "instructions/call",
            native: Some(native),
            pv: Some(pv),
            xen,
            goal,
        }
    }

    #[test]
    fn xen_column_and_goal() {
        let rows = [
            xen_row("a", 300, 400, Some(900), Goal::AtMostXen(Some(1.5))),
            xen_row("b", 300, 1000, Some(900), Goal::AtMostXen(None)),
            xen_row("c", 300, 400, None, Goal::AtMostXen(None)),
        ];
        assert_eq!(rows[0].met(), Some(true), "400 <= 900 and 1.33x <= 1.5x");
        assert_eq!(rows[1].met(), Some(false), "1000 > 900");
        assert_eq!(rows[2].met(), None, "no xen figure");
        let five = xen_row("d", 300, 500, Some(900), Goal::AtMostXen(Some(1.5)));
        assert_eq!(five.met(), Some(false), "1.67x native");
        let text = render(&rows);
        let header = text.lines().next().unwrap();
        assert!(
            header.contains(" xen ") && header.contains(" pv "),
            "{text}"
        );
        assert!(text.contains("pv <= xen, <= 1.5x"), "{text}");
        let a = text.lines().find(|l| l.starts_with("a ")).unwrap();
        assert_eq!(
            a.split_whitespace().collect::<Vec<_>>()[..5],
            ["a", "300", "400", "900", "1.33"]
        );
        let j = json(&rows);
        assert!(
            j.contains("\"pv\": 400, \"xen\": 900, \"ratio\": 1.3333"),
            "{j}"
        );
        assert!(
            j.contains("\"met\": true") && j.contains("\"met\": false"),
            "{j}"
        );
        assert_eq!(j.matches("\"xen\"").count(), 2, "only where measured: {j}");
        // Without a Xen figure anywhere, no xen column.
        assert!(!render(&rows[2..]).lines().next().unwrap().contains("xen"));
    }

    #[test]
    fn json_merges_with_the_rows_already_written() {
        let kernel = [xen_row("int80", 100, 104, None, Goal::Ratio(1.05))];
        let peer = [
            xen_row("peer_a", 1, 2, Some(3), Goal::AtMostXen(None)),
            xen_row("peer_b", 1, 2, Some(3), Goal::AtMostXen(None)),
        ];
        let old = json(&kernel);
        let merged = merge_json(&old, &peer);
        let names: Vec<&str> = merged.lines().filter_map(|l| l.split('"').nth(3)).collect();
        assert_eq!(names, ["int80", "peer_a", "peer_b"], "{merged}");
        assert!(
            merged.starts_with("[\n") && merged.ends_with("\n]\n"),
            "{merged}"
        );
        assert_eq!(merged.matches("},\n").count(), 2, "{merged}");
        // Measured again: replaced in place, the others kept.
        let again = merge_json(
            &merged,
            &[xen_row("int80", 100, 99, None, Goal::Ratio(1.05))],
        );
        let names: Vec<&str> = again.lines().filter_map(|l| l.split('"').nth(3)).collect();
        assert_eq!(names, ["int80", "peer_a", "peer_b"], "{again}");
        assert!(
            again.contains("\"pv\": 99,") && !again.contains("\"pv\": 104,"),
            "{again}"
        );
        assert_eq!(merge_json("", &kernel), json(&kernel));
    }

    #[test]
    fn the_table_has_every_row_the_kernels_print() {
        let names: Vec<&str> = ROWS.iter().map(|r| r.name).collect();
        assert_eq!(names, benchk::ROWS);
    }

    #[test]
    fn xenia_rows_judge_and_merge() {
        let pv = BTreeMap::from([
            ("create_first", 4200),
            ("create_ratio", 1010),
            ("density_domains", 1130),
            ("hv_per_domain", 9),
            ("smallest_domain", 792),
        ]);
        let rows = xenia_table(&pv);
        assert_eq!(rows.len(), XENIA_ROWS.len());
        assert!(
            rows.iter()
                .all(|r| r.native.is_none() && r.ratio().is_none())
        );
        let met = |n: &str| rows.iter().find(|r| r.name == n).unwrap().met();
        assert_eq!(met("create_first"), Some(true));
        assert_eq!(met("density_domains"), Some(true));
        assert_eq!(met("smallest_domain"), None);
        let few = xenia_table(&BTreeMap::from([("density_domains", 999)]));
        assert_eq!(few.len(), 1, "rows without a figure are left out");
        assert_eq!(few[0].met(), Some(false), "999 < 1000");
        assert_eq!(Goal::PvAtLeast(1000.0).text(), "pv >= 1000");
        let text = render_xenia(&rows);
        assert!(
            text.contains("density_domains") && text.contains("domains in 1 GiB"),
            "{text}"
        );
        assert!(!text.contains("null_call"), "{text}");

        // Merged into the file the kernel bench wrote, after its rows.
        let kernel = json(&table(
            &parse("bench null_call 4\nbench int80 75\n"),
            &parse("bench null_call 782\nbench int80 283\n"),
        ));
        let merged = merge_json(
            &kernel,
            &xenia_table(&BTreeMap::from([("density_domains", 1130)])),
        );
        let merged = merge_json(
            &merged,
            &xenia_table(&BTreeMap::from([("density_domains", 1200)])),
        );
        assert!(merged.contains("\"pv\": 1200") && !merged.contains("\"pv\": 1130"));
        assert!(merged.find("null_call").unwrap() < merged.find("density_domains").unwrap());
    }
}
