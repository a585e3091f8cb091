//! The emulated device (design.md, "Emulated device protocol"): a Unix stream connection is an
//! open handle; a 16-byte little-endian message with the rings' four descriptors is
//! TUN_IOCTL_REGISTER_RINGS; the reply is the NTSTATUS.

use std::io::{self, Read};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::UnixStream;
use std::path::Path;

use crate::session::{Rings, ring_size};

/// CTL_CODE(51820, 0x970, METHOD_BUFFERED, FILE_READ_DATA | FILE_WRITE_DATA) (wintun's
/// session.c).
pub const TUN_IOCTL_REGISTER_RINGS: u32 = 0xCA6C_E5C0;
pub const STATUS_INVALID_PARAMETER: u32 = 0xC000_000D;
pub const STATUS_INVALID_DEVICE_REQUEST: u32 = 0xC000_0010;
pub const STATUS_ALREADY_INITIALIZED: u32 = 0xC000_0510;

/// An open handle to the adapter's device.
pub struct Device(UnixStream);

impl Device {
    pub fn open(socket: &Path) -> io::Result<Device> {
        UnixStream::connect(socket).map(Device)
    }

    /// TUN_IOCTL_REGISTER_RINGS with `rings`: the send ring's memfd and event, then the
    /// receive ring's.
    pub fn register(&self, rings: &Rings) -> io::Result<u32> {
        let message = registration(
            ring_size(rings.send.capacity()),
            ring_size(rings.receive.capacity()),
        );
        let descriptors = [
            rings.send.memory.as_raw_fd(),
            rings.send.event.as_raw_fd(),
            rings.receive.memory.as_raw_fd(),
            rings.receive.event.as_raw_fd(),
        ];
        self.request(&message, &descriptors)
    }

    /// Sends any message with any descriptors; the status answered.
    pub fn request(&self, message: &[u8], descriptors: &[RawFd]) -> io::Result<u32> {
        send_with_rights(&self.0, message, descriptors)?;
        let mut reply = [0u8; 4];
        (&self.0).read_exact(&mut reply)?;
        Ok(u32::from_le_bytes(reply))
    }
}

/// The registration message: IOCTL code, the rings' sizes (RingSize), flags 0.
pub fn registration(send_ring_size: u32, receive_ring_size: u32) -> [u8; 16] {
    let mut message = [0u8; 16];
    for (field, value) in message.chunks_exact_mut(4).zip([
        TUN_IOCTL_REGISTER_RINGS,
        send_ring_size,
        receive_ring_size,
        0,
    ]) {
        field.copy_from_slice(&value.to_le_bytes());
    }
    message
}

fn send_with_rights(stream: &UnixStream, message: &[u8], descriptors: &[RawFd]) -> io::Result<()> {
    let payload = std::mem::size_of_val(descriptors);
    // SAFETY: CMSG_SPACE is a size computation.
    let space = unsafe { libc::CMSG_SPACE(payload as u32) } as usize;
    let mut control = vec![0u64; space.div_ceil(8)];
    let mut iov = libc::iovec {
        iov_base: message.as_ptr().cast_mut().cast(),
        iov_len: message.len(),
    };
    // SAFETY: msghdr is plain data; zeroed is its empty state.
    let mut header: libc::msghdr = unsafe { std::mem::zeroed() };
    header.msg_iov = &mut iov;
    header.msg_iovlen = 1;
    if !descriptors.is_empty() {
        header.msg_control = control.as_mut_ptr().cast();
        header.msg_controllen = space as _;
        // SAFETY: the control buffer has room for one header with `payload` bytes of data,
        // which CMSG_FIRSTHDR and CMSG_DATA point into.
        unsafe {
            let cmsg = libc::CMSG_FIRSTHDR(&header);
            (*cmsg).cmsg_level = libc::SOL_SOCKET;
            (*cmsg).cmsg_type = libc::SCM_RIGHTS;
            (*cmsg).cmsg_len = libc::CMSG_LEN(payload as u32) as _;
            std::ptr::copy_nonoverlapping(
                descriptors.as_ptr(),
                libc::CMSG_DATA(cmsg).cast::<RawFd>(),
                descriptors.len(),
            );
        }
    }
    // SAFETY: sending from our buffers; the iovec is only read.
    let sent = unsafe { libc::sendmsg(stream.as_raw_fd(), &header, libc::MSG_NOSIGNAL) };
    if sent < 0 {
        return Err(io::Error::last_os_error());
    }
    if sent as usize != message.len() {
        return Err(io::Error::other("short send"));
    }
    Ok(())
}
