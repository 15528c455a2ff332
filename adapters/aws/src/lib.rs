//! `anb-aws`: the adapters on Amazon Web Services, and what they share (the
//! SDK configuration from the standard AWS chain, SDK errors mapped onto
//! [`BackendError`]).
//!
//! | module | adapters |
//! |---|---|
//! | [`s3`] | [`S3Storage`], object storage on Amazon S3 |
//! | [`sqs`] | [`SqsQueue`], the job queue on Amazon SQS with a dead-letter queue |
//! | [`secrets`] | the database URL and the keys from AWS Secrets Manager |
//! | [`ses`] | [`SesMailer`], e-mail through Amazon SES |
//! | [`autoscaling`] | [`AsgScaleInProtection`], a worker host kept out of scale-in while it runs a job |

pub mod autoscaling;
pub mod s3;
pub mod secrets;
pub mod ses;
pub mod sqs;

pub use autoscaling::AsgScaleInProtection;
pub use s3::S3Storage;
pub use ses::SesMailer;
pub use sqs::{ProvisionedQueues, SqsQueue};

use anb_domain::BackendError;
use aws_sdk_s3::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};

/// The SDK configuration from the standard chain: environment
/// (`AWS_REGION`, `AWS_ACCESS_KEY_ID`, `AWS_ENDPOINT_URL`, ...), profile
/// files, then the instance or task role.
pub async fn sdk_config() -> aws_config::SdkConfig {
    aws_config::load_from_env().await
}

/// An SDK failure as a backend error: a network failure, a timeout, a 5xx or
/// throttling means the service is unavailable; anything else is internal.
pub(crate) fn sdk_error<E>(context: &str, error: &SdkError<E>) -> BackendError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    let message = format!("{context}: {}", DisplayErrorContext(error));
    let unavailable = match error {
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) => true,
        SdkError::ResponseError(response) => response.raw().status().is_server_error(),
        SdkError::ServiceError(service) => {
            service.raw().status().is_server_error() || matches!(service.err().code(), Some("SlowDown" | "Throttling" | "RequestThrottled"))
        }
        _ => false,
    };
    if unavailable { BackendError::unavailable(message) } else { BackendError::internal(message) }
}

/// The error code the service answered with, if it answered.
pub(crate) fn service_code<E: ProvideErrorMetadata>(error: &SdkError<E>) -> Option<&str> {
    error.as_service_error().and_then(ProvideErrorMetadata::code)
}
