/* A Wintun application in C, written against oxtun.h only and linked with -loxtun, run on Linux
 * in a network namespace of its own (api/tests/c_api.rs makes it and runs this). It exits 0 only
 * if every check holds; each failed check prints its line.
 *
 * Expects OXTUN_EXPECTED_VERSION (the driver's version as WintunGetRunningDriverVersion gives
 * it, in hex) in its environment. */

#define _GNU_SOURCE
#define OXTUN_PROTOTYPES
#include <arpa/inet.h>
#include <net/if.h>
#include <netinet/in.h>
#include <poll.h>
#include <stddef.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "checks.h"

/* ---- packets ---- */

static uint16_t checksum(const uint8_t *bytes, size_t len, uint32_t sum)
{
    for (size_t i = 0; i + 1 < len; i += 2)
        sum += (uint32_t)bytes[i] << 8 | bytes[i + 1];
    if (len & 1)
        sum += (uint32_t)bytes[len - 1] << 8;
    while (sum >> 16)
        sum = (sum & 0xFFFF) + (sum >> 16);
    return (uint16_t)~sum;
}

/* Writes the echo reply to an ICMP or ICMPv6 echo request into reply; its length, or 0. */
static size_t echo_reply(const uint8_t *request, size_t len, uint8_t *reply)
{
    memcpy(reply, request, len);
    if (len >= 28 && request[0] >> 4 == 4 && request[9] == 1) {
        size_t header = (size_t)(request[0] & 0x0F) * 4;
        if (header + 8 > len || request[header] != 8)
            return 0;
        memcpy(reply + 12, request + 16, 4);
        memcpy(reply + 16, request + 12, 4);
        reply[header] = 0;
        reply[header + 2] = reply[header + 3] = 0;
        uint16_t sum = checksum(reply + header, len - header, 0);
        reply[header + 2] = (uint8_t)(sum >> 8);
        reply[header + 3] = (uint8_t)sum;
        return len;
    }
    if (len >= 48 && request[0] >> 4 == 6 && request[6] == 58 && request[40] == 128) {
        memcpy(reply + 8, request + 24, 16);
        memcpy(reply + 24, request + 8, 16);
        reply[40] = 129;
        reply[42] = reply[43] = 0;
        uint32_t pseudo = 58 + (uint32_t)(len - 40);
        for (size_t i = 8; i < 40; i += 2)
            pseudo += (uint32_t)reply[i] << 8 | reply[i + 1];
        uint16_t sum = checksum(reply + 40, len - 40, pseudo);
        reply[42] = (uint8_t)(sum >> 8);
        reply[43] = (uint8_t)sum;
        return len;
    }
    return 0;
}

/* An IPv4 UDP datagram 10.93.0.2:9 -> 10.93.0.1:port with payload; its length. */
static size_t udp_datagram(uint8_t *packet, uint16_t port, const uint8_t *payload, size_t len)
{
    size_t total = 28 + len;
    memset(packet, 0, 28);
    packet[0] = 0x45;
    packet[2] = (uint8_t)(total >> 8);
    packet[3] = (uint8_t)total;
    packet[8] = 64;
    packet[9] = 17;
    uint8_t source[4] = { 10, 93, 0, 2 }, destination[4] = { 10, 93, 0, 1 };
    memcpy(packet + 12, source, 4);
    memcpy(packet + 16, destination, 4);
    uint16_t sum = checksum(packet, 20, 0);
    packet[10] = (uint8_t)(sum >> 8);
    packet[11] = (uint8_t)sum;
    packet[21] = 9;
    packet[22] = (uint8_t)(port >> 8);
    packet[23] = (uint8_t)port;
    packet[24] = (uint8_t)((8 + len) >> 8);
    packet[25] = (uint8_t)(8 + len);
    memcpy(packet + 28, payload, len);
    return total;
}

static int wait_event(WINTUN_SESSION_HANDLE session, int timeout_ms)
{
    struct pollfd poll_fd = { .fd = (int)(intptr_t)WintunGetReadWaitEvent(session), .events = POLLIN };
    return poll(&poll_fd, 1, timeout_ms);
}

static void run(const char *command)
{
    if (system(command) != 0) {
        fprintf(stderr, "command failed: %s\n", command);
        ++failures;
    }
}

/* ---- the ping responder: receives, answers echo requests, releases; until the end ---- */

static atomic_int replies;

static void *respond(void *argument)
{
    WINTUN_SESSION_HANDLE session = argument;
    static uint8_t reply[0x10000];
    for (;;) {
        DWORD size;
        BYTE *packet = WintunReceivePacket(session, &size);
        if (!packet) {
            DWORD error = GetLastError();
            if (error == ERROR_NO_MORE_ITEMS) {
                wait_event(session, -1);
                continue;
            }
            CHECK(error == ERROR_HANDLE_EOF);
            return NULL;
        }
        size_t len = echo_reply(packet, size, reply);
        WintunReleaseReceivePacket(session, packet);
        if (len) {
            BYTE *out;
            while (!(out = WintunAllocateSendPacket(session, (DWORD)len)))
                CHECK(GetLastError() == ERROR_BUFFER_OVERFLOW);
            memcpy(out, reply, len);
            WintunSendPacket(session, out);
            atomic_fetch_add(&replies, 1);
        }
    }
}

/* ---- several threads allocate and send ---- */

struct sender {
    WINTUN_SESSION_HANDLE session;
    int number;
};

static void *send_datagrams(void *argument)
{
    struct sender *sender = argument;
    for (int i = 0; i < 250; ++i) {
        uint8_t payload[32], datagram[64];
        memset(payload, sender->number, sizeof(payload));
        int id = sender->number * 250 + i;
        payload[0] = (uint8_t)(id >> 8);
        payload[1] = (uint8_t)id;
        size_t len = udp_datagram(datagram, 4000, payload, sizeof(payload));
        BYTE *packet;
        while (!(packet = WintunAllocateSendPacket(sender->session, (DWORD)len))) {
            CHECK(GetLastError() == ERROR_BUFFER_OVERFLOW);
            usleep(1000);
        }
        memcpy(packet, datagram, len);
        WintunSendPacket(sender->session, packet);
        if (i % 50 == 49)
            usleep(20000); /* the stack's socket queue is finite */
    }
    return NULL;
}

/* ---- receive in one thread, release in another, out of order ---- */

struct batch {
    WINTUN_SESSION_HANDLE session;
    int wanted;
    int timeout_ms;
    DWORD header; /* bytes before each IP packet: OXTUN_VNET_HDR_LEN with headers in force */
    BYTE *packets[200];
    int count;
};

static void *receive_datagrams(void *argument)
{
    struct batch *batch = argument;
    struct timespec start, now;
    clock_gettime(CLOCK_MONOTONIC, &start);
    while (batch->count < batch->wanted) {
        clock_gettime(CLOCK_MONOTONIC, &now);
        long elapsed = (now.tv_sec - start.tv_sec) * 1000 + (now.tv_nsec - start.tv_nsec) / 1000000;
        if (elapsed > batch->timeout_ms)
            break;
        DWORD size;
        BYTE *packet = WintunReceivePacket(batch->session, &size);
        if (!packet) {
            CHECK_ERROR(ERROR_NO_MORE_ITEMS);
            wait_event(batch->session, 10);
        } else if (size == 1028 + batch->header) {
            batch->packets[batch->count++] = packet;
        } else {
            WintunReleaseReceivePacket(batch->session, packet);
        }
    }
    return NULL;
}

static int receive_in_thread(struct batch *batch)
{
    pthread_t thread;
    batch->count = 0;
    pthread_create(&thread, NULL, receive_datagrams, batch);
    pthread_join(thread, NULL);
    return batch->count;
}

static void burst(int sock, int count)
{
    struct sockaddr_in to = { .sin_family = AF_INET, .sin_port = htons(9) };
    inet_pton(AF_INET, "10.93.0.2", &to.sin_addr);
    uint8_t payload[1000];
    memset(payload, 0x5A, sizeof(payload));
    for (int i = 0; i < count; ++i)
        sendto(sock, payload, sizeof(payload), 0, (struct sockaddr *)&to, sizeof(to));
}

/* ---- the adapter goes away under a waiting thread ---- */

static void *wait_for_end(void *argument)
{
    WINTUN_SESSION_HANDLE session = argument;
    for (;;) {
        DWORD size;
        BYTE *packet = WintunReceivePacket(session, &size);
        if (packet) {
            WintunReleaseReceivePacket(session, packet);
            continue;
        }
        if (GetLastError() != ERROR_NO_MORE_ITEMS)
            return (void *)(uintptr_t)GetLastError();
        if (wait_event(session, 20000) != 1)
            return (void *)(uintptr_t)ERROR_NO_MORE_ITEMS; /* never woke */
    }
}

static void test_errors_without_an_adapter(void)
{
    check_arguments_that_are_not_ours();
    CHECK_FAILS(WintunCreateAdapter(u"has space", u"Test", NULL), ERROR_INVALID_PARAMETER);
    CHECK_FAILS(WintunOpenAdapter(u"oxtun-none"), ERROR_NOT_FOUND);
    CHECK_FAILS(WintunGetRunningDriverVersion(), ERROR_FILE_NOT_FOUND);
    CHECK(WintunDeleteDriver());
}

static void test_errors_of_a_session(WINTUN_ADAPTER_HANDLE adapter, WINTUN_SESSION_HANDLE session)
{
    /* A handle of the wrong kind. */
    CHECK_FAILS(WintunStartSession((WINTUN_ADAPTER_HANDLE)session, WINTUN_MIN_RING_CAPACITY), ERROR_INVALID_HANDLE);
    CHECK_FAILS(WintunReceivePacket((WINTUN_SESSION_HANDLE)adapter, NULL), ERROR_INVALID_HANDLE);
    /* One session per adapter. */
    CHECK_FAILS(WintunStartSession(adapter, WINTUN_MIN_RING_CAPACITY), ERROR_ALREADY_INITIALIZED);
    CHECK_FAILS(WintunReceivePacket(session, NULL), ERROR_INVALID_PARAMETER);
    CHECK_FAILS(WintunAllocateSendPacket(session, WINTUN_MAX_IP_PACKET_SIZE + 1), ERROR_INVALID_PARAMETER);
    BYTE not_a_packet[16];
    CHECK_SETS(WintunReleaseReceivePacket(session, not_a_packet), ERROR_INVALID_PARAMETER);
    CHECK_SETS(WintunReleaseReceivePacket(session, NULL), ERROR_INVALID_PARAMETER);
    CHECK_SETS(WintunSendPacket(session, not_a_packet), ERROR_INVALID_PARAMETER);
    CHECK_SETS(WintunGetAdapterLUID(adapter, NULL), ERROR_INVALID_PARAMETER);
    CHECK_FAILS(WintunDeleteDriver(), ERROR_INF_IN_USE_BY_DEVICES);
    /* Allocated and unsent, packets fill the ring; sent, they give it back. */
    BYTE *held[64];
    int count = 0;
    SetLastError(0xDEADBEEF);
    while (count < 64 && (held[count] = WintunAllocateSendPacket(session, WINTUN_MAX_IP_PACKET_SIZE)))
        ++count;
    CHECK_ERROR(ERROR_BUFFER_OVERFLOW);
    CHECK(count >= 1 && count < 64);
    for (int i = count - 1; i >= 0; --i) {
        memset(held[i], 0, WINTUN_MAX_IP_PACKET_SIZE); /* not IP: the driver skips it */
        WintunSendPacket(session, held[i]);
    }
    CHECK_SETS(WintunSendPacket(session, held[0]), ERROR_INVALID_PARAMETER); /* sent twice */
}

/* Our own functions (docs/offloads.md): the layout of the header, every bad argument, and a
 * session that asks for the header. The driver serves it: packets both ways carry one, and what
 * a header asks that the system does not take (a partial checksum: the emulator's Linux stack
 * takes only complete ones) the driver does before the packet goes up. */
static void test_session_features(WINTUN_ADAPTER_HANDLE adapter)
{
    CHECK(sizeof(OXTUN_VNET_HDR) == OXTUN_VNET_HDR_LEN);
    CHECK(offsetof(OXTUN_VNET_HDR, GsoType) == 1 && offsetof(OXTUN_VNET_HDR, HdrLen) == 2);
    CHECK(offsetof(OXTUN_VNET_HDR, GsoSize) == 4 && offsetof(OXTUN_VNET_HDR, CsumStart) == 6);
    CHECK(offsetof(OXTUN_VNET_HDR, CsumOffset) == 8);

    CHECK_FAILS(OxtunStartSessionEx(adapter, WINTUN_MIN_RING_CAPACITY, 0x2), ERROR_NOT_SUPPORTED);
    CHECK_FAILS(OxtunStartSessionEx(adapter, WINTUN_MIN_RING_CAPACITY, OXTUN_FEATURE_VNET_HDR | 0x80000000),
                ERROR_NOT_SUPPORTED);
    CHECK_FAILS(OxtunStartSessionEx(adapter, WINTUN_MIN_RING_CAPACITY + 4, OXTUN_FEATURE_VNET_HDR),
                ERROR_INVALID_PARAMETER);
    CHECK_FAILS(OxtunStartSessionEx(adapter, 0, OXTUN_FEATURE_VNET_HDR), ERROR_INVALID_PARAMETER);
    CHECK_FAILS(OxtunStartSessionEx(adapter, 0xFFFFFFFF, OXTUN_FEATURE_VNET_HDR), ERROR_INVALID_PARAMETER);

    WINTUN_SESSION_HANDLE session = OxtunStartSessionEx(adapter, WINTUN_MIN_RING_CAPACITY, OXTUN_FEATURE_VNET_HDR);
    CHECK(session != NULL);
    if (!session)
        return;
    CHECK(!logged("did not take the extended registration"));
    DWORD features = 0xDEADBEEF;
    CHECK(OxtunGetSessionFeatures(session, &features));
    CHECK(features == OXTUN_FEATURE_VNET_HDR);
    CHECK_FAILS(OxtunGetSessionFeatures(session, NULL), ERROR_INVALID_PARAMETER);
    CHECK_FAILS(OxtunGetSessionFeatures((WINTUN_SESSION_HANDLE)adapter, &features), ERROR_INVALID_HANDLE);
    CHECK_FAILS(OxtunStartSessionEx((WINTUN_ADAPTER_HANDLE)session, WINTUN_MIN_RING_CAPACITY, 0),
                ERROR_INVALID_HANDLE);
    /* One session per adapter, whatever it asks for. */
    CHECK_FAILS(OxtunStartSessionEx(adapter, WINTUN_MIN_RING_CAPACITY, OXTUN_FEATURE_VNET_HDR),
                ERROR_ALREADY_INITIALIZED);
    CHECK_FAILS(OxtunStartSessionEx(adapter, WINTUN_MIN_RING_CAPACITY, 0), ERROR_ALREADY_INITIALIZED);

    /* The system's datagram arrives after a header that asks for nothing. */
    int sock = socket(AF_INET, SOCK_DGRAM, 0);
    burst(sock, 1);
    close(sock);
    struct batch batch = { .session = session, .wanted = 1, .timeout_ms = 10000, .header = OXTUN_VNET_HDR_LEN };
    CHECK(receive_in_thread(&batch) == 1);
    if (batch.count == 1) {
        const OXTUN_VNET_HDR *header = (const OXTUN_VNET_HDR *)batch.packets[0];
        CHECK(header->Flags == 0 && header->GsoType == OXTUN_VNET_HDR_GSO_NONE);
        CHECK(batch.packets[0][OXTUN_VNET_HDR_LEN] == 0x45);
        WintunReleaseReceivePacket(session, batch.packets[0]);
    }
    /* And two the other way: one complete, one whose UDP checksum holds only the
     * pseudo-header's sum (NEEDS_CSUM), which the driver completes; Linux drops a datagram whose
     * checksum is wrong. */
    int listener = socket(AF_INET, SOCK_DGRAM, 0);
    struct sockaddr_in local = { .sin_family = AF_INET, .sin_port = htons(4001) };
    inet_pton(AF_INET, "10.93.0.1", &local.sin_addr);
    CHECK(bind(listener, (struct sockaddr *)&local, sizeof(local)) == 0);
    struct timeval timeout = { .tv_sec = 10 };
    setsockopt(listener, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof(timeout));
    static const char *const payloads[] = { "plain", "partial" };
    for (int i = 0; i < 2; ++i) {
        uint8_t datagram[64];
        size_t payload_len = strlen(payloads[i]);
        size_t len = udp_datagram(datagram, 4001, (const uint8_t *)payloads[i], payload_len);
        OXTUN_VNET_HDR header = { 0 };
        if (i == 1) {
            uint8_t pseudo[12] = { 0 };
            memcpy(pseudo, datagram + 12, 8);
            pseudo[9] = 17;
            pseudo[10] = datagram[24];
            pseudo[11] = datagram[25];
            uint16_t sum = (uint16_t)~checksum(pseudo, sizeof(pseudo), 0);
            datagram[26] = (uint8_t)(sum >> 8);
            datagram[27] = (uint8_t)sum;
            header.Flags = OXTUN_VNET_HDR_F_NEEDS_CSUM;
            header.CsumStart = 20;
            header.CsumOffset = 6;
        }
        BYTE *packet = WintunAllocateSendPacket(session, (DWORD)(OXTUN_VNET_HDR_LEN + len));
        CHECK(packet != NULL);
        if (!packet)
            break;
        memcpy(packet, &header, OXTUN_VNET_HDR_LEN);
        memcpy(packet + OXTUN_VNET_HDR_LEN, datagram, len);
        WintunSendPacket(session, packet);
        char received[16];
        CHECK(recv(listener, received, sizeof(received), 0) == (ssize_t)payload_len &&
              memcmp(received, payloads[i], payload_len) == 0);
    }
    close(listener);
    WintunEndSession(session);
}

/* WintunStartSession, waiting out the emulator's end of the previous session: it ends a
 * registration a moment after the connection closes. */
static WINTUN_SESSION_HANDLE start_session_after_another(WINTUN_ADAPTER_HANDLE adapter)
{
    for (int tries = 0; tries < 500; ++tries) {
        WINTUN_SESSION_HANDLE session = WintunStartSession(adapter, WINTUN_MIN_RING_CAPACITY);
        if (session || GetLastError() != ERROR_ALREADY_INITIALIZED)
            return session;
        usleep(2000);
    }
    return NULL;
}

int main(void)
{
    const char *expected_version = getenv("OXTUN_EXPECTED_VERSION");
    CHECK(expected_version != NULL);
    start_logging();
    test_errors_without_an_adapter();

    WINTUN_ADAPTER_HANDLE adapter = WintunCreateAdapter(u"oxtun-c0", u"OxTunTest", NULL);
    CHECK(adapter != NULL);
    if (!adapter)
        return 1;
    CHECK(logged("created adapter oxtun-c0"));
    CHECK_FAILS(WintunCreateAdapter(u"oxtun-c0", u"OxTunTest", NULL), ERROR_ALREADY_EXISTS);
    CHECK(WintunGetRunningDriverVersion() == strtoul(expected_version, NULL, 16));
    NET_LUID luid;
    WintunGetAdapterLUID(adapter, &luid);
    CHECK(luid.Info.IfType == 53);
    CHECK(luid.Info.NetLuidIndex == if_nametoindex("oxtun-c0"));
    run("ip address add 10.93.0.1/24 dev oxtun-c0 && ip -6 address add fd93::1/64 dev oxtun-c0 nodad"
        " && ip link set oxtun-c0 up");

    CHECK_FAILS(WintunStartSession(adapter, WINTUN_MIN_RING_CAPACITY + 4), ERROR_INVALID_PARAMETER);
    CHECK_FAILS(WintunStartSession(adapter, WINTUN_MAX_RING_CAPACITY * 2), ERROR_INVALID_PARAMETER);
    CHECK_FAILS(WintunStartSession(adapter, 0xFFFFFFFF), ERROR_INVALID_PARAMETER);
    test_session_features(adapter);
    WINTUN_SESSION_HANDLE session = start_session_after_another(adapter);
    CHECK(session != NULL);
    if (!session)
        return 1;
    test_errors_of_a_session(adapter, session);

    /* Out-of-order release: 120 datagrams fill most of the ring; received in a thread, all but
     * the first released in reverse; the held first keeps the ring full, so the next burst is
     * dropped; released, the following burst arrives whole. */
    int sock = socket(AF_INET, SOCK_DGRAM, 0);
    struct batch batch = { .session = session, .wanted = 120, .timeout_ms = 10000 };
    burst(sock, 120);
    CHECK(receive_in_thread(&batch) == 120);
    BYTE *first = batch.packets[0];
    for (int i = batch.count - 1; i > 0; --i)
        WintunReleaseReceivePacket(session, batch.packets[i]);
    CHECK_SETS(WintunReleaseReceivePacket(session, batch.packets[1]), ERROR_INVALID_PARAMETER); /* released twice */
    burst(sock, 20);
    batch.wanted = 20;
    batch.timeout_ms = 500;
    CHECK(receive_in_thread(&batch) < 20);
    WintunReleaseReceivePacket(session, first);
    for (int i = 0; i < batch.count; ++i)
        WintunReleaseReceivePacket(session, batch.packets[i]);
    burst(sock, 20);
    batch.timeout_ms = 10000;
    CHECK(receive_in_thread(&batch) == 20);
    for (int i = 0; i < batch.count; ++i)
        WintunReleaseReceivePacket(session, batch.packets[i]);
    close(sock);

    /* Four threads allocate and send 250 datagrams each; the system receives all. */
    int listener = socket(AF_INET, SOCK_DGRAM, 0);
    struct sockaddr_in local = { .sin_family = AF_INET, .sin_port = htons(4000) };
    inet_pton(AF_INET, "10.93.0.1", &local.sin_addr);
    CHECK(bind(listener, (struct sockaddr *)&local, sizeof(local)) == 0);
    struct timeval timeout = { .tv_sec = 10 };
    setsockopt(listener, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof(timeout));
    int buffer_size = 16 << 20; /* every datagram queued however slowly this thread runs */
    setsockopt(listener, SOL_SOCKET, SO_RCVBUFFORCE, &buffer_size, sizeof(buffer_size));
    pthread_t senders[4];
    struct sender sender_args[4];
    for (int i = 0; i < 4; ++i) {
        sender_args[i] = (struct sender){ .session = session, .number = i };
        pthread_create(&senders[i], NULL, send_datagrams, &sender_args[i]);
    }
    static char seen[1000];
    int distinct = 0;
    for (int i = 0; i < 1000; ++i) {
        uint8_t buffer[64];
        ssize_t len = recv(listener, buffer, sizeof(buffer), 0);
        if (len != 32)
            break;
        int id = buffer[0] << 8 | buffer[1];
        if (id < 1000 && !seen[id]++)
            ++distinct;
    }
    for (int i = 0; i < 4; ++i)
        pthread_join(senders[i], NULL);
    CHECK(distinct == 1000);
    close(listener);

    /* Pings in both families, answered by the application. */
    pthread_t responder;
    pthread_create(&responder, NULL, respond, session);
    run("ping -4 -c 3 -i 0.2 -W 2 10.93.0.2 > /dev/null");
    run("ping -6 -c 3 -i 0.2 -W 2 fd93::2 > /dev/null");

    /* Close and reopen: an opened handle's close leaves the adapter. */
    WINTUN_ADAPTER_HANDLE opened = WintunOpenAdapter(u"oxtun-c0");
    CHECK(opened != NULL);
    NET_LUID opened_luid;
    WintunGetAdapterLUID(opened, &opened_luid);
    CHECK(opened_luid.Value == luid.Value);
    WintunCloseAdapter(opened);
    CHECK_SETS(WintunCloseAdapter(opened), ERROR_INVALID_HANDLE); /* closed twice */
    opened = WintunOpenAdapter(u"oxtun-c0");
    CHECK(opened != NULL);
    WintunCloseAdapter(opened);

    /* Removing the adapter ends the session: the responder, asleep on the event, wakes to
     * ERROR_HANDLE_EOF; so does a second waiter. */
    pthread_t waiter;
    pthread_create(&waiter, NULL, wait_for_end, session);
    usleep(100000);
    WintunCloseAdapter(adapter);
    void *waiter_error;
    pthread_join(waiter, &waiter_error);
    CHECK((uintptr_t)waiter_error == ERROR_HANDLE_EOF);
    pthread_join(responder, NULL);
    CHECK(atomic_load(&replies) >= 6);
    DWORD size;
    CHECK_FAILS(WintunReceivePacket(session, &size), ERROR_HANDLE_EOF);
    CHECK_FAILS(WintunAllocateSendPacket(session, 20), ERROR_HANDLE_EOF);
    WintunEndSession(session);
    CHECK_SETS(WintunEndSession(session), ERROR_INVALID_HANDLE); /* ended twice */
    CHECK(logged("nothing leaked"));
    CHECK_FAILS(WintunOpenAdapter(u"oxtun-c0"), ERROR_NOT_FOUND);

    /* Created again, the name is free; a ring corrupted under the session gives
     * ERROR_INVALID_DATA. The first packet of a new session sits at offset 0: the ring's header
     * (Head, Tail, Alertable) is the 12 bytes before its 4-byte size. */
    adapter = WintunCreateAdapter(u"oxtun-c0", u"OxTunTest", NULL);
    CHECK(adapter != NULL);
    run("ip address add 10.93.0.1/24 dev oxtun-c0 && ip link set oxtun-c0 up");
    session = WintunStartSession(adapter, WINTUN_MIN_RING_CAPACITY);
    CHECK(session != NULL);
    sock = socket(AF_INET, SOCK_DGRAM, 0);
    burst(sock, 1);
    BYTE *first_packet = NULL;
    for (int tries = 0; !first_packet && tries < 1000; ++tries) {
        first_packet = WintunReceivePacket(session, &size);
        if (!first_packet)
            wait_event(session, 10);
    }
    CHECK(first_packet != NULL);
    if (first_packet) {
        volatile DWORD *tail = (volatile DWORD *)(first_packet - 4 - 12 + 4);
        *tail = 6; /* not a multiple of 4 */
        CHECK_FAILS(WintunReceivePacket(session, &size), ERROR_INVALID_DATA);
    }
    close(sock);
    WintunEndSession(session);
    WintunCloseAdapter(adapter);
    CHECK(WintunDeleteDriver());
    return report();
}
