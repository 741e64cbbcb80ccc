//! `deploy/` cannot be run here (no Docker engine), so its consistency with the server is
//! checked instead: every node's flags and `QUICKCHAT_*` variables must be ones
//! `quickchat-server` accepts, and the load balancer must point at the nodes.

use std::collections::HashSet;

use clap::{CommandFactory, Parser};
use quickchat_service::settings::ServerCli;
use serde_norway::Value;

fn load(file: &str) -> Value {
    let path = format!("{}/../deploy/{file}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let mut value: Value = serde_norway::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"));
    value.apply_merge().unwrap();
    value
}

fn strings(value: &Value) -> Vec<String> {
    value
        .as_sequence()
        .map(|s| {
            s.iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn every_node_in_the_compose_file_starts_with_flags_the_server_accepts() {
    let compose = load("docker-compose.yml");
    let services = compose["services"].as_mapping().expect("services");
    let known_env: HashSet<String> = ServerCli::command()
        .get_arguments()
        .filter_map(|a| a.get_env().map(|e| e.to_string_lossy().into_owned()))
        .collect();

    let nodes: Vec<&str> = services
        .iter()
        .filter(|(_, s)| s["image"].as_str() == Some("quickchat-server:local"))
        .map(|(name, _)| name.as_str().unwrap())
        .collect();
    assert_eq!(nodes, ["node1", "node2", "node3"]);

    for name in &nodes {
        let service = &services[*name];
        let args = strings(&service["command"]);
        let cli = ServerCli::try_parse_from(
            std::iter::once("quickchat-server".to_owned()).chain(args.clone()),
        )
        .unwrap_or_else(|e| panic!("{name}: {e}"));
        let server = cli.server;
        assert!(
            server
                .database_url
                .as_deref()
                .is_some_and(|u| u.starts_with("postgres://")),
            "{name}: PostgreSQL"
        );
        assert!(
            server.redis_url.is_some() && server.kafka_brokers.is_some(),
            "{name}: Redis and Kafka"
        );
        assert_eq!(
            server.listen.port(),
            50051,
            "{name}: the port Envoy targets"
        );

        let env = service["environment"].as_mapping().expect("environment");
        for key in env
            .keys()
            .filter_map(Value::as_str)
            .filter(|k| k.starts_with("QUICKCHAT_"))
        {
            assert!(
                known_env.contains(key),
                "{name}: quickchat-server has no {key}"
            );
        }
        assert!(
            env.contains_key("QUICKCHAT_JWT_SECRET"),
            "{name}: nodes must share one JWT secret"
        );

        for dependency in service["depends_on"]
            .as_mapping()
            .expect("depends_on")
            .keys()
        {
            assert!(
                services.contains_key(dependency),
                "{name} depends on a missing {dependency:?}"
            );
        }
        // The URLs name services of this file.
        for host in ["postgres", "redis", "kafka"] {
            assert!(services.contains_key(host), "no {host} service");
        }
    }
}

#[test]
fn the_load_balancer_spreads_over_every_node() {
    let envoy = load("envoy.yaml");
    let cluster = &envoy["static_resources"]["clusters"][0];
    let endpoints: Vec<(String, u64)> = cluster["load_assignment"]["endpoints"][0]["lb_endpoints"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|e| {
            let socket = &e["endpoint"]["address"]["socket_address"];
            (
                socket["address"].as_str().unwrap().to_owned(),
                socket["port_value"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        endpoints,
        [
            ("node1".to_owned(), 50051),
            ("node2".to_owned(), 50051),
            ("node3".to_owned(), 50051)
        ]
    );
    assert!(
        cluster["health_checks"][0]["grpc_health_check"].is_mapping(),
        "dead nodes leave the rotation"
    );
}
