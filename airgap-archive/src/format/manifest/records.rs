//! The manifest's file records, kept on disk instead of in memory: a reader holds a
//! bundle's metadata (small) and reads its files block from two unnamed temporary files (the
//! records as the canonical one-line form of [`crate::format::manifest`], sorted by path bytes, and
//! the offset of each line), so that `verify`, `unpack` and `inspect` of a bundle of a
//! million files use as little memory as those of a bundle of ten. A parsed record costs
//! about 400 bytes in memory, its line about 240 on disk.

use std::fs::File;
use std::io::{self, BufRead, BufReader, BufWriter, Read, Write};
use std::os::unix::fs::FileExt;

use crate::error::ArchiveError;
use crate::format::manifest::{parse_record, record_path_key, write_record, FileRecord};
use crate::spill::{self, Decoder, Record, Sorter};

/// The records of a manifest, sorted by path bytes, on disk.
#[derive(Debug)]
pub struct Records {
    /// One canonical record line after another.
    lines: File,
    /// Bytes of `lines`.
    end: u64,
    /// The start of each line, as a little-endian `u64`.
    offsets: File,
    count: u64,
    total_size: u64,
    /// The path of every [`FENCE`]th record, in memory: a search reads one block of lines
    /// instead of a line per step (a bundle's hard links each look their first copy up).
    fences: Vec<Vec<u8>>,
}

/// Records a block: a search's one read is about 8 KiB, and memory 2 bytes a record.
const FENCE: u64 = 32;

impl Records {
    /// How many records.
    pub fn len(&self) -> u64 {
        self.count
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Total size of the files (saturating: a hostile manifest may declare any sizes).
    pub fn total_size(&self) -> u64 {
        self.total_size
    }

    /// Every record, in path order.
    pub fn iter(&self) -> Iter<'_> {
        Iter {
            reader: BufReader::with_capacity(
                64 * 1024,
                At {
                    file: &self.lines,
                    pos: 0,
                    end: self.end,
                },
            ),
            line: Vec::new(),
        }
    }

    fn offset(&self, index: u64) -> io::Result<u64> {
        if index >= self.count {
            return Ok(self.end);
        }
        let mut b = [0u8; 8];
        self.offsets.read_exact_at(&mut b, index * 8)?;
        Ok(u64::from_le_bytes(b))
    }

    /// The record at `index` (in path order).
    pub fn get(&self, index: u64) -> Result<FileRecord, ArchiveError> {
        self.read(index).map_err(scratch_error)
    }

    fn read(&self, index: u64) -> io::Result<FileRecord> {
        decode_line(&self.line(index)?)
    }

    /// The lines of records `from..to`, in one read.
    fn lines_of(&self, from: u64, to: u64) -> io::Result<Vec<u8>> {
        let (start, end) = (self.offset(from)?, self.offset(to)?);
        let len = end.checked_sub(start).ok_or_else(spill::corrupt)?;
        let mut lines = vec![0u8; len as usize];
        self.lines.read_exact_at(&mut lines, start)?;
        Ok(lines)
    }

    fn line(&self, index: u64) -> io::Result<Vec<u8>> {
        self.lines_of(index, index + 1)
    }

    /// The record of `path` and its index: its block by a binary search of the fences in
    /// memory, then one read of the block, of whose lines only the paths are parsed until
    /// the one found.
    pub fn find(&self, path: &[u8]) -> Result<Option<(u64, FileRecord)>, ArchiveError> {
        let block = self.fences.partition_point(|f| f.as_slice() <= path);
        let Some(block) = block.checked_sub(1) else {
            return Ok(None);
        };
        let from = block as u64 * FENCE;
        let to = (from + FENCE).min(self.count);
        let lines = self.lines_of(from, to).map_err(scratch_error)?;
        for (i, line) in lines.split_inclusive(|&b| b == b'\n').enumerate() {
            let key = std::str::from_utf8(line)
                .ok()
                .and_then(record_path_key)
                .ok_or_else(|| scratch_error(spill::corrupt()))?;
            match key.as_slice().cmp(path) {
                std::cmp::Ordering::Less => {}
                std::cmp::Ordering::Greater => break,
                std::cmp::Ordering::Equal => {
                    let r = decode_line(line).map_err(scratch_error)?;
                    return Ok(Some((from + i as u64, r)));
                }
            }
        }
        Ok(None)
    }
}

fn decode_line(line: &[u8]) -> io::Result<FileRecord> {
    std::str::from_utf8(line)
        .ok()
        .and_then(parse_record)
        .ok_or_else(spill::corrupt)
}

/// Positioned reads of a part of a file.
pub(crate) struct At<'a> {
    pub(crate) file: &'a File,
    pub(crate) pos: u64,
    pub(crate) end: u64,
}

impl Read for At<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = (buf.len() as u64).min(self.end - self.pos) as usize;
        if n == 0 {
            return Ok(0);
        }
        let got = self.file.read_at(&mut buf[..n], self.pos)?;
        self.pos += got as u64;
        Ok(got)
    }
}

/// The records in path order ([`Records::iter`]).
pub struct Iter<'a> {
    reader: BufReader<At<'a>>,
    line: Vec<u8>,
}

impl Iterator for Iter<'_> {
    type Item = Result<FileRecord, ArchiveError>;
    fn next(&mut self) -> Option<Self::Item> {
        self.line.clear();
        match self.reader.read_until(b'\n', &mut self.line) {
            Ok(0) => None,
            Ok(_) => Some(decode_line(&self.line).map_err(scratch_error)),
            Err(e) => Some(Err(scratch_error(e))),
        }
    }
}

/// The error of a scratch file that cannot be written or read back.
pub(crate) fn scratch_error(e: io::Error) -> ArchiveError {
    ArchiveError::io(
        "using scratch files in",
        std::env::temp_dir().join("(unnamed)"),
        e,
    )
}

/// Collects the records in manifest order and sorts them (through [`spill::Sorter`], in
/// flat memory) when the manifest did not list them in order, as airgap always does.
pub(crate) struct Builder {
    lines: BufWriter<File>,
    offsets: BufWriter<File>,
    pos: u64,
    count: u64,
    total_size: u64,
    prev: Option<Vec<u8>>,
    sorted: bool,
    /// The first path listed twice in a row.
    twice: Option<String>,
    line: String,
    fences: Vec<Vec<u8>>,
}

/// One line on its way through the sorter: by path, then by manifest order.
#[derive(PartialEq, Eq, PartialOrd, Ord)]
struct Line {
    path: Vec<u8>,
    seq: u64,
    text: Vec<u8>,
}

impl Record for Line {
    fn encode(&self, out: &mut Vec<u8>) {
        spill::put_bytes(out, &self.path);
        spill::put_u64(out, self.seq);
        spill::put_bytes(out, &self.text);
    }
    fn decode(bytes: &[u8]) -> io::Result<Self> {
        let mut d = Decoder::new(bytes);
        Ok(Line {
            path: d.bytes()?.to_vec(),
            seq: d.u64()?,
            text: d.bytes()?.to_vec(),
        })
    }
}

impl Builder {
    pub(crate) fn new() -> io::Result<Builder> {
        Ok(Builder {
            lines: BufWriter::with_capacity(64 * 1024, tempfile::tempfile()?),
            offsets: BufWriter::with_capacity(16 * 1024, tempfile::tempfile()?),
            pos: 0,
            count: 0,
            total_size: 0,
            prev: None,
            sorted: true,
            twice: None,
            line: String::new(),
            fences: Vec::new(),
        })
    }

    /// Add the next record of the manifest.
    pub(crate) fn push(&mut self, r: &FileRecord) -> io::Result<()> {
        let path = r.path_bytes();
        if let Some(prev) = &self.prev {
            match prev.as_slice().cmp(&path) {
                std::cmp::Ordering::Less => {}
                std::cmp::Ordering::Equal => {
                    if self.twice.is_none() {
                        self.twice = Some(r.path.clone());
                    }
                }
                std::cmp::Ordering::Greater => self.sorted = false,
            }
        }
        if self.count % FENCE == 0 {
            self.fences.push(path.clone());
        }
        self.prev = Some(path);
        self.line.clear();
        write_record(&mut self.line, r);
        self.lines.write_all(self.line.as_bytes())?;
        self.offsets.write_all(&self.pos.to_le_bytes())?;
        self.pos += self.line.len() as u64;
        self.count += 1;
        self.total_size = self.total_size.saturating_add(r.size);
        Ok(())
    }

    /// The records, sorted; and the first path listed twice, if any.
    pub(crate) fn finish(self) -> io::Result<(Records, Option<String>)> {
        let lines = self.lines.into_inner().map_err(|e| e.into_error())?;
        let offsets = self.offsets.into_inner().map_err(|e| e.into_error())?;
        let records = Records {
            lines,
            end: self.pos,
            offsets,
            count: self.count,
            total_size: self.total_size,
            fences: self.fences,
        };
        if self.sorted {
            return Ok((records, self.twice));
        }
        // A manifest airgap did not write: sort it, and look for a path listed twice.
        let mut sorter = Sorter::<Line>::new(spill::DEFAULT_BUDGET);
        let mut raw = BufReader::new(At {
            file: &records.lines,
            pos: 0,
            end: records.end,
        });
        let mut seq = 0u64;
        loop {
            let mut text = Vec::new();
            if raw.read_until(b'\n', &mut text)? == 0 {
                break;
            }
            let path = decode_line(&text)?.path_bytes();
            sorter.push(Line { path, seq, text })?;
            seq += 1;
        }
        let mut again = Builder::new()?;
        let mut twice = None;
        let mut prev: Option<Vec<u8>> = None;
        for line in sorter.finish()? {
            let line = line?;
            if prev.as_deref() == Some(line.path.as_slice()) && twice.is_none() {
                twice = Some(decode_line(&line.text)?.path);
            }
            if again.count % FENCE == 0 {
                again.fences.push(line.path.clone());
            }
            again.offsets.write_all(&again.pos.to_le_bytes())?;
            again.lines.write_all(&line.text)?;
            again.pos += line.text.len() as u64;
            again.count += 1;
            prev = Some(line.path);
        }
        again.total_size = records.total_size;
        let (sorted, _) = again.finish()?;
        Ok((sorted, twice))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::format::manifest::FileType;

    fn record(path: &str) -> FileRecord {
        FileRecord {
            path: path.into(),
            path_hex: None,
            kind: FileType::File,
            size: 3,
            mode: 0o644,
            sha256: Some("ab".repeat(32)),
            plugin: "p".into(),
            package: None,
            target: None,
            target_hex: None,
        }
    }

    fn build(paths: &[&str]) -> (Records, Option<String>) {
        let mut b = Builder::new().unwrap();
        for p in paths {
            b.push(&record(p)).unwrap();
        }
        b.finish().unwrap()
    }

    fn paths(r: &Records) -> Vec<String> {
        r.iter().map(|r| r.unwrap().path).collect()
    }

    #[test]
    fn sorted_records_read_back_in_order_and_are_found() {
        let (r, twice) = build(&["a", "a-b", "a/c", "b", "b/d e"]);
        assert_eq!(twice, None);
        assert_eq!(paths(&r), ["a", "a-b", "a/c", "b", "b/d e"]);
        assert_eq!(r.len(), 5);
        assert_eq!(r.total_size(), 15);
        for (i, p) in ["a", "a-b", "a/c", "b", "b/d e"].iter().enumerate() {
            let (at, found) = r.find(p.as_bytes()).unwrap().unwrap();
            assert_eq!((at, found.path.as_str()), (i as u64, *p));
        }
        assert!(r.find(b"a/b").unwrap().is_none());
        assert!(r.find(b"c").unwrap().is_none());
    }

    #[test]
    fn unsorted_records_are_sorted_and_a_path_listed_twice_is_found() {
        let (r, twice) = build(&["b", "a/c", "a"]);
        assert_eq!(twice, None);
        assert_eq!(paths(&r), ["a", "a/c", "b"]);
        assert_eq!(r.find(b"b").unwrap().unwrap().0, 2);
        let (_, twice) = build(&["b", "a", "b"]);
        assert_eq!(twice.as_deref(), Some("b"));
        let (_, twice) = build(&["a", "a"]);
        assert_eq!(twice.as_deref(), Some("a"));
    }

    #[test]
    fn every_record_of_many_blocks_is_found_sorted_or_not() {
        // Paths over several fences, with one block's edge exactly at a fence.
        let names: Vec<String> = (0..FENCE * 3 + 1).map(|i| format!("d/{i:04}")).collect();
        let sorted: Vec<&str> = names.iter().map(String::as_str).collect();
        let mut shuffled = sorted.clone();
        shuffled.reverse();
        for order in [&sorted, &shuffled] {
            let (r, _) = build(order);
            for (i, p) in sorted.iter().enumerate() {
                let (at, found) = r.find(p.as_bytes()).unwrap().unwrap();
                assert_eq!((at, found.path.as_str()), (i as u64, *p));
            }
            for absent in ["", "c", "d/", "d/0000a", "d/0031z", "d/9999", "e"] {
                assert!(r.find(absent.as_bytes()).unwrap().is_none(), "{absent}");
            }
        }
    }
}
