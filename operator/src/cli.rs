//! The command line. Every flag has the default the Helm chart and the
//! kustomize base rely on; the environment fallbacks let a Deployment set
//! them from the downward API.

use std::net::SocketAddr;
use std::time::Duration;

use clap::{ArgAction, Parser};

use crate::config::DEFAULT_PROCESSOR_IMAGE;

/// Reconciles `StreamPipeline` resources into processor Deployments.
#[derive(Clone, Debug, Parser)]
#[command(name = "tributary-operator", version, about)]
pub struct Args {
    /// Watch only this namespace (default: all namespaces).
    #[arg(long, env = "TRIBUTARY_WATCH_NAMESPACE")]
    pub namespace: Option<String>,
    /// Serve /metrics, /healthz and /readyz here.
    #[arg(
        long,
        env = "TRIBUTARY_OPERATOR_METRICS_ADDR",
        default_value = "0.0.0.0:8080"
    )]
    pub metrics_addr: SocketAddr,
    /// Run the controller only while holding the Lease.
    #[arg(long, default_value_t = true, action = ArgAction::Set)]
    pub leader_elect: bool,
    /// Name of the leader-election Lease.
    #[arg(long, default_value = "tributary-operator")]
    pub lease_name: String,
    /// Namespace of the leader-election Lease.
    #[arg(long, env = "POD_NAMESPACE", default_value = "tributary-system")]
    pub lease_namespace: String,
    /// How long a Lease holds without renewal; renewed every third of it.
    #[arg(long, default_value = "15s", value_parser = humantime::parse_duration)]
    pub lease_duration: Duration,
    /// How often a standby tries the Lease (at most a third of the lease
    /// duration). After the leader dies without releasing it, a standby
    /// takes over at most this long after the Lease expires, so within
    /// `lease-duration + retry-period` of the leader's last renewal.
    #[arg(long, default_value = "2s", value_parser = humantime::parse_duration)]
    pub retry_period: Duration,
    /// This replica's identity in the Lease (default: `<hostname>-<pid>`).
    #[arg(long, env = "POD_NAME")]
    pub identity: Option<String>,
    /// Processor image when `spec.processor.image` is absent.
    #[arg(long, env = "TRIBUTARY_PROCESSOR_IMAGE", default_value = DEFAULT_PROCESSOR_IMAGE)]
    pub processor_image: String,
}

impl Args {
    /// How often a standby polls the Lease: `--retry-period`, capped at a
    /// third of the lease duration (the leader's renewal interval) and at
    /// least 100 ms.
    #[must_use]
    pub fn standby_poll(&self) -> Duration {
        self.retry_period
            .min(self.lease_duration / 3)
            .max(Duration::from_millis(100))
    }

    /// The identity to hold the Lease under.
    #[must_use]
    pub fn identity(&self) -> String {
        self.identity.clone().unwrap_or_else(|| {
            let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
                .ok()
                .or_else(|| std::env::var("HOSTNAME").ok())
                .map_or_else(|| "tributary-operator".to_owned(), |h| h.trim().to_owned());
            format!("{host}-{}", std::process::id())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_match_the_contract() {
        let a = Args::try_parse_from(["tributary-operator"]).unwrap();
        assert_eq!(a.metrics_addr.to_string(), "0.0.0.0:8080");
        assert!(a.leader_elect);
        assert_eq!(a.lease_name, "tributary-operator");
        assert_eq!(a.lease_duration, Duration::from_secs(15));
        assert_eq!(a.retry_period, Duration::from_secs(2));
        assert_eq!(a.standby_poll(), Duration::from_secs(2));
        assert_eq!(a.processor_image, DEFAULT_PROCESSOR_IMAGE);
    }

    #[test]
    fn leader_elect_takes_a_value() {
        let a = Args::try_parse_from([
            "tributary-operator",
            "--leader-elect",
            "false",
            "--lease-duration",
            "3s",
        ])
        .unwrap();
        assert!(!a.leader_elect);
        assert_eq!(a.lease_duration, Duration::from_secs(3));
        assert_eq!(
            a.standby_poll(),
            Duration::from_secs(1),
            "capped at a third"
        );
    }

    /// The standby's poll bounds the takeover after a leader dies: it must
    /// never be longer than the leader's renewal interval.
    #[test]
    fn the_standby_polls_at_most_every_third_of_the_lease() {
        for (lease, retry, want) in [
            ("15s", "2s", 2_000),
            ("15s", "10s", 5_000),
            ("6s", "500ms", 500),
            ("1s", "1ms", 100),
        ] {
            let a = Args::try_parse_from([
                "tributary-operator",
                "--lease-duration",
                lease,
                "--retry-period",
                retry,
            ])
            .unwrap();
            assert_eq!(
                a.standby_poll(),
                Duration::from_millis(want),
                "{lease} {retry}"
            );
        }
    }
}
