//! The profile: what a target offers, as a file (`target.toml`, `--json`) and in memory.

use serde::{Deserialize, Serialize};

use crate::catalog::catalog;
use crate::Error;

/// The format of a profile file this build writes (and the newest it reads).
pub const FORMAT: u32 = 1;

/// Where a profile's facts come from, which says what it can see.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    /// `airgap probe` or `unpack --probe` on the target: every library its loader finds,
    /// with the symbol versions each defines.
    #[default]
    Probe,
    /// A retyped code: only the catalog's libraries are known (present or absent); nothing
    /// about any other library, no per-library symbol versions.
    Code,
}

/// What a target machine offers a bundle.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct Profile {
    /// The file format ([`FORMAT`]).
    pub format: u32,
    /// Where the facts come from.
    pub source: Source,
    /// Machine architecture (`uname -m`: `x86_64`).
    pub arch: Option<String>,
    /// x86-64 micro-architecture level (1..=4: `x86-64-v3` is 3), from the CPU flags.
    pub cpu_level: Option<u8>,
    /// Kernel release (`6.1.0-18-amd64`; a code carries major.minor).
    pub kernel: Option<String>,
    /// glibc version of the libc.so.6 the loader finds (`2.36`).
    pub glibc: Option<String>,
    /// Highest `GLIBCXX_` version the target's libstdc++.so.6 defines (`3.4.30`).
    pub glibcxx: Option<String>,
    /// Highest `CXXABI_` version the target's libstdc++.so.6 defines (`1.3.14`).
    pub cxxabi: Option<String>,
    /// Highest `GCC_` version the target's libgcc_s.so.1 defines (`12.0.0`).
    pub gcc: Option<String>,
    /// NVIDIA driver version: libcuda.so.1's, else the kernel module's (`535.104.05`).
    pub nvidia_driver: Option<String>,
    /// The kernel module's version (`/proc/driver/nvidia/version`), when loaded.
    pub nvidia_kernel_module: Option<String>,
    /// Catalog version the presence of `libraries` was read against (codes only).
    pub catalog: Option<u32>,
    /// `$TMPDIR` (or `/tmp`).
    pub tmpdir: Option<Place>,
    /// The destination asked about (`--dest`).
    pub dest: Option<Place>,
    /// The Pythons on `PATH`, in `PATH` order.
    pub pythons: Vec<Python>,
    /// The libraries the loader finds without a search path (`ld.so.cache`, default dirs).
    pub libraries: Vec<Library>,
}

/// One Python interpreter of the target.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct Python {
    /// Where it is (not in a code).
    pub path: Option<String>,
    /// `3.11.2`.
    pub version: String,
    /// `sys.implementation.name` (`cpython`).
    pub implementation: String,
    /// The ABI tag of its extension modules (`cp311`, `cp37m`, `cp313t`).
    pub abi: String,
}

/// A directory of the target: free space, whether programs may run from it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct Place {
    /// The path (not in a code).
    pub path: Option<String>,
    /// Free space for an unprivileged user, MiB (a code carries a power of two at most this).
    pub free_mib: Option<u64>,
    /// On a `noexec` mount: the bundle's programs cannot run from it.
    pub noexec: Option<bool>,
}

/// A library the target's loader finds by name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct Library {
    /// The name it is found by (its soname).
    pub soname: String,
    /// Where (not in a code).
    pub path: Option<String>,
    /// The symbol versions it defines (`.gnu.version_d`; not in a code).
    pub versions: Vec<String>,
}

/// What a profile says of one library.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Presence {
    /// The target has it.
    Present,
    /// The target lacks it.
    Absent,
    /// The profile cannot tell (a code, and the library is not in its catalog).
    Unknown,
}

impl Profile {
    /// Read a profile file's text (TOML).
    pub fn from_toml(text: &str) -> Result<Profile, Error> {
        let p: Profile = toml::from_str(text).map_err(|e| Error::Profile {
            reason: e.to_string(),
        })?;
        p.check_format()?;
        Ok(p)
    }

    /// Read a profile from JSON (`airgap probe --json`).
    pub fn from_json(text: &str) -> Result<Profile, Error> {
        let p: Profile = serde_json::from_str(text).map_err(|e| Error::Profile {
            reason: e.to_string(),
        })?;
        p.check_format()?;
        Ok(p)
    }

    fn check_format(&self) -> Result<(), Error> {
        if self.format == 0 || self.format > FORMAT {
            return Err(Error::Profile {
                reason: format!(
                    "profile format {} is not one this airgap reads (1 to {FORMAT})",
                    self.format
                ),
            });
        }
        Ok(())
    }

    /// The profile as TOML.
    pub fn to_toml(&self) -> Result<String, Error> {
        toml::to_string(self).map_err(|e| Error::Profile {
            reason: e.to_string(),
        })
    }

    /// The profile as JSON.
    pub fn to_json(&self) -> Result<String, Error> {
        serde_json::to_string_pretty(self).map_err(|e| Error::Profile {
            reason: e.to_string(),
        })
    }

    /// Whether the target has `soname`.
    pub fn presence(&self, soname: &str) -> Presence {
        if self.libraries.iter().any(|l| l.soname == soname) {
            return Presence::Present;
        }
        match self.source {
            Source::Probe => Presence::Absent,
            Source::Code => {
                let known = self
                    .catalog
                    .and_then(catalog)
                    .is_some_and(|c| c.contains(&soname));
                if known {
                    Presence::Absent
                } else {
                    Presence::Unknown
                }
            }
        }
    }

    /// The manylinux platform tags the target's glibc accepts, newest first, then
    /// `linux_ARCH` (what pip accepts there: PEP 600 tags down to 2.5, legacy aliases).
    pub fn platform_tags(&self) -> Vec<String> {
        let arch = self.arch.clone().unwrap_or_else(|| "x86_64".into());
        let mut tags = Vec::new();
        let minor = self
            .glibc
            .as_deref()
            .and_then(|g| g.strip_prefix("2."))
            .and_then(|m| m.split('.').next())
            .and_then(|m| m.parse::<u32>().ok());
        if let Some(minor) = minor {
            for m in (5..=minor).rev() {
                tags.push(format!("manylinux_2_{m}_{arch}"));
                let alias = match m {
                    17 => Some("manylinux2014"),
                    12 => Some("manylinux2010"),
                    5 => Some("manylinux1"),
                    _ => None,
                };
                if let Some(a) = alias {
                    tags.push(format!("{a}_{arch}"));
                }
            }
        }
        tags.push(format!("linux_{arch}"));
        tags
    }

    /// What a code of this profile carries, as a profile: decoding the code gives exactly
    /// this (paths, per-library versions and libraries outside the catalog dropped, the
    /// kernel cut to major.minor, free space rounded down to a power of two).
    pub fn code_view(&self) -> Profile {
        crate::code::view(self)
    }
}
