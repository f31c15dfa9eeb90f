//! `cargo xtask stats`: how much code each crate of the workspace has and how much of it is
//! `unsafe`, and the same for the trusted computing base (TCB: [`TCB`], the code that runs in
//! ring 0 or decides what a guest starts with). docs/architecture.md ("Counts") quotes its
//! output.
//!
//! How it counts, from the source alone (no build, no `cargo metadata`):
//! - the files are every `.rs` under the crate's `src/` (so not `tests/`, `benches/`,
//!   `examples/` or `build.rs`; a crate nested in another's directory is its own crate);
//! - comments (`//`, `/* */`, doc comments) and blank lines are not lines of code, and a
//!   line with code and a comment is one line of code;
//! - test code is not counted: an item under `#[cfg(test)]` (a `mod tests { .. }`, a
//!   function, a `use`) is skipped to the end of its braces or its `;`, a file whose module
//!   is declared `#[cfg(test)] mod name;` is skipped whole, and so is a file that opens with
//!   `#![cfg(test)]`;
//! - the keyword `unsafe` outside comments and string literals is counted by what follows it:
//!   `{` is a block, `fn` (also after `extern "C"`) a function, `impl` or `trait` an impl, and
//!   anything else (`extern { .. }` blocks of foreign items, `#[unsafe(no_mangle)]`) "other".
//!
//! It is a lexer, not a parser: a `cfg(test)` spelled otherwise (`cfg(all(test, ..))`) or a
//! macro that expands to `unsafe` is not seen. Both are absent from the workspace today.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// The crates whose code the hypervisor's guarantees rest on: the hypervisor itself, its
/// core, the ABI it decodes guests' requests with, and the start-of-day layout both domain
/// builders follow.
pub const TCB: &[&str] = &[
    "xenia-hypervisor",
    "xenia-core",
    "guest-abi",
    "xenia-pvboot",
];

/// The counts of one file or crate.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    /// Non-test lines of code.
    pub lines: usize,
    /// `unsafe { .. }` blocks.
    pub blocks: usize,
    /// `unsafe fn`s (with or without an ABI).
    pub fns: usize,
    /// `unsafe impl`s and `unsafe trait`s.
    pub impls: usize,
    /// Other uses of the keyword: `unsafe extern` blocks, `#[unsafe(..)]` attributes.
    pub other: usize,
}

impl Counts {
    fn add(&mut self, o: Counts) {
        self.lines += o.lines;
        self.blocks += o.blocks;
        self.fns += o.fns;
        self.impls += o.impls;
        self.other += o.other;
    }

    /// Every use of the keyword.
    pub fn unsafe_total(&self) -> usize {
        self.blocks + self.fns + self.impls + self.other
    }
}

/// `text` with comments blanked out (newlines kept) and, if `strings`, the contents of string
/// and character literals blanked too (their quotes kept).
fn blank(text: &str, strings: bool) -> Vec<u8> {
    let b = text.as_bytes();
    let mut out = b.to_vec();
    let mut i = 0;
    let wipe = |out: &mut Vec<u8>, from: usize, to: usize| {
        for c in &mut out[from..to] {
            if *c != b'\n' {
                *c = b' ';
            }
        }
    };
    while i < b.len() {
        match b[i] {
            b'/' if b.get(i + 1) == Some(&b'/') => {
                let end = b[i..]
                    .iter()
                    .position(|&c| c == b'\n')
                    .map_or(b.len(), |p| i + p);
                wipe(&mut out, i, end);
                i = end;
            }
            b'/' if b.get(i + 1) == Some(&b'*') => {
                let (mut depth, mut j) = (1, i + 2);
                while j < b.len() && depth > 0 {
                    if b[j] == b'/' && b.get(j + 1) == Some(&b'*') {
                        depth += 1;
                        j += 2;
                    } else if b[j] == b'*' && b.get(j + 1) == Some(&b'/') {
                        depth -= 1;
                        j += 2;
                    } else {
                        j += 1;
                    }
                }
                wipe(&mut out, i, j);
                i = j;
            }
            // Raw strings: r"..", r#".."#, br#".."#.
            b'r' if (i == 0
                || !is_ident(b[i - 1])
                || (b[i - 1] == b'b' && (i < 2 || !is_ident(b[i - 2]))))
                && matches!(b.get(i + 1), Some(b'"' | b'#')) =>
            {
                let hashes = b[i + 1..].iter().take_while(|&&c| c == b'#').count();
                if b.get(i + 1 + hashes) != Some(&b'"') {
                    i += 1;
                    continue;
                }
                let open = i + 1 + hashes;
                let mut close = String::from("\"");
                close.push_str(&"#".repeat(hashes));
                let end = text[open + 1..]
                    .find(&close)
                    .map_or(b.len(), |p| open + 1 + p);
                if strings {
                    wipe(&mut out, open + 1, end);
                }
                i = (end + close.len()).min(b.len());
            }
            b'"' => {
                let mut j = i + 1;
                while j < b.len() && b[j] != b'"' {
                    j += if b[j] == b'\\' { 2 } else { 1 };
                }
                let end = j.min(b.len());
                if strings {
                    wipe(&mut out, i + 1, end);
                }
                i = end + 1;
            }
            // A character literal ('x', '\n', '\u{..}'), not a lifetime ('a).
            b'\'' => {
                let end = if b.get(i + 1) == Some(&b'\\') {
                    b[i + 2..]
                        .iter()
                        .position(|&c| c == b'\'')
                        .map(|p| i + 2 + p)
                } else if b.get(i + 2) == Some(&b'\'') {
                    Some(i + 2)
                } else {
                    // A multi-byte character, or a lifetime / label.
                    text[i + 1..]
                        .chars()
                        .next()
                        .filter(|c| c.len_utf8() > 1)
                        .map(|c| i + 1 + c.len_utf8())
                        .filter(|&e| b.get(e) == Some(&b'\''))
                };
                match end {
                    Some(e) => {
                        if strings {
                            wipe(&mut out, i + 1, e);
                        }
                        i = e + 1;
                    }
                    None => i += 1,
                }
            }
            _ => i += 1,
        }
    }
    out
}

fn is_ident(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_'
}

/// The end (exclusive) of the item that starts at or after `from` in `code` (comments and
/// strings blanked): after its first `;` at bracket depth 0, or after the `}` that closes its
/// first `{`. Also whether the item is `mod name;`, and the name.
fn item_end(code: &[u8], from: usize) -> (usize, Option<String>) {
    let mut depth = 0i32;
    let mut i = from;
    // Further attributes of the same item come first; `#[..]` brackets count as depth.
    while i < code.len() {
        match code[i] {
            b'(' | b'[' => depth += 1,
            b')' | b']' => depth -= 1,
            b';' if depth == 0 => {
                let item = String::from_utf8_lossy(&code[from..i]);
                let words: Vec<&str> = item.split_whitespace().collect();
                let module = match words.as_slice() {
                    [.., "mod", name] => Some(name.to_string()),
                    _ => None,
                };
                return (i + 1, module);
            }
            b'{' if depth == 0 => {
                let mut braces = 0i32;
                while i < code.len() {
                    match code[i] {
                        b'{' => braces += 1,
                        b'}' => {
                            braces -= 1;
                            if braces == 0 {
                                return (i + 1, None);
                            }
                        }
                        _ => {}
                    }
                    i += 1;
                }
                return (code.len(), None);
            }
            _ => {}
        }
        i += 1;
    }
    (code.len(), None)
}

/// The counts of one file's text, and the modules it declares `#[cfg(test)] mod name;`.
pub fn count_text(text: &str) -> (Counts, Vec<String>) {
    let mut code = blank(text, false);
    let mut structure = blank(text, true);
    let mut test_mods = Vec::new();
    let s = String::from_utf8_lossy(&structure).into_owned();
    if s.trim_start().starts_with("#![cfg(test)]") {
        return (Counts::default(), test_mods);
    }
    // Blank out every `#[cfg(test)]` item.
    let mut from = 0;
    while let Some(p) = s[from..].find("#[cfg(test)]") {
        let at = from + p;
        let (end, module) = item_end(&structure, at + "#[cfg(test)]".len());
        test_mods.extend(module);
        for buf in [&mut code, &mut structure] {
            for c in &mut buf[at..end] {
                if *c != b'\n' {
                    *c = b' ';
                }
            }
        }
        from = end;
    }
    let mut counts = Counts {
        lines: code
            .split(|&c| c == b'\n')
            .filter(|l| l.iter().any(|c| !c.is_ascii_whitespace()))
            .count(),
        ..Counts::default()
    };
    let mut i = 0;
    while let Some(p) = find_word(&structure[i..], b"unsafe") {
        let after = i + p + b"unsafe".len();
        let (word, end) = next_token(&structure, after);
        let kind = if word == "extern" {
            // `extern "C"` (the ABI string is blanked to its quotes), then `fn` or `{`.
            let mut j = end;
            let (quote, q) = next_token(&structure, j);
            if quote == "\"" {
                j = q;
                while j < structure.len() && structure[j] != b'"' {
                    j += 1;
                }
                j += 1;
            }
            match next_token(&structure, j).0.as_str() {
                "fn" => "fn".to_string(),
                _ => "extern".to_string(),
            }
        } else {
            word
        };
        match kind.as_str() {
            "{" => counts.blocks += 1,
            "fn" => counts.fns += 1,
            "impl" | "trait" => counts.impls += 1,
            _ => counts.other += 1,
        }
        i = after;
    }
    (counts, test_mods)
}

/// The position of `word` in `hay` as a whole identifier.
fn find_word(hay: &[u8], word: &[u8]) -> Option<usize> {
    let mut from = 0;
    while from + word.len() <= hay.len() {
        let p = hay[from..].windows(word.len()).position(|w| w == word)? + from;
        let before = p == 0 || !is_ident(hay[p - 1]);
        let after = hay.get(p + word.len()).is_none_or(|&c| !is_ident(c));
        if before && after {
            return Some(p);
        }
        from = p + 1;
    }
    None
}

/// The token at or after `at` (an identifier or one character) and the position after it.
fn next_token(code: &[u8], at: usize) -> (String, usize) {
    let mut i = at;
    while i < code.len() && code[i].is_ascii_whitespace() {
        i += 1;
    }
    let start = i;
    if i < code.len() && is_ident(code[i]) {
        while i < code.len() && is_ident(code[i]) {
            i += 1;
        }
    } else if i < code.len() {
        i += 1;
    }
    (String::from_utf8_lossy(&code[start..i]).into_owned(), i)
}

/// The `.rs` files under `dir`, sorted.
fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) -> Result<(), String> {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| format!("cannot read {}: {e}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            rust_files(&p, out)?;
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
    Ok(())
}

/// Where a module `name` declared in `file` lives: `name.rs` or `name/` beside `file` if it
/// is a `lib.rs`, `main.rs` or `mod.rs`, else in the directory named after `file`.
fn module_paths(file: &Path, name: &str) -> [PathBuf; 2] {
    let dir = file.parent().unwrap_or(Path::new(""));
    let stem = file.file_stem().and_then(|s| s.to_str()).unwrap_or("");
    let base = if matches!(stem, "lib" | "main" | "mod") {
        dir.to_path_buf()
    } else {
        dir.join(stem)
    };
    [base.join(format!("{name}.rs")), base.join(name)]
}

/// The counts of a crate whose sources are under `src`, and per file.
pub fn count_crate(src: &Path) -> Result<(Counts, Vec<(PathBuf, Counts)>), String> {
    let mut files = Vec::new();
    rust_files(src, &mut files)?;
    let mut excluded: BTreeSet<PathBuf> = BTreeSet::new();
    let mut per_file = Vec::new();
    let mut total = Counts::default();
    for file in &files {
        if excluded.iter().any(|e| file.starts_with(e)) {
            continue;
        }
        let text = std::fs::read_to_string(file)
            .map_err(|e| format!("cannot read {}: {e}", file.display()))?;
        let (counts, test_mods) = count_text(&text);
        for m in test_mods {
            excluded.extend(module_paths(file, &m));
        }
        total.add(counts);
        per_file.push((file.clone(), counts));
    }
    // A test module declared by a file read after its own file was counted: take it back.
    per_file.retain(|(f, c)| {
        let test = excluded.iter().any(|e| f.starts_with(e));
        if test {
            total.lines -= c.lines;
            total.blocks -= c.blocks;
            total.fns -= c.fns;
            total.impls -= c.impls;
            total.other -= c.other;
        }
        !test
    });
    Ok((total, per_file))
}

/// The workspace's crates as (package name, directory), from the root `Cargo.toml`'s
/// `members` and each member's `name`.
fn members(root: &Path) -> Result<Vec<(String, PathBuf)>, String> {
    let read = |p: &Path| {
        std::fs::read_to_string(p).map_err(|e| format!("cannot read {}: {e}", p.display()))
    };
    let manifest = read(&root.join("Cargo.toml"))?;
    let list = manifest
        .split_once("members = [")
        .and_then(|(_, rest)| rest.split_once(']'))
        .ok_or("no `members = [..]` in Cargo.toml")?
        .0;
    let mut out = Vec::new();
    for dir in list
        .split(',')
        .map(|d| d.trim().trim_matches('"'))
        .filter(|d| !d.is_empty())
    {
        let member = read(&root.join(dir).join("Cargo.toml"))?;
        let name = member
            .lines()
            .find_map(|l| l.trim().strip_prefix("name = \""))
            .and_then(|l| l.split('"').next())
            .ok_or_else(|| format!("{dir}/Cargo.toml has no package name"))?;
        out.push((name.to_string(), root.join(dir)));
    }
    Ok(out)
}

fn row(name: &str, c: &Counts, width: usize) -> String {
    format!(
        "{name:<width$} {:>7} {:>7} {:>5} {:>5} {:>5} {:>6}\n",
        c.lines,
        c.unsafe_total(),
        c.blocks,
        c.fns,
        c.impls,
        c.other
    )
}

/// `cargo xtask stats [--files]`: the table for the workspace at `root`, and with `files`
/// every file with `unsafe` in it.
pub fn run(root: &Path, files: bool) -> Result<(), String> {
    let mut crates = Vec::new();
    let mut tcb = Counts::default();
    let mut listing = Vec::new();
    for (name, dir) in members(root)? {
        let (counts, per_file) = count_crate(&dir.join("src"))?;
        if TCB.contains(&name.as_str()) {
            tcb.add(counts);
        }
        for (f, c) in per_file.into_iter().filter(|(_, c)| c.unsafe_total() > 0) {
            let rel = f.strip_prefix(root).unwrap_or(&f).display().to_string();
            listing.push((rel, c));
        }
        crates.push((name, counts));
    }
    let tcb_name = format!("TCB ({} crates)", TCB.len());
    let width = crates
        .iter()
        .map(|c| c.0.len())
        .chain([tcb_name.len()])
        .max()
        .unwrap_or(0);
    let header = |first: &str, width: usize| {
        format!(
            "{first:<width$} {:>7} {:>7} {:>5} {:>5} {:>5} {:>6}\n",
            "lines", "unsafe", "block", "fn", "impl", "other"
        )
    };
    let mut out = header("crate", width);
    for (name, c) in &crates {
        out.push_str(&row(name, c, width));
    }
    out.push_str(&row(&tcb_name, &tcb, width));
    out.push_str(&format!("TCB: {}\n", TCB.join(" + ")));
    if files {
        let width = listing.iter().map(|l| l.0.len()).max().unwrap_or(0);
        out.push_str(&format!(
            "\nfiles with unsafe code:\n{}",
            header("file", width)
        ));
        for (f, c) in &listing {
            out.push_str(&row(f, c, width));
        }
    }
    print!("{out}");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = r##"//! Crate docs mention unsafe { } and are not code.
#![forbid(unsafe_op_in_unsafe_fn)]

/* A block comment: unsafe fn f() {}
   /* nested */ still a comment */
unsafe extern "C" {
    static X: u8;
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn entry() {
    // SAFETY: a comment, then a block.
    let s = "unsafe { in a string }";
    let r = r#"unsafe impl"#;
    let c = '{';
    unsafe { core::hint::unreachable_unchecked() }
}

unsafe impl Send for T {}
pub unsafe trait Pod {}
fn lifetimes<'a>(x: &'a str) -> &'a str { x }

#[cfg(test)]
mod tests {
    fn g() { unsafe { h() } }
}

#[cfg(test)]
mod more;
"##;

    #[test]
    fn counts_a_sample() {
        let (c, mods) = count_text(SAMPLE);
        assert_eq!(mods, vec!["more".to_string()]);
        assert_eq!(
            c,
            Counts {
                // `#![forbid..]`, the extern block (3), the attribute, `entry` (6), the impl,
                // the trait, `lifetimes`.
                lines: 1 + 3 + 1 + 6 + 1 + 1 + 1,
                blocks: 1,
                fns: 1,
                impls: 2,
                // The extern block and the attribute; `unsafe_op_in_unsafe_fn` is one word.
                other: 2,
            }
        );
    }

    #[test]
    fn a_file_of_tests_counts_nothing() {
        assert_eq!(
            count_text("#![cfg(test)]\nfn f() { unsafe {} }\n").0,
            Counts::default()
        );
    }

    #[test]
    fn test_modules_in_their_own_files_are_left_out() {
        assert_eq!(
            module_paths(Path::new("src/a/mod.rs"), "tests"),
            [
                PathBuf::from("src/a/tests.rs"),
                PathBuf::from("src/a/tests")
            ]
        );
        assert_eq!(
            module_paths(Path::new("src/verbs.rs"), "tests"),
            [
                PathBuf::from("src/verbs/tests.rs"),
                PathBuf::from("src/verbs/tests")
            ]
        );
    }

    #[test]
    fn the_workspace_has_the_tcb_crates() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
        let names: Vec<String> = members(root).unwrap().into_iter().map(|m| m.0).collect();
        for t in TCB {
            assert!(
                names.iter().any(|n| n == t),
                "{t} is not a workspace member"
            );
        }
        let (core, _) = count_crate(&root.join("hypervisor/core/src")).unwrap();
        assert_eq!(core.unsafe_total(), 0, "xenia-core forbids unsafe code");
        assert!(core.lines > 0);
    }
}
