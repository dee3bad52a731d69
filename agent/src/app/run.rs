//! `vsteer run`: load the config, start the L7 proxy, fill the kernel maps and the proxy's
//! route tables, then follow config changes (file events, SIGHUP) until SIGINT/SIGTERM. The
//! datapath stays in place when the agent exits, with proxied services back on the kernel
//! path (no proxy runs then); `vsteer uninstall` removes it.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, mpsc as std_mpsc};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use tokio::{
    signal::unix::{Signal, SignalKind, signal},
    sync::{mpsc, oneshot},
};
use vsteer_datapath::{Claim, Datapath, DatapathOptions, PinDirOwner};
use vsteer_proxy::{Ejections, RouteTables};

use super::admin;
use super::agent::{Agent, Applied, PassError, Read};
use super::ejected;
use super::metrics::{AgentMetrics, Step};
use super::node::Node;
use super::proxy::{FromKernel, ProxySettings, RunningProxy, list};
use crate::resolve::{DnsSettings, Resolver, SavedAnswers, Watch};
use crate::sources::kubernetes::{self, KubeSettings};
use crate::sources::{Source, snapshot::Snapshot, watch};

/// Everything `vsteer run` is told.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// The config directory; `None`: the examples built in.
    pub config: Option<PathBuf>,
    /// The cgroup v2 directory whose processes are steered; `None`: the hierarchy's root.
    pub cgroup: Option<PathBuf>,
    pub pin_dir: PathBuf,
    /// Where the last good copy of each config file is kept for a restart (bpffs, where the
    /// pins are, holds no plain files).
    pub state_dir: PathBuf,
    /// `None`: no proxy; services that need one stay on the kernel path.
    pub proxy: Option<ProxySettings>,
    /// Where `/metrics` is served; `None`: nowhere.
    pub admin: Option<SocketAddr>,
    /// How long a config file must be left alone before it is read.
    pub settle: Duration,
    /// Read the Kubernetes API instead of `config` (which is then `None`).
    pub kubernetes: Option<KubeSettings>,
    /// How the names of DNS-resolved ServiceEntries are looked up.
    pub dns: DnsSettings,
    /// The node's locality, for `localityLbSetting`.
    pub locality: Option<vsteer_compiler::locality::Locality>,
}

/// How long a start waits for the first DNS answers before it writes the kernel maps: a
/// restarted agent should not drop a DNS-resolved service's backends for want of an answer
/// that comes a moment later. Names still unanswered then get their endpoints when DNS
/// answers.
const DNS_START_WAIT: Duration = Duration::from_secs(5);

/// The pin directory's lock, waited for (`None`: a signal to stop came first).
async fn own_pin_dir(
    pin_dir: &std::path::Path,
    sigterm: &mut Signal,
    sigint: &mut Signal,
) -> Result<Option<PinDirOwner>> {
    let mut waiting_since: Option<Instant> = None;
    loop {
        match PinDirOwner::claim(pin_dir)? {
            Claim::Owned(owner) => {
                if let Some(since) = waiting_since {
                    tracing::info!(
                        pin_dir = %pin_dir.display(),
                        waited_ms = since.elapsed().as_millis(),
                        "took over the pin directory: its owner exited"
                    );
                }
                return Ok(Some(owner));
            }
            Claim::Busy { holder } => {
                if waiting_since.is_none() {
                    let holder = vsteer_datapath::holder_name(holder);
                    tracing::warn!(
                        "--pin-dir {} is owned by {holder}: WAITING for it to exit before \
                         touching anything (a rolling upgrade hands over here; if this agent \
                         was started by mistake, stop it)",
                        pin_dir.display()
                    );
                    waiting_since = Some(Instant::now());
                }
                tokio::select! {
                    _ = tokio::time::sleep(OWNER_POLL) => {}
                    _ = sigterm.recv() => return Ok(None),
                    _ = sigint.recv() => return Ok(None),
                }
            }
        }
    }
}

/// Where the admin listener shows the node's pods (Kubernetes mode), for `vsteer status`.
pub const NODE_PODS_PAGE: &str = "/node/pods";

/// How often a waiting agent tries the pin directory's lock: the longest a handover waits
/// after the owner exits.
const OWNER_POLL: Duration = Duration::from_millis(100);

pub fn run(options: &RunOptions) -> Result<i32> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the tokio runtime")?;
    runtime.block_on(agent(options))
}

async fn agent(options: &RunOptions) -> Result<i32> {
    // Until the datapath is ready (see `memory`).
    let start_purge = super::memory::PurgeAtOnce::start();
    // Handle the signals before anything is loaded, so a signal during start-up still ends in
    // an orderly exit rather than the default instant death.
    let mut sigterm = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut sigint = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    let mut sighup = signal(SignalKind::hangup()).context("installing the SIGHUP handler")?;
    // The arguments first: a wrong path fails before anything of the node is touched.
    if let Some(dir) = &options.config {
        check_config_dir(dir)?;
    }
    if let Some(cgroup) = &options.cgroup {
        vsteer_datapath::check_cgroup2(cgroup)?;
    }
    vsteer_datapath::check_privileges()?;
    // One agent per pin directory: a second one (an operator's mistake, or the new pod of a
    // rolling upgrade) waits here, before it binds a port or touches a map, for the owner to
    // exit; the pinned datapath serves meanwhile.
    // Held for the agent's life (taken again if the directory is removed under it).
    let Some(mut _owner) = own_pin_dir(&options.pin_dir, &mut sigterm, &mut sigint).await? else {
        tracing::info!("stopped while waiting for the pin directory, which was not touched");
        return Ok(0);
    };
    // Everything that can fail for reasons of the node (a port taken by another process, an
    // old agent still running) fails here, before the kernel programs are touched: the proxy
    // and admin listeners bind first.
    let routes = options.proxy.as_ref().map(|_| RouteTables::new());
    let original = FromKernel::default();
    let proxy = match (&options.proxy, &routes) {
        (Some(settings), Some(routes)) => {
            Some(RunningProxy::start(settings, original.clone(), routes.clone()).await?)
        }
        _ => None,
    };
    let mut registry = prometheus_client::registry::Registry::default();
    let metrics = AgentMetrics::register(&mut registry);
    let ejections = routes.as_ref().map(RouteTables::ejections);
    if let Some(proxy) = &proxy {
        vsteer_proxy::register_metrics(&mut registry, proxy.stats.clone());
    }
    if let Some(ejections) = &ejections {
        vsteer_proxy::register_ejection_metrics(&mut registry, ejections.clone());
    }
    let ready = admin::Readiness::default();
    let pages = admin::Pages::default();
    if let Some(ejections) = ejections.clone() {
        pages.add(
            ejected::EJECTIONS_PAGE,
            Arc::new(move || ejected::page(&ejections.list())),
        );
    }
    let mut ejection_changes = ejections.as_ref().map(Ejections::subscribe);
    let admin = match options.admin {
        Some(addr) => Some(admin::serve(addr, registry, ready.clone(), pages.clone()).await?),
        None => None,
    };

    let (changed_tx, mut changed) = mpsc::unbounded_channel();
    let mut kube = None;
    let mut source = match &options.kubernetes {
        Some(settings) => {
            let starting =
                kubernetes::start(settings, changed_tx.clone(), metrics.errors_of(Step::Watch));
            let watches = tokio::select! {
                watches = starting => watches?,
                _ = sigterm.recv() => return Ok(0),
                _ = sigint.recv() => return Ok(0),
            };
            let source = Source::Kubernetes(watches.cluster.clone());
            if let Some(node_pods) = watches.node_pods.clone() {
                pages.add(
                    NODE_PODS_PAGE,
                    Arc::new(move || match node_pods.lock() {
                        Ok(pods) => serde_json::to_string(&pods.pods()).unwrap_or_default(),
                        Err(_) => "[]".to_string(),
                    }),
                );
            }
            kube = Some(watches);
            source
        }
        None => Source::with_settle(options.config.clone(), options.settle),
    };
    if let Some(dir) = &options.config {
        match Snapshot::open(&options.state_dir, &options.pin_dir, dir) {
            Ok(snapshot) => source = source.with_snapshot(snapshot),
            Err(err) => tracing::warn!(
                "no last good snapshot: a restart will not have the last good version of a file that no longer parses: {err:#}"
            ),
        }
    }
    let watch = match source.dir() {
        Some(dir) => Some(watch::watch(dir, options.settle, changed_tx)?),
        None => None,
    };
    let source = Arc::new(Mutex::new(source));
    let reader = Reader::start(source.clone())?;
    if let Some(watches) = &mut kube {
        // A partial view would remove every service not listed yet: nothing is applied before
        // every watch has listed once (the pinned datapath serves meanwhile).
        tracing::info!("waiting for the first full list of every watched kind");
        tokio::select! {
            synced = watches.synced() => synced?,
            _ = sigterm.recv() => return Ok(0),
            _ = sigint.recv() => return Ok(0),
        }
    }

    // The config is read before the kernel is touched (a directory that cannot be read
    // fails here), on a thread of its own: a signal to stop never waits for a long parse.
    let Some(first) = reader.read(None, &mut sigterm, &mut sigint).await? else {
        tracing::info!("stopped while reading the config, before the kernel was touched");
        return Ok(0);
    };
    if let Some(err) = first.error() {
        anyhow::bail!("the config cannot be read; nothing was loaded: {err:#}");
    }
    let started = Instant::now();
    // Redirecting starts only once the proxy listens and holds its tables (below).
    let datapath_options = DatapathOptions {
        cgroup: options.cgroup.clone(),
        pin_dir: options.pin_dir.clone(),
        proxy: None,
    };
    let datapath = Datapath::start(&datapath_options)?;
    let loaded_programs = started.elapsed();
    let adopted = datapath.adopted();
    original.set(datapath.original_destinations()?);
    let mut agent = Agent::shared(source, Node::new(datapath, routes));
    agent.set_locality(options.locality.clone());
    let loaded = agent.load(first)?;
    let mut resolver: Option<Resolver> = None;
    let mut saved_answers = SavedAnswers::open(&options.state_dir, &options.pin_dir);
    follow_names(&mut agent, &mut resolver, &options.dns);
    first_answers(&mut agent, resolver.as_mut(), &saved_answers).await;
    saved_answers.save(agent.dns_table());
    let applied = agent.write_loaded(loaded)?;
    metrics.applied(None, agent.plan().len(), applied.rejected);
    note_objects(&metrics, kube.as_ref());
    // The last fallible step of the start: from here on the kernel sends proxied services
    // to the proxy, and only an orderly exit (below) turns that off again.
    if let (Some(settings), Some(proxy)) = (&options.proxy, &proxy) {
        agent
            .sink_mut()
            .datapath
            .set_proxy(Some(&settings.redirect(&proxy.listening)))?;
    }
    let proxied = agent
        .plan()
        .services()
        .filter(|s| matches!(s.decision, vsteer_plan::Decision::Proxy { .. }))
        .count();
    // Before the agent says it is ready: what the start freed is handed back first.
    super::memory::release_freed();
    drop(start_purge);
    log_refused(&applied);
    tracing::info!(
        services = agent.plan().len(),
        proxied,
        adopted,
        written = applied.stats.added + applied.stats.changed + applied.stats.removed,
        unchanged = applied.stats.unchanged,
        refused = applied.stats.refused.len(),
        load_ms = loaded_programs.as_millis() as u64,
        read_ms = applied.read.as_millis() as u64,
        compile_ms = applied.compile.as_millis() as u64,
        apply_ms = applied.apply.as_millis() as u64,
        cgroup = %agent.sink().datapath.cgroup().display(),
        pin_dir = %options.pin_dir.display(),
        proxy = %proxy.as_ref().map_or_else(|| "off".to_string(), |p| list(&p.listening)),
        admin = %admin.as_ref().map_or_else(|| "off".to_string(), |(a, _)| a.to_string()),
        "datapath ready"
    );
    ready.set();

    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let mut resolver_tried = Instant::now();
    let mut exit_code = 0;
    loop {
        // What to read: `None` everything (SIGHUP), or what a watch batch names; and how long
        // its files took to settle.
        let (paths, settle): (Option<Vec<PathBuf>>, Duration) = tokio::select! {
            _ = sigterm.recv() => break,
            _ = sigint.recv() => break,
            _ = sighup.recv() => {
                // What the operator sees at the path is what is followed from now on.
                if let Some(watch) = &watch {
                    watch.follow();
                }
                (None, Duration::ZERO)
            }
            Some(batch) = changed.recv() => {
                let delivered = Instant::now();
                let mut paths = batch.paths;
                let mut first = batch.first_event;
                // Batches that arrived meanwhile are read in the same pass.
                while let Ok(more) = changed.try_recv() {
                    if paths.is_empty() || more.paths.is_empty() {
                        paths.clear();
                    } else {
                        paths.extend(more.paths);
                    }
                    first = first.min(more.first_event);
                }
                (Some(paths), delivered.saturating_duration_since(first))
            }
            answer = next_answer(&mut resolver) => {
                let mut answers = vec![answer];
                if let Some(resolver) = &mut resolver {
                    answers.extend(std::iter::from_fn(|| resolver.try_next()));
                }
                let update = agent.dns_answered(answers);
                saved_answers.save(agent.dns_table());
                match agent.flush() {
                    Ok(stats) => tracing::info!(
                        recompiled = update.recompiled_services,
                        added = stats.added,
                        changed = stats.changed,
                        removed = stats.removed,
                        "DNS answers applied"
                    ),
                    Err(err) => {
                        metrics.error(Step::Write);
                        tracing::error!("{err}");
                    }
                }
                continue;
            }
            Some(()) = changed_ejections(&mut ejection_changes) => {
                if let Some(ejections) = &ejections {
                    follow_ejections(&mut agent, ejections);
                }
                continue;
            }
            _ = tick.tick() => {
                if resolver.is_none() && resolver_tried.elapsed() >= RESOLVER_RETRY {
                    resolver_tried = Instant::now();
                    follow_names(&mut agent, &mut resolver, &options.dns);
                }
                if kube.as_ref().is_some_and(|watches| watches.stopped()) {
                    // An orderly exit (below), so that proxied services go back to the kernel
                    // path before the proxy goes.
                    tracing::error!(
                        "a Kubernetes watch stopped: exiting (the datapath stays on the last \
                         config applied; a restarted agent lists everything again)"
                    );
                    exit_code = 1;
                    break;
                }
                if !vsteer_datapath::pins_present(&options.pin_dir) {
                    // `vsteer uninstall --force`, or a hand: the links went with the pins,
                    // so nothing steers. The agent takes the directory again and puts the
                    // plan in force back.
                    tracing::error!(
                        "the pinned datapath under {} was removed while this agent ran: \
                         steering had stopped; re-creating it",
                        options.pin_dir.display()
                    );
                    // The pins alone may have gone (the directory and the lock on it stay): a
                    // second claim would conflict with this agent's own lock.
                    let ours = _owner.covers(&options.pin_dir);
                    match if ours { None } else { Some(PinDirOwner::claim(&options.pin_dir)?) } {
                        None => {}
                        Some(Claim::Owned(claimed)) => _owner = claimed,
                        Some(Claim::Busy { holder }) => anyhow::bail!(
                            "the pinned datapath was removed and --pin-dir {} is now owned by \
                             {}: exiting",
                            options.pin_dir.display(),
                            vsteer_datapath::holder_name(holder)
                        ),
                    }
                    let datapath = Datapath::start(&datapath_options)?;
                    original.set(datapath.original_destinations()?);
                    agent.sink_mut().datapath = datapath;
                    let stats = agent.rewrite_all()?;
                    if let (Some(settings), Some(proxy)) = (&options.proxy, &proxy) {
                        agent
                            .sink_mut()
                            .datapath
                            .set_proxy(Some(&settings.redirect(&proxy.listening)))?;
                    }
                    tracing::info!(
                        written = stats.added + stats.changed,
                        refused = stats.refused.len(),
                        "datapath re-created"
                    );
                    continue;
                }
                match agent.sweep() {
                    Some(Ok(stats)) if stats.added + stats.changed + stats.removed > 0 => {
                        tracing::info!(
                            added = stats.added,
                            changed = stats.changed,
                            removed = stats.removed,
                            still_refused = stats.refused.len(),
                            "services written once the kernel maps had room"
                        );
                    }
                    Some(Err(err)) => tracing::error!("{err}"),
                    _ => {}
                }
                if let Some(pods) = kube.as_ref().and_then(|w| w.node_pods.as_ref())
                    && let Ok(mut pods) = pods.lock()
                {
                    pods.resolve();
                }
                match agent.prune() {
                    Some(Ok(pruned)) => tracing::info!(pruned, "pruned the connection counters of removed backends"),
                    Some(Err(err)) => tracing::warn!("pruning the connection counters: {err:#}"),
                    None => {}
                }
                continue;
            }
        };
        let delivered = Instant::now();
        let Some(read) = reader.read(paths, &mut sigterm, &mut sigint).await? else {
            tracing::info!("stopped while reading the config; that read is not applied");
            break;
        };
        let result = agent.reload_from(read);
        follow_names(&mut agent, &mut resolver, &options.dns);
        match &result {
            Ok(applied) => metrics.applied(
                Some(settle + delivered.elapsed()),
                agent.plan().len(),
                applied.rejected,
            ),
            Err(PassError::Read(_)) => metrics.error(Step::Read),
            Err(PassError::Write(_)) => metrics.error(Step::Write),
        }
        note_objects(&metrics, kube.as_ref());
        log(result, settle, delivered);
    }
    if let Some(proxy) = proxy {
        // The kernel first, so that no new connection is sent to a proxy that is going away.
        if let Err(err) = agent.sink_mut().datapath.set_proxy(None) {
            tracing::error!("proxied services could not be put back on the kernel path: {err:#}");
        }
        proxy.stop().await;
    }
    if let Some((_, task)) = admin {
        task.abort();
    }
    tracing::info!(
        pin_dir = %options.pin_dir.display(),
        "exiting; the datapath stays in place on the last config (`vsteer uninstall` removes it)"
    );
    Ok(exit_code)
}

/// Tells the resolver which names to follow now; it starts with the first DNS-resolved
/// entry (a node without any never reads /etc/resolv.conf). A resolver that cannot start is
/// reported and tried again with the next change and every [`RESOLVER_RETRY`].
fn follow_names(agent: &mut Agent<Node>, resolver: &mut Option<Resolver>, settings: &DnsSettings) {
    let watch = agent.take_dns_watch();
    match resolver {
        Some(resolver) => resolver.watch(watch),
        None if agent.dns_names().is_empty() => {}
        None => match Resolver::start(settings) {
            Ok(started) => {
                // Every name the config needs now, including those of earlier failed starts.
                started.watch(Watch {
                    added: agent.dns_names(),
                    removed: Vec::new(),
                });
                *resolver = Some(started);
            }
            Err(err) => tracing::error!(
                "DNS names cannot be resolved (their last saved answers stay in force, if any): {err:#}; tried again in {}s",
                RESOLVER_RETRY.as_secs()
            ),
        },
    }
}

/// How often a resolver that could not start is tried again.
const RESOLVER_RETRY: Duration = Duration::from_secs(30);

/// The first answers for every name of the config, waited for up to [`DNS_START_WAIT`];
/// names still unanswered then (or with no resolver) get the answer the last run saved,
/// until DNS answers.
async fn first_answers(
    agent: &mut Agent<Node>,
    resolver: Option<&mut Resolver>,
    saved: &SavedAnswers,
) {
    let deadline = tokio::time::Instant::now() + DNS_START_WAIT;
    if let Some(resolver) = resolver {
        while !agent.dns_answered_all() {
            match tokio::time::timeout_at(deadline, resolver.next()).await {
                Ok(answer) => {
                    agent.dns_answered([answer]);
                }
                Err(_) => break,
            }
        }
    }
    let unanswered = agent.dns_unanswered();
    if unanswered.is_empty() {
        return;
    }
    let seeds: Vec<_> = saved.for_names(&unanswered).collect();
    for seed in &seeds {
        tracing::warn!(
            name = %seed.name,
            addresses = ?seed.addresses,
            "no DNS answer within {}s of the start: the answer the last run saved is used until DNS answers",
            DNS_START_WAIT.as_secs()
        );
    }
    let seeded = seeds.len();
    agent.dns_answered(seeds);
    if unanswered.len() > seeded {
        tracing::warn!(
            names = unanswered.len() - seeded,
            "DNS names with no answer within {}s of the start and none saved: their services get endpoints when DNS answers",
            DNS_START_WAIT.as_secs()
        );
    }
}

/// The resolver's next changed answer (forever when none runs).
async fn next_answer(resolver: &mut Option<Resolver>) -> crate::resolve::dns::Answer {
    match resolver {
        Some(resolver) => resolver.next().await,
        None => std::future::pending().await,
    }
}

/// Waits for the proxy's ejections to change (forever when no proxy runs).
async fn changed_ejections(changes: &mut Option<tokio::sync::watch::Receiver<u64>>) -> Option<()> {
    match changes {
        Some(changes) => changes.changed().await.ok(),
        None => std::future::pending().await,
    }
}

/// Brings the kernel's tables in line with the proxy's ejections: the services backed by an
/// endpoint ejected or put back since the last time are written again.
fn follow_ejections(agent: &mut Agent<Node>, ejections: &Ejections) {
    let now = ejections.addresses();
    let changed: BTreeSet<SocketAddr> = now
        .symmetric_difference(&agent.sink().ejected)
        .copied()
        .collect();
    if changed.is_empty() {
        return;
    }
    let keys = ejected::backed_by(agent.plan(), &changed);
    agent.sink_mut().ejected = now;
    match agent.rewrite(&keys) {
        Ok(stats) => tracing::info!(
            ejected = ?agent.sink().ejected,
            services = keys.len(),
            written = stats.added + stats.changed,
            "the kernel's tables follow the proxy's ejections"
        ),
        Err(err) => tracing::error!("{err}"),
    }
}

/// The Kubernetes objects held, by kind, into the metrics.
fn note_objects(metrics: &AgentMetrics, kube: Option<&kubernetes::Watches>) {
    if let Some(watches) = kube
        && let Ok(cluster) = watches.cluster.lock()
    {
        metrics.objects(&cluster.counts());
    }
}

/// Fails unless `dir` is a directory, naming it.
fn check_config_dir(dir: &std::path::Path) -> Result<()> {
    let metadata = std::fs::metadata(dir).with_context(|| {
        format!(
            "--config {}: cannot read the config directory",
            dir.display()
        )
    })?;
    if !metadata.is_dir() {
        anyhow::bail!(
            "--config {}: not a directory (give the directory that holds the *.yaml files)",
            dir.display()
        );
    }
    Ok(())
}

/// Reads the config on a thread of its own, one read at a time.
struct Reader {
    requests: std_mpsc::Sender<(Option<Vec<PathBuf>>, oneshot::Sender<Read>)>,
}

impl Reader {
    fn start(source: Arc<Mutex<Source>>) -> Result<Reader> {
        let (requests, incoming) =
            std_mpsc::channel::<(Option<Vec<PathBuf>>, oneshot::Sender<Read>)>();
        std::thread::Builder::new()
            .name("vsteer-read".into())
            .spawn(move || {
                for (paths, done) in incoming {
                    let _ = done.send(super::agent::read(&source, paths.as_deref()));
                }
            })
            .context("starting the config reader thread")?;
        Ok(Reader { requests })
    }

    /// Reads `paths` (`None`: everything); `None` when SIGTERM or SIGINT came first (the read
    /// goes on, unused, until the process exits).
    async fn read(
        &self,
        paths: Option<Vec<PathBuf>>,
        sigterm: &mut Signal,
        sigint: &mut Signal,
    ) -> Result<Option<Read>> {
        let (done, read) = oneshot::channel();
        self.requests
            .send((paths, done))
            .map_err(|_| anyhow::anyhow!("the config reader thread is gone"))?;
        tokio::select! {
            read = read => read
                .map(Some)
                .map_err(|_| anyhow::anyhow!("the config reader thread died while reading")),
            _ = sigterm.recv() => Ok(None),
            _ = sigint.recv() => Ok(None),
        }
    }
}

/// Services the kernel maps had no room for: each an error naming the limit (they keep what
/// they had and are retried with the next change).
fn log_refused(applied: &Applied) {
    for refused in &applied.stats.refused {
        tracing::error!("{refused}; it keeps what it had and is retried with the next change");
    }
}

/// Logs a reload and how long each step took (the benchmarks read these): `settle_ms` is
/// the wait for files to be quiet, `total_us` everything from the settled event to the maps
/// written.
fn log(result: Result<Applied, PassError>, settle: Duration, delivered: Instant) {
    match result {
        Ok(applied) => {
            log_refused(&applied);
            tracing::info!(
                added = applied.stats.added,
                changed = applied.stats.changed,
                removed = applied.stats.removed,
                unchanged = applied.stats.unchanged,
                resources = applied.resources,
                recompiled = applied.recompiled,
                settle_ms = settle.as_millis() as u64,
                read_us = applied.read.as_micros() as u64,
                compile_us = applied.compile.as_micros() as u64,
                apply_us = applied.apply.as_micros() as u64,
                total_us = delivered.elapsed().as_micros() as u64,
                "config applied"
            );
            if applied.resources >= super::memory::LARGE_PASS {
                super::memory::release_freed();
            }
        }
        Err(err) => tracing::error!("{err}"),
    }
}
