//! The lease table: one DynamoDB item per environment, taken and renewed with
//! conditional writes, so that exactly one writer — a daemon replica or a
//! one-off `reconcile --once` — writes an environment at a time. The same
//! item records the spec revision last applied there (see [`revision`]) and
//! the last pass. Replicas announce themselves with items of their own, so
//! that each can tell its fair share (see [`share`]).
//!
//! Holders compare expiry times from their own clocks, so clocks must agree
//! to well within the lease duration (NTP does that).

pub mod once;
pub mod revision;
pub mod share;

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_config::SdkConfig;
use aws_sdk_dynamodb::operation::update_item::builders::UpdateItemFluentBuilder;
use aws_sdk_dynamodb::types::{AttributeDefinition, AttributeValue, BillingMode, KeySchemaElement, KeyType, ReturnValue, ScalarAttributeType, TableStatus};
use aws_sdk_dynamodb::Client;

use crate::aws::{found, wait_for, AwsError, AwsResult, Built, CallCounter};
use crate::engine::report::Report;
use crate::spec::lease_table::{table_name, TableReferenceError};
use revision::{Applied, Revision};
use share::LeaseView;

/// The table's hash key (a string).
pub const KEY: &str = "lease";
/// Superseded revisions kept per environment.
const HISTORY: usize = 32;

/// What can go wrong with the lease table.
#[derive(Debug, thiserror::Error)]
pub enum LeaseError {
    /// A call failed.
    #[error(transparent)]
    Aws(#[from] AwsError),
    /// The table reference is not a table in this region.
    #[error(transparent)]
    Reference(#[from] TableReferenceError),
    /// The table does not exist and may not be created here.
    #[error("the lease table {table} does not exist in region {region} (the daemon creates it when it starts; is it in another region?)")]
    Missing {
        /// The table name.
        table: String,
        /// The region looked in.
        region: String,
    },
}

/// Milliseconds since the epoch, now.
pub fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX)).unwrap_or(0)
}

/// `ms` since the epoch as an RFC 3339 UTC time, to the second.
pub fn utc(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let (days, rest) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z", rest / 3600, rest % 3600 / 60, rest % 60)
}

/// `work` (a call to the lease table), as an error when it takes longer than `limit`.
pub async fn bounded<T>(limit: Duration, work: impl std::future::Future<Output = Result<T, AwsError>>) -> Result<T, AwsError> {
    tokio::time::timeout(limit, work)
        .await
        .unwrap_or_else(|_| Err(AwsError::unexpected("DynamoDB (lease table)", format!("the lease table did not answer within {limit:?}"))))
}

/// One line on a writing pass, for the lease item: its result and revision.
pub fn pass_line(report: &Report, revision: &Revision) -> String {
    let s = &report.summary;
    let outcome = if report.errors.is_empty() && s.failed == 0 { "ok" } else { "error" };
    format!(
        "{outcome}: {} created, {} updated, {} deleted, {} unchanged, {} failed, {} errors; revision {revision}",
        s.create,
        s.update,
        s.delete,
        s.unchanged,
        s.failed,
        report.errors.len()
    )
}

/// Who writes: a daemon replica or a one-off pass.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Writer {
    /// Unique among live writers: `<host>-<pid>-<start ms>`, prefixed `once:` for one-off passes.
    pub id: String,
    /// The host it runs on.
    pub host: String,
}

impl Writer {
    /// This process, as a daemon replica (`once`: as a one-off pass).
    pub fn this_process(once: bool) -> Writer {
        let host = std::env::var("HOSTNAME").ok().filter(|h| !h.is_empty()).unwrap_or_else(|| "localhost".into());
        let id = format!("{}{host}-{}-{}", if once { "once:" } else { "" }, std::process::id(), now_ms());
        Writer { id, host }
    }
}

/// An environment's lease item.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EnvRecord {
    /// The holder, its host, since when and until when (ms), whether or not the lease still runs.
    pub holder: Option<(String, String, i64, i64)>,
    /// Who asked for the lease, until when.
    pub request: Option<(String, i64)>,
    /// The revision last applied.
    pub applied: Option<Applied>,
    /// The revisions it superseded, newest first.
    pub history: Vec<Applied>,
    /// The last recorded pass: when, by whom, its result.
    pub last_pass: Option<(i64, String, String)>,
}

impl EnvRecord {
    /// The live holder at `now`: id, host, since.
    pub fn live_holder(&self, now: i64) -> Option<(&str, &str, i64)> {
        self.holder.as_ref().filter(|h| h.3 > now).map(|(id, host, since, _)| (id.as_str(), host.as_str(), *since))
    }

    /// The lease as [`share::moves`] sees it at `now`.
    pub fn view(&self, now: i64) -> LeaseView {
        LeaseView {
            holder: self.live_holder(now).map(|(id, ..)| id.to_string()),
            requested_by: self.request.as_ref().filter(|(_, until)| *until > now).map(|(by, _)| by.clone()),
        }
    }
}

/// The whole table at one moment.
#[derive(Debug, Clone, Default)]
pub struct TableView {
    /// When it was read (ms).
    pub now: i64,
    /// Live daemon replicas, with the environments each runs.
    pub replicas: Vec<share::Replica>,
    /// Replicas whose announcement expired, with when.
    pub dead_replicas: Vec<(String, i64)>,
    /// Every environment's item.
    pub envs: BTreeMap<String, EnvRecord>,
}

/// One writer's handle on the lease table.
pub struct LeaseTable {
    client: Client,
    table: String,
    region: String,
    me: Writer,
    duration: Duration,
}

type Item = HashMap<String, AttributeValue>;

fn env_key(env: &str) -> AttributeValue {
    AttributeValue::S(format!("env/{env}"))
}

fn number(n: i64) -> AttributeValue {
    AttributeValue::N(n.to_string())
}

fn text(item: &Item, name: &str) -> Option<String> {
    item.get(name).and_then(|v| v.as_s().ok()).cloned()
}

fn int(item: &Item, name: &str) -> Option<i64> {
    item.get(name).and_then(|v| v.as_n().ok()).and_then(|n| n.parse().ok())
}

/// A history entry: `generation<TAB>hash<TAB>label<TAB>at<TAB>by` (labels hold no white space).
fn history_entry(a: &Applied) -> AttributeValue {
    AttributeValue::S(format!("{}\t{}\t{}\t{}\t{}", a.generation, a.revision.hash, a.revision.label.as_deref().unwrap_or(""), a.at_ms, a.by))
}

fn parse_history_entry(s: &str) -> Option<Applied> {
    let mut parts = s.split('\t');
    let generation = parts.next()?.parse().ok()?;
    let hash = parts.next()?.to_string();
    let label = parts.next().filter(|l| !l.is_empty()).map(str::to_string);
    let at_ms = parts.next()?.parse().ok()?;
    let by = parts.next()?.to_string();
    Some(Applied { generation, revision: Revision { hash, label }, at_ms, by })
}

/// Reads an environment's item.
fn record(item: &Item) -> EnvRecord {
    let holder = match (text(item, "holder"), int(item, "expires")) {
        (Some(id), Some(expires)) => Some((id, text(item, "host").unwrap_or_default(), int(item, "since").unwrap_or(0), expires)),
        _ => None,
    };
    let request = text(item, "requested_by").zip(int(item, "requested_until"));
    let applied = match (int(item, "generation"), text(item, "revision")) {
        (Some(generation), Some(hash)) => Some(Applied {
            generation: u64::try_from(generation).unwrap_or(0),
            revision: Revision { hash, label: text(item, "label") },
            at_ms: int(item, "applied_at").unwrap_or(0),
            by: text(item, "applied_by").unwrap_or_default(),
        }),
        _ => None,
    };
    let history = item
        .get("history")
        .and_then(|v| v.as_l().ok())
        .map(|l| l.iter().filter_map(|v| v.as_s().ok()).filter_map(|s| parse_history_entry(s)).collect())
        .unwrap_or_default();
    let last_pass = int(item, "last_pass_at").map(|at| (at, text(item, "last_pass_by").unwrap_or_default(), text(item, "last_result").unwrap_or_default()));
    EnvRecord { holder, request, applied, history, last_pass }
}

impl LeaseTable {
    /// `me`'s handle on the lease table `reference` (a name or an ARN in the
    /// operator's region), holding leases for `duration` at a time.
    pub fn new(config: &SdkConfig, counter: &CallCounter, reference: &str, me: Writer, duration: Duration) -> Result<Self, LeaseError> {
        let region = config.region().map(|r| r.to_string()).unwrap_or_default();
        let table = table_name(reference, &region)?;
        let client = crate::sdk_client!(aws_sdk_dynamodb, config, counter);
        Ok(LeaseTable { client, table, region, me, duration })
    }

    /// This writer.
    pub fn me(&self) -> &Writer {
        &self.me
    }

    /// How often a holder renews: a third of the duration.
    pub fn renew_every(&self) -> Duration {
        self.duration / 3
    }

    /// How long a lease lasts without renewal.
    pub fn duration(&self) -> Duration {
        self.duration
    }

    /// Checks that the table exists; with `create`, creates it when missing.
    pub async fn ensure_table(&self, create: bool) -> Result<(), LeaseError> {
        let existing = found(self.client.describe_table().table_name(&self.table).send().await.aws("DynamoDB.DescribeTable"))?;
        let active =
            |out: &aws_sdk_dynamodb::operation::describe_table::DescribeTableOutput| out.table().and_then(|t| t.table_status()) == Some(&TableStatus::Active);
        match existing {
            Some(out) if active(&out) => return Ok(()),
            // Being created (by another replica): wait for it below.
            Some(_) => {}
            None if !create => return Err(LeaseError::Missing { table: self.table.clone(), region: self.region.clone() }),
            None => self.create_table().await?,
        }
        wait_for("DynamoDB.DescribeTable", Duration::from_secs(300), || async {
            let out = self.client.describe_table().table_name(&self.table).send().await.aws("DynamoDB.DescribeTable")?;
            Ok(active(&out).then_some(()))
        })
        .await
        .map_err(LeaseError::from)
    }

    /// Creates the table (another writer creating it at the same moment is fine).
    async fn create_table(&self) -> Result<(), AwsError> {
        let key = KeySchemaElement::builder().attribute_name(KEY).key_type(KeyType::Hash).build().built("DynamoDB.CreateTable")?;
        let attribute = AttributeDefinition::builder().attribute_name(KEY).attribute_type(ScalarAttributeType::S).build().built("DynamoDB.CreateTable")?;
        let created = self
            .client
            .create_table()
            .table_name(&self.table)
            .key_schema(key)
            .attribute_definitions(attribute)
            .billing_mode(BillingMode::PayPerRequest)
            .send()
            .await;
        match created.aws("DynamoDB.CreateTable") {
            Err(e) if e.code.as_deref() != Some("ResourceInUseException") => Err(e),
            _ => Ok(()),
        }
    }

    /// Announces this replica, running `envs`, as live for one lease duration.
    pub async fn heartbeat(&self, envs: &[String]) -> Result<(), AwsError> {
        let expires = now_ms() + self.duration_ms();
        let put = self
            .client
            .put_item()
            .table_name(&self.table)
            .item(KEY, AttributeValue::S(format!("replica/{}", self.me.id)))
            .item("holder", AttributeValue::S(self.me.id.clone()))
            .item("host", AttributeValue::S(self.me.host.clone()))
            .item("expires", number(expires))
            .item("envs", AttributeValue::L(envs.iter().map(|e| AttributeValue::S(e.clone())).collect()))
            .send()
            .await;
        put.aws("DynamoDB.PutItem").map(|_| ())
    }

    /// Withdraws this replica's announcement (on shutdown).
    pub async fn leave(&self) -> Result<(), AwsError> {
        let key = AttributeValue::S(format!("replica/{}", self.me.id));
        self.client.delete_item().table_name(&self.table).key(KEY, key).send().await.aws("DynamoDB.DeleteItem").map(|_| ())
    }

    /// Reads the whole table (strongly consistent).
    pub async fn scan(&self) -> Result<TableView, AwsError> {
        let now = now_ms();
        let mut view = TableView { now, ..TableView::default() };
        let mut start: Option<Item> = None;
        loop {
            let out =
                self.client.scan().table_name(&self.table).consistent_read(true).set_exclusive_start_key(start.take()).send().await.aws("DynamoDB.Scan")?;
            for item in out.items() {
                let Some(key) = text(item, KEY) else { continue };
                if let Some(env) = key.strip_prefix("env/") {
                    view.envs.insert(env.to_string(), record(item));
                } else if let (Some(id), Some(expires)) = (key.strip_prefix("replica/"), int(item, "expires")) {
                    if expires > now {
                        let envs = item.get("envs").and_then(|v| v.as_l().ok()).map(|l| l.iter().filter_map(|e| e.as_s().ok().cloned()).collect());
                        view.replicas.push(share::Replica { id: id.to_string(), envs });
                    } else {
                        view.dead_replicas.push((id.to_string(), expires));
                    }
                }
            }
            match out.last_evaluated_key() {
                Some(next) if !next.is_empty() => start = Some(next.clone()),
                _ => return Ok(view),
            }
        }
    }

    /// Reads one environment's item (strongly consistent).
    pub async fn get(&self, env: &str) -> Result<EnvRecord, AwsError> {
        let out = self.client.get_item().table_name(&self.table).key(KEY, env_key(env)).consistent_read(true).send().await.aws("DynamoDB.GetItem")?;
        Ok(out.item().map(record).unwrap_or_default())
    }

    fn duration_ms(&self) -> i64 {
        i64::try_from(self.duration.as_millis()).unwrap_or(i64::MAX / 4)
    }

    /// Runs a conditional update of `env`'s item: the item as written, or
    /// `None` when the condition failed.
    async fn update(&self, env: &str, build: impl FnOnce(UpdateItemFluentBuilder) -> UpdateItemFluentBuilder) -> Result<Option<EnvRecord>, AwsError> {
        let request = build(self.client.update_item().table_name(&self.table).key(KEY, env_key(env)).return_values(ReturnValue::AllNew));
        match request.send().await.aws("DynamoDB.UpdateItem") {
            Ok(out) => Ok(Some(out.attributes().map(record).unwrap_or_default())),
            Err(e) if e.code.as_deref() == Some("ConditionalCheckFailedException") => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Takes `env`'s lease when it is free or expired, and nobody else has
    /// asked for it; keeps it when it is ours already. The item once ours
    /// (its revision record as of taking it), or `None`.
    pub async fn acquire(&self, env: &str) -> Result<Option<EnvRecord>, AwsError> {
        let now = now_ms();
        self.update(env, |u| {
            u.update_expression("SET holder = :me, host = :host, since = :now, expires = :expires")
                .condition_expression(
                    "(attribute_not_exists(holder) OR expires < :now OR holder = :me) \
                     AND (attribute_not_exists(requested_by) OR requested_until < :now OR requested_by = :me)",
                )
                .expression_attribute_values(":me", AttributeValue::S(self.me.id.clone()))
                .expression_attribute_values(":host", AttributeValue::S(self.me.host.clone()))
                .expression_attribute_values(":now", number(now))
                .expression_attribute_values(":expires", number(now + self.duration_ms()))
        })
        .await
    }

    /// Extends `env`'s lease while it is ours: the item, or `None` when it is not ours.
    pub async fn renew(&self, env: &str) -> Result<Option<EnvRecord>, AwsError> {
        let now = now_ms();
        self.update(env, |u| {
            u.update_expression("SET expires = :expires")
                .condition_expression("holder = :me AND expires >= :now")
                .expression_attribute_values(":me", AttributeValue::S(self.me.id.clone()))
                .expression_attribute_values(":now", number(now))
                .expression_attribute_values(":expires", number(now + self.duration_ms()))
        })
        .await
    }

    /// Gives `env`'s lease up (keeping the item's revision and pass records).
    pub async fn release(&self, env: &str) -> Result<(), AwsError> {
        self.update(env, |u| {
            u.update_expression("REMOVE holder, host, since SET expires = :zero")
                .condition_expression("holder = :me")
                .expression_attribute_values(":me", AttributeValue::S(self.me.id.clone()))
                .expression_attribute_values(":zero", number(0))
        })
        .await
        .map(|_| ())
    }

    /// Asks for `env`'s lease until `until` (ms): its holder yields it at its
    /// next turn and no replica takes it meanwhile. Whether the request stands
    /// (another writer's live request wins).
    pub async fn request(&self, env: &str, until: i64) -> Result<bool, AwsError> {
        self.update(env, |u| {
            u.update_expression("SET requested_by = :me, requested_until = :until")
                .condition_expression("attribute_not_exists(requested_by) OR requested_until < :now OR requested_by = :me")
                .expression_attribute_values(":me", AttributeValue::S(self.me.id.clone()))
                .expression_attribute_values(":now", number(now_ms()))
                .expression_attribute_values(":until", number(until))
        })
        .await
        .map(|r| r.is_some())
    }

    /// Withdraws our request for `env`'s lease, if it stands.
    pub async fn withdraw(&self, env: &str) -> Result<(), AwsError> {
        self.update(env, |u| {
            u.update_expression("REMOVE requested_by, requested_until")
                .condition_expression("requested_by = :me")
                .expression_attribute_values(":me", AttributeValue::S(self.me.id.clone()))
        })
        .await
        .map(|_| ())
    }

    /// Records `revision` as applied to `env` with the next generation after
    /// `last` (the one this writer read), `last` joining the history. `None`
    /// when the item changed meanwhile or the lease is no longer ours. A
    /// condition failing because an earlier attempt of this very write went
    /// through (its reply lost, the SDK retried) counts as recorded.
    pub async fn record_revision(&self, env: &str, revision: &Revision, record: &EnvRecord) -> Result<Option<Applied>, AwsError> {
        let previous = record.applied.as_ref();
        let applied = Applied { generation: previous.map_or(1, |a| a.generation + 1), revision: revision.clone(), at_ms: now_ms(), by: self.me.id.clone() };
        let history: Vec<AttributeValue> = previous.into_iter().chain(&record.history).take(HISTORY).map(history_entry).collect();
        let label = revision.label.clone();
        let recorded = self
            .update(env, |u| {
                let u = u
                    .update_expression(if label.is_some() {
                        "SET generation = :g, revision = :hash, label = :label, applied_at = :at, applied_by = :me, history = :history"
                    } else {
                        "SET generation = :g, revision = :hash, applied_at = :at, applied_by = :me, history = :history REMOVE label"
                    })
                    .condition_expression(if previous.is_some() {
                        "holder = :me AND generation = :seen"
                    } else {
                        "holder = :me AND attribute_not_exists(generation)"
                    })
                    .expression_attribute_values(":g", number(i64::try_from(applied.generation).unwrap_or(i64::MAX)))
                    .expression_attribute_values(":hash", AttributeValue::S(revision.hash.clone()))
                    .expression_attribute_values(":at", number(applied.at_ms))
                    .expression_attribute_values(":me", AttributeValue::S(self.me.id.clone()))
                    .expression_attribute_values(":history", AttributeValue::L(history));
                let u = match &label {
                    Some(label) => u.expression_attribute_values(":label", AttributeValue::S(label.clone())),
                    None => u,
                };
                match previous {
                    Some(p) => u.expression_attribute_values(":seen", number(i64::try_from(p.generation).unwrap_or(i64::MAX))),
                    None => u,
                }
            })
            .await?;
        if recorded.is_some() {
            return Ok(Some(applied));
        }
        let now = self.get(env).await?;
        let ours = now.applied.as_ref().is_some_and(|a| a.generation == applied.generation && a.by == applied.by && a.revision == applied.revision);
        Ok(ours.then(|| now.applied.clone()).flatten())
    }

    /// Records the result of a pass over `env` while the lease is ours; whether it was.
    pub async fn record_pass(&self, env: &str, result: &str) -> Result<bool, AwsError> {
        self.update(env, |u| {
            u.update_expression("SET last_pass_at = :at, last_pass_by = :me, last_result = :result")
                .condition_expression("holder = :me")
                .expression_attribute_values(":me", AttributeValue::S(self.me.id.clone()))
                .expression_attribute_values(":at", number(now_ms()))
                .expression_attribute_values(":result", AttributeValue::S(result.to_string()))
        })
        .await
        .map(|r| r.is_some())
    }

    /// Deletes the announcements of replicas dead for more than ten lease
    /// durations (every restart leaves one), so the table stays small.
    pub async fn forget_dead_replicas(&self, view: &TableView) -> Result<(), AwsError> {
        let long_ago = view.now - self.duration_ms().saturating_mul(10);
        for (id, expires) in &view.dead_replicas {
            if *expires >= long_ago {
                continue;
            }
            let deleted = self
                .client
                .delete_item()
                .table_name(&self.table)
                .key(KEY, AttributeValue::S(format!("replica/{id}")))
                .condition_expression("expires < :old")
                .expression_attribute_values(":old", number(long_ago))
                .send()
                .await;
            match deleted.aws("DynamoDB.DeleteItem") {
                Err(e) if e.code.as_deref() != Some("ConditionalCheckFailedException") => return Err(e),
                _ => {}
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_dynamodb::operation::describe_table::DescribeTableOutput;
    use aws_sdk_dynamodb::types::TableDescription;
    use aws_smithy_mocks::{mock, mock_client, RuleMode};

    // The emulator makes tables ACTIVE at once, so a table still being created
    // (by another replica) is covered with mocks.
    #[tokio::test(start_paused = true)]
    async fn a_table_being_created_is_waited_for() {
        let described = |status: TableStatus| DescribeTableOutput::builder().table(TableDescription::builder().table_status(status).build()).build();
        let describe = mock!(Client::describe_table)
            .sequence()
            .output(move || described(TableStatus::Creating))
            .times(2)
            .output(move || described(TableStatus::Active))
            .build();
        let table = LeaseTable {
            client: mock_client!(aws_sdk_dynamodb, RuleMode::Sequential, [&describe]),
            table: "leases".into(),
            region: "us-east-1".into(),
            me: Writer { id: "r".into(), host: "h".into() },
            duration: Duration::from_secs(30),
        };
        table.ensure_table(false).await.expect("active in the end");
        assert_eq!(describe.num_calls(), 3, "waited until ACTIVE, creating nothing");
    }

    #[test]
    fn times_print_as_utc() {
        assert_eq!(utc(0), "1970-01-01T00:00:00Z");
        assert_eq!(utc(1_795_900_000_000), "2026-11-28T21:06:40Z");
        assert_eq!(utc(951_782_400_000), "2000-02-29T00:00:00Z");
    }

    #[test]
    fn table_references_name_the_operators_region() {
        assert_eq!(table_name("sentry-operator-leases", "eu-west-1").ok().as_deref(), Some("sentry-operator-leases"));
        assert_eq!(table_name("arn:aws:dynamodb:eu-west-1:123456789012:table/leases", "eu-west-1").ok().as_deref(), Some("leases"));
        let other = table_name("arn:aws:dynamodb:us-east-1:123456789012:table/leases", "eu-west-1").map_err(|e| e.to_string());
        assert!(other.as_ref().is_err_and(|e| e.contains("is in region us-east-1") && e.contains("--region us-east-1")), "{other:?}");
        assert!(table_name("arn:aws:s3:::bucket", "eu-west-1").is_err());
        assert!(table_name("x", "eu-west-1").is_err());
        assert!(table_name("bad name", "eu-west-1").is_err());
    }

    #[test]
    fn history_entries_round_trip() {
        let a = Applied {
            generation: 7,
            revision: Revision { hash: "0123456789abcdef".into(), label: Some("4f2a9c1".into()) },
            at_ms: 5,
            by: "once:ci-1-2".into(),
        };
        assert_eq!(parse_history_entry(history_entry(&a).as_s().map(String::as_str).unwrap_or_default()), Some(a.clone()));
        let unlabelled = Applied { revision: Revision { label: None, ..a.revision.clone() }, ..a };
        assert_eq!(parse_history_entry(history_entry(&unlabelled).as_s().map(String::as_str).unwrap_or_default()), Some(unlabelled));
    }
}
