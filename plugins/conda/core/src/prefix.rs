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
/// `new` and the rest of the string moves. A string that shrank is padded with NUL bytes up
/// to where it ended; one that grew takes NUL bytes from the run that follows it, keeping one
/// as its terminator (none at the very end of the file when there was none), as the archive
/// engine does on the target. `capacity` bounds the new prefix: the room the file's prefix
/// slots were padded to (a conda placeholder's length), else `old`'s length. Nothing is
/// changed when some string would not fit.
pub fn replace_binary(
    data: &mut [u8],
    old: &[u8],
    new: &[u8],
    capacity: usize,
) -> Result<usize, TooLong> {
    if old.is_empty() {
        return Ok(0);
    }
    // First pass: check that everything fits, so that a failure changes nothing.
    let mut spans = Vec::new();
    let mut max_len = capacity.max(old.len());
    let mut misfit = None;
    let mut pos = 0;
    while let Some(found) = memmem::find(&data[pos..], old) {
        let start = pos + found;
        let end = memchr::memchr(0, &data[start..]).map_or(data.len(), |n| start + n);
        let nuls = data[end..].iter().take_while(|&&b| b == 0).count();
        let room = (end - start) + nuls.saturating_sub(1);
        let count = memmem::find_iter(&data[start..end], old).count().max(1);
        let literal = (end - start).saturating_sub(count * old.len());
        let fits = room.saturating_sub(literal) / count;
        if new.len() > fits.min(capacity.max(old.len())) && misfit.is_none() {
            misfit = Some(start);
        }
        max_len = max_len.min(fits);
        spans.push((start, end));
        pos = end.max(start + 1);
    }
    if let Some(offset) = misfit {
        return Err(TooLong { offset, max_len });
    }
    for &(start, end) in &spans {
        let replaced = replace_text(&data[start..end], old, new);
        let stop = (start + replaced.len()).max(end);
        data[start..start + replaced.len()].copy_from_slice(&replaced);
        data[start + replaced.len()..stop].fill(0);
    }
    Ok(spans.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binary_rewrite_pads_with_nul_and_keeps_size() {
        let mut data = b"xx\0/old/prefix/lib:/old/prefix/x\0yy".to_vec();
        let n = replace_binary(&mut data, b"/old/prefix", b"/new", 11).expect("fits");
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
        assert!(replace_binary(&mut data, b"/old", b"/longer", 4).is_err());
        assert_eq!(data, before);
        // Room recorded, but no NUL bytes to grow into: refused all the same.
        assert!(replace_binary(&mut data, b"/old", b"/longer", 100).is_err());
        assert_eq!(data, before);
    }

    #[test]
    fn binary_rewrite_grows_into_the_padding_up_to_the_capacity() {
        // As a conda installer leaves a placeholder of 12 bytes holding a 4-byte prefix.
        let mut data = b"x\0/old/lib:/old/x\0\0\0\0\0\0\0\0\0y".to_vec();
        let size = data.len();
        let n = replace_binary(&mut data, b"/old", b"/longer", 8).expect("fits");
        assert_eq!(n, 1);
        assert_eq!(data.len(), size);
        assert_eq!(&data, b"x\0/longer/lib:/longer/x\0\0\0y");
        // Past the capacity: refused, untouched, naming what fits.
        let before = data.clone();
        let err = replace_binary(&mut data, b"/longer", b"/much-longer", 8).unwrap_err();
        assert_eq!(err.max_len, 8);
        assert_eq!(data, before);
        // Within the capacity but past the NUL bytes that follow: refused too.
        let err = replace_binary(&mut data, b"/longer", b"/longer", 7).map(|_| ());
        assert!(err.is_ok());
        let err = replace_binary(&mut data, b"/longer", b"/longer99", 100).unwrap_err();
        assert_eq!(err.max_len, 8);
    }

    #[test]
    fn text_rewrite_replaces_every_occurrence() {
        assert_eq!(replace_text(b"/p/a /p/b", b"/p", b"/qq"), b"/qq/a /qq/b");
    }
}
