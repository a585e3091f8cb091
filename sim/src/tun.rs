//! Support, outside the layers: it calls nothing of the simulator.
//!
//! Linux TUN interfaces: the emulator's upper edge, and the benchmark's plain reference.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

/// Creates the layer-3 TUN interface `name` (no packet-information header) and returns its
/// descriptor. Needs CAP_NET_ADMIN.
pub fn open(name: &str, nonblocking: bool) -> io::Result<OwnedFd> {
    create(name, nonblocking, 0)
}

/// Creates the TUN interface `name` as [`open`] does, but with every packet read or written
/// after a 10-byte `struct virtio_net_hdr` in little-endian order (IFF_VNET_HDR, TUNSETVNETHDRSZ,
/// TUNSETVNETLE): what the kernel offloads to the reader ([`set_offload`]) and the writer's
/// super-packets and checksums cross in it.
pub fn open_with_headers(name: &str, nonblocking: bool) -> io::Result<OwnedFd> {
    let fd = create(name, nonblocking, libc::IFF_VNET_HDR)?;
    let size: libc::c_int = 10;
    // SAFETY: TUNSETVNETHDRSZ reads an int from our pointer.
    if unsafe { libc::ioctl(fd.as_raw_fd(), libc::TUNSETVNETHDRSZ, &size) } < 0 {
        return Err(context("TUNSETVNETHDRSZ"));
    }
    let little_endian: libc::c_int = 1;
    // SAFETY: TUNSETVNETLE reads an int from our pointer.
    if unsafe { libc::ioctl(fd.as_raw_fd(), libc::TUNSETVNETLE, &little_endian) } < 0 {
        return Err(context("TUNSETVNETLE"));
    }
    Ok(fd)
}

/// TUNSETOFFLOAD: which offloads (TUN_F_* flags) the kernel may leave to the reader of `fd`, a
/// TUN descriptor opened with headers. The kernel updates the interface's features at once.
pub fn set_offload(fd: &OwnedFd, flags: u32) -> io::Result<()> {
    // SAFETY: TUNSETOFFLOAD takes its argument by value.
    if unsafe { libc::ioctl(fd.as_raw_fd(), libc::TUNSETOFFLOAD, flags as libc::c_ulong) } < 0 {
        return Err(context("TUNSETOFFLOAD"));
    }
    Ok(())
}

fn create(name: &str, nonblocking: bool, extra_flags: libc::c_int) -> io::Result<OwnedFd> {
    let flags = libc::O_RDWR | libc::O_CLOEXEC | if nonblocking { libc::O_NONBLOCK } else { 0 };
    // SAFETY: opening a device node by a NUL-terminated path.
    let fd = unsafe { libc::open(c"/dev/net/tun".as_ptr(), flags) };
    if fd < 0 {
        return Err(context("opening /dev/net/tun"));
    }
    // SAFETY: a descriptor we just created and own.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: ifreq is plain data; zeroed is its empty state.
    let mut request: libc::ifreq = unsafe { std::mem::zeroed() };
    if name.len() >= request.ifr_name.len() {
        return Err(io::Error::other(format!(
            "interface name {name:?} is too long"
        )));
    }
    for (slot, byte) in request.ifr_name.iter_mut().zip(name.bytes()) {
        *slot = byte as libc::c_char;
    }
    request.ifr_ifru.ifru_flags = (libc::IFF_TUN | libc::IFF_NO_PI | extra_flags) as libc::c_short;
    // SAFETY: TUNSETIFF with a valid ifreq on our TUN descriptor.
    if unsafe { libc::ioctl(fd.as_raw_fd(), libc::TUNSETIFF, &mut request) } < 0 {
        return Err(context("TUNSETIFF (needs CAP_NET_ADMIN)"));
    }
    Ok(fd)
}

fn context(what: &str) -> io::Error {
    let error = io::Error::last_os_error();
    io::Error::new(error.kind(), format!("{what}: {error}"))
}

/// `ip ARGS...` (iproute2), which must succeed.
pub fn ip(args: &[&str]) -> io::Result<()> {
    let status = std::process::Command::new("ip")
        .args(args)
        .status()
        .map_err(|error| io::Error::new(error.kind(), format!("running ip (iproute2): {error}")))?;
    if status.success() {
        Ok(())
    } else {
        Err(io::Error::other(format!(
            "ip {} failed: {status}",
            args.join(" ")
        )))
    }
}

/// Waits (two seconds at most) until the kernel has added the local route of the IPv6 address
/// `address` (a CIDR's address part). It adds it from a work queue some milliseconds after the
/// address, even without duplicate-address detection, and drops packets to the address until
/// then.
pub fn wait_for_local_route(address: &str) -> io::Result<()> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
    loop {
        let output = std::process::Command::new("ip")
            .args(["-6", "route", "show", "table", "local", address])
            .output()?;
        if output.status.success() && !output.stdout.is_empty() {
            return Ok(());
        }
        if std::time::Instant::now() > deadline {
            return Err(io::Error::other(format!(
                "the local route of {address} never came"
            )));
        }
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
}
