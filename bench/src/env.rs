//! Where a run happens: the services (PostgreSQL, Redis, a Kafka-protocol broker), a fresh
//! database for the run (dropped at the end), the programs (the release quickchat-server,
//! Node.js and the peer under bench/peer) and the directory that keeps every process's log.

use std::path::PathBuf;

use anyhow::Context;
use sea_orm::sqlx::{self, PgPool, postgres::PgPoolOptions};

pub struct Env {
    /// The run's own database.
    pub database_url: String,
    admin_url: String,
    database: String,
    pub redis_url: String,
    /// A Kafka bootstrap address; scenarios that need Kafka are skipped without one.
    pub kafka_brokers: Option<String>,
    /// Unique per run: prefixes Redis keys, Kafka topics and consumer groups.
    pub run_id: String,
    /// Logs of every process of the run.
    pub logs: PathBuf,
    pub server_bin: PathBuf,
    pub node_bin: String,
    pub peer_dir: PathBuf,
    pub pool: PgPool,
}

pub struct EnvConfig {
    pub postgres_url: String,
    pub redis_url: String,
    pub kafka_brokers: Option<String>,
    pub server_bin: PathBuf,
    pub node_bin: String,
    pub peer_dir: PathBuf,
    pub logs_root: PathBuf,
}

impl Env {
    pub async fn create(config: EnvConfig) -> anyhow::Result<Env> {
        anyhow::ensure!(
            config.server_bin.is_file(),
            "no quickchat-server at {} (build it with `cargo build --release -p quickchat-service`, \
             or run bench/run.sh)",
            config.server_bin.display()
        );
        anyhow::ensure!(
            config.peer_dir.join("node_modules").is_dir(),
            "the peer's npm packages are not installed: `npm ci --prefix {}` (bench/run.sh does it)",
            config.peer_dir.display()
        );
        // Absolute, because the peer's processes run in its directory.
        let server_bin = std::fs::canonicalize(&config.server_bin)?;
        let peer_dir = std::fs::canonicalize(&config.peer_dir)?;
        let run_id = format!("{:08x}", rand_u32());
        let database = format!("quickchat_bench_{run_id}");
        let admin = PgPool::connect(&config.postgres_url)
            .await
            .with_context(|| format!("cannot reach PostgreSQL at {}", config.postgres_url))?;
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {database}")))
            .execute(&admin)
            .await
            .context("cannot create the run's database")?;
        admin.close().await;
        let database_url = with_database(&config.postgres_url, &database)?;
        let pool = PgPoolOptions::new()
            .max_connections(8)
            .connect(&database_url)
            .await?;
        let logs = config.logs_root.join(&run_id);
        std::fs::create_dir_all(&logs)?;
        let logs = std::fs::canonicalize(logs)?;
        Ok(Env {
            database_url,
            admin_url: config.postgres_url,
            database,
            redis_url: config.redis_url,
            kafka_brokers: config.kafka_brokers,
            run_id,
            logs,
            server_bin,
            node_bin: config.node_bin,
            peer_dir,
            pool,
        })
    }

    /// Drops the run's database.
    pub async fn destroy(self) -> anyhow::Result<()> {
        self.pool.close().await;
        let admin = PgPool::connect(&self.admin_url).await?;
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
            self.database
        )))
        .execute(&admin)
        .await?;
        admin.close().await;
        Ok(())
    }
}

/// `url` with its path (the database name) replaced.
fn with_database(url: &str, database: &str) -> anyhow::Result<String> {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (url, None),
    };
    let authority_end = base
        .find("://")
        .map(|i| i + 3)
        .context("a postgres:// URL")?;
    let path_start = base[authority_end..]
        .find('/')
        .map_or(base.len(), |i| authority_end + i);
    let mut out = format!("{}/{database}", &base[..path_start]);
    if let Some(query) = query {
        out.push('?');
        out.push_str(query);
    }
    Ok(out)
}

/// A random number for names, without a dependency for it.
pub fn rand_u32() -> u32 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(crate::clock::now_us());
    h.finish() as u32
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_run_database_replaces_the_path_of_the_url() {
        assert_eq!(
            super::with_database("postgres://postgres@127.0.0.1:5432/postgres", "b").unwrap(),
            "postgres://postgres@127.0.0.1:5432/b"
        );
        assert_eq!(
            super::with_database("postgres://u@h/db?sslmode=disable", "b").unwrap(),
            "postgres://u@h/b?sslmode=disable"
        );
        assert_eq!(
            super::with_database("postgres://u@h", "b").unwrap(),
            "postgres://u@h/b"
        );
    }
}
