//! The driver on Windows: installing our package into the driver store when it is missing or
//! older, removing it, and the version of the one running.
//!
//! What wintun.dll does, observably (api/driver.c, 0.14), with our identity: the package (the
//! .sys, .inf and .cat of the machine's architecture) comes from the caller, which for oxtun.dll
//! is its own resources; it is compared by the INF's DriverVer with the packages of our hardware
//! ID in the store; it is copied to a private folder and added with SetupCopyOEMInfW. Existing
//! devices, ours or anyone's, are never disabled, updated or removed here: a new adapter takes
//! the newest package in the store.

use std::ptr::{null, null_mut};
use std::sync::OnceLock;

use windows_sys::Wdk::System::SystemInformation::{
    NtQuerySystemInformation, SYSTEM_INFORMATION_CLASS,
};
use windows_sys::Win32::Devices::DeviceAndDriverInstallation::{
    SP_DRVINFO_DATA_V2_W, SP_DRVINFO_DETAIL_DATA_W, SPDIT_COMPATDRIVER, SPOST_NONE,
    SetupCopyOEMInfW, SetupDiBuildDriverInfoList, SetupDiEnumDriverInfoW,
    SetupDiGetDriverInfoDetailW, SetupUninstallOEMInfW,
};
use windows_sys::Win32::Foundation::{
    ERROR_FILE_NOT_FOUND, ERROR_NO_MORE_ITEMS, RtlNtStatusToDosError,
};
use windows_sys::Win32::Storage::FileSystem::{
    GetFileVersionInfoSizeW, GetFileVersionInfoW, VS_FIXEDFILEINFO, VerQueryValueW,
};

use super::lock::InstallationLock;
use super::rules::{Embedded, Installation, globalroot_path, installation, loaded_module_path};
use super::system::{DeviceList, Plain, failed, from_wide, last_failed, private_folder, wide};
use crate::{Error, Version, log};

/// The hardware ID in our INF (wintun.inx), which every adapter of ours carries.
pub const HARDWARE_ID: &str = "OxTun";
/// The kernel image's file name.
const DRIVER_FILE: &str = "oxtun.sys";

/// A driver package for the machine's architecture. The catalog is optional here because it
/// can only be made on Windows (inf2cat): without one, installing fails with a logged error.
#[derive(Clone, Copy)]
pub struct DriverPackage {
    pub sys: &'static [u8],
    pub inf: &'static [u8],
    pub cat: Option<&'static [u8]>,
}

static PACKAGE: OnceLock<DriverPackage> = OnceLock::new();

/// Sets the package [`Adapter::create`](super::Adapter::create) installs when the system has no
/// driver of ours or an older one. The first call wins.
pub fn register_driver_package(package: DriverPackage) {
    let _ = PACKAGE.set(package);
}

/// DriverVer = MM/DD/YYYY,A.B.C.D in the INF's [Version] section, as (date, version) numbers
/// that order as Windows orders packages: by date, then by version.
fn inf_driver_version(inf: &[u8]) -> Option<(u32, u64)> {
    let text = String::from_utf8_lossy(inf);
    let mut in_version = false;
    for line in text.lines() {
        let line = line.split(';').next().unwrap_or("").trim();
        if line.starts_with('[') {
            in_version = line.eq_ignore_ascii_case("[Version]");
            continue;
        }
        let Some((key, value)) = line.split_once('=') else {
            continue;
        };
        if !in_version || !key.trim().eq_ignore_ascii_case("DriverVer") {
            continue;
        }
        let (date, version) = value.trim().split_once(',')?;
        let date: Vec<u32> = date
            .trim()
            .split('/')
            .map(|part| part.parse().ok())
            .collect::<Option<_>>()?;
        let [month @ 1..=12, day @ 1..=31, year] = date[..] else {
            return None;
        };
        let parts: Vec<u64> = version
            .trim()
            .split('.')
            .map(|part| part.parse().ok().filter(|&part| part <= 0xFFFF))
            .collect::<Option<_>>()?;
        let version = parts
            .iter()
            .chain(std::iter::repeat(&0))
            .take(4)
            .fold(0u64, |all, part| all << 16 | part);
        return Some((year * 10_000 + month * 100 + day, version));
    }
    None
}

/// A FILETIME's date as YYYYMMDD.
fn filetime_date(filetime: windows_sys::Win32::Foundation::FILETIME) -> u32 {
    let ticks = (u64::from(filetime.dwHighDateTime) << 32) | u64::from(filetime.dwLowDateTime);
    let days = (ticks / 10_000_000 / 86_400) as i64 - 134_774; // 1601-01-01 to 1970-01-01
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year * 10_000 + month * 100 + day) as u32
}

/// A package of ours in the driver store.
struct InstalledPackage {
    /// The INF's name in the store (oemNN.inf), NUL-terminated.
    inf_name: Vec<u16>,
    /// (date, version), as `inf_driver_version` gives them.
    version: (u32, u64),
}

/// The packages of our hardware ID in the driver store.
fn installed_packages() -> Result<Vec<InstalledPackage>, Error> {
    let list = DeviceList::new_net()?;
    // An element never registered, only to ask which drivers match our ID.
    let mut device = list.new_element(HARDWARE_ID)?;
    // SAFETY: builds the list of drivers in the store compatible with the element.
    if unsafe { SetupDiBuildDriverInfoList(list.0, &mut device, SPDIT_COMPATDRIVER) } == 0 {
        return Err(last_failed("Failed to list the drivers in the store"));
    }
    let mut packages = Vec::new();
    for index in 0.. {
        let mut driver = SP_DRVINFO_DATA_V2_W {
            cbSize: size_of::<SP_DRVINFO_DATA_V2_W>() as u32,
            ..Plain::zeroed()
        };
        // SAFETY: enumerates the list built above into our structure.
        if unsafe {
            SetupDiEnumDriverInfoW(list.0, &device, SPDIT_COMPATDRIVER, index, &mut driver)
        } == 0
        {
            // SAFETY: reads this thread's last-error value.
            if unsafe { windows_sys::Win32::Foundation::GetLastError() } == ERROR_NO_MORE_ITEMS {
                break;
            }
            continue;
        }
        // The detail structure is followed by its hardware IDs: room for a few.
        let mut detail = vec![0u64; 0x2000 / 8];
        let header = detail.as_mut_ptr().cast::<SP_DRVINFO_DETAIL_DATA_W>();
        // SAFETY: the buffer is 8-aligned, zeroed and large enough for the fixed part.
        unsafe { (*header).cbSize = size_of::<SP_DRVINFO_DETAIL_DATA_W>() as u32 };
        let mut needed = 0u32;
        // SAFETY: our buffer of 0x2000 bytes.
        if unsafe {
            SetupDiGetDriverInfoDetailW(list.0, &device, &driver, header, 0x2000, &mut needed)
        } == 0
        {
            log::warn("Failed to read a driver's details; skipped");
            continue;
        }
        // SAFETY: filled by the call above.
        let inf_path = unsafe { (*header).InfFileName };
        let path: Vec<u16> = inf_path
            .iter()
            .copied()
            .take_while(|&unit| unit != 0)
            .collect();
        let name_start = path
            .iter()
            .rposition(|&unit| unit == u16::from(b'\\'))
            .map_or(0, |slash| slash + 1);
        let mut inf_name = path[name_start..].to_vec();
        inf_name.push(0);
        packages.push(InstalledPackage {
            inf_name,
            version: (filetime_date(driver.DriverDate), driver.DriverVersion),
        });
    }
    Ok(packages)
}

/// Installs the registered package unless the store has ours at that version or newer
/// (`rules::installation`).
pub fn ensure_installed(_lock: &InstallationLock) -> Result<(), Error> {
    let installed = installed_packages()?;
    let store: Vec<_> = installed.iter().map(|package| package.version).collect();
    let package = PACKAGE.get();
    let embedded = match package {
        None => Embedded::Nothing,
        Some(package) => match inf_driver_version(package.inf) {
            None => Embedded::BadInf,
            Some(version) => Embedded::Package {
                version,
                catalog: package.cat.is_some(),
            },
        },
    };
    let then_remove = match installation(&store, embedded) {
        Installation::Installed(version) => {
            log::info(&format!(
                "Driver {}.{}.{}.{} already installed",
                version.1 >> 48,
                (version.1 >> 32) & 0xFFFF,
                (version.1 >> 16) & 0xFFFF,
                version.1 & 0xFFFF
            ));
            return Ok(());
        }
        Installation::NoDriver => {
            log::error("No driver of ours is installed and no package was given to install");
            return Err(Error::NotFound);
        }
        Installation::BadInf => {
            log::error("The embedded INF has no valid DriverVer");
            return Err(Error::NotFound);
        }
        Installation::NoCatalog => {
            log::error(
                "This oxtun.dll carries no catalog (oxtun.cat), which Windows needs to install \
                 the driver: it was built without one (inf2cat runs on Windows only; see the \
                 README)",
            );
            return Err(failed("Failed to install the driver", ERROR_FILE_NOT_FOUND));
        }
        Installation::Install { then_remove } => then_remove,
    };
    let package = package.expect("installation() installs only the package it was given");
    let cat = package
        .cat
        .expect("installation() installs only a package with a catalog");
    let directory = private_folder()?;
    let result = (|| {
        log::info("Extracting the driver package");
        for (name, bytes) in [
            ("oxtun.sys", package.sys),
            ("oxtun.inf", package.inf),
            ("oxtun.cat", cat),
        ] {
            std::fs::write(directory.join(name), bytes).map_err(|error| {
                failed(
                    &format!("Failed to write {name}"),
                    error.raw_os_error().unwrap_or(0) as u32,
                )
            })?;
        }
        log::info("Installing the driver");
        let inf = wide(&directory.join("oxtun.inf").to_string_lossy());
        // SAFETY: a NUL-terminated path; no output buffers.
        if unsafe {
            SetupCopyOEMInfW(
                inf.as_ptr(),
                null(),
                SPOST_NONE,
                0,
                null_mut(),
                0,
                null_mut(),
                null_mut(),
            )
        } == 0
        {
            return Err(last_failed("Failed to add the driver to the store"));
        }
        Ok(())
    })();
    let _ = std::fs::remove_dir_all(&directory);
    result?;
    // Older packages of ours stay only while devices use them: removal refuses those.
    for older in then_remove.into_iter().map(|index| &installed[index]) {
        // SAFETY: a NUL-terminated INF name from the store.
        if unsafe { SetupUninstallOEMInfW(older.inf_name.as_ptr(), 0, null()) } != 0 {
            log::info(&format!(
                "Removed the older driver {}",
                from_wide(&older.inf_name)
            ));
        }
    }
    Ok(())
}

/// Removes our packages from the store; Windows refuses one that devices still use
/// (ERROR_INF_IN_USE_BY_DEVICES), which is then the answer.
pub fn delete_driver() -> Result<(), Error> {
    let lock = InstallationLock::take()?;
    super::adapter::remove_orphans(&lock);
    let mut result = Ok(());
    for InstalledPackage { inf_name, .. } in installed_packages()? {
        log::info(&format!("Removing driver {}", from_wide(&inf_name)));
        // SAFETY: a NUL-terminated INF name from the store.
        if unsafe { SetupUninstallOEMInfW(inf_name.as_ptr(), 0, null()) } == 0 {
            let error = last_failed(&format!("Failed to remove driver {}", from_wide(&inf_name)));
            if result.is_ok() {
                result = Err(error);
            }
        }
    }
    result
}

/// SystemModuleInformation: the loaded kernel modules (RTL_PROCESS_MODULES), as wintun.dll's
/// api/ntdll.h declares it; windows-sys does not name this class.
const SYSTEM_MODULE_INFORMATION: SYSTEM_INFORMATION_CLASS = 11;
/// STATUS_INFO_LENGTH_MISMATCH: the buffer is too small for the list.
const STATUS_INFO_LENGTH_MISMATCH: i32 = 0xC000_0004_u32 as i32;

/// The version in the file version resource of the loaded oxtun.sys: the driver's own, which
/// also answers OID_GEN_VENDOR_DRIVER_VERSION. [`Error::NotFound`] when it is not loaded. The
/// module is found by its name in SystemModuleInformation and read through its NT path, as
/// wintun.dll does (api/driver.c): no image base is needed, which Windows 11 24H2 hides from
/// callers without SeDebugPrivilege enabled (the review, finding 2).
pub fn driver_version() -> Result<Version, Error> {
    match loaded_module_path(&loaded_modules()?, size_of::<usize>(), DRIVER_FILE) {
        Some(nt_path) => file_version(&globalroot_path(&nt_path)),
        None => Err(Error::NotFound),
    }
}

/// NtQuerySystemInformation(SystemModuleInformation)'s answer, in a buffer grown until it fits.
fn loaded_modules() -> Result<Vec<u8>, Error> {
    let mut modules = vec![0u8; 64 * 1024];
    loop {
        let mut needed = 0u32;
        // SAFETY: our buffer and its length; the call writes at most that much.
        let status = unsafe {
            NtQuerySystemInformation(
                SYSTEM_MODULE_INFORMATION,
                modules.as_mut_ptr().cast(),
                modules.len() as u32,
                &mut needed,
            )
        };
        match status {
            0 => return Ok(modules),
            STATUS_INFO_LENGTH_MISMATCH if modules.len() < 64 << 20 => {
                modules = vec![0u8; (needed as usize).max(modules.len() * 2)];
            }
            _ => {
                // SAFETY: converts a status code; no memory involved.
                let code = unsafe { RtlNtStatusToDosError(status) };
                return Err(failed("Failed to list the loaded drivers", code));
            }
        }
    }
}

fn file_version(path: &str) -> Result<Version, Error> {
    let path = wide(path);
    let mut ignored = 0u32;
    // SAFETY: a NUL-terminated path.
    let size = unsafe { GetFileVersionInfoSizeW(path.as_ptr(), &mut ignored) };
    if size == 0 {
        return Err(last_failed("Failed to read the driver's version resource"));
    }
    let mut data = vec![0u8; size as usize];
    // SAFETY: our buffer of the size asked for.
    if unsafe { GetFileVersionInfoW(path.as_ptr(), 0, size, data.as_mut_ptr().cast()) } == 0 {
        return Err(last_failed("Failed to read the driver's version resource"));
    }
    let mut fixed: *mut core::ffi::c_void = null_mut();
    let mut fixed_len = 0u32;
    let root = wide("\\");
    // SAFETY: queries the fixed part of the resource we read; it points into `data`.
    if unsafe {
        VerQueryValueW(
            data.as_ptr().cast(),
            root.as_ptr(),
            &mut fixed,
            &mut fixed_len,
        )
    } == 0
        || (fixed_len as usize) < size_of::<VS_FIXEDFILEINFO>()
    {
        return Err(failed(
            "The driver has no fixed file version",
            ERROR_FILE_NOT_FOUND,
        ));
    }
    // SAFETY: VerQueryValueW gave a VS_FIXEDFILEINFO inside `data`, which is alive.
    let info = unsafe { fixed.cast::<VS_FIXEDFILEINFO>().read_unaligned() };
    Ok(Version::from_dword(info.dwFileVersionMS))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn driver_ver_orders_by_date_then_version() {
        let inf = b"; comment\n[Version]\nSignature=\"$Windows NT$\"\nDriverVer = 12/01/2026,0.1.0.0\n[Other]\nDriverVer=01/01/2030,9.9\n";
        assert_eq!(inf_driver_version(inf), Some((20261201, 1 << 32)));
        assert_eq!(
            inf_driver_version(b"[Version]\nDriverVer=13/01/2026,1.0"),
            None
        );
        assert_eq!(
            inf_driver_version(b"[Other]\nDriverVer=12/01/2026,1.0"),
            None
        );
    }

    #[test]
    fn filetime_dates_are_civil_dates() {
        // 2026-12-01 00:00 UTC: 1796083200 s after 1970.
        let ticks = (1_796_083_200u64 + 11_644_473_600) * 10_000_000;
        let filetime = windows_sys::Win32::Foundation::FILETIME {
            dwLowDateTime: ticks as u32,
            dwHighDateTime: (ticks >> 32) as u32,
        };
        assert_eq!(filetime_date(filetime), 20261201);
    }

    /// The module list as a real implementation gives it (Wine's, under scripts/wine.sh): the
    /// kernel is in it, found by name with this process's layout (64- or 32-bit).
    #[test]
    fn the_kernel_is_found_in_the_loaded_module_list() {
        let modules = loaded_modules().unwrap();
        let kernel = loaded_module_path(&modules, size_of::<usize>(), "ntoskrnl.exe");
        assert!(
            kernel
                .as_deref()
                .is_some_and(|path| path.ends_with("ntoskrnl.exe")),
            "{kernel:?}"
        );
    }
}
