//! `airgap unpack BUNDLE DEST`: verify while extracting into a staging directory beside DEST,
//! run the install steps, and rename into place only when everything succeeded.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use airgap_archive::install::installed::summary_lines;
use airgap_archive::install::unpack::apply_delta_opened;
use airgap_archive::install::unpack::{unpack_dir, unpack_dir_onto, unpack_opened, UnpackOptions};

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

    /// Where to install it (must not exist, or be empty); with --onto, where the updated
    /// tree goes (default: in place of INSTALLED)
    #[arg(value_name = "DEST", required_unless_present = "onto")]
    pub dest: Option<PathBuf>,

    /// Apply a delta bundle (`airgap bundle --since`) onto the tree it was made against:
    /// checked to be exactly that version, updated in staging, then swapped in atomically;
    /// the old tree is kept as INSTALLED.previous
    #[arg(long, value_name = "INSTALLED")]
    pub onto: Option<PathBuf>,

    /// With --onto in place: remove the old tree after a successful update
    #[arg(long, requires = "onto")]
    pub no_previous: bool,

    /// The target's own Python, for bundles whose install steps need one
    #[arg(long, value_name = "PATH")]
    pub python: Option<PathBuf>,

    /// Install the files but run none of the bundle's programs (its `Run` steps); list them
    #[arg(long)]
    pub no_run: bool,

    /// After the install steps, load every bundled library and extension and import every
    /// installed distribution's modules with the bundled interpreter: `fail` rolls the
    /// unpack back on a failure the bundle's own trial did not see, `warn` reports it
    #[arg(long, value_enum, value_name = "MODE", default_value_t = SelfTestArg::Fail)]
    pub self_test: SelfTestArg,

    /// Print what was installed (the interpreter, `activate`, kernels, commands) as JSON on
    /// stdout
    #[arg(long)]
    pub json: bool,

    #[command(flatten)]
    pub open: super::seal::OpenArgs,
}

/// `--self-test`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SelfTestArg {
    Fail,
    Warn,
    Off,
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
    let self_test = match args.self_test {
        SelfTestArg::Fail => Some(airgap_selftest::Mode::Fail),
        SelfTestArg::Warn => Some(airgap_selftest::Mode::Warn),
        SelfTestArg::Off => None,
    }
    .map(|mode| {
        Arc::new(
            airgap_selftest::SelfTest::new(mode, args.python.clone())
                .with_stop(|| crate::CANCELLED.load(std::sync::atomic::Ordering::Relaxed)),
        )
    });
    let options = UnpackOptions {
        python: args.python.clone(),
        no_run: args.no_run,
        drop_previous: args.no_previous,
        after_install: self_test
            .clone()
            .map(|t| t as Arc<dyn airgap_archive::install::unpack::AfterInstall>),
    };
    let report = match (&opened.file, &args.onto, &args.dest) {
        (Some(file), Some(onto), dest) => {
            ui.status(
                "Updating",
                &format!(
                    "{} with the delta {}",
                    dest.as_deref().unwrap_or(onto).display(),
                    args.bundle.display()
                ),
            );
            apply_delta_opened(
                &args.bundle,
                file,
                opened.decryptor(),
                onto,
                dest.as_deref(),
                &options,
                ui,
            )
        }
        (None, Some(onto), dest) => {
            ui.status(
                "Updating",
                &format!(
                    "{} with the extracted delta {}",
                    dest.as_deref().unwrap_or(onto).display(),
                    args.bundle.display()
                ),
            );
            unpack_dir_onto(&args.bundle, onto, dest.as_deref(), &options, ui)
        }
        (file, None, Some(dest)) => {
            ui.status(
                "Unpacking",
                &format!("{} into {}", args.bundle.display(), dest.display()),
            );
            match file {
                Some(file) => {
                    unpack_opened(&args.bundle, file, opened.decryptor(), dest, &options, ui)
                }
                None => unpack_dir(&args.bundle, dest, &options, ui),
            }
        }
        (_, None, None) => Err(airgap_archive::ArchiveError::Dest {
            path: args.bundle.clone(),
            reason: "no DEST given".into(),
        }),
    };
    if let Some(report) = self_test.as_ref().and_then(|t| t.report()) {
        super::self_test::print_table(&report, ui);
    }
    let report = report.map_err(archive)?;
    print_reused(&report, ui);
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

/// What an update took from its base, and where the old tree is kept.
fn print_reused(report: &airgap_archive::install::unpack::UnpackReport, ui: &Ui) {
    if let Some(r) = &report.reused {
        ui.status(
            "Reused",
            &format!(
                "{} file(s) from {} ({} hard-linked, {} copied, {} rebuilt from patches)",
                r.linked + r.copied + r.patched,
                r.base.display(),
                r.linked,
                r.copied,
                r.patched
            ),
        );
        if let Some(p) = &r.previous {
            ui.status(
                "Previous",
                &format!("the old tree is kept as {}", p.display()),
            );
        }
    }
}
