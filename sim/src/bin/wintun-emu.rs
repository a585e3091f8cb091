//! wintun-emu: the oxtun driver on the simulated kernel, served to real client processes.
//!
//! Its network side is a Linux TUN interface (or, with `--upper reflect`, the driver's own send
//! path); its device side a Unix socket speaking design.md's "Emulated device protocol": a
//! connection is an open device handle, a 16-byte message with four descriptors registers rings,
//! the reply is the NTSTATUS. Closing the connection (or dying) closes the handle. Only root and
//! the emulator's own user may open the device, as the driver admits only SYSTEM and
//! Administrators: the socket is created 0600 whatever the umask, and a peer of another user
//! (SO_PEERCRED) gets STATUS_ACCESS_DENIED for every registration.

use std::io::{self, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;

use oxtun_abi::emulator::{
    EmulatorIoctl, EmulatorMessageError, EmulatorRequest, REGISTRATION_DESCRIPTORS,
};
use oxtun_abi::extension::TunRegisterRingsExHeader;
use oxtun_abi::offload::finish_in_software;
use oxtun_abi::vnet::{VIRTIO_NET_HDR_GSO_NONE, VNET_HDR_LEN, VirtioNetHdr};
use oxtun_abi::{
    CallerWidth, ExtendedRegistration, Features, RingDescriptor, RingRegistration,
    TUN_IOCTL_REGISTER_RINGS, TUN_IOCTL_REGISTER_RINGS_EX, capacity_for_ring_size,
};
use oxtun_driver::sys::*;
use oxtun_sim::tun::{self, ip};
use oxtun_sim::upper_edge::{self, FromLinux};
use oxtun_sim::{
    Adapter, AdapterSetup, Bitness, Driver, DriverBuild, Process, SendOffload, SendTiming, Token,
    stack,
};
use sha2::{Digest, Sha256};

/// A line on stderr, where a log may be gone: the process that read it (a test, killed on a
/// timeout) may have died, and the emulator must still shut down when it is told to.
macro_rules! log {
    ($($argument:tt)*) => {{
        let _ = writeln!(io::stderr(), $($argument)*);
    }};
}

const USAGE: &str = "usage: wintun-emu --socket PATH [--address CIDR]... [--name IFNAME] \
                     [--mtu BYTES] [--upper tun|reflect] [--version-file PATH] [--stack-high-water] \
                     [--driver host|image[=PATH]] [--keyword NAME=VALUE]...";
const EVENT_ALL_ACCESS: ACCESS_MASK = 0x001F_0003;
const STATUS_INVALID_PARAMETER: u32 = 0xC000_000D;
const STATUS_INVALID_DEVICE_REQUEST: u32 = 0xC000_0010;
const STATUS_ACCESS_DENIED: u32 = 0xC000_0022;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Upper {
    Tun,
    Reflect,
}

struct Options {
    socket: PathBuf,
    addresses: Vec<String>,
    name: String,
    /// The interface's MTU, as a VPN sets its adapter's (WireGuard's 1420, with
    /// SetIpInterfaceEntry); the MtuSize the driver reports (0xFFFF) when not given.
    mtu: Option<u32>,
    upper: Upper,
    /// Where to write the driver's version (OID_GEN_VENDOR_DRIVER_VERSION, in hex), for the API
    /// library's WintunGetRunningDriverVersion.
    version_file: Option<PathBuf>,
    /// Measure the kernel stack each driver callback uses, and print it on exit.
    stack_high_water: bool,
    driver: DriverBuild,
    /// The adapter's registry values (standardized keywords such as `*LsoV2IPv4=1`), as an
    /// administrator sets them.
    keywords: Vec<(String, String)>,
}

fn parse_options() -> Result<Options, String> {
    let mut socket = None;
    let mut addresses = Vec::new();
    let mut name = "oxtun0".to_string();
    let mut mtu = None;
    let mut upper = Upper::Tun;
    let mut version_file = None;
    let mut stack_high_water = false;
    let mut driver = None;
    let mut keywords = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || args.next().ok_or(format!("{arg} needs a value"));
        match arg.as_str() {
            "--socket" => socket = Some(PathBuf::from(value()?)),
            "--address" => addresses.push(value()?),
            "--name" => name = value()?,
            "--mtu" => {
                let bytes = value()?;
                mtu = Some(
                    bytes
                        .parse()
                        .map_err(|_| format!("--mtu {bytes}: not a number"))?,
                );
            }
            "--upper" => {
                upper = match value()?.as_str() {
                    "tun" => Upper::Tun,
                    "reflect" => Upper::Reflect,
                    other => return Err(format!("--upper is tun or reflect, not {other}")),
                }
            }
            "--version-file" => version_file = Some(PathBuf::from(value()?)),
            "--stack-high-water" => stack_high_water = true,
            "--driver" => {
                let build =
                    DriverBuild::parse(&value()?).map_err(|error| format!("--driver: {error}"))?;
                driver = Some(build);
            }
            "--keyword" => {
                let setting = value()?;
                let (name, value) = setting
                    .split_once('=')
                    .ok_or(format!("--keyword is NAME=VALUE, not {setting}"))?;
                keywords.push((name.to_string(), value.to_string()));
            }
            "--help" | "-h" => return Err(USAGE.to_string()),
            other => return Err(format!("unknown argument {other}")),
        }
    }
    if name.is_empty() || name.len() >= libc::IFNAMSIZ {
        return Err(format!(
            "interface name {name:?} must have 1 to 15 characters"
        ));
    }
    Ok(Options {
        socket: socket.ok_or("--socket PATH is required")?,
        addresses,
        name,
        mtu,
        upper,
        version_file,
        stack_high_water,
        // Without --driver, the simulator's own setting (OXTUN_SIM_DRIVER), as for the tests.
        driver: match driver {
            Some(driver) => driver,
            None => DriverBuild::setting()?,
        },
        keywords,
    })
}

/// Says which build of the driver runs; for the kernel image, which file, by its SHA-256.
fn log_driver(driver: &DriverBuild) -> io::Result<()> {
    match driver {
        DriverBuild::Host => log!("wintun-emu: driver: the host build"),
        DriverBuild::Image(path) => {
            let image = std::fs::read(path).map_err(|error| {
                io::Error::new(error.kind(), format!("{}: {error}", path.display()))
            })?;
            let digest: String = Sha256::digest(&image)
                .iter()
                .map(|byte| format!("{byte:02x}"))
                .collect();
            log!(
                "wintun-emu: driver: the kernel image {} (SHA-256 {digest})",
                path.display()
            );
        }
    }
    Ok(())
}

fn check(result: libc::c_int, what: &str) -> io::Result<libc::c_int> {
    if result < 0 {
        let error = io::Error::last_os_error();
        Err(io::Error::new(error.kind(), format!("{what}: {error}")))
    } else {
        Ok(result)
    }
}

/// An eventfd used to wake a thread blocked in poll.
fn new_eventfd() -> io::Result<OwnedFd> {
    // SAFETY: a new eventfd.
    let fd = check(unsafe { libc::eventfd(0, libc::EFD_CLOEXEC) }, "eventfd")?;
    // SAFETY: a descriptor we just created and own.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn signal_eventfd(fd: BorrowedFd<'_>) {
    let one = 1u64.to_ne_bytes();
    // SAFETY: 8 bytes from a local to an eventfd; a failure (the client gone) changes nothing.
    unsafe { libc::write(fd.as_raw_fd(), one.as_ptr().cast(), one.len()) };
}

/// Waits until one of `fds` is readable; returns which.
fn poll_readable(fds: &[BorrowedFd<'_>]) -> io::Result<usize> {
    let mut polls: Vec<libc::pollfd> = fds
        .iter()
        .map(|fd| libc::pollfd {
            fd: fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        })
        .collect();
    loop {
        // SAFETY: our array of pollfds.
        let ready = unsafe { libc::poll(polls.as_mut_ptr(), polls.len() as libc::nfds_t, -1) };
        if ready < 0 {
            let error = io::Error::last_os_error();
            if error.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(error);
        }
        if let Some(index) = polls.iter().position(|poll| poll.revents != 0) {
            return Ok(index);
        }
    }
}

/// Gives the interface the driver's MTU and the addresses, and brings it up.
/// Packets the TUN interface queues for the emulator to read. Linux's default, 500, drops
/// packets whenever the reading thread waits a few milliseconds for a core. On Windows NDIS
/// hands each send straight to MiniportSendNetBufferLists ("Sending Data from a Miniport
/// Driver", Microsoft's NDIS documentation), which the driver copies into the send ring: no
/// queue of 500 stands in between, so the emulator's is long enough to ride such a wait out.
const TUN_QUEUE: u32 = 4096;

fn configure_interface(name: &str, mtu: u32, addresses: &[String]) -> io::Result<()> {
    ip(&["link", "set", "dev", name, "mtu", &mtu.to_string()])?;
    ip(&[
        "link",
        "set",
        "dev",
        name,
        "txqueuelen",
        &TUN_QUEUE.to_string(),
    ])?;
    for address in addresses {
        if address.contains(':') {
            // No duplicate-address detection: usable at once.
            ip(&["-6", "address", "add", address, "dev", name, "nodad"])?;
        } else {
            ip(&["address", "add", address, "dev", name])?;
        }
    }
    ip(&["link", "set", "dev", name, "up"])?;
    // Ready means packets to the addresses arrive: IPv6 ones only once their local route is in.
    for address in addresses.iter().filter(|address| address.contains(':')) {
        let address = address.split('/').next().unwrap_or(address);
        tun::wait_for_local_route(address)?;
    }
    Ok(())
}

/// The most packets read from the TUN interface before they go to the driver in one send call.
const TUN_BATCH: usize = 64;

/// What the upper edge passed on and lost, reported at shutdown: where packets are dropped
/// when a path is loaded past what it carries.
#[derive(Default)]
struct EdgeCounts {
    /// Indicated packets written to the TUN interface (or handed back to the send path).
    up: AtomicU64,
    /// Indicated packets the TUN interface refused (its receive queue full).
    up_dropped: AtomicU64,
    /// Packets the driver's send path took into the send ring.
    down: AtomicU64,
    /// Packets the driver's send path failed (the send ring full, or no rings).
    down_refused: AtomicU64,
    /// Super-packets Linux made (GSO), handed to the driver whole as LSO or USO sends (counted
    /// among `down` or `down_refused` as the driver took them).
    down_large: AtomicU64,
    /// Packets Linux left work in (a super-packet, a partial checksum) that is not in force on
    /// the adapter, which the emulator did in software before sending.
    down_finished: AtomicU64,
    /// Packets whose header did not describe them (never from Linux): dropped.
    down_bad_headers: AtomicU64,
    /// Of the indicated packets, coalesced units (RSC) written to Linux as super-packets.
    up_coalesced: AtomicU64,
    /// Times the driver set a client's send event (the client's eventfd written), over the
    /// registrations that ended.
    send_event_sets: AtomicU64,
    /// Times the driver's receive thread took a client's signal of its receive event.
    receive_event_wakes: AtomicU64,
}

impl EdgeCounts {
    fn count_down(&self, sent: usize, offered: usize) {
        self.down.fetch_add(sent as u64, Ordering::Relaxed);
        self.down_refused
            .fetch_add((offered - sent) as u64, Ordering::Relaxed);
    }
}

impl std::fmt::Display for EdgeCounts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let load = |count: &AtomicU64| count.load(Ordering::Relaxed);
        write!(
            f,
            "up {} (dropped {}, coalesced units {}), down {} (refused by the driver {}, large \
             sends {}, finished in software {}, bad headers {}); events: send event set {} \
             times, receive event taken {} times",
            load(&self.up),
            load(&self.up_dropped),
            load(&self.up_coalesced),
            load(&self.down),
            load(&self.down_refused),
            load(&self.down_large),
            load(&self.down_finished),
            load(&self.down_bad_headers),
            load(&self.send_event_sets),
            load(&self.receive_event_wakes)
        )
    }
}

/// Packets from the TUN interface go to the driver's send path, as the Windows stack sends:
/// read with their headers into buffers kept for the emulator's life, up to [`TUN_BATCH`] per
/// send call, each described where it lies and offloaded as its header asks where the adapter
/// has that offload in force (`upper_edge::from_linux`). Before each batch, what Linux may hand
/// over follows what is in force (`upper_edge::tun_offload_flags`), as tcpip follows the
/// miniport's NDIS_STATUS_TASK_OFFLOAD_CURRENT_CONFIG.
fn forward_from_tun(
    tun: &OwnedFd,
    name: &str,
    stop: &OwnedFd,
    adapter: &Adapter,
    counts: &EdgeCounts,
) {
    let mut buffers = vec![vec![0u8; VNET_HDR_LEN + 0x10000]; TUN_BATCH];
    let mut lengths = [0usize; TUN_BATCH];
    let mut sender = adapter.sender();
    let mut followed = None;
    loop {
        match poll_readable(&[tun.as_fd(), stop.as_fd()]) {
            Ok(0) => {}
            _ => return,
        }
        let record = adapter.offloads();
        if followed != Some(record.indications) {
            follow_offloads(tun, name, &record);
            followed = Some(record.indications);
        }
        let mut count = 0;
        while count < TUN_BATCH {
            let buffer = &mut buffers[count];
            // SAFETY: reading into our buffer from our non-blocking TUN descriptor.
            let read =
                unsafe { libc::read(tun.as_raw_fd(), buffer.as_mut_ptr().cast(), buffer.len()) };
            if read < VNET_HDR_LEN as isize {
                break;
            }
            lengths[count] = read as usize;
            count += 1;
        }
        // Segments of super-packets the emulator cut, sent after the batch's other packets (a
        // rare path: only what Linux's coarser switches let through).
        let mut segments: Vec<Vec<u8>> = Vec::new();
        let mut decisions = Vec::with_capacity(count);
        for (buffer, &length) in buffers.iter_mut().zip(&lengths).take(count) {
            let (header, packet) = buffer[..length].split_at_mut(VNET_HDR_LEN);
            let header = VirtioNetHdr::decode((&*header).try_into().expect("the header's length"));
            let decision = match upper_edge::from_linux(&record, &header, packet) {
                FromLinux::Send(offload) => {
                    if matches!(offload, SendOffload::Lso { .. } | SendOffload::Uso { .. }) {
                        counts.down_large.fetch_add(1, Ordering::Relaxed);
                    }
                    Some(offload)
                }
                FromLinux::Finish(offload) => {
                    counts.down_finished.fetch_add(1, Ordering::Relaxed);
                    match finish_in_software(packet, &offload) {
                        Ok(None) => Some(SendOffload::None),
                        Ok(Some(cut)) => {
                            for segment in cut.iter() {
                                let mut bytes = vec![0u8; segment.size()];
                                if segment.write(&mut bytes).is_ok() {
                                    segments.push(bytes);
                                }
                            }
                            None
                        }
                        Err(_) => None,
                    }
                }
                FromLinux::Refused(_) => {
                    counts.down_bad_headers.fetch_add(1, Ordering::Relaxed);
                    None
                }
            };
            decisions.push(decision);
        }
        let mut sending: Vec<(&mut [u8], SendOffload)> = buffers
            .iter_mut()
            .zip(&lengths)
            .zip(decisions)
            .filter_map(|((buffer, &length), decision)| {
                decision.map(|offload| (&mut buffer[VNET_HDR_LEN..length], offload))
            })
            .collect();
        sending.extend(
            segments
                .iter_mut()
                .map(|segment| (&mut segment[..], SendOffload::None)),
        );
        let offered = sending.len();
        // Late: decided against the record above, sent while the driver may be changing what is
        // in force, as tcpip's sends race its indication (the window the LSO page warns of).
        let sent = sender.send_offloaded(&mut sending, SendTiming::Late, DISPATCH_LEVEL);
        counts.count_down(sent, offered);
    }
}

/// Tells Linux which offloads it may leave to the emulator now (TUNSETOFFLOAD) and the largest
/// super-packet to make (gso_max_size).
fn follow_offloads(tun: &OwnedFd, name: &str, record: &oxtun_sim::OffloadRecord) {
    let flags = upper_edge::tun_offload_flags(record);
    if let Err(error) = tun::set_offload(tun, flags) {
        log!("wintun-emu: {error}: Linux keeps finishing every packet itself");
    }
    if let Some(size) = upper_edge::gso_max_size(record)
        && let Err(error) = ip(&[
            "link",
            "set",
            "dev",
            name,
            "gso_max_size",
            &size.to_string(),
        ])
    {
        log!("wintun-emu: {error}: super-packets over {size} bytes are cut by the emulator");
    }
}

/// Receives one message with up to `REGISTRATION_DESCRIPTORS + 1` descriptors; `None` at the
/// end of the connection.
fn receive_message(stream: &UnixStream) -> io::Result<Option<(Vec<u8>, Vec<OwnedFd>)>> {
    let mut bytes = vec![0u8; 64];
    let payload = (REGISTRATION_DESCRIPTORS + 1) * size_of::<RawFd>();
    // SAFETY: CMSG_SPACE is a pure size computation.
    let space = unsafe { libc::CMSG_SPACE(payload as u32) } as usize;
    let mut control = vec![0u64; space.div_ceil(8)];
    let mut iov = libc::iovec {
        iov_base: bytes.as_mut_ptr().cast(),
        iov_len: bytes.len(),
    };
    // SAFETY: msghdr is plain data; zeroed is its empty state.
    let mut header: libc::msghdr = unsafe { std::mem::zeroed() };
    header.msg_iov = &mut iov;
    header.msg_iovlen = 1;
    header.msg_control = control.as_mut_ptr().cast();
    header.msg_controllen = space as _;
    // SAFETY: receiving into our buffers; descriptors arrive close-on-exec.
    let received =
        unsafe { libc::recvmsg(stream.as_raw_fd(), &mut header, libc::MSG_CMSG_CLOEXEC) };
    if received < 0 {
        return Err(io::Error::last_os_error());
    }
    let mut descriptors = Vec::new();
    // SAFETY: walking the control messages the kernel wrote into our buffer.
    unsafe {
        let mut cmsg = libc::CMSG_FIRSTHDR(&header);
        while !cmsg.is_null() {
            if (*cmsg).cmsg_level == libc::SOL_SOCKET && (*cmsg).cmsg_type == libc::SCM_RIGHTS {
                let data_len = (*cmsg).cmsg_len as usize - libc::CMSG_LEN(0) as usize;
                let data = libc::CMSG_DATA(cmsg).cast::<RawFd>();
                for index in 0..data_len / size_of::<RawFd>() {
                    descriptors.push(OwnedFd::from_raw_fd(data.add(index).read_unaligned()));
                }
            }
            cmsg = libc::CMSG_NXTHDR(&header, cmsg);
        }
    }
    if received == 0 && descriptors.is_empty() {
        return Ok(None);
    }
    bytes.truncate(received as usize);
    Ok(Some((bytes, descriptors)))
}

/// The size of a shared memory file (a memfd, or any regular file); None for anything else.
fn shared_memory_size(fd: BorrowedFd<'_>) -> Option<u64> {
    let metadata = std::fs::File::from(fd.try_clone_to_owned().ok()?)
        .metadata()
        .ok()?;
    metadata.is_file().then_some(metadata.len())
}

/// Whether `fd` is an eventfd (the kernel names its inode so).
fn is_eventfd(fd: BorrowedFd<'_>) -> bool {
    std::fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd()))
        .is_ok_and(|target| target.as_os_str() == "anon_inode:[eventfd]")
}

/// One registration request: checks what only the emulator can (the message, the descriptors,
/// the memfds' sizes), then issues the IOCTL through the simulated I/O manager.
fn register(
    process: &Process,
    device: &oxtun_sim::DeviceHandle<'_>,
    message: &[u8],
    descriptors: Vec<OwnedFd>,
    events: &mut Vec<Events>,
) -> u32 {
    let (request, ioctl) = match EmulatorRequest::decode(message) {
        Ok(EmulatorRequest { rings, ioctl }) => (rings, ioctl),
        Err(EmulatorMessageError::UnknownIoctl(_)) => return STATUS_INVALID_DEVICE_REQUEST,
        Err(_) => return STATUS_INVALID_PARAMETER,
    };
    let Ok([send_memory, send_event, receive_memory, receive_event]) =
        <[OwnedFd; REGISTRATION_DESCRIPTORS]>::try_from(descriptors)
    else {
        return STATUS_INVALID_PARAMETER;
    };
    if !is_eventfd(send_event.as_fd()) || !is_eventfd(receive_event.as_fd()) {
        return STATUS_INVALID_PARAMETER;
    }
    let mut provisional = Provisional {
        process,
        mappings: Vec::new(),
        handles: Vec::new(),
    };
    let mut addresses = [0u64; 2];
    for ((memory, size), address) in [
        (&send_memory, request.send_ring_size),
        (&receive_memory, request.receive_ring_size),
    ]
    .into_iter()
    .zip(&mut addresses)
    {
        // A size the driver would refuse anyway is refused before mapping anything, and a
        // memfd smaller than its ring would fault when touched: refused too.
        if capacity_for_ring_size(size).is_err()
            || shared_memory_size(memory.as_fd()).is_none_or(|len| len < u64::from(size))
        {
            return STATUS_INVALID_PARAMETER;
        }
        match process.map_shared(memory.as_fd(), size as usize) {
            Ok(mapped) => {
                provisional.mappings.push(mapped);
                *address = mapped;
            }
            Err(_) => return STATUS_INVALID_PARAMETER,
        }
    }
    let send_eventfd = Arc::new(send_event);
    let wake_client = {
        let eventfd = send_eventfd.clone();
        Box::new(move || signal_eventfd(eventfd.as_fd())) as Box<dyn Fn() + Send + Sync>
    };
    let (send_handle, send_object) = process.create_event_with(EVENT_ALL_ACCESS, Some(wake_client));
    // The driver's waits on the receive event poll the client's eventfd itself.
    let (receive_handle, receive_object) =
        process.create_event_from(EVENT_ALL_ACCESS, receive_event);
    provisional.handles.extend([send_handle, receive_handle]);
    let registration = RingRegistration {
        send: RingDescriptor {
            ring_size: request.send_ring_size,
            ring: addresses[0],
            tail_moved: send_handle,
        },
        receive: RingDescriptor {
            ring_size: request.receive_ring_size,
            ring: addresses[1],
            tail_moved: receive_handle,
        },
    };
    let mut buffer = [0u8; 64];
    let (code, len) = match ioctl {
        EmulatorIoctl::Register => {
            let len = registration.encode(CallerWidth::Bits64, &mut buffer);
            (TUN_IOCTL_REGISTER_RINGS, len.expect("48 bytes"))
        }
        EmulatorIoctl::RegisterEx { features } => {
            let extended = ExtendedRegistration {
                rings: registration,
                features: Features::NONE,
            };
            let len = extended.encode(CallerWidth::Bits64, &mut buffer);
            // The feature bits as the client sent them, known or not: the driver judges them.
            let at = std::mem::offset_of!(TunRegisterRingsExHeader, features);
            buffer[at..at + 4].copy_from_slice(&features.to_le_bytes());
            (TUN_IOCTL_REGISTER_RINGS_EX, len.expect("64 bytes"))
        }
    };
    let status = device.device_control(code, &buffer[..len]) as u32;
    if status == 0 {
        provisional.keep();
        events.push(Events {
            send: send_object,
            receive: receive_object,
        });
    }
    status
}

/// What a registration made in the client's process: the rings' mappings and the events'
/// handles, undone when it is dropped unless the registration took them, so a client refused
/// again and again on one connection does not grow the emulator.
struct Provisional<'a> {
    process: &'a Process,
    mappings: Vec<u64>,
    handles: Vec<u64>,
}

impl Provisional<'_> {
    fn keep(mut self) {
        self.mappings.clear();
        self.handles.clear();
    }
}

impl Drop for Provisional<'_> {
    fn drop(&mut self) {
        for &address in &self.mappings {
            self.process.free(address);
        }
        for &handle in &self.handles {
            self.process.close_handle(handle);
        }
    }
}

/// One client connection, from a process with this token: an open device handle until the
/// connection ends.
fn serve(stream: UnixStream, token: Token, adapter: &Adapter, counts: &EdgeCounts) {
    let process = Process::new(token, Bitness::Bits64);
    let device = process.open(adapter.device(), FILE_READ_DATA | FILE_WRITE_DATA);
    let mut writer = &stream;
    let mut events = Vec::new();
    while let Ok(Some((message, descriptors))) = receive_message(&stream) {
        let status = register(&process, &device, &message, descriptors, &mut events);
        if status != 0 {
            log!("wintun-emu: registration refused: status {status:#010x}");
        }
        if writer.write_all(&status.to_le_bytes()).is_err() {
            break;
        }
    }
    device.close();
    process.exit();
    for Events { send, receive } in events {
        counts
            .send_event_sets
            .fetch_add(send.set_count(), Ordering::Relaxed);
        counts
            .receive_event_wakes
            .fetch_add(receive.outside_sets(), Ordering::Relaxed);
    }
}

/// Who may open the device, by the peer's user ID (SO_PEERCRED): root, as LocalSystem, and the
/// emulator's own user, as an elevated administrator, as the driver's device admits only SYSTEM
/// and Administrators. Anyone else gets no handle (None).
fn token_for(peer_uid: libc::uid_t, own_uid: libc::uid_t) -> Option<Token> {
    match peer_uid {
        0 => Some(Token::System),
        uid if uid == own_uid => Some(Token::Administrator),
        _ => None,
    }
}

/// The user ID of the process at the other end of `stream` (SO_PEERCRED: the connecting
/// process's, as of connect).
fn peer_uid(stream: &UnixStream) -> io::Result<libc::uid_t> {
    // SAFETY: ucred is plain data; getsockopt fills it and its length.
    let mut credentials: libc::ucred = unsafe { std::mem::zeroed() };
    let mut len = size_of::<libc::ucred>() as libc::socklen_t;
    // SAFETY: our socket, and the local with its size.
    let result = unsafe {
        libc::getsockopt(
            stream.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            (&mut credentials as *mut libc::ucred).cast(),
            &mut len,
        )
    };
    if result != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(credentials.uid)
}

/// A connection from a user who may not open the device: every registration is answered with
/// STATUS_ACCESS_DENIED, what opening the device would give that user on Windows, and nothing it
/// sent is mapped or kept.
fn refuse(stream: UnixStream) {
    let mut writer = &stream;
    while let Ok(Some(_)) = receive_message(&stream) {
        if writer
            .write_all(&STATUS_ACCESS_DENIED.to_le_bytes())
            .is_err()
        {
            break;
        }
    }
}

/// The events of a registration, for their counts.
struct Events {
    send: Arc<oxtun_sim::EventObject>,
    receive: Arc<oxtun_sim::EventObject>,
}

/// Blocks SIGINT and SIGTERM in every thread (so `wait_for_signal` gets them) and ignores
/// SIGPIPE (a client gone mid-write is handled as an error).
fn take_over_signals() -> libc::sigset_t {
    // SAFETY: sigset operations on a local, then the mask of this (the first) thread, which
    // threads started after inherit.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::sigaddset(&mut set, libc::SIGTERM);
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        libc::signal(libc::SIGPIPE, libc::SIG_IGN);
        set
    }
}

fn bind_socket(path: &PathBuf) -> io::Result<UnixListener> {
    if let Ok(metadata) = std::fs::symlink_metadata(path) {
        let in_use = |why: &str| {
            let message = format!("{}: {why}", path.display());
            Err(io::Error::new(io::ErrorKind::AddrInUse, message))
        };
        if !metadata.file_type().is_socket() {
            return in_use("exists and is not a socket");
        }
        if UnixStream::connect(path).is_ok() {
            return in_use("another emulator listens there");
        }
        // A socket file left by an emulator that died: nobody listens on it.
        std::fs::remove_file(path)?;
    }
    // The socket is the device: only its owner may reach it, whatever the umask. The umask is
    // the process's, and no other thread runs yet, so it is set around the bind alone; the
    // mode is then set again explicitly.
    // SAFETY: umask only changes this process's file creation mask.
    let umask = unsafe { libc::umask(0o177) };
    let bound = UnixListener::bind(path);
    // SAFETY: as above, restoring it.
    unsafe { libc::umask(umask) };
    let listener = bound
        .map_err(|error| io::Error::new(error.kind(), format!("{}: {error}", path.display())))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    Ok(listener)
}

/// Asks the driver its version, as Windows' NDIS would, and writes it to `path`.
fn write_driver_version(adapter: &Adapter, path: &PathBuf) -> io::Result<()> {
    let answer = adapter.query(OID_GEN_VENDOR_DRIVER_VERSION, 4);
    let version = answer
        .data
        .get(..4)
        .filter(|_| answer.status == 0)
        .map(|bytes| u32::from_le_bytes(bytes.try_into().expect("4 bytes")))
        .ok_or_else(|| io::Error::other("the driver did not answer its version"))?;
    std::fs::write(path, format!("{version:#010x}\n"))
}

fn run(options: Options) -> io::Result<bool> {
    let signals = take_over_signals();
    stack::measure(options.stack_high_water);
    let tun = match options.upper {
        Upper::Tun => {
            let tun = tun::open_with_headers(&options.name, true)?;
            Some(tun)
        }
        Upper::Reflect => None,
    };
    let listener = bind_socket(&options.socket)?;
    listener.set_nonblocking(true)?;
    log_driver(&options.driver)?;
    let driver = Driver::load_build(&options.driver)
        .map_err(|status| io::Error::other(format!("the driver did not load: {status:#x}")))?;
    let setup = options
        .keywords
        .iter()
        .fold(AdapterSetup::default(), |setup, (name, value)| {
            setup.keyword(name, value.as_str())
        });
    let adapter =
        Arc::new(driver.add_adapter_with(setup).map_err(|status| {
            io::Error::other(format!("MiniportInitializeEx failed: {status:#x}"))
        })?);
    adapter.set_recording(false);
    if tun.is_some() {
        // The MTU the driver reported in its general attributes, unless a smaller one is asked.
        let mtu = options
            .mtu
            .unwrap_or(adapter.general().mtu)
            .min(adapter.general().mtu);
        configure_interface(&options.name, mtu, &options.addresses)?;
    }
    let counts = Arc::new(EdgeCounts::default());
    let sink: oxtun_sim::ReceiveSink = match &tun {
        Some(tun) => {
            let (tun, counts) = (tun.try_clone()?, counts.clone());
            Arc::new(move |packets: &[oxtun_sim::Indicated<'_>]| {
                for indicated in packets {
                    // Enough of the packet for any headers to_linux reads.
                    let head = indicated.head(512);
                    let up = upper_edge::to_linux(&head, indicated.len(), &indicated.offloads);
                    if up.header.gso_type != VIRTIO_NET_HDR_GSO_NONE {
                        counts.up_coalesced.fetch_add(1, Ordering::Relaxed);
                    }
                    let header = up.header.encode();
                    // The checksum field replaced where it lies: gathered, not copied.
                    let field = up.checksum_field.as_ref().map(|(at, bytes)| (*at, bytes));
                    let parts: Vec<libc::iovec> = std::iter::once(&header[..])
                        .chain(upper_edge::gather(indicated.pieces, field))
                        .map(|bytes| libc::iovec {
                            iov_base: bytes.as_ptr() as *mut libc::c_void,
                            iov_len: bytes.len(),
                        })
                        .collect();
                    // SAFETY: writing the header and the packet from borrowed slices to our TUN
                    // descriptor; a full queue drops it, as a congested link would.
                    let written = unsafe {
                        libc::writev(tun.as_raw_fd(), parts.as_ptr(), parts.len() as i32)
                    };
                    let count = if written < 0 {
                        &counts.up_dropped
                    } else {
                        &counts.up
                    };
                    count.fetch_add(1, Ordering::Relaxed);
                }
            })
        }
        None => {
            // The indicated packets, where they lie in the receive ring, sent again before
            // their NBLs are returned: no copy until the send path's into the send ring (but
            // for a packet the driver indicated as headers and payload apart, joined first).
            let (sender, counts) = (Mutex::new(adapter.sender()), counts.clone());
            Arc::new(move |packets: &[oxtun_sim::Indicated<'_>]| {
                let packets: Vec<_> = packets
                    .iter()
                    .map(|indicated| indicated.contiguous())
                    .collect();
                let packets: Vec<&[u8]> = packets.iter().map(|packet| packet.as_ref()).collect();
                let sent = sender.lock().unwrap().send(&packets, DISPATCH_LEVEL);
                counts.up.fetch_add(packets.len() as u64, Ordering::Relaxed);
                counts.count_down(sent, packets.len());
            })
        }
    };
    adapter.set_receive_sink(Some(sink));
    if let Some(path) = &options.version_file {
        write_driver_version(&adapter, path)?;
    }
    let stop = new_eventfd()?;
    let signal_stop = stop.try_clone()?;
    thread::spawn(move || {
        let mut signal = 0;
        // SAFETY: waiting for the blocked signals of our set.
        unsafe { libc::sigwait(&signals, &mut signal) };
        log!("wintun-emu: signal {signal}: shutting down");
        signal_eventfd(signal_stop.as_fd());
    });
    let tun_thread = tun.map(|tun| {
        let (adapter, stop) = (adapter.clone(), stop.try_clone().expect("dup"));
        let counts = counts.clone();
        let name = options.name.clone();
        thread::spawn(move || forward_from_tun(&tun, &name, &stop, &adapter, &counts))
    });
    // Each connection's thread, and a handle that ends its stream when we shut down.
    let mut connections: Vec<(UnixStream, thread::JoinHandle<()>)> = Vec::new();
    // SAFETY: reads this process's effective user ID.
    let own_uid = unsafe { libc::geteuid() };
    println!("ready {}", options.socket.display());
    io::stdout().flush()?;
    loop {
        if poll_readable(&[listener.as_fd(), stop.as_fd()])? == 1 {
            break;
        }
        let Ok((stream, _)) = listener.accept() else {
            continue;
        };
        stream.set_nonblocking(false)?;
        let shutdown_handle = stream.try_clone()?;
        let uid = peer_uid(&stream)?;
        let token = token_for(uid, own_uid);
        if token.is_none() {
            log!("wintun-emu: refused a connection from user {uid}: only root and user {own_uid}");
        }
        let adapter = adapter.clone();
        let counts = counts.clone();
        let thread = thread::spawn(move || match token {
            Some(token) => serve(stream, token, &adapter, &counts),
            None => refuse(stream),
        });
        connections.retain(|(_, thread)| !thread.is_finished());
        connections.push((shutdown_handle, thread));
    }
    drop(listener);
    let _ = std::fs::remove_file(&options.socket);
    for (stream, thread) in connections {
        let _ = stream.shutdown(std::net::Shutdown::Both);
        let _ = thread.join();
    }
    if let Some(thread) = tun_thread {
        let _ = thread.join();
    }
    adapter.set_receive_sink(None);
    log!("wintun-emu: upper edge: {counts}");
    let adapter =
        Arc::try_unwrap(adapter).map_err(|_| io::Error::other("the adapter is still in use"))?;
    adapter.halt();
    let leaks = driver.unload();
    if leaks.is_empty() {
        log!("wintun-emu: adapter halted, driver unloaded, nothing leaked");
    } else {
        log!("wintun-emu: driver unloaded, but it leaked: {leaks}");
    }
    if options.stack_high_water {
        let _ = write!(io::stderr(), "{}", stack::high_water());
    }
    Ok(leaks.is_empty())
}

fn main() -> ExitCode {
    let options = match parse_options() {
        Ok(options) => options,
        Err(message) => {
            log!("wintun-emu: {message}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    match run(options) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(error) => {
            log!("wintun-emu: {error}");
            ExitCode::FAILURE
        }
    }
}
