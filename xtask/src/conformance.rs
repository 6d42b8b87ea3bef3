//! `cargo xtask conformance`: the differential conformance suite of the check against glibc's
//! real loader (`tests/it/conformance.rs`, every workload in every Debian root), then its
//! table from `target/conformance/results.tsv` and the disagreements, one a line.

use anyhow::{Context, Result};

use crate::tasks::{build, run, setup, target_dir};

/// Run the whole suite and print the table; fails when the suite does.
pub fn conformance(args: &[String]) -> Result<()> {
    setup()?;
    build(false)?;
    let dir = target_dir().join("conformance");
    for name in ["results.tsv", "disagreements.txt"] {
        let path = dir.join(name);
        if path.exists() {
            std::fs::remove_file(&path).with_context(|| format!("remove {}", path.display()))?;
        }
    }
    let mut cmd =
        std::process::Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    cmd.current_dir(crate::tasks::root()).args([
        "test",
        "-p",
        "airgap-tests",
        "--test",
        "it",
        "--",
        "conformance::",
        "--include-ignored",
        "--test-threads",
        "1",
        // conformance_full covers its workloads; the table would show them twice.
        "--skip",
        "conformance_fast",
    ]);
    cmd.args(args);
    let outcome = run(&mut cmd);
    print_table(&dir)?;
    outcome
}

fn print_table(dir: &std::path::Path) -> Result<()> {
    let results = std::fs::read_to_string(dir.join("results.tsv")).unwrap_or_default();
    println!("\n| workload | root | files compared | agree | disagree (must load) | disagree (on-demand needs) | on-demand |");
    println!("|---|---|---|---|---|---|---|");
    let mut total = [0u64; 5];
    for line in results.lines() {
        let cols: Vec<&str> = line.split('\t').collect();
        if let [workload, root, rest @ ..] = cols.as_slice() {
            let nums: Vec<u64> = rest.iter().map(|n| n.parse().unwrap_or(0)).collect();
            for (t, n) in total.iter_mut().zip(&nums) {
                *t += n;
            }
            let cells: Vec<String> = nums.iter().map(u64::to_string).collect();
            println!("| {workload} | {root} | {} |", cells.join(" | "));
        }
    }
    let cells: Vec<String> = total.iter().map(u64::to_string).collect();
    println!("| **total** | | {} |", cells.join(" | "));
    let details = std::fs::read_to_string(dir.join("disagreements.txt")).unwrap_or_default();
    if !details.trim().is_empty() {
        println!("\nDisagreements:");
        for line in details.lines() {
            println!("- {line}");
        }
    }
    Ok(())
}
