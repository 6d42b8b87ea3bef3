//! The one reader of a script's `#!` line, for the conda plugin (which rewrites shebangs that
//! name the environment's Python) and the target check (which judges what a script runs).
//!
//! Shebangs that name the environment's Python by absolute path:
//! Such a line breaks as soon as the environment moves, and a rewritten one breaks when the new
//! path is longer than the kernel's limit (127 bytes). They are replaced by the form pip and
//! conda use for long paths, made relative: `/bin/sh` runs the second line, which Python reads
//! as a string literal, and execs the interpreter found next to the script:
//!
//! ```text
//! #!/bin/sh
//! '''exec' "$(dirname -- "$(readlink -f -- "$0")")/python3.11" "$0" "$@"
//! ' '''
//! ```
//!
//! The script then runs wherever the bundle is unpacked, with no rewriting at all.

/// The kernel's limit on the length of a `#!` line (without the newline).
pub const KERNEL_LIMIT: usize = 127;

/// The interpreter named by a script's first line, and its arguments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shebang {
    /// The interpreter's absolute path.
    pub interpreter: String,
    /// Arguments after the interpreter on the `#!` line.
    pub args: String,
    /// Byte length of the header to replace (the `#!` line, or pip's three-line form).
    pub header_len: usize,
}

/// Read the shebang of a text file, understanding pip's `'''exec'` form for long paths too.
pub fn parse(data: &[u8]) -> Option<Shebang> {
    if !data.starts_with(b"#!") {
        return None;
    }
    let end = data.iter().position(|&b| b == b'\n').unwrap_or(data.len());
    let line = std::str::from_utf8(&data[2..end]).ok()?.trim();
    if line == "/bin/sh" {
        if let Some(pip) = pip_long_form(data, end) {
            return Some(pip);
        }
    }
    let (interpreter, args) = match line.split_once([' ', '\t']) {
        Some((i, a)) => (i, a.trim()),
        None => (line, ""),
    };
    if !interpreter.starts_with('/') {
        return None;
    }
    Some(Shebang {
        interpreter: interpreter.to_string(),
        args: args.to_string(),
        header_len: (end + 1).min(data.len()),
    })
}

/// pip's header for long paths after a `#!/bin/sh` line ending at `end`:
/// `#!/bin/sh\n'''exec' "/long/path/python" "$0" "$@"\n' '''\n`.
fn pip_long_form(data: &[u8], end: usize) -> Option<Shebang> {
    let rest = &data[(end + 1).min(data.len())..];
    let second_end = rest.iter().position(|&b| b == b'\n')?;
    let second = std::str::from_utf8(&rest[..second_end]).ok()?;
    // pip quotes the path or not, depending on its version.
    let rest = second.strip_prefix("'''exec' ")?;
    let (interpreter, tail) = match rest.strip_prefix('"') {
        Some(quoted) => quoted.split_once('"')?,
        None => rest.split_once(' ')?,
    };
    if !tail.trim_start().starts_with("\"$0\" \"$@\"") || !interpreter.starts_with('/') {
        return None;
    }
    let third_start = end + 1 + second_end + 1;
    let third = &data[third_start.min(data.len())..];
    let third_end = third
        .iter()
        .position(|&b| b == b'\n')
        .unwrap_or(third.len());
    if &third[..third_end] != b"' '''" {
        return None;
    }
    Some(Shebang {
        interpreter: interpreter.to_string(),
        args: String::new(),
        header_len: (third_start + third_end + 1).min(data.len()),
    })
}

/// True when the interpreter's file name says it is a Python.
pub fn is_python(interpreter: &str) -> bool {
    let name = interpreter.rsplit('/').next().unwrap_or(interpreter);
    name.starts_with("python") || name.starts_with("pypy")
}

/// How the header of [`relative_header`] starts its second line, before the relative path.
const RELATIVE_EXEC: &str = "'''exec' \"$(dirname -- \"$(readlink -f -- \"$0\")\")/";

/// The relative path (from the script's real directory) of the interpreter that a header
/// written by [`relative_header`] runs, so that a reader can check it is there.
pub fn relative_interpreter(data: &[u8]) -> Option<String> {
    let rest = data.strip_prefix(b"#!/bin/sh\n")?;
    let end = rest.iter().position(|&b| b == b'\n').unwrap_or(rest.len());
    let second = std::str::from_utf8(&rest[..end]).ok()?;
    let relative = second.strip_prefix(RELATIVE_EXEC)?.split_once('"')?.0;
    (!relative.is_empty()).then(|| relative.to_string())
}

/// The header that runs the Python at `relative` (from the script's directory).
pub fn relative_header(relative: &str, args: &str) -> String {
    let args = if args.is_empty() {
        String::new()
    } else {
        format!("{args} ")
    };
    format!("#!/bin/sh\n{RELATIVE_EXEC}{relative}\" {args}\"$0\" \"$@\"\n' '''\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_plain_and_pip_long_forms() {
        let s = parse(b"#!/p/bin/python3.11 -E\nimport x\n").expect("shebang");
        assert_eq!(s.interpreter, "/p/bin/python3.11");
        assert_eq!(s.args, "-E");
        let long = b"#!/bin/sh\n'''exec' \"/long/bin/python\" \"$0\" \"$@\"\n' '''\nimport x\n";
        let s = parse(long).expect("pip form");
        assert_eq!(s.interpreter, "/long/bin/python");
        assert_eq!(&long[s.header_len..], b"import x\n");
        let unquoted = b"#!/bin/sh\n'''exec' /long/bin/python3 \"$0\" \"$@\"\n' '''\nimport x\n";
        let s = parse(unquoted).expect("pip's unquoted form");
        assert_eq!(s.interpreter, "/long/bin/python3");
        assert_eq!(&unquoted[s.header_len..], b"import x\n");
        assert!(parse(b"#!/usr/bin/env python\n").is_some());
        let ours = relative_header("../bin/python3.11", "-E");
        assert!(ours.starts_with("#!/bin/sh\n'''exec' \"$(dirname -- \"$(readlink -f -- \"$0\")\")/../bin/python3.11\" -E \"$0\" \"$@\"\n' '''\n"), "{ours}");
        assert_eq!(
            relative_interpreter(ours.as_bytes()).as_deref(),
            Some("../bin/python3.11")
        );
        assert_eq!(relative_interpreter(long), None);
        // A shell script is a shell script, not a failed pip header.
        let sh = parse(b"#!/bin/sh\necho hi\n").expect("plain /bin/sh");
        assert_eq!((sh.interpreter.as_str(), sh.header_len), ("/bin/sh", 10));
        assert!(parse(b"import x\n").is_none());
    }
}
