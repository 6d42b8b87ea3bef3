//! `airgap probe`: what this machine (the target) offers a bundle, as a profile file, JSON,
//! a code to retype on the build machine, or a sh script that finds the same without airgap.

use std::path::PathBuf;
use std::process::ExitCode;

use airgap_archive::text::escape_lines;
use airgap_probe::{code, probe, script, summary, ProbeOptions, Profile};

use crate::report::with_help;
use crate::ui::Ui;

const EXAMPLES: &str = "\
Examples (on the target):
  airgap probe --dest /opt/app --out target.toml     the profile, carried back as a file
  airgap probe                                      the facts and the code, to read off the screen
  NAME/unpack --probe                               the same, with the unpacker a bundle carries
  airgap probe --script > probe.sh                  a sh script for a machine with nothing installed

On the build machine:
  airgap bundle --target target.toml    (or --target CODE)
  airgap probe --decode CODE            what a code says

stdout: the profile (TOML; JSON with --json) unless --out; stderr: the facts and the code.";

#[derive(Debug, clap::Args)]
#[command(after_help = EXAMPLES)]
pub struct ProbeArgs {
    /// Where the bundle will be unpacked: its free space and whether it is mounted noexec
    #[arg(long, value_name = "DIR")]
    pub dest: Option<PathBuf>,

    /// Write the profile (TOML) to this file instead of stdout
    #[arg(long, value_name = "FILE", conflicts_with = "json")]
    pub out: Option<PathBuf>,

    /// The profile as JSON on stdout
    #[arg(long)]
    pub json: bool,

    /// Print a POSIX sh script that finds the same facts and prints the code, for a target
    /// without airgap
    #[arg(long, conflicts_with_all = ["dest", "out", "json", "decode"])]
    pub script: bool,

    /// Show the profile a code stands for (on the build machine)
    #[arg(long, value_name = "CODE", conflicts_with = "dest")]
    pub decode: Option<String>,
}

pub fn run(args: ProbeArgs, ui: &Ui) -> anyhow::Result<ExitCode> {
    if args.script {
        print!("{}", script::script());
        return Ok(ExitCode::SUCCESS);
    }
    let profile = match &args.decode {
        Some(c) => decode(c)?,
        None => probe(&ProbeOptions {
            dest: args.dest.clone(),
        }),
    };
    let text = if args.json {
        profile.to_json()
    } else {
        profile.to_toml()
    }
    .map_err(probe_error)?;
    match &args.out {
        Some(out) => {
            airgap_archive::output::write_file_atomic(out, text.as_bytes())
                .map_err(|e| anyhow::Error::new(e).context("cannot write the profile"))?;
            ui.status("Wrote", &format!("{}", out.display()));
        }
        None => {
            print!("{text}");
            if args.json {
                println!();
            }
        }
    }
    if !ui.quiet {
        eprintln!("{}", escape_lines(&summary(&profile)));
    }
    Ok(ExitCode::SUCCESS)
}

/// A code typed in by a person: refused with the reason when its check fails.
pub fn decode(text: &str) -> anyhow::Result<Profile> {
    code::decode(text).map_err(probe_error)
}

pub fn probe_error(e: airgap_probe::Error) -> anyhow::Error {
    match e.help() {
        Some(h) => with_help(e, h),
        None => anyhow::Error::new(e),
    }
}
