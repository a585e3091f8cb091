/* oxtun.dll under Wine: what runs without a device or a driver. Compiled by mingw-w64 against
 * oxtun.h and linked with the DLL itself; api/tests/windows_dll.rs runs it with wine for each
 * architecture. Exits 0 only if every check holds.
 *
 * Wine has no PnP manager that can make our software device and no driver of ours, so adapter
 * creation, sessions and packets cannot run there: they need Windows. */

#include <stdio.h>
#include <string.h>

#include "oxtun.h"

static int failures;

#define CHECK(condition)                                                                        \
    do {                                                                                        \
        if (!(condition)) {                                                                     \
            fprintf(stderr, "%s:%d: check failed: %s (last error %lu)\n", __FILE__, __LINE__,   \
                    #condition, (unsigned long)GetLastError());                                 \
            ++failures;                                                                         \
        }                                                                                       \
    } while (0)

#define CHECK_FAILS(call, expected)                                                             \
    do {                                                                                        \
        SetLastError(0xDEADBEEF);                                                               \
        CHECK(!(call));                                                                         \
        CHECK(GetLastError() == (expected));                                                    \
    } while (0)

#define CHECK_SETS(call, expected)                                                              \
    do {                                                                                        \
        SetLastError(0xDEADBEEF);                                                               \
        call;                                                                                   \
        CHECK(GetLastError() == (expected));                                                    \
    } while (0)

static CRITICAL_SECTION log_lock;
static char log_text[1 << 15];
static size_t log_len;
static int log_bad_timestamps;

static VOID CALLBACK logger(WINTUN_LOGGER_LEVEL level, DWORD64 timestamp, LPCWSTR message)
{
    FILETIME now;
    GetSystemTimeAsFileTime(&now);
    DWORD64 now_ticks = (DWORD64)now.dwHighDateTime << 32 | now.dwLowDateTime;
    EnterCriticalSection(&log_lock);
    /* A FILETIME within a minute of now. */
    log_bad_timestamps += timestamp > now_ticks || now_ticks - timestamp > 600000000ULL;
    log_len += snprintf(log_text + log_len, sizeof(log_text) - log_len, "[%d] ", level);
    for (; *message && log_len + 2 < sizeof(log_text); ++message)
        log_text[log_len++] = *message < 128 ? (char)*message : '?';
    log_text[log_len++] = '\n';
    log_text[log_len] = 0;
    LeaveCriticalSection(&log_lock);
}

int main(void)
{
    InitializeCriticalSection(&log_lock);
    WintunSetLogger(logger);

    static const WCHAR long_name[] = L"0123456789012345678901234567890123456789012345678901234567890123"
                                     L"456789012345678901234567890123456789012345678901234567890123456789";
    CHECK_FAILS(WintunCreateAdapter(NULL, L"Test", NULL), ERROR_INVALID_PARAMETER);
    CHECK_FAILS(WintunCreateAdapter(L"oxtun-w0", NULL, NULL), ERROR_INVALID_PARAMETER);
    CHECK_FAILS(WintunCreateAdapter(long_name, L"Test", NULL), ERROR_INVALID_PARAMETER);
    CHECK_FAILS(WintunCreateAdapter(L"", L"Test", NULL), ERROR_INVALID_PARAMETER);
    CHECK_FAILS(WintunOpenAdapter(NULL), ERROR_INVALID_PARAMETER);
    CHECK_FAILS(WintunOpenAdapter(long_name), ERROR_INVALID_PARAMETER);
    CHECK(strstr(log_text, "not a string of 1 to 127 characters") != NULL);

    WINTUN_ADAPTER_HANDLE bogus_adapter = (WINTUN_ADAPTER_HANDLE)(ULONG_PTR)0x1234560;
    WINTUN_SESSION_HANDLE bogus_session = (WINTUN_SESSION_HANDLE)(ULONG_PTR)0x1234560;
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
    CHECK_SETS(WintunCloseAdapter(NULL), 0xDEADBEEF);

    /* No adapter of ours on this machine, and no driver of ours running. */
    CHECK_FAILS(WintunOpenAdapter(L"oxtun-w0"), ERROR_FILE_NOT_FOUND);
    CHECK_FAILS(WintunGetRunningDriverVersion(), ERROR_FILE_NOT_FOUND);

    /* Creating needs the driver installed: this DLL carries the package but no catalog (made
     * on Windows only), so installing fails, cleanly, with the reason logged. */
    CHECK_FAILS(WintunCreateAdapter(L"oxtun-w0", L"Test", NULL), ERROR_FILE_NOT_FOUND);
    CHECK(strstr(log_text, "carries no catalog") != NULL);
    /* The library is still usable. */
    CHECK_FAILS(WintunOpenAdapter(L"oxtun-w0"), ERROR_FILE_NOT_FOUND);
    CHECK(WintunDeleteDriver());
    CHECK(log_bad_timestamps == 0);

    WintunSetLogger(NULL);
    if (failures)
        fprintf(stderr, "%d checks failed; the library's log:\n%s", failures, log_text);
    else
        printf("all checks passed; the library's log:\n%s", log_text);
    return failures != 0;
}
