//! CORS for browsers calling over gRPC-web from a page of another origin.
//!
//! Only the origins the operator lists (`--cors-origin`) get an
//! `access-control-allow-origin`; by default that is the server's own origin alone. `*`
//! allows every origin but without credentials: the browser sends the bearer token in the
//! `authorization` header, which needs no credentials mode. A page that is not allowed can
//! still send a request, but its script never sees the answer.

use std::net::SocketAddr;
use std::time::Duration;

use http::{HeaderName, HeaderValue};
use tower_http::cors::{AllowOrigin, CorsLayer};

/// Who may call from a browser, parsed from `--cors-origin` values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AllowedOrigins {
    /// Any origin (`*`), without credentials.
    Any,
    /// These origins (serialized as browsers send them: `scheme://host[:port]`).
    List(Vec<String>),
}

impl AllowedOrigins {
    /// The operator's list, or, when it is empty, the origins a browser gives pages served
    /// by this server itself at `local_addr` (on a loopback address, both spellings:
    /// `127.0.0.1` and `localhost`).
    pub fn parse(configured: &[String], local_addr: SocketAddr, tls: bool) -> anyhow::Result<Self> {
        let configured: Vec<&str> = configured
            .iter()
            .map(|o| o.trim())
            .filter(|o| !o.is_empty())
            .collect();
        if configured.is_empty() {
            let scheme = if tls { "https" } else { "http" };
            let mut own = vec![format!("{scheme}://{local_addr}")];
            if local_addr.ip().is_loopback() {
                own.push(format!("{scheme}://localhost:{}", local_addr.port()));
            }
            return Ok(Self::List(own));
        }
        if configured.contains(&"*") {
            anyhow::ensure!(
                configured.len() == 1,
                "--cors-origin '*' allows every origin; it cannot be combined with others"
            );
            return Ok(Self::Any);
        }
        configured
            .into_iter()
            .map(parse_origin)
            .collect::<anyhow::Result<_>>()
            .map(Self::List)
    }

    pub fn layer(&self) -> CorsLayer {
        let headers = |names: &[&'static str]| {
            names
                .iter()
                .map(|n| HeaderName::from_static(n))
                .collect::<Vec<_>>()
        };
        let layer = CorsLayer::new()
            .max_age(Duration::from_secs(24 * 60 * 60))
            .allow_methods([http::Method::POST, http::Method::OPTIONS])
            .allow_headers(headers(&[
                "authorization",
                "content-type",
                "x-grpc-web",
                "x-user-agent",
                "grpc-timeout",
            ]))
            .expose_headers(headers(&[
                "grpc-status",
                "grpc-message",
                "grpc-status-details-bin",
            ]));
        match self {
            Self::Any => layer.allow_origin(AllowOrigin::any()),
            Self::List(origins) => layer
                .allow_origin(AllowOrigin::list(
                    origins.iter().filter_map(|o| HeaderValue::from_str(o).ok()),
                ))
                .allow_credentials(true),
        }
    }
}

/// `https://Chat.Example.com:443/` → `https://chat.example.com`, the way a browser sends it;
/// anything that is not an http(s) origin is refused.
fn parse_origin(raw: &str) -> anyhow::Result<String> {
    anyhow::ensure!(
        raw != "null",
        "--cors-origin null would admit any sandboxed page or local file; list real origins"
    );
    let url = url::Url::parse(raw)
        .map_err(|err| anyhow::anyhow!("--cors-origin {raw:?} is not an origin: {err}"))?;
    anyhow::ensure!(
        matches!(url.scheme(), "http" | "https")
            && url.host().is_some()
            && url.username().is_empty()
            && url.password().is_none()
            && url.path() == "/"
            && url.query().is_none()
            && url.fragment().is_none(),
        "--cors-origin {raw:?} must be scheme://host[:port], e.g. https://chat.example.com"
    );
    Ok(url.origin().ascii_serialization())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    fn list(origins: &[&str]) -> AllowedOrigins {
        AllowedOrigins::List(origins.iter().map(|o| o.to_string()).collect())
    }

    #[test]
    fn by_default_only_the_servers_own_origin() {
        assert_eq!(
            AllowedOrigins::parse(&[], addr("127.0.0.1:8443"), true).unwrap(),
            list(&["https://127.0.0.1:8443", "https://localhost:8443"])
        );
        assert_eq!(
            AllowedOrigins::parse(&[], addr("10.0.0.7:50051"), false).unwrap(),
            list(&["http://10.0.0.7:50051"])
        );
    }

    #[test]
    fn origins_are_written_the_way_browsers_send_them() {
        let parsed = AllowedOrigins::parse(
            &[
                "https://Chat.Example.com:443/".into(),
                " http://localhost:3000 ".into(),
            ],
            addr("127.0.0.1:1"),
            false,
        )
        .unwrap();
        assert_eq!(
            parsed,
            list(&["https://chat.example.com", "http://localhost:3000"])
        );
    }

    #[test]
    fn a_star_stands_alone_and_nonsense_is_refused() {
        let parse = |values: &[&str]| {
            AllowedOrigins::parse(
                &values.iter().map(|v| v.to_string()).collect::<Vec<_>>(),
                addr("127.0.0.1:1"),
                false,
            )
        };
        assert_eq!(parse(&["*"]).unwrap(), AllowedOrigins::Any);
        for bad in [
            &["*", "https://a.example"][..],
            &["null"],
            &["chat.example.com"],
            &["https://chat.example.com/app"],
            &["ftp://chat.example.com"],
        ] {
            assert!(parse(bad).is_err(), "{bad:?} should be refused");
        }
    }
}
