//! `xl sched-credit` (Xen's `main_sched_credit` in `xl_sched.c`): the domains' weights and
//! caps under their cpupool's line, and the cpupool's parameters. Xenia has one cpupool,
//! `Pool-0` (id 0), scheduled by credit.

use dom0_tools::xlfmt;
use guest_abi::Errno;
use guest_abi::domctl::{CREDIT_CAP_UNCHANGED, DomctlSchedCredit};
use guest_abi::types::DomId;

use super::{Io, POOL_0, System, VerbResult, find, named_domains, reported};

/// One `xl sched-credit` row: `"%-33s %4d %6d %4d"`.
pub fn sched_line(name: &str, dom: DomId, c: DomctlSchedCredit) -> String {
    format!(
        "{:<33} {:>4} {:>6} {:>4}\n",
        xlfmt::display_name(dom, name),
        dom,
        c.weight,
        c.cap
    )
}

/// The cpupool `arg` names (Xen's `libxl_cpupool_qualifier_to_cpupoolid`: an id, or a
/// name): Xenia has one, `Pool-0`, id 0.
fn cpupool(io: &mut Io<'_>, arg: &str) -> VerbResult<u32> {
    let id_zero = arg.bytes().all(|b| b.is_ascii_digit()) && arg.parse() == Ok(0u32);
    if arg == POOL_0 || id_zero {
        Ok(0)
    } else {
        Err(reported(io, &format!("unknown cpupool '{arg}'\n")))
    }
}

/// Domain `dom`'s weight and cap, or the message for when they cannot be read.
fn credit_of(sys: &mut impl System, dom: DomId) -> VerbResult<DomctlSchedCredit> {
    sys.sched_get(dom).map_err(|e| {
        format!(
            "cannot read the scheduler parameters of domain {dom}: {e}\n\
             libxl_domain_sched_params_get failed."
        )
    })
}

/// `xl sched-credit`'s cpupool line (Xen's `sched_credit_pool_output`).
fn sched_pool_line(sys: &mut impl System, io: &mut Io<'_>) -> String {
    let params = sys.sched_credit_params(0).ok();
    if params.is_none() {
        let _ = writeln!(io.err, "libxl_sched_credit_params_get failed.");
    }
    xlfmt::sched_credit_pool_line(POOL_0, params)
}

/// `xl sched-credit` (Xen's `main_sched_credit`, whose checks of the option combinations
/// [`crate::cli`] made): every domain under its cpupool's line, one domain (`-d`), a
/// domain's weight and cap set (`-w`, `-c`), or the cpupool's parameters (`-s`; setting
/// them, `-t`/`-r`/`-m`, is refused by the hypervisor: they are fixed in Xenia).
pub fn sched_credit(
    sys: &mut impl System,
    io: &mut Io<'_>,
    o: &crate::cli::SchedCredit,
) -> VerbResult {
    let header = format!("{:<33} {:>4} {:>6} {:>4}\n", "Name", "ID", "Weight", "Cap");
    if let Some(p) = &o.cpupool {
        cpupool(io, p)?;
    }
    if o.schedparam {
        if o.tslice.is_none() && o.ratelimit.is_none() && o.migration_delay.is_none() {
            let line = sched_pool_line(sys, io);
            let _ = write!(io.out, "{line}");
            return Ok(());
        }
        if sys.sched_credit_params(0).is_err() {
            return Err(reported(io, "libxl_sched_credit_params_get failed.\n"));
        }
        return Err(reported(
            io,
            "xl: the credit scheduler's time slice, rate limit and migration delay are fixed \
             in Xenia (see `xl sched-credit -s`)\nlibxl_sched_credit_params_set failed.\n",
        ));
    }
    let Some(arg) = &o.domain else {
        let mut out = sched_pool_line(sys, io);
        out += &header;
        for (name, d) in named_domains(sys)? {
            if let Ok(c) = sys.sched_get(d.dom) {
                out += &sched_line(&name, d.dom, c);
            }
        }
        let _ = write!(io.out, "{out}");
        return Ok(());
    };
    let (name, d) = find(sys, arg)?;
    if o.weight.is_none() && o.cap.is_none() {
        let c = credit_of(sys, d.dom)?;
        let _ = write!(io.out, "{header}{}", sched_line(&name, d.dom, c));
        return Ok(());
    }
    // Xen reads both with strtol (no digits: 0) and libxl checks the ranges.
    let set_failed = |why: String| format!("{why}\nlibxl_domain_sched_params_set failed.");
    let weight = match &o.weight {
        None => None,
        Some(w) => {
            let v = crate::cli::getopt::strtol(w).unwrap_or(0);
            Some(
                u16::try_from(v)
                    .ok()
                    .filter(|&v| v >= 1)
                    .ok_or_else(|| set_failed(format!("the weight must be 1 to 65535, not {v}")))?,
            )
        }
    };
    let cap = match &o.cap {
        None => None,
        Some(c) => {
            let v = crate::cli::getopt::strtol(c).unwrap_or(0);
            Some(
                u16::try_from(v)
                    .ok()
                    .filter(|&v| v != CREDIT_CAP_UNCHANGED)
                    .ok_or_else(|| {
                        set_failed(format!(
                            "the cap must be 0 (none) to 100 per vCPU of the domain, not {v}"
                        ))
                    })?,
            )
        }
    };
    let old = credit_of(sys, d.dom)?;
    let new = DomctlSchedCredit {
        weight: weight.unwrap_or(old.weight),
        cap: cap.unwrap_or(old.cap),
    };
    sys.sched_put(d.dom, new).map_err(|e| match e {
        Errno::EINVAL => set_failed(format!(
            "the hypervisor refused weight {} cap {} for domain {} ({name}): the cap must be at \
             most 100 per vCPU ({} vCPUs)",
            new.weight, new.cap, d.dom, d.online_vcpus
        )),
        e => set_failed(format!(
            "cannot set the scheduler parameters of domain {} ({name}): {e}",
            d.dom
        )),
    })
}
