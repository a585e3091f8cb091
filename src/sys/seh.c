/*
 * The one place the driver needs structured exception handling. MmProbeAndLockPages raises an
 * exception when a user address is bad (unmapped, read-only, freed while we look), and Rust
 * cannot catch SEH exceptions; this catches it and returns its code as an NTSTATUS.
 *
 * The code is read in the filter expression, where the exception record is defined to be
 * available, not at the landing of the handler: what an unwinder passes there is not part of the
 * contract (Wine, for one, passes 0, which would turn a fault into success).
 *
 * Built with clang for the Windows target (build.rs); the host build gets the function from the
 * simulated kernel instead. No WDK headers: the declarations below are all it uses.
 */

typedef long NTSTATUS;
typedef struct _MDL MDL;
typedef char KPROCESSOR_MODE;
typedef enum _LOCK_OPERATION { IoReadAccess, IoWriteAccess, IoModifyAccess } LOCK_OPERATION;

#define EXCEPTION_EXECUTE_HANDLER 1
#define STATUS_UNSUCCESSFUL ((NTSTATUS)0xC0000001L)

__declspec(dllimport) void MmProbeAndLockPages(MDL *Mdl, KPROCESSOR_MODE AccessMode,
                                               LOCK_OPERATION Operation);

NTSTATUS OxtunProbeAndLockPages(MDL *Mdl, KPROCESSOR_MODE AccessMode, LOCK_OPERATION Operation)
{
    volatile NTSTATUS status = 0;
    __try {
        MmProbeAndLockPages(Mdl, AccessMode, Operation);
    } __except (status = (NTSTATUS)_exception_code(), EXCEPTION_EXECUTE_HANDLER) {
        /* A raised code is an error; whatever it read as, the pages are not locked. */
        if (status >= 0)
            status = STATUS_UNSUCCESSFUL;
    }
    return status;
}
