//! The one error type handlers return, and the one place it becomes a `tonic::Status`.
//!
//! Client-facing variants carry a message written for the person at the other end.
//! [`ApiError::Internal`] carries the real cause, which is logged and replaced by a generic
//! message: SQL errors, I/O errors and the like never reach a client.

use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

use crate::domain::{FieldViolation, Invalid};

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The request failed validation; one entry per bad field.
    #[error("invalid request: {}", .0.first().map(|v| v.description.as_str()).unwrap_or(""))]
    InvalidArgument(Vec<FieldViolation>),
    #[error("unauthenticated: {0}")]
    Unauthenticated(String),
    #[error("permission denied: {0}")]
    PermissionDenied(String),
    #[error("not found: {0}")]
    NotFound(String),
    #[error("already exists: {0}")]
    AlreadyExists(String),
    #[error("rate limited: {0}")]
    ResourceExhausted(String),
    #[error("failed precondition: {0}")]
    FailedPrecondition(String),
    #[error("unavailable: {0}")]
    Unavailable(String),
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl ApiError {
    pub fn unauthenticated(message: impl Into<String>) -> Self {
        Self::Unauthenticated(message.into())
    }

    pub fn permission_denied(message: impl Into<String>) -> Self {
        Self::PermissionDenied(message.into())
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::NotFound(message.into())
    }

    /// A single bad field.
    pub fn invalid(violation: FieldViolation) -> Self {
        Self::InvalidArgument(vec![violation])
    }
}

impl From<Invalid> for ApiError {
    fn from(Invalid(violations): Invalid) -> Self {
        Self::InvalidArgument(violations)
    }
}

impl From<sea_orm::DbErr> for ApiError {
    fn from(err: sea_orm::DbErr) -> Self {
        if unreachable(&err) {
            tracing::warn!(error = %err, "the database is unreachable");
            return Self::Unavailable("the database is unavailable; try again shortly".into());
        }
        Self::Internal(anyhow::Error::new(err).context("database error"))
    }
}

impl From<ApiError> for Status {
    fn from(err: ApiError) -> Self {
        match err {
            ApiError::InvalidArgument(violations) => {
                let message = violations
                    .iter()
                    .map(|v| v.description.as_str())
                    .collect::<Vec<_>>()
                    .join(" ");
                let mut details = ErrorDetails::new();
                for v in &violations {
                    details.add_bad_request_violation(v.field, v.description.clone());
                }
                Status::with_error_details(Code::InvalidArgument, message, details)
            }
            ApiError::Unauthenticated(m) => Status::unauthenticated(m),
            ApiError::PermissionDenied(m) => Status::permission_denied(m),
            ApiError::NotFound(m) => Status::not_found(m),
            ApiError::AlreadyExists(m) => Status::already_exists(m),
            ApiError::ResourceExhausted(m) => Status::resource_exhausted(m),
            ApiError::FailedPrecondition(m) => Status::failed_precondition(m),
            ApiError::Unavailable(m) => Status::unavailable(m),
            ApiError::Internal(err) => {
                tracing::error!(error = ?err, "internal error");
                Status::internal("internal error; the server log has the details")
            }
        }
    }
}

/// Whether `err` says the database could not be reached (stopped, restarting, the network
/// cut) rather than that it refused the statement: the caller may try again shortly.
fn unreachable(err: &sea_orm::DbErr) -> bool {
    use sea_orm::sqlx::Error as Sqlx;
    use sea_orm::{DbErr, RuntimeErr};
    match err {
        // Failing to connect at all, whatever the reason (refused, reset, garbage from a
        // dying peer), is the database being out of reach.
        DbErr::ConnectionAcquire(_) | DbErr::Conn(_) => true,
        DbErr::Exec(RuntimeErr::SqlxError(e)) | DbErr::Query(RuntimeErr::SqlxError(e)) => matches!(
            e.as_ref(),
            Sqlx::Io(_) | Sqlx::PoolTimedOut | Sqlx::PoolClosed | Sqlx::WorkerCrashed
        ),
        _ => false,
    }
}
