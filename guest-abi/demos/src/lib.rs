//! # xenia-demos: what the demo kernels compute, testable on the build host
//!
//! The demo domU kernels of Xenia's default image, `echo`, `compute` and `kv` (in
//! `src/bin/`, on the guest runtime `xenia-guest-rt`), keep their logic here, apart from
//! anything that needs a hypervisor: the line editor behind `echo`, the prime sieve behind
//! `compute`, the disk format and commands of `kv`, and the command-line words they read.
//! This library is `no_std`, allocates nothing, has no `unsafe`, and is unit-tested by
//! `cargo test --workspace`.
//!
//! Porters: this split is worth copying. A PV kernel's hard-to-test parts (entry, traps,
//! events, rings) are small and the same in every kernel; what it *does* can usually be
//! written as plain functions over bytes and tested like any other Rust code.

#![no_std]
#![forbid(unsafe_code)]

#[cfg(test)]
extern crate std;

pub mod cmdline;
pub mod kv;
pub mod line;
pub mod primes;
pub mod web;
