//! The SSRF guard: webhook URLs are chosen by users, so without it any user could make
//! the server call its own admin ports, the cloud metadata service or the LAN.
//!
//! The check runs where the address is chosen, at connect time, in the HTTP client's DNS
//! resolver: a check at registration alone is defeated by a name that later resolves
//! elsewhere (DNS rebinding). Literal IPs skip the resolver, so the sender checks them
//! with the same [`refusal`] before each request.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use reqwest::dns::{Addrs, Name, Resolve, Resolving};

/// Why an address may not be called, or `None` when it may.
pub fn refusal(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(ip) => refusal_v4(ip),
        IpAddr::V6(ip) => match ip.to_ipv4_mapped() {
            // ::ffff:127.0.0.1 reaches 127.0.0.1.
            Some(mapped) => refusal_v4(mapped),
            None => refusal_v6(ip),
        },
    }
}

fn refusal_v4(ip: Ipv4Addr) -> Option<&'static str> {
    let [a, b, ..] = ip.octets();
    if ip.is_loopback() {
        Some("loopback")
    } else if ip.is_private() {
        Some("private")
    } else if ip.is_link_local() {
        Some("link-local")
    } else if ip.is_unspecified() || a == 0 {
        Some("unspecified")
    } else if ip.is_multicast() || ip.is_broadcast() {
        Some("multicast or broadcast")
    } else if a == 100 && (64..128).contains(&b) {
        Some("shared (CGNAT)")
    } else {
        None
    }
}

fn refusal_v6(ip: Ipv6Addr) -> Option<&'static str> {
    let first = ip.segments()[0];
    if ip.is_loopback() {
        Some("loopback")
    } else if ip.is_unspecified() {
        Some("unspecified")
    } else if first & 0xfe00 == 0xfc00 {
        Some("private (unique local)")
    } else if first & 0xffc0 == 0xfe80 {
        Some("link-local")
    } else if ip.is_multicast() {
        Some("multicast")
    } else if let Some(v4) = ip.to_ipv4() {
        // IPv4-compatible (::a.b.c.d) forms.
        refusal_v4(v4)
    } else {
        None
    }
}

/// The error a refused connection carries (shown in the delivery log).
#[derive(Debug, thiserror::Error)]
#[error("refused by the SSRF guard: {host} resolves to a {kind} address ({ip})")]
pub struct Refused {
    pub host: String,
    pub kind: &'static str,
    pub ip: IpAddr,
}

/// Checks a literal IP host the way the resolver checks resolved ones.
pub fn check_literal(ip: IpAddr, allow_private: bool) -> Result<(), Refused> {
    match refusal(ip) {
        Some(kind) if !allow_private => Err(Refused {
            host: ip.to_string(),
            kind,
            ip,
        }),
        _ => Ok(()),
    }
}

/// The system resolver, less the addresses the guard refuses.
#[derive(Debug, Clone, Copy)]
pub struct GuardedResolver {
    pub allow_private: bool,
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let allow_private = self.allow_private;
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let resolved: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let mut refused = None;
            let allowed: Vec<SocketAddr> = resolved
                .into_iter()
                .filter(|addr| match check_literal(addr.ip(), allow_private) {
                    Ok(()) => true,
                    Err(refusal) => {
                        refused = Some(Refused {
                            host: host.clone(),
                            ..refusal
                        });
                        false
                    }
                })
                .collect();
            match refused {
                Some(refusal) if allowed.is_empty() => Err(Box::new(refusal).into()),
                _ => Ok(Box::new(allowed.into_iter()) as Addrs),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_internal_ranges_and_their_mapped_forms() {
        for refused in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "0.0.0.0",
            "100.64.0.1",
            "224.0.0.1",
            "255.255.255.255",
            "::1",
            "::",
            "fc00::1",
            "fd12::1",
            "fe80::1",
            "ff02::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "::ffff:169.254.169.254",
        ] {
            let ip: IpAddr = refused.parse().unwrap();
            assert!(refusal(ip).is_some(), "{refused} should be refused");
            assert!(check_literal(ip, false).is_err());
            assert!(check_literal(ip, true).is_ok());
        }
        for allowed in ["93.184.216.34", "100.128.0.1", "2606:4700::1111", "8.8.8.8"] {
            let ip: IpAddr = allowed.parse().unwrap();
            assert_eq!(refusal(ip), None, "{allowed} should be allowed");
        }
    }

    #[tokio::test]
    async fn the_resolver_refuses_names_of_loopback_addresses() {
        let guarded = GuardedResolver {
            allow_private: false,
        };
        let name: Name = "localhost".parse().unwrap();
        let error = guarded.resolve(name).await.err().unwrap();
        assert!(error.to_string().contains("SSRF guard"), "{error}");
        let open = GuardedResolver {
            allow_private: true,
        };
        let name: Name = "localhost".parse().unwrap();
        assert!(open.resolve(name).await.unwrap().next().is_some());
    }
}
