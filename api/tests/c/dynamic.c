/* An application that loads the library at run time, as wintun.dll's users do with
 * GetProcAddress: the WINTUN_*_FUNC types, variables named as the functions (so no prototypes),
 * every one of the fourteen looked up by name. Compiled as C and as C++. */

#define OXTUN_NO_PROTOTYPES
#include <dlfcn.h>
#include <stdio.h>

#include "oxtun.h"

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
static DWORD (*LastError)(void);

#define LOOK_UP(library, name) ((*(void **)&name = dlsym(library, #name)) != NULL)

int main(int argc, char **argv)
{
    void *library = dlopen(argc > 1 ? argv[1] : "liboxtun.so", RTLD_NOW);
    if (!library) {
        fprintf(stderr, "dlopen: %s\n", dlerror());
        return 1;
    }
    if (!(LOOK_UP(library, WintunCreateAdapter) && LOOK_UP(library, WintunOpenAdapter) &&
          LOOK_UP(library, WintunCloseAdapter) && LOOK_UP(library, WintunDeleteDriver) &&
          LOOK_UP(library, WintunGetAdapterLUID) && LOOK_UP(library, WintunGetRunningDriverVersion) &&
          LOOK_UP(library, WintunSetLogger) && LOOK_UP(library, WintunStartSession) &&
          LOOK_UP(library, WintunEndSession) && LOOK_UP(library, WintunGetReadWaitEvent) &&
          LOOK_UP(library, WintunReceivePacket) && LOOK_UP(library, WintunReleaseReceivePacket) &&
          LOOK_UP(library, WintunAllocateSendPacket) && LOOK_UP(library, WintunSendPacket))) {
        fprintf(stderr, "a function is missing\n");
        return 1;
    }
    *(void **)&LastError = dlsym(library, "GetLastError");
    if (!LastError)
        return 1;
    if (WintunOpenAdapter(u"oxtun-none") != NULL || LastError() != ERROR_FILE_NOT_FOUND) {
        fprintf(stderr, "WintunOpenAdapter of no adapter: error %u\n", (unsigned)LastError());
        return 1;
    }
    WintunCloseAdapter(NULL);
    printf("fourteen functions found\n");
    return 0;
}
