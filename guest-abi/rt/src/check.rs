//! Checks, the result line and shutdown.
//!
//! Every check prints one line, `check <what>: ok` or `check <what>: FAILED (<details>)`, the
//! details saying what was observed; a scenario can rely on a passed check's line ending in
//! `: ok`. Measured figures worth seeing on success go on their own `note: …` lines
//! ([`note`]). A test
//! ends with [`Checks::finish`], which prints `Test result: SUCCESS` if every check passed,
//! `FAILURE` if one failed, and `ERROR` if no check ran at all (a test that checked nothing
//! must not look like a pass), then powers the domain off.

use core::fmt::{self, Display};

use guest_abi::calls;
use guest_abi::errno::Errno;
use guest_abi::sched::ShutdownReason;

use crate::{console, println};

/// The outcome of a test, as the scenario reads it from the `Test result:` line.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum TestResult {
    /// Every check passed.
    Success,
    /// A check failed: the hypervisor misbehaved.
    Failure,
    /// The test could not run as designed (bad command line, a set-up step failed, an
    /// unexpected exception): says nothing about the behaviour under test.
    Error,
    /// The test does not apply here (for instance the CPU lacks a feature).
    Skip,
}

impl TestResult {
    /// The word on the result line.
    pub const fn word(self) -> &'static str {
        match self {
            TestResult::Success => "SUCCESS",
            TestResult::Failure => "FAILURE",
            TestResult::Error => "ERROR",
            TestResult::Skip => "SKIP",
        }
    }
}

/// Prints `Test result: <word>` and powers the domain off. The scenario decides from the
/// line, so every result powers off; only a crash of the domain means something else.
pub fn report(result: TestResult) -> ! {
    console::flush();
    println!("Test result: {}", result.word());
    shutdown(ShutdownReason::Poweroff)
}

/// Shuts the domain down for `reason`; never returns. If the hypervisor returns from the
/// shutdown, says so and tries a crash shutdown, then spins (the scenario's timeout ends it).
pub fn shutdown(reason: ShutdownReason) -> ! {
    console::flush();
    let ret = calls::sched_shutdown(reason);
    println!(
        "SCHEDOP_shutdown({}) returned {}",
        reason.name(),
        Ret::from_result(ret)
    );
    let _ = calls::sched_shutdown(ShutdownReason::Crash);
    loop {
        core::hint::spin_loop();
    }
}

/// A raw hypercall return value, printed as a number or as `-ENAME`.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Ret(pub i64);

impl Ret {
    /// The return value of a failure with `e`.
    pub const fn err(e: Errno) -> Ret {
        Ret(-(e.code() as i64))
    }

    /// The return value a wrapper's result stands for.
    pub fn from_result(r: Result<u64, Errno>) -> Ret {
        match r {
            Ok(v) => Ret(v as i64),
            Err(e) => Ret::err(e),
        }
    }
}

impl Display for Ret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0 >= 0 {
            write!(f, "{}", self.0)
        } else {
            match i32::try_from(-self.0).ok().and_then(Errno::from_code) {
                Some(e) => write!(f, "-{e:?}"),
                None => write!(f, "{}", self.0),
            }
        }
    }
}

/// The checks of one test.
#[derive(Default)]
pub struct Checks {
    passed: u32,
    failed: u32,
}

impl Checks {
    /// No check yet.
    pub const fn new() -> Self {
        Self {
            passed: 0,
            failed: 0,
        }
    }

    /// Records one check: prints its line and returns `ok`. `details` (what was observed)
    /// are printed only when the check fails.
    pub fn check(&mut self, what: impl Display, ok: bool, details: fmt::Arguments) -> bool {
        if ok {
            self.passed += 1;
            println!("check {what}: ok");
        } else {
            self.failed += 1;
            println!("check {what}: FAILED ({details})");
        }
        ok
    }

    /// Records one check whose whole line the caller formats (for lines that are not of the
    /// `check <what>:` form, such as `probe …: #PF`).
    pub fn line(&mut self, ok: bool, text: fmt::Arguments) -> bool {
        if ok {
            self.passed += 1;
        } else {
            self.failed += 1;
        }
        println!("{text}");
        ok
    }

    /// Checks that `got == want`.
    pub fn eq<T: PartialEq + fmt::Debug>(&mut self, what: impl Display, got: T, want: T) -> bool {
        let ok = got == want;
        self.check(what, ok, format_args!("got {got:?}, expected {want:?}"))
    }

    /// Checks that `got == want`, printing both in hexadecimal.
    pub fn eq_hex(&mut self, what: impl Display, got: u64, want: u64) -> bool {
        self.check(
            what,
            got == want,
            format_args!("got {got:#x}, expected {want:#x}"),
        )
    }

    /// Checks that a raw hypercall return value is the failure `want`.
    pub fn errno(&mut self, what: impl Display, ret: i64, want: Errno) -> bool {
        let want = Ret::err(want);
        self.check(
            what,
            ret == want.0,
            format_args!("returned {}, expected {want}", Ret(ret)),
        )
    }

    /// Checks that a raw hypercall return value is a success; returns the value if so.
    pub fn success(&mut self, what: impl Display, ret: i64) -> Option<u64> {
        self.check(what, ret >= 0, format_args!("returned {}", Ret(ret)))
            .then_some(ret as u64)
    }

    /// Checks that a wrapper returned `Ok`; returns the value if so.
    pub fn ok<T: fmt::Debug>(&mut self, what: impl Display, r: Result<T, Errno>) -> Option<T> {
        match r {
            Ok(v) => {
                self.check(what, true, format_args!("returned {v:?}"));
                Some(v)
            }
            Err(e) => {
                self.check(what, false, format_args!("returned {}", Ret::err(e)));
                None
            }
        }
    }

    /// Checks that a wrapper failed with `want`.
    pub fn fails<T: fmt::Debug>(&mut self, what: impl Display, r: Result<T, Errno>, want: Errno) {
        match r {
            Ok(v) => self.check(
                what,
                false,
                format_args!("returned Ok({v:?}), expected {}", Ret::err(want)),
            ),
            Err(e) => self.errno(what, Ret::err(e).0, want),
        };
    }

    /// Number of failed checks so far.
    pub fn failures(&self) -> u32 {
        self.failed
    }

    /// The result the checks so far add up to.
    pub fn result(&self) -> TestResult {
        if self.failed > 0 {
            TestResult::Failure
        } else if self.passed == 0 {
            println!("no check ran");
            TestResult::Error
        } else {
            TestResult::Success
        }
    }

    /// Prints the result line and powers off.
    pub fn finish(self) -> ! {
        println!("{} checks passed, {} failed", self.passed, self.failed);
        report(self.result())
    }
}

/// Prints `note: <text>`: a measured figure or a remark that is not a check.
pub fn note(text: fmt::Arguments) {
    println!("note: {text}");
}

/// Stops the test with `Test result: ERROR` after printing why: for a set-up step that failed
/// (the test cannot say anything about the behaviour it is for).
pub fn error(why: fmt::Arguments) -> ! {
    println!("test error: {why}");
    report(TestResult::Error)
}

/// A line of text built without an allocator; what does not fit is dropped.
pub struct Text<const N: usize> {
    bytes: [u8; N],
    len: usize,
}

impl<const N: usize> Text<N> {
    /// Empty.
    pub const fn new() -> Self {
        Self {
            bytes: [0; N],
            len: 0,
        }
    }

    /// The text so far.
    pub fn as_str(&self) -> &str {
        // Only whole `str`s are appended, but a cut can split a character: keep the valid
        // prefix.
        match core::str::from_utf8(&self.bytes[..self.len]) {
            Ok(s) => s,
            Err(e) => core::str::from_utf8(&self.bytes[..e.valid_up_to()]).unwrap_or(""),
        }
    }

    /// Whether nothing was written.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl<const N: usize> Default for Text<N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const N: usize> fmt::Write for Text<N> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let n = s.len().min(N - self.len);
        self.bytes[self.len..self.len + n].copy_from_slice(&s.as_bytes()[..n]);
        self.len += n;
        Ok(())
    }
}

impl<const N: usize> Display for Text<N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
