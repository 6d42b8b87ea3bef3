//! The `syslibs` source plugin.
