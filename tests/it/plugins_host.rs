//! The plugin host through the real CLI: discovery, the ABI handshake, broken plugins, the
//! in-house example plugin, out-of-tree plugins, external subcommands.

use airgap_plugin_api::ABI_MINOR;
use std::path::{Path, PathBuf};
use std::process::Command;

use airgap_tests::{airgap, build_dir, cdylib, run, tempdir, workspace_root};

/// Copy a built test plugin into `dir` under the file name a real plugin would have.
fn install_as(dir: &Path, crate_name: &str, plugin_name: &str) -> PathBuf {
    let to = dir.join(format!(
        "libairgap_plugin_{}.so",
        plugin_name.replace('-', "_")
    ));
    std::fs::copy(cdylib(crate_name), &to).expect("copy plugin");
    to
}

fn plugins_json(extra_dir: Option<&Path>) -> serde_json::Value {
    let mut cmd = airgap();
    if let Some(dir) = extra_dir {
        cmd.arg("--plugin-dir").arg(dir);
    }
    let done = run(cmd.args(["plugins", "list", "--json"])).success();
    serde_json::from_str(&done.stdout).expect("plugins list --json prints JSON")
}

fn find<'a>(json: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    json["plugins"]
        .as_array()
        .expect("plugins array")
        .iter()
        .find(|p| p["name"] == name)
        .unwrap_or_else(|| panic!("plugin {name} not listed in {json:#}"))
}

#[test]
fn plugins_list_shows_the_default_plugins_with_version_and_abi() {
    let json = plugins_json(None);
    for name in ["conda", "pip", "syslibs", "files", "acme-store"] {
        let p = find(&json, name);
        assert_eq!(p["status"], "ok", "{name}: {p:#}");
        assert_eq!(p["abi"], format!("1.{ABI_MINOR}"), "{name}: {p:#}");
        assert!(
            p["version"].as_str().is_some_and(|v| !v.is_empty()),
            "{p:#}"
        );
    }
    assert_eq!(json["host_abi"], format!("1.{ABI_MINOR}"));
    let text = run(airgap().args(["plugins", "list"])).success().stdout;
    assert!(text.contains("acme-store"), "{text}");
    assert!(text.contains("searched (first match wins)"), "{text}");
}

#[test]
fn broken_plugins_are_reported_by_file_and_never_stop_the_others() {
    let dir = tempdir();
    let major = install_as(dir.path(), "airgap-testplugin-abi-major", "abi-major");
    let minor = install_as(dir.path(), "airgap-testplugin-abi-minor", "abi-minor");
    let nosym = install_as(dir.path(), "airgap-testplugin-no-symbol", "no-symbol");
    let text_file = dir.path().join("libairgap_plugin_notalib.so");
    std::fs::write(&text_file, "this is a text file, not a library\n").expect("write");
    let json = plugins_json(Some(dir.path()));

    let reason = |name: &str| {
        find(&json, name)["reason"]
            .as_str()
            .unwrap_or("")
            .to_string()
    };
    assert_eq!(find(&json, "abi-major")["status"], "broken");
    assert!(
        reason("abi-major").contains(&format!(
            "built for plugin ABI 99.0, but this airgap speaks plugin ABI 1.{ABI_MINOR}"
        )),
        "{}",
        reason("abi-major")
    );
    assert!(reason("abi-major").contains(&major.display().to_string()));
    assert!(
        reason("abi-minor").contains(&format!("plugin ABI 1.{}", ABI_MINOR + 7)),
        "{}",
        reason("abi-minor")
    );
    assert!(reason("abi-minor").contains(&minor.display().to_string()));
    assert!(
        reason("no-symbol").contains("no `airgap_plugin_descriptor` symbol"),
        "{}",
        reason("no-symbol")
    );
    assert!(reason("no-symbol").contains(&nosym.display().to_string()));
    assert!(
        reason("notalib").contains("not a shared library"),
        "{}",
        reason("notalib")
    );
    // The good plugins are still there and usable.
    assert_eq!(find(&json, "acme-store")["status"], "ok");
    assert_eq!(find(&json, "files")["status"], "ok");
}

#[test]
fn plugins_check_explains_an_incompatible_plugin_with_both_versions_and_advice() {
    let dir = tempdir();
    let major = install_as(dir.path(), "airgap-testplugin-abi-major", "abi-major");
    let done = run(airgap().args(["plugins", "check"]).arg(&major)).failure();
    assert!(
        done.stderr.contains(&format!(
            "built for plugin ABI 99.0, but this airgap speaks plugin ABI 1.{ABI_MINOR}"
        )),
        "{}",
        done.stderr
    );
    assert!(
        done.stderr
            .contains("help: rebuild the plugin against airgap-plugin-api 1.x"),
        "{}",
        done.stderr
    );

    let minor = install_as(dir.path(), "airgap-testplugin-abi-minor", "abi-minor");
    let done = run(airgap().args(["plugins", "check"]).arg(&minor)).failure();
    assert!(
        done.stderr.contains("help: upgrade airgap"),
        "{}",
        done.stderr
    );

    let good = cdylib("airgap-plugin-acme-store");
    let done = run(airgap().args(["plugins", "check"]).arg(&good)).success();
    assert!(done.stdout.contains("ok: acme-store"), "{}", done.stdout);
}

/// A config that uses one plugin from `dir` for a source, plus a files source that works.
fn bundle_with(dir: &Path, source: &str, out: &Path) -> airgap_tests::Done {
    let data = dir.join("data");
    std::fs::create_dir_all(&data).expect("mkdir");
    std::fs::write(data.join("hello.txt"), "hello\n").expect("write");
    let config = dir.join("airgap.toml");
    std::fs::write(
        &config,
        format!(
            "[bundle]\nname = \"t\"\n[sources.files]\npaths = [\"data\"]\n[sources.{source}]\n"
        ),
    )
    .expect("write config");
    run(airgap()
        .arg("--plugin-dir")
        .arg(dir)
        .args(["bundle", "--no-check", "-c"])
        .arg(&config)
        .arg("-o")
        .arg(out))
}

#[test]
fn a_panicking_plugin_is_reported_and_the_host_exits_cleanly() {
    let dir = tempdir();
    let path = install_as(dir.path(), "airgap-testplugin-panics", "panics");
    let out = dir.path().join("out.tar.gz");
    let done = bundle_with(dir.path(), "panics", &out).failure();
    assert_eq!(
        done.code,
        Some(1),
        "a panic must not kill the host: {done:?}"
    );
    assert!(
        done.stderr
            .contains("panicked: the panics plugin panicked on purpose"),
        "{}",
        done.stderr
    );
    assert!(
        done.stderr.contains(&path.display().to_string()),
        "{}",
        done.stderr
    );
    assert!(!out.exists(), "no bundle may be written");
}

#[test]
fn a_plugin_returning_malformed_data_is_reported() {
    let dir = tempdir();
    install_as(dir.path(), "airgap-testplugin-malformed", "malformed");
    let out = dir.path().join("out.tar.gz");
    let done = bundle_with(dir.path(), "malformed", &out).failure();
    assert!(done.stderr.contains("plugin malformed"), "{}", done.stderr);
    assert!(
        done.stderr.contains("returned malformed data"),
        "{}",
        done.stderr
    );
    assert!(!out.exists());
}

#[test]
fn a_needed_broken_plugin_fails_the_bundle_with_its_reason() {
    let dir = tempdir();
    install_as(dir.path(), "airgap-testplugin-abi-major", "abi-major");
    let out = dir.path().join("out.tar.gz");
    let done = bundle_with(dir.path(), "abi-major", &out).failure();
    assert!(
        done.stderr
            .contains("the plugin for source `abi-major` cannot be used"),
        "{}",
        done.stderr
    );
    assert!(done.stderr.contains("plugin ABI 99.0"), "{}", done.stderr);
    assert!(!out.exists());
}

#[test]
fn an_unknown_source_lists_the_plugins_found_and_where_we_looked() {
    let dir = tempdir();
    let out = dir.path().join("out.tar.gz");
    let done = bundle_with(dir.path(), "no-such-store", &out).failure();
    assert!(
        done.stderr.contains("no plugin for source `no-such-store`"),
        "{}",
        done.stderr
    );
    assert!(done.stderr.contains("acme-store"), "{}", done.stderr);
    assert!(done.stderr.contains("help: searched"), "{}", done.stderr);
    assert!(
        done.stderr.contains(&dir.path().display().to_string()),
        "{}",
        done.stderr
    );
}

/// A made-up ACME store: an index and two artifacts.
fn acme_store(dir: &Path) -> PathBuf {
    let store = dir.join("acme");
    std::fs::create_dir_all(store.join("artifacts/tools/bin")).expect("mkdir");
    std::fs::write(
        store.join("artifacts/tools/bin/acme-tool"),
        "#!/bin/sh\necho acme\n",
    )
    .expect("write");
    std::fs::write(store.join("artifacts/model.bin"), vec![7u8; 4096]).expect("write");
    std::fs::write(
        store.join("index.toml"),
        r#"[[artifact]]
name = "acme-tools"
version = "2.3.1"
path = "artifacts/tools"
license = "Proprietary"

[[artifact]]
name = "acme-model"
version = "1.0.0"
path = "artifacts/model.bin"
"#,
    )
    .expect("write");
    store
}

#[test]
fn the_in_house_example_plugin_contributes_to_a_real_bundle() {
    let dir = tempdir();
    acme_store(dir.path());
    let config = dir.path().join("airgap.toml");
    std::fs::write(
        &config,
        "[bundle]\nname = \"acme-bundle\"\n[sources.acme-store]\nindex = \"acme/index.toml\"\npackages = [\"acme-tools\"]\n",
    )
    .expect("write");
    let out = dir.path().join("acme.tar.gz");
    let done = run(airgap()
        .args(["bundle", "--json", "-c"])
        .arg(&config)
        .arg("-o")
        .arg(&out))
    .success();
    let report: serde_json::Value = serde_json::from_str(&done.stdout).expect("json");
    assert_eq!(report["packages"], 1, "{report:#}");
    assert_eq!(report["sources"][0]["plugin"], "acme-store");
    let listing = Command::new("tar")
        .arg("-tzf")
        .arg(&out)
        .output()
        .expect("GNU tar");
    assert!(listing.status.success());
    let listing = String::from_utf8_lossy(&listing.stdout);
    assert!(
        listing.contains("acme-bundle/acme/acme-tools/tools/bin/acme-tool"),
        "{listing}"
    );
    assert!(
        !listing.contains("model.bin"),
        "acme-model was not asked for: {listing}"
    );

    // A package that is not in the store: a clear error with help, nothing written.
    std::fs::write(
        &config,
        "[sources.acme-store]\nindex = \"acme/index.toml\"\npackages = [\"acme-nothing\"]\n",
    )
    .expect("write");
    let out2 = dir.path().join("none.tar.gz");
    let done = run(airgap()
        .args(["bundle", "-c"])
        .arg(&config)
        .arg("-o")
        .arg(&out2))
    .failure();
    assert!(
        done.stderr
            .contains("acme-nothing is not in the ACME index"),
        "{}",
        done.stderr
    );
    assert!(
        done.stderr
            .contains("help: the index has: acme-tools==2.3.1, acme-model==1.0.0"),
        "{}",
        done.stderr
    );
    assert!(!out2.exists());
}

#[test]
fn external_subcommands_run_from_path_with_their_arguments_and_exit_code() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempdir();
    let script = dir.path().join("airgap-foo");
    std::fs::write(
        &script,
        "#!/bin/sh\necho \"foo got: $*\"\necho \"AIRGAP=$AIRGAP\"\necho \"parent=$(cat /proc/$PPID/comm)\"\nexit 7\n",
    )
    .expect("write");
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let path = format!(
        "{}:{}",
        dir.path().display(),
        std::env::var("PATH").unwrap_or_default()
    );

    let done = run(airgap().env("PATH", &path).args(["foo", "a", "--b", "c d"]));
    assert_eq!(done.code, Some(7), "{done:?}");
    assert!(
        done.stdout.contains("foo got: a --b c d"),
        "{}",
        done.stdout
    );
    assert!(
        done.stdout.contains("AIRGAP=/"),
        "airgap passes its own path: {}",
        done.stdout
    );
    // Exec'd, as cargo does: the command's parent is whoever ran airgap, not airgap.
    assert!(
        done.stdout.contains("parent=") && !done.stdout.contains("parent=airgap"),
        "the external command runs as a child of airgap: {}",
        done.stdout
    );

    let list = run(airgap().env("PATH", &path).arg("--list"))
        .success()
        .stdout;
    assert!(list.contains("foo"), "{list}");
    assert!(list.contains("bundle"), "{list}");

    let typo = run(airgap().env("PATH", &path).arg("fooo")).failure();
    assert!(
        typo.stderr.contains("no such command: `fooo`"),
        "{}",
        typo.stderr
    );
    assert!(typo.stderr.contains("`foo`"), "{}", typo.stderr);
    let typo = run(airgap().env("PATH", &path).arg("bundel")).failure();
    assert!(typo.stderr.contains("`bundle`"), "{}", typo.stderr);
}

/// Build a scaffolded plugin outside the workspace with `toolchain` (None = the default).
fn build_out_of_tree(dir: &Path, name: &str, toolchain: Option<&str>) -> PathBuf {
    let project = dir.join(name);
    let xtask = build_dir().join("xtask");
    assert!(xtask.exists(), "xtask is not built: run `cargo xtask test`");
    run(Command::new(&xtask)
        .args(["new-plugin", name, "--path"])
        .arg(&project))
    .success();
    let manifest = std::fs::read_to_string(project.join("Cargo.toml")).expect("manifest");
    assert!(
        manifest.contains("airgap-plugin-api = { path ="),
        "{manifest}"
    );
    assert!(
        !manifest.contains("airgap-core"),
        "depends on the API crate only"
    );
    // A target dir that survives test runs keeps the rebuild fast.
    let target = airgap_tests::target_dir()
        .join("out-of-tree")
        .join(toolchain.unwrap_or("default"));
    let mut cargo = Command::new("cargo");
    if let Some(t) = toolchain {
        cargo.arg(format!("+{t}"));
    }
    for (key, _) in std::env::vars() {
        if key.starts_with("CARGO") || key == "RUSTUP_TOOLCHAIN" || key == "RUSTFLAGS" {
            cargo.env_remove(&key);
        }
    }
    run(cargo
        .args(["build", "--quiet", "--manifest-path"])
        .arg(project.join("Cargo.toml"))
        .env("CARGO_TARGET_DIR", &target)
        .current_dir(&project))
    .success();
    target
        .join("debug")
        .join(format!("libairgap_plugin_{}.so", name.replace('-', "_")))
}

fn load_and_use(dir: &Path, lib: &Path, name: &str) {
    let done = run(airgap().args(["plugins", "check"]).arg(lib)).success();
    assert!(
        done.stdout.contains(&format!("ok: {name}")),
        "{}",
        done.stdout
    );
    let plugins = dir.join("plugins");
    std::fs::create_dir_all(&plugins).expect("mkdir");
    std::fs::copy(lib, plugins.join(lib.file_name().expect("file name"))).expect("copy");
    std::fs::create_dir_all(dir.join("payload")).expect("mkdir");
    std::fs::write(dir.join("payload/readme.txt"), "in-house\n").expect("write");
    let config = dir.join(format!("{name}.toml"));
    std::fs::write(
        &config,
        format!(
            "[bundle]\nname = \"oot\"\n[sources.{name}]\npath = \"payload\"\nversion = \"4.2\"\n"
        ),
    )
    .expect("write");
    let out = dir.join(format!("{name}.tar.gz"));
    let done = run(airgap()
        .arg("--plugin-dir")
        .arg(&plugins)
        .args(["bundle", "--json", "-c"])
        .arg(&config)
        .arg("-o")
        .arg(&out))
    .success();
    let report: serde_json::Value = serde_json::from_str(&done.stdout).expect("json");
    assert_eq!(report["sources"][0]["plugin"], name, "{report:#}");
    let listing = Command::new("tar")
        .arg("-tzf")
        .arg(&out)
        .output()
        .expect("tar");
    let listing = String::from_utf8_lossy(&listing.stdout);
    assert!(
        listing.contains(&format!("oot/{name}/readme.txt")),
        "{listing}"
    );
}

#[test]
fn a_plugin_scaffolded_and_built_outside_the_workspace_loads_and_runs() {
    let dir = tempdir();
    let lib = build_out_of_tree(dir.path(), "inhouse", None);
    load_and_use(dir.path(), &lib, "inhouse");
}

/// The ABI claim: a plugin built by another rustc loads. Runs where a second toolchain is
/// installed (this machine kind has `nightly` beside `stable`); says so where there is none.
#[test]
fn a_plugin_built_with_another_toolchain_loads() {
    let toolchains = Command::new("rustup")
        .args(["toolchain", "list"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    let host = Command::new("rustc")
        .arg("-V")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    // Another toolchain is one whose rustc says another version than the host's (a name
    // such as `stable` or `1.95.0` can be the very same compiler).
    let other = toolchains
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|t| !t.is_empty())
        .find(|t| {
            Command::new("rustup")
                .args(["run", t, "rustc", "-V"])
                .output()
                .is_ok_and(|o| {
                    o.status.success() && String::from_utf8_lossy(&o.stdout).trim() != host.trim()
                })
        })
        .map(|t| t.to_string());
    let Some(other) = other else {
        return airgap_tests::skip(&format!(
            "no second Rust toolchain (rustup toolchain list has only {}): the ABI claim across rustc versions is untested",
            host.trim()
        ));
    };
    let dir = tempdir();
    let lib = build_out_of_tree(dir.path(), "othertc", Some(&other));
    load_and_use(dir.path(), &lib, "othertc");
}

#[test]
fn the_api_crate_depends_on_nothing_in_the_workspace() {
    let manifest =
        std::fs::read_to_string(workspace_root().join("plugins/airgap-plugin-api/Cargo.toml"))
            .expect("read");
    assert!(!manifest.contains("workspace = true"), "{manifest}");
    assert!(!manifest.contains("path ="), "{manifest}");
}

/// `cargo xtask dist` makes a folder that works after being moved: the plugins are found next
/// to the executable. (The debug build is packed here to keep the test fast; the layout is the
/// same as the release one.)
#[test]
fn the_dist_folder_works_after_being_moved() {
    let dir = tempdir();
    let xtask = build_dir().join("xtask");
    run(Command::new(&xtask)
        .args(["dist", "--debug", "--no-build", "--out"])
        .arg(dir.path())
        .env("CARGO_TARGET_DIR", airgap_tests::target_dir()))
    .success();
    let name = format!("airgap-{}-x86_64-linux", env!("CARGO_PKG_VERSION"));
    assert!(dir.path().join(format!("{name}.tar.gz")).exists());
    let moved = dir.path().join("somewhere/else");
    std::fs::create_dir_all(&moved).expect("mkdir");
    std::fs::rename(dir.path().join(&name), moved.join(&name)).expect("move");
    let exe = moved.join(&name).join("bin/airgap");
    let done = run(Command::new(&exe)
        .args(["plugins", "list", "--json"])
        .env_remove("AIRGAP_PLUGIN_PATH")
        .env("XDG_DATA_HOME", "/nonexistent"))
    .success();
    let json: serde_json::Value = serde_json::from_str(&done.stdout).expect("json");
    for plugin in ["conda", "pip", "syslibs", "files", "acme-store"] {
        let p = find(&json, plugin);
        assert_eq!(p["status"], "ok", "{p:#}");
        assert!(
            p["path"]
                .as_str()
                .is_some_and(|path| path.starts_with(&moved.display().to_string())),
            "{plugin} must load from the moved folder: {p:#}"
        );
    }
    assert!(moved.join(&name).join("lib/airgap/airgap-unpack").exists());
}

/// `bundle_with` for the misbehaves plugin in one `mode`, with a time limit.
fn bundle_misbehaving(dir: &Path, mode: &str, out: &Path, extra: &[&str]) -> Command {
    install_as(dir, "airgap-testplugin-misbehaves", "misbehaves");
    let data = dir.join("data");
    std::fs::create_dir_all(&data).expect("mkdir");
    std::fs::write(data.join("hello.txt"), "hello\n").expect("write");
    let config = dir.join("airgap.toml");
    std::fs::write(
        &config,
        format!(
            "[bundle]\nname = \"t\"\n[sources.files]\npaths = [\"data\"]\n\
             [sources.bad]\nplugin = \"misbehaves\"\nmode = \"{mode}\"\n"
        ),
    )
    .expect("write config");
    let mut cmd = airgap();
    cmd.arg("--plugin-dir")
        .arg(dir)
        .args(["bundle", "--no-check", "-c"])
        .arg(&config)
        .arg("-o")
        .arg(out)
        .args(extra);
    cmd
}

#[test]
fn a_hung_plugin_is_stopped_at_its_time_limit_and_nothing_is_written() {
    for (mode, how) in [
        ("hang", "did not stop when asked: it was abandoned"),
        ("slow", "it stopped when asked"),
    ] {
        let dir = tempdir();
        let out = dir.path().join("out.tar.gz");
        let started = std::time::Instant::now();
        let done = run(&mut bundle_misbehaving(
            dir.path(),
            mode,
            &out,
            &["--plugin-timeout", "2"],
        ))
        .failure();
        assert!(
            started.elapsed() < std::time::Duration::from_secs(30),
            "{mode}: the host waited {:?}",
            started.elapsed()
        );
        assert_eq!(done.code, Some(1), "{mode}: {done:?}");
        assert!(
            done.stderr.contains("plugin misbehaves (")
                && done
                    .stderr
                    .contains("was still running after 2 s, the time limit")
                && done.stderr.contains(how),
            "{mode}: {}",
            done.stderr
        );
        assert!(
            done.stderr
                .contains("help: raise the limit with --plugin-timeout"),
            "{}",
            done.stderr
        );
        assert!(!out.exists(), "{mode}: a bundle was written");
    }
}

#[test]
fn the_plugin_time_limit_comes_from_the_config_too() {
    let dir = tempdir();
    let out = dir.path().join("out.tar.gz");
    let mut cmd = bundle_misbehaving(dir.path(), "slow", &out, &[]);
    let config = dir.path().join("airgap.toml");
    let text = std::fs::read_to_string(&config).expect("read");
    std::fs::write(
        &config,
        text.replace("[bundle]\n", "[bundle]\nplugin-timeout = 1\n"),
    )
    .expect("write");
    let done = run(&mut cmd).failure();
    assert!(
        done.stderr.contains("was still running after 1 s"),
        "{}",
        done.stderr
    );
}

#[test]
fn ctrl_c_stops_a_hung_plugin_with_exit_130() {
    let dir = tempdir();
    let out = dir.path().join("out.tar.gz");
    let ready = dir.path().join("hanging");
    let mut cmd = bundle_misbehaving(dir.path(), "hang", &out, &[]);
    let config = dir.path().join("airgap.toml");
    let text = std::fs::read_to_string(&config).expect("read");
    std::fs::write(
        &config,
        format!("{text}ready = {:?}\n", ready.display().to_string()),
    )
    .expect("write");
    let child = cmd
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn airgap");
    // The plugin creates `ready` once it hangs: Ctrl-C then reaches a running plugin.
    let waited = std::time::Instant::now();
    while !ready.exists() {
        assert!(
            waited.elapsed() < std::time::Duration::from_secs(120),
            "the hang plugin never started"
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let started = std::time::Instant::now();
    let kill = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(kill.success());
    let done = airgap_tests::Done::from(child.wait_with_output().expect("wait"));
    assert_eq!(done.code, Some(130), "{done:?}");
    assert!(
        started.elapsed() < std::time::Duration::from_secs(20),
        "took {:?} to stop",
        started.elapsed()
    );
    assert!(!out.exists());
}

#[test]
fn a_plugin_that_lies_about_its_files_is_reported_before_anything_is_written() {
    for (mode, said) in [
        ("escape-dest", "destination \"../outside.txt\" leaves the bundle"),
        (
            "escape-link",
            "link target \"../../../etc/passwd\" leaves the bundle",
        ),
        (
            "missing-source",
            "the source /nonexistent/airgap-test/missing.txt it names for \"missing.txt\" cannot be read",
        ),
        (
            "rewrite-outside",
            "file to rewrite \"../../etc/profile\" leaves the bundle",
        ),
        (
            "rewrite-unknown",
            "an install step rewrites \"never-contributed.txt\", which is not a file it brought",
        ),
        ("python-outside", "Python prefix \"../usr\" leaves the bundle"),
    ] {
        let dir = tempdir();
        let out = dir.path().join("out.tar.gz");
        let done = run(&mut bundle_misbehaving(dir.path(), mode, &out, &[])).failure();
        assert_eq!(done.code, Some(1), "{mode}: {done:?}");
        assert!(
            done.stderr.contains("misbehaves") && done.stderr.contains(said),
            "{mode}: {}",
            done.stderr
        );
        assert!(!out.exists(), "{mode}: a bundle was written");
        let left: Vec<_> = std::fs::read_dir(dir.path())
            .expect("read dir")
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.contains("out.tar.gz"))
            .collect();
        assert!(left.is_empty(), "{mode}: left {left:?}");
    }
}
