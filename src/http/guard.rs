//! The pure half of the intake guards: who the client is (the TCP peer, or
//! what a trusted proxy says), whether a partner's allowlist admits it, the
//! key it is rate-limited under, and the `Retry-After` of a limiter's wait.
//! The limiters themselves live in `http::limits`.

use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use http::HeaderMap;

use crate::config::Cidr;
use crate::config::cidr::any_contains;

/// The client's address.
///
/// The TCP peer, unless the peer is a trusted proxy: then the `header`
/// (`X-Forwarded-For` style, every line of it in order, the nearest hop
/// last) is walked from the right past further trusted proxies, and the
/// first address that is not one is the client. A header from an untrusted
/// peer is never read, so a client cannot choose its own address. When the
/// walk runs out (no header, only trusted proxies, or an entry that is not
/// an address), the client is the last trusted hop seen: nothing further
/// left can be vouched for.
///
/// Addresses are canonical: an IPv4-mapped IPv6 peer (`::ffff:10.1.2.3`, as
/// a dual-stack listener sees IPv4 clients) is its IPv4 address.
pub fn client_ip(peer: IpAddr, headers: &HeaderMap, header: &str, trusted: &[Cidr]) -> IpAddr {
    let peer = peer.to_canonical();
    if !any_contains(trusted, peer) {
        return peer;
    }
    let values: Vec<Option<&str>> = headers.get_all(header).iter().map(|value| value.to_str().ok()).collect();
    let mut hops = values.iter().rev().flat_map(|value| match value {
        Some(list) => list.rsplit(',').map(parse_hop).collect::<Vec<_>>(),
        // Not visible ASCII: unreadable, so the walk stops here.
        None => vec![None],
    });
    let mut client = peer;
    while let Some(Some(hop)) = hops.next() {
        client = hop;
        if !any_contains(trusted, hop) {
            break;
        }
    }
    client
}

/// One `X-Forwarded-For` entry: an address, possibly with a port (some
/// proxies append one) or IPv6 brackets.
fn parse_hop(entry: &str) -> Option<IpAddr> {
    let entry = entry.trim();
    let ip = entry
        .parse::<IpAddr>()
        .ok()
        .or_else(|| entry.parse::<SocketAddr>().ok().map(|address| address.ip()))
        .or_else(|| entry.strip_prefix('[').and_then(|rest| rest.strip_suffix(']')).and_then(|ip| ip.parse().ok()))?;
    Some(ip.to_canonical())
}

/// Whether a partner's allowlist admits `client`; no list admits everyone.
pub fn allowed(client: IpAddr, allow: Option<&[Cidr]>) -> bool {
    allow.is_none_or(|list| any_contains(list, client))
}

/// The key a client is rate-limited under: an IPv4 address itself, an IPv6
/// address's /64. A single IPv6 host usually holds a whole /64, so keying by
/// address would give it 2^64 separate quotas and let it grow the limiter's
/// map at will.
pub fn rate_key(client: IpAddr) -> IpAddr {
    match client.to_canonical() {
        IpAddr::V4(v4) => IpAddr::V4(v4),
        IpAddr::V6(v6) => {
            let prefix = u128::from(v6) & !((1u128 << 64) - 1);
            IpAddr::V6(Ipv6Addr::from(prefix))
        }
    }
}

/// `Retry-After` for a limiter's wait: whole seconds rounded up, at least 1
/// (a 0 would invite an immediate retry that is refused again).
pub fn retry_after_secs(wait: Duration) -> u32 {
    let secs = wait.as_secs().saturating_add(u64::from(wait.subsec_nanos() > 0));
    u32::try_from(secs).unwrap_or(u32::MAX).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const XFF: &str = "x-forwarded-for";

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    fn cidrs(list: &[&str]) -> Vec<Cidr> {
        list.iter().map(|text| text.parse().unwrap()).collect()
    }

    fn headers(lines: &[&str]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for line in lines {
            map.append(XFF, line.parse().unwrap());
        }
        map
    }

    #[test]
    fn without_trusted_proxies_the_client_is_the_peer() {
        let spoofed = headers(&["10.1.2.3"]);
        assert_eq!(client_ip(ip("127.0.0.1"), &spoofed, XFF, &[]), ip("127.0.0.1"));
        let other = cidrs(&["192.0.2.0/24"]);
        assert_eq!(client_ip(ip("127.0.0.1"), &spoofed, XFF, &other), ip("127.0.0.1"));
    }

    #[test]
    fn a_trusted_peer_names_the_client_as_the_right_most_untrusted_hop() {
        let trusted = cidrs(&["127.0.0.1", "10.0.0.0/8"]);
        // The left-most entry is whatever the client sent; only the hops the
        // trusted proxies appended count.
        let chain = headers(&["6.6.6.6, 203.0.113.9, 10.0.0.2"]);
        assert_eq!(client_ip(ip("127.0.0.1"), &chain, XFF, &trusted), ip("203.0.113.9"));
        // Several header lines are one list, in order.
        let lines = headers(&["6.6.6.6", "203.0.113.9", "10.0.0.2"]);
        assert_eq!(client_ip(ip("127.0.0.1"), &lines, XFF, &trusted), ip("203.0.113.9"));
    }

    #[test]
    fn a_trusted_peer_without_a_usable_header_is_the_client_itself() {
        let trusted = cidrs(&["127.0.0.1", "10.0.0.0/8"]);
        assert_eq!(client_ip(ip("127.0.0.1"), &HeaderMap::new(), XFF, &trusted), ip("127.0.0.1"));
        // Only trusted hops: the farthest one vouched for.
        assert_eq!(client_ip(ip("127.0.0.1"), &headers(&["10.0.0.7, 10.0.0.2"]), XFF, &trusted), ip("10.0.0.7"));
        // Garbage stops the walk: what lies left of it cannot be vouched for.
        assert_eq!(client_ip(ip("127.0.0.1"), &headers(&["203.0.113.9, bogus, 10.0.0.2"]), XFF, &trusted), ip("10.0.0.2"));
        assert_eq!(client_ip(ip("127.0.0.1"), &headers(&["203.0.113.9, "]), XFF, &trusted), ip("127.0.0.1"));
    }

    #[test]
    fn hops_with_ports_brackets_and_mapped_addresses_are_read() {
        let trusted = cidrs(&["127.0.0.1"]);
        for (entry, client) in [
            ("203.0.113.9:4711", "203.0.113.9"),
            ("[2001:db8::1]:4711", "2001:db8::1"),
            ("[2001:db8::1]", "2001:db8::1"),
            ("::ffff:203.0.113.9", "203.0.113.9"),
        ] {
            assert_eq!(client_ip(ip("127.0.0.1"), &headers(&[entry]), XFF, &trusted), ip(client), "{entry}");
        }
        // A dual-stack listener sees an IPv4 proxy as a mapped address.
        assert_eq!(client_ip(ip("::ffff:127.0.0.1"), &headers(&["203.0.113.9"]), XFF, &trusted), ip("203.0.113.9"));
    }

    #[test]
    fn the_configured_header_is_the_one_read() {
        let trusted = cidrs(&["127.0.0.1"]);
        let mut map = HeaderMap::new();
        map.insert("x-real-ip", "203.0.113.9".parse().unwrap());
        map.insert(XFF, "198.51.100.1".parse().unwrap());
        assert_eq!(client_ip(ip("127.0.0.1"), &map, "x-real-ip", &trusted), ip("203.0.113.9"));
    }

    #[test]
    fn allowlists_admit_only_their_ranges() {
        let list = cidrs(&["10.0.0.0/8", "2001:db8::/32"]);
        assert!(allowed(ip("10.1.2.3"), Some(&list)));
        assert!(allowed(ip("2001:db8::5"), Some(&list)));
        assert!(!allowed(ip("127.0.0.1"), Some(&list)));
        assert!(allowed(ip("127.0.0.1"), None));
    }

    #[test]
    fn ipv6_clients_share_their_64_for_rate_limiting() {
        assert_eq!(rate_key(ip("2001:db8:1:2:aaaa::1")), ip("2001:db8:1:2::"));
        assert_eq!(rate_key(ip("2001:db8:1:2:ffff::9")), rate_key(ip("2001:db8:1:2::1")));
        assert_ne!(rate_key(ip("2001:db8:1:3::1")), rate_key(ip("2001:db8:1:2::1")));
        assert_eq!(rate_key(ip("203.0.113.9")), ip("203.0.113.9"));
        assert_eq!(rate_key(ip("::ffff:203.0.113.9")), ip("203.0.113.9"));
    }

    #[test]
    fn retry_after_rounds_up_to_whole_seconds_and_is_never_zero() {
        assert_eq!(retry_after_secs(Duration::ZERO), 1);
        assert_eq!(retry_after_secs(Duration::from_millis(1)), 1);
        assert_eq!(retry_after_secs(Duration::from_millis(1_000)), 1);
        assert_eq!(retry_after_secs(Duration::from_millis(1_001)), 2);
        assert_eq!(retry_after_secs(Duration::from_secs(u64::MAX)), u32::MAX);
    }

    fn any_ip() -> impl Strategy<Value = IpAddr> {
        prop_oneof![any::<[u8; 4]>().prop_map(IpAddr::from), any::<[u8; 16]>().prop_map(IpAddr::from)]
    }

    /// A hop inside the proxies' 10.0.0.0/8, sometimes as a dual-stack
    /// listener writes it (IPv4-mapped IPv6): random addresses almost never
    /// fall in a trusted range, so chains that walk proxies are built.
    fn trusted_hop() -> impl Strategy<Value = IpAddr> {
        prop_oneof![
            any::<[u8; 3]>().prop_map(|[a, b, c]| IpAddr::from([10, a, b, c])),
            any::<[u8; 3]>().prop_map(|[a, b, c]| IpAddr::V6(std::net::Ipv4Addr::new(10, a, b, c).to_ipv6_mapped())),
        ]
    }

    fn untrusted_hop() -> impl Strategy<Value = IpAddr> {
        any_ip().prop_filter("outside the proxies' range", |hop| !any_contains(&cidrs(&["10.0.0.0/8"]), hop.to_canonical()))
    }

    /// `hops` as a proxy chain writes them: one comma-separated line or one
    /// line per hop, each hop bare or with a port.
    fn forwarded(hops: &[IpAddr], one_line: bool, ports: bool) -> HeaderMap {
        let entries: Vec<String> = hops.iter().map(|hop| if ports { SocketAddr::new(*hop, 443).to_string() } else { hop.to_string() }).collect();
        let mut map = HeaderMap::new();
        if one_line {
            map.insert(XFF, entries.join(", ").parse().unwrap());
        } else {
            for entry in &entries {
                map.append(XFF, entry.parse().unwrap());
            }
        }
        map
    }

    proptest! {
        /// Whatever an untrusted peer puts in the header, it is itself the client.
        #[test]
        fn an_untrusted_peers_header_never_changes_its_address(
            peer in any::<[u8; 4]>().prop_map(IpAddr::from),
            header in "[ -~]{0,80}",
            hops in proptest::collection::vec(any_ip(), 0..5),
        ) {
            let trusted = cidrs(&["10.0.0.0/8", "2001:db8::/32"]);
            prop_assume!(!any_contains(&trusted, peer));
            let list = hops.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ");
            for value in [header.as_str(), list.as_str()] {
                let Ok(value) = value.parse() else { continue };
                let mut map = HeaderMap::new();
                map.insert(XFF, value);
                prop_assert_eq!(client_ip(peer, &map, XFF, &trusted), peer);
            }
        }

        /// From a trusted peer the client is the peer or a hop of the header,
        /// and a trusted proxy only when no untrusted hop could be read.
        #[test]
        fn a_trusted_peer_yields_the_peer_or_a_listed_hop(
            hops in proptest::collection::vec(prop_oneof![any_ip(), trusted_hop()], 0..6),
        ) {
            let trusted = cidrs(&["10.0.0.0/8"]);
            let peer = ip("10.9.9.9");
            let list = hops.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ");
            let mut map = HeaderMap::new();
            if !list.is_empty() {
                map.insert(XFF, list.parse().unwrap());
            }
            let client = client_ip(peer, &map, XFF, &trusted);
            let canonical: Vec<IpAddr> = hops.iter().map(|hop| hop.to_canonical()).collect();
            prop_assert!(client == peer || canonical.contains(&client));
            let untrusted = canonical.iter().rev().find(|hop| !any_contains(&trusted, **hop));
            match untrusted {
                Some(first) => prop_assert_eq!(client, *first),
                None => prop_assert!(any_contains(&trusted, client)),
            }
        }

        /// Whatever the client wrote before it, the walk from a trusted peer
        /// passes every trusted proxy the chain ends with and stops at the
        /// client's own hop, the nearest untrusted one.
        #[test]
        fn the_walk_passes_every_trusted_proxy_and_stops_at_the_client(
            spoofed in proptest::collection::vec(any_ip(), 0..4),
            client in untrusted_hop(),
            proxies in proptest::collection::vec(trusted_hop(), 1..6),
            one_line in any::<bool>(),
            ports in any::<bool>(),
        ) {
            let trusted = cidrs(&["10.0.0.0/8"]);
            let hops: Vec<IpAddr> = spoofed.iter().chain([&client]).chain(&proxies).copied().collect();
            let map = forwarded(&hops, one_line, ports);
            prop_assert_eq!(client_ip(ip("10.9.9.9"), &map, XFF, &trusted), client.to_canonical());
        }

        /// A chain of trusted proxies only: the farthest one vouched for.
        #[test]
        fn a_chain_of_trusted_proxies_only_names_the_farthest(
            proxies in proptest::collection::vec(trusted_hop(), 1..6),
            one_line in any::<bool>(),
            ports in any::<bool>(),
        ) {
            let trusted = cidrs(&["10.0.0.0/8"]);
            let map = forwarded(&proxies, one_line, ports);
            prop_assert_eq!(client_ip(ip("10.9.9.9"), &map, XFF, &trusted), proxies[0].to_canonical());
        }
    }
}
