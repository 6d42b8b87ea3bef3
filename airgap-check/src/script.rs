//! Scripts whose `#!` line names an interpreter: which interpreters the target can be
//! expected to have. Inside the bundle (a prefix that unpacking rewrites, or the relative
//! form the conda plugin writes) is fine; so are the target's standard system directories
//! (`/bin/sh`, `/usr/bin/perl`, `/usr/bin/env bash`); a Python there, or one found on the
//! target's `PATH` through `/usr/bin/env`, runs instead of the bundled one: a warning. Any
//! other absolute path (`/opt/other/python3`, the build machine's `/root/.pyenv/...`) is not
//! on the target: the script fails there with "required file not found".

use std::io::Read;
use std::path::Path;

/// How many bytes of a script are read: the `#!` line and pip's three-line form for long paths.
const HEAD: usize = 1024;

/// The directories every Linux target has its own interpreters in.
const SYSTEM_DIRS: &[&str] = &["/bin/", "/sbin/", "/usr/bin/", "/usr/sbin/"];

/// What a script's interpreter means on the target.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    /// In the bundle, or a system interpreter of the target.
    Fine,
    /// Runs there, maybe not as intended.
    Warning(String),
    /// Does not run there.
    Problem(String),
}

/// Judge the script at `disk` (bundle path `path`); `rewritten` are the build machine's
/// prefixes that unpacking rewrites in it; `in_bundle` says whether a bundle path exists
/// (for the relative header the conda plugin writes). Only the first [`HEAD`] bytes are read.
pub fn judge(
    path: &str,
    disk: &Path,
    rewritten: &[String],
    in_bundle: &dyn Fn(&str) -> bool,
) -> Verdict {
    let mut head = Vec::with_capacity(HEAD);
    let read = std::fs::File::open(disk).and_then(|f| f.take(HEAD as u64).read_to_end(&mut head));
    if read.is_err() {
        return Verdict::Fine;
    }
    if let Some(relative) = airgap_shebang::relative_interpreter(&head) {
        let dir = path.rsplit_once('/').map_or("", |(d, _)| d);
        let named = airgap_elf::join_bundle_path(dir, &relative);
        if named.as_deref().is_some_and(in_bundle) {
            return Verdict::Fine;
        }
        return Verdict::Problem(format!(
            "{path}: its #! runs {relative:?} next to it, which the bundle does not have: it \
             will not run there"
        ));
    }
    let Some((interpreter, arg)) = interpreter(&head) else {
        return Verdict::Fine;
    };
    if rewritten
        .iter()
        .any(|p| Path::new(&interpreter).starts_with(p))
    {
        return Verdict::Fine;
    }
    let name = interpreter.rsplit('/').next().unwrap_or("");
    if SYSTEM_DIRS.iter().any(|d| {
        interpreter
            .strip_prefix(d)
            .is_some_and(|rest| !rest.contains('/'))
    }) {
        if name == "env" {
            if arg.as_deref().is_some_and(is_python) {
                return Verdict::Warning(format!(
                    "{path}: its #! runs {:?} from the target's PATH (/usr/bin/env), not the \
                     bundled Python",
                    arg.unwrap_or_default()
                ));
            }
            return Verdict::Fine;
        }
        if is_python(name) {
            return Verdict::Warning(format!(
                "{path}: its #! runs the target's system Python {interpreter:?}, not the bundled one"
            ));
        }
        return Verdict::Fine;
    }
    Verdict::Problem(format!(
        "{path}: its #! names {interpreter:?}, which is neither in the bundle nor a system \
         interpreter of the target: it will not run there"
    ))
}

fn is_python(name: &str) -> bool {
    name.starts_with("python") || name.starts_with("pypy")
}

/// The absolute interpreter a script's head names and its first argument, read by the one
/// `#!` reader (pip's form for long paths names the path it execs).
fn interpreter(head: &[u8]) -> Option<(String, Option<String>)> {
    let sb = airgap_shebang::parse(head)?;
    let arg = sb.args.split_whitespace().next().map(str::to_string);
    Some((sb.interpreter, arg))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn verdict(head: &str, rewritten: &[&str]) -> Verdict {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("s");
        std::fs::write(&p, head).expect("write");
        let rewritten: Vec<String> = rewritten.iter().map(|s| s.to_string()).collect();
        judge("env/bin/s", &p, &rewritten, &|p| p == "env/bin/python3.11")
    }

    #[test]
    fn which_interpreters_the_target_has() {
        assert_eq!(verdict("#!/bin/sh\necho\n", &[]), Verdict::Fine);
        assert_eq!(verdict("#!/usr/bin/perl -w\n", &[]), Verdict::Fine);
        assert_eq!(verdict("#!/usr/bin/env bash\n", &[]), Verdict::Fine);
        assert_eq!(
            verdict("#!/src/env/bin/perl\n", &["/src/env"]),
            Verdict::Fine
        );
        let relative = "#!/bin/sh\n'''exec' \"$(dirname -- \"$(readlink -f -- \"$0\")\")/python3.11\" \"$0\" \"$@\"\n' '''\n";
        assert_eq!(verdict(relative, &[]), Verdict::Fine);
        let missing = airgap_shebang::relative_header("python", "");
        assert!(
            matches!(verdict(&missing, &[]), Verdict::Problem(p) if p.contains("\"python\" next to it")),
            "{:?}",
            verdict(&missing, &[])
        );
        assert!(
            matches!(verdict("#!/usr/bin/env python3\n", &[]), Verdict::Warning(w) if w.contains("PATH"))
        );
        assert!(matches!(
            verdict("#!/usr/bin/python3\n", &[]),
            Verdict::Warning(_)
        ));
        assert!(
            matches!(verdict("#!/opt/other/python3\n", &[]), Verdict::Problem(p) if p.contains("env/bin/s") && p.contains("/opt/other/python3"))
        );
        assert!(matches!(
            verdict("#!/usr/local/bin/python3\n", &[]),
            Verdict::Problem(_)
        ));
        let long = "#!/bin/sh\n'''exec' \"/opt/other/bin/python\" \"$0\" \"$@\"\n' '''\n";
        assert!(
            matches!(verdict(long, &[]), Verdict::Problem(p) if p.contains("/opt/other/bin/python"))
        );
        // Not a prefix match on a string: /src/env2 is not under /src/env.
        assert!(matches!(
            verdict("#!/src/env2/bin/python\n", &["/src/env"]),
            Verdict::Problem(_)
        ));
    }
}
