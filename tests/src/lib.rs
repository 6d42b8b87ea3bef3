//! Test support: paths to built binaries, temp dirs, helpers to run the real CLI.
