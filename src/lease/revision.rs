//! Spec revisions: what a writer applies, and whether it may. A revision is
//! the content hash of an environment's merged spec plus an optional label
//! (a git SHA). The lease table keeps, per environment, the revision last
//! applied with a generation that only grows, and the revisions it
//! superseded: a writer holding one of those is stale and does not write.

use std::fmt;

use sha2::{Digest, Sha256};

use crate::spec::EnvSpec;

/// The longest revision label.
pub const MAX_LABEL_CHARS: usize = 128;

/// One revision of an environment's spec.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Revision {
    /// The first 16 hex digits of the SHA-256 of the merged spec (canonical JSON).
    pub hash: String,
    /// Where it comes from, e.g. a git SHA (`--revision` or a `REVISION` file).
    pub label: Option<String>,
}

impl Revision {
    /// The revision of `env`'s merged spec, labelled `label`.
    pub fn of(env: &EnvSpec, label: Option<&str>) -> Result<Revision, serde_json::Error> {
        // Spec holds structs and ordered maps only, so its JSON is canonical.
        let json = serde_json::to_vec(&(&env.env, &env.spec))?;
        let digest = Sha256::digest(&json);
        let hash = digest.iter().take(8).map(|b| format!("{b:02x}")).collect();
        Ok(Revision { hash, label: label.map(str::to_string) })
    }
}

impl fmt::Display for Revision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.label {
            Some(label) => write!(f, "{} ({label})", self.hash),
            None => f.write_str(&self.hash),
        }
    }
}

/// Checks a revision label: 1 to [`MAX_LABEL_CHARS`] characters, none of
/// them a control character or white space (it is logged and stored).
pub fn check_label(label: &str) -> Result<(), String> {
    if label.is_empty() || label.chars().count() > MAX_LABEL_CHARS {
        return Err(format!("a revision label has 1 to {MAX_LABEL_CHARS} characters; got {}", label.chars().count()));
    }
    if let Some(c) = label.chars().find(|c| c.is_control() || c.is_whitespace()) {
        return Err(format!("a revision label may not hold control characters or white space; found {:?}", c));
    }
    Ok(())
}

/// A revision the lease table recorded: applied at `generation`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Applied {
    /// The generation: 1 for the first revision applied, one more for each new one.
    pub generation: u64,
    /// The revision.
    pub revision: Revision,
    /// When it was first applied (ms since the epoch).
    pub at_ms: i64,
    /// The writer that applied it first.
    pub by: String,
}

/// Whether a writer may apply its revision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// It is the revision last applied: write.
    Current,
    /// The table has not seen it: record it with the next generation, then write.
    New,
    /// The table has seen it superseded: do not write.
    Stale {
        /// The revision applied since.
        current: Box<Applied>,
    },
}

/// Judges `mine` against the revision last applied and the ones it superseded
/// (`history`, the older generations). Same content is the same revision
/// whatever the labels. Content seen superseded is stale, unless it comes
/// with a label never seen with that content (a revert committed anew:
/// applied as a new generation); without a label a revert needs `--force`.
pub fn judge(mine: &Revision, last: Option<&Applied>, history: &[Applied]) -> Verdict {
    let Some(last) = last else { return Verdict::New };
    if mine.hash == last.revision.hash {
        return Verdict::Current;
    }
    let superseded: Vec<&Applied> = history.iter().filter(|a| a.revision.hash == mine.hash && a.generation < last.generation).collect();
    let seen_before = !superseded.is_empty() && (mine.label.is_none() || superseded.iter().any(|a| a.revision.label == mine.label));
    if seen_before {
        Verdict::Stale { current: Box::new(last.clone()) }
    } else {
        Verdict::New
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn revision(hash: &str, label: Option<&str>) -> Revision {
        Revision { hash: hash.into(), label: label.map(str::to_string) }
    }

    fn applied(generation: u64, hash: &str, label: Option<&str>) -> Applied {
        Applied { generation, revision: revision(hash, label), at_ms: 0, by: "ci".into() }
    }

    #[test]
    fn the_first_revision_is_new_and_the_applied_one_is_current() {
        assert_eq!(judge(&revision("a", None), None, &[]), Verdict::New);
        let last = applied(3, "a", Some("c1"));
        assert_eq!(judge(&revision("a", None), Some(&last), &[]), Verdict::Current);
        assert_eq!(judge(&revision("a", Some("other")), Some(&last), &[]), Verdict::Current, "same content, whatever the label");
    }

    #[test]
    fn a_superseded_revision_is_stale_and_an_unseen_one_is_new() {
        // A was applied at 1, B superseded it at 2.
        let history = [applied(1, "a", Some("c1"))];
        let last = applied(2, "b", Some("c2"));
        let stale = judge(&revision("a", Some("c1")), Some(&last), &history);
        assert_eq!(stale, Verdict::Stale { current: Box::new(last.clone()) });
        assert_eq!(judge(&revision("a", None), Some(&last), &history), stale, "unlabelled old content is stale too");
        assert_eq!(judge(&revision("c", None), Some(&last), &history), Verdict::New, "content never seen is newer");
        // A revert committed anew carries a label never seen with that content.
        assert_eq!(judge(&revision("a", Some("c3")), Some(&last), &history), Verdict::New);
    }

    #[test]
    fn hashes_follow_content_and_labels_are_checked() {
        let spec = crate::spec::EnvSpec::new("dev", Default::default());
        let other = crate::spec::EnvSpec::new("prod", Default::default());
        let hash = |env: &EnvSpec, label: Option<&str>| Revision::of(env, label).map(|r| r.hash).unwrap_or_default();
        assert_eq!(hash(&spec, None), hash(&spec, Some("x")));
        assert_ne!(hash(&spec, None), hash(&other, None));
        assert_eq!(hash(&spec, None).len(), 16);
        assert!(check_label("4f2a9c1").is_ok());
        assert!(check_label("bad\u{1b}[31m").is_err());
        assert!(check_label("two words").is_err());
        assert!(check_label("").is_err());
        assert!(check_label(&"x".repeat(129)).is_err());
    }
}
