//! A TCP proxy a test can cut or freeze.
//!
//! Cut: every connection through it is closed and new ones are closed on arrival, and
//! nothing more is forwarded — not even bytes a client already sent. Unlike a frozen
//! (SIGSTOPped) server, whose kernel still takes in what clients send and hands it over on
//! thawing, a cut proxy loses it, as a dead network does.
//!
//! Frozen: connections stay open and nothing moves either way — a half-open connection, as
//! when a phone drops off its network without closing anything.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum State {
    Flowing,
    Frozen,
    Cut,
}

pub struct CuttableProxy {
    pub addr: SocketAddr,
    state: Arc<watch::Sender<State>>,
}

impl CuttableProxy {
    /// A proxy to `target`, listening on a free loopback port.
    pub async fn start(target: SocketAddr) -> CuttableProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (state, _) = watch::channel(State::Flowing);
        let state = Arc::new(state);
        let shared = state.clone();
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                if *shared.borrow() == State::Cut {
                    drop(client);
                    continue;
                }
                let rx = shared.subscribe();
                tokio::spawn(async move {
                    if let Ok(server) = TcpStream::connect(target).await {
                        let _ = client.set_nodelay(true);
                        let _ = server.set_nodelay(true);
                        relay(client, server, rx).await;
                    }
                });
            }
        });
        CuttableProxy { addr, state }
    }

    /// Closes every connection and refuses new ones until [`CuttableProxy::restore`].
    pub fn cut(&self) {
        self.state.send_replace(State::Cut);
    }

    /// Stops forwarding without closing anything, until [`CuttableProxy::restore`].
    pub fn freeze(&self) {
        self.state.send_replace(State::Frozen);
    }

    pub fn restore(&self) {
        self.state.send_replace(State::Flowing);
    }
}

/// Forwards both ways until either side closes or the proxy is cut; while frozen, reads
/// nothing (so the sender's buffers fill, as over a dead link).
async fn relay(client: TcpStream, server: TcpStream, mut state: watch::Receiver<State>) {
    let (mut client_read, mut client_write) = client.into_split();
    let (mut server_read, mut server_write) = server.into_split();
    let mut up = [0u8; 16 * 1024];
    let mut down = [0u8; 16 * 1024];
    loop {
        let now = *state.borrow_and_update();
        match now {
            State::Cut => return,
            State::Frozen => {
                if state.changed().await.is_err() {
                    return;
                }
                continue;
            }
            State::Flowing => {}
        }
        tokio::select! {
            changed = state.changed() => if changed.is_err() { return },
            read = client_read.read(&mut up) => match read {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    if *state.borrow() == State::Cut || server_write.write_all(&up[..n]).await.is_err() {
                        return;
                    }
                }
            },
            read = server_read.read(&mut down) => match read {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    if *state.borrow() == State::Cut || client_write.write_all(&down[..n]).await.is_err() {
                        return;
                    }
                }
            },
        }
    }
}
