//! The NVIDIA driver a bundle's CUDA runtime needs, against the driver a probed target has.
//!
//! A CUDA runtime (`libcudart.so.N`, as the `nvidia-cuda-runtime-cuN` wheels and conda's
//! `cuda-cudart` bring it) finds `libcuda.so.1`, the driver's user-space library, with
//! `dlopen` when the program first touches the GPU: no loader walk sees the need, and a
//! driver too old for the runtime is a failure at the first kernel launch, not at import.
//! NVIDIA's "CUDA minor version compatibility" makes the driver a runtime needs a property of
//! the runtime's major version (the soname says it); before CUDA 11 the soname carries the
//! minor version too, and each had its own minimum.

use airgap_elf::Version;
use serde::Serialize;

/// The least Linux x86-64 driver per runtime soname version, from NVIDIA's CUDA toolkit
/// release notes ("CUDA Toolkit and Corresponding Driver Versions", minor version
/// compatibility rows for CUDA 11 and later).
const MIN_DRIVER: &[(&str, &str)] = &[
    ("9.0", "384.81"),
    ("9.1", "390.46"),
    ("9.2", "396.26"),
    ("10.0", "410.48"),
    ("10.1", "418.39"),
    ("10.2", "440.33"),
    ("11", "450.80.02"),
    ("12", "525.60.13"),
    ("13", "580.65.06"),
];

/// What the bundle's CUDA runtime asks of the target's driver, and what the target has.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct CudaReport {
    /// The runtime's version as its soname gives it (`12`, `10.2`).
    pub runtime: String,
    /// The runtime library in the bundle.
    pub library: String,
    /// The least driver it runs on.
    pub min_driver: String,
    /// Whether the target's driver is known (a probed profile or a code says it).
    pub driver_known: bool,
    /// The target's driver, when it has one.
    pub target_driver: Option<String>,
}

/// The runtime version of a `libcudart.so.*` name (`libcudart.so.12` -> `12`,
/// `libcudart.so.10.2.89` -> `10.2`, `libcudart.so.12.4.127` -> `12`).
fn runtime_of(name: &str) -> Option<String> {
    let rest = name.strip_prefix("libcudart.so.")?;
    let mut parts = rest.split('.');
    let major: u32 = parts.next()?.parse().ok()?;
    if major >= 11 {
        return Some(major.to_string());
    }
    let minor: u32 = parts.next()?.parse().ok()?;
    Some(format!("{major}.{minor}"))
}

/// The least driver for a runtime version, when NVIDIA published one.
fn min_driver(runtime: &str) -> Option<&'static str> {
    MIN_DRIVER
        .iter()
        .find(|(r, _)| *r == runtime)
        .map(|(_, d)| *d)
}

/// The most demanding CUDA runtime among the bundle's ELF files (`(path, soname)`).
pub fn need<'a>(elves: impl Iterator<Item = (&'a str, Option<&'a str>)>) -> Option<CudaReport> {
    let mut best: Option<(Version, CudaReport)> = None;
    for (path, soname) in elves {
        let name = soname.unwrap_or_else(|| path.rsplit('/').next().unwrap_or(path));
        let Some(runtime) = runtime_of(name) else {
            continue;
        };
        let Some(min) = min_driver(&runtime) else {
            continue;
        };
        let v = Version::parse(min).unwrap_or_default();
        if best.as_ref().is_none_or(|(b, _)| v > *b) {
            best = Some((
                v,
                CudaReport {
                    runtime,
                    library: path.to_owned(),
                    min_driver: min.to_owned(),
                    ..CudaReport::default()
                },
            ));
        }
    }
    best.map(|(_, r)| r)
}

/// The verdict on `need` for a target whose driver is `driver` (`None`: not known, as with a
/// declared target or a root file system; `Some(None)`: known to have none). Returns a
/// problem (the driver is too old) or a warning.
pub fn judge(need: &mut CudaReport, driver: Option<Option<&str>>) -> Verdict {
    let runtime = format!("CUDA {} runtime ({})", need.runtime, need.library);
    match driver {
        None => Verdict::Warning(format!(
            "the bundled {runtime} needs an NVIDIA driver >= {} on the target; the target's driver is not known (probe it: `airgap probe`, then --target)",
            need.min_driver
        )),
        Some(None) => {
            need.driver_known = true;
            Verdict::Warning(format!(
                "the bundled {runtime} needs an NVIDIA driver >= {}; the target has none: GPU code will not run there (CPU code does)",
                need.min_driver
            ))
        }
        Some(Some(have)) => {
            need.driver_known = true;
            need.target_driver = Some(have.to_owned());
            let ok = match (Version::parse(have), Version::parse(&need.min_driver)) {
                (Some(h), Some(m)) => h >= m,
                _ => false,
            };
            if ok {
                Verdict::Fine
            } else {
                Verdict::Problem(format!(
                    "the bundled {runtime} needs NVIDIA driver >= {}, but the target's driver is {have}",
                    need.min_driver
                ))
            }
        }
    }
}

/// What [`judge`] says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// The driver is new enough.
    Fine,
    /// Worth knowing; the bundle still works (on the CPU).
    Warning(String),
    /// The GPU code will not run.
    Problem(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_soname_gives_the_runtime_and_the_table_its_driver() {
        assert_eq!(runtime_of("libcudart.so.12").as_deref(), Some("12"));
        assert_eq!(runtime_of("libcudart.so.12.4.127").as_deref(), Some("12"));
        assert_eq!(runtime_of("libcudart.so.10.2.89").as_deref(), Some("10.2"));
        assert_eq!(runtime_of("libcudart.so"), None);
        assert_eq!(runtime_of("libcudnn.so.9"), None);
        let n = need(
            [
                ("a/libcudart.so.11.0", Some("libcudart.so.11.0")),
                ("b/nvidia/cuda_runtime/lib/libcudart.so.12", None),
            ]
            .into_iter(),
        )
        .expect("a runtime");
        assert_eq!(
            (n.runtime.as_str(), n.min_driver.as_str()),
            ("12", "525.60.13")
        );
    }

    #[test]
    fn three_verdicts_name_the_figures() {
        let base = need([("lib/libcudart.so.12", None)].into_iter()).expect("runtime");
        let mut n = base.clone();
        assert_eq!(judge(&mut n, Some(Some("535.104.05"))), Verdict::Fine);
        let mut n = base.clone();
        match judge(&mut n, Some(Some("470.82.01"))) {
            Verdict::Problem(p) => {
                assert!(p.contains(">= 525.60.13") && p.contains("470.82.01"), "{p}")
            }
            other => panic!("{other:?}"),
        }
        let mut n = base.clone();
        match judge(&mut n, Some(None)) {
            Verdict::Warning(w) => assert!(w.contains("has none"), "{w}"),
            other => panic!("{other:?}"),
        }
        assert!(n.driver_known && n.target_driver.is_none());
        let mut n = base;
        assert!(matches!(judge(&mut n, None), Verdict::Warning(_)));
        assert!(!n.driver_known);
    }
}
