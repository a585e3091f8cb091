//! Adapters on Windows: software devices of our hardware ID under the root, as wintun.dll 0.14
//! makes them (api/adapter.c), and opening their device interface.
//!
//! Creating one: take the installation mutex; install the driver if needed; remove the adapters
//! of ours whose creating process is gone; a stub device first when a GUID is requested, to
//! leave `SuggestedInstanceId` in its software key, which NDIS then takes as the interface's GUID;
//! the device itself (`SwDeviceCreate`), carrying our name and creator as properties; wait for
//! its NetCfgInstanceId and its NDIS interface; name the interface (moving a stranger of that
//! alias aside to "Name 1", as wintun.dll does). Closing it closes the software device
//! and removes its node. Only devices with our hardware ID are ever looked at or removed.

use std::ffi::c_void;
use std::io;
use std::ptr::{null, null_mut};
use std::time::{Duration, Instant};

use windows_sys::Wdk::System::SystemServices::RtlGetVersion;
use windows_sys::Win32::Devices::DeviceAndDriverInstallation::{
    CM_GET_DEVICE_INTERFACE_LIST_PRESENT, CM_Get_DevNode_Status, CM_Get_Device_IDW,
    CM_Get_Device_Interface_List_SizeW, CM_Get_Device_Interface_ListW, CM_LOCATE_DEVNODE_NORMAL,
    CM_LOCATE_DEVNODE_PHANTOM, CM_Locate_DevNodeW, CM_Open_DevNode_Key, CM_REGISTRY_SOFTWARE,
    CONFIGRET, CR_BUFFER_SMALL, CR_SUCCESS, DI_REMOVEDEVICE_GLOBAL, DIF_REMOVE, DIGCF_PRESENT,
    GUID_DEVCLASS_NET, RegDisposition_OpenAlways, RegDisposition_OpenExisting,
    SP_CLASSINSTALL_HEADER, SP_DEVINFO_DATA, SP_REMOVEDEVICE_PARAMS, SetupDiCallClassInstaller,
    SetupDiEnumDeviceInfo, SetupDiGetClassDevsExW, SetupDiSetClassInstallParamsW,
    SetupDiSetDevicePropertyW,
};
use windows_sys::Win32::Devices::Enumeration::Pnp::{
    HSWDEVICE, SW_DEVICE_CREATE_INFO, SWDeviceCapabilitiesDriverRequired,
    SWDeviceCapabilitiesSilentInstall, SwDeviceClose, SwDeviceCreate,
};
use windows_sys::Win32::Devices::Properties::{
    DEVPKEY_Device_ClassGuid, DEVPKEY_Device_DeviceDesc, DEVPKEY_Device_FriendlyName,
    DEVPKEY_Device_ProblemStatus, DEVPROP_STORE_SYSTEM, DEVPROP_TYPE_BINARY, DEVPROP_TYPE_GUID,
    DEVPROP_TYPE_STRING, DEVPROPCOMPKEY, DEVPROPERTY, DEVPROPID_FIRST_USABLE, DEVPROPKEY,
};
use windows_sys::Win32::Foundation::{
    ERROR_DEVICE_ENUMERATION_ERROR, ERROR_DUP_NAME, ERROR_GEN_FAILURE, ERROR_NO_MORE_ITEMS,
    ERROR_PNP_REGISTRY_ERROR, ERROR_SUCCESS, ERROR_TIMEOUT, FILETIME, GENERIC_READ, GENERIC_WRITE,
    GetLastError, INVALID_HANDLE_VALUE, NO_ERROR, RtlNtStatusToDosError, WAIT_OBJECT_0,
};
use windows_sys::Win32::NetworkManagement::IpHelper::{
    ConvertInterfaceAliasToLuid, ConvertInterfaceGuidToLuid, ConvertInterfaceLuidToGuid,
    GetIpInterfaceEntry, InitializeIpInterfaceEntry, MIB_IPINTERFACE_ROW, SetIpInterfaceEntry,
};
use windows_sys::Win32::NetworkManagement::Ndis::NET_LUID_LH;
use windows_sys::Win32::Networking::WinSock::{AF_INET, AF_INET6};
use windows_sys::Win32::Storage::FileSystem::{
    CreateFileW, FILE_SHARE_DELETE, FILE_SHARE_READ, FILE_SHARE_WRITE, OPEN_EXISTING,
};
use windows_sys::Win32::System::Registry::{
    HKEY, KEY_QUERY_VALUE, KEY_SET_VALUE, REG_BINARY, RegQueryValueExW, RegSetValueExW,
};
use windows_sys::Win32::System::SystemInformation::OSVERSIONINFOW;
use windows_sys::Win32::System::Threading::{
    CreateEventW, GetCurrentProcess, GetCurrentProcessId, GetProcessTimes, OpenProcess,
    PROCESS_QUERY_LIMITED_INFORMATION, SetEvent, WaitForSingleObject,
};
use windows_sys::core::{GUID, HRESULT, PCWSTR};

use super::driver::{HARDWARE_ID, ensure_installed};
use super::lock::InstallationLock;
use super::rules::{
    ERROR_DEVICE_NOT_AVAILABLE, ERROR_OLD_WIN_VERSION, MACHINE_AMD64, MACHINE_ARM64, MACHINE_I386,
    MIN_WINDOWS_BUILD, Naming, NamingOutcome, NamingStep, OwnerProbe, Presence, Removal, is_orphan,
    not_up_advice, not_up_error, owner, presence, removal, while_waiting, windows_supported,
};
use super::system::{
    DeviceList, OwnedHandle, Plain, RegistryKey, cr_check, cr_failed, failed, from_wide, guid,
    guid_string, last_failed, map_cr, new_guid, parse_guid, system_function, wide,
};
use super::{Device, wow64};
use crate::{Error, Features, Session, log};

/// Longest name or tunnel type: MAX_ADAPTER_NAME less its NUL.
const MAX_NAME: usize = 127;
/// How long a new adapter may take to appear and get its interface.
const APPEAR_TIMEOUT: Duration = Duration::from_secs(30);
/// How long opening an adapter waits for its interface: wintun.dll's WaitForInterface's 15 s.
const OPEN_TIMEOUT: Duration = Duration::from_secs(15);

/// Our device properties (their GUID is ours alone): the adapter's name, and the process that
/// created it (ID and creation time), by which orphans are recognised.
const DEVPKEY_OXTUN_NAME: DEVPROPKEY = DEVPROPKEY {
    fmtid: guid(0x6d1a_7e3c_52f4_4b8e_9a0f_3c1e_8b27_d415),
    pid: DEVPROPID_FIRST_USABLE + 1,
};
const DEVPKEY_OXTUN_OWNER: DEVPROPKEY = DEVPROPKEY {
    fmtid: guid(0x6d1a_7e3c_52f4_4b8e_9a0f_3c1e_8b27_d415),
    pid: DEVPROPID_FIRST_USABLE + 2,
};

fn check_name(what: &str, name: &str, allow_empty: bool) -> Result<(), Error> {
    let units = name.encode_utf16().count();
    if (units == 0 && !allow_empty) || units > MAX_NAME {
        return Err(Error::BadName(format!(
            "{what} {name:?}: 1 to {MAX_NAME} characters"
        )));
    }
    Ok(())
}

/// Refuses, with ERROR_OLD_WIN_VERSION, a Windows our driver does not install on
/// (`rules::windows_supported`). RtlGetVersion, not GetVersionExW, which answers 6.2 to a
/// program whose manifest does not list Windows 10.
fn check_windows() -> Result<(), Error> {
    let mut version = OSVERSIONINFOW {
        dwOSVersionInfoSize: size_of::<OSVERSIONINFOW>() as u32,
        ..Plain::zeroed()
    };
    // SAFETY: fills our structure, whose size it is told.
    if unsafe { RtlGetVersion(&mut version) } < 0 {
        return Ok(()); // nothing known: let the installation say what it finds
    }
    let (major, minor, build) = (
        version.dwMajorVersion,
        version.dwMinorVersion,
        version.dwBuildNumber,
    );
    if windows_supported(major, minor, build) {
        return Ok(());
    }
    Err(failed(
        &format!(
            "oxtun needs Windows 10 version 2004 (build {MIN_WINDOWS_BUILD}) or later; this is \
             Windows {major}.{minor} build {build}"
        ),
        ERROR_OLD_WIN_VERSION,
    ))
}

/// A process's identity for the owner property: its ID and creation time.
fn process_identity(process: windows_sys::Win32::Foundation::HANDLE, pid: u32) -> Option<[u8; 12]> {
    let zero = FILETIME::zeroed();
    let (mut created, mut exited, mut kernel, mut user) = (zero, zero, zero, zero);
    // SAFETY: a process handle with query access and four locals.
    if unsafe { GetProcessTimes(process, &mut created, &mut exited, &mut kernel, &mut user) } == 0 {
        return None;
    }
    let mut identity = [0u8; 12];
    identity[..4].copy_from_slice(&pid.to_le_bytes());
    identity[4..8].copy_from_slice(&created.dwLowDateTime.to_le_bytes());
    identity[8..].copy_from_slice(&created.dwHighDateTime.to_le_bytes());
    Some(identity)
}

fn current_identity() -> [u8; 12] {
    // SAFETY: the pseudo-handle of this process needs no closing.
    let (process, pid) = unsafe { (GetCurrentProcess(), GetCurrentProcessId()) };
    process_identity(process, pid).unwrap_or_default()
}

/// What looking for the process an owner property names finds (`rules::owner` judges it).
fn owner_probe(identity: Option<&[u8]>) -> OwnerProbe {
    let Some(identity) = identity.filter(|identity| identity.len() == 12) else {
        return OwnerProbe::NoRecord;
    };
    let pid = u32::from_le_bytes(identity[..4].try_into().expect("4 bytes"));
    // SAFETY: opens a process by ID for a query; the handle is owned below.
    let process = unsafe { OpenProcess(PROCESS_QUERY_LIMITED_INFORMATION, 0, pid) };
    if process.is_null() {
        // SAFETY: reads this thread's last-error value.
        return OwnerProbe::OpenFailed(unsafe { GetLastError() });
    }
    let process = OwnedHandle(process);
    OwnerProbe::Running {
        same_start: process_identity(process.0, pid).is_some_and(|now| now[..] == identity[..]),
    }
}

/// The presence of a device node (`rules::presence`).
fn node_presence(device: &SP_DEVINFO_DATA) -> Presence {
    let (mut status, mut problem) = (0u32, 0u32);
    // SAFETY: the node of our element, and two locals.
    let result = unsafe { CM_Get_DevNode_Status(&mut status, &mut problem, device.DevInst, 0) };
    presence((result == CR_SUCCESS).then_some((status, problem)))
}

/// CM_Get_DevNode_Status's status and problem code for the device `instance_id`
/// (NUL-terminated), or None if it is not present.
fn node_status(instance_id: &[u16]) -> Option<(u32, u32)> {
    let mut node = 0u32;
    // SAFETY: a NUL-terminated instance ID and a local.
    if unsafe { CM_Locate_DevNodeW(&mut node, instance_id.as_ptr(), CM_LOCATE_DEVNODE_NORMAL) }
        != CR_SUCCESS
    {
        return None;
    }
    let (mut status, mut problem) = (0u32, 0u32);
    // SAFETY: a node just located, and two locals.
    let result = unsafe { CM_Get_DevNode_Status(&mut status, &mut problem, node, 0) };
    (result == CR_SUCCESS).then_some((status, problem))
}

/// The device's problem status (DEVPKEY_Device_ProblemStatus, an NTSTATUS), or 0 (success) if
/// it has none that can be read.
fn problem_status(instance_id: &[u16]) -> i32 {
    let Ok(list) = DeviceList::new_net() else {
        return 0;
    };
    let Ok(device) = list.open(&from_wide(instance_id)) else {
        return 0;
    };
    list.property(&device, &DEVPKEY_Device_ProblemStatus)
        .and_then(|bytes| Some(i32::from_le_bytes(bytes.get(..4)?.try_into().ok()?)))
        .unwrap_or(0)
}

/// Every device of our hardware ID; `flags` DIGCF_PRESENT for present ones only, 0 for all.
fn our_devices(flags: u32) -> Result<(DeviceList, Vec<SP_DEVINFO_DATA>), Error> {
    // SAFETY: a list of the Net class's devices on this machine.
    let list = unsafe {
        SetupDiGetClassDevsExW(
            &GUID_DEVCLASS_NET,
            null(),
            null_mut(),
            flags,
            0,
            null(),
            null(),
        )
    };
    if list == INVALID_HANDLE_VALUE as _ {
        return Err(last_failed("Failed to list network devices"));
    }
    let list = DeviceList(list);
    let mut ours = Vec::new();
    for index in 0.. {
        let mut device = SP_DEVINFO_DATA {
            cbSize: size_of::<SP_DEVINFO_DATA>() as u32,
            ..Plain::zeroed()
        };
        // SAFETY: enumerates our list into our structure.
        if unsafe { SetupDiEnumDeviceInfo(list.0, index, &mut device) } == 0 {
            // One element that cannot be read does not end the list (wintun.dll goes on too).
            // SAFETY: reads this thread's last-error value.
            if unsafe { GetLastError() } == ERROR_NO_MORE_ITEMS {
                break;
            }
            continue;
        }
        if list
            .hardware_id(&device)
            .is_some_and(|id| id.eq_ignore_ascii_case(HARDWARE_ID))
        {
            ours.push(device);
        }
    }
    Ok((list, ours))
}

/// Removes a device node (DIF_REMOVE) where the class installer can run (`rules::removal`): in
/// this process, or from a 32-bit process on 64-bit Windows through the native helper (`wow64`),
/// since the class installer refuses to run there.
fn remove_device(list: &DeviceList, device: &mut SP_DEVINFO_DATA) -> Result<(), Error> {
    let (process, native) = wow64::machines();
    match removal(BUILD_MACHINE, process, native, wow64::helper_machine()) {
        Removal::InProcess => remove_with_class_installer(list, device),
        Removal::NativeHelper | Removal::Unsupported => {
            wow64::remove_natively(&list.instance_id(device)?)
        }
        Removal::InProcessUnverified => {
            log::warn(
                "An x64 process emulated on ARM64 removes its device in process, where \
                 wintun.dll uses a native ARM64 helper, which this oxtun.dll does not carry \
                 (docs/windows.md, first-run checklist)",
            );
            remove_with_class_installer(list, device)
        }
    }
}

/// The machine this DLL was built for (IMAGE_FILE_MACHINE_*).
const BUILD_MACHINE: u16 = if cfg!(target_arch = "x86") {
    MACHINE_I386
} else if cfg!(target_arch = "aarch64") {
    MACHINE_ARM64
} else {
    MACHINE_AMD64
};

/// Removes a device node with the class installer (DIF_REMOVE), in this process.
pub(super) fn remove_with_class_installer(
    list: &DeviceList,
    device: &mut SP_DEVINFO_DATA,
) -> Result<(), Error> {
    let params = SP_REMOVEDEVICE_PARAMS {
        ClassInstallHeader: SP_CLASSINSTALL_HEADER {
            cbSize: size_of::<SP_CLASSINSTALL_HEADER>() as u32,
            InstallFunction: DIF_REMOVE,
        },
        Scope: DI_REMOVEDEVICE_GLOBAL,
        HwProfile: 0,
    };
    // SAFETY: our list and element; the parameters are a local of the size given.
    let ok = unsafe {
        SetupDiSetClassInstallParamsW(
            list.0,
            device,
            &params.ClassInstallHeader,
            size_of::<SP_REMOVEDEVICE_PARAMS>() as u32,
        ) != 0
            && SetupDiCallClassInstaller(DIF_REMOVE, list.0, device) != 0
    };
    if ok {
        Ok(())
    } else {
        Err(last_failed("Failed to remove the adapter's device"))
    }
}

/// Removes every adapter of ours that is an orphan (`rules::is_orphan`): after each creation,
/// as wintun.dll cleans up after each (the review, finding 16), and before the driver goes.
pub fn remove_orphans(_lock: &InstallationLock) {
    let Ok((list, devices)) = our_devices(0) else {
        return;
    };
    for mut device in devices {
        let presence = node_presence(&device);
        if presence == Presence::Working {
            continue;
        }
        let owner = owner(owner_probe(
            list.property(&device, &DEVPKEY_OXTUN_OWNER).as_deref(),
        ));
        if !is_orphan(presence, owner) {
            continue;
        }
        let device_name = list
            .string_property(&device, &DEVPKEY_OXTUN_NAME)
            .unwrap_or_default();
        log::info(&format!(
            "Removing adapter {device_name} ({presence:?}), orphaned by a process that is gone"
        ));
        if remove_device(&list, &mut device).is_err() {
            log::warn(&format!("The orphaned adapter {device_name} stays"));
        }
    }
}

/// What the creation callback reports.
struct Creation {
    done: OwnedHandle,
    result: HRESULT,
    instance_id: [u16; 200],
}

unsafe extern "system" fn creation_done(
    _device: HSWDEVICE,
    result: HRESULT,
    context: *const c_void,
    instance_id: PCWSTR,
) {
    // SAFETY: `context` is the Creation that `create_software_device` waits on and keeps alive
    // until this callback has set its event; the instance ID is NUL-terminated when not NULL.
    unsafe {
        let creation = &mut *context.cast_mut().cast::<Creation>();
        creation.result = result;
        if !instance_id.is_null() {
            let mut index = 0;
            while index < creation.instance_id.len() - 1 && *instance_id.add(index) != 0 {
                creation.instance_id[index] = *instance_id.add(index);
                index += 1;
            }
        }
        SetEvent(creation.done.0);
    }
}

/// A software device under the root; its handle and device instance ID.
fn create_software_device(
    instance: &[u16],
    hardware_ids: &[u16],
    description: &[u16],
    properties: &[DEVPROPERTY],
) -> Result<(HSWDEVICE, Vec<u16>), Error> {
    let mut root = 0u32;
    let mut root_name = [0u16; 200];
    // SAFETY: locates the root node; writes its ID into our buffer.
    cr_check("Failed to find the root device", unsafe {
        CM_Locate_DevNodeW(&mut root, null(), CM_LOCATE_DEVNODE_NORMAL)
    })?;
    // SAFETY: as above.
    cr_check("Failed to get the root device's ID", unsafe {
        CM_Get_Device_IDW(root, root_name.as_mut_ptr(), root_name.len() as u32, 0)
    })?;
    // SAFETY: an unnamed auto-reset event.
    let event = unsafe { CreateEventW(null(), 0, 0, null()) };
    if event.is_null() {
        return Err(last_failed("Failed to create an event"));
    }
    let mut creation = Box::new(Creation {
        done: OwnedHandle(event),
        result: 0,
        instance_id: [0; 200],
    });
    let info = SW_DEVICE_CREATE_INFO {
        cbSize: size_of::<SW_DEVICE_CREATE_INFO>() as u32,
        pszInstanceId: instance.as_ptr(),
        pszzHardwareIds: hardware_ids.as_ptr(),
        pszzCompatibleIds: null(),
        pContainerId: null(),
        CapabilityFlags: (SWDeviceCapabilitiesSilentInstall | SWDeviceCapabilitiesDriverRequired)
            as u32,
        pszDeviceDescription: description.as_ptr(),
        pszDeviceLocation: null(),
        pSecurityDescriptor: null(),
    };
    let enumerator = wide(HARDWARE_ID);
    let mut device: HSWDEVICE = null_mut();
    // SAFETY: every string is NUL-terminated and lives through the call; the properties point
    // to buffers of the sizes they give; the callback's context outlives the wait below.
    let result = unsafe {
        SwDeviceCreate(
            enumerator.as_ptr(),
            root_name.as_ptr(),
            &info,
            properties.len() as u32,
            properties.as_ptr(),
            Some(creation_done),
            (&mut *creation as *mut Creation).cast(),
            &mut device,
        )
    };
    if result < 0 {
        return Err(failed("Failed to start creating the device", result as u32));
    }
    // SAFETY: our event; the callback sets it once.
    let waited = unsafe { WaitForSingleObject(creation.done.0, APPEAR_TIMEOUT.as_millis() as u32) };
    if waited != WAIT_OBJECT_0 {
        // The callback may still come: the context must outlive it.
        std::mem::forget(creation);
        // SAFETY: our device handle.
        unsafe { SwDeviceClose(device) };
        return Err(failed("The device did not appear", ERROR_TIMEOUT));
    }
    if creation.result < 0 {
        // SAFETY: our device handle.
        unsafe { SwDeviceClose(device) };
        return Err(failed(
            "Failed to create the device",
            creation.result as u32,
        ));
    }
    let id_end = creation
        .instance_id
        .iter()
        .position(|&unit| unit == 0)
        .unwrap_or(0);
    Ok((device, creation.instance_id[..=id_end].to_vec()))
}

fn property<T>(key: DEVPROPKEY, kind: u32, value: &[T]) -> DEVPROPERTY {
    DEVPROPERTY {
        CompKey: DEVPROPCOMPKEY {
            Key: key,
            Store: DEVPROP_STORE_SYSTEM,
            LocaleName: null(),
        },
        Type: kind,
        BufferSize: size_of_val(value) as u32,
        Buffer: value.as_ptr().cast_mut().cast(),
    }
}

/// The software key of a device node, opened (or made) with `access`; a failure is logged.
fn software_key(instance_id: &[u16], access: u32, create: bool) -> Result<RegistryKey, Error> {
    open_software_key(instance_id, access, create)
        .map_err(|(what, status, default)| cr_failed(what, status, default))
}

/// The software key of a device node, or what failed: the step, its CONFIGRET and the Win32
/// error wintun.dll reports for it where CM_MapCrToWin32Err has none (api/adapter.c).
fn open_software_key(
    instance_id: &[u16],
    access: u32,
    create: bool,
) -> Result<RegistryKey, (&'static str, CONFIGRET, u32)> {
    let mut node = 0u32;
    // SAFETY: a NUL-terminated instance ID; the node may be not present (phantom).
    let status =
        unsafe { CM_Locate_DevNodeW(&mut node, instance_id.as_ptr(), CM_LOCATE_DEVNODE_PHANTOM) };
    if status != CR_SUCCESS {
        return Err((
            "Failed to find the device",
            status,
            ERROR_DEVICE_ENUMERATION_ERROR,
        ));
    }
    let mut key: HKEY = null_mut();
    let disposition = if create {
        RegDisposition_OpenAlways
    } else {
        RegDisposition_OpenExisting
    };
    // SAFETY: opens the node's software key into our local.
    let status = unsafe {
        CM_Open_DevNode_Key(node, access, 0, disposition, &mut key, CM_REGISTRY_SOFTWARE)
    };
    if status != CR_SUCCESS {
        return Err((
            "Failed to open the device's software key",
            status,
            ERROR_PNP_REGISTRY_ERROR,
        ));
    }
    Ok(RegistryKey(key))
}

/// The device's NetCfgInstanceId, which NDIS writes when it binds the adapter. (Asked again and
/// again while an adapter comes up: its absence is not logged.)
fn net_cfg_instance_id(instance_id: &[u16]) -> Option<GUID> {
    let key = open_software_key(instance_id, KEY_QUERY_VALUE, false).ok()?;
    let mut value = [0u16; 64];
    let mut size = (value.len() * 2) as u32;
    let name = wide("NetCfgInstanceId");
    // SAFETY: reads a value into our buffer of `size` bytes.
    let status = unsafe {
        RegQueryValueExW(
            key.0,
            name.as_ptr(),
            null(),
            null_mut(),
            value.as_mut_ptr().cast(),
            &mut size,
        )
    };
    (status == ERROR_SUCCESS)
        .then(|| parse_guid(&from_wide(&value)))
        .flatten()
}

type NciSetConnectionName = unsafe extern "system" fn(*const GUID, PCWSTR) -> u32;

/// nci.dll's NciSetConnectionName, which sets an interface's alias (what `netsh` and the
/// Control Panel rename); Windows' own DLL, loaded from System32.
fn set_connection_name(interface: &GUID, name: &str) -> Result<(), u32> {
    let Some(function) = system_function("nci.dll", c"NciSetConnectionName") else {
        // What LoadLibraryExW or GetProcAddress said (the review, finding 18: it was reported as
        // ERROR_INVALID_PARAMETER).
        // SAFETY: reads this thread's last-error value.
        return Err(unsafe { GetLastError() });
    };
    // SAFETY: NciSetConnectionName's type, as nci.dll exports it.
    let set: NciSetConnectionName = unsafe { std::mem::transmute(function) };
    let name = wide(name);
    // SAFETY: a GUID and a NUL-terminated name, both alive through the call.
    match unsafe { set(interface, name.as_ptr()) } {
        ERROR_SUCCESS => Ok(()),
        error => Err(error),
    }
}

/// The interface that has the alias `alias`, by its GUID, if IP Helper knows it.
fn interface_of_alias(alias: &str) -> Option<GUID> {
    let mut luid = NET_LUID_LH { Value: 0 };
    let mut guid = GUID::from_u128(0);
    let alias = wide(alias);
    // SAFETY: a NUL-terminated alias and two locals.
    let found = unsafe {
        ConvertInterfaceAliasToLuid(alias.as_ptr(), &mut luid) == NO_ERROR
            && ConvertInterfaceLuidToGuid(&luid, &mut guid) == NO_ERROR
    };
    found.then_some(guid)
}

/// Names our interface `name` as `rules::Naming` decides (wintun.dll's order): an interface
/// that has the name already moves to "name 1" (or the first free number), and if that one
/// cannot be found or moved, ours takes the number instead. A displaced adapter of ours gets
/// its new name in its name property too, so opening by name finds the right one. The name
/// ours got.
fn name_interface(interface: &GUID, name: &str) -> Result<String, Error> {
    let (mut naming, mut step) = Naming::start(name);
    let mut holder = GUID::from_u128(0);
    loop {
        let outcome = match &step {
            NamingStep::NameOurs(wanted) => naming_outcome(set_connection_name(interface, wanted)),
            NamingStep::FindHolder(alias) => match interface_of_alias(alias) {
                Some(found) => {
                    holder = found;
                    NamingOutcome::HolderFound
                }
                None => NamingOutcome::HolderNotFound,
            },
            NamingStep::MoveHolder(proposal) => {
                let outcome = naming_outcome(set_connection_name(&holder, proposal));
                if outcome == NamingOutcome::Named {
                    log::warn(&format!(
                        "Interface {} renamed {proposal} to free the name",
                        naming.wanted()
                    ));
                    rename_ours(&holder, proposal);
                }
                outcome
            }
            NamingStep::Done(got) => {
                if got != name {
                    log::warn(&format!(
                        "The name {name} is held by an interface that cannot be moved: the \
                         adapter is named {got}"
                    ));
                }
                return Ok(got.clone());
            }
            NamingStep::Fail(error) => {
                return Err(failed(
                    &format!("Failed to name the interface {name}"),
                    *error,
                ));
            }
        };
        step = naming.next(outcome);
    }
}

/// How long IP Helper may take to find a new interface by the name just given to it.
const ALIAS_TIMEOUT: Duration = Duration::from_secs(5);

/// Waits until IP Helper finds the interface `luid` by its new name `alias`, so that a program
/// looking the adapter up by name as soon as creation returns (as the `wintun` crate's
/// helpers do, by alias or through GetAdaptersAddresses' FriendlyName) finds it. A name
/// that has not shown by then is logged, not fatal: the adapter works.
fn confirm_alias(alias: &str, luid: u64) {
    let deadline = Instant::now() + ALIAS_TIMEOUT;
    let wide_alias = wide(alias);
    loop {
        let mut found = NET_LUID_LH { Value: 0 };
        // SAFETY: a NUL-terminated alias and a local.
        let status = unsafe { ConvertInterfaceAliasToLuid(wide_alias.as_ptr(), &mut found) };
        // SAFETY: the union's 64-bit view.
        if status == NO_ERROR && unsafe { found.Value } == luid {
            return;
        }
        if Instant::now() > deadline {
            log::warn(&format!(
                "The interface is named {alias}, but IP Helper does not find it by that name yet"
            ));
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn naming_outcome(result: Result<(), u32>) -> NamingOutcome {
    match result {
        Ok(()) => NamingOutcome::Named,
        Err(ERROR_DUP_NAME) => NamingOutcome::Taken,
        Err(error) => NamingOutcome::Failed(error),
    }
}

/// If the interface `interface` is an adapter of ours, sets its name property to `name`, as
/// wintun.dll's RenameByNetGUID does (api/adapter.c; the review, finding 9).
fn rename_ours(interface: &GUID, name: &str) {
    let Ok((list, devices)) = our_devices(0) else {
        return;
    };
    for device in devices {
        let Ok(instance_id) = list.instance_id(&device) else {
            continue;
        };
        if net_cfg_instance_id(&wide(&instance_id))
            .is_none_or(|guid| guid_string(&guid) != guid_string(interface))
        {
            continue;
        }
        let value = wide(name);
        // SAFETY: our list and element; the value is a NUL-terminated string of that size.
        if unsafe {
            SetupDiSetDevicePropertyW(
                list.0,
                &device,
                &DEVPKEY_OXTUN_NAME,
                DEVPROP_TYPE_STRING,
                value.as_ptr().cast(),
                size_of_val(value.as_slice()) as u32,
                0,
            )
        } == 0
        {
            last_failed(&format!(
                "Failed to rename the displaced adapter {instance_id}"
            ));
        }
        return;
    }
}

/// An adapter of ours: its device, and its software device if this value created it.
pub struct Adapter {
    /// Device instance ID, NUL-terminated.
    instance_id: Vec<u16>,
    luid: u64,
    created: Option<HSWDEVICE>,
}

// SAFETY: the software device handle may be closed from any thread.
unsafe impl Send for Adapter {}
// SAFETY: nothing but the drop uses the handle.
unsafe impl Sync for Adapter {}

impl Adapter {
    /// The installed adapter with this device instance ID (as the SetupAPI or `pnputil
    /// /enum-devices` names it).
    pub fn from_instance_id(instance_id: &str) -> Adapter {
        Adapter {
            instance_id: wide(instance_id),
            luid: 0,
            created: None,
        }
    }

    /// Creates an adapter named `name`; see the module documentation.
    pub fn create(name: &str, tunnel_type: &str, guid: Option<u128>) -> Result<Adapter, Error> {
        check_name("adapter name", name, false)?;
        check_name("tunnel type", tunnel_type, true)?;
        check_windows()?;
        let lock = InstallationLock::take()?;
        ensure_installed(&lock)?;
        remove_orphans(&lock);
        let instance = match guid {
            Some(guid) => GUID::from_u128(guid),
            None => new_guid()?,
        };
        let instance_string = wide(&guid_string(&instance));
        // wintun.dll's "%s Tunnel" (api/adapter.c): the device description, friendly name and
        // DeviceDesc, which Get-NetAdapter shows as InterfaceDescription (the review, finding 8).
        let description = wide(&format!("{tunnel_type} Tunnel"));
        if guid.is_some() {
            suggest_instance_id(&instance, &instance_string, &description)?;
        }
        log::info(&format!("Creating adapter {name}"));
        let mut hardware_ids = wide(HARDWARE_ID);
        hardware_ids.push(0);
        let name_value = wide(name);
        let owner = current_identity();
        let properties = [
            property(DEVPKEY_OXTUN_NAME, DEVPROP_TYPE_STRING, &name_value),
            property(DEVPKEY_OXTUN_OWNER, DEVPROP_TYPE_BINARY, &owner),
            property(
                DEVPKEY_Device_FriendlyName,
                DEVPROP_TYPE_STRING,
                &description,
            ),
            property(DEVPKEY_Device_DeviceDesc, DEVPROP_TYPE_STRING, &description),
        ];
        let (device, instance_id) =
            create_software_device(&instance_string, &hardware_ids, &description, &properties)?;
        let mut adapter = Adapter {
            instance_id,
            luid: 0,
            created: Some(device),
        };
        // Dropped on failure from here on: the device goes again.
        let interface = adapter.wait_for_interface(name, APPEAR_TIMEOUT)?;
        let named = name_interface(&interface, name)?;
        confirm_alias(&named, adapter.luid);
        log::info(&format!("Created adapter {name}"));
        drop(lock);
        Ok(adapter)
    }

    /// Opens our adapter named `name` (case-insensitive, as Windows compares aliases): the first
    /// present device of ours with that name, once its interface is up. wintun.dll's
    /// WintunOpenAdapter looks at present devices only (DIGCF_PRESENT) and waits up to 15 s for
    /// the interface (api/adapter.c): a phantom left by a crash is not opened, and an adapter
    /// another process is still bringing up is waited for (the review, finding 7).
    pub fn open(name: &str) -> Result<Adapter, Error> {
        check_name("adapter name", name, false)?;
        let (list, devices) = our_devices(DIGCF_PRESENT)?;
        let device = devices
            .iter()
            .find(|device| {
                list.string_property(device, &DEVPKEY_OXTUN_NAME)
                    .is_some_and(|device_name| device_name.eq_ignore_ascii_case(name))
            })
            .ok_or(Error::NoSuchAdapter)?;
        let mut adapter = Adapter {
            instance_id: wide(&list.instance_id(device)?),
            luid: 0,
            created: None,
        };
        adapter.wait_for_interface(name, OPEN_TIMEOUT)?;
        Ok(adapter)
    }

    /// Waits until the adapter's NDIS interface is up (its NetCfgInstanceId, a LUID for it, and
    /// its device interface), and records its LUID; its GUID. Stops at once on a problem that
    /// waiting cannot cure, or when `timeout` is up, with the device's problem status
    /// (`rules::while_waiting`, `rules::not_up_error`).
    fn wait_for_interface(&mut self, name: &str, timeout: Duration) -> Result<GUID, Error> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(interface) = net_cfg_instance_id(&self.instance_id) {
                let mut luid = NET_LUID_LH { Value: 0 };
                // SAFETY: a GUID and a local.
                if unsafe { ConvertInterfaceGuidToLuid(&interface, &mut luid) } == NO_ERROR
                    && self.interface_path().is_ok()
                {
                    // SAFETY: the union's 64-bit view.
                    self.luid = unsafe { luid.Value };
                    return Ok(interface);
                }
            }
            if let Some(why) =
                while_waiting(node_status(&self.instance_id), Instant::now() > deadline)
            {
                let problem_status = problem_status(&self.instance_id);
                return Err(failed(
                    &format!(
                        "Adapter {name}'s interface did not come up ({why:?}, problem status \
                         {problem_status:#010x}): {}",
                        not_up_advice(why)
                    ),
                    // SAFETY: converts a status code; no memory involved.
                    not_up_error(unsafe { RtlNtStatusToDosError(problem_status) }),
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The adapter's NET_LUID.
    pub fn luid(&self) -> u64 {
        self.luid
    }

    /// Starts a session with rings of `capacity` bytes each.
    pub fn start_session(&self, capacity: u32) -> Result<Session, Error> {
        Session::start(self, capacity)
    }

    /// Starts a session that asks for `features`; [`Session::features`] says which it got
    /// (docs/offloads.md, "The client").
    pub fn start_session_with(&self, capacity: u32, features: Features) -> Result<Session, Error> {
        Session::start_with(self, capacity, features)
    }

    /// Sets the interface's MTU for IPv4 and IPv6, through IP Helper (as `netsh interface ipv4
    /// set subinterface mtu=` does); the setting persists.
    pub fn set_mtu(&self, mtu: u32) -> Result<(), Error> {
        for family in [AF_INET, AF_INET6] {
            let mut row = MIB_IPINTERFACE_ROW::zeroed();
            // SAFETY: initializes our local row.
            unsafe { InitializeIpInterfaceEntry(&mut row) };
            row.Family = family;
            row.InterfaceLuid = NET_LUID_LH { Value: self.luid };
            // SAFETY: reads the interface's row into our local.
            let status = unsafe { GetIpInterfaceEntry(&mut row) };
            if status != NO_ERROR {
                return Err(failed("Failed to read the interface's settings", status));
            }
            row.NlMtu = mtu;
            // SetIpInterfaceEntry refuses an IPv4 row whose SitePrefixLength is not 0.
            row.SitePrefixLength = 0;
            // SAFETY: writes our row back.
            let status = unsafe { SetIpInterfaceEntry(&mut row) };
            if status != NO_ERROR {
                return Err(failed("Failed to set the interface's MTU", status));
            }
        }
        Ok(())
    }

    /// The path of the adapter's network device interface, or the Win32 error why there is none,
    /// as wintun.dll answers (api/adapter.c): CONFIGRETs through CM_MapCrToWin32Err, an empty
    /// list ERROR_DEVICE_NOT_AVAILABLE (the review, finding 10). Not logged: the wait for a new
    /// adapter asks again and again.
    fn interface_path(&self) -> Result<Vec<u16>, u32> {
        let interface_net = GUID::from_u128(0xcac88484_7515_4c03_82e6_71a87abac361);
        loop {
            let mut len = 0u32;
            // SAFETY: our NUL-terminated instance ID and an out parameter.
            let status = unsafe {
                CM_Get_Device_Interface_List_SizeW(
                    &mut len,
                    &interface_net,
                    self.instance_id.as_ptr(),
                    CM_GET_DEVICE_INTERFACE_LIST_PRESENT,
                )
            };
            if status != CR_SUCCESS {
                return Err(map_cr(status, ERROR_GEN_FAILURE));
            }
            let mut list = vec![0u16; len as usize];
            // SAFETY: a buffer of `len` characters, as the size call asked for.
            let status = unsafe {
                CM_Get_Device_Interface_ListW(
                    &interface_net,
                    self.instance_id.as_ptr(),
                    list.as_mut_ptr(),
                    len,
                    CM_GET_DEVICE_INTERFACE_LIST_PRESENT,
                )
            };
            match status {
                CR_SUCCESS => {
                    let first_end = list.iter().position(|&c| c == 0).unwrap_or(list.len());
                    if first_end == 0 {
                        return Err(ERROR_DEVICE_NOT_AVAILABLE);
                    }
                    list.truncate(first_end + 1);
                    return Ok(list);
                }
                // The list grew between the two calls: ask again.
                CR_BUFFER_SMALL => continue,
                other => return Err(map_cr(other, ERROR_GEN_FAILURE)),
            }
        }
    }

    /// Opens the adapter's device, to register rings with.
    pub(crate) fn open_device(&self) -> Result<Device, Error> {
        let path = self
            .interface_path()
            .map_err(|code| failed("Failed to find the adapter's device interface", code))?;
        // SAFETY: a NUL-terminated path; the handle is ours until the Device drops.
        let handle = unsafe {
            CreateFileW(
                path.as_ptr(),
                GENERIC_READ | GENERIC_WRITE,
                FILE_SHARE_READ | FILE_SHARE_WRITE | FILE_SHARE_DELETE,
                null(),
                OPEN_EXISTING,
                0,
                null_mut(),
            )
        };
        if handle == INVALID_HANDLE_VALUE {
            return Err(Error::Io(io::Error::last_os_error()));
        }
        Ok(Device::new(handle))
    }
}

/// A stub device of the instance ID, whose software key gets `SuggestedInstanceId`: NDIS takes
/// it as the network interface GUID when the real device of that instance ID binds.
fn suggest_instance_id(
    instance: &GUID,
    instance_string: &[u16],
    description: &[u16],
) -> Result<(), Error> {
    let no_hardware_ids = [0u16, 0];
    let class = GUID_DEVCLASS_NET;
    let properties = [property(
        DEVPKEY_Device_ClassGuid,
        DEVPROP_TYPE_GUID,
        std::slice::from_ref(&class),
    )];
    let (stub, instance_id) =
        create_software_device(instance_string, &no_hardware_ids, description, &properties)?;
    let result = software_key(&instance_id, KEY_SET_VALUE, true).and_then(|key| {
        let name = wide("SuggestedInstanceId");
        // SAFETY: writes our 16-byte GUID as a binary value.
        let status = unsafe {
            RegSetValueExW(
                key.0,
                name.as_ptr(),
                0,
                REG_BINARY,
                (instance as *const GUID).cast(),
                size_of::<GUID>() as u32,
            )
        };
        if status == ERROR_SUCCESS {
            Ok(())
        } else {
            Err(failed("Failed to set SuggestedInstanceId", status))
        }
    });
    // SAFETY: the stub's handle, closed once; the node keeps its software key.
    unsafe { SwDeviceClose(stub) };
    result
}

impl Drop for Adapter {
    /// A created adapter goes: its software device closed and its node removed. Without the
    /// installation lock, as wintun.dll's WintunCloseAdapter (api/adapter.c): a closing VPN does
    /// not wait behind another process's creation, up to a minute (the review, finding 17), and
    /// nothing else removes this node meanwhile, since its creator, this process, lives
    /// (`rules::is_orphan`).
    fn drop(&mut self) {
        let Some(device) = self.created.take() else {
            return;
        };
        // SAFETY: our software device handle, closed once.
        unsafe { SwDeviceClose(device) };
        let Ok(list) = DeviceList::new_net() else {
            return;
        };
        if list
            .open(&from_wide(&self.instance_id))
            .is_ok_and(|mut node| remove_device(&list, &mut node).is_ok())
        {
            log::info(&format!("Removed adapter {}", from_wide(&self.instance_id)));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Without nci.dll (Wine has none), naming reports why, ERROR_MOD_NOT_FOUND, where it once
    /// said ERROR_INVALID_PARAMETER (the review, finding 18). On Windows, where nci.dll is
    /// always there, there is nothing to check.
    #[test]
    fn a_missing_nci_dll_is_reported_as_such() {
        const ERROR_MOD_NOT_FOUND: u32 = 126;
        if system_function("nci.dll", c"NciSetConnectionName").is_some() {
            eprintln!("nci.dll is present: nothing to check");
            return;
        }
        assert_eq!(
            set_connection_name(&GUID::from_u128(1), "oxtun-test"),
            Err(ERROR_MOD_NOT_FOUND)
        );
    }
}
