//! `[server]`: the listener, request limits and shutdown.
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::{HumanDuration, Problems};

/// `[server]` settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    /// Address to listen on; port 0 picks a free port (printed at start-up).
    pub listen: String,
    /// PEM certificate chain for TLS. Not served yet: terminate TLS in front of signet.
    pub tls_cert: Option<PathBuf>,
    /// PEM private key for TLS.
    pub tls_key: Option<PathBuf>,
    /// Serve plain HTTP on a non-loopback address (behind a TLS-terminating proxy).
    #[serde(default)]
    pub allow_plain_http: bool,
    /// Longest a request may take before it gets 503.
    #[serde(default = "default_request_timeout")]
    pub request_timeout: HumanDuration,
    /// How long in-flight requests may run after SIGTERM.
    #[serde(default = "default_shutdown_timeout")]
    pub shutdown_timeout: HumanDuration,
}

fn default_request_timeout() -> HumanDuration {
    HumanDuration::from_duration(Duration::from_secs(30))
}

fn default_shutdown_timeout() -> HumanDuration {
    HumanDuration::from_duration(Duration::from_secs(30))
}

impl ServerConfig {
    /// The parsed listen address (valid after `validate`).
    pub fn listen_addr(&self) -> Option<SocketAddr> {
        self.listen.parse().ok()
    }

    pub(super) fn validate(&self, problems: &mut Problems) {
        match self.listen_addr() {
            None => problems.push(
                "server.listen",
                "must be an IP address and port, like \"127.0.0.1:8420\"",
            ),
            Some(addr) if !addr.ip().is_loopback() && !self.allow_plain_http => problems.push(
                "server.listen",
                "plain HTTP is served on loopback only; put signet behind a TLS proxy and set \
                 allow_plain_http = true to listen elsewhere",
            ),
            Some(_) => {}
        }
        if self.tls_cert.is_some() || self.tls_key.is_some() {
            problems.push(
                "server.tls_cert",
                "TLS is not built into this version yet; terminate TLS in a proxy in front of signet",
            );
        }
        self.request_timeout.check(
            "server.request_timeout",
            Duration::from_secs(1),
            Duration::from_secs(600),
            problems,
        );
        self.shutdown_timeout.check(
            "server.shutdown_timeout",
            Duration::ZERO,
            Duration::from_secs(600),
            problems,
        );
    }
}
