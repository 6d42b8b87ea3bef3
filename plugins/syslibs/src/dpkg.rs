//! Which Debian package a library file comes from, for the provenance of bundled libraries.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Debian package name and version per file, for the files dpkg knows. Two processes in all,
/// whatever the number of files; nothing when dpkg is absent (not a Debian machine).
pub fn packages_of(paths: &[PathBuf]) -> HashMap<PathBuf, (String, String)> {
    let mut out = HashMap::new();
    if paths.is_empty() {
        return out;
    }
    // dpkg records paths as shipped; with usrmerge the file may be reached through /lib.
    let mut queries: Vec<(PathBuf, String)> = Vec::new();
    for p in paths {
        queries.push((p.clone(), p.to_string_lossy().into_owned()));
        if let Ok(real) = std::fs::canonicalize(p) {
            queries.push((p.clone(), real.to_string_lossy().into_owned()));
            if let Ok(rest) = real.strip_prefix("/usr") {
                queries.push((
                    p.clone(),
                    Path::new("/").join(rest).to_string_lossy().into_owned(),
                ));
            }
        }
    }
    let Ok(o) = Command::new("dpkg")
        .arg("-S")
        .args(queries.iter().map(|(_, q)| q.as_str()))
        .output()
    else {
        return out;
    };
    let mut pkg_of_query: HashMap<String, String> = HashMap::new();
    for line in String::from_utf8_lossy(&o.stdout).lines() {
        // "libssl3:amd64: /usr/lib/x86_64-linux-gnu/libssl.so.3"
        if let Some((pkgs, path)) = line.split_once(": ") {
            let pkg = pkgs.split(',').next().unwrap_or(pkgs).trim().to_owned();
            pkg_of_query.insert(path.trim().to_owned(), pkg);
        }
    }
    let mut pkgs: Vec<String> = pkg_of_query.values().cloned().collect();
    pkgs.sort();
    pkgs.dedup();
    let mut version_of: HashMap<String, String> = HashMap::new();
    if !pkgs.is_empty() {
        if let Ok(o) = Command::new("dpkg-query")
            .arg("-W")
            .arg("-f=${binary:Package} ${Version}\n")
            .args(&pkgs)
            .output()
        {
            for line in String::from_utf8_lossy(&o.stdout).lines() {
                if let Some((p, v)) = line.split_once(' ') {
                    version_of.insert(p.to_owned(), v.to_owned());
                    // dpkg-query prints "libssl3:amd64"; dpkg -S may have said "libssl3".
                    if let Some((bare, _)) = p.split_once(':') {
                        version_of
                            .entry(bare.to_owned())
                            .or_insert_with(|| v.to_owned());
                    }
                }
            }
        }
    }
    for (path, q) in &queries {
        if out.contains_key(path) {
            continue;
        }
        if let Some(pkg) = pkg_of_query.get(q) {
            if let Some(v) = version_of.get(pkg) {
                out.insert(path.clone(), (pkg.clone(), v.clone()));
            }
        }
    }
    out
}
