//! The integration tests of airgap, one test binary (as uv and ripgrep do): the real CLI, real
//! plugins, real Pythons, real ELF files. One module per area; shared support in `tests/src`
//! (the `airgap_tests` crate) and the two `*_support` modules here.

#![allow(clippy::unwrap_used)]

mod archive_build;
mod archive_cli;
mod archive_differential;
mod archive_faults;
mod archive_hostile;
mod archive_streamed;
mod archive_unpack;
mod bounded_memory;
mod check_loader;
mod check_reader;
mod check_target;
mod check_wheelhouse;
mod cli_output;
mod conda_env;
mod conda_errors;
mod conda_python;
mod conda_shebang;
mod conformance;
mod crypto;
mod delta;
mod e2e;
mod faults_bundle;
mod hostile_cli;
mod house;
mod inspect_schema;
mod patterns;
mod pip_cli;
mod pip_plugin;
mod plugin_pages;
mod plugins_host;
mod probe_target;
mod report;
mod run_steps;
mod sbom;
mod seal_race;
mod seal_support;
mod self_test;
mod selfx;
mod signals;
mod signing;
mod sparse_unpack;
mod syslibs_check;
mod syslibs_cli;
mod syslibs_config;
mod syslibs_extensions;
mod syslibs_python;
mod syslibs_support;
mod terminal;
mod verify_steps;
mod volumes;
