//! The check's verdict through the loader model, on real packages from the package index,
//! through the real CLI: what must load (executables, extension modules and what they need,
//! with the DT_RPATH inherited from their loaders), what only may (on-demand plugins), and
//! a declared target that drives every rule.

use std::path::{Path, PathBuf};
use std::process::Command;

use airgap_tests::python::{self, Python};
use airgap_tests::{airgap, build_dir, conda, run, tempdir, Done};

fn cli() -> Command {
    let mut cmd = airgap();
    cmd.env("AIRGAP_NO_PROGRESS", "true")
        .arg("--plugin-dir")
        .arg(build_dir());
    cmd
}

fn json(done: &Done) -> serde_json::Value {
    serde_json::from_str(&done.stdout).unwrap_or_else(|e| panic!("{e}: {}", done.stdout))
}

fn need_python(major: u32, minor: u32) -> Python {
    python::find(major, minor).unwrap_or_else(|| {
        panic!("this test needs a Python {major}.{minor} (airgap_tests::python::find found none)")
    })
}

/// The installation prefix of an interpreter (`sys.base_prefix`).
fn base_prefix(py: &Python) -> PathBuf {
    let out = Command::new(&py.path)
        .args(["-c", "import sys; print(sys.base_prefix)"])
        .output()
        .expect("run python");
    PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
}

/// An airgap.toml bundling the venv at `venv` (the conda source bundles its base too).
fn venv_config(dir: &Path, venv: &Path, extra: &str) -> PathBuf {
    let path = dir.join("airgap.toml");
    std::fs::write(
        &path,
        format!(
            "[bundle]\nname = \"app\"\ncompression = \"zstd\"\nlevel = 1\n\n{extra}\n\n[sources.conda]\n\
             prefix = \"{}\"\nstdlib_tests = false\n",
            venv.display()
        ),
    )
    .expect("write config");
    path
}

fn objects(r: &serde_json::Value) -> &Vec<serde_json::Value> {
    r["objects"].as_array().expect("objects in the report")
}

/// Issue 14: numpy < 1.20 wheels (auditwheel's older layout: DT_RPATH on the extension
/// only, libgfortran found by libopenblas through the extension's inherited RPATH) for a
/// Python 3.6 target bundle, and the report says how each library is found.
#[test]
fn a_numpy_wheelhouse_for_python_3_6_bundles() {
    // The wheelhouse is made for a declared target: no Python 3.6 is needed here (none is to
    // be had on a current Debian machine), and every machine runs the same case. 3.6.15 is
    // the last 3.6.
    let version = "3.6.15";
    let tmp = tempdir();
    let config = tmp.path().join("airgap.toml");
    std::fs::write(
        &config,
        format!(
            "[bundle]\nname = \"wh\"\n\n[target]\npython = \"{version}\"\n\n[sources.pip]\npackages = [\"numpy<1.20\"]\n"
        ),
    )
    .expect("write config");
    let out = tmp.path().join("wh.tar.gz");
    let done = run(cli()
        .args(["bundle", "-c"])
        .arg(&config)
        .arg("-o")
        .arg(&out));
    assert_eq!(done.code, Some(0), "{}", done.stderr);
    let done = run(cli().arg("check").arg(&out).arg("--json"));
    assert_eq!(done.code, Some(0), "{}", done.stderr);
    let r = json(&done);
    let objs = objects(&r);
    let exts: Vec<&serde_json::Value> = objs.iter().filter(|o| o["role"] == "extension").collect();
    assert!(exts.len() > 10, "{}", done.stdout);
    assert!(exts.iter().all(|o| o["loads"] == true), "{}", done.stdout);
    let blas = objs
        .iter()
        .find(|o| {
            o["path"]
                .as_str()
                .is_some_and(|p| p.contains("numpy.libs/libopenblas"))
        })
        .unwrap_or_else(|| panic!("no libopenblas: {}", done.stdout));
    assert_eq!(blas["role"], "needed");
    let gfortran = blas["deps"]
        .as_array()
        .and_then(|d| {
            d.iter().find(|d| {
                d["name"]
                    .as_str()
                    .is_some_and(|n| n.starts_with("libgfortran"))
            })
        })
        .unwrap_or_else(|| panic!("libopenblas needs no libgfortran: {blas}"));
    assert_eq!(gfortran["in"], "bundle", "{blas}");
    assert_eq!(gfortran["via"], "rpath", "{blas}");
    assert!(
        gfortran["found"]
            .as_str()
            .is_some_and(|f| f.starts_with("wheels/numpy-") && f.contains(".whl!/numpy.libs/")),
        "{blas}"
    );
}

/// Issue 14: scipy and pillow wheels in a venv, without `[sources.syslibs]`: the check
/// names no library of theirs (their own copies are reached through the extension modules'
/// inherited RPATH); what it names, if anything, is needed by the base interpreter's own
/// files (a source build linking this machine's libssl, libsqlite3...).
#[test]
fn a_venv_with_scipy_and_pillow_needs_no_syslibs() {
    let py = need_python(3, 11);
    let base = base_prefix(&py);
    let tmp = tempdir();
    let venv = tmp.path().join("venv");
    conda::venv(&base, &venv, &["numpy", "scipy", "pillow"]);
    let config = venv_config(tmp.path(), &venv, "[sources.syslibs]\nenabled = false\n");
    let done = run(cli().args(["check", "--json", "-c"]).arg(&config));
    let r = json(&done);
    for m in r["missing"].as_array().expect("missing") {
        for user in m["needed_by"].as_array().expect("needed_by") {
            let user = user.as_str().unwrap_or_default();
            assert!(
                !user.contains("site-packages"),
                "{} reported missing for {user}: {}",
                m["name"],
                done.stderr
            );
        }
    }
    for p in r["problems"].as_array().expect("problems") {
        let p = p.as_str().unwrap_or_default();
        assert!(
            !(p.contains("scipy") || p.contains("PIL") || p.contains("pillow")),
            "{p}"
        );
    }
    let objs = objects(&r);
    let site: Vec<&serde_json::Value> = objs
        .iter()
        .filter(|o| {
            o["path"]
                .as_str()
                .is_some_and(|p| p.contains("site-packages/scipy"))
        })
        .collect();
    assert!(site.len() > 20, "{}", done.stdout);
    for o in site.iter().copied().chain(objs.iter().filter(|o| {
        o["path"]
            .as_str()
            .is_some_and(|p| p.contains("site-packages/PIL") || p.contains("pillow.libs"))
    })) {
        assert_eq!(o["loads"], true, "{o}");
    }
    // On this machine (which has what the base interpreter links), it all passes.
    let done = run(cli()
        .args(["check", "--target-root", "/", "-c"])
        .arg(&config));
    assert_eq!(done.code, Some(0), "{}", done.stderr);
}

/// Issue 14: `[target] glibc` older than what the environment needs refuses at bundle time
/// and names the file and the version; `check -c` and `check BUNDLE` say the same, with one
/// consistent target line.
#[test]
fn a_declared_old_glibc_refuses_and_names_the_file() {
    let py = need_python(3, 11);
    let base = base_prefix(&py);
    let tmp = tempdir();
    let venv = tmp.path().join("venv");
    conda::venv(&base, &venv, &[]);
    // The environment's own files, without what syslibs would graft from this machine.
    let config = venv_config(
        tmp.path(),
        &venv,
        "[target]\nglibc = \"2.31\"\n\n[sources.syslibs]\nenabled = false\n",
    );
    let out = tmp.path().join("app.tar.zst");
    let done = run(cli()
        .args(["bundle", "-c"])
        .arg(&config)
        .arg("-o")
        .arg(&out));
    assert_eq!(done.code, Some(3), "{}", done.stderr);
    assert!(
        done.stderr.contains("but the target has glibc 2.31"),
        "{}",
        done.stderr
    );
    assert!(done.stderr.contains("needs GLIBC_2.3"), "{}", done.stderr);
    assert!(
        !out.exists(),
        "a bundle was written for a target it cannot load on"
    );

    let done = run(cli().args(["check", "-c"]).arg(&config));
    assert_eq!(done.code, Some(3), "{}", done.stderr);
    assert!(
        done.stderr.contains("manylinux_2_31 (glibc 2.31)"),
        "{}",
        done.stderr
    );
    assert!(!done.stderr.contains("manylinux_2_36"), "{}", done.stderr);
    assert!(
        done.stderr.contains("libpython3.11.so.1.0 needs GLIBC_2.3"),
        "{}",
        done.stderr
    );

    run(cli()
        .args(["bundle", "--no-check", "-c"])
        .arg(&config)
        .arg("-o")
        .arg(&out))
    .success();
    let done = run(cli().arg("check").arg(&out).arg("--json"));
    assert_eq!(done.code, Some(3), "{}", done.stderr);
    let r = json(&done);
    assert_eq!(r["target"]["policy"], "manylinux_2_31", "{}", done.stdout);
    assert_eq!(r["target"]["glibc"], "2.31");
    let glibc = r["too_new"]
        .as_array()
        .and_then(|t| t.iter().find(|t| t["prefix"] == "GLIBC"))
        .unwrap_or_else(|| panic!("no glibc problem: {}", done.stdout));
    assert!(
        glibc["required"].as_str().is_some_and(|v| v > "2.31"),
        "{glibc}"
    );
    // The objects say which file lacks which version.
    assert!(
        objects(&r).iter().any(|o| o["missing_versions"]
            .as_array()
            .is_some_and(|v| v.iter().any(|v| v
                .as_str()
                .is_some_and(|v| v.starts_with("libc.so.6: GLIBC_2.3"))))),
        "{}",
        done.stdout
    );
}

/// Issue 14: cuFile's RDMA plugin (`libcufile_rdma.so.1`) needs libibverbs and librdmacm,
/// which nothing in the bundle has and this machine lacks too; nothing NEEDs the plugin
/// (libcufile dlopen()s it). A warning, not a refusal; `--strict` refuses.
#[test]
fn an_on_demand_plugin_is_a_warning_and_strict_refuses() {
    let py = need_python(3, 11);
    let base = base_prefix(&py);
    let tmp = tempdir();
    let venv = tmp.path().join("venv");
    conda::venv(&base, &venv, &["nvidia-cufile-cu12"]);
    let rdma = walkdir::WalkDir::new(&venv).into_iter().flatten().any(|e| {
        e.file_name()
            .to_string_lossy()
            .starts_with("libcufile_rdma")
    });
    assert!(rdma, "nvidia-cufile-cu12 has no libcufile_rdma any more");
    let config = venv_config(tmp.path(), &venv, "");
    let done = run(cli()
        .args(["check", "--target-root", "/", "--json", "-c"])
        .arg(&config));
    assert_eq!(done.code, Some(0), "{}", done.stderr);
    assert!(
        done.stderr.contains("libcufile_rdma")
            && done
                .stderr
                .contains("loads only on demand; would not load here either"),
        "{}",
        done.stderr
    );
    let r = json(&done);
    let o = objects(&r)
        .iter()
        .find(|o| {
            o["path"]
                .as_str()
                .is_some_and(|p| p.contains("libcufile_rdma"))
        })
        .expect("the plugin in objects");
    assert_eq!(o["role"], "on_demand", "{o}");
    assert_eq!(o["loads"], false, "{o}");
    assert!(
        o["missing"].as_array().is_some_and(|m| m
            .iter()
            .any(|m| m.as_str().is_some_and(|m| m.starts_with("libibverbs")))),
        "{o}"
    );

    let done = run(cli()
        .args(["check", "--strict", "--target-root", "/", "-c"])
        .arg(&config));
    assert_eq!(done.code, Some(3), "{}", done.stderr);
    assert!(done.stderr.contains("libcufile_rdma"), "{}", done.stderr);
}

/// The carried unpacker is a program the target runs (`NAME/unpack`): it is judged like the
/// bundle's own. A dynamically linked one built here needs this machine's glibc, and a
/// declared older target refuses it by name, at `check -c`, at `bundle` and at `check BUNDLE`;
/// the static one `cargo xtask build` makes runs anywhere.
#[test]
fn the_carried_unpacker_must_run_on_the_declared_target() {
    let tmp = tempdir();
    std::fs::write(tmp.path().join("data.txt"), "data\n").expect("write");
    let config = tmp.path().join("airgap.toml");
    std::fs::write(
        &config,
        "[bundle]\nname = \"b\"\n\n[target]\nglibc = \"2.17\"\n\n[sources.files]\npaths = [\"data.txt\"]\n",
    )
    .expect("write config");
    let dynamic = build_dir().join("airgap-unpack");
    let static_one = build_dir().join("airgap-unpack-static");
    assert!(
        static_one.is_file(),
        "this test needs the static unpacker of `cargo xtask build` at {}",
        static_one.display()
    );

    let done = run(cli()
        .env("AIRGAP_UNPACKER", &dynamic)
        .args(["check", "-c"])
        .arg(&config));
    assert_eq!(done.code, Some(3), "{}", done.stderr);
    assert!(
        done.stderr
            .contains(".airgap/airgap-unpack needs GLIBC_2.3"),
        "{}",
        done.stderr
    );
    let out = tmp.path().join("b.tar.gz");
    let done = run(cli()
        .env("AIRGAP_UNPACKER", &dynamic)
        .args(["bundle", "-c"])
        .arg(&config)
        .arg("-o")
        .arg(&out));
    assert_eq!(done.code, Some(3), "{}", done.stderr);
    assert!(
        !out.exists(),
        "a bundle whose unpacker cannot run there was written"
    );
    run(cli()
        .env("AIRGAP_UNPACKER", &dynamic)
        .args(["bundle", "--no-check", "-c"])
        .arg(&config)
        .arg("-o")
        .arg(&out))
    .success();
    let done = run(cli().arg("check").arg(&out));
    assert_eq!(done.code, Some(3), "{}", done.stderr);
    assert!(
        done.stderr
            .contains(".airgap/airgap-unpack needs GLIBC_2.3"),
        "{}",
        done.stderr
    );

    let done = run(cli()
        .env("AIRGAP_UNPACKER", &static_one)
        .args(["check", "-c"])
        .arg(&config));
    assert_eq!(done.code, Some(0), "{}", done.stderr);
    assert!(!done.stderr.contains("airgap-unpack"), "{}", done.stderr);
}

/// Issue 17: a CUDA-wheel environment (the `nvidia-cuda-runtime-cu12` wheel) against probed
/// profiles with no driver, an old driver and a new enough one: three verdicts, each naming
/// the figures; `airgap bundle` refuses the old driver as `check` does.
#[test]
fn the_cuda_runtime_is_judged_against_the_probed_driver() {
    let py = need_python(3, 11);
    let base = base_prefix(&py);
    let tmp = tempdir();
    let venv = tmp.path().join("venv");
    conda::venv(&base, &venv, &["nvidia-cuda-runtime-cu12"]);
    let config = venv_config(tmp.path(), &venv, "[sources.syslibs]\nenabled = false\n");
    // This machine's own profile, with the driver each case needs.
    let here = tmp.path().join("here.toml");
    run(cli().args(["probe", "--out"]).arg(&here)).success();
    let here = airgap_probe::Profile::from_toml(&std::fs::read_to_string(&here).unwrap())
        .expect("probe profile");
    let profile = |name: &str, driver: Option<&str>| {
        let mut p = here.clone();
        p.nvidia_driver = driver.map(str::to_owned);
        let path = tmp.path().join(format!("{name}.toml"));
        std::fs::write(&path, p.to_toml().expect("toml")).unwrap();
        path
    };
    let check = |target: &Path| {
        let done = run(cli()
            .args(["check", "--json", "-c"])
            .arg(&config)
            .arg("--target")
            .arg(target));
        (done.code, json(&done), done.stderr)
    };

    let (code, r, err) = check(&profile("none", None));
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(r["cuda"]["runtime"], "12", "{}", r["cuda"]);
    assert_eq!(r["cuda"]["min_driver"], "525.60.13");
    assert_eq!(r["cuda"]["driver_known"], true);
    assert!(
        err.contains("NVIDIA driver >= 525.60.13 for the CUDA 12 runtime")
            && err.contains("the target has none"),
        "{err}"
    );

    let old = profile("old", Some("470.82.01"));
    let (code, r, err) = check(&old);
    assert_eq!(code, Some(3), "{err}");
    let problems = r["problems"].to_string();
    assert!(
        problems.contains("needs NVIDIA driver >= 525.60.13, but the target's driver is 470.82.01"),
        "{problems}"
    );
    let out = tmp.path().join("app.tar.zst");
    let done = run(cli()
        .args(["bundle", "-c"])
        .arg(&config)
        .arg("--target")
        .arg(&old)
        .arg("-o")
        .arg(&out));
    assert_eq!(done.code, Some(3), "{}", done.stderr);
    assert!(done.stderr.contains("470.82.01"), "{}", done.stderr);
    assert!(!out.exists());

    let (code, r, err) = check(&profile("new", Some("550.54.14")));
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(r["cuda"]["target_driver"], "550.54.14");
    assert!(err.contains("the target has 550.54.14"), "{err}");

    // Without a profile the driver is not known, and the check says what it needs.
    let done = run(cli().args(["check", "-c"]).arg(&config));
    assert!(
        done.stderr.contains("NVIDIA driver >= 525.60.13") && done.stderr.contains("is not known"),
        "{}",
        done.stderr
    );
}
