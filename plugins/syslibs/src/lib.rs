//! The `syslibs` source plugin: the system libraries a bundle's ELF files need, grafted in.
//!
//! Runs last ([`Stage::Finish`]). Asks the loader model (`airgap_elf::model`, the one the
//! check uses) what the ELF files earlier plugins contributed (found by content: the host
//! pages only the ELF files and links to it, plugin ABI 1.1) fail to
//! resolve on the target (the manylinux policy of the target profile, adjusted by
//! `include`/`exclude`), copies the build machine's copy of each into a library dir of the
//! bundle, and asks again until nothing is missing. Every file that needs it gets a patched copy with an
//! `$ORIGIN`-relative `DT_RPATH` (searched before the target's `LD_LIBRARY_PATH`, and
//! inherited by the libraries it loads), returned as a replacing entry.
//!
//! ```toml
//! [sources.syslibs]
//! policy = "manylinux2014"          # default: from [target] (platform tags, then glibc)
//! include = ["libstdc++.so.6"]      # bundle even though the policy assumes it
//! exclude = ["libcuda.so.*"]        # never bundle (globs on the soname)
//! extra = ["/usr/lib/x86_64-linux-gnu/libodbc.so.2"]  # dlopen-only libraries
//! dir = "env/lib/airgap-syslibs"    # default: <python prefix>/lib/airgap-syslibs
//! ```
//!
//! The plugin crate is also an rlib: [`graft`] is the whole algorithm, callable without the
//! host (tests, other tools).

mod dpkg;
mod graft;

pub use graft::{graft, SyslibsConfig};

use airgap_plugin_api::{
    export_plugin, ContributeRequest, Contribution, Host, PluginError, SourcePlugin, Stage,
};

/// The plugin (stateless).
#[derive(Default)]
pub struct Syslibs;

impl SourcePlugin for Syslibs {
    fn contribute(
        &self,
        request: &ContributeRequest,
        host: &Host,
    ) -> Result<Contribution, PluginError> {
        let config: SyslibsConfig = request.config()?;
        graft(request, &config, host)
    }
}

export_plugin!(
    Syslibs,
    name = "syslibs",
    version = env!("CARGO_PKG_VERSION"),
    stage = Stage::Finish,
    description = "system libraries the bundle's ELF files need, with $ORIGIN-relative RPATH"
);
