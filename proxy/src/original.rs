//! How the proxy learns where an accepted connection was going: the original destination
//! (VIP:port) the kernel recorded when it redirected the client's `connect()`.

use std::net::SocketAddr;

/// Looks up the VIP:port the client at `peer` dialed, for a connection the proxy accepted on
/// `local`. `None`: the connection was not redirected (or its entry is gone) and is refused.
pub trait OriginalDestination: Send + Sync + 'static {
    fn lookup(&self, peer: SocketAddr, local: SocketAddr) -> Option<SocketAddr>;
}

/// A closure is a lookup too (adapters, tests).
impl<F> OriginalDestination for F
where
    F: Fn(SocketAddr, SocketAddr) -> Option<SocketAddr> + Send + Sync + 'static,
{
    fn lookup(&self, peer: SocketAddr, local: SocketAddr) -> Option<SocketAddr> {
        self(peer, local)
    }
}
