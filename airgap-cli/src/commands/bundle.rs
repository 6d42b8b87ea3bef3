//! `airgap bundle`: pack the active environment, or what airgap.toml says, into one archive.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use airgap_archive::text::human_bytes;
use airgap_core::{BundleOptions, BundleReport, Config};
use clap::{Args, ValueEnum};

use crate::commands::seal::{
    ask_secret, passphrase_from_file, prompt_secret, read_passphrase_file, seal,
};
use crate::report;
use crate::ui::Ui;

const EXAMPLES: &str = "\
Examples:
  airgap bundle                               the active environment (CONDA_PREFIX / VIRTUAL_ENV)
  airgap bundle -c airgap.toml                what the file says (see docs/configuration.md)
  airgap bundle -c airgap.toml -o /media/usb/nlp.tar.gz --compression zstd
  airgap bundle --dest-prefix /opt/nlp        the target path is known: no rewriting at unpack
  airgap bundle --encrypt-to age1... --encrypt-to keys/site-b.age.pub --sign keys/airgap.minisign.key
                                              NAME.tar.gz.age, and NAME.tar.gz.age.minisig beside it
  airgap bundle --passphrase-file pass.txt    encrypted with a passphrase (--passphrase: asked)
  airgap bundle --self-extracting             NAME.run: on the target, sh NAME.run /opt/nlp
  airgap bundle --split-size fat32            NAME.tar.gz.001, .002, ... (each < 4 GiB) and the
                                              list NAME.tar.gz.volumes; airgap unpack NAME.tar.gz.001
  airgap bundle --since nlp-v1.tar.gz -o nlp-v2-delta.tar.gz
                                              only what changed since v1: on the target,
                                              airgap unpack nlp-v2-delta.tar.gz --onto /opt/nlp";

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

    /// The probed target: the profile `airgap probe --out FILE` wrote there, or the code it
    /// printed (over `[target] profile`); its libraries are not grafted
    #[arg(long, value_name = "FILE|CODE")]
    pub target: Option<String>,

    /// Compression of the archive
    #[arg(long, value_enum)]
    pub compression: Option<CompressionArg>,

    /// Compression level (gzip 1-9, default 6; zstd 1-19, default 3), for --compression or
    /// `[bundle] compression`
    #[arg(long)]
    pub level: Option<i32>,

    /// Compression threads (default: all cores)
    #[arg(long, default_value_t = 0)]
    pub threads: usize,

    /// zstd long-distance matching over a 128 MiB window (as `zstd --long`): finds content
    /// repeated far apart in big environments; any zstd reads the result
    #[arg(long)]
    pub long: bool,

    /// Write the bundle even if the target check says it will not work there
    #[arg(long)]
    pub no_check: bool,

    /// Fail when a library loaded only on demand (nothing in the bundle needs it) would not
    /// load on the target (default: a warning; `[check] strict = true` does the same)
    #[arg(long)]
    pub strict: bool,

    /// Drop dangling symlinks with a warning instead of failing
    #[arg(long)]
    pub drop_dangling_links: bool,

    /// Seconds one source plugin may run before it is stopped (0 = no limit; default 3600)
    #[arg(long, value_name = "SECONDS", env = "AIRGAP_PLUGIN_TIMEOUT")]
    pub plugin_timeout: Option<u64>,

    /// Write one self-extracting file, NAME.run (a sh header, the static unpacker and the
    /// archive), installed on the target with `sh NAME.run DEST`: nothing else needed there.
    /// Instead of NAME.tar.gz; tar cannot read a .run, airgap can. Not with encryption
    /// (the unpacker has no crypto); --sign signs the whole .run
    #[arg(long, conflicts_with_all = ["encrypt_to", "passphrase", "passphrase_file"])]
    pub self_extracting: bool,

    /// Write the bundle as volumes of at most SIZE bytes, NAME.tar.gz.001, .002, ... and
    /// their list NAME.tar.gz.volumes (sizes and sha256s; --sign signs it). SIZE is bytes, or
    /// a number with K, M or G (powers of 1024), at least 64K; or
    /// a preset: fat32 (4 GiB - 1 byte, FAT32's largest file), dvd (4,600,000,000: a DVD's
    /// 4.7 GB less room for its file system), bd25 (24,000,000,000). Read back with
    /// `airgap unpack NAME.tar.gz.001 DEST`, or `cat NAME.tar.gz.[0-9][0-9][0-9] >
    /// NAME.tar.gz`. Not with --self-extracting
    #[arg(long, value_name = "SIZE", value_parser = split_size)]
    pub split_size: Option<u64>,
    /// Write a delta against this previous version: only files whose content it lacks go
    /// in, the rest are taken from it on the target (`airgap unpack DELTA --onto INSTALLED`).
    /// PREVIOUS is that version's bundle, its extracted or installed tree, or its
    /// `.airgap/manifest.toml`
    #[arg(long, value_name = "PREVIOUS")]
    pub since: Option<PathBuf>,
    /// Also write the bill of materials as SPDX 2.3 JSON (NAME.spdx.json) beside the
    /// CycloneDX one (NAME.cdx.json, always written, and carried inside)
    #[arg(long)]
    pub spdx: bool,
    /// Skip the self-test's trial here (loading every library and module of the environment
    /// with its own interpreter, to record what fails here too): then every failure of the
    /// self-test on the target counts
    #[arg(long)]
    pub no_trial: bool,

    /// Do not write the approvers' report (BUNDLE.report.html and BUNDLE.report.md beside
    /// the bundle: its hash and signer, the verdict, every package, the commands the target
    /// will run)
    #[arg(long)]
    pub no_report: bool,

    /// The airgap-unpack binary to carry inside the bundle
    #[arg(long, value_name = "PATH", env = "AIRGAP_UNPACKER")]
    pub unpacker: Option<PathBuf>,

    /// Print the summary as JSON on stdout
    #[arg(long)]
    pub json: bool,

    /// Encrypt to this age public key (age1..., or a file of them, one a line; repeatable).
    /// The default output name becomes NAME.tar.gz.age
    #[arg(
        long = "encrypt-to",
        value_name = "RECIPIENT",
        help_heading = "Encryption and signature"
    )]
    pub encrypt_to: Vec<String>,

    /// Encrypt with a passphrase, asked on the terminal (twice)
    #[arg(long, conflicts_with_all = ["encrypt_to", "passphrase_file"], help_heading = "Encryption and signature")]
    pub passphrase: bool,

    /// Encrypt with the passphrase in this file (its first line), for scripts
    #[arg(
        long,
        value_name = "FILE",
        conflicts_with = "encrypt_to",
        help_heading = "Encryption and signature"
    )]
    pub passphrase_file: Option<PathBuf>,

    /// Sign the bundle (as written, after encryption) with this minisign secret key:
    /// writes BUNDLE.minisig beside it
    #[arg(long, value_name = "KEY", help_heading = "Encryption and signature")]
    pub sign: Option<PathBuf>,

    /// The password of an encrypted minisign secret key, from this file (else asked on the
    /// terminal)
    #[arg(
        long,
        value_name = "FILE",
        requires = "sign",
        help_heading = "Encryption and signature"
    )]
    pub sign_password_file: Option<PathBuf>,
}

/// `--encrypt-to` values: keys, or files of keys (as `age -R`).
fn recipients(values: &[String]) -> anyhow::Result<Vec<String>> {
    let mut keys = Vec::new();
    for v in values {
        let path = std::path::Path::new(v);
        if !v.starts_with("age1") && path.is_file() {
            let text = std::fs::read_to_string(path).map_err(|e| {
                seal(airgap_seal::SealError::Io {
                    action: "reading",
                    path: path.into(),
                    cause: e,
                })
            })?;
            let before = keys.len();
            keys.extend(
                text.lines()
                    .map(str::trim)
                    .filter(|l| !l.is_empty() && !l.starts_with('#'))
                    .map(String::from),
            );
            if keys.len() == before {
                return Err(report::with_help(
                    anyhow::anyhow!(
                        "--encrypt-to {}: the file holds no age public key",
                        path.display()
                    ),
                    "put the recipients' public keys in it, one a line (age1...; `age-keygen -y KEY` prints one), or give a key itself",
                ));
            }
        } else {
            keys.push(v.clone());
        }
    }
    Ok(keys)
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum CompressionArg {
    Gzip,
    Zstd,
}

/// `--split-size`, through the format's one reading of sizes and presets.
fn split_size(text: &str) -> Result<u64, String> {
    airgap_archive::format::volumes::parse_split_size(text)
}

/// Bundle, then sign and print. Levels and recipients are checked, and secrets asked, before
/// any plugin runs: nobody learns of a typo or is asked for a password after a long run.
pub fn run(args: BundleArgs, ui: &Ui) -> anyhow::Result<ExitCode> {
    let cwd = std::env::current_dir()?;
    let config = match &args.config {
        Some(path) => Config::load(path).map_err(report::core)?,
        None => Config::active_environment(&cwd).map_err(report::core)?,
    };
    let compression = compression(&args, &config)?;
    let encryption = encryption(&args)?;
    let signing = signing_key(&args)?;
    let (filter, encrypted) = output_filter(encryption);
    let registry = super::plugins::registry(ui, &config.plugin_dirs);
    let options = bundle_options(&args, ui, compression, filter);
    match &config.path {
        Some(path) => ui.status("Bundling", &format!("from {}", path.display())),
        None => ui.status("Bundling", "the active Python environment"),
    }
    let result = airgap_core::bundle(&config, &registry, &options, ui, &crate::CANCELLED);
    let report = match result {
        Ok(report) => report,
        Err(airgap_core::Error::CheckFailed { report, plugins }) => {
            return Err(check_failed(&config, &report, &plugins));
        }
        Err(e) => return Err(report::core(e)),
    };
    let signature = sign(&report, signing.as_ref())?;
    sign_sbom(&report, signing.as_ref())?;
    let key_id = signing.as_ref().map(|k| k.id());
    // Last, once the bundle, its .sha256 and its .minisig exist: the report names them.
    let approval = match args.no_report {
        true => None,
        false => Some(write_report(&report, encrypted.as_deref(), key_id)?),
    };
    if args.json {
        print_json(
            &report,
            encrypted.as_deref(),
            signature.as_deref(),
            approval.as_ref(),
        )?;
    } else {
        print_summary(
            &report,
            ui,
            Sealed {
                encrypted: encrypted.as_deref(),
                signature: signature.as_deref(),
                key_id,
                report: approval.as_ref(),
            },
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// The compression and level from the flags and the configuration; `--long` is refused for
/// gzip here rather than ignored.
fn compression(args: &BundleArgs, config: &Config) -> anyhow::Result<airgap_archive::Compression> {
    let compression = airgap_core::bundle::choose_compression(
        config,
        args.compression.map(|c| match c {
            CompressionArg::Gzip => "gzip",
            CompressionArg::Zstd => "zstd",
        }),
        args.level,
    )
    .map_err(report::core)?;
    if args.long && !matches!(compression, airgap_archive::Compression::Zstd { .. }) {
        return Err(report::with_help_code(
            anyhow::anyhow!("--long is a zstd option and this bundle is gzip"),
            "add --compression zstd, or drop --long",
            2,
        ));
    }
    Ok(compression)
}

/// Who can open the bundle (age recipients, or a passphrase read from a file or asked), and
/// how the summary says it; `None` when it is not encrypted.
fn encryption(args: &BundleArgs) -> anyhow::Result<Option<(airgap_seal::Recipients, String)>> {
    Ok(if !args.encrypt_to.is_empty() {
        let keys = recipients(&args.encrypt_to)?;
        let n = keys.len();
        let parsed = airgap_seal::Recipients::parse(&keys).map_err(seal)?;
        Some((parsed, format!("to {n} age recipient(s)")))
    } else if let Some(file) = &args.passphrase_file {
        Some((
            airgap_seal::Recipients::Passphrase(passphrase_from_file(file)?),
            "with a passphrase".to_string(),
        ))
    } else if args.passphrase {
        Some((
            airgap_seal::Recipients::Passphrase(ask_secret("passphrase for the bundle", true)?),
            "with a passphrase".to_string(),
        ))
    } else {
        None
    })
}

/// The minisign key of `--sign`, unlocked with the password file or a prompt.
fn signing_key(args: &BundleArgs) -> anyhow::Result<Option<airgap_seal::SigningKey>> {
    Ok(match &args.sign {
        Some(key) => Some(
            airgap_seal::load_secret_key(key, || match &args.sign_password_file {
                Some(file) => read_passphrase_file(file),
                None => prompt_secret(&format!("password of {}", key.display()), false),
            })
            .map_err(seal)?,
        ),
        None => None,
    })
}

/// An output filter of the archive writer, with the suffix it adds to the file name.
type Filter = Option<(Arc<dyn airgap_archive::OutputFilter>, String)>;

/// The encrypting filter for `encryption`, and how the summary says it (neither for a plain
/// bundle).
fn output_filter(
    encryption: Option<(airgap_seal::Recipients, String)>,
) -> (Filter, Option<String>) {
    match encryption {
        Some((recipients, how)) => {
            let filter: Arc<dyn airgap_archive::OutputFilter> =
                Arc::new(airgap_seal::Encrypt::new(recipients));
            (
                Some((filter, airgap_seal::crypt::SUFFIX.to_string())),
                Some(how),
            )
        }
        None => (None, None),
    }
}

/// The flags as the core's options.
fn bundle_options(
    args: &BundleArgs,
    ui: &Ui,
    compression: airgap_archive::Compression,
    filter: Filter,
) -> BundleOptions {
    BundleOptions {
        output: args.output.clone(),
        dest_prefix: args.dest_prefix.clone(),
        target: args.target.clone(),
        compression: Some(compression),
        no_check: args.no_check,
        strict: args.strict,
        drop_dangling: args.drop_dangling_links,
        verbose: ui.verbose > 0,
        unpacker: args.unpacker.clone(),
        threads: args.threads,
        zstd_long: args.long,
        plugin_timeout: args.plugin_timeout,
        filter,
        self_extracting: args.self_extracting,
        split: args.split_size,
        since: args.since.clone(),
        spdx: args.spdx,
        no_trial: args.no_trial,
    }
}

/// The check refused the bundle: its problems as `airgap check` lists them, and the error
/// (exit 3) with the advice that fits this plan.
fn check_failed(
    config: &Config,
    report: &airgap_core::check::CheckReport,
    plugins: &[String],
) -> anyhow::Error {
    use super::check::{advice_lines, print_problem_list, Advice};
    print_problem_list(report);
    let mut helps = advice_lines(
        report,
        Advice::for_plan(config, plugins.iter().map(String::as_str)),
    );
    helps.push("fix the problems above (see `airgap check --help`), change [target], or pass --no-check to write it anyway".into());
    report::with_helps_code(
        anyhow::anyhow!("the bundle would not work on the declared target; nothing was written"),
        helps,
        3,
    )
}

/// Sign the bill of materials beside the bundle too (`NAME.cdx.json.minisig`): what the
/// approvers read must be as authentic as what they approve.
fn sign_sbom(report: &BundleReport, key: Option<&airgap_seal::SigningKey>) -> anyhow::Result<()> {
    let Some(key) = key else {
        return Ok(());
    };
    for file in &report.sbom {
        let sha256 =
            airgap_archive::install::read::sha256_file(file).map_err(super::verify::archive)?;
        airgap_seal::sign_file(file, &sha256, key).map_err(|e| {
            report::with_help(
                seal(e),
                format!(
                    "the bundle is signed but its SBOM {} is not; sign it with `minisign -Sm` or run again",
                    file.display()
                ),
            )
        })?;
    }
    Ok(())
}

/// The signature file beside the written bundle; a failure says the bundle is there unsigned.
fn sign(
    report: &BundleReport,
    key: Option<&airgap_seal::SigningKey>,
) -> anyhow::Result<Option<PathBuf>> {
    // A split bundle's signature is over its volume list, whose hashes bind every volume.
    let (signed, sha256) = match &report.volumes {
        Some(list) if key.is_some() => (
            list.clone(),
            airgap_archive::install::read::sha256_file(list).map_err(super::verify::archive)?,
        ),
        _ => (report.output.clone(), report.sha256.clone()),
    };
    Ok(match key {
        Some(key) => Some(
            airgap_seal::sign_file(&signed, &sha256, key).map_err(|e| {
                report::with_help(
                    seal(e),
                    format!(
                        "the bundle {} was written but is not signed; sign it with `minisign -Sm` or run again",
                        signed.display()
                    ),
                )
            })?,
        ),
        None => None,
    })
}

/// The approvers' report beside the written bundle: (HTML, Markdown).
fn write_report(
    report: &BundleReport,
    encrypted: Option<&str>,
    key_id: Option<&str>,
) -> anyhow::Result<(PathBuf, PathBuf)> {
    let input = super::provenance::of_written(report, encrypted, key_id);
    let (html, md) = super::provenance::beside(&report.output);
    super::provenance::write(&input, &html, &md).map_err(|e| {
        report::with_help(
            e,
            format!(
                "the bundle {} was written, its report not; make it with `airgap inspect {} --report`",
                report.output.display(),
                report.output.display()
            ),
        )
    })?;
    Ok((html, md))
}

/// `--json`: the core's report, with how it is encrypted and where its signature and the
/// approvers' report are.
fn print_json(
    report: &BundleReport,
    encrypted: Option<&str>,
    signature: Option<&std::path::Path>,
    approval: Option<&(PathBuf, PathBuf)>,
) -> anyhow::Result<()> {
    let mut value = serde_json::to_value(report)?;
    if let Some(map) = value.as_object_mut() {
        map.insert("encrypted".into(), serde_json::json!(encrypted));
        map.insert("signature".into(), serde_json::json!(signature));
        map.insert(
            "report".into(),
            serde_json::json!(
                approval.map(|(html, md)| serde_json::json!({"html": html, "markdown": md}))
            ),
        );
    }
    println!("{}", serde_json::to_string_pretty(&value)?);
    Ok(())
}

/// What was written beside the bundle, and how it is sealed.
struct Sealed<'a> {
    encrypted: Option<&'a str>,
    signature: Option<&'a std::path::Path>,
    key_id: Option<&'a str>,
    /// The approvers' report: (HTML, Markdown).
    report: Option<&'a (PathBuf, PathBuf)>,
}

/// What a person reads after `airgap bundle`: the warnings (even with `-q`), then what went
/// in, what was written, and the commands that open it on the target.
fn print_summary(report: &BundleReport, ui: &Ui, sealed: Sealed<'_>) {
    for warning in &report.warnings {
        ui.warn(warning);
    }
    if ui.quiet {
        return;
    }
    print_contents(report, ui);
    print_written(
        report,
        ui,
        sealed.encrypted,
        sealed.signature,
        sealed.key_id,
    );
    if let Some((html, md)) = sealed.report {
        ui.status(
            "Report",
            &format!(
                "{} (and {}), for the approvers",
                html.display(),
                md.display()
            ),
        );
    }
    print_on_the_target(report, ui, sealed.encrypted, sealed.signature);
}

/// Each source with its plugin and counts, the Python, and what the target needs: the glibc
/// floor, the CUDA driver, and the check's warnings worth seeing on a passing bundle.
fn print_contents(report: &BundleReport, ui: &Ui) {
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
    if let Some(g) = &report.check.min_glibc {
        ui.status(
            "Needs",
            &format!("glibc >= {} on the target ({})", g.version, floor_source(g)),
        );
    }
    if let Some(c) = &report.check.cuda {
        ui.status("", &super::check::cuda_line(c));
    }
    for w in report
        .check
        .warnings
        .iter()
        .filter(|w| w.contains("loads only on demand") || w.starts_with("the glibc floor"))
    {
        ui.warn(w);
    }
}

/// The archive written (size, counts, the start of its sha256), and how it is sealed.
fn print_written(
    report: &BundleReport,
    ui: &Ui,
    encrypted: Option<&str>,
    signature: Option<&std::path::Path>,
    key_id: Option<&str>,
) {
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
    if let Some(list) = &report.volumes {
        ui.status(
            "Split",
            &format!(
                "into volumes {}.001, ... listed with their sha256s in {}",
                report.output.display(),
                list.display()
            ),
        );
    }
    if let Some((files, bytes, patched)) = report.reused {
        ui.status(
            "Delta",
            &format!(
                "{files} file(s) ({}) taken from the base, {patched} of them changed a little and carried as patches; on the target: airgap unpack {} --onto INSTALLED",
                human_bytes(bytes),
                report.output.display()
            ),
        );
    }
    for sbom in &report.sbom {
        ui.status("SBOM", &sbom.display().to_string());
    }
    if let Some(how) = encrypted {
        ui.status("Encrypted", &format!("{how} (age)"));
    }
    if let (Some(sig), Some(id)) = (signature, key_id) {
        ui.status("Signed", &format!("{} (minisign key {id})", sig.display()));
    }
}

/// The commands to type on the target, with the options its sealing needs: the
/// self-extracting file's own, airgap's, and, when the bundle carries its unpacker, the
/// same with only the standard tools.
fn print_on_the_target(
    report: &BundleReport,
    ui: &Ui,
    encrypted: Option<&str>,
    signature: Option<&std::path::Path>,
) {
    let archive = report
        .output
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let open = open_options(encrypted, signature.is_some());
    ui.println("\nOn the target:");
    if archive.ends_with(".run") {
        ui.println(&format!(
            "  sh {archive} /path/to/dest    (or --list, --verify, --extract-only DIR; needs only sh)"
        ));
        ui.println(&format!(
            "  or, with airgap there:  airgap verify {archive}{open} && airgap unpack {archive} /path/to/dest{open}"
        ));
        return;
    }
    // A delta goes onto the tree of the version it was made against.
    let place = match report.reused {
        Some(_) => "--onto /path/to/installed",
        None => "/path/to/dest",
    };
    if report.volumes.is_some() {
        let first = format!("{archive}.001");
        ui.println(&format!(
            "  airgap verify {first}{open} && airgap unpack {first} {place}{open}"
        ));
        ui.println(&format!(
            "  or, to make the whole file again:  cat {archive}.[0-9][0-9][0-9] > {archive}"
        ));
        return;
    }
    ui.println(&format!(
        "  airgap verify {archive}{open} && airgap unpack {archive} {place}{open}"
    ));
    if report.unpacker.is_some() {
        let mut steps = without_airgap(&report.name, &archive, encrypted, signature.is_some());
        if let Some(last) = steps.last_mut() {
            *last = format!("./{}/unpack {place}", report.name);
        }
        ui.println(&format!(
            "  or, without airgap there:  {}",
            steps.join(" && ")
        ));
    }
}

/// The options `airgap verify` and `airgap unpack` need to open a sealed bundle.
fn open_options(encrypted: Option<&str>, signed: bool) -> String {
    let mut open = String::new();
    if encrypted.is_some() {
        open.push_str(if encrypted == Some("with a passphrase") {
            " --passphrase"
        } else {
            " -i KEY.age.key"
        });
    }
    if signed {
        open.push_str(" --trusted-key KEY.minisign.pub");
    }
    open
}

/// The steps without airgap on the target: check the signature (minisign), decrypt (age),
/// extract (tar) and run the bundled unpacker of bundle `name`.
fn without_airgap(name: &str, archive: &str, encrypted: Option<&str>, signed: bool) -> Vec<String> {
    // age must not write over its own input: `-o demo.tar.gz --encrypt-to ...` has no `.age`.
    let plain = match archive.strip_suffix(".age") {
        Some(plain) => plain.to_string(),
        None if encrypted.is_some() => format!("decrypted-{archive}"),
        None => archive.to_string(),
    };
    let extract = if plain.ends_with(".zst") {
        "tar --zstd -xf"
    } else {
        "tar xzf"
    };
    let mut steps = Vec::new();
    if signed {
        steps.push(format!("minisign -Vm {archive} -p KEY.minisign.pub"));
    }
    if encrypted.is_some() {
        steps.push(if encrypted == Some("with a passphrase") {
            format!("age -d -o {plain} {archive}")
        } else {
            format!("age -d -i KEY.age.key -o {plain} {archive}")
        });
    }
    steps.push(format!("{extract} {plain}"));
    steps.push(format!("./{name}/unpack /path/to/dest"));
    steps
}

/// The file that sets the glibc floor, and whether airgap added it.
pub(crate) fn floor_source(g: &airgap_core::check::Requirement) -> String {
    if g.grafted {
        format!("{}, grafted by airgap from this machine", g.file)
    } else {
        g.file.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::without_airgap;

    /// The decrypted file never has the encrypted one's name, whatever `-o` said.
    #[test]
    fn the_age_step_never_writes_over_its_input() {
        for archive in ["demo.tar.gz", "demo.tar.gz.age", "demo.tar.zst"] {
            for how in ["to 1 recipient", "with a passphrase"] {
                let steps = without_airgap("demo", archive, Some(how), false);
                let age = steps
                    .iter()
                    .find(|s| s.starts_with("age -d"))
                    .expect("an age step");
                let words: Vec<&str> = age.split_whitespace().collect();
                let out = words[words.iter().position(|w| *w == "-o").expect("-o") + 1];
                assert_ne!(out, archive, "{age}");
                assert!(
                    steps.iter().any(|s| s.ends_with(&format!(" {out}"))),
                    "{steps:?}"
                );
            }
        }
        let zst = without_airgap("demo", "demo.tar.zst", Some("to 1 recipient"), false);
        assert!(
            zst.iter()
                .any(|s| s.starts_with("tar --zstd -xf decrypted-demo.tar.zst")),
            "{zst:?}"
        );
    }
}
