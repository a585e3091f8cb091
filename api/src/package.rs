//! The driver package oxtun.dll carries as resources (build.rs embeds them): the .sys, .inf and
//! .cat of each architecture it may run on, named ARCH_OXTUN_SYS, ARCH_OXTUN_INF and
//! ARCH_OXTUN_CAT (ARCH: AMD64, ARM64). The one for the machine's own architecture (not the
//! process's: a 32-bit process on 64-bit Windows needs the 64-bit driver) goes to the client
//! crate, which installs it when needed. The x86 DLL also carries the x64 DLL, built without a
//! package, as AMD64_OXTUN_WOW64_HELPER: the native helper with which a 32-bit process removes
//! devices (oxtun_client's wow64 module).

use std::ffi::c_void;
use std::ptr::null_mut;
use std::sync::Once;

use oxtun_client::{DriverPackage, log, register_driver_package};
use windows_sys::Win32::Foundation::HMODULE;
use windows_sys::Win32::System::LibraryLoader::{
    FindResourceW, GET_MODULE_HANDLE_EX_FLAG_FROM_ADDRESS,
    GET_MODULE_HANDLE_EX_FLAG_UNCHANGED_REFCOUNT, GetModuleHandleExW, LoadResource, LockResource,
    SizeofResource,
};
use windows_sys::Win32::System::SystemInformation::{
    IMAGE_FILE_MACHINE_AMD64, IMAGE_FILE_MACHINE_ARM64,
};

/// RT_RCDATA.
const RT_RCDATA: *const u16 = 10 as *const u16;

/// This DLL's module.
fn this_module() -> Option<HMODULE> {
    let mut module: HMODULE = null_mut();
    // SAFETY: asks for the module containing this function, without taking a reference.
    let found = unsafe {
        GetModuleHandleExW(
            GET_MODULE_HANDLE_EX_FLAG_FROM_ADDRESS | GET_MODULE_HANDLE_EX_FLAG_UNCHANGED_REFCOUNT,
            this_module as *const c_void as *const u16,
            &mut module,
        )
    };
    (found != 0).then_some(module)
}

/// The bytes of the RCDATA resource `name` of `module`, which live as long as the module: as
/// long as this code can run.
fn resource(module: HMODULE, name: &str) -> Option<&'static [u8]> {
    let name: Vec<u16> = name.encode_utf16().chain([0]).collect();
    // SAFETY: our module and a NUL-terminated name.
    let found = unsafe { FindResourceW(module, name.as_ptr(), RT_RCDATA) };
    if found.is_null() {
        return None;
    }
    // SAFETY: a resource of our module: loading and locking it maps it for the module's life.
    unsafe {
        let size = SizeofResource(module, found) as usize;
        let data = LockResource(LoadResource(module, found));
        (!data.is_null()).then(|| std::slice::from_raw_parts(data.cast::<u8>(), size))
    }
}

/// The machine's architecture as the package folders name it.
fn native_architecture() -> &'static str {
    match oxtun_client::native_machine() {
        IMAGE_FILE_MACHINE_ARM64 => "ARM64",
        IMAGE_FILE_MACHINE_AMD64 => "AMD64",
        _ if cfg!(target_arch = "aarch64") => "ARM64",
        _ => "AMD64",
    }
}

/// Hands the embedded package for this machine, and in the x86 DLL the x64 one it removes
/// devices with from WOW64 (AMD64_OXTUN_WOW64_HELPER), to the client crate, once.
pub fn register_embedded() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let Some(module) = this_module() else {
            return;
        };
        #[cfg(target_arch = "x86")]
        if let Some(helper) = resource(module, "AMD64_OXTUN_WOW64_HELPER") {
            oxtun_client::register_wow64_helper(helper);
        }
        let architecture = native_architecture();
        let file = |kind: &str| resource(module, &format!("{architecture}_OXTUN_{kind}"));
        match (file("SYS"), file("INF")) {
            (Some(sys), Some(inf)) => register_driver_package(DriverPackage {
                sys,
                inf,
                cat: file("CAT"),
            }),
            _ => log::warn(&format!(
                "This oxtun.dll carries no driver package for {architecture}: it can only use \
                 a driver that is already installed"
            )),
        }
    });
}
