//! Signed bundles (minisign, Ed25519) through the real CLI: a good signature passes, and one
//! changed byte, another key's signature or no signature is refused by `verify` and `unpack`
//! before anything is read; interop with the `minisign` tool in both directions; `keygen`.

#![allow(clippy::unwrap_used)]

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use crate::seal_support::{
    airgap, assert_unpacked, bundle, flip_byte, keygen, names, recipient, tool,
};
use airgap_tests::{run, tempdir};

fn refused_by_verify_and_unpack(bundle: &Path, trusted: &Path, expect: &str, extra: &[&str]) {
    let dir = bundle.parent().unwrap();
    let before = names(dir);
    let v = run(airgap()
        .arg("verify")
        .arg(bundle)
        .arg("--trusted-key")
        .arg(trusted)
        .args(extra))
    .failure();
    assert!(v.stderr.contains(expect), "verify: {}", v.stderr);
    assert!(v.stderr.contains("help:"), "verify: {}", v.stderr);
    assert!(
        !v.stderr.contains("Verifying"),
        "checked before reading: {}",
        v.stderr
    );
    let dest = dir.join("dest");
    let u = run(airgap()
        .arg("unpack")
        .arg(bundle)
        .arg(&dest)
        .arg("--trusted-key")
        .arg(trusted)
        .args(extra))
    .failure();
    assert!(u.stderr.contains(expect), "unpack: {}", u.stderr);
    assert_eq!(names(dir), before, "unpack left something behind");
}

#[test]
fn a_signed_bundle_verifies_and_unpacks_with_the_trusted_key() {
    let tmp = tempdir();
    let keys = tmp.path().join("keys");
    let (_, _, sk, pk) = keygen(&keys, "team");
    let work = tmp.path().join("work");
    fs::create_dir_all(&work).unwrap();
    let done = bundle(&work, &["--sign", sk.to_str().unwrap()]).success();
    assert!(
        done.stderr.contains("demo.tar.gz.minisig"),
        "{}",
        done.stderr
    );
    assert!(
        done.stderr.contains("minisign -Vm demo.tar.gz -p"),
        "{}",
        done.stderr
    );
    let out = work.join("demo.tar.gz");
    let sig = fs::read_to_string(work.join("demo.tar.gz.minisig")).unwrap();
    let sha = fs::read_to_string(work.join("demo.tar.gz.sha256")).unwrap();
    let sha = sha.split_whitespace().next().unwrap();
    assert!(
        sig.contains(&format!("trusted comment: file:demo.tar.gz\tsha256:{sha}")),
        "{sig}"
    );
    // No temporary file left beside it.
    assert_eq!(
        names(&work),
        [
            "airgap.toml",
            "data",
            "demo.cdx.json",
            "demo.cdx.json.minisig",
            "demo.tar.gz",
            "demo.tar.gz.minisig",
            "demo.tar.gz.report.html",
            "demo.tar.gz.report.md",
            "demo.tar.gz.sha256"
        ]
    );

    let v = run(airgap()
        .arg("verify")
        .arg(&out)
        .arg("--trusted-key")
        .arg(&pk))
    .success();
    assert!(v.stderr.contains("is good, by trusted key"), "{}", v.stderr);
    // The key as a base64 string works too (as `minisign -P`).
    let line = fs::read_to_string(&pk)
        .unwrap()
        .lines()
        .nth(1)
        .unwrap()
        .to_string();
    run(airgap()
        .arg("verify")
        .arg(&out)
        .arg("--trusted-key")
        .arg(&line))
    .success();
    let dest = tmp.path().join("dest");
    run(airgap()
        .arg("unpack")
        .arg(&out)
        .arg(&dest)
        .arg("--trusted-key")
        .arg(&pk))
    .success();
    assert_unpacked(&dest);
}

#[test]
fn one_changed_byte_another_key_or_no_signature_is_refused() {
    let tmp = tempdir();
    let keys = tmp.path().join("keys");
    let (_, _, sk, pk) = keygen(&keys, "team");
    let (_, _, other_sk, _) = keygen(&keys, "mallory");
    let work = tmp.path().join("work");
    fs::create_dir_all(&work).unwrap();
    bundle(&work, &["--sign", sk.to_str().unwrap()]).success();
    let good = work.join("demo.tar.gz");

    // One changed byte (the .sha256 updated too, as an attacker would).
    let cases = tmp.path().join("changed");
    fs::create_dir_all(&cases).unwrap();
    let changed = cases.join("demo.tar.gz");
    fs::copy(&good, &changed).unwrap();
    fs::copy(
        work.join("demo.tar.gz.minisig"),
        cases.join("demo.tar.gz.minisig"),
    )
    .unwrap();
    flip_byte(&changed, 5000);
    refused_by_verify_and_unpack(&changed, &pk, "does not verify against", &[]);

    // A signature from another key.
    let other = tmp.path().join("other");
    fs::create_dir_all(&other).unwrap();
    let signed_other = other.join("demo.tar.gz");
    fs::copy(&good, &signed_other).unwrap();
    let w2 = tmp.path().join("w2");
    fs::create_dir_all(&w2).unwrap();
    bundle(&w2, &["--sign", other_sk.to_str().unwrap()]).success();
    fs::copy(w2.join("demo.tar.gz"), &signed_other).unwrap();
    fs::copy(
        w2.join("demo.tar.gz.minisig"),
        other.join("demo.tar.gz.minisig"),
    )
    .unwrap();
    refused_by_verify_and_unpack(&signed_other, &pk, "not by the trusted key", &[]);

    // No signature.
    let bare = tmp.path().join("bare");
    fs::create_dir_all(&bare).unwrap();
    fs::copy(&good, bare.join("demo.tar.gz")).unwrap();
    refused_by_verify_and_unpack(&bare.join("demo.tar.gz"), &pk, "has no signature", &[]);

    // A damaged signature file.
    let damaged = tmp.path().join("damaged");
    fs::create_dir_all(&damaged).unwrap();
    fs::copy(&good, damaged.join("demo.tar.gz")).unwrap();
    fs::write(
        damaged.join("demo.tar.gz.minisig"),
        "untrusted comment: x\nnot base64\n",
    )
    .unwrap();
    refused_by_verify_and_unpack(
        &damaged.join("demo.tar.gz"),
        &pk,
        "does not verify against",
        &[],
    );
}

#[test]
fn an_encrypted_bundle_is_signed_as_written_and_checked_before_decrypting() {
    let tmp = tempdir();
    let keys = tmp.path().join("keys");
    let (key, pubf, sk, pk) = keygen(&keys, "team");
    let (_, _, _, other_pk) = keygen(&keys, "other");
    let work = tmp.path().join("work");
    fs::create_dir_all(&work).unwrap();
    bundle(
        &work,
        &[
            "--encrypt-to",
            &recipient(&pubf),
            "--sign",
            sk.to_str().unwrap(),
        ],
    )
    .success();
    let out = work.join("demo.tar.gz.age");
    assert!(work.join("demo.tar.gz.age.minisig").is_file());
    // The signature is checked first: no key to decrypt, yet the error is the signature's.
    refused_by_verify_and_unpack(&out, &other_pk, "not by the trusted key", &[]);
    let dest = tmp.path().join("dest");
    run(airgap()
        .arg("unpack")
        .arg(&out)
        .arg(&dest)
        .arg("-i")
        .arg(&key)
        .arg("--trusted-key")
        .arg(&pk))
    .success();
    assert_unpacked(&dest);
    // The signature is over the ciphertext: the minisign tool checks it without any key.
    run(Command::new(tool("minisign"))
        .arg("-Vm")
        .arg(&out)
        .arg("-p")
        .arg(&pk))
    .success();
}

#[test]
fn the_minisign_tool_verifies_what_airgap_signed() {
    let minisign = tool("minisign");
    let tmp = tempdir();
    let keys = tmp.path().join("keys");
    let (_, _, sk, pk) = keygen(&keys, "team");
    let work = tmp.path().join("work");
    fs::create_dir_all(&work).unwrap();
    bundle(&work, &["--sign", sk.to_str().unwrap()]).success();
    let v = run(Command::new(&minisign)
        .arg("-Vm")
        .arg(work.join("demo.tar.gz"))
        .arg("-p")
        .arg(&pk))
    .success();
    assert!(
        v.stdout.contains("file:demo.tar.gz") || v.stderr.contains("file:demo.tar.gz"),
        "{v:?}"
    );
    // And refuses a changed byte, like airgap.
    flip_byte(&work.join("demo.tar.gz"), 3000);
    run(Command::new(&minisign)
        .arg("-Vm")
        .arg(work.join("demo.tar.gz"))
        .arg("-p")
        .arg(&pk))
    .failure();
}

#[test]
fn airgap_verifies_what_the_minisign_tool_signed_and_signs_with_its_keys() {
    let minisign = tool("minisign");
    let tmp = tempdir();
    let pk = tmp.path().join("mini.pub");
    let sk = tmp.path().join("mini.key");
    // -W: an unencrypted secret key (no password prompt).
    run(Command::new(&minisign)
        .args(["-G", "-W", "-p"])
        .arg(&pk)
        .arg("-s")
        .arg(&sk))
    .success();
    let work = tmp.path().join("work");
    fs::create_dir_all(&work).unwrap();
    bundle(&work, &[]).success();
    let out = work.join("demo.tar.gz");
    run(Command::new(&minisign)
        .arg("-S")
        .arg("-s")
        .arg(&sk)
        .arg("-m")
        .arg(&out))
    .success();
    run(airgap()
        .arg("verify")
        .arg(&out)
        .arg("--trusted-key")
        .arg(&pk))
    .success();

    // airgap signs with minisign's key; minisign verifies.
    let w2 = tmp.path().join("w2");
    fs::create_dir_all(&w2).unwrap();
    bundle(&w2, &["--sign", sk.to_str().unwrap()]).success();
    run(Command::new(&minisign)
        .arg("-Vm")
        .arg(w2.join("demo.tar.gz"))
        .arg("-p")
        .arg(&pk))
    .success();
}

#[test]
fn keygen_writes_private_keys_0600_and_never_overwrites() {
    let tmp = tempdir();
    let keys = tmp.path().join("keys");
    let (age_key, age_pub, sk, pk) = keygen(&keys, "k");
    for secret in [&age_key, &sk] {
        let mode = fs::metadata(secret).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{}", secret.display());
    }
    let text = fs::read_to_string(&age_key).unwrap();
    assert!(text.starts_with("# created: "), "{text}");
    assert!(
        text.contains(&format!("# public key: {}", recipient(&age_pub))),
        "{text}"
    );
    assert!(fs::read_to_string(&pk)
        .unwrap()
        .starts_with("untrusted comment: "));

    let before = fs::read(&age_key).unwrap();
    let e = run(airgap()
        .args(["keygen", "--out"])
        .arg(&keys)
        .args(["--name", "k"]))
    .failure();
    assert!(e.stderr.contains("already exists"), "{}", e.stderr);
    assert!(
        e.stderr.contains("help: keygen never overwrites"),
        "{}",
        e.stderr
    );
    assert_eq!(fs::read(&age_key).unwrap(), before);
}

#[test]
fn an_encrypted_minisign_key_signs_with_its_password_from_a_file() {
    let minisign = tool("minisign");
    let tmp = tempdir();
    let pk = tmp.path().join("enc.pub");
    let sk = tmp.path().join("enc.key");
    let password = "key-password-314";
    // minisign -G asks for the password twice on the terminal.
    crate::seal_support::on_terminal(
        &[
            minisign.to_str().unwrap(),
            "-G",
            "-p",
            pk.to_str().unwrap(),
            "-s",
            sk.to_str().unwrap(),
        ],
        &[password, password],
    );
    assert!(sk.is_file(), "minisign -G wrote no key");
    let pass = tmp.path().join("pass.txt");
    fs::write(&pass, format!("{password}\n")).unwrap();
    let work = tmp.path().join("work");
    fs::create_dir_all(&work).unwrap();
    let done = bundle(
        &work,
        &[
            "--sign",
            sk.to_str().unwrap(),
            "--sign-password-file",
            pass.to_str().unwrap(),
        ],
    )
    .success();
    assert!(!done.stderr.contains(password), "{}", done.stderr);
    run(Command::new(&minisign)
        .arg("-Vm")
        .arg(work.join("demo.tar.gz"))
        .arg("-p")
        .arg(&pk))
    .success();

    // A wrong password is refused with advice, and nothing is bundled.
    fs::write(&pass, "not it\n").unwrap();
    let w2 = tmp.path().join("w2");
    fs::create_dir_all(&w2).unwrap();
    let e = bundle(
        &w2,
        &[
            "--sign",
            sk.to_str().unwrap(),
            "--sign-password-file",
            pass.to_str().unwrap(),
        ],
    )
    .failure();
    assert!(
        e.stderr.contains("wrong password for the secret key"),
        "{}",
        e.stderr
    );
    assert!(!w2.join("demo.tar.gz").exists());
}

#[test]
fn a_signed_bundle_renamed_to_another_name_warns_and_strict_refuses() {
    let tmp = tempdir();
    let keys = tmp.path().join("keys");
    let (_, _, sk, pk) = keygen(&keys, "team");
    let work = tmp.path().join("work");
    fs::create_dir_all(&work).unwrap();
    bundle(&work, &["--sign", sk.to_str().unwrap()]).success();
    // An older signed bundle, renamed to the name the site expects now.
    fs::rename(work.join("demo.tar.gz"), work.join("demo-2.tar.gz")).unwrap();
    fs::rename(
        work.join("demo.tar.gz.minisig"),
        work.join("demo-2.tar.gz.minisig"),
    )
    .unwrap();
    fs::rename(
        work.join("demo.tar.gz.sha256"),
        work.join("demo-2.tar.gz.sha256"),
    )
    .unwrap();
    let renamed = work.join("demo-2.tar.gz");
    let warning = "warning: the signature was made for a file named demo.tar.gz, not demo-2.tar.gz: this may be an older signed bundle renamed to the current name";
    let v = run(airgap()
        .arg("verify")
        .arg(&renamed)
        .arg("--trusted-key")
        .arg(&pk))
    .success();
    assert!(v.stderr.contains(warning), "{}", v.stderr);
    let s = run(airgap()
        .arg("verify")
        .arg(&renamed)
        .arg("--trusted-key")
        .arg(&pk)
        .arg("--strict"))
    .failure();
    assert!(
        s.stderr.contains(
            "error: the signature was made for a file named demo.tar.gz, not demo-2.tar.gz"
        ),
        "{}",
        s.stderr
    );
    assert!(
        s.stderr
            .contains("help: get the bundle again under the name it was signed with"),
        "{}",
        s.stderr
    );
    let dest = work.join("dest");
    let u = run(airgap()
        .arg("unpack")
        .arg(&renamed)
        .arg(&dest)
        .arg("--trusted-key")
        .arg(&pk)
        .arg("--strict"))
    .failure();
    assert!(u.stderr.contains("not demo-2.tar.gz"), "{}", u.stderr);
    assert!(!dest.exists());
}
