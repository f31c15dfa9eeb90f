//! `bzimage`: the domain builder's bzImage unpacker and kernel inspection (issue 18), fed
//! hostile images: a setup header with random fields around a payload that starts with one of
//! the compressions' magics (or anything), then random bytes. Nothing may panic; an unpacked
//! image has exactly the size its trailer announced, and the streamed output
//! (`bzimage::stream`) is the same bytes whenever both succeed.

use dom0_tools::builder::{self, bzimage};

use crate::engine::{Input, Target};

pub const TARGET: Target = Target {
    name: "bzimage",
    about: "bzImage unpacking and Xen PV kernel inspection: no panics, sizes as announced",
    run,
    seeds: crate::targets::no_seeds,
    max_len: 4096,
};

/// Magics of the payloads the unpacker knows (gzip, xz, zstd, lzma, lz4, ELF, bzip2, lzo).
const MAGICS: [&[u8]; 8] = [
    b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\x03",
    b"\xfd7zXZ\x00\x00\x01",
    b"\x28\xb5\x2f\xfd",
    b"\x5d\x00\x00\x80\x00\xff\xff\xff\xff\xff\xff\xff\xff",
    b"\x02\x21\x4c\x18",
    b"\x7fELF\x02\x01\x01\x00",
    b"BZh9",
    b"\x89LZO\x00",
];

/// Largest size trailer the target writes: keeps each run's allocation small.
const MAX_TRAILER: u32 = 1 << 16;

fn run(data: &[u8]) {
    let mut input = Input::new(data);
    let image = if input.bool() {
        structured(&mut input)
    } else {
        input.rest().to_vec()
    };
    check(&image);
}

/// A bzImage header (protocol 2.08 to 2.15, random `setup_sects`, offsets and version
/// pointer) around a payload with a known magic, random bytes and a bounded size trailer.
fn structured(input: &mut Input) -> Vec<u8> {
    let setup_sects = input.below(4) as u8;
    let mut image = vec![0u8; (usize::from(setup_sects) + 1) * 512];
    if image.len() < 0x250 {
        image.resize(0x250, 0);
    }
    image[0x1F1] = setup_sects;
    image[0x202..0x206].copy_from_slice(b"HdrS");
    let version = 0x0206 + input.below(10) as u16;
    image[0x206..0x208].copy_from_slice(&version.to_le_bytes());
    let pointer = if input.bool() { input.u16() } else { 0x100 };
    image[0x20E..0x210].copy_from_slice(&pointer.to_le_bytes());
    let mut payload = input.pick(&MAGICS).to_vec();
    let len = input.below(512) as usize;
    payload.extend_from_slice(input.bytes(len));
    let size = input.u32() % (MAX_TRAILER + 1);
    payload.extend_from_slice(&size.to_le_bytes());
    let start = image.len() as u32 - (u32::from(setup_sects) + 1) * 512;
    let offset = if input.below(8) == 0 {
        input.u32()
    } else {
        start
    };
    let length = if input.below(8) == 0 {
        input.u32()
    } else {
        payload.len() as u32
    };
    image[0x248..0x24C].copy_from_slice(&offset.to_le_bytes());
    image[0x24C..0x250].copy_from_slice(&length.to_le_bytes());
    image.extend(payload);
    image
}

fn check(image: &[u8]) {
    // Inspection streams with bounded buffers whatever the trailer says.
    let _ = builder::inspect(image);
    let Ok(bz) = bzimage::parse(image) else {
        return;
    };
    let trailer = bz
        .payload
        .len()
        .checked_sub(4)
        .map(|n| u32::from_le_bytes(bz.payload[n..].try_into().unwrap()));
    // A large trailer would make `unpack` allocate up to 256 MiB per run: only raw inputs can
    // say so, and the size check itself is a unit test.
    if trailer.is_some_and(|t| t > MAX_TRAILER) {
        return;
    }
    let whole = bzimage::unpack(image);
    let mut streamed = Vec::new();
    let result = bzimage::stream(bz.compression, bz.payload, &mut |piece| {
        streamed.extend_from_slice(piece);
        streamed.len() <= MAX_TRAILER as usize * 2
    });
    if let Ok(bytes) = whole {
        if bz.compression != bzimage::Compression::None {
            assert_eq!(Some(bytes.len() as u32), trailer, "size as announced");
        }
        if result.is_ok() {
            assert!(streamed == bytes, "streamed and whole images differ");
        }
    }
}
