//! Minimal Debian root filesystems to run things in "a machine that has nothing".
//!
//! The air-gapped target in airgap's tests is a `debootstrap --variant=minbase` root: Debian's
//! essential packages and nothing else (no Python, no libssl3, libsqlite3, libgomp, libpq...).
//! `bookworm` has glibc 2.36 like the build machine; `bullseye` has glibc 2.31, an older target;
//! `trixie` has glibc 2.41.
//!
//! Cost: the first use of a suite on a machine runs debootstrap (about a minute and ~200 MB
//! from Debian's mirror) and caches the root as an uncompressed tarball under
//! `<target dir>/test-cache/debian-<suite>-minbase.tar` ([`cache_tarball`]); builds are
//! serialized across test processes with `flock`. Each [`DebianRoot::new`] then extracts that
//! tarball into a fresh temp dir (a second or two), so tests can write into their root
//! freely and in parallel. `debootstrap` is installed with apt-get when missing.
//!
//! Running in the root: [`DebianRoot::run`] runs a shell script as
//! `unshare --mount --net --pid --fork --mount-proc=ROOT/proc chroot ROOT env -i PATH=/usr/bin:/bin
//! HOME=/root sh -c SCRIPT`: a private mount and pid namespace with its own `/proc` (the loader
//! needs `/proc/self/exe` to expand an executable's `$ORIGIN`), **no network** (only a down
//! loopback), and nothing of the build machine's environment (the host's `PIP_*`, `PATH`, `LD_LIBRARY_PATH` do not leak in).
//! Needs root (tests run as root here and in CI).
//!
//! ```no_run
//! use airgap_tests::rootfs::{DebianRoot, Suite};
//! let root = DebianRoot::new(Suite::Bookworm);
//! root.copy_in(std::path::Path::new("/tmp/bundle"), "/opt/app");
//! let done = root.run("/opt/app/bin/python3 -c 'import ssl'");
//! assert_eq!(done.code, Some(0), "{}", done.stderr);
//! ```

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::{run, target_dir, Done};

/// A Debian release to bootstrap.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Suite {
    /// Debian 12, glibc 2.36 (the build machine's).
    Bookworm,
    /// Debian 11, glibc 2.31: an older target.
    Bullseye,
    /// Debian 13, glibc 2.41: a newer target.
    Trixie,
}

impl Suite {
    /// The suite's codename.
    pub fn name(self) -> &'static str {
        match self {
            Suite::Bookworm => "bookworm",
            Suite::Bullseye => "bullseye",
            Suite::Trixie => "trixie",
        }
    }

    /// Its glibc version.
    pub fn glibc(self) -> &'static str {
        match self {
            Suite::Bookworm => "2.36",
            Suite::Bullseye => "2.31",
            Suite::Trixie => "2.41",
        }
    }
}

/// Debian's mirror (the one package registry the build machines reach).
const MIRROR: &str = "http://deb.debian.org/debian";

/// The cached tarball of a suite's minbase root; built on first use.
pub fn cache_tarball(suite: Suite) -> PathBuf {
    cache_tarball_with(suite, &[])
}

/// The cached tarball of a suite's minbase root with the Debian packages `include` (and what
/// they depend on) installed too, e.g. bullseye's own `python3` as an old target Python.
pub fn cache_tarball_with(suite: Suite, include: &[&str]) -> PathBuf {
    let dir = target_dir().join("test-cache");
    std::fs::create_dir_all(&dir).expect("create test-cache dir");
    let flavour = if include.is_empty() {
        "minbase".to_string()
    } else {
        format!("minbase+{}", include.join("+"))
    };
    let include_arg = if include.is_empty() {
        String::new()
    } else {
        format!("--include={}", include.join(","))
    };
    let tarball = dir.join(format!("debian-{}-{flavour}.tar", suite.name()));
    if tarball.exists() {
        return tarball;
    }
    ensure_debootstrap();
    let lock = dir.join(format!("debian-{}-{flavour}.lock", suite.name()));
    let staging = dir.join(format!("debian-{}-{flavour}-staging", suite.name()));
    // flock serializes builds between test binaries; the check inside the lock makes the
    // losers reuse the winner's tarball.
    let script = format!(
        r#"set -e
if [ -e "{tar}" ]; then exit 0; fi
rm -rf "{staging}"
debootstrap --variant=minbase {include_arg} {suite} "{staging}" {mirror} > "{staging}.log" 2>&1 || {{ tail -20 "{staging}.log" >&2; exit 1; }}
tar -C "{staging}" -cf "{tar}.tmp" .
mv "{tar}.tmp" "{tar}"
rm -rf "{staging}"
"#,
        tar = tarball.display(),
        staging = staging.display(),
        suite = suite.name(),
        mirror = MIRROR,
    );
    run(Command::new("flock").arg(&lock).args(["sh", "-c", &script])).success();
    tarball
}

fn ensure_debootstrap() {
    if Path::new("/usr/sbin/debootstrap").exists() {
        return;
    }
    let done = run(Command::new("apt-get")
        .args(["install", "-y", "-q", "debootstrap"])
        .env("DEBIAN_FRONTEND", "noninteractive"));
    if done.code != Some(0) {
        run(Command::new("apt-get").args(["update", "-q"]));
        run(Command::new("apt-get")
            .args(["install", "-y", "-q", "debootstrap"])
            .env("DEBIAN_FRONTEND", "noninteractive"))
        .success();
    }
}

/// A fresh, writable copy of a minimal Debian root, removed when dropped.
pub struct DebianRoot {
    dir: tempfile::TempDir,
    suite: Suite,
}

impl DebianRoot {
    /// Extract the cached root of `suite` (building the cache first if needed).
    pub fn new(suite: Suite) -> DebianRoot {
        DebianRoot::with_packages(suite, &[])
    }

    /// Like [`DebianRoot::new`], with the Debian packages `include` installed too (see
    /// [`cache_tarball_with`]).
    pub fn with_packages(suite: Suite, include: &[&str]) -> DebianRoot {
        let tarball = cache_tarball_with(suite, include);
        let dir = tempfile::Builder::new()
            .prefix(&format!("airgap-root-{}-", suite.name()))
            .tempdir()
            .expect("create temp dir for the root");
        run(Command::new("tar")
            .arg("-C")
            .arg(dir.path())
            .arg("-xf")
            .arg(&tarball))
        .success();
        DebianRoot { dir, suite }
    }

    /// The root's directory on the build machine.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// The suite it was made from.
    pub fn suite(&self) -> Suite {
        self.suite
    }

    /// A path inside the root (`/opt/x`) as a path on the build machine.
    pub fn host_path(&self, inside: &str) -> PathBuf {
        self.path().join(inside.trim_start_matches('/'))
    }

    /// Copy a file or a tree from the build machine to `dest` inside the root (`cp -a`:
    /// links, modes kept). Parent dirs are created.
    pub fn copy_in(&self, src: &Path, dest: &str) {
        let target = self.host_path(dest);
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent).expect("create parent in root");
        }
        run(Command::new("cp").arg("-a").arg(src).arg(&target)).success();
    }

    /// A command that runs `script` with `sh -c` inside the root, with no network and an
    /// empty environment (`PATH=/usr/bin:/bin`, `HOME=/root`). Add variables with
    /// [`DebianRoot::run_env`].
    pub fn command(&self, script: &str, env: &[(&str, &str)]) -> Command {
        let mut cmd = Command::new("unshare");
        // A real target has /proc: the loader needs /proc/self/exe for an executable's
        // $ORIGIN. A new pid namespace gets its own /proc, mounted inside the root.
        cmd.args(["--mount", "--net", "--pid", "--fork"])
            .arg(format!(
                "--mount-proc={}",
                self.host_path("/proc").display()
            ))
            .arg("chroot")
            .arg(self.path())
            .args([
                "env",
                "-i",
                "PATH=/usr/bin:/bin",
                "HOME=/root",
                "LANG=C.UTF-8",
            ]);
        for (k, v) in env {
            cmd.arg(format!("{k}={v}"));
        }
        cmd.args(["sh", "-c", script]);
        cmd
    }

    /// Run `script` inside the root (see [`DebianRoot::command`]).
    pub fn run(&self, script: &str) -> Done {
        run(&mut self.command(script, &[]))
    }

    /// Run `script` inside the root with extra environment variables.
    pub fn run_env(&self, script: &str, env: &[(&str, &str)]) -> Done {
        run(&mut self.command(script, env))
    }
}

/// True when this machine can run the rootfs tests (root, unshare, chroot); tests can
/// skip with a message otherwise.
pub fn supported() -> bool {
    let uid = run(Command::new("id").arg("-u")).stdout;
    uid.trim() == "0"
        && Path::new("/usr/bin/unshare").exists()
        && Path::new("/usr/sbin/chroot").exists()
}
