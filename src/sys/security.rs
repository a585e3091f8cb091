//! Who may register rings: LocalSystem and the Administrators group at high integrity, by an
//! access check against a security descriptor that grants only them.

use super::nt::*;

/// A self-relative security descriptor, 4-byte aligned as the kernel requires.
#[repr(C, align(4))]
struct SecurityDescriptor([u8; 112]);

const FILE_ALL: [u8; 4] = FILE_ALL_ACCESS.to_le_bytes();

/// `O:SYD:P(A;;FA;;;SY)(A;;FA;;;BA)S:(ML;;NWNRNX;;;HI)`: owned by LocalSystem, with a protected
/// DACL allowing FILE_ALL_ACCESS to LocalSystem and to BUILTIN\Administrators and nothing to
/// anyone else, and a mandatory label of high integrity that denies reading, writing and
/// executing to any caller below it. (A filtered, non-elevated administrator token holds
/// Administrators only for deny, so the DACL refuses it; an administrator's process running at
/// medium integrity holds it enabled, and the label refuses it.)
#[rustfmt::skip]
static RING_REGISTRATION_SD: SecurityDescriptor = SecurityDescriptor([
    // SECURITY_DESCRIPTOR_RELATIVE: revision 1, control SE_DACL_PRESENT | SE_SACL_PRESENT |
    // SE_DACL_PROTECTED | SE_SELF_RELATIVE, the owner at offset 20, no group, the SACL at offset
    // 84, the DACL at offset 32.
    1, 0, 0x14, 0x90, 20, 0, 0, 0, 0, 0, 0, 0, 84, 0, 0, 0, 32, 0, 0, 0,
    // The owner: S-1-5-18 (LocalSystem).
    1, 1, 0, 0, 0, 0, 0, 5, 18, 0, 0, 0,
    // The DACL: revision 2, 52 bytes, 2 ACEs.
    2, 0, 52, 0, 2, 0, 0, 0,
    // ACCESS_ALLOWED_ACE, 20 bytes: FILE_ALL_ACCESS to S-1-5-18 (LocalSystem).
    0, 0, 20, 0, FILE_ALL[0], FILE_ALL[1], FILE_ALL[2], FILE_ALL[3],
    1, 1, 0, 0, 0, 0, 0, 5, 18, 0, 0, 0,
    // ACCESS_ALLOWED_ACE, 24 bytes: FILE_ALL_ACCESS to S-1-5-32-544 (Administrators).
    0, 0, 24, 0, FILE_ALL[0], FILE_ALL[1], FILE_ALL[2], FILE_ALL[3],
    1, 2, 0, 0, 0, 0, 0, 5, 32, 0, 0, 0, 0x20, 0x02, 0, 0,
    // The SACL: revision 2, 28 bytes, 1 ACE.
    2, 0, 28, 0, 1, 0, 0, 0,
    // SYSTEM_MANDATORY_LABEL_ACE, 20 bytes: no write, read or execute up (7) for
    // S-1-16-12288 (high integrity).
    0x11, 0, 20, 0, 7, 0, 0, 0,
    1, 1, 0, 0, 0, 0, 0, 16, 0x00, 0x30, 0, 0,
]);

/// Whether the thread's caller (of `mode`) may read and write ring data: an access check of its
/// security context against [`RING_REGISTRATION_SD`]. Kernel-mode callers always may.
pub fn caller_is_system_or_administrator(mode: KPROCESSOR_MODE) -> bool {
    // SAFETY: plain bytes until SeCaptureSubjectContext fills them.
    let mut subject: SECURITY_SUBJECT_CONTEXT = unsafe { core::mem::zeroed() };
    let mut granted: ACCESS_MASK = 0;
    let mut status: NTSTATUS = STATUS_ACCESS_DENIED;
    // SAFETY: capture and release pair up on a local context; the descriptor is static and
    // well-formed; the out parameters are locals.
    let allowed = unsafe {
        SeCaptureSubjectContext(&mut subject);
        let allowed = SeAccessCheck(
            (&raw const RING_REGISTRATION_SD).cast_mut().cast(),
            &mut subject,
            0,
            FILE_READ_DATA | FILE_WRITE_DATA,
            0,
            core::ptr::null_mut(),
            IoGetFileObjectGenericMapping(),
            mode,
            &mut granted,
            &mut status,
        );
        SeReleaseSubjectContext(&mut subject);
        allowed
    };
    allowed != 0 && NT_SUCCESS(status)
}
