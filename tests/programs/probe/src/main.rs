//! `probe`: what the dom0 scenarios run to see the kernel's process handling from the
//! inside. A static std program for `x86_64-unknown-linux-musl`, like `xl`.
//!
//! - `probe args <words>...`: prints `argc=<n>` and `argv[i]=<word>` lines;
//! - `probe exit <n>`: exits with status `n`;
//! - `probe fault`: writes to address 0x10 (a page fault the kernel reports);
//! - `probe ud`: executes `ud2`;
//! - `probe enosys`: makes system call 500 twice and 1000000 once, printing each result
//!   (the kernel returns -ENOSYS and logs each number once);
//! - `probe privcmd`: asks `/dev/xen/privcmd` for `mmu_update` (1) on dom0 itself, which
//!   must be refused with EPERM, and for `xen_version` (17), which must succeed;
//! - `probe evtchn`: binds VIRQ_TIMER through `/dev/xen/evtchn`, polls until it fires and
//!   reads the port back;
//! - `probe mem <MiB>`: allocates and touches that much memory, prints a checksum;
//! - `probe stack <KiB>`: recurses to use that much stack;
//! - `probe lazy`: demand-zero memory seen through `sysinfo`'s free memory: an anonymous
//!   16 MiB `mmap` takes no frame, touching three of its pages takes three (and the page
//!   tables under them), their `munmap` gives back exactly three; untouched pages read as
//!   zero; an `mprotect`ed page not yet touched gets the new protection; prints one line
//!   per check and ends by writing to the unmapped area (a page fault the kernel reports);
//! - `probe free`: prints the free memory `sysinfo` reports, in pages;
//! - `probe lazy-none`: reads a `PROT_NONE` page (a page fault the kernel reports);
//! - `probe vdso`: whether the kernel offers a vDSO (`AT_SYSINFO_EHDR`), whether musl's
//!   `clock_gettime` (which uses it) agrees with the system call for `CLOCK_MONOTONIC`
//!   (in order) and `CLOCK_REALTIME` (within a second), and whether it is faster than the
//!   system call (a ring-3 read against a kernel entry: tens against thousands of
//!   instructions, so the comparison holds with or without `-icount`; the least of seven
//!   rounds of each, so that the host taking the vCPU away does not decide it);
//! - `probe shared`: the read-only pages dom0's kernel maps from the initrd rather than
//!   copying (`shared:` lines): two whole pages of this program's read-only data hold what
//!   the file holds (`rodata intact`, so no earlier run changed them); one made writable
//!   with `mprotect` takes the writes, which a `fork`ed child sees; the other is unmapped.
//!   Run again, it finds both intact: the writes went to a copy, and the unmapped page's
//!   frame did not go to the pool (where the next program would have had it cleared);
//! - `probe frame-check`: asks the hypervisor for its frame-table consistency check
//!   (`XENMEM_XENIA_CHECK_FRAME_TABLE`) and prints `frame table check: <ret>` (0: consistent).
//! - `probe cpuidle`: asks the hypervisor for each pCPU's idle time (`XEN_SYSCTL_getcpuinfo`)
//!   and prints `cpuidle: now <ns> idle <ns> <ns> ...`: dom0's `CLOCK_MONOTONIC` (Xen's system
//!   time) read right after the call, then each pCPU's idle nanoseconds. Two of them around
//!   some work give the machine's busy time over it (the network benches' virtual-time
//!   measure, `xenia_tests::netbench`).
//! - `probe cpuidle-hostile`: the same sysctl with an array at an unmapped address
//!   (`cpuidle-hostile: unmapped: -14 ...`, EFAULT) and with room for no record
//!   (`cpuidle-hostile: none: 0 nr_cpus 0`).
//! - `probe processes`: the kernel's processes through raw system calls, one `processes:`
//!   line per check (`ok` or `FAILED`), then `processes: done, <n> failed`: a child made by
//!   `fork` sees its parent as `getppid` and its own ID, writes into a pipe the parent reads
//!   to the end (end of file once the child exits), exits with status 7 that `wait4` reports;
//!   a child whose standard output is the pipe (`dup2`) `execve`s `/bin/probe args x y` and the
//!   parent reads that program's lines; 20 children at once each exit with their number and
//!   `wait4(-1)` collects all of them (the sum of statuses checked); `wait4` with no child
//!   left says `ECHILD`; `kill` ends a child blocked reading an empty pipe (`SIGTERM`, seen by
//!   `wait4`); a write to a pipe with no reader fails with `EPIPE`; a sleeping child does not
//!   hold the parent up (`nanosleep` lets another process run).
//!
//! On the build host it builds and runs the same way.

use std::fs::OpenOptions;
use std::os::fd::AsRawFd;

/// A raw Linux system call with up to three arguments.
fn syscall3(nr: u64, a0: u64, a1: u64, a2: u64) -> i64 {
    let ret: i64;
    // SAFETY: the calls made here (unknown numbers, ioctl on an open descriptor with a
    // pointer to a live local) touch no memory the program relies on.
    unsafe {
        std::arch::asm!("syscall", inlateout("rax") nr as i64 => ret, in("rdi") a0, in("rsi") a1,
            in("rdx") a2, lateout("rcx") _, lateout("r11") _, options(nostack));
    }
    ret
}

/// A raw Linux system call with up to four arguments.
fn syscall4(nr: u64, a0: u64, a1: u64, a2: u64, a3: u64) -> i64 {
    let ret: i64;
    // SAFETY: the calls made by `processes` (fork, pipe, dup2, execve, wait4, kill, read,
    // write, close, nanosleep, exit) pass pointers to live locals or null; a forked child
    // runs in a copy of the memory and ends with `exit_group` before returning anywhere.
    unsafe {
        std::arch::asm!("syscall", inlateout("rax") nr as i64 => ret, in("rdi") a0, in("rsi") a1,
            in("rdx") a2, in("r10") a3, lateout("rcx") _, lateout("r11") _, options(nostack));
    }
    ret
}

const SYS_READ: u64 = 0;
const SYS_WRITE: u64 = 1;
const SYS_CLOSE: u64 = 3;
const SYS_PIPE: u64 = 22;
const SYS_NANOSLEEP: u64 = 35;
const SYS_DUP2: u64 = 33;
const SYS_GETPID: u64 = 39;
const SYS_FORK: u64 = 57;
const SYS_EXECVE: u64 = 59;
const SYS_EXIT_GROUP: u64 = 231;
const SYS_WAIT4: u64 = 61;
const SYS_KILL: u64 = 62;
const SYS_GETPPID: u64 = 110;

fn exit_now(code: u64) -> ! {
    syscall4(SYS_EXIT_GROUP, code, 0, 0, 0);
    unreachable!("exit_group returned")
}

fn pipe() -> (u64, u64) {
    let mut fds = [0i32; 2];
    let r = syscall4(SYS_PIPE, fds.as_mut_ptr() as u64, 0, 0, 0);
    assert_eq!(r, 0, "pipe");
    (fds[0] as u64, fds[1] as u64)
}

/// Everything readable from `fd` until end of file (at most 64 KiB).
fn read_all(fd: u64) -> Vec<u8> {
    let mut out = Vec::new();
    let mut buf = [0u8; 512];
    while out.len() < 65536 {
        let n = syscall4(SYS_READ, fd, buf.as_mut_ptr() as u64, buf.len() as u64, 0);
        if n <= 0 {
            break;
        }
        out.extend_from_slice(&buf[..n as usize]);
    }
    out
}

/// `wait4(pid)`: (the ID collected, the status).
fn wait(pid: i64) -> (i64, i32) {
    let mut status = 0i32;
    let r = syscall4(SYS_WAIT4, pid as u64, &mut status as *mut i32 as u64, 0, 0);
    (r, status)
}

fn processes() -> u32 {
    let mut failed = 0;
    let mut check = |what: &str, ok: bool, detail: String| {
        println!(
            "processes: {what}: {}",
            if ok {
                "ok".to_string()
            } else {
                format!("FAILED ({detail})")
            }
        );
        failed += u32::from(!ok);
    };
    let me = syscall4(SYS_GETPID, 0, 0, 0, 0);

    // fork, getppid, a pipe to the end, the exit status.
    let (r, w) = pipe();
    let child = syscall4(SYS_FORK, 0, 0, 0, 0);
    if child == 0 {
        syscall4(SYS_CLOSE, r, 0, 0, 0);
        let line = format!(
            "child {} of {}\n",
            syscall4(SYS_GETPID, 0, 0, 0, 0),
            syscall4(SYS_GETPPID, 0, 0, 0, 0)
        );
        syscall4(SYS_WRITE, w, line.as_ptr() as u64, line.len() as u64, 0);
        exit_now(7);
    }
    syscall4(SYS_CLOSE, w, 0, 0, 0);
    let got = String::from_utf8_lossy(&read_all(r)).into_owned();
    syscall4(SYS_CLOSE, r, 0, 0, 0);
    check(
        "fork returns a child ID",
        child > 0 && child != me,
        format!("{child}"),
    );
    check(
        "the child sees its ID and its parent",
        got == format!("child {child} of {me}\n"),
        format!("{got:?}"),
    );
    let (pid, status) = wait(child);
    check(
        "wait4 reports exit status 7",
        pid == child && status == 7 << 8,
        format!("{pid} {status:#x}"),
    );

    // dup2 onto standard output, then execve.
    let (r, w) = pipe();
    let child = syscall4(SYS_FORK, 0, 0, 0, 0);
    if child == 0 {
        syscall4(SYS_DUP2, w, 1, 0, 0);
        syscall4(SYS_CLOSE, w, 0, 0, 0);
        syscall4(SYS_CLOSE, r, 0, 0, 0);
        let path = b"/bin/probe\0";
        let argv: [&[u8]; 4] = [b"probe\0", b"args\0", b"x\0", b"y\0"];
        let ptrs: Vec<u64> = argv.iter().map(|a| a.as_ptr() as u64).chain([0]).collect();
        let env: [u64; 1] = [0];
        let e = syscall4(
            SYS_EXECVE,
            path.as_ptr() as u64,
            ptrs.as_ptr() as u64,
            env.as_ptr() as u64,
            0,
        );
        exit_now(100 + (-e) as u64);
    }
    syscall4(SYS_CLOSE, w, 0, 0, 0);
    let got = String::from_utf8_lossy(&read_all(r)).into_owned();
    syscall4(SYS_CLOSE, r, 0, 0, 0);
    let (pid, status) = wait(child);
    check(
        "execve's program writes into the pipe",
        got == "argc=4\nargv[0]=probe\nargv[1]=args\nargv[2]=x\nargv[3]=y\n",
        format!("{got:?}"),
    );
    check(
        "and exits with 0",
        pid == child && status == 0,
        format!("{pid} {status:#x}"),
    );

    // Twenty children at once.
    let mut children = Vec::new();
    for i in 1..=20u64 {
        let c = syscall4(SYS_FORK, 0, 0, 0, 0);
        if c == 0 {
            exit_now(i);
        }
        children.push(c);
    }
    let mut sum = 0;
    let mut seen = 0;
    for _ in 0..20 {
        let (pid, status) = wait(-1);
        if children.contains(&pid) {
            seen += 1;
            sum += status >> 8;
        }
    }
    check(
        "20 children collected",
        seen == 20 && sum == 210,
        format!("{seen} children, sum {sum}"),
    );
    let (pid, _) = wait(-1);
    check("then wait4 says ECHILD", pid == -10, format!("{pid}"));

    // kill a child blocked on a pipe; EPIPE without a reader.
    let (r, w) = pipe();
    let child = syscall4(SYS_FORK, 0, 0, 0, 0);
    if child == 0 {
        let mut b = [0u8; 1];
        syscall4(SYS_READ, r, b.as_mut_ptr() as u64, 1, 0);
        exit_now(1);
    }
    // Let the child block first (a sleep of 10 ms lets it run).
    let ts = [0u64, 10_000_000];
    syscall4(SYS_NANOSLEEP, ts.as_ptr() as u64, 0, 0, 0);
    let k = syscall4(SYS_KILL, child as u64, 15, 0, 0);
    let (pid, status) = wait(child);
    check(
        "kill ends a blocked child with SIGTERM",
        k == 0 && pid == child && status == 15,
        format!("{k} {pid} {status:#x}"),
    );
    syscall4(SYS_CLOSE, r, 0, 0, 0);
    let e = syscall4(SYS_WRITE, w, b"x".as_ptr() as u64, 1, 0);
    check("a write with no reader is EPIPE", e == -32, format!("{e}"));
    syscall4(SYS_CLOSE, w, 0, 0, 0);
    failed
}

fn privcmd() -> Result<(), String> {
    const IOCTL_PRIVCMD_HYPERCALL: u64 = 0x0030_5000;
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/xen/privcmd")
        .map_err(|e| format!("cannot open /dev/xen/privcmd: {e}"))?;
    let mut version = [17u64, 0, 0, 0, 0, 0];
    let r = syscall3(
        16,
        f.as_raw_fd() as u64,
        IOCTL_PRIVCMD_HYPERCALL,
        version.as_mut_ptr() as u64,
    );
    println!("xen_version: {r:#x}");
    let mut mmu = [1u64, 0, 1, 0, 0x7ff0, 0];
    let r = syscall3(
        16,
        f.as_raw_fd() as u64,
        IOCTL_PRIVCMD_HYPERCALL,
        mmu.as_mut_ptr() as u64,
    );
    println!("mmu_update on dom0: {r}");
    // A Xenia write-frame domctl (0x5800) aimed at dom0 itself.
    let mut domctl = [0u8; 256];
    domctl[..4].copy_from_slice(&0x5800u32.to_le_bytes());
    let mut write_frame = [0x24u64, domctl.as_mut_ptr() as u64, 0, 0, 0, 0];
    let r = syscall3(
        16,
        f.as_raw_fd() as u64,
        IOCTL_PRIVCMD_HYPERCALL,
        write_frame.as_mut_ptr() as u64,
    );
    println!("write-frame into dom0: {r}");
    Ok(())
}

/// `memory_op(XENMEM_XENIA_CHECK_FRAME_TABLE)` through privcmd: the hypercall's result.
fn frame_check() -> Result<i64, String> {
    const IOCTL_PRIVCMD_HYPERCALL: u64 = 0x0030_5000;
    const HYPERVISOR_MEMORY_OP: u64 = 12;
    const XENMEM_XENIA_CHECK_FRAME_TABLE: u64 = 0x5801;
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/xen/privcmd")
        .map_err(|e| format!("cannot open /dev/xen/privcmd: {e}"))?;
    let mut call = [
        HYPERVISOR_MEMORY_OP,
        XENMEM_XENIA_CHECK_FRAME_TABLE,
        0,
        0,
        0,
        0,
    ];
    Ok(syscall3(
        16,
        f.as_raw_fd() as u64,
        IOCTL_PRIVCMD_HYPERCALL,
        call.as_mut_ptr() as u64,
    ))
}

/// `sysctl(XEN_SYSCTL_getcpuinfo)` through privcmd with room for `max` records at `info`:
/// (the hypercall's result, `nr_cpus` as written back).
fn getcpuinfo(max: u32, info: u64) -> Result<(i64, u32), String> {
    const IOCTL_PRIVCMD_HYPERCALL: u64 = 0x0030_5000;
    const HYPERVISOR_SYSCTL: u64 = 35;
    const XEN_SYSCTL_GETCPUINFO: u32 = 8;
    const XEN_SYSCTL_INTERFACE_VERSION: u32 = 0x5800_0001;
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/xen/privcmd")
        .map_err(|e| format!("cannot open /dev/xen/privcmd: {e}"))?;
    // Xen's `struct xen_sysctl` (136 bytes): cmd, interface_version, then
    // `struct xen_sysctl_getcpuinfo` { max_cpus: u32, pad, info: u64, nr_cpus: u32 }.
    let mut op = [0u8; 136];
    op[0..4].copy_from_slice(&XEN_SYSCTL_GETCPUINFO.to_le_bytes());
    op[4..8].copy_from_slice(&XEN_SYSCTL_INTERFACE_VERSION.to_le_bytes());
    op[8..12].copy_from_slice(&max.to_le_bytes());
    op[16..24].copy_from_slice(&info.to_le_bytes());
    let mut call = [HYPERVISOR_SYSCTL, op.as_mut_ptr() as u64, 0, 0, 0, 0];
    let r = syscall3(
        16,
        f.as_raw_fd() as u64,
        IOCTL_PRIVCMD_HYPERCALL,
        call.as_mut_ptr() as u64,
    );
    let nr = u32::from_le_bytes(op[24..28].try_into().unwrap_or_default());
    Ok((r, nr))
}

/// `sysctl(XEN_SYSCTL_getcpuinfo)` for up to 64 pCPUs, then `CLOCK_MONOTONIC`: (now in ns,
/// each pCPU's idle ns).
fn cpuidle() -> Result<(u64, Vec<u64>), String> {
    const SYS_CLOCK_GETTIME: u64 = 228;
    const CLOCK_MONOTONIC: u64 = 1;
    const MAX: usize = 64;
    let mut info = [0u64; MAX];
    let (r, n) = getcpuinfo(MAX as u32, info.as_mut_ptr() as u64)?;
    let mut ts = [0u64; 2];
    let t = syscall3(
        SYS_CLOCK_GETTIME,
        CLOCK_MONOTONIC,
        ts.as_mut_ptr() as u64,
        0,
    );
    if r != 0 {
        return Err(format!("sysctl(XEN_SYSCTL_getcpuinfo) returned {r}"));
    }
    if t != 0 {
        return Err(format!("clock_gettime returned {t}"));
    }
    let now = ts[0] * 1_000_000_000 + ts[1];
    Ok((now, info[..(n as usize).min(MAX)].to_vec()))
}

/// Binds VIRQ_TIMER through `/dev/xen/evtchn`, waits (bounded) for it to fire while the
/// kernel blocks with its timer, reads the port back, and unbinds.
fn evtchn() -> Result<(), String> {
    use std::io::Read;
    const BIND_VIRQ: u64 = 0x0004_4500;
    const UNBIND: u64 = 0x0004_4503;
    const NOTIFY: u64 = 0x0004_4504;
    let mut f = OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/xen/evtchn")
        .map_err(|e| format!("cannot open /dev/xen/evtchn: {e}"))?;
    let fd = f.as_raw_fd() as u64;
    let virq: u32 = 0;
    let port = syscall3(16, fd, BIND_VIRQ, &virq as *const u32 as u64);
    if port < 0 {
        return Err(format!("IOCTL_EVTCHN_BIND_VIRQ returned {port}"));
    }
    println!("evtchn: VIRQ_TIMER bound to port {port}");
    // struct pollfd { int fd; short events; short revents; }
    let mut pfd = [0u8; 8];
    pfd[..4].copy_from_slice(&(fd as i32).to_le_bytes());
    pfd[4..6].copy_from_slice(&1i16.to_le_bytes());
    let ready = syscall3(7, pfd.as_mut_ptr() as u64, 1, 5000);
    println!(
        "evtchn: poll returned {ready}, revents {}",
        i16::from_le_bytes([pfd[6], pfd[7]])
    );
    let mut buf = [0u8; 4];
    f.read_exact(&mut buf).map_err(|e| format!("read: {e}"))?;
    println!("evtchn: port {} fired", u32::from_le_bytes(buf));
    let other: u32 = 1;
    println!(
        "evtchn: notify on a port not bound here: {}",
        syscall3(16, fd, NOTIFY, &other as *const u32 as u64)
    );
    let p32 = port as u32;
    println!(
        "evtchn: unbind: {}",
        syscall3(16, fd, UNBIND, &p32 as *const u32 as u64)
    );
    Ok(())
}

/// A raw Linux system call with up to six arguments.
fn syscall6(nr: u64, a: [u64; 6]) -> i64 {
    let ret: i64;
    // SAFETY: used for mmap, munmap, mprotect and sysinfo on memory this program owns and
    // does not otherwise use.
    unsafe {
        std::arch::asm!("syscall", inlateout("rax") nr as i64 => ret, in("rdi") a[0],
            in("rsi") a[1], in("rdx") a[2], in("r10") a[3], in("r8") a[4], in("r9") a[5],
            lateout("rcx") _, lateout("r11") _, options(nostack));
    }
    ret
}

/// Free memory in pages, as `sysinfo` reports it.
fn free_pages() -> u64 {
    let mut info = [0u64; 14];
    let r = syscall3(99, info.as_mut_ptr() as u64, 0, 0);
    assert_eq!(r, 0, "sysinfo");
    info[5] * u64::from(info[13] as u32) / 4096
}

const PROT_READ: u64 = 1;
const PROT_WRITE: u64 = 2;
const MAP_PRIVATE_ANON: u64 = 0x22;

fn mmap_anon(len: u64, prot: u64) -> u64 {
    let at = syscall6(9, [0, len, prot, MAP_PRIVATE_ANON, u64::MAX, 0]);
    assert!(at > 0, "mmap: {at}");
    at as u64
}

/// `probe lazy`: see the module docs. Ends with a fault.
fn lazy() {
    const LEN: u64 = 16 << 20;
    let before = free_pages();
    let area = mmap_anon(LEN, PROT_READ | PROT_WRITE);
    println!("lazy: mmap of 16 MiB took {} pages", before - free_pages());
    let before_touch = free_pages();
    for page in [0, 1000, 4000] {
        // SAFETY: inside the area just mapped read-write.
        unsafe { std::ptr::write_volatile((area + page * 4096) as *mut u64, page + 1) };
    }
    let after_touch = free_pages();
    let taken = before_touch - after_touch;
    println!(
        "lazy: touching 3 pages took {} (3 pages and {} page tables)",
        if (3..=6).contains(&taken) {
            "3 to 6"
        } else {
            "a wrong number of"
        },
        taken.saturating_sub(3)
    );
    let before_read = free_pages();
    // SAFETY: inside the area; never written.
    let zero = unsafe { std::ptr::read_volatile((area + 2000 * 4096) as *const u64) };
    let read_taken = before_read - free_pages();
    println!(
        "lazy: an untouched page reads {zero}, which took {} (1 page and {} page tables)",
        if (1..=3).contains(&read_taken) {
            "1 to 3"
        } else {
            "a wrong number of"
        },
        read_taken.saturating_sub(1)
    );
    let r = syscall6(10, [area + 8 * 4096, 4096, PROT_READ, 0, 0, 0]);
    // SAFETY: inside the area, now read-only: a read is allowed.
    let ro = unsafe { std::ptr::read_volatile((area + 8 * 4096) as *const u64) };
    println!("lazy: mprotect of an untouched page {r}, it reads {ro}");
    let before_unmap = free_pages();
    let r = syscall6(11, [area, LEN, 0, 0, 0, 0]);
    println!(
        "lazy: munmap {r} gave back {} pages",
        free_pages() - before_unmap
    );
    println!("lazy: now touching the unmapped area");
    // SAFETY: deliberately not safe: the area is gone and the kernel ends the program.
    unsafe { std::ptr::write_volatile((area + 4096) as *mut u64, 1) };
    println!("lazy: the write to the unmapped area went through");
}

/// Four pages of read-only data from the file (`probe shared`): byte `i` is
/// [`shared_byte`]`(i)`, so whole pages of it lie on the initrd's frames.
static SHARED_TABLE: [u8; 4 * 4096] = {
    let mut t = [0u8; 4 * 4096];
    let mut i = 0;
    while i < t.len() {
        t[i] = shared_byte(i);
        i += 1;
    }
    t
};

const fn shared_byte(i: usize) -> u8 {
    (i % 251) as u8 ^ 0x5a
}

/// `probe shared`: see the module docs.
fn shared() {
    let table = std::hint::black_box(SHARED_TABLE.as_ptr()) as usize;
    let a = table.next_multiple_of(4096);
    let b = a + 4096;
    let intact = (a..b + 4096).all(|addr| {
        // SAFETY: inside SHARED_TABLE (two whole pages past its first page boundary).
        let v = unsafe { std::ptr::read_volatile(addr as *const u8) };
        v == shared_byte(addr - table)
    });
    println!(
        "shared: rodata intact: {}",
        if intact { "yes" } else { "NO" }
    );
    let r = syscall6(10, [a as u64, 4096, PROT_READ | PROT_WRITE, 0, 0, 0]);
    println!("shared: mprotect of a rodata page writable: {r}");
    for addr in a..b {
        // SAFETY: the page was made writable just above; nothing else refers to it.
        unsafe { std::ptr::write_volatile(addr as *mut u8, 0xee) };
    }
    let child = syscall4(SYS_FORK, 0, 0, 0, 0);
    if child == 0 {
        // SAFETY: the page, written by the parent before the fork.
        let seen = (a..b).all(|addr| unsafe { std::ptr::read_volatile(addr as *const u8) } == 0xee);
        exit_now(u64::from(!seen));
    }
    let (_, status) = wait(child);
    println!(
        "shared: a child saw the written page: {}",
        if status == 0 { "yes" } else { "NO" }
    );
    let r = syscall6(11, [b as u64, 4096, 0, 0, 0, 0]);
    println!("shared: munmap of a rodata page: {r}");
}

/// `struct timespec`.
#[repr(C)]
#[derive(Clone, Copy, Default)]
struct Timespec {
    sec: i64,
    nsec: i64,
}

impl Timespec {
    fn ns(self) -> i128 {
        i128::from(self.sec) * 1_000_000_000 + i128::from(self.nsec)
    }
}

unsafe extern "C" {
    /// musl's `clock_gettime` (the vDSO when the kernel offers one, else the system call).
    fn clock_gettime(clock: i32, ts: *mut Timespec) -> i32;
    /// musl's `getauxval`.
    fn getauxval(kind: u64) -> u64;
}

fn libc_time(clock: i32) -> Timespec {
    let mut ts = Timespec::default();
    // SAFETY: `ts` is a live timespec the call writes.
    let r = unsafe { clock_gettime(clock, &mut ts) };
    assert_eq!(r, 0, "clock_gettime({clock})");
    ts
}

fn syscall_time(clock: i32) -> Timespec {
    let mut ts = Timespec::default();
    let r = syscall3(228, clock as u64, &mut ts as *mut Timespec as u64, 0);
    assert_eq!(r, 0, "system call clock_gettime({clock})");
    ts
}

fn tsc() -> u64 {
    let (lo, hi): (u32, u32);
    // SAFETY: RDTSC reads a counter and writes only EAX and EDX.
    unsafe {
        std::arch::asm!("lfence", "rdtsc", out("eax") lo, out("edx") hi, options(nostack, nomem))
    };
    u64::from(hi) << 32 | u64::from(lo)
}

/// `probe vdso`: see the module docs.
fn vdso() {
    const CLOCK_REALTIME: i32 = 0;
    const CLOCK_MONOTONIC: i32 = 1;
    const AT_SYSINFO_EHDR: u64 = 33;
    // SAFETY: getauxval reads the auxiliary vector musl saved.
    let ehdr = unsafe { getauxval(AT_SYSINFO_EHDR) };
    println!("vdso: AT_SYSINFO_EHDR {ehdr:#x}");
    let a = libc_time(CLOCK_MONOTONIC);
    let b = syscall_time(CLOCK_MONOTONIC);
    let c = libc_time(CLOCK_MONOTONIC);
    println!(
        "vdso: monotonic in order: {}",
        a.ns() <= b.ns() && b.ns() <= c.ns()
    );
    let real = libc_time(CLOCK_REALTIME).ns() - syscall_time(CLOCK_REALTIME).ns();
    println!("vdso: realtime agrees: {}", real.abs() < 1_000_000_000);
    // Ticks per call, the least of a few rounds of each: without `-icount` the host may
    // take the vCPU away in the middle of a round (seen under load on `-smp 4`), and the
    // least round is the one it did not.
    const N: u64 = 200;
    const ROUNDS: usize = 7;
    let per_call = |f: &dyn Fn()| {
        (0..ROUNDS)
            .map(|_| {
                let t0 = tsc();
                for _ in 0..N {
                    f();
                }
                (tsc() - t0) / N
            })
            .min()
            .unwrap_or(u64::MAX)
    };
    let lib = per_call(&|| {
        std::hint::black_box(libc_time(CLOCK_MONOTONIC));
    });
    let sys = per_call(&|| {
        std::hint::black_box(syscall_time(CLOCK_MONOTONIC));
    });
    println!(
        "vdso: faster than the system call: {} ({lib} against {sys} ticks)",
        lib * 4 < sys
    );
}

#[inline(never)]
fn recurse(depth: u64) -> u64 {
    let buf = [depth as u8; 1024];
    let sum: u64 = std::hint::black_box(&buf).iter().map(|&b| b as u64).sum();
    if depth == 0 {
        sum
    } else {
        sum + recurse(depth - 1)
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let number = |i: usize| args.get(i).and_then(|s| s.parse::<u64>().ok()).unwrap_or(0);
    match args.get(1).map(String::as_str) {
        Some("args") => {
            println!("argc={}", args.len());
            for (i, a) in args.iter().enumerate() {
                println!("argv[{i}]={a}");
            }
        }
        Some("exit") => std::process::exit(number(2) as i32),
        Some("processes") => {
            let failed = processes();
            println!("processes: done, {failed} failed");
        }
        Some("fault") => {
            // SAFETY: deliberately not safe: the write faults and the kernel ends the
            // program, which is what the scenario checks.
            unsafe { std::ptr::write_volatile(std::hint::black_box(0x10 as *mut u64), 1) };
        }
        Some("ud") => {
            // SAFETY: ud2 raises #UD and the kernel ends the program.
            unsafe { std::arch::asm!("ud2") };
        }
        Some("enosys") => {
            for nr in [500, 500, 1_000_000] {
                println!("system call {nr} returned {}", syscall3(nr, 0, 0, 0));
            }
        }
        Some("privcmd") => {
            if let Err(e) = privcmd() {
                eprintln!("probe: {e}");
                std::process::exit(1);
            }
        }
        Some("evtchn") => {
            if let Err(e) = evtchn() {
                eprintln!("probe: {e}");
                std::process::exit(1);
            }
        }
        Some("mem") => {
            let mib = number(2) as usize;
            let mut v = vec![0u8; mib << 20];
            for (i, b) in v.iter_mut().enumerate().step_by(4096) {
                *b = i as u8 | 1;
            }
            let sum: u64 = v.iter().step_by(4096).map(|&b| b as u64).sum();
            println!("touched {mib} MiB, checksum {sum}");
        }
        Some("lazy") => lazy(),
        Some("free") => println!("free: {} pages", free_pages()),
        Some("lazy-none") => {
            let area = mmap_anon(1 << 20, 0);
            println!("lazy-none: reading a PROT_NONE page");
            // SAFETY: deliberately not safe: the page is inaccessible; the kernel ends
            // the program.
            let v = unsafe { std::ptr::read_volatile((area + 4096) as *const u64) };
            println!("lazy-none: it read {v}");
        }
        Some("vdso") => vdso(),
        Some("shared") => shared(),
        Some("stack") => println!("stack sum {}", recurse(number(2))),
        Some("cpuidle") => match cpuidle() {
            Ok((now, idle)) => {
                let idle: Vec<String> = idle.iter().map(u64::to_string).collect();
                println!("cpuidle: now {now} idle {}", idle.join(" "));
            }
            Err(e) => {
                eprintln!("probe: {e}");
                std::process::exit(1);
            }
        },
        Some("cpuidle-hostile") => {
            // An array the caller does not have (`EFAULT`, -14), then room for none
            // (success, nothing written).
            for (what, max, info) in [("unmapped", 64, 0x10), ("none", 0, 0)] {
                match getcpuinfo(max, info) {
                    Ok((r, n)) => println!("cpuidle-hostile: {what}: {r} nr_cpus {n}"),
                    Err(e) => println!("cpuidle-hostile: {what}: {e}"),
                }
            }
        }
        Some("frame-check") => match frame_check() {
            Ok(r) => println!("frame table check: {r}"),
            Err(e) => {
                eprintln!("probe: {e}");
                std::process::exit(1);
            }
        },
        _ => {
            eprintln!(
                "usage: probe args|exit N|fault|ud|enosys|privcmd|evtchn|mem MiB|stack KiB|lazy|lazy-none|free|vdso|shared|frame-check|cpuidle|cpuidle-hostile"
            );
            std::process::exit(2);
        }
    }
}
