//! Loading one plugin library and calling it across the C ABI.
//!
//! Architecture invariants:
//! - `dlopen` runs a library's ELF initialisers, as any `dlopen` does, so what can be
//!   checked of the file comes first: that it is an ELF shared object (here), and, for the
//!   plugins the registry discovers, that no one but the user or root can write it or its
//!   directory (`registry::unsafe_place`); its descriptor (magic, ABI version, struct size)
//!   is checked before airgap calls any of its functions but the descriptor function;
//! - a library is loaded once and never unloaded (unloading Rust libraries with thread-locals
//!   crashes; the handle is leaked on purpose);
//! - buffers the plugin allocates are freed by the plugin.

use std::ffi::{c_void, CStr};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use airgap_archive::progress::{Level, Progress, Unit};
use airgap_plugin_api::ffi::{
    descriptor_min_size, Buffer, EarlierSink, HostCallbacks, PluginDescriptor, STATUS_ERROR,
    STATUS_OK, STATUS_PANIC,
};
use airgap_plugin_api::{
    ContributeRequest, Contribution, PluginError, Stage, ABI_MAJOR, ABI_MINOR, DESCRIPTOR_SYMBOL,
    MAGIC,
};

use crate::earlier::{Earlier, Pager};
use crate::Error;

/// Size of the frozen head of every descriptor (magic, abi_major, abi_minor, struct_size).
const DESCRIPTOR_HEAD: usize = 8 + 4 + 4 + 4;

/// A loaded, compatible plugin.
pub struct Plugin {
    /// Name from the descriptor.
    pub name: String,
    /// The plugin's own version.
    pub version: String,
    /// One line for listings.
    pub description: String,
    /// When it runs.
    pub stage: Stage,
    /// ABI it was built against.
    pub abi: (u32, u32),
    /// The library file.
    pub path: PathBuf,
    descriptor: &'static PluginDescriptor,
}

impl std::fmt::Debug for Plugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Plugin")
            .field("name", &self.name)
            .field("version", &self.version)
            .field("abi", &self.abi)
            .field("path", &self.path)
            .finish()
    }
}

/// The host's ABI version as text.
pub fn host_abi() -> String {
    format!("{ABI_MAJOR}.{ABI_MINOR}")
}

/// Whether a plugin built against ABI `major.minor` can be loaded by this host, by the semver
/// rule: a plugin built against 1.2 needs a host `>= 1.2, < 2`.
pub fn abi_compatible(major: u32, minor: u32) -> bool {
    let Ok(req) = semver::VersionReq::parse(&format!("^{major}.{minor}")) else {
        return false;
    };
    req.matches(&semver::Version::new(ABI_MAJOR as u64, ABI_MINOR as u64, 0))
}

impl Plugin {
    /// Load and check a plugin library: an ELF shared object, opened once and never
    /// unloaded, whose descriptor is checked (magic, ABI, size) before anything else of it
    /// is read, and whose names and stage are read from it.
    pub fn load(path: &Path) -> Result<Plugin, Error> {
        check_is_shared_library(path).map_err(|reason| {
            load_error(
                path,
                reason,
                "remove this file from the plugin directory, or rebuild the plugin as a cdylib",
            )
        })?;
        let library = open_library(path)?;
        let raw = descriptor_of(path, library)?;
        let (major, minor) = check_head(path, raw)?;
        // SAFETY: magic, version and size checked: the layout is ours, in static storage of a
        // library that is never unloaded.
        let descriptor: &'static PluginDescriptor = unsafe { &*raw };
        let text = |p: *const std::ffi::c_char, what: &str| descriptor_text(path, p, what);
        let name = text(descriptor.name, "name")?;
        let version = text(descriptor.version, "version")?;
        let description = text(descriptor.description, "description")?;
        let stage = Stage::from_raw(descriptor.stage).ok_or_else(|| {
            load_error(
                path,
                format!("unknown stage {} in the descriptor", descriptor.stage),
                "use airgap_plugin_api::Stage",
            )
        })?;
        if name.is_empty() || name.contains(['/', '\\', ' ']) {
            return Err(load_error(
                path,
                format!("invalid plugin name {name:?}"),
                "a plugin name is one word like `acme-store`",
            ));
        }
        Ok(Plugin {
            name,
            version,
            description,
            stage,
            abi: (major, minor),
            path: path.to_path_buf(),
            descriptor,
        })
    }

    /// Whether the plugin pages through the earlier files (ABI 1.1 and later, Finish stage):
    /// it gets an empty `request.earlier` and the `earlier_page` callback; an ABI 1.0
    /// Finish-stage plugin gets them all in `request.earlier`, as before.
    pub fn pages_earlier(&self) -> bool {
        self.stage == Stage::Finish && self.abi >= (1, 1)
    }

    /// Ask the plugin for its contribution, with `request.earlier` as the earlier files
    /// (paged to a plugin that [pages](Plugin::pages_earlier)). Panics and malformed answers
    /// become errors naming the plugin's file; the host keeps running.
    pub fn contribute(
        &self,
        request: &ContributeRequest,
        progress: &dyn Progress,
        cancelled: &AtomicBool,
    ) -> Result<Contribution, Error> {
        self.contribute_within(request, Earlier::Request, progress, cancelled, None)
    }

    /// [`Plugin::contribute`] with a time limit. The call runs on its own thread; the calling
    /// thread relays the plugin's log and progress, and watches the clock and `cancelled`.
    /// Past the limit (or on Ctrl-C) the plugin is asked to stop through its cancel callback
    /// and given [`STOP_GRACE`] to return. A plugin that ignores that is abandoned on its
    /// thread (its library is never unloaded, so its code stays valid) and the call returns
    /// [`Error::PluginTimeout`]: the caller is expected to clean up and exit.
    ///
    /// A plugin that [pages](Plugin::pages_earlier) gets the request without `earlier` and
    /// pages through `earlier` instead; the calling thread answers its page requests too,
    /// from what it holds (see [`crate::earlier`]).
    pub fn contribute_within(
        &self,
        request: &ContributeRequest,
        earlier: Earlier<'_>,
        progress: &dyn Progress,
        cancelled: &AtomicBool,
        limit: Option<Duration>,
    ) -> Result<Contribution, Error> {
        let pages = self.pages_earlier();
        let json = self.encode(request, pages)?;
        let mut pager = Pager::new(earlier, request);
        let (events, inbox) = mpsc::channel::<Event>();
        let stop = Arc::new(AtomicBool::new(false));
        let context = CallContext::leak(events.clone(), Arc::clone(&stop), pages);
        let answerer = Answerer {
            plugin: self.name.clone(),
            path: self.path.clone(),
            source: request.source.clone(),
        };
        self.spawn_call(json, context, events, answerer)?;
        let watch = Watch {
            cancelled,
            limit,
            stop: &stop,
        };
        self.relay(&inbox, &mut pager, progress, &watch)?
    }

    /// The request as JSON: without `earlier` for a plugin that pages through it.
    fn encode(&self, request: &ContributeRequest, pages: bool) -> Result<Vec<u8>, Error> {
        let encoded = if pages {
            serde_json::to_vec(&request.without_earlier())
        } else {
            serde_json::to_vec(request)
        };
        encoded.map_err(|e| {
            Error::Internal(format!(
                "cannot encode the request for plugin {}: {e}",
                self.name
            ))
        })
    }

    /// Call the plugin's `contribute` on a thread of its own, which decodes the answer and
    /// sends it as the last event (the calling thread is free to relay and to watch the clock
    /// meanwhile). The answer is decoded from the plugin's own buffer, on the thread whose
    /// allocations the plugin's freed memory went back to: a copy of it (tens of MB for
    /// 100,000 files) would be held beside the buffer and then beside the decoded entries.
    fn spawn_call(
        &self,
        json: Vec<u8>,
        context: &'static CallContext,
        events: mpsc::Sender<Event>,
        answerer: Answerer,
    ) -> Result<(), Error> {
        let descriptor = self.descriptor;
        std::thread::Builder::new()
            .name(format!("plugin-{}", self.name))
            // The stack a plugin would have had on the main thread.
            .stack_size(PLUGIN_STACK)
            .spawn(move || {
                let mut out = Buffer::empty();
                // SAFETY: the descriptor was checked at load and its library is never
                // unloaded; the callbacks and their context are never freed.
                let status = unsafe {
                    (descriptor.contribute)(
                        context.callbacks(),
                        json.as_ptr(),
                        json.len(),
                        &mut out,
                    )
                };
                // A thread the plugin left running that calls back now gets nothing.
                context.close();
                // SAFETY: `out` was filled by this plugin's contribute.
                let answer = answerer.decode(status, unsafe { out.as_slice() });
                // SAFETY: freed once, by the library that allocated it.
                unsafe { (descriptor.free_buffer)(out) };
                let _ = events.send(Event::Done(Box::new(answer)));
            })
            .map_err(|e| Error::Internal(format!("cannot start a thread for a plugin: {e}")))?;
        Ok(())
    }

    /// Relay the plugin's log, progress and page requests until it answers; meanwhile ask it
    /// to stop on Ctrl-C or past its time limit, and abandon it when it has not returned
    /// within [`STOP_GRACE`] of that. Returns its decoded answer.
    fn relay(
        &self,
        inbox: &mpsc::Receiver<Event>,
        pager: &mut Pager<'_>,
        progress: &dyn Progress,
        watch: &Watch<'_>,
    ) -> Result<Result<Contribution, Error>, Error> {
        let started = Instant::now();
        let mut phase_started = false;
        let mut last_done = 0u64;
        // Why the plugin was asked to stop, and until when it may take to do so.
        let mut stopping: Option<(Stopped, Instant)> = None;
        let answer = loop {
            match inbox.recv_timeout(TICK) {
                Ok(Event::Log(level, text)) => progress.message(level, &text),
                Ok(Event::Progress { done, total, text }) => {
                    if !phase_started {
                        phase_started = true;
                        progress.begin(&text, total, Unit::Items);
                    }
                    progress.advance(done.saturating_sub(last_done));
                    last_done = done;
                }
                Ok(Event::Page {
                    which,
                    start,
                    max,
                    reply,
                }) => {
                    let _ = reply.send(pager.page(which, start, max));
                }
                Ok(Event::Done(answer)) => break *answer,
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    return Err(Error::Internal(format!(
                        "the thread running plugin {} ended without an answer",
                        self.name
                    )))
                }
            }
            if stopping.is_none() {
                if let Some(why) = watch.reason_to_stop(started) {
                    watch.stop.store(true, Ordering::Relaxed);
                    stopping = Some((why, Instant::now() + STOP_GRACE));
                }
            }
            if let Some((why, until)) = stopping {
                if Instant::now() >= until {
                    if phase_started {
                        progress.end();
                    }
                    return Err(self.stopped_error(why, watch.limit, false));
                }
            }
        };
        if phase_started {
            progress.end();
        }
        if let Some((why, _)) = stopping {
            return Err(self.stopped_error(why, watch.limit, true));
        }
        Ok(answer)
    }

    fn stopped_error(&self, why: Stopped, limit: Option<Duration>, stopped: bool) -> Error {
        match why {
            Stopped::Cancelled => Error::Cancelled,
            Stopped::TimedOut => Error::PluginTimeout {
                plugin: self.name.clone(),
                path: self.path.clone(),
                seconds: limit.map(|l| l.as_secs()).unwrap_or(0),
                stopped,
            },
        }
    }
}

/// Who answered a call, for the errors its answer can become.
struct Answerer {
    plugin: String,
    path: PathBuf,
    /// The source (config table) the call was for.
    source: String,
}

impl Answerer {
    /// The contribution the plugin answered with, or its error, panic or malformed answer as
    /// a typed error naming the plugin.
    fn decode(&self, status: i32, bytes: &[u8]) -> Result<Contribution, Error> {
        match status {
            STATUS_OK => {
                serde_json::from_slice::<Contribution>(bytes).map_err(|e| Error::PluginMalformed {
                    plugin: self.plugin.clone(),
                    path: self.path.clone(),
                    reason: e.to_string(),
                })
            }
            STATUS_ERROR => {
                let error: PluginError = serde_json::from_slice(bytes).unwrap_or_else(|_| {
                    PluginError::new(String::from_utf8_lossy(bytes).into_owned())
                });
                if error.cancelled {
                    return Err(Error::Cancelled);
                }
                Err(Error::PluginFailed {
                    plugin: self.plugin.clone(),
                    source_name: self.source.clone(),
                    config: None,
                    message: error.message,
                    help: error.help,
                })
            }
            STATUS_PANIC => Err(Error::PluginPanicked {
                plugin: self.plugin.clone(),
                path: self.path.clone(),
                message: String::from_utf8_lossy(bytes).into_owned(),
            }),
            other => Err(Error::PluginMalformed {
                plugin: self.plugin.clone(),
                path: self.path.clone(),
                reason: format!("unknown status code {other}"),
            }),
        }
    }
}

/// Stack of the thread a plugin runs on: that of a main thread, not a spawned thread's 2 MiB,
/// since plugins were written to run on the main thread (deep directory walks, large JSON).
const PLUGIN_STACK: usize = 8 << 20;
/// How long a plugin asked to stop may take to return before it is abandoned.
pub const STOP_GRACE: Duration = Duration::from_secs(5);
/// How often the host looks at the clock and the cancel flag while a plugin runs.
const TICK: Duration = Duration::from_millis(100);

/// What ends a call early: the user's Ctrl-C (`cancelled`) or the time limit; `stop` is
/// how the plugin is asked to (its cancel callback reads it).
struct Watch<'a> {
    cancelled: &'a AtomicBool,
    limit: Option<Duration>,
    stop: &'a AtomicBool,
}

impl Watch<'_> {
    /// Why a call that began at `started` should stop now, if it should.
    fn reason_to_stop(&self, started: Instant) -> Option<Stopped> {
        if self.cancelled.load(Ordering::Relaxed) {
            Some(Stopped::Cancelled)
        } else {
            self.limit
                .filter(|l| started.elapsed() >= *l)
                .map(|_| Stopped::TimedOut)
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum Stopped {
    Cancelled,
    TimedOut,
}

/// What the plugin's thread tells the host's.
enum Event {
    Log(Level, String),
    Progress {
        done: u64,
        total: u64,
        text: String,
    },
    /// A page of earlier files; the answer goes back on `reply`.
    Page {
        which: u32,
        start: u64,
        max: u64,
        reply: mpsc::SyncSender<Result<Vec<u8>, String>>,
    },
    /// The plugin's answer, decoded (boxed: it is far larger than the other events).
    Done(Box<Result<Contribution, Error>>),
}

/// A plugin file that cannot be used, why, and what to do.
fn load_error(path: &Path, reason: String, help: &str) -> Error {
    Error::PluginLoad {
        path: path.to_path_buf(),
        reason,
        help: help.to_string(),
    }
}

/// `dlopen` the library, leaked: it is never unloaded (see the module docs).
fn open_library(path: &Path) -> Result<&'static libloading::Library, Error> {
    // SAFETY: loading a library runs its initialisers. We only load files from the plugin
    // search path (never the working directory implicitly), which the user controls.
    let library = unsafe { libloading::Library::new(path) }.map_err(|e| {
        load_error(
            path,
            format!("cannot load the library: {e}"),
            "check that the plugin was built for this machine (x86-64 Linux, glibc) and that its own dependencies are installed",
        )
    })?;
    Ok(Box::leak(Box::new(library)))
}

/// The descriptor the library's one exported function returns, not yet checked.
fn descriptor_of(
    path: &Path,
    library: &'static libloading::Library,
) -> Result<*const PluginDescriptor, Error> {
    type DescriptorFn = extern "C" fn() -> *const PluginDescriptor;
    // SAFETY: the symbol's type is fixed by the ABI for every major version.
    let describe = unsafe { library.get::<DescriptorFn>(DESCRIPTOR_SYMBOL.as_bytes()) }
        .map_err(|_| {
            load_error(
                path,
                format!("the library has no `{DESCRIPTOR_SYMBOL}` symbol: it is not an airgap plugin"),
                "an airgap plugin declares itself with `airgap_plugin_api::export_plugin!`; see docs/writing-a-plugin.md",
            )
        })?;
    let raw = describe();
    if raw.is_null() {
        return Err(load_error(
            path,
            "the plugin's descriptor is null".into(),
            "rebuild the plugin with `airgap_plugin_api::export_plugin!`",
        ));
    }
    Ok(raw)
}

/// Check the descriptor's frozen head, read as bytes (a plugin of another major may have a
/// different layout after it): the magic, an ABI this host speaks, and at least the size of
/// the plugin's own minor. Returns the plugin's ABI (major, minor).
fn check_head(path: &Path, raw: *const PluginDescriptor) -> Result<(u32, u32), Error> {
    // SAFETY: every descriptor starts with DESCRIPTOR_HEAD bytes of fixed layout.
    let head = unsafe { std::slice::from_raw_parts(raw as *const u8, DESCRIPTOR_HEAD) };
    if head[..8] != MAGIC {
        return Err(load_error(
            path,
            "the descriptor's magic bytes are wrong: not an airgap plugin, or a corrupted build"
                .into(),
            "rebuild the plugin with `airgap_plugin_api::export_plugin!`",
        ));
    }
    let word = |at: usize| u32::from_ne_bytes([head[at], head[at + 1], head[at + 2], head[at + 3]]);
    let (major, minor, size) = (word(8), word(12), word(16) as usize);
    if !abi_compatible(major, minor) {
        let help = if major != ABI_MAJOR {
            format!(
                "rebuild the plugin against airgap-plugin-api {ABI_MAJOR}.x, or use an airgap that speaks plugin ABI {major}.x"
            )
        } else {
            format!(
                "upgrade airgap to one that speaks plugin ABI {major}.{minor} or newer, or rebuild the plugin against airgap-plugin-api {ABI_MAJOR}.{ABI_MINOR}"
            )
        };
        return Err(Error::PluginIncompatible {
            path: path.to_path_buf(),
            plugin_abi: format!("{major}.{minor}"),
            host_abi: host_abi(),
            help,
        });
    }
    // The least size of the plugin's own minor, not of ours: a 1.0 descriptor keeps
    // loading in a host whose descriptor grew (fields appended later are read only when
    // `struct_size` covers them).
    if size < descriptor_min_size(minor) {
        return Err(load_error(
            path,
            format!(
                "the descriptor is {size} bytes but ABI {major}.{minor} needs {}",
                descriptor_min_size(minor)
            ),
            "rebuild the plugin with `airgap_plugin_api::export_plugin!`",
        ));
    }
    Ok((major, minor))
}

/// One of the descriptor's strings (`what` names it in the error): NUL-terminated UTF-8.
fn descriptor_text(path: &Path, p: *const std::ffi::c_char, what: &str) -> Result<String, Error> {
    if p.is_null() {
        return Err(load_error(
            path,
            format!("the descriptor's {what} is null"),
            "rebuild the plugin",
        ));
    }
    // SAFETY: the ABI requires NUL-terminated static strings (the descriptor was checked).
    let s = unsafe { CStr::from_ptr(p) };
    s.to_str().map(str::to_string).map_err(|_| {
        load_error(
            path,
            format!("the descriptor's {what} is not UTF-8"),
            "rebuild the plugin",
        )
    })
}

/// Refuse files that are not ELF shared objects before `dlopen` sees them, with a message that
/// says what the file is instead.
fn check_is_shared_library(path: &Path) -> Result<(), String> {
    let mut head = [0u8; 18];
    let mut file = std::fs::File::open(path).map_err(|e| format!("cannot open: {e}"))?;
    let n = file
        .read(&mut head)
        .map_err(|e| format!("cannot read: {e}"))?;
    if n < 18 || head[..4] != *b"\x7fELF" {
        return Err("not a shared library (no ELF header)".to_string());
    }
    // e_type at offset 16 (little-endian on x86-64): 3 = ET_DYN.
    if u16::from_le_bytes([head[16], head[17]]) != 3 {
        return Err("an ELF file, but not a shared library".to_string());
    }
    Ok(())
}

/// The state the plugin's callbacks reach through their context pointer, and the table
/// itself. Leaked on purpose (a few hundred bytes per plugin call): a plugin may keep the
/// table and call it from a thread that outlives its call, and must then find a closed
/// context, never freed memory.
struct CallContext {
    table: HostCallbacks,
    /// `None` once the call returned.
    events: std::sync::Mutex<Option<mpsc::Sender<Event>>>,
    stop: Arc<AtomicBool>,
}

// SAFETY: the table's raw context pointer points to this very (leaked, immutable) value;
// the rest is a mutex and an atomic.
unsafe impl Send for CallContext {}
// SAFETY: as above.
unsafe impl Sync for CallContext {}

impl CallContext {
    /// A context for one call, never freed; `pages` adds the ABI 1.1 `earlier_page`.
    fn leak(events: mpsc::Sender<Event>, stop: Arc<AtomicBool>, pages: bool) -> &'static Self {
        let context: &'static mut CallContext = Box::leak(Box::new(CallContext {
            table: HostCallbacks {
                struct_size: std::mem::size_of::<HostCallbacks>() as u32,
                context: std::ptr::null_mut(),
                log: Some(log_callback),
                progress: Some(progress_callback),
                is_cancelled: Some(cancelled_callback),
                earlier_page: if pages {
                    Some(earlier_page_callback)
                } else {
                    None
                },
            },
            events: std::sync::Mutex::new(Some(events)),
            stop,
        }));
        context.table.context = context as *mut CallContext as *mut c_void;
        context
    }

    fn callbacks(&self) -> *const HostCallbacks {
        &self.table
    }

    /// Send to the calling thread, unless the call is over.
    fn send(&self, event: Event) -> bool {
        let events = self.events.lock().unwrap_or_else(|e| e.into_inner());
        events.as_ref().is_some_and(|tx| tx.send(event).is_ok())
    }

    /// The call returned: later callbacks do nothing.
    fn close(&self) {
        *self.events.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }
}

fn text_from(msg: *const u8, len: usize) -> String {
    if msg.is_null() || len == 0 {
        return String::new();
    }
    // SAFETY: the plugin passes a valid (pointer, length) pair for the duration of the call.
    let bytes = unsafe { std::slice::from_raw_parts(msg, len) };
    String::from_utf8_lossy(bytes).into_owned()
}

unsafe extern "C" fn log_callback(context: *mut c_void, level: u32, msg: *const u8, len: usize) {
    // Never unwind into the plugin.
    let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        // SAFETY: context is the CallContext of the running call.
        let ctx = unsafe { &*(context as *const CallContext) };
        let level = match level {
            0 => Level::Debug,
            2 => Level::Warn,
            _ => Level::Info,
        };
        ctx.send(Event::Log(level, text_from(msg, len)));
    }));
}

unsafe extern "C" fn progress_callback(
    context: *mut c_void,
    done: u64,
    total: u64,
    msg: *const u8,
    len: usize,
) {
    let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        // SAFETY: as in log_callback.
        let ctx = unsafe { &*(context as *const CallContext) };
        ctx.send(Event::Progress {
            done,
            total,
            text: text_from(msg, len),
        });
    }));
}

unsafe extern "C" fn cancelled_callback(context: *mut c_void) -> bool {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        // SAFETY: as in log_callback.
        let ctx = unsafe { &*(context as *const CallContext) };
        ctx.stop.load(Ordering::Relaxed)
    }))
    .unwrap_or(false)
}

/// ABI 1.1 `earlier_page`: ask the calling thread (which holds the plan) for the page and hand
/// it to the plugin's `sink` while the bytes live here. Refused after the call returned.
unsafe extern "C" fn earlier_page_callback(
    context: *mut c_void,
    which: u32,
    start: u64,
    max: u64,
    sink: Option<EarlierSink>,
    sink_context: *mut c_void,
) -> i32 {
    // Without a sink there is nowhere to put the answer, not even the error.
    let Some(sink) = sink else {
        return STATUS_ERROR;
    };
    let answer = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        // SAFETY: as in log_callback.
        let ctx = unsafe { &*(context as *const CallContext) };
        let (reply, answer) = mpsc::sync_channel(1);
        if !ctx.send(Event::Page {
            which,
            start,
            max,
            reply,
        }) {
            return Err("earlier_page was called after contribute returned".to_owned());
        }
        answer
            .recv()
            .unwrap_or_else(|_| Err("earlier_page was called after contribute returned".to_owned()))
    }))
    .unwrap_or_else(|_| Err("internal: the host failed to make the page".to_owned()));
    let (status, bytes) = match answer {
        Ok(page) => (STATUS_OK, page),
        Err(message) => (STATUS_ERROR, message.into_bytes()),
    };
    // SAFETY: the plugin passed `sink` and its context for this call; the bytes live until
    // it returns.
    unsafe { sink(sink_context, bytes.as_ptr(), bytes.len()) };
    status
}

#[cfg(test)]
mod tests {
    use super::*;

    unsafe extern "C" fn keep(context: *mut c_void, bytes: *const u8, len: usize) {
        // SAFETY: the test's own String; the host's bytes for this call.
        let out = unsafe { &mut *(context as *mut String) };
        out.push_str(&text_from(bytes, len));
    }

    /// A plugin that kept the table and calls it once its call returned (from a thread it
    /// left running) gets an error and a message, never freed memory or a hang.
    #[test]
    fn a_page_asked_for_after_the_call_returned_is_refused() {
        let (events, inbox) = mpsc::channel::<Event>();
        let context = CallContext::leak(events, Arc::new(AtomicBool::new(false)), true);
        context.close();
        drop(inbox);
        let page = context.table.earlier_page.expect("a paging table");
        let mut answer = String::new();
        // SAFETY: the leaked table's own context; our sink and its String.
        let status = unsafe {
            page(
                context.table.context,
                0,
                0,
                10,
                Some(keep),
                &mut answer as *mut String as *mut c_void,
            )
        };
        assert_eq!(status, STATUS_ERROR);
        assert_eq!(answer, "earlier_page was called after contribute returned");
    }

    /// Only a Finish-stage plugin gets `earlier_page`, and only in a paging call.
    #[test]
    fn a_table_without_paging_has_no_earlier_page() {
        let (events, _inbox) = mpsc::channel::<Event>();
        let context = CallContext::leak(events, Arc::new(AtomicBool::new(false)), false);
        assert!(context.table.earlier_page.is_none());
        assert_eq!(
            context.table.struct_size as usize,
            std::mem::size_of::<HostCallbacks>()
        );
    }
}
