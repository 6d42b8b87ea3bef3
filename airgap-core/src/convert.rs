//! The one place where the plugin API's types become the bundle format's and the engine's, and
//! back: the format (`airgap_archive::format::model`) and the plan
//! (`airgap_archive::pack::entry`) own their types, so that an ABI minor that adds a field
//! changes neither FORMAT 1 nor the static unpacker. A field added to the API reaches a
//! bundle only when it is added here and to the format, with a new format version if readers
//! must know it.

use airgap_archive::format::model as format;
use airgap_archive::pack::entry as plan;
use airgap_plugin_api as api;

use crate::Error;

/// A plugin's entry, as the plan takes it (moved: a source may name 100,000 paths). A kind
/// a newer API minor added is refused by name, never guessed at.
pub(crate) fn entry(plugin: &str, e: api::Entry) -> Result<plan::Entry, Error> {
    let kind = match e.kind {
        api::EntryKind::Path { source, exclude } => plan::EntryKind::Path { source, exclude },
        api::EntryKind::Symlink { target } => plan::EntryKind::Symlink { target },
        api::EntryKind::Dir => plan::EntryKind::Dir,
        _ => return Err(unknown(plugin, &format!("an entry (at {:?})", e.dest))),
    };
    Ok(plan::Entry {
        dest: e.dest,
        kind,
        mode: e.mode,
        package: e.package,
        replace: e.replace,
    })
}

/// What a plugin built against a newer API than this host's may bring.
fn unknown(plugin: &str, what: &str) -> Error {
    Error::PluginContract {
        plugin: plugin.to_string(),
        reason: format!(
            "{what} of a kind this airgap does not know: the plugin is newer than the host"
        ),
    }
}

/// A planned path, as a Finish-stage plugin receives it in `request.earlier` or a page.
pub(crate) fn bundle_file(f: plan::PlannedFile) -> api::BundleFile {
    let mut file = api::BundleFile::new(f.path, file_kind(f.kind), f.mode, f.plugin);
    if let Some(source) = f.source {
        file = file.with_source(source, f.size);
    }
    if let Some(package) = f.package {
        file = file.with_package(package);
    }
    file
}

/// A planned path's kind, in the API's words.
pub(crate) fn file_kind(k: plan::PlannedKind) -> api::FileKind {
    match k {
        plan::PlannedKind::File => api::FileKind::File,
        plan::PlannedKind::Dir => api::FileKind::Dir,
        plan::PlannedKind::Symlink { target } => api::FileKind::Symlink { target },
    }
}

/// The target, as the manifest records it.
pub(crate) fn target(t: &api::TargetProfile) -> format::TargetProfile {
    format::TargetProfile {
        python: t.python.clone(),
        implementation: t.implementation.clone(),
        abi: t.abi.clone(),
        platforms: t.platforms.clone(),
        glibc: t.glibc.clone(),
        prefix: t.prefix.clone(),
        arch: t.arch.clone(),
        system: t.system.as_ref().map(|s| format::TargetSystem {
            source: s.source.clone(),
            libraries: s.libraries.clone(),
            versions: s.versions.clone(),
            nvidia_driver: s.nvidia_driver.clone(),
        }),
    }
}

/// A recorded target, as the check takes it (checking a bundle against its own target).
pub(crate) fn api_target(t: &format::TargetProfile) -> api::TargetProfile {
    let mut out = api::TargetProfile::default();
    out.python.clone_from(&t.python);
    out.implementation.clone_from(&t.implementation);
    out.abi.clone_from(&t.abi);
    out.platforms.clone_from(&t.platforms);
    out.glibc.clone_from(&t.glibc);
    out.prefix.clone_from(&t.prefix);
    out.arch.clone_from(&t.arch);
    out.system = t.system.as_ref().map(|s| {
        let mut system = api::TargetSystem::default();
        system.source.clone_from(&s.source);
        system.libraries.clone_from(&s.libraries);
        system.versions.clone_from(&s.versions);
        system.nvidia_driver.clone_from(&s.nvidia_driver);
        system
    });
    out
}

/// The Python environment, as the manifest records it.
pub(crate) fn python(p: &api::PythonEnvironment) -> format::PythonEnvironment {
    format::PythonEnvironment {
        prefix: p.prefix.clone(),
        executable: p.executable.clone(),
        source_prefix: p.source_prefix.clone(),
        source_executable: p.source_executable.clone(),
        version: p.version.clone(),
        implementation: p.implementation.clone(),
        abi: p.abi.clone(),
        platforms: p.platforms.clone(),
        site_packages: p.site_packages.clone(),
    }
}

/// A recorded Python environment, as the check takes it.
pub(crate) fn api_python(p: &format::PythonEnvironment) -> api::PythonEnvironment {
    let mut out = api::PythonEnvironment::default();
    out.prefix.clone_from(&p.prefix);
    out.executable.clone_from(&p.executable);
    out.source_prefix.clone_from(&p.source_prefix);
    out.source_executable.clone_from(&p.source_executable);
    out.version.clone_from(&p.version);
    out.implementation.clone_from(&p.implementation);
    out.abi.clone_from(&p.abi);
    out.platforms.clone_from(&p.platforms);
    out.site_packages.clone_from(&p.site_packages);
    out
}

/// A package, as the manifest records it.
pub(crate) fn package(p: api::Package) -> format::Package {
    format::Package {
        id: p.id,
        name: p.name,
        version: p.version,
        kind: p.kind,
        origin: p.origin,
        sha256: p.sha256,
        license: p.license,
        purl: p.purl,
    }
}

/// Whether a plugin's purl is a package URL (`pkg:TYPE/NAME@VERSION`), by the purl spec's
/// parser: one that is not never reaches the SBOM.
pub(crate) fn valid_purl(purl: &str) -> bool {
    purl.parse::<purl::GenericPurl<String>>().is_ok()
}

/// An install step, as the manifest records it; a kind a newer API minor added is refused.
pub(crate) fn step(plugin: &str, s: api::InstallStep) -> Result<format::InstallStep, Error> {
    Ok(match s {
        api::InstallStep::RewritePrefix {
            old_prefix,
            root,
            files,
        } => format::InstallStep::RewritePrefix {
            old_prefix,
            root,
            files: files
                .into_iter()
                .map(|f| format::PrefixFile {
                    path: f.path,
                    mode: prefix_mode(f.mode),
                    capacity: f.capacity,
                })
                .collect(),
        },
        api::InstallStep::Run {
            description,
            program,
            args,
            env,
        } => format::InstallStep::Run {
            description,
            program,
            args,
            env,
        },
        _ => return Err(unknown(plugin, "an install step")),
    })
}

fn prefix_mode(m: api::PrefixMode) -> format::PrefixMode {
    match m {
        api::PrefixMode::Text => format::PrefixMode::Text,
        api::PrefixMode::Binary => format::PrefixMode::Binary,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every field of a target with a probed system survives the round trip, and the manifest's
    /// TOML of the format's type is the API type's, byte for byte (FORMAT 1 did not change).
    #[test]
    fn a_target_converts_both_ways_and_serialises_as_the_api_did() {
        let mut system = api::TargetSystem::default();
        system.source = "probe".into();
        system
            .libraries
            .insert("libz.so.1".into(), vec!["ZLIB_1.2.9".into()]);
        system.versions.insert("GLIBC".into(), "2.36".into());
        system.nvidia_driver = Some("535.104.05".into());
        let mut t = api::TargetProfile::default();
        t.python = Some("3.11.7".into());
        t.implementation = Some("cp".into());
        t.abi = Some("cp311".into());
        t.platforms = vec!["manylinux_2_28_x86_64".into(), "linux_x86_64".into()];
        t.glibc = Some("2.28".into());
        t.prefix = Some("/opt/x".into());
        t.arch = Some("x86_64".into());
        t.system = Some(system);
        let recorded = target(&t);
        assert_eq!(api_target(&recorded), t);
        assert_eq!(
            toml::to_string(&recorded).expect("format"),
            toml::to_string(&t).expect("api")
        );
        t.system = None;
        assert_eq!(
            toml::to_string(&target(&t)).expect("format"),
            toml::to_string(&t).expect("api")
        );
    }

    /// Steps, packages and the environment serialise as the API's did.
    #[test]
    fn steps_packages_and_python_serialise_as_the_api_did() {
        let steps = vec![
            api::InstallStep::RewritePrefix {
                old_prefix: "/build/env".into(),
                root: "env".into(),
                files: vec![
                    api::PrefixFile::new("env/bin/x", api::PrefixMode::Text),
                    api::PrefixFile::new("env/lib/y.so", api::PrefixMode::Binary)
                        .with_capacity(255),
                ],
            },
            api::InstallStep::Run {
                description: "install".into(),
                program: "{python}".into(),
                args: vec!["-m".into(), "pip".into()],
                env: [("A".to_string(), "b".to_string())].into(),
            },
        ];
        for s in steps {
            let api_json = serde_json::to_string(&s).expect("api");
            let recorded = step("t", s).expect("a known step");
            assert_eq!(serde_json::to_string(&recorded).expect("format"), api_json);
        }
        let mut p = api::Package::default();
        p.id = "conda:x-1".into();
        p.name = "x".into();
        p.version = "1".into();
        p.kind = "conda".into();
        p.origin = "local".into();
        p.sha256 = Some("ab".into());
        let api_json = serde_json::to_string(&p).expect("api");
        assert_eq!(
            serde_json::to_string(&package(p)).expect("format"),
            api_json
        );
        let mut env = api::PythonEnvironment::default();
        env.prefix = "env".into();
        env.executable = "env/bin/python3".into();
        env.source_prefix = "/build/env".into();
        env.version = "3.11.7".into();
        env.platforms = vec!["linux_x86_64".into()];
        let recorded = python(&env);
        assert_eq!(api_python(&recorded), env);
        assert_eq!(
            serde_json::to_string(&recorded).expect("format"),
            serde_json::to_string(&env).expect("api")
        );
    }
}
