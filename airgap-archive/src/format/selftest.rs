//! `.airgap/self-test.toml`: what the trial at bundle time saw fail on the build machine, so
//! that the self-test on the target reports only what broke on the way (docs/self-test.md).
//! A module that needs a display or a GPU fails to import on both sides: expected, not a
//! regression. Absent from a bundle made without a trial: then every failure counts.

use serde::{Deserialize, Serialize};

/// Where the record is, below the bundle's top folder.
pub const SELF_TEST_PATH: &str = ".airgap/self-test.toml";
/// The record's format version.
pub const SELF_TEST_FORMAT: u32 = 1;

/// What a self-test item is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ItemKind {
    /// An ELF shared library, loaded with every symbol bound (`RTLD_NOW`).
    Library,
    /// A Python extension module, imported by its module name.
    Extension,
    /// A top-level module of an installed distribution, imported.
    Module,
}

impl ItemKind {
    /// Its name in the record and the table.
    pub fn as_str(self) -> &'static str {
        match self {
            ItemKind::Library => "library",
            ItemKind::Extension => "extension",
            ItemKind::Module => "module",
        }
    }
}

/// One item that failed on the build machine too.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Expected {
    /// Library, extension or module.
    pub kind: ItemKind,
    /// A bundle path (libraries, extensions) or a module name.
    pub item: String,
    /// What it said there.
    pub reason: String,
}

/// The record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SelfTestRecord {
    /// [`SELF_TEST_FORMAT`].
    pub format: u32,
    /// The time limit of one item, in seconds.
    pub timeout_secs: u64,
    /// The items that failed at bundle time, sorted.
    #[serde(default)]
    pub expected: Vec<Expected>,
}

impl SelfTestRecord {
    /// The record as written into a bundle: TOML, items sorted, so the same trial gives the
    /// same bytes.
    pub fn to_toml(&self) -> String {
        let mut sorted = self.clone();
        sorted
            .expected
            .sort_by(|a, b| (a.kind, &a.item).cmp(&(b.kind, &b.item)));
        let body = toml::to_string(&sorted).unwrap_or_default();
        format!(
            "# airgap self-test record (docs/self-test.md): what failed at bundle time too\n{body}"
        )
    }

    /// Read a record; a newer format or a malformed one is an error that says which.
    pub fn from_toml(text: &str) -> Result<SelfTestRecord, String> {
        let record: SelfTestRecord = toml::from_str(text).map_err(|e| e.to_string())?;
        if record.format != SELF_TEST_FORMAT {
            return Err(format!(
                "format {} (this airgap reads format {SELF_TEST_FORMAT})",
                record.format
            ));
        }
        Ok(record)
    }

    /// Whether `item` of `kind` failed at bundle time too.
    pub fn expects(&self, kind: ItemKind, item: &str) -> bool {
        self.expected
            .iter()
            .any(|e| e.kind == kind && e.item == item)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_reads_back_and_a_newer_format_is_refused() {
        let record = SelfTestRecord {
            format: SELF_TEST_FORMAT,
            timeout_secs: 120,
            expected: vec![Expected {
                kind: ItemKind::Module,
                item: "tkinter".into(),
                reason: "no display".into(),
            }],
        };
        let back = SelfTestRecord::from_toml(&record.to_toml()).expect("reads");
        assert_eq!(back, record);
        assert!(back.expects(ItemKind::Module, "tkinter"));
        assert!(!back.expects(ItemKind::Library, "tkinter"));
        let newer = record.to_toml().replace("format = 1", "format = 2");
        assert!(SelfTestRecord::from_toml(&newer)
            .unwrap_err()
            .contains("format 2"));
    }
}
