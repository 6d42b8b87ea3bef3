//! The self-test (docs/self-test.md): after an unpack's install steps, load every bundled ELF
//! library (`ctypes.CDLL`: the real loader, every symbol bound) and extension module, and
//! import every top-level module of every installed distribution, each in its own
//! `python -I -B` process with a time limit, with the bundled interpreter. At bundle time the
//! same trial on the build machine records what fails there too
//! (`airgap_archive::format::selftest`), so the target reports only regressions.
//!
//! No printing: [`Report::table`] is text for the CLI and the carried unpacker to print.
#![deny(missing_docs)]

mod discover;
mod hook;
mod run;

use std::path::{Path, PathBuf};

pub use airgap_archive::format::selftest::{
    Expected, ItemKind, SelfTestRecord, SELF_TEST_FORMAT, SELF_TEST_PATH,
};
pub use discover::{discover, Item};
pub use hook::{Mode, SelfTest};
pub use run::{run_items, screen, Outcome};

/// The time limit of one item when nothing else is said.
pub const DEFAULT_TIMEOUT_SECS: u64 = 120;

/// How an item fared, judged against the record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Status {
    /// It loaded.
    Pass,
    /// It failed here and did not at bundle time: a regression.
    Fail(String),
    /// It failed, as it did at bundle time.
    Expected(String),
}

/// One row of the table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    /// What was tried.
    pub item: Item,
    /// How it went.
    pub status: Status,
}

/// The self-test of one tree.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// The interpreter used; `None`: there was none, nothing was tried.
    pub python: Option<PathBuf>,
    /// Every item, in discovery order.
    pub rows: Vec<Row>,
}

impl Report {
    /// The regressions.
    pub fn failed(&self) -> Vec<&Row> {
        self.rows
            .iter()
            .filter(|r| matches!(r.status, Status::Fail(_)))
            .collect()
    }

    /// Counts of (passed, failed, expected).
    pub fn counts(&self) -> (usize, usize, usize) {
        let mut c = (0, 0, 0);
        for r in &self.rows {
            match r.status {
                Status::Pass => c.0 += 1,
                Status::Fail(_) => c.1 += 1,
                Status::Expected(_) => c.2 += 1,
            }
        }
        c
    }

    /// The line above the table: the counts and the interpreter; none when nothing was tried
    /// (no interpreter).
    pub fn headline(&self) -> Option<String> {
        let python = self.python.as_ref()?;
        let (pass, fail, expected) = self.counts();
        Some(format!(
            "{pass} loaded, {fail} failed, {expected} expected to fail (as at bundle time), with {}",
            python.display()
        ))
    }

    /// The table a person reads: a line per kind with its counts, then a line per item that
    /// did not pass, its reason escaped (it is a program's output).
    pub fn table(&self) -> String {
        use std::fmt::Write;
        let mut out = String::new();
        for kind in [ItemKind::Library, ItemKind::Extension, ItemKind::Module] {
            let rows: Vec<&Row> = self.rows.iter().filter(|r| r.item.kind == kind).collect();
            let pass = rows.iter().filter(|r| r.status == Status::Pass).count();
            let _ = writeln!(
                out,
                "  {:<10} {:>5} tried, {:>5} loaded, {:>3} failed, {:>3} expected",
                kind.as_str(),
                rows.len(),
                pass,
                rows.iter()
                    .filter(|r| matches!(r.status, Status::Fail(_)))
                    .count(),
                rows.iter()
                    .filter(|r| matches!(r.status, Status::Expected(_)))
                    .count(),
            );
        }
        for r in &self.rows {
            let (word, reason) = match &r.status {
                Status::Pass => continue,
                Status::Fail(reason) => ("FAILED", reason),
                Status::Expected(reason) => ("expected", reason),
            };
            let _ = writeln!(
                out,
                "  {word:<8} {} {}: {}",
                r.item.kind.as_str(),
                airgap_archive::text::escape(&r.item.name),
                airgap_archive::text::escape(reason)
            );
        }
        out
    }

    /// One line naming every regression, for an error message.
    pub fn summary(&self) -> String {
        self.failed()
            .iter()
            .map(|r| {
                format!(
                    "{} {} ({})",
                    r.item.kind.as_str(),
                    r.item.name,
                    match &r.status {
                        Status::Fail(reason) => reason.as_str(),
                        _ => "",
                    }
                )
            })
            .collect::<Vec<_>>()
            .join("; ")
    }

    /// The record of a trial: every failure, as expected on the target.
    pub fn record(&self, timeout_secs: u64) -> SelfTestRecord {
        SelfTestRecord {
            format: SELF_TEST_FORMAT,
            timeout_secs,
            expected: self
                .rows
                .iter()
                .filter_map(|r| match &r.status {
                    Status::Fail(reason) | Status::Expected(reason) => Some(Expected {
                        kind: r.item.kind,
                        item: r.item.name.clone(),
                        reason: reason.clone(),
                    }),
                    Status::Pass => None,
                })
                .collect(),
        }
    }
}

/// How the items run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum How {
    /// Each in its own process: the self-test on the target.
    Alone,
    /// Imports screened by a few shared processes, what fails there run again alone
    /// ([`screen`]): the trial at bundle time, where only failures are recorded.
    Screened,
}

/// The self-test of the tree at `root` with `python`: discover, run, judge against `record`.
/// `prefix` is the bundle path of `root` (items are named by bundle path, as the record
/// names them: `env/lib/libz.so.1`); empty for an installed tree, whose root is the
/// bundle's. `stop` ends it early (Ctrl-C): what did not run fails as "not run".
pub fn test_tree(
    root: &Path,
    prefix: &str,
    python: Option<&Path>,
    record: Option<&SelfTestRecord>,
    timeout_secs: u64,
    stop: &(dyn Fn() -> bool + Sync),
    how: How,
) -> Report {
    let Some(python) = python else {
        return Report::default();
    };
    let items = discover(root, prefix, python);
    let outcomes = match how {
        How::Alone => run_items(root, python, &items, timeout_secs, stop),
        How::Screened => screen(root, python, &items, timeout_secs, stop),
    };
    let rows = items
        .into_iter()
        .zip(outcomes)
        .map(|(item, outcome)| {
            let status = match outcome {
                Outcome::Loaded => Status::Pass,
                Outcome::Failed(reason) => match record {
                    Some(r) if r.expects(item.kind, &item.name) => Status::Expected(reason),
                    _ => match needs_display(&item, &reason) {
                        Some(lib) => Status::Expected(format!(
                            "{reason} (needs {lib}, of the display or GPU stack a bundle leaves to the target)"
                        )),
                        None => Status::Fail(reason),
                    },
                },
            };
            Row { item, status }
        })
        .collect();
    Report {
        python: Some(python.to_path_buf()),
        rows,
    }
}

/// The display or GPU library a failure comes from, if it does: the item is one
/// (`libtk8.6.so`), or the library the loader says is missing is one (`libX11.so.6: cannot
/// open shared object file: ...`, as dlopen words it, after Python's `OSError: ` or
/// `ImportError: `). Such an item needs a display or a GPU, not a fix of the bundle.
fn needs_display(item: &Item, reason: &str) -> Option<String> {
    let file = item.name.rsplit('/').next().unwrap_or(&item.name);
    if item.kind != ItemKind::Module && airgap_elf::policy::display_or_driver(file) {
        return Some(file.to_string());
    }
    let (before, _) = reason.split_once(": cannot open shared object file")?;
    let lib = before.rsplit([' ', ':']).next()?.trim();
    airgap_elf::policy::display_or_driver(lib).then(|| lib.to_string())
}

/// The record an installed tree carries, if any (`DEST/.airgap/self-test.toml`).
pub fn read_record(dest: &Path) -> Result<Option<SelfTestRecord>, String> {
    let path = dest.join(SELF_TEST_PATH);
    match std::fs::read_to_string(&path) {
        Ok(text) => SelfTestRecord::from_toml(&text)
            .map(Some)
            .map_err(|e| format!("{}: {e}", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(format!("{}: {e}", path.display())),
    }
}

#[cfg(test)]
mod tests {
    use super::{needs_display, Item, ItemKind};

    fn item(kind: ItemKind, name: &str) -> Item {
        Item {
            kind,
            name: name.into(),
            target: name.into(),
        }
    }

    #[test]
    fn a_missing_display_library_is_expected_and_others_are_not() {
        let ext = item(ItemKind::Extension, "py/lib/x/_tkinter.so");
        assert_eq!(
            needs_display(&ext, "ImportError: libX11.so.6: cannot open shared object file: No such file or directory").as_deref(),
            Some("libX11.so.6")
        );
        assert_eq!(
            needs_display(
                &ext,
                "OSError: libcuda.so.1: cannot open shared object file: No such file or directory"
            )
            .as_deref(),
            Some("libcuda.so.1")
        );
        assert_eq!(
            needs_display(
                &item(ItemKind::Library, "env/lib/libfontconfig.so.1"),
                "OSError: libexpat.so.1: cannot open shared object file: No such file or directory"
            )
            .as_deref(),
            Some("libfontconfig.so.1")
        );
        assert_eq!(
            needs_display(&ext, "ImportError: libpq.so.5: cannot open shared object file: No such file or directory"),
            None
        );
    }
}
