//! `airgap inspect BUNDLE [--json]`: what a bundle holds (sources, packages, sizes per plugin,
//! largest files, install steps), read from its manifest alone.

use std::collections::{BTreeMap, BinaryHeap};
use std::path::PathBuf;
use std::process::ExitCode;

use airgap_archive::format::manifest::{FileType, StreamedManifest};
use airgap_archive::open_manifest;
use airgap_archive::text::human_bytes;
use serde::Serialize;

use crate::commands::verify::archive;
use crate::ui::Ui;
use crate::ui::{escape, escape_lines};

const EXAMPLES: &str = "\
Examples:
  airgap inspect nlp.tar.gz
  airgap inspect nlp.tar.gz --json | jq '.packages[].package.name'
  airgap inspect /opt/nlp               an unpacked bundle
  airgap inspect nlp.tar.gz.age -i me.age.key
  airgap inspect nlp.tar.gz --sbom -            the CycloneDX bill of materials
  airgap inspect nlp.tar.gz --sbom nlp.spdx.json --sbom-format spdx
  airgap inspect nlp.tar.gz --report --trusted-key airgap.minisign.pub
                                        nlp.tar.gz.report.html and .md, for the approvers
  airgap inspect nlp-v2-delta.tar.gz --report - --since nlp-v1.tar.gz";

#[derive(Debug, clap::Args)]
#[command(after_help = EXAMPLES)]
pub struct InspectArgs {
    /// The bundle (.tar.gz, .tar.zst, the first of its volumes NAME.tar.gz.001, or an
    /// unpacked bundle directory)
    #[arg(value_name = "BUNDLE")]
    pub bundle: PathBuf,

    /// Print everything as JSON on stdout
    #[arg(long)]
    pub json: bool,

    /// How many of the largest files to list
    #[arg(long, default_value_t = 10, value_name = "N")]
    pub largest: usize,

    /// Write the bundle's bill of materials to OUT (`-`: stdout) instead of the summary,
    /// made from its manifest: the same document `airgap bundle` wrote beside it
    #[arg(long, value_name = "OUT", conflicts_with_all = ["report", "json"])]
    pub sbom: Option<PathBuf>,

    /// The format of --sbom: CycloneDX 1.5 or SPDX 2.3 JSON
    #[arg(long, value_enum, value_name = "FORMAT", default_value_t = SbomFormat::Cyclonedx, requires = "sbom")]
    pub sbom_format: SbomFormat,

    /// Write the approvers' report: BUNDLE.report.html and BUNDLE.report.md beside the
    /// bundle; or OUT (Markdown when it ends in .md, else HTML); or, with `-`, the Markdown
    /// on stdout. Its verdict is a new check of the bundle, as `airgap check BUNDLE` makes
    #[arg(
        long,
        value_name = "OUT|-",
        num_args = 0..=1,
        default_missing_value = "",
        conflicts_with = "json"
    )]
    pub report: Option<PathBuf>,

    /// With --report on a delta: the previous version it was made against (its bundle, tree
    /// or manifest), whose packages the report compares
    #[arg(long, value_name = "PREVIOUS", requires = "report")]
    pub since: Option<PathBuf>,

    #[command(flatten)]
    pub open: super::seal::OpenArgs,
}

/// The formats of `--sbom`.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum SbomFormat {
    // CycloneDX 1.5 JSON (plain comments: a described value would turn the help long).
    Cyclonedx,
    // SPDX 2.3 JSON.
    Spdx,
}

#[derive(Debug, Default, Serialize)]
struct PluginSize {
    files: u64,
    links: u64,
    dirs: u64,
    bytes: u64,
}

#[derive(Debug, Serialize)]
struct Largest {
    path: String,
    size: u64,
    plugin: String,
}

/// The version of `inspect --json`'s schema (`docs/schema/inspect-1.json`): a field is added
/// under the same number, anything else a consumer could trip on gets a new one.
const SCHEMA: u32 = 1;

#[derive(Debug, Serialize)]
struct Inspection<'a> {
    schema: u32,
    name: &'a str,
    format: u32,
    airgap_version: &'a str,
    files: u64,
    bytes: u64,
    plugins: &'a [airgap_archive::PluginRecord],
    sizes: BTreeMap<String, PluginSize>,
    largest: Vec<Largest>,
    target: &'a airgap_archive::format::model::TargetProfile,
    python: &'a Option<airgap_archive::format::model::PythonEnvironment>,
    packages: &'a [airgap_archive::PackageRecord],
    install_steps: &'a [airgap_archive::StepRecord],
    warnings: &'a [String],
}

/// The summary of a manifest, its records read one at a time (a bundle of a million files
/// is inspected in the memory of one of ten): the `largest` biggest files are kept in a heap.
fn inspection(
    m: &StreamedManifest,
    largest: usize,
) -> Result<Inspection<'_>, airgap_archive::ArchiveError> {
    use std::cmp::Reverse;
    let mut sizes: BTreeMap<String, PluginSize> = BTreeMap::new();
    let mut files = 0u64;
    // The biggest first, then by path: a max-heap of (smaller, later) at its top.
    let mut biggest: BinaryHeap<(Reverse<u64>, String, String)> = BinaryHeap::new();
    for f in m.files.iter() {
        let f = f?;
        let s = sizes.entry(f.plugin.clone()).or_default();
        match f.kind {
            FileType::File => {
                s.files += 1;
                s.bytes += f.size;
                files += 1;
                if largest > 0 {
                    biggest.push((Reverse(f.size), f.path, f.plugin));
                    if biggest.len() > largest {
                        biggest.pop();
                    }
                }
            }
            FileType::Symlink => s.links += 1,
            FileType::Dir => s.dirs += 1,
        }
    }
    let meta = &m.meta;
    Ok(Inspection {
        schema: SCHEMA,
        name: &meta.bundle_name,
        format: meta.format,
        airgap_version: &meta.airgap_version,
        files,
        bytes: m.total_size(),
        plugins: &meta.plugins,
        sizes,
        largest: biggest
            .into_sorted_vec()
            .into_iter()
            .map(|(Reverse(size), path, plugin)| Largest { path, size, plugin })
            .collect(),
        target: &meta.target,
        python: &meta.python,
        packages: &meta.packages,
        install_steps: &meta.install_steps,
        warnings: &meta.warnings,
    })
}

pub fn run(args: InspectArgs, ui: &Ui) -> anyhow::Result<ExitCode> {
    let opened = super::seal::prepare(&args.open, &args.bundle, ui)?;
    if let Some(out) = &args.report {
        return write_report(&args, &opened, out, ui);
    }
    let m = match &opened.file {
        Some(file) => airgap_archive::install::read::open_manifest_opened(
            &args.bundle,
            file,
            opened.decryptor(),
        ),
        None => open_manifest(&args.bundle),
    }
    .map_err(archive)?;
    if let Some(out) = &args.sbom {
        return write_sbom(&m, out, args.sbom_format);
    }
    let i = inspection(&m, args.largest).map_err(archive)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&i)?);
        return Ok(ExitCode::SUCCESS);
    }
    let mut out = String::new();
    use std::fmt::Write;
    writeln!(
        out,
        "bundle    {} (manifest format {}, written by airgap {})",
        i.name, i.format, i.airgap_version
    )?;
    writeln!(out, "content   {} files, {}", i.files, human_bytes(i.bytes))?;
    let t = i.target;
    let mut target = Vec::new();
    if let Some(p) = &t.python {
        target.push(format!("python {p}"));
    }
    if let Some(a) = &t.abi {
        target.push(a.clone());
    }
    if let Some(g) = &t.glibc {
        target.push(format!("glibc {g}"));
    }
    if let Some(p) = t.platforms.first() {
        target.push(p.clone());
    }
    if let Some(p) = &t.prefix {
        target.push(format!("prefix {p}"));
    }
    if !target.is_empty() {
        writeln!(out, "target    {}", target.join(", "))?;
    }
    if let Some(py) = i.python {
        writeln!(out, "python    {} at {}", py.version, py.executable)?;
    }
    writeln!(out, "\nsources")?;
    for p in i.plugins {
        writeln!(
            out,
            "  {:<14} plugin {} {} (ABI {})",
            p.source, p.name, p.version, p.abi
        )?;
    }
    writeln!(out, "\nsize per plugin")?;
    for (plugin, s) in &i.sizes {
        writeln!(
            out,
            "  {plugin:<14} {:>10}  {} files, {} links, {} dirs",
            human_bytes(s.bytes),
            s.files,
            s.links,
            s.dirs
        )?;
    }
    if !i.packages.is_empty() {
        writeln!(out, "\npackages ({})", i.packages.len())?;
        for p in i.packages {
            let pk = &p.package;
            writeln!(
                out,
                "  {:<10} {} {} ({}{}{})",
                p.plugin,
                pk.name,
                pk.version,
                pk.kind,
                if pk.origin.is_empty() { "" } else { ", " },
                pk.origin
            )?;
        }
    }
    writeln!(out, "\nlargest files")?;
    for f in &i.largest {
        writeln!(out, "  {:>10}  {}", human_bytes(f.size), escape(&f.path))?;
    }
    if !i.install_steps.is_empty() {
        writeln!(out, "\ninstall steps")?;
        for (n, s) in i.install_steps.iter().enumerate() {
            writeln!(
                out,
                "  {}. [{}] {}",
                n + 1,
                escape(&s.plugin),
                airgap_archive::text::describe_step(&s.step)
            )?;
        }
    }
    if !i.warnings.is_empty() {
        writeln!(out, "\nwarnings")?;
        for w in i.warnings {
            writeln!(out, "  {}", escape(w))?;
        }
    }
    // Everything above came from the bundle's manifest: no control character reaches the
    // terminal (the fields most likely to hide one were escaped whole above).
    print!("{}", escape_lines(&out));
    Ok(ExitCode::SUCCESS)
}

/// `--sbom OUT`: the bill of materials of the manifest, to a file (whole or not at all) or
/// to stdout.
fn write_sbom(
    m: &StreamedManifest,
    out: &std::path::Path,
    format: SbomFormat,
) -> anyhow::Result<ExitCode> {
    let meta = &m.meta;
    let input = airgap_sbom::Input {
        bundle_name: &meta.bundle_name,
        airgap_version: &meta.airgap_version,
        plugins: &meta.plugins,
        target: &meta.target,
        packages: &meta.packages,
        created: airgap_sbom::source_date_epoch(),
    };
    let bytes = match format {
        SbomFormat::Cyclonedx => airgap_sbom::cyclonedx_json(&input),
        SbomFormat::Spdx => airgap_sbom::spdx_json(&input),
    }?;
    if out == std::path::Path::new("-") {
        use std::io::Write;
        std::io::stdout().write_all(&bytes)?;
    } else {
        airgap_archive::output::write_file_atomic(out, &bytes).map_err(archive)?;
    }
    Ok(ExitCode::SUCCESS)
}

/// `--report`: the approvers' report of a bundle file, read in one pass of the strict reader
/// after its hash (every reader shares the descriptor): its verdict from a new check of it
/// (a delta's, which needs its base, is left unchecked), its signer from `--trusted-key`.
fn write_report(
    args: &InspectArgs,
    opened: &super::seal::Opened,
    out: &std::path::Path,
    ui: &Ui,
) -> anyhow::Result<ExitCode> {
    use airgap_report::{DeltaInput, Identity, PackageChanges, ReportInput, Verdict};
    let bundle = &args.bundle;
    let Some(file) = &opened.file else {
        return Err(crate::report::with_help(
            anyhow::anyhow!(
                "{} is a directory: --report describes a bundle file",
                bundle.display()
            ),
            "give the bundle file it was extracted from",
        ));
    };
    let (sha256, size) =
        airgap_archive::install::read::sha256_size_opened(bundle, file).map_err(archive)?;
    ui.status("Checking", &bundle.display().to_string());
    let judged = airgap_core::check::judge_opened(bundle, file, opened.decryptor())
        .map_err(crate::report::core)?;
    let meta = &judged.manifest;
    let (verdict, check_warnings) = match &judged.check {
        Some(c) => (super::check::verdict(&meta.bundle_name, c), c.warnings.clone()),
        None => (
            Verdict {
                target: "the target recorded in the bundle".into(),
                passed: None,
                text: "a delta is checked when it is bundled; the files it takes from its base are checked by `airgap unpack DELTA --onto INSTALLED`".into(),
                problems: Vec::new(),
            },
            Vec::new(),
        ),
    };
    let changes = match (&judged.delta, &args.since) {
        (Some(_), Some(previous)) => {
            let (previous, _) =
                airgap_archive::install::read::open_manifest_any(previous).map_err(archive)?;
            Some(PackageChanges::between(
                &previous.meta.packages,
                &meta.packages,
            ))
        }
        _ => None,
    };
    let delta = judged.delta.as_ref().map(|d| DeltaInput {
        base_name: d.base_name.clone(),
        base_manifest_sha256: d.base.clone(),
        reused_files: Some(d.reused),
        changes,
    });
    let input = ReportInput {
        bundle: Identity {
            name: meta.bundle_name.clone(),
            file: bundle
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
            sha256,
            size,
            signer: opened.signer.clone(),
            encrypted: opened.keys.as_ref().map(|_| "age".to_string()),
            airgap_version: meta.airgap_version.clone(),
        },
        verdict,
        warnings: super::provenance::merged(&[&meta.warnings, &check_warnings]),
        sources: meta.plugins.clone(),
        packages: meta.packages.clone(),
        steps: meta.install_steps.clone(),
        delta,
    };
    if out.as_os_str() == "-" {
        print!("{}", airgap_report::markdown(&input));
        return Ok(ExitCode::SUCCESS);
    }
    if out.as_os_str().is_empty() {
        let (html, md) = super::provenance::beside(bundle);
        super::provenance::write(&input, &html, &md)?;
        ui.status(
            "Report",
            &format!("{} (and {})", html.display(), md.display()),
        );
        return Ok(ExitCode::SUCCESS);
    }
    let text = if out.extension().is_some_and(|e| e == "md") {
        airgap_report::markdown(&input)
    } else {
        airgap_report::html(&input)
    };
    airgap_archive::output::write_file_atomic(out, text.as_bytes()).map_err(archive)?;
    ui.status("Report", &out.display().to_string());
    Ok(ExitCode::SUCCESS)
}
