//! Bundles in volumes (issue #20): `airgap bundle --split-size` writes `NAME.tar.gz.001`, …
//! and their list; `cat` of them is the unsplit bundle, byte for byte; `airgap verify`,
//! `airgap unpack`, the carried unpacker and `NAME/unpack --from` read them in place; a
//! changed, missing, extra or swapped volume is named by its number before anything is
//! written; encryption comes before the split, and a signature covers the list. And on a
//! real FAT32 file system (mkfs.vfat, mounted through FUSE).

#![allow(clippy::unwrap_used)]

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::seal_support::{
    airgap, assert_unpacked, bundle, flip_byte, keygen, names, project, recipient,
};
use airgap_tests::{bin, run, skip, tempdir};

/// 8 MiB volumes: the demo bundle (3 MB of noise and the debug unpacker) takes three.
const SIZE: u64 = 8 << 20;

/// The volume files beside `whole` (`DIR/NAME`), in order.
fn volumes(whole: &Path) -> Vec<PathBuf> {
    let name = whole.file_name().unwrap().to_string_lossy().into_owned();
    (1..)
        .map(|n| whole.with_file_name(format!("{name}.{n:03}")))
        .take_while(|p| p.exists())
        .collect()
}

/// The concatenation of the volumes of `whole`.
fn cat(whole: &Path) -> Vec<u8> {
    volumes(whole)
        .iter()
        .flat_map(|v| fs::read(v).unwrap())
        .collect()
}

/// The demo project in `dir` bundled into `out` (relative to `dir`) in volumes of `size`.
fn split_bundle(dir: &Path, out: &str, size: &str, extra: &[&str]) -> PathBuf {
    let mut args = vec!["-o", out, "--split-size", size];
    args.extend_from_slice(extra);
    let done = bundle(dir, &args).success();
    assert!(done.stderr.contains("Split"), "{}", done.stderr);
    dir.join(out)
}

#[test]
fn volumes_hold_at_most_the_size_and_cat_gives_the_unsplit_bundle_that_tar_reads() {
    let tmp = tempdir();
    let dir = tmp.path();
    bundle(dir, &["-o", "demo.tar.gz"]).success();
    fs::create_dir(dir.join("split")).unwrap();
    // A first run in smaller volumes leaves more of them; the second removes the extra ones.
    let whole = split_bundle(dir, "split/demo.tar.gz", "4M", &[]);
    let more = volumes(&whole).len();
    split_bundle(dir, "split/demo.tar.gz", "8M", &[]);
    let parts = volumes(&whole);
    assert!(parts.len() >= 2 && parts.len() < more, "{parts:?}");
    for (i, p) in parts.iter().enumerate() {
        let len = fs::metadata(p).unwrap().len();
        assert!(len <= SIZE, "{} is {len} bytes", p.display());
        if i + 1 < parts.len() {
            assert_eq!(len, SIZE, "{} is not full", p.display());
        }
    }
    let unsplit = fs::read(dir.join("demo.tar.gz")).unwrap();
    assert!(
        cat(&whole) == unsplit,
        "cat of the volumes is not the bundle"
    );
    assert_eq!(
        fs::read_to_string(dir.join("split/demo.tar.gz.sha256")).unwrap(),
        fs::read_to_string(dir.join("demo.tar.gz.sha256")).unwrap()
    );
    assert!(
        !whole.exists(),
        "the whole is not written beside its volumes"
    );
    let list = fs::read_to_string(dir.join("split/demo.tar.gz.volumes")).unwrap();
    assert!(list.contains("bundle = \"demo.tar.gz\""), "{list}");
    assert!(list.contains("name = \"demo.tar.gz.002\""), "{list}");
    // cat, then tar and the bundle's own unpacker.
    let joined = dir.join("joined");
    fs::create_dir(&joined).unwrap();
    fs::write(joined.join("demo.tar.gz"), cat(&whole)).unwrap();
    let listing = run(Command::new("tar")
        .arg("tzf")
        .arg(joined.join("demo.tar.gz")))
    .success();
    assert!(
        listing.stdout.starts_with("demo/.airgap/manifest.toml\n"),
        "{}",
        listing.stdout
    );
    run(Command::new("tar")
        .current_dir(&joined)
        .args(["xzf", "demo.tar.gz"]))
    .success();
    let dest = dir.join("dest");
    run(Command::new(joined.join("demo/unpack")).arg(&dest)).success();
    assert_unpacked(&dest);
    assert!(names(&dir.join("split"))
        .iter()
        .all(|n| !n.ends_with(".partial")));
}

#[test]
fn verify_unpack_and_the_carried_unpacker_read_the_volumes_in_place() {
    let tmp = tempdir();
    let dir = tmp.path();
    let whole = split_bundle(dir, "demo.tar.gz", "8M", &[]);
    let first = dir.join("demo.tar.gz.001");
    let v = run(airgap().arg("verify").arg(&first)).success();
    assert!(v.stderr.contains("Verified"), "{}", v.stderr);
    run(airgap().arg("inspect").arg(&first)).success();
    run(airgap().arg("unpack").arg(&first).arg(dir.join("d1"))).success();
    assert_unpacked(&dir.join("d1"));
    // The list names the set as well.
    run(airgap()
        .arg("unpack")
        .arg(dir.join("demo.tar.gz.volumes"))
        .arg(dir.join("d2")))
    .success();
    assert_unpacked(&dir.join("d2"));
    // The static unpacker's code, as `airgap-unpack BUNDLE DEST`...
    run(Command::new(bin("airgap-unpack"))
        .arg(&first)
        .arg(dir.join("d3")))
    .success();
    assert_unpacked(&dir.join("d3"));
    // ... and as NAME/unpack --from, with only the unpacker extracted.
    let small = dir.join("small");
    fs::create_dir(&small).unwrap();
    fs::write(small.join("demo.tar.gz"), cat(&whole)).unwrap();
    run(Command::new("tar").current_dir(&small).args([
        "xzf",
        "demo.tar.gz",
        "demo/unpack",
        "demo/.airgap/airgap-unpack",
    ]))
    .success();
    fs::remove_file(small.join("demo.tar.gz")).unwrap();
    run(Command::new(small.join("demo/unpack"))
        .arg("--from")
        .arg(&first)
        .arg(dir.join("d4")))
    .success();
    assert_unpacked(&dir.join("d4"));
}

#[test]
fn one_changed_byte_in_volume_2_is_named_before_anything_is_written() {
    let tmp = tempdir();
    let dir = tmp.path();
    split_bundle(dir, "demo.tar.gz", "8M", &[]);
    let first = dir.join("demo.tar.gz.001");
    flip_byte(&dir.join("demo.tar.gz.002"), 1000);
    let before = names(dir);
    let dest = dir.join("dest");
    for mut cmd in [
        {
            let mut c = airgap();
            c.arg("unpack").arg(&first).arg(&dest);
            c
        },
        {
            let mut c = Command::new(bin("airgap-unpack"));
            c.arg(&first).arg(&dest);
            c
        },
        {
            let mut c = airgap();
            c.arg("verify").arg(&first);
            c
        },
    ] {
        let done = run(&mut cmd).failure();
        assert!(
            done.stderr.contains("volume 2 (") && done.stderr.contains("demo.tar.gz.002"),
            "{}",
            done.stderr
        );
        assert!(
            !done.stderr.contains("Unpacking") && !done.stderr.contains("Verifying"),
            "refused before reading the archive: {}",
            done.stderr
        );
        assert!(!dest.exists());
        assert_eq!(names(dir), before, "something was left behind");
    }
}

#[test]
fn a_missing_an_extra_and_swapped_volumes_are_named_by_number() {
    let tmp = tempdir();
    let dir = tmp.path();
    split_bundle(dir, "demo.tar.gz", "8M", &[]);
    let first = dir.join("demo.tar.gz.001");
    let vol = |n: usize| dir.join(format!("demo.tar.gz.{n:03}"));
    let refused = |expect: &[&str]| {
        let done = run(airgap().arg("unpack").arg(&first).arg(dir.join("dest"))).failure();
        for e in expect {
            assert!(done.stderr.contains(e), "{e:?} in {}", done.stderr);
        }
        assert!(done.stderr.contains("help:"), "{}", done.stderr);
        assert!(!dir.join("dest").exists());
    };
    let count = volumes(&dir.join("demo.tar.gz")).len();
    assert!(count >= 3);
    // Missing.
    fs::rename(vol(3), dir.join("away")).unwrap();
    refused(&["volume 3 (", "is missing"]);
    fs::rename(dir.join("away"), vol(3)).unwrap();
    // One more than the list names.
    fs::write(vol(count + 1), b"stale").unwrap();
    refused(&[&format!("demo.tar.gz.{:03} is there too", count + 1)]);
    fs::remove_file(vol(count + 1)).unwrap();
    // Volumes 1 and 2 (of one size) swapped.
    fs::rename(vol(1), dir.join("x")).unwrap();
    fs::rename(vol(2), vol(1)).unwrap();
    fs::rename(dir.join("x"), vol(2)).unwrap();
    refused(&["volume 1 (", "has the contents of volume 2"]);
    // A shortened last volume.
    fs::rename(vol(1), dir.join("x")).unwrap();
    fs::rename(vol(2), vol(1)).unwrap();
    fs::rename(dir.join("x"), vol(2)).unwrap();
    let last = vol(count);
    let bytes = fs::read(&last).unwrap();
    fs::write(&last, &bytes[..bytes.len() - 1]).unwrap();
    refused(&[&format!("volume {count} ("), "the list says"]);
    fs::write(&last, &bytes).unwrap();
    run(airgap().arg("unpack").arg(&first).arg(dir.join("dest"))).success();
}

#[test]
fn an_encrypted_bundle_is_split_after_encryption() {
    let tmp = tempdir();
    let (age_key, age_pub, _, _) = keygen(&tmp.path().join("keys"), "site");
    let dir = tmp.path().join("work");
    fs::create_dir_all(&dir).unwrap();
    project(&dir);
    let to = recipient(&age_pub);
    let whole = split_bundle(&dir, "demo.tar.gz.age", "8M", &["--encrypt-to", &to]);
    let parts = volumes(&whole);
    assert!(parts.len() >= 2, "{parts:?}");
    let head = fs::read(&parts[0]).unwrap();
    assert!(head.starts_with(b"age-encryption.org/"), "not age first");
    let first = &parts[0];
    let done = run(airgap().arg("unpack").arg(first).arg(dir.join("nokey"))).failure();
    assert!(done.stderr.contains("encrypted"), "{}", done.stderr);
    run(airgap()
        .arg("unpack")
        .arg(first)
        .arg(dir.join("dest"))
        .arg("-i")
        .arg(&age_key))
    .success();
    assert_unpacked(&dir.join("dest"));
}

#[test]
fn a_split_bundle_is_signed_through_its_list() {
    let tmp = tempdir();
    let (_, _, sk, pk) = keygen(&tmp.path().join("keys"), "team");
    let dir = tmp.path().join("work");
    fs::create_dir_all(&dir).unwrap();
    project(&dir);
    split_bundle(&dir, "demo.tar.gz", "8M", &["--sign", sk.to_str().unwrap()]);
    let sig = fs::read_to_string(dir.join("demo.tar.gz.volumes.minisig")).unwrap();
    assert!(
        sig.contains("trusted comment: file:demo.tar.gz.volumes\t"),
        "{sig}"
    );
    assert!(!dir.join("demo.tar.gz.minisig").exists());
    let first = dir.join("demo.tar.gz.001");
    let v = run(airgap()
        .arg("verify")
        .arg(&first)
        .arg("--trusted-key")
        .arg(&pk)
        .arg("--strict"))
    .success();
    assert!(v.stderr.contains("is good"), "{}", v.stderr);
    // A list changed to match a changed volume: the signature refuses it first.
    let list_path = dir.join("demo.tar.gz.volumes");
    let list = fs::read_to_string(&list_path).unwrap();
    let v2 = dir.join("demo.tar.gz.002");
    flip_byte(&v2, 1000);
    let old = airgap_archive::install::read::sha256_file(&v2).unwrap();
    let line = list
        .lines()
        .skip_while(|l| !l.contains("demo.tar.gz.002"))
        .nth(2)
        .unwrap()
        .to_string();
    let changed = list.replace(&line, &format!("sha256 = \"{old}\""));
    assert_ne!(changed, list);
    fs::write(&list_path, changed).unwrap();
    let before = names(&dir);
    let done = run(airgap()
        .arg("unpack")
        .arg(&first)
        .arg(dir.join("dest"))
        .arg("--trusted-key")
        .arg(&pk))
    .failure();
    assert!(
        done.stderr.contains("the signature does not match"),
        "{}",
        done.stderr
    );
    assert_eq!(names(&dir), before);
}

#[test]
fn a_failed_split_bundle_leaves_no_volume_and_no_list() {
    let tmp = tempdir();
    let dir = tmp.path();
    fs::create_dir_all(dir.join("data")).unwrap();
    // 66 MB of noise needs more than 999 volumes of 64 KiB: the run fails while writing
    // volume 1000, after 999 were written.
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    let noise: Vec<u8> = (0..66_000_000)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    fs::write(dir.join("data/noise.bin"), noise).unwrap();
    fs::write(
        dir.join("airgap.toml"),
        "[bundle]\nname = \"demo\"\n\n[sources.files]\npaths = [\"data/\"]\n",
    )
    .unwrap();
    let out = dir.join("out");
    fs::create_dir(&out).unwrap();
    let done = run(airgap().current_dir(dir).args([
        "bundle",
        "-c",
        "airgap.toml",
        "--no-check",
        "-o",
        "out/demo.tar.gz",
        "--split-size",
        "64K",
    ]))
    .failure();
    assert!(
        done.stderr.contains("more than 999 volumes"),
        "{}",
        done.stderr
    );
    assert_eq!(names(&out), Vec::<String>::new(), "left behind");
}

#[test]
fn a_split_size_and_a_split_run_are_checked_before_any_plugin_runs() {
    let tmp = tempdir();
    let dir = tmp.path();
    project(dir);
    for (size, extra, expect) in [
        ("10K", None, "at least 64K"),
        ("5X", None, "not a size"),
        (
            "1M",
            Some("--self-extracting"),
            "cannot be split into volumes",
        ),
    ] {
        let mut args = vec!["--split-size", size];
        args.extend(extra);
        let done = bundle(dir, &args).failure();
        assert!(done.stderr.contains(expect), "{}", done.stderr);
        assert!(!done.stderr.contains("(plugin files"), "{}", done.stderr);
    }
}

/// A FAT32 image mounted through FUSE (`fusefat`), unmounted when dropped.
struct Vfat {
    mnt: PathBuf,
    fusermount: PathBuf,
}

impl Vfat {
    fn mount(dir: &Path) -> Option<Vfat> {
        let mut tools = Vec::new();
        for tool in ["mkfs.vfat", "fusefat", "fusermount"] {
            match find_tool(tool) {
                Some(t) => tools.push(t),
                None => {
                    skip(&format!(
                        "{tool} is missing (apt-get install dosfstools fusefat fuse)"
                    ));
                    return None;
                }
            }
        }
        if fs::metadata("/dev/fuse").is_err() {
            skip("/dev/fuse is missing: FUSE cannot mount the FAT32 image");
            return None;
        }
        let img = dir.join("fat.img");
        fs::File::create(&img).unwrap().set_len(160 << 20).unwrap();
        run(Command::new(&tools[0]).args(["-F", "32"]).arg(&img)).success();
        let mnt = dir.join("mnt");
        fs::create_dir(&mnt).unwrap();
        run(Command::new(&tools[1])
            .args(["-o", "rw+"])
            .arg(&img)
            .arg(&mnt))
        .success();
        Some(Vfat {
            mnt,
            fusermount: tools[2].clone(),
        })
    }
}

impl Drop for Vfat {
    fn drop(&mut self) {
        let _ = Command::new(&self.fusermount)
            .arg("-u")
            .arg(&self.mnt)
            .status();
    }
}

/// A tool on `PATH`, or in the sbin directories a user's `PATH` may lack.
fn find_tool(tool: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin".into(), "/sbin".into()])
        .map(|d| d.join(tool))
        .find(|p| p.is_file())
}

#[test]
fn a_bundle_split_for_fat32_is_written_onto_vfat_and_read_back_from_there() {
    let tmp = tempdir();
    let dir = tmp.path().join("work");
    fs::create_dir_all(&dir).unwrap();
    project(&dir);
    let Some(fat) = Vfat::mount(tmp.path()) else {
        return;
    };
    let on_fat = |name: &str| fat.mnt.join(name).to_string_lossy().into_owned();
    // The preset: one volume (the bundle is far below 4 GiB), and small volumes: several.
    let done = bundle(
        &dir,
        &["-o", &on_fat("one.tar.gz"), "--split-size", "fat32"],
    )
    .success();
    assert!(done.stderr.contains("Split"), "{}", done.stderr);
    assert_eq!(volumes(&fat.mnt.join("one.tar.gz")).len(), 1);
    bundle(&dir, &["-o", &on_fat("demo.tar.gz"), "--split-size", "8M"]).success();
    let parts = volumes(&fat.mnt.join("demo.tar.gz"));
    assert!(parts.len() >= 2, "{parts:?}");
    assert!(
        names(&fat.mnt).iter().all(|n| !n.ends_with(".partial")),
        "{:?}",
        names(&fat.mnt)
    );
    for (name, dest) in [("one.tar.gz.001", "d1"), ("demo.tar.gz.001", "d2")] {
        let first = fat.mnt.join(name);
        run(airgap().arg("verify").arg(&first)).success();
        run(airgap().arg("unpack").arg(&first).arg(dir.join(dest))).success();
        assert_unpacked(&dir.join(dest));
    }
    // One changed byte in volume 2, on the FAT file system too (written in place: fusefat
    // refuses to truncate a file).
    {
        use std::io::{Read, Seek, SeekFrom, Write};
        let mut f = fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&parts[1])
            .unwrap();
        let mut b = [0u8];
        f.seek(SeekFrom::Start(4096)).unwrap();
        f.read_exact(&mut b).unwrap();
        f.seek(SeekFrom::Start(4096)).unwrap();
        f.write_all(&[b[0] ^ 0x01]).unwrap();
    }
    let done = run(airgap().arg("unpack").arg(&parts[0]).arg(dir.join("d3"))).failure();
    assert!(done.stderr.contains("volume 2 ("), "{}", done.stderr);
    assert!(!dir.join("d3").exists());
}

#[test]
fn a_volume_changed_after_the_first_pass_fails_the_read_that_follows() {
    let tmp = tempdir();
    let dir = tmp.path();
    split_bundle(dir, "demo.tar.gz", "8M", &[]);
    let first = dir.join("demo.tar.gz.001");
    let opened = airgap_archive::install::read::open_bundle(&first).unwrap();
    // The first reader hashes every volume: all as the list says.
    let mut reader = opened.reader(&first).unwrap();
    // Then volume 2 changes in place (same file, which the set holds open).
    flip_byte(&dir.join("demo.tar.gz.002"), 1000);
    let e = std::io::copy(&mut reader, &mut std::io::sink()).unwrap_err();
    let text = e.to_string();
    assert!(
        text.contains("volume 2 (") && text.contains("changed after it was checked"),
        "{text}"
    );
}

#[test]
fn a_split_bundle_cancelled_while_writing_leaves_no_volume() {
    use std::process::Stdio;
    let tmp = tempdir();
    let dir = tmp.path();
    fs::create_dir_all(dir.join("data")).unwrap();
    // Noise at level 9 on one thread: writing takes seconds.
    let mut x = 0x2545_f491_4f6c_dd1du64;
    let mut noise = Vec::with_capacity(96 << 20);
    while noise.len() < 96 << 20 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        noise.extend_from_slice(&x.to_le_bytes());
    }
    fs::write(dir.join("data/big.bin"), noise).unwrap();
    fs::write(
        dir.join("airgap.toml"),
        "[bundle]\nname = \"demo\"\n\n[sources.files]\npaths = [\"data/\"]\n",
    )
    .unwrap();
    let out = dir.join("out");
    fs::create_dir(&out).unwrap();
    let mut child = airgap()
        .current_dir(dir)
        .args([
            "bundle",
            "-c",
            "airgap.toml",
            "--no-check",
            "--threads",
            "1",
            "--level",
            "9",
            "-o",
            "out/demo.tar.gz",
            "--split-size",
            "1M",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The readiness signal: a third volume is being written.
    let third = out.join(".demo.tar.gz.003.partial");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(300);
    while !third.exists() {
        assert!(
            child.try_wait().unwrap().is_none(),
            "the run ended before its third volume"
        );
        assert!(std::time::Instant::now() < deadline, "no third volume");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let killed = Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status()
        .unwrap();
    assert!(killed.success());
    let done = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&done.stderr);
    assert_eq!(done.status.code(), Some(130), "{stderr}");
    assert_eq!(names(&out), Vec::<String>::new(), "left behind: {stderr}");
}

#[test]
fn a_zstd_bundle_is_split_and_read_back_alike() {
    let tmp = tempdir();
    let dir = tmp.path();
    let whole = split_bundle(dir, "demo.tar.zst", "8M", &["--compression", "zstd"]);
    assert!(volumes(&whole).len() >= 2);
    let first = dir.join("demo.tar.zst.001");
    run(airgap().arg("verify").arg(&first)).success();
    run(airgap().arg("unpack").arg(&first).arg(dir.join("dest"))).success();
    assert_unpacked(&dir.join("dest"));
}

#[test]
fn volumes_of_an_earlier_run_inside_a_bundled_tree_are_left_out_of_the_next() {
    let tmp = tempdir();
    let dir = tmp.path();
    let whole = split_bundle(dir, "data/demo.tar.gz", "8M", &[]);
    let done = bundle(dir, &["-o", "data/demo.tar.gz", "--split-size", "8M"]).success();
    assert!(
        done.stderr
            .contains("demo.tar.gz.001 is where this run writes")
            && done
                .stderr
                .contains("demo.tar.gz.volumes is where this run writes"),
        "{}",
        done.stderr
    );
    let joined = dir.join("joined.tar.gz");
    fs::write(&joined, cat(&whole)).unwrap();
    let listing = run(Command::new("tar").arg("tzf").arg(&joined)).success();
    assert!(
        listing.stdout.contains("demo/data/hello.py") && !listing.stdout.contains("demo.tar.gz"),
        "{}",
        listing.stdout
    );
}
