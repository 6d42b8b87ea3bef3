//! The real job: a Python installation bundled through the conda source (syslibs implied), with
//! the pre-transfer check, as users run `airgap bundle`; beside GNU tar and a zstd pipeline of
//! the same prefix, then `unpack`, `verify` and `inspect` of that bundle beside `tar -xzf`.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::Result;

use super::{count, mb, measure, mib, size, Ctx, GZIP_LEVEL};

/// One contender's figures: wall seconds, peak KiB, output bytes (0 when it writes none).
struct Row {
    what: String,
    secs: f64,
    kib: u64,
    bytes: u64,
}

impl Row {
    fn print(&self) {
        let size = if self.bytes > 0 {
            mb(self.bytes)
        } else {
            String::new()
        };
        println!(
            "| {} | {:.1} s | {size} | {} |",
            self.what,
            self.secs,
            mib(self.kib)
        );
    }
}

/// The config of the real job over `prefix`.
fn config(c: &Ctx, name: &str, prefix: &Path, compression: &str, level: u32) -> Result<PathBuf> {
    let path = c.work.join(format!("real-{name}.toml"));
    std::fs::write(
        &path,
        format!(
            "[bundle]\nname = \"{name}\"\ncompression = \"{compression}\"\nlevel = {level}\n\n[sources.conda]\nprefix = \"{}\"\n",
            prefix.display()
        ),
    )?;
    Ok(path)
}

/// Peak memory of the real job on each prefix, smallest first: (what, files, KiB).
pub(super) fn growth(c: &Ctx, prefixes: &[(&str, PathBuf)]) -> Result<Vec<(String, u64, u64)>> {
    let mut rows = Vec::new();
    for (what, prefix) in prefixes {
        let cfg = config(c, "part", prefix, "gzip", GZIP_LEVEL)?;
        let output = c.out.join("real-part.tar.gz");
        let (_, kib) = measure(
            &format!("airgap bundle, conda + syslibs ({what} only)"),
            &mut c.bundle_checked(&cfg, &output),
        )?;
        let _ = std::fs::remove_file(&output);
        rows.push((what.to_string(), count(prefix, "f"), kib));
    }
    Ok(rows)
}

/// Run the real job's rows and print their table and ratios.
/// Returns the memory points of the real job, smallest first, for [`super::print_growth`].
pub(super) fn run(c: &Ctx) -> Result<Vec<(String, u64, u64)>> {
    let prefix = c.tree.join("python");
    let m = measure_all(c, &prefix)?;
    print_table(c, &prefix, &m);
    print_ratios(&m);
    let mut parts = vec![("tree/python-1", c.tree.join("python-1"))];
    parts.retain(|(_, p)| p.is_dir());
    let mut points = growth(c, &parts)?;
    points.push(("tree/python".into(), count(&prefix, "f"), m.ours.1));
    Ok(points)
}

/// The real job's measurements, (seconds, peak KiB) each, and the files they wrote.
struct Measured {
    czh: (f64, u64),
    zpipe: (f64, u64),
    ours: (f64, u64),
    /// `ours` with the self-test trial (peak: the largest of airgap and the interpreters).
    trial: (f64, u64),
    zours: (f64, u64),
    xz: (f64, u64),
    un: (f64, u64),
    ver: (f64, u64),
    ver_z: (f64, u64),
    ins: (f64, u64),
    tar_gz: PathBuf,
    pipe: PathBuf,
    gz: PathBuf,
    zst: PathBuf,
}

/// Measure the contenders on `prefix` one after the other: GNU tar and the zstd pipeline
/// beside `airgap bundle` (gzip, then zstd), then extracting, unpacking, verifying and
/// inspecting airgap's bundles.
fn measure_all(c: &Ctx, prefix: &Path) -> Result<Measured> {
    let parent = c.tree.clone();
    let tar_gz = c.out.join("real-tar.tar.gz");
    let czh = measure(
        "real job: tar -czhf",
        Command::new("tar")
            .arg("-czhf")
            .arg(&tar_gz)
            .arg("-C")
            .arg(&parent)
            .arg("python"),
    )?;
    let pipe = c.out.join("real-pipe.tar.zst");
    let zpipe = measure(
        "real job: tar -cf - -h | zstd",
        Command::new("sh").arg("-c").arg(format!(
            "tar -cf - -h -C '{}' python | zstd -q -T{} -3 -o '{}'",
            parent.display(),
            c.cores,
            pipe.display()
        )),
    )?;
    let gz = c.out.join("real.tar.gz");
    let ours = measure(
        "real job: airgap bundle (conda + syslibs, gzip)",
        &mut c.bundle_checked(&config(c, "real", prefix, "gzip", GZIP_LEVEL)?, &gz),
    )?;
    let trial_gz = c.out.join("real-trial.tar.gz");
    let trial = measure(
        "real job: airgap bundle with the self-test trial",
        &mut c.bundle_with_trial(&config(c, "trial", prefix, "gzip", GZIP_LEVEL)?, &trial_gz),
    )?;
    let _ = std::fs::remove_file(&trial_gz);
    let zst = c.out.join("real.tar.zst");
    let zours = measure(
        "real job: airgap bundle --compression zstd",
        &mut c.bundle_checked(&config(c, "real", prefix, "zstd", 3)?, &zst),
    )?;
    let xz = c.untar("real job: tar -xzf", &gz, &c.dest("x-real-tar"))?;
    let un = c.unpack("real job: airgap unpack", &gz, &c.dest("x-real"))?;
    let mut verify = c.airgap_cmd();
    verify.arg("verify").arg(&gz);
    let ver = measure("real job: airgap verify", &mut verify)?;
    let mut verify_z = c.airgap_cmd();
    verify_z.arg("verify").arg(&zst);
    let ver_z = measure("real job: airgap verify (zstd)", &mut verify_z)?;
    let mut inspect = c.airgap_cmd();
    inspect
        .args(["inspect", "--json"])
        .arg(&gz)
        .stdout(Stdio::null());
    let ins = measure("real job: airgap inspect --json", &mut inspect)?;
    Ok(Measured {
        czh,
        zpipe,
        ours,
        trial,
        zours,
        xz,
        un,
        ver,
        ver_z,
        ins,
        tar_gz,
        pipe,
        gz,
        zst,
    })
}

/// The table of the real job: each contender's time, size and peak memory.
fn print_table(c: &Ctx, prefix: &Path, m: &Measured) {
    let Measured {
        czh,
        zpipe,
        ours,
        trial,
        zours,
        xz,
        un,
        ver,
        ver_z,
        ins,
        tar_gz,
        pipe,
        gz,
        zst,
    } = m;
    let rows = [
        Row {
            what: "GNU `tar -czhf` of the prefix".into(),
            secs: czh.0,
            kib: czh.1,
            bytes: size(tar_gz),
        },
        Row {
            what: "`airgap bundle`, conda + syslibs, checked (gzip)".into(),
            secs: ours.0,
            kib: ours.1,
            bytes: size(gz),
        },
        Row {
            what: "the same with the self-test trial (as users run it; peak of airgap or an interpreter)".into(),
            secs: trial.0,
            kib: trial.1,
            bytes: 0,
        },
        Row {
            what: format!("`tar -cf - -h \\| zstd -T{} -3` of the prefix", c.cores),
            secs: zpipe.0,
            kib: zpipe.1,
            bytes: size(pipe),
        },
        Row {
            what: "`airgap bundle --compression zstd`, conda + syslibs, checked".into(),
            secs: zours.0,
            kib: zours.1,
            bytes: size(zst),
        },
        Row {
            what: "GNU `tar -xzf` of the gzip bundle".into(),
            secs: xz.0,
            kib: xz.1,
            bytes: 0,
        },
        Row {
            what: "`airgap unpack` (verifies every file)".into(),
            secs: un.0,
            kib: un.1,
            bytes: 0,
        },
        Row {
            what: "`airgap verify`".into(),
            secs: ver.0,
            kib: ver.1,
            bytes: 0,
        },
        Row {
            what: "`airgap verify` of the zstd bundle".into(),
            secs: ver_z.0,
            kib: ver_z.1,
            bytes: 0,
        },
        Row {
            what: "`airgap inspect --json`".into(),
            secs: ins.0,
            kib: ins.1,
            bytes: 0,
        },
    ];
    println!();
    println!(
        "the real job: {} ({} files) through the conda source, syslibs implied, with the check",
        prefix.display(),
        count(prefix, "f")
    );
    println!();
    println!("| | time | size | peak memory |");
    println!("|---|---:|---:|---:|");
    for r in &rows {
        r.print();
    }
}

/// The ratios of the real job, each with its goal in brackets.
fn print_ratios(m: &Measured) {
    let Measured {
        czh,
        zpipe,
        ours,
        trial,
        zours,
        xz,
        un,
        ver,
        ver_z,
        ins,
        tar_gz,
        pipe,
        gz,
        zst,
    } = m;
    println!();
    println!("ratios of the real job (goal in brackets):");
    println!(
        "  speed vs tar -czhf:          {:.2}x faster [>= 5x]",
        czh.0 / ours.0
    );
    println!(
        "  with the self-test trial:    {:.2}x faster (the trial's own cost: {:.1} s)",
        czh.0 / trial.0,
        trial.0 - ours.0
    );
    println!(
        "  size vs tar -czhf:           {:.3} [<= 1]",
        size(gz) as f64 / size(tar_gz) as f64
    );
    println!(
        "  zstd speed vs the pipeline:  {:.2}x faster [>= 1x]",
        zpipe.0 / zours.0
    );
    println!(
        "  zstd size vs the pipeline:   {:.3} [<= 1]",
        size(zst) as f64 / size(pipe) as f64
    );
    println!(
        "  unpack vs tar -xzf:          {:.2}x [<= 0.7x]",
        un.0 / xz.0
    );
    println!(
        "  verify vs tar -xzf:          {:.2}x [<= 0.5x]",
        ver.0 / xz.0
    );
    println!(
        "  peak memory: bundle {}, zstd bundle {}, unpack {}, verify {}, verify zstd {}, inspect {} [< 64 MiB]",
        mib(ours.1),
        mib(zours.1),
        mib(un.1),
        mib(ver.1),
        mib(ver_z.1),
        mib(ins.1)
    );
}
