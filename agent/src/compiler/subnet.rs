//! IP subnets as Istio writes them in `destinationSubnets`: a CIDR, or a single address.

use std::net::IpAddr;

/// A network and prefix length, e.g. `10.0.0.0/8`; a bare address is a full-length prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Subnet {
    network: IpAddr,
    prefix: u8,
}

impl Subnet {
    pub(super) fn parse(text: &str) -> Result<Subnet, String> {
        let (address, prefix) = match text.split_once('/') {
            Some((address, prefix)) => (address, Some(prefix)),
            None => (text, None),
        };
        let network: IpAddr = address
            .parse()
            .map_err(|_| format!("{text:?} is not an IP address or CIDR"))?;
        let max = bits(network);
        let prefix = match prefix {
            None => max,
            Some(p) => p
                .parse::<u8>()
                .ok()
                .filter(|&p| p <= max)
                .ok_or_else(|| format!("{text:?}: prefix length must be 0 to {max}"))?,
        };
        Ok(Subnet { network, prefix })
    }

    /// Whether `ip` is in the subnet; an address of the other family never is.
    pub(super) fn contains(&self, ip: IpAddr) -> bool {
        let (Some(net), Some(ip)) = (to_bits(self.network, ip), to_bits(ip, self.network)) else {
            return false;
        };
        // Host bits of the written network are ignored, as Envoy ignores them.
        let shift = u32::from(bits(self.network) - self.prefix);
        net.checked_shr(shift).unwrap_or(0) == ip.checked_shr(shift).unwrap_or(0)
    }
}

fn bits(ip: IpAddr) -> u8 {
    if ip.is_ipv4() { 32 } else { 128 }
}

/// `ip` as an integer, when `other` is of the same family.
fn to_bits(ip: IpAddr, other: IpAddr) -> Option<u128> {
    match (ip, other) {
        (IpAddr::V4(v4), IpAddr::V4(_)) => Some(u128::from(u32::from(v4))),
        (IpAddr::V6(v6), IpAddr::V6(_)) => Some(u128::from(v6)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn contains(subnet: &str, ip: &str) -> bool {
        Subnet::parse(subnet).unwrap().contains(ip.parse().unwrap())
    }

    #[test]
    fn cidrs_and_single_addresses() {
        assert!(contains("10.0.0.0/8", "10.200.1.1"));
        assert!(!contains("10.0.0.0/8", "11.0.0.1"));
        assert!(contains("10.0.0.5", "10.0.0.5"));
        assert!(!contains("10.0.0.5", "10.0.0.6"));
        assert!(contains("0.0.0.0/0", "192.0.2.1"));
        assert!(contains("10.0.0.7/24", "10.0.0.200"));
        assert!(contains("fd00::/64", "fd00::1"));
        assert!(!contains("fd00::/64", "fd01::1"));
        assert!(contains("::/0", "::1"));
        assert!(!contains("0.0.0.0/0", "::ffff:10.0.0.1"));
    }

    #[test]
    fn bad_subnets_say_why() {
        assert!(
            Subnet::parse("10.0.0.0/33")
                .unwrap_err()
                .contains("0 to 32")
        );
        assert!(
            Subnet::parse("fd00::/129")
                .unwrap_err()
                .contains("0 to 128")
        );
        assert!(Subnet::parse("web").unwrap_err().contains("not an IP"));
        assert!(Subnet::parse("10.0.0.0/x").is_err());
    }
}
