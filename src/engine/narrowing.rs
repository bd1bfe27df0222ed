//! How a pass is narrowed: the kinds it writes (the daemon's loops split
//! them), the resources it covers (an event's), and the handles earlier
//! passes learnt.

use super::focus::Focus;
use super::references::KnownHandles;
use super::Scope;

/// Which kinds a pass writes; the others it observes (their resources still
/// resolve references) and reports as [`super::plan::Outcome::Deferred`], left to the pass
/// that writes them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Writes {
    /// Every kind.
    #[default]
    All,
    /// The kinds of a wider scope than this (the daemon's full pass leaves the
    /// narrower ones to its fast loop).
    Above(Scope),
    /// The kinds of this scope and narrower (the fast loop).
    UpTo(Scope),
}

impl Writes {
    /// Whether the pass writes the kinds of `scope`.
    pub fn covers(self, scope: Scope) -> bool {
        match self {
            Writes::All => true,
            Writes::Above(s) => scope > s,
            Writes::UpTo(s) => scope <= s,
        }
    }
}

/// How one pass is narrowed: the kinds it writes, the resources it covers
/// (and who changed them), the handles earlier passes learnt.
#[derive(Clone, Debug, Default)]
pub struct Narrowing {
    /// The kinds the pass writes.
    pub writes: Writes,
    /// The kinds and resources the pass covers; the causes of their drift.
    pub focus: Focus,
    /// The handles earlier passes learnt, seeding this one's (and updated by
    /// it), so that a pass over some kinds resolves references to the others.
    pub known: Option<KnownHandles>,
}

impl Narrowing {
    /// A pass over every kind, writing those `writes` covers.
    pub fn writing(writes: Writes) -> Self {
        Narrowing { writes, ..Narrowing::default() }
    }
}
