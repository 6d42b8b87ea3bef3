//! The two file reads that the engine, the host and the plugins all need, written once so
//! that each retries interrupted reads and stops at the end of a file the same way.
//!
//! Architecture invariant: std only; no airgap types, so that any crate (a plugin included)
//! can depend on it.

use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

/// Bytes compared at a time by [`same_contents`].
const WINDOW: usize = 256 * 1024;

/// Read until `buf` is full or the end of the input, retrying interrupted reads. Returns the
/// number of bytes read: less than `buf.len()` only at the end.
pub fn read_full(r: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match r.read(&mut buf[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(got)
}

/// A file that could not be read, and why.
#[derive(Debug)]
pub struct FileError {
    /// The file.
    pub path: PathBuf,
    /// Why.
    pub source: io::Error,
}

impl std::fmt::Display for FileError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "reading {}: {}", self.path.display(), self.source)
    }
}

impl std::error::Error for FileError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.source)
    }
}

/// Whether two regular files hold the same bytes: sizes first, then both read in windows.
pub fn same_contents(a: &Path, b: &Path) -> Result<bool, FileError> {
    let at = |path: &Path| {
        let path = path.to_path_buf();
        move |source| FileError { path, source }
    };
    let mut fa = File::open(a).map_err(at(a))?;
    let mut fb = File::open(b).map_err(at(b))?;
    let ma = fa.metadata().map_err(at(a))?;
    let mb = fb.metadata().map_err(at(b))?;
    if !ma.is_file() || !mb.is_file() || ma.len() != mb.len() {
        return Ok(false);
    }
    let mut wa = vec![0u8; WINDOW];
    let mut wb = vec![0u8; WINDOW];
    loop {
        let na = read_full(&mut fa, &mut wa).map_err(at(a))?;
        let nb = read_full(&mut fb, &mut wb).map_err(at(b))?;
        if na != nb || wa[..na] != wb[..nb] {
            return Ok(false);
        }
        if na == 0 {
            return Ok(true);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A reader that gives one byte at a time and is interrupted before each.
    struct Stutter<'a>(&'a [u8], bool);

    impl Read for Stutter<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            self.1 = !self.1;
            if self.1 {
                return Err(io::ErrorKind::Interrupted.into());
            }
            match self.0.split_first() {
                Some((b, rest)) if !buf.is_empty() => {
                    buf[0] = *b;
                    self.0 = rest;
                    Ok(1)
                }
                _ => Ok(0),
            }
        }
    }

    #[test]
    fn read_full_retries_interrupted_reads_and_stops_at_the_end() {
        let mut buf = [0u8; 8];
        assert_eq!(read_full(&mut Stutter(b"abc", false), &mut buf).unwrap(), 3);
        assert_eq!(&buf[..3], b"abc");
        let mut small = [0u8; 2];
        assert_eq!(
            read_full(&mut Stutter(b"abc", false), &mut small).unwrap(),
            2
        );
    }

    #[test]
    fn same_contents_compares_sizes_then_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let write = |name: &str, bytes: &[u8]| {
            let p = dir.path().join(name);
            std::fs::write(&p, bytes).unwrap();
            p
        };
        let big: Vec<u8> = (0..WINDOW * 2 + 7).map(|i| i as u8).collect();
        let mut other = big.clone();
        *other.last_mut().unwrap() ^= 1;
        let (a, b, c) = (write("a", &big), write("b", &big), write("c", &other));
        let short = write("d", &big[..10]);
        assert!(same_contents(&a, &b).unwrap());
        assert!(!same_contents(&a, &c).unwrap());
        assert!(!same_contents(&a, &short).unwrap());
        assert!(!same_contents(&a, dir.path()).unwrap());
        let missing = dir.path().join("missing");
        let err = same_contents(&a, &missing).unwrap_err();
        assert_eq!(err.path, missing);
    }
}
