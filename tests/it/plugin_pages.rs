//! ABI 1.1's paging of earlier files, through the real CLI and the real host: a 1.1
//! Finish-stage plugin gets an empty `request.earlier` and pages (every file, or only the ELF
//! files and links), a 1.0 one still gets them all in the request, pages a plugin must not
//! ask for are refused with a message, and syslibs, which pages, grafts exactly what it
//! grafted from the whole list.

use std::path::{Path, PathBuf};

use airgap_plugin_api::ffi::{
    Buffer, EarlierSink, HostCallbacks, PluginDescriptor, HOST_CALLBACKS_SIZE_1_0,
};
use airgap_plugin_api::{ContributeRequest, Contribution, TargetProfile};
use airgap_tests::{airgap, build_dir, cdylib, run, tempdir};

use crate::syslibs_support::{
    bundle_files, pyenv_python, python_environment, python_skip, request, run_syslibs,
};

/// Copy a built test plugin into `dir` under the file name a real plugin would have.
fn install_as(dir: &Path, crate_name: &str, plugin_name: &str) {
    let to = dir.join(format!(
        "libairgap_plugin_{}.so",
        plugin_name.replace('-', "_")
    ));
    std::fs::copy(cdylib(crate_name), &to).expect("copy plugin");
}

/// A tree for the files source: a text file, an ELF library and a link to it, a file that
/// only says it is a library, an empty directory, and enough files for several pages.
fn tree(dir: &Path) -> PathBuf {
    let data = dir.join("data");
    std::fs::create_dir_all(data.join("lib")).expect("mkdir");
    std::fs::create_dir_all(data.join("empty")).expect("mkdir");
    std::fs::create_dir_all(data.join("many")).expect("mkdir");
    std::fs::write(data.join("hello.txt"), "hello\n").expect("write");
    std::fs::copy(
        cdylib("airgap-testplugin-panics"),
        data.join("lib/libreal.so"),
    )
    .expect("copy");
    std::os::unix::fs::symlink("libreal.so", data.join("lib/libreal.so.1")).expect("link");
    std::fs::write(data.join("lib/libfake.so"), "INPUT(-lreal)\n").expect("write");
    for i in 0..2500 {
        std::fs::write(data.join(format!("many/f{i:04}")), format!("{i}\n")).expect("write");
    }
    data
}

/// Bundle the tree with the files source and the given Finish-stage tables.
fn bundle(dir: &Path, finish: &str) -> airgap_tests::Done {
    tree(dir);
    let config = dir.join("airgap.toml");
    std::fs::write(
        &config,
        format!("[bundle]\nname = \"t\"\n[sources.files]\npaths = [\"data\"]\n{finish}"),
    )
    .expect("write config");
    run(airgap()
        .env("AIRGAP_NO_PROGRESS", "true")
        .arg("--plugin-dir")
        .arg(dir)
        .args(["bundle", "--no-check", "-c"])
        .arg(&config)
        .arg("-o")
        .arg(dir.join("out.tar.gz")))
}

/// The report's header line `key` and its listing (`kind path` lines).
fn report(path: &Path) -> (String, Vec<String>) {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let listing = text
        .lines()
        .filter(|l| ["file ", "dir ", "link "].iter().any(|k| l.starts_with(k)))
        .map(str::to_owned)
        .collect();
    (text, listing)
}

#[test]
fn a_1_1_finish_plugin_pages_and_a_1_0_one_still_gets_every_earlier_file_in_the_request() {
    let dir = tempdir();
    install_as(dir.path(), "airgap-testplugin-finish-1-0", "finish-1-0");
    install_as(dir.path(), "airgap-testplugin-pages", "pages");
    let (old, all, elf) = (
        dir.path().join("old.txt"),
        dir.path().join("all.txt"),
        dir.path().join("elf.txt"),
    );
    bundle(
        dir.path(),
        &format!(
            "[sources.old]\nplugin = \"finish-1-0\"\nreport = \"{}\"\n\
             [sources.all]\nplugin = \"pages\"\nreport = \"{}\"\n\
             [sources.elf]\nplugin = \"pages\"\nlist = \"elf\"\nreport = \"{}\"\n",
            old.display(),
            all.display(),
            elf.display()
        ),
    )
    .success();

    // 1.0: everything in the request, no paging.
    let (old_text, old_listing) = report(&old);
    assert!(old_text.contains("\npages false\n"), "{old_text}");
    for line in [
        "file data/hello.txt",
        "file data/lib/libreal.so",
        "link data/lib/libreal.so.1",
        "file data/lib/libfake.so",
        "dir data/empty",
        "file data/many/f2499",
    ] {
        assert!(
            old_listing.iter().any(|l| l == line),
            "{line} not in {old_text}"
        );
    }
    let n = old_listing.len();
    assert!(n > 2500, "{n} files");
    assert!(
        old_text.starts_with(&format!("request {n}\n")),
        "{old_text}"
    );

    // 1.1, every file: nothing in the request, the same list through three pages.
    let (all_text, all_listing) = report(&all);
    assert!(
        all_text.starts_with("request 0\npages true\n"),
        "{all_text}"
    );
    assert_eq!(all_listing, old_listing);

    // 1.1, ELF files and links: the library (by content, not by name) and its link.
    let (elf_text, elf_listing) = report(&elf);
    assert!(
        elf_text.starts_with("request 0\npages true\n"),
        "{elf_text}"
    );
    assert_eq!(
        elf_listing,
        ["file data/lib/libreal.so", "link data/lib/libreal.so.1"],
        "{elf_text}"
    );

    // What a careless plugin asks for is refused with a message; a huge `max` is capped.
    for line in [
        "probe unknown list: status 1: unknown list 7 (0 is every earlier file, 1 the ELF files and links)".to_owned(),
        "probe max 0: status 1: a page of 0 files was asked for".to_owned(),
        format!("probe start past the end: status 1: a page starting at file {} was asked for, but there are {n} earlier files in that list", u64::MAX),
        "probe no sink: status 1: ".to_owned(),
        "probe max huge: status 0: 1024 records".to_owned(),
    ] {
        assert!(all_text.lines().any(|l| l == line), "{line:?} not in {all_text}");
    }
}

#[test]
fn a_page_past_the_end_fails_the_bundle_with_the_hosts_message_and_writes_nothing() {
    let dir = tempdir();
    install_as(dir.path(), "airgap-testplugin-pages", "pages");
    let done = bundle(
        dir.path(),
        &format!(
            "[sources.late]\nplugin = \"pages\"\nstart = 1000000\nreport = \"{}\"\n",
            dir.path().join("late.txt").display()
        ),
    )
    .failure();
    assert_eq!(done.code, Some(1), "{done:?}");
    assert!(
        done.stderr.contains(
            "the host refused a page of earlier files: a page starting at file 1000000 was asked for, but there are"
        ),
        "{}",
        done.stderr
    );
    assert!(!dir.path().join("out.tar.gz").exists());
}

/// What a plugin finds if it reads a table past its `struct_size`.
unsafe extern "C" fn must_not_be_read(
    _: *mut std::ffi::c_void,
    _: u32,
    _: u64,
    _: u64,
    sink: Option<EarlierSink>,
    sink_context: *mut std::ffi::c_void,
) -> i32 {
    let message = b"the plugin read earlier_page past the table's struct_size";
    if let Some(sink) = sink {
        // SAFETY: the plugin's sink, for this call.
        unsafe { sink(sink_context, message.as_ptr(), message.len()) };
    }
    1
}

/// Call a plugin library as an ABI 1.0 host would: a table of the 1.0 size (no
/// `earlier_page`), every earlier file in the request.
fn contribute_as_1_0_host(library: &Path, request: &ContributeRequest) -> Contribution {
    // SAFETY: a plugin library of this build; loaded (and never unloaded) as the host does.
    let library: &'static libloading::Library = Box::leak(Box::new(
        unsafe { libloading::Library::new(library) }.expect("load"),
    ));
    type DescriptorFn = extern "C" fn() -> *const PluginDescriptor;
    // SAFETY: the ABI's one symbol.
    let describe =
        unsafe { library.get::<DescriptorFn>(b"airgap_plugin_descriptor") }.expect("symbol");
    // SAFETY: a descriptor of this build's layout.
    let descriptor = unsafe { &*describe() };
    let table = HostCallbacks {
        struct_size: HOST_CALLBACKS_SIZE_1_0 as u32,
        context: std::ptr::null_mut(),
        log: None,
        progress: None,
        is_cancelled: None,
        // Past `struct_size`: a plugin must not read it. Set, so that one that did would fail.
        earlier_page: Some(must_not_be_read),
    };
    let json = serde_json::to_vec(request).expect("json");
    let mut out = Buffer::empty();
    // SAFETY: valid table, request and out buffer for the call.
    let status = unsafe { (descriptor.contribute)(&table, json.as_ptr(), json.len(), &mut out) };
    // SAFETY: filled by the call; freed once by the library.
    let bytes = unsafe { out.as_slice() }.to_vec();
    unsafe { (descriptor.free_buffer)(out) };
    assert_eq!(status, 0, "{}", String::from_utf8_lossy(&bytes));
    serde_json::from_slice(&bytes).expect("contribution")
}

#[test]
fn syslibs_grafts_from_its_pages_exactly_what_it_grafts_from_the_whole_list() {
    let Some(py) = pyenv_python() else {
        return airgap_tests::skip("no CPython 3.11 installation (cargo xtask setup builds one)");
    };
    let earlier = bundle_files(&py, "py", &python_skip);
    let work = tempdir();
    let python = python_environment(&py);
    let mut target = TargetProfile::default();
    target.glibc = Some("2.36".into());
    let req = request(
        earlier,
        work.path(),
        Some(python),
        target,
        serde_json::json!({}),
    );
    // The 1.1 host pages the list to syslibs (ELF files and links only).
    let paged = run_syslibs(&req);
    // A 1.0 host hands it the whole list in the request.
    let whole = contribute_as_1_0_host(&cdylib("airgap-plugin-syslibs"), &req);
    assert!(
        paged.packages.iter().any(|p| p.name == "libssl.so.3"),
        "nothing grafted: {:?}",
        paged.packages
    );
    assert!(paged.entries.iter().any(|e| e.replace), "nothing patched");
    assert_eq!(
        serde_json::to_value(&paged).expect("json"),
        serde_json::to_value(&whole).expect("json")
    );
}

#[test]
fn syslibs_gets_no_earlier_files_in_its_request_from_airgap_bundle_and_pages_them() {
    let Some(py) = pyenv_python() else {
        return airgap_tests::skip("no CPython 3.11 installation (cargo xtask setup builds one)");
    };
    let dir = tempdir();
    let config = dir.path().join("airgap.toml");
    std::fs::write(
        &config,
        format!(
            "[bundle]\nname = \"p\"\n[sources.conda]\nprefix = \"{}\"\n\
             exclude = [\"lib/python3.11/site-packages/*\", \"lib/python3.11/test\", \"/include\", \"/share\", \"lib/libpython3.11.a\", \"**/__pycache__\"]\n",
            py.display()
        ),
    )
    .expect("write config");
    let done = run(airgap()
        .env("AIRGAP_NO_PROGRESS", "true")
        .arg("--plugin-dir")
        .arg(build_dir())
        .args(["-v", "bundle", "--no-check", "-c"])
        .arg(&config)
        .arg("-o")
        .arg(dir.path().join("p.tar.gz")))
    .success();
    let line = done
        .stderr
        .lines()
        .find(|l| l.contains("links of the earlier files"))
        .unwrap_or_else(|| panic!("syslibs said nothing of its earlier files: {}", done.stderr));
    assert!(
        line.contains("(paged from the host; 0 in the request)"),
        "{line}"
    );
}
