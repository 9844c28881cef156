//! Where notifications may go. A `sink` is chosen by the API client, so without a policy it
//! would let any client make the gateway POST into the operator's own network (SSRF). Sinks must
//! resolve to public addresses; loopback and private ranges need explicit configuration, and
//! the other special-purpose ranges are never sinks (see [`ranges`]).

use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::task::{Context, Poll};

use hyper_util::client::legacy::connect::dns::{GaiResolver, Name};

mod ranges;

pub use ranges::{AddressClass, classify};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SinkPolicy {
    /// Development: `http://` and loopback addresses.
    pub allow_loopback: bool,
    /// Private, link-local and shared (CGNAT) ranges, for sinks inside the operator's network.
    pub allow_private: bool,
    /// The other special-purpose ranges: only for [`SinkPolicy::ANY`], never from configuration.
    pub allow_reserved: bool,
}

impl SinkPolicy {
    /// No restriction: for the gateway's own outgoing requests (its own relay, say), never for
    /// sinks a client chose.
    pub const ANY: SinkPolicy = SinkPolicy { allow_loopback: true, allow_private: true, allow_reserved: true };

    pub fn allows(&self, ip: IpAddr) -> bool {
        match ranges::classify(ip) {
            AddressClass::Public => true,
            AddressClass::Loopback => self.allow_loopback,
            AddressClass::Private => self.allow_private,
            AddressClass::Reserved => self.allow_reserved,
        }
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
        if url.scheme() == "http" && !addrs.iter().all(|ip| classify(*ip) == AddressClass::Loopback) {
            return Err("http sinks are accepted on loopback only".into());
        }
        if addrs.iter().any(|ip| self.allows(*ip)) {
            Ok(())
        } else {
            Err("sink resolves to no public address (only loopback, private or special-purpose ones)".into())
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
    use AddressClass::{Loopback, Private, Public, Reserved};

    const STRICT: SinkPolicy = SinkPolicy { allow_loopback: false, allow_private: false, allow_reserved: false };
    const DEV: SinkPolicy = SinkPolicy { allow_loopback: true, ..STRICT };
    const INTERNAL: SinkPolicy = SinkPolicy { allow_private: true, ..STRICT };

    /// One row per IANA special-purpose range (IPv4 and IPv6 registries), per IPv4-embedding
    /// form with the embedded addresses that matter, and the public addresses at their edges.
    const TABLE: &[(&str, AddressClass, &str)] = &[
        ("0.0.0.0", Reserved, "this host"),
        ("0.1.2.3", Reserved, "this network 0/8"),
        ("10.1.2.3", Private, "private 10/8"),
        ("100.64.0.1", Private, "shared CGNAT 100.64/10"),
        ("100.127.255.254", Private, "shared CGNAT, top"),
        ("127.0.0.1", Loopback, "loopback"),
        ("127.255.0.1", Loopback, "loopback 127/8"),
        ("169.254.169.254", Private, "link-local, cloud metadata"),
        ("172.16.0.1", Private, "private 172.16/12"),
        ("172.31.255.255", Private, "private 172.16/12, top"),
        ("192.0.0.9", Reserved, "IETF protocol assignments 192.0.0/24 (PCP anycast)"),
        ("192.0.0.170", Reserved, "NAT64 discovery 192.0.0.170"),
        ("192.0.2.1", Reserved, "TEST-NET-1"),
        ("192.31.196.1", Reserved, "AS112-v4"),
        ("192.52.193.1", Reserved, "AMT"),
        ("192.88.99.1", Reserved, "6to4 relay anycast"),
        ("192.168.1.1", Private, "private 192.168/16"),
        ("192.175.48.1", Reserved, "direct delegation AS112"),
        ("198.18.0.1", Reserved, "benchmarking 198.18/15"),
        ("198.19.255.255", Reserved, "benchmarking, top"),
        ("198.51.100.7", Reserved, "TEST-NET-2"),
        ("203.0.113.7", Reserved, "TEST-NET-3"),
        ("224.0.0.1", Reserved, "multicast"),
        ("239.255.255.250", Reserved, "multicast, SSDP"),
        ("240.0.0.1", Reserved, "reserved 240/4"),
        ("255.255.255.255", Reserved, "limited broadcast"),
        ("8.8.8.8", Public, "public"),
        ("1.1.1.1", Public, "public"),
        ("100.63.255.255", Public, "just below CGNAT"),
        ("100.128.0.0", Public, "just above CGNAT"),
        ("172.32.0.1", Public, "just above 172.16/12"),
        ("198.17.255.255", Public, "just below benchmarking"),
        ("198.20.0.0", Public, "just above benchmarking"),
        ("223.255.255.255", Public, "just below multicast"),
        ("::", Reserved, "unspecified"),
        ("::1", Loopback, "loopback"),
        ("::ffff:10.0.0.1", Private, "IPv4-mapped private"),
        ("::ffff:127.0.0.1", Loopback, "IPv4-mapped loopback"),
        ("::ffff:198.18.0.1", Reserved, "IPv4-mapped benchmarking"),
        ("::ffff:8.8.8.8", Public, "IPv4-mapped public"),
        ("::a9fe:a9fe", Private, "IPv4-compatible link-local"),
        ("::7f00:1", Loopback, "IPv4-compatible loopback"),
        ("::2", Reserved, "IPv4-compatible 0.0.0.2"),
        ("64:ff9b::a9fe:a9fe", Private, "NAT64 well-known, metadata"),
        ("64:ff9b::a00:1", Private, "NAT64 well-known, 10.0.0.1"),
        ("64:ff9b::7f00:1", Loopback, "NAT64 well-known, loopback"),
        ("64:ff9b::c612:1", Reserved, "NAT64 well-known, benchmarking"),
        ("64:ff9b::808:808", Public, "NAT64 well-known, public"),
        ("64:ff9b:1::808:808", Private, "NAT64 local-use 64:ff9b:1::/48"),
        ("64:ff9b:1::a9fe:a9fe", Private, "NAT64 local-use, metadata"),
        ("64:ff9b:1::7f00:1", Reserved, "NAT64 local-use, loopback"),
        ("2002:a9fe:a9fe::1", Private, "6to4 of link-local"),
        ("2002:7f00:1::1", Loopback, "6to4 of loopback"),
        ("2002:c000:204::1", Reserved, "6to4 of TEST-NET-1"),
        ("2002:808:808::1", Public, "6to4 of public"),
        ("2001:0:4136:e378:8000:63bf:5601:5601", Private, "Teredo, client 169.254.169.254 (obfuscated)"),
        ("2001:0:4136:e378:8000:63bf:80ff:fffe", Loopback, "Teredo, client 127.0.0.1 (obfuscated)"),
        ("2001:0:a00:1:8000:63bf:f7f7:f7f7", Private, "Teredo, server 10.0.0.1"),
        ("2001:0:4136:e378:8000:63bf:f7f7:f7f7", Public, "Teredo, public server and client 8.8.8.8"),
        ("100::1", Reserved, "discard-only 100::/64"),
        ("100:0:0:1::1", Reserved, "dummy prefix 100:0:0:1::/64"),
        ("2001:1::1", Reserved, "IETF protocol assignments 2001::/23 (PCP anycast)"),
        ("2001:2::1", Reserved, "benchmarking 2001:2::/48"),
        ("2001:3::1", Reserved, "AMT 2001:3::/32"),
        ("2001:4:112::1", Reserved, "AS112-v6"),
        ("2001:20::1", Reserved, "ORCHIDv2"),
        ("2001:30::1", Reserved, "drone remote ID"),
        ("2001:db8::1", Reserved, "documentation 2001:db8::/32"),
        ("2620:4f:8000::1", Reserved, "direct delegation AS112"),
        ("3fff::1", Reserved, "documentation 3fff::/20"),
        ("5f00::1", Reserved, "SRv6 SIDs"),
        ("fc00::1", Private, "unique-local fc00::/7"),
        ("fd00::1", Private, "unique-local"),
        ("fe80::1", Private, "link-local"),
        ("fec0::1", Private, "site-local (deprecated)"),
        ("ff02::1", Reserved, "multicast"),
        ("1::1", Reserved, "reserved by the IETF, outside 2000::/3"),
        ("4000::1", Reserved, "unallocated, outside 2000::/3"),
        ("2606:4700:4700::1111", Public, "public"),
        ("2a00:1450:4001::1", Public, "public"),
        ("2001:200::1", Public, "public, just above 2001::/23"),
        ("2003::1", Public, "public, just above 6to4"),
    ];

    #[test]
    fn every_special_purpose_range_is_classified() {
        for (ip, class, range) in TABLE {
            assert_eq!(classify(ip.parse().unwrap()), *class, "{ip} ({range})");
        }
    }

    #[test]
    fn each_class_needs_its_permission() {
        for (ip, class, range) in TABLE {
            let ip: IpAddr = ip.parse().unwrap();
            let allowed = |policy: SinkPolicy| policy.allows(ip);
            assert_eq!(allowed(STRICT), *class == Public, "strict, {ip} ({range})");
            assert_eq!(allowed(DEV), matches!(class, Public | Loopback), "loopback allowed, {ip} ({range})");
            assert_eq!(allowed(INTERNAL), matches!(class, Public | Private), "private allowed, {ip} ({range})");
            assert!(allowed(SinkPolicy::ANY), "any, {ip} ({range})");
        }
    }

    #[tokio::test]
    async fn sinks_are_https_to_public_addresses() {
        assert!(STRICT.check("https://8.8.8.8/hook").await.is_ok());
        assert!(STRICT.check("https://[2606:4700:4700::1111]/hook").await.is_ok());
        assert!(STRICT.check("http://8.8.8.8/hook").await.is_err());
        assert!(STRICT.check("https://127.0.0.1/hook").await.is_err());
        assert!(STRICT.check("https://169.254.169.254/latest/meta-data").await.is_err());
        assert!(STRICT.check("https://localhost/hook").await.is_err());
        // The literals that used to pass the filter.
        for sink in [
            "https://[64:ff9b::a9fe:a9fe]/",
            "https://[64:ff9b::a00:1]/",
            "https://[::a9fe:a9fe]/",
            "https://[2002:a9fe:a9fe::1]/",
            "https://198.18.0.1/",
        ] {
            assert!(STRICT.check(sink).await.is_err(), "{sink}");
        }
        assert!(DEV.check("http://127.0.0.1:9000/hook").await.is_ok());
        assert!(DEV.check("http://[::1]:9000/hook").await.is_ok());
        assert!(DEV.check("http://8.8.8.8/hook").await.is_err());
        assert!(DEV.check("ftp://8.8.8.8/").await.is_err());
    }

    /// A name is checked again when the delivery connects: every address it resolves to then.
    #[tokio::test]
    async fn the_resolver_drops_what_the_policy_refuses() {
        use std::str::FromStr;
        use tower_service::Service;
        let name = || Name::from_str("localhost").unwrap();
        let refused = FilteringResolver::new(STRICT).call(name()).await;
        assert_eq!(refused.err().map(|e| e.kind()), Some(io::ErrorKind::PermissionDenied));
        let allowed: Vec<SocketAddr> = FilteringResolver::new(DEV).call(name()).await.unwrap().collect();
        assert!(!allowed.is_empty() && allowed.iter().all(|a| classify(a.ip()) == Loopback), "{allowed:?}");
    }
}
