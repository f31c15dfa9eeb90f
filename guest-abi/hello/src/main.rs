//! # hello: the example Xenia guest kernel
//!
//! The smallest complete paravirtual kernel for Xenia, and the one to copy when you start a
//! port. It boots in ring 1, says hello, prints what the domain builder told it, installs a
//! trap table and the event callback, takes ten ticks of a 100 ms periodic timer while
//! sleeping in between, and powers the domain off. Every step follows the porting guide in
//! the `guest_abi` crate docs, which the comments below cite by section.
//!
//! Reading order, top to bottom: the image (ELF notes, hypercall page, `_start`), the
//! console, `kernel_main`, exceptions, events, time.
//!
//! Build and run (as dom0, the first module after the hypervisor):
//!
//! ```text
//! cargo build --release -p xenia-hello --target x86_64-unknown-none
//! # grub.cfg:  multiboot2 /boot/xenia.elf   module2 /boot/hello.elf some command line
//! ```
//!
//! What it prints, each line prefixed `(d0) ` by the hypervisor:
//!
//! ```text
//! hello from a Xenia guest: running in ring 1 (CPL 1)
//! start_info at 0xffffffff8008c000:
//!   magic          xen-3.0-x86_64
//!   nr_pages       59796 (233 MiB)
//!   shared_info    0xb000000 (machine address), mapped at 0xffffffff8008d000
//!   flags          0x3 privileged initdomain
//!   pt_base        0xffffffff8008e000 (5 page-table frames)
//!   mfn_list       0xffffffff80017000
//!   mod_start      0x0 (mod_len 0 bytes)
//!   cmd_line       "some command line"
//!   padding        0xffffffff80094000..0xffffffff80400000 (user-accessible)
//! hypercall page at 0xffffffff80000000: filled by the builder
//! trap table installed (10 vectors)
//! event callback registered
//! VIRQ_TIMER bound to event channel 1
//! periodic timer started: one tick every 100 ms
//! tick 1 (101 ms)
//! ...
//! tick 10 (1000 ms)
//! goodbye from the Xenia guest: powering off
//! ```
//!
//! On the build host (`cargo test --workspace`) this is an empty program: everything that
//! only makes sense on bare metal is behind `cfg(target_os = "none")`.

#![cfg_attr(target_os = "none", no_std, no_main)]
#![cfg_attr(
    not(target_os = "none"),
    allow(dead_code, unused_imports, unused_macros)
)]
#![forbid(unsafe_op_in_unsafe_fn)]

use core::fmt::{self, Write};
use core::sync::atomic::{AtomicPtr, AtomicU32, Ordering};

use guest_abi::callback::{CALLBACKTYPE_EVENT, CallbackRegister};
use guest_abi::event::{VIRQ_CONSOLE, VIRQ_TIMER};
use guest_abi::hypercall::hypercall_stub;
use guest_abi::sched::ShutdownReason;
use guest_abi::shared_info::SharedInfo;
use guest_abi::start_info::{SIF_INITDOMAIN, SIF_PRIVILEGED, StartInfo};
use guest_abi::trap::{self, TrapInfo};
use guest_abi::{calls, elfnote};

/// Where the kernel is linked (linker.ld) and what the `VIRT_BASE` note says: pseudo-physical
/// address 0 is mapped here. PML4 slot 511, the usual home of a higher-half kernel.
const VIRT_BASE: u64 = 0xFFFF_FFFF_8000_0000;

/// Period of the timer, and how many ticks to take.
const TICK_NS: u64 = 100_000_000;
const TICKS_WANTED: u32 = 10;

// ---------------------------------------------------------------------------------------
// The image ("Booting a kernel" → "The image").
//
// The domain builder learns how to load the kernel from ELF notes named "Xen" in a PT_NOTE
// segment (linker.ld puts section .note.Xen there). Each note is: name size (4, for "Xen\0"),
// descriptor size, type, the name, the descriptor, each padded to 4 bytes.
// ---------------------------------------------------------------------------------------
#[cfg(target_os = "none")]
core::arch::global_asm!(
    ".macro XEN_NOTE_BEGIN type",
    "    .balign 4",
    "    .long 4",          // namesz
    "    .long 7f - 6f",    // descsz
    "    .long \\type",
    "    .asciz \"Xen\"",
    "6:",                   // the descriptor follows
    ".endm",
    ".macro XEN_NOTE_END",
    "7:",
    "    .balign 4",
    ".endm",
    "",
    ".pushsection .note.Xen, \"a\", @note",
    // Shown by the tools.
    "XEN_NOTE_BEGIN {guest_os}",
    "    .asciz \"Xenia-hello\"",
    "XEN_NOTE_END",
    "XEN_NOTE_BEGIN {guest_version}",
    "    .asciz \"0.1\"",
    "XEN_NOTE_END",
    // The interface generation and loader, as for Xen.
    "XEN_NOTE_BEGIN {xen_version}",
    "    .asciz \"xen-3.0\"",
    "XEN_NOTE_END",
    "XEN_NOTE_BEGIN {loader}",
    "    .asciz \"generic\"",
    "XEN_NOTE_END",
    // No optional XENFEAT_* features requested or offered.
    "XEN_NOTE_BEGIN {features}",
    "    .asciz \"\"",
    "XEN_NOTE_END",
    // Where pseudo-physical 0 is mapped, and how ELF physical addresses relate to
    // pseudo-physical ones (linker.ld counts them from 0).
    "XEN_NOTE_BEGIN {virt_base}",
    "    .quad {virt_base_value}",
    "XEN_NOTE_END",
    "XEN_NOTE_BEGIN {paddr_offset}",
    "    .quad 0",
    "XEN_NOTE_END",
    // The entry point, and the page the builder fills with hypercall stubs.
    "XEN_NOTE_BEGIN {entry}",
    "    .quad _start",
    "XEN_NOTE_END",
    "XEN_NOTE_BEGIN {hypercall_page}",
    "    .quad hypercall_page",
    "XEN_NOTE_END",
    ".popsection",
    guest_os = const elfnote::XEN_ELFNOTE_GUEST_OS,
    guest_version = const elfnote::XEN_ELFNOTE_GUEST_VERSION,
    xen_version = const elfnote::XEN_ELFNOTE_XEN_VERSION,
    loader = const elfnote::XEN_ELFNOTE_LOADER,
    features = const elfnote::XEN_ELFNOTE_FEATURES,
    virt_base = const elfnote::XEN_ELFNOTE_VIRT_BASE,
    virt_base_value = const VIRT_BASE,
    paddr_offset = const elfnote::XEN_ELFNOTE_PADDR_OFFSET,
    entry = const elfnote::XEN_ELFNOTE_ENTRY,
    hypercall_page = const elfnote::XEN_ELFNOTE_HYPERCALL_PAGE,
);

// The hypercall page ("Making hypercalls"; guest-abi `hypercall`): a page-aligned page of
// code that the builder overwrites with one 32-byte stub per hypercall. hello makes its
// hypercalls through guest-abi's `calls` wrappers, which issue `int 0x82` directly (equally
// supported); it only looks at the page to show that the builder filled it.
//
// _start: the builder enters here in ring 1 with rsi = the start_info page and rsp = the top
// of a one-page bootstrap stack, events masked ("Entry state"). One page is little for Rust
// code that formats text, so _start moves to a bigger stack in .bss, then calls kernel_main.
#[cfg(target_os = "none")]
core::arch::global_asm!(
    ".pushsection .text.hypercall_page, \"ax\", @progbits",
    ".balign 4096",
    ".globl hypercall_page",
    "hypercall_page:",
    "    .fill 4096, 1, 0xcc",      // int3 until the builder fills it
    ".popsection",
    "",
    ".pushsection .bss.stack, \"aw\", @nobits",
    ".balign 16",
    "    .skip 65536",
    "stack_top:",
    ".popsection",
    "",
    ".pushsection .text.entry, \"ax\", @progbits",
    ".globl _start",
    "_start:",
    "    lea rsp, [rip + stack_top]",
    "    mov rdi, rsi",             // kernel_main(start_info)
    "    call {kernel_main}",
    "    ud2",                      // kernel_main never returns
    ".popsection",
    kernel_main = sym kernel_main,
);

#[cfg(target_os = "none")]
unsafe extern "C" {
    /// The first byte of the hypercall page.
    static hypercall_page: u8;
}

// ---------------------------------------------------------------------------------------
// The console. dom0 writes with console_io; the hypervisor prints each line on the serial
// port with a "(d0) " prefix. `println!` formats one line into a buffer on the stack and
// writes it with a single hypercall, so lines never interleave.
// ---------------------------------------------------------------------------------------

/// One line of output, at most `LINE_MAX` bytes (longer lines are cut).
struct Line {
    bytes: [u8; Line::MAX],
    len: usize,
}

impl Line {
    const MAX: usize = 256;

    fn new() -> Self {
        Line {
            bytes: [0; Line::MAX],
            len: 0,
        }
    }
}

impl Write for Line {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let room = Line::MAX - 1 - self.len; // keep one byte for the newline
        let n = s.len().min(room);
        self.bytes[self.len..self.len + n].copy_from_slice(&s.as_bytes()[..n]);
        self.len += n;
        Ok(())
    }
}

fn print_line(args: fmt::Arguments) {
    let mut line = Line::new();
    let _ = line.write_fmt(args);
    line.bytes[line.len] = b'\n';
    // If the console fails there is nowhere to report it.
    let _ = calls::console_write(&line.bytes[..=line.len]);
}

macro_rules! println {
    ($($arg:tt)*) => { print_line(format_args!($($arg)*)) };
}

// ---------------------------------------------------------------------------------------
// The kernel.
// ---------------------------------------------------------------------------------------

/// The shared_info page. Set once in kernel_main, before anything that reads it can run.
static SHARED_INFO: AtomicPtr<SharedInfo> = AtomicPtr::new(core::ptr::null_mut());

fn shared_info() -> &'static SharedInfo {
    let p = SHARED_INFO.load(Ordering::Acquire);
    assert!(!p.is_null(), "shared_info used before it was set");
    // SAFETY: p is where the builder mapped shared_info read-write for the domain's lifetime
    // (see kernel_main); every bit pattern is a valid SharedInfo (all atomics).
    unsafe { &*p }
}

extern "C" fn kernel_main(si: &'static StartInfo) -> ! {
    // Our privilege level is the low two bits of CS ("Entry state": CS = KERNEL_CS, ring 1).
    let cpl = read_cs() & 3;
    println!("hello from a Xenia guest: running in ring {cpl} (CPL {cpl})");

    if !si.magic_is_valid() {
        println!("start_info has a bad magic: not started by a Xenia builder?");
        shut_down(ShutdownReason::Crash);
    }
    // The builder maps shared_info read-write on the page after start_info ("Start-of-day
    // memory"); start_info.shared_info is its machine address, for later page tables.
    let si_va = si as *const StartInfo as u64;
    let shared_va = StartInfo::shared_info_va(si_va);
    SHARED_INFO.store(shared_va as *mut SharedInfo, Ordering::Release);
    print_start_info(si, si_va, shared_va);

    install_trap_table();
    register_event_callback();
    tick_ten_times();
    // `interactive` on the command line (the default image of `cargo xtask run` has it):
    // echo what is typed on the console until `poweroff`.
    if si
        .cmdline_bytes()
        .split(|b| *b == b' ')
        .any(|w| w == b"interactive")
    {
        echo_console();
    }

    println!("goodbye from the Xenia guest: powering off");
    shut_down(ShutdownReason::Poweroff)
}

fn print_start_info(si: &StartInfo, si_va: u64, shared_va: u64) {
    let magic_len = si
        .magic
        .iter()
        .position(|&b| b == 0)
        .unwrap_or(si.magic.len());
    let magic = core::str::from_utf8(&si.magic[..magic_len]).unwrap_or("<not text>");
    let cmdline = core::str::from_utf8(si.cmdline_bytes()).unwrap_or("<not UTF-8>");
    println!("start_info at {si_va:#x}:");
    println!("  magic          {magic}");
    println!(
        "  nr_pages       {} ({} MiB)",
        si.nr_pages,
        (si.nr_pages * 4096) >> 20
    );
    println!(
        "  shared_info    {:#x} (machine address), mapped at {shared_va:#x}",
        si.shared_info
    );
    println!(
        "  flags          {:#x}{}{}",
        si.flags,
        if si.flags & SIF_PRIVILEGED != 0 {
            " privileged"
        } else {
            ""
        },
        if si.flags & SIF_INITDOMAIN != 0 {
            " initdomain"
        } else {
            ""
        }
    );
    println!(
        "  pt_base        {:#x} ({} page-table frames)",
        si.pt_base, si.nr_pt_frames
    );
    println!("  mfn_list       {:#x}", si.mfn_list);
    println!(
        "  mod_start      {:#x} (mod_len {} bytes)",
        si.mod_start, si.mod_len
    );
    println!("  cmd_line       \"{cmdline}\"");
    println!(
        "  padding        {:#x}..{:#x} (user-accessible)",
        si.padding_start(),
        si.padding_end()
    );
    println!(
        "hypercall page at {:#x}: {}",
        hypercall_page_va(),
        hypercall_page_state()
    );
}

/// Powers off, reboots or crashes the domain ("Shutting down"). Does not return.
fn shut_down(reason: ShutdownReason) -> ! {
    let _ = calls::sched_shutdown(reason);
    // Only reached if the hypervisor refused: nothing better to do than wait.
    loop {
        core::hint::spin_loop();
    }
}

fn read_cs() -> u16 {
    let cs: u16;
    // SAFETY: reading a segment register has no side effects.
    unsafe { core::arch::asm!("mov {0:x}, cs", out(reg) cs, options(nomem, nostack)) };
    cs
}

#[cfg(target_os = "none")]
fn hypercall_page_va() -> u64 {
    core::ptr::addr_of!(hypercall_page) as u64
}

#[cfg(not(target_os = "none"))]
fn hypercall_page_va() -> u64 {
    0
}

/// Whether the builder filled the hypercall page: its first stub should be guest-abi's
/// encoding of hypercall 0.
fn hypercall_page_state() -> &'static str {
    let expected = hypercall_stub(0);
    // SAFETY: the page is part of our image, readable, 4096 bytes long.
    let first = unsafe { core::slice::from_raw_parts(hypercall_page_va() as *const u8, 32) };
    if first == expected {
        "filled by the builder"
    } else {
        "NOT filled (still int3): the builder ignored the HYPERCALL_PAGE note"
    }
}

// ---------------------------------------------------------------------------------------
// Exceptions ("Exceptions"; guest-abi `trap`). The hypervisor delivers each exception to the
// handler registered for its vector with a hardware frame on our stack: [error code], rip,
// cs, rflags, rsp, ss. hello expects none, so every handler prints what happened and crashes
// the domain. Without a trap table, the hypervisor would crash it for us, with less to say.
// ---------------------------------------------------------------------------------------

// One stub per vector: push a zero where the CPU pushes no error code, then the vector, so
// that every exception reaches `exception` with the same frame layout.
#[cfg(target_os = "none")]
core::arch::global_asm!(
    ".macro EXCEPTION_STUB name, vector, has_error_code",
    ".globl \\name",
    "\\name:",
    ".if \\has_error_code == 0",
    "    push 0",
    ".endif",
    "    push \\vector",
    "    jmp exception_common",
    ".endm",
    "",
    ".pushsection .text, \"ax\", @progbits",
    "EXCEPTION_STUB divide_error_entry, 0, 0",
    "EXCEPTION_STUB debug_entry, 1, 0",
    "EXCEPTION_STUB breakpoint_entry, 3, 0",
    "EXCEPTION_STUB invalid_opcode_entry, 6, 0",
    "EXCEPTION_STUB device_not_available_entry, 7, 0",
    "EXCEPTION_STUB general_protection_entry, 13, 1",
    "EXCEPTION_STUB page_fault_entry, 14, 1",
    "EXCEPTION_STUB x87_error_entry, 16, 0",
    "EXCEPTION_STUB alignment_check_entry, 17, 1",
    "EXCEPTION_STUB simd_error_entry, 19, 0",
    "exception_common:",
    "    mov rdi, rsp",             // &ExceptionFrame
    "    and rsp, -16",             // the Rust ABI wants an aligned stack
    "    call {exception}",
    "    ud2",
    ".popsection",
    exception = sym exception,
);

#[cfg(target_os = "none")]
unsafe extern "C" {
    fn divide_error_entry();
    fn debug_entry();
    fn breakpoint_entry();
    fn invalid_opcode_entry();
    fn device_not_available_entry();
    fn general_protection_entry();
    fn page_fault_entry();
    fn x87_error_entry();
    fn alignment_check_entry();
    fn simd_error_entry();
}

/// What the stubs leave on the stack: their two pushes, then the hardware frame.
#[repr(C)]
struct ExceptionFrame {
    vector: u64,
    error_code: u64,
    rip: u64,
    cs: u64,
    rflags: u64,
    rsp: u64,
    ss: u64,
}

extern "C" fn exception(frame: &ExceptionFrame) -> ! {
    // A page fault's address is in vcpu_info.arch.cr2: ring 1 cannot read CR2.
    let cr2 = shared_info().vcpu_info[0].arch.cr2.load(Ordering::Relaxed);
    println!(
        "unexpected exception {} at rip {:#x} (cs {:#x}, error code {:#x}, cr2 {cr2:#x}, \
         rsp {:#x})",
        frame.vector, frame.rip, frame.cs, frame.error_code, frame.rsp
    );
    shut_down(ShutdownReason::Crash)
}

#[cfg(target_os = "none")]
fn install_trap_table() {
    // Vector, DPL, mask events on entry, handler. int3 is a software interrupt and checked
    // against the DPL like any `int n`: DPL 3 lets it work from every ring, as natively.
    // Masking events on entry makes these interrupt gates.
    let entry = |vector, dpl, handler: unsafe extern "C" fn()| {
        TrapInfo::new(vector, dpl, true, handler as *const () as u64)
    };
    let table = [
        entry(trap::DIVIDE_ERROR, 0, divide_error_entry),
        entry(trap::DEBUG, 0, debug_entry),
        entry(trap::BREAKPOINT, 3, breakpoint_entry),
        entry(trap::INVALID_OPCODE, 0, invalid_opcode_entry),
        entry(trap::DEVICE_NOT_AVAILABLE, 0, device_not_available_entry),
        entry(trap::GENERAL_PROTECTION, 0, general_protection_entry),
        entry(trap::PAGE_FAULT, 0, page_fault_entry),
        entry(trap::X87_FLOATING_POINT, 0, x87_error_entry),
        entry(trap::ALIGNMENT_CHECK, 0, alignment_check_entry),
        entry(trap::SIMD_FLOATING_POINT, 0, simd_error_entry),
        TrapInfo::END,
    ];
    // SAFETY: every handler is a stub above that handles its vector's frame.
    if let Err(e) = unsafe { calls::set_trap_table(&table) } {
        println!("set_trap_table failed: {e:?}");
        shut_down(ShutdownReason::Crash);
    }
    println!("trap table installed ({} vectors)", table.len() - 1);
}

#[cfg(not(target_os = "none"))]
fn install_trap_table() {}

// ---------------------------------------------------------------------------------------
// Events ("Events"; guest-abi `event`). Events are a PV kernel's interrupts. A pending,
// unmasked port makes the hypervisor enter the event callback with events masked
// (vcpu_info.evtchn_upcall_mask = 1, our "IF = 0") and a hardware frame on the stack.
// ---------------------------------------------------------------------------------------

// The callback entry: save the registers a Rust function may clobber, handle, restore,
// return. `iretq` in ring 1 cannot set the (virtual) interrupt flag; `event_upcall` clears the
// mask itself before we return.
#[cfg(target_os = "none")]
core::arch::global_asm!(
    ".pushsection .text, \"ax\", @progbits",
    ".globl event_callback_entry",
    "event_callback_entry:",
    "    push rax",
    "    push rcx",
    "    push rdx",
    "    push rsi",
    "    push rdi",
    "    push r8",
    "    push r9",
    "    push r10",
    "    push r11",
    "    push rbp",
    "    mov rbp, rsp",
    "    and rsp, -16",
    "    cld",
    "    call {upcall}",
    "    mov rsp, rbp",
    "    pop rbp",
    "    pop r11",
    "    pop r10",
    "    pop r9",
    "    pop r8",
    "    pop rdi",
    "    pop rsi",
    "    pop rdx",
    "    pop rcx",
    "    pop rax",
    "    iretq",
    ".popsection",
    upcall = sym event_upcall,
);

#[cfg(target_os = "none")]
unsafe extern "C" {
    fn event_callback_entry();
}

/// The port VIRQ_TIMER is bound to, and the number of timer events seen.
static TIMER_PORT: AtomicU32 = AtomicU32::new(u32::MAX);
static TICKS: AtomicU32 = AtomicU32::new(0);

/// The event handler: guest-abi `event`'s recipe for the 2-level bitmaps.
extern "C" fn event_upcall() {
    let shared = shared_info();
    let vcpu = &shared.vcpu_info[0];
    loop {
        // Clear the summary flag first, so that an event arriving during the scan sets it
        // again and we go round once more.
        vcpu.evtchn_upcall_pending.store(0, Ordering::SeqCst);
        let mut words = vcpu.evtchn_pending_sel.swap(0, Ordering::SeqCst);
        while words != 0 {
            let w = words.trailing_zeros() as usize;
            words &= words - 1;
            let Some(pending) = shared.evtchn_pending.get(w) else {
                continue;
            };
            let mut ports =
                pending.load(Ordering::SeqCst) & !shared.evtchn_mask[w].load(Ordering::SeqCst);
            while ports != 0 {
                let bit = ports.trailing_zeros();
                ports &= ports - 1;
                pending.fetch_and(!(1 << bit), Ordering::SeqCst);
                if w as u32 * 64 + bit == TIMER_PORT.load(Ordering::SeqCst) {
                    TICKS.fetch_add(1, Ordering::SeqCst);
                }
            }
        }
        // The callback was entered because events were enabled: enable them again ("sti"),
        // then look once more for an event that came in between.
        vcpu.evtchn_upcall_mask.store(0, Ordering::SeqCst);
        if vcpu.evtchn_upcall_pending.load(Ordering::SeqCst) == 0 {
            break;
        }
        vcpu.evtchn_upcall_mask.store(1, Ordering::SeqCst);
    }
}

#[cfg(target_os = "none")]
fn register_event_callback() {
    let cb = CallbackRegister {
        callback_type: CALLBACKTYPE_EVENT,
        flags: 0,
        address: event_callback_entry as *const () as u64,
    };
    // SAFETY: event_callback_entry handles the callback frame and returns with iretq.
    if let Err(e) = unsafe { calls::callback_register(&cb) } {
        println!("registering the event callback failed: {e:?}");
        shut_down(ShutdownReason::Crash);
    }
    println!("event callback registered");
}

#[cfg(not(target_os = "none"))]
fn register_event_callback() {}

// ---------------------------------------------------------------------------------------
// Time ("Time"; guest-abi `shared_info`). System time, in nanoseconds since the hypervisor
// booted, is a linear function of the TSC published in vcpu_info.time. The timer VIRQ is an
// event like any other; SCHEDOP_block is "sti; hlt": it enables events and sleeps until one
// is pending, and the callback runs before it returns.
// ---------------------------------------------------------------------------------------

fn now_ns() -> u64 {
    // SAFETY: rdtsc works in ring 1 ("What ring 1 cannot do": it can do this).
    let tsc = unsafe { core::arch::x86_64::_rdtsc() };
    shared_info().vcpu_info[0]
        .time
        .snapshot()
        .system_time_at(tsc)
}

fn tick_ten_times() {
    let port = match calls::evtchn_bind_virq(VIRQ_TIMER, 0) {
        Ok(port) => port,
        Err(e) => {
            println!("binding VIRQ_TIMER failed: {e:?}");
            shut_down(ShutdownReason::Crash);
        }
    };
    TIMER_PORT.store(port, Ordering::SeqCst);
    println!("VIRQ_TIMER bound to event channel {port}");

    let start = now_ns();
    if let Err(e) = calls::vcpu_set_periodic_timer(0, TICK_NS) {
        println!("starting the periodic timer failed: {e:?}");
        shut_down(ShutdownReason::Crash);
    }
    println!(
        "periodic timer started: one tick every {} ms",
        TICK_NS / 1_000_000
    );

    let mut printed = 0;
    while printed < TICKS_WANTED {
        if let Err(e) = calls::sched_block() {
            println!("SCHEDOP_block failed: {e:?}");
            shut_down(ShutdownReason::Crash);
        }
        // Print every tick that arrived while we slept (or while we printed).
        let ticks = TICKS.load(Ordering::SeqCst).min(TICKS_WANTED);
        while printed < ticks {
            printed += 1;
            println!("tick {printed} ({} ms)", (now_ns() - start) / 1_000_000);
        }
    }
    let _ = calls::vcpu_stop_periodic_timer(0);
}

// ---------------------------------------------------------------------------------------
// The console ("Consoles"; guest-abi `console`). dom0 reads what is typed on the serial line
// with console_io(CONSOLEIO_read); VIRQ_CONSOLE says there is something to read, so the
// kernel blocks until an event arrives, then reads until the call returns 0.
// ---------------------------------------------------------------------------------------

fn echo_console() {
    if let Err(e) = calls::evtchn_bind_virq(VIRQ_CONSOLE, 0) {
        println!("binding VIRQ_CONSOLE failed: {e:?}");
        shut_down(ShutdownReason::Crash);
    }
    println!("type a line and press Enter; `poweroff` ends the demo");
    let mut line = [0u8; 80];
    let mut len = 0;
    loop {
        // Read with events masked ("cli"): input that arrives meanwhile leaves its event
        // pending, so SCHEDOP_block (which unmasks and sleeps as one step) returns at once
        // instead of sleeping through it. Unmasked, the callback could take the event
        // between our last read and the block, and the line would wait forever.
        shared_info().vcpu_info[0]
            .evtchn_upcall_mask
            .store(1, Ordering::SeqCst);
        let mut buf = [0u8; 64];
        while let Ok(n @ 1..) = calls::console_read(&mut buf) {
            for &b in &buf[..n as usize] {
                match b {
                    b'\r' | b'\n' => {
                        let text = core::str::from_utf8(&line[..len]).unwrap_or("?");
                        if text == "poweroff" {
                            return;
                        }
                        println!("you typed: {text}");
                        len = 0;
                    }
                    0x08 | 0x7f => len = len.saturating_sub(1),
                    0x20..=0x7e if len < line.len() => {
                        line[len] = b;
                        len += 1;
                    }
                    _ => {}
                }
            }
        }
        if let Err(e) = calls::sched_block() {
            println!("SCHEDOP_block failed: {e:?}");
            shut_down(ShutdownReason::Crash);
        }
    }
}

#[cfg(target_os = "none")]
#[panic_handler]
fn panic(info: &core::panic::PanicInfo) -> ! {
    println!("panic: {info}");
    shut_down(ShutdownReason::Crash)
}

/// On the build host there is no kernel to run.
#[cfg(not(target_os = "none"))]
fn main() {}
