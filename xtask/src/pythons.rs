//! The CPython interpreters the tests need (`xtask/setup/python.txt`), built once per machine
//! from the upstream source tarball that Debian's source package carries, the way pyenv and HPC
//! module trees build them: `./configure --enable-shared --prefix=P LDFLAGS=-Wl,-rpath,P/lib`,
//! `make`, `make install`.
//!
//! Cache: `${XDG_CACHE_HOME:-$HOME/.cache}/airgap-tests/python/cpython-VERSION-SHA/` (SHA: the
//! first 16 hex digits of the tarball's sha256), outside the clone so that every clone and CI
//! run on the machine shares it. `tests/src/python.rs` computes the same directory. A build
//! installs into a staging directory (`make install DESTDIR=...`) and is renamed into place
//! only when complete, so a killed build leaves no half installation behind, only a staging
//! directory that the next build removes.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

use crate::tasks::{list_file, run};

/// One line of `python.txt`.
#[derive(Debug, Clone)]
pub struct Wanted {
    pub version: String,
    suite: String,
    package: String,
    tarball: String,
    sha256: String,
}

impl Wanted {
    /// `3.11`.
    pub fn major_minor(&self) -> String {
        self.version
            .split('.')
            .take(2)
            .collect::<Vec<_>>()
            .join(".")
    }

    /// Where this interpreter is installed.
    pub fn prefix(&self) -> PathBuf {
        cache_root()
            .join("python")
            .join(format!("cpython-{}-{}", self.version, &self.sha256[..16]))
    }

    /// Its executable.
    pub fn executable(&self) -> PathBuf {
        self.prefix()
            .join("bin")
            .join(format!("python{}", self.major_minor()))
    }
}

/// `${XDG_CACHE_HOME:-$HOME/.cache}/airgap-tests` (also computed by `tests/src/python.rs`).
pub fn cache_root() -> PathBuf {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(|| PathBuf::from("/var/tmp"));
    base.join("airgap-tests")
}

/// The interpreters `python.txt` lists.
pub fn wanted() -> Result<Vec<Wanted>> {
    list_file("python.txt")?
        .iter()
        .map(|line| {
            let cols: Vec<&str> = line.split_whitespace().collect();
            let [version, suite, package, tarball, sha256] = cols.as_slice() else {
                bail!("xtask/setup/python.txt: expected 5 columns in `{line}`");
            };
            if sha256.len() != 64 {
                bail!("xtask/setup/python.txt: `{sha256}` is not a sha256");
            }
            Ok(Wanted {
                version: version.to_string(),
                suite: suite.to_string(),
                package: package.to_string(),
                tarball: tarball.to_string(),
                sha256: sha256.to_string(),
            })
        })
        .collect()
}

/// Build every interpreter of `python.txt` that is not in the cache yet.
pub fn ensure_all() -> Result<Vec<Wanted>> {
    let all = wanted()?;
    for w in &all {
        if w.executable().exists() {
            eprintln!("python {}: cached at {}", w.version, w.prefix().display());
            link_python(&w.prefix(), w)?;
            continue;
        }
        build(w).with_context(|| {
            format!(
                "cannot build CPython {} for the tests (needed: xtask/setup/python.txt; cache: {})",
                w.version,
                w.prefix().display()
            )
        })?;
    }
    Ok(all)
}

fn build(w: &Wanted) -> Result<()> {
    let started = std::time::Instant::now();
    let tarball = fetch(w)?;
    let prefix = w.prefix();
    let parent = prefix.parent().context("cache path has a parent")?;
    std::fs::create_dir_all(parent).with_context(|| format!("create {}", parent.display()))?;
    let name = prefix
        .file_name()
        .and_then(|n| n.to_str())
        .context("cache dir name")?
        .to_string();
    // Leftovers of killed builds of the same version.
    for entry in std::fs::read_dir(parent)?.flatten() {
        let n = entry.file_name().to_string_lossy().into_owned();
        if n.starts_with(&format!(".build-{name}-")) {
            std::fs::remove_dir_all(entry.path()).ok();
        }
    }
    let work = parent.join(format!(".build-{name}-{}", std::process::id()));
    let src = work.join("src");
    let stage = work.join("stage");
    std::fs::create_dir_all(&src)?;
    run(Command::new("tar")
        .arg("-xf")
        .arg(&tarball)
        .arg("-C")
        .arg(&src)
        .arg("--strip-components=1"))?;
    let jobs = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2);
    eprintln!(
        "building CPython {} into {} (once per machine; a few minutes)",
        w.version,
        prefix.display()
    );
    let log = work.join("build.log");
    let script = format!(
        "set -e; ./configure --enable-shared --prefix='{p}' LDFLAGS='-Wl,-rpath,{p}/lib' \
         >'{log}' 2>&1; make -j{jobs} >>'{log}' 2>&1; make install DESTDIR='{stage}' >>'{log}' 2>&1",
        p = prefix.display(),
        log = log.display(),
        stage = stage.display(),
    );
    let status = Command::new("sh")
        .args(["-c", &script])
        .current_dir(&src)
        .status()
        .context("run sh")?;
    if !status.success() {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        let tail: Vec<&str> = text.lines().rev().take(30).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        bail!(
            "the build failed ({status}); its log: {}\n{}",
            log.display(),
            tail.join("\n")
        );
    }
    let built = stage.join(prefix.strip_prefix("/").unwrap_or(&prefix));
    // The modules the tests need must have been built (a missing -dev package makes
    // configure leave them out silently).
    let exe = built.join("bin").join(format!("python{}", w.major_minor()));
    let check = Command::new(&exe)
        .args([
            "-c",
            "import ssl, sqlite3, zlib, bz2, lzma, ctypes, readline, uuid, venv, ensurepip",
        ])
        .env("LD_LIBRARY_PATH", built.join("lib"))
        .env("PYTHONHOME", &built)
        .output()
        .with_context(|| format!("run {}", exe.display()))?;
    if !check.status.success() {
        bail!(
            "CPython {} was built without modules the tests need (a missing -dev package of \
             xtask/setup/apt.txt?):\n{}",
            w.version,
            String::from_utf8_lossy(&check.stderr)
        );
    }
    link_python(&built, w)?;
    std::fs::rename(&built, &prefix)
        .with_context(|| format!("rename {} to {}", built.display(), prefix.display()))?;
    std::fs::remove_dir_all(&work).ok();
    eprintln!(
        "built CPython {} in {} s",
        w.version,
        started.elapsed().as_secs()
    );
    Ok(())
}

/// `bin/python -> pythonX.Y`, as pyenv and conda have it. A `make install DESTDIR=...` build
/// gets pip scripts whose `#!` names `PREFIX/bin/python` (ensurepip runs the build dir's
/// `./python`), which `make install` does not create: without the link `bin/pip3` cannot run.
/// Idempotent, so that caches built before it get it too.
fn link_python(prefix: &Path, w: &Wanted) -> Result<()> {
    let link = prefix.join("bin/python");
    if link.symlink_metadata().is_ok() {
        return Ok(());
    }
    std::os::unix::fs::symlink(format!("python{}", w.major_minor()), &link)
        .with_context(|| format!("create {}", link.display()))
}

/// The orig tarball of `w`, downloaded once into the cache with `apt-get source
/// --download-only` from a private apt configuration (a deb-src entry for its suite; the
/// machine's own apt setup is not touched), and checked against the sha256 in `python.txt`.
fn fetch(w: &Wanted) -> Result<PathBuf> {
    let dir = cache_root().join("src");
    std::fs::create_dir_all(&dir).with_context(|| format!("create {}", dir.display()))?;
    let tarball = dir.join(&w.tarball);
    if tarball.exists() && sha256(&tarball)? == w.sha256 {
        return Ok(tarball);
    }
    let apt = cache_root().join("apt");
    for d in ["lists/partial", "cache/archives/partial", "sources.list.d"] {
        std::fs::create_dir_all(apt.join(d))?;
    }
    let mirror = debian_mirror();
    std::fs::write(
        apt.join("sources.list.d/airgap-tests-src.sources"),
        format!(
            "Types: deb-src\nURIs: {mirror}\nSuites: {}\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n",
            w.suite
        ),
    )?;
    let opts = [
        "-o".to_string(),
        "Dir::Etc::SourceList=/dev/null".to_string(),
        "-o".to_string(),
        format!(
            "Dir::Etc::SourceParts={}",
            apt.join("sources.list.d").display()
        ),
        "-o".to_string(),
        format!("Dir::State::Lists={}", apt.join("lists").display()),
        "-o".to_string(),
        format!("Dir::Cache={}", apt.join("cache").display()),
    ];
    run(Command::new("apt-get").args(&opts).args(["update", "-qq"]))?;
    let download = dir.join(format!(".download-{}", std::process::id()));
    std::fs::create_dir_all(&download)?;
    run(Command::new("apt-get")
        .args(&opts)
        .args(["source", "--download-only", "-qq"])
        .arg(&w.package)
        .current_dir(&download))?;
    let got = download.join(&w.tarball);
    if !got.exists() {
        bail!(
            "apt-get source {} did not bring {} (has Debian's {} moved to another upstream version? update xtask/setup/python.txt)",
            w.package,
            w.tarball,
            w.suite
        );
    }
    let sum = sha256(&got)?;
    if sum != w.sha256 {
        bail!(
            "{} has sha256 {sum}, xtask/setup/python.txt says {}",
            w.tarball,
            w.sha256
        );
    }
    std::fs::rename(&got, &tarball)?;
    std::fs::remove_dir_all(&download).ok();
    Ok(tarball)
}

/// The Debian mirror this machine's apt uses (its first `deb` URI), else Debian's default.
fn debian_mirror() -> String {
    let mut texts = Vec::new();
    if let Ok(rd) = std::fs::read_dir("/etc/apt/sources.list.d") {
        for e in rd.flatten() {
            texts.push(std::fs::read_to_string(e.path()).unwrap_or_default());
        }
    }
    texts.push(std::fs::read_to_string("/etc/apt/sources.list").unwrap_or_default());
    for text in &texts {
        for line in text.lines() {
            let line = line.trim();
            if let Some(uri) = line.strip_prefix("URIs:") {
                let uri = uri.split_whitespace().next().unwrap_or("");
                if uri.ends_with("/debian") {
                    return uri.to_string();
                }
            }
            if let Some(rest) = line.strip_prefix("deb ") {
                if let Some(uri) = rest.split_whitespace().find(|w| w.contains("://")) {
                    if uri.ends_with("/debian") {
                        return uri.to_string();
                    }
                }
            }
        }
    }
    "http://deb.debian.org/debian".to_string()
}

fn sha256(path: &Path) -> Result<String> {
    let out = Command::new("sha256sum")
        .arg(path)
        .output()
        .context("run sha256sum")?;
    if !out.status.success() {
        bail!("sha256sum {} failed", path.display());
    }
    Ok(String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap_or("")
        .to_string())
}
