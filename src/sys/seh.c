/*
 * The one place the driver needs structured exception handling. MmProbeAndLockPages raises an
 * exception when a user address is bad (unmapped, read-only, freed while we look), and Rust
 * cannot catch SEH exceptions; this catches it and returns its code as an NTSTATUS.
 *
 * Built with clang for the Windows target (build.rs); the host build gets the function from the
 * simulated kernel instead. No WDK headers: the declarations below are all it uses.
 */

typedef long NTSTATUS;
typedef struct _MDL MDL;
typedef char KPROCESSOR_MODE;
typedef enum _LOCK_OPERATION { IoReadAccess, IoWriteAccess, IoModifyAccess } LOCK_OPERATION;

__declspec(dllimport) void MmProbeAndLockPages(MDL *Mdl, KPROCESSOR_MODE AccessMode,
                                               LOCK_OPERATION Operation);

NTSTATUS OxtunProbeAndLockPages(MDL *Mdl, KPROCESSOR_MODE AccessMode, LOCK_OPERATION Operation)
{
    __try {
        MmProbeAndLockPages(Mdl, AccessMode, Operation);
    } __except (1 /* EXCEPTION_EXECUTE_HANDLER */) {
        return (NTSTATUS)_exception_code();
    }
    return 0;
}
