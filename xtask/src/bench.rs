//! `cargo xtask bench`: build a realistic tree (a real Python installation with its installed
//! packages, a second one, real wheels, a venv's symlinks, a conda-like hard-linked copy) and
//! print, from one run, `airgap bundle` beside GNU `tar -czhf` and `tar -czf` (time, size,
//! peak memory), `airgap bundle --compression zstd` beside `tar -cf - -h | zstd`, and
//! `airgap unpack` and `airgap verify` beside `tar -xzf`; then the real job (the conda
//! source and syslibs, checked: [`real`]) the same way, and with `--scale` a tree of over
//! 5 GB with torch and its CUDA libraries ([`scale`]).
//!
//! ```text
//! cargo xtask bench [--work DIR] [--python PREFIX]... [--no-build] [--keep] [--scale]
//! ```
//! The trees are cached in the work directory (default `target/bench`) between runs.

mod real;
mod scale;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{bail, Context, Result};

/// airgap_archive::pack::write::DEFAULT_GZIP_LEVEL, the level users get.
const GZIP_LEVEL: u32 = 6;

struct Options {
    work: PathBuf,
    pythons: Vec<PathBuf>,
    build: bool,
    keep: bool,
    scale: bool,
}

/// What every row needs: the binaries, the directories, the machine.
struct Ctx {
    airgap: PathBuf,
    release: PathBuf,
    unpacker: PathBuf,
    work: PathBuf,
    out: PathBuf,
    tree: PathBuf,
    cores: usize,
    /// Where unpacks write ([`unpack_root`]).
    dests: PathBuf,
}

impl Ctx {
    /// A destination for one unpack, removed again after it is measured.
    fn dest(&self, name: &str) -> PathBuf {
        self.dests.join(name)
    }

    /// `airgap -q` with no progress output.
    fn airgap_cmd(&self) -> Command {
        let mut c = Command::new(&self.airgap);
        c.env("AIRGAP_NO_PROGRESS", "true").arg("-q");
        c
    }

    /// `airgap bundle` with its check, with the built plugins and unpacker, without the
    /// self-test trial: what the rows beside tar compare. The trial imports every module with
    /// the environment's interpreter, a cost of the user's code (and its memory, which
    /// `/usr/bin/time` counts as the bundle's); [`Ctx::bundle_with_trial`] measures it apart.
    fn bundle_checked(&self, config: &Path, output: &Path) -> Command {
        let mut cmd = self.bundle_with_trial(config, output);
        cmd.arg("--no-trial");
        cmd
    }

    /// `airgap bundle` exactly as users run it: the check and the self-test trial.
    fn bundle_with_trial(&self, config: &Path, output: &Path) -> Command {
        let mut cmd = self.airgap_cmd();
        cmd.arg("--plugin-dir")
            .arg(&self.release)
            .args(["bundle", "-c"])
            .arg(config)
            .arg("-o")
            .arg(output)
            .arg("--unpacker")
            .arg(&self.unpacker);
        cmd
    }

    /// `airgap bundle --no-check` of `config` to `output`, with the built plugins and unpacker:
    /// the archive alone, for the rows that compare it with tar.
    fn bundle_unchecked(&self, output: &Path, config: &Path) -> Command {
        let mut c = Command::new(&self.airgap);
        c.env("AIRGAP_NO_PROGRESS", "true")
            .arg("-q")
            .arg("--plugin-dir")
            .arg(&self.release)
            .args(["bundle", "--no-check", "-c"])
            .arg(config)
            .arg("-o")
            .arg(output)
            .arg("--unpacker")
            .arg(&self.unpacker);
        c
    }

    /// Time and peak memory of GNU `tar -xzf` of `bundle` into a new `dir`, after a sync;
    /// the directory is removed again.
    fn untar(&self, label: &str, bundle: &Path, dir: &Path) -> Result<(f64, u64)> {
        std::fs::create_dir_all(dir)?;
        settle()?;
        let measured = measure(
            label,
            Command::new("tar")
                .arg("-xzf")
                .arg(bundle)
                .arg("-C")
                .arg(dir),
        );
        let _ = std::fs::remove_dir_all(dir);
        measured
    }

    /// Time and peak memory of `airgap unpack` of `bundle` to `dest`, after a sync; `dest`
    /// is removed again. Without the self-test, so that it does what `tar -xzf` does (plus
    /// verifying every byte): the self-test's cost is the interpreter's, not the archive's.
    fn unpack(&self, label: &str, bundle: &Path, dest: &Path) -> Result<(f64, u64)> {
        settle()?;
        let mut cmd = self.airgap_cmd();
        cmd.arg("unpack")
            .arg(bundle)
            .arg(dest)
            .arg("--self-test=off");
        let measured = measure(label, &mut cmd);
        let _ = std::fs::remove_dir_all(dest);
        measured
    }
}

fn parse(root: &Path, args: &[String]) -> Result<Options> {
    let mut o = Options {
        work: root.join("target/bench"),
        pythons: Vec::new(),
        build: true,
        keep: false,
        scale: false,
    };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--work" => o.work = PathBuf::from(it.next().context("--work needs a directory")?),
            "--python" => o.pythons.push(PathBuf::from(it.next().context("--python needs a prefix")?)),
            "--no-build" => o.build = false,
            "--keep" => o.keep = true,
            "--scale" => o.scale = true,
            other => bail!("unknown bench option {other}; expected --work DIR, --python PREFIX, --no-build, --keep, --scale"),
        }
    }
    if o.pythons.is_empty() {
        o.pythons = default_pythons()?;
    }
    Ok(o)
}

/// The running python3's installation, plus another pyenv version when there is one.
fn default_pythons() -> Result<Vec<PathBuf>> {
    let out = Command::new("python3")
        .args(["-c", "import sys; print(sys.base_prefix)"])
        .output()
        .context("running python3")?;
    let base = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    let mut v = vec![base.clone()];
    if let Some(versions) = base.parent() {
        let mut others: Vec<PathBuf> = std::fs::read_dir(versions)
            .map(|d| {
                d.flatten()
                    .map(|e| e.path())
                    .filter(|p| p != &base && p.join("bin").is_dir())
                    .collect()
            })
            .unwrap_or_default();
        others.sort();
        if let Some(last) = others.pop() {
            v.push(last);
        }
    }
    Ok(v)
}

fn sh(cmd: &mut Command) -> Result<()> {
    let status = cmd.status().with_context(|| format!("running {cmd:?}"))?;
    if !status.success() {
        bail!("{cmd:?} failed: {status}");
    }
    Ok(())
}

/// Time and peak RSS (KiB) of a command, through `/usr/bin/time`.
fn measure(label: &str, cmd: &mut Command) -> Result<(f64, u64)> {
    let report = std::env::temp_dir().join(format!("airgap-bench-time-{}", std::process::id()));
    let mut timed = Command::new("/usr/bin/time");
    timed
        .arg("-f")
        .arg("%e %M")
        .arg("-o")
        .arg(&report)
        .arg(cmd.get_program())
        .args(cmd.get_args());
    if let Some(dir) = cmd.get_current_dir() {
        timed.current_dir(dir);
    }
    for (k, v) in cmd.get_envs() {
        match v {
            Some(v) => timed.env(k, v),
            None => timed.env_remove(k),
        };
    }
    eprintln!("bench: {label}");
    let start = Instant::now();
    let out = timed.output().with_context(|| format!("running {label}"))?;
    let wall = start.elapsed().as_secs_f64();
    if !out.status.success() {
        bail!(
            "{label} failed: {}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let text = std::fs::read_to_string(&report).unwrap_or_default();
    let _ = std::fs::remove_file(&report);
    let rss = text
        .split_whitespace()
        .last()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    Ok((wall, rss))
}

/// `airgap bundle --encrypt-to` beside the plain bundle (each measured again, back to back,
/// so that both see the same machine), and the ratio [goal < 1.15].
fn encryption_cost(
    airgap: &Path,
    release: &Path,
    unpacker: &Path,
    config: &Path,
    out: &Path,
    (t_first, s_plain): (f64, u64),
) -> Result<()> {
    let keys = out.join("keys");
    let keygen = Command::new(airgap)
        .args(["-q", "keygen", "--name", "bench", "--out"])
        .arg(&keys)
        .output()
        .context("airgap keygen")?;
    if !keygen.status.success() {
        bail!(
            "airgap keygen failed: {}",
            String::from_utf8_lossy(&keygen.stderr)
        );
    }
    let recipient = String::from_utf8_lossy(&keygen.stdout)
        .lines()
        .next()
        .unwrap_or_default()
        .to_string();
    let bundle = |output: &Path, encrypt: bool| {
        let mut c = Command::new(airgap);
        c.env("AIRGAP_NO_PROGRESS", "true")
            .arg("-q")
            .arg("--plugin-dir")
            .arg(release)
            .args(["bundle", "--no-check", "-c"])
            .arg(config)
            .arg("-o")
            .arg(output)
            .arg("--unpacker")
            .arg(unpacker);
        if encrypt {
            c.arg("--encrypt-to").arg(&recipient);
        }
        c
    };
    let plain = out.join("again.tar.gz");
    let sealed = out.join("ours.tar.gz.age");
    // Two rounds, interleaved; the best of each. Wall time swings when other work shares the
    // cores; CPU time (user + sys) shows what encryption itself costs.
    let (mut plain_best, mut age_best) = ((f64::MAX, f64::MAX), (f64::MAX, f64::MAX));
    let mut m_age = 0;
    for round in 1..=2 {
        let p = timed(
            &format!("airgap bundle (round {round})"),
            &mut bundle(&plain, false),
        )?;
        let a = timed(
            &format!("airgap bundle --encrypt-to (round {round})"),
            &mut bundle(&sealed, true),
        )?;
        plain_best = (plain_best.0.min(p.0), plain_best.1.min(p.1));
        age_best = (age_best.0.min(a.0), age_best.1.min(a.1));
        m_age = m_age.max(a.2);
    }
    let s_age = size(&sealed);
    println!();
    println!("| | time (best of 2) | CPU time | size | peak memory |");
    println!("|---|---:|---:|---:|---:|");
    println!(
        "| `airgap bundle` (again, interleaved with the next row; first run {t_first:.1} s) | {:.1} s | {:.1} s | {} | |",
        plain_best.0,
        plain_best.1,
        mb(s_plain)
    );
    println!(
        "| `airgap bundle --encrypt-to` (age, X25519) | {:.1} s | {:.1} s | {} | {} |",
        age_best.0,
        age_best.1,
        mb(s_age),
        mib(m_age)
    );
    println!(
        "  encryption cost:           {:.3}x the plain bundle time, {:.3}x its CPU time [< 1.15]",
        age_best.0 / plain_best.0,
        age_best.1 / plain_best.1
    );
    Ok(())
}

/// Wall time, CPU time (user + sys) and peak RSS (KiB) of a command.
fn timed(label: &str, cmd: &mut Command) -> Result<(f64, f64, u64)> {
    let report = std::env::temp_dir().join(format!("airgap-bench-cpu-{}", std::process::id()));
    let mut t = Command::new("/usr/bin/time");
    t.arg("-f")
        .arg("%e %U %S %M")
        .arg("-o")
        .arg(&report)
        .arg(cmd.get_program())
        .args(cmd.get_args());
    for (k, v) in cmd.get_envs() {
        match v {
            Some(v) => t.env(k, v),
            None => t.env_remove(k),
        };
    }
    eprintln!("bench: {label}");
    let out = t.output().with_context(|| format!("running {label}"))?;
    if !out.status.success() {
        bail!(
            "{label} failed: {}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let text = std::fs::read_to_string(&report).unwrap_or_default();
    let _ = std::fs::remove_file(&report);
    let f: Vec<f64> = text
        .split_whitespace()
        .filter_map(|x| x.parse().ok())
        .collect();
    match f[..] {
        [wall, user, sys, rss, ..] => Ok((wall, user + sys, rss as u64)),
        _ => bail!("{label}: cannot read /usr/bin/time's report {text:?}"),
    }
}

/// Flush what earlier rows wrote, so that a row that writes does not pay for them.
fn settle() -> Result<()> {
    sh(&mut Command::new("sync"))
}

fn size(path: &Path) -> u64 {
    std::fs::metadata(path).map(|m| m.len()).unwrap_or(0)
}

fn count(tree: &Path, kind: &str) -> u64 {
    let out = Command::new("find")
        .arg(tree)
        .args(["-type", kind])
        .output();
    out.map(|o| o.stdout.iter().filter(|&&b| b == b'\n').count() as u64)
        .unwrap_or(0)
}

fn du_bytes(tree: &Path) -> u64 {
    // Apparent size, hard links counted once (what an archive has to hold).
    let out = Command::new("du").args(["-sb"]).arg(tree).output();
    out.ok()
        .and_then(|o| {
            String::from_utf8_lossy(&o.stdout)
                .split_whitespace()
                .next()
                .and_then(|s| s.parse().ok())
        })
        .unwrap_or(0)
}

/// Build the tree once; later runs reuse it.
fn build_tree(o: &Options, tree: &Path) -> Result<()> {
    let done = tree.join(".bench-complete");
    if done.exists() {
        return Ok(());
    }
    if tree.exists() {
        std::fs::remove_dir_all(tree)?;
    }
    std::fs::create_dir_all(tree)?;
    for (i, p) in o.pythons.iter().enumerate() {
        let name = if i == 0 {
            "python".to_string()
        } else {
            format!("python-{i}")
        };
        eprintln!("bench: copying {} into the tree", p.display());
        sh(Command::new("cp").arg("-a").arg(p).arg(tree.join(&name)))?;
    }
    // A venv made by the bundled interpreter: absolute symlinks into the tree.
    let py = tree.join("python/bin/python3");
    let _ = Command::new(&py)
        .args(["-m", "venv", "--without-pip", "--symlinks"])
        .arg(tree.join("venv"))
        .status();
    // Real wheels, as a pip wheelhouse would carry them (best effort: needs the network).
    let wheels = tree.join("wheels");
    std::fs::create_dir_all(&wheels)?;
    let _ = Command::new("timeout")
        .args([
            "300",
            "python3",
            "-m",
            "pip",
            "download",
            "--quiet",
            "--no-deps",
            "--only-binary=:all:",
            "-d",
        ])
        .arg(&wheels)
        .args(["numpy", "pandas", "scipy", "pyarrow"])
        .status();
    // A conda-like environment: the packages hard-linked from a package cache.
    let site = std::fs::read_dir(tree.join("python/lib"))?
        .flatten()
        .map(|e| e.path().join("site-packages"))
        .find(|p| p.is_dir());
    if let Some(site) = site {
        std::fs::create_dir_all(tree.join("conda-env/lib"))?;
        sh(Command::new("cp")
            .arg("-al")
            .arg(&site)
            .arg(tree.join("conda-env/lib/site-packages")))?;
    }
    std::fs::write(&done, "")?;
    Ok(())
}

fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

fn mb(bytes: u64) -> String {
    format!("{:.1} MB", bytes as f64 / 1e6)
}

/// Run the benchmark and print one table, its ratios against the goals, then the rows of the
/// encryption cost, the check and the real job.
pub fn run(root: &Path, args: &[String]) -> Result<()> {
    let o = parse(root, args)?;
    let release = release_dir(root);
    if o.build {
        build_release(root, &release)?;
    }
    let ctx = prepare(&o, &release)?;
    let files = count(&ctx.tree, "f");
    let links = count(&ctx.tree, "l");
    let bytes = du_bytes(&ctx.tree);

    // Warm the page cache so that the first contender is not penalised.
    sh(Command::new("sh").arg("-c").arg(format!(
        "tar -cf - -C {} . | cat > /dev/null",
        ctx.tree.display()
    )))?;

    let config = ctx.work.join("bench.toml");
    std::fs::write(
        &config,
        format!("[bundle]\nname = \"tree\"\nlevel = {GZIP_LEVEL}\n\n[sources.files]\npaths = [ {{ source = \"{}\", dest = \".\" }} ]\n", ctx.tree.display()),
    )?;
    let rows = measure_rows(&ctx, &config)?;
    print_table(&ctx, &rows, files, links, bytes);
    print_ratios(&rows, files);
    encryption_cost(
        &ctx.airgap,
        &ctx.release,
        &ctx.unpacker,
        &config,
        &ctx.out,
        (rows.t_ours, rows.s_ours),
    )?;
    check_row(&ctx, &config)?;
    let mut points = real::run(&ctx)?;
    // Last: it writes gigabytes, which the disk is still flushing when the next row starts.
    if let (true, Some(python)) = (o.scale, o.pythons.first()) {
        points.push(scale::run(&ctx, python)?);
    }
    print_growth(
        "  peak memory of the real job as the prefix grows [flat]:",
        &points,
    );
    if ctx.dests != ctx.out {
        std::fs::remove_dir_all(&ctx.dests)?;
    }
    if !o.keep {
        std::fs::remove_dir_all(&ctx.out)?;
    }
    Ok(())
}

/// `target/release` of the workspace, or of `CARGO_TARGET_DIR` (relative to the root when
/// relative): where `cargo build --release` puts the binaries measured.
fn release_dir(root: &Path) -> PathBuf {
    let target_dir = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"));
    let target_dir = if target_dir.is_absolute() {
        target_dir
    } else {
        root.join(target_dir)
    };
    target_dir.join("release")
}

/// Build the release binaries and plugins the bench runs.
fn build_release(root: &Path, release: &Path) -> Result<()> {
    sh(
        Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
            .current_dir(root)
            .args([
                "build",
                "--release",
                "-p",
                "airgap-cli",
                "-p",
                "airgap-plugin-files",
                "-p",
                "airgap-plugin-conda",
                "-p",
                "airgap-plugin-syslibs",
            ]),
    )?;
    // The unpacker users carry (static, stripped), as `cargo xtask build --release`
    // makes it: its size is part of every bundle's.
    crate::tasks::build_static_unpacker(true, release)?;
    Ok(())
}

/// The context of every row: the binaries (the static unpacker must be there), the work
/// directory with the tree (built once, cached) and an empty output directory.
fn prepare(o: &Options, release: &Path) -> Result<Ctx> {
    let airgap = release.join("airgap");
    let unpacker = release.join("airgap-unpack-static");
    if !unpacker.exists() {
        bail!(
            "no static unpacker at {}: run the bench without --no-build once",
            unpacker.display()
        );
    }
    std::fs::create_dir_all(&o.work)?;
    let work = o.work.canonicalize()?;
    let tree = work.join("tree");
    build_tree(o, &tree)?;
    let out = work.join("out");
    if out.exists() {
        std::fs::remove_dir_all(&out)?;
    }
    std::fs::create_dir_all(&out)?;
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let largest = if o.scale { 7 << 30 } else { du_bytes(&tree) };
    let dests = unpack_root(&out, largest.saturating_mul(3))?;
    println!("unpacks write to {}", dests.display());
    Ok(Ctx {
        airgap,
        release: release.to_path_buf(),
        unpacker,
        work,
        out,
        tree,
        cores,
        dests,
    })
}

/// Where unpacks (`tar -xzf` and `airgap unpack` alike) write: a tmpfs (`/dev/shm`) when it
/// has room for `need` bytes, so that the ratio measures the work and not the disk's
/// write-back, which made it swing from 0.5x to 2.9x between runs; else `fallback`.
fn unpack_root(fallback: &Path, need: u64) -> Result<PathBuf> {
    let shm = Path::new("/dev/shm");
    let free = Command::new("df")
        .args(["--output=avail", "-B1"])
        .arg(shm)
        .output()
        .ok()
        .and_then(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .nth(1)
                .and_then(|l| l.trim().parse::<u64>().ok())
        });
    if free.is_some_and(|f| f >= need) {
        let dir = shm.join(format!("airgap-bench-{}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        return Ok(dir);
    }
    println!(
        "note: /dev/shm has no room for {} MB: unpacks write to the disk, and their ratios depend on its write-back",
        need >> 20
    );
    Ok(fallback.to_path_buf())
}

/// The first table's measurements: time (s) and peak memory (KiB) of each contender, and
/// the sizes (bytes) of what each wrote.
struct Rows {
    t_czh: f64,
    m_czh: u64,
    t_cz: f64,
    m_cz: u64,
    t_ours: f64,
    m_ours: u64,
    t_zpipe: f64,
    m_zpipe: u64,
    t_zours: f64,
    m_zours: u64,
    t_xz: f64,
    m_xz: u64,
    t_un: f64,
    m_un: u64,
    t_ver: f64,
    m_ver: u64,
    s_czh: u64,
    s_cz: u64,
    s_ours: u64,
    s_zpipe: u64,
    s_zours: u64,
    /// `airgap bundle`'s peak memory on parts of the tree.
    growth: Vec<(String, u64, u64)>,
}

/// Measure the contenders of the first table one after the other, on the same tree: GNU tar
/// and `airgap bundle` (gzip), the zstd pipeline and airgap's zstd bundle, then extracting,
/// unpacking and verifying airgap's bundle.
fn measure_rows(ctx: &Ctx, config: &Path) -> Result<Rows> {
    let (work, out, tree, cores) = (&ctx.work, &ctx.out, &ctx.tree, ctx.cores);
    let ours = out.join("ours.tar.gz");
    let bundle = |output: &Path, config: &Path| ctx.bundle_unchecked(output, config);
    let (t_czh, m_czh) = measure(
        "tar -czhf",
        Command::new("tar")
            .arg("-czhf")
            .arg(out.join("tar-czhf.tar.gz"))
            .arg("-C")
            .arg(work)
            .arg("tree"),
    )?;
    let (t_cz, m_cz) = measure(
        "tar -czf",
        Command::new("tar")
            .arg("-czf")
            .arg(out.join("tar-czf.tar.gz"))
            .arg("-C")
            .arg(work)
            .arg("tree"),
    )?;
    let (t_ours, m_ours) = measure("airgap bundle", &mut bundle(&ours, config))?;
    // What a user would type instead of a zstd bundle, and airgap's zstd bundle.
    let pipe = out.join("pipe.tar.zst");
    let (t_zpipe, m_zpipe) = measure(
        "tar -cf - -h | zstd",
        Command::new("sh").arg("-c").arg(format!(
            "tar -cf - -h -C '{}' tree | zstd -q -T{cores} -3 -o '{}'",
            work.display(),
            pipe.display()
        )),
    )?;
    let zconfig = work.join("bench-zstd.toml");
    std::fs::write(
        &zconfig,
        format!("[bundle]\nname = \"tree\"\ncompression = \"zstd\"\nlevel = 3\n\n[sources.files]\npaths = [ {{ source = \"{}\", dest = \".\" }} ]\n", tree.display()),
    )?;
    let ours_zst = out.join("ours.tar.zst");
    let (t_zours, m_zours) = measure("airgap bundle (zstd)", &mut bundle(&ours_zst, &zconfig))?;
    // Memory must stay flat as the tree grows: the same on parts of the tree.
    let growth = memory_growth(&bundle, tree, work, out)?;
    let (t_xz, m_xz) = ctx.untar("tar -xzf", &ours, &ctx.dest("x-tar"))?;
    let (t_un, m_un) = ctx.unpack("airgap unpack", &ours, &ctx.dest("x-ours"))?;
    let mut verify = ctx.airgap_cmd();
    verify.arg("verify").arg(&ours);
    let (t_ver, m_ver) = measure("airgap verify", &mut verify)?;
    Ok(Rows {
        t_czh,
        m_czh,
        t_cz,
        m_cz,
        t_ours,
        m_ours,
        t_zpipe,
        m_zpipe,
        t_zours,
        m_zours,
        t_xz,
        m_xz,
        t_un,
        m_un,
        t_ver,
        m_ver,
        s_czh: size(&out.join("tar-czhf.tar.gz")),
        s_cz: size(&out.join("tar-czf.tar.gz")),
        s_ours: size(&ours),
        s_zpipe: size(&pipe),
        s_zours: size(&ours_zst),
        growth,
    })
}

/// The tree and the first table: time, size and peak memory of each contender.
fn print_table(ctx: &Ctx, rows: &Rows, files: u64, links: u64, bytes: u64) {
    let cores = ctx.cores;
    let &Rows {
        t_czh,
        m_czh,
        t_cz,
        m_cz,
        t_ours,
        m_ours,
        t_zpipe,
        m_zpipe,
        t_zours,
        m_zours,
        t_xz,
        m_xz,
        t_un,
        m_un,
        t_ver,
        m_ver,
        s_czh,
        s_cz,
        s_ours,
        s_zpipe,
        s_zours,
        ..
    } = rows;
    println!();
    println!(
        "tree: {} ({} in {files} files, {links} symlinks; hard links counted once), {cores} cores",
        ctx.tree.display(),
        mb(bytes)
    );
    println!();
    println!("| | time | size | peak memory |");
    println!("|---|---:|---:|---:|");
    println!(
        "| GNU `tar -czhf` (the seed's recipe) | {t_czh:.1} s | {} | {} |",
        mb(s_czh),
        mib(m_czh)
    );
    println!(
        "| GNU `tar -czf` | {t_cz:.1} s | {} | {} |",
        mb(s_cz),
        mib(m_cz)
    );
    println!(
        "| `airgap bundle` (gzip, verified manifest, dedup) | {t_ours:.1} s | {} | {} |",
        mb(s_ours),
        mib(m_ours)
    );
    println!(
        "| `tar -cf - -h \\| zstd -T{cores} -3` | {t_zpipe:.1} s | {} | {} |",
        mb(s_zpipe),
        mib(m_zpipe)
    );
    println!(
        "| `airgap bundle --compression zstd` | {t_zours:.1} s | {} | {} |",
        mb(s_zours),
        mib(m_zours)
    );
    println!(
        "| GNU `tar -xzf` of our bundle | {t_xz:.1} s | | {} |",
        mib(m_xz)
    );
    println!(
        "| `airgap unpack` (verifies every file) | {t_un:.1} s | | {} |",
        mib(m_un)
    );
    println!("| `airgap verify` | {t_ver:.1} s | | {} |", mib(m_ver));
}

/// The first table's ratios, each with its goal in brackets, and the growth of `airgap
/// bundle`'s peak memory up to the whole tree of `files` files.
fn print_ratios(rows: &Rows, files: u64) {
    let &Rows {
        t_czh,
        t_ours,
        m_ours,
        t_zpipe,
        t_zours,
        m_zours,
        t_xz,
        t_un,
        m_un,
        t_ver,
        m_ver,
        s_czh,
        s_cz,
        s_ours,
        s_zpipe,
        s_zours,
        ..
    } = rows;
    println!();
    println!("ratios (goal in brackets):");
    println!(
        "  speed vs tar -czhf:        {:.2}x faster [>= 5x]",
        t_czh / t_ours
    );
    println!(
        "  size vs tar -czhf:         {:.3} [<= 1]",
        s_ours as f64 / s_czh as f64
    );
    println!(
        "  size vs tar -czf:          {:.3} [<= 1.10]",
        s_ours as f64 / s_cz as f64
    );
    println!(
        "  zstd speed vs the pipeline: {:.2}x faster [>= 1x]",
        t_zpipe / t_zours
    );
    println!(
        "  zstd size vs the pipeline:  {:.3} [<= 1]",
        s_zours as f64 / s_zpipe as f64
    );
    println!("  peak memory:               {} [< 64 MiB]", mib(m_ours));
    println!("  peak memory (zstd):        {} [< 64 MiB]", mib(m_zours));
    let mut points = rows.growth.clone();
    points.push(("whole tree".into(), files, m_ours));
    print_growth("  peak memory as the tree grows [flat]:", &points);
    println!("  unpack vs tar -xzf:        {:.2}x [<= 0.7x]", t_un / t_xz);
    println!(
        "  verify vs tar -xzf:        {:.2}x [<= 0.5x]",
        t_ver / t_xz
    );
    println!(
        "  peak memory of unpack, verify: {}, {} [< 64 MiB]",
        mib(m_un),
        mib(m_ver)
    );
}

/// The pre-transfer check of the whole tree, as users run it (`airgap check -c`: plan, find
/// the ELF files, the loader model over the bundle view). Exit 3 (a verdict of "will not
/// load") is a result, not a failure of the bench.
fn check_row(ctx: &Ctx, config: &Path) -> Result<()> {
    eprintln!("bench: airgap check -c");
    let start = Instant::now();
    let checked = Command::new(&ctx.airgap)
        .env("AIRGAP_NO_PROGRESS", "true")
        .arg("-q")
        .arg("--plugin-dir")
        .arg(&ctx.release)
        .args(["check", "--json", "-c"])
        .arg(config)
        .output()
        .context("run airgap check")?;
    let t_check = start.elapsed().as_secs_f64();
    if !matches!(checked.status.code(), Some(0 | 3)) {
        bail!(
            "airgap check failed: {}\n{}",
            checked.status,
            String::from_utf8_lossy(&checked.stderr)
        );
    }
    let report: serde_json::Value =
        serde_json::from_slice(&checked.stdout).context("airgap check --json output")?;
    let objects = report["objects"].as_array().map_or(0, Vec::len);
    println!(
        "  airgap check -c (the ELF closure of the tree): {t_check:.2} s for {} ELF files of {} files ({objects} objects, {} problems) [seconds]",
        report["elf_files"],
        report["files"],
        report["problems"].as_array().map_or(0, Vec::len)
    );
    Ok(())
}

/// `airgap bundle`'s peak memory on parts of the tree (`python-1`, then `python`, when they
/// are there): (what, files, peak KiB), smallest first.
fn memory_growth(
    bundle: &dyn Fn(&Path, &Path) -> Command,
    tree: &Path,
    work: &Path,
    out: &Path,
) -> Result<Vec<(String, u64, u64)>> {
    let mut rows = Vec::new();
    for part in ["python-1", "python"] {
        let dir = tree.join(part);
        if !dir.is_dir() {
            continue;
        }
        let config = work.join(format!("bench-{part}.toml"));
        std::fs::write(
            &config,
            format!("[bundle]\nname = \"part\"\nlevel = {GZIP_LEVEL}\n\n[sources.files]\npaths = [ {{ source = \"{}\", dest = \".\" }} ]\n", dir.display()),
        )?;
        let output = out.join(format!("{part}.tar.gz"));
        let (_, kib) = measure(
            &format!("airgap bundle (tree/{part} only)"),
            &mut bundle(&output, &config),
        )?;
        let _ = std::fs::remove_file(&output);
        rows.push((format!("tree/{part}"), count(&dir, "f"), kib));
    }
    Ok(rows)
}

/// Peak memory against the number of files, smallest first, and the growth per file between
/// each size and the next (the plan keeps 16,384 paths in memory before it moves them to
/// disk, so the first step also fills that buffer).
fn print_growth(title: &str, points: &[(String, u64, u64)]) {
    println!("{title}");
    for (what, n, m) in points {
        println!("    {n:>7} files ({what}): {}", mib(*m));
    }
    for pair in points.windows(2) {
        let ((_, n0, m0), (_, n1, m1)) = (&pair[0], &pair[1]);
        if n1 > n0 {
            let slope = (*m1 as f64 - *m0 as f64) * 1024.0 / (n1 - n0) as f64;
            println!("    growth from {n0} to {n1} files: {slope:.0} bytes per file");
        }
    }
}
