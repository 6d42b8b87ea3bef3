//! `cargo xtask fuzz [--seconds N] [TARGET...]`: run the cargo-fuzz targets in `fuzz/` (nightly,
//! sanitizers), each for N seconds, and print each one's execution count and findings.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};

use anyhow::{bail, Context, Result};

use crate::tasks::{root, run};

/// Every target, in the order they run.
pub const TARGETS: &[&str] = &["manifest", "entry_checker", "elf", "tar_differential"];

struct Outcome {
    target: String,
    executions: Option<u64>,
    seconds: u64,
    crashed: bool,
    artifacts: Vec<String>,
}

/// The task.
pub fn fuzz(args: &[String]) -> Result<()> {
    let mut seconds = 180u64;
    let mut targets = Vec::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--seconds" => {
                seconds = it
                    .next()
                    .context("--seconds needs a number")?
                    .parse()
                    .context("--seconds needs a number")?;
            }
            t if TARGETS.contains(&t) => targets.push(t.to_string()),
            other => bail!(
                "unknown fuzz argument `{other}` (targets: {})",
                TARGETS.join(", ")
            ),
        }
    }
    if targets.is_empty() {
        targets = TARGETS.iter().map(|t| t.to_string()).collect();
    }
    ensure_cargo_fuzz()?;
    let fuzz_dir = root().join("fuzz");
    let mut outcomes = Vec::new();
    for target in &targets {
        outcomes.push(run_target(&fuzz_dir, target, seconds)?);
    }
    println!(
        "\n{:<15} {:>14} {:>8}  findings",
        "target", "executions", "seconds"
    );
    for o in &outcomes {
        let execs = o
            .executions
            .map(|n| n.to_string())
            .unwrap_or_else(|| "?".into());
        let found = if o.crashed {
            format!("CRASH {}", o.artifacts.join(" "))
        } else {
            "none".to_string()
        };
        println!("{:<15} {:>14} {:>8}  {found}", o.target, execs, o.seconds);
    }
    if outcomes.iter().any(|o| o.crashed) {
        bail!("the fuzzers found crashes: the inputs are in fuzz/artifacts/");
    }
    Ok(())
}

fn ensure_cargo_fuzz() -> Result<()> {
    let have = Command::new("cargo")
        .args(["fuzz", "--version"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !have {
        run(Command::new("cargo").args(["install", "cargo-fuzz", "--locked"]))?;
    }
    Ok(())
}

fn run_target(fuzz_dir: &Path, target: &str, seconds: u64) -> Result<Outcome> {
    let corpus = fuzz_dir.join("corpus").join(target);
    std::fs::create_dir_all(&corpus)?;
    let mut cmd = Command::new("cargo");
    cmd.current_dir(fuzz_dir)
        // cargo-fuzz builds with nightly; the caller's toolchain must not leak in.
        .env_remove("RUSTUP_TOOLCHAIN")
        .env_remove("CARGO")
        .args(["+nightly", "fuzz", "run", target])
        .arg("--")
        .arg(format!("-max_total_time={seconds}"))
        .arg("-timeout=20")
        .arg("-rss_limit_mb=2048")
        .arg("-print_final_stats=1")
        .stdout(Stdio::inherit())
        .stderr(Stdio::piped());
    eprintln!("$ cargo +nightly fuzz run {target} -- -max_total_time={seconds} -timeout=20 -rss_limit_mb=2048 -print_final_stats=1");
    let mut child = cmd.spawn().context("cannot start cargo fuzz")?;
    let stderr = child.stderr.take().context("no stderr")?;
    let mut executions = None;
    let mut artifacts = Vec::new();
    for line in BufReader::new(stderr).lines() {
        let line = line?;
        eprintln!("{line}");
        if let Some(n) = parse_executions(&line) {
            executions = Some(n);
        }
        if let Some(rest) = line.split("Test unit written to ").nth(1) {
            artifacts.push(rest.trim().to_string());
        }
    }
    let status = child.wait()?;
    Ok(Outcome {
        target: target.to_string(),
        executions,
        seconds,
        crashed: !status.success() || !artifacts.is_empty(),
        artifacts,
    })
}

/// libFuzzer's count of runs: `stat::number_of_executed_units: N` (with
/// `-print_final_stats=1`), else the `#N DONE` line.
fn parse_executions(line: &str) -> Option<u64> {
    if let Some(rest) = line.strip_prefix("stat::number_of_executed_units:") {
        return rest.trim().parse().ok();
    }
    let rest = line.strip_prefix('#')?;
    let mut parts = rest.split_whitespace();
    let n = parts.next()?.parse().ok()?;
    (parts.next() == Some("DONE")).then_some(n)
}

#[cfg(test)]
mod tests {
    use super::parse_executions;

    #[test]
    fn reads_libfuzzer_counts() {
        assert_eq!(
            parse_executions("stat::number_of_executed_units: 1234567"),
            Some(1234567)
        );
        assert_eq!(
            parse_executions("#4418421\tDONE   cov: 1046 ft: 4316 corp: 402/98Kb lim: 4096 exec/s: 24546 rss: 459Mb"),
            Some(4418421)
        );
        assert_eq!(parse_executions("#1024\tpulse  cov: 10"), None);
    }
}
