//! Sorting more records than memory should hold: records are kept in memory up to a budget,
//! then written out as sorted runs to unnamed temporary files and merged when read back.
//! This is what keeps the builder's memory flat whatever the number of paths: the plan and
//! the writer keep per-path state here rather than in maps.

use std::cmp::{Ordering, Reverse};
use std::collections::BinaryHeap;
use std::fs::File;
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::os::unix::fs::FileExt;

/// Records in memory before a sort spills a run, unless told otherwise: about 2 to 6 MiB of
/// records, whatever their kind.
pub(crate) const DEFAULT_BUDGET: usize = 16 * 1024;
/// Runs merged at once; beyond this, runs are first merged into one (so that the read
/// buffers of a merge stay bounded too).
const MAX_FAN_IN: usize = 32;
/// Read buffer per run while merging.
const RUN_BUF: usize = 16 * 1024;

/// A record that can go to disk and come back.
pub(crate) trait Record: Sized {
    /// Append the record's bytes.
    fn encode(&self, out: &mut Vec<u8>);
    /// Read a record from exactly the bytes [`Record::encode`] wrote.
    fn decode(bytes: &[u8]) -> io::Result<Self>;
}

/// A corrupt scratch file: only a bug or a disk error gives this.
pub(crate) fn corrupt() -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, "a scratch file is corrupt")
}

/// Reading the fields of a record back.
pub(crate) struct Decoder<'a> {
    rest: &'a [u8],
}

impl<'a> Decoder<'a> {
    pub(crate) fn new(bytes: &'a [u8]) -> Self {
        Decoder { rest: bytes }
    }
    pub(crate) fn take(&mut self, n: usize) -> io::Result<&'a [u8]> {
        if self.rest.len() < n {
            return Err(corrupt());
        }
        let (head, tail) = self.rest.split_at(n);
        self.rest = tail;
        Ok(head)
    }
    pub(crate) fn u8(&mut self) -> io::Result<u8> {
        Ok(self.take(1)?[0])
    }
    pub(crate) fn u32(&mut self) -> io::Result<u32> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
    pub(crate) fn u64(&mut self) -> io::Result<u64> {
        let mut a = [0u8; 8];
        a.copy_from_slice(self.take(8)?);
        Ok(u64::from_le_bytes(a))
    }
    pub(crate) fn array32(&mut self) -> io::Result<[u8; 32]> {
        let mut a = [0u8; 32];
        a.copy_from_slice(self.take(32)?);
        Ok(a)
    }
    /// Bytes written by [`put_bytes`].
    pub(crate) fn bytes(&mut self) -> io::Result<&'a [u8]> {
        let n = self.u32()? as usize;
        self.take(n)
    }
}

pub(crate) fn put_u32(out: &mut Vec<u8>, v: u32) {
    out.extend_from_slice(&v.to_le_bytes());
}

pub(crate) fn put_u64(out: &mut Vec<u8>, v: u64) {
    out.extend_from_slice(&v.to_le_bytes());
}

/// Length-prefixed bytes.
pub(crate) fn put_bytes(out: &mut Vec<u8>, v: &[u8]) {
    put_u32(out, v.len() as u32);
    out.extend_from_slice(v);
}

/// Frame one record: its length, then its bytes.
fn frame<T: Record>(record: &T, scratch: &mut Vec<u8>) {
    scratch.clear();
    scratch.extend_from_slice(&[0; 4]);
    record.encode(scratch);
    let len = (scratch.len() - 4) as u32;
    scratch[..4].copy_from_slice(&len.to_le_bytes());
}

/// Records written in order to an unnamed temporary file, read back in the same order.
pub(crate) struct Tape {
    out: BufWriter<File>,
    scratch: Vec<u8>,
    len: u64,
}

impl Tape {
    pub(crate) fn new() -> io::Result<Tape> {
        Ok(Tape {
            out: BufWriter::with_capacity(RUN_BUF, tempfile::tempfile()?),
            scratch: Vec::new(),
            len: 0,
        })
    }

    pub(crate) fn push<T: Record>(&mut self, record: &T) -> io::Result<()> {
        frame(record, &mut self.scratch);
        self.out.write_all(&self.scratch)?;
        self.len += 1;
        Ok(())
    }

    /// The file, complete.
    pub(crate) fn finish(self) -> io::Result<(File, u64)> {
        let file = self.out.into_inner().map_err(|e| e.into_error())?;
        Ok((file, self.len))
    }
}

/// Reads framed records from a file from a given offset with positioned reads, so that
/// several readers can share one file.
pub(crate) struct TapeReader<'a, T> {
    file: &'a File,
    pos: u64,
    end: u64,
    buf: Vec<u8>,
    at: usize,
    _record: std::marker::PhantomData<T>,
}

impl<'a, T: Record> TapeReader<'a, T> {
    pub(crate) fn new(file: &'a File, start: u64, end: u64) -> Self {
        TapeReader {
            file,
            pos: start,
            end,
            buf: Vec::new(),
            at: 0,
            _record: std::marker::PhantomData,
        }
    }

    /// Make `n` bytes available at `self.at`.
    fn fill(&mut self, n: usize) -> io::Result<bool> {
        if self.buf.len() - self.at >= n {
            return Ok(true);
        }
        self.buf.drain(..self.at);
        self.at = 0;
        let want = n.max(RUN_BUF);
        while self.buf.len() < want && self.pos < self.end {
            let old = self.buf.len();
            let room = (want - old).min((self.end - self.pos) as usize);
            self.buf.resize(old + room, 0);
            let got = self.file.read_at(&mut self.buf[old..], self.pos)?;
            self.buf.truncate(old + got);
            if got == 0 {
                break;
            }
            self.pos += got as u64;
        }
        Ok(self.buf.len() >= n)
    }

    /// The next record, or `None` at the end.
    pub(crate) fn next_record(&mut self) -> io::Result<Option<T>> {
        if !self.fill(4)? {
            return if self.buf.len() == self.at {
                Ok(None)
            } else {
                Err(corrupt())
            };
        }
        let b = &self.buf[self.at..self.at + 4];
        let len = u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize;
        if !self.fill(4 + len)? {
            return Err(corrupt());
        }
        let record = T::decode(&self.buf[self.at + 4..self.at + 4 + len])?;
        self.at += 4 + len;
        Ok(Some(record))
    }
}

impl<T: Record> Iterator for TapeReader<'_, T> {
    type Item = io::Result<T>;
    fn next(&mut self) -> Option<io::Result<T>> {
        self.next_record().transpose()
    }
}

/// A last-in first-out stack that keeps its newest records in memory and moves the older
/// ones to an unnamed temporary file beyond a budget. On disk each record is followed by its
/// length, so that it can be read back from the end.
pub(crate) struct Stack<T> {
    memory: Vec<T>,
    budget: usize,
    file: Option<File>,
    /// Bytes of the file in use.
    len: u64,
    scratch: Vec<u8>,
}

impl<T: Record> Stack<T> {
    pub(crate) fn new(budget: usize) -> Self {
        Stack {
            memory: Vec::new(),
            budget: budget.max(2),
            file: None,
            len: 0,
            scratch: Vec::new(),
        }
    }

    pub(crate) fn push(&mut self, record: T) -> io::Result<()> {
        self.memory.push(record);
        if self.memory.len() > self.budget {
            let file = match &mut self.file {
                Some(f) => f,
                None => self.file.insert(tempfile::tempfile()?),
            };
            let mut out = Vec::new();
            for r in self.memory.drain(..self.budget / 2) {
                let start = out.len();
                r.encode(&mut out);
                let n = (out.len() - start) as u32;
                out.extend_from_slice(&n.to_le_bytes());
            }
            file.write_all_at(&out, self.len)?;
            self.len += out.len() as u64;
        }
        Ok(())
    }

    pub(crate) fn pop(&mut self) -> io::Result<Option<T>> {
        if let Some(r) = self.memory.pop() {
            return Ok(Some(r));
        }
        let Some(file) = &self.file else {
            return Ok(None);
        };
        if self.len == 0 {
            return Ok(None);
        }
        let mut n = [0u8; 4];
        let at = self.len.checked_sub(4).ok_or_else(corrupt)?;
        file.read_exact_at(&mut n, at)?;
        let n = u64::from(u32::from_le_bytes(n));
        let start = at.checked_sub(n).ok_or_else(corrupt)?;
        self.scratch.resize(n as usize, 0);
        file.read_exact_at(&mut self.scratch, start)?;
        self.len = start;
        T::decode(&self.scratch).map(Some)
    }
}

/// Sorts records by their `Ord`, spilling sorted runs to disk beyond a budget.
pub(crate) struct Sorter<T> {
    memory: Vec<T>,
    budget: usize,
    runs: Vec<File>,
}

impl<T: Record + Ord> Sorter<T> {
    /// A sorter keeping at most `budget` records in memory.
    pub(crate) fn new(budget: usize) -> Self {
        Sorter {
            memory: Vec::new(),
            budget: budget.max(1),
            runs: Vec::new(),
        }
    }

    pub(crate) fn push(&mut self, record: T) -> io::Result<()> {
        self.memory.push(record);
        if self.memory.len() >= self.budget {
            self.spill()?;
        }
        Ok(())
    }

    fn spill(&mut self) -> io::Result<()> {
        self.memory.sort_unstable();
        let mut tape = Tape::new()?;
        for r in self.memory.drain(..) {
            tape.push(&r)?;
        }
        self.runs.push(tape.finish()?.0);
        if self.runs.len() >= MAX_FAN_IN {
            let runs = std::mem::take(&mut self.runs);
            let mut merged = Merge::<T>::new(runs, Vec::new())?;
            let mut tape = Tape::new()?;
            while let Some(r) = merged.next_record()? {
                tape.push(&r)?;
            }
            self.runs.push(tape.finish()?.0);
        }
        Ok(())
    }

    /// Every record pushed, in order.
    pub(crate) fn finish(mut self) -> io::Result<Merge<T>> {
        self.memory.sort_unstable();
        Merge::new(self.runs, self.memory)
    }
}

/// The sorted runs of a [`Sorter`] and what stayed in memory, merged.
pub(crate) struct Merge<T> {
    readers: Vec<BufReader<File>>,
    /// The head of each run (by run index); the memory part is the last "run".
    heap: BinaryHeap<Reverse<Head<T>>>,
    memory: std::vec::IntoIter<T>,
    scratch: Vec<u8>,
}

struct Head<T> {
    record: T,
    run: usize,
}

impl<T: Ord> PartialEq for Head<T> {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl<T: Ord> Eq for Head<T> {}
impl<T: Ord> PartialOrd for Head<T> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl<T: Ord> Ord for Head<T> {
    fn cmp(&self, other: &Self) -> Ordering {
        self.record
            .cmp(&other.record)
            .then(self.run.cmp(&other.run))
    }
}

impl<T: Record + Ord> Merge<T> {
    fn new(runs: Vec<File>, memory: Vec<T>) -> io::Result<Self> {
        let mut merge = Merge {
            readers: Vec::with_capacity(runs.len()),
            heap: BinaryHeap::new(),
            memory: memory.into_iter(),
            scratch: Vec::new(),
        };
        for mut file in runs {
            io::Seek::rewind(&mut file)?;
            merge.readers.push(BufReader::with_capacity(RUN_BUF, file));
        }
        for run in 0..merge.readers.len() {
            merge.advance(run)?;
        }
        merge.advance(merge.readers.len())?;
        Ok(merge)
    }

    /// Put the next record of `run` on the heap.
    fn advance(&mut self, run: usize) -> io::Result<()> {
        let next = match self.readers.get_mut(run) {
            Some(reader) => read_framed(reader, &mut self.scratch)?,
            None => self.memory.next(),
        };
        if let Some(record) = next {
            self.heap.push(Reverse(Head { record, run }));
        }
        Ok(())
    }

    pub(crate) fn next_record(&mut self) -> io::Result<Option<T>> {
        let Some(Reverse(head)) = self.heap.pop() else {
            return Ok(None);
        };
        self.advance(head.run)?;
        Ok(Some(head.record))
    }

    /// The next record, if `same` holds for it.
    pub(crate) fn next_if(&mut self, same: impl Fn(&T) -> bool) -> io::Result<Option<T>> {
        match self.heap.peek() {
            Some(Reverse(head)) if same(&head.record) => self.next_record(),
            _ => Ok(None),
        }
    }
}

impl<T: Record + Ord> Iterator for Merge<T> {
    type Item = io::Result<T>;
    fn next(&mut self) -> Option<io::Result<T>> {
        self.next_record().transpose()
    }
}

fn read_framed<T: Record>(r: &mut impl Read, scratch: &mut Vec<u8>) -> io::Result<Option<T>> {
    let mut len = [0u8; 4];
    match r.read_exact(&mut len) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let len = u32::from_le_bytes(len) as usize;
    scratch.resize(len, 0);
    r.read_exact(scratch)?;
    T::decode(scratch).map(Some)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
    struct Pair(u64, Vec<u8>);

    impl Record for Pair {
        fn encode(&self, out: &mut Vec<u8>) {
            put_u64(out, self.0);
            put_bytes(out, &self.1);
        }
        fn decode(bytes: &[u8]) -> io::Result<Self> {
            let mut d = Decoder::new(bytes);
            Ok(Pair(d.u64()?, d.bytes()?.to_vec()))
        }
    }

    fn sorted(n: u64, budget: usize) -> Vec<Pair> {
        let mut s = Sorter::new(budget);
        for i in 0..n {
            let k = (i * 7919) % n;
            s.push(Pair(k, format!("v{k}").into_bytes())).unwrap();
        }
        s.finish().unwrap().collect::<io::Result<Vec<_>>>().unwrap()
    }

    #[test]
    fn sorts_in_memory_with_one_run_and_with_cascading_runs() {
        let want: Vec<Pair> = (0..1000)
            .map(|k| Pair(k, format!("v{k}").into_bytes()))
            .collect();
        assert_eq!(sorted(1000, 10_000), want);
        assert_eq!(sorted(1000, 600), want);
        // 1000 / 7 runs: more than MAX_FAN_IN, so runs are merged on the way.
        assert_eq!(sorted(1000, 7), want);
    }

    #[test]
    fn stack_pops_in_reverse_order_across_memory_and_disk() {
        let mut stack = Stack::new(4);
        for k in 0..10u64 {
            stack.push(Pair(k, vec![b'y'; k as usize])).unwrap();
        }
        assert_eq!(stack.pop().unwrap(), Some(Pair(9, vec![b'y'; 9])));
        stack.push(Pair(100, Vec::new())).unwrap();
        let mut got = Vec::new();
        while let Some(Pair(k, _)) = stack.pop().unwrap() {
            got.push(k);
            if k == 5 {
                for extra in 200..207 {
                    stack.push(Pair(extra, Vec::new())).unwrap();
                }
            }
        }
        let want: Vec<u64> = [100, 8, 7, 6, 5]
            .into_iter()
            .chain((200..207).rev())
            .chain([4, 3, 2, 1, 0])
            .collect();
        assert_eq!(got, want);
    }

    #[test]
    fn tape_reads_back_what_was_written_from_any_record_start() {
        let mut tape = Tape::new().unwrap();
        for k in 0..500u64 {
            tape.push(&Pair(k, vec![b'x'; k as usize])).unwrap();
        }
        let (file, n) = tape.finish().unwrap();
        assert_eq!(n, 500);
        let end = file.metadata().unwrap().len();
        let all: Vec<Pair> = TapeReader::new(&file, 0, end)
            .collect::<io::Result<_>>()
            .unwrap();
        assert_eq!(all.len(), 500);
        assert_eq!(all[499], Pair(499, vec![b'x'; 499]));
        // A cut tape is an error, not a short read.
        let cut: io::Result<Vec<Pair>> = TapeReader::new(&file, 0, end - 1).collect();
        assert!(cut.is_err());
    }
}
