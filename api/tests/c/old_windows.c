/* oxtun.dll on a Windows older than 10 2004, which our driver does not install on: under Wine,
 * told to report Windows 7 to this program alone (api/tests/windows_dll.rs sets its
 * AppDefaults), and on Windows 10 1809 or 1909 (docs/windows.md, first-run checklist).
 * WintunCreateAdapter refuses at once with ERROR_OLD_WIN_VERSION and says why, before it takes
 * the installation lock or looks for a driver (before, the DLL did not load at all before
 * Windows 10 1709, for a static import of IsWow64Process2, and later creation timed out after
 * 30 s). Exits 0 only if every check holds. */

#define OXTUN_PROTOTYPES
#include "checks.h"

int main(void)
{
    start_logging();

    CHECK_FAILS(WintunCreateAdapter(L"oxtun-old", L"Test", NULL), ERROR_OLD_WIN_VERSION);
    CHECK(logged("oxtun needs Windows 10 version 2004 (build 19041) or later"));
    CHECK(logged("; this is Windows "));
    CHECK(!logged("boundary descriptor"));
    /* The rest answers as ever. */
    CHECK_FAILS(WintunOpenAdapter(L"oxtun-old"), ERROR_NOT_FOUND);
    CHECK_FAILS(WintunGetRunningDriverVersion(), ERROR_FILE_NOT_FOUND);
    return report();
}
