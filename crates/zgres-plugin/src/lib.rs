//! The C-ABI plugin interface of zgres: in-process plugins are shared libraries (Rust
//! `cdylib`s, or anything speaking this ABI) that take JSON bytes and return JSON bytes.
//!
//! - Plugin side: write `fn handle(input: &[u8]) -> Result<Vec<u8>, String>` and call
//!   [`export_plugin!`]; no `unsafe` needed. Panics are caught inside the plugin and reported as
//!   errors; they never unwind into the host.
//! - Host side: [`LoadedPlugin::load`] opens the library, checks the ABI version and the vtable
//!   size *before* calling anything else, and [`LoadedPlugin::call`] hands over JSON.
//!
//! # The ABI (version 1)
//!
//! The library exports `zgres_plugin_entry: extern "C" fn() -> *const PluginVTable`, returning a
//! pointer to a static [`PluginVTable`] that starts with a [`VTableHeader`]. The host reads the
//! header first; the rest only when `abi_version` matches and `struct_size` is large enough.
//! `call` writes a buffer the plugin allocated into `*output`; the host hands it back to the
//! plugin's `free` when done, so each side frees only its own allocations.
//!
//! This is the only zgres crate with `unsafe`; every block says why it is sound.

use std::ffi::{c_char, CStr};
use std::path::{Path, PathBuf};

/// The ABI version this build speaks.
pub const ABI_VERSION: u32 = 1;

/// Name of the entry symbol every plugin exports.
pub const ENTRY_SYMBOL: &[u8] = b"zgres_plugin_entry";

/// `call` succeeded; the output is the plugin's JSON answer.
pub const STATUS_OK: i32 = 0;
/// The plugin reported an error; the output is a UTF-8 message.
pub const STATUS_ERROR: i32 = 1;
/// The plugin panicked; the output is the panic message.
pub const STATUS_PANIC: i32 = 2;

/// The first fields of every vtable, whatever its version: enough to decide whether the rest
/// can be read.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct VTableHeader {
    /// [`ABI_VERSION`] of the plugin.
    pub abi_version: u32,
    /// `size_of::<PluginVTable>()` as the plugin was built.
    pub struct_size: u32,
}

/// A buffer allocated by the plugin, returned by `call`.
#[repr(C)]
#[derive(Debug)]
pub struct PluginBuffer {
    /// Start of the bytes (null when empty).
    pub ptr: *mut u8,
    /// Number of bytes.
    pub len: usize,
    /// Allocation capacity, for the plugin's `free`.
    pub capacity: usize,
}

/// The function table a plugin exports.
#[repr(C)]
pub struct PluginVTable {
    /// Version and size, read first.
    pub header: VTableHeader,
    /// NUL-terminated plugin name, valid for the life of the library.
    pub name: *const c_char,
    /// Handles one request: reads `input_len` bytes at `input`, writes its answer into
    /// `*output`, returns a `STATUS_*`.
    pub call:
        unsafe extern "C" fn(input: *const u8, input_len: usize, output: *mut PluginBuffer) -> i32,
    /// Frees a buffer `call` returned.
    pub free: unsafe extern "C" fn(buffer: PluginBuffer),
}

/// A vtable in a `static`: it only holds pointers to immutable `'static` data and functions.
#[repr(transparent)]
pub struct ExportedVTable(pub PluginVTable);

// SAFETY: the vtable is immutable after construction and its pointers refer to `'static`
// read-only data (the name) and to functions; sharing it between threads is sound.
unsafe impl Sync for ExportedVTable {}

/// What a plugin implements; [`export_plugin!`] writes the impl.
pub trait Handler {
    /// The plugin's name.
    const NAME: &'static CStr;
    /// Handles one JSON request.
    fn handle(input: &[u8]) -> Result<Vec<u8>, String>;
}

impl ExportedVTable {
    /// The vtable for handler `H` at this build's ABI version.
    pub const fn new<H: Handler>() -> Self {
        Self::with_abi_version::<H>(ABI_VERSION)
    }

    /// The vtable for `H` claiming `abi_version` (for testing hosts against other versions).
    #[doc(hidden)]
    pub const fn with_abi_version<H: Handler>(abi_version: u32) -> Self {
        ExportedVTable(PluginVTable {
            header: VTableHeader {
                abi_version,
                struct_size: std::mem::size_of::<PluginVTable>() as u32,
            },
            name: H::NAME.as_ptr(),
            call: call_trampoline::<H>,
            free: free_buffer,
        })
    }
}

fn into_buffer(bytes: Vec<u8>) -> PluginBuffer {
    let mut bytes = std::mem::ManuallyDrop::new(bytes);
    PluginBuffer {
        ptr: bytes.as_mut_ptr(),
        len: bytes.len(),
        capacity: bytes.capacity(),
    }
}

/// The `call` entry of every Rust plugin: runs `H::handle` with panics caught.
///
/// # Safety
/// `input` must point to `input_len` readable bytes (or be null with length 0), and `output`
/// to a writable [`PluginBuffer`].
pub unsafe extern "C" fn call_trampoline<H: Handler>(
    input: *const u8,
    input_len: usize,
    output: *mut PluginBuffer,
) -> i32 {
    let bytes: &[u8] = if input.is_null() || input_len == 0 {
        &[]
    } else {
        // SAFETY: the caller guarantees `input` points to `input_len` readable bytes that stay
        // valid for this call.
        unsafe { std::slice::from_raw_parts(input, input_len) }
    };
    let result = std::panic::catch_unwind(|| H::handle(bytes));
    let (status, answer) = match result {
        Ok(Ok(answer)) => (STATUS_OK, answer),
        Ok(Err(message)) => (STATUS_ERROR, message.into_bytes()),
        Err(panic) => {
            let message = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "panic with a non-string payload".into());
            (STATUS_PANIC, message.into_bytes())
        }
    };
    if output.is_null() {
        return status;
    }
    // SAFETY: the caller guarantees `output` points to a writable PluginBuffer.
    unsafe { output.write(into_buffer(answer)) };
    status
}

/// The `free` entry of every Rust plugin.
///
/// # Safety
/// `buffer` must come from this library's `call` and not have been freed before.
pub unsafe extern "C" fn free_buffer(buffer: PluginBuffer) {
    if !buffer.ptr.is_null() {
        // SAFETY: the buffer was made by `into_buffer` from a Vec of this allocator with exactly
        // this pointer, length and capacity, and is freed once.
        drop(unsafe { Vec::from_raw_parts(buffer.ptr, buffer.len, buffer.capacity) });
    }
}

/// Exports a plugin: `export_plugin!("name", handler)` with
/// `fn handler(input: &[u8]) -> Result<Vec<u8>, String>`.
#[macro_export]
macro_rules! export_plugin {
    ($name:literal, $handler:path) => {
        $crate::__export_plugin_with_abi!($name, $handler, $crate::ABI_VERSION);
    };
}

/// [`export_plugin!`] with a chosen ABI version; for testing hosts only.
#[doc(hidden)]
#[macro_export]
macro_rules! __export_plugin_with_abi {
    ($name:literal, $handler:path, $abi:expr) => {
        struct ZgresPluginHandler;
        impl $crate::Handler for ZgresPluginHandler {
            const NAME: &'static ::std::ffi::CStr =
                match ::std::ffi::CStr::from_bytes_with_nul(concat!($name, "\0").as_bytes()) {
                    Ok(name) => name,
                    Err(_) => panic!("plugin names cannot contain NUL"),
                };
            fn handle(input: &[u8]) -> Result<Vec<u8>, String> {
                $handler(input)
            }
        }
        static ZGRES_PLUGIN_VTABLE: $crate::ExportedVTable =
            $crate::ExportedVTable::with_abi_version::<ZgresPluginHandler>($abi);
        /// The zgres plugin entry point.
        #[no_mangle]
        pub extern "C" fn zgres_plugin_entry() -> *const $crate::PluginVTable {
            &ZGRES_PLUGIN_VTABLE.0
        }
    };
}

/// A plugin could not be loaded or called.
#[derive(Debug, thiserror::Error)]
pub enum PluginError {
    /// The library could not be opened or lacks the entry symbol.
    #[error("plugin {path}: {message}")]
    Load {
        /// The library.
        path: PathBuf,
        /// Why.
        message: String,
    },
    /// The library speaks another ABI version or has a smaller vtable. Permanent.
    #[error("plugin {path}: ABI version {found} with a {size}-byte vtable; this zgres needs ABI version {ABI_VERSION} with at least {needed} bytes")]
    Incompatible {
        /// The library.
        path: PathBuf,
        /// Its ABI version.
        found: u32,
        /// Its vtable size.
        size: u32,
        /// The vtable size this build needs.
        needed: usize,
    },
    /// The plugin returned an error (retryable at the caller's discretion).
    #[error("plugin {name}: {message}")]
    Failed {
        /// The plugin.
        name: String,
        /// Its message.
        message: String,
    },
    /// The plugin panicked (caught inside it).
    #[error("plugin {name} panicked: {message}")]
    Panicked {
        /// The plugin.
        name: String,
        /// The panic message.
        message: String,
    },
}

/// A loaded plugin library.
pub struct LoadedPlugin {
    vtable: &'static PluginVTable,
    name: String,
    // Keeps the code the vtable points into mapped; dropped last.
    _library: libloading::Library,
}

impl std::fmt::Debug for LoadedPlugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoadedPlugin")
            .field("name", &self.name)
            .finish()
    }
}

impl LoadedPlugin {
    /// Opens the library at `path` and checks its ABI before anything else is called.
    ///
    /// Loading runs the library's initialisers: only load plugins you trust, as you would any
    /// code run by the daemon.
    ///
    /// # Errors
    /// [`PluginError::Load`] when it cannot be opened or has no entry symbol;
    /// [`PluginError::Incompatible`] for another ABI version or a too-small vtable.
    pub fn load(path: &Path) -> Result<Self, PluginError> {
        let load_error = |message: String| PluginError::Load {
            path: path.to_owned(),
            message,
        };
        // SAFETY: opening a library runs its initialisers; the operator configured this path as
        // a zgres plugin, which is the trust decision (documented above).
        let library =
            unsafe { libloading::Library::new(path) }.map_err(|e| load_error(e.to_string()))?;
        // SAFETY: the symbol is declared with the signature every zgres plugin exports; a
        // library exporting the name with another type is not a zgres plugin, and the header
        // check below is the first thing that reads what it returns.
        let entry: libloading::Symbol<'_, unsafe extern "C" fn() -> *const PluginVTable> =
            unsafe { library.get(ENTRY_SYMBOL) }.map_err(|e| load_error(e.to_string()))?;
        // SAFETY: calling the entry point has no preconditions.
        let raw = unsafe { entry() };
        if raw.is_null() {
            return Err(load_error("entry point returned null".into()));
        }
        // SAFETY: every ABI version starts with a VTableHeader, so reading just the header is
        // valid whatever the version.
        let header = unsafe { raw.cast::<VTableHeader>().read() };
        let needed = std::mem::size_of::<PluginVTable>();
        if header.abi_version != ABI_VERSION || (header.struct_size as usize) < needed {
            return Err(PluginError::Incompatible {
                path: path.to_owned(),
                found: header.abi_version,
                size: header.struct_size,
                needed,
            });
        }
        // SAFETY: the header says this is a version-1 vtable of sufficient size, in a static
        // of the library, which stays loaded as long as `self` (it owns the Library).
        let vtable: &'static PluginVTable = unsafe { &*raw };
        // SAFETY: the ABI requires `name` to be a NUL-terminated string valid while loaded.
        let name = unsafe { CStr::from_ptr(vtable.name) }
            .to_string_lossy()
            .into_owned();
        Ok(LoadedPlugin {
            vtable,
            name,
            _library: library,
        })
    }

    /// The plugin's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Calls the plugin with `input` and returns its answer. Blocks the calling thread for as
    /// long as the plugin runs (run it on a blocking thread from async code).
    ///
    /// # Errors
    /// [`PluginError::Failed`] or [`PluginError::Panicked`].
    pub fn call(&self, input: &[u8]) -> Result<Vec<u8>, PluginError> {
        let mut buffer = PluginBuffer {
            ptr: std::ptr::null_mut(),
            len: 0,
            capacity: 0,
        };
        // SAFETY: `input` is a live slice for the duration of the call and `buffer` a writable
        // PluginBuffer, as the ABI requires.
        let status = unsafe { (self.vtable.call)(input.as_ptr(), input.len(), &mut buffer) };
        let answer = if buffer.ptr.is_null() {
            Vec::new()
        } else {
            // SAFETY: the plugin filled `buffer` with `len` initialised bytes it owns until we
            // hand it back to its `free` below.
            unsafe { std::slice::from_raw_parts(buffer.ptr, buffer.len) }.to_vec()
        };
        if !buffer.ptr.is_null() {
            // SAFETY: the buffer came from this plugin's `call` and is freed exactly once.
            unsafe { (self.vtable.free)(buffer) };
        }
        match status {
            STATUS_OK => Ok(answer),
            STATUS_PANIC => Err(PluginError::Panicked {
                name: self.name.clone(),
                message: String::from_utf8_lossy(&answer).into_owned(),
            }),
            _ => Err(PluginError::Failed {
                name: self.name.clone(),
                message: String::from_utf8_lossy(&answer).into_owned(),
            }),
        }
    }
}

// SAFETY: the vtable is immutable static data and the ABI requires `call` to be callable from
// any thread (Rust plugins made with `export_plugin!` are: handlers are plain functions).
unsafe impl Send for LoadedPlugin {}
// SAFETY: as above; `call` takes `&self` and shares nothing mutable.
unsafe impl Sync for LoadedPlugin {}
