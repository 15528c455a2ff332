//! [`AsgScaleInProtection`]: scale-in protection of this EC2 instance in its
//! Auto Scaling group, set while a job runs and cleared when idle, so that
//! a scale-in never picks a worker in the middle of a transcode.

use anb_domain::BackendError;
use anb_domain::ports::ScaleInProtection;
use async_trait::async_trait;

use crate::sdk_error;

/// This instance in its group, protected or not through the Auto Scaling API
/// (`autoscaling:SetInstanceProtection`). The instance and its group are
/// found on first use (and again after a failure), so that a process starts
/// even while the metadata service or the API do not answer.
#[derive(Debug)]
pub struct AsgScaleInProtection {
    client: aws_sdk_autoscaling::Client,
    instance: Option<String>,
    /// (group, instance), once found.
    found: tokio::sync::OnceCell<(String, String)>,
}

impl AsgScaleInProtection {
    /// The instance `instance` (default: this one, from the instance
    /// metadata service) in the group it belongs to
    /// (`autoscaling:DescribeAutoScalingInstances`).
    pub fn new(config: &aws_config::SdkConfig, instance: Option<String>) -> Self {
        Self { client: aws_sdk_autoscaling::Client::new(config), instance, found: tokio::sync::OnceCell::new() }
    }

    /// The group and the instance.
    async fn found(&self) -> Result<&(String, String), BackendError> {
        self.found
            .get_or_try_init(|| async {
                let instance = match &self.instance {
                    Some(id) => id.clone(),
                    None => this_instance().await?,
                };
                let found = self
                    .client
                    .describe_auto_scaling_instances()
                    .instance_ids(&instance)
                    .send()
                    .await
                    .map_err(|e| sdk_error("finding this instance's Auto Scaling group", &e))?;
                let group = found
                    .auto_scaling_instances()
                    .first()
                    .and_then(|i| i.auto_scaling_group_name())
                    .ok_or_else(|| BackendError::internal(format!("the instance {instance} is in no Auto Scaling group")))?
                    .to_owned();
                tracing::info!(%group, %instance, "scale-in protection: this instance found in its group");
                Ok((group, instance))
            })
            .await
    }
}

/// This instance's id, from the instance metadata service (IMDSv2).
async fn this_instance() -> Result<String, BackendError> {
    let imds = aws_config::imds::Client::builder().build();
    let id = imds
        .get("/latest/meta-data/instance-id")
        .await
        .map_err(|e| BackendError::unavailable(format!("the instance metadata service (is this an EC2 instance? ANB_INSTANCE_ID): {e}")))?;
    Ok(id.as_ref().to_owned())
}

#[async_trait]
impl ScaleInProtection for AsgScaleInProtection {
    async fn protect(&self, protected: bool) -> Result<(), BackendError> {
        let (group, instance) = self.found().await?;
        self.client
            .set_instance_protection()
            .auto_scaling_group_name(group)
            .instance_ids(instance)
            .protected_from_scale_in(protected)
            .send()
            .await
            .map_err(|e| sdk_error("setting the scale-in protection", &e))?;
        Ok(())
    }
}
