//! A recording relay: a TCP proxy on loopback between its clients and one upstream address that
//! forwards every byte both ways and keeps a copy of all of them, so a test can check what an
//! observer on the network path sees.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// A running relay; it stops accepting when dropped.
pub(crate) struct Relay {
    /// Where clients connect instead of the upstream.
    pub(crate) address: SocketAddr,
    /// Every byte forwarded, in either direction, in the order read.
    recorded: Arc<Mutex<Vec<u8>>>,
    accepting: tokio::task::JoinHandle<()>,
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.accepting.abort();
    }
}

impl Relay {
    /// Starts relaying to `upstream` on a loopback port the kernel picks.
    pub(crate) fn start(upstream: SocketAddr) -> Relay {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let address = listener.local_addr().unwrap();
        let listener = TcpListener::from_std(listener).unwrap();
        let recorded = Arc::new(Mutex::new(Vec::new()));
        let accepting = tokio::spawn({
            let recorded = recorded.clone();
            async move {
                while let Ok((client, _)) = listener.accept().await {
                    let Ok(server) = TcpStream::connect(upstream).await else {
                        continue;
                    };
                    let (client_read, client_write) = client.into_split();
                    let (server_read, server_write) = server.into_split();
                    tokio::spawn(forward(client_read, server_write, recorded.clone()));
                    tokio::spawn(forward(server_read, client_write, recorded.clone()));
                }
            }
        });
        Relay {
            address,
            recorded,
            accepting,
        }
    }

    /// The relay's own address as a URL with `scheme`.
    pub(crate) fn url(&self, scheme: &str) -> String {
        format!("{scheme}://{}", self.address)
    }

    /// Everything forwarded so far.
    pub(crate) fn recorded(&self) -> Vec<u8> {
        self.recorded.lock().unwrap().clone()
    }
}

/// Copies `from` to `to` until either side closes, recording every byte.
async fn forward(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    recorded: Arc<Mutex<Vec<u8>>>,
) {
    let mut buffer = vec![0u8; 16 * 1024];
    loop {
        let read = match from.read(&mut buffer).await {
            Ok(0) | Err(_) => break,
            Ok(read) => read,
        };
        recorded.lock().unwrap().extend_from_slice(&buffer[..read]);
        if to.write_all(&buffer[..read]).await.is_err() {
            break;
        }
    }
    let _ = to.shutdown().await;
}

/// The socket address in a `scheme://host:port` URL.
pub(crate) fn socket_address(url: &str) -> SocketAddr {
    url.split_once("://").unwrap().1.parse().unwrap()
}
