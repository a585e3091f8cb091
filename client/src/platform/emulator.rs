//! The Linux emulator's device (`wintun-emu`): rings in memfds, events as eventfds, and the
//! registration sent over its Unix socket with the four descriptors (design.md, "Emulated device
//! protocol").

use std::io::{self, Read};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::path::Path;

use oxtun_abi::Features;
use oxtun_abi::emulator::EmulatorRegistration;

use crate::Error;

pub type RawHandle = RawFd;

fn check(result: libc::c_int) -> io::Result<libc::c_int> {
    if result < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(result)
    }
}

/// Ring memory: a memfd, mapped shared (the emulator maps the same file).
pub struct Memory {
    fd: OwnedFd,
    base: *mut u8,
    len: usize,
}

// SAFETY: the mapping is plain shared memory, accessed through the ring types' atomics and
// bounded copies.
unsafe impl Send for Memory {}
// SAFETY: as for Send.
unsafe impl Sync for Memory {}

impl Memory {
    pub fn allocate(len: usize) -> io::Result<Memory> {
        // SAFETY: a new anonymous file; the name is a NUL-terminated literal.
        let fd = check(unsafe { libc::memfd_create(c"oxtun-ring".as_ptr(), libc::MFD_CLOEXEC) })?;
        // SAFETY: a descriptor we just created and own.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        // SAFETY: our memfd.
        check(unsafe { libc::ftruncate(fd.as_raw_fd(), len as libc::off_t) })?;
        // SAFETY: a shared mapping of the whole (zeroed) file at an address the kernel chooses.
        let base = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                fd.as_raw_fd(),
                0,
            )
        };
        if base == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        Ok(Memory {
            fd,
            base: base.cast(),
            len,
        })
    }

    pub fn as_ptr(&self) -> *mut u8 {
        self.base
    }
}

impl Drop for Memory {
    fn drop(&mut self) {
        // SAFETY: the mapping made in allocate, unmapped once.
        unsafe { libc::munmap(self.base.cast(), self.len) };
    }
}

/// An auto-reset event: an eventfd (set = write 1; wait = poll, then read, which resets it).
/// Non-blocking, so several threads may wait on it: each returns once it is readable, and the
/// reads after the first find it reset.
pub struct Event {
    fd: OwnedFd,
}

impl Event {
    pub fn new() -> io::Result<Event> {
        // SAFETY: a new eventfd.
        let fd = check(unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) })?;
        // SAFETY: a descriptor we just created and own.
        Ok(Event {
            fd: unsafe { OwnedFd::from_raw_fd(fd) },
        })
    }

    pub fn set(&self) -> io::Result<()> {
        let one = 1u64.to_ne_bytes();
        // SAFETY: writing 8 bytes from a local to our eventfd.
        let written = unsafe { libc::write(self.fd.as_raw_fd(), one.as_ptr().cast(), one.len()) };
        if written == one.len() as isize {
            Ok(())
        } else {
            Err(io::Error::last_os_error())
        }
    }

    pub fn wait(&self) -> io::Result<()> {
        let mut poll = libc::pollfd {
            fd: self.fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        loop {
            // SAFETY: one pollfd, ours.
            match unsafe { libc::poll(&mut poll, 1, -1) } {
                1 => break,
                _ if io::Error::last_os_error().kind() == io::ErrorKind::Interrupted => continue,
                _ => return Err(io::Error::last_os_error()),
            }
        }
        self.consume();
        Ok(())
    }

    /// Resets the event if it is set.
    pub fn consume(&self) {
        let mut value = [0u8; 8];
        // SAFETY: reading 8 bytes into a local from our non-blocking eventfd, which resets it;
        // nothing to read (EAGAIN) means it was not set.
        unsafe { libc::read(self.fd.as_raw_fd(), value.as_mut_ptr().cast(), value.len()) };
    }

    pub fn raw(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

/// The connection to the emulator: the open device. A registration sent over it holds until it
/// closes (closing it ends the session); after a refused one it stays open and may register
/// again.
pub struct Device {
    stream: UnixStream,
}

impl Device {
    /// Opens the device of the emulator listening on `socket`.
    pub fn connect(socket: &Path) -> Result<Device, Error> {
        Ok(Device {
            stream: UnixStream::connect(socket)?,
        })
    }

    /// Registers the rings, asking for `features` (the extended message) unless there are none
    /// (the plain one): the message and the four descriptors, then the emulator's answer.
    pub fn register(
        &mut self,
        send: (&Memory, u32, &Event),
        receive: (&Memory, u32, &Event),
        features: Features,
    ) -> Result<(), Error> {
        let registration = EmulatorRegistration {
            send_ring_size: send.1,
            receive_ring_size: receive.1,
        };
        let message = if features == Features::NONE {
            registration.encode()
        } else {
            registration.encode_extended(features)
        };
        let descriptors = [
            send.0.fd.as_raw_fd(),
            send.2.raw(),
            receive.0.fd.as_raw_fd(),
            receive.2.raw(),
        ];
        send_with_descriptors(&self.stream, &message, &descriptors)?;
        let mut reply = [0u8; 4];
        self.stream.read_exact(&mut reply)?;
        match u32::from_le_bytes(reply) {
            0 => Ok(()),
            status => Err(Error::Refused(status)),
        }
    }

    /// A device that reaches no emulator, for the session's tests, which play the driver.
    #[cfg(test)]
    pub fn detached() -> Device {
        let (stream, _) = UnixStream::pair().expect("a socket pair");
        Device { stream }
    }
}

/// Sends `bytes` with `descriptors` attached (SCM_RIGHTS).
pub fn send_with_descriptors(
    stream: &UnixStream,
    bytes: &[u8],
    descriptors: &[RawFd],
) -> io::Result<()> {
    let payload = std::mem::size_of_val(descriptors);
    // SAFETY: CMSG_SPACE is a pure size computation.
    let space = unsafe { libc::CMSG_SPACE(payload as u32) } as usize;
    let mut control = vec![0u64; space.div_ceil(8)];
    let mut iov = libc::iovec {
        iov_base: bytes.as_ptr().cast_mut().cast(),
        iov_len: bytes.len(),
    };
    // SAFETY: msghdr is plain data; zeroed is its empty state.
    let mut header: libc::msghdr = unsafe { std::mem::zeroed() };
    header.msg_iov = &mut iov;
    header.msg_iovlen = 1;
    header.msg_control = control.as_mut_ptr().cast();
    header.msg_controllen = space as _;
    // SAFETY: the control buffer holds one control message of `payload` bytes, which the CMSG
    // macros lay out; the descriptors are the caller's, copied in.
    unsafe {
        let cmsg = libc::CMSG_FIRSTHDR(&header);
        (*cmsg).cmsg_level = libc::SOL_SOCKET;
        (*cmsg).cmsg_type = libc::SCM_RIGHTS;
        (*cmsg).cmsg_len = libc::CMSG_LEN(payload as u32) as _;
        std::ptr::copy_nonoverlapping(
            descriptors.as_ptr().cast::<u8>(),
            libc::CMSG_DATA(cmsg),
            payload,
        );
    }
    // SAFETY: a complete message over our socket.
    let sent = unsafe { libc::sendmsg(stream.as_raw_fd(), &header, libc::MSG_NOSIGNAL) };
    if sent == bytes.len() as isize {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}
