//! Untrusted text on its way to a terminal. One implementation for the CLI and the carried
//! unpacker: a bundle's names, step arguments and descriptions, a signature's comment.

/// Control characters (ESC, CR, BS, ...) shown as Rust escapes (`\u{1b}`, `\r`), so that text
/// from a bundle cannot move the cursor, hide a line or recolour what follows.
pub fn escape(text: &str) -> String {
    escape_except(text, None)
}

/// [`escape`], keeping `\n`: for a whole message whose own lines the program chose. Untrusted
/// parts of it should have gone through [`escape`] already (a newline in a file name is shown
/// as `\n` there); this is the last guard at the printer.
pub fn escape_lines(text: &str) -> String {
    escape_except(text, Some('\n'))
}

fn escape_except(text: &str, keep: Option<char>) -> String {
    if !text.chars().any(char::is_control) {
        return text.to_string();
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if c.is_control() && Some(c) != keep {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

/// The exact command a `Run` step starts, as the user should read it before it runs: each word
/// escaped, and quoted (shell style) when it is empty or holds a space or a shell character, so
/// that word boundaries are visible (`sh -c 'rm -rf ~'`, not `sh -c rm -rf ~`).
pub fn command_line(program: &str, args: &[String]) -> String {
    std::iter::once(program)
        .chain(args.iter().map(String::as_str))
        .map(word)
        .collect::<Vec<_>>()
        .join(" ")
}

fn word(w: &str) -> String {
    let plain = !w.is_empty()
        && w.chars()
            .all(|c| c.is_alphanumeric() || "-_./{}=:,+@%".contains(c));
    if plain {
        escape(w)
    } else {
        format!("'{}'", escape(&w.replace('\'', "'\\''")))
    }
}

/// One install step as the user reads it: for a `Run` step the author's description (escaped)
/// and the exact command it starts ([`command_line`]); the description alone could say
/// anything.
pub fn describe_step(step: &airgap_plugin_api::InstallStep) -> String {
    match step {
        airgap_plugin_api::InstallStep::RewritePrefix {
            old_prefix,
            root,
            files,
        } => format!(
            "rewrite prefix {} -> DEST/{} in {} file(s)",
            escape(old_prefix),
            escape(root),
            files.len()
        ),
        airgap_plugin_api::InstallStep::Run {
            description,
            program,
            args,
            ..
        } => format!(
            "{}: runs {}",
            escape(description.trim_end()),
            command_line(program, args)
        ),
        _ => "a step this airgap does not know".into(),
    }
}

/// Bytes as people read them: binary units, one decimal (`1.2 GiB`, `512 B`). One rendering
/// for every command and the carried unpacker.
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_shown_not_sent() {
        assert_eq!(escape("a\u{1b}[2Kb\rc\nd"), "a\\u{1b}[2Kb\\rc\\nd");
        assert_eq!(escape_lines("a\u{1b}b\nc\r"), "a\\u{1b}b\nc\\r");
        assert_eq!(escape("plain é"), "plain é");
        assert_eq!(escape("\u{9b}"), "\\u{9b}");
    }

    #[test]
    fn a_command_line_shows_word_boundaries() {
        let args = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            command_line("sh", &args(&["-c", "echo hi; rm x", ""])),
            "sh -c 'echo hi; rm x' ''"
        );
        assert_eq!(
            command_line("{python}", &args(&["-m", "pip", "it's"])),
            "{python} -m pip 'it'\\''s'"
        );
        assert_eq!(command_line("a\u{1b}[8m", &[]), "'a\\u{1b}[8m'");
    }
}
