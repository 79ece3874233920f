//! The visitor's address: who it is, and which proxies may tell us.
//!
//! The address is wrapped in [`ClientIp`] the moment it is known. The wrapper has no
//! `Serialize`, no `Display`, and a redacted `Debug`, so it cannot reach an event, a
//! log line, a cookie or a metric by accident; its only use is one geo lookup.
//!
//! Forwarding headers (`Forwarded`, then `X-Forwarded-For`) are believed only when
//! the socket peer is a trusted proxy, and then only as far back as the chain stays
//! inside trusted proxies: the right-most untrusted hop is the client. Anything else
//! would let a visitor pick their own country by sending a header.

use std::net::{IpAddr, Ipv6Addr};
use std::str::FromStr;

use axum::http::HeaderMap;
use ipnet::IpNet;

/// A caller's address: used for one lookup, then dropped. Never serialized or logged.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct ClientIp(IpAddr);

impl ClientIp {
    /// Wraps an address.
    pub fn new(ip: IpAddr) -> Self {
        ClientIp(canonical(ip))
    }

    /// The address itself, for the geo lookup. Do not store or print what this returns.
    pub fn expose(&self) -> IpAddr {
        self.0
    }

    /// A keyed hash of the address's network, to count requests per client in
    /// memory without keeping the address: with a key drawn at start (a
    /// [`std::hash::RandomState`]) it cannot be reversed. IPv4 addresses count one
    /// by one; IPv6 ones by their /64, the network one customer gets.
    pub fn keyed_hash(&self, key: &impl std::hash::BuildHasher) -> u64 {
        match self.0 {
            IpAddr::V4(v4) => key.hash_one(v4.octets()),
            IpAddr::V6(v6) => key.hash_one(&v6.octets()[..8]),
        }
    }

    /// Loopback, private, link-local or otherwise not routable on the internet.
    pub fn is_local(&self) -> bool {
        match self.0 {
            IpAddr::V4(v4) => {
                v4.is_loopback()
                    || v4.is_private()
                    || v4.is_link_local()
                    || v4.is_unspecified()
                    || v4.is_broadcast()
                    || v4.is_documentation()
                    || v4.octets()[0] == 100 && (v4.octets()[1] & 0xc0) == 64 // 100.64/10 CGNAT
            }
            IpAddr::V6(v6) => {
                v6.is_loopback()
                    || v6.is_unspecified()
                    || (v6.segments()[0] & 0xfe00) == 0xfc00 // unique local
                    || (v6.segments()[0] & 0xffc0) == 0xfe80 // link local
            }
        }
    }
}

impl std::fmt::Debug for ClientIp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ClientIp(<redacted>)")
    }
}

/// IPv4-mapped IPv6 addresses (`::ffff:a.b.c.d`, what dual-stack sockets report)
/// are treated as the IPv4 address they carry.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6
            .to_ipv4_mapped()
            .map(IpAddr::V4)
            .unwrap_or(IpAddr::V6(v6)),
        v4 => v4,
    }
}

/// The networks whose forwarding headers we believe (`--trusted-proxies`).
#[derive(Debug, Clone, Default)]
pub struct TrustedProxies(Vec<IpNet>);

impl TrustedProxies {
    /// No proxy is trusted: the socket peer is always the client.
    pub fn none() -> Self {
        TrustedProxies(Vec::new())
    }

    /// Whether `ip` is one of our proxies.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        self.0.iter().any(|net| net.contains(&ip))
    }

    /// The client's address for a request from `peer` carrying `headers`.
    pub fn client_ip(&self, peer: IpAddr, headers: &HeaderMap) -> ClientIp {
        let peer = canonical(peer);
        if !self.contains(peer) {
            return ClientIp::new(peer);
        }
        // Hops as the proxies appended them, nearest last.
        let hops = forwarded_hops(headers);
        let mut client = peer;
        for hop in hops.iter().rev() {
            match hop {
                Some(ip) => {
                    client = canonical(*ip);
                    if !self.contains(client) {
                        break;
                    }
                }
                // An obfuscated or unparsable hop: we cannot see past it, so the
                // last address we trust to have been reported honestly is the client.
                None => break,
            }
        }
        ClientIp::new(client)
    }

    /// Whether a request from `peer` reached our nearest proxy over HTTPS, as that
    /// proxy says (`Forwarded: proto=https`, else `X-Forwarded-Proto: https`; the
    /// last value, the one it appended). Only a trusted peer is believed.
    pub fn forwarded_https(&self, peer: IpAddr, headers: &HeaderMap) -> bool {
        if !self.contains(peer) {
            return false;
        }
        let last = |name: &str| {
            headers
                .get_all(name)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .flat_map(|v| v.split(','))
                .last()
                .map(str::to_owned)
        };
        let proto = match last("forwarded") {
            Some(element) => element
                .split(';')
                .filter_map(|pair| pair.split_once('='))
                .find(|(k, _)| k.trim().eq_ignore_ascii_case("proto"))
                .map(|(_, v)| v.trim().trim_matches('"').to_owned()),
            None => last("x-forwarded-proto"),
        };
        proto.is_some_and(|p| p.trim().eq_ignore_ascii_case("https"))
    }
}

impl FromStr for TrustedProxies {
    type Err = String;

    /// Parses `CIDR[,CIDR...]`; a bare address means a single host.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut nets = Vec::new();
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let net = match part.parse::<IpNet>() {
                Ok(net) => net,
                Err(_) => match part.parse::<IpAddr>() {
                    Ok(ip) => IpNet::from(ip),
                    Err(_) => {
                        return Err(format!(
                            "`{part}` is not a network (expected CIDR like 10.0.0.0/8 or an address)"
                        ));
                    }
                },
            };
            nets.push(net.trunc());
        }
        Ok(TrustedProxies(nets))
    }
}

/// The hop list from `Forwarded` (RFC 7239) if present, else `X-Forwarded-For`.
/// `None` entries are hops we could not read (obfuscated, `unknown`, garbage).
fn forwarded_hops(headers: &HeaderMap) -> Vec<Option<IpAddr>> {
    let forwarded: Vec<&str> = headers
        .get_all("forwarded")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    if !forwarded.is_empty() {
        return forwarded
            .iter()
            .flat_map(|v| v.split(','))
            .map(|element| {
                element
                    .split(';')
                    .filter_map(|pair| pair.split_once('='))
                    .find(|(k, _)| k.trim().eq_ignore_ascii_case("for"))
                    .and_then(|(_, v)| parse_node(v.trim().trim_matches('"')))
            })
            .collect();
    }
    headers
        .get_all("x-forwarded-for")
        .iter()
        .flat_map(|v| v.to_str().unwrap_or("?").split(','))
        .map(|hop| parse_node(hop.trim()))
        .collect()
}

/// Parses `1.2.3.4`, `1.2.3.4:80`, `[2001:db8::1]`, `[2001:db8::1]:80`, `2001:db8::1`.
fn parse_node(s: &str) -> Option<IpAddr> {
    if let Some(rest) = s.strip_prefix('[') {
        let (addr, _) = rest.split_once(']')?;
        return addr.parse::<Ipv6Addr>().ok().map(IpAddr::V6);
    }
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Some(ip);
    }
    let (host, port) = s.rsplit_once(':')?;
    port.parse::<u16>().ok()?;
    host.parse::<std::net::Ipv4Addr>().ok().map(IpAddr::V4)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn https_at_the_proxy_is_believed_from_a_trusted_peer_only() {
        let trusted: TrustedProxies = "10.0.0.0/8".parse().unwrap();
        let proxy: IpAddr = "10.0.0.2".parse().unwrap();
        let stranger: IpAddr = "203.0.113.9".parse().unwrap();
        let with = |name: &'static str, value: &'static str| {
            let mut h = HeaderMap::new();
            h.insert(name, axum::http::HeaderValue::from_static(value));
            h
        };
        assert!(trusted.forwarded_https(proxy, &with("x-forwarded-proto", "https")));
        assert!(trusted.forwarded_https(proxy, &with("forwarded", "for=1.2.3.4;proto=https")));
        assert!(trusted.forwarded_https(proxy, &with("x-forwarded-proto", "http, https")));
        assert!(!trusted.forwarded_https(proxy, &with("x-forwarded-proto", "http")));
        assert!(!trusted.forwarded_https(proxy, &HeaderMap::new()));
        assert!(!trusted.forwarded_https(stranger, &with("x-forwarded-proto", "https")));
    }

    proptest::proptest! {
        #[test]
        fn forwarding_headers_from_an_untrusted_peer_are_ignored(
            xff in proptest::collection::vec(proptest::num::u8::ANY, 0..300),
            forwarded in proptest::collection::vec(proptest::num::u8::ANY, 0..300),
            peer in proptest::array::uniform4(proptest::num::u8::ANY),
        ) {
            let mut headers = HeaderMap::new();
            for (name, value) in [("x-forwarded-for", &xff), ("forwarded", &forwarded)] {
                if let Ok(v) = axum::http::HeaderValue::from_bytes(value) {
                    headers.insert(name, v);
                }
            }
            let peer = IpAddr::from(peer);
            let trusted: TrustedProxies = "10.0.0.0/8".parse().unwrap();
            proptest::prop_assume!(!trusted.contains(peer));
            proptest::prop_assert_eq!(trusted.client_ip(peer, &headers).expose(), canonical(peer));
        }

        #[test]
        fn arbitrary_forwarding_headers_from_a_trusted_proxy_never_panic(
            xff in proptest::collection::vec(proptest::num::u8::ANY, 0..300),
            forwarded in proptest::collection::vec(proptest::num::u8::ANY, 0..300),
        ) {
            let mut headers = HeaderMap::new();
            for (name, value) in [("x-forwarded-for", &xff), ("forwarded", &forwarded)] {
                if let Ok(v) = axum::http::HeaderValue::from_bytes(value) {
                    headers.insert(name, v);
                }
            }
            let trusted: TrustedProxies = "10.0.0.0/8".parse().unwrap();
            let peer: IpAddr = "10.1.2.3".parse().unwrap();
            let client = trusted.client_ip(peer, &headers).expose();
            // The peer itself, or an address that the headers spelled out.
            let text = format!("{},{}", String::from_utf8_lossy(&xff), String::from_utf8_lossy(&forwarded));
            let spelled: Vec<IpAddr> = text
                .split(|c: char| ",; =\"[]".contains(c))
                .filter_map(|t| {
                    t.parse::<IpAddr>()
                        .ok()
                        .or_else(|| t.parse::<std::net::SocketAddr>().ok().map(|s| s.ip()))
                })
                .map(canonical)
                .collect();
            proptest::prop_assert!(client == peer || spelled.contains(&client), "{client} from {text:?}");
        }
    }

    #[test]
    fn the_keyed_hash_counts_an_ipv6_network_as_one_client_and_depends_on_the_key() {
        use std::hash::RandomState;
        let key = RandomState::new();
        let a = ClientIp::new("2001:db8:1:2::1".parse().unwrap());
        let b = ClientIp::new("2001:db8:1:2:ffff::9".parse().unwrap());
        let c = ClientIp::new("2001:db8:1:3::1".parse().unwrap());
        assert_eq!(a.keyed_hash(&key), b.keyed_hash(&key));
        assert_ne!(a.keyed_hash(&key), c.keyed_hash(&key));
        let v4 = ClientIp::new("203.0.113.9".parse().unwrap());
        let other = ClientIp::new("203.0.113.10".parse().unwrap());
        assert_ne!(v4.keyed_hash(&key), other.keyed_hash(&key));
        assert_ne!(v4.keyed_hash(&key), v4.keyed_hash(&RandomState::new()));
    }
    use axum::http::HeaderValue;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn debug_output_is_redacted() {
        let c = ClientIp::new(ip("81.2.69.142"));
        let shown = format!("{c:?}");
        assert_eq!(shown, "ClientIp(<redacted>)");
        assert!(!shown.contains("81"));
    }

    #[test]
    fn spoofed_header_from_untrusted_peer_is_ignored() {
        let trusted: TrustedProxies = "10.0.0.0/8".parse().unwrap();
        let h = headers(&[("x-forwarded-for", "8.8.8.8"), ("forwarded", "for=1.1.1.1")]);
        let got = trusted.client_ip(ip("203.0.113.9"), &h);
        assert_eq!(got.expose(), ip("203.0.113.9"));
    }

    #[test]
    fn without_trusted_proxies_headers_are_never_used() {
        let h = headers(&[("x-forwarded-for", "8.8.8.8")]);
        let got = TrustedProxies::none().client_ip(ip("127.0.0.1"), &h);
        assert_eq!(got.expose(), ip("127.0.0.1"));
    }

    #[test]
    fn trusted_proxy_x_forwarded_for_gives_rightmost_untrusted_hop() {
        let trusted: TrustedProxies = "10.0.0.0/8, 192.168.1.1".parse().unwrap();
        // The visitor sent a fake first entry; our proxies appended the real hops.
        let h = headers(&[("x-forwarded-for", "6.6.6.6, 81.2.69.142, 192.168.1.1")]);
        let got = trusted.client_ip(ip("10.1.2.3"), &h);
        assert_eq!(got.expose(), ip("81.2.69.142"));
    }

    #[test]
    fn multiple_x_forwarded_for_headers_form_one_list() {
        let trusted: TrustedProxies = "127.0.0.1/32".parse().unwrap();
        let h = headers(&[
            ("x-forwarded-for", "6.6.6.6"),
            ("x-forwarded-for", "8.8.8.8"),
        ]);
        assert_eq!(
            trusted.client_ip(ip("127.0.0.1"), &h).expose(),
            ip("8.8.8.8")
        );
    }

    #[test]
    fn forwarded_header_wins_and_handles_ipv6_and_ports() {
        let trusted: TrustedProxies = "::1/128".parse().unwrap();
        let h = headers(&[
            ("forwarded", r#"for="[2001:db8:cafe::17]:4711";proto=https"#),
            ("x-forwarded-for", "8.8.8.8"),
        ]);
        assert_eq!(
            trusted.client_ip(ip("::1"), &h).expose(),
            ip("2001:db8:cafe::17")
        );
        let h = headers(&[("forwarded", "for=192.0.2.60:8080;by=203.0.113.43")]);
        assert_eq!(trusted.client_ip(ip("::1"), &h).expose(), ip("192.0.2.60"));
    }

    #[test]
    fn unreadable_hop_stops_the_walk_at_the_last_trusted_address() {
        let trusted: TrustedProxies = "10.0.0.0/8".parse().unwrap();
        let h = headers(&[("forwarded", "for=8.8.8.8, for=_hidden, for=10.0.0.7")]);
        assert_eq!(
            trusted.client_ip(ip("10.0.0.1"), &h).expose(),
            ip("10.0.0.7")
        );
    }

    #[test]
    fn trusted_peer_without_headers_is_the_client() {
        let trusted: TrustedProxies = "10.0.0.0/8".parse().unwrap();
        let got = trusted.client_ip(ip("10.0.0.1"), &HeaderMap::new());
        assert_eq!(got.expose(), ip("10.0.0.1"));
    }

    #[test]
    fn ipv4_mapped_peer_is_treated_as_ipv4() {
        let trusted: TrustedProxies = "127.0.0.0/8".parse().unwrap();
        let h = headers(&[("x-forwarded-for", "8.8.8.8")]);
        let got = trusted.client_ip(ip("::ffff:127.0.0.1"), &h);
        assert_eq!(got.expose(), ip("8.8.8.8"));
    }

    #[test]
    fn bad_cidr_is_a_clear_error() {
        let err = "10.0.0.0/8,nonsense".parse::<TrustedProxies>().unwrap_err();
        assert!(err.contains("`nonsense`"), "{err}");
    }

    #[test]
    fn local_addresses_are_recognised() {
        for local in [
            "127.0.0.1",
            "10.1.1.1",
            "192.168.0.1",
            "::1",
            "fd00::1",
            "100.64.0.1",
        ] {
            assert!(ClientIp::new(ip(local)).is_local(), "{local}");
        }
        for public in ["8.8.8.8", "2001:4860:4860::8888"] {
            assert!(!ClientIp::new(ip(public)).is_local(), "{public}");
        }
    }
}
