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
//! ```ignore
//! use airgap_plugin_api::{export_plugin, Contribution, ContributeRequest, Host, PluginError, SourcePlugin, Stage};
//!
//! #[derive(Default)]
//! struct AcmeStore;
//!
//! impl SourcePlugin for AcmeStore {
//!     fn contribute(&self, request: &ContributeRequest, host: &Host) -> Result<Contribution, PluginError> {
//!         host.info("reading the acme index");
//!         Ok(Contribution::default())
//!     }
//! }
//!
//! export_plugin!(AcmeStore, name = "acme-store", version = env!("CARGO_PKG_VERSION"),
//!                stage = Stage::Packages, description = "packages from the ACME artifact store");
//! ```
#![deny(missing_docs)]

mod model;
pub use model::*;

pub mod ffi;

/// ABI major version implemented by this crate. A host loads plugins of its own major only.
pub const ABI_MAJOR: u32 = 1;
/// ABI minor version implemented by this crate. A host loads plugins whose minor is not newer.
pub const ABI_MINOR: u32 = 0;
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
pub enum LogLevel {
    /// Details shown with `-v`.
    Debug = 0,
    /// Normal progress messages.
    Info = 1,
    /// Something the user should read; does not stop the bundle.
    Warn = 2,
}

/// The host as a plugin sees it: logging, progress and cancellation.
pub struct Host<'a> {
    callbacks: Option<&'a ffi::HostCallbacks>,
}

impl<'a> Host<'a> {
    /// A host that drops every message (for unit tests of plugins).
    pub fn detached() -> Host<'static> {
        Host { callbacks: None }
    }

    /// Wrap the callbacks the host passed in. `callbacks` may be null.
    ///
    /// # Safety
    /// `callbacks` must be null or point to a valid [`ffi::HostCallbacks`] for `'a`.
    #[doc(hidden)]
    pub unsafe fn from_raw(callbacks: *const ffi::HostCallbacks) -> Host<'a> {
        // SAFETY: the caller guarantees validity for 'a.
        let callbacks = unsafe { callbacks.as_ref() };
        // A table from a host smaller than we know is used only where its fields exist; all
        // fields of ABI 1.0 are required, so a smaller table is treated as absent.
        let callbacks = callbacks
            .filter(|c| c.struct_size as usize >= std::mem::size_of::<ffi::HostCallbacks>());
        Host { callbacks }
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
