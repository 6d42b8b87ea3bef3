//! The target profile as pip sees it: `--python-version`, `--implementation`, `--abi` and one
//! `--platform` per tag.

use airgap_plugin_api::{ContributeRequest, PluginError, PythonEnvironment, TargetProfile};

/// The target interpreter's tags.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetTags {
    /// Full version (`3.6.15`); pip reads `3.6` as `3.6.0`.
    pub version: String,
    /// Major and minor.
    pub major: u32,
    /// Minor.
    pub minor: u32,
    /// Implementation tag (`cp`).
    pub implementation: String,
    /// ABI tag (`cp36m`, `cp311`).
    pub abi: String,
    /// Platform tags, most specific first.
    pub platforms: Vec<String>,
}

/// Where the profile came from, for messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Derived {
    /// The tags.
    pub tags: TargetTags,
    /// Notes for the user (assumptions made).
    pub warnings: Vec<String>,
}

impl TargetTags {
    /// The profile for `request`: `[target]` fields first, then the bundled interpreter's
    /// (only when it is the same Python X.Y), then defaults; each tag in its own function.
    pub fn from_request(
        request: &ContributeRequest,
        host_glibc: impl FnOnce() -> Option<String>,
    ) -> Result<Derived, PluginError> {
        let target = &request.target;
        let mut warnings = Vec::new();
        let (version, major, minor) = target_version(target, request.python.as_ref())?;
        // The environment's tags describe the target only when it is the same Python X.Y.
        let env = request.python.as_ref().filter(|e| {
            let mut it = e.version.split('.').map(|p| p.parse::<u32>().ok());
            (it.next().flatten(), it.next().flatten()) == (Some(major), Some(minor))
        });
        if version.split('.').count() < 3 {
            warnings.push(format!(
                "target python {version} has no micro version: pip reads it as {version}.0 and \
                 rejects packages needing a later micro; set [target] python to the full version"
            ));
        }
        let implementation = implementation(target, env);
        let abi = target
            .abi
            .clone()
            .or_else(|| env.map(|e| e.abi.clone()).filter(|a| !a.is_empty()))
            .unwrap_or_else(|| default_abi(&implementation, major, minor));
        let platforms = platforms(target, env, host_glibc, &mut warnings)?;
        Ok(Derived {
            tags: TargetTags {
                version,
                major,
                minor,
                implementation,
                abi,
                platforms,
            },
            warnings,
        })
    }

    /// `X.Y`.
    pub fn major_minor(&self) -> String {
        format!("{}.{}", self.major, self.minor)
    }

    /// The arguments that make pip choose for the target.
    pub fn pip_args(&self) -> Vec<String> {
        let mut args = vec![
            "--python-version".to_string(),
            self.version.clone(),
            "--implementation".into(),
            self.implementation.clone(),
            "--abi".into(),
            self.abi.clone(),
        ];
        for p in &self.platforms {
            args.push("--platform".into());
            args.push(p.clone());
        }
        args
    }

    /// One line for messages: `python 3.9.18 (cp39, manylinux_2_17_x86_64 ...)`.
    pub fn describe(&self) -> String {
        let platforms = match self.platforms.len() {
            0 => String::new(),
            1 => self.platforms[0].clone(),
            n => format!("{} and {} more", self.platforms[0], n - 1),
        };
        format!("python {} ({}, {})", self.version, self.abi, platforms)
    }
}

/// The platform tags of a glibc-based Linux: `manylinux_2_N` down to `manylinux_2_5`, the
/// legacy aliases, then `linux_ARCH`. `None` when `glibc` is not `2.N`.
pub fn manylinux_platforms(glibc: &str, arch: &str) -> Option<Vec<String>> {
    let (major, minor) = glibc.trim().split_once('.')?;
    let major: u32 = major.parse().ok()?;
    let minor: u32 = minor.split('.').next()?.parse().ok()?;
    if major != 2 {
        return None;
    }
    let mut tags = Vec::new();
    let legacy_ok = arch == "x86_64" || arch == "i686";
    for m in (5..=minor).rev() {
        tags.push(format!("manylinux_2_{m}_{arch}"));
        match m {
            17 => tags.push(format!("manylinux2014_{arch}")),
            12 if legacy_ok => tags.push(format!("manylinux2010_{arch}")),
            5 if legacy_ok => tags.push(format!("manylinux1_{arch}")),
            _ => {}
        }
    }
    tags.push(format!("linux_{arch}"));
    Some(tags)
}

/// The glibc `2.N` minor a manylinux tag promises (`manylinux2014_x86_64` -> 17).
fn manylinux_glibc_minor(tag: &str) -> Option<u32> {
    for (prefix, minor) in [
        ("manylinux1_", 5),
        ("manylinux2010_", 12),
        ("manylinux2014_", 17),
    ] {
        if tag.starts_with(prefix) {
            return Some(minor);
        }
    }
    let rest = tag.strip_prefix("manylinux_2_")?;
    rest.split('_').next()?.parse().ok()
}

/// The architecture of a manylinux tag (`manylinux_2_28_x86_64` -> `x86_64`).
fn manylinux_arch(tag: &str) -> Option<String> {
    let rest = match tag.strip_prefix("manylinux_2_") {
        Some(r) => r.split_once('_')?.1,
        None => tag.strip_prefix("manylinux")?.split_once('_')?.1,
    };
    Some(rest.to_string())
}

/// Complete the given platform tags with what a target accepting them also accepts: every
/// older manylinux tag, and `linux_ARCH` last (the target's pip installs any wheel tagged
/// for its architecture; wheels built here from sdists carry that tag).
pub fn expand_platforms(given: &[String], arch: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let push = |t: String, out: &mut Vec<String>| {
        if !out.contains(&t) {
            out.push(t);
        }
    };
    for tag in given {
        push(tag.clone(), &mut out);
    }
    let best = given.iter().filter_map(|t| manylinux_glibc_minor(t)).max();
    if let Some(minor) = best {
        let tag_arch = given
            .iter()
            .find_map(|t| manylinux_arch(t))
            .unwrap_or_else(|| arch.to_string());
        for t in manylinux_platforms(&format!("2.{minor}"), &tag_arch).unwrap_or_default() {
            push(t, &mut out);
        }
    } else if given.iter().any(|t| t.starts_with("linux_")) || given.is_empty() {
        push(format!("linux_{arch}"), &mut out);
    }
    out
}

/// The target's full Python version (`[target] python`, else the environment's), with its
/// major and minor; an error when there is none or it is not a version.
fn target_version(
    target: &TargetProfile,
    env: Option<&PythonEnvironment>,
) -> Result<(String, u32, u32), PluginError> {
    let version = target
        .python
        .clone()
        .filter(|v| !v.trim().is_empty())
        .or_else(|| env.map(|e| e.version.clone()).filter(|v| !v.is_empty()))
        .ok_or_else(|| {
            PluginError::new("no target python version for the pip wheelhouse").with_help(
                "set `python = \"3.9.18\"` in [target], or bundle an environment with an \
                 environment source (conda) before [sources.pip]",
            )
        })?;
    let version = version.trim().to_string();
    let parts: Vec<&str> = version.split('.').collect();
    let parse = |i: usize| parts.get(i).and_then(|p| p.parse::<u32>().ok());
    match (parse(0), parse(1)) {
        (Some(major), Some(minor)) if parts.iter().all(|p| p.parse::<u32>().is_ok()) => {
            Ok((version, major, minor))
        }
        _ => Err(PluginError::new(format!(
            "target python version {version:?} is not a version like 3.9.18"
        ))
        .with_help("set [target] python to the full version of the target's interpreter")),
    }
}

/// The implementation tag: `[target]`'s, else the environment's, else `cp`; pip wants the
/// short tag, so `cpython` and `pypy` are spelled `cp` and `pp`.
fn implementation(target: &TargetProfile, env: Option<&PythonEnvironment>) -> String {
    target
        .implementation
        .clone()
        .or_else(|| {
            env.map(|e| e.implementation.clone())
                .filter(|i| !i.is_empty())
        })
        .map(|i| match i.as_str() {
            "cpython" | "CPython" => "cp".to_string(),
            "pypy" | "PyPy" => "pp".to_string(),
            _ => i,
        })
        .unwrap_or_else(|| "cp".into())
}

/// The ABI tag of a version when neither `[target]` nor the environment gives one: CPython
/// before 3.8 adds `m` (pymalloc).
fn default_abi(implementation: &str, major: u32, minor: u32) -> String {
    let m = if implementation == "cp" && (major, minor) < (3, 8) {
        "m"
    } else {
        ""
    };
    format!("{implementation}{major}{minor}{m}")
}

/// The platform tags: `[target] platforms`, else manylinux tags of `[target] glibc`, else
/// the environment's, else manylinux tags of this machine's glibc (with a warning: an
/// assumption about the target).
fn platforms(
    target: &TargetProfile,
    env: Option<&PythonEnvironment>,
    host_glibc: impl FnOnce() -> Option<String>,
    warnings: &mut Vec<String>,
) -> Result<Vec<String>, PluginError> {
    let arch = target
        .arch
        .clone()
        .unwrap_or_else(|| std::env::consts::ARCH.to_string());
    if !target.platforms.is_empty() {
        return Ok(expand_platforms(&target.platforms, &arch));
    }
    if let Some(glibc) = &target.glibc {
        return manylinux_platforms(glibc, &arch).ok_or_else(|| {
            PluginError::new(format!("target glibc {glibc:?} is not a version like 2.17"))
                .with_help("set [target] glibc to the target's glibc version (`ldd --version`)")
        });
    }
    if let Some(env) = env.filter(|e| !e.platforms.is_empty()) {
        return Ok(expand_platforms(&env.platforms, &arch));
    }
    let glibc = host_glibc().ok_or_else(|| {
        PluginError::new("no target platform for the pip wheelhouse")
            .with_help("set [target] glibc = \"2.17\" (or platforms = [...])")
    })?;
    warnings.push(format!(
        "no target glibc given: assuming glibc {glibc} like this machine; set [target] glibc \
         to the target's (`ldd --version` there)"
    ));
    manylinux_platforms(&glibc, &arch).ok_or_else(|| {
        PluginError::new(format!(
            "cannot read this machine's glibc version {glibc:?}"
        ))
        .with_help("set [target] glibc = \"2.17\"")
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use airgap_plugin_api::PythonEnvironment;

    #[test]
    fn manylinux_tags_go_down_to_2_5_with_aliases() {
        let tags = manylinux_platforms("2.17", "x86_64").unwrap();
        assert_eq!(tags[0], "manylinux_2_17_x86_64");
        assert_eq!(tags[1], "manylinux2014_x86_64");
        assert!(tags.contains(&"manylinux2010_x86_64".to_string()));
        assert!(tags.contains(&"manylinux1_x86_64".to_string()));
        assert_eq!(tags.last().unwrap(), "linux_x86_64");
        assert!(!manylinux_platforms("2.17", "aarch64")
            .unwrap()
            .iter()
            .any(|t| t.contains("2010")));
        assert!(manylinux_platforms("musl", "x86_64").is_none());
    }

    #[test]
    fn given_platforms_are_completed() {
        let p = expand_platforms(&["manylinux2014_x86_64".to_string()], "x86_64");
        assert_eq!(p[0], "manylinux2014_x86_64");
        assert!(p.contains(&"manylinux_2_17_x86_64".to_string()));
        assert!(p.contains(&"manylinux1_x86_64".to_string()));
        assert_eq!(p.last().unwrap(), "linux_x86_64");
        let p = expand_platforms(&["manylinux_2_28_aarch64".to_string()], "x86_64");
        assert!(p.contains(&"manylinux2014_aarch64".to_string()), "{p:?}");
        assert_eq!(p.last().unwrap(), "linux_aarch64");
        let p = expand_platforms(&["manylinux_2_28_x86_64".to_string()], "x86_64");
        assert!(p.contains(&"manylinux2010_x86_64".to_string()), "{p:?}");
        assert_eq!(p.last().unwrap(), "linux_x86_64");
        let p = expand_platforms(&["macosx_11_0_arm64".to_string()], "x86_64");
        assert_eq!(p, ["macosx_11_0_arm64"]);
    }

    #[test]
    fn target_fields_win_over_the_environment() {
        let mut request = ContributeRequest::default();
        request.target.python = Some("3.6.15".into());
        request.target.glibc = Some("2.17".into());
        let mut env = PythonEnvironment::default();
        env.version = "3.11.7".into();
        env.abi = "cp311".into();
        env.implementation = "cp".into();
        request.python = Some(env);
        let d = TargetTags::from_request(&request, || None).unwrap();
        assert_eq!(d.tags.version, "3.6.15");
        // The environment is another Python: its abi does not describe the target.
        assert_eq!(d.tags.abi, "cp36m");
        assert!(d.warnings.is_empty());
    }

    #[test]
    fn a_version_without_micro_warns() {
        let mut request = ContributeRequest::default();
        request.target.python = Some("3.9".into());
        request.target.glibc = Some("2.28".into());
        let d = TargetTags::from_request(&request, || None).unwrap();
        assert_eq!(d.tags.abi, "cp39");
        assert!(d.warnings[0].contains("micro"));
    }

    #[test]
    fn no_version_is_a_clear_error() {
        let err = TargetTags::from_request(&ContributeRequest::default(), || None).unwrap_err();
        assert!(err.message.contains("no target python version"));
    }
}
