//! Names and ids: `xl domid`, `xl domname`, `xl rename` and `xl vm-list` (Xen's
//! `main_domid`, `main_domname`, `main_rename` in `xl_info.c` and `xl_misc.c`, and
//! `list_vm`). Xenia keeps a domain's name where `xl create` handed it over: in dom0's
//! kernel's record (and the domain's xenstore `name`), so a domain xl did not create has
//! no name, and `rename` asks the kernel (`XENIA_IOCTL_RENAME`).

use dom0_tools::devices::{NameProblem, name_problem};
use dom0_tools::{DOM0_NAME, xlfmt};
use guest_abi::Errno;
use guest_abi::types::DomId;

use super::{Io, System, UNNAMED, VerbResult, find, named_domains, reported, uuid_string};
use crate::cli::getopt::strtol;

/// The id of the domain named `name`, if one is (a domain without a name matches none).
fn id_of(sys: &mut impl System, name: &str) -> VerbResult<Option<DomId>> {
    if name == DOM0_NAME {
        return Ok(Some(0));
    }
    let names = sys.names().map_err(|e| {
        format!("cannot read the domain names from /dev/xen/xenia ({e}); is this Xenia's dom0?")
    })?;
    let live = sys
        .domains()
        .map_err(|e| format!("cannot list the domains: the hypervisor said {e}"))?;
    Ok(names
        .iter()
        .filter(|n| n.name == name)
        .filter_map(|n| DomId::try_from(n.dom).ok())
        .find(|id| live.iter().any(|d| d.dom == *id)))
}

/// `xl domid <name>`.
pub fn domid(sys: &mut impl System, io: &mut Io<'_>, name: &str) -> VerbResult {
    match id_of(sys, name)? {
        Some(id) => {
            let _ = writeln!(io.out, "{id}");
            Ok(())
        }
        None => Err(reported(
            io,
            &format!(
                "Can't get domid of domain name '{name}', maybe this domain does not exist.\n"
            ),
        )),
    }
}

/// `xl domname <id>`: the id read as xl reads it (`strtol`, then a `uint32_t`).
pub fn domname(sys: &mut impl System, io: &mut Io<'_>, id: &str) -> VerbResult {
    let Some(n) = strtol(id) else {
        return Err(reported(io, "Invalid domain id.\n\n"));
    };
    // C's conversion of the `long` to `uint32_t`.
    let id = n as u32;
    let name = named_domains(sys)?
        .into_iter()
        .find(|(name, d)| u32::from(d.dom) == id && (d.dom == 0 || name != UNNAMED))
        .map(|(name, d)| xlfmt::display_name(d.dom, &name).to_string());
    match name {
        Some(name) => {
            let _ = writeln!(io.out, "{name}");
            Ok(())
        }
        None => Err(reported(
            io,
            &format!(
                "Can't get domain name of domain id '{id}', maybe this domain does not exist.\n"
            ),
        )),
    }
}

/// `xl rename <domain> <new name>`. Xenia's reason goes first, then Xen's line.
pub fn rename(sys: &mut impl System, io: &mut Io<'_>, arg: &str, new_name: &str) -> VerbResult {
    let (_, d) = find(sys, arg)?;
    let why = if d.dom == 0 {
        Some(format!("dom0 is always {DOM0_NAME} under Xenia"))
    } else if let Some(p) = name_problem(new_name) {
        Some(match p {
            NameProblem::Empty => "a domain name cannot be empty".to_string(),
            NameProblem::TooLong => format!("\"{new_name}\" is longer than 64 bytes"),
            NameProblem::AllDigits => {
                format!("\"{new_name}\" is all digits and would read as a domain id")
            }
            NameProblem::Char(c) => format!("\"{new_name}\" contains {c:?}, which names may not"),
        })
    } else {
        match sys.rename(d.dom, new_name) {
            Ok(()) => None,
            Err(Errno::EEXIST) => Some(format!("a domain named \"{new_name}\" already exists")),
            Err(Errno::ESRCH) => Some(format!(
                "dom0's kernel keeps no record of domain {} (xl did not create it), so it has \
                 no name to change",
                d.dom
            )),
            Err(e) => Some(format!("dom0's kernel refused: {e}")),
        }
    };
    match why {
        None => Ok(()),
        Some(why) => Err(reported(
            io,
            &format!("xl: {why}\nCan't rename domain '{arg}'.\n"),
        )),
    }
}

/// `xl vm-list`: every domain (dom0 included, as Xen 4.17 lists it) with its UUID.
pub fn vm_list(sys: &mut impl System, io: &mut Io<'_>) -> VerbResult {
    let mut out = String::from(xlfmt::VM_LIST_HEADER);
    for (name, d) in named_domains(sys)? {
        out += &xlfmt::vm_list_line(&uuid_string(&d.handle), d.dom, &name);
    }
    let _ = write!(io.out, "{out}");
    Ok(())
}
