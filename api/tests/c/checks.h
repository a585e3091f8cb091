/* What the C test programs share: checks that count failures, and a logger that keeps every
 * message the library sends it, from any thread, and checks each timestamp. */

#ifndef OXTUN_TEST_CHECKS_H
#define OXTUN_TEST_CHECKS_H

#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "oxtun.h"

#ifdef _WIN32
typedef CRITICAL_SECTION log_lock_t;
#    define LOCK_INIT(lock) InitializeCriticalSection(lock)
#    define LOCK(lock) EnterCriticalSection(lock)
#    define UNLOCK(lock) LeaveCriticalSection(lock)
#else
#    include <pthread.h>
#    include <time.h>
typedef pthread_mutex_t log_lock_t;
#    define LOCK_INIT(lock) pthread_mutex_init(lock, NULL)
#    define LOCK(lock) pthread_mutex_lock(lock)
#    define UNLOCK(lock) pthread_mutex_unlock(lock)
#endif

/* A UTF-16 string literal, as WCHAR is on each system. */
#ifdef _WIN32
#    define W(text) L##text
#else
#    define W(text) u##text
#endif

static int failures;

#define CHECK(condition)                                                                        \
    do {                                                                                        \
        if (!(condition)) {                                                                     \
            fprintf(stderr, "%s:%d: check failed: %s (last error %lu)\n", __FILE__, __LINE__,   \
                    #condition, (unsigned long)GetLastError());                                 \
            ++failures;                                                                         \
        }                                                                                       \
    } while (0)

/* The call fails (returns NULL, 0 or FALSE) and sets this error. */
#define CHECK_FAILS(call, expected)                                                             \
    do {                                                                                        \
        SetLastError(0xDEADBEEF);                                                               \
        CHECK(!(call));                                                                         \
        CHECK(GetLastError() == (expected));                                                    \
    } while (0)

/* The void call sets this error. */
#define CHECK_SETS(call, expected)                                                              \
    do {                                                                                        \
        SetLastError(0xDEADBEEF);                                                               \
        call;                                                                                   \
        CHECK(GetLastError() == (expected));                                                    \
    } while (0)

/* The last failed call set this error. */
#define CHECK_ERROR(expected) CHECK(GetLastError() == (expected))

static log_lock_t log_lock;
static char log_text[1 << 16];
static size_t log_len;
static int log_bad_timestamps;

/* Now as a FILETIME: 100 ns units since 1601-01-01 UTC. */
static DWORD64 filetime_now(void)
{
#ifdef _WIN32
    FILETIME now;
    GetSystemTimeAsFileTime(&now);
    return (DWORD64)now.dwHighDateTime << 32 | now.dwLowDateTime;
#else
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    return 116444736000000000ULL + (DWORD64)now.tv_sec * 10000000 + (DWORD64)now.tv_nsec / 100;
#endif
}

static VOID CALLBACK logger(WINTUN_LOGGER_LEVEL level, DWORD64 timestamp, LPCWSTR message)
{
    DWORD64 now = filetime_now();
    LOCK(&log_lock);
    /* Made within the last minute. */
    log_bad_timestamps += timestamp > now || now - timestamp > 600000000ULL;
    log_len += snprintf(log_text + log_len, sizeof(log_text) - log_len, "[%d] ", (int)level);
    for (; *message && log_len + 2 < sizeof(log_text); ++message)
        log_text[log_len++] = *message < 128 ? (char)*message : '?';
    log_text[log_len++] = '\n';
    log_text[log_len] = 0;
    UNLOCK(&log_lock);
}

static void start_logging(void)
{
    LOCK_INIT(&log_lock);
    WintunSetLogger(logger);
}

static int logged(const char *needle)
{
    LOCK(&log_lock);
    int found = strstr(log_text, needle) != NULL;
    UNLOCK(&log_lock);
    return found;
}

/* The calls that must refuse what no library handed out: bad strings, made-up handles, NULL,
 * each with its error; none changes anything. */
static inline void check_arguments_that_are_not_ours(void)
{
    static const WCHAR long_name[] = W("0123456789012345678901234567890123456789012345678901234567890123")
                                     W("456789012345678901234567890123456789012345678901234567890123456789");
    CHECK_FAILS(WintunCreateAdapter(NULL, W("Test"), NULL), ERROR_INVALID_PARAMETER);
    CHECK_FAILS(WintunCreateAdapter(W("oxtun-x9"), NULL, NULL), ERROR_INVALID_PARAMETER);
    /* 128 characters: as wintun.dll answers a name with no room for its NUL. */
    CHECK_FAILS(WintunCreateAdapter(long_name, W("Test"), NULL), ERROR_BUFFER_OVERFLOW);
    CHECK_FAILS(WintunCreateAdapter(W("oxtun-x9"), long_name, NULL), ERROR_BUFFER_OVERFLOW);
    CHECK_FAILS(WintunCreateAdapter(W(""), W("Test"), NULL), ERROR_INVALID_PARAMETER);
    CHECK_FAILS(WintunOpenAdapter(NULL), ERROR_INVALID_PARAMETER);
    CHECK_FAILS(WintunOpenAdapter(long_name), ERROR_BUFFER_OVERFLOW);
    CHECK(logged("not a string of 1 to 127 characters"));

    WINTUN_ADAPTER_HANDLE bogus_adapter = (WINTUN_ADAPTER_HANDLE)(uintptr_t)0x1234560;
    WINTUN_SESSION_HANDLE bogus_session = (WINTUN_SESSION_HANDLE)(uintptr_t)0x1234560;
    NET_LUID luid = { .Value = 7 };
    DWORD size;
    CHECK_SETS(WintunGetAdapterLUID(bogus_adapter, &luid), ERROR_INVALID_HANDLE);
    CHECK(luid.Value == 7);
    CHECK_FAILS(WintunStartSession(bogus_adapter, WINTUN_MIN_RING_CAPACITY), ERROR_INVALID_HANDLE);
    CHECK_FAILS(WintunStartSession(NULL, WINTUN_MIN_RING_CAPACITY), ERROR_INVALID_HANDLE);
    CHECK_FAILS(WintunReceivePacket(bogus_session, &size), ERROR_INVALID_HANDLE);
    CHECK_FAILS(WintunReceivePacket(NULL, NULL), ERROR_INVALID_HANDLE);
    CHECK_FAILS(WintunAllocateSendPacket(bogus_session, 20), ERROR_INVALID_HANDLE);
    CHECK_FAILS(WintunGetReadWaitEvent(bogus_session), ERROR_INVALID_HANDLE);
    CHECK_SETS(WintunReleaseReceivePacket(bogus_session, (const BYTE *)&size), ERROR_INVALID_HANDLE);
    CHECK_SETS(WintunSendPacket(bogus_session, (const BYTE *)&size), ERROR_INVALID_HANDLE);
    CHECK_SETS(WintunEndSession(bogus_session), ERROR_INVALID_HANDLE);
    CHECK_SETS(WintunCloseAdapter(bogus_adapter), ERROR_INVALID_HANDLE);
    CHECK_SETS(WintunCloseAdapter(NULL), 0xDEADBEEF); /* allowed, and nothing to say */

    /* Ours: handles checked before anything else. */
    DWORD features = 7;
    CHECK_FAILS(OxtunStartSessionEx(bogus_adapter, WINTUN_MIN_RING_CAPACITY, OXTUN_FEATURE_VNET_HDR), ERROR_INVALID_HANDLE);
    CHECK_FAILS(OxtunStartSessionEx(NULL, WINTUN_MIN_RING_CAPACITY, 0xFFFFFFFF), ERROR_INVALID_HANDLE);
    CHECK_FAILS(OxtunGetSessionFeatures(bogus_session, &features), ERROR_INVALID_HANDLE);
    CHECK_FAILS(OxtunGetSessionFeatures(NULL, NULL), ERROR_INVALID_HANDLE);
    CHECK(features == 7);
}

/* Stops logging, prints the outcome and the log; the exit status. */
static int report(void)
{
    WintunSetLogger(NULL);
    CHECK(log_bad_timestamps == 0);
    if (failures)
        fprintf(stderr, "%d checks failed; the library's log:\n%s", failures, log_text);
    else
        printf("all checks passed; the library's log:\n%s", log_text);
    return failures != 0;
}

#endif
