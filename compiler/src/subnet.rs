//! IP subnets as Istio writes them in `destinationSubnets`: a CIDR, or a single address,
//! held as ipnet's networks.

use std::net::IpAddr;

use ipnet::IpNet;
use vsteer_plan::ServiceKey;

use crate::virtual_service::VirtualServiceError;

/// A network and prefix length, e.g. `10.0.0.0/8`; a bare address is a full-length prefix.
/// Host bits of the written network are ignored, as Envoy ignores them.
pub fn parse(text: &str) -> Result<IpNet, VirtualServiceError> {
    let (address, prefix) = match text.split_once('/') {
        Some((address, prefix)) => (address, Some(prefix)),
        None => (text, None),
    };
    let address: IpAddr = address
        .parse()
        .map_err(|_| VirtualServiceError::NotASubnet(text.to_string()))?;
    let max = if address.is_ipv4() { 32 } else { 128 };
    let prefix = match prefix {
        None => max,
        Some(p) => p.parse::<u8>().ok().filter(|&p| p <= max).ok_or_else(|| {
            VirtualServiceError::PrefixLength {
                text: text.to_string(),
                max,
            }
        })?,
    };
    IpNet::new(address, prefix).map_err(|_| VirtualServiceError::PrefixLength {
        text: text.to_string(),
        max,
    })
}

/// Whether a match's subnet takes the connections to `key`, as Envoy's filter chain match
/// decides for Istio's listeners: the most specific prefix wins.
///
/// An exact VIP's listener has a chain for any destination (Istio gives VIP services no
/// destination CIDR), so a subnet holding the VIP is the more specific and takes it. A CIDR
/// range's listener has a chain for the range itself (its rules without subnets, or its
/// default route), so a wider subnet loses to it: only a subnet equal to the range takes
/// the range whole. An address of the other family never matches, nor does a subnet that
/// does not parse.
pub fn takes(text: &str, key: &ServiceKey) -> bool {
    parse(text).is_ok_and(|net| match key.prefix_len {
        None => net.contains(&key.vip),
        Some(_) => net.trunc() == key.net(),
    })
}

/// Whether the subnet written as `text` holds some, but not all, addresses of `key`'s range:
/// Istio would give those addresses the rule (its chain is more specific than the range's),
/// vsteer gives the range one route.
pub fn splits(text: &str, key: &ServiceKey) -> bool {
    let range = key.net();
    key.prefix_len.is_some()
        && parse(text).is_ok_and(|net| range.contains(&net) && net.trunc() != range)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn within(subnet: &str, ip: &str) -> bool {
        let key = ServiceKey::new(ip.parse().unwrap(), 80, vsteer_plan::Protocol::Tcp);
        takes(subnet, &key)
    }

    fn range(text: &str) -> ServiceKey {
        ServiceKey::range(text.parse().unwrap(), 80, vsteer_plan::Protocol::Tcp)
    }

    #[test]
    fn a_range_is_taken_by_its_own_prefix_only_or_split() {
        // A wider subnet's chain is less specific than the range's own.
        assert!(!takes("10.0.0.0/8", &range("10.1.0.0/16")));
        assert!(!takes("0.0.0.0/0", &range("10.1.0.0/16")));
        assert!(takes("10.1.0.0/16", &range("10.1.0.0/16")));
        assert!(
            takes("10.1.5.0/16", &range("10.1.0.0/16")),
            "host bits ignored"
        );
        assert!(!takes("10.1.0.0/24", &range("10.1.0.0/16")));
        assert!(!takes("10.1.0.0", &range("10.1.0.0/16")));
        assert!(!splits("10.1.5.0/16", &range("10.1.0.0/16")));
        assert!(!splits(
            "10.1.0.0/24",
            &ServiceKey::new("10.1.0.1".parse().unwrap(), 80, vsteer_plan::Protocol::Tcp)
        ));
        assert!(splits("10.1.0.0/24", &range("10.1.0.0/16")));
        assert!(splits("10.1.9.9", &range("10.1.0.0/16")));
        assert!(!splits("10.1.0.0/16", &range("10.1.0.0/16")));
        assert!(!splits("10.0.0.0/8", &range("10.1.0.0/16")));
        assert!(!splits("10.2.0.0/24", &range("10.1.0.0/16")));
        assert!(!splits("fd00::/64", &range("10.1.0.0/16")));
    }

    #[test]
    fn cidrs_and_single_addresses() {
        assert!(within("10.0.0.0/8", "10.200.1.1"));
        assert!(!within("10.0.0.0/8", "11.0.0.1"));
        assert!(within("10.0.0.5", "10.0.0.5"));
        assert!(!within("10.0.0.5", "10.0.0.6"));
        assert!(within("0.0.0.0/0", "192.0.2.1"));
        assert!(within("10.0.0.7/24", "10.0.0.200"));
        assert!(within("fd00::/64", "fd00::1"));
        assert!(!within("fd00::/64", "fd01::1"));
        assert!(within("::/0", "::1"));
        assert!(!within("0.0.0.0/0", "::ffff:10.0.0.1"));
    }

    #[test]
    fn bad_subnets_say_why() {
        let message = |text| parse(text).unwrap_err().to_string();
        assert!(message("10.0.0.0/33").contains("0 to 32"));
        assert!(message("fd00::/129").contains("0 to 128"));
        assert!(message("web").contains("not an IP"));
        assert!(parse("10.0.0.0/x").is_err());
    }
}
