//! Support for the `conda` source plugin's tests: real environments made by real tools, the
//! plugin called through its Rust API, and a reference installer for its install steps.
//!
//! - [`conda_env`] builds small conda packages with prefix placeholders (text and binary, the
//!   binary one in a compiled C program), indexes them as a local `file://` channel and installs
//!   them with py-rattler (`tests/fixtures/conda/make_env.py`). The channel is cached under
//!   `<target dir>/test-cache/conda/`.
//! - [`venv`] makes a venv from a real Python installation and installs real wheels from PyPI
//!   into it (downloaded once into the cache).
//! - [`contribute`] runs the plugin with a `[sources.conda]` table.
//! - [`materialize`] puts a contribution's entries into a directory and runs its
//!   `RewritePrefix` steps with the semantics the archive engine implements (text: every
//!   occurrence; binary: C strings rewritten in place, NUL-padded, growing into the NUL bytes
//!   that follow up to the file's recorded capacity, else the original prefix's length).
//!   [`relocate`] moves such a tree again using the prefixes it recorded.
//! - [`hidden`] runs a command in a mount namespace where given directories are empty, so
//!   that the source environment is out of reach.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use airgap_conda::prefix;
use airgap_conda::CondaPlugin;
use airgap_plugin_api::{
    ContributeRequest, Contribution, EntryKind, Host, InstallStep, PluginError, PrefixMode,
    SourcePlugin,
};

use crate::target_dir;

/// Where the conda tests cache what is expensive to make (the channel, downloaded wheels).
pub fn cache_dir() -> PathBuf {
    let dir = target_dir().join("test-cache").join("conda");
    std::fs::create_dir_all(&dir).expect("create the conda test cache");
    dir
}

/// The Python that runs py-rattler and pip on the build machine: the tools venv's
/// ([`crate::python::tools`]).
pub fn build_python() -> PathBuf {
    crate::python::tools()
}

/// True when py-rattler is importable (`cargo xtask setup` installs it).
pub fn have_rattler() -> bool {
    Command::new(build_python())
        .args(["-c", "import rattler"])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Create a conda environment at `prefix` with `hello-tools` and `hello-docs` from the local
/// test channel, with py-rattler. `pkgs` is the package cache to use. The channel also has a
/// `python` package made from [`conda_python_source`] and a noarch python package `hello-py`.
pub fn conda_env(prefix: &Path, pkgs: &Path) {
    conda_env_with(prefix, pkgs, &[]);
}

/// The Python installation the test channel's `python` package is made from: another X.Y
/// than [`base_python`] (3.12 or 3.13 preferred), found by [`crate::python::other_installation`].
/// Panics naming what is missing.
pub fn conda_python_source() -> PathBuf {
    crate::python::other_installation((3, 11), &[(3, 12), (3, 13)]).unwrap_or_else(|| {
        panic!(
            "no CPython installation other than 3.11 (with libpython, in its own prefix) for \
             the test channel's python package: `cargo xtask setup` builds the versions of \
             xtask/setup/python.txt into {}",
            crate::python::cache_dir().display()
        )
    })
}

/// Like [`conda_env`], with the given match specs (`python`, `hello-py`, `hello-tools`...).
pub fn conda_env_with(prefix: &Path, pkgs: &Path, specs: &[&str]) {
    let script = crate::workspace_root().join("tests/fixtures/conda/make_env.py");
    let source = conda_python_source();
    // The channel's python package is made from `source`: one channel per installation.
    let channel = format!(
        "channel-3-{}",
        source
            .to_string_lossy()
            .trim_matches('/')
            .replace(['/', ' '], "_")
    );
    let make = || {
        Command::new(build_python())
            .arg(&script)
            .arg(cache_dir().join(&channel))
            .arg(pkgs)
            .arg(prefix)
            .args(specs)
            .env("AIRGAP_TEST_PYTHON_SOURCE", &source)
            .output()
            .expect("run make_env.py")
    };
    let mut out = make();
    if !out.status.success() {
        // Seen once with several test processes making their envs at the same moment.
        eprintln!(
            "make_env.py failed ({}), trying once more:\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        let _ = std::fs::remove_dir_all(prefix);
        out = make();
    }
    assert!(
        out.status.success(),
        "make_env.py failed ({}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The Python installation tests build venvs from: a whole CPython 3.11 in its own prefix
/// ([`crate::python::installation`]; never a distribution's `/usr`, which the conda source
/// rightly refuses to bundle). Panics naming what is missing.
pub fn base_python() -> PathBuf {
    crate::python::installation(3, 11).unwrap_or_else(|| {
        panic!(
            "no CPython 3.11 installation (with libpython, in its own prefix) to make venvs \
             from: `cargo xtask setup` builds it into {}",
            crate::python::cache_dir().display()
        )
    })
}

/// `X.Y` of the installation at `prefix`.
pub fn version_short(prefix: &Path) -> String {
    let out = Command::new(prefix.join("bin/python3"))
        .args(["-c", "import sys; print('%d.%d' % sys.version_info[:2])"])
        .output()
        .expect("run python3");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Wheels for `requirements`, downloaded once from the package index into the cache.
pub fn wheels(python: &Path, requirements: &[&str]) -> PathBuf {
    let dir = cache_dir().join(format!("wheels-{}", version_short(python)));
    let stamp = dir.join(format!("{}.ok", requirements.join("_")));
    if !stamp.exists() {
        std::fs::create_dir_all(&dir).expect("create wheel cache");
        let out = Command::new(python.join("bin/python3"))
            .args([
                "-m",
                "pip",
                "download",
                "--only-binary=:all:",
                "--no-deps",
                "-d",
            ])
            .arg(&dir)
            .args(requirements)
            .output()
            .expect("run pip download");
        assert!(
            out.status.success(),
            "pip download failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        std::fs::write(&stamp, "").expect("write stamp");
    }
    dir
}

/// A venv from the installation `base` at `prefix`, with `requirements` installed from real
/// wheels (no index at install time).
pub fn venv(base: &Path, prefix: &Path, requirements: &[&str]) {
    let status = Command::new(base.join("bin/python3"))
        .args(["-m", "venv"])
        .arg(prefix)
        .status()
        .expect("run python -m venv");
    assert!(status.success(), "python -m venv failed");
    if requirements.is_empty() {
        return;
    }
    let wheels = wheels(base, requirements);
    let out = Command::new(prefix.join("bin/python"))
        .args(["-m", "pip", "install", "--no-index", "--find-links"])
        .arg(&wheels)
        .args(requirements)
        .env("PIP_DISABLE_PIP_VERSION_CHECK", "1")
        .output()
        .expect("run pip install");
    assert!(
        out.status.success(),
        "pip install failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Run the plugin with `config` as its `[sources.conda]` table.
pub fn contribute(
    config: serde_json::Value,
    work_dir: &Path,
    dest_prefix: Option<&str>,
) -> Result<Contribution, PluginError> {
    std::fs::create_dir_all(work_dir).expect("create work dir");
    let mut request = ContributeRequest::default();
    request.source = "conda".into();
    request.config = config;
    request.config_dir = work_dir.to_path_buf();
    request.bundle_name = "bundle".into();
    request.target.prefix = dest_prefix.map(str::to_string);
    request.work_dir = work_dir.to_path_buf();
    CondaPlugin.contribute(&request, &Host::detached())
}

/// The test channel's binary (and `hello-tools`' text) placeholder, as `make_env.py` makes it:
/// conda-build's host prefix padded with `_placehold` to 255 bytes.
pub fn placeholder() -> String {
    let mut p =
        String::from("/home/conda/feedstock_root/build_artifacts/hello-tools_1700000000000/_h_env");
    p.push_str(&"_placehold".repeat(25));
    p.truncate(255);
    p
}

/// The capacity recorded for `path`'s rewrite of `old_prefix`, if the file is listed.
pub fn capacity(c: &Contribution, path: &str, old_prefix: &str) -> Option<Option<usize>> {
    c.install_steps.iter().find_map(|step| match step {
        InstallStep::RewritePrefix {
            old_prefix: old,
            files,
            ..
        } if old == old_prefix => files.iter().find(|f| f.path == path).map(|f| f.capacity),
        _ => None,
    })
}

/// The files listed for rewriting, as (bundle path, old prefix, mode).
pub fn rewrites(c: &Contribution) -> Vec<(String, String, PrefixMode)> {
    let mut out = Vec::new();
    for step in &c.install_steps {
        if let InstallStep::RewritePrefix {
            old_prefix, files, ..
        } = step
        {
            for f in files {
                out.push((f.path.clone(), old_prefix.clone(), f.mode));
            }
        }
    }
    out
}

/// The source of the entry at bundle path `dest`.
pub fn entry_source(c: &Contribution, dest: &str) -> Option<PathBuf> {
    c.entries
        .iter()
        .find(|e| e.dest == dest)
        .and_then(|e| match &e.kind {
            EntryKind::Path { source, .. } => Some(source.clone()),
            _ => None,
        })
}

const STATE_FILE: &str = ".airgap-test-prefixes.json";

/// Put the contribution's entries under `dest` and run its `RewritePrefix` steps there (what
/// the archive engine does at unpack). Returns an error message when a binary rewrite does not
/// fit, having written nothing of that step.
pub fn materialize(c: &Contribution, dest: &Path) -> Result<(), String> {
    std::fs::create_dir_all(dest).map_err(|e| e.to_string())?;
    for e in &c.entries {
        let to = dest.join(&e.dest);
        match &e.kind {
            EntryKind::Dir => std::fs::create_dir_all(&to).map_err(|e| e.to_string())?,
            EntryKind::Symlink { target } => {
                if let Some(p) = to.parent() {
                    std::fs::create_dir_all(p).map_err(|e| e.to_string())?;
                }
                let _ = std::fs::remove_file(&to);
                std::os::unix::fs::symlink(target, &to).map_err(|e| e.to_string())?;
            }
            EntryKind::Path { source, exclude } => {
                copy_tree(source, &to, exclude, e.mode)?;
            }
            other => {
                return Err(format!(
                    "an entry kind this helper does not know: {other:?}"
                ))
            }
        }
    }
    let mut steps = Vec::new();
    for step in &c.install_steps {
        if let InstallStep::RewritePrefix {
            old_prefix,
            root,
            files,
        } = step
        {
            let new = dest.join(root).to_string_lossy().into_owned();
            let files: Vec<(String, PrefixMode, usize)> = files
                .iter()
                .map(|f| {
                    let room = f.capacity.unwrap_or(old_prefix.len());
                    (f.path.clone(), f.mode, room)
                })
                .collect();
            apply(dest, old_prefix, &new, &files)?;
            steps.push(serde_json::json!({"root": root, "files": files.iter().map(|(p, m, room)| (p, matches!(m, PrefixMode::Binary), room)).collect::<Vec<_>>()}));
        }
    }
    let json = serde_json::json!({"dest": dest, "steps": steps});
    std::fs::write(dest.join(STATE_FILE), json.to_string()).map_err(|e| e.to_string())?;
    Ok(())
}

/// Move a tree made by [`materialize`] from `from` to `to` and rewrite its prefixes again.
pub fn relocate(from: &Path, to: &Path) -> Result<(), String> {
    let state: serde_json::Value =
        serde_json::from_slice(&std::fs::read(from.join(STATE_FILE)).map_err(|e| e.to_string())?)
            .map_err(|e| e.to_string())?;
    std::fs::rename(from, to).map_err(|e| e.to_string())?;
    let steps = state["steps"].as_array().cloned().unwrap_or_default();
    for step in &steps {
        let root = step["root"].as_str().unwrap_or_default();
        let old = from.join(root).to_string_lossy().into_owned();
        let new = to.join(root).to_string_lossy().into_owned();
        let files: Vec<(String, PrefixMode, usize)> = step["files"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .iter()
            .map(|f| {
                let mode = if f[1].as_bool().unwrap_or(false) {
                    PrefixMode::Binary
                } else {
                    PrefixMode::Text
                };
                let room = f[2].as_u64().unwrap_or_default() as usize;
                (f[0].as_str().unwrap_or_default().to_string(), mode, room)
            })
            .collect();
        apply(to, &old, &new, &files)?;
    }
    let json = serde_json::json!({"dest": to, "steps": steps});
    std::fs::write(to.join(STATE_FILE), json.to_string()).map_err(|e| e.to_string())?;
    Ok(())
}

/// Rewrite `old` to `new` in `files` (path, mode, the longest prefix a binary one takes).
fn apply(
    dest: &Path,
    old: &str,
    new: &str,
    files: &[(String, PrefixMode, usize)],
) -> Result<(), String> {
    if old == new {
        return Ok(());
    }
    let mut out = Vec::new();
    for (path, mode, room) in files {
        let file = dest.join(path);
        let mut data = std::fs::read(&file).map_err(|e| format!("{}: {e}", file.display()))?;
        match mode {
            PrefixMode::Text => data = prefix::replace_text(&data, old.as_bytes(), new.as_bytes()),
            PrefixMode::Binary => {
                prefix::replace_binary(&mut data, old.as_bytes(), new.as_bytes(), *room).map_err(
                    |e| {
                        format!(
                            "{path}: the new prefix {new} is longer than {old}: at most {} bytes fit",
                            e.max_len
                        )
                    },
                )?;
            }
        }
        out.push((file, data));
    }
    for (file, data) in out {
        let perms = std::fs::metadata(&file)
            .map_err(|e| e.to_string())?
            .permissions();
        std::fs::write(&file, data).map_err(|e| e.to_string())?;
        std::fs::set_permissions(&file, perms).map_err(|e| e.to_string())?;
    }
    Ok(())
}

fn copy_tree(
    source: &Path,
    to: &Path,
    exclude: &[String],
    mode: Option<u32>,
) -> Result<(), String> {
    let meta = std::fs::metadata(source).map_err(|e| format!("{}: {e}", source.display()))?;
    if meta.is_dir() {
        for item in walkdir(source) {
            let rel = item.strip_prefix(source).map_err(|e| e.to_string())?;
            let rel_s = rel.to_string_lossy();
            if exclude
                .iter()
                .any(|x| rel_s.split('/').any(|c| c == x.trim_start_matches("**/")))
            {
                continue;
            }
            let target = to.join(rel);
            let m = std::fs::symlink_metadata(&item).map_err(|e| e.to_string())?;
            if m.is_dir() {
                std::fs::create_dir_all(&target).map_err(|e| e.to_string())?;
            } else {
                copy_file(&item, &target, None)?;
            }
        }
        Ok(())
    } else {
        copy_file(source, to, mode)
    }
}

fn copy_file(source: &Path, to: &Path, mode: Option<u32>) -> Result<(), String> {
    if let Some(p) = to.parent() {
        std::fs::create_dir_all(p).map_err(|e| e.to_string())?;
    }
    let _ = std::fs::remove_file(to);
    std::fs::copy(source, to)
        .map_err(|e| format!("{} -> {}: {e}", source.display(), to.display()))?;
    if let Some(mode) = mode {
        std::fs::set_permissions(to, std::fs::Permissions::from_mode(mode))
            .map_err(|e| e.to_string())?;
    }
    Ok(())
}

fn walkdir(dir: &Path) -> Vec<PathBuf> {
    let mut out = vec![dir.to_path_buf()];
    let mut i = 0;
    while i < out.len() {
        let p = out[i].clone();
        if std::fs::symlink_metadata(&p).is_ok_and(|m| m.is_dir()) {
            if let Ok(rd) = std::fs::read_dir(&p) {
                let mut children: Vec<PathBuf> =
                    rd.filter_map(|e| e.ok()).map(|e| e.path()).collect();
                children.sort();
                out.extend(children);
            }
        }
        i += 1;
    }
    out
}

/// True when this machine lets the tests make mount namespaces (`unshare --mount`).
pub fn can_hide() -> bool {
    Command::new("unshare")
        .args(["--mount", "true"])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// A command that runs `program args` with an empty environment (PATH only) in a mount
/// namespace where each of `hide` is an empty tmpfs.
pub fn hidden(hide: &[&Path], program: &Path, args: &[&str]) -> Command {
    let mut script = String::new();
    for h in hide {
        script.push_str(&format!(
            "mount -t tmpfs airgap-hidden '{}' && ",
            h.display()
        ));
    }
    script.push_str("exec \"$0\" \"$@\"");
    let mut cmd = Command::new("unshare");
    cmd.env_clear()
        .env("PATH", "/usr/bin:/bin")
        .args(["--mount", "sh", "-c", &script])
        .arg(program)
        .args(args);
    cmd
}
