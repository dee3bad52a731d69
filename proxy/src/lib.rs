//! vsteer's L7 path: an HTTP proxy inside the agent for the services whose rules need to see
//! requests. The kernel redirects a client's `connect()` to a proxied VIP:port here and
//! records the original destination; per accepted connection the proxy looks it up
//! (`original`), and per request serves that service's Istio HTTP route table (`tables`,
//! compiled in `compiled`): matching (`matching`), actions (`redirect`, `rewrite`, `headers`
//! with values in Envoy's format: `header_value`, `time_format`; `respond`), load balancing (`balance`, `ring`, `hash_policy`), upstream connections
//! (`upstream`, `pool`, `upgrade`), streaming bodies (`body`); `proxy` and `connection` accept
//! and serve connections within the limits of `options`; `stats` counts.

mod balance;
mod body;
mod chance;
mod compiled;
mod connection;
mod cors;
mod fault;
mod forward;
mod hash_policy;
mod hashing;
mod header_value;
mod headers;
mod limits;
mod matching;
mod mirror;
mod options;
mod original;
mod outlier;
mod passthrough;
mod pool;
mod priority;
mod proxy;
mod redirect;
mod request_body;
mod respond;
mod retry;
mod rewrite;
mod ring;
mod stats;
mod tables;
mod time_format;
mod upgrade;
mod upstream;

pub use options::{DEFAULT_LISTEN, ProxyOptions};
pub use original::OriginalDestination;
pub use outlier::{Ejection, EjectionReason, Ejections};
pub use proxy::{Proxy, ProxyStop, ProxyWorker};
pub use stats::{ProxyStats, StatsSnapshot, register_ejection_metrics, register_metrics};
pub use tables::RouteTables;
