//! `airgap self-test DEST`: the self-test an unpack runs, again, on an installed tree
//! (docs/self-test.md); and the table both print.

use std::path::PathBuf;
use std::process::ExitCode;

use airgap_selftest::{Mode, Report, SelfTest};

use crate::commands::verify::archive;
use crate::report;
use crate::ui::Ui;

const EXAMPLES: &str = "\
Examples:
  airgap self-test /opt/nlp
  airgap self-test /opt/app --python /usr/bin/python3.11   a tree with no interpreter of its own

Exit status 1 when something fails that did not fail when the bundle was made.";

#[derive(Debug, clap::Args)]
#[command(after_help = EXAMPLES)]
pub struct SelfTestArgs {
    /// An installed bundle (made by `airgap unpack` or BUNDLE/unpack)
    #[arg(value_name = "DEST")]
    pub dest: PathBuf,

    /// The Python to load with when the tree has none of its own
    #[arg(long, value_name = "PATH")]
    pub python: Option<PathBuf>,
}

pub fn run(args: SelfTestArgs, ui: &Ui) -> anyhow::Result<ExitCode> {
    let manifest = airgap_archive::open_manifest(&args.dest).map_err(archive)?;
    ui.status("Testing", &args.dest.display().to_string());
    let test = SelfTest::new(Mode::Fail, args.python.clone());
    let report = test.run(&args.dest, &manifest.meta).map_err(|e| {
        report::with_help(
            anyhow::anyhow!(e),
            "the tree's .airgap/self-test.toml does not read: unpack the bundle again",
        )
    })?;
    print_table(&report, ui);
    Ok(match report.failed().is_empty() {
        true => ExitCode::SUCCESS,
        false => ExitCode::from(1),
    })
}

/// The self-test's table on stderr (even with `-q` when something failed), with the
/// interpreter it used.
pub fn print_table(report: &Report, ui: &Ui) {
    let failed = !report.failed().is_empty();
    if ui.quiet && !failed {
        return;
    }
    let Some(headline) = report.headline() else {
        // A tree of plain files: nothing to load (with `--python`, its libraries would be).
        ui.debug("self-test: the tree has no Python interpreter and none was given (--python): nothing was loaded");
        return;
    };
    ui.status("Self-test", &headline);
    for line in report.table().lines() {
        ui.println(line);
    }
}
