//! The scale row (`cargo xtask bench --scale`): a Python installation with torch and the CUDA
//! libraries it pulls from the package index (multi-hundred-MB shared objects, as GPU nodes
//! carry them), at least 5 GB; the real job's bundle, unpack and verify on it.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Result};

use super::{count, du_bytes, mb, measure, mib, sh, size, Ctx};

/// Smallest tree the row is honest about (the "at least 5 GB").
const MIN_BYTES: u64 = 5_000_000_000;

/// A copy of `python` with torch installed into it, cached in the work directory.
fn build(c: &Ctx, python: &Path) -> Result<PathBuf> {
    let root = c.work.join("scale");
    let prefix = root.join("python");
    let done = root.join(".bench-complete");
    if done.exists() {
        return Ok(prefix);
    }
    if root.exists() {
        std::fs::remove_dir_all(&root)?;
    }
    std::fs::create_dir_all(&root)?;
    eprintln!("bench: copying {} for the scale tree", python.display());
    sh(Command::new("cp").arg("-a").arg(python).arg(&prefix))?;
    eprintln!("bench: installing torch (and the CUDA libraries it needs) into the scale tree");
    sh(Command::new(prefix.join("bin/python3")).args([
        "-m",
        "pip",
        "install",
        "--quiet",
        "--no-warn-script-location",
        "torch",
    ]))?;
    let bytes = du_bytes(&prefix);
    if bytes < MIN_BYTES {
        bail!(
            "the scale tree {} holds {} only, under the 5 GB the row needs; pip installed a smaller torch than expected (see pip's output above)",
            prefix.display(),
            mb(bytes)
        );
    }
    std::fs::write(&done, "")?;
    Ok(prefix)
}

/// The largest file of the tree, for the row's caption.
fn largest(tree: &Path) -> String {
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "find '{}' -type f -printf '%s %f\\n' | sort -n | tail -1",
            tree.display()
        ))
        .output();
    out.map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

/// Run the row; returns the bundle's memory point for the real job's growth table.
pub(super) fn run(c: &Ctx, python: &Path) -> Result<(String, u64, u64)> {
    let prefix = build(c, python)?;
    let config = c.work.join("scale.toml");
    // libcuda.so.1 is the driver's: it is on the GPU node or nowhere, never bundled.
    std::fs::write(
        &config,
        format!(
            "[bundle]\nname = \"scale\"\n\n[sources.conda]\nprefix = \"{}\"\n\n[sources.syslibs]\nexclude = [\"libcuda.so.*\"]\n",
            prefix.display()
        ),
    )?;
    let gz = c.out.join("scale.tar.gz");
    let b = measure(
        "scale: airgap bundle (conda + syslibs, gzip)",
        &mut c.bundle_checked(&config, &gz),
    )?;
    let xz = c.untar("scale: tar -xzf", &gz, &c.dest("x-scale-tar"))?;
    let un = c.unpack("scale: airgap unpack", &gz, &c.dest("x-scale"))?;
    let mut verify = c.airgap_cmd();
    verify.arg("verify").arg(&gz);
    let ver = measure("scale: airgap verify", &mut verify)?;
    let bytes = du_bytes(&prefix);
    let files = count(&prefix, "f");
    let s_gz = size(&gz);
    let _ = std::fs::remove_file(&gz);
    println!();
    println!(
        "scale: {} ({} in {files} files; largest: {} bytes), conda + syslibs, checked",
        prefix.display(),
        mb(bytes),
        largest(&prefix)
    );
    println!();
    println!("| | time | throughput | size | peak memory |");
    println!("|---|---:|---:|---:|---:|");
    let rate = |secs: f64| format!("{:.0} MB/s", bytes as f64 / 1e6 / secs);
    println!(
        "| `airgap bundle` | {:.1} s | {} | {} | {} |",
        b.0,
        rate(b.0),
        mb(s_gz),
        mib(b.1)
    );
    println!(
        "| GNU `tar -xzf` of it | {:.1} s | {} | | {} |",
        xz.0,
        rate(xz.0),
        mib(xz.1)
    );
    println!(
        "| `airgap unpack` | {:.1} s | {} | | {} |",
        un.0,
        rate(un.0),
        mib(un.1)
    );
    println!(
        "| `airgap verify` | {:.1} s | {} | | {} |",
        ver.0,
        rate(ver.0),
        mib(ver.1)
    );
    println!(
        "  scale: unpack vs tar -xzf {:.2}x [<= 0.7x], verify vs tar -xzf {:.2}x [<= 0.5x]",
        un.0 / xz.0,
        ver.0 / xz.0
    );
    Ok(("scale/python".into(), files, b.1))
}
