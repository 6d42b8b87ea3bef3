//! airgap-core
