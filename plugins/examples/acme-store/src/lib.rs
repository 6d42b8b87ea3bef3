//! Example in-house plugin.
