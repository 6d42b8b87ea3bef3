//! What never goes into a bundle, and what a manylinux target is assumed to have.
//!
//! Figures from auditwheel's policy file (see `docs/elf.md`): the libraries every manylinux
//! target has, and the highest symbol version per prefix each tag allows (x86_64).

use std::collections::BTreeMap;

use serde::Serialize;

use crate::version::{SymbolVersions, Version};

/// Why a library is never bundled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum NeverBundle {
    /// glibc or its loader: ld.so and libc must come from the same build, and the loader's
    /// path is hard-coded in every executable.
    Glibc,
    /// A GPU or driver library that must match the target's kernel driver.
    Driver,
}

const GLIBC_STEMS: &[&str] = &[
    "libc",
    "libm",
    "libmvec",
    "libdl",
    "libpthread",
    "librt",
    "libutil",
    "libresolv",
    "libanl",
    "libthread_db",
    "libBrokenLocale",
    "libc_malloc_debug",
    "libmemusage",
    "libpcprofile",
];

const DRIVER_STEMS: &[&str] = &[
    "libGL",
    "libEGL",
    "libGLX",
    "libGLdispatch",
    "libOpenGL",
    "libglapi",
    "libgbm",
    "libdrm",
    "libcuda",
    "libGLESv1_CM",
    "libGLESv2",
];

/// The part of a library name before `.so` (`libc.so.6` -> `libc`).
pub fn stem(name: &str) -> &str {
    let base = name.rsplit('/').next().unwrap_or(name);
    match base.find(".so") {
        Some(i) => &base[..i],
        None => base,
    }
}

/// Whether `name` (a soname or file name) must never be bundled, and why.
pub fn never_bundle(name: &str) -> Option<NeverBundle> {
    let base = name.rsplit('/').next().unwrap_or(name);
    let s = stem(base);
    if base.starts_with("ld-linux") || s == "ld" || s.starts_with("ld64") {
        return Some(NeverBundle::Glibc);
    }
    if GLIBC_STEMS.contains(&s) || s.starts_with("libnss_") {
        return Some(NeverBundle::Glibc);
    }
    if DRIVER_STEMS.contains(&s)
        || s.starts_with("libnvidia-")
        || s.starts_with("libGLX_")
        || s.starts_with("libEGL_")
    {
        return Some(NeverBundle::Driver);
    }
    None
}

/// Whether `name` (a soname or file name) belongs to a machine's display or GPU stack (X11,
/// xcb, Wayland, GTK, Tk, fontconfig, the GL and driver libraries): what a manylinux target
/// is assumed to have, or what only a desktop uses, and what a headless node lacks. A module that fails to
/// load only for one of these needs a display or a GPU, not a fix of the bundle.
pub fn display_or_driver(name: &str) -> bool {
    let s = stem(name);
    never_bundle(name) == Some(NeverBundle::Driver)
        || [
            "libX",
            "libxcb",
            "libwayland",
            "libgtk",
            "libgdk",
            "libxkbcommon",
            "libfontconfig",
            "libtk",
        ]
        .iter()
        .any(|p| s.starts_with(p))
}

/// A manylinux policy: a glibc floor and what a target of that tag is assumed to have. A
/// probed target (a profile of `airgap probe`, a retyped code) is one more policy of this
/// kind ([`ManylinuxPolicy::from_target`]): its own libraries instead of the tag's, with the
/// symbol versions each defines where the profile carries them, so that the loader model has
/// one notion of "what the target system offers" whatever told it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ManylinuxPolicy {
    /// PEP 600 name (`manylinux_2_17`).
    pub name: String,
    /// The legacy alias, if any (`manylinux2014`).
    pub alias: Option<&'static str>,
    /// The glibc version of the tag.
    pub glibc: Version,
    /// Highest symbol version allowed per prefix (GLIBC, GLIBCXX, CXXABI, GCC).
    pub max_versions: SymbolVersions,
    /// Sonames every target of this tag has.
    pub libs: Vec<String>,
    /// The symbol versions a library of the target defines (`.gnu.version_d`), for the
    /// libraries a probe read; a library without an entry is checked against
    /// `max_versions`. Empty for a manylinux tag.
    pub lib_versions: BTreeMap<String, Vec<String>>,
}

const BASE_LIBS: &[&str] = &[
    "libc.so.6",
    "libm.so.6",
    "libdl.so.2",
    "librt.so.1",
    "libpthread.so.0",
    "libutil.so.1",
    "libnsl.so.1",
    "libanl.so.1",
    "libresolv.so.2",
    "libgcc_s.so.1",
    "libstdc++.so.6",
    "libatomic.so.1",
    "libz.so.1",
    "libexpat.so.1",
    "libX11.so.6",
    "libXext.so.6",
    "libXrender.so.1",
    "libICE.so.6",
    "libSM.so.6",
    "libGL.so.1",
    "libglib-2.0.so.0",
    "libgobject-2.0.so.0",
    "libgthread-2.0.so.0",
];

/// (glibc minor, alias, GLIBCXX, CXXABI, GCC) per tag, from the table in the notes.
const TABLE: &[(u32, Option<&str>, &str, &str, &str)] = &[
    (5, Some("manylinux1"), "3.4.8", "1.3.1", "4.2.0"),
    (12, Some("manylinux2010"), "3.4.13", "1.3.3", "4.3.0"),
    (17, Some("manylinux2014"), "3.4.19", "1.3.7", "4.8.0"),
    (24, None, "3.4.22", "1.3.10", "4.8.0"),
    (28, None, "3.4.24", "1.3.11", "7.0.0"),
    (31, None, "3.4.28", "1.3.12", "7.0.0"),
    (34, None, "3.4.29", "1.3.13", "7.0.0"),
    (35, None, "3.4.30", "1.3.13", "12.0.0"),
    (39, None, "3.4.33", "1.3.15", "14.0.0"),
];

fn build(row: &(u32, Option<&'static str>, &str, &str, &str)) -> ManylinuxPolicy {
    let (minor, alias, cxx, abi, gcc) = *row;
    let mut max = SymbolVersions::default();
    let v = |s: &str| Version::parse(s).unwrap_or_default();
    max.0.insert("GLIBC".into(), Version(vec![2, minor]));
    max.0.insert("GLIBCXX".into(), v(cxx));
    max.0.insert("CXXABI".into(), v(abi));
    max.0.insert("GCC".into(), v(gcc));
    let mut libs: Vec<String> = BASE_LIBS.iter().map(|s| s.to_string()).collect();
    if minor >= 24 {
        libs.push("libmvec.so.1".into());
    }
    ManylinuxPolicy {
        name: format!("manylinux_2_{minor}"),
        alias,
        glibc: Version(vec![2, minor]),
        max_versions: max,
        libs,
        lib_versions: BTreeMap::new(),
    }
}

/// Every known policy, oldest first.
pub fn all_policies() -> Vec<ManylinuxPolicy> {
    TABLE.iter().map(build).collect()
}

/// A policy by name: `manylinux2014`, `manylinux_2_17`, `manylinux_2_17_x86_64`, `2_17`,
/// `manylinux1`. For a PEP 600 tag between two rows, the nearest older row (with that
/// tag's glibc as its floor).
pub fn policy_by_name(name: &str) -> Option<ManylinuxPolicy> {
    let n = name.trim();
    let n = n
        .strip_suffix("_x86_64")
        .or_else(|| n.strip_suffix("_i686"))
        .or_else(|| n.strip_suffix("_aarch64"))
        .unwrap_or(n);
    if let Some(row) = TABLE.iter().find(|r| r.1 == Some(n)) {
        return Some(build(row));
    }
    let rest = n.strip_prefix("manylinux_").unwrap_or(n);
    let (major, minor) = rest.split_once('_')?;
    if major != "2" {
        return None;
    }
    let minor: u32 = minor.parse().ok()?;
    policy_for_glibc(&Version(vec![2, minor]))
}

/// The newest policy whose glibc is not newer than `glibc`; the policy's glibc floor is
/// then raised to `glibc` itself (a target with glibc 2.36 has GLIBC_2.36 symbols).
pub fn policy_for_glibc(glibc: &Version) -> Option<ManylinuxPolicy> {
    let row = TABLE
        .iter()
        .rev()
        .find(|r| Version(vec![2, r.0]) <= *glibc)?;
    let mut p = build(row);
    if *glibc > p.glibc {
        p.glibc = glibc.clone();
        p.max_versions.0.insert("GLIBC".into(), glibc.clone());
        p.name = format!("manylinux_{}", glibc.to_string().replace('.', "_"));
    }
    Some(p)
}

impl ManylinuxPolicy {
    /// A probed target as a policy: `name` says what told us (shown in reports), `glibc`
    /// its glibc (`2.36`), `versions` the highest versions per prefix of its libc, libstdc++
    /// and libgcc_s (`GLIBCXX` -> `3.4.30`), `libraries` every soname it has with the
    /// versions each defines (empty when unknown). `None` when `glibc` is not a version.
    pub fn from_target(
        name: String,
        glibc: &str,
        versions: &BTreeMap<String, String>,
        libraries: &BTreeMap<String, Vec<String>>,
    ) -> Option<ManylinuxPolicy> {
        let glibc = Version::parse(glibc)?;
        let mut max_versions = SymbolVersions::default();
        for (prefix, v) in versions {
            if let Some(v) = Version::parse(v) {
                max_versions.0.insert(prefix.clone(), v);
            }
        }
        max_versions.0.insert("GLIBC".into(), glibc.clone());
        Some(ManylinuxPolicy {
            name,
            alias: None,
            glibc,
            max_versions,
            libs: libraries.keys().cloned().collect(),
            lib_versions: libraries
                .iter()
                .filter(|(_, v)| !v.is_empty())
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        })
    }

    /// True when every target of this policy has `name`.
    pub fn assumes(&self, name: &str) -> bool {
        self.libs.iter().any(|l| l == name)
    }

    /// Prefixes whose required version exceeds this policy: (prefix, required, allowed).
    pub fn too_new(&self, required: &SymbolVersions) -> Vec<(String, Version, Version)> {
        let mut out = Vec::new();
        for (prefix, need) in &required.0 {
            if let Some(max) = self.max_versions.0.get(prefix) {
                if need > max {
                    out.push((prefix.clone(), need.clone(), max.clone()));
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glibc_and_drivers_are_never_bundled() {
        assert_eq!(never_bundle("libc.so.6"), Some(NeverBundle::Glibc));
        assert_eq!(
            never_bundle("ld-linux-x86-64.so.2"),
            Some(NeverBundle::Glibc)
        );
        assert_eq!(never_bundle("libnss_files.so.2"), Some(NeverBundle::Glibc));
        assert_eq!(never_bundle("libcuda.so.1"), Some(NeverBundle::Driver));
        assert_eq!(never_bundle("libnvidia-ml.so.1"), Some(NeverBundle::Driver));
        assert_eq!(never_bundle("libssl.so.3"), None);
        assert_eq!(never_bundle("libcrypto.so.3"), None);
        assert_eq!(never_bundle("libmagic.so.1"), None);
    }

    #[test]
    fn policies_by_name_and_glibc() {
        let p = policy_by_name("manylinux2014").expect("2014");
        assert_eq!(p.glibc.to_string(), "2.17");
        assert!(p.assumes("libstdc++.so.6"));
        assert!(!p.assumes("libmvec.so.1"));
        let p = policy_by_name("manylinux_2_28_x86_64").expect("2_28");
        assert!(p.assumes("libmvec.so.1"));
        assert_eq!(
            p.max_versions
                .max("GCC")
                .map(ToString::to_string)
                .as_deref(),
            Some("7.0.0")
        );
        let p = policy_for_glibc(&Version(vec![2, 36])).expect("2.36");
        assert_eq!(p.glibc.to_string(), "2.36");
        assert_eq!(
            p.max_versions
                .max("GLIBCXX")
                .map(ToString::to_string)
                .as_deref(),
            Some("3.4.30")
        );
        assert!(policy_by_name("musllinux_1_2").is_none());
    }
}
