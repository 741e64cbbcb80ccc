//! Which web pages may call the API from a browser: the server's own origin by default,
//! the origins the operator lists, or any (`*`, then without credentials). Never a page of
//! another site, nor `null` (sandboxed frames, local files).

use crate::helpers::{TestApp, spawn_app, spawn_app_with};

/// The CORS headers a browser's preflight from `origin` gets back.
struct Preflight {
    allow_origin: Option<String>,
    allow_credentials: Option<String>,
}

async fn preflight(app: &TestApp, origin: &str) -> Preflight {
    let response = reqwest::Client::new()
        .request(
            reqwest::Method::OPTIONS,
            format!("http://{}/quickchat.v1.GroupService/GetGroup", app.addr),
        )
        .header("origin", origin)
        .header("access-control-request-method", "POST")
        .header(
            "access-control-request-headers",
            "content-type,x-grpc-web,authorization",
        )
        .send()
        .await
        .unwrap();
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .map(|v| v.to_str().unwrap().to_owned())
    };
    Preflight {
        allow_origin: header("access-control-allow-origin"),
        allow_credentials: header("access-control-allow-credentials"),
    }
}

#[tokio::test]
async fn by_default_only_pages_of_the_server_itself_may_call() {
    let app = spawn_app().await;
    let port = app.addr.port();
    for own in [
        format!("http://127.0.0.1:{port}"),
        format!("http://localhost:{port}"),
    ] {
        assert_eq!(preflight(&app, &own).await.allow_origin, Some(own));
    }
    for foreign in [
        "https://evil.example",
        "null",
        "http://localhost:3000",
        &format!("https://127.0.0.1:{port}"),
    ] {
        assert_eq!(
            preflight(&app, foreign).await.allow_origin,
            None,
            "{foreign} must not be allowed"
        );
    }
}

#[tokio::test]
async fn listed_origins_may_call_and_nobody_else() {
    let app = spawn_app_with(|s| {
        s.cors_origins = vec![
            "https://chat.example.com".into(),
            "http://localhost:3000".into(),
        ]
    })
    .await;
    for allowed in ["https://chat.example.com", "http://localhost:3000"] {
        let answer = preflight(&app, allowed).await;
        assert_eq!(answer.allow_origin.as_deref(), Some(allowed));
        assert_eq!(answer.allow_credentials.as_deref(), Some("true"));
    }
    for foreign in [
        "https://evil.example",
        "null",
        "https://chat.example.com.evil.example",
        &format!("http://127.0.0.1:{}", app.addr.port()),
    ] {
        assert_eq!(
            preflight(&app, foreign).await.allow_origin,
            None,
            "{foreign} must not be allowed"
        );
    }
}

#[tokio::test]
async fn a_star_lets_any_page_call_without_credentials() {
    let app = spawn_app_with(|s| s.cors_origins = vec!["*".into()]).await;
    for origin in ["https://evil.example", "http://localhost:3000", "null"] {
        let answer = preflight(&app, origin).await;
        assert_eq!(answer.allow_origin.as_deref(), Some("*"), "{origin}");
        assert_eq!(answer.allow_credentials, None, "{origin}");
    }
}
