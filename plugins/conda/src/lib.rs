//! The `conda` source plugin: brings a Python environment that runs at any path.
//!
//! This crate only exports the plugin descriptor; the work is done by [`airgap_conda`] (in
//! `core/`), which tests link directly. See `docs/sources/conda.md`.

pub use airgap_conda::*;

airgap_plugin_api::export_plugin!(
    airgap_conda::CondaPlugin,
    name = "conda",
    version = env!("CARGO_PKG_VERSION"),
    stage = airgap_plugin_api::Stage::Environment,
    description = "conda environments, venvs and Python installations, made to run at any path"
);
