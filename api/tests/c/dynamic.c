/* An application written as wintun.h's own example (WireGuard/wintun example/example.c) is: the
 * header included as it is (no prototypes, nothing defined), variables named as the functions and
 * of the WINTUN_*_FUNC types, each of the fourteen looked up by name, with GetProcAddress on
 * Windows and dlsym on Linux; then oxtun's own functions, the same way. Compiled as C and as
 * C++ on Linux (api/tests/c_api.rs) and by mingw-w64 for Wine (api/tests/windows_dll.rs), where
 * it loads oxtun.dll from its own folder. */

#include "oxtun.h"

#include <stdio.h>
#ifndef _WIN32
#    include <dlfcn.h>
#endif

static WINTUN_CREATE_ADAPTER_FUNC *WintunCreateAdapter;
static WINTUN_OPEN_ADAPTER_FUNC *WintunOpenAdapter;
static WINTUN_CLOSE_ADAPTER_FUNC *WintunCloseAdapter;
static WINTUN_DELETE_DRIVER_FUNC *WintunDeleteDriver;
static WINTUN_GET_ADAPTER_LUID_FUNC *WintunGetAdapterLUID;
static WINTUN_GET_RUNNING_DRIVER_VERSION_FUNC *WintunGetRunningDriverVersion;
static WINTUN_SET_LOGGER_FUNC *WintunSetLogger;
static WINTUN_START_SESSION_FUNC *WintunStartSession;
static WINTUN_END_SESSION_FUNC *WintunEndSession;
static WINTUN_GET_READ_WAIT_EVENT_FUNC *WintunGetReadWaitEvent;
static WINTUN_RECEIVE_PACKET_FUNC *WintunReceivePacket;
static WINTUN_RELEASE_RECEIVE_PACKET_FUNC *WintunReleaseReceivePacket;
static WINTUN_ALLOCATE_SEND_PACKET_FUNC *WintunAllocateSendPacket;
static WINTUN_SEND_PACKET_FUNC *WintunSendPacket;
/* Ours, which a program that also runs on wintun.dll looks up the same way. */
static OXTUN_START_SESSION_EX_FUNC *OxtunStartSessionEx;
static OXTUN_GET_SESSION_FEATURES_FUNC *OxtunGetSessionFeatures;

#ifdef _WIN32
typedef HMODULE library_t;
/* As example.c loads wintun.dll: from the application's folder or System32 only. */
#    define OPEN_LIBRARY(path)                                                                  \
        LoadLibraryExW(L"oxtun.dll", NULL,                                                      \
                       LOAD_LIBRARY_SEARCH_APPLICATION_DIR | LOAD_LIBRARY_SEARCH_SYSTEM32)
#    define X(Name) ((*(FARPROC *)&Name = GetProcAddress(library, #Name)) == NULL)
#    define LAST_ERROR() GetLastError()
#    define NAME(text) L##text
#else
typedef void *library_t;
#    define OPEN_LIBRARY(path) dlopen(path ? path : "liboxtun.so", RTLD_NOW)
#    define X(Name) ((*(void **)&Name = dlsym(library, #Name)) == NULL)
/* On Linux GetLastError is the library's own. */
static DWORD (*LastError)(void);
#    define LAST_ERROR() LastError()
#    define NAME(text) u##text
#endif

int main(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    library_t library = OPEN_LIBRARY(argc > 1 ? argv[1] : NULL);
    if (!library) {
        fprintf(stderr, "the library did not load\n");
        return 1;
    }
    if (X(WintunCreateAdapter) || X(WintunOpenAdapter) || X(WintunCloseAdapter) ||
        X(WintunDeleteDriver) || X(WintunGetAdapterLUID) || X(WintunGetRunningDriverVersion) ||
        X(WintunSetLogger) || X(WintunStartSession) || X(WintunEndSession) ||
        X(WintunGetReadWaitEvent) || X(WintunReceivePacket) || X(WintunReleaseReceivePacket) ||
        X(WintunAllocateSendPacket) || X(WintunSendPacket)) {
        fprintf(stderr, "a function is missing\n");
        return 1;
    }
#ifndef _WIN32
    *(void **)&LastError = dlsym(library, "GetLastError");
    if (!LastError)
        return 1;
#endif
    /* No adapter of that name: ERROR_NOT_FOUND, as wintun.dll answers. */
    if (WintunOpenAdapter(NAME("oxtun-none")) != NULL || LAST_ERROR() != ERROR_NOT_FOUND) {
        fprintf(stderr, "WintunOpenAdapter of no adapter: error %u\n", (unsigned)LAST_ERROR());
        return 1;
    }
    WintunCloseAdapter(NULL);
    if (X(OxtunStartSessionEx) || X(OxtunGetSessionFeatures)) {
        fprintf(stderr, "an Oxtun function is missing\n");
        return 1;
    }
    DWORD features = 7;
    if (OxtunGetSessionFeatures(NULL, &features) || LAST_ERROR() != ERROR_INVALID_HANDLE || features != 7) {
        fprintf(stderr, "OxtunGetSessionFeatures of no session: error %u\n", (unsigned)LAST_ERROR());
        return 1;
    }
    printf("fourteen functions found, and oxtun's own\n");
    return 0;
}
