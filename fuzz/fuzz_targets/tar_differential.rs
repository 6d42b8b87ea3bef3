//! Arbitrary bytes as an (uncompressed) tar stream, read by airgap's strict reader and by
//! GNU tar (`tar -tv`, the second oracle): whenever airgap accepts the stream, GNU tar must
//! list the same entries (type, name, link target, size), in the same order, without a word
//! on stderr. A disagreement is a crash. What the reader refuses is not compared.
#![no_main]

use std::io::Write;
use std::process::{Command, Stdio};

use airgap_archive::format::tarfmt::{EntryType, TarReader};
use libfuzzer_sys::fuzz_target;

struct Listed {
    kind: EntryType,
    path: Vec<u8>,
    link: Vec<u8>,
    size: u64,
}

/// What airgap's reader sees, or `None` when it (or the checker, for other entry types)
/// refuses the stream.
fn airgap_list(data: &[u8]) -> Option<Vec<Listed>> {
    let mut r = TarReader::new(data);
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let e = r.next_entry().ok()?;
        let Some(e) = e else { break };
        if let EntryType::Other(_) = e.kind {
            return None;
        }
        while r.read_data(&mut buf).ok()? > 0 {}
        out.push(Listed {
            kind: e.kind,
            path: e.path,
            link: e.link,
            size: e.real_size,
        });
    }
    Some(out)
}

fn expected_line(e: &Listed, line: &[u8]) -> bool {
    let type_ok = match e.kind {
        EntryType::File => line.starts_with(b"-"),
        EntryType::Sparse => line.starts_with(b"-") || line.starts_with(b"S"),
        EntryType::HardLink => line.starts_with(b"h"),
        EntryType::Symlink => line.starts_with(b"l"),
        EntryType::Dir => line.starts_with(b"d"),
        EntryType::Other(_) => false,
    };
    // perms, owner, size, date, time, then the name.
    let mut fields = Vec::new();
    let mut i = 0;
    while fields.len() < 5 && i < line.len() {
        while i < line.len() && line[i] == b' ' {
            i += 1;
        }
        let start = i;
        while i < line.len() && line[i] != b' ' {
            i += 1;
        }
        fields.push(&line[start..i]);
    }
    let rest = line.get(i + 1..).unwrap_or(b"");
    let size_ok = match e.kind {
        EntryType::File | EntryType::Sparse => fields.get(2) == Some(&e.size.to_string().as_bytes()),
        _ => true,
    };
    let mut name = e.path.clone();
    let mut alt = name.clone();
    match e.kind {
        EntryType::HardLink => {
            name.extend_from_slice(b" link to ");
            name.extend_from_slice(&e.link);
            alt = name.clone();
        }
        EntryType::Symlink => {
            name.extend_from_slice(b" -> ");
            name.extend_from_slice(&e.link);
            alt = name.clone();
        }
        EntryType::Dir => alt.push(b'/'),
        _ => {}
    }
    type_ok && size_ok && (rest == name.as_slice() || rest == alt.as_slice())
}

fuzz_target!(|data: &[u8]| {
    let Some(entries) = airgap_list(data) else {
        return;
    };
    // Names with a newline would split GNU tar's lines: not comparable this way.
    if entries
        .iter()
        .any(|e| e.path.contains(&b'\n') || e.link.contains(&b'\n'))
    {
        return;
    }
    let mut child = Command::new("tar")
        .args(["-tvf", "-", "--numeric-owner", "--full-time", "--quoting-style=literal"])
        .env("TZ", "UTC")
        .env("LC_ALL", "C")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("GNU tar is the oracle of this target");
    let mut stdin = child.stdin.take().expect("piped");
    let input = data.to_vec();
    let writer = std::thread::spawn(move || {
        let _ = stdin.write_all(&input);
    });
    let out = child.wait_with_output().expect("tar ran");
    let _ = writer.join();
    let lines: Vec<&[u8]> = out
        .stdout
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .collect();
    let agree = out.status.success()
        && out.stderr.is_empty()
        && lines.len() == entries.len()
        && entries.iter().zip(&lines).all(|(e, l)| expected_line(e, l));
    if !agree {
        panic!(
            "airgap and GNU tar disagree:\nairgap: {:?}\ntar ({}): {}\n{}",
            entries
                .iter()
                .map(|e| (e.kind, String::from_utf8_lossy(&e.path).into_owned(), String::from_utf8_lossy(&e.link).into_owned(), e.size))
                .collect::<Vec<_>>(),
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
});
