//! Finding and replacing prefixes in file contents.
//!
//! The same two rules the archive engine applies on the target: text files get every
//! occurrence replaced; binary files get each C string holding the prefix rewritten in place
//! and padded with NUL bytes, so that the file never changes size. The plugin uses them when the
//! target path is known at bundle time (`--dest-prefix`).

use memchr::memmem;

/// True when `data` holds `needle` anywhere.
pub fn contains(data: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && memmem::find(data, needle).is_some()
}

/// True when a file's contents are text (valid UTF-8 without NUL bytes).
pub fn is_text(data: &[u8]) -> bool {
    !data.contains(&0) && std::str::from_utf8(data).is_ok()
}

/// Replace every occurrence of `old` by `new`.
pub fn replace_text(data: &[u8], old: &[u8], new: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len());
    let mut rest = data;
    while let Some(at) = memmem::find(rest, old) {
        out.extend_from_slice(&rest[..at]);
        out.extend_from_slice(new);
        rest = &rest[at + old.len()..];
    }
    out.extend_from_slice(rest);
    out
}

/// A binary rewrite that does not fit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TooLong {
    /// Byte offset of the C string in the file.
    pub offset: usize,
    /// The longest new prefix that would have fitted everywhere.
    pub max_len: usize,
}

/// Rewrite, in place, each C string that holds `old`: every occurrence of `old` in it becomes
/// `new`, the rest of the string moves, and NUL bytes fill the end so that the string ends
/// where it ended before. Nothing is changed when some string would not fit.
pub fn replace_binary(data: &mut [u8], old: &[u8], new: &[u8]) -> Result<usize, TooLong> {
    if old.is_empty() {
        return Ok(0);
    }
    // First pass: check that everything fits, so that a failure changes nothing.
    let mut spans = Vec::new();
    let mut pos = 0;
    while let Some(found) = memmem::find(&data[pos..], old) {
        let start = pos + found;
        let end = memchr::memchr(0, &data[start..]).map_or(data.len(), |n| start + n);
        if new.len() > old.len() {
            return Err(TooLong {
                offset: start,
                max_len: old.len(),
            });
        }
        spans.push((start, end));
        pos = end.max(start + 1);
    }
    for &(start, end) in &spans {
        let replaced = replace_text(&data[start..end], old, new);
        data[start..start + replaced.len()].copy_from_slice(&replaced);
        data[start + replaced.len()..end].fill(0);
    }
    Ok(spans.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binary_rewrite_pads_with_nul_and_keeps_size() {
        let mut data = b"xx\0/old/prefix/lib:/old/prefix/x\0yy".to_vec();
        let n = replace_binary(&mut data, b"/old/prefix", b"/new").expect("fits");
        assert_eq!(n, 1);
        assert_eq!(
            &data,
            b"xx\0/new/lib:/new/x\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0yy"
        );
    }

    #[test]
    fn binary_rewrite_refuses_longer_prefix_without_touching() {
        let mut data = b"\0/old/a\0".to_vec();
        let before = data.clone();
        assert!(replace_binary(&mut data, b"/old", b"/longer").is_err());
        assert_eq!(data, before);
    }

    #[test]
    fn text_rewrite_replaces_every_occurrence() {
        assert_eq!(replace_text(b"/p/a /p/b", b"/p", b"/qq"), b"/qq/a /qq/b");
    }
}
