//! Installing a bundle: verify while extracting into a staging directory beside DEST, rewrite
//! prefixes for the final path, rename into place, run the install steps there, and remove
//! everything again if any of it fails. DEST is either complete or absent.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::fs;
use std::io::{self, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::format::model::InstallStep;
use filetime::FileTime;

use crate::error::ArchiveError;
use crate::format::delta::Delta;
use crate::format::delta::Reused;
use crate::format::manifest::check_rel;
use crate::format::manifest::{FileRecord, FileType, Manifest, StreamedManifest, MANIFEST_PATH};
use crate::install::delta::{exchange, Base, Filler, Patches};
use crate::install::dest::check_dest;
use crate::install::read::{
    check_bundle, reuse_refusal, unlisted, Decryptor, Hooks, ReusedCursor, Target,
};
use crate::install::relocate::{
    check_fits, groups, prefix_for, rewrite_all, write_state, PrefixRecord, PrefixState,
};
use crate::install::stale::{lock_dir, make_writable, remove_stale, Name};
use crate::install::steps::description;
use crate::progress::{Level, Progress, Unit};

/// How to install.
#[derive(Debug, Clone, Default)]
pub struct UnpackOptions {
    /// The target's own Python, for steps that use `{python}`.
    pub python: Option<PathBuf>,
    /// Install the files (and rewrite prefixes) but run no program: the `Run` steps are
    /// reported in [`UnpackReport::not_run`] instead (`unpack --no-run`).
    pub no_run: bool,
    /// A delta applied in place: remove the replaced tree after success instead of keeping
    /// it as `INSTALLED.previous` (`--no-previous`).
    pub drop_previous: bool,
    /// What proves the installed tree works, run after the install steps (the self-test);
    /// its failure rolls the install back like a failed step.
    pub after_install: Option<std::sync::Arc<dyn AfterInstall>>,
}

/// A check of the installed tree, after its install steps and before the unpack succeeds:
/// a trait, so that this crate runs no policy of its own (the self-test lives in
/// `airgap-selftest`). Not run when `--no-run` left steps undone: the tree is not finished.
pub trait AfterInstall: Send + Sync + std::fmt::Debug {
    /// Check DEST; an error (what failed, for the user) rolls the install back.
    fn check(&self, dest: &Path, manifest: &Manifest) -> Result<(), String>;
}

/// What was installed.
#[derive(Debug, Clone, serde::Serialize)]
pub struct UnpackReport {
    /// The destination (absolute).
    pub dest: PathBuf,
    /// Entries installed.
    pub entries: u64,
    /// Bytes of file content.
    pub bytes: u64,
    /// Install steps run.
    pub steps: usize,
    /// The `Run` steps not run (`--no-run`), as [`crate::text::describe_step`] shows them.
    pub not_run: Vec<String>,
    /// The paths a user needs next: interpreters, `activate`, kernels, commands.
    pub installed: crate::install::installed::Installed,
    /// A delta: files taken from the base (hard-linked, copied), and where the replaced
    /// tree was kept (in place, unless dropped).
    pub reused: Option<Reuse>,
}

/// What applying a delta took from its base.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Reuse {
    /// The base.
    pub base: PathBuf,
    /// Files hard-linked to the base's (same content, mode and mtime).
    pub linked: u64,
    /// Files copied from the base.
    pub copied: u64,
    /// Files rebuilt from a patch against the base's file.
    pub patched: u64,
    /// The replaced tree, kept (`None`: a new DEST, or dropped).
    pub previous: Option<PathBuf>,
}

/// A staging directory that is removed unless it was renamed into place. While it exists its
/// directory is `flock`ed, so that another unpack can tell a live staging directory from one a
/// killed unpack left behind.
struct Staging {
    path: PathBuf,
    keep: bool,
    _lock: fs::File,
}

impl Drop for Staging {
    fn drop(&mut self) {
        if !self.keep {
            make_writable(&self.path);
            let _ = fs::remove_dir_all(&self.path);
        }
    }
}

/// `.NAME.airgap-staging-` for DEST `.../NAME`: staging directories are this plus a PID.
fn staging_prefix(dest: &Path) -> String {
    let name = dest
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    format!(".{name}.airgap-staging-")
}

fn new_staging(dest: &Path, progress: &dyn Progress) -> Result<Staging, ArchiveError> {
    let parent = dest.parent().unwrap_or(Path::new("/"));
    for stale in remove_stale(parent, &staging_prefix(dest), Name::Pid) {
        progress.message(
            Level::Info,
            &format!(
                "removed {}, left by an unpack that was killed",
                stale.display()
            ),
        );
    }
    let path = parent.join(format!("{}{}", staging_prefix(dest), std::process::id()));
    fs::create_dir(&path).map_err(|e| ArchiveError::io("creating", &path, e))?;
    let lock = match lock_dir(&path) {
        Ok(Some(lock)) => lock,
        Ok(None) => {
            let _ = fs::remove_dir(&path);
            return Err(ArchiveError::io(
                "locking",
                &path,
                io::Error::other("another process holds its lock"),
            ));
        }
        Err(e) => {
            let _ = fs::remove_dir(&path);
            return Err(ArchiveError::io("locking", &path, e));
        }
    };
    // With -v, the line tests wait for before they interrupt an unpack.
    progress.message(Level::Debug, &format!("staging in {}", path.display()));
    Ok(Staging {
        path,
        keep: false,
        _lock: lock,
    })
}

fn uses_python(step: &InstallStep) -> bool {
    match step {
        InstallStep::Run {
            program, args, env, ..
        } => {
            program.contains("{python}")
                || args.iter().any(|a| a.contains("{python}"))
                || env.values().any(|v| v.contains("{python}"))
        }
        InstallStep::RewritePrefix { .. } => false,
    }
}

/// What depends on the destination or on `--python`; everything the manifest alone shows is
/// checked by the reader ([`crate::install::steps::check_steps`]), for verify and unpack alike.
fn preflight(
    manifest: &StreamedManifest,
    dest: &Path,
    options: &UnpackOptions,
    from_tree: bool,
) -> Result<(), ArchiveError> {
    crate::install::space::check_free_space(dest, manifest, from_tree)?;
    preflight_steps(manifest, dest, options)
}

/// What the steps need of DEST and of `--python`.
fn preflight_steps(
    manifest: &StreamedManifest,
    dest: &Path,
    options: &UnpackOptions,
) -> Result<(), ArchiveError> {
    for (i, rec) in manifest.meta.install_steps.iter().enumerate() {
        if uses_python(&rec.step) && options.python.is_none() {
            return Err(ArchiveError::Step {
                index: i + 1,
                description: description(&rec.step),
                reason: "it needs the target's Python: pass --python PATH".into(),
            });
        }
        if let InstallStep::RewritePrefix {
            old_prefix,
            root,
            files,
        } = &rec.step
        {
            check_fits(files, old_prefix, &prefix_for(dest, root), dest)?;
        }
    }
    Ok(())
}

/// Install a bundle archive into `dest` (which must not exist, or be an empty directory).
pub fn unpack(
    bundle: &Path,
    dest: &Path,
    options: &UnpackOptions,
    progress: &dyn Progress,
) -> Result<UnpackReport, ArchiveError> {
    let file = crate::install::read::open_bundle(bundle)?;
    unpack_opened(bundle, &file, None, dest, options, progress)
}

/// [`unpack`] over a descriptor from [`crate::install::read::open_bundle`] (the one the signature
/// was checked on): the bundle is never opened again by name.
pub fn unpack_opened(
    bundle: &Path,
    file: &crate::install::read::BundleFile,
    decryptor: Option<&dyn Decryptor>,
    dest: &Path,
    options: &UnpackOptions,
    progress: &dyn Progress,
) -> Result<UnpackReport, ArchiveError> {
    let (dest, existed, mut parents) = check_dest(dest)?;
    check_detached(bundle, file)?;
    let staging = new_staging(&dest, progress)?;
    let (staging, manifest, entries, bytes) = extract_verified(
        (bundle, file, decryptor),
        staging,
        progress,
        Hooks {
            on_manifest: Some(&mut |m, delta| {
                refuse_delta(bundle, delta)?;
                preflight(m, &dest, options, false)
            }),
            reuse: None,
        },
    )?;
    let report = install(
        staging,
        &manifest.meta,
        (&dest, Place::New { existed }),
        options,
        (entries, bytes),
        progress,
    )?;
    parents.keep = true;
    Ok(report)
}

/// A delta needs its base: refused where a whole bundle is expected.
fn refuse_delta(bundle: &Path, delta: Option<&Delta>) -> Result<(), ArchiveError> {
    match delta {
        Some(d) => Err(ArchiveError::DeltaNeedsBase {
            bundle: bundle.into(),
            base_name: d.meta.base_name.clone(),
            base: d.meta.base.clone(),
        }),
        None => Ok(()),
    }
}

/// Apply a delta onto the installed base `onto` ([`crate::install::delta`]): into `dest`
/// when given (a new tree; `onto` is only read), else in place.
fn unpack_onto_opened(
    (bundle, file, decryptor): (
        &Path,
        &crate::install::read::BundleFile,
        Option<&dyn Decryptor>,
    ),
    onto: &Path,
    dest: Option<&Path>,
    options: &UnpackOptions,
    progress: &dyn Progress,
) -> Result<UnpackReport, ArchiveError> {
    let base = Base::open(onto, bundle)?;
    let (final_dest, place, parents) = onto_place(&base, dest, options)?;
    check_detached(bundle, file)?;
    let staging = new_staging(&final_dest, progress)?;
    let staging_path = staging.path.clone();
    let scratch = staging_path.join(crate::install::read::PATCH_SCRATCH);
    let mut filler = Filler::new(
        &base,
        &staging_path,
        Patches::Scratch(scratch.clone()),
        progress,
    );
    let (staging, manifest, entries, bytes) = extract_verified(
        (bundle, file, decryptor),
        staging,
        progress,
        Hooks {
            on_manifest: Some(&mut |m, delta| {
                base.check_delta(bundle, delta)?;
                crate::install::space::check_free_space(&final_dest, m, false)?;
                preflight_steps(m, &final_dest, options)
            }),
            reuse: Some(&mut |x, rec| filler.take(x, rec)),
        },
    )?;
    filler.verdict(bundle)?;
    let reuse = reuse_report(&filler, &place);
    if scratch.exists() {
        fs::remove_dir_all(&scratch).map_err(|e| ArchiveError::io("removing", &scratch, e))?;
    }
    let update = Update {
        dest: &final_dest,
        place,
        parents,
        reuse,
    };
    finish_update(
        staging,
        &manifest.meta,
        update,
        options,
        (entries, bytes),
        progress,
    )
}

/// What an update took from its base, for the report.
fn reuse_report(filler: &Filler<'_>, place: &Place) -> Reuse {
    Reuse {
        base: filler.base.root.clone(),
        linked: filler.linked,
        copied: filler.copied,
        patched: filler.patched,
        previous: match place {
            Place::Swap {
                previous,
                keep: true,
            } => Some(previous.clone()),
            _ => None,
        },
    }
}

/// Apply the delta `bundle` onto the installed base `onto`: in place (the finished tree
/// takes `onto`'s place; the old one becomes `ONTO.previous` unless
/// [`UnpackOptions::drop_previous`]), or into a new `dest` beside which `onto` stays as it
/// is ([`crate::install::delta`]).
pub fn apply_delta(
    bundle: &Path,
    onto: &Path,
    dest: Option<&Path>,
    options: &UnpackOptions,
    progress: &dyn Progress,
) -> Result<UnpackReport, ArchiveError> {
    let file = crate::install::read::open_bundle(bundle)?;
    unpack_onto_opened((bundle, &file, None), onto, dest, options, progress)
}

/// [`apply_delta`] over a bundle from [`crate::install::read::open_bundle`] (the one the
/// signature was checked on), age-encrypted bundles through `decryptor`.
pub fn apply_delta_opened(
    bundle: &Path,
    file: &crate::install::read::BundleFile,
    decryptor: Option<&dyn Decryptor>,
    onto: &Path,
    dest: Option<&Path>,
    options: &UnpackOptions,
    progress: &dyn Progress,
) -> Result<UnpackReport, ArchiveError> {
    unpack_onto_opened((bundle, file, decryptor), onto, dest, options, progress)
}

/// Where an update's finished staging goes, and what it took from its base.
struct Update<'a> {
    dest: &'a Path,
    place: Place,
    parents: Option<crate::install::dest::Parents>,
    reuse: Reuse,
}

/// An update's tree, complete in staging: installed as any unpack, then reported with what
/// it took from its base.
fn finish_update(
    staging: Staging,
    manifest: &Manifest,
    update: Update<'_>,
    options: &UnpackOptions,
    counts: (u64, u64),
    progress: &dyn Progress,
) -> Result<UnpackReport, ArchiveError> {
    let Update {
        dest,
        place,
        mut parents,
        reuse,
    } = update;
    let mut report = install(staging, manifest, (dest, place), options, counts, progress)?;
    if let Some(p) = &mut parents {
        p.keep = true;
    }
    report.reused = Some(reuse);
    Ok(report)
}

/// `path` with `suffix` on its last component (`env` -> `env.previous`).
fn sibling(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(suffix);
    path.with_file_name(name)
}

/// Verify `bundle` while extracting it into a new staging directory beside `dest`, with its
/// manifest at `.airgap/manifest.toml`: the tree `tar xzf` gives, checked. `preflight` sees
/// the manifest before any file is extracted.
fn extract_verified(
    (bundle, file, decryptor): (
        &Path,
        &crate::install::read::BundleFile,
        Option<&dyn Decryptor>,
    ),
    staging: Staging,
    progress: &dyn Progress,
    hooks: Hooks<'_, '_>,
) -> Result<(Staging, StreamedManifest, u64, u64), ArchiveError> {
    // The manifest is the first entry: what it alone shows to be impossible is refused before
    // any file is extracted, and its exact text travels with the tree (for `relocate`).
    let parked = staging.path.join(".airgap-manifest.partial");
    let mut caller = hooks.on_manifest;
    let checked = check_bundle(
        bundle,
        file,
        decryptor,
        &Target::Extract(&staging.path),
        true,
        progress,
        Hooks {
            on_manifest: Some(&mut |m, delta| {
                if let Some(c) = caller.as_deref_mut() {
                    c(m, delta)?;
                }
                write_manifest(&parked, m)
            }),
            reuse: hooks.reuse,
        },
    )?;
    let (manifest, entries, bytes) = (checked.manifest, checked.entries, checked.bytes);
    let airgap_dir = staging.path.join(".airgap");
    match fs::symlink_metadata(&airgap_dir) {
        Ok(m) if m.is_dir() => {}
        Ok(_) => {
            return Err(ArchiveError::Unsafe {
                bundle: bundle.into(),
                entry: ".airgap".into(),
                reason: "not a directory".into(),
            })
        }
        Err(_) => {
            fs::create_dir(&airgap_dir).map_err(|e| ArchiveError::io("creating", &airgap_dir, e))?
        }
    }
    let final_manifest = airgap_dir.join("manifest.toml");
    fs::rename(&parked, &final_manifest)
        .map_err(|e| ArchiveError::io("writing", &final_manifest, e))?;
    Ok((staging, manifest, entries, bytes))
}

/// Verify a bundle and extract its tree, as `tar xzf` would give it (`NAME/unpack`,
/// `.airgap/`, the files as they were bundled), into `dest` (new, or an empty directory),
/// without rewriting prefixes or running any step: `sh NAME.run --extract-only DIR`. All or
/// nothing, as an unpack.
pub fn extract_tree(
    bundle: &Path,
    dest: &Path,
    progress: &dyn Progress,
) -> Result<UnpackReport, ArchiveError> {
    let file = crate::install::read::open_bundle(bundle)?;
    let (dest, existed, mut parents) = check_dest(dest)?;
    check_detached(bundle, &file)?;
    let staging = new_staging(&dest, progress)?;
    let (mut staging, _, entries, bytes) = extract_verified(
        (bundle, &file, None),
        staging,
        progress,
        Hooks {
            on_manifest: Some(&mut |m, delta| {
                refuse_delta(bundle, delta)?;
                crate::install::space::check_free_space(&dest, m, false)
            }),
            reuse: None,
        },
    )?;
    fs::set_permissions(&staging.path, fs::Permissions::from_mode(0o755))
        .map_err(|e| ArchiveError::io("writing", &staging.path, e))?;
    if existed {
        fs::remove_dir(&dest).map_err(|e| ArchiveError::Dest {
            path: dest.clone(),
            reason: format!("cannot replace the empty directory: {e}"),
        })?;
    }
    if let Err(e) = fs::rename(&staging.path, &dest) {
        if existed {
            let _ = fs::create_dir(&dest);
        }
        return Err(ArchiveError::io("renaming into", &dest, e));
    }
    staging.keep = true;
    parents.keep = true;
    Ok(UnpackReport {
        dest,
        entries,
        bytes,
        steps: 0,
        not_run: Vec::new(),
        installed: Default::default(),
        reused: None,
    })
}

/// When `BUNDLE.sha256` sits beside the bundle, the bundle must match it: it also covers the
/// few bytes of a gzip header that no checksum inside the archive does.
fn check_detached(
    bundle: &Path,
    file: &crate::install::read::BundleFile,
) -> Result<(), ArchiveError> {
    let path = crate::install::read::detached_sha256_path(bundle);
    if let Ok(text) = fs::read_to_string(&path) {
        let expected = text
            .split_whitespace()
            .next()
            .unwrap_or("")
            .to_ascii_lowercase();
        let actual = crate::install::read::sha256_opened(bundle, file)?;
        if expected != actual {
            return Err(ArchiveError::Corrupt {
                bundle: bundle.into(),
                reason: format!("its sha256 is {actual}, {} says {expected}", path.display()),
            });
        }
    }
    Ok(())
}

/// The manifest's exact text at `path` (new).
fn write_manifest(path: &Path, manifest: &StreamedManifest) -> Result<(), ArchiveError> {
    let f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o644)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
        .map_err(|e| ArchiveError::io("creating", path, e))?;
    let mut out = io::BufWriter::new(f);
    manifest
        .write_text(&mut out)
        .and_then(|()| out.flush())
        .map_err(|e| ArchiveError::io("writing", path, e))
}

/// How the finished tree takes DEST's place.
enum Place {
    /// DEST was absent, or an empty directory (`existed`): a rename.
    New { existed: bool },
    /// DEST is a delta's installed base: an atomic exchange, the old tree at `previous`
    /// (removed after success unless `keep`).
    Swap { previous: PathBuf, keep: bool },
}

/// Rewrite prefixes in staging for the final path, put the tree in DEST's place, run the
/// `Run` steps there; any failure puts DEST back as it was.
fn install(
    mut staging: Staging,
    manifest: &Manifest,
    (dest, place): (&Path, Place),
    options: &UnpackOptions,
    (entries, bytes): (u64, u64),
    progress: &dyn Progress,
) -> Result<UnpackReport, ArchiveError> {
    relocate_staged(manifest, &staging.path, dest, progress)?;
    if progress.is_cancelled() {
        return Err(ArchiveError::Cancelled);
    }
    match &place {
        Place::New { existed } => rename_into(&mut staging, dest, *existed)?,
        Place::Swap { previous, .. } => swap_into(&mut staging, dest, previous, progress)?,
    }
    // From here on DEST is ours: on failure it is put back as it was.
    let rollback = |err: ArchiveError| -> ArchiveError {
        match &place {
            Place::New { existed } => {
                make_writable(dest);
                let _ = fs::remove_dir_all(dest);
                if *existed {
                    let _ = fs::create_dir(dest);
                }
            }
            Place::Swap { previous, .. } => {
                if exchange(previous, dest).is_ok() {
                    make_writable(previous);
                    let _ = fs::remove_dir_all(previous);
                }
            }
        }
        err
    };
    let (steps, not_run) = match run_steps(manifest, dest, options, progress) {
        Ok(done) => done,
        Err(e) => return Err(rollback(e)),
    };
    if let (Some(hook), true) = (&options.after_install, not_run.is_empty()) {
        if let Err(failed) = hook.check(dest, manifest) {
            return Err(rollback(ArchiveError::AfterInstall {
                dest: dest.into(),
                failed,
            }));
        }
    }
    if let Place::Swap {
        previous,
        keep: false,
    } = &place
    {
        make_writable(previous);
        let _ = fs::remove_dir_all(previous);
    }
    Ok(UnpackReport {
        dest: dest.into(),
        entries,
        bytes,
        steps,
        not_run,
        installed: crate::install::installed::installed(dest, manifest),
        reused: None,
    })
}

/// Prefixes are rewritten for the final path while the files sit in staging.
fn relocate_staged(
    manifest: &Manifest,
    staging: &Path,
    dest: &Path,
    progress: &dyn Progress,
) -> Result<(), ArchiveError> {
    let start = PrefixState {
        prefix: groups(manifest)
            .into_iter()
            .map(|(step, old, root, _)| PrefixRecord {
                step,
                root: root.to_string(),
                original: old.to_string(),
                current: old.to_string(),
            })
            .collect(),
    };
    let (state, _) = rewrite_all(manifest, &start, staging, dest, true, progress)?;
    let (state2, _) = rewrite_all(manifest, &start, staging, dest, false, progress)?;
    debug_assert_eq!(state.prefix, state2.prefix);
    write_state(staging, &state2)?;
    fs::set_permissions(staging, fs::Permissions::from_mode(0o755))
        .map_err(|e| ArchiveError::io("writing", staging, e))
}

/// Staging becomes DEST (absent, or an empty directory that is replaced).
fn rename_into(staging: &mut Staging, dest: &Path, existed: bool) -> Result<(), ArchiveError> {
    if existed {
        fs::remove_dir(dest).map_err(|e| ArchiveError::Dest {
            path: dest.into(),
            reason: format!("cannot replace the empty directory: {e}"),
        })?;
    }
    if let Err(e) = fs::rename(&staging.path, dest) {
        if existed {
            let _ = fs::create_dir(dest);
        }
        return Err(ArchiveError::io("renaming into", dest, e));
    }
    staging.keep = true;
    Ok(())
}

/// Staging takes the place of the installed tree DEST in one atomic exchange; the old tree
/// ends at `previous` (an older `previous` is removed first). At every moment DEST is the
/// whole old tree or the whole new one, and the old one is never where a later run would
/// take it for a killed run's staging.
fn swap_into(
    staging: &mut Staging,
    dest: &Path,
    previous: &Path,
    progress: &dyn Progress,
) -> Result<(), ArchiveError> {
    if fs::symlink_metadata(previous).is_ok() {
        make_writable(previous);
        fs::remove_dir_all(previous).map_err(|e| ArchiveError::io("removing", previous, e))?;
        progress.message(
            Level::Info,
            &format!(
                "removed {}, the tree before the last update",
                previous.display()
            ),
        );
    }
    fs::rename(&staging.path, previous)
        .map_err(|e| ArchiveError::io("renaming into", previous, e))?;
    staging.keep = true;
    if let Err(e) = exchange(previous, dest) {
        make_writable(previous);
        let _ = fs::remove_dir_all(previous);
        return Err(ArchiveError::io(
            "exchanging (renameat2 RENAME_EXCHANGE: this file system may not offer it) with",
            dest,
            e,
        ));
    }
    Ok(())
}

/// The `Run` steps in DEST, in order (or listed, with `--no-run`): how many ran, and the
/// ones not run.
fn run_steps(
    manifest: &Manifest,
    dest: &Path,
    options: &UnpackOptions,
    progress: &dyn Progress,
) -> Result<(usize, Vec<String>), ArchiveError> {
    let mut steps = 0;
    let mut not_run = Vec::new();
    for (i, rec) in manifest.install_steps.iter().enumerate() {
        if let InstallStep::Run {
            description,
            program,
            args,
            env,
        } = &rec.step
        {
            if progress.is_cancelled() {
                return Err(ArchiveError::Cancelled);
            }
            if options.no_run {
                not_run.push(crate::text::describe_step(&rec.step));
                continue;
            }
            // The exact command, escaped: the description is the author's word, this is the fact.
            progress.message(
                Level::Info,
                &format!(
                    "running {}: {}",
                    crate::text::escape(description),
                    crate::text::command_line(program, args)
                ),
            );
            run_step(i, description, program, args, env, dest, options)?;
        }
        steps += 1;
    }
    Ok((steps, not_run))
}

fn run_step(
    index: usize,
    description: &str,
    program: &str,
    args: &[String],
    env: &std::collections::BTreeMap<String, String>,
    dest: &Path,
    options: &UnpackOptions,
) -> Result<(), ArchiveError> {
    let dest_s = dest.to_string_lossy();
    let python = options
        .python
        .as_ref()
        .map(|p| p.to_string_lossy().into_owned())
        .unwrap_or_default();
    let subst = |s: &str| s.replace("{dest}", &dest_s).replace("{python}", &python);
    let err = |reason: String| ArchiveError::Step {
        index: index + 1,
        description: description.into(),
        reason,
    };
    let prog = subst(program);
    let prog_path = if program.contains('/') && !program.starts_with('{') {
        dest.join(prog.trim_start_matches("./"))
    } else {
        PathBuf::from(&prog)
    };
    let mut cmd = Command::new(&prog_path);
    cmd.args(args.iter().map(|a| subst(a))).current_dir(dest);
    for (k, v) in env {
        cmd.env(k, subst(v));
    }
    let out = cmd
        .output()
        .map_err(|e| err(format!("cannot run {}: {e}", prog_path.display())))?;
    if !out.status.success() {
        let mut tail = String::from_utf8_lossy(&out.stderr).into_owned();
        if tail.trim().is_empty() {
            tail = String::from_utf8_lossy(&out.stdout).into_owned();
        }
        let lines: Vec<&str> = tail.lines().collect();
        let tail = lines[lines.len().saturating_sub(10)..].join("\n");
        return Err(err(format!(
            "{} failed ({}):\n{tail}",
            prog_path.display(),
            out.status
        )));
    }
    Ok(())
}

/// Install an already extracted bundle (`tar xzf b.tar.gz && b/unpack DEST`): check the tree
/// against its manifest while copying it into staging, then as [`unpack`].
pub fn unpack_dir(
    tree: &Path,
    dest: &Path,
    options: &UnpackOptions,
    progress: &dyn Progress,
) -> Result<UnpackReport, ArchiveError> {
    let (dest, existed, mut parents) = check_dest(dest)?;
    let manifest = crate::install::read::open_manifest_in(tree)?;
    refuse_delta(tree, tree_delta(tree)?.as_ref())?;
    crate::install::steps::check_steps(&manifest)?;
    preflight(&manifest, &dest, options, true)?;
    let tree_abs = std::path::absolute(tree).map_err(|e| ArchiveError::io("resolving", tree, e))?;
    if dest.starts_with(&tree_abs) {
        return Err(ArchiveError::Dest {
            path: dest,
            reason: "is inside the bundle being installed".into(),
        });
    }
    let staging = new_staging(&dest, progress)?;
    let (entries, bytes) = copy_tree(&tree_abs, &staging.path, &manifest, None, progress)?;
    write_manifest(&staging.path.join(MANIFEST_PATH), &manifest)?;
    let report = install(
        staging,
        &manifest.meta,
        (&dest, Place::New { existed }),
        options,
        (entries, bytes),
        progress,
    )?;
    parents.keep = true;
    Ok(report)
}

/// The description of an extracted delta, if `tree` is one.
fn tree_delta(tree: &Path) -> Result<Option<Delta>, ArchiveError> {
    let path = tree.join(crate::format::delta::DELTA_PATH);
    let file = match fs::File::open(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(ArchiveError::io("reading", &path, e)),
    };
    let mut input = io::BufReader::new(file.take(crate::format::delta::MAX_DELTA));
    Delta::read(&mut input)
        .map(Some)
        .map_err(|reason| ArchiveError::Corrupt {
            bundle: tree.into(),
            reason: format!("{}: {reason}", crate::format::delta::DELTA_PATH),
        })
}

/// Apply an extracted delta (`tar xzf DELTA && NAME/unpack --onto INSTALLED`): as
/// [`unpack_dir`], with the files it leaves out taken from the base (see
/// [`crate::install::delta`]).
pub fn unpack_dir_onto(
    tree: &Path,
    onto: &Path,
    dest: Option<&Path>,
    options: &UnpackOptions,
    progress: &dyn Progress,
) -> Result<UnpackReport, ArchiveError> {
    let base = Base::open(onto, tree)?;
    let (final_dest, place, parents) = onto_place(&base, dest, options)?;
    let manifest = crate::install::read::open_manifest_in(tree)?;
    let delta = tree_delta(tree)?;
    base.check_delta(tree, delta.as_ref())?;
    crate::install::steps::check_steps(&manifest)?;
    preflight(&manifest, &final_dest, options, true)?;
    let tree_abs = std::path::absolute(tree).map_err(|e| ArchiveError::io("resolving", tree, e))?;
    let staging = new_staging(&final_dest, progress)?;
    let patches = Patches::Tree(tree_abs.clone());
    let mut filler = Filler::new(&base, &staging.path, patches, progress);
    let (entries, bytes) = copy_tree(
        &tree_abs,
        &staging.path,
        &manifest,
        delta.as_ref().map(|d| (d, &mut filler)),
        progress,
    )?;
    filler.verdict(tree)?;
    let reuse = reuse_report(&filler, &place);
    write_manifest(&staging.path.join(MANIFEST_PATH), &manifest)?;
    let update = Update {
        dest: &final_dest,
        place,
        parents,
        reuse,
    };
    finish_update(
        staging,
        &manifest.meta,
        update,
        options,
        (entries, bytes),
        progress,
    )
}

/// Where an update goes: in place of the base (an exchange), or a new DEST.
fn onto_place(
    base: &Base,
    dest: Option<&Path>,
    options: &UnpackOptions,
) -> Result<(PathBuf, Place, Option<crate::install::dest::Parents>), ArchiveError> {
    let in_place = match dest {
        None => true,
        Some(d) => std::path::absolute(d).ok().as_deref() == Some(base.root.as_path()),
    };
    match dest {
        Some(dest) if !in_place => {
            let (dest, existed, parents) = check_dest(dest)?;
            Ok((dest, Place::New { existed }, Some(parents)))
        }
        _ => {
            let place = Place::Swap {
                previous: sibling(&base.root, ".previous"),
                keep: !options.drop_previous,
            };
            Ok((base.root.clone(), place, None))
        }
    }
}

/// A directory of the copy: its mode and time are set after everything inside it.
struct TreeDir {
    rel: Vec<u8>,
    mode: u32,
    secs: i64,
    nanos: u32,
}

impl crate::spill::Record for TreeDir {
    fn encode(&self, out: &mut Vec<u8>) {
        crate::spill::put_bytes(out, &self.rel);
        crate::spill::put_u32(out, self.mode);
        crate::spill::put_u64(out, self.secs as u64);
        crate::spill::put_u32(out, self.nanos);
    }
    fn decode(bytes: &[u8]) -> io::Result<Self> {
        let mut d = crate::spill::Decoder::new(bytes);
        Ok(TreeDir {
            rel: d.bytes()?.to_vec(),
            mode: d.u32()?,
            secs: d.u64()? as i64,
            nanos: d.u32()?,
        })
    }
}

/// A path of the extracted tree, for the merge that finds what the manifest does not list.
#[derive(PartialEq, Eq, PartialOrd, Ord)]
struct TreePath(Vec<u8>);

impl crate::spill::Record for TreePath {
    fn encode(&self, out: &mut Vec<u8>) {
        crate::spill::put_bytes(out, &self.0);
    }
    fn decode(bytes: &[u8]) -> io::Result<Self> {
        Ok(TreePath(
            crate::spill::Decoder::new(bytes).bytes()?.to_vec(),
        ))
    }
}

/// Copy an extracted tree into staging, checking it against the manifest, whose records come
/// in path order from disk. What stays in memory: the prefixes of the last path that were
/// listed (a parent is listed before its children), the link targets (for the check that no
/// link leaves the bundle through others), and the first copy of each file with more than
/// one link (to link its twins again); directories wait on a [`crate::spill::Stack`], the
/// tree's paths go through a [`crate::spill::Sorter`] to find the ones not listed.
fn copy_tree(
    tree: &Path,
    staging: &Path,
    manifest: &StreamedManifest,
    mut delta: Option<(&Delta, &mut Filler<'_>)>,
    progress: &dyn Progress,
) -> Result<(u64, u64), ArchiveError> {
    let mut copy = TreeCopy::new(tree, staging);
    let mut reused = ReusedCursor::new(delta.as_ref().map(|d| d.0));
    progress.begin("verifying", manifest.total_size(), Unit::Bytes);
    for rec in manifest.files.iter() {
        let rec = rec?;
        if progress.is_cancelled() {
            progress.end();
            return Err(ArchiveError::Cancelled);
        }
        let rel = copy.take_in_order(&rec)?;
        let problems = &mut copy.problems;
        let here = reused.take(&rel, &mut |x| {
            problems.push(unlisted(x));
            Ok(())
        })?;
        match (here, delta.as_mut()) {
            (Some(x), Some((_, filler))) => copy.reuse(&rec, &rel, &x, filler)?,
            _ => copy.copy(&rec, rel, progress)?,
        }
    }
    while let Some(x) = reused.next_upto(None)? {
        copy.problems.push(unlisted(&x));
    }
    progress.end();
    copy.find_extra(manifest)?;
    copy.check_links()?;
    if !copy.problems.is_empty() {
        return Err(ArchiveError::Mismatch {
            bundle: tree.into(),
            problems: copy.problems,
        });
    }
    copy.finish_dirs()?;
    Ok((copy.entries, copy.bytes))
}

/// The state of one [`copy_tree`]: what the records said so far and what was copied.
struct TreeCopy<'a> {
    tree: &'a Path,
    staging: &'a Path,
    /// What differs from the manifest (all reported together, nothing installed).
    problems: Vec<String>,
    /// The last path listed, and which of its prefixes were listed (length, kind).
    last: Vec<u8>,
    chain: Vec<(usize, FileType)>,
    links: HashMap<Vec<u8>, Vec<u8>>,
    inodes: HashMap<(u64, u64), (PathBuf, Option<String>)>,
    dirs: crate::spill::Stack<TreeDir>,
    entries: u64,
    bytes: u64,
    buf: Vec<u8>,
}

impl<'a> TreeCopy<'a> {
    fn new(tree: &'a Path, staging: &'a Path) -> TreeCopy<'a> {
        TreeCopy {
            tree,
            staging,
            problems: Vec::new(),
            last: Vec::new(),
            chain: Vec::new(),
            links: HashMap::new(),
            inodes: HashMap::new(),
            dirs: crate::spill::Stack::new(1024),
            entries: 0,
            bytes: 0,
            buf: vec![0u8; 256 * 1024],
        }
    }

    fn unsafe_entry(&self, path: &str, reason: String) -> ArchiveError {
        ArchiveError::Unsafe {
            bundle: self.tree.into(),
            entry: path.into(),
            reason,
        }
    }

    /// The record's path, once it is a plain relative path, listed once, after its parent
    /// directory: the records are sorted, so the prefixes of the last path that a later path
    /// may still be inside stay on the chain.
    fn take_in_order(&mut self, rec: &FileRecord) -> Result<Vec<u8>, ArchiveError> {
        let rel = rec.path_bytes();
        check_rel(&rel).map_err(|r| self.unsafe_entry(&rec.path, r))?;
        if rec.mode & 0o6000 != 0 {
            return Err(self.unsafe_entry(&rec.path, "setuid or setgid bit".into()));
        }
        if self.entries > 0 && rel == self.last {
            return Err(self.unsafe_entry(&rec.path, "listed twice".into()));
        }
        while let Some(&(len, _)) = self.chain.last() {
            if rel.starts_with(&self.last[..len]) && rel.get(len).is_some_and(|&b| b <= b'/') {
                break;
            }
            self.chain.pop();
        }
        if let Some(p) = rel.iter().rposition(|&b| b == b'/') {
            if !self.chain.contains(&(p, FileType::Dir)) {
                return Err(self.unsafe_entry(
                    &rec.path,
                    "its parent is not a directory listed before it".into(),
                ));
            }
        }
        self.chain.push((rel.len(), rec.kind));
        self.last.clone_from(&rel);
        self.entries += 1;
        Ok(rel)
    }

    /// A file an extracted delta leaves to its base: it must not be in the tree too.
    fn reuse(
        &mut self,
        rec: &FileRecord,
        rel: &[u8],
        x: &Reused,
        filler: &mut Filler<'_>,
    ) -> Result<(), ArchiveError> {
        let carried = fs::symlink_metadata(self.tree.join(OsStr::from_bytes(rel))).is_ok();
        match reuse_refusal(rec, carried) {
            Some(problem) => self.problems.push(problem),
            None => {
                filler.take(x, rec)?;
                self.bytes += rec.size;
            }
        }
        Ok(())
    }

    /// Copy what the record lists from the tree into staging, or note how the tree differs.
    fn copy(
        &mut self,
        rec: &FileRecord,
        rel: Vec<u8>,
        progress: &dyn Progress,
    ) -> Result<(), ArchiveError> {
        let src = self.tree.join(OsStr::from_bytes(&rel));
        let dst = self.staging.join(OsStr::from_bytes(&rel));
        let Ok(meta) = fs::symlink_metadata(&src) else {
            self.problems.push(format!("missing: {}", rec.path));
            return Ok(());
        };
        match rec.kind {
            FileType::Dir => self.copy_dir(rec, rel, &meta, &dst),
            FileType::Symlink => self.copy_link(rec, rel, &src, &meta, &dst),
            FileType::File => self.copy_regular(rec, &src, &meta, dst, progress),
        }
    }

    /// A directory now; its mode and time once everything inside it is there.
    fn copy_dir(
        &mut self,
        rec: &FileRecord,
        rel: Vec<u8>,
        meta: &fs::Metadata,
        dst: &Path,
    ) -> Result<(), ArchiveError> {
        if !meta.is_dir() {
            self.problems
                .push(format!("changed: {} is not a directory", rec.path));
            return Ok(());
        }
        fs::create_dir(dst).map_err(|e| ArchiveError::io("creating", dst, e))?;
        let t = FileTime::from_last_modification_time(meta);
        self.dirs
            .push(TreeDir {
                rel,
                mode: rec.mode & 0o1777,
                secs: t.unix_seconds(),
                nanos: t.nanoseconds(),
            })
            .map_err(crate::format::manifest::records::scratch_error)
    }

    /// A link that stays inside the bundle and is the one the manifest lists.
    fn copy_link(
        &mut self,
        rec: &FileRecord,
        rel: Vec<u8>,
        src: &Path,
        meta: &fs::Metadata,
        dst: &Path,
    ) -> Result<(), ArchiveError> {
        let target = rec.target_bytes().unwrap_or_default();
        if target.is_empty()
            || !crate::format::manifest::link_stays_inside(
                rel.rsplitn(2, |&b| b == b'/').nth(1).unwrap_or(b""),
                &target,
            )
        {
            return Err(
                self.unsafe_entry(&rec.path, "symbolic link points outside the bundle".into())
            );
        }
        match fs::read_link(src) {
            Ok(t)
                if meta.file_type().is_symlink()
                    && t.as_os_str().as_bytes() == target.as_slice() => {}
            _ => {
                self.problems.push(format!(
                    "changed: {} is not the link the manifest lists",
                    rec.path
                ));
                return Ok(());
            }
        }
        std::os::unix::fs::symlink(OsStr::from_bytes(&target), dst)
            .map_err(|e| ArchiveError::io("creating", dst, e))?;
        // The link's own time, as `tar xzf` and the archive's unpack give it.
        let t = FileTime::from_last_modification_time(meta);
        filetime::set_symlink_file_times(dst, t, t)
            .map_err(|e| ArchiveError::io("writing", dst, e))?;
        self.links.insert(rel, target);
        Ok(())
    }

    /// A regular file of the listed size, copied and hashed in one read (a twin of a file
    /// already copied is linked to it again).
    fn copy_regular(
        &mut self,
        rec: &FileRecord,
        src: &Path,
        meta: &fs::Metadata,
        dst: PathBuf,
        progress: &dyn Progress,
    ) -> Result<(), ArchiveError> {
        if !meta.is_file() {
            self.problems
                .push(format!("changed: {} is not a regular file", rec.path));
            return Ok(());
        }
        if meta.len() != rec.size {
            self.problems.push(format!(
                "size: {} is {} bytes, the manifest says {}",
                rec.path,
                meta.len(),
                rec.size
            ));
            return Ok(());
        }
        if let Some((first, sha)) = self.inodes.get(&(meta.dev(), meta.ino())) {
            if *sha == rec.sha256 {
                fs::hard_link(first, &dst).map_err(|e| ArchiveError::io("creating", &dst, e))?;
                self.bytes += rec.size;
                progress.advance(rec.size);
                return Ok(());
            }
        }
        let digest = crate::install::copy::copy_file(
            src,
            &dst,
            rec.mode & 0o777,
            meta,
            &mut self.buf,
            progress,
        )?;
        self.bytes += rec.size;
        if rec.sha256.as_deref() != Some(digest.as_str()) {
            self.problems.push(format!(
                "hash: {} has sha256 {digest}, the manifest says {}",
                rec.path,
                rec.sha256.as_deref().unwrap_or("none")
            ));
            return Ok(());
        }
        if meta.nlink() > 1 {
            self.inodes
                .insert((meta.dev(), meta.ino()), (dst, rec.sha256.clone()));
        }
        Ok(())
    }

    /// Nothing extra may sit in the tree: its paths, sorted, against the records.
    fn find_extra(&mut self, manifest: &StreamedManifest) -> Result<(), ArchiveError> {
        let scratch = crate::format::manifest::records::scratch_error;
        let tree = self.tree;
        let mut walked = crate::spill::Sorter::<TreePath>::new(crate::spill::DEFAULT_BUDGET);
        for entry in walkdir::WalkDir::new(tree).min_depth(1).follow_links(false) {
            let entry =
                entry.map_err(|e| ArchiveError::io("listing", tree, io::Error::other(e)))?;
            let rel = entry
                .path()
                .strip_prefix(tree)
                .unwrap_or(entry.path())
                .as_os_str()
                .as_bytes()
                .to_vec();
            if rel == MANIFEST_PATH.as_bytes()
                || rel == crate::install::relocate::PREFIXES_PATH.as_bytes()
                || rel == crate::format::delta::DELTA_PATH.as_bytes()
                || rel.starts_with(crate::format::delta::PATCH_DIR.as_bytes())
                || rel
                    == crate::format::delta::PATCH_DIR
                        .trim_end_matches('/')
                        .as_bytes()
            {
                continue;
            }
            walked.push(TreePath(rel)).map_err(scratch)?;
        }
        let mut listed = manifest.files.iter();
        let mut next = listed.next().transpose()?.map(|r| r.path_bytes());
        for rel in walked.finish().map_err(scratch)? {
            let TreePath(rel) = rel.map_err(scratch)?;
            while next.as_ref().is_some_and(|p| *p < rel) {
                next = listed.next().transpose()?.map(|r| r.path_bytes());
            }
            if next.as_ref() != Some(&rel) {
                self.problems.push(format!(
                    "extra: {} is not in the manifest",
                    String::from_utf8_lossy(&rel)
                ));
            }
        }
        Ok(())
    }

    /// No link may leave the bundle through other links.
    fn check_links(&self) -> Result<(), ArchiveError> {
        for path in self.links.keys() {
            if !crate::install::read::resolves_inside(path, &self.links) {
                return Err(self.unsafe_entry(
                    &String::from_utf8_lossy(path),
                    "symbolic link leaves the bundle through other links".into(),
                ));
            }
        }
        Ok(())
    }

    /// The directories' modes and times, deepest first, now that their contents are in.
    fn finish_dirs(&mut self) -> Result<(), ArchiveError> {
        let scratch = crate::format::manifest::records::scratch_error;
        while let Some(d) = self.dirs.pop().map_err(scratch)? {
            let dst = self.staging.join(OsStr::from_bytes(&d.rel));
            fs::set_permissions(&dst, fs::Permissions::from_mode(d.mode))
                .map_err(|e| ArchiveError::io("writing", &dst, e))?;
            let mtime = FileTime::from_unix_time(d.secs, d.nanos);
            let _ = filetime::set_file_times(&dst, mtime, mtime);
        }
        Ok(())
    }
}
