//! tokio UDP and TCP transport. It only moves bytes: datagrams and framed
//! stream messages go up as [`NetEvent`]s, everything SIP happens in the
//! sans-IO [`Endpoint`](crate::endpoint::Endpoint).

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::mpsc;
use tokio::task::JoinSet;

use crate::Transport;
use crate::message::StreamFramer;

/// Largest UDP datagram accepted (RFC 3261 s.18.1.1 messages fit well below).
const MAX_DATAGRAM: usize = 65_535;

#[derive(Debug)]
pub(crate) enum NetEvent {
    Received {
        transport: Transport,
        source: SocketAddr,
        data: Vec<u8>,
    },
    /// A TCP connection we were asked to open could not be.
    ConnectFailed {
        peer: SocketAddr,
        id: u64,
    },
    /// An incoming TCP connection, now usable for sending.
    Accepted {
        peer: SocketAddr,
        conn: Connection,
    },
    Closed {
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

pub(crate) struct Transports {
    udp: Option<Arc<UdpSocket>>,
    udp_addr: Option<SocketAddr>,
    tcp_addr: Option<SocketAddr>,
    /// One connection per peer address, reused for every message to it.
    connections: HashMap<SocketAddr, Connection>,
    events: mpsc::UnboundedSender<NetEvent>,
    connect_timeout: Duration,
    /// Receive loops and connections; dropped (aborted) with the transports.
    tasks: JoinSet<()>,
}

impl Transports {
    pub(crate) async fn bind(
        udp_listen: Option<SocketAddr>,
        tcp_listen: Option<SocketAddr>,
        connect_timeout: Duration,
    ) -> io::Result<(Self, mpsc::UnboundedReceiver<NetEvent>)> {
        let (events, events_rx) = mpsc::unbounded_channel();
        let mut tasks = JoinSet::new();

        let (udp, udp_addr) = match udp_listen {
            Some(addr) => {
                let socket = Arc::new(UdpSocket::bind(addr).await?);
                let local = socket.local_addr()?;
                tasks.spawn(udp_receive_loop(socket.clone(), events.clone()));
                (Some(socket), Some(local))
            }
            None => (None, None),
        };
        let tcp_addr = match tcp_listen {
            Some(addr) => {
                let listener = TcpListener::bind(addr).await?;
                let local = listener.local_addr()?;
                tasks.spawn(accept_loop(listener, events.clone()));
                Some(local)
            }
            None => None,
        };
        let transports = Self { udp, udp_addr, tcp_addr, connections: HashMap::new(), events, connect_timeout, tasks };
        Ok((transports, events_rx))
    }

    pub(crate) fn local_addr(&self, transport: Transport) -> Option<SocketAddr> {
        match transport {
            Transport::Udp => self.udp_addr,
            Transport::Tcp => self.tcp_addr,
        }
    }

    /// Sends one message. TCP sends are queued on the peer's connection
    /// (opened on demand); failures come back as [`NetEvent`]s.
    pub(crate) async fn send(&mut self, transport: Transport, dest: SocketAddr, data: Vec<u8>) -> io::Result<()> {
        match transport {
            Transport::Udp => {
                let socket =
                    self.udp.as_ref().ok_or_else(|| io::Error::new(io::ErrorKind::NotConnected, "no UDP listener"))?;
                socket.send_to(&data, dest).await?;
                Ok(())
            }
            Transport::Tcp => {
                if let Some(conn) = self.connections.get(&dest)
                    && conn.tx.send(data.clone()).is_ok()
                {
                    return Ok(());
                }
                let (tx, rx) = mpsc::unbounded_channel();
                let id = next_connection_id();
                // Queued before the connection exists; the task flushes it once connected.
                let _ = tx.send(data);
                self.connections.insert(dest, Connection { id, tx });
                self.tasks.spawn(outgoing_connection(dest, id, rx, self.events.clone(), self.connect_timeout));
                Ok(())
            }
        }
    }

    pub(crate) fn connection_accepted(&mut self, peer: SocketAddr, conn: Connection) {
        self.connections.insert(peer, conn);
    }

    /// Forgets a connection, unless a newer one to the same peer replaced it.
    pub(crate) fn connection_gone(&mut self, peer: SocketAddr, id: u64) {
        if self.connections.get(&peer).is_some_and(|c| c.id == id) {
            self.connections.remove(&peer);
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

async fn accept_loop(listener: TcpListener, events: mpsc::UnboundedSender<NetEvent>) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    let (tx, rx) = mpsc::unbounded_channel();
                    let id = next_connection_id();
                    if events.send(NetEvent::Accepted { peer, conn: Connection { id, tx } }).is_err() {
                        return;
                    }
                    tracing::debug!(%peer, "TCP connection accepted");
                    connections.spawn(run_connection(stream, peer, id, rx, events.clone()));
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

async fn outgoing_connection(
    peer: SocketAddr,
    id: u64,
    rx: mpsc::UnboundedReceiver<Vec<u8>>,
    events: mpsc::UnboundedSender<NetEvent>,
    timeout: Duration,
) {
    match tokio::time::timeout(timeout, TcpStream::connect(peer)).await {
        Ok(Ok(stream)) => {
            tracing::debug!(%peer, "TCP connection established");
            run_connection(stream, peer, id, rx, events).await;
        }
        Ok(Err(error)) => {
            tracing::warn!(%peer, %error, "TCP connect failed");
            let _ = events.send(NetEvent::ConnectFailed { peer, id });
        }
        Err(_) => {
            tracing::warn!(%peer, "TCP connect timed out");
            let _ = events.send(NetEvent::ConnectFailed { peer, id });
        }
    }
}

async fn run_connection(
    stream: TcpStream,
    peer: SocketAddr,
    id: u64,
    mut rx: mpsc::UnboundedReceiver<Vec<u8>>,
    events: mpsc::UnboundedSender<NetEvent>,
) {
    let _ = stream.set_nodelay(true);
    let (mut reader, mut writer) = stream.into_split();
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
                                let event = NetEvent::Received { transport: Transport::Tcp, source: peer, data };
                                if events.send(event).is_err() {
                                    return;
                                }
                            }
                            Ok(None) => break,
                            Err(error) => {
                                tracing::warn!(%peer, %error, "unframeable TCP stream; closing");
                                let _ = events.send(NetEvent::Closed { peer, id });
                                return;
                            }
                        }
                    }
                }
                Err(error) => {
                    tracing::debug!(%peer, %error, "TCP read error");
                    break;
                }
            },
            outgoing = rx.recv() => match outgoing {
                Some(data) => {
                    if let Err(error) = writer.write_all(&data).await {
                        tracing::warn!(%peer, %error, "TCP write failed");
                        break;
                    }
                }
                None => break,
            },
        }
    }
    tracing::debug!(%peer, "TCP connection closed");
    let _ = events.send(NetEvent::Closed { peer, id });
}
