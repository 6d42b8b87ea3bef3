//! Everything the user sees on stderr: messages, progress bars. stdout is for data only.

use std::io::IsTerminal;
use std::sync::Mutex;

use airgap_archive::progress::{Level, Progress, Unit};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::cli::GlobalArgs;

/// The terminal, as the commands use it.
pub struct Ui {
    pub verbose: u8,
    pub quiet: bool,
    bars: bool,
    bar: Mutex<Option<ProgressBar>>,
    pub plugin_dirs: Vec<std::path::PathBuf>,
}

impl Ui {
    pub fn new(global: &GlobalArgs) -> Ui {
        let bars = !global.quiet
            && !global.no_progress
            && std::io::stderr().is_terminal()
            && std::env::var_os("CI").is_none();
        Ui {
            verbose: global.verbose,
            quiet: global.quiet,
            bars,
            bar: Mutex::new(None),
            plugin_dirs: global.plugin_dirs.clone(),
        }
    }

    /// A step the user should see (`bundling conda from /opt/env`).
    pub fn status(&self, verb: &str, text: &str) {
        if !self.quiet {
            self.println(&format!("{verb:>12} {text}"));
        }
    }

    /// A warning, always shown unless `-q`.
    pub fn warn(&self, text: &str) {
        if !self.quiet {
            self.println(&format!("warning: {text}"));
        }
    }

    /// A detail shown with `-v`.
    pub fn debug(&self, text: &str) {
        if self.verbose > 0 && !self.quiet {
            self.println(&format!("       debug {text}"));
        }
    }

    /// A line on stderr that does not tear the progress bar.
    pub fn println(&self, line: &str) {
        let line = escape_lines(line);
        let guard = self.bar.lock().unwrap_or_else(|e| e.into_inner());
        match guard.as_ref() {
            Some(bar) => bar.suspend(|| eprintln!("{line}")),
            None => eprintln!("{line}"),
        }
    }
}

impl Progress for Ui {
    fn begin(&self, label: &str, total: u64, unit: Unit) {
        if !self.bars {
            if self.verbose > 0 && !self.quiet {
                self.println(&format!("{label:>12} ..."));
            }
            return;
        }
        let bar = if total > 0 {
            ProgressBar::new(total)
        } else {
            ProgressBar::new_spinner()
        };
        bar.set_draw_target(ProgressDrawTarget::stderr());
        let template = match (unit, total > 0) {
            (Unit::Bytes, true) => {
                "{prefix:>12.cyan.bold} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} {eta}"
            }
            (Unit::Items, true) => "{prefix:>12.cyan.bold} [{bar:30}] {pos}/{len} {wide_msg}",
            (Unit::Bytes, false) => "{prefix:>12.cyan.bold} {spinner} {bytes} {bytes_per_sec}",
            (Unit::Items, false) => "{prefix:>12.cyan.bold} {spinner} {pos} {wide_msg}",
        };
        if let Ok(style) = ProgressStyle::with_template(template) {
            bar.set_style(style.progress_chars("=> "));
        }
        bar.set_prefix(label.to_string());
        bar.enable_steady_tick(std::time::Duration::from_millis(120));
        let mut guard = self.bar.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(old) = guard.replace(bar) {
            old.finish_and_clear();
        }
    }

    fn advance(&self, n: u64) {
        if !self.bars {
            return;
        }
        let guard = self.bar.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(bar) = guard.as_ref() {
            bar.inc(n);
        }
    }

    fn end(&self) {
        let mut guard = self.bar.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(bar) = guard.take() {
            bar.finish_and_clear();
        }
    }

    fn is_cancelled(&self) -> bool {
        crate::CANCELLED.load(std::sync::atomic::Ordering::Relaxed)
    }

    fn message(&self, level: Level, text: &str) {
        match level {
            Level::Debug => self.debug(text),
            Level::Info => self.status("", text),
            Level::Warn => self.warn(text),
        }
    }
}

pub use airgap_archive::text::{escape, escape_lines};
