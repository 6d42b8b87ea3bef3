//! Time the ELF closure of a tree: `cargo run -p airgap-elf --example closure -- DIR...`.
//! Prints one JSON line per tree (files, bytes, ELF files, objects in the closure, seconds).

fn main() -> std::process::ExitCode {
    let dirs: Vec<String> = std::env::args().skip(1).collect();
    if dirs.is_empty() {
        eprintln!("usage: closure DIR...");
        return std::process::ExitCode::from(2);
    }
    for dir in dirs {
        match airgap_elf::closure::bench_closure(std::path::Path::new(&dir)) {
            Ok(report) => {
                let mut value = serde_json::to_value(&report).unwrap_or_default();
                value["dir"] = serde_json::Value::String(dir);
                println!("{value}");
            }
            Err(e) => {
                eprintln!("error: {dir}: {e}");
                return std::process::ExitCode::FAILURE;
            }
        }
    }
    std::process::ExitCode::SUCCESS
}
