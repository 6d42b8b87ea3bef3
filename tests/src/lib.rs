//! Test support for airgap's integration tests: where the built binaries and plugins are, temp
//! dirs, and running the real CLI.
//!
//! The tests run the real `airgap` binary and the real plugin libraries. They must be built
//! first: `cargo xtask test` does that (it runs `cargo build --workspace` before the tests).

// Test support panics with a message on any failure, like the tests it serves.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub mod archive;

pub mod conda;

pub mod conformance;
pub mod python;
pub mod rootfs;
pub mod schema;

pub use python::skip;

/// The workspace root.
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

/// The cargo target directory (honours `CARGO_TARGET_DIR`).
pub fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => {
            let dir = PathBuf::from(dir);
            if dir.is_absolute() {
                dir
            } else {
                workspace_root().join(dir)
            }
        }
        None => workspace_root().join("target"),
    }
}

/// The directory with the debug build of the binaries and plugin libraries.
pub fn build_dir() -> PathBuf {
    target_dir().join("debug")
}

/// Path of a built binary of the workspace (`airgap`, `airgap-unpack`).
pub fn bin(name: &str) -> PathBuf {
    let path = build_dir().join(name);
    assert!(
        path.exists(),
        "{} is not built: run `cargo xtask test` (or `cargo build --workspace` first)",
        path.display()
    );
    path
}

/// Path of a built plugin library by crate name (`airgap-plugin-conda` -> `libairgap_plugin_conda.so`).
pub fn cdylib(crate_name: &str) -> PathBuf {
    let path = build_dir().join(format!("lib{}.so", crate_name.replace('-', "_")));
    assert!(
        path.exists(),
        "{} is not built: run `cargo xtask test` (or `cargo build --workspace` first)",
        path.display()
    );
    path
}

/// A command for the real `airgap` binary with a clean, predictable environment: no progress
/// bars, no plugin path or active environment from the caller, the bundled unpacker found
/// beside the binary. Plugins are discovered as a user's would be (beside the binary); add
/// [`with_build_plugins`] to name the build directory explicitly.
pub fn airgap() -> Command {
    let mut cmd = Command::new(bin("airgap"));
    cmd.env("AIRGAP_NO_PROGRESS", "1")
        .env_remove("AIRGAP_PLUGIN_PATH")
        .env_remove("CONDA_PREFIX")
        .env_remove("VIRTUAL_ENV")
        .env_remove("AIRGAP_UNPACKER")
        .env("XDG_DATA_HOME", "/nonexistent-airgap-test-data");
    cmd
}

/// [`airgap`] with `--plugin-dir` naming the build directory first.
pub fn with_build_plugins(mut cmd: Command) -> Command {
    cmd.arg("--plugin-dir").arg(build_dir());
    cmd
}

/// Run a command and return its output; stdout and stderr as text.
pub fn run(cmd: &mut Command) -> Done {
    let output = cmd
        .output()
        .unwrap_or_else(|e| panic!("could not run {cmd:?}: {e}"));
    Done::from(output)
}

/// A finished command.
#[derive(Debug)]
pub struct Done {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl From<Output> for Done {
    fn from(o: Output) -> Done {
        Done {
            code: o.status.code(),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }
}

impl Done {
    /// Panic with both streams unless the command succeeded.
    #[track_caller]
    pub fn success(self) -> Done {
        assert_eq!(
            self.code,
            Some(0),
            "command failed\n--- stdout\n{}\n--- stderr\n{}",
            self.stdout,
            self.stderr
        );
        self
    }

    /// Panic with both streams unless the command failed.
    #[track_caller]
    pub fn failure(self) -> Done {
        assert_ne!(
            self.code,
            Some(0),
            "command succeeded but should have failed\n--- stdout\n{}\n--- stderr\n{}",
            self.stdout,
            self.stderr
        );
        self
    }
}

/// A fresh temporary directory, removed when dropped.
pub fn tempdir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("airgap-test-")
        .tempdir()
        .expect("create temp dir")
}
