//! `cargo xtask test`'s first step: a lint that keeps infallible allocation out of the
//! hypervisor's guest-reachable paths (issue 10, DESIGN §2: "no infallible allocation on a
//! path a guest can reach").
//!
//! Rust's `Box::new`, `vec!`, `Vec::push` and friends abort (here: panic the hypervisor)
//! when the heap is exhausted, and a guest can drive the hypervisor to exhaust it. In the
//! files that handle hypercalls and the structures they grow, every such call must either be
//! replaced by a fallible one (`try_reserve`, fixed buffers) or carry a `// alloc: <why it
//! cannot be exhausted by a guest>` comment on its line or the line above (room reserved
//! just before, dom0-only path, a bound that makes it part of the domain's charge...). The
//! lint reads the source, so it runs in a second, before anything is built; test modules
//! (after `#[cfg(test)]`) are not checked.

use std::path::Path;

/// The files whose non-test code a guest's hypercalls reach.
pub const GUEST_PATHS: &[&str] = &[
    "hypervisor/src/guest",
    "hypervisor/core/src/event.rs",
    "hypervisor/core/src/grant.rs",
    "hypervisor/src/domain/lifecycle.rs",
    "hypervisor/src/domain/mod.rs",
    "hypervisor/core/src/mm/frame_table.rs",
    "hypervisor/core/src/mm/walk.rs",
    "hypervisor/core/src/mm/exchange.rs",
    "hypervisor/core/src/pirq.rs",
    "hypervisor/core/src/privop.rs",
    "hypervisor/core/src/runstate.rs",
    "hypervisor/core/src/hcnames.rs",
    "hypervisor/src/mm/iomem.rs",
    "hypervisor/src/arch/x86_64/ioapic.rs",
    "hypervisor/src/console.rs",
];

/// Calls that allocate and panic when the heap is exhausted.
pub const INFALLIBLE: &[&str] = &[
    "Box::new(",
    "vec![",
    ".push(",
    ".push_back(",
    ".push_front(",
    ".to_vec()",
    "format!(",
    ".collect(",
    ".collect::<",
    "String::from(",
    ".to_string()",
    ".to_owned()",
    "Vec::with_capacity(",
    ".insert(",
    ".extend(",
    ".extend_from_slice(",
    ".resize(",
];

/// The marker that explains why an allocation is acceptable.
pub const ALLOW: &str = "// alloc:";
/// Markers around a whole item whose allocations a guest cannot reach (dom0's checks, boot):
/// `// alloc-block: <reason>` ... `// end alloc-block`.
pub const BLOCK_BEGIN: &str = "// alloc-block:";
/// See [`BLOCK_BEGIN`].
pub const BLOCK_END: &str = "// end alloc-block";

/// Lines above an allocation where its `// alloc:` may stand (a statement split over lines).
const ALLOW_REACH: usize = 2;

/// The findings in one file's text: `(line number, line)` for each infallible allocation
/// without an `// alloc:` justification on its line or the [`ALLOW_REACH`] lines above, up
/// to the first `#[cfg(test)]`.
pub fn check_text(text: &str) -> Vec<(usize, String)> {
    let lines: Vec<&str> = text.lines().collect();
    let mut found = Vec::new();
    let mut in_block = false;
    for (i, line) in lines.iter().enumerate() {
        if line.trim_start().starts_with("#[cfg(test)]") {
            break;
        }
        if line.contains(BLOCK_BEGIN) {
            in_block = true;
        }
        if line.contains(BLOCK_END) {
            in_block = false;
        }
        let code = line.split("//").next().unwrap_or("");
        let hit = INFALLIBLE.iter().any(|p| code.contains(p));
        let allowed = in_block
            || lines[i.saturating_sub(ALLOW_REACH)..=i]
                .iter()
                .any(|l| l.contains(ALLOW));
        if hit && !allowed {
            found.push((i + 1, line.trim().to_string()));
        }
    }
    found
}

/// Runs the lint over [`GUEST_PATHS`] under `root`; `Err` lists every finding.
pub fn run(root: &Path) -> Result<(), String> {
    let mut files = Vec::new();
    for p in GUEST_PATHS {
        let path = root.join(p);
        if path.is_dir() {
            let mut entries: Vec<_> = std::fs::read_dir(&path)
                .map_err(|e| format!("cannot read {}: {e}", path.display()))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "rs"))
                .collect();
            entries.sort();
            files.extend(entries);
        } else {
            files.push(path);
        }
    }
    let mut report = String::new();
    for file in &files {
        let text = std::fs::read_to_string(file)
            .map_err(|e| format!("cannot read {}: {e}", file.display()))?;
        for (line, code) in check_text(&text) {
            let rel = file.strip_prefix(root).unwrap_or(file);
            report.push_str(&format!("\n  {}:{line}: {code}", rel.display()));
        }
    }
    if report.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "infallible allocation on a guest-reachable path (use try_reserve or a fixed \
             buffer, or say why it is safe with `{ALLOW} <reason>` on the line or above):{report}"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_unjustified_allocations_and_accepts_justified_ones() {
        let text = "fn f(v: &mut Vec<u8>) {\n    v.push(1);\n    // alloc: room reserved above\n    v.push(2);\n    let s = alloc::format!(\"x\"); // alloc: dom0 only\n    // v.push(3) in a comment is fine\n    let a = 1;\n    let b = 2;\n    let c = 3;\n    v.push(4);\n}\n#[cfg(test)]\nmod tests { fn g() { let _ = vec![1]; } }\n";
        assert_eq!(
            check_text(text),
            vec![
                (2, "v.push(1);".to_string()),
                (10, "v.push(4);".to_string())
            ]
        );
        let block = "// alloc-block: boot only\nfn a() { let _ = vec![1]; }\n// end alloc-block\nfn b() { let _ = vec![2]; }\n";
        assert_eq!(
            check_text(block),
            vec![(4, "fn b() { let _ = vec![2]; }".to_string())]
        );
    }

    #[test]
    fn the_hypervisor_passes() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
        run(root).unwrap();
    }
}
