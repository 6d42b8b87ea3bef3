//! The algorithm: find what the bundle's ELF files need, copy it in, patch the users.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use airgap_elf::loader::{Loader, Object};
use airgap_elf::model::{dir_of, Model, Place, System, View};
use airgap_elf::patch::{origin_relative, set_search_path};
use airgap_elf::policy::{
    never_bundle, policy_by_name, policy_for_glibc, ManylinuxPolicy, NeverBundle,
};
use airgap_elf::{ElfFile, ElfKind, RpathKind, SymbolVersions, Version};
use airgap_plugin_api::{
    ContributeRequest, Contribution, Earlier, Entry, FileKind, Host, Package, PluginError,
    PythonEnvironment, TargetProfile,
};
use serde::Deserialize;

/// `[sources.syslibs]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SyslibsConfig {
    /// Sonames (globs) to bundle even when the target is assumed (or probed) to have them
    /// (`always` is the same key).
    #[serde(alias = "always")]
    pub include: Vec<String>,
    /// Sonames (globs) never to bundle: the target must provide them.
    pub exclude: Vec<String>,
    /// Libraries loaded only with `dlopen` (not in any DT_NEEDED), bundled with their closure.
    pub extra: Vec<PathBuf>,
    /// The manylinux policy of the target (`manylinux2014`, `manylinux_2_28`); default: from
    /// `[target]`'s platform tags, then its glibc, else manylinux2014.
    pub policy: Option<String>,
    /// The library dir inside the bundle; default `<python prefix>/lib/airgap-syslibs`.
    pub dir: Option<String>,
}

/// The policy the target profile implies.
pub fn target_policy(
    config_policy: Option<&str>,
    target: &TargetProfile,
) -> Result<ManylinuxPolicy, PluginError> {
    if let Some(name) = config_policy {
        return policy_by_name(name).ok_or_else(|| {
            PluginError::new(format!(
                "unknown manylinux policy `{name}` in [sources.syslibs]"
            ))
            .with_help("use a tag such as manylinux2014, manylinux_2_28 or manylinux_2_35")
        });
    }
    // A probed target (`--target`, `[target] profile`): its own libraries.
    if let (Some(system), Some(glibc)) = (&target.system, target.glibc.as_deref()) {
        let name = match system.source.as_str() {
            "code" => "the target code",
            _ => "the target profile",
        };
        return ManylinuxPolicy::from_target(
            name.into(),
            glibc,
            &system.versions,
            &system.libraries,
        )
        .ok_or_else(|| PluginError::new(format!("invalid glibc {glibc:?} in the target profile")));
    }
    for tag in &target.platforms {
        if tag.starts_with("manylinux") {
            if let Some(p) = policy_by_name(tag) {
                return Ok(p);
            }
        }
    }
    if let Some(g) = target.glibc.as_deref().and_then(Version::parse) {
        if let Some(p) = policy_for_glibc(&g) {
            return Ok(p);
        }
    }
    policy_by_name("manylinux2014")
        .ok_or_else(|| PluginError::new("internal: manylinux2014 policy missing"))
}

/// `patterns` of the `key` of [sources.syslibs] (sonames), in airgap's one dialect
/// ([`airgap_glob`]).
fn globset(patterns: &[String], key: &str) -> Result<airgap_glob::Patterns, PluginError> {
    airgap_glob::Patterns::new(patterns).map_err(|e| {
        PluginError::new(format!("{e} in [sources.syslibs] {key}")).with_help(
            "patterns match library names, such as `libcuda.so.*` (see docs/configuration.md)",
        )
    })
}

/// An ELF file earlier plugins brought: what syslibs keeps of its record.
#[derive(Debug, Clone)]
struct Known {
    /// Bundle path.
    path: String,
    /// Where it is on this machine.
    source: PathBuf,
    mode: u32,
    package: Option<String>,
}

/// What syslibs keeps of the earlier files: the ELF files and the links (the loader never
/// loads anything else), read a page at a time from the host.
struct Bundle {
    files: Vec<Known>,
    /// (bundle path, target).
    links: Vec<(String, String)>,
}

/// Read the earlier files' ELF files and links: from the host's pages (ABI 1.1), else from
/// `request.earlier` (a table without paging, which means every file: the ELF ones are
/// sorted out here, so that both give the same index).
fn bundle_of(request: &ContributeRequest, host: &Host) -> Result<Bundle, PluginError> {
    use rayon::prelude::*;
    let mut files = Vec::new();
    let mut links = Vec::new();
    let mut seen = 0usize;
    for f in host.earlier(request, Earlier::ElfAndLinks) {
        let f = f?;
        seen += 1;
        match f.kind {
            FileKind::Symlink { target } => links.push((f.path, target)),
            FileKind::File => {
                if let Some(source) = f.source {
                    files.push(Known {
                        path: f.path,
                        source,
                        mode: f.mode,
                        package: f.package,
                    });
                }
            }
            // Directories, and any kind a newer API adds: neither an ELF file nor a link,
            // so nothing the loader model reads.
            _ => {}
        }
        if seen % 4096 == 0 && host.is_cancelled() {
            return Err(PluginError::cancelled());
        }
    }
    if !host.pages_earlier() {
        files = files
            .into_par_iter()
            .filter(|k| airgap_elf::is_elf(&k.source))
            .collect();
    }
    host.debug(&format!(
        "{} ELF files and {} links of the earlier files ({}; {} in the request)",
        files.len(),
        links.len(),
        if host.pages_earlier() {
            "paged from the host"
        } else {
            "the host does not page"
        },
        request.earlier.len()
    ));
    Ok(Bundle { files, links })
}

/// What the bundle already holds, indexed by name and by source (what the model cannot
/// answer: the build machine's side).
struct BundleIndex<'a> {
    /// Bundle paths by file name.
    by_name: HashMap<&'a str, Vec<&'a str>>,
    /// Bundle path of each source file.
    sources: HashMap<&'a Path, &'a str>,
    /// Bundle dir of each source dir, so absolute search-path entries that point at the
    /// environment on this machine lead into the bundle (the view relocates them).
    source_dirs: BTreeMap<PathBuf, String>,
    /// Links by bundle path.
    links: Vec<(&'a str, &'a str)>,
    /// The environment's prefix on this machine and its bundle dir: entries inside it are
    /// the environment's own dirs, moved with it.
    prefix: Option<(PathBuf, String)>,
}

impl<'a> BundleIndex<'a> {
    fn new(bundle: &'a Bundle, python: Option<&PythonEnvironment>) -> BundleIndex<'a> {
        let mut idx = BundleIndex {
            by_name: HashMap::new(),
            sources: HashMap::new(),
            source_dirs: BTreeMap::new(),
            links: Vec::new(),
            prefix: python
                .filter(|py| !py.source_prefix.as_os_str().is_empty())
                .map(|py| {
                    (
                        airgap_elf::loader::normalize(&py.source_prefix),
                        py.prefix.trim_matches('/').to_owned(),
                    )
                }),
        };
        // Sorted by path, as the host lists them, so that `by_name` keeps the host's order.
        let mut paths: Vec<&'a str> = bundle
            .files
            .iter()
            .map(|f| f.path.as_str())
            .chain(bundle.links.iter().map(|(p, _)| p.as_str()))
            .collect();
        paths.sort_unstable();
        for path in paths {
            let name = path.rsplit('/').next().unwrap_or(path);
            idx.by_name.entry(name).or_default().push(path);
        }
        for (path, target) in &bundle.links {
            idx.links.push((path.as_str(), target.as_str()));
        }
        for f in &bundle.files {
            idx.sources
                .entry(f.source.as_path())
                .or_insert(f.path.as_str());
            if let Some(parent) = f.source.parent() {
                idx.source_dirs
                    .entry(parent.to_path_buf())
                    .or_insert_with(|| dir_of(&f.path).to_owned());
            }
        }
        idx
    }

    /// An absolute search-path entry as a bundle dir, when it is a source dir we know.
    fn bundle_dir(&self, entry: &str) -> Option<String> {
        let p = airgap_elf::loader::normalize(Path::new(entry));
        if let Some(d) = self.source_dirs.get(&p) {
            return Some(d.clone());
        }
        let (src, dir) = self.prefix.as_ref()?;
        let rel = p.strip_prefix(src).ok()?;
        airgap_elf::join_bundle_path(dir, &rel.to_string_lossy())
    }
}

/// One ELF file of the bundle, or a library we add.
#[derive(Clone)]
struct Obj {
    /// Where it is on this machine.
    disk: PathBuf,
    elf: Arc<ElfFile>,
    /// The earlier file it replaces (None for libraries we add).
    earlier: Option<Known>,
    /// Bundle dirs its search path must gain.
    add_dirs: BTreeSet<String>,
    /// Dirs on this machine its grafted needs came from: absolute entries naming them are
    /// stale once the `$ORIGIN` entries replace them.
    stale: BTreeSet<PathBuf>,
}

impl Obj {
    /// The search-path entries the loader uses for its needs, as written in the file.
    fn entries(&self) -> Vec<String> {
        let mut e: Vec<String> = Vec::new();
        if !self.elf.has_runpath {
            e.extend(self.elf.rpath.iter().cloned());
        }
        e.extend(self.elf.runpath.iter().cloned());
        e
    }

    /// The search path the patched copy gets (as DT_RPATH), or `None` when the file goes
    /// in unchanged: absolute entries into the bundle become `$ORIGIN`-relative, entries
    /// naming a dir its grafted libraries came from are dropped, the new dirs follow.
    fn patched_entries(&self, bundle_path: &str, idx: &BundleIndex<'_>) -> Option<Vec<String>> {
        let old = self.entries();
        let maps_absolute = old
            .iter()
            .any(|e| e.starts_with('/') && idx.bundle_dir(e).is_some());
        if self.add_dirs.is_empty() && !maps_absolute {
            return None;
        }
        let here = dir_of(bundle_path);
        let mut entries: Vec<String> = Vec::new();
        for e in &old {
            let e = if e.starts_with('/') {
                match idx.bundle_dir(e) {
                    Some(d) => origin_relative(here, &d),
                    None if self
                        .stale
                        .contains(&airgap_elf::loader::normalize(Path::new(e))) =>
                    {
                        continue
                    }
                    None => e.clone(),
                }
            } else {
                e.clone()
            };
            if !entries.contains(&e) {
                entries.push(e);
            }
        }
        for d in &self.add_dirs {
            let e = origin_relative(here, d);
            if !entries.contains(&e) {
                entries.push(e);
            }
        }
        Some(entries)
    }
}

/// The bundle as the target will see it once patched: every object with the search path
/// its copy will have, the links, and the source dirs relocated into the bundle.
fn view_of(
    objs: &BTreeMap<String, Obj>,
    idx: &BundleIndex<'_>,
    request: &ContributeRequest,
) -> View {
    let mut view = View::new();
    for (path, obj) in objs {
        let elf = match obj.patched_entries(path, idx) {
            Some(entries) => {
                let mut e = (*obj.elf).clone();
                e.rpath = entries;
                e.runpath.clear();
                e.has_runpath = false;
                Arc::new(e)
            }
            None => obj.elf.clone(),
        };
        view.add_object(path.clone(), elf);
    }
    for (path, target) in &idx.links {
        view.add_link(*path, *target);
    }
    if let Some(py) = &request.python {
        if !py.source_prefix.as_os_str().is_empty() {
            view.relocate(py.source_prefix.clone(), py.prefix.trim_matches('/'));
        }
    }
    for (src, dir) in &idx.source_dirs {
        view.relocate(src.clone(), dir.clone());
    }
    view
}

/// Needed names the model cannot resolve on the target, per object, in the walks the check
/// judges ([`airgap_elf::roots::walk_bundle`]): a name counts as missing for an object when a
/// walk that loads the object does not resolve it, so that what is left after grafting is
/// what the check reports. Names in `forced` that the target would provide count too: we must
/// bring our own.
fn unresolved(
    model: &Model<'_>,
    objs: &BTreeMap<String, Obj>,
    python_executable: Option<&str>,
    forced: &dyn Fn(&str) -> bool,
) -> BTreeSet<(String, String)> {
    let objects: Vec<(&str, &airgap_elf::ElfFile)> =
        objs.iter().map(|(p, o)| (p.as_str(), &*o.elf)).collect();
    let mut out: BTreeSet<(String, String)> = BTreeSet::new();
    for root in airgap_elf::roots::walk_bundle(model, &objects, python_executable) {
        for l in &root.walk.loaded {
            let Place::Bundle(p) = &l.obj.place else {
                continue;
            };
            for d in &l.deps {
                let ok = match &d.found {
                    None => false,
                    Some(Place::Target(_)) => !forced(&d.name),
                    Some(Place::Bundle(_)) => true,
                };
                if !ok {
                    out.insert((p.clone(), d.name.clone()));
                }
            }
        }
    }
    out
}

/// The whole plugin: ask the loader model what the bundle lacks on the target, graft it
/// from this machine, and repeat until nothing more is missing; then patch the users.
pub fn graft(
    request: &ContributeRequest,
    config: &SyslibsConfig,
    host: &Host,
) -> Result<Contribution, PluginError> {
    let policy = target_policy(config.policy.as_deref(), &request.target)?;
    let include = globset(&config.include, "include")?;
    let exclude = globset(&config.exclude, "exclude")?;
    let lib_dir = lib_dir_of(config, request);
    host.info(&format!(
        "looking for system libraries (target policy {}, library dir {lib_dir})",
        policy.name
    ));
    let bundle = bundle_of(request, host)?;
    let idx = BundleIndex::new(&bundle, request.python.as_ref());
    let loader = Loader::host();
    let mut objs = bundle_objects(&bundle.files, &loader);
    if host.is_cancelled() {
        return Err(PluginError::cancelled());
    }
    host.debug(&format!("{} ELF files in the bundle", objs.len()));

    let mut out = Contribution::default();
    let mut grafted = Grafted::default();
    add_extras(
        config,
        request,
        &loader,
        &lib_dir,
        &mut grafted,
        &mut objs,
        &mut out.warnings,
    )?;

    // libstdc++ and libgcc_s are assumed on every manylinux target, but only up to the
    // policy's GLIBCXX/CXXABI/GCC versions: when the bundle needs newer, the target's own
    // copies are too old and ours go in.
    let auto_include = too_new_runtimes(objs.values(), &policy);
    for name in &auto_include {
        host.info(&format!(
            "bundling {name}: the bundle needs newer symbol versions than a {} target has",
            policy.name
        ));
    }
    let forced = |name: &str| {
        never_bundle(name).is_none()
            && !exclude.matches(name)
            && (include.matches(name) || auto_include.contains(name))
    };
    let round = Round {
        request,
        host,
        loader: &loader,
        idx: &idx,
        exclude: &exclude,
        lib_dir: &lib_dir,
    };
    round.until_resolved(&policy, &forced, &mut objs, &mut grafted)?;
    patch_users(&objs, &idx, request, host, &mut out)?;
    describe(&grafted, &lib_dir, &policy, host, &mut out);
    Ok(out)
}

/// Where grafted libraries go: `[sources.syslibs] dir`, else beside the bundled Python's
/// own `lib`, else at the bundle's top.
fn lib_dir_of(config: &SyslibsConfig, request: &ContributeRequest) -> String {
    match &config.dir {
        Some(d) => d.trim_matches('/').to_owned(),
        None => match &request.python {
            Some(py) if !py.prefix.trim_matches('/').is_empty() => {
                format!("{}/lib/airgap-syslibs", py.prefix.trim_matches('/'))
            }
            _ => "airgap-syslibs".to_owned(),
        },
    }
}

/// The ELF files earlier plugins contributed, by bundle path, parsed in parallel.
fn bundle_objects(earlier: &[Known], loader: &Loader) -> BTreeMap<String, Obj> {
    use rayon::prelude::*;
    earlier
        .par_iter()
        .filter_map(|f| {
            let elf = loader.parse(&f.source).ok()?;
            if elf.kind == ElfKind::Other {
                return None;
            }
            Some((
                f.path.clone(),
                Obj {
                    disk: f.source.clone(),
                    elf,
                    earlier: Some(f.clone()),
                    add_dirs: BTreeSet::new(),
                    stale: BTreeSet::new(),
                },
            ))
        })
        .collect()
}

/// What the grafting added and could not find.
#[derive(Default)]
struct Grafted {
    /// Needed name -> (source on this machine, bundle path).
    added: BTreeMap<String, (PathBuf, String)>,
    /// Needed name -> the bundle files that need it.
    missing: BTreeMap<String, BTreeSet<String>>,
}

/// `[sources.syslibs] extra`: dlopen-only libraries, grafted with their closure.
fn add_extras(
    config: &SyslibsConfig,
    request: &ContributeRequest,
    loader: &Loader,
    lib_dir: &str,
    grafted: &mut Grafted,
    objs: &mut BTreeMap<String, Obj>,
    warnings: &mut Vec<String>,
) -> Result<(), PluginError> {
    for extra in &config.extra {
        let path = request.resolve_path(extra);
        let elf = loader.parse(&path).map_err(|e| {
            PluginError::new(format!("extra library {}: {e}", path.display()))
                .with_help("`extra` in [sources.syslibs] lists shared libraries on this machine")
        })?;
        let name = elf.soname.clone().unwrap_or_else(|| {
            path.file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default()
        });
        if let Some(why) = never_bundle(&name) {
            warnings.push(format!(
                "extra library {name} is not bundled: {} must come from the target",
                match why {
                    NeverBundle::Glibc => "glibc",
                    NeverBundle::Driver => "a GPU driver library",
                }
            ));
            continue;
        }
        let dest = format!("{lib_dir}/{name}");
        grafted.added.insert(name, (path.clone(), dest.clone()));
        objs.insert(
            dest,
            Obj {
                disk: path,
                elf,
                earlier: None,
                add_dirs: BTreeSet::new(),
                stale: BTreeSet::new(),
            },
        );
    }
    Ok(())
}

/// What one round of grafting works with.
struct Round<'a> {
    request: &'a ContributeRequest,
    host: &'a Host<'a>,
    loader: &'a Loader,
    idx: &'a BundleIndex<'a>,
    exclude: &'a airgap_glob::Patterns,
    lib_dir: &'a str,
}

impl Round<'_> {
    /// Ask the model; graft; ask again until it has nothing new to say. Each round adds at
    /// least one library or dir, so this ends.
    fn until_resolved(
        &self,
        policy: &ManylinuxPolicy,
        forced: &dyn Fn(&str) -> bool,
        objs: &mut BTreeMap<String, Obj>,
        grafted: &mut Grafted,
    ) -> Result<(), PluginError> {
        let mut given_up: BTreeSet<(String, String)> = BTreeSet::new();
        loop {
            if self.host.is_cancelled() {
                return Err(PluginError::cancelled());
            }
            let lacking = {
                let view = view_of(objs, self.idx, self.request);
                let model = Model::new(&view, System::Policy(policy));
                let exe = self
                    .request
                    .python
                    .as_ref()
                    .map(|py| py.executable.as_str());
                unresolved(&model, objs, exe, forced)
            };
            let mut changed = false;
            for (user, name) in lacking {
                if name.contains('/') || !given_up.insert((user.clone(), name.clone())) {
                    continue;
                }
                changed |= self.place(&user, &name, objs, grafted);
            }
            if !changed {
                return Ok(());
            }
        }
    }

    /// Make `name` reachable for `user`: nothing for what the target provides, a search
    /// path to a copy the bundle has, or a graft from this machine. Whether anything changed.
    fn place(
        &self,
        user: &str,
        name: &str,
        objs: &mut BTreeMap<String, Obj>,
        grafted: &mut Grafted,
    ) -> bool {
        let lib_dir = self.lib_dir;
        let add_dir = |objs: &mut BTreeMap<String, Obj>, dir: &str| {
            objs.get_mut(user)
                .is_some_and(|o| o.add_dirs.insert(dir.to_owned()))
        };
        if let Some(why) = never_bundle(name) {
            if why == NeverBundle::Driver {
                self.host.debug(&format!(
                    "{name} (needed by {user}) must come from the target's driver"
                ));
            }
            return false;
        }
        if self.exclude.matches(name) {
            self.host
                .debug(&format!("{name} excluded: the target must provide it"));
            return false;
        }
        let Some(obj) = objs.get(user).cloned() else {
            return false;
        };
        // Grafted already for another file: point to it.
        if grafted.added.contains_key(name) {
            return add_dir(objs, lib_dir);
        }
        // Elsewhere in the bundle under that name: point to it.
        if let Some(found) = self.idx.by_name.get(name).and_then(|c| nearest(c, user)) {
            return add_dir(objs, dir_of(found));
        }
        let chain = [Object {
            path: obj.disk.clone(),
            elf: obj.elf.clone(),
        }];
        let Some(found) = self.loader.resolve(name, &chain) else {
            grafted
                .missing
                .entry(name.to_owned())
                .or_default()
                .insert(user.to_owned());
            return false;
        };
        // The build machine found a file that is in the bundle under that name.
        let known = self
            .idx
            .sources
            .get(found.path.as_path())
            .copied()
            .or_else(|| {
                std::fs::canonicalize(&found.path)
                    .ok()
                    .and_then(|c| self.idx.sources.get(c.as_path()).copied())
            });
        if let Some(bp) = known {
            if bp.rsplit('/').next() == Some(name) {
                return add_dir(objs, dir_of(bp));
            }
        }
        let dest = format!("{lib_dir}/{name}");
        self.host.debug(&format!(
            "bundling {} for {user} (as {dest})",
            found.path.display()
        ));
        grafted
            .added
            .insert(name.to_owned(), (found.path.clone(), dest.clone()));
        if let Some(o) = objs.get_mut(user) {
            o.add_dirs.insert(lib_dir.to_owned());
            if let Some(parent) = found.path.parent() {
                o.stale.insert(airgap_elf::loader::normalize(parent));
            }
        }
        objs.insert(
            dest,
            Obj {
                disk: found.path,
                elf: found.elf,
                earlier: None,
                add_dirs: BTreeSet::new(),
                stale: BTreeSet::new(),
            },
        );
        true
    }
}

/// Patch what needs new search paths (or has absolute ones that point into the bundle) on
/// copies, and add the grafted libraries as entries.
fn patch_users(
    objs: &BTreeMap<String, Obj>,
    idx: &BundleIndex,
    request: &ContributeRequest,
    host: &Host,
    out: &mut Contribution,
) -> Result<(), PluginError> {
    let patch_root = request.work_dir.join("patched");
    let total = objs.len() as u64;
    for (i, (bundle_path, obj)) in objs.iter().enumerate() {
        if host.is_cancelled() {
            return Err(PluginError::cancelled());
        }
        let package = match &obj.earlier {
            Some(f) => f.package.clone(),
            None => Some(format!(
                "system:{}",
                bundle_path.rsplit('/').next().unwrap_or("")
            )),
        };
        let mut source = obj.disk.clone();
        if let Some(entries) = obj.patched_entries(bundle_path, idx) {
            let copy = patch_root.join(bundle_path);
            match set_search_path(&obj.disk, &copy, &entries, RpathKind::Rpath) {
                Ok(()) => {
                    host.debug(&format!("{bundle_path}: RPATH {}", entries.join(":")));
                    source = copy;
                }
                // Without patchelf nothing can be patched: stop with the way to install it.
                Err(e @ airgap_elf::Error::PatchelfMissing) => {
                    let mut err = PluginError::new(format!("cannot patch {bundle_path}: {e}"));
                    if let Some(h) = e.help() {
                        err = err.with_help(h);
                    }
                    return Err(err);
                }
                // One odd file must not sink the bundle: it goes in unpatched, and the target
                // check names what it will miss.
                Err(e) => out.warnings.push(format!(
                    "{bundle_path} was not patched ({e}): on the target its search path lacks {}",
                    if obj.add_dirs.is_empty() {
                        "the bundle's library dirs".to_owned()
                    } else {
                        obj.add_dirs.iter().cloned().collect::<Vec<_>>().join(", ")
                    }
                )),
            }
        }
        host.progress(i as u64 + 1, total, "patching search paths");
        match &obj.earlier {
            Some(f) => {
                if source != obj.disk {
                    let mut entry = Entry::path(source, f.path.clone())
                        .replacing()
                        .with_mode(f.mode);
                    entry.package = package;
                    out.entries.push(entry);
                }
            }
            None => {
                let mut entry = Entry::path(source, bundle_path.clone()).with_mode(0o755);
                entry.package = package;
                out.entries.push(entry);
            }
        }
    }
    Ok(())
}

/// The sha256 of a library as it is on this machine (what dpkg installed), streamed.
fn sha256_file(path: &Path) -> Option<String> {
    use sha2::Digest;
    let mut file = std::fs::File::open(path).ok()?;
    let mut hash = sha2::Sha256::new();
    std::io::copy(&mut file, &mut hash).ok()?;
    Some(hex::encode(hash.finalize()))
}

/// The grafted libraries as packages (with the Debian package each came from), warnings
/// for what this machine lacks too, and the facts later plugins and `inspect` read.
fn describe(
    grafted: &Grafted,
    lib_dir: &str,
    policy: &ManylinuxPolicy,
    host: &Host,
    out: &mut Contribution,
) {
    let added = &grafted.added;
    let deb = crate::dpkg::packages_of(&added.values().map(|(p, _)| p.clone()).collect::<Vec<_>>());
    let distro = crate::dpkg::distro();
    for (name, (path, _dest)) in added {
        let mut package = match deb.get(path) {
            Some(pkg) => {
                let mut p = Package::new(format!("system:{name}"), name, &pkg.version, "system")
                    .with_origin(format!("{} (debian package {})", path.display(), pkg.name));
                p.purl = pkg.purl(&distro);
                p.license = pkg.license();
                p
            }
            None => Package::new(format!("system:{name}"), name, name, "system")
                .with_origin(path.display().to_string()),
        };
        package.sha256 = sha256_file(path);
        out.packages.push(package);
    }
    for (name, users) in &grafted.missing {
        let users: Vec<&str> = users.iter().map(String::as_str).collect();
        out.warnings.push(format!(
            "{name} is needed by {} but was not found on this machine; it is not in the bundle",
            users.join(", ")
        ));
    }
    out.facts.insert(
        "lib_dir".into(),
        serde_json::Value::String(lib_dir.to_owned()),
    );
    out.facts.insert(
        "libraries".into(),
        serde_json::json!(added
            .iter()
            .map(|(n, (p, d))| serde_json::json!({"name": n, "source": p, "dest": d}))
            .collect::<Vec<_>>()),
    );
    out.facts
        .insert("missing".into(), serde_json::json!(grafted.missing));
    out.facts.insert(
        "policy".into(),
        serde_json::Value::String(policy.name.clone()),
    );
    if !added.is_empty() {
        host.info(&format!(
            "bundled {} system libraries into {lib_dir}: {}",
            added.len(),
            added.keys().cloned().collect::<Vec<_>>().join(", ")
        ));
    }
}

/// The C++/GCC runtimes (`libstdc++.so.6`, `libgcc_s.so.1`) whose required versions exceed
/// what the policy's targets have.
fn too_new_runtimes<'a>(
    objs: impl Iterator<Item = &'a Obj>,
    policy: &ManylinuxPolicy,
) -> BTreeSet<&'static str> {
    let mut cxx = SymbolVersions::default();
    let mut gcc = SymbolVersions::default();
    for obj in objs {
        for need in &obj.elf.version_needs {
            let into = match need.file.as_str() {
                "libstdc++.so.6" => &mut cxx,
                "libgcc_s.so.1" => &mut gcc,
                _ => continue,
            };
            for v in &need.versions {
                into.add(v);
            }
        }
    }
    let mut out = BTreeSet::new();
    if !policy.too_new(&cxx).is_empty() {
        out.insert("libstdc++.so.6");
    }
    if !policy.too_new(&gcc).is_empty() {
        out.insert("libgcc_s.so.1");
    }
    out
}

/// The candidate sharing the longest leading path with `from`.
fn nearest<'a>(candidates: &[&'a str], from: &str) -> Option<&'a str> {
    candidates.iter().copied().max_by_key(|c| {
        c.split('/')
            .zip(from.split('/'))
            .take_while(|(a, b)| a == b)
            .count()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bundle_paths_join_and_stay_inside() {
        assert_eq!(
            airgap_elf::join_bundle_path("env/bin", "../lib").as_deref(),
            Some("env/lib")
        );
        assert_eq!(
            airgap_elf::join_bundle_path("env", "").as_deref(),
            Some("env")
        );
        assert_eq!(airgap_elf::join_bundle_path("", "../x"), None);
        assert_eq!(dir_of("env/lib/x.so"), "env/lib");
    }

    #[test]
    fn policy_follows_the_target() {
        let mut t = TargetProfile::default();
        assert_eq!(
            target_policy(None, &t).expect("policy").name,
            "manylinux_2_17"
        );
        t.glibc = Some("2.31".into());
        assert_eq!(
            target_policy(None, &t).expect("policy").name,
            "manylinux_2_31"
        );
        t.platforms = vec!["manylinux_2_28_x86_64".into()];
        assert_eq!(
            target_policy(None, &t).expect("policy").name,
            "manylinux_2_28"
        );
        assert!(target_policy(Some("nonsense"), &t).is_err());
    }
}
