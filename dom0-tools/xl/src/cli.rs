//! xl's command line, as Xen's `xl` spells it: the verbs, their options
//! and arguments. Parsing only; what each verb does lives in the toolstack.

use clap::{Parser, Subcommand};

/// xl: create, list and control Xenia domains from dom0.
#[derive(Debug, Parser, PartialEq, Eq)]
#[command(name = "xl", version, about, disable_help_subcommand = true)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The verbs. Where a verb takes a domain, it is a name or a numeric id.
#[derive(Debug, Subcommand, PartialEq, Eq)]
pub enum Command {
    /// Create a domain from a config file; `key=value` arguments override
    /// the file's settings.
    Create {
        /// Attach to the domain's console once it is created.
        #[arg(short = 'c')]
        console: bool,
        /// Leave the domain paused after creating it.
        #[arg(short = 'p')]
        paused: bool,
        /// The config file (xl.cfg syntax).
        config: String,
        /// Settings that override the file's, each `key=value`.
        overrides: Vec<String>,
    },
    /// List domains: name, id, memory, vCPUs, state and CPU time.
    List {
        /// Also print each domain's configuration and UUID.
        #[arg(short = 'l', long = "long")]
        long: bool,
        /// Only these domains (all when none is given).
        domains: Vec<String>,
    },
    /// Destroy a domain at once, without asking its kernel.
    Destroy {
        /// The domain.
        domain: String,
    },
    /// Ask a domain's kernel to shut down.
    Shutdown {
        /// Wait until the domain has shut down.
        #[arg(short = 'w', long = "wait")]
        wait: bool,
        /// The domain.
        domain: String,
    },
    /// Ask a domain's kernel to reboot.
    Reboot {
        /// Wait until the domain has shut down for the reboot.
        #[arg(short = 'w', long = "wait")]
        wait: bool,
        /// The domain.
        domain: String,
    },
    /// Stop scheduling a domain's vCPUs.
    Pause {
        /// The domain.
        domain: String,
    },
    /// Schedule a paused domain's vCPUs again.
    Unpause {
        /// The domain.
        domain: String,
    },
    /// Attach to a domain's console; Ctrl-] detaches.
    Console {
        /// The domain.
        domain: String,
    },
    /// The host: hypervisor version, CPUs, memory, scheduler.
    Info {
        /// Also print the NUMA and CPU topology.
        #[arg(short = 'n', long = "numa")]
        numa: bool,
        /// Print only the value of this field (of the fields whose name starts with it).
        field: Option<String>,
    },
    /// The hypervisor's log.
    Dmesg {
        /// Clear the log after printing it.
        #[arg(short = 'c', long = "clear")]
        clear: bool,
    },
    /// Each vCPU: its domain, state, CPU time and affinity.
    #[command(name = "vcpu-list")]
    VcpuList {
        /// Only these domains (all when none is given).
        domains: Vec<String>,
    },
    /// Set the CPUs a domain's vCPUs may run on (hard) and prefer (soft), in xl's CPU-list
    /// syntax (`all`, `2`, `0-2,5`, `0-3,^2`); `-` leaves a mask as it is.
    #[command(name = "vcpu-pin")]
    VcpuPin {
        /// The domain.
        domain: String,
        /// A vCPU number, or `all`.
        vcpu: String,
        /// The hard affinity, or `-`.
        #[arg(allow_hyphen_values = true)]
        hard: String,
        /// The soft affinity (recorded, not used by Xenia's scheduler), or `-`.
        #[arg(allow_hyphen_values = true)]
        soft: Option<String>,
    },
    /// Bring a running domain's vCPUs up or down to `count`, through xenstore (the guest
    /// takes them out of use and down, or brings them up).
    #[command(name = "vcpu-set")]
    VcpuSet {
        /// Allow more vCPUs than the host has CPUs.
        #[arg(short = 'i', long = "ignore-host")]
        ignore_host: bool,
        /// The domain.
        domain: String,
        /// How many vCPUs should be online, 1 to the domain's `maxvcpus`.
        count: String,
    },
    /// Show or change credit-scheduler weights and caps.
    #[command(name = "sched-credit")]
    SchedCredit {
        /// The domain to show or change (all when omitted).
        #[arg(short = 'd', long = "domain")]
        domain: Option<String>,
        /// New weight (1 to 65535; 256 is the default).
        #[arg(short = 'w', long = "weight", value_parser = clap::value_parser!(u16).range(1..))]
        weight: Option<u16>,
        /// New cap in percent of one CPU (0 for none).
        #[arg(short = 'c', long = "cap")]
        cap: Option<u16>,
    },
    /// Set a domain's current memory target (KiB unless a suffix b, k, m,
    /// g or t says otherwise).
    #[command(name = "mem-set")]
    MemSet {
        /// The domain.
        domain: String,
        /// The new target, e.g. `64m`.
        memory: String,
    },
    /// Set the most memory a domain may have (same units as mem-set).
    #[command(name = "mem-max")]
    MemMax {
        /// The domain.
        domain: String,
        /// The new limit, e.g. `128m`.
        memory: String,
    },
    /// How long each domain has been running.
    Uptime {
        /// Short form, like uptime(1).
        #[arg(short = 's', long = "short")]
        short: bool,
        /// Only these domains (all when none is given).
        domains: Vec<String>,
    },
    /// A refreshing table of domains' CPU, memory and vCPUs; `q` quits.
    Top {
        /// Seconds between refreshes.
        #[arg(short = 'd', long = "delay", default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=3600))]
        delay: u32,
    },
}

/// Parses xl's arguments (`args[0]` is the program name).
pub fn parse<I, T>(args: I) -> Result<Cli, clap::Error>
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    Cli::try_parse_from(args)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    fn cmd(args: &[&str]) -> Command {
        let mut all = vec!["xl"];
        all.extend_from_slice(args);
        parse(all)
            .unwrap_or_else(|e| panic!("{args:?}: {e}"))
            .command
    }

    fn refused(args: &[&str]) -> String {
        let mut all = vec!["xl"];
        all.extend_from_slice(args);
        parse(all).expect_err("should be refused").to_string()
    }

    #[test]
    fn definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn create_with_flags_and_overrides() {
        assert_eq!(
            cmd(&[
                "create",
                "-c",
                "-p",
                "/etc/xen/hello.cfg",
                "memory=32",
                "name=h2"
            ]),
            Command::Create {
                console: true,
                paused: true,
                config: "/etc/xen/hello.cfg".into(),
                overrides: vec!["memory=32".into(), "name=h2".into()],
            }
        );
        assert_eq!(
            cmd(&["create", "a.cfg"]),
            Command::Create {
                console: false,
                paused: false,
                config: "a.cfg".into(),
                overrides: vec![],
            }
        );
        assert!(refused(&["create"]).contains("<CONFIG>"));
    }

    #[test]
    fn list_and_domain_verbs() {
        assert_eq!(
            cmd(&["list"]),
            Command::List {
                long: false,
                domains: vec![]
            }
        );
        assert_eq!(
            cmd(&["list", "-l", "hello", "3"]),
            Command::List {
                long: true,
                domains: vec!["hello".into(), "3".into()]
            }
        );
        assert_eq!(
            cmd(&["destroy", "7"]),
            Command::Destroy { domain: "7".into() }
        );
        assert_eq!(cmd(&["pause", "h"]), Command::Pause { domain: "h".into() });
        assert_eq!(
            cmd(&["unpause", "h"]),
            Command::Unpause { domain: "h".into() }
        );
        assert_eq!(
            cmd(&["console", "h"]),
            Command::Console { domain: "h".into() }
        );
        assert_eq!(
            cmd(&["shutdown", "-w", "h"]),
            Command::Shutdown {
                wait: true,
                domain: "h".into()
            }
        );
        assert_eq!(
            cmd(&["reboot", "h"]),
            Command::Reboot {
                wait: false,
                domain: "h".into()
            }
        );
        assert!(refused(&["destroy"]).contains("<DOMAIN>"));
    }

    #[test]
    fn host_verbs() {
        assert_eq!(
            cmd(&["info"]),
            Command::Info {
                numa: false,
                field: None
            }
        );
        assert_eq!(
            cmd(&["info", "-n", "free_memory"]),
            Command::Info {
                numa: true,
                field: Some("free_memory".into())
            }
        );
        assert_eq!(cmd(&["dmesg", "-c"]), Command::Dmesg { clear: true });
        assert_eq!(cmd(&["vcpu-list"]), Command::VcpuList { domains: vec![] });
        assert_eq!(
            cmd(&["vcpu-set", "-i", "guest", "3"]),
            Command::VcpuSet {
                ignore_host: true,
                domain: "guest".into(),
                count: "3".into()
            }
        );
        assert_eq!(
            cmd(&["vcpu-pin", "web", "all", "0-3,^2"]),
            Command::VcpuPin {
                domain: "web".into(),
                vcpu: "all".into(),
                hard: "0-3,^2".into(),
                soft: None,
            }
        );
        assert_eq!(
            cmd(&["vcpu-pin", "3", "1", "-", "^1"]),
            Command::VcpuPin {
                domain: "3".into(),
                vcpu: "1".into(),
                hard: "-".into(),
                soft: Some("^1".into()),
            }
        );
        assert_eq!(
            cmd(&["uptime", "-s"]),
            Command::Uptime {
                short: true,
                domains: vec![]
            }
        );
        assert_eq!(cmd(&["top"]), Command::Top { delay: 1 });
        assert_eq!(cmd(&["top", "-d", "2"]), Command::Top { delay: 2 });
        assert!(refused(&["top", "-d", "0"]).contains("0"));
    }

    #[test]
    fn sched_credit_and_memory() {
        assert_eq!(
            cmd(&["sched-credit"]),
            Command::SchedCredit {
                domain: None,
                weight: None,
                cap: None
            }
        );
        assert_eq!(
            cmd(&["sched-credit", "-d", "h", "-w", "512", "-c", "50"]),
            Command::SchedCredit {
                domain: Some("h".into()),
                weight: Some(512),
                cap: Some(50)
            }
        );
        // A weight past u16 is refused by the parser, naming the value.
        assert!(refused(&["sched-credit", "-d", "h", "-w", "70000"]).contains("70000"));
        assert!(refused(&["sched-credit", "-d", "h", "-w", "0"]).contains("'0'"));
        assert_eq!(
            cmd(&["mem-set", "h", "64m"]),
            Command::MemSet {
                domain: "h".into(),
                memory: "64m".into()
            }
        );
        assert_eq!(
            cmd(&["mem-max", "h", "128m"]),
            Command::MemMax {
                domain: "h".into(),
                memory: "128m".into()
            }
        );
    }

    #[test]
    fn unknown_verb_is_refused() {
        assert!(refused(&["frobnicate"]).contains("frobnicate"));
    }
}
