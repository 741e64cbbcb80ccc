//! TLS on the API port: the certificate and key from PEM files, and the connections that
//! reach the server once their handshake is done.
//!
//! tonic's own `ServerTlsConfig` offers only `h2` in ALPN, so a client that offers only
//! `http/1.1` (gRPC-web from an HTTP/1.1 client or proxy) is refused during the handshake.
//! Here the server offers `h2` first, then `http/1.1`; the HTTP layer behind it serves both
//! on the same port, as it does without TLS.

use std::collections::HashMap;
use std::io;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use futures::{Stream, StreamExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::ServerConfig;
use tokio_rustls::rustls::crypto::ring;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::server::TlsStream;

use crate::api::client_addr::ClientAddr;

/// The server's certificate and key, PEM files.
#[derive(Debug, Clone)]
pub struct TlsSettings {
    /// The certificate chain, leaf first.
    pub cert: PathBuf,
    /// The private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
}

/// A client that has not finished its handshake by then is dropped.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Handshakes in progress at once; further connections wait in the listen backlog.
const MAX_PENDING_HANDSHAKES: usize = 1024;
/// Handshakes in progress at once from one client (see [`ClientAddr`]): beyond them its
/// connections are closed at once, so idle connections from one host cannot take every
/// handshake slot (and hold the door shut for everyone for the handshake timeout).
const MAX_PENDING_HANDSHAKES_PER_CLIENT: usize = 16;

/// Reads the certificate chain and key of `settings` and builds the acceptor.
pub async fn acceptor(settings: &TlsSettings) -> anyhow::Result<TlsAcceptor> {
    let cert_pem = tokio::fs::read(&settings.cert)
        .await
        .with_context(|| format!("cannot read --tls-cert {}", settings.cert.display()))?;
    let key_pem = tokio::fs::read(&settings.key)
        .await
        .with_context(|| format!("cannot read --tls-key {}", settings.key.display()))?;
    let chain = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("--tls-cert {} is not PEM", settings.cert.display()))?;
    anyhow::ensure!(
        !chain.is_empty(),
        "--tls-cert {} holds no certificate",
        settings.cert.display()
    );
    let key = PrivateKeyDer::from_pem_slice(&key_pem)
        .with_context(|| format!("--tls-key {} holds no private key", settings.key.display()))?;
    let mut config = ServerConfig::builder_with_provider(Arc::new(ring::default_provider()))
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .context("--tls-key does not match --tls-cert, or is not a usable key")?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// The TLS connections among `incoming`, handshakes done concurrently. A failed or stalled
/// handshake is logged and skipped; errors accepting TCP connections pass through as they
/// would without TLS.
pub fn accept(
    incoming: impl Stream<Item = io::Result<TcpStream>>,
    acceptor: TlsAcceptor,
) -> impl Stream<Item = io::Result<TlsStream<TcpStream>>> {
    let pending = Pending::default();
    incoming
        .map(move |tcp| {
            let acceptor = acceptor.clone();
            let pending = pending.clone();
            async move {
                let tcp = tcp?;
                let peer = tcp.peer_addr().ok();
                let Some(_slot) = peer.and_then(|p| pending.take(ClientAddr::new(p.ip()))) else {
                    tracing::debug!(
                        ?peer,
                        "too many tls handshakes in progress from this client"
                    );
                    return Ok(None);
                };
                match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                    Ok(Ok(tls)) => Ok(Some(tls)),
                    Ok(Err(err)) => {
                        tracing::debug!(?peer, error = %err, "tls handshake failed");
                        Ok(None)
                    }
                    Err(_) => {
                        tracing::debug!(?peer, "tls handshake timed out");
                        Ok(None)
                    }
                }
            }
        })
        .buffer_unordered(MAX_PENDING_HANDSHAKES)
        .filter_map(|handshake| async move { handshake.transpose() })
}

/// Handshakes in progress per client.
#[derive(Clone, Default)]
struct Pending(Arc<Mutex<HashMap<ClientAddr, usize>>>);

impl Pending {
    /// A handshake slot for `client`, or `None` when it holds its share already.
    fn take(&self, client: ClientAddr) -> Option<PendingSlot> {
        let mut counts = self.0.lock().expect("tls handshake counts poisoned");
        let count = counts.entry(client).or_default();
        if *count >= MAX_PENDING_HANDSHAKES_PER_CLIENT {
            return None;
        }
        *count += 1;
        Some(PendingSlot {
            pending: self.clone(),
            client,
        })
    }
}

/// Gives its handshake slot back when dropped (the handshake done, failed or timed out).
struct PendingSlot {
    pending: Pending,
    client: ClientAddr,
}

impl Drop for PendingSlot {
    fn drop(&mut self) {
        let mut counts = self
            .pending
            .0
            .lock()
            .expect("tls handshake counts poisoned");
        if let Some(count) = counts.get_mut(&self.client) {
            *count -= 1;
            if *count == 0 {
                counts.remove(&self.client);
            }
        }
    }
}
