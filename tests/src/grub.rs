//! The GRUB configuration of a Xenia image: rendering `boot/grub.cfg.in` and quoting command
//! lines so that the kernel and each module receive exactly the text asked for.
//!
//! # How GRUB passes command lines
//!
//! GRUB splits a `multiboot2 FILE ARGS...` or `module2 FILE ARGS...` line into words with its
//! shell-like script syntax (quotes removed, `$variables` expanded), drops `FILE`, and builds the
//! multiboot2 command line by joining the remaining words with single spaces, wrapping a word that
//! contains a space in double quotes. (GRUB 2.06 also puts a backslash before every `"`, `'` and
//! `\` inside a word; later versions do not.)
//!
//! This module works backwards from the command line the kernel should see. [`grub_args`] splits
//! it into the words GRUB must be given and [`quote_word`] protects each word from GRUB's script
//! syntax, so that [`loader_cmdline`] (GRUB's join rule) of the result is the original text. The
//! command lines that survive every GRUB version unchanged are words separated by single spaces,
//! where a word is either free of quotes and backslashes (`console=hvc0`, `x=$y;z`) or one whole
//! double-quoted word with a space inside (`"foo=a b"`). Anything else is rejected with an
//! explanation rather than passed on altered.

/// The template, `boot/grub.cfg.in`, compiled in so the image can never lack it.
pub const TEMPLATE: &str = include_str!("../../boot/grub.cfg.in");

/// Placeholder for the hypervisor's command line, inline on the `multiboot2` line.
pub const HV_OPTIONS_PLACEHOLDER: &str = "@HV_OPTIONS@";

/// Placeholder, alone on its line, for zero or more `module2` lines (each gets its indentation).
pub const MODULES_PLACEHOLDER: &str = "@MODULES@";

/// One `module2` line of the configuration.
#[derive(Clone, Copy, Debug)]
pub struct ModuleEntry<'a> {
    /// The module's file name in the image's `/boot/` directory.
    pub file_name: &'a str,
    /// The command line the module should receive (see the [module docs](self)).
    pub cmdline: &'a str,
}

/// Renders `template` into a `grub.cfg`: `hv_options` is the command line the hypervisor should
/// receive and `modules` become one `module2 /boot/<file> <cmdline>` line each, in order.
pub fn render(
    template: &str,
    hv_options: &str,
    modules: &[ModuleEntry<'_>],
) -> Result<String, String> {
    for placeholder in [HV_OPTIONS_PLACEHOLDER, MODULES_PLACEHOLDER] {
        let count = template.matches(placeholder).count();
        if count != 1 {
            return Err(format!(
                "the GRUB template must contain {placeholder} exactly once, found it {count} times"
            ));
        }
    }
    let hv_words = grub_words(hv_options).map_err(|e| format!("hypervisor options: {e}"))?;
    let mut module_lines = Vec::with_capacity(modules.len());
    for module in modules {
        check_boot_file_name(module.file_name)?;
        let words =
            grub_words(module.cmdline).map_err(|e| format!("module {}: {e}", module.file_name))?;
        module_lines.push(join_words(
            &format!("module2 /boot/{}", module.file_name),
            &words,
        ));
    }

    let mut out = String::with_capacity(template.len() + 128);
    for line in template.lines() {
        if line.contains(MODULES_PLACEHOLDER) {
            if line.trim() != MODULES_PLACEHOLDER {
                return Err(format!(
                    "in the GRUB template, {MODULES_PLACEHOLDER} must stand alone on its line: {line:?}"
                ));
            }
            let indent = &line[..line.len() - line.trim_start().len()];
            for module_line in &module_lines {
                out.push_str(indent);
                out.push_str(module_line);
                out.push('\n');
            }
        } else if line.contains(HV_OPTIONS_PLACEHOLDER) {
            out.push_str(line.replace(HV_OPTIONS_PLACEHOLDER, &hv_words).trim_end());
            out.push('\n');
        } else {
            out.push_str(line);
            out.push('\n');
        }
    }
    Ok(out)
}

/// `cfg` with `lines` inserted before its `multiboot2` line, with that line's indentation
/// (`cfg` unchanged when there are none).
pub fn insert_before_multiboot2(cfg: &str, lines: &[String]) -> String {
    let mut out =
        String::with_capacity(cfg.len() + lines.iter().map(|l| l.len() + 8).sum::<usize>());
    for line in cfg.lines() {
        if line.trim_start().starts_with("multiboot2 ") {
            let indent = &line[..line.len() - line.trim_start().len()];
            for extra in lines {
                out.push_str(indent);
                out.push_str(extra);
                out.push('\n');
            }
        }
        out.push_str(line);
        out.push('\n');
    }
    out
}

/// The template's `set gfxpayload=` line.
const GFXPAYLOAD_LINE: &str = "set gfxpayload=";

/// `cfg` with its `set gfxpayload=` line set to `mode` (`text`, `auto`, `1024x768x32`, ...).
pub fn set_gfxpayload(cfg: &str, mode: &str) -> Result<String, String> {
    if mode.is_empty()
        || !mode
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, 'x' | ',' | ';'))
    {
        return Err(format!(
            "gfxpayload {mode:?}: expected a GRUB video mode such as 1024x768x32"
        ));
    }
    if cfg
        .lines()
        .filter(|l| l.trim_start().starts_with(GFXPAYLOAD_LINE))
        .count()
        != 1
    {
        return Err("the GRUB template must set gfxpayload exactly once".to_string());
    }
    let mut out = String::with_capacity(cfg.len() + mode.len());
    for line in cfg.lines() {
        if line.trim_start().starts_with(GFXPAYLOAD_LINE) {
            out.push_str(&line[..line.len() - line.trim_start().len()]);
            out.push_str(GFXPAYLOAD_LINE);
            out.push_str(mode);
        } else {
            out.push_str(line);
        }
        out.push('\n');
    }
    Ok(out)
}

/// `prefix` followed by `words` (if any), separated by a space.
fn join_words(prefix: &str, words: &str) -> String {
    if words.is_empty() {
        prefix.to_string()
    } else {
        format!("{prefix} {words}")
    }
}

/// Checks that `name` can be a file in the image's `/boot/` and appear unquoted in `grub.cfg`.
pub fn check_boot_file_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if !ok {
        return Err(format!(
            "{name:?} cannot be a file name in the image's /boot/: use only letters, digits, \
             '.', '_' and '-', and do not start with '.'"
        ));
    }
    if name == "grub" || name == crate::HYPERVISOR_ARTIFACT {
        return Err(format!(
            "{name:?} is taken in the image's /boot/; rename the module file"
        ));
    }
    Ok(())
}

/// The GRUB script text (quoted words separated by spaces) that makes GRUB pass `cmdline`.
pub fn grub_words(cmdline: &str) -> Result<String, String> {
    let args = grub_args(cmdline)?;
    Ok(args
        .iter()
        .map(|a| quote_word(a))
        .collect::<Vec<_>>()
        .join(" "))
}

/// Splits the command line a kernel should receive into the words GRUB must be given; see the
/// [module docs](self) for what is accepted. The inverse of [`loader_cmdline`].
pub fn grub_args(cmdline: &str) -> Result<Vec<String>, String> {
    let bad = |why: String| -> Result<Vec<String>, String> {
        Err(format!(
            "command line {cmdline:?} cannot go through GRUB unchanged: {why}"
        ))
    };
    if let Some(c) = cmdline.chars().find(|c| c.is_control()) {
        return bad(format!("it contains the control character {c:?}"));
    }
    if let Some(c) = cmdline.chars().find(|c| matches!(c, '\'' | '\\')) {
        return bad(format!(
            "it contains {c:?}, which GRUB passes on with an added backslash (depending on \
             its version); leave single quotes and backslashes out"
        ));
    }
    let mut args = Vec::new();
    let mut rest = cmdline;
    while !rest.is_empty() {
        if rest.starts_with(' ') {
            return bad(
                "separate words with exactly one space, with none at the start or the end \
                 (GRUB drops extra spaces)"
                    .into(),
            );
        }
        // The word as a reader would see it: up to the next space outside double quotes.
        let mut quoted = false;
        let len = rest
            .char_indices()
            .find(|&(_, c)| {
                quoted ^= c == '"';
                c == ' ' && !quoted
            })
            .map_or(rest.len(), |(i, _)| i);
        if quoted {
            return bad("a double quote is not closed".into());
        }
        let (token, after) = rest.split_at(len);
        let bare = token.replace('"', "");
        let word = match token.strip_prefix('"').and_then(|t| t.strip_suffix('"')) {
            Some(content) if !content.contains('"') => {
                if !content.contains(' ') {
                    return bad(format!(
                        "GRUB puts quotes only around words that contain a space: write \
                         {content} instead of {token}"
                    ));
                }
                content
            }
            _ if token.contains('"') => {
                let suggestion = if bare.contains(' ') {
                    format!("\"{bare}\"")
                } else {
                    bare
                };
                return bad(format!(
                    "GRUB can only quote a whole word: write {suggestion} instead of {token}"
                ));
            }
            _ => token,
        };
        args.push(word.to_string());
        rest = match after.strip_prefix(' ') {
            Some("") => {
                return bad(
                    "separate words with exactly one space, with none at the start or the end \
                     (GRUB drops extra spaces)"
                        .into(),
                );
            }
            Some(next) => next,
            None => after,
        };
    }
    Ok(args)
}

/// Quotes `word` for GRUB's script syntax so that GRUB sees exactly `word`: plain words stay as
/// they are, anything else goes in single quotes (inside which GRUB expands nothing).
pub fn quote_word(word: &str) -> String {
    let plain = |c: char| {
        c.is_ascii_alphanumeric()
            || matches!(c, '_' | '-' | '.' | ',' | ':' | '/' | '=' | '+' | '@')
    };
    if !word.is_empty() && word.chars().all(plain) {
        word.to_string()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

/// The command line GRUB builds from the words after the file name: joined with single spaces,
/// each word that contains a space wrapped in double quotes. (For words without quotes and
/// backslashes, which is all [`grub_args`] produces, every GRUB version agrees.)
pub fn loader_cmdline(args: &[String]) -> String {
    args.iter()
        .map(|a| {
            if a.contains(' ') {
                format!("\"{a}\"")
            } else {
                a.clone()
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_go_before_multiboot2() {
        let cfg = "a\nmenuentry x {\n    multiboot2 /boot/xenia.elf\n    boot\n}\n";
        let out = insert_before_multiboot2(cfg, &["acpi /boot/t.aml".to_string()]);
        assert_eq!(
            out,
            "a\nmenuentry x {\n    acpi /boot/t.aml\n    multiboot2 /boot/xenia.elf\n    boot\n}\n"
        );
        assert_eq!(insert_before_multiboot2(cfg, &[]), cfg);
    }

    /// A model of how GRUB's script parser splits a command's arguments into words: blanks
    /// separate words, '...' is literal, "..." and bare text honour backslash escapes, `$name`
    /// expands (to nothing here, which is enough to show it was not protected).
    fn grub_split(line: &str) -> Vec<String> {
        let mut words = Vec::new();
        let mut chars = line.chars().peekable();
        loop {
            while chars.peek() == Some(&' ') {
                chars.next();
            }
            if chars.peek().is_none() {
                return words;
            }
            let mut word = String::new();
            let mut dq = false;
            while let Some(c) = chars.next() {
                match c {
                    ' ' if !dq => break,
                    '\'' if !dq => {
                        for c in chars.by_ref() {
                            if c == '\'' {
                                break;
                            }
                            word.push(c);
                        }
                    }
                    '"' => dq = !dq,
                    '\\' => word.extend(chars.next()),
                    '$' => {
                        while chars
                            .peek()
                            .is_some_and(|c| c.is_ascii_alphanumeric() || *c == '_')
                        {
                            chars.next();
                        }
                    }
                    ';' if !dq => panic!("unquoted ';' would end the command in {line:?}"),
                    c => word.push(c),
                }
            }
            words.push(word);
        }
    }

    /// What the kernel receives from a rendered `module2`/`multiboot2` line.
    fn received(line: &str) -> String {
        let words = grub_split(line);
        loader_cmdline(&words[2..])
    }

    const ROUND_TRIP: &[&str] = &[
        "",
        "console=hvc0",
        "console=hvc0 loglvl=all",
        r#"console=hvc0 "foo=a b""#,
        r#""a b" "c d e" f"#,
        r#"" leading and trailing ""#,
        "dollar=$root semi=a;b amp=a&b pipe=a|b brace={x} hash=#1 star=* q=?",
        "unicode=é→ü",
    ];

    #[test]
    fn accepted_command_lines_reach_the_kernel_unchanged() {
        for cmdline in ROUND_TRIP {
            let args = grub_args(cmdline).unwrap();
            assert_eq!(loader_cmdline(&args), *cmdline);
            let line = join_words("module2 /boot/m", &grub_words(cmdline).unwrap());
            assert_eq!(received(&line), *cmdline, "through {line:?}");
        }
    }

    #[test]
    fn splitting_into_words() {
        assert_eq!(
            grub_args(r#"console=hvc0 "foo=a b" x"#).unwrap(),
            ["console=hvc0", "foo=a b", "x"]
        );
        assert!(grub_args("").unwrap().is_empty());
    }

    #[test]
    fn unrepresentable_command_lines_are_rejected_with_advice() {
        let err = |s: &str| grub_args(s).unwrap_err();
        assert!(err(r#"foo="a b""#).contains(r#"write "foo=a b" instead"#));
        assert!(err(r#""foo"=bar"#).contains("write foo=bar instead"));
        assert!(err(r#"a"b c"d"#).contains(r#"write "ab cd" instead of a"b c"d"#));
        assert!(err(r#""ab""#).contains("write ab instead"));
        assert!(err(r#""a b"#).contains("not closed"));
        assert!(err("a  b").contains("exactly one space"));
        assert!(err(" a").contains("exactly one space"));
        assert!(err("a ").contains("exactly one space"));
        assert!(err("it's").contains("single quotes"));
        assert!(err(r"a\b").contains("backslash"));
        assert!(err("a\tb").contains("control character"));
        assert!(err("a\nb").contains("control character"));
    }

    #[test]
    fn quoting_protects_grub_syntax() {
        assert_eq!(quote_word("console=hvc0"), "console=hvc0");
        assert_eq!(quote_word("/boot/x-1.2,y:z+w@v"), "/boot/x-1.2,y:z+w@v");
        assert_eq!(quote_word("x=$y;z"), "'x=$y;z'");
        assert_eq!(quote_word("a b"), "'a b'");
        assert_eq!(quote_word(""), "''");
        assert_eq!(quote_word("it's"), r"'it'\''s'");
        assert_eq!(grub_split(&quote_word("it's $x")), ["it's $x"]);
    }

    #[test]
    fn default_image_config() {
        let cfg = render(TEMPLATE, "", &[]).unwrap();
        let lines: Vec<&str> = cfg.lines().map(str::trim).collect();
        let pos = |l: &str| {
            lines
                .iter()
                .position(|x| *x == l)
                .unwrap_or_else(|| panic!("no line {l:?} in\n{cfg}"))
        };
        pos("serial --unit=0 --speed=115200");
        pos("terminal_input serial console");
        pos("terminal_output serial console");
        pos("set timeout=0");
        let entry = pos("menuentry \"Xenia\" {");
        let kernel = pos("multiboot2 /boot/xenia.elf");
        let gfxpayload = pos("set gfxpayload=text");
        let boot = pos("boot");
        assert!(
            entry < kernel && kernel < gfxpayload && gfxpayload < boot,
            "{cfg}"
        );
        assert!(!cfg.contains('@'), "placeholder left in\n{cfg}");
        assert!(!cfg.lines().any(|l| l.trim_start().starts_with("module2")));
        assert_eq!(cfg.matches("menuentry").count(), 1);
    }

    #[test]
    fn options_and_modules_are_rendered_in_order() {
        let modules = [
            ModuleEntry {
                file_name: "dom0.elf",
                cmdline: r#"console=hvc0 "foo=a b""#,
            },
            ModuleEntry {
                file_name: "initrd.cpio",
                cmdline: "",
            },
        ];
        let cfg = render(TEMPLATE, "loglvl=all x=$y", &modules).unwrap();
        let body: Vec<&str> = cfg
            .lines()
            .skip_while(|l| !l.starts_with("menuentry"))
            .filter(|l| !l.trim_start().starts_with('#'))
            .collect();
        assert_eq!(
            body,
            [
                "menuentry \"Xenia\" {",
                "    multiboot2 /boot/xenia.elf loglvl=all 'x=$y'",
                "    module2 /boot/dom0.elf console=hvc0 'foo=a b'",
                "    module2 /boot/initrd.cpio",
                "    if [ \"$grub_platform\" = \"pc\" ]; then",
                "        set gfxpayload=text",
                "    fi",
                "    boot",
                "}",
            ]
        );
        assert_eq!(received(body[1].trim()), "loglvl=all x=$y");
        assert_eq!(received(body[2].trim()), r#"console=hvc0 "foo=a b""#);
    }

    #[test]
    fn bad_inputs_are_errors() {
        let m = |file_name| {
            [ModuleEntry {
                file_name,
                cmdline: "",
            }]
        };
        assert!(
            render(TEMPLATE, "", &m("a b"))
                .unwrap_err()
                .contains("file name")
        );
        assert!(
            render(TEMPLATE, "", &m("xenia.elf"))
                .unwrap_err()
                .contains("taken")
        );
        assert!(render(TEMPLATE, "", &m("../x")).is_err());
        assert!(
            render(TEMPLATE, "a  b", &[])
                .unwrap_err()
                .starts_with("hypervisor options")
        );
        assert!(
            render("no placeholders", "", &[])
                .unwrap_err()
                .contains("exactly once")
        );
        let inline = "multiboot2 /boot/xenia.elf @HV_OPTIONS@ @MODULES@\n";
        assert!(
            render(inline, "", &[])
                .unwrap_err()
                .contains("alone on its line")
        );
    }

    #[test]
    fn gfxpayload_is_set_in_the_entry() {
        let cfg = render(TEMPLATE, "", &[]).unwrap();
        assert!(cfg.contains("    set gfxpayload=text\n"), "{cfg}");
        let vbe = set_gfxpayload(&cfg, "1024x768x32").unwrap();
        assert!(vbe.contains("    set gfxpayload=1024x768x32\n"), "{vbe}");
        assert!(!vbe.contains("gfxpayload=text"));
        // After the multiboot2 line, which would otherwise reset it.
        let at = |text: &str, what: &str| text.find(what).unwrap();
        assert!(at(&vbe, "multiboot2 ") < at(&vbe, "set gfxpayload="));
        assert!(set_gfxpayload(&cfg, "1024 x768").is_err());
        assert!(set_gfxpayload("menuentry x {\n}\n", "text").is_err());
    }
}
