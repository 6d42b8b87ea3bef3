//! The raw C ABI. Plugin authors do not use this module directly; [`crate::export_plugin!`]
//! and the host do.
//!
//! Layout rules (frozen for every ABI major, so that any host can read any plugin's version):
//! the first four fields of [`PluginDescriptor`] (`magic`, `abi_major`, `abi_minor`,
//! `struct_size`) never move. Fields are only ever appended within a major; a reader reads an
//! appended field only when `struct_size` says it is there, and needs no more than the
//! minimum size of the minor the other side speaks ([`descriptor_min_size`],
//! [`HOST_CALLBACKS_SIZE_1_0`]), so that 1.0 plugins keep loading in a 1.1 host and a 1.1
//! plugin keeps its log in a 1.0 host.
//!
//! ABI 1.1 appended [`HostCallbacks::earlier_page`]: a Finish-stage plugin pages through the
//! earlier files instead of receiving them all in `request.earlier`.

use std::ffi::{c_char, c_void};
use std::panic::{catch_unwind, AssertUnwindSafe};

use crate::{ContributeRequest, Host, PluginError, SourcePlugin};

/// `contribute` returned a JSON [`crate::Contribution`] in `out`.
pub const STATUS_OK: i32 = 0;
/// `contribute` returned a JSON [`crate::PluginError`] in `out`.
pub const STATUS_ERROR: i32 = 1;
/// The plugin panicked; `out` holds the panic message as UTF-8 text.
pub const STATUS_PANIC: i32 = 2;

/// Bytes allocated by the plugin and handed to the host. The host must give them back through
/// [`PluginDescriptor::free_buffer`], never free them itself (each library has its own allocator).
#[repr(C)]
#[derive(Debug)]
pub struct Buffer {
    /// Start of the bytes (null when empty).
    pub ptr: *mut u8,
    /// Number of bytes.
    pub len: usize,
    /// Allocated capacity, needed to free the allocation.
    pub cap: usize,
}

impl Buffer {
    /// An empty buffer.
    pub const fn empty() -> Buffer {
        Buffer {
            ptr: std::ptr::null_mut(),
            len: 0,
            cap: 0,
        }
    }

    fn from_vec(bytes: Vec<u8>) -> Buffer {
        let mut bytes = std::mem::ManuallyDrop::new(bytes);
        Buffer {
            ptr: bytes.as_mut_ptr(),
            len: bytes.len(),
            cap: bytes.capacity(),
        }
    }

    /// View the bytes.
    ///
    /// # Safety
    /// The buffer must come from a plugin's `contribute` and not have been freed yet.
    pub unsafe fn as_slice(&self) -> &[u8] {
        if self.ptr.is_null() || self.len == 0 {
            &[]
        } else {
            // SAFETY: ptr/len describe a live allocation, as promised by the caller.
            unsafe { std::slice::from_raw_parts(self.ptr, self.len) }
        }
    }
}

/// What [`HostCallbacks::earlier_page`] lists: every earlier file, link and directory.
pub const EARLIER_ALL: u32 = 0;
/// What [`HostCallbacks::earlier_page`] lists: only regular files whose content is ELF, and
/// links (all the loader model needs: `ld.so` never loads anything else). The host sorts
/// files out by their first bytes, as its target check does.
pub const EARLIER_ELF_AND_LINKS: u32 = 1;

/// The most records one page holds, whatever `max` a plugin asks for.
pub const EARLIER_PAGE_MAX: u64 = 1024;

/// Receives one answer of [`HostCallbacks::earlier_page`]: `len` bytes at `bytes`, valid only
/// during this call (the host owns and frees them; copy what you keep).
pub type EarlierSink =
    unsafe extern "C" fn(sink_context: *mut c_void, bytes: *const u8, len: usize);

/// The type of [`HostCallbacks::earlier_page`].
pub type EarlierPageFn = unsafe extern "C" fn(
    context: *mut c_void,
    which: u32,
    start: u64,
    max: u64,
    sink: Option<EarlierSink>,
    sink_context: *mut c_void,
) -> i32;

/// Size of [`HostCallbacks`] in ABI 1.0 (everything before `earlier_page`): the least a
/// plugin accepts from any 1.x host.
pub const HOST_CALLBACKS_SIZE_1_0: usize = std::mem::offset_of!(HostCallbacks, earlier_page);

/// The least `struct_size` a descriptor of ABI `1.minor` may have: a host refuses a smaller
/// one, and reads a field appended in a later minor only when `struct_size` covers it. The
/// descriptor has not grown since 1.0, so every 1.x minor needs the 1.0 size; a minor that
/// appends a field answers its larger size here, and the older minors keep theirs.
pub const fn descriptor_min_size(_minor: u32) -> usize {
    std::mem::size_of::<PluginDescriptor>()
}

/// Callbacks the host passes to every `contribute` call. All may be absent. A plugin reads a
/// field only when `struct_size` covers it (a 1.0 host's table ends before `earlier_page`).
#[repr(C)]
pub struct HostCallbacks {
    /// `size_of::<HostCallbacks>()` as the host knows it.
    pub struct_size: u32,
    /// Opaque host state passed back to every callback.
    pub context: *mut c_void,
    /// Log a UTF-8 message (`level` is a [`crate::LogLevel`]).
    pub log:
        Option<unsafe extern "C" fn(context: *mut c_void, level: u32, msg: *const u8, len: usize)>,
    /// Report progress: `done` of `total` units (0 = unknown), with a UTF-8 message.
    pub progress: Option<
        unsafe extern "C" fn(
            context: *mut c_void,
            done: u64,
            total: u64,
            msg: *const u8,
            len: usize,
        ),
    >,
    /// True when the user asked to stop.
    pub is_cancelled: Option<unsafe extern "C" fn(context: *mut c_void) -> bool>,
    /// ABI 1.1, for Finish-stage plugins (absent for the others, and in a 1.0 host's table):
    /// list the earlier files `start..start + max` (at most [`EARLIER_PAGE_MAX`]) of the
    /// sequence `which` names ([`EARLIER_ALL`], [`EARLIER_ELF_AND_LINKS`]), sorted by path.
    /// Returns [`STATUS_OK`] after calling `sink` once with a JSON array of
    /// [`crate::BundleFile`] (empty past the last file: the end), or [`STATUS_ERROR`] after
    /// calling it once with a UTF-8 message (a `start` past the end, `max` 0, an unknown
    /// `which`, no `sink`, a call after `contribute` returned). The bytes live in the host for
    /// the duration of the `sink` call only: nothing crosses allocators, there is nothing to
    /// free and no size to negotiate. Pages in order are cheap; going back restarts the
    /// host's walk. Any thread of the plugin may call it while `contribute` runs.
    pub earlier_page: Option<EarlierPageFn>,
}

/// The static description every plugin exports through [`crate::DESCRIPTOR_SYMBOL`].
#[repr(C)]
pub struct PluginDescriptor {
    /// Always [`crate::MAGIC`].
    pub magic: [u8; 8],
    /// ABI major the plugin was built against.
    pub abi_major: u32,
    /// ABI minor the plugin was built against.
    pub abi_minor: u32,
    /// `size_of::<PluginDescriptor>()` in the plugin.
    pub struct_size: u32,
    /// A [`crate::Stage`] as a number.
    pub stage: u32,
    /// NUL-terminated UTF-8 plugin name (static).
    pub name: *const c_char,
    /// NUL-terminated UTF-8 plugin version (static).
    pub version: *const c_char,
    /// NUL-terminated UTF-8 one-line description (static).
    pub description: *const c_char,
    /// Run the plugin on a JSON [`crate::ContributeRequest`]. Writes a buffer to `out` and returns
    /// one of the `STATUS_*` codes. `host` may be null. Never unwinds.
    pub contribute: unsafe extern "C" fn(
        host: *const HostCallbacks,
        request: *const u8,
        request_len: usize,
        out: *mut Buffer,
    ) -> i32,
    /// Free a buffer returned by `contribute`.
    pub free_buffer: unsafe extern "C" fn(buffer: Buffer),
}

// SAFETY: the descriptor only holds pointers to static, immutable data and function pointers.
unsafe impl Sync for PluginDescriptor {}
// SAFETY: as above.
unsafe impl Send for PluginDescriptor {}

/// Frees a [`Buffer`] made by this crate (exported through the descriptor).
///
/// # Safety
/// `buffer` must come from this library's `contribute` and be freed once.
pub unsafe extern "C" fn free_buffer(buffer: Buffer) {
    if !buffer.ptr.is_null() {
        // SAFETY: ptr/len/cap come from a Vec<u8> leaked by Buffer::from_vec in this library.
        drop(unsafe { Vec::from_raw_parts(buffer.ptr, buffer.len, buffer.cap) });
    }
}

/// `value` as JSON in a buffer of exactly its length: a contribution of 100,000 files is tens
/// of megabytes, and a buffer grown by doubling would hold up to twice that at the run's peak.
fn to_json_exact<T: serde::Serialize>(value: &T) -> serde_json::Result<Vec<u8>> {
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut count = Count(0);
    serde_json::to_writer(&mut count, value)?;
    let mut json = Vec::with_capacity(count.0);
    serde_json::to_writer(&mut json, value)?;
    Ok(json)
}

/// The body of every plugin's exported `contribute`: decode, call, encode, never unwind.
///
/// # Safety
/// `request` must point to `request_len` readable bytes, `out` to a writable [`Buffer`], and
/// `host` be null or valid for the duration of the call.
#[doc(hidden)]
pub unsafe fn run_contribute<P: SourcePlugin>(
    host: *const HostCallbacks,
    request: *const u8,
    request_len: usize,
    out: *mut Buffer,
) -> i32 {
    if out.is_null() {
        return STATUS_ERROR;
    }
    let result = catch_unwind(AssertUnwindSafe(|| {
        let bytes: &[u8] = if request.is_null() || request_len == 0 {
            &[]
        } else {
            // SAFETY: guaranteed by the caller.
            unsafe { std::slice::from_raw_parts(request, request_len) }
        };
        // SAFETY: guaranteed by the caller.
        let host = unsafe { Host::from_raw(host) };
        let response = match serde_json::from_slice::<ContributeRequest>(bytes) {
            Ok(request) => P::default().contribute(&request, &host),
            Err(e) => Err(PluginError::new(format!(
                "the plugin could not read the host's request: {e}"
            ))
            .with_help("the host and the plugin disagree on the request format; rebuild the plugin against the host's airgap-plugin-api")),
        };
        match response {
            Ok(contribution) => match to_json_exact(&contribution) {
                Ok(json) => (STATUS_OK, json),
                Err(e) => error_json(PluginError::new(format!(
                    "the plugin could not encode its contribution: {e}"
                ))),
            },
            Err(error) => error_json(error),
        }
    }));
    let (status, bytes) = match result {
        Ok(pair) => pair,
        Err(payload) => (STATUS_PANIC, panic_message(&payload).into_bytes()),
    };
    // SAFETY: out is non-null and writable, as checked and promised.
    unsafe { out.write(Buffer::from_vec(bytes)) };
    status
}

fn error_json(error: PluginError) -> (i32, Vec<u8>) {
    let bytes = serde_json::to_vec(&error).unwrap_or_else(|_| {
        // PluginError holds only strings; encoding cannot fail, but never panic here.
        br#"{"message":"the plugin failed and could not encode its error"}"#.to_vec()
    });
    (STATUS_ERROR, bytes)
}

fn panic_message(payload: &Box<dyn std::any::Any + Send>) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "panic with a non-text payload".to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::mem::{offset_of, size_of};

    /// The layout every 1.x host and plugin relies on, pinned: a change here is an ABI
    /// break (a new major), never an edit of this test. Appending a field in a new minor
    /// adds its offset here and the minor's minimum size.
    #[test]
    fn the_1_x_layouts_are_frozen() {
        assert_eq!(offset_of!(PluginDescriptor, magic), 0);
        assert_eq!(offset_of!(PluginDescriptor, abi_major), 8);
        assert_eq!(offset_of!(PluginDescriptor, abi_minor), 12);
        assert_eq!(offset_of!(PluginDescriptor, struct_size), 16);
        assert_eq!(offset_of!(PluginDescriptor, stage), 20);
        assert_eq!(offset_of!(PluginDescriptor, name), 24);
        assert_eq!(offset_of!(PluginDescriptor, version), 32);
        assert_eq!(offset_of!(PluginDescriptor, description), 40);
        assert_eq!(offset_of!(PluginDescriptor, contribute), 48);
        assert_eq!(offset_of!(PluginDescriptor, free_buffer), 56);
        assert_eq!(size_of::<PluginDescriptor>(), 64);
        assert_eq!(descriptor_min_size(0), 64);
        assert_eq!(descriptor_min_size(1), 64);
        assert_eq!(descriptor_min_size(2), 64);

        // 1.0
        assert_eq!(offset_of!(HostCallbacks, struct_size), 0);
        assert_eq!(offset_of!(HostCallbacks, context), 8);
        assert_eq!(offset_of!(HostCallbacks, log), 16);
        assert_eq!(offset_of!(HostCallbacks, progress), 24);
        assert_eq!(offset_of!(HostCallbacks, is_cancelled), 32);
        assert_eq!(HOST_CALLBACKS_SIZE_1_0, 40);
        // 1.1
        assert_eq!(offset_of!(HostCallbacks, earlier_page), 40);
        assert_eq!(size_of::<HostCallbacks>(), 48);

        assert_eq!(offset_of!(Buffer, ptr), 0);
        assert_eq!(offset_of!(Buffer, len), 8);
        assert_eq!(offset_of!(Buffer, cap), 16);
    }
}
