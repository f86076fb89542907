//! The client's IP for rate limiting: the TCP peer, unless the peer is a
//! trusted reverse proxy, in which case the rightmost X-Forwarded-For entry
//! that is not itself a trusted proxy. Entries left of it are client-supplied
//! and could be forged, so they are never used.

use std::net::IpAddr;

use axum::http::HeaderMap;
use ipnet::IpNet;

fn trusted(ip: &IpAddr, proxies: &[IpNet]) -> bool {
    let ip = ip.to_canonical();
    proxies.iter().any(|net| net.contains(&ip))
}

/// Parses one X-Forwarded-For element (tolerating `[v6]:port` / `v4:port`).
fn parse_hop(s: &str) -> Option<IpAddr> {
    let s = s.trim();
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Some(ip);
    }
    s.parse::<std::net::SocketAddr>().ok().map(|a| a.ip())
}

pub fn client_ip(peer: IpAddr, headers: &HeaderMap, proxies: &[IpNet]) -> IpAddr {
    let peer = peer.to_canonical();
    if !trusted(&peer, proxies) {
        return peer;
    }
    // All X-Forwarded-For headers, in order, form one list.
    let hops: Vec<&str> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .collect();
    let mut nearest = peer;
    for hop in hops.iter().rev() {
        match parse_hop(hop) {
            Some(ip) if trusted(&ip, proxies) => nearest = ip.to_canonical(),
            Some(ip) => return ip.to_canonical(),
            // Garbage: nothing further left can be believed.
            None => return nearest,
        }
    }
    nearest
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::parse_trusted_proxies;
    use axum::http::HeaderValue;

    fn headers(values: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append("x-forwarded-for", HeaderValue::from_str(v).unwrap());
        }
        h
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn untrusted_peers_cannot_choose_their_bucket() {
        let proxies = parse_trusted_proxies("10.0.0.1").unwrap();
        assert_eq!(
            client_ip(ip("203.0.113.9"), &headers(&["1.2.3.4"]), &proxies),
            ip("203.0.113.9")
        );
        assert_eq!(
            client_ip(ip("203.0.113.9"), &headers(&[]), &[]),
            ip("203.0.113.9")
        );
    }

    #[test]
    fn trusted_proxy_yields_rightmost_untrusted_hop() {
        let proxies = parse_trusted_proxies("10.0.0.0/8").unwrap();
        // A client forging "6.6.6.6" on the left does not win.
        let h = headers(&["6.6.6.6, 198.51.100.7, 10.0.0.2"]);
        assert_eq!(client_ip(ip("10.0.0.1"), &h, &proxies), ip("198.51.100.7"));
        // Several headers are one list.
        let h = headers(&["6.6.6.6", "198.51.100.8"]);
        assert_eq!(client_ip(ip("10.0.0.1"), &h, &proxies), ip("198.51.100.8"));
    }

    #[test]
    fn no_or_bad_header_falls_back_to_the_nearest_trusted_hop() {
        let proxies = parse_trusted_proxies("10.0.0.0/8").unwrap();
        assert_eq!(
            client_ip(ip("10.0.0.1"), &headers(&[]), &proxies),
            ip("10.0.0.1")
        );
        assert_eq!(
            client_ip(ip("10.0.0.1"), &headers(&["garbage, 10.0.0.3"]), &proxies),
            ip("10.0.0.3")
        );
        assert_eq!(
            client_ip(ip("10.0.0.1"), &headers(&["10.0.0.5"]), &proxies),
            ip("10.0.0.5")
        );
    }

    #[test]
    fn ports_and_mapped_addresses() {
        let proxies = parse_trusted_proxies("127.0.0.1").unwrap();
        assert_eq!(
            client_ip(
                ip("::ffff:127.0.0.1"),
                &headers(&["192.0.2.1:4711"]),
                &proxies
            ),
            ip("192.0.2.1")
        );
        assert_eq!(
            client_ip(ip("127.0.0.1"), &headers(&["[2001:db8::1]:443"]), &proxies),
            ip("2001:db8::1")
        );
    }
}
