//! The judge: an outcome or a counter delta held against what the scenario expects.
//! Pure functions, so every rule of judging has a unit test that needs no root.

use crate::counters::{CounterDelta, LookupError};
use crate::probe::{Outcome, OutcomeKind};
use crate::scenario::{CounterExpectation, Expect, Probe, Scenario, SourceSeen};

/// Whether an expectation held, and if not, every way in which it did not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    pub problems: Vec<String>,
}

impl Verdict {
    pub fn pass(&self) -> bool {
        self.problems.is_empty()
    }
}

fn kind_matches(expect: Expect, kind: OutcomeKind) -> bool {
    matches!(
        (expect, kind),
        (Expect::Reached, OutcomeKind::Reached)
            | (Expect::Refused, OutcomeKind::Refused)
            | (Expect::Dropped, OutcomeKind::Dropped)
    )
}

pub fn probe(scn: &Scenario, probe: &Probe, outcome: &Outcome) -> Verdict {
    let mut problems = Vec::new();
    if !kind_matches(probe.expect, outcome.kind) {
        problems.push(format!("expected {}, got {}: {}", probe.expect, outcome.kind, outcome.detail));
    } else if let (Expect::Dropped, Some(node)) = (probe.expect, &outcome.delivered_to) {
        // No answer came back, but the request did arrive: the filter let it through
        // and only the answer was lost on the way back.
        problems.push(format!(
            "expected dropped: no answer came back, but the request reached the service in {node}"
        ));
    } else if outcome.kind == OutcomeKind::Reached {
        if let Some(want) = probe.served_by {
            let want = &scn.node(want).name;
            match &outcome.answered_by {
                Some(got) if got == want => {}
                Some(got) => problems.push(format!("expected an answer from {want}, got one from {got}")),
                None => problems.push(format!("expected an answer from {want}: {}", outcome.detail)),
            }
        }
        if let Some(want) = &probe.source_seen {
            let seen = outcome.source_seen.map(|s| *s.ip());
            let (ok, wanted) = match want {
                SourceSeen::Address(a) => (seen == Some(*a), a.to_string()),
                SourceSeen::Node(id) => (
                    seen.is_some_and(|s| scn.addresses_of(*id).contains(&s)),
                    format!("an address of {}", scn.node(*id).name),
                ),
            };
            if !ok {
                problems.push(match seen {
                    Some(seen) => format!("expected the server to see {wanted} as source, it saw {seen}"),
                    None => format!("expected the server to see {wanted} as source: {}", outcome.detail),
                });
            }
        }
    }
    Verdict { problems }
}

pub fn counter(exp: &CounterExpectation, delta: &Result<CounterDelta, LookupError>) -> Verdict {
    let mut problems = Vec::new();
    match delta {
        Err(e) => problems.push(e.to_string()),
        Ok(d) => {
            if !exp.packets.accepts(d.packets) {
                problems.push(format!("expected {} packets, counted {}", exp.packets, d.packets));
            }
            if let Some(bytes) = exp.bytes {
                if !bytes.accepts(d.bytes) {
                    problems.push(format!("expected {bytes} bytes, counted {}", d.bytes));
                }
            }
        }
    }
    Verdict { problems }
}
