//! The `kv` demo's store on its disk, and its console commands.
//!
//! **On disk.** Slot `i` (0..[`SLOTS`]) is 512-byte sector `1 + i` and holds at most one
//! key and its value: magic `KV01`, key length, value length, the key, the value, and an
//! FNV-1a checksum of everything before it. A slot whose magic or checksum is wrong is
//! empty (a fresh disk is all empty). A `put` rewrites one sector and flushes, so an
//! answered `put` survives the domain; sector writes are the unit the device does whole.
//! Sector 0 is left alone.

/// Slots (and so keys) the store holds.
pub const SLOTS: u64 = 256;
/// Longest key.
pub const KEY_MAX: usize = 64;
/// Longest value.
pub const VALUE_MAX: usize = 400;
/// Bytes of a slot.
pub const SLOT_BYTES: usize = 512;

const MAGIC: &[u8; 4] = b"KV01";
const KEY_AT: usize = 8;
const VALUE_AT: usize = KEY_AT + KEY_MAX;
const SUM_AT: usize = SLOT_BYTES - 4;

/// The disk sector of slot `i`.
pub const fn slot_sector(i: u64) -> u64 {
    1 + i
}

fn fnv1a(bytes: &[u8]) -> u32 {
    let mut h: u32 = 0x811C_9DC5;
    for &b in bytes {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    h
}

/// Why a key or value cannot be stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KvError {
    /// Empty key, or longer than [`KEY_MAX`], or with a space.
    BadKey,
    /// Longer than [`VALUE_MAX`].
    ValueTooLong,
}

/// The slot's bytes for `key` = `value`.
pub fn encode(key: &[u8], value: &[u8]) -> Result<[u8; SLOT_BYTES], KvError> {
    if key.is_empty() || key.len() > KEY_MAX || key.contains(&b' ') {
        return Err(KvError::BadKey);
    }
    if value.len() > VALUE_MAX {
        return Err(KvError::ValueTooLong);
    }
    let mut s = [0u8; SLOT_BYTES];
    s[..4].copy_from_slice(MAGIC);
    s[4] = key.len() as u8;
    s[6..8].copy_from_slice(&(value.len() as u16).to_le_bytes());
    s[KEY_AT..KEY_AT + key.len()].copy_from_slice(key);
    s[VALUE_AT..VALUE_AT + value.len()].copy_from_slice(value);
    let sum = fnv1a(&s[..SUM_AT]);
    s[SUM_AT..].copy_from_slice(&sum.to_le_bytes());
    Ok(s)
}

/// The key and value a slot holds, `None` for an empty (or damaged) slot.
pub fn decode(s: &[u8; SLOT_BYTES]) -> Option<(&[u8], &[u8])> {
    if &s[..4] != MAGIC {
        return None;
    }
    let sum = u32::from_le_bytes([s[SUM_AT], s[SUM_AT + 1], s[SUM_AT + 2], s[SUM_AT + 3]]);
    if sum != fnv1a(&s[..SUM_AT]) {
        return None;
    }
    let klen = usize::from(s[4]);
    let vlen = usize::from(u16::from_le_bytes([s[6], s[7]]));
    if klen == 0 || klen > KEY_MAX || vlen > VALUE_MAX {
        return None;
    }
    Some((&s[KEY_AT..KEY_AT + klen], &s[VALUE_AT..VALUE_AT + vlen]))
}

/// A console command.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Command<'a> {
    /// `put <key> <value...>`.
    Put(&'a [u8], &'a [u8]),
    /// `get <key>`.
    Get(&'a [u8]),
    /// `del <key>`.
    Del(&'a [u8]),
    /// `list`.
    List,
    /// `help`, or an empty line.
    Help,
    /// Anything else.
    Unknown,
}

/// Reads a typed line: the verb, the key, and for `put` the rest of the line as the value.
pub fn parse(line: &[u8]) -> Command<'_> {
    let line = trim(line);
    let (verb, rest) = split_word(line);
    let (key, rest2) = split_word(rest);
    match verb {
        b"put" if !key.is_empty() => Command::Put(key, trim(rest2)),
        b"get" if !key.is_empty() && rest2.is_empty() => Command::Get(key),
        b"del" if !key.is_empty() && rest2.is_empty() => Command::Del(key),
        b"list" if key.is_empty() => Command::List,
        b"help" | b"" => Command::Help,
        _ => Command::Unknown,
    }
}

fn trim(b: &[u8]) -> &[u8] {
    let start = b.iter().position(|&c| c != b' ').unwrap_or(b.len());
    let end = b.iter().rposition(|&c| c != b' ').map_or(start, |e| e + 1);
    &b[start..end.max(start)]
}

fn split_word(b: &[u8]) -> (&[u8], &[u8]) {
    let b = trim(b);
    match b.iter().position(|&c| c == b' ') {
        Some(i) => (&b[..i], trim(&b[i..])),
        None => (b, &[]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_round_trip() {
        let s = encode(b"colour", b"dark blue").unwrap();
        assert_eq!(decode(&s), Some((&b"colour"[..], &b"dark blue"[..])));
        let s = encode(b"k", b"").unwrap();
        assert_eq!(decode(&s), Some((&b"k"[..], &b""[..])));
        let long = [b'v'; VALUE_MAX];
        assert!(encode(b"k", &long).is_ok());
        assert_eq!(
            encode(b"k", &[0; VALUE_MAX + 1]),
            Err(KvError::ValueTooLong)
        );
        assert_eq!(encode(b"", b"v"), Err(KvError::BadKey));
        assert_eq!(encode(b"a b", b"v"), Err(KvError::BadKey));
        assert_eq!(encode(&[b'k'; KEY_MAX + 1], b"v"), Err(KvError::BadKey));
    }

    #[test]
    fn damaged_or_empty_slots_are_empty() {
        assert_eq!(decode(&[0; SLOT_BYTES]), None);
        let mut s = encode(b"key", b"value").unwrap();
        s[VALUE_AT] ^= 1;
        assert_eq!(decode(&s), None);
        let mut s = encode(b"key", b"value").unwrap();
        s[4] = 0;
        assert_eq!(decode(&s), None);
    }

    #[test]
    fn commands() {
        assert_eq!(
            parse(b"put colour dark blue "),
            Command::Put(b"colour", b"dark blue")
        );
        assert_eq!(parse(b"  get colour"), Command::Get(b"colour"));
        assert_eq!(parse(b"del colour"), Command::Del(b"colour"));
        assert_eq!(parse(b"list"), Command::List);
        assert_eq!(parse(b""), Command::Help);
        assert_eq!(parse(b"get"), Command::Unknown);
        assert_eq!(parse(b"get a b"), Command::Unknown);
        assert_eq!(parse(b"frob"), Command::Unknown);
        assert_eq!(parse(b"put k"), Command::Put(b"k", b""));
        assert_eq!(slot_sector(0), 1);
    }
}
