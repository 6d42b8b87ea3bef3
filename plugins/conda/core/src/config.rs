//! The `[sources.conda]` table.

use serde::Deserialize;

/// What to do with editable installs (`pip install -e`), whose code lives outside the
/// environment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Editable {
    /// Refuse to bundle, naming each editable install and where it points.
    #[default]
    Error,
    /// Copy the code the editable install points to into site-packages, as a regular install.
    Bundle,
}

/// The `[sources.conda]` table. Every key is documented in `docs/sources/conda.md`.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// The environment to bundle; relative to the configuration file's directory. Default: the
    /// active environment (`CONDA_PREFIX`, then `VIRTUAL_ENV`).
    pub prefix: Option<String>,
    /// Folder inside the bundle for the environment.
    pub dest: String,
    /// Glob patterns, relative to the prefix, of paths to leave out.
    pub exclude: Vec<String>,
    /// Editable installs: refuse (`error`) or copy their code (`bundle`).
    pub editable: Editable,
    /// For venvs: folder inside the bundle for the base Python installation.
    pub base_dest: String,
    /// For venvs: glob patterns, relative to the base installation, of paths to leave out.
    pub base_exclude: Vec<String>,
    /// Keep the standard library's own test suite (`lib/pythonX.Y/test`, ~120 MB).
    pub stdlib_tests: bool,
    /// Also list ELF files that are in no conda package and hold the prefix as a C string
    /// for in-place binary rewriting. Off by default: search paths are patched instead, and
    /// rewriting strings in `libpython` breaks `sys.version`.
    pub rewrite_elf_strings: bool,
    /// Write an `activate` script for sh/bash at the environment's root in the bundle.
    pub activate: bool,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            prefix: None,
            dest: "env".into(),
            exclude: Vec::new(),
            editable: Editable::Error,
            base_dest: "python".into(),
            base_exclude: Vec::new(),
            stdlib_tests: true,
            rewrite_elf_strings: false,
            activate: true,
        }
    }
}
