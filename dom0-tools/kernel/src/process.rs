//! Processes: a static Linux program from the initrd, loaded into an address space of its
//! own and run in ring 3 until it exits or faults.
//!
//! One process runs at a time (the shell waits for it). Its state lives in [`CURRENT`]
//! while it runs, where the system-call handler ([`crate::sys`]) and the page-fault resolver
//! find it: both run in the trap handler while the main flow waits in
//! [`xenia_guest_rt::user::run_at`], so they are the only users of the lock then.
//!
//! Memory is demand-zero, as in Linux: the program's segments and the top of its stack are
//! mapped when it starts (the kernel writes them before the program runs); the rest of the
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

use alloc::collections::BTreeMap;
use alloc::string::String;
use alloc::vec::Vec;

use guest_abi::Errno;
use spin::Mutex;
use xenia_dom0::files::Files;
use xenia_dom0::program::{self, USER_END};
use xenia_dom0::shell::Ended;
use xenia_dom0::userstack::{
    self, AT_ENTRY, AT_PAGESZ, AT_PHDR, AT_PHENT, AT_PHNUM, AT_SYSINFO_EHDR,
};
use xenia_dom0::vm::{AddressSpace, Change, Prot};
use xenia_guest_rt::trap::{self, Entry, ExitKind};
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

/// The running process.
pub struct Process {
    /// Its name, for messages.
    pub name: String,
    /// Its page tables and pages.
    pub space: Uspace,
    /// Its areas.
    pub vm: AddressSpace,
    /// Its descriptors.
    pub files: Files<'static>,
    /// Device state by descriptor.
    pub devs: BTreeMap<i64, DevState>,
    /// Set by `exit_group`.
    pub exit: Option<i32>,
    /// Whether its anonymous memory is mapped when made rather than on first touch: set by
    /// its first privcmd hypercall ([`Process::populate`]).
    pub eager: bool,
}

/// The process that is running, if any.
pub static CURRENT: Mutex<Option<Process>> = Mutex::new(None);

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
    trap::set_syscall_handler(Some(crate::sys::syscall));
}

/// Loads the program at `path` with `argv` and runs it to its end.
pub fn run(path: &str, argv: &[String]) -> Result<Ended, String> {
    let file = fs::file(path).ok_or_else(|| alloc::format!("{path}: not found"))?;
    let plan = program::plan(file).map_err(|e| alloc::format!("{path}: {e}"))?;
    let space = Uspace::new()
        .map_err(|e| alloc::format!("{path}: cannot make its address space: {e:?}"))?;
    if let Err(e) = space.activate() {
        space.destroy();
        return Err(alloc::format!(
            "{path}: cannot switch to its address space: {e:?}"
        ));
    }
    let mut p = Process {
        name: argv.first().cloned().unwrap_or_default(),
        space,
        vm: AddressSpace::new(plan.brk),
        files: Files::with_console(),
        devs: BTreeMap::new(),
        exit: None,
        eager: false,
    };
    let start = match load(&mut p, file, &plan, argv) {
        Ok(s) => s,
        Err(e) => {
            p.space.destroy();
            return Err(alloc::format!("{path}: {e}"));
        }
    };
    *CURRENT.lock() = Some(p);
    let exit = user::run_at(plan.entry, start, 0, 0);
    let p = CURRENT.lock().take().expect("the process is still there");
    crate::sys::release(&p);
    let ended = match exit.kind {
        ExitKind::Service(_) => Ended::Exited(p.exit.unwrap_or(0)),
        ExitKind::Fault(vector) => Ended::Fault {
            vector,
            rip: exit.entry.regs.rip,
            addr: (vector == 14).then_some(exit.entry.cr2),
        },
    };
    p.space.destroy();
    Ok(ended)
}

/// Maps and fills the segments and the stack; returns the initial stack pointer.
fn load(
    p: &mut Process,
    file: &[u8],
    plan: &program::Plan,
    argv: &[String],
) -> Result<u64, String> {
    let oom = |e: MapError| alloc::format!("out of memory while loading ({e:?})");
    for s in &plan.segments {
        let (start, end) = s.pages();
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
        let src = &file[s.file_offset as usize..(s.file_offset + s.file_size) as usize];
        // SAFETY: the pages were just mapped writable in the current (this process's) space;
        // the plan keeps the segment inside them.
        let dst = unsafe { core::slice::from_raw_parts_mut(s.vaddr as *mut u8, src.len()) };
        dst.copy_from_slice(src);
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
    let args: Vec<&[u8]> = argv.iter().map(|a| a.as_bytes()).collect();
    let env: [&[u8]; 3] = [b"PATH=/bin", b"HOME=/", b"TERM=vt100"];
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
    let image = userstack::build(STACK_TOP - 16, &args, &env, &aux, random::bytes16())
        .map_err(|e| alloc::format!("arguments too large for the stack ({e:?})"))?;
    let dst = p
        .user_bytes(image.rsp, image.bytes.len() as u64, true)
        .map_err(|_| String::from("arguments too large for the stack"))?;
    dst.copy_from_slice(&image.bytes);
    Ok(image.rsp)
}
