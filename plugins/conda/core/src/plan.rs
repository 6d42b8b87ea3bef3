//! Deciding what goes into the bundle: files, links, packages, prefix rewrites.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use airgap_plugin_api::{
    ContributeRequest, Contribution, Entry, Host, InstallStep, Package, PluginError, PrefixFile,
    PrefixMode, PythonEnvironment,
};

use crate::activate::{self, Flavour};
use crate::conda_meta::{self, Record};
use crate::config::{Config, Editable};
use crate::editable::{self, EditableInstall};
use crate::paths;
use crate::prefix;
use crate::python::{self, Facts};
use crate::search_path::{self, SearchPath};
use crate::shebang;

/// What kind of environment a prefix is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A conda environment (`conda-meta/`).
    Conda,
    /// A venv (`pyvenv.cfg`) on top of a base installation.
    Venv,
    /// A Python installation that relocates itself (`bin/python3`, `lib/pythonX.Y/os.py`).
    Plain,
}

impl Kind {
    fn as_str(&self) -> &'static str {
        match self {
            Kind::Conda => "conda",
            Kind::Venv => "venv",
            Kind::Plain => "python",
        }
    }

    /// The activate script this kind of environment gets.
    fn flavour(self) -> Flavour {
        match self {
            Kind::Conda => Flavour::Conda,
            Kind::Venv => Flavour::Venv,
            Kind::Plain => Flavour::Plain,
        }
    }
}

/// Tell what `prefix` is, or say clearly why it is none of the three.
pub fn detect(prefix: &Path) -> Result<Kind, PluginError> {
    if !prefix.exists() {
        return Err(PluginError::new(format!(
            "the environment {} does not exist",
            prefix.display()
        ))
        .with_help("set `prefix` in [sources.conda] to an existing conda environment, venv or Python installation"));
    }
    if !prefix.is_dir() {
        return Err(PluginError::new(format!(
            "the environment {} is not a directory",
            prefix.display()
        ))
        .with_help(
            "`prefix` names the environment's top directory (the one holding bin/ and lib/)",
        ));
    }
    if prefix.join("conda-meta").is_dir() {
        return Ok(Kind::Conda);
    }
    if prefix.join("pyvenv.cfg").is_file() {
        return Ok(Kind::Venv);
    }
    if python::find_interpreter(prefix).is_some() && stdlib_dir(prefix).is_some() {
        return Ok(Kind::Plain);
    }
    Err(PluginError::new(format!(
        "{} is not a Python environment: it has no conda-meta/, no pyvenv.cfg, and no bin/python3 with lib/pythonX.Y/os.py",
        prefix.display()
    ))
    .with_help(
        "point `prefix` in [sources.conda] to a conda environment, a venv, or a Python installation \
         (the directory holding bin/ and lib/, such as ~/.pyenv/versions/3.11.7)",
    ))
}

/// `lib/pythonX.Y` of a plain installation (the one holding `os.py`).
fn stdlib_dir(prefix: &Path) -> Option<PathBuf> {
    let lib = prefix.join("lib");
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(&lib)
        .ok()?
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("python"))
                && p.join("os.py").is_file()
        })
        .collect();
    dirs.sort();
    dirs.pop()
}

/// One tree that goes into the bundle: a source prefix and its folder in the bundle.
#[derive(Debug, Clone)]
struct Root {
    source: PathBuf,
    canonical: PathBuf,
    dest: String,
}

impl Root {
    /// The prefix strings that stand for this root in files.
    fn spellings(&self) -> Vec<String> {
        let mut out = vec![self.source.to_string_lossy().into_owned()];
        let canonical = self.canonical.to_string_lossy().into_owned();
        if !out.contains(&canonical) {
            out.push(canonical);
        }
        out
    }
}

/// What the conda metadata says about one installed file.
#[derive(Debug, Clone)]
struct Managed {
    package: usize,
    placeholder: Option<(String, PrefixMode)>,
}

/// One regular file in the plan.
#[derive(Debug, Clone)]
struct FilePlan {
    dest: String,
    source: PathBuf,
    copied: bool,
    mode: Option<u32>,
    package: Option<String>,
    /// (old prefix, root in the bundle, how)
    rewrites: Vec<(String, String, PrefixMode)>,
    /// A binary placeholder's length: the room the installer left in this file for the
    /// environment's prefix ([`PrefixFile::capacity`]).
    capacity: Option<usize>,
}

/// What the search for prefixes in one file looks for, and what conda says of the file.
struct Lookup<'p> {
    /// Every root's prefix spellings, longest first ([`Planner::prefix_spellings`]).
    spellings: &'p [(String, String)],
    /// The placeholder conda lists for the file, and how to rewrite it.
    placeholder: Option<&'p (String, PrefixMode)>,
    /// A conda package owns the file: without a placeholder it holds no prefix.
    managed: bool,
}

/// Whether a file may need anything worth reading it for: byte code is never rewritten
/// ("bad marshal data"; a stale path in co_filename only shows in tracebacks), and a file
/// conda says holds no prefix can only need a change as an ELF file (search paths) or a
/// script (shebang).
fn worth_reading(path: &Path, dest: &str, managed: Option<&Managed>) -> Result<bool, PluginError> {
    let name = dest.rsplit('/').next().unwrap_or(dest);
    if name.ends_with(".pyc") || name.ends_with(".pyo") {
        return Ok(false);
    }
    if managed.is_some_and(|m| m.placeholder.is_none()) {
        let mut head = [0u8; 4];
        let n = std::fs::File::open(path)
            .and_then(|mut f| std::io::Read::read(&mut f, &mut head))
            .map_err(|e| read_error(path, e))?;
        return Ok(head[..n].starts_with(b"\x7fELF") || head[..n].starts_with(b"#!"));
    }
    Ok(true)
}

/// A file of the environment that cannot be read.
fn read_error(path: &Path, e: std::io::Error) -> PluginError {
    PluginError::new(format!("could not read {}: {e}", path.display()))
        .with_help("check the permissions of the environment")
}

/// A copy in the work directory that cannot be written.
fn write_error(path: &Path, e: std::io::Error) -> PluginError {
    PluginError::new(format!("could not write {}: {e}", path.display()))
        .with_help("check that the work directory is writable and has space")
}

/// How an ELF file's search path changes at bundle time ([`Planner::patch_search_path`]).
enum SearchPathChange {
    /// No entry points into the bundle.
    None,
    /// Written over in place.
    Edits(Vec<search_path::Edit>),
    /// Set by patchelf on a copy: the copy's contents.
    Patchelf(Vec<u8>),
    /// Neither worked: the prefix is rewritten in place at unpack instead.
    AtUnpack,
}

struct Planner<'a> {
    host: &'a Host<'a>,
    config: Config,
    work_dir: PathBuf,
    roots: Vec<Root>,
    entries: Vec<Entry>,
    files: Vec<FilePlan>,
    packages: Vec<Package>,
    warnings: Vec<String>,
    scanned: u64,
    total: u64,
    elf_strings_left: Vec<String>,
    /// Bundle paths of files that are left out (excluded, editable mechanism).
    dropped: BTreeSet<PathBuf>,
    /// Outside installations and whether a root is a copy of them (by root index), so that
    /// each is compared once.
    copies: std::cell::RefCell<std::collections::HashMap<(PathBuf, usize), bool>>,
}

/// Build the contribution for `request`: what the environment is, the roots to walk (a
/// venv's base too), the files of the trees, the extras airgap writes, then what later
/// plugins need to know.
pub fn contribute(request: &ContributeRequest, host: &Host) -> Result<Contribution, PluginError> {
    let config: Config = request.config()?;
    let source = Source::inspect(request, &config, host)?;
    let mut planner = Planner::new(request, host, config, &source.prefix);
    let excludes = planner.add_roots_and_excludes(&source)?;
    planner.plan_trees(&source, &excludes)?;
    if planner.config.activate {
        planner.add_activate(source.kind.flavour())?;
    }
    planner.note_elf_strings_left();
    // A known target path: rewrite now, so that nothing is rewritten at unpack.
    if let Some(target) = request.target.prefix.clone() {
        planner.rewrite_for_target(&target)?;
    }

    let mut contribution = Contribution::default();
    let env_root = &planner.roots[0];
    if let (Some(f), Some(interp)) = (&source.facts, &source.interpreter) {
        contribution.python = Some(python_environment(f, interp, &source.prefix, env_root));
    }
    contribution.facts.insert(
        "environment".into(),
        serde_json::json!({
            "kind": source.kind.as_str(),
            "prefix": env_root.dest,
            "source_prefix": source.prefix,
            "base": planner.roots.get(1).map(|r| r.dest.clone()),
            "base_source_prefix": planner.roots.get(1).map(|r| r.source.clone()),
        }),
    );
    planner.finish(&mut contribution);
    Ok(contribution)
}

/// What the walks leave out: the environment's patterns (compiled) and, for a venv, the
/// patterns its base is walked without.
struct Excludes {
    env: airgap_glob::Patterns,
    base: Vec<String>,
}

impl<'a> Planner<'a> {
    /// A planner with the environment's prefix as its only root, nothing planned yet.
    fn new(request: &ContributeRequest, host: &'a Host<'a>, config: Config, prefix: &Path) -> Self {
        Planner {
            host,
            work_dir: request.work_dir.join("conda"),
            roots: vec![Root {
                canonical: std::fs::canonicalize(prefix).unwrap_or_else(|_| prefix.to_path_buf()),
                source: prefix.to_path_buf(),
                dest: config.dest.trim_matches('/').to_string(),
            }],
            config,
            entries: Vec::new(),
            files: Vec::new(),
            packages: Vec::new(),
            warnings: Vec::new(),
            scanned: 0,
            total: 0,
            elf_strings_left: Vec::new(),
            dropped: BTreeSet::new(),
            copies: Default::default(),
        }
    }

    /// A venv's base as the second root, and what each root is walked without: the
    /// configured patterns, and the standard library's test suite where the standard library
    /// is (the installation itself, or a venv's base) unless `stdlib_tests` keeps it.
    fn add_roots_and_excludes(&mut self, source: &Source) -> Result<Excludes, PluginError> {
        let mut base = match (source.kind, &source.facts) {
            (Kind::Venv, Some(f)) => self.add_venv_base(&source.prefix, f)?,
            (Kind::Venv, None) => return Err(PluginError::new("no interpreter facts")),
            _ => Vec::new(),
        };
        let mut env_patterns = self.config.exclude.clone();
        if !self.config.stdlib_tests {
            if let Some(f) = &source.facts {
                let pattern = format!("lib/python{}/test", f.version_short);
                match source.kind {
                    Kind::Venv => base.push(pattern),
                    _ => env_patterns.push(pattern),
                }
            }
        }
        let env = globs(&env_patterns, "exclude")?;
        Ok(Excludes { env, base })
    }

    /// Plan every file of the roots: what conda and the Python distributions say they own
    /// (packages for the manifest, placeholders), the editable installs (found before the
    /// walk, which leaves their mechanism out; copied after it when asked), then the walks.
    fn plan_trees(&mut self, source: &Source, excludes: &Excludes) -> Result<(), PluginError> {
        let Source {
            prefix,
            kind,
            facts,
            ..
        } = source;
        let (managed, records) = if *kind == Kind::Conda {
            self.read_conda_meta(prefix, facts.as_ref(), &excludes.env)?
        } else {
            (HashMap::new(), Vec::new())
        };
        let editables = match facts {
            Some(f) => self.find_editables(f)?,
            None => Vec::new(),
        };

        // Python packages that conda does not know about (pip-installed), for the manifest.
        let mut dist_owner = Owners::default();
        if let Some(f) = facts {
            python_packages(
                &f.purelib,
                &managed,
                prefix,
                &mut self.packages,
                &mut dist_owner,
            );
        }

        self.total = count_files(&self.roots);
        let skip_conda = *kind == Kind::Conda;
        self.walk(
            0,
            &excludes.env,
            skip_conda,
            &managed,
            &records,
            &dist_owner,
        )?;
        if self.roots.len() > 1 {
            self.walk_base(&excludes.base, facts.as_ref())?;
        }
        if *kind == Kind::Plain {
            self.own_unowned_by_interpreter(facts.as_ref(), prefix);
        }

        // Editable installs copied as regular files.
        if self.config.editable == Editable::Bundle {
            if let Some(f) = facts {
                self.bundle_editables(&editables, &f.purelib)?;
            }
        }
        Ok(())
    }

    /// A plain installation's files that no distribution owns belong to the interpreter, a
    /// package of their own in the manifest.
    fn own_unowned_by_interpreter(&mut self, facts: Option<&python::Facts>, prefix: &Path) {
        let pkg = interpreter_package(facts, prefix);
        self.packages.push(pkg.clone());
        for f in self.files.iter_mut().filter(|f| f.package.is_none()) {
            f.package = Some(pkg.id.clone());
        }
    }

    /// Say (with `-v`) which ELF files outside conda packages keep the source prefix as a
    /// string: they are not rewritten, so a user who sees a stale path knows why.
    fn note_elf_strings_left(&self) {
        if !self.elf_strings_left.is_empty() {
            self.host.debug(&format!(
                "{} ELF files outside conda packages hold the source prefix as a string and are not \
                 rewritten (their search paths are patched instead): {}",
                self.elf_strings_left.len(),
                self.elf_strings_left.join(", ")
            ));
        }
    }
}

/// The environment to bundle, as found on this machine.
struct Source {
    prefix: PathBuf,
    kind: Kind,
    interpreter: Option<PathBuf>,
    facts: Option<python::Facts>,
}

impl Source {
    /// The prefix the configuration names (or the active environment), what kind it is, and
    /// its interpreter's facts.
    fn inspect(
        request: &ContributeRequest,
        config: &Config,
        host: &Host,
    ) -> Result<Source, PluginError> {
        let prefix = match &config.prefix {
            Some(p) => request.resolve_path(p),
            None => active_environment()?,
        };
        let prefix = paths::normalize(&prefix);
        let kind = detect(&prefix)?;
        host.info(&format!(
            "bundling the {} environment {}",
            kind.as_str(),
            prefix.display()
        ));
        check_dest(&config.dest, "dest")?;

        let interpreter = python::find_interpreter(&prefix);
        let facts = match (&kind, &interpreter) {
            (_, Some(python)) => Some(python::interrogate(python)?),
            (Kind::Conda, None) => {
                host.debug("no python in the conda environment: bundling its files only");
                None
            }
            (_, None) => {
                return Err(PluginError::new(format!(
                    "the venv {} has no bin/python3",
                    prefix.display()
                ))
                .with_help("recreate the venv: `python3 -m venv DIR`"))
            }
        };
        let facts = facts.map(|f| respell(f, &prefix));
        Ok(Source {
            prefix,
            kind,
            interpreter,
            facts,
        })
    }
}

/// What later plugins need to know of the bundled Python.
fn python_environment(
    f: &python::Facts,
    interp: &Path,
    prefix: &Path,
    env_root: &Root,
) -> PythonEnvironment {
    let rel_exe = interp
        .strip_prefix(prefix)
        .unwrap_or(Path::new("bin/python3"));
    let site = f
        .purelib
        .strip_prefix(&f.prefix)
        .ok()
        .and_then(paths::to_bundle)
        .unwrap_or_else(|| format!("lib/python{}/site-packages", f.version_short));
    let mut env = PythonEnvironment::default();
    env.prefix = env_root.dest.clone();
    env.executable = paths::join(
        &env_root.dest,
        &paths::to_bundle(rel_exe).unwrap_or_else(|| "bin/python3".into()),
    );
    env.source_prefix = prefix.to_path_buf();
    env.source_executable = interp.to_path_buf();
    env.version = f.version.clone();
    env.implementation = f.implementation.clone();
    env.abi = f.abi.clone();
    env.platforms = f.platforms.clone();
    env.site_packages = paths::join(&env_root.dest, &site);
    env
}

impl Planner<'_> {
    /// A venv's base installation as the second root; returns the patterns the base is
    /// walked without (its site-packages, which the venv never sees unless it says so).
    fn add_venv_base(
        &mut self,
        prefix: &Path,
        facts: &python::Facts,
    ) -> Result<Vec<String>, PluginError> {
        let mut base_excludes = Vec::new();
        let base = paths::normalize(&facts.base_prefix);
        if base == Path::new("/usr") || base == Path::new("/") || base == Path::new("/usr/local") {
            return Err(PluginError::new(format!(
                "the venv {} is based on the system Python in {}, which cannot be bundled on its own",
                prefix.display(),
                base.display()
            ))
            .with_help(
                "create the venv from a self-contained Python installation (pyenv, a source build, \
                 python-build-standalone, or a conda environment) and bundle that venv",
            ));
        }
        check_dest(&self.config.base_dest, "base_dest")?;
        let base_dest = self.config.base_dest.trim_matches('/');
        let env_dest = self.roots[0].dest.as_str();
        let nested = |a: &str, b: &str| a == b || a.starts_with(&format!("{b}/"));
        if nested(base_dest, env_dest) || nested(env_dest, base_dest) {
            return Err(PluginError::new(format!(
                "`dest` ({env_dest}) and `base_dest` ({base_dest}) in [sources.conda] overlap"
            ))
            .with_help("give the venv and its base installation separate folders, such as `env` and `python`"));
        }
        let system_site = read_pyvenv_cfg(&prefix.join("pyvenv.cfg"))
            .get("include-system-site-packages")
            .is_some_and(|v| v.eq_ignore_ascii_case("true"));
        if !system_site {
            // The venv never sees the base's site-packages: leave its contents out.
            base_excludes.push(format!("lib/python{}/site-packages/*", facts.version_short));
        }
        self.roots.push(Root {
            canonical: std::fs::canonicalize(&base).unwrap_or_else(|_| base.clone()),
            source: base,
            dest: self.config.base_dest.trim_matches('/').to_string(),
        });
        Ok(base_excludes)
    }

    /// The packages of `conda-meta/` and which installed file belongs to which; a listed
    /// file missing from disk (and not excluded) is an error naming the package.
    fn read_conda_meta(
        &mut self,
        prefix: &Path,
        facts: Option<&python::Facts>,
        env_excludes: &airgap_glob::Patterns,
    ) -> Result<(HashMap<String, Managed>, Vec<Record>), PluginError> {
        let mut managed: HashMap<String, Managed> = HashMap::new();
        let records = conda_meta::read_records(prefix, facts.map(|f| f.version_short.as_str()))?;
        let mut missing = Vec::new();
        for (i, record) in records.iter().enumerate() {
            for file in &record.files {
                if !managed.contains_key(file) {
                    managed.insert(
                        file.clone(),
                        Managed {
                            package: i,
                            placeholder: record.placeholders.get(file).cloned(),
                        },
                    );
                }
                if std::fs::symlink_metadata(prefix.join(file)).is_err()
                    && !env_excludes.matches(file)
                {
                    missing.push((record, file));
                }
            }
            let mut package = Package::new(record.id(), &record.name, &record.version, "conda")
                .with_origin(&record.channel);
            package.sha256 = record.sha256.clone();
            package.license = record.license.clone();
            package.purl = record.purl();
            self.packages.push(package);
        }
        if let Some((record, file)) = missing.first() {
            let more = if missing.len() > 1 {
                format!(" (and {} more missing files)", missing.len() - 1)
            } else {
                String::new()
            };
            return Err(PluginError::new(format!(
                "conda package {} lists {file}, which is missing from the environment {}{more}",
                record.dist(),
                prefix.display()
            ))
            .with_help(format!(
                "something removed or replaced it (pip installing over a conda package does this); \
                 reinstall the package (`conda install --force-reinstall {}`), or add the path to \
                 `exclude` in [sources.conda] if it is not needed; the package's record is {}",
                record.name,
                record.meta_file.display()
            )));
        }
        Ok((managed, records))
    }

    /// Editable installs that point outside the environment: an error unless `editable =
    /// "bundle"`; their mechanism files (`.pth`, finders) are left out either way.
    fn find_editables(
        &mut self,
        f: &python::Facts,
    ) -> Result<Vec<editable::EditableInstall>, PluginError> {
        let roots = self.roots.clone();
        let inside = |p: &Path| {
            roots
                .iter()
                .any(|r| p.starts_with(&r.source) || p.starts_with(&r.canonical))
        };
        let editables = editable::find(&f.purelib, &inside);
        if !editables.is_empty() && self.config.editable == Editable::Error {
            let e = &editables[0];
            let others: Vec<String> = editables[1..]
                .iter()
                .map(|e| format!("{} ({})", e.name, e.target.display()))
                .collect();
            let more = if others.is_empty() {
                String::new()
            } else {
                format!("; also: {}", others.join(", "))
            };
            return Err(PluginError::new(format!(
                "editable install `{}` points to {}, outside the environment (found in {}){more}",
                e.name,
                e.target.display(),
                e.found_in.display()
            ))
            .with_help(
                "install it normally (`pip install PATH` without -e), or set `editable = \"bundle\"` \
                 in [sources.conda] to copy its code into the bundle",
            ));
        }
        for e in &editables {
            for m in &e.mechanism {
                self.dropped.insert(m.clone());
            }
        }
        Ok(editables)
    }

    /// Walk a venv's base installation (the second root), with the interpreter as the
    /// package of what no distribution owns.
    fn walk_base(
        &mut self,
        base_excludes: &[String],
        facts: Option<&python::Facts>,
    ) -> Result<(), PluginError> {
        let mut patterns = base_excludes.to_vec();
        patterns.extend(self.config.base_exclude.iter().cloned());
        let base_globs = globs(&patterns, "base_exclude")?;
        let interpreter_pkg = interpreter_package(facts, &self.roots[1].source);
        self.packages.push(interpreter_pkg.clone());
        let mut base_owner = Owners::default();
        if let Some(f) = facts {
            let base_purelib = self.roots[1]
                .source
                .join(format!("lib/python{}/site-packages", f.version_short));
            if !base_excludes.iter().any(|p| p.contains("site-packages")) {
                let base_root = self.roots[1].source.clone();
                python_packages(
                    &base_purelib,
                    &HashMap::new(),
                    &base_root,
                    &mut self.packages,
                    &mut base_owner,
                );
            }
        }
        self.walk_with_default(1, &base_globs, &base_owner, Some(interpreter_pkg.id))
    }
}

impl Planner<'_> {
    fn walk(
        &mut self,
        root_index: usize,
        excludes: &airgap_glob::Patterns,
        skip_conda: bool,
        managed: &HashMap<String, Managed>,
        records: &[Record],
        dist_owner: &Owners,
    ) -> Result<(), PluginError> {
        let root = self.roots[root_index].clone();
        let mut walker = walkdir::WalkDir::new(&root.source)
            .follow_links(false)
            .sort_by_file_name()
            .into_iter();
        loop {
            let item = match walker.next() {
                None => break,
                Some(Ok(item)) => item,
                Some(Err(e)) => {
                    let path = e
                        .path()
                        .map(|p| p.display().to_string())
                        .unwrap_or_default();
                    return Err(PluginError::new(format!("could not read {path}: {e}"))
                        .with_help("check the permissions of the environment"));
                }
            };
            let path = item.path();
            let Ok(rel) = path.strip_prefix(&root.source) else {
                continue;
            };
            let Some(rel_str) = paths::to_bundle(rel) else {
                self.warnings.push(format!(
                    "left out {}: its name is not valid UTF-8",
                    path.display()
                ));
                if item.file_type().is_dir() {
                    walker.skip_current_dir();
                }
                continue;
            };
            let is_dir = item.file_type().is_dir();
            if rel_str.is_empty() {
                self.entries.push(Entry::dir(root.dest.clone()));
                continue;
            }
            if (skip_conda && is_conda_noise(&rel_str))
                || excludes.matches(&rel_str)
                || self.dropped.contains(path)
            {
                if is_dir {
                    walker.skip_current_dir();
                }
                continue;
            }
            if self.host.is_cancelled() {
                return Err(PluginError::cancelled());
            }
            let dest = paths::join(&root.dest, &rel_str);
            let ft = item.file_type();
            if ft.is_dir() {
                self.entries.push(Entry::dir(dest));
            } else if ft.is_symlink() {
                self.add_symlink(path, &dest)?;
            } else if ft.is_file() {
                let info = managed.get(&rel_str);
                let package = match info {
                    Some(m) => records.get(m.package).map(|r| r.id()),
                    None => dist_owner.get(path).map(str::to_string),
                };
                self.add_file(path, &dest, info, package)?;
            } else {
                self.warnings.push(format!(
                    "left out {}: not a regular file, directory or link",
                    path.display()
                ));
            }
        }
        Ok(())
    }

    fn walk_with_default(
        &mut self,
        root_index: usize,
        excludes: &airgap_glob::Patterns,
        owner: &Owners,
        default_package: Option<String>,
    ) -> Result<(), PluginError> {
        let first = self.files.len();
        self.walk(root_index, excludes, false, &HashMap::new(), &[], owner)?;
        for f in &mut self.files[first..] {
            if f.package.is_none() {
                f.package.clone_from(&default_package);
            }
        }
        Ok(())
    }

    /// The bundle path of an absolute path on the build machine, if some root holds it.
    fn map(&self, path: &Path) -> Option<String> {
        let mut roots: Vec<&Root> = self.roots.iter().collect();
        roots.sort_by_key(|r| std::cmp::Reverse(r.source.as_os_str().len()));
        for r in roots {
            for base in [&r.source, &r.canonical] {
                if let Ok(rel) = path.strip_prefix(base) {
                    return paths::to_bundle(rel).map(|rel| paths::join(&r.dest, &rel));
                }
            }
        }
        None
    }

    fn add_symlink(&mut self, path: &Path, dest: &str) -> Result<(), PluginError> {
        let target = std::fs::read_link(path).map_err(|e| {
            PluginError::new(format!("could not read the link {}: {e}", path.display()))
                .with_help("check the permissions of the environment")
        })?;
        let parent = path.parent().unwrap_or(Path::new("/"));
        let absolute = paths::normalize(&parent.join(&target));
        if let Some(in_bundle) = self.map(&absolute) {
            if std::fs::metadata(path).is_err() {
                self.warnings.push(format!(
                    "left out the broken link {} (it points to {})",
                    path.display(),
                    target.display()
                ));
                return Ok(());
            }
            let rel = paths::relative(paths::parent(dest), &in_bundle);
            self.entries.push(Entry::symlink(dest, rel));
            return Ok(());
        }
        // The link leaves the environment: bundle what it points to.
        match std::fs::canonicalize(path) {
            Ok(resolved) => {
                if let Some(in_bundle) = self.map(&resolved) {
                    let rel = paths::relative(paths::parent(dest), &in_bundle);
                    self.entries.push(Entry::symlink(dest, rel));
                } else {
                    self.host.debug(&format!(
                        "{} points outside the environment to {}: bundling a copy",
                        path.display(),
                        resolved.display()
                    ));
                    self.entries.push(Entry::path(path, dest));
                }
            }
            Err(_) => self.warnings.push(format!(
                "left out the broken link {} (it points to {})",
                path.display(),
                target.display()
            )),
        }
        Ok(())
    }

    /// Plan one regular file: which prefixes it holds (to rewrite at unpack) and, when its
    /// search path or shebang must change, a patched copy to bundle instead. Reads the file
    /// once, or in windows when it is large.
    fn add_file(
        &mut self,
        path: &Path,
        dest: &str,
        managed: Option<&Managed>,
        package: Option<String>,
    ) -> Result<(), PluginError> {
        self.scanned += 1;
        if self.scanned % 500 == 0 {
            self.host
                .progress(self.scanned, self.total, "looking for prefixes in files");
        }
        let mut plan = FilePlan {
            dest: dest.to_string(),
            source: path.to_path_buf(),
            copied: false,
            mode: None,
            package,
            rewrites: Vec::new(),
            capacity: None,
        };
        if !worth_reading(path, dest, managed)? {
            self.files.push(plan);
            return Ok(());
        }
        let spellings = self.prefix_spellings();
        let placeholder = managed.and_then(|m| m.placeholder.clone());
        if let Some((ph, PrefixMode::Binary)) = &placeholder {
            // conda pads what it writes with NUL bytes up to the placeholder's length, and a
            // file that still holds its placeholder has that length itself.
            plan.capacity = Some(ph.len());
        }
        let lookup = Lookup {
            spellings: &spellings,
            placeholder: placeholder.as_ref(),
            managed: managed.is_some(),
        };
        let size = std::fs::metadata(path)
            .map_err(|e| read_error(path, e))?
            .len();
        if size > WHOLE_READ_LIMIT && self.plan_large_file(path, dest, &mut plan, &lookup)? {
            self.files.push(plan);
            return Ok(());
        }
        let data = std::fs::read(path).map_err(|e| read_error(path, e))?;
        let content = self.plan_content(path, dest, &data, &mut plan, &lookup);
        if let Some(new) = content {
            self.keep_copy(path, dest, &new, &mut plan)?;
        }
        self.files.push(plan);
        Ok(())
    }

    /// Record the rewrites `data` (the whole file) needs, by what it is; returns the patched
    /// contents when its search path or shebang changed.
    fn plan_content(
        &mut self,
        path: &Path,
        dest: &str,
        data: &[u8],
        plan: &mut FilePlan,
        lookup: &Lookup,
    ) -> Option<Vec<u8>> {
        if data.starts_with(b"!<arch>\n") {
            // A static library: object code, like ELF files. Its strings are only listed on
            // request; a listed `libpythonX.Y.a` would stop unpacking at a longer path.
            let rewrite = self.config.rewrite_elf_strings;
            self.plan_object_code(plan, dest, data, lookup, rewrite);
            None
        } else if search_path::is_elf(data) {
            let (patched, force_binary) = match self.patch_search_path(path, dest, data) {
                SearchPathChange::None => (None, false),
                SearchPathChange::Edits(edits) => (Some(search_path::apply(data, &edits)), false),
                SearchPathChange::Patchelf(patched) => (Some(patched), false),
                SearchPathChange::AtUnpack => (None, true),
            };
            let current: &[u8] = patched.as_deref().unwrap_or(data);
            let rewrite = self.config.rewrite_elf_strings || force_binary;
            self.plan_object_code(plan, dest, current, lookup, rewrite);
            patched
        } else if prefix::is_text(data) {
            let patched = self.rewrite_shebang(data, dest);
            let current: &[u8] = patched.as_deref().unwrap_or(data);
            self.plan_data(plan, current, lookup, PrefixMode::Text);
            patched
        } else {
            self.plan_data(plan, data, lookup, PrefixMode::Binary);
            None
        }
    }

    /// The bundle path of a directory an ELF search path names, if the bundle holds it:
    /// `$ORIGIN`-style and relative entries are left as they are.
    fn bundled_dir(&self, dir: &str) -> Option<String> {
        if dir.starts_with('$') || !dir.starts_with('/') {
            return None;
        }
        let dir = paths::normalize(Path::new(dir));
        self.map(&dir).or_else(|| self.copy_map(&dir))
    }

    /// Make an ELF file's search path relative to itself: in place (edits), or with patchelf
    /// when that cannot be done in place, or else the prefix is rewritten at unpack.
    fn patch_search_path(&self, path: &Path, dest: &str, data: &[u8]) -> SearchPathChange {
        match search_path::relative_edits(data, dest, &|dir| self.bundled_dir(dir)) {
            SearchPath::Untouched => SearchPathChange::None,
            SearchPath::Patched { edits, old, new } => {
                self.host
                    .debug(&format!("{dest}: search path {old} -> {new}"));
                SearchPathChange::Edits(edits)
            }
            SearchPath::CannotPatch {
                why,
                entries,
                runpath,
            } => match self.patch_with_patchelf(path, dest, &entries, runpath) {
                Ok(patched) => {
                    self.host.debug(&format!(
                        "{dest}: search path set to {} with patchelf ({why})",
                        entries.join(":")
                    ));
                    SearchPathChange::Patchelf(patched)
                }
                Err(e) => {
                    self.host.debug(&format!(
                        "{dest}: search path not patched ({why}; {e}): rewriting the prefix \
                         in place at unpack instead"
                    ));
                    SearchPathChange::AtUnpack
                }
            },
        }
    }

    /// Object code (an ELF file, a static library): conda's placeholder is rewritten as conda
    /// says; in a file conda does not own, the prefixes found follow
    /// [`Planner::object_code_rewrites`]; a conda file without a placeholder holds none.
    fn plan_object_code(
        &mut self,
        plan: &mut FilePlan,
        dest: &str,
        data: &[u8],
        lookup: &Lookup,
        rewrite: bool,
    ) {
        if lookup.placeholder.is_none() && lookup.managed {
            return;
        }
        let placeholder = lookup.placeholder.map(|(ph, _)| ph.as_str());
        let found = self.found_prefixes(data, lookup.spellings, placeholder);
        self.record_object_code(plan, dest, found, lookup, rewrite);
    }

    /// What [`Planner::plan_object_code`] records of the prefixes `found` in object code,
    /// whether its contents were searched whole or in windows: conda's placeholder rewritten
    /// as conda says, else [`Planner::object_code_rewrites`]. Not for a conda file without a
    /// placeholder, which holds none.
    fn record_object_code(
        &mut self,
        plan: &mut FilePlan,
        dest: &str,
        found: Vec<(String, String)>,
        lookup: &Lookup,
        rewrite: bool,
    ) {
        match lookup.placeholder {
            Some((_, mode)) => {
                for (old, root) in found {
                    plan.rewrites.push((old, root, *mode));
                }
            }
            None => self.object_code_rewrites(plan, dest, found, rewrite),
        }
    }

    /// Any other file: conda's placeholder is rewritten as conda says; in a file conda does
    /// not own, every prefix found is rewritten in `unowned` mode (text files: `Text`, any
    /// other: `Binary`); a conda file without a placeholder holds none.
    fn plan_data(&self, plan: &mut FilePlan, data: &[u8], lookup: &Lookup, unowned: PrefixMode) {
        match (lookup.placeholder, lookup.managed) {
            (Some((ph, mode)), _) => {
                self.rewrite_found(plan, data, lookup.spellings, Some(ph), *mode)
            }
            (None, true) => {}
            (None, false) => self.rewrite_found(plan, data, lookup.spellings, None, unowned),
        }
    }

    /// Record a rewrite in `mode` of every prefix `data` holds ([`Planner::found_prefixes`]).
    fn rewrite_found(
        &self,
        plan: &mut FilePlan,
        data: &[u8],
        spellings: &[(String, String)],
        placeholder: Option<&str>,
        mode: PrefixMode,
    ) {
        for (old, root) in self.found_prefixes(data, spellings, placeholder) {
            plan.rewrites.push((old, root, mode));
        }
    }

    /// Bundle the patched contents `new` instead of the file: a copy in the work directory,
    /// with the original's permission bits.
    fn keep_copy(
        &self,
        path: &Path,
        dest: &str,
        new: &[u8],
        plan: &mut FilePlan,
    ) -> Result<(), PluginError> {
        let mode = std::fs::metadata(path)
            .map(|m| m.permissions().mode() & 0o7777)
            .unwrap_or(0o644);
        plan.source = self.write_copy(dest, new)?;
        plan.copied = true;
        plan.mode = Some(mode);
        Ok(())
    }

    /// [`Planner::keep_copy`] for a file too large to hold: `path` copied with `edits`
    /// written over it, one window at a time.
    fn keep_edited_copy(
        &self,
        path: &Path,
        dest: &str,
        edits: &[search_path::Edit],
        plan: &mut FilePlan,
    ) -> Result<(), PluginError> {
        let mut from = std::fs::File::open(path).map_err(|e| read_error(path, e))?;
        let mode = from
            .metadata()
            .map(|m| m.permissions().mode() & 0o7777)
            .unwrap_or(0o644);
        let copy = self.copy_path(dest)?;
        let mut to = std::fs::File::create(&copy).map_err(|e| write_error(&copy, e))?;
        search_path::copy_with_edits(&mut from, &mut to, edits).map_err(|e| {
            PluginError::new(format!(
                "could not copy {} to {}: {e}",
                path.display(),
                copy.display()
            ))
            .with_help("check that the environment is readable and the work directory has space")
        })?;
        plan.source = copy;
        plan.copied = true;
        plan.mode = Some(mode);
        Ok(())
    }

    /// Prefixes found in object code (ELF files, static libraries): rewritten in place when
    /// `rewrite` (asked for, or the search path could not be patched), else only listed for
    /// the note at the end of the run.
    fn object_code_rewrites(
        &mut self,
        plan: &mut FilePlan,
        dest: &str,
        found: Vec<(String, String)>,
        rewrite: bool,
    ) {
        if found.is_empty() {
            return;
        }
        if rewrite {
            for (old, root) in found {
                plan.rewrites.push((old, root, PrefixMode::Binary));
            }
        } else {
            self.elf_strings_left.push(dest.to_string());
        }
    }

    /// Plan a file over [`WHOLE_READ_LIMIT`] without reading it whole: its prefixes are looked
    /// for in windows, so that memory does not grow with the size of files (a conda env can
    /// hold libraries of gigabytes). An ELF search path into the environment is patched while
    /// the file is copied ([`Planner::plan_large_elf`]). Returns false, having planned nothing,
    /// for the rare files that are read whole instead: a script (its `#!` line changes), a
    /// search path only patchelf can change.
    fn plan_large_file(
        &mut self,
        path: &Path,
        dest: &str,
        plan: &mut FilePlan,
        lookup: &Lookup,
    ) -> Result<bool, PluginError> {
        let Lookup {
            spellings,
            placeholder,
            managed: is_managed,
        } = *lookup;
        let mut head = [0u8; 8];
        let n = std::fs::File::open(path)
            .and_then(|mut f| airgap_io::read_full(&mut f, &mut head))
            .map_err(|e| read_error(path, e))?;
        let head = &head[..n];
        if head.starts_with(b"#!") {
            return Ok(false);
        }
        let is_archive = head.starts_with(b"!<arch>\n");
        let is_elf = search_path::is_elf(head);
        if is_elf {
            let Ok(elf) = airgap_elf::ElfFile::parse(path) else {
                return Ok(false);
            };
            let into_env = elf.rpath().iter().chain(elf.runpath()).any(|dir| {
                let dir = paths::normalize(Path::new(dir));
                dir.is_absolute() && (self.map(&dir).is_some() || self.copy_map(&dir).is_some())
            });
            if into_env {
                return self.plan_large_elf(path, dest, plan, lookup);
            }
        }
        if placeholder.is_none() && is_managed {
            // Conda lists no prefix in it, and its search path stays: nothing to look for.
            return Ok(true);
        }
        let (found, text) = self
            .scan_file(path, spellings, placeholder.map(|(ph, _)| ph.as_str()))
            .map_err(|e| read_error(path, e))?;
        if let Some((_, mode)) = placeholder {
            for (old, root) in found {
                plan.rewrites.push((old, root, *mode));
            }
        } else if is_archive || is_elf {
            let rewrite = self.config.rewrite_elf_strings;
            self.object_code_rewrites(plan, dest, found, rewrite);
        } else {
            let mode = if text {
                PrefixMode::Text
            } else {
                PrefixMode::Binary
            };
            for (old, root) in found {
                plan.rewrites.push((old, root, mode));
            }
        }
        Ok(true)
    }

    /// A large ELF file whose search path points into the environment: the edits are found in
    /// a read-only map of it (only its headers, dynamic section and dynamic symbols are
    /// touched), the patched copy is written one window at a time, and the copy is scanned
    /// for the prefixes left as [`Planner::plan_object_code`] does for a file read whole.
    /// Returns false when the search path needs more than edits in place (patchelf).
    fn plan_large_elf(
        &mut self,
        path: &Path,
        dest: &str,
        plan: &mut FilePlan,
        lookup: &Lookup,
    ) -> Result<bool, PluginError> {
        let file = std::fs::File::open(path).map_err(|e| read_error(path, e))?;
        // SAFETY: the map is only read, and nothing in this process writes the file. Another
        // process truncating it meanwhile would fault the read; the same change would also
        // break the whole read this replaces, and the writer's hash check later.
        let map = unsafe { memmap2::Mmap::map(&file) }.map_err(|e| read_error(path, e))?;
        let change = search_path::relative_edits(&map, dest, &|dir| self.bundled_dir(dir));
        drop(map);
        let SearchPath::Patched { edits, old, new } = change else {
            return Ok(false);
        };
        self.host
            .debug(&format!("{dest}: search path {old} -> {new}"));
        self.keep_edited_copy(path, dest, &edits, plan)?;
        if lookup.placeholder.is_none() && lookup.managed {
            return Ok(true);
        }
        let placeholder = lookup.placeholder.map(|(ph, _)| ph.as_str());
        let (found, _) = self
            .scan_file(&plan.source, lookup.spellings, placeholder)
            .map_err(|e| read_error(&plan.source, e))?;
        let rewrite = self.config.rewrite_elf_strings;
        self.record_object_code(plan, dest, found, lookup, rewrite);
        Ok(true)
    }

    /// [`Planner::found_prefixes`] over a file read in windows that overlap by the longest
    /// prefix, and whether the file is text (valid UTF-8 without NUL bytes).
    fn scan_file(
        &self,
        path: &Path,
        spellings: &[(String, String)],
        placeholder: Option<&str>,
    ) -> std::io::Result<(Vec<(String, String)>, bool)> {
        let longest = spellings
            .iter()
            .map(|(s, _)| s.len())
            .chain(placeholder.map(str::len))
            .max()
            .unwrap_or(0);
        let overlap = longest.saturating_sub(1);
        let mut file = std::fs::File::open(path)?;
        let mut buf = vec![0u8; SCAN_WINDOW + overlap];
        let mut kept = 0;
        let mut seen: BTreeSet<(String, String)> = BTreeSet::new();
        let mut text = true;
        let mut partial_char: Vec<u8> = Vec::new();
        loop {
            let n = airgap_io::read_full(&mut file, &mut buf[kept..kept + SCAN_WINDOW])?;
            if n == 0 {
                break;
            }
            if text {
                text = text_continues(&buf[kept..kept + n], &mut partial_char);
            }
            let window = &buf[..kept + n];
            seen.extend(self.found_prefixes(window, spellings, placeholder));
            let keep = overlap.min(window.len());
            let len = window.len();
            buf.copy_within(len - keep..len, 0);
            kept = keep;
        }
        // In the order the whole-file search gives: the placeholder, then longest first.
        let mut found = Vec::new();
        if let Some(ph) = placeholder {
            let entry = (ph.to_string(), self.roots[0].dest.clone());
            if seen.remove(&entry) {
                found.push(entry);
            }
        }
        for (s, root) in spellings {
            let entry = (s.clone(), root.clone());
            if seen.remove(&entry) {
                found.push(entry);
            }
        }
        Ok((found, text && partial_char.is_empty()))
    }

    /// Give a copy of `path` the search path `entries` with airgap-elf (patchelf), for the
    /// cases an in-place edit cannot handle. Returns the patched contents.
    fn patch_with_patchelf(
        &self,
        path: &Path,
        dest: &str,
        entries: &[String],
        runpath: bool,
    ) -> Result<Vec<u8>, String> {
        if !airgap_elf::patch::patchelf_available() {
            return Err("patchelf is not installed".into());
        }
        let out = self.work_dir.join("patchelf").join(dest);
        let kind = if runpath {
            airgap_elf::patch::RpathKind::Runpath
        } else {
            airgap_elf::patch::RpathKind::Rpath
        };
        airgap_elf::patch::set_search_path(path, &out, entries, kind).map_err(|e| e.to_string())?;
        let data = std::fs::read(&out).map_err(|e| e.to_string())?;
        let _ = std::fs::remove_file(&out);
        Ok(data)
    }

    /// All spellings of all roots' prefixes, longest first, with their roots. Files of the
    /// environment may hold the base's prefix too (pyvenv.cfg), so every root counts.
    fn prefix_spellings(&self) -> Vec<(String, String)> {
        let mut out: Vec<(String, String)> = self
            .roots
            .iter()
            .flat_map(|r| r.spellings().into_iter().map(|s| (s, r.dest.clone())))
            .collect();
        out.sort_by_key(|(s, _)| std::cmp::Reverse(s.len()));
        out
    }

    /// Which prefixes `data` holds: (old prefix, root). A placeholder, when given, stands for
    /// the environment's root.
    fn found_prefixes(
        &self,
        data: &[u8],
        spellings: &[(String, String)],
        placeholder: Option<&str>,
    ) -> Vec<(String, String)> {
        let mut out: Vec<(String, String)> = Vec::new();
        if let Some(ph) = placeholder {
            if prefix::contains(data, ph.as_bytes()) {
                out.push((ph.to_string(), self.roots[0].dest.clone()));
            }
        }
        for (s, root) in spellings {
            // A shorter spelling contained in a longer one found already adds nothing.
            let shadowed = out
                .iter()
                .any(|(o, _)| o.len() > s.len() && o.starts_with(s.as_str()));
            if prefix::contains(data, s.as_bytes()) && (!shadowed || occurs_alone(data, s, &out)) {
                out.push((s.clone(), root.clone()));
            }
        }
        out
    }

    /// A script whose shebang names a bundled Python, or an outside Python of which the bundle
    /// holds a copy (a copied installation naming the original): make it find the bundled
    /// interpreter relative to itself. A script naming any other Python is left for the check.
    fn rewrite_shebang(&self, data: &[u8], dest: &str) -> Option<Vec<u8>> {
        let sb = shebang::parse(data)?;
        if !shebang::is_python(&sb.interpreter) {
            if sb.interpreter.len() + sb.args.len() + 3 > shebang::KERNEL_LIMIT {
                self.host.warn(&format!(
                    "{dest}: its #! line is longer than the kernel's limit of {} bytes",
                    shebang::KERNEL_LIMIT
                ));
            }
            return None;
        }
        let named = paths::normalize(Path::new(&sb.interpreter));
        let target = match self.map(&named) {
            Some(target) => target,
            None => {
                let copy = self.copy_map(&named)?;
                self.host.debug(&format!(
                    "{dest}: its #! names {}, of which the bundle has the copy {copy}",
                    sb.interpreter
                ));
                copy
            }
        };
        let rel = paths::relative(paths::parent(dest), &target);
        let mut out = shebang::relative_header(&rel, &sb.args).into_bytes();
        out.extend_from_slice(&data[sb.header_len..]);
        Some(out)
    }

    /// The bundle path of an outside path under a copy's original: a root whose `bin/python3`
    /// is, byte for byte, the `bin/python3` of an ancestor of `outside` (a copied installation
    /// naming the original in `#!` lines and search paths) holds the same files. Another
    /// installation of the same version is not a copy (its stdlib and site-packages differ).
    fn copy_map(&self, outside: &Path) -> Option<String> {
        for original in outside.ancestors().skip(1) {
            if original.parent().is_none() {
                break;
            }
            for (i, r) in self.roots.iter().enumerate() {
                if self.is_copy(original, i) {
                    let rel = outside.strip_prefix(original).ok()?;
                    return self.map(&r.source.join(rel));
                }
            }
        }
        None
    }

    /// Whether root `i` is a copy of the installation at `original` (cached: asked for
    /// every ancestor of every outside path).
    fn is_copy(&self, original: &Path, i: usize) -> bool {
        let key = (original.to_path_buf(), i);
        if let Some(known) = self.copies.borrow().get(&key) {
            return *known;
        }
        let found = (|| {
            let theirs = std::fs::canonicalize(original.join("bin/python3")).ok()?;
            let ours = std::fs::canonicalize(self.roots[i].source.join("bin/python3")).ok()?;
            Some(theirs != ours && airgap_io::same_contents(&theirs, &ours).unwrap_or(false))
        })()
        .unwrap_or(false);
        self.copies.borrow_mut().insert(key, found);
        found
    }

    fn write_copy(&self, dest: &str, data: &[u8]) -> Result<PathBuf, PluginError> {
        let path = self.copy_path(dest)?;
        std::fs::write(&path, data).map_err(|e| write_error(&path, e))?;
        Ok(path)
    }

    /// Where the bundled copy of `dest` goes in the work directory, its directory made.
    fn copy_path(&self, dest: &str) -> Result<PathBuf, PluginError> {
        let path = self.work_dir.join("files").join(dest);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|e| {
                PluginError::new(format!("could not create {}: {e}", parent.display()))
                    .with_help("check that the work directory is writable")
            })?;
        }
        Ok(path)
    }

    fn bundle_editables(
        &mut self,
        editables: &[EditableInstall],
        purelib: &Path,
    ) -> Result<(), PluginError> {
        let Some(site) = self.map(purelib) else {
            return Ok(());
        };
        for e in editables {
            if e.copy.is_empty() {
                self.warnings.push(format!(
                    "editable install `{}` ({}): found no importable package to copy",
                    e.name,
                    e.target.display()
                ));
                continue;
            }
            self.host.info(&format!(
                "copying the editable install `{}` from {}",
                e.name,
                e.target.display()
            ));
            let package = format!("python:{}-editable", e.name);
            self.packages.push(
                Package::new(&package, &e.name, "", "python")
                    .with_origin(format!("editable install from {}", e.target.display())),
            );
            for (source, name) in &e.copy {
                let dest = paths::join(&site, name);
                let mut entry = Entry::path(source, dest);
                if let airgap_plugin_api::EntryKind::Path { exclude, .. } = &mut entry.kind {
                    exclude.extend(["__pycache__".to_string(), "**/__pycache__".to_string()]);
                }
                self.entries.push(entry.with_package(package.clone()));
            }
        }
        Ok(())
    }

    fn add_activate(&mut self, flavour: Flavour) -> Result<(), PluginError> {
        let root = self.roots[0].clone();
        let dest = paths::join(&root.dest, "activate");
        if root.source.join("activate").exists() {
            self.warnings.push(format!(
                "{} exists: no activate script written",
                root.source.join("activate").display()
            ));
            return Ok(());
        }
        let fallback = root.source.to_string_lossy().into_owned();
        let text = activate::script(flavour, &fallback);
        let source = self.write_copy(&dest, text.as_bytes())?;
        self.files.push(FilePlan {
            dest,
            source,
            copied: true,
            mode: Some(0o644),
            package: None,
            rewrites: vec![(fallback, root.dest.clone(), PrefixMode::Text)],
            capacity: None,
        });
        Ok(())
    }

    fn rewrite_for_target(&mut self, target: &str) -> Result<(), PluginError> {
        let target = target.trim_end_matches('/');
        if !target.starts_with('/') {
            return Err(PluginError::new(format!(
                "the destination prefix `{target}` is not an absolute path"
            ))
            .with_help("give --dest-prefix as an absolute path on the target machine"));
        }
        self.host
            .info(&format!("rewriting prefixes for {target} at bundle time"));
        let files = std::mem::take(&mut self.files);
        let mut out = Vec::with_capacity(files.len());
        for mut f in files {
            if f.rewrites.is_empty() {
                out.push(f);
                continue;
            }
            let mut data = std::fs::read(&f.source).map_err(|e| {
                PluginError::new(format!("could not read {}: {e}", f.source.display()))
                    .with_help("check the permissions of the environment")
            })?;
            let mut sorted = f.rewrites.clone();
            sorted.sort_by_key(|(old, _, _)| std::cmp::Reverse(old.len()));
            let mut new_rewrites = Vec::new();
            for (old, root, mode) in sorted {
                let new = format!("{target}/{root}");
                let capacity = self.capacity(&f, &old, &root);
                match mode {
                    PrefixMode::Text => {
                        data = prefix::replace_text(&data, old.as_bytes(), new.as_bytes());
                    }
                    PrefixMode::Binary => {
                        prefix::replace_binary(
                            &mut data,
                            old.as_bytes(),
                            new.as_bytes(),
                            capacity.unwrap_or(old.len()),
                        )
                        .map_err(|too_long| {
                            PluginError::new(format!(
                                "{}: the destination prefix {new} ({} bytes) is longer than the \
                                     {} bytes it has room for in place of {old}",
                                f.dest,
                                new.len(),
                                too_long.max_len
                            ))
                            .with_help(format!(
                                "choose a destination path of at most {} bytes for `{root}`, or \
                                     bundle without --dest-prefix",
                                too_long.max_len
                            ))
                        })?;
                    }
                }
                new_rewrites.push((new, root, mode));
            }
            if f.mode.is_none() {
                f.mode = std::fs::metadata(&f.source)
                    .map(|m| m.permissions().mode() & 0o7777)
                    .ok();
            }
            f.source = self.write_copy(&f.dest, &data)?;
            f.copied = true;
            // Keep listing the files under their new prefix: `airgap relocate` moves them again.
            f.rewrites = new_rewrites;
            out.push(f);
        }
        self.files = out;
        Ok(())
    }

    /// The capacity to record for `f`'s rewrite of `old` (for `root`): its placeholder's
    /// length, for the environment's own prefix in binary mode (never less than `old`).
    fn capacity(&self, f: &FilePlan, old: &str, root: &str) -> Option<usize> {
        let env_root = self.roots.first().map(|r| r.dest.as_str());
        f.capacity
            .filter(|_| env_root == Some(root))
            .map(|c| c.max(old.len()))
    }

    fn finish(self, contribution: &mut Contribution) {
        let mut steps: BTreeMap<(String, String), Vec<PrefixFile>> = BTreeMap::new();
        for f in &self.files {
            for (old, root, mode) in &f.rewrites {
                let mut file = PrefixFile::new(f.dest.clone(), *mode);
                if *mode == PrefixMode::Binary {
                    file.capacity = self.capacity(f, old, root);
                }
                steps
                    .entry((old.clone(), root.clone()))
                    .or_default()
                    .push(file);
            }
        }
        let mut entries = self.entries;
        entries.reserve_exact(self.files.len());
        for f in self.files {
            let mut entry = Entry::path(f.source, f.dest);
            entry.mode = f.mode;
            entry.package = f.package;
            entries.push(entry);
        }
        let mut steps: Vec<((String, String), Vec<PrefixFile>)> = steps.into_iter().collect();
        // Longest prefix first, so that a prefix inside another is never replaced half-way.
        steps.sort_by_key(|((old, _), _)| std::cmp::Reverse(old.len()));
        contribution.entries = entries;
        contribution.packages = self.packages;
        contribution.warnings = self.warnings;
        contribution.install_steps = steps
            .into_iter()
            .map(|((old_prefix, root), files)| InstallStep::RewritePrefix {
                old_prefix,
                root,
                files,
            })
            .collect();
    }
}

/// The interpreter reports canonical paths; spell them as the prefix was given, so that they
/// match what the walk sees.
fn respell(mut f: Facts, prefix: &Path) -> Facts {
    if f.prefix == prefix
        || std::fs::canonicalize(&f.prefix).ok() != std::fs::canonicalize(prefix).ok()
    {
        return f;
    }
    if let Ok(rel) = f.purelib.strip_prefix(&f.prefix) {
        f.purelib = prefix.join(rel);
    }
    if let Ok(rel) = f.stdlib.strip_prefix(&f.prefix) {
        f.stdlib = prefix.join(rel);
    }
    f.prefix = prefix.to_path_buf();
    f
}

/// True when `s` occurs in `data` somewhere other than inside the longer prefixes in `found`.
fn occurs_alone(data: &[u8], s: &str, found: &[(String, String)]) -> bool {
    let mut rest = data.to_vec();
    for (o, _) in found {
        rest = prefix::replace_text(&rest, o.as_bytes(), b"\0");
    }
    prefix::contains(&rest, s.as_bytes())
}

/// Files over this size are scanned in windows instead of being read whole (see
/// [`Planner::plan_large_file`]).
const WHOLE_READ_LIMIT: u64 = 4 * 1024 * 1024;
/// Bytes read at a time by [`Planner::scan_file`].
const SCAN_WINDOW: usize = 1024 * 1024;

/// Whether text goes on being text with `chunk`: no NUL byte, valid UTF-8, a character cut
/// at the end of one chunk completed by the next (`partial` carries its first bytes).
fn text_continues(chunk: &[u8], partial: &mut Vec<u8>) -> bool {
    if chunk.contains(&0) {
        return false;
    }
    let mut joined = std::mem::take(partial);
    joined.extend_from_slice(chunk);
    match std::str::from_utf8(&joined) {
        Ok(_) => true,
        Err(e) if e.error_len().is_none() => {
            *partial = joined[e.valid_up_to()..].to_vec();
            true
        }
        Err(_) => false,
    }
}

/// Directories and files of a conda installation that never belong in a bundle.
fn is_conda_noise(rel: &str) -> bool {
    let top = rel.split('/').next().unwrap_or(rel);
    let name = rel.rsplit('/').next().unwrap_or(rel);
    matches!(
        top,
        "pkgs" | "envs" | "conda-bld" | ".conda_lock" | ".conda_trash"
    ) || name == ".conda_lock"
        || name.ends_with(".conda_trash")
        || name.ends_with(".c~")
}

/// `patterns` of the `key` of [sources.conda], in airgap's one dialect ([`airgap_glob`]).
fn globs(patterns: &[String], key: &str) -> Result<airgap_glob::Patterns, PluginError> {
    airgap_glob::Patterns::new(patterns).map_err(|e| {
        PluginError::new(format!("{e} in `{key}` of [sources.conda]")).with_help(
            "patterns are relative to the prefix: a name matches at any depth (`__pycache__`), a path from the prefix (`lib/python3.11/test`); `*` stays within a name, `**` crosses directories (see docs/configuration.md)",
        )
    })
}

fn check_dest(dest: &str, key: &str) -> Result<(), PluginError> {
    let d = dest.trim_matches('/');
    if d.is_empty()
        || d.split('/').any(|c| c == ".." || c == "." || c.is_empty())
        || dest.starts_with('/')
    {
        return Err(PluginError::new(format!(
            "`{key}` in [sources.conda] must be a relative folder inside the bundle, not `{dest}`"
        ))
        .with_help(format!("for example `{key} = \"env\"`")));
    }
    Ok(())
}

/// The active environment: `CONDA_PREFIX`, then `VIRTUAL_ENV`.
fn active_environment() -> Result<PathBuf, PluginError> {
    for var in ["CONDA_PREFIX", "VIRTUAL_ENV"] {
        if let Some(v) = std::env::var_os(var).filter(|v| !v.is_empty()) {
            return Ok(PathBuf::from(v));
        }
    }
    Err(PluginError::new(
        "no environment to bundle: [sources.conda] has no `prefix`, and neither CONDA_PREFIX nor VIRTUAL_ENV is set",
    )
    .with_help(
        "activate the environment first (`conda activate NAME` or `. VENV/bin/activate`), or set \
         `prefix = \"/path/to/env\"` in [sources.conda]",
    ))
}

fn read_pyvenv_cfg(path: &Path) -> BTreeMap<String, String> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect()
}

fn count_files(roots: &[Root]) -> u64 {
    roots
        .iter()
        .map(|r| {
            walkdir::WalkDir::new(&r.source)
                .into_iter()
                // A conda base installation's package cache and other envs are not walked.
                .filter_entry(|e| {
                    match e
                        .path()
                        .strip_prefix(&r.source)
                        .ok()
                        .and_then(paths::to_bundle)
                    {
                        Some(rel) => rel.is_empty() || !is_conda_noise(&rel),
                        None => true,
                    }
                })
                .filter_map(|e| e.ok())
                .filter(|e| e.file_type().is_file())
                .count() as u64
        })
        .sum()
}

fn interpreter_package(facts: Option<&Facts>, prefix: &Path) -> Package {
    let (name, version) = match facts {
        Some(f) => (
            match f.implementation.as_str() {
                "cp" => "cpython".to_string(),
                "pp" => "pypy".to_string(),
                other => other.to_string(),
            },
            f.version.clone(),
        ),
        None => ("python".to_string(), String::new()),
    };
    Package::new(
        format!("python:{name}-{version}"),
        name,
        version,
        "interpreter",
    )
    .with_origin(prefix.display().to_string())
}

/// Python distributions in `site` that conda does not own, from their `RECORD` files; fills
/// `owner` with the absolute path of each file they installed.
fn python_packages(
    site: &Path,
    managed: &HashMap<String, Managed>,
    prefix: &Path,
    packages: &mut Vec<Package>,
    owner: &mut Owners,
) {
    let Ok(dir) = std::fs::read_dir(site) else {
        return;
    };
    let mut infos: Vec<PathBuf> = dir
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "dist-info"))
        .collect();
    infos.sort();
    for info in infos {
        let metadata = info.join("METADATA");
        let rel_meta = metadata
            .strip_prefix(prefix)
            .ok()
            .and_then(paths::to_bundle)
            .unwrap_or_default();
        if managed.contains_key(&rel_meta) {
            continue;
        }
        let Ok(text) = std::fs::read_to_string(&metadata) else {
            continue;
        };
        let (Some(name), Some(version)) = (
            airgap_pymeta::field(&text, "Name"),
            airgap_pymeta::field(&text, "Version"),
        ) else {
            continue;
        };
        let id = format!("python:{name}-{version}");
        let origin = std::fs::read(info.join("direct_url.json"))
            .ok()
            .and_then(|t| serde_json::from_slice::<serde_json::Value>(&t).ok())
            .and_then(|v| v.get("url").and_then(|u| u.as_str()).map(str::to_string))
            .unwrap_or_else(|| "installed".into());
        if let Ok(record) = std::fs::read_to_string(info.join("RECORD")) {
            let package = owner.add_package(id.clone());
            for line in record.lines() {
                let path = line.split(',').next().unwrap_or("");
                if path.is_empty() {
                    continue;
                }
                owner.insert(&paths::normalize(&site.join(path)), package);
            }
        }
        package_of_metadata(&text, &name, &version, id, origin, packages);
    }
}

/// Which installed distribution owns each file (from the distributions' RECORD files), kept
/// small: a 128-bit key of the absolute path (two SipHash values under independent random
/// keys, so that two paths of one run share a key with a chance of about n^2 / 2^129) and the
/// index of the package id, instead of the path and a copy of the id for every file of the
/// environment (about 200 bytes a file, 9 MB for a 46,000-file installation).
#[derive(Default)]
struct Owners {
    ids: Vec<String>,
    by_path: HashMap<u128, u32>,
    keys: (std::hash::RandomState, std::hash::RandomState),
}

impl Owners {
    /// A package whose files follow; its index for [`Owners::insert`].
    fn add_package(&mut self, id: String) -> u32 {
        self.ids.push(id);
        (self.ids.len() - 1) as u32
    }

    /// `path` (absolute, normalized) belongs to package `package`; a later package wins.
    fn insert(&mut self, path: &Path, package: u32) {
        let key = self.key(path);
        self.by_path.insert(key, package);
    }

    /// The id of the package that owns `path`.
    fn get(&self, path: &Path) -> Option<&str> {
        let index = *self.by_path.get(&self.key(path))?;
        self.ids.get(index as usize).map(String::as_str)
    }

    fn key(&self, path: &Path) -> u128 {
        use std::hash::BuildHasher;
        let (a, b) = (self.keys.0.hash_one(path), self.keys.1.hash_one(path));
        (u128::from(a) << 64) | u128::from(b)
    }
}

/// A distribution conda does not own, as a package: its licence by the rule every source
/// shares, and a PyPI purl when it came from an index (not a local or VCS install).
fn package_of_metadata(
    metadata: &str,
    name: &str,
    version: &str,
    id: String,
    origin: String,
    packages: &mut Vec<Package>,
) {
    let mut package = Package::new(id, name, version, "python").with_origin(&origin);
    package.license = airgap_pymeta::license(metadata);
    if origin == "installed" {
        package.purl = airgap_pymeta::pypi_purl(name, version);
    }
    packages.push(package);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conda_noise_is_skipped_but_cache_tags_are_not() {
        for rel in [
            "pkgs",
            "pkgs/x/info",
            "envs/other",
            "conda-bld",
            ".conda_lock",
        ] {
            assert!(is_conda_noise(rel), "{rel}");
        }
        for rel in [
            "CACHEDIR.TAG",
            "lib/pkgs.py",
            "share/envs",
            "conda-meta/x.json",
        ] {
            assert!(!is_conda_noise(rel), "{rel}");
        }
        assert!(is_conda_noise("lib/libx.so.c~"));
        assert!(is_conda_noise("bin/old.conda_trash"));
    }

    #[test]
    fn dest_must_stay_inside_the_bundle() {
        assert!(check_dest("env", "dest").is_ok());
        assert!(check_dest("opt/env", "dest").is_ok());
        for bad in ["", "/abs", "../up", "a/../b", "a//b", "."] {
            assert!(check_dest(bad, "dest").is_err(), "{bad}");
        }
    }

    #[test]
    fn exclude_globs_stay_within_directories() {
        let set = globs(&["lib/*.a".into(), "**/tests".into()], "exclude").expect("globs");
        assert!(set.matches("lib/libx.a"));
        assert!(!set.matches("lib/sub/libx.a"));
        assert!(set.matches("lib/python3.11/site-packages/x/tests"));
        assert!(globs(&["[".into()], "exclude").is_err());
    }
}
