//! `airgap inspect --json` against its published schema (`docs/schema/inspect-1.json`), judged
//! by an independent validator (`jsonschema` from the package index, in the tools venv): a
//! bundle whose manifest holds every kind of record, and a bundle made by the real CLI.

#![allow(clippy::unwrap_used)]

use std::fs;
use std::path::Path;
use std::process::Command;

use airgap_archive::format::model::{
    InstallStep, Package, PrefixFile, PrefixMode, PythonEnvironment, TargetProfile, TargetSystem,
};
use airgap_archive::{Entry, PackageRecord, PlanOptions, StepRecord};
use airgap_tests::archive::{input, plan, write};
use airgap_tests::schema::validate_inspect as validate;
use airgap_tests::{run, tempdir};

fn airgap() -> Command {
    airgap_tests::with_build_plugins(airgap_tests::airgap())
}

fn inspect_json(bundle: &Path) -> serde_json::Value {
    let done = run(airgap().args(["inspect", "--json"]).arg(bundle)).success();
    serde_json::from_str(&done.stdout).unwrap()
}

/// A manifest with every kind of record the schema describes: a probed target, a Python
/// environment, packages with and without hashes, both kinds of step, a capacity.
fn every_record(dir: &Path) -> std::path::PathBuf {
    let tree = dir.join("tree");
    fs::create_dir_all(tree.join("env/bin")).unwrap();
    fs::write(tree.join("env/bin/python3"), "#!/build/env/bin/python3\n").unwrap();
    fs::write(tree.join("env/bin/tool"), "/build/env\0").unwrap();
    let p = plan(&[Entry::path(&tree, "")], PlanOptions::default()).unwrap();
    let mut m = input("every");
    m.target = TargetProfile {
        python: Some("3.11.7".into()),
        implementation: Some("cp".into()),
        abi: Some("cp311".into()),
        platforms: vec!["manylinux_2_28_x86_64".into()],
        glibc: Some("2.28".into()),
        prefix: Some("/opt/every".into()),
        arch: Some("x86_64".into()),
        system: Some(TargetSystem {
            source: "probe".into(),
            libraries: [("libz.so.1".to_string(), vec!["ZLIB_1.2.9".to_string()])].into(),
            versions: [("GLIBC".to_string(), "2.28".to_string())].into(),
            nvidia_driver: None,
        }),
    };
    m.python = Some(PythonEnvironment {
        prefix: "env".into(),
        executable: "env/bin/python3".into(),
        source_prefix: "/build/env".into(),
        source_executable: "/build/env/bin/python3".into(),
        version: "3.11.7".into(),
        implementation: "cp".into(),
        abi: "cp311".into(),
        platforms: vec!["linux_x86_64".into()],
        site_packages: "env/lib/python3.11/site-packages".into(),
    });
    m.packages = vec![
        PackageRecord {
            plugin: "conda".into(),
            package: Package {
                id: "conda:zlib-1.3".into(),
                name: "zlib".into(),
                version: "1.3".into(),
                kind: "conda".into(),
                origin: "local".into(),
                sha256: Some("ab".repeat(32)),
                license: Some("Zlib".into()),
                purl: Some("pkg:conda/zlib@1.3".into()),
            },
        },
        PackageRecord {
            plugin: "files".into(),
            package: Package {
                id: "files:x".into(),
                name: "x".into(),
                ..Package::default()
            },
        },
    ];
    m.install_steps = vec![
        StepRecord {
            plugin: "conda".into(),
            step: InstallStep::RewritePrefix {
                old_prefix: "/build/env".into(),
                root: "env".into(),
                files: vec![
                    PrefixFile::new("env/bin/python3", PrefixMode::Text),
                    PrefixFile::new("env/bin/tool", PrefixMode::Binary).with_capacity(255),
                ],
            },
        },
        StepRecord {
            plugin: "pip".into(),
            step: InstallStep::Run {
                description: "say hello".into(),
                program: "sh".into(),
                args: vec!["-c".into(), "echo hello".into()],
                env: [("A".to_string(), "b".to_string())].into(),
            },
        },
    ];
    m.warnings = vec!["a warning".into()];
    let out = dir.join("every.tar.gz");
    write(&p, m, &out, None);
    out
}

#[test]
fn inspect_json_of_every_kind_of_record_validates_against_the_published_schema() {
    let tmp = tempdir();
    let json = inspect_json(&every_record(tmp.path()));
    assert_eq!(json["schema"], 1);
    assert_eq!(json["install_steps"].as_array().map(Vec::len), Some(2));
    validate(&json).unwrap_or_else(|e| panic!("{e}\n{json:#}"));

    // The validator judges: an unknown key, a wrong type and an unknown step are refused.
    let mut extra = json.clone();
    extra["target"]["surprise"] = true.into();
    assert!(validate(&extra).is_err(), "an unknown key passed");
    let mut typed = json.clone();
    typed["files"] = "many".into();
    assert!(validate(&typed).is_err(), "a wrong type passed");
    let mut step = json;
    step["install_steps"][1]["step"]["step"] = "format_disk".into();
    assert!(validate(&step).is_err(), "an unknown step passed");
}

#[test]
fn inspect_json_of_a_bundle_the_cli_made_validates_against_the_published_schema() {
    let tmp = tempdir();
    let dir = tmp.path();
    fs::create_dir_all(dir.join("data/sub")).unwrap();
    fs::write(dir.join("data/sub/a.txt"), "a\n").unwrap();
    std::os::unix::fs::symlink("sub/a.txt", dir.join("data/link")).unwrap();
    fs::write(
        dir.join("airgap.toml"),
        "[bundle]\nname = \"cli\"\n\n[sources.files]\npaths = [\"data/\"]\n",
    )
    .unwrap();
    let out = dir.join("cli.tar.gz");
    run(airgap()
        .args(["bundle", "--no-check", "-c"])
        .arg(dir.join("airgap.toml"))
        .arg("-o")
        .arg(&out)
        .arg("--unpacker")
        .arg(airgap_tests::bin("airgap-unpack")))
    .success();
    let json = inspect_json(&out);
    assert_eq!(json["name"], "cli");
    validate(&json).unwrap_or_else(|e| panic!("{e}\n{json:#}"));
}
