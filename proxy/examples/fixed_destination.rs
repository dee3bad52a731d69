//! A development harness, not part of the agent: the proxy serving one YAML file's plan with
//! every accepted connection's original destination fixed to one VIP:port, so a load
//! generator can hit it straight on loopback (profiling the proxy without the kernel hooks).
//! `cargo run --release -p vsteer-proxy --example fixed_destination -- FILE VIP:PORT LISTEN [WORKERS]`

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use vsteer_proxy::{OriginalDestination, Proxy, ProxyOptions, RouteTables};

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    anyhow::ensure!(args.len() >= 4, "usage: FILE VIP:PORT LISTEN [WORKERS]");
    let yaml = std::fs::read_to_string(&args[1]).with_context(|| args[1].clone())?;
    let vip: SocketAddr = args[2].parse().context("VIP:PORT")?;
    let listen: SocketAddr = args[3].parse().context("LISTEN")?;
    let threads: usize = args.get(4).map(|t| t.parse()).transpose()?.unwrap_or(1);
    let loaded = vsteer_model::parse::parse_str(&args[1], &yaml);
    let compiled = vsteer_compiler::compile(&loaded.resources, &vsteer_plan::Plan::default());
    anyhow::ensure!(compiled.errors.is_empty(), "{:?}", compiled.errors);
    let tables = RouteTables::new();
    tables.replace(&compiled.plan);
    anyhow::ensure!(
        tables.contains(vip),
        "{vip} is not a proxied service of {}",
        args[1]
    );
    let original: Arc<dyn OriginalDestination> =
        Arc::new(move |_peer: SocketAddr, _local: SocketAddr| Some(vip));
    let options = ProxyOptions {
        listen: vec![listen],
        workers: threads.max(1),
        ..ProxyOptions::default()
    };
    // As the agent runs it: one thread per worker, each a single-threaded runtime.
    let proxy = Proxy::bind(options, original, tables)?;
    let (workers, _stop) = proxy.into_workers();
    let threads: Vec<_> = workers
        .into_iter()
        .map(|worker| {
            std::thread::spawn(move || {
                tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .map_err(anyhow::Error::from)
                    .and_then(|runtime| runtime.block_on(worker.serve()))
            })
        })
        .collect();
    for thread in threads {
        thread
            .join()
            .map_err(|_| anyhow::anyhow!("a worker panicked"))??;
    }
    Ok(())
}
