//! The clean-room proof: each workload is bundled on this machine with the real `airgap`, only
//! the archive is carried into a minimal Debian root (debootstrap minbase: no Python, none of
//! this machine's libraries), unpacked there by the unpacker the bundle carries, at a path
//! different from the source, with the network cut, and its own check is run there.
//!
//! `cargo xtask e2e` runs every workload (`--ignored` included) and prints the table that
//! `target/e2e/results.tsv` collects. The default test run (CI) runs the fast ones, marked
//! without `#[ignore]`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use airgap_tests::rootfs::{DebianRoot, Suite};
use airgap_tests::{airgap, conda, run, tempdir};

/// One row of the e2e table.
struct Row<'a> {
    workload: &'a str,
    bundle: &'a Path,
    bundle_secs: f64,
    unpack_secs: f64,
    result: &'a str,
}

fn record(row: Row) {
    let dir = airgap_tests::target_dir().join("e2e");
    std::fs::create_dir_all(&dir).expect("mkdir e2e");
    let size = std::fs::metadata(row.bundle).map(|m| m.len()).unwrap_or(0);
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("results.tsv"))
        .expect("open results");
    writeln!(
        file,
        "{}\t{}\t{:.1}\t{:.1}\t{}",
        row.workload, size, row.bundle_secs, row.unpack_secs, row.result
    )
    .expect("write results");
}

/// `airgap bundle -c CONFIG -o OUT`, timed.
fn bundle(config: &Path, out: &Path) -> f64 {
    let started = Instant::now();
    run(airgap()
        .arg("bundle")
        .arg("-c")
        .arg(config)
        .arg("-o")
        .arg(out))
    .success();
    started.elapsed().as_secs_f64()
}

/// Carry only the archive into `root` and unpack it at `dest` with the unpacker it carries
/// (`tar xzf` + `NAME/unpack DEST`), no network, nothing of this machine. Timed.
fn carry_and_unpack(root: &DebianRoot, archive: &Path, name: &str, dest: &str) -> f64 {
    let inside = format!(
        "/root/{}",
        archive
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("b.tar.gz")
    );
    std::fs::copy(archive, root.host_path(&inside)).expect("carry the archive");
    let started = Instant::now();
    let done = root.run(&format!(
        "set -e; mkdir -p /root/carried && cd /root/carried && tar xzf {inside} && ./{name}/unpack {dest}"
    ));
    let secs = started.elapsed().as_secs_f64();
    assert_eq!(
        done.code,
        Some(0),
        "unpack in the clean root failed:\n{}\n{}",
        done.stdout,
        done.stderr
    );
    secs
}

/// A venv from the installation `base`, with `requirements` and their dependencies installed
/// by its pip from the package index (pip's cache makes reruns fast).
fn venv_from_index(base: &Path, prefix: &Path, requirements: &[&str], pip_args: &[&str]) {
    run(std::process::Command::new(base.join("bin/python3"))
        .args(["-m", "venv"])
        .arg(prefix))
    .success();
    run(std::process::Command::new(prefix.join("bin/python"))
        .args([
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
        ])
        .args(pip_args)
        .args(requirements))
    .success();
}

fn write_config(dir: &Path, name: &str, body: &str) -> PathBuf {
    let path = dir.join(format!("{name}.toml"));
    std::fs::write(&path, format!("[bundle]\nname = \"{name}\"\n\n{body}")).expect("write config");
    path
}

/// Leave out parts of a Python installation no workload imports, to keep bundles small.
const SLIM: &str = r#"exclude = ["lib/python3.*/test", "lib/python3.*/idlelib", "lib/python3.*/tkinter", "lib/python3.*/turtledemo", "lib/python3.*/lib-dynload/_tkinter*", "lib/python3.*/config-3.*", "/include", "lib/libpython3.*.a"]"#;

const SCIENCE_CHECK: &str = r#"
import numpy as np, pandas as pd, lxml.etree as ET, ssl, sqlite3, sys
from cryptography.fernet import Fernet
a = np.random.default_rng(0).normal(size=(200, 200))
assert np.allclose(a @ np.linalg.inv(a), np.eye(200), atol=1e-8)
df = pd.DataFrame({"k": list("abcab"), "v": [1, 2, 3, 4, 5]})
assert df.groupby("k")["v"].sum()["a"] == 5
doc = ET.fromstring("<r><x n='1'/><x n='2'/></r>")
assert [e.get("n") for e in doc.iter("x")] == ["1", "2"]
f = Fernet(Fernet.generate_key())
assert f.decrypt(f.encrypt(b"airgap")) == b"airgap"
con = sqlite3.connect(":memory:"); con.execute("create table t(x)"); con.execute("insert into t values (1)")
print("science ok at", sys.prefix, "numpy", np.__version__, "pandas", pd.__version__)
"#;

/// A venv from a real Python installation with real scientific wheels (arrays, dataframes,
/// XML, crypto) doing real work in a root that has no Python; then the same unpacked tree is
/// moved and relocated a second time and still works.
#[test]
#[ignore = "long: run with cargo xtask e2e"]
fn e2e_scientific_venv_and_relocated_again() {
    let dir = tempdir();
    let base = conda::base_python();
    let env = dir.path().join("science-env");
    venv_from_index(
        &base,
        &env,
        &["numpy", "pandas", "lxml", "cryptography"],
        &[],
    );
    let config = write_config(
        dir.path(),
        "science",
        &format!(
            "[sources.conda]\nprefix = \"{}\"\n{SLIM}\n\n[sources.syslibs]\n",
            env.display()
        ),
    );
    let archive = dir.path().join("science.tar.gz");
    let bundle_secs = bundle(&config, &archive);

    let root = DebianRoot::new(Suite::Bookworm);
    let no_python = root.run("command -v python3 || ls /usr/lib/x86_64-linux-gnu/libssl.so.3");
    assert_ne!(
        no_python.code,
        Some(0),
        "the clean root must have no python3 and no libssl"
    );
    let unpack_secs = carry_and_unpack(&root, &archive, "science", "/srv/science");
    std::fs::write(root.host_path("/root/check.py"), SCIENCE_CHECK).expect("write check");
    let done = root.run("/srv/science/env/bin/python /root/check.py");
    assert_eq!(done.code, Some(0), "{}\n{}", done.stdout, done.stderr);
    assert!(
        done.stdout.contains("science ok at /srv/science/env"),
        "{}",
        done.stdout
    );
    record(Row {
        workload: "venv + numpy/pandas/lxml/cryptography",
        bundle: &archive,
        bundle_secs,
        unpack_secs,
        result: "ok",
    });

    // Moved a second time, on the target, by `airgap relocate` (airgap itself copied onto the
    // target, as an administrator would install it): it still runs, and the old place is gone.
    root.copy_in(&airgap_tests::bin("airgap"), "/usr/local/bin/airgap");
    let started = Instant::now();
    let done = root.run("mkdir -p /data/apps && AIRGAP_NO_PROGRESS=1 /usr/local/bin/airgap relocate /srv/science /data/apps/science-moved");
    assert_eq!(done.code, Some(0), "{}\n{}", done.stdout, done.stderr);
    let relocate_secs = started.elapsed().as_secs_f64();
    assert!(!root.host_path("/srv/science").exists());
    let done = root.run("/data/apps/science-moved/env/bin/python /root/check.py && /data/apps/science-moved/env/bin/python -m pip --version");
    assert_eq!(done.code, Some(0), "{}\n{}", done.stdout, done.stderr);
    assert!(
        done.stdout
            .contains("science ok at /data/apps/science-moved/env"),
        "{}",
        done.stdout
    );
    record(Row {
        workload: "the same, relocated a second time",
        bundle: &archive,
        bundle_secs: 0.0,
        unpack_secs: relocate_secs,
        result: "ok",
    });
}

/// An extension built here from an sdist (psycopg2, compiled against libpq) in a venv; the
/// clean root has no libpq: the bundle brings it.
#[test]
#[ignore = "long: run with cargo xtask e2e"]
fn e2e_sdist_extension_against_a_system_library() {
    let dir = tempdir();
    let base = conda::base_python();
    let env = dir.path().join("pg-env");
    venv_from_index(
        &base,
        &env,
        &["psycopg2==2.9.10"],
        &["--no-binary", "psycopg2"],
    );
    let config = write_config(
        dir.path(),
        "pg",
        &format!(
            "[sources.conda]\nprefix = \"{}\"\n{SLIM}\n\n[sources.syslibs]\n",
            env.display()
        ),
    );
    let archive = dir.path().join("pg.tar.gz");
    let bundle_secs = bundle(&config, &archive);
    let root = DebianRoot::new(Suite::Bookworm);
    assert!(!root
        .host_path("/usr/lib/x86_64-linux-gnu/libpq.so.5")
        .exists());
    let unpack_secs = carry_and_unpack(&root, &archive, "pg", "/opt/pg");
    let done = root.run("/opt/pg/env/bin/python -c 'import psycopg2, psycopg2.extensions as e; print(\"libpq\", e.libpq_version())'");
    assert_eq!(done.code, Some(0), "{}\n{}", done.stdout, done.stderr);
    assert!(done.stdout.contains("libpq 1"), "{}", done.stdout);
    record(Row {
        workload: "sdist extension (psycopg2) against libpq",
        bundle: &archive,
        bundle_secs,
        unpack_secs,
        result: "ok",
    });
}

/// A real conda environment (py-rattler from a local channel, packages with text and binary
/// prefix placeholders) runs in the clean root at a shorter path.
#[test]
fn e2e_conda_environment() {
    if !conda::have_rattler() {
        panic!("py-rattler is missing: run `cargo xtask setup` (xtask/setup/pip.txt installs it)");
    }
    let dir = tempdir();
    let prefix = dir
        .path()
        .join("source-machine/miniconda3/envs/hello-environment");
    conda::conda_env(&prefix, &dir.path().join("pkgs"));
    let config = write_config(
        dir.path(),
        "hello",
        &format!(
            "[sources.conda]\nprefix = \"{}\"\n\n[sources.syslibs]\n",
            prefix.display()
        ),
    );
    let archive = dir.path().join("hello.tar.gz");
    let bundle_secs = bundle(&config, &archive);
    let root = DebianRoot::new(Suite::Bookworm);
    let unpack_secs = carry_and_unpack(&root, &archive, "hello", "/h");
    let done = root.run("for p in /h/env/bin/hello-*; do \"$p\" || exit 1; done; grep -r -e anaconda1anaconda2 -e _h_env_placehold /h/env/bin /h/env/etc 2>/dev/null && exit 9; true");
    assert_eq!(done.code, Some(0), "{}\n{}", done.stdout, done.stderr);
    assert!(
        !done.stdout.trim().is_empty(),
        "the programs print something"
    );
    record(Row {
        workload: "conda env (py-rattler, local channel)",
        bundle: &archive,
        bundle_secs,
        unpack_secs,
        result: "ok",
    });
}

/// The expected refusal: a bundle made here (glibc 2.36) checked against a target root with
/// an older glibc (bullseye, 2.31): `airgap check` says no before the transfer, naming files.
#[test]
fn e2e_older_glibc_target_is_refused_before_transfer() {
    let dir = tempdir();
    let base = conda::base_python();
    let config = write_config(
        dir.path(),
        "py",
        &format!(
            "[sources.conda]\nprefix = \"{}\"\n{SLIM}\n\n[sources.syslibs]\n",
            base.display()
        ),
    );
    let archive = dir.path().join("py.tar.gz");
    let bundle_secs = bundle(&config, &archive);
    let old = DebianRoot::new(Suite::Bullseye);
    let done = run(airgap()
        .arg("check")
        .arg(&archive)
        .arg("--target-root")
        .arg(old.path()));
    assert_ne!(
        done.code,
        Some(0),
        "check must refuse: {}\n{}",
        done.stdout,
        done.stderr
    );
    let all = format!("{}{}", done.stdout, done.stderr);
    assert!(all.contains("2.31"), "names the target's glibc: {all}");
    assert!(
        all.contains("GLIBC_2.3"),
        "names the glibc version needed: {all}"
    );
    record(Row {
        workload: "older glibc target (bullseye)",
        bundle: &archive,
        bundle_secs,
        unpack_secs: 0.0,
        result: "refused by airgap check (expected)",
    });
}

const UPGRADE_CHECK: &str = r#"
import importlib.util, sys
import markupsafe, idna, certifi, yaml
assert markupsafe.__version__ == "2.1.5", markupsafe.__version__
assert markupsafe.escape("<a>") == "&lt;a&gt;"
assert importlib.util.find_spec("six") is None, "six was removed in v2"
assert yaml.safe_load("a: [1, 2]") == {"a": [1, 2]}
assert idna.encode("xn--bcher-kva.example").startswith(b"xn--")
print("v2 ok at", sys.prefix, "certifi", certifi.__version__)
"#;

/// A realistic upgrade: a venv of real packages (markupsafe with its C extension upgraded,
/// certifi added, six removed) bundled as v1, then v2 as a delta against v1. In a clean root
/// the delta is applied by the carried unpacker onto v1 installed at another path than the
/// source (so the files it takes from the base had their prefixes rewritten there), and the
/// updated tree is the tree a full unpack of v2 at that path gives, file for file, and runs.
/// A delta onto the wrong version, onto v1 with one edited file, or killed while it applies,
/// changes nothing and the tree still runs.
#[test]
fn e2e_delta_upgrade_of_a_venv() {
    let dir = tempdir();
    let base = conda::base_python();
    let env = dir.path().join("app-env");
    venv_from_index(
        &base,
        &env,
        &[
            "markupsafe==2.1.3",
            "six==1.16.0",
            "idna==3.6",
            "pyyaml==6.0.1",
        ],
        &[],
    );
    let config = write_config(
        dir.path(),
        "app",
        &format!(
            "[sources.conda]\nprefix = \"{}\"\n{SLIM}\n\n[sources.syslibs]\n",
            env.display()
        ),
    );
    let v1 = dir.path().join("app-v1.tar.gz");
    bundle(&config, &v1);
    let pip = |args: &[&str]| {
        run(std::process::Command::new(env.join("bin/python"))
            .args(["-m", "pip", "--disable-pip-version-check", "--quiet"])
            .args(args))
        .success();
    };
    pip(&["install", "markupsafe==2.1.5", "certifi==2024.2.2"]);
    pip(&["uninstall", "--yes", "six"]);
    let v2 = dir.path().join("app-v2.tar.gz");
    let full_secs = bundle(&config, &v2);
    let delta = dir.path().join("app-v2-delta.tar.gz");
    let started = Instant::now();
    run(airgap()
        .arg("bundle")
        .arg("-c")
        .arg(&config)
        .arg("-o")
        .arg(&delta)
        .arg("--since")
        .arg(&v1))
    .success();
    let delta_secs = started.elapsed().as_secs_f64();
    let size = |p: &Path| std::fs::metadata(p).unwrap().len();
    let (full_size, delta_size) = (size(&v2), size(&delta));
    assert!(
        delta_size * 2 < full_size,
        "the delta ({delta_size} bytes) should be far smaller than the full bundle ({full_size})"
    );

    let root = DebianRoot::new(Suite::Bookworm);
    carry_and_unpack(&root, &v1, "app", "/srv/app");
    std::fs::write(root.host_path("/root/check.py"), UPGRADE_CHECK).expect("write check");
    for (from, to) in [(&delta, "/root/delta.tar.gz"), (&v2, "/root/full.tar.gz")] {
        std::fs::copy(from, root.host_path(to)).expect("carry");
    }
    // The wrong base: v2 installed in full. Refused; it still runs.
    let done = root.run("set -e; mkdir -p /root/full && cd /root/full && tar xzf /root/full.tar.gz && ./app/unpack /srv/other");
    assert_eq!(done.code, Some(0), "{}\n{}", done.stdout, done.stderr);
    let done = root.run("mkdir -p /root/d && cd /root/d && tar xzf /root/delta.tar.gz && ./app/unpack --onto /srv/other");
    assert_ne!(done.code, Some(0), "{}\n{}", done.stdout, done.stderr);
    assert!(
        done.stderr.contains("the delta applies to"),
        "{}",
        done.stderr
    );
    let done = root.run("/srv/other/env/bin/python /root/check.py");
    assert_eq!(done.code, Some(0), "{}\n{}", done.stdout, done.stderr);

    // v1 with one edited file the delta takes from it: refused naming it, unchanged, runs.
    let edited = root.run("ls /srv/app/env/lib/python3.11/site-packages/idna/core.py");
    assert_eq!(edited.code, Some(0), "{}", edited.stderr);
    let core = root.host_path("/srv/app/env/lib/python3.11/site-packages/idna/core.py");
    let original = std::fs::read(&core).expect("read core.py");
    let original_mtime = std::fs::metadata(&core)
        .and_then(|m| m.modified())
        .expect("mtime");
    let mut changed = original.clone();
    changed.extend_from_slice(b"\n# edited on the target\n");
    std::fs::write(&core, &changed).expect("edit");
    let before = airgap_tests::archive::tree_state(&root.host_path("/srv/app"));
    let done = root.run("cd /root/d && ./app/unpack --from /root/delta.tar.gz --onto /srv/app");
    assert_ne!(done.code, Some(0), "{}\n{}", done.stdout, done.stderr);
    assert!(done.stderr.contains("idna/core.py"), "{}", done.stderr);
    assert_eq!(
        airgap_tests::archive::tree_state(&root.host_path("/srv/app")),
        before,
        "a refused delta changed the tree"
    );
    // Put back as it was (content and time: Python would otherwise rewrite its cache), it
    // still runs v1.
    std::fs::write(&core, &original).expect("restore");
    std::fs::File::options()
        .write(true)
        .open(&core)
        .and_then(|f| f.set_modified(original_mtime))
        .expect("restore the mtime");
    let done = root.run(
        "/srv/app/env/bin/python -c 'import idna, six, markupsafe; print(markupsafe.__version__)'",
    );
    assert_eq!(done.code, Some(0), "{}\n{}", done.stdout, done.stderr);
    assert!(done.stdout.contains("2.1.3"), "{}", done.stdout);

    // An apply killed (SIGKILL) once its staging directory exists: the tree is unchanged and
    // still runs. (A file appearing is the signal; the loop only waits for it.)
    let before = airgap_tests::archive::tree_state(&root.host_path("/srv/app"));
    let done = root.run(
        "cd /root/d && { ./app/unpack --from /root/delta.tar.gz --onto /srv/app & pid=$!; \
         until ls -d /srv/.app.airgap-staging-* >/dev/null 2>&1 || ! kill -0 $pid 2>/dev/null; do :; done; \
         kill -9 $pid; wait $pid; echo killed=$?; }",
    );
    assert!(
        done.stdout.contains("killed=137"),
        "{}\n{}",
        done.stdout,
        done.stderr
    );
    assert_eq!(
        airgap_tests::archive::tree_state(&root.host_path("/srv/app")),
        before,
        "a killed apply changed the tree"
    );
    assert!(!root.host_path("/srv/app.previous").exists());
    let done = root
        .run("/srv/app/env/bin/python -c 'import six, markupsafe; print(markupsafe.__version__)'");
    assert_eq!(done.code, Some(0), "{}\n{}", done.stdout, done.stderr);
    assert!(done.stdout.contains("2.1.3"), "{}", done.stdout);

    // The delta onto v1 as installed: the carried unpacker, reading the archive in place
    // (an extracted tree's directory times are GNU tar's, not always the bundle's; the
    // extracted delta is applied in tests/it/delta.rs).
    let started = Instant::now();
    let done = root.run("cd /root/d && ./app/unpack --from /root/delta.tar.gz --onto /srv/app");
    let apply_secs = started.elapsed().as_secs_f64();
    assert_eq!(done.code, Some(0), "{}\n{}", done.stdout, done.stderr);
    assert!(done.stderr.contains("hard-linked"), "{}", done.stderr);
    // File for file what a full unpack of v2 at the same path gives.
    let updated = airgap_tests::archive::tree_state(&root.host_path("/srv/app"));
    let done = root.run(
        "mv /srv/app /srv/app-updated && cd /root/full && ./app/unpack --from /root/full.tar.gz /srv/app",
    );
    assert_eq!(done.code, Some(0), "{}\n{}", done.stdout, done.stderr);
    let fresh = airgap_tests::archive::tree_state(&root.host_path("/srv/app"));
    let differing: Vec<_> = updated
        .iter()
        .filter(|(k, v)| fresh.get(*k) != Some(v))
        .map(|(k, _)| k)
        .chain(fresh.keys().filter(|k| !updated.contains_key(*k)))
        .collect();
    assert!(
        differing.is_empty(),
        "updated and fresh differ:\n{}",
        differing
            .iter()
            .map(|k| format!("{k}: {:?} / {:?}", updated.get(*k), fresh.get(*k)))
            .collect::<Vec<_>>()
            .join("\n")
    );
    let done = root.run(
        "rm -rf /srv/app && mv /srv/app-updated /srv/app && /srv/app/env/bin/python /root/check.py",
    );
    assert_eq!(done.code, Some(0), "{}\n{}", done.stdout, done.stderr);
    assert!(
        done.stdout.contains("v2 ok at /srv/app/env"),
        "{}",
        done.stdout
    );
    assert!(root.host_path("/srv/app.previous/env/bin/python").exists());
    record(Row {
        workload: &format!(
            "delta v1 -> v2 of a venv (markupsafe 2.1.3 -> 2.1.5, +certifi, -six): {} of the full bundle's {} bytes",
            delta_size, full_size
        ),
        bundle: &delta,
        bundle_secs: delta_secs.max(full_secs.min(delta_secs)),
        unpack_secs: apply_secs,
        result: "ok",
    });
}
