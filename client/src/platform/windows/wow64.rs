//! Device removal from a 32-bit process on 64-bit Windows (WOW64), through a native helper.
//!
//! There the class installer refuses to run: SetupDiCallClassInstaller fails with
//! ERROR_IN_WOW64 (learn.microsoft.com, SetupDiCallClassInstaller), and Microsoft's advice
//! ("Device Installations on 64-Bit Systems") is to start a 64-bit process for the call. wintun.dll does so (api/rundll32.c, 0.14): it carries a native
//! DLL and runs it with the native rundll32. So do we: the x86 oxtun.dll carries the x64 one as a
//! resource (api/build.rs), registered here by [`register_wow64_helper`]; a removal writes it to
//! a new folder that only SYSTEM and Administrators can write, and runs
//! `%WINDIR%\Sysnative\rundll32.exe "<dll>",OxtunWow64Helper remove <instance ID>` (Sysnative:
//! the name under which a WOW64 process reaches the native System32, learn.microsoft.com "File
//! System Redirector"). rundll32 looks for `<entry point>W` first and gives it the rest of its
//! command line in UTF-16 (Microsoft's Rundll32 documentation, KB164787; Wine's does the same):
//! here the DLL's `OxtunWow64HelperW` export, which is [`serve_wow64_helper`].
//!
//! The helper answers on its standard output in UTF-8 lines: `log <level> <timestamp> <text>`
//! for each message its logger gets, which we hand to ours as they were, then one
//! `result <Win32 error code>` (0 for success). Only devices of our hardware ID are removed:
//! the helper checks the ID itself, since anyone may run it.
//!
//! Everything else works from WOW64 as it is: SwDeviceCreate, SetupCopyOEMInfW and
//! SetupUninstallOEMInfW are what wintun.dll also calls directly there (its rundll32.c routes only
//! removal, enabling, disabling and Windows 7's creation); the running driver's file lies in
//! the driver store, which the File System Redirector leaves alone (%windir%\system32\driverstore
//! is on that page's list of exempt folders).

use std::io::Write;
use std::os::windows::process::CommandExt;
use std::process::{Command, Stdio};
use std::sync::{Arc, OnceLock};

use windows_sys::Win32::Foundation::{
    BOOL, ERROR_ACCESS_DENIED, ERROR_GEN_FAILURE, ERROR_INVALID_DATA, ERROR_INVALID_PARAMETER,
    ERROR_NOT_SUPPORTED, HANDLE,
};
use windows_sys::Win32::System::SystemInformation::{
    IMAGE_FILE_MACHINE_AMD64, IMAGE_FILE_MACHINE_I386, IMAGE_FILE_MACHINE_UNKNOWN,
};
use windows_sys::Win32::System::Threading::{CREATE_NO_WINDOW, GetCurrentProcess, IsWow64Process};

use super::adapter::remove_with_class_installer;
use super::driver::HARDWARE_ID;
use super::system::{
    DeviceList, MAX_INSTANCE_ID, failed, private_folder, system_function, windows_folder,
};
use crate::Error;
use crate::log::{self, Level};

static HELPER: OnceLock<&'static [u8]> = OnceLock::new();

/// Sets the native x64 oxtun.dll that a 32-bit process on x64 Windows removes devices with.
/// The first call wins.
pub fn register_wow64_helper(dll: &'static [u8]) {
    let _ = HELPER.set(dll);
}

type IsWow64Process2 = unsafe extern "system" fn(HANDLE, *mut u16, *mut u16) -> BOOL;

/// The machines of this process and of Windows (IMAGE_FILE_MACHINE_*): the process's is
/// IMAGE_FILE_MACHINE_UNKNOWN unless it runs under WOW64.
///
/// IsWow64Process2 is looked up, not imported: Windows 10 before 1709 lacks it (Microsoft's
/// page for it), and a static import kept the whole DLL from loading there, where creation is
/// to fail with a clear error instead (the review, finding 15). Without it, IsWow64Process,
/// whose WOW64 can only be x86 on x64 there, as wintun.dll reasons (api/adapter.c, AdapterInit).
pub fn machines() -> (u16, u16) {
    let (mut process, mut native) = (0u16, 0u16);
    if let Some(function) = system_function("kernel32.dll", c"IsWow64Process2") {
        // SAFETY: IsWow64Process2's type, as wow64apiset.h declares it.
        let is_wow64_process2: IsWow64Process2 = unsafe { std::mem::transmute(function) };
        // SAFETY: this process's pseudo-handle and two locals.
        if unsafe { is_wow64_process2(GetCurrentProcess(), &mut process, &mut native) } == 0 {
            return (IMAGE_FILE_MACHINE_UNKNOWN, IMAGE_FILE_MACHINE_UNKNOWN);
        }
        return (process, native);
    }
    let mut wow64 = 0;
    // SAFETY: this process's pseudo-handle and a local.
    if unsafe { IsWow64Process(GetCurrentProcess(), &mut wow64) } == 0 {
        return (IMAGE_FILE_MACHINE_UNKNOWN, IMAGE_FILE_MACHINE_UNKNOWN);
    }
    if wow64 != 0 {
        (IMAGE_FILE_MACHINE_I386, IMAGE_FILE_MACHINE_AMD64)
    } else {
        (IMAGE_FILE_MACHINE_UNKNOWN, IMAGE_FILE_MACHINE_UNKNOWN)
    }
}

/// The machine Windows runs on (IMAGE_FILE_MACHINE_*), or IMAGE_FILE_MACHINE_UNKNOWN if
/// Windows cannot say.
pub fn native_machine() -> u16 {
    machines().1
}

/// Whether this is a 32-bit process on 64-bit Windows.
#[cfg(test)]
fn in_wow64() -> bool {
    machines().0 != IMAGE_FILE_MACHINE_UNKNOWN
}

/// The machine of the native helper this DLL carries, if it carries one: the x64 DLL in the x86
/// one (api/build.rs).
pub fn helper_machine() -> Option<u16> {
    HELPER.get().map(|_| IMAGE_FILE_MACHINE_AMD64)
}

/// Removes the device `instance_id` through the native helper, relaying its log.
pub fn remove_natively(instance_id: &str) -> Result<(), Error> {
    let native = native_machine();
    let Some(dll) = HELPER.get().filter(|_| native == IMAGE_FILE_MACHINE_AMD64) else {
        return Err(failed(
            &format!(
                "A 32-bit process must remove devices through a native helper, and this \
                 oxtun.dll carries none for machine {native:#06x}"
            ),
            ERROR_NOT_SUPPORTED,
        ));
    };
    let folder = private_folder()?;
    let result = run_helper(&folder, dll, instance_id);
    let _ = std::fs::remove_dir_all(&folder);
    result
}

fn run_helper(folder: &std::path::Path, dll: &[u8], instance_id: &str) -> Result<(), Error> {
    let path = folder.join("oxtun-wow64-helper.dll");
    std::fs::write(&path, dll).map_err(|error| {
        failed(
            "Failed to write the native helper",
            error.raw_os_error().unwrap_or(0) as u32,
        )
    })?;
    let rundll32 = format!("{}\\Sysnative\\rundll32.exe", windows_folder()?);
    log::info(&format!("Removing {instance_id} through the native helper"));
    // rundll32 parses its own command line: the quoted DLL, a comma, the entry point, and the
    // rest for the entry point. The instance ID has no spaces (the helper checks).
    let output = Command::new(&rundll32)
        .raw_arg(format!(
            "\"{}\",OxtunWow64Helper remove {instance_id}",
            path.display()
        ))
        .creation_flags(CREATE_NO_WINDOW)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .output()
        .map_err(|error| {
            failed(
                &format!("Failed to run {rundll32}"),
                error.raw_os_error().unwrap_or(0) as u32,
            )
        })?;
    match read_answer(&String::from_utf8_lossy(&output.stdout)) {
        Some(0) => Ok(()),
        Some(code) => Err(Error::Io(std::io::Error::from_raw_os_error(code as i32))),
        None => Err(failed(
            &format!(
                "The native helper gave no answer (it exited with {})",
                output.status
            ),
            ERROR_INVALID_DATA,
        )),
    }
}

/// Relays the helper's log lines to our logger and returns its result, if it gave one.
fn read_answer(text: &str) -> Option<u32> {
    let mut result = None;
    for line in text.lines() {
        if let Some(code) = line.strip_prefix("result ") {
            result = code.trim().parse().ok();
        } else if let Some(message) = line.strip_prefix("log ") {
            let mut fields = message.splitn(3, ' ');
            let level = match fields.next() {
                Some("0") => Level::Info,
                Some("1") => Level::Warn,
                _ => Level::Error,
            };
            let timestamp = fields.next().and_then(|field| field.parse().ok());
            let text = fields.next().unwrap_or_default();
            log::relay(level, timestamp.unwrap_or_else(log::timestamp), text);
        }
    }
    result
}

/// The helper itself, in the native DLL that rundll32 runs: carries out `command_line` and
/// writes the answer to standard output. The only request is `remove <instance ID>`.
pub fn serve_wow64_helper(command_line: &str) {
    // Each line is written under stdout's own lock, so lines from several threads do not mix.
    log::set_logger(Some(Arc::new(|level, timestamp, message: &str| {
        let line = message.replace(['\r', '\n'], " ");
        let _ = writeln!(
            std::io::stdout().lock(),
            "log {} {timestamp} {line}",
            level as u32
        );
    })));
    let result = match command_line.trim().split_once(' ') {
        Some(("remove", instance_id)) => remove_ours(instance_id.trim()),
        _ => Err(failed(
            &format!("The native helper got an unknown request: {command_line}"),
            ERROR_INVALID_PARAMETER,
        )),
    };
    let code = match result {
        Ok(()) => 0,
        Err(Error::Io(error)) => match error.raw_os_error() {
            Some(code) if code != 0 => code as u32,
            _ => ERROR_GEN_FAILURE,
        },
        Err(_) => ERROR_GEN_FAILURE,
    };
    log::set_logger(None);
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "result {code}");
    let _ = out.flush();
}

/// Removes the device `instance_id` if it carries our hardware ID.
fn remove_ours(instance_id: &str) -> Result<(), Error> {
    if instance_id.is_empty()
        || instance_id.len() > MAX_INSTANCE_ID
        || instance_id.contains(char::is_whitespace)
    {
        return Err(failed(
            &format!("Not a device instance ID: {instance_id}"),
            ERROR_INVALID_PARAMETER,
        ));
    }
    let list = DeviceList::new_net()?;
    let mut device = list
        .open(instance_id)
        .map_err(|code| failed(&format!("Failed to find device {instance_id}"), code))?;
    if !list
        .hardware_id(&device)
        .is_some_and(|id| id.eq_ignore_ascii_case(HARDWARE_ID))
    {
        return Err(failed(
            &format!("Device {instance_id} is not an adapter of ours"),
            ERROR_ACCESS_DENIED,
        ));
    }
    remove_with_class_installer(&list, &mut device)?;
    log::info(&format!("Removed device {instance_id}"));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The logger is the process's: the tests that set it take turns.
    static LOGGER: std::sync::Mutex<()> = std::sync::Mutex::new(());

    #[test]
    fn the_answer_is_the_result_line_and_log_lines_are_relayed() {
        let _turn = LOGGER
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
        let sink = seen.clone();
        log::set_logger(Some(Arc::new(move |level, timestamp, message: &str| {
            sink.lock()
                .unwrap()
                .push((level, timestamp, message.to_string()));
        })));
        let answer = read_answer("log 0 42 Removed device X\nlog 2 43 two words\nresult 1168\n");
        log::set_logger(None);
        assert_eq!(answer, Some(1168));
        assert_eq!(
            *seen.lock().unwrap(),
            [
                (Level::Info, 42, "Removed device X".to_string()),
                (Level::Error, 43, "two words".to_string())
            ]
        );
        assert_eq!(read_answer("log 0 1 no result\n"), None);
        assert_eq!(read_answer(""), None);
    }

    /// A registered (phantom) device of the Net class whose hardware ID is `hardware_id`,
    /// made in this process; its instance ID.
    #[cfg(target_arch = "x86")]
    fn make_device(hardware_id: &str) -> String {
        use windows_sys::Win32::Devices::DeviceAndDriverInstallation::SetupDiRegisterDeviceInfo;
        let list = DeviceList::new_net().unwrap();
        let mut device = list.new_element(hardware_id).unwrap();
        // SAFETY: our list and element, without a duplicate check.
        let registered = unsafe {
            SetupDiRegisterDeviceInfo(
                list.0,
                &mut device,
                0,
                None,
                std::ptr::null_mut(),
                std::ptr::null_mut(),
            )
        };
        assert_ne!(registered, 0);
        list.instance_id(&device).unwrap()
    }

    #[cfg(target_arch = "x86")]
    fn exists(instance_id: &str) -> bool {
        DeviceList::new_net().unwrap().open(instance_id).is_ok()
    }

    /// Removes a device made by `make_device`, as the class installer's default handler does:
    /// Wine's class installer cannot (its SetupDiSetClassInstallParamsW is a stub).
    #[cfg(target_arch = "x86")]
    fn unmake_device(instance_id: &str) {
        use windows_sys::Win32::Devices::DeviceAndDriverInstallation::SetupDiRemoveDevice;
        let list = DeviceList::new_net().unwrap();
        let mut device = list.open(instance_id).unwrap();
        // SAFETY: our list and its element.
        assert_ne!(unsafe { SetupDiRemoveDevice(list.0, &mut device) }, 0);
        assert!(!exists(instance_id));
    }

    /// The whole path but the removal itself, run by scripts/test.sh under Wine as a 32-bit
    /// process of a 64-bit Wine (a WOW64 process there too), with the x64 helper this x86 build
    /// carries (`OXTUN_TEST_WOW64_HELPER`): the helper written out and run by Wine's native
    /// rundll32 through Sysnative, its answer and log read over the pipe; a device not ours,
    /// a device that is not there and a malformed ID refused with their codes. Our device gets
    /// as far as the class installer, which Wine cannot run (SetupDiSetClassInstallParamsW is a
    /// stub there): the failure must come back as a failure, with the helper's log. That the
    /// removal itself succeeds needs Windows.
    #[cfg(target_arch = "x86")]
    #[test]
    fn a_32_bit_process_removes_devices_of_ours_through_the_native_helper_and_no_others() {
        let helper = std::env::var("OXTUN_TEST_WOW64_HELPER")
            .expect("OXTUN_TEST_WOW64_HELPER: the x64 helper DLL (scripts/test.sh sets it)");
        let helper = std::fs::read(&helper).unwrap_or_else(|error| panic!("{helper}: {error}"));
        assert!(
            in_wow64(),
            "not a WOW64 process: run this under a 64-bit Wine"
        );
        let code = |result: Result<(), Error>| match result {
            Ok(()) => 0,
            Err(Error::Io(error)) => error.raw_os_error().unwrap() as u32,
            Err(error) => panic!("{error}"),
        };
        assert_eq!(
            code(remove_natively("SWD\\OxTun\\none")),
            ERROR_NOT_SUPPORTED,
            "a removal without a helper registered"
        );
        register_wow64_helper(helper.leak());

        let _turn = LOGGER
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
        let sink = seen.clone();
        log::set_logger(Some(Arc::new(move |level, _, message: &str| {
            sink.lock().unwrap().push((level, message.to_string()));
        })));
        let ours = make_device(HARDWARE_ID);
        let stranger = make_device("OxTunNot");
        assert!(exists(&ours) && exists(&stranger));

        assert_eq!(code(remove_natively(&stranger)), ERROR_ACCESS_DENIED);
        assert!(exists(&stranger), "the helper removed a device not ours");
        assert_eq!(code(remove_natively(&ours)), ERROR_GEN_FAILURE);
        assert_eq!(code(remove_natively("two words")), ERROR_INVALID_PARAMETER);
        unmake_device(&ours);
        unmake_device(&stranger);
        assert_eq!(
            code(remove_natively(&ours)),
            windows_sys::Win32::Foundation::ERROR_NO_SUCH_DEVINST
        );
        log::set_logger(None);

        let seen = seen.lock().unwrap();
        let logged = |level, text: &str| {
            seen.iter()
                .any(|(at, message)| *at == level && message.contains(text))
        };
        for (level, text) in [
            (
                Level::Info,
                format!("Removing {ours} through the native helper"),
            ),
            (
                Level::Error,
                format!("Device {stranger} is not an adapter of ours"),
            ),
            (
                Level::Error,
                "Failed to remove the adapter's device".to_string(),
            ),
            (
                Level::Error,
                "Not a device instance ID: two words".to_string(),
            ),
            (Level::Error, format!("Failed to find device {ours}")),
        ] {
            assert!(logged(level, &text), "no {level:?} {text:?} in {seen:?}");
        }
    }
}
