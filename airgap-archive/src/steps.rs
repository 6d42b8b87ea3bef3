//! The install steps of a manifest, checked for what no target could carry out safely. One
//! check for every reader: `verify` refuses exactly the steps `unpack` refuses, with the same
//! message (what depends on the destination or on `--python` is checked by unpack alone).

use airgap_plugin_api::InstallStep;

use crate::error::ArchiveError;
use crate::manifest::check_rel;
use crate::manifest::{FileType, StreamedManifest};

/// Longest prefix a `RewritePrefix` step may name: no path on Linux is longer (`PATH_MAX`),
/// and the prefix is what a rewrite keeps in memory besides its window.
pub const MAX_PREFIX: usize = 4096;

/// How a step is named in messages.
pub(crate) fn description(step: &InstallStep) -> String {
    match step {
        InstallStep::Run { description, .. } => description.clone(),
        InstallStep::RewritePrefix { root, .. } => format!("rewrite prefix of {root}"),
        _ => "a step this airgap does not know".into(),
    }
}

/// Refuse a step that would reach outside the bundle, rewrite anything but a regular file of
/// the bundle, or run a program from outside it.
pub(crate) fn check_steps(manifest: &StreamedManifest) -> Result<(), ArchiveError> {
    // The files a step names are looked up in the records on disk, a few reads each.
    let kind = |path: &str| -> Result<Option<FileType>, ArchiveError> {
        Ok(manifest.files.find(path.as_bytes())?.map(|(_, r)| r.kind))
    };
    for (i, rec) in manifest.meta.install_steps.iter().enumerate() {
        let step_err = |reason: String| ArchiveError::Step {
            index: i + 1,
            description: description(&rec.step),
            reason,
        };
        match &rec.step {
            InstallStep::RewritePrefix {
                old_prefix,
                root,
                files,
            } => {
                let root_clean = root.trim_matches('/');
                if !root_clean.is_empty() && root_clean != "." {
                    check_rel(root_clean.as_bytes()).map_err(|r| {
                        step_err(format!("root {root:?} is not inside the bundle ({r})"))
                    })?;
                }
                if old_prefix.is_empty() {
                    return Err(step_err("empty prefix".into()));
                }
                if old_prefix.len() > MAX_PREFIX {
                    return Err(step_err(format!(
                        "the prefix is {} bytes, longer than any path ({MAX_PREFIX} bytes)",
                        old_prefix.len()
                    )));
                }
                for f in files {
                    check_rel(f.path.as_bytes()).map_err(|r| {
                        step_err(format!("file {:?} is not inside the bundle ({r})", f.path))
                    })?;
                    if kind(&f.path)? != Some(FileType::File) {
                        return Err(step_err(format!(
                            "file {:?} is not a file of the bundle",
                            f.path
                        )));
                    }
                    // A slot shorter than the prefix it holds is a broken record.
                    if let Some(capacity) = f.capacity.filter(|&c| c < old_prefix.len()) {
                        return Err(step_err(format!(
                            "file {:?} records room for {capacity} bytes, less than the {} bytes of the prefix it holds",
                            f.path,
                            old_prefix.len()
                        )));
                    }
                }
            }
            InstallStep::Run { program, .. } => {
                if program.contains('/') && !program.starts_with('/') && !program.starts_with('{') {
                    check_rel(program.trim_start_matches("./").as_bytes()).map_err(|r| {
                        step_err(format!(
                            "program {program:?} is not inside the bundle ({r})"
                        ))
                    })?;
                }
                if program.starts_with('/') {
                    return Err(step_err(format!("program {program:?} is an absolute path on the target; use a bare name or a path inside the bundle")));
                }
                // `{dest}/...` must stay inside DEST; `{python}` is the target's Python itself.
                if let Some(rest) = program.strip_prefix("{dest}") {
                    let rel = rest.trim_start_matches('/');
                    if rest.is_empty() || !rest.starts_with('/') || rel.is_empty() {
                        return Err(step_err(format!(
                            "program {program:?} is not a file inside the bundle"
                        )));
                    }
                    check_rel(rel.as_bytes()).map_err(|r| {
                        step_err(format!(
                            "program {program:?} is not inside the bundle ({r})"
                        ))
                    })?;
                } else if program.starts_with("{python}") && program != "{python}" {
                    return Err(step_err(format!(
                        "program {program:?}: only `{{python}}` itself may be run from the target's Python"
                    )));
                }
            }
            // A step of a newer API this reader was not taught: never run half-understood.
            _ => {
                return Err(step_err(
                    "this airgap does not know this kind of step; upgrade airgap".into(),
                ))
            }
        }
    }
    Ok(())
}
