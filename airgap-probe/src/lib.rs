//! What a target machine offers a bundle, gathered on that machine.
//!
//! The check can only be as right as what it knows of the target. This crate reads the facts
//! on the machine it runs on ([`probe`]): architecture and x86-64 level, kernel, the glibc,
//! libstdc++ and libgcc_s the loader finds, every library the loader finds by name with the
//! symbol versions it defines, the Pythons on `PATH`, the NVIDIA driver, free space and
//! `noexec` mounts. It writes them as a [`Profile`] (TOML or JSON), as a short checked
//! [`code`] a person can read off a screen and retype where no file can come back, and as a
//! POSIX sh [`script`] that gathers the same facts where nothing is installed.
//!
//! It links no plugin API and nothing heavy: the static unpacker carried in every bundle
//! (`airgap-unpack --probe`) uses it. The ELF reading and the `ld.so.cache` parser are
//! `airgap-elf`'s (goblin, no C). Never prints.
#![deny(missing_docs)]

pub mod catalog;
pub mod code;
mod gather;
mod profile;
pub mod script;

pub use gather::{cpu_level, probe, ProbeOptions, PYTHON_SNIPPET};
pub use profile::{Library, Place, Presence, Profile, Python, Source, FORMAT};

/// Everything that can go wrong reading a profile or a code.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A profile file that is not one.
    #[error("not a target profile: {reason}")]
    Profile {
        /// What is wrong.
        reason: String,
    },
    /// A code that does not read.
    #[error("not a valid target code: {reason}")]
    Code {
        /// What is wrong.
        reason: String,
    },
}

impl Error {
    /// Advice for the user, printed as a `help:` line by the CLI.
    pub fn help(&self) -> Option<String> {
        match self {
            Error::Profile { .. } => Some(
                "write the file with `airgap probe --out FILE` (or `NAME/unpack --probe`) on the target"
                    .into(),
            ),
            Error::Code { .. } => Some(
                "compare the code with the target's screen character by character, or run the probe again there"
                    .into(),
            ),
        }
    }
}

/// The facts of a profile and its code, as lines for a person (the binaries print them).
pub fn summary(p: &Profile) -> String {
    let or_none = |v: &Option<String>| v.clone().unwrap_or_else(|| "none found".into());
    let mut out = Vec::new();
    let level = p
        .cpu_level
        .map(|l| format!(", x86-64-v{l}"))
        .unwrap_or_default();
    out.push(format!(
        "  arch           {}{level}",
        p.arch.as_deref().unwrap_or("unknown")
    ));
    out.push(format!("  kernel         {}", or_none(&p.kernel)));
    out.push(format!("  glibc          {}", or_none(&p.glibc)));
    out.push(format!(
        "  libstdc++      GLIBCXX {}, CXXABI {}",
        or_none(&p.glibcxx),
        or_none(&p.cxxabi)
    ));
    out.push(format!("  libgcc_s       GCC {}", or_none(&p.gcc)));
    out.push(format!("  NVIDIA driver  {}", or_none(&p.nvidia_driver)));
    if p.pythons.is_empty() {
        out.push("  pythons        none on PATH".into());
    }
    for (i, py) in p.pythons.iter().enumerate() {
        let label = if i == 0 { "pythons" } else { "" };
        let path = py
            .path
            .as_deref()
            .map(|p| format!(" ({p})"))
            .unwrap_or_default();
        out.push(format!(
            "  {label:<14} {} {} {}{path}",
            py.version, py.implementation, py.abi
        ));
    }
    let names = catalog::catalog(p.catalog.unwrap_or(catalog::CATALOG)).unwrap_or_default();
    let missing: Vec<&str> = names
        .iter()
        .copied()
        .filter(|n| p.presence(n) != Presence::Present)
        .collect();
    let found = match p.source {
        Source::Probe => format!("{} found by the loader; ", p.libraries.len()),
        Source::Code => String::new(),
    };
    out.push(format!(
        "  libraries      {found}catalog {}: {} of {}",
        p.catalog.unwrap_or(catalog::CATALOG),
        names.len() - missing.len(),
        names.len()
    ));
    if !missing.is_empty() {
        out.push(format!("  lacking        {}", missing.join(" ")));
    }
    for (label, place) in [("TMPDIR", &p.tmpdir), ("DEST", &p.dest)] {
        let Some(pl) = place else { continue };
        let free = pl
            .free_mib
            .map(|f| format!("{f} MiB free"))
            .unwrap_or_else(|| "free space unknown".into());
        let exec = match pl.noexec {
            Some(true) => ", noexec: programs cannot run there",
            Some(false) => "",
            None => ", noexec unknown",
        };
        let path = pl
            .path
            .as_deref()
            .map(|p| format!("{p}: "))
            .unwrap_or_default();
        out.push(format!("  {label:<14} {path}{free}{exec}"));
    }
    let code = code::encode(p);
    out.push(format!("code ({} characters): {code}", code.len()));
    out.join("\n")
}
