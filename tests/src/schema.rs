//! Published JSON schemas, judged by an independent validator.

use std::process::Command;

/// The verdict of an independent validator (`jsonschema`, in the tools venv) on `doc`, an
/// `airgap inspect --json` output, against the published `docs/schema/inspect-1.json`: `Ok`
/// or the validator's messages. Panics when the validator itself is missing (no silent skip:
/// `cargo xtask setup` installs it).
pub fn validate_inspect(doc: &serde_json::Value) -> Result<(), String> {
    let dir = crate::tempdir();
    let path = dir.path().join("doc.json");
    std::fs::write(&path, serde_json::to_vec(doc).unwrap()).unwrap();
    let schema = crate::workspace_root().join("docs/schema/inspect-1.json");
    let script = r#"
import json, sys
try:
    import jsonschema
except ImportError as e:
    print("MISSING", e)
    sys.exit(3)
schema = json.load(open(sys.argv[1]))
jsonschema.Draft202012Validator.check_schema(schema)
errors = sorted(jsonschema.Draft202012Validator(schema).iter_errors(json.load(open(sys.argv[2]))), key=str)
for e in errors:
    print(list(e.absolute_path), e.message)
sys.exit(1 if errors else 0)
"#;
    let out = Command::new(crate::python::tools())
        .arg("-c")
        .arg(script)
        .arg(&schema)
        .arg(&path)
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stdout).into_owned()
        + String::from_utf8_lossy(&out.stderr).as_ref();
    match out.status.code() {
        Some(0) => Ok(()),
        Some(1) => Err(said),
        _ => panic!(
            "the schema validator did not run ({}): `cargo xtask setup` installs jsonschema \
             into the tools venv (xtask/setup/pip.txt)\n{said}",
            crate::python::tools().display()
        ),
    }
}
