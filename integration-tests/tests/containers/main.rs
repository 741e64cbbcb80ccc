//! The harness's containers themselves (see the support library's `services` and
//! `private`); run by `scripts/test.sh` with the container run of the cluster suite, as they
//! need a container engine (`eval "$(scripts/containers.sh)"`).

use quickchat_integration_tests::private::PrivateRedis;
use quickchat_integration_tests::services::{self, ImageRef};
use sea_orm::{ConnectionTrait, Database};
use testcontainers::runners::AsyncRunner;

/// A machine with a registry names the official images: `postgres:15` and `redis:7` run
/// through the same harness as the local builds' `localhost/...` names. Here podman
/// resolves those short names to the images scripts/containers.sh built
/// (`localhost/postgres:15`, `localhost/redis:7`); Docker would pull the official ones.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_and_redis_run_under_the_official_image_names() {
    let official = |reference: &str| ImageRef::parse(reference).unwrap();

    let postgres = services::postgres(&official("postgres:15"), None)
        .start()
        .await
        .expect("PostgreSQL starts from postgres:15");
    let port = services::host_port(&postgres, services::POSTGRES_PORT).await;
    let url = format!("postgres://postgres@127.0.0.1:{port}/postgres");
    services::wait_for_postgres(&url).await;
    let db = Database::connect(&url).await.unwrap();
    let version = db
        .query_one_raw(sea_orm::Statement::from_string(
            db.get_database_backend(),
            "SHOW server_version",
        ))
        .await
        .unwrap()
        .unwrap()
        .try_get::<String>("", "server_version")
        .unwrap();
    assert!(version.starts_with("15"), "server version {version}");
    db.execute_unprepared("CREATE DATABASE quickchat_naming")
        .await
        .expect("the test user may create databases, as each test does");

    let redis = services::redis(&official("redis:7"), None)
        .start()
        .await
        .expect("Redis starts from redis:7");
    let port = services::host_port(&redis, services::REDIS_PORT).await;
    services::wait_for_redis(port).await;
}

/// The fault suite's "Redis restarted empty", through the engine: what was stored is gone
/// and the server answers on the same address again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_private_redis_container_restarts_empty_on_the_same_address() {
    let mut redis = PrivateRedis::start().await;
    redis_cli(&redis.url, &["SET", "remembered", "yes"]);
    assert_eq!(redis_cli(&redis.url, &["GET", "remembered"]), "yes");

    redis.restart_empty().await;

    assert_eq!(redis_cli(&redis.url, &["GET", "remembered"]), "");
    assert_eq!(redis_cli(&redis.url, &["PING"]), "PONG");
}

fn redis_cli(url: &str, args: &[&str]) -> String {
    let output = std::process::Command::new("redis-cli")
        .args(["-u", url])
        .args(args)
        .output()
        .expect("redis-cli runs");
    assert!(output.status.success(), "{output:?}");
    String::from_utf8(output.stdout).unwrap().trim().to_owned()
}
