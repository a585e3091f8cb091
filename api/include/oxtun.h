/* SPDX-License-Identifier: MIT OR Apache-2.0
 *
 * oxtun.h: the C interface of oxtun.dll (Windows) and liboxtun.so (Linux).
 *
 * The same fourteen functions as Wintun's wintun.h, with the same names, parameter and return
 * types, calling convention and behaviour, so an application written for wintun.dll builds
 * against this header and runs on our driver unchanged. Only the driver's identity differs: its
 * file is oxtun.sys, its service oxtun and its hardware ID OxTun, so it installs beside an
 * installed Wintun without touching it. Beside them, functions of our own, prefixed Oxtun, for
 * what Wintun does not have: offloads through the ring (at the end of this header).
 *
 * Errors: a function that fails returns NULL, 0 or FALSE and sets the thread's last error, which
 * GetLastError returns. On Linux this header declares GetLastError, SetLastError and the ERROR_*
 * codes, and the library provides them.
 *
 * Linking: as with wintun.h, load the library at run time and look the functions up by name
 * (GetProcAddress, dlsym): the WINTUN_*_FUNC types are the functions' types, and a program
 * written against wintun.h (whose example declares `static WINTUN_CREATE_ADAPTER_FUNC
 * *WintunCreateAdapter;` and so on) compiles with this header unchanged. To call the functions
 * directly and link with -loxtun (oxtun.lib on Windows) instead, define OXTUN_PROTOTYPES before
 * including this header: it then declares them.
 *
 * Linux: each adapter is a wintun-emu process (the driver on a simulated kernel) whose TUN
 * interface takes the adapter's name; see the project's README for where the library finds
 * that binary and keeps its sockets. Names are Linux interface names there: 1 to 15 bytes.
 */

#ifndef OXTUN_H
#define OXTUN_H

#ifdef _WIN32
#    include <winsock2.h>
#    include <windows.h>
#    include <ipexport.h>
#    include <ifdef.h>
#else
#    include <stdint.h>
#    ifndef __cplusplus
#        include <uchar.h>
#    endif

/* The Windows types the functions use. WCHAR is a UTF-16 code unit: write names as u"name". */
typedef char16_t WCHAR;
typedef const WCHAR *LPCWSTR;
typedef uint8_t BYTE;
typedef uint16_t WORD;
typedef uint32_t DWORD;
typedef uint64_t DWORD64;
typedef int BOOL;
typedef void *HANDLE;
typedef void VOID;

typedef struct _GUID
{
    uint32_t Data1;
    uint16_t Data2;
    uint16_t Data3;
    uint8_t Data4[8];
} GUID;

/* An interface's locally unique identifier: on Linux, IfType 53 and the interface index. */
typedef union _NET_LUID_LH
{
    uint64_t Value;
    struct
    {
        uint64_t Reserved : 24;
        uint64_t NetLuidIndex : 24;
        uint64_t IfType : 16;
    } Info;
} NET_LUID;

#    ifndef TRUE
#        define TRUE 1
#    endif
#    ifndef FALSE
#        define FALSE 0
#    endif
#    define WINAPI
#    define CALLBACK

/* The error codes the functions set, with their Windows values. */
#    define ERROR_SUCCESS 0
#    define ERROR_FILE_NOT_FOUND 2
#    define ERROR_ACCESS_DENIED 5
#    define ERROR_INVALID_HANDLE 6
#    define ERROR_NOT_ENOUGH_MEMORY 8
#    define ERROR_INVALID_DATA 13
#    define ERROR_GEN_FAILURE 31
#    define ERROR_NOT_SUPPORTED 50
#    define ERROR_HANDLE_EOF 38
#    define ERROR_INVALID_PARAMETER 87
#    define ERROR_BUFFER_OVERFLOW 111
#    define ERROR_ALREADY_EXISTS 183
#    define ERROR_NO_MORE_ITEMS 259
#    define ERROR_NOT_FOUND 1168
#    define ERROR_ALREADY_INITIALIZED 1247
#    define ERROR_NO_SYSTEM_RESOURCES 1450
#    define ERROR_INF_IN_USE_BY_DEVICES 0xE000023D

#    ifdef __cplusplus
extern "C" {
#    endif
/* The calling thread's last error: the code the last failing call of this library set. */
DWORD GetLastError(void);
/* Sets the calling thread's last error, as before a call whose error is to be told apart. */
void SetLastError(DWORD ErrorCode);
#    ifdef __cplusplus
}
#    endif
#endif

#ifdef __cplusplus
extern "C" {
#endif

/* An adapter, from WintunCreateAdapter or WintunOpenAdapter; released by WintunCloseAdapter. */
typedef struct _WINTUN_ADAPTER *WINTUN_ADAPTER_HANDLE;

/* A session, from WintunStartSession; released by WintunEndSession. */
typedef struct _TUN_SESSION *WINTUN_SESSION_HANDLE;

/* Creates an adapter, first installing the driver embedded in the library when the system has
 * no driver of ours or an older one. Adapters of other products are never touched.
 *
 * Name: the adapter's name (the interface alias), at most 127 characters. An adapter of that
 *     name left behind by a process that ended without closing it is removed first.
 * TunnelType: a name for the kind of adapter (the device's friendly name), at most 127
 *     characters.
 * RequestedGUID: the network interface GUID to use, so that Windows recognises the network
 *     from one run to the next; NULL lets the system choose one. Unused on Linux.
 *
 * Returns the adapter, or NULL (GetLastError says why: ERROR_INVALID_PARAMETER for a bad
 * string, ERROR_ALREADY_EXISTS on Linux for a name in use, or the system's error). Closing the
 * handle removes the adapter. */
typedef WINTUN_ADAPTER_HANDLE(WINAPI WINTUN_CREATE_ADAPTER_FUNC)(LPCWSTR Name,
                                                                  LPCWSTR TunnelType,
                                                                  const GUID *RequestedGUID);

/* Opens the existing adapter called Name. Returns it, or NULL (ERROR_NOT_FOUND when no adapter
 * of ours has that name, as wintun.dll answers). Closing this handle leaves the adapter in
 * place. */
typedef WINTUN_ADAPTER_HANDLE(WINAPI WINTUN_OPEN_ADAPTER_FUNC)(LPCWSTR Name);

/* Releases the adapter handle; if WintunCreateAdapter made it, also removes the adapter, which
 * ends its sessions (their WintunReceivePacket then fails with ERROR_HANDLE_EOF, and their
 * read-wait events are set). Adapter may be NULL. */
typedef VOID(WINAPI WINTUN_CLOSE_ADAPTER_FUNC)(WINTUN_ADAPTER_HANDLE Adapter);

/* Removes the driver from the system if no adapter of ours exists. Returns nonzero on success,
 * or FALSE (ERROR_INF_IN_USE_BY_DEVICES while adapters exist, or the system's error). */
typedef BOOL(WINAPI WINTUN_DELETE_DRIVER_FUNC)(VOID);

/* Writes the adapter's locally unique identifier to *Luid. */
typedef VOID(WINAPI WINTUN_GET_ADAPTER_LUID_FUNC)(WINTUN_ADAPTER_HANDLE Adapter, NET_LUID *Luid);

/* The version of the driver that is running, major in the high 16 bits and minor in the low,
 * as the driver itself reports it; 0 with ERROR_FILE_NOT_FOUND when no driver of ours runs. */
typedef DWORD(WINAPI WINTUN_GET_RUNNING_DRIVER_VERSION_FUNC)(VOID);

/* How serious a logged message is. */
typedef enum
{
    WINTUN_LOG_INFO,
    WINTUN_LOG_WARN,
    WINTUN_LOG_ERR
} WINTUN_LOGGER_LEVEL;

/* Receives the library's messages: their level, when they were made (in 100 ns units since
 * 1601-01-01 UTC, a FILETIME) and their text. Called from any thread, possibly from several at
 * once: serialize inside it if needed. */
typedef VOID(CALLBACK *WINTUN_LOGGER_CALLBACK)(WINTUN_LOGGER_LEVEL Level,
                                               DWORD64 Timestamp,
                                               LPCWSTR Message);

/* Sets the process-wide logger; NULL stops logging. */
typedef VOID(WINAPI WINTUN_SET_LOGGER_FUNC)(WINTUN_LOGGER_CALLBACK NewLogger);

/* The smallest and largest ring capacity: 128 KiB and 64 MiB. */
#define WINTUN_MIN_RING_CAPACITY 0x20000
#define WINTUN_MAX_RING_CAPACITY 0x4000000

/* Starts a session: two rings of Capacity bytes each (a power of two between the two limits
 * above) shared with the driver. One session per adapter at a time. Returns it, or NULL
 * (ERROR_INVALID_PARAMETER for a bad capacity, or the driver's refusal). */
typedef WINTUN_SESSION_HANDLE(WINAPI WINTUN_START_SESSION_FUNC)(WINTUN_ADAPTER_HANDLE Adapter,
                                                                DWORD Capacity);

/* Ends the session; its packets and its event are invalid afterwards. */
typedef VOID(WINAPI WINTUN_END_SESSION_FUNC)(WINTUN_SESSION_HANDLE Session);

/* The event to wait on once WintunReceivePacket has failed with ERROR_NO_MORE_ITEMS; it is set
 * whenever the driver adds packets. It belongs to the session: do not close it. On Linux it is a
 * file descriptor to poll for reading: (int)(intptr_t)WintunGetReadWaitEvent(Session). */
typedef HANDLE(WINAPI WINTUN_GET_READ_WAIT_EVENT_FUNC)(WINTUN_SESSION_HANDLE Session);

/* The largest IP packet. */
#define WINTUN_MAX_IP_PACKET_SIZE 0xFFFF

/* The next IPv4 or IPv6 packet the system sent through the adapter, its size written to
 * *PacketSize. The packet stays in the ring, writable by the caller, until it is released with
 * WintunReleaseReceivePacket. Any thread may call it. Returns NULL when there is none:
 * ERROR_NO_MORE_ITEMS (none waiting), ERROR_HANDLE_EOF (the adapter is going away) or
 * ERROR_INVALID_DATA (the ring is corrupt). */
typedef BYTE *(WINAPI WINTUN_RECEIVE_PACKET_FUNC)(WINTUN_SESSION_HANDLE Session, DWORD *PacketSize);

/* Releases a packet from WintunReceivePacket, in any order and from any thread; its space
 * returns to the driver once every packet received before it is released too. A pointer that
 * is not such a packet changes nothing (ERROR_INVALID_PARAMETER). */
typedef VOID(WINAPI WINTUN_RELEASE_RECEIVE_PACKET_FUNC)(WINTUN_SESSION_HANDLE Session,
                                                        const BYTE *Packet);

/* Room in the ring for a packet of exactly PacketSize bytes (at most WINTUN_MAX_IP_PACKET_SIZE),
 * to fill and then send with WintunSendPacket. Any thread may call it; the system receives
 * packets in the order they were allocated. Returns NULL when it cannot: ERROR_BUFFER_OVERFLOW
 * (the ring is full for now), ERROR_HANDLE_EOF (the adapter is going away) or
 * ERROR_INVALID_PARAMETER (too large). */
typedef BYTE *(WINAPI WINTUN_ALLOCATE_SEND_PACKET_FUNC)(WINTUN_SESSION_HANDLE Session,
                                                       DWORD PacketSize);

/* Sends a packet from WintunAllocateSendPacket, from any thread and in any order; the system
 * gets it once every packet allocated before it is sent too. A pointer that is not such a
 * packet changes nothing (ERROR_INVALID_PARAMETER). */
typedef VOID(WINAPI WINTUN_SEND_PACKET_FUNC)(WINTUN_SESSION_HANDLE Session, const BYTE *Packet);

/* ---- Offloads through the ring: oxtun's own (docs/offloads.md) ----
 *
 * wintun.dll has none of these: a program that must run on either looks them up by name
 * (GetProcAddress, dlsym) and, where they are missing, runs as it does on Wintun.
 *
 * A session that asks for OXTUN_FEATURE_VNET_HDR, and whose driver takes it, gets and gives
 * every packet prefixed with an OXTUN_VNET_HDR: Linux's struct virtio_net_hdr, the header a
 * Linux TUN interface opened with IFF_VNET_HDR reads and writes, so a VPN reuses its Linux
 * segmentation and coalescing code. Then:
 * - WintunReceivePacket's packet starts with the header, and PacketSize counts it. The header
 *   has been checked against the packet as Linux checks what is written to a TUN device; a
 *   packet that does not bear its header out is skipped (counted and logged once), never
 *   returned. The packet after it may be a super-packet (GsoType not NONE): up to 64 KiB of TCP
 *   or UDP payload to be cut into GsoSize segments, as from a Linux TUN device.
 * - WintunAllocateSendPacket's PacketSize counts the header (at least OXTUN_VNET_HDR_LEN,
 *   otherwise ERROR_INVALID_PARAMETER); the caller writes the header, then the IP packet. The
 *   header may ask for what Linux's does: a partial checksum (NEEDS_CSUM), checksums verified
 *   (DATA_VALID), a super-packet. WintunSendPacket checks it against the packet first: a packet
 *   that does not bear its header out is not delivered (its bytes are zeroed and passed over),
 *   the last error is ERROR_INVALID_DATA (call SetLastError(0) before, to tell), and the
 *   library logs why.
 * A driver that does not know the extension (an older oxtun) refuses it, and the session runs
 * without: OxtunGetSessionFeatures says 0, and packets are plain IP packets as with
 * WintunStartSession. */

/* Every ring packet carries an OXTUN_VNET_HDR. */
#define OXTUN_FEATURE_VNET_HDR 0x1

/* Linux's struct virtio_net_hdr (include/uapi/linux/virtio_net.h), 10 bytes, its 16-bit fields
 * little-endian (a Linux TUN device's order on every host Windows runs on). Packets start
 * 4-byte aligned in the ring, so a packet's pointer may be cast to it. */
typedef struct _OXTUN_VNET_HDR
{
    BYTE Flags;      /* OXTUN_VNET_HDR_F_* */
    BYTE GsoType;    /* OXTUN_VNET_HDR_GSO_*, for TCP or-ed with OXTUN_VNET_HDR_GSO_ECN */
    WORD HdrLen;     /* bytes of IP and transport headers (a hint, as on Linux) */
    WORD GsoSize;    /* payload bytes per segment of a super-packet (the MSS) */
    WORD CsumStart;  /* NEEDS_CSUM: where the checksummed span starts */
    WORD CsumOffset; /* NEEDS_CSUM: where after CsumStart the checksum goes */
} OXTUN_VNET_HDR;
#define OXTUN_VNET_HDR_LEN 10
/* Compiles only if the struct has the header's size. */
typedef char OXTUN_VNET_HDR_HAS_10_BYTES[sizeof(OXTUN_VNET_HDR) == OXTUN_VNET_HDR_LEN ? 1 : -1];

/* The transport checksum holds only the pseudo-header's sum; the sum from CsumStart to the end
 * of the packet completes it. */
#define OXTUN_VNET_HDR_F_NEEDS_CSUM 1
/* The packet's checksums have been verified. */
#define OXTUN_VNET_HDR_F_DATA_VALID 2
#define OXTUN_VNET_HDR_GSO_NONE 0
#define OXTUN_VNET_HDR_GSO_TCPV4 1
#define OXTUN_VNET_HDR_GSO_TCPV6 4
#define OXTUN_VNET_HDR_GSO_UDP_L4 5
#define OXTUN_VNET_HDR_GSO_ECN 0x80

/* As WintunStartSession, asking for Features (OXTUN_FEATURE_* bits). Returns the session, or
 * NULL: ERROR_NOT_SUPPORTED for a bit this library does not know, otherwise as
 * WintunStartSession. A driver that does not take the features still gives a session, without
 * them: ask OxtunGetSessionFeatures. */
typedef WINTUN_SESSION_HANDLE(WINAPI OXTUN_START_SESSION_EX_FUNC)(WINTUN_ADAPTER_HANDLE Adapter,
                                                                  DWORD Capacity,
                                                                  DWORD Features);

/* Writes the session's features in force (OXTUN_FEATURE_* bits, 0 for Wintun's plain rings) to
 * *Features. Returns TRUE, or FALSE: ERROR_INVALID_HANDLE, or ERROR_INVALID_PARAMETER for a
 * NULL Features. */
typedef BOOL(WINAPI OXTUN_GET_SESSION_FEATURES_FUNC)(WINTUN_SESSION_HANDLE Session,
                                                     DWORD *Features);

#ifdef OXTUN_PROTOTYPES
WINTUN_CREATE_ADAPTER_FUNC WintunCreateAdapter;
WINTUN_OPEN_ADAPTER_FUNC WintunOpenAdapter;
WINTUN_CLOSE_ADAPTER_FUNC WintunCloseAdapter;
WINTUN_DELETE_DRIVER_FUNC WintunDeleteDriver;
WINTUN_GET_ADAPTER_LUID_FUNC WintunGetAdapterLUID;
WINTUN_GET_RUNNING_DRIVER_VERSION_FUNC WintunGetRunningDriverVersion;
WINTUN_SET_LOGGER_FUNC WintunSetLogger;
WINTUN_START_SESSION_FUNC WintunStartSession;
WINTUN_END_SESSION_FUNC WintunEndSession;
WINTUN_GET_READ_WAIT_EVENT_FUNC WintunGetReadWaitEvent;
WINTUN_RECEIVE_PACKET_FUNC WintunReceivePacket;
WINTUN_RELEASE_RECEIVE_PACKET_FUNC WintunReleaseReceivePacket;
WINTUN_ALLOCATE_SEND_PACKET_FUNC WintunAllocateSendPacket;
WINTUN_SEND_PACKET_FUNC WintunSendPacket;
OXTUN_START_SESSION_EX_FUNC OxtunStartSessionEx;
OXTUN_GET_SESSION_FEATURES_FUNC OxtunGetSessionFeatures;
#endif

#ifdef __cplusplus
}
#endif

#endif
