//! Editable installs (`pip install -e`, `setup.py develop`): code that lives outside the
//! environment and is found through a `.pth` file, an `__editable__` finder or an `.egg-link`.

use std::path::{Path, PathBuf};

/// One editable install found in a site-packages directory.
#[derive(Debug, Clone)]
pub struct EditableInstall {
    /// The project's name, as well as it is known.
    pub name: String,
    /// Where its code lives (outside the environment).
    pub target: PathBuf,
    /// The file in site-packages that makes it importable.
    pub found_in: PathBuf,
    /// Files of the environment that only exist for the editable mechanism; left out when
    /// the code is bundled.
    pub mechanism: Vec<PathBuf>,
    /// What to copy into site-packages when bundling: (source, name under site-packages).
    pub copy: Vec<(PathBuf, String)>,
}

/// Look for editable installs in `site_packages`; `inside` says whether a path is bundled
/// anyway (an editable install pointing into the environment is harmless).
///
/// Each mechanism is read in its own function: `.pth` files (directories and setuptools
/// finders), `.egg-link` files, then the `direct_url.json` of the distributions, which names
/// what the others found.
pub fn find(site_packages: &Path, inside: &dyn Fn(&Path) -> bool) -> Vec<EditableInstall> {
    let mut found: Vec<EditableInstall> = Vec::new();
    let Ok(dir) = std::fs::read_dir(site_packages) else {
        return found;
    };
    let mut names: Vec<PathBuf> = dir.filter_map(|e| e.ok()).map(|e| e.path()).collect();
    names.sort();
    for path in &names {
        let Some(file_name) = path.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        if file_name.ends_with(".pth") {
            found.extend(from_pth(site_packages, path, file_name, inside));
        } else if file_name.ends_with(".egg-link") {
            if let Some(e) = from_egg_link(path, file_name, inside, &found) {
                found.push(e);
            }
        }
    }
    name_from_direct_urls(&names, &mut found, inside);
    found
}

/// The editable installs a `.pth` file makes importable: the outside directories it lists,
/// then the outside code of the setuptools finders it imports.
fn from_pth(
    site_packages: &Path,
    path: &Path,
    file_name: &str,
    inside: &dyn Fn(&Path) -> bool,
) -> Vec<EditableInstall> {
    let Ok(text) = std::fs::read_to_string(path) else {
        return Vec::new();
    };
    let (dirs, finders) = pth_lines(&text, site_packages, inside);
    let name = editable_name(file_name.trim_end_matches(".pth"));
    let mut found = Vec::new();
    for d in dirs {
        found.push(EditableInstall {
            name: name.clone(),
            copy: package_roots(&d),
            target: d,
            found_in: path.to_path_buf(),
            mechanism: vec![path.to_path_buf()],
        });
    }
    for finder in finders {
        found.extend(from_finder(path, &finder, &name, inside));
    }
    found
}

/// The outside directories a `.pth` file lists and the `__editable__` finder modules it
/// imports (`import __editable___foo_1_0_finder; ...install()`).
fn pth_lines(
    text: &str,
    site_packages: &Path,
    inside: &dyn Fn(&Path) -> bool,
) -> (Vec<PathBuf>, Vec<PathBuf>) {
    let mut dirs = Vec::new();
    let mut finders = Vec::new();
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if line.starts_with("import ") || line.starts_with("import\t") {
            for word in line.split(|c: char| !(c.is_alphanumeric() || c == '_')) {
                if word.starts_with("__editable__") && word.ends_with("_finder") {
                    finders.push(site_packages.join(format!("{word}.py")));
                }
            }
            continue;
        }
        let p = site_packages.join(line);
        if p.is_dir() && !inside(&p) {
            dirs.push(p);
        }
    }
    (dirs, finders)
}

/// The editable install a setuptools finder maps to outside code, if any: the finder and its
/// byte code are mechanism; each mapped package or module is copied under its own name.
fn from_finder(
    pth: &Path,
    finder: &Path,
    name: &str,
    inside: &dyn Fn(&Path) -> bool,
) -> Option<EditableInstall> {
    let code = std::fs::read_to_string(finder).ok()?;
    let mapping = finder_mapping(&code);
    let outside: Vec<(String, PathBuf)> = mapping.into_iter().filter(|(_, p)| !inside(p)).collect();
    if outside.is_empty() {
        return None;
    }
    let target = outside
        .first()
        .map(|(_, p)| p.parent().unwrap_or(p).to_path_buf())
        .unwrap_or_default();
    let mut mechanism = vec![pth.to_path_buf(), finder.to_path_buf()];
    mechanism.extend(byte_code_of(finder));
    Some(EditableInstall {
        name: name.to_string(),
        target,
        found_in: pth.to_path_buf(),
        mechanism,
        copy: outside
            .into_iter()
            .map(|(module, p)| {
                let dest = if p.is_dir() {
                    module
                } else {
                    p.file_name()
                        .and_then(|n| n.to_str())
                        .map(str::to_string)
                        .unwrap_or(module)
                };
                (p, dest)
            })
            .collect(),
    })
}

/// The editable install an `.egg-link` file (`setup.py develop`) points to, unless it is
/// inside the environment or already `found`.
fn from_egg_link(
    path: &Path,
    file_name: &str,
    inside: &dyn Fn(&Path) -> bool,
    found: &[EditableInstall],
) -> Option<EditableInstall> {
    let text = std::fs::read_to_string(path).ok()?;
    let first = text.lines().next().map(str::trim)?;
    let p = PathBuf::from(first);
    if !p.is_dir() || inside(&p) || found.iter().any(|f| f.target == p) {
        return None;
    }
    Some(EditableInstall {
        name: file_name.trim_end_matches(".egg-link").to_string(),
        copy: package_roots(&p),
        target: p,
        found_in: path.to_path_buf(),
        mechanism: vec![path.to_path_buf()],
    })
}

/// `direct_url.json` files that say "editable" name the project properly: rename what the
/// other mechanisms found (their `direct_url.json` is mechanism too), or add an outside
/// install nothing else found.
fn name_from_direct_urls(
    names: &[PathBuf],
    found: &mut Vec<EditableInstall>,
    inside: &dyn Fn(&Path) -> bool,
) {
    for path in names {
        let Some((project, target, direct_url)) = editable_direct_url(path) else {
            continue;
        };
        let key = normalize(&project);
        let existing = found
            .iter_mut()
            .find(|f| normalize(&f.name).starts_with(&key) || f.target.starts_with(&target));
        match existing {
            Some(f) => {
                f.name = project;
                f.mechanism.push(direct_url);
            }
            None if !inside(&target) => found.push(EditableInstall {
                name: project,
                copy: Vec::new(),
                target,
                found_in: direct_url.clone(),
                mechanism: vec![direct_url],
            }),
            None => {}
        }
    }
}

/// For a `NAME-VERSION.dist-info` directory whose `direct_url.json` says "editable": the
/// project's name, where its code is, and that file.
fn editable_direct_url(path: &Path) -> Option<(String, PathBuf, PathBuf)> {
    let file_name = path.file_name().and_then(|n| n.to_str())?;
    let stem = file_name.strip_suffix(".dist-info")?;
    let direct_url = path.join("direct_url.json");
    let text = std::fs::read(&direct_url).ok()?;
    let value = serde_json::from_slice::<serde_json::Value>(&text).ok()?;
    let editable = value
        .pointer("/dir_info/editable")
        .and_then(|v| v.as_bool())
        .unwrap_or(false);
    if !editable {
        return None;
    }
    let url = value.get("url").and_then(|u| u.as_str()).unwrap_or("");
    let target = PathBuf::from(url.strip_prefix("file://").unwrap_or(url));
    let project = stem.split('-').next().unwrap_or(stem).to_string();
    Some((project, target, direct_url))
}

/// `__pycache__/NAME.*.pyc` of a module file.
fn byte_code_of(module: &Path) -> Vec<PathBuf> {
    let (Some(dir), Some(stem)) = (module.parent(), module.file_stem().and_then(|s| s.to_str()))
    else {
        return Vec::new();
    };
    let Ok(entries) = std::fs::read_dir(dir.join("__pycache__")) else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(&format!("{stem}.")) && n.ends_with(".pyc"))
        })
        .collect()
}

fn normalize(name: &str) -> String {
    name.to_ascii_lowercase().replace(['-', '.'], "_")
}

/// `__editable__.foo-1.0` -> `foo-1.0`.
fn editable_name(stem: &str) -> String {
    stem.trim_start_matches("__editable__.")
        .trim_start_matches("__editable__")
        .to_string()
}

/// The `MAPPING = {'pkg': '/src/pkg', ...}` of a setuptools editable finder.
fn finder_mapping(code: &str) -> Vec<(String, PathBuf)> {
    let Some(line) = code.lines().find(|l| l.starts_with("MAPPING")) else {
        return Vec::new();
    };
    let Some(body) = line.split_once('=').map(|(_, b)| b) else {
        return Vec::new();
    };
    let strings = quoted_strings(body);
    strings
        .chunks(2)
        .filter_map(|pair| match pair {
            [k, v] => Some((k.clone(), PathBuf::from(v))),
            _ => None,
        })
        .collect()
}

fn quoted_strings(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\'' || c == '"' {
            let mut s = String::new();
            for d in chars.by_ref() {
                if d == c {
                    break;
                }
                s.push(d);
            }
            out.push(s);
        }
    }
    out
}

/// The importable top-level packages and modules of a source directory.
fn package_roots(dir: &Path) -> Vec<(PathBuf, String)> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for e in entries.filter_map(|e| e.ok()) {
        let p = e.path();
        let Some(name) = p.file_name().and_then(|n| n.to_str()).map(str::to_string) else {
            continue;
        };
        if name.starts_with('.')
            || matches!(
                name.as_str(),
                "tests" | "test" | "build" | "dist" | "docs" | "setup.py" | "conftest.py"
            )
            || name.ends_with(".egg-info")
        {
            continue;
        }
        let is_package = p.is_dir() && p.join("__init__.py").exists();
        let is_module = p.is_file() && (name.ends_with(".py") || name.ends_with(".so"));
        if is_package || is_module {
            out.push((p, name));
        }
    }
    out.sort();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_setuptools_finder_mapping() {
        let code =
            "import sys\nMAPPING: dict[str, str] = {'demo': '/src/demo/demo', 'm': '/src/m.py'}\n";
        assert_eq!(
            finder_mapping(code),
            vec![
                ("demo".to_string(), PathBuf::from("/src/demo/demo")),
                ("m".to_string(), PathBuf::from("/src/m.py"))
            ]
        );
    }
}
