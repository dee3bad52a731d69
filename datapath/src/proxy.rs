//! Where the connect hooks send proxied services: the agent's proxy, as `ProxyRedirect` says,
//! in the kernel's layout (`ProxyConfig`), with the agent's network namespace so that a
//! loopback proxy address is used only where it reaches the proxy.
use std::{
    net::{IpAddr, SocketAddr, SocketAddrV4, SocketAddrV6},
    os::fd::{AsRawFd, FromRawFd, OwnedFd},
};

use anyhow::{Context, Result, bail};
use vsteer_common::{Address, ProxyConfig, proxy_flags};

use crate::keys::address;

/// The proxy the connect hooks redirect proxied services to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxyRedirect {
    /// Where IPv4 VIPs go (`None`: IPv4 VIPs stay on the L4 table).
    pub v4: Option<SocketAddrV4>,
    /// Where IPv6 VIPs go (`None`: IPv6 VIPs stay on the L4 table).
    pub v6: Option<SocketAddrV6>,
    /// SO_MARK of the proxy's own sockets: they always get the L4 table, so the proxy's
    /// upstream connects are never sent back to it. Not 0 (every socket has mark 0).
    pub mark: u32,
}

/// The kernel's config for `proxy` (`None`: redirect nothing), seen from the network
/// namespace `netns_cookie`.
pub fn config(proxy: Option<&ProxyRedirect>, netns_cookie: u64) -> Result<ProxyConfig> {
    let mut config = ProxyConfig {
        v4: Address {
            addr: [0; 16],
            port: 0,
            _pad: 0,
        },
        v6: Address {
            addr: [0; 16],
            port: 0,
            _pad: 0,
        },
        netns_cookie,
        mark: 0,
        flags: 0,
    };
    let Some(proxy) = proxy else {
        return Ok(config);
    };
    if proxy.mark == 0 {
        bail!("the proxy's socket mark must not be 0: every other socket carries mark 0");
    }
    config.mark = proxy.mark;
    if let Some(v4) = proxy.v4 {
        check(SocketAddr::V4(v4))?;
        config.v4 = address(IpAddr::V4(*v4.ip()), v4.port());
        config.flags |= proxy_flags::V4;
        if v4.ip().is_loopback() {
            config.flags |= proxy_flags::V4_LOOPBACK;
        }
    }
    if let Some(v6) = proxy.v6 {
        check(SocketAddr::V6(v6))?;
        if v6.ip().to_ipv4_mapped().is_some() {
            bail!("the proxy's IPv6 address {v6} is IPv4-mapped: give it as the IPv4 address");
        }
        config.v6 = address(IpAddr::V6(*v6.ip()), v6.port());
        config.flags |= proxy_flags::V6;
        if v6.ip().is_loopback() {
            config.flags |= proxy_flags::V6_LOOPBACK;
        }
    }
    Ok(config)
}

/// A redirect target must be one address a client can connect to and find again as its
/// peer: not 0.0.0.0 or ::, not port 0, not multicast.
fn check(addr: SocketAddr) -> Result<()> {
    if addr.ip().is_unspecified() || addr.ip().is_multicast() || addr.port() == 0 {
        bail!(
            "the proxy address {addr} cannot be a redirect target: give the address and port \
             it listens on (not a wildcard, not port 0)"
        );
    }
    Ok(())
}

/// The cookie of the calling thread's network namespace (SO_NETNS_COOKIE, Linux 5.14+),
/// read on a socket of its own: the kernel programs compare it with a client socket's.
pub fn own_netns_cookie() -> Result<u64> {
    // SAFETY: plain socket(2); the result is checked before use.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error())
            .context("opening a socket to read the network namespace cookie");
    }
    // SAFETY: a fresh descriptor owned by nothing else.
    let socket = unsafe { OwnedFd::from_raw_fd(fd) };
    let mut cookie: u64 = 0;
    let mut len = size_of::<u64>() as libc::socklen_t;
    // SAFETY: cookie and len are valid for writes of the sizes given.
    let rc = unsafe {
        libc::getsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_NETNS_COOKIE,
            (&raw mut cookie).cast(),
            &mut len,
        )
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error())
            .context("getsockopt(SO_NETNS_COOKIE) (needs Linux 5.14+)");
    }
    Ok(cookie)
}

#[cfg(test)]
mod tests {
    use std::net::{Ipv4Addr, Ipv6Addr};

    use super::*;

    fn redirect(v4: Option<&str>, v6: Option<&str>, mark: u32) -> ProxyRedirect {
        ProxyRedirect {
            v4: v4.map(|a| a.parse().unwrap()),
            v6: v6.map(|a| a.parse().unwrap()),
            mark,
        }
    }

    #[test]
    fn loopback_and_other_addresses_are_told_apart() {
        let c = config(
            Some(&redirect(
                Some("127.0.0.1:15001"),
                Some("[fd00::1]:15001"),
                7,
            )),
            42,
        )
        .unwrap();
        assert_eq!(
            c.flags,
            proxy_flags::V4 | proxy_flags::V4_LOOPBACK | proxy_flags::V6
        );
        assert_eq!(c.v4, address(IpAddr::V4(Ipv4Addr::LOCALHOST), 15001));
        assert_eq!(c.v6.port, 15001);
        assert_eq!((c.mark, c.netns_cookie), (7, 42));
        let node = config(Some(&redirect(Some("198.18.0.1:15001"), None, 7)), 1).unwrap();
        assert_eq!(node.flags, proxy_flags::V4);
        let v6 = config(Some(&redirect(None, Some("[::1]:15001"), 7)), 1).unwrap();
        assert_eq!(v6.flags, proxy_flags::V6 | proxy_flags::V6_LOOPBACK);
        assert_eq!(v6.v6, address(IpAddr::V6(Ipv6Addr::LOCALHOST), 15001));
    }

    #[test]
    fn no_proxy_redirects_nothing() {
        let c = config(None, 5).unwrap();
        assert_eq!(c.flags, 0);
        assert_eq!(c.v4.port, 0);
    }

    #[test]
    fn unusable_targets_and_mark_zero_are_refused() {
        for bad in [
            redirect(Some("0.0.0.0:15001"), None, 7),
            redirect(Some("127.0.0.1:0"), None, 7),
            redirect(None, Some("[::]:15001"), 7),
            redirect(None, Some("[::ffff:127.0.0.1]:15001"), 7),
            redirect(Some("127.0.0.1:15001"), None, 0),
        ] {
            assert!(config(Some(&bad), 1).is_err(), "{bad:?}");
        }
    }
}
