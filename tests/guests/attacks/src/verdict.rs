//! What one attack came to, and the line that says so.

use core::fmt::{self, Write};

use guest_abi::errno::Errno;
use xenia_guest_rt::check::Text;
use xenia_guest_rt::println;
use xenia_guest_rt::trap::{Entry, vector_name};

/// How an attack ended.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Outcome {
    /// The hypervisor refused it (an errno, or a fault delivered to the attacker) and its
    /// effect did not happen.
    Refused,
    /// It got through, or its effect happened although the call failed.
    Succeeded,
    /// The attack could not be set up (a legitimate step failed): it proves nothing.
    Error,
    /// It does not apply here (for instance the CPU lacks the feature it abuses).
    Skipped,
}

/// An attack's outcome and how it came about.
pub struct Verdict {
    /// The outcome.
    pub outcome: Outcome,
    /// The `(<how>)` part of the line.
    pub how: Text<200>,
}

impl Verdict {
    /// A verdict with `how` formatted from `args`.
    pub fn new(outcome: Outcome, args: fmt::Arguments) -> Verdict {
        let mut how = Text::new();
        let _ = how.write_fmt(args);
        Verdict { outcome, how }
    }

    /// Prints `attack <name>: refused (<how>)`, `attack <name>: SUCCEEDED (<how>)`,
    /// `attack <name>: ERROR (<how>)` or `attack <name>: SKIPPED (<how>)`.
    pub fn print(&self, name: &str) {
        let word = match self.outcome {
            Outcome::Refused => "refused",
            Outcome::Succeeded => "SUCCEEDED",
            Outcome::Error => "ERROR",
            Outcome::Skipped => "SKIPPED",
        };
        println!("attack {name}: {word} ({})", self.how);
    }
}

/// `Verdict::new(Outcome::Refused, format_args!(…))`.
#[macro_export]
macro_rules! refused {
    ($($arg:tt)*) => {
        $crate::verdict::Verdict::new($crate::verdict::Outcome::Refused, format_args!($($arg)*))
    };
}

/// `Verdict::new(Outcome::Succeeded, format_args!(…))`.
#[macro_export]
macro_rules! succeeded {
    ($($arg:tt)*) => {
        $crate::verdict::Verdict::new($crate::verdict::Outcome::Succeeded, format_args!($($arg)*))
    };
}

/// `Verdict::new(Outcome::Error, format_args!(…))`: a set-up step failed.
#[macro_export]
macro_rules! setup_error {
    ($($arg:tt)*) => {
        $crate::verdict::Verdict::new($crate::verdict::Outcome::Error, format_args!($($arg)*))
    };
}

/// A raw hypercall return value as the errno's name (`EINVAL`), or the number.
pub struct Errname(pub i64);

impl fmt::Display for Errname {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match Errno::from_return(self.0) {
            Some(e) => f.write_str(e.name()),
            None => write!(f, "{}", self.0),
        }
    }
}

/// A delivered exception as `#PF, error code 0x3` (page faults) or `#GP`.
pub struct Fault<'a>(pub &'a Entry);

impl fmt::Display for Fault<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let r = &self.0.regs;
        write!(f, "{}", vector_name(r.vector))?;
        if r.vector == u64::from(xenia_guest_rt::trap::PAGE_FAULT) {
            write!(f, ", error code {:#x}, cr2 {:#x}", r.error_code, self.0.cr2)?;
        } else if r.error_code != 0 {
            write!(f, ", error code {:#x}", r.error_code)?;
        }
        Ok(())
    }
}

/// The usual verdict of a call that must fail and leave `state` as it was: refused with the
/// errno when it failed and nothing changed; SUCCEEDED otherwise, saying what was seen.
pub fn expect_refusal(ret: i64, unchanged: bool, state: fmt::Arguments) -> Verdict {
    match (ret < 0, unchanged) {
        (true, true) => refused!("{}", Errname(ret)),
        (true, false) => succeeded!("returned {} but {state}", Errname(ret)),
        (false, _) => succeeded!("returned {ret}; {state}"),
    }
}
