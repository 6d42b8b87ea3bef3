//! A wheelhouse bundle (wheels installed on the target by pip) whose wheel was built here
//! against a system library: the check looks inside the wheel and names the member and the
//! library before transfer.

use std::path::Path;
use std::process::Command;

use airgap_tests::rootfs::{DebianRoot, Suite};
use airgap_tests::{airgap, build_dir, run, tempdir};

fn cli() -> Command {
    let mut cmd = airgap();
    cmd.env("AIRGAP_NO_PROGRESS", "true")
        .arg("--plugin-dir")
        .arg(build_dir());
    cmd
}

/// A wheel holding an extension module linked against libpq, deflated like pip's.
fn wheel(dir: &Path) -> std::path::PathBuf {
    let src = dir.join("pqver.c");
    std::fs::write(
        &src,
        "#include <libpq-fe.h>\nint pqver(void) { return PQlibVersion(); }\n",
    )
    .expect("write source");
    let so = dir.join("pqver.so");
    run(Command::new("gcc")
        .args(["-shared", "-fPIC", "-I/usr/include/postgresql", "-o"])
        .arg(&so)
        .arg(&src)
        .arg("-lpq"))
    .success();
    let whl = dir.join("wheels/pqver-0.1-cp311-cp311-linux_x86_64.whl");
    std::fs::create_dir_all(whl.parent().expect("parent")).expect("mkdir");
    run(Command::new("python3").arg("-c").arg(
        "import sys, zipfile\n\
         z = zipfile.ZipFile(sys.argv[1], 'w', zipfile.ZIP_DEFLATED)\n\
         z.write(sys.argv[2], 'pqver/_pqver.cpython-311-x86_64-linux-gnu.so')\n\
         z.writestr('pqver-0.1.dist-info/WHEEL', 'Wheel-Version: 1.0\\nTag: cp311-cp311-linux_x86_64\\n')\n\
         z.close()",
    )
    .arg(&whl)
    .arg(&so))
    .success();
    whl
}

#[test]
fn check_names_a_library_a_wheel_member_needs_and_the_target_lacks() {
    let tmp = tempdir();
    wheel(tmp.path());
    let config = tmp.path().join("airgap.toml");
    std::fs::write(
        &config,
        "[bundle]\nname = \"wh\"\n\n[sources.files]\npaths = [\"wheels\"]\n",
    )
    .expect("write config");
    let out = tmp.path().join("wh.tar.gz");
    // `airgap bundle` already refuses it (no target declared: a manylinux machine with this
    // machine's glibc, where libpq is not assumed)...
    let done = run(cli()
        .args(["bundle", "-c"])
        .arg(&config)
        .arg("-o")
        .arg(&out));
    assert_eq!(done.code, Some(3), "{}", done.stderr);
    assert!(
        done.stderr.contains("libpq.so.5 is needed by wheels/pqver"),
        "{}",
        done.stderr
    );
    assert!(!out.exists());
    // ... and writes it when told to go on.
    run(cli()
        .args(["bundle", "--no-check", "-c"])
        .arg(&config)
        .arg("-o")
        .arg(&out))
    .success();

    let root = DebianRoot::new(Suite::Bookworm);
    let done = run(cli()
        .arg("check")
        .arg(&out)
        .arg("--target-root")
        .arg(root.path())
        .arg("--json"));
    assert_eq!(done.code, Some(3), "{}", done.stderr);
    let r: serde_json::Value = serde_json::from_str(&done.stdout).expect("json");
    let pq = r["missing"]
        .as_array()
        .and_then(|m| m.iter().find(|x| x["name"] == "libpq.so.5"))
        .unwrap_or_else(|| panic!("libpq not reported: {}", done.stdout));
    assert_eq!(
        pq["needed_by"][0],
        "wheels/pqver-0.1-cp311-cp311-linux_x86_64.whl!/pqver/_pqver.cpython-311-x86_64-linux-gnu.so"
    );
    assert!(
        done.stderr.contains("help: a wheel built here"),
        "{}",
        done.stderr
    );
    // This machine has libpq: the same bundle passes here.
    run(cli().arg("check").arg(&out).args(["--target-root", "/"])).success();
}
