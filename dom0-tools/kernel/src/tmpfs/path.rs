//! Walking a path a component at a time, through symbolic links, as Linux's `fs/namei.c`
//! does: the limits it applies and the order of its checks.
//!
//! The walk holds a stack of path pieces still to read: the path given, and above it the
//! target of each symbolic link being followed, with what followed the link left below
//! it. A piece boundary separates components as a slash does. Every byte is read once, so
//! a walk costs at most the path and [`MAXSYMLINKS`] link targets.

use alloc::vec::Vec;

use super::Ino;
use crate::files::errno::{EINVAL, ELOOP, ENAMETOOLONG, ENOENT};

/// The longest path, its terminating NUL included (Linux's `PATH_MAX`,
/// `include/uapi/linux/limits.h`): a path must be shorter.
pub const PATH_MAX: usize = 4096;
/// The longest name of a directory entry (Linux's `NAME_MAX`).
pub const NAME_MAX: usize = 255;
/// Symbolic links one walk follows before `ELOOP` (Linux's `MAXSYMLINKS`,
/// `include/linux/namei.h`).
pub const MAXSYMLINKS: usize = 40;

/// A path component.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Step<'s> {
    /// `.`.
    Dot,
    /// `..`.
    DotDot,
    /// Any other name.
    Name(&'s [u8]),
}

impl<'s> Step<'s> {
    fn of(component: &'s [u8]) -> Self {
        match component {
            b"." => Self::Dot,
            b".." => Self::DotDot,
            name => Self::Name(name),
        }
    }
}

/// A walk in progress.
#[derive(Debug)]
pub(super) struct Walk<'s> {
    /// Pieces still to read, the current one last.
    pieces: Vec<&'s [u8]>,
    /// The directory the next component is looked up in.
    pub dir: Ino,
    /// Symbolic links followed so far.
    links: usize,
    /// Whether a slash followed the component last returned.
    trailing: bool,
}

impl<'s> Walk<'s> {
    /// A walk of `path`, from `root` if it is absolute and from `start` otherwise.
    /// An empty path is `ENOENT`, one of [`PATH_MAX`] bytes or more `ENAMETOOLONG`, and
    /// one holding a NUL byte (which no C string can) `EINVAL`.
    pub fn new(path: &'s [u8], start: Ino, root: Ino) -> Result<Self, i64> {
        match path {
            [] => Err(-ENOENT),
            _ if path.len() >= PATH_MAX => Err(-ENAMETOOLONG),
            _ if path.contains(&0) => Err(-EINVAL),
            _ => Ok(Self {
                pieces: alloc::vec![path],
                dir: if path[0] == b'/' { root } else { start },
                links: 0,
                trailing: false,
            }),
        }
    }

    /// The next component, and whether it is the last of the path (nothing but slashes
    /// follows it); `None` when none is left (a path of slashes only, or a link to `/`).
    pub fn next(&mut self) -> Option<(Step<'s>, bool)> {
        self.skip_slashes();
        let top = self.pieces.last_mut()?;
        let piece: &'s [u8] = top;
        let end = piece.iter().position(|&b| b == b'/').unwrap_or(piece.len());
        let (component, rest) = piece.split_at(end);
        *top = rest;
        self.trailing = self.skip_slashes();
        Some((Step::of(component), self.pieces.is_empty()))
    }

    /// Whether a slash followed the last component (`dir/`): it must then be a directory,
    /// and a symbolic link there is followed.
    pub fn trailing(&self) -> bool {
        self.trailing
    }

    /// Goes on through the target of the symbolic link just met, from `root` if the target
    /// is absolute and from the link's directory otherwise: `ELOOP` past [`MAXSYMLINKS`].
    pub fn follow(&mut self, target: &'s [u8], root: Ino) -> Result<(), i64> {
        self.links += 1;
        if self.links > MAXSYMLINKS {
            return Err(-ELOOP);
        }
        if target.is_empty() {
            return Err(-ENOENT);
        }
        if self.pieces.is_empty() && self.trailing {
            // `link/` as the last component: the slash applies to what the link names.
            self.pieces.push(b"/");
        }
        if target[0] == b'/' {
            self.dir = root;
        }
        self.pieces.push(target);
        Ok(())
    }

    /// Drops leading slashes and finished pieces; returns whether there were slashes.
    fn skip_slashes(&mut self) -> bool {
        let mut skipped = false;
        while let Some(top) = self.pieces.last_mut() {
            let piece: &'s [u8] = top;
            let n = piece.iter().take_while(|&&b| b == b'/').count();
            skipped |= n > 0;
            *top = &piece[n..];
            if !top.is_empty() {
                break;
            }
            self.pieces.pop();
        }
        skipped
    }
}

/// Checks a name for a new or looked-up entry: `ENAMETOOLONG` past [`NAME_MAX`] bytes.
pub(super) fn check_name(name: &[u8]) -> Result<(), i64> {
    if name.len() > NAME_MAX {
        Err(-ENAMETOOLONG)
    } else {
        Ok(())
    }
}
