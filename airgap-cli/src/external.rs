//! Cargo-style external subcommands: `airgap foo ARGS` execs the first `airgap-foo` on PATH with
//! ARGS (it replaces airgap's process, as cargo's `exec_replace` does); `airgap --list` shows them beside the built-ins.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::CommandFactory;

use crate::report::{with_help, with_help_code};

/// Every `airgap-*` executable on PATH, first one per name.
pub fn external_commands() -> BTreeMap<String, PathBuf> {
    let mut found = BTreeMap::new();
    let Some(path) = std::env::var_os("PATH") else {
        return found;
    };
    for dir in std::env::split_paths(&path) {
        let Ok(read) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in read.flatten() {
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            let Some(sub) = name.strip_prefix("airgap-") else {
                continue;
            };
            // airgap's own helper binaries are not subcommands.
            if sub.is_empty() || sub.starts_with("unpack") {
                continue;
            }
            if is_executable(&entry.path()) {
                found.entry(sub.to_string()).or_insert(entry.path());
            }
        }
    }
    found
}

fn is_executable(path: &std::path::Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path)
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

fn builtin_names() -> Vec<String> {
    crate::cli::Cli::command()
        .get_subcommands()
        .map(|c| c.get_name().to_string())
        .collect()
}

/// `airgap --list`.
pub fn print_list() -> anyhow::Result<ExitCode> {
    println!("Installed commands:");
    let command = crate::cli::Cli::command();
    for sub in command.get_subcommands() {
        let about = sub.get_about().map(|a| a.to_string()).unwrap_or_default();
        println!("    {:<14} {about}", sub.get_name());
    }
    for (name, path) in external_commands() {
        println!("    {:<14} {}", name, path.display());
    }
    Ok(ExitCode::SUCCESS)
}

/// Run `airgap-NAME` with the remaining arguments.
pub fn run(args: Vec<OsString>) -> anyhow::Result<ExitCode> {
    let Some((name, rest)) = args.split_first() else {
        return print_list();
    };
    let name = name.to_string_lossy().into_owned();
    let commands = external_commands();
    let Some(program) = commands.get(&name) else {
        let mut candidates = builtin_names();
        candidates.extend(commands.keys().cloned());
        let help = match closest(&name, &candidates) {
            Some(best) => {
                format!("a command with a similar name exists: `{best}`; see `airgap --list`")
            }
            None => {
                "see `airgap --list` for the commands, built-in and external (airgap-NAME on PATH)"
                    .to_string()
            }
        };
        return Err(with_help_code(
            anyhow::anyhow!("no such command: `{name}`"),
            help,
            101,
        ));
    };
    let airgap = std::env::current_exe().unwrap_or_else(|_| PathBuf::from("airgap"));
    // As cargo does: the command replaces this process, so its exit status, its signals (a
    // Ctrl-C goes to it alone, not to airgap's handler, which would announce a clean-up of
    // work it is not doing) and its PID are its own.
    let error = std::process::Command::new(program)
        .args(rest)
        .env("AIRGAP", airgap)
        .exec();
    Err(with_help(
        anyhow::anyhow!("cannot run {}: {error}", program.display()),
        "check that the file is an executable program",
    ))
}

/// clap errors print as clap prints them.
pub fn handle_parse_error(error: clap::Error) -> ExitCode {
    let _ = error.print();
    match error.kind() {
        clap::error::ErrorKind::DisplayHelp
        | clap::error::ErrorKind::DisplayVersion
        | clap::error::ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => ExitCode::SUCCESS,
        _ => ExitCode::from(2),
    }
}

/// The candidate within a small edit distance, as cargo suggests.
fn closest(name: &str, candidates: &[String]) -> Option<String> {
    candidates
        .iter()
        .map(|c| (edit_distance(name, c), c))
        .filter(|(d, c)| *d <= 3 && *d < c.len())
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c.clone())
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            cur[j + 1] = (prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggests_the_nearest_command() {
        let names = vec![
            "bundle".to_string(),
            "unpack".to_string(),
            "verify".to_string(),
        ];
        assert_eq!(closest("bundel", &names).as_deref(), Some("bundle"));
        assert_eq!(closest("xyzzyqq", &names), None);
    }
}
