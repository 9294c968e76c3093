//! IP allowlists (docs/CONTRACT.md section 13): CIDR blocks parsed, canonicalised and matched
//! over `std::net`, with no crate. A block is an address and a prefix length; an address alone
//! is a block of one (`/32`, `/128`).
//!
//! IPv4-mapped IPv6 (`::ffff:a.b.c.d`) is the IPv4 address it maps, on both sides: a client
//! reaching the edge over a dual stack may be reported either way, and an allowlist written in
//! one family should not silently refuse it in the other.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// One CIDR block, its host bits cleared (`10.1.2.3/8` is `10.0.0.0/8`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Block {
    addr: IpAddr,
    prefix: u8,
}

/// An IPv4-mapped IPv6 address as IPv4; any other address as it is.
fn unmap(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

fn bits(ip: IpAddr) -> (u128, u8) {
    match ip {
        IpAddr::V4(v4) => (u128::from(u32::from(v4)), 32),
        IpAddr::V6(v6) => (u128::from(v6), 128),
    }
}

/// The mask of a `prefix`-bit network in a `width`-bit address.
fn mask(prefix: u8, width: u8) -> u128 {
    if prefix == 0 {
        0
    } else {
        (u128::MAX << (128 - u32::from(prefix))) >> (128 - u32::from(width))
    }
}

impl Block {
    /// `a.b.c.d/n`, `x:y::z/n`, or a bare address. `None` for anything else (a zone id, a
    /// prefix out of range or with a sign or leading zero, spaces).
    pub fn parse(s: &str) -> Option<Block> {
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => {
                let digits = !p.is_empty()
                    && p.len() <= 3
                    && p.bytes().all(|b| b.is_ascii_digit())
                    && (p == "0" || !p.starts_with('0'));
                if !digits {
                    return None;
                }
                (a, Some(p.parse::<u8>().ok()?))
            }
            None => (s, None),
        };
        let parsed: IpAddr = addr.parse().ok()?;
        let (addr, prefix) = match parsed {
            // A mapped IPv6 block is its IPv4 block (only when the prefix covers the mapping).
            IpAddr::V6(v6) if v6.to_ipv4_mapped().is_some() => {
                let p = prefix.unwrap_or(128);
                if p < 96 {
                    (parsed, p)
                } else {
                    (unmap(parsed), p - 96)
                }
            }
            IpAddr::V4(_) => (parsed, prefix.unwrap_or(32)),
            IpAddr::V6(_) => (parsed, prefix.unwrap_or(128)),
        };
        let (value, width) = bits(addr);
        if prefix > width {
            return None;
        }
        let net = value & mask(prefix, width);
        let addr = match addr {
            IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::from(net as u32)),
            IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::from(net)),
        };
        Some(Block { addr, prefix })
    }

    /// Whether `ip` lies in this block.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = unmap(ip);
        let (net, width) = bits(self.addr);
        let (value, ip_width) = bits(ip);
        width == ip_width && value & mask(self.prefix, width) == net
    }

    /// Whether every address of `other` lies in this block.
    pub fn covers(&self, other: &Block) -> bool {
        other.prefix >= self.prefix && self.contains(other.addr)
    }
}

impl std::fmt::Display for Block {
    /// The canonical spelling: network address (RFC 5952 for IPv6) and prefix, always.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// Parses a client address (`CF-Connecting-IP`); `None` when absent or unreadable.
pub fn client_ip(header: Option<&str>) -> Option<IpAddr> {
    header?.trim().parse().ok()
}

/// Whether `ip` lies in one of the canonical `blocks` (as stored). An unreadable stored block
/// matches nothing (fail closed).
pub fn allowed(blocks: &[String], ip: Option<IpAddr>) -> bool {
    let Some(ip) = ip else { return false };
    blocks
        .iter()
        .filter_map(|b| Block::parse(b))
        .any(|b| b.contains(ip))
}

/// Whether every block of `inner` lies inside some block of `outer` (never widening).
pub fn subset(outer: &[String], inner: &[String]) -> bool {
    let outer: Vec<Block> = outer.iter().filter_map(|b| Block::parse(b)).collect();
    inner.iter().all(|b| match Block::parse(b) {
        Some(b) => outer.iter().any(|o| o.covers(&b)),
        None => false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_mapped_ipv6_block_is_its_ipv4_block_from_prefix_96() {
        let at96 = Block::parse("::ffff:10.0.0.0/96").unwrap();
        assert_eq!(at96.to_string(), "0.0.0.0/0");
        let at95 = Block::parse("::ffff:10.0.0.0/95").unwrap();
        assert!(
            at95.to_string().contains(':'),
            "{at95}: stays an IPv6 block"
        );
    }

    fn canon(s: &str) -> Option<String> {
        Block::parse(s).map(|b| b.to_string())
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn blocks_are_canonicalised() {
        assert_eq!(canon("10.1.2.3/8").as_deref(), Some("10.0.0.0/8"));
        assert_eq!(canon("192.0.2.7").as_deref(), Some("192.0.2.7/32"));
        assert_eq!(canon("0.0.0.0/0").as_deref(), Some("0.0.0.0/0"));
        assert_eq!(
            canon("2001:DB8:0:0::1/32").as_deref(),
            Some("2001:db8::/32")
        );
        assert_eq!(canon("2001:db8::1").as_deref(), Some("2001:db8::1/128"));
        assert_eq!(canon("::/0").as_deref(), Some("::/0"));
        assert_eq!(
            canon("::ffff:192.0.2.0/120").as_deref(),
            Some("192.0.2.0/24"),
            "a mapped block is its IPv4 block"
        );
    }

    #[test]
    fn bad_blocks_are_refused() {
        for bad in [
            "",
            "10.0.0.0/33",
            "2001:db8::/129",
            "10.0.0.0/",
            "10.0.0.0/+8",
            "10.0.0.0/08",
            "10.0.0/8",
            "10.0.0.0/8 ",
            " 10.0.0.0/8",
            "fe80::1%eth0",
            "example.com",
            "10.0.0.0/8/8",
            "256.0.0.0",
        ] {
            assert_eq!(canon(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn edges_of_a_block() {
        let b = Block::parse("192.0.2.0/24").unwrap();
        assert!(b.contains(ip("192.0.2.0")));
        assert!(b.contains(ip("192.0.2.255")));
        assert!(!b.contains(ip("192.0.1.255")));
        assert!(!b.contains(ip("192.0.3.0")));
        let one = Block::parse("192.0.2.7").unwrap();
        assert!(one.contains(ip("192.0.2.7")));
        assert!(!one.contains(ip("192.0.2.8")));
        let all = Block::parse("0.0.0.0/0").unwrap();
        assert!(all.contains(ip("255.255.255.255")));
        assert!(!all.contains(ip("2001:db8::1")), "families never mix");
        let v6 = Block::parse("2001:db8::/64").unwrap();
        assert!(v6.contains(ip("2001:db8::ffff:ffff:ffff:ffff")));
        assert!(!v6.contains(ip("2001:db8:0:1::")));
        assert!(!v6.contains(ip("192.0.2.1")));
        assert!(Block::parse("::/0").unwrap().contains(ip("::1")));
    }

    #[test]
    fn mapped_ipv6_clients_match_ipv4_blocks() {
        let b = Block::parse("192.0.2.0/24").unwrap();
        assert!(b.contains(ip("::ffff:192.0.2.9")));
        assert!(!b.contains(ip("::ffff:198.51.100.1")));
        // Not a mapping: an IPv4-compatible or NAT64 address stays IPv6.
        assert!(!b.contains(ip("64:ff9b::192.0.2.9")));
    }

    #[test]
    fn allowlists_and_subsets() {
        let list = vec!["192.0.2.0/24".to_owned(), "2001:db8::/32".to_owned()];
        assert!(allowed(&list, client_ip(Some("192.0.2.10"))));
        assert!(allowed(&list, client_ip(Some("2001:db8:1::5"))));
        assert!(!allowed(&list, client_ip(Some("198.51.100.1"))));
        assert!(!allowed(&list, None), "no client address: refused");
        assert!(!allowed(&list, client_ip(Some("garbage"))));
        assert!(subset(&list, &["192.0.2.128/25".to_owned()]));
        assert!(subset(&list, &["2001:db8:ff::/48".to_owned()]));
        assert!(!subset(&list, &["192.0.0.0/16".to_owned()]));
        assert!(!subset(&list, &["198.51.100.0/24".to_owned()]));
        assert!(!subset(&list, &["2001:db8::/31".to_owned()]));
    }
}
