//! What an IP address stands for, after the IANA IPv4 and IPv6 Special-Purpose Address
//! Registries. Addresses that embed an IPv4 address (IPv4-mapped and -compatible, NAT64, 6to4,
//! Teredo) stand for that address: otherwise `[64:ff9b::a9fe:a9fe]` would reach 169.254.169.254
//! through a NAT64 gateway in an IPv6-only core.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::{Ipv4Net, Ipv6Net};

/// Where an address leads, as far as the sink policy cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddressClass {
    /// A globally reachable unicast address.
    Public,
    Loopback,
    /// Private, shared (CGNAT), link-local, unique-local and local-use NAT64: the operator's
    /// own network, which `allow_private_sinks` may open.
    Private,
    /// Every other special-purpose, reserved or multicast range: never a sink.
    Reserved,
}

use AddressClass::{Loopback, Private, Reserved};

const fn v4(a: u8, b: u8, c: u8, d: u8, len: u8) -> Ipv4Net {
    Ipv4Net::new_assert(Ipv4Addr::new(a, b, c, d), len)
}

#[allow(clippy::too_many_arguments)]
const fn v6(segments: [u16; 8], len: u8) -> Ipv6Net {
    let [a, b, c, d, e, f, g, h] = segments;
    Ipv6Net::new_assert(Ipv6Addr::new(a, b, c, d, e, f, g, h), len)
}

/// The IPv4 registry (2025), plus multicast and the reserved 240/4 (which holds the broadcast
/// address). The ranges do not overlap.
const IPV4: &[(Ipv4Net, AddressClass)] = &[
    (v4(0, 0, 0, 0, 8), Reserved),       // "this network" (RFC 791)
    (v4(10, 0, 0, 0, 8), Private),       // RFC 1918
    (v4(100, 64, 0, 0, 10), Private),    // shared address space, CGNAT (RFC 6598)
    (v4(127, 0, 0, 0, 8), Loopback),     // RFC 1122
    (v4(169, 254, 0, 0, 16), Private),   // link-local (RFC 3927)
    (v4(172, 16, 0, 0, 12), Private),    // RFC 1918
    (v4(192, 0, 0, 0, 24), Reserved),    // IETF protocol assignments (RFC 6890), DS-Lite, PCP, TURN
    (v4(192, 0, 2, 0, 24), Reserved),    // TEST-NET-1 (RFC 5737)
    (v4(192, 31, 196, 0, 24), Reserved), // AS112-v4 (RFC 7535)
    (v4(192, 52, 193, 0, 24), Reserved), // AMT (RFC 7450)
    (v4(192, 88, 99, 0, 24), Reserved),  // deprecated 6to4 relay anycast (RFC 7526)
    (v4(192, 168, 0, 0, 16), Private),   // RFC 1918
    (v4(192, 175, 48, 0, 24), Reserved), // direct delegation AS112 (RFC 7534)
    (v4(198, 18, 0, 0, 15), Reserved),   // benchmarking (RFC 2544)
    (v4(198, 51, 100, 0, 24), Reserved), // TEST-NET-2 (RFC 5737)
    (v4(203, 0, 113, 0, 24), Reserved),  // TEST-NET-3 (RFC 5737)
    (v4(224, 0, 0, 0, 4), Reserved),     // multicast (RFC 5771)
    (v4(240, 0, 0, 0, 4), Reserved),     // reserved (RFC 1112), limited broadcast (RFC 919)
];

/// The IPv6 registry (2025) without the IPv4-embedding prefixes, which [`classify_v6`] decodes
/// first. Longer prefixes come before the ones that contain them.
const IPV6: &[(Ipv6Net, AddressClass)] = &[
    (v6([0x100, 0, 0, 0, 0, 0, 0, 0], 64), Reserved), // discard-only (RFC 6666)
    (v6([0x100, 0, 0, 1, 0, 0, 0, 0], 64), Reserved), // dummy prefix (RFC 9780)
    (v6([0x2001, 0xdb8, 0, 0, 0, 0, 0, 0], 32), Reserved), // documentation (RFC 3849)
    (v6([0x2001, 0, 0, 0, 0, 0, 0, 0], 23), Reserved), // IETF protocol assignments (RFC 2928): PCP, AMT, AS112, ORCHID, benchmarking
    (v6([0x2620, 0x4f, 0x8000, 0, 0, 0, 0, 0], 48), Reserved), // direct delegation AS112 (RFC 7534)
    (v6([0x3fff, 0, 0, 0, 0, 0, 0, 0], 20), Reserved), // documentation (RFC 9637)
    (v6([0x5f00, 0, 0, 0, 0, 0, 0, 0], 16), Reserved), // SRv6 SIDs (RFC 9602)
    (v6([0xfc00, 0, 0, 0, 0, 0, 0, 0], 7), Private),   // unique-local (RFC 4193)
    (v6([0xfe80, 0, 0, 0, 0, 0, 0, 0], 10), Private),  // link-local (RFC 4291)
    (v6([0xfec0, 0, 0, 0, 0, 0, 0, 0], 10), Private),  // deprecated site-local (RFC 3879)
    (v6([0xff00, 0, 0, 0, 0, 0, 0, 0], 8), Reserved),  // multicast (RFC 4291)
];

const IPV4_MAPPED: Ipv6Net = v6([0, 0, 0, 0, 0, 0xffff, 0, 0], 96);
const IPV4_COMPATIBLE: Ipv6Net = v6([0, 0, 0, 0, 0, 0, 0, 0], 96);
const NAT64_WELL_KNOWN: Ipv6Net = v6([0x64, 0xff9b, 0, 0, 0, 0, 0, 0], 96);
const NAT64_LOCAL_USE: Ipv6Net = v6([0x64, 0xff9b, 1, 0, 0, 0, 0, 0], 48);
const SIX_TO_FOUR: Ipv6Net = v6([0x2002, 0, 0, 0, 0, 0, 0, 0], 16);
const TEREDO: Ipv6Net = v6([0x2001, 0, 0, 0, 0, 0, 0, 0], 32);
/// Only this block is allocated for global unicast; the rest of the space is reserved by the IETF.
const GLOBAL_UNICAST: Ipv6Net = v6([0x2000, 0, 0, 0, 0, 0, 0, 0], 3);

pub fn classify(ip: IpAddr) -> AddressClass {
    match ip {
        IpAddr::V4(ip) => classify_v4(ip),
        IpAddr::V6(ip) => classify_v6(ip),
    }
}

fn classify_v4(ip: Ipv4Addr) -> AddressClass {
    IPV4.iter().find(|(net, _)| net.contains(&ip)).map_or(AddressClass::Public, |(_, class)| *class)
}

fn classify_v6(ip: Ipv6Addr) -> AddressClass {
    let bits = ip.to_bits();
    let low32 = Ipv4Addr::from_bits(bits as u32);
    if ip.is_unspecified() {
        return Reserved;
    }
    if ip.is_loopback() {
        return Loopback;
    }
    if IPV4_MAPPED.contains(&ip) || IPV4_COMPATIBLE.contains(&ip) || NAT64_WELL_KNOWN.contains(&ip) {
        return classify_v4(low32);
    }
    if NAT64_LOCAL_USE.contains(&ip) {
        // Where the IPv4 address sits depends on the prefix length the operator chose inside the
        // /48 (RFC 6052); /96 is the usual one. The block itself is the operator's.
        return both(Private, classify_v4(low32));
    }
    if SIX_TO_FOUR.contains(&ip) {
        return classify_v4(Ipv4Addr::from_bits((bits >> 80) as u32));
    }
    if TEREDO.contains(&ip) {
        // 2001:0:<server>:<flags>:<port>:<client>, the client's address inverted (RFC 4380).
        let server = Ipv4Addr::from_bits((bits >> 64) as u32);
        return both(classify_v4(server), classify_v4(Ipv4Addr::from_bits(!(bits as u32))));
    }
    if let Some((_, class)) = IPV6.iter().find(|(net, _)| net.contains(&ip)) {
        return *class;
    }
    if GLOBAL_UNICAST.contains(&ip) { AddressClass::Public } else { Reserved }
}

/// An address that leads to two places is as restricted as both: one permission cannot open
/// what needs two, so loopback through a private prefix is refused.
fn both(a: AddressClass, b: AddressClass) -> AddressClass {
    match (a, b) {
        (AddressClass::Public, other) | (other, AddressClass::Public) => other,
        (a, b) if a == b => a,
        _ => Reserved,
    }
}
