//! `--metrics-listen ADDR`: the Prometheus metrics of the fleet the load generator hosts (the
//! agent's registry, the same text `droidfleet-agent run --metrics-listen` serves), on
//! `GET http://ADDR/metrics` from the moment the fleet is loaded until the run ends (with
//! `--wait`, until Ctrl-C), so a Prometheus scraping the run sees the agent side of it.

use super::error::LoadtestError;
use droidfleet_agent::metrics::AgentMetrics;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// The endpoint: its address is bound (and printed) before the fleet exists, so a bad address
/// fails the run at once; it serves once the fleet's metrics are handed to [`Self::serve`].
pub(super) struct MetricsEndpoint {
    pub address: SocketAddr,
    /// Held until the fleet is loaded, then moved into the server task.
    listener: Option<TcpListener>,
    stop: watch::Sender<bool>,
    task: Option<JoinHandle<std::io::Result<()>>>,
}

impl MetricsEndpoint {
    pub(super) async fn bind(address: SocketAddr) -> Result<MetricsEndpoint, LoadtestError> {
        let listener = TcpListener::bind(address)
            .await
            .map_err(|source| LoadtestError::MetricsListen { address, source })?;
        let address = listener
            .local_addr()
            .map_err(|source| LoadtestError::MetricsListen { address, source })?;
        Ok(MetricsEndpoint {
            address,
            listener: Some(listener),
            stop: watch::channel(false).0,
            task: None,
        })
    }

    /// Starts serving `metrics` (a second call serves nothing more: the listener is gone).
    pub(super) fn serve(&mut self, metrics: Arc<AgentMetrics>) {
        let Some(listener) = self.listener.take() else {
            return;
        };
        let mut stopped = self.stop.subscribe();
        self.task = Some(tokio::spawn(droidfleet_agent::metrics::serve_metrics(
            listener,
            move || metrics.render(),
            async move {
                let _ = stopped.wait_for(|stop| *stop).await;
            },
        )));
    }

    /// Stops the server and waits for it; an error it ended with is logged, not fatal: the
    /// report is written already.
    pub(super) async fn stop(self) {
        let _ = self.stop.send(true);
        if let Some(task) = self.task {
            match task.await {
                Ok(Ok(())) => {}
                Ok(Err(error)) => tracing::warn!(%error, "the metrics endpoint failed"),
                Err(error) => tracing::warn!(%error, "the metrics endpoint's task failed"),
            }
        }
    }
}
