//! Real Python interpreters on this machine, for tests that need a given version.
//!
//! Tests that bundle for "another Python" or "an old Python" find what exists here instead of
//! hard-coding a path: pyenv versions (`$PYENV_ROOT/versions/*`, `~/.pyenv/versions/*`,
//! `/root/.pyenv/versions/*`), `/usr/bin/python3.*`, `/usr/local/bin/python3.*`, manylinux
//! images' `/opt/python/*/bin`, then `PATH`. Each candidate is run once to ask its version, so
//! pyenv shims (which answer for whatever version is selected) are skipped.
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
    let mut dirs = Vec::new();
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

/// Say loudly on stderr that a test is skipped and why (cargo shows it with `--nocapture`
/// or when the test fails); use as `return python::skip("...")`.
pub fn skip(why: &str) {
    eprintln!("SKIPPED: {why}");
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
