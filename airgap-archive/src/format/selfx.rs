//! The self-extracting bundle (`airgap bundle --self-extracting`, `NAME.run`): a POSIX `sh`
//! header, the static unpacker, and the plain bundle archive, each starting on a
//! [`BLOCK`]-byte boundary:
//!
//! ```text
//! block 0 ..          the sh header, padded with zeros
//! block H ..          the unpacker (its exact size in the header), padded with zeros
//! block A .. the end  the archive, byte for byte what `airgap bundle` writes without the flag
//! ```
//!
//! The header holds the three numbers the writer computed, so that it needs no search of
//! itself: `dd bs=4096 skip=H count=U` copies the unpacker to `$TMPDIR` (the one file it
//! writes), and the unpacker reads the archive in place from block A of the `.run` file it
//! is given ([`crate::install::read::open_archive_file`] finds it), never copying it. Other tools
//! need not apply: `tar` does not read a `.run`.
//!
//! The header is a function of the bundle's name and the unpacker's size only, so a reader
//! rebuilds it from the numbers it parsed and refuses a `.run` whose header differs by one
//! byte; the unpacker's bytes are checked against the archive's own copy
//! (`.airgap/airgap-unpack` in the manifest), and the archive by the usual checker: every
//! byte of a `.run` is covered.

/// Every part of a `.run` starts on a multiple of this (what `dd bs=` copies).
pub const BLOCK: u64 = 4096;

/// How a `.run` file starts: the reader's test for one.
pub const MAGIC: &[u8] = b"#!/bin/sh\n# airgap self-extracting bundle ";

/// The largest header a reader reads: far more than the writer makes (two blocks).
pub const MAX_HEADER: u64 = 64 * 1024;

/// POSIX `cksum` (CRC-32, polynomial 0x04C11DB7, the length appended), so that the header
/// can check the unpacker it copied with a tool every POSIX system has, before running it:
/// a damaged unpacker is refused with a message, not run to a crash.
#[derive(Debug, Clone)]
pub struct Cksum {
    crc: u32,
    len: u64,
}

impl Default for Cksum {
    fn default() -> Self {
        Cksum::new()
    }
}

impl Cksum {
    /// An empty sum.
    pub fn new() -> Self {
        Cksum { crc: 0, len: 0 }
    }

    fn step(crc: u32, byte: u8) -> u32 {
        let mut c = crc ^ (u32::from(byte) << 24);
        for _ in 0..8 {
            c = if c & 0x8000_0000 != 0 {
                (c << 1) ^ 0x04C1_1DB7
            } else {
                c << 1
            };
        }
        c
    }

    /// Add bytes.
    pub fn update(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.crc = Self::step(self.crc, b);
        }
        self.len += bytes.len() as u64;
    }

    /// The sum `cksum` prints first.
    pub fn finish(&self) -> u32 {
        let mut crc = self.crc;
        let mut n = self.len;
        while n != 0 {
            crc = Self::step(crc, (n & 0xff) as u8);
            n >>= 8;
        }
        !crc
    }
}

/// Where the parts of a `.run` are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    /// The bundle's name as the header shows it (only `[A-Za-z0-9._+-]`).
    pub name: String,
    /// Byte offset of the unpacker.
    pub unpacker_offset: u64,
    /// The unpacker's size in bytes.
    pub unpacker_size: u64,
    /// POSIX `cksum` of the unpacker's whole blocks (what `dd` copies), checked by the header.
    pub unpacker_cksum: u32,
    /// Byte offset of the archive.
    pub archive_offset: u64,
}

/// The name as it may stand in a shell comment: anything else becomes `_`.
fn shown_name(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "._+-".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect()
}

fn blocks(bytes: u64) -> u64 {
    bytes.div_ceil(BLOCK)
}

/// The script for these numbers (unpadded).
fn script(name: &str, header_blocks: u64, unpacker_size: u64, cksum: u32) -> String {
    let unpacker_blocks = blocks(unpacker_size);
    let archive_block = header_blocks + unpacker_blocks;
    format!(
        r#"#!/bin/sh
# airgap self-extracting bundle {name}
# Install: sh {name}.run DEST    (also: --list, --verify, --extract-only DIR, --help)
# Needs only sh, dd, mkdir, chmod and rm (POSIX). The unpacker (the one file written
# outside DEST) goes to $TMPDIR, default /tmp; the archive is read in place, never copied.
# Not a tar file: airgap verify, inspect and unpack read it, as this header's unpacker does.
airgap_block={BLOCK} airgap_unpacker_block={header_blocks} airgap_unpacker_blocks={unpacker_blocks} airgap_unpacker_size={unpacker_size} airgap_unpacker_cksum={cksum} airgap_archive_block={archive_block}
airgap_run() {{
    self=$0
    if [ ! -f "$self" ] || [ ! -r "$self" ]; then
        echo "error: cannot read this bundle as a file ($self)" >&2
        echo "help: run it from where it is stored: sh {name}.run DEST" >&2
        return 2
    fi
    tmp=${{TMPDIR:-/tmp}}/airgap-run.$$
    if ! (umask 077 && mkdir "$tmp"); then
        echo "error: cannot create $tmp for the unpacker" >&2
        echo "help: set TMPDIR to a directory you can write and execute files in" >&2
        return 1
    fi
    trap 'rm -rf "$tmp"' EXIT
    trap 'rm -rf "$tmp"; exit 129' HUP
    trap 'rm -rf "$tmp"; exit 130' INT
    trap 'rm -rf "$tmp"; exit 143' TERM
    if ! dd if="$self" of="$tmp/airgap-unpack" bs=$airgap_block skip=$airgap_unpacker_block count=$airgap_unpacker_blocks 2>/dev/null || ! chmod 700 "$tmp/airgap-unpack"; then
        echo "error: cannot copy the unpacker to $tmp (is the disk full?)" >&2
        echo "help: set TMPDIR to a directory with a few MiB free" >&2
        return 1
    fi
    if command -v cksum >/dev/null 2>&1; then
        sum=$(cksum < "$tmp/airgap-unpack")
        if [ "${{sum%% *}}" != "$airgap_unpacker_cksum" ]; then
            echo "error: the unpacker inside $self is damaged (cksum ${{sum%% *}}, expected $airgap_unpacker_cksum); nothing was installed" >&2
            echo "help: the bundle was damaged or altered after it was written: copy it again and compare with its .sha256" >&2
            return 1
        fi
    fi
    "$tmp/airgap-unpack" --run "$self" "$@"
    rc=$?
    if [ $rc -eq 126 ]; then
        echo "help: $tmp cannot run programs (mounted noexec?): set TMPDIR to another directory" >&2
    fi
    return $rc
}}
airgap_run "$@"
exit $?
"#
    )
}

/// The header of a `.run` for a bundle `name` whose unpacker is `unpacker_size` bytes with
/// the `cksum` of its whole blocks ([`Cksum`]), padded with zeros to whole blocks, and where
/// the parts go.
pub fn header(name: &str, unpacker_size: u64, cksum: u32) -> (Vec<u8>, Layout) {
    let name = shown_name(name);
    let mut header_blocks = 1;
    loop {
        let text = script(&name, header_blocks, unpacker_size, cksum);
        if blocks(text.len() as u64) <= header_blocks {
            let mut bytes = text.into_bytes();
            bytes.resize((header_blocks * BLOCK) as usize, 0);
            let layout = Layout {
                name,
                unpacker_offset: header_blocks * BLOCK,
                unpacker_size,
                unpacker_cksum: cksum,
                archive_offset: (header_blocks + blocks(unpacker_size)) * BLOCK,
            };
            return (bytes, layout);
        }
        header_blocks += 1;
    }
}

/// Whether a file starting with `head` is a `.run`.
pub fn is_run(head: &[u8]) -> bool {
    head.starts_with(MAGIC)
}

/// The layout of a `.run` whose first bytes (at least its whole header, up to
/// [`MAX_HEADER`]) are `head`; an error names what is wrong. The header must be exactly the
/// one the writer makes for the numbers it holds.
pub fn parse(head: &[u8]) -> Result<Layout, String> {
    let text_end = head.iter().position(|&b| b == 0).unwrap_or(head.len());
    let text = std::str::from_utf8(&head[..text_end])
        .map_err(|_| "its sh header is not text".to_string())?;
    let name = text
        .lines()
        .nth(1)
        .and_then(|l| l.strip_prefix("# airgap self-extracting bundle "))
        .ok_or("its sh header has no bundle name")?;
    let numbers = text
        .lines()
        .find(|l| l.starts_with("airgap_block="))
        .ok_or("its sh header has no layout line")?;
    let value = |key: &str| -> Result<u64, String> {
        numbers
            .split(' ')
            .find_map(|kv| kv.strip_prefix(key).and_then(|v| v.strip_prefix('=')))
            .and_then(|v| v.parse::<u64>().ok())
            .ok_or(format!("its sh header has no number {key}"))
    };
    let size = value("airgap_unpacker_size")?;
    let cksum = u32::try_from(value("airgap_unpacker_cksum")?)
        .map_err(|_| "its sh header's cksum is out of range".to_string())?;
    let (expected, layout) = header(name, size, cksum);
    if head.len() < expected.len() || head[..expected.len()] != expected[..] {
        return Err("its sh header differs from the one airgap writes (altered or damaged)".into());
    }
    if value("airgap_block")? != BLOCK
        || value("airgap_archive_block")? * BLOCK != layout.archive_offset
    {
        return Err("its sh header's numbers disagree".into());
    }
    Ok(layout)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_is_whole_blocks_and_parses_back() {
        for size in [0, 1, 4095, 4096, 4097, 12_345_678] {
            let (h, layout) = header("nlp env", size, 7);
            assert_eq!(h.len() as u64 % BLOCK, 0);
            assert!(is_run(&h));
            assert_eq!(layout.unpacker_offset, h.len() as u64);
            assert_eq!(
                layout.archive_offset,
                layout.unpacker_offset + size.div_ceil(BLOCK) * BLOCK
            );
            assert_eq!(parse(&h), Ok(layout.clone()));
            assert_eq!(layout.name, "nlp_env");
        }
    }

    #[test]
    fn cksum_is_posix_cksum() {
        // `printf 'hello\n' | cksum` and `printf '' | cksum` (GNU coreutils, busybox).
        let mut c = Cksum::new();
        c.update(b"hello\n");
        assert_eq!(c.finish(), 3_015_617_425);
        assert_eq!(Cksum::new().finish(), 4_294_967_295);
    }

    #[test]
    fn one_changed_byte_of_the_header_is_refused() {
        let (h, _) = header("nlp", 5000, 7);
        for i in [MAGIC.len() + 1, 200, 600, h.len() - 1] {
            let mut bad = h.clone();
            bad[i] ^= 0x20;
            assert!(parse(&bad).is_err(), "byte {i}");
        }
    }
}
