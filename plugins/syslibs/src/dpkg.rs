//! Which Debian package a library file comes from, for the provenance of bundled libraries:
//! its name, version and architecture (dpkg's own answer), its package URL and the licence
//! its machine-readable copyright file declares.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The Debian package a file came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DebPackage {
    /// As dpkg names it (`libssl3:amd64` for a multi-arch package).
    pub name: String,
    /// Its version.
    pub version: String,
    /// Its architecture (`amd64`, `all`).
    pub arch: String,
}

impl DebPackage {
    /// The name without the `:ARCH` of multi-arch packages: the directory of its docs.
    pub fn bare_name(&self) -> &str {
        self.name.split_once(':').map_or(&self.name, |(n, _)| n)
    }

    /// `pkg:deb/DISTRO/NAME@VERSION?arch=ARCH`, the purl spec's form; `distro` is the
    /// machine's `ID` in `/etc/os-release` (`debian`, `ubuntu`).
    pub fn purl(&self, distro: &str) -> Option<String> {
        purl::GenericPurlBuilder::new("deb".to_string(), self.bare_name())
            .with_namespace(distro)
            .with_version(&self.version)
            .with_qualifier("arch", &self.arch)
            .ok()?
            .build()
            .ok()
            .map(|p| p.to_string())
    }

    /// The licence of the package's main files as its copyright file declares it: the
    /// `License:` of the `Files: *` paragraph of a machine-readable (DEP-5) file; nothing
    /// for a free-form file, which names no licence a reader could take without guessing.
    pub fn license(&self) -> Option<String> {
        let path = Path::new("/usr/share/doc")
            .join(self.bare_name())
            .join("copyright");
        license_of_copyright(&std::fs::read_to_string(path).ok()?)
    }
}

/// The `License:` of the `Files: *` paragraph of a DEP-5 copyright file.
fn license_of_copyright(text: &str) -> Option<String> {
    if !text.starts_with("Format:") {
        return None;
    }
    text.split("\n\n").find_map(|paragraph| {
        let mut fields = paragraph.lines().filter(|l| !l.starts_with([' ', '\t']));
        let all = fields.clone().any(|l| {
            l.strip_prefix("Files:")
                .is_some_and(|v| v.split_whitespace().next() == Some("*"))
        });
        all.then(|| fields.find_map(|l| l.strip_prefix("License:").map(|v| v.trim().to_string())))
            .flatten()
            .filter(|l| !l.is_empty())
    })
}

/// The distribution's `ID` from `/etc/os-release` (`debian` when unknown): a deb purl's
/// namespace.
pub fn distro() -> String {
    std::fs::read_to_string("/etc/os-release")
        .ok()
        .and_then(|t| {
            t.lines().find_map(|l| {
                l.strip_prefix("ID=")
                    .map(|v| v.trim().trim_matches('"').to_string())
            })
        })
        .filter(|id| !id.is_empty())
        .unwrap_or_else(|| "debian".into())
}

/// The Debian package of each file dpkg knows. Two processes in all, whatever the number of
/// files; nothing when dpkg is absent (not a Debian machine).
pub fn packages_of(paths: &[PathBuf]) -> HashMap<PathBuf, DebPackage> {
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
    let mut version_of: HashMap<String, DebPackage> = HashMap::new();
    if !pkgs.is_empty() {
        if let Ok(o) = Command::new("dpkg-query")
            .arg("-W")
            .arg("-f=${binary:Package} ${Version} ${Architecture}\n")
            .args(&pkgs)
            .output()
        {
            for line in String::from_utf8_lossy(&o.stdout).lines() {
                let mut parts = line.split(' ');
                if let (Some(p), Some(v), Some(arch)) = (parts.next(), parts.next(), parts.next()) {
                    let package = DebPackage {
                        name: p.to_owned(),
                        version: v.to_owned(),
                        arch: arch.to_owned(),
                    };
                    // dpkg-query prints "libssl3:amd64"; dpkg -S may have said "libssl3".
                    if let Some((bare, _)) = p.split_once(':') {
                        version_of
                            .entry(bare.to_owned())
                            .or_insert_with(|| package.clone());
                    }
                    version_of.insert(p.to_owned(), package);
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
                out.insert(path.clone(), v.clone());
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_licence_is_the_one_of_all_files() {
        let text = "Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\n\
                    Upstream-Name: zlib\n\n\
                    Files: debian/*\nLicense: GPL-2+\n\n\
                    Files: *\nCopyright: 1995 Jean-loup Gailly\nLicense: Zlib\n text\n";
        assert_eq!(license_of_copyright(text).as_deref(), Some("Zlib"));
        assert_eq!(license_of_copyright("This is free software.\n"), None);
    }

    #[test]
    fn a_deb_purl_has_its_distro_and_arch() {
        let p = DebPackage {
            name: "libssl3:amd64".into(),
            version: "3.0.15-1~deb12u1".into(),
            arch: "amd64".into(),
        };
        assert_eq!(
            p.purl("debian").as_deref(),
            Some("pkg:deb/debian/libssl3@3.0.15-1~deb12u1?arch=amd64")
        );
    }
}
