//! # xenia-dom0 (library): the operating-system pieces of dom0's kernel
//!
//! What dom0's kernel does for its programs that can be written as plain, safe Rust and
//! tested on the build host, apart from the kernel binary (`src/main.rs`, which holds the
//! glue that touches memory, page tables and hypercalls):
//!
//! * [`bridging`] is the learning bridge's forwarding, ageing and bounded queues, and the
//!   layouts of `brctl show` and `/proc/net/dev`;
//! * [`block`] is what the block devices share apart from their driver: errors, the
//!   bounds of an access to a disk or partition, Linux's names and size lines;
//! * [`cpio`] reads (and, for xtask's initrd builder, writes) the initrd, a cpio newc
//!   archive;
//! * [`partition`] reads MBR and GPT partition tables as Linux does;
//! * [`pci`] enumerates PCI functions (identity, BARs and their sizes, interrupt, capabilities)
//!   over any way to configuration space, and prints them as Linux does;
//! * [`netconf`] is dom0's own IPv4 address on `xenbr0` and the command line that sets it;
//! * [`netservices`] is dom0's IP endpoint there (`smoltcp`): ping, discard and chargen;
//! * [`files`] is a process's descriptors on files, devices, pipes and `/proc`;
//! * [`tmpfs`] is dom0's writable root: a file system in memory, seeded from the initrd,
//!   with the operations behind Linux's file system calls;
//! * [`procfs`] lays out `/proc` from a snapshot of the processes and the memory;
//! * [`program`] plans where a static ELF program goes in a process's address space;
//! * [`userstack`] builds a program's start-up stack (argv, envp, auxv);
//! * [`vm`] keeps a process's address space as its system calls see it (the `brk` heap,
//!   the `mmap` areas and their protections);
//! * [`syscalls`] lists the Linux system calls the kernel implements, by number;
//! * [`shell`] is the `init` shell's line editor, word splitting and exit reports;
//! * [`tty`] is the terminal's line discipline (`n_tty`'s canonical mode, echo, signals);
//! * [`vbd`] is blkback's checking of block requests, ring indexes and xenstore paths.
//! * [`vif`] is netback's checking of transmitted frames, ring indexes and xenstore paths.
//!
//! Only the dom0 kernel uses these (xtask's initrd builder and a fuzz target use [`cpio`]);
//! the toolstack itself (`xl`'s configuration, the domain builder, the Xen handle) is the
//! `dom0-tools` library.
//!
//! **What it trusts.** Nothing it parses: the initrd, the programs in it and the system call
//! arguments it is given are checked before they are used, and a bad one is an error
//! returned to the caller.
//!
//! **What it never does.** Touch memory or hardware (the kernel binary applies what these
//! modules decide), or use `unsafe`.

#![cfg_attr(target_os = "none", no_std)]
#![forbid(unsafe_code)]
#![deny(missing_docs)]

extern crate alloc;

pub mod block;
pub mod bridging;
pub mod cpio;
pub mod files;
pub mod netconf;
pub mod netservices;
pub mod partition;
pub mod pci;
pub mod procfs;
pub mod program;
pub mod shell;
pub mod syscalls;
pub mod tmpfs;
pub mod tty;
pub mod userstack;
pub mod vbd;
pub mod vif;
pub mod vm;

/// dom0's host name (`uname`'s nodename, `xl info`'s `host`).
pub const HOSTNAME: &str = "xenia-dom0";
