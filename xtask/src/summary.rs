//! Counting a `cargo test` run: how many tests ran, passed, failed, were ignored, and were
//! skipped (by reason). libtest's own lines are parsed (`test NAME ... ok|FAILED|ignored`);
//! cargo-nextest is not on a fresh machine. A test skips only when `AIRGAP_TEST_ALLOW_SKIP=1`
//! (else a missing prerequisite fails it): it then appends `NAME<TAB>REASON` to the file named
//! by `AIRGAP_TEST_SKIP_LOG` (`airgap_tests::skip`), since libtest hides a passing test's output.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};

use anyhow::{bail, Context, Result};

use crate::tasks::target_dir;

/// What one run's output said.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Tally {
    pub passed: usize,
    pub failed: Vec<String>,
    pub ignored: usize,
}

impl Tally {
    /// Account for one line of libtest's output.
    pub fn line(&mut self, line: &str) {
        let Some(rest) = line.strip_prefix("test ") else {
            return;
        };
        let Some((name, outcome)) = rest.rsplit_once(" ... ") else {
            return;
        };
        match outcome.trim() {
            "ok" => self.passed += 1,
            "FAILED" => self.failed.push(name.to_string()),
            o if o.starts_with("ignored") => self.ignored += 1,
            _ => {}
        }
    }
}

/// Run `cmd` (a `cargo test`), echo its output, then print the counts. Fails when cargo
/// fails or any test failed.
pub fn run_counted(mut cmd: Command) -> Result<()> {
    let log = target_dir().join("test-skips.tsv");
    if log.exists() {
        std::fs::remove_file(&log).ok();
    }
    cmd.env("AIRGAP_TEST_SKIP_LOG", &log).stdout(Stdio::piped());
    eprintln!("$ cargo test (counted)");
    let mut child = cmd.spawn().context("cannot start cargo test")?;
    let mut tally = Tally::default();
    if let Some(out) = child.stdout.take() {
        let stdout = std::io::stdout();
        for line in BufReader::new(out).lines() {
            let line = line.unwrap_or_default();
            tally.line(&line);
            let _ = writeln!(stdout.lock(), "{line}");
        }
    }
    let status = child.wait()?;
    let skips = std::fs::read_to_string(&log).unwrap_or_default();
    let mut reasons: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for line in skips.lines() {
        let (name, why) = line.split_once('\t').unwrap_or((line, ""));
        reasons
            .entry(why.to_string())
            .or_default()
            .push(name.to_string());
    }
    let skipped: usize = reasons.values().map(Vec::len).sum();
    let ran = tally.passed + tally.failed.len();
    eprintln!(
        "\ntests: {ran} ran, {} passed, {} failed, {} ignored, {skipped} skipped (counted among the passed)",
        tally.passed,
        tally.failed.len(),
        tally.ignored
    );
    for (why, names) in &reasons {
        eprintln!("  skipped {}: {why}: {}", names.len(), names.join(", "));
    }
    for name in &tally.failed {
        eprintln!("  failed: {name}");
    }
    if !status.success() || !tally.failed.is_empty() {
        bail!(
            "cargo test failed ({status}); {} failed tests",
            tally.failed.len()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn libtest_lines_are_counted() {
        let mut t = Tally::default();
        for l in [
            "running 4 tests",
            "test a::b ... ok",
            "test c ... FAILED",
            "test d ... ignored, needs the network",
            "test e ... ignored",
            "test result: FAILED. 1 passed; 1 failed; 2 ignored; 0 measured; 0 filtered out",
            "test src/lib.rs - f (line 3) ... ok",
        ] {
            t.line(l);
        }
        assert_eq!(
            t,
            Tally {
                passed: 2,
                failed: vec!["c".into()],
                ignored: 2
            }
        );
    }
}
