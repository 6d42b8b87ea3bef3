//! The `conda` source plugin.
