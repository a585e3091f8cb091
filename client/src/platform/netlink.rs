//! The one netlink request this crate makes: setting an interface's MTU (RTM_NEWLINK with
//! IFLA_MTU, as `ip link set dev NAME mtu N` sends it), answered by an acknowledgement.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

const NLMSG_HEADER: usize = 16;
const IFINFOMSG: usize = 16;
const RTA_HEADER: usize = 4;
const IFLA_MTU: u16 = 4;

/// The request: nlmsghdr, ifinfomsg for the index, one u32 attribute.
fn mtu_request(index: u32, mtu: u32, sequence: u32) -> Vec<u8> {
    let len = NLMSG_HEADER + IFINFOMSG + RTA_HEADER + 4;
    let mut message = Vec::with_capacity(len);
    message.extend_from_slice(&(len as u32).to_ne_bytes());
    message.extend_from_slice(&libc::RTM_NEWLINK.to_ne_bytes());
    let flags = (libc::NLM_F_REQUEST | libc::NLM_F_ACK) as u16;
    message.extend_from_slice(&flags.to_ne_bytes());
    message.extend_from_slice(&sequence.to_ne_bytes());
    message.extend_from_slice(&0u32.to_ne_bytes()); // port: the kernel's
    // ifinfomsg: family, padding, type, index, flags, change mask.
    message.extend_from_slice(&[libc::AF_UNSPEC as u8, 0, 0, 0]);
    message.extend_from_slice(&(index as i32).to_ne_bytes());
    message.extend_from_slice(&0u32.to_ne_bytes());
    message.extend_from_slice(&0u32.to_ne_bytes());
    message.extend_from_slice(&((RTA_HEADER + 4) as u16).to_ne_bytes());
    message.extend_from_slice(&IFLA_MTU.to_ne_bytes());
    message.extend_from_slice(&mtu.to_ne_bytes());
    message
}

/// Sets the MTU of the interface with `index`.
pub fn set_mtu(index: u32, mtu: u32) -> io::Result<()> {
    // SAFETY: a new netlink socket, owned below.
    let fd = unsafe {
        libc::socket(
            libc::AF_NETLINK,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC,
            libc::NETLINK_ROUTE,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the descriptor we just created.
    let socket = unsafe { OwnedFd::from_raw_fd(fd) };
    let request = mtu_request(index, mtu, 1);
    // SAFETY: sending our buffer on our socket (to the kernel: the socket is unbound and the
    // address is left to the default).
    let sent = unsafe {
        libc::send(
            socket.as_raw_fd(),
            request.as_ptr().cast(),
            request.len(),
            0,
        )
    };
    if sent != request.len() as isize {
        return Err(io::Error::last_os_error());
    }
    let mut reply = [0u8; 1024];
    // SAFETY: receiving into our buffer from our socket.
    let received = unsafe {
        libc::recv(
            socket.as_raw_fd(),
            reply.as_mut_ptr().cast(),
            reply.len(),
            0,
        )
    };
    if received < 0 {
        return Err(io::Error::last_os_error());
    }
    ack_status(&reply[..received as usize])
}

/// The status of an NLMSG_ERROR acknowledgement: its error field is 0 or a negative errno.
fn ack_status(reply: &[u8]) -> io::Result<()> {
    let word = |at: usize| -> Option<[u8; 4]> { reply.get(at..at + 4)?.try_into().ok() };
    let kind = reply
        .get(4..6)
        .map(|bytes| u16::from_ne_bytes([bytes[0], bytes[1]]));
    let error = word(NLMSG_HEADER).map(i32::from_ne_bytes);
    match (kind, error) {
        (Some(kind), Some(0)) if kind == libc::NLMSG_ERROR as u16 => Ok(()),
        (Some(kind), Some(error)) if kind == libc::NLMSG_ERROR as u16 => {
            Err(io::Error::from_raw_os_error(-error))
        }
        _ => Err(io::Error::other("netlink: not an acknowledgement")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_request_is_one_mtu_attribute_for_the_index() {
        let request = mtu_request(7, 1280, 1);
        assert_eq!(request.len(), 40);
        assert_eq!(&request[..4], &40u32.to_ne_bytes());
        assert_eq!(&request[20..24], &7i32.to_ne_bytes());
        assert_eq!(&request[32..34], &8u16.to_ne_bytes());
        assert_eq!(&request[34..36], &IFLA_MTU.to_ne_bytes());
        assert_eq!(&request[36..40], &1280u32.to_ne_bytes());
    }

    #[test]
    fn an_acknowledgement_carries_the_errno() {
        let mut ack = vec![0u8; 36];
        ack[4..6].copy_from_slice(&(libc::NLMSG_ERROR as u16).to_ne_bytes());
        assert!(ack_status(&ack).is_ok());
        ack[16..20].copy_from_slice(&(-libc::EINVAL).to_ne_bytes());
        assert_eq!(
            ack_status(&ack).unwrap_err().raw_os_error(),
            Some(libc::EINVAL)
        );
        assert!(ack_status(&ack[..10]).is_err());
    }
}
