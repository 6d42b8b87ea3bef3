//! The airgap host: reads `airgap.toml`, discovers and loads source plugins, runs them stage by
//! stage, feeds what they name into the archive builder, and checks the result against the
//! target before anything is written.
//!
//! Architecture invariant: this is the only crate that loads libraries. It never prints.

pub mod check;
mod error;

pub use error::Error;
