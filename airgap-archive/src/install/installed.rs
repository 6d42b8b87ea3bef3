//! What a user needs after an unpack: where the interpreter is, how to activate the
//! environment, the Jupyter kernels and the commands it carries. Read from the installed tree
//! (the manifest says where the environment is; install steps may have made a venv), so that
//! `airgap unpack` and the carried unpacker end with the same paths.

use std::fs;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::format::manifest::Manifest;

/// The paths a user needs after an unpack.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Installed {
    /// Each Python environment in the tree.
    pub environments: Vec<Environment>,
}

/// One Python environment of an installed tree.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Environment {
    /// Its directory.
    pub prefix: PathBuf,
    /// Its interpreter.
    pub python: Option<PathBuf>,
    /// The script to source (`. PATH`), when there is one.
    pub activate: Option<PathBuf>,
    /// Jupyter kernel specs under `share/jupyter/kernels`.
    pub kernels: Vec<Kernel>,
    /// Commands the installed distributions declare (console and GUI entry points) that are
    /// in its `bin`, by name.
    pub commands: Vec<String>,
}

/// A Jupyter kernel spec.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Kernel {
    /// The spec's directory name (what `jupyter --kernel NAME` takes).
    pub name: String,
    /// Its `display_name`, when its `kernel.json` has one.
    pub display_name: Option<String>,
    /// Its directory.
    pub path: PathBuf,
}

/// What is installed at `dest`: the manifest's environment, and the venvs install steps made
/// at the top of the tree (a wheelhouse bundle makes one on the target).
pub fn installed(dest: &Path, manifest: &Manifest) -> Installed {
    let mut prefixes: Vec<(PathBuf, Option<PathBuf>)> = Vec::new();
    if let Some(env) = &manifest.python {
        prefixes.push((dest.join(&env.prefix), Some(dest.join(&env.executable))));
    }
    if let Ok(dir) = fs::read_dir(dest) {
        let mut venvs: Vec<PathBuf> = dir
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.join("pyvenv.cfg").is_file())
            .filter(|p| !prefixes.iter().any(|(q, _)| q == p))
            .collect();
        venvs.sort();
        prefixes.extend(venvs.into_iter().map(|p| (p, None)));
    }
    Installed {
        environments: prefixes
            .into_iter()
            .map(|(prefix, python)| environment(prefix, python))
            .collect(),
    }
}

/// One environment's paths; `python` when the manifest names the interpreter.
fn environment(prefix: PathBuf, python: Option<PathBuf>) -> Environment {
    let bin = prefix.join("bin");
    let python = python.filter(|p| p.exists()).or_else(|| {
        ["python3", "python"]
            .iter()
            .map(|n| bin.join(n))
            .find(|p| p.exists())
    });
    // conda environments get `activate` at their root from airgap; venvs have `bin/activate`.
    let activate = [prefix.join("activate"), bin.join("activate")]
        .into_iter()
        .find(|p| p.is_file());
    Environment {
        kernels: kernels(&prefix.join("share/jupyter/kernels")),
        commands: commands(&prefix, &bin),
        prefix,
        python,
        activate,
    }
}

/// The kernel specs in `dir`, by name.
fn kernels(dir: &Path) -> Vec<Kernel> {
    let Ok(entries) = fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut out: Vec<Kernel> = entries
        .flatten()
        .filter(|e| e.path().join("kernel.json").is_file())
        .map(|e| {
            let path = e.path();
            let display_name = fs::read(path.join("kernel.json"))
                .ok()
                .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
                .and_then(|v| v.get("display_name")?.as_str().map(str::to_owned));
            Kernel {
                name: e.file_name().to_string_lossy().into_owned(),
                display_name,
                path,
            }
        })
        .collect();
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

/// The entry points of every distribution in the environment's site-packages
/// (`*.dist-info/entry_points.txt`, `[console_scripts]` and `[gui_scripts]`) that `bin` holds.
fn commands(prefix: &Path, bin: &Path) -> Vec<String> {
    let mut out = Vec::new();
    for site in site_packages(prefix) {
        let Ok(entries) = fs::read_dir(&site) else {
            continue;
        };
        for e in entries.flatten() {
            if !e.file_name().to_string_lossy().ends_with(".dist-info") {
                continue;
            }
            let Ok(text) = fs::read_to_string(e.path().join("entry_points.txt")) else {
                continue;
            };
            out.extend(script_names(&text).filter(|n| bin.join(n).is_file()));
        }
    }
    out.sort();
    out.dedup();
    out
}

/// `lib/python*/site-packages` of an environment.
fn site_packages(prefix: &Path) -> Vec<PathBuf> {
    let Ok(entries) = fs::read_dir(prefix.join("lib")) else {
        return Vec::new();
    };
    let mut out: Vec<PathBuf> = entries
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("python"))
        .map(|e| e.path().join("site-packages"))
        .filter(|p| p.is_dir())
        .collect();
    out.sort();
    out
}

/// The names of the console and GUI scripts in an `entry_points.txt` (an INI file: `name =
/// module:function` lines under section headers).
fn script_names(text: &str) -> impl Iterator<Item = String> + '_ {
    let mut in_scripts = false;
    text.lines().filter_map(move |line| {
        let line = line.trim();
        if line.starts_with('[') {
            in_scripts = matches!(line, "[console_scripts]" | "[gui_scripts]");
            return None;
        }
        if !in_scripts || line.starts_with('#') || line.starts_with(';') {
            return None;
        }
        let (name, _) = line.split_once('=')?;
        let name = name.trim();
        // A name with a slash would point outside `bin`.
        (!name.is_empty() && !name.contains('/')).then(|| name.to_owned())
    })
}

/// The summary as (label, text) lines for a terminal, in the status-line style of the
/// command-line tools (unescaped: the names come from the bundle, and the printer escapes
/// them). Commands beyond `max_commands` are counted, not listed.
pub fn summary_lines(installed: &Installed, max_commands: usize) -> Vec<(&'static str, String)> {
    let mut out = Vec::new();
    let several = installed.environments.len() > 1;
    for env in &installed.environments {
        if several || env.python.is_none() {
            out.push(("Environment", env.prefix.display().to_string()));
        }
        if let Some(p) = &env.python {
            out.push(("Python", p.display().to_string()));
        }
        if let Some(a) = &env.activate {
            out.push((
                "Activate",
                format!(". {}", shell_word(&a.to_string_lossy())),
            ));
        }
        for k in &env.kernels {
            let shown = match &k.display_name {
                Some(d) => format!("{} \"{d}\" ({})", k.name, k.path.display()),
                None => format!("{} ({})", k.name, k.path.display()),
            };
            out.push(("Kernel", shown));
        }
        if !env.commands.is_empty() {
            let shown: Vec<&str> = env
                .commands
                .iter()
                .take(max_commands)
                .map(String::as_str)
                .collect();
            let more = env.commands.len() - shown.len();
            let more = if more > 0 {
                format!(" and {more} more")
            } else {
                String::new()
            };
            out.push((
                "Commands",
                format!(
                    "{}{more} in {}",
                    shown.join(" "),
                    env.prefix.join("bin").display()
                ),
            ));
        }
    }
    out
}

/// A path as one shell word: quoted when it holds anything a shell would split or expand.
fn shell_word(s: &str) -> String {
    let plain = !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"/._-+:@%,".contains(&b));
    if plain {
        s.to_owned()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_points_are_read_from_the_script_sections_only() {
        let text = "[console_scripts]\njupyter-lab = jupyterlab.labapp:main\n# c\n\n[gui_scripts]\nidle = idlelib:main\n[other]\nnot-me = x:y\n[console_scripts]\n../evil = x:y\n";
        let names: Vec<String> = script_names(text).collect();
        assert_eq!(names, ["jupyter-lab", "idle"]);
    }

    #[test]
    fn shell_words_are_quoted_when_a_shell_would_split_them() {
        assert_eq!(shell_word("/opt/nlp/env/activate"), "/opt/nlp/env/activate");
        assert_eq!(shell_word("/opt/my env/activate"), "'/opt/my env/activate'");
        assert_eq!(shell_word("/opt/it's"), "'/opt/it'\\''s'");
    }
}
