//! The failure every port can report besides its own business errors: the
//! backend behind it (database, disk, network service) did not do its job.

use std::fmt;

/// What kind of backend failure happened; it decides how callers react
/// (retry later, report a fault, tell the user the disk is full).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackendErrorKind {
    /// The backend could not be reached or timed out; trying later may work.
    Unavailable,
    /// The backend has no space left to store what was asked.
    StorageFull,
    /// Anything else: a bug, corrupt data, an unexpected answer.
    Internal,
}

/// A backend failure, with a message for the logs (never for end users).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct BackendError {
    /// What kind of failure this is.
    pub kind: BackendErrorKind,
    /// Details for operators; may name files or hosts, so it is only logged.
    pub message: String,
}

impl BackendError {
    /// The backend could not be reached.
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self { kind: BackendErrorKind::Unavailable, message: message.into() }
    }

    /// The backend is out of space.
    pub fn storage_full(message: impl Into<String>) -> Self {
        Self { kind: BackendErrorKind::StorageFull, message: message.into() }
    }

    /// Any other backend fault.
    pub fn internal(message: impl Into<String>) -> Self {
        Self { kind: BackendErrorKind::Internal, message: message.into() }
    }

    /// A failed file operation, telling a full disk (`ENOSPC`) from other
    /// faults; `context` says what was being done.
    pub fn io(context: &str, error: &std::io::Error) -> Self {
        if error.kind() == std::io::ErrorKind::StorageFull || error.raw_os_error() == Some(28) {
            Self::storage_full(format!("{context}: {error}"))
        } else {
            Self::internal(format!("{context}: {error}"))
        }
    }
}

impl fmt::Display for BackendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self.kind {
            BackendErrorKind::Unavailable => "backend unavailable",
            BackendErrorKind::StorageFull => "storage full",
            BackendErrorKind::Internal => "backend fault",
        };
        write!(f, "{kind}: {}", self.message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_disk_is_told_apart_from_other_faults() {
        // /dev/full answers every write with ENOSPC, as a full disk does.
        let full = std::fs::write("/dev/full", b"video bytes").unwrap_err();
        assert_eq!(BackendError::io("storing", &full).kind, BackendErrorKind::StorageFull);
        let denied = std::io::Error::from(std::io::ErrorKind::PermissionDenied);
        assert_eq!(BackendError::io("storing", &denied).kind, BackendErrorKind::Internal);
    }
}
