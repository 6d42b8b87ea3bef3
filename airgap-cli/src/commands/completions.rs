//! `airgap completions SHELL`: shell completion scripts.

use std::process::ExitCode;

use clap::CommandFactory;
use clap_complete::Shell;

#[derive(Debug, clap::Args)]
#[command(
    after_help = "Example:\n  airgap completions bash > ~/.local/share/bash-completion/completions/airgap"
)]
pub struct CompletionsArgs {
    /// The shell
    pub shell: Shell,
}

pub fn run(args: CompletionsArgs) -> anyhow::Result<ExitCode> {
    let mut command = crate::cli::Cli::command();
    clap_complete::generate(args.shell, &mut command, "airgap", &mut std::io::stdout());
    Ok(ExitCode::SUCCESS)
}
