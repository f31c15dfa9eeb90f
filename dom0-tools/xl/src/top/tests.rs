//! Every expected line is rendered here from Xen 4.17's `tools/xentop/xentop.c` format
//! strings, copied verbatim and run through [`printf`], a small C `printf` for the
//! conversions xentop uses; never from the code above.

use super::*;
use dom0_tools::DOM0_NAME;
use dom0_tools::control::domain_info;
use guest_abi::domctl::{
    DomctlGetdomaininfo, XEN_DOMINF_BLOCKED, XEN_DOMINF_DYING, XEN_DOMINF_PAUSED,
    XEN_DOMINF_RUNNING, XEN_DOMINF_SHUTDOWN, XEN_DOMINF_SHUTDOWNSHIFT,
};
use guest_abi::sched::SHUTDOWN_POWEROFF;

/// An argument of [`printf`].
#[derive(Clone, Debug)]
enum Arg {
    U(u64),
    F(f64),
    S(String),
    C(char),
}
use Arg::{C, F, S, U};

/// C's `printf(fmt, args...)` for `%[-][width|*][.precision][ll|l](s|u|d|c|f)` and `%%`.
fn printf(fmt: &str, args: &[Arg]) -> String {
    let mut args = args.iter().cloned();
    let mut out = String::new();
    let mut chars = fmt.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        if chars.peek() == Some(&'%') {
            chars.next();
            out.push('%');
            continue;
        }
        let left = chars.next_if_eq(&'-').is_some();
        let mut width = 0usize;
        if chars.next_if_eq(&'*').is_some() {
            let Some(U(w)) = args.next() else {
                panic!("%* needs a width")
            };
            width = w as usize;
        }
        while let Some(d) = chars.next_if(char::is_ascii_digit) {
            width = width * 10 + d.to_digit(10).unwrap() as usize;
        }
        let mut precision = None;
        if chars.next_if_eq(&'.').is_some() {
            let mut p = 0usize;
            while let Some(d) = chars.next_if(char::is_ascii_digit) {
                p = p * 10 + d.to_digit(10).unwrap() as usize;
            }
            precision = Some(p);
        }
        while chars.next_if(|&c| c == 'l').is_some() {}
        let conv = chars.next().expect("a conversion");
        let body = match (conv, args.next().expect("an argument")) {
            ('s', S(s)) => match precision {
                Some(p) => s.chars().take(p).collect(),
                None => s,
            },
            ('u' | 'd', U(v)) => v.to_string(),
            ('c', C(ch)) => ch.to_string(),
            ('f', F(v)) => format!("{v:.*}", precision.unwrap_or(6)),
            (conv, a) => panic!("%{conv} with {a:?}"),
        };
        let pad = " ".repeat(width.saturating_sub(body.chars().count()));
        if left {
            out += &body;
            out += &pad;
        } else {
            out += &pad;
            out += &body;
        }
    }
    out
}

fn dom(id: u16, flags: u32, cpu_s: u64, pages: u64, vcpus: u32) -> DomainInfo {
    domain_info(&DomctlGetdomaininfo {
        domain: id,
        handle: [id as u8; 16],
        flags,
        tot_pages: pages,
        max_pages: pages,
        cpu_time: cpu_s * 1_000_000_000,
        nr_online_vcpus: vcpus,
        max_vcpu_id: vcpus.wrapping_sub(1),
        ..Default::default()
    })
}

const HOST_PAGES: u64 = 262_144; // 1 GiB.

fn sample(at_s: u64, doms: Vec<Domain>) -> Sample {
    Sample {
        at_ns: at_s * 1_000_000_000,
        wall_s: 1_764_955_058, // 2025-12-05 17:17:38 UTC.
        version: "4.17.0-xenia".into(),
        total_pages: HOST_PAGES,
        free_pages: HOST_PAGES / 2,
        nr_cpus: 4,
        cpu_khz: 2_400_005,
        domains: doms,
    }
}

fn two(at_s: u64, calc_cpu_s: u64) -> Sample {
    sample(
        at_s,
        vec![
            Domain::new(DOM0_NAME, dom(0, XEN_DOMINF_RUNNING, 1, 16384, 1)),
            Domain::new("calc", dom(2, XEN_DOMINF_BLOCKED, calc_cpu_s, 4096, 2)),
        ],
    )
}

fn plain() -> Table {
    Table {
        sort: 0,
        full_name: false,
        repeat_header: false,
        vcpus: false,
        attributes: false,
    }
}

/// xentop's `do_header` with the default widths.
fn xen_header() -> String {
    let fields: [(&str, u64); 19] = [
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
    let cells: Vec<String> = fields
        .iter()
        .map(|&(h, w)| printf("%*s", &[U(w), S(h.into())]))
        .collect();
    cells.join(printf(" ", &[]).as_str()) + "\n"
}

/// xentop's `do_domain` for a domain without networks or block devices, from each field's
/// `print_*` format; `mem_k` and `max_k` are KiB, `cpu_pct` the percentage.
fn xen_row(
    name: &str,
    state: &str,
    cpu_s: u64,
    cpu_pct: f64,
    mem_k: u64,
    max_k: u64,
    vcpus: u64,
) -> String {
    let tot_mem = (HOST_PAGES * 4096) as f64;
    let cells = [
        printf("%10.10s", &[S(name.into())]),
        state.chars().map(|c| printf("%c", &[C(c)])).collect(),
        printf("%10llu", &[U(cpu_s)]),
        printf("%6.1f", &[F(cpu_pct)]),
        printf("%10llu", &[U(mem_k)]),
        printf("%6.1f", &[F((mem_k * 1024) as f64 / tot_mem * 100.0)]),
        printf("%10llu", &[U(max_k)]),
        printf("%9.1f", &[F((max_k * 1024) as f64 / tot_mem * 100.0)]),
        printf("%5u", &[U(vcpus)]),
        printf("%4u", &[U(0)]),
        printf("%*llu", &[U(8), U(0)]),
        printf("%*llu", &[U(8), U(0)]),
        printf("%4u", &[U(0)]),
        printf("%8llu", &[U(0)]),
        printf("%*llu", &[U(8), U(0)]),
        printf("%*llu", &[U(8), U(0)]),
        printf("%*llu", &[U(10), U(0)]),
        printf("%*llu", &[U(10), U(0)]),
        printf("%4u", &[U(0)]),
    ];
    cells.join(" ") + "\n"
}

#[test]
fn printf_itself() {
    assert_eq!(
        printf(
            "%10.10s|%-4u|%6.1f|%%|%c",
            &[S("abcdefghijkl".into()), U(7), F(2.25), C('x')]
        ),
        "abcdefghij|7   |   2.2|%|x"
    );
}

#[test]
fn summary_as_xentop_prints_it() {
    let mut s = two(10, 4);
    s.domains
        .push(Domain::new("stopped", dom(3, XEN_DOMINF_PAUSED, 0, 256, 1)));
    let crash = XEN_DOMINF_SHUTDOWN | SHUTDOWN_CRASH << XEN_DOMINF_SHUTDOWNSHIFT;
    s.domains
        .push(Domain::new("broken", dom(4, crash, 0, 256, 1)));
    let off = XEN_DOMINF_SHUTDOWN | SHUTDOWN_POWEROFF << XEN_DOMINF_SHUTDOWNSHIFT;
    s.domains.push(Domain::new(
        "off",
        dom(5, off | XEN_DOMINF_DYING, 0, 256, 1),
    ));
    let mut want = printf(
        "xentop - %s   Xen %s\n",
        &[S("17:17:38".into()), S("4.17.0-xenia".into())],
    );
    // The dying domain that has shut down counts as shut down (the `else if` chain).
    want += &printf(
        "%u domains: %u running, %u blocked, %u paused, %u crashed, %u dying, %u shutdown \n",
        &[U(5), U(1), U(1), U(1), U(1), U(0), U(1)],
    );
    let tot = HOST_PAGES * 4096;
    let free = tot / 2;
    want += &printf(
        "Mem: %lluk total, %lluk used, %lluk free    ",
        &[U(tot / 1024), U((tot - free) / 1024), U(free / 1024)],
    );
    want += &printf(
        "CPUs: %u @ %lluMHz\n",
        &[U(4), U(2_400_005 * 1000 / 1_000_000)],
    );
    assert_eq!(summary(&s), want);
    assert!(want.ends_with("CPUs: 4 @ 2400MHz\n"));
}

#[test]
fn time_of_day_is_utc() {
    assert_eq!(time_of_day(0), "00:00:00");
    assert_eq!(time_of_day(86_399), "23:59:59");
    assert_eq!(time_of_day(1_764_955_058), "17:17:38");
}

#[test]
fn header_and_rows_as_xentop_prints_them() {
    let (a, b) = (two(10, 4), two(12, 7));
    let got = table(&plain(), 0, Some(&a), &b);
    // Sorted by NAME, ignoring case: calc before Domain-0. calc used 3 s in 2 s: 150%.
    let want = xen_header()
        + &xen_row("calc", "--b---", 7, 150.0, 16384, 16384, 2)
        + &xen_row("Domain-0", "-----r", 1, 0.0, 65536, 65536, 1);
    assert_eq!(got, want);
    assert_eq!(
        got.lines().next().unwrap(),
        "      NAME  STATE   CPU(sec) CPU(%)     MEM(k) MEM(%)  MAXMEM(k) MAXMEM(%) VCPUS \
         NETS NETTX(k) NETRX(k) VBDS   VBD_OO   VBD_RD   VBD_WR  VBD_RSECT  VBD_WSECT SSID"
    );
    // Without an earlier sample, CPU(%) is 0.0.
    let first = table(&plain(), 0, None, &b);
    assert_eq!(
        first.lines().nth(1).unwrap(),
        xen_row("calc", "--b---", 7, 0.0, 16384, 16384, 2).trim_end()
    );
}

#[test]
fn long_names_and_no_limit() {
    let mut info = dom(7, XEN_DOMINF_BLOCKED, 0, 256, 0);
    info.max_pages = u64::from(u32::MAX);
    info.ssidref = 12;
    let s = sample(1, vec![Domain::new("a-rather-long-name", info)]);
    let row = table(&plain(), 0, None, &s);
    let row = row.lines().nth(1).unwrap().to_string() + "\n";
    let tot_mem = (HOST_PAGES * 4096) as f64;
    let want = [
        printf("%10.10s", &[S("a-rather-long-name".into())]),
        "--b---".into(),
        printf("%10llu", &[U(0)]),
        printf("%6.1f", &[F(0.0)]),
        printf("%10llu", &[U(1024)]),
        printf("%6.1f", &[F(1024.0 * 1024.0 / tot_mem * 100.0)]),
        printf("%10s", &[S("no limit".into())]),
        printf("%9s", &[S("n/a".into())]),
        printf("%5u", &[U(0)]),
    ]
    .join(" ");
    assert!(row.starts_with(&want), "{row:?}\n{want:?}");
    assert!(row.ends_with(&printf(" %4u\n", &[U(12)])));
    // `-f`: the NAME column as wide as the longest name, header included.
    let full = Table {
        full_name: true,
        ..plain()
    };
    let t = table(&full, 0, None, &s);
    let mut lines = t.lines();
    assert!(
        lines
            .next()
            .unwrap()
            .starts_with(&printf("%*s ", &[U(18), S("NAME".into())]))
    );
    assert!(
        lines
            .next()
            .unwrap()
            .starts_with(&printf("%*s ", &[U(18), S("a-rather-long-name".into())]))
    );
}

#[test]
fn vcpu_lines_five_to_a_line() {
    let mut d = Domain::new("smp", dom(1, XEN_DOMINF_BLOCKED, 0, 256, 7));
    d.vcpus = (0..7u64)
        .map(|i| (i != 2).then_some(i * 1_500_000_000))
        .collect();
    let mut want = printf("VCPUs(sec): ", &[]);
    for i in [0u64, 1, 3, 4, 5, 6] {
        if i != 0 && i % 5 == 0 {
            want += &printf("\n        ", &[]);
        }
        want += &printf(" %2u: %10llus", &[U(i), U(i * 3 / 2)]);
    }
    want += "\n";
    assert_eq!(vcpu_lines(&d), want);
    let s = sample(1, vec![d]);
    let t = table(
        &Table {
            vcpus: true,
            ..plain()
        },
        0,
        None,
        &s,
    );
    assert!(t.ends_with(&want));
}

#[test]
fn states_in_xentop_order() {
    let mut d = Domain::new("x", dom(3, XEN_DOMINF_BLOCKED, 0, 1, 1));
    assert_eq!(state(&d), "--b---");
    d.info.paused = true;
    d.info.shutdown = Some(SHUTDOWN_CRASH);
    assert_eq!(state(&d), "--bcp-");
    d.info.shutdown = Some(SHUTDOWN_POWEROFF);
    d.info.dying = true;
    assert_eq!(state(&d), "dsb-p-");
}

#[test]
fn sort_columns() {
    let (a, b) = (two(10, 4), two(12, 7));
    let names = |sort: usize, first: usize| -> Vec<String> {
        let t = table(&Table { sort, ..plain() }, first, Some(&a), &b);
        t.lines()
            .skip(1)
            .map(|l| l.split_whitespace().next().unwrap().to_string())
            .collect()
    };
    assert_eq!(names(0, 0), ["calc", "Domain-0"]);
    // STATE: the blocked flag comes before the running one.
    assert_eq!(names(1, 0), ["calc", "Domain-0"]);
    // CPU(sec), CPU(%), VCPUS: largest first; MEM(k), MAXMEM(k) and their %: largest first.
    assert_eq!(names(2, 0), ["calc", "Domain-0"]);
    assert_eq!(names(3, 0), ["calc", "Domain-0"]);
    for col in 4..=7 {
        assert_eq!(names(col, 0), ["Domain-0", "calc"], "column {col}");
    }
    assert_eq!(names(8, 0), ["calc", "Domain-0"]);
    // Scrolled by one; scrolling past the end shows the last.
    assert_eq!(names(0, 1), ["Domain-0"]);
    assert_eq!(names(0, 9), ["Domain-0"]);
    // `-r`: a header before each domain.
    let t = table(
        &Table {
            repeat_header: true,
            ..plain()
        },
        0,
        Some(&a),
        &b,
    );
    assert_eq!(
        t.lines()
            .filter(|l| l.trim_start().starts_with("NAME"))
            .count(),
        2
    );
}

#[test]
fn screen_attributes() {
    let b = two(12, 7);
    let t = table(
        &Table {
            sort: 2,
            attributes: true,
            ..plain()
        },
        0,
        None,
        &b,
    );
    let header = t.lines().next().unwrap();
    assert!(header.starts_with("\x1b[7m      NAME  STATE \x1b[1m  CPU(sec)\x1b[22m CPU(%)"));
    assert!(header.ends_with("SSID\x1b[0m"));
    // Without the attributes, the lines are the batch lines.
    let strip = |s: &str| {
        s.replace("\x1b[7m", "")
            .replace("\x1b[1m", "")
            .replace("\x1b[22m", "")
            .replace("\x1b[0m", "")
    };
    assert_eq!(strip(&t), table(&Table { sort: 2, ..plain() }, 0, None, &b));
}

#[test]
fn cpu_percent_sums_vcpus_and_survives_odd_samples() {
    let (a, b) = (two(10, 4), two(12, 12));
    // 8 s of CPU in 2 s: 400%, summed over vCPUs as xentop shows it.
    assert_eq!(cpu_pct(Some(&a), &b, &b.domains[1]), 400.0);
    // Another UUID under the same id, a counter going back, or no time between: 0.
    let mut other = b.domains[1].clone();
    other.info.handle = [9; 16];
    assert_eq!(cpu_pct(Some(&a), &b, &other), 0.0);
    let mut back = b.domains[1].clone();
    back.info.cpu_time_ns = 0;
    assert_eq!(cpu_pct(Some(&a), &b, &back), 0.0);
    assert_eq!(cpu_pct(Some(&b), &b, &b.domains[1]), 0.0);
}
