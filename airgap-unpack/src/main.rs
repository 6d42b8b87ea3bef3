//! `airgap-unpack`: the unpacker carried inside every bundle (`BUNDLE/.airgap/airgap-unpack`,
//! started by the `BUNDLE/unpack` launcher). It needs no plugins and no airgap installation:
//! built static, it runs on any x86-64 Linux.
//!
//! ```text
//! airgap-unpack --from-dir BUNDLE_DIR DEST [--python PATH] [--no-run]   (what BUNDLE/unpack runs)
//! airgap-unpack --from-dir BUNDLE_DIR --from BUNDLE.tar.gz DEST [...]   (BUNDLE/unpack --from)
//! airgap-unpack BUNDLE.tar.gz DEST [--python PATH] [--no-run]
//! airgap-unpack --run NAME.run [DEST | --list | --verify | --extract-only DIR]   (sh NAME.run)
//! ```

mod probe;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use airgap_archive::install::installed::summary_lines;
use airgap_archive::install::unpack::apply_delta;
use airgap_archive::install::unpack::{
    unpack, unpack_dir, unpack_dir_onto, UnpackOptions, UnpackReport,
};
use airgap_archive::progress::{Level, Progress, Unit};
use airgap_archive::text::escape_lines;
use airgap_archive::ArchiveError;

mod run;

const USAGE: &str = "usage: unpack DEST [--python PATH] [--no-run] [--self-test=MODE] [-q]
       unpack --from BUNDLE.tar.gz DEST [--python PATH] [--no-run] [--self-test=MODE] [-q]
       unpack --from DELTA.tar.gz --onto INSTALLED [DEST] [--no-previous] [...]
       airgap-unpack BUNDLE DEST [--python PATH] [--no-run] [-q]

Verifies every file of the bundle against its manifest, installs it into a staging
directory beside DEST, runs its install steps and renames it to DEST only when all of
that succeeded. DEST must not exist (or be an empty directory).

  --from BUNDLE   read the bundle archive this folder came in, in place: extract only
                  NAME/unpack and NAME/.airgap/airgap-unpack from it, and the disk
                  holds the archive and DEST, not a third, extracted copy; a bundle
                  in volumes is read in place from its first, NAME.tar.gz.001
  --python PATH   the target's Python, for bundles whose install steps need one
  --no-run        install the files but run none of the bundle's programs; list them
  --self-test=fail|warn|off  after the install steps, load every bundled library and
                  extension and import every installed distribution's modules with the
                  bundled interpreter; fail (the default) removes the install again when
                  something fails that did not when the bundle was made, warn reports it
  --onto INSTALLED  apply a delta bundle (airgap bundle --since) onto the tree it was made
                  against: checked to be that version, updated in one atomic exchange, the
                  old tree kept as INSTALLED.previous (or into a new DEST, when given)
  --no-previous   with --onto in place: remove the old tree after the update
  -q, --quiet     print only errors
  --probe [DEST]  print this machine's target profile and code (for `airgap bundle --target`)

Each program the bundle runs is shown before it runs, as the unpacking user.";

/// Phase names on stderr; nothing per file.
struct Quiet(bool);

impl Progress for Quiet {
    fn begin(&self, label: &str, _total: u64, _unit: Unit) {
        if !self.0 {
            eprintln!("{label:>12} ...");
        }
    }
    fn message(&self, level: Level, text: &str) {
        match level {
            Level::Warn => eprintln!("warning: {}", escape_lines(text)),
            Level::Info if !self.0 => eprintln!("{:>12} {}", "", escape_lines(text)),
            _ => {}
        }
    }
}

fn main() -> ExitCode {
    let mut args = std::env::args_os().skip(1);
    let mut from_dir: Option<PathBuf> = None;
    let mut from: Option<PathBuf> = None;
    let mut run_file: Option<PathBuf> = None;
    let mut run_mode = run::Mode::Install;
    let mut python: Option<PathBuf> = None;
    let mut quiet = false;
    let mut no_run = false;
    let mut onto: Option<PathBuf> = None;
    let mut drop_previous = false;
    let mut self_test = Some(airgap_selftest::Mode::Fail);
    let mut positional: Vec<PathBuf> = Vec::new();
    while let Some(a) = args.next() {
        match a.to_str() {
            Some("-h") | Some("--help") => {
                println!(
                    "{}",
                    if run_file.is_some() {
                        run::USAGE
                    } else {
                        USAGE
                    }
                );
                return ExitCode::SUCCESS;
            }
            Some("--from-dir") => from_dir = args.next().map(PathBuf::from),
            Some("--from") => from = args.next().map(PathBuf::from),
            Some("--run") => run_file = args.next().map(PathBuf::from),
            Some("--list") if run_file.is_some() => run_mode = run::Mode::List,
            Some("--verify") if run_file.is_some() => run_mode = run::Mode::Verify,
            Some("--extract-only") if run_file.is_some() => {
                run_mode = run::Mode::ExtractOnly;
                positional.extend(args.next().map(PathBuf::from));
            }
            Some("--python") => python = args.next().map(PathBuf::from),
            Some("-q") | Some("--quiet") => quiet = true,
            Some("--no-run") => no_run = true,
            Some(s) if s == "--self-test" || s.starts_with("--self-test=") => {
                let mode = match s.strip_prefix("--self-test=") {
                    Some(m) => Some(m.to_string()),
                    None => args.next().and_then(|m| m.to_str().map(str::to_string)),
                };
                self_test = match mode.as_deref() {
                    Some("fail") => Some(airgap_selftest::Mode::Fail),
                    Some("warn") => Some(airgap_selftest::Mode::Warn),
                    Some("off") => None,
                    other => {
                        eprintln!(
                            "error: --self-test takes fail, warn or off, not {}\n\n{USAGE}",
                            escape_lines(other.unwrap_or("nothing"))
                        );
                        return ExitCode::from(2);
                    }
                };
            }
            Some("--onto") => onto = args.next().map(PathBuf::from),
            Some("--no-previous") => drop_previous = true,
            Some("--probe") => {
                return probe::run(positional.pop().or_else(|| args.next().map(PathBuf::from)))
            }
            Some(s) if s.starts_with('-') && s.len() > 1 => {
                let usage = if run_file.is_some() {
                    run::USAGE
                } else {
                    USAGE
                };
                eprintln!("error: unknown option {s}\n\n{usage}");
                return ExitCode::from(2);
            }
            _ => positional.push(PathBuf::from(a)),
        }
    }
    let self_test =
        self_test.map(|mode| Arc::new(airgap_selftest::SelfTest::new(mode, python.clone())));
    let options = UnpackOptions {
        python,
        no_run,
        drop_previous,
        after_install: self_test
            .clone()
            .map(|t| t as Arc<dyn airgap_archive::install::unpack::AfterInstall>),
    };
    let progress = Quiet(quiet);
    let result = match (&onto, run_file.is_some(), &from, positional.as_slice()) {
        (Some(onto), false, Some(bundle), []) => {
            apply_delta(bundle, onto, None, &options, &progress)
        }
        (Some(onto), false, Some(bundle), [dest]) => {
            apply_delta(bundle, onto, Some(dest), &options, &progress)
        }
        (Some(onto), false, None, [bundle]) if from_dir.is_none() => {
            apply_delta(bundle, onto, None, &options, &progress)
        }
        (Some(onto), false, None, [bundle, dest]) if from_dir.is_none() => {
            apply_delta(bundle, onto, Some(dest), &options, &progress)
        }
        (Some(onto), false, None, rest) if from_dir.is_some() && rest.len() < 2 => {
            let dir = from_dir.as_deref().unwrap_or(std::path::Path::new("."));
            unpack_dir_onto(
                dir,
                onto,
                rest.first().map(|p| p.as_path()),
                &options,
                &progress,
            )
        }
        (Some(_), ..) => {
            eprintln!("error: --onto applies a delta bundle: unpack --from DELTA.tar.gz --onto INSTALLED [DEST]\n\n{USAGE}");
            return ExitCode::from(2);
        }
        (None, ..) => install(
            run_file,
            from,
            from_dir,
            &positional,
            run_mode,
            &options,
            &progress,
        ),
    };
    if let Some(report) = self_test.as_ref().and_then(|t| t.report()) {
        print_self_test(&report, quiet);
    }
    report(result, quiet)
}

/// The self-test's table (even with `-q` when something failed).
fn print_self_test(report: &airgap_selftest::Report, quiet: bool) {
    let failed = !report.failed().is_empty();
    if quiet && !failed {
        return;
    }
    // A tree of plain files has no interpreter: nothing to load.
    let Some(headline) = report.headline() else {
        return;
    };
    eprintln!("   self-test {}", escape_lines(&headline));
    eprint!("{}", report.table());
}

/// Install a whole bundle, as the arguments say.
fn install(
    run_file: Option<PathBuf>,
    from: Option<PathBuf>,
    from_dir: Option<PathBuf>,
    positional: &[PathBuf],
    run_mode: run::Mode,
    options: &UnpackOptions,
    progress: &Quiet,
) -> Result<UnpackReport, ArchiveError> {
    let (options, progress) = (options, progress);
    Ok(match (run_file, from, from_dir, positional) {
        (Some(file), _, _, rest) if run_mode.takes_dir() == (rest.len() == 1) => {
            if run_mode == run::Mode::Install {
                unpack(&file, &rest[0], options, progress)?
            } else {
                run::run(run_mode, &file, rest.first(), progress)?;
                std::process::exit(0);
            }
        }
        (Some(_), ..) => {
            eprintln!("error: expected a destination directory\n\n{}", run::USAGE);
            std::process::exit(2);
        }
        (None, Some(bundle), _, [dest]) => unpack(&bundle, dest, options, progress)?,
        (None, None, Some(dir), [dest]) => unpack_dir(&dir, dest, options, progress)?,
        (None, None, None, [bundle, dest]) => unpack(bundle, dest, options, progress)?,
        _ => {
            eprintln!("error: expected a destination directory\n\n{USAGE}");
            std::process::exit(2);
        }
    })
}

/// Print what was installed, or the error.
fn report(result: Result<UnpackReport, ArchiveError>, quiet: bool) -> ExitCode {
    match result {
        Ok(report) => {
            if !quiet {
                eprintln!(
                    "   installed {} entries ({} bytes) into {}, {} install step(s) run",
                    report.entries,
                    report.bytes,
                    report.dest.display(),
                    report.steps
                );
            }
            if let (false, Some(r)) = (quiet, &report.reused) {
                eprintln!(
                    "   from base {}: {} file(s) hard-linked, {} copied, {} rebuilt from patches",
                    r.base.display(),
                    r.linked,
                    r.copied,
                    r.patched
                );
                if let Some(p) = &r.previous {
                    eprintln!("    previous tree kept as {}", p.display());
                }
            }
            if !quiet {
                for (label, text) in summary_lines(&report.installed, 12) {
                    eprintln!("{label:>12} {}", escape_lines(&text));
                }
            }
            if !report.not_run.is_empty() {
                eprintln!(
                    "warning: {} install step(s) not run (--no-run); the installation may be incomplete without them:",
                    report.not_run.len()
                );
                for step in &report.not_run {
                    eprintln!("  - {}", escape_lines(step));
                }
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            // Errors name entries from the bundle: escaped before the terminal.
            eprintln!("error: {}", escape_lines(&e.to_string()));
            if let ArchiveError::Mismatch { problems, .. }
            | ArchiveError::WrongBase {
                files: problems, ..
            } = &e
            {
                for p in problems.iter().take(50) {
                    eprintln!("  {}", escape_lines(&p.to_string()));
                }
            }
            if let Some(help) = e.help() {
                eprintln!("help: {}", escape_lines(&help));
            }
            ExitCode::FAILURE
        }
    }
}
