//! The `files` source plugin.
