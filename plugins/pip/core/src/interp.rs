//! Finding CPython interpreters of a given X.Y on the build machine (to build sdists with).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

/// A CPython interpreter on this machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Interpreter {
    /// Its path.
    pub path: PathBuf,
    /// Full version (`3.9.18`).
    pub version: String,
    /// Major version.
    pub major: u32,
    /// Minor version.
    pub minor: u32,
}

/// Ask `path` for its implementation and version; `None` when it is not a CPython that runs.
pub fn probe(path: &Path) -> Option<Interpreter> {
    let output = Command::new(path)
        .args([
            "-S",
            "-c",
            "import sys, platform; print(platform.python_implementation(), \
             '.'.join(map(str, sys.version_info[:3])))",
        ])
        .env_remove("PYTHONPATH")
        .env_remove("PYTHONHOME")
        .output()
        .ok()?;
    if !output.status.success() {
        return None;
    }
    let text = String::from_utf8_lossy(&output.stdout);
    let (implementation, version) = text.trim().split_once(' ')?;
    if implementation != "CPython" {
        return None;
    }
    let mut parts = version.split('.').map(|p| p.parse::<u32>().ok());
    let (major, minor) = (parts.next()??, parts.next()??);
    Some(Interpreter {
        path: path.to_path_buf(),
        version: version.to_string(),
        major,
        minor,
    })
}

/// Paths that may hold a `pythonX.Y` on this machine, most likely first: pyenv's versions,
/// `/usr/bin`, `/usr/local/bin`, manylinux images' `/opt/python`, then `PATH`.
pub fn candidates(major: u32, minor: u32) -> Vec<PathBuf> {
    let exe = format!("python{major}.{minor}");
    let mut out = Vec::new();
    let mut pyenv_roots = Vec::new();
    if let Some(root) = std::env::var_os("PYENV_ROOT") {
        pyenv_roots.push(PathBuf::from(root));
    }
    if let Some(home) = std::env::var_os("HOME") {
        pyenv_roots.push(PathBuf::from(home).join(".pyenv"));
    }
    pyenv_roots.push(PathBuf::from("/root/.pyenv"));
    for root in pyenv_roots {
        if let Ok(read) = std::fs::read_dir(root.join("versions")) {
            let mut dirs: Vec<PathBuf> = read.flatten().map(|e| e.path()).collect();
            dirs.sort();
            dirs.reverse();
            out.extend(dirs.into_iter().map(|d| d.join("bin").join(&exe)));
        }
    }
    for dir in ["/usr/bin", "/usr/local/bin"] {
        out.push(Path::new(dir).join(&exe));
    }
    if let Ok(read) = std::fs::read_dir("/opt/python") {
        out.extend(read.flatten().map(|e| e.path().join("bin").join(&exe)));
    }
    if let Some(path) = std::env::var_os("PATH") {
        out.extend(std::env::split_paths(&path).map(|d| d.join(&exe)));
    }
    out
}

/// The best interpreter of `major.minor` on this machine: one of `preferred` first, then the
/// [`candidates`]; an exact `micro` match wins over another micro.
pub fn find(
    major: u32,
    minor: u32,
    micro: Option<&str>,
    preferred: &[PathBuf],
) -> Option<Interpreter> {
    let mut seen = BTreeSet::new();
    let mut found = Vec::new();
    for path in preferred.iter().cloned().chain(candidates(major, minor)) {
        if !path.is_file() {
            continue;
        }
        let key = std::fs::canonicalize(&path).unwrap_or_else(|_| path.clone());
        if !seen.insert(key) {
            continue;
        }
        // pyenv shims answer for whatever version is selected: skip them.
        if path.components().any(|c| c.as_os_str() == "shims") {
            continue;
        }
        if let Some(i) = probe(&path).filter(|i| i.major == major && i.minor == minor) {
            found.push(i);
        }
    }
    let exact = micro.and_then(|m| found.iter().position(|i| i.version == m));
    match exact {
        Some(i) => Some(found.swap_remove(i)),
        None => found.into_iter().next(),
    }
}
