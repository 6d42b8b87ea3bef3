//! The `pip` source plugin: the dependency tree as wheels for the target, installed offline.
//!
//! This crate only exports the plugin descriptor; the work is done by [`airgap_pip`] (in
//! `core/`), which tests link directly. See `docs/sources/pip.md`.

pub use airgap_pip::*;

airgap_plugin_api::export_plugin!(
    airgap_pip::PipPlugin,
    name = "pip",
    version = env!("CARGO_PKG_VERSION"),
    stage = airgap_plugin_api::Stage::Packages,
    description = "python packages as wheels for the target, installed offline with a bundled pip"
);
