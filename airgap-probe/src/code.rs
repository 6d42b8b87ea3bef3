//! The code a person reads off the target's screen and types on the build machine.
//!
//! Bits, most significant first, packed into Crockford base32 symbols (no I, L, O, U: they
//! are read as 1, 1, 0 and refused), two check symbols at the end, groups of four joined by
//! `-`. The check is `sum((i + 1) * symbol[i]) mod 1021` over the data symbols: a prime above
//! every weight, so any one wrong symbol and any swap of two neighbours change it; a mistyped
//! code is refused, never misread.
//!
//! Layout, format 1 (every field 0 when unknown):
//!
//! | bits | field |
//! |---|---|
//! | 4 | format (1) |
//! | 4 | catalog version ([`crate::catalog::CATALOG`]) |
//! | 3 | arch: 1 x86_64, 2 aarch64, 3 ppc64le, 4 s390x, 5 i686 |
//! | 3 | x86-64 level 1..4 |
//! | 6 + 8 | kernel major, minor |
//! | 7 | glibc 2.N: N |
//! | 6 | GLIBCXX 3.4.N: N + 1 |
//! | 5 | CXXABI 1.3.N: N + 1 |
//! | 5 + 4 + 3 | GCC major, minor, patch |
//! | 1 (+ 10 + 8 + 1 + 7) | NVIDIA driver present (major, minor, has patch, patch) |
//! | 2 + 6 | `$TMPDIR`: noexec (1 no, 2 yes), free space class |
//! | 2 + 6 | DEST: noexec, free space class |
//! | 3 | Python count (at most 7, highest versions) |
//! | 2 + 2 + 6 + 6 + 3 each | implementation (0 cpython, 1 pypy), major, minor, micro, ABI flags t/d/m |
//! | catalog length | one presence bit per catalog library |
//!
//! A free space class `k` means at least `2^(k-1) - 1` MiB.

use crate::catalog::{catalog, CATALOG};
use crate::{Error, Library, Place, Profile, Python, Source};

/// Crockford base32: digits and letters without I, L, O, U.
const ALPHABET: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";
const MODULUS: u32 = 1021;
const ARCHES: &[&str] = &["x86_64", "aarch64", "ppc64le", "s390x", "i686"];

/// The code of a profile.
pub fn encode(profile: &Profile) -> String {
    let v = view(profile);
    let mut w = Bits::default();
    w.put(1, 4);
    w.put(CATALOG as u64, 4);
    let arch = v
        .arch
        .as_deref()
        .and_then(|a| ARCHES.iter().position(|x| *x == a))
        .map_or(0, |i| i + 1);
    w.put(arch as u64, 3);
    w.put(v.cpu_level.unwrap_or(0) as u64, 3);
    let (kmaj, kmin) = v
        .kernel
        .as_deref()
        .and_then(|k| parts(k, 2))
        .map_or((0, 0), |p| (p[0], p[1]));
    w.put(kmaj, 6);
    w.put(kmin, 8);
    w.put(
        v.glibc.as_deref().and_then(|g| tail(g, "2")).unwrap_or(0),
        7,
    );
    w.put(
        v.glibcxx
            .as_deref()
            .and_then(|g| tail(g, "3.4"))
            .map_or(0, |n| n + 1),
        6,
    );
    w.put(
        v.cxxabi
            .as_deref()
            .and_then(|g| tail(g, "1.3"))
            .map_or(0, |n| n + 1),
        5,
    );
    let gcc = v
        .gcc
        .as_deref()
        .and_then(|g| parts(g, 3))
        .unwrap_or_default();
    for (i, n) in [5, 4, 3].into_iter().enumerate() {
        w.put(gcc.get(i).copied().unwrap_or(0), n);
    }
    match v.nvidia_driver.as_deref().and_then(driver_parts) {
        Some((maj, min, patch)) => {
            w.put(1, 1);
            w.put(maj, 10);
            w.put(min, 8);
            w.put(patch.is_some() as u64, 1);
            w.put(patch.unwrap_or(0), 7);
        }
        None => w.put(0, 1),
    }
    for place in [&v.tmpdir, &v.dest] {
        let noexec = place.as_ref().and_then(|p| p.noexec);
        w.put(noexec.map_or(0, |n| if n { 2 } else { 1 }), 2);
        w.put(
            place
                .as_ref()
                .and_then(|p| p.free_mib)
                .map_or(0, free_class),
            6,
        );
    }
    let pythons: Vec<PyCode> = v.pythons.iter().filter_map(PyCode::of).collect();
    w.put(pythons.len() as u64, 3);
    for p in &pythons {
        w.put(p.implementation, 2);
        w.put(p.major, 2);
        w.put(p.minor, 6);
        w.put(p.micro, 6);
        w.put(p.flags, 3);
    }
    let names = catalog(CATALOG).unwrap_or_default();
    for name in &names {
        w.put(v.libraries.iter().any(|l| l.soname == *name) as u64, 1);
    }
    let mut symbols = w.symbols();
    let c = check(&symbols);
    symbols.push((c >> 5) as u8);
    symbols.push((c & 31) as u8);
    let text: Vec<char> = symbols
        .iter()
        .map(|s| ALPHABET[*s as usize] as char)
        .collect();
    text.chunks(4)
        .map(|c| c.iter().collect::<String>())
        .collect::<Vec<_>>()
        .join("-")
}

/// The profile a code stands for; a code with a typo, from a newer airgap, or not a code at
/// all is refused.
pub fn decode(code: &str) -> Result<Profile, Error> {
    let bad = |reason: String| Error::Code { reason };
    let mut symbols = Vec::new();
    for (i, ch) in code.chars().enumerate() {
        let c = match ch.to_ascii_uppercase() {
            '-' | ' ' => continue,
            'O' => '0',
            'I' | 'L' => '1',
            c => c,
        };
        match ALPHABET.iter().position(|a| *a as char == c) {
            Some(s) => symbols.push(s as u8),
            None => {
                return Err(bad(format!(
                    "character {} ({:?}) is not one of the code's letters and digits",
                    i + 1,
                    ch
                )))
            }
        }
    }
    if symbols.len() < 6 {
        return Err(bad("too short to be a target code".into()));
    }
    let (data, sum) = symbols.split_at(symbols.len() - 2);
    let given = (sum[0] as u32) << 5 | sum[1] as u32;
    if given != check(data) {
        return Err(bad(
            "its check symbols do not match: a character is mistyped or missing".into(),
        ));
    }
    let mut r = Reader::new(data);
    let format = r.get(4)?;
    if format != 1 {
        return Err(bad(format!(
            "code format {format} is newer than this airgap reads (1)"
        )));
    }
    let cat = r.get(4)? as u32;
    let names = catalog(cat).ok_or_else(|| {
        bad(format!(
            "library catalog {cat} is newer than this airgap knows ({CATALOG})"
        ))
    })?;
    let mut p = Profile {
        format: crate::FORMAT,
        source: Source::Code,
        catalog: Some(cat),
        ..Profile::default()
    };
    let arch = r.get(3)? as usize;
    p.arch = arch
        .checked_sub(1)
        .and_then(|i| ARCHES.get(i))
        .map(|a| a.to_string());
    let level = r.get(3)? as u8;
    p.cpu_level = (1..=4).contains(&level).then_some(level);
    let (kmaj, kmin) = (r.get(6)?, r.get(8)?);
    p.kernel = (kmaj != 0 || kmin != 0).then(|| format!("{kmaj}.{kmin}"));
    let g = r.get(7)?;
    p.glibc = (g != 0).then(|| format!("2.{g}"));
    p.glibcxx = dotted("3.4", r.get(6)?);
    p.cxxabi = dotted("1.3", r.get(5)?);
    let (gmaj, gmin, gpat) = (r.get(5)?, r.get(4)?, r.get(3)?);
    p.gcc = (gmaj != 0).then(|| format!("{gmaj}.{gmin}.{gpat}"));
    if r.get(1)? == 1 {
        let (maj, min) = (r.get(10)?, r.get(8)?);
        let has_patch = r.get(1)? == 1;
        let patch = r.get(7)?;
        p.nvidia_driver = Some(driver_text(maj, min, has_patch.then_some(patch)));
    }
    let mut places = Vec::new();
    for _ in 0..2 {
        let noexec = match r.get(2)? {
            1 => Some(false),
            2 => Some(true),
            _ => None,
        };
        let class = r.get(6)?;
        let free_mib = (class != 0).then(|| (1u64 << (class - 1)) - 1);
        places.push((noexec.is_some() || free_mib.is_some()).then_some(Place {
            path: None,
            free_mib,
            noexec,
        }));
    }
    p.dest = places.pop().flatten();
    p.tmpdir = places.pop().flatten();
    for _ in 0..r.get(3)? {
        let code = PyCode {
            implementation: r.get(2)?,
            major: r.get(2)?,
            minor: r.get(6)?,
            micro: r.get(6)?,
            flags: r.get(3)?,
        };
        p.pythons.push(code.python());
    }
    for name in names {
        if r.get(1)? == 1 {
            p.libraries.push(Library {
                soname: name.to_owned(),
                ..Library::default()
            });
        }
    }
    r.finish()?;
    Ok(p)
}

/// What the code of `p` carries, as a profile (see [`Profile::code_view`]).
pub(crate) fn view(p: &Profile) -> Profile {
    let names = catalog(CATALOG).unwrap_or_default();
    let known = |a: &str| ARCHES.contains(&a);
    let place = |pl: &Option<Place>| {
        let pl = pl.as_ref()?;
        let free_mib = pl.free_mib.map(|f| (1u64 << (free_class(f) - 1)) - 1);
        (pl.noexec.is_some() || free_mib.is_some()).then_some(Place {
            path: None,
            free_mib,
            noexec: pl.noexec,
        })
    };
    let mut pythons: Vec<PyCode> = p.pythons.iter().filter_map(PyCode::parse).collect();
    pythons.sort_by_key(|c| (c.major, c.minor, c.micro, c.implementation, c.flags));
    pythons.dedup();
    let skip = pythons.len().saturating_sub(7);
    let pythons: Vec<Python> = pythons[skip..].iter().map(PyCode::python).collect();
    Profile {
        format: crate::FORMAT,
        source: Source::Code,
        arch: p.arch.clone().filter(|a| known(a)),
        cpu_level: p.cpu_level.filter(|l| (1..=4).contains(l)),
        kernel: p
            .kernel
            .as_deref()
            .and_then(|k| parts(k, 2))
            .filter(|k| k[0] < 64 && k[1] < 256 && (k[0] | k[1]) != 0)
            .map(|k| format!("{}.{}", k[0], k[1])),
        glibc: p
            .glibc
            .as_deref()
            .and_then(|g| tail(g, "2"))
            .filter(|n| (1..128).contains(n))
            .map(|n| format!("2.{n}")),
        glibcxx: p
            .glibcxx
            .as_deref()
            .and_then(|g| tail(g, "3.4"))
            .filter(|n| *n < 63)
            .and_then(|n| dotted("3.4", n + 1)),
        cxxabi: p
            .cxxabi
            .as_deref()
            .and_then(|g| tail(g, "1.3"))
            .filter(|n| *n < 31)
            .and_then(|n| dotted("1.3", n + 1)),
        gcc: p
            .gcc
            .as_deref()
            .and_then(|g| parts(g, 3))
            .filter(|g| (1..32).contains(&g[0]) && g[1] < 16 && g[2] < 8)
            .map(|g| format!("{}.{}.{}", g[0], g[1], g[2])),
        nvidia_driver: p
            .nvidia_driver
            .as_deref()
            .and_then(driver_parts)
            .map(|(a, b, c)| driver_text(a, b, c)),
        nvidia_kernel_module: None,
        catalog: Some(CATALOG),
        tmpdir: place(&p.tmpdir),
        dest: place(&p.dest),
        pythons,
        libraries: names
            .iter()
            .filter(|n| p.libraries.iter().any(|l| l.soname == **n))
            .map(|n| Library {
                soname: (*n).to_owned(),
                ..Library::default()
            })
            .collect(),
    }
}

/// One Python as the code holds it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct PyCode {
    implementation: u64,
    major: u64,
    minor: u64,
    micro: u64,
    flags: u64,
}

impl PyCode {
    /// From a profile's Python; `None` when it does not fit the code.
    fn parse(py: &Python) -> Option<PyCode> {
        let implementation = match py.implementation.as_str() {
            "cpython" => 0,
            "pypy" => 1,
            _ => return None,
        };
        let v = parts(&py.version, 3)?;
        if !(2..=3).contains(&v[0]) || v[1] > 63 || v[2] > 63 {
            return None;
        }
        let mut flags = 0;
        if implementation == 0 {
            let stem = format!("cp{}{}", v[0], v[1]);
            let rest = py.abi.strip_prefix(&stem).unwrap_or("");
            for (bit, ch) in [(4, 't'), (2, 'd'), (1, 'm')] {
                if rest.contains(ch) {
                    flags |= bit;
                }
            }
        }
        Some(PyCode {
            implementation,
            major: v[0],
            minor: v[1],
            micro: v[2],
            flags,
        })
    }

    fn of(py: &Python) -> Option<PyCode> {
        PyCode::parse(py)
    }

    fn python(&self) -> Python {
        let (implementation, abi) = match self.implementation {
            0 => {
                let mut flags = String::new();
                for (bit, ch) in [(4, 't'), (2, 'd'), (1, 'm')] {
                    if self.flags & bit != 0 {
                        flags.push(ch);
                    }
                }
                ("cpython", format!("cp{}{}{flags}", self.major, self.minor))
            }
            _ => ("pypy", String::new()),
        };
        Python {
            path: None,
            version: format!("{}.{}.{}", self.major, self.minor, self.micro),
            implementation: implementation.into(),
            abi,
        }
    }
}

/// `"3.4.30"`, prefix `"3.4"` -> 30; `"3.4"` -> 0; `"2.36"`, `"2"` -> 36.
fn tail(v: &str, prefix: &str) -> Option<u64> {
    if v == prefix {
        return Some(0);
    }
    let rest = v.strip_prefix(prefix)?.strip_prefix('.')?;
    rest.parse().ok()
}

/// `dotted("3.4", 31)` -> `3.4.30`, `dotted("3.4", 1)` -> `3.4`, 0 -> none.
fn dotted(prefix: &str, stored: u64) -> Option<String> {
    match stored {
        0 => None,
        1 => Some(prefix.to_owned()),
        n => Some(format!("{prefix}.{}", n - 1)),
    }
}

/// The first `n` numeric parts of a version (`6.1.0-18-amd64` -> 6, 1); missing parts are 0.
fn parts(v: &str, n: usize) -> Option<Vec<u64>> {
    let mut out = Vec::new();
    for p in v.split(['.', '-', '+', '_']).take(n) {
        let digits: String = p.chars().take_while(char::is_ascii_digit).collect();
        if digits.is_empty() {
            break;
        }
        out.push(digits.parse().ok()?);
        if digits.len() != p.len() {
            break;
        }
    }
    if out.is_empty() {
        return None;
    }
    out.resize(n, 0);
    Some(out)
}

/// `535.104.05` -> (535, 104, Some(5)); `550.54` -> (550, 54, None).
fn driver_parts(v: &str) -> Option<(u64, u64, Option<u64>)> {
    let p: Vec<&str> = v.trim().split('.').collect();
    let num = |s: &str| s.parse::<u64>().ok();
    let (maj, min) = (num(p.first()?)?, num(p.get(1)?)?);
    let patch = match p.get(2) {
        Some(s) => Some(num(s)?),
        None => None,
    };
    if p.len() > 3 || maj >= 1024 || min >= 256 || patch.is_some_and(|x| x >= 128) {
        return None;
    }
    Some((maj, min, patch))
}

fn driver_text(maj: u64, min: u64, patch: Option<u64>) -> String {
    match patch {
        Some(p) => format!("{maj}.{min}.{p:02}"),
        None => format!("{maj}.{min}"),
    }
}

/// Bit length of `free + 1`: class `k` stands for at least `2^(k-1) - 1` MiB.
fn free_class(free_mib: u64) -> u64 {
    (64 - free_mib.saturating_add(1).leading_zeros() as u64).min(63)
}

fn check(symbols: &[u8]) -> u32 {
    symbols.iter().enumerate().fold(0u32, |acc, (i, s)| {
        (acc + (i as u32 + 1) * *s as u32) % MODULUS
    })
}

#[derive(Default)]
struct Bits(Vec<bool>);

impl Bits {
    fn put(&mut self, value: u64, n: u32) {
        for i in (0..n).rev() {
            self.0.push(value >> i & 1 == 1);
        }
    }

    fn symbols(&self) -> Vec<u8> {
        self.0
            .chunks(5)
            .map(|c| {
                (0..5).fold(0u8, |acc, i| {
                    acc << 1 | u8::from(c.get(i).copied().unwrap_or(false))
                })
            })
            .collect()
    }
}

struct Reader<'a> {
    symbols: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn new(symbols: &'a [u8]) -> Reader<'a> {
        Reader { symbols, at: 0 }
    }

    fn bit(&mut self) -> Option<u64> {
        let s = *self.symbols.get(self.at / 5)?;
        let b = s >> (4 - self.at % 5) & 1;
        self.at += 1;
        Some(b as u64)
    }

    fn get(&mut self, n: u32) -> Result<u64, Error> {
        let mut v = 0;
        for _ in 0..n {
            v = v << 1
                | self.bit().ok_or_else(|| Error::Code {
                    reason: "it ends too early: characters are missing".into(),
                })?;
        }
        Ok(v)
    }

    /// Only the zero padding of the last symbol may be left.
    fn finish(mut self) -> Result<(), Error> {
        let total = self.symbols.len() * 5;
        if total - self.at >= 5 {
            return Err(Error::Code {
                reason: "it is longer than its contents: characters were added".into(),
            });
        }
        while self.at < total {
            if self.bit() != Some(0) {
                return Err(Error::Code {
                    reason: "its padding is not zero".into(),
                });
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Profile {
        Profile {
            format: 1,
            arch: Some("x86_64".into()),
            cpu_level: Some(3),
            kernel: Some("6.1.0-18-amd64".into()),
            glibc: Some("2.36".into()),
            glibcxx: Some("3.4.30".into()),
            cxxabi: Some("1.3.13".into()),
            gcc: Some("12.0.0".into()),
            nvidia_driver: Some("535.104.05".into()),
            dest: Some(Place {
                path: Some("/opt".into()),
                free_mib: Some(20_000),
                noexec: Some(false),
            }),
            pythons: vec![Python {
                path: Some("/usr/bin/python3".into()),
                version: "3.11.2".into(),
                implementation: "cpython".into(),
                abi: "cp311".into(),
            }],
            libraries: ["libssl.so.3", "libpq.so.5", "libnot-in-catalog.so.9"]
                .iter()
                .map(|s| Library {
                    soname: s.to_string(),
                    path: Some(format!("/usr/lib/{s}")),
                    versions: vec!["OPENSSL_3.0.0".into()],
                })
                .collect(),
            ..Profile::default()
        }
    }

    #[test]
    fn round_trips_to_the_code_view() {
        let p = sample();
        let code = encode(&p);
        assert!(code.len() < 200, "{code}");
        let back = decode(&code).expect("decode");
        assert_eq!(back, p.code_view());
        assert_eq!(encode(&back), code, "re-encoding gives the same code");
        assert_eq!(back.kernel.as_deref(), Some("6.1"));
        assert_eq!(back.nvidia_driver.as_deref(), Some("535.104.05"));
        assert_eq!(back.dest.as_ref().and_then(|d| d.free_mib), Some(16383));
        let libs: Vec<_> = back.libraries.iter().map(|l| l.soname.as_str()).collect();
        assert_eq!(libs, ["libssl.so.3", "libpq.so.5"]);
        // Lower case and look-alike letters are read as the digits they stand for.
        let lower = code.to_lowercase().replace('0', "o").replace('1', "l");
        assert_eq!(decode(&lower).expect("lower case"), back);
    }

    #[test]
    fn every_one_symbol_typo_and_neighbour_swap_is_refused() {
        let code = encode(&sample());
        let chars: Vec<char> = code.chars().collect();
        for i in 0..chars.len() {
            if chars[i] == '-' {
                continue;
            }
            for a in ALPHABET.iter().map(|b| *b as char) {
                if a == chars[i] {
                    continue;
                }
                let mut typo = chars.clone();
                typo[i] = a;
                let typo: String = typo.into_iter().collect();
                assert!(decode(&typo).is_err(), "{typo} accepted");
            }
            if i + 1 < chars.len() && chars[i + 1] != '-' && chars[i] != chars[i + 1] {
                let mut swap = chars.clone();
                swap.swap(i, i + 1);
                let swap: String = swap.into_iter().collect();
                assert!(decode(&swap).is_err(), "{swap} accepted");
            }
        }
        let mut short = code.clone();
        short.pop();
        assert!(decode(&short).is_err());
        assert!(decode("U").is_err());
    }

    #[test]
    fn an_empty_profile_has_a_code_too() {
        let code = encode(&Profile::default());
        let back = decode(&code).expect("decode");
        assert_eq!(back, Profile::default().code_view());
        assert!(back.glibc.is_none() && back.pythons.is_empty());
    }
}
