//! The `conda` source plugin: brings a Python environment that runs at any path.
//!
//! It takes a conda environment (`conda-meta/`), a venv (`pyvenv.cfg`, bundled with the base
//! installation it points to) or a plain Python installation (`bin/python3` and
//! `lib/pythonX.Y`), and decides:
//! - which files go into the bundle (conda's package records, plus files no package owns);
//! - which files hold the build machine's prefix, and how the archive engine rewrites them at
//!   unpack ([`InstallStep::RewritePrefix`](airgap_plugin_api::InstallStep), text or binary);
//! - which changes are better made at bundle time, on copies in the work directory: RPATH and
//!   RUNPATH entries into the prefix become `$ORIGIN`-relative, and Python shebangs find their
//!   interpreter relative to the script;
//! - the Python facts later plugins need ([`PythonEnvironment`](airgap_plugin_api::PythonEnvironment)).
//!
//! The source environment is only ever read. See `docs/sources/conda.md`.
//!
//! Architecture invariant: this crate exports no plugin descriptor (`airgap-plugin-conda`,
//! the cdylib beside it, does), so tests and other binaries can link it beside other plugins.

use airgap_plugin_api::{ContributeRequest, Contribution, Host, PluginError, SourcePlugin};

pub mod activate;
pub mod conda_meta;
pub mod config;
pub mod editable;
pub mod paths;
pub mod plan;
pub mod prefix;
pub mod python;
pub mod search_path;
pub use airgap_shebang as shebang;

/// The plugin.
#[derive(Debug, Default)]
pub struct CondaPlugin;

impl SourcePlugin for CondaPlugin {
    fn contribute(
        &self,
        request: &ContributeRequest,
        host: &Host,
    ) -> Result<Contribution, PluginError> {
        plan::contribute(request, host)
    }
}
