//! Adapters on Linux: each is a `wintun-emu` process serving the driver on the simulated kernel,
//! whose TUN interface takes the adapter's name.
//!
//! Where things are:
//! - the emulator binary: `$OXTUN_WINTUN_EMU`, else `wintun-emu` beside the binary or library
//!   this code is linked into (cargo puts `liboxtun.so` and `wintun-emu` in one folder), else
//!   `wintun-emu` on `$PATH`;
//! - the adapters' files: `$OXTUN_RUN_DIR`, else `/run/oxtun` (mode 0700, its owner's alone):
//!   for an adapter NAME, `NAME.sock` (the emulator's socket, mode 0600), `NAME.owner` (the
//!   emulator's and the creating process's IDs), `NAME.version` (the running driver's version,
//!   as the emulator read it from the driver) and `NAME.log` (what the emulator wrote, which
//!   outlives a creator that dies).
//!
//! As on Windows, an adapter outlives a process that exits without closing it; the next creation
//! of that name removes it if its creator is gone.

use std::ffi::{CString, OsString};
use std::fs::{self, File};
use std::io::{BufRead, BufReader, Write};
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStringExt;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use crate::platform::emulator::Device;
use crate::{Error, Features, IF_TYPE_PROP_VIRTUAL, Session, Version, log, luid_for};

/// Longest Linux interface name (IFNAMSIZ less its NUL).
const MAX_INTERFACE_NAME: usize = libc::IFNAMSIZ - 1;
/// Longest tunnel type, as Wintun's (MAX_ADAPTER_NAME less its NUL).
const MAX_TUNNEL_TYPE: usize = 127;
/// How long an emulator may take to stop before it is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);

/// The folder of the adapters' files.
fn run_dir() -> PathBuf {
    std::env::var_os("OXTUN_RUN_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/run/oxtun"))
}

/// The emulator binary to start; see the module documentation.
pub fn emulator_binary() -> PathBuf {
    if let Some(path) = std::env::var_os("OXTUN_WINTUN_EMU") {
        return PathBuf::from(path);
    }
    if let Some(beside) = this_object_path()
        .and_then(|path| path.parent().map(|dir| dir.join("wintun-emu")))
        .filter(|path| path.is_file())
    {
        return beside;
    }
    PathBuf::from("wintun-emu")
}

/// The file of the binary or shared library this function is in.
fn this_object_path() -> Option<PathBuf> {
    // SAFETY: Dl_info is plain data; dladdr fills it for an address inside a loaded object, and
    // dli_fname then points to a NUL-terminated path that lives as long as the object.
    unsafe {
        let mut info: libc::Dl_info = std::mem::zeroed();
        if libc::dladdr(this_object_path as *const libc::c_void, &mut info) == 0
            || info.dli_fname.is_null()
        {
            return None;
        }
        let name = std::ffi::CStr::from_ptr(info.dli_fname).to_bytes().to_vec();
        fs::canonicalize(PathBuf::from(OsString::from_vec(name))).ok()
    }
}

/// A process, told apart from a later one that reuses its ID by its start time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct ProcessId {
    pid: i32,
    start: u64,
}

impl ProcessId {
    fn of(pid: i32) -> Option<ProcessId> {
        let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        // The command name, in parentheses, may hold spaces; the fields after it do not. Start
        // time is field 22 of the line, the 20th after the name.
        let after_name = &stat[stat.rfind(')')? + 1..];
        let start = after_name.split_whitespace().nth(19)?.parse().ok()?;
        Some(ProcessId { pid, start })
    }

    fn current() -> ProcessId {
        ProcessId::of(std::process::id() as i32).expect("our own /proc entry")
    }

    fn alive(&self) -> bool {
        ProcessId::of(self.pid) == Some(*self)
    }
}

/// What `NAME.owner` records: the emulator serving the adapter and the process that created it.
#[derive(Debug)]
struct Owner {
    emulator: ProcessId,
    creator: ProcessId,
}

impl Owner {
    fn encode(&self) -> String {
        format!(
            "{} {} {} {}\n",
            self.emulator.pid, self.emulator.start, self.creator.pid, self.creator.start
        )
    }

    fn decode(text: &str) -> Option<Owner> {
        let fields: Vec<&str> = text.split_whitespace().collect();
        let [emulator_pid, emulator_start, creator_pid, creator_start] = fields[..] else {
            return None;
        };
        Some(Owner {
            emulator: ProcessId {
                pid: emulator_pid.parse().ok()?,
                start: emulator_start.parse().ok()?,
            },
            creator: ProcessId {
                pid: creator_pid.parse().ok()?,
                start: creator_start.parse().ok()?,
            },
        })
    }
}

/// The files of the adapter `name` in the run folder.
struct Files {
    socket: PathBuf,
    owner: PathBuf,
    version: PathBuf,
    log: PathBuf,
}

impl Files {
    fn of(name: &str) -> Files {
        let dir = run_dir();
        Files {
            socket: dir.join(format!("{name}.sock")),
            owner: dir.join(format!("{name}.owner")),
            version: dir.join(format!("{name}.version")),
            log: dir.join(format!("{name}.log")),
        }
    }

    fn owner(&self) -> Option<Owner> {
        Owner::decode(&fs::read_to_string(&self.owner).ok()?)
    }

    fn remove(&self) {
        for path in [&self.owner, &self.version, &self.socket, &self.log] {
            let _ = fs::remove_file(path);
        }
    }
}

/// The run folder's lock, held while adapters are created, opened and removed, so two processes
/// never start two emulators for one name.
struct RunDirLock {
    _file: File,
}

impl RunDirLock {
    fn take() -> Result<RunDirLock, Error> {
        let dir = run_dir();
        prepare_run_dir(&dir)?;
        let file = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .open(dir.join(".lock"))?;
        // SAFETY: flock on our own descriptor; the lock goes with it when the file closes.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) } != 0 {
            return Err(std::io::Error::last_os_error().into());
        }
        Ok(RunDirLock { _file: file })
    }
}

/// Makes the run folder, or checks the one there: it holds the adapters' sockets, which are
/// their devices, so only its owner may enter it (mode 0700, whatever the umask), and it must be
/// ours: a folder another user made could have its sockets swapped. (The emulator admits only
/// root and its own user on the socket too, as the driver admits only SYSTEM and
/// Administrators.)
fn prepare_run_dir(dir: &Path) -> Result<(), Error> {
    if let Some(parent) = dir.parent() {
        fs::create_dir_all(parent)?;
    }
    match fs::DirBuilder::new().mode(0o700).create(dir) {
        Err(error) if error.kind() != std::io::ErrorKind::AlreadyExists => return Err(error.into()),
        _ => {}
    }
    let metadata = fs::symlink_metadata(dir)?;
    // SAFETY: reads this process's effective user ID.
    let us = unsafe { libc::geteuid() };
    if !metadata.is_dir() || metadata.uid() != us {
        log::error(&format!(
            "the run folder {} is not a folder of user {us}",
            dir.display()
        ));
        return Err(std::io::Error::from(std::io::ErrorKind::PermissionDenied).into());
    }
    if metadata.mode() & 0o777 != 0o700 {
        fs::set_permissions(dir, fs::Permissions::from_mode(0o700))?;
    }
    Ok(())
}

/// A new file of the run folder that only its owner may read and write, whatever the umask.
fn private_file(path: &Path) -> std::io::Result<File> {
    File::options()
        .create(true)
        .truncate(true)
        .write(true)
        .mode(0o600)
        .open(path)
}

/// The interface index of `name` in this network namespace, if there is such an interface.
fn interface_index(name: &str) -> Option<u32> {
    let name = CString::new(name).ok()?;
    // SAFETY: a NUL-terminated name.
    let index = unsafe { libc::if_nametoindex(name.as_ptr()) };
    (index != 0).then_some(index)
}

fn check_name(name: &str) -> Result<(), Error> {
    let bad = |why: &str| Err(Error::BadName(format!("adapter name {name:?}: {why}")));
    if name.is_empty() || name.len() > MAX_INTERFACE_NAME {
        return bad("a Linux interface name has 1 to 15 bytes");
    }
    if name == "." || name == ".." || name.contains(['/', ':', '%']) {
        return bad("not a valid Linux interface name");
    }
    if name.chars().any(char::is_whitespace) {
        return bad("a Linux interface name has no white space");
    }
    Ok(())
}

/// Sends SIGTERM to a process that is not our child and waits until it is gone, killing it if it
/// takes too long. True if it was gone in time without being killed.
fn stop_process(process: ProcessId) -> bool {
    // SAFETY: signalling a process whose identity (ID and start time) we just checked.
    unsafe { libc::kill(process.pid, libc::SIGTERM) };
    let deadline = Instant::now() + STOP_TIMEOUT;
    while process.alive() {
        if Instant::now() > deadline {
            // SAFETY: as above.
            unsafe { libc::kill(process.pid, libc::SIGKILL) };
            return false;
        }
        thread::sleep(Duration::from_millis(10));
    }
    true
}

/// An adapter: a running emulator, reached through its socket.
pub struct Adapter {
    name: Option<String>,
    socket: PathBuf,
    luid: u64,
    /// The emulator, if this value created it: closing the adapter stops it.
    created: Option<Created>,
}

struct Created {
    emulator: Child,
    log: PathBuf,
}

impl Adapter {
    /// The adapter the emulator listening on `socket` serves, whatever its name.
    pub fn emulator(socket: impl AsRef<Path>) -> Adapter {
        Adapter {
            name: None,
            socket: socket.as_ref().to_path_buf(),
            luid: 0,
            created: None,
        }
    }

    /// Creates an adapter: starts an emulator whose interface is named `name`. `tunnel_type` is
    /// checked as Wintun checks it and otherwise unused (Linux interfaces have no such
    /// property), and so is `guid`. An adapter of that name left by a process that is gone is
    /// removed first; one whose creator still runs makes this fail with
    /// [`Error::AlreadyExists`].
    pub fn create(name: &str, tunnel_type: &str, guid: Option<u128>) -> Result<Adapter, Error> {
        check_name(name)?;
        if tunnel_type.encode_utf16().count() > MAX_TUNNEL_TYPE {
            return Err(Error::BadName(format!(
                "tunnel type of over {MAX_TUNNEL_TYPE} characters"
            )));
        }
        if guid.is_some() {
            log::info("Linux interfaces have no GUID: the requested one is not used");
        }
        let _lock = RunDirLock::take()?;
        let files = Files::of(name);
        if let Some(owner) = files.owner() {
            if owner.emulator.alive() && owner.creator.alive() {
                log::error(&format!(
                    "adapter {name} exists and its creator (process {}) still runs",
                    owner.creator.pid
                ));
                return Err(Error::AlreadyExists);
            }
            if owner.emulator.alive() {
                log::info(&format!(
                    "removing adapter {name}, orphaned by process {}",
                    owner.creator.pid
                ));
                if !stop_process(owner.emulator) {
                    log::warn(&format!("the orphaned emulator of {name} had to be killed"));
                }
            }
            files.remove();
        }
        if interface_index(name).is_some() {
            log::error(&format!("an interface named {name} exists and is not ours"));
            return Err(Error::AlreadyExists);
        }
        let mut adapter = Adapter::start_emulator(name, &files)?;
        let owner = Owner {
            emulator: ProcessId::of(adapter.emulator_pid())
                .ok_or_else(|| std::io::Error::other("the emulator exited at once"))?,
            creator: ProcessId::current(),
        };
        private_file(&files.owner)?.write_all(owner.encode().as_bytes())?;
        let index = interface_index(name).ok_or(Error::NotFound)?;
        adapter.luid = luid_for(IF_TYPE_PROP_VIRTUAL, index);
        log::info(&format!("created adapter {name}, interface index {index}"));
        Ok(adapter)
    }

    fn start_emulator(name: &str, files: &Files) -> Result<Adapter, Error> {
        let binary = emulator_binary();
        log::info(&format!("starting {} for adapter {name}", binary.display()));
        let log_file = private_file(&files.log)?;
        let mut emulator = Command::new(&binary)
            .arg("--socket")
            .arg(&files.socket)
            .arg("--name")
            .arg(name)
            .arg("--version-file")
            .arg(&files.version)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            // A file, not a pipe: the emulator outlives a creator that dies, and keeps logging.
            .stderr(log_file)
            .spawn()
            .inspect_err(|error| {
                log::error(&format!("cannot start {}: {error}", binary.display()))
            })?;
        let mut ready = String::new();
        let _ = BufReader::new(emulator.stdout.take().expect("piped")).read_line(&mut ready);
        let mut adapter = Adapter {
            name: Some(name.to_string()),
            socket: files.socket.clone(),
            luid: 0,
            created: Some(Created {
                emulator,
                log: files.log.clone(),
            }),
        };
        if ready.trim() != format!("ready {}", files.socket.display()) {
            log::error(&format!("the emulator for adapter {name} did not start"));
            // The caller holds the run folder's lock: not `stop`, which takes it.
            adapter.end_emulator();
            files.remove();
            return Err(std::io::Error::other("the emulator did not start").into());
        }
        Ok(adapter)
    }

    fn emulator_pid(&self) -> i32 {
        self.created
            .as_ref()
            .map_or(0, |created| created.emulator.id() as i32)
    }

    /// Opens the running adapter named `name`.
    pub fn open(name: &str) -> Result<Adapter, Error> {
        check_name(name)?;
        let _lock = RunDirLock::take()?;
        let files = Files::of(name);
        let running = files.owner().is_some_and(|owner| owner.emulator.alive());
        let Some(index) = interface_index(name).filter(|_| running) else {
            return Err(Error::NoSuchAdapter);
        };
        Ok(Adapter {
            name: Some(name.to_string()),
            socket: files.socket,
            luid: luid_for(IF_TYPE_PROP_VIRTUAL, index),
            created: None,
        })
    }

    /// The adapter's name, unless it was reached by its socket alone.
    pub fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }

    /// The adapter's NET_LUID: IfType 53 and the interface's index (0 for an adapter reached by
    /// its socket alone).
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

    /// Sets the interface's MTU, through netlink.
    pub fn set_mtu(&self, mtu: u32) -> Result<(), Error> {
        let name = self.name.as_deref().ok_or(Error::NotFound)?;
        let index = interface_index(name).ok_or(Error::NotFound)?;
        crate::platform::netlink::set_mtu(index, mtu)?;
        Ok(())
    }

    /// Opens the adapter's device, to register rings with.
    pub(crate) fn open_device(&self) -> Result<Device, Error> {
        Device::connect(&self.socket)
    }

    /// Stops the emulator this value created and removes its files.
    fn stop(&mut self) {
        if self.end_emulator()
            && let Some(name) = &self.name
        {
            let _lock = RunDirLock::take();
            Files::of(name).remove();
        }
    }

    /// Ends the emulator this value created, if it did: its driver ends every session (the
    /// send ring's Tail becomes 0xFFFFFFFF), halts and unloads, and its leak check goes to the
    /// logger.
    fn end_emulator(&mut self) -> bool {
        let Some(mut created) = self.created.take() else {
            return false;
        };
        let name = self.name.clone().unwrap_or_default();
        // SAFETY: signalling our own child, not yet waited for.
        unsafe { libc::kill(created.emulator.id() as i32, libc::SIGTERM) };
        let status = created.emulator.wait();
        let clean = forward_log(&name, &created.log);
        match status {
            Ok(status) if status.success() && clean => {
                log::info(&format!("adapter {name} removed"));
            }
            Ok(status) => log::error(&format!("adapter {name} removed: the emulator {status}")),
            Err(error) => log::error(&format!("adapter {name}: {error}")),
        }
        true
    }
}

/// Forwards each line the emulator wrote to our logger, a leak or failure as an error. True if
/// the emulator reported that nothing leaked.
fn forward_log(name: &str, log: &Path) -> bool {
    let mut clean = false;
    let text = fs::read_to_string(log).unwrap_or_default();
    for line in text.lines() {
        let message = format!("adapter {name}: {line}");
        if line.contains("nothing leaked") {
            clean = true;
            log::info(&message);
        } else if line.contains("leak") || line.contains("failed") {
            log::error(&message);
        } else {
            log::info(&message);
        }
    }
    clean
}

impl Drop for Adapter {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The version of the running driver: that of any running adapter's emulator, which read it from
/// the driver (OID_GEN_VENDOR_DRIVER_VERSION). [`Error::NotFound`] when none runs.
pub fn driver_version() -> Result<Version, Error> {
    let entries = fs::read_dir(run_dir()).map_err(|_| Error::NotFound)?;
    for entry in entries.map_while(Result::ok) {
        let path = entry.path();
        if path
            .extension()
            .is_none_or(|extension| extension != "owner")
        {
            continue;
        }
        let Some(owner) = fs::read_to_string(&path)
            .ok()
            .and_then(|text| Owner::decode(&text))
        else {
            continue;
        };
        let version = fs::read_to_string(path.with_extension("version"));
        if let (true, Ok(version)) = (owner.emulator.alive(), version) {
            let version = version.trim().trim_start_matches("0x");
            if let Ok(version) = u32::from_str_radix(version, 16) {
                return Ok(Version::from_dword(version));
            }
        }
    }
    Err(Error::NotFound)
}

/// Removes the driver if no adapter of ours exists. Linux has no driver package to remove, so
/// this only answers whether adapters remain ([`Error::InUse`]).
pub fn delete_driver() -> Result<(), Error> {
    let _lock = RunDirLock::take()?;
    let Ok(entries) = fs::read_dir(run_dir()) else {
        return Ok(());
    };
    let in_use = entries.map_while(Result::ok).any(|entry| {
        let path = entry.path();
        path.extension()
            .is_some_and(|extension| extension == "owner")
            && fs::read_to_string(&path)
                .ok()
                .and_then(|text| Owner::decode(&text))
                .is_some_and(|owner| owner.emulator.alive())
    });
    if in_use { Err(Error::InUse) } else { Ok(()) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owner_records_round_trip_and_refuse_garbage() {
        let owner = Owner {
            emulator: ProcessId { pid: 12, start: 34 },
            creator: ProcessId { pid: 56, start: 78 },
        };
        let decoded = Owner::decode(&owner.encode()).unwrap();
        assert_eq!(
            (decoded.emulator, decoded.creator),
            (owner.emulator, owner.creator)
        );
        assert!(Owner::decode("12 34 56").is_none());
        assert!(Owner::decode("12 34 56 x").is_none());
    }

    #[test]
    fn this_process_is_alive_and_a_changed_start_time_is_not() {
        let me = ProcessId::current();
        assert!(me.alive());
        assert!(
            !ProcessId {
                start: me.start + 1,
                ..me
            }
            .alive()
        );
    }

    #[test]
    fn names_that_linux_refuses_are_refused() {
        for bad in ["", "a/b", "with space", "sixteen-chars-xx", ".", "a:b"] {
            assert!(matches!(check_name(bad), Err(Error::BadName(_))), "{bad:?}");
        }
        check_name("oxtun-0").unwrap();
        check_name("fifteen-chars-x").unwrap();
    }
}
