//! The SSRF guard: where a webhook may be sent. A target must be `https` and every address
//! its host resolves to must be public — not loopback, private, link-local, CGNAT,
//! multicast, reserved or a cloud metadata address, IPv4 and IPv6 alike (IPv4 embedded in
//! IPv6 is judged as the IPv4 it carries). Checked at registration and again at every
//! delivery by the HTTP client's own resolver, so the address checked is the address
//! connected to (DNS rebinding cannot slip between them). `--insecure-webhook-targets`
//! lifts all of it, for local development and tests.

use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;

use reqwest::Url;

/// Why a target URL is refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TargetError {
    /// Not an absolute http(s) URL with a host.
    #[error("targetUrl must be an absolute https URL: {0}")]
    Invalid(String),
    /// `http` (or another scheme) while only https is allowed.
    #[error("targetUrl must use https")]
    NotHttps,
    /// The host did not resolve.
    #[error("the host of targetUrl does not resolve: {0}")]
    Unresolvable(String),
    /// The host is, or resolves to, an address that is not public.
    #[error("targetUrl resolves to {0}, which is not a public address")]
    Forbidden(IpAddr),
    /// A user name or password in the URL: it would be stored and shown back as the target.
    #[error(
        "targetUrl must not carry a user name or password; receivers authenticate freshet by the signature"
    )]
    Credentials,
    /// Port 0, which nothing listens on.
    #[error("targetUrl's port must be 1-65535")]
    PortZero,
}

/// Looks up a host's addresses. The system resolver in production; tests may swap in one
/// whose answers change (to play DNS rebinding).
pub trait Lookup: Send + Sync + 'static {
    /// The addresses of `host`.
    fn lookup(
        &self,
        host: String,
    ) -> Pin<Box<dyn Future<Output = std::io::Result<Vec<IpAddr>>> + Send>>;
}

/// The operating system's resolver.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemLookup;

impl Lookup for SystemLookup {
    fn lookup(
        &self,
        host: String,
    ) -> Pin<Box<dyn Future<Output = std::io::Result<Vec<IpAddr>>> + Send>> {
        Box::pin(async move {
            Ok(tokio::net::lookup_host((host.as_str(), 0))
                .await?
                .map(|a| a.ip())
                .collect())
        })
    }
}

/// What targets are allowed, and how hosts are looked up.
#[derive(Clone)]
pub struct TargetPolicy {
    insecure: bool,
    lookup: Arc<dyn Lookup>,
}

impl std::fmt::Debug for TargetPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TargetPolicy")
            .field("insecure", &self.insecure)
            .finish_non_exhaustive()
    }
}

impl Default for TargetPolicy {
    fn default() -> Self {
        Self::secure()
    }
}

impl TargetPolicy {
    /// https only, public addresses only, the system resolver.
    pub fn secure() -> Self {
        Self {
            insecure: false,
            lookup: Arc::new(SystemLookup),
        }
    }

    /// Anything goes (`--insecure-webhook-targets`).
    pub fn insecure() -> Self {
        Self {
            insecure: true,
            lookup: Arc::new(SystemLookup),
        }
    }

    /// Whether development targets (http, loopback) are allowed.
    pub fn allows_loopback(&self) -> bool {
        self.insecure
    }

    /// The same policy with another resolver.
    pub fn with_lookup(self, lookup: Arc<dyn Lookup>) -> Self {
        Self { lookup, ..self }
    }

    /// Whether the guard is off.
    pub fn is_insecure(&self) -> bool {
        self.insecure
    }

    /// Checks a URL's form (scheme, host, and an IP-literal host's address) without DNS.
    pub fn check_url(&self, text: &str) -> Result<Url, TargetError> {
        let url = Url::parse(text).map_err(|e| TargetError::Invalid(e.to_string()))?;
        if !matches!(url.scheme(), "https" | "http") || url.host().is_none() {
            return Err(TargetError::Invalid(text.to_owned()));
        }
        // Never sensible, even when the guard is off for local development.
        if !url.username().is_empty() || url.password().is_some() {
            return Err(TargetError::Credentials);
        }
        if url.port() == Some(0) {
            return Err(TargetError::PortZero);
        }
        if self.insecure {
            return Ok(url);
        }
        if url.scheme() != "https" {
            return Err(TargetError::NotHttps);
        }
        let literal = match url.host() {
            Some(url::Host::Ipv4(ip)) => Some(IpAddr::V4(ip)),
            Some(url::Host::Ipv6(ip)) => Some(IpAddr::V6(ip)),
            _ => None,
        };
        match literal {
            Some(ip) if is_forbidden(ip) => Err(TargetError::Forbidden(ip)),
            Some(_) => Ok(url),
            // A named host: the form the API document states, exactly.
            None if crate::model::forms::is_https_url(text) => Ok(url),
            None => Err(TargetError::Invalid(format!(
                "{text} (a lowercase host name, an optional port, path and query)"
            ))),
        }
    }

    /// Checks a URL completely, resolving its host: what registration does.
    pub async fn check(&self, text: &str) -> Result<Url, TargetError> {
        let url = self.check_url(text)?;
        if self.insecure {
            return Ok(url);
        }
        if let Some(url::Host::Domain(host)) = url.host() {
            self.resolve(host).await?;
        }
        Ok(url)
    }

    /// The addresses of `host`, all of them public (unless insecure).
    async fn resolve(&self, host: &str) -> Result<Vec<IpAddr>, TargetError> {
        let addrs = self
            .lookup
            .lookup(host.to_owned())
            .await
            .map_err(|e| TargetError::Unresolvable(format!("{host}: {e}")))?;
        if addrs.is_empty() {
            return Err(TargetError::Unresolvable(host.to_owned()));
        }
        if !self.insecure
            && let Some(bad) = addrs.iter().copied().find(|ip| is_forbidden(*ip))
        {
            return Err(TargetError::Forbidden(bad));
        }
        Ok(addrs)
    }
}

/// The HTTP client's resolver: every connection's addresses pass the guard first.
impl reqwest::dns::Resolve for TargetPolicy {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let policy = self.clone();
        Box::pin(async move {
            let addrs = policy.resolve(name.as_str()).await?;
            let addrs: reqwest::dns::Addrs =
                Box::new(addrs.into_iter().map(|ip| SocketAddr::new(ip, 0)));
            Ok(addrs)
        })
    }
}

/// Whether `ip` is anything but a public unicast address.
pub fn is_forbidden(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_forbidden_v4(v4),
        IpAddr::V6(v6) => is_forbidden_v6(v6),
    }
}

fn in_v4(ip: Ipv4Addr, net: [u8; 4], prefix: u32) -> bool {
    let mask = u32::MAX.checked_shl(32 - prefix).unwrap_or(0);
    u32::from(ip) & mask == u32::from(Ipv4Addr::from(net)) & mask
}

fn is_forbidden_v4(ip: Ipv4Addr) -> bool {
    const BLOCKED: &[([u8; 4], u32)] = &[
        ([0, 0, 0, 0], 8),       // "this network"
        ([10, 0, 0, 0], 8),      // private
        ([100, 64, 0, 0], 10),   // CGNAT (Alibaba's metadata 100.100.100.200 too)
        ([127, 0, 0, 0], 8),     // loopback
        ([169, 254, 0, 0], 16),  // link-local, cloud metadata 169.254.169.254
        ([172, 16, 0, 0], 12),   // private
        ([192, 0, 0, 0], 24),    // IETF protocol assignments
        ([192, 0, 2, 0], 24),    // documentation
        ([192, 88, 99, 0], 24),  // 6to4 relay
        ([192, 168, 0, 0], 16),  // private
        ([198, 18, 0, 0], 15),   // benchmarking
        ([198, 51, 100, 0], 24), // documentation
        ([203, 0, 113, 0], 24),  // documentation
        ([224, 0, 0, 0], 4),     // multicast
        ([240, 0, 0, 0], 4),     // reserved, broadcast
    ];
    BLOCKED.iter().any(|(net, prefix)| in_v4(ip, *net, *prefix))
}

fn is_forbidden_v6(ip: Ipv6Addr) -> bool {
    let s = ip.segments();
    let embedded_v4 = |hi: usize| {
        let [a, b] = s[hi].to_be_bytes();
        let [c, d] = s[hi + 1].to_be_bytes();
        Ipv4Addr::new(a, b, c, d)
    };
    if ip.is_unspecified() || ip.is_loopback() {
        return true;
    }
    // ::ffff:a.b.c.d (mapped), ::a.b.c.d (compatible), 64:ff9b::a.b.c.d (NAT64):
    // judged by the IPv4 address they reach.
    if s[..5] == [0; 5] && (s[5] == 0xffff || s[5] == 0) {
        return is_forbidden_v4(embedded_v4(6));
    }
    if s[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        return is_forbidden_v4(embedded_v4(6));
    }
    // 6to4 carries its IPv4 address in the second and third groups.
    if s[0] == 0x2002 {
        return is_forbidden_v4(embedded_v4(1));
    }
    (s[0] & 0xfe00) == 0xfc00 // unique local (AWS metadata fd00:ec2::254 too)
        || (s[0] & 0xffc0) == 0xfe80 // link-local
        || (s[0] & 0xffc0) == 0xfec0 // site-local (deprecated)
        || (s[0] & 0xff00) == 0xff00 // multicast
        || (s[0] == 0x2001 && s[1] == 0x0db8) // documentation
        || (s[0] == 0x2001 && s[1] == 0) // Teredo
        || s[..4] == [0x0100, 0, 0, 0] // discard-only
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn every_non_public_range_is_forbidden() {
        for blocked in [
            "127.0.0.1",
            "127.255.255.254",
            "10.0.0.1",
            "10.255.255.255",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "169.254.169.254",
            "169.254.0.1",
            "100.64.0.1",
            "100.127.255.255",
            "100.100.100.200",
            "0.0.0.0",
            "224.0.0.1",
            "239.255.255.250",
            "255.255.255.255",
            "240.0.0.1",
            "192.0.2.1",
            "198.18.0.1",
            "::",
            "::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "::ffff:169.254.169.254",
            "::127.0.0.1",
            "64:ff9b::10.0.0.1",
            "2002:7f00:1::",
            "fc00::1",
            "fd00:ec2::254",
            "fe80::1",
            "fec0::1",
            "ff02::1",
            "2001:db8::1",
            "2001::1",
        ] {
            assert!(is_forbidden(ip(blocked)), "{blocked} must be forbidden");
        }
    }

    #[test]
    fn public_addresses_are_allowed() {
        for public in [
            "93.184.216.34",
            "8.8.8.8",
            "1.1.1.1",
            "172.32.0.1",
            "172.15.255.255",
            "100.128.0.1",
            "100.63.255.255",
            "169.253.0.1",
            "2606:4700:4700::1111",
            "2a00:1450:4001::200e",
            "::ffff:8.8.8.8",
            "64:ff9b::808:808",
            "2002:808:808::",
        ] {
            assert!(!is_forbidden(ip(public)), "{public} must be allowed");
        }
    }

    #[test]
    fn urls_must_be_https_with_a_public_literal() {
        let guard = TargetPolicy::secure();
        assert_eq!(
            guard.check_url("http://example.com/"),
            Err(TargetError::NotHttps)
        );
        assert!(matches!(
            guard.check_url("ftp://example.com/"),
            Err(TargetError::Invalid(_))
        ));
        assert!(matches!(
            guard.check_url("not a url"),
            Err(TargetError::Invalid(_))
        ));
        assert_eq!(
            guard.check_url("https://[::ffff:7f00:1]/hook"),
            Err(TargetError::Forbidden(ip("::ffff:127.0.0.1")))
        );
        assert!(guard.check_url("https://93.184.216.34/hook").is_ok());
        assert!(
            TargetPolicy::insecure()
                .check_url("http://127.0.0.1:9/")
                .is_ok()
        );
    }
}
