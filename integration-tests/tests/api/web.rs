//! The browser app on the API's port: pages and assets by plain HTTP, gRPC and gRPC-web by
//! content-type, side by side on one listener.

use prost::Message;
use quickchat_proto::v1;

use crate::helpers::{TestApp, spawn_app, spawn_app_with};

const INDEX: &str = "<!doctype html><title>QuickChat</title><div id=root></div>";
const SCRIPT: &str = "console.log('quickchat')";

/// A built app as Vite lays it out: index.html and content-hashed assets.
fn built_app() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("index.html"), INDEX).unwrap();
    std::fs::write(dir.path().join("favicon.svg"), "<svg/>").unwrap();
    std::fs::create_dir(dir.path().join("assets")).unwrap();
    std::fs::write(dir.path().join("assets/index-Bx9f3k2a.js"), SCRIPT).unwrap();
    std::fs::write(dir.path().join("assets/index-Q1w2e3r4.css"), "body{}").unwrap();
    dir
}

async fn get(app: &TestApp, path: &str) -> reqwest::Response {
    reqwest::Client::builder()
        .http1_only()
        .build()
        .unwrap()
        .get(format!("http://{}{path}", app.addr))
        .header("accept", "text/html")
        .send()
        .await
        .unwrap()
}

fn header(response: &reqwest::Response, name: &str) -> String {
    response
        .headers()
        .get(name)
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default()
}

#[tokio::test]
async fn the_app_is_served_and_its_routes_fall_back_to_index_html() {
    let dir = built_app();
    let app = spawn_app_with(|s| s.web_dir = Some(dir.path().to_path_buf())).await;

    for path in [
        "/",
        "/dashboard",
        "/join/0b0f6c1e-52a4-4f0e-9a53-3c1d2f5a6b7c",
        "/sign-in?next=%2Fdashboard",
    ] {
        let response = get(&app, path).await;
        assert_eq!(response.status(), 200, "{path}");
        assert!(
            header(&response, "content-type").starts_with("text/html"),
            "{path}"
        );
        assert_eq!(header(&response, "cache-control"), "no-cache", "{path}");
        assert_eq!(response.text().await.unwrap(), INDEX, "{path}");
    }

    let script = get(&app, "/assets/index-Bx9f3k2a.js").await;
    assert_eq!(script.status(), 200);
    assert!(header(&script, "content-type").contains("javascript"));
    assert_eq!(
        header(&script, "cache-control"),
        "public, max-age=31536000, immutable"
    );
    assert_eq!(header(&script, "x-content-type-options"), "nosniff");
    assert_eq!(script.text().await.unwrap(), SCRIPT);

    let css = get(&app, "/assets/index-Q1w2e3r4.css").await;
    assert_eq!(header(&css, "content-type"), "text/css");

    let icon = get(&app, "/favicon.svg").await;
    assert_eq!(header(&icon, "content-type"), "image/svg+xml");
    assert_eq!(header(&icon, "cache-control"), "no-cache");

    // A missing asset is not index.html cached for a year.
    let missing = get(&app, "/assets/index-gone.js").await;
    assert_eq!(missing.status(), 404);
    assert_ne!(
        header(&missing, "cache-control"),
        "public, max-age=31536000, immutable"
    );

    // Outside the directory is out of reach.
    let escape = get(&app, "/../Cargo.toml").await;
    assert_ne!(
        escape.text().await.unwrap(),
        std::fs::read_to_string("Cargo.toml").unwrap()
    );
}

#[tokio::test]
async fn grpc_and_grpc_web_still_work_next_to_the_app() {
    let dir = built_app();
    let app = spawn_app_with(|s| s.web_dir = Some(dir.path().to_path_buf())).await;

    // Native gRPC (HTTP/2) through the tonic client.
    let owner = app.register("Olga").await;
    let group = app.create_group(&owner.access_token, "Rustaceans").await;

    // gRPC-web over HTTP/1.1, as a browser on the server's own page calls it.
    let origin = format!("http://{}", app.addr);
    let mut body = vec![0u8];
    let payload = v1::GetGroupRequest {
        group_id: group.id.clone(),
    }
    .encode_to_vec();
    body.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    body.extend_from_slice(&payload);
    let response = reqwest::Client::builder()
        .http1_only()
        .build()
        .unwrap()
        .post(format!("{origin}/quickchat.v1.GroupService/GetGroup"))
        .header("content-type", "application/grpc-web+proto")
        .header("x-grpc-web", "1")
        .header("origin", &origin)
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        header(&response, "content-type"),
        "application/grpc-web+proto"
    );
    assert_eq!(header(&response, "access-control-allow-origin"), origin);
    let bytes = response.bytes().await.unwrap();
    let len = u32::from_be_bytes(bytes[1..5].try_into().unwrap()) as usize;
    let decoded = v1::GetGroupResponse::decode(&bytes[5..5 + len]).unwrap();
    assert_eq!(decoded.group.unwrap(), group);

    // An unknown method is UNIMPLEMENTED, not the app's index.html.
    let unknown = reqwest::Client::builder()
        .http1_only()
        .build()
        .unwrap()
        .post(format!("{origin}/quickchat.v1.GroupService/NoSuchMethod"))
        .header("content-type", "application/grpc-web+proto")
        .header("x-grpc-web", "1")
        .body(vec![0u8, 0, 0, 0, 0])
        .send()
        .await
        .unwrap();
    assert_eq!(header(&unknown, "grpc-status"), "12");
}

#[tokio::test]
async fn without_a_built_app_the_page_says_how_to_build_it() {
    let app = spawn_app().await;
    for path in ["/", "/join/0b0f6c1e-52a4-4f0e-9a53-3c1d2f5a6b7c"] {
        let response = get(&app, path).await;
        assert_eq!(response.status(), 503, "{path}");
        assert!(header(&response, "content-type").starts_with("text/html"));
        let page = response.text().await.unwrap();
        assert!(page.contains("scripts/run.sh"), "{page}");
        assert!(page.contains("npm run build"), "{page}");
    }
    let empty = tempfile::tempdir().unwrap();
    let app = spawn_app_with(|s| s.web_dir = Some(empty.path().to_path_buf())).await;
    assert_eq!(get(&app, "/").await.status(), 503);
}
