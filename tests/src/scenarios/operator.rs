//! Issue 14, the operator's dom0: what an operator at the `dom0# ` prompt of the default image
//! sees on the serial line. Every scenario here is named `operator_*`
//! (`cargo xtask test operator_` runs them all).

use crate::runner::Context;
use crate::scenarios::xl::{PROMPT, boot, run};

/// dom0's output reaches the serial line with `\r\n` line ends, never `\r\r\n` (dom0's
/// terminal driver makes `\r\n` of a program's `\n`; the hypervisor passes dom0's terminal
/// output on byte for byte), and the hypervisor's own log lines end in `\r\n` too.
pub fn serial_crlf(ctx: &Context) -> Result<(), String> {
    let mut vm = boot(ctx)?;
    let listed = run(&mut vm, "xl list")?;
    if !listed.contains("Domain-0") {
        return Err(format!("`xl list` said {listed:?}"));
    }
    run(&mut vm, "help")?;
    let raw = vm.raw_serial();
    vm.kill();
    let text = String::from_utf8_lossy(&raw);
    // From dom0's first prompt (before it, GRUB and the boot log).
    let Some(from) = text.find(PROMPT) else {
        return Err("no prompt in the raw serial output".into());
    };
    let dom0 = &text[from..];
    if let Some(at) = dom0.find("\r\r\n") {
        let start = at.saturating_sub(60);
        return Err(format!(
            "`\\r\\r\\n` on the serial line: {:?}",
            &dom0[start..(at + 3).min(dom0.len())]
        ));
    }
    let bare = dom0
        .char_indices()
        .filter(|&(i, c)| c == '\n' && !dom0[..i].ends_with('\r'))
        .count();
    if bare > 0 {
        return Err(format!(
            "{bare} line ends after dom0's prompt without `\\r`: {:?}",
            &dom0[..dom0.len().min(400)]
        ));
    }
    let lines = dom0.matches("\r\n").count();
    if lines < 5 {
        return Err(format!("only {lines} lines after the prompt: {dom0:?}"));
    }
    ctx.note(format!(
        "{lines} lines after dom0's prompt, every one ending in \\r\\n"
    ));
    Ok(())
}
