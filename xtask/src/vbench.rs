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
    /// No goal (measured for the record).
    None,
}

impl Goal {
    fn text(self) -> String {
        match self {
            Goal::Ratio(r) => format!("<= {r}x"),
            Goal::PvAtMost(n) => format!("pv <= {n}"),
            Goal::PvAtLeast(n) => format!("pv >= {n}"),
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
            goal: r.goal,
        })
        .collect()
}

fn figure(v: Option<u64>) -> String {
    v.map_or_else(|| "-".into(), |v| v.to_string())
}

/// The table as printed.
pub fn render(rows: &[Measured]) -> String {
    let mut out = format!(
        "{:<16} {:>14} {:>14} {:>8}  {:<10} {}\n",
        "benchmark", "native", "pv", "ratio", "goal", "met"
    );
    for r in rows {
        let _ = writeln!(
            out,
            "{:<16} {:>14} {:>14} {:>8}  {:<10} {}",
            r.name,
            figure(r.native),
            figure(r.pv),
            r.ratio().map_or_else(|| "-".into(), |x| format!("{x:.2}")),
            r.goal.text(),
            match r.met() {
                Some(true) => "met",
                Some(false) => "NOT met",
                None => "-",
            }
        );
    }
    for row in ROWS {
        let _ = writeln!(out, "  {}: {} ({})", row.name, row.about, row.unit);
    }
    out
}

/// The table as JSON: an array of `{name, unit, native, pv, ratio, goal, met}` (missing
/// figures are `null`).
pub fn json(rows: &[Measured]) -> String {
    let num = |v: Option<u64>| v.map_or_else(|| "null".into(), |v| v.to_string());
    let items: Vec<String> = rows
        .iter()
        .map(|r| {
            format!(
                "  {{\"name\": \"{}\", \"unit\": \"{}\", \"native\": {}, \"pv\": {}, \
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
        })
        .collect();
    format!("[\n{}\n]\n", items.join(",\n"))
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
/// `create`, the rest by `density`. Their figures are integers like the kernel rows', so
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
                goal: r.goal,
            })
        })
        .collect()
}

/// The `"name"` of one object line of [`json`]'s output.
fn json_name(line: &str) -> Option<&str> {
    let rest = line.trim_start().strip_prefix("{\"name\": \"")?;
    rest.split_once('"').map(|(name, _)| name)
}

/// `target/xenia/bench.json` after a bench: the rows `new` (in [`json`]'s format) replace
/// the rows of the same name in `old` (the file as it was, possibly written by another
/// bench, possibly with more columns), and every other row of `old` stays as it was; rows
/// in the order of [`ROWS`] then [`XENIA_ROWS`], rows of other names after them. So the
/// benches, run separately or together, leave one file with every row measured.
pub fn merge_json(old: &str, new: &str) -> String {
    let mut rows: BTreeMap<String, String> = BTreeMap::new();
    for text in [old, new] {
        for line in text.lines() {
            if let Some(name) = json_name(line) {
                rows.insert(
                    name.to_string(),
                    line.trim_end().trim_end_matches(',').to_string(),
                );
            }
        }
    }
    let order = |name: &str| {
        ROWS.iter()
            .chain(XENIA_ROWS)
            .position(|r| r.name == name)
            .unwrap_or(usize::MAX)
    };
    let mut lines: Vec<(usize, String, String)> = rows
        .into_iter()
        .map(|(name, line)| (order(&name), name, line))
        .collect();
    lines.sort();
    let items: Vec<String> = lines.into_iter().map(|(_, _, line)| line).collect();
    format!("[\n{}\n]\n", items.join(",\n"))
}

/// Writes `rows` into `target/xenia/bench.json`, keeping the rows other benches wrote
/// ([`merge_json`]).
pub fn write_merged(ws: &Workspace, rows: &[Measured]) -> Result<(), String> {
    let path = ws.artifact_dir().join("bench.json");
    let old = std::fs::read_to_string(&path).unwrap_or_default();
    std::fs::write(&path, merge_json(&old, &json(rows)))
        .map_err(|e| format!("cannot write {}: {e}", path.display()))
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

        // The kernel bench's file, then density's rows, then create's: every row kept.
        let kernel = json(&table(
            &parse("bench null_call 4\nbench int80 75\n"),
            &parse("bench null_call 782\nbench int80 283\n"),
        ));
        let density = json(&xenia_table(&BTreeMap::from([("density_domains", 1130)])));
        let merged = merge_json(&kernel, &density);
        assert_eq!(
            merged.matches("\"name\"").count(),
            ROWS.len() + 1,
            "{merged}"
        );
        let create = json(&xenia_table(&BTreeMap::from([
            ("create_first", 4200),
            ("density_domains", 1200),
        ])));
        let merged = merge_json(&merged, &create);
        assert_eq!(
            merged.matches("\"name\"").count(),
            ROWS.len() + 2,
            "{merged}"
        );
        assert!(merged.contains("\"pv\": 1200") && !merged.contains("\"pv\": 1130"));
        assert!(
            merged.contains("\"pv\": 782"),
            "the kernel rows stay: {merged}"
        );
        // Kernel rows first, in their order, then Xenia's; valid JSON punctuation.
        let null_call = merged.find("null_call").unwrap();
        let first = merged.find("create_first").unwrap();
        let dens_at = merged.find("density_domains").unwrap();
        assert!(null_call < first && first < dens_at, "{merged}");
        assert!(
            merged.starts_with("[\n  {") && merged.ends_with("}\n]\n"),
            "{merged}"
        );
        assert_eq!(merged.matches("},\n").count(), ROWS.len() + 1);
        // Columns another bench added stay as written.
        let other = "[\n  {\"name\": \"int80\", \"xen\": 7}\n]\n";
        assert!(merge_json(other, &density).contains("\"xen\": 7"));
        assert_eq!(merge_json("", ""), "[\n\n]\n");
    }
}
