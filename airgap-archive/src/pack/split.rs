//! Writing a bundle as volumes ([`crate::format::volumes`]): the output file of the writer
//! rolls over into the next volume at the size limit. Each volume is a [`TempFile`] of its
//! own (`.NAME.tar.gz.002.partial`), so a failed or cancelled run leaves none; all are
//! renamed into place only when the whole bundle is written, and the list last.

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::error::ArchiveError;
use crate::format::volumes::{
    list_name, volume_name, VolumeList, VolumeRecord, MAX_VOLUMES, VOLUMES_FORMAT,
};
use crate::output::TempFile;

/// A volume written, not yet in place.
struct Written {
    temp: TempFile,
    size: u64,
    sha256: [u8; 32],
}

/// The writer of a split bundle: what is written goes to the current volume until it holds
/// `limit` bytes, then to a new one.
pub(crate) struct VolumeWriter {
    /// The whole bundle's path (`DIR/NAME.tar.gz`), which is never written.
    whole: PathBuf,
    limit: u64,
    done: Vec<Written>,
    current: TempFile,
    len: u64,
    hasher: Sha256,
}

impl VolumeWriter {
    /// The first volume's temporary file, at once: a locked or unwritable output fails here.
    pub(crate) fn new(whole: &Path, limit: u64) -> Result<VolumeWriter, ArchiveError> {
        Ok(VolumeWriter {
            whole: whole.to_path_buf(),
            limit,
            done: Vec::new(),
            current: TempFile::new(&volume_path(whole, 1))?,
            len: 0,
            hasher: Sha256::new(),
        })
    }

    /// The temporary file being written, for error messages.
    pub(crate) fn current_path(&self) -> &Path {
        &self.current.path
    }

    fn roll(&mut self) -> io::Result<()> {
        let number = self.done.len() + 2;
        if number > MAX_VOLUMES {
            return Err(io::Error::other(format!(
                "the bundle needs more than {MAX_VOLUMES} volumes of {} bytes: choose a larger --split-size",
                self.limit
            )));
        }
        let next = TempFile::new(&volume_path(&self.whole, number))
            .map_err(|e| io::Error::other(e.to_string()))?;
        let temp = std::mem::replace(&mut self.current, next);
        let hasher = std::mem::take(&mut self.hasher);
        self.done.push(Written {
            temp,
            size: self.len,
            sha256: hasher.finalize().into(),
        });
        self.len = 0;
        Ok(())
    }

    /// Every volume into place, then the list (`NAME.tar.gz.volumes`) of them and of the
    /// whole (`size`, `sha256`); then the volumes a previous, longer run left after the
    /// last are removed. Returns the list's path.
    pub(crate) fn commit(mut self, size: u64, sha256: [u8; 32]) -> Result<PathBuf, ArchiveError> {
        let hasher = std::mem::take(&mut self.hasher);
        let last = Written {
            temp: self.current,
            size: self.len,
            sha256: hasher.finalize().into(),
        };
        self.done.push(last);
        let bundle = file_name(&self.whole);
        let list = VolumeList {
            format: VOLUMES_FORMAT,
            bundle: bundle.clone(),
            size,
            sha256: hex::encode(sha256),
            volumes: self
                .done
                .iter()
                .enumerate()
                .map(|(i, w)| VolumeRecord {
                    name: volume_name(&bundle, i + 1),
                    size: w.size,
                    sha256: hex::encode(w.sha256),
                })
                .collect(),
        };
        let list_path = self.whole.with_file_name(list_name(&bundle));
        let text = list.render().map_err(|reason| ArchiveError::VolumeList {
            list: list_path.clone(),
            reason,
        })?;
        let list_temp = TempFile::new(&list_path)?;
        (&list_temp.file)
            .write_all(text.as_bytes())
            .map_err(|e| ArchiveError::io("writing", &list_temp.path, e))?;
        let count = self.done.len();
        for (i, w) in self.done.into_iter().enumerate() {
            w.temp.commit(&volume_path(&self.whole, i + 1))?;
        }
        list_temp.commit(&list_path)?;
        for number in count + 1..=MAX_VOLUMES {
            let stale = volume_path(&self.whole, number);
            match fs::symlink_metadata(&stale) {
                Ok(m) if m.is_file() => {
                    fs::remove_file(&stale).map_err(|e| ArchiveError::io("removing", &stale, e))?
                }
                _ => break,
            }
        }
        Ok(list_path)
    }
}

impl Write for VolumeWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        if self.len == self.limit {
            self.roll()?;
        }
        let room = (self.limit - self.len).min(buf.len() as u64) as usize;
        let n = (&self.current.file).write(&buf[..room])?;
        self.hasher.update(&buf[..n]);
        self.len += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        (&self.current.file).flush()
    }
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// The path of volume `number` of the bundle at `whole`.
pub(crate) fn volume_path(whole: &Path, number: usize) -> PathBuf {
    whole.with_file_name(volume_name(&file_name(whole), number))
}
