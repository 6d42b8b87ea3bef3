//! What a report says, and the views both renderers share: the package columns, the system
//! libraries, the commands, the prefix rewrites, and the package changes of a delta.

use std::collections::BTreeMap;

use airgap_archive::format::model::{InstallStep, Package};
use airgap_archive::{PackageRecord, PluginRecord, StepRecord};

/// Everything a report shows, gathered by the caller from the bundle and its check.
#[derive(Debug, Clone, Default)]
pub struct ReportInput {
    /// What the bundle is.
    pub bundle: Identity,
    /// The target it was checked for, and the verdict.
    pub verdict: Verdict,
    /// Warnings of the bundling and of the check.
    pub warnings: Vec<String>,
    /// The sources and the plugins that served them.
    pub sources: Vec<PluginRecord>,
    /// Every package of the manifest.
    pub packages: Vec<PackageRecord>,
    /// The install steps, in order.
    pub steps: Vec<StepRecord>,
    /// For a delta: its base and what changed.
    pub delta: Option<DeltaInput>,
}

/// The bundle file and who vouches for it.
#[derive(Debug, Clone, Default)]
pub struct Identity {
    /// The top folder inside the archive.
    pub name: String,
    /// The file's name (a split bundle: the name of its volumes' concatenation).
    pub file: String,
    /// sha256 of the file, hex.
    pub sha256: String,
    /// Size of the file in bytes.
    pub size: u64,
    /// The minisign key id of a signature that verified, when signed.
    pub signer: Option<String>,
    /// How it is encrypted, when it is (`to 2 age recipient(s)`, `age`).
    pub encrypted: Option<String>,
    /// The airgap version that wrote it.
    pub airgap_version: String,
}

/// The check's word on the target.
#[derive(Debug, Clone, Default)]
pub struct Verdict {
    /// The target, as a person reads it (`manylinux_2_28 (glibc 2.28)`).
    pub target: String,
    /// Passed, failed, or not checked (`None`).
    pub passed: Option<bool>,
    /// The verdict in a sentence.
    pub text: String,
    /// The problems of a failed verdict, one line each.
    pub problems: Vec<String>,
}

/// A delta's base, and its packages' changes when the base's packages were known.
#[derive(Debug, Clone, Default)]
pub struct DeltaInput {
    /// The base's bundle name.
    pub base_name: String,
    /// The sha256 of the base's manifest text: the tree the delta applies to.
    pub base_manifest_sha256: String,
    /// Files taken from the base (none known: `None`).
    pub reused_files: Option<u64>,
    /// What changed, when the base's manifest was at hand.
    pub changes: Option<PackageChanges>,
}

/// The packages of a new version against its base's, each side keyed by kind and name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PackageChanges {
    /// In the new version only.
    pub added: Vec<Package>,
    /// In the base only.
    pub removed: Vec<Package>,
    /// In both, at another version.
    pub changed: Vec<Changed>,
}

/// A package whose version changed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Changed {
    /// The package as it is now.
    pub package: Package,
    /// Its version in the base.
    pub from: String,
}

impl PackageChanges {
    /// What changed from `base` to `new`: a package is the same one when kind and name are.
    pub fn between(base: &[PackageRecord], new: &[PackageRecord]) -> PackageChanges {
        let key = |p: &Package| (p.kind.clone(), p.name.clone());
        let old: BTreeMap<_, &Package> =
            base.iter().map(|r| (key(&r.package), &r.package)).collect();
        let now: BTreeMap<_, &Package> =
            new.iter().map(|r| (key(&r.package), &r.package)).collect();
        let mut changes = PackageChanges::default();
        for (k, p) in &now {
            match old.get(k) {
                None => changes.added.push((*p).clone()),
                Some(b) if b.version != p.version => changes.changed.push(Changed {
                    package: (*p).clone(),
                    from: b.version.clone(),
                }),
                Some(_) => {}
            }
        }
        changes.removed = old
            .iter()
            .filter(|(k, _)| !now.contains_key(*k))
            .map(|(_, p)| (*p).clone())
            .collect();
        changes
    }

    /// Whether nothing changed.
    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.removed.is_empty() && self.changed.is_empty()
    }
}

/// The rows of a delta's change table: (change, package, base version, new version).
pub(crate) fn change_rows(c: &PackageChanges) -> Vec<(&'static str, &Package, &str, &str)> {
    let added = c.added.iter().map(|p| ("added", p, "", p.version.as_str()));
    let removed = c
        .removed
        .iter()
        .map(|p| ("removed", p, p.version.as_str(), ""));
    let changed = c.changed.iter().map(|x| {
        (
            "changed",
            &x.package,
            x.from.as_str(),
            x.package.version.as_str(),
        )
    });
    added.chain(removed).chain(changed).collect()
}

/// The columns of the package table, in both renderers.
pub const PACKAGE_COLUMNS: [&str; 7] = [
    "name", "version", "kind", "source", "licence", "purl", "sha256",
];

/// One package's cells, in [`PACKAGE_COLUMNS`]' order. A missing licence is "unknown", never
/// guessed.
pub(crate) fn package_cells(p: &Package) -> [&str; 7] {
    [
        &p.name,
        &p.version,
        &p.kind,
        &p.origin,
        p.license.as_deref().unwrap_or("unknown"),
        p.purl.as_deref().unwrap_or(""),
        p.sha256.as_deref().unwrap_or(""),
    ]
}

/// The system libraries airgap grafted from the build machine (the syslibs source's
/// packages, kind `system`), with where each came from.
pub(crate) fn system_libraries(input: &ReportInput) -> impl Iterator<Item = &Package> {
    input
        .packages
        .iter()
        .map(|r| &r.package)
        .filter(|p| p.kind == "system")
}

/// A `Run` step: what will execute on the target.
pub(crate) struct Command<'a> {
    /// Its place among all install steps, from 1.
    pub number: usize,
    pub plugin: &'a str,
    pub description: &'a str,
    pub program: &'a str,
    pub args: &'a [String],
    pub env: &'a BTreeMap<String, String>,
}

/// Every `Run` step, in the order they run.
pub(crate) fn commands(input: &ReportInput) -> impl Iterator<Item = Command<'_>> {
    input
        .steps
        .iter()
        .enumerate()
        .filter_map(|(n, s)| match &s.step {
            InstallStep::Run {
                description,
                program,
                args,
                env,
            } => Some(Command {
                number: n + 1,
                plugin: &s.plugin,
                description,
                program,
                args,
                env,
            }),
            _ => None,
        })
}

/// The prefix rewrites as (root, old prefix, files), one row per root and old prefix.
pub(crate) fn prefix_rewrites(input: &ReportInput) -> Vec<(&str, &str, usize)> {
    let mut rows: BTreeMap<(&str, &str), usize> = BTreeMap::new();
    for s in &input.steps {
        if let InstallStep::RewritePrefix {
            old_prefix,
            root,
            files,
        } = &s.step
        {
            *rows
                .entry((root.as_str(), old_prefix.as_str()))
                .or_default() += files.len();
        }
    }
    rows.into_iter().map(|((r, o), n)| (r, o, n)).collect()
}

/// The verdict's one word.
pub(crate) fn verdict_word(v: &Verdict) -> &'static str {
    match v.passed {
        Some(true) => "passed",
        Some(false) => "failed",
        None => "not checked",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(kind: &str, name: &str, version: &str) -> PackageRecord {
        PackageRecord {
            plugin: "p".into(),
            package: Package {
                name: name.into(),
                version: version.into(),
                kind: kind.into(),
                ..Default::default()
            },
        }
    }

    /// Added, removed and changed are told apart by kind and name, not by version.
    #[test]
    fn changes_are_keyed_by_kind_and_name() {
        let base = [
            rec("wheel", "a", "1"),
            rec("wheel", "b", "1"),
            rec("conda", "c", "1"),
        ];
        let new = [
            rec("wheel", "a", "2"),
            rec("conda", "c", "1"),
            rec("wheel", "d", "1"),
        ];
        let c = PackageChanges::between(&base, &new);
        assert_eq!(
            c.added.iter().map(|p| p.name.as_str()).collect::<Vec<_>>(),
            ["d"]
        );
        assert_eq!(
            c.removed
                .iter()
                .map(|p| p.name.as_str())
                .collect::<Vec<_>>(),
            ["b"]
        );
        assert_eq!(c.changed.len(), 1);
        assert_eq!(
            (
                c.changed[0].from.as_str(),
                c.changed[0].package.version.as_str()
            ),
            ("1", "2")
        );
    }
}
