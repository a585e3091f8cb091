//! What the Windows backend decides, apart from the system calls that carry it out: small pure
//! functions, compiled on every platform so that their tests run on Linux too (the calls
//! themselves can only run on Windows). Each rule cites where it comes from: wintun.dll 0.14's
//! `api/*.c` (WireGuard/wintun), Microsoft's documentation, or the review of oxtun.dll against
//! both (`../shared/reviews/api-review-2026-12-06.md`, "the review" below, with its finding's
//! number).

#![cfg_attr(
    not(windows),
    allow(
        dead_code,
        reason = "used by the Windows backend; only the tests run here"
    )
)]

use oxtun_abi::{
    CallerWidth, ExtendedRegistration, Features, RingRegistration, TUN_IOCTL_REGISTER_RINGS,
    TUN_IOCTL_REGISTER_RINGS_EX,
};

/// The private namespace that holds our machine-wide objects, and its boundary: only a process
/// whose token holds BUILTIN\Administrators enabled (an elevated administrator, or LocalSystem,
/// whose token holds it too) may create it ("The caller must be within the specified boundary
/// for the create operation to succeed", Microsoft's "Object Namespaces" page). A standard user,
/// or an administrator's filtered medium-integrity token (where Administrators is deny-only),
/// cannot, so no such process can squat it (the review, finding 1). wintun.dll keeps its mutexes
/// in a namespace of the same kind (api/namespace.c).
pub const NAMESPACE: &str = "oxtun";

/// The installation mutex, inside [`NAMESPACE`] ("prefix\name", CreatePrivateNamespaceW's page).
/// The name stays the same from one oxtun version to the next, so that they exclude each other.
pub const INSTALLATION_MUTEX: &str = "oxtun\\oxtun-installation";

/// Who may open the namespace and the mutex, and create and read the private folder:
/// LocalSystem and Administrators, all access, nothing inherited, at high integrity or above.
/// wintun.dll gives its namespace, mutexes and folder the same descriptor (api/main.c).
pub const SYSTEM_AND_ADMINISTRATORS_ONLY: &str =
    "O:SYD:P(A;;GA;;;SY)(A;;GA;;;BA)S:(ML;;NWNRNX;;;HI)";

/// How often the namespace is looked for again when it comes and goes between our calls.
pub const NAMESPACE_ATTEMPTS: u32 = 100;

/// The namespace call that failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NamespaceCall {
    Create,
    Open,
}

/// What to do after a namespace call failed with the Win32 error `error`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NamespaceStep {
    /// Another process created it first: open theirs.
    Open,
    /// It was gone again before we opened it (its creator closed it): create it.
    Create,
    /// A failure to report.
    Fail,
}

/// The namespace dance of wintun.dll's api/namespace.c: create; on ERROR_ALREADY_EXISTS open;
/// on ERROR_PATH_NOT_FOUND from the open (the namespace went away between the two calls) create
/// again. Anything else (ERROR_ACCESS_DENIED for a caller outside the boundary) is the answer.
pub fn after_namespace_failure(call: NamespaceCall, error: u32) -> NamespaceStep {
    const ERROR_PATH_NOT_FOUND: u32 = 3;
    const ERROR_ALREADY_EXISTS: u32 = 183;
    match (call, error) {
        (NamespaceCall::Create, ERROR_ALREADY_EXISTS) => NamespaceStep::Open,
        (NamespaceCall::Open, ERROR_PATH_NOT_FOUND) => NamespaceStep::Create,
        _ => NamespaceStep::Fail,
    }
}

/// Win32 errors the rules below take or give.
pub const ERROR_INVALID_PARAMETER: u32 = 87;
pub const ERROR_BUFFER_OVERFLOW: u32 = 111;
pub const ERROR_DUP_NAME: u32 = 52;

/// The longest adapter name: MAX_ADAPTER_NAME (128) less its NUL.
pub const MAX_NAME: usize = 127;

// Orphans (the review, finding 4).

/// A device node as CM_Get_DevNode_Status reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Presence {
    /// The call failed: the node is not present (a phantom).
    Absent,
    /// Present without DN_HAS_PROBLEM.
    Working,
    /// Present with DN_HAS_PROBLEM, and this problem code (CM_PROB_*).
    Problem(u32),
}

/// DN_HAS_PROBLEM (cfg.h).
const DN_HAS_PROBLEM: u32 = 0x400;

/// The presence of a node, from CM_Get_DevNode_Status's status and problem code, or None if
/// the call failed.
pub fn presence(status: Option<(u32, u32)>) -> Presence {
    match status {
        None => Presence::Absent,
        Some((flags, problem)) if flags & DN_HAS_PROBLEM != 0 => Presence::Problem(problem),
        Some(_) => Presence::Working,
    }
}

/// The process that created an adapter, as far as this process can tell.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Owner {
    /// It runs, or it may: we cannot say it does not.
    Alive,
    /// It is gone: no process has its ID, or the one that has it started at another time.
    Gone,
    /// The device carries no owner we can read (made by an older or newer oxtun, or by hand with
    /// devcon).
    Unknown,
}

/// What looking for the owner found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OwnerProbe {
    /// The device has no owner property, or one not of our format.
    NoRecord,
    /// OpenProcess on the recorded ID failed with this Win32 error.
    OpenFailed(u32),
    /// A process of that ID runs; whether it started when the record says.
    Running { same_start: bool },
}

/// The owner, from what looking for it found. OpenProcess fails with ERROR_INVALID_PARAMETER when
/// no process has the ID; any other failure (ERROR_ACCESS_DENIED for a service whose process
/// refuses us query access) says nothing about whether it runs, so it counts as alive (the
/// review, finding 4: a live VPN's adapter was removable that way).
pub fn owner(probe: OwnerProbe) -> Owner {
    match probe {
        OwnerProbe::NoRecord => Owner::Unknown,
        OwnerProbe::OpenFailed(ERROR_INVALID_PARAMETER) => Owner::Gone,
        OwnerProbe::OpenFailed(_) => Owner::Alive,
        OwnerProbe::Running { same_start: true } => Owner::Alive,
        OwnerProbe::Running { same_start: false } => Owner::Gone,
    }
}

/// Whether a device of ours is an orphan, to remove. wintun.dll removes only devices that are not
/// present or have a problem, never a present, working one (api/adapter.c,
/// AdapterCleanupOrphanedDevices). A software device goes when its creator's handle closes
/// (SwDeviceCreate: "When this handle is closed, PnP will remove the device"), so an adapter
/// whose creator died is never present, and requiring that loses no real orphan. We add the
/// owner: one that may run keeps its adapter whatever its state, and a present adapter with a
/// problem is removed only when its owner is known to be gone (a devcon-made one, with no
/// owner, that an administrator disabled stays).
pub fn is_orphan(presence: Presence, owner: Owner) -> bool {
    match (presence, owner) {
        (_, Owner::Alive) | (Presence::Working, _) => false,
        (Presence::Absent, Owner::Gone | Owner::Unknown) => true,
        (Presence::Problem(_), Owner::Gone) => true,
        (Presence::Problem(_), Owner::Unknown) => false,
    }
}

// Waiting for an adapter's interface (the review, findings 7, 10 and 12).

/// DN_NEED_RESTART (cfg.h: "System needs to be restarted for this Devnode to work properly").
const DN_NEED_RESTART: u32 = 0x100;

/// CM_PROB_* codes (cfg.h) the waits below look at.
pub const CM_PROB_FAILED_START: u32 = 0x0A;
pub const CM_PROB_NEED_RESTART: u32 = 0x0E;
pub const CM_PROB_DISABLED: u32 = 0x16;
pub const CM_PROB_FAILED_INSTALL: u32 = 0x1C;
pub const CM_PROB_FAILED_ADD: u32 = 0x1F;
pub const CM_PROB_DISABLED_SERVICE: u32 = 0x20;
pub const CM_PROB_FAILED_DRIVER_ENTRY: u32 = 0x25;
pub const CM_PROB_DRIVER_FAILED_PRIOR_UNLOAD: u32 = 0x26;
pub const CM_PROB_DRIVER_FAILED_LOAD: u32 = 0x27;
pub const CM_PROB_DRIVER_SERVICE_KEY_INVALID: u32 = 0x28;
pub const CM_PROB_FAILED_POST_START: u32 = 0x2B;
pub const CM_PROB_DRIVER_BLOCKED: u32 = 0x30;
pub const CM_PROB_UNSIGNED_DRIVER: u32 = 0x34;

/// Whether a device with this problem stays without a driver or unstarted until something
/// outside the installation changes (a restart, an administrator, a trusted signature), so that
/// waiting longer cannot help. Problems a device passes through while Windows installs its
/// driver and configures the network class (CM_PROB_NOT_CONFIGURED, CM_PROB_FAILED_INSTALL,
/// CM_PROB_NEED_CLASS_CONFIG, CM_PROB_WAITING_ON_DEPENDENCY, ...) are waited out; Microsoft's
/// "Device Manager Error Messages" page describes each code.
pub fn problem_is_final(problem: u32) -> bool {
    matches!(
        problem,
        CM_PROB_FAILED_START
            | CM_PROB_NEED_RESTART
            | CM_PROB_DISABLED
            | CM_PROB_FAILED_ADD
            | CM_PROB_DISABLED_SERVICE
            | CM_PROB_FAILED_DRIVER_ENTRY
            | CM_PROB_DRIVER_FAILED_PRIOR_UNLOAD
            | CM_PROB_DRIVER_FAILED_LOAD
            | CM_PROB_DRIVER_SERVICE_KEY_INVALID
            | CM_PROB_FAILED_POST_START
            | CM_PROB_DRIVER_BLOCKED
            | CM_PROB_UNSIGNED_DRIVER
    )
}

/// Why an adapter's interface is not up when waiting for it stops.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NotUp {
    /// The device has this problem code (CM_PROB_*).
    Problem(u32),
    /// The device waits for Windows to restart.
    RestartNeeded,
    /// Time ran out with no problem reported.
    TimedOut,
}

/// While an adapter's interface is not up yet: None to wait on, or why to stop, from
/// CM_Get_DevNode_Status's status and problem code (None if the call failed) and whether the
/// time allowed is up. wintun.dll waits out its time whatever the device's state and then reports
/// the device's problem status (api/adapter.c, WintunCreateAdapter); a problem that waiting cannot
/// cure (the most likely first-run failures: Code 52, an untrusted signature; Code 38, an older
/// image still loaded for another adapter) is reported at once instead of after the whole wait
/// (the review, finding 10).
pub fn while_waiting(node: Option<(u32, u32)>, timed_out: bool) -> Option<NotUp> {
    let problem = node
        .filter(|(status, _)| status & DN_HAS_PROBLEM != 0)
        .map(|(_, problem)| problem);
    match problem {
        Some(problem) if problem_is_final(problem) || timed_out => Some(NotUp::Problem(problem)),
        _ if node.is_some_and(|(status, _)| status & DN_NEED_RESTART != 0) => {
            Some(NotUp::RestartNeeded)
        }
        _ if timed_out => Some(NotUp::TimedOut),
        _ => None,
    }
}

/// ERROR_DEVICE_NOT_AVAILABLE (winerror.h).
pub const ERROR_DEVICE_NOT_AVAILABLE: u32 = 4319;

/// The Win32 error a device that did not come up is reported with, given its problem status
/// (DEVPKEY_Device_ProblemStatus) as RtlNtStatusToDosError maps it: that error, or
/// ERROR_DEVICE_NOT_AVAILABLE when the status is success or absent, as wintun.dll's
/// WintunCreateAdapter answers (api/adapter.c).
pub fn not_up_error(problem_status_error: u32) -> u32 {
    match problem_status_error {
        0 => ERROR_DEVICE_NOT_AVAILABLE,
        error => error,
    }
}

/// What to tell the user about why the interface is not up.
pub fn not_up_advice(why: NotUp) -> &'static str {
    match why {
        NotUp::Problem(CM_PROB_UNSIGNED_DRIVER) => {
            "Windows does not trust the driver's signature; on a test machine, turn test \
             signing on and trust the package's certificate (docs/windows.md)"
        }
        NotUp::Problem(CM_PROB_DRIVER_FAILED_PRIOR_UNLOAD | CM_PROB_NEED_RESTART)
        | NotUp::RestartNeeded => {
            "an older oxtun.sys is still loaded for another adapter of ours; the new one starts \
             once every adapter of ours is closed, or after a restart"
        }
        NotUp::Problem(CM_PROB_FAILED_INSTALL) => "no driver could be installed on the device",
        NotUp::Problem(CM_PROB_DISABLED) => "the device is disabled",
        NotUp::Problem(CM_PROB_DISABLED_SERVICE) => "the service oxtun is disabled",
        NotUp::Problem(CM_PROB_DRIVER_BLOCKED) => {
            "Windows blocks the driver from loading (memory integrity, or a driver block list)"
        }
        NotUp::Problem(
            CM_PROB_FAILED_START
            | CM_PROB_FAILED_ADD
            | CM_PROB_FAILED_DRIVER_ENTRY
            | CM_PROB_DRIVER_FAILED_LOAD
            | CM_PROB_DRIVER_SERVICE_KEY_INVALID
            | CM_PROB_FAILED_POST_START,
        ) => "the driver failed to load or to start the adapter; the System event log says more",
        NotUp::Problem(_) => "see the device's problem code in Device Manager",
        NotUp::TimedOut => "the device reports no problem, but its interface did not appear",
    }
}

// Naming the interface (the review, findings 3 and 9).

/// What naming the interface does next.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NamingStep {
    /// NciSetConnectionName on our interface with this name.
    NameOurs(String),
    /// Find the interface that holds this name (ConvertInterfaceAliasToLuid, then its GUID).
    FindHolder(String),
    /// NciSetConnectionName on the holder with this name; if it is ours, its name property too.
    MoveHolder(String),
    /// Our interface has this name.
    Done(String),
    /// Give up with this Win32 error.
    Fail(u32),
}

/// What the last step's call gave.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NamingOutcome {
    Named,
    /// ERROR_DUP_NAME: another interface has the name.
    Taken,
    Failed(u32),
    HolderFound,
    /// The holder cannot be found: a non-present adapter keeps its connection name and is not an
    /// IP Helper interface (the review, finding 3).
    HolderNotFound,
}

#[derive(Clone, Copy, Debug)]
enum NamingState {
    Ours,
    Finding,
    Moving { suffix: u32 },
    Retaking,
}

/// Naming our interface, as wintun.dll's NciSetAdapterName does (api/adapter.c): the name; if
/// another interface has it, that one moves to "Name 1", "Name 2", ... (the first free), and ours
/// takes the name; if the holder cannot be found or moved, ours becomes "Name 1", "Name 2", ...
/// instead, each tried the same way, up to 1000. A name too long for a suffix fails with
/// ERROR_BUFFER_OVERFLOW, as wintun.dll's truncated formatting does.
pub struct Naming {
    name: String,
    /// The name ours is being given now: the name, then "name N" for round N.
    wanted: String,
    round: u32,
    state: NamingState,
}

/// The highest suffix wintun.dll tries (its MaxSuffix).
const MAX_SUFFIX: u32 = 1000;

/// "name N", or None if it does not fit MAX_NAME.
fn suffixed(name: &str, suffix: u32) -> Option<String> {
    let proposal = format!("{name} {suffix}");
    (proposal.encode_utf16().count() <= MAX_NAME).then_some(proposal)
}

impl Naming {
    /// Starts naming our interface `name`; the first step.
    pub fn start(name: &str) -> (Naming, NamingStep) {
        let naming = Naming {
            name: name.to_string(),
            wanted: name.to_string(),
            round: 0,
            state: NamingState::Ours,
        };
        let step = NamingStep::NameOurs(naming.wanted.clone());
        (naming, step)
    }

    /// The name our interface is being given now.
    pub fn wanted(&self) -> &str {
        &self.wanted
    }

    /// The step after the last one gave `outcome`.
    pub fn next(&mut self, outcome: NamingOutcome) -> NamingStep {
        use NamingOutcome::*;
        match (self.state, outcome) {
            (NamingState::Ours | NamingState::Retaking, Named) => {
                NamingStep::Done(self.wanted.clone())
            }
            (NamingState::Ours, Taken) => {
                self.state = NamingState::Finding;
                NamingStep::FindHolder(self.wanted.clone())
            }
            (NamingState::Ours | NamingState::Retaking, Failed(error)) => NamingStep::Fail(error),
            (NamingState::Finding, HolderFound) => self.move_holder(1),
            (NamingState::Moving { .. }, Named) => {
                self.state = NamingState::Retaking;
                NamingStep::NameOurs(self.wanted.clone())
            }
            (NamingState::Moving { suffix }, Taken) => self.move_holder(suffix + 1),
            // The holder cannot be found, or moved, or took our name back: ours takes the next
            // suffix instead.
            _ => self.next_round(),
        }
    }

    /// Proposes "name `suffix`" (or the next that differs from the name we want) to the holder.
    fn move_holder(&mut self, mut suffix: u32) -> NamingStep {
        loop {
            if suffix > MAX_SUFFIX {
                return self.next_round();
            }
            let Some(proposal) = suffixed(&self.name, suffix) else {
                return NamingStep::Fail(ERROR_BUFFER_OVERFLOW);
            };
            if !proposal.eq_ignore_ascii_case(&self.wanted) {
                self.state = NamingState::Moving { suffix };
                return NamingStep::MoveHolder(proposal);
            }
            suffix += 1;
        }
    }

    fn next_round(&mut self) -> NamingStep {
        self.round += 1;
        if self.round > MAX_SUFFIX {
            return NamingStep::Fail(ERROR_DUP_NAME);
        }
        let Some(wanted) = suffixed(&self.name, self.round) else {
            return NamingStep::Fail(ERROR_BUFFER_OVERFLOW);
        };
        self.wanted = wanted;
        self.state = NamingState::Ours;
        NamingStep::NameOurs(self.wanted.clone())
    }
}

// The oldest Windows (the review, finding 15).

/// The first Windows build our driver package installs on: Windows 10 version 2004, as the INF's
/// models section says (`NT$ARCH$.10.0...19041` in wintun.inx).
pub const MIN_WINDOWS_BUILD: u32 = 19041;

/// Whether Windows of this version (RtlGetVersion's major, minor and build numbers) can run an
/// adapter of ours. On an older one the store has no driver for our hardware ID that Windows
/// would install, so creation would wait out its whole time and fail obscurely; it is refused at
/// once instead, with ERROR_OLD_WIN_VERSION.
pub fn windows_supported(major: u32, minor: u32, build: u32) -> bool {
    (major, minor, build) >= (10, 0, MIN_WINDOWS_BUILD)
}

/// ERROR_OLD_WIN_VERSION (winerror.h): "The specified program requires a newer version of
/// Windows."
pub const ERROR_OLD_WIN_VERSION: u32 = 1150;

// Removing a device (the review, finding 5).

/// IMAGE_FILE_MACHINE_* values (winnt.h).
pub const MACHINE_UNKNOWN: u16 = 0;
pub const MACHINE_I386: u16 = 0x014C;
pub const MACHINE_AMD64: u16 = 0x8664;
pub const MACHINE_ARM64: u16 = 0xAA64;

/// Where a device node is removed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Removal {
    /// The class installer, in this process.
    InProcess,
    /// The native helper DLL, run by the native rundll32.
    NativeHelper,
    /// In this process although wintun.dll would use a native helper: an x64 process emulated on
    /// ARM64 (not WOW64) for which no ARM64 helper exists. Unverified; logged as such.
    InProcessUnverified,
    /// Nowhere: a 32-bit process whose native helper this DLL does not carry.
    Unsupported,
}

/// Where this build (machine `build`) removes devices, given IsWow64Process2's process and
/// native machines and the machine of the helper it carries, if any. wintun.dll sends removal
/// to a native helper whenever the native machine differs from the one it was built for
/// (api/main.c sets NativeMachine; api/adapter.c, AdapterRemoveInstance), x64 on ARM64
/// included. A WOW64 process cannot run the class installer at all (SetupDiCallClassInstaller
/// fails with ERROR_IN_WOW64); an emulated x64 process is not WOW64 (its process machine is
/// IMAGE_FILE_MACHINE_UNKNOWN), and whether the class installer works there is not documented.
pub fn removal(build: u16, process: u16, native: u16, helper: Option<u16>) -> Removal {
    if native == build || native == MACHINE_UNKNOWN {
        return Removal::InProcess;
    }
    if helper == Some(native) {
        return Removal::NativeHelper;
    }
    if process == MACHINE_UNKNOWN {
        Removal::InProcessUnverified
    } else {
        Removal::Unsupported
    }
}

// Our device handle when its device goes (issue 21: oxtun.dll closes its handle itself).

/// CM_NOTIFY_ACTION values (cfgmgr32.h) of a CM_NOTIFY_FILTER_TYPE_DEVICEHANDLE registration.
pub const CM_NOTIFY_ACTION_DEVICEQUERYREMOVE: i32 = 2;
pub const CM_NOTIFY_ACTION_DEVICEREMOVEPENDING: i32 = 4;
pub const CM_NOTIFY_ACTION_DEVICEREMOVECOMPLETE: i32 = 5;

/// Whether a session closes its device handle on this PnP event of the adapter's device.
/// Microsoft's "Registering for Notification of Device Interface Arrival and Device Removal"
/// (and the CM_NOTIFY_ACTION page): on a query-remove, close every handle to the device so the
/// removal can go on; on remove-pending and remove-complete, the device is going or gone, close
/// it too. A failed query-remove would have the handle reopened, but closing it ended the ring
/// registration (the driver tears down on the handle's cleanup), so there is nothing to resume:
/// the session reports its end (ERROR_HANDLE_EOF), as after wintun.dll's forced close, and the
/// application starts a new one. Closing it ourselves means the driver's own forced close on
/// query-remove finds nothing of ours to close.
pub fn closes_handle_on(action: i32) -> bool {
    matches!(
        action,
        CM_NOTIFY_ACTION_DEVICEQUERYREMOVE
            | CM_NOTIFY_ACTION_DEVICEREMOVEPENDING
            | CM_NOTIFY_ACTION_DEVICEREMOVECOMPLETE
    )
}

// The driver package (the review's "Driver installation": consistent, kept).

/// A package's DriverVer as (date YYYYMMDD, version A.B.C.D in 16-bit parts), which order as
/// Windows ranks packages: by date, then version.
pub type DriverVer = (u32, u64);

/// The package this library carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Embedded {
    /// None was built in.
    Nothing,
    /// Its INF has no valid DriverVer.
    BadInf,
    Package {
        version: DriverVer,
        catalog: bool,
    },
}

/// What to do about the driver before creating an adapter.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Installation {
    /// The store has ours at this version, as new as the embedded one or newer.
    Installed(DriverVer),
    /// Install the embedded package, then remove these older ones (indices into the store's list;
    /// Windows refuses those that devices still use).
    Install {
        then_remove: Vec<usize>,
    },
    NoDriver,
    BadInf,
    /// The package must be installed but has no catalog (made only on Windows, by inf2cat).
    NoCatalog,
}

/// wintun.dll's rule (api/driver.c): the store's newest package of our hardware ID is used if it
/// is at least as new as the embedded one, never replaced by an older one; otherwise the embedded
/// one is installed and the older ones removed.
pub fn installation(store: &[DriverVer], embedded: Embedded) -> Installation {
    let newest = store.iter().copied().max();
    match embedded {
        Embedded::Nothing => newest.map_or(Installation::NoDriver, Installation::Installed),
        Embedded::BadInf => Installation::BadInf,
        Embedded::Package { version, catalog } => match newest {
            Some(newest) if newest >= version => Installation::Installed(newest),
            _ if !catalog => Installation::NoCatalog,
            _ => Installation::Install {
                then_remove: (0..store.len()).filter(|&i| store[i] < version).collect(),
            },
        },
    }
}

// The running driver's version (the review, finding 2).

/// The full path of the loaded module whose file name is `file` (case-insensitive), from
/// NtQuerySystemInformation(SystemModuleInformation)'s answer: RTL_PROCESS_MODULES, a ULONG
/// count and then, aligned to a pointer, RTL_PROCESS_MODULE_INFORMATION entries of three
/// pointers (Section, MappedBase, ImageBase), two ULONGs, four USHORTs (the last
/// OffsetToFileName) and a 256-byte FullPathName. Windows 11 24H2 zeroes the image bases for
/// callers without SeDebugPrivilege enabled, so nothing here reads them: the names are still
/// given, which is what wintun.dll relies on (api/driver.c). Every field is checked against the
/// buffer; `pointer` is this process's pointer size (a WOW64 process gets the 32-bit layout).
pub fn loaded_module_path(modules: &[u8], pointer: usize, file: &str) -> Option<String> {
    const PATH_LEN: usize = 256;
    let entry_len = 3 * pointer + 4 + 4 + 4 * 2 + PATH_LEN;
    let offset_of_name_offset = 3 * pointer + 4 + 4 + 3 * 2;
    let offset_of_path = 3 * pointer + 4 + 4 + 4 * 2;
    let count = u32::from_le_bytes(modules.get(..4)?.try_into().ok()?) as usize;
    let entries = modules.get(pointer.max(4)..)?;
    for entry in entries.chunks_exact(entry_len).take(count) {
        let name_at = u16::from_le_bytes([
            entry[offset_of_name_offset],
            entry[offset_of_name_offset + 1],
        ]) as usize;
        let path = &entry[offset_of_path..];
        let path = &path[..path.iter().position(|&byte| byte == 0).unwrap_or(PATH_LEN)];
        let Some(name) = path.get(name_at..) else {
            continue;
        };
        if name.eq_ignore_ascii_case(file.as_bytes()) && path.is_ascii() {
            return Some(String::from_utf8_lossy(path).into_owned());
        }
    }
    None
}

/// A kernel module's NT path (`\SystemRoot\...`, `\??\C:\...`) as a path the Win32 file
/// functions open: under `\\?\GLOBALROOT`, the object namespace's root, as wintun.dll reads
/// its driver's version (api/driver.c).
pub fn globalroot_path(nt_path: &str) -> String {
    format!("\\\\?\\GLOBALROOT{nt_path}")
}

/// The IOCTL that registers rings, as `DeviceIoControl` takes it: its code and input buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RegistrationIoctl {
    pub code: u32,
    buffer: [u8; ExtendedRegistration::encoded_len(CallerWidth::Bits64)],
    len: usize,
}

impl RegistrationIoctl {
    /// The input buffer.
    pub fn input(&self) -> &[u8] {
        &self.buffer[..self.len]
    }
}

/// The IOCTL that registers `rings` asking for `features`: with none, Wintun's
/// TUN_IOCTL_REGISTER_RINGS and its TUN_REGISTER_RINGS, byte for byte what wintun.dll sends
/// (api/session.c); otherwise ours, TUN_IOCTL_REGISTER_RINGS_EX, whose buffer carries Size,
/// Version and Features before the same rings (docs/offloads.md, "The registration extension").
/// Each in the layout of a caller of `width`: a 32-bit process's rings are TUN_REGISTER_RINGS_32,
/// as wintun.dll's x86 build sends them (its own struct, with 32-bit pointers and handles). `None` if a pointer or handle does not fit that layout.
pub fn registration_ioctl(
    rings: &RingRegistration,
    features: Features,
    width: CallerWidth,
) -> Option<RegistrationIoctl> {
    let mut ioctl = RegistrationIoctl {
        code: TUN_IOCTL_REGISTER_RINGS,
        buffer: [0; ExtendedRegistration::encoded_len(CallerWidth::Bits64)],
        len: 0,
    };
    ioctl.len = if features == Features::NONE {
        rings.encode(width, &mut ioctl.buffer)?
    } else {
        ioctl.code = TUN_IOCTL_REGISTER_RINGS_EX;
        ExtendedRegistration {
            rings: *rings,
            features,
        }
        .encode(width, &mut ioctl.buffer)?
    };
    Some(ioctl)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// wintun.dll's api/namespace.c (NamespaceRuntimeInit): create, else open an existing one,
    /// else create again if it vanished; any other error ends it.
    #[test]
    fn the_namespace_is_created_or_opened_as_wintun_dll_does() {
        use NamespaceCall::*;
        assert_eq!(after_namespace_failure(Create, 183), NamespaceStep::Open);
        assert_eq!(after_namespace_failure(Open, 3), NamespaceStep::Create);
        // ERROR_ACCESS_DENIED: not within the boundary (a standard user): no retry.
        assert_eq!(after_namespace_failure(Create, 5), NamespaceStep::Fail);
        assert_eq!(after_namespace_failure(Open, 5), NamespaceStep::Fail);
        // ERROR_ALREADY_EXISTS from an open, or ERROR_PATH_NOT_FOUND from a create: not the race.
        assert_eq!(after_namespace_failure(Open, 183), NamespaceStep::Fail);
        assert_eq!(after_namespace_failure(Create, 3), NamespaceStep::Fail);
    }

    #[test]
    fn the_mutex_lives_in_the_namespace() {
        assert_eq!(
            INSTALLATION_MUTEX
                .split_once('\\')
                .map(|(prefix, _)| prefix),
            Some(NAMESPACE)
        );
        assert!(!INSTALLATION_MUTEX.starts_with("Global\\"));
    }

    /// The review, finding 4, and wintun.dll's AdapterCleanupOrphanedDevices (api/adapter.c):
    /// a present, working device is never an orphan; one whose owner may run neither.
    #[test]
    fn only_devices_not_working_whose_owner_is_gone_are_orphans() {
        use Owner::*;
        const CM_PROB_DISABLED: u32 = 22;
        const CM_PROB_FAILED_START: u32 = 10;
        // CM_Get_DevNode_Status: failed (phantom), working, problem.
        assert_eq!(presence(None), Presence::Absent);
        assert_eq!(presence(Some((0x0180_200A, 0))), Presence::Working);
        assert_eq!(
            presence(Some((0x0180_040A, CM_PROB_DISABLED))),
            Presence::Problem(CM_PROB_DISABLED)
        );
        // The creator crashed: its software device went with its handle.
        assert!(is_orphan(Presence::Absent, Gone));
        // A live VPN service whose process refuses us OpenProcess: its adapter stays (the
        // review's nebula-1740 case).
        assert_eq!(owner(OwnerProbe::OpenFailed(5)), Alive);
        assert!(!is_orphan(
            Presence::Working,
            owner(OwnerProbe::OpenFailed(5))
        ));
        // A devcon-made adapter (no owner property), working: WintunDeleteDriver leaves it.
        assert!(!is_orphan(Presence::Working, Unknown));
        // ... disabled by an administrator: it stays too.
        assert!(!is_orphan(Presence::Problem(CM_PROB_DISABLED), Unknown));
        // ... gone from the machine (a phantom): removed, as wintun.dll removes every phantom.
        assert!(is_orphan(Presence::Absent, Unknown));
        // A failed device whose creator is gone: removed (wintun.dll: DN_HAS_PROBLEM).
        assert!(is_orphan(Presence::Problem(CM_PROB_FAILED_START), Gone));
        // Whatever its state, an adapter whose creator may run is its creator's to remove.
        for state in [Presence::Absent, Presence::Problem(CM_PROB_FAILED_START)] {
            assert!(!is_orphan(state, Alive));
        }
    }

    /// OpenProcess: ERROR_INVALID_PARAMETER when no process has the ID; the record's creation
    /// time tells a reused ID apart.
    #[test]
    fn an_owner_is_gone_only_when_windows_says_so() {
        assert_eq!(owner(OwnerProbe::OpenFailed(87)), Owner::Gone);
        assert_eq!(owner(OwnerProbe::OpenFailed(5)), Owner::Alive);
        assert_eq!(owner(OwnerProbe::OpenFailed(1450)), Owner::Alive);
        assert_eq!(
            owner(OwnerProbe::Running { same_start: true }),
            Owner::Alive
        );
        assert_eq!(
            owner(OwnerProbe::Running { same_start: false }),
            Owner::Gone
        );
        assert_eq!(owner(OwnerProbe::NoRecord), Owner::Unknown);
    }

    /// The review, finding 10, and wintun.dll's WintunCreateAdapter (api/adapter.c): waiting
    /// stops at once on a problem waiting cannot cure, and otherwise when time is up; the
    /// answer is the problem status, or ERROR_DEVICE_NOT_AVAILABLE.
    #[test]
    fn waiting_for_the_interface_stops_at_a_problem_that_stays() {
        const STARTED: u32 = 0x0180_200A; // DN_STARTED and friends, as a working adapter has
        const PROBLEM: u32 = 0x0180_240A; // ... with DN_HAS_PROBLEM
        // Still being installed, or not yet enumerated: wait.
        assert_eq!(while_waiting(None, false), None);
        assert_eq!(while_waiting(Some((STARTED, 0)), false), None);
        for passing in [
            1, // CM_PROB_NOT_CONFIGURED
            CM_PROB_FAILED_INSTALL,
            0x38, // CM_PROB_NEED_CLASS_CONFIG
            0x33, // CM_PROB_WAITING_ON_DEPENDENCY
        ] {
            assert_eq!(while_waiting(Some((PROBLEM, passing)), false), None);
            // ... until the time is up, when the problem is the answer.
            assert_eq!(
                while_waiting(Some((PROBLEM, passing)), true),
                Some(NotUp::Problem(passing))
            );
        }
        // Code 52 (untrusted signature), 38 (an older image still loaded: finding 12), 10:
        // at once.
        for stays in [
            CM_PROB_UNSIGNED_DRIVER,
            CM_PROB_DRIVER_FAILED_PRIOR_UNLOAD,
            CM_PROB_NEED_RESTART,
            CM_PROB_FAILED_START,
            CM_PROB_DISABLED,
        ] {
            assert_eq!(
                while_waiting(Some((PROBLEM, stays)), false),
                Some(NotUp::Problem(stays))
            );
        }
        // DN_HAS_PROBLEM clear: the problem field means nothing.
        assert_eq!(
            while_waiting(Some((STARTED, CM_PROB_UNSIGNED_DRIVER)), false),
            None
        );
        // DN_NEED_RESTART without a problem.
        assert_eq!(
            while_waiting(Some((STARTED | 0x100, 0)), false),
            Some(NotUp::RestartNeeded)
        );
        assert_eq!(while_waiting(None, true), Some(NotUp::TimedOut));
        assert_eq!(
            while_waiting(Some((STARTED, 0)), true),
            Some(NotUp::TimedOut)
        );
        // RtlNtStatusToDosError(STATUS_INVALID_IMAGE_HASH) = ERROR_INVALID_IMAGE_HASH (577).
        assert_eq!(not_up_error(577), 577);
        assert_eq!(not_up_error(0), ERROR_DEVICE_NOT_AVAILABLE);
        assert!(not_up_advice(NotUp::Problem(CM_PROB_UNSIGNED_DRIVER)).contains("signature"));
        assert!(not_up_advice(NotUp::RestartNeeded).contains("older oxtun.sys"));
    }

    /// Runs a naming to its end with the outcomes `world` gives each step; the steps taken.
    fn name(name: &str, mut world: impl FnMut(&NamingStep) -> NamingOutcome) -> Vec<NamingStep> {
        let (mut naming, mut step) = Naming::start(name);
        let mut steps = Vec::new();
        loop {
            steps.push(step.clone());
            if matches!(step, NamingStep::Done(_) | NamingStep::Fail(_)) {
                return steps;
            }
            step = naming.next(world(&step));
        }
    }

    use NamingOutcome::*;
    use NamingStep::*;

    fn s(text: &str) -> String {
        text.to_string()
    }

    /// wintun.dll's NciSetAdapterName (api/adapter.c): a free name is taken at once.
    #[test]
    fn a_free_name_is_taken() {
        assert_eq!(name("wg0", |_| Named), [NameOurs(s("wg0")), Done(s("wg0"))]);
    }

    /// ... a holder that can be found moves to "wg0 1", the first free suffix, and ours takes
    /// the name.
    #[test]
    fn a_holder_moves_to_the_first_free_suffix() {
        let mut holder_moved = false;
        let steps = name("wg0", |step| match step {
            NameOurs(n) if n == "wg0" && !holder_moved => Taken,
            NameOurs(n) if n == "wg0" => Named,
            FindHolder(_) => HolderFound,
            MoveHolder(n) if n == "wg0 1" => Taken,
            MoveHolder(_) => {
                holder_moved = true;
                Named
            }
            _ => unreachable!(),
        });
        assert_eq!(
            steps,
            [
                NameOurs(s("wg0")),
                FindHolder(s("wg0")),
                MoveHolder(s("wg0 1")),
                MoveHolder(s("wg0 2")),
                NameOurs(s("wg0")),
                Done(s("wg0"))
            ]
        );
    }

    /// ... a holder IP Helper cannot find (a phantom of another product keeps its alias, the
    /// review, finding 3) stays, and ours comes up as "wg0 1"; creation does not fail.
    #[test]
    fn a_holder_that_cannot_be_found_leaves_ours_a_suffix() {
        let steps = name("wg0", |step| match step {
            NameOurs(n) if n == "wg0" => Taken,
            NameOurs(_) => Named,
            FindHolder(_) => HolderNotFound,
            _ => unreachable!(),
        });
        assert_eq!(
            steps,
            [
                NameOurs(s("wg0")),
                FindHolder(s("wg0")),
                NameOurs(s("wg0 1")),
                Done(s("wg0 1"))
            ]
        );
    }

    /// ... a holder that cannot be renamed (another error than ERROR_DUP_NAME) likewise; and a
    /// holder of the suffixed name is moved aside in turn, never onto the name we want.
    #[test]
    fn a_holder_that_cannot_move_leaves_ours_a_suffix() {
        let steps = name("wg0", |step| match step {
            NameOurs(n) if n == "wg0" || n == "wg0 1" => Taken,
            NameOurs(_) => Named,
            FindHolder(n) if n == "wg0" => HolderFound,
            FindHolder(_) => HolderNotFound,
            MoveHolder(_) => Failed(5),
            _ => unreachable!(),
        });
        assert_eq!(
            steps,
            [
                NameOurs(s("wg0")),
                FindHolder(s("wg0")),
                MoveHolder(s("wg0 1")),
                NameOurs(s("wg0 1")),
                FindHolder(s("wg0 1")),
                NameOurs(s("wg0 2")),
                Done(s("wg0 2"))
            ]
        );
        let (mut naming, _) = Naming::start("wg0");
        naming.next(Taken);
        naming.next(HolderNotFound);
        assert_eq!(naming.next(Taken), FindHolder(s("wg0 1")));
        assert_eq!(
            naming.next(HolderFound),
            MoveHolder(s("wg0 2")),
            "not onto wg0 1"
        );
    }

    /// ... any other error naming ours is the answer; a name with no room for a suffix fails
    /// with ERROR_BUFFER_OVERFLOW (wintun.dll's truncated _snwprintf_s); after 1000 suffixes,
    /// ERROR_DUP_NAME.
    #[test]
    fn naming_gives_up_as_wintun_dll_does() {
        assert_eq!(name("wg0", |_| Failed(5)), [NameOurs(s("wg0")), Fail(5)]);
        let long = "x".repeat(MAX_NAME);
        assert_eq!(
            name(&long, |step| match step {
                NameOurs(_) => Taken,
                _ => HolderNotFound,
            })
            .last(),
            Some(&Fail(ERROR_BUFFER_OVERFLOW))
        );
        let steps = name("wg0", |step| match step {
            NameOurs(_) => Taken,
            _ => HolderNotFound,
        });
        assert_eq!(steps.last(), Some(&Fail(ERROR_DUP_NAME)));
        assert!(steps.contains(&NameOurs(s("wg0 1000"))));
        assert!(!steps.contains(&NameOurs(s("wg0 1001"))));
    }

    /// The review, finding 15: Windows 10 2004 and later, as the INF says.
    #[test]
    fn windows_before_10_2004_is_refused() {
        for (major, minor, build, supported) in [
            (6, 1, 7601, false),   // Windows 7 SP1
            (6, 3, 9600, false),   // Windows 8.1
            (10, 0, 10240, false), // Windows 10 1507
            (10, 0, 17763, false), // Windows 10 1809, Server 2019, LTSC 2019
            (10, 0, 18363, false), // Windows 10 1909
            (10, 0, 19041, true),  // Windows 10 2004
            (10, 0, 19045, true),  // Windows 10 22H2
            (10, 0, 20348, true),  // Server 2022
            (10, 0, 26100, true),  // Windows 11 24H2
        ] {
            assert_eq!(
                windows_supported(major, minor, build),
                supported,
                "{major}.{minor}.{build}"
            );
        }
        let inf = include_str!("../../../../wintun.inx");
        assert!(
            inf.contains(&format!("NT$ARCH$.10.0...{MIN_WINDOWS_BUILD}")),
            "the INF's minimum build is MIN_WINDOWS_BUILD"
        );
    }

    /// wintun.dll routes removal to a native helper whenever the native machine is not the
    /// build's (api/main.c, api/adapter.c); the review, finding 5.
    #[test]
    fn removal_goes_where_the_class_installer_can_run() {
        use Removal::*;
        // Native builds on their own machine.
        assert_eq!(
            removal(MACHINE_AMD64, MACHINE_UNKNOWN, MACHINE_AMD64, None),
            InProcess
        );
        assert_eq!(
            removal(MACHINE_ARM64, MACHINE_UNKNOWN, MACHINE_ARM64, None),
            InProcess
        );
        // x86 on x64 (WOW64), with the x64 helper the x86 DLL carries.
        let x64_helper = Some(MACHINE_AMD64);
        assert_eq!(
            removal(MACHINE_I386, MACHINE_I386, MACHINE_AMD64, x64_helper),
            NativeHelper
        );
        // x86 on ARM64: WOW64 too, and no ARM64 helper.
        assert_eq!(
            removal(MACHINE_I386, MACHINE_I386, MACHINE_ARM64, x64_helper),
            Unsupported
        );
        // x64 emulated on ARM64: not WOW64 (process machine unknown), no ARM64 helper.
        assert_eq!(
            removal(MACHINE_AMD64, MACHINE_UNKNOWN, MACHINE_ARM64, None),
            InProcessUnverified
        );
        // IsWow64Process2 failed: nothing known, in process.
        assert_eq!(
            removal(MACHINE_I386, MACHINE_UNKNOWN, MACHINE_UNKNOWN, None),
            InProcess
        );
    }

    /// Issue 21: the session closes its device handle when the device is query-removed or
    /// goes, and only then (CM_NOTIFY_ACTION, cfgmgr32.h: 0 and 1 are interface events, 6 a
    /// custom event, 7 to 9 instance events, which a handle registration does not get).
    #[test]
    fn the_device_handle_closes_when_its_device_is_removed() {
        for (action, closes) in [
            (CM_NOTIFY_ACTION_DEVICEQUERYREMOVE, true),
            (CM_NOTIFY_ACTION_DEVICEREMOVEPENDING, true),
            (CM_NOTIFY_ACTION_DEVICEREMOVECOMPLETE, true),
            (3, false), // CM_NOTIFY_ACTION_DEVICEQUERYREMOVEFAILED
            (6, false), // CM_NOTIFY_ACTION_DEVICECUSTOMEVENT
            (0, false),
            (9, false),
        ] {
            assert_eq!(closes_handle_on(action), closes, "action {action}");
        }
    }

    /// wintun.dll's api/driver.c: the store's newest package of ours wins if it is as new as
    /// the embedded one, by date and then version; never a downgrade.
    #[test]
    fn the_newest_package_is_used_and_an_older_store_one_replaced() {
        let ours = (20261201, 1 << 32);
        let package = Embedded::Package {
            version: ours,
            catalog: true,
        };
        assert_eq!(
            installation(&[], package),
            Installation::Install {
                then_remove: vec![]
            }
        );
        assert_eq!(
            installation(&[ours], package),
            Installation::Installed(ours)
        );
        let older_date = (20261101, 2 << 32);
        let newer_version = (20261201, 2 << 32);
        assert_eq!(
            installation(&[older_date], package),
            Installation::Install {
                then_remove: vec![0]
            },
            "the date decides before the version"
        );
        assert_eq!(
            installation(&[older_date, newer_version], package),
            Installation::Installed(newer_version)
        );
        let no_catalog = Embedded::Package {
            version: ours,
            catalog: false,
        };
        assert_eq!(
            installation(&[older_date], no_catalog),
            Installation::NoCatalog
        );
        assert_eq!(
            installation(&[ours], no_catalog),
            Installation::Installed(ours)
        );
        assert_eq!(installation(&[], Embedded::Nothing), Installation::NoDriver);
        assert_eq!(
            installation(&[ours], Embedded::Nothing),
            Installation::Installed(ours)
        );
        assert_eq!(
            installation(&[ours], Embedded::BadInf),
            Installation::BadInf
        );
    }

    /// An RTL_PROCESS_MODULES answer as Windows 11 24H2 gives it to a caller without
    /// SeDebugPrivilege enabled: every image base 0, the names intact.
    fn module_list(pointer: usize, paths: &[(&str, u16)]) -> Vec<u8> {
        let mut bytes = vec![0u8; pointer.max(4)];
        bytes[..4].copy_from_slice(&(paths.len() as u32).to_le_bytes());
        for (path, name_at) in paths {
            let mut entry = vec![0u8; 3 * pointer + 16 + 256];
            let at = 3 * pointer + 14;
            entry[at..at + 2].copy_from_slice(&name_at.to_le_bytes());
            entry[3 * pointer + 16..][..path.len()].copy_from_slice(path.as_bytes());
            bytes.extend(entry);
        }
        bytes
    }

    #[test]
    fn the_loaded_driver_is_found_by_its_name_without_image_bases() {
        let ours =
            "\\SystemRoot\\System32\\DriverStore\\FileRepository\\oxtun.inf_amd64_0123\\oxtun.sys";
        for pointer in [8, 4] {
            let list = module_list(
                pointer,
                &[
                    ("\\SystemRoot\\system32\\ntoskrnl.exe", 21),
                    ("\\SystemRoot\\System32\\drivers\\NDIS.SYS", 30),
                    (ours, ours.rfind('\\').unwrap() as u16 + 1),
                ],
            );
            assert_eq!(
                loaded_module_path(&list, pointer, "OXTUN.SYS").as_deref(),
                Some(ours)
            );
            assert_eq!(loaded_module_path(&list, pointer, "wintun.sys"), None);
            // A count beyond the buffer, or a name offset beyond the path, reads nothing more.
            let mut lying = list.clone();
            lying[..4].copy_from_slice(&1000u32.to_le_bytes());
            assert_eq!(
                loaded_module_path(&lying, pointer, "oxtun.sys").as_deref(),
                Some(ours)
            );
            let bad_offset = module_list(pointer, &[(ours, 300)]);
            assert_eq!(loaded_module_path(&bad_offset, pointer, "oxtun.sys"), None);
            assert_eq!(loaded_module_path(&list[..3], pointer, "oxtun.sys"), None);
        }
        assert_eq!(
            globalroot_path("\\SystemRoot\\x.sys"),
            "\\\\?\\GLOBALROOT\\SystemRoot\\x.sys"
        );
    }

    /// The registration's bytes, from a 64- and a 32-bit process, with and without features: the
    /// plain IOCTL's are exactly abi's TUN_REGISTER_RINGS layouts, the extended one's exactly
    /// abi's TUN_REGISTER_RINGS_EX layouts (the structs' own bytes, on these little-endian
    /// hosts), and the driver's decoder reads back what was asked.
    #[test]
    fn the_registration_ioctl_is_abis_layout_for_either_width() {
        use oxtun_abi::extension::{
            TunRegisterRingsEx32, TunRegisterRingsEx64, TunRegisterRingsExHeader,
        };
        use oxtun_abi::{
            RingDescriptor, TunRegisterRings32, TunRegisterRings64, TunRingDescriptor32,
            TunRingDescriptor64,
        };

        /// The bytes of a `repr(C)` value without padding.
        fn bytes_of<T: Copy>(value: &T) -> Vec<u8> {
            // SAFETY: reads the value's own size_of::<T>() bytes, all initialized (abi's layout
            // structs have no implicit padding: their size asserts sum every field).
            unsafe { std::slice::from_raw_parts((value as *const T).cast::<u8>(), size_of::<T>()) }
                .to_vec()
        }
        let rings = RingRegistration {
            send: RingDescriptor {
                ring_size: 0x3_000C,
                ring: 0x1234_5000,
                tail_moved: 0x2C4,
            },
            receive: RingDescriptor {
                ring_size: 0x3_000C,
                ring: 0x1237_6000,
                tail_moved: 0x2C8,
            },
        };
        let half64 = |ring: &RingDescriptor| TunRingDescriptor64 {
            ring_size: ring.ring_size,
            padding: 0,
            ring: ring.ring,
            tail_moved: ring.tail_moved,
        };
        let half32 = |ring: &RingDescriptor| TunRingDescriptor32 {
            ring_size: ring.ring_size,
            ring: ring.ring as u32,
            tail_moved: ring.tail_moved as u32,
        };
        let rings64 = TunRegisterRings64 {
            send: half64(&rings.send),
            receive: half64(&rings.receive),
        };
        let rings32 = TunRegisterRings32 {
            send: half32(&rings.send),
            receive: half32(&rings.receive),
        };
        let header = |size: u32| TunRegisterRingsExHeader {
            size,
            version: 1,
            features: 1,
            reserved: 0,
        };

        let plain64 = registration_ioctl(&rings, Features::NONE, CallerWidth::Bits64).unwrap();
        assert_eq!(plain64.code, 0xCA6C_E5C0);
        assert_eq!(plain64.input(), bytes_of(&rings64));
        let plain32 = registration_ioctl(&rings, Features::NONE, CallerWidth::Bits32).unwrap();
        assert_eq!(plain32.code, 0xCA6C_E5C0);
        assert_eq!(plain32.input(), bytes_of(&rings32));

        let extended64 =
            registration_ioctl(&rings, Features::VNET_HDR, CallerWidth::Bits64).unwrap();
        assert_eq!(extended64.code, 0xCA6C_E800);
        let expected64 = TunRegisterRingsEx64 {
            header: header(64),
            rings: rings64,
        };
        assert_eq!(extended64.input(), bytes_of(&expected64));
        let extended32 =
            registration_ioctl(&rings, Features::VNET_HDR, CallerWidth::Bits32).unwrap();
        assert_eq!(extended32.code, 0xCA6C_E800);
        let expected32 = TunRegisterRingsEx32 {
            header: header(40),
            rings: rings32,
        };
        assert_eq!(extended32.input(), bytes_of(&expected32));

        for (ioctl, width) in [
            (extended64, CallerWidth::Bits64),
            (extended32, CallerWidth::Bits32),
        ] {
            let decoded = ExtendedRegistration::decode(ioctl.input(), width).unwrap();
            assert_eq!(decoded.rings, rings);
            assert_eq!(decoded.features, Features::VNET_HDR);
        }
        assert_eq!(
            RingRegistration::decode(plain32.input(), CallerWidth::Bits32),
            Ok(rings)
        );

        // A 64-bit pointer has no 32-bit layout.
        let mut high = rings;
        high.send.ring = 0x1_0000_0000;
        assert_eq!(
            registration_ioctl(&high, Features::VNET_HDR, CallerWidth::Bits32),
            None
        );
    }
}
