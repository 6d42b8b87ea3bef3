//! The shape of the house, checked from the code itself: which crate may depend on which
//! (from `cargo metadata`), and that the archive crate's modules use each other without a
//! circle, with packing and installing meeting only in the format and the common parts.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;

use airgap_tests::workspace_root;

/// Every package the named one depends on for building and running (not its dev-dependencies),
/// transitively, from the resolved graph of `cargo metadata`.
fn runtime_closure(meta: &serde_json::Value, name: &str) -> BTreeSet<String> {
    let packages = meta["packages"].as_array().expect("packages");
    let name_of: BTreeMap<&str, &str> = packages
        .iter()
        .map(|p| {
            (
                p["id"].as_str().expect("id"),
                p["name"].as_str().expect("name"),
            )
        })
        .collect();
    let nodes = meta["resolve"]["nodes"].as_array().expect("resolve");
    let deps: BTreeMap<&str, Vec<&str>> = nodes
        .iter()
        .map(|n| {
            let runtime = n["deps"]
                .as_array()
                .expect("deps")
                .iter()
                .filter(|d| {
                    d["dep_kinds"]
                        .as_array()
                        .expect("dep_kinds")
                        .iter()
                        .any(|k| k["kind"].is_null() || k["kind"] == "build")
                })
                .map(|d| d["pkg"].as_str().expect("pkg"))
                .collect();
            (n["id"].as_str().expect("id"), runtime)
        })
        .collect();
    let start = name_of
        .iter()
        .find(|(_, n)| **n == name)
        .map(|(id, _)| *id)
        .unwrap_or_else(|| panic!("{name} is not in the workspace"));
    let mut seen = BTreeSet::new();
    let mut todo = vec![start];
    while let Some(id) = todo.pop() {
        for dep in deps.get(id).into_iter().flatten() {
            if seen.insert(name_of[dep].to_string()) {
                todo.push(dep);
            }
        }
    }
    seen
}

#[test]
fn the_archive_and_the_unpacker_do_not_depend_on_the_plugin_api() {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let out = Command::new(cargo)
        // This platform's graph only: the others' crates (Windows consoles) are not downloaded.
        .args([
            "metadata",
            "--format-version",
            "1",
            "--offline",
            "--filter-platform",
        ])
        .arg(format!("{}-unknown-linux-gnu", std::env::consts::ARCH))
        .arg("--manifest-path")
        .arg(workspace_root().join("Cargo.toml"))
        .output()
        .expect("cargo metadata runs");
    assert!(
        out.status.success(),
        "cargo metadata failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let meta: serde_json::Value = serde_json::from_slice(&out.stdout).expect("metadata json");
    for krate in ["airgap-archive", "airgap-unpack"] {
        let deps = runtime_closure(&meta, krate);
        assert!(
            deps.contains("flate2"),
            "the closure of {krate} is not read right: {deps:?}"
        );
        assert!(
            !deps.contains("airgap-plugin-api"),
            "{krate} depends on the plugin API: {deps:?}"
        );
    }
    assert!(runtime_closure(&meta, "airgap-core").contains("airgap-plugin-api"));
}

/// The module a source file of `src` is (`format/manifest/records.rs` is
/// `format::manifest::records`, `pack/mod.rs` is `pack`).
fn module_of(src: &Path, file: &Path) -> String {
    let rel = file.strip_prefix(src).expect("inside src");
    let mut parts: Vec<String> = rel
        .iter()
        .map(|c| c.to_string_lossy().trim_end_matches(".rs").to_string())
        .collect();
    if matches!(parts.last().map(String::as_str), Some("mod" | "lib")) {
        parts.pop();
    }
    parts.join("::")
}

/// The crate's modules, each with the modules its code (not its comments) names through
/// `crate::` paths.
fn module_uses(src: &Path) -> BTreeMap<String, BTreeSet<String>> {
    let files: Vec<_> = walkdir::WalkDir::new(src)
        .into_iter()
        .map(|e| e.expect("walk").into_path())
        .filter(|p| p.extension().is_some_and(|e| e == "rs"))
        .collect();
    let modules: BTreeSet<String> = files.iter().map(|f| module_of(src, f)).collect();
    let mut uses = BTreeMap::new();
    for file in &files {
        let text = std::fs::read_to_string(file).expect("read");
        let mut named = BTreeSet::new();
        for line in text.lines().filter(|l| !l.trim_start().starts_with("//")) {
            for (at, _) in line.match_indices("crate::") {
                let path: String = line[at + "crate::".len()..]
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_' || *c == ':')
                    .collect();
                let segments: Vec<&str> = path.split("::").filter(|s| !s.is_empty()).collect();
                // The longest prefix that is a module of the crate.
                if let Some(m) = (1..=segments.len())
                    .rev()
                    .map(|n| segments[..n].join("::"))
                    .find(|m| modules.contains(m))
                {
                    named.insert(m);
                }
            }
        }
        uses.insert(module_of(src, file), named);
    }
    uses
}

/// Is `inner` the module `outer` or one of its descendants? A module and its own children
/// are one unit: a child using its parent is no circle.
fn within(inner: &str, outer: &str) -> bool {
    outer.is_empty() || inner == outer || inner.starts_with(&format!("{outer}::"))
}

#[test]
fn the_archive_crate_has_no_module_circle_and_pack_and_install_meet_only_in_the_format() {
    let src = workspace_root().join("airgap-archive/src");
    let uses = module_uses(&src);
    assert!(
        uses.get("install::read")
            .is_some_and(|u| u.contains("format::manifest")),
        "the module graph is not read right: {uses:?}"
    );
    // Edges between distinct units; a circle is a path back to where it started.
    let edges: BTreeMap<&str, Vec<&str>> = uses
        .iter()
        .map(|(m, named)| {
            let to = named
                .iter()
                .filter(|n| !within(n, m) && !within(m, n))
                .map(String::as_str)
                .collect();
            (m.as_str(), to)
        })
        .collect();
    for start in edges.keys() {
        let mut todo: Vec<Vec<&str>> = vec![vec![start]];
        let mut seen = BTreeSet::new();
        while let Some(path) = todo.pop() {
            let last = *path.last().expect("non-empty");
            for &next in edges.get(last).into_iter().flatten() {
                let mut longer = path.clone();
                longer.push(next);
                assert!(
                    !within(next, start) && !within(start, next),
                    "a module circle: {}",
                    longer.join(" -> ")
                );
                if seen.insert(next) {
                    todo.push(longer);
                }
            }
        }
    }
    for (m, named) in &uses {
        let job = m.split("::").next().unwrap_or_default();
        let forbidden: &[&str] = match job {
            "format" => &["pack", "install"],
            "pack" => &["install"],
            "install" => &["pack"],
            _ => &[],
        };
        for n in named {
            assert!(
                !forbidden.iter().any(|f| within(n, f)),
                "{m} uses {n}: the jobs of the archive crate must meet only in the format"
            );
        }
    }
}

/// The format is pure of the bundle's I/O: its modules open nothing by path (the manifest's
/// record store uses unnamed temporary files, which it is handed or makes with `tempfile`).
#[test]
fn the_format_opens_no_file_by_path() {
    let src = workspace_root().join("airgap-archive/src/format");
    let opening = [
        "File::open",
        "File::create",
        "OpenOptions",
        "fs::read",
        "fs::write",
        "fs::metadata",
        "fs::symlink_metadata",
        "fs::create_dir",
        "fs::remove",
        "fs::rename",
        "read_dir",
        "walkdir",
    ];
    let mut seen = 0;
    for entry in walkdir::WalkDir::new(&src) {
        let path = entry.expect("walk").into_path();
        if path.extension().is_none_or(|e| e != "rs") {
            continue;
        }
        seen += 1;
        let text = std::fs::read_to_string(&path).expect("read");
        for (n, line) in text.lines().enumerate() {
            if line.trim_start().starts_with("//") {
                continue;
            }
            for call in opening {
                assert!(
                    !line.contains(call),
                    "{}:{}: the format opens a file ({call}): {line}",
                    path.display(),
                    n + 1
                );
            }
        }
    }
    assert!(
        seen >= 6,
        "the format's modules were not found under {}",
        src.display()
    );
}
