//! # bench-native: the benchmark kernel on the bare machine (issue 13's `native` column)
//!
//! One set of benchmark bodies, two environments: `bench-pv` (`tests/guests/bench`) runs them
//! as a Xenia guest with its kernel in ring 1; this kernel runs the same ring-3 bodies
//! (`tests/guests/bench/bodies/user.s`, included as is) on the machine itself, GRUB booting
//! it directly as a multiboot2 kernel: ring 0, its own GDT, TSS, IDT, page tables, SYSCALL
//! MSRs and local APIC. The difference between the columns is the cost of virtualization.
//!
//! Under QEMU with `-icount shift=0,sleep=off` every instruction takes one nanosecond of
//! virtual time and the TSC counts them; the kernel checks this first (`bench # tsc check`,
//! a loop of 100000 `dec; jnz`, expected 200000 ticks and a few). Every figure is the
//! minimum over `runs=` runs of a TSC delta, divided by the operations of the run and rounded
//! to the nearest instruction. A ring-3 row subtracts the same body run for zero operations
//! (one entry into ring 3 and one exit), so it is the cost of one operation alone.
//!
//! ## The rows (the pv kernel's, in its order; `tests/guests/bench/src/bench.rs`)
//!
//! - `null_call`: a ring-0 loop of `int 0x81` (DPL-0 interrupt gate) whose handler is a bare
//!   `iretq`; per trap, loop overhead included. TSC read before and after the loop.
//! - `int80`: `bench_u_int80` in ring 3: `iters` × `int 0x80` echo (DPL-3 interrupt gate
//!   to ring 0 on `TSS.RSP0`, the trap stub saves the registers, the Rust dispatcher returns
//!   `rdi + 1` in `rax`, `iretq`). TSC read in ring 0 before entering ring 3 and after the
//!   run ended; per echo, less the zero-iteration run.
//! - `syscall`: the same with `SYSCALL` (`LSTAR` stub: switch to the trap stack, same
//!   register save and dispatcher, `sysretq`).
//! - `page_fault`: `bench_u_touch` writes one byte to each of 256 absent pages (the pv
//!   kernel's count); each write faults, the #PF handler (same stub and dispatcher) writes the
//!   PTE (present, writable, user) and returns, without `invlpg` (not needed for
//!   not-present → present on the same CPU: `paging::map_fault_page`), the write is retried.
//!   Before each run the 256 PTEs are zeroed and CR3 reloaded, outside the TSC reads. Per
//!   fault, less the touch body over no page.
//! - `pt_batch`: in ring 0, the 512 entries of one L1 table (hooked into no address space)
//!   written, then CR3 reloaded; `iters / 100` batches, alternating read-write and read-only
//!   entries. Per batch of 512.
//! - `process_switch`: `bench_u_switch` in ring 3 makes `iters` (rounded up to even) calls of
//!   service 3 through `int 0x80`; each writes CR3 with the other of two top-level tables
//!   that share every mapping (a full TLB flush: no global pages, no PCIDs). Per call, less
//!   the zero-iteration run.
//! - `timer`: `iters / 10` times: read the TSC, arm the local APIC timer one-shot with an
//!   initial count of 1 (divide by 1), spin until the interrupt handler's count changes.
//!   Per interrupt, the whole round trip: arming, delivery, the trap stub, the dispatcher
//!   (count, EOI), `iretq`, and the spin loop seeing the count. A comment line also gives
//!   the TSC from arming to the dispatcher's entry (`bench # timer: ...`).
//! - `primes`: `bench_u_primes` in ring 3 counts the primes below `primes=` by trial
//!   division; per run (entering and leaving ring 3 included); `bench primes_count <n>`.
//!
//! ## Output and command line
//!
//! On COM1: `bench env native`, comment lines `bench # ...` (the CPU's vendor and brand,
//! the configuration, the TSC check), `bench <row> <instructions per operation>` for each
//! row, `bench primes_count <n>`, `bench done`; then the machine powers off: through
//! `isa-debug-exit` (port 0xf4, value 0x10) when the command line holds the harness's
//! `debug-exit` word, else ACPI soft-off on QEMU's PIIX4 (`outw(0x604, 0x2000)`). An
//! unexpected trap or a failed check prints `bench fatal: ...` and exits with 0x11.
//! Command line (multiboot2): `iters=<n>` (default 10000), `primes=<limit>` (default
//! 2000000), `runs=<n>` (default 5).
//!
//! ## Standing assumptions
//!
//! One CPU; everything runs with interrupts off except ring 3 (`IF` set, but nothing is
//! armed to interrupt it) and the timer row. The image is linked and loaded at 2 MiB and the
//! kernel's tables identity-map the first 4 GiB, so a static's address is its physical
//! address. On the build host this is an empty program, so that `cargo test --workspace`
//! builds; the parts with unit tests are the library (`lib.rs`).

#![cfg_attr(target_os = "none", no_std, no_main)]
#![forbid(unsafe_op_in_unsafe_fn)]

#[cfg(target_os = "none")]
mod apic;
#[cfg(target_os = "none")]
mod bench;
#[cfg(target_os = "none")]
mod cpu;
#[cfg(target_os = "none")]
mod desc;
#[cfg(target_os = "none")]
mod paging;
#[cfg(target_os = "none")]
mod serial;
#[cfg(target_os = "none")]
mod trap;

#[cfg(target_os = "none")]
core::arch::global_asm!(include_str!("boot.s"));
// The ring-3 bodies, the same file as the pv kernel's.
#[cfg(target_os = "none")]
core::arch::global_asm!(include_str!("../../bench/bodies/user.s"));

/// The Rust entry, called by `boot.s` in long mode on the kernel stack with the multiboot2
/// boot information's physical address.
#[cfg(target_os = "none")]
#[unsafe(no_mangle)]
extern "C" fn bench_main(info: u32) -> ! {
    serial::init();
    paging::init();
    trap::init();
    apic::init();
    let line = boot_cmdline(info);
    serial::set_debug_exit(xenia_bench_native::cmdline::flag(line, "debug-exit"));
    bench::run(line)
}

/// The multiboot2 command line (empty if there is none).
#[cfg(target_os = "none")]
fn boot_cmdline(info: u32) -> &'static [u8] {
    use xenia_bench_native::mb2;
    if info == 0 {
        return &[];
    }
    // SAFETY: GRUB put the boot information at `info` (below 4 GiB, identity-mapped, outside
    // the image); it starts with its 8-byte fixed part and nothing writes it afterwards.
    let header = unsafe { &*(info as usize as *const [u8; 8]) };
    let size = mb2::total_size(header);
    // SAFETY: as above, `total_size` bytes long.
    let all = unsafe { core::slice::from_raw_parts(info as usize as *const u8, size) };
    mb2::cmdline(all).unwrap_or(&[])
}

#[cfg(target_os = "none")]
#[panic_handler]
fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    crate::println!("bench fatal: panic: {info}");
    serial::power_off(serial::EXIT_FATAL)
}

/// On the build host there is no kernel to run.
#[cfg(not(target_os = "none"))]
fn main() {}
