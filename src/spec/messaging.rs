//! The `messaging` section: SQS queues, their attributes and dead-letter queues; their
//! types and their checks.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::model::*;
use super::validate::Checker;

/// SQS queues.
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(default, deny_unknown_fields, rename_all = "camelCase")]
pub struct Messaging {
    /// Attribute values for queues that do not set their own.
    pub queue_defaults: QueueAttributes,
    /// Queues by logical id.
    pub queues: BTreeMap<String, Queue>,
}

/// Tunable SQS attributes; unset ones fall back to `queueDefaults`, then to AWS defaults.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct QueueAttributes {
    /// VisibilityTimeout, 0..=43200 s.
    pub visibility_timeout_seconds: Option<u32>,
    /// MessageRetentionPeriod, 60..=1209600 s.
    pub message_retention_seconds: Option<u32>,
    /// DelaySeconds, 0..=900.
    pub delay_seconds: Option<u32>,
    /// ReceiveMessageWaitTimeSeconds, 0..=20.
    pub receive_wait_time_seconds: Option<u32>,
    /// MaximumMessageSize, 1024..=1048576 bytes.
    pub max_message_size_bytes: Option<u32>,
}

/// An SQS queue.
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(default, deny_unknown_fields, rename_all = "camelCase")]
pub struct Queue {
    /// Physical name; default `sentry-<id>-<env>` (plus `.fifo` for FIFO queues).
    pub name: Option<String>,
    /// FIFO queue (the name must end in `.fifo`).
    pub fifo: bool,
    /// FIFO only: deduplicate by content hash.
    pub content_based_deduplication: Option<bool>,
    /// VisibilityTimeout, 0..=43200 s.
    pub visibility_timeout_seconds: Option<u32>,
    /// MessageRetentionPeriod, 60..=1209600 s.
    pub message_retention_seconds: Option<u32>,
    /// DelaySeconds, 0..=900.
    pub delay_seconds: Option<u32>,
    /// ReceiveMessageWaitTimeSeconds, 0..=20.
    pub receive_wait_time_seconds: Option<u32>,
    /// MaximumMessageSize, 1024..=1048576 bytes.
    pub max_message_size_bytes: Option<u32>,
    /// Dead-letter queue and redrive policy.
    pub dead_letter: Option<DeadLetter>,
    /// Extra tags.
    pub tags: Tags,
    /// What happens once removed from the spec.
    pub deletion_policy: DeletionPolicy,
    /// Manage a queue that exists without ownership tags.
    pub adopt: bool,
    /// The queue's access policy (JSON, `${account}` and `${region}` those of
    /// the pass); set by the operator for its own event queues, never from a file.
    #[serde(skip)]
    pub access_policy: Option<String>,
    /// SQS-managed server-side encryption; set by the operator for its own
    /// event queues, never from a file.
    #[serde(skip)]
    pub managed_encryption: bool,
}

impl Queue {
    /// The physical name: `name` (with `${env}`), else `sentry-<id>-<env>` plus `.fifo` for FIFO queues.
    pub fn physical_name(&self, id: &str, env: &str) -> String {
        match &self.name {
            Some(name) => name.replace("${env}", env),
            None if self.fifo => format!("sentry-{id}-{env}.fifo"),
            None => format!("sentry-{id}-{env}"),
        }
    }

    /// The queue's own attribute settings.
    pub fn attributes(&self) -> QueueAttributes {
        QueueAttributes {
            visibility_timeout_seconds: self.visibility_timeout_seconds,
            message_retention_seconds: self.message_retention_seconds,
            delay_seconds: self.delay_seconds,
            receive_wait_time_seconds: self.receive_wait_time_seconds,
            max_message_size_bytes: self.max_message_size_bytes,
        }
    }
}

impl QueueAttributes {
    /// Each attribute from `self`, else from `defaults`.
    pub fn or(&self, defaults: &QueueAttributes) -> QueueAttributes {
        QueueAttributes {
            visibility_timeout_seconds: self.visibility_timeout_seconds.or(defaults.visibility_timeout_seconds),
            message_retention_seconds: self.message_retention_seconds.or(defaults.message_retention_seconds),
            delay_seconds: self.delay_seconds.or(defaults.delay_seconds),
            receive_wait_time_seconds: self.receive_wait_time_seconds.or(defaults.receive_wait_time_seconds),
            max_message_size_bytes: self.max_message_size_bytes.or(defaults.max_message_size_bytes),
        }
    }
}

/// Redrive to a dead-letter queue.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct DeadLetter {
    /// The dead-letter queue (logical id of another queue).
    pub queue: String,
    /// Receives before a message moves to the DLQ, 1..=1000.
    pub max_receive_count: u32,
}

impl Checker {
    pub(super) fn queue_attributes(&mut self, base: &[&str], a: &QueueAttributes) {
        let at = |field: &'static str| -> Vec<&str> {
            let mut p = base.to_vec();
            p.push(field);
            p
        };
        self.range(&at("visibilityTimeoutSeconds"), a.visibility_timeout_seconds, 0, 43_200);
        self.range(&at("messageRetentionSeconds"), a.message_retention_seconds, 60, 1_209_600);
        self.range(&at("delaySeconds"), a.delay_seconds, 0, 900);
        self.range(&at("receiveWaitTimeSeconds"), a.receive_wait_time_seconds, 0, 20);
        self.range(&at("maxMessageSizeBytes"), a.max_message_size_bytes, 1024, 1_048_576);
    }

    pub(super) fn messaging(&mut self, env: &str, m: &Messaging) {
        self.queue_attributes(&["messaging", "queueDefaults"], &m.queue_defaults);
        let mut names = Vec::new();
        for (id, q) in &m.queues {
            if id.starts_with(super::OPERATOR_ID_PREFIX) {
                self.err(&["messaging", "queues", id], format!("ids starting with {:?} are the operator's own (its event queues)", super::OPERATOR_ID_PREFIX));
            }
            self.tags(&["messaging", "queues", id], &q.tags);
            let base = ["messaging", "queues", id.as_str()];
            self.queue_attributes(&base, &q.attributes());
            let name = q.physical_name(id, env);
            let stem = name.strip_suffix(".fifo").unwrap_or(&name);
            let name_path = ["messaging", "queues", id.as_str(), "name"];
            if name.len() > 80 {
                self.err(&name_path, format!("queue name {name:?} is longer than 80 characters"));
            }
            if stem.is_empty() || !stem.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
                self.err(&name_path, format!("queue name {name:?} may only hold letters, digits, '-' and '_' (plus a final .fifo)"));
            }
            match (q.fifo, name.ends_with(".fifo")) {
                (true, false) => self.err(&name_path, format!("FIFO queue name {name:?} must end in \".fifo\"")),
                (false, true) => self.err(&name_path, format!("queue name {name:?} ends in \".fifo\" but the queue is not `fifo: true`")),
                _ => {}
            }
            if q.content_based_deduplication.is_some() && !q.fifo {
                self.err(&["messaging", "queues", id, "contentBasedDeduplication"], "content-based deduplication applies only to FIFO queues");
            }
            if let Some(dl) = &q.dead_letter {
                let p = ["messaging", "queues", id.as_str(), "deadLetter"];
                if !(1..=1000).contains(&dl.max_receive_count) {
                    self.err(&["messaging", "queues", id, "deadLetter", "maxReceiveCount"], format!("{} is out of range 1..=1000", dl.max_receive_count));
                }
                match m.queues.get(&dl.queue) {
                    None => self.reference(&["messaging", "queues", id, "deadLetter", "queue"], &dl.queue, m.queues.keys().map(String::as_str), "queue"),
                    Some(_) if dl.queue == *id => self.err(&["messaging", "queues", id, "deadLetter", "queue"], "a queue cannot be its own dead-letter queue"),
                    Some(target) if target.fifo != q.fifo => {
                        let (a, b) = if q.fifo { ("FIFO", "standard") } else { ("standard", "FIFO") };
                        self.err(
                            &["messaging", "queues", id, "deadLetter", "queue"],
                            format!("the dead-letter queue of a {a} queue must be {a} too; {:?} is {b}", dl.queue),
                        );
                    }
                    Some(_) => {
                        if let Some(cycle) = redrive_cycle(m, id) {
                            self.err(&p, format!("dead-letter queues form a cycle: {}", cycle.join(" -> ")));
                        }
                    }
                }
            }
            names.push((id.as_str(), name));
        }
        self.unique_names(&["messaging", "queues"], names);
    }
}

/// The redrive chain starting at `start`, if it loops back.
fn redrive_cycle(m: &Messaging, start: &str) -> Option<Vec<String>> {
    let mut chain = vec![start.to_string()];
    let mut current = start;
    while let Some(next) = m.queues.get(current).and_then(|q| q.dead_letter.as_ref()).map(|d| d.queue.as_str()) {
        if !m.queues.contains_key(next) {
            return None;
        }
        chain.push(next.to_string());
        if next == start {
            return Some(chain);
        }
        if chain.len() > m.queues.len() + 1 {
            return None;
        }
        current = next;
    }
    None
}
