//! The SSRF guard: webhook URLs are chosen by users, so without it any user could make
//! the server call its own admin ports, the cloud metadata service or the LAN.
//!
//! The check runs where the address is chosen, at connect time, in the HTTP client's DNS
//! resolver ([`GuardedResolver`]): a check at registration alone is defeated by a name
//! that later resolves elsewhere (DNS rebinding). Literal IPs skip the resolver, so the
//! sender checks them with [`check_literal`] before each request. Registration runs the
//! same checks, only to refuse early what would never be delivered.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use reqwest::dns::{Addrs, Name, Resolve, Resolving};

/// Why an address may not be called, or `None` when it may.
fn refusal(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(ip) => refusal_v4(ip),
        IpAddr::V6(ip) => refusal_v6(ip),
    }
}

fn refusal_v4(ip: Ipv4Addr) -> Option<&'static str> {
    let [a, b, c, _] = ip.octets();
    if ip.is_loopback() {
        Some("loopback")
    } else if ip.is_private() {
        Some("private")
    } else if ip.is_link_local() {
        Some("link-local")
    } else if a == 0 {
        // 0.0.0.0/8, "this network": 0.0.0.0 reaches the local host on Linux.
        Some("unspecified")
    } else if a == 100 && (64..128).contains(&b) {
        Some("shared (CGNAT)")
    } else if ip.is_multicast() || ip.is_broadcast() {
        Some("multicast or broadcast")
    } else if a >= 240 || (a == 198 && (b & 0xfe) == 18) || (a == 192 && b == 0 && c == 0) {
        // 240/4 reserved, 198.18/15 benchmarking, 192.0.0/24 protocol assignments:
        // never a public web server, sometimes a device on the local network.
        Some("reserved")
    } else {
        None
    }
}

fn refusal_v6(ip: Ipv6Addr) -> Option<&'static str> {
    let segments = ip.segments();
    if ip.is_loopback() {
        Some("loopback")
    } else if ip.is_unspecified() {
        Some("unspecified")
    } else if let Some(v4) = ip.to_ipv4_mapped() {
        // ::ffff:127.0.0.1 reaches 127.0.0.1.
        refusal_v4(v4)
    } else if segments[..6] == [0; 6] {
        // The deprecated IPv4-compatible form ::a.b.c.d.
        refusal_v4(ip.to_ipv4().unwrap_or(Ipv4Addr::UNSPECIFIED))
    } else if segments[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        // NAT64 (64:ff9b::/96): the gateway connects to the embedded IPv4 address.
        refusal_v4(embedded_v4(segments[6], segments[7]))
    } else if segments[0] == 0x2002 {
        // 6to4 (2002::/16) carries an IPv4 address in bits 16..48.
        refusal_v4(embedded_v4(segments[1], segments[2]))
    } else if segments[0] & 0xfe00 == 0xfc00 {
        Some("private (unique local)")
    } else if segments[0] & 0xffc0 == 0xfe80 {
        Some("link-local")
    } else if segments[0] & 0xffc0 == 0xfec0 {
        Some("private (site-local)")
    } else if ip.is_multicast() {
        Some("multicast")
    } else {
        None
    }
}

fn embedded_v4(high: u16, low: u16) -> Ipv4Addr {
    Ipv4Addr::from((u32::from(high) << 16) | u32::from(low))
}

/// A connection the guard refuses. Names the address, never the URL (which may carry a
/// token, and is stored sealed); shown in the delivery log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("refused by the SSRF guard: {ip} is a {kind} address")]
pub struct Refused {
    pub kind: &'static str,
    pub ip: IpAddr,
}

/// Checks one address, literal or resolved.
pub fn check_literal(ip: IpAddr, allow_private: bool) -> Result<(), Refused> {
    match refusal(ip) {
        Some(kind) if !allow_private => Err(Refused { kind, ip }),
        _ => Ok(()),
    }
}

/// The host of `url` when it is an IP address (which no resolver sees).
pub fn literal_ip(url: &url::Url) -> Option<IpAddr> {
    match url.host()? {
        url::Host::Ipv4(ip) => Some(IpAddr::V4(ip)),
        url::Host::Ipv6(ip) => Some(IpAddr::V6(ip)),
        url::Host::Domain(_) => None,
    }
}

/// Checks where `url` would connect now: its literal IP, or every address its host
/// resolves to. Registration uses it to refuse early; each delivery checks again.
pub async fn check_url(url: &url::Url, allow_private: bool) -> Result<(), ResolveError> {
    if let Some(ip) = literal_ip(url) {
        return check_literal(ip, allow_private).map_err(ResolveError::Refused);
    }
    let host = url.host_str().unwrap_or_default();
    resolve(host, allow_private).await.map(drop)
}

/// Why a host name yields no address the guard allows.
#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    #[error("the host name does not resolve: {0}")]
    Unresolvable(std::io::Error),
    /// Every address it resolves to is refused; this is the first of them.
    #[error(transparent)]
    Refused(Refused),
}

/// The system resolver, less the addresses the guard refuses: what connecting to `host`
/// may use. Fails when nothing is left.
pub async fn resolve(host: &str, allow_private: bool) -> Result<Vec<SocketAddr>, ResolveError> {
    let resolved = tokio::net::lookup_host((host, 0))
        .await
        .map_err(ResolveError::Unresolvable)?;
    let mut refused = None;
    let allowed: Vec<SocketAddr> = resolved
        .filter(|addr| match check_literal(addr.ip(), allow_private) {
            Ok(()) => true,
            Err(refusal) => {
                refused.get_or_insert(refusal);
                false
            }
        })
        .collect();
    match refused {
        Some(refusal) if allowed.is_empty() => Err(ResolveError::Refused(refusal)),
        _ => Ok(allowed),
    }
}

/// The webhook client's DNS resolver: [`resolve`]. The client connects only to the
/// addresses returned here, so the check and the connection use the same answer.
#[derive(Debug, Clone, Copy)]
pub struct GuardedResolver {
    pub allow_private: bool,
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let allow_private = self.allow_private;
        Box::pin(async move {
            let allowed = resolve(name.as_str(), allow_private).await?;
            Ok(Box::new(allowed.into_iter()) as Addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_internal_ranges_and_their_embedded_forms() {
        for refused in [
            "127.0.0.1",
            "127.255.0.9",
            "10.1.2.3",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "169.254.169.254",
            "0.0.0.0",
            "0.1.2.3",
            "100.64.0.1",
            "100.127.255.255",
            "224.0.0.1",
            "255.255.255.255",
            "240.0.0.1",
            "198.18.0.1",
            "192.0.0.8",
            "::1",
            "::",
            "fc00::1",
            "fd12::1",
            "fe80::1",
            "fec0::1",
            "ff02::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "::ffff:169.254.169.254",
            "::127.0.0.1",
            "64:ff9b::a9fe:a9fe",
            "2002:7f00:1::",
            "2002:c0a8:101::1",
        ] {
            let ip: IpAddr = refused.parse().unwrap();
            assert!(refusal(ip).is_some(), "{refused} should be refused");
            assert!(check_literal(ip, false).is_err());
            assert!(check_literal(ip, true).is_ok());
        }
        for allowed in [
            "93.184.216.34",
            "100.128.0.1",
            "172.32.0.1",
            "8.8.8.8",
            "2606:4700::1111",
            "::ffff:8.8.8.8",
            "64:ff9b::808:808",
            "2002:808:808::1",
        ] {
            let ip: IpAddr = allowed.parse().unwrap();
            assert_eq!(refusal(ip), None, "{allowed} should be allowed");
        }
    }

    #[test]
    fn a_refusal_names_the_address_and_its_kind() {
        let ip: IpAddr = "169.254.169.254".parse().unwrap();
        let refused = check_literal(ip, false).unwrap_err();
        assert_eq!(
            refused.to_string(),
            "refused by the SSRF guard: 169.254.169.254 is a link-local address"
        );
    }

    /// The connect-time check: the client's resolver drops loopback addresses, so a
    /// name that resolves only to them (here `localhost`) yields no address to connect to.
    #[tokio::test]
    async fn the_resolver_drops_refused_addresses() {
        let guarded = GuardedResolver {
            allow_private: false,
        };
        let error = guarded
            .resolve("localhost".parse().unwrap())
            .await
            .err()
            .unwrap();
        assert!(error.to_string().contains("SSRF guard"), "{error}");
        assert!(error.to_string().contains("loopback"), "{error}");

        let open = GuardedResolver {
            allow_private: true,
        };
        let addrs: Vec<SocketAddr> = open
            .resolve("localhost".parse().unwrap())
            .await
            .unwrap()
            .collect();
        assert!(!addrs.is_empty());
        assert!(
            addrs.iter().all(|addr| addr.ip().is_loopback()),
            "{addrs:?}"
        );
    }

    #[tokio::test]
    async fn a_name_that_does_not_resolve_is_not_a_refusal() {
        let error = resolve("no-such-host.invalid", false).await.unwrap_err();
        assert!(matches!(error, ResolveError::Unresolvable(_)), "{error}");
    }
}
