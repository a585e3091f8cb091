//! Safe views of the NET_BUFFER_LIST chains NDIS hands the send path, owned by the driver
//! until it completes them.

use core::marker::PhantomData;
use core::ptr::null_mut;

use super::ndis::*;
use super::nt::*;

/// A chain of NBLs from MiniportSendNetBufferLists, owned until [`NblChain::complete_send`].
pub struct NblChain {
    head: *mut NET_BUFFER_LIST,
}

/// One NBL of a chain.
pub struct Nbl<'a> {
    nbl: *mut NET_BUFFER_LIST,
    _chain: PhantomData<&'a NblChain>,
}

/// One NET_BUFFER: one packet.
pub struct NetBuffer<'a> {
    nb: *mut NET_BUFFER,
    _chain: PhantomData<&'a NblChain>,
}

impl NblChain {
    /// # Safety
    /// `head` is a chain NDIS handed to MiniportSendNetBufferLists and nothing has completed.
    pub unsafe fn from_send(head: *mut NET_BUFFER_LIST) -> Self {
        NblChain { head }
    }

    pub fn iter(&self) -> impl Iterator<Item = Nbl<'_>> {
        let mut next = self.head;
        core::iter::from_fn(move || {
            let nbl = next;
            if nbl.is_null() {
                return None;
            }
            // SAFETY: a live NBL of the chain this value owns.
            next = unsafe { NET_BUFFER_LIST_NEXT_NBL(nbl) };
            Some(Nbl {
                nbl,
                _chain: PhantomData,
            })
        })
    }

    /// Gives every NBL back to NDIS (NdisMSendNetBufferListsComplete), with the status each was
    /// set to; `at_dispatch` says the caller runs at DISPATCH_LEVEL.
    ///
    /// # Safety
    /// `miniport` is NDIS's handle for the adapter the chain was sent to.
    pub unsafe fn complete_send(mut self, miniport: NDIS_HANDLE, at_dispatch: bool) {
        let head = core::mem::replace(&mut self.head, null_mut());
        if head.is_null() {
            return;
        }
        let flags = if at_dispatch {
            NDIS_SEND_COMPLETE_FLAGS_DISPATCH_LEVEL
        } else {
            0
        };
        // SAFETY: the adapter's handle and the whole chain NDIS gave, completed once (self is
        // consumed).
        unsafe { NdisMSendNetBufferListsComplete(miniport, head, flags) };
    }
}

impl<'a> Nbl<'a> {
    pub fn status(&self) -> NDIS_STATUS {
        // SAFETY: the NBL is owned by the driver until the chain completes.
        unsafe { (*self.nbl).Status }
    }

    pub fn set_status(&self, status: NDIS_STATUS) {
        // SAFETY: the NBL is owned by the driver until the chain completes.
        unsafe { set_NET_BUFFER_LIST_STATUS(self.nbl, status) };
    }

    /// Entry `index` of its NetBufferListInfo (an offload's information, read as the value the
    /// NET_BUFFER_LIST_INFO macro returns).
    pub fn info(&self, index: usize) -> usize {
        // SAFETY: the NBL is owned by the driver until the chain completes.
        unsafe { (*self.nbl).NetBufferListInfo[index] as usize }
    }

    /// Writes entry `index` of its NetBufferListInfo (what a completion reports, such as
    /// LsoV2TransmitComplete).
    pub fn set_info(&self, index: usize, value: usize) {
        // SAFETY: the NBL is owned by the driver until the chain completes.
        unsafe { (*self.nbl).NetBufferListInfo[index] = value as PVOID };
    }

    /// A value the driver keeps with the NBL while it owns it (its MiniportReserved[0]), 0 until
    /// set.
    pub fn stash(&self) -> usize {
        // SAFETY: the NBL is owned by the driver until the chain completes; MiniportReserved is
        // the miniport's meanwhile.
        unsafe { (*self.nbl).MiniportReserved.0[0] as usize }
    }

    pub fn set_stash(&self, value: usize) {
        // SAFETY: as for stash.
        unsafe { (*self.nbl).MiniportReserved.0[0] = value as PVOID };
    }

    pub fn net_buffers(&self) -> impl Iterator<Item = NetBuffer<'a>> + use<'a> {
        // SAFETY: a live NBL.
        let mut next = unsafe { NET_BUFFER_LIST_FIRST_NB(self.nbl) };
        core::iter::from_fn(move || {
            let nb = next;
            if nb.is_null() {
                return None;
            }
            // SAFETY: a live NET_BUFFER of the NBL.
            next = unsafe { (*nb).Next };
            Some(NetBuffer {
                nb,
                _chain: PhantomData,
            })
        })
    }
}

impl NetBuffer<'_> {
    /// Bytes of packet data.
    pub fn data_length(&self) -> u32 {
        // SAFETY: a live NET_BUFFER.
        unsafe { (*self.nb).DataLength }
    }

    /// Hands `sink` the packet's data in order, one contiguous piece per MDL, from the current
    /// offset. False if an MDL could not be mapped or the chain is shorter than the data.
    pub fn copy_data(&self, mut sink: impl FnMut(&[u8])) -> bool {
        // SAFETY: a live NET_BUFFER whose MDL chain describes locked or non-paged memory (NDIS
        // guarantees that for sends).
        unsafe {
            let mut remaining = (*self.nb).DataLength as usize;
            let mut mdl = (*self.nb).CurrentMdl;
            let mut offset = (*self.nb).CurrentMdlOffset as usize;
            while remaining > 0 {
                if mdl.is_null() {
                    return false;
                }
                let available = ((*mdl).ByteCount as usize).saturating_sub(offset);
                let base =
                    MmGetSystemAddressForMdlSafe(mdl, NormalPagePriority | MdlMappingNoExecute);
                if base.is_null() {
                    return false;
                }
                let take = available.min(remaining);
                sink(core::slice::from_raw_parts(
                    base.cast::<u8>().add(offset),
                    take,
                ));
                remaining -= take;
                offset = 0;
                mdl = (*mdl).Next;
            }
        }
        true
    }
}

impl Drop for NblChain {
    fn drop(&mut self) {
        // A chain must go back to NDIS; dropping it otherwise would lose the NBLs.
        debug_assert!(
            self.head.is_null(),
            "an NBL chain was dropped without completion"
        );
    }
}
