//! Error printing: `error: ...` with the chain of causes, then `help: ...` lines.

use std::fmt;

/// An error with advice for the user. Wrap any error with [`with_help`]; the printer finds it
/// anywhere in the chain.
#[derive(Debug)]
pub struct Helpful {
    pub error: anyhow::Error,
    /// One `help:` line each.
    pub help: Vec<String>,
    /// Process exit code for this failure.
    pub code: u8,
}

impl fmt::Display for Helpful {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#}", self.error)
    }
}

impl std::error::Error for Helpful {}

/// Attach a `help:` line to an error.
pub fn with_help(error: impl Into<anyhow::Error>, help: impl Into<String>) -> anyhow::Error {
    anyhow::Error::new(Helpful {
        error: error.into(),
        help: vec![help.into()],
        code: 1,
    })
}

/// Attach a `help:` line and a specific exit code.
pub fn with_help_code(
    error: impl Into<anyhow::Error>,
    help: impl Into<String>,
    code: u8,
) -> anyhow::Error {
    with_helps_code(error, vec![help.into()], code)
}

/// Attach several `help:` lines (one per kind of problem) and a specific exit code.
pub fn with_helps_code(
    error: impl Into<anyhow::Error>,
    help: Vec<String>,
    code: u8,
) -> anyhow::Error {
    anyhow::Error::new(Helpful {
        error: error.into(),
        help,
        code,
    })
}

/// Turn a core error into one with its advice attached.
pub fn core(error: airgap_core::Error) -> anyhow::Error {
    match error.help() {
        Some(help) => with_help(error, help),
        None => anyhow::Error::new(error),
    }
}

/// Print an error and its causes to stderr, then any help lines.
pub fn print_error(err: &anyhow::Error) {
    let mut helps = Vec::new();
    let mut messages: Vec<String> = Vec::new();
    for cause in err.chain() {
        if let Some(h) = cause.downcast_ref::<Helpful>() {
            helps.extend(h.help.iter().cloned());
            // Helpful displays its inner error with its own causes: stop here.
            let text = h.to_string();
            if messages.last().map(|m| !m.ends_with(&text)).unwrap_or(true) {
                messages.push(text);
            }
            break;
        }
        let text = cause.to_string();
        if messages.last().map(|m| !m.contains(&text)).unwrap_or(true) {
            messages.push(text);
        }
    }
    // Errors name files and entries from the bundle: escaped before the terminal.
    eprintln!("error: {}", crate::ui::escape_lines(&messages.join(": ")));
    for help in helps {
        eprintln!("help: {}", crate::ui::escape_lines(&help));
    }
}

/// The exit code for an error (1 unless a [`Helpful`] says otherwise).
pub fn exit_code(err: &anyhow::Error) -> u8 {
    err.chain()
        .find_map(|c| c.downcast_ref::<Helpful>().map(|h| h.code))
        .unwrap_or(1)
}
