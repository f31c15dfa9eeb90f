//! Options as GNU `getopt_long` reads them for Xen's xl (which sets `opterr = 0` and
//! reports failures itself): options and operands may be mixed (operands are gathered in
//! order), `--` ends the options, `-abc` is three options and `-dVALUE` or `-d VALUE` one
//! with a value, `--name=VALUE` or `--name VALUE` a long option, which may be shortened to
//! any prefix that names one option only. Reading stops at the first option that is not
//! known or lacks its value, as xl stops there; what was read before it is kept, because
//! xl acts on options in order (a `-h` before the fault is help, not an error).

/// Whether a long option takes a value (`struct option`'s `has_arg`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HasArg {
    /// Never (`no_argument`).
    No,
    /// Always (`required_argument`).
    Required,
}

/// A long option: its name, whether it takes a value, and the short option it stands for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LongOpt {
    /// The name, without `--`.
    pub name: &'static str,
    /// Whether it takes a value.
    pub has_arg: HasArg,
    /// The option letter reported for it.
    pub val: char,
}

/// What the options and operands of a command line are.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Parsed {
    /// The options, in order, each with its value if it takes one.
    pub options: Vec<(char, Option<String>)>,
    /// The operands, in order.
    pub operands: Vec<String>,
    /// Where reading stopped, if it did not reach the end.
    pub stopped: Option<Unknown>,
    /// Why, in the terms of glibc's own complaint (for programs that leave `opterr` on).
    pub fault: Option<Fault>,
}

/// What was wrong with the option where reading stopped, as glibc tells it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fault {
    /// A short option not in the option string (`invalid option -- 'k'`).
    Invalid(char),
    /// A short option without its value (`option requires an argument -- 'd'`).
    NeedsValue(char),
    /// A long option no name starts with; the argument as given.
    UnrecognizedLong(String),
    /// A prefix of several long options: the argument as given, and their names in the
    /// table's order.
    AmbiguousLong(String, Vec<&'static str>),
    /// A value given to a long option that takes none (its full name).
    LongTakesNoValue(&'static str),
    /// A long option without its value (its full name).
    LongNeedsValue(&'static str),
}

/// Why reading stopped: getopt's `'?'` with its `optopt`, the option letter at fault
/// (`None` for an unknown or ambiguous long option, where glibc leaves `optopt` 0).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Unknown(pub Option<char>);

/// Reads `args` (the arguments after the command's name) against `short` (getopt's
/// option string: each letter, followed by `:` when it takes a value) and `long`.
pub fn getopt(args: &[String], short: &str, long: &[LongOpt]) -> Parsed {
    let mut out = Parsed::default();
    if let Err((e, fault)) = read(args, short, long, &mut out) {
        out.stopped = Some(e);
        out.fault = Some(fault);
    }
    out
}

fn read(
    args: &[String],
    short: &str,
    long: &[LongOpt],
    out: &mut Parsed,
) -> Result<(), (Unknown, Fault)> {
    let takes_value = |c: char| -> Option<bool> {
        let at = short.char_indices().find(|&(_, x)| x == c && x != ':')?.0;
        Some(short[at + c.len_utf8()..].starts_with(':'))
    };
    let mut i = 0;
    while i < args.len() {
        let arg = &args[i];
        i += 1;
        if arg == "--" {
            out.operands.extend(args[i..].iter().cloned());
            break;
        }
        if let Some(body) = arg.strip_prefix("--") {
            let (name, value) = match body.split_once('=') {
                Some((n, v)) => (n, Some(v.to_string())),
                None => (body, None),
            };
            let prefixed: Vec<&LongOpt> =
                long.iter().filter(|o| o.name.starts_with(name)).collect();
            let opt = match (long.iter().find(|o| o.name == name), &prefixed[..]) {
                (Some(exact), _) => exact,
                (None, [one]) => one,
                (None, []) => return Err((Unknown(None), Fault::UnrecognizedLong(arg.clone()))),
                (None, many) => {
                    let names = many.iter().map(|o| o.name).collect();
                    return Err((Unknown(None), Fault::AmbiguousLong(arg.clone(), names)));
                }
            };
            let value = match (opt.has_arg, value) {
                (HasArg::No, Some(_)) => {
                    return Err((Unknown(Some(opt.val)), Fault::LongTakesNoValue(opt.name)));
                }
                (HasArg::No, None) => None,
                (HasArg::Required, Some(v)) => Some(v),
                (HasArg::Required, None) => {
                    let v = args
                        .get(i)
                        .ok_or((Unknown(Some(opt.val)), Fault::LongNeedsValue(opt.name)))?;
                    i += 1;
                    Some(v.clone())
                }
            };
            out.options.push((opt.val, value));
            continue;
        }
        let Some(cluster) = arg.strip_prefix('-').filter(|c| !c.is_empty()) else {
            out.operands.push(arg.clone());
            continue;
        };
        for (at, c) in cluster.char_indices() {
            match takes_value(c) {
                None => return Err((Unknown(Some(c)), Fault::Invalid(c))),
                Some(false) => out.options.push((c, None)),
                Some(true) => {
                    let rest = &cluster[at + c.len_utf8()..];
                    let value = if rest.is_empty() {
                        let v = args
                            .get(i)
                            .ok_or((Unknown(Some(c)), Fault::NeedsValue(c)))?;
                        i += 1;
                        v.clone()
                    } else {
                        rest.to_string()
                    };
                    out.options.push((c, Some(value)));
                    break;
                }
            }
        }
    }
    Ok(())
}

/// C's `strtol(s, &end, 10)` as xl uses it: leading blanks, an optional sign, then as many
/// digits as there are (saturating like `strtol` on overflow). `None` when no digit was
/// read (where `end == s`).
pub fn strtol(s: &str) -> Option<i64> {
    let t = s.trim_start_matches([' ', '\t', '\n', '\r', '\x0b', '\x0c']);
    let (negative, t) = match t.as_bytes().first() {
        Some(b'-') => (true, &t[1..]),
        Some(b'+') => (false, &t[1..]),
        _ => (false, t),
    };
    let digits = t.bytes().take_while(u8::is_ascii_digit).count();
    if digits == 0 {
        return None;
    }
    let mut v: i64 = 0;
    for b in t[..digits].bytes() {
        let d = i64::from(b - b'0');
        v = if negative {
            v.saturating_mul(10).saturating_sub(d)
        } else {
            v.saturating_mul(10).saturating_add(d)
        };
    }
    Some(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    const LONG: &[LongOpt] = &[
        LongOpt {
            name: "domain",
            has_arg: HasArg::Required,
            val: 'd',
        },
        LongOpt {
            name: "dryrun",
            has_arg: HasArg::No,
            val: 'n',
        },
        LongOpt {
            name: "help",
            has_arg: HasArg::No,
            val: 'h',
        },
    ];

    fn opts(a: &[&str]) -> Result<Parsed, Unknown> {
        let p = getopt(&args(a), "hd:nw", LONG);
        match p.stopped {
            Some(e) => Err(e),
            None => Ok(p),
        }
    }

    #[test]
    fn short_options_clusters_and_values() {
        let p = opts(&["-nw", "x", "-dfoo", "y", "-d", "-bar"]).unwrap();
        assert_eq!(
            p.options,
            vec![
                ('n', None),
                ('w', None),
                ('d', Some("foo".into())),
                ('d', Some("-bar".into()))
            ]
        );
        assert_eq!(p.operands, args(&["x", "y"]));
        // `-` alone is an operand; `--` ends the options.
        let p = opts(&["-", "--", "-n", "--domain"]).unwrap();
        assert!(p.options.is_empty());
        assert_eq!(p.operands, args(&["-", "-n", "--domain"]));
        // Operands before options (getopt permutes).
        let p = opts(&["a", "-n"]).unwrap();
        assert_eq!((p.options.len(), p.operands.len()), (1, 1));
    }

    #[test]
    fn long_options_and_prefixes() {
        let p = opts(&["--domain=web", "--domain", "db", "--dom=x", "--dr"]).unwrap();
        assert_eq!(
            p.options,
            vec![
                ('d', Some("web".into())),
                ('d', Some("db".into())),
                ('d', Some("x".into())),
                ('n', None)
            ]
        );
        // `--d` names two options: ambiguous, reported as glibc does (no letter).
        assert_eq!(opts(&["--d"]), Err(Unknown(None)));
        assert_eq!(opts(&["--bogus"]), Err(Unknown(None)));
        // A value where none is taken, or none where one is needed: the letter.
        assert_eq!(opts(&["--dryrun=1"]), Err(Unknown(Some('n'))));
        assert_eq!(opts(&["--help=1"]), Err(Unknown(Some('h'))));
        assert_eq!(opts(&["--domain"]), Err(Unknown(Some('d'))));
    }

    #[test]
    fn unknown_short_options_and_missing_values() {
        assert_eq!(opts(&["-x"]), Err(Unknown(Some('x'))));
        assert_eq!(opts(&["-nx"]), Err(Unknown(Some('x'))));
        assert_eq!(opts(&["-d"]), Err(Unknown(Some('d'))));
        assert_eq!(opts(&["-1"]), Err(Unknown(Some('1'))));
        // `:` is not an option letter.
        assert_eq!(opts(&["-:"]), Err(Unknown(Some(':'))));
        // Reading stops at the first fault, whatever follows; what came before is kept.
        assert_eq!(opts(&["-x", "-h"]), Err(Unknown(Some('x'))));
        let p = getopt(&args(&["-h", "a", "-x", "-n"]), "hd:nw", LONG);
        assert_eq!(p.options, vec![('h', None)]);
        assert_eq!(p.operands, args(&["a"]));
        assert_eq!(p.stopped, Some(Unknown(Some('x'))));
    }

    #[test]
    fn strtol_as_c() {
        assert_eq!(strtol("12"), Some(12));
        assert_eq!(strtol("  7x"), Some(7));
        assert_eq!(strtol("-3"), Some(-3));
        assert_eq!(strtol("+0"), Some(0));
        assert_eq!(strtol("x"), None);
        assert_eq!(strtol(""), None);
        assert_eq!(strtol("-"), None);
        assert_eq!(strtol("99999999999999999999999"), Some(i64::MAX));
        assert_eq!(strtol("-99999999999999999999999"), Some(i64::MIN));
    }
}
