//! The SSRF guard: webhook URLs are chosen by users, so without it any user could make
//! the server call its own admin ports, the cloud metadata service or the LAN.
//!
//! The check runs where the address is chosen, at connect time, in the HTTP client's DNS
//! resolver ([`GuardedResolver`]): a check at registration alone is defeated by a name
//! that later resolves elsewhere (DNS rebinding). Literal IPs skip the resolver, so the
//! sender checks them with [`Guard::check_literal`] before each request. Registration
//! runs the same checks, only to refuse early what would never be delivered.
//!
//! Besides the internal ranges, the host's own interface addresses are refused: a URL
//! naming the server's public IP reaches services bound to 0.0.0.0 as loopback would.

use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

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
    } else if segments[..6] == [0, 0, 0, 0, 0xffff, 0] {
        // SIIT's IPv4-translated form ::ffff:0:a.b.c.d (RFC 2765).
        refusal_v4(embedded_v4(segments[6], segments[7]))
    } else if segments[..3] == [0x64, 0xff9b, 1] {
        // Local-use NAT64 (64:ff9b:1::/48, RFC 8215): where the IPv4 address sits
        // depends on the operator's prefix length, so none of it is trusted.
        Some("translated (local-use NAT64)")
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

/// A connection the guard refuses; shown in the delivery log and, at registration, to
/// the user. Names the address only when the URL itself is that literal IP: what a name
/// resolves to inside our network is none of the user's business (the server's log has
/// it). Never names the URL (which may carry a token, and is stored sealed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refused {
    pub kind: &'static str,
    pub ip: IpAddr,
    /// The host is a name that resolved to `ip`, not `ip` itself.
    pub by_name: bool,
}

impl Refused {
    /// What is wrong with the URL's host, e.g. "is 10.0.0.1, a private address".
    pub fn host_problem(&self) -> String {
        if self.by_name {
            format!("resolves to an internal ({}) address", self.kind)
        } else {
            format!("is {}, a {} address", self.ip, self.kind)
        }
    }
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "refused by the SSRF guard: the host {}",
            self.host_problem()
        )
    }
}

impl std::error::Error for Refused {}

/// Checks one address against the internal ranges and `local`, this host's own
/// addresses: a public address of the host reaches services bound to 0.0.0.0 just as
/// loopback does. `None` when it may be called.
pub fn check_ip(ip: IpAddr, local: &HashSet<IpAddr>) -> Option<&'static str> {
    refusal(ip).or_else(|| {
        // ::ffff:a.b.c.d reaches a.b.c.d.
        (local.contains(&ip) || local.contains(&ip.to_canonical())).then_some("local interface")
    })
}

/// The guard as the webhook client and registration use it.
#[derive(Debug, Clone)]
pub struct Guard {
    allow_private: bool,
    local: Arc<LocalAddrs>,
}

impl Guard {
    /// `allow_private` turns the guard off (internal ranges and local addresses alike).
    pub fn new(allow_private: bool) -> Self {
        Self {
            allow_private,
            local: Arc::new(LocalAddrs::read()),
        }
    }

    /// Checks one address; `by_name`: it came from resolving a host name.
    pub fn check(&self, ip: IpAddr, by_name: bool) -> Result<(), Refused> {
        if self.allow_private {
            return Ok(());
        }
        match check_ip(ip, &self.local.current()) {
            Some(kind) => {
                // The address, kept out of what the user sees, is for the admin.
                tracing::info!(%ip, kind, by_name, "the SSRF guard refused a webhook address");
                Err(Refused { kind, ip, by_name })
            }
            None => Ok(()),
        }
    }

    /// Checks the host of `url` when it is an IP address, which no resolver sees (so
    /// the sender checks it before each request). A name passes here.
    pub fn check_literal(&self, url: &url::Url) -> Result<(), Refused> {
        literal_ip(url).map_or(Ok(()), |ip| self.check(ip, false))
    }

    /// Checks where `url` would connect now: its literal IP, or every address its host
    /// resolves to. Registration uses it to refuse early; each delivery checks again.
    pub async fn check_url(&self, url: &url::Url) -> Result<(), ResolveError> {
        self.check_literal(url).map_err(ResolveError::Refused)?;
        match url.host() {
            Some(url::Host::Domain(host)) => self.resolve(host).await.map(drop),
            _ => Ok(()),
        }
    }

    /// The system resolver, less the addresses the guard refuses: what connecting to
    /// `host` may use. Fails when nothing is left.
    pub async fn resolve(&self, host: &str) -> Result<Vec<SocketAddr>, ResolveError> {
        let resolved = tokio::net::lookup_host((host, 0))
            .await
            .map_err(ResolveError::Unresolvable)?;
        let mut refused = None;
        let allowed: Vec<SocketAddr> = resolved
            .filter(|addr| match self.check(addr.ip(), true) {
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
}

/// The host of `url` when it is an IP address.
fn literal_ip(url: &url::Url) -> Option<IpAddr> {
    match url.host()? {
        url::Host::Ipv4(ip) => Some(IpAddr::V4(ip)),
        url::Host::Ipv6(ip) => Some(IpAddr::V6(ip)),
        url::Host::Domain(_) => None,
    }
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

/// The webhook client's DNS resolver: [`Guard::resolve`]. The client connects only to
/// the addresses returned here, so the check and the connection use the same answer.
#[derive(Debug, Clone)]
pub struct GuardedResolver(pub Guard);

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let guard = self.0.clone();
        Box::pin(async move {
            let allowed = guard.resolve(name.as_str()).await?;
            Ok(Box::new(allowed.into_iter()) as Addrs)
        })
    }
}

/// How long a reading of the local addresses is trusted: addresses come and go (DHCP,
/// a new interface), and reading them costs two small files.
const LOCAL_REFRESH: Duration = Duration::from_secs(60);

/// This host's own interface addresses, read again when older than [`LOCAL_REFRESH`].
#[derive(Debug)]
struct LocalAddrs {
    read: Mutex<(Instant, Arc<HashSet<IpAddr>>)>,
}

impl LocalAddrs {
    fn read() -> Self {
        Self {
            read: Mutex::new((Instant::now(), Arc::new(interface_addrs()))),
        }
    }

    fn current(&self) -> Arc<HashSet<IpAddr>> {
        let mut read = self
            .read
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if read.0.elapsed() > LOCAL_REFRESH {
            *read = (Instant::now(), Arc::new(interface_addrs()));
        }
        Arc::clone(&read.1)
    }
}

/// The addresses of the local interfaces, from procfs (Linux; the standard library
/// has no portable way and these two files need no crate). Elsewhere, or if procfs is
/// not mounted, the set is empty and only the fixed internal ranges are refused.
fn interface_addrs() -> HashSet<IpAddr> {
    let v4 = std::fs::read_to_string("/proc/net/fib_trie").unwrap_or_default();
    let v6 = std::fs::read_to_string("/proc/net/if_inet6").unwrap_or_default();
    local_v4(&v4).chain(local_v6(&v6)).collect()
}

/// The host's IPv4 addresses in `/proc/net/fib_trie`: each address line ("|-- a.b.c.d")
/// is followed by its entries, and a "host LOCAL" entry marks an address of this host.
fn local_v4(fib_trie: &str) -> impl Iterator<Item = IpAddr> + '_ {
    let mut current = None;
    fib_trie.lines().map(str::trim).filter_map(move |line| {
        if let Some(address) = line.strip_prefix("|-- ") {
            current = address.parse::<Ipv4Addr>().ok();
            None
        } else if line.starts_with("+-- ") {
            current = None;
            None
        } else if line.ends_with("host LOCAL") {
            current.map(IpAddr::V4)
        } else {
            None
        }
    })
}

/// The host's IPv6 addresses in `/proc/net/if_inet6`: 32 hex digits first on each line.
fn local_v6(if_inet6: &str) -> impl Iterator<Item = IpAddr> + '_ {
    if_inet6.lines().filter_map(|line| {
        let hex = line.split_whitespace().next()?;
        let bits = u128::from_str_radix(hex, 16)
            .ok()
            .filter(|_| hex.len() == 32)?;
        Some(IpAddr::V6(Ipv6Addr::from(bits)))
    })
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
            "64:ff9b:1::a9fe:a9fe",
            "64:ff9b:1:ffff::1",
            "::ffff:0:a9fe:a9fe",
            "::ffff:0:7f00:1",
            "2002:7f00:1::",
            "2002:c0a8:101::1",
        ] {
            let ip: IpAddr = refused.parse().unwrap();
            assert!(refusal(ip).is_some(), "{refused} should be refused");
            assert!(Guard::new(false).check(ip, false).is_err());
            assert!(Guard::new(true).check(ip, false).is_ok());
        }
        for allowed in [
            "93.184.216.34",
            "100.128.0.1",
            "172.32.0.1",
            "8.8.8.8",
            "2606:4700::1111",
            "::ffff:8.8.8.8",
            "64:ff9b::808:808",
            "::ffff:0:808:808",
            "2002:808:808::1",
        ] {
            let ip: IpAddr = allowed.parse().unwrap();
            assert_eq!(refusal(ip), None, "{allowed} should be allowed");
        }
    }

    #[test]
    fn a_refusal_names_a_literal_address_but_not_what_a_name_resolves_to() {
        let ip: IpAddr = "169.254.169.254".parse().unwrap();
        let literal = Guard::new(false).check(ip, false).unwrap_err();
        assert_eq!(
            literal.to_string(),
            "refused by the SSRF guard: the host is 169.254.169.254, a link-local address"
        );
        let resolved = Guard::new(false).check(ip, true).unwrap_err();
        assert_eq!(
            resolved.to_string(),
            "refused by the SSRF guard: the host resolves to an internal (link-local) address"
        );
    }

    #[test]
    fn the_hosts_own_addresses_are_refused() {
        let local: HashSet<IpAddr> = ["203.0.113.7", "2001:db8::7"]
            .iter()
            .map(|ip| ip.parse().unwrap())
            .collect();
        for own in ["203.0.113.7", "::ffff:203.0.113.7", "2001:db8::7"] {
            let ip: IpAddr = own.parse().unwrap();
            assert_eq!(check_ip(ip, &local), Some("local interface"), "{own}");
            assert_eq!(check_ip(ip, &HashSet::new()), None, "{own}");
        }
        for other in ["203.0.113.8", "2001:db8::8", "8.8.8.8"] {
            assert_eq!(check_ip(other.parse().unwrap(), &local), None, "{other}");
        }
        // The fixed ranges still come first.
        assert_eq!(
            check_ip("127.0.0.1".parse().unwrap(), &local),
            Some("loopback")
        );
    }

    #[test]
    fn local_addresses_are_read_from_procfs_text() {
        let fib_trie = "Main:\n  +-- 0.0.0.0/0 3 0 5\n     |-- 0.0.0.0\n        /0 universe UNICAST\n\
            +-- 192.0.2.0/24 2 0 2\n        |-- 192.0.2.0\n           /24 link UNICAST\n\
            |-- 192.0.2.2\n           /32 host LOCAL\n        |-- 192.0.2.255\n\
            /32 link BROADCAST\n     |-- 198.51.100.9\n        /32 host LOCAL\n";
        let v4: HashSet<IpAddr> = local_v4(fib_trie).collect();
        let expected: HashSet<IpAddr> = ["192.0.2.2", "198.51.100.9"]
            .iter()
            .map(|ip| ip.parse().unwrap())
            .collect();
        assert_eq!(v4, expected);

        let if_inet6 = "00000000000000000000000000000001 01 80 10 80       lo\n\
            20010db8000000000000000000000007 04 40 00 82     eth0\n";
        let v6: Vec<IpAddr> = local_v6(if_inet6).collect();
        assert_eq!(
            v6,
            [
                "::1".parse::<IpAddr>().unwrap(),
                "2001:db8::7".parse().unwrap()
            ]
        );
    }

    /// The connect-time check: the client's resolver drops loopback addresses, so a
    /// name that resolves only to them (here `localhost`) yields no address to connect to.
    #[tokio::test]
    async fn the_resolver_drops_refused_addresses() {
        let guarded = GuardedResolver(Guard::new(false));
        let error = guarded
            .resolve("localhost".parse().unwrap())
            .await
            .err()
            .unwrap();
        assert!(error.to_string().contains("SSRF guard"), "{error}");
        assert!(error.to_string().contains("loopback"), "{error}");

        let open = GuardedResolver(Guard::new(true));
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
        let error = Guard::new(false)
            .resolve("no-such-host.invalid")
            .await
            .unwrap_err();
        assert!(matches!(error, ResolveError::Unresolvable(_)), "{error}");
    }
}
