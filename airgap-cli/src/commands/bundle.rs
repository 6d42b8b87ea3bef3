//! `airgap bundle`: pack the active environment, or what airgap.toml says, into one archive.

use std::path::PathBuf;
use std::process::ExitCode;

use airgap_archive::Compression;
use airgap_core::{BundleOptions, BundleReport, Config};
use clap::{Args, ValueEnum};

use crate::report;
use crate::ui::Ui;

const EXAMPLES: &str = "\
Examples:
  airgap bundle                               the active environment (CONDA_PREFIX / VIRTUAL_ENV)
  airgap bundle -c airgap.toml                what the file says (see docs/configuration.md)
  airgap bundle -c airgap.toml -o /media/usb/nlp.tar.gz --compression zstd
  airgap bundle --dest-prefix /opt/nlp        the target path is known: no rewriting at unpack";

#[derive(Debug, Args)]
#[command(after_help = EXAMPLES)]
pub struct BundleArgs {
    /// The configuration file (default: bundle the active Python environment)
    #[arg(short, long, value_name = "airgap.toml")]
    pub config: Option<PathBuf>,

    /// Where to write the bundle (default: [bundle] output, else NAME.tar.gz here)
    #[arg(short, long, value_name = "PATH")]
    pub output: Option<PathBuf>,

    /// The path the bundle will be unpacked to, when known
    #[arg(long, value_name = "PATH")]
    pub dest_prefix: Option<String>,

    /// Compression of the archive
    #[arg(long, value_enum)]
    pub compression: Option<CompressionArg>,

    /// Compression level (gzip 1-9, default 5; zstd 1-19, default 3)
    #[arg(long)]
    pub level: Option<i32>,

    /// Compression threads (default: all cores)
    #[arg(long, default_value_t = 0)]
    pub threads: usize,

    /// Write the bundle even if the target check says it will not work there
    #[arg(long)]
    pub no_check: bool,

    /// Drop dangling symlinks with a warning instead of failing
    #[arg(long)]
    pub drop_dangling_links: bool,

    /// Seconds one source plugin may run before it is stopped (0 = no limit; default 3600)
    #[arg(long, value_name = "SECONDS", env = "AIRGAP_PLUGIN_TIMEOUT")]
    pub plugin_timeout: Option<u64>,

    /// The airgap-unpack binary to carry inside the bundle
    #[arg(long, value_name = "PATH", env = "AIRGAP_UNPACKER")]
    pub unpacker: Option<PathBuf>,

    /// Print the summary as JSON on stdout
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum CompressionArg {
    Gzip,
    Zstd,
}

pub fn run(args: BundleArgs, ui: &Ui) -> anyhow::Result<ExitCode> {
    let cwd = std::env::current_dir()?;
    let config = match &args.config {
        Some(path) => Config::load(path).map_err(report::core)?,
        None => Config::active_environment(&cwd).map_err(report::core)?,
    };
    let registry = super::plugins::registry(ui, &config.plugin_dirs);
    let compression = args.compression.map(|c| match c {
        CompressionArg::Gzip => Compression::Gzip {
            level: args
                .level
                .map(|l| l.clamp(1, 9) as u32)
                .unwrap_or(airgap_archive::write::DEFAULT_GZIP_LEVEL),
        },
        CompressionArg::Zstd => Compression::Zstd {
            level: args
                .level
                .unwrap_or(airgap_archive::write::DEFAULT_ZSTD_LEVEL),
        },
    });
    let options = BundleOptions {
        output: args.output.clone(),
        dest_prefix: args.dest_prefix.clone(),
        compression,
        no_check: args.no_check,
        drop_dangling: args.drop_dangling_links,
        verbose: ui.verbose > 0,
        unpacker: args.unpacker.clone(),
        threads: args.threads,
        plugin_timeout: args.plugin_timeout,
    };
    match &config.path {
        Some(path) => ui.status("Bundling", &format!("from {}", path.display())),
        None => ui.status("Bundling", "the active Python environment"),
    }
    let result = airgap_core::bundle(&config, &registry, &options, ui, &crate::CANCELLED);
    let report = match result {
        Ok(report) => report,
        Err(airgap_core::Error::CheckFailed { summary }) => {
            for problem in summary.split("; ") {
                ui.println(&format!("  - {problem}"));
            }
            return Err(report::with_help_code(
                anyhow::anyhow!("the bundle would not work on the declared target; nothing was written"),
                "fix the problems above (see `airgap check --help`), change [target], or pass --no-check to write it anyway",
                3,
            ));
        }
        Err(e) => return Err(report::core(e)),
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_summary(&report, ui);
    }
    Ok(ExitCode::SUCCESS)
}

fn print_summary(report: &BundleReport, ui: &Ui) {
    for warning in &report.warnings {
        ui.warn(warning);
    }
    if ui.quiet {
        return;
    }
    for source in &report.sources {
        ui.status(
            "Source",
            &format!(
                "{} ({} {}): {} paths, {} packages, {} install steps",
                source.name,
                source.plugin,
                source.plugin_version,
                source.files,
                source.packages,
                source.install_steps
            ),
        );
    }
    if let Some(python) = &report.python {
        ui.status(
            "Python",
            &format!(
                "{} at {}/{}",
                python.version, report.name, python.executable
            ),
        );
    }
    let check = serde_json::to_value(&report.check).unwrap_or_default();
    if let Some(glibc) = check
        .get("min_glibc")
        .and_then(|g| g.get("version").or(Some(g)))
    {
        if let Some(v) = glibc.as_str() {
            ui.status("Needs", &format!("glibc >= {v} on the target"));
        }
    }
    ui.status(
        "Wrote",
        &format!(
            "{} ({}, {} files, {} packages, {} before compression, sha256 {})",
            report.output.display(),
            human_bytes(report.bytes_out),
            report.files,
            report.packages,
            human_bytes(report.bytes_in),
            &report.sha256[..report.sha256.len().min(16)]
        ),
    );
    let archive = report
        .output
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let extract = if archive.ends_with(".zst") {
        "tar --zstd -xf"
    } else {
        "tar xzf"
    };
    ui.println("\nOn the target:");
    ui.println(&format!(
        "  airgap verify {archive} && airgap unpack {archive} /path/to/dest"
    ));
    if report.unpacker.is_some() {
        ui.println(&format!(
            "  or, without airgap there:  {extract} {archive} && ./{}/unpack /path/to/dest",
            report.name
        ));
    }
}

/// Bytes as people read them.
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
