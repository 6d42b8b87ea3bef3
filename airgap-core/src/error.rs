//! Typed errors of the host. Each names the file or plugin at fault; [`Error::help`] says what
//! to do about it.

use std::path::PathBuf;

/// Everything that can go wrong in the host.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The configuration file could not be read.
    #[error("cannot read {}: {cause}", path.display())]
    ConfigRead {
        /// The file.
        path: PathBuf,
        /// Why, shown in the message (so not also returned by `source()`).
        cause: std::io::Error,
    },
    /// The configuration file is not valid.
    #[error("invalid configuration {}: {message}", path.display())]
    ConfigParse {
        /// The file.
        path: PathBuf,
        /// What is wrong, with the line where toml says it.
        message: String,
    },
    /// No configuration and no active environment.
    #[error("no Python environment to bundle: no -c airgap.toml given, and neither CONDA_PREFIX nor VIRTUAL_ENV is set")]
    NoActiveEnvironment,
    /// A compression level outside what the compressor takes.
    #[error("{given} is not a {codec} level ({codec} takes {} to {})", range.0, range.1)]
    Level {
        /// How it was given: `--level 99`, or `[bundle] level = 99 in FILE`.
        given: String,
        /// From the command line (else the configuration file).
        flag: bool,
        /// `gzip` or `zstd`.
        codec: &'static str,
        /// The levels taken.
        range: (i32, i32),
        /// The level used when none is given.
        default: i32,
    },
    /// The bundle name is not a single path component.
    #[error("invalid bundle name {0:?}: it must be one folder name")]
    BadBundleName(String),
    /// A source table names a plugin that was not found.
    #[error("no plugin for source `{name}`: found {}", if found.is_empty() { "no plugins at all".to_string() } else { found.join(", ") })]
    UnknownSource {
        /// The plugin name asked for.
        name: String,
        /// The usable plugins.
        found: Vec<String>,
        /// Where we looked.
        searched: Vec<PathBuf>,
    },
    /// `--target` or `[target] profile` names neither a readable profile nor a valid code.
    #[error("target {given:?}: {reason}")]
    TargetProfile {
        /// What was given.
        given: String,
        /// Why it does not read.
        reason: String,
    },
    /// A needed plugin exists but could not be loaded.
    #[error("the plugin for source `{name}` cannot be used: {reason}")]
    PluginUnusable {
        /// The plugin.
        name: String,
        /// Why.
        reason: String,
        /// What to do.
        help: Option<String>,
    },
    /// A plugin file could not be loaded.
    #[error("{}: {reason}", path.display())]
    PluginLoad {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
        /// What to do.
        help: String,
    },
    /// A plugin was built for an ABI this host does not speak.
    #[error("{}: built for plugin ABI {plugin_abi}, but this airgap speaks plugin ABI {host_abi}", path.display())]
    PluginIncompatible {
        /// The file.
        path: PathBuf,
        /// The plugin's ABI version.
        plugin_abi: String,
        /// The host's ABI version.
        host_abi: String,
        /// What to do.
        help: String,
    },
    /// A plugin returned an error.
    #[error("source `{source_name}`{} (plugin {plugin}): {message}", in_file(config.as_deref()))]
    PluginFailed {
        /// The plugin.
        plugin: String,
        /// The source table.
        source_name: String,
        /// The configuration file holding the table, when there is one: a plugin's message is
        /// often about its table, and the plugin does not know the file.
        config: Option<PathBuf>,
        /// The plugin's message.
        message: String,
        /// The plugin's advice.
        help: Option<String>,
    },
    /// A plugin ran past the time limit.
    #[error("plugin {plugin} ({}) was still running after {seconds} s, the time limit{}", path.display(), if *stopped { "; it stopped when asked" } else { ", and did not stop when asked: it was abandoned" })]
    PluginTimeout {
        /// The plugin.
        plugin: String,
        /// Its file.
        path: PathBuf,
        /// The limit.
        seconds: u64,
        /// Whether it returned once asked to stop.
        stopped: bool,
    },
    /// A plugin panicked.
    #[error("plugin {plugin} ({}) panicked: {message}", path.display())]
    PluginPanicked {
        /// The plugin.
        plugin: String,
        /// Its file.
        path: PathBuf,
        /// The panic message.
        message: String,
    },
    /// A plugin returned something that is not a contribution.
    #[error("plugin {plugin} ({}) returned malformed data: {reason}", path.display())]
    PluginMalformed {
        /// The plugin.
        plugin: String,
        /// Its file.
        path: PathBuf,
        /// What was wrong.
        reason: String,
    },
    /// A plugin contributed something it may not.
    #[error("plugin {plugin} broke the plugin contract: {reason}")]
    PluginContract {
        /// The plugin.
        plugin: String,
        /// What was wrong.
        reason: String,
    },
    /// The archive engine failed.
    #[error(transparent)]
    Archive(#[from] airgap_archive::ArchiveError),
    /// The bundle would not work on the declared target.
    #[error("the bundle will not work on the target: {}", report.problems.join("; "))]
    CheckFailed {
        /// What the check found: the CLI shows it as `airgap check` does.
        report: Box<crate::check::CheckReport>,
        /// The sources that ran, by plugin (the advice depends on whether `syslibs` did).
        plugins: Vec<String>,
    },
    /// The target to check against cannot be used (`airgap check --glibc/--manylinux/--target-root`).
    #[error("invalid check target: {reason}")]
    CheckTarget {
        /// What is wrong.
        reason: String,
    },
    /// The user pressed Ctrl-C.
    #[error("cancelled")]
    Cancelled,
    /// A file or directory operation of the host failed.
    #[error("{}: {cause}", path.display())]
    Io {
        /// The path.
        path: PathBuf,
        /// Why, shown in the message (so not also returned by `source()`).
        cause: std::io::Error,
    },
    /// The bill of materials could not be made.
    #[error(transparent)]
    Sbom(#[from] airgap_sbom::SbomError),
    /// A bug in airgap.
    #[error("internal error: {0}")]
    Internal(String),
}

/// ` in FILE`, or nothing.
fn in_file(path: Option<&std::path::Path>) -> String {
    path.map(|p| format!(" in {}", p.display()))
        .unwrap_or_default()
}

impl Error {
    /// Advice for the user, printed as a `help:` line.
    pub fn help(&self) -> Option<String> {
        match self {
            Error::TargetProfile { .. } => Some("give the file `airgap probe --out FILE` (or `NAME/unpack --probe > FILE`) wrote on the target, or the code it printed, character by character".into()),
            Error::ConfigRead { .. } => Some("pass the path of an airgap.toml with -c, or run without -c inside an activated environment".into()),
            Error::ConfigParse { .. } => Some("see docs/configuration.md for every key".into()),
            Error::NoActiveEnvironment => Some("activate the environment to bundle (conda activate / source bin/activate), or write an airgap.toml and pass -c airgap.toml".into()),
            Error::Level { flag, range, default, .. } => Some(if *flag {
                format!("give --level {} (fastest) to {} (smallest), or leave it out for the default {default}", range.0, range.1)
            } else {
                format!("set [bundle] level to {} (fastest) to {} (smallest), or remove it for the default {default}", range.0, range.1)
            }),
            Error::BadBundleName(_) => Some("set [bundle] name to a plain name like \"nlp-env\"".into()),
            Error::UnknownSource { searched, .. } => Some(format!(
                "searched {}; install the plugin there, pass --plugin-dir DIR, or set `plugin = \"NAME\"` in the source table",
                searched.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ")
            )),
            Error::PluginUnusable { help, .. } => help.clone(),
            Error::PluginLoad { help, .. } => Some(help.clone()),
            Error::PluginIncompatible { help, .. } => Some(help.clone()),
            Error::PluginFailed { help, .. } => help.clone(),
            Error::PluginTimeout { .. } => Some("raise the limit with --plugin-timeout SECONDS or `plugin-timeout` in [bundle] (0 = none) if the source is just slow; otherwise report a hang to the plugin's authors".into()),
            Error::PluginPanicked { .. } | Error::PluginMalformed { .. } | Error::PluginContract { .. } => {
                Some("this is a bug in the plugin: report it to its authors; other sources are unaffected".into())
            }
            Error::Archive(e) => e.help(),
            Error::CheckFailed { .. } => Some("fix what is listed above, or pass --no-check to write the bundle anyway".into()),
            Error::CheckTarget { .. } => Some("give --glibc 2.17, --manylinux manylinux2014 or --target-root DIR (a root filesystem with /etc/ld.so.cache)".into()),
            Error::Cancelled => None,
            Error::Io { .. } => None,
            Error::Sbom(_) | Error::Internal(_) => Some("this is a bug in airgap; please report it".into()),
        }
    }
}

impl From<airgap_check::Error> for Error {
    fn from(e: airgap_check::Error) -> Error {
        match e {
            airgap_check::Error::Target { reason } => Error::CheckTarget { reason },
        }
    }
}
