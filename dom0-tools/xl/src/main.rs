//! `xl`: dom0's toolstack command.
//!
//! Parses the command line, opens dom0's devices and runs the verb
//! ([`xl::verbs`]); `console` loops here on `poll`, and `top` runs xentop's loop
//! ([`xl::top::live`]). Anywhere but Xenia's dom0 (the build host, a kernel
//! without the devices) xl says so and exits with status 1 rather than
//! pretending.
#![deny(unsafe_code)]

use std::fs::File;
use std::os::fd::AsRawFd;
use std::process::ExitCode;

use dom0_tools::xlfmt::ListColumns;
use guest_abi::Errno;
use xl::cli::{Command, Invocation, Parsed};
use xl::console::{self, End};
use xl::real::Real;
use xl::sys;
use xl::top::{args::Options, live};
use xl::verbs::{self, CreateOpts, Io, ListOpts, PinOpts, VerbResult};

const PRIVCMD: &str = "/dev/xen/privcmd";
const STDIN: i32 = 0;
const STDOUT: i32 = 1;

fn main() -> ExitCode {
    let invocation = match xl::cli::parse(std::env::args_os()) {
        Parsed::Run(i) => i,
        Parsed::Exit(exit) => {
            // Xen's xl prints its complaint on stderr, then the help on stdout.
            eprint!("{}", exit.stderr);
            print!("{}", exit.stdout);
            return ExitCode::from(exit.status);
        }
    };
    if !std::path::Path::new(PRIVCMD).exists() {
        eprintln!(
            "xl: {PRIVCMD} is missing: xl manages domains from Xenia's dom0 and cannot run here \
             (boot the image with `cargo xtask run` and use xl at the dom0# prompt)"
        );
        return ExitCode::FAILURE;
    }
    let result = Real::open().and_then(|mut real| run(&mut real, invocation));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(msg) => {
            // An empty message: the verb printed Xen's own words already.
            if !msg.is_empty() {
                eprintln!("xl: {msg}");
            }
            ExitCode::FAILURE
        }
    }
}

fn run(real: &mut Real, invocation: Invocation) -> VerbResult {
    let (mut out, mut err) = (std::io::stdout(), std::io::stderr());
    let io = &mut Io {
        out: &mut out,
        err: &mut err,
    };
    match invocation.command {
        Command::Create(c) => {
            let config = c.config;
            if c.dry_run {
                return verbs::create_dry_run(real, io, &config, &c.overrides, c.quiet);
            }
            // With `-c` the domain starts only once its console is attached (xl's own order
            // is the same: the console client before the unpause), so that a domain that
            // prints and powers off at once is seen whole.
            let hold = c.console && !c.paused;
            let opts = CreateOpts {
                paused: c.paused,
                quiet: c.quiet,
                debug: c.debug,
                hold,
            };
            let dom = verbs::create(real, io, &config, &c.overrides, opts)?;
            if c.console {
                attach(real, &dom.to_string(), None, None, hold)?;
            }
            Ok(())
        }
        Command::List(l) => {
            let opts = ListOpts {
                long: l.long,
                columns: ListColumns {
                    verbose: l.verbose,
                    context: l.context,
                    cpupool: l.cpupool,
                    numa: l.numa,
                },
            };
            verbs::list(real, io, opts, l.domain.as_deref())
        }
        Command::VmList => verbs::vm_list(real, io),
        Command::Destroy { force, domain } => verbs::destroy(real, io, &domain, force),
        // `-F` falls back to an ACPI event for HVM guests without PV drivers; Xenia's
        // domains are all PV, so there is never anything to fall back from.
        Command::Shutdown(s) => verbs::shutdown(real, io, s.domain.as_deref(), s.reboot, s.wait),
        Command::Pause { domain } => verbs::pause(real, &domain, true),
        Command::Unpause { domain } => verbs::pause(real, &domain, false),
        Command::Console { kind, num, domain } => {
            attach(real, &domain, kind.as_deref(), num.as_deref(), false)
        }
        Command::Info { numa, field } => verbs::info(real, io, numa, field.as_deref()),
        Command::Dmesg { clear } => verbs::dmesg(real, io, clear),
        Command::VcpuList { domains } => verbs::vcpu_list(real, io, &domains),
        Command::VcpuPin {
            force,
            domain,
            vcpu,
            hard,
            soft,
        } => {
            let opts = PinOpts {
                force,
                dry_run: invocation.dry_run,
            };
            verbs::vcpu_pin_with(real, Some(io), &domain, &vcpu, &hard, soft.as_deref(), opts)
        }
        Command::VcpuSet {
            ignore_host,
            domain,
            count,
        } => verbs::vcpu_set(real, &domain, &count, !ignore_host),
        Command::SchedCredit(s) => verbs::sched_credit(real, io, &s),
        Command::MemSet { domain, memory } => verbs::mem_set(real, &domain, &memory),
        Command::MemMax { domain, memory } => verbs::mem_max(real, &domain, &memory),
        Command::Uptime { short, domains } => verbs::uptime(real, io, short, &domains),
        // Xen's `xl top` runs `xentop`; so does Xenia's, in this process.
        Command::Top { delay } => {
            let options = Options {
                delay,
                ..Options::default()
            };
            live::run(real, &options).map_err(|msg| {
                eprint!("{msg}");
                String::new()
            })
        }
        Command::Domid { name } => verbs::domid(real, io, &name),
        Command::Domname { id } => verbs::domname(real, io, &id),
        Command::Rename { domain, new_name } => verbs::rename(real, io, &domain, &new_name),
        Command::Sysrq { domain, key } => verbs::sysrq(real, &domain, key),
        Command::DebugKeys { keys } => verbs::debug_keys(real, io, &keys),
        Command::BlockAttach { domain, spec } => {
            verbs::block_attach(real, io, &domain, &spec, invocation.dry_run)
        }
        Command::BlockList { domains } => verbs::block_list(real, io, &domains),
        Command::BlockDetach {
            force,
            domain,
            device,
        } => verbs::block_detach(real, io, &domain, &device, force),
        Command::NetworkAttach { domain, spec } => {
            verbs::network_attach(real, io, &domain, &spec, invocation.dry_run)
        }
        Command::NetworkList { domains } => verbs::network_list(real, io, &domains),
        Command::NetworkDetach {
            force,
            domain,
            device,
        } => verbs::network_detach(real, io, &domain, &device, force),
    }
}

/// `xl console [-t type] [-n num]`: copies the domain's output to the terminal and the
/// keys typed to the domain until Ctrl-] (or the domain goes away). A Xenia domain has one
/// console, the PV console 0.
/// `start`: the domain was built paused for this attach, and is started once the console
/// is open.
fn attach(
    real: &mut Real,
    arg: &str,
    kind: Option<&str>,
    num: Option<&str>,
    start: bool,
) -> VerbResult {
    let (name, d) = verbs::find(real, arg)?;
    if d.dom == 0 {
        return Err("this is Domain-0's console already".into());
    }
    if let Some(k @ ("serial" | "vuart")) = kind {
        return Err(format!(
            "domain {} ({name}) has no {k} console: Xenia's domains have one PV console",
            d.dom
        ));
    }
    if let Some(n) = num
        && xl::cli::getopt::strtol(n) != Some(0)
    {
        return Err(format!(
            "domain {} ({name}) has no console {n}: Xenia's domains have one, number 0",
            d.dom
        ));
    }
    let con: File = real.open_console(d.dom).map_err(|e| match e {
        Errno::ESRCH => format!(
            "domain {} ({name}) has no console served by the dom0 kernel (it has none, or xl did \
             not create it)",
            d.dom
        ),
        e => format!("cannot attach to the console of domain {}: {e}", d.dom),
    })?;
    eprint!("{}", console::attach_banner(d.dom, &name));
    if start {
        verbs::System::unpause(real, d.dom).map_err(|e| {
            format!(
                "cannot start domain {} ({name}): the hypervisor said {e}",
                d.dom
            )
        })?;
    }
    let end = copy_loop(real, &con, d.dom, d.handle)?;
    print_out(&console::end_message(end, d.dom));
    Ok(())
}

fn print_out(s: &str) {
    let _ = sys::write_all(STDOUT, s.as_bytes());
}

fn copy_loop(real: &mut Real, con: &File, dom: u16, handle: [u8; 16]) -> VerbResult<End> {
    let _raw = sys::RawInput::new(STDIN);
    let cfd = con.as_raw_fd();
    let mut buf = vec![0u8; 4096];
    let fail = |what: &str, e: Errno| format!("console of domain {dom}: {what} failed ({e})");
    loop {
        // A bounded wait, so a destroyed domain is noticed even if its
        // console never says so.
        let ready = sys::poll_readable(&[STDIN, cfd], 1000).map_err(|e| fail("poll", e))?;
        if ready[1] {
            let n = sys::read(cfd, &mut buf).map_err(|e| fail("reading its output", e))?;
            if n == 0 {
                return Ok(End::DomainGone);
            }
            sys::write_all(STDOUT, &buf[..n]).map_err(|e| fail("writing to the terminal", e))?;
        }
        if ready[0] {
            let n = sys::read(STDIN, &mut buf).map_err(|e| fail("reading the keyboard", e))?;
            let (send, detach) = console::scan_input(&buf[..n]);
            sys::write_all(cfd, &buf[..send]).map_err(|e| fail("sending input", e))?;
            if detach {
                return Ok(End::Detached);
            }
        }
        if !ready[0] && !ready[1] {
            match real.xen.domain_info(dom) {
                Ok(i) if i.handle == handle => {}
                _ => return Ok(End::DomainGone),
            }
        }
    }
}
