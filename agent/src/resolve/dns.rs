//! Looks the names of DNS-resolved ServiceEntries up with hickory-resolver, on a thread of
//! its own, and again when each answer's TTL runs out (Envoy's `respect_dns_ttl`, which
//! Istio sets); reports an answer only when it changed. A failed lookup (timeout, SERVFAIL,
//! REFUSED, no server reachable) keeps the last good answer in force and is retried with
//! backoff; NXDOMAIN or no A/AAAA record is an answer with no address, as Envoy takes it.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use hickory_resolver::TokioResolver;
use hickory_resolver::config::{
    ConnectionConfig, LookupIpStrategy, NameServerConfig, ResolverConfig, ResolverOpts,
};
use hickory_resolver::lookup_ip::LookupIp;
use hickory_resolver::net::NetError;
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio::time::Instant;

use super::Watch;

/// Where and how often names are looked up.
#[derive(Debug, Clone)]
pub struct DnsSettings {
    /// The name servers to ask, in order; empty: those of /etc/resolv.conf.
    pub servers: Vec<SocketAddr>,
    /// When a name is looked up again if its answer carries no TTL (TTL 0, or no address
    /// and no SOA): Istio's `dnsRefreshRate`. Also the longest wait between retries after
    /// failures.
    pub refresh: Duration,
}

/// Istio's default `dnsRefreshRate`.
pub const DEFAULT_REFRESH: Duration = Duration::from_secs(60);

/// The first retry after a failure; doubled each time up to the refresh rate.
const FIRST_RETRY: Duration = Duration::from_secs(1);

/// A name's new answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub name: Box<str>,
    /// In the order of the answer; empty: the name has no address.
    pub addresses: Arc<[IpAddr]>,
}

/// The resolver thread: told which names to follow, it reports their answers as they
/// change. Stops when dropped.
pub struct Resolver {
    watches: mpsc::UnboundedSender<Watch>,
    answers: mpsc::UnboundedReceiver<Answer>,
}

impl Resolver {
    /// Reads the resolver's configuration (failing here, naming what is wrong) and starts
    /// the thread.
    pub fn start(settings: &DnsSettings) -> Result<Resolver> {
        let (config, mut options) = if settings.servers.is_empty() {
            hickory_resolver::system_conf::read_system_conf().context(
                "reading the name servers from /etc/resolv.conf for DNS-resolved ServiceEntries \
                 (give them with --dns-server)",
            )?
        } else {
            let servers = settings.servers.iter().map(|server| {
                let mut udp = ConnectionConfig::udp();
                udp.port = server.port();
                let mut tcp = ConnectionConfig::tcp();
                tcp.port = server.port();
                NameServerConfig::new(server.ip(), true, vec![udp, tcp])
            });
            let config = ResolverConfig::from_parts(None, Vec::new(), servers.collect());
            (config, ResolverOpts::default())
        };
        // Both families: the compiler keeps those of each VIP's family.
        options.ip_strategy = LookupIpStrategy::Ipv4AndIpv6;
        // No cache of its own: answers are looked up again when their TTL runs out, which a
        // cache in between would only answer from itself.
        options.cache_size = 0;
        let (watches, watched) = mpsc::unbounded_channel();
        let (answered, answers) = mpsc::unbounded_channel();
        let refresh = settings.refresh.max(FIRST_RETRY);
        std::thread::Builder::new()
            .name("vsteer-dns".into())
            .spawn(move || {
                let runtime = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(runtime) => runtime,
                    Err(err) => {
                        tracing::error!("the DNS resolver thread cannot start: {err}");
                        return;
                    }
                };
                runtime.block_on(async move {
                    let builder =
                        TokioResolver::builder_with_config(config, TokioRuntimeProvider::default())
                            .with_options(options);
                    match builder.build() {
                        Ok(resolver) => follow(resolver, watched, answered, refresh).await,
                        Err(err) => tracing::error!(
                            "the DNS resolver cannot start: {err}; DNS-resolved ServiceEntries get no endpoints"
                        ),
                    }
                });
            })
            .context("starting the DNS resolver thread")?;
        Ok(Resolver { watches, answers })
    }

    /// Starts and stops following names.
    pub fn watch(&self, watch: Watch) {
        if !watch.is_empty() {
            // Only fails when the thread is gone, which it reported.
            let _ = self.watches.send(watch);
        }
    }

    /// The next changed answer (pending forever when the thread is gone).
    pub async fn next(&mut self) -> Answer {
        match self.answers.recv().await {
            Some(answer) => answer,
            None => std::future::pending().await,
        }
    }

    /// A changed answer that arrived already, if any.
    pub fn try_next(&mut self) -> Option<Answer> {
        self.answers.try_recv().ok()
    }
}

/// What is known of one name.
struct Followed {
    due: Instant,
    in_flight: bool,
    /// Failures in a row.
    failures: u32,
    last: Option<Arc<[IpAddr]>>,
}

/// What a lookup came to.
enum Outcome {
    /// The addresses, and when to look again.
    Answer(Arc<[IpAddr]>, Duration),
    Failed(NetError),
}

fn outcome(result: Result<LookupIp, NetError>, refresh: Duration) -> Outcome {
    match result {
        Ok(lookup) => {
            let addresses: Arc<[IpAddr]> = lookup.iter().collect();
            let left = lookup
                .valid_until()
                .saturating_duration_since(std::time::Instant::now());
            // DNS says whole seconds; a moment has passed since the answer came.
            let ttl = Duration::from_secs(left.as_millis().div_ceil(1000) as u64);
            // A TTL of 0 means "no TTL".
            let next = if ttl.is_zero() { refresh } else { ttl };
            Outcome::Answer(addresses, next)
        }
        Err(err) if err.is_no_records_found() => Outcome::Answer(Arc::from([]), refresh),
        Err(err) => Outcome::Failed(err),
    }
}

/// The thread's loop: one lookup per name at a time, each when due.
async fn follow(
    resolver: TokioResolver,
    mut watched: mpsc::UnboundedReceiver<Watch>,
    answered: mpsc::UnboundedSender<Answer>,
    refresh: Duration,
) {
    let mut names: HashMap<Box<str>, Followed> = HashMap::new();
    let mut lookups: JoinSet<(Box<str>, Result<LookupIp, NetError>)> = JoinSet::new();
    loop {
        let next_due = names.values().filter(|f| !f.in_flight).map(|f| f.due).min();
        let due = async {
            match next_due {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            watch = watched.recv() => {
                let Some(watch) = watch else { return };
                for name in watch.removed {
                    names.remove(&name);
                }
                for name in watch.added {
                    names.entry(name).or_insert(Followed {
                        due: Instant::now(),
                        in_flight: false,
                        failures: 0,
                        last: None,
                    });
                }
            }
            Some(done) = lookups.join_next(), if !lookups.is_empty() => {
                let Ok((name, result)) = done else { continue };
                // A name no longer followed is forgotten with its answer.
                let Some(followed) = names.get_mut(&name) else { continue };
                followed.in_flight = false;
                match outcome(result, refresh) {
                    Outcome::Answer(addresses, next) => {
                        if followed.failures > 0 {
                            tracing::info!(name = %name, failures = followed.failures, "DNS answers again");
                        }
                        followed.failures = 0;
                        followed.due = Instant::now() + next;
                        if followed.last.as_ref() != Some(&addresses) {
                            tracing::info!(
                                name = %name,
                                addresses = ?addresses,
                                next_lookup_s = next.as_secs(),
                                "DNS answer changed"
                            );
                            followed.last = Some(addresses.clone());
                            if answered.send(Answer { name, addresses }).is_err() {
                                return;
                            }
                        }
                    }
                    Outcome::Failed(err) => {
                        followed.failures += 1;
                        let wait = FIRST_RETRY
                            .saturating_mul(1 << (followed.failures - 1).min(16))
                            .min(refresh);
                        followed.due = Instant::now() + wait;
                        let kept = match &followed.last {
                            Some(addresses) => format!("its last good answer {addresses:?} stays in force"),
                            None => "it has had no answer since the agent started".to_string(),
                        };
                        tracing::warn!(
                            "DNS lookup of {name} failed ({err}); {kept}; retrying in {}s",
                            wait.as_secs()
                        );
                    }
                }
            }
            _ = due => {
                let now = Instant::now();
                for (name, followed) in names.iter_mut() {
                    if followed.in_flight || followed.due > now {
                        continue;
                    }
                    followed.in_flight = true;
                    let resolver = resolver.clone();
                    let name = name.clone();
                    lookups.spawn(async move {
                        let result = resolver.lookup_ip(&*name).await;
                        (name, result)
                    });
                }
            }
        }
    }
}
