//! The egress policy: which IP addresses hookd may open a connection to on behalf of a tenant.
//! hookd sends requests into other people's networks, so by default it refuses every address
//! that is not on the public internet (loopback, private networks, link-local and cloud
//! metadata, CGNAT, multicast, documentation ranges, ...). An operator allow-list of CIDRs
//! opens chosen ranges again. Pure logic: the connectors that enforce it at connect time live
//! with the HTTP clients.
//!
//! Invariant: IPv6 forms that carry an IPv4 address (IPv4-mapped `::ffff:a.b.c.d`,
//! IPv4-compatible `::a.b.c.d`, NAT64 `64:ff9b::/96`, 6to4 `2002::/16`) are judged by the IPv4
//! address they carry, so `[::ffff:127.0.0.1]` is as loopback as `127.0.0.1`.

use std::{
    fmt,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    str::FromStr,
};

/// The setting that opens ranges, named in refusals so an operator knows what to change.
pub const ALLOW_SETTING: &str = "allow_cidrs";

/// An IP network, `10.1.0.0/16` or `::1/128`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    network: IpAddr,
    prefix: u8,
}

/// A CIDR that cannot be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid cidr {value:?}: {reason}")]
pub struct CidrError {
    pub value: String,
    pub reason: &'static str,
}

impl FromStr for Cidr {
    type Err = CidrError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = |reason| CidrError { value: s.to_owned(), reason };
        let (addr, prefix) =
            s.trim().split_once('/').ok_or_else(|| err("expected ADDRESS/PREFIX"))?;
        let network: IpAddr =
            addr.parse().map_err(|_| err("the address is not an IPv4 or IPv6 address"))?;
        let max = if network.is_ipv4() { 32 } else { 128 };
        let prefix: u8 =
            prefix.parse().ok().filter(|p| *p <= max).ok_or_else(|| {
                err("the prefix length must be 0 to 32 (IPv4) or 0 to 128 (IPv6)")
            })?;
        if masked(network, prefix) != network {
            return Err(err("the address has bits set beyond the prefix length"));
        }
        Ok(Self { network, prefix })
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

impl Cidr {
    /// Whether `ip` is inside this network; an IPv4 network never contains an IPv6 address
    /// (the policy unwraps embedded IPv4 addresses before asking).
    pub fn contains(&self, ip: IpAddr) -> bool {
        ip.is_ipv4() == self.network.is_ipv4() && masked(ip, self.prefix) == self.network
    }
}

fn masked(ip: IpAddr, prefix: u8) -> IpAddr {
    match ip {
        IpAddr::V4(v4) => {
            let mask = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
            IpAddr::V4(Ipv4Addr::from(u32::from(v4) & mask))
        }
        IpAddr::V6(v6) => {
            let mask = u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0);
            IpAddr::V6(Ipv6Addr::from(u128::from(v6) & mask))
        }
    }
}

/// Why an address is refused: `127.0.0.1 is a loopback address`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{ip} is {class} address{}", embedded_note(*.embedded))]
pub struct Refusal {
    pub ip: IpAddr,
    /// The IPv4 address an IPv6 form carries, when that is what was judged.
    pub embedded: Option<Ipv4Addr>,
    /// The range, with its article: "a loopback", "the cloud metadata".
    pub class: &'static str,
}

fn embedded_note(embedded: Option<Ipv4Addr>) -> String {
    embedded.map(|v4| format!(" (it carries {v4})")).unwrap_or_default()
}

/// Which addresses hookd may connect to: every public address, plus the allow-list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EgressPolicy {
    allow: Vec<Cidr>,
}

impl EgressPolicy {
    /// The policy with `allow` opened; fails on the first CIDR that does not parse.
    pub fn new<S: AsRef<str>>(allow: &[S]) -> Result<Self, CidrError> {
        let allow = allow.iter().map(|s| s.as_ref().parse()).collect::<Result<_, _>>()?;
        Ok(Self { allow })
    }

    pub fn allowed(&self) -> &[Cidr] {
        &self.allow
    }

    /// `Ok` if hookd may connect to `ip`; the refusal says which forbidden range it is in.
    pub fn check(&self, ip: IpAddr) -> Result<(), Refusal> {
        let embedded = match ip {
            IpAddr::V6(v6) => embedded_ipv4(v6),
            IpAddr::V4(_) => None,
        };
        let judged = embedded.map_or(ip, IpAddr::V4);
        let Some(class) = forbidden_class(judged) else { return Ok(()) };
        if self.allow.iter().any(|c| c.contains(ip) || c.contains(judged)) {
            return Ok(());
        }
        Err(Refusal { ip, embedded, class })
    }
}

impl EgressPolicy {
    /// The early check of a URL host (at webhook create or update): an IP literal in a
    /// forbidden range, or `localhost`, is refused with the reason. Any other name passes:
    /// it may resolve anywhere, so the check at connect time is the one that holds.
    pub fn check_host(&self, host: &str) -> Result<(), String> {
        let host = host.to_ascii_lowercase();
        let name = host.strip_suffix('.').unwrap_or(&host);
        if name == "localhost" || name.ends_with(".localhost") {
            // RFC 6761: always loopback, so it is judged as the loopback addresses are.
            let loopback = [IpAddr::V4(Ipv4Addr::LOCALHOST), IpAddr::V6(Ipv6Addr::LOCALHOST)];
            if loopback.iter().all(|ip| self.check(*ip).is_err()) {
                return Err(format!("{name} is a loopback name"));
            }
            return Ok(());
        }
        match host_ip(&host) {
            Some(ip) => self.check(ip).map_err(|r| r.to_string()),
            None => Ok(()),
        }
    }
}

/// The IPv4 address an IPv6 address stands for, if it is one of the forms that carry one.
fn embedded_ipv4(v6: Ipv6Addr) -> Option<Ipv4Addr> {
    if let Some(v4) = v6.to_ipv4_mapped() {
        return Some(v4);
    }
    let bits = u128::from(v6);
    let low32 = Ipv4Addr::from((bits & 0xffff_ffff) as u32);
    // IPv4-compatible `::a.b.c.d` (deprecated, still routed by some stacks); `::` and `::1`
    // are IPv6's own unspecified and loopback addresses.
    if bits >> 32 == 0 && bits > 1 {
        return Some(low32);
    }
    // NAT64 well-known prefix (RFC 6052): a translator connects to the IPv4 address.
    if bits >> 32 == 0x0064_ff9b_0000_0000_0000_0000 {
        return Some(low32);
    }
    // 6to4 (RFC 3056): 2002:AABB:CCDD::/48 tunnels to AA.BB.CC.DD.
    if bits >> 112 == 0x2002 {
        return Some(Ipv4Addr::from(((bits >> 80) & 0xffff_ffff) as u32));
    }
    None
}

/// The forbidden range `ip` is in, with its article, or `None` for a public address.
pub fn forbidden_class(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => forbidden_v4(v4),
        IpAddr::V6(v6) => forbidden_v6(v6),
    }
}

fn forbidden_v4(ip: Ipv4Addr) -> Option<&'static str> {
    let [a, b, c, _] = ip.octets();
    // Most specific first: the metadata address is also link-local, 0.0.0.0 also in 0/8,
    // the broadcast address also in 240/4.
    let class = if ip.is_unspecified() {
        "an unspecified"
    } else if ip == Ipv4Addr::new(169, 254, 169, 254) {
        "the cloud metadata"
    } else if ip.is_broadcast() {
        "the broadcast"
    } else if a == 0 {
        "a \"this network\" (0.0.0.0/8)"
    } else if ip.is_loopback() {
        "a loopback"
    } else if ip.is_private() {
        "a private (RFC 1918)"
    } else if a == 100 && (b & 0xc0) == 64 {
        "a shared (CGNAT, 100.64.0.0/10)"
    } else if ip.is_link_local() {
        "a link-local"
    } else if a == 192 && b == 0 && c == 0 {
        "an IETF protocol assignments (192.0.0.0/24)"
    } else if ip.is_documentation() {
        "a documentation"
    } else if a == 198 && (b & 0xfe) == 18 {
        "a benchmarking (198.18.0.0/15)"
    } else if ip.is_multicast() {
        "a multicast"
    } else if a >= 240 {
        "a reserved (240.0.0.0/4)"
    } else {
        return None;
    };
    Some(class)
}

fn forbidden_v6(ip: Ipv6Addr) -> Option<&'static str> {
    let first = ip.segments()[0];
    let class = if ip.is_unspecified() {
        "an unspecified"
    } else if ip.is_loopback() {
        "a loopback"
    } else if ip.is_multicast() {
        "a multicast"
    } else if (first & 0xfe00) == 0xfc00 {
        "a unique local (fc00::/7)"
    } else if (first & 0xffc0) == 0xfe80 {
        "a link-local"
    } else if (first & 0xffc0) == 0xfec0 {
        "a site-local (fec0::/10)"
    } else if first == 0x2001 && ip.segments()[1] == 0x0db8 {
        "a documentation"
    } else if (first & 0xfff0) == 0x3ff0 {
        "a documentation (3fff::/20)"
    } else if u128::from(ip) >> 64 == 0x0100_0000_0000_0000 {
        "a discard-only (100::/64)"
    } else if u128::from(ip) >> 80 == 0x0064_ff9b_0001 {
        "a local-use NAT64 (64:ff9b:1::/48)"
    } else {
        return None;
    };
    Some(class)
}

/// The IP address a URL host spells, if it spells one: an IPv6 literal (with or without
/// brackets) or an IPv4 address in any form the C resolver accepts (`inet_aton`): dotted
/// decimal, one to four parts, each decimal, octal (`0` prefix) or hex (`0x` prefix), so
/// `2130706433`, `0x7f.1` and `0177.0.0.1` are all 127.0.0.1. `None` means a host name.
pub fn host_ip(host: &str) -> Option<IpAddr> {
    let unbracketed = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(host);
    if let Ok(v6) = unbracketed.parse::<Ipv6Addr>() {
        return Some(IpAddr::V6(v6));
    }
    // A trailing dot makes a name absolute; resolvers accept `127.0.0.1.` as well.
    loose_ipv4(host.strip_suffix('.').unwrap_or(host)).map(IpAddr::V4)
}

fn loose_ipv4(host: &str) -> Option<Ipv4Addr> {
    let parts: Vec<u64> = host.split('.').map(loose_number).collect::<Option<_>>()?;
    // The last part fills every byte the earlier parts leave.
    let (last, init) = parts.split_last()?;
    if init.len() > 3 || init.iter().any(|p| *p > 255) {
        return None;
    }
    let room = 8 * (4 - init.len() as u32);
    if *last >= 1u64 << room {
        return None;
    }
    let mut value: u64 = 0;
    for part in init {
        value = (value << 8) | part;
    }
    value = (value << room) | last;
    u32::try_from(value).ok().map(Ipv4Addr::from)
}

fn loose_number(part: &str) -> Option<u64> {
    let (digits, radix) =
        if let Some(hex) = part.strip_prefix("0x").or_else(|| part.strip_prefix("0X")) {
            (hex, 16)
        } else if part.len() > 1 && part.starts_with('0') {
            (&part[1..], 8)
        } else {
            (part, 10)
        };
    if digits.is_empty() && radix == 16 {
        // `0x` alone is 0 for inet_aton.
        return Some(0);
    }
    if digits.is_empty() || digits.len() > 12 || !digits.chars().all(|c| c.is_digit(radix)) {
        return None;
    }
    u64::from_str_radix(digits, radix).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("test address")
    }

    fn refused(policy: &EgressPolicy, s: &str) -> String {
        policy.check(ip(s)).expect_err(s).to_string()
    }

    #[test]
    fn every_forbidden_class_is_refused_with_its_reason() {
        let p = EgressPolicy::default();
        let cases = [
            ("127.0.0.1", "127.0.0.1 is a loopback address"),
            ("127.255.0.9", "loopback"),
            ("10.0.0.1", "10.0.0.1 is a private (RFC 1918) address"),
            ("172.16.5.4", "private"),
            ("172.31.255.255", "private"),
            ("192.168.1.1", "private"),
            ("100.64.0.1", "100.64.0.1 is a shared (CGNAT, 100.64.0.0/10) address"),
            ("100.127.255.254", "CGNAT"),
            ("169.254.169.254", "169.254.169.254 is the cloud metadata address"),
            ("169.254.1.1", "link-local"),
            ("0.0.0.0", "0.0.0.0 is an unspecified address"),
            ("0.1.2.3", "this network"),
            ("255.255.255.255", "broadcast"),
            ("224.0.0.1", "multicast"),
            ("239.255.255.250", "multicast"),
            ("192.0.2.7", "documentation"),
            ("198.51.100.7", "documentation"),
            ("203.0.113.7", "documentation"),
            ("198.18.0.1", "benchmarking"),
            ("198.19.255.1", "benchmarking"),
            ("240.0.0.1", "reserved"),
            ("192.0.0.192", "IETF protocol"),
            ("::1", "::1 is a loopback address"),
            ("::", ":: is an unspecified address"),
            ("fd00::1", "fd00::1 is a unique local (fc00::/7) address"),
            ("fc00::1", "unique local"),
            ("fe80::1", "link-local"),
            ("ff02::1", "multicast"),
            ("2001:db8::1", "documentation"),
            ("fec0::1", "site-local"),
        ];
        for (addr, reason) in cases {
            let message = refused(&p, addr);
            assert!(message.contains(reason), "{addr}: {message:?} lacks {reason:?}");
        }
    }

    #[test]
    fn public_addresses_pass() {
        let p = EgressPolicy::default();
        for addr in [
            "1.1.1.1",
            "8.8.8.8",
            "93.184.215.14",
            "172.32.0.1",
            "100.128.0.1",
            "198.20.0.1",
            "2606:4700:4700::1111",
            "2a00:1450:4001::200e",
        ] {
            assert_eq!(p.check(ip(addr)), Ok(()), "{addr}");
        }
    }

    #[test]
    fn ipv6_forms_carrying_ipv4_are_judged_by_it() {
        let p = EgressPolicy::default();
        assert_eq!(
            refused(&p, "::ffff:127.0.0.1"),
            "::ffff:127.0.0.1 is a loopback address (it carries 127.0.0.1)"
        );
        assert!(refused(&p, "::ffff:169.254.169.254").contains("cloud metadata"));
        assert!(refused(&p, "::ffff:10.0.0.1").contains("private"));
        assert!(refused(&p, "::127.0.0.1").contains("loopback"), "IPv4-compatible");
        assert!(refused(&p, "64:ff9b::7f00:1").contains("loopback"), "NAT64");
        assert!(refused(&p, "64:ff9b::a9fe:a9fe").contains("cloud metadata"), "NAT64");
        assert!(refused(&p, "2002:7f00:1::1").contains("loopback"), "6to4");
        assert_eq!(p.check(ip("::ffff:8.8.8.8")), Ok(()));
        assert_eq!(p.check(ip("64:ff9b::808:808")), Ok(()));
    }

    #[test]
    fn the_allow_list_opens_chosen_ranges_only() {
        let p = EgressPolicy::new(&["127.0.0.0/8", "::1/128", "10.1.0.0/16"]).expect("valid");
        for addr in ["127.0.0.1", "127.9.9.9", "::1", "::ffff:127.0.0.1", "10.1.200.3"] {
            assert_eq!(p.check(ip(addr)), Ok(()), "{addr}");
        }
        for addr in ["10.2.0.1", "169.254.169.254", "fd00::1", "0.0.0.0", "::"] {
            assert!(p.check(ip(addr)).is_err(), "{addr}");
        }
        assert_eq!(p.allowed().len(), 3);
        assert_eq!(p.allowed()[2].to_string(), "10.1.0.0/16");
        let everything = EgressPolicy::new(&["0.0.0.0/0", "::/0"]).expect("valid");
        assert_eq!(everything.check(ip("169.254.169.254")), Ok(()));
        assert_eq!(everything.check(ip("fd00::1")), Ok(()));
    }

    #[test]
    fn invalid_cidrs_are_refused_clearly() {
        for (bad, reason) in [
            ("10.0.0.0", "ADDRESS/PREFIX"),
            ("10.0.0/8", "not an IPv4 or IPv6"),
            ("10.0.0.0/33", "prefix length"),
            ("::1/129", "prefix length"),
            ("10.0.0.1/8", "beyond the prefix"),
            ("localhost/32", "not an IPv4 or IPv6"),
        ] {
            let err = EgressPolicy::new(&[bad]).expect_err(bad);
            assert_eq!(err.value, bad);
            assert!(err.to_string().contains(reason), "{bad}: {err}");
        }
    }

    #[test]
    fn the_early_host_check_refuses_forbidden_literals_and_localhost() {
        let p = EgressPolicy::default();
        assert_eq!(p.check_host("LocalHost."), Err("localhost is a loopback name".into()));
        assert!(p.check_host("api.localhost").is_err());
        assert!(p.check_host("2130706433").expect_err("decimal").contains("loopback"));
        assert!(p.check_host("[fd00::1]").expect_err("ula").contains("unique local"));
        assert_eq!(p.check_host("example.com"), Ok(()));
        assert_eq!(p.check_host("8.8.8.8"), Ok(()));
        let loopback = EgressPolicy::new(&["127.0.0.0/8"]).expect("valid");
        assert_eq!(loopback.check_host("localhost"), Ok(()));
        assert_eq!(loopback.check_host("127.0.0.1"), Ok(()));
    }

    #[test]
    fn hosts_spelling_an_ip_in_any_form_are_recognised() {
        let loopback = Some(ip("127.0.0.1"));
        for host in [
            "127.0.0.1",
            "127.0.0.1.",
            "2130706433",
            "0x7f000001",
            "0x7f.1",
            "0177.0.0.1",
            "127.1",
            "127.0.1",
            "0x7F.0.0.1",
        ] {
            assert_eq!(host_ip(host), loopback, "{host}");
        }
        assert_eq!(host_ip("[::1]"), Some(ip("::1")));
        assert_eq!(host_ip("::ffff:127.0.0.1"), Some(ip("::ffff:127.0.0.1")));
        assert_eq!(host_ip("0"), Some(ip("0.0.0.0")));
        for name in ["localhost", "example.com", "1.2.3.4.5", "256.1.1.1", "08.1.1.1", "1.2.3.x"] {
            assert_eq!(host_ip(name), None, "{name}");
        }
    }
}
