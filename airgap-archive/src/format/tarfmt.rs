//! The tar dialect airgap writes and reads: GNU headers (`ustar  \0`), `././@LongLink` entries
//! for names and link targets over 100 bytes (raw bytes, so non-UTF-8 names survive), base-256
//! numbers past an octal field (sizes over 8 GiB, mtimes past 2242), and old-GNU sparse
//! entries (`S`) for files with holes. GNU tar and bsdtar read all of it.
//!
//! The writer's header blocks are `tar::Header`s (`new_gnu` and its setters: mode, owner,
//! size, mtime, type, link name); the writer streams their bytes itself, through its
//! parallel compressor, so it is not the crate's `Builder`. What the crate does not do for
//! such a writer is filled by hand, each with its reason where it is done: the name field
//! byte for byte, the `././@LongLink` entries, the sparse map, and GNU tar's form of the
//! checksum.
//!
//! The reader is airgap's own, strict and fuzzed, because a bundle crosses a security
//! boundary and we would rather refuse than guess. It parses only this dialect: a header
//! without the GNU magic is refused (so is a POSIX `ustar\0` one, whose `prefix` field other
//! readers would prepend to the name), and so are bytes in the prefix area. It does not judge
//! entry types itself: any type but `0`, `1`, `2`, `5`, `S`, `L` and `K` (PAX `x`/`g`,
//! devices, fifos, contiguous `7`, the old `\0` file type) comes back as
//! [`EntryType::Other`], which the bundle checker (`read.rs`) refuses. It also takes a few
//! forms other tar writers make and every reader reads alike, which the writer never makes:
//! a directory name ending in `/`, octal numbers with leading blanks or ending in a space,
//! base-256 in any number field, and a checksum in POSIX's form as well as GNU's.
//!
//! It is strict about every field another reader could read differently, so that what
//! `airgap verify` approves means the same to GNU tar, bsdtar and Python's tarfile: data on a
//! directory or link header (other readers take those bytes for more entries), a magic other
//! than GNU's, bytes in the fields we never fill (owner names, device numbers, prefix/atime
//! area), numbers with anything after their terminator or a base-256 marker other than
//! `0x80`, and two long names in a row (GNU tar keeps the last, Python the first).
//! `fuzz/fuzz_targets/tar_differential.rs` checks the reader against GNU tar.

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

/// Encode `h` (with any long-name entries it needs) at the end of `out`. The blocks are
/// `tar::Header`s; the bytes go wherever the caller streams `out` (the writer's own
/// compressor pipeline), which is why this is not the crate's `Builder`. A NUL in a name or
/// link target is refused: no tar header can hold one.
pub fn write_header(out: &mut Vec<u8>, h: &Header<'_>) -> io::Result<()> {
    if h.path.contains(&0) || h.link.contains(&0) {
        return Err(invalid(format!(
            "{}: a NUL byte in a name or link target cannot be stored in a tar header",
            String::from_utf8_lossy(h.path)
        )));
    }
    if h.path.len() > NAME_FIELD {
        long_name(out, tar::EntryType::GNULongName, h.path)?;
    }
    if h.link.len() > NAME_FIELD {
        long_name(out, tar::EntryType::GNULongLink, h.link)?;
    }
    let kind = tar::EntryType::new(h.kind.flag());
    let mut header = gnu_header(h.path, kind, h.mode, h.size, h.mtime, h.link)?;
    let extension = match h.sparse {
        Some((real, segments)) => sparse_map(&mut header, real, segments)?,
        None => Vec::new(),
    };
    set_gnu_cksum(&mut header);
    out.extend_from_slice(header.as_bytes());
    for e in &extension {
        out.extend_from_slice(e.as_bytes());
    }
    Ok(())
}

/// Bytes of the name and link name fields; longer ones get a `././@LongLink` entry.
const NAME_FIELD: usize = 100;

/// A GNU header (`ustar  \0`) with owner 0/0 and no owner names; numbers in octal, or
/// base-256 past their field, as GNU tar writes them (the crate's `set_*` do both). A name
/// or link over [`NAME_FIELD`] bytes keeps its first bytes here, as GNU tar does; its whole
/// value is in the `././@LongLink` entry before.
fn gnu_header(
    name: &[u8],
    kind: tar::EntryType,
    mode: u32,
    size: u64,
    mtime: u64,
    link: &[u8],
) -> io::Result<tar::Header> {
    let mut header = tar::Header::new_gnu();
    set_name(&mut header, name);
    header.set_mode(mode & 0o7777);
    header.set_uid(0);
    header.set_gid(0);
    header.set_size(size);
    header.set_mtime(mtime);
    header.set_entry_type(kind);
    // `set_link_name_literal`, not `set_link_name`: that one rewrites the target through
    // `Path::components` (`a//b` and `a/./b` become `a/b`), and a symlink keeps its bytes.
    header.set_link_name_literal(&link[..link.len().min(NAME_FIELD)])?;
    Ok(header)
}

/// The name field, byte for byte, cut at [`NAME_FIELD`]. By hand because the crate's
/// `set_path` rewrites the path through `Path::components` (dropping `.` and doubled `/`),
/// refuses `..` and absolute paths, and refuses names over 100 bytes instead of cutting
/// them (its `Builder` cuts them at a UTF-8 boundary, GNU tar and airgap at 100 bytes), and
/// the crate has no literal setter for names as it has for link names. The writer stores
/// the bytes it is given: the plan's paths are already clean, and the hostile-archive tests
/// craft the others with this same writer.
fn set_name(header: &mut tar::Header, name: &[u8]) {
    let field = &mut header.as_old_mut().name;
    let n = name.len().min(field.len());
    field[..n].copy_from_slice(&name[..n]);
}

/// A `././@LongLink` entry (type `L` for a name, `K` for a link target): `value` and its
/// NUL as the entry's data, as GNU tar writes it. By hand because the crate writes these
/// only inside its `Builder`.
fn long_name(out: &mut Vec<u8>, kind: tar::EntryType, value: &[u8]) -> io::Result<()> {
    let size = value.len() as u64 + 1;
    let mut header = gnu_header(b"././@LongLink", kind, 0o644, size, 0, b"")?;
    set_gnu_cksum(&mut header);
    out.extend_from_slice(header.as_bytes());
    out.extend_from_slice(value);
    out.push(0);
    pad(out, size);
    Ok(())
}

/// Segments an old-GNU sparse header holds; the rest go to extension blocks of 21.
const SPARSE_IN_HEADER: usize = 4;

/// The old-GNU sparse map of a `S` header: the file's real size and its data segments, the
/// first four in the header, the others in extension blocks, each but the last marked as
/// followed by another. By hand because the crate has these fields but fills them only
/// when its `Builder` reads a file's holes itself; the writer has the map from pass 1.
fn sparse_map(
    header: &mut tar::Header,
    real: u64,
    segments: &[(u64, u64)],
) -> io::Result<Vec<tar::GnuExtSparseHeader>> {
    let gnu = header
        .as_gnu_mut()
        .ok_or_else(|| io::Error::other("a sparse map on a header that is not GNU"))?;
    gnu.set_real_size(real);
    let (first, rest) = segments.split_at(segments.len().min(SPARSE_IN_HEADER));
    for (slot, &(off, len)) in gnu.sparse.iter_mut().zip(first) {
        slot.set_offset(off);
        slot.set_length(len);
    }
    let mut extension: Vec<tar::GnuExtSparseHeader> = Vec::new();
    for chunk in rest.chunks(21) {
        let mut e = tar::GnuExtSparseHeader::new();
        for (slot, &(off, len)) in e.sparse_mut().iter_mut().zip(chunk) {
            slot.set_offset(off);
            slot.set_length(len);
        }
        extension.push(e);
    }
    gnu.set_is_extended(!extension.is_empty());
    let n = extension.len();
    for e in extension.iter_mut().take(n.saturating_sub(1)) {
        e.set_is_extended(true);
    }
    Ok(extension)
}

/// The checksum in GNU tar's form: six octal digits, a NUL and a space. The crate's
/// `set_cksum` computes the same sum but writes it as seven digits and a NUL; airgap keeps
/// GNU's form, which every bundle so far has. A block's sum is at most 512 * 255, below
/// 8^6, so the first of the crate's seven digits is always `0`.
fn set_gnu_cksum(header: &mut tar::Header) {
    header.set_cksum();
    let field = &mut header.as_old_mut().cksum;
    field.copy_within(1..7, 0);
    field[6] = 0;
    field[7] = b' ';
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
        let mut long = LongNames::default();
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
                if long.path.is_some() || long.link.is_some() {
                    return Err(invalid("extended name without its entry".into()));
                }
                self.end_marker()?;
                return Ok(None);
            }
            let at = self.offset - BLOCK as u64;
            check_checksum(&b, at)?;
            check_fields(&b).map_err(|e| invalid(format!("header at byte {at}: {e}")))?;
            let size = parse_num(&b[124..136]).map_err(invalid)?;
            if matches!(b[156], b'L' | b'K') {
                self.long_name(&mut long, b[156], size, at)?;
                continue;
            }
            let entry = self.entry(&b, size, long, at)?;
            self.remaining = size;
            self.pad = padding(size);
            return Ok(Some(entry));
        }
    }

    /// After the first zero block: a second must follow, then only zeros to the end.
    fn end_marker(&mut self) -> io::Result<()> {
        let mut z = [0u8; BLOCK];
        if !self.read_block(&mut z)? || z.iter().any(|&x| x != 0) {
            return Err(invalid(format!(
                "incomplete end marker at byte {}",
                self.offset
            )));
        }
        while self.read_block(&mut z)? {
            if z.iter().any(|&x| x != 0) {
                return Err(invalid(format!(
                    "data after the end marker at byte {}",
                    self.offset
                )));
            }
        }
        self.ended = true;
        Ok(())
    }

    /// A `././@LongLink` entry (`flag` `L`: a name, `K`: a link target) for the entry that
    /// follows. Two of one kind in a row are refused: GNU tar would keep the second,
    /// Python's tarfile the first.
    fn long_name(&mut self, long: &mut LongNames, flag: u8, size: u64, at: u64) -> io::Result<()> {
        let taken = if flag == b'L' {
            long.path.is_some()
        } else {
            long.link.is_some()
        };
        if taken {
            return Err(invalid(format!("two extended names in a row at byte {at}")));
        }
        let value = self.read_long(size)?;
        if value.is_empty() {
            return Err(invalid(format!("empty extended name at byte {at}")));
        }
        if flag == b'L' {
            long.path = Some(value);
        } else {
            long.link = Some(value);
        }
        Ok(())
    }

    /// The entry of header `b` (checksum and fixed fields already checked), with the long
    /// names read before it.
    fn entry(
        &mut self,
        b: &[u8; BLOCK],
        size: u64,
        long: LongNames,
        at: u64,
    ) -> io::Result<TarEntry> {
        let kind = EntryType::from_flag(b[156]);
        let path = entry_path(b, kind, long.path, at)?;
        let link = long.link.unwrap_or_else(|| cstr(&b[157..257]).to_vec());
        let mode = parse_num(&b[100..108]).map_err(invalid)?;
        let mtime = parse_num(&b[136..148]).map_err(invalid)?;
        let (real_size, sparse) = if kind == EntryType::Sparse {
            self.sparse_map(b, size)?
        } else {
            (size, Vec::new())
        };
        check_data(&path, kind, size, &link)?;
        Ok(TarEntry {
            path,
            kind,
            mode,
            size,
            real_size,
            mtime,
            link,
            sparse,
        })
    }

    /// The old-GNU sparse map of header `b` and its extension blocks: the real size and
    /// the data segments, in order, within the real size, adding up to the `size` stored.
    fn sparse_map(&mut self, b: &[u8; BLOCK], size: u64) -> io::Result<(u64, Vec<(u64, u64)>)> {
        let real_size = parse_num(&b[483..495]).map_err(invalid)?;
        let mut sparse = Vec::new();
        for i in 0..4 {
            push_segment(&b[386 + i * 24..410 + i * 24], &mut sparse)?;
        }
        let mut more = b[482] != 0;
        while more {
            let mut e = [0u8; BLOCK];
            if !self.read_block(&mut e)? {
                return Err(invalid("sparse map cut short".into()));
            }
            for i in 0..21 {
                push_segment(&e[i * 24..i * 24 + 24], &mut sparse)?;
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
        Ok((real_size, sparse))
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

/// The `././@LongLink` values read for the entry that follows them.
#[derive(Default)]
struct LongNames {
    path: Option<Vec<u8>>,
    link: Option<Vec<u8>>,
}

/// The stored checksum of header `b` (at byte `at`) against its bytes.
fn check_checksum(b: &[u8; BLOCK], at: u64) -> io::Result<()> {
    let stored: u64 = parse_num(&b[148..156]).map_err(invalid)?;
    let mut copy = *b;
    copy[148..156].copy_from_slice(b"        ");
    let sum: u64 = copy.iter().map(|&x| u64::from(x)).sum();
    if sum != stored {
        return Err(invalid(format!("header checksum mismatch at byte {at}")));
    }
    Ok(())
}

/// The entry's name: the long name before it, or the name field. Refused: bytes in the
/// prefix field (POSIX readers would prepend them), and a name ending in `/` on anything
/// but a directory (GNU tar makes it a directory, with its data read as more headers;
/// found by the tar_differential fuzz target). A directory's trailing `/` is dropped.
fn entry_path(
    b: &[u8; BLOCK],
    kind: EntryType,
    long: Option<Vec<u8>>,
    at: u64,
) -> io::Result<Vec<u8>> {
    let mut path = match long {
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
        return Err(invalid(format!(
            "{}: a name ending in `/` on an entry that is not a directory",
            String::from_utf8_lossy(&path)
        )));
    }
    Ok(path)
}

/// One (offset, length) slot of a sparse map; an all-zero slot is unused.
fn push_segment(field: &[u8], sparse: &mut Vec<(u64, u64)>) -> io::Result<()> {
    let off = parse_num(&field[..12]).map_err(invalid)?;
    let len = parse_num(&field[12..24]).map_err(invalid)?;
    if field.iter().any(|&x| x != 0) {
        sparse.push((off, len));
    }
    Ok(())
}

/// Data only where it belongs: a link or directory header with a size would have GNU tar
/// and Python's tarfile read its data as more entries, and a file has no link name.
fn check_data(path: &[u8], kind: EntryType, size: u64, link: &[u8]) -> io::Result<()> {
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
                String::from_utf8_lossy(path)
            )));
        }
    } else if !link.is_empty() && matches!(kind, EntryType::File | EntryType::Sparse) {
        return Err(invalid(format!(
            "{}: a file header with a link name",
            String::from_utf8_lossy(path)
        )));
    }
    Ok(())
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
        )
        .unwrap();
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
        )
        .unwrap();
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
        )
        .unwrap();
        let mut r = TarReader::new(&out[..]);
        assert!(r.next_entry().unwrap().is_some());
        assert!(r.next_entry().is_err());
    }

    #[test]
    fn a_nul_in_a_name_or_link_is_refused() {
        for (path, link) in [(&b"t/a\0b"[..], &b""[..]), (b"t/l", b"x\0y")] {
            let mut out = Vec::new();
            let h = Header {
                path,
                kind: EntryType::Symlink,
                mode: 0o777,
                size: 0,
                mtime: 0,
                link,
                sparse: None,
            };
            let e = write_header(&mut out, &h).unwrap_err();
            assert!(e.to_string().contains("NUL byte"), "{e}");
            assert!(out.is_empty());
        }
    }
}
