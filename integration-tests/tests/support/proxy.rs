//! A TCP proxy a test can cut: while cut, every connection through it is closed and new ones
//! are closed on arrival, and nothing more is forwarded — not even bytes a client already
//! sent. Unlike a frozen (SIGSTOPped) server, whose kernel still takes in what clients send
//! and hands it over on thawing, a cut proxy loses it, as a dead network does.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

pub struct CuttableProxy {
    pub addr: SocketAddr,
    cut: Arc<watch::Sender<bool>>,
}

impl CuttableProxy {
    /// A proxy to `target`, listening on a free loopback port.
    pub async fn start(target: SocketAddr) -> CuttableProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (cut, _) = watch::channel(false);
        let cut = Arc::new(cut);
        let state = cut.clone();
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                if *state.borrow() {
                    drop(client);
                    continue;
                }
                let rx = state.subscribe();
                tokio::spawn(async move {
                    if let Ok(server) = TcpStream::connect(target).await {
                        relay(client, server, rx).await;
                    }
                });
            }
        });
        CuttableProxy { addr, cut }
    }

    /// Closes every connection and refuses new ones until [`CuttableProxy::restore`].
    pub fn cut(&self) {
        self.cut.send_replace(true);
    }

    pub fn restore(&self) {
        self.cut.send_replace(false);
    }
}

/// Forwards both ways until either side closes or the proxy is cut.
async fn relay(client: TcpStream, server: TcpStream, mut cut: watch::Receiver<bool>) {
    let (mut client_read, mut client_write) = client.into_split();
    let (mut server_read, mut server_write) = server.into_split();
    let mut up = [0u8; 16 * 1024];
    let mut down = [0u8; 16 * 1024];
    let is_cut = cut.clone();
    loop {
        tokio::select! {
            _ = async { cut.wait_for(|cut| *cut).await.is_ok() } => return,
            read = client_read.read(&mut up) => match read {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    let now_cut = *is_cut.borrow();
                    if now_cut || server_write.write_all(&up[..n]).await.is_err() {
                        return;
                    }
                }
            },
            read = server_read.read(&mut down) => match read {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    let now_cut = *is_cut.borrow();
                    if now_cut || client_write.write_all(&down[..n]).await.is_err() {
                        return;
                    }
                }
            },
        }
    }
}
