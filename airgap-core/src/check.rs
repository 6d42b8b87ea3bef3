//! The glue between the pre-transfer check (`airgap-check`) and the bundle pipeline: the
//! planned files and written bundles as check inputs. The rules live in `airgap-check`.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use airgap_archive::format::manifest::UNPACKER_PATH;
use airgap_archive::format::model as format;
use airgap_archive::FileType;
use airgap_archive::PlannedKind;
pub use airgap_check::cuda::CudaReport;
pub use airgap_check::{
    check_against, check_inputs, is_extension_module, CheckInput, CheckReport, CheckTarget,
    DepReport, FoundIn, MissingLibrary, ObjectReport, PythonMismatch, Requirement, Role,
    TargetLibs, TargetSummary, TooNew,
};
use airgap_plugin_api::TargetProfile;
use serde::Serialize;

use crate::Error;

/// A bundle file checked without unpacking it: its manifest and the check report.
#[derive(Debug, Clone, Serialize)]
pub struct BundleCheck {
    /// The bundle's top folder.
    pub bundle_name: String,
    /// The target profile recorded in its manifest.
    pub manifest_target: format::TargetProfile,
    /// The report.
    pub report: CheckReport,
}

/// Check an existing bundle: read it through the archive's strict reader (a bundle verify
/// would refuse is refused here too), extract its ELF files, scripts and wheel metadata to a
/// temporary dir, and check them against `target` (default: the manifest's target profile).
pub fn check_bundle(
    bundle: &Path,
    target: Option<CheckTarget>,
    strict: bool,
) -> Result<BundleCheck, Error> {
    let file = airgap_archive::install::read::open_bundle(bundle)?;
    check_bundle_opened(bundle, &file, None, target, strict)
}

/// A bundle file read once for its report: its manifest, and the check of a full bundle
/// or a delta's word on its base (a delta is checked with its base, on `unpack --onto`).
#[derive(Debug)]
pub struct Judged {
    /// The manifest, without its records.
    pub manifest: airgap_archive::Manifest,
    /// The check of a full bundle against its recorded target.
    pub check: Option<CheckReport>,
    /// A delta's base.
    pub delta: Option<airgap_archive::format::delta::DeltaMeta>,
}

/// Read a bundle file through a descriptor from `open_bundle` (the one a signature was
/// checked on; age-encrypted bundles through `decryptor`) in one pass of the strict reader,
/// for `airgap inspect --report`: the manifest, and the check `airgap check BUNDLE` makes.
pub fn judge_opened(
    bundle: &Path,
    file: &airgap_archive::install::read::BundleFile,
    decryptor: Option<&dyn airgap_archive::Decryptor>,
) -> Result<Judged, Error> {
    let tmp = scratch()?;
    let read = pick(bundle, file, decryptor, tmp.path(), true)?;
    let manifest = read.manifest.meta.clone();
    if read.delta.is_some() {
        return Ok(Judged {
            manifest,
            check: None,
            delta: read.delta,
        });
    }
    let check = judge(read, tmp.path(), None, false)?;
    Ok(Judged {
        manifest,
        check: Some(check.report),
        delta: None,
    })
}

/// A directory for the files the check reads.
fn scratch() -> Result<tempfile::TempDir, Error> {
    tempfile::Builder::new()
        .prefix("airgap-check-")
        .tempdir()
        .map_err(|e| Error::Io {
            path: std::env::temp_dir(),
            cause: e,
        })
}

/// The strict reader's pass, extracting into `root` what the check reads.
fn pick(
    bundle: &Path,
    file: &airgap_archive::install::read::BundleFile,
    decryptor: Option<&dyn airgap_archive::Decryptor>,
    root: &Path,
    delta: bool,
) -> Result<airgap_archive::VerifyReport, Error> {
    let want = |rel: &str, mode: u32, head: &[u8]| carried(rel) && read_by_check(rel, mode, head);
    Ok(airgap_archive::install::read::pick_opened(
        bundle,
        file,
        decryptor,
        root,
        &want,
        delta,
        &airgap_archive::NoProgress,
    )?)
}

/// [`check_bundle`] over a descriptor from `open_bundle`.
fn check_bundle_opened(
    bundle: &Path,
    file: &airgap_archive::install::read::BundleFile,
    decryptor: Option<&dyn airgap_archive::Decryptor>,
    target: Option<CheckTarget>,
    strict: bool,
) -> Result<BundleCheck, Error> {
    let tmp = scratch()?;
    let read = pick(bundle, file, decryptor, tmp.path(), false)?;
    judge(read, tmp.path(), target, strict)
}

/// The check of what [`pick`] read, its files in `root`.
fn judge(
    read: airgap_archive::VerifyReport,
    root: &Path,
    target: Option<CheckTarget>,
    strict: bool,
) -> Result<BundleCheck, Error> {
    // The check keeps its inputs (one a carried file) in memory; the records come from disk.
    let records = read.manifest.files.iter().collect::<Result<Vec<_>, _>>()?;
    let manifest = read.manifest.meta;
    let target = recorded_target(&manifest.target, target, strict)?;
    let rewritten = rewritten_prefixes(&manifest.install_steps);
    let inputs: Vec<CheckInput> = records
        .iter()
        .filter(|f| f.kind != FileType::Dir && carried(&f.path))
        .map(|f| {
            let disk = root.join(OsStr::from_bytes(&f.path_bytes()));
            let picked = f.kind == FileType::File && disk.is_file();
            CheckInput {
                path: f.path.clone(),
                disk: if picked { disk } else { PathBuf::new() },
                link: match f.kind {
                    FileType::Symlink => f
                        .target_bytes()
                        .map(|t| String::from_utf8_lossy(&t).into_owned()),
                    _ => None,
                },
                // What airgap grafted from the build machine, as the manifest records it.
                grafted: f
                    .package
                    .as_deref()
                    .is_some_and(|p| p.starts_with("system:")),
                rewritten: rewritten.get(&f.path).cloned().unwrap_or_default(),
            }
        })
        .collect();
    let python = manifest.python.as_ref().map(crate::convert::api_python);
    let report = check_against(&inputs, &target, python.as_ref())?;
    Ok(BundleCheck {
        bundle_name: manifest.bundle_name.clone(),
        manifest_target: manifest.target.clone(),
        report,
    })
}

/// Whether the check judges a bundle path: the environment's files and the carried unpacker,
/// not the rest of airgap's own `.airgap/` (the manifest).
fn carried(path: &str) -> bool {
    !path.starts_with(".airgap/") || path == UNPACKER_PATH
}

/// Check what a configuration would bundle (`airgap check -c airgap.toml`, and `airgap
/// bundle` before it writes), before anything is written: the planned files and the unpacker
/// the bundle will carry, against `target` (default: the configuration's `[target]`).
pub fn check_planned_against(
    planned: &crate::Planned,
    target: Option<CheckTarget>,
    strict: bool,
    unpacker: Option<&Path>,
) -> Result<CheckReport, Error> {
    let (mut inputs, mut total) = plan_inputs(&planned.plan, &planned.manifest.install_steps)?;
    if let Some(unpacker) = unpacker {
        // `NAME/unpack` runs it on the target: it must load there like any program.
        total += 1;
        inputs.push(CheckInput {
            path: UNPACKER_PATH.to_owned(),
            disk: unpacker.to_path_buf(),
            link: None,
            grafted: false,
            rewritten: Vec::new(),
        });
    }
    let target = recorded_target(&planned.manifest.target, target, strict)?;
    let python = planned
        .manifest
        .python
        .as_ref()
        .map(crate::convert::api_python);
    Ok(check_inputs(&inputs, total, &target, python.as_ref())?)
}

/// The target a check judges against: the one given, completed by what the manifest records,
/// or the recorded one alone.
fn recorded_target(
    recorded: &format::TargetProfile,
    given: Option<CheckTarget>,
    strict: bool,
) -> Result<CheckTarget, Error> {
    let recorded = crate::convert::api_target(recorded);
    let mut target = match given {
        Some(mut t) => {
            merge_profile(&mut t.profile, &recorded);
            t
        }
        None => CheckTarget::from_profile(&recorded)?,
    };
    target.strict = strict;
    Ok(target)
}

/// The planned files the check reads, sorted by path: ELF files (by content), scripts (files
/// starting with `#!`), wheels and `.dist-info/WHEEL` files; and the number of regular files in the plan. The other files
/// do not matter to the check (a library the loader finds must be ELF) and are not kept: a
/// path and a source path per file would be the largest thing in memory while it runs.
pub(crate) fn plan_inputs(
    plan: &airgap_archive::Plan,
    steps: &[airgap_archive::StepRecord],
) -> Result<(Vec<CheckInput>, usize), Error> {
    use rayon::prelude::*;
    let rewritten = rewritten_prefixes(steps);
    use std::sync::atomic::{AtomicUsize, Ordering};
    let total = AtomicUsize::new(0);
    let mut failed = None;
    let mut inputs: Vec<CheckInput> = plan
        .iter_files()
        .filter_map(|f| f.map_err(|e| failed = Some(e)).ok())
        .filter(|f| f.kind != PlannedKind::Dir)
        .par_bridge()
        .filter_map(|f| {
            if let PlannedKind::Symlink { target } = f.kind {
                // Links matter to the loader (`libfoo.so.1 -> libfoo.so.1.2`, `lib64 -> lib`).
                return Some(CheckInput {
                    path: f.path,
                    disk: PathBuf::new(),
                    link: Some(target),
                    grafted: false,
                    rewritten: Vec::new(),
                });
            }
            total.fetch_add(1, Ordering::Relaxed);
            let disk = f.source?;
            let wanted = read_by_check(&f.path, f.mode, &first_bytes(&disk));
            let grafted = f
                .package
                .as_deref()
                .is_some_and(|p| p.starts_with("system:"));
            wanted.then(|| CheckInput {
                rewritten: rewritten.get(&f.path).cloned().unwrap_or_default(),
                path: f.path,
                disk,
                link: None,
                grafted,
            })
        })
        .collect();
    if let Some(e) = failed {
        return Err(e.into());
    }
    inputs.sort_by(|a, b| a.path.cmp(&b.path));
    Ok((inputs, total.into_inner()))
}

/// Per bundle path, the build machine's prefixes that unpacking rewrites in it.
fn rewritten_prefixes(steps: &[airgap_archive::StepRecord]) -> HashMap<String, Vec<String>> {
    let mut out: HashMap<String, Vec<String>> = HashMap::new();
    for record in steps {
        if let format::InstallStep::RewritePrefix {
            old_prefix, files, ..
        } = &record.step
        {
            for f in files {
                out.entry(f.path.clone())
                    .or_default()
                    .push(old_prefix.clone());
            }
        }
    }
    out
}

/// Whether a bundle path is inside a Python library dir (`lib/pythonX.Y/`, site-packages
/// included): its modules are imported, never run by their `#!` line (CPython's own,
/// executable `cgi.py` says `#! /usr/local/bin/python`).
fn in_python_lib(path: &str) -> bool {
    let parts: Vec<&str> = path.split('/').collect();
    parts
        .windows(2)
        .any(|w| w[0] == "lib" && w[1].starts_with("python"))
}

/// Whether the check reads a file's content, by its bundle path, mode and first bytes: ELF
/// files, wheels and their metadata, and scripts. A `#!` line counts only in an executable
/// file outside a Python library dir (see [`in_python_lib`]). One rule for planned files and
/// for the entries of a written bundle.
fn read_by_check(path: &str, mode: u32, head: &[u8]) -> bool {
    let executable = mode & 0o111 != 0 && !in_python_lib(path);
    path.ends_with(".whl")
        || path.ends_with(".dist-info/WHEEL")
        || airgap_elf::is_elf_bytes(head)
        || (executable && head.starts_with(b"#!"))
}

/// Whether a file's first bytes say ELF: the check's reading, also what a Finish-stage
/// plugin's ELF-and-links pages ([`crate::earlier`]) keep.
pub(crate) fn starts_as_elf(path: &Path) -> bool {
    airgap_elf::is_elf_bytes(&first_bytes(path))
}

/// The first 4 bytes of a file (fewer when it is shorter; none when it cannot be read).
fn first_bytes(path: &Path) -> Vec<u8> {
    let mut head = [0u8; 4];
    match std::fs::File::open(path).and_then(|mut f| airgap_io::read_full(&mut f, &mut head)) {
        Ok(n) => head[..n].to_vec(),
        Err(_) => Vec::new(),
    }
}

/// Fill what the user did not give from the manifest's profile (Python ABI, platforms).
fn merge_profile(profile: &mut TargetProfile, manifest: &TargetProfile) {
    if profile.python.is_none() {
        profile.python = manifest.python.clone();
    }
    if profile.abi.is_none() {
        profile.abi = manifest.abi.clone();
    }
    if profile.implementation.is_none() {
        profile.implementation = manifest.implementation.clone();
    }
    if profile.arch.is_none() {
        profile.arch = manifest.arch.clone();
    }
}
