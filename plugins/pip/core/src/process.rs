//! Running pip and Python: output to log files, cancellation, readable failures.

use std::cell::Cell;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use airgap_plugin_api::{Host, PluginError};

/// Runs commands, keeping each one's output in `logs/NN-what.{out,err}`.
pub struct Runner<'h, 'a> {
    host: &'h Host<'a>,
    logs: PathBuf,
    counter: Cell<u32>,
}

/// A finished command.
#[derive(Debug)]
pub struct Finished {
    /// Exit status was zero.
    pub success: bool,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
    /// The file holding standard error.
    pub log: PathBuf,
}

impl Finished {
    /// The part of pip's output worth showing to a person: the last lines of stderr without
    /// progress bars (the whole output is logged at debug level).
    pub fn tail(&self, lines: usize) -> String {
        let text = if self.stderr.trim().is_empty() {
            &self.stdout
        } else {
            &self.stderr
        };
        let kept: Vec<&str> = text
            .lines()
            .map(str::trim_end)
            .filter(|l| !l.trim().is_empty() && !l.contains('━'))
            .collect();
        let start = kept.len().saturating_sub(lines);
        let mut out = String::new();
        if start > 0 {
            out.push_str("...\n");
        }
        out.push_str(&kept[start..].join("\n"));
        out
    }

    /// The requirement pip could not find (`No matching distribution found for X`).
    pub fn missing_requirement(&self) -> Option<String> {
        let marker = "No matching distribution found for ";
        self.stderr
            .lines()
            .chain(self.stdout.lines())
            .filter_map(|l| l.split_once(marker).map(|(_, r)| r.trim().to_string()))
            .rfind(|r| !r.is_empty())
    }
}

impl<'h, 'a> Runner<'h, 'a> {
    /// A runner writing its logs under `logs`.
    pub fn new(host: &'h Host<'a>, logs: PathBuf) -> Runner<'h, 'a> {
        Runner {
            host,
            logs,
            counter: Cell::new(0),
        }
    }

    /// Run `cmd` to completion. `what` names the step in log file names and messages. Only a
    /// failure to start, or cancellation, is an error; a non-zero exit is in [`Finished`].
    pub fn run(&self, what: &str, cmd: &mut Command) -> Result<Finished, PluginError> {
        let n = self.counter.get() + 1;
        self.counter.set(n);
        let slug: String = what
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
            .collect();
        let out_path = self.logs.join(format!("{n:02}-{slug}.out"));
        let err_path = self.logs.join(format!("{n:02}-{slug}.err"));
        let create = |p: &Path| {
            std::fs::File::create(p).map_err(|e| {
                PluginError::new(format!("cannot write the log file {}: {e}", p.display()))
            })
        };
        let out = create(&out_path)?;
        let err = create(&err_path)?;
        self.host.debug(&format!("running {}", render(cmd)));
        let program = cmd.get_program().to_string_lossy().into_owned();
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .map_err(|e| {
                PluginError::new(format!("cannot run {program} to {what}: {e}"))
                    .with_help("check that the interpreter exists and is executable")
            })?;
        let status = loop {
            if self.host.is_cancelled() {
                let _ = child.kill();
                let _ = child.wait();
                return Err(PluginError::cancelled());
            }
            match child.try_wait() {
                Ok(Some(status)) => break status,
                Ok(None) => std::thread::sleep(Duration::from_millis(50)),
                Err(e) => {
                    return Err(PluginError::new(format!(
                        "lost track of {program} while trying to {what}: {e}"
                    )))
                }
            }
        };
        let read = |p: &Path| {
            std::fs::read(p)
                .map(|b| String::from_utf8_lossy(&b).into_owned())
                .unwrap_or_default()
        };
        let finished = Finished {
            success: status.success(),
            stdout: read(&out_path),
            stderr: read(&err_path),
            log: err_path,
        };
        if !finished.success {
            self.host.debug(&format!(
                "{what} failed ({status}); full output in {}:\n{}",
                finished.log.display(),
                finished.tail(30)
            ));
        }
        Ok(finished)
    }
}

/// A command as a person would type it (for `-v` logs).
pub fn render(cmd: &Command) -> String {
    let mut parts = vec![cmd.get_program().to_string_lossy().into_owned()];
    for arg in cmd.get_args() {
        let arg = arg.to_string_lossy();
        if arg.is_empty() || arg.contains(|c: char| c.is_whitespace() || c == '\'' || c == '"') {
            parts.push(format!("'{}'", arg.replace('\'', "'\\''")));
        } else {
            parts.push(arg.into_owned());
        }
    }
    parts.join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn finished(stderr: &str) -> Finished {
        Finished {
            success: false,
            stdout: String::new(),
            stderr: stderr.into(),
            log: PathBuf::from("/tmp/x.err"),
        }
    }

    #[test]
    fn finds_the_missing_requirement() {
        let f = finished(
            "ERROR: Could not find a version that satisfies the requirement docopt>=0.6 (from foo) (from versions: none)\n\
             ERROR: No matching distribution found for docopt>=0.6\n",
        );
        assert_eq!(f.missing_requirement().as_deref(), Some("docopt>=0.6"));
        // pip 18 has no ERROR: prefix.
        let f = finished("No matching distribution found for ujson\n");
        assert_eq!(f.missing_requirement().as_deref(), Some("ujson"));
        assert_eq!(finished("ERROR: boom").missing_requirement(), None);
    }

    #[test]
    fn tail_keeps_the_last_lines_without_progress_bars() {
        let f = finished("a\n   ━━━━━━━━ 1.7/1.7 MB\n\nb\nc\nd\n");
        let t = f.tail(2);
        assert_eq!(t, "...\nc\nd");
    }
}
