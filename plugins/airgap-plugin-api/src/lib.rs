//! The contract between the airgap host and its source plugins.
//!
//! A source plugin is a `cdylib` that the host loads with `dlopen`. Because Rust has no stable
//! ABI, nothing Rust-specific crosses that boundary: the plugin exports one C function,
//! [`DESCRIPTOR_SYMBOL`], returning a static [`ffi::PluginDescriptor`]; requests and responses
//! cross as JSON bytes; memory is freed by the side that allocated it; panics are caught before
//! they reach the boundary. A plugin built by another team with another `rustc` therefore loads
//! as long as its ABI major matches the host's and its minor is not newer.
//!
//! Plugin authors write no `unsafe`: implement [`SourcePlugin`] and call [`export_plugin!`].
//!
//! # Values are built, never written as literals
//!
//! An ABI 1.x minor adds fields (with serde defaults) to the request and contribution types,
//! and may add variants to their enums. So that such a minor never breaks a plugin's source,
//! every struct of the JSON schema is `#[non_exhaustive]`: outside this crate it is made with
//! `Default` and field assignment, or with its constructor and `with_*` methods
//! ([`Entry::path`], [`Package::new`], [`PrefixFile::new`], [`BundleFile::new`],
//! [`PluginError::new`]), never with a struct literal (not even `..Default::default()`), and
//! read with `..` in its patterns. The enums that may grow ([`EntryKind`], [`FileKind`],
//! [`InstallStep`], [`Stage`], [`LogLevel`], [`Earlier`]) are `#[non_exhaustive]` too: a
//! `match` on one needs a `_` arm, which should return a clear error (or skip what it does
//! not need), never panic. Within 1.x a variant's own fields do not change; a minor that
//! needs more adds a variant. The wire format is the same either way: these attributes only
//! change what Rust code may write.
//!
//! This example is compiled as a crate of its own, as a plugin is:
//!
//! ```
//! use airgap_plugin_api::{
//!     export_plugin, ContributeRequest, Contribution, Entry, FileKind, Host, Package,
//!     PluginError, SourcePlugin, Stage,
//! };
//!
//! #[derive(Default)]
//! struct AcmeStore;
//!
//! impl SourcePlugin for AcmeStore {
//!     fn contribute(&self, request: &ContributeRequest, host: &Host) -> Result<Contribution, PluginError> {
//!         host.info("reading the acme index");
//!         let id = "acme:tools-1.0";
//!         let mut contribution = Contribution::default();
//!         contribution
//!             .entries
//!             .push(Entry::path(request.resolve_path("tools"), "acme/tools").with_package(id));
//!         let mut package = Package::new(id, "tools", "1.0", "acme").with_origin("the acme index");
//!         package.license = Some("MIT".into());
//!         contribution.packages.push(package);
//!         Ok(contribution)
//!     }
//! }
//!
//! /// A match on an enum of the API has an arm for what a later minor adds.
//! fn describe(kind: &FileKind) -> Result<&'static str, PluginError> {
//!     match kind {
//!         FileKind::File => Ok("file"),
//!         FileKind::Dir => Ok("directory"),
//!         FileKind::Symlink { .. } => Ok("link"),
//!         _ => Err(PluginError::new("a kind of file this plugin does not know")),
//!     }
//! }
//!
//! export_plugin!(AcmeStore, name = "acme-store", version = env!("CARGO_PKG_VERSION"),
//!                stage = Stage::Packages, description = "packages from the ACME artifact store");
//!
//! let mut request = ContributeRequest::default();
//! request.config_dir = "/srv/acme".into();
//! let contribution = AcmeStore.contribute(&request, &Host::detached()).expect("contributes");
//! assert_eq!(contribution.packages[0].license.as_deref(), Some("MIT"));
//! assert_eq!(describe(&FileKind::Dir).expect("known"), "directory");
//! ```
//!
//! A struct literal does not compile outside this crate, so that the day a minor adds a field
//! breaks no plugin:
//!
//! ```compile_fail,E0639
//! let package = airgap_plugin_api::Package {
//!     id: "acme:tools-1.0".into(),
//!     ..Default::default()
//! };
//! ```
#![deny(missing_docs)]

mod model;
pub use model::*;

pub mod ffi;

/// ABI major version implemented by this crate. A host loads plugins of its own major only.
pub const ABI_MAJOR: u32 = 1;
/// ABI minor version implemented by this crate. A host loads plugins whose minor is not newer.
/// 1.1: a Finish-stage plugin pages through the earlier files ([`Host::earlier`]) and gets
/// an empty `request.earlier`.
/// 1.2: [`Package::purl`], the package URL the SBOM names a package by.
pub const ABI_MINOR: u32 = 2;
/// First eight bytes of every descriptor; anything else is not an airgap plugin.
pub const MAGIC: [u8; 8] = *b"AIRGAPPL";
/// The one symbol every plugin exports (`extern "C" fn() -> *const PluginDescriptor`).
/// Its name never changes across ABI majors, so a host can always read the version fields.
pub const DESCRIPTOR_SYMBOL: &str = "airgap_plugin_descriptor";
/// Version of the JSON schema of [`ContributeRequest`] and [`Contribution`], equal to the ABI
/// version: `MAJOR.MINOR`.
pub fn abi_version() -> String {
    format!("{ABI_MAJOR}.{ABI_MINOR}")
}

/// When a plugin runs relative to the others.
///
/// Plugins run stage by stage; within a stage, in the order of the `[sources.*]` tables in the
/// configuration. A later stage sees everything the earlier ones contributed.
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
#[non_exhaustive]
pub enum Stage {
    /// Brings a Python environment or interpreter (conda, venv, plain installation).
    Environment = 0,
    /// Brings packages and files into that environment (pip, files, in-house stores).
    Packages = 1,
    /// Inspects and completes what the others brought (system libraries).
    Finish = 2,
}

impl Stage {
    /// The stage for a raw descriptor value, if it is known.
    pub fn from_raw(raw: u32) -> Option<Stage> {
        match raw {
            0 => Some(Stage::Environment),
            1 => Some(Stage::Packages),
            2 => Some(Stage::Finish),
            _ => None,
        }
    }

    /// A short lower-case name for listings.
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Environment => "environment",
            Stage::Packages => "packages",
            Stage::Finish => "finish",
        }
    }
}

/// A source plugin: turns its configuration table into a [`Contribution`].
///
/// The plugin value is made with [`Default`] for each call of
/// [`contribute`](SourcePlugin::contribute), so keep it cheap and stateless. Never print:
/// report through `host`; never call `std::process::exit`.
pub trait SourcePlugin: Default + Send + Sync + 'static {
    /// Say what this plugin brings for the given request.
    fn contribute(
        &self,
        request: &ContributeRequest,
        host: &Host,
    ) -> Result<Contribution, PluginError>;
}

/// Log levels passed to the host's log callback.
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum LogLevel {
    /// Details shown with `-v`.
    Debug = 0,
    /// Normal progress messages.
    Info = 1,
    /// Something the user should read; does not stop the bundle.
    Warn = 2,
}

/// Which earlier files a Finish-stage plugin pages through ([`Host::earlier`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Earlier {
    /// Every file, link and directory earlier plugins brought.
    All,
    /// Regular files whose content is ELF, and links: what the loader model needs. Without
    /// paging ([`Host::pages_earlier`] false) every file and link of `request.earlier` comes
    /// instead, so read what you get as candidates and check their content.
    ElfAndLinks,
}

impl Earlier {
    fn raw(self) -> u32 {
        match self {
            Earlier::All => ffi::EARLIER_ALL,
            Earlier::ElfAndLinks => ffi::EARLIER_ELF_AND_LINKS,
        }
    }
}

/// The host as a plugin sees it: logging, progress, cancellation and (ABI 1.1, Finish
/// stage) the earlier files, a page at a time.
pub struct Host<'a> {
    callbacks: Option<Callbacks>,
    _call: std::marker::PhantomData<&'a ffi::HostCallbacks>,
}

/// The fields of the host's table that its `struct_size` covers (copied out, so that a
/// smaller table of an older host is never read past its end).
#[derive(Clone, Copy)]
struct Callbacks {
    context: *mut std::ffi::c_void,
    log: Option<unsafe extern "C" fn(*mut std::ffi::c_void, u32, *const u8, usize)>,
    progress: Option<unsafe extern "C" fn(*mut std::ffi::c_void, u64, u64, *const u8, usize)>,
    is_cancelled: Option<unsafe extern "C" fn(*mut std::ffi::c_void) -> bool>,
    earlier_page: Option<ffi::EarlierPageFn>,
}

impl<'a> Host<'a> {
    /// A host that drops every message (for unit tests of plugins).
    pub fn detached() -> Host<'static> {
        Host {
            callbacks: None,
            _call: std::marker::PhantomData,
        }
    }

    /// Wrap the callbacks the host passed in. `callbacks` may be null.
    ///
    /// # Safety
    /// `callbacks` must be null or point to a valid [`ffi::HostCallbacks`] of at least its
    /// `struct_size` bytes for `'a`.
    #[doc(hidden)]
    pub unsafe fn from_raw(callbacks: *const ffi::HostCallbacks) -> Host<'a> {
        if callbacks.is_null() {
            return Host::detached();
        }
        // SAFETY: the caller guarantees a valid table; `struct_size` is its first field in
        // every 1.x layout. Fields are read one by one through the raw pointer, and only
        // those `struct_size` covers: a 1.0 host's table is smaller than ours.
        let size = unsafe { std::ptr::addr_of!((*callbacks).struct_size).read() } as usize;
        if size < ffi::HOST_CALLBACKS_SIZE_1_0 {
            // Every 1.0 field is required: a table smaller than that is not one.
            return Host::detached();
        }
        let covers_earlier_page = size
            >= std::mem::offset_of!(ffi::HostCallbacks, earlier_page)
                + std::mem::size_of::<Option<ffi::EarlierPageFn>>();
        // SAFETY: each field read lies within `size` bytes of a valid table.
        let callbacks = unsafe {
            Callbacks {
                context: std::ptr::addr_of!((*callbacks).context).read(),
                log: std::ptr::addr_of!((*callbacks).log).read(),
                progress: std::ptr::addr_of!((*callbacks).progress).read(),
                is_cancelled: std::ptr::addr_of!((*callbacks).is_cancelled).read(),
                earlier_page: if covers_earlier_page {
                    std::ptr::addr_of!((*callbacks).earlier_page).read()
                } else {
                    None
                },
            }
        };
        Host {
            callbacks: Some(callbacks),
            _call: std::marker::PhantomData,
        }
    }

    /// Log a message at `level`.
    pub fn log(&self, level: LogLevel, message: &str) {
        if let Some(cb) = self.callbacks {
            if let Some(log) = cb.log {
                // SAFETY: the host promised a valid callback for the duration of the call.
                unsafe { log(cb.context, level as u32, message.as_ptr(), message.len()) };
            }
        }
    }

    /// Log a detail shown with `-v`.
    pub fn debug(&self, message: &str) {
        self.log(LogLevel::Debug, message)
    }

    /// Log a progress message.
    pub fn info(&self, message: &str) {
        self.log(LogLevel::Info, message)
    }

    /// Log a warning (prefer [`Contribution::warnings`] for things that belong in the summary).
    pub fn warn(&self, message: &str) {
        self.log(LogLevel::Warn, message)
    }

    /// Report progress of a long step: `done` of `total` units (`total` 0 = unknown).
    pub fn progress(&self, done: u64, total: u64, message: &str) {
        if let Some(cb) = self.callbacks {
            if let Some(progress) = cb.progress {
                // SAFETY: as in `log`.
                unsafe { progress(cb.context, done, total, message.as_ptr(), message.len()) };
            }
        }
    }

    /// True once the user asked to stop (Ctrl-C); long loops should return
    /// [`PluginError::cancelled`] soon after.
    pub fn is_cancelled(&self) -> bool {
        match self
            .callbacks
            .and_then(|cb| cb.is_cancelled.map(|f| (cb.context, f)))
        {
            // SAFETY: as in `log`.
            Some((context, f)) => unsafe { f(context) },
            None => false,
        }
    }

    /// Whether the host pages through the earlier files (an ABI 1.1 host, for a
    /// Finish-stage plugin): then `request.earlier` is empty.
    pub fn pages_earlier(&self) -> bool {
        self.callbacks.is_some_and(|cb| cb.earlier_page.is_some())
    }

    /// The earlier files `start..start + max` of `which`, sorted by path (at most
    /// [`ffi::EARLIER_PAGE_MAX`]; empty past the end). `None` when the host does not page
    /// ([`Host::pages_earlier`]); an error when it refuses (a `start` past the end).
    /// [`Host::earlier`] is the loop over this.
    pub fn earlier_page(
        &self,
        which: Earlier,
        start: u64,
        max: u64,
    ) -> Option<Result<Vec<BundleFile>, PluginError>> {
        let cb = self.callbacks?;
        let page = cb.earlier_page?;
        let mut bytes: Vec<u8> = Vec::new();
        // SAFETY: the host promised a valid callback for the duration of `contribute`;
        // `collect` gets our Vec as its context and only during this call.
        let status = unsafe {
            page(
                cb.context,
                which.raw(),
                start,
                max,
                Some(collect),
                &mut bytes as *mut Vec<u8> as *mut std::ffi::c_void,
            )
        };
        Some(match status {
            ffi::STATUS_OK => serde_json::from_slice(&bytes).map_err(|e| {
                PluginError::new(format!(
                    "the host sent a page of earlier files the plugin could not read: {e}"
                ))
            }),
            _ => Err(PluginError::new(format!(
                "the host refused a page of earlier files: {}",
                String::from_utf8_lossy(&bytes)
            ))),
        })
    }

    /// Every earlier file `which` names, sorted by path, fetched from the host a page at a
    /// time; from a table without `earlier_page` (one of ABI 1.0's size, [`Host::detached`]),
    /// `request.earlier` instead (for [`Earlier::ElfAndLinks`] without its directories).
    pub fn earlier<'r>(
        &'r self,
        request: &'r ContributeRequest,
        which: Earlier,
    ) -> EarlierFiles<'r> {
        let source = if self.pages_earlier() {
            Source::Host {
                host: self,
                which,
                next: 0,
                page: Vec::new().into_iter(),
                done: false,
            }
        } else {
            Source::Request(request.earlier.iter(), which)
        };
        EarlierFiles { source }
    }
}

/// Copies one answer of the host's `earlier_page` into the `Vec<u8>` its context points to.
unsafe extern "C" fn collect(sink_context: *mut std::ffi::c_void, bytes: *const u8, len: usize) {
    // Never unwind into the host.
    let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        if sink_context.is_null() || bytes.is_null() || len == 0 {
            return;
        }
        // SAFETY: `earlier_page` passes its own Vec as the context, and the host `len`
        // readable bytes for the duration of this call.
        let out = unsafe { &mut *(sink_context as *mut Vec<u8>) };
        out.extend_from_slice(unsafe { std::slice::from_raw_parts(bytes, len) });
    }));
}

/// The earlier files a plugin reads ([`Host::earlier`]).
pub struct EarlierFiles<'r> {
    source: Source<'r>,
}

enum Source<'r> {
    Request(std::slice::Iter<'r, BundleFile>, Earlier),
    Host {
        host: &'r Host<'r>,
        which: Earlier,
        next: u64,
        page: std::vec::IntoIter<BundleFile>,
        done: bool,
    },
}

impl Iterator for EarlierFiles<'_> {
    type Item = Result<BundleFile, PluginError>;

    fn next(&mut self) -> Option<Self::Item> {
        match &mut self.source {
            Source::Request(files, which) => {
                let wanted = |f: &&BundleFile| *which == Earlier::All || f.kind != FileKind::Dir;
                files.find(wanted).cloned().map(Ok)
            }
            Source::Host {
                host,
                which,
                next,
                page,
                done,
            } => loop {
                if let Some(file) = page.next() {
                    return Some(Ok(file));
                }
                if *done {
                    return None;
                }
                match host.earlier_page(*which, *next, ffi::EARLIER_PAGE_MAX) {
                    Some(Ok(files)) if !files.is_empty() => {
                        *next += files.len() as u64;
                        *page = files.into_iter();
                    }
                    Some(Ok(_)) | None => {
                        *done = true;
                        return None;
                    }
                    Some(Err(e)) => {
                        *done = true;
                        return Some(Err(e));
                    }
                }
            },
        }
    }
}

/// Declare the exported descriptor of a plugin crate.
///
/// `name` is the plugin's name (what `[sources.NAME]` refers to); `version` is the plugin's own
/// version; `stage` a [`Stage`]; `description` one line for `airgap plugins list`.
#[macro_export]
macro_rules! export_plugin {
    ($plugin:ty, name = $name:expr, version = $version:expr, stage = $stage:expr, description = $description:expr $(,)?) => {
        const _: () = {
            static DESCRIPTOR: $crate::ffi::PluginDescriptor = $crate::ffi::PluginDescriptor {
                magic: $crate::MAGIC,
                abi_major: $crate::ABI_MAJOR,
                abi_minor: $crate::ABI_MINOR,
                struct_size: ::core::mem::size_of::<$crate::ffi::PluginDescriptor>() as u32,
                stage: $stage as u32,
                name: concat!($name, "\0").as_ptr() as *const ::core::ffi::c_char,
                version: concat!($version, "\0").as_ptr() as *const ::core::ffi::c_char,
                description: concat!($description, "\0").as_ptr() as *const ::core::ffi::c_char,
                contribute: contribute_entry,
                free_buffer: $crate::ffi::free_buffer,
            };

            unsafe extern "C" fn contribute_entry(
                host: *const $crate::ffi::HostCallbacks,
                request: *const u8,
                request_len: usize,
                out: *mut $crate::ffi::Buffer,
            ) -> i32 {
                // SAFETY: the host passes valid pointers as documented on PluginDescriptor.
                unsafe { $crate::ffi::run_contribute::<$plugin>(host, request, request_len, out) }
            }

            #[no_mangle]
            pub extern "C" fn airgap_plugin_descriptor() -> *const $crate::ffi::PluginDescriptor {
                &DESCRIPTOR
            }
        };
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A 1.0 host's table (smaller than ours) keeps its log and has no `earlier_page`, even
    /// when the bytes after its end say otherwise; a table smaller than 1.0's is none.
    #[test]
    fn a_1_0_hosts_table_is_read_only_as_far_as_its_struct_size() {
        unsafe extern "C" fn log(_: *mut std::ffi::c_void, _: u32, _: *const u8, _: usize) {}
        unsafe extern "C" fn page(
            _: *mut std::ffi::c_void,
            _: u32,
            _: u64,
            _: u64,
            _: Option<ffi::EarlierSink>,
            _: *mut std::ffi::c_void,
        ) -> i32 {
            ffi::STATUS_OK
        }
        let mut table = ffi::HostCallbacks {
            struct_size: ffi::HOST_CALLBACKS_SIZE_1_0 as u32,
            context: std::ptr::null_mut(),
            log: Some(log),
            progress: None,
            is_cancelled: None,
            earlier_page: Some(page),
        };
        // SAFETY: a valid table for the call.
        let host = unsafe { Host::from_raw(&table) };
        assert!(host.callbacks.is_some_and(|c| c.log.is_some()));
        assert!(!host.pages_earlier());
        assert!(host.earlier_page(Earlier::All, 0, 1).is_none());

        table.struct_size = std::mem::size_of::<ffi::HostCallbacks>() as u32;
        // SAFETY: as above.
        assert!(unsafe { Host::from_raw(&table) }.pages_earlier());

        table.struct_size = ffi::HOST_CALLBACKS_SIZE_1_0 as u32 - 8;
        // SAFETY: as above.
        assert!(unsafe { Host::from_raw(&table) }.callbacks.is_none());
    }

    /// Without paging, the request's list is the earlier files, and the ELF-and-links list
    /// leaves its directories out (there is no I/O here to look at contents).
    #[test]
    fn without_paging_the_request_is_the_list() {
        let file = |path: &str, kind: FileKind| BundleFile {
            path: path.into(),
            source: None,
            kind,
            mode: 0o644,
            size: 0,
            plugin: "t".into(),
            package: None,
        };
        let request = ContributeRequest {
            earlier: vec![
                file("a", FileKind::Dir),
                file("a/b", FileKind::File),
                file("a/c", FileKind::Symlink { target: "b".into() }),
            ],
            ..Default::default()
        };
        let host = Host::detached();
        let list = |which| -> Vec<String> {
            host.earlier(&request, which)
                .map(|f| f.expect("no error").path)
                .collect()
        };
        assert_eq!(list(Earlier::All), ["a", "a/b", "a/c"]);
        assert_eq!(list(Earlier::ElfAndLinks), ["a/b", "a/c"]);
    }
}
