//! Event-driven repair (`run --events`). CloudTrail records every write call
//! made to the account; an EventBridge rule the operator owns sends those of
//! the estate's services to an SQS queue it owns ([`plumbing`]); the daemon
//! long-polls the queue ([`feed`]), turns each record into the resources it
//! touched (each kind's [`EventMatch`](crate::engine::focus::EventMatch)),
//! coalesces them ([`Pending`]) and runs a narrowed pass over just those,
//! carrying who made the change into the report and the alerts. Calls the
//! operator made itself are recognised by their principal and skipped.
//!
//! Events are best effort (CloudTrail may be off, a rule deleted, an event
//! late): the periodic full pass stays.

pub mod feed;
pub mod plumbing;

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

use crate::engine::focus::{touched, ApiCall, Attribution, Focus, Touched};
use crate::engine::{Rules, Scope};

/// The `detail-type` EventBridge gives CloudTrail's records of API calls.
pub const DETAIL_TYPE: &str = "AWS API Call via CloudTrail";

/// One CloudTrail record of an API call, read from the queue.
#[derive(Clone, Debug, PartialEq)]
pub struct Announcement {
    /// The call.
    pub call: ApiCall,
    /// Who made it, when, from where.
    pub attribution: Attribution,
    /// `userIdentity.principalId`.
    pub principal_id: String,
    /// The account it was made in (the envelope's `account`, else `recipientAccountId`).
    pub account: String,
    /// The region (the envelope's `region`, else `awsRegion`).
    pub region: String,
    /// Whether CloudTrail marks it read-only.
    pub read_only: bool,
}

/// Why a message is not a CloudTrail record of an API call.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum EventError {
    /// The body is not JSON.
    #[error("not JSON: {0}")]
    NotJson(String),
    /// JSON, but not the EventBridge envelope of a CloudTrail API call.
    #[error("not a CloudTrail API call event: {0}")]
    NotAnApiCall(String),
}

/// Reads one message body: the EventBridge envelope around a CloudTrail record.
pub fn parse(body: &str) -> Result<Announcement, EventError> {
    let v: Value = serde_json::from_str(body).map_err(|e| EventError::NotJson(e.to_string()))?;
    let text = |v: &Value, key: &str| v.get(key).and_then(Value::as_str).unwrap_or_default().to_string();
    let kind = text(&v, "detail-type");
    if kind != DETAIL_TYPE {
        return Err(EventError::NotAnApiCall(format!("detail-type {kind:?}")));
    }
    let detail = v.get("detail").filter(|d| d.is_object()).ok_or_else(|| EventError::NotAnApiCall("no detail".into()))?;
    let (source, name) = (text(detail, "eventSource"), text(detail, "eventName"));
    if source.is_empty() || name.is_empty() {
        return Err(EventError::NotAnApiCall("no eventSource or eventName".into()));
    }
    let identity = detail.get("userIdentity").cloned().unwrap_or(Value::Null);
    let first = |values: [String; 3]| values.into_iter().find(|s| !s.is_empty()).unwrap_or_default();
    Ok(Announcement {
        attribution: Attribution {
            actor: first([text(&identity, "arn"), text(&identity, "invokedBy"), text(&identity, "principalId")]),
            principal_type: text(&identity, "type"),
            call: name.clone(),
            at: first([text(detail, "eventTime"), text(&v, "time"), String::new()]),
            source_ip: text(detail, "sourceIPAddress"),
        },
        principal_id: text(&identity, "principalId"),
        account: first([text(&v, "account"), text(detail, "recipientAccountId"), text(&identity, "accountId")]),
        region: first([text(&v, "region"), text(detail, "awsRegion"), String::new()]),
        read_only: detail.get("readOnly").and_then(Value::as_bool).unwrap_or(false),
        call: ApiCall {
            source,
            name,
            request: detail.get("requestParameters").cloned().unwrap_or(Value::Null),
            response: detail.get("responseElements").cloned().unwrap_or(Value::Null),
        },
    })
}

/// The principal the operator runs as in an environment's account, and where.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Me {
    /// The account id.
    pub account: String,
    /// The region.
    pub region: String,
    /// STS GetCallerIdentity's ARN (`arn:aws:sts::1:assumed-role/sentry-operator/session`).
    pub arn: String,
    /// STS GetCallerIdentity's UserId (CloudTrail's `principalId`).
    pub user_id: String,
}

/// What to do with an announcement.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Someone else changed the estate: repair what the call touched.
    Repair,
    /// The operator's own call (this replica's or another's, same role).
    Own,
    /// Made in another account.
    OtherAccount(String),
    /// Made in another region.
    OtherRegion(String),
    /// A read: nothing changed.
    ReadOnly,
}

impl Me {
    /// Judges an announcement.
    pub fn judge(&self, a: &Announcement) -> Verdict {
        if !a.account.is_empty() && a.account != self.account {
            return Verdict::OtherAccount(a.account.clone());
        }
        if !a.region.is_empty() && a.region != self.region && !is_global(&a.call.source) {
            return Verdict::OtherRegion(a.region.clone());
        }
        if a.read_only {
            return Verdict::ReadOnly;
        }
        let same_role = role_of(&a.attribution.actor).is_some_and(|r| Some(r) == role_of(&self.arn));
        if a.attribution.actor == self.arn || (!a.principal_id.is_empty() && a.principal_id == self.user_id) || same_role {
            return Verdict::Own;
        }
        Verdict::Repair
    }
}

/// Services whose calls CloudTrail records in us-east-1 whatever the region (IAM).
fn is_global(source: &str) -> bool {
    source == "iam.amazonaws.com"
}

/// `account/role` of an assumed-role session ARN (`arn:aws:sts::1:assumed-role/role/session`).
fn role_of(arn: &str) -> Option<String> {
    let (head, path) = arn.split_once(":assumed-role/")?;
    let account = head.rsplit(':').next()?;
    let role = path.split('/').next()?;
    Some(format!("{account}/{role}"))
}

/// The most resources kept pending, all kinds together: beyond, a kind is
/// covered whole (its resource list dropped), so memory stays bounded
/// whatever the storm.
pub const MAX_PENDING_RESOURCES: usize = 1_000;

/// What events named since the last narrowed pass, coalesced per resource.
#[derive(Debug, Default)]
pub struct Pending {
    kinds: BTreeMap<&'static str, PendingKind>,
    resources: usize,
    /// Every kind (the event queue was lost: events may have been missed).
    everything: bool,
}

#[derive(Debug, Default)]
struct PendingKind {
    /// Covered whole: a call did not say which resource, or too many were named.
    whole: bool,
    resources: BTreeMap<String, Attribution>,
    /// The latest call about the kind as a whole.
    latest: Option<Attribution>,
}

impl Pending {
    /// Adds what a call touched of `kind`.
    pub fn add(&mut self, kind: &'static str, touched: Touched, cause: &Attribution) {
        let entry = self.kinds.entry(kind).or_default();
        match touched {
            Touched::Nothing => {}
            Touched::Kind => {
                // Only a call about the kind as a whole is every resource's possible cause.
                entry.latest = Some(cause.clone());
                self.resources -= entry.resources.len();
                entry.resources.clear();
                entry.whole = true;
            }
            Touched::Resources(_) if entry.whole => {}
            Touched::Resources(ids) => {
                for id in ids {
                    if !entry.resources.contains_key(&id) && self.resources >= MAX_PENDING_RESOURCES {
                        self.resources -= entry.resources.len();
                        entry.resources.clear();
                        entry.whole = true;
                        return;
                    }
                    if entry.resources.insert(id, cause.clone()).is_none() {
                        self.resources += 1;
                    }
                }
            }
        }
    }

    /// Asks for a pass over every kind.
    pub fn everything(&mut self) {
        self.everything = true;
    }

    /// Whether nothing is pending.
    pub fn is_empty(&self) -> bool {
        self.kinds.is_empty() && !self.everything
    }

    /// How many resources are pending (bounded by [`MAX_PENDING_RESOURCES`]).
    pub fn len(&self) -> usize {
        self.resources + self.kinds.values().filter(|k| k.whole).count()
    }

    /// Takes what is pending as the focus of the next pass (`None`: nothing).
    pub fn take(&mut self) -> Option<Focus> {
        if self.is_empty() {
            return None;
        }
        let pending = std::mem::take(self);
        let mut focus = Focus::default();
        if !pending.everything {
            focus.kinds = Some(pending.kinds.keys().copied().collect());
        }
        for (kind, p) in pending.kinds {
            let mut causes: BTreeMap<String, Attribution> = p.resources.iter().map(|(id, a)| (id.clone(), a.clone())).collect();
            if let Some(latest) = p.latest {
                causes.insert(String::new(), latest);
            }
            focus.causes.insert(kind, causes);
            if !p.whole && !pending.everything {
                focus.resources.insert(kind, p.resources.into_keys().collect::<BTreeSet<String>>());
            }
        }
        Some(focus)
    }
}

/// Where a kind's repairs go: the fast loop (the whitelist's kinds) or the full loop.
pub fn is_fast(rules: &Rules) -> bool {
    rules.scope <= Scope::Whitelist
}

/// Adds what `call` touched to the pending work of the loop that writes each kind; whether it touched anything.
pub fn route(rules: &[Rules], a: &Announcement, fast: &mut Pending, full: &mut Pending) -> bool {
    let mut any = false;
    for r in rules {
        let t = touched(&r.events, &a.call);
        if t == Touched::Nothing {
            continue;
        }
        any = true;
        let pending = if is_fast(r) { &mut *fast } else { &mut *full };
        pending.add(r.kind, t, &a.attribution);
    }
    any
}

#[cfg(test)]
mod tests;
