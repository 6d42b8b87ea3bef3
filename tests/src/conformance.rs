//! The differential conformance suite: the check's per-object predictions
//! (`airgap check BUNDLE --target-root ROOT --json`, field `objects`) against glibc's real loader
//! in minimal Debian roots.
//!
//! For each workload of the corpus ([`corpus`]): the source tree is made with real tools (pip,
//! py-rattler, a real CPython installation), bundled by the real `airgap bundle`, unpacked by the
//! real `airgap unpack` into a fresh Debian root at [`DEST`], and then the real loader is asked
//! inside the root ([`probe`]), with the network cut and an empty environment:
//!
//! - every ELF file but the extension modules: `LD_TRACE_LOADED_OBJECTS=1 ld.so FILE` (what `ldd`
//!   and `ld.so --list` do; `--list` of a library stops at its first missing name) with `LD_DEBUG=libs,files`
//!   (the debug trace says which object asked for which name and which file it got);
//! - every Python extension module: loaded as Python loads it (`_imp.create_dynamic`, a dlopen
//!   from libpython) by the bundled interpreter, one process each, with the same trace; a dlopen
//!   error (cannot open, version not found, undefined symbol) is a load failure, a Python error
//!   after loading is not;
//! - a `needed` library is judged inside the trace of the first root (in the order of the
//!   predictions) that really loads it, because `--list lib.so` makes it the main program and
//!   loses the DT_RPATH it inherits; an `on_demand` one standalone.
//!
//! [`compare`] matches, per object, loads or not, each dependency's resolved file (both sides
//! canonicalized inside the root, so `/lib/x` and `/usr/lib/x` are one file), missing names and
//! missing symbol versions; and the classification: a `needed` library must be loaded by some
//! root, an `on_demand` one by none. Results go to `target/conformance/results.tsv` and
//! `target/conformance/disagreements.txt`, which `cargo xtask conformance` prints as a table.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::io::{Read, Write as _};
use std::path::{Component, Path, PathBuf};
use std::process::Command;

use serde_json::Value;

use crate::rootfs::{DebianRoot, Suite};
use crate::{airgap, run, target_dir};

/// Where bundles are unpacked inside the root.
pub const DEST: &str = "/opt/w";

/// What the suite writes: results, disagreements, cached source trees.
pub fn out_dir() -> PathBuf {
    let dir = target_dir().join("conformance");
    std::fs::create_dir_all(&dir).expect("create target/conformance");
    dir
}

// ---------------------------------------------------------------------------------------------
// The check's side
// ---------------------------------------------------------------------------------------------

/// One dependency as the check resolved it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PredictedDep {
    pub name: String,
    /// `(in, found)`: `in` is `bundle` or `target`.
    pub found: Option<(String, String)>,
    pub via: String,
}

/// One object of `airgap check --json`'s `objects`.
#[derive(Debug, Clone)]
pub struct Predicted {
    pub path: String,
    pub role: String,
    pub loads: bool,
    pub deps: Vec<PredictedDep>,
    pub missing: Vec<String>,
    pub missing_versions: Vec<String>,
    pub reason: String,
}

/// Parse the `objects` of a check report; an error names what is missing.
pub fn parse_predictions(json: &str) -> Result<Vec<Predicted>, String> {
    let report: Value =
        serde_json::from_str(json).map_err(|e| format!("check --json is not JSON: {e}"))?;
    let objects = report.get("objects").and_then(Value::as_array).ok_or(
        "the check's JSON report has no `objects` array (the per-object predictions of issue #14)",
    )?;
    let text = |v: &Value, key: &str| v.get(key).and_then(Value::as_str).unwrap_or("").to_string();
    let list = |v: &Value, key: &str| -> Vec<String> {
        v.get(key)
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|s| s.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    };
    let mut out = Vec::new();
    for o in objects {
        let path = text(o, "path");
        if path.is_empty() {
            return Err(format!("an object without `path`: {o}"));
        }
        let deps = o
            .get("deps")
            .and_then(Value::as_array)
            .map(|deps| {
                deps.iter()
                    .map(|d| {
                        let found = d
                            .get("found")
                            .and_then(Value::as_str)
                            .map(|f| (text(d, "in"), f.to_string()));
                        PredictedDep {
                            name: text(d, "name"),
                            found,
                            via: text(d, "via"),
                        }
                    })
                    .collect()
            })
            .unwrap_or_default();
        out.push(Predicted {
            role: text(o, "role"),
            loads: o.get("loads").and_then(Value::as_bool).unwrap_or(false),
            deps,
            missing: list(o, "missing"),
            missing_versions: list(o, "missing_versions"),
            reason: text(o, "reason"),
            path,
        });
    }
    Ok(out)
}

/// `airgap check BUNDLE --target-root ROOT --json`: its predictions, or why there are none.
pub fn predict(bundle: &Path, root: &DebianRoot) -> Result<Vec<Predicted>, String> {
    let done = run(airgap()
        .arg("check")
        .arg(bundle)
        .arg("--target-root")
        .arg(root.path())
        .arg("--json"));
    // Exit 3 is "will not load": still a report.
    if !matches!(done.code, Some(0) | Some(3)) {
        return Err(format!(
            "airgap check failed ({:?}):\n{}",
            done.code, done.stderr
        ));
    }
    parse_predictions(&done.stdout)
}

// ---------------------------------------------------------------------------------------------
// The real loader's side
// ---------------------------------------------------------------------------------------------

/// How a name asked for in a trace was resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resolved {
    /// Opened this file (as the loader spelled the path).
    File(String),
    /// Searched, nothing found.
    NotFound,
    /// The process ended (a failed dlopen) before the loader got to it.
    Unseen,
}

/// One DT_NEEDED request in a loader trace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub requester: String,
    pub name: String,
    pub resolved: Resolved,
}

/// A symbol version the loader refused: `provider: version `VERSION' not found (required by
/// requester)`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct VersionError {
    pub provider: String,
    pub version: String,
    pub requester: String,
}

/// What `LD_DEBUG=libs,files` shows of one process.
#[derive(Debug, Clone, Default)]
pub struct Trace {
    /// Every object mapped, in order, as the loader spelled its path.
    pub loaded: Vec<String>,
    pub requests: Vec<Request>,
    /// Name -> file for every object mapped: the name it was asked by and its file name. The
    /// loader logs no `needed by` for a name already loaded, so this is how those resolve.
    pub names: BTreeMap<String, String>,
}

/// Strip the `   PID:\t` prefix of a debug line.
fn debug_body(line: &str) -> &str {
    match line.find(":\t") {
        Some(i) if line[..i].trim().chars().all(|c| c.is_ascii_digit()) => &line[i + 2..],
        _ => line,
    }
}

/// `file=NAME [0];  REST` -> `(NAME, REST)`.
fn file_event(body: &str) -> Option<(&str, &str)> {
    let rest = body.strip_prefix("file=")?;
    let (name, rest) = rest.split_once(" [")?;
    let (_, rest) = rest.split_once("];")?;
    Some((name, rest.trim()))
}

/// Strip a trailing ` [0]` namespace marker.
fn strip_ns(s: &str) -> &str {
    match s.rfind(" [") {
        Some(i) if s.ends_with(']') => &s[..i],
        _ => s,
    }
}

/// Parse an `LD_DEBUG=libs,files` trace.
///
/// A `needed by` event followed by `find library` and then `generating link map` was found at
/// the last `trying file=`; followed by a search and no link map, not found; with no search at
/// all, it matched an object already loaded (by name or SONAME).
pub fn parse_trace(text: &str) -> Trace {
    struct Pending {
        requester: String,
        name: String,
        searched: bool,
        last_try: Option<String>,
    }
    let mut trace = Trace::default();
    // name (as asked, or file name of what was mapped) -> path, for "already loaded".
    let mut by_name: BTreeMap<String, String> = BTreeMap::new();
    let mut pending: Option<Pending> = None;
    let finish = |p: Pending, trace: &mut Trace, by_name: &BTreeMap<String, String>| {
        let resolved = if p.searched {
            Resolved::NotFound
        } else if let Some(path) = by_name.get(&p.name) {
            Resolved::File(path.clone())
        } else if p.name.contains('/') {
            Resolved::File(p.name.clone())
        } else {
            Resolved::File(format!("(already loaded) {}", p.name))
        };
        trace.requests.push(Request {
            requester: p.requester,
            name: p.name,
            resolved,
        });
    };
    for line in text.lines() {
        let body = debug_body(line);
        let trimmed = body.trim();
        if let Some(tried) = trimmed.strip_prefix("trying file=") {
            if let Some(p) = pending.as_mut() {
                p.last_try = Some(tried.to_string());
            }
            continue;
        }
        if let Some(rest) = trimmed.strip_prefix("find library=") {
            if let Some(p) = pending.as_mut() {
                if rest.split(" [").next() == Some(p.name.as_str()) {
                    p.searched = true;
                }
            }
            continue;
        }
        let Some((name, rest)) = file_event(trimmed) else {
            continue;
        };
        if let Some(req) = rest.strip_prefix("needed by ") {
            if let Some(p) = pending.take() {
                finish(p, &mut trace, &by_name);
            }
            pending = Some(Pending {
                requester: strip_ns(req).to_string(),
                name: name.to_string(),
                searched: false,
                last_try: None,
            });
        } else if rest.starts_with("generating link map") {
            let path = match pending.take() {
                Some(p) if p.name == name => {
                    let path = p
                        .last_try
                        .clone()
                        .filter(|_| !name.contains('/'))
                        .unwrap_or_else(|| name.to_string());
                    trace.requests.push(Request {
                        requester: p.requester,
                        name: p.name,
                        resolved: Resolved::File(path.clone()),
                    });
                    path
                }
                other => {
                    if let Some(p) = other {
                        finish(p, &mut trace, &by_name);
                    }
                    name.to_string()
                }
            };
            by_name.insert(name.to_string(), path.clone());
            if let Some(file) = Path::new(&path).file_name().and_then(|f| f.to_str()) {
                by_name
                    .entry(file.to_string())
                    .or_insert_with(|| path.clone());
            }
            trace.loaded.push(path);
        } else if rest.starts_with("dynamically loaded by") {
            if let Some(p) = pending.take() {
                finish(p, &mut trace, &by_name);
            }
        }
    }
    if let Some(p) = pending.take() {
        finish(p, &mut trace, &by_name);
    }
    trace.names = by_name;
    trace
        .names
        .entry("ld-linux-x86-64.so.2".into())
        .or_insert_with(|| "/lib64/ld-linux-x86-64.so.2".into());
    // The loader itself is mapped before tracing starts.
    for req in &mut trace.requests {
        if let Resolved::File(f) = &req.resolved {
            if f.starts_with("(already loaded) ld-linux") {
                req.resolved = Resolved::File("/lib64/ld-linux-x86-64.so.2".into());
            }
        }
    }
    trace
}

/// The symbol versions refused in a loader's or Python's message text.
pub fn parse_version_errors(text: &str) -> Vec<VersionError> {
    let mut out = Vec::new();
    for line in text.lines() {
        let mut rest = line;
        while let Some(i) = rest.find("version `") {
            let before = rest[..i].trim_end().trim_end_matches(':');
            let provider = before.rsplit(": ").next().unwrap_or("").trim().to_string();
            let after = &rest[i + "version `".len()..];
            let Some((version, tail)) = after.split_once("' not found (required by ") else {
                break;
            };
            let Some((requester, tail)) = tail.split_once(')') else {
                break;
            };
            out.push(VersionError {
                provider,
                version: version.to_string(),
                requester: requester.trim().to_string(),
            });
            rest = tail;
        }
    }
    out.sort();
    out.dedup();
    out
}

/// How a probe of one object ended.
#[derive(Debug, Clone)]
pub struct Probe {
    /// The object (path inside the root).
    pub object: String,
    pub trace: Trace,
    pub version_errors: Vec<VersionError>,
    /// For extension modules: the dlopen error, if the load failed for a loader reason.
    pub load_error: Option<String>,
    /// The loader said "not a dynamic executable" (a static program).
    pub static_program: bool,
    /// stdout + stderr, for reports.
    pub output: String,
}

/// What to ask the real loader about.
#[derive(Debug, Clone)]
pub enum Ask {
    /// `LD_TRACE_LOADED_OBJECTS=1 ld.so PATH` (path inside the root).
    List(String),
    /// Load the extension module at PATH as Python does, with the interpreter at the first path.
    Extension { python: String, path: String },
}

const LOAD_PY: &str = r#"import sys, _imp
try:
    from importlib.machinery import ModuleSpec
except ImportError:
    sys.exit("no importlib")
path = sys.argv[1]
name = path.rsplit("/", 1)[-1].split(".", 1)[0]
try:
    _imp.create_dynamic(ModuleSpec(name, None, origin=path))
    print("AIRGAP-LOADED")
except BaseException as e:
    print("AIRGAP-ERROR " + type(e).__name__ + ": " + str(e).replace("\n", " "))
"#;

/// The start of a load error when the interpreter itself did not run.
const INTERPRETER_FAILED: &str = "the interpreter did not run";

/// Markers of a dlopen failure (as opposed to a Python error after the library loaded).
const LOADER_ERRORS: &[&str] = &[
    "cannot open shared object file",
    "version `",
    "undefined symbol",
    "wrong ELF class",
    "file too short",
    "invalid ELF header",
    "cannot enable executable stack",
];

fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// Ask the real loader inside `root` about every object, one process each, all in one chroot.
pub fn probe(root: &DebianRoot, asks: &[Ask]) -> Vec<Probe> {
    let dir = "/root/airgap-probe";
    let host_dir = root.host_path(dir);
    let _ = std::fs::remove_dir_all(&host_dir);
    std::fs::create_dir_all(&host_dir).expect("create the probe dir in the root");
    std::fs::write(host_dir.join("load.py"), LOAD_PY).expect("write load.py");
    let mut script = String::from("cd /root\n");
    for (i, ask) in asks.iter().enumerate() {
        let env = format!("LD_DEBUG=libs,files LD_DEBUG_OUTPUT={dir}/{i}.dbg");
        let cmd = match ask {
            // What ldd runs: `ld.so --list LIB` stops at the first missing library of a
            // shared library (glibc 2.36), the variable lists them all.
            Ask::List(path) => format!(
                "{env} LD_TRACE_LOADED_OBJECTS=1 LD_WARN=yes /lib64/ld-linux-x86-64.so.2 {}",
                sh_quote(path)
            ),
            Ask::Extension { python, path } => format!(
                "{env} {} -I -S {dir}/load.py {}",
                sh_quote(python),
                sh_quote(path)
            ),
        };
        // `--list` exits 127 when a library is missing: the status says nothing more.
        let _ = writeln!(script, "{cmd} > {dir}/{i}.out 2>&1 || true");
    }
    script.push_str("exit 0\n");
    std::fs::write(host_dir.join("probe.sh"), script).expect("write probe.sh");
    let done = root.run(&format!("sh {dir}/probe.sh"));
    assert_eq!(
        done.code,
        Some(0),
        "the probe script failed in the root:\n{}\n{}",
        done.stdout,
        done.stderr
    );
    let mut debug_files: BTreeMap<usize, Vec<PathBuf>> = BTreeMap::new();
    for entry in std::fs::read_dir(&host_dir)
        .expect("read the probe dir")
        .flatten()
    {
        let name = entry.file_name().to_string_lossy().into_owned();
        if let Some((i, _)) = name.split_once(".dbg.") {
            if let Ok(i) = i.parse::<usize>() {
                debug_files.entry(i).or_default().push(entry.path());
            }
        }
    }
    asks.iter()
        .enumerate()
        .map(|(i, ask)| {
            let output = read_lossy(&host_dir.join(format!("{i}.out")));
            let mut debug = String::new();
            let mut files = debug_files.remove(&i).unwrap_or_default();
            files.sort();
            for f in files {
                debug.push_str(&read_lossy(&f));
            }
            let (object, load_error) = match ask {
                Ask::List(path) => (path.clone(), None),
                Ask::Extension { path, .. } => {
                    let error = if output.contains("AIRGAP-LOADED") {
                        None
                    } else {
                        let line = output
                            .lines()
                            .find(|l| l.starts_with("AIRGAP-ERROR"))
                            .map(str::to_string);
                        match line {
                            Some(l) if LOADER_ERRORS.iter().any(|m| l.contains(m)) => Some(l),
                            Some(_) => None,
                            // The interpreter itself did not run.
                            None => Some(format!("{INTERPRETER_FAILED}: {}", output.trim())),
                        }
                    };
                    (path.clone(), error)
                }
            };
            Probe {
                object,
                trace: parse_trace(&debug),
                version_errors: parse_version_errors(&output),
                load_error,
                static_program: output.contains("not a dynamic executable"),
                output,
            }
        })
        .collect()
}

fn read_lossy(path: &Path) -> String {
    let mut bytes = Vec::new();
    if let Ok(mut f) = std::fs::File::open(path) {
        let _ = f.read_to_end(&mut bytes);
    }
    String::from_utf8_lossy(&bytes).into_owned()
}

/// Resolve `path` (absolute, inside the root) as the root sees it: symlinks followed within the
/// root (an absolute link target restarts at the root), `.` and `..` applied after them.
pub fn canonical_in_root(root: &Path, path: &str) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut todo: Vec<String> = components(path);
    todo.reverse();
    let mut hops = 0;
    while let Some(c) = todo.pop() {
        match c.as_str() {
            "." => {}
            ".." => {
                parts.pop();
            }
            _ => {
                parts.push(c);
                let host = root.join(parts.join("/"));
                if let Ok(target) = std::fs::read_link(&host) {
                    hops += 1;
                    if hops > 40 {
                        break;
                    }
                    parts.pop();
                    let target = target.to_string_lossy().into_owned();
                    if target.starts_with('/') {
                        parts.clear();
                    }
                    let mut more = components(&target);
                    more.reverse();
                    todo.extend(more);
                }
            }
        }
    }
    format!("/{}", parts.join("/"))
}

fn components(path: &str) -> Vec<String> {
    Path::new(path)
        .components()
        .filter_map(|c| match c {
            Component::Normal(s) => Some(s.to_string_lossy().into_owned()),
            Component::ParentDir => Some("..".into()),
            Component::CurDir => Some(".".into()),
            _ => None,
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// ELF files of the unpacked tree
// ---------------------------------------------------------------------------------------------

/// Every regular ELF file under `dir` (not following links), as paths relative to `dir`.
pub fn elf_files(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

/// `e_type` of an ELF header, in its own byte order (`EI_DATA`: 1 little, 2 big endian).
fn e_type(head: &[u8; 18]) -> u16 {
    let bytes = [head[16], head[17]];
    if head[5] == 2 {
        u16::from_be_bytes(bytes)
    } else {
        u16::from_le_bytes(bytes)
    }
}

fn walk(base: &Path, dir: &Path, out: &mut Vec<String>) {
    let Ok(read) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in read.flatten() {
        let Ok(kind) = entry.file_type() else {
            continue;
        };
        let path = entry.path();
        if kind.is_dir() {
            walk(base, &path, out);
        } else if kind.is_file() {
            // What the loader can map: executables and shared objects (ET_EXEC, ET_DYN), read
            // from the header itself; a relocatable object (`config-3.11/python.o`, ET_REL)
            // or a core file is an ELF file no loader ever opens, and no prediction is owed.
            let mut head = [0u8; 18];
            let loadable = std::fs::File::open(&path)
                .and_then(|mut f| f.read_exact(&mut head))
                .is_ok()
                && head[..4] == *b"\x7fELF"
                && matches!(e_type(&head), 2 | 3);
            if loadable {
                if let Ok(rel) = path.strip_prefix(base) {
                    out.push(rel.to_string_lossy().into_owned());
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Comparison
// ---------------------------------------------------------------------------------------------

/// One difference between the check and the real loader.
#[derive(Debug, Clone)]
pub struct Disagreement {
    pub object: String,
    pub role: String,
    /// The dependency name, or `loads`, `role`, `versions`, `coverage`.
    pub what: String,
    pub predicted: String,
    pub real: String,
    /// The rule the check used (`via`), or the check's reason.
    pub rule: String,
}

impl Disagreement {
    /// Does it concern something that must load (not an on-demand plugin's own needs)?
    pub fn must_load(&self) -> bool {
        self.role != "on_demand" || self.what == "role"
    }
}

/// The comparison of one workload in one root.
#[derive(Debug, Default)]
pub struct Outcome {
    pub compared: usize,
    pub agreements: usize,
    pub on_demand: usize,
    pub disagreements: Vec<Disagreement>,
}

/// Paths of a probe relative to the bundle, for reports.
fn show(path: &str) -> String {
    path.strip_prefix(DEST)
        .map(|p| p.trim_start_matches('/').to_string())
        .unwrap_or_else(|| path.to_string())
}

/// The real loader's view of one object in one context.
struct RealView {
    loads: bool,
    why: String,
    deps: BTreeMap<String, Resolved>,
    versions: BTreeSet<String>,
    complete: bool,
}

/// `object` in `probe`'s trace: what its own names resolved to, and does it load: its whole
/// closure (`closure`, for roots) or its own needs (a library, as the contract says).
fn view(
    canon: &dyn Fn(&str) -> String,
    probe: &Probe,
    object: &str,
    own_names: &[String],
    own_error: Option<&str>,
    closure: bool,
) -> RealView {
    let mut by_requester: BTreeMap<String, Vec<&Request>> = BTreeMap::new();
    for r in &probe.trace.requests {
        by_requester.entry(canon(&r.requester)).or_default().push(r);
    }
    let me = canon(object);
    let mut deps = BTreeMap::new();
    for r in by_requester.get(&me).into_iter().flatten() {
        let resolved = match &r.resolved {
            Resolved::File(f) if !f.starts_with("(already") => Resolved::File(canon(f)),
            other => other.clone(),
        };
        deps.entry(r.name.clone()).or_insert(resolved);
    }
    for name in own_names {
        if !deps.contains_key(name) {
            if let Some(f) = probe.trace.names.get(name) {
                deps.insert(name.clone(), Resolved::File(canon(f)));
            }
        }
    }
    // The closure: does every object it reaches have all its names.
    let mut seen = BTreeSet::new();
    let mut todo = vec![me.clone()];
    let mut why = String::new();
    let mut complete = true;
    let mut reached = BTreeSet::new();
    while let Some(o) = todo.pop() {
        if !seen.insert(o.clone()) {
            continue;
        }
        reached.insert(o.clone());
        for r in by_requester.get(&o).into_iter().flatten() {
            match &r.resolved {
                Resolved::File(f) if !f.starts_with("(already") => {
                    if closure {
                        todo.push(canon(f));
                    }
                }
                Resolved::File(_) => {}
                Resolved::NotFound => {
                    if why.is_empty() {
                        why = format!("{} not found (needed by {})", r.name, show(&o));
                    }
                }
                Resolved::Unseen => complete = false,
            }
        }
    }
    let mut versions = BTreeSet::new();
    for v in &probe.version_errors {
        if canon(&v.requester) == me {
            let name = deps
                .iter()
                .find(|(_, r)| matches!(r, Resolved::File(f) if *f == canon(&v.provider)))
                .map(|(n, _)| n.clone())
                .unwrap_or_else(|| {
                    Path::new(&v.provider)
                        .file_name()
                        .map(|f| f.to_string_lossy().into_owned())
                        .unwrap_or_default()
                });
            versions.insert(format!("{name}: {}", v.version));
        }
        if reached.contains(&canon(&v.requester)) && why.is_empty() {
            why = format!(
                "{}: version `{}' not found (required by {})",
                show(&v.provider),
                v.version,
                show(&v.requester)
            );
        }
    }
    if let Some(e) = own_error {
        if why.is_empty() {
            why = e.to_string();
        }
        complete = false;
    }
    RealView {
        loads: why.is_empty(),
        why,
        deps,
        versions,
        complete,
    }
}

/// Compare the predictions for one bundle unpacked at [`DEST`] in `root` with the probes of
/// [`probe_all`]; `elf` is the list of ELF files actually unpacked (relative to [`DEST`]).
pub fn compare(
    root: &Path,
    predictions: &[Predicted],
    standalone: &[Probe],
    python: &[Option<Probe>],
    elf: &[String],
) -> Outcome {
    // Every trace repeats the interpreter's start-up: resolve each path once.
    let cache = std::cell::RefCell::new(BTreeMap::<String, String>::new());
    let canon = |p: &str| -> String {
        if let Some(c) = cache.borrow().get(p) {
            return c.clone();
        }
        let c = canonical_in_root(root, p);
        cache.borrow_mut().insert(p.to_string(), c.clone());
        c
    };
    let mut out = Outcome::default();
    let inside = |p: &str| format!("{DEST}/{p}");
    // Coverage: every unpacked ELF file is predicted (wheel members are predicted but not
    // files). `.airgap/` holds airgap's own static unpacker, not the workload.
    let predicted_paths: BTreeSet<&str> = predictions.iter().map(|p| p.path.as_str()).collect();
    for f in elf {
        if !predicted_paths.contains(f.as_str()) && !f.starts_with(".airgap/") {
            out.disagreements.push(Disagreement {
                object: f.clone(),
                role: "?".into(),
                what: "coverage".into(),
                predicted: "no prediction".into(),
                real: "an ELF file of the bundle".into(),
                rule: String::new(),
            });
        }
    }
    // The probe that shows a root as it really loads: an extension through its interpreter,
    // unless the interpreter itself does not run in this root (then standalone).
    let root_probe = |i: usize| -> (&Probe, Option<&str>) {
        match &python[i] {
            Some(p)
                if !p
                    .load_error
                    .as_deref()
                    .is_some_and(|e| e.starts_with(INTERPRETER_FAILED)) =>
            {
                (p, p.load_error.as_deref())
            }
            _ => (&standalone[i], None),
        }
    };
    // Which roots really load which file: canonical path -> index of the first root, in the
    // order of the predictions (sorted by path). A root whose load stopped early (a dlopen
    // fails at the first missing name) does not show all it would reach.
    let mut first_root: BTreeMap<String, usize> = BTreeMap::new();
    let mut truncated = false;
    for (i, p) in predictions.iter().enumerate() {
        if matches!(p.role.as_str(), "executable" | "extension") {
            let (probe, error) = root_probe(i);
            truncated |= error.is_some();
            for loaded in &probe.trace.loaded {
                first_root.entry(canon(loaded)).or_insert(i);
            }
        }
    }
    for (i, p) in predictions.iter().enumerate() {
        let object = inside(&p.path);
        if !elf.contains(&p.path) {
            // A wheel member: nothing on disk to load.
            continue;
        }
        out.compared += 1;
        if p.role == "on_demand" {
            out.on_demand += 1;
        }
        let before = out.disagreements.len();
        let mut disagree = |what: &str, predicted: String, real: String, rule: String| {
            out.disagreements.push(Disagreement {
                object: p.path.clone(),
                role: p.role.clone(),
                what: what.into(),
                predicted,
                real,
                rule,
            });
        };
        let me = canon(&object);
        let names: Vec<String> = p
            .deps
            .iter()
            .map(|d| d.name.clone())
            .chain(p.missing.iter().cloned())
            .collect();
        if standalone[i].static_program {
            continue_static(&mut out, p);
            continue;
        }
        let real = match p.role.as_str() {
            "executable" | "extension" => {
                let (probe, error) = root_probe(i);
                view(&canon, probe, &object, &names, error, true)
            }
            "on_demand" => {
                if let Some(&r) = first_root.get(&me) {
                    disagree(
                        "role",
                        "on_demand (nothing loads it)".into(),
                        format!("loaded by the root {}", predictions[r].path),
                        String::new(),
                    );
                }
                view(&canon, &standalone[i], &object, &names, None, false)
            }
            "needed" => match first_root.get(&me) {
                Some(&r) if root_probe(r).1.is_none() => {
                    view(&canon, root_probe(r).0, &object, &names, None, false)
                }
                found => {
                    if found.is_none() && !truncated {
                        disagree(
                            "role",
                            "needed (loaded by a root)".into(),
                            "no root loads it".into(),
                            String::new(),
                        );
                    }
                    // Its root stopped early: judged standalone.
                    view(&canon, &standalone[i], &object, &names, None, false)
                }
            },
            other => {
                disagree("role", other.into(), "a known role".into(), String::new());
                continue;
            }
        };
        if p.loads != real.loads {
            disagree(
                "loads",
                if p.loads {
                    "loads".into()
                } else {
                    format!("does not load: {}", p.reason)
                },
                if real.loads {
                    "loads".into()
                } else {
                    format!("does not load: {}", real.why)
                },
                p.reason.clone(),
            );
        }
        let predicted_deps: BTreeMap<&str, &PredictedDep> =
            p.deps.iter().map(|d| (d.name.as_str(), d)).collect();
        for (name, resolved) in &real.deps {
            let predicted = predicted_deps.get(name.as_str());
            let missing = p.missing.iter().any(|m| m == name);
            let want = match (predicted.and_then(|d| d.found.as_ref()), missing) {
                (Some((place, found)), _) => {
                    let abs = if place == "bundle" {
                        inside(found)
                    } else {
                        found.clone()
                    };
                    Some(canon(&abs))
                }
                (None, true) => None,
                (None, false) => {
                    disagree(
                        name,
                        "not among its deps".into(),
                        format!("{resolved:?}"),
                        String::new(),
                    );
                    continue;
                }
            };
            let rule = predicted
                .map(|d| d.via.clone())
                .unwrap_or_else(|| "missing".into());
            match (resolved, &want) {
                (Resolved::File(f), Some(w)) if f == w => {}
                (Resolved::NotFound, None) => {}
                (Resolved::Unseen, _) => {}
                (Resolved::File(f), Some(w)) if f.starts_with("(already") => {
                    // Matched by SONAME to an object loaded earlier: the trace does not name it.
                    let _ = w;
                }
                (real_r, want) => disagree(
                    name,
                    want.as_deref()
                        .map(show)
                        .unwrap_or_else(|| "not found".into()),
                    match real_r {
                        Resolved::File(f) => show(f),
                        _ => "not found".into(),
                    },
                    rule,
                ),
            }
        }
        if real.complete {
            for d in &p.deps {
                if !real.deps.contains_key(&d.name) {
                    disagree(
                        &d.name,
                        format!("resolved via {}", d.via),
                        "never asked for".into(),
                        d.via.clone(),
                    );
                }
            }
        }
        let predicted_versions: BTreeSet<String> = p.missing_versions.iter().cloned().collect();
        let real_complete = real.complete || p.role != "extension";
        if (real_complete && predicted_versions != real.versions)
            || (!real_complete && !real.versions.is_subset(&predicted_versions))
        {
            disagree(
                "versions",
                format!("{predicted_versions:?}"),
                format!("{:?}", real.versions),
                String::new(),
            );
        }
        if out.disagreements.len() == before {
            out.agreements += 1;
        }
    }
    out
}

fn continue_static(out: &mut Outcome, p: &Predicted) {
    if p.loads && p.deps.is_empty() {
        out.agreements += 1;
    } else {
        out.disagreements.push(Disagreement {
            object: p.path.clone(),
            role: p.role.clone(),
            what: "loads".into(),
            predicted: format!("loads={} with {} deps", p.loads, p.deps.len()),
            real: "a static program".into(),
            rule: String::new(),
        });
    }
}

/// Probe every prediction standalone, and the extension modules through `python` too.
/// Returns `(standalone, through the interpreter)`, one each per prediction.
pub fn probe_all(
    root: &DebianRoot,
    predictions: &[Predicted],
    python: Option<&str>,
) -> (Vec<Probe>, Vec<Option<Probe>>) {
    let mut asks: Vec<Ask> = predictions
        .iter()
        .map(|p| Ask::List(format!("{DEST}/{}", p.path)))
        .collect();
    let mut ext = Vec::new();
    for (i, p) in predictions.iter().enumerate() {
        if let ("extension", Some(py)) = (p.role.as_str(), python) {
            ext.push(i);
            asks.push(Ask::Extension {
                python: format!("{DEST}/{py}"),
                path: format!("{DEST}/{}", p.path),
            });
        }
    }
    let mut probes = probe(root, &asks);
    let through = probes.split_off(predictions.len());
    let mut python_probes: Vec<Option<Probe>> = vec![None; predictions.len()];
    for (i, p) in ext.into_iter().zip(through) {
        python_probes[i] = Some(p);
    }
    (probes, python_probes)
}

// ---------------------------------------------------------------------------------------------
// Workloads
// ---------------------------------------------------------------------------------------------

/// One workload of the corpus.
pub struct Workload {
    /// Short name (the bundle's name too).
    pub name: &'static str,
    /// What it is, for the table.
    pub what: &'static str,
    /// Make the source tree under `dir` (cached between runs) and return the `[sources.*]`
    /// tables of its airgap.toml, without syslibs.
    pub make: fn(&Path) -> String,
    /// The bundled interpreter that loads extension modules, relative to the bundle.
    pub python: Option<&'static str>,
    /// Bundle with `[sources.syslibs]` too.
    pub syslibs: bool,
}

/// Leave out parts of a Python installation no workload imports, to keep bundles small.
pub const SLIM: &str = r#"exclude = ["lib/python3.*/test", "lib/python3.*/idlelib", "lib/python3.*/tkinter", "lib/python3.*/turtledemo", "lib/python3.*/lib-dynload/_tkinter*", "lib/python3.*/config-3.*", "/include", "lib/libpython3.*.a"]"#;

/// A real CPython installation of `major.minor` found on this machine; panics with the reason.
pub fn python_prefix(major: u32, minor: u32) -> PathBuf {
    let py = crate::python::find(major, minor).unwrap_or_else(|| {
        panic!(
            "the conformance corpus needs CPython {major}.{minor} (an installation with a shared libpython), and none was found (see tests/src/python.rs for where it looks)"
        )
    });
    py.path
        .parent()
        .and_then(Path::parent)
        .expect("an interpreter in PREFIX/bin")
        .to_path_buf()
}

/// A venv of `major.minor` with `requirements` from the package index, cached under `dir`
/// (a stamp marks a finished one; pip's cache makes a rebuild fast).
pub fn cached_venv(
    dir: &Path,
    (major, minor): (u32, u32),
    requirements: &[&str],
    pip_args: &[&str],
) -> PathBuf {
    let prefix = dir.join("venv");
    let stamp = dir.join("venv.ok");
    let wanted = format!("{requirements:?} {pip_args:?}");
    if std::fs::read_to_string(&stamp).ok().as_deref() == Some(wanted.as_str()) {
        return prefix;
    }
    let _ = std::fs::remove_dir_all(&prefix);
    std::fs::create_dir_all(dir).expect("create the workload dir");
    let base = python_prefix(major, minor);
    run(Command::new(base.join("bin/python3"))
        .args(["-m", "venv"])
        .arg(&prefix))
    .success();
    run(Command::new(prefix.join("bin/python"))
        .args([
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
        ])
        .args(pip_args)
        .args(requirements))
    .success();
    std::fs::write(&stamp, wanted).expect("write stamp");
    prefix
}

fn conda_source(prefix: &Path, slim: bool) -> String {
    format!(
        "[sources.conda]\nprefix = \"{}\"\n{}\n",
        prefix.display(),
        if slim { SLIM } else { "" }
    )
}

fn make_cpython(_: &Path) -> String {
    conda_source(&python_prefix(3, 11), true)
}

fn make_science(dir: &Path) -> String {
    let venv = cached_venv(dir, (3, 11), &["numpy", "scipy", "pillow", "lxml"], &[]);
    conda_source(&venv, true)
}

fn make_numpy119(dir: &Path) -> String {
    let venv = cached_venv(dir, (3, 6), &["numpy<1.20"], &["--only-binary", ":all:"]);
    conda_source(&venv, true)
}

fn make_native(dir: &Path) -> String {
    let venv = cached_venv(
        dir,
        (3, 11),
        &[
            "psycopg2-binary",
            "pyzmq",
            "cryptography",
            "grpcio",
            "h5py",
            "shapely",
        ],
        &[],
    );
    conda_source(&venv, true)
}

fn make_sdist_pg(dir: &Path) -> String {
    let venv = cached_venv(
        dir,
        (3, 11),
        &["psycopg2==2.9.10"],
        &["--no-binary", "psycopg2"],
    );
    conda_source(&venv, true)
}

/// nvidia-cufile-cu12's libraries as a plain tree: libcufile_rdma needs libibverbs and
/// librdmacm, which nothing here has; nothing NEEDs it.
fn make_cufile(dir: &Path) -> String {
    let tree = dir.join("tree");
    let stamp = dir.join("tree.ok");
    if !stamp.exists() {
        let _ = std::fs::remove_dir_all(&tree);
        std::fs::create_dir_all(&tree).expect("create the tree");
        let python = python_prefix(3, 11);
        run(Command::new(python.join("bin/python3"))
            .args([
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
                "--no-deps",
                "--only-binary",
                ":all:",
                "--target",
            ])
            .arg(&tree)
            .arg("nvidia-cufile-cu12"))
        .success();
        std::fs::write(&stamp, "").expect("write stamp");
    }
    format!(
        "[sources.files]\npaths = [{{ source = \"{}\", dest = \"cufile\" }}]\n",
        tree.display()
    )
}

fn make_conda(dir: &Path) -> String {
    let prefix = dir.join("miniconda3/envs/hello-environment");
    if !dir.join("conda.ok").exists() {
        assert!(
            crate::conda::have_rattler(),
            "py-rattler is missing: run `cargo xtask setup` (xtask/setup/pip.txt installs it)"
        );
        let _ = std::fs::remove_dir_all(dir.join("miniconda3"));
        crate::conda::conda_env_with(
            &prefix,
            &dir.join("pkgs"),
            &["python", "hello-tools", "hello-py"],
        );
        std::fs::write(dir.join("conda.ok"), "").expect("write stamp");
    }
    conda_source(&prefix, false)
}

/// The full corpus (`cargo xtask conformance`).
pub fn corpus() -> Vec<Workload> {
    vec![
        Workload {
            name: "conda",
            what: "conda env (py-rattler): python, programs with RPATH",
            make: make_conda,
            python: Some("env/bin/python3"),
            syslibs: true,
        },
        Workload {
            name: "cufile",
            what: "nvidia-cufile-cu12 libraries (on-demand RDMA plugin)",
            make: make_cufile,
            python: None,
            syslibs: false,
        },
        Workload {
            name: "cpython",
            what: "a whole CPython 3.11 installation",
            make: make_cpython,
            python: Some("env/bin/python3"),
            syslibs: false,
        },
        Workload {
            name: "cpython-syslibs",
            what: "the same with [sources.syslibs]",
            make: make_cpython,
            python: Some("env/bin/python3"),
            syslibs: true,
        },
        Workload {
            name: "science",
            what: "venv: numpy, scipy, pillow, lxml (current wheels)",
            make: make_science,
            python: Some("env/bin/python3"),
            syslibs: false,
        },
        Workload {
            name: "science-syslibs",
            what: "the same with [sources.syslibs]",
            make: make_science,
            python: Some("env/bin/python3"),
            syslibs: true,
        },
        Workload {
            name: "numpy119-py36",
            what: "venv 3.6: numpy 1.19 (old auditwheel, inherited DT_RPATH)",
            make: make_numpy119,
            python: Some("env/bin/python3"),
            syslibs: false,
        },
        Workload {
            name: "native",
            what: "venv: psycopg2-binary, pyzmq, cryptography, grpcio, h5py, shapely",
            make: make_native,
            python: Some("env/bin/python3"),
            syslibs: false,
        },
        Workload {
            name: "sdist-pg",
            what: "venv: psycopg2 built from sdist against libpq, syslibs",
            make: make_sdist_pg,
            python: Some("env/bin/python3"),
            syslibs: true,
        },
    ]
}

/// The fast subset for the default test run.
pub fn fast() -> Vec<Workload> {
    corpus()
        .into_iter()
        .filter(|w| matches!(w.name, "conda" | "cufile"))
        .collect()
}

/// The suites to load in.
pub fn suites(all: bool) -> Vec<Suite> {
    if all {
        vec![Suite::Bookworm, Suite::Bullseye, Suite::Trixie]
    } else {
        vec![Suite::Bookworm, Suite::Bullseye]
    }
}

/// The workload made and bundled once.
pub struct Bundled {
    pub archive: PathBuf,
    _dir: tempfile::TempDir,
}

/// Make the workload's tree and bundle it with the real `airgap bundle` (`--no-check`: the
/// suite judges the check, it does not obey it).
pub fn bundle(w: &Workload) -> Bundled {
    let cache = out_dir()
        .join("corpus")
        .join(w.name.trim_end_matches("-syslibs"));
    std::fs::create_dir_all(&cache).expect("create the corpus dir");
    let mut body = (w.make)(&cache);
    if w.syslibs {
        body.push_str("\n[sources.syslibs]\n");
    }
    let dir = crate::tempdir();
    let config = dir.path().join("airgap.toml");
    std::fs::write(
        &config,
        format!("[bundle]\nname = \"{}\"\n\n{body}", w.name),
    )
    .expect("write config");
    let archive = dir.path().join(format!("{}.tar.gz", w.name));
    run(airgap()
        .arg("bundle")
        .arg("--no-check")
        .arg("-c")
        .arg(&config)
        .arg("-o")
        .arg(&archive))
    .success();
    Bundled { archive, _dir: dir }
}

/// Unpack with the real `airgap unpack` into `root` at [`DEST`]: run in a private mount
/// namespace where the root's `/opt` is mounted on `/opt`, so that the install steps see the
/// path the bundle will have inside the root.
pub fn unpack_into(root: &DebianRoot, archive: &Path) {
    let opt = root.host_path("/opt");
    std::fs::create_dir_all(&opt).expect("create /opt in the root");
    let script = format!(
        "mount --make-rprivate / && mount --bind {} /opt && exec {} unpack {} {DEST}",
        sh_quote(&opt.to_string_lossy()),
        sh_quote(&crate::bin("airgap").to_string_lossy()),
        sh_quote(&archive.to_string_lossy()),
    );
    let mut cmd = Command::new("unshare");
    cmd.args(["--mount", "sh", "-c", &script])
        .env("AIRGAP_NO_PROGRESS", "1")
        .env_remove("AIRGAP_PLUGIN_PATH");
    run(&mut cmd).success();
}

/// One row of the table.
pub struct Row {
    pub workload: String,
    pub suite: &'static str,
    pub outcome: Outcome,
}

/// Run one workload in one root: bundle already made; unpack, predict, probe, compare.
pub fn run_in(w: &Workload, bundled: &Bundled, suite: Suite) -> Result<Row, String> {
    let root = DebianRoot::new(suite);
    unpack_into(&root, &bundled.archive);
    let predictions = predict(&bundled.archive, &root)?;
    let (standalone, python) = probe_all(&root, &predictions, w.python);
    let elf = elf_files(&root.host_path(DEST));
    let outcome = compare(root.path(), &predictions, &standalone, &python, &elf);
    Ok(Row {
        workload: w.name.to_string(),
        suite: suite.name(),
        outcome,
    })
}

/// Append rows to `target/conformance/results.tsv` and their disagreements to
/// `disagreements.txt`.
pub fn record(rows: &[Row]) {
    let dir = out_dir();
    let mut results = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("results.tsv"))
        .expect("open results.tsv");
    let mut details = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("disagreements.txt"))
        .expect("open disagreements.txt");
    for r in rows {
        let must = r
            .outcome
            .disagreements
            .iter()
            .filter(|d| d.must_load())
            .count();
        writeln!(
            results,
            "{}\t{}\t{}\t{}\t{}\t{}\t{}",
            r.workload,
            r.suite,
            r.outcome.compared,
            r.outcome.agreements,
            must,
            r.outcome.disagreements.len() - must,
            r.outcome.on_demand
        )
        .expect("write results");
        for d in &r.outcome.disagreements {
            writeln!(details, "{}", describe(r, d)).expect("write disagreements");
        }
    }
}

/// One disagreement on one line.
pub fn describe(r: &Row, d: &Disagreement) -> String {
    format!(
        "{} @ {}: {} ({}) {}: predicted {} | real {}{}",
        r.workload,
        r.suite,
        d.object,
        d.role,
        d.what,
        d.predicted,
        d.real,
        if d.rule.is_empty() {
            String::new()
        } else {
            format!(" [rule: {}]", d.rule)
        }
    )
}

/// The bar of issue #14: no disagreement on what must load (on-demand plugins' own needs are
/// reported, not judged). Panics with every disagreement.
pub fn assert_bar(rows: &[Row]) {
    let mut text = String::new();
    for r in rows {
        for d in r.outcome.disagreements.iter().filter(|d| d.must_load()) {
            let _ = writeln!(text, "{}", describe(r, d));
        }
        assert!(
            r.outcome.compared > 0,
            "{} @ {}: nothing compared",
            r.workload,
            r.suite
        );
    }
    assert!(
        text.is_empty(),
        "the check disagrees with the real loader:\n{text}"
    );
}
