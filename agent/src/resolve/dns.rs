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
use hickory_resolver::config::{ConnectionConfig, NameServerConfig, ResolverConfig, ResolverOpts};
use hickory_resolver::lookup::Lookup;
use hickory_resolver::net::NetError;
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::proto::rr::{RData, RecordType};
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
    /// Which watch of the name this is: a lookup started for an earlier one is ignored.
    generation: u64,
    in_flight: bool,
    /// Failed lookups in a row (of either family).
    failures: u32,
    /// The last good answer of each family (`None`: none yet).
    v4: Option<Vec<IpAddr>>,
    v6: Option<Vec<IpAddr>>,
    /// What was last reported.
    last: Option<Arc<[IpAddr]>>,
}

/// What one family's query came to.
enum Family {
    /// The addresses, and their TTL (`None`: no TTL, e.g. no record).
    Answer(Vec<IpAddr>, Option<Duration>),
    Failed(NetError),
}

/// A, or AAAA: each family is asked on its own, so that a failure of one keeps that
/// family's last good answer instead of passing for "no address" (hickory's dual-stack
/// lookup returns whichever half answered).
fn family(result: Result<Lookup, NetError>, v4: bool) -> Family {
    match result {
        Ok(lookup) => {
            let addresses = lookup
                .answers()
                .iter()
                .filter_map(|record| match (&record.data, v4) {
                    (RData::A(a), true) => Some(IpAddr::V4(a.0)),
                    (RData::AAAA(a), false) => Some(IpAddr::V6(a.0)),
                    _ => None,
                })
                .collect();
            let left = lookup
                .valid_until()
                .saturating_duration_since(std::time::Instant::now());
            // DNS says whole seconds; a moment has passed since the answer came. A TTL of
            // 0 means "no TTL".
            let ttl = Duration::from_secs(left.as_millis().div_ceil(1000) as u64);
            Family::Answer(addresses, (!ttl.is_zero()).then_some(ttl))
        }
        // NXDOMAIN or NODATA: the family has no address, as Envoy takes it.
        Err(err) if err.is_no_records_found() => Family::Answer(Vec::new(), None),
        Err(err) => Family::Failed(err),
    }
}

/// The name as asked: a name with dots is fully qualified (a final dot), so the search
/// domains of resolv.conf never answer for it (their NXDOMAIN would hide the real name's
/// SERVFAIL); a single label is left to the search list, as a pod's resolver takes it.
fn query_name(name: &str) -> String {
    if name.contains('.') && !name.ends_with('.') {
        format!("{name}.")
    } else {
        name.to_string()
    }
}

/// A finished lookup: the name, the watch it was for, and each family's result.
type Done = (
    Box<str>,
    u64,
    Result<Lookup, NetError>,
    Result<Lookup, NetError>,
);

/// The thread's loop: one lookup per name at a time, each when due.
async fn follow(
    resolver: TokioResolver,
    mut watched: mpsc::UnboundedReceiver<Watch>,
    answered: mpsc::UnboundedSender<Answer>,
    refresh: Duration,
) {
    let mut names: HashMap<Box<str>, Followed> = HashMap::new();
    let mut lookups: JoinSet<Done> = JoinSet::new();
    // Which lookup task is for which name and watch, so a task that panicked still frees
    // its name.
    let mut tasks: HashMap<tokio::task::Id, (Box<str>, u64)> = HashMap::new();
    let mut generations: u64 = 0;
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
                    generations += 1;
                    names.entry(name).or_insert(Followed {
                        due: Instant::now(),
                        generation: generations,
                        in_flight: false,
                        failures: 0,
                        v4: None,
                        v6: None,
                        last: None,
                    });
                }
            }
            Some(done) = lookups.join_next_with_id(), if !lookups.is_empty() => {
                let (id, result) = match done {
                    Ok((id, done)) => (id, Some(done)),
                    Err(err) => (err.id(), None),
                };
                let Some((name, generation)) = tasks.remove(&id) else { continue };
                // A name no longer followed (or followed anew since) is left alone.
                let Some(followed) = names.get_mut(&name).filter(|f| f.generation == generation)
                else {
                    continue;
                };
                followed.in_flight = false;
                let Some((_, _, a, aaaa)) = result else {
                    followed.due = Instant::now() + refresh;
                    tracing::error!("the DNS lookup of {name} stopped unexpectedly; retrying in {}s", refresh.as_secs());
                    continue;
                };
                if let Some(answer) = settle(&name, followed, family(a, true), family(aaaa, false), refresh)
                    && answered.send(answer).is_err()
                {
                    return;
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
                    let generation = followed.generation;
                    let (task_name, asked) = (name.clone(), query_name(name));
                    let handle = lookups.spawn(async move {
                        let (a, aaaa) = tokio::join!(
                            resolver.lookup(asked.as_str(), RecordType::A),
                            resolver.lookup(asked.as_str(), RecordType::AAAA)
                        );
                        (task_name, generation, a, aaaa)
                    });
                    tasks.insert(handle.id(), (name.clone(), generation));
                }
            }
        }
    }
}

/// Takes one lookup's two families into `followed`: schedules the next lookup (the shorter
/// TTL; after a failure of either family, the backoff) and returns the answer to report
/// when it changed. A failed family keeps its last good addresses.
fn settle(
    name: &str,
    followed: &mut Followed,
    a: Family,
    aaaa: Family,
    refresh: Duration,
) -> Option<Answer> {
    let mut next = refresh;
    let mut failed: Vec<(&str, NetError)> = Vec::new();
    for (family, result, kept) in [("A", a, &mut followed.v4), ("AAAA", aaaa, &mut followed.v6)] {
        match result {
            Family::Answer(addresses, ttl) => {
                *kept = Some(addresses);
                next = next.min(ttl.unwrap_or(refresh));
            }
            Family::Failed(err) => failed.push((family, err)),
        }
    }
    if failed.is_empty() {
        if followed.failures > 0 {
            tracing::info!(name = %name, failures = followed.failures, "DNS answers again");
        }
        followed.failures = 0;
    } else {
        followed.failures += 1;
        let wait = FIRST_RETRY
            .saturating_mul(1 << (followed.failures - 1).min(16))
            .min(refresh);
        next = next.min(wait);
        let kept = match &followed.last {
            Some(addresses) => format!("the last good answer {addresses:?} stays in force"),
            None => "it has had no answer since the agent started".to_string(),
        };
        for (family, err) in &failed {
            tracing::warn!(
                "DNS lookup of {name} failed ({family}: {err}); {kept} for that family; retrying in {}s",
                wait.as_secs()
            );
        }
    }
    followed.due = Instant::now() + next;
    if followed.v4.is_none() && followed.v6.is_none() {
        return None;
    }
    let addresses: Arc<[IpAddr]> = followed
        .v4
        .iter()
        .chain(followed.v6.iter())
        .flatten()
        .copied()
        .collect();
    if followed.last.as_ref() == Some(&addresses) {
        return None;
    }
    tracing::info!(name = %name, addresses = ?addresses, next_lookup_s = next.as_secs(), "DNS answer changed");
    followed.last = Some(addresses.clone());
    Some(Answer {
        name: name.into(),
        addresses,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error() -> NetError {
        NetError::from("test: SERVFAIL")
    }

    fn ips(list: &[&str]) -> Vec<IpAddr> {
        list.iter().map(|a| a.parse().unwrap()).collect()
    }

    fn followed() -> Followed {
        Followed {
            due: Instant::now(),
            generation: 1,
            in_flight: false,
            failures: 0,
            v4: None,
            v6: None,
            last: None,
        }
    }

    #[test]
    fn a_failed_family_keeps_its_last_good_addresses() {
        let refresh = Duration::from_secs(60);
        let mut f = followed();
        let ttl = Some(Duration::from_secs(5));
        let first = settle(
            "api.example.com",
            &mut f,
            Family::Answer(ips(&["10.0.0.1"]), ttl),
            Family::Answer(ips(&["fd00::1"]), ttl),
            refresh,
        )
        .expect("a first answer");
        assert_eq!(&*first.addresses, &ips(&["10.0.0.1", "fd00::1"])[..]);
        // AAAA fails, A changes: IPv6 keeps fd00::1; the retry comes after 1 s.
        let before = Instant::now();
        let second = settle(
            "api.example.com",
            &mut f,
            Family::Answer(ips(&["10.0.0.2"]), ttl),
            Family::Failed(error()),
            refresh,
        )
        .expect("A changed");
        assert_eq!(&*second.addresses, &ips(&["10.0.0.2", "fd00::1"])[..]);
        assert!(f.due <= before + Duration::from_millis(1100) && f.failures == 1);
        // Both fail: nothing new, backoff doubles.
        assert!(
            settle(
                "api.example.com",
                &mut f,
                Family::Failed(error()),
                Family::Failed(error()),
                refresh
            )
            .is_none()
        );
        assert_eq!(f.failures, 2);
        // NODATA for AAAA (an answer): IPv6 is emptied.
        let third = settle(
            "api.example.com",
            &mut f,
            Family::Answer(ips(&["10.0.0.2"]), ttl),
            Family::Answer(Vec::new(), None),
            refresh,
        )
        .expect("IPv6 gone");
        assert_eq!(&*third.addresses, &ips(&["10.0.0.2"])[..]);
        assert_eq!(f.failures, 0);
    }

    #[test]
    fn names_with_dots_are_asked_fully_qualified() {
        assert_eq!(query_name("api.example.com"), "api.example.com.");
        assert_eq!(query_name("api.example.com."), "api.example.com.");
        assert_eq!(query_name("mongodb"), "mongodb");
    }
}
