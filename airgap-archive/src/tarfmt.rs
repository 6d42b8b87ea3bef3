//! The tar dialect airgap writes and reads: GNU headers (`ustar  \0`), `././@LongLink` entries
//! for names and link targets over 100 bytes (raw bytes, so non-UTF-8 names survive), base-256
//! numbers for sizes over 8 GiB, and old-GNU sparse entries (`S`) for files with holes. GNU tar
//! and bsdtar read all of it.
//!
//! The reader accepts only what the writer produces. Everything else (PAX headers, devices,
//! fifos, the old `\0` and `7` file types) is reported as [`EntryType::Other`] for the caller
//! to refuse: a bundle crosses a security boundary and we would rather refuse than guess.
//!
//! It is also strict about every field another reader could read differently, so that what
//! `airgap verify` approves means the same to GNU tar, bsdtar and Python's tarfile: data on a
//! directory or link header (other readers take those bytes for more entries), a magic other
//! than GNU's (POSIX readers would prepend the `prefix` field), bytes in the fields we never
//! fill (owner names, device numbers, prefix/atime area), numbers with anything after their
//! terminator or a base-256 marker other than `0x80`, and two long names in a row (GNU tar
//! keeps the last, Python the first). `fuzz/fuzz_targets/tar_differential.rs` checks the
//! reader against GNU tar.

use std::io::{self, Read, Write};

/// Size of a tar block.
pub const BLOCK: usize = 512;
/// GNU tar pads archives to records of 20 blocks; we do the same so that every tar is happy.
pub const RECORD: u64 = 10240;
/// Longest extended name we accept when reading (PATH_MAX is 4096; be generous but bounded).
const MAX_LONG_NAME: u64 = 64 * 1024;
/// Sparse map entries we accept when reading, to bound memory on hostile input.
const MAX_SPARSE: usize = 1 << 20;

/// Entry types we write, plus a catch-all for what we refuse.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryType {
    /// Regular file (`0`).
    File,
    /// Hard link to an earlier entry (`1`).
    HardLink,
    /// Symbolic link (`2`).
    Symlink,
    /// Directory (`5`).
    Dir,
    /// Old-GNU sparse file (`S`).
    Sparse,
    /// Anything else, with its type byte.
    Other(u8),
}

impl EntryType {
    fn flag(self) -> u8 {
        match self {
            EntryType::File => b'0',
            EntryType::HardLink => b'1',
            EntryType::Symlink => b'2',
            EntryType::Dir => b'5',
            EntryType::Sparse => b'S',
            EntryType::Other(b) => b,
        }
    }

    fn from_flag(b: u8) -> EntryType {
        match b {
            b'0' => EntryType::File,
            b'1' => EntryType::HardLink,
            b'2' => EntryType::Symlink,
            b'5' => EntryType::Dir,
            b'S' => EntryType::Sparse,
            other => EntryType::Other(other),
        }
    }
}

/// One header to write.
#[derive(Debug, Clone)]
pub struct Header<'a> {
    /// Full path inside the archive (with the top folder); directories without trailing `/`.
    pub path: &'a [u8],
    /// Type.
    pub kind: EntryType,
    /// Permission bits.
    pub mode: u32,
    /// Bytes of data following the header (for sparse files: the data segments only).
    pub size: u64,
    /// Modification time, seconds since the epoch.
    pub mtime: u64,
    /// Link target (symlinks, hard links).
    pub link: &'a [u8],
    /// For sparse files: the logical size and the data segments (offset, length).
    pub sparse: Option<(u64, &'a [(u64, u64)])>,
}

fn put_octal_or_binary(field: &mut [u8], value: u64) {
    let digits = field.len() - 1;
    if digits >= 22 || value < (1u64 << (3 * digits as u32)) {
        let s = format!("{value:0digits$o}");
        field[..digits].copy_from_slice(s.as_bytes());
        field[digits] = 0;
    } else {
        // GNU base-256: high bit set, big-endian value in the remaining bytes.
        for b in field.iter_mut() {
            *b = 0;
        }
        let n = field.len();
        let bytes = value.to_be_bytes();
        field[n - 8..].copy_from_slice(&bytes);
        field[0] |= 0x80;
    }
}

fn finish_checksum(block: &mut [u8; BLOCK]) {
    block[148..156].copy_from_slice(b"        ");
    let sum: u32 = block.iter().map(|&b| u32::from(b)).sum();
    let s = format!("{sum:06o}\0 ");
    block[148..156].copy_from_slice(s.as_bytes());
}

fn raw_header(name: &[u8], flag: u8, mode: u32, size: u64, mtime: u64, link: &[u8]) -> [u8; BLOCK] {
    let mut b = [0u8; BLOCK];
    let n = name.len().min(100);
    b[..n].copy_from_slice(&name[..n]);
    put_octal_or_binary(&mut b[100..108], u64::from(mode & 0o7777));
    put_octal_or_binary(&mut b[108..116], 0);
    put_octal_or_binary(&mut b[116..124], 0);
    put_octal_or_binary(&mut b[124..136], size);
    put_octal_or_binary(&mut b[136..148], mtime);
    b[156] = flag;
    let l = link.len().min(100);
    b[157..157 + l].copy_from_slice(&link[..l]);
    b[257..263].copy_from_slice(b"ustar ");
    b[263..265].copy_from_slice(b" \0");
    b
}

fn long_name(out: &mut Vec<u8>, flag: u8, value: &[u8]) {
    let mut h = raw_header(
        b"././@LongLink",
        flag,
        0o644,
        value.len() as u64 + 1,
        0,
        b"",
    );
    finish_checksum(&mut h);
    out.extend_from_slice(&h);
    out.extend_from_slice(value);
    out.push(0);
    pad(out, value.len() as u64 + 1);
}

/// Append zero bytes so that `len` bytes of data end on a block boundary.
pub fn pad(out: &mut Vec<u8>, len: u64) {
    let rem = (len % BLOCK as u64) as usize;
    if rem != 0 {
        out.resize(out.len() + BLOCK - rem, 0);
    }
}

/// Bytes of padding after `len` bytes of data.
pub fn padding(len: u64) -> u64 {
    (BLOCK as u64 - len % BLOCK as u64) % BLOCK as u64
}

/// Encode `h` (with any long-name entries it needs) at the end of `out`.
pub fn write_header(out: &mut Vec<u8>, h: &Header<'_>) {
    if h.path.len() > 100 {
        long_name(out, b'L', h.path);
    }
    if h.link.len() > 100 {
        long_name(out, b'K', h.link);
    }
    let mut b = raw_header(h.path, h.kind.flag(), h.mode, h.size, h.mtime, h.link);
    let mut extension: Vec<[u8; BLOCK]> = Vec::new();
    if let Some((real, segments)) = h.sparse {
        put_octal_or_binary(&mut b[483..495], real);
        let (first, rest) = segments.split_at(segments.len().min(4));
        for (i, (off, len)) in first.iter().enumerate() {
            let at = 386 + i * 24;
            put_octal_or_binary(&mut b[at..at + 12], *off);
            put_octal_or_binary(&mut b[at + 12..at + 24], *len);
        }
        for chunk in rest.chunks(21) {
            let mut e = [0u8; BLOCK];
            for (i, (off, len)) in chunk.iter().enumerate() {
                let at = i * 24;
                put_octal_or_binary(&mut e[at..at + 12], *off);
                put_octal_or_binary(&mut e[at + 12..at + 24], *len);
            }
            extension.push(e);
        }
        if !extension.is_empty() {
            b[482] = 1;
            let n = extension.len();
            for e in extension.iter_mut().take(n - 1) {
                e[504] = 1;
            }
        }
    }
    finish_checksum(&mut b);
    out.extend_from_slice(&b);
    for e in &extension {
        out.extend_from_slice(e);
    }
}

/// The end of an archive: two zero blocks, then zeros up to a whole record.
pub fn write_end(out: &mut impl Write, written: u64) -> io::Result<u64> {
    let mut total = written + 2 * BLOCK as u64;
    let rem = total % RECORD;
    if rem != 0 {
        total += RECORD - rem;
    }
    let zeros = vec![0u8; (total - written) as usize];
    out.write_all(&zeros)?;
    Ok(total)
}

/// One entry as read.
#[derive(Debug, Clone)]
pub struct TarEntry {
    /// Path as stored.
    pub path: Vec<u8>,
    /// Type.
    pub kind: EntryType,
    /// Mode bits as stored (may include setuid and file type bits: the caller checks).
    pub mode: u64,
    /// Bytes of data following the header.
    pub size: u64,
    /// Logical size (sparse files: the expanded size; else `size`).
    pub real_size: u64,
    /// Modification time.
    pub mtime: u64,
    /// Link target.
    pub link: Vec<u8>,
    /// Data segments of a sparse file.
    pub sparse: Vec<(u64, u64)>,
}

/// Reads entries from a tar stream, strictly.
pub struct TarReader<R> {
    inner: R,
    remaining: u64,
    pad: u64,
    /// Bytes consumed so far (for error messages).
    pub offset: u64,
    ended: bool,
}

fn parse_num(field: &[u8]) -> Result<u64, String> {
    if field.first().is_some_and(|b| b & 0x80 != 0) {
        // GNU tar and Python read base-256 only after exactly 0x80 (0xff: negative).
        if field[0] != 0x80 {
            return Err(format!("bad base-256 marker {:#x} in header", field[0]));
        }
        let mut v: u64 = 0;
        for &b in &field[1..] {
            v = v
                .checked_mul(256)
                .and_then(|v| v.checked_add(u64::from(b)))
                .ok_or("number too large in header")?;
        }
        return Ok(v);
    }
    let mut v: u64 = 0;
    let mut seen = false;
    for (i, &b) in field.iter().enumerate() {
        match b {
            b'0'..=b'7' => {
                seen = true;
                v = v
                    .checked_mul(8)
                    .and_then(|v| v.checked_add(u64::from(b - b'0')))
                    .ok_or("number too large in header")?;
            }
            b' ' if !seen => {}
            0 | b' ' => {
                // Python refuses `12 3`, GNU tar reads 12: accept only blanks after the end.
                if field[i..].iter().any(|&x| x != 0 && x != b' ') {
                    return Err("bytes after a number in header".into());
                }
                break;
            }
            _ => return Err(format!("bad octal digit {b:#x} in header")),
        }
    }
    Ok(v)
}

/// The fields of a header that airgap always writes the same way: GNU magic, owner 0/0
/// without names, no device numbers, nothing in the old-GNU time/offset area or after the
/// sparse map. Another value could mean something to another reader.
fn check_fields(b: &[u8; BLOCK]) -> Result<(), String> {
    if &b[257..265] != b"ustar  \0" {
        return Err("not a GNU tar header (airgap writes only those)".into());
    }
    if parse_num(&b[100..108])? > 0o7777 {
        return Err("mode with file-type bits".into());
    }
    if parse_num(&b[108..116])? != 0 || parse_num(&b[116..124])? != 0 {
        return Err("an owner other than 0/0 (GNU tar as root would give it away)".into());
    }
    if b[265..345].iter().any(|&x| x != 0) {
        return Err("owner names or device numbers (airgap writes none)".into());
    }
    if b[156] == b'S' && (b[345..386].iter().any(|&x| x != 0) || b[495..].iter().any(|&x| x != 0)) {
        return Err("bytes in the unused fields of a sparse header".into());
    }
    Ok(())
}

fn cstr(field: &[u8]) -> &[u8] {
    match field.iter().position(|&b| b == 0) {
        Some(n) => &field[..n],
        None => field,
    }
}

impl<R: Read> TarReader<R> {
    /// Read entries from `inner`.
    pub fn new(inner: R) -> Self {
        TarReader {
            inner,
            remaining: 0,
            pad: 0,
            offset: 0,
            ended: false,
        }
    }

    /// The underlying reader.
    pub fn get_mut(&mut self) -> &mut R {
        &mut self.inner
    }

    fn read_block(&mut self, block: &mut [u8; BLOCK]) -> io::Result<bool> {
        let mut got = 0;
        while got < BLOCK {
            match self.inner.read(&mut block[got..]) {
                Ok(0) => break,
                Ok(n) => got += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        self.offset += got as u64;
        if got == 0 {
            return Ok(false);
        }
        if got < BLOCK {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("archive cut short at byte {}", self.offset),
            ));
        }
        Ok(true)
    }

    fn skip_rest(&mut self) -> io::Result<()> {
        let mut left = self.remaining + self.pad;
        let mut buf = [0u8; 8192];
        while left > 0 {
            let n = left.min(buf.len() as u64) as usize;
            self.inner
                .read_exact(&mut buf[..n])
                .map_err(|e| eof(e, self.offset))?;
            self.offset += n as u64;
            left -= n as u64;
        }
        self.remaining = 0;
        self.pad = 0;
        Ok(())
    }

    fn read_long(&mut self, size: u64) -> io::Result<Vec<u8>> {
        if size > MAX_LONG_NAME {
            return Err(invalid(format!(
                "extended name of {size} bytes is too long"
            )));
        }
        let mut v = vec![0u8; size as usize];
        self.inner
            .read_exact(&mut v)
            .map_err(|e| eof(e, self.offset))?;
        self.offset += size;
        self.remaining = 0;
        self.pad = 0;
        // GNU tar and Python read a long name up to its NUL, even past `size` into the
        // padding: only a name that ends in its one NUL at `size`, then zeros, means the same
        // to all of them.
        let mut pad = vec![0u8; padding(size) as usize];
        self.inner
            .read_exact(&mut pad)
            .map_err(|e| eof(e, self.offset))?;
        self.offset += pad.len() as u64;
        if v.last() != Some(&0) || cstr(&v).len() != v.len() - 1 || pad.iter().any(|&b| b != 0) {
            return Err(invalid(format!(
                "extended name at byte {} is not one NUL-terminated name followed by zeros",
                self.offset
            )));
        }
        v.pop();
        Ok(v)
    }

    /// The next entry, or `None` at the end-of-archive marker. A stream that ends without
    /// the marker is an error: that is how a cut-short bundle is caught.
    pub fn next_entry(&mut self) -> io::Result<Option<TarEntry>> {
        if self.ended {
            return Ok(None);
        }
        self.skip_rest()?;
        let mut long_path: Option<Vec<u8>> = None;
        let mut long_link: Option<Vec<u8>> = None;
        loop {
            let mut b = [0u8; BLOCK];
            if !self.read_block(&mut b)? {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!(
                        "archive ends at byte {} without its end marker (cut short?)",
                        self.offset
                    ),
                ));
            }
            if b.iter().all(|&x| x == 0) {
                if long_path.is_some() || long_link.is_some() {
                    return Err(invalid("extended name without its entry".into()));
                }
                // End marker: a second zero block must follow, then only zeros to the end.
                let mut z = [0u8; BLOCK];
                if !self.read_block(&mut z)? || z.iter().any(|&x| x != 0) {
                    return Err(invalid(format!(
                        "incomplete end marker at byte {}",
                        self.offset
                    )));
                }
                loop {
                    if !self.read_block(&mut z)? {
                        break;
                    }
                    if z.iter().any(|&x| x != 0) {
                        return Err(invalid(format!(
                            "data after the end marker at byte {}",
                            self.offset
                        )));
                    }
                }
                self.ended = true;
                return Ok(None);
            }
            let stored: u64 = parse_num(&b[148..156]).map_err(invalid)?;
            let mut copy = b;
            copy[148..156].copy_from_slice(b"        ");
            let sum: u64 = copy.iter().map(|&x| u64::from(x)).sum();
            if sum != stored {
                return Err(invalid(format!(
                    "header checksum mismatch at byte {}",
                    self.offset - BLOCK as u64
                )));
            }
            let at = self.offset - BLOCK as u64;
            let flag = b[156];
            check_fields(&b).map_err(|e| invalid(format!("header at byte {at}: {e}")))?;
            let size = parse_num(&b[124..136]).map_err(invalid)?;
            match flag {
                b'L' | b'K' => {
                    let slot = if flag == b'L' {
                        &mut long_path
                    } else {
                        &mut long_link
                    };
                    if slot.is_some() {
                        // GNU tar would keep the second, Python's tarfile the first.
                        return Err(invalid(format!("two extended names in a row at byte {at}")));
                    }
                    let value = self.read_long(size)?;
                    if value.is_empty() {
                        return Err(invalid(format!("empty extended name at byte {at}")));
                    }
                    let slot = if flag == b'L' {
                        &mut long_path
                    } else {
                        &mut long_link
                    };
                    *slot = Some(value);
                    continue;
                }
                _ => {}
            }
            let kind = EntryType::from_flag(flag);
            let mut path = match long_path.take() {
                Some(p) => p,
                None => cstr(&b[..100]).to_vec(),
            };
            if kind != EntryType::Sparse && b[345..].iter().any(|&x| x != 0) {
                return Err(invalid(format!(
                    "header at byte {at}: bytes in the prefix field (POSIX readers would prepend them to the name)"
                )));
            }
            if kind == EntryType::Dir && path.len() > 1 && path.ends_with(b"/") {
                path.pop();
            } else if path.ends_with(b"/") {
                // GNU tar makes any entry whose name ends in `/` a directory, with its data
                // read as more headers. Found by the tar_differential fuzz target.
                return Err(invalid(format!(
                    "{}: a name ending in `/` on an entry that is not a directory",
                    String::from_utf8_lossy(&path)
                )));
            }
            let link = long_link
                .take()
                .unwrap_or_else(|| cstr(&b[157..257]).to_vec());
            let mode = parse_num(&b[100..108]).map_err(invalid)?;
            let mtime = parse_num(&b[136..148]).map_err(invalid)?;
            let mut real_size = size;
            let mut sparse = Vec::new();
            if kind == EntryType::Sparse {
                real_size = parse_num(&b[483..495]).map_err(invalid)?;
                let push = |field: &[u8], sparse: &mut Vec<(u64, u64)>| -> io::Result<()> {
                    let off = parse_num(&field[..12]).map_err(invalid)?;
                    let len = parse_num(&field[12..24]).map_err(invalid)?;
                    if field.iter().any(|&x| x != 0) {
                        sparse.push((off, len));
                    }
                    Ok(())
                };
                for i in 0..4 {
                    push(&b[386 + i * 24..410 + i * 24], &mut sparse)?;
                }
                let mut more = b[482] != 0;
                while more {
                    let mut e = [0u8; BLOCK];
                    if !self.read_block(&mut e)? {
                        return Err(invalid("sparse map cut short".into()));
                    }
                    for i in 0..21 {
                        push(&e[i * 24..i * 24 + 24], &mut sparse)?;
                    }
                    if sparse.len() > MAX_SPARSE {
                        return Err(invalid("sparse map too large".into()));
                    }
                    more = e[504] != 0;
                }
                let mut end = 0u64;
                let mut data = 0u64;
                for &(off, len) in &sparse {
                    if off < end {
                        return Err(invalid("sparse map out of order".into()));
                    }
                    end = off
                        .checked_add(len)
                        .ok_or_else(|| invalid("sparse map overflow".into()))?;
                    data += len;
                }
                if end > real_size || data != size {
                    return Err(invalid("sparse map does not match the sizes".into()));
                }
            }
            let what = match kind {
                EntryType::HardLink => Some("hard link"),
                EntryType::Symlink => Some("symbolic link"),
                EntryType::Dir => Some("directory"),
                _ => None,
            };
            if let Some(what) = what {
                if size != 0 {
                    return Err(invalid(format!(
                        "{}: a {what} header with {size} bytes of data (GNU tar and Python's tarfile would read them as more entries)",
                        String::from_utf8_lossy(&path)
                    )));
                }
            } else if !link.is_empty() && matches!(kind, EntryType::File | EntryType::Sparse) {
                return Err(invalid(format!(
                    "{}: a file header with a link name",
                    String::from_utf8_lossy(&path)
                )));
            }
            self.remaining = size;
            self.pad = padding(size);
            return Ok(Some(TarEntry {
                path,
                kind,
                mode,
                size,
                real_size,
                mtime,
                link,
                sparse,
            }));
        }
    }

    /// Read data of the current entry; 0 at its end.
    pub fn read_data(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.remaining == 0 {
            return Ok(0);
        }
        let n = buf
            .len()
            .min(self.remaining.min(usize::MAX as u64) as usize);
        let got = self.inner.read(&mut buf[..n])?;
        if got == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("archive cut short at byte {}", self.offset),
            ));
        }
        self.offset += got as u64;
        self.remaining -= got as u64;
        Ok(got)
    }

    /// Read the whole data of the current entry, refusing more than `limit` bytes.
    pub fn read_all(&mut self, limit: u64) -> io::Result<Vec<u8>> {
        if self.remaining > limit {
            return Err(invalid(format!(
                "entry of {} bytes is larger than the {limit} bytes allowed",
                self.remaining
            )));
        }
        let mut v = vec![0u8; self.remaining as usize];
        let mut got = 0;
        while got < v.len() {
            got += self.read_data(&mut v[got..])?;
        }
        Ok(v)
    }
}

fn invalid(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg)
}

fn eof(e: io::Error, at: u64) -> io::Error {
    if e.kind() == io::ErrorKind::UnexpectedEof {
        io::Error::new(
            io::ErrorKind::UnexpectedEof,
            format!("archive cut short at byte {at}"),
        )
    } else {
        e
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn long_names_and_big_numbers_round_trip() {
        let long = vec![b'a'; 300];
        let mut out = Vec::new();
        write_header(
            &mut out,
            &Header {
                path: &long,
                kind: EntryType::Symlink,
                mode: 0o777,
                size: 0,
                mtime: 12345,
                link: &long,
                sparse: None,
            },
        );
        let segs = [(0u64, 0u64), (1 << 34, 0)];
        write_header(
            &mut out,
            &Header {
                path: b"t/sparse",
                kind: EntryType::Sparse,
                mode: 0o644,
                size: 0,
                mtime: 1,
                link: b"",
                sparse: Some((1 << 34, &segs)),
            },
        );
        let n = out.len() as u64;
        write_end(&mut out, n).unwrap();
        let mut r = TarReader::new(&out[..]);
        let e = r.next_entry().unwrap().unwrap();
        assert_eq!(e.path, long);
        assert_eq!(e.link, long);
        assert_eq!(e.mtime, 12345);
        let e = r.next_entry().unwrap().unwrap();
        assert_eq!(e.kind, EntryType::Sparse);
        assert_eq!(e.real_size, 1 << 34);
        assert!(r.next_entry().unwrap().is_none());
    }

    #[test]
    fn missing_end_marker_is_an_error() {
        let mut out = Vec::new();
        write_header(
            &mut out,
            &Header {
                path: b"t",
                kind: EntryType::Dir,
                mode: 0o755,
                size: 0,
                mtime: 0,
                link: b"",
                sparse: None,
            },
        );
        let mut r = TarReader::new(&out[..]);
        assert!(r.next_entry().unwrap().is_some());
        assert!(r.next_entry().is_err());
    }
}
