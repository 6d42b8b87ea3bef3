//! A bundle split into volumes (`bundle --split-size`): `NAME.tar.gz.001`, `.002`, … whose
//! concatenation is the bundle, and the volume list `NAME.tar.gz.volumes` (TOML) that names
//! each volume with its size and sha256, and the whole's. The list is what a signature
//! covers; its hashes bind every volume. Pure of I/O: the writer (`pack::write`) and the
//! reader (`install::source`) open the files.

use serde::{Deserialize, Serialize};

/// The list's format version.
pub const VOLUMES_FORMAT: u32 = 1;
/// The suffix of the volume list after the bundle's name.
pub const LIST_SUFFIX: &str = ".volumes";
/// Volumes are numbered `.001` to `.999`: three digits, so that a shell's glob
/// (`NAME.tar.gz.[0-9][0-9][0-9]`) lists them in order.
pub const MAX_VOLUMES: usize = 999;
/// The smallest `--split-size`: smaller volumes are too many files to carry for any medium.
pub const MIN_SPLIT: u64 = 64 * 1024;
/// The largest list a reader reads (a thousand volumes take about 150 KiB).
pub const MAX_LIST: u64 = 1024 * 1024;

/// FAT32's largest file: 4 GiB - 1 byte.
pub const FAT32: u64 = 4 * 1024 * 1024 * 1024 - 1;
/// A single-layer DVD holds 4,700,372,992 bytes (2,295,104 sectors of 2048 bytes); ISO 9660
/// and UDF take a few MiB of that for their own structures: 4,600,000,000 bytes leaves
/// about 95 MiB. Above FAT32's limit, so a `dvd` volume is for the disc, not for a stick.
pub const DVD: u64 = 4_600_000_000;
/// A 25 GB Blu-ray holds 25,025,314,816 bytes (12,219,392 sectors); 24,000,000,000 bytes
/// leaves about 1 GB for UDF's structures and the spare area some burners format.
pub const BD25: u64 = 24_000_000_000;

/// The volume list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VolumeList {
    /// [`VOLUMES_FORMAT`].
    pub format: u32,
    /// The whole bundle's file name (`NAME.tar.gz`): what `cat` of the volumes makes.
    pub bundle: String,
    /// The whole's size in bytes.
    pub size: u64,
    /// The whole's sha256, hex.
    pub sha256: String,
    /// The volumes, in order.
    pub volumes: Vec<VolumeRecord>,
}

/// One volume of a [`VolumeList`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VolumeRecord {
    /// Its file name, beside the list: `NAME.tar.gz.NNN`.
    pub name: String,
    /// Its size in bytes.
    pub size: u64,
    /// Its sha256, hex.
    pub sha256: String,
}

/// The file name of volume `number` (from 1) of bundle `bundle` (a file name).
pub fn volume_name(bundle: &str, number: usize) -> String {
    format!("{bundle}.{number:03}")
}

/// The file name of the volume list of bundle `bundle`.
pub fn list_name(bundle: &str) -> String {
    format!("{bundle}{LIST_SUFFIX}")
}

/// The bundle's name and the number of a volume's file name (`NAME.tar.gz.002` gives
/// `("NAME.tar.gz", 2)`), or `None` for a name that is no volume's.
pub fn parse_volume_name(name: &str) -> Option<(&str, usize)> {
    let (bundle, digits) = name.rsplit_once('.')?;
    if bundle.is_empty() || digits.len() != 3 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n: usize = digits.parse().ok()?;
    (n >= 1).then_some((bundle, n))
}

impl VolumeList {
    /// The list as written: a comment saying how to reassemble, then TOML.
    pub fn render(&self) -> Result<String, String> {
        let body = toml::to_string(self).map_err(|e| e.to_string())?;
        Ok(format!(
            "# The volumes of the airgap bundle {bundle}, in order. Reassemble it with:\n\
             #   cat {bundle}.[0-9][0-9][0-9] > {bundle}\n\
             # or let airgap read them in place: airgap unpack {first} DEST\n{body}",
            bundle = self.bundle,
            first = volume_name(&self.bundle, 1),
        ))
    }

    /// Parse and check a list: its format, plain file names in sequence, sizes that add up.
    /// `bundle` is the name the list's own file name gives (`NAME.tar.gz.volumes`).
    pub fn parse(text: &str, bundle: &str) -> Result<VolumeList, String> {
        let list: VolumeList = toml::from_str(text).map_err(|e| {
            format!(
                "not a volume list: {}",
                e.to_string().lines().next().unwrap_or("")
            )
        })?;
        if list.format != VOLUMES_FORMAT {
            return Err(format!(
                "format {} (this airgap reads format {VOLUMES_FORMAT}): a newer airgap wrote it",
                list.format
            ));
        }
        if list.bundle != bundle {
            return Err(format!(
                "it lists the volumes of {:?}, not of {bundle:?} (renamed?)",
                list.bundle
            ));
        }
        if list.volumes.is_empty() || list.volumes.len() > MAX_VOLUMES {
            return Err(format!(
                "{} volumes (1 to {MAX_VOLUMES} are possible)",
                list.volumes.len()
            ));
        }
        let hex64 = |s: &str| s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit());
        if !hex64(&list.sha256) {
            return Err("the whole's sha256 is not 64 hex digits".into());
        }
        let mut total = 0u64;
        for (i, v) in list.volumes.iter().enumerate() {
            let expected = volume_name(bundle, i + 1);
            if v.name != expected {
                return Err(format!(
                    "volume {} is named {:?}, not {expected:?}",
                    i + 1,
                    v.name
                ));
            }
            if v.size == 0 || !hex64(&v.sha256) {
                return Err(format!(
                    "volume {} has no size or no sha256 of 64 hex digits",
                    i + 1
                ));
            }
            total = total.saturating_add(v.size);
        }
        if total != list.size {
            return Err(format!(
                "its volumes add up to {total} bytes, and it says the whole is {}",
                list.size
            ));
        }
        Ok(list)
    }
}

/// A `--split-size`: a number of bytes with an optional K, M or G (powers of 1024; `KiB`,
/// `MB` and the like are read the same), or a preset: `fat32` ([`FAT32`]), `dvd` ([`DVD`]),
/// `bd25` ([`BD25`]). At least [`MIN_SPLIT`].
pub fn parse_split_size(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let size = match t.to_ascii_lowercase().as_str() {
        "fat32" => FAT32,
        "dvd" => DVD,
        "bd25" => BD25,
        lower => {
            let digits_end = lower
                .find(|c: char| !c.is_ascii_digit())
                .unwrap_or(lower.len());
            let (num, unit) = lower.split_at(digits_end);
            let shift = match unit.trim() {
                "" | "b" => 0,
                "k" | "kb" | "kib" => 10,
                "m" | "mb" | "mib" => 20,
                "g" | "gb" | "gib" => 30,
                _ => {
                    return Err(format!(
                        "{text:?} is not a size: give bytes, or a number with K, M or G (powers of 1024), or fat32, dvd or bd25"
                    ))
                }
            };
            let n: u64 = num
                .parse()
                .map_err(|_| format!("{text:?} is not a size: it has no number"))?;
            n.checked_mul(1u64 << shift)
                .ok_or_else(|| format!("{text:?} is too large"))?
        }
    };
    if size < MIN_SPLIT {
        return Err(format!(
            "{text:?} is {size} bytes: volumes must hold at least 64K ({MIN_SPLIT} bytes)"
        ));
    }
    Ok(size)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn sizes_and_presets() {
        assert_eq!(parse_split_size("64K").unwrap(), 65536);
        assert_eq!(parse_split_size("4G").unwrap(), 4 << 30);
        assert_eq!(parse_split_size("700MiB").unwrap(), 700 << 20);
        assert_eq!(parse_split_size("fat32").unwrap(), (4u64 << 30) - 1);
        assert_eq!(parse_split_size("DVD").unwrap(), DVD);
        assert!(parse_split_size("63K").is_err());
        assert!(parse_split_size("4T").is_err());
        assert!(parse_split_size("G").is_err());
    }

    #[test]
    fn names() {
        assert_eq!(volume_name("a.tar.gz", 2), "a.tar.gz.002");
        assert_eq!(parse_volume_name("a.tar.gz.002"), Some(("a.tar.gz", 2)));
        assert_eq!(parse_volume_name("a.tar.gz.000"), None);
        assert_eq!(parse_volume_name("a.tar.gz"), None);
        assert_eq!(parse_volume_name("a.1000"), None);
    }

    #[test]
    fn a_list_reads_back_and_its_names_are_checked() {
        let list = VolumeList {
            format: 1,
            bundle: "a.tar.gz".into(),
            size: 3,
            sha256: "0".repeat(64),
            volumes: vec![
                VolumeRecord {
                    name: "a.tar.gz.001".into(),
                    size: 2,
                    sha256: "1".repeat(64),
                },
                VolumeRecord {
                    name: "a.tar.gz.002".into(),
                    size: 1,
                    sha256: "2".repeat(64),
                },
            ],
        };
        let text = list.render().unwrap();
        assert_eq!(VolumeList::parse(&text, "a.tar.gz").unwrap(), list);
        assert!(VolumeList::parse(&text, "b.tar.gz").is_err());
        let swapped = text.replace("a.tar.gz.002", "a.tar.gz.003");
        assert!(VolumeList::parse(&swapped, "a.tar.gz").is_err());
    }
}
