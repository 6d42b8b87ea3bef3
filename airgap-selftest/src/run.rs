//! Each item in its own isolated interpreter process, with a time limit, on every core.

use std::io::Read;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::{Item, ItemKind};

/// How one item went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// It loaded.
    Loaded,
    /// It did not: the interpreter's last word, or the time limit.
    Failed(String),
}

/// The most of a failing item's stderr kept: its last line is the reason.
const MAX_STDERR: u64 = 64 * 1024;

/// The program each kind runs: a library through `ctypes.CDLL` (CPython opens it with
/// `RTLD_NOW`, so every symbol is bound now, by the real loader), anything else imported by
/// its module name, so that its package's `__init__` runs first as in real use.
fn code(kind: ItemKind) -> &'static str {
    match kind {
        ItemKind::Library => "import ctypes, sys\nctypes.CDLL(sys.argv[1])",
        ItemKind::Extension | ItemKind::Module => {
            "import importlib, sys\nimportlib.import_module(sys.argv[1])"
        }
    }
}

/// Processes to run at once for `jobs` items: one a core, never more than the items.
fn workers(jobs: usize) -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .min(jobs.max(1))
}

/// Run every item with `python` (`-I`: no user site, no `PYTHON*` variables, no current
/// directory on the path; `-B`: no byte code written into the tree), as many at once as
/// there are cores, each killed after `timeout_secs`. Outcomes in the order of `items`; once
/// `stop` says so (Ctrl-C), no more items start, and those left are "not run".
pub fn run_items(
    root: &Path,
    python: &Path,
    items: &[Item],
    timeout_secs: u64,
    stop: &(dyn Fn() -> bool + Sync),
) -> Vec<Outcome> {
    let workers = workers(items.len());
    let next = AtomicUsize::new(0);
    let outcomes: Mutex<Vec<Option<Outcome>>> = Mutex::new(vec![None; items.len()]);
    let limit = Duration::from_secs(timeout_secs.max(1));
    std::thread::scope(|scope| {
        for _ in 0..workers {
            scope.spawn(|| loop {
                if stop() {
                    break;
                }
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(item) = items.get(i) else { break };
                let outcome = run_one(root, python, item, limit);
                if let Ok(mut all) = outcomes.lock() {
                    all[i] = Some(outcome);
                }
            });
        }
    });
    outcomes
        .into_inner()
        .unwrap_or_default()
        .into_iter()
        .map(|o| o.unwrap_or_else(|| Outcome::Failed("not run".into())))
        .collect()
}

/// One item, in its own process. A library is loaded with its own directory first on the
/// search path: that is where the extension or program that needs it finds it (`$ORIGIN`
/// paths), and so where its siblings are found in real use, as the loader model
/// (`airgap_elf::model`) resolves a library in its users' context.
fn run_one(root: &Path, python: &Path, item: &Item, limit: Duration) -> Outcome {
    let mut command = Command::new(python);
    if item.kind == ItemKind::Library {
        if let Some(dir) = Path::new(&item.target).parent() {
            let mut path = dir.as_os_str().to_os_string();
            if let Some(old) = std::env::var_os("LD_LIBRARY_PATH").filter(|v| !v.is_empty()) {
                path.push(":");
                path.push(old);
            }
            command.env("LD_LIBRARY_PATH", path);
        }
    }
    let child = command
        .args(["-I", "-B", "-c", code(item.kind), &item.target])
        .current_dir(root)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn();
    match child {
        Ok(child) => wait(child, limit),
        Err(e) => Outcome::Failed(format!("cannot run {}: {e}", python.display())),
    }
}

/// Wait for the process, reading its stderr meanwhile (so that a chatty one cannot block on
/// a full pipe); kill it at the limit.
fn wait(mut child: Child, limit: Duration) -> Outcome {
    let stderr = child.stderr.take().map(|pipe| {
        std::thread::spawn(move || {
            let mut text = Vec::new();
            let _ = pipe.take(MAX_STDERR).read_to_end(&mut text);
            text
        })
    });
    let start = Instant::now();
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Some(status),
            Ok(None) if start.elapsed() >= limit => {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(5)),
            Err(_) => break None,
        }
    };
    let text = stderr
        .and_then(|t| t.join().ok())
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default();
    match status {
        Some(s) if s.success() => Outcome::Loaded,
        Some(s) => Outcome::Failed(last_line(&text).unwrap_or_else(|| describe(s))),
        None => Outcome::Failed(format!("no answer within {} s: killed", limit.as_secs())),
    }
}

/// How a process without a word on stderr ended.
fn describe(status: std::process::ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (_, Some(sig)) => format!("killed by signal {sig}"),
        (Some(code), _) => format!("exit status {code}"),
        _ => "failed".into(),
    }
}

/// The last non-empty line of a program's stderr: Python's exception line.
pub(crate) fn last_line(text: &str) -> Option<String> {
    text.lines()
        .rev()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .map(str::to_string)
}

/// The screening program of [`screen`]: import each name given, in this one process, and
/// say how each went on a line of its own behind a marker, so that what a module prints
/// itself cannot be taken for an answer.
const SCREEN: &str = r#"import importlib, sys, traceback
for i, name in enumerate(sys.argv[1:]):
    try:
        importlib.import_module(name)
        r = "ok"
    except BaseException as e:
        r = "fail " + traceback.format_exception_only(type(e), e)[-1].strip().replace("\n", " ")
    sys.__stdout__.write("\0airgap-selftest %d %s\n" % (i, r))
    sys.__stdout__.flush()
"#;

/// The trial's fast path: the importable items (extensions, modules) imported by a few
/// long-lived processes, one a core, instead of one process each; every item that does not
/// pass there (it failed, or its process crashed or hung) is run again alone by
/// [`run_items`], whose answer is the one kept. So what is recorded as failing was seen
/// failing on its own, as the target tries it; only a pass can come from the shared process.
pub fn screen(
    root: &Path,
    python: &Path,
    items: &[Item],
    timeout_secs: u64,
    stop: &(dyn Fn() -> bool + Sync),
) -> Vec<Outcome> {
    let limit = Duration::from_secs(timeout_secs.max(1));
    let importable: Vec<usize> = (0..items.len())
        .filter(|&i| items[i].kind != ItemKind::Library)
        .collect();
    let workers = workers(importable.len());
    let mut passed = vec![false; items.len()];
    let chunks: Vec<Vec<usize>> = (0..workers)
        .map(|w| {
            importable
                .iter()
                .copied()
                .skip(w)
                .step_by(workers)
                .collect()
        })
        .collect();
    std::thread::scope(|scope| {
        let handles: Vec<_> = chunks
            .iter()
            .map(|chunk| scope.spawn(move || screen_chunk(root, python, items, chunk, limit)))
            .collect();
        for (chunk, handle) in chunks.iter().zip(handles) {
            for (k, ok) in handle.join().unwrap_or_default().into_iter().enumerate() {
                if ok {
                    passed[chunk[k]] = true;
                }
            }
        }
    });
    let again: Vec<usize> = (0..items.len()).filter(|&i| !passed[i]).collect();
    let rerun: Vec<Item> = again.iter().map(|&i| items[i].clone()).collect();
    let mut outcomes = vec![Outcome::Loaded; items.len()];
    for (i, outcome) in again
        .into_iter()
        .zip(run_items(root, python, &rerun, timeout_secs, stop))
    {
        outcomes[i] = outcome;
    }
    outcomes
}

/// One screening process over `chunk` (indexes into `items`): which passed, in order, as
/// far as it answered; a silence longer than `limit` ends it.
fn screen_chunk(
    root: &Path,
    python: &Path,
    items: &[Item],
    chunk: &[usize],
    limit: Duration,
) -> Vec<bool> {
    use std::io::BufRead;
    let mut passed = vec![false; chunk.len()];
    if chunk.is_empty() {
        return passed;
    }
    let child = Command::new(python)
        .args(["-I", "-B", "-c", SCREEN])
        .args(chunk.iter().map(|&i| &items[i].target))
        .current_dir(root)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn();
    let Ok(mut child) = child else {
        return passed;
    };
    let Some(stdout) = child.stdout.take() else {
        return passed;
    };
    let (tx, rx) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout)
            .split(b'\n')
            .map_while(Result::ok)
        {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut answered = 0;
    while answered < chunk.len() {
        let Ok(line) = rx.recv_timeout(limit) else {
            break;
        };
        let text = String::from_utf8_lossy(&line);
        let Some(rest) = text
            .split('\0')
            .nth(1)
            .and_then(|t| t.strip_prefix("airgap-selftest "))
        else {
            continue;
        };
        let mut parts = rest.splitn(2, ' ');
        if let (Some(Ok(k)), Some(result)) = (parts.next().map(str::parse::<usize>), parts.next()) {
            if let Some(slot) = passed.get_mut(k) {
                *slot = result == "ok";
            }
            answered = k + 1;
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    let _ = reader.join();
    passed
}

#[cfg(test)]
mod tests {
    use super::*;

    fn module(name: &str) -> Item {
        Item {
            kind: ItemKind::Module,
            name: name.into(),
            target: name.into(),
        }
    }

    /// `this` prints the Zen of Python on import: what a module prints is not an answer.
    #[test]
    fn screening_keeps_passes_and_confirms_failures_alone() {
        let python = Path::new("/usr/bin/python3");
        assert!(python.is_file(), "the test needs Debian's python3");
        let items = [module("json"), module("this"), module("no_such_module_xyz")];
        let out = screen(Path::new("/"), python, &items, 30, &|| false);
        assert_eq!(out[0], Outcome::Loaded);
        assert_eq!(out[1], Outcome::Loaded);
        match &out[2] {
            Outcome::Failed(reason) => assert!(reason.contains("No module named"), "{reason}"),
            other => panic!("{other:?}"),
        }
        assert_eq!(
            out,
            run_items(Path::new("/"), python, &items, 30, &|| false)
        );
    }
}
