//! Protocol upgrades (WebSocket and any HTTP/1.1 `Upgrade`): once the upstream answers 101,
//! both connections are handed over by hyper and bytes are copied both ways until either side
//! closes or the proxy shuts down.

use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use tokio::sync::watch;

/// Joins the two upgraded connections in a task of its own; `hold` lives as long as the
/// tunnel (its in-flight counts and the downstream connection's place in the gauge).
pub(crate) fn tunnel(
    downstream: OnUpgrade,
    upstream: OnUpgrade,
    hold: Box<dyn Send>,
    mut shutdown: watch::Receiver<bool>,
) {
    tokio::spawn(async move {
        let _hold = hold;
        let (downstream, upstream) = match tokio::join!(downstream, upstream) {
            (Ok(d), Ok(u)) => (d, u),
            (d, u) => {
                tracing::debug!(
                    "upgrade failed: downstream {:?}, upstream {:?}",
                    d.err(),
                    u.err()
                );
                return;
            }
        };
        let (mut downstream, mut upstream) = (TokioIo::new(downstream), TokioIo::new(upstream));
        tokio::select! {
            copied = tokio::io::copy_bidirectional(&mut downstream, &mut upstream) => {
                if let Err(e) = copied {
                    tracing::debug!("upgraded tunnel: {e}");
                }
            }
            _ = crate::proxy::stopped(&mut shutdown) => {}
        }
    });
}
