//! Who may register rings: LocalSystem and the Administrators group, by an access check against
//! a security descriptor that grants only them.

use super::nt::*;

/// A self-relative security descriptor, 4-byte aligned as the kernel requires.
#[repr(C, align(4))]
struct SecurityDescriptor([u8; 84]);

const FILE_ALL: [u8; 4] = FILE_ALL_ACCESS.to_le_bytes();

/// `O:SYD:P(A;;FA;;;SY)(A;;FA;;;BA)`: owned by LocalSystem, with a protected DACL allowing
/// FILE_ALL_ACCESS to LocalSystem and to BUILTIN\Administrators, and nothing to anyone else.
/// (A filtered, non-elevated administrator token holds Administrators only for deny, so it is
/// refused too.)
#[rustfmt::skip]
static RING_REGISTRATION_SD: SecurityDescriptor = SecurityDescriptor([
    // SECURITY_DESCRIPTOR_RELATIVE: revision 1, control SE_DACL_PRESENT | SE_DACL_PROTECTED |
    // SE_SELF_RELATIVE, the owner at offset 20, no group or SACL, the DACL at offset 32.
    1, 0, 0x04, 0x90, 20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 32, 0, 0, 0,
    // The owner: S-1-5-18 (LocalSystem).
    1, 1, 0, 0, 0, 0, 0, 5, 18, 0, 0, 0,
    // ACL: revision 2, 52 bytes, 2 ACEs.
    2, 0, 52, 0, 2, 0, 0, 0,
    // ACCESS_ALLOWED_ACE, 20 bytes: FILE_ALL_ACCESS to S-1-5-18 (LocalSystem).
    0, 0, 20, 0, FILE_ALL[0], FILE_ALL[1], FILE_ALL[2], FILE_ALL[3],
    1, 1, 0, 0, 0, 0, 0, 5, 18, 0, 0, 0,
    // ACCESS_ALLOWED_ACE, 24 bytes: FILE_ALL_ACCESS to S-1-5-32-544 (Administrators).
    0, 0, 24, 0, FILE_ALL[0], FILE_ALL[1], FILE_ALL[2], FILE_ALL[3],
    1, 2, 0, 0, 0, 0, 0, 5, 32, 0, 0, 0, 0x20, 0x02, 0, 0,
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
