//! The daemon's reader of one environment's event queue: long-polls it while
//! this replica leads the environment, judges and routes each record, and
//! wakes the loop that repairs what it touched. Messages are deleted once
//! their resources are pending (the periodic full pass is the backstop for
//! anything lost), so a storm costs one ReceiveMessage and one
//! DeleteMessageBatch per ten events, and the pending work stays bounded.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_config::SdkConfig;
use aws_sdk_sqs::types::DeleteMessageBatchRequestEntry;
use tokio::sync::{watch, Notify};

use super::{parse, route, Me, Pending, Verdict};
use crate::aws::{found, required, AwsError, AwsResult, Built, CallCounter};
use crate::engine::permissions::{Grant, Permissions};
use crate::engine::references::KnownHandles;
use crate::engine::Rules;

/// What this module's calls need of IAM (`sentry-operator iam-policy` gathers it).
#[rustfmt::skip]
pub const PERMISSIONS: Permissions = Permissions {
    reads: &["sts:GetCallerIdentity", "cloudtrail:DescribeTrails", "cloudtrail:GetTrailStatus", "cloudtrail:GetEventSelectors"],
    grants: &[
        Grant::allow("QueueWrites", &["sqs:GetQueueUrl"], &["arn:aws:sqs:*:*:sentry-*"]),
        Grant::allow("ReadTheOperatorsEventQueue", &["sqs:ReceiveMessage", "sqs:DeleteMessageBatch"], &["arn:aws:sqs:*:*:sentry-operator-events-*"]),
    ],
};

/// How long one ReceiveMessage waits for events (SQS's longest long poll).
const LONG_POLL_SECONDS: i32 = 20;
/// How long a received message stays invisible to other readers.
const VISIBILITY_SECONDS: i32 = 60;
/// How long to wait before trying again after the queue could not be read.
const RETRY_AFTER: Duration = Duration::from_secs(5);

/// Counts of what the feed read, for logs and metrics.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FeedStats {
    /// Messages received.
    pub received: u64,
    /// Records of calls that touched the estate's kinds, routed to a loop.
    pub routed: u64,
    /// The operator's own calls, skipped.
    pub own: u64,
    /// Calls made in another account or region, skipped.
    pub elsewhere: u64,
    /// Read-only calls, skipped.
    pub read_only: u64,
    /// Messages that are not CloudTrail records of API calls, dropped.
    pub malformed: u64,
    /// Calls that touch no kind the operator reconciles.
    pub unmapped: u64,
}

/// What the feed hands the environment's loops: coalesced pending work, a
/// wake-up per loop, and the handles their passes learnt.
#[derive(Default)]
pub struct Inbox {
    /// Work for the full loop.
    pub full: Mutex<Pending>,
    /// Work for the fast (whitelist) loop.
    pub fast: Mutex<Pending>,
    /// Wakes the full loop.
    pub full_ready: Notify,
    /// Wakes the fast loop.
    pub fast_ready: Notify,
    /// The handles the environment's passes learnt.
    pub known: KnownHandles,
    /// Whether a full pass of the environment succeeded (its handles are known).
    pub full_pass_done: std::sync::atomic::AtomicBool,
    /// What the feed read.
    pub stats: Mutex<FeedStats>,
}

impl Inbox {
    /// Asks the full loop for a pass over every kind (the queue was lost: events may have been missed).
    pub fn everything(&self) {
        if let Ok(mut p) = self.full.lock() {
            p.everything();
        }
        self.full_ready.notify_one();
    }
}

/// Reads one environment's event queue.
pub struct Feed {
    env: String,
    queue: String,
    rules: Vec<Rules>,
    region: String,
    sqs: aws_sdk_sqs::Client,
    sts: aws_sdk_sts::Client,
    cloudtrail: aws_sdk_cloudtrail::Client,
}

impl Feed {
    /// The feed of `env`'s queue `queue`, in the account and region of `config`, routing to the kinds of `rules`.
    pub fn new(env: &str, queue: String, rules: Vec<Rules>, config: &SdkConfig, counter: &CallCounter) -> Self {
        Feed {
            env: env.to_string(),
            queue,
            rules,
            region: config.region().map(|r| r.to_string()).unwrap_or_default(),
            sqs: crate::sdk_client!(aws_sdk_sqs, config, counter),
            sts: crate::sdk_client!(aws_sdk_sts, config, counter),
            cloudtrail: crate::sdk_client!(aws_sdk_cloudtrail, config, counter),
        }
    }

    /// Who the operator is in this account.
    async fn me(&self) -> Result<Me, AwsError> {
        let out = self.sts.get_caller_identity().send().await.aws("STS.GetCallerIdentity")?;
        Ok(Me {
            account: required("STS.GetCallerIdentity", "account", out.account())?,
            region: self.region.clone(),
            arn: required("STS.GetCallerIdentity", "ARN", out.arn())?,
            user_id: out.user_id().unwrap_or_default().to_string(),
        })
    }

    /// Why no API call may reach EventBridge, if none can: no trail logging
    /// this region's management write events (EventBridge receives CloudTrail's
    /// records only from a logging trail).
    pub async fn trail_problem(&self) -> Result<Option<String>, AwsError> {
        let trails = self.cloudtrail.describe_trails().include_shadow_trails(true).send().await.aws("CloudTrail.DescribeTrails")?;
        for trail in trails.trail_list() {
            let Some(arn) = trail.trail_arn() else { continue };
            let status = self.cloudtrail.get_trail_status().name(arn).send().await.aws("CloudTrail.GetTrailStatus")?;
            if !status.is_logging().unwrap_or(false) {
                continue;
            }
            let selectors = self.cloudtrail.get_event_selectors().trail_name(arn).send().await.aws("CloudTrail.GetEventSelectors")?;
            let basic = selectors
                .event_selectors()
                .iter()
                .any(|s| s.include_management_events().unwrap_or(true) && s.read_write_type().map_or(true, |t| t.as_str() != "ReadOnly"));
            let advanced = selectors.advanced_event_selectors().iter().any(|s| {
                s.field_selectors().iter().any(|f| f.field() == "eventCategory" && f.equals().iter().any(|v| v == "Management"))
                    && !s.field_selectors().iter().any(|f| f.field() == "readOnly" && f.equals().iter().any(|v| v == "true"))
            });
            // A trail with no selectors at all records management events (read and write).
            if basic || advanced || (selectors.event_selectors().is_empty() && selectors.advanced_event_selectors().is_empty()) {
                return Ok(None);
            }
        }
        Ok(Some(format!(
            "no CloudTrail trail logs management write events in {}: EventBridge receives no API calls, so drift waits for the periodic full pass. \
             Create a trail with management events (the operator does not create trails)",
            self.region
        )))
    }

    /// Reads the queue until stopped, while `leads` says this replica writes
    /// the environment; `lost` is called once each time the queue goes missing.
    pub async fn run(self, inbox: Arc<Inbox>, leads: impl Fn() -> bool, lost: impl Fn(&str), mut stop: watch::Receiver<bool>) {
        match self.trail_problem().await {
            Ok(Some(problem)) => tracing::warn!(env = %self.env, "{problem}"),
            Ok(None) => tracing::info!(env = %self.env, "a CloudTrail trail logs management events: API calls reach the event queue"),
            Err(e) => tracing::warn!(env = %self.env, error = %e, "cannot tell whether a CloudTrail trail logs management events"),
        }
        let mut me: Option<Me> = None;
        let mut url: Option<String> = None;
        // Whether the queue was ever found: before that, the first full pass has yet to create it.
        let mut seen = false;
        let mut waiting = false;
        let mut missing = false;
        loop {
            if *stop.borrow() {
                return;
            }
            let pause = if !leads() {
                Some(Duration::from_secs(1))
            } else if me.is_none() {
                match self.me().await {
                    Ok(found) => {
                        me = Some(found);
                        None
                    }
                    Err(e) => {
                        tracing::warn!(env = %self.env, error = %e, "cannot tell the operator's own principal; not reading events yet");
                        Some(RETRY_AFTER)
                    }
                }
            } else {
                None
            };
            if let Some(pause) = pause {
                tokio::select! {
                    _ = tokio::time::sleep(pause) => continue,
                    _ = stop.changed() => return,
                }
            }
            let Some(me) = &me else { continue };
            if url.is_none() {
                match found(self.sqs.get_queue_url().queue_name(&self.queue).send().await.aws("SQS.GetQueueUrl")) {
                    Ok(Some(out)) => {
                        url = out.queue_url().map(str::to_string);
                        if missing {
                            tracing::info!(env = %self.env, queue = %self.queue, "the event queue is back: reading events again");
                        } else if !seen {
                            tracing::info!(env = %self.env, queue = %self.queue, "reading the event queue");
                        }
                        (seen, missing) = (true, false);
                    }
                    Ok(None) if !seen => {
                        if !waiting {
                            tracing::info!(env = %self.env, queue = %self.queue, "waiting for a full pass to create the event queue");
                        }
                        waiting = true;
                    }
                    Ok(None) => {
                        if !missing {
                            lost(&self.queue);
                            inbox.everything();
                        }
                        missing = true;
                    }
                    Err(e) => tracing::warn!(env = %self.env, error = %e, "cannot find the event queue"),
                }
            }
            let Some(queue_url) = url.clone() else {
                tokio::select! {
                    _ = tokio::time::sleep(RETRY_AFTER) => continue,
                    _ = stop.changed() => return,
                }
            };
            let received = tokio::select! {
                r = self.receive(&queue_url) => r,
                _ = stop.changed() => return,
            };
            match received {
                Ok(messages) => self.take_in(&inbox, me, &queue_url, messages).await,
                Err(e) if e.class == crate::aws::ErrorClass::NotFound => {
                    // Looked up again after a pause (a deleted queue's URL may still resolve for a while).
                    url = None;
                    tokio::select! {
                        _ = tokio::time::sleep(RETRY_AFTER) => {}
                        _ = stop.changed() => return,
                    }
                }
                Err(e) => {
                    tracing::warn!(env = %self.env, error = %e, "cannot read the event queue; trying again");
                    tokio::select! {
                        _ = tokio::time::sleep(RETRY_AFTER) => {}
                        _ = stop.changed() => return,
                    }
                }
            }
        }
    }

    async fn receive(&self, url: &str) -> Result<Vec<aws_sdk_sqs::types::Message>, AwsError> {
        let request = self.sqs.receive_message().queue_url(url).max_number_of_messages(10).wait_time_seconds(LONG_POLL_SECONDS);
        let out = request.visibility_timeout(VISIBILITY_SECONDS).send().await.aws("SQS.ReceiveMessage")?;
        Ok(out.messages.unwrap_or_default())
    }

    /// Judges and routes received messages, wakes the loops, deletes the messages.
    async fn take_in(&self, inbox: &Inbox, me: &Me, url: &str, messages: Vec<aws_sdk_sqs::types::Message>) {
        if messages.is_empty() {
            return;
        }
        let mut stats = FeedStats { received: messages.len() as u64, ..FeedStats::default() };
        let (mut wake_full, mut wake_fast) = (false, false);
        for body in messages.iter().map(|m| m.body().unwrap_or_default()) {
            let announcement = match parse(body) {
                Ok(a) => a,
                Err(e) => {
                    stats.malformed += 1;
                    tracing::warn!(env = %self.env, error = %e, "dropped a message of the event queue");
                    continue;
                }
            };
            match me.judge(&announcement) {
                Verdict::Repair => {}
                Verdict::Own => {
                    stats.own += 1;
                    continue;
                }
                Verdict::OtherAccount(_) | Verdict::OtherRegion(_) => {
                    stats.elsewhere += 1;
                    continue;
                }
                Verdict::ReadOnly => {
                    stats.read_only += 1;
                    continue;
                }
            }
            let (Ok(mut fast), Ok(mut full)) = (inbox.fast.lock(), inbox.full.lock()) else { continue };
            let (fast_before, full_before) = (fast.is_empty(), full.is_empty());
            if route(&self.rules, &announcement, &mut fast, &mut full) {
                stats.routed += 1;
                tracing::info!(
                    env = %self.env, call = %announcement.attribution.call, actor = %announcement.attribution.actor,
                    source = %announcement.call.source, pending = full.len() + fast.len(), "API call announced: repairing what it touched"
                );
            } else {
                stats.unmapped += 1;
            }
            wake_fast |= fast_before && !fast.is_empty();
            wake_full |= full_before && !full.is_empty();
        }
        if wake_fast {
            inbox.fast_ready.notify_one();
        }
        if wake_full {
            inbox.full_ready.notify_one();
        }
        if let Ok(mut total) = inbox.stats.lock() {
            total.received += stats.received;
            total.routed += stats.routed;
            total.own += stats.own;
            total.elsewhere += stats.elsewhere;
            total.read_only += stats.read_only;
            total.malformed += stats.malformed;
            total.unmapped += stats.unmapped;
        }
        if let Err(e) = self.delete(url, &messages).await {
            tracing::warn!(env = %self.env, error = %e, "could not delete read events; they come back and are coalesced again");
        }
    }

    async fn delete(&self, url: &str, messages: &[aws_sdk_sqs::types::Message]) -> Result<(), AwsError> {
        let entries = messages
            .iter()
            .enumerate()
            .filter_map(|(i, m)| m.receipt_handle().map(|h| (i, h)))
            .map(|(i, h)| DeleteMessageBatchRequestEntry::builder().id(i.to_string()).receipt_handle(h).build().built("SQS.DeleteMessageBatch"))
            .collect::<Result<Vec<_>, _>>()?;
        if entries.is_empty() {
            return Ok(());
        }
        self.sqs.delete_message_batch().queue_url(url).set_entries(Some(entries)).send().await.aws("SQS.DeleteMessageBatch")?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_sqs::operation::delete_message_batch::DeleteMessageBatchOutput;
    use aws_sdk_sqs::types::Message;
    use aws_smithy_mocks::{mock, mock_client, RuleMode};
    use serde_json::json;

    /// A storm of 10,000 records in a minute, against a mocked queue (the
    /// emulator takes about 2 s per PutEvents of ten): read ten at a time,
    /// one delete per ten, and coalesced into a bounded amount of pending work.
    #[tokio::test]
    async fn a_storm_of_ten_thousand_records_is_coalesced_into_bounded_work() {
        let delete = mock!(aws_sdk_sqs::Client::delete_message_batch)
            .then_output(|| DeleteMessageBatchOutput::builder().set_successful(Some(Vec::new())).set_failed(Some(Vec::new())).build().expect("output"));
        let config =
            aws_config::SdkConfig::builder().behavior_version(aws_config::BehaviorVersion::latest()).region(aws_config::Region::new("eu-west-1")).build();
        let counter = CallCounter::default();
        let rules = crate::kinds::registry(&config, &counter, crate::kinds::read::TagReads::default()).iter().map(|k| k.rules()).collect();
        let feed = Feed {
            env: "dev".into(),
            queue: "sentry-operator-events-dev".into(),
            rules,
            region: "eu-west-1".into(),
            sqs: mock_client!(aws_sdk_sqs, RuleMode::MatchAny, [&delete]),
            sts: crate::sdk_client!(aws_sdk_sts, &config, &counter),
            cloudtrail: crate::sdk_client!(aws_sdk_cloudtrail, &config, &counter),
        };
        let me =
            Me { account: "111".into(), region: "eu-west-1".into(), arn: "arn:aws:sts::111:assumed-role/sentry-operator/a".into(), user_id: "AROA:a".into() };
        let inbox = Inbox::default();
        let record = |i: usize| {
            let (source, name, request) = match i % 4 {
                0 => ("dynamodb.amazonaws.com", "TagResource", json!({"resourceArn": format!("arn:aws:dynamodb:eu-west-1:111:table/t{}", i % 3000)})),
                1 => ("ec2.amazonaws.com", "ReplaceRoute", json!({"routeTableId": format!("rtb-{}", i % 7)})),
                2 => ("sqs.amazonaws.com", "SetQueueAttributes", json!({"queueUrl": format!("https://sqs/111/q{}", i % 18)})),
                _ => ("sqs.amazonaws.com", "SetQueueAttributes", json!({"queueUrl": format!("https://sqs/111/other-{i}")})),
            };
            let detail = json!({"eventSource": source, "eventName": name, "userIdentity": {"type": "IAMUser", "arn": "arn:aws:iam::111:user/alice"},
                                "requestParameters": request, "readOnly": false, "recipientAccountId": "111", "awsRegion": "eu-west-1"});
            json!({"detail-type": super::super::DETAIL_TYPE, "account": "111", "region": "eu-west-1", "detail": detail}).to_string()
        };
        for batch in 0..1_000 {
            let messages = (0..10).map(|i| Message::builder().body(record(batch * 10 + i)).receipt_handle(format!("r{batch}-{i}")).build()).collect();
            feed.take_in(&inbox, &me, "https://sqs/111/sentry-operator-events-dev", messages).await;
        }
        assert_eq!(delete.num_calls(), 1_000, "one delete per ten records");
        let stats = inbox.stats.lock().expect("stats").clone();
        assert_eq!((stats.received, stats.routed), (10_000, 10_000));
        let full = inbox.full.lock().expect("pending").len();
        assert!(full <= crate::events::MAX_PENDING_RESOURCES + 2, "bounded: {full}");
        assert_eq!(inbox.fast.lock().expect("pending").len(), 7, "seven route tables, however many calls");
        let focus = inbox.full.lock().expect("pending").take().expect("work");
        assert_eq!(focus.kinds.map(|k| k.len()), Some(2), "one narrowed pass over two kinds");
    }
}
