//! The browser app (`web/`, built into a directory of static files), served on the API's own
//! port so that the share link `http://host:port/join/<group-id>` opens the app.
//!
//! [`WebAppLayer`] sits outside tonic-web: a request whose `content-type` is
//! `application/grpc…` (gRPC, gRPC-web, gRPC-web-text) goes on to the gRPC services; every
//! other request is a page or an asset. Files under `/assets/` (content-hashed names from
//! the Vite build) are cached for a year; everything else — `index.html`, and any path
//! without a file, which falls back to `index.html` so the app's own router shows it —
//! is revalidated on every load. When the app is not built, pages explain how to build it.

use std::convert::Infallible;
use std::path::PathBuf;
use std::pin::Pin;
use std::task::{Context, Poll};

use http::header::{self, HeaderValue};
use http::{Request, Response, StatusCode};
use tonic::body::Body;
use tower::{Layer, Service, ServiceExt};
use tower_http::services::{ServeDir, ServeFile};

/// Content-hashed build output: its names change whenever its content does.
const HASHED_ASSETS: &str = "/assets/";
const IMMUTABLE: &str = "public, max-age=31536000, immutable";
const REVALIDATE: &str = "no-cache";

const NOT_BUILT: &str = "<!doctype html>
<html lang=\"en\"><head><meta charset=\"utf-8\"><title>QuickChat: web app not built</title></head>
<body style=\"font-family: sans-serif; max-width: 40rem; margin: 3rem auto; line-height: 1.5\">
<h1>QuickChat is running, but its web app is not built</h1>
<p>The gRPC and gRPC-web API on this port works. To use QuickChat in a browser, stop the
server and start it with <code>scripts/run.sh</code> from the repository, which builds the app
(<code>web/</code>, needs Node.js 20 and npm) and serves it here.</p>
<p>To build it by hand: <code>cd web &amp;&amp; npm ci &amp;&amp; npm run build</code>, then start
the server with <code>--web-dir web/dist</code>.</p>
</body></html>
";

/// Where the built app lives; `None` serves the "not built" page.
#[derive(Debug, Clone)]
pub struct WebApp {
    dir: Option<PathBuf>,
}

impl WebApp {
    pub fn new(dir: Option<PathBuf>) -> Self {
        Self { dir }
    }

    /// Whether a built app (its `index.html`) is there now.
    pub fn is_built(&self) -> bool {
        self.index().is_some_and(|index| index.is_file())
    }

    fn index(&self) -> Option<PathBuf> {
        self.dir.as_deref().map(|dir| dir.join("index.html"))
    }

    /// A page, an asset or the `index.html` fallback for `request`.
    async fn respond<B: Send + 'static>(self, request: Request<B>) -> Response<Body> {
        let (Some(dir), Some(index)) = (self.dir.as_deref(), self.index()) else {
            return not_built();
        };
        if !index.is_file() {
            return not_built();
        }
        let hashed = request.uri().path().starts_with(HASHED_ASSETS);
        let response = if hashed {
            // A missing asset is a 404, never index.html cached for a year.
            serve(ServeDir::new(dir), request).await
        } else {
            serve(ServeDir::new(dir).fallback(ServeFile::new(&index)), request).await
        };
        with_headers(response, hashed)
    }
}

async fn serve<S, B>(service: S, request: Request<B>) -> Response<Body>
where
    S: Service<Request<B>, Error = Infallible>,
    S::Response: Into<Response<tower_http::services::fs::ServeFileSystemResponseBody>>,
{
    match service.oneshot(request).await {
        Ok(response) => response.into().map(Body::new),
        Err(never) => match never {},
    }
}

fn with_headers(mut response: Response<Body>, hashed: bool) -> Response<Body> {
    let cache = if hashed && response.status().is_success() {
        IMMUTABLE
    } else {
        REVALIDATE
    };
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    // Share links carry the group id: never hand it to another site.
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    response
}

fn not_built() -> Response<Body> {
    let mut response = Response::new(Body::new(NOT_BUILT.to_owned()));
    *response.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    with_headers(response, false)
}

/// Whether `request` is for the gRPC services (gRPC, gRPC-web or gRPC-web-text).
fn is_grpc<B>(request: &Request<B>) -> bool {
    request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/grpc"))
}

/// Routes non-gRPC requests to the [`WebApp`]; see the module documentation.
#[derive(Debug, Clone)]
pub struct WebAppLayer {
    app: WebApp,
}

impl WebAppLayer {
    pub fn new(app: WebApp) -> Self {
        Self { app }
    }
}

impl<S> Layer<S> for WebAppLayer {
    type Service = WebAppService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        WebAppService {
            inner,
            app: self.app.clone(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct WebAppService<S> {
    inner: S,
    app: WebApp,
}

type BoxFuture<T> = Pin<Box<dyn std::future::Future<Output = T> + Send>>;

impl<S, B> Service<Request<B>> for WebAppService<S>
where
    S: Service<Request<B>, Response = Response<Body>>,
    S::Future: Send + 'static,
    B: Send + 'static,
{
    type Response = Response<Body>;
    type Error = S::Error;
    type Future = BoxFuture<Result<Response<Body>, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        if is_grpc(&request) {
            Box::pin(self.inner.call(request))
        } else {
            let app = self.app.clone();
            Box::pin(async move { Ok(app.respond(request).await) })
        }
    }
}

/// For the startup line: the URL to open, or why there is nothing to open there.
pub fn describe(app: &WebApp, url: &str) -> String {
    match (&app.dir, app.is_built()) {
        (Some(_), true) => format!("web app: open {url}"),
        (Some(dir), false) => format!(
            "web app: not built in {} (scripts/run.sh builds and serves it)",
            dir.display()
        ),
        (None, _) => "web app: not built (scripts/run.sh builds and serves it)".to_owned(),
    }
}
