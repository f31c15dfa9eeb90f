//! `xentop` and `xl top`: Xen's table of domains, refreshed every few seconds, as Xen
//! 4.17's `tools/xentop/xentop.c` prints it. Every line here is rendered from xentop's
//! printf formats: the summary (time, version, domain counts by state, memory and CPUs
//! with their MHz), the header of its nineteen columns and one row per domain (NAME STATE
//! CPU(sec) CPU(%) MEM(k) MEM(%) MAXMEM(k) MAXMEM(%) VCPUS NETS NETTX(k) NETRX(k) VBDS
//! VBD_OO VBD_RD VBD_WR VBD_RSECT VBD_WSECT SSID), with `-v`'s vCPU lines under it.
//!
//! Xenia's domains have no networks and no block devices yet, so those columns are 0 (what
//! xentop prints for a domain without any) and `-n`/`-x` add no lines. CPU% is the CPU
//! time a domain used between two samples over the time between them, so a domain with
//! two busy vCPUs shows 200%; the first sample has no earlier one and shows 0.0.
//!
//! The command line is in [`args`], the keys and the screen in [`keys`], and the loop over
//! dom0's devices in [`live`]. `xl top` runs the same code (Xen's execs `xentop`).

pub mod args;
pub mod keys;
pub mod live;

use std::cmp::Ordering;

use dom0_tools::control::DomainInfo;
use dom0_tools::xlfmt::display_name;
use guest_abi::sched::SHUTDOWN_CRASH;

/// Bytes in a KiB, for xentop's `/1024`.
const KIB: u64 = 1024;
/// The page size libxenstat multiplies the page counts with.
const PAGE_SIZE: u64 = 4096;
/// `max_pages` of a domain without a limit: libxenstat compares with C's `UINT_MAX`.
const NO_LIMIT_PAGES: u64 = u32::MAX as u64;

/// One domain of a [`Sample`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Domain {
    /// Its name (`Domain-0` for dom0, as xenstore has it).
    pub name: String,
    /// What `getdomaininfolist` says of it.
    pub info: DomainInfo,
    /// Per vCPU id, up to [`Domain::num_vcpus`]: its CPU time in nanoseconds when it is
    /// online, `None` when it is offline or could not be read. Read only for `-v`.
    pub vcpus: Vec<Option<u64>>,
}

impl Domain {
    /// A domain as the tests and the loop build it, without vCPU times.
    pub fn new(name: impl Into<String>, info: DomainInfo) -> Domain {
        Domain {
            name: name.into(),
            info,
            vcpus: Vec::new(),
        }
    }

    /// libxenstat's `num_vcpus`: `max_vcpu_id + 1` (0 without vCPUs, as C's unsigned
    /// arithmetic makes it).
    pub fn num_vcpus(&self) -> u32 {
        self.info.max_vcpu_id.wrapping_add(1)
    }

    fn cur_mem(&self) -> u64 {
        self.info.tot_pages.saturating_mul(PAGE_SIZE)
    }

    /// libxenstat's `max_mem`: `None` for "no limit".
    fn max_mem(&self) -> Option<u64> {
        (self.info.max_pages != NO_LIMIT_PAGES)
            .then(|| self.info.max_pages.saturating_mul(PAGE_SIZE))
    }

    fn crashed(&self) -> bool {
        self.info.shutdown == Some(SHUTDOWN_CRASH)
    }

    fn shut_down(&self) -> bool {
        self.info.shutdown.is_some_and(|r| r != SHUTDOWN_CRASH)
    }

    /// xentop's state flags in its order: dying, shutdown, blocked, crashed, paused,
    /// running.
    fn flags(&self) -> [(bool, char); 6] {
        let d = &self.info;
        [
            (d.dying, 'd'),
            (self.shut_down(), 's'),
            (d.blocked, 'b'),
            (self.crashed(), 'c'),
            (d.paused, 'p'),
            (d.running, 'r'),
        ]
    }
}

/// One sample of the machine: when it was taken and every domain's state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sample {
    /// When the sample was taken, in nanoseconds of any monotonic clock.
    pub at_ns: u64,
    /// The wall-clock time of the sample, in seconds since 1970 (for the summary).
    pub wall_s: u64,
    /// The hypervisor's version (`xl info`'s `xen_version`).
    pub version: String,
    /// The host's memory in pages of 4 KiB.
    pub total_pages: u64,
    /// The host's free memory in pages.
    pub free_pages: u64,
    /// Number of pCPUs.
    pub nr_cpus: u32,
    /// The CPUs' frequency in kHz (physinfo's `cpu_khz`).
    pub cpu_khz: u64,
    /// Every domain, in id order.
    pub domains: Vec<Domain>,
}

/// xentop's STATE column: `d`ying, `s`hutdown, `b`locked, `c`rashed, `p`aused,
/// `r`unning, each or `-` (xentop's order, not `xl list`'s).
pub fn state(d: &Domain) -> String {
    d.flags()
        .iter()
        .map(|&(on, c)| if on { c } else { '-' })
        .collect()
}

/// CPU use of `d` between `prev` and `now` in percent, xentop's `get_cpu_pct`: 0 without
/// a previous sample of the same domain. Xenia also gives 0 when the id now names another
/// domain (another UUID) or the counter went back, where xentop's unsigned subtraction
/// would show a huge number.
pub fn cpu_pct(prev: Option<&Sample>, now: &Sample, d: &Domain) -> f64 {
    let Some(prev) = prev else { return 0.0 };
    let Some(before) = prev
        .domains
        .iter()
        .find(|o| o.info.dom == d.info.dom && o.info.handle == d.info.handle)
    else {
        return 0.0;
    };
    let us_elapsed = now.at_ns.saturating_sub(prev.at_ns) as f64 / 1000.0;
    if us_elapsed <= 0.0 {
        return 0.0;
    }
    let used = d.info.cpu_time_ns.saturating_sub(before.info.cpu_time_ns);
    (used as f64 / 10.0) / us_elapsed
}

/// The time of day `HH:MM:SS` of `wall_s` (xentop's `strftime("%H:%M:%S", localtime())`;
/// dom0 has no time zone, so local time is UTC, as musl's `localtime` without `TZ`).
pub fn time_of_day(wall_s: u64) -> String {
    let s = wall_s % 86_400;
    format!("{:02}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
}

/// xentop's summary (`do_summary`): three lines, shown above the table except in batch
/// mode.
pub fn summary(now: &Sample) -> String {
    // Each domain counts once, under the first of these it is (xentop's `else if` chain).
    let (mut run, mut block, mut pause, mut crash, mut dying, mut shutdown) = (0, 0, 0, 0, 0, 0);
    for d in &now.domains {
        let i = &d.info;
        if i.running {
            run += 1;
        } else if i.blocked {
            block += 1;
        } else if i.paused {
            pause += 1;
        } else if d.shut_down() {
            shutdown += 1;
        } else if d.crashed() {
            crash += 1;
        } else if i.dying {
            dying += 1;
        }
    }
    let tot = now.total_pages.saturating_mul(PAGE_SIZE);
    let free = now.free_pages.saturating_mul(PAGE_SIZE);
    format!(
        "xentop - {}   Xen {}\n\
         {} domains: {run} running, {block} blocked, {pause} paused, {crash} crashed, \
         {dying} dying, {shutdown} shutdown \n\
         Mem: {}k total, {}k used, {}k free    CPUs: {} @ {}MHz\n",
        time_of_day(now.wall_s),
        now.version,
        now.domains.len(),
        tot / KIB,
        tot.saturating_sub(free) / KIB,
        free / KIB,
        now.nr_cpus,
        now.cpu_khz.saturating_mul(1000) / 1_000_000,
    )
}

/// xentop's columns: header and default width (`fields[]`), in its order. The sort key
/// (`s`) is an index into this table.
pub const FIELDS: [(&str, usize); 19] = [
    ("NAME", 10),
    ("STATE", 6),
    ("CPU(sec)", 10),
    ("CPU(%)", 6),
    ("MEM(k)", 10),
    ("MEM(%)", 6),
    ("MAXMEM(k)", 10),
    ("MAXMEM(%)", 9),
    ("VCPUS", 5),
    ("NETS", 4),
    ("NETTX(k)", 8),
    ("NETRX(k)", 8),
    ("VBDS", 4),
    ("VBD_OO", 8),
    ("VBD_RD", 8),
    ("VBD_WR", 8),
    ("VBD_RSECT", 10),
    ("VBD_WSECT", 10),
    ("SSID", 4),
];

/// Index of the NAME column in [`FIELDS`].
const NAME: usize = 0;

/// How a table is drawn: which column is the sort key, whether names are cut, and
/// whether the screen's attributes (reverse video for the header, bold for the sort
/// column) are wanted, which batch mode never prints.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Table {
    /// The index in [`FIELDS`] of the sort column.
    pub sort: usize,
    /// `-f`: full names, the NAME column as wide as the longest.
    pub full_name: bool,
    /// `-r`: the header again above each domain.
    pub repeat_header: bool,
    /// `-v`: each domain's vCPU times under its row.
    pub vcpus: bool,
    /// Terminal attributes (the interactive screen).
    pub attributes: bool,
}

const REVERSE: &str = "\x1b[7m";
const BOLD: &str = "\x1b[1m";
const NOT_BOLD: &str = "\x1b[22m";
const PLAIN: &str = "\x1b[0m";

/// Widths of the columns for these domains: the defaults, and with `-f` the NAME column
/// widened to the longest name (`adjust_field_widths`; the network and block columns it
/// also widens stay at their default, their values being 0).
fn widths(table: &Table, domains: &[&Domain]) -> [usize; 19] {
    let mut w = FIELDS.map(|(_, w)| w);
    if table.full_name {
        for d in domains {
            w[NAME] = w[NAME].max(display_name(d.info.dom, &d.name).len());
        }
    }
    w
}

/// Joins cells into one line as `do_header`/`do_domain` print them: one space between,
/// the sort column in bold on the screen.
fn line(table: &Table, cells: impl Iterator<Item = String>) -> String {
    let mut out = String::new();
    for (i, cell) in cells.enumerate() {
        if i != 0 {
            out.push(' ');
        }
        if table.attributes && i == table.sort {
            out += BOLD;
            out += &cell;
            out += NOT_BOLD;
        } else {
            out += &cell;
        }
    }
    out.push('\n');
    out
}

/// The header line (`do_header`, `"%*s"` per column).
pub fn header(table: &Table, widths: &[usize; 19]) -> String {
    let text = line(
        table,
        FIELDS
            .iter()
            .zip(widths)
            .map(|(&(h, _), &w)| format!("{h:>w$}")),
    );
    if table.attributes {
        format!("{REVERSE}{}{PLAIN}\n", text.trim_end_matches('\n'))
    } else {
        text
    }
}

/// One domain's row (`do_domain`), each cell in its field's printf format.
pub fn row(
    table: &Table,
    widths: &[usize; 19],
    prev: Option<&Sample>,
    now: &Sample,
    d: &Domain,
) -> String {
    let name = display_name(d.info.dom, &d.name);
    let tot = now.total_pages.saturating_mul(PAGE_SIZE) as f64;
    let pct = |v: u64| v as f64 / tot * 100.0;
    let w = widths;
    let cells = [
        if table.full_name {
            format!("{name:>0$}", w[0])
        } else {
            // `%10.10s`: cut to ten characters.
            let cut: String = name.chars().take(10).collect();
            format!("{cut:>10}")
        },
        state(d),
        format!("{:>10}", d.info.cpu_time_ns / 1_000_000_000),
        format!("{:>6.1}", cpu_pct(prev, now, d)),
        format!("{:>10}", d.cur_mem() / KIB),
        format!("{:>6.1}", pct(d.cur_mem())),
        d.max_mem().map_or_else(
            || format!("{:>10}", "no limit"),
            |m| format!("{:>10}", m / KIB),
        ),
        d.max_mem()
            .map_or_else(|| format!("{:>9}", "n/a"), |m| format!("{:>9.1}", pct(m))),
        format!("{:>5}", d.num_vcpus()),
        // NETS, NETTX(k), NETRX(k): no networks.
        format!("{:>4}", 0),
        format!("{:>1$}", 0, w[10]),
        format!("{:>1$}", 0, w[11]),
        // VBDS and the request and sector counts: no block devices.
        format!("{:>4}", 0),
        format!("{:>8}", 0),
        format!("{:>1$}", 0, w[14]),
        format!("{:>1$}", 0, w[15]),
        format!("{:>1$}", 0, w[16]),
        format!("{:>1$}", 0, w[17]),
        format!("{:>4}", d.info.ssidref),
    ];
    line(table, cells.into_iter())
}

/// `-v`'s line under a domain (`do_vcpu`): `VCPUs(sec): ` and each online vCPU's whole
/// seconds, five to a line.
pub fn vcpu_lines(d: &Domain) -> String {
    let mut out = String::from("VCPUs(sec): ");
    for (i, ns) in d.vcpus.iter().enumerate() {
        let Some(ns) = ns else { continue };
        if i != 0 && i % 5 == 0 {
            out += "\n        ";
        }
        out += &format!(" {i:>2}: {:>10}s", ns / 1_000_000_000);
    }
    out.push('\n');
    out
}

/// xentop's `compare_state`: the first flag (in [`state`]'s order) one domain has and the
/// other lacks puts it first.
fn compare_state(a: &Domain, b: &Domain) -> Ordering {
    for ((fa, _), (fb, _)) in a.flags().into_iter().zip(b.flags()) {
        match (fa, fb) {
            (true, false) => return Ordering::Less,
            (false, true) => return Ordering::Greater,
            _ => {}
        }
    }
    Ordering::Equal
}

/// The order of column `sort` (xentop's `compare_*`): names A to Z ignoring case, states
/// by their first flag, SSID up; the numbers down (largest first). MEM(%) sorts as MEM(k)
/// and MAXMEM(%) as MAXMEM(k); CPU(%) by its whole part, as Xen 4.17 compares it. The
/// network and block columns are 0 for every domain and leave the order as it is.
pub fn compare(
    sort: usize,
    prev: Option<&Sample>,
    now: &Sample,
    a: &Domain,
    b: &Domain,
) -> Ordering {
    let down = |x: u64, y: u64| y.cmp(&x);
    let no_limit = |d: &Domain| d.max_mem().unwrap_or(u64::MAX);
    match sort {
        0 => {
            let (x, y) = (
                display_name(a.info.dom, &a.name),
                display_name(b.info.dom, &b.name),
            );
            x.to_ascii_lowercase().cmp(&y.to_ascii_lowercase())
        }
        1 => compare_state(a, b),
        2 => down(a.info.cpu_time_ns, b.info.cpu_time_ns),
        3 => down(cpu_pct(prev, now, a) as u64, cpu_pct(prev, now, b) as u64),
        4 | 5 => down(a.cur_mem(), b.cur_mem()),
        6 | 7 => down(no_limit(a), no_limit(b)),
        8 => down(a.num_vcpus().into(), b.num_vcpus().into()),
        18 => a.info.ssidref.cmp(&b.info.ssidref),
        _ => Ordering::Equal,
    }
}

/// The table (`top()` after the summary): the domains sorted by `table.sort`, from the
/// `first`-th on (the arrow keys scroll), each under the header (once, or before each with
/// `-r`), with its vCPU line for `-v`.
pub fn table(table: &Table, first: usize, prev: Option<&Sample>, now: &Sample) -> String {
    let mut doms: Vec<&Domain> = now.domains.iter().collect();
    doms.sort_by(|a, b| compare(table.sort, prev, now, a, b));
    let first = first.min(doms.len().saturating_sub(1));
    let shown = doms.get(first..).unwrap_or_default();
    let w = widths(table, shown);
    let mut out = String::new();
    for (i, d) in shown.iter().enumerate() {
        if i == 0 || table.repeat_header {
            out += &header(table, &w);
        }
        out += &row(table, &w, prev, now, d);
        if table.vcpus {
            out += &vcpu_lines(d);
        }
    }
    out
}

#[cfg(test)]
mod tests;
