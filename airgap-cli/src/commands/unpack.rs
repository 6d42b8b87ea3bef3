//! `airgap unpack BUNDLE DEST`: verify while extracting into a staging directory beside DEST,
//! run the install steps, and rename into place only when everything succeeded.

use std::path::PathBuf;
use std::process::ExitCode;

use airgap_archive::install::installed::summary_lines;
use airgap_archive::install::unpack::{unpack_dir, unpack_opened, UnpackOptions};

/// Commands listed by name after an unpack; the rest are counted (`--json` has them all).
const MAX_COMMANDS: usize = 12;

use crate::commands::verify::archive;
use crate::ui::Ui;

const EXAMPLES: &str = "\
Examples:
  airgap unpack nlp.tar.gz /opt/nlp
  airgap unpack wheels.tar.gz /opt/app --python /usr/bin/python3.11
  airgap unpack ./nlp /opt/nlp           an already extracted bundle
  airgap unpack nlp.tar.gz.age /opt/nlp -i me.age.key --trusted-key team.minisign.pub
  airgap unpack nlp.tar.gz.age /opt/nlp --passphrase-file pass.txt

DEST must not exist, or be an empty directory. Nothing is left behind on failure.
Each program a bundle runs (its install steps) is shown before it runs, as the unpacking user;
`airgap inspect` lists them beforehand, `--no-run` installs the files and runs none.
With --trusted-key, the signature is checked before anything is read. An encrypted bundle is
decrypted twice: once to authenticate all of it, before anything is written, then to install.";

#[derive(Debug, clap::Args)]
#[command(after_help = EXAMPLES)]
pub struct UnpackArgs {
    /// The bundle (.tar.gz, .tar.zst, the first of its volumes NAME.tar.gz.001, or an
    /// extracted bundle directory)
    #[arg(value_name = "BUNDLE")]
    pub bundle: PathBuf,

    /// Where to install it (must not exist, or be empty)
    #[arg(value_name = "DEST")]
    pub dest: PathBuf,

    /// The target's own Python, for bundles whose install steps need one
    #[arg(long, value_name = "PATH")]
    pub python: Option<PathBuf>,

    /// Install the files but run none of the bundle's programs (its `Run` steps); list them
    #[arg(long)]
    pub no_run: bool,

    /// Print what was installed (the interpreter, `activate`, kernels, commands) as JSON on
    /// stdout
    #[arg(long)]
    pub json: bool,

    #[command(flatten)]
    pub open: super::seal::OpenArgs,
}

pub fn run(args: UnpackArgs, ui: &Ui) -> anyhow::Result<ExitCode> {
    let opened = super::seal::prepare(&args.open, &args.bundle, ui)?;
    if let (Some(keys), Some(file)) = (&opened.keys, &opened.file) {
        ui.status(
            "Decrypting",
            &format!("{} (authenticating all of it first)", args.bundle.display()),
        );
        let size = keys
            .0
            .authenticate_opened(&args.bundle, file)
            .map_err(super::seal::seal)?;
        ui.debug(&format!("{size} bytes of plaintext authenticated"));
    }
    let options = UnpackOptions {
        python: args.python.clone(),
        no_run: args.no_run,
    };
    ui.status(
        "Unpacking",
        &format!("{} into {}", args.bundle.display(), args.dest.display()),
    );
    let report = match &opened.file {
        Some(file) => unpack_opened(
            &args.bundle,
            file,
            opened.decryptor(),
            &args.dest,
            &options,
            ui,
        ),
        None => unpack_dir(&args.bundle, &args.dest, &options, ui),
    }
    .map_err(archive)?;
    ui.status(
        "Installed",
        &format!(
            "{} entries ({} bytes), verified, into {}; {} install step(s) run",
            report.entries,
            report.bytes,
            report.dest.display(),
            report.steps
        ),
    );
    if !report.not_run.is_empty() {
        ui.warn(&format!(
            "{} install step(s) not run (--no-run); the installation may be incomplete without them:",
            report.not_run.len()
        ));
        for step in &report.not_run {
            ui.println(&format!("  - {step}"));
        }
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else if !ui.quiet {
        // Names of kernels and commands come from the bundle: `status` escapes them.
        for (label, text) in summary_lines(&report.installed, MAX_COMMANDS) {
            ui.status(label, &text);
        }
    }
    Ok(ExitCode::SUCCESS)
}
