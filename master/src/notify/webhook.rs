//! Webhook deliveries: a JSON POST signed with HMAC-SHA256 over `<timestamp>.<body>`, through
//! a client that resolves names itself and refuses link-local and cloud metadata addresses
//! (unless allowed), uses no proxy, follows no redirects and gives up after [`TIMEOUT`].
//! Errors are logged and stored without the URL, which may itself be a credential.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hmac::{Hmac, Mac};
use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use sha2::Sha256;

use super::channel::{check_url, forbidden, is_metadata_name};

/// How long one delivery may take, connection included.
pub const TIMEOUT: Duration = Duration::from_secs(10);

/// Sends webhook deliveries.
#[derive(Debug, Clone)]
pub struct Webhooks {
    client: reqwest::Client,
    allow_link_local: bool,
}

/// The headers of a delivery besides the channel's own.
#[derive(Debug)]
pub struct Delivery<'a> {
    pub url: &'a str,
    pub headers: &'a std::collections::BTreeMap<String, String>,
    pub secret: &'a str,
    pub body: &'a [u8],
    pub run_id: &'a str,
    pub delivery_id: i64,
    pub outcome: &'a str,
}

impl Webhooks {
    pub fn new(allow_link_local: bool) -> Result<Self, reqwest::Error> {
        let client = reqwest::Client::builder()
            .dns_resolver(Arc::new(Guarded { allow_link_local }))
            .redirect(reqwest::redirect::Policy::none())
            // A proxy would resolve the name itself, past the guard.
            .no_proxy()
            .timeout(TIMEOUT)
            .connect_timeout(TIMEOUT / 2)
            .user_agent(concat!("cronfleet/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Self {
            client,
            allow_link_local,
        })
    }

    /// Posts one delivery; `Ok` only for a 2xx answer.
    pub async fn send(&self, delivery: &Delivery<'_>) -> Result<String, String> {
        check_url(delivery.url, self.allow_link_local).map_err(|e| e.to_string())?;
        let timestamp = chrono::Utc::now().timestamp().to_string();
        let mut request = self
            .client
            .post(delivery.url)
            .header("content-type", "application/json")
            .header("idempotency-key", delivery.run_id)
            .header("x-cronfleet-run-id", delivery.run_id)
            .header("x-cronfleet-delivery", delivery.delivery_id.to_string())
            .header("x-cronfleet-outcome", delivery.outcome)
            .header("x-cronfleet-timestamp", &timestamp)
            .header(
                "x-cronfleet-signature",
                format!(
                    "sha256={}",
                    sign(delivery.secret, &timestamp, delivery.body)
                ),
            );
        for (name, value) in delivery.headers {
            request = request.header(name, value);
        }
        let answer = request
            .body(delivery.body.to_vec())
            .send()
            .await
            .map_err(|e| describe(&e.without_url()))?;
        let status = answer.status();
        if status.is_success() {
            Ok(format!("HTTP {}", status.as_u16()))
        } else {
            Err(format!("HTTP {status}"))
        }
    }
}

/// The hex HMAC-SHA256 of `<timestamp>.<body>` under `secret`.
pub fn sign(secret: &str, timestamp: &str, body: &[u8]) -> String {
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret.as_bytes()) else {
        return String::new();
    };
    mac.update(timestamp.as_bytes());
    mac.update(b".");
    mac.update(body);
    mac.finalize()
        .into_bytes()
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

/// A transport error in words, with its causes (reqwest's own text stops at the first).
fn describe(error: &reqwest::Error) -> String {
    let mut text = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// Resolves with the system resolver and drops addresses webhooks may not reach, so a name
/// that points (or is re-pointed) at one cannot be used to reach it.
#[derive(Debug)]
struct Guarded {
    allow_link_local: bool,
}

impl Resolve for Guarded {
    fn resolve(&self, name: Name) -> Resolving {
        let allow = self.allow_link_local;
        Box::pin(async move {
            let host = name.as_str().to_owned();
            if !allow && is_metadata_name(&host) {
                return Err(format!(
                    "{host} is a cloud metadata name, which webhooks may not call"
                )
                .into());
            }
            let found: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0))
                .await?
                .filter(|address| allow || !forbidden(address.ip()))
                .collect();
            if found.is_empty() {
                return Err(format!(
                    "{host} resolves to no address webhooks may call (link-local and metadata addresses are refused)"
                )
                .into());
            }
            let addrs: Addrs = Box::new(found.into_iter());
            Ok(addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signature_is_the_hmac_of_timestamp_dot_body() {
        // As any receiver computes it: Python's hmac.new(secret, b"<ts>.<body>", sha256).
        assert_eq!(
            sign("secret-secret-secret", "1700000000", br#"{"id":"r1"}"#),
            "c3d43cebd02b525db5e53cd17f1e4e9fef907e562a2376bfeb526754d0eaf83f"
        );
    }
}
