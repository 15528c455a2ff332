//! [`Checked`]: the configuration and the role of the process, checked as a
//! whole, once, before anything connects. [`Services::build`] takes nothing
//! else, so an unchecked configuration cannot be wired. Each port family
//! checks its own settings (`storage`, `queues`, `cache`, `secrets`,
//! `mail`); what spans families is checked here.
//!
//! [`Services::build`]: crate::Services::build

use std::net::SocketAddr;

use crate::config::CommonConfig;
use crate::{Role, StartupError, cache, queues, secrets, storage};

/// A configuration that passed every check.
#[derive(Debug, Clone)]
pub struct Checked {
    common: CommonConfig,
    role: Role,
}

impl Checked {
    /// Checks `common` for a process that is `role`.
    ///
    /// # Errors
    /// [`StartupError::Config`] naming the setting to fix.
    pub fn new(common: CommonConfig, role: Role) -> Result<Self, StartupError> {
        storage::check(&common)?;
        queues::check(&common)?;
        cache::check(&common)?;
        secrets::check(&common)?;
        if common.scale_in_protection && !cfg!(feature = "aws") {
            return Err(not_built("ANB_SCALE_IN_PROTECTION", "aws"));
        }
        if common.emf_file.is_some() && common.metrics != crate::config::MetricsKind::Emf {
            return Err(StartupError::Config("ANB_EMF_FILE (--emf-file) is where EMF lines go: it needs ANB_METRICS=emf".into()));
        }
        if let Role::Web(web) = &role {
            web.mail.check()?;
            if common.shared_database() && common.jwt_secret.is_none() && common.jwt_secret_id.is_none() {
                return Err(StartupError::Config(
                    "ANB_JWT_SECRET (--jwt-secret) or ANB_JWT_SECRET_ID is required with a shared database: every web server must \
                     verify the tokens the others sign"
                        .into(),
                ));
            }
        }
        if role.workers() > 0 && !cfg!(feature = "gstreamer") {
            return Err(StartupError::Config(
                "this build has no transcoder (built without GStreamer): set ANB_WORKERS=0 and run anb-worker hosts".into(),
            ));
        }
        Ok(Self { common, role })
    }

    /// The settings.
    pub fn common(&self) -> &CommonConfig {
        &self.common
    }

    /// What the process is.
    pub fn role(&self) -> &Role {
        &self.role
    }

    /// A web server bound to `addr`: with no `ANB_PUBLIC_BASE_URL`, the links
    /// in its messages name that address (its port, when 0 was asked).
    #[must_use]
    pub fn bound_at(mut self, addr: SocketAddr) -> Self {
        if let Role::Web(web) = &mut self.role
            && web.public_base_url.is_none()
        {
            web.mail.public_base_url = format!("http://{addr}");
        }
        self
    }
}

/// A setting that must be set, and not blank, or the refusal `missing`.
pub(crate) fn required<'a>(value: Option<&'a str>, missing: &str) -> Result<&'a str, StartupError> {
    value.filter(|v| !v.trim().is_empty()).ok_or_else(|| StartupError::Config(missing.into()))
}

/// The refusal of a setting that needs a technology this build left out.
pub(crate) fn not_built(setting: &str, feature: &str) -> StartupError {
    StartupError::Config(format!(
        "{setting}: this build has no {feature} (built without anb-wiring's `{feature}` feature; the Debian package and a plain \
         `cargo build` have every technology)"
    ))
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Settings {
        #[command(flatten)]
        common: CommonConfig,
    }

    fn settings(args: &[&str]) -> CommonConfig {
        Settings::try_parse_from(std::iter::once("anb").chain(args.iter().copied())).unwrap().common
    }

    fn refusal(args: &[&str], role: Role) -> String {
        Checked::new(settings(args), role).err().map(|e| e.to_string()).unwrap_or_default()
    }

    const WORKER: Role = Role::Worker { workers: 0 };

    #[test]
    fn each_family_names_the_setting_it_misses() {
        assert!(refusal(&["--storage", "s3"], WORKER).contains("ANB_S3_BUCKET"));
        assert!(refusal(&["--queue", "sqs"], WORKER).contains("ANB_SQS_QUEUE_URL"));
        assert!(refusal(&["--queue", "rabbitmq"], WORKER).contains("ANB_AMQP_URL"));
        assert!(refusal(&["--queue", "rabbitmq", "--amqp-url", "http://x"], WORKER).contains("ANB_AMQP_URL:"));
        assert!(refusal(&["--queue", "kafka", "--kafka-brokers", " "], WORKER).contains("ANB_KAFKA_BROKERS"));
        assert!(refusal(&["--cache", "redis"], WORKER).contains("ANB_REDIS_URL"));
        assert!(refusal(&["--jwt-secret", "short"], WORKER).contains("at least 32"));
        assert!(refusal(&["--database-url", "postgres://h/db", "--database-secret", "s"], WORKER).contains("not both"));
        assert!(refusal(&["--emf-file", "/var/log/anb/m.log"], WORKER).contains("needs ANB_METRICS=emf"));
        let keyring = "needs a keyring key of its own";
        assert!(refusal(&["--jwt-secret-id", "arn:jwt"], WORKER).contains(keyring));
        assert!(!refusal(&["--jwt-secret-id", "arn:jwt", "--keyring-secret-id", "arn:keyring"], WORKER).contains(keyring));
        assert!(refusal(&["--jwt-previous-secret", "an-old-key-of-at-least-32-characters"], WORKER).contains("set both"));
    }

    #[test]
    fn a_good_configuration_passes_and_keeps_what_it_was_given() {
        let checked = Checked::new(settings(&["--queue", "kafka", "--kafka-brokers", "k:9092"]), WORKER).unwrap();
        assert_eq!(checked.common().kafka_brokers.as_deref(), Some("k:9092"));
        assert_eq!(checked.role(), &WORKER);
    }

    #[test]
    fn a_technology_left_out_of_the_build_is_refused_by_name() {
        let error = not_built("ANB_QUEUE=kafka", "kafka").to_string();
        assert!(error.starts_with("ANB_QUEUE=kafka: this build has no kafka"), "{error}");
        assert!(error.contains("`kafka` feature"), "{error}");
    }
}
