//! Finding plugins: a search path like `PATH`, where the first file with a given plugin name
//! wins and later ones are listed as shadowed.
//!
//! Order: `--plugin-dir`, `plugin-dirs` in the config file, `AIRGAP_PLUGIN_PATH`, next to the
//! executable (`<exe>/../lib/airgap/plugins`, and `<exe dir>` itself when run from a cargo
//! target directory), the user's data dir (`$XDG_DATA_HOME/airgap/plugins`), system dirs.
//! Files are named `libairgap_plugin_NAME.so`, what a crate `airgap-plugin-NAME` builds.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::plugin::Plugin;
use crate::Error;

/// File name prefix and suffix of plugin libraries.
pub const FILE_PREFIX: &str = "libairgap_plugin_";
/// File name suffix of plugin libraries.
pub const FILE_SUFFIX: &str = ".so";

/// Why a directory is on the search path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum DirOrigin {
    /// `--plugin-dir`.
    Flag,
    /// `plugin-dirs` in airgap.toml.
    Config,
    /// `AIRGAP_PLUGIN_PATH`.
    Env,
    /// Beside the airgap executable.
    Executable,
    /// The user's data directory.
    User,
    /// A system directory.
    System,
}

/// One directory of the search path.
#[derive(Debug, Clone, Serialize)]
pub struct SearchDir {
    /// The directory.
    pub dir: PathBuf,
    /// Why it is searched.
    pub origin: DirOrigin,
}

/// The state of one plugin file found on the search path.
#[derive(Debug, Serialize)]
#[serde(rename_all = "kebab-case", tag = "status")]
pub enum Status {
    /// Loaded and compatible; the one used for its name.
    Ok,
    /// Loaded, but an earlier file with the same name wins.
    Shadowed {
        /// The file that wins.
        by: PathBuf,
    },
    /// Could not be used.
    Broken {
        /// Why, and what to do.
        reason: String,
    },
}

/// One plugin file and what became of it.
#[derive(Debug, Serialize)]
pub struct Found {
    /// Plugin name (from the descriptor, else from the file name).
    pub name: String,
    /// Plugin version, when it loaded.
    pub version: Option<String>,
    /// ABI version it was built against, when readable.
    pub abi: Option<String>,
    /// Stage, when it loaded.
    pub stage: Option<String>,
    /// One line, when it loaded.
    pub description: Option<String>,
    /// The file.
    pub path: PathBuf,
    /// Search-path origin.
    pub origin: DirOrigin,
    /// What happened.
    #[serde(flatten)]
    pub status: Status,
}

/// All plugins on the search path, loaded once.
pub struct Registry {
    /// Where we looked, in order.
    pub search_path: Vec<SearchDir>,
    /// Every plugin file found, in search order.
    pub found: Vec<Found>,
    plugins: BTreeMap<String, Plugin>,
    errors: BTreeMap<String, Error>,
}

impl Registry {
    /// The default search path, given the user's extra directories (flags first, then config).
    pub fn search_path(flag_dirs: &[PathBuf], config_dirs: &[PathBuf]) -> Vec<SearchDir> {
        let mut dirs = Vec::new();
        let mut push = |dir: PathBuf, origin: DirOrigin| {
            if !dirs.iter().any(|d: &SearchDir| d.dir == dir) {
                dirs.push(SearchDir { dir, origin });
            }
        };
        for d in flag_dirs {
            push(d.clone(), DirOrigin::Flag);
        }
        for d in config_dirs {
            push(d.clone(), DirOrigin::Config);
        }
        if let Some(path) = std::env::var_os("AIRGAP_PLUGIN_PATH") {
            for d in std::env::split_paths(&path).filter(|d| !d.as_os_str().is_empty()) {
                push(d, DirOrigin::Env);
            }
        }
        if let Some(exe_dir) = std::env::current_exe()
            .ok()
            .and_then(|e| e.canonicalize().ok())
            .and_then(|e| e.parent().map(Path::to_path_buf))
        {
            // The executable is canonical, so its grandparent is too: no `..` in listings.
            let prefix = exe_dir.parent().unwrap_or(&exe_dir);
            push(prefix.join("lib/airgap/plugins"), DirOrigin::Executable);
            // Run from a checkout: the plugins sit beside the binary in target/<profile>/.
            if exe_dir.join(".cargo-lock").exists()
                || exe_dir.parent().and_then(|p| p.file_name()) == Some("target".as_ref())
            {
                push(exe_dir.clone(), DirOrigin::Executable);
            }
        }
        let data = std::env::var_os("XDG_DATA_HOME")
            .map(PathBuf::from)
            .filter(|p| p.is_absolute())
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/share")));
        if let Some(data) = data {
            push(data.join("airgap/plugins"), DirOrigin::User);
        }
        push(
            PathBuf::from("/usr/local/lib/airgap/plugins"),
            DirOrigin::System,
        );
        push(PathBuf::from("/usr/lib/airgap/plugins"), DirOrigin::System);
        dirs
    }

    /// Look through the search path and load every plugin file. Never fails because one
    /// plugin is broken: that one is recorded, the others stay usable.
    pub fn discover(search_path: Vec<SearchDir>) -> Registry {
        let mut found = Vec::new();
        let mut plugins: BTreeMap<String, Plugin> = BTreeMap::new();
        let mut errors = BTreeMap::new();
        for dir in &search_path {
            let Ok(read) = std::fs::read_dir(&dir.dir) else {
                continue;
            };
            let mut files: Vec<PathBuf> = read
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| {
                    p.file_name()
                        .and_then(|n| n.to_str())
                        .is_some_and(|n| n.starts_with(FILE_PREFIX) && n.ends_with(FILE_SUFFIX))
                })
                .collect();
            files.sort();
            for path in files {
                let file_name = name_from_file(&path);
                let loaded = match unsafe_place(&path) {
                    Some(reason) => Err(Error::PluginLoad {
                        path: path.clone(),
                        reason,
                        help: "make it and its directory owned by you or root and writable only by the owner (chmod go-w), as ssh requires of its keys".into(),
                    }),
                    None => Plugin::load(&path),
                };
                match loaded {
                    Ok(plugin) => {
                        let status = match plugins.get(&plugin.name) {
                            Some(winner) => Status::Shadowed {
                                by: winner.path.clone(),
                            },
                            None => Status::Ok,
                        };
                        found.push(Found {
                            name: plugin.name.clone(),
                            version: Some(plugin.version.clone()),
                            abi: Some(format!("{}.{}", plugin.abi.0, plugin.abi.1)),
                            stage: Some(plugin.stage.as_str().to_string()),
                            description: Some(plugin.description.clone()),
                            path: path.clone(),
                            origin: dir.origin,
                            status,
                        });
                        if !plugins.contains_key(&plugin.name) && !errors.contains_key(&plugin.name)
                        {
                            plugins.insert(plugin.name.clone(), plugin);
                        }
                    }
                    Err(error) => {
                        let abi = match &error {
                            Error::PluginIncompatible { plugin_abi, .. } => {
                                Some(plugin_abi.clone())
                            }
                            _ => None,
                        };
                        found.push(Found {
                            name: file_name.clone(),
                            version: None,
                            abi,
                            stage: None,
                            description: None,
                            path: path.clone(),
                            origin: dir.origin,
                            status: Status::Broken {
                                reason: error.to_string(),
                            },
                        });
                        // A broken file shadows later files of the same name only if nothing
                        // usable came before it; the error is kept to explain a failure later.
                        if !plugins.contains_key(&file_name) {
                            errors.entry(file_name).or_insert(error);
                        }
                    }
                }
            }
        }
        Registry {
            search_path,
            found,
            plugins,
            errors,
        }
    }

    /// The plugin for a source table, or an error that explains why there is none.
    pub fn get(&self, name: &str) -> Result<&Plugin, Error> {
        if let Some(p) = self.plugins.get(name) {
            return Ok(p);
        }
        if let Some(error) = self.errors.get(name) {
            return Err(Error::PluginUnusable {
                name: name.to_string(),
                reason: error.to_string(),
                help: error.help(),
            });
        }
        Err(Error::UnknownSource {
            name: name.to_string(),
            found: self.plugins.keys().cloned().collect(),
            searched: self.search_path.iter().map(|d| d.dir.clone()).collect(),
        })
    }

    /// The usable plugins, by name.
    pub fn plugins(&self) -> impl Iterator<Item = &Plugin> {
        self.plugins.values()
    }
}

/// Why a plugin file must not be loaded, if it must not: loading runs its code (its
/// constructors run at `dlopen`, even for `plugins list`), so the file and its directory must
/// be owned by us or root and not writable by group or others, as ssh requires of its keys.
fn unsafe_place(path: &Path) -> Option<String> {
    use std::os::unix::fs::MetadataExt;
    // SAFETY: geteuid cannot fail.
    let me = unsafe { libc::geteuid() };
    let dir = path.parent().unwrap_or(Path::new("."));
    for (what, p) in [("the file", path), ("its directory", dir)] {
        let Ok(m) = std::fs::metadata(p) else {
            continue;
        };
        if m.uid() != me && m.uid() != 0 {
            return Some(format!(
                "refused to load: {what} {} is owned by uid {}, not by you or root",
                p.display(),
                m.uid()
            ));
        }
        if m.mode() & 0o022 != 0 {
            return Some(format!(
                "refused to load: {what} {} is writable by {} (mode {:o})",
                p.display(),
                if m.mode() & 0o002 != 0 {
                    "everyone"
                } else {
                    "its group"
                },
                m.mode() & 0o7777
            ));
        }
    }
    None
}

/// The plugin name a file is named for (`libairgap_plugin_acme_store.so` -> `acme-store`).
pub fn name_from_file(path: &Path) -> String {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    name.trim_start_matches(FILE_PREFIX)
        .trim_end_matches(FILE_SUFFIX)
        .replace('_', "-")
}
