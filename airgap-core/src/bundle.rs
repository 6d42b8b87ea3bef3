//! `airgap bundle`: run the source plugins stage by stage, feed what they name into one archive
//! plan, check the result against the target, then write the archive.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use airgap_archive::format::model as format;
use airgap_archive::install::stale::ScratchDir;
use airgap_archive::pack::write::OutputFilter;
use airgap_archive::progress::{Level, Progress};
use airgap_archive::PlannedKind;
use airgap_archive::{
    Compression, ManifestInput, PackageRecord, Plan, PlanOptions, PluginRecord, StepRecord,
    WriteOptions, WriteSummary,
};
use airgap_plugin_api::{ContributeRequest, EntryKind, PythonEnvironment, Stage, TargetProfile};
use serde::Serialize;

use crate::check::CheckReport;
use crate::config::{validate_bundle_name, Config};
use crate::registry::Registry;
use crate::Error;

/// Choices of one `airgap bundle` run that are not in the configuration file.
#[derive(Debug, Clone, Default)]
pub struct BundleOptions {
    /// Where to write the archive (overrides `[bundle] output`).
    pub output: Option<PathBuf>,
    /// The target path, when known: prefixes are rewritten at bundle time.
    pub dest_prefix: Option<String>,
    /// Compression (overrides `[bundle] compression`).
    pub compression: Option<Compression>,
    /// Write the bundle even if the target check fails.
    pub no_check: bool,
    /// Libraries loaded on demand that would not load on the target fail the check
    /// (`--strict`; `[check] strict = true` does the same).
    pub strict: bool,
    /// Drop dangling links with a warning.
    pub drop_dangling: bool,
    /// More detail for plugins.
    pub verbose: bool,
    /// A probed target (`--target FILE|CODE`), over `[target] profile`; a relative file is
    /// relative to the working directory.
    pub target: Option<String>,
    /// The unpacker binary to carry; found next to the executable when absent.
    pub unpacker: Option<PathBuf>,
    /// Compression threads (0 = all cores).
    pub threads: usize,
    /// zstd long-distance matching (`--long`).
    pub zstd_long: bool,
    /// Seconds one source plugin may run (0 = no limit; overrides `[bundle] plugin-timeout`).
    pub plugin_timeout: Option<u64>,
    /// A filter of the archive's bytes on their way to disk (encryption, from `airgap-seal`),
    /// and the suffix it adds to the default output name (`.age`).
    pub filter: Option<(Arc<dyn OutputFilter>, String)>,
    /// Write a self-extracting `NAME.run` instead of the plain archive (`--self-extracting`).
    pub self_extracting: bool,
    /// Write the archive as volumes of at most this many bytes (`--split-size`).
    pub split: Option<u64>,
    /// Write a delta against this previous version (`--since`): a bundle, an extracted
    /// bundle or installed tree (its `.airgap/manifest.toml`), or a manifest file.
    pub since: Option<PathBuf>,
    /// Also write the SBOM as SPDX 2.3 JSON beside the bundle (`NAME.spdx.json`).
    pub spdx: bool,
    /// Skip the self-test's trial on this machine: the bundle then carries no record, and
    /// every failure on the target counts.
    pub no_trial: bool,
}

/// The previous version a delta is written against, read before any plugin runs.
fn load_base(
    base: &Path,
    options: &BundleOptions,
) -> Result<airgap_archive::pack::delta::DeltaBase, Error> {
    if options.self_extracting {
        return Err(airgap_archive::ArchiveError::SelfExtracting {
            output: options.output.clone().unwrap_or_default(),
            reason: "--since writes a delta, which is applied with `unpack --onto`; a .run cannot carry one".into(),
            help: "drop --self-extracting for the delta (the carried unpacker applies it: NAME/unpack --from DELTA.tar.gz --onto INSTALLED)".into(),
        }
        .into());
    }
    use airgap_archive::install::read::ManifestFrom;
    let (manifest, from) = airgap_archive::install::read::open_manifest_any(base)?;
    let delta = airgap_archive::pack::delta::DeltaBase::new(manifest)?;
    // The base's contents, for patches of the files that changed a little: read from the
    // previous bundle when asked, or the tree itself; a manifest alone has none.
    let contents = match from {
        ManifestFrom::Tree => Some(BaseContents::Tree(base.to_path_buf())),
        ManifestFrom::Bundle => Some(BaseContents::Bundle {
            path: base.to_path_buf(),
            scratch: std::sync::Mutex::new(None),
        }),
        ManifestFrom::ManifestFile => None,
    };
    Ok(match contents {
        Some(c) => delta.with_references(Arc::new(c)),
        None => delta,
    })
}

/// Where a delta's writer finds the base's bundled contents.
#[derive(Debug)]
enum BaseContents {
    /// The previous bundle: the files asked for are extracted (verified, by the one
    /// reader) into a scratch directory that lives as long as this.
    Bundle {
        path: PathBuf,
        scratch: std::sync::Mutex<Option<ScratchDir>>,
    },
    /// An extracted or installed tree (the writer checks each file against the base's
    /// manifest, so a relocated one is carried whole).
    Tree(PathBuf),
}

impl airgap_archive::pack::delta::References for BaseContents {
    fn fetch(
        &self,
        paths: &[Vec<u8>],
        progress: &dyn Progress,
    ) -> Result<PathBuf, airgap_archive::ArchiveError> {
        let (path, scratch) = match self {
            BaseContents::Tree(tree) => return Ok(tree.clone()),
            BaseContents::Bundle { path, scratch } => (path, scratch),
        };
        let io = |cause: std::io::Error| airgap_archive::ArchiveError::Io {
            action: "creating",
            path: std::env::temp_dir(),
            cause,
        };
        let (dir, _) = ScratchDir::new(&std::env::temp_dir(), "airgap-base-").map_err(io)?;
        let root = dir.path().join("base");
        std::fs::create_dir(&root).map_err(io)?;
        let wanted: std::collections::BTreeSet<Vec<u8>> = paths.iter().cloned().collect();
        let want = move |p: &str, _: u32, _: &[u8]| wanted.contains(p.as_bytes());
        match airgap_archive::install::read::pick_bundle(path, &root, &want, progress) {
            // A delta as the base: its own files only; the rest are carried whole.
            Ok(_) | Err(airgap_archive::ArchiveError::DeltaNeedsBase { .. }) => {}
            Err(e) => return Err(e),
        }
        if let Ok(mut held) = scratch.lock() {
            *held = Some(dir);
        }
        Ok(root)
    }
}

/// Seconds a source plugin may run by default: generous, since resolving and downloading a
/// large environment through a slow proxy takes long, but a hung plugin still ends.
pub const DEFAULT_PLUGIN_TIMEOUT: u64 = 3600;

/// What one source brought.
#[derive(Debug, Clone, Serialize)]
pub struct SourceReport {
    /// The `[sources.NAME]` key.
    pub name: String,
    /// The plugin that served it.
    pub plugin: String,
    /// The plugin's version.
    pub plugin_version: String,
    /// Paths it added to the bundle.
    pub files: usize,
    /// Packages it brought.
    pub packages: usize,
    /// Install steps it asked for.
    pub install_steps: usize,
}

/// Everything the plugins said, resolved into a plan, before anything is written.
pub struct Planned {
    /// The files.
    pub plan: Plan,
    /// The manifest to write with them.
    pub manifest: ManifestInput,
    /// Per source.
    pub sources: Vec<SourceReport>,
    /// Warnings from plugins and the planner.
    pub warnings: Vec<String>,
    /// Scratch space of the plugins: must outlive the writing of the archive.
    pub work: ScratchDir,
}

/// The result of a written bundle.
#[derive(Debug, Clone, Serialize)]
pub struct BundleReport {
    /// Top folder inside the archive.
    pub name: String,
    /// The archive.
    pub output: PathBuf,
    /// sha256 of the archive (also in `OUTPUT.sha256`).
    pub sha256: String,
    /// Paths in the bundle.
    pub files: u64,
    /// Bytes before compression.
    pub bytes_in: u64,
    /// Bytes of the archive.
    pub bytes_out: u64,
    /// Bytes saved by storing identical files once.
    pub deduplicated: u64,
    /// Packages in the manifest.
    pub packages: usize,
    /// Per source.
    pub sources: Vec<SourceReport>,
    /// Warnings.
    pub warnings: Vec<String>,
    /// The target check.
    pub check: CheckReport,
    /// The target profile recorded in the manifest.
    pub target: format::TargetProfile,
    /// The bundled Python, if any.
    pub python: Option<format::PythonEnvironment>,
    /// The unpacker carried inside, if any.
    pub unpacker: Option<PathBuf>,
    /// The volume list, when the archive was split into volumes (`OUTPUT.001`, …; `output`
    /// is then the name their concatenation takes).
    pub volumes: Option<PathBuf>,
    /// A delta (`--since`): files taken from the base, their bytes, and how many of them
    /// go as patches.
    pub reused: Option<(u64, u64, u64)>,
    /// The bill of materials written beside the bundle: `NAME.cdx.json` (the bytes the
    /// bundle carries as `.airgap/sbom.cdx.json`), and `NAME.spdx.json` when asked for.
    pub sbom: Vec<PathBuf>,
    /// What the manifest holds besides its files, for the approvers' report.
    #[serde(skip)]
    pub manifest: ManifestInput,
    /// A delta's base (`--since`): its name, the sha256 of its manifest and its packages.
    #[serde(skip)]
    pub base: Option<BaseSummary>,
}

/// What a report says of a delta's base.
#[derive(Debug, Clone)]
pub struct BaseSummary {
    /// The base's bundle name.
    pub name: String,
    /// The sha256 of its manifest text: the tree the delta applies to.
    pub identity: String,
    /// Its packages.
    pub packages: Vec<airgap_archive::PackageRecord>,
}

/// Run every source of the configuration and build the plan. Nothing is written.
pub fn plan_bundle(
    config: &Config,
    registry: &Registry,
    options: &BundleOptions,
    progress: &dyn Progress,
    cancelled: &AtomicBool,
) -> Result<Planned, Error> {
    let bundle_name = config.bundle_name();
    validate_bundle_name(&bundle_name)?;
    if config.sources.is_empty() {
        return Err(Error::ConfigParse {
            path: config
                .path
                .clone()
                .unwrap_or_else(|| PathBuf::from("<config>")),
            message: "no [sources.*] table: nothing to bundle".into(),
        });
    }
    // A probed target that does not read fails before any plugin runs.
    let probed = match (&options.target, &config.target.profile) {
        (Some(given), _) => Some(crate::target::load(given, Path::new("."))?),
        (None, Some(given)) => Some(crate::target::load(given, &config.dir)?),
        (None, None) => None,
    };
    let mut runs = runs_of(config.sources.iter().enumerate(), registry)?;
    let has_environment = runs.iter().any(|r| r.plugin.stage == Stage::Environment);
    let implied = config.implied_sources(has_environment);
    let first = config.sources.len();
    runs.extend(runs_of((first..).zip(&implied), registry)?);
    for source in &implied {
        progress.message(
            Level::Info,
            &format!(
                "source {0} is on: every environment needs its system libraries ([sources.{0}] enabled = false turns it off)",
                source.name
            ),
        );
    }
    // By stage, then as the configuration lists them, the implied ones last.
    runs.sort_by_key(|r| (r.plugin.stage, r.index));
    let work = scratch_dir(progress)?;
    let mut target = config.target_profile();
    if let Some(p) = &probed {
        crate::target::apply(p, &mut target, has_environment);
    }
    if options.dest_prefix.is_some() {
        target.prefix = options.dest_prefix.clone();
    }
    let mut gathered = Gathered::new(target);
    let mut plan = Plan::new(PlanOptions {
        drop_dangling: options.drop_dangling || config.bundle.drop_dangling_links,
        memory_paths: 0,
        work_dir: Some(work.path().to_path_buf()),
        generated_mtime: generated_mtime(&mut gathered.warnings),
        own_output: own_output(&output_of(config, options)?),
    });
    let call = Call {
        config,
        options,
        bundle_name: &bundle_name,
        work: work.path(),
        limit: plugin_limit(config, options),
        progress,
        cancelled,
    };
    for run in runs {
        if cancelled.load(Ordering::Relaxed) {
            return Err(Error::Cancelled);
        }
        gathered.run_source(&call, &run, &mut plan)?;
    }
    gathered.warnings.extend(plan.warnings().iter().cloned());
    let warnings = gathered.warnings.clone();
    let (manifest, sources) = gathered.into_manifest(bundle_name);
    Ok(Planned {
        plan,
        manifest,
        sources,
        warnings,
        work,
    })
}

/// One source to run, with the plugin that serves it.
struct Run<'a> {
    index: usize,
    source: &'a crate::config::SourceTable,
    plugin: &'a crate::plugin::Plugin,
}

/// The plugin of each source, resolved before any runs, so that a missing one fails before
/// any work is done.
fn runs_of<'a>(
    sources: impl Iterator<Item = (usize, &'a crate::config::SourceTable)>,
    registry: &'a Registry,
) -> Result<Vec<Run<'a>>, Error> {
    sources
        .map(|(index, source)| {
            Ok(Run {
                index,
                source,
                plugin: registry.get(&source.plugin)?,
            })
        })
        .collect()
}

/// The plugins' scratch space in `$TMPDIR`, named after this process and locked while it
/// runs, so that the next run removes what a killed one left.
fn scratch_dir(progress: &dyn Progress) -> Result<ScratchDir, Error> {
    let (work, stale) =
        ScratchDir::new(&std::env::temp_dir(), "airgap-work-").map_err(|source| Error::Io {
            path: std::env::temp_dir(),
            cause: source,
        })?;
    for dir in stale {
        progress.message(
            Level::Info,
            &format!(
                "removed {}, left by a bundle run that was killed",
                dir.display()
            ),
        );
    }
    Ok(work)
}

/// How long one plugin may run: `--plugin-timeout`, `[bundle] plugin-timeout`, else the
/// default; 0 is no limit.
fn plugin_limit(config: &Config, options: &BundleOptions) -> Option<std::time::Duration> {
    match options
        .plugin_timeout
        .or(config.bundle.plugin_timeout)
        .unwrap_or(DEFAULT_PLUGIN_TIMEOUT)
    {
        0 => None,
        seconds => Some(std::time::Duration::from_secs(seconds)),
    }
}

/// What every plugin call of one run shares.
struct Call<'a> {
    config: &'a Config,
    options: &'a BundleOptions,
    bundle_name: &'a str,
    work: &'a Path,
    limit: Option<std::time::Duration>,
    progress: &'a dyn Progress,
    cancelled: &'a AtomicBool,
}

/// What the sources said so far, besides their files (which go to the plan): what later
/// plugins are told, and what the manifest records.
struct Gathered {
    target: TargetProfile,
    python: Option<PythonEnvironment>,
    facts: std::collections::BTreeMap<String, serde_json::Value>,
    packages: Vec<PackageRecord>,
    steps: Vec<StepRecord>,
    reports: Vec<SourceReport>,
    plugin_records: Vec<PluginRecord>,
    warnings: Vec<String>,
}

impl Gathered {
    fn new(target: TargetProfile) -> Gathered {
        Gathered {
            target,
            python: None,
            facts: Default::default(),
            packages: Vec::new(),
            steps: Vec::new(),
            reports: Vec::new(),
            plugin_records: Vec::new(),
            warnings: Vec::new(),
        }
    }

    /// Run one source's plugin and take in what it brought: its entries into the plan,
    /// checked against the plugin contract, and the rest into what is gathered.
    fn run_source(&mut self, call: &Call<'_>, run: &Run<'_>, plan: &mut Plan) -> Result<(), Error> {
        let (source, plugin) = (run.source, run.plugin);
        let work_dir = call.work.join(format!("{:02}-{}", run.index, source.name));
        std::fs::create_dir_all(&work_dir).map_err(|source| Error::Io {
            path: work_dir.clone(),
            cause: source,
        })?;
        let request = self.request(call, run, work_dir, plan)?;
        call.progress.message(
            airgap_archive::progress::Level::Info,
            &format!(
                "source {} (plugin {} {})",
                source.name, plugin.name, plugin.version
            ),
        );
        let mut contribution = plugin
            .contribute_within(
                &request,
                crate::Earlier::Plan(plan),
                call.progress,
                call.cancelled,
                call.limit,
            )
            .map_err(|e| match e {
                Error::PluginFailed {
                    plugin,
                    source_name,
                    message,
                    help,
                    ..
                } => Error::PluginFailed {
                    plugin,
                    source_name,
                    config: call.config.path.clone(),
                    message,
                    help,
                },
                other => other,
            })?;
        check_contract(&plugin.name, &contribution.entries)?;
        // Converted on the way into the plan; the first entry of a kind this host does not
        // know stops the run.
        let mut refused = None;
        let entries = std::mem::take(&mut contribution.entries)
            .into_iter()
            .map_while(|e| {
                crate::convert::entry(&plugin.name, e)
                    .map_err(|e| refused = Some(e))
                    .ok()
            });
        let added = plan.extend(&plugin.name, entries, call.progress)?;
        if let Some(e) = refused {
            return Err(e);
        }
        check_claims(&plugin.name, &contribution, plan)?;
        self.absorb(run, contribution, added)
    }

    /// The request for one source: its table, the target, and what earlier sources brought.
    fn request(
        &self,
        call: &Call<'_>,
        run: &Run<'_>,
        work_dir: PathBuf,
        plan: &Plan,
    ) -> Result<ContributeRequest, Error> {
        let mut request = ContributeRequest::default();
        request.source.clone_from(&run.source.name);
        request.config = run.source.config.clone();
        request.config_dir.clone_from(&call.config.dir);
        request.bundle_name = call.bundle_name.to_owned();
        request.target = self.target.clone();
        request.work_dir = work_dir;
        // An ABI 1.0 Finish-stage plugin gets every earlier file here; a newer one pages
        // through them from the plan (`Earlier::Plan` in `run_source`).
        if run.plugin.stage == Stage::Finish && !run.plugin.pages_earlier() {
            request.earlier = plan
                .iter_files()
                .map(|f| f.map(crate::convert::bundle_file))
                .collect::<Result<_, _>>()?;
        }
        request.python = self.python.clone();
        request.facts = self.facts.clone();
        request.verbose = call.options.verbose;
        Ok(request)
    }

    /// Take in a contribution whose entries are planned: its Python (the first one stays the
    /// target's interpreter), facts, warnings, packages and steps.
    fn absorb(
        &mut self,
        run: &Run<'_>,
        contribution: airgap_plugin_api::Contribution,
        added: usize,
    ) -> Result<(), Error> {
        let (source, plugin) = (run.source, run.plugin);
        if let Some(env) = &contribution.python {
            if self.python.is_some() {
                self.warnings.push(format!(
                    "source `{}` brings a second Python environment ({}); the first one stays the target's interpreter",
                    source.name, env.prefix
                ));
            } else {
                complete_target(&mut self.target, env);
                self.python = Some(env.clone());
            }
        }
        if !contribution.facts.is_empty() {
            self.facts.insert(
                plugin.name.clone(),
                serde_json::Value::Object(contribution.facts.clone().into_iter().collect()),
            );
        }
        self.warnings.extend(
            contribution
                .warnings
                .iter()
                .map(|w| format!("{}: {w}", source.name)),
        );
        self.reports.push(SourceReport {
            name: source.name.clone(),
            plugin: plugin.name.clone(),
            plugin_version: plugin.version.clone(),
            files: added,
            packages: contribution.packages.len(),
            install_steps: contribution.install_steps.len(),
        });
        self.plugin_records.push(PluginRecord {
            name: plugin.name.clone(),
            version: plugin.version.clone(),
            abi: format!("{}.{}", plugin.abi.0, plugin.abi.1),
            source: source.name.clone(),
        });
        for mut package in contribution.packages {
            if let Some(purl) = package.purl.take() {
                match crate::convert::valid_purl(&purl) {
                    true => package.purl = Some(purl),
                    false => self.warnings.push(format!(
                        "{}: package {} has the purl {purl:?}, which is not a package URL: left out of the SBOM",
                        source.name, package.id
                    )),
                }
            }
            self.packages.push(PackageRecord {
                plugin: plugin.name.clone(),
                package: crate::convert::package(package),
            });
        }
        for step in contribution.install_steps {
            self.steps.push(StepRecord {
                plugin: plugin.name.clone(),
                step: crate::convert::step(&plugin.name, step)?,
            });
        }
        Ok(())
    }

    /// The manifest's metadata, in the format's own types, and the per-source report.
    fn into_manifest(self, bundle_name: String) -> (ManifestInput, Vec<SourceReport>) {
        let manifest = ManifestInput {
            bundle_name,
            airgap_version: env!("CARGO_PKG_VERSION").to_string(),
            plugins: self.plugin_records,
            target: crate::convert::target(&self.target),
            python: self.python.as_ref().map(crate::convert::python),
            packages: self.packages,
            install_steps: self.steps,
            warnings: self.warnings,
        };
        (manifest, self.reports)
    }
}

/// The mtime of the files plugins make during the run: `SOURCE_DATE_EPOCH` when set (the
/// reproducible-builds convention), else 0, so that bundling twice gives the same bytes.
fn generated_mtime(warnings: &mut Vec<String>) -> u64 {
    match std::env::var("SOURCE_DATE_EPOCH") {
        Err(_) => 0,
        Ok(v) => v.trim().parse().unwrap_or_else(|_| {
            warnings.push(format!(
                "SOURCE_DATE_EPOCH={v:?} is not a number of seconds: files made while bundling get mtime 0"
            ));
            0
        }),
    }
}

/// Where the bundle goes: `-o`, else `[bundle] output`, else `NAME.tar.gz` (`.tar.zst`,
/// `.age` when encrypted) here.
fn output_of(config: &Config, options: &BundleOptions) -> Result<PathBuf, Error> {
    if let Some(o) = options
        .output
        .clone()
        .or_else(|| config.bundle.output.clone())
    {
        return Ok(o);
    }
    let compression = match options.compression {
        Some(c) => c,
        None => choose_compression(config, None, None)?,
    };
    if options.self_extracting {
        return Ok(PathBuf::from(format!("{}.run", config.bundle_name())));
    }
    Ok(PathBuf::from(format!(
        "{}.{}{}",
        config.bundle_name(),
        match compression {
            Compression::Zstd { .. } => "tar.zst",
            Compression::Gzip { .. } => "tar.gz",
        },
        options.filter.as_ref().map(|f| f.1.as_str()).unwrap_or("")
    )))
}

/// The files a run writes at `output` that exist already, as (device, inode): the temporary
/// `.NAME.partial` of a killed run and, when what is at `output` is an airgap bundle (its
/// manifest reads: an earlier run's, which this one replaces), the bundle, its `.sha256`,
/// `.minisig`, bill of materials and report. Anything else there (a data file, an encrypted
/// bundle that cannot be proven ours) is left to the walk, and so refused as an input.
fn own_output(output: &Path) -> Vec<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    let Some(name) = output.file_name().map(|n| n.to_string_lossy().into_owned()) else {
        return Vec::new();
    };
    let dir = output.parent().unwrap_or(Path::new(""));
    let mut names = vec![format!(".{name}.partial")];
    if output.is_file() && airgap_archive::read_manifest(output).is_ok() {
        names.extend([
            name.clone(),
            format!("{name}.sha256"),
            format!("{name}.minisig"),
        ]);
        for format in [airgap_sbom::Format::CycloneDx, airgap_sbom::Format::Spdx] {
            let sbom = beside(Path::new(&name), format.suffix())
                .to_string_lossy()
                .into_owned();
            names.extend([format!("{sbom}.minisig"), sbom]);
        }
        names.extend(report_names(&name));
    }
    names.extend(own_volumes(dir, &name));
    names
        .iter()
        .filter_map(|n| std::fs::metadata(dir.join(n)).ok())
        .filter(|m| m.is_file())
        .map(|m| (m.dev(), m.ino()))
        .collect()
}

/// The approvers' report files beside bundle `name` (`airgap bundle` writes them, and a
/// later run replaces them), and their temporary names.
pub fn report_names(name: &str) -> [String; 4] {
    let html = format!("{name}.report.html");
    let md = format!("{name}.report.md");
    [
        format!(".{html}.partial"),
        format!(".{md}.partial"),
        html,
        md,
    ]
}

/// The files of an earlier run that split bundle `name` into volumes: the list (when it
/// reads as airgap's), its signature, the volumes it lists, and their temporary names.
fn own_volumes(dir: &Path, name: &str) -> Vec<String> {
    use airgap_archive::format::volumes::{list_name, volume_name, VolumeList, MAX_LIST};
    let list = list_name(name);
    let Ok(meta) = std::fs::metadata(dir.join(&list)) else {
        return Vec::new();
    };
    if !meta.is_file() || meta.len() > MAX_LIST {
        return Vec::new();
    }
    let Some(parsed) = std::fs::read_to_string(dir.join(&list))
        .ok()
        .and_then(|text| VolumeList::parse(&text, name).ok())
    else {
        return Vec::new();
    };
    let mut names = vec![format!("{list}.minisig"), format!("{name}.sha256")];
    names.extend(report_names(name));
    for number in 1..=parsed.volumes.len() {
        let volume = volume_name(name, number);
        names.push(format!(".{volume}.partial"));
        names.push(volume);
    }
    names.push(list);
    names
}

/// Whether two paths name one existing file.
fn same_file(a: &Path, b: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (std::fs::metadata(a), std::fs::metadata(b)) {
        (Ok(x), Ok(y)) => x.dev() == y.dev() && x.ino() == y.ino(),
        _ => false,
    }
}

/// Plan, check and write a bundle.
pub fn bundle(
    config: &Config,
    registry: &Registry,
    options: &BundleOptions,
    progress: &dyn Progress,
    cancelled: &AtomicBool,
) -> Result<BundleReport, Error> {
    // A given output is checked before any plugin runs: a device, a fifo, a missing
    // directory or the config file itself is refused at once, not after the whole build.
    if let Some(output) = options.output.as_ref().or(config.bundle.output.as_ref()) {
        airgap_archive::pack::write::check_output(output)?;
        if let Some(config_path) = &config.path {
            if same_file(output, config_path) {
                return Err(airgap_archive::ArchiveError::Output {
                    path: output.clone(),
                    reason: format!("is the config file {}", config_path.display()),
                }
                .into());
            }
        }
    }
    let compression = match options.compression {
        Some(c) => c,
        None => choose_compression(config, None, None)?,
    };
    let unpacker = options.unpacker.clone().or_else(find_unpacker);
    let delta = match &options.since {
        Some(base) => Some(Arc::new(load_base(base, options)?)),
        None => None,
    };
    let base = delta.as_ref().map(|d| BaseSummary {
        name: d.name.clone(),
        identity: d.identity.clone(),
        packages: d.packages().to_vec(),
    });
    let mut write_options = WriteOptions {
        compression,
        threads: options.threads,
        unpacker: unpacker.clone(),
        filter: options.filter.as_ref().map(|f| f.0.clone()),
        memory_paths: 0,
        self_extracting: options.self_extracting,
        zstd_long: options.zstd_long,
        split: options.split,
        delta,
        own_files: Vec::new(),
    };
    // A .run without its unpacker, encrypted or split, and a split size too small, are
    // refused before the plugins run.
    airgap_archive::pack::write::check_split(&output_of(config, options)?, &write_options)?;
    airgap_archive::pack::write::check_self_extracting(
        &output_of(config, options)?,
        &write_options,
    )?;
    let planned = plan_bundle(config, registry, options, progress, cancelled)?;
    // The self-test's trial runs the environment's own interpreter while the check reads
    // ELF files: two independent jobs, side by side.
    let (check, trial) = std::thread::scope(|scope| {
        let trial = scope.spawn(|| trial(&planned, options, progress));
        let check = crate::check::check_planned_against(
            &planned,
            None,
            options.strict || config.check.strict,
            unpacker.as_deref(),
        );
        (check, trial.join())
    });
    let check = check?;
    let trial = trial.map_err(|_| Error::Internal("the self-test trial panicked".into()))??;
    if !check.passed() && !options.no_check {
        return Err(Error::CheckFailed {
            report: Box::new(check),
            plugins: planned.sources.iter().map(|s| s.plugin.clone()).collect(),
        });
    }
    if cancelled.load(Ordering::Relaxed) {
        return Err(Error::Cancelled);
    }
    let output = output_of(config, options)?;
    if let Some(record) = trial {
        write_options
            .own_files
            .push((airgap_selftest::SELF_TEST_PATH, record));
    }
    let sbom = Sbom::of(&planned.manifest)?;
    let inside = planned.work.path().join("sbom.cdx.json");
    std::fs::write(&inside, &sbom.cyclonedx).map_err(|cause| Error::Io {
        path: inside.clone(),
        cause,
    })?;
    write_options
        .own_files
        .push((airgap_sbom::INSIDE_PATH, inside));
    let summary: WriteSummary = airgap_archive::write_bundle(
        &planned.plan,
        planned.manifest.clone(),
        &output,
        &write_options,
        progress,
    )?;
    let sbom = sbom.write_beside(&summary.output, options.spdx)?;
    let mut warnings = planned.warnings.clone();
    if unpacker.is_none() {
        warnings.push(
            "no airgap-unpack binary found next to airgap: the bundle carries no unpacker, so the target needs airgap itself to install it".into(),
        );
    }
    Ok(BundleReport {
        name: planned.manifest.bundle_name.clone(),
        output: summary.output,
        sha256: summary.sha256,
        files: summary.files,
        bytes_in: summary.bytes_in,
        bytes_out: summary.bytes_out,
        deduplicated: summary.deduplicated,
        packages: planned.manifest.packages.len(),
        sources: planned.sources.clone(),
        warnings,
        check,
        target: planned.manifest.target.clone(),
        python: planned.manifest.python.clone(),
        unpacker,
        volumes: summary.volumes,
        reused: options
            .since
            .as_ref()
            .map(|_| (summary.reused.0, summary.reused.1, summary.patched)),
        sbom,
        manifest: planned.manifest,
        base,
    })
}

/// The self-test's trial on this machine (docs/self-test.md): every library, extension and
/// module of the environment loaded with its own interpreter; what fails here is recorded as
/// expected on the target, in a file of the work directory that the bundle carries. None
/// without a Python environment, or with `--no-trial`.
fn trial(
    planned: &Planned,
    options: &BundleOptions,
    progress: &dyn Progress,
) -> Result<Option<PathBuf>, Error> {
    let Some(env) = planned
        .manifest
        .python
        .as_ref()
        .filter(|_| !options.no_trial)
    else {
        return Ok(None);
    };
    progress.message(
        Level::Info,
        &format!(
            "self-test trial: loading every library and module of {} with {}",
            env.source_prefix.display(),
            env.source_executable.display()
        ),
    );
    let timeout = airgap_selftest::DEFAULT_TIMEOUT_SECS;
    let report = airgap_selftest::test_tree(
        &env.source_prefix,
        &env.prefix,
        Some(&env.source_executable),
        None,
        timeout,
        &|| progress.is_cancelled(),
        airgap_selftest::How::Screened,
    );
    if progress.is_cancelled() {
        return Err(Error::Cancelled);
    }
    let record = report.record(timeout);
    for e in &record.expected {
        progress.message(
            Level::Warn,
            &format!(
                "self-test trial: {} {} fails on this machine too ({}): it is recorded as expected to fail on the target",
                e.kind.as_str(),
                e.item,
                e.reason
            ),
        );
    }
    let path = planned.work.path().join("self-test.toml");
    std::fs::write(&path, record.to_toml()).map_err(|cause| Error::Io {
        path: path.clone(),
        cause,
    })?;
    Ok(Some(path))
}

/// A bundle's bill of materials, made before the archive is written (it goes inside).
struct Sbom<'a> {
    manifest: &'a ManifestInput,
    cyclonedx: Vec<u8>,
}

impl<'a> Sbom<'a> {
    /// The CycloneDX document of what the manifest will hold.
    fn of(manifest: &'a ManifestInput) -> Result<Sbom<'a>, Error> {
        let cyclonedx = airgap_sbom::cyclonedx_json(&sbom_input(manifest))?;
        Ok(Sbom {
            manifest,
            cyclonedx,
        })
    }

    /// Write `NAME.cdx.json` (and `NAME.spdx.json`) beside the written bundle, each whole
    /// or not at all; their paths.
    fn write_beside(self, output: &Path, spdx: bool) -> Result<Vec<PathBuf>, Error> {
        let mut written = Vec::new();
        let cdx = beside(output, airgap_sbom::Format::CycloneDx.suffix());
        airgap_archive::output::write_file_atomic(&cdx, &self.cyclonedx)?;
        written.push(cdx);
        if spdx {
            let path = beside(output, airgap_sbom::Format::Spdx.suffix());
            let bytes = airgap_sbom::spdx_json(&sbom_input(self.manifest))?;
            airgap_archive::output::write_file_atomic(&path, &bytes)?;
            written.push(path);
        }
        Ok(written)
    }
}

/// What the SBOM is made of, from the manifest; stamped with `SOURCE_DATE_EPOCH` when set.
fn sbom_input(manifest: &ManifestInput) -> airgap_sbom::Input<'_> {
    airgap_sbom::Input {
        bundle_name: &manifest.bundle_name,
        airgap_version: &manifest.airgap_version,
        plugins: &manifest.plugins,
        target: &manifest.target,
        packages: &manifest.packages,
        created: airgap_sbom::source_date_epoch(),
    }
}

/// The bundle's suffixes, longest first: what `NAME.tar.gz` loses to name the files beside it.
const BUNDLE_SUFFIXES: [&str; 5] = [".tar.gz", ".tar.zst", ".tgz", ".run", ".tar"];

/// A file beside the bundle `output`, named after it: `nlp.tar.gz`, `nlp.tar.gz.age` or
/// `nlp.run` and `.cdx.json` give `nlp.cdx.json` (what follows a bundle suffix is an
/// output filter's, such as encryption's `.age`). A name without a bundle suffix is kept
/// whole (`nlp.bin.cdx.json`).
pub fn beside(output: &Path, suffix: &str) -> PathBuf {
    let name = output
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let stem = BUNDLE_SUFFIXES
        .iter()
        .find_map(|s| {
            name.match_indices(s)
                .map(|(at, _)| at)
                .find(|at| {
                    let rest = &name[at + s.len()..];
                    *at > 0 && (rest.is_empty() || rest.starts_with('.'))
                })
                .map(|at| &name[..at])
        })
        .unwrap_or(&name);
    output.with_file_name(format!("{stem}{suffix}"))
}

/// The levels each compressor is given: gzip's 1 to 9 (0 would store uncompressed), zstd's
/// 1 to 19 (what the `zstd` tool takes without `--ultra`: 20 to 22 need up to 128 MiB more
/// memory to unpack, on a target nobody has measured).
const GZIP_LEVELS: (i32, i32) = (1, 9);
const ZSTD_LEVELS: (i32, i32) = (1, 19);

/// The compression of a run: `--compression` (`kind`) over `[bundle] compression`, and
/// `--level` (`level`) over `[bundle] level`, applying to whichever compression is chosen.
/// A level outside the compressor's range is refused, naming where it was given, before any
/// plugin runs.
pub fn choose_compression(
    config: &Config,
    kind: Option<&str>,
    level: Option<i32>,
) -> Result<Compression, Error> {
    let file = config
        .path
        .clone()
        .unwrap_or_else(|| PathBuf::from("<config>"));
    let (given, flag, level) = match (level, config.bundle.level) {
        (Some(l), _) => (format!("--level {l}"), true, Some(l)),
        (None, Some(l)) => (
            format!("[bundle] level = {l} in {}", file.display()),
            false,
            Some(l),
        ),
        (None, None) => (String::new(), false, None),
    };
    let checked = |codec: &'static str, range: (i32, i32), default: i32| match level {
        None => Ok(default),
        Some(l) if (range.0..=range.1).contains(&l) => Ok(l),
        Some(_) => Err(Error::Level {
            given: given.clone(),
            flag,
            codec,
            range,
            default,
        }),
    };
    match kind.or(config.bundle.compression.as_deref()) {
        None | Some("gzip") | Some("gz") => Ok(Compression::Gzip {
            level: checked(
                "gzip",
                GZIP_LEVELS,
                airgap_archive::pack::write::DEFAULT_GZIP_LEVEL as i32,
            )? as u32,
        }),
        Some("zstd") | Some("zst") => Ok(Compression::Zstd {
            level: checked(
                "zstd",
                ZSTD_LEVELS,
                airgap_archive::pack::write::DEFAULT_ZSTD_LEVEL,
            )?,
        }),
        Some(other) => Err(Error::ConfigParse {
            path: config
                .path
                .clone()
                .unwrap_or_else(|| PathBuf::from("<config>")),
            message: format!("[bundle] compression = {other:?}: use \"gzip\" or \"zstd\""),
        }),
    }
}

/// Fill what `[target]` left open from the bundled interpreter.
fn complete_target(target: &mut TargetProfile, env: &PythonEnvironment) {
    if target.python.is_none() && !env.version.is_empty() {
        target.python = Some(env.version.clone());
    }
    if target.implementation.is_none() && !env.implementation.is_empty() {
        target.implementation = Some(env.implementation.clone());
    }
    if target.abi.is_none() && !env.abi.is_empty() {
        target.abi = Some(env.abi.clone());
    }
    if target.platforms.is_empty() {
        // The interpreter's tags are the build machine's: none above the declared glibc.
        let floor = target.glibc.as_deref().and_then(airgap_elf::Version::parse);
        target.platforms = env
            .platforms
            .iter()
            .filter(|tag| {
                let promised = crate::config::glibc_of_platform_tag(tag)
                    .and_then(|g| airgap_elf::Version::parse(&g));
                match (&floor, promised) {
                    (Some(floor), Some(promised)) => promised <= *floor,
                    _ => true,
                }
            })
            .cloned()
            .collect();
    }
}

/// Entries must stay inside the bundle and out of airgap's own folder.
fn check_contract(plugin: &str, entries: &[airgap_plugin_api::Entry]) -> Result<(), Error> {
    for entry in entries {
        let dest = entry.dest.as_str();
        let bad = if let Some(why) = outside_the_bundle("destination", dest) {
            Some(why)
        } else if dest == ".airgap" || dest.starts_with(".airgap/") || dest == "unpack" {
            Some(format!(
                "destination {dest:?} is reserved for airgap itself"
            ))
        } else if let EntryKind::Path { source, .. } = &entry.kind {
            if !source.is_absolute() {
                Some(format!(
                    "source {} for {dest:?} is not an absolute path",
                    source.display()
                ))
            } else {
                std::fs::symlink_metadata(source).err().map(|e| {
                    format!(
                        "the source {} it names for {dest:?} cannot be read: {e}",
                        source.display()
                    )
                })
            }
        } else {
            None
        };
        if let Some(reason) = bad {
            return Err(Error::PluginContract {
                plugin: plugin.to_string(),
                reason,
            });
        }
    }
    Ok(())
}

/// Why `path` (a path inside the bundle, relative to its top) is not one, if it is not.
fn outside_the_bundle(what: &str, path: &str) -> Option<String> {
    if path.is_empty() {
        Some(format!("an empty {what} path"))
    } else if path.starts_with('/') {
        Some(format!("absolute {what} {path:?}"))
    } else if path.split('/').any(|c| c == "..") {
        Some(format!("{what} {path:?} leaves the bundle"))
    } else {
        None
    }
}

/// What a plugin says about its files after they are planned: the files its install steps
/// rewrite are files it brought, and its Python is inside the bundle. A plugin that claims
/// otherwise would fail on the target, after the transfer; here it fails before.
fn check_claims(
    plugin: &str,
    contribution: &airgap_plugin_api::Contribution,
    plan: &Plan,
) -> Result<(), Error> {
    let contract = |reason: String| Error::PluginContract {
        plugin: plugin.to_string(),
        reason,
    };
    if let Some(env) = &contribution.python {
        for (what, path) in [
            ("Python prefix", &env.prefix),
            ("Python executable", &env.executable),
        ] {
            if let Some(why) = outside_the_bundle(what, path) {
                return Err(contract(why));
            }
        }
        if plan.added_last(&env.executable)?.is_none() {
            return Err(contract(format!(
                "its Python executable {:?} is not among the files it brought",
                env.executable
            )));
        }
    }
    for step in &contribution.install_steps {
        if let airgap_plugin_api::InstallStep::RewritePrefix { root, files, .. } = step {
            if root != "." {
                if let Some(why) = outside_the_bundle("rewrite root", root) {
                    return Err(contract(why));
                }
            }
            for file in files {
                if let Some(why) = outside_the_bundle("file to rewrite", &file.path) {
                    return Err(contract(why));
                }
                if plan.added_last(&file.path)? != Some(PlannedKind::File) {
                    return Err(contract(format!(
                        "an install step rewrites {:?}, which is not a file it brought",
                        file.path
                    )));
                }
            }
        }
    }
    Ok(())
}

/// The unpacker to carry: `AIRGAP_UNPACKER`, else beside the executable (a dist folder keeps it
/// in `lib/airgap/`, a cargo target dir beside `airgap`).
pub fn find_unpacker() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("AIRGAP_UNPACKER") {
        let path = PathBuf::from(path);
        return path.is_file().then_some(path);
    }
    let exe = std::env::current_exe().ok()?.canonicalize().ok()?;
    let dir = exe.parent()?;
    [
        dir.join("../lib/airgap/airgap-unpack"),
        dir.join("airgap-unpack-static"),
        dir.join("airgap-unpack"),
    ]
    .into_iter()
    .find(|p| p.is_file())
    .and_then(|p| p.canonicalize().ok())
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    #[test]
    fn files_beside_a_bundle_are_named_after_it() {
        for (bundle, want) in [
            ("/o/nlp.tar.gz", "/o/nlp.cdx.json"),
            ("nlp.tar.zst.age", "nlp.cdx.json"),
            ("nlp.run", "nlp.cdx.json"),
            ("nlp.bin", "nlp.bin.cdx.json"),
            ("a.tar.gz.b.tar.gz", "a.cdx.json"),
        ] {
            assert_eq!(
                super::beside(Path::new(bundle), ".cdx.json"),
                Path::new(want),
                "{bundle}"
            );
        }
    }
}
