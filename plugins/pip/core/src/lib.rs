//! The `pip` source plugin: the dependency tree as wheels for the target, installed offline.
//!
//! On the connected machine it runs the real pip (the user's pip configuration applies):
//!
//! 1. downloads a pip wheel that runs on the target Python (the target's own pip may be too old
//!    for today's wheels: pip 18.1 rejects manylinux2014);
//! 2. downloads the requirements with `--only-binary=:all:` and the target's tags; each
//!    requirement pip reports as missing is built into a wheel here from its sdist, with a real
//!    interpreter of the target's Python X.Y and its build requirements, then the download is
//!    retried, until the whole tree is wheels;
//! 3. proves the set installs offline: resolves it against the wheelhouse alone
//!    (`--no-index`) for the target's tags, writes `requirements.lock` with sha256 hashes, and
//!    resolves the lock again with `--require-hashes`, as the target will.
//!
//! On the target, an install step runs the carried pip from its wheel file with the bundled
//! interpreter (or `{python}`, into a fresh venv) with `--no-index --require-hashes`.
//! See `docs/sources/pip.md`.

#![cfg_attr(test, allow(clippy::unwrap_used))]

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use airgap_plugin_api::{
    ContributeRequest, Contribution, Entry, Host, InstallStep, Package, PluginError, SourcePlugin,
};
use serde_json::json;

mod config;
pub mod interp;
mod process;
mod target;
pub mod wheel;

pub use config::PipConfig;
pub use target::{manylinux_platforms, TargetTags};

use process::{Finished, Runner};
use wheel::{normalize, WheelName};

/// The plugin (exported by the `airgap-plugin-pip` cdylib). Stateless; see the crate
/// documentation.
#[derive(Default)]
pub struct PipPlugin;

impl SourcePlugin for PipPlugin {
    fn contribute(
        &self,
        request: &ContributeRequest,
        host: &Host,
    ) -> Result<Contribution, PluginError> {
        Bundler::new(request, host)?.run()
    }
}

/// The oldest pip with `install --report` (22.2).
const MIN_TOOL_PIP: (u32, u32) = (22, 2);
/// How many sdists one bundle may build before we suspect a loop.
const MAX_BUILDS: usize = 100;
const HELPER: &str = include_str!("helper.py");
const LOCK: &str = "requirements.lock";

/// A wheel built here from an sdist.
#[derive(Debug, Clone)]
struct Built {
    name: String,
    version: String,
    file: String,
    python: interp::Interpreter,
}

/// One wheel of the final set.
#[derive(Debug, Clone)]
struct Locked {
    name: String,
    version: String,
    file: String,
    sha256: String,
}

struct Bundler<'r, 'h, 'a> {
    request: &'r ContributeRequest,
    host: &'h Host<'a>,
    cfg: PipConfig,
    tags: TargetTags,
    runner: Runner<'h, 'a>,
    work: PathBuf,
    wheelhouse: PathBuf,
    helper: PathBuf,
    tool_python: PathBuf,
    warnings: Vec<String>,
    /// `-r`, `-c` and requirement arguments, as given by the user.
    requirement_args: Vec<String>,
    /// `-c` arguments alone (for builds).
    constraint_args: Vec<String>,
    built: Vec<Built>,
    build_python: Option<interp::Interpreter>,
    pip_runner: Option<PathBuf>,
}

fn io_error(what: &str, path: &Path, e: std::io::Error) -> PluginError {
    PluginError::new(format!("cannot {what} {}: {e}", path.display()))
}

fn python_command(python: &Path) -> Command {
    let mut cmd = Command::new(python);
    cmd.env("PIP_NO_INPUT", "1")
        .env("PIP_DISABLE_PIP_VERSION_CHECK", "1")
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .env_remove("PYTHONPATH")
        .env_remove("PYTHONHOME");
    cmd
}

/// A pip that sees nothing but its arguments: no configuration files, no `PIP_*` variables.
/// Used for the offline proofs, so that the user's find-links cannot hide a missing wheel.
fn isolated(cmd: &mut Command) -> &mut Command {
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("PIP_") {
            cmd.env_remove(key);
        }
    }
    cmd.env("PIP_CONFIG_FILE", "/dev/null")
        .env("PIP_NO_INPUT", "1")
        .env("PIP_DISABLE_PIP_VERSION_CHECK", "1")
}

fn list_wheels(dir: &Path) -> Result<BTreeSet<String>, PluginError> {
    let read = std::fs::read_dir(dir).map_err(|e| io_error("read", dir, e))?;
    Ok(read
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".whl"))
        .collect())
}

impl<'r, 'h, 'a> Bundler<'r, 'h, 'a> {
    fn new(request: &'r ContributeRequest, host: &'h Host<'a>) -> Result<Self, PluginError> {
        let cfg: PipConfig = request.config()?;
        config::check_bundle_path("dest", &cfg.dest)?;
        config::check_bundle_path("venv", &cfg.venv)?;
        if cfg.requirements.is_empty() && cfg.packages.is_empty() && !cfg.installed {
            return Err(
                PluginError::new("[sources.pip] names nothing to bundle").with_help(
                    "add requirements = [\"requirements.txt\"], packages = [\"name==version\"] or \
                 installed = true",
                ),
            );
        }
        if cfg.installed && request.python.is_none() {
            return Err(PluginError::new(
                "[sources.pip] installed = true but no environment is bundled",
            )
            .with_help(
                "put an environment source (conda) before [sources.pip], or list requirements",
            ));
        }

        let work = request.work_dir.join("pip");
        let wheelhouse = work.join("wheels");
        let logs = work.join("logs");
        if work.exists() {
            std::fs::remove_dir_all(&work).map_err(|e| io_error("clean", &work, e))?;
        }
        for dir in [&wheelhouse, &logs] {
            std::fs::create_dir_all(dir).map_err(|e| io_error("create", dir, e))?;
        }
        let helper = work.join("airgap_pip_helper.py");
        std::fs::write(&helper, HELPER).map_err(|e| io_error("write", &helper, e))?;

        let derived = TargetTags::from_request(request, host_glibc)?;
        let mut warnings = Vec::new();
        // Warnings go into the contribution (the host prints them in its summary).
        warnings.extend(derived.warnings);

        let mut bundler = Bundler {
            request,
            host,
            cfg,
            tags: derived.tags,
            runner: Runner::new(host, logs),
            work,
            wheelhouse,
            helper,
            tool_python: PathBuf::new(),
            warnings,
            requirement_args: Vec::new(),
            constraint_args: Vec::new(),
            built: Vec::new(),
            build_python: None,
            pip_runner: None,
        };
        bundler.tool_python = bundler.choose_tool_python()?;
        bundler.requirement_args = bundler.requirement_args()?;
        Ok(bundler)
    }

    fn run(mut self) -> Result<Contribution, PluginError> {
        self.host.info(&format!(
            "pip: wheels for {} with {}",
            self.tags.describe(),
            self.tool_python.display()
        ));
        let installer = self.download_installer()?;
        self.download_all()?;
        let mut set = self.resolve_offline()?;
        let venv_mode = self.request.python.is_none();
        if venv_mode && !set.iter().any(|l| normalize(&l.name) == "pip") {
            // The venv made on the target gets the carried pip too, for later use.
            let path = self.wheelhouse.join(&installer.file);
            set.push(Locked {
                sha256: wheel::sha256_file(&path).map_err(|e| io_error("read", &path, e))?,
                ..installer.clone()
            });
        }
        set.sort_by_key(|l| normalize(&l.name));
        self.prune(&set, &installer)?;
        self.write_lock(&set)?;
        self.verify_lock()?;
        self.contribution(set, installer)
    }

    // ---- setup ---------------------------------------------------------------------------

    fn pip(&self) -> Command {
        let mut cmd = python_command(&self.tool_python);
        cmd.args(["-m", "pip"]);
        cmd
    }

    fn index_args(&self) -> Vec<String> {
        self.cfg.index_args(|link| {
            if link.contains("://") {
                link.to_string()
            } else {
                self.request
                    .resolve_path(link)
                    .to_string_lossy()
                    .into_owned()
            }
        })
    }

    /// The interpreter whose pip resolves and downloads: `pip_python`, else the bundled
    /// environment's source interpreter, else `python3`, the first with pip >= 22.2.
    fn choose_tool_python(&self) -> Result<PathBuf, PluginError> {
        if let Some(p) = &self.cfg.pip_python {
            let p = self.request.resolve_path(p);
            return match pip_version(&p) {
                Some(v) if v >= MIN_TOOL_PIP => Ok(p),
                Some((a, b)) => Err(PluginError::new(format!(
                    "pip_python {} has pip {a}.{b}, older than 22.2",
                    p.display()
                ))
                .with_help(format!("upgrade it: {} -m pip install -U pip", p.display()))),
                None => Err(PluginError::new(format!(
                    "pip_python {} does not run pip",
                    p.display()
                ))
                .with_help("point pip_python at an interpreter with pip >= 22.2")),
            };
        }
        let mut tried = Vec::new();
        let env = self
            .request
            .python
            .as_ref()
            .map(|p| p.source_executable.clone())
            .filter(|p| !p.as_os_str().is_empty());
        for candidate in env.into_iter().chain([PathBuf::from("python3")]) {
            match pip_version(&candidate) {
                Some(v) if v >= MIN_TOOL_PIP => return Ok(candidate),
                Some((a, b)) => {
                    self.host.debug(&format!(
                        "{} has pip {a}.{b}, too old to resolve for the target; trying the next",
                        candidate.display()
                    ));
                    tried.push(format!("{} (pip {a}.{b})", candidate.display()));
                }
                None => tried.push(format!("{} (no pip)", candidate.display())),
            }
        }
        Err(
            PluginError::new("no pip >= 22.2 on this machine to resolve the wheelhouse").with_help(
                format!(
                    "tried {}; install a recent pip (python3 -m pip install -U pip) or set \
                     pip_python in [sources.pip]",
                    tried.join(", ")
                ),
            ),
        )
    }

    /// `-r`, `-c` and requirement arguments for pip, checked to exist.
    fn requirement_args(&mut self) -> Result<Vec<String>, PluginError> {
        let mut args = Vec::new();
        for file in &self.cfg.requirements {
            let path = self.request.resolve_path(file);
            if !path.is_file() {
                return Err(PluginError::new(format!(
                    "requirements file {} does not exist",
                    path.display()
                ))
                .with_help("paths in [sources.pip] are relative to the configuration file"));
            }
            args.push("-r".into());
            args.push(path.to_string_lossy().into_owned());
        }
        for file in &self.cfg.constraints {
            let path = self.request.resolve_path(file);
            if !path.is_file() {
                return Err(PluginError::new(format!(
                    "constraints file {} does not exist",
                    path.display()
                ))
                .with_help("paths in [sources.pip] are relative to the configuration file"));
            }
            self.constraint_args.push("-c".into());
            self.constraint_args
                .push(path.to_string_lossy().into_owned());
        }
        args.extend(self.constraint_args.iter().cloned());
        args.extend(self.cfg.packages.iter().cloned());
        if self.cfg.installed {
            let file = self.installed_requirements()?;
            args.push("-r".into());
            args.push(file.to_string_lossy().into_owned());
        }
        if self.cfg.pre {
            args.push("--pre".into());
        }
        Ok(args)
    }

    /// Write what pip freeze would list for the bundled environment to a requirements file.
    fn installed_requirements(&mut self) -> Result<PathBuf, PluginError> {
        let Some(env) = &self.request.python else {
            return Err(PluginError::new(
                "installed = true but no environment is bundled",
            ));
        };
        let python = &env.source_executable;
        let mut cmd = python_command(python);
        cmd.arg(&self.helper).arg("installed");
        let done = self.runner.run("list installed packages", &mut cmd)?;
        if !done.success {
            return Err(PluginError::new(format!(
                "cannot list the packages installed in {}",
                python.display()
            ))
            .with_help(done.tail(15)));
        }
        #[derive(serde::Deserialize)]
        struct Dist {
            name: String,
            version: String,
            editable: bool,
            installer: String,
        }
        let dists: Vec<Dist> = serde_json::from_str(&done.stdout).map_err(|e| {
            PluginError::new(format!(
                "unreadable package list from {}: {e}",
                python.display()
            ))
        })?;
        let mut lines = BTreeMap::new();
        for d in dists {
            let key = normalize(&d.name);
            if ["pip", "setuptools", "wheel", "distribute"].contains(&key.as_str()) {
                continue;
            }
            if d.editable {
                let w = format!(
                    "{} {} is an editable install in the environment: not brought as a wheel \
                     (build it into a wheel and list it in packages)",
                    d.name, d.version
                );
                self.warnings.push(w);
                continue;
            }
            if d.installer == "conda" {
                self.host.debug(&format!(
                    "{} {} was installed by conda: the environment already carries it",
                    d.name, d.version
                ));
                continue;
            }
            lines.insert(key, format!("{}=={}", d.name, d.version));
        }
        self.host.info(&format!(
            "pip: {} packages installed in the environment",
            lines.len()
        ));
        let path = self.work.join("installed.txt");
        let text: String = lines.values().map(|l| format!("{l}\n")).collect();
        std::fs::write(&path, text).map_err(|e| io_error("write", &path, e))?;
        Ok(path)
    }

    // ---- downloads -----------------------------------------------------------------------

    /// Download the pip that will run on the target.
    fn download_installer(&mut self) -> Result<Locked, PluginError> {
        let dir = self.work.join("installer");
        std::fs::create_dir_all(&dir).map_err(|e| io_error("create", &dir, e))?;
        let spec = match &self.cfg.pip_version {
            Some(v) => format!("pip=={v}"),
            None => "pip".to_string(),
        };
        let mut cmd = self.pip();
        cmd.args(["download", "--no-deps", "--only-binary=:all:", "-d"])
            .arg(&dir)
            .args(self.tags.pip_args())
            .args(self.index_args())
            .arg(&spec);
        let done = self.runner.run("download pip for the target", &mut cmd)?;
        if !done.success {
            return Err(PluginError::new(format!(
                "cannot download {spec} for the target {}",
                self.tags.describe()
            ))
            .with_help(done.tail(15)));
        }
        let file = list_wheels(&dir)?
            .into_iter()
            .rfind(|f| f.starts_with("pip-"))
            .ok_or_else(|| {
                PluginError::new(format!(
                    "pip download saved no pip wheel in {}",
                    dir.display()
                ))
            })?;
        let from = dir.join(&file);
        let to = self.wheelhouse.join(&file);
        std::fs::copy(&from, &to).map_err(|e| io_error("copy", &from, e))?;
        let version = WheelName::parse(&file)
            .map(|w| w.version)
            .unwrap_or_default();
        self.host
            .info(&format!("pip: carrying pip {version} for the target"));
        Ok(Locked {
            name: "pip".into(),
            version,
            sha256: wheel::sha256_file(&to).map_err(|e| io_error("read", &to, e))?,
            file,
        })
    }

    /// Download every requirement as a wheel for the target; build the ones that have none.
    fn download_all(&mut self) -> Result<(), PluginError> {
        loop {
            if self.host.is_cancelled() {
                return Err(PluginError::cancelled());
            }
            let mut cmd = self.pip();
            cmd.args(["download", "--only-binary=:all:", "-d"])
                .arg(&self.wheelhouse)
                .arg("--find-links")
                .arg(&self.wheelhouse)
                .args(self.tags.pip_args())
                .args(self.index_args())
                .args(&self.requirement_args);
            self.host.info("pip: downloading wheels for the target");
            let done = self.runner.run("download wheels", &mut cmd)?;
            if done.success {
                return Ok(());
            }
            let Some(missing) = done.missing_requirement() else {
                return Err(PluginError::new(format!(
                    "pip could not download the requirements for {}",
                    self.tags.describe()
                ))
                .with_help(done.tail(20)));
            };
            self.build(&missing, &done)?;
        }
    }

    /// Build a wheel of `requirement` from its sdist with an interpreter of the target's X.Y.
    fn build(&mut self, requirement: &str, download: &Finished) -> Result<(), PluginError> {
        let selected = self.select_version(requirement)?;
        let name = selected.name.clone();
        let key = normalize(&name);
        if let Some(b) = self.built.iter().find(|b| normalize(&b.name) == key) {
            return Err(PluginError::new(format!(
                "the wheel built here for {requirement} ({}) does not fit the target {}",
                b.file,
                self.tags.describe()
            ))
            .with_help(format!(
                "wheels built here are tagged for this machine (linux_{arch}): add \
                 \"linux_{arch}\" to [target] platforms, or pin a version of {name} that has \
                 wheels for the target\n{}",
                download.tail(10),
                arch = std::env::consts::ARCH
            )));
        }
        if self.built.len() >= MAX_BUILDS {
            return Err(PluginError::new(format!(
                "gave up on {requirement}: already built {MAX_BUILDS} sdists"
            )));
        }
        if !self.cfg.may_build(&name) {
            return Err(PluginError::new(format!(
                "{requirement} has no wheel for the target {}",
                self.tags.describe()
            ))
            .with_help(format!(
                "building sdists is turned off for it (allow_build / only_binary); pin a \
                 version with wheels for the target, or allow the build\n{}",
                download.tail(10)
            )));
        }
        let Some(spec) = selected.spec else {
            return Err(PluginError::new(format!(
                "{requirement} has neither a wheel nor an sdist for the target {}",
                self.tags.describe()
            ))
            .with_help(format!(
                "check the name and version, the index (index_url) and the target's python \
                 version (packages may require a newer or older python)\n{}",
                download.tail(10)
            )));
        };
        let python = self.build_python(requirement)?;
        let runner = self.pip_runner(&python)?;
        self.host.info(&format!(
            "pip: no wheel of {requirement} for the target: building {spec} from its sdist with \
             python {}",
            python.version
        ));
        let before = list_wheels(&self.wheelhouse)?;
        let mut cmd = python_command(&python.path);
        cmd.arg(runner.join("pip"))
            .args(["wheel", "--use-pep517", "--no-deps", "--no-binary"])
            .arg(&name)
            .arg("-w")
            .arg(&self.wheelhouse)
            .args(self.index_args())
            .args(&self.constraint_args)
            .arg(&spec);
        let done = self.runner.run(&format!("build {name}"), &mut cmd)?;
        if !done.success {
            return Err(PluginError::new(format!(
                "{requirement} has no wheel for the target {} and building {spec} from its \
                 sdist failed",
                self.tags.describe()
            ))
            .with_help(format!(
                "pip wheel with {} said:\n{}",
                python.path.display(),
                done.tail(20)
            )));
        }
        let new: Vec<String> = list_wheels(&self.wheelhouse)?
            .difference(&before)
            .cloned()
            .collect();
        let file = new
            .iter()
            .find(|f| WheelName::parse(f).is_some_and(|w| normalize(&w.name) == key))
            .cloned()
            .ok_or_else(|| {
                PluginError::new(format!(
                    "building {spec} succeeded but left no wheel of {name} in {}",
                    self.wheelhouse.display()
                ))
                .with_help(done.tail(10))
            })?;
        let version = WheelName::parse(&file)
            .map(|w| w.version)
            .unwrap_or_default();
        let w = format!(
            "built {name} {version} here from its sdist (no wheel for the target) with python {} \
             ({})",
            python.version,
            python.path.display()
        );
        self.warnings.push(w);
        self.built.push(Built {
            name,
            version,
            file,
            python,
        });
        Ok(())
    }

    /// The newest version of the requirement's project with any file for the target's Python
    /// (`pip index versions`), as `name==version`; `spec` is `None` when there is none.
    fn select_version(&self, requirement: &str) -> Result<Selected, PluginError> {
        let name_guess: String = requirement
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || "-_.".contains(*c))
            .collect();
        let mut cmd = self.pip();
        cmd.args(["index", "versions"])
            .arg(&name_guess)
            .args(self.tags.pip_args())
            .args(self.index_args());
        if self.cfg.pre {
            cmd.arg("--pre");
        }
        let done = self
            .runner
            .run(&format!("list versions of {name_guess}"), &mut cmd)?;
        let versions: Vec<String> = done
            .stdout
            .lines()
            .find_map(|l| l.trim().strip_prefix("Available versions:"))
            .map(|v| v.split(',').map(|s| s.trim().to_string()).collect())
            .unwrap_or_default();
        let mut cmd = python_command(&self.tool_python);
        cmd.arg(&self.helper)
            .arg("select")
            .arg(requirement)
            .arg(serde_json::to_string(&versions).unwrap_or_else(|_| "[]".into()));
        let done = self
            .runner
            .run(&format!("select a version of {name_guess}"), &mut cmd)?;
        #[derive(serde::Deserialize)]
        struct Answer {
            name: String,
            url: Option<String>,
            version: Option<String>,
        }
        let answer: Answer = match serde_json::from_str(done.stdout.trim()) {
            Ok(a) if done.success => a,
            _ => {
                return Err(PluginError::new(format!(
                    "cannot read the requirement {requirement:?} that pip reported missing"
                ))
                .with_help(done.tail(10)))
            }
        };
        let spec = match (answer.url, answer.version) {
            (Some(_), _) => Some(requirement.to_string()),
            (None, Some(v)) => Some(format!("{}=={v}", answer.name)),
            (None, None) => None,
        };
        Ok(Selected {
            name: answer.name,
            spec,
        })
    }

    /// An interpreter of the target's X.Y on this machine.
    fn build_python(&mut self, requirement: &str) -> Result<interp::Interpreter, PluginError> {
        if let Some(p) = &self.build_python {
            return Ok(p.clone());
        }
        let (major, minor) = (self.tags.major, self.tags.minor);
        let mut preferred = Vec::new();
        if let Some(p) = &self.cfg.build_python {
            let p = self.request.resolve_path(p);
            match interp::probe(&p) {
                Some(i) if (i.major, i.minor) == (major, minor) => {
                    self.build_python = Some(i.clone());
                    return Ok(i);
                }
                Some(i) => {
                    return Err(PluginError::new(format!(
                        "build_python {} is python {}, the target is python {major}.{minor}",
                        p.display(),
                        i.version
                    ))
                    .with_help("point build_python at an interpreter of the target's version"))
                }
                None => {
                    return Err(PluginError::new(format!(
                        "build_python {} is not a cpython that runs",
                        p.display()
                    )))
                }
            }
        }
        if let Some(env) = &self.request.python {
            preferred.push(env.source_executable.clone());
        }
        if self.tags.implementation != "cp" {
            return Err(PluginError::new(format!(
                "{requirement} has no wheel for the target {} and sdists are only built for \
                 cpython targets",
                self.tags.describe()
            )));
        }
        let found =
            interp::find(major, minor, Some(&self.tags.version), &preferred).ok_or_else(|| {
                PluginError::new(format!(
                    "{requirement} has no wheel for the target {} and there is no python \
                     {major}.{minor} on this machine to build it from its sdist",
                    self.tags.describe()
                ))
                .with_help(format!(
                    "install python {major}.{minor} here (e.g. `pyenv install {}`) or set \
                     build_python in [sources.pip]; or pin a version of the package that has \
                     wheels for the target",
                    self.tags.version
                ))
            })?;
        if found.version != self.tags.version {
            self.host.debug(&format!(
                "building with python {} for a python {} target",
                found.version, self.tags.version
            ));
        }
        self.build_python = Some(found.clone());
        Ok(found)
    }

    /// The carried pip, unpacked so that an interpreter of the target's version can run it
    /// (its build backends cannot run from inside the zip).
    fn pip_runner(&mut self, python: &interp::Interpreter) -> Result<PathBuf, PluginError> {
        if let Some(p) = &self.pip_runner {
            return Ok(p.clone());
        }
        let file = list_wheels(&self.wheelhouse)?
            .into_iter()
            .rfind(|f| f.starts_with("pip-"))
            .ok_or_else(|| PluginError::new("the carried pip wheel went missing"))?;
        let dir = self.work.join("pip-runner");
        let mut cmd = python_command(&self.tool_python);
        cmd.arg(&self.helper)
            .arg("extract")
            .arg(self.wheelhouse.join(&file))
            .arg(&dir);
        let done = self.runner.run("unpack pip", &mut cmd)?;
        if !done.success {
            return Err(PluginError::new(format!("cannot unpack {file}")).with_help(done.tail(10)));
        }
        self.host.debug(&format!(
            "building sdists with {} and {file}",
            python.path.display()
        ));
        self.pip_runner = Some(dir.clone());
        Ok(dir)
    }

    // ---- the offline proof ----------------------------------------------------------------

    fn offline_install(
        &self,
        what: &str,
        target: &str,
        extra: &[String],
    ) -> Result<Finished, PluginError> {
        let mut cmd = self.pip();
        isolated(&mut cmd);
        cmd.args([
            "install",
            "--isolated",
            "--dry-run",
            "--ignore-installed",
            "--no-index",
            "--only-binary=:all:",
            "--find-links",
        ])
        .arg(&self.wheelhouse)
        .args(self.tags.pip_args())
        .arg("--target")
        .arg(self.work.join(target))
        .args(extra);
        self.runner.run(what, &mut cmd)
    }

    /// Resolve the user's requirements against the wheelhouse alone; the exact set.
    fn resolve_offline(&self) -> Result<Vec<Locked>, PluginError> {
        self.host
            .info("pip: proving the wheelhouse installs offline on the target");
        let report = self.work.join("report.json");
        let mut extra = vec![
            "--report".to_string(),
            report.to_string_lossy().into_owned(),
        ];
        extra.extend(self.requirement_args.iter().cloned());
        let done = self.offline_install("resolve offline", "dry-run", &extra)?;
        if !done.success {
            let what = done
                .missing_requirement()
                .map(|r| format!("{r} is missing from the wheelhouse"))
                .unwrap_or_else(|| "the wheelhouse does not resolve offline".into());
            return Err(PluginError::new(format!(
                "{what} for the target {}",
                self.tags.describe()
            ))
            .with_help(format!("pip install --no-index said:\n{}", done.tail(20))));
        }
        let text = std::fs::read_to_string(&report).map_err(|e| io_error("read", &report, e))?;
        let parsed: serde_json::Value = serde_json::from_str(&text).map_err(|e| {
            PluginError::new(format!("unreadable pip report {}: {e}", report.display()))
        })?;
        let mut set = Vec::new();
        for item in parsed["install"].as_array().into_iter().flatten() {
            let name = item["metadata"]["name"].as_str().unwrap_or_default();
            let version = item["metadata"]["version"].as_str().unwrap_or_default();
            let url = item["download_info"]["url"].as_str().unwrap_or_default();
            let path = wheel::file_url_path(url).ok_or_else(|| {
                PluginError::new(format!(
                    "{name} {version} resolved to {url}, not a file of the wheelhouse"
                ))
            })?;
            let file = path
                .file_name()
                .map(|f| f.to_string_lossy().into_owned())
                .unwrap_or_default();
            let inside = self.wheelhouse.join(&file);
            if path != inside {
                // A wheel from a find-links directory of a requirements file: carry it too.
                std::fs::copy(&path, &inside).map_err(|e| io_error("copy", &path, e))?;
            }
            set.push(Locked {
                name: name.to_string(),
                version: version.to_string(),
                sha256: wheel::sha256_file(&inside).map_err(|e| io_error("read", &inside, e))?,
                file,
            });
        }
        if set.is_empty() {
            return Err(PluginError::new(
                "the requirements of [sources.pip] resolve to nothing",
            ));
        }
        Ok(set)
    }

    /// Remove from the wheelhouse what the set does not use.
    fn prune(&self, set: &[Locked], installer: &Locked) -> Result<(), PluginError> {
        let keep: BTreeSet<&str> = set
            .iter()
            .map(|l| l.file.as_str())
            .chain([installer.file.as_str()])
            .collect();
        for file in list_wheels(&self.wheelhouse)? {
            if !keep.contains(file.as_str()) {
                self.host.debug(&format!(
                    "pip: {file} is not part of the resolved set: left out"
                ));
                let path = self.wheelhouse.join(&file);
                std::fs::remove_file(&path).map_err(|e| io_error("remove", &path, e))?;
            }
        }
        Ok(())
    }

    fn write_lock(&self, set: &[Locked]) -> Result<(), PluginError> {
        let mut text = format!(
            "# Written by airgap's pip source: the exact set for {}.\n\
             # Install offline: pip install --no-index --find-links . --require-hashes -r {LOCK}\n",
            self.tags.describe()
        );
        for l in set {
            text.push_str(&format!(
                "{}=={} --hash=sha256:{}\n",
                l.name, l.version, l.sha256
            ));
        }
        let path = self.wheelhouse.join(LOCK);
        std::fs::write(&path, text).map_err(|e| io_error("write", &path, e))
    }

    /// Resolve the lock exactly as the target will: hashes required, wheelhouse only.
    fn verify_lock(&self) -> Result<(), PluginError> {
        let lock = self.wheelhouse.join(LOCK);
        let extra = vec![
            "--require-hashes".to_string(),
            "-r".into(),
            lock.to_string_lossy().into_owned(),
        ];
        let done = self.offline_install("verify the lock", "dry-run-lock", &extra)?;
        if !done.success {
            return Err(PluginError::new(format!(
                "{} does not install offline for the target {}",
                lock.display(),
                self.tags.describe()
            ))
            .with_help(done.tail(20)));
        }
        Ok(())
    }

    // ---- the contribution ---------------------------------------------------------------

    fn origin(&self) -> String {
        if let Some(url) = &self.cfg.index_url {
            return url.clone();
        }
        if let Some(url) = std::env::var("PIP_INDEX_URL")
            .ok()
            .filter(|u| !u.is_empty())
        {
            return url;
        }
        let mut cmd = self.pip();
        cmd.args(["config", "list"]);
        if let Ok(done) = self.runner.run("read the pip configuration", &mut cmd) {
            for line in done.stdout.lines() {
                if let Some((key, value)) = line.split_once('=') {
                    if key.ends_with(".index-url") {
                        return value.trim().trim_matches('\'').to_string();
                    }
                }
            }
        }
        "https://pypi.org/simple".into()
    }

    /// The contribution: the wheelhouse (wheels, lock, installer), the steps that install it
    /// offline on the target, the wheels built here unpacked for syslibs, and the facts that
    /// describe it all to later plugins.
    fn contribution(
        self,
        set: Vec<Locked>,
        installer: Locked,
    ) -> Result<Contribution, PluginError> {
        let dest = self.cfg.dest.clone();
        let mut c = Contribution::default();
        let wheels_fact = self.add_wheelhouse(&mut c, &set, &installer);
        let (built_fact, elf_warnings) = self.unpack_built()?;
        let (venv, python_in_bundle) = self.python_in_bundle();
        if self.cfg.install {
            if let Some(venv) = &venv {
                c.install_steps.extend(self.venv_steps(venv));
            }
            let into = venv.clone().unwrap_or_else(|| {
                self.request
                    .python
                    .as_ref()
                    .map(|p| p.prefix.clone())
                    .unwrap_or_default()
            });
            c.install_steps.push(self.install_step(
                set.len(),
                &installer,
                &into,
                &python_in_bundle,
            ));
        }

        c.facts.insert(
            "wheelhouse".into(),
            json!({
                "dest": dest,
                "lock": format!("{dest}/{LOCK}"),
                "installer": format!("{dest}/{}", installer.file),
                "python": python_in_bundle,
                "venv": venv,
                "target": {
                    "python": self.tags.version, "implementation": self.tags.implementation,
                    "abi": self.tags.abi, "platforms": self.tags.platforms,
                },
                "wheels": wheels_fact,
            }),
        );
        c.facts.insert("built".into(), json!(built_fact));
        c.warnings = self.warnings.clone();
        c.warnings.extend(elf_warnings);
        self.host.info(&format!(
            "pip: {} wheels for {} ({} built here), lock at {dest}/{LOCK}",
            set.len(),
            self.tags.describe(),
            self.built.len()
        ));
        Ok(c)
    }

    /// Put every wheel of `set` (and the installer's, when the set does not hold it) and the
    /// lock into the bundle, each wheel a package; returns the `wheels` fact.
    fn add_wheelhouse(
        &self,
        c: &mut Contribution,
        set: &[Locked],
        installer: &Locked,
    ) -> Vec<serde_json::Value> {
        let dest = &self.cfg.dest;
        let origin = self.origin();
        let id = |name: &str, version: &str| format!("pip:{}-{version}", normalize(name));
        let mut wheels_fact = Vec::new();
        let mut all: Vec<(&Locked, bool)> = set.iter().map(|l| (l, false)).collect();
        if !set.iter().any(|l| l.file == installer.file) {
            all.push((installer, true));
        }
        for (l, installer_only) in all {
            let built = self.built.iter().find(|b| b.file == l.file);
            let pkg_id = id(&l.name, &l.version);
            c.entries.push(
                Entry::path(self.wheelhouse.join(&l.file), format!("{dest}/{}", l.file))
                    .with_package(pkg_id.clone()),
            );
            let package_origin = match built {
                Some(b) => format!(
                    "built from sdist with python {} on the build machine",
                    b.python.version
                ),
                None => origin.clone(),
            };
            let mut package = Package::new(pkg_id, &l.name, &l.version, "wheel")
                .with_origin(package_origin)
                .with_sha256(&l.sha256);
            package.license = wheel::license(&self.wheelhouse.join(&l.file));
            package.purl = airgap_pymeta::pypi_purl(&l.name, &l.version);
            c.packages.push(package);
            wheels_fact.push(json!({
                "name": l.name, "version": l.version, "file": format!("{dest}/{}", l.file),
                "sha256": l.sha256, "built": built.is_some(), "installer_only": installer_only,
            }));
        }
        c.entries.push(Entry::path(
            self.wheelhouse.join(LOCK),
            format!("{dest}/{LOCK}"),
        ));
        wheels_fact
    }

    /// Wheels built here may link this machine's libraries: unpack them for syslibs, and
    /// warn about those that hold compiled files. Returns the `built` fact and the warnings.
    fn unpack_built(&self) -> Result<(Vec<serde_json::Value>, Vec<String>), PluginError> {
        let dest = &self.cfg.dest;
        let mut built_fact = Vec::new();
        let mut elf_warnings = Vec::new();
        for b in &self.built {
            let dir = self.work.join("built").join(&b.file);
            let mut cmd = python_command(&self.tool_python);
            cmd.arg(&self.helper)
                .arg("extract")
                .arg(self.wheelhouse.join(&b.file))
                .arg(&dir);
            let done = self.runner.run(&format!("unpack {}", b.file), &mut cmd)?;
            let mut elf = Vec::new();
            if done.success {
                walk_elf(&dir, &mut elf);
            }
            elf.sort();
            if !elf.is_empty() {
                let w = format!(
                    "{} {} was built here and holds {} compiled file(s) linked on this machine: \
                     their system libraries and glibc symbols must exist on the target",
                    b.name,
                    b.version,
                    elf.len()
                );
                elf_warnings.push(w);
            }
            built_fact.push(json!({
                "name": b.name, "version": b.version, "wheel": format!("{dest}/{}", b.file),
                "python": b.python.path, "python_version": b.python.version,
                "extracted": dir, "elf_files": elf,
            }));
        }
        Ok((built_fact, elf_warnings))
    }

    /// Where the wheels are installed on the target: the environment an earlier plugin
    /// brought, or else a venv of our own (its folder, then the interpreter in the bundle).
    fn python_in_bundle(&self) -> (Option<String>, String) {
        match &self.request.python {
            Some(env) => (None, env.executable.clone()),
            None => (
                Some(self.cfg.venv.clone()),
                format!("{}/bin/python", self.cfg.venv),
            ),
        }
    }

    /// The steps that make our own venv from the target's Python, after checking that it is
    /// the version the wheels were chosen for.
    fn venv_steps(&self, venv: &str) -> [InstallStep; 2] {
        let (major, minor) = (self.tags.major, self.tags.minor);
        [
            InstallStep::Run {
                description: format!("check that the target python is {major}.{minor}"),
                program: "{python}".into(),
                args: vec![
                    "-c".into(),
                    format!(
                        "import sys; v = sys.version_info[:2]; sys.exit(0 if v == ({major}, \
                         {minor}) else 'this bundle is for python {major}.{minor}, not ' + \
                         sys.version.split()[0] + ' (' + sys.executable + ')')"
                    ),
                ],
                env: BTreeMap::new(),
            },
            InstallStep::Run {
                description: format!("create the venv {venv} from the target's python"),
                program: "{python}".into(),
                args: vec![
                    "-m".into(),
                    "venv".into(),
                    "--without-pip".into(),
                    format!("{{dest}}/{venv}"),
                ],
                env: BTreeMap::new(),
            },
        ]
    }

    /// The step that installs the `wheels` wheels of the wheelhouse into `into` with the
    /// bundled installer, offline, hash-checked against the lock, ignoring the target's pip
    /// configuration.
    fn install_step(
        &self,
        wheels: usize,
        installer: &Locked,
        into: &str,
        python_in_bundle: &str,
    ) -> InstallStep {
        let dest = &self.cfg.dest;
        let installer_path = format!("{{dest}}/{dest}/{}/pip", installer.file);
        let pip_args: Vec<String> = vec![
            installer_path,
            "install".into(),
            "--isolated".into(),
            "--no-input".into(),
            "--disable-pip-version-check".into(),
            "--no-warn-script-location".into(),
            "--no-index".into(),
            "--find-links".into(),
            format!("{{dest}}/{dest}"),
            "--only-binary=:all:".into(),
            "--require-hashes".into(),
            "-r".into(),
            format!("{{dest}}/{dest}/{LOCK}"),
        ];
        let pip_env: BTreeMap<String, String> =
            [("PIP_CONFIG_FILE".to_string(), "/dev/null".to_string())].into();
        InstallStep::Run {
            description: format!(
                "install {wheels} wheels into {into} offline with pip {}",
                installer.version
            ),
            program: format!("{{dest}}/{python_in_bundle}"),
            args: pip_args,
            env: pip_env,
        }
    }
}

/// The answer of the helper's `select`.
struct Selected {
    name: String,
    spec: Option<String>,
}

fn walk_elf(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(read) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in read.flatten() {
        let path = entry.path();
        match entry.file_type() {
            Ok(t) if t.is_dir() => walk_elf(&path, out),
            Ok(t) if t.is_file() && wheel::is_elf(&path) => out.push(path),
            _ => {}
        }
    }
}

/// `(major, minor)` of `python -m pip`, if it runs.
fn pip_version(python: &Path) -> Option<(u32, u32)> {
    let output = python_command(python)
        .args(["-m", "pip", "--version"])
        .output()
        .ok()?;
    if !output.status.success() {
        return None;
    }
    let text = String::from_utf8_lossy(&output.stdout);
    let version = text.split_whitespace().nth(1)?;
    let mut parts = version.split('.').map(|p| p.parse::<u32>().ok());
    Some((parts.next()??, parts.next().flatten().unwrap_or(0)))
}

/// This machine's glibc version (`getconf GNU_LIBC_VERSION`).
fn host_glibc() -> Option<String> {
    let output = Command::new("getconf")
        .arg("GNU_LIBC_VERSION")
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&output.stdout);
    text.split_whitespace().nth(1).map(str::to_string)
}
