//! # Xenia's guest ABI, and how to port a kernel to it
//!
//! This crate is the one definition of the interface between the Xenia
//! hypervisor and the paravirtual kernels it runs: hypercall numbers and
//! calling convention, the structures the two sides exchange, segment
//! selectors, the virtual address layout, error codes, and thin call
//! wrappers. The hypervisor, the guest kernels (dom0's and the test guests)
//! and the toolstack all build against it. These crate docs are the porting
//! guide.
//!
//! **What it is for.** Where Xen's public ABI has an equivalent, this crate
//! uses Xen's numbers, layouts and semantics, so that knowledge of Xen PV
//! porting carries over; the unit tests check every number and every field
//! offset against Xen's published values. Where Xenia differs, this guide
//! says so (see [the table below](#differences-from-xen-at-a-glance)).
//!
//! **What it trusts.** Nothing. Every structure is plain data in which every
//! bit pattern is a valid value, so the hypervisor can copy any bytes a guest
//! hands it into one of these types and validate the fields where it uses
//! them. Addresses inside structures are `u64` numbers, never references: a
//! guest pointer is an allegation, not a reference. Memory that both sides
//! write at run time ([`shared_info`], the console ring) is made of atomics,
//! so neither side needs `unsafe` to follow the protocol and neither can be
//! hurt by the other's stray writes.
//!
//! **What it never does.** Allocate, panic on data it is given, dereference an
//! address found in a structure, or hold policy. Its `unsafe` code is the
//! hypercall instruction and the calls to it: in [`hypercall`], six
//! `unsafe fn`s (`hypercall0` to `hypercall5`), each one `unsafe` block
//! around the `int 0x82`; in [`calls`], 22 `unsafe` blocks, each a call of
//! one of those, and eight `unsafe fn` wrappers whose callers vouch for the
//! mappings, stacks or entry points the call changes. Nothing else in the
//! crate is `unsafe`. It has no dependencies: flag
//! fields stay raw integers with named constants, because a flag type would
//! have to accept every bit pattern anyway.
//!
//! # Conventions
//!
//! * Names map mechanically from Xen's: `__HYPERVISOR_sched_op` is
//!   [`hypercall::HYPERVISOR_SCHED_OP`], `SCHEDOP_yield` is
//!   [`sched::SCHEDOP_YIELD`], `struct evtchn_bind_virq` is
//!   [`event::EvtchnBindVirq`]. Modules follow Xen's headers.
//! * The ABI is x86-64 only and little-endian. Frame numbers are
//!   [`types::Mfn`] and [`types::Pfn`]; virtual addresses are `u64`.
//! * Sizes, in bytes: `start_info` 1168, `shared_info` 3136, `vcpu_info` 64,
//!   `vcpu_time_info` 32, `trap_info` 16, `iret_context` 72.
//!
//! # Differences from Xen at a glance
//!
//! | topic | Xen (64-bit PV) | Xenia |
//! |---|---|---|
//! | guest kernel ring | 3 | 1 ([`selectors`]) |
//! | user/kernel separation | two page tables per process | one page table, U/S bit |
//! | hypercall instruction | `syscall` | `int 0x82`, DPL 1 ([`hypercall`]) |
//! | registers after a hypercall | argument registers clobbered | argument registers clobbered (continuations advance `rdi`, `rsi`); the rest preserved |
//! | GDT | guest-supplied, plus Xen's flat selectors | fixed ([`selectors`]) |
//! | exception frame | Xen format (`rcx`, `r11` on top) | hardware format ([`trap`]) |
//! | return to user mode | `iret` hypercall | the kernel's own `iretq`, or `iret` |
//! | `int 0x80` | bounced through Xen | straight to the kernel ([`trap`]) |
//! | `shared_info` at start of day | unmapped | mapped after `start_info` |
//! | `vcpu_info.arch.pad` | padding | entry count ([`shared_info::ArchVcpuInfo::entry_count`]) |
//! | kernel GS base | separate, switched by Xen | one GS base ([`selectors::SEGBASE_GS_USER`]) |
//! | `MMUEXT_NEW_USER_BASEPTR` | user page table | `EINVAL` |
//! | event channels | 2-level and FIFO | 2-level |
//! | I/O ports for dom0 | IOPL or `set_iobitmap` | fixed TSS I/O bitmap ([`physdev`]) |
//! | xenstore | a daemon or stub domain | served by dom0's kernel; no transactions yet ([`xenstore`]) |
//!
//! # Booting a kernel
//!
//! ## The image
//!
//! A kernel is a 64-bit ELF executable, linked at its final virtual
//! addresses, that carries Xen-style ELF notes ([`elfnote`]): its entry point
//! ([`elfnote::XEN_ELFNOTE_ENTRY`], else the ELF entry), the virtual address
//! of pseudo-physical 0 ([`elfnote::XEN_ELFNOTE_VIRT_BASE`]), optionally a
//! hypercall page ([`elfnote::XEN_ELFNOTE_HYPERCALL_PAGE`]), and the
//! informational strings. The builder (the hypervisor for dom0, the
//! toolstack for domUs) loads it; dom0's image and initrd come from GRUB
//! modules.
//!
//! Link it so that every `PT_LOAD` segment has
//! `p_vaddr = VIRT_BASE + p_paddr - PADDR_OFFSET`; with `PADDR_OFFSET` 0 that
//! is `p_paddr = p_vaddr - VIRT_BASE`, physical addresses counted from 0 as
//! Linux does. Then a builder that places segments by physical address, as
//! Xen's loader does, and one that uses the virtual address agree. The
//! example guest `guest-abi/hello` (package `xenia-hello`) is a complete,
//! commented kernel with such a linker script; copy it to start a port.
//!
//! ## Start-of-day memory
//!
//! As in Xen, the builder lays out, from `VIRT_BASE` upwards, each part
//! starting on a page boundary and all of it mapped 1:1 onto the first
//! pseudo-physical frames:
//!
//! 1. the kernel image, loaded as ELF says: every `PT_LOAD` segment's file
//!    bytes, then zeros up to its `p_memsz` (so `.bss` starts zeroed);
//! 2. the initial ramdisk, if any (`mod_start`, `mod_len`);
//! 3. the p2m list: one machine frame number (`u64`) per pseudo-physical
//!    frame (`mfn_list`, `nr_pages` entries);
//! 4. the [`start_info::StartInfo`] page (`rsi`);
//! 5. the `shared_info` page ([`shared_info::SharedInfo`]), mapped read-write
//!    at `rsi + 4096` ([`start_info::StartInfo::shared_info_va`]). This is a
//!    Xenia addition, because a kernel could not map it before the
//!    page-table hypercalls exist: Xen leaves it unmapped. The page is the
//!    hypervisor's frame, not one of the domain's pseudo-physical frames;
//!    `start_info.shared_info` still holds its machine address;
//! 6. for a domU, three more pages: the console ring, the device page
//!    ([`device_page`]) and the xenstore ring ([`xenstore`]);
//! 7. the bootstrap page tables (`pt_base`, `nr_pt_frames`): mapped
//!    read-only and pinned, the L4 in CR3;
//! 8. the bootstrap stack, one page;
//! 9. the padding: at least 512 KiB of mapped, free memory
//!    ([`start_info::BOOTSTRAP_PADDING_MIN`]); the mapped region ends on a
//!    4 MiB boundary ([`start_info::StartInfo::padding_start`] and
//!    [`padding_end`](start_info::StartInfo::padding_end)).
//!
//! Everything is mapped writable except the page tables. Items 1 to 8 are
//! supervisor mappings (U/S = 0 in their L1 entries): ring 3 cannot touch
//! them. The padding is mapped writable, executable and *user-accessible*
//! (U/S = 1 at every level), so a kernel can run ring-3 code before it
//! builds page tables of its own: copy code and data there and `iretq` to it
//! with [`selectors::USER_CS`] and [`selectors::USER_SS`]. Upper-level
//! entries of the bootstrap tables all have U/S = 1; the L1 entries decide.
//!
//! `CR4.SMEP` is set when the CPU has it, so ring 1, like ring 0, must not
//! execute user pages (it would take a #PF with the instruction-fetch bit);
//! it may read and write them, since `CR4.SMAP` is clear. `CR0.WP` is set:
//! ring 1 cannot write read-only pages either.
//!
//! ## Entry state
//!
//! * Ring 1: `CS` = [`selectors::KERNEL_CS`], `SS` = `DS` = `ES` =
//!   [`selectors::KERNEL_DS`], `FS` = `GS` = 0 with zero bases.
//! * `rip` = the entry point; `rsi` = virtual address of `start_info`; `rsp` =
//!   top of the bootstrap stack (page-aligned); every other general-purpose
//!   register is zero.
//! * Events are masked: `vcpu_info[0].evtchn_upcall_mask` = 1. The real `IF`
//!   is set and `IOPL` is 0, as always while a guest runs; `DF` is clear.
//! * x87 and SSE are usable (`CR0.TS` clear, `CR4.OSFXSR` set) in their reset
//!   state; the hypervisor saves and restores them across vCPU switches.
//! * `CR0.AM` is set, so ring-3 code that sets `rflags.AC` gets #AC on
//!   misaligned accesses, as under a native kernel (ring 1 is never
//!   alignment-checked; QEMU's TCG never raises #AC at all). `CR0.NE` is set:
//!   x87 errors raise #MF.
//! * Only vCPU 0 runs. No trap table, callbacks or ring-1 stack for ring-3
//!   entries exist yet: an exception before `set_trap_table` crashes the
//!   domain, with a message on the hypervisor console.
//!
//! dom0 gets `SIF_PRIVILEGED | SIF_INITDOMAIN` in `start_info.flags` and uses
//! `console_io` as its console: the hypervisor prints what dom0 writes on the
//! serial line, line by line, each line prefixed with `(d0) `. A domU finds
//! its console ring in `start_info.console`, and its devices on the device
//! page ([`device_page`]).
//!
//! # Making hypercalls
//!
//! `int 0x82` from ring 1, number in `rax`, arguments in `rdi`, `rsi`, `rdx`,
//! `r10`, `r8`, result in `rax` (`>= 0` success, `-errno` failure, see
//! [`errno::Errno`]); the five argument registers are clobbered (a continued
//! batch advances `rdi` and `rsi`), every other register is preserved. Call through the
//! hypercall page or issue `int 0x82` directly. Details in [`hypercall`],
//! including the [error each call returns for bad arguments](hypercall#errors);
//! typed wrappers in [`calls`].
//!
//! A ring-1 kernel must never execute `SYSCALL`: the CPU enters the
//! hypervisor exactly as for a `SYSCALL` from ring 3. The hypervisor tells
//! the two apart by the page the instruction is on: one ring 3 cannot execute
//! (not user-accessible) means the kernel issued it, and the kernel gets #UD
//! at the instruction, with `KERNEL_CS`/`KERNEL_SS` in the frame. A kernel
//! that executes user pages in ring 1 (possible only without SMEP) and issues
//! `SYSCALL` there is seen as a user system call.
//!
//! # What ring 1 cannot do, and what to do instead
//!
//! Privileged instructions raise #GP in ring 1, which is delivered to the
//! kernel like any other #GP. `pushf` shows `IF` = 1 and `popf` cannot clear
//! it, so interrupt-flag bookkeeping must use the event mask instead:
//!
//! | native | under Xenia |
//! |---|---|
//! | `cli` / `sti` | set / clear `vcpu_info.evtchn_upcall_mask` (then check `evtchn_upcall_pending`) |
//! | `sti; hlt` | [`sched::SCHEDOP_BLOCK`] |
//! | `mov cr3` | [`memory::MMUEXT_NEW_BASEPTR`] |
//! | `invlpg`, TLB flush | [`memory::MMUEXT_INVLPG_LOCAL`] and friends, or `UVMF_*` flags |
//! | read `cr2` | `vcpu_info.arch.cr2` |
//! | `lidt` | `set_trap_table` ([`trap`]) |
//! | `lgdt`, `ltr` | nothing: the GDT and TSS are fixed ([`selectors`]) |
//! | `wrmsr` FS/GS base | `set_segment_base` |
//! | `swapgs` | nothing: one GS base |
//! | `sysret` | `iretq`, or the `iret` hypercall |
//! | `clts`, `mov cr0` | `fpu_taskswitch` |
//! | `in`, `out` | dom0 only, through its I/O-port permissions |
//!
//! `cpuid` and `rdtsc` work natively.
//!
//! # Exceptions
//!
//! The kernel registers a virtual IDT with `set_trap_table`. The hypervisor
//! delivers each guest exception to it with a hardware-format frame on the
//! kernel stack (error code, `rip`, `cs`, `rflags`, `rsp`, `ss`); the
//! saved `rflags.IF` is the virtual interrupt flag, and a page fault's address
//! is in `vcpu_info.arch.cr2`. Kernel code runs at RPL 1, so "came from user
//! mode" is `cs & 3 == 3` ([`selectors::is_user_cs`]). Handlers return with
//! `iretq` or the `iret` hypercall. An exception the kernel has no handler
//! for crashes the domain, with a hypervisor log line naming the vector and
//! `rip`. Details in [`trap`].
//!
//! # Events
//!
//! Events are the guest's interrupts: event channels ([`event`]) with Xen's
//! 2-level bitmaps in [`shared_info`]. `vcpu_info.evtchn_upcall_mask` is the
//! virtual interrupt flag (non-zero = interrupts off). When an unmasked port
//! becomes pending the hypervisor sets `evtchn_upcall_pending` and, unless
//! the vCPU's mask is set, enters the event callback
//! ([`callback::CALLBACKTYPE_EVENT`]) with a hardware-format frame and the
//! mask set. Timers, the console and other domains all signal through
//! events.
//!
//! # Time
//!
//! `vcpu_info.time` ([`shared_info::VcpuTimeInfo`]) turns the TSC into system
//! time (nanoseconds since boot); the wall clock is `shared_info.wc_*` plus
//! system time. `set_timer_op` or the [`vcpu`] timers raise
//! [`event::VIRQ_TIMER`] at an absolute system time; `SCHEDOP_BLOCK` waits
//! for it.
//!
//! # Shutting down
//!
//! `sched_op(SCHEDOP_SHUTDOWN, reason)` stops the domain
//! ([`sched::ShutdownReason`]); the hypervisor logs
//! `domain <id> shut down: <reason>` (the [`sched::ShutdownReason::name`]
//! word). When dom0 shuts down the hypervisor ends the machine. Under test
//! (hypervisor option `debug-exit`) QEMU's `isa-debug-exit` then makes QEMU
//! exit with status 33 for `poweroff`, 39 for `reboot` and 37 for `crash`,
//! which is also what a domain crashed by the hypervisor gives.
//!
//! # Running user programs
//!
//! * One page table per process: kernel mappings without the U/S bit, user
//!   mappings with it. Ring 1 reaches both (Xenia keeps `CR4.SMAP` clear while
//!   guests run, since ring 1 cannot execute `stac`/`clac`); ring 3 reaches
//!   only the user ones.
//! * Before running a process, point the ring-1 stack at its kernel stack
//!   with `stack_switch(KERNEL_SS, top)`, and set its FS (and GS) base with
//!   `set_segment_base`.
//! * Enter ring 3 with the kernel's own `iretq` on a frame of `rip`,
//!   [`selectors::USER_CS`], `rflags`, `rsp`, [`selectors::USER_SS`].
//! * `SYSCALL` in ring 3 enters the hypervisor, which bounces it to the
//!   syscall callback ([`callback::CALLBACKTYPE_SYSCALL`]) with a
//!   hardware-format frame and `rcx`/`r11` as `SYSCALL` left them.
//! * `int 0x80` in ring 3 reaches the kernel's trap-table handler for vector
//!   0x80 directly, in hardware, when that entry has DPL 3 and does not mask
//!   events (the fast trap, see [`trap`]). The hypervisor is not involved:
//!   [`shared_info::ArchVcpuInfo::entry_count`] does not move.
//! * Exceptions and events in ring 3 arrive on the `stack_switch` stack.
//!
//! # Memory
//!
//! Direct paging: the kernel's page tables hold machine frame numbers, are
//! mapped read-only to it once in use, and change only through `mmu_update`,
//! `update_va_mapping` and `mmuext_op`, which validate every entry. PML4
//! slots 256 to 271 belong to the hypervisor ([`layout`]); slot 256 holds
//! the read-only M2P table. Details in [`memory`].
//!
//! The rules the hypervisor enforces (Xen's): a frame may be a page table (L1 to
//! L4) or mapped writable, never both at once; a table becomes one by being
//! *validated* — pinned (`MMUEXT_PIN_L*_TABLE`), made the base
//! (`MMUEXT_NEW_BASEPTR`) or referenced by a higher table — which checks every
//! entry: only the domain's own frames, no superpages (`PS`), no reserved bits,
//! nothing in slots 256–271, not-present entries all zero (the L1TF mitigation),
//! no recursive (linear) mappings. A frame still mapped, pinned or in use as a
//! base cannot be given back with `XENMEM_decrease_reservation`.
//!
//! ## Who flushes the TLB
//!
//! * **The hypervisor** makes every change it validates safe before it returns:
//!   when a frame stops being a page table or stops being writable-mapped (a
//!   type change), stale translations are flushed on every pCPU before the frame
//!   is used in its new role; when an L4 that a pCPU runs on changes, that pCPU's
//!   copy of it (its guest root) is refreshed before the old entry's references
//!   are dropped. No guest can use a stale translation to reach memory it no
//!   longer owns or a page table as data.
//! * **The guest** flushes for its *own* correctness: after it removes or
//!   downgrades a mapping it asks for the flush it needs, with the `UVMF_*`
//!   flags of `update_va_mapping` or `MMUEXT_TLB_FLUSH_*` / `MMUEXT_INVLPG_*`,
//!   exactly as a native kernel uses `invlpg`. (Today, with one pCPU and no PCID,
//!   every return to the guest reloads CR3 and flushes anyway; do not rely on it.)
//! * `MMUEXT_NEW_BASEPTR` switches address spaces and flushes like a CR3 write.
//!
//! ## Batches
//!
//! `mmu_update` and `mmuext_op` take batches of any length (`count` up to
//! 2^32 - 1). Long batches are processed in chunks: between chunks the
//! hypervisor may deliver events, with the call's argument registers advanced
//! and its RIP back on the `int 0x82`, so the call resumes where it left off
//! when the handler returns. The first failing item ends the batch; `*done`
//! says how many succeeded.
//!
//! ## Frames the hypervisor writes
//!
//! The hypervisor writes `shared_info` (event bits, `vcpu_info`, time) and the
//! grant-table frames (`GTF_reading`/`GTF_writing`) for as long as the domain
//! lives. The domain may map them, writable too, but they can never become a
//! page table or descriptor page, nor be given back: a pin or a page-table
//! entry asking for such a type fails with `EINVAL`, and
//! `XENMEM_decrease_reservation` stops at them.
//!
//! ## Xenia's extensions, and who may call them
//!
//! Every operation Xenia adds to Xen's interface (numbers from `0x5800`) says
//! who may call it and checks it:
//!
//! | operation | who | what |
//! |---|---|---|
//! | `memory_op` [`memory::XENMEM_XENIA_FRAME_COUNTS`] | any domain, about itself | its frames by type |
//! | `memory_op` [`memory::XENMEM_XENIA_CHECK_FRAME_TABLE`] | dom0 only (`EPERM`) | the hypervisor's consistency check of every frame, and of the frames it writes |
//! | `domctl` [`domctl::XEN_DOMCTL_XENIA_WRITE_FRAME`], [`domctl::XEN_DOMCTL_XENIA_READ_FRAME`] | dom0 only (`EPERM`), on a frame of another existing domain (`EINVAL` for itself, `ESRCH` for none) | copy into (only while the frame can be writable: never a page table) or out of one frame |
//! | `console_io` [`console::CONSOLEIO_XENIA_WRITE_RAW`] | dom0 only (`EPERM`) | bytes to the serial line as they are |
//! | `sysctl` [`sysctl::XEN_SYSCTL_XENIA_HEAP_INFO`] | dom0 only (`EPERM`) | the heap, and what a domain is charged |
//!
//! ## Hypervisor memory a domain costs
//!
//! What the hypervisor allocates for a domain (its vCPUs, event channels,
//! grant mappings, its unfinished console line) is bounded by limits set when
//! the domain is created; a request past them, or one the machine cannot
//! spare without eating into the hypervisor's reserve, fails with `ENOMEM`,
//! `ENOSPC` or `GNTST_no_space`, never by stopping the hypervisor.
//!
//! # More in [`porting`]
//!
//! [`porting`] continues this guide: the build recipe (target, linker
//! script, relocation model) and the ELF and address rules the builders
//! enforce; the errno tables of `mmu_update`, `update_va_mapping`,
//! `mmuext_op` and `memory_op`; building a ring-3 address space step by
//! step (with [`pte`], the page-table-entry bits); which `foreigndom` to
//! pass; the initial mask state of a new event channel; returning from the
//! event upcall with the `iret` hypercall; and `SS` after a fast trap.
//!
//! # A worked example
//!
//! A minimal kernel that says hello and powers off. It is compiled with the
//! crate's tests but not run (it needs the hypervisor); a real kernel also
//! has `#![no_std]`, `#![no_main]`, a panic handler and the build recipe of
//! [`porting`](crate::porting#building-a-kernel-image).
//!
//! ```no_run
//! use core::arch::global_asm;
//! use core::sync::atomic::Ordering;
//! use guest_abi::{calls, event, sched::ShutdownReason, selectors};
//! use guest_abi::callback::{CALLBACKTYPE_EVENT, CallbackRegister};
//! use guest_abi::shared_info::SharedInfo;
//! use guest_abi::start_info::StartInfo;
//! use guest_abi::trap::{self, TrapInfo};
//!
//! // The entry-point note: namesz, descsz, type, "Xen\0", the address.
//! global_asm!(
//!     ".pushsection .note.Xen, \"a\", @note",
//!     ".balign 4",
//!     ".long 4, 8, {entry}",
//!     ".asciz \"Xen\"",
//!     ".balign 4",
//!     ".quad kernel_entry",
//!     ".popsection",
//!     entry = const guest_abi::elfnote::XEN_ELFNOTE_ENTRY,
//! );
//!
//! // rsi holds the start_info address; pass it on as the first argument.
//! global_asm!(
//!     ".globl kernel_entry",
//!     "kernel_entry:",
//!     "mov rdi, rsi",
//!     "call {main}",
//!     "ud2",
//!     main = sym kernel_main,
//! );
//!
//! // #PF entry: the error code is at [rsp], the hardware frame above it.
//! global_asm!(
//!     "page_fault_entry:",
//!     "mov rdi, [rsp]",
//!     "call {handler}",
//!     "ud2",
//!     handler = sym page_fault,
//! );
//!
//! // The event callback: a real one saves registers, scans the bitmaps and
//! // returns with the `iret` hypercall (porting, "Returning from the event
//! // upcall"). This one only returns.
//! global_asm!(
//!     "event_entry:",
//!     "push 0",
//!     "push rcx",
//!     "push r11",
//!     "push rax",
//!     "mov eax, {iret}",
//!     "int 0x82",
//!     iret = const guest_abi::hypercall::HYPERVISOR_IRET,
//! );
//!
//! unsafe extern "C" {
//!     fn page_fault_entry();
//!     fn event_entry();
//! }
//!
//! static mut SHARED: *const SharedInfo = core::ptr::null();
//!
//! extern "C" fn page_fault(error_code: u64) -> ! {
//!     // SAFETY: set before the trap table was installed.
//!     let shared = unsafe { &*SHARED };
//!     let addr = shared.vcpu_info[0].arch.cr2.load(Ordering::Relaxed);
//!     let _ = (addr, error_code); // report them
//!     let _ = calls::sched_shutdown(ShutdownReason::Crash);
//!     loop {}
//! }
//!
//! extern "C" fn kernel_main(si: &'static StartInfo) -> ! {
//!     assert!(si.magic_is_valid());
//!
//!     // The builder mapped shared_info on the page after start_info.
//!     let shared_va = StartInfo::shared_info_va(si as *const StartInfo as u64);
//!     // SAFETY: set once, before the trap table that reads it is installed.
//!     unsafe { SHARED = shared_va as *const SharedInfo };
//!     // SAFETY: mapped read-write by the builder for the domain's lifetime,
//!     // and every bit pattern is a valid SharedInfo.
//!     let shared = unsafe { &*(shared_va as *const SharedInfo) };
//!
//!     // Exception handlers and the event callback.
//!     let traps = [
//!         TrapInfo::new(trap::PAGE_FAULT, 0, true, page_fault_entry as *const () as u64),
//!         TrapInfo::END,
//!     ];
//!     let event_cb = CallbackRegister {
//!         callback_type: CALLBACKTYPE_EVENT,
//!         flags: 0,
//!         address: event_entry as *const () as u64,
//!     };
//!     // SAFETY: both entry points expect the frames documented in `trap`.
//!     unsafe {
//!         calls::set_trap_table(&traps).unwrap();
//!         calls::callback_register(&event_cb).unwrap();
//!     }
//!
//!     calls::console_write(b"hello from ring 1\n").unwrap();
//!
//!     // Sleep 10 ms on the timer VIRQ, polling with events still masked.
//!     // SAFETY: rdtsc has no preconditions.
//!     let tsc = unsafe { core::arch::x86_64::_rdtsc() };
//!     let now = shared.vcpu_info[0].time.snapshot().system_time_at(tsc);
//!     let port = calls::evtchn_bind_virq(event::VIRQ_TIMER, 0).unwrap();
//!     calls::set_timer_op(now + 10_000_000).unwrap();
//!     calls::sched_poll(&[port], 0).unwrap();
//!     shared.evtchn_pending[port as usize / 64].fetch_and(!(1 << (port % 64)), Ordering::AcqRel);
//!
//!     let _ = selectors::KERNEL_SS; // stack_switch(KERNEL_SS, ..) before running ring-3 code
//!     let _ = calls::sched_shutdown(ShutdownReason::Poweroff);
//!     loop {}
//! }
//! # fn main() {}
//! ```

#![cfg_attr(target_os = "none", no_std)]
#![forbid(unsafe_op_in_unsafe_fn)]
#![deny(missing_docs)]
// Doc examples are part of the porting guide: they must compile without a warning.
#![doc(test(attr(deny(warnings))))]

/// Checks a type's size, alignment and field offsets against the published
/// values.
#[cfg(test)]
macro_rules! assert_layout {
    ($ty:ty, $size:expr, $align:expr, { $($field:ident : $off:expr),* $(,)? }) => {{
        assert_eq!(core::mem::size_of::<$ty>(), $size, "size of {}", stringify!($ty));
        assert_eq!(core::mem::align_of::<$ty>(), $align, "alignment of {}", stringify!($ty));
        $(
            assert_eq!(
                core::mem::offset_of!($ty, $field),
                $off,
                "offset of {}.{}",
                stringify!($ty),
                stringify!($field)
            );
        )*
    }};
}

pub mod blkif;
pub mod callback;
#[cfg(target_arch = "x86_64")]
pub mod calls;
pub mod console;
pub mod device_page;
pub mod domctl;
pub mod elfnote;
pub mod errno;
pub mod event;
pub mod grant;
pub mod hypercall;
pub mod layout;
pub mod memory;
pub mod netif;
pub mod physdev;
pub mod porting;
pub mod pte;
pub mod sched;
pub mod selectors;
pub mod shared_info;
pub mod start_info;
pub mod sysctl;
pub mod trap;
pub mod types;
pub mod vcpu;
pub mod vcpu_context;
pub mod version;
pub mod xenstore;

pub use errno::Errno;
