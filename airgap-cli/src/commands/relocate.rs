//! `airgap relocate DIR [NEWDIR]`: move an unpacked bundle and rewrite its prefixes from the
//! ones recorded at unpack time. Can be repeated any number of times.

use std::path::PathBuf;
use std::process::ExitCode;

use crate::commands::verify::archive;
use crate::ui::Ui;

const EXAMPLES: &str = "\
Examples:
  airgap relocate /opt/nlp /srv/nlp     move the tree and fix its prefixes
  airgap relocate /srv/nlp              the tree was already moved (mv): only fix prefixes";

#[derive(Debug, clap::Args)]
#[command(after_help = EXAMPLES)]
pub struct RelocateArgs {
    /// An unpacked bundle (made by `airgap unpack` or BUNDLE/unpack)
    #[arg(value_name = "DIR")]
    pub dir: PathBuf,

    /// Where to move it (must not exist, or be an empty directory); without it, fix the prefixes of DIR in place
    #[arg(value_name = "NEWDIR")]
    pub new_dir: Option<PathBuf>,
}

pub fn run(args: RelocateArgs, ui: &Ui) -> anyhow::Result<ExitCode> {
    let report =
        airgap_archive::relocate(&args.dir, args.new_dir.as_deref(), ui).map_err(archive)?;
    ui.status(
        "Relocated",
        &format!(
            "{}: {} file(s) rewritten",
            report.dest.display(),
            report.files
        ),
    );
    Ok(ExitCode::SUCCESS)
}
