//! xl as a Xen operator types it, compared with Xen 4.17's xl byte for byte: every expected
//! line here is rendered from Xen's own format strings and texts (`tools/xl/xl.c`,
//! `xl_cmdtable.c`, `xl_utils.c`, `xl_info.c`, `xl_misc.c`, `xl_sched.c`,
//! `xl_vmcontrol.c`, and yajl's generator for the JSON), never from xl's code, so a
//! difference in spacing, wording or exit status fails. Values that change from run to run
//! (CPU time, UUIDs) are read from the output and the line is rendered again around them.
//!
//! The exit status is read from dom0's shell, which prints `xl: exited with status N`
//! after a program that did not exit with 0.

use crate::machine::Qemu;
use crate::runner::Context;

use super::operator::{Initrd, boot_with};
use super::xl::{COMMAND, Row, boot, parse_list, run, until_prompt};

/// What the shell says after a failing program.
fn status(n: u8) -> String {
    format!("xl: exited with status {n}\n")
}

/// Whether `line` is the hypervisor's or dom0's kernel's log rather than xl's output: the
/// hypervisor logs on the same serial line while xl runs (`domain 1 created`, the debug
/// keys' report; `(XEN) ` in front once it carries Xen's prefix), and so does dom0's kernel
/// (`dom0: ...`).
fn log_line(line: &str) -> bool {
    let domain_n = line
        .strip_prefix("domain ")
        .is_some_and(|r| r.starts_with(|c: char| c.is_ascii_digit()));
    domain_n
        || line.starts_with("(XEN)")
        || line.starts_with("dom0: ")
        || line.starts_with("memory: ")
        || line.starts_with("debug keys: ")
}

/// Runs `xl <args>` at the prompt: what it printed (stdout and stderr as the console shows
/// them, the shell's status line included), without the echoed command, carriage returns
/// and log lines of others.
fn xl(vm: &mut Qemu, args: &str) -> Result<String, String> {
    shell(vm, &format!("xl {args}"))
}

/// Runs `line` at the prompt: what the program printed, as [`xl`] returns it.
fn shell(vm: &mut Qemu, line: &str) -> Result<String, String> {
    let raw = run(vm, line)?.replace('\r', "");
    let mut lines = raw.split_inclusive('\n');
    lines.next(); // The command, echoed.
    Ok(lines
        .filter(|l| !log_line(l.trim_end_matches('\n')))
        .collect())
}

/// `xl <args>` must print exactly `want`.
fn exact(vm: &mut Qemu, args: &str, want: &str) -> Result<String, String> {
    let got = xl(vm, args)?;
    if got != want {
        return Err(format!(
            "`xl {args}` differs from Xen's xl\n--- expected\n{want}--- got\n{got}---\n\
             expected {want:?}\ngot      {got:?}"
        ));
    }
    Ok(got)
}

/// Xen's `help(command)`: `"Usage: xl [-vtT%s%s] %s %s\n\n%s.\n\n"` and, when the verb has
/// options, `"Options:\n\n%s\n"`.
fn verb_help(
    name: &str,
    modifies: bool,
    dryrun: bool,
    usage: &str,
    desc: &str,
    opts: Option<&str>,
) -> String {
    let mut s = format!(
        "Usage: xl [-vtT{}{}] {} {}\n\n{}.\n\n",
        if modifies { "f" } else { "" },
        if dryrun { "N" } else { "" },
        name,
        usage,
        desc
    );
    if let Some(o) = opts {
        s += &format!("Options:\n\n{o}\n");
    }
    s
}

/// `xl list -h`, from `xl_cmdtable.c`.
fn list_help() -> String {
    verb_help(
        "list",
        false,
        false,
        "[options] [Domain]\n",
        "List information about all/some domains",
        Some(
            "-l, --long              Output all VM details\n\
             -v, --verbose           Prints out UUIDs and security context\n\
             -Z, --context           Prints out security context\n\
             -c, --cpupool           Prints the cpupool the domain is in\n\
             -n, --numa              Prints out NUMA node affinity",
        ),
    )
}

/// `xl list`'s header (`list_domains`).
const LIST_HEADER: &str =
    "Name                                        ID   Mem VCPUs\tState\tTime(s)";

/// One `xl list` row re-rendered from its own fields with
/// `"%-40s %5d %5lu %5d     %c%c%c%c%c%c  %8.1f"`; the fields after those, as printed.
fn rerender_row(line: &str) -> Result<(String, Vec<String>), String> {
    let f: Vec<&str> = line.split_whitespace().collect();
    if f.len() < 6 {
        return Err(format!("`xl list` row {line:?} has too few fields"));
    }
    let base = format!(
        "{:<40} {:>5} {:>5} {:>5}     {}  {:>8}",
        f[0], f[1], f[2], f[3], f[4], f[5]
    );
    Ok((base, f[6..].iter().map(|s| s.to_string()).collect()))
}

/// Whether `u` is a UUID as libxl prints one (`LIBXL_UUID_FMT`, lowercase hex 8-4-4-4-12).
fn is_uuid(u: &str) -> bool {
    let groups: Vec<&str> = u.split('-').collect();
    groups.iter().map(|g| g.len()).eq([8, 4, 4, 4, 12])
        && groups.iter().all(|g| {
            g.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        })
}

/// The yajl-beautified `libxl_domain_config` xl prints for a Xenia domain made from
/// `/etc/xen/hello.cfg` (16 MiB, one vCPU, `/boot/echo.elf`, restart on reboot), `depth`
/// levels deep (2 after `"config": ` in `xl list -l`).
fn hello_config(name: &str, uuid: &str, depth: usize) -> String {
    let body = format!(
        r#"{{
    "c_info": {{
        "type": "pv",
        "name": "{name}",
        "uuid": "{uuid}"
    }},
    "b_info": {{
        "max_vcpus": 1,
        "avail_vcpus": [
            0
        ],
        "max_memkb": 16384,
        "target_memkb": 16384,
        "sched_params": {{
            "sched": "credit",
            "weight": 256,
            "cap": 0
        }},
        "kernel": "/boot/echo.elf",
        "type.pv": {{

        }},
        "arch_arm": {{

        }},
        "arch_x86": {{

        }}
    }},
    "on_reboot": "restart",
    "on_soft_reset": "restart"
}}"#
    );
    let pad = "    ".repeat(depth);
    body.lines()
        .enumerate()
        .map(|(i, l)| {
            if i == 0 || l.is_empty() {
                l.to_string()
            } else {
                format!("{pad}{l}")
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// `operator_xl_verbs`: Xen's words for verbs Xenia lacks, unknown words, help and usage
/// errors; then the verbs and options of issue 14 on real domains: `create -n` and `-q`,
/// `domid`, `domname`, `rename`, `vm-list`, `list -v`, `-n`, `-c`, `-l`, `sched-credit`
/// with its cpupool line, `sysrq`, `debug-keys`, `destroy` of dom0, `shutdown -a -w`.
pub fn verbs(ctx: &Context) -> Result<(), String> {
    let mut vm = boot(ctx)?;
    let vm = &mut vm;

    // Verbs of Xen's that Xenia lacks, words that are no verb, and prefixes.
    exact(
        vm,
        "restore /tmp/saved",
        &format!("xl: 'restore' is not implemented by Xenia\n{}", status(1)),
    )?;
    exact(
        vm,
        "rest",
        &format!("xl: 'restore' is not implemented by Xenia\n{}", status(1)),
    )?;
    exact(
        vm,
        "frobnicate",
        &format!("command not implemented\n{}", status(1)),
    )?;

    // Help: `xl help` and `xl --help` alike, Xen's list format.
    let help = xl(vm, "help")?;
    if xl(vm, "--help")? != help {
        return Err("`xl --help` differs from `xl help`".into());
    }
    let head = "Usage xl [-vfNtT] <subcommand> [args]\n\nxl full list of subcommands:\n\n";
    if !help.starts_with(head) {
        return Err(format!("`xl help` does not start as Xen's: {help:?}"));
    }
    for (verb, desc) in [
        ("create", "Create a domain from config file <filename>"),
        ("list", "List information about all/some domains"),
        ("rename", "Rename a domain"),
        ("debug-keys", "Send debug keys to Xen"),
        ("sched-credit", "Get/set credit scheduler parameters"),
    ] {
        let line = format!(" {verb:<19} {desc}\n");
        if !help.contains(&line) {
            return Err(format!("`xl help` lacks {line:?}: {help:?}"));
        }
    }
    exact(vm, "list -h", &list_help())?;
    exact(vm, "li --help", &list_help())?;
    exact(
        vm,
        "help rename",
        &verb_help(
            "rename",
            true,
            false,
            "<Domain> <NewDomainName>",
            "Rename a domain",
            None,
        ),
    )?;

    // Usage errors: Xen's words and statuses.
    exact(
        vm,
        "list -x",
        &format!("option `x' not supported.\n{}", status(2)),
    )?;
    let destroy_help = verb_help(
        "destroy",
        true,
        false,
        "[options] <Domain>\n",
        "Terminate a domain immediately",
        Some(
            "-f                      Permit destroying domain 0, which will only succeed\n                        \
             when run from disaggregated toolstack domain with a\n                        \
             hardware domain distinct from domain 0.",
        ),
    );
    exact(
        vm,
        "destroy",
        &format!(
            "'xl destroy' requires at least 1 argument.\n\n{destroy_help}{}",
            status(2)
        ),
    )?;
    exact(
        vm,
        "-N list",
        &format!(
            "command does not implement -N (dryrun) option\n{}",
            status(1)
        ),
    )?;
    exact(
        vm,
        "shutdown",
        &format!("You must specify -a or a domain id.\n\n{}", status(1)),
    )?;
    exact(
        vm,
        "destroy 0",
        &format!(
            "Not destroying domain 0; use -f to force.\nThis can only be done when using a \
             disaggregated hardware domain and toolstack.\n\n{}",
            status(1)
        ),
    )?;

    // Names and ids.
    exact(vm, "domid Domain-0", "0\n")?;
    exact(vm, "domname 0", "Domain-0\n")?;
    exact(
        vm,
        "domname x",
        &format!("Invalid domain id.\n\n{}", status(1)),
    )?;
    exact(
        vm,
        "domid nope",
        &format!(
            "Can't get domid of domain name 'nope', maybe this domain does not exist.\n{}",
            status(1)
        ),
    )?;

    // The scheduler: the cpupool line with the hypervisor's values (30 ms slice; no rate
    // limit or migration delay in Xenia's credit scheduler).
    let pool = format!(
        "Cpupool {}: tslice={}ms ratelimit={}us migration-delay={}us\n",
        "Pool-0", 30, 0, 0
    );
    exact(vm, "sched-credit -s", &pool)?;

    // A dry run: the configuration, nothing created.
    let dry = xl(vm, "create -n /etc/xen/hello.cfg 'name=\"dry\"'")?;
    let uuid_at = dry.find("\"uuid\": \"").map(|i| i + 9);
    let uuid = uuid_at.and_then(|i| dry.get(i..i + 36)).unwrap_or("");
    if !is_uuid(uuid) {
        return Err(format!("`xl create -n` printed no UUID: {dry:?}"));
    }
    let want = format!(
        "Parsing config from /etc/xen/hello.cfg\n{}\n",
        hello_config("dry", uuid, 0)
    );
    if dry != want {
        return Err(format!(
            "`xl create -n` differs:\nexpected {want:?}\ngot      {dry:?}"
        ));
    }
    let rows = parse_list(&xl(vm, "list")?)?;
    if rows.len() != 1 {
        return Err(format!("`xl create -n` created something: {rows:?}"));
    }

    // Two domains, one created quietly and renamed.
    let out = xl(vm, "create /etc/xen/hello.cfg")?;
    let hello = out
        .strip_prefix("Parsing config from /etc/xen/hello.cfg\nDomain hello created with id ")
        .and_then(|r| r.trim_end().parse::<u32>().ok())
        .ok_or_else(|| format!("`xl create` said {out:?}"))?;
    exact(vm, "create -q /etc/xen/hello.cfg 'name=\"quiet\"'", "")?;
    exact(vm, "domid hello", &format!("{hello}\n"))?;
    let quiet: u32 = xl(vm, "domid quiet")?
        .trim()
        .parse()
        .map_err(|_| "`xl domid quiet` is not a number")?;
    exact(vm, &format!("domname {quiet}"), "quiet\n")?;
    exact(vm, "rename quiet calm", "")?;
    exact(vm, "domid calm", &format!("{quiet}\n"))?;
    exact(
        vm,
        "rename calm hello",
        &format!(
            "xl: a domain named \"hello\" already exists\nCan't rename domain 'calm'.\n{}",
            status(1)
        ),
    )?;

    // vm-list: `"UUID  ID    name"` and `LIBXL_UUID_FMT "  %d    %-30s\n"`.
    let vms = xl(vm, "vm-list")?;
    let mut uuids = std::collections::BTreeMap::new();
    let mut want = String::from("UUID                                  ID    name\n");
    for line in vms.lines().skip(1) {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() != 3 || !is_uuid(f[0]) {
            return Err(format!("`xl vm-list` row {line:?}"));
        }
        want += &format!("{}  {}    {:<30}\n", f[0], f[1], f[2]);
        uuids.insert(f[2].to_string(), f[0].to_string());
    }
    if vms != want || uuids.len() != 3 || !uuids.contains_key("calm") {
        return Err(format!(
            "`xl vm-list` differs:\nexpected {want:?}\ngot      {vms:?}"
        ));
    }

    // list -v, -n, -c: each row re-rendered with Xen's formats for the added columns.
    // The added columns after each row, from the domain's UUID: `" %s"` UUID, `" %8s"` `-`
    // (not shut down) and `" %16s"` `-` (no security label) for -v; a space and
    // `print_bitmap` of the one node for -n; `"%16s"` pool name for -c.
    type Extra = fn(&str) -> String;
    let columns: [(&str, &str, Extra); 3] = [
        (
            "-v",
            "   UUID                            Reason-Code\tSecurity Label",
            |uuid| format!(" {uuid} {:>8} {:>16}", "-", "-"),
        ),
        ("-n", " NODE Affinity", |_| " all".to_string()),
        ("-c", "         Cpupool", |_| format!("{:>16}", "Pool-0")),
    ];
    for (opt, header, extra) in columns {
        let out = xl(vm, &format!("list {opt}"))?;
        let mut want = format!("{LIST_HEADER}{header}\n");
        for line in out.lines().skip(1) {
            let (base, _) = rerender_row(line)?;
            let name = line.split_whitespace().next().unwrap_or("");
            let uuid = uuids.get(name).map_or("", String::as_str);
            want += &format!("{base}{}\n", extra(uuid));
        }
        if out != want || out.lines().count() != 4 {
            return Err(format!(
                "`xl list {opt}` differs:\nexpected {want:?}\ngot      {out:?}"
            ));
        }
    }
    // list -l: libxl's JSON, with what the configuration says.
    let calm = hello_config("calm", &uuids["calm"], 2);
    exact(
        vm,
        "list -l calm",
        &format!(
            "[\n    {{\n        \"domid\": {quiet},\n        \"config\": {calm}\n    }}\n]\n\n"
        ),
    )?;

    // sched-credit: the cpupool line, then `"%-33s %4s %6s %4s"` and `"%-33s %4d %6d %4d"`.
    let mut want = pool.clone();
    want += &format!("{:<33} {:>4} {:>6} {:>4}\n", "Name", "ID", "Weight", "Cap");
    for (name, id) in [("Domain-0", 0), ("hello", hello), ("calm", quiet)] {
        want += &format!("{name:<33} {id:>4} {:>6} {:>4}\n", 256, 0);
    }
    exact(vm, "sched-credit", &want)?;

    // sysrq writes the domain's control/sysrq; debug keys run in the hypervisor.
    exact(vm, "sysrq hello s", "")?;
    let raw = run(vm, "xl debug-keys q")?.replace('\r', "");
    let report = format!("domain {quiet}: 4096 pages");
    if !raw.contains(&report) {
        return Err(format!("`xl debug-keys q`: no {report:?} in {raw:?}"));
    }
    // Unfiltered: the report is a log line.
    if !run(vm, "xl dmesg")?.contains(&report) {
        return Err(format!("`xl dmesg` lacks the debug keys' {report:?}"));
    }

    // shutdown -a -w: every domain but dom0, Xen's messages (the two may finish in
    // either order).
    let out = xl(vm, "shutdown -a -w")?;
    let (first, second) = (hello.min(quiet), hello.max(quiet));
    let head = format!(
        "Shutting down domain {first}\nShutting down domain {second}\nWaiting for 2 domains\n"
    );
    let done = |a: u32, b: u32| {
        format!(
            "{head}Domain {a} has been shut down, reason code 0\n\
             Domain {b} has been shut down, reason code 0\n"
        )
    };
    if out != done(first, second) && out != done(second, first) {
        return Err(format!("`xl shutdown -a -w` said {out:?}"));
    }
    let mut rows: Vec<Row> = Vec::new();
    for _ in 0..50 {
        rows = parse_list(&xl(vm, "list")?)?;
        if rows.len() == 1 {
            break;
        }
    }
    if rows.len() != 1 {
        return Err(format!("after `xl shutdown -a`: {rows:?}"));
    }
    ctx.note(format!(
        "every output compared with Xen's formats; domains {hello} and {quiet} (renamed calm)"
    ));
    vm.kill();
    Ok(())
}

/// The JSON number after `"key": ` in `text`, the first time it appears.
fn json_number(text: &str, key: &str) -> Option<u64> {
    let at = text.find(&format!("\"{key}\": "))? + key.len() + 4;
    let digits: String = text[at..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().ok()
}

/// Domain-0's entry of `xl list -l` as Xen shows it: the stub configuration `xen-init-dom0`
/// stores (type; its UUID, left out while nil), completed by libxl from the hypervisor
/// (name, memory, scheduler), two levels deep.
fn dom0_config(max_memkb: u64, target_memkb: u64) -> String {
    format!(
        r#"{{
            "c_info": {{
                "type": "pv",
                "name": "Domain-0"
            }},
            "b_info": {{
                "max_memkb": {max_memkb},
                "target_memkb": {target_memkb},
                "sched_params": {{
                    "sched": "credit",
                    "weight": 256,
                    "cap": 0
                }},
                "type.pv": {{

                }},
                "arch_arm": {{

                }},
                "arch_x86": {{

                }}
            }}
        }}"#
    )
}

/// `operator_xl_config_keys`: a configuration written at the prompt (busybox's `sh`, from
/// the scenarios' initrd) with `uuid=`, a `vtpm=` line and a typo. `xl create` warns about the vtpm with what it means and about the typo
/// as an unknown key; the domain has the UUID given (`xl list -v`, `xl vm-list`, `xl list
/// -l`, lowercase as libxl prints it); `xl list -l` is libxl's JSON for it and for
/// Domain-0; `builder="hvm"` and a malformed UUID are refused with the line named.
pub fn config_keys(ctx: &Context) -> Result<(), String> {
    let mut vm = boot_with(ctx, "", Initrd::Test)?;
    let vm = &mut vm;
    let written = run(
        vm,
        r#"sh -c 'printf "name = \"uu\"\nkernel = \"/boot/echo.elf\"\nmemory = 16\nuuid = \"6F9619FF-8B86-D011-B42D-00C04FC964FF\"\nvtpm = [ \"backend=0\" ]\nmemroy = 16\n" > /etc/xen/uu.cfg && echo written'"#,
    )?;
    if !written.contains("\nwritten") {
        return Err(format!("writing /etc/xen/uu.cfg: {written:?}"));
    }
    let out = xl(vm, "create /etc/xen/uu.cfg")?;
    let warnings = "Parsing config from /etc/xen/uu.cfg\n\
         xl: warning: /etc/xen/uu.cfg:5: 'vtpm' is not implemented by Xenia (ignored): the \
         domain will have no virtual TPM\n\
         xl: warning: /etc/xen/uu.cfg:6: unknown key 'memroy' ignored\n\
         Domain uu created with id ";
    let dom: u32 = out
        .strip_prefix(warnings)
        .and_then(|r| r.trim_end().parse().ok())
        .ok_or_else(|| format!("`xl create` said\n{out}expected\n{warnings}<id>"))?;
    let uuid = "6f9619ff-8b86-d011-b42d-00c04fc964ff";

    // list -v: the row re-rendered with the UUID given.
    let out = xl(vm, "list -v uu")?;
    let row = out.lines().nth(1).unwrap_or("");
    let (base, _) = rerender_row(row)?;
    let want = format!(
        "{LIST_HEADER}   UUID                            Reason-Code\tSecurity Label\n\
         {base} {uuid} {:>8} {:>16}\n",
        "-", "-"
    );
    if out != want {
        return Err(format!(
            "`xl list -v uu` differs:\nexpected {want:?}\ngot      {out:?}"
        ));
    }
    exact(
        vm,
        "vm-list",
        &format!(
            "UUID                                  ID    name\n\
             {}  0    {:<30}\n{uuid}  {dom}    {:<30}\n",
            "00000000-0000-0000-0000-000000000000", "Domain-0", "uu"
        ),
    )?;

    // list -l: libxl's JSON for both domains, dom0's memory read from it.
    let out = xl(vm, "list -l")?;
    let (max_kb, target_kb) = (
        json_number(&out, "max_memkb"),
        json_number(&out, "target_memkb"),
    );
    let (Some(max_kb), Some(target_kb)) = (max_kb, target_kb) else {
        return Err(format!(
            "`xl list -l` shows no memory for Domain-0: {out:?}"
        ));
    };
    let want = format!(
        "[\n    {{\n        \"domid\": 0,\n        \"config\": {}\n    }},\n    \
         {{\n        \"domid\": {dom},\n        \"config\": {}\n    }}\n]\n\n",
        dom0_config(max_kb, target_kb),
        hello_config("uu", uuid, 2)
    );
    if out != want {
        return Err(format!(
            "`xl list -l` differs from Xen's\n--- expected\n{want}--- got\n{out}---\n\
             expected {want:?}\ngot      {out:?}"
        ));
    }

    // builder="hvm" as type="hvm"; a malformed UUID names its line. Nothing is created.
    exact(
        vm,
        "create /etc/xen/uu.cfg 'name=\"vv\"' 'builder=\"hvm\"'",
        &format!(
            "Parsing config from /etc/xen/uu.cfg\n\
             xl: cannot create a domain from /etc/xen/uu.cfg: <command line>:2: builder = \
             \"hvm\" is not supported by Xenia (only \"pv\", which builder = \"generic\" \
             selects)\n{}",
            status(1)
        ),
    )?;
    let out = xl(
        vm,
        "create -q /etc/xen/uu.cfg 'name=\"vv\"' 'uuid=\"6f9619ff-8b86\"'",
    )?;
    let want = format!(
        "xl: cannot create a domain from /etc/xen/uu.cfg: <command line>:2: 'uuid' must be 32 \
         hex digits grouped 8-4-4-4-12 (xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx), got \
         \"6f9619ff-8b86\"\n{}",
        status(1)
    );
    if !out.ends_with(&want) {
        return Err(format!(
            "a bad uuid= said {out:?}, expected it to end {want:?}"
        ));
    }
    let rows = parse_list(&xl(vm, "list")?)?;
    if rows.len() != 2 {
        return Err(format!(
            "a refused configuration created something: {rows:?}"
        ));
    }
    exact(vm, "destroy uu", "")?;
    ctx.note(format!(
        "domain {dom} made with uuid {uuid}; warnings, list -v, vm-list and list -l as Xen's"
    ));
    vm.kill();
    Ok(())
}

/// xentop's columns with their default widths (`fields[]` in Xen 4.17's
/// `tools/xentop/xentop.c`).
const XENTOP_FIELDS: [(&str, usize); 19] = [
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

/// xentop's header (`do_header`: `"%*s"` per column, one space between).
fn xentop_header() -> String {
    XENTOP_FIELDS
        .iter()
        .map(|&(h, w)| format!("{h:>w$}"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// A xentop row re-rendered from its own fields with each column's `print_*` format
/// (`%10.10s`, the six state letters, `%10llu`, `%6.1f`, `%10llu`, `%6.1f`, `%10llu`,
/// `%9.1f`, `%5u`, `%4u`, `%8llu` twice, `%4u`, `%8llu` three times, `%10llu` twice, `%4u`);
/// also checks that each field has its conversion's form. Returns the fields.
fn rerender_xentop_row(line: &str) -> Result<Vec<String>, String> {
    let f: Vec<&str> = line.split_whitespace().collect();
    let bad = |why: &str| Err(format!("xentop row {line:?}: {why}"));
    if f.len() != XENTOP_FIELDS.len() {
        return bad("not 19 fields");
    }
    let state_ok = f[1].len() == 6
        && f[1]
            .chars()
            .zip("dsbcpr".chars())
            .all(|(c, l)| c == l || c == '-');
    if !state_ok {
        return bad("STATE is not xentop's six flags");
    }
    let one_decimal = |s: &str| {
        s.split_once('.').is_some_and(|(i, d)| {
            !i.is_empty()
                && i.bytes().all(|b| b.is_ascii_digit())
                && d.len() == 1
                && d.bytes().all(|b| b.is_ascii_digit())
        })
    };
    for (i, v) in f.iter().enumerate().skip(2) {
        let ok = if [3, 5, 7].contains(&i) {
            one_decimal(v)
        } else {
            v.parse::<u64>().is_ok()
        };
        if !ok {
            return bad(&format!("{} is {v:?}", XENTOP_FIELDS[i].0));
        }
    }
    let again = f
        .iter()
        .zip(XENTOP_FIELDS)
        .map(|(v, (_, w))| format!("{v:>w$}"))
        .collect::<Vec<_>>()
        .join(" ");
    if again != line {
        return bad(&format!("re-rendered as {again:?}"));
    }
    Ok(f.iter().map(|s| s.to_string()).collect())
}

/// Removes the terminal's escape sequences (CSI: ESC `[`, parameters, a final letter).
fn strip_csi(s: &str) -> String {
    let mut out = String::new();
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\x1b' {
            for n in chars.by_ref() {
                if n.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// `xl info <field>`'s value.
fn info(vm: &mut Qemu, field: &str) -> Result<String, String> {
    Ok(xl(vm, &format!("info {field}"))?.trim().to_string())
}

/// `operator_xentop`: `xentop -b -i 2 -d 1` prints two samples of xentop's header and
/// Domain-0's row (batch mode has no summary, as Xen's since 2007), each line re-rendered
/// from xentop's formats, and exits 0 after the second; `-h`, `-V` and a bad option give
/// xentop's texts and status. `xl top` draws xentop's summary (time, version, domain
/// counts, memory and CPUs with the MHz of `xl info`), opens the delay prompt on `d` and
/// quits on `q`.
pub fn xentop(ctx: &Context) -> Result<(), String> {
    let mut vm = boot(ctx)?;
    let vm = &mut vm;
    let dom0 = parse_list(&xl(vm, "list")?)?
        .into_iter()
        .find(|r| r.id == 0)
        .ok_or("no Domain-0 in `xl list`")?;

    let out = shell(vm, "xentop -b -i 2 -d 1")?;
    let header = xentop_header();
    let lines: Vec<&str> = out.lines().collect();
    if lines.len() != 4 || lines.iter().any(|l| l.contains('\x1b')) {
        return Err(format!(
            "`xentop -b -i 2 -d 1`: expected two headers and two rows, no escapes, got {out:?}"
        ));
    }
    for sample in lines.chunks(2) {
        if sample[0] != header {
            return Err(format!(
                "xentop's header differs\nexpected {header:?}\ngot      {:?}",
                sample[0]
            ));
        }
        let f = rerender_xentop_row(sample[1])?;
        let want_mem = (dom0.mem * 1024).to_string();
        let checks = [
            ("NAME", f[0].as_str(), "Domain-0"),
            ("MEM(k)", &f[4], &want_mem),
            ("VCPUS", &f[8], &dom0.vcpus.to_string()),
            ("NETS", &f[9], "0"),
            ("VBDS", &f[12], "0"),
            ("SSID", &f[18], "0"),
        ];
        for (col, got, want) in checks {
            if got != want {
                return Err(format!(
                    "Domain-0's {col} is {got:?}, not {want:?}: {:?}",
                    sample[1]
                ));
            }
        }
    }

    // Help, version and a bad option: xentop's texts, status 0 (no status line).
    let usage = "Usage: xentop [OPTION]\n\
                 Displays ongoing information about xen vm resources \n\n\
                 -h, --help           display this help and exit\n\
                 -V, --version        output version information and exit\n\
                 -d, --delay=SECONDS  seconds between updates (default 3)\n\
                 -n, --networks       output vif network data\n\
                 -x, --vbds           output vbd block device data\n\
                 -r, --repeat-header  repeat table header before each domain\n\
                 -v, --vcpus          output vcpu data\n\
                 -b, --batch\t     output in batch mode, no user input accepted\n\
                 -i, --iterations     number of iterations before exiting\n\
                 -f, --full-name      output the full domain name (not truncated)\n\
                 \n\
                 Report bugs to <xen-devel@lists.xen.org>.\n";
    let exact_shell = |vm: &mut Qemu, line: &str, want: &str| -> Result<(), String> {
        let got = shell(vm, line)?;
        if got != want {
            return Err(format!("`{line}`\nexpected {want:?}\ngot      {got:?}"));
        }
        Ok(())
    };
    exact_shell(vm, "xentop -h", usage)?;
    exact_shell(
        vm,
        "xentop -k",
        &format!("xentop: invalid option -- 'k'\n{usage}"),
    )?;
    exact_shell(
        vm,
        "xentop -V",
        "xentop 1.0\nWritten by Judy Fischbach, David Hendricks, Josh Triplett\n\n\
         Copyright (C) 2005  International Business Machines  Corp\n\
         This is free software; see the source for copying conditions.There is NO\n\
         warranty; not even for MERCHANTABILITY or FITNESS FOR A PARTICULAR PURPOSE.\n",
    )?;

    // `xl top`: the summary, re-rendered with `xl info`'s values.
    let version = info(vm, "xen_version")?;
    let nr_cpus = info(vm, "nr_cpus")?;
    let mhz = info(vm, "cpu_mhz")?;
    let mhz = mhz.split('.').next().unwrap_or_default().to_string();
    let total_mib: u64 = info(vm, "total_memory")?
        .parse()
        .map_err(|_| "`xl info total_memory` is not a number")?;
    let start = vm.cursor();
    vm.send("xl top\r")?;
    vm.wait_for("ort order", COMMAND)?;
    let screen = strip_csi(&vm.serial_log()[start..]).replace('\r', "");
    let summary: Vec<&str> = screen
        .lines()
        .skip_while(|l| !l.starts_with("xentop - "))
        .take(3)
        .collect();
    let [first, counts, mem] = summary[..] else {
        return Err(format!("no xentop summary in {screen:?}"));
    };
    let time = first
        .strip_prefix("xentop - ")
        .and_then(|r| r.split_once("   "))
        .map(|(t, _)| t)
        .unwrap_or_default();
    let hms = time.split(':').collect::<Vec<_>>();
    if hms.len() != 3 || hms.iter().any(|p| p.len() != 2 || p.parse::<u8>().is_err()) {
        return Err(format!("xentop's time is not HH:MM:SS: {first:?}"));
    }
    let want = format!("xentop - {time}   Xen {version}");
    if first != want {
        return Err(format!(
            "xentop's first line\nexpected {want:?}\ngot      {first:?}"
        ));
    }
    let n: Vec<u64> = counts
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|w| w.parse().ok())
        .collect();
    let [all, run_, block, pause, crash, dying, shut] = n[..] else {
        return Err(format!("xentop's counts line {counts:?}"));
    };
    let want = format!(
        "{all} domains: {run_} running, {block} blocked, {pause} paused, {crash} crashed, \
         {dying} dying, {shut} shutdown "
    );
    if counts != want || all != 1 || run_ + block != 1 {
        return Err(format!(
            "xentop's counts\nexpected {want:?} (dom0 alone)\ngot      {counts:?}"
        ));
    }
    let k: Vec<u64> = mem
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|w| w.parse().ok())
        .collect();
    let [total, used, free, ..] = k[..] else {
        return Err(format!("xentop's memory line {mem:?}"));
    };
    let want =
        format!("Mem: {total}k total, {used}k used, {free}k free    CPUs: {nr_cpus} @ {mhz}MHz");
    if mem != want || total != used + free || total / 1024 != total_mib {
        return Err(format!(
            "xentop's memory line\nexpected {want:?} ({total_mib} MiB in all)\ngot      {mem:?}"
        ));
    }
    if !screen.contains(&header) {
        return Err(format!("no xentop header in {screen:?}"));
    }
    // `d` opens the delay prompt, Escape closes it, `q` quits.
    vm.send("d")?;
    vm.wait_for("Delay(sec): ", COMMAND)?;
    vm.send("\x1b")?;
    vm.wait_for("ort order", COMMAND)?;
    vm.send("q")?;
    let rest = until_prompt(vm, "xl top")?;
    if rest.contains("exited with status") {
        return Err(format!("`xl top` did not exit 0: {rest:?}"));
    }
    ctx.note(format!(
        "2 batch samples as xentop's; summary {first:?}, {nr_cpus} CPUs @ {mhz}MHz; d, q"
    ));
    vm.kill();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renderers() {
        assert!(is_uuid("0a1b2c3d-0000-4000-8000-00000000000f"));
        assert!(!is_uuid("0A1B2C3D-0000-4000-8000-00000000000f"));
        assert!(!is_uuid("0a1b2c3d-0000-4000-8000"));
        let (base, rest) = rerender_row(
            "Domain-0                                     0    64     1     r-----       0.3 x y",
        )
        .unwrap();
        assert_eq!(
            base,
            "Domain-0                                     0    64     1     r-----       0.3"
        );
        assert_eq!(rest, ["x", "y"]);
        assert!(log_line("domain 1 created (1 vCPUs)"));
        assert!(log_line("(XEN) anything"));
        assert!(!log_line("domain hello"));
        assert!(!log_line("Domain 1 has been shut down, reason code 0"));
        let c = hello_config("a", "u", 2);
        assert!(c.starts_with("{\n            \"c_info\": {\n"), "{c}");
        assert!(c.contains("\"type.pv\": {\n\n                },"), "{c}");
        assert!(c.ends_with("\n        }"), "{c}");
        let d = dom0_config(1, 2);
        assert!(d.starts_with("{\n            \"c_info\": {\n"), "{d}");
        assert!(d.ends_with("\n            }\n        }"), "{d}");
        assert_eq!(json_number("\"a\": 12,\n\"b\": 3", "a"), Some(12));
        assert_eq!(json_number("\"a\": 12", "b"), None);
    }
}
