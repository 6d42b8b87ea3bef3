//! The approvers' report (`airgap-report`) for `airgap bundle` and `airgap inspect --report`:
//! what each command knows of a bundle, gathered into a `ReportInput`, and the two files
//! written beside the bundle through the one atomic output.

use std::path::{Path, PathBuf};

use airgap_report::{DeltaInput, Identity, PackageChanges, ReportInput};

/// Where the report of the bundle at `output` goes: `OUTPUT.report.html` and
/// `OUTPUT.report.md` beside it (the names a later bundle never takes as inputs).
pub(crate) fn beside(output: &Path) -> (PathBuf, PathBuf) {
    let name = output
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let [_, _, html, md] = airgap_core::bundle::report_names(&name);
    let dir = output.parent().unwrap_or(Path::new(""));
    (dir.join(html), dir.join(md))
}

/// Write the HTML report to `html` and the Markdown one to `md`, each whole or not at all.
pub(crate) fn write(input: &ReportInput, html: &Path, md: &Path) -> anyhow::Result<()> {
    use airgap_archive::output::write_file_atomic;
    write_file_atomic(html, airgap_report::html(input).as_bytes())
        .map_err(super::verify::archive)?;
    write_file_atomic(md, airgap_report::markdown(input).as_bytes())
        .map_err(super::verify::archive)?;
    Ok(())
}

/// The report of a bundle just written: its manifest as planned, the plan's check, the
/// signing key, and for a delta its base's packages.
pub(crate) fn of_written(
    report: &airgap_core::BundleReport,
    encrypted: Option<&str>,
    signer: Option<&str>,
) -> ReportInput {
    let file = report
        .output
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let identity = Identity {
        name: report.name.clone(),
        file,
        sha256: report.sha256.clone(),
        size: report.bytes_out,
        signer: signer.map(String::from),
        encrypted: encrypted.map(String::from),
        airgap_version: report.manifest.airgap_version.clone(),
    };
    let verdict = super::check::verdict(&report.name, &report.check);
    let warnings = merged(&[&report.warnings, &report.check.warnings]);
    let delta = report.base.as_ref().map(|b| DeltaInput {
        base_name: b.name.clone(),
        base_manifest_sha256: b.identity.clone(),
        reused_files: report.reused.map(|r| r.0),
        changes: Some(PackageChanges::between(
            &b.packages,
            &report.manifest.packages,
        )),
    });
    let m = &report.manifest;
    ReportInput {
        bundle: identity,
        verdict,
        warnings,
        sources: m.plugins.clone(),
        packages: m.packages.clone(),
        steps: m.install_steps.clone(),
        delta,
    }
}

/// Lists of warnings as one, each once, in their first order.
pub(crate) fn merged(lists: &[&[String]]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for w in lists.iter().flat_map(|l| l.iter()) {
        if !out.contains(w) {
            out.push(w.clone());
        }
    }
    out
}
