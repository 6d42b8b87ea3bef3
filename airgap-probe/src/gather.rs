//! Reading the facts on the machine this runs on.
//!
//! Every fact is read the way the loader or the shell script would read it (files under
//! `/proc`, `/etc/ld.so.cache`, the libraries themselves), not from this binary: the static
//! unpacker has no glibc of its own to ask.

use std::collections::BTreeSet;
use std::ffi::CStr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use airgap_elf::ldcache::{FLAG_REQUIRED_MASK, FLAG_X8664_LIB64};
use airgap_elf::loader::Loader;
use airgap_elf::target::RootLibs;
use airgap_elf::ElfClass;

use crate::{Library, Place, Profile, Python, Source, FORMAT};

/// What to probe besides the machine itself.
#[derive(Debug, Clone, Default)]
pub struct ProbeOptions {
    /// The directory the bundle will be unpacked into (or its parent, when it does not
    /// exist yet): free space, `noexec`.
    pub dest: Option<PathBuf>,
}

/// The Python statement every probe (this crate and the sh script) runs with `-I -S -c`: one
/// line `MAJOR MINOR MICRO IMPLEMENTATION ABIFLAGS`.
pub const PYTHON_SNIPPET: &str = "import sys; v = sys.version_info; print('%d %d %d %s %s' % (v[0], v[1], v[2], sys.implementation.name, getattr(sys, 'abiflags', '')))";

/// The libraries' directories the loader searches after its cache (Debian's default dirs,
/// as `airgap_elf::loader::Loader` has them): only where names to look up come from; each
/// name is then resolved by that loader.
const DEFAULT_DIRS: &[&str] = &[
    "/lib/x86_64-linux-gnu",
    "/usr/lib/x86_64-linux-gnu",
    "/lib",
    "/usr/lib",
];

/// Probe this machine.
pub fn probe(options: &ProbeOptions) -> Profile {
    let (arch, kernel) = uname();
    let mut p = Profile {
        format: FORMAT,
        source: Source::Probe,
        arch,
        kernel,
        cpu_level: cpu_level(),
        ..Profile::default()
    };
    if let Ok(root) = RootLibs::read(Path::new("/")) {
        p.glibc = root.glibc.as_ref().map(ToString::to_string);
        let v = |prefix: &str| root.versions.max(prefix).map(ToString::to_string);
        p.glibcxx = v("GLIBCXX");
        p.cxxabi = v("CXXABI");
        p.gcc = v("GCC");
    }
    let loader = Loader::for_root(Path::new("/"));
    p.libraries = libraries(&loader);
    p.nvidia_kernel_module = std::fs::read_to_string("/proc/driver/nvidia/version")
        .ok()
        .and_then(|t| nvidia_module_version(&t));
    p.nvidia_driver = p
        .libraries
        .iter()
        .find(|l| l.soname == "libcuda.so.1")
        .and_then(|l| l.path.as_deref())
        .and_then(libcuda_version)
        .or_else(|| p.nvidia_kernel_module.clone());
    p.pythons = pythons();
    let tmp = std::env::var_os("TMPDIR")
        .filter(|t| !t.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/tmp"));
    p.tmpdir = Some(place(&tmp));
    p.dest = options.dest.as_deref().map(place);
    p
}

/// `uname -m` and `uname -r`.
fn uname() -> (Option<String>, Option<String>) {
    // SAFETY: utsname is plain old data; uname fills it and returns 0 on success.
    let mut u: libc::utsname = unsafe { std::mem::zeroed() };
    if unsafe { libc::uname(&mut u) } != 0 {
        return (None, None);
    }
    let text = |field: &[libc::c_char]| {
        // SAFETY: uname NUL-terminates every field within its array.
        let c = unsafe { CStr::from_ptr(field.as_ptr()) };
        Some(c.to_string_lossy().into_owned()).filter(|s| !s.is_empty())
    };
    (text(&u.machine), text(&u.release))
}

/// The x86-64 micro-architecture level of this CPU (1..=4), from the `flags` line of
/// `/proc/cpuinfo` (what the sh script reads too); `None` on other machines.
pub fn cpu_level() -> Option<u8> {
    let info = std::fs::read_to_string("/proc/cpuinfo").ok()?;
    let flags = info
        .lines()
        .find(|l| l.starts_with("flags"))?
        .split_once(':')?
        .1;
    level_of(&flags.split_whitespace().collect::<BTreeSet<_>>())
}

/// The levels of the x86-64 psABI, in the names `/proc/cpuinfo` uses (`pni` is SSE3,
/// `abm` is LZCNT).
fn level_of(flags: &BTreeSet<&str>) -> Option<u8> {
    const V1: &[&str] = &["lm", "cmov", "cx8", "fpu", "fxsr", "mmx", "sse", "sse2"];
    const V2: &[&str] = &[
        "cx16", "lahf_lm", "popcnt", "pni", "sse4_1", "sse4_2", "ssse3",
    ];
    const V3: &[&str] = &[
        "avx", "avx2", "bmi1", "bmi2", "f16c", "fma", "abm", "movbe", "xsave",
    ];
    const V4: &[&str] = &["avx512f", "avx512bw", "avx512cd", "avx512dq", "avx512vl"];
    let has = |set: &[&str]| set.iter().all(|f| flags.contains(f));
    if !has(V1) {
        return None;
    }
    Some(1 + [V2, V3, V4].iter().take_while(|s| has(s)).count() as u8)
}

/// Every library the loader finds by name without a search path: the names of its cache
/// (64-bit x86 entries) and of the files in its default dirs, each resolved by the loader
/// model. A file found by a name that is not its soname counts too: the loader opens it by
/// that name (Debian's `libbz2.so.1` link, whose soname is `libbz2.so.1.0`, serves RHEL
/// builds that need `libbz2.so.1`).
fn libraries(loader: &Loader) -> Vec<Library> {
    let mut names = BTreeSet::new();
    if let Some(cache) = loader.cache() {
        for e in cache.entries() {
            if e.flags & FLAG_REQUIRED_MASK == FLAG_X8664_LIB64 {
                names.insert(e.name.clone());
            }
        }
    }
    for dir in DEFAULT_DIRS {
        let Ok(rd) = std::fs::read_dir(dir) else {
            continue;
        };
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if (name.starts_with("lib") || name.starts_with("ld-")) && name.contains(".so") {
                names.insert(name);
            }
        }
    }
    let mut out = Vec::new();
    for name in names {
        let Some(found) = loader.resolve_system(&name, ElfClass::Elf64, 62) else {
            continue;
        };
        out.push(Library {
            soname: name,
            path: Some(found.path.to_string_lossy().into_owned()),
            versions: found.elf.version_defs.clone(),
        });
    }
    out
}

/// `NVRM version: NVIDIA UNIX x86_64 Kernel Module  535.104.05  Sat Aug 19 ...` -> 535.104.05.
fn nvidia_module_version(text: &str) -> Option<String> {
    let line = text.lines().find(|l| l.starts_with("NVRM version"))?;
    let rest = line.split("Kernel Module").nth(1)?;
    let v = rest.split_whitespace().next()?;
    v.chars()
        .all(|c| c.is_ascii_digit() || c == '.')
        .then(|| v.to_owned())
}

/// libcuda.so.1 is a link to `libcuda.so.VERSION`: the user-space driver's version.
fn libcuda_version(path: &str) -> Option<String> {
    let real = std::fs::canonicalize(path).ok()?;
    let name = real.file_name()?.to_str()?;
    let v = name.strip_prefix("libcuda.so.")?;
    (v.contains('.') && v.chars().all(|c| c.is_ascii_digit() || c == '.')).then(|| v.to_owned())
}

/// The Pythons on `PATH`: in each dir, in name order, `python`, `pythonN`, `pythonN.M`; one
/// per real file.
fn pythons() -> Vec<Python> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let mut seen = BTreeSet::new();
    let mut out = Vec::new();
    for dir in std::env::split_paths(&path) {
        let Ok(rd) = std::fs::read_dir(&dir) else {
            continue;
        };
        let mut names: Vec<String> = rd
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| is_python_name(n))
            .collect();
        names.sort();
        for name in names {
            let exe = dir.join(&name);
            let Ok(real) = std::fs::canonicalize(&exe) else {
                continue;
            };
            if !seen.insert(real) {
                continue;
            }
            if let Some(py) = run_python(&exe) {
                out.push(py);
            }
        }
    }
    out
}

/// `python`, `python3`, `python3.11`: what the sh script globs too.
fn is_python_name(name: &str) -> bool {
    let Some(rest) = name.strip_prefix("python") else {
        return false;
    };
    if rest.is_empty() {
        return true;
    }
    let mut it = rest.splitn(2, '.');
    let major = it.next().unwrap_or("");
    let ok_major = major.len() == 1 && major.chars().all(|c| c.is_ascii_digit());
    match it.next() {
        None => ok_major,
        Some(minor) => ok_major && !minor.is_empty() && minor.chars().all(|c| c.is_ascii_digit()),
    }
}

/// Run one interpreter with [`PYTHON_SNIPPET`], for ten seconds at most.
fn run_python(exe: &Path) -> Option<Python> {
    let mut child = Command::new(exe)
        .args(["-I", "-S", "-c", PYTHON_SNIPPET])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    let start = Instant::now();
    loop {
        match child.try_wait() {
            Ok(Some(_)) => break,
            Ok(None) if start.elapsed() < Duration::from_secs(10) => {
                std::thread::sleep(Duration::from_millis(20))
            }
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                return None;
            }
        }
    }
    let out = child.wait_with_output().ok()?;
    if !out.status.success() {
        return None;
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let f: Vec<&str> = text.split_whitespace().collect();
    let (major, minor, micro, implementation) = (f.first()?, f.get(1)?, f.get(2)?, f.get(3)?);
    let flags = f.get(4).copied().unwrap_or("");
    let abi = match *implementation {
        "cpython" => format!("cp{major}{minor}{flags}"),
        _ => String::new(),
    };
    Some(Python {
        path: Some(exe.to_string_lossy().into_owned()),
        version: format!("{major}.{minor}.{micro}"),
        implementation: implementation.to_string(),
        abi,
    })
}

/// Free space and `noexec` of a directory (or of its nearest existing parent).
fn place(path: &Path) -> Place {
    let mut at = path.to_path_buf();
    while !at.exists() {
        match at.parent() {
            Some(p) => at = p.to_path_buf(),
            None => break,
        }
    }
    let real = std::fs::canonicalize(&at).unwrap_or(at);
    Place {
        path: Some(path.to_string_lossy().into_owned()),
        free_mib: free_mib(&real),
        noexec: std::fs::read_to_string("/proc/self/mountinfo")
            .ok()
            .and_then(|m| noexec(&m, &real)),
    }
}

/// Space an unprivileged user may fill (`f_bavail`), MiB.
fn free_mib(path: &Path) -> Option<u64> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).ok()?;
    // SAFETY: statvfs is plain old data; the call fills it and returns 0 on success.
    let mut s: libc::statvfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statvfs(c.as_ptr(), &mut s) } != 0 {
        return None;
    }
    Some((s.f_bavail as u64).saturating_mul(s.f_frsize as u64) / (1024 * 1024))
}

/// Whether the mount holding `path` (the longest mount point above it in `mountinfo`) is
/// mounted `noexec`.
fn noexec(mountinfo: &str, path: &Path) -> Option<bool> {
    let mut best: Option<(usize, bool)> = None;
    for line in mountinfo.lines() {
        let f: Vec<&str> = line.split(' ').collect();
        let (Some(point), Some(options)) = (f.get(4), f.get(5)) else {
            continue;
        };
        let point = unescape_mount(point);
        if !path.starts_with(&point) {
            continue;
        }
        let len = point.len();
        // A later mount on the same point hides the earlier one.
        if best.is_none_or(|(l, _)| len >= l) {
            best = Some((len, options.split(',').any(|o| o == "noexec")));
        }
    }
    best.map(|(_, n)| n)
}

/// `mountinfo` writes space, tab, newline and backslash as `\040`-style octal escapes.
fn unescape_mount(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 3 < b.len() && b[i + 1..i + 4].iter().all(u8::is_ascii_digit) {
            let v = (b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0');
            out.push(v);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_follow_the_psabi() {
        let base = "lm cmov cx8 fpu fxsr mmx sse sse2";
        let v2 = format!("{base} cx16 lahf_lm popcnt pni sse4_1 sse4_2 ssse3");
        let v3 = format!("{v2} avx avx2 bmi1 bmi2 f16c fma abm movbe xsave");
        let v4 = format!("{v3} avx512f avx512bw avx512cd avx512dq avx512vl");
        let level = |s: &str| level_of(&s.split(' ').collect());
        assert_eq!(level(base), Some(1));
        assert_eq!(level(&v2), Some(2));
        assert_eq!(level(&v3), Some(3));
        assert_eq!(level(&v4), Some(4));
        assert_eq!(level(&v3.replace(" avx2", "")), Some(2));
        assert_eq!(level("fpu"), None);
    }

    #[test]
    fn noexec_comes_from_the_nearest_mount() {
        let m = "22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw\n\
                 30 22 0:25 / /tmp rw,nosuid,nodev,noexec shared:5 - tmpfs tmpfs rw\n\
                 31 22 0:26 / /my\\040dir rw - tmpfs tmpfs rw\n";
        assert_eq!(noexec(m, Path::new("/tmp/x")), Some(true));
        assert_eq!(noexec(m, Path::new("/opt")), Some(false));
        assert_eq!(noexec(m, Path::new("/my dir/a")), Some(false));
        assert_eq!(noexec(m, Path::new("/tmpfoo")), Some(false));
    }

    #[test]
    fn driver_versions() {
        let t = "NVRM version: NVIDIA UNIX x86_64 Kernel Module  535.104.05  Sat Aug 19 01:15:15 UTC 2023\nGCC version:  gcc version 12.2.0\n";
        assert_eq!(nvidia_module_version(t).as_deref(), Some("535.104.05"));
        assert_eq!(nvidia_module_version("nothing"), None);
    }

    #[test]
    fn python_names() {
        for ok in ["python", "python3", "python3.11"] {
            assert!(is_python_name(ok), "{ok}");
        }
        for no in [
            "python3.11-config",
            "python3-config",
            "pythonw",
            "python3.",
            "python311",
        ] {
            assert!(!is_python_name(no), "{no}");
        }
    }

    #[test]
    fn this_machine() {
        let p = probe(&ProbeOptions::default());
        assert!(p.glibc.is_some(), "{p:?}");
        assert!(p
            .libraries
            .iter()
            .any(|l| l.soname == "libc.so.6" && l.versions.iter().any(|v| v == "GLIBC_2.17")));
        let back = crate::code::decode(&crate::code::encode(&p)).expect("decode");
        assert_eq!(back, p.code_view());
    }
}
