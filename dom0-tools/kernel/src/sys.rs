//! The Linux x86-64 system calls dom0's programs make (DESIGN.md §7; the list, by number,
//! is dom0-tools `syscalls::IMPLEMENTED`), and the devices behind their descriptors.
//!
//! Every pointer a program passes is checked against its areas and copied
//! ([`Process::user_bytes`]); a bad one is `-EFAULT`, never a kernel fault. Unknown calls
//! return `-ENOSYS` and are logged once per number. Blocking calls block in the hypervisor
//! ([`crate::wait`]); only a read from the terminal or an attached console may wait without
//! a deadline, because the user is in control of those.

use alloc::string::String;
use alloc::vec::Vec;
use core::sync::atomic::Ordering;

use dom0_tools::devices::{
    self, AdoptArgs, BufferArgs, ListEntry, MAX_RECORD, Policy, PrivcmdHypercall, Record,
    RecordArgs, RenameArgs,
};
use guest_abi::Errno;
use guest_abi::calls;
use guest_abi::hypercall::hypercall5;
use xenia_dom0::files::{Device, Io, O_NONBLOCK, Sink};
use xenia_dom0::syscalls;
use xenia_dom0::vm::{Change, Prot};
use xenia_guest_rt::boot::shared;
use xenia_guest_rt::events;
use xenia_guest_rt::time::now_ns;
use xenia_guest_rt::trap::Regs;

use crate::process::{Action, Blocked, CURRENT, DevState, Process};
use crate::{backend, fs, fscalls, random, store, term, tprintln, wait};

const fn err(e: Errno) -> i64 {
    -(e as i64)
}

const EINVAL: i64 = err(Errno::EINVAL);
const EPERM: i64 = err(Errno::EPERM);
const EAGAIN: i64 = err(Errno::EAGAIN);
const ENOTTY: i64 = 25;
const ENODEV: i64 = err(Errno::ENODEV);
const ERANGE: i64 = 34;
const ESRCH: i64 = err(Errno::ESRCH);
const ENOENT: i64 = err(Errno::ENOENT);
/// Linux's EPIPE (guest-abi's errno list has no use for it).
const EPIPE: i64 = -32;
/// A write to a pipe nobody reads raises it (its default ends the writer, as `yes | head -1`
/// needs); caught or ignored, the write returns `EPIPE`.
const SIGPIPE: u32 = 13;

/// `poll` event bits.
const POLLIN: i16 = 0x1;
const POLLOUT: i16 = 0x4;
const POLLNVAL: i16 = 0x20;

/// Whether every system call is logged (`trace=syscalls` on dom0's command line).
pub static TRACE: core::sync::atomic::AtomicBool = core::sync::atomic::AtomicBool::new(false);

/// The system-call handler (`trap::set_syscall_handler`): `false` ends the run (no process
/// is left). A call that blocks, forks or ends its process leaves the rest to the scheduler
/// ([`crate::process::after`]), which may return into another process.
pub fn syscall(regs: &mut Regs) -> bool {
    // Most calls return to their caller: no scheduler call on that path (issue 13's null
    // system call counts every instruction).
    match dispatch(regs) {
        Action::Done => true,
        action => crate::process::after(regs, action),
    }
}

/// [`syscall`] with a trace line: the handler instead of it with `trace=syscalls` (so that
/// the untraced path does not even test for tracing).
#[inline(never)]
pub fn traced(regs: &mut Regs) -> bool {
    let (nr, a0, a1, a2) = (regs.rax, regs.rdi, regs.rsi, regs.rdx);
    let action = dispatch(regs);
    tprintln!(
        "[trace] {nr}({a0:#x}, {a1:#x}, {a2:#x}) = {} {action:?}",
        regs.rax as i64
    );
    crate::process::after(regs, action)
}

fn dispatch(regs: &mut Regs) -> Action {
    let mut guard = CURRENT.lock();
    let Some(p) = guard.as_mut() else {
        return Action::Exit(0);
    };
    let nr = regs.rax;
    let a = [regs.rdi, regs.rsi, regs.rdx, regs.r10, regs.r8, regs.r9];
    let ret = match nr {
        0 => match read(p, a[0] as i64, a[1], a[2]) {
            Ok(n) => n,
            Err(blocked) => return Action::Retry(blocked),
        },
        1 => match write(p, a[0] as i64, a[1], a[2]) {
            Ok(EPIPE) if p.raise(SIGPIPE) => return Action::Exit(crate::process::signaled(13)),
            Ok(n) => n,
            Err(blocked) => return Action::Retry(blocked),
        },
        2 => fscalls::openat(p, AT_FDCWD, a[0], a[1] as u32, a[2] as u32),
        85 => fscalls::creat(p, a[0], a[1] as u32),
        169 => reboot(a[0], a[1], a[2]),
        103 => syslog(p, a[0], a[1], a[2] as i64),
        // rseq: glibc registers a restartable-sequence area when the kernel offers one, and
        // goes on without it (quietly: not worth the one-time log line).
        334 => syscalls::ENOSYS,
        17 => pread(p, a[0] as i64, a[1], a[2], a[3] as i64),
        18 => pwrite(p, a[0] as i64, a[1], a[2], a[3] as i64),
        19 => match readv(p, a[0] as i64, a[1], a[2]) {
            Ok(n) => n,
            Err(blocked) => return Action::Retry(blocked),
        },
        40 => EINVAL, // sendfile: busybox copies with read and write then
        74 | 75 => fscalls::fsync(p, a[0] as i64),
        162 => {
            crate::blockfile::sync_all();
            0
        }
        76 => fscalls::truncate(p, -1, a[0], a[1] as i64),
        77 => fscalls::truncate(p, a[0] as i64, 0, a[1] as i64),
        82 => fscalls::renameat(p, AT_FDCWD, a[0], AT_FDCWD, a[1], 0),
        264 => fscalls::renameat(p, a[0] as i32 as i64, a[1], a[2] as i32 as i64, a[3], 0),
        316 => fscalls::renameat(
            p,
            a[0] as i32 as i64,
            a[1],
            a[2] as i32 as i64,
            a[3],
            a[4] as u32,
        ),
        83 => fscalls::mkdirat(p, AT_FDCWD, a[0], a[1] as u32),
        258 => fscalls::mkdirat(p, a[0] as i32 as i64, a[1], a[2] as u32),
        84 => fscalls::unlinkat(p, AT_FDCWD, a[0], 0x200),
        87 => fscalls::unlinkat(p, AT_FDCWD, a[0], 0),
        263 => fscalls::unlinkat(p, a[0] as i32 as i64, a[1], a[2]),
        86 => fscalls::linkat(p, AT_FDCWD, a[0], AT_FDCWD, a[1], 0),
        265 => fscalls::linkat(p, a[0] as i32 as i64, a[1], a[2] as i32 as i64, a[3], a[4]),
        88 => fscalls::symlinkat(p, a[0], AT_FDCWD, a[1]),
        266 => fscalls::symlinkat(p, a[0], a[1] as i32 as i64, a[2]),
        90 => fscalls::chmodat(p, AT_FDCWD, a[0], a[1] as u32),
        91 => fscalls::chmodat(p, a[0] as i64, 0, a[1] as u32),
        268 => fscalls::chmodat(p, a[0] as i32 as i64, a[1], a[2] as u32),
        92 => fscalls::chownat(p, AT_FDCWD, a[0], a[1], a[2], 0),
        94 => fscalls::chownat(p, AT_FDCWD, a[0], a[1], a[2], 0x100),
        93 => fscalls::chownat(p, a[0] as i64, 0, a[1], a[2], 0),
        260 => fscalls::chownat(p, a[0] as i32 as i64, a[1], a[2], a[3], a[4]),
        280 if a[1] == 0 => fscalls::utimensat(p, a[0] as i32 as i64, 0, a[2], a[3]),
        280 => fscalls::utimensat(p, a[0] as i32 as i64, a[1], a[2], a[3]),
        137 => fscalls::statfs(p, -1, a[0], a[1]),
        138 => fscalls::statfs(p, a[0] as i64, 0, a[1]),
        3 => close(p, a[0] as i64),
        4 => fscalls::fstatat(p, AT_FDCWD, a[0], a[1], 0),
        6 => fscalls::fstatat(p, AT_FDCWD, a[0], a[1], 0x100),
        5 => fscalls::fstat(p, a[0] as i64, a[1]),
        7 => poll(p, a[0], a[1], a[2] as i32 as i64),
        8 => {
            let fs = fs::lock();
            p.files
                .lseek(&fs, a[0] as i64, a[1] as i64, a[2] as u32)
                .map_or_else(|e| e, |o| o as i64)
        }
        9 => mmap(p, a[0], a[1], a[2], a[3]),
        10 => mprotect(p, a[0], a[1], a[2]),
        11 => munmap(p, a[0], a[1]),
        12 => brk(p, a[0]),
        13 => sigaction(p, a[0], a[1], a[2]),
        14 => sigprocmask(p, a[0], a[1], a[2]),
        15 => match p.sigreturn(regs) {
            Ok(rax) => rax as i64,
            Err(_) => return Action::Exit(crate::process::signaled(11)),
        },
        16 => ioctl(p, a[0] as i64, a[1], a[2]),
        20 => match writev(p, a[0] as i64, a[1], a[2]) {
            Ok(EPIPE) if p.raise(SIGPIPE) => return Action::Exit(crate::process::signaled(13)),
            Ok(n) => n,
            Err(blocked) => return Action::Retry(blocked),
        },
        22 => pipe2(p, a[0], 0),
        293 => pipe2(p, a[0], a[1] as u32),
        32 => {
            let dup = p.files.dup(&mut fs::lock(), a[0] as i64);
            dup.inspect(|&fd| add_end(p, fd)).unwrap_or_else(|e| e)
        }
        33 if a[0] == a[1] => p
            .files
            .describe(a[0] as i64)
            .map_or_else(|e| e, |_| a[1] as i64),
        33 => dup3(p, a[0] as i64, a[1] as i64, 0),
        292 => dup3(p, a[0] as i64, a[1] as i64, a[2] as u32),
        24 => 0,
        28 => 0,
        35 => match nanosleep(p, a[0], false) {
            Ok(deadline) => return Action::Sleep(deadline),
            Err(e) => e,
        },
        39 => i64::from(p.pid),
        21 => fscalls::faccessat(p, AT_FDCWD, a[0], a[1], 0),
        269 | 439 => fscalls::faccessat(
            p,
            a[0] as i32 as i64,
            a[1],
            a[2],
            if nr == 439 { a[3] } else { 0 },
        ),
        // `sigsuspend` and `pause`: until a child ends (see `Action::Suspend`).
        130 => {
            let mask = match p.user_bytes(a[0], 8, false) {
                Ok(b) => u64::from_le_bytes(b.try_into().unwrap_or([0; 8])),
                Err(e) => {
                    regs.rax = e as u64;
                    return Action::Done;
                }
            };
            p.saved_mask = Some(p.sigmask);
            p.sigmask = mask & !UNBLOCKABLE;
            return Action::Suspend;
        }
        34 => return Action::Suspend,
        186 => i64::from(p.pid),
        110 => i64::from(p.ppid),
        111 => i64::from(p.pgid),
        121 if a[0] == 0 || a[0] == u64::from(p.pid) => i64::from(p.pgid),
        121 => ESRCH,
        109 if (a[0] == 0 || a[0] == u64::from(p.pid)) && (a[1] as i64) >= 0 => {
            p.pgid = if a[1] == 0 { p.pid } else { a[1] as u32 };
            0
        }
        // A child's group, as a shell sets its jobs' (before the child has run to set its
        // own: a Ctrl-C in between must reach it too).
        109 if (a[1] as i64) >= 0 => {
            crate::process::set_child_pgid(p.pid, a[0] as u32, a[1] as u32)
        }
        109 => EINVAL,
        112 => {
            p.pgid = p.pid;
            i64::from(p.pid)
        }
        124 => i64::from(p.pgid),
        // A new process sharing nothing (its exit signal and where its ID goes, as glibc's
        // and musl's fork ask): a fork; anything sharing memory, files or threads is not
        // offered.
        56 if a[0] & !CLONE_FORK_FLAGS == 0 && a[1] == 0 => crate::process::fork(
            p,
            regs,
            (a[0] & CLONE_CHILD_SETTID != 0).then_some(a[3]),
            (a[0] & CLONE_PARENT_SETTID != 0).then_some(a[2]),
        ),
        56 => syscalls::ENOSYS,
        57 | 58 => crate::process::fork(p, regs, None, None),
        79 => fscalls::getcwd(p, a[0], a[1]),
        80 => fscalls::chdir(p, -1, a[0]),
        81 => fscalls::chdir(p, a[0] as i64, 0),
        89 => fscalls::readlinkat(p, AT_FDCWD, a[0], a[1], a[2]),
        267 => fscalls::readlinkat(p, a[0] as i32 as i64, a[1], a[2], a[3]),
        95 => core::mem::replace(&mut p.umask, (a[0] & 0o777) as u32).into(),
        97 | 302 => rlimit(p, nr, a),
        102 | 104 | 107 | 108 => 0,
        105 | 106 | 113 | 114 | 117 | 119 if a[0] == 0 || a[0] == u64::MAX => 0,
        105 | 106 | 113 | 114 | 117 | 119 => EPERM,
        115 => 0,
        118 | 120 => res_ids(p, a),
        157 => 0,
        201 => time(p, a[0]),
        217 => fscalls::getdents(p, a[0] as i64, a[1], a[2]),
        273 => 0,
        59 => execve(p, regs, a[0], a[1], a[2]),
        61 => match crate::process::wait4(p, a[0] as i32 as i64, a[1], a[2]) {
            (_, Action::Retry(b)) => return Action::Retry(b),
            (ret, _) => ret,
        },
        60 | 231 => {
            p.exit = Some((a[0] & 0xff) as i32);
            return Action::Exit(crate::process::exited((a[0] & 0xff) as i32));
        }
        // A signal to itself (abort() raises SIGABRT): no handlers run here, so the
        // process ends as a Linux shell reports a death by signal, status 128 + signal.
        62 | 200 if a[0] == u64::from(p.pid) && a[1] == 0 => 0,
        234 if a[1] == u64::from(p.pid) && a[2] == 0 => 0,
        62 | 200 if a[0] == u64::from(p.pid) => match kill_self(p, a[1]) {
            Action::Done => 0,
            end => return end,
        },
        234 if a[1] == u64::from(p.pid) => match kill_self(p, a[2]) {
            Action::Done => 0,
            end => return end,
        },
        62 => crate::process::kill_other(a[0] as i32 as i64, a[1] as i64, p.pid),
        200 | 234 => ESRCH,
        63 => uname(p, a[0]),
        72 => {
            let r = p
                .files
                .fcntl(&mut fs::lock(), a[0] as i64, a[1] as u32, a[2]);
            if matches!(a[1], 0 | 1030) {
                r.inspect(|&fd| add_end(p, fd)).unwrap_or_else(|e| e)
            } else {
                r.unwrap_or_else(|e| e)
            }
        }
        99 => sysinfo(p, a[0]),
        131 => sigaltstack(p, a[1]),
        158 => arch_prctl(p, a[0], a[1]),
        202 => futex(a[1]),
        218 => i64::from(p.pid),
        228 => clock_gettime(p, a[0], a[1]),
        230 => match nanosleep(p, a[2], a[1] & 1 != 0) {
            Ok(deadline) => return Action::Sleep(deadline),
            Err(e) => e,
        },
        257 => fscalls::openat(p, a[0] as i32 as i64, a[1], a[2] as u32, a[3] as u32),
        262 => fscalls::fstatat(p, a[0] as i32 as i64, a[1], a[2], a[3]),
        318 => getrandom(p, a[0], a[1]),
        _ => {
            if let Some(line) = UNKNOWN.lock().first_time(nr, &p.name) {
                tprintln!("{line}");
            }
            syscalls::ENOSYS
        }
    };
    regs.rax = ret as u64;
    // A caught signal raised meanwhile (by itself, or pending and now unblocked): its
    // handler runs on the way back (one load and a test when there is none).
    if p.pending & !p.sigmask != 0
        && let Some(sig) = p.deliverable()
        && !p.deliver(regs, sig)
    {
        return Action::Exit(crate::process::signaled(11));
    }
    Action::Done
}

/// `clone` flags a fork may carry: the exit signal and where the new ID goes.
const CLONE_FORK_FLAGS: u64 =
    0xff | CLONE_CHILD_SETTID | CLONE_CHILD_CLEARTID | CLONE_PARENT_SETTID;
const CLONE_PARENT_SETTID: u64 = 0x0010_0000;
const CLONE_CHILD_CLEARTID: u64 = 0x0020_0000;
const CLONE_CHILD_SETTID: u64 = 0x0100_0000;
use crate::fscalls::AT_FDCWD;

/// `getrlimit` / `prlimit64` for the caller: no limit, but for the stack (8 MiB) and open
/// descriptors; setting is accepted and changes nothing.
fn rlimit(p: &mut Process, nr: u64, a: [u64; 6]) -> i64 {
    let (resource, old) = if nr == 97 {
        (a[0], a[1])
    } else {
        if a[0] != 0 && a[0] != u64::from(p.pid) {
            return ESRCH;
        }
        (a[1], a[3])
    };
    if old == 0 {
        return 0;
    }
    let limit = match resource {
        3 => 8 << 20,                              // RLIMIT_STACK
        7 => xenia_dom0::files::MAX_FDS as u64,    // RLIMIT_NOFILE
        6 => crate::process::MAX_PROCESSES as u64, // RLIMIT_NPROC
        0..=15 => u64::MAX,
        _ => return EINVAL,
    };
    match p.user_bytes(old, 16, true) {
        Ok(b) => {
            b[..8].copy_from_slice(&limit.to_le_bytes());
            b[8..].copy_from_slice(&limit.to_le_bytes());
            0
        }
        Err(e) => e,
    }
}

/// `getresuid` / `getresgid`: root, all three.
fn res_ids(p: &mut Process, a: [u64; 6]) -> i64 {
    for at in &a[..3] {
        match p.user_bytes(*at, 4, true) {
            Ok(b) => b.copy_from_slice(&0u32.to_le_bytes()),
            Err(e) => return e,
        }
    }
    0
}

/// `time(t)`: seconds since 1970, also stored at `t` unless null.
fn time(p: &mut Process, t: u64) -> i64 {
    let secs = (wallclock_ns() / 1_000_000_000) as i64;
    if t != 0 {
        match p.user_bytes(t, 8, true) {
            Ok(b) => b.copy_from_slice(&secs.to_le_bytes()),
            Err(e) => return e,
        }
    }
    secs
}

/// A new descriptor `fd` holds what it names: one more pipe end, if a pipe.
fn add_end(p: &mut Process, fd: i64) {
    if let Some(end) = p.files.pipe_end(fd) {
        crate::pipe::add(end);
    }
}

fn dup3(p: &mut Process, old: i64, new: i64, flags: u32) -> i64 {
    let dup = p.files.dup3(&mut fs::lock(), old, new, flags);
    match dup {
        Ok(closed) => {
            if let Some(end) = closed {
                crate::pipe::drop_end(end);
            }
            p.devs.remove(&new);
            add_end(p, new);
            new
        }
        Err(e) => e,
    }
}

fn pipe2(p: &mut Process, fds: u64, flags: u32) -> i64 {
    let Some(id) = crate::pipe::create() else {
        return err(Errno::ENFILE);
    };
    let (r, w) = match p.files.open_pipe(id, flags) {
        Ok(pair) => pair,
        Err(e) => {
            crate::pipe::drop_end(xenia_dom0::files::PipeEnd { id, write: false });
            crate::pipe::drop_end(xenia_dom0::files::PipeEnd { id, write: true });
            return e;
        }
    };
    let mut out = [0u8; 8];
    out[..4].copy_from_slice(&(r as i32).to_le_bytes());
    out[4..].copy_from_slice(&(w as i32).to_le_bytes());
    match p.user_bytes(fds, 8, true) {
        Ok(dst) => {
            dst.copy_from_slice(&out);
            0
        }
        Err(e) => {
            for fd in [r, w] {
                let closed = p.files.close(&mut fs::lock(), fd);
                if let Ok(Some(end)) = closed {
                    crate::pipe::drop_end(end);
                }
            }
            e
        }
    }
}

/// Most bytes of arguments and environment `execve` takes (Linux's `ARG_MAX` is 2 MiB; the
/// stack the loader builds them on is smaller).
const EXEC_ARGS_MAX: usize = 128 * 1024;

/// A NULL-terminated array of string pointers at `at` (`argv`, `envp`), copied in.
fn string_array(p: &mut Process, at: u64, budget: &mut usize) -> Result<Vec<Vec<u8>>, i64> {
    let mut out = Vec::new();
    if at == 0 {
        return Ok(out);
    }
    for i in 0..4096u64 {
        let Some(slot) = at.checked_add(8 * i) else {
            return Err(err(Errno::EFAULT));
        };
        let ptr = match p.user_bytes(slot, 8, false) {
            Ok(b) => u64::from_le_bytes(b.try_into().unwrap_or([0; 8])),
            Err(e) => return Err(e),
        };
        if ptr == 0 {
            return Ok(out);
        }
        let s = p.user_cstr(ptr, 4096)?;
        *budget = budget.checked_sub(s.len() + 1).ok_or(err(Errno::E2BIG))?;
        out.push(s.into_bytes());
    }
    Err(err(Errno::E2BIG))
}

fn execve(p: &mut Process, regs: &mut Regs, path: u64, argv: u64, envp: u64) -> i64 {
    let arg = match fscalls::path_arg(p, AT_FDCWD, path, false) {
        Ok(a) => a,
        Err(e) => return e,
    };
    let mut budget = EXEC_ARGS_MAX;
    let args = match string_array(p, argv, &mut budget) {
        Ok(a) => a,
        Err(e) => return e,
    };
    let env = match string_array(p, envp, &mut budget) {
        Ok(e) => e,
        Err(e) => return e,
    };
    // Through the file system's lookup (symbolic links followed), as open does.
    let file = {
        let fs = fs::lock();
        let st = fs
            .lookup(arg.at, &arg.raw, xenia_dom0::tmpfs::Follow::Yes)
            .and_then(|ino| Ok((ino, fs.stat(ino)?)));
        match st {
            Ok((ino, st)) if st.mode & 0o170000 == 0o100000 && st.mode & 0o111 != 0 => {
                fs::contents(&fs, ino)
            }
            Ok(_) => return err(Errno::EACCES),
            Err(e) => return e,
        }
    };
    let Some(file) = file else {
        return err(Errno::ENOMEM);
    };
    let initrd = matches!(file, alloc::borrow::Cow::Borrowed(_));
    crate::process::execve(p, regs, &arg.abs, (&file, initrd), &args, &env)
}

/// Unknown system calls already logged, for every process: each number is logged once.
static UNKNOWN: spin::Mutex<syscalls::Unknown> = spin::Mutex::new(syscalls::Unknown::new());

/// A signal to the caller itself: `Done` when it goes on (the signal caught, delivered on
/// the way out of this call, or ignored), else its end.
fn kill_self(p: &mut Process, signal: u64) -> Action {
    if !(1..=64).contains(&signal) {
        return Action::Done;
    }
    if !p.raise(signal as u32) {
        // Caught (delivered on the way out of this call) or ignored.
        return Action::Done;
    }
    p.exit = Some(128 + (signal & 0x7f) as i32);
    Action::Exit(crate::process::signaled((signal & 0x7f) as i32))
}

/// Closes what a finished process left open (event channels it bound).
pub fn release(p: &Process) {
    for dev in p.devs.values() {
        match dev {
            DevState::Evtchn(ports) => {
                for &(port, _) in ports {
                    unbind(port);
                }
            }
            DevState::Xenbus(id) => store::disconnect(*id),
            DevState::Console { .. } => {}
        }
    }
}

/// `read`; `Err` when the caller must wait (its call is made again then).
fn read(p: &mut Process, fd: i64, buf: u64, len: u64) -> Result<i64, Blocked> {
    let (_, status) = match p.files.describe(fd) {
        Ok(d) => d,
        Err(e) => return Ok(e),
    };
    let nonblock = status & O_NONBLOCK != 0;
    let io = p.files.read(&fs::lock(), fd);
    Ok(match io {
        Err(e) => e,
        Ok(Io::File) => match p.user_bytes(buf, len.min(FILE_CHUNK), true) {
            Ok(dst) => {
                let n = p.files.read_file(&fs::lock(), fd, dst);
                n.map_or_else(|e| e, |n| n as i64)
            }
            Err(e) => e,
        },
        Ok(Io::Device(Device::Null)) => 0,
        Ok(Io::Device(Device::Zero)) => match p.user_bytes(buf, len.min(FILE_CHUNK), true) {
            Ok(dst) => {
                dst.fill(0);
                dst.len() as i64
            }
            Err(e) => e,
        },
        Ok(Io::Device(Device::Console)) => {
            if len == 0 {
                return Ok(0);
            }
            if !term::readable() {
                crate::service();
                if !term::readable() {
                    if nonblock {
                        return Ok(EAGAIN);
                    }
                    return Err(Blocked::Console);
                }
            }
            let dst = match p.user_bytes(buf, len.min(4096), true) {
                Ok(d) => d,
                Err(e) => return Ok(e),
            };
            term::read(dst).map_or(EAGAIN, |n| n as i64)
        }
        Ok(Io::Pipe(id)) => {
            let dst = match p.user_bytes(buf, len.min(crate::pipe::CAPACITY as u64), true) {
                Ok(d) => d,
                Err(e) => return Ok(e),
            };
            match crate::pipe::read(id, dst) {
                crate::pipe::Outcome::Done(n) => n as i64,
                crate::pipe::Outcome::Wait if nonblock => EAGAIN,
                crate::pipe::Outcome::Wait => return Err(Blocked::PipeRead(id)),
                crate::pipe::Outcome::Broken => 0,
            }
        }
        Ok(Io::Device(Device::Evtchn)) => read_evtchn(p, fd, buf, len, nonblock),
        Ok(Io::Device(Device::Xenia)) => read_console(p, fd, buf, len, nonblock),
        Ok(Io::Device(Device::Xenbus)) => return read_xenbus(p, fd, buf, len, nonblock),
        Ok(Io::Device(Device::Privcmd)) => EINVAL,
        Ok(Io::Device(Device::Block(n))) => crate::blockfile::read(p, fd, n, buf, len, None),
    })
}

/// `write`; `Err` when the caller must wait (its call is made again then).
fn write(p: &mut Process, fd: i64, buf: u64, len: u64) -> Result<i64, Blocked> {
    let sink = match p.files.write(fd) {
        Ok(d) => d,
        Err(e) => return Ok(e),
    };
    let bytes = match p.user_bytes(buf, len, false) {
        Ok(b) => b,
        Err(e) => return Ok(e),
    };
    let device = match sink {
        Sink::File => {
            let mut fs = fs::lock();
            fs.set_time(wallclock_ns() / 1_000_000_000);
            return Ok(p
                .files
                .write_file(&mut fs, fd, bytes)
                .map_or_else(|e| e, |n| n as i64));
        }
        Sink::Device(d) => d,
        Sink::Pipe(id) => {
            let nonblock = p.files.describe(fd).is_ok_and(|(_, s)| s & O_NONBLOCK != 0);
            return match crate::pipe::write(id, bytes) {
                crate::pipe::Outcome::Done(n) => Ok(n as i64),
                crate::pipe::Outcome::Wait if nonblock => Ok(EAGAIN),
                crate::pipe::Outcome::Wait => Err(Blocked::PipeWrite(id)),
                crate::pipe::Outcome::Broken => Ok(EPIPE),
            };
        }
    };
    Ok(match device {
        Device::Console => {
            term::write_program(bytes);
            len as i64
        }
        Device::Null | Device::Zero => len as i64,
        Device::Evtchn => {
            // Writing ports unmasks them: they are never masked here (reads consume counts).
            (len & !3) as i64
        }
        Device::Xenia => match p.devs.get(&fd) {
            Some(&DevState::Console { dom, .. }) => match backend::send_input(dom, bytes) {
                Some(n) => n as i64,
                None => err(Errno::EIO),
            },
            _ => EINVAL,
        },
        Device::Privcmd => EINVAL,
        Device::Block(n) => crate::blockfile::write(p, fd, n, bytes, None),
        Device::Xenbus => {
            let id = xenbus_conn(p, fd);
            let bytes = match p.user_bytes(buf, len, false) {
                Ok(b) => b,
                Err(e) => return Ok(e),
            };
            match store::write(id, bytes) {
                // Replies are waiting to be read first (Linux's device would block).
                0 if len > 0 => EAGAIN,
                n => n as i64,
            }
        }
    })
}

/// The xenstore connection of `/dev/xen/xenbus` descriptor `fd`, made on first use.
fn xenbus_conn(p: &mut Process, fd: i64) -> xenia_xenstore::ConnId {
    if let Some(&DevState::Xenbus(id)) = p.devs.get(&fd) {
        return id;
    }
    let id = store::connect();
    p.devs.insert(fd, DevState::Xenbus(id));
    id
}

/// `read` of a `/dev/xen/xenbus` descriptor: what waits for its connection, or (blocking)
/// the process waits for it like a pipe's reader, other processes running meanwhile
/// (`xenstore-watch` in the background).
fn read_xenbus(
    p: &mut Process,
    fd: i64,
    buf: u64,
    len: u64,
    nonblock: bool,
) -> Result<i64, Blocked> {
    let id = xenbus_conn(p, fd);
    if !store::readable(id) {
        crate::service();
        if !store::readable(id) {
            if nonblock {
                return Ok(EAGAIN);
            }
            return Err(Blocked::Xenbus(id));
        }
    }
    let bytes = store::read(id, len.min(4096) as usize);
    Ok(match p.user_bytes(buf, bytes.len() as u64, true) {
        Ok(dst) => {
            dst.copy_from_slice(&bytes);
            bytes.len() as i64
        }
        Err(e) => e,
    })
}

/// Most bytes one `read` of a file moves (a larger read returns this many; the caller
/// reads again, as after any short read).
const FILE_CHUNK: u64 = 1 << 20;

/// `pread64`.
fn pread(p: &mut Process, fd: i64, buf: u64, len: u64, offset: i64) -> i64 {
    if offset < 0 {
        return EINVAL;
    }
    if let Ok((Some(Device::Block(n)), _)) = p.files.describe(fd) {
        return crate::blockfile::read(p, fd, n, buf, len, Some(offset as u64));
    }
    match p.user_bytes(buf, len.min(FILE_CHUNK), true) {
        Ok(dst) => {
            let n = p.files.pread(&fs::lock(), fd, offset as u64, dst);
            n.map_or_else(|e| e, |n| n as i64)
        }
        Err(e) => e,
    }
}

/// `pwrite64`.
fn pwrite(p: &mut Process, fd: i64, buf: u64, len: u64, offset: i64) -> i64 {
    if offset < 0 {
        return EINVAL;
    }
    if let Ok((Some(Device::Block(n)), status)) = p.files.describe(fd) {
        if status & 3 == 0 {
            return err(Errno::EBADF);
        }
        return match p.user_bytes(buf, len.min(FILE_CHUNK), false) {
            Ok(src) => crate::blockfile::write(p, fd, n, src, Some(offset as u64)),
            Err(e) => e,
        };
    }
    match p.user_bytes(buf, len.min(FILE_CHUNK), false) {
        Ok(src) => {
            let mut fs = fs::lock();
            fs.set_time(wallclock_ns() / 1_000_000_000);
            let n = p.files.pwrite(&mut fs, fd, offset as u64, src);
            n.map_or_else(|e| e, |n| n as i64)
        }
        Err(e) => e,
    }
}

/// `readv`: the buffers filled in turn, until one is not filled whole; `Err` when the
/// caller must wait before anything was read.
fn readv(p: &mut Process, fd: i64, iov: u64, count: u64) -> Result<i64, Blocked> {
    vectored(p, fd, iov, count, read)
}

/// `readv` and `writev`: `each` (`read` or `write`) on the buffers in turn, until one is
/// not done whole; `Err` when the caller must wait before anything was moved (a partial
/// transfer is returned as one).
fn vectored(
    p: &mut Process,
    fd: i64,
    iov: u64,
    count: u64,
    each: fn(&mut Process, i64, u64, u64) -> Result<i64, Blocked>,
) -> Result<i64, Blocked> {
    let vecs = match iovecs(p, iov, count) {
        Ok(v) => v,
        Err(e) => return Ok(e),
    };
    let mut total = 0i64;
    for (base, len) in vecs {
        if len == 0 {
            continue;
        }
        let n = match each(p, fd, base, len) {
            Ok(n) => n,
            Err(blocked) if total == 0 => return Err(blocked),
            Err(_) => return Ok(total),
        };
        if n < 0 {
            return Ok(if total > 0 { total } else { n });
        }
        total += n;
        if (n as u64) < len {
            break;
        }
    }
    Ok(total)
}

/// An `iovec` array: (base, length) pairs, at most 1024 (`UIO_MAXIOV`).
fn iovecs(p: &mut Process, iov: u64, count: u64) -> Result<Vec<(u64, u64)>, i64> {
    if count > 1024 {
        return Err(EINVAL);
    }
    Ok(p.user_bytes(iov, count * 16, false)?
        .chunks(16)
        .map(|c| {
            (
                u64::from_le_bytes(c[..8].try_into().unwrap_or([0; 8])),
                u64::from_le_bytes(c[8..].try_into().unwrap_or([0; 8])),
            )
        })
        .collect())
}

/// `writev`; `Err` when the caller must wait before writing anything (a partial write is
/// returned as one).
fn writev(p: &mut Process, fd: i64, iov: u64, count: u64) -> Result<i64, Blocked> {
    vectored(p, fd, iov, count, write)
}

fn close(p: &mut Process, fd: i64) -> i64 {
    let closed = p.files.close(&mut fs::lock(), fd);
    match closed {
        Ok(end) => {
            if let Some(end) = end {
                crate::pipe::drop_end(end);
            }
            match p.devs.remove(&fd) {
                Some(DevState::Evtchn(ports)) => {
                    for (port, _) in ports {
                        unbind(port);
                    }
                }
                Some(DevState::Xenbus(id)) => store::disconnect(id),
                _ => {}
            }
            0
        }
        Err(e) => e,
    }
}

fn poll(p: &mut Process, fds: u64, nfds: u64, timeout_ms: i64) -> i64 {
    if nfds > 256 {
        return EINVAL;
    }
    let deadline = if timeout_ms < 0 {
        u64::MAX
    } else {
        now_ns().saturating_add(timeout_ms as u64 * 1_000_000)
    };
    let scan = |p: &mut Process| -> Result<i64, i64> {
        let raw = p.user_bytes(fds, nfds * 8, true)?;
        let mut entries: Vec<(i64, i16)> = raw
            .chunks(8)
            .map(|c| {
                (
                    i32::from_le_bytes([c[0], c[1], c[2], c[3]]) as i64,
                    i16::from_le_bytes([c[4], c[5]]),
                )
            })
            .collect();
        let mut n = 0;
        let mut revents = Vec::with_capacity(entries.len());
        for (fd, events) in entries.drain(..) {
            let r = if fd < 0 {
                0
            } else {
                readiness(p, fd) & (events | POLLNVAL)
            };
            if r != 0 {
                n += 1;
            }
            revents.push(r);
        }
        let raw = p.user_bytes(fds, nfds * 8, true)?;
        for (c, r) in raw.chunks_mut(8).zip(revents) {
            c[6..8].copy_from_slice(&r.to_le_bytes());
        }
        Ok(n)
    };
    loop {
        crate::service();
        match scan(p) {
            Err(e) => return e,
            Ok(n) if n > 0 => return n,
            Ok(_) => {}
        }
        if now_ns() >= deadline {
            return 0;
        }
        // Wake on anything; the scan decides.
        wait::once(deadline);
    }
}

/// What `poll` would report for `fd` right now.
fn readiness(p: &mut Process, fd: i64) -> i16 {
    if let Some(end) = p.files.pipe_end(fd) {
        return match (end.write, end.write && crate::pipe::writable(end.id)) {
            (true, ready) => {
                if ready {
                    POLLOUT
                } else {
                    0
                }
            }
            (false, _) => {
                if crate::pipe::readable(end.id) {
                    POLLIN
                } else {
                    0
                }
            }
        };
    }
    match p.files.describe(fd) {
        Err(_) => POLLNVAL,
        Ok((None, _)) | Ok((Some(Device::Null | Device::Zero | Device::Block(_)), _)) => {
            POLLIN | POLLOUT
        }
        Ok((Some(Device::Console), _)) => POLLOUT | if term::readable() { POLLIN } else { 0 },
        Ok((Some(Device::Privcmd), _)) => POLLOUT,
        Ok((Some(Device::Evtchn), _)) => POLLOUT | if evtchn_fired(p, fd) { POLLIN } else { 0 },
        Ok((Some(Device::Xenia), _)) => match p.devs.get(&fd) {
            Some(&DevState::Console { dom, pos }) => {
                POLLOUT
                    | if backend::output_ready(dom, pos) {
                        POLLIN
                    } else {
                        0
                    }
            }
            _ => POLLOUT,
        },
        Ok((Some(Device::Xenbus), _)) => {
            let id = xenbus_conn(p, fd);
            POLLOUT | if store::readable(id) { POLLIN } else { 0 }
        }
    }
}

/// Carries out an area change. New anonymous memory is demand-zero (mapped by the
/// page-fault resolver on first touch) unless `populate` asks for it at once.
fn apply(p: &mut Process, changes: &[Change], ok: i64, populate: bool) -> i64 {
    if p.apply(changes).is_err() {
        return err(Errno::ENOMEM);
    }
    if populate {
        for c in changes {
            if let Change::Map(s, e, prot) | Change::Protect(s, e, prot) = *c
                && (prot.read || prot.write || prot.exec)
            {
                let flags = crate::uspace::leaf_flags(prot.write, prot.exec);
                if p.space.map_range(s, e, flags).is_err() {
                    return err(Errno::ENOMEM);
                }
            }
        }
    }
    ok
}

/// Whether `len` bytes of new memory could be backed at all: Linux's heuristic overcommit
/// refuses a request larger than the memory there is, and so does this kernel, against the
/// frames free now (a program asking for more than dom0 has gets `ENOMEM` at the call, as
/// it did when memory was mapped at once, rather than dying at some later touch).
fn fits(len: u64) -> bool {
    let (free, _) = crate::frames::counts();
    len.div_ceil(4096) <= free as u64
}

fn mmap(p: &mut Process, addr: u64, len: u64, prot: u64, flags: u64) -> i64 {
    const MAP_PRIVATE: u64 = 0x2;
    const MAP_FIXED: u64 = 0x10;
    const MAP_ANONYMOUS: u64 = 0x20;
    const MAP_FIXED_NOREPLACE: u64 = 0x10_0000;
    const MAP_LOCKED: u64 = 0x2000;
    const MAP_POPULATE: u64 = 0x8000;
    let Some(prot) = Prot::from_linux(prot) else {
        return EINVAL;
    };
    if flags & MAP_ANONYMOUS == 0 {
        // Files are read with read(); the initrd is not mapped.
        return ENODEV;
    }
    if flags & MAP_PRIVATE == 0 {
        return EINVAL;
    }
    let fixed = flags & (MAP_FIXED | MAP_FIXED_NOREPLACE) != 0;
    // Before the page-by-page scan below, which the check bounds by the pool's size.
    if !fits(len) {
        return err(Errno::ENOMEM);
    }
    if flags & MAP_FIXED_NOREPLACE != 0
        && (addr..addr.saturating_add(len))
            .step_by(4096)
            .any(|va| p.vm.prot_at(va).is_some())
    {
        return err(Errno::EEXIST);
    }
    let populate = p.eager || flags & (MAP_POPULATE | MAP_LOCKED) != 0;
    let mut changes = Vec::new();
    match p.vm.mmap(addr, len, prot, fixed, &mut changes) {
        Ok(at) => apply(p, &changes, at as i64, populate),
        Err(e) => e.errno(),
    }
}

fn mprotect(p: &mut Process, addr: u64, len: u64, prot: u64) -> i64 {
    let Some(prot) = Prot::from_linux(prot) else {
        return EINVAL;
    };
    let mut changes = Vec::new();
    match p.vm.mprotect(addr, len, prot, &mut changes) {
        Ok(()) => {
            let eager = p.eager;
            apply(p, &changes, 0, eager)
        }
        Err(e) => e.errno(),
    }
}

fn munmap(p: &mut Process, addr: u64, len: u64) -> i64 {
    let mut changes = Vec::new();
    match p.vm.munmap(addr, len, &mut changes) {
        Ok(()) => apply(p, &changes, 0, false),
        Err(e) => e.errno(),
    }
}

fn brk(p: &mut Process, new: u64) -> i64 {
    if !fits(new.saturating_sub(p.vm.current_brk())) {
        return p.vm.current_brk() as i64;
    }
    let mut changes = Vec::new();
    let got = p.vm.brk(new, &mut changes);
    let eager = p.eager;
    let r = apply(p, &changes, got as i64, eager);
    if r < 0 {
        // No memory behind the new break: undo it, as Linux leaves the break unchanged.
        let mut undo = Vec::new();
        let old = p.vm.brk(p.vm.current_brk().min(new), &mut undo);
        let _ = p.apply(&undo);
        return old as i64;
    }
    r
}

/// `rt_sigaction`: no signals are ever delivered, so handlers are accepted and forgotten;
/// the old action reads as the default.
/// SIGKILL and SIGSTOP: never caught, ignored or blocked.
const UNBLOCKABLE: u64 = (1 << 8) | (1 << 18);

/// `rt_sigaction(sig, act, oldact)`: `struct k_sigaction` (handler, flags, restorer, mask).
fn sigaction(p: &mut Process, sig: u64, new: u64, old: u64) -> i64 {
    if !(1..=64).contains(&sig) {
        return EINVAL;
    }
    let i = (sig - 1) as usize;
    if old != 0 {
        let a = p.actions[i];
        match p.user_bytes(old, 32, true) {
            Ok(b) => {
                for (k, v) in [a.handler, a.flags, a.restorer, a.mask].iter().enumerate() {
                    b[8 * k..8 * k + 8].copy_from_slice(&v.to_le_bytes());
                }
            }
            Err(e) => return e,
        }
    }
    if new != 0 {
        if sig == 9 || sig == 19 {
            return EINVAL;
        }
        let w = match p.user_bytes(new, 32, false) {
            Ok(b) => {
                let w =
                    |k: usize| u64::from_le_bytes(b[8 * k..8 * k + 8].try_into().unwrap_or([0; 8]));
                [w(0), w(1), w(2), w(3)]
            }
            Err(e) => return e,
        };
        p.actions[i] = crate::process::SigAction {
            handler: w[0],
            flags: w[1],
            restorer: w[2],
            mask: w[3] & !UNBLOCKABLE,
        };
        if w[0] <= 1 {
            // Ignored or back to the default: a pending one is dropped, as Linux does.
            p.pending &= !crate::process::sig_bit(sig as u32);
        }
    }
    0
}

/// `rt_sigprocmask(how, set, oldset)`.
fn sigprocmask(p: &mut Process, how: u64, set: u64, old: u64) -> i64 {
    if old != 0 {
        let mask = p.sigmask;
        match p.user_bytes(old, 8, true) {
            Ok(b) => b.copy_from_slice(&mask.to_le_bytes()),
            Err(e) => return e,
        }
    }
    if set != 0 {
        let new = match p.user_bytes(set, 8, false) {
            Ok(b) => u64::from_le_bytes(b.try_into().unwrap_or([0; 8])),
            Err(e) => return e,
        };
        p.sigmask = match how {
            0 => p.sigmask | new,
            1 => p.sigmask & !new,
            2 => new,
            _ => return EINVAL,
        } & !UNBLOCKABLE;
    }
    0
}

/// `sigaltstack`: accepted; the old stack reads as disabled (`SS_DISABLE`).
fn sigaltstack(p: &mut Process, old: u64) -> i64 {
    if old != 0 {
        match p.user_bytes(old, 24, true) {
            Ok(b) => {
                b.fill(0);
                b[8..12].copy_from_slice(&2u32.to_le_bytes());
            }
            Err(e) => return e,
        }
    }
    0
}

fn arch_prctl(p: &mut Process, code: u64, addr: u64) -> i64 {
    const ARCH_SET_FS: u64 = 0x1002;
    match code {
        ARCH_SET_FS => {
            if p.vm.prot_at(addr & !0xfff).is_none() && addr != 0 {
                return EPERM;
            }
            match crate::process::set_fs_base(addr) {
                Ok(()) => {
                    p.fs_base = addr;
                    0
                }
                Err(e) => e,
            }
        }
        _ => EINVAL,
    }
}

/// `sysinfo`: the uptime, one process, and memory as the frame pool counts it (in bytes,
/// `mem_unit` 1): total is what programs may have, free what no process holds now. No
/// swap, no load averages.
fn sysinfo(p: &mut Process, out: u64) -> i64 {
    // struct sysinfo (Linux include/uapi/linux/sysinfo.h), x86-64 offsets.
    const SIZE: u64 = 112;
    let (free, total) = crate::frames::counts();
    let b = match p.user_bytes(out, SIZE, true) {
        Ok(b) => b,
        Err(e) => return e,
    };
    b.fill(0);
    let mut put = |at: usize, v: u64| b[at..at + 8].copy_from_slice(&v.to_le_bytes());
    put(0, now_ns() / 1_000_000_000);
    put(32, total as u64 * 4096);
    put(40, free as u64 * 4096);
    b[80..82].copy_from_slice(&1u16.to_le_bytes());
    b[104..108].copy_from_slice(&1u32.to_le_bytes());
    0
}

/// `syslog(2)` (`klogctl`, busybox's `dmesg`): dom0's kernel log ([`term::kernel_log`]).
/// Reading is the `READ_ALL` kind for every read action (nothing waits); consoles' levels
/// are accepted and change nothing.
fn syslog(p: &mut Process, action: u64, buf: u64, len: i64) -> i64 {
    match action {
        // READ, READ_ALL, READ_CLEAR
        2..=4 => {
            if len < 0 {
                return EINVAL;
            }
            let log = term::kernel_log(len as usize);
            let n = match p.user_bytes(buf, log.len() as u64, true) {
                Ok(dst) => {
                    dst.copy_from_slice(&log);
                    log.len() as i64
                }
                Err(e) => return e,
            };
            if action == 4 {
                term::clear_kernel_log();
            }
            n
        }
        5 => {
            term::clear_kernel_log();
            0
        }
        0 | 1 | 6..=8 => 0,
        9 => term::kernel_log_len() as i64,
        10 => term::KLOG_BYTES as i64,
        _ => EINVAL,
    }
}

/// `reboot(2)` (busybox's `poweroff -f`, `reboot -f`, `halt -f`): dom0 shuts down, and the
/// hypervisor with it, as dom0's `poweroff` and `reboot` do. Linux's magic numbers are
/// checked as Linux checks them; Ctrl-Alt-Del settings are accepted and mean nothing.
fn reboot(magic1: u64, magic2: u64, cmd: u64) -> i64 {
    use guest_abi::sched::ShutdownReason;
    const MAGIC1: u32 = 0xfee1_dead;
    const MAGIC2: [u32; 4] = [672_274_793, 85_072_278, 369_367_448, 537_993_216];
    if magic1 as u32 != MAGIC1 || !MAGIC2.contains(&(magic2 as u32)) {
        return EINVAL;
    }
    let (reason, word) = match cmd as u32 {
        0x0123_4567 | 0xa1b2_c3d4 => (ShutdownReason::Reboot, "reboot"),
        0x4321_fedc => (ShutdownReason::Poweroff, "poweroff"),
        0xcdef_0123 => (ShutdownReason::Poweroff, "halt"),
        0x89ab_cdef | 0 => return 0,
        _ => return EINVAL,
    };
    tprintln!("dom0: {word}");
    xenia_guest_rt::check::shutdown(reason)
}

/// `uname -r`: dom0's kernel release.
pub const RELEASE: &str = concat!(env!("CARGO_PKG_VERSION"), "-xenia-dom0");

/// `uname`: `struct utsname`, six NUL-terminated fields of 65 bytes. The ABI is Linux's, so
/// the system is named `Linux` (what programs test for); the release says what it really is.
fn uname(p: &mut Process, out: u64) -> i64 {
    const FIELD: usize = 65;
    let b = match p.user_bytes(out, 6 * FIELD as u64, true) {
        Ok(b) => b,
        Err(e) => return e,
    };
    b.fill(0);
    let release = String::from(RELEASE);
    for (i, text) in [
        "Linux",
        xenia_dom0::HOSTNAME,
        release.as_str(),
        "#1 Xenia dom0 kernel",
        "x86_64",
        "(none)",
    ]
    .iter()
    .enumerate()
    {
        let n = text.len().min(FIELD - 1);
        b[i * FIELD..i * FIELD + n].copy_from_slice(&text.as_bytes()[..n]);
    }
    0
}

/// `futex` for one thread: a wake wakes nobody, a wait would wait forever and is refused.
fn futex(op: u64) -> i64 {
    match op & 0x7f {
        1 => 0,
        _ => EAGAIN,
    }
}

fn clock_gettime(p: &mut Process, clock: u64, out: u64) -> i64 {
    let ns = match clock {
        0 | 5 => wallclock_ns(),
        1 | 2 | 3 | 4 | 6 | 7 => now_ns(),
        _ => return EINVAL,
    };
    match p.user_bytes(out, 16, true) {
        Ok(b) => {
            b[..8].copy_from_slice(&(ns / 1_000_000_000).to_le_bytes());
            b[8..].copy_from_slice(&(ns % 1_000_000_000).to_le_bytes());
            0
        }
        Err(e) => e,
    }
}

/// Wall-clock time: the hypervisor's boot-time wall clock plus system time.
pub fn wallclock_ns() -> u64 {
    let s = shared();
    let sec = u64::from(s.wc_sec.load(Ordering::Acquire))
        | (u64::from(s.wc_sec_hi.load(Ordering::Acquire)) << 32);
    let nsec = u64::from(s.wc_nsec.load(Ordering::Acquire));
    sec * 1_000_000_000 + nsec + now_ns()
}

/// `nanosleep` / `clock_nanosleep`: the system time to sleep until (the scheduler runs others
/// meanwhile).
fn nanosleep(p: &mut Process, req: u64, absolute: bool) -> Result<u64, i64> {
    let t = match p.user_bytes(req, 16, false) {
        Ok(b) => (
            i64::from_le_bytes(b[..8].try_into().unwrap_or([0; 8])),
            i64::from_le_bytes(b[8..].try_into().unwrap_or([0; 8])),
        ),
        Err(e) => return Err(e),
    };
    if t.0 < 0 || !(0..1_000_000_000).contains(&t.1) {
        return Err(EINVAL);
    }
    let ns = (t.0 as u64).saturating_mul(1_000_000_000) + t.1 as u64;
    Ok(if absolute {
        ns
    } else {
        now_ns().saturating_add(ns)
    })
}

fn getrandom(p: &mut Process, buf: u64, len: u64) -> i64 {
    let len = len.min(1 << 20);
    match p.user_bytes(buf, len, true) {
        Ok(b) => {
            random::fill(b);
            len as i64
        }
        Err(e) => e,
    }
}

// ---------------------------------------------------------------------------------------
// ioctl and the devices.

fn ioctl(p: &mut Process, fd: i64, req: u64, arg: u64) -> i64 {
    let device = match p.files.describe(fd) {
        Ok((d, _)) => d,
        Err(e) => return e,
    };
    match (device, req) {
        (Some(Device::Console), _) => tty_ioctl(p, req, arg),
        (Some(Device::Privcmd), devices::IOCTL_PRIVCMD_HYPERCALL) => privcmd(p, arg),
        (Some(Device::Evtchn), _) => evtchn_ioctl(p, fd, req, arg),
        (Some(Device::Xenia), _) => xenia_ioctl(p, fd, req, arg),
        (Some(Device::Block(n)), _) => crate::blockfile::ioctl(p, n, req, arg),
        (Some(_), _) => ENOTTY,
        (None, _) => ENOTTY,
    }
}

/// The terminal's ioctls (`tty_ioctl(4)`): settings, the foreground process group, the
/// window size, pending input. Anything else is `ENOTTY`, as for a request a terminal
/// driver does not know.
fn tty_ioctl(p: &mut Process, req: u64, arg: u64) -> i64 {
    use xenia_dom0::tty::Termios;
    const TCGETS: u64 = 0x5401;
    const TCSETS: u64 = 0x5402;
    const TCSETSW: u64 = 0x5403;
    const TCSETSF: u64 = 0x5404;
    const TCSBRK: u64 = 0x5409;
    const TCXONC: u64 = 0x540a;
    const TCFLSH: u64 = 0x540b;
    const TIOCSCTTY: u64 = 0x540e;
    const TIOCGPGRP: u64 = 0x540f;
    const TIOCSPGRP: u64 = 0x5410;
    const TIOCGWINSZ: u64 = 0x5413;
    const TIOCSWINSZ: u64 = 0x5414;
    const FIONREAD: u64 = 0x541b;
    const TIOCNOTTY: u64 = 0x5422;
    const TIOCGSID: u64 = 0x5429;
    let put = |p: &mut Process, bytes: &[u8]| match p.user_bytes(arg, bytes.len() as u64, true) {
        Ok(dst) => {
            dst.copy_from_slice(bytes);
            0
        }
        Err(e) => e,
    };
    match req {
        TCGETS => put(p, &term::termios().to_bytes()),
        TCSETS | TCSETSW | TCSETSF => match p.user_bytes(arg, Termios::SIZE as u64, false) {
            Ok(b) => {
                let mut raw = [0u8; Termios::SIZE];
                raw.copy_from_slice(b);
                term::with_tty(|t| t.set(Termios::from_bytes(&raw), req == TCSETSF));
                0
            }
            Err(e) => e,
        },
        TIOCGPGRP => {
            let fg = term::with_tty(|t| t.foreground);
            put(p, &fg.to_le_bytes())
        }
        TIOCSPGRP => match p.user_bytes(arg, 4, false) {
            Ok(b) => {
                let pgrp = u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
                if pgrp as i32 <= 0 {
                    return EINVAL;
                }
                term::with_tty(|t| t.foreground = pgrp);
                0
            }
            Err(e) => e,
        },
        TIOCGSID => put(p, &p.pgid.to_le_bytes()),
        TIOCGWINSZ => {
            let (rows, cols) = term::with_tty(|t| t.winsize);
            let mut ws = [0u8; 8];
            ws[..2].copy_from_slice(&rows.to_le_bytes());
            ws[2..4].copy_from_slice(&cols.to_le_bytes());
            put(p, &ws)
        }
        TIOCSWINSZ => match p.user_bytes(arg, 8, false) {
            Ok(b) => {
                let size = (
                    u16::from_le_bytes([b[0], b[1]]),
                    u16::from_le_bytes([b[2], b[3]]),
                );
                term::with_tty(|t| t.winsize = size);
                0
            }
            Err(e) => e,
        },
        FIONREAD => {
            let n = term::with_tty(|t| t.pending()) as u32;
            put(p, &n.to_le_bytes())
        }
        TCFLSH => {
            // TCIFLUSH (0) and TCIOFLUSH (2) drop typed input; output is never held.
            if arg == 0 || arg == 2 {
                term::with_tty(|t| t.flush());
            }
            if arg > 2 { EINVAL } else { 0 }
        }
        TCSBRK | TCXONC | TIOCSCTTY | TIOCNOTTY => 0,
        _ => ENOTTY,
    }
}

fn read_u16(p: &mut Process, va: u64) -> Result<u16, i64> {
    let b = p.user_bytes(va, 2, false)?;
    Ok(u16::from_le_bytes([b[0], b[1]]))
}

/// `IOCTL_PRIVCMD_HYPERCALL`: the hypercall, if the policy allows it.
fn privcmd(p: &mut Process, arg: u64) -> i64 {
    // The hypervisor reads and writes the call's buffers without faulting pages in: from
    // the first call on, the process's memory is all mapped.
    if !p.eager && p.populate().is_err() {
        return err(Errno::ENOMEM);
    }
    let raw = match p.user_bytes(arg, 48, false) {
        Ok(b) => b,
        Err(e) => return e,
    };
    let word = |i: usize| u64::from_le_bytes(raw[i * 8..i * 8 + 8].try_into().unwrap_or([0; 8]));
    let call = PrivcmdHypercall {
        op: word(0),
        arg: [word(1), word(2), word(3), word(4), word(5)],
    };
    let allowed = match devices::privcmd_policy(&call) {
        Policy::Allow => true,
        Policy::Deny => false,
        Policy::IfForeignAt(va) => match read_u16(p, va) {
            Ok(d) => devices::is_foreign(d.into()),
            Err(e) => return e,
        },
        Policy::DomctlAt(va) => match p.user_bytes(va, 10, false) {
            Ok(b) => {
                let cmd = u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
                let dom = u16::from_le_bytes([b[8], b[9]]);
                let allowed = devices::domctl_allowed(cmd, dom);
                // The hypervisor revokes dom0's mappings of a destroyed domain's grants:
                // the kernel unmaps them first (no other code runs until the call).
                if allowed && cmd == guest_abi::domctl::XEN_DOMCTL_DESTROYDOMAIN {
                    crate::grantmap::before_destroy(dom);
                }
                allowed
            }
            Err(e) => return e,
        },
    };
    if !allowed {
        return EPERM;
    }
    let a = call.arg;
    // SAFETY: the call is one the policy lets a process make: control operations, and
    // memory, MMU and event-channel operations on other domains only, none of which can
    // change dom0's own mappings or ports. Its pointers are the process's addresses in the
    // current address space; the hypervisor checks and copies them.
    unsafe { hypercall5(call.op, a[0], a[1], a[2], a[3], a[4]) }
}

/// Ports the kernel itself binds, shared with evtchn descriptors rather than bound twice.
fn kernel_virq_port(virq: u32) -> Option<u32> {
    match virq {
        guest_abi::event::VIRQ_DOM_EXC => Some(wait::dom_exc_port()),
        guest_abi::event::VIRQ_TIMER => Some(wait::timer_port()),
        _ => None,
    }
}

fn unbind(port: u32) {
    if port != wait::dom_exc_port() && port != wait::timer_port() {
        let _ = calls::evtchn_close(port);
    }
}

fn evtchn_ioctl(p: &mut Process, fd: i64, req: u64, arg: u64) -> i64 {
    let word = |p: &mut Process, i: u64| -> Result<u32, i64> {
        let b = p.user_bytes(arg + 4 * i, 4, false)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    };
    let bound = match req {
        devices::IOCTL_EVTCHN_BIND_VIRQ => {
            let virq = match word(p, 0) {
                Ok(v) => v,
                Err(e) => return e,
            };
            match kernel_virq_port(virq) {
                Some(port) => Ok(port),
                None => calls::evtchn_bind_virq(virq, 0),
            }
        }
        devices::IOCTL_EVTCHN_BIND_INTERDOMAIN => {
            let (dom, port) = match (word(p, 0), word(p, 1)) {
                (Ok(d), Ok(r)) => (d, r),
                (Err(e), _) | (_, Err(e)) => return e,
            };
            if dom > 0x7fef {
                return EINVAL;
            }
            calls::evtchn_bind_interdomain(dom as u16, port)
        }
        devices::IOCTL_EVTCHN_UNBIND => {
            let port = match word(p, 0) {
                Ok(v) => v,
                Err(e) => return e,
            };
            return match p.devs.get_mut(&fd) {
                Some(DevState::Evtchn(ports)) if ports.iter().any(|&(q, _)| q == port) => {
                    ports.retain(|&(q, _)| q != port);
                    unbind(port);
                    0
                }
                _ => ENOENT,
            };
        }
        devices::IOCTL_EVTCHN_NOTIFY => {
            let port = match word(p, 0) {
                Ok(v) => v,
                Err(e) => return e,
            };
            let mine = matches!(p.devs.get(&fd), Some(DevState::Evtchn(ports)) if ports.iter().any(|&(q, _)| q == port));
            return if !mine {
                EINVAL
            } else {
                calls::evtchn_send(port).map_or_else(err, |()| 0)
            };
        }
        devices::IOCTL_EVTCHN_RESET => {
            if let Some(DevState::Evtchn(ports)) = p.devs.get_mut(&fd) {
                for (port, _) in ports.drain(..) {
                    unbind(port);
                }
            }
            return 0;
        }
        _ => return ENOTTY,
    };
    match bound {
        Ok(port) => {
            let seen = events::count(port);
            match p
                .devs
                .entry(fd)
                .or_insert_with(|| DevState::Evtchn(Vec::new()))
            {
                DevState::Evtchn(ports) => ports.push((port, seen)),
                DevState::Console { .. } | DevState::Xenbus(_) => return EINVAL,
            }
            port as i64
        }
        Err(e) => err(e),
    }
}

fn evtchn_fired(p: &Process, fd: i64) -> bool {
    match p.devs.get(&fd) {
        Some(DevState::Evtchn(ports)) => ports.iter().any(|&(q, seen)| events::count(q) != seen),
        _ => false,
    }
}

fn read_evtchn(p: &mut Process, fd: i64, buf: u64, len: u64, nonblock: bool) -> i64 {
    if len < 4 {
        return EINVAL;
    }
    // An event still pending has not moved its port's counter yet.
    wait::take_events();
    if !evtchn_fired(p, fd) {
        if nonblock {
            return EAGAIN;
        }
        let watched: Vec<(u32, u32)> = match p.devs.get(&fd) {
            Some(DevState::Evtchn(ports)) if !ports.is_empty() => ports.clone(),
            // Nothing bound: nothing could ever arrive.
            _ => return EAGAIN,
        };
        wait::until(u64::MAX, || {
            watched.iter().any(|&(q, seen)| events::count(q) != seen)
        });
    }
    let mut fired = Vec::new();
    if let Some(DevState::Evtchn(ports)) = p.devs.get_mut(&fd) {
        for (port, seen) in ports.iter_mut() {
            let now = events::count(*port);
            if now != *seen && fired.len() < (len / 4) as usize {
                *seen = now;
                fired.push(*port);
            }
        }
    }
    let bytes: Vec<u8> = fired.iter().flat_map(|q| q.to_le_bytes()).collect();
    match p.user_bytes(buf, bytes.len() as u64, true) {
        Ok(dst) => {
            dst.copy_from_slice(&bytes);
            bytes.len() as i64
        }
        Err(e) => e,
    }
}

fn read_console(p: &mut Process, fd: i64, buf: u64, len: u64, nonblock: bool) -> i64 {
    let Some(&DevState::Console { dom, pos }) = p.devs.get(&fd) else {
        return EINVAL;
    };
    if !backend::output_ready(dom, pos) {
        if nonblock {
            return EAGAIN;
        }
        wait::until(u64::MAX, || backend::output_ready(dom, pos));
    }
    let Some((bytes, next)) = backend::output_since(dom, pos, len.min(4096) as usize) else {
        // The domain is gone: end of file.
        return 0;
    };
    match p.user_bytes(buf, bytes.len() as u64, true) {
        Ok(dst) => {
            dst.copy_from_slice(&bytes);
            p.devs.insert(fd, DevState::Console { dom, pos: next });
            bytes.len() as i64
        }
        Err(e) => e,
    }
}

fn xenia_ioctl(p: &mut Process, fd: i64, req: u64, arg: u64) -> i64 {
    match req {
        devices::XENIA_IOCTL_ADOPT => {
            let args = match p.user_bytes(arg, core::mem::size_of::<AdoptArgs>() as u64, false) {
                Ok(b) => {
                    let w = |i: usize| u64::from_le_bytes(b[i..i + 8].try_into().unwrap_or([0; 8]));
                    let h = |i: usize| u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
                    AdoptArgs {
                        dom: h(0),
                        console_port: h(4),
                        console_mfn: w(8),
                        store_port: h(16),
                        _pad: 0,
                        store_mfn: w(24),
                        record: w(32),
                        record_len: w(40),
                    }
                }
                Err(e) => return e,
            };
            if args.record_len > MAX_RECORD as u64 || args.dom == 0 || args.dom > 0x7fef {
                return EINVAL;
            }
            let record = match p.user_bytes(args.record, args.record_len, false) {
                Ok(b) => match Record::decode(b) {
                    Some(r) => r,
                    None => return EINVAL,
                },
                Err(e) => return e,
            };
            let console =
                (args.console_port != u32::MAX).then_some((args.console_mfn, args.console_port));
            let store = (args.store_port != u32::MAX).then_some((args.store_mfn, args.store_port));
            match backend::adopt(args.dom as u16, record, console, store) {
                Ok(()) => 0,
                Err(e) => e,
            }
        }
        devices::XENIA_IOCTL_LIST => {
            let b = match p.user_bytes(arg, 16, false) {
                Ok(b) => BufferArgs {
                    buf: u64::from_le_bytes(b[..8].try_into().unwrap_or([0; 8])),
                    len: u64::from_le_bytes(b[8..].try_into().unwrap_or([0; 8])),
                },
                Err(e) => return e,
            };
            let text: String = backend::list().iter().map(ListEntry::encode).collect();
            if text.len() as u64 > b.len {
                return ERANGE;
            }
            match p.user_bytes(b.buf, text.len() as u64, true) {
                Ok(dst) => {
                    dst.copy_from_slice(text.as_bytes());
                    text.len() as i64
                }
                Err(e) => e,
            }
        }
        devices::XENIA_IOCTL_RENAME => {
            let a = match p.user_bytes(arg, core::mem::size_of::<RenameArgs>() as u64, false) {
                Ok(b) => RenameArgs {
                    dom: u32::from_le_bytes([b[0], b[1], b[2], b[3]]),
                    _pad: 0,
                    name: u64::from_le_bytes(b[8..16].try_into().unwrap_or([0; 8])),
                    name_len: u64::from_le_bytes(b[16..24].try_into().unwrap_or([0; 8])),
                },
                Err(e) => return e,
            };
            if a.dom == 0 || a.dom > 0x7fef || a.name_len > devices::MAX_NAME as u64 {
                return EINVAL;
            }
            let name = match p.user_bytes(a.name, a.name_len, false) {
                Ok(b) => match core::str::from_utf8(b) {
                    Ok(s) => String::from(s),
                    Err(_) => return EINVAL,
                },
                Err(e) => return e,
            };
            backend::rename(a.dom as u16, &name).map_or_else(|e| e, |()| 0)
        }
        devices::XENIA_IOCTL_RECORD => {
            let a = match p.user_bytes(arg, core::mem::size_of::<RecordArgs>() as u64, false) {
                Ok(b) => RecordArgs {
                    dom: u32::from_le_bytes([b[0], b[1], b[2], b[3]]),
                    _pad: 0,
                    buf: u64::from_le_bytes(b[8..16].try_into().unwrap_or([0; 8])),
                    len: u64::from_le_bytes(b[16..24].try_into().unwrap_or([0; 8])),
                },
                Err(e) => return e,
            };
            if a.dom > 0x7fef {
                return EINVAL;
            }
            let Some(bytes) = backend::record(a.dom as u16) else {
                return ESRCH;
            };
            if bytes.len() as u64 > a.len {
                return ERANGE;
            }
            match p.user_bytes(a.buf, bytes.len() as u64, true) {
                Ok(dst) => {
                    dst.copy_from_slice(&bytes);
                    bytes.len() as i64
                }
                Err(e) => e,
            }
        }
        devices::XENIA_IOCTL_FORGET => {
            if arg > 0x7fef {
                return EINVAL;
            }
            backend::forget(arg as u16).map_or_else(|e| e, |()| 0)
        }
        devices::XENIA_IOCTL_CONSOLE => {
            if arg > 0x7fef || !backend::has_console(arg as u16) {
                return ESRCH;
            }
            let dom = arg as u16;
            let pos = backend::history_start(dom).unwrap_or(0);
            p.devs.insert(fd, DevState::Console { dom, pos });
            0
        }
        _ => ENOTTY,
    }
}
