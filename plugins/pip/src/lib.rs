//! The `pip` source plugin.
