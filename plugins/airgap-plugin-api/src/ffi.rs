//! The raw C ABI. Plugin authors do not use this module directly; [`crate::export_plugin!`]
//! and the host do.
//!
//! Layout rules (frozen for every ABI major, so that any host can read any plugin's version):
//! the first four fields of [`PluginDescriptor`] (`magic`, `abi_major`, `abi_minor`,
//! `struct_size`) never move. Fields are only ever appended within a major; a host reads an
//! appended field only when `struct_size` says it is there.

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

/// Callbacks the host passes to every `contribute` call. All may be absent.
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
            Ok(contribution) => match serde_json::to_vec(&contribution) {
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
