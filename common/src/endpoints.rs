//! Fail-over between etcd members.
//!
//! The etcd client spreads requests over every endpoint it was given, and keeps sending some of
//! them to a member that is down (each fails with a connect error) or cut off from the leader.
//! [`EndpointGuard`] asks every member for its status twice a second and keeps the client's
//! endpoint set to the members that answer and know a leader, so requests move to the live
//! members within about a second of a member's death, and a member that comes back is used
//! again. When no member passes, every endpoint is kept: during an election nobody knows a
//! leader for a moment, and that is no reason to stop trying them.

use std::time::Duration;

use etcd_client::{Client, ConnectOptions};
use tokio::task::{JoinHandle, JoinSet};

/// How often every member is asked for its status.
pub const PROBE_EVERY: Duration = Duration::from_millis(500);

/// How long a member may take to answer before it counts as down.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(1);

/// Keeps a client's endpoints to the etcd members that work.
pub struct EndpointGuard {
    client: Client,
    options: ConnectOptions,
    /// Each endpoint as the client knows it (with its scheme), whether the client uses it now,
    /// and a client of its own for the probe.
    members: Vec<Member>,
}

struct Member {
    uri: String,
    active: bool,
    probe: Option<Client>,
}

impl std::fmt::Debug for EndpointGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EndpointGuard")
            .field(
                "members",
                &self.members.iter().map(|m| &m.uri).collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

impl EndpointGuard {
    /// Guards `client`, which was connected to `endpoints` (over TLS when `tls`); probes go
    /// out with `options`, whose timeout should be [`PROBE_TIMEOUT`]. With a single endpoint
    /// there is nothing to fail over to, and the task ends at once.
    pub fn spawn(
        endpoints: &[String],
        tls: bool,
        options: ConnectOptions,
        client: Client,
    ) -> JoinHandle<()> {
        let members = endpoints
            .iter()
            .map(|endpoint| Member {
                uri: with_scheme(endpoint, tls),
                active: true,
                probe: None,
            })
            .collect();
        let guard = Self {
            client,
            options,
            members,
        };
        tokio::spawn(guard.run())
    }

    async fn run(mut self) {
        if self.members.len() < 2 {
            return;
        }
        loop {
            tokio::time::sleep(PROBE_EVERY).await;
            let healthy = self.probe().await;
            let none = !healthy.iter().any(|ok| *ok);
            for (member, ok) in self.members.iter_mut().zip(healthy) {
                let wanted = ok || none;
                if wanted == member.active {
                    continue;
                }
                let changed = if wanted {
                    self.client.add_endpoint(&member.uri).await
                } else {
                    self.client.remove_endpoint(&member.uri).await
                };
                match changed {
                    Ok(()) if wanted => {
                        tracing::info!(endpoint = %member.uri, "etcd member answers again; using it");
                    }
                    Ok(()) => {
                        tracing::warn!(endpoint = %member.uri, "etcd member down or without a leader; sending requests to the others");
                    }
                    Err(e) => {
                        tracing::warn!(endpoint = %member.uri, error = %e, "could not change the etcd endpoints");
                        continue;
                    }
                }
                member.active = wanted;
            }
        }
    }

    /// Whether each member answered a status request in time and knows a leader.
    async fn probe(&mut self) -> Vec<bool> {
        let mut probes = JoinSet::new();
        for (index, member) in self.members.iter_mut().enumerate() {
            if member.probe.is_none() {
                member.probe = Client::connect([&member.uri], Some(self.options.clone()))
                    .await
                    .ok();
            }
            if let Some(mut probe) = member.probe.clone() {
                probes.spawn(async move {
                    let status = tokio::time::timeout(PROBE_TIMEOUT, probe.status()).await;
                    (index, matches!(status, Ok(Ok(s)) if s.leader() != 0))
                });
            }
        }
        let mut healthy = vec![false; self.members.len()];
        while let Some(answer) = probes.join_next().await {
            if let Ok((index, ok)) = answer {
                healthy[index] = ok;
            }
        }
        healthy
    }
}

/// The endpoint as the client keys it: with the scheme it adds when one is missing.
fn with_scheme(endpoint: &str, tls: bool) -> String {
    if endpoint.contains("://") {
        endpoint.to_owned()
    } else if tls {
        format!("https://{endpoint}")
    } else {
        format!("http://{endpoint}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_without_a_scheme_get_the_one_the_client_adds() {
        assert_eq!(
            with_scheme("127.0.0.1:2379", false),
            "http://127.0.0.1:2379"
        );
        assert_eq!(with_scheme("etcd:2379", true), "https://etcd:2379");
        assert_eq!(with_scheme("https://etcd:2379", false), "https://etcd:2379");
    }
}
