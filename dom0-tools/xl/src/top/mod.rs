//! `xl top`: a table of domains refreshed every few seconds, in the
//! columns of Xen's xentop (NAME, STATE, CPU(sec), CPU(%), MEM(k), MEM(%),
//! MAXMEM(k), MAXMEM(%), VCPUS), with a summary above it.
//!
//! CPU% is the CPU time a domain used between two samples over the wall
//! time between them, so a domain with two busy vCPUs shows 200%. The
//! first screen has no earlier sample and shows 0.0.

use dom0_tools::control::DomainInfo;
use dom0_tools::xlfmt::display_name;

/// One sample of the machine: when it was taken and every domain's state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sample {
    /// When the sample was taken, in nanoseconds of any monotonic clock.
    pub at_ns: u64,
    /// The host's memory in KiB (for the percentages).
    pub host_kib: u64,
    /// The host's free memory in KiB.
    pub free_kib: u64,
    /// Number of pCPUs.
    pub nr_cpus: u32,
    /// Each domain with its name.
    pub domains: Vec<(String, DomainInfo)>,
}

/// What a key typed while `xl top` runs asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Key {
    /// Leave (`q`, `Q`, Ctrl-C, Escape).
    Quit,
    /// Redraw now (space, Enter).
    Refresh,
    /// Nothing.
    Ignore,
}

/// The meaning of byte `b` typed at `xl top`.
pub fn key(b: u8) -> Key {
    match b {
        b'q' | b'Q' | 0x03 | 0x1b => Key::Quit,
        b' ' | b'\r' | b'\n' => Key::Refresh,
        _ => Key::Ignore,
    }
}

const HEADER: &str =
    "      NAME  STATE   CPU(sec) CPU(%)     MEM(k) MEM(%)  MAXMEM(k) MAXMEM(%) VCPUS";

/// xentop's STATE column: `d`ying, `s`hutdown, `b`locked, `c`rashed,
/// `p`aused, `r`unning, each or `-` (xentop's order, not `xl list`'s).
pub fn state(d: &DomainInfo) -> String {
    let crashed = d.shutdown == Some(guest_abi::sched::SHUTDOWN_CRASH);
    [
        (d.dying, 'd'),
        (d.shutdown.is_some() && !crashed, 's'),
        (d.blocked, 'b'),
        (crashed, 'c'),
        (d.paused, 'p'),
        (d.running, 'r'),
    ]
    .iter()
    .map(|&(on, c)| if on { c } else { '-' })
    .collect()
}

/// A ratio in tenths of a percent, `part / whole`, 0 when `whole` is 0.
fn per_mille(part: u64, whole: u64) -> u64 {
    if whole == 0 {
        return 0;
    }
    (u128::from(part) * 1000 / u128::from(whole)).min(u128::from(u64::MAX)) as u64
}

fn tenths(v: u64) -> String {
    format!("{}.{}", v / 10, v % 10)
}

/// CPU use of a domain between `prev` and `now`, in tenths of a percent;
/// 0 without a previous sample of the same domain (or when its counter went
/// backwards, i.e. the id was reused).
pub fn cpu_per_mille(prev: Option<&Sample>, now: &Sample, info: &DomainInfo) -> u64 {
    let Some(prev) = prev else { return 0 };
    let Some((_, before)) = prev
        .domains
        .iter()
        .find(|(_, d)| d.dom == info.dom && d.handle == info.handle)
    else {
        return 0;
    };
    let used = info.cpu_time_ns.saturating_sub(before.cpu_time_ns);
    per_mille(used, now.at_ns.saturating_sub(prev.at_ns))
}

/// The whole screen for `now`, given the sample before it.
pub fn screen(prev: Option<&Sample>, now: &Sample) -> String {
    let count = |f: fn(&DomainInfo) -> bool| now.domains.iter().filter(|(_, d)| f(d)).count();
    let mut out = format!(
        "xl top - {} domains: {} running, {} blocked, {} paused, {} crashed, {} dying, {} shutdown\n",
        now.domains.len(),
        count(|d| d.running),
        count(|d| d.blocked),
        count(|d| d.paused),
        count(|d| d.shutdown == Some(guest_abi::sched::SHUTDOWN_CRASH)),
        count(|d| d.dying),
        count(|d| d
            .shutdown
            .is_some_and(|r| r != guest_abi::sched::SHUTDOWN_CRASH)),
    );
    out.push_str(&format!(
        "Mem: {}k total, {}k used, {}k free    CPUs: {}\n",
        now.host_kib,
        now.host_kib.saturating_sub(now.free_kib),
        now.free_kib,
        now.nr_cpus
    ));
    out.push_str(HEADER);
    out.push('\n');
    for (name, d) in &now.domains {
        let mem_kib = d.tot_pages.saturating_mul(4);
        let max_kib = d.max_pages.saturating_mul(4);
        out.push_str(&format!(
            "{:>10} {:>6} {:>10} {:>6} {:>10} {:>6} {:>10} {:>9} {:>5}\n",
            display_name(d.dom, name),
            state(d),
            d.cpu_time_ns / 1_000_000_000,
            tenths(cpu_per_mille(prev, now, d)),
            mem_kib,
            tenths(per_mille(mem_kib, now.host_kib)),
            max_kib,
            tenths(per_mille(max_kib, now.host_kib)),
            d.online_vcpus,
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use dom0_tools::DOM0_NAME;
    use guest_abi::types::Mfn;

    fn dom(id: u16, cpu_s: u64, pages: u64) -> DomainInfo {
        DomainInfo {
            dom: id,
            handle: [id as u8; 16],
            running: id == 0,
            blocked: id != 0,
            paused: false,
            shutdown: None,
            dying: false,
            tot_pages: pages,
            max_pages: pages,
            online_vcpus: 1,
            cpu_time_ns: cpu_s * 1_000_000_000,
            shared_info: Mfn(0),
        }
    }

    fn sample(at_s: u64, doms: Vec<(&str, DomainInfo)>) -> Sample {
        Sample {
            at_ns: at_s * 1_000_000_000,
            host_kib: 1 << 20,
            free_kib: 1 << 19,
            nr_cpus: 1,
            domains: doms.into_iter().map(|(n, d)| (n.to_string(), d)).collect(),
        }
    }

    #[test]
    fn states_in_xentop_order() {
        let mut d = dom(3, 0, 1);
        assert_eq!(state(&d), "--b---");
        d.paused = true;
        d.shutdown = Some(guest_abi::sched::SHUTDOWN_CRASH);
        assert_eq!(state(&d), "--bcp-");
        d.shutdown = Some(guest_abi::sched::SHUTDOWN_POWEROFF);
        d.dying = true;
        assert_eq!(state(&d), "dsb-p-");
    }

    #[test]
    fn keys() {
        assert_eq!(key(b'q'), Key::Quit);
        assert_eq!(key(b'Q'), Key::Quit);
        assert_eq!(key(3), Key::Quit);
        assert_eq!(key(b' '), Key::Refresh);
        assert_eq!(key(b'x'), Key::Ignore);
    }

    #[test]
    fn cpu_percent_from_two_samples() {
        let a = sample(
            10,
            vec![(DOM0_NAME, dom(0, 1, 65536)), ("calc", dom(2, 4, 4096))],
        );
        // Over 3 s, dom0 used 0.3 s (10%) and calc 3 s (100%).
        let mut b = sample(
            13,
            vec![(DOM0_NAME, dom(0, 1, 65536)), ("calc", dom(2, 7, 4096))],
        );
        b.domains[0].1.cpu_time_ns += 300_000_000;
        assert_eq!(cpu_per_mille(Some(&a), &b, &b.domains[0].1), 100);
        assert_eq!(cpu_per_mille(Some(&a), &b, &b.domains[1].1), 1000);
        assert_eq!(cpu_per_mille(None, &b, &b.domains[1].1), 0);
        // A reused id (other UUID) or a counter going back gives 0, not garbage.
        let mut other = b.domains[1].1;
        other.handle = [9; 16];
        assert_eq!(cpu_per_mille(Some(&a), &b, &other), 0);
        let mut back = b.domains[1].1;
        back.cpu_time_ns = 0;
        assert_eq!(cpu_per_mille(Some(&a), &b, &back), 0);
        // Two samples at the same instant: no division by zero.
        assert_eq!(cpu_per_mille(Some(&b), &b, &b.domains[1].1), 0);
    }

    #[test]
    fn cpu_percent_sums_vcpus_on_smp() {
        // On 4 pCPUs a 4-vCPU domain busy on all of them used 8 s of CPU in 2 s: 400%, as
        // xentop shows it (summed over vCPUs, not divided by the pCPUs).
        let mut calc = dom(2, 10, 4096);
        calc.online_vcpus = 4;
        let mut a = sample(10, vec![(DOM0_NAME, dom(0, 1, 65536)), ("calc", calc)]);
        a.nr_cpus = 4;
        let mut b = a.clone();
        b.at_ns += 2_000_000_000;
        b.domains[1].1.cpu_time_ns += 8_000_000_000;
        assert_eq!(cpu_per_mille(Some(&a), &b, &b.domains[1].1), 4000);
        let s = screen(Some(&a), &b);
        let row = s.lines().nth(4).unwrap();
        assert_eq!(
            row,
            "      calc --b---         18  400.0      16384    1.5      16384       1.5     4"
        );
        assert!(s.lines().nth(1).unwrap().ends_with("CPUs: 4"));
    }

    #[test]
    fn screen_layout() {
        let a = sample(
            10,
            vec![(DOM0_NAME, dom(0, 1, 65536)), ("calc", dom(2, 4, 4096))],
        );
        let b = sample(
            12,
            vec![(DOM0_NAME, dom(0, 1, 65536)), ("calc", dom(2, 5, 4096))],
        );
        let s = screen(Some(&a), &b);
        let lines: Vec<&str> = s.lines().collect();
        assert_eq!(
            lines[0],
            "xl top - 2 domains: 1 running, 1 blocked, 0 paused, 0 crashed, 0 dying, 0 shutdown"
        );
        assert_eq!(
            lines[1],
            "Mem: 1048576k total, 524288k used, 524288k free    CPUs: 1"
        );
        assert_eq!(lines[2], HEADER);
        assert_eq!(
            lines[3],
            "  Domain-0 -----r          1    0.0     262144   25.0     262144      25.0     1"
        );
        assert_eq!(
            lines[4],
            "      calc --b---          5   50.0      16384    1.5      16384       1.5     1"
        );
        // Every row lines up with the header.
        for l in &lines[3..] {
            assert_eq!(l.len(), HEADER.len(), "{l:?}");
        }
    }
}
