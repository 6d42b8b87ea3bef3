//! The report as Markdown, for a ticket or a review: the same sections as the HTML, in
//! tables. Every string from the bundle goes through [`esc`].

use std::fmt::Write;

use airgap_archive::text::{command_line, escape, human_bytes};

use crate::model::{self, ReportInput, PACKAGE_COLUMNS};

/// Markdown text for untrusted `text`, safe in a table cell and at the start of a line:
/// control characters shown as escapes (a newline cannot end the row), then every character
/// Markdown gives a meaning inline (`\ | ` * _ [ ] < > ~ &`) backslash-escaped, and a leading
/// block marker (`#`, `-`, `+`, `=`, `>`, `1.`) made plain.
fn esc(text: &str) -> String {
    let text = escape(text);
    let mut out = String::with_capacity(text.len() + 4);
    if let Some(first) = text.chars().next() {
        if "#-+=".contains(first) {
            out.push('\\');
        }
    }
    // `1.` or `1)` then a space starts an ordered list; `1.0` does not.
    let digits = text.chars().take_while(char::is_ascii_digit).count();
    let marker = digits > 0
        && matches!(text[digits..].chars().next(), Some('.' | ')'))
        && text[digits + 1..].starts_with([' ', '\t']);
    let chars: Vec<char> = text.chars().collect();
    for (i, &c) in chars.iter().enumerate() {
        let list_marker = marker && i == digits;
        // `_` inside a word (`x86_64`, `manylinux_2_28`) emphasizes nothing.
        let inword = |j: Option<usize>| {
            j.and_then(|j| chars.get(j))
                .is_some_and(|c| c.is_alphanumeric())
        };
        let emphasis = c == '_' && !(inword(i.checked_sub(1)) && inword(Some(i + 1)));
        if list_marker || emphasis || "\\|`*[]<>~&!".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// A table of ready cells; a row saying "none" when there are none.
fn table(out: &mut String, head: &[&str], rows: &[Vec<String>]) {
    let _ = writeln!(out, "| {} |", head.join(" | "));
    let _ = writeln!(out, "|{}", "---|".repeat(head.len()));
    if rows.is_empty() {
        let mut none = vec!["none".to_string()];
        none.resize(head.len(), String::new());
        let _ = writeln!(out, "| {} |", none.join(" | "));
    }
    for row in rows {
        let _ = writeln!(out, "| {} |", row.join(" | "));
    }
    out.push('\n');
}

/// The whole report.
pub fn markdown(r: &ReportInput) -> String {
    let mut out = String::new();
    let b = &r.bundle;
    let _ = writeln!(out, "# Bundle {}\n", esc(&b.name));
    let _ = writeln!(
        out,
        "**Check {}:** {}\n",
        model::verdict_word(&r.verdict),
        esc(&r.verdict.text)
    );

    out.push_str("## Bundle\n\n");
    let mut rows = vec![
        vec!["file".into(), esc(&b.file)],
        vec!["sha256".into(), esc(&b.sha256)],
        vec![
            "size".into(),
            format!("{} ({} bytes)", human_bytes(b.size), b.size),
        ],
        vec![
            "signed by".into(),
            b.signer
                .as_deref()
                .map_or("not signed (or no trusted key given)".into(), |k| {
                    format!("minisign key {}", esc(k))
                }),
        ],
        vec![
            "encrypted".into(),
            b.encrypted.as_deref().map_or("no".into(), esc),
        ],
        vec![
            "written by".into(),
            format!("airgap {}", esc(&b.airgap_version)),
        ],
    ];
    table(&mut out, &["field", "value"], &rows);

    out.push_str("## Target\n\n");
    rows = vec![
        vec!["checked for".into(), esc(&r.verdict.target)],
        vec!["verdict".into(), model::verdict_word(&r.verdict).into()],
    ];
    rows.extend(
        r.verdict
            .problems
            .iter()
            .map(|p| vec!["problem".into(), esc(p)]),
    );
    table(&mut out, &["field", "value"], &rows);

    out.push_str("## Warnings\n\n");
    if r.warnings.is_empty() {
        out.push_str("none\n");
    }
    for w in &r.warnings {
        let _ = writeln!(out, "- {}", esc(w));
    }
    out.push('\n');

    out.push_str("## Sources\n\n");
    rows = r
        .sources
        .iter()
        .map(|p| vec![esc(&p.source), esc(&p.name), esc(&p.version), esc(&p.abi)])
        .collect();
    table(&mut out, &["source", "plugin", "version", "ABI"], &rows);

    let _ = writeln!(out, "## Packages ({})\n", r.packages.len());
    rows = r
        .packages
        .iter()
        .map(|p| {
            let mut row: Vec<String> = model::package_cells(&p.package)
                .iter()
                .map(|c| esc(c))
                .collect();
            row.push(esc(&p.plugin));
            row
        })
        .collect();
    let mut head = PACKAGE_COLUMNS.to_vec();
    head.push("plugin");
    table(&mut out, &head, &rows);

    out.push_str("## System libraries grafted from the build machine\n\n");
    rows = model::system_libraries(r)
        .map(|p| vec![esc(&p.name), esc(&p.version), esc(&p.origin)])
        .collect();
    table(&mut out, &["library", "version", "from"], &rows);

    out.push_str("## Commands run on the target\n\n");
    rows = model::commands(r)
        .map(|c| {
            let env: Vec<String> = c
                .env
                .iter()
                .map(|(k, v)| esc(&format!("{k}={v}")))
                .collect();
            vec![
                c.number.to_string(),
                esc(c.plugin),
                esc(c.description),
                // Shell-quoted words: the boundaries of each argument are visible.
                esc(&command_line(c.program, c.args)),
                env.join(" "),
            ]
        })
        .collect();
    table(
        &mut out,
        &["step", "plugin", "description", "command", "environment"],
        &rows,
    );

    out.push_str("## Prefix rewrites\n\n");
    rows = model::prefix_rewrites(r)
        .into_iter()
        .map(|(root, old, n)| vec![esc(&format!("DEST/{root}")), esc(old), n.to_string()])
        .collect();
    table(&mut out, &["root", "old prefix", "files"], &rows);

    if let Some(d) = &r.delta {
        delta(&mut out, d);
    }
    out
}

/// A delta's base and what changed since it.
fn delta(out: &mut String, d: &model::DeltaInput) {
    out.push_str("## Changes since the base\n\n");
    let _ = writeln!(
        out,
        "A delta of {}: it applies onto the installed tree whose manifest has sha256 {}{}.\n",
        esc(&d.base_name),
        esc(&d.base_manifest_sha256),
        d.reused_files.map_or(String::new(), |n| format!(
            "; {n} file(s) are taken from it"
        ))
    );
    let Some(c) = &d.changes else {
        out.push_str("The base's packages were not given: `airgap inspect DELTA --report --since BASE` lists what changed.\n");
        return;
    };
    let rows: Vec<Vec<String>> = model::change_rows(c)
        .into_iter()
        .map(|(change, p, from, to)| {
            vec![
                change.into(),
                esc(&p.name),
                esc(&p.kind),
                esc(from),
                esc(to),
            ]
        })
        .collect();
    table(
        out,
        &["change", "package", "kind", "base version", "new version"],
        &rows,
    );
}

#[cfg(test)]
mod tests {
    use super::esc;

    /// A cell cannot end its row, open a code span or start a block.
    #[test]
    fn untrusted_text_is_escaped() {
        assert_eq!(esc("a|b`c\nd"), "a\\|b\\`c\\\\nd");
        assert_eq!(esc("# title"), "\\# title");
        assert_eq!(esc("1. item"), "1\\. item");
        assert_eq!(esc("1.26.4"), "1.26.4");
        assert_eq!(esc("x86_64 _em_"), "x86_64 \\_em\\_");
        assert_eq!(esc("<script>"), "\\<script\\>");
    }
}
