//! What a request looked like before any reverse proxy: the URL the client called
//! (which a webhook signature covers) and the client's address (which limits key on).
//!
//! Forwarding headers are believed only from `trusted_proxies`; from anyone else they
//! are ignored, so a client can choose neither the URL its signature is checked against
//! nor the address its attempts are counted under.
//!
//! With `public_url` set it is that base plus the request's path and raw query. Without
//! it, the scheme of the listener and the `Host` header are used, and
//! `X-Forwarded-Proto`/`X-Forwarded-Host` are believed only from `trusted_proxies`,
//! so a client cannot choose the URL its signature is checked against.

use std::net::IpAddr;

use axum::http::{HeaderMap, Uri, header};
use ipnet::IpNet;

use super::Scheme;

pub fn reconstruct(
    configured: Option<&url::Url>,
    trusted_proxies: &[IpNet],
    peer: IpAddr,
    scheme: Scheme,
    headers: &HeaderMap,
    uri: &Uri,
) -> Option<String> {
    let path_and_query = uri.path_and_query().map_or("/", |pq| pq.as_str());
    if let Some(base) = configured {
        return Some(format!(
            "{}{}",
            base.as_str().trim_end_matches('/'),
            path_and_query
        ));
    }
    let trusted = trusted_proxies.iter().any(|net| net.contains(&peer));
    let forwarded = |name: &str| {
        trusted
            .then(|| headers.get(name)?.to_str().ok())
            .flatten()
            // A chain of proxies appends; the first value is what the client used.
            .and_then(|value| value.split(',').next())
            .map(str::trim)
            .filter(|value| !value.is_empty())
    };
    let proto = match forwarded("x-forwarded-proto") {
        None => scheme.as_str(),
        Some(proto) if proto.eq_ignore_ascii_case("http") => "http",
        Some(proto) if proto.eq_ignore_ascii_case("https") => "https",
        Some(_) => return None,
    };
    let host = forwarded("x-forwarded-host")
        .or_else(|| headers.get(header::HOST)?.to_str().ok())
        .or_else(|| uri.authority().map(|a| a.as_str()))?;
    Some(format!("{proto}://{host}{path_and_query}"))
}

/// The client's address: the peer itself, or, when the peer is a trusted proxy, the
/// nearest address in `X-Forwarded-For` that is not a trusted proxy.
pub fn client_ip(trusted_proxies: &[IpNet], peer: IpAddr, headers: &HeaderMap) -> IpAddr {
    let trusted = |ip: &IpAddr| trusted_proxies.iter().any(|net| net.contains(ip));
    if !trusted(&peer) {
        return peer;
    }
    let hops: Vec<IpAddr> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .filter_map(|hop| hop.trim().parse().ok())
        .map(|hop: IpAddr| hop.to_canonical())
        .collect();
    // Each proxy appends the address it received from, so read from the right.
    hops.into_iter()
        .rev()
        .find(|hop| !trusted(hop))
        .unwrap_or(peer)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        pairs
            .iter()
            .map(|(k, v)| (k.parse().unwrap(), v.parse().unwrap()))
            .collect()
    }

    const PEER: &str = "203.0.113.9";

    #[test]
    fn the_configured_url_wins_and_keeps_the_raw_query() {
        let base = url::Url::parse("https://sms.example.com/prefix/").unwrap();
        let uri: Uri = "/webhooks/t?a=%27x".parse().unwrap();
        let url = reconstruct(
            Some(&base),
            &[],
            PEER.parse().unwrap(),
            Scheme::Http,
            &HeaderMap::new(),
            &uri,
        );
        assert_eq!(
            url.unwrap(),
            "https://sms.example.com/prefix/webhooks/t?a=%27x"
        );
    }

    #[test]
    fn the_client_address_skips_only_trusted_proxies() {
        let proxies = ["10.0.0.0/8".parse().unwrap()];
        let h = headers(&[("x-forwarded-for", "192.0.2.1, 198.51.100.7, 10.0.0.3")]);
        let proxy: IpAddr = "10.0.0.2".parse().unwrap();
        assert_eq!(
            client_ip(&proxies, proxy, &h),
            "198.51.100.7".parse::<IpAddr>().unwrap()
        );
        let direct: IpAddr = PEER.parse().unwrap();
        assert_eq!(
            client_ip(&proxies, direct, &h),
            direct,
            "a spoofed header from a client is ignored"
        );
        assert_eq!(client_ip(&proxies, proxy, &HeaderMap::new()), proxy);
    }

    #[test]
    fn forwarded_headers_count_only_from_trusted_proxies() {
        let uri: Uri = "/webhooks/t".parse().unwrap();
        let h = headers(&[
            ("host", "10.0.0.5:8080"),
            ("x-forwarded-proto", "https"),
            ("x-forwarded-host", "sms.example.com, inner"),
        ]);
        let untrusted = reconstruct(None, &[], PEER.parse().unwrap(), Scheme::Http, &h, &uri);
        assert_eq!(untrusted.unwrap(), "http://10.0.0.5:8080/webhooks/t");
        let proxies = ["203.0.113.0/24".parse().unwrap()];
        let trusted = reconstruct(
            None,
            &proxies,
            PEER.parse().unwrap(),
            Scheme::Http,
            &h,
            &uri,
        );
        assert_eq!(trusted.unwrap(), "https://sms.example.com/webhooks/t");
    }

    #[test]
    fn the_forwarded_scheme_is_read_without_regard_to_case() {
        let uri: Uri = "/webhooks/t".parse().unwrap();
        let proxies = ["203.0.113.0/24".parse().unwrap()];
        let peer = PEER.parse().unwrap();
        let url = |proto: &'static str| {
            let h = headers(&[("host", "sms.example.com"), ("x-forwarded-proto", proto)]);
            reconstruct(None, &proxies, peer, Scheme::Http, &h, &uri)
        };
        assert_eq!(url("HTTPS").unwrap(), "https://sms.example.com/webhooks/t");
        assert_eq!(url("Http").unwrap(), "http://sms.example.com/webhooks/t");
        assert_eq!(url("ftp"), None);
    }

    #[test]
    fn a_forwarded_address_in_ipv4_mapped_form_is_the_ipv4_address() {
        let proxies = ["10.0.0.0/8".parse().unwrap()];
        let h = headers(&[("x-forwarded-for", "198.51.100.7, ::ffff:10.0.0.3")]);
        let proxy: IpAddr = "10.0.0.2".parse().unwrap();
        assert_eq!(
            client_ip(&proxies, proxy, &h),
            "198.51.100.7".parse::<IpAddr>().unwrap(),
            "the mapped hop is a trusted proxy and is skipped"
        );
    }
}
