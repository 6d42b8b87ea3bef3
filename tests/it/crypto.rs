//! Encrypted bundles (age) through the real CLI: two recipients each unpack, a third cannot,
//! passphrases, tampering refused before anything is written, interop with the `age` tool in
//! both directions, and no secret in any output.

#![allow(clippy::unwrap_used)]

use std::fs;
use std::process::Command;

use crate::seal_support::{
    airgap, assert_unpacked, bundle, flip_byte, keygen, names, on_terminal, recipient, tool,
};
use airgap_tests::{run, tempdir, Done};

#[test]
fn encrypted_to_two_recipients_each_can_unpack_and_a_third_cannot() {
    let tmp = tempdir();
    let keys = tmp.path().join("keys");
    let (a_key, a_pub, _, _) = keygen(&keys, "alice");
    let (b_key, b_pub, _, _) = keygen(&keys, "bob");
    let (c_key, _, _, _) = keygen(&keys, "carol");
    let work = tmp.path().join("work");
    fs::create_dir_all(&work).unwrap();
    // One recipient as a key, one as a file of keys (as `age -R`).
    let done = bundle(
        &work,
        &[
            "--encrypt-to",
            &recipient(&a_pub),
            "--encrypt-to",
            b_pub.to_str().unwrap(),
        ],
    )
    .success();
    assert!(
        done.stderr.contains("to 2 age recipient(s)"),
        "{}",
        done.stderr
    );

    // The default name shows the encryption; the .sha256 is of the bytes on disk.
    let out = work.join("demo.tar.gz.age");
    let bytes = fs::read(&out).unwrap();
    assert!(bytes.starts_with(b"age-encryption.org/v1\n"));
    let sum = fs::read_to_string(work.join("demo.tar.gz.age.sha256")).unwrap();
    assert_eq!(
        sum,
        format!(
            "{}  demo.tar.gz.age\n",
            airgap_tests::archive::sha256_hex(&bytes)
        )
    );
    assert!(!work.join("demo.tar.gz").exists());

    for (i, key) in [&a_key, &b_key].into_iter().enumerate() {
        let dest = tmp.path().join(format!("dest{i}"));
        run(airgap()
            .arg("unpack")
            .arg(&out)
            .arg(&dest)
            .arg("-i")
            .arg(key))
        .success();
        assert_unpacked(&dest);
    }
    let v = run(airgap()
        .arg("verify")
        .arg(&out)
        .arg("--identity")
        .arg(&a_key))
    .success();
    assert!(v.stderr.contains("matches its .sha256"), "{}", v.stderr);
    let i = run(airgap()
        .args(["inspect", "--json"])
        .arg(&out)
        .arg("-i")
        .arg(&b_key))
    .success();
    assert!(i.stdout.contains("\"name\": \"demo\""), "{}", i.stdout);

    // The third key: a clear error, and nothing written.
    let before = names(tmp.path());
    let dest = tmp.path().join("dest-carol");
    let e = run(airgap()
        .arg("unpack")
        .arg(&out)
        .arg(&dest)
        .arg("-i")
        .arg(&c_key))
    .failure();
    assert!(
        e.stderr.contains("none of the identities in") && e.stderr.contains("carol.age.key"),
        "{}",
        e.stderr
    );
    assert!(
        e.stderr
            .contains("help: the bundle was encrypted to other public keys"),
        "{}",
        e.stderr
    );
    assert_eq!(names(tmp.path()), before);
    let e = run(airgap().arg("verify").arg(&out).arg("-i").arg(&c_key)).failure();
    assert!(e.stderr.contains("none of the identities"), "{}", e.stderr);

    // `check` reads plain bundles only, and says so.
    let e = run(airgap().arg("check").arg(&out).args(["--glibc", "2.17"])).failure();
    assert!(
        e.stderr.contains("check reads plain bundles"),
        "{}",
        e.stderr
    );

    // No key at all: it says the bundle is encrypted and what to pass.
    for cmd in ["verify", "inspect"] {
        let e = run(airgap().arg(cmd).arg(&out)).failure();
        assert!(e.stderr.contains("is encrypted (age)"), "{}", e.stderr);
        assert!(
            e.stderr.contains("help: pass --identity FILE"),
            "{}",
            e.stderr
        );
        assert!(e.stderr.contains("age -d -i key.txt"), "{}", e.stderr);
    }
}

#[test]
fn passphrase_round_trip_and_a_wrong_passphrase_fails_cleanly() {
    let tmp = tempdir();
    let pass = tmp.path().join("pass.txt");
    fs::write(&pass, "correct horse battery staple\n").unwrap();
    let work = tmp.path().join("work");
    fs::create_dir_all(&work).unwrap();
    bundle(
        &work,
        &[
            "--passphrase-file",
            pass.to_str().unwrap(),
            "-o",
            "p.tar.gz.age",
        ],
    )
    .success();
    let out = work.join("p.tar.gz.age");

    let dest = tmp.path().join("dest");
    run(airgap()
        .arg("unpack")
        .arg(&out)
        .arg(&dest)
        .arg("--passphrase-file")
        .arg(&pass))
    .success();
    assert_unpacked(&dest);

    let wrong = tmp.path().join("wrong.txt");
    fs::write(&wrong, "correct horse battery stapler\n").unwrap();
    let before = names(tmp.path());
    let dest = tmp.path().join("dest2");
    let e = run(airgap()
        .arg("unpack")
        .arg(&out)
        .arg(&dest)
        .arg("--passphrase-file")
        .arg(&wrong))
    .failure();
    assert!(e.stderr.contains("wrong passphrase for"), "{}", e.stderr);
    assert!(e.stderr.contains("help:"), "{}", e.stderr);
    assert_eq!(names(tmp.path()), before);

    // An identity for a passphrase bundle says so.
    let keys = tmp.path().join("keys");
    let (key, _, _, _) = keygen(&keys, "k");
    let e = run(airgap().arg("verify").arg(&out).arg("-i").arg(&key)).failure();
    assert!(
        e.stderr.contains("is encrypted with a passphrase"),
        "{}",
        e.stderr
    );
    assert!(e.stderr.contains("--passphrase"), "{}", e.stderr);

    // No terminal: --passphrase cannot ask, and says what to do instead.
    let e = run(airgap()
        .arg("verify")
        .arg(&out)
        .arg("--passphrase")
        .stdin(std::process::Stdio::null()))
    .failure();
    assert!(e.stderr.contains("--passphrase-file"), "{}", e.stderr);
}

#[test]
fn a_passphrase_typed_on_the_terminal_is_not_echoed_and_works_with_the_age_tool() {
    let age = tool("age");
    let tmp = tempdir();
    let work = tmp.path().join("work");
    fs::create_dir_all(&work).unwrap();
    crate::seal_support::project(&work);
    let airgap_bin = airgap_tests::bin("airgap");
    let unpacker = airgap_tests::bin("airgap-unpack");
    let plugins = airgap_tests::build_dir();
    let out = work.join("t.tar.gz.age");
    let secret = "typed-on-the-terminal-42";
    // bundle asks twice; the terminal shows the prompts, never the passphrase.
    let b = on_terminal(
        &[
            airgap_bin.to_str().unwrap(),
            "--plugin-dir",
            plugins.to_str().unwrap(),
            "bundle",
            "-c",
            work.join("airgap.toml").to_str().unwrap(),
            "--no-check",
            "--unpacker",
            unpacker.to_str().unwrap(),
            "--passphrase",
            "-o",
            out.to_str().unwrap(),
        ],
        &[secret, secret],
    );
    assert!(
        b.stdout.contains("passphrase for the bundle (again):"),
        "{b:?}"
    );
    assert!(
        !b.stdout.contains(secret) && !b.stderr.contains(secret),
        "{b:?}"
    );
    assert!(out.is_file(), "{b:?}");

    // airgap asks once to unpack it.
    let dest = tmp.path().join("dest");
    let u = on_terminal(
        &[
            airgap_bin.to_str().unwrap(),
            "unpack",
            out.to_str().unwrap(),
            dest.to_str().unwrap(),
            "--passphrase",
        ],
        &[secret],
    );
    assert!(
        !u.stdout.contains(secret) && !u.stderr.contains(secret),
        "{u:?}"
    );
    assert_unpacked(&dest);

    // The age tool decrypts it with the same passphrase...
    let plain = tmp.path().join("t.tar.gz");
    on_terminal(
        &[
            age.to_str().unwrap(),
            "-d",
            "-o",
            plain.to_str().unwrap(),
            out.to_str().unwrap(),
        ],
        &[secret],
    );
    assert!(plain.is_file(), "age -d with the passphrase");
    run(Command::new("tar").arg("tzf").arg(&plain)).success();
    // ...and airgap decrypts what the age tool encrypted with a passphrase.
    let theirs = tmp.path().join("theirs.tar.gz.age");
    on_terminal(
        &[
            age.to_str().unwrap(),
            "-p",
            "-o",
            theirs.to_str().unwrap(),
            plain.to_str().unwrap(),
        ],
        &[secret, secret],
    );
    assert!(theirs.is_file(), "age -p");
    let pass = tmp.path().join("pass.txt");
    fs::write(&pass, format!("{secret}\n")).unwrap();
    run(airgap()
        .arg("verify")
        .arg(&theirs)
        .arg("--passphrase-file")
        .arg(&pass))
    .success();
}

#[test]
fn a_tampered_encrypted_bundle_is_refused_before_any_file_is_written() {
    let tmp = tempdir();
    let keys = tmp.path().join("keys");
    let (key, pubf, _, _) = keygen(&keys, "k");
    let work = tmp.path().join("work");
    fs::create_dir_all(&work).unwrap();
    bundle(&work, &["--encrypt-to", &recipient(&pubf)]).success();
    let good = work.join("demo.tar.gz.age");
    let bytes = fs::read(&good).unwrap();
    let len = bytes.len() as i64;
    let mac = bytes.windows(4).position(|w| w == b"--- ").unwrap() as i64 + 10;

    // A byte in the last chunk: a streaming unpack would have written most files by then.
    for (what, offset) in [("end", -100i64), ("middle", len / 2), ("header MAC", mac)] {
        let bad = tmp.path().join(format!("bad-{what}.tar.gz.age"));
        fs::copy(&good, &bad).unwrap();
        flip_byte(&bad, offset);
        let before = names(tmp.path());
        let dest = tmp.path().join("dest");
        let e = run(airgap()
            .arg("unpack")
            .arg(&bad)
            .arg(&dest)
            .arg("-i")
            .arg(&key))
        .failure();
        assert!(
            e.stderr.contains("is damaged or was tampered with"),
            "{what}: {}",
            e.stderr
        );
        assert!(
            e.stderr.contains("help: nothing was written"),
            "{what}: {}",
            e.stderr
        );
        assert!(!e.stderr.contains("Installed"), "{what}: {}", e.stderr);
        assert_eq!(
            names(tmp.path()),
            before,
            "{what}: something was left behind"
        );
        run(airgap().arg("verify").arg(&bad).arg("-i").arg(&key)).failure();
    }

    // A damaged recipient stanza cannot be told from another recipient's: refused, nothing
    // written, and the message says both.
    // Byte 40 is inside the stanza's base64 share: another base64 letter (never a flip, which
    // could make a byte that is not base64 at all, refused as "not a valid age file" instead,
    // depending on this run's random key).
    let bad = tmp.path().join("bad-stanza.tar.gz.age");
    let mut damaged = bytes.clone();
    assert!(
        damaged[40].is_ascii_alphanumeric() || b"+/".contains(&damaged[40]),
        "byte 40 is in the share"
    );
    damaged[40] = if damaged[40] == b'A' { b'B' } else { b'A' };
    fs::write(&bad, &damaged).unwrap();
    let e = run(airgap()
        .arg("unpack")
        .arg(&bad)
        .arg(tmp.path().join("d"))
        .arg("-i")
        .arg(&key))
    .failure();
    assert!(
        e.stderr.contains("or its header is damaged"),
        "{}",
        e.stderr
    );
    assert!(!tmp.path().join("d").exists());

    // Truncated (the last chunk gone): refused too.
    let cut = tmp.path().join("cut.tar.gz.age");
    fs::write(&cut, &bytes[..bytes.len() - 70_000]).unwrap();
    let e = run(airgap()
        .arg("unpack")
        .arg(&cut)
        .arg(tmp.path().join("d"))
        .arg("-i")
        .arg(&key))
    .failure();
    assert!(
        e.stderr.contains("is damaged or was tampered with"),
        "{}",
        e.stderr
    );
    assert!(!tmp.path().join("d").exists());
}

#[test]
fn the_age_tool_decrypts_what_airgap_encrypted_and_its_unpacker_installs_it() {
    let age = tool("age");
    let tmp = tempdir();
    let keys = tmp.path().join("keys");
    let (key, pubf, _, _) = keygen(&keys, "k");
    let work = tmp.path().join("work");
    fs::create_dir_all(&work).unwrap();
    bundle(&work, &["--encrypt-to", &recipient(&pubf)]).success();

    // Exactly the README's recipe: age -d, tar xzf, NAME/unpack DEST.
    let plain = tmp.path().join("demo.tar.gz");
    run(Command::new(&age)
        .args(["-d", "-i"])
        .arg(&key)
        .arg("-o")
        .arg(&plain)
        .arg(work.join("demo.tar.gz.age")))
    .success();
    let x = tmp.path().join("x");
    fs::create_dir_all(&x).unwrap();
    run(Command::new("tar").arg("xzf").arg(&plain).current_dir(&x)).success();
    let dest = tmp.path().join("dest");
    run(Command::new(x.join("demo/unpack")).arg(&dest)).success();
    assert_unpacked(&dest);
}

#[test]
fn airgap_decrypts_what_the_age_tool_encrypted_binary_and_armored() {
    let age = tool("age");
    let age_keygen = tool("age-keygen");
    let tmp = tempdir();
    let key = tmp.path().join("age-keygen.txt");
    let kg: Done = run(Command::new(&age_keygen).arg("-o").arg(&key)).success();
    let public = kg
        .stderr
        .lines()
        .find_map(|l| l.strip_prefix("Public key: "))
        .unwrap()
        .trim()
        .to_string();
    let work = tmp.path().join("work");
    fs::create_dir_all(&work).unwrap();
    bundle(&work, &[]).success();
    let plain = work.join("demo.tar.gz");

    for (name, armor) in [("bin.tar.gz.age", false), ("armored.tar.gz.age", true)] {
        let out = tmp.path().join(name);
        let mut cmd = Command::new(&age);
        if armor {
            cmd.arg("-a");
        }
        run(cmd.arg("-r").arg(&public).arg("-o").arg(&out).arg(&plain)).success();
        run(airgap().arg("verify").arg(&out).arg("-i").arg(&key)).success();
        let dest = tmp.path().join(format!("dest-{name}"));
        run(airgap()
            .arg("unpack")
            .arg(&out)
            .arg(&dest)
            .arg("-i")
            .arg(&key))
        .success();
        assert_unpacked(&dest);
    }
}

#[test]
fn secrets_never_appear_in_output_manifests_or_errors() {
    let tmp = tempdir();
    let keys = tmp.path().join("keys");
    let (key, pubf, sign_key, sign_pub) = keygen(&keys, "s");
    let secret_lines: Vec<String> = [&key, &sign_key]
        .iter()
        .flat_map(|p| {
            fs::read_to_string(p)
                .unwrap()
                .lines()
                .filter(|l| !l.starts_with('#') && !l.starts_with("untrusted comment"))
                .map(String::from)
                .collect::<Vec<_>>()
        })
        .collect();
    assert_eq!(secret_lines.len(), 2);
    assert!(secret_lines[0].starts_with("AGE-SECRET-KEY-1"));
    let passphrase = "Tr0ub4dor&3-never-print-me";
    let pass = tmp.path().join("pass.txt");
    fs::write(&pass, format!("{passphrase}\n")).unwrap();
    let wrong = tmp.path().join("wrong.txt");
    fs::write(&wrong, "nope\n").unwrap();

    let work = tmp.path().join("work");
    fs::create_dir_all(&work).unwrap();
    let mut outputs: Vec<Done> = Vec::new();
    outputs.push(
        bundle(
            &work,
            &[
                "-vv",
                "--passphrase-file",
                pass.to_str().unwrap(),
                "--sign",
                sign_key.to_str().unwrap(),
                "-o",
                "p.tar.gz.age",
            ],
        )
        .success(),
    );
    outputs.push(
        bundle(
            &work,
            &[
                "-vv",
                "--json",
                "--encrypt-to",
                &recipient(&pubf),
                "--sign",
                sign_key.to_str().unwrap(),
            ],
        )
        .success(),
    );
    let p = work.join("p.tar.gz.age");
    let k = work.join("demo.tar.gz.age");
    let pass_args = ["--passphrase-file", pass.to_str().unwrap()];
    let wrong_args = ["--passphrase-file", wrong.to_str().unwrap()];
    let trust = ["--trusted-key", sign_pub.to_str().unwrap()];
    outputs.push(
        run(airgap()
            .args(["-vv", "verify", "--json"])
            .arg(&p)
            .args(pass_args)
            .args(trust))
        .success(),
    );
    outputs.push(run(airgap().args(["inspect", "--json"]).arg(&p).args(pass_args)).success());
    let dest = tmp.path().join("dest");
    outputs.push(
        run(airgap()
            .args(["-vv", "unpack"])
            .arg(&p)
            .arg(&dest)
            .args(pass_args)
            .args(trust))
        .success(),
    );
    outputs.push(
        run(airgap()
            .args(["-vv", "unpack"])
            .arg(&p)
            .arg(tmp.path().join("d2"))
            .args(wrong_args))
        .failure(),
    );
    outputs.push(run(airgap().args(["verify"]).arg(&k).arg("-i").arg(&sign_key)).failure());
    outputs.push(run(airgap().args(["verify"]).arg(&k).arg("-i").arg(&pubf)).failure());
    outputs.push(
        run(airgap()
            .args(["verify"])
            .arg(&k)
            .arg("--trusted-key")
            .arg(&key))
        .failure(),
    );
    outputs.push(
        run(airgap()
            .args(["bundle", "-c"])
            .arg(work.join("airgap.toml"))
            .arg("--sign")
            .arg(&key)
            .current_dir(&work))
        .failure(),
    );
    outputs.push(
        run(airgap()
            .args(["bundle", "-c"])
            .arg(work.join("airgap.toml"))
            .arg("--encrypt-to")
            .arg(&key)
            .current_dir(&work))
        .failure(),
    );

    let mut texts: Vec<String> = outputs
        .iter()
        .flat_map(|d| [d.stdout.clone(), d.stderr.clone()])
        .collect();
    texts.push(fs::read_to_string(dest.join(".airgap/manifest.toml")).unwrap());
    texts.push(fs::read_to_string(work.join("p.tar.gz.age.minisig")).unwrap());
    texts.push(fs::read_to_string(work.join("p.tar.gz.age.sha256")).unwrap());
    let all = texts.join("\n");
    assert!(all.contains("help:"), "the failures above print advice");
    assert!(
        !all.contains(passphrase),
        "the passphrase was printed:\n{all}"
    );
    for secret in &secret_lines {
        assert!(
            !all.contains(secret.as_str()),
            "a secret key was printed:\n{all}"
        );
        // Nor a good part of it (a key id or prefix is fine, the key material is not).
        assert!(
            !all.contains(&secret[secret.len() - 24..]),
            "a secret key was printed:\n{all}"
        );
    }
}
