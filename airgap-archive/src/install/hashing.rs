//! The sha256 of every file a reader checks, computed beside the thread that reads the tar
//! stream: that thread parses headers and writes files, and was the bottleneck of `verify`
//! and `unpack` while it also hashed (the inflating threads waited on it). A file's data goes
//! to one lane, in order; a lane is a thread with a short queue, and each new file goes to the
//! lane with the shortest queue, so that one large file does not hold up the small ones.

use std::thread;

use crossbeam_channel::{bounded, Receiver, Sender};
use sha2::{Digest, Sha256};

/// What a lane is sent: a file's data, in order, then its end.
enum Piece {
    Data(Vec<u8>),
    Zeros(u64),
    End(Expected),
}

/// What a file's hash must be, and what to say when it is not.
pub(crate) struct Expected {
    /// The reader's number for the file, to put its problem in order.
    pub key: u64,
    pub shown: String,
    pub sha256: Option<String>,
}

/// A file whose hash is not the manifest's: its key and the problem's text.
pub(crate) type Mismatch = (u64, String);

/// Messages in a lane's queue: with [`BUF`]-sized pieces, a few MiB in flight.
const QUEUE: usize = 8;

/// The largest piece a caller sends.
pub(crate) const BUF: usize = 256 * 1024;

/// A zeroed run that holes of sparse files hash as.
static ZEROS: [u8; 64 * 1024] = [0; 64 * 1024];

/// The lanes, the file being sent and the mismatches found so far.
pub(crate) struct Hashers {
    lanes: Vec<Sender<Piece>>,
    workers: Vec<thread::JoinHandle<()>>,
    mismatches: Receiver<Mismatch>,
    spare: Receiver<Vec<u8>>,
    current: usize,
}

impl Hashers {
    /// One lane a core.
    pub(crate) fn new() -> Hashers {
        let n = thread::available_parallelism().map_or(1, |n| n.get());
        let (mismatch_tx, mismatches) = crossbeam_channel::unbounded();
        let (spare_tx, spare) = bounded::<Vec<u8>>(n * QUEUE + n);
        let mut lanes = Vec::with_capacity(n);
        let mut workers = Vec::with_capacity(n);
        for _ in 0..n {
            let (tx, rx) = bounded::<Piece>(QUEUE);
            let mismatch_tx = mismatch_tx.clone();
            let spare_tx = spare_tx.clone();
            workers.push(thread::spawn(move || lane(rx, mismatch_tx, spare_tx)));
            lanes.push(tx);
        }
        Hashers {
            lanes,
            workers,
            mismatches,
            spare,
            current: 0,
        }
    }

    /// A buffer of `len` bytes to read a piece into (reused: no allocation per file).
    pub(crate) fn buffer(&self, len: usize) -> Vec<u8> {
        let mut b = self.spare.try_recv().unwrap_or_default();
        b.resize(len, 0);
        b
    }

    /// The next file's data goes to the lane with the shortest queue.
    pub(crate) fn begin(&mut self) {
        self.current = (0..self.lanes.len())
            .min_by_key(|&i| self.lanes[i].len())
            .unwrap_or(0);
    }

    /// The current file's next bytes.
    pub(crate) fn data(&self, piece: Vec<u8>) {
        self.send(Piece::Data(piece));
    }

    /// The current file's next `n` bytes are a hole.
    pub(crate) fn zeros(&self, n: u64) {
        self.send(Piece::Zeros(n));
    }

    /// The current file is complete.
    pub(crate) fn end(&self, expected: Expected) {
        self.send(Piece::End(expected));
    }

    fn send(&self, piece: Piece) {
        // A lane stops only when its sender is dropped (after `finish`) or it panicked,
        // which `finish` reports: a file sent then goes unchecked, and the run fails.
        if let Some(lane) = self.lanes.get(self.current) {
            let _ = lane.send(piece);
        }
    }

    /// Mismatches found so far, without waiting.
    pub(crate) fn found(&self) -> Vec<Mismatch> {
        self.mismatches.try_iter().collect()
    }

    /// Wait for every file sent; their mismatches. `Err` when a lane died. Nothing can be
    /// sent after.
    pub(crate) fn finish(&mut self) -> Result<Vec<Mismatch>, String> {
        self.lanes.clear();
        let mut died = false;
        for w in self.workers.drain(..) {
            died |= w.join().is_err();
        }
        if died {
            return Err("a hashing thread stopped".into());
        }
        Ok(self.mismatches.try_iter().collect())
    }
}

impl Drop for Hashers {
    fn drop(&mut self) {
        self.lanes.clear();
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
    }
}

/// One lane: hash each file's pieces, compare at its end.
fn lane(rx: Receiver<Piece>, mismatches: Sender<Mismatch>, spare: Sender<Vec<u8>>) {
    let mut hasher = Sha256::new();
    while let Ok(piece) = rx.recv() {
        match piece {
            Piece::Data(bytes) => {
                hasher.update(&bytes);
                let _ = spare.try_send(bytes);
            }
            Piece::Zeros(mut n) => {
                while n > 0 {
                    let k = n.min(ZEROS.len() as u64) as usize;
                    hasher.update(&ZEROS[..k]);
                    n -= k as u64;
                }
            }
            Piece::End(expected) => {
                let digest = hex::encode(std::mem::take(&mut hasher).finalize());
                if expected.sha256.as_deref() != Some(digest.as_str()) {
                    let text = format!(
                        "hash: {} has sha256 {digest}, the manifest says {}",
                        expected.shown,
                        expected.sha256.as_deref().unwrap_or("none")
                    );
                    let _ = mismatches.send((expected.key, text));
                }
            }
        }
    }
}
