//! Unpacking a Linux bzImage into the ELF image inside it, as libxc's
//! `xg_dom_bzimageloader.c` does.
//!
//! A bzImage (Linux's `Documentation/arch/x86/boot.rst`, "The Real-Mode Kernel Header") starts
//! with a real-mode setup part of `setup_sects + 1` sectors whose header, at offset `0x1F1`,
//! says where the protected-mode part keeps the compressed kernel: `payload_offset` bytes into
//! it, `payload_length` bytes long (boot protocol 2.08 and later). The payload is the kernel's
//! `vmlinux` ELF image compressed with one of gzip, bzip2, lzma, xz, lzo, lz4 or zstd, followed
//! (Linux's `size_append`) by its uncompressed size as a 32-bit little-endian number.
//!
//! The image is hostile input, as every kernel image is: every offset and size is checked,
//! the output is bounded by [`MAX_UNPACKED`] and allocated fallibly before decompressing into
//! it, and the decompressed size must be exactly the one the trailer announced. Decompression is
//! done by well-kept pure-Rust crates that build without `std` (dom0's kernel links this crate
//! too): `miniz_oxide` (gzip's deflate), `xz4rust` (xz, with the x86 BCJ filter Linux uses),
//! `lzma-rust2` (lzma), `ruzstd` (zstd) and `lz4_flex` (lz4 blocks, in Linux's legacy framing).
//! bzip2 and lzo payloads are recognised and refused by name: no kernel Debian ships uses them.

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

/// Offset of the setup header's `setup_sects` byte.
const SETUP_SECTS: usize = 0x1F1;
/// Offset of the `HdrS` magic.
const HEADER: usize = 0x202;
/// The magic at [`HEADER`].
const HDR_MAGIC: &[u8; 4] = b"HdrS";
/// Offset of the boot protocol version.
const VERSION: usize = 0x206;
/// Offset of `kernel_version`: where the version string is, minus 0x200.
const KERNEL_VERSION: usize = 0x20E;
/// Offset of `payload_offset` (protocol 2.08+).
const PAYLOAD_OFFSET: usize = 0x248;
/// Offset of `payload_length`.
const PAYLOAD_LENGTH: usize = 0x24C;
/// The oldest boot protocol with `payload_offset` (2.08), as libxc requires.
const MIN_VERSION: u16 = 0x0208;
/// Bytes of a setup sector.
const SECTOR: u64 = 512;
/// The longest version string read from the setup part.
const MAX_VERSION_STRING: usize = 256;

/// Largest unpacked kernel accepted. Debian's cloud kernel unpacks to 51 MiB; libxc's
/// default limit is 1 GiB, which dom0's memory could not hold.
pub const MAX_UNPACKED: usize = 256 << 20;

/// Magic of Linux's legacy LZ4 framing (`lz4 -l`), little-endian.
const LZ4_LEGACY_MAGIC: u32 = 0x184C_2102;
/// Largest uncompressed chunk in that framing (Linux's `LZ4_DEFAULT_UNCOMPRESSED_CHUNK_SIZE`).
const LZ4_CHUNK: usize = 8 << 20;
/// Largest dictionary the xz decoder may grow to (Linux's kernels use 32 MiB).
const XZ_MAX_DICT: usize = 64 << 20;

/// The compression of a bzImage's payload, told by its first bytes (libxc's order).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compression {
    /// `1F 8B`.
    Gzip,
    /// `BZh`.
    Bzip2,
    /// `FD 37 7A 58 5A 00` (`.xz`).
    Xz,
    /// `28 B5 2F FD`.
    Zstd,
    /// `5D 00` (`.lzma`, "alone" format).
    Lzma,
    /// `89 4C 5A 4F` (lzop).
    Lzo,
    /// `02 21 4C 18` (LZ4 legacy framing).
    Lz4,
    /// `7F 45 4C 46`: an uncompressed ELF image (`CONFIG_KERNEL_UNCOMPRESSED`).
    None,
}

impl Compression {
    /// The compression of `payload`, if its magic is one of the known ones.
    pub fn detect(payload: &[u8]) -> Option<Compression> {
        const MAGICS: [(&[u8], Compression); 8] = [
            (b"\x1f\x8b", Compression::Gzip),
            (b"BZh", Compression::Bzip2),
            (b"\xfd7zXZ\0", Compression::Xz),
            (b"\x28\xb5\x2f\xfd", Compression::Zstd),
            (b"\x5d\x00", Compression::Lzma),
            (b"\x89LZO", Compression::Lzo),
            (b"\x02\x21\x4c\x18", Compression::Lz4),
            (b"\x7fELF", Compression::None),
        ];
        MAGICS
            .iter()
            .find(|(magic, _)| payload.starts_with(magic))
            .map(|&(_, c)| c)
    }

    /// Its name, as Linux's `CONFIG_KERNEL_*` spells it in lower case.
    pub fn name(self) -> &'static str {
        match self {
            Compression::Gzip => "gzip",
            Compression::Bzip2 => "bzip2",
            Compression::Xz => "xz",
            Compression::Zstd => "zstd",
            Compression::Lzma => "lzma",
            Compression::Lzo => "lzo",
            Compression::Lz4 => "lz4",
            Compression::None => "uncompressed",
        }
    }
}

/// Why a bzImage could not be unpacked. Every variant is the image's fault.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BzImageError {
    /// Shorter than its setup header.
    TooShort,
    /// The boot protocol is older than 2.08 (no `payload_offset`).
    OldProtocol(u16),
    /// The payload lies outside the file.
    PayloadOutside {
        /// Its offset in the file.
        offset: u64,
        /// Its length.
        length: u64,
        /// The file's length.
        file: u64,
    },
    /// The payload's first bytes are no known compression's magic.
    UnknownCompression([u8; 4]),
    /// A compression Xenia's builder does not decompress.
    Unsupported(Compression),
    /// The announced uncompressed size is above [`MAX_UNPACKED`].
    TooLarge(u64),
    /// dom0 has not the memory for the uncompressed image.
    OutOfMemory(u64),
    /// The decompressor failed.
    Corrupt {
        /// The compression.
        compression: Compression,
        /// What went wrong.
        detail: String,
    },
    /// The payload decompressed to another size than its trailer announced.
    SizeMismatch {
        /// The compression.
        compression: Compression,
        /// The trailer's size.
        expected: u64,
        /// What came out.
        got: u64,
    },
}

impl fmt::Display for BzImageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BzImageError::TooShort => f.write_str("bzImage shorter than its setup header"),
            BzImageError::OldProtocol(v) => write!(
                f,
                "bzImage boot protocol {}.{:02} is older than 2.08 (no payload_offset)",
                v >> 8,
                v & 0xFF
            ),
            BzImageError::PayloadOutside {
                offset,
                length,
                file,
            } => write!(
                f,
                "bzImage payload ({length} bytes at {offset:#x}) lies outside the {file}-byte file"
            ),
            BzImageError::UnknownCompression(m) => write!(
                f,
                "bzImage payload starts with {:02x} {:02x} {:02x} {:02x}: no known compression",
                m[0], m[1], m[2], m[3]
            ),
            BzImageError::Unsupported(c) => write!(
                f,
                "bzImage payload is {}-compressed; Xenia's builder unpacks gzip, xz, lzma, zstd \
                 and lz4 (rebuild the kernel with one of those)",
                c.name()
            ),
            BzImageError::TooLarge(n) => write!(
                f,
                "bzImage payload unpacks to {n} bytes, more than the {MAX_UNPACKED} accepted"
            ),
            BzImageError::OutOfMemory(n) => write!(
                f,
                "dom0 has not the {n} bytes of memory to unpack the bzImage (give dom0 more \
                 memory, or use an uncompressed vmlinux)"
            ),
            BzImageError::Corrupt {
                compression,
                detail,
            } => write!(
                f,
                "bzImage payload is not valid {} data: {detail}",
                compression.name()
            ),
            BzImageError::SizeMismatch {
                compression,
                expected,
                got,
            } => write!(
                f,
                "bzImage payload ({}) unpacked to {got} bytes, not the {expected} its trailer says",
                compression.name()
            ),
        }
    }
}

/// A bzImage's header, read and checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BzImage<'a> {
    /// The boot protocol version (`0x020F` is 2.15).
    pub protocol: u16,
    /// The kernel's release (`6.1.0-48-cloud-amd64`): the first word of the version string
    /// the setup header points at, if it has one.
    pub release: Option<String>,
    /// The compression of the payload.
    pub compression: Compression,
    /// The payload, with its size trailer.
    pub payload: &'a [u8],
}

/// Whether `bytes` is a bzImage (it has the `HdrS` magic of the boot protocol).
pub fn is_bzimage(bytes: &[u8]) -> bool {
    bytes.get(HEADER..HEADER + 4) == Some(HDR_MAGIC.as_slice())
}

fn u16_at(bytes: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(bytes.get(at..at + 2)?.try_into().ok()?))
}

fn u32_at(bytes: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(bytes.get(at..at + 4)?.try_into().ok()?))
}

/// Reads and checks the setup header of the bzImage `bytes`.
pub fn parse(bytes: &[u8]) -> Result<BzImage<'_>, BzImageError> {
    let (Some(&setup_sects), Some(protocol), Some(payload_offset), Some(payload_length)) = (
        bytes.get(SETUP_SECTS),
        u16_at(bytes, VERSION),
        u32_at(bytes, PAYLOAD_OFFSET),
        u32_at(bytes, PAYLOAD_LENGTH),
    ) else {
        return Err(BzImageError::TooShort);
    };
    if !is_bzimage(bytes) {
        return Err(BzImageError::TooShort);
    }
    if protocol < MIN_VERSION {
        return Err(BzImageError::OldProtocol(protocol));
    }
    // As libxc: the protected-mode part starts after the setup sectors and the boot sector.
    let offset = (u64::from(setup_sects) + 1) * SECTOR + u64::from(payload_offset);
    let length = u64::from(payload_length);
    let file = bytes.len() as u64;
    let payload = usize::try_from(offset)
        .ok()
        .zip(usize::try_from(offset + length).ok())
        .and_then(|(start, end)| bytes.get(start..end))
        .filter(|p| !p.is_empty())
        .ok_or(BzImageError::PayloadOutside {
            offset,
            length,
            file,
        })?;
    let compression = Compression::detect(payload).ok_or_else(|| {
        let mut magic = [0; 4];
        let n = payload.len().min(4);
        magic[..n].copy_from_slice(&payload[..n]);
        BzImageError::UnknownCompression(magic)
    })?;
    Ok(BzImage {
        protocol,
        release: release(bytes),
        compression,
        payload,
    })
}

/// The first word of the version string `kernel_version` points at (0 means none).
fn release(bytes: &[u8]) -> Option<String> {
    let pointer = u16_at(bytes, KERNEL_VERSION)?;
    if pointer == 0 {
        return None;
    }
    let start = usize::from(pointer) + 0x200;
    let tail = bytes.get(start..)?;
    let text = &tail[..tail.len().min(MAX_VERSION_STRING)];
    let word = text
        .split(|&b| b == 0 || b == b' ')
        .next()
        .filter(|w| !w.is_empty())?;
    word.iter()
        .all(|b| b.is_ascii_graphic())
        .then(|| String::from_utf8_lossy(word).into_owned())
}

/// The ELF image inside the bzImage `bytes`, decompressed.
pub fn unpack(bytes: &[u8]) -> Result<Vec<u8>, BzImageError> {
    let image = parse(bytes)?;
    decompress(image.compression, image.payload)
}

/// Decompresses a payload (with Linux's size trailer) of `compression`.
pub fn decompress(compression: Compression, payload: &[u8]) -> Result<Vec<u8>, BzImageError> {
    if compression == Compression::None {
        return copy(payload);
    }
    let corrupt = |detail: String| BzImageError::Corrupt {
        compression,
        detail,
    };
    let split = payload
        .len()
        .checked_sub(4)
        .ok_or_else(|| corrupt("shorter than its size trailer".into()))?;
    let (data, trailer) = payload.split_at(split);
    let size = u32::from_le_bytes(trailer.try_into().unwrap_or_default());
    let expected = u64::from(size);
    let size = usize::try_from(size)
        .ok()
        .filter(|&s| s <= MAX_UNPACKED)
        .ok_or(BzImageError::TooLarge(expected))?;
    let mut out = Vec::new();
    out.try_reserve_exact(size)
        .map_err(|_| BzImageError::OutOfMemory(expected))?;
    out.resize(size, 0);
    let got = match compression {
        Compression::Gzip => gunzip(data, &mut out),
        Compression::Xz => unxz(data, &mut out),
        Compression::Lzma => unlzma(data, &mut out),
        Compression::Zstd => unzstd(data, &mut out),
        Compression::Lz4 => unlz4(data, &mut out),
        Compression::Bzip2 | Compression::Lzo | Compression::None => {
            return Err(BzImageError::Unsupported(compression));
        }
    }
    .map_err(corrupt)?;
    if got != size {
        return Err(BzImageError::SizeMismatch {
            compression,
            expected,
            got: got as u64,
        });
    }
    Ok(out)
}

/// How much output [`stream`] hands over at a time (LZ4 hands over whole chunks).
const STREAM_BUFFER: usize = 64 << 10;

/// Decompresses a payload (with Linux's size trailer, unless uncompressed) of `compression`
/// piece by piece, in order, through `sink`, which returns `false` to stop early; returns how
/// many bytes came out. Unlike [`decompress`] it never holds the whole image: a builder that
/// only needs the ELF headers and notes stops as soon as it has them. Checksums are not
/// verified here (the stream may stop early); [`decompress`] verifies them.
pub fn stream(
    compression: Compression,
    payload: &[u8],
    sink: &mut dyn FnMut(&[u8]) -> bool,
) -> Result<u64, BzImageError> {
    let corrupt = |detail: String| BzImageError::Corrupt {
        compression,
        detail,
    };
    if compression == Compression::None {
        let mut done = 0u64;
        for chunk in payload.chunks(STREAM_BUFFER) {
            done += chunk.len() as u64;
            if !sink(chunk) {
                break;
            }
        }
        return Ok(done);
    }
    let data = payload
        .len()
        .checked_sub(4)
        .map(|n| &payload[..n])
        .ok_or_else(|| corrupt("shorter than its size trailer".into()))?;
    let mut buf = Vec::new();
    let size = if compression == Compression::Lz4 {
        LZ4_STREAM_BUFFER
    } else {
        STREAM_BUFFER
    };
    buf.try_reserve_exact(size)
        .map_err(|_| BzImageError::OutOfMemory(size as u64))?;
    buf.resize(size, 0);
    let mut total = 0u64;
    // Hands `piece` to the sink, bounding the whole; `false` stops.
    let mut give = |piece: &[u8]| -> Result<bool, String> {
        total += piece.len() as u64;
        if total > MAX_UNPACKED as u64 {
            return Err(alloc::format!("more than {MAX_UNPACKED} bytes"));
        }
        Ok(piece.is_empty() || sink(piece))
    };
    match compression {
        Compression::Gzip => stream_gzip(data, &mut buf, &mut give),
        Compression::Xz => stream_xz(data, &mut buf, &mut give),
        Compression::Lzma => stream_lzma(data, &mut buf, &mut give),
        Compression::Zstd => stream_zstd(data, &mut buf, &mut give),
        Compression::Lz4 => stream_lz4(data, &mut buf, &mut give),
        Compression::Bzip2 | Compression::Lzo | Compression::None => {
            return Err(BzImageError::Unsupported(compression));
        }
    }
    .map_err(corrupt)?;
    Ok(total)
}

/// What the streaming decoders hand their output to.
type Give<'a> = dyn FnMut(&[u8]) -> Result<bool, String> + 'a;

fn stream_gzip(data: &[u8], buf: &mut [u8], give: &mut Give<'_>) -> Result<(), String> {
    use miniz_oxide::inflate::stream::{InflateState, inflate};
    use miniz_oxide::{DataFormat, MZFlush, MZStatus};
    let (body, _) = gzip_parts(data)?;
    let mut state = InflateState::new_boxed(DataFormat::Raw);
    let mut at = 0;
    loop {
        let r = inflate(&mut state, &body[at..], buf, MZFlush::None);
        at += r.bytes_consumed;
        let status = r.status.map_err(|e| alloc::format!("deflate: {e:?}"))?;
        if !give(&buf[..r.bytes_written])? || status == MZStatus::StreamEnd {
            return Ok(());
        }
        if r.bytes_consumed == 0 && r.bytes_written == 0 {
            return Err("truncated deflate stream".into());
        }
    }
}

fn stream_xz(data: &[u8], buf: &mut [u8], give: &mut Give<'_>) -> Result<(), String> {
    let mut decoder = xz4rust::XzDecoder::in_heap_with_alloc_dict_size(1 << 20, XZ_MAX_DICT);
    let mut at = 0;
    loop {
        let r = decoder
            .decode(&data[at..], buf)
            .map_err(|e| alloc::format!("{e:?}"))?;
        at += r.input_consumed();
        let made = r.output_produced();
        if !give(&buf[..made])? {
            return Ok(());
        }
        match r {
            xz4rust::XzNextBlockResult::EndOfStream(..) => return Ok(()),
            xz4rust::XzNextBlockResult::NeedMoreData(consumed, made) => {
                if consumed == 0 && made == 0 {
                    return Err("truncated xz stream".into());
                }
            }
        }
    }
}

fn stream_lzma(data: &[u8], buf: &mut [u8], give: &mut Give<'_>) -> Result<(), String> {
    use lzma_rust2::Read as _;
    let mut reader = lzma_rust2::LzmaReader::new_mem_limit(data, u32::MAX, None)
        .map_err(|e| alloc::format!("{e:?}"))?;
    loop {
        let n = reader.read(buf).map_err(|e| alloc::format!("{e:?}"))?;
        if n == 0 || !give(&buf[..n])? {
            return Ok(());
        }
    }
}

fn stream_zstd(data: &[u8], buf: &mut [u8], give: &mut Give<'_>) -> Result<(), String> {
    use ruzstd::io::Read as _;
    let mut decoder =
        ruzstd::decoding::StreamingDecoder::new(data).map_err(|e| alloc::format!("{e}"))?;
    loop {
        let n = decoder.read(buf).map_err(|e| alloc::format!("{e:?}"))?;
        if n == 0 || !give(&buf[..n])? {
            return Ok(());
        }
    }
}

/// LZ4's window: a match reaches at most this far back.
const LZ4_WINDOW: usize = 64 << 10;
/// [`stream`]'s buffer for LZ4: the window, then as much new output before it is handed over.
const LZ4_STREAM_BUFFER: usize = LZ4_WINDOW + STREAM_BUFFER;

/// Decodes LZ4 blocks sequence by sequence through `buf` ([`LZ4_STREAM_BUFFER`] bytes: the
/// last [`LZ4_WINDOW`] bytes of output kept for matches), so that it never holds a whole
/// 8 MiB chunk: dom0's kernel restarts a Linux domain (`on_reboot`) with a 12 MiB heap.
/// Each chunk is checked as `lz4_flex` checks a block: a match may not reach before the
/// chunk's start, a chunk may not unpack to more than [`LZ4_CHUNK`], nothing may be cut.
fn stream_lz4(data: &[u8], buf: &mut [u8], give: &mut Give<'_>) -> Result<(), String> {
    let mut out = Lz4Out {
        buf,
        pos: 0,
        handed: 0,
        stopped: false,
    };
    lz4_chunks(data, |block| {
        let mut chunk_len = 0usize;
        let mut i = 0usize;
        let byte = |i: &mut usize| -> Result<u8, String> {
            let b = *block
                .get(*i)
                .ok_or_else(|| String::from("block cut short"))?;
            *i += 1;
            Ok(b)
        };
        let length = |i: &mut usize, nibble: u8| -> Result<usize, String> {
            let mut n = usize::from(nibble);
            if nibble == 15 {
                loop {
                    let b = byte(i)?;
                    n = n.checked_add(usize::from(b)).ok_or("length overflow")?;
                    if b != 255 {
                        break;
                    }
                }
            }
            Ok(n)
        };
        loop {
            let token = byte(&mut i)?;
            let lits = length(&mut i, token >> 4)?;
            let end = i.checked_add(lits).filter(|&e| e <= block.len());
            let literal = block
                .get(i..end.ok_or_else(|| String::from("literals past the block"))?)
                .ok_or_else(|| String::from("literals past the block"))?;
            chunk_len += lits;
            if chunk_len > LZ4_CHUNK {
                return Err(alloc::format!(
                    "a chunk unpacks to more than {LZ4_CHUNK} bytes"
                ));
            }
            for &b in literal {
                out.push(b, give)?;
            }
            i += lits;
            if i == block.len() {
                break;
            }
            let lo = byte(&mut i)?;
            let hi = byte(&mut i)?;
            let offset = usize::from(u16::from_le_bytes([lo, hi]));
            let len = length(&mut i, token & 15)?
                .checked_add(4)
                .ok_or("length overflow")?;
            // The chunk's own output so far (blocks are independent in Linux's framing).
            if offset == 0 || offset > chunk_len {
                return Err(alloc::format!(
                    "match offset {offset} outside the block's output"
                ));
            }
            chunk_len += len;
            if chunk_len > LZ4_CHUNK {
                return Err(alloc::format!(
                    "a chunk unpacks to more than {LZ4_CHUNK} bytes"
                ));
            }
            for _ in 0..len {
                let b = out.buf[out.pos - offset];
                out.push(b, give)?;
            }
        }
        out.flush(give)?;
        Ok(!out.stopped)
    })
}

/// [`stream_lz4`]'s output: `buf[..pos]` is the window and the new bytes, `buf[handed..pos]`
/// not handed over yet.
struct Lz4Out<'a> {
    buf: &'a mut [u8],
    pos: usize,
    handed: usize,
    stopped: bool,
}

impl Lz4Out<'_> {
    fn push(&mut self, b: u8, give: &mut Give<'_>) -> Result<(), String> {
        if self.pos == self.buf.len() {
            self.flush(give)?;
            // Keep the window; matches reach at most LZ4_WINDOW back.
            self.buf.copy_within(self.pos - LZ4_WINDOW..self.pos, 0);
            self.pos = LZ4_WINDOW;
            self.handed = LZ4_WINDOW;
        }
        self.buf[self.pos] = b;
        self.pos += 1;
        Ok(())
    }

    fn flush(&mut self, give: &mut Give<'_>) -> Result<(), String> {
        if self.handed < self.pos && !self.stopped && !give(&self.buf[self.handed..self.pos])? {
            self.stopped = true;
        }
        self.handed = self.pos;
        Ok(())
    }
}

/// Walks Linux's legacy LZ4 framing: calls `each` with every compressed block, in order, until
/// it returns `false`.
fn lz4_chunks(
    data: &[u8],
    mut each: impl FnMut(&[u8]) -> Result<bool, String>,
) -> Result<(), String> {
    if u32_at(data, 0) != Some(LZ4_LEGACY_MAGIC) {
        return Err("not LZ4's legacy framing".into());
    }
    let mut at = 4;
    while at < data.len() {
        let chunk = u32_at(data, at).ok_or_else(|| String::from("truncated chunk header"))?;
        at += 4;
        if chunk == LZ4_LEGACY_MAGIC {
            continue;
        }
        let block = usize::try_from(chunk)
            .ok()
            .and_then(|len| data.get(at..at.checked_add(len)?))
            .ok_or_else(|| String::from("chunk past the end of the payload"))?;
        at += block.len();
        if !each(block)? {
            break;
        }
    }
    Ok(())
}

/// An uncompressed payload, copied (it has no trailer: `CONFIG_KERNEL_UNCOMPRESSED` appends
/// none).
fn copy(payload: &[u8]) -> Result<Vec<u8>, BzImageError> {
    if payload.len() > MAX_UNPACKED {
        return Err(BzImageError::TooLarge(payload.len() as u64));
    }
    let mut out = Vec::new();
    out.try_reserve_exact(payload.len())
        .map_err(|_| BzImageError::OutOfMemory(payload.len() as u64))?;
    out.extend_from_slice(payload);
    Ok(out)
}

/// A gzip member (RFC 1952) split into its deflate stream and its 8-byte trailer (CRC-32,
/// size), past the header and its optional fields.
fn gzip_parts(data: &[u8]) -> Result<(&[u8], &[u8]), String> {
    const FHCRC: u8 = 1 << 1;
    const FEXTRA: u8 = 1 << 2;
    const FNAME: u8 = 1 << 3;
    const FCOMMENT: u8 = 1 << 4;
    let short = || String::from("truncated gzip header");
    let header = data.get(..10).ok_or_else(short)?;
    if header[2] != 8 {
        return Err(alloc::format!(
            "compression method {} is not deflate",
            header[2]
        ));
    }
    let flags = header[3];
    let mut at = 10;
    if flags & FEXTRA != 0 {
        let len = u16_at(data, at).ok_or_else(short)?;
        at += 2 + usize::from(len);
    }
    for flag in [FNAME, FCOMMENT] {
        if flags & flag != 0 {
            let end = data
                .get(at..)
                .and_then(|rest| rest.iter().position(|&b| b == 0))
                .ok_or_else(short)?;
            at += end + 1;
        }
    }
    if flags & FHCRC != 0 {
        at += 2;
    }
    let body = data.get(at..).ok_or_else(short)?;
    let split = body
        .len()
        .checked_sub(8)
        .ok_or_else(|| String::from("truncated gzip trailer"))?;
    Ok(body.split_at(split))
}

/// gzip: the deflate stream, then the CRC-32 and size of the trailer checked.
fn gunzip(data: &[u8], out: &mut [u8]) -> Result<usize, String> {
    let (stream, trailer) = gzip_parts(data)?;
    let n = miniz_oxide::inflate::decompress_slice_iter_to_slice(
        out,
        core::iter::once(stream),
        false,
        true,
    )
    .map_err(|status| alloc::format!("deflate: {status:?}"))?;
    let crc = u32_at(trailer, 0).unwrap_or_default();
    let isize = u32_at(trailer, 4).unwrap_or_default();
    if crc32(&out[..n]) != crc {
        return Err("CRC-32 mismatch".into());
    }
    if isize != n as u32 {
        return Err(alloc::format!("gzip trailer says {isize} bytes, got {n}"));
    }
    Ok(n)
}

/// CRC-32 (IEEE 802.3, reflected), as gzip checks it.
fn crc32(data: &[u8]) -> u32 {
    let mut table = [0u32; 256];
    for (i, entry) in table.iter_mut().enumerate() {
        let mut c = i as u32;
        for _ in 0..8 {
            c = if c & 1 != 0 {
                0xEDB8_8320 ^ (c >> 1)
            } else {
                c >> 1
            };
        }
        *entry = c;
    }
    !data.iter().fold(!0u32, |c, &b| {
        table[((c ^ u32::from(b)) & 0xFF) as usize] ^ (c >> 8)
    })
}

/// xz, with the filters Linux's `xz_wrap.sh` uses (x86 BCJ, LZMA2) and its CRC-32 check.
fn unxz(data: &[u8], out: &mut [u8]) -> Result<usize, String> {
    let mut decoder = xz4rust::XzDecoder::in_heap_with_alloc_dict_size(1 << 20, XZ_MAX_DICT);
    let (mut input, mut produced) = (0, 0);
    loop {
        let result = decoder
            .decode(&data[input..], &mut out[produced..])
            .map_err(|e| alloc::format!("{e:?}"))?;
        input += result.input_consumed();
        produced += result.output_produced();
        match result {
            xz4rust::XzNextBlockResult::EndOfStream(..) => return Ok(produced),
            xz4rust::XzNextBlockResult::NeedMoreData(consumed, made) => {
                if consumed == 0 && made == 0 {
                    return Err(if produced == out.len() {
                        "more data than the size trailer announced".into()
                    } else {
                        "truncated xz stream".into()
                    });
                }
            }
        }
    }
}

/// lzma ("alone" format: properties, dictionary size, 64-bit size, then the stream).
fn unlzma(data: &[u8], out: &mut [u8]) -> Result<usize, String> {
    use lzma_rust2::Read as _;
    let mut reader = lzma_rust2::LzmaReader::new_mem_limit(data, u32::MAX, None)
        .map_err(|e| alloc::format!("{e:?}"))?;
    let mut produced = 0;
    while produced < out.len() {
        let n = reader
            .read(&mut out[produced..])
            .map_err(|e| alloc::format!("{e:?}"))?;
        if n == 0 {
            break;
        }
        produced += n;
    }
    // Nothing may follow what the trailer announced.
    let mut extra = [0u8; 1];
    if produced == out.len()
        && reader
            .read(&mut extra)
            .map_err(|e| alloc::format!("{e:?}"))?
            > 0
    {
        return Err("more data than the size trailer announced".into());
    }
    Ok(produced)
}

/// zstd: one or more frames.
fn unzstd(data: &[u8], out: &mut [u8]) -> Result<usize, String> {
    ruzstd::decoding::FrameDecoder::new()
        .decode_all(data, out)
        .map_err(|e| alloc::format!("{e}"))
}

/// LZ4 in Linux's legacy framing: the magic, then chunks of a 32-bit compressed size and an
/// LZ4 block of at most 8 MiB uncompressed; a repeated magic is skipped (libxc's
/// `xc_try_lz4_decode`).
fn unlz4(data: &[u8], out: &mut [u8]) -> Result<usize, String> {
    let mut produced = 0;
    lz4_chunks(data, |block| {
        let room = out.len() - produced;
        let dest = &mut out[produced..produced + room.min(LZ4_CHUNK)];
        produced +=
            lz4_flex::block::decompress_into(block, dest).map_err(|e| alloc::format!("{e}"))?;
        Ok(true)
    })?;
    Ok(produced)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use alloc::vec;

    /// A bzImage around `payload` (with its trailer already): two setup sectors, protocol
    /// 2.15, a version string.
    pub(crate) fn bzimage(payload: &[u8]) -> Vec<u8> {
        let mut image = vec![0u8; 1024];
        image[SETUP_SECTS] = 1;
        image[HEADER..HEADER + 4].copy_from_slice(HDR_MAGIC);
        image[VERSION..VERSION + 2].copy_from_slice(&0x020Fu16.to_le_bytes());
        image[KERNEL_VERSION..KERNEL_VERSION + 2].copy_from_slice(&0x100u16.to_le_bytes());
        let version = b"6.1.0-99-test-amd64 (someone@example) #1 SMP\0";
        image[0x300..0x300 + version.len()].copy_from_slice(version);
        image[PAYLOAD_OFFSET..PAYLOAD_OFFSET + 4].copy_from_slice(&0u32.to_le_bytes());
        image[PAYLOAD_LENGTH..PAYLOAD_LENGTH + 4]
            .copy_from_slice(&(payload.len() as u32).to_le_bytes());
        image.extend_from_slice(payload);
        image
    }

    /// Something that looks like a kernel to a compressor: text with repeats, then noise.
    fn kernel_like(len: usize) -> Vec<u8> {
        let mut out = b"\x7fELF\x02\x01\x01".to_vec();
        let mut x = 0x1234_5678u32;
        while out.len() < len {
            if out.len() % 4096 < 2048 {
                out.extend_from_slice(b"mov %rax, %rbx; call xen_hypercall; ");
            } else {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                out.push(x as u8);
            }
        }
        out.truncate(len);
        out
    }

    /// A compressor of the tests.
    type Compressor = fn(&[u8]) -> Vec<u8>;

    pub(crate) fn with_size(mut compressed: Vec<u8>, original: &[u8]) -> Vec<u8> {
        compressed.extend_from_slice(&(original.len() as u32).to_le_bytes());
        compressed
    }

    pub(crate) fn gzip(data: &[u8]) -> Vec<u8> {
        let mut out = vec![0x1f, 0x8b, 8, 1 << 3, 0, 0, 0, 0, 0, 3];
        out.extend_from_slice(b"vmlinux.bin\0");
        out.extend(miniz_oxide::deflate::compress_to_vec(data, 6));
        out.extend_from_slice(&crc32(data).to_le_bytes());
        out.extend_from_slice(&(data.len() as u32).to_le_bytes());
        out
    }

    fn xz(data: &[u8]) -> Vec<u8> {
        use lzma_rust2::Write as _;
        // As Linux's scripts/xz_wrap.sh: CRC-32 check, the x86 BCJ filter, then LZMA2.
        let mut options = lzma_rust2::XzOptions::with_preset(6);
        options.set_check_sum_type(lzma_rust2::CheckType::Crc32);
        options.prepend_pre_filter(lzma_rust2::FilterType::BcjX86, 0);
        let mut w = lzma_rust2::XzWriter::new(Vec::new(), options).unwrap();
        w.write_all(data).unwrap();
        w.finish().unwrap()
    }

    fn lzma(data: &[u8]) -> Vec<u8> {
        use lzma_rust2::Write as _;
        let options = lzma_rust2::LzmaOptions::with_preset(6);
        // Size unknown, end marker: what `lzma -9` writes from a pipe, as Linux's build does.
        let mut w = lzma_rust2::LzmaWriter::new_use_header(Vec::new(), &options, None).unwrap();
        w.write_all(data).unwrap();
        w.finish().unwrap()
    }

    fn zstd(data: &[u8]) -> Vec<u8> {
        ruzstd::encoding::compress_to_vec(data, ruzstd::encoding::CompressionLevel::Fastest)
    }

    /// Linux's legacy LZ4 framing (`lz4 -l`): 8 MiB chunks.
    fn lz4(data: &[u8]) -> Vec<u8> {
        let mut out = LZ4_LEGACY_MAGIC.to_le_bytes().to_vec();
        for chunk in data.chunks(LZ4_CHUNK) {
            let block = lz4_flex::block::compress(chunk);
            out.extend_from_slice(&(block.len() as u32).to_le_bytes());
            out.extend(block);
        }
        out
    }

    #[test]
    fn every_supported_compression_unpacks() {
        let data = kernel_like(300_000);
        let cases: [(Compression, Compressor); 5] = [
            (Compression::Gzip, gzip),
            (Compression::Xz, xz),
            (Compression::Lzma, lzma),
            (Compression::Zstd, zstd),
            (Compression::Lz4, lz4),
        ];
        for (compression, compress) in cases {
            let image = bzimage(&with_size(compress(&data), &data));
            let parsed = parse(&image).unwrap();
            assert_eq!(parsed.compression, compression);
            assert_eq!(parsed.release.as_deref(), Some("6.1.0-99-test-amd64"));
            assert_eq!(parsed.protocol, 0x020F);
            let out = unpack(&image).unwrap_or_else(|e| panic!("{compression:?}: {e}"));
            assert!(out == data, "{compression:?}: the bytes differ");
        }
        // Uncompressed: the payload is the ELF image itself.
        assert_eq!(unpack(&bzimage(&data)).unwrap(), data);
    }

    #[test]
    fn streaming_gives_the_same_bytes_and_stops_when_told() {
        let data = kernel_like(300_000);
        let cases: [(Compression, Compressor); 5] = [
            (Compression::Gzip, gzip),
            (Compression::Xz, xz),
            (Compression::Lzma, lzma),
            (Compression::Zstd, zstd),
            (Compression::Lz4, lz4),
        ];
        for (compression, compress) in cases {
            let payload = with_size(compress(&data), &data);
            let mut out = Vec::new();
            let n = stream(compression, &payload, &mut |piece| {
                out.extend_from_slice(piece);
                true
            })
            .unwrap();
            assert_eq!(n, data.len() as u64, "{compression:?}");
            assert!(out == data, "{compression:?}: the bytes differ");
            // A sink that has what it wants stops the stream.
            let mut seen = 0u64;
            let n = stream(compression, &payload, &mut |piece| {
                seen += piece.len() as u64;
                seen < 100_000
            })
            .unwrap();
            // (LZ4 hands over whole 8 MiB chunks: this one is a single chunk.)
            if compression != Compression::Lz4 {
                assert!(n < data.len() as u64, "{compression:?}: {n}");
            }
        }
        let mut out = Vec::new();
        stream(Compression::None, &data, &mut |piece| {
            out.extend_from_slice(piece);
            true
        })
        .unwrap();
        assert!(out == data);
        // Garbage is an error, not a panic.
        assert!(stream(Compression::Xz, b"\xfd7zXZ\0garbage!", &mut |_| true).is_err());
        assert!(
            stream(
                Compression::Lz4,
                b"\x02\x21\x4c\x18\xff\xff\xff\x7fxx1234",
                &mut |_| true
            )
            .is_err()
        );
    }

    #[test]
    fn lz4_across_chunks() {
        let data = kernel_like(LZ4_CHUNK + 100_000);
        let image = bzimage(&with_size(lz4(&data), &data));
        assert!(unpack(&image).unwrap() == data);
        let mut out = Vec::new();
        let payload = parse(&image).unwrap().payload;
        stream(Compression::Lz4, payload, &mut |piece| {
            out.extend_from_slice(piece);
            true
        })
        .unwrap();
        assert!(out == data);
    }

    #[test]
    fn corrupt_payloads_are_errors() {
        let data = kernel_like(100_000);
        // The first two carry a checksum.
        let all: [Compressor; 5] = [gzip, xz, lzma, zstd, lz4];
        for (i, compress) in all.into_iter().enumerate() {
            let good = with_size(compress(&data), &data);
            // A wrong size trailer.
            let mut short = good.clone();
            let n = short.len();
            short[n - 4..].copy_from_slice(&(data.len() as u32 - 1).to_le_bytes());
            assert!(unpack(&bzimage(&short)).is_err());
            // Flipped bytes in the middle.
            let mut flipped = good.clone();
            let mid = flipped.len() / 2;
            for b in &mut flipped[mid..mid + 16] {
                *b ^= 0x5A;
            }
            // Only gzip and xz carry a checksum (Linux's lzma, zstd and lz4 payloads have
            // none): the others must not panic, and may unpack to other bytes.
            let result = unpack(&bzimage(&flipped));
            if i < 2 {
                assert!(result.is_err(), "{i}");
            }
            // Cut short.
            let mut cut = good[..good.len() / 2].to_vec();
            cut.extend_from_slice(&(data.len() as u32).to_le_bytes());
            assert!(unpack(&bzimage(&cut)).is_err());
        }
    }

    #[test]
    fn hostile_headers_are_errors() {
        let data = kernel_like(1000);
        let good = bzimage(&with_size(gzip(&data), &data));
        assert!(is_bzimage(&good));
        assert!(!is_bzimage(b"\x7fELF"));
        assert_eq!(parse(&good[..0x240]), Err(BzImageError::TooShort));
        let mut old = good.clone();
        old[VERSION..VERSION + 2].copy_from_slice(&0x0207u16.to_le_bytes());
        assert_eq!(parse(&old), Err(BzImageError::OldProtocol(0x0207)));
        let mut outside = good.clone();
        outside[PAYLOAD_LENGTH..PAYLOAD_LENGTH + 4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(
            parse(&outside),
            Err(BzImageError::PayloadOutside { .. })
        ));
        let mut huge = with_size(gzip(&data), &data);
        let n = huge.len();
        huge[n - 4..].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(
            unpack(&bzimage(&huge)),
            Err(BzImageError::TooLarge(u64::from(u32::MAX)))
        );
        let unknown = bzimage(b"QQQQ and more");
        assert_eq!(
            parse(&unknown),
            Err(BzImageError::UnknownCompression(*b"QQQQ"))
        );
        for (magic, c) in [
            (&b"BZh91AY"[..], Compression::Bzip2),
            (b"\x89LZO\0", Compression::Lzo),
        ] {
            let image = bzimage(&[magic, &[0; 16]].concat());
            assert_eq!(unpack(&image), Err(BzImageError::Unsupported(c)));
            assert!(unpack(&image).unwrap_err().to_string().contains("gzip, xz"));
        }
    }

    #[test]
    fn crc32_known_value() {
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
    }

    /// Debian's kernel, when `cargo xtask build` fetched it (`target/debian/`).
    #[cfg(not(target_os = "none"))]
    pub(crate) fn debian_vmlinuz() -> Option<std::vec::Vec<u8>> {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()?
            .join("target/debian/root");
        for package in std::fs::read_dir(&root).ok()?.flatten() {
            let boot = package.path().join("boot");
            let Ok(files) = std::fs::read_dir(&boot) else {
                continue;
            };
            for file in files.flatten() {
                let name = file.file_name();
                if name.to_string_lossy().starts_with("vmlinuz-") {
                    return std::fs::read(file.path()).ok();
                }
            }
        }
        None
    }

    #[test]
    fn debian_kernel_unpacks() {
        let Some(vmlinuz) = debian_vmlinuz() else {
            std::eprintln!(
                "skipped: no Debian kernel under target/debian (cargo xtask build fetches it)"
            );
            return;
        };
        let parsed = parse(&vmlinuz).unwrap();
        let release = parsed.release.clone().unwrap();
        assert!(release.ends_with("-cloud-amd64"), "{release}");
        let elf = unpack(&vmlinuz).unwrap();
        assert_eq!(&elf[..4], b"\x7fELF");
    }
}
