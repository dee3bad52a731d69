//! The proxy's view of the original-destination map: for a connection it accepted, the
//! VIP:port the client dialed (written by the sockops program when the client's connection
//! was established, deleted when the client's socket closed).
use std::{net::SocketAddr, sync::Arc};

use aya::maps::{HashMap, MapData};
use vsteer_common::{Address, OriginalKey};

use crate::keys::{address, socket_addr};

/// A handle the proxy uses per accepted connection; cheap to clone, usable from any thread.
#[derive(Clone)]
pub struct OriginalDestinations {
    map: Arc<HashMap<MapData, OriginalKey, Address>>,
}

impl std::fmt::Debug for OriginalDestinations {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OriginalDestinations")
            .finish_non_exhaustive()
    }
}

impl OriginalDestinations {
    pub(crate) fn new(map: HashMap<MapData, OriginalKey, Address>) -> Self {
        Self { map: Arc::new(map) }
    }

    /// The map pinned in `pin_dir` by a running agent (for `status` and tests, which are not
    /// the agent).
    pub fn open_pinned(pin_dir: &std::path::Path) -> anyhow::Result<Self> {
        use anyhow::Context;
        let path = pin_dir.join(vsteer_common::map_names::ORIGINAL);
        let data = MapData::from_pin(&path)
            .with_context(|| format!("opening the pinned map {}", path.display()))?;
        let map = HashMap::try_from(aya::maps::Map::HashMap(data))
            .with_context(|| format!("{} has an unexpected type or layout", path.display()))?;
        Ok(Self::new(map))
    }

    /// The VIP:port the client at `peer` dialed, for a connection the proxy accepted on
    /// `local`. `None` for a connection the hooks did not redirect (or one whose client has
    /// closed already): the proxy must refuse it, never fall back to its own address.
    pub fn lookup(&self, peer: SocketAddr, local: SocketAddr) -> Option<SocketAddr> {
        let key = OriginalKey {
            client: address(peer.ip(), peer.port()),
            proxy: address(local.ip(), local.port()),
        };
        let vip = self.map.get(&key, 0).ok()?;
        Some(socket_addr(&vip))
    }

    /// Entries in the map now (tests assert 0 after clients close). Walks the map.
    pub fn len(&self) -> usize {
        self.map.keys().filter(Result::is_ok).count()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mapped_addresses_come_back_as_ipv4() {
        let a = address("127.100.0.1".parse().unwrap(), 9080);
        assert_eq!(socket_addr(&a), "127.100.0.1:9080".parse().unwrap());
        let b = address("fd00:100::1".parse().unwrap(), 80);
        assert_eq!(socket_addr(&b), "[fd00:100::1]:80".parse().unwrap());
        // A dual-stack listener's IPv4-mapped peer makes the same key as the IPv4 one.
        let mapped: SocketAddr = "[::ffff:198.18.0.2]:4000".parse().unwrap();
        let plain: SocketAddr = "198.18.0.2:4000".parse().unwrap();
        assert_eq!(
            address(mapped.ip(), mapped.port()),
            address(plain.ip(), plain.port())
        );
    }

    #[test]
    fn handles_cross_threads() {
        fn send_sync_clone<T: Send + Sync + Clone>() {}
        send_sync_clone::<OriginalDestinations>();
    }
}
