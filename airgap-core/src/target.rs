//! `--target FILE|CODE` and `[target] profile = "..."`: a probed target (`airgap probe`, a
//! retyped code) completes the declared profile, so that the check and syslibs see the
//! target's own libraries instead of a manylinux policy's assumptions.

use std::path::Path;

use airgap_plugin_api::{TargetProfile, TargetSystem};
use airgap_probe::{code, Profile, Source};

use crate::Error;

/// Read `given`: a profile file (TOML, or JSON from `probe --json`; relative to `dir`), else
/// a code.
pub fn load(given: &str, dir: &Path) -> Result<Profile, Error> {
    let path = dir.join(given);
    if path.is_file() {
        let bad = |reason: String| Error::TargetProfile {
            given: given.to_owned(),
            reason,
        };
        let text = std::fs::read_to_string(&path)
            .map_err(|e| bad(format!("cannot read {}: {e}", path.display())))?;
        let parsed = if text.trim_start().starts_with('{') {
            Profile::from_json(&text)
        } else {
            Profile::from_toml(&text)
        };
        return parsed.map_err(|e| bad(e.to_string()));
    }
    code::decode(given).map_err(|e| Error::TargetProfile {
        given: given.to_owned(),
        reason: format!("no such file, and {e}"),
    })
}

/// Complete `target` with what `profile` knows: its glibc and arch where nothing was
/// declared, and its libraries. Without a bundled environment (`has_environment` false: a
/// wheelhouse for the target's own Python), also the Python: the first one on the target's
/// `PATH`, the one `python3` runs there, so that wheels are chosen for it.
pub fn apply(profile: &Profile, target: &mut TargetProfile, has_environment: bool) {
    if target.glibc.is_none() {
        target.glibc = profile.glibc.clone();
    }
    if !has_environment && target.python.is_none() {
        if let Some(py) = profile.pythons.first().filter(|p| !p.version.is_empty()) {
            target.python = Some(py.version.clone());
            if target.implementation.is_none() {
                target.implementation = Some(
                    match py.implementation.as_str() {
                        "cpython" => "cp",
                        "pypy" => "pp",
                        other => other,
                    }
                    .to_owned(),
                );
            }
            if target.abi.is_none() && !py.abi.is_empty() {
                target.abi = Some(py.abi.clone());
            }
        }
    }
    if target.arch.is_none() {
        target.arch = profile.arch.clone();
    }
    let mut versions = std::collections::BTreeMap::new();
    for (prefix, v) in [
        ("GLIBC", &target.glibc),
        ("GLIBCXX", &profile.glibcxx),
        ("CXXABI", &profile.cxxabi),
        ("GCC", &profile.gcc),
    ] {
        if let Some(v) = v {
            versions.insert(prefix.to_owned(), v.clone());
        }
    }
    let mut system = TargetSystem::default();
    system.source = match profile.source {
        Source::Probe => "probe".into(),
        Source::Code => "code".into(),
    };
    system.libraries = profile
        .libraries
        .iter()
        .map(|l| (l.soname.clone(), l.versions.clone()))
        .collect();
    system.versions = versions;
    system.nvidia_driver = profile.nvidia_driver.clone();
    target.system = Some(system);
}
