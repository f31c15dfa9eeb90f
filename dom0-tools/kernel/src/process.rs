//! Processes: static Linux programs from the initrd, each loaded into an address space of its
//! own and run in ring 3.
//!
//! The built-in shell starts one program (the *root*) and waits in
//! [`xenia_guest_rt::user::run_at`] until it and every process it started (`fork`) have
//! ended. The running process lives in [`CURRENT`], where the system-call handler
//! ([`crate::sys`]) and the page-fault resolver find it (both run in the trap handler, so they
//! are the only users of the lock then); the others wait in [`OTHERS`], ready or blocked.
//!
//! **Switching, on one kernel stack.** A process gives up the CPU only in a system call (the
//! kernel never preempts ring 3 yet): one that must wait (a read from an empty pipe or the
//! terminal, `wait4` with no child ended, `nanosleep`) is *blocked* with its registers saved
//! — rewound onto the `syscall` instruction for the calls that are simply made again when the
//! process runs next, or with the call's result for `nanosleep` — and another process's
//! registers go into the trap frame, its address space and FS base are loaded, and the trap
//! returns into it. With nothing ready the kernel waits for an event (input, a timer, a
//! domain's console) in [`crate::wait`] and looks again. A process that ends (`exit_group`,
//! an unresolved fault, a signal from `kill`) becomes a *zombie* until its parent's `wait4`
//! collects its status (orphans are collected at once); its descriptors are closed and its
//! memory freed when it ends.
//!
//! Memory is demand-zero, as in Linux: the program's segments and the top of its stack are
//! mapped when it starts (the kernel writes them before the program runs, except the whole
//! read-only pages of a program from the initrd, which are the initrd's frames, shared:
//! [`crate::uspace`]); the rest of the
//! stack, the heap (`brk`) and anonymous `mmap`s are only recorded as areas
//! ([`AddressSpace`]) and each page gets a fresh zeroed frame on first touch, by the process
//! (a page fault the resolver fixes) or by the kernel copying to or from it
//! ([`Process::user_bytes`]). Unmapping frees exactly the pages that were touched. A fault
//! outside the process's areas, or against their protection, ends the process; so does a
//! touch the frame pool cannot back (with a message saying so).
//!
//! Two exceptions map at once: `MAP_POPULATE`, and every process that has made a privcmd
//! hypercall ([`Process::populate`]), since the hypervisor reads and writes a hypercall's
//! buffers without faulting pages in (Linux's libxencall locks its buffers for the same
//! reason).

use alloc::boxed::Box;
use alloc::collections::BTreeMap;
use alloc::string::String;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicU32, Ordering};

use guest_abi::Errno;
use guest_abi::calls;
use guest_abi::selectors::SEGBASE_FS;
use spin::Mutex;
use xenia_dom0::files::Files;
use xenia_dom0::program::{self, USER_END};
use xenia_dom0::shell::Ended;
use xenia_dom0::userstack::{
    self, AT_ENTRY, AT_PAGESZ, AT_PHDR, AT_PHENT, AT_PHNUM, AT_SYSINFO_EHDR,
};
use xenia_dom0::vm::{AddressSpace, Change, Prot};
use xenia_guest_rt::trap::{self, Entry, ExitKind, Regs};
use xenia_guest_rt::user;

use crate::uspace::{MapError, Uspace, leaf_flags};
use crate::{fs, random};

/// The stack's size (mapped as it grows) and where it ends.
const STACK_SIZE: u64 = 8 << 20;
const STACK_TOP: u64 = USER_END;
/// Stack pages mapped at start (the arguments and environment go there).
const STACK_EAGER: u64 = 16 * 4096;

/// Per-descriptor state of the kernel's devices.
pub enum DevState {
    /// An evtchn descriptor: its bound ports and the events seen on each.
    Evtchn(Vec<(u32, u32)>),
    /// A `/dev/xen/xenia` descriptor attached to a domain's console, at a read position.
    Console { dom: u16, pos: u64 },
    /// A `/dev/xen/xenbus` descriptor: its xenstore connection.
    Xenbus(xenia_xenstore::ConnId),
}

/// A process ID.
pub type Pid = u32;

/// Processes alive at once (the root included); `fork` beyond it is `EAGAIN`.
pub const MAX_PROCESSES: usize = 128;

/// What a blocked process waits for (its system call is made again, or completed, when it
/// holds).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Blocked {
    /// Input on the terminal.
    Console,
    /// Bytes in pipe `id`, or no writer left.
    PipeRead(u32),
    /// Room in pipe `id`, or no reader left.
    PipeWrite(u32),
    /// A child to end (or none left).
    Child,
    /// System time `ns` (`nanosleep`; the call's result is already in its registers).
    Until(u64),
    /// A reply or watch event on a `/dev/xen/xenbus` connection.
    Xenbus(xenia_xenstore::ConnId),
}

impl Blocked {
    /// Whether it holds for process `pid`, given every waiting process.
    fn holds(self, pid: Pid, waiting: &BTreeMap<Pid, Process>) -> bool {
        match self {
            Blocked::Console => crate::term::readable(),
            Blocked::PipeRead(id) => crate::pipe::readable(id),
            Blocked::PipeWrite(id) => crate::pipe::writable(id),
            Blocked::Child => {
                ZOMBIES.lock().iter().any(|z| z.ppid == pid)
                    || !waiting.values().any(|o| o.ppid == pid)
            }
            Blocked::Until(ns) => xenia_guest_rt::time::now_ns() >= ns,
            Blocked::Xenbus(id) => crate::store::readable(id),
        }
    }
}

/// The first waiting process that may run now, in ID order: one that waits for nothing, or
/// for what has come, or has a signal to take. (No copy of the table: this runs at every
/// switch.)
fn first_ready() -> Option<Pid> {
    let others = OTHERS.lock();
    others
        .values()
        .find(|o| o.deliverable().is_some() || o.blocked.is_none_or(|b| b.holds(o.pid, &others)))
        .map(|o| o.pid)
}

/// What a system call leaves for the scheduler to do once it returns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Go back to the caller.
    Done,
    /// The caller waits for this; its call is made again then (the registers are rewound).
    Retry(Blocked),
    /// The caller sleeps until system time `ns`; its call returns 0 then.
    Sleep(u64),
    /// The caller waits for a child to end, and its call then returns `EINTR`: what
    /// `sigsuspend` comes to while the only signal a process can wait for is `SIGCHLD`,
    /// whose handler (a shell's) would interrupt it.
    Suspend,
    /// The caller ends with this wait status (Linux's encoding: `code << 8`, or the signal).
    Exit(i32),
}

/// A process that ended and whose parent has not collected it (`wait4`).
struct Zombie {
    pid: Pid,
    ppid: Pid,
    status: i32,
}

/// The wait status of `exit(code)`.
pub const fn exited(code: i32) -> i32 {
    (code & 0xff) << 8
}

/// The wait status of a death by `signal`.
pub const fn signaled(signal: i32) -> i32 {
    signal & 0x7f
}

/// A signal's disposition (`rt_sigaction`'s `struct k_sigaction`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SigAction {
    /// `SIG_DFL` (0), `SIG_IGN` (1) or the handler's address.
    pub handler: u64,
    /// `SA_*`.
    pub flags: u64,
    /// Where the handler returns (`SA_RESTORER`: the C library's `rt_sigreturn` stub).
    pub restorer: u64,
    /// Signals blocked while the handler runs.
    pub mask: u64,
}

/// `SA_RESTORER`.
pub const SA_RESTORER: u64 = 0x0400_0000;
/// `SA_RESTART`.
pub const SA_RESTART: u64 = 0x1000_0000;
/// `SA_NODEFER`.
pub const SA_NODEFER: u64 = 0x4000_0000;
/// `SIGCHLD`.
pub const SIGCHLD: u32 = 17;

/// The bit of signal `sig` (1 to 64) in a mask.
pub const fn sig_bit(sig: u32) -> u64 {
    1u64 << ((sig - 1) & 63)
}

/// Signals whose default action is to be ignored (`SIGCHLD`, `SIGCONT`, `SIGURG`,
/// `SIGWINCH`).
pub const fn ignored_by_default(sig: u32) -> bool {
    matches!(sig, 17 | 18 | 23 | 28)
}

/// A process.
pub struct Process {
    /// Its ID.
    pub pid: Pid,
    /// Its parent's (0: none, its zombie is collected at once).
    pub ppid: Pid,
    /// Its process group (Linux's `setpgid`).
    pub pgid: Pid,
    /// Its name, for messages.
    pub name: String,
    /// Its arguments as `execve` got them, each ended by a NUL (`/proc/<pid>/cmdline`).
    pub cmdline: Vec<u8>,
    /// When it started (system time, ns), for `/proc/<pid>/stat`.
    pub started: u64,
    /// Its page tables and pages.
    pub space: Uspace,
    /// Its areas.
    pub vm: AddressSpace,
    /// Its descriptors.
    pub files: Files,
    /// Device state by descriptor.
    pub devs: BTreeMap<i64, DevState>,
    /// Set by `exit_group`.
    pub exit: Option<i32>,
    /// Whether its anonymous memory is mapped when made rather than on first touch: set by
    /// its first privcmd hypercall ([`Process::populate`]).
    pub eager: bool,
    /// Its ring-3 registers while it does not run.
    pub regs: Regs,
    /// Its FS base (`arch_prctl(ARCH_SET_FS)`), loaded when it runs.
    pub fs_base: u64,
    /// What it waits for, if it is blocked.
    pub blocked: Option<Blocked>,
    /// Its working directory (absolute, normalised).
    pub cwd: String,
    /// Its file-mode creation mask (`umask`).
    pub umask: u32,
    /// What each signal does (index: signal − 1).
    pub actions: Box<[SigAction; 64]>,
    /// Signals blocked.
    pub sigmask: u64,
    /// Caught signals raised and not yet delivered.
    pub pending: u64,
    /// The mask `sigsuspend` replaced, put back when it returns.
    pub saved_mask: Option<u64>,
    /// Its blocked call was rewound to be made again (else its result is in `rax`).
    pub retry: bool,
}

impl Process {
    /// The lowest caught signal pending and not blocked.
    pub fn deliverable(&self) -> Option<u32> {
        let ready = self.pending & !self.sigmask;
        (ready != 0).then(|| ready.trailing_zeros() + 1)
    }

    /// Raises `sig` for this process: caught, it waits to be delivered; ignored, nothing;
    /// else its default action, which for most signals ends the process (`true`: the caller
    /// ends it with status `signaled(sig)`).
    pub fn raise(&mut self, sig: u32) -> bool {
        let Some(action) = self.actions.get((sig as usize).wrapping_sub(1)).copied() else {
            return false;
        };
        match action.handler {
            0 => !ignored_by_default(sig),
            1 => false,
            _ => {
                self.pending |= sig_bit(sig);
                false
            }
        }
    }

    /// Delivers signal `sig` to this process, whose ring-3 registers are `regs`: Linux's
    /// `rt_sigframe` on its stack (return address: the restorer; `ucontext` with the
    /// registers and the mask to return to; `siginfo`), and `regs` set to run the handler
    /// (`rdi` the signal, `rsi` the siginfo, `rdx` the ucontext). `false` when the frame
    /// cannot be written or there is no restorer (the caller ends the process).
    pub fn deliver(&mut self, regs: &mut Regs, sig: u32) -> bool {
        const UC: u64 = 8;
        const SIGINFO: u64 = UC + 304;
        const FRAME: u64 = SIGINFO + 128;
        let action = self.actions[(sig - 1) as usize];
        self.pending &= !sig_bit(sig);
        if action.flags & SA_RESTORER == 0 || action.restorer == 0 {
            return false;
        }
        let old_mask = self.saved_mask.take().unwrap_or(self.sigmask);
        // Below the red zone, the frame's start 8 short of a 16-byte boundary (as after a
        // call).
        let top = regs.rsp.wrapping_sub(128);
        let at = (top.wrapping_sub(FRAME) & !15).wrapping_sub(8);
        let mut frame = [0u8; FRAME as usize];
        let mut put = |off: u64, v: u64| {
            frame[off as usize..off as usize + 8].copy_from_slice(&v.to_le_bytes());
        };
        put(0, action.restorer);
        // uc_flags, uc_link, uc_stack (disabled): zero but ss_flags.
        put(UC + 16 + 8, 2);
        let mc = UC + 40;
        let gregs = [
            regs.r8,
            regs.r9,
            regs.r10,
            regs.r11,
            regs.r12,
            regs.r13,
            regs.r14,
            regs.r15,
            regs.rdi,
            regs.rsi,
            regs.rbp,
            regs.rbx,
            regs.rdx,
            regs.rax,
            regs.rcx,
            regs.rsp,
            regs.rip,
            regs.rflags,
        ];
        for (i, v) in gregs.iter().enumerate() {
            put(mc + 8 * i as u64, *v);
        }
        put(mc + 144, regs.cs | regs.ss << 48);
        put(mc + 176, old_mask); // oldmask
        put(UC + 296, old_mask); // uc_sigmask
        // siginfo: si_signo, si_errno, si_code (SI_USER 0).
        frame[SIGINFO as usize..SIGINFO as usize + 4].copy_from_slice(&sig.to_le_bytes());
        match self.user_bytes(at, FRAME, true) {
            Ok(dst) => dst.copy_from_slice(&frame),
            Err(_) => return false,
        }
        self.sigmask = old_mask | action.mask;
        if action.flags & SA_NODEFER == 0 {
            self.sigmask |= sig_bit(sig);
        }
        regs.rsp = at;
        regs.rip = action.handler;
        regs.rdi = u64::from(sig);
        regs.rsi = at + SIGINFO;
        regs.rdx = at + UC;
        regs.rax = 0;
        true
    }

    /// `rt_sigreturn`: the registers and mask the frame at `regs.rsp` (just past its return
    /// address) holds. Selectors stay the process's, and only the arithmetic, direction and
    /// trap flags come from the frame (interrupts stay on). Returns the `rax` to go back with.
    pub fn sigreturn(&mut self, regs: &mut Regs) -> Result<u64, i64> {
        let uc = regs.rsp;
        let bytes = self.user_bytes(uc, 304, false)?;
        let word =
            |off: usize| u64::from_le_bytes(bytes[off..off + 8].try_into().unwrap_or([0; 8]));
        let g = |i: usize| word(40 + 8 * i);
        let (r8, r9, r10, r11, r12, r13, r14, r15) =
            (g(0), g(1), g(2), g(3), g(4), g(5), g(6), g(7));
        let (rdi, rsi, rbp, rbx, rdx, rax, rcx, rsp, rip, flags) = (
            g(8),
            g(9),
            g(10),
            g(11),
            g(12),
            g(13),
            g(14),
            g(15),
            g(16),
            g(17),
        );
        let mask = word(296);
        const USER_FLAGS: u64 = 0xCD5 | 0x100 | 0x400;
        *regs = Regs {
            r8,
            r9,
            r10,
            r11,
            r12,
            r13,
            r14,
            r15,
            rdi,
            rsi,
            rbp,
            rbx,
            rdx,
            rax,
            rcx,
            rsp,
            rip,
            rflags: (flags & USER_FLAGS) | 0x202,
            ..*regs
        };
        self.sigmask = mask & !(sig_bit(9) | sig_bit(19));
        Ok(rax)
    }
}

/// The process that is running, if any.
pub static CURRENT: Mutex<Option<Process>> = Mutex::new(None);
/// The processes that do not run now: ready (`blocked` is `None`) or blocked.
static OTHERS: Mutex<BTreeMap<Pid, Process>> = Mutex::new(BTreeMap::new());
/// Ended processes not yet collected.
static ZOMBIES: Mutex<Vec<Zombie>> = Mutex::new(Vec::new());
/// The root of the run in progress and how it ended, once it has.
static ROOT: Mutex<Option<(Pid, Option<Ended>)>> = Mutex::new(None);
/// The next process ID (Linux starts at 1; IDs are not reused until they wrap).
static NEXT_PID: AtomicU32 = AtomicU32::new(1);

/// A process ID in use by no process (`running`: the running one's, whose lock the caller
/// may hold).
fn new_pid(running: Option<Pid>) -> Pid {
    loop {
        let pid = NEXT_PID.fetch_add(1, Ordering::Relaxed) % 0x40_0000;
        let taken = pid == 0
            || Some(pid) == running
            || OTHERS.lock().contains_key(&pid)
            || ZOMBIES.lock().iter().any(|z| z.pid == pid);
        if !taken {
            return pid;
        }
    }
}

impl Process {
    /// Maps (lazily created) pages of `[va, va + len)` and returns them as a slice, if the
    /// whole range lies in the process's areas with read (and, for `write`, write)
    /// permission. `Err` is `-EFAULT`.
    pub fn user_bytes(&mut self, va: u64, len: u64, write: bool) -> Result<&'static mut [u8], i64> {
        const EFAULT: i64 = -(Errno::EFAULT as i64);
        if len == 0 {
            return Ok(&mut []);
        }
        let end = va.checked_add(len).ok_or(EFAULT)?;
        if end > USER_END || va < program::USER_START {
            return Err(EFAULT);
        }
        let mut page = va & !0xfff;
        while page < end {
            let prot = self.vm.prot_at(page).ok_or(EFAULT)?;
            if !prot.read || (write && !prot.write) {
                return Err(EFAULT);
            }
            if !self.space.is_mapped(page) {
                self.space
                    .map_page(page, leaf_flags(prot.write, prot.exec))
                    .map_err(|_| EFAULT)?;
            } else if write && self.space.is_shared(page) {
                // Made writable when there was no frame for its copy: copy it now or fail.
                self.space
                    .make_private(page, leaf_flags(true, prot.exec))
                    .map_err(|_| EFAULT)?;
            }
            page += 4096;
        }
        // SAFETY: every page of the range is mapped in the current address space (this
        // process's, active while it runs) with the permission asked for, and stays mapped
        // until the process changes its mappings in a later system call; the kernel holds
        // the slice only while handling this one.
        Ok(unsafe { core::slice::from_raw_parts_mut(va as *mut u8, len as usize) })
    }

    /// Reads a NUL-terminated string of at most `max` bytes.
    pub fn user_cstr(&mut self, va: u64, max: usize) -> Result<String, i64> {
        let mut out = Vec::new();
        let mut at = va;
        loop {
            // Page by page, so a string ending just before an unmapped page is fine.
            let room = (4096 - (at & 0xfff)).min((max + 1 - out.len()) as u64);
            let bytes = self.user_bytes(at, room, false)?;
            if let Some(n) = bytes.iter().position(|&b| b == 0) {
                out.extend_from_slice(&bytes[..n]);
                break;
            }
            out.extend_from_slice(bytes);
            if out.len() > max {
                return Err(-(Errno::ENAMETOOLONG as i64));
            }
            at += room;
        }
        String::from_utf8(out).map_err(|_| -(Errno::ENOENT as i64))
    }

    /// Maps every page not yet touched of the areas outside the stack (whose top is mapped
    /// and whose rest stays demand-zero), and maps later anonymous memory when it is made: a
    /// hypercall's buffers must be present, the hypervisor does not fault pages in.
    pub fn populate(&mut self) -> Result<(), MapError> {
        self.eager = true;
        let areas: Vec<(u64, u64, Prot)> = self
            .vm
            .areas()
            .filter(|&(s, _, p)| s < STACK_TOP - STACK_SIZE && accessible(p))
            .collect();
        for (s, e, p) in areas {
            self.space.map_range(s, e, prot_flags(p))?;
        }
        Ok(())
    }

    /// Carries out what the area bookkeeping decided.
    pub fn apply(&mut self, changes: &[Change]) -> Result<(), MapError> {
        for &c in changes {
            match c {
                // Mapped on first touch.
                Change::Map(..) => {}
                Change::Unmap(s, e) => self.space.unmap_range(s, e),
                Change::Protect(s, e, p) => self.space.protect_range(s, e, prot_flags(p)),
            }
        }
        Ok(())
    }
}

/// Whether ring 3 may touch an area with protection `p` at all.
const fn accessible(p: Prot) -> bool {
    p.read || p.write || p.exec
}

/// Leaf flags for an area's protection; an inaccessible area keeps its pages as supervisor
/// pages (ring 3 cannot touch them, their contents stay).
fn prot_flags(p: Prot) -> u64 {
    if accessible(p) {
        leaf_flags(p.write, p.exec)
    } else {
        leaf_flags(false, false) & !xenia_guest_rt::mm::pte::USER
    }
}

/// Resolves a ring-3 page fault inside the process's areas by mapping a fresh zeroed page
/// with the area's protection. A page already present (a protection fault), an address
/// outside every area, or a write to an area without write permission is not resolved and
/// ends the process; so does an empty frame pool, with a message.
fn resolve_fault(e: &Entry) -> bool {
    let Some(mut guard) = CURRENT.try_lock() else {
        return false;
    };
    let Some(p) = guard.as_mut() else {
        return false;
    };
    let page = e.cr2 & !0xfff;
    let write = e.regs.error_code & 2 != 0;
    let present = e.regs.error_code & 1 != 0;
    if present || page >= USER_END {
        return false;
    }
    let resolved = match p.vm.prot_at(page) {
        Some(prot) if accessible(prot) && (!write || prot.write) => {
            match p.space.map_page(page, prot_flags(prot)) {
                Ok(()) => true,
                Err(why) => {
                    crate::tprintln!(
                        "dom0: {}: no memory for its page at {:#x} ({why:?}); ending it",
                        p.name,
                        e.cr2
                    );
                    false
                }
            }
        }
        _ => false,
    };
    if crate::sys::TRACE.load(core::sync::atomic::Ordering::Relaxed) {
        crate::tprintln!(
            "[trace] page fault at {:#x} (rip {:#x}, error {:#x}): {}",
            e.cr2,
            e.regs.rip,
            e.regs.error_code,
            if resolved { "mapped" } else { "not resolved" }
        );
    }
    resolved
}

/// Installs the trap-handler hooks processes need. Call once at boot.
pub fn init() {
    trap::set_user_fault_resolver(Some(resolve_fault));
    trap::set_user_faults_end_run(true);
    trap::set_user_fault_handler(Some(user_fault));
    trap::set_syscall_handler(Some(crate::sys::syscall));
    trap::set_user_event_handler(Some(user_event));
}

/// The FS base last loaded for a process (a forked child shares its parent's, and a switch
/// between the two need not load it again). Only the kernel changes FS: ring 3 cannot
/// (`wrfsbase` needs CR4.FSGSBASE, which the hypervisor leaves off).
static FS_BASE: core::sync::atomic::AtomicU64 = core::sync::atomic::AtomicU64::new(0);

/// Loads FS base `base` for the process about to run, unless it is loaded already; `Err`
/// with the hypervisor's refusal.
pub fn set_fs_base(base: u64) -> Result<(), i64> {
    if FS_BASE.load(Ordering::Relaxed) == base {
        return Ok(());
    }
    // SAFETY: FS is the process's; the kernel does not use it.
    let r = unsafe { calls::set_segment_base(SEGBASE_FS, base) };
    if r.is_ok() {
        FS_BASE.store(base, Ordering::Relaxed);
    }
    r.map_err(|e| -(e as i64))
}

/// How often a running program is interrupted to look at typed input (the periodic timer,
/// on while programs run).
const TICK_NS: u64 = 50_000_000;

/// An event that interrupted a running program (`trap::set_user_event_handler`): typed input
/// is taken in, so that Ctrl-C reaches a program that computes without ever making a system
/// call. Only the running process is dealt with here, and only to end it: a signal its
/// default action ends it with, if it is in the foreground group; it is then finished and
/// the scheduler picks the next process, which resumes at a system call as always. A signal
/// it catches waits for its next system call; the other processes get theirs when the
/// scheduler next runs. (No process is switched out mid-computation, so no FPU state needs
/// keeping.)
fn user_event(regs: &mut Regs) -> bool {
    crate::term::pump();
    if !crate::term::signals_pending() {
        return true;
    }
    let fg = crate::term::with_tty(|t| t.foreground);
    let signals = {
        let mut current = CURRENT.lock();
        let Some(p) = current.as_mut().filter(|p| p.pgid == fg) else {
            return true;
        };
        let signals = crate::term::take_signals();
        let mut ends = None;
        for sig in 1..=64u32 {
            if signals & sig_bit(sig) != 0 && sig != 20 && p.raise(sig) && ends.is_none() {
                ends = Some(sig);
            }
        }
        let Some(sig) = ends else {
            // Caught or ignored by the running process: the rest of the group still gets
            // the signals when the scheduler next runs.
            crate::term::put_back_signals(signals);
            return true;
        };
        let mut p = current.take().expect("checked above");
        p.regs = *regs;
        (signals, p, sig)
    };
    let (signals, p, sig) = signals;
    finish(
        p,
        signaled(sig as i32),
        Some(Ended::Exited(128 + sig as i32)),
        None,
    );
    crate::term::put_back_signals(signals);
    pick(regs)
}

/// The signal Linux sends for exception `vector` from ring 3.
fn signal_of(vector: u8) -> i32 {
    match vector {
        0 | 16 | 19 => 8, // SIGFPE
        1 | 3 => 5,       // SIGTRAP
        6 => 4,           // SIGILL
        17 => 7,          // SIGBUS
        _ => 11,          // SIGSEGV
    }
}

/// A process faulted and no resolver helped: with other processes alive it ends alone (its
/// parent learns the signal) and another runs; the last one's fault ends the run instead,
/// which the shell reports.
fn user_fault(regs: &mut Regs, e: &Entry) -> bool {
    if OTHERS.lock().is_empty() {
        return false;
    }
    let Some(p) = CURRENT.lock().take() else {
        return false;
    };
    let vector = e.regs.vector as u8;
    let ended = Ended::Fault {
        vector,
        rip: e.regs.rip,
        addr: (vector == 14).then_some(e.cr2),
    };
    if let Some(msg) = xenia_dom0::shell::report(&p.name, ended) {
        crate::tprintln!("{msg}");
    }
    finish(p, signaled(signal_of(vector)), Some(ended), None);
    pick(regs)
}

/// Carries out what a system call left to do ([`Action`]); `false` ends the run (no process
/// is left).
pub fn after(regs: &mut Regs, action: Action) -> bool {
    let block = |regs: &mut Regs, blocked: Blocked, retry: bool| {
        let Some(mut p) = CURRENT.lock().take() else {
            return;
        };
        p.regs = *regs;
        p.blocked = Some(blocked);
        p.retry = retry;
        OTHERS.lock().insert(p.pid, p);
    };
    match action {
        Action::Done => return true,
        Action::Retry(blocked) => {
            // The call is made again: back onto the two-byte `syscall` (or `int 0x80`),
            // with its number in rax again.
            regs.rip = regs.rip.wrapping_sub(2);
            block(regs, blocked, true);
        }
        Action::Sleep(until) => {
            regs.rax = 0;
            block(regs, Blocked::Until(until), false);
        }
        Action::Suspend => {
            regs.rax = (-(Errno::EINTR as i64)) as u64;
            block(regs, Blocked::Child, false);
        }
        Action::Exit(status) => {
            let Some(p) = CURRENT.lock().take() else {
                return false;
            };
            // The shell's convention for a death by signal: 128 + the signal.
            let code = match status & 0x7f {
                0 => (status >> 8) & 0xff,
                signal => 128 + signal,
            };
            finish(p, status, Some(Ended::Exited(code)), None);
        }
    }
    pick(regs)
}

/// Ends process `p` (not running any more): its descriptors are closed, its memory freed,
/// its children orphaned, and its status kept for its parent (or, for the root, for the
/// shell: `ended`). `running`: the running process's ID when the caller holds its lock.
fn finish(mut p: Process, status: i32, ended: Option<Ended>, running: Option<Pid>) {
    crate::sys::release(&p);
    for end in p.files.close_all(&mut fs::lock()) {
        crate::pipe::drop_end(end);
    }
    p.files = Files::with_console();
    for o in OTHERS.lock().values_mut() {
        if o.ppid == p.pid {
            o.ppid = 0;
        }
    }
    ZOMBIES.lock().retain(|z| z.ppid != p.pid);
    if let Some((root, end)) = ROOT.lock().as_mut()
        && *root == p.pid
    {
        *end = ended;
    }
    let parent_alive = p.ppid != 0
        && (OTHERS.lock().contains_key(&p.ppid)
            || Some(p.ppid) == running
            || running.is_none() && CURRENT.lock().as_ref().is_some_and(|c| c.pid == p.ppid));
    if let Some(parent) = OTHERS.lock().get_mut(&p.ppid) {
        parent.raise(SIGCHLD);
    }
    if parent_alive {
        // alloc: at most MAX_PROCESSES zombies (each was a process).
        ZOMBIES.lock().push(Zombie {
            pid: p.pid,
            ppid: p.ppid,
            status,
        });
    }
    p.space.destroy();
}

/// Runs the next ready process (lowest ID first after the last one run), waiting for an
/// event while none is; `false` when no process is left.
fn pick(regs: &mut Regs) -> bool {
    loop {
        terminal_signals();
        if OTHERS.lock().is_empty() {
            return false;
        }
        let next = first_ready().and_then(|pid| OTHERS.lock().remove(&pid));
        if let Some(mut next) = next {
            let was = next.blocked.take();
            if let Some(sig) = next.deliverable() {
                // A blocked call a caught signal interrupts: made again afterwards with
                // SA_RESTART, else it returns EINTR (a sleep too).
                let restart = next.actions[(sig - 1) as usize].flags & SA_RESTART != 0;
                if was.is_some() && (!restart || !next.retry) {
                    if next.retry {
                        next.regs.rip = next.regs.rip.wrapping_add(2);
                    }
                    next.regs.rax = (-(Errno::EINTR as i64)) as u64;
                }
            } else if let Some(mask) = next.saved_mask.take() {
                next.sigmask = mask;
            }
            next.retry = false;
            if let Err(e) = next.space.activate() {
                crate::tprintln!(
                    "dom0: {}: cannot switch to its address space ({e:?}); ending it",
                    next.name
                );
                finish(next, signaled(9), None, None);
                continue;
            }
            let _ = set_fs_base(next.fs_base);
            *regs = next.regs;
            if let Some(sig) = next.deliverable()
                && !next.deliver(regs, sig)
            {
                finish(next, signaled(11), None, None);
                continue;
            }
            *CURRENT.lock() = Some(next);
            return true;
        }
        // Nothing ready: wait for whatever may make one so (input, a timer, an event).
        let deadline = OTHERS
            .lock()
            .values()
            .filter_map(|o| match o.blocked {
                Some(Blocked::Until(ns)) => Some(ns),
                _ => None,
            })
            .min()
            .unwrap_or(u64::MAX);
        crate::wait::until(deadline, || {
            first_ready().is_some() || crate::term::signals_pending()
        });
    }
}

/// Sends what was typed at the terminal (Ctrl-C: `SIGINT`, ...) to the foreground process
/// group, among the processes that do not run now (the scheduler's caller has put the one
/// that ran among them).
fn terminal_signals() {
    let signals = crate::term::take_signals();
    if signals == 0 {
        return;
    }
    let fg = crate::term::with_tty(|t| t.foreground);
    for sig in 1..=64u32 {
        // Ctrl-Z's SIGTSTP would stop the group, and nothing here stops a process (no job
        // control): it is dropped.
        if signals & sig_bit(sig) == 0 || sig == 20 {
            continue;
        }
        let targets: Vec<Pid> = OTHERS
            .lock()
            .values()
            .filter(|o| o.pgid == fg)
            .map(|o| o.pid)
            .collect();
        for t in targets {
            let ends = OTHERS.lock().get_mut(&t).is_some_and(|o| o.raise(sig));
            // Taken out first: `finish` locks the table itself.
            let victim = if ends { OTHERS.lock().remove(&t) } else { None };
            if let Some(victim) = victim {
                finish(victim, signaled(sig as i32), None, None);
            }
        }
    }
}

/// `fork` (and `vfork`, and `clone` as `fork` does it): a copy of the caller whose registers
/// are the caller's with 0 in rax; returns the child's ID (or the negative errno).
/// `child_tid`: where the child finds its own ID (`CLONE_CHILD_SETTID`, as glibc's fork
/// asks), `parent_tid`: where the parent does (`CLONE_PARENT_SETTID`).
pub fn fork(p: &mut Process, regs: &Regs, child_tid: Option<u64>, parent_tid: Option<u64>) -> i64 {
    if OTHERS.lock().len() + 1 >= MAX_PROCESSES {
        return -(Errno::EAGAIN as i64);
    }
    let pid = new_pid(Some(p.pid));
    // The child's copy of `child_tid` holds its ID: written in the parent just before the
    // copy, and the parent's old value put back just after.
    let saved = match child_tid {
        Some(at) => match p.user_bytes(at, 4, true) {
            Ok(b) => {
                let old: [u8; 4] = b.try_into().unwrap_or([0; 4]);
                b.copy_from_slice(&pid.to_le_bytes());
                Some((at, old))
            }
            Err(e) => return e,
        },
        None => None,
    };
    let space = p.space.fork();
    if let Some((at, old)) = saved
        && let Ok(b) = p.user_bytes(at, 4, true)
    {
        b.copy_from_slice(&old);
    }
    let Ok(space) = space else {
        return -(Errno::ENOMEM as i64);
    };
    if let Some(at) = parent_tid
        && let Ok(b) = p.user_bytes(at, 4, true)
    {
        b.copy_from_slice(&pid.to_le_bytes());
    }
    let mut child_regs = *regs;
    child_regs.rax = 0;
    for end in p.files.pipe_ends() {
        crate::pipe::add(end);
    }
    let mut files = p.files.clone();
    files.retain_all(&mut fs::lock());
    let child = Process {
        pid,
        ppid: p.pid,
        pgid: p.pgid,
        name: p.name.clone(),
        cmdline: p.cmdline.clone(),
        started: xenia_guest_rt::time::now_ns(),
        space,
        vm: p.vm.clone(),
        files,
        // Device state (event channels, xenstore connections) stays the parent's.
        devs: BTreeMap::new(),
        exit: None,
        eager: p.eager,
        regs: child_regs,
        fs_base: p.fs_base,
        blocked: None,
        cwd: p.cwd.clone(),
        umask: p.umask,
        actions: p.actions.clone(),
        sigmask: p.sigmask,
        pending: 0,
        saved_mask: None,
        retry: false,
    };
    OTHERS.lock().insert(pid, child);
    i64::from(pid)
}

/// `wait4(pid, status, options)`: a child that ended, its status written; 0 with `WNOHANG`
/// and none yet; `ECHILD` with no child at all; else the caller waits.
pub fn wait4(p: &mut Process, pid: i64, status: u64, options: u64) -> (i64, Action) {
    const WNOHANG: u64 = 1;
    let matches = |child: Pid, pgid: Pid| match pid {
        -1 => true,
        0 => pgid == p.pgid,
        n if n < -1 => i64::from(pgid) == -n,
        n => i64::from(child) == n,
    };
    let found = {
        let mut zombies = ZOMBIES.lock();
        let at = zombies
            .iter()
            .position(|z| z.ppid == p.pid && matches(z.pid, p.pgid));
        at.map(|i| zombies.remove(i))
    };
    if let Some(z) = found {
        if status != 0 {
            match p.user_bytes(status, 4, true) {
                Ok(b) => b.copy_from_slice(&z.status.to_le_bytes()),
                Err(e) => return (e, Action::Done),
            }
        }
        return (i64::from(z.pid), Action::Done);
    }
    let children = OTHERS
        .lock()
        .values()
        .any(|o| o.ppid == p.pid && matches(o.pid, o.pgid));
    if !children {
        return (-(Errno::ECHILD as i64), Action::Done);
    }
    if options & WNOHANG != 0 {
        return (0, Action::Done);
    }
    (0, Action::Retry(Blocked::Child))
}

/// `kill(pid, signal)` to another process than the caller: the default action of the
/// terminating signals (no handlers run yet); 0 only checks that the target exists.
pub fn kill_other(pid: i64, signal: i64, caller: Pid) -> i64 {
    if !(0..=64).contains(&signal) {
        return -(Errno::EINVAL as i64);
    }
    let targets: Vec<Pid> = OTHERS
        .lock()
        .values()
        .filter(|o| match pid {
            n if n > 0 => i64::from(o.pid) == n,
            -1 => o.pid != 1,
            n => i64::from(o.pgid) == -n,
        })
        .map(|o| o.pid)
        .filter(|&t| t != caller)
        .collect();
    if targets.is_empty() {
        return -(Errno::ESRCH as i64);
    }
    if signal == 0 {
        return 0;
    }
    for t in targets {
        let ends = OTHERS
            .lock()
            .get_mut(&t)
            .is_some_and(|o| o.raise(signal as u32));
        if ends {
            let victim = OTHERS.lock().remove(&t);
            if let Some(victim) = victim {
                finish(victim, signaled(signal as i32), None, Some(caller));
            }
        }
    }
    0
}

/// `setpgid(pid, pgid)` by process `parent` for another process: only its child
/// (`ESRCH` otherwise); `pgid` 0 means the child's own ID.
pub fn set_child_pgid(parent: Pid, pid: Pid, pgid: Pid) -> i64 {
    match OTHERS.lock().get_mut(&pid) {
        Some(child) if child.ppid == parent => {
            child.pgid = if pgid == 0 { pid } else { pgid };
            0
        }
        _ => -(Errno::ESRCH as i64),
    }
}

/// The environment the built-in shell gives the programs it starts.
pub const ENV: &[&[u8]] = &[b"PATH=/bin", b"HOME=/", b"TERM=vt100"];

/// Loads the program at `path` with `argv` and runs it, and every process it starts, to
/// their end; says how it (the root) ended.
pub fn run(path: &str, argv: &[String], env: &[&[u8]]) -> Result<Ended, String> {
    let file = fs::file(path).ok_or_else(|| alloc::format!("{path}: not found"))?;
    let initrd = matches!(file, alloc::borrow::Cow::Borrowed(_));
    let file: &[u8] = &file;
    let plan = program::plan(file).map_err(|e| alloc::format!("{path}: {e}"))?;
    let space = Uspace::new()
        .map_err(|e| alloc::format!("{path}: cannot make its address space: {e:?}"))?;
    if let Err(e) = space.activate() {
        space.destroy();
        return Err(alloc::format!(
            "{path}: cannot switch to its address space: {e:?}"
        ));
    }
    let pid = new_pid(None);
    let mut p = Process {
        pid,
        ppid: 0,
        pgid: pid,
        name: argv.first().cloned().unwrap_or_default(),
        cmdline: argv.iter().flat_map(|a| a.bytes().chain([0])).collect(),
        started: xenia_guest_rt::time::now_ns(),
        space,
        vm: AddressSpace::new(plan.brk),
        files: Files::with_console(),
        devs: BTreeMap::new(),
        exit: None,
        eager: false,
        regs: Regs::default(),
        fs_base: 0,
        blocked: None,
        cwd: String::from("/"),
        umask: 0o022,
        actions: Box::new([SigAction::default(); 64]),
        sigmask: 0,
        pending: 0,
        saved_mask: None,
        retry: false,
    };
    let args: Vec<&[u8]> = argv.iter().map(|a| a.as_bytes()).collect();
    let start = match load(&mut p, (file, initrd), &plan, &args, env) {
        Ok(s) => s,
        Err(e) => {
            p.space.destroy();
            return Err(alloc::format!("{path}: {e}"));
        }
    };
    *ROOT.lock() = Some((pid, None));
    *CURRENT.lock() = Some(p);
    crate::term::begin_programs(pid);
    // While programs run, a periodic tick interrupts them now and then (events reach ring
    // 3; `user_event`), so that Ctrl-C reaches one that computes without a system call.
    let _ = calls::vcpu_set_periodic_timer(0, TICK_NS);
    let exit = user::run_at(plan.entry, start, 0, 0);
    let _ = calls::vcpu_stop_periodic_timer(0);
    crate::term::end_programs();
    // The run ends when no process is left, or when the last one faults (it is still
    // current then).
    let last = CURRENT.lock().take();
    if let Some(p) = last {
        let ended = match exit.kind {
            ExitKind::Service(_) => Ended::Exited(p.exit.unwrap_or(0)),
            ExitKind::Fault(vector) => Ended::Fault {
                vector,
                rip: exit.entry.regs.rip,
                addr: (vector == 14).then_some(exit.entry.cr2),
            },
        };
        let status = match ended {
            Ended::Fault { vector, .. } => signaled(signal_of(vector)),
            Ended::Exited(code) => exited(code),
        };
        finish(p, status, Some(ended), None);
    }
    // Nothing can be left (the run ends only then); anything that is, ends here.
    let left: Vec<Process> = core::mem::take(&mut *OTHERS.lock()).into_values().collect();
    for p in left {
        finish(p, signaled(9), None, None);
    }
    ZOMBIES.lock().clear();
    let root = ROOT.lock().take();
    Ok(root.and_then(|(_, end)| end).unwrap_or(Ended::Exited(0)))
}

/// `execve(path, argv, envp)` for process `p`: its image replaced by the program at `path`
/// (descriptors kept but those marked close-on-exec, ID and parent kept), `regs` set to the
/// new program's entry. The old image goes only once the new one is in place: on an error the
/// caller goes on as it was.
pub fn execve(
    p: &mut Process,
    regs: &mut Regs,
    path: &str,
    (file, initrd): (&[u8], bool),
    args: &[Vec<u8>],
    env: &[Vec<u8>],
) -> i64 {
    let Ok(plan) = program::plan(file) else {
        return -(Errno::ENOEXEC as i64);
    };
    let Ok(space) = Uspace::new() else {
        return -(Errno::ENOMEM as i64);
    };
    let old_space = core::mem::replace(&mut p.space, space);
    let old_vm = core::mem::replace(&mut p.vm, AddressSpace::new(plan.brk));
    let args: Vec<&[u8]> = args.iter().map(Vec::as_slice).collect();
    let env: Vec<&[u8]> = env.iter().map(Vec::as_slice).collect();
    let loaded = match p.space.activate() {
        Ok(()) => load(p, (file, initrd), &plan, &args, &env).map_err(|_| -(Errno::ENOMEM as i64)),
        Err(_) => Err(-(Errno::ENOMEM as i64)),
    };
    let start = match loaded {
        Ok(s) => s,
        Err(e) => {
            let new = core::mem::replace(&mut p.space, old_space);
            p.vm = old_vm;
            let _ = p.space.activate();
            new.destroy();
            return e;
        }
    };
    old_space.destroy();
    for end in p.files.close_on_exec(&mut fs::lock()) {
        crate::pipe::drop_end(end);
    }
    p.name = String::from_utf8_lossy(args.first().copied().unwrap_or(path.as_bytes())).into();
    p.cmdline = args
        .iter()
        .flat_map(|a| a.iter().copied().chain([0]))
        .collect();
    p.eager = false;
    p.fs_base = 0;
    // Caught signals go back to their default action; ignored ones stay ignored.
    for a in p.actions.iter_mut() {
        if a.handler > 1 {
            *a = SigAction::default();
        }
    }
    let _ = set_fs_base(0);
    let (cs, ss) = (regs.cs, regs.ss);
    *regs = Regs {
        rip: plan.entry,
        rsp: start,
        rflags: user::USER_RFLAGS,
        cs,
        ss,
        vector: regs.vector,
        ..Regs::default()
    };
    0
}

/// Maps and fills the segments and the stack; returns the initial stack pointer. `file` is
/// the program's bytes and whether they are the initrd's own (never written nor freed while
/// dom0 runs), whose read-only pages may then be shared rather than copied.
fn load(
    p: &mut Process,
    (file, shared): (&[u8], bool),
    plan: &program::Plan,
    args: &[&[u8]],
    env: &[&[u8]],
) -> Result<u64, String> {
    let oom = |e: MapError| alloc::format!("out of memory while loading ({e:?})");
    for (i, s) in plan.segments.iter().enumerate() {
        let (start, end) = s.pages();
        // The read-only segments' whole pages of file bytes, when the file is the initrd's
        // (which puts programs on a page: `cpio::build`), are the initrd's frames, mapped
        // read-only and shared (`Uspace::map_shared`); the rest are written below.
        let copied = if shared && !s.write {
            whole_pages(file, plan, i, |va| p.space.is_mapped(va))
        } else {
            Vec::new()
        };
        p.space.map_shared(&copied).map_err(oom)?;
        // Pages new to this segment come unzeroed: every byte of them is written below,
        // file bytes or zeros, before the process runs (a page an earlier segment mapped
        // keeps its contents and gets only this segment's file bytes).
        let fresh = p
            .space
            .map_range_unzeroed(start, end, leaf_flags(true, false))
            .map_err(oom)?;
        let file_end = s.vaddr + s.file_size;
        for page in fresh {
            let (lo, hi) = (
                s.vaddr.clamp(page, page + 4096),
                file_end.clamp(page, page + 4096),
            );
            // SAFETY: the page was just mapped writable in the current (this process's)
            // space; nothing else refers to it.
            let bytes = unsafe { core::slice::from_raw_parts_mut(page as *mut u8, 4096) };
            let (lo, hi) = ((lo - page) as usize, (hi - page) as usize);
            bytes[..lo].fill(0);
            bytes[hi.max(lo)..].fill(0);
        }
        // The file bytes, but for the pages copied whole: the pieces between them.
        let mut at = s.vaddr;
        let file_end = s.vaddr + s.file_size;
        let mut cuts = copied.iter().map(|&(va, _, _)| va);
        while at < file_end {
            let next_cut = cuts.next();
            let stop = next_cut.unwrap_or(file_end).min(file_end);
            if stop > at {
                let off = (s.file_offset + (at - s.vaddr)) as usize;
                let src = &file[off..off + (stop - at) as usize];
                // SAFETY: these pages were mapped writable in the current (this process's)
                // space above (only the whole pages skipped here are read-only); the plan
                // keeps the segment inside them.
                let dst = unsafe { core::slice::from_raw_parts_mut(at as *mut u8, src.len()) };
                dst.copy_from_slice(src);
            }
            at = match next_cut {
                Some(va) => (va + 4096).max(at),
                None => file_end,
            };
        }
    }
    // Final protections, and the areas the process sees.
    for s in &plan.segments {
        let (start, end) = s.pages();
        let prot = Prot {
            read: s.read,
            write: s.write,
            exec: s.exec,
        };
        p.vm.insert(start, end, prot);
        p.space.protect_range(start, end, prot_flags(prot));
    }
    p.vm.insert(STACK_TOP - STACK_SIZE, STACK_TOP, Prot::RW);
    p.space
        .map_range(STACK_TOP - STACK_EAGER, STACK_TOP, leaf_flags(true, false))
        .map_err(oom)?;
    let mut aux = alloc::vec![
        (AT_PHDR, plan.phdr),
        (AT_PHENT, 56),
        (AT_PHNUM, plan.phnum),
        (AT_PAGESZ, 4096),
        (AT_ENTRY, plan.entry),
    ];
    if let Some(vdso) = crate::vdso::map(&mut p.space) {
        aux.push((AT_SYSINFO_EHDR, vdso));
    }
    let image = userstack::build(STACK_TOP - 16, args, env, &aux, random::bytes16())
        .map_err(|e| alloc::format!("arguments too large for the stack ({e:?})"))?;
    let dst = p
        .user_bytes(image.rsp, image.bytes.len() as u64, true)
        .map_err(|_| String::from("arguments too large for the stack"))?;
    dst.copy_from_slice(&image.bytes);
    Ok(image.rsp)
}

/// The pages of segment `index` of `plan` that [`load`] copies frame to frame, in address
/// order: (address, the frame holding its file bytes, final flags). A page qualifies when the
/// segment's file bytes cover all of it, no other segment touches it, `mapped` says it is
/// not mapped yet, and its bytes in `file` start a page of dom0's bootstrap memory (whose
/// frame the p2m list names).
fn whole_pages(
    file: &[u8],
    plan: &program::Plan,
    index: usize,
    mapped: impl Fn(u64) -> bool,
) -> Vec<(u64, u64, u64)> {
    let s = &plan.segments[index];
    let flags = prot_flags(Prot {
        read: s.read,
        write: s.write,
        exec: s.exec,
    });
    let file_end = s.vaddr + s.file_size;
    let shared = |page: u64| {
        plan.segments
            .iter()
            .enumerate()
            .any(|(j, o)| j != index && o.vaddr < page + 4096 && page < o.vaddr + o.mem_size)
    };
    let mut pages = Vec::new();
    let mut page = s.vaddr.next_multiple_of(4096);
    while page + 4096 <= file_end {
        let src = file.as_ptr() as u64 + s.file_offset + (page - s.vaddr);
        match bootstrap_frame(src) {
            Some(mfn) if !shared(page) && !mapped(page) => pages.push((page, mfn, flags)),
            _ => {}
        }
        page += 4096;
    }
    pages
}

/// The machine frame behind `va` if it starts a page of the bootstrap mappings (where the
/// kernel, its heap and the initrd are: pseudo-physical frame `pfn` at `pfn_va(pfn)`).
fn bootstrap_frame(va: u64) -> Option<u64> {
    let base = xenia_guest_rt::mm::pfn_va(0);
    if !va.is_multiple_of(4096) || va < base {
        return None;
    }
    let pfn = (va - base) / 4096;
    let limit = xenia_guest_rt::mm::mapped_pages().min(xenia_guest_rt::mm::nr_pages());
    (pfn < limit)
        .then(|| xenia_guest_rt::mm::p2m(pfn))
        .filter(|&mfn| mfn != xenia_guest_rt::mm::INVALID_P2M)
}

/// What `/proc` shows of a process.
pub struct ProcInfo {
    /// Its ID, its parent's and its group's.
    pub pid: Pid,
    /// Its parent's ID (0: none).
    pub ppid: Pid,
    /// Its process group.
    pub pgid: Pid,
    /// `R` (running or ready), `S` (blocked) or `Z` (ended, not collected).
    pub state: char,
    /// Its name (the last part of `argv[0]`, at most 15 bytes, as Linux's `comm`).
    pub comm: String,
    /// Its arguments, NUL-ended.
    pub cmdline: Vec<u8>,
    /// When it started (system time, ns).
    pub started: u64,
    /// Bytes of its areas.
    pub vsize: u64,
    /// Pages mapped.
    pub rss: u64,
    /// Its working directory.
    pub cwd: String,
}

fn info(p: &Process, state: char) -> ProcInfo {
    let base = p.name.rsplit('/').next().unwrap_or("");
    ProcInfo {
        pid: p.pid,
        ppid: p.ppid,
        pgid: p.pgid,
        state,
        comm: base.chars().take(15).collect(),
        cmdline: p.cmdline.clone(),
        started: p.started,
        vsize: p.vm.areas().map(|(s, e, _)| e - s).sum(),
        rss: p.space.resident() as u64,
        cwd: p.cwd.clone(),
    }
}

/// Every process, by ID: `me` (the caller, whose lock the caller holds) included as
/// running. Zombies show with state `Z` and nothing else known of them.
pub fn list(me: &Process) -> Vec<ProcInfo> {
    let mut all = alloc::vec![info(me, 'R')];
    for o in OTHERS.lock().values() {
        all.push(info(o, if o.blocked.is_some() { 'S' } else { 'R' }));
    }
    for z in ZOMBIES.lock().iter() {
        all.push(ProcInfo {
            pid: z.pid,
            ppid: z.ppid,
            pgid: z.pid,
            state: 'Z',
            comm: String::new(),
            cmdline: Vec::new(),
            started: 0,
            vsize: 0,
            rss: 0,
            cwd: String::from("/"),
        });
    }
    all.sort_by_key(|i| i.pid);
    all
}
