//! Giving a copy of an ELF file new search paths.
//!
//! Uses Debian's `patchelf` (the tool auditwheel and conda-build rely on; see `docs/elf.md` for
//! why not a pure-Rust writer yet). The input file is never modified: it is copied to the
//! output, the copy is patched, then read back and checked.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde::Serialize;

use crate::{io_err, ElfFile, Error, Result};

/// Which dynamic tag to write.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RpathKind {
    /// `DT_RPATH`: searched before `LD_LIBRARY_PATH` and inherited by the libraries the file
    /// loads. What a bundle wants: the target's own `LD_LIBRARY_PATH` cannot shadow it.
    Rpath,
    /// `DT_RUNPATH`: searched after `LD_LIBRARY_PATH`, for the file's own needs only.
    Runpath,
}

/// The `patchelf` program: `$AIRGAP_PATCHELF`, else `patchelf` on `PATH`.
pub fn patchelf_program() -> Result<PathBuf> {
    if let Some(p) = std::env::var_os("AIRGAP_PATCHELF") {
        let p = PathBuf::from(p);
        if p.is_file() {
            return Ok(p);
        }
        return Err(Error::PatchelfMissing);
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|d| d.join("patchelf"))
        .find(|p| p.is_file())
        .ok_or(Error::PatchelfMissing)
}

/// True when ELF files can be patched here.
pub fn patchelf_available() -> bool {
    patchelf_program().is_ok()
}

/// Copy `input` to `output` and give the copy exactly `entries` as its search path (joined
/// with `:`), written as `kind`. Any other search-path tag is removed, so a file that had a
/// RUNPATH ends with only an RPATH and vice versa. Empty `entries` removes the search path.
/// `input` and `output` may be the same file only if the caller owns it.
pub fn set_search_path(
    input: &Path,
    output: &Path,
    entries: &[String],
    kind: RpathKind,
) -> Result<()> {
    let program = patchelf_program()?;
    if input != output {
        if let Some(parent) = output.parent() {
            std::fs::create_dir_all(parent).map_err(io_err(parent))?;
        }
        std::fs::copy(input, output).map_err(io_err(output))?;
    }
    // Read-only sources (a conda package cache) give read-only copies.
    let meta = std::fs::metadata(output).map_err(io_err(output))?;
    let mut perms = meta.permissions();
    {
        use std::os::unix::fs::PermissionsExt;
        if perms.mode() & 0o200 == 0 {
            perms.set_mode(perms.mode() | 0o200);
            std::fs::set_permissions(output, perms).map_err(io_err(output))?;
        }
    }
    let before = ElfFile::parse(output)?;
    // Remove first, then add: patchelf rewrites an existing string in place when the new
    // one fits, which can corrupt symbol names sharing its tail (patchelf issue #162), and
    // older versions did not turn a RUNPATH into an RPATH (issue #94).
    if !before.rpath.is_empty() || before.has_runpath {
        run(&program, output, &["--remove-rpath"])?;
    }
    let joined = entries.join(":");
    if !entries.is_empty() {
        let mut args = Vec::new();
        if kind == RpathKind::Rpath {
            args.push("--force-rpath");
        }
        args.push("--set-rpath");
        args.push(joined.as_str());
        run(&program, output, &args)?;
    }
    let after = ElfFile::parse(output)?;
    let (got, other) = match kind {
        RpathKind::Rpath => (&after.rpath, after.has_runpath),
        RpathKind::Runpath => (&after.runpath, !after.rpath.is_empty()),
    };
    if got.join(":") != joined || other {
        return Err(Error::PatchVerify {
            path: output.to_path_buf(),
            expected: joined,
            found: format!("rpath={:?} runpath={:?}", after.rpath, after.runpath),
        });
    }
    Ok(())
}

fn run(program: &Path, file: &Path, args: &[&str]) -> Result<()> {
    let out = Command::new(program)
        .args(args)
        .arg(file)
        .output()
        .map_err(io_err(program))?;
    if !out.status.success() {
        return Err(Error::Patchelf {
            path: file.to_path_buf(),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        });
    }
    Ok(())
}

/// The `$ORIGIN`-relative entry that makes a file in bundle dir `from_dir` find libraries in
/// bundle dir `to_dir` (both `/`-separated, relative to the bundle's top folder):
/// `origin_relative("env/lib/python3.11/lib-dynload", "env/lib")` = `$ORIGIN/../..`.
pub fn origin_relative(from_dir: &str, to_dir: &str) -> String {
    let from: Vec<&str> = from_dir
        .split('/')
        .filter(|s| !s.is_empty() && *s != ".")
        .collect();
    let to: Vec<&str> = to_dir
        .split('/')
        .filter(|s| !s.is_empty() && *s != ".")
        .collect();
    let common = from.iter().zip(&to).take_while(|(a, b)| a == b).count();
    let mut parts = vec!["$ORIGIN".to_owned()];
    for _ in common..from.len() {
        parts.push("..".to_owned());
    }
    parts.extend(to[common..].iter().map(|s| (*s).to_owned()));
    parts.join("/")
}

/// Rewrite search-path entries of a file that point into `prefix` (an absolute directory on
/// the build machine) as `$ORIGIN`-relative entries, for a file that lives in `file_dir`
/// (absolute, inside `prefix`). Entries outside the prefix are kept as they are. This is what
/// conda-build does so that a prefix can move.
pub fn relativize_entries(entries: &[String], prefix: &Path, file_dir: &Path) -> Vec<String> {
    entries
        .iter()
        .map(|e| {
            let p = Path::new(e);
            match (p.strip_prefix(prefix), file_dir.strip_prefix(prefix)) {
                (Ok(target), Ok(from)) if p.is_absolute() => {
                    origin_relative(&from.to_string_lossy(), &target.to_string_lossy())
                }
                _ => e.clone(),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origin_relative_paths() {
        assert_eq!(origin_relative("env/bin", "env/lib"), "$ORIGIN/../lib");
        assert_eq!(origin_relative("env/lib", "env/lib"), "$ORIGIN");
        assert_eq!(
            origin_relative("env/lib/python3.11/lib-dynload", "env/lib"),
            "$ORIGIN/../.."
        );
        assert_eq!(origin_relative("", "libs"), "$ORIGIN/libs");
    }

    #[test]
    fn relativizes_only_entries_inside_the_prefix() {
        let out = relativize_entries(
            &["/opt/env/lib".into(), "/usr/lib".into(), "$ORIGIN".into()],
            Path::new("/opt/env"),
            Path::new("/opt/env/lib/python3.11/site-packages/x"),
        );
        assert_eq!(out, vec!["$ORIGIN/../../..", "/usr/lib", "$ORIGIN"]);
    }

    #[test]
    fn patches_a_copy_and_leaves_the_input_alone() {
        if !patchelf_available() {
            // No silent skips: `cargo xtask setup` installs patchelf.
            if std::env::var_os("AIRGAP_TEST_ALLOW_SKIP").is_some() {
                eprintln!("SKIPPED: patchelf is missing (AIRGAP_TEST_ALLOW_SKIP is set)");
                return;
            }
            panic!("patchelf is missing: `cargo xtask setup` installs it (AIRGAP_TEST_ALLOW_SKIP=1 skips)");
        }
        let dir = tempfile::tempdir().expect("tempdir");
        let input = std::env::current_exe().expect("exe");
        let before = std::fs::read(&input).expect("read");
        let out = dir.path().join("copy");
        set_search_path(&input, &out, &["$ORIGIN/../lib".into()], RpathKind::Rpath).expect("patch");
        let elf = ElfFile::parse(&out).expect("parse");
        assert_eq!(elf.rpath, vec!["$ORIGIN/../lib".to_owned()]);
        assert!(!elf.has_runpath);
        // Now switch it to a RUNPATH, in place on our own copy.
        set_search_path(&out, &out, &["$ORIGIN".into()], RpathKind::Runpath).expect("patch");
        let elf = ElfFile::parse(&out).expect("parse");
        assert_eq!(elf.runpath, vec!["$ORIGIN".to_owned()]);
        assert!(elf.rpath.is_empty());
        assert_eq!(std::fs::read(&input).expect("read"), before);
    }
}
