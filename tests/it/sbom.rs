//! The bill of materials through the real CLI, checked by independent readers: the CycloneDX
//! JSON schema validator of `cyclonedx-python-lib`, SPDX's own `pyspdxtools`, Python's
//! `importlib.metadata` for the licences of distributions, dpkg and the Debian copyright
//! files for the system libraries, and the `minisign` tool for the signature.
#![allow(clippy::unwrap_used)]

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use airgap_tests::conda::{base_python, venv};
use airgap_tests::{airgap, run, tempdir, with_build_plugins};
use serde_json::Value;

use crate::seal_support::{keygen, tool};

/// A real environment of every source: a venv of a whole CPython (the conda source, which
/// brings its base and the distributions installed in it), wheels from PyPI (pip), a data
/// file (files), and the system libraries the interpreter links (syslibs, implied).
fn real_bundle(dir: &Path, extra: &[&str]) -> (PathBuf, String) {
    let env = dir.join("env");
    venv(&base_python(), &env, &["markupsafe", "attrs", "packaging"]);
    fs::write(dir.join("notes.txt"), "read me\n").unwrap();
    let config = dir.join("airgap.toml");
    fs::write(
        &config,
        "[bundle]\nname = \"sb\"\n\n[sources.conda]\nprefix = \"env\"\nstdlib_tests = false\n\
         base_exclude = [\"**/*.a\"]\n\n[sources.pip]\npackages = [\"six\", \"idna\"]\n\n\
         [sources.files]\npaths = [\"notes.txt\"]\n",
    )
    .unwrap();
    let out = dir.join("sb.tar.gz");
    let done = run(with_build_plugins(airgap())
        .args(["bundle", "-c"])
        .arg(&config)
        .arg("-o")
        .arg(&out)
        .args(extra))
    .success();
    (out, done.stderr)
}

fn json(path: &Path) -> Value {
    serde_json::from_slice(&fs::read(path).unwrap()).unwrap()
}

/// Run a Python snippet with the tools venv (where setup installs the validators).
fn tools_python(code: &str, args: &[&Path]) -> airgap_tests::Done {
    run(Command::new(airgap_tests::python::tools())
        .arg("-c")
        .arg(code)
        .args(args))
}

/// The CycloneDX 1.5 schema, strictly, by the reference Python library.
const VALIDATE_CDX: &str = r#"
import sys
try:
    from cyclonedx.schema import SchemaVersion
    from cyclonedx.validation.json import JsonStrictValidator
except ImportError as e:
    sys.exit(f"cyclonedx-python-lib[json-validation] is not installed in the tools venv ({e}): run `cargo xtask setup`")
errors = JsonStrictValidator(SchemaVersion.V1_5).validate_str(open(sys.argv[1]).read())
if errors is not None:
    sys.exit(f"not valid CycloneDX 1.5: {errors}")
"#;

#[test]
fn the_sbom_of_a_real_environment_validates_and_lists_every_package() {
    let tmp = tempdir();
    let (bundle, stderr) = real_bundle(tmp.path(), &["--spdx"]);
    let cdx = tmp.path().join("sb.cdx.json");
    let spdx = tmp.path().join("sb.spdx.json");
    assert!(stderr.contains("SBOM"), "{stderr}");
    tools_python(VALIDATE_CDX, &[&cdx]).success();
    let pyspdxtools = airgap_tests::python::tools().with_file_name("pyspdxtools");
    assert!(
        pyspdxtools.is_file(),
        "spdx-tools is not installed in the tools venv: run `cargo xtask setup`"
    );
    run(Command::new(&pyspdxtools).arg("-i").arg(&spdx)).success();

    // Every package `inspect` lists is a component, by its id, name and version.
    let inspected: Value = serde_json::from_str(
        &run(airgap().args(["inspect", "--json"]).arg(&bundle))
            .success()
            .stdout,
    )
    .unwrap();
    let packages = inspected["packages"].as_array().unwrap();
    let doc = json(&cdx);
    let components = doc["components"].as_array().unwrap();
    assert_eq!(components.len(), packages.len());
    let plugins: std::collections::BTreeSet<&str> = packages
        .iter()
        .map(|p| p["plugin"].as_str().unwrap())
        .collect();
    for plugin in ["conda", "pip", "files", "syslibs"] {
        assert!(
            plugins.contains(plugin),
            "no package of {plugin}: {plugins:?}"
        );
    }
    for p in packages {
        let p = &p["package"];
        let c = components
            .iter()
            .find(|c| c["bom-ref"] == p["id"])
            .unwrap_or_else(|| panic!("no component for {}", p["id"]));
        assert_eq!(c["name"], p["name"]);
        if p["version"] != "" {
            assert_eq!(c["version"], p["version"]);
        }
        if let Some(sha) = p["sha256"].as_str() {
            assert_eq!(c["hashes"][0]["content"], sha, "{}", p["id"]);
        }
    }
    // The SPDX document has them too (and the bundle itself).
    assert_eq!(
        json(&spdx)["packages"].as_array().unwrap().len(),
        packages.len() + 1
    );

    // Purls by each source's type.
    let purl = |id: &str| -> String {
        components.iter().find(|c| c["bom-ref"] == id).unwrap()["purl"]
            .as_str()
            .unwrap_or("")
            .to_string()
    };
    let six = packages
        .iter()
        .find(|p| p["package"]["name"] == "six")
        .unwrap();
    assert!(
        purl(six["package"]["id"].as_str().unwrap()).starts_with("pkg:pypi/six@"),
        "{}",
        purl(six["package"]["id"].as_str().unwrap())
    );
    let system: Vec<&Value> = packages
        .iter()
        .map(|p| &p["package"])
        .filter(|p| p["kind"] == "system")
        .collect();
    assert!(!system.is_empty(), "syslibs grafted nothing: {stderr}");

    // The inside copy is the same document.
    let inside = run(Command::new("tar")
        .arg("-xOzf")
        .arg(&bundle)
        .arg("sb/.airgap/sbom.cdx.json"))
    .success();
    assert_eq!(inside.stdout.as_bytes(), fs::read(&cdx).unwrap().as_slice());

    // `inspect --sbom -` makes the same document from the manifest alone.
    let again = run(airgap().args(["inspect", "--sbom", "-"]).arg(&bundle)).success();
    assert_eq!(again.stdout.as_bytes(), fs::read(&cdx).unwrap().as_slice());

    licences_match_the_metadata(tmp.path(), &doc, packages);
    system_libraries_name_their_debian_package(&doc, &system);
}

/// The licence of each distribution is what its metadata declares, read by Python's own
/// `importlib.metadata` (License-Expression, a short License, else the License classifiers).
fn licences_match_the_metadata(dir: &Path, doc: &Value, packages: &[Value]) {
    let read = r#"
import importlib.metadata as m, json, sys
out = {}
for d in m.distributions():
    md = d.metadata
    lic = md.get("License-Expression")
    if not lic:
        l = (md.get("License") or "").strip()
        if l and "\n" not in l and len(l) <= 100 and l.lower() not in ("unknown", "none"):
            lic = l
    if not lic:
        names = [c.split("::")[-1].strip() for c in md.get_all("Classifier") or []
                 if c.startswith("License ::") and c.split("::")[-1].strip() != "OSI Approved"]
        lic = ", ".join(names) or None
    out[md["Name"]] = lic
print(json.dumps(out))
"#;
    let python = dir.join("env/bin/python");
    let declared: Value = serde_json::from_str(
        &run(Command::new(&python).arg("-c").arg(read))
            .success()
            .stdout,
    )
    .unwrap();
    let mut compared = 0;
    for p in packages.iter().map(|p| &p["package"]) {
        if p["kind"] != "python" {
            continue;
        }
        let Some(want) = declared.get(p["name"].as_str().unwrap()) else {
            continue;
        };
        let c = doc["components"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["bom-ref"] == p["id"])
            .unwrap();
        let got = &c["licenses"][0];
        let text = got["license"]["id"]
            .as_str()
            .or(got["license"]["name"].as_str())
            .or(got["expression"].as_str());
        assert_eq!(text, want.as_str(), "licence of {}", p["name"]);
        compared += 1;
    }
    assert!(compared >= 3, "compared only {compared} licences");
}

/// Each grafted library's purl names the Debian package dpkg says owns it, and its licence
/// is the one of `Files: *` in that package's copyright file (or none).
fn system_libraries_name_their_debian_package(doc: &Value, system: &[&Value]) {
    let mut with_deb = 0;
    for p in system {
        let origin = p["origin"].as_str().unwrap();
        let Some(path) = origin.split(" (debian package").next() else {
            continue;
        };
        let owner = Command::new("dpkg").arg("-S").arg(path).output().unwrap();
        if !owner.status.success() {
            continue;
        }
        let owner = String::from_utf8_lossy(&owner.stdout);
        let deb = owner.split(':').next().unwrap().trim();
        let c = doc["components"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["bom-ref"] == p["id"])
            .unwrap();
        let purl = c["purl"].as_str().unwrap_or("");
        assert!(
            purl.starts_with(&format!("pkg:deb/debian/{deb}@")),
            "{path}: {purl} (dpkg: {deb})"
        );
        with_deb += 1;
    }
    assert!(
        with_deb > 0,
        "no grafted library came from a Debian package"
    );
}

#[test]
fn the_sbom_is_the_same_for_the_same_inputs_and_signed_with_the_bundle() {
    let tmp = tempdir();
    let keys = tmp.path().join("keys");
    let (_, _, sk, pk) = keygen(&keys, "team");
    let (_, stderr) = real_bundle(tmp.path(), &["--sign", sk.to_str().unwrap()]);
    let cdx = tmp.path().join("sb.cdx.json");
    let first = fs::read(&cdx).unwrap();
    assert!(tmp.path().join("sb.cdx.json.minisig").is_file(), "{stderr}");
    run(Command::new(tool("minisign"))
        .args(["-V", "-q", "-p"])
        .arg(&pk)
        .arg("-m")
        .arg(&cdx))
    .success();
    // Bundling again over the first bundle: the SBOM beside it is not an input, and the
    // document is byte for byte the same.
    real_bundle_again(tmp.path());
    assert_eq!(fs::read(&cdx).unwrap(), first);
}

fn real_bundle_again(dir: &Path) {
    run(with_build_plugins(airgap())
        .args(["bundle", "-c"])
        .arg(dir.join("airgap.toml"))
        .arg("-o")
        .arg(dir.join("sb.tar.gz")))
    .success();
}

/// A conda environment (py-rattler, from the local test channel) and an in-house plugin's
/// artifacts: each package keeps the identity and licence its own source declared.
#[test]
fn conda_packages_and_in_house_artifacts_carry_their_purls_and_licences() {
    use airgap_tests::conda;
    if !conda::have_rattler() {
        return airgap_tests::skip(
            "py-rattler is not importable by the tools python (cargo xtask setup installs it)",
        );
    }
    let tmp = tempdir();
    let prefix = tmp.path().join("env");
    conda::conda_env(&prefix, &tmp.path().join("pkgs"));
    let store = tmp.path().join("store");
    fs::create_dir_all(store.join("artifacts")).unwrap();
    fs::write(store.join("artifacts/model.bin"), "weights\n").unwrap();
    fs::write(
        store.join("index.toml"),
        "[[artifact]]\nname = \"acme-model\"\nversion = \"1.2.0\"\npath = \"artifacts/model.bin\"\n\
         license = \"LicenseRef-Acme-Internal\"\n",
    )
    .unwrap();
    let config = tmp.path().join("airgap.toml");
    fs::write(
        &config,
        "[bundle]\nname = \"c\"\n\n[sources.conda]\nprefix = \"env\"\n\n\
         [sources.acme-store]\nindex = \"store/index.toml\"\n",
    )
    .unwrap();
    let out = tmp.path().join("c.tar.gz");
    run(with_build_plugins(airgap())
        .args(["bundle", "--no-check", "-c"])
        .arg(&config)
        .arg("-o")
        .arg(&out))
    .success();
    let cdx = tmp.path().join("c.cdx.json");
    tools_python(VALIDATE_CDX, &[&cdx]).success();
    let doc = json(&cdx);
    let components = doc["components"].as_array().unwrap();
    let find = |name: &str| {
        components
            .iter()
            .find(|c| c["name"] == name)
            .unwrap_or_else(|| panic!("no component {name}"))
    };
    // What the environment's conda-meta record says of hello-tools, read here by Python.
    let record = fs::read_dir(prefix.join("conda-meta"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.to_string_lossy().contains("hello-tools-"))
        .unwrap();
    let meta = json(&record);
    let tools = find("hello-tools");
    let purl = tools["purl"].as_str().unwrap();
    assert!(
        purl.starts_with(&format!(
            "pkg:conda/hello-tools@{}?build={}",
            meta["version"].as_str().unwrap(),
            meta["build"].as_str().unwrap()
        )),
        "{purl}"
    );
    assert!(
        purl.contains(&format!("subdir={}", meta["subdir"].as_str().unwrap())),
        "{purl}"
    );
    assert_eq!(
        tools["licenses"][0]["license"]["id"], meta["license"],
        "{tools}"
    );
    let model = find("acme-model");
    assert_eq!(
        model["purl"].as_str(),
        Some("pkg:generic/acme/acme-model@1.2.0")
    );
    assert_eq!(
        model["licenses"][0]["expression"]
            .as_str()
            .or(model["licenses"][0]["license"]["id"].as_str()),
        Some("LicenseRef-Acme-Internal"),
        "{model}"
    );
}
