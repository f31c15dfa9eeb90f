//! `abi`: the hypercall argument decoders of guest-abi. Every `domctl`/`sysctl` payload and
//! array element must decode from any bytes and encode back to exactly the bytes it covers
//! (every field, padding included, is named, so nothing is lost or invented) with the rest of
//! the union zero; `decode_prefix` must refuse short slices and agree with `decode`. The other
//! decoders (shutdown reasons, errno values, the device page) must not panic and must round
//! trip where they accept.

use guest_abi::device_page::DeviceEntry;
use guest_abi::domctl::{
    ArchDomainconfig, DomctlCreatedomain, DomctlGetdomaininfo, DomctlGetvcpuinfo, DomctlMaxMem,
    DomctlMaxVcpus, DomctlSchedCredit, DomctlSchedulerOp, DomctlVcpucontext, DomctlXeniaWriteFrame,
    PAYLOAD_SIZE, Payload,
};
use guest_abi::sysctl::{
    SysctlGetdomaininfolist, SysctlPhysinfo, SysctlReadconsole, SysctlSchedId, SysctlXeniaHeapInfo,
};

use crate::engine::{Input, Target};

pub const TARGET: Target = Target {
    name: "abi",
    about: "domctl/sysctl payload decode/encode round trips and the other ABI decoders",
    run,
    seeds: super::no_seeds,
    max_len: 2 * PAYLOAD_SIZE,
};

fn round_trip<T: Payload + PartialEq + core::fmt::Debug>(raw: &[u8; PAYLOAD_SIZE], short: &[u8]) {
    let n = size_of::<T>();
    let value = T::decode(raw);
    let encoded = value.encode();
    assert_eq!(
        &encoded[..n],
        &raw[..n],
        "{}: bytes lost or changed",
        core::any::type_name::<T>()
    );
    assert!(
        encoded[n..].iter().all(|b| *b == 0),
        "{}: bytes past the structure",
        core::any::type_name::<T>()
    );
    assert_eq!(
        T::decode(&encoded),
        value,
        "{}: decode(encode(x)) != x",
        core::any::type_name::<T>()
    );
    match T::decode_prefix(short) {
        Some(v) => {
            assert!(short.len() >= n, "decode_prefix accepted a short slice");
            let mut padded = [0u8; PAYLOAD_SIZE];
            padded[..n].copy_from_slice(&short[..n]);
            assert_eq!(v, T::decode(&padded), "decode_prefix and decode disagree");
            let mut out = vec![0u8; n];
            assert_eq!(v.encode_prefix(&mut out), Some(()));
            assert_eq!(out, &short[..n], "encode_prefix");
        }
        None => assert!(
            short.len() < n,
            "decode_prefix refused {} bytes for {n}",
            short.len()
        ),
    }
}

fn run(data: &[u8]) {
    let mut input = Input::new(data);
    let mut raw = [0u8; PAYLOAD_SIZE];
    raw.copy_from_slice(&{
        let b = input.bytes(PAYLOAD_SIZE);
        let mut full = [0u8; PAYLOAD_SIZE];
        full[..b.len()].copy_from_slice(b);
        full
    });
    let short = input.rest();
    round_trip::<DomctlXeniaWriteFrame>(&raw, short);
    round_trip::<ArchDomainconfig>(&raw, short);
    round_trip::<DomctlCreatedomain>(&raw, short);
    round_trip::<DomctlGetdomaininfo>(&raw, short);
    round_trip::<DomctlMaxMem>(&raw, short);
    round_trip::<DomctlVcpucontext>(&raw, short);
    round_trip::<DomctlGetvcpuinfo>(&raw, short);
    round_trip::<DomctlMaxVcpus>(&raw, short);
    round_trip::<DomctlSchedCredit>(&raw, short);
    round_trip::<DomctlSchedulerOp>(&raw, short);
    round_trip::<DeviceEntry>(&raw, short);
    round_trip::<SysctlReadconsole>(&raw, short);
    round_trip::<SysctlPhysinfo>(&raw, short);
    round_trip::<SysctlSchedId>(&raw, short);
    round_trip::<SysctlGetdomaininfolist>(&raw, short);
    round_trip::<SysctlXeniaHeapInfo>(&raw, short);
    let word = u32::from_le_bytes([raw[0], raw[1], raw[2], raw[3]]);
    if let Some(r) = guest_abi::sched::ShutdownReason::from_raw(word) {
        assert_eq!(
            guest_abi::sched::ShutdownReason::try_from(word).ok(),
            Some(r)
        );
    }
    if let Ok(e) = guest_abi::errno::Errno::try_from(word as i32) {
        assert_eq!(e as i32, word as i32, "errno round trip");
    }
    let _ = guest_abi::device_page::DevicePage::from_bytes(short);
}
