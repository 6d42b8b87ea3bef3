//! `airgap probe`, `unpack --probe` and the sh script in real Debian roots (no network,
//! `env -i`), against the roots' own glibc, dpkg and ldconfig; the code's round trip through
//! the CLI; a probed bookworm target grafting less than the manylinux default.

use std::path::Path;
use std::process::Command;

use airgap_probe::{catalog, code, Profile};
use airgap_tests::rootfs::{self, DebianRoot, Suite};

/// The host's loader and the libraries the (dynamic) debug CLI needs, copied into the root, so
/// that it runs there whatever the root's glibc; what it reads is the root's (its files, its
/// cache), never the copied libraries.
fn install_tools(root: &DebianRoot) {
    let dir = root.host_path("/opt/airgap-host");
    std::fs::create_dir_all(&dir).expect("mkdir");
    for lib in [
        "/lib64/ld-linux-x86-64.so.2",
        "/lib/x86_64-linux-gnu/libc.so.6",
        "/lib/x86_64-linux-gnu/libm.so.6",
        "/lib/x86_64-linux-gnu/libgcc_s.so.1",
    ] {
        let name = Path::new(lib).file_name().expect("name");
        std::fs::copy(lib, dir.join(name)).expect("copy host library");
    }
    std::fs::copy(airgap_tests::bin("airgap"), dir.join("airgap")).expect("copy binary");
}

/// A command of the copied tools, run through the copied loader.
fn tool(cmd: &str) -> String {
    format!("/opt/airgap-host/ld-linux-x86-64.so.2 --library-path /opt/airgap-host /opt/airgap-host/{cmd}")
}

/// The profile `airgap probe --json` gives inside the root.
pub fn probe_in_root(root: &DebianRoot) -> Profile {
    install_tools(root);
    let done = root.run(&tool("airgap probe --dest /opt --json"));
    assert_eq!(done.code, Some(0), "airgap probe: {}", done.stderr);
    Profile::from_json(&done.stdout).expect("probe --json is a profile")
}

fn dpkg_version(root: &DebianRoot, package: &str) -> String {
    let done = root.run(&format!("dpkg-query -W -f '${{Version}}' {package}"));
    assert_eq!(done.code, Some(0), "dpkg-query {package}: {}", done.stderr);
    done.stdout.trim().to_owned()
}

/// The code line the script or the binaries print.
fn code_line(text: &str) -> String {
    text.lines()
        .find_map(|l| l.split_once("code").map(|(_, r)| r))
        .and_then(|r| r.rsplit(' ').next())
        .unwrap_or_else(|| panic!("no code line in:\n{text}"))
        .to_owned()
}

fn probes_agree_in(suite: Suite, glibcxx_of_gcc: &[(&str, &str)]) {
    if !rootfs::supported() {
        return airgap_tests::skip("needs root, unshare and chroot");
    }
    let root = DebianRoot::new(suite);
    let cli = probe_in_root(&root);

    // The real glibc and libstdc++ of the root, as dpkg knows them.
    let libc6 = dpkg_version(&root, "libc6");
    assert!(
        libc6.starts_with(&format!("{}-", cli.glibc.as_deref().unwrap_or("?"))),
        "{suite:?}: probe says glibc {:?}, dpkg libc6 {libc6}",
        cli.glibc
    );
    assert_eq!(cli.glibc.as_deref(), Some(suite.glibc()));
    let gcc = dpkg_version(&root, "libstdc++6");
    let want = glibcxx_of_gcc
        .iter()
        .find(|(major, _)| gcc.starts_with(&format!("{major}.")))
        .map(|(_, v)| *v)
        .unwrap_or_else(|| panic!("no GLIBCXX known for libstdc++6 {gcc}"));
    assert_eq!(cli.glibcxx.as_deref(), Some(want), "libstdc++6 {gcc}");
    // Every catalog library the probe calls present is one the root's ldconfig lists or a
    // file of the loader's default dirs, and the other way round.
    let ldconfig = root.run("/sbin/ldconfig -p");
    assert_eq!(ldconfig.code, Some(0), "{}", ldconfig.stderr);
    for name in catalog::catalog(catalog::CATALOG).expect("catalog") {
        let in_dirs = [
            "/lib/x86_64-linux-gnu",
            "/usr/lib/x86_64-linux-gnu",
            "/lib",
            "/usr/lib",
        ]
        .iter()
        .any(|d| root.host_path(&format!("{d}/{name}")).exists());
        let listed = in_dirs
            || ldconfig.stdout.lines().any(|l| {
                l.trim_start()
                    .starts_with(&format!("{name} (libc6,x86-64)"))
            });
        let probed = cli.libraries.iter().any(|l| l.soname == name);
        assert_eq!(
            probed, listed,
            "{suite:?}: {name}: probe {probed}, ldconfig {listed}"
        );
    }
    // Symbol versions come from the library itself.
    let libc = cli
        .libraries
        .iter()
        .find(|l| l.soname == "libc.so.6")
        .expect("libc.so.6 found");
    assert!(libc
        .versions
        .iter()
        .any(|v| *v == format!("GLIBC_{}", suite.glibc())
            || suite == Suite::Bullseye && v == "GLIBC_2.30"));
    assert!(
        cli.pythons.is_empty(),
        "a minbase root has no Python: {:?}",
        cli.pythons
    );

    // The unpacker a bundle carries (`NAME/unpack --probe`, static) gives the same profile;
    // the sh script the same code.
    let tmp = airgap_tests::tempdir();
    std::fs::write(tmp.path().join("hello.txt"), "hello").expect("write");
    std::fs::write(
        tmp.path().join("airgap.toml"),
        "[bundle]\nname = \"carried\"\n\n[sources.files]\npaths = [\"hello.txt\"]\n",
    )
    .expect("write config");
    let archive = tmp.path().join("carried.tar.gz");
    airgap_tests::run(
        airgap_tests::with_build_plugins(airgap_tests::airgap())
            .current_dir(tmp.path())
            .args(["bundle", "-c", "airgap.toml", "-o"])
            .arg(&archive),
    )
    .success();
    std::fs::copy(&archive, root.host_path("/root/carried.tar.gz")).expect("carry");
    let unpacked = root.run("cd /root && tar xzf carried.tar.gz && ./carried/unpack --probe /opt");
    assert_eq!(
        unpacked.code,
        Some(0),
        "unpack --probe: {}",
        unpacked.stderr
    );
    let mut from_unpacker = Profile::from_toml(&unpacked.stdout).expect("TOML profile");
    let mut cli_same = cli.clone();
    for p in [&mut from_unpacker, &mut cli_same] {
        // Free space moves between two runs; everything else is the same.
        for place in [&mut p.tmpdir, &mut p.dest].into_iter().flatten() {
            place.free_mib = None;
        }
    }
    assert_eq!(
        from_unpacker, cli_same,
        "{suite:?}: unpack --probe and airgap probe differ"
    );
    std::fs::write(root.host_path("/probe.sh"), airgap_probe::script::script()).expect("write");
    let sh = root.run("sh /probe.sh /opt");
    assert_eq!(sh.code, Some(0), "probe.sh: {}", sh.stderr);
    let sh_code = code_line(&sh.stdout);
    let from_script = code::decode(&sh_code).unwrap_or_else(|e| panic!("{e}: {}", sh.stdout));
    assert_eq!(
        from_script,
        cli.code_view(),
        "{suite:?}: the script's code and the probe's differ\nscript:\n{}",
        sh.stdout
    );
    assert_eq!(sh_code, code_line(&unpacked.stderr));
}

#[test]
fn probe_unpacker_and_script_agree_with_dpkg_in_bookworm() {
    probes_agree_in(Suite::Bookworm, &[("12", "3.4.30")]);
}

#[test]
fn probe_unpacker_and_script_agree_with_dpkg_in_bullseye() {
    probes_agree_in(Suite::Bullseye, &[("10", "3.4.28")]);
}

/// The script and the probe on this machine, with real Pythons on `PATH`.
#[test]
fn script_and_probe_agree_here_with_pythons() {
    // The two versions `cargo xtask setup` installs (xtask/setup/python.txt).
    let pys: Vec<_> = [(3, 11), (3, 13)]
        .iter()
        .filter_map(|(a, b)| airgap_tests::python::find(*a, *b))
        .collect();
    if pys.len() < 2 {
        return airgap_tests::skip("needs CPython 3.11 and 3.13 (cargo xtask setup)");
    }
    let tmp = airgap_tests::tempdir();
    let bin = tmp.path().join("bin");
    std::fs::create_dir_all(&bin).expect("mkdir");
    for p in &pys {
        let (a, b, _) = p.version;
        std::os::unix::fs::symlink(&p.path, bin.join(format!("python{a}.{b}"))).expect("link");
    }
    let path = format!("{}:/usr/bin:/bin", bin.display());
    let done = airgap_tests::run(
        airgap_tests::airgap()
            .args(["probe", "--json"])
            .env_clear()
            .env("PATH", &path),
    )
    .success();
    let p = Profile::from_json(&done.stdout).expect("profile");
    // Ours first (PATH order, names in order within a dir), then the system's.
    let ours: Vec<_> = p
        .pythons
        .iter()
        .take(2)
        .map(|p| (p.version.clone(), p.abi.clone()))
        .collect();
    // Within one directory, by name, as `ls` lists them.
    let mut by_name: Vec<_> = pys.iter().collect();
    by_name.sort_by_key(|p| format!("python{}.{}", p.version.0, p.version.1));
    let want: Vec<_> = by_name
        .iter()
        .map(|p| {
            let (a, b, c) = p.version;
            (format!("{a}.{b}.{c}"), format!("cp{a}{b}"))
        })
        .collect();
    assert_eq!(ours, want);
    let sh = airgap_tests::run(
        Command::new("sh")
            .arg("-c")
            .arg(airgap_probe::script::script())
            .env_clear()
            .env("PATH", &path),
    )
    .success();
    let back = code::decode(&code_line(&sh.stdout)).expect("script code");
    assert_eq!(back.pythons, p.code_view().pythons, "{}", sh.stdout);
    assert_eq!(back.glibc, p.glibc);
    assert_eq!(back.libraries, p.code_view().libraries);
}

/// probe -> code -> `probe --decode CODE` -> the same profile; a one-character typo is refused.
#[test]
fn the_code_round_trips_through_the_cli_and_a_typo_is_refused() {
    let done = airgap_tests::run(airgap_tests::airgap().args(["probe", "--json"])).success();
    let p = Profile::from_json(&done.stdout).expect("profile");
    let c = code_line(&done.stderr);
    assert_eq!(c, code::encode(&p));
    assert!(c.len() < 200, "{c}");
    let back = airgap_tests::run(airgap_tests::airgap().args(["probe", "--json", "--decode", &c]))
        .success();
    let decoded = Profile::from_json(&back.stdout).expect("decoded profile");
    assert_eq!(decoded, p.code_view());
    let mut typo: Vec<char> = c.chars().collect();
    typo[3] = if typo[3] == 'X' { 'Y' } else { 'X' };
    let typo: String = typo.into_iter().collect();
    let refused =
        airgap_tests::run(airgap_tests::airgap().args(["probe", "--decode", &typo])).failure();
    assert!(
        refused.stderr.contains("check symbols"),
        "{}",
        refused.stderr
    );
    assert!(refused.stderr.contains("help:"), "{}", refused.stderr);
}

/// With the profile of a bookworm root, syslibs grafts only what bookworm lacks, and the glibc
/// floor of what it grafts drops to the environment's own.
#[test]
fn a_bookworm_profile_grafts_fewer_libraries_and_lowers_the_floor() {
    use crate::syslibs_support::*;
    use airgap_plugin_api::TargetProfile;
    if !rootfs::supported() {
        return airgap_tests::skip("needs root, unshare and chroot");
    }
    let Some(py) = pyenv_python().filter(|p| p.join("bin/python3.11").exists()) else {
        return airgap_tests::skip("no CPython 3.11 installation (cargo xtask setup builds one)");
    };
    let earlier = bundle_files(&py, "py", &python_skip);
    let root = DebianRoot::new(Suite::Bookworm);
    let profile = probe_in_root(&root);
    let tmp = airgap_tests::tempdir();
    let python = python_environment(&py);
    let graft = |target: TargetProfile, name: &str| {
        let work = tmp.path().join(name);
        std::fs::create_dir_all(&work).expect("work dir");
        let req = request(
            earlier.clone(),
            &work,
            Some(python.clone()),
            target,
            serde_json::json!({}),
        );
        run_syslibs(&req)
    };
    let mut declared = TargetProfile::default();
    declared.glibc = Some("2.36".into());
    let mut probed = declared.clone();
    airgap_core::target::apply(&profile, &mut probed, true);
    let by_policy = graft(declared, "policy");
    let by_profile = graft(probed, "profile");
    let names = |c: &airgap_plugin_api::Contribution| -> Vec<String> {
        c.packages.iter().map(|p| p.name.clone()).collect()
    };
    let (policy_names, profile_names) = (names(&by_policy), names(&by_profile));
    assert!(
        profile_names.len() < policy_names.len(),
        "profile {profile_names:?}, policy {policy_names:?}"
    );
    for lib in &profile_names {
        assert!(
            !profile.libraries.iter().any(|l| l.soname == *lib),
            "{lib} grafted although bookworm has it"
        );
    }
    // libssl3 and libsqlite3 are not in a minbase root: grafted either way.
    for lib in ["libssl.so.3", "libsqlite3.so.0"] {
        assert!(
            profile_names.iter().any(|n| n == lib),
            "{lib}: {profile_names:?}"
        );
    }
    // The floor: the highest GLIBC_ any grafted library needs.
    let floor = |c: &airgap_plugin_api::Contribution| {
        let mut max = airgap_elf::Version::default();
        for e in &c.entries {
            let airgap_plugin_api::EntryKind::Path { source: src, .. } = &e.kind else {
                continue;
            };
            if !e.dest.contains("airgap-syslibs/") {
                continue;
            }
            if let Ok(elf) = airgap_elf::ElfFile::parse(src) {
                if let Some(v) = elf.symbol_versions().max("GLIBC") {
                    max = max.max(v.clone());
                }
            }
        }
        max
    };
    let env_floor = {
        let mut max = airgap_elf::Version::default();
        for f in &earlier {
            if let Some(src) = &f.source {
                if let Ok(elf) = airgap_elf::ElfFile::parse(src) {
                    if let Some(v) = elf.symbol_versions().max("GLIBC") {
                        max = max.max(v.clone());
                    }
                }
            }
        }
        max
    };
    let (fp, fq) = (floor(&by_policy), floor(&by_profile));
    eprintln!(
        "grafted: {} with the manylinux default (floor {fp}), {} with the bookworm profile (floor {fq}): {profile_names:?}; environment floor {env_floor}",
        policy_names.len(),
        profile_names.len()
    );
    assert!(fp > env_floor, "policy floor {fp}, environment {env_floor}");
    assert!(
        fq <= env_floor,
        "profile floor {fq}, environment {env_floor}"
    );
}

/// The real CLI: `bundle --target FILE`, `[target] profile`, `check --target FILE|CODE`, for a
/// pyenv interpreter (a source build linking Debian 12's libraries).
#[test]
fn bundle_and_check_take_a_probed_target() {
    use airgap_tests::{build_dir, run, tempdir};
    if !rootfs::supported() {
        return airgap_tests::skip("needs root, unshare and chroot");
    }
    let Some(py) = crate::syslibs_support::pyenv_python() else {
        return airgap_tests::skip("no CPython 3.11 installation (cargo xtask setup builds one)");
    };
    let tmp = tempdir();
    let bookworm = DebianRoot::new(Suite::Bookworm);
    let bullseye = DebianRoot::new(Suite::Bullseye);
    let write = |name: &str, p: &Profile| {
        let path = tmp.path().join(name);
        std::fs::write(&path, p.to_toml().expect("toml")).expect("write profile");
        path.to_string_lossy().into_owned()
    };
    let bookworm_profile = probe_in_root(&bookworm);
    let bookworm_toml = write("bookworm.toml", &bookworm_profile);
    let bullseye_toml = write("bullseye.toml", &probe_in_root(&bullseye));
    let p = py.display();
    let config = |dir: &str, target: &str| {
        let d = tmp.path().join(dir);
        std::fs::create_dir_all(&d).expect("mkdir");
        let text = format!(
            r#"[bundle]
name = "py"
{target}
[sources.files]
paths = [
  {{ source = "{p}/bin/python3.11", dest = "py/bin/python3.11" }},
  {{ source = "{p}/lib/libpython3.11.so.1.0", dest = "py/lib/libpython3.11.so.1.0" }},
  {{ source = "{p}/lib/python3.11", dest = "py/lib/python3.11" }},
]
exclude = ["site-packages", "test", "idlelib", "tkinter", "turtledemo", "ensurepip", "lib2to3", "__pycache__", "config-3.11-*", "_tkinter*", "*.pyc"]

[sources.syslibs]
dir = "py/lib/airgap-syslibs"
"#
        );
        let path = d.join("airgap.toml");
        std::fs::write(&path, text).expect("write config");
        path
    };
    let cli = || {
        let mut cmd = airgap_tests::airgap();
        cmd.env("AIRGAP_NO_PROGRESS", "true")
            .arg("--plugin-dir")
            .arg(build_dir());
        cmd
    };
    let bundle = |cfg: &Path, out: &str, extra: &[&str]| {
        let out = tmp.path().join(out);
        run(cli()
            .args(["bundle", "--compression", "zstd", "-c"])
            .arg(cfg)
            .arg("-o")
            .arg(&out)
            .args(extra))
        .success();
        out.to_string_lossy().into_owned()
    };
    let json = |args: &[&str]| -> (Option<i32>, serde_json::Value) {
        let done = run(cli().args(args));
        let v = serde_json::from_str(&done.stdout)
            .unwrap_or_else(|e| panic!("{e}: {args:?}: {}\n{}", done.stdout, done.stderr));
        (done.code, v)
    };
    let grafted = |bundle: &str| -> Vec<String> {
        let (_, v) = json(&["inspect", bundle, "--json"]);
        // A probed target's record (`target.system`) as the published schema describes it.
        airgap_tests::schema::validate_inspect(&v).unwrap_or_else(|e| panic!("{e}\n{v:#}"));
        let mut names: Vec<String> = v["packages"]
            .as_array()
            .expect("packages")
            .iter()
            .filter(|p| p["package"]["kind"] == "system")
            .filter_map(|p| p["package"]["name"].as_str().map(str::to_owned))
            .collect();
        names.sort();
        names
    };
    let floor = |bundle: &str| {
        let (code, v) = json(&["check", bundle, "--json"]);
        assert_eq!(code, Some(0), "{v}");
        airgap_elf::Version::parse(v["min_glibc"]["version"].as_str().expect("min glibc"))
            .expect("version")
    };

    let default = bundle(&config("default", ""), "default.tar.zst", &[]);
    let probed = bundle(
        &config("flag", ""),
        "probed.tar.zst",
        &["--target", &bookworm_toml],
    );
    // `[target] profile` is relative to the configuration file.
    let in_config_cfg = config("in-config", "\n[target]\nprofile = \"bookworm.toml\"\n");
    std::fs::copy(&bookworm_toml, tmp.path().join("in-config/bookworm.toml")).expect("copy");
    let in_config = bundle(&in_config_cfg, "in-config.tar.zst", &[]);
    let (by_policy, by_profile) = (grafted(&default), grafted(&probed));
    assert!(
        by_profile.len() < by_policy.len(),
        "bookworm profile {by_profile:?}, manylinux default {by_policy:?}"
    );
    assert_eq!(grafted(&in_config), by_profile);
    assert!(
        by_policy.iter().any(|n| n == "libcrypt.so.1"),
        "{by_policy:?}"
    );
    assert!(
        !by_profile.iter().any(|n| n == "libcrypt.so.1"),
        "{by_profile:?}"
    );
    let (f_policy, f_profile) = (floor(&default), floor(&probed));
    assert!(
        f_profile < f_policy,
        "floor {f_profile} with the profile, {f_policy} without"
    );

    // Against bullseye: the profile refuses what the root refuses (the root's model is the
    // one the conformance suite checks against glibc's loader).
    let root = bullseye.path().to_string_lossy().into_owned();
    let (c1, by_file) = json(&["check", &probed, "--target", &bullseye_toml, "--json"]);
    let (c2, by_root) = json(&["check", &probed, "--target-root", &root, "--json"]);
    assert_eq!((c1, c2), (Some(3), Some(3)));
    let refused = |v: &serde_json::Value| {
        let mut files: Vec<String> = v["too_new"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|t| t["files"].as_array().cloned().unwrap_or_default())
            .filter_map(|f| f[0].as_str().map(str::to_owned))
            .collect();
        files.sort();
        files.dedup();
        let mut missing: Vec<String> = v["missing"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|m| m["name"].as_str().map(str::to_owned))
            .collect();
        missing.sort();
        (files, missing)
    };
    let (files, missing) = refused(&by_file);
    assert!(
        files.contains(&"py/bin/python3.11".to_string()),
        "{files:?}"
    );
    assert_eq!((files, missing), refused(&by_root));
    assert_eq!(by_file["target"]["policy"], "the target profile");

    // The code of the bookworm profile is a target too.
    let code = code::encode(&bookworm_profile);
    let (c, v) = json(&["check", &probed, "--target", &code, "--json"]);
    assert!(matches!(c, Some(0) | Some(3)), "{v}");
    assert_eq!(v["target"]["policy"], "the target code");
    assert_eq!(v["target"]["glibc"], "2.36");
}
