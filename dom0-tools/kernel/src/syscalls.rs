//! The Linux x86-64 system calls dom0's kernel implements for its
//! programs (DESIGN.md §7), by number, and the rule for the others: they
//! return `-ENOSYS` and each unknown number is logged once.
//!
//! Numbers are Linux's `arch/x86/entry/syscalls/syscall_64.tbl`.

/// The calls dom0 implements: number and name.
pub const IMPLEMENTED: &[(u64, &str)] = &[
    (0, "read"),
    (1, "write"),
    (2, "open"),
    (3, "close"),
    (4, "stat"),
    (5, "fstat"),
    (6, "lstat"),
    (7, "poll"),
    (8, "lseek"),
    (9, "mmap"),
    (10, "mprotect"),
    (11, "munmap"),
    (12, "brk"),
    (13, "rt_sigaction"),
    (14, "rt_sigprocmask"),
    (15, "rt_sigreturn"),
    (16, "ioctl"),
    (17, "pread64"),
    (18, "pwrite64"),
    (19, "readv"),
    (20, "writev"),
    (21, "access"),
    (22, "pipe"),
    (24, "sched_yield"),
    (28, "madvise"),
    (32, "dup"),
    (33, "dup2"),
    (34, "pause"),
    (35, "nanosleep"),
    (39, "getpid"),
    (40, "sendfile"),
    (56, "clone"),
    (57, "fork"),
    (58, "vfork"),
    (59, "execve"),
    (60, "exit"),
    (61, "wait4"),
    (62, "kill"),
    (63, "uname"),
    (72, "fcntl"),
    (74, "fsync"),
    (75, "fdatasync"),
    (76, "truncate"),
    (77, "ftruncate"),
    (79, "getcwd"),
    (80, "chdir"),
    (81, "fchdir"),
    (82, "rename"),
    (83, "mkdir"),
    (84, "rmdir"),
    (85, "creat"),
    (86, "link"),
    (87, "unlink"),
    (88, "symlink"),
    (89, "readlink"),
    (90, "chmod"),
    (91, "fchmod"),
    (92, "chown"),
    (93, "fchown"),
    (94, "lchown"),
    (95, "umask"),
    (97, "getrlimit"),
    (99, "sysinfo"),
    (102, "getuid"),
    (103, "syslog"),
    (104, "getgid"),
    (105, "setuid"),
    (106, "setgid"),
    (107, "geteuid"),
    (108, "getegid"),
    (109, "setpgid"),
    (110, "getppid"),
    (111, "getpgrp"),
    (112, "setsid"),
    (113, "setreuid"),
    (114, "setregid"),
    (115, "getgroups"),
    (117, "setresuid"),
    (118, "getresuid"),
    (119, "setresgid"),
    (120, "getresgid"),
    (121, "getpgid"),
    (124, "getsid"),
    (130, "rt_sigsuspend"),
    (131, "sigaltstack"),
    (137, "statfs"),
    (138, "fstatfs"),
    (157, "prctl"),
    (158, "arch_prctl"),
    (162, "sync"),
    (169, "reboot"),
    (186, "gettid"),
    (200, "tkill"),
    (201, "time"),
    (202, "futex"),
    (217, "getdents64"),
    (218, "set_tid_address"),
    (228, "clock_gettime"),
    (230, "clock_nanosleep"),
    (231, "exit_group"),
    (234, "tgkill"),
    (257, "openat"),
    (258, "mkdirat"),
    (260, "fchownat"),
    (262, "newfstatat"),
    (263, "unlinkat"),
    (264, "renameat"),
    (265, "linkat"),
    (266, "symlinkat"),
    (267, "readlinkat"),
    (268, "fchmodat"),
    (269, "faccessat"),
    (273, "set_robust_list"),
    (280, "utimensat"),
    (292, "dup3"),
    (293, "pipe2"),
    (302, "prlimit64"),
    (316, "renameat2"),
    (318, "getrandom"),
    (439, "faccessat2"),
];

/// `ENOSYS`, negated as a system call returns it.
pub const ENOSYS: i64 = -38;

/// The name of implemented call `nr`.
pub fn name(nr: u64) -> Option<&'static str> {
    IMPLEMENTED.iter().find(|&&(n, _)| n == nr).map(|&(_, s)| s)
}

/// Numbers below this are tracked in a bitmap.
pub const TRACKED: usize = 512;
/// Distinct numbers at or past [`TRACKED`] remembered; past that, one
/// last line says that further ones go unlogged (a program spraying random
/// numbers must not grow the kernel's memory or flood the console).
pub const MAX_HUGE: usize = 64;

/// Which unknown calls have been logged already, so each is logged once.
#[derive(Clone, Debug)]
pub struct Unknown {
    seen: [u64; TRACKED / 64],
    huge: alloc::collections::BTreeSet<u64>,
    huge_full: bool,
}

impl Default for Unknown {
    fn default() -> Self {
        Self::new()
    }
}

impl Unknown {
    /// Nothing logged yet.
    pub const fn new() -> Self {
        Self {
            seen: [0; TRACKED / 64],
            huge: alloc::collections::BTreeSet::new(),
            huge_full: false,
        }
    }

    /// Records a call to unimplemented `nr`; returns the line to log the
    /// first time `nr` is seen, `None` after that.
    pub fn first_time(&mut self, nr: u64, program: &str) -> Option<alloc::string::String> {
        let fresh = match usize::try_from(nr).ok().filter(|&n| n < TRACKED) {
            Some(n) => {
                let (word, bit) = (n / 64, 1u64 << (n % 64));
                let fresh = self.seen[word] & bit == 0;
                self.seen[word] |= bit;
                fresh
            }
            None if self.huge.contains(&nr) => false,
            None if self.huge.len() < MAX_HUGE => self.huge.insert(nr),
            None if !core::mem::replace(&mut self.huge_full, true) => {
                return Some(alloc::format!(
                    "dom0: {program}: system call {nr} is not implemented; returning -ENOSYS \
                     (further unknown numbers past {TRACKED} are not logged)"
                ));
            }
            None => false,
        };
        fresh.then(|| {
            alloc::format!(
                "dom0: {program}: system call {nr} is not implemented; returning -ENOSYS"
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_design_set_is_there() {
        for call in [
            "read",
            "write",
            "open",
            "close",
            "fstat",
            "lseek",
            "mmap",
            "munmap",
            "mprotect",
            "brk",
            "exit_group",
            "arch_prctl",
            "set_tid_address",
            "rt_sigaction",
            "rt_sigprocmask",
            "sigaltstack",
            "poll",
            "ioctl",
            "fcntl",
            "getrandom",
            "clock_gettime",
        ] {
            assert!(
                IMPLEMENTED.iter().any(|&(_, n)| n == call),
                "{call} missing"
            );
        }
        assert_eq!(name(231), Some("exit_group"));
        assert_eq!(name(158), Some("arch_prctl"));
        assert_eq!(name(56), Some("clone"), "as a fork");
        assert_eq!(name(9999), None);
        // Sorted and unique, so the table reads like syscall_64.tbl.
        assert!(IMPLEMENTED.windows(2).all(|w| w[0].0 < w[1].0));
    }

    #[test]
    fn unknown_calls_are_logged_once() {
        let mut u = Unknown::new();
        let line = u.first_time(56, "xl").unwrap();
        assert_eq!(
            line,
            "dom0: xl: system call 56 is not implemented; returning -ENOSYS"
        );
        assert_eq!(u.first_time(56, "xl"), None);
        assert!(u.first_time(57, "xl").is_some());
        assert!(u.first_time(511, "xl").is_some());
        assert!(u.first_time(512, "xl").is_some());
        assert_eq!(u.first_time(512, "xl"), None);
        for n in 1..MAX_HUGE as u64 {
            assert!(u.first_time(1000 + n, "xl").is_some());
        }
        let last = u.first_time(u64::MAX, "xl").unwrap();
        assert!(last.contains("are not logged"), "{last}");
        assert_eq!(u.first_time(u64::MAX - 1, "xl"), None);
        assert_eq!(u.first_time(1001, "xl"), None);
        assert_eq!(ENOSYS, -38);
    }
}
