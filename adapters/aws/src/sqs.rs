//! [`SqsQueue`]: the [`JobQueue`] port on Amazon SQS (or moto).
//!
//! Long polling (20 s) for receives; the visibility timeout is set per
//! receive and extended by the worker's heartbeat; an acknowledged job is
//! deleted. A job given up on is made visible again at once, and the queue's
//! redrive policy moves it to the dead-letter queue at its next receive,
//! since it has then been received `maxReceiveCount` times: the worker marks
//! the video `failed` first, reading the receive count SQS reports.

use std::time::Duration;

use anb_domain::ports::{DeadLetterQueue, HealthCheck, JobQueue, QueueError};
use anb_domain::{BackendError, Delivery, Job, Receipt};
use async_trait::async_trait;
use aws_sdk_sqs::Client;
use aws_sdk_sqs::error::SdkError;
use aws_sdk_sqs::types::{MessageSystemAttributeName, QueueAttributeName};

use crate::{sdk_error, service_code};

/// SQS's longest long poll.
pub const LONG_POLL: Duration = Duration::from_secs(20);
/// SQS's longest visibility timeout (12 hours).
const MAX_VISIBILITY: u64 = 43_200;

/// Processing jobs as messages of one SQS queue.
#[derive(Clone, Debug)]
pub struct SqsQueue {
    client: Client,
    url: String,
    wait: Duration,
}

/// The queue and dead-letter queue [`SqsQueue::provision`] made sure of.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProvisionedQueues {
    pub queue_url: String,
    pub dead_letter_url: String,
}

impl SqsQueue {
    /// The queue at `url`, long-polling [`LONG_POLL`] per receive.
    pub fn new(config: &aws_config::SdkConfig, url: impl Into<String>) -> Self {
        Self { client: Client::new(config), url: url.into(), wait: LONG_POLL }
    }

    /// Waits at most `wait` (whole seconds, up to 20) per receive.
    #[must_use]
    pub fn with_wait(mut self, wait: Duration) -> Self {
        self.wait = wait.min(LONG_POLL);
        self
    }

    /// The queue's URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Creates the queue `name` and its dead-letter queue `name-dlq` unless
    /// they exist, with a redrive policy after `max_receives` receives.
    ///
    /// # Errors
    /// When SQS refuses.
    pub async fn provision(config: &aws_config::SdkConfig, name: &str, max_receives: u32) -> Result<ProvisionedQueues, BackendError> {
        let client = Client::new(config);
        let dead_letter_url = client
            .create_queue()
            .queue_name(format!("{name}-dlq"))
            .attributes(QueueAttributeName::MessageRetentionPeriod, "1209600")
            .send()
            .await
            .map_err(|e| sdk_error("creating the dead-letter queue", &e))?
            .queue_url
            .ok_or_else(|| BackendError::internal("SQS returned no dead-letter queue URL"))?;
        let dead_letter_arn = client
            .get_queue_attributes()
            .queue_url(&dead_letter_url)
            .attribute_names(QueueAttributeName::QueueArn)
            .send()
            .await
            .map_err(|e| sdk_error("reading the dead-letter queue", &e))?
            .attributes
            .and_then(|mut a| a.remove(&QueueAttributeName::QueueArn))
            .ok_or_else(|| BackendError::internal("SQS returned no dead-letter queue ARN"))?;
        let redrive = serde_json::json!({"deadLetterTargetArn": dead_letter_arn, "maxReceiveCount": max_receives}).to_string();
        let queue_url = match client.create_queue().queue_name(name).attributes(QueueAttributeName::RedrivePolicy, &redrive).send().await {
            Ok(created) => created.queue_url.ok_or_else(|| BackendError::internal("SQS returned no queue URL"))?,
            // It exists with other attributes: keep it and set the redrive policy.
            Err(e) if matches!(service_code(&e), Some("QueueAlreadyExists" | "QueueNameExists")) => {
                let url = client
                    .get_queue_url()
                    .queue_name(name)
                    .send()
                    .await
                    .map_err(|e| sdk_error("finding the queue", &e))?
                    .queue_url
                    .ok_or_else(|| BackendError::internal("SQS returned no queue URL"))?;
                client
                    .set_queue_attributes()
                    .queue_url(&url)
                    .attributes(QueueAttributeName::RedrivePolicy, &redrive)
                    .send()
                    .await
                    .map_err(|e| sdk_error("setting the redrive policy", &e))?;
                url
            }
            Err(e) => return Err(sdk_error("creating the queue", &e)),
        };
        Ok(ProvisionedQueues { queue_url, dead_letter_url })
    }

    /// The `maxReceiveCount` of the queue's redrive policy, if it has one:
    /// the worker's last attempt must be that receive.
    ///
    /// # Errors
    /// When SQS cannot be reached or the policy is unreadable.
    pub async fn max_receive_count(&self) -> Result<Option<u32>, BackendError> {
        let Some(policy) = self.redrive_policy().await? else { return Ok(None) };
        // SQS gives the count as a number, some emulators as a string.
        let count = match &policy["maxReceiveCount"] {
            serde_json::Value::Number(n) => n.as_u64(),
            serde_json::Value::String(s) => s.parse().ok(),
            _ => None,
        };
        count.and_then(|c| u32::try_from(c).ok()).map(Some).ok_or_else(|| BackendError::internal("redrive policy without maxReceiveCount"))
    }

    /// The dead-letter queue of this queue's redrive policy, if it has one,
    /// for the sweeper of dead jobs (as a [`DeadLetterQueue`]).
    ///
    /// # Errors
    /// When SQS cannot be reached or names a queue it does not have.
    pub async fn dead_letter_queue(&self) -> Result<Option<SqsQueue>, BackendError> {
        let Some(policy) = self.redrive_policy().await? else { return Ok(None) };
        let arn =
            policy["deadLetterTargetArn"].as_str().ok_or_else(|| BackendError::internal("redrive policy without deadLetterTargetArn"))?;
        let name = arn.rsplit(':').next().unwrap_or(arn);
        let url = self
            .client
            .get_queue_url()
            .queue_name(name)
            .send()
            .await
            .map_err(|e| sdk_error("finding the dead-letter queue", &e))?
            .queue_url
            .ok_or_else(|| BackendError::internal("SQS returned no dead-letter queue URL"))?;
        Ok(Some(Self { client: self.client.clone(), url, wait: Duration::ZERO }))
    }

    async fn redrive_policy(&self) -> Result<Option<serde_json::Value>, BackendError> {
        let Some(policy) = self.attribute(QueueAttributeName::RedrivePolicy).await? else { return Ok(None) };
        serde_json::from_str(&policy).map(Some).map_err(|e| BackendError::internal(format!("unreadable redrive policy: {e}")))
    }

    /// Messages waiting plus those in flight (SQS's approximate counts).
    ///
    /// # Errors
    /// When SQS cannot be reached.
    pub async fn depth(&self) -> Result<u64, BackendError> {
        let mut depth = 0;
        for name in [QueueAttributeName::ApproximateNumberOfMessages, QueueAttributeName::ApproximateNumberOfMessagesNotVisible] {
            depth += self.attribute(name).await?.and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
        }
        Ok(depth)
    }

    async fn attribute(&self, name: QueueAttributeName) -> Result<Option<String>, BackendError> {
        let output = self
            .client
            .get_queue_attributes()
            .queue_url(&self.url)
            .attribute_names(name.clone())
            .send()
            .await
            .map_err(|e| sdk_error("reading queue attributes", &e))?;
        Ok(output.attributes.and_then(|mut a| a.remove(&name)))
    }

    async fn set_visibility(&self, receipt: &Receipt, visibility: Duration) -> Result<(), QueueError> {
        self.client
            .change_message_visibility()
            .queue_url(&self.url)
            .receipt_handle(&receipt.0)
            .visibility_timeout(seconds(visibility))
            .send()
            .await
            .map(drop)
            .map_err(|e| receipt_error("changing a message's visibility", &e))
    }
}

/// Whole seconds within SQS's range, rounded up so a short wait is not zero.
fn seconds(duration: Duration) -> i32 {
    let secs = duration.as_secs() + u64::from(duration.subsec_nanos() > 0);
    i32::try_from(secs.min(MAX_VISIBILITY)).unwrap_or(i32::MAX)
}

/// A stale receipt handle is [`QueueError::ReceiptExpired`]; the rest are
/// backend errors.
fn receipt_error<E>(context: &str, error: &SdkError<E>) -> QueueError
where
    E: aws_sdk_sqs::error::ProvideErrorMetadata + std::error::Error + 'static,
{
    match service_code(error) {
        Some(
            "ReceiptHandleIsInvalid"
            | "InvalidParameterValue"
            | "MessageNotInflight"
            | "AWS.SimpleQueueService.MessageNotInflight"
            | "AWS.SimpleQueueService.ReceiptHandleIsInvalid",
        ) => QueueError::ReceiptExpired,
        _ => sdk_error(context, error).into(),
    }
}

/// Ready when the queue answers (`/api/ready`'s `queue`).
#[async_trait]
impl HealthCheck for SqsQueue {
    async fn check(&self) -> Result<(), BackendError> {
        self.client
            .get_queue_attributes()
            .queue_url(&self.url)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
            .send()
            .await
            .map(drop)
            .map_err(|e| sdk_error("reading the queue", &e))
    }
}

#[async_trait]
impl JobQueue for SqsQueue {
    async fn send(&self, job: &Job) -> Result<(), QueueError> {
        let body = anb_job_json::encode(job);
        self.client.send_message().queue_url(&self.url).message_body(body).send().await.map_err(|e| sdk_error("sending a job", &e))?;
        Ok(())
    }

    async fn receive(&self, visibility: Duration) -> Result<Option<Delivery>, QueueError> {
        let output = self
            .client
            .receive_message()
            .queue_url(&self.url)
            .max_number_of_messages(1)
            .wait_time_seconds(seconds(self.wait))
            .visibility_timeout(seconds(visibility))
            .message_system_attribute_names(MessageSystemAttributeName::ApproximateReceiveCount)
            .send()
            .await
            .map_err(|e| sdk_error("receiving a job", &e))?;
        let Some(message) = output.messages.and_then(|m| m.into_iter().next()) else { return Ok(None) };
        let receipt = message.receipt_handle.ok_or_else(|| BackendError::internal("SQS message without a receipt handle"))?;
        let receive_count = message
            .attributes
            .as_ref()
            .and_then(|a| a.get(&MessageSystemAttributeName::ApproximateReceiveCount))
            .and_then(|c| c.parse().ok())
            .unwrap_or(1);
        let body = message.body.unwrap_or_default();
        match anb_job_json::decode(body.as_bytes()) {
            Ok(job) => Ok(Some(Delivery { job, receipt: Receipt(receipt), receive_count })),
            Err(e) => {
                // Not ours to act on; left hidden, the redrive policy moves it
                // to the dead-letter queue after its last receive.
                tracing::error!(error = %e, message_id = message.message_id.as_deref().unwrap_or(""), "unreadable job message skipped");
                Ok(None)
            }
        }
    }

    async fn extend(&self, receipt: &Receipt, visibility: Duration) -> Result<(), QueueError> {
        self.set_visibility(receipt, visibility).await
    }

    async fn ack(&self, receipt: &Receipt) -> Result<(), QueueError> {
        self.client
            .delete_message()
            .queue_url(&self.url)
            .receipt_handle(&receipt.0)
            .send()
            .await
            .map(drop)
            .map_err(|e| receipt_error("deleting a job", &e))
    }

    async fn release(&self, receipt: &Receipt, delay: Duration) -> Result<(), QueueError> {
        self.set_visibility(receipt, delay).await
    }

    async fn dead_letter(&self, receipt: &Receipt, reason: &str) -> Result<(), QueueError> {
        tracing::warn!(reason, "job handed to the redrive policy for the dead-letter queue");
        self.set_visibility(receipt, Duration::ZERO).await
    }
}

/// A dead-letter queue read by the sweeper: each message looked at is hidden
/// for a while (it stays in the queue, for inspection and re-drive with
/// SQS's own tools).
#[async_trait]
impl DeadLetterQueue for SqsQueue {
    async fn next_dead_letter(&self, hide_for: Duration) -> Result<Option<Job>, QueueError> {
        // Messages that are not jobs are hidden and passed over.
        for _ in 0..10 {
            let output = self
                .client
                .receive_message()
                .queue_url(&self.url)
                .max_number_of_messages(1)
                .wait_time_seconds(0)
                .visibility_timeout(seconds(hide_for))
                .send()
                .await
                .map_err(|e| sdk_error("reading the dead-letter queue", &e))?;
            let Some(message) = output.messages.and_then(|m| m.into_iter().next()) else { return Ok(None) };
            match anb_job_json::decode(message.body.as_deref().unwrap_or_default().as_bytes()) {
                Ok(job) => return Ok(Some(job)),
                Err(error) => {
                    tracing::warn!(%error, message_id = message.message_id.as_deref().unwrap_or(""), "a dead letter that is not a job")
                }
            }
        }
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_round_up_to_whole_seconds_within_the_sqs_range() {
        assert_eq!(seconds(Duration::ZERO), 0);
        assert_eq!(seconds(Duration::from_millis(1500)), 2);
        assert_eq!(seconds(Duration::from_secs(1_000_000)), 43_200);
    }
}
