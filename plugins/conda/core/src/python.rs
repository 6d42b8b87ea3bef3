//! Asking the source interpreter what it is.

use std::path::{Path, PathBuf};
use std::process::Command;

use airgap_plugin_api::PluginError;
use serde::Deserialize;

/// The facts a Python interpreter reports about itself.
#[derive(Debug, Clone, Deserialize)]
pub struct Facts {
    pub version: String,
    pub implementation: String,
    pub abi: String,
    pub platforms: Vec<String>,
    pub prefix: PathBuf,
    pub base_prefix: PathBuf,
    pub purelib: PathBuf,
    pub stdlib: PathBuf,
    pub version_short: String,
    pub executable: PathBuf,
}

const SCRIPT: &str = r#"
import json, os, platform, sys, sysconfig
impl = sys.implementation.name
short = {"cpython": "cp", "pypy": "pp", "graalpy": "gp"}.get(impl, impl)
nodot = "%d%d" % sys.version_info[:2]
tags = None
for mod in ("packaging.tags", "pip._vendor.packaging.tags"):
    try:
        tags = __import__(mod, fromlist=["sys_tags"])
        break
    except Exception:
        pass
platforms, abi = [], None
if tags is not None:
    try:
        for t in tags.sys_tags():
            if abi is None and t.abi not in ("none", "abi3"):
                abi = t.abi
            if t.platform not in platforms:
                platforms.append(t.platform)
    except Exception:
        platforms, abi = [], None
if abi is None:
    if impl == "cpython":
        abi = "cp" + nodot + ("t" if sysconfig.get_config_var("Py_GIL_DISABLED") else "")
        if sysconfig.get_config_var("Py_DEBUG"):
            abi += "d"
    else:
        soabi = sysconfig.get_config_var("SOABI") or sys.implementation.cache_tag or ""
        abi = soabi.replace("-", "_").replace(".", "_")
if not platforms:
    arch = platform.machine()
    try:
        glibc = os.confstr("CS_GNU_LIBC_VERSION").split()[1]
        major, minor = (int(x) for x in glibc.split(".")[:2])
    except Exception:
        major, minor = 0, 0
    if major == 2:
        for m in range(minor, 4, -1):
            platforms.append("manylinux_2_%d_%s" % (m, arch))
            legacy = {17: "manylinux2014", 12: "manylinux2010", 5: "manylinux1"}.get(m)
            if legacy and (m == 17 or arch in ("x86_64", "i686")):
                platforms.append("%s_%s" % (legacy, arch))
    platforms.append("linux_" + arch)
print(json.dumps({
    "version": platform.python_version(),
    "version_short": "%d.%d" % sys.version_info[:2],
    "implementation": short,
    "abi": abi,
    "platforms": platforms,
    "prefix": sys.prefix,
    "base_prefix": sys.base_prefix,
    "purelib": sysconfig.get_path("purelib"),
    "stdlib": sysconfig.get_path("stdlib"),
    "executable": sys.executable,
}))
"#;

/// The interpreter of a prefix: `bin/python3`, then `bin/python`.
pub fn find_interpreter(prefix: &Path) -> Option<PathBuf> {
    ["bin/python3", "bin/python"]
        .iter()
        .map(|p| prefix.join(p))
        .find(|p| p.exists())
}

/// Run `python` and read its facts.
pub fn interrogate(python: &Path) -> Result<Facts, PluginError> {
    let output = Command::new(python)
        .arg("-I")
        .arg("-c")
        .arg(SCRIPT)
        .env_remove("PYTHONHOME")
        .env_remove("PYTHONPATH")
        .env_remove("PYTHONSTARTUP")
        .output()
        .map_err(|e| {
            PluginError::new(format!("could not run {}: {e}", python.display())).with_help(
                "the environment's interpreter must run on the build machine to report its version and tags",
            )
        })?;
    if !output.status.success() {
        return Err(PluginError::new(format!(
            "{} failed while reporting its version: {}",
            python.display(),
            String::from_utf8_lossy(&output.stderr).trim()
        ))
        .with_help("check that the environment's interpreter runs: `bin/python -c 'import sys'`"));
    }
    serde_json::from_slice(&output.stdout).map_err(|e| {
        PluginError::new(format!(
            "{} printed something unexpected while reporting its version: {e}",
            python.display()
        ))
        .with_help("a sitecustomize or .pth file may print on start-up; remove it")
    })
}
