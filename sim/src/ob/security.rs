//! Layer: ob, objects, handles and processes, above ke. It calls processes, ke and bookkeeping.
//!
//! Access checks: a process's token, and SeAccessCheck evaluating a security descriptor's
//! mandatory label against the token's integrity level, then its DACL against the token's
//! groups.

// The exports below are the kernel's own functions: their safety contracts are the ones
// Microsoft documents, and checking them is this module's job.
#![allow(clippy::missing_safety_doc)]

use oxtun_driver::sys::*;
use oxtun_sim_macros::kernel_export;

use crate::bookkeeping::verifier::{unsupported, violation};
use crate::ke::irql;
use crate::ob::process::{self, IntegrityLevel, Token};

const SE_DACL_PRESENT: u16 = 0x0004;
const SE_SACL_PRESENT: u16 = 0x0010;
const SE_SELF_RELATIVE: u16 = 0x8000;
const ACCESS_ALLOWED_ACE_TYPE: u8 = 0;
const ACCESS_DENIED_ACE_TYPE: u8 = 1;
const SYSTEM_MANDATORY_LABEL_ACE_TYPE: u8 = 0x11;
/// The mandatory label's policy bits: what a caller of lower integrity is denied.
const SYSTEM_MANDATORY_LABEL_NO_WRITE_UP: u32 = 0x1;
const SYSTEM_MANDATORY_LABEL_NO_READ_UP: u32 = 0x2;
const SYSTEM_MANDATORY_LABEL_NO_EXECUTE_UP: u32 = 0x4;
/// The authority of integrity-level SIDs, S-1-16-RID.
const MANDATORY_LABEL_AUTHORITY: u8 = 16;
/// What SeCaptureSubjectContext writes first, to check the context was captured.
const CAPTURED: u64 = 0x5EC0_7E47;

/// A SID as bytes: revision, count, authority (6 bytes, big-endian), sub-authorities (LE u32).
fn sid(authority: u8, subs: &[u32]) -> Vec<u8> {
    let mut bytes = vec![1, subs.len() as u8, 0, 0, 0, 0, 0, authority];
    for sub in subs {
        bytes.extend(sub.to_le_bytes());
    }
    bytes
}

/// The SIDs a token's holder counts as.
fn groups(token: Token) -> Vec<Vec<u8>> {
    let everyone = sid(1, &[0]);
    let authenticated_users = sid(5, &[11]);
    let user = sid(5, &[21, 1, 2, 3, 1001]);
    match token {
        Token::System => vec![
            sid(5, &[18]),
            sid(5, &[32, 544]),
            everyone,
            authenticated_users,
        ],
        Token::Administrator => vec![user, sid(5, &[32, 544]), everyone, authenticated_users],
        Token::User => vec![user, sid(5, &[32, 545]), everyone, authenticated_users],
    }
}

fn token_code(token: Token) -> u64 {
    match token {
        Token::System => 1,
        Token::Administrator => 2,
        Token::User => 3,
    }
}

fn token_of(code: u64) -> Option<Token> {
    match code {
        1 => Some(Token::System),
        2 => Some(Token::Administrator),
        3 => Some(Token::User),
        _ => None,
    }
}

/// The RID of an integrity level's SID, S-1-16-RID.
fn integrity_rid(level: IntegrityLevel) -> u32 {
    match level {
        IntegrityLevel::Low => 0x1000,
        IntegrityLevel::Medium => 0x2000,
        IntegrityLevel::High => 0x3000,
        IntegrityLevel::System => 0x4000,
    }
}

#[kernel_export]
pub unsafe extern "efiapi" fn SeCaptureSubjectContext(context: *mut SECURITY_SUBJECT_CONTEXT) {
    // SeCaptureSubjectContext (wdm.h): "IRQL PASSIVE_LEVEL".
    irql::require_at_most(PASSIVE_LEVEL, "SeCaptureSubjectContext");
    let words = context.cast::<u64>();
    let process = process::current();
    // SAFETY: the driver's context, 0x20 bytes.
    unsafe {
        words.write(CAPTURED);
        words.add(1).write(token_code(process.token));
        words
            .add(2)
            .write(u64::from(integrity_rid(process.integrity)));
    }
}

#[kernel_export]
pub unsafe extern "efiapi" fn SeReleaseSubjectContext(context: *mut SECURITY_SUBJECT_CONTEXT) {
    let words = context.cast::<u64>();
    // SAFETY: the driver's context.
    unsafe {
        // SeReleaseSubjectContext releases a context SeCaptureSubjectContext captured
        // (SeReleaseSubjectContext).
        if words.read() != CAPTURED {
            violation("releasing a subject context that was not captured");
        }
        words.write(0);
    }
}

static FILE_GENERIC_MAPPING: GenericMapping = GenericMapping(GENERIC_MAPPING {
    GenericRead: 0x0012_0089,
    GenericWrite: 0x0012_0116,
    GenericExecute: 0x0012_00A0,
    GenericAll: FILE_ALL_ACCESS,
});

struct GenericMapping(GENERIC_MAPPING);

#[kernel_export]
pub extern "efiapi" fn IoGetFileObjectGenericMapping() -> *mut GENERIC_MAPPING {
    (&raw const FILE_GENERIC_MAPPING.0).cast_mut()
}

fn map_generic(mask: ACCESS_MASK, mapping: &GENERIC_MAPPING) -> ACCESS_MASK {
    let mut mapped = mask & 0x0FFF_FFFF;
    for (bit, rights) in [
        (0x8000_0000, mapping.GenericRead),
        (0x4000_0000, mapping.GenericWrite),
        (0x2000_0000, mapping.GenericExecute),
        (0x1000_0000, mapping.GenericAll),
    ] {
        if mask & bit != 0 {
            mapped |= rights;
        }
    }
    mapped
}

/// A self-relative security descriptor's ACLs, each as (type, mask, SID) ACEs; `None` for an
/// ACL that is not present (for the DACL: everyone allowed).
struct Descriptor {
    sacl: Option<Vec<(u8, u32, Vec<u8>)>>,
    dacl: Option<Vec<(u8, u32, Vec<u8>)>>,
}

/// Reads a self-relative security descriptor.
///
/// # Safety
/// `descriptor` points at a well-formed self-relative security descriptor.
unsafe fn read_descriptor(descriptor: *const u8) -> Descriptor {
    let read_u16 = |at: usize| {
        // SAFETY: inside the descriptor, per the caller.
        u16::from_le_bytes(unsafe { [*descriptor.add(at), *descriptor.add(at + 1)] })
    };
    let read_u32 = |at: usize| u32::from(read_u16(at)) | u32::from(read_u16(at + 2)) << 16;
    let control = read_u16(2);
    if control & SE_SELF_RELATIVE == 0 {
        unsupported("absolute security descriptors (the simulator reads self-relative ones)");
        return Descriptor {
            sacl: None,
            dacl: Some(Vec::new()),
        };
    }
    let acl = |present: u16, offset_at: usize| {
        let offset = read_u32(offset_at) as usize;
        if control & present == 0 || offset == 0 {
            return None;
        }
        let ace_count = read_u16(offset + 4) as usize;
        let mut aces = Vec::new();
        let mut at = offset + 8;
        for _ in 0..ace_count {
            // SAFETY: inside the descriptor, per the caller.
            let ace_type = unsafe { *descriptor.add(at) };
            let ace_size = read_u16(at + 2) as usize;
            let mask = read_u32(at + 4);
            // SAFETY: the SID fills the rest of the ACE.
            let sid = unsafe { std::slice::from_raw_parts(descriptor.add(at + 8), ace_size - 8) };
            // SAFETY: as above.
            let sub_count = unsafe { *descriptor.add(at + 9) } as usize;
            aces.push((ace_type, mask, sid[..8 + 4 * sub_count].to_vec()));
            at += ace_size;
        }
        Some(aces)
    };
    Descriptor {
        sacl: acl(SE_SACL_PRESENT, 12),
        dacl: acl(SE_DACL_PRESENT, 16),
    }
}

/// What mandatory integrity control denies a caller at integrity `rid`: an object without a label
/// counts as medium integrity with no-write-up ("Mandatory Integrity Control", Microsoft's
/// Windows security documentation).
fn denied_by_label(
    sacl: Option<&[(u8, u32, Vec<u8>)]>,
    rid: u32,
    mapping: &GENERIC_MAPPING,
) -> u32 {
    let label = sacl
        .into_iter()
        .flatten()
        .find_map(|(ace_type, mask, sid)| {
            let is_label = *ace_type == SYSTEM_MANDATORY_LABEL_ACE_TYPE
                && sid.len() == 12
                && sid[7] == MANDATORY_LABEL_AUTHORITY;
            is_label.then(|| (u32::from_le_bytes(sid[8..12].try_into().unwrap()), *mask))
        });
    let (label_rid, policy) = label.unwrap_or((
        integrity_rid(IntegrityLevel::Medium),
        SYSTEM_MANDATORY_LABEL_NO_WRITE_UP,
    ));
    if rid >= label_rid {
        return 0;
    }
    let mut denied = 0;
    for (bit, rights) in [
        (SYSTEM_MANDATORY_LABEL_NO_WRITE_UP, mapping.GenericWrite),
        (SYSTEM_MANDATORY_LABEL_NO_READ_UP, mapping.GenericRead),
        (SYSTEM_MANDATORY_LABEL_NO_EXECUTE_UP, mapping.GenericExecute),
    ] {
        if policy & bit != 0 {
            denied |= rights;
        }
    }
    denied
}

#[kernel_export]
pub unsafe extern "efiapi" fn SeAccessCheck(
    descriptor: PVOID,
    context: *mut SECURITY_SUBJECT_CONTEXT,
    _context_locked: u8,
    desired: ACCESS_MASK,
    previously_granted: ACCESS_MASK,
    privileges: *mut PVOID,
    mapping: *mut GENERIC_MAPPING,
    mode: KPROCESSOR_MODE,
    granted: *mut ACCESS_MASK,
    status: *mut NTSTATUS,
) -> u8 {
    // SeAccessCheck (wdm.h): "IRQL PASSIVE_LEVEL".
    irql::require_at_most(PASSIVE_LEVEL, "SeAccessCheck");
    if !privileges.is_null() {
        unsupported("SeAccessCheck returning the privileges it used");
    }
    // SAFETY: the driver's mapping (from IoGetFileObjectGenericMapping).
    let mapping = unsafe { &*mapping };
    let desired = map_generic(desired, mapping);
    let words = context.cast::<u64>();
    // SAFETY: the driver's captured context.
    let (captured, code, rid) = unsafe { (words.read(), words.add(1).read(), words.add(2).read()) };
    let token = token_of(code).filter(|_| captured == CAPTURED);
    let allowed = if mode == KernelMode {
        true
    } else if let Some(token) = token {
        // SAFETY: the driver's security descriptor.
        let descriptor = unsafe { read_descriptor(descriptor.cast()) };
        let label_denies =
            denied_by_label(descriptor.sacl.as_deref(), rid as u32, mapping) & desired != 0;
        let dacl_allows = match descriptor.dacl {
            None => true,
            Some(aces) => {
                let groups = groups(token);
                let mut have = previously_granted;
                let mut denied = false;
                for (ace_type, mask, sid) in aces {
                    if !groups.contains(&sid) {
                        continue;
                    }
                    let mask = map_generic(mask, mapping);
                    match ace_type {
                        ACCESS_ALLOWED_ACE_TYPE => have |= mask,
                        ACCESS_DENIED_ACE_TYPE if mask & desired & !have != 0 => denied = true,
                        _ => {}
                    }
                    if denied || have & desired == desired {
                        break;
                    }
                }
                !denied && have & desired == desired
            }
        };
        !label_denies && dacl_allows
    } else {
        // SubjectSecurityContext is the subject's captured security context (SeAccessCheck; from
        // SeCaptureSubjectContext).
        violation("SeAccessCheck with a subject context that was not captured");
        false
    };
    // SAFETY: the driver's out parameters.
    unsafe {
        *granted = if allowed { desired } else { 0 };
        *status = if allowed {
            STATUS_SUCCESS
        } else {
            STATUS_ACCESS_DENIED
        };
    }
    u8::from(allowed)
}
