//! Where notifications may go. A `sink` is chosen by the API client, so without a policy it
//! would let any client make the gateway POST into the operator's own network (SSRF). Sinks must
//! resolve to public addresses; loopback and private ranges need explicit configuration.

use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::task::{Context, Poll};

use hyper_util::client::legacy::connect::dns::{GaiResolver, Name};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SinkPolicy {
    /// Development: `http://` and loopback addresses.
    pub allow_loopback: bool,
    /// Private, link-local and shared (CGNAT) ranges, for sinks inside the operator's network.
    pub allow_private: bool,
}

impl SinkPolicy {
    /// No restriction: for the gateway's own outgoing requests (its IdP, say), never for sinks.
    pub const ANY: SinkPolicy = SinkPolicy { allow_loopback: true, allow_private: true };

    pub fn allows(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(IpAddr::V6(v6)),
            v4 => v4,
        };
        if ip.is_unspecified() || ip.is_multicast() {
            return false;
        }
        if ip.is_loopback() {
            return self.allow_loopback;
        }
        let private = match ip {
            IpAddr::V4(v4) => {
                let [a, b, ..] = v4.octets();
                v4.is_private() || v4.is_link_local() || v4.is_broadcast() || (a == 100 && (64..128).contains(&b))
            }
            IpAddr::V6(v6) => {
                let first = v6.segments()[0];
                (first & 0xfe00) == 0xfc00 || (first & 0xffc0) == 0xfe80
            }
        };
        !private || self.allow_private
    }

    /// Checks a sink URL: scheme, and the addresses its host stands for now.
    pub async fn check(&self, sink: &str) -> Result<(), String> {
        let url = url::Url::parse(sink).map_err(|e| format!("sink is not a URL: {e}"))?;
        match url.scheme() {
            "https" => {}
            "http" if self.allow_loopback => {}
            _ => return Err("sink must be an https URL".into()),
        }
        let port = url.port_or_known_default().unwrap_or(443);
        let addrs: Vec<IpAddr> = match url.host() {
            Some(url::Host::Ipv4(ip)) => vec![IpAddr::V4(ip)],
            Some(url::Host::Ipv6(ip)) => vec![IpAddr::V6(ip)],
            Some(url::Host::Domain(name)) => {
                let lookup =
                    tokio::time::timeout(std::time::Duration::from_secs(5), tokio::net::lookup_host((name, port)))
                        .await
                        .map_err(|_| format!("sink host {name} did not resolve in time"))?
                        .map_err(|e| format!("sink host {name} does not resolve: {e}"))?;
                lookup.map(|a| a.ip()).collect()
            }
            None => return Err("sink has no host".into()),
        };
        if url.scheme() == "http" && !addrs.iter().all(IpAddr::is_loopback) {
            return Err("http sinks are accepted on loopback only".into());
        }
        if addrs.iter().any(|ip| self.allows(*ip)) {
            Ok(())
        } else {
            Err("sink resolves to loopback, private or link-local addresses only".into())
        }
    }
}

/// A resolver that drops the addresses the policy refuses, so that a name cannot be re-pointed
/// at an internal address between the subscription and the delivery.
#[derive(Clone)]
pub struct FilteringResolver {
    inner: GaiResolver,
    policy: SinkPolicy,
}

impl FilteringResolver {
    pub fn new(policy: SinkPolicy) -> Self {
        FilteringResolver { inner: GaiResolver::new(), policy }
    }
}

impl tower_service::Service<Name> for FilteringResolver {
    type Response = std::vec::IntoIter<SocketAddr>;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = io::Result<Self::Response>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, name: Name) -> Self::Future {
        let policy = self.policy;
        let lookup = self.inner.call(name);
        Box::pin(async move {
            let allowed: Vec<SocketAddr> = lookup.await?.filter(|a| policy.allows(a.ip())).collect();
            if allowed.is_empty() {
                return Err(io::Error::new(io::ErrorKind::PermissionDenied, "no address allowed by the sink policy"));
            }
            Ok(allowed.into_iter())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STRICT: SinkPolicy = SinkPolicy { allow_loopback: false, allow_private: false };

    #[test]
    fn internal_ranges_are_refused_unless_allowed() {
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "::1",
            "fd00::1",
            "fe80::1",
            "::ffff:10.0.0.1",
            "0.0.0.0",
        ] {
            assert!(!STRICT.allows(ip.parse().unwrap()), "{ip}");
        }
        for ip in ["203.0.113.7", "2001:db8::1", "8.8.8.8"] {
            assert!(STRICT.allows(ip.parse().unwrap()), "{ip}");
        }
        let dev = SinkPolicy { allow_loopback: true, allow_private: false };
        assert!(dev.allows("127.0.0.1".parse().unwrap()) && !dev.allows("10.0.0.1".parse().unwrap()));
        assert!(SinkPolicy::ANY.allows("10.0.0.1".parse().unwrap()));
    }

    #[tokio::test]
    async fn sinks_are_https_to_public_addresses() {
        assert!(STRICT.check("https://203.0.113.7/hook").await.is_ok());
        assert!(STRICT.check("http://203.0.113.7/hook").await.is_err());
        assert!(STRICT.check("https://127.0.0.1/hook").await.is_err());
        assert!(STRICT.check("https://169.254.169.254/latest/meta-data").await.is_err());
        assert!(STRICT.check("https://localhost/hook").await.is_err());
        let dev = SinkPolicy { allow_loopback: true, allow_private: false };
        assert!(dev.check("http://127.0.0.1:9000/hook").await.is_ok());
        assert!(dev.check("http://[::1]:9000/hook").await.is_ok());
        assert!(dev.check("http://203.0.113.7/hook").await.is_err());
        assert!(dev.check("ftp://203.0.113.7/").await.is_err());
    }
}
