//! tokio UDP, TCP and TLS transport. It only moves bytes: datagrams and framed
//! stream messages go up as [`NetEvent`]s, everything SIP happens in the
//! sans-IO [`Endpoint`](crate::endpoint::Endpoint). TLS is TCP with rustls
//! underneath: the same framing, connection reuse and events.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_rustls::{TlsAcceptor, TlsConnector};

use crate::message::StreamFramer;
use crate::{SipError, TlsConfig, Transport};

/// Largest UDP datagram accepted (RFC 3261 s.18.1.1 messages fit well below).
const MAX_DATAGRAM: usize = 65_535;

#[derive(Debug)]
pub(crate) enum NetEvent {
    Received {
        transport: Transport,
        source: SocketAddr,
        data: Vec<u8>,
    },
    /// A TCP or TLS connection we were asked to open could not be (including a failed handshake).
    ConnectFailed {
        transport: Transport,
        peer: SocketAddr,
        id: u64,
    },
    /// An incoming connection (TLS: once its handshake is done), now usable for sending.
    Accepted {
        transport: Transport,
        peer: SocketAddr,
        conn: Connection,
    },
    Closed {
        transport: Transport,
        peer: SocketAddr,
        id: u64,
    },
}

#[derive(Debug, Clone)]
pub(crate) struct Connection {
    id: u64,
    tx: mpsc::UnboundedSender<Vec<u8>>,
}

fn next_connection_id() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

fn listen_error(transport: Transport, addr: SocketAddr) -> impl FnOnce(io::Error) -> SipError {
    move |source| SipError::Listen { transport, addr, source }
}

/// What the transports listen on.
pub(crate) struct Listeners {
    pub udp: Option<SocketAddr>,
    pub tcp: Option<SocketAddr>,
    pub tls: Option<(SocketAddr, TlsConfig)>,
}

/// The client side of TLS: `None` connector when no trust anchors were given.
struct TlsClient {
    connector: Option<TlsConnector>,
    config: TlsConfig,
}

pub(crate) struct Transports {
    udp: Option<Arc<UdpSocket>>,
    udp_addr: Option<SocketAddr>,
    tcp_addr: Option<SocketAddr>,
    tls_addr: Option<SocketAddr>,
    tls_client: Option<TlsClient>,
    /// One connection per transport and peer address, reused for every message to it.
    connections: HashMap<(Transport, SocketAddr), Connection>,
    events: mpsc::UnboundedSender<NetEvent>,
    connect_timeout: Duration,
    /// Receive loops and connections; dropped (aborted) with the transports.
    tasks: JoinSet<()>,
}

impl Transports {
    pub(crate) async fn bind(
        listeners: Listeners,
        connect_timeout: Duration,
    ) -> Result<(Self, mpsc::UnboundedReceiver<NetEvent>), SipError> {
        let (events, events_rx) = mpsc::unbounded_channel();
        let mut tasks = JoinSet::new();

        let (udp, udp_addr) = match listeners.udp {
            Some(addr) => {
                let socket = Arc::new(UdpSocket::bind(addr).await.map_err(listen_error(Transport::Udp, addr))?);
                let local = socket.local_addr()?;
                tasks.spawn(udp_receive_loop(socket.clone(), events.clone()));
                (Some(socket), Some(local))
            }
            None => (None, None),
        };
        let tcp_addr = match listeners.tcp {
            Some(addr) => {
                let listener = TcpListener::bind(addr).await.map_err(listen_error(Transport::Tcp, addr))?;
                let local = listener.local_addr()?;
                tasks.spawn(accept_loop(listener, None, connect_timeout, events.clone()));
                Some(local)
            }
            None => None,
        };
        let (tls_addr, tls_client) = match listeners.tls {
            Some((addr, config)) => {
                let connector = config.connector()?;
                let listener = TcpListener::bind(addr).await.map_err(listen_error(Transport::Tls, addr))?;
                let local = listener.local_addr()?;
                tasks.spawn(accept_loop(listener, Some(config.acceptor()), connect_timeout, events.clone()));
                (Some(local), Some(TlsClient { connector, config }))
            }
            None => (None, None),
        };
        let transports = Self {
            udp,
            udp_addr,
            tcp_addr,
            tls_addr,
            tls_client,
            connections: HashMap::new(),
            events,
            connect_timeout,
            tasks,
        };
        Ok((transports, events_rx))
    }

    pub(crate) fn local_addr(&self, transport: Transport) -> Option<SocketAddr> {
        match transport {
            Transport::Udp => self.udp_addr,
            Transport::Tcp => self.tcp_addr,
            Transport::Tls => self.tls_addr,
        }
    }

    /// Sends one message. TCP and TLS sends are queued on the peer's connection
    /// (opened on demand); failures come back as [`NetEvent`]s.
    pub(crate) async fn send(&mut self, transport: Transport, dest: SocketAddr, data: Vec<u8>) -> io::Result<()> {
        if transport == Transport::Udp {
            let socket =
                self.udp.as_ref().ok_or_else(|| io::Error::new(io::ErrorKind::NotConnected, "no UDP listener"))?;
            socket.send_to(&data, dest).await?;
            return Ok(());
        }
        let key = (transport, dest);
        if let Some(conn) = self.connections.get(&key)
            && conn.tx.send(data.clone()).is_ok()
        {
            return Ok(());
        }
        let tls = match transport {
            Transport::Tls => Some(self.tls_client_for(dest)?),
            Transport::Udp | Transport::Tcp => None,
        };
        let (tx, rx) = mpsc::unbounded_channel();
        let id = next_connection_id();
        // Queued before the connection exists; the task flushes it once connected.
        let _ = tx.send(data);
        self.connections.insert(key, Connection { id, tx });
        self.tasks.spawn(outgoing_connection(dest, id, rx, self.events.clone(), self.connect_timeout, tls));
        Ok(())
    }

    fn tls_client_for(&self, dest: SocketAddr) -> io::Result<(TlsConnector, ServerName<'static>)> {
        let client =
            self.tls_client.as_ref().ok_or_else(|| io::Error::new(io::ErrorKind::NotConnected, "no TLS listener"))?;
        let connector = client.connector.clone().ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::NotConnected,
                "no TLS trust anchors configured: outgoing TLS connections are refused",
            )
        })?;
        Ok((connector, client.config.name_for(dest)))
    }

    pub(crate) fn connection_accepted(&mut self, transport: Transport, peer: SocketAddr, conn: Connection) {
        self.connections.insert((transport, peer), conn);
    }

    /// Forgets a connection, unless a newer one to the same peer replaced it.
    pub(crate) fn connection_gone(&mut self, transport: Transport, peer: SocketAddr, id: u64) {
        let key = (transport, peer);
        if self.connections.get(&key).is_some_and(|c| c.id == id) {
            self.connections.remove(&key);
        }
        // Reap finished connection tasks so the set does not grow.
        while self.tasks.try_join_next().is_some() {}
    }
}

async fn udp_receive_loop(socket: Arc<UdpSocket>, events: mpsc::UnboundedSender<NetEvent>) {
    let mut buf = vec![0u8; MAX_DATAGRAM];
    loop {
        match socket.recv_from(&mut buf).await {
            Ok((len, source)) => {
                let data = &buf[..len];
                // Keep-alive CRLFs (RFC 5626) carry no message.
                if data.iter().all(|b| b.is_ascii_whitespace()) {
                    continue;
                }
                let event = NetEvent::Received { transport: Transport::Udp, source, data: data.to_vec() };
                if events.send(event).is_err() {
                    return;
                }
            }
            // ICMP errors surface here on some platforms; the socket stays usable.
            Err(error) => tracing::debug!(%error, "UDP receive error"),
        }
    }
}

/// Accepts TCP connections; with `tls`, each must complete a TLS handshake within
/// `handshake_timeout` before it is reported (a failed one is only logged).
async fn accept_loop(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    handshake_timeout: Duration,
    events: mpsc::UnboundedSender<NetEvent>,
) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    let _ = stream.set_nodelay(true);
                    let events = events.clone();
                    match tls.clone() {
                        None => {
                            connections.spawn(async move {
                                tracing::debug!(%peer, "TCP connection accepted");
                                run_accepted(stream, Transport::Tcp, peer, events).await;
                            });
                        }
                        Some(acceptor) => {
                            connections.spawn(accept_tls(acceptor, stream, peer, handshake_timeout, events));
                        }
                    }
                }
                Err(error) => {
                    tracing::warn!(%error, "TCP accept failed");
                    // Typically EMFILE: back off instead of spinning.
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
            Some(_) = connections.join_next() => {}
        }
    }
}

async fn accept_tls(
    acceptor: TlsAcceptor,
    stream: TcpStream,
    peer: SocketAddr,
    handshake_timeout: Duration,
    events: mpsc::UnboundedSender<NetEvent>,
) {
    match tokio::time::timeout(handshake_timeout, acceptor.accept(stream)).await {
        Ok(Ok(stream)) => {
            tracing::debug!(%peer, "TLS connection accepted");
            run_accepted(stream, Transport::Tls, peer, events).await;
        }
        // Scanners and misconfigured peers end up here: not worth a warning each.
        Ok(Err(error)) => tracing::info!(%peer, %error, "incoming TLS handshake failed; dropped"),
        Err(_) => tracing::info!(%peer, "incoming TLS handshake timed out; dropped"),
    }
}

async fn run_accepted<S>(stream: S, transport: Transport, peer: SocketAddr, events: mpsc::UnboundedSender<NetEvent>)
where
    S: AsyncRead + AsyncWrite + Send + 'static,
{
    let (tx, rx) = mpsc::unbounded_channel();
    let id = next_connection_id();
    // Sent before anything is read from the connection, so the endpoint can answer on it.
    if events.send(NetEvent::Accepted { transport, peer, conn: Connection { id, tx } }).is_err() {
        return;
    }
    run_connection(stream, transport, peer, id, rx, events).await;
}

async fn outgoing_connection(
    peer: SocketAddr,
    id: u64,
    rx: mpsc::UnboundedReceiver<Vec<u8>>,
    events: mpsc::UnboundedSender<NetEvent>,
    timeout: Duration,
    tls: Option<(TlsConnector, ServerName<'static>)>,
) {
    let transport = if tls.is_some() { Transport::Tls } else { Transport::Tcp };
    // The timeout covers the TLS handshake too: a peer that accepts TCP but never completes the
    // handshake must fail the transaction like one that does not answer.
    let connected = tokio::time::timeout(timeout, async {
        let stream = TcpStream::connect(peer).await?;
        let _ = stream.set_nodelay(true);
        match tls {
            None => Ok::<_, io::Error>(Stream::Tcp(stream)),
            Some((connector, name)) => Ok(Stream::Tls(Box::new(connector.connect(name, stream).await?))),
        }
    })
    .await;
    match connected {
        Ok(Ok(stream)) => {
            tracing::debug!(%peer, ?transport, "connection established");
            match stream {
                Stream::Tcp(stream) => run_connection(stream, transport, peer, id, rx, events).await,
                Stream::Tls(stream) => run_connection(*stream, transport, peer, id, rx, events).await,
            }
        }
        Ok(Err(error)) => {
            tracing::warn!(%peer, ?transport, %error, "connect failed");
            let _ = events.send(NetEvent::ConnectFailed { transport, peer, id });
        }
        Err(_) => {
            tracing::warn!(%peer, ?transport, "connect timed out");
            let _ = events.send(NetEvent::ConnectFailed { transport, peer, id });
        }
    }
}

enum Stream {
    Tcp(TcpStream),
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

async fn run_connection<S>(
    stream: S,
    transport: Transport,
    peer: SocketAddr,
    id: u64,
    mut rx: mpsc::UnboundedReceiver<Vec<u8>>,
    events: mpsc::UnboundedSender<NetEvent>,
) where
    S: AsyncRead + AsyncWrite + Send + 'static,
{
    let (mut reader, mut writer) = tokio::io::split(stream);
    let mut framer = StreamFramer::default();
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        tokio::select! {
            read = reader.read(&mut buf) => match read {
                Ok(0) => break,
                Ok(n) => {
                    framer.push(&buf[..n]);
                    loop {
                        match framer.next_message() {
                            Ok(Some(data)) => {
                                let event = NetEvent::Received { transport, source: peer, data };
                                if events.send(event).is_err() {
                                    return;
                                }
                            }
                            Ok(None) => break,
                            Err(error) => {
                                tracing::warn!(%peer, ?transport, %error, "unframeable stream; closing");
                                let _ = events.send(NetEvent::Closed { transport, peer, id });
                                return;
                            }
                        }
                    }
                }
                Err(error) => {
                    // Over TLS this is also where a corrupt record or a bad alert ends up.
                    tracing::debug!(%peer, ?transport, %error, "read error");
                    break;
                }
            },
            outgoing = rx.recv() => match outgoing {
                Some(data) => {
                    // TLS buffers records inside rustls: without the flush they may sit there.
                    if let Err(error) = async { writer.write_all(&data).await?; writer.flush().await }.await {
                        tracing::warn!(%peer, ?transport, %error, "write failed");
                        break;
                    }
                }
                None => break,
            },
        }
    }
    tracing::debug!(%peer, ?transport, "connection closed");
    let _ = events.send(NetEvent::Closed { transport, peer, id });
}
