//! The NBLs the receive path indicates: one NET_BUFFER each, whose MDL describes one packet in
//! place in the locked receive ring. They are allocated once and reused.

use core::mem::size_of;
use core::ptr::{NonNull, null_mut};
use core::sync::atomic::{AtomicU32, Ordering};

use super::ndis::*;
use super::nt::*;
use super::offload::{TcpIpChecksumNetBufferListInfo, TcpRecvSegCoalesceInfo};
use super::pool::POOL_TAG;
use super::user::LockedPages;

/// The `NblFlags` that describe a received packet (its IP version, transport and header-data
/// split), which a miniport sets and clears one by one (NdisSetNblFlag, NdisClearNblFlag): on a
/// reused NBL, those the stack or an earlier packet left are cleared. The rest are not the
/// miniport's: "Bits 0x04 to 0x80 are reserved for use by NDIS" (ndis/nbl.h), and the read-only
/// bits are for intermediate and filter drivers (NET_BUFFER_LIST, Microsoft's NDIS
/// documentation); they stay as NDIS allocated the NBL.
const PACKET_DESCRIPTION_FLAGS: ULONG = NDIS_NBL_FLAGS_HD_SPLIT
    | NDIS_NBL_FLAGS_IS_IPV4
    | NDIS_NBL_FLAGS_IS_IPV6
    | NDIS_NBL_FLAGS_IS_TCP
    | NDIS_NBL_FLAGS_IS_UDP
    | NDIS_NBL_FLAGS_SPLIT_AT_UPPER_LAYER_PROTOCOL_HEADER
    | NDIS_NBL_FLAGS_SPLIT_AT_UPPER_LAYER_PROTOCOL_PAYLOAD;

/// Most pages a packet of up to 0xFFFF bytes can touch, wherever it starts.
const PACKET_PAGES_SPAN: u32 = 0x10000 + 0x1000;

/// The adapter's NBL pool, freed on drop (after every NBL from it is freed).
pub struct NblPool(NDIS_HANDLE);

// SAFETY: an NBL pool handle may be used from any thread.
unsafe impl Send for NblPool {}
// SAFETY: as for Send.
unsafe impl Sync for NblPool {}

impl NblPool {
    /// # Safety
    /// `miniport` is NDIS's handle for the adapter, at PASSIVE_LEVEL.
    pub unsafe fn allocate(miniport: NDIS_HANDLE) -> Option<Self> {
        let parameters = NET_BUFFER_LIST_POOL_PARAMETERS {
            Header: NDIS_OBJECT_HEADER {
                Type: NDIS_OBJECT_TYPE_DEFAULT,
                Revision: NET_BUFFER_LIST_POOL_PARAMETERS_REVISION_1,
                Size: NDIS_SIZEOF_NET_BUFFER_LIST_POOL_PARAMETERS_REVISION_1,
            },
            ProtocolId: NDIS_PROTOCOL_ID_DEFAULT,
            fAllocateNetBuffer: 1,
            ContextSize: 0,
            PoolTag: POOL_TAG,
            DataSize: 0,
        };
        // SAFETY: the caller's adapter handle and parameters that live through the call.
        let pool = unsafe { NdisAllocateNetBufferListPool(miniport, &parameters) };
        (!pool.is_null()).then(|| NblPool(pool))
    }

    /// An NBL with one NET_BUFFER, an MDL big enough for any packet, and room for a packet's
    /// headers of the driver's own ([`PacketNbl::describe_split`]).
    pub fn allocate_packet_nbl(&self) -> Option<PacketNbl> {
        let parts = NblParts::allocate()?;
        // SAFETY: our pool; the MDLs are ours and outlive the NBL (PacketNbl::free).
        let nbl = unsafe {
            NdisAllocateNetBufferAndNetBufferList(self.0, 0, 0, (*parts.as_ptr()).data_mdl, 0, 0)
        };
        match NonNull::new(nbl) {
            Some(nbl) => Some(PacketNbl::new(nbl, parts)),
            None => {
                // SAFETY: the parts allocated above, unused.
                unsafe { NblParts::free(parts) };
                None
            }
        }
    }
}

/// Bytes of packet headers an NBL can hold in memory of the driver's: an RSC unit's (IPv4
/// without options or IPv6 without extension headers, and TCP with its options: 100 at most).
pub const SPLIT_HEADERS_CAPACITY: usize = 128;

/// Bytes of non-paged pool each receive NBL holds besides the NBL and its two MDLs (its
/// [`NblParts`]).
pub const RECEIVE_NBL_POOL_BYTES: usize = 144;
const _: () = assert!(size_of::<NblParts>() == RECEIVE_NBL_POOL_BYTES);

/// What the driver allocates with each receive NBL: the MDL its packet is described with, and
/// `headers` with an MDL over them, for a packet whose headers are the driver's copy and whose
/// payload lies in the ring.
#[repr(C)]
struct NblParts {
    /// Partial: built over the ring or a shared buffer for each indication.
    data_mdl: PMDL,
    /// Over all of `headers`, built once for non-paged pool.
    headers_mdl: PMDL,
    headers: [u8; SPLIT_HEADERS_CAPACITY],
}

impl NblParts {
    fn allocate() -> Option<NonNull<NblParts>> {
        // SAFETY: a plain allocation, checked for null below.
        let raw = unsafe { ExAllocatePool2(POOL_FLAG_NON_PAGED, size_of::<NblParts>(), POOL_TAG) };
        let parts = NonNull::new(raw.cast::<NblParts>())?;
        // SAFETY: MDLs for no memory yet (IoBuildPartialMdl fills it before any use), and for the
        // headers, which live as long as it (freed together).
        let (data_mdl, headers_mdl) = unsafe {
            let headers = (&raw mut (*parts.as_ptr()).headers).cast::<core::ffi::c_void>();
            (
                IoAllocateMdl(null_mut(), PACKET_PAGES_SPAN, 0, 0, null_mut()),
                IoAllocateMdl(headers, SPLIT_HEADERS_CAPACITY as u32, 0, 0, null_mut()),
            )
        };
        // SAFETY: the fresh allocation, ours alone (ExAllocatePool2 zeroed it: the MDL pointers
        // are null until set here, which is what free() looks at).
        unsafe {
            (*parts.as_ptr()).data_mdl = data_mdl;
            (*parts.as_ptr()).headers_mdl = headers_mdl;
        }
        if data_mdl.is_null() || headers_mdl.is_null() {
            // SAFETY: the parts above, unused.
            unsafe { NblParts::free(parts) };
            return None;
        }
        // SAFETY: an MDL over non-paged pool.
        unsafe { MmBuildMdlForNonPagedPool(headers_mdl) };
        Some(parts)
    }

    /// # Safety
    /// `parts` came from [`NblParts::allocate`], and no NBL uses its MDLs any more.
    unsafe fn free(parts: NonNull<NblParts>) {
        // SAFETY: as the caller says; a null MDL was never allocated.
        unsafe {
            for mdl in [(*parts.as_ptr()).data_mdl, (*parts.as_ptr()).headers_mdl] {
                if !mdl.is_null() {
                    IoFreeMdl(mdl);
                }
            }
            ExFreePoolWithTag(parts.as_ptr().cast(), POOL_TAG);
        }
    }
}

impl Drop for NblPool {
    fn drop(&mut self) {
        // SAFETY: the pool this value allocated; its owner freed every NBL from it first.
        unsafe { NdisFreeNetBufferListPool(self.0) };
    }
}

/// Bytes in non-paged pool that several indicated NBLs describe at once (the segments of one
/// super-packet, or one packet the driver completed), with an MDL for them all
/// (MmBuildMdlForNonPagedPool); freed when the last reference goes. It may hold the ticket of
/// the ring packet it was copied from, which whoever releases the last reference gets back
/// ([`SharedBuffer::release`]) to give the ring space back.
pub struct SharedBuffer {
    header: NonNull<SharedHeader>,
}

/// What precedes a shared buffer's bytes in its allocation.
#[repr(C, align(16))]
struct SharedHeader {
    references: AtomicU32,
    len: u32,
    mdl: PMDL,
    /// The ring packet's ticket, or [`NO_TICKET`].
    ticket: u32,
}

/// A shared buffer that holds no ring packet's ticket.
const NO_TICKET: u32 = u32::MAX;

// SAFETY: the references are atomic; the bytes are written only through the one reference a
// fresh buffer has (`bytes_mut`), and read only by NDIS's consumers afterwards.
unsafe impl Send for SharedBuffer {}

impl SharedBuffer {
    /// `len` bytes (zeroed) and their MDL; `None` when pool or MDLs run out. At up to
    /// DISPATCH_LEVEL.
    pub fn new(len: u32) -> Option<Self> {
        let size = size_of::<SharedHeader>() + len as usize;
        // SAFETY: a plain allocation, checked for null below.
        let raw = unsafe { ExAllocatePool2(POOL_FLAG_NON_PAGED, size, POOL_TAG) };
        let header = NonNull::new(raw.cast::<SharedHeader>())?;
        // SAFETY: the allocation holds the header and `len` bytes after it.
        let data = unsafe { raw.cast::<u8>().add(size_of::<SharedHeader>()) };
        // SAFETY: an MDL for the buffer's bytes, which live as long as it (freed together).
        let mdl = unsafe { IoAllocateMdl(data.cast(), len.max(1), 0, 0, null_mut()) };
        if mdl.is_null() {
            // SAFETY: the allocation above, unused.
            unsafe { ExFreePoolWithTag(raw, POOL_TAG) };
            return None;
        }
        // SAFETY: the header's memory, ours alone; the MDL describes non-paged pool.
        unsafe {
            header.as_ptr().write(SharedHeader {
                references: AtomicU32::new(1),
                len,
                mdl,
                ticket: NO_TICKET,
            });
            MmBuildMdlForNonPagedPool(mdl);
        }
        Some(SharedBuffer { header })
    }

    fn data(&self) -> *mut u8 {
        // SAFETY: the bytes follow the header in the same allocation.
        unsafe {
            self.header
                .as_ptr()
                .cast::<u8>()
                .add(size_of::<SharedHeader>())
        }
    }

    pub fn len(&self) -> u32 {
        // SAFETY: a live buffer.
        unsafe { (*self.header.as_ptr()).len }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The bytes, to read (whoever references the buffer only reads them once it is shared).
    pub fn bytes(&self) -> &[u8] {
        // SAFETY: the buffer's `len` bytes; they change only through `bytes_mut`, which needs
        // the one reference there is, mutably borrowed.
        unsafe { core::slice::from_raw_parts(self.data(), self.len() as usize) }
    }

    /// The bytes, to fill while this is the only reference (before any NBL describes them).
    pub fn bytes_mut(&mut self) -> Option<&mut [u8]> {
        // SAFETY: a live buffer.
        let references = unsafe { &(*self.header.as_ptr()).references };
        (references.load(Ordering::Acquire) == 1).then(|| {
            // SAFETY: the buffer's `len` bytes, which no one else references (one reference, and
            // &mut self).
            unsafe { core::slice::from_raw_parts_mut(self.data(), self.len() as usize) }
        })
    }

    /// Another reference, for an NBL that describes part of the buffer.
    fn share(&self) -> SharedBuffer {
        // SAFETY: a live buffer.
        unsafe {
            (*self.header.as_ptr())
                .references
                .fetch_add(1, Ordering::Relaxed)
        };
        SharedBuffer {
            header: self.header,
        }
    }

    /// Gives up this reference, having the buffer hold `ticket` from now on (the NBLs that
    /// share it are not indicated yet, so no other reference is released meanwhile); returns
    /// the ticket back if this was the last reference.
    pub fn hold_and_release(self, ticket: u32) -> Option<u32> {
        // SAFETY: a live buffer; its other references are in NBLs not yet indicated, so nothing
        // reads the ticket until this reference is released below.
        unsafe { (*self.header.as_ptr()).ticket = ticket };
        self.release()
    }

    /// Gives up this reference; if it was the last, frees the buffer and returns the ticket it
    /// held, if any.
    pub fn release(self) -> Option<u32> {
        let header = self.header.as_ptr();
        core::mem::forget(self);
        // SAFETY: a live buffer, this reference given up once; the last one frees it as Drop
        // does, after reading its ticket.
        unsafe {
            if (*header).references.fetch_sub(1, Ordering::AcqRel) != 1 {
                return None;
            }
            let ticket = (*header).ticket;
            IoFreeMdl((*header).mdl);
            ExFreePoolWithTag(header.cast(), POOL_TAG);
            (ticket != NO_TICKET).then_some(ticket)
        }
    }

    fn into_raw(self) -> usize {
        let raw = self.header.as_ptr() as usize;
        core::mem::forget(self);
        raw
    }

    /// # Safety
    /// `raw` came from `into_raw`, and is taken back once.
    unsafe fn from_raw(raw: usize) -> SharedBuffer {
        SharedBuffer {
            // SAFETY: the caller's pointer, from a live buffer.
            header: unsafe { NonNull::new_unchecked(raw as *mut SharedHeader) },
        }
    }
}

impl Drop for SharedBuffer {
    fn drop(&mut self) {
        let header = self.header.as_ptr();
        // SAFETY: a live buffer; the last reference frees it, MDL first (no partial MDL of it is
        // in use: each NBL that described part of it gave its reference back after NDIS
        // returned it).
        unsafe {
            if (*header).references.fetch_sub(1, Ordering::AcqRel) == 1 {
                IoFreeMdl((*header).mdl);
                ExFreePoolWithTag(header.cast(), POOL_TAG);
            }
        }
    }
}

/// An NBL of the receive path: owned by the driver, or lent to NDIS between indication and
/// return. `MiniportReserved` is the driver's: [0] holds what the NBL's packet lies in (the
/// ticket of a packet in the receive ring, shifted left by one, or a reference to a
/// [`SharedBuffer`], whose address is 16-byte aligned, with its low bit set), [1] the
/// [`NblParts`] allocated with the NBL (whatever the stack left in the NET_BUFFER's MDL fields).
pub struct PacketNbl {
    nbl: NonNull<NET_BUFFER_LIST>,
}

// SAFETY: an NBL the driver owns may be handled on any thread.
unsafe impl Send for PacketNbl {}

const OWNER_SLOT: usize = 0;
const PARTS_SLOT: usize = 1;
/// The low bit of the owner slot: a shared buffer, not a ticket.
const SHARED_BUFFER_TAG: usize = 1;
/// The owner slot of an NBL that describes nothing (no ticket shifted left is all ones).
const NO_OWNER: usize = usize::MAX;

/// Where the packet an NBL describes lies, as [`PacketNbl::take_owner`] gives it back.
pub enum PacketOwner {
    /// In the receive ring: its ticket.
    Ring(u32),
    /// In a buffer of the driver's.
    Buffer(SharedBuffer),
    /// Nowhere: the NBL described nothing since it came back.
    None,
}

/// What a received packet's NBL says of its offloads: TcpIpChecksumNetBufferListInfo
/// (NDIS_TCP_IP_CHECKSUM_NET_BUFFER_LIST_INFO.Receive) and TcpRecvSegCoalesceInfo
/// (NDIS_RSC_NBL_INFO), 0 for none.
#[derive(Clone, Copy, Default)]
pub struct ReceiveInfo {
    pub checksum: usize,
    pub coalesced: usize,
}

impl PacketNbl {
    /// A fresh NBL with one NET_BUFFER, and `parts`, which are the NBL's from now on.
    fn new(nbl: NonNull<NET_BUFFER_LIST>, parts: NonNull<NblParts>) -> Self {
        // SAFETY: a fresh NBL of ours; MiniportReserved is the miniport's to use.
        unsafe {
            (*nbl.as_ptr()).MiniportReserved.0[PARTS_SLOT] = parts.as_ptr().cast();
            (*nbl.as_ptr()).MiniportReserved.0[OWNER_SLOT] = NO_OWNER as PVOID;
        }
        PacketNbl { nbl }
    }

    fn net_buffer(&self) -> *mut NET_BUFFER {
        // SAFETY: a live NBL of ours with one NET_BUFFER.
        unsafe { (*self.nbl.as_ptr()).FirstNetBuffer }
    }

    fn parts(&self) -> *mut NblParts {
        // SAFETY: a live NBL of ours; the slot holds the parts `new` put there.
        unsafe { (*self.nbl.as_ptr()).MiniportReserved.0[PARTS_SLOT].cast() }
    }

    fn mdl(&self) -> PMDL {
        // SAFETY: the NBL's live parts.
        unsafe { (*self.parts()).data_mdl }
    }

    /// Points the NBL at the `len`-byte IP packet at `offset` in `pages`, from `miniport`, marked
    /// IPv4 or IPv6, with `info`. Everything else the stack may have left in the NBL from its
    /// last indication (its info entries, the flags that describe a packet, its NET_BUFFER's MDL
    /// pointers) starts afresh; NDIS's own flags are kept. `ticket` is kept for
    /// [`PacketNbl::take_owner`].
    ///
    /// # Safety
    /// `pages` belongs to a live [`LockedUserBuffer`](super::LockedUserBuffer) holding
    /// `offset + len` bytes, which stays alive until the NBL is freed or described again;
    /// `miniport` is the adapter's NDIS handle.
    #[allow(clippy::too_many_arguments)]
    pub unsafe fn describe(
        &mut self,
        miniport: NDIS_HANDLE,
        pages: LockedPages,
        offset: usize,
        len: u32,
        ipv6: bool,
        info: ReceiveInfo,
        ticket: u32,
    ) {
        // SAFETY: the caller vouches for the pages and the handle.
        unsafe {
            self.describe_part_of(
                miniport,
                pages.mdl.as_ptr(),
                pages.user_address + offset,
                len,
                ipv6,
                info,
                (ticket as usize) << 1,
            )
        };
    }

    /// Points the NBL at the `len`-byte IP packet at `offset` in `buffer`, which it keeps a
    /// reference to until [`PacketNbl::take_owner`]; otherwise as [`PacketNbl::describe`].
    ///
    /// # Safety
    /// `miniport` is the adapter's NDIS handle.
    pub unsafe fn describe_buffer(
        &mut self,
        miniport: NDIS_HANDLE,
        buffer: &SharedBuffer,
        offset: u32,
        len: u32,
        ipv6: bool,
        info: ReceiveInfo,
    ) {
        let in_bounds = offset
            .checked_add(len)
            .is_some_and(|end| end <= buffer.len());
        assert!(in_bounds, "a packet inside its buffer");
        // SAFETY: the buffer's MDL describes its bytes, which the reference this NBL keeps holds
        // alive; offset + len lies inside them.
        unsafe {
            let header = buffer.header.as_ptr();
            self.describe_part_of(
                miniport,
                (*header).mdl,
                buffer.data() as usize + offset as usize,
                len,
                ipv6,
                info,
                buffer.share().into_raw() | SHARED_BUFFER_TAG,
            )
        };
    }

    /// # Safety
    /// `source` describes locked or non-paged memory holding the `len` bytes at `address`,
    /// alive until the NBL is described again or freed; `miniport` is the adapter's handle.
    #[allow(clippy::too_many_arguments)]
    unsafe fn describe_part_of(
        &mut self,
        miniport: NDIS_HANDLE,
        source: PMDL,
        address: usize,
        len: u32,
        ipv6: bool,
        info: ReceiveInfo,
        owner: usize,
    ) {
        let mdl = self.mdl();
        // SAFETY: the caller vouches for the memory; the MDL and NBL are ours, and nothing else
        // looks at them until they are indicated. (Whoever mapped the MDL before unmapped it in
        // forget_pages when the NBL came back.)
        unsafe {
            IoBuildPartialMdl(source, mdl, address as PVOID, len);
            (*mdl).Next = null_mut();
            self.describe_chain(miniport, mdl, 0, len, ipv6, info, owner);
        }
    }

    /// Points the NBL at an IP packet whose `headers` are copied into the NBL's own memory and
    /// whose payload is the `payload_len` bytes at `payload_offset` in `pages`: a NET_BUFFER of
    /// two MDLs, the headers alone in the first (as header-data split lays a packet out);
    /// otherwise as [`PacketNbl::describe`].
    ///
    /// # Safety
    /// As for [`PacketNbl::describe`], with `payload_offset + payload_len` bytes in `pages`.
    #[allow(clippy::too_many_arguments)]
    pub unsafe fn describe_split(
        &mut self,
        miniport: NDIS_HANDLE,
        headers: &[u8],
        pages: LockedPages,
        payload_offset: usize,
        payload_len: u32,
        ipv6: bool,
        info: ReceiveInfo,
        ticket: u32,
    ) {
        assert!(headers.len() <= SPLIT_HEADERS_CAPACITY, "headers that fit");
        let parts = self.parts();
        // The headers end where the payload's MDL begins: they are copied to the end of the
        // NBL's room for them, and the NET_BUFFER's data starts that far into its first MDL.
        let unused = SPLIT_HEADERS_CAPACITY - headers.len();
        // SAFETY: the NBL's parts, which nothing else looks at until the NBL is indicated; the
        // caller vouches for the pages and the handle.
        unsafe {
            (&mut (*parts).headers)[unused..].copy_from_slice(headers);
            let (headers_mdl, data_mdl) = ((*parts).headers_mdl, (*parts).data_mdl);
            IoBuildPartialMdl(
                pages.mdl.as_ptr(),
                data_mdl,
                (pages.user_address + payload_offset) as PVOID,
                payload_len,
            );
            (*data_mdl).Next = null_mut();
            (*headers_mdl).Next = data_mdl;
            self.describe_chain(
                miniport,
                headers_mdl,
                unused as u32,
                headers.len() as u32 + payload_len,
                ipv6,
                info,
                (ticket as usize) << 1,
            );
        }
    }

    /// Points the NBL's NET_BUFFER at the `len` bytes `offset` into the MDL chain `first`, and
    /// starts everything else the stack may have left in the NBL afresh.
    ///
    /// # Safety
    /// `first` is one of the NBL's MDLs, built for what the NBL describes now.
    #[allow(clippy::too_many_arguments)]
    unsafe fn describe_chain(
        &mut self,
        miniport: NDIS_HANDLE,
        first: PMDL,
        offset: u32,
        len: u32,
        ipv6: bool,
        info: ReceiveInfo,
        owner: usize,
    ) {
        let (flag, ether_type) = if ipv6 {
            (NDIS_NBL_FLAGS_IS_IPV6, NDIS_ETH_TYPE_IPV6)
        } else {
            (NDIS_NBL_FLAGS_IS_IPV4, NDIS_ETH_TYPE_IPV4)
        };
        // SAFETY: the NBL and its NET_BUFFER are ours until indicated.
        unsafe {
            let nb = self.net_buffer();
            (*nb).Next = null_mut();
            (*nb).MdlChain = first;
            (*nb).CurrentMdl = first;
            (*nb).CurrentMdlOffset = offset;
            (*nb).DataOffset = offset;
            (*nb).DataLength = len;
            let nbl = self.nbl.as_ptr();
            (*nbl).Next = null_mut();
            (*nbl).SourceHandle = miniport;
            (*nbl).Status = NDIS_STATUS_SUCCESS;
            (*nbl).NblFlags = ((*nbl).NblFlags & !PACKET_DESCRIPTION_FLAGS) | flag;
            (*nbl).NetBufferListInfo = [null_mut(); MaxNetBufferListInfo];
            (*nbl).NetBufferListInfo[NetBufferListFrameType] =
                usize::from(ether_type.to_be()) as PVOID;
            (*nbl).NetBufferListInfo[TcpIpChecksumNetBufferListInfo] = info.checksum as PVOID;
            (*nbl).NetBufferListInfo[TcpRecvSegCoalesceInfo] = info.coalesced as PVOID;
            (*nbl).MiniportReserved.0[OWNER_SLOT] = owner as PVOID;
        }
    }

    /// Undoes any system mapping the stack made of the packet's pages, now that the NBL is
    /// back: the mapping may not outlive the ring's pages, which are unlocked at teardown.
    pub fn forget_pages(&mut self) {
        // SAFETY: our own MDL, which NDIS no longer holds.
        unsafe { MmPrepareMdlForReuse(self.mdl()) };
    }

    /// What the NBL's packet lay in when it was last described, which it holds no more.
    pub fn take_owner(&mut self) -> PacketOwner {
        // SAFETY: a live NBL of ours, which NDIS does not hold.
        let owner = unsafe {
            core::mem::replace(
                &mut (*self.nbl.as_ptr()).MiniportReserved.0[OWNER_SLOT],
                NO_OWNER as PVOID,
            ) as usize
        };
        if owner == NO_OWNER {
            PacketOwner::None
        } else if owner & SHARED_BUFFER_TAG != 0 {
            // SAFETY: the reference describe_buffer stored, taken back once (the slot is
            // cleared above).
            PacketOwner::Buffer(unsafe { SharedBuffer::from_raw(owner & !SHARED_BUFFER_TAG) })
        } else {
            PacketOwner::Ring((owner >> 1) as u32)
        }
    }

    /// Frees the NBL and its MDL (which [`PacketNbl::forget_pages`] left unmapped).
    pub fn free(mut self) {
        drop(self.take_owner());
        let parts = self.parts();
        // SAFETY: an NBL of ours that NDIS does not hold, and its parts, each freed once.
        unsafe {
            NdisFreeNetBufferList(self.nbl.as_ptr());
            NblParts::free(NonNull::new_unchecked(parts));
        }
    }
}

/// A chain of receive NBLs, linked through their `Next`.
pub struct NblList {
    head: *mut NET_BUFFER_LIST,
    tail: *mut NET_BUFFER_LIST,
    len: u32,
}

// SAFETY: a chain of NBLs the driver owns may be handled on any thread.
unsafe impl Send for NblList {}

impl NblList {
    pub const fn new() -> Self {
        NblList {
            head: null_mut(),
            tail: null_mut(),
            len: 0,
        }
    }

    /// The NBLs NDIS handed back to MiniportReturnNetBufferLists.
    ///
    /// # Safety
    /// `head` is the chain NDIS returned; every NBL in it is one this driver indicated.
    pub unsafe fn from_returned(head: *mut NET_BUFFER_LIST) -> Self {
        let mut list = NblList::new();
        let mut next = head;
        while let Some(nbl) = NonNull::new(next) {
            // SAFETY: a returned NBL: ours again.
            next = unsafe { (*nbl.as_ptr()).Next };
            list.push(PacketNbl { nbl });
        }
        list
    }

    pub fn len(&self) -> u32 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn push(&mut self, nbl: PacketNbl) {
        let nbl = nbl.nbl.as_ptr();
        // SAFETY: an NBL of ours, linked at the end of our chain.
        unsafe {
            (*nbl).Next = null_mut();
            match NonNull::new(self.tail) {
                Some(tail) => (*tail.as_ptr()).Next = nbl,
                None => self.head = nbl,
            }
        }
        self.tail = nbl;
        self.len += 1;
    }

    pub fn pop(&mut self) -> Option<PacketNbl> {
        let nbl = NonNull::new(self.head)?;
        // SAFETY: the first NBL of our chain.
        self.head = unsafe { (*nbl.as_ptr()).Next };
        if self.head.is_null() {
            self.tail = null_mut();
        }
        self.len -= 1;
        Some(PacketNbl { nbl })
    }

    /// Indicates the chain up the stack (NdisMIndicateReceiveNetBufferLists); NDIS returns the
    /// NBLs later, in any order, to MiniportReturnNetBufferLists.
    ///
    /// # Safety
    /// `miniport` is NDIS's handle for the adapter, which is running.
    pub unsafe fn indicate(self, miniport: NDIS_HANDLE, at_dispatch: bool) {
        if self.head.is_null() {
            return;
        }
        let flags = if at_dispatch {
            NDIS_RECEIVE_FLAGS_DISPATCH_LEVEL
        } else {
            0
        };
        // SAFETY: our chain of described NBLs, lent to NDIS until it returns them.
        unsafe { NdisMIndicateReceiveNetBufferLists(miniport, self.head, 0, self.len, flags) };
    }
}

impl Default for NblList {
    fn default() -> Self {
        Self::new()
    }
}
