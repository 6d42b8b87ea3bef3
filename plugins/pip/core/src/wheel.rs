//! Wheel file names, project names and hashes.

use std::io::Read;
use std::path::Path;

use sha2::{Digest, Sha256};

/// PEP 503 normalized project name: lower case, runs of `-_.` as one `-`.
pub fn normalize(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut dash = false;
    for c in name.trim().chars() {
        if c == '-' || c == '_' || c == '.' {
            dash = true;
        } else {
            if dash && !out.is_empty() {
                out.push('-');
            }
            dash = false;
            out.extend(c.to_lowercase());
        }
    }
    out
}

/// The parts of a wheel file name (`{name}-{version}(-{build})?-{python}-{abi}-{platform}.whl`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WheelName {
    /// Project name as written in the file name.
    pub name: String,
    /// Version.
    pub version: String,
    /// Platform tags (`manylinux2014_x86_64`, `any`), split on `.`.
    pub platforms: Vec<String>,
}

impl WheelName {
    /// Parse a wheel file name; `None` for anything else.
    pub fn parse(file_name: &str) -> Option<WheelName> {
        let stem = file_name.strip_suffix(".whl")?;
        let parts: Vec<&str> = stem.split('-').collect();
        if parts.len() != 5 && parts.len() != 6 {
            return None;
        }
        Some(WheelName {
            name: parts[0].to_string(),
            version: parts[1].to_string(),
            platforms: parts[parts.len() - 1]
                .split('.')
                .map(str::to_string)
                .collect(),
        })
    }
}

/// Hex sha256 of a file.
/// The licence a wheel's `*.dist-info/METADATA` declares (by `airgap_pymeta`'s rule, the
/// one the conda source applies to installed distributions); none when the wheel is
/// unreadable or declares none.
pub fn license(wheel: &Path) -> Option<String> {
    let file = std::fs::File::open(wheel).ok()?;
    let mut archive = zip::ZipArchive::new(file).ok()?;
    let name = archive
        .file_names()
        .find(|n| n.ends_with(".dist-info/METADATA") && n.matches('/').count() == 1)?
        .to_string();
    let mut text = String::new();
    archive
        .by_name(&name)
        .ok()?
        .take(MAX_METADATA)
        .read_to_string(&mut text)
        .ok()?;
    airgap_pymeta::license(&text)
}

/// The most of a `METADATA` read: headers come first, and the description after them may
/// be long; a licence is in the headers.
const MAX_METADATA: u64 = 1 << 20;

pub fn sha256_file(path: &Path) -> std::io::Result<String> {
    let mut file = std::fs::File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hex::encode(hasher.finalize()))
}

/// The local path of a `file://` URL (percent-decoded); `None` for other URLs.
pub fn file_url_path(url: &str) -> Option<std::path::PathBuf> {
    let rest = url.strip_prefix("file://")?;
    let bytes = rest.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let Some(v) = std::str::from_utf8(&bytes[i + 1..i + 3])
                .ok()
                .and_then(|h| u8::from_str_radix(h, 16).ok())
            {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    use std::os::unix::ffi::OsStringExt;
    Some(std::path::PathBuf::from(std::ffi::OsString::from_vec(out)))
}

/// True when the file starts with the ELF magic.
pub fn is_elf(path: &Path) -> bool {
    let mut magic = [0u8; 4];
    std::fs::File::open(path)
        .and_then(|mut f| f.read_exact(&mut magic))
        .map(|()| magic == *b"\x7fELF")
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalizes_names() {
        assert_eq!(normalize("MarkupSafe"), "markupsafe");
        assert_eq!(normalize("zope.interface"), "zope-interface");
        assert_eq!(normalize("a__b-.c"), "a-b-c");
    }

    #[test]
    fn parses_wheel_names() {
        let w = WheelName::parse(
            "ujson-4.3.0-cp36-cp36m-manylinux_2_17_x86_64.manylinux2014_x86_64.whl",
        )
        .unwrap();
        assert_eq!(w.name, "ujson");
        assert_eq!(w.version, "4.3.0");
        assert_eq!(
            w.platforms,
            ["manylinux_2_17_x86_64", "manylinux2014_x86_64"]
        );
        let w = WheelName::parse("foo-1.0-1build-py3-none-any.whl").unwrap();
        assert_eq!(w.version, "1.0");
        assert!(WheelName::parse("foo-1.0.tar.gz").is_none());
    }

    #[test]
    fn decodes_file_urls() {
        assert_eq!(
            file_url_path("file:///tmp/a/torch-2.0%2Bcpu-py3-none-any.whl").unwrap(),
            std::path::PathBuf::from("/tmp/a/torch-2.0+cpu-py3-none-any.whl")
        );
        assert!(file_url_path("https://x/y.whl").is_none());
    }
}
