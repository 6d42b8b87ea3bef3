//! The gzip members airgap writes, and how its reader finds them again.
//!
//! A gzip bundle is a row of independent gzip members of at most [`BLOCK`] bytes of tar
//! each. Every member's header carries the member's whole compressed length in an extra
//! subfield `AG` (as bgzip's `BC` does), and a header CRC (FHCRC) that covers it. Any gzip
//! reader (GNU gzip and tar, flate2) skips the subfield and reads the members one after
//! another; airgap's reader cuts the stream at those lengths without inflating it and
//! inflates the members on every core ([`crate::install::read`]). A length per member rather than
//! one table of offsets: the writer streams (the first member is on disk before the last
//! is compressed) and the reader needs no seeking (it also reads decrypted streams).
//!
//! The header is written here, not by flate2: flate2 writes a header before it has seen the
//! data, and this one holds the length of the data after it.

use std::io;

/// Uncompressed bytes per gzip member: each member is compressed by its own thread.
pub const BLOCK: usize = 1024 * 1024;
/// Bytes of the header of a member airgap writes.
pub const HEADER_LEN: usize = 22;
/// CRC-32 and length after the deflate data.
const TRAILER_LEN: usize = 8;
/// Largest member (compressed, or its content) the reader accepts: the writer makes members
/// of [`BLOCK`] bytes, so anything far larger is corruption, not a bundle.
pub const MAX_MEMBER: usize = 16 * BLOCK;
/// A member is stored (deflate's uncompressed blocks) when a fast trial on samples of it
/// saves less than this fraction: wheels, images and compressed archives.
const STORE_BELOW_GAIN: f64 = 0.03;
/// Samples taken from a block for that trial, and their size.
const SAMPLES: usize = 4;
const SAMPLE_LEN: usize = 16 * 1024;

/// The fixed bytes of our header before the length: magic, deflate, FEXTRA|FHCRC, mtime 0,
/// no extra flags, OS Unix, XLEN 8, subfield `AG` of 4 bytes.
const HEADER_START: [u8; 16] = [
    0x1f, 0x8b, 8, 0x06, 0, 0, 0, 0, 0, 3, 8, 0, b'A', b'G', 4, 0,
];

/// The header of a member whose whole length (header to trailer) is `total`.
fn header(total: u32) -> [u8; HEADER_LEN] {
    let mut h = [0u8; HEADER_LEN];
    h[..16].copy_from_slice(&HEADER_START);
    h[16..20].copy_from_slice(&total.to_le_bytes());
    let crc = crc32(&h[..20]) as u16;
    h[20..].copy_from_slice(&crc.to_le_bytes());
    h
}

/// The whole length of the member that starts with `head`, when `head` is the header of a
/// member airgap wrote; `None` for any other gzip header (or anything else).
pub fn member_len(head: &[u8]) -> Option<usize> {
    if head.len() < HEADER_LEN || head[..16] != HEADER_START {
        return None;
    }
    let crc = u16::from_le_bytes([head[20], head[21]]);
    if crc32(&head[..20]) as u16 != crc {
        return None;
    }
    let total = u32::from_le_bytes([head[16], head[17], head[18], head[19]]) as usize;
    (HEADER_LEN + TRAILER_LEN..=MAX_MEMBER)
        .contains(&total)
        .then_some(total)
}

/// Inflate one whole member cut by [`member_len`] into `out` (emptied first; its capacity is
/// reused), checking its CRC-32 and length and that the deflate data ends exactly at its
/// trailer.
pub fn inflate_member(member: &[u8], out: &mut Vec<u8>) -> io::Result<()> {
    let bad =
        |what: &str| io::Error::new(io::ErrorKind::InvalidData, format!("gzip member {what}"));
    if member.len() < HEADER_LEN + TRAILER_LEN {
        return Err(bad("too short"));
    }
    let (body, trailer) = member[HEADER_LEN..].split_at(member.len() - HEADER_LEN - TRAILER_LEN);
    let want_crc = u32::from_le_bytes([trailer[0], trailer[1], trailer[2], trailer[3]]);
    let want_len = u32::from_le_bytes([trailer[4], trailer[5], trailer[6], trailer[7]]) as usize;
    if want_len > MAX_MEMBER {
        return Err(bad("larger than any airgap writes"));
    }
    out.clear();
    out.reserve(want_len);
    let mut inflate = flate2::Decompress::new(false);
    let status = inflate
        .decompress_vec(body, out, flate2::FlushDecompress::Finish)
        .map_err(|e| bad(&format!("is corrupt ({e})")))?;
    if status != flate2::Status::StreamEnd
        || inflate.total_in() != body.len() as u64
        || out.len() != want_len
    {
        return Err(bad("does not end at its trailer"));
    }
    if crc32(out) != want_crc {
        return Err(bad("does not match its checksum"));
    }
    Ok(())
}

/// crc32fast (pclmulqdq where the CPU has it): flate2's CRC over zlib-rs takes the slow
/// table path, 6% of `airgap verify`.
fn crc32(data: &[u8]) -> u32 {
    crc32fast::hash(data)
}

/// Compresses blocks into members; one per compression thread (it holds the compressor's
/// tables).
pub struct MemberCompressor {
    level: u32,
    scratch: Vec<u8>,
    #[cfg(feature = "libdeflate")]
    full: libdeflater::Compressor,
    #[cfg(feature = "libdeflate")]
    probe: libdeflater::Compressor,
    #[cfg(feature = "libdeflate")]
    stored: libdeflater::Compressor,
}

impl MemberCompressor {
    /// A compressor at gzip `level` (1 to 9).
    pub fn new(level: u32) -> Self {
        let level = level.clamp(1, 9);
        #[cfg(feature = "libdeflate")]
        let lvl = |l: u32| {
            libdeflater::CompressionLvl::new(l as i32)
                .unwrap_or_else(|_| libdeflater::CompressionLvl::default())
        };
        MemberCompressor {
            level,
            scratch: Vec::new(),
            #[cfg(feature = "libdeflate")]
            full: libdeflater::Compressor::new(lvl(level)),
            #[cfg(feature = "libdeflate")]
            probe: libdeflater::Compressor::new(lvl(1)),
            #[cfg(feature = "libdeflate")]
            stored: libdeflater::Compressor::new(lvl(0)),
        }
    }

    /// One member holding `block` (at most [`BLOCK`] bytes): compressed, or stored when
    /// compressing does not pay. The bytes depend only on `block` and the level.
    pub fn member(&mut self, block: &[u8]) -> Vec<u8> {
        let mut scratch = std::mem::take(&mut self.scratch);
        scratch.clear();
        if !self.worth_compressing(block) || !self.deflate(block, self.level, &mut scratch) {
            scratch.clear();
            self.deflate(block, 0, &mut scratch);
        }
        // The member in a buffer of its own size: the scratch buffer (as large as the
        // compressor's bound) stays with this thread instead of travelling to the writer.
        let mut out = Vec::with_capacity(HEADER_LEN + scratch.len() + TRAILER_LEN);
        out.extend_from_slice(&[0u8; HEADER_LEN]);
        out.extend_from_slice(&scratch);
        self.scratch = scratch;
        out.extend_from_slice(&crc32(block).to_le_bytes());
        out.extend_from_slice(&(block.len() as u32).to_le_bytes());
        let total = out.len() as u32;
        out[..HEADER_LEN].copy_from_slice(&header(total));
        out
    }

    /// Whether samples spread over `block` shrink by at least [`STORE_BELOW_GAIN`] at the
    /// fastest level: a cheap trial (1/16 of the block at level 1) instead of compressing
    /// incompressible data in full. Decided on content, not on file names.
    fn worth_compressing(&mut self, block: &[u8]) -> bool {
        if block.len() <= SAMPLES * SAMPLE_LEN {
            return true;
        }
        let step = (block.len() - SAMPLE_LEN) / (SAMPLES - 1);
        let mut scratch = Vec::with_capacity(SAMPLE_LEN + 1024);
        (0..SAMPLES).any(|i| {
            let sample = &block[i * step..i * step + SAMPLE_LEN];
            scratch.clear();
            self.deflate(sample, 1, &mut scratch);
            (scratch.len() as f64) < sample.len() as f64 * (1.0 - STORE_BELOW_GAIN)
        })
    }

    /// Raw deflate of `data` at `level` (0: stored blocks) appended to `out`; false when the
    /// result would be larger than storing.
    #[cfg(feature = "libdeflate")]
    fn deflate(&mut self, data: &[u8], level: u32, out: &mut Vec<u8>) -> bool {
        let comp = match level {
            0 => &mut self.stored,
            1 if self.level != 1 => &mut self.probe,
            _ => &mut self.full,
        };
        let start = out.len();
        let bound = comp.deflate_compress_bound(data.len());
        // Its pages are faulted in once per thread: the buffer keeps its size.
        out.resize(start + bound, 0);
        match comp.deflate_compress(data, &mut out[start..]) {
            Ok(n) => {
                out.truncate(start + n);
                true
            }
            // Only when the output does not fit the bound, which libdeflate guarantees.
            Err(_) => {
                out.truncate(start);
                false
            }
        }
    }

    #[cfg(not(feature = "libdeflate"))]
    fn deflate(&mut self, data: &[u8], level: u32, out: &mut Vec<u8>) -> bool {
        use std::io::Write;
        let start = out.len();
        let mut enc = flate2::write::DeflateEncoder::new(
            std::mem::take(out),
            flate2::Compression::new(level),
        );
        // Writing into a Vec cannot fail.
        let _ = enc.write_all(data);
        *out = enc.finish().unwrap_or_default();
        out.len() > start || data.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn text(n: usize) -> Vec<u8> {
        (0..n)
            .map(|i| b"airgap packs python "[i % 20] ^ (i / 977) as u8)
            .collect()
    }

    fn noise(n: usize) -> Vec<u8> {
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect()
    }

    #[test]
    fn members_read_back_through_flate2_and_through_the_cutter() {
        let mut c = MemberCompressor::new(5);
        for data in [Vec::new(), text(1000), text(BLOCK), noise(BLOCK)] {
            let m = c.member(&data);
            assert_eq!(member_len(&m), Some(m.len()));
            let mut back = Vec::new();
            inflate_member(&m, &mut back).unwrap();
            assert_eq!(back, data);
            let mut back = Vec::new();
            flate2::read::GzDecoder::new(m.as_slice())
                .read_to_end(&mut back)
                .unwrap();
            assert_eq!(back, data);
        }
    }

    #[test]
    fn incompressible_blocks_are_stored_and_text_is_compressed() {
        let mut c = MemberCompressor::new(5);
        let n = noise(BLOCK);
        let stored = c.member(&n);
        // Stored blocks: 5 bytes per 64 KiB block at most beyond the data.
        assert!(stored.len() <= BLOCK + 200, "{}", stored.len());
        assert!(stored.len() >= BLOCK);
        let t = c.member(&text(BLOCK));
        assert!(t.len() < BLOCK / 4, "{}", t.len());
    }

    #[test]
    fn every_changed_header_byte_is_refused_by_the_cutter() {
        let m = MemberCompressor::new(5).member(&text(5000));
        for i in 0..HEADER_LEN {
            let mut bad = m.clone();
            bad[i] ^= 0x10;
            assert_eq!(member_len(&bad), None, "byte {i}");
        }
    }

    #[test]
    fn a_member_cut_at_the_wrong_length_is_refused() {
        let mut m = MemberCompressor::new(5).member(&text(50_000));
        let mut out = Vec::new();
        inflate_member(&m, &mut out).unwrap();
        m.push(0);
        assert!(inflate_member(&m, &mut out).is_err());
        m.truncate(m.len() - 2);
        assert!(inflate_member(&m, &mut out).is_err());
    }
}
