//! The self-test as the unpack runs it: after the install steps, on DEST.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use airgap_archive::format::manifest::Manifest;
use airgap_archive::install::unpack::AfterInstall;

use crate::{read_record, test_tree, Report, DEFAULT_TIMEOUT_SECS};

/// What a failing self-test does to the unpack (`--self-test`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// A regression fails the unpack, which is rolled back.
    Fail,
    /// Regressions are reported; the tree stays.
    Warn,
}

/// Whether to stop (Ctrl-C).
type Stop = Arc<dyn Fn() -> bool + Send + Sync>;

/// The unpack's self-test; the report stays here for the caller to print.
pub struct SelfTest {
    mode: Mode,
    python: Option<PathBuf>,
    stop: Stop,
    report: Mutex<Option<Report>>,
}

impl std::fmt::Debug for SelfTest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SelfTest")
            .field("mode", &self.mode)
            .field("python", &self.python)
            .finish_non_exhaustive()
    }
}

impl SelfTest {
    /// A self-test in `mode`; `python` (the target's own, `unpack --python`) is used when the
    /// tree has no interpreter of its own.
    pub fn new(mode: Mode, python: Option<PathBuf>) -> SelfTest {
        SelfTest {
            mode,
            python,
            stop: Arc::new(|| false),
            report: Mutex::new(None),
        }
    }

    /// Stop starting items once `stop` says so (Ctrl-C); the unpack is then rolled back.
    pub fn with_stop(mut self, stop: impl Fn() -> bool + Send + Sync + 'static) -> SelfTest {
        self.stop = Arc::new(stop);
        self
    }

    /// Test the installed tree at `dest` (the interpreter an unpack would name, else the
    /// given one); an unreadable record is an error.
    pub fn run(&self, dest: &Path, manifest: &Manifest) -> Result<Report, String> {
        let record = read_record(dest)?;
        let installed = airgap_archive::install::installed::installed(dest, manifest);
        let python = installed
            .environments
            .iter()
            .find_map(|e| e.python.clone().filter(|p| p.is_file()))
            .or_else(|| self.python.clone());
        let timeout = record
            .as_ref()
            .map_or(DEFAULT_TIMEOUT_SECS, |r| r.timeout_secs);
        Ok(test_tree(
            dest,
            "",
            python.as_deref(),
            record.as_ref(),
            timeout,
            &*self.stop,
            crate::How::Alone,
        ))
    }

    /// The report of the last run, for the table.
    pub fn report(&self) -> Option<Report> {
        self.report.lock().ok().and_then(|r| r.clone())
    }
}

impl AfterInstall for SelfTest {
    fn check(&self, dest: &Path, manifest: &Manifest) -> Result<(), String> {
        let report = self.run(dest, manifest)?;
        if (self.stop)() {
            return Err("cancelled during the self-test".into());
        }
        let failed = report.summary();
        let regressions = !report.failed().is_empty();
        if let Ok(mut slot) = self.report.lock() {
            *slot = Some(report);
        }
        match (regressions, self.mode) {
            (true, Mode::Fail) => Err(format!("the self-test failed: {failed}")),
            _ => Ok(()),
        }
    }
}
