//! Real Python interpreters on this machine, for tests that need a given version.
//!
//! The one place tests find interpreters; never hard-code a path. Looked at, in order: the
//! CPython builds `cargo xtask setup` makes from `xtask/setup/python.txt`
//! (`${XDG_CACHE_HOME:-$HOME/.cache}/airgap-tests/python/*`, see [`cache_dir`]), pyenv
//! versions (`$PYENV_ROOT/versions/*`, `~/.pyenv/versions/*`, `/root/.pyenv/versions/*`),
//! manylinux images' `/opt/python/*/bin`, `/usr/bin/python3.*`, `/usr/local/bin/python3.*`, then
//! `PATH`. Each candidate is run once to ask its version, so pyenv shims (which answer for
//! whatever version is selected) are skipped.
//!
//! [`installation`] finds a whole installation in its own prefix (what venvs and bundles are
//! made from: a distribution's `/usr` is never one); [`tools`] is the tools venv's python
//! (py-rattler, a recent pip). A missing prerequisite fails the test through [`skip`], unless
//! `AIRGAP_TEST_ALLOW_SKIP=1`.
//!
//! ```ignore
//! use airgap_tests::python;
//! let py = python::find(3, 9).or_else(|| python::other_than_current(&[(3, 10), (3, 12)]));
//! let Some(py) = py else { return python::skip("no python 3.9 or other version here") };
//! eprintln!("using {py}"); // "python 3.9.18 at /root/.pyenv/versions/3.9.18/bin/python3.9"
//! ```
//!
//! [`offline`] builds a command that runs with the network cut (`unshare -n`), for proving that
//! an installation needs nothing from the network.

use std::collections::BTreeSet;
use std::fmt;
use std::path::{Path, PathBuf};
use std::process::Command;

/// A CPython interpreter found on this machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Python {
    /// Path of the executable.
    pub path: PathBuf,
    /// `(major, minor, micro)`.
    pub version: (u32, u32, u32),
}

impl Python {
    /// Ask the interpreter at `path`; `None` when it does not run or is not CPython.
    pub fn probe(path: &Path) -> Option<Python> {
        let out = Command::new(path)
            .args([
                "-S",
                "-c",
                "import sys, platform; print(platform.python_implementation(), *sys.version_info[:3])",
            ])
            .env_remove("PYTHONPATH")
            .env_remove("PYTHONHOME")
            .output()
            .ok()?;
        if !out.status.success() {
            return None;
        }
        let text = String::from_utf8_lossy(&out.stdout);
        let mut words = text.split_whitespace();
        if words.next()? != "CPython" {
            return None;
        }
        let mut num = || words.next()?.parse::<u32>().ok();
        Some(Python {
            path: path.to_path_buf(),
            version: (num()?, num()?, num()?),
        })
    }

    /// `3.9.18`.
    pub fn full_version(&self) -> String {
        let (a, b, c) = self.version;
        format!("{a}.{b}.{c}")
    }

    /// `3.9`.
    pub fn major_minor(&self) -> String {
        format!("{}.{}", self.version.0, self.version.1)
    }

    /// `(major, minor)`.
    pub fn xy(&self) -> (u32, u32) {
        (self.version.0, self.version.1)
    }

    /// A command running this interpreter with no `PYTHONPATH`/`PYTHONHOME` leaking in.
    pub fn command(&self) -> Command {
        let mut cmd = Command::new(&self.path);
        cmd.env_remove("PYTHONPATH").env_remove("PYTHONHOME");
        cmd
    }

    /// The version of its own pip (`18.1`), if it has one.
    pub fn pip_version(&self) -> Option<String> {
        let out = self
            .command()
            .args(["-m", "pip", "--version"])
            .output()
            .ok()?;
        if !out.status.success() {
            return None;
        }
        String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .nth(1)
            .map(str::to_string)
    }
}

impl fmt::Display for Python {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "python {} at {}",
            self.full_version(),
            self.path.display()
        )
    }
}

/// Where `cargo xtask setup` caches what the tests need per machine (the same computation as
/// `xtask/src/pythons.rs`): `${XDG_CACHE_HOME:-$HOME/.cache}/airgap-tests`.
pub fn cache_dir() -> PathBuf {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(|| PathBuf::from("/var/tmp"));
    base.join("airgap-tests")
}

/// The prefixes of the CPython builds in [`cache_dir`].
fn cached_prefixes() -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(cache_dir().join("python"))
        .map(|rd| {
            rd.flatten()
                .map(|e| e.path())
                .filter(|p| {
                    p.file_name()
                        .and_then(|n| n.to_str())
                        .is_some_and(|n| n.starts_with("cpython-"))
                })
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}

fn candidate_paths() -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut roots = Vec::new();
    if let Some(root) = std::env::var_os("PYENV_ROOT") {
        roots.push(PathBuf::from(root));
    }
    if let Some(home) = std::env::var_os("HOME") {
        roots.push(PathBuf::from(home).join(".pyenv"));
    }
    roots.push(PathBuf::from("/root/.pyenv"));
    let mut dirs: Vec<PathBuf> = cached_prefixes().iter().map(|p| p.join("bin")).collect();
    for root in roots {
        if let Ok(read) = std::fs::read_dir(root.join("versions")) {
            dirs.extend(read.flatten().map(|e| e.path().join("bin")));
        }
    }
    if let Ok(read) = std::fs::read_dir("/opt/python") {
        dirs.extend(read.flatten().map(|e| e.path().join("bin")));
    }
    dirs.push(PathBuf::from("/usr/bin"));
    dirs.push(PathBuf::from("/usr/local/bin"));
    if let Some(path) = std::env::var_os("PATH") {
        dirs.extend(std::env::split_paths(&path));
    }
    for dir in dirs {
        if dir.components().any(|c| c.as_os_str() == "shims") {
            continue;
        }
        let Ok(read) = std::fs::read_dir(&dir) else {
            continue;
        };
        let mut names: Vec<PathBuf> = read
            .flatten()
            .map(|e| e.path())
            .filter(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .and_then(|n| n.strip_prefix("python3."))
                    .is_some_and(|rest| {
                        !rest.is_empty() && rest.chars().all(|c| c.is_ascii_digit())
                    })
            })
            .collect();
        names.sort();
        out.extend(names);
    }
    out
}

/// Every CPython 3 interpreter on this machine, one per installation, sorted by version
/// (newest last).
pub fn all() -> Vec<Python> {
    let mut seen = BTreeSet::new();
    let mut found = Vec::new();
    for path in candidate_paths() {
        let key = std::fs::canonicalize(&path).unwrap_or_else(|_| path.clone());
        if !seen.insert(key) {
            continue;
        }
        if let Some(py) = Python::probe(&path) {
            found.push(py);
        }
    }
    found.sort_by(|a, b| a.version.cmp(&b.version).then(a.path.cmp(&b.path)));
    found.dedup_by(|a, b| a.version == b.version);
    found
}

/// An interpreter of `major.minor` (the newest micro found).
pub fn find(major: u32, minor: u32) -> Option<Python> {
    all().into_iter().rev().find(|p| p.xy() == (major, minor))
}

/// The `python3` the tests run with (first on `PATH`).
pub fn current() -> Option<Python> {
    Python::probe(Path::new("python3"))
}

/// An interpreter whose X.Y differs from [`current`]: the first of `preferred` that exists,
/// else any other.
pub fn other_than_current(preferred: &[(u32, u32)]) -> Option<Python> {
    let current = current().map(|p| p.xy());
    let others: Vec<Python> = all()
        .into_iter()
        .filter(|p| Some(p.xy()) != current)
        .collect();
    for want in preferred {
        if let Some(p) = others.iter().rev().find(|p| p.xy() == *want) {
            return Some(p.clone());
        }
    }
    others.into_iter().next_back()
}

/// A prerequisite of the running test is missing: FAIL it with `why`, unless the run allows
/// skipping (`AIRGAP_TEST_ALLOW_SKIP=1`; `cargo xtask ci` never sets it). A skip is said on
/// stderr and recorded in `$AIRGAP_TEST_SKIP_LOG` (test name, tab, reason), which `cargo
/// xtask test` counts. Use as `return python::skip("...")`.
#[track_caller]
pub fn skip(why: &str) {
    let allowed = std::env::var_os("AIRGAP_TEST_ALLOW_SKIP").is_some_and(|v| v == "1");
    assert!(
        allowed,
        "a prerequisite of this test is missing: {why}\n\
         (`cargo xtask setup` installs what the tests need; AIRGAP_TEST_ALLOW_SKIP=1 skips instead)"
    );
    let name = std::thread::current()
        .name()
        .unwrap_or("unknown test")
        .to_string();
    eprintln!("AIRGAP-SKIP: {why}");
    if let Some(log) = std::env::var_os("AIRGAP_TEST_SKIP_LOG") {
        use std::io::Write;
        if let Ok(mut f) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
        {
            let _ = writeln!(f, "{name}\t{}", why.replace(['\t', '\n'], " "));
        }
    }
}

/// True when `prefix` holds a whole CPython X.Y installation of its own, built with
/// `--enable-shared` (`bin/pythonX.Y`, `lib/libpythonX.Y.so.1.0`, `lib/pythonX.Y/`): what
/// venvs and bundles are made from. A distribution's `/usr` never is one.
pub fn is_installation(prefix: &Path, major: u32, minor: u32) -> bool {
    let xy = format!("{major}.{minor}");
    prefix != Path::new("/usr")
        && prefix.join(format!("bin/python{xy}")).exists()
        && prefix.join(format!("lib/libpython{xy}.so.1.0")).exists()
        && prefix.join(format!("lib/python{xy}/os.py")).exists()
}

/// The prefix of a whole CPython `major.minor` installation (see [`is_installation`]): the
/// cache's build first, then pyenv's (newest micro).
pub fn installation(major: u32, minor: u32) -> Option<PathBuf> {
    let mut found: Vec<Python> = Vec::new();
    for py in all_installations() {
        if py.xy() == (major, minor) {
            found.push(py);
        }
    }
    found.first().and_then(|p| prefix_of(&p.path))
}

/// A whole installation of another X.Y than `not`: the first of `preferred` that exists,
/// else any other.
pub fn other_installation(not: (u32, u32), preferred: &[(u32, u32)]) -> Option<PathBuf> {
    let others: Vec<Python> = all_installations()
        .into_iter()
        .filter(|p| p.xy() != not)
        .collect();
    preferred
        .iter()
        .find_map(|want| others.iter().find(|p| p.xy() == *want))
        .or(others.last())
        .and_then(|p| prefix_of(&p.path))
}

/// Every whole installation, cache first, then by version.
fn all_installations() -> Vec<Python> {
    let mut out = Vec::new();
    let cached = cached_prefixes();
    let mut prefixes = cached.clone();
    for py in all() {
        if let Some(p) = prefix_of(&py.path) {
            if !prefixes.contains(&p) {
                prefixes.push(p);
            }
        }
    }
    for prefix in prefixes {
        let Ok(rd) = std::fs::read_dir(prefix.join("bin")) else {
            continue;
        };
        let mut exes: Vec<PathBuf> = rd
            .flatten()
            .map(|e| e.path())
            .filter(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .and_then(|n| n.strip_prefix("python3."))
                    .is_some_and(|r| !r.is_empty() && r.chars().all(|c| c.is_ascii_digit()))
            })
            .collect();
        exes.sort();
        if let Some(py) = exes.first().and_then(|e| Python::probe(e)) {
            let (a, b, _) = py.version;
            if is_installation(&prefix, a, b) {
                out.push(py);
            }
        }
    }
    // Stable: the cache's builds stay ahead of pyenv's of the same X.Y.
    out.sort_by_key(|p| {
        let in_cache = cached.iter().any(|c| p.path.starts_with(c));
        (!in_cache, std::cmp::Reverse(p.version))
    });
    out
}

/// `PREFIX` of `PREFIX/bin/pythonX.Y`.
fn prefix_of(exe: &Path) -> Option<PathBuf> {
    let exe = std::fs::canonicalize(exe).ok()?;
    let bin = exe.parent()?;
    (bin.file_name()? == "bin").then(|| bin.parent().map(Path::to_path_buf))?
}

/// The tools venv's python (py-rattler, a recent pip; `xtask/setup/pip.txt`):
/// `$AIRGAP_TEST_PYTHON` (set by `cargo xtask test`), else `<target>/tools-venv/bin/python`
/// when it exists, else `python3`.
pub fn tools() -> PathBuf {
    if let Some(p) = std::env::var_os("AIRGAP_TEST_PYTHON").filter(|v| !v.is_empty()) {
        return PathBuf::from(p);
    }
    let venv = crate::target_dir().join("tools-venv/bin/python");
    if venv.exists() {
        return venv;
    }
    PathBuf::from("python3")
}

/// A command that runs `program` with the network cut (`unshare -n`; needs root or user
/// namespaces). Panics with a clear message when the machine cannot do that.
pub fn offline(program: impl AsRef<std::ffi::OsStr>) -> Command {
    static CHECK: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    let ok = *CHECK.get_or_init(|| {
        Command::new("unshare")
            .args(["-n", "true"])
            .status()
            .is_ok_and(|s| s.success())
    });
    assert!(
        ok,
        "`unshare -n` does not work here: offline installs need root or user namespaces"
    );
    let mut cmd = Command::new("unshare");
    cmd.arg("-n").arg(program);
    cmd
}

/// `PATH` with the directory of `py` first, as `module load python/X.Y` or an activated
/// environment leaves it: how a user puts the target's interpreter where airgap (the pip
/// source building an sdist for the target) looks for one.
pub fn path_with(py: &Python) -> std::ffi::OsString {
    let mut dirs: Vec<PathBuf> = py
        .path
        .parent()
        .map(Path::to_path_buf)
        .into_iter()
        .collect();
    if let Some(path) = std::env::var_os("PATH") {
        dirs.extend(std::env::split_paths(&path));
    }
    std::env::join_paths(dirs).unwrap_or_default()
}
