//! A delta bundle's second entry, `.airgap/delta.toml`: the base it applies to (the sha256 of
//! the base's manifest text) and every file it does not carry, with the base path that holds
//! the same content and the mtime the file gets. The manifest before it is the new version's
//! whole manifest, byte for byte what a full bundle of the same inputs has, so that a tree
//! updated by a delta and a fresh full unpack record the same manifest.
//!
//! The file is TOML: the list first, one inline table a line, then the metadata (the order
//! of the manifest, so a reader streams the list and never holds it).

use std::io::{self, BufRead};

use serde::{Deserialize, Serialize};

use crate::format::manifest::{encode, toml_str};
use crate::spill::{self, put_bytes, put_u64, Decoder, Record};

/// Where the delta's description sits below the top folder: the entry after the manifest.
pub const DELTA_PATH: &str = ".airgap/delta.toml";
/// Version of this file's format; readers refuse newer ones.
pub const DELTA_FORMAT: u32 = 1;
/// Largest description read (a hostile bundle may declare any size).
pub const MAX_DELTA: u64 = crate::format::manifest::MAX_MANIFEST;
/// Where a patched file's patch sits below the top folder: this, its path, `.zst`. Patches
/// come right after the description, before the top folder's entry.
pub const PATCH_DIR: &str = ".airgap/patch/";
/// Largest file, and largest base file, a patch is made for or applied to: a patch is
/// applied with the base file and the window in memory (docs/archive-format.md).
pub const MAX_PATCHED: u64 = 32 << 20;
/// Smallest file a patch is tried for: below it a patch saves little.
pub const MIN_PATCHED: u64 = 64 << 10;

/// The file name a reader stores the patch of `path` under in its scratch directory.
pub fn patch_scratch_name(path: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(path))
}

/// The entry (below the top folder) holding the patch of `path`.
pub fn patch_path(path: &[u8]) -> Vec<u8> {
    let mut p = PATCH_DIR.as_bytes().to_vec();
    p.extend_from_slice(path);
    p.extend_from_slice(b".zst");
    p
}

const HEADER: &str =
    "# airgap delta (docs/archive-format.md): the files taken from the base, then the base\n";
const LIST_START: &str = "files = [\n";
const LIST_END: &str = "]\n";

/// What a delta says of its base.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeltaMeta {
    /// Format version ([`DELTA_FORMAT`]).
    pub format: u32,
    /// The sha256 (hex) of the base's manifest text: the tree it applies to.
    pub base: String,
    /// The base's bundle name, for messages.
    pub base_name: String,
    /// How many files the list holds.
    pub reused: u64,
    /// Their total size in bytes.
    pub reused_bytes: u64,
}

/// One file the delta takes from its base.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reused {
    /// Its path in the new version (below the top folder).
    pub path: Vec<u8>,
    /// The base's path with the same content (often the same path).
    pub from: Vec<u8>,
    /// The mtime it gets (the new version's, which `.pyc` caches were made against).
    pub mtime: u64,
    /// Its content is not the base's but a zstd frame (at [`patch_path`]) decoded with the
    /// base's file `from` as its reference prefix (`zstd --patch-from`).
    pub patch: bool,
}

impl Record for Reused {
    fn encode(&self, out: &mut Vec<u8>) {
        put_bytes(out, &self.path);
        put_bytes(out, &self.from);
        put_u64(out, self.mtime);
        out.push(u8::from(self.patch));
    }
    fn decode(bytes: &[u8]) -> io::Result<Self> {
        let mut d = Decoder::new(bytes);
        Ok(Reused {
            path: d.bytes()?.to_vec(),
            from: d.bytes()?.to_vec(),
            mtime: d.u64()?,
            patch: d.u8()? != 0,
        })
    }
}

/// The start of the file, before the list.
pub(crate) fn begin(out: &mut String) {
    out.push_str(HEADER);
    out.push_str(LIST_START);
}

/// Append one line of the list.
pub(crate) fn write_reused(out: &mut String, r: &Reused) {
    use std::fmt::Write;
    let (path, path_hex) = encode(&r.path);
    out.push_str("  { path = ");
    toml_str(out, &path);
    if let Some(h) = path_hex {
        out.push_str(", path_hex = ");
        toml_str(out, &h);
    }
    if r.from != r.path {
        let (from, from_hex) = encode(&r.from);
        out.push_str(", from = ");
        toml_str(out, &from);
        if let Some(h) = from_hex {
            out.push_str(", from_hex = ");
            toml_str(out, &h);
        }
    }
    let _ = write!(out, ", mtime = {}", r.mtime);
    out.push_str(if r.patch {
        ", patch = true },\n"
    } else {
        " },\n"
    });
}

/// The end of the list, then the metadata.
pub(crate) fn end(out: &mut String, meta: &DeltaMeta) -> Result<(), String> {
    out.push_str(LIST_END);
    out.push_str(&toml::to_string(meta).map_err(|e| e.to_string())?);
    Ok(())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Line {
    path: String,
    #[serde(default)]
    path_hex: Option<String>,
    #[serde(default)]
    from: Option<String>,
    #[serde(default)]
    from_hex: Option<String>,
    mtime: u64,
    #[serde(default)]
    patch: bool,
}

#[derive(Deserialize)]
struct LineHolder {
    r: Line,
}

fn name_bytes(text: String, hex_form: Option<String>, what: &str) -> Result<Vec<u8>, String> {
    match hex_form {
        None => Ok(text.into_bytes()),
        Some(h) => {
            let bytes = hex::decode(&h).map_err(|_| format!("{what}_hex is not hex"))?;
            if String::from_utf8_lossy(&bytes) != text {
                return Err(format!("{what} and {what}_hex disagree"));
            }
            Ok(bytes)
        }
    }
}

fn parse_line(line: &str) -> Result<Reused, String> {
    let holder: LineHolder =
        toml::from_str(&format!("r = {}", line.trim_end().trim_end_matches(',')))
            .map_err(|e| format!("a line of the list: {e}"))?;
    let l = holder.r;
    let path = name_bytes(l.path, l.path_hex, "path")?;
    let from = match l.from {
        Some(f) => name_bytes(f, l.from_hex, "from")?,
        None if l.from_hex.is_some() => return Err("from_hex without from".into()),
        None => path.clone(),
    };
    crate::format::manifest::check_rel(&path).map_err(|e| format!("path {path:?}: {e}"))?;
    crate::format::manifest::check_rel(&from).map_err(|e| format!("from {from:?}: {e}"))?;
    Ok(Reused {
        path,
        from,
        mtime: l.mtime,
        patch: l.patch,
    })
}

/// A delta's description as a reader holds it: the metadata, and the list on a tape in an
/// unnamed temporary file, in path order.
pub struct Delta {
    /// What it says of its base.
    pub meta: DeltaMeta,
    list: std::fs::File,
    /// The tape's length in bytes.
    end: u64,
    /// How many lines of the list say `patch = true`.
    pub(crate) patched: usize,
    /// The paths whose patches the archive carried (the reader fills it).
    pub(crate) patches: std::collections::HashSet<Vec<u8>>,
}

impl std::fmt::Debug for Delta {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Delta").field("meta", &self.meta).finish()
    }
}

impl Delta {
    /// Read a description (at most [`MAX_DELTA`] bytes, which the caller bounds): the list
    /// must be sorted by path bytes without repeats, its count must be the metadata's.
    pub fn read(input: &mut dyn BufRead) -> Result<Delta, String> {
        let mut line = String::new();
        let mut next = |line: &mut String| -> Result<bool, String> {
            line.clear();
            let n = input.read_line(line).map_err(|e| e.to_string())?;
            Ok(n > 0)
        };
        if !next(&mut line)? || line != HEADER || !next(&mut line)? || line != LIST_START {
            return Err("it does not start as airgap writes a delta".into());
        }
        let mut tape = spill::Tape::new().map_err(|e| e.to_string())?;
        let mut last: Option<Vec<u8>> = None;
        let mut count = 0u64;
        let mut patched = 0usize;
        loop {
            if !next(&mut line)? {
                return Err("the list has no end".into());
            }
            if line == LIST_END {
                break;
            }
            let r = parse_line(&line)?;
            if last
                .as_ref()
                .is_some_and(|l| l.as_slice() >= r.path.as_slice())
            {
                return Err(format!(
                    "the list is not in path order at {}",
                    String::from_utf8_lossy(&r.path)
                ));
            }
            last = Some(r.path.clone());
            tape.push(&r).map_err(|e| e.to_string())?;
            count += 1;
            patched += usize::from(r.patch);
        }
        let mut rest = String::new();
        input.read_to_string(&mut rest).map_err(|e| e.to_string())?;
        let meta: DeltaMeta = toml::from_str(&rest).map_err(|e| e.to_string())?;
        if meta.format == 0 || meta.format > DELTA_FORMAT {
            return Err(format!(
                "delta format {} is not supported (this airgap reads {DELTA_FORMAT}); use a newer airgap",
                meta.format
            ));
        }
        if meta.reused != count {
            return Err(format!(
                "it says {} files are reused but lists {count}",
                meta.reused
            ));
        }
        if meta.base.len() != 64 || !meta.base.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err("its base is not a sha256".into());
        }
        let (list, _) = tape.finish().map_err(|e| e.to_string())?;
        let end = list.metadata().map_err(|e| e.to_string())?.len();
        Ok(Delta {
            meta,
            list,
            end,
            patched,
            patches: Default::default(),
        })
    }

    /// The reused files in path order.
    pub fn iter(&self) -> impl Iterator<Item = io::Result<Reused>> + '_ {
        let mut reader = spill::TapeReader::<Reused>::new(&self.list, 0, self.end);
        std::iter::from_fn(move || reader.next_record().transpose())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(list: &[Reused], meta: &DeltaMeta) -> String {
        let mut out = String::new();
        begin(&mut out);
        for r in list {
            write_reused(&mut out, r);
        }
        end(&mut out, meta).unwrap();
        out
    }

    fn meta(n: u64) -> DeltaMeta {
        DeltaMeta {
            format: 1,
            base: "ab".repeat(32),
            base_name: "env".into(),
            reused: n,
            reused_bytes: 10,
        }
    }

    #[test]
    fn a_written_delta_reads_back_and_is_toml() {
        let list = vec![
            Reused {
                path: b"a/b.py".to_vec(),
                from: b"a/b.py".to_vec(),
                mtime: 7,
                patch: false,
            },
            Reused {
                path: b"a/\xffc".to_vec(),
                from: b"old/\"q\"".to_vec(),
                mtime: 0,
                patch: true,
            },
        ];
        let mut sorted = list.clone();
        sorted.sort_by(|a, b| a.path.cmp(&b.path));
        let t = text(&sorted, &meta(2));
        let _: toml::Value = toml::from_str(&t).expect("valid TOML");
        let d = Delta::read(&mut t.as_bytes()).unwrap();
        assert_eq!(d.meta, meta(2));
        let back: Vec<Reused> = d.iter().map(|r| r.unwrap()).collect();
        assert_eq!(back, sorted);
    }

    #[test]
    fn wrong_counts_order_and_paths_are_refused() {
        let r = |p: &[u8]| Reused {
            path: p.to_vec(),
            from: p.to_vec(),
            mtime: 1,
            patch: false,
        };
        let bad_count = text(&[r(b"a")], &meta(2));
        assert!(Delta::read(&mut bad_count.as_bytes())
            .unwrap_err()
            .contains("lists 1"));
        let unsorted = text(&[r(b"b"), r(b"a")], &meta(2));
        assert!(Delta::read(&mut unsorted.as_bytes())
            .unwrap_err()
            .contains("path order"));
        let escape = text(&[r(b"../etc/passwd")], &meta(1));
        assert!(Delta::read(&mut escape.as_bytes())
            .unwrap_err()
            .contains(".."));
    }
}
