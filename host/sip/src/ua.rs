//! The public user agent: a cheap handle talking to one tokio task that owns
//! the sans-IO [`Endpoint`] and the sockets.

use std::net::{IpAddr, SocketAddr};
use std::time::Instant;

use tokio::sync::{mpsc, oneshot};

use crate::endpoint::{Endpoint, EndpointConfig, Output};
use crate::transport::{Listeners, NetEvent, Transports};
use crate::{
    DialogSnapshot, HangupKind, OfferMethod, OutgoingInvite, RegisterRequest, SipConfig, SipError, Transport, UaEvent,
};

enum Command {
    Invite(Box<OutgoingInvite>, oneshot::Sender<Result<String, SipError>>),
    Hangup(String, Option<String>, oneshot::Sender<Result<HangupKind, SipError>>),
    Provisional {
        call_id: String,
        status: u16,
        sdp: Option<String>,
        reliable: bool,
        reply: oneshot::Sender<Result<(), SipError>>,
    },
    Accept {
        call_id: String,
        sdp: Option<String>,
        reply: oneshot::Sender<Result<(), SipError>>,
    },
    Reject {
        call_id: String,
        status: u16,
        reason: String,
        reply: oneshot::Sender<Result<(), SipError>>,
    },
    Offer {
        call_id: String,
        method: OfferMethod,
        sdp: String,
        reply: oneshot::Sender<Result<(), SipError>>,
    },
    Register(Box<RegisterRequest>, oneshot::Sender<Result<String, SipError>>),
    Unregister(String, oneshot::Sender<Result<(), SipError>>),
    SetOfferAnswerer(std::sync::Arc<dyn crate::endpoint::OfferAnswerer>),
    Snapshot(String, oneshot::Sender<Option<DialogSnapshot>>),
    EndRecovered(Box<DialogSnapshot>, oneshot::Sender<Result<(), SipError>>),
    Shutdown(oneshot::Sender<()>),
}

/// Handle to the SIP user agent. Clones share the same task; the task stops
/// on [`UserAgent::shutdown`] or when the last handle is dropped.
#[derive(Clone)]
pub struct UserAgent {
    commands: mpsc::UnboundedSender<Command>,
    udp_addr: Option<SocketAddr>,
    tcp_addr: Option<SocketAddr>,
    tls_addr: Option<SocketAddr>,
}

impl std::fmt::Debug for UserAgent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UserAgent")
            .field("udp", &self.udp_addr)
            .field("tcp", &self.tcp_addr)
            .field("tls", &self.tls_addr)
            .finish()
    }
}

impl UserAgent {
    /// Binds the configured listeners and starts the SIP task. Events of
    /// every call arrive on the returned receiver.
    pub async fn start(config: SipConfig) -> Result<(UserAgent, mpsc::UnboundedReceiver<UaEvent>), SipError> {
        if config.udp_listen.is_none() && config.tcp_listen.is_none() && config.tls_listen.is_none() {
            return Err(SipError::Config("no UDP, TCP or TLS listener configured".into()));
        }
        let tls = match (config.tls_listen, &config.tls) {
            (Some(addr), Some(tls)) => Some((addr, tls.clone())),
            (Some(_), None) => return Err(SipError::Config("tls_listen needs a TLS configuration (tls)".into())),
            // TLS is only offered with a listener: its port is the one in Via and Contact, where
            // the peer sends requests of the dialog.
            (None, Some(_)) => return Err(SipError::Config("a TLS configuration (tls) needs tls_listen".into())),
            (None, None) => None,
        };
        let advertised_host = match &config.advertised_host {
            Some(host) if !host.trim().is_empty() => host.trim().to_string(),
            _ => {
                let ip = config
                    .udp_listen
                    .or(config.tcp_listen)
                    .or(config.tls_listen)
                    .map(|a| a.ip())
                    .filter(|ip| !ip.is_unspecified())
                    .ok_or_else(|| {
                        SipError::Config("advertised_host is required when listening on an unspecified address".into())
                    })?;
                host_for(ip)
            }
        };

        let connect_timeout = config.timers.transaction_timeout();
        let listeners = Listeners { udp: config.udp_listen, tcp: config.tcp_listen, tls };
        let (transports, net_events) = Transports::bind(listeners, connect_timeout).await?;
        let udp_addr = transports.local_addr(Transport::Udp);
        let tcp_addr = transports.local_addr(Transport::Tcp);
        let tls_addr = transports.local_addr(Transport::Tls);
        let endpoint = Endpoint::new(EndpointConfig {
            advertised_host,
            udp_port: udp_addr.map(|a| a.port()),
            tcp_port: tcp_addr.map(|a| a.port()),
            tls_port: tls_addr.map(|a| a.port()),
            user_agent: config.user_agent.clone(),
            timers: config.timers,
        });
        tracing::info!(udp = ?udp_addr, tcp = ?tcp_addr, tls = ?tls_addr, "SIP user agent listening");

        let (commands, commands_rx) = mpsc::unbounded_channel();
        let (events, events_rx) = mpsc::unbounded_channel();
        tokio::spawn(run(endpoint, transports, commands_rx, net_events, events));
        Ok((UserAgent { commands, udp_addr, tcp_addr, tls_addr }, events_rx))
    }

    /// The bound address of a listener (useful with port 0).
    pub fn local_addr(&self, transport: Transport) -> Option<SocketAddr> {
        match transport {
            Transport::Udp => self.udp_addr,
            Transport::Tcp => self.tcp_addr,
            Transport::Tls => self.tls_addr,
        }
    }

    /// Sends an INVITE; returns the Call-ID that tags this call's events.
    pub async fn invite(&self, invite: OutgoingInvite) -> Result<String, SipError> {
        self.request(|reply| Command::Invite(Box::new(invite), reply)).await?
    }

    /// BYE if answered; otherwise CANCEL for a call we placed, or a 480
    /// final response ([`HangupKind::Reject`]) for an incoming call.
    pub async fn hangup(&self, call_id: &str) -> Result<HangupKind, SipError> {
        self.hangup_with_reason(call_id, None).await
    }

    /// [`Self::hangup`], with `reason` as the Reason header (RFC 3326) of the BYE, if one is
    /// sent, e.g. `Q.850;cause=41;text="..."`.
    pub async fn hangup_with_reason(&self, call_id: &str, reason: Option<String>) -> Result<HangupKind, SipError> {
        let call_id = call_id.to_string();
        self.request(|reply| Command::Hangup(call_id, reason, reply)).await?
    }

    /// Who answers offers the remote party makes inside calls (re-INVITE or UPDATE with SDP);
    /// until one is set they are refused with 488. Each answered offer is also reported as
    /// `CallEvent::Request` with the offer.
    pub fn set_offer_answerer(&self, answerer: std::sync::Arc<dyn crate::endpoint::OfferAnswerer>) {
        let _ = self.commands.send(Command::SetOfferAnswerer(answerer));
    }

    /// Sends a provisional response (101-199, typically 180 or 183) to an
    /// incoming call. `reliable` asks for RFC 3262 reliability; it is only
    /// honoured when the INVITE listed `100rel` in Supported or Require (and
    /// forced when it was in Require). A reliable provisional is
    /// retransmitted until its PRACK, and any later reliable provisional or
    /// the 2xx is held back until then.
    pub async fn provisional(
        &self,
        call_id: &str,
        status: u16,
        sdp: Option<String>,
        reliable: bool,
    ) -> Result<(), SipError> {
        let call_id = call_id.to_string();
        self.request(|reply| Command::Provisional { call_id, status, sdp, reliable, reply }).await?
    }

    /// Answers an incoming call with 200 OK, retransmitted until the ACK
    /// (reported as `CallEvent::Request { method: "ACK", .. }`).
    pub async fn accept(&self, call_id: &str, sdp: Option<String>) -> Result<(), SipError> {
        let call_id = call_id.to_string();
        self.request(|reply| Command::Accept { call_id, sdp, reply }).await?
    }

    /// Refuses an incoming call with a final 3xx-6xx response;
    /// `CallEvent::Terminated` follows once the caller ACKed it.
    pub async fn reject(&self, call_id: &str, status: u16, reason: &str) -> Result<(), SipError> {
        let call_id = call_id.to_string();
        let reason = reason.to_string();
        self.request(|reply| Command::Reject { call_id, status, reason, reply }).await?
    }

    /// The confirmed dialog of a call, to persist (see [`Endpoint::dialog_snapshot`]).
    pub async fn dialog_snapshot(&self, call_id: &str) -> Option<DialogSnapshot> {
        let call_id = call_id.to_string();
        self.request(|reply| Command::Snapshot(call_id, reply)).await.ok().flatten()
    }

    /// Ends with BYE a call of a previous run (see [`Endpoint::end_recovered`]).
    pub async fn end_recovered(&self, snapshot: DialogSnapshot) -> Result<(), SipError> {
        self.request(|reply| Command::EndRecovered(Box::new(snapshot), reply)).await?
    }

    /// Sends a re-INVITE carrying `sdp` as a new offer (see [`Self::offer`]).
    pub async fn reinvite(&self, call_id: &str, sdp: String) -> Result<(), SipError> {
        self.offer(call_id, OfferMethod::Reinvite, sdp).await
    }

    /// Sends `sdp` as a new offer (e.g. `a=sendonly` to hold, `a=sendrecv` to resume) in an
    /// answered call of either direction, in a re-INVITE or an UPDATE (RFC 3311).
    /// Fails with [`SipError::WrongState`] if the call is not answered (and, incoming, ACKed),
    /// is ending, or already has an offer without a final response. The outcome arrives as
    /// `CallEvent::ReinviteResponse` (a re-INVITE's 2xx is ACKed; after a 481, 408 or timeout
    /// the call is ended with BYE and `CallEvent::Terminated` follows; after 491 it may be
    /// retried later).
    pub async fn offer(&self, call_id: &str, method: OfferMethod, sdp: String) -> Result<(), SipError> {
        let call_id = call_id.to_string();
        self.request(|reply| Command::Offer { call_id, method, sdp, reply }).await?
    }

    /// Starts keeping a contact registered with a registrar (RFC 3261 s.10),
    /// answering Digest challenges (MD5 or SHA-256, RFC 7616 / RFC 8760).
    /// Returns the binding id at once (the REGISTER is only sent); its
    /// progress arrives as `UaEvent { call_id: <binding id>, event:
    /// CallEvent::Registration(..) }`: `Registered`, then `Refreshed` on each
    /// refresh (done halfway through the granted time), `Failed` whenever an
    /// attempt fails (retried with backoff from 10 s up to 10 min).
    pub async fn register(&self, request: RegisterRequest) -> Result<String, SipError> {
        self.request(|reply| Command::Register(Box::new(request), reply)).await?
    }

    /// Removes a binding with a REGISTER carrying `Expires: 0` (after any
    /// REGISTER in flight is answered). Returns once that is under way;
    /// `RegistrationEvent::Unregistered` is the binding's last event (after
    /// a `Failed` if the registrar refused or did not answer).
    pub async fn unregister(&self, binding_id: &str) -> Result<(), SipError> {
        let binding_id = binding_id.to_string();
        self.request(|reply| Command::Unregister(binding_id, reply)).await?
    }

    /// Whether the SIP task still runs (and so its listeners still receive). It ends on
    /// [`UserAgent::shutdown`] or when it fails.
    pub fn is_running(&self) -> bool {
        !self.commands.is_closed()
    }

    /// Stops the SIP task and closes the sockets. Calls in progress are
    /// abandoned without signalling; hang them up first. Registrations are
    /// abandoned too (they lapse at their expiry); unregister them first.
    pub async fn shutdown(&self) {
        let _ = self.request(Command::Shutdown).await;
    }

    async fn request<T>(&self, command: impl FnOnce(oneshot::Sender<T>) -> Command) -> Result<T, SipError> {
        let (reply, response) = oneshot::channel();
        self.commands.send(command(reply)).map_err(|_| SipError::Shutdown)?;
        response.await.map_err(|_| SipError::Shutdown)
    }
}

fn host_for(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => format!("[{v6}]"),
    }
}

async fn run(
    mut endpoint: Endpoint,
    mut transports: Transports,
    mut commands: mpsc::UnboundedReceiver<Command>,
    mut net_events: mpsc::UnboundedReceiver<NetEvent>,
    events: mpsc::UnboundedSender<UaEvent>,
) {
    loop {
        while let Some(output) = endpoint.poll_output() {
            match output {
                Output::Transmit(t) => {
                    let data = t.message.to_bytes();
                    tracing::trace!(dest = %t.dest, transport = ?t.transport, "sending\n{}", String::from_utf8_lossy(&data));
                    if let Err(error) = transports.send(t.transport, t.dest, data).await {
                        tracing::warn!(dest = %t.dest, transport = ?t.transport, %error, "send failed");
                        endpoint.transport_failed(t.transport, t.dest, Instant::now());
                    }
                }
                Output::Event(event) => {
                    tracing::debug!(call_id = %event.call_id, event = ?event.event, "call event");
                    // The receiver being gone only means nobody listens any more.
                    let _ = events.send(event);
                }
            }
        }

        let deadline = endpoint.poll_timeout();
        let sleep = async {
            match deadline {
                Some(at) => tokio::time::sleep_until(tokio::time::Instant::from_std(at)).await,
                None => std::future::pending().await,
            }
        };

        tokio::select! {
            command = commands.recv() => match command {
                Some(Command::Invite(invite, reply)) => {
                    let _ = reply.send(endpoint.invite(*invite, Instant::now()));
                }
                Some(Command::SetOfferAnswerer(answerer)) => endpoint.set_offer_answerer(answerer),
                Some(Command::Snapshot(call_id, reply)) => {
                    let _ = reply.send(endpoint.dialog_snapshot(&call_id));
                }
                Some(Command::EndRecovered(snapshot, reply)) => {
                    let _ = reply.send(endpoint.end_recovered(*snapshot, Instant::now()));
                }
                Some(Command::Hangup(call_id, reason, reply)) => {
                    let _ = reply.send(endpoint.hangup_with_reason(&call_id, reason, Instant::now()));
                }
                Some(Command::Provisional { call_id, status, sdp, reliable, reply }) => {
                    let _ = reply.send(endpoint.provisional(&call_id, status, sdp, reliable, Instant::now()));
                }
                Some(Command::Accept { call_id, sdp, reply }) => {
                    let _ = reply.send(endpoint.accept(&call_id, sdp, Instant::now()));
                }
                Some(Command::Reject { call_id, status, reason, reply }) => {
                    let _ = reply.send(endpoint.reject(&call_id, status, &reason, Instant::now()));
                }
                Some(Command::Offer { call_id, method, sdp, reply }) => {
                    let _ = reply.send(endpoint.offer(&call_id, method, sdp, Instant::now()));
                }
                Some(Command::Register(request, reply)) => {
                    let _ = reply.send(endpoint.register(*request, Instant::now()));
                }
                Some(Command::Unregister(binding_id, reply)) => {
                    let _ = reply.send(endpoint.unregister(&binding_id, Instant::now()));
                }
                Some(Command::Shutdown(reply)) => {
                    tracing::info!("SIP user agent shutting down");
                    let _ = reply.send(());
                    break;
                }
                None => break,
            },
            Some(event) = net_events.recv() => match event {
                NetEvent::Received { transport, source, data } => {
                    tracing::trace!(%source, ?transport, "received\n{}", String::from_utf8_lossy(&data));
                    endpoint.handle_input(transport, source, &data, Instant::now());
                }
                NetEvent::Accepted { transport, peer, conn } => {
                    transports.connection_accepted(transport, peer, conn);
                }
                NetEvent::Closed { transport, peer, id } => transports.connection_gone(transport, peer, id),
                NetEvent::ConnectFailed { transport, peer, id } => {
                    transports.connection_gone(transport, peer, id);
                    endpoint.transport_failed(transport, peer, Instant::now());
                }
            },
            () = sleep => endpoint.handle_timeout(Instant::now()),
        }
    }
}
