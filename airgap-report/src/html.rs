//! The report as one self-contained HTML file: inline CSS, no script, no external resource.
//! Every string from the bundle goes through [`esc`]; the tables' ids are stable (tests and
//! people's tools find them): `bundle`, `target`, `sources`, `packages`, `system-libraries`,
//! `commands`, `prefix-rewrites`, `delta`, the list `warnings` and the paragraph `verdict`.

use std::fmt::Write;

use airgap_archive::text::{escape, human_bytes};

use crate::model::{self, ReportInput, PACKAGE_COLUMNS};

const STYLE: &str = "body{font:14px/1.45 system-ui,sans-serif;margin:2em auto;max-width:80em;padding:0 1em;color:#222}\
h1{font-size:1.6em}h2{font-size:1.2em;margin-top:1.6em;border-bottom:1px solid #ccc}\
table{border-collapse:collapse;width:100%}th,td{border:1px solid #ccc;padding:.25em .5em;text-align:left;vertical-align:top;overflow-wrap:anywhere}\
th{background:#f3f3f3}code{font:12px ui-monospace,monospace;background:#f6f6f6;padding:0 .2em;word-break:break-all}\
ol.args{margin:0;padding-left:1.6em}#verdict{font-weight:bold;padding:.5em;border-radius:4px}\
.passed{background:#e3f5e1}.failed{background:#fbe3e3}.unchecked{background:#fff4d6}";

/// HTML text for untrusted `text`: control characters shown as escapes (a newline is seen,
/// not folded into a space), then `& < > " '` as entities.
fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in escape(text).chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A `<code>` element of untrusted text.
fn code(text: &str) -> String {
    format!("<code>{}</code>", esc(text))
}

/// A table: its id, header cells (our own words) and rows of ready HTML cells; a row saying
/// "none" when there are none, so that the table is always there.
fn table(out: &mut String, id: &str, head: &[&str], rows: &[Vec<String>]) {
    let _ = write!(out, "<table id=\"{id}\"><thead><tr>");
    for h in head {
        let _ = write!(out, "<th>{h}</th>");
    }
    out.push_str("</tr></thead><tbody>");
    if rows.is_empty() {
        let _ = write!(out, "<tr><td colspan=\"{}\">none</td></tr>", head.len());
    }
    for row in rows {
        out.push_str("<tr>");
        for cell in row {
            let _ = write!(out, "<td>{cell}</td>");
        }
        out.push_str("</tr>");
    }
    out.push_str("</tbody></table>\n");
}

/// The whole report.
pub fn html(r: &ReportInput) -> String {
    let mut out = String::new();
    let b = &r.bundle;
    let _ = write!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
<title>airgap bundle report: {}</title><style>{STYLE}</style></head><body>\n\
<h1>Bundle {}</h1>\n",
        esc(&b.name),
        esc(&b.name)
    );
    let class = match r.verdict.passed {
        Some(true) => "passed",
        Some(false) => "failed",
        None => "unchecked",
    };
    let _ = writeln!(
        out,
        "<p id=\"verdict\" class=\"{class}\">Check {}: {}</p>",
        model::verdict_word(&r.verdict),
        esc(&r.verdict.text)
    );

    out.push_str("<h2>Bundle</h2>\n");
    let mut rows = vec![
        vec!["file".into(), code(&b.file)],
        vec!["sha256".into(), code(&b.sha256)],
        vec![
            "size".into(),
            format!("{} ({} bytes)", human_bytes(b.size), b.size),
        ],
        vec![
            "signed by".into(),
            b.signer
                .as_deref()
                .map_or("not signed (or no trusted key given)".into(), |k| {
                    format!("minisign key {}", code(k))
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
    table(&mut out, "bundle", &["field", "value"], &rows);

    out.push_str("<h2>Target</h2>\n");
    rows = vec![
        vec!["checked for".into(), esc(&r.verdict.target)],
        vec!["verdict".into(), esc(model::verdict_word(&r.verdict))],
    ];
    rows.extend(
        r.verdict
            .problems
            .iter()
            .map(|p| vec!["problem".into(), esc(p)]),
    );
    table(&mut out, "target", &["field", "value"], &rows);

    out.push_str("<h2>Warnings</h2>\n<ul id=\"warnings\">");
    if r.warnings.is_empty() {
        out.push_str("<li>none</li>");
    }
    for w in &r.warnings {
        let _ = write!(out, "<li>{}</li>", esc(w));
    }
    out.push_str("</ul>\n");

    out.push_str("<h2>Sources</h2>\n");
    rows = r
        .sources
        .iter()
        .map(|p| vec![esc(&p.source), esc(&p.name), esc(&p.version), esc(&p.abi)])
        .collect();
    table(
        &mut out,
        "sources",
        &["source", "plugin", "version", "ABI"],
        &rows,
    );

    let _ = writeln!(out, "<h2>Packages ({})</h2>", r.packages.len());
    rows = r
        .packages
        .iter()
        .map(|p| {
            let cells = model::package_cells(&p.package);
            let mut row: Vec<String> = cells.iter().map(|c| esc(c)).collect();
            row.push(esc(&p.plugin));
            row
        })
        .collect();
    let mut head = PACKAGE_COLUMNS.to_vec();
    head.push("plugin");
    table(&mut out, "packages", &head, &rows);

    out.push_str("<h2>System libraries grafted from the build machine</h2>\n");
    rows = model::system_libraries(r)
        .map(|p| vec![esc(&p.name), esc(&p.version), code(&p.origin)])
        .collect();
    table(
        &mut out,
        "system-libraries",
        &["library", "version", "from"],
        &rows,
    );

    out.push_str("<h2>Commands run on the target</h2>\n");
    rows = model::commands(r)
        .map(|c| {
            let args: String = c
                .args
                .iter()
                .map(|a| format!("<li>{}</li>", code(a)))
                .collect();
            let env: Vec<String> = c
                .env
                .iter()
                .map(|(k, v)| code(&format!("{k}={v}")))
                .collect();
            vec![
                c.number.to_string(),
                esc(c.plugin),
                esc(c.description),
                code(c.program),
                if args.is_empty() {
                    String::new()
                } else {
                    format!("<ol class=\"args\">{args}</ol>")
                },
                env.join("<br>"),
            ]
        })
        .collect();
    table(
        &mut out,
        "commands",
        &[
            "step",
            "plugin",
            "description",
            "program",
            "arguments",
            "environment",
        ],
        &rows,
    );

    out.push_str("<h2>Prefix rewrites</h2>\n");
    rows = model::prefix_rewrites(r)
        .into_iter()
        .map(|(root, old, n)| vec![code(&format!("DEST/{root}")), code(old), n.to_string()])
        .collect();
    table(
        &mut out,
        "prefix-rewrites",
        &["root", "old prefix", "files"],
        &rows,
    );

    if let Some(d) = &r.delta {
        delta(&mut out, d);
    }
    out.push_str("</body></html>\n");
    out
}

/// A delta's base and what changed since it.
fn delta(out: &mut String, d: &model::DeltaInput) {
    let _ = writeln!(
        out,
        "<h2>Changes since the base</h2>\n<p id=\"delta-base\">A delta of {}: it applies onto the installed tree whose manifest has sha256 {}{}.</p>",
        esc(&d.base_name),
        code(&d.base_manifest_sha256),
        d.reused_files
            .map_or(String::new(), |n| format!("; {n} file(s) are taken from it"))
    );
    let Some(c) = &d.changes else {
        out.push_str("<p>The base's packages were not given: <code>airgap inspect DELTA --report --since BASE</code> lists what changed.</p>\n");
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
        "delta",
        &["change", "package", "kind", "base version", "new version"],
        &rows,
    );
}

#[cfg(test)]
mod tests {
    use super::esc;

    /// Markup and quotes from a bundle never reach the document as markup.
    #[test]
    fn untrusted_text_is_escaped() {
        assert_eq!(
            esc("<script>alert('x')</script>&\"\n"),
            "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;&amp;&quot;\\n"
        );
    }
}
