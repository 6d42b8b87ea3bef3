//! What a person reads, pinned: the CLI's help texts, its errors with their `help:` lines, and
//! the summaries of `bundle`, `verify`, `inspect` and `unpack`, as insta snapshots (in
//! `tests/it/snapshots/`). A changed message then shows up as a reviewed diff, not as a
//! `contains` check that still passes. Paths, sizes, digests, times and the version are
//! redacted so that the snapshots hold on any machine.
//!
//! To review a change: `INSTA_UPDATE=always cargo test -p airgap-tests --test it cli_output`,
//! then read `git diff tests/it/snapshots`. Under CI (`CI=true`) a missing or changed
//! snapshot fails.

use std::fs;
use std::path::Path;
use std::process::Command;

use airgap_tests::{airgap, bin, run, tempdir, Done};

/// The redactions every snapshot gets: `[TMP]` for the test's directory, then machine- and
/// build-dependent figures.
pub(crate) fn filters(tmp: &Path) -> Vec<(String, String)> {
    let tmp = regex_escape(&tmp.to_string_lossy());
    vec![
        (tmp, "[TMP]".into()),
        (regex_escape(env!("CARGO_PKG_VERSION")), "[VERSION]".into()),
        (r"\b[0-9a-f]{64}\b".into(), "[SHA256]".into()),
        (r"\b[0-9a-f]{16}\b".into(), "[SHA256-PREFIX]".into()),
        // Sizes are right-aligned in columns: the padding goes with the figure.
        (
            r"[ ]*\b\d+(\.\d+)? (B|KiB|MiB|GiB)\b".into(),
            " [SIZE]".into(),
        ),
        (r"\b\d+ bytes\b".into(), "[N] bytes".into()),
        (r#""bytes": \d+"#.into(), r#""bytes": [N]"#.into()),
        (r"\b\d+(\.\d+)? ?(s|ms)\b".into(), "[TIME]".into()),
        // Damage at the end of the last gzip member shows while reading whichever entry's data
        // reaches into it (it moves with the size of this build's unpacker), or at the trailer.
        (
            r"(reading [^:\n]+: )?corrupt gzip stream".into(),
            "[WHILE READING]corrupt gzip stream".into(),
        ),
        (
            r"(reading [^:\n]+: )?gzip member does not match".into(),
            "[WHILE READING]gzip member does not match".into(),
        ),
    ]
}

fn regex_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if "\\.+*?()|[]{}^$#&-~".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// stderr (people's text), with the exit code first, redacted.
macro_rules! snapshot {
    ($name:expr, $tmp:expr, $done:expr) => {{
        let done: &Done = &$done;
        let text = format!(
            "exit: {:?}\n--- stdout\n{}--- stderr\n{}",
            done.code, done.stdout, done.stderr
        );
        let filters = filters($tmp);
        let refs: Vec<(&str, &str)> = filters
            .iter()
            .map(|(a, b)| (a.as_str(), b.as_str()))
            .collect();
        insta::with_settings!({filters => refs, prepend_module_to_snapshot => false}, {
            insta::assert_snapshot!($name, text);
        });
    }};
}

/// The CLI at a stable width, with no colour.
fn cli() -> Command {
    let mut cmd = airgap();
    cmd.env("COLUMNS", "100").env("NO_COLOR", "1");
    cmd
}

/// A small project bundled with the `files` source.
fn project(dir: &Path) {
    fs::create_dir_all(dir.join("data/sub")).unwrap();
    fs::write(dir.join("data/sub/a.txt"), "a\n").unwrap();
    fs::write(dir.join("data/b.txt"), "b\n").unwrap();
    fs::write(
        dir.join("airgap.toml"),
        "[bundle]\nname = \"demo\"\n\n[sources.files]\npaths = [\"data\"]\n",
    )
    .unwrap();
}

#[test]
fn help_texts() {
    let tmp = tempdir();
    for (name, args) in [
        ("help", vec!["--help"]),
        ("help_bundle", vec!["bundle", "--help"]),
        ("help_check", vec!["check", "--help"]),
        ("help_verify", vec!["verify", "--help"]),
        ("help_inspect", vec!["inspect", "--help"]),
        ("help_unpack", vec!["unpack", "--help"]),
        ("help_relocate", vec!["relocate", "--help"]),
        ("help_plugins", vec!["plugins", "--help"]),
        ("help_keygen", vec!["keygen", "--help"]),
    ] {
        let done = run(cli().args(&args));
        snapshot!(name, tmp.path(), done);
    }
}

#[test]
fn a_bundle_from_start_to_finish() {
    let tmp = tempdir();
    project(tmp.path());
    let out = tmp.path().join("demo.tar.gz");
    let done = run(cli()
        .current_dir(tmp.path())
        .args([
            "bundle",
            "-c",
            "airgap.toml",
            "-o",
            "demo.tar.gz",
            "--unpacker",
        ])
        .arg(bin("airgap-unpack")))
    .success();
    snapshot!("bundle_summary", tmp.path(), done);
    let done = run(cli().arg("verify").arg(&out)).success();
    snapshot!("verify_summary", tmp.path(), done);
    let done = run(cli().arg("inspect").arg(&out)).success();
    snapshot!("inspect_summary", tmp.path(), done);
    let done = run(cli().arg("unpack").arg(&out).arg(tmp.path().join("dest"))).success();
    snapshot!("unpack_summary", tmp.path(), done);
}

/// The summary of a sealed bundle names what opening it takes on the target: the age
/// identity or the passphrase, the trusted key, and the same steps with minisign, age and tar
/// alone.
#[test]
fn sealed_bundle_summaries_name_what_opening_them_takes() {
    let tmp = tempdir();
    project(tmp.path());
    let dir = tmp.path();
    let (_, age_pub, sk, _) = crate::seal_support::keygen(&dir.join("keys"), "team");
    let recipient = crate::seal_support::recipient(&age_pub);
    let sk = sk.to_str().expect("utf-8 key path");
    fs::write(dir.join("pass.txt"), "correct horse\n").unwrap();
    let cases = [
        (
            "bundle_sealed_summary",
            vec!["--encrypt-to", &recipient, "--sign", sk],
        ),
        (
            "bundle_passphrase_summary",
            vec![
                "--compression",
                "zstd",
                "--passphrase-file",
                "pass.txt",
                "--sign",
                sk,
            ],
        ),
    ];
    for (name, args) in cases {
        let mut done = run(cli()
            .current_dir(dir)
            .args(["bundle", "-c", "airgap.toml", "--unpacker"])
            .arg(bin("airgap-unpack"))
            .args(&args))
        .success();
        done.stderr = redact_key_id(&done.stderr);
        snapshot!(name, dir, done);
    }
}

/// A minisign key id (16 upper-case hex digits, new with every key) as `[KEY ID]`.
fn redact_key_id(text: &str) -> String {
    match text.split_once("(minisign key ") {
        Some((head, tail)) if tail.len() >= 16 => {
            format!("{head}(minisign key [KEY ID]{}", &tail[16..])
        }
        _ => text.to_string(),
    }
}

#[test]
fn errors_say_what_to_do() {
    let tmp = tempdir();
    project(tmp.path());
    let dir = tmp.path();
    let cases: Vec<(&str, Vec<String>)> = vec![
        (
            "error_no_such_config",
            vec!["bundle".into(), "-c".into(), "nope.toml".into()],
        ),
        ("error_unknown_command", vec!["frobnicate".into()]),
        ("error_misspelled_command", vec!["bundel".into()]),
        (
            "error_no_such_bundle",
            vec!["unpack".into(), "nope.tar.gz".into(), "dest".into()],
        ),
        (
            "error_not_a_bundle",
            vec!["verify".into(), "airgap.toml".into()],
        ),
    ];
    for (name, args) in cases {
        let done = run(cli().current_dir(dir).args(&args)).failure();
        snapshot!(name, dir, done);
    }

    fs::write(
        dir.join("unknown-key.toml"),
        "[bundle]\nname = \"demo\"\nnmae = \"typo\"\n\n[sources.files]\npaths = [\"data\"]\n",
    )
    .unwrap();
    let done = run(cli()
        .current_dir(dir)
        .args(["bundle", "-c", "unknown-key.toml"]))
    .failure();
    snapshot!("error_unknown_config_key", dir, done);

    let out = dir.join("demo.tar.gz");
    run(cli()
        .current_dir(dir)
        .args([
            "bundle",
            "-c",
            "airgap.toml",
            "-o",
            "demo.tar.gz",
            "--unpacker",
        ])
        .arg(bin("airgap-unpack")))
    .success();
    fs::create_dir_all(dir.join("full")).unwrap();
    fs::write(dir.join("full/x"), "x").unwrap();
    let done = run(cli().arg("unpack").arg(&out).arg(dir.join("full"))).failure();
    snapshot!("error_destination_not_empty", dir, done);

    // One byte of the last gzip member's CRC changed: the same damage, and so the same
    // message, whatever this build's unpacker looks like (a byte in the middle lands in
    // different entries with different builds).
    let mut bytes = fs::read(&out).unwrap();
    let at = bytes.len() - 8;
    bytes[at] ^= 0x55;
    fs::write(&out, bytes).unwrap();
    let done = run(cli().arg("verify").arg(&out)).failure();
    snapshot!("error_damaged_bundle", dir, done);
}

#[test]
fn the_check_names_the_file_that_needs_a_newer_glibc_than_declared() {
    let tmp = tempdir();
    let dir = tmp.path();
    fs::create_dir_all(dir.join("tools")).unwrap();
    // This machine's `ls` (Debian 12) needs a newer glibc than 2.17.
    fs::copy("/bin/ls", dir.join("tools/ls")).unwrap();
    fs::write(
        dir.join("airgap.toml"),
        "[bundle]\nname = \"tools\"\n\n[target]\nglibc = \"2.17\"\n\n[sources.files]\npaths = [\"tools\"]\n",
    )
    .unwrap();
    let done = run(cli().current_dir(dir).args(["check", "-c", "airgap.toml"]));
    assert_eq!(done.code, Some(3), "{}", done.stderr);
    snapshot!("check_declared_old_glibc", dir, done);
    let done =
        run(cli()
            .current_dir(dir)
            .args(["bundle", "-c", "airgap.toml", "-o", "tools.tar.gz"]))
        .failure();
    snapshot!("bundle_refused_declared_old_glibc", dir, done);
    assert!(!dir.join("tools.tar.gz").exists());
}

/// `project` bundled as `demo.tar.gz` in `dir`.
fn demo_bundle(dir: &Path) -> std::path::PathBuf {
    project(dir);
    run(cli()
        .current_dir(dir)
        .args(["bundle", "-c", "airgap.toml", "-o", "demo.tar.gz"]))
    .success();
    dir.join("demo.tar.gz")
}

/// A config of one `[sources.files]` table with `paths` as given (TOML).
fn files_config(dir: &Path, name: &str, paths: &str) {
    fs::write(
        dir.join(name),
        format!("[bundle]\nname = \"demo\"\n\n[sources.files]\npaths = {paths}\n"),
    )
    .unwrap();
}

/// Whether any plugin ran: the host announces each source before calling it.
fn plugins_ran(done: &Done) -> bool {
    done.stderr.contains("source files (plugin files")
}

/// `sh -c SCRIPT` in a mount namespace of its own (`unshare -m`), with the CLI's
/// environment; `$1`... are `args`. `None` (with the reason) when mounting is impossible.
fn in_mount_namespace(script: &str, args: &[&Path]) -> Result<Done, String> {
    let probe = tempdir();
    let tried = Command::new("unshare")
        .args(["-m", "sh", "-c", "mount -t tmpfs airgap-probe \"$1\"", "sh"])
        .arg(probe.path())
        .output()
        .map_err(|e| format!("cannot run unshare: {e}"))?;
    if !tried.status.success() {
        return Err(format!(
            "cannot mount a tmpfs in a mount namespace (unshare -m; needs root): {}",
            String::from_utf8_lossy(&tried.stderr).trim()
        ));
    }
    let base = cli();
    let mut cmd = Command::new("unshare");
    for (k, v) in base.get_envs() {
        match v {
            Some(v) => cmd.env(k, v),
            None => cmd.env_remove(k),
        };
    }
    cmd.args(["-m", "sh", "-c", script, "sh"])
        .arg(bin("airgap"))
        .args(args);
    Ok(run(&mut cmd))
}

#[test]
fn an_empty_mount_point_as_dest_is_refused_before_anything_is_extracted() {
    let tmp = tempdir();
    let dir = tmp.path();
    let bundle = demo_bundle(dir);
    let mnt = dir.join("mnt");
    let (b1, b2) = (dir.join("b1"), dir.join("b2"));
    for d in [&mnt, &b1, &b2] {
        fs::create_dir(d).unwrap();
    }
    // A tmpfs (another device), then a bind mount of this file system (same device: found
    // in /proc/self/mountinfo); each listed after the unpack, to show it stayed empty. Then
    // the carried unpacker (`tar xzf B && demo/unpack DEST`), which shares the check.
    let script = "set -e; mount -t tmpfs airgap-test \"$3\"; mount --bind \"$4\" \"$5\"; \
                  \"$1\" unpack \"$2\" \"$3\" || echo \"exit $?\"; ls -A \"$3\"; \
                  \"$1\" unpack \"$2\" \"$5\" || echo \"exit $?\"; ls -A \"$5\"; \
                  \"$1\" unpack \"$2\" \"$3/demo\" >/dev/null 2>&1; ls -A \"$3/demo\"; \
                  rm -rf \"$3/demo\"; tar xzf \"$2\" -C \"$6\"; \
                  \"$6/demo/unpack\" \"$3\" || echo \"exit $?\"; ls -A \"$3\"";
    let extracted = dir.join("extracted");
    fs::create_dir(&extracted).unwrap();
    let done = match in_mount_namespace(script, &[&bundle, &mnt, &b1, &b2, &extracted]) {
        Ok(done) => done.success(),
        Err(why) => return airgap_tests::skip(&why),
    };
    snapshot!("error_dest_is_a_mount_point", dir, done);
    // Nothing was extracted beside it on the parent's file system either.
    let left: Vec<_> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains("airgap-staging"))
        .collect();
    assert!(left.is_empty(), "{left:?}");
}

#[test]
fn missing_parents_of_dest_are_made_and_removed_again_when_the_unpack_fails() {
    let tmp = tempdir();
    let dir = tmp.path();
    let bundle = demo_bundle(dir);
    // A damaged copy fails after its parents were made: they go again.
    let mut bytes = fs::read(&bundle).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x40;
    let damaged = dir.join("damaged.tar.gz");
    fs::write(&damaged, bytes).unwrap();
    run(cli()
        .arg("unpack")
        .arg(&damaged)
        .arg(dir.join("no/such/dest")))
    .failure();
    assert!(
        !dir.join("no").exists(),
        "a failed unpack left the parents it made"
    );
    let done = run(cli()
        .arg("unpack")
        .arg(&bundle)
        .arg(dir.join("no/such/dest")))
    .success();
    snapshot!("unpack_makes_missing_parents", dir, done);
    assert!(dir.join("no/such/dest/data/b.txt").is_file());
    let done = run(cli()
        .arg("unpack")
        .arg(&bundle)
        .arg(dir.join("airgap.toml/dest")))
    .failure();
    snapshot!("error_dest_parent_is_a_file", dir, done);
    run(cli().arg("unpack").arg(&bundle).arg(dir.join("tree"))).success();
    let done = run(cli()
        .arg("relocate")
        .arg(dir.join("tree"))
        .arg(dir.join("none/such/place")))
    .failure();
    snapshot!("error_relocate_parent_missing", dir, done);
    assert!(dir.join("tree/data/b.txt").is_file());
}

/// What an unpack ends with: the interpreter, the `activate` line, the kernels and the
/// commands of the environment, in text and in `--json`. The tree is a venv made on the
/// target by an install step, as a wheelhouse bundle's is: here its files come with the
/// `files` source, so the summary is read from the installed tree, not from a plugin.
#[test]
fn the_unpack_summary_names_the_interpreter_activate_kernels_and_commands() {
    let tmp = tempdir();
    let dir = tmp.path();
    let venv = dir.join("app/venv");
    let site = venv.join("lib/python3.11/site-packages");
    fs::create_dir_all(site.join("jupyterlab-4.2.5.dist-info")).unwrap();
    fs::create_dir_all(site.join("black-24.8.0.dist-info")).unwrap();
    fs::create_dir_all(venv.join("bin")).unwrap();
    fs::create_dir_all(venv.join("share/jupyter/kernels/python3")).unwrap();
    fs::write(venv.join("pyvenv.cfg"), "home = /usr/bin\n").unwrap();
    for name in ["python3", "activate", "jupyter-lab", "black", "blackd"] {
        fs::write(venv.join("bin").join(name), "#!/bin/sh\n").unwrap();
    }
    fs::write(
        site.join("jupyterlab-4.2.5.dist-info/entry_points.txt"),
        "[console_scripts]\njupyter-lab = jupyterlab.labapp:main\n\n[jupyter_serverproxy]\nnot-a-command = x:y\n",
    )
    .unwrap();
    fs::write(
        site.join("black-24.8.0.dist-info/entry_points.txt"),
        "[console_scripts]\nblack = black:patched_main\nblackd = blackd:patched_main [d]\nmissing = x:y\n",
    )
    .unwrap();
    fs::write(
        venv.join("share/jupyter/kernels/python3/kernel.json"),
        r#"{"argv": ["python", "-m", "ipykernel_launcher"], "display_name": "Python 3 (ipykernel)", "language": "python"}"#,
    )
    .unwrap();
    files_config(
        dir,
        "airgap.toml",
        r#"[{ source = "app/venv", dest = "venv" }]"#,
    );
    run(cli()
        .current_dir(dir)
        .args(["bundle", "-c", "airgap.toml", "-o", "app.tar.gz"]))
    .success();
    let bundle = dir.join("app.tar.gz");
    // Its "interpreter" is a stand-in that cannot run: no self-test of it.
    let done = run(cli()
        .arg("unpack")
        .arg(&bundle)
        .arg(dir.join("dest"))
        .arg("--self-test=off"))
    .success();
    snapshot!("unpack_summary_environment", dir, done);
    let done = run(cli()
        .arg("unpack")
        .arg(&bundle)
        .arg(dir.join("dest2"))
        .arg("--self-test=off")
        .arg("--json"))
    .success();
    snapshot!("unpack_summary_environment_json", dir, done);
}

#[test]
fn relocate_takes_an_empty_directory_and_refuses_a_place_inside_the_tree() {
    let tmp = tempdir();
    let dir = tmp.path();
    let bundle = demo_bundle(dir);
    run(cli().arg("unpack").arg(&bundle).arg(dir.join("tree"))).success();
    let done = run(cli()
        .arg("relocate")
        .arg(dir.join("tree"))
        .arg(dir.join("tree/sub")))
    .failure();
    snapshot!("error_relocate_into_itself", dir, done);
    assert!(dir.join("tree/data/b.txt").is_file());
    fs::create_dir(dir.join("empty")).unwrap();
    let done = run(cli()
        .arg("relocate")
        .arg(dir.join("tree"))
        .arg(dir.join("empty")))
    .success();
    snapshot!("relocate_into_an_empty_directory", dir, done);
    assert!(dir.join("empty/data/b.txt").is_file());
    assert!(!dir.join("tree").exists());
    // Under DIR only by its letters: `..` leads out again.
    run(cli()
        .arg("relocate")
        .arg(dir.join("empty"))
        .arg(dir.join("empty/../again")))
    .success();
    assert!(dir.join("again/data/b.txt").is_file());
}

#[test]
fn a_files_dest_outside_the_bundle_is_the_users_config_error() {
    let tmp = tempdir();
    let dir = tmp.path();
    project(dir);
    files_config(
        dir,
        "up.toml",
        r#"[{ source = "data", dest = "../../etc" }]"#,
    );
    let done = run(cli().current_dir(dir).args(["bundle", "-c", "up.toml"])).failure();
    snapshot!("error_files_dest_leaves_the_bundle", dir, done);
    files_config(dir, "abs.toml", r#"[{ source = "data", dest = "/etc" }]"#);
    let done = run(cli().current_dir(dir).args(["bundle", "-c", "abs.toml"])).failure();
    snapshot!("error_files_dest_absolute", dir, done);
}

#[test]
fn a_fifo_given_as_a_path_is_an_error_not_an_empty_bundle() {
    let tmp = tempdir();
    let dir = tmp.path();
    let made = Command::new("mkfifo")
        .arg(dir.join("pipe"))
        .status()
        .unwrap();
    assert!(made.success());
    files_config(dir, "fifo.toml", r#"["pipe"]"#);
    let done = run(cli()
        .current_dir(dir)
        .args(["bundle", "-c", "fifo.toml", "-o", "x.tar.gz"]))
    .failure();
    snapshot!("error_files_path_is_a_fifo", dir, done);
    assert!(!dir.join("x.tar.gz").exists());
}

#[test]
fn a_link_to_the_root_is_refused_naming_the_link() {
    let tmp = tempdir();
    let dir = tmp.path();
    fs::create_dir(dir.join("tree")).unwrap();
    fs::write(dir.join("tree/a.txt"), "a").unwrap();
    std::os::unix::fs::symlink("/", dir.join("tree/root")).unwrap();
    std::os::unix::fs::symlink("/sys/kernel", dir.join("tree/kernel")).unwrap();
    files_config(dir, "root.toml", r#"["tree"]"#);
    let done = run(cli()
        .current_dir(dir)
        .args(["bundle", "-c", "root.toml", "-o", "x.tar.gz"]))
    .failure();
    snapshot!("error_link_to_the_root", dir, done);
    fs::remove_file(dir.join("tree/root")).unwrap();
    let done = run(cli()
        .current_dir(dir)
        .args(["bundle", "-c", "root.toml", "-o", "x.tar.gz"]))
    .failure();
    snapshot!("error_link_into_sys", dir, done);
    assert!(!dir.join("x.tar.gz").exists());
}

#[test]
fn dropped_links_are_warned_once_and_the_help_names_the_real_flag() {
    let tmp = tempdir();
    let dir = tmp.path();
    fs::create_dir(dir.join("tree")).unwrap();
    fs::write(dir.join("tree/a.txt"), "a").unwrap();
    std::os::unix::fs::symlink("nowhere", dir.join("tree/dangling")).unwrap();
    std::os::unix::fs::symlink("loop2", dir.join("tree/loop1")).unwrap();
    std::os::unix::fs::symlink("loop1", dir.join("tree/loop2")).unwrap();
    files_config(dir, "links.toml", r#"["tree"]"#);
    let done = run(cli()
        .current_dir(dir)
        .args(["bundle", "-c", "links.toml", "-o", "x.tar.gz"]))
    .failure();
    snapshot!("error_link_loop", dir, done);
    let done = run(cli().current_dir(dir).args([
        "bundle",
        "-c",
        "links.toml",
        "-o",
        "x.tar.gz",
        "--drop-dangling-links",
    ]))
    .success();
    snapshot!("bundle_dropped_links", dir, done);
}

#[test]
fn compression_levels_are_checked_before_any_plugin_runs() {
    let tmp = tempdir();
    let dir = tmp.path();
    project(dir);
    for (name, extra) in [
        ("error_level_99_gzip", vec!["--level", "99"]),
        ("error_level_0_gzip", vec!["--level", "0"]),
        (
            "error_level_99_zstd",
            vec!["--level", "99", "--compression", "zstd"],
        ),
    ] {
        let done = run(cli()
            .current_dir(dir)
            .args(["bundle", "-c", "airgap.toml", "-o", "x.tar.gz"])
            .args(&extra))
        .failure();
        assert!(!plugins_ran(&done), "{}", done.stderr);
        snapshot!(name, dir, done);
    }
    fs::write(
        dir.join("level.toml"),
        "[bundle]\nname = \"demo\"\nlevel = 99\n\n[sources.files]\npaths = [\"data\"]\n",
    )
    .unwrap();
    let done = run(cli()
        .current_dir(dir)
        .args(["bundle", "-c", "level.toml", "-o", "x.tar.gz"]))
    .failure();
    assert!(!plugins_ran(&done), "{}", done.stderr);
    snapshot!("error_level_99_config", dir, done);
}

#[test]
fn level_applies_without_compression() {
    let tmp = tempdir();
    let dir = tmp.path();
    project(dir);
    // Compressible enough for levels 1 and 9 to differ.
    let text: String = (0..20_000)
        .map(|i| format!("line {i} {}\n", i * 7919 % 1000))
        .collect();
    fs::write(dir.join("data/big.txt"), text).unwrap();
    let mut sizes = Vec::new();
    for level in ["1", "9"] {
        let out = format!("l{level}.tar.gz");
        run(cli().current_dir(dir).args([
            "bundle",
            "-c",
            "airgap.toml",
            "--no-check",
            "-o",
            &out,
            "--level",
            level,
        ]))
        .success();
        sizes.push(fs::metadata(dir.join(&out)).unwrap().len());
    }
    assert!(
        sizes[1] < sizes[0],
        "--level 9 gave {} bytes, --level 1 {}",
        sizes[1],
        sizes[0]
    );
}

#[test]
fn an_encrypt_to_file_without_keys_is_refused_before_any_plugin_runs() {
    let tmp = tempdir();
    let dir = tmp.path();
    project(dir);
    fs::write(dir.join("empty.pub"), "# nobody yet\n\n").unwrap();
    let done = run(cli().current_dir(dir).args([
        "bundle",
        "-c",
        "airgap.toml",
        "-o",
        "x.tar.gz.age",
        "--encrypt-to",
        "empty.pub",
    ]))
    .failure();
    assert!(!plugins_ran(&done), "{}", done.stderr);
    snapshot!("error_encrypt_to_empty_file", dir, done);
}

#[test]
fn an_output_directory_that_cannot_take_the_bundle_is_refused_before_any_plugin_runs() {
    let tmp = tempdir();
    let dir = tmp.path();
    project(dir);
    for (name, output) in [
        ("error_output_dir_missing", "nodir/x.tar.gz"),
        ("error_output_dir_is_a_file", "airgap.toml/x.tar.gz"),
        // No file can be made in /proc, even by root.
        ("error_output_dir_unwritable", "/proc/x.tar.gz"),
    ] {
        let done = run(cli()
            .current_dir(dir)
            .args(["bundle", "-c", "airgap.toml", "-o", output]))
        .failure();
        assert!(!plugins_ran(&done), "{}", done.stderr);
        assert!(!done.stderr.contains(".partial"), "{}", done.stderr);
        snapshot!(name, dir, done);
    }
}

#[test]
fn an_io_error_is_printed_once() {
    let tmp = tempdir();
    let dir = tmp.path();
    fs::create_dir(dir.join("conf.d")).unwrap();
    let done = run(cli().current_dir(dir).args(["bundle", "-c", "conf.d"])).failure();
    assert_eq!(
        done.stderr.matches("(os error").count(),
        1,
        "{}",
        done.stderr
    );
    snapshot!("error_config_is_a_directory", dir, done);
}

#[test]
fn an_output_inside_a_bundled_tree_is_left_out_of_the_next_bundle() {
    let tmp = tempdir();
    let dir = tmp.path();
    project(dir);
    let args = ["bundle", "-c", "airgap.toml", "-o", "data/demo.tar.gz"];
    let first = run(cli().current_dir(dir).args(args)).success();
    assert!(!first.stderr.contains("left out"), "{}", first.stderr);
    let done = run(cli().current_dir(dir).args(args)).success();
    snapshot!("bundle_output_inside_a_bundled_tree", dir, done);
    let listing = run(Command::new("tar")
        .arg("tzf")
        .arg(dir.join("data/demo.tar.gz")))
    .success();
    assert!(
        listing.stdout.contains("demo/data/b.txt"),
        "{}",
        listing.stdout
    );
    assert!(
        !listing.stdout.contains("demo.tar.gz"),
        "{}",
        listing.stdout
    );
    // Named on its own, the output stays refused: it is an input.
    files_config(dir, "self.toml", r#"["data/b.txt", "data/demo.tar.gz"]"#);
    let done =
        run(cli()
            .current_dir(dir)
            .args(["bundle", "-c", "self.toml", "-o", "data/demo.tar.gz"]))
        .failure();
    assert!(
        done.stderr.contains("is one of the bundle's own inputs"),
        "{}",
        done.stderr
    );
}

/// A binary file that cannot take DEST's prefix is refused before anything is written, naming
/// the file and the room it has, with what to do: for a slot whose capacity the plugin recorded
/// (a padded placeholder), and for one without (a prefix compiled in unpadded).
#[test]
fn a_destination_too_long_for_a_binary_names_the_file_its_room_and_the_ways_out() {
    use airgap_archive::format::manifest::StepRecord;
    use airgap_archive::format::model::{InstallStep, PrefixFile, PrefixMode};
    use airgap_archive::Entry;
    use airgap_archive::PlanOptions;
    use airgap_tests::archive::{input, plan, write};
    let tmp = tempdir();
    let dir = tmp.path();
    let old = "/opt/built/here";
    let env = dir.join("src/env");
    fs::create_dir_all(env.join("lib")).unwrap();
    let mut lib = b"\x7fELF\0".to_vec();
    lib.extend_from_slice(format!("{old}/lib").as_bytes());
    lib.extend_from_slice(&[0; 40]);
    fs::write(env.join("lib/libx.so"), &lib).unwrap();
    for (name, capacity) in [("unpadded", None), ("padded", Some(40))] {
        let mut file = PrefixFile::new("env/lib/libx.so", PrefixMode::Binary);
        file.capacity = capacity;
        let p = plan(&[Entry::path(&env, "env")], PlanOptions::default()).unwrap();
        let mut inp = input("nlp");
        inp.install_steps = vec![StepRecord {
            plugin: "conda".into(),
            step: InstallStep::RewritePrefix {
                old_prefix: old.into(),
                root: "env".into(),
                files: vec![file],
            },
        }];
        let bundle = dir.join(format!("{name}.tar.gz"));
        write(&p, inp, &bundle, None);
        let dest = dir.join("d".repeat(60));
        let done = run(cli().arg("unpack").arg(&bundle).arg(&dest)).failure();
        let room = capacity.unwrap_or(old.len());
        assert!(
            done.stderr.contains("env/lib/libx.so")
                && done
                    .stderr
                    .contains(&format!("longer than the {room} bytes")),
            "{}",
            done.stderr
        );
        assert!(!dest.exists());
        snapshot!(format!("error_binary_prefix_too_long_{name}"), dir, done);
    }
}

/// `airgap bundle --self-extracting`: the summary says how to run the `.run`; its own
/// `--help`; the refusal without an unpacker.
#[test]
fn a_self_extracting_bundle_and_its_messages() {
    let tmp = tempdir();
    project(tmp.path());
    let dir = tmp.path();
    let done =
        run(cli()
            .current_dir(dir)
            .args(["bundle", "-c", "airgap.toml", "--self-extracting"]))
        .success();
    snapshot!("bundle_self_extracting_summary", dir, done);
    let done = run(Command::new("env").current_dir(dir).args([
        "-i",
        "PATH=/usr/bin:/bin",
        "sh",
        "demo.run",
        "--help",
    ]))
    .success();
    snapshot!("run_help", dir, done);
    let done = run(Command::new("env").current_dir(dir).args([
        "-i",
        "PATH=/usr/bin:/bin",
        "sh",
        "demo.run",
        "--verify",
    ]))
    .success();
    snapshot!("run_verify", dir, done);
    let done = run(cli().current_dir(dir).args([
        "bundle",
        "-c",
        "airgap.toml",
        "-o",
        "other.run",
        "--self-extracting",
        "--unpacker",
        "/nonexistent/airgap-unpack",
    ]))
    .failure();
    snapshot!("error_self_extracting_without_unpacker", dir, done);
}

/// The free-space refusal of `airgap unpack`, on a 1 MiB tmpfs in a private mount namespace.
#[test]
fn unpack_on_a_disk_too_small() {
    let tmp = tempdir();
    project(tmp.path());
    let dir = tmp.path();
    fs::write(
        dir.join("data/big.txt"),
        "0123456789abcdef\n".repeat(200_000),
    )
    .unwrap();
    run(cli()
        .current_dir(dir)
        .args(["bundle", "-c", "airgap.toml", "-o", "demo.tar.gz"]))
    .success();
    let disk = dir.join("disk");
    fs::create_dir(&disk).unwrap();
    let done = run(Command::new("unshare")
        .args(["--mount", "--propagation", "private", "sh", "-c"])
        .arg(r#"mount -t tmpfs -o size=1m airgap-test "$DISK" || exit 99; "$AIRGAP" unpack demo.tar.gz "$DISK/dest""#)
        .current_dir(dir)
        .env("DISK", &disk)
        .env("AIRGAP", bin("airgap"))
        .env("AIRGAP_NO_PROGRESS", "1")
        .env("COLUMNS", "100")
        .env("NO_COLOR", "1"))
    .failure();
    assert_ne!(
        done.code,
        Some(99),
        "this test needs `unshare --mount` as root: {}",
        done.stderr
    );
    snapshot!("error_unpack_disk_too_small", dir, done);
}

/// `airgap probe --decode CODE`: what a retyped code says, for a fixed code (no machine in it).
#[test]
fn probe_decode_summary() {
    let tmp = tempdir();
    let profile = airgap_probe::Profile {
        format: 1,
        arch: Some("x86_64".into()),
        cpu_level: Some(3),
        kernel: Some("6.1.0-18-amd64".into()),
        glibc: Some("2.36".into()),
        glibcxx: Some("3.4.30".into()),
        cxxabi: Some("1.3.13".into()),
        gcc: Some("12.0.0".into()),
        nvidia_driver: Some("535.104.05".into()),
        dest: Some(airgap_probe::Place {
            path: Some("/opt".into()),
            free_mib: Some(20_000),
            noexec: Some(true),
        }),
        pythons: vec![airgap_probe::Python {
            path: Some("/usr/bin/python3".into()),
            version: "3.11.2".into(),
            implementation: "cpython".into(),
            abi: "cp311".into(),
        }],
        libraries: [
            "libstdc++.so.6",
            "libz.so.1",
            "libcrypt.so.1",
            "libffi.so.8",
        ]
        .iter()
        .map(|s| airgap_probe::Library {
            soname: s.to_string(),
            ..Default::default()
        })
        .collect(),
        ..Default::default()
    };
    let code = airgap_probe::code::encode(&profile);
    snapshot!(
        "probe_decode_summary",
        tmp.path(),
        run(cli()
            .args(["probe", "--decode", &code, "--out"])
            .arg(tmp.path().join("t.toml")))
    );
}

/// `airgap probe` on this machine: the shape of its summary, every value redacted.
#[test]
fn probe_summary_shape() {
    let tmp = tempdir();
    let done = run(cli()
        .env_clear()
        .env("PATH", "/nonexistent")
        .env("TMPDIR", tmp.path())
        .args(["probe", "--dest"])
        .arg(tmp.path())
        .arg("--out")
        .arg(tmp.path().join("t.toml")));
    let text = format!(
        "exit: {:?}\n--- stdout\n{}--- stderr\n{}",
        done.code, done.stdout, done.stderr
    );
    let mut filters = filters(tmp.path());
    filters.push((r"(?m)^  lacking .*\n".into(), String::new()));
    filters.push((
        r"(?m)^(  [A-Za-z+_]+(?: [a-z]+)?) +\S.*$".into(),
        "$1 [VALUE]".into(),
    ));
    filters.push((
        r"code \(\d+ characters\): \S+".into(),
        "code ([N] characters): [CODE]".into(),
    ));
    let refs: Vec<(&str, &str)> = filters
        .iter()
        .map(|(a, b)| (a.as_str(), b.as_str()))
        .collect();
    insta::with_settings!({filters => refs, prepend_module_to_snapshot => false}, {
        insta::assert_snapshot!("probe_summary_shape", text);
    });
}

#[test]
fn a_damaged_volume_is_named_by_its_number() {
    let tmp = tempdir();
    let dir = tmp.path();
    project(dir);
    let done = run(cli()
        .current_dir(dir)
        .args([
            "bundle",
            "-c",
            "airgap.toml",
            "-o",
            "demo.tar.gz",
            "--split-size",
            "4M",
            "--unpacker",
        ])
        .arg(bin("airgap-unpack")))
    .success();
    // Whether the unpacker of this build sets a glibc floor depends on how it was linked.
    let mut done = done;
    done.stderr = done
        .stderr
        .lines()
        .filter(|l| !l.contains("on the target (.airgap/airgap-unpack)"))
        .map(|l| format!("{l}\n"))
        .collect();
    snapshot!("bundle_split_summary", dir, done);
    let v2 = dir.join("demo.tar.gz.002");
    let mut bytes = fs::read(&v2).unwrap();
    bytes[1000] ^= 0x55;
    fs::write(&v2, bytes).unwrap();
    let done = run(cli()
        .current_dir(dir)
        .args(["unpack", "demo.tar.gz.001", "dest"]))
    .failure();
    snapshot!("error_damaged_volume", dir, done);
}
