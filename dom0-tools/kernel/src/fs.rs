//! dom0's files: the initrd (cpio newc, GRUB's second module), read-only, parsed once.

use alloc::vec::Vec;

use spin::Once;
use xenia_dom0::cpio::{self, Archive, CpioError};

static ARCHIVE: Once<Archive<'static>> = Once::new();

/// Parses the initrd. An archive that does not parse leaves dom0 with no files (the error
/// says why); an absent initrd is an empty archive.
pub fn init(bytes: &'static [u8]) -> Result<usize, CpioError> {
    let archive = if bytes.is_empty() {
        empty()
    } else {
        Archive::parse(bytes)?
    };
    Ok(ARCHIVE.call_once(|| archive).len())
}

fn empty() -> Archive<'static> {
    let bytes: &'static [u8] = alloc::boxed::Box::leak(cpio::build(&[]).into_boxed_slice());
    Archive::parse(bytes).expect("an empty archive parses")
}

/// The archive (empty before [`init`]).
pub fn archive() -> &'static Archive<'static> {
    ARCHIVE.call_once(empty)
}

/// The contents of regular file `path`, following symbolic links (at most 8: busybox's
/// applets are links to it).
pub fn file(path: &str) -> Option<&'static [u8]> {
    let mut path = alloc::string::String::from(path);
    for _ in 0..=8 {
        let e = archive().lookup(&path)?;
        let Some(target) = e.link_target() else {
            return e.is_file().then_some(e.data);
        };
        path = if target.starts_with('/') {
            target.into()
        } else {
            let dir = path.rsplit_once('/').map_or("", |(d, _)| d);
            alloc::format!("{dir}/{target}")
        };
    }
    None
}

/// The programs in `/bin`.
pub fn programs() -> Vec<&'static str> {
    archive()
        .list("/bin")
        .unwrap_or_default()
        .into_iter()
        .filter(|n| file(&alloc::format!("/bin/{n}")).is_some())
        .collect()
}
