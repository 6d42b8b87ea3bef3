//! The tasks behind `cargo xtask`. Each prints the commands it runs.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

/// The workspace root.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

/// The cargo target directory.
pub fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .map(|d| if d.is_absolute() { d } else { root().join(d) })
        .unwrap_or_else(|| root().join("target"))
}

fn cargo() -> Command {
    let mut cmd = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    cmd.current_dir(root());
    cmd
}

/// Run a command, echoing it; fail with its exit status.
pub fn run(cmd: &mut Command) -> Result<()> {
    eprintln!("$ {}", show(cmd));
    let status = cmd
        .status()
        .with_context(|| format!("cannot start {}", show(cmd)))?;
    if !status.success() {
        bail!("`{}` failed with {status}", show(cmd));
    }
    Ok(())
}

fn show(cmd: &Command) -> String {
    let mut parts = vec![cmd.get_program().to_string_lossy().into_owned()];
    parts.extend(cmd.get_args().map(|a| a.to_string_lossy().into_owned()));
    parts.join(" ")
}

/// The entries of `xtask/setup/NAME`: one a line, `#` starts a comment.
pub fn list_file(name: &str) -> Result<Vec<String>> {
    let path = root().join("xtask/setup").join(name);
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("read {}", path.display()))?;
    Ok(text
        .lines()
        .map(|l| l.split('#').next().unwrap_or("").trim().to_string())
        .filter(|l| !l.is_empty())
        .collect())
}

fn apt_installed(package: &str) -> bool {
    Command::new("dpkg-query")
        .args(["-W", "-f=${Status}", package])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).contains("install ok installed"))
        .unwrap_or(false)
}

/// Everything the tests need: Debian packages, the tools venv, the interpreters.
pub fn setup() -> Result<()> {
    setup_apt()?;
    tools_venv()?;
    crate::pythons::ensure_all()?;
    Ok(())
}

/// Install the Debian packages of `xtask/setup/apt.txt` that are missing.
pub fn setup_apt() -> Result<()> {
    let missing: Vec<String> = list_file("apt.txt")?
        .into_iter()
        .filter(|p| !apt_installed(p))
        .collect();
    if !missing.is_empty() {
        let is_root = Command::new("id")
            .arg("-u")
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
            .unwrap_or(false);
        if !is_root {
            bail!(
                "the tests need these Debian packages: {}\nrun: sudo apt-get install -y {}",
                missing.join(" "),
                missing.join(" ")
            );
        }
        run(Command::new("apt-get").args(["update", "-qq"]))?;
        run(Command::new("apt-get")
            .args(["install", "-y", "-qq", "--no-install-recommends"])
            .args(&missing)
            .env("DEBIAN_FRONTEND", "noninteractive"))
        .context("cannot install the Debian packages of xtask/setup/apt.txt")?;
    }
    Ok(())
}

/// The venv xtask owns for the Python tools the tests and the demo run (`xtask/setup/pip.txt`):
/// `<target>/tools-venv`, made from `python3` and never installing into a system interpreter
/// (Debian's is externally managed, PEP 668). Tests find it through `AIRGAP_TEST_PYTHON`,
/// which [`test`] sets, or the same path (`tests/src/python.rs`, `tools_python`).
pub fn tools_venv() -> Result<PathBuf> {
    let venv = target_dir().join("tools-venv");
    let python = venv.join("bin/python");
    let wanted = list_file("pip.txt")?;
    let stamp = venv.join("airgap-requirements.txt");
    let text = wanted.join("\n") + "\n";
    if python.exists() && std::fs::read_to_string(&stamp).is_ok_and(|s| s == text) {
        return Ok(python);
    }
    if venv.exists() {
        std::fs::remove_dir_all(&venv).with_context(|| format!("remove {}", venv.display()))?;
    }
    run(Command::new("python3").arg("-m").arg("venv").arg(&venv)).context(
        "cannot make the tools venv with `python3 -m venv` (on Debian: apt-get install python3-venv)",
    )?;
    run(Command::new(&python)
        .args([
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
        ])
        .args(&wanted))
    .context("cannot install xtask/setup/pip.txt into the tools venv")?;
    std::fs::write(&stamp, text)?;
    Ok(python)
}

/// Build the CLI, all plugins (with the test fixtures) and the static unpacker.
/// Returns the profile directory (`target/debug` or `target/release`).
pub fn build(release: bool) -> Result<PathBuf> {
    let mut cmd = cargo();
    cmd.args(["build", "--workspace"]);
    if release {
        cmd.arg("--release");
    }
    run(&mut cmd)?;
    let profile = if release { "release" } else { "debug" };
    let out = target_dir().join(profile);
    build_static_unpacker(release, &out)?;
    Ok(out)
}

const MUSL: &str = "x86_64-unknown-linux-musl";
const GNU: &str = "x86_64-unknown-linux-gnu";

/// The unpacker carried inside bundles must run on any x86-64 Linux: build it static, with
/// musl when that target is installed, else glibc with `crt-static`. The result is
/// `target/<profile>/airgap-unpack-static`, which airgap finds beside itself.
pub(crate) fn build_static_unpacker(release: bool, out: &Path) -> Result<()> {
    // The release unpacker is built for size ([profile.unpacker] in Cargo.toml).
    let (profile, dir) = if release {
        ("unpacker", "unpacker")
    } else {
        ("dev", "debug")
    };
    let musl_installed = Command::new("rustup")
        .args(["target", "list", "--installed"])
        .output()
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .any(|l| l.trim() == MUSL)
        })
        .unwrap_or(false);
    let mut attempts: Vec<(&str, Vec<(&str, &str)>)> = Vec::new();
    // zstd's C code needs a musl C compiler for the musl target (Debian: musl-tools).
    let musl_cc = ["musl-gcc", "x86_64-linux-musl-gcc"].iter().any(|cc| {
        Command::new("sh")
            .args(["-c", &format!("command -v {cc}")])
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false)
    });
    if musl_installed && musl_cc {
        attempts.push((MUSL, vec![]));
    }
    attempts.push((GNU, vec![("RUSTFLAGS", "-C target-feature=+crt-static")]));
    // The unpacker travels inside every bundle: no debug info, no symbols.
    let slim = "-C debuginfo=0 -C strip=symbols";
    for (triple, env) in attempts {
        let mut cmd = cargo();
        cmd.args([
            "build",
            "-p",
            "airgap-unpack",
            "--target",
            triple,
            "--profile",
            profile,
        ]);
        // With an explicit --target, RUSTFLAGS reach only the target's artifacts (kept in
        // target/<triple>/), so the normal build's cache stays valid and build scripts and
        // proc-macros are shared.
        let flags = env
            .iter()
            .find(|(k, _)| *k == "RUSTFLAGS")
            .map(|(_, v)| format!("{v} {slim}"))
            .unwrap_or_else(|| slim.to_string());
        cmd.env("RUSTFLAGS", flags);
        match run(&mut cmd) {
            Ok(()) => {
                let built = target_dir().join(triple).join(dir).join("airgap-unpack");
                let dest = out.join("airgap-unpack-static");
                std::fs::copy(&built, &dest)
                    .with_context(|| format!("copy {} to {}", built.display(), dest.display()))?;
                if triple == GNU {
                    eprintln!(
                        "note: no {MUSL} build (needs the rustup target and musl-gcc); the unpacker is a static glibc build, which runs on any x86-64 Linux"
                    );
                }
                return Ok(());
            }
            Err(e) => eprintln!("note: static unpacker for {triple} failed: {e:#}"),
        }
    }
    eprintln!(
        "warning: no static unpacker could be built; bundles will carry the dynamically linked one (needs a glibc at least as new as this machine's)"
    );
    Ok(())
}

/// A relocatable distribution folder and its tarball. `--debug` packs the debug build (for
/// tests), `--out DIR` writes elsewhere than `dist/`.
pub fn dist(args: &[String]) -> Result<()> {
    let debug = args.iter().any(|a| a == "--debug");
    let dist = match args.iter().position(|a| a == "--out") {
        Some(i) => PathBuf::from(args.get(i + 1).context("--out needs a directory")?),
        None => root().join("dist"),
    };
    // --no-build packs what is already built (tests run inside cargo, which holds the lock).
    let out = if args.iter().any(|a| a == "--no-build") {
        target_dir().join(if debug { "debug" } else { "release" })
    } else {
        build(!debug)?
    };
    let version = env!("CARGO_PKG_VERSION");
    let name = format!("airgap-{version}-x86_64-linux");
    let folder = dist.join(&name);
    if folder.exists() {
        std::fs::remove_dir_all(&folder).with_context(|| format!("remove {}", folder.display()))?;
    }
    let bin = folder.join("bin");
    let plugins = folder.join("lib/airgap/plugins");
    let docs = folder.join("share/doc/airgap");
    for d in [&bin, &plugins, &docs] {
        std::fs::create_dir_all(d).with_context(|| format!("create {}", d.display()))?;
    }
    copy(&out.join("airgap"), &bin.join("airgap"))?;
    let unpacker = out.join("airgap-unpack-static");
    let unpacker = if unpacker.exists() {
        unpacker
    } else {
        out.join("airgap-unpack")
    };
    copy(&unpacker, &folder.join("lib/airgap/airgap-unpack"))?;
    for entry in std::fs::read_dir(&out)? {
        let path = entry?.path();
        let file = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if file.starts_with("libairgap_plugin_") && file.ends_with(".so") {
            copy(&path, &plugins.join(file))?;
        }
    }
    for doc in ["README.md", "ARCHITECTURE.md"] {
        copy(&root().join(doc), &docs.join(doc))?;
    }
    copy_tree(&root().join("docs"), &docs.join("docs"))?;
    let tarball = dist.join(format!("{name}.tar.gz"));
    run(Command::new("tar")
        .arg("-czf")
        .arg(&tarball)
        .arg("-C")
        .arg(&dist)
        .arg(&name))?;
    eprintln!("dist: {}\n      {}", folder.display(), tarball.display());
    Ok(())
}

fn copy(from: &Path, to: &Path) -> Result<()> {
    std::fs::copy(from, to)
        .with_context(|| format!("copy {} to {}", from.display(), to.display()))?;
    Ok(())
}

fn copy_tree(from: &Path, to: &Path) -> Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from).with_context(|| format!("read {}", from.display()))? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_tree(&entry.path(), &target)?;
        } else {
            copy(&entry.path(), &target)?;
        }
    }
    Ok(())
}

/// Set up, build, and run every test; then the counts (see [`crate::summary`]).
pub fn test(args: &[String]) -> Result<()> {
    setup()?;
    build(false)?;
    let tools = tools_venv()?;
    let mut cmd = cargo();
    cmd.args(["test", "--workspace", "--no-fail-fast"]);
    let extra: Vec<&String> = args.iter().skip_while(|a| *a == "--").collect();
    if !extra.is_empty() {
        cmd.arg("--").args(extra);
    }
    // The tests run the tools venv's python3 and pip first on PATH (py-rattler, a recent pip).
    let mut path = vec![tools.parent().map(Path::to_path_buf).unwrap_or_default()];
    if let Some(old) = std::env::var_os("PATH") {
        path.extend(std::env::split_paths(&old));
    }
    cmd.env("AIRGAP_TEST_PYTHON", &tools)
        .env("PATH", std::env::join_paths(path)?);
    crate::summary::run_counted(cmd)
}

/// What CI runs: formatting, lints, then every test.
pub fn ci(args: &[String]) -> Result<()> {
    // CI never lets a test pass without testing.
    std::env::remove_var("AIRGAP_TEST_ALLOW_SKIP");
    run(cargo().args(["fmt", "--all", "--", "--check"]))?;
    run(cargo().args([
        "clippy",
        "--workspace",
        "--all-targets",
        "--",
        "-D",
        "warnings",
    ]))?;
    test(args)
}

/// The clean-room proof: every e2e workload (the slow ones too), then the table.
pub fn e2e(args: &[String]) -> Result<()> {
    setup()?;
    build(false)?;
    let results = target_dir().join("e2e/results.tsv");
    if results.exists() {
        std::fs::remove_file(&results).with_context(|| format!("remove {}", results.display()))?;
    }
    let mut cmd = cargo();
    cmd.args([
        "test",
        "-p",
        "airgap-tests",
        "--test",
        "it",
        "--",
        "e2e::",
        "--include-ignored",
        "--test-threads",
        "1",
    ]);
    cmd.args(args);
    let outcome = run(&mut cmd);
    print_e2e_table(&results)?;
    outcome
}

fn print_e2e_table(results: &Path) -> Result<()> {
    let text = std::fs::read_to_string(results).unwrap_or_default();
    println!("\n| workload | bundle size | bundle time | unpack time | result |");
    println!("|---|---|---|---|---|");
    for line in text.lines() {
        let cols: Vec<&str> = line.split('\t').collect();
        if let [workload, size, bundle, unpack, result] = cols.as_slice() {
            let size: f64 = size.parse().unwrap_or(0.0);
            println!(
                "| {workload} | {:.1} MiB | {bundle} s | {unpack} s | {result} |",
                size / 1024.0 / 1024.0
            );
        }
    }
    Ok(())
}

/// The archive benchmark (see `bench.rs`).
pub fn bench(args: &[String]) -> Result<()> {
    crate::bench::run(&root(), args)
}

/// The main job on a default example, step by step: a small real environment made from this
/// machine's `python3`, bundled, verified, unpacked at another path and run there.
pub fn demo() -> Result<()> {
    step("setting up what the demo needs (Debian packages, the tools venv with a recent pip)");
    setup_apt()?;
    let tools = tools_venv()?;
    step("building airgap, its plugins and the static unpacker");
    let out = build(false)?;
    let airgap = out.join("airgap");
    let demo = target_dir().join("demo");
    std::fs::create_dir_all(&demo).with_context(|| format!("create {}", demo.display()))?;
    let python = std::env::var("AIRGAP_DEMO_PYTHON").unwrap_or_else(|_| "python3".to_string());
    let base_prefix = ask(&python, "import sys; print(sys.base_prefix)")?;
    let interpreter = ask(&python, "import sys; print(sys.executable)")?;
    // A distribution's Python lives in /usr among everything else: it is not bundled (the
    // conda source refuses it). There the example is the seed's other case: a wheelhouse for
    // the target's own Python, installed offline into a new venv with `unpack --python`.
    let system_python = base_prefix == "/usr";
    let data = demo.join("data");
    std::fs::create_dir_all(&data)?;
    std::fs::write(data.join("greeting.txt"), "hello from the connected side\n")?;
    let config = demo.join("airgap.toml");
    if system_python {
        step(&format!(
            "{python} is the distribution's Python ({interpreter}): the example is a wheelhouse for it"
        ));
        write_wheelhouse_example(&config, &python)?;
    } else {
        write_venv_example(&demo, &config, &python, &base_prefix, &tools)?;
    }
    let bundle = demo.join("example-env.tar.gz");
    bundle_and_inspect(&airgap, &config, &bundle)?;
    unpack_and_run(
        &airgap,
        &demo,
        &bundle,
        system_python.then_some(&*interpreter),
    )?;
    step(&format!("done: the bundle is {}", bundle.display()));
    Ok(())
}

/// What `python` prints for `code`, trimmed.
fn ask(python: &str, code: &str) -> Result<String> {
    let out = Command::new(python)
        .args(["-c", code])
        .output()
        .with_context(|| format!("run {python}"))?;
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// The example for a distribution's Python: wheels for its version and glibc (one with a
/// compiled extension) and a data file.
fn write_wheelhouse_example(config: &Path, python: &str) -> Result<()> {
    let version = ask(python, "import platform; print(platform.python_version())")?;
    let glibc = ask(
        python,
        "import os; print(os.confstr('CS_GNU_LIBC_VERSION').split()[1])",
    )?;
    std::fs::write(
        config,
        format!(
            r#"# The default example on a distribution's Python: wheels for it (one with a compiled
# extension), proven to install offline, and a data file.
[bundle]
name = "example-env"

[target]
python = "{version}"
glibc = "{glibc}"

[sources.pip]
packages = ["markupsafe==2.1.5", "attrs==23.2.0"]

[sources.files]
paths = ["data"]
"#
        ),
    )?;
    Ok(())
}

/// The example for any other Python: a venv made from it (once; later runs reuse it) with a
/// compiled package installed by the tools venv's pip, a data file, and the system libraries
/// they need.
fn write_venv_example(
    demo: &Path,
    config: &Path,
    python: &str,
    base_prefix: &str,
    tools: &Path,
) -> Result<()> {
    let env = demo.join("example-env");
    if !env.join("bin/python").exists() {
        step(&format!(
            "making an example venv at {} from {python} ({base_prefix})",
            env.display()
        ));
        // --without-pip: a python3 may lack ensurepip; the tools venv's pip installs into it.
        run(Command::new(python)
            .args(["-m", "venv", "--without-pip"])
            .arg(&env))?;
        run(Command::new(tools)
            .args(["-m", "pip", "--python"])
            .arg(env.join("bin/python"))
            .args(["install", "--quiet", "markupsafe==2.1.5", "attrs==23.2.0"]))?;
    } else {
        step(&format!("reusing the example venv at {}", env.display()));
    }
    std::fs::write(
        config,
        r#"# The default example: a venv with a compiled package, a data file, and the system
# libraries they need.
[bundle]
name = "example-env"

[sources.conda]
prefix = "example-env"

[sources.files]
paths = ["data"]

[sources.syslibs]
"#,
    )?;
    Ok(())
}

/// On the connected side: bundle the example, verify every file against the manifest, and
/// show what is inside.
fn bundle_and_inspect(airgap: &Path, config: &Path, bundle: &Path) -> Result<()> {
    step(&format!(
        "bundling: airgap bundle -c {} -o {}",
        config.display(),
        bundle.display()
    ));
    run(Command::new(airgap)
        .arg("bundle")
        .arg("-c")
        .arg(config)
        .arg("-o")
        .arg(bundle))?;
    step("verifying every file against the manifest: airgap verify");
    run(Command::new(airgap).arg("verify").arg(bundle))?;
    step("what is inside: airgap inspect");
    run(Command::new(airgap).arg("inspect").arg(bundle))?;
    Ok(())
}

/// As on the target: unpack at another path (into a new venv of `interpreter` for a
/// wheelhouse), run the environment there with a bare PATH, and read the data file.
fn unpack_and_run(
    airgap: &Path,
    demo: &Path,
    bundle: &Path,
    interpreter: Option<&str>,
) -> Result<()> {
    let elsewhere = demo.join(format!("elsewhere-{}", std::process::id()));
    let dest = elsewhere.join("example-env");
    std::fs::create_dir_all(&elsewhere)?;
    step(&format!(
        "unpacking at another path: airgap unpack {} {}",
        bundle.display(),
        dest.display()
    ));
    let mut unpack = Command::new(airgap);
    unpack.arg("unpack").arg(bundle).arg(&dest);
    if let Some(interpreter) = interpreter {
        unpack.arg("--python").arg(interpreter);
    }
    run(&mut unpack)?;
    step("running the unpacked environment there");
    let env_dir = if interpreter.is_some() { "venv" } else { "env" };
    run(Command::new(dest.join(env_dir).join("bin/python"))
        .args(["-c", "import markupsafe, attrs, sys; print('python', sys.version.split()[0], 'at', sys.prefix); print(markupsafe.escape('<airgap works>'))"])
        .env_clear()
        .env("PATH", "/usr/bin:/bin"))?;
    run(Command::new("cat").arg(dest.join("data/greeting.txt")))?;
    std::fs::remove_dir_all(&elsewhere).ok();
    Ok(())
}

fn step(text: &str) {
    eprintln!("\n==> {text}");
}

/// `cargo xtask delta-study`: what a delta of real upgrades would weigh with patches or
/// content-defined chunking instead of whole files (`xtask/delta-study.py`; the figures are
/// in docs/performance.md). Needs the package index; a venv of its own with `fastcdc`.
pub fn delta_study() -> Result<()> {
    let venv = target_dir().join("delta-study-venv");
    let python = venv.join("bin/python");
    if !python.exists() {
        run(Command::new("python3").arg("-m").arg("venv").arg(&venv))
            .context("cannot make the study's venv with `python3 -m venv`")?;
        run(Command::new(&python).args([
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "fastcdc==1.7.0",
        ]))
        .context("cannot install fastcdc into the study's venv")?;
    }
    run(Command::new(&python).arg(root().join("xtask/delta-study.py")))
}
