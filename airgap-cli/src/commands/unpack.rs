//! `airgap unpack` (not implemented yet: fails with a clear message).

use std::process::ExitCode;

use crate::report::with_help_code;
use crate::ui::Ui;

#[derive(Debug, clap::Args)]
pub struct UnpackArgs {
    /// Arguments (not implemented yet)
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub rest: Vec<String>,
}

pub fn run(_args: UnpackArgs, _ui: &Ui) -> anyhow::Result<ExitCode> {
    Err(with_help_code(
        anyhow::anyhow!("`airgap unpack` is not implemented yet"),
        "this subcommand is part of a later milestone; see the issue tracker",
        2,
    ))
}
