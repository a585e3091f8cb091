//! The Linux stack's side of the tests, inside the test's own network namespace: echo requests
//! from raw ICMP sockets, timed to the microsecond.

use std::io;
use std::net::IpAddr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::{Duration, Instant};

use crate::session::readable_before;

/// A raw ICMP (IPv4) or ICMPv6 socket that pings one address.
pub struct Pinger {
    socket: OwnedFd,
    destination: IpAddr,
    id: u16,
}

/// An echo reply that came back: its sequence number and when.
pub struct Reply {
    pub sequence: u16,
    pub at: Instant,
}

impl Pinger {
    pub fn new(destination: IpAddr) -> io::Result<Pinger> {
        let (domain, protocol) = match destination {
            IpAddr::V4(_) => (libc::AF_INET, libc::IPPROTO_ICMP),
            IpAddr::V6(_) => (libc::AF_INET6, libc::IPPROTO_ICMPV6),
        };
        // SAFETY: a new socket.
        let fd = unsafe { libc::socket(domain, libc::SOCK_RAW | libc::SOCK_CLOEXEC, protocol) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: a descriptor we just created and own.
        let socket = unsafe { OwnedFd::from_raw_fd(fd) };
        // Room for a whole burst of replies.
        make_room(&socket);
        Ok(Pinger {
            socket,
            destination,
            id: std::process::id() as u16,
        })
    }

    /// Sends echo request `sequence` with `payload` (the kernel computes ICMPv6's checksum;
    /// ICMP's is ours).
    pub fn send(&self, sequence: u16, payload: &[u8]) -> io::Result<()> {
        let kind = if self.destination.is_ipv4() { 8 } else { 128 };
        let mut message = vec![kind, 0, 0, 0];
        message.extend_from_slice(&self.id.to_be_bytes());
        message.extend_from_slice(&sequence.to_be_bytes());
        message.extend_from_slice(payload);
        if self.destination.is_ipv4() {
            let sum = crate::ip::checksum(0, &message);
            message[2..4].copy_from_slice(&sum.to_be_bytes());
        }
        // SAFETY: sockaddr_in6 is plain data, large enough for either family.
        let mut address: libc::sockaddr_in6 = unsafe { std::mem::zeroed() };
        let len = match self.destination {
            IpAddr::V4(v4) => {
                let v4_address = libc::sockaddr_in {
                    sin_family: libc::AF_INET as libc::sa_family_t,
                    sin_port: 0,
                    sin_addr: libc::in_addr {
                        s_addr: u32::from_ne_bytes(v4.octets()),
                    },
                    sin_zero: [0; 8],
                };
                // SAFETY: a sockaddr_in fits in the zeroed sockaddr_in6.
                unsafe {
                    std::ptr::write((&mut address as *mut libc::sockaddr_in6).cast(), v4_address)
                };
                size_of::<libc::sockaddr_in>()
            }
            IpAddr::V6(v6) => {
                address.sin6_family = libc::AF_INET6 as libc::sa_family_t;
                address.sin6_addr.s6_addr = v6.octets();
                size_of::<libc::sockaddr_in6>()
            }
        };
        // SAFETY: sending our message to our address of `len` bytes.
        let sent = unsafe {
            libc::sendto(
                self.socket.as_raw_fd(),
                message.as_ptr().cast(),
                message.len(),
                0,
                (&address as *const libc::sockaddr_in6).cast(),
                len as libc::socklen_t,
            )
        };
        if sent < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// The next echo reply to this pinger, or None when `timeout` passes first.
    pub fn receive(&self, timeout: Duration) -> Option<Reply> {
        let deadline = Instant::now() + timeout;
        let mut buffer = vec![0u8; 0x1_0000];
        loop {
            if !readable_before(&self.socket, deadline) {
                return None;
            }
            // SAFETY: reading into our buffer.
            let read = unsafe {
                libc::recv(
                    self.socket.as_raw_fd(),
                    buffer.as_mut_ptr().cast(),
                    buffer.len(),
                    libc::MSG_DONTWAIT,
                )
            };
            let at = Instant::now();
            let Ok(read) = usize::try_from(read) else {
                continue;
            };
            // A raw IPv4 socket hands over the IP header too; an ICMPv6 one does not.
            let message = match self.destination {
                IpAddr::V4(_) => &buffer[usize::from(buffer[0] & 0x0F) * 4..read],
                IpAddr::V6(_) => &buffer[..read],
            };
            let reply_kind = if self.destination.is_ipv4() { 0 } else { 129 };
            if message.len() >= 8
                && message[0] == reply_kind
                && message[4..6] == self.id.to_be_bytes()
            {
                return Some(Reply {
                    sequence: u16::from_be_bytes([message[6], message[7]]),
                    at,
                });
            }
        }
    }
}

/// Gives a socket 8 MiB to queue what it receives (as root, past rmem_max): the tests keep
/// up to 200 packets of up to 9 KB in flight, more than the default holds.
pub fn make_room(socket: &impl AsRawFd) {
    let bytes: libc::c_int = 8 << 20;
    // SAFETY: an int option from a local.
    let result = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVBUFFORCE,
            (&bytes as *const libc::c_int).cast(),
            size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    assert_eq!(result, 0, "SO_RCVBUFFORCE: {}", io::Error::last_os_error());
}
