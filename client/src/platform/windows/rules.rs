//! What the Windows backend decides, apart from the system calls that carry it out: small pure
//! functions, compiled on every platform so that their tests run on Linux too (the calls
//! themselves can only run on Windows). Each rule cites where it comes from: wintun.dll 0.14's
//! `api/*.c` (WireGuard/wintun), Microsoft's documentation, or the review of oxtun.dll against
//! both (`../shared/reviews/api-review-2026-12-06.md`, "the review" below, with its finding's
//! number).

#![cfg_attr(
    not(windows),
    allow(
        dead_code,
        reason = "used by the Windows backend; only the tests run here"
    )
)]

/// The private namespace that holds our machine-wide objects, and its boundary: only a process
/// whose token holds BUILTIN\Administrators enabled (an elevated administrator, or LocalSystem,
/// whose token holds it too) may create it ("The caller must be within the specified boundary
/// for the create operation to succeed", Microsoft's "Object Namespaces" page). A standard user,
/// or an administrator's filtered medium-integrity token (where Administrators is deny-only),
/// cannot, so no such process can squat it (the review, finding 1). wintun.dll keeps its mutexes
/// in a namespace of the same kind (api/namespace.c).
pub const NAMESPACE: &str = "oxtun";

/// The installation mutex, inside [`NAMESPACE`] ("prefix\name", CreatePrivateNamespaceW's page).
/// The name stays the same from one oxtun version to the next, so that they exclude each other.
pub const INSTALLATION_MUTEX: &str = "oxtun\\oxtun-installation";

/// Who may open the namespace and the mutex, and create and read the private folder:
/// LocalSystem and Administrators, all access, nothing inherited, at high integrity or above.
/// wintun.dll gives its namespace, mutexes and folder the same descriptor (api/main.c).
pub const SYSTEM_AND_ADMINISTRATORS_ONLY: &str =
    "O:SYD:P(A;;GA;;;SY)(A;;GA;;;BA)S:(ML;;NWNRNX;;;HI)";

/// How often the namespace is looked for again when it comes and goes between our calls.
pub const NAMESPACE_ATTEMPTS: u32 = 100;

/// The namespace call that failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NamespaceCall {
    Create,
    Open,
}

/// What to do after a namespace call failed with the Win32 error `error`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NamespaceStep {
    /// Another process created it first: open theirs.
    Open,
    /// It was gone again before we opened it (its creator closed it): create it.
    Create,
    /// A failure to report.
    Fail,
}

/// The namespace dance of wintun.dll's api/namespace.c: create; on ERROR_ALREADY_EXISTS open;
/// on ERROR_PATH_NOT_FOUND from the open (the namespace went away between the two calls) create
/// again. Anything else (ERROR_ACCESS_DENIED for a caller outside the boundary) is the answer.
pub fn after_namespace_failure(call: NamespaceCall, error: u32) -> NamespaceStep {
    const ERROR_PATH_NOT_FOUND: u32 = 3;
    const ERROR_ALREADY_EXISTS: u32 = 183;
    match (call, error) {
        (NamespaceCall::Create, ERROR_ALREADY_EXISTS) => NamespaceStep::Open,
        (NamespaceCall::Open, ERROR_PATH_NOT_FOUND) => NamespaceStep::Create,
        _ => NamespaceStep::Fail,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// wintun.dll's api/namespace.c (NamespaceRuntimeInit): create, else open an existing one,
    /// else create again if it vanished; any other error ends it.
    #[test]
    fn the_namespace_is_created_or_opened_as_wintun_dll_does() {
        use NamespaceCall::*;
        assert_eq!(after_namespace_failure(Create, 183), NamespaceStep::Open);
        assert_eq!(after_namespace_failure(Open, 3), NamespaceStep::Create);
        // ERROR_ACCESS_DENIED: not within the boundary (a standard user): no retry.
        assert_eq!(after_namespace_failure(Create, 5), NamespaceStep::Fail);
        assert_eq!(after_namespace_failure(Open, 5), NamespaceStep::Fail);
        // ERROR_ALREADY_EXISTS from an open, or ERROR_PATH_NOT_FOUND from a create: not the race.
        assert_eq!(after_namespace_failure(Open, 183), NamespaceStep::Fail);
        assert_eq!(after_namespace_failure(Create, 3), NamespaceStep::Fail);
    }

    #[test]
    fn the_mutex_lives_in_the_namespace() {
        assert_eq!(
            INSTALLATION_MUTEX
                .split_once('\\')
                .map(|(prefix, _)| prefix),
            Some(NAMESPACE)
        );
        assert!(!INSTALLATION_MUTEX.starts_with("Global\\"));
    }
}
