//! A web console served in this process over a test's control plane, on a loopback port, until
//! stopped.

use droidfleet_control_plane::clock::Clock;
use droidfleet_control_plane::service::ControlPlane;
use std::sync::Arc;
use tokio::sync::watch;

pub(crate) struct Console {
    /// `http://127.0.0.1:<port>`.
    pub(crate) address: String,
    stop: watch::Sender<bool>,
    server: tokio::task::JoinHandle<()>,
}

impl Console {
    /// Serves the console over `control_plane`, on its clock.
    pub(crate) async fn start(control_plane: Arc<ControlPlane>, clock: Arc<dyn Clock>) -> Console {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = format!("http://{}", listener.local_addr().unwrap());
        let (stop, mut stopped) = watch::channel(false);
        let options = droidfleet_console::ConsoleOptions { clock, tls: None };
        let server = tokio::spawn(droidfleet_console::serve(
            control_plane,
            listener,
            options,
            async move {
                let _ = stopped.wait_for(|s| *s).await;
            },
        ));
        Console {
            address,
            stop,
            server,
        }
    }

    /// The console's address for `path` (which starts with `/`).
    pub(crate) fn url(&self, path: &str) -> String {
        format!("{}{path}", self.address)
    }

    /// Stops the server (live streams included) and waits until it has.
    pub(crate) async fn stop(self) {
        self.stop.send(true).unwrap();
        tokio::time::timeout(super::DEADLINE, self.server)
            .await
            .expect("the console stops in time")
            .unwrap();
    }
}
