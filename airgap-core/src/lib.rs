//! The airgap host: reads `airgap.toml`, discovers and loads source plugins, runs them stage by
//! stage, feeds what they name into the archive builder, and checks the result against the
//! target before anything is written.
//!
//! Architecture invariant: this is the only crate that loads libraries. It never prints.

pub mod bundle;
pub mod check;
pub mod config;
mod convert;
mod earlier;
mod error;
pub mod plugin;
pub mod registry;
pub mod target;

pub use bundle::{bundle, find_unpacker, plan_bundle, BundleOptions, BundleReport, Planned};
pub use config::Config;
pub use earlier::Earlier;
pub use error::Error;
pub use plugin::Plugin;
pub use registry::Registry;
