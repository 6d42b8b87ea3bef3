//! The pre-transfer check: will these files load on the target?
//!
//! The target model ([`CheckTarget`]: a manylinux policy or a real root filesystem, with the
//! Python ABI and platform tags), the rules, the report types, and the wheel reader. Library
//! resolution is `airgap_elf::model`'s, the one loader model of the workspace; this crate
//! decides what must load (executables, extension modules and what they need) and what only
//! may (libraries loaded on demand), and words the verdict. It never prints.
//!
//! For every ELF file of the bundle (found by content): the symbol versions it requires from
//! the target (`.gnu.version_r`, minus what libraries inside the bundle provide), grouped by
//! prefix, against the target's limits; and each `DT_NEEDED` name, which must be found inside
//! the bundle through the file's `$ORIGIN`-relative search path, or be glibc, or be on the
//! target (the manylinux policy's assumed libraries, or the real library set of a target
//! root filesystem). Python extension modules and wheel tags are compared with the target's
//! Python ABI and platform. Bundling cannot fix a too-old target glibc: the check says so
//! before the transfer.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use airgap_elf::loader::{Loader, Via};
use airgap_elf::model::{Loaded, Model, Place, System, View, Walk};
use airgap_elf::policy::{
    never_bundle, policy_by_name, policy_for_glibc, ManylinuxPolicy, NeverBundle,
};
use airgap_elf::roots::{self, RootKind, RootWalk};
use airgap_elf::target::RootLibs;
use airgap_elf::version::split_version_name;
use airgap_elf::{ElfFile, ElfKind, SymbolVersions, Version};
use airgap_plugin_api::{PythonEnvironment, TargetProfile};

pub mod cuda;
pub mod script;
use serde::Serialize;

/// Why a check could not run.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The target to check against cannot be used.
    #[error("invalid check target: {reason}")]
    Target {
        /// What is wrong.
        reason: String,
    },
}

/// One file of the bundle to check: its path in the bundle and where its bytes are now.
#[derive(Debug, Clone)]
pub struct CheckInput {
    /// Path inside the bundle.
    pub path: String,
    /// Where the file is on this machine (source file, or extracted copy).
    pub disk: PathBuf,
    /// For a symbolic link: its target (relative to its dir); `disk` is then empty.
    pub link: Option<String>,
    /// Grafted by airgap from the build machine (syslibs: `package = "system:..."`), not
    /// part of the environment.
    pub grafted: bool,
    /// The build machine's prefixes that unpacking rewrites in this file (`RewritePrefix`):
    /// a `#!` line naming a path under one of them names the bundle.
    pub rewritten: Vec<String>,
}

/// What the target offers, as the check sees it.
#[derive(Debug, Clone)]
pub struct CheckTarget {
    /// The declared profile (Python ABI, platforms, glibc).
    pub profile: TargetProfile,
    /// Where the library set and limits come from.
    pub libs: TargetLibs,
    /// Libraries loaded on demand that would not load are problems, not warnings
    /// (`--strict`, `[check] strict = true`).
    pub strict: bool,
}

/// The libraries and symbol versions of the target.
#[derive(Debug, Clone)]
pub enum TargetLibs {
    /// A manylinux policy: its assumed libraries and highest symbol versions.
    Policy(ManylinuxPolicy),
    /// A real root filesystem.
    Root(RootLibs),
}

impl CheckTarget {
    /// The target a profile declares: its glibc, else its manylinux platform tag, else a
    /// manylinux machine with this machine's glibc. The declared glibc wins over platform
    /// tags, which may come from the build machine's interpreter: one target, one floor.
    pub fn from_profile(profile: &TargetProfile) -> Result<CheckTarget, Error> {
        if let Some(p) = system_policy(profile)? {
            return Ok(CheckTarget::policy(profile, p));
        }
        if let Some(g) = profile.glibc.as_deref() {
            let v = Version::parse(g).ok_or_else(|| Error::Target {
                reason: format!("invalid glibc version {g:?} in the target profile"),
            })?;
            let p = policy_for_glibc(&v).ok_or_else(|| Error::Target {
                reason: format!("glibc {g} is older than any manylinux policy (2.5)"),
            })?;
            return Ok(CheckTarget::policy(profile, p));
        }
        for tag in &profile.platforms {
            if tag.starts_with("manylinux") {
                if let Some(p) = policy_by_name(tag) {
                    return Ok(CheckTarget::policy(profile, p));
                }
            }
        }
        // Nothing declared: a manylinux machine with this machine's glibc. Not this machine
        // itself: the libraries installed here (libpq, libssl3...) are exactly what an
        // air-gapped target may lack.
        let here = RootLibs::read(Path::new("/")).map_err(|e| Error::Target {
            reason: format!("cannot read this machine's glibc: {e}"),
        })?;
        let glibc = here.glibc.ok_or_else(|| Error::Target {
            reason: "cannot tell this machine's glibc version".into(),
        })?;
        let p = policy_for_glibc(&glibc).ok_or_else(|| Error::Target {
            reason: format!("glibc {glibc} is older than any manylinux policy (2.5)"),
        })?;
        Ok(CheckTarget::policy(profile, p))
    }

    /// A manylinux policy by name (`manylinux2014`, `manylinux_2_28`).
    pub fn from_policy_name(profile: &TargetProfile, name: &str) -> Result<CheckTarget, Error> {
        let p = policy_by_name(name).ok_or_else(|| Error::Target {
            reason: format!("unknown manylinux tag `{name}`"),
        })?;
        Ok(CheckTarget::policy(profile, p))
    }

    /// A glibc version (`2.17`): the newest manylinux policy it satisfies.
    pub fn from_glibc(profile: &TargetProfile, glibc: &str) -> Result<CheckTarget, Error> {
        let v = Version::parse(glibc).ok_or_else(|| Error::Target {
            reason: format!("invalid glibc version `{glibc}`"),
        })?;
        let p = policy_for_glibc(&v).ok_or_else(|| Error::Target {
            reason: format!("glibc {glibc} is older than any manylinux policy (2.5)"),
        })?;
        let mut profile = profile.clone();
        profile.glibc = Some(glibc.to_owned());
        Ok(CheckTarget::policy(&profile, p))
    }

    /// A real root filesystem: its glibc and the libraries it has.
    pub fn from_root(profile: &TargetProfile, root: &Path) -> Result<CheckTarget, Error> {
        let libs = RootLibs::read(root).map_err(|e| Error::Target {
            reason: format!("cannot read the target root {}: {e}", root.display()),
        })?;
        let mut profile = profile.clone();
        if let Some(g) = &libs.glibc {
            profile.glibc = Some(g.to_string());
        }
        Ok(CheckTarget {
            profile,
            libs: TargetLibs::Root(libs),
            strict: false,
        })
    }

    fn policy(profile: &TargetProfile, p: ManylinuxPolicy) -> CheckTarget {
        let mut profile = profile.clone();
        if profile.glibc.is_none() {
            profile.glibc = Some(p.glibc.to_string());
        }
        CheckTarget {
            profile,
            libs: TargetLibs::Policy(p),
            strict: false,
        }
    }

    /// The highest version per prefix the target provides.
    fn allowed(&self) -> &SymbolVersions {
        match &self.libs {
            TargetLibs::Policy(p) => &p.max_versions,
            TargetLibs::Root(r) => &r.versions,
        }
    }

    fn describe(&self) -> TargetSummary {
        TargetSummary {
            glibc: self.profile.glibc.clone(),
            policy: match &self.libs {
                TargetLibs::Policy(p) => Some(p.name.clone()),
                TargetLibs::Root(_) => None,
            },
            root: match &self.libs {
                TargetLibs::Policy(_) => None,
                TargetLibs::Root(r) => Some(r.root.clone()),
            },
            python: self.profile.python.clone(),
            abi: self.profile.abi.clone(),
            platforms: self.profile.platforms.clone(),
            max_versions: self
                .allowed()
                .0
                .iter()
                .map(|(k, v)| (k.clone(), v.to_string()))
                .collect(),
        }
    }
}

/// The policy of a probed target (`profile.system`, from `airgap probe` or a code): its own
/// libraries, with the symbol versions each defines where the probe read them.
pub fn system_policy(profile: &TargetProfile) -> Result<Option<ManylinuxPolicy>, Error> {
    let Some(system) = &profile.system else {
        return Ok(None);
    };
    let glibc = profile.glibc.as_deref().ok_or_else(|| Error::Target {
        reason: "the target profile does not say which glibc the target has".into(),
    })?;
    let name = match system.source.as_str() {
        "code" => "the target code",
        _ => "the target profile",
    };
    ManylinuxPolicy::from_target(name.into(), glibc, &system.versions, &system.libraries)
        .map(Some)
        .ok_or_else(|| Error::Target {
            reason: format!("invalid glibc version {glibc:?} in the target profile"),
        })
}

/// The target as the report shows it.
#[derive(Debug, Clone, Default, Serialize)]
pub struct TargetSummary {
    /// The target's glibc.
    pub glibc: Option<String>,
    /// The manylinux policy used (when no root was given).
    pub policy: Option<String>,
    /// The root filesystem read (when one was given).
    pub root: Option<PathBuf>,
    /// Python version of the target.
    pub python: Option<String>,
    /// Python ABI tag of the target.
    pub abi: Option<String>,
    /// Platform tags of the target.
    pub platforms: Vec<String>,
    /// Highest symbol version per prefix the target provides.
    pub max_versions: BTreeMap<String, String>,
}

/// A symbol version the bundle needs from the target, and the file that needs it.
#[derive(Debug, Clone, Serialize)]
pub struct Requirement {
    /// The highest version needed (`2.34`).
    pub version: String,
    /// The bundle file needing it (the first, in path order, of those needing the most).
    pub file: String,
    /// That file was grafted by airgap from the build machine (not part of the environment).
    pub grafted: bool,
}

/// A prefix whose needed version the target does not provide.
#[derive(Debug, Clone, Serialize)]
pub struct TooNew {
    /// `GLIBC`, `GLIBCXX`, `CXXABI`, `GCC`.
    pub prefix: String,
    /// Highest version needed.
    pub required: String,
    /// Highest the target has.
    pub available: String,
    /// Every bundle file needing more than the target has, with what it needs.
    pub files: Vec<(String, String)>,
}

/// A library the target will not find.
#[derive(Debug, Clone, Serialize)]
pub struct MissingLibrary {
    /// The `DT_NEEDED` name.
    pub name: String,
    /// The bundle files needing it.
    pub needed_by: Vec<String>,
    /// A copy inside the bundle that the search path of the users does not reach.
    pub unreachable_copy: Option<String>,
}

/// A Python ABI or platform tag that does not fit the target.
#[derive(Debug, Clone, Serialize)]
pub struct PythonMismatch {
    /// What: `python version`, `abi`, `extension module`, `wheel tag`.
    pub what: String,
    /// The bundle file (or the environment) at fault.
    pub path: String,
    /// What the bundle has.
    pub found: String,
    /// What the target has.
    pub expected: String,
}

/// What an ELF object of the bundle is to the loader.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// A program (PT_INTERP): must load.
    Executable,
    /// A Python extension module (dlopen()ed by the interpreter): must load.
    Extension,
    /// Needed, transitively, by an executable or an extension module: must load.
    Needed,
    /// Nothing in the bundle needs it: loaded on demand (dlopen), if ever.
    OnDemand,
}

/// Where a dependency was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FoundIn {
    /// A file of the bundle.
    Bundle,
    /// The target system.
    Target,
}

/// One `DT_NEEDED` name of an object, resolved in the context it is loaded in.
#[derive(Debug, Clone, Serialize)]
pub struct DepReport {
    /// The needed name.
    pub name: String,
    /// Bundle path, absolute path on the target, or (policy target) the soname.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub found: Option<String>,
    /// Bundle or target.
    #[serde(rename = "in", skip_serializing_if = "Option::is_none")]
    pub found_in: Option<FoundIn>,
    /// Which step of the search found it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub via: Option<Via>,
}

/// One ELF object of the bundle (a file or a wheel member) and whether it loads.
#[derive(Debug, Clone, Serialize)]
pub struct ObjectReport {
    /// Bundle path.
    pub path: String,
    /// What it is to the loader.
    pub role: Role,
    /// For a root: its whole closure resolves with all versions; for a library: its own
    /// needs do, in the context it is loaded in.
    pub loads: bool,
    /// Its needed names, in order, resolved.
    pub deps: Vec<DepReport>,
    /// Its needed names that are not found.
    pub missing: Vec<String>,
    /// `libc.so.6: GLIBC_2.34`: versions its providers do not define.
    pub missing_versions: Vec<String>,
    /// Why it does not load.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Loaded first by its own walk (a root, or an on-demand library tried alone).
    #[serde(skip)]
    top: bool,
    /// Its whole closure loads (for `top` objects).
    #[serde(skip)]
    closure_ok: bool,
    /// What its closure lacks.
    #[serde(skip)]
    closure_lacks: Vec<String>,
}

impl ObjectReport {
    fn new(
        path: &str,
        role: Role,
        l: &Loaded,
        top: bool,
        closure_ok: bool,
        closure_lacks: &[String],
    ) -> ObjectReport {
        let deps: Vec<DepReport> = l
            .deps
            .iter()
            .map(|d| {
                let (found, found_in) = match &d.found {
                    Some(Place::Bundle(p)) => (Some(p.clone()), Some(FoundIn::Bundle)),
                    Some(Place::Target(p)) => (
                        Some(p.to_string_lossy().into_owned()),
                        Some(FoundIn::Target),
                    ),
                    None => (None, None),
                };
                DepReport {
                    name: d.name.clone(),
                    found,
                    found_in,
                    via: d.via,
                }
            })
            .collect();
        let missing: Vec<String> = l
            .deps
            .iter()
            .filter(|d| d.found.is_none())
            .map(|d| d.name.clone())
            .collect();
        let root = matches!(role, Role::Executable | Role::Extension);
        let loads = if root { closure_ok } else { l.ok() };
        let reason = (!loads).then(|| {
            let lacks: Vec<String> = if root {
                closure_lacks.to_vec()
            } else {
                missing
                    .iter()
                    .chain(l.missing_versions.iter())
                    .cloned()
                    .collect()
            };
            format!("lacks {}", lacks.join(", "))
        });
        ObjectReport {
            path: path.to_owned(),
            role,
            loads,
            deps,
            missing,
            missing_versions: l.missing_versions.clone(),
            reason,
            top,
            closure_ok,
            closure_lacks: closure_lacks.to_vec(),
        }
    }
}

/// What the check found.
#[derive(Debug, Clone, Default, Serialize)]
pub struct CheckReport {
    /// The target checked against.
    pub target: TargetSummary,
    /// Files looked at.
    pub files: usize,
    /// ELF files among them.
    pub elf_files: usize,
    /// The minimum glibc the bundle needs on the target, and the file needing it.
    pub min_glibc: Option<Requirement>,
    /// The minimum glibc of the environment's own files, when what airgap grafted raises
    /// the floor above it.
    pub min_glibc_without_grafted: Option<Requirement>,
    /// Highest version needed from the target per prefix (GLIBC, GLIBCXX, CXXABI, GCC...).
    pub max_versions: BTreeMap<String, Requirement>,
    /// Prefixes whose needed version the target lacks.
    pub too_new: Vec<TooNew>,
    /// Libraries the target will not find.
    pub missing: Vec<MissingLibrary>,
    /// Python ABI and platform mismatches.
    pub python: Vec<PythonMismatch>,
    /// Libraries expected from the target's GPU driver.
    pub driver_libraries: Vec<String>,
    /// The NVIDIA driver the bundled CUDA runtime needs, and the target's.
    pub cuda: Option<cuda::CudaReport>,
    /// Problems that stop the bundle from working on the target, one line each.
    pub problems: Vec<String>,
    /// Things worth knowing that do not stop it.
    pub warnings: Vec<String>,
    /// Every ELF object of the bundle (files and wheel members), by path: its role, what
    /// its needs resolve to on the target, and whether it loads.
    pub objects: Vec<ObjectReport>,
}

impl CheckReport {
    /// True when nothing stops the bundle from loading on the target.
    pub fn passed(&self) -> bool {
        self.problems.is_empty()
    }
}

struct ElfInput {
    path: String,
    /// Where it is on this machine (none for a wheel member).
    disk: Option<PathBuf>,
    grafted: bool,
    elf: Arc<ElfFile>,
}

/// Check files against a target (a policy or a root filesystem).
pub fn check_against(
    files: &[CheckInput],
    target: &CheckTarget,
    python: Option<&PythonEnvironment>,
) -> Result<CheckReport, Error> {
    check_inputs(files, files.len(), target, python)
}

/// [`check_against`] for `total` files of which `files` are those that matter.
///
/// One phase per call, in the order their lines join the report: the bundle's ELF objects
/// and scripts, the loader's walk of the bundle on the target, the symbol versions the
/// bundle needs from there, what must load and does not, and Python's tags.
pub fn check_inputs(
    files: &[CheckInput],
    total: usize,
    target: &CheckTarget,
    python: Option<&PythonEnvironment>,
) -> Result<CheckReport, Error> {
    let mut report = CheckReport {
        target: target.describe(),
        files: total,
        ..Default::default()
    };
    let mut elves = elf_files(files);
    let (members, wheel_members) = wheel_elves(files, &mut report);
    elves.extend(members);
    elves.sort_by(|a, b| a.path.cmp(&b.path));
    report.elf_files = elves.len();
    check_scripts(files, &mut report);

    let anywhere = names_in_bundle(files, &wheel_members, &elves);
    let view = bundle_view(files, &elves, python);
    let walked = walk_on_target(&view, target, &elves, python);
    let TargetNeeds {
        versions,
        env_glibc,
        mut drivers,
    } = target_needs(&elves, &anywhere);
    let failures = failures(&walked.failing, &anywhere, &mut drivers);

    report_versions(&versions, env_glibc.as_ref(), &mut report);
    report_too_new(failures.too_new, target.allowed(), &mut report);
    report.problems.extend(failures.bad_versions);
    report.problems.extend(walked.on_target.iter().cloned());
    report_missing(failures.missing, &mut report);
    on_demand_verdicts(&walked.objects, &elves, target.strict, &mut report);
    report_drivers(drivers, &mut report);
    report.cuda = cuda_verdict(&elves, &target.profile, &mut report);
    report.objects = walked.objects.into_values().collect();

    check_python(files, &target.profile, python, &mut report);
    Ok(report)
}

/// The ELF files among the inputs (by content, not by name), read in parallel: the headers
/// of thousands of files are most of the check's I/O. Links are not read (the view resolves
/// them), and ELF objects that are neither programs nor shared objects are loaded by nobody.
fn elf_files(files: &[CheckInput]) -> Vec<ElfInput> {
    use rayon::prelude::*;
    files
        .par_iter()
        .filter(|f| f.link.is_none() && airgap_elf::is_elf(&f.disk))
        .filter_map(|f| {
            ElfFile::parse(&f.disk).ok().map(|elf| ElfInput {
                path: f.path.clone(),
                disk: Some(f.disk.clone()),
                grafted: f.grafted,
                elf: Arc::new(elf),
            })
        })
        .filter(|e| e.elf.kind != ElfKind::Other)
        .collect()
}

/// The ELF members of the wheels carried to be installed on the target (a wheelhouse): they
/// load there too, from `<wheel>!/<member>`, and nobody can patch them inside the zip. Also
/// every member's name as `<wheel>!/<member>`, so that the verdict can say where the bundle
/// has a library. A wheel that cannot be read is a warning, not a failure of the check.
fn wheel_elves(files: &[CheckInput], report: &mut CheckReport) -> (Vec<ElfInput>, Vec<String>) {
    let mut elves: Vec<ElfInput> = Vec::new();
    let mut wheel_members: Vec<String> = Vec::new();
    for f in files.iter().filter(|f| f.path.ends_with(".whl")) {
        match wheel::elf_members(&f.disk, &f.path) {
            Ok(members) => {
                for (path, elf) in members.elves {
                    if elf.kind != ElfKind::Other {
                        elves.push(ElfInput {
                            path,
                            disk: None,
                            grafted: false,
                            elf: Arc::new(elf),
                        });
                    }
                }
                wheel_members.extend(
                    members
                        .names
                        .into_iter()
                        .map(|n| format!("{}!/{n}", f.path)),
                );
            }
            Err(reason) => report
                .warnings
                .push(format!("cannot look inside {}: {reason}", f.path)),
        }
    }
    (elves, wheel_members)
}

/// Any copy of a name in the bundle, by file name and by soname (the first path wins): a
/// library the bundle carries is not needed from the target, and a missing one the bundle
/// has elsewhere is worded "the bundle has it at ...".
fn names_in_bundle<'a>(
    files: &'a [CheckInput],
    wheel_members: &'a [String],
    elves: &'a [ElfInput],
) -> HashMap<&'a str, &'a str> {
    let mut anywhere: HashMap<&str, &str> = HashMap::new();
    for path in files
        .iter()
        .map(|f| f.path.as_str())
        .chain(wheel_members.iter().map(String::as_str))
    {
        anywhere.entry(split(path).1).or_insert(path);
    }
    for e in elves {
        if let Some(so) = e.elf.soname() {
            anywhere.entry(so).or_insert(&e.path);
        }
    }
    anywhere
}

/// The bundle as the loader on the target sees it: its ELF objects and links at their bundle
/// paths, and the Python environment's build-machine prefix mapped to its place in the
/// bundle (absolute search paths name that prefix, which unpacking rewrites).
fn bundle_view(
    files: &[CheckInput],
    elves: &[ElfInput],
    python: Option<&PythonEnvironment>,
) -> View {
    let mut view = View::new();
    for e in elves {
        view.add_object(e.path.clone(), e.elf.clone());
    }
    for f in files {
        if let Some(link) = &f.link {
            view.add_link(f.path.clone(), link.clone());
        }
    }
    if let Some(py) = python {
        if !py.source_prefix.as_os_str().is_empty() {
            view.relocate(
                py.source_prefix.clone(),
                py.prefix.trim_matches('/').to_owned(),
            );
        }
    }
    view
}

/// The loader's walks of the bundle's view over the target's system: a manylinux policy's
/// libraries, or the loader of a real root filesystem.
fn walk_on_target(
    view: &View,
    target: &CheckTarget,
    elves: &[ElfInput],
    python: Option<&PythonEnvironment>,
) -> Walked {
    let root_loader;
    let system = match &target.libs {
        TargetLibs::Policy(p) => System::Policy(p),
        TargetLibs::Root(r) => {
            root_loader = Loader::for_root(&r.root);
            System::Root(&root_loader)
        }
    };
    let model = Model::new(view, system);
    walk_bundle(&model, elves, python)
}

/// What the bundle needs from the target, for the summary (not the verdict: that is the
/// walk's).
struct TargetNeeds {
    /// The highest version per prefix, the first file (in path order) needing it, and whether
    /// airgap grafted that file.
    versions: BTreeMap<String, (Version, String, bool)>,
    /// The highest GLIBC version the environment's own (not grafted) files need, and the file.
    env_glibc: Option<(Version, String)>,
    /// GPU driver libraries named by the bundle's objects.
    drivers: BTreeSet<String>,
}

/// The symbol versions every ELF object needs from the target: those from a library the
/// bundle carries are left out, except glibc's (never bundled, so always the target's).
fn target_needs(elves: &[ElfInput], anywhere: &HashMap<&str, &str>) -> TargetNeeds {
    let mut needs: BTreeMap<String, (Version, String, bool)> = BTreeMap::new();
    let mut env_glibc: Option<(Version, String)> = None;
    let mut drivers: BTreeSet<String> = BTreeSet::new();
    for e in elves {
        let mut from_target = SymbolVersions::default();
        for need in &e.elf.version_needs {
            if never_bundle(&need.file) != Some(NeverBundle::Glibc)
                && anywhere.contains_key(need.file.as_str())
            {
                continue;
            }
            for v in &need.versions {
                from_target.add(v);
            }
        }
        for (prefix, v) in &from_target.0 {
            let slot = needs
                .entry(prefix.clone())
                .or_insert_with(|| (Version::default(), String::new(), false));
            if *v > slot.0 {
                *slot = (v.clone(), e.path.clone(), e.grafted);
            }
            if prefix == "GLIBC" && !e.grafted && env_glibc.as_ref().is_none_or(|(g, _)| v > g) {
                env_glibc = Some((v.clone(), e.path.clone()));
            }
        }
        for name in &e.elf.needed {
            if never_bundle(name) == Some(NeverBundle::Driver) {
                drivers.insert(name.clone());
            }
        }
    }
    TargetNeeds {
        versions: needs,
        env_glibc,
        drivers,
    }
}

/// Why the objects that must load do not, sorted by what the report says of each.
struct Failures {
    /// Per prefix, each file needing a version the target lacks, with the highest it needs.
    too_new: BTreeMap<String, BTreeMap<String, Version>>,
    /// Per name not found: the files needing it, and a copy the bundle has elsewhere.
    missing: BTreeMap<String, (BTreeSet<String>, Option<String>)>,
    /// Versions that a bundled copy does not define, one line each.
    bad_versions: Vec<String>,
}

/// Sort the failures of the walk: a name not found is a GPU driver library (expected from the
/// target: added to `drivers`) or missing; a version not found is too new for the target when
/// the target provides the library, or lacking from the bundled copy that was found.
fn failures(
    failing: &BTreeMap<String, ObjectReport>,
    anywhere: &HashMap<&str, &str>,
    drivers: &mut BTreeSet<String>,
) -> Failures {
    let mut too_new: BTreeMap<String, BTreeMap<String, Version>> = BTreeMap::new();
    let mut missing: BTreeMap<String, (BTreeSet<String>, Option<String>)> = BTreeMap::new();
    let mut bad_versions: Vec<String> = Vec::new();
    for o in failing.values() {
        for d in &o.deps {
            if d.found.is_some() {
                continue;
            }
            if never_bundle(&d.name) == Some(NeverBundle::Driver) {
                drivers.insert(d.name.clone());
                continue;
            }
            let slot = missing.entry(d.name.clone()).or_default();
            slot.0.insert(o.path.clone());
            if slot.1.is_none() {
                slot.1 = anywhere.get(d.name.as_str()).map(|p| (*p).to_owned());
            }
        }
        for mv in &o.missing_versions {
            let (file, version) = mv.split_once(": ").unwrap_or(("", mv.as_str()));
            let from_target = o
                .deps
                .iter()
                .find(|d| d.name == file)
                .is_none_or(|d| d.found_in == Some(FoundIn::Target));
            match (from_target, split_version_name(version)) {
                (true, Some((prefix, v))) => {
                    let slot = too_new
                        .entry(prefix.to_owned())
                        .or_default()
                        .entry(o.path.clone())
                        .or_default();
                    if v > *slot {
                        *slot = v;
                    }
                }
                _ => bad_versions.push(format!(
                    "{} needs {version} from {file}, which its bundled copy does not define",
                    o.path
                )),
            }
        }
    }
    Failures {
        too_new,
        missing,
        bad_versions,
    }
}

/// The highest version per prefix into the report, and the glibc floor; when a grafted file
/// sets that floor, a warning with the environment's own floor and how to keep it.
fn report_versions(
    needs: &BTreeMap<String, (Version, String, bool)>,
    env_glibc: Option<&(Version, String)>,
    report: &mut CheckReport,
) {
    for (prefix, (v, file, grafted)) in needs {
        let r = Requirement {
            version: v.to_string(),
            file: file.clone(),
            grafted: *grafted,
        };
        if prefix == "GLIBC" {
            report.min_glibc = Some(r.clone());
            if *grafted {
                let own = env_glibc.map(|(g, f)| (g.to_string(), f.clone()));
                let name = split(file).1;
                report.warnings.push(format!(
                    "the glibc floor {v} is set by {file}, which airgap grafted from this machine; the environment's own files need {}: let the target provide it ([sources.syslibs] exclude = [\"{name}\"]) or bundle on a builder with an older glibc",
                    match &own {
                        Some((g, f)) => format!("glibc {g} ({f})"),
                        None => "no particular glibc".to_owned(),
                    }
                ));
                report.min_glibc_without_grafted = own.map(|(version, file)| Requirement {
                    version,
                    file,
                    grafted: false,
                });
            }
        }
        report.max_versions.insert(prefix.clone(), r);
    }
}

/// One problem per prefix whose needed version the target lacks, naming the file needing the
/// most (the first in path order among equals) and how many need more than the target has.
fn report_too_new(
    too_new: BTreeMap<String, BTreeMap<String, Version>>,
    allowed: &SymbolVersions,
    report: &mut CheckReport,
) {
    for (prefix, files) in too_new {
        let (required, worst) = files
            .iter()
            .max_by(|a, b| a.1.cmp(b.1).then(b.0.cmp(a.0)))
            .map(|(f, v)| (v.to_string(), f.clone()))
            .unwrap_or_default();
        let available = allowed
            .max(&prefix)
            .map(ToString::to_string)
            .unwrap_or_default();
        report.problems.push(if prefix == "GLIBC" {
            format!(
                "needs glibc {required} ({worst} needs GLIBC_{required}) but the target has glibc {available} ({} files need more than {available})",
                files.len()
            )
        } else {
            format!(
                "needs {prefix}_{required} ({worst}) but the target provides {prefix} up to {available} ({} files need more)",
                files.len()
            )
        });
        report.too_new.push(TooNew {
            prefix,
            required,
            available,
            files: files.into_iter().map(|(f, v)| (f, v.to_string())).collect(),
        });
    }
}

/// One problem per library nobody finds, naming three of its users, and the copy the bundle
/// has where their search path does not reach it.
fn report_missing(
    missing: BTreeMap<String, (BTreeSet<String>, Option<String>)>,
    report: &mut CheckReport,
) {
    for (name, (users, copy)) in missing {
        let users: Vec<String> = users.into_iter().collect();
        let shown: Vec<&str> = users.iter().take(3).map(String::as_str).collect();
        let more = if users.len() > 3 {
            format!(" and {} more", users.len() - 3)
        } else {
            String::new()
        };
        report.problems.push(match &copy {
            Some(c) => format!(
                "{name} is needed by {}{more}: the bundle has it at {c} but their search path does not reach it",
                shown.join(", ")
            ),
            None => format!(
                "{name} is needed by {}{more} and is neither in the bundle nor on the target",
                shown.join(", ")
            ),
        });
        report.missing.push(MissingLibrary {
            name,
            needed_by: users,
            unreachable_copy: copy,
        });
    }
}

/// GPU driver libraries are the target's to provide (they match its kernel driver): a
/// warning that names them, not a problem.
fn report_drivers(drivers: BTreeSet<String>, report: &mut CheckReport) {
    if !drivers.is_empty() {
        report.warnings.push(format!(
            "expects GPU driver libraries from the target: {}",
            drivers.iter().cloned().collect::<Vec<_>>().join(", ")
        ));
    }
    report.driver_libraries = drivers.into_iter().collect();
}

/// The bundled CUDA runtime's driver against the target's: known from a probed profile or
/// a code (`TargetProfile::system`), unknown otherwise.
fn cuda_verdict(
    elves: &[ElfInput],
    profile: &TargetProfile,
    report: &mut CheckReport,
) -> Option<cuda::CudaReport> {
    let mut need = cuda::need(
        elves
            .iter()
            .map(|e| (e.path.as_str(), e.elf.soname.as_deref())),
    )?;
    let driver = profile.system.as_ref().map(|s| s.nvidia_driver.as_deref());
    match cuda::judge(&mut need, driver) {
        cuda::Verdict::Fine => {}
        cuda::Verdict::Warning(w) => report.warnings.push(w),
        cuda::Verdict::Problem(p) => report.problems.push(p),
    }
    Some(need)
}

/// An on-demand library (nothing in the bundle needs it: it is dlopen()ed, if ever) that
/// would not load on the target: a warning when it does not load here either (a plugin
/// for hardware or software this machine lacks too), a problem when it does (the bundle
/// lost something on the way), and a problem for all with `strict`.
fn on_demand_verdicts(
    walked: &BTreeMap<String, ObjectReport>,
    elves: &[ElfInput],
    strict: bool,
    report: &mut CheckReport,
) {
    let disks: HashMap<&str, &Path> = elves
        .iter()
        .filter_map(|e| e.disk.as_deref().map(|d| (e.path.as_str(), d)))
        .collect();
    let host = Loader::host();
    for o in walked.values() {
        if o.role != Role::OnDemand || !o.top || o.closure_ok {
            continue;
        }
        let lacks = o.closure_lacks.join(", ");
        let here = disks.get(o.path.as_str()).map(|disk| {
            airgap_elf::closure::closure(&host, &[disk.to_path_buf()], None)
                .map(|c| c.missing.is_empty())
                .unwrap_or(false)
        });
        let line = match here {
            Some(true) => {
                report.problems.push(format!(
                    "{} (loaded on demand: nothing in the bundle needs it) would not load on the target: it lacks {lacks}, which it finds on this machine",
                    o.path
                ));
                continue;
            }
            Some(false) => format!(
                "{} loads only on demand; would not load here either (it lacks {lacks})",
                o.path
            ),
            None => format!(
                "{} loads only on demand and would not load on the target (it lacks {lacks})",
                o.path
            ),
        };
        if strict {
            report.problems.push(format!("{line} (strict)"));
        } else {
            report.warnings.push(line);
        }
    }
}

pub use airgap_elf::roots::is_extension_module;

/// Walk the bundle in the model (the walks of [`airgap_elf::roots::walk_bundle`], shared with
/// syslibs) and classify every ELF object: each in the context of the first walk that reaches
/// it; a root's own role wins over `needed`.
fn walk_bundle(
    model: &Model<'_>,
    elves: &[ElfInput],
    python: Option<&PythonEnvironment>,
) -> Walked {
    let mut out: BTreeMap<String, ObjectReport> = BTreeMap::new();
    let mut failing: BTreeMap<String, ObjectReport> = BTreeMap::new();
    let mut on_target: Vec<String> = Vec::new();
    let objects: Vec<(&str, &ElfFile)> = elves.iter().map(|e| (e.path.as_str(), &*e.elf)).collect();
    let walks = roots::walk_bundle(model, &objects, python.map(|py| py.executable.as_str()));
    for RootWalk { kind, walk, .. } in &walks {
        let role_of_first = match kind {
            RootKind::Executable => Role::Executable,
            RootKind::Extension => Role::Extension,
            RootKind::OnDemand => Role::OnDemand,
        };
        let ok = walk.ok();
        let lacks = lacks(walk);
        if role_of_first != Role::OnDemand {
            // A library of the target itself that does not load there (its own needs).
            for l in walk.loaded.iter().filter(|l| !l.ok()) {
                if let Place::Target(t) = &l.obj.place {
                    let line = format!(
                        "{} on the target does not load there: it lacks {}",
                        t.display(),
                        lacks.join(", ")
                    );
                    if !on_target.contains(&line) {
                        on_target.push(line);
                    }
                }
            }
        }
        for (i, l) in walk.loaded.iter().enumerate() {
            let Place::Bundle(p) = &l.obj.place else {
                continue;
            };
            if role_of_first != Role::OnDemand && !l.ok() && !failing.contains_key(p) {
                // Must load, and does not in this context (maybe only in this one).
                failing.insert(
                    p.clone(),
                    ObjectReport::new(p, Role::Needed, l, false, ok, &lacks),
                );
            }
            let role = if i == 0 {
                role_of_first
            } else if role_of_first == Role::OnDemand {
                Role::OnDemand
            } else {
                Role::Needed
            };
            if let Some(existing) = out.get_mut(p) {
                if i == 0 && existing.role == Role::Needed && role != Role::OnDemand {
                    // A root that another root needs: it is a root (its closure counts).
                    existing.role = role;
                    existing.closure_ok = ok;
                }
                continue;
            }
            out.insert(p.clone(), ObjectReport::new(p, role, l, i == 0, ok, &lacks));
        }
    }
    Walked {
        objects: out,
        failing,
        on_target,
    }
}

/// Every ELF object of the bundle, and those that must load and do not (each in the first
/// context it fails in).
struct Walked {
    objects: BTreeMap<String, ObjectReport>,
    failing: BTreeMap<String, ObjectReport>,
    /// Target libraries the bundle needs that do not load on the target.
    on_target: Vec<String>,
}

/// `libibverbs.so.1`, `libc.so.6: GLIBC_2.34`: what a walk lacks.
fn lacks(walk: &Walk) -> Vec<String> {
    let mut out: BTreeSet<String> = BTreeSet::new();
    for l in &walk.loaded {
        for d in &l.deps {
            if d.found.is_none() {
                out.insert(d.name.clone());
            }
        }
        out.extend(l.missing_versions.iter().cloned());
    }
    out.into_iter().collect()
}

fn split(path: &str) -> (&str, &str) {
    path.rsplit_once('/').unwrap_or(("", path))
}

/// Python ABI and platform: the environment's interpreter, extension module file names, and
/// wheel tags (installed `*.dist-info/WHEEL` files and `*.whl` files of a wheelhouse).
///
/// One pass over the files in path order, so that each file's lines stay together; only the
/// first five extension modules built for another Python are named, then a count.
fn check_python(
    files: &[CheckInput],
    profile: &TargetProfile,
    python: Option<&PythonEnvironment>,
    report: &mut CheckReport,
) {
    check_interpreter(profile, python, report);
    let glibc = profile.glibc.as_deref().and_then(Version::parse);
    let mut bad_ext = 0usize;
    for f in files {
        let name = split(&f.path).1;
        if let Some(m) = extension_mismatch(f, name, profile) {
            bad_ext += 1;
            if bad_ext <= 5 {
                push_mismatch(report, m);
            }
        }
        let tags = wheel_tags(f, name);
        if tags.is_empty() {
            continue;
        }
        if let Some(m) = wheel_mismatch(f, &tags, profile, glibc.as_ref()) {
            push_mismatch(report, m);
        }
    }
    if bad_ext > 5 {
        report.problems.push(format!(
            "... and {} more extension modules built for another Python",
            bad_ext - 5
        ));
    }
}

/// A mismatch is both a problem line and an entry of `report.python` (for `--json`).
fn push_mismatch(report: &mut CheckReport, m: PythonMismatch) {
    report.problems.push(format!(
        "{} {}: has {}, the target has {}",
        m.what, m.path, m.found, m.expected
    ));
    report.python.push(m);
}

/// The environment's interpreter against the target's Python version (major.minor) and ABI,
/// when both sides say.
fn check_interpreter(
    profile: &TargetProfile,
    python: Option<&PythonEnvironment>,
    report: &mut CheckReport,
) {
    if let (Some(py), Some(want)) = (python, profile.python.as_deref()) {
        if !py.version.is_empty() && major_minor(&py.version) != major_minor(want) {
            push_mismatch(
                report,
                PythonMismatch {
                    what: "python version".into(),
                    path: py.executable.clone(),
                    found: py.version.clone(),
                    expected: want.to_owned(),
                },
            );
        }
    }
    if let (Some(py), Some(want)) = (python, profile.abi.as_deref()) {
        if !py.abi.is_empty() && py.abi != want {
            push_mismatch(
                report,
                PythonMismatch {
                    what: "python abi".into(),
                    path: py.executable.clone(),
                    found: py.abi.clone(),
                    expected: want.to_owned(),
                },
            );
        }
    }
}

/// An extension module (`foo.cpython-311-x86_64-linux-gnu.so`, file `name` of `f`) built for
/// another CPython ABI than the target's. Debug builds (`cp311d`) are let through.
fn extension_mismatch(
    f: &CheckInput,
    name: &str,
    profile: &TargetProfile,
) -> Option<PythonMismatch> {
    // Only extension modules: `__pycache__/x.cpython-311.pyc` carries the tag too.
    let is_extension = name.ends_with(".so");
    if let (true, Some(want), Some(rest)) = (
        is_extension,
        profile.abi.as_deref(),
        name.split_once(".cpython-"),
    ) {
        if let Some(tag) = rest.1.split(['-', '.']).next() {
            let found = format!("cp{tag}");
            if want.starts_with("cp") && found != want && !found.ends_with('d') {
                return Some(PythonMismatch {
                    what: "extension module".into(),
                    path: f.path.clone(),
                    found,
                    expected: want.to_owned(),
                });
            }
        }
    }
    None
}

/// The wheel tags of `f` (file `name`): the `Tag:` lines of an installed `*.dist-info/WHEEL`
/// (its first 64 KiB; unreadable is none), or the tag of a `*.whl` file's name; none for
/// any other file.
fn wheel_tags(f: &CheckInput, name: &str) -> Vec<String> {
    if f.path.ends_with(".dist-info/WHEEL") {
        let mut text = String::new();
        let _ =
            std::fs::File::open(&f.disk).and_then(|h| h.take(64 * 1024).read_to_string(&mut text));
        text.lines()
            .filter_map(|l| l.strip_prefix("Tag:"))
            .map(|t| t.trim().to_owned())
            .collect()
    } else if let Some(stem) = name.strip_suffix(".whl") {
        let parts: Vec<&str> = stem.split('-').collect();
        if parts.len() >= 5 {
            let n = parts.len();
            vec![format!(
                "{}-{}-{}",
                parts[n - 3],
                parts[n - 2],
                parts[n - 1]
            )]
        } else {
            Vec::new()
        }
    } else {
        Vec::new()
    }
}

/// A wheel none of whose `tags` fits the target: a wheel fits when any of its tags (expanded
/// on '.') has an ABI and a platform the target can load.
fn wheel_mismatch(
    f: &CheckInput,
    tags: &[String],
    profile: &TargetProfile,
    glibc: Option<&Version>,
) -> Option<PythonMismatch> {
    let mut reasons = Vec::new();
    let fits = tags.iter().any(|t| {
        let mut it = t.splitn(3, '-');
        let (_py, abis, plats) = (it.next(), it.next().unwrap_or(""), it.next().unwrap_or(""));
        let abi_ok = abis.split('.').any(|a| {
            a == "none" || a == "abi3" || profile.abi.as_deref().is_none_or(|want| a == want)
        });
        let plat_ok = plats.split('.').any(|p| platform_fits(p, profile, glibc));
        if !abi_ok {
            reasons.push(format!("abi {abis}"));
        }
        if !plat_ok {
            reasons.push(format!("platform {plats}"));
        }
        abi_ok && plat_ok
    });
    if fits {
        return None;
    }
    Some(PythonMismatch {
        what: "wheel tag".into(),
        path: f.path.clone(),
        found: tags.join(", "),
        expected: format!(
            "abi {} on {}",
            profile.abi.as_deref().unwrap_or("any"),
            profile
                .glibc
                .as_deref()
                .map(|g| format!("glibc {g}"))
                .unwrap_or_else(|| "any platform".into())
        ),
    })
}

fn major_minor(v: &str) -> String {
    v.split('.').take(2).collect::<Vec<_>>().join(".")
}

/// Whether a wheel platform tag can run on the target.
fn platform_fits(tag: &str, profile: &TargetProfile, glibc: Option<&Version>) -> bool {
    if tag == "any" {
        return true;
    }
    let arch_ok = |arch: &str| profile.arch.as_deref().is_none_or(|a| a == arch);
    if let Some(arch) = tag.strip_prefix("linux_") {
        return arch_ok(arch);
    }
    let legacy = [
        ("manylinux1_", 5u32),
        ("manylinux2010_", 12),
        ("manylinux2014_", 17),
    ];
    for (prefix, minor) in legacy {
        if let Some(arch) = tag.strip_prefix(prefix) {
            return arch_ok(arch) && glibc.is_none_or(|g| *g >= Version(vec![2, minor]));
        }
    }
    if let Some(rest) = tag.strip_prefix("manylinux_") {
        let mut it = rest.splitn(3, '_');
        let major: Option<u32> = it.next().and_then(|s| s.parse().ok());
        let minor: Option<u32> = it.next().and_then(|s| s.parse().ok());
        let arch = it.next().unwrap_or("");
        if let (Some(ma), Some(mi)) = (major, minor) {
            return arch_ok(arch) && glibc.is_none_or(|g| *g >= Version(vec![ma, mi]));
        }
    }
    // musllinux, macosx, win: not for a glibc Linux target.
    false
}

/// Scripts whose `#!` names an interpreter the target does not have (see [`script`]). Only
/// files starting with `#!` are kept as inputs, and only their first bytes are read.
fn check_scripts(files: &[CheckInput], report: &mut CheckReport) {
    use rayon::prelude::*;
    let paths: HashSet<&str> = files.iter().map(|f| f.path.as_str()).collect();
    let in_bundle = |p: &str| paths.contains(p);
    let verdicts: Vec<script::Verdict> = files
        .par_iter()
        .filter(|f| f.link.is_none() && !f.disk.as_os_str().is_empty())
        .filter(|f| !f.path.ends_with(".whl") && !airgap_elf::is_elf(&f.disk))
        .map(|f| script::judge(&f.path, &f.disk, &f.rewritten, &in_bundle))
        .collect();
    for v in verdicts {
        match v {
            script::Verdict::Fine => {}
            script::Verdict::Warning(w) => report.warnings.push(w),
            script::Verdict::Problem(p) => report.problems.push(p),
        }
    }
}

/// Reading the ELF members of a wheel (a zip file) with the `zip` crate, without holding the
/// wheel: the central directory is read with seeks, then each library member is streamed
/// (stored or inflated) into a bounded buffer or, when larger, an unnamed temporary file, and
/// only its ELF headers are read from there.
mod wheel {
    use std::fs::File;
    use std::io::{self, BufReader, Read};
    use std::path::Path;

    use airgap_elf::ElfFile;

    /// Members up to this size are inflated in memory; larger ones go to a temporary file.
    pub(super) const IN_MEMORY: u64 = 1 << 20;

    /// The members of one wheel.
    pub struct Members {
        /// Every member name.
        pub names: Vec<String>,
        /// ELF members (by content) whose name looks like a shared library, read as
        /// `LABEL!/MEMBER`.
        pub elves: Vec<(String, ElfFile)>,
    }

    /// Read the ELF members of the wheel at `path`; `label` names the wheel in the results.
    pub fn elf_members(path: &Path, label: &str) -> Result<Members, String> {
        let file = File::open(path).map_err(|e| e.to_string())?;
        let mut zip = zip::ZipArchive::new(BufReader::with_capacity(64 * 1024, file))
            .map_err(|e| e.to_string())?;
        let mut out = Members {
            names: Vec::with_capacity(zip.len()),
            elves: Vec::new(),
        };
        for i in 0..zip.len() {
            let member = zip.by_index(i).map_err(|e| e.to_string())?;
            let name = member.name().to_owned();
            out.names.push(name.clone());
            let base = name.rsplit('/').next().unwrap_or(&name);
            let library = base.ends_with(".so") || base.contains(".so.");
            if !library || member.is_dir() || member.enclosed_name().is_none() {
                continue;
            }
            let size = member.size();
            let label = format!("{label}!/{name}");
            let elf = read_elf(member, size, &label).map_err(|e| format!("{name}: {e}"))?;
            if let Some(elf) = elf {
                out.elves.push((label, elf));
            }
        }
        Ok(out)
    }

    /// Read one member's ELF headers from its byte stream: `None` when it is not ELF (or its
    /// ELF structures are broken). At most [`IN_MEMORY`] bytes are held.
    fn read_elf(mut data: impl Read, size: u64, member: &str) -> io::Result<Option<ElfFile>> {
        let mut magic = [0u8; 4];
        let mut got = 0;
        while got < 4 {
            match data.read(&mut magic[got..])? {
                0 => return Ok(None),
                n => got += n,
            }
        }
        if !airgap_elf::is_elf_bytes(&magic) {
            return Ok(None);
        }
        let mut rest = (&magic[..]).chain(data);
        if size <= IN_MEMORY {
            let mut bytes = Vec::with_capacity(size as usize);
            rest.read_to_end(&mut bytes)?;
            return Ok(ElfFile::parse_bytes(Path::new(member), &bytes).ok());
        }
        let mut spill = tempfile::tempfile()?;
        io::copy(&mut rest, &mut spill)?;
        Ok(ElfFile::parse_file(Path::new(member), &spill).ok())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn platform_tags_against_glibc() {
        let p = TargetProfile::default();
        let g = Version(vec![2, 17]);
        assert!(platform_fits("manylinux2014_x86_64", &p, Some(&g)));
        assert!(platform_fits("manylinux_2_17_x86_64", &p, Some(&g)));
        assert!(!platform_fits("manylinux_2_28_x86_64", &p, Some(&g)));
        assert!(platform_fits("any", &p, Some(&g)));
        assert!(!platform_fits("musllinux_1_2_x86_64", &p, Some(&g)));
    }

    /// A zip file: (name, content, deflated).
    fn zip(path: &Path, members: &[(&str, &[u8], bool)]) {
        use std::io::Write;
        let file = std::fs::File::create(path).expect("create zip");
        let mut z = zip::ZipWriter::new(file);
        for (name, content, deflate) in members {
            let method = if *deflate {
                zip::CompressionMethod::Deflated
            } else {
                zip::CompressionMethod::Stored
            };
            let options = zip::write::SimpleFileOptions::default()
                .compression_method(method)
                .large_file(content.len() as u64 >= u64::from(u32::MAX));
            z.start_file(*name, options).expect("start member");
            z.write_all(content).expect("write member");
        }
        z.finish().expect("finish zip");
    }

    #[test]
    fn wheel_elf_members_are_streamed_not_loaded() {
        let exe = std::env::current_exe().expect("exe");
        let big = std::fs::read(&exe).expect("read exe");
        assert!(
            big.len() as u64 > wheel::IN_MEMORY,
            "the test binary is small"
        );
        // A small ELF member: the head of the binary up to its dynamic section is not
        // needed, so use a real small shared object when there is one.
        let small = std::fs::read("/lib/x86_64-linux-gnu/libdl.so.2").ok();
        let dir = tempfile::tempdir().expect("tmp");
        let whl = dir.path().join("x-1.0-cp311-cp311-linux_x86_64.whl");
        let mut members: Vec<(&str, &[u8], bool)> = vec![
            ("x/__init__.py", b"print(1)\n", true),
            ("x/big.cpython-311-x86_64-linux-gnu.so", &big, true),
            ("x/stored.so", &big, false),
            ("x/not-elf.so", b"INPUT(-lfoo)\n", true),
        ];
        if let Some(small) = &small {
            members.push(("x.libs/libdl.so.2", small, true));
        }
        zip(&whl, &members);
        let got = wheel::elf_members(&whl, "wheels/x.whl").expect("read wheel");
        assert_eq!(got.names.len(), members.len());
        let whole = ElfFile::parse_bytes(&exe, &big).expect("parse exe");
        let by_name: BTreeMap<&str, &ElfFile> =
            got.elves.iter().map(|(n, e)| (n.as_str(), e)).collect();
        for name in [
            "wheels/x.whl!/x/big.cpython-311-x86_64-linux-gnu.so",
            "wheels/x.whl!/x/stored.so",
        ] {
            let elf = by_name
                .get(name)
                .unwrap_or_else(|| panic!("{name} missing: {by_name:?}"));
            assert_eq!(elf.needed, whole.needed);
            assert_eq!(elf.version_needs, whole.version_needs);
            assert_eq!(elf.size, big.len() as u64);
            assert_eq!(elf.path, Path::new(name));
        }
        assert!(!by_name.contains_key("wheels/x.whl!/x/not-elf.so"));
        if small.is_some() {
            assert!(by_name.contains_key("wheels/x.whl!/x.libs/libdl.so.2"));
        }
    }

    #[test]
    fn this_test_binary_passes_against_this_machine() {
        let exe = std::env::current_exe().expect("exe");
        let files = vec![CheckInput {
            path: "bin/test".into(),
            disk: exe,
            link: None,
            grafted: false,
            rewritten: Vec::new(),
        }];
        let target =
            CheckTarget::from_root(&TargetProfile::default(), Path::new("/")).expect("root");
        let r = check_against(&files, &target, None).expect("check");
        assert!(r.passed(), "{:?}", r.problems);
        assert!(r.min_glibc.is_some());
        let old = CheckTarget::from_glibc(&TargetProfile::default(), "2.5").expect("2.5");
        let r = check_against(&files, &old, None).expect("check");
        assert!(!r.passed());
        assert!(r.problems[0].contains("glibc"), "{:?}", r.problems);
    }
}

#[cfg(test)]
mod target_tests {
    use super::*;

    /// Issue 14: the build machine's platform tags (manylinux_2_36) must not win over the
    /// declared glibc: one target, one floor.
    #[test]
    fn a_declared_glibc_wins_over_platform_tags() {
        let mut profile = TargetProfile::default();
        profile.glibc = Some("2.31".into());
        profile.platforms = vec!["manylinux_2_36_x86_64".into(), "linux_x86_64".into()];
        let t = CheckTarget::from_profile(&profile).expect("target");
        let s = t.describe();
        assert_eq!(s.policy.as_deref(), Some("manylinux_2_31"));
        assert_eq!(s.glibc.as_deref(), Some("2.31"));
        assert_eq!(
            s.max_versions.get("GLIBC").map(String::as_str),
            Some("2.31")
        );
    }
}
