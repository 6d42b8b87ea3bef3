//! How long-running work reports progress without printing: the CLI implements [`Progress`]
//! with progress bars, tests and the unpacker with something quieter.

/// What is being counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    /// Files or entries.
    Items,
    /// Bytes.
    Bytes,
}

/// Severity of a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    /// Shown with `-v`.
    Debug,
    /// Normal progress.
    Info,
    /// Worth reading; does not stop the work.
    Warn,
}

/// Receiver of progress reports. Every method has a do-nothing default. Implementations must be
/// cheap: `advance` is called from worker threads for every file.
pub trait Progress: Sync {
    /// A new phase starts (`hashing`, `writing`), with `total` units if known (0 = unknown).
    fn begin(&self, _label: &str, _total: u64, _unit: Unit) {}
    /// `n` more units of the current phase are done.
    fn advance(&self, _n: u64) {}
    /// The current phase is over.
    fn end(&self) {}
    /// A message for the user.
    fn message(&self, _level: Level, _text: &str) {}
    /// True once the user asked to stop (Ctrl-C): long work returns
    /// [`crate::ArchiveError::Cancelled`] soon after and removes what it half wrote.
    fn is_cancelled(&self) -> bool {
        false
    }
}

/// Reports nothing.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoProgress;

impl Progress for NoProgress {}
