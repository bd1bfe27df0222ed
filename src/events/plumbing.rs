//! The operator's own event plumbing in an environment's account: an
//! EventBridge rule on the default bus matching CloudTrail's records of write
//! calls to the estate's services, sending them to an encrypted SQS queue
//! whose policy lets only that rule send, with a dead-letter queue (for the
//! queue's poison messages and for what EventBridge fails to deliver). They
//! are resources of the spec (logical ids under [`OPERATOR_ID_PREFIX`](crate::spec::OPERATOR_ID_PREFIX)), so the
//! engine creates, tags, repairs and reports them like any other; a pass
//! without `--events` leaves them alone.

use std::collections::BTreeSet;

use serde_json::json;

use crate::engine::Rules;
use crate::spec::messaging::{DeadLetter, Messaging, Queue};
use crate::spec::model::DeletionPolicy;
use crate::spec::{EnvSpec, EventPlumbing, EVENT_DEAD_LETTER_ID, EVENT_QUEUE_ID};

use super::DETAIL_TYPE;

/// The name of `env`'s event rule and queue.
pub fn name(env: &str) -> String {
    format!("sentry-operator-events-{env}")
}

/// The event pattern: CloudTrail's records of write calls to `sources` (the
/// `eventSource`s the kinds map).
pub fn pattern(sources: &BTreeSet<&str>) -> String {
    json!({
        "detail-type": [DETAIL_TYPE],
        "detail": { "eventSource": sources.iter().collect::<Vec<_>>(), "readOnly": [false] }
    })
    .to_string()
}

/// `env` with its event plumbing: the rule, and the queue and dead-letter
/// queue added to its queues, for the `sources` the `rules` of the kinds map.
pub fn install(env: &mut EnvSpec, rules: &[Rules]) {
    let sources: BTreeSet<&str> = rules.iter().map(|r| r.events.source).filter(|s| !s.is_empty()).collect();
    let name = name(&env.env);
    let dead_letter = format!("{name}-dlq");
    // `${region}` and `${account}` are the pass's (the SQS kind substitutes them).
    let rule_arn = format!("arn:aws:events:${{region}}:${{account}}:rule/{name}");
    // EventBridge may send to both queues, and only on behalf of this rule.
    let policy = |queue: &str| {
        json!({
            "Version": "2012-10-17",
            "Statement": [{
                "Sid": "EventBridgeSends",
                "Effect": "Allow",
                "Principal": { "Service": "events.amazonaws.com" },
                "Action": "sqs:SendMessage",
                "Resource": format!("arn:aws:sqs:${{region}}:${{account}}:{queue}"),
                "Condition": { "ArnEquals": { "aws:SourceArn": rule_arn } }
            }]
        })
        .to_string()
    };
    let queue = |physical: &str, retention: u32, dead_letter: Option<DeadLetter>| Queue {
        name: Some(physical.to_string()),
        message_retention_seconds: Some(retention),
        visibility_timeout_seconds: Some(60),
        receive_wait_time_seconds: Some(20),
        dead_letter,
        deletion_policy: DeletionPolicy::Delete,
        access_policy: Some(policy(physical)),
        managed_encryption: true,
        ..Queue::default()
    };
    let messaging = env.spec.messaging.get_or_insert_with(Messaging::default);
    messaging.queues.insert(EVENT_DEAD_LETTER_ID.into(), queue(&dead_letter, 14 * 24 * 3600, None));
    messaging.queues.insert(EVENT_QUEUE_ID.into(), queue(&name, 24 * 3600, Some(DeadLetter { queue: EVENT_DEAD_LETTER_ID.into(), max_receive_count: 5 })));
    env.events = Some(EventPlumbing { rule: name.clone(), pattern: pattern(&sources), queue: name, dead_letter_queue: dead_letter });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pattern_matches_write_calls_of_the_mapped_services() {
        let sources: BTreeSet<&str> = ["sqs.amazonaws.com", "ec2.amazonaws.com"].into_iter().collect();
        let p: serde_json::Value = serde_json::from_str(&pattern(&sources)).expect("json");
        assert_eq!(p["detail-type"][0], DETAIL_TYPE);
        assert_eq!(p["detail"]["eventSource"], json!(["ec2.amazonaws.com", "sqs.amazonaws.com"]));
        assert_eq!(p["detail"]["readOnly"], json!([false]));
    }
}
