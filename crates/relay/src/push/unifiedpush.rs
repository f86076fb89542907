//! UnifiedPush: the token is the endpoint URL of the user's distributor
//! (ntfy, NextPush, …); a wake-up is a POST of [`WAKE_PAYLOAD`] to it.
//!
//! The URL comes from a client, so the relay must not become a way to reach
//! its own network (SSRF): by default only `https://` endpoints whose host
//! resolves to public addresses are used (checked at registration for IP
//! literals and at connect time by a filtering DNS resolver, redirects are
//! not followed). `--unifiedpush-allow-private` lifts this for LAN
//! distributors and tests.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use reqwest::{StatusCode, Url};

use super::{Delivery, PROVIDER_TIMEOUT, WAKE_PAYLOAD};

pub struct UnifiedPush {
    http: reqwest::Client,
    allow_private: bool,
}

impl UnifiedPush {
    pub fn new(allow_private: bool) -> anyhow::Result<Self> {
        let mut builder = reqwest::Client::builder()
            .timeout(PROVIDER_TIMEOUT)
            .redirect(reqwest::redirect::Policy::none());
        if !allow_private {
            builder = builder.dns_resolver(Arc::new(PublicOnlyResolver));
        }
        Ok(Self {
            http: builder.build()?,
            allow_private,
        })
    }

    pub async fn send(&self, endpoint: &str) -> Delivery {
        let url = match validate_endpoint(endpoint, self.allow_private) {
            Ok(url) => url,
            // Registered under laxer settings, or corrupted: never usable.
            Err(_) => return Delivery::InvalidToken,
        };
        let response = self
            .http
            .post(url)
            .header("content-type", "application/json")
            // RFC 8030 headers, understood by UnifiedPush distributors.
            .header("ttl", "86400")
            .header("urgency", "high")
            .body(WAKE_PAYLOAD)
            .send()
            .await;
        let response = match response {
            Ok(r) => r,
            Err(e) => return Delivery::from_transport(e),
        };
        classify(response.status(), response.headers())
    }
}

/// Maps a distributor's answer: 2xx sent; 404/410 the subscription is gone;
/// 429/5xx transient; anything else refused for good.
pub fn classify(status: StatusCode, headers: &reqwest::header::HeaderMap) -> Delivery {
    match status.as_u16() {
        200..=299 => Delivery::Sent,
        404 | 410 => Delivery::InvalidToken,
        429 | 500..=599 => Delivery::retry_from(headers),
        other => Delivery::Failed(format!("UnifiedPush endpoint answered {other}")),
    }
}

/// Parses an endpoint and applies the scheme and address rules.
pub fn validate_endpoint(endpoint: &str, allow_private: bool) -> Result<Url, &'static str> {
    let url = Url::parse(endpoint.trim()).map_err(|_| "not a URL")?;
    match url.scheme() {
        "https" => {}
        "http" if allow_private => {}
        _ => return Err("the endpoint must be an https:// URL"),
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err("credentials in the URL are not accepted");
    }
    let Some(host) = url.host() else {
        return Err("the URL has no host");
    };
    if !allow_private {
        let ip = match host {
            url::Host::Ipv4(ip) => Some(IpAddr::V4(ip)),
            url::Host::Ipv6(ip) => Some(IpAddr::V6(ip)),
            url::Host::Domain(d) if d.eq_ignore_ascii_case("localhost") => {
                return Err("the endpoint must not be local");
            }
            url::Host::Domain(_) => None,
        };
        if ip.is_some_and(|ip| !is_public(ip)) {
            return Err("the endpoint must not be a private or local address");
        }
    }
    Ok(url)
}

/// True for addresses routable on the public internet (not loopback,
/// private, link-local, CGNAT, unique-local, multicast, documentation …).
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            !(v4.is_private()
                || v4.is_loopback()
                || v4.is_link_local()
                || v4.is_broadcast()
                || v4.is_documentation()
                || v4.is_unspecified()
                || v4.is_multicast()
                || a == 0
                || (a == 100 && (64..128).contains(&b)) // CGNAT 100.64/10
                || (a == 198 && (b == 18 || b == 19)) // benchmarking
                || a >= 240)
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_public(IpAddr::V4(v4));
            }
            let first = v6.segments()[0];
            !(v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (first & 0xfe00) == 0xfc00 // unique local
                || (first & 0xffc0) == 0xfe80 // link local
                || first == 0x2001 && v6.segments()[1] == 0x0db8) // documentation
        }
    }
}

/// Resolves with the system resolver and keeps public addresses only, so a
/// public name that points at 127.0.0.1 is refused at connect time.
struct PublicOnlyResolver;

impl Resolve for PublicOnlyResolver {
    fn resolve(&self, name: Name) -> Resolving {
        Box::pin(async move {
            let host = name.as_str().to_owned();
            let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0))
                .await?
                .filter(|a| is_public(a.ip()))
                .collect();
            if addrs.is_empty() {
                return Err(format!("{host} resolves to no public address").into());
            }
            Ok(Box::new(addrs.into_iter()) as Addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_must_be_https_and_public_unless_allowed() {
        assert!(validate_endpoint("https://push.example.org/up/abc", false).is_ok());
        assert!(validate_endpoint("http://push.example.org/up", false).is_err());
        assert!(validate_endpoint("https://127.0.0.1/up", false).is_err());
        assert!(validate_endpoint("https://[::1]/up", false).is_err());
        assert!(validate_endpoint("https://10.1.2.3/up", false).is_err());
        assert!(validate_endpoint("https://localhost/up", false).is_err());
        assert!(validate_endpoint("https://user:pw@push.example.org/", false).is_err());
        assert!(validate_endpoint("ftp://push.example.org/", true).is_err());
        assert!(validate_endpoint("not a url", true).is_err());
        assert!(validate_endpoint("http://127.0.0.1:8080/up", true).is_ok());
    }

    #[test]
    fn public_addresses() {
        for ip in ["1.1.1.1", "2606:4700::1111"] {
            assert!(is_public(ip.parse().unwrap()), "{ip}");
        }
        for ip in [
            "127.0.0.1",
            "10.0.0.1",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "::1",
            "fd00::1",
            "fe80::1",
            "::ffff:127.0.0.1",
        ] {
            assert!(!is_public(ip.parse().unwrap()), "{ip}");
        }
    }

    #[test]
    fn answers_are_classified() {
        let h = reqwest::header::HeaderMap::new();
        assert_eq!(classify(StatusCode::CREATED, &h), Delivery::Sent);
        assert_eq!(classify(StatusCode::GONE, &h), Delivery::InvalidToken);
        assert_eq!(classify(StatusCode::NOT_FOUND, &h), Delivery::InvalidToken);
        assert_eq!(
            classify(StatusCode::SERVICE_UNAVAILABLE, &h),
            Delivery::Retry { after: None }
        );
        assert!(matches!(
            classify(StatusCode::PAYLOAD_TOO_LARGE, &h),
            Delivery::Failed(_)
        ));
    }
}
