//! The bundle's own records of what the plugins said: the target, the Python environment,
//! the packages and the install steps, as FORMAT 1 stores them in the manifest.
//!
//! They mirror the plugin API's types of ABI 1.1 field for field, with the same serde
//! representation, so that the bytes of a manifest did not change when the format took its own
//! types. They are separate on purpose: an ABI minor may add a field to the API; the format
//! changes only when [`super::manifest::FORMAT`] does. `airgap-core` converts.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// The machine the bundle was made for.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct TargetProfile {
    /// Full Python version on the target (`3.11.7`).
    pub python: Option<String>,
    /// Python implementation tag (`cp`).
    pub implementation: Option<String>,
    /// Python ABI tag (`cp311`).
    pub abi: Option<String>,
    /// Platform tags, most specific first.
    pub platforms: Vec<String>,
    /// The target's glibc version (`2.17`).
    pub glibc: Option<String>,
    /// Where the bundle was declared to be unpacked (`--dest-prefix`).
    pub prefix: Option<String>,
    /// Machine architecture (`x86_64`).
    pub arch: Option<String>,
    /// What a probe of the target found, when the bundle was checked against one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub system: Option<TargetSystem>,
}

/// The target's system libraries, as a probe found them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct TargetSystem {
    /// `probe` or `code`.
    pub source: String,
    /// Every soname the target's loader finds, with the symbol versions it defines.
    pub libraries: BTreeMap<String, Vec<String>>,
    /// Highest symbol version per prefix of libc, libstdc++ and libgcc_s.
    pub versions: BTreeMap<String, String>,
    /// The NVIDIA driver version, when the target has one.
    pub nvidia_driver: Option<String>,
}

/// A package in the bundle.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Package {
    /// Unique id within the bundle (`conda:numpy-1.26.4-py311h...`).
    pub id: String,
    /// Package name.
    pub name: String,
    /// Package version.
    pub version: String,
    /// `conda`, `wheel`, `system`, `python`, or a plugin's own kind.
    pub kind: String,
    /// Where it came from: channel, index URL, library path.
    pub origin: String,
    /// sha256 of the package artifact, when there is one.
    pub sha256: Option<String>,
    /// Licence, when known.
    pub license: Option<String>,
    /// Package URL, when the source knows one (the SBOM's identity of the package).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub purl: Option<String>,
}

/// The Python environment the bundle carries.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct PythonEnvironment {
    /// The environment's directory inside the bundle (`env`).
    pub prefix: String,
    /// The interpreter inside the bundle (`env/bin/python3`).
    pub executable: String,
    /// The environment's prefix on the build machine.
    pub source_prefix: PathBuf,
    /// The interpreter on the build machine that stood for the bundled one.
    pub source_executable: PathBuf,
    /// Full version (`3.11.7`).
    pub version: String,
    /// Implementation tag (`cp`).
    pub implementation: String,
    /// ABI tag (`cp311`).
    pub abi: String,
    /// Platform tags the interpreter accepts, most specific first.
    pub platforms: Vec<String>,
    /// site-packages inside the bundle.
    pub site_packages: String,
}

/// A step run on the target after unpacking; `{dest}` and `{python}` in its strings stand
/// for the unpacked top folder and the interpreter given with `--python`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "step")]
pub enum InstallStep {
    /// Replace the build machine's prefix by where `root` ended up, in `files`.
    RewritePrefix {
        /// The prefix as written in the files.
        old_prefix: String,
        /// The directory inside the bundle that `old_prefix` stands for.
        root: String,
        /// Files to rewrite.
        files: Vec<PrefixFile>,
    },
    /// Run a program: a path inside the bundle or a bare name on the target's `PATH`.
    Run {
        /// What this step does, for the user.
        description: String,
        /// The program.
        program: String,
        /// Its arguments.
        #[serde(default)]
        args: Vec<String>,
        /// Extra environment variables.
        #[serde(default)]
        env: BTreeMap<String, String>,
    },
}

/// A file that holds a prefix.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PrefixFile {
    /// Path inside the bundle.
    pub path: String,
    /// How to rewrite it.
    pub mode: PrefixMode,
    /// Binary files: the longest prefix, in bytes, that its slots have room for, when known;
    /// unset, no longer than the old prefix.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capacity: Option<usize>,
}

impl PrefixFile {
    /// A file rewritten in `mode`, with no recorded capacity.
    pub fn new(path: impl Into<String>, mode: PrefixMode) -> PrefixFile {
        PrefixFile {
            path: path.into(),
            mode,
            capacity: None,
        }
    }

    /// Record the capacity of the file's prefix slots.
    pub fn with_capacity(mut self, capacity: usize) -> PrefixFile {
        self.capacity = Some(capacity);
        self
    }
}

/// How a prefix is rewritten in a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PrefixMode {
    /// Every occurrence; the file may change size.
    Text,
    /// C strings, NUL-padded in place; the file never changes size.
    Binary,
}
