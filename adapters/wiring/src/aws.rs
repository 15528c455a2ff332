//! [`Cloud`]: the AWS SDK's configuration (region, credentials, endpoint),
//! loaded once, by the first family that needs it, and never in a process
//! that uses no AWS service.

/// The AWS configuration of this process, loaded on first use.
#[cfg(feature = "aws")]
#[derive(Debug, Default)]
pub(crate) struct Cloud(tokio::sync::OnceCell<aws_config::SdkConfig>);

#[cfg(feature = "aws")]
impl Cloud {
    /// Nothing loaded yet.
    pub(crate) fn new() -> Self {
        Self::default()
    }

    /// The configuration, from the standard AWS chain.
    pub(crate) async fn config(&self) -> &aws_config::SdkConfig {
        self.0.get_or_init(anb_aws::sdk_config).await
    }
}

/// A build without AWS has nothing to load.
#[cfg(not(feature = "aws"))]
#[derive(Debug)]
pub(crate) struct Cloud;

#[cfg(not(feature = "aws"))]
impl Cloud {
    /// Nothing to load.
    pub(crate) fn new() -> Self {
        Self
    }
}
