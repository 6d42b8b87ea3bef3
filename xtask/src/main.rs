//! Build tasks: `cargo xtask <task>` (the alias lives in `.cargo/config.toml`).
//!
//! - `setup`: install what the tests need (from `xtask/setup/`): Debian packages, the tools
//!   venv (`target/tools-venv`), the CPython builds (cached in `~/.cache/airgap-tests/`)
//! - `build [--release]`: the CLI, every plugin, and the static unpacker
//! - `dist`: a relocatable folder `bin/airgap` + `lib/airgap/plugins/*.so` + docs, and its tar.gz
//! - `test [ARGS]`: setup, build, then every test
//! - `ci`: fmt check, clippy `-D warnings`, then `test`
//! - `demo`: the main job on a default example, step by step
//! - `bench`: the archive benchmark against GNU tar
//! - `e2e`: the clean-room workloads in a minimal Debian root, and their table
//! - `delta-study`: what patches or chunking would save in deltas of real upgrades
//! - `conformance`: the check's predictions against the real loader in Debian roots, and the table
//! - `fuzz [--seconds N] [TARGET...]`: the cargo-fuzz targets (nightly), N seconds each
//! - `new-plugin NAME --path DIR`: scaffold an out-of-tree plugin crate

mod bench;
mod conformance;
mod fuzz;
mod pythons;
mod scaffold;
mod summary;
mod tasks;

use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some((task, rest)) = args.split_first() else {
        eprintln!("{}", USAGE);
        return ExitCode::from(2);
    };
    let result = match task.as_str() {
        "setup" => tasks::setup(),
        "build" => tasks::build(rest.iter().any(|a| a == "--release")).map(|_| ()),
        "dist" => tasks::dist(rest),
        "test" => tasks::test(rest),
        "ci" => tasks::ci(rest),
        "demo" => tasks::demo(),
        "bench" => tasks::bench(rest),
        "e2e" => tasks::e2e(rest),
        "delta-study" => tasks::delta_study(),
        "conformance" => conformance::conformance(rest),
        "fuzz" => fuzz::fuzz(rest),
        "new-plugin" => scaffold::new_plugin(rest),
        "help" | "--help" | "-h" => {
            println!("{USAGE}");
            Ok(())
        }
        other => Err(anyhow::anyhow!("unknown task `{other}`\n{USAGE}")),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

const USAGE: &str = "usage: cargo xtask <task>
  setup                      install what the tests need if missing: apt packages, the
                             tools venv, CPython builds (python.txt, cached per machine)
  build [--release]          build the CLI, all plugins and the static unpacker
  dist [--debug] [--out DIR] make dist/airgap-VERSION-x86_64-linux/ and its .tar.gz
  test [-- CARGO TEST ARGS]  setup, build, run every test
  ci                         fmt check, clippy -D warnings, then test
  demo                       the main job on a default example, step by step
  bench                      archive benchmark against GNU tar (a few minutes)
  e2e                        every clean-room workload in a minimal Debian root, and the table
  delta-study                what zstd patches or content-defined chunking would save in
                             deltas of real package upgrades (docs/performance.md)
  conformance                the check against glibc's real loader: the corpus in bookworm,
                             bullseye and trixie roots, and the table (target/conformance/)
  fuzz [--seconds N] [TARGET] run the fuzz targets (manifest, entry_checker, elf,
                             tar_differential), N s each
                             (default 180; needs nightly; installs cargo-fuzz if missing)
  new-plugin NAME --path DIR scaffold an out-of-tree plugin crate";
