//! Holes stay holes (issue #15, finding 5): a sparse file is installed sparse by `airgap unpack`
//! and by the carried unpacker after `tar xzf` (`NAME/unpack DEST`), so a small bundle cannot
//! fill the target's disk.

use std::fs;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::process::Command;

use airgap_archive::Entry;
use airgap_archive::PlanOptions;
use airgap_tests::archive::*;
use airgap_tests::{airgap, run, tempdir};

const SIZE: u64 = 1 << 30;

fn allocated(path: &std::path::Path) -> u64 {
    fs::metadata(path).unwrap().blocks() * 512
}

#[test]
fn a_sparse_file_is_installed_sparse_by_airgap_and_by_the_carried_unpacker() {
    let tmp = tempdir();
    let tree = tmp.path().join("src");
    fs::create_dir_all(&tree).unwrap();
    let f = fs::File::create(tree.join("disk.img")).unwrap();
    f.set_len(SIZE).unwrap();
    f.write_all_at(b"boot", 0).unwrap();
    f.write_all_at(b"middle", SIZE / 2).unwrap();
    drop(f);
    assert!(
        allocated(&tree.join("disk.img")) < 1 << 20,
        "this file system cannot hold a sparse file: the test cannot run here"
    );
    let p = plan(&[Entry::path(&tree, "data")], PlanOptions::default()).unwrap();
    let bundle = tmp.path().join("b.tar.gz");
    write(&p, input("b"), &bundle, Some(unpacker()));

    let dest = tmp.path().join("dest");
    run(airgap().arg("unpack").arg(&bundle).arg(&dest)).success();
    let img = dest.join("data/disk.img");
    assert_eq!(fs::metadata(&img).unwrap().len(), SIZE);
    assert!(
        allocated(&img) < 1 << 20,
        "airgap unpack: {} bytes allocated",
        allocated(&img)
    );

    let x = tmp.path().join("x");
    fs::create_dir(&x).unwrap();
    gnu_tar(&["xzf", &bundle.display().to_string()], &x);
    let extracted = x.join("b/data/disk.img");
    assert!(
        allocated(&extracted) < 1 << 20,
        "GNU tar did not keep the holes: {} bytes",
        allocated(&extracted)
    );
    let dest2 = tmp.path().join("dest2");
    run(Command::new(x.join("b/unpack")).arg(&dest2)).success();
    let img = dest2.join("data/disk.img");
    assert_eq!(fs::metadata(&img).unwrap().len(), SIZE);
    let mut head = [0u8; 4];
    fs::File::open(&img)
        .unwrap()
        .read_exact_at(&mut head, 0)
        .unwrap();
    assert_eq!(&head, b"boot");
    let mut mid = [0u8; 6];
    fs::File::open(&img)
        .unwrap()
        .read_exact_at(&mut mid, SIZE / 2)
        .unwrap();
    assert_eq!(&mid, b"middle");
    assert!(
        allocated(&img) < 1 << 20,
        "NAME/unpack wrote the holes as data: {} bytes allocated",
        allocated(&img)
    );
}
