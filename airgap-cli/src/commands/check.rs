//! `airgap check`: will this bundle load on the target? Answered before the transfer.

use std::path::PathBuf;
use std::process::ExitCode;

use airgap_core::check::{check_bundle, check_planned_against, CheckReport, CheckTarget};
use airgap_core::{BundleOptions, Config};
use airgap_plugin_api::TargetProfile;
use clap::Args;

use crate::report;
use crate::ui::Ui;

const EXAMPLES: &str = "\
Examples:
  airgap check nlp.tar.gz                          against the target recorded in the bundle
  airgap check nlp.tar.gz --glibc 2.17             a machine with glibc 2.17 (manylinux2014 libraries)
  airgap check nlp.tar.gz --manylinux manylinux_2_28
  airgap check nlp.tar.gz --target-root /srv/rhel8 a real root filesystem (its glibc and libraries)
  airgap check nlp.tar.gz --target target.toml     a probed target (airgap probe), or its code
  airgap check -c airgap.toml                      what the configuration would bundle, nothing written

Exit status: 0 when the bundle will load on the target, 3 when it will not, 1 or 2 on errors.";

#[derive(Debug, Args)]
#[command(after_help = EXAMPLES)]
pub struct CheckArgs {
    /// The bundle to check (.tar.gz, .tar.zst or .tar; in volumes, the first: NAME.tar.gz.001)
    #[arg(value_name = "BUNDLE", required_unless_present = "config")]
    pub bundle: Option<PathBuf>,

    /// Check what this configuration would bundle instead of a written bundle
    #[arg(short, long, value_name = "airgap.toml", conflicts_with = "bundle")]
    pub config: Option<PathBuf>,

    /// The target's glibc version (its manylinux policy gives the libraries it has)
    #[arg(long, value_name = "VERSION", group = "against")]
    pub glibc: Option<String>,

    /// The target's manylinux tag (manylinux2014, manylinux_2_28, ...)
    #[arg(long, value_name = "TAG", group = "against")]
    pub manylinux: Option<String>,

    /// A root filesystem of the target (a debootstrap root, a mounted image): its glibc and
    /// its libraries
    #[arg(long, value_name = "DIR", group = "against")]
    pub target_root: Option<PathBuf>,

    /// The probed target: the profile `airgap probe --out FILE` wrote there, or the code it
    /// printed (its own libraries and their symbol versions)
    #[arg(long, value_name = "FILE|CODE", group = "against")]
    pub target: Option<String>,

    /// Print the report as JSON on stdout
    #[arg(long)]
    pub json: bool,

    /// Fail when a library loaded only on demand (nothing in the bundle needs it) would not
    /// load on the target (default: a warning; `[check] strict = true` does the same)
    #[arg(long)]
    pub strict: bool,
}

pub fn run(args: CheckArgs, ui: &Ui) -> anyhow::Result<ExitCode> {
    let base = TargetProfile::default();
    let target = if let Some(g) = &args.glibc {
        Some(CheckTarget::from_glibc(&base, g).map_err(|e| report::core(e.into()))?)
    } else if let Some(tag) = &args.manylinux {
        Some(CheckTarget::from_policy_name(&base, tag).map_err(|e| report::core(e.into()))?)
    } else if let Some(root) = &args.target_root {
        Some(CheckTarget::from_root(&base, root).map_err(|e| report::core(e.into()))?)
    } else if let (Some(given), None) = (&args.target, &args.config) {
        // With -c the plan itself is made for the probed target (syslibs grafts for it).
        let probed =
            airgap_core::target::load(given, std::path::Path::new(".")).map_err(report::core)?;
        let mut profile = base.clone();
        // A written bundle carries its own interpreter, if any: the probed Pythons are not it.
        airgap_core::target::apply(&probed, &mut profile, true);
        Some(CheckTarget::from_profile(&profile).map_err(|e| report::core(e.into()))?)
    } else {
        None
    };

    let (what, report, advice) = match (&args.bundle, &args.config) {
        (Some(bundle), _) => {
            if bundle.is_file() && airgap_seal::is_encrypted(bundle).unwrap_or(false) {
                return Err(report::with_help(
                    anyhow::anyhow!("{} is encrypted (age): check reads plain bundles", bundle.display()),
                    "check the bundle before encrypting it (airgap bundle checks the plan anyway), or `airgap check -c airgap.toml`",
                ));
            }
            ui.status("Checking", &bundle.display().to_string());
            let checked = check_bundle(bundle, target, args.strict).map_err(report::core)?;
            (
                bundle.display().to_string(),
                checked.report,
                Advice::Written,
            )
        }
        (None, Some(config_path)) => {
            let config = Config::load(config_path).map_err(report::core)?;
            let registry = super::plugins::registry(ui, &config.plugin_dirs);
            let options = BundleOptions {
                verbose: ui.verbose > 0,
                target: args.target.clone(),
                ..Default::default()
            };
            ui.status("Planning", &format!("from {}", config_path.display()));
            let planned =
                airgap_core::plan_bundle(&config, &registry, &options, ui, &crate::CANCELLED)
                    .map_err(report::core)?;
            for w in &planned.warnings {
                ui.warn(w);
            }
            let report = check_planned_against(
                &planned,
                target,
                args.strict || config.check.strict,
                options
                    .unpacker
                    .clone()
                    .or_else(airgap_core::find_unpacker)
                    .as_deref(),
            )
            .map_err(report::core)?;
            let advice =
                Advice::for_plan(&config, planned.sources.iter().map(|s| s.plugin.as_str()));
            (config_path.display().to_string(), report, advice)
        }
        (None, None) => {
            return Err(report::with_help_code(
                anyhow::anyhow!("nothing to check"),
                "give a bundle file, or -c airgap.toml",
                2,
            ))
        }
    };

    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    }
    print_human(&what, &report, advice, ui);
    Ok(if report.passed() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(3)
    })
}

/// The target a check judged against, as a person reads it.
pub(crate) fn target_text(t: &airgap_core::check::TargetSummary) -> String {
    match (&t.root, &t.policy) {
        (Some(root), _) => format!(
            "the root filesystem {} (glibc {})",
            root.display(),
            t.glibc.as_deref().unwrap_or("unknown")
        ),
        (None, Some(policy)) => format!(
            "{policy} (glibc {})",
            t.glibc.as_deref().unwrap_or("unknown")
        ),
        (None, None) => "the target".into(),
    }
}

/// The check's verdict on `what`, for the approvers' report.
pub(crate) fn verdict(what: &str, r: &CheckReport) -> airgap_report::Verdict {
    let target = target_text(&r.target);
    let passed = r.passed();
    airgap_report::Verdict {
        text: if passed {
            format!("{what} will load on {target}")
        } else {
            format!("{what} will not load on {target}")
        },
        target,
        passed: Some(passed),
        problems: r.problems.iter().map(ToString::to_string).collect(),
    }
}

fn print_human(what: &str, r: &CheckReport, advice: Advice, ui: &Ui) {
    let target = target_text(&r.target);
    ui.status(
        "Target",
        &format!("{target}; {} files, {} ELF", r.files, r.elf_files),
    );
    if let Some(g) = &r.min_glibc {
        ui.status(
            "Needs",
            &format!(
                "glibc >= {} ({})",
                g.version,
                super::bundle::floor_source(g)
            ),
        );
    }
    for (prefix, req) in &r.max_versions {
        if matches!(prefix.as_str(), "GLIBCXX" | "CXXABI" | "GCC") {
            ui.status("", &format!("{prefix} >= {} ({})", req.version, req.file));
        }
    }
    if let Some(c) = &r.cuda {
        ui.status("", &cuda_line(c));
    }
    // The CUDA warning says what the line above does.
    for w in r.warnings.iter().filter(|w| !is_cuda_note(w)) {
        ui.warn(w);
    }
    if r.passed() {
        ui.status("Passed", &format!("{what} will load on {target}"));
        return;
    }
    // The verdict is the point of this command: shown even with -q.
    // Problems name files of the bundle: escaped before the terminal.
    eprintln!(
        "error: {}",
        crate::ui::escape_lines(&format!("{what} will not load on {target}"))
    );
    print_problems(r, advice);
}

/// Where a failed verdict came from, which decides the advice: a written bundle is bundled
/// again, a plan is fixed in its configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Advice {
    /// `airgap check BUNDLE`.
    Written,
    /// `airgap check -c` or `airgap bundle`, and what became of the `syslibs` source.
    Plan(Syslibs),
}

/// The `syslibs` source in a plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Syslibs {
    /// It ran.
    Ran,
    /// `[sources.syslibs] enabled = false`.
    Disabled,
    /// No table, and no environment source that brings it.
    Absent,
}

impl Advice {
    /// The advice for a plan of `config` whose sources were served by `plugins`.
    pub(crate) fn for_plan<'a>(
        config: &Config,
        plugins: impl IntoIterator<Item = &'a str>,
    ) -> Advice {
        let name = airgap_core::config::SYSLIBS;
        Advice::Plan(if plugins.into_iter().any(|p| p == name) {
            Syslibs::Ran
        } else if config.disabled.iter().any(|d| d == name) {
            Syslibs::Disabled
        } else {
            Syslibs::Absent
        })
    }
}

/// The problems of a failed verdict, then one `help:` line per kind of problem, each naming
/// the change that fixes it.
fn print_problems(r: &CheckReport, advice: Advice) {
    print_problem_list(r);
    for help in advice_lines(r, advice) {
        eprintln!("help: {help}");
    }
}

/// The problems of a failed verdict, one line each (what `airgap bundle` shows before its
/// error, whose `help:` lines are [`advice_lines`]).
pub(crate) fn print_problem_list(r: &CheckReport) {
    let esc = crate::ui::escape_lines;
    for p in &r.problems {
        eprintln!("  - {}", esc(&p.to_string()));
    }
    for t in &r.too_new {
        for (file, v) in t.files.iter().take(10) {
            eprintln!("      {}  needs {}_{v}", crate::ui::escape(file), t.prefix);
        }
        if t.files.len() > 10 {
            eprintln!("      ... {} more", t.files.len() - 10);
        }
    }
}

/// The `help:` lines of a failed verdict, each naming the change that fixes it.
pub(crate) fn advice_lines(r: &CheckReport, advice: Advice) -> Vec<String> {
    let mut out = Vec::new();
    if r.too_new.iter().any(|t| t.prefix == "GLIBC") {
        out.push("bundling cannot bring a newer glibc: build the environment on a machine (or in a manylinux container) with a glibc no newer than the target's, or use wheels tagged for it".into());
    }
    if r.too_new.iter().any(|t| t.prefix != "GLIBC") {
        out.push(match advice {
            Advice::Written => "the target's libstdc++/libgcc_s are too old: bundle again with [sources.syslibs] include = [\"libstdc++.so.6\", \"libgcc_s.so.1\"] in airgap.toml".into(),
            Advice::Plan { .. } => "the target's libstdc++/libgcc_s are too old: add include = [\"libstdc++.so.6\", \"libgcc_s.so.1\"] to [sources.syslibs] in airgap.toml".into(),
        });
    }
    if r.missing.iter().any(|m| m.unreachable_copy.is_none()) {
        out.push(match advice {
            Advice::Written => "bundle again with [sources.syslibs] so that the missing libraries are carried (it comes by itself beside an environment source such as conda, unless it says enabled = false); list dlopen-only ones in its `extra`".into(),
            Advice::Plan(Syslibs::Disabled) => "turn the syslibs source on to carry the missing libraries: remove `enabled = false` from [sources.syslibs] in airgap.toml".into(),
            Advice::Plan(Syslibs::Absent) => "add a [sources.syslibs] table to airgap.toml to carry the missing libraries (list dlopen-only ones in `extra`)".into(),
            Advice::Plan(Syslibs::Ran) => "[sources.syslibs] did not find these libraries on this machine: install them here so it can carry them, give their paths in [sources.syslibs] extra = [...], or install them on the target and say so with [sources.syslibs] exclude = [...]".into(),
        });
    }
    if r.missing
        .iter()
        .any(|m| m.needed_by.iter().any(|u| u.contains(".whl!/")))
    {
        out.push("a wheel built here from an sdist links this machine's libraries and cannot be patched inside the zip: install it into the bundled environment instead (so syslibs sees it), repair it with auditwheel, or install the libraries on the target".into());
    }
    if r.missing.iter().any(|m| m.unreachable_copy.is_some()) {
        out.push(match advice {
            Advice::Plan(Syslibs::Ran) => "a bundled library is out of its users' search path and [sources.syslibs] could not patch them: see the warnings above".into(),
            _ => "[sources.syslibs] gives the files that need a bundled library an $ORIGIN-relative RPATH: bundle with it (it comes by itself beside an environment source, unless it says enabled = false)".into(),
        });
    }
    if !r.python.is_empty() {
        out.push("bundle a Python and wheels built for the target's Python ([target] python, abi, platform in airgap.toml)".into());
    }
    out
}

/// The driver line of a bundle with a CUDA runtime: what it needs, what the target has.
pub(crate) fn cuda_line(c: &airgap_core::check::CudaReport) -> String {
    let have = match (&c.target_driver, c.driver_known) {
        (Some(d), _) => format!("the target has {d}"),
        (None, true) => "the target has none: GPU code will not run there".into(),
        (None, false) => "the target's is not known (`airgap probe` there, then --target)".into(),
    };
    format!(
        "NVIDIA driver >= {} for the CUDA {} runtime ({}); {have}",
        c.min_driver, c.runtime, c.library
    )
}

/// A warning of the check that [`cuda_line`] already shows.
pub(crate) fn is_cuda_note(warning: &str) -> bool {
    warning.starts_with("the bundled CUDA ")
}
