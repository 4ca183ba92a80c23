//! [`Cidr`]: an address range in config (`10.0.0.0/8`, `2001:db8::/32`, or a
//! bare address for one host), parsed once when the config loads so a
//! request only compares bits.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use ipnet::IpNet;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// An IPv4 or IPv6 network. IPv4 ranges also match IPv4-mapped IPv6 peers
/// (`::ffff:10.1.2.3`), since callers compare canonical addresses
/// (see [`Cidr::contains`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Cidr(IpNet);

impl Cidr {
    /// Whether `ip` lies in this range; an IPv4-mapped IPv6 address is read
    /// as the IPv4 address it carries.
    pub fn contains(&self, ip: IpAddr) -> bool {
        self.0.contains(&ip.to_canonical())
    }
}

impl FromStr for Cidr {
    type Err = String;

    /// `a.b.c.d/n`, `x::/n`, or a bare address (a /32 or /128). A range with
    /// bits set past its prefix (`10.1.2.3/8`) is refused rather than
    /// silently widened: it is usually a typo for a host or a smaller range.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let text = text.trim();
        if let Ok(ip) = text.parse::<IpAddr>() {
            return Ok(Cidr(IpNet::from(ip.to_canonical())));
        }
        let net: IpNet = text
            .parse()
            .map_err(|_| format!("{text:?} is not an IP address or a CIDR range (like 10.0.0.0/8 or 2001:db8::/32)"))?;
        if net.trunc() != net {
            return Err(format!("{text:?} has bits set past its /{} prefix; did you mean {}?", net.prefix_len(), net.trunc()));
        }
        Ok(Cidr(net))
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl Serialize for Cidr {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Cidr {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// Whether any range of `list` contains `ip`.
pub fn any_contains(list: &[Cidr], ip: IpAddr) -> bool {
    list.iter().any(|cidr| cidr.contains(ip))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn ranges_and_bare_addresses_parse() {
        let net: Cidr = "10.0.0.0/8".parse().unwrap();
        assert!(net.contains(ip("10.255.1.2")));
        assert!(!net.contains(ip("11.0.0.1")));
        let host: Cidr = "192.0.2.7".parse().unwrap();
        assert_eq!(host.to_string(), "192.0.2.7/32");
        assert!(host.contains(ip("192.0.2.7")) && !host.contains(ip("192.0.2.8")));
        let v6: Cidr = " 2001:db8::/32 ".parse().unwrap();
        assert!(v6.contains(ip("2001:db8:1::9")));
        assert!(!v6.contains(ip("10.0.0.1")));
    }

    #[test]
    fn ipv4_ranges_match_ipv4_mapped_ipv6_peers() {
        let net: Cidr = "10.0.0.0/8".parse().unwrap();
        assert!(net.contains(ip("::ffff:10.1.2.3")));
        let mapped: Cidr = "::ffff:10.1.2.3".parse().unwrap();
        assert_eq!(mapped.to_string(), "10.1.2.3/32");
    }

    #[test]
    fn host_bits_past_the_prefix_and_garbage_are_refused_with_a_hint() {
        let error = "10.1.2.3/8".parse::<Cidr>().unwrap_err();
        assert!(error.contains("did you mean 10.0.0.0/8"), "{error}");
        for bad in ["", "10.0.0.0/33", "example.com", "10.0.0/8", "1.2.3.4:80"] {
            assert!(bad.parse::<Cidr>().is_err(), "{bad}");
        }
    }

    #[test]
    fn serializes_as_the_string_it_reads() {
        #[derive(Serialize, Deserialize)]
        struct Holder {
            nets: Vec<Cidr>,
        }
        let holder: Holder = toml::from_str("nets = [\"10.0.0.0/8\", \"::1\"]").unwrap();
        assert_eq!(toml::to_string(&holder).unwrap().trim(), "nets = [\"10.0.0.0/8\", \"::1/128\"]");
    }
}
