/* oxtun.dll under Wine: what runs without a device or a driver. Compiled by mingw-w64 against
 * oxtun.h and linked with the DLL itself; api/tests/windows_dll.rs runs it with wine for each
 * architecture. Exits 0 only if every check holds.
 *
 * Wine cannot load a kernel driver, so adapters, sessions and packets cannot run there: they
 * need Windows. */

#define OXTUN_PROTOTYPES
#include "checks.h"

int main(void)
{
    start_logging();

    check_arguments_that_are_not_ours();

    /* No adapter of ours on this machine, and no driver of ours running. */
    CHECK_FAILS(WintunOpenAdapter(L"oxtun-w0"), ERROR_NOT_FOUND);
    CHECK_FAILS(WintunGetRunningDriverVersion(), ERROR_FILE_NOT_FOUND);

    /* Creating, and removing the driver, first take the installation lock, a mutex in a private
     * namespace. Wine 8 has none (CreateBoundaryDescriptorW is a stub that fails without an
     * error, so the library reports ERROR_GEN_FAILURE): both stop there, cleanly, with the
     * reason logged. On Windows creation goes on to install the driver. */
    CHECK_FAILS(WintunCreateAdapter(L"oxtun-w0", L"Test", NULL), ERROR_GEN_FAILURE);
    CHECK(logged("Failed to create the boundary descriptor"));
    CHECK_FAILS(WintunDeleteDriver(), ERROR_GEN_FAILURE);
    /* The library is still usable. */
    CHECK_FAILS(WintunOpenAdapter(L"oxtun-w0"), ERROR_NOT_FOUND);
    return report();
}
