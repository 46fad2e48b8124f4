//! The gRPC listener's connections, accepted and brought through their handshakes (TLS, then the
//! client's HTTP/2 connection preface) within `--handshake-timeout` before tonic serves them. A
//! connection that sends nothing, half a ClientHello, or TLS without the preface is closed at that
//! deadline instead of holding a socket and a task for as long as its peer likes: hyper's own
//! timers (keepalive pings, the request timeout) start only once HTTP/2 is up.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::server::{Connected, TcpConnectInfo};

/// What an HTTP/2 client sends first (RFC 9113, section 3.4), before any frame.
const PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// How long the accept loop waits after an accept that failed for a reason of this process's
/// (no file descriptor left, no buffer memory), as axum and hyper do: long enough to cost no
/// CPU, short enough that the server recovers within a second of descriptors freeing up.
const ACCEPT_RETRY: Duration = Duration::from_secs(1);

/// A byte stream tonic can serve: the TCP stream itself or TLS over it.
trait Transport: AsyncRead + AsyncWrite + Unpin + Send {}

impl<T: AsyncRead + AsyncWrite + Unpin + Send> Transport for T {}

/// A connection whose handshakes completed, for tonic: its preface was read to check it, and is
/// handed to hyper again before anything else the client sent.
pub(crate) struct Connection {
    transport: Box<dyn Transport>,
    /// The TCP addresses, taken before TLS wrapped the stream (`Request::remote_addr` reads them).
    connect_info: TcpConnectInfo,
    /// How much of [`PREFACE`] hyper has been given back; reads go to the transport after it.
    preface_replayed: usize,
}

impl Connected for Connection {
    type ConnectInfo = TcpConnectInfo;

    fn connect_info(&self) -> TcpConnectInfo {
        self.connect_info.clone()
    }
}

impl AsyncRead for Connection {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if let Some(rest) = PREFACE
            .get(this.preface_replayed..)
            .filter(|r| !r.is_empty())
        {
            let given = rest.len().min(buf.remaining());
            buf.put_slice(&rest[..given]);
            this.preface_replayed += given;
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.transport).poll_read(cx, buf)
    }
}

impl AsyncWrite for Connection {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().transport).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().transport).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.transport.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().transport).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().transport).poll_shutdown(cx)
    }
}

/// The listener's connections for tonic, accepted by a task of their own; each runs its
/// handshakes (TLS with `tls`, then the preface) in a task of its own, ended at
/// `handshake_timeout`, so one slow client holds up no other.
///
/// tonic retries a failed accept at once, which under descriptor exhaustion (EMFILE: the
/// connection stays in the backlog, so the listener stays readable) is a loop at 100 % CPU; here
/// such a failure is logged and retried after [`ACCEPT_RETRY`]. A failure of the peer's (reset,
/// aborted) is skipped. The task, and the handshakes under way, end when the stream is dropped
/// and the next accept returns, or when aborted.
pub(crate) fn accept_connections(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    handshake_timeout: Duration,
) -> (
    ReceiverStream<io::Result<Connection>>,
    tokio::task::JoinHandle<()>,
) {
    let (connections, incoming) = tokio::sync::mpsc::channel(64);
    let acceptor = tokio::spawn(async move {
        let mut handshakes = JoinSet::new();
        loop {
            let accepted = tokio::select! {
                accepted = listener.accept() => accepted,
                Some(_) = handshakes.join_next(), if !handshakes.is_empty() => continue,
            };
            match accepted {
                Ok((stream, peer)) => {
                    if connections.is_closed() {
                        return;
                    }
                    // serve_with_incoming ignores the builder's tcp_nodelay.
                    let _ = stream.set_nodelay(true);
                    let tls = tls.clone();
                    let connections = connections.clone();
                    handshakes.spawn(async move {
                        match tokio::time::timeout(handshake_timeout, handshake(stream, tls)).await
                        {
                            Ok(Ok(connection)) => {
                                let _ = connections.send(Ok(connection)).await;
                            }
                            Ok(Err(error)) => {
                                tracing::debug!(%peer, %error, "handshake failed");
                            }
                            Err(_) => {
                                tracing::debug!(
                                    %peer,
                                    timeout_ms = handshake_timeout.as_millis(),
                                    "handshake not completed in time (--handshake-timeout); closed"
                                );
                            }
                        }
                    });
                }
                Err(error) if is_peer_error(&error) => {}
                Err(error) => {
                    tracing::error!(%error, "cannot accept a gRPC connection; retrying in 1 s");
                    tokio::time::sleep(ACCEPT_RETRY).await;
                }
            }
        }
    });
    (ReceiverStream::new(incoming), acceptor)
}

/// TLS (with `tls`), then the client's HTTP/2 preface, checked.
async fn handshake(stream: TcpStream, tls: Option<TlsAcceptor>) -> io::Result<Connection> {
    let connect_info = stream.connect_info();
    let mut transport: Box<dyn Transport> = match tls {
        Some(tls) => Box::new(tls.accept(stream).await?),
        None => Box::new(stream),
    };
    let mut preface = [0; PREFACE.len()];
    transport.read_exact(&mut preface).await?;
    if &preface != PREFACE {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "not an HTTP/2 connection preface",
        ));
    }
    Ok(Connection {
        transport,
        connect_info,
        preface_replayed: 0,
    })
}

/// An accept error that is the connecting peer's, not this process's.
fn is_peer_error(error: &io::Error) -> bool {
    use io::ErrorKind;
    matches!(
        error.kind(),
        ErrorKind::ConnectionRefused | ErrorKind::ConnectionAborted | ErrorKind::ConnectionReset
    )
}
