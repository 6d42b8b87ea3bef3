//! The differential conformance suite (issue #14): the check's predictions per ELF object
//! against glibc's real loader in minimal Debian roots (see `tests/src/conformance.rs`).
//!
//! `conformance_fast` runs in the default test run (two small workloads, bookworm and
//! bullseye); `conformance_full` is the whole corpus in bookworm, bullseye and trixie, run by
//! `cargo xtask conformance`, which prints the table from `target/conformance/results.tsv`.
//! The real loader's side is tested on its own by `real_loader_*`.

use airgap_tests::conformance::{self as c, Ask, Resolved};
use airgap_tests::rootfs::{self, DebianRoot, Suite};

fn require_roots() {
    assert!(
        rootfs::supported(),
        "the conformance suite needs root, unshare and chroot (it loads bundles in Debian roots)"
    );
}

fn run_suite(workloads: Vec<c::Workload>, suites: Vec<Suite>) {
    require_roots();
    // `AIRGAP_CONFORMANCE_ONLY=science,native` runs only those workloads.
    let only = std::env::var("AIRGAP_CONFORMANCE_ONLY").unwrap_or_default();
    let workloads: Vec<c::Workload> = workloads
        .into_iter()
        .filter(|w| only.is_empty() || only.split(',').any(|o| o == w.name))
        .collect();
    assert!(
        !workloads.is_empty(),
        "no workload named in AIRGAP_CONFORMANCE_ONLY={only}"
    );
    let mut rows = Vec::new();
    let mut errors = Vec::new();
    for w in &workloads {
        let bundled = c::bundle(w);
        for &suite in &suites {
            match c::run_in(w, &bundled, suite) {
                Ok(row) => {
                    // Recorded as it comes, so a long run that is stopped still has its table.
                    c::record(std::slice::from_ref(&row));
                    rows.push(row);
                }
                Err(e) => errors.push(format!("{} @ {}: {e}", w.name, suite.name())),
            }
        }
    }
    for r in &rows {
        eprintln!(
            "{} @ {}: {} compared, {} agree, {} disagree",
            r.workload,
            r.suite,
            r.outcome.compared,
            r.outcome.agreements,
            r.outcome.disagreements.len()
        );
        for d in &r.outcome.disagreements {
            eprintln!("  {}", c::describe(r, d));
        }
    }
    assert!(errors.is_empty(), "no predictions:\n{}", errors.join("\n"));
    c::assert_bar(&rows);
}

/// The fast subset: a conda env (interpreter, libpython, programs, extension modules) and the
/// cuFile libraries (an on-demand RDMA plugin), in bookworm and bullseye.
#[test]
fn conformance_fast() {
    run_suite(c::fast(), c::suites(false));
}

/// The whole corpus in every root.
#[test]
#[ignore = "long: run with cargo xtask conformance"]
fn conformance_full() {
    run_suite(c::corpus(), c::suites(true));
}

/// The real loader's side alone, on the conda workload without predictions: in bookworm the
/// interpreter's libpython resolves to the bundle's copy through its RUNPATH, `_ssl` loads with
/// the libssl syslibs grafted, `_json` loads, the cuFile RDMA plugin lacks libibverbs; in bullseye (glibc 2.31) the interpreter
/// built on glibc 2.36 is refused for a symbol version. The check's real predictions agree with
/// that, and wrong ones (a dep elsewhere, a needed library called on-demand) do not.
#[test]
fn real_loader_sees_bundle_files_missing_libraries_and_versions() {
    require_roots();
    let w = c::fast()
        .into_iter()
        .find(|w| w.name == "conda")
        .expect("the conda workload");
    let bundled = c::bundle(&w);
    let root = DebianRoot::new(Suite::Bookworm);
    c::unpack_into(&root, &bundled.archive);
    let elf = c::elf_files(&root.host_path(c::DEST));
    let python_exe = elf
        .iter()
        .find(|f| f.starts_with("env/bin/python3"))
        .unwrap_or_else(|| panic!("no env/bin/python3.* among the ELF files: {elf:?}"))
        .clone();
    let ext = |stem: &str| {
        elf.iter()
            .find(|f| {
                f.contains("lib-dynload/")
                    && f.rsplit('/').next().is_some_and(|n| n.starts_with(stem))
            })
            .unwrap_or_else(|| panic!("no {stem} extension in {elf:?}"))
            .clone()
    };
    let (ssl, json) = (ext("_ssl."), ext("_json."));
    let asks = vec![
        Ask::List(format!("{}/{python_exe}", c::DEST)),
        Ask::Extension {
            python: format!("{}/env/bin/python3", c::DEST),
            path: format!("{}/{ssl}", c::DEST),
        },
        Ask::Extension {
            python: format!("{}/env/bin/python3", c::DEST),
            path: format!("{}/{json}", c::DEST),
        },
    ];
    let probes = c::probe(&root, &asks);
    let libpython = probes[0]
        .trace
        .requests
        .iter()
        .find(|r| r.name.starts_with("libpython3"))
        .unwrap_or_else(|| {
            panic!(
                "no libpython request in the trace of {python_exe}:\n{}",
                probes[0].output
            )
        });
    let Resolved::File(found) = &libpython.resolved else {
        panic!("libpython not resolved: {libpython:?}");
    };
    let found = c::canonical_in_root(root.path(), found);
    assert!(found.starts_with("/opt/w/env/lib/libpython3"), "{found}");
    assert!(
        probes[0].version_errors.is_empty(),
        "{:?}",
        probes[0].version_errors
    );
    // syslibs grafted libssl: _ssl loads with the bundle's copy.
    assert!(
        probes[1].load_error.is_none(),
        "{:?}\n{}",
        probes[1].load_error,
        probes[1].output
    );
    let libssl = probes[1]
        .trace
        .requests
        .iter()
        .find(|r| r.name.starts_with("libssl"))
        .unwrap_or_else(|| panic!("no libssl request: {:?}", probes[1].trace.requests));
    let Resolved::File(found) = &libssl.resolved else {
        panic!("libssl not resolved: {libssl:?}");
    };
    assert!(
        c::canonical_in_root(root.path(), found).starts_with("/opt/w/env/"),
        "{found}"
    );
    assert!(
        probes[2].load_error.is_none(),
        "{:?}\n{}",
        probes[2].load_error,
        probes[2].output
    );
    assert!(
        probes[2]
            .trace
            .loaded
            .iter()
            .any(|l| l.ends_with(json.rsplit('/').next().unwrap_or(""))),
        "the extension is mapped: {:?}",
        probes[2].trace.loaded
    );

    // The comparison can fail: the real predictions agree, wrong ones do not.
    let predictions = c::predict(&bundled.archive, &root).expect("predictions");
    let (standalone, python) = c::probe_all(&root, &predictions, w.python);
    let outcome = c::compare(root.path(), &predictions, &standalone, &python, &elf);
    assert!(
        outcome.disagreements.is_empty(),
        "{:?}",
        outcome.disagreements
    );
    let mut wrong = predictions.clone();
    let exe = wrong
        .iter_mut()
        .find(|p| p.path == python_exe)
        .expect("the interpreter is predicted");
    let dep = exe
        .deps
        .iter_mut()
        .find(|d| d.name.starts_with("libpython3"))
        .expect("its libpython dep");
    dep.found = Some((
        "target".into(),
        "/usr/lib/x86_64-linux-gnu/libpython3.so".into(),
    ));
    let lib = wrong
        .iter_mut()
        .find(|p| p.role == "needed")
        .expect("a needed library");
    lib.role = "on_demand".into();
    let outcome = c::compare(root.path(), &wrong, &standalone, &python, &elf);
    let whats: Vec<&str> = outcome
        .disagreements
        .iter()
        .map(|d| d.what.as_str())
        .collect();
    assert!(
        outcome
            .disagreements
            .iter()
            .any(|d| d.what.starts_with("libpython3") && d.must_load()),
        "a wrong dep is a disagreement: {whats:?}"
    );
    assert!(
        outcome
            .disagreements
            .iter()
            .any(|d| d.what == "role" && d.must_load()),
        "a needed library called on-demand is a disagreement: {whats:?}"
    );

    // An on-demand plugin: libcufile_rdma needs libibverbs, which nothing here has.
    let w = c::fast()
        .into_iter()
        .find(|w| w.name == "cufile")
        .expect("the cufile workload");
    let cufile = c::bundle(&w);
    let plain = DebianRoot::new(Suite::Bookworm);
    c::unpack_into(&plain, &cufile.archive);
    let rdma = c::elf_files(&plain.host_path(c::DEST))
        .into_iter()
        .find(|f| f.contains("libcufile_rdma"))
        .expect("libcufile_rdma in the cufile bundle");
    let probes = c::probe(&plain, &[Ask::List(format!("{}/{rdma}", c::DEST))]);
    assert!(
        probes[0]
            .trace
            .requests
            .iter()
            .any(|r| r.name.starts_with("libibverbs") && r.resolved == Resolved::NotFound),
        "{:?}\n{}",
        probes[0].trace.requests,
        probes[0].output
    );

    let old = DebianRoot::new(Suite::Bullseye);
    c::unpack_into(&old, &bundled.archive);
    let probes = c::probe(&old, &asks[..1]);
    assert!(
        probes[0]
            .version_errors
            .iter()
            .any(|v| v.version.starts_with("GLIBC_2.3")),
        "the 2.36-built interpreter needs a newer glibc than 2.31: {:?}\n{}",
        probes[0].version_errors,
        probes[0].output
    );
}

/// The trace parser on the loader's own wording: found at the last try, not found after a
/// search, already loaded by name without one.
#[test]
fn trace_parser_reads_found_missing_and_already_loaded() {
    let trace = "\
     7:\tfile=/opt/w/bin/p [0];  generating link map
     7:\tfile=libx.so.1 [0];  needed by /opt/w/bin/p [0]
     7:\tfind library=libx.so.1 [0]; searching
     7:\t search path=/opt/w/lib\t\t(RPATH from file /opt/w/bin/p)
     7:\t  trying file=/opt/w/lib/tls/libx.so.1
     7:\t  trying file=/opt/w/lib/libx.so.1
     7:\t
     7:\tfile=libx.so.1 [0];  generating link map
     7:\tfile=libgone.so [0];  needed by /opt/w/lib/libx.so.1 [0]
     7:\tfind library=libgone.so [0]; searching
     7:\t search cache=/etc/ld.so.cache
     7:\tfile=libx.so.1 [0];  needed by /opt/w/lib/libother.so [0]
";
    let t = c::parse_trace(trace);
    assert_eq!(t.loaded, ["/opt/w/bin/p", "/opt/w/lib/libx.so.1"]);
    assert_eq!(
        t.requests[0].resolved,
        Resolved::File("/opt/w/lib/libx.so.1".into())
    );
    assert_eq!(t.requests[1].resolved, Resolved::NotFound);
    assert_eq!(
        t.requests[2].resolved,
        Resolved::File("/opt/w/lib/libx.so.1".into())
    );
    let v = c::parse_version_errors(
        "/opt/w/bin/p: /lib/x86_64-linux-gnu/libc.so.6: version `GLIBC_2.34' not found (required by /opt/w/lib/libx.so.1)",
    );
    assert_eq!(v.len(), 1);
    assert_eq!(v[0].provider, "/lib/x86_64-linux-gnu/libc.so.6");
    assert_eq!(v[0].version, "GLIBC_2.34");
    assert_eq!(v[0].requester, "/opt/w/lib/libx.so.1");
}
