//! Symbol version names (`GLIBC_2.34`, `GLIBCXX_3.4.29`) and their ordering.

use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::fmt;

use serde::{Serialize, Serializer};

/// A dotted version (`2.34`, `3.4.29`). Compared numerically, part by part.
#[derive(Debug, Clone, Default)]
pub struct Version(pub Vec<u32>);

impl Version {
    /// Parse `2.34`; `None` when a part is not a number.
    pub fn parse(s: &str) -> Option<Version> {
        let parts: Option<Vec<u32>> = s.split('.').map(|p| p.parse().ok()).collect();
        parts.filter(|p| !p.is_empty()).map(Version)
    }
}

impl Ord for Version {
    fn cmp(&self, other: &Self) -> Ordering {
        let n = self.0.len().max(other.0.len());
        for i in 0..n {
            let a = self.0.get(i).copied().unwrap_or(0);
            let b = other.0.get(i).copied().unwrap_or(0);
            match a.cmp(&b) {
                Ordering::Equal => continue,
                o => return o,
            }
        }
        Ordering::Equal
    }
}

impl PartialEq for Version {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Version {}

impl std::hash::Hash for Version {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        // Trailing zeros do not count: 2.17 == 2.17.0.
        let end = self.0.iter().rposition(|p| *p != 0).map_or(0, |i| i + 1);
        self.0[..end].hash(state);
    }
}

impl PartialOrd for Version {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self.0.iter().map(u32::to_string).collect();
        f.write_str(&parts.join("."))
    }
}

impl Serialize for Version {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

/// Split `GLIBC_2.34` into (`GLIBC`, 2.34). Names without a numeric tail (`GLIBC_PRIVATE`)
/// give `None`.
pub fn split_version_name(name: &str) -> Option<(&str, Version)> {
    let (prefix, ver) = name.rsplit_once('_')?;
    Some((prefix, Version::parse(ver)?))
}

/// The highest version required per prefix (`GLIBC` -> 2.34).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct SymbolVersions(pub BTreeMap<String, Version>);

impl SymbolVersions {
    /// Record one version name (`GLIBC_2.34`); names without a version are ignored.
    pub fn add(&mut self, name: &str) {
        if let Some((prefix, v)) = split_version_name(name) {
            let slot = self.0.entry(prefix.to_owned()).or_default();
            if v > *slot {
                *slot = v;
            }
        }
    }

    /// The highest version of `prefix` required, if any.
    pub fn max(&self, prefix: &str) -> Option<&Version> {
        self.0.get(prefix)
    }

    /// Merge another set, keeping the higher version per prefix.
    pub fn merge(&mut self, other: &SymbolVersions) {
        for (prefix, v) in &other.0 {
            let slot = self.0.entry(prefix.clone()).or_default();
            if v > slot {
                *slot = v.clone();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_compare_numerically() {
        let v = |s| Version::parse(s).expect("version");
        assert!(v("2.34") > v("2.4"));
        assert!(v("3.4.29") > v("3.4.9"));
        assert_eq!(v("2.17"), v("2.17.0"));
        assert!(Version::parse("PRIVATE").is_none());
    }

    #[test]
    fn keeps_the_highest_per_prefix() {
        let mut s = SymbolVersions::default();
        for n in [
            "GLIBC_2.2.5",
            "GLIBC_2.34",
            "GLIBC_2.14",
            "GLIBC_PRIVATE",
            "GLIBCXX_3.4.29",
        ] {
            s.add(n);
        }
        assert_eq!(
            s.max("GLIBC").map(|v| v.to_string()).as_deref(),
            Some("2.34")
        );
        assert_eq!(
            s.max("GLIBCXX").map(|v| v.to_string()).as_deref(),
            Some("3.4.29")
        );
        assert!(s.max("GCC").is_none());
    }
}
