//! Which domain a command-line argument names.
//!
//! As in Xen's xl, an argument made only of digits is a domain id and
//! anything else is a name; `Domain-0` names dom0. Names of new domains
//! must be unique, as xl requires.

use dom0_tools::DOM0_NAME;

/// A domain known to the toolstack: its id and name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Known {
    /// Its id.
    pub id: u16,
    /// Its name (`Domain-0` for dom0).
    pub name: String,
}

/// Why an argument names no domain. `Display` is the message xl prints.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TargetError {
    /// An empty argument.
    Empty,
    /// Digits, but too many for a domain id.
    IdOutOfRange(String),
    /// A well-formed id no domain has.
    NoSuchId(u16),
    /// A name no domain has.
    NoSuchName(String),
}

impl core::fmt::Display for TargetError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::Empty => write!(f, "an empty domain name; give a name or id from `xl list`"),
            Self::IdOutOfRange(s) => {
                write!(
                    f,
                    "{s} is not a domain id (ids go up to 32751); see `xl list`"
                )
            }
            Self::NoSuchId(id) => write!(f, "no domain with id {id}; see `xl list`"),
            Self::NoSuchName(n) => write!(f, "no domain named \"{n}\"; see `xl list`"),
        }
    }
}

/// The highest id an ordinary domain can have (Xen's `DOMID_FIRST_RESERVED - 1`).
pub const DOMID_MAX: u16 = 0x7fef;

/// The id `arg` names among `domains`.
pub fn resolve(arg: &str, domains: &[Known]) -> Result<u16, TargetError> {
    if arg.is_empty() {
        return Err(TargetError::Empty);
    }
    if arg.bytes().all(|b| b.is_ascii_digit()) {
        let id = arg
            .parse::<u32>()
            .ok()
            .filter(|&id| id <= u32::from(DOMID_MAX))
            .ok_or_else(|| TargetError::IdOutOfRange(arg.into()))? as u16;
        return domains
            .iter()
            .find(|d| d.id == id)
            .map(|d| d.id)
            .ok_or(TargetError::NoSuchId(id));
    }
    domains
        .iter()
        .find(|d| d.name == arg || (d.id == 0 && arg == DOM0_NAME))
        .map(|d| d.id)
        .ok_or_else(|| TargetError::NoSuchName(arg.into()))
}

/// Checks that `name` may be given to a new domain: not empty, not all
/// digits (it would read as an id), printable ASCII without spaces or
/// `/`, at most 64 bytes, and not already taken. Returns xl's message on
/// refusal.
pub fn check_new_name(name: &str, domains: &[Known]) -> Result<(), String> {
    if name.is_empty() {
        return Err("the domain name is empty; set name=\"...\" in the config".into());
    }
    if name.len() > 64 {
        return Err(format!(
            "the domain name \"{name}\" is longer than 64 bytes"
        ));
    }
    if name.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!(
            "the domain name \"{name}\" is all digits and would read as a domain id"
        ));
    }
    if let Some(c) = name.chars().find(|c| !c.is_ascii_graphic() || *c == '/') {
        return Err(format!(
            "the domain name \"{name}\" contains {c:?}, which names may not"
        ));
    }
    if name == DOM0_NAME || domains.iter().any(|d| d.name == name) {
        return Err(format!(
            "a domain named \"{name}\" already exists; pick another name (name=... on the command line)"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn world() -> Vec<Known> {
        vec![
            Known {
                id: 0,
                name: DOM0_NAME.into(),
            },
            Known {
                id: 3,
                name: "hello".into(),
            },
            Known {
                id: 12,
                name: "web01".into(),
            },
        ]
    }

    #[test]
    fn ids_and_names() {
        let w = world();
        assert_eq!(resolve("0", &w), Ok(0));
        assert_eq!(resolve("3", &w), Ok(3));
        assert_eq!(resolve("012", &w), Ok(12));
        assert_eq!(resolve("hello", &w), Ok(3));
        assert_eq!(resolve("Domain-0", &w), Ok(0));
    }

    #[test]
    fn misses_say_what_to_do() {
        let w = world();
        assert_eq!(resolve("4", &w), Err(TargetError::NoSuchId(4)));
        assert_eq!(
            resolve("Hello", &w),
            Err(TargetError::NoSuchName("Hello".into()))
        );
        assert_eq!(resolve("", &w), Err(TargetError::Empty));
        assert_eq!(
            resolve("99999999999", &w),
            Err(TargetError::IdOutOfRange("99999999999".into()))
        );
        assert_eq!(
            resolve("32752", &w),
            Err(TargetError::IdOutOfRange("32752".into()))
        );
        assert!(resolve("-1", &w).is_err());
        let msg = resolve("nope", &w).unwrap_err().to_string();
        assert!(msg.contains("\"nope\"") && msg.contains("xl list"), "{msg}");
    }

    #[test]
    fn new_names() {
        let w = world();
        assert_eq!(check_new_name("hello2", &w), Ok(()));
        assert!(
            check_new_name("hello", &w)
                .unwrap_err()
                .contains("already exists")
        );
        assert!(
            check_new_name("Domain-0", &w)
                .unwrap_err()
                .contains("already exists")
        );
        assert!(check_new_name("", &w).unwrap_err().contains("empty"));
        assert!(check_new_name("42", &w).unwrap_err().contains("digits"));
        assert!(check_new_name("a b", &w).unwrap_err().contains("' '"));
        assert!(check_new_name("a/b", &w).is_err());
        assert!(
            check_new_name(&"x".repeat(65), &w)
                .unwrap_err()
                .contains("64")
        );
        assert_eq!(check_new_name(&"x".repeat(64), &w), Ok(()));
    }
}
