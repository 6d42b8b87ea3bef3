//! Typed errors of the host. Each names the file or plugin at fault; [`Error::help`] says what
//! to do about it.

use std::path::PathBuf;

/// Everything that can go wrong in the host.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Placeholder until the host lands.
    #[error("{0}")]
    Other(String),
}

impl Error {
    /// Advice for the user, printed as a `help:` line.
    pub fn help(&self) -> Option<String> {
        None
    }
}

#[allow(dead_code)]
fn _unused(_: PathBuf) {}
