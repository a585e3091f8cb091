/* oxtun.dll under Wine, and on Windows (docs/windows.md, first-run checklist): another process
 * holds the name the installation lock once had,
 * Global\oxtun-installation, as any unprivileged local user could (the review of 2026-12-06,
 * finding 1). Creating an adapter must not wait for it. Compiled by mingw-w64 against oxtun.h and
 * linked with the DLL; api/tests/windows_dll.rs runs it with wine for each architecture.
 *
 * The program starts a copy of itself as the squatter ("squat"), which creates the mutex, owns
 * it, tells its parent through a named event and then waits until it is killed. The parent
 * creates an adapter on a thread of its own and gives it 20 seconds; the library that took the
 * lock as a named mutex in Global\ waits there forever. Exits 0 only if creation came back. */

#define OXTUN_PROTOTYPES
#include <wchar.h>

#include "checks.h"

#define READY_EVENT L"Local\\oxtun-test-squatter-ready"

static int squat(void)
{
    HANDLE ready = OpenEventW(EVENT_MODIFY_STATE, FALSE, READY_EVENT);
    HANDLE mutex = CreateMutexW(NULL, TRUE, L"Global\\oxtun-installation");
    if (!ready || !mutex || GetLastError() == ERROR_ALREADY_EXISTS)
        return 1;
    SetEvent(ready);
    Sleep(INFINITE);
    return 0;
}

static DWORD create_error;

static DWORD WINAPI create(void *unused)
{
    (void)unused;
    WINTUN_ADAPTER_HANDLE adapter = WintunCreateAdapter(L"oxtun-sq0", L"Test", NULL);
    create_error = adapter ? ERROR_SUCCESS : GetLastError();
    WintunCloseAdapter(adapter);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc > 1 && !strcmp(argv[1], "squat"))
        return squat();

    start_logging();
    HANDLE ready = CreateEventW(NULL, TRUE, FALSE, READY_EVENT);
    CHECK(ready != NULL);
    wchar_t command[MAX_PATH + 16];
    GetModuleFileNameW(NULL, command, MAX_PATH);
    wcscat(command, L" squat");
    STARTUPINFOW startup = { .cb = sizeof(startup) };
    PROCESS_INFORMATION squatter;
    CHECK(CreateProcessW(NULL, command, NULL, NULL, FALSE, 0, NULL, NULL, &startup, &squatter));
    CHECK(WaitForSingleObject(ready, 20000) == WAIT_OBJECT_0);

    HANDLE thread = CreateThread(NULL, 0, create, NULL, 0, NULL);
    DWORD waited = WaitForSingleObject(thread, 20000);
    TerminateProcess(squatter.hProcess, 0);
    if (waited != WAIT_OBJECT_0) {
        fprintf(stderr, "WintunCreateAdapter still waits after 20 s behind the squatter\n");
        fflush(stderr);
        ExitProcess(1); /* ends the waiting thread too */
    }
    /* It came back with an answer of its own, never with the squatter's mutex: on Windows an
     * adapter (error 0), under Wine the failure Wine's missing private namespaces cause (see
     * windows_dll.rs). */
    printf("WintunCreateAdapter came back: error %lu\n", (unsigned long)create_error);
    CHECK(!logged("installation mutex"));
    return report();
}
