//! `airgap verify BUNDLE`: check every entry against the manifest (and the detached
//! `.sha256`). Exit code 1 on any difference, listing each one.

use std::path::PathBuf;
use std::process::ExitCode;

use airgap_archive::install::read::verify_opened;
use airgap_archive::{verify_bundle, ArchiveError};

use crate::report::{with_help, with_help_code};
use crate::ui::Ui;

const EXAMPLES: &str = "\
Examples:
  airgap verify nlp.tar.gz          every file against the manifest, and nlp.tar.gz.sha256
  airgap verify nlp.tar.gz --json   the result as JSON on stdout
  airgap verify nlp.tar.gz.age -i me.age.key --trusted-key team.minisign.pub
                                    signature first, then decrypt and check every file";

#[derive(Debug, clap::Args)]
#[command(after_help = EXAMPLES)]
pub struct VerifyArgs {
    /// The bundle (.tar.gz or .tar.zst; of a bundle in volumes, the first, NAME.tar.gz.001)
    #[arg(value_name = "BUNDLE")]
    pub bundle: PathBuf,

    /// Print the result as JSON on stdout
    #[arg(long)]
    pub json: bool,

    #[command(flatten)]
    pub open: super::seal::OpenArgs,
}

/// An archive error with its advice attached.
pub(crate) fn archive(error: ArchiveError) -> anyhow::Error {
    if let ArchiveError::Decrypt { cause, .. } = &error {
        if let Some(help) = cause
            .downcast_ref::<airgap_seal::SealError>()
            .and_then(|s| s.help())
        {
            return with_help(error, help);
        }
    }
    match error.help() {
        Some(help) => with_help(error, help),
        None => anyhow::Error::new(error),
    }
}

pub fn run(args: VerifyArgs, ui: &Ui) -> anyhow::Result<ExitCode> {
    let opened = super::seal::prepare(&args.open, &args.bundle, ui)?;
    ui.status("Verifying", &args.bundle.display().to_string());
    let result = match &opened.file {
        Some(file) => verify_opened(&args.bundle, file, opened.decryptor(), ui),
        None => verify_bundle(&args.bundle, ui),
    };
    match result {
        Ok(report) => {
            if args.json {
                let value = serde_json::json!({
                    "ok": true,
                    "bundle": args.bundle,
                    "name": report.manifest.meta.bundle_name,
                    "entries": report.entries,
                    "bytes": report.bytes,
                    "detached_sha256": report.detached_sha256,
                    "delta": report.delta,
                    "problems": [],
                });
                println!("{}", serde_json::to_string_pretty(&value)?);
            }
            let checksum = match report.detached_sha256 {
                Some(true) => "matches its .sha256",
                Some(false) => "does not match its .sha256",
                None => "no .sha256 beside it",
            };
            ui.status(
                "Verified",
                &format!(
                    "{} entries, {} bytes of content, all as the manifest says; {checksum}",
                    report.entries, report.bytes
                ),
            );
            if let Some(d) = &report.delta {
                ui.status(
                    "Delta",
                    &format!(
                        "against {} (manifest sha256 {}): {} file(s), {} bytes, come from that base and are checked when it is applied (airgap unpack BUNDLE --onto INSTALLED)",
                        crate::ui::escape(&d.base_name),
                        d.base,
                        d.reused,
                        d.reused_bytes
                    ),
                );
            }
            // What unpack will execute, stated here: "as the manifest says" covers files only.
            let runs: Vec<_> = report
                .manifest
                .meta
                .install_steps
                .iter()
                .filter(|s| {
                    matches!(
                        s.step,
                        airgap_archive::format::model::InstallStep::Run { .. }
                    )
                })
                .collect();
            if !runs.is_empty() {
                ui.status(
                    "Runs",
                    &format!(
                        "{} program(s) on unpack, as the unpacking user (`unpack --no-run` runs none):",
                        runs.len()
                    ),
                );
                for s in runs {
                    ui.status(
                        "",
                        &format!(
                            "[{}] {}",
                            crate::ui::escape(&s.plugin),
                            airgap_archive::text::describe_step(&s.step)
                        ),
                    );
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(ArchiveError::Mismatch { bundle, problems }) => {
            if args.json {
                let value = serde_json::json!({
                    "ok": false,
                    "bundle": bundle,
                    "problems": problems,
                });
                println!("{}", serde_json::to_string_pretty(&value)?);
            }
            for p in &problems {
                ui.println(&format!("  - {p}"));
            }
            Err(with_help_code(
                anyhow::anyhow!(
                    "{} does not match its manifest: {} problem(s)",
                    bundle.display(),
                    problems.len()
                ),
                "the bundle was damaged or altered after it was written: copy it again and compare with its .sha256",
                1,
            ))
        }
        Err(e) => Err(archive(e)),
    }
}
