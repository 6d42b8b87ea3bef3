//! The pre-transfer check: will these files load on the target? (Filled in by the syslibs
//! work: see issue "System libraries".)

use std::path::PathBuf;

use airgap_plugin_api::{PythonEnvironment, TargetProfile};
use serde::Serialize;

/// One file of the bundle to check: its path in the bundle and where its bytes are now.
#[derive(Debug, Clone)]
pub struct CheckInput {
    /// Path inside the bundle.
    pub path: String,
    /// Where the file is on this machine (source file, or extracted copy).
    pub disk: PathBuf,
}

/// What the check found.
#[derive(Debug, Clone, Default, Serialize)]
pub struct CheckReport {
    /// Problems that stop the bundle from working on the target.
    pub problems: Vec<String>,
}

impl CheckReport {
    /// True when nothing stops the bundle from loading on the target.
    pub fn passed(&self) -> bool {
        self.problems.is_empty()
    }
}

/// Check files against the target profile.
pub fn check_files(
    _files: &[CheckInput],
    _target: &TargetProfile,
    _python: Option<&PythonEnvironment>,
) -> Result<CheckReport, crate::Error> {
    Ok(CheckReport::default())
}
