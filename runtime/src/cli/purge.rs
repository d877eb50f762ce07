//! `kar purge`: deletes everything an application of the distributed
//! deployment keeps in Kafka and Redis — every topic named `kar.<app>.*`,
//! every consumer group whose id starts with `kar.<app>.` and every key
//! matching `kar:<app>:*` — so the app can start from nothing.
//! Without `--yes` it is a dry run: it lists what it would delete and
//! deletes nothing.
//!
//! It talks to Kafka and Redis directly, not to a runtime; stop the app's
//! runtimes first, or they write again what was deleted (and a consumer
//! group with members cannot be deleted).

use anyhow::{Context, anyhow, bail};
use clap::Args;
use rdkafka::admin::{AdminClient, AdminOptions};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::error::KafkaError;
use rdkafka::types::RDKafkaErrorCode;
use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, Client};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

/// How many keys one `SCAN` step asks for, and so at most how many one
/// `UNLINK` deletes.
const SCAN_BATCH: usize = 1000;
/// How long to wait before deleting again a consumer group that still had
/// members (one whose consumers closed a moment ago may not be empty yet).
const GROUP_RETRY: Duration = Duration::from_millis(500);

/// Arguments of `kar purge`.
#[derive(Debug, Clone, Args)]
pub struct PurgeArgs {
    /// The application whose topics and keys to delete (non-empty, without
    /// ':').
    #[arg(long)]
    pub app: String,
    /// The Kafka cluster (`host:port[,host:port…]`); without it, Kafka is
    /// left alone.
    #[arg(long, value_name = "HOST:PORT")]
    pub kafka_brokers: Option<String>,
    /// The Redis server (`redis://host:port[/db]`); without it, Redis is left
    /// alone.
    #[arg(long, value_name = "URL")]
    pub redis_url: Option<String>,
    /// Delete; without it, only list what would be deleted.
    #[arg(long, short)]
    pub yes: bool,
    /// How long to wait to connect and for each answer (e.g. `30s`).
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    pub timeout: Duration,
}

/// Something of the application a purge found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Found<'a> {
    /// A Kafka topic.
    Topic(&'a str),
    /// A Kafka consumer group.
    Group(&'a str),
    /// A Redis key (keys may hold any bytes).
    Key(&'a [u8]),
}

/// What a purge found (and deleted, unless it was a dry run).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Purged {
    /// The topics, sorted.
    pub topics: Vec<String>,
    /// The consumer groups, sorted.
    pub groups: Vec<String>,
    /// How many keys.
    pub keys: u64,
}

/// Runs `kar purge`.
pub async fn run(args: PurgeArgs) -> anyhow::Result<ExitCode> {
    let dry_run = !args.yes;
    let purged = purge(&args, |found| {
        if dry_run {
            match found {
                Found::Topic(topic) => println!("topic {topic}"),
                Found::Group(group) => println!("group {group}"),
                Found::Key(key) => println!("key {}", String::from_utf8_lossy(key).escape_debug()),
            }
        }
    })
    .await?;
    let Purged { topics, groups, keys } = purged;
    let app = &args.app;
    let (topics, groups) = (topics.len(), groups.len());
    if dry_run {
        println!(
            "purge: app={app} topics={topics} groups={groups} keys={keys} (dry run: nothing deleted; add --yes to delete)"
        );
    } else {
        println!("purge: app={app} topics={topics} groups={groups} keys={keys}");
    }
    Ok(ExitCode::SUCCESS)
}

/// Finds the application's topics, consumer groups and keys, tells each to
/// `found` (in that order), and deletes them unless `args.yes` is false.
/// Both sides are
/// reached before anything is deleted, so an unreachable one fails the purge
/// without a half-done result.
pub async fn purge(args: &PurgeArgs, mut found: impl FnMut(Found<'_>)) -> anyhow::Result<Purged> {
    let app = args.app.as_str();
    crate::config::check_app_name(app).map_err(|e| anyhow::anyhow!(e))?;
    if args.kafka_brokers.is_none() && args.redis_url.is_none() {
        bail!("nothing to purge: give --kafka-brokers, --redis-url or both");
    }
    let mut redis = match &args.redis_url {
        Some(url) => Some(connect_redis(url, args.timeout).await?),
        None => None,
    };
    let mut purged = Purged::default();
    if let Some(brokers) = &args.kafka_brokers {
        let admin = Arc::new(
            ClientConfig::new()
                .set("bootstrap.servers", brokers)
                .create::<AdminClient<DefaultClientContext>>()
                .map_err(|e| anyhow!("invalid Kafka configuration for {brokers}: {e}"))?,
        );
        purged.topics = app_topics(&admin, app, args.timeout)
            .await
            .map_err(|e| anyhow!("cannot list the topics of Kafka at {brokers}: {e}"))?;
        purged.groups = app_groups(&admin, app, args.timeout)
            .await
            .map_err(|e| anyhow!("cannot list the consumer groups of Kafka at {brokers}: {e}"))?;
        purged.topics.iter().for_each(|topic| found(Found::Topic(topic)));
        purged.groups.iter().for_each(|group| found(Found::Group(group)));
        if args.yes {
            delete_topics(&admin, &purged.topics, args.timeout).await?;
            delete_groups(&admin, &purged.groups, args.timeout).await?;
        }
    }
    if let Some(conn) = &mut redis {
        purged.keys = purge_keys(conn, app, args.yes, &mut found)
            .await
            .with_context(|| format!("redis at {}", args.redis_url.as_deref().unwrap_or_default()))?;
    }
    Ok(purged)
}

async fn connect_redis(url: &str, timeout: Duration) -> anyhow::Result<MultiplexedConnection> {
    let client = Client::open(url).map_err(|e| anyhow!("invalid Redis URL {url:?}: {e}"))?;
    let config = AsyncConnectionConfig::new().set_connection_timeout(Some(timeout)).set_response_timeout(Some(timeout));
    client
        .get_multiplexed_async_connection_with_config(&config)
        .await
        .map_err(|e| anyhow!("cannot reach Redis at {url}: {e}"))
}

/// The topics named `kar.<app>.*`, sorted.
async fn app_topics(
    admin: &Arc<AdminClient<DefaultClientContext>>,
    app: &str,
    timeout: Duration,
) -> anyhow::Result<Vec<String>> {
    let prefix = format!("kar.{app}.");
    let admin = admin.clone();
    // `fetch_metadata` blocks its thread until the cluster answers.
    let metadata =
        tokio::task::spawn_blocking(move || admin.inner().fetch_metadata(None, timeout)).await?.map_err(kafka_error)?;
    let mut topics: Vec<String> = metadata
        .topics()
        .iter()
        .map(|t| t.name())
        .filter(|name| name.starts_with(&prefix))
        .map(str::to_owned)
        .collect();
    topics.sort_unstable();
    Ok(topics)
}

/// Deletes `topics`; one already gone counts as deleted.
async fn delete_topics(
    admin: &AdminClient<DefaultClientContext>,
    topics: &[String],
    timeout: Duration,
) -> anyhow::Result<()> {
    if topics.is_empty() {
        return Ok(());
    }
    let names: Vec<&str> = topics.iter().map(String::as_str).collect();
    let options = AdminOptions::new().operation_timeout(Some(timeout)).request_timeout(Some(timeout));
    let results = admin
        .delete_topics(&names, &options)
        .await
        .map_err(|e| anyhow!("cannot delete Kafka topics: {}", kafka_error(e)))?;
    let failures: Vec<String> = results
        .into_iter()
        .filter_map(|result| match result {
            Ok(_) | Err((_, RDKafkaErrorCode::UnknownTopicOrPartition)) => None,
            Err((topic, code)) => Some(format!("{topic}: {code}")),
        })
        .collect();
    if !failures.is_empty() {
        bail!("could not delete Kafka topics: {}", failures.join(", "));
    }
    Ok(())
}

/// The consumer groups whose id starts with `kar.<app>.`, sorted.
async fn app_groups(
    admin: &Arc<AdminClient<DefaultClientContext>>,
    app: &str,
    timeout: Duration,
) -> anyhow::Result<Vec<String>> {
    let prefix = format!("kar.{app}.");
    let admin = admin.clone();
    // `fetch_group_list` blocks its thread until every broker has answered.
    let mut groups = tokio::task::spawn_blocking(move || {
        let list = admin.inner().fetch_group_list(None, timeout)?;
        Ok::<_, KafkaError>(
            list.groups()
                .iter()
                .filter(|g| g.name().starts_with(&prefix) && g.state() != "Dead")
                .map(|g| g.name().to_owned())
                .collect::<Vec<String>>(),
        )
    })
    .await?
    .map_err(kafka_error)?;
    groups.sort_unstable();
    groups.dedup();
    Ok(groups)
}

/// Deletes `groups`; one already gone counts as deleted. A group that still
/// has members (its consumers may have left a moment ago) or whose
/// coordinator is not ready is tried again every [`GROUP_RETRY`] until
/// `timeout` has passed.
async fn delete_groups(
    admin: &AdminClient<DefaultClientContext>,
    groups: &[String],
    timeout: Duration,
) -> anyhow::Result<()> {
    let options = AdminOptions::new().operation_timeout(Some(timeout)).request_timeout(Some(timeout));
    let deadline = tokio::time::Instant::now() + timeout;
    let mut pending = groups.to_vec();
    while !pending.is_empty() {
        let names: Vec<&str> = pending.iter().map(String::as_str).collect();
        let results = admin
            .delete_groups(&names, &options)
            .await
            .map_err(|e| anyhow!("cannot delete Kafka consumer groups: {}", kafka_error(e)))?;
        let mut again = Vec::new();
        let mut failures = Vec::new();
        for result in results {
            match result {
                Ok(_) | Err((_, RDKafkaErrorCode::GroupIdNotFound)) => {}
                Err((
                    group,
                    code @ (RDKafkaErrorCode::NonEmptyGroup
                    | RDKafkaErrorCode::CoordinatorLoadInProgress
                    | RDKafkaErrorCode::CoordinatorNotAvailable
                    | RDKafkaErrorCode::NotCoordinator),
                )) => again.push((group, code)),
                Err((group, code)) => failures.push(format!("{group}: {code}")),
            }
        }
        if !failures.is_empty() {
            bail!("could not delete Kafka consumer groups: {}", failures.join(", "));
        }
        if !again.is_empty() && tokio::time::Instant::now() + GROUP_RETRY > deadline {
            let left: Vec<String> = again.iter().map(|(group, code)| format!("{group}: {code}")).collect();
            bail!(
                "could not delete Kafka consumer groups (a group with members needs its runtimes stopped): {}",
                left.join(", ")
            );
        }
        pending = again.into_iter().map(|(group, _)| group).collect();
        if !pending.is_empty() {
            tokio::time::sleep(GROUP_RETRY).await;
        }
    }
    Ok(())
}

/// A Kafka error as librdkafka describes it ("Local: Broker transport
/// failure"), without rdkafka's wrapping that repeats the code.
fn kafka_error(e: KafkaError) -> anyhow::Error {
    match e.rdkafka_error_code() {
        Some(code) => anyhow!("{code}"),
        None => anyhow!("{e}"),
    }
}

/// Scans the keys matching `kar:<app>:*`, tells each to `found`, and unlinks
/// them batch by batch if `delete`; returns how many there were (how many
/// were unlinked, when deleting).
async fn purge_keys(
    conn: &mut MultiplexedConnection,
    app: &str,
    delete: bool,
    found: &mut impl FnMut(Found<'_>),
) -> anyhow::Result<u64> {
    // App names are letters, digits, `_` and `-` (`check_app_name`): no glob
    // characters to escape.
    let pattern = format!("kar:{app}:*");
    let mut cursor: u64 = 0;
    let mut count = 0;
    loop {
        let (next, keys): (u64, Vec<Vec<u8>>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(&pattern)
            .arg("COUNT")
            .arg(SCAN_BATCH)
            .query_async(conn)
            .await
            .context("SCAN failed")?;
        keys.iter().for_each(|key| found(Found::Key(key)));
        if !delete {
            count += keys.len() as u64;
        } else if !keys.is_empty() {
            let unlinked: u64 = redis::cmd("UNLINK").arg(&keys).query_async(conn).await.context("UNLINK failed")?;
            count += unlinked;
        }
        if next == 0 {
            return Ok(count);
        }
        cursor = next;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::types::ActorId;
    use crate::log::kafka_test_broker::broker;
    use crate::store::redis_test_server::RedisTestServer;
    use crate::store::{Entry, RedisStateStore, StateStore};
    use bytes::Bytes;
    use rdkafka::admin::{NewTopic, TopicReplication};
    use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
    use rdkafka::{Offset, TopicPartitionList};
    use std::time::Instant;

    const TIMEOUT: Duration = Duration::from_secs(30);

    fn args(app: &str, brokers: Option<&str>, redis_url: Option<&str>, yes: bool) -> PurgeArgs {
        PurgeArgs {
            app: app.into(),
            kafka_brokers: brokers.map(str::to_owned),
            redis_url: redis_url.map(str::to_owned),
            yes,
            timeout: TIMEOUT,
        }
    }

    fn admin(brokers: &str) -> Arc<AdminClient<DefaultClientContext>> {
        Arc::new(ClientConfig::new().set("bootstrap.servers", brokers).create().expect("admin client"))
    }

    async fn create_topics(admin: &AdminClient<DefaultClientContext>, names: &[String]) {
        let topics: Vec<NewTopic<'_>> =
            names.iter().map(|name| NewTopic::new(name, 1, TopicReplication::Fixed(1))).collect();
        let options = AdminOptions::new().operation_timeout(Some(TIMEOUT));
        for result in admin.create_topics(&topics, &options).await.expect("create topics") {
            result.expect("topic created");
        }
    }

    /// Every store write below lands under `kar:<app>:`.
    async fn fill_store(url: &str, app: &str) -> RedisStateStore {
        let store = RedisStateStore::connect(url, app).await.expect("connect");
        let actor = ActorId::new("Cart", "1");
        let entry = |submap: &str| Entry { submap: submap.into(), key: "k".into(), value: Bytes::from_static(b"v") };
        store.set(&actor, entry("")).await.expect("set");
        store.set(&actor, entry("items")).await.expect("set");
        store.set_metadata("epoch", Bytes::from_static(b"1")).await.expect("metadata");
        store.put_sidecar("rt-1", Bytes::from_static(b"{}"), Duration::from_secs(60)).await.expect("sidecar");
        store
    }

    async fn keys(url: &str, pattern: &str) -> Vec<String> {
        let mut conn = connect_redis(url, TIMEOUT).await.expect("connect");
        let mut keys: Vec<String> = redis::cmd("KEYS").arg(pattern).query_async(&mut conn).await.expect("KEYS");
        keys.sort_unstable();
        keys
    }

    /// Makes `group` a consumer group the broker keeps: a consumer joins it
    /// by subscribing to `topic`, commits an offset and leaves.
    async fn create_group(brokers: &str, group: &str, topic: &str) {
        let (brokers, group, topic) = (brokers.to_owned(), group.to_owned(), topic.to_owned());
        // The consumer blocks its thread, closing it too.
        tokio::task::spawn_blocking(move || {
            let consumer: BaseConsumer = ClientConfig::new()
                .set("bootstrap.servers", &brokers)
                .set("group.id", &group)
                .set("enable.auto.commit", "false")
                .create()
                .expect("consumer");
            consumer.subscribe(&[&topic]).expect("subscribe");
            let deadline = Instant::now() + TIMEOUT;
            while consumer.assignment().expect("assignment").count() == 0 {
                assert!(Instant::now() < deadline, "{group} was never assigned {topic}");
                let _ = consumer.poll(Duration::from_millis(100));
            }
            let mut offsets = TopicPartitionList::new();
            offsets.add_partition_offset(&topic, 0, Offset::Offset(0)).expect("offset");
            consumer.commit(&offsets, CommitMode::Sync).expect("commit");
        })
        .await
        .expect("consumer thread");
    }

    async fn groups(admin: &Arc<AdminClient<DefaultClientContext>>, app: &str) -> Vec<String> {
        app_groups(admin, app, TIMEOUT).await.expect("groups")
    }

    /// Topic deletion completes in the background; waits until the app has
    /// no topic left.
    async fn wait_for_no_topics(admin: &Arc<AdminClient<DefaultClientContext>>, app: &str) {
        let deadline = Instant::now() + TIMEOUT;
        loop {
            let left = app_topics(admin, app, TIMEOUT).await.expect("topics");
            if left.is_empty() {
                return;
            }
            assert!(Instant::now() < deadline, "topics still listed after the purge: {left:?}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn purge_deletes_the_apps_topics_and_keys_and_nothing_else() {
        let broker = broker();
        let redis = RedisTestServer::start();
        let app = format!("purge-{}", uuid::Uuid::new_v4().simple());
        // An app whose name extends ours: its topics and keys share no
        // prefix with ours and must survive.
        let other = format!("{app}x");
        let admin = admin(&broker.brokers);
        let ours = vec![format!("kar.{app}.log.a"), format!("kar.{app}.actor.Slow.3")];
        let theirs = vec![format!("kar.{other}.log.a")];
        create_topics(&admin, &[ours.clone(), theirs.clone()].concat()).await;
        let our_group = format!("kar.{app}.g");
        let their_group = format!("kar.{other}.g");
        create_group(&broker.brokers, &our_group, &ours[0]).await;
        create_group(&broker.brokers, &their_group, &theirs[0]).await;
        fill_store(&redis.url(), &app).await;
        let survivor = fill_store(&redis.url(), &other).await;
        let our_keys = keys(&redis.url(), &format!("kar:{app}:*")).await;
        assert!(our_keys.len() >= 4, "the store wrote several keys: {our_keys:?}");

        let mut seen = Vec::new();
        let dry = purge(&args(&app, Some(&broker.brokers), Some(&redis.url()), false), |found| {
            seen.push(match found {
                Found::Topic(topic) => format!("topic {topic}"),
                Found::Group(group) => format!("group {group}"),
                Found::Key(key) => format!("key {}", String::from_utf8_lossy(key)),
            })
        })
        .await
        .expect("dry run");
        let mut sorted_ours = ours.clone();
        sorted_ours.sort_unstable();
        let expected =
            Purged { topics: sorted_ours.clone(), groups: vec![our_group.clone()], keys: our_keys.len() as u64 };
        assert_eq!(dry, expected);
        assert_eq!(
            seen.len(),
            ours.len() + 1 + our_keys.len(),
            "the dry run lists each topic, group and key: {seen:?}"
        );
        assert!(seen[..2].iter().all(|line| line.starts_with("topic ")), "topics first: {seen:?}");
        assert_eq!(seen[2], format!("group {our_group}"), "then groups: {seen:?}");
        assert_eq!(keys(&redis.url(), &format!("kar:{app}:*")).await, our_keys, "a dry run deletes nothing");
        assert_eq!(app_topics(&admin, &app, TIMEOUT).await.expect("topics"), sorted_ours);
        assert_eq!(groups(&admin, &app).await, vec![our_group.clone()], "a dry run deletes no group");

        let done = purge(&args(&app, Some(&broker.brokers), Some(&redis.url()), true), |_| {}).await.expect("purge");
        assert_eq!(done, dry);
        assert!(keys(&redis.url(), &format!("kar:{app}:*")).await.is_empty());
        assert!(groups(&admin, &app).await.is_empty(), "the app's group is deleted");
        wait_for_no_topics(&admin, &app).await;

        assert_eq!(app_topics(&admin, &other, TIMEOUT).await.expect("topics"), theirs, "the other app's topics stay");
        assert_eq!(groups(&admin, &other).await, vec![their_group], "the other app's group stays");
        assert_eq!(
            survivor.get(&ActorId::new("Cart", "1"), "items", "k").await.expect("get"),
            Some(Bytes::from_static(b"v")),
            "the other app's state stays"
        );
        assert_eq!(survivor.sidecars().await.expect("sidecars").len(), 1);

        let again = purge(&args(&app, Some(&broker.brokers), Some(&redis.url()), true), |_| {}).await.expect("again");
        assert_eq!(again, Purged::default(), "purging twice finds nothing");
        purge(&args(&other, Some(&broker.brokers), None, true), |_| {}).await.expect("clean up the other app");
        wait_for_no_topics(&admin, &other).await;
        assert!(groups(&admin, &other).await.is_empty());
    }

    #[tokio::test]
    async fn bad_arguments_are_one_line_errors() {
        let error =
            |args: PurgeArgs| async move { format!("{:#}", purge(&args, |_| {}).await.expect_err("must fail")) };
        assert!(error(args("", None, Some("redis://127.0.0.1:1"), true)).await.contains("invalid app name"));
        assert!(error(args("a:b", None, Some("redis://127.0.0.1:1"), true)).await.contains("invalid app name"));
        for app in ["a.b", "a*", "a b"] {
            assert!(
                error(args(app, None, Some("redis://127.0.0.1:1"), true)).await.contains("invalid app name"),
                "{app}"
            );
        }
        assert!(error(args("a", None, None, true)).await.contains("nothing to purge"));
        assert!(error(args("a", None, Some("not a url"), true)).await.contains("invalid Redis URL"));
        let unreachable =
            PurgeArgs { timeout: Duration::from_secs(2), ..args("a", None, Some("redis://127.0.0.1:1"), true) };
        assert!(error(unreachable).await.contains("cannot reach Redis"));
    }
}
