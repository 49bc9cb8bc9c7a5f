//! The judge: an outcome or a counter delta held against what the scenario expects.
//! Pure functions, so every rule of judging has a unit test that needs no root.

use crate::backend::counters::{CounterDelta, LookupError};
use crate::scenario::{CounterExpectation, Expect, Probe, Scenario, SourceSeen};
use crate::traffic::probe::{Outcome, OutcomeKind};

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
        problems.push(format!("expected dropped: no answer came back, but the request reached {node}"));
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
            let seen = outcome.source_seen.map(|s| s.ip());
            let (ok, wanted) = match want {
                SourceSeen::Address(a) => (seen == Some(*a), a.to_string()),
                SourceSeen::Node(id) => (
                    seen.is_some_and(|s| scn.ip_addresses_of(*id).contains(&s)),
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
    if let (false, Some(why)) = (problems.is_empty(), &probe.difference) {
        problems.push(format!("this producer was expected to differ from the contract here: {why}"));
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

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;
    use std::path::PathBuf;
    use std::time::Duration;

    use rstest::rstest;

    use super::*;
    use crate::scenario::{
        Attach, Bridge, Count, HostSetup, Interface, Location, Node, NodeId, Proto, RuleSelector, RuleSet, Services,
    };

    fn node(name: &str, addr: &str) -> Node {
        Node {
            name: name.into(),
            interfaces: vec![Interface {
                name: "eth0".into(),
                host_side: format!("{name}-eth0"),
                attach: Attach::Bridge(0),
                address: addr.parse().unwrap(),
                address6: vec![],
                gateway: None,
                gateway6: None,
            }],
            sysctls: vec![],
            loopback: true,
            services: Services::default(),
            container: None,
        }
    }

    fn scenario() -> Scenario {
        Scenario {
            path: PathBuf::from("t.yaml"),
            name: "t.yaml".into(),
            description: None,
            skip: None,
            ipv6: false,
            timeout: Duration::from_millis(200),
            sequential: false,
            host: HostSetup {
                forwarding: true,
                bridges: vec![Bridge {
                    name: "br0".into(),
                    address: Some("10.0.0.1/24".parse().unwrap()),
                    address6: vec![],
                }],
                uplinks: vec![],
            },
            nodes: vec![
                Node {
                    name: "host".into(),
                    interfaces: vec![],
                    sysctls: vec![],
                    loopback: true,
                    services: Services::default(),
                    container: None,
                },
                node("a", "10.0.0.2/24"),
                node("b", "10.0.0.3/24"),
            ],
            rules: RuleSet { backends: vec![], files: vec![], ipsets: vec![], live: None },
            probes: vec![],
            counters: vec![],
            networks: vec![],
            producer: None,
            contract: None,
            not_applicable: None,
        }
    }

    fn probe(expect: Expect, served_by: Option<NodeId>, source_seen: Option<SourceSeen>) -> Probe {
        Probe {
            name: "a -> b:80/tcp".into(),
            location: Location { line: 1, column: 1 },
            from: NodeId(1),
            to: Ipv4Addr::new(10, 0, 0, 3).into(),
            to_text: "b".into(),
            proto: Proto::Tcp(80),
            expect,
            served_by,
            source_seen,
            timeout: Duration::from_millis(200),
            difference: None,
        }
    }

    fn outcome(kind: OutcomeKind, by: Option<&str>, seen: Option<&str>) -> Outcome {
        Outcome {
            answered_by: by.map(str::to_string),
            source_seen: seen.map(|s| std::net::SocketAddr::new(s.parse().unwrap(), 4000)),
            ..Outcome::new(kind, "detail")
        }
    }

    #[rstest]
    #[case(Expect::Reached, OutcomeKind::Reached, true)]
    #[case(Expect::Refused, OutcomeKind::Refused, true)]
    #[case(Expect::Dropped, OutcomeKind::Dropped, true)]
    #[case(Expect::Reached, OutcomeKind::Dropped, false)]
    #[case(Expect::Dropped, OutcomeKind::Reached, false)]
    #[case(Expect::Refused, OutcomeKind::Dropped, false)]
    #[case(Expect::Dropped, OutcomeKind::Failed, false)]
    #[case(Expect::Refused, OutcomeKind::Failed, false)]
    fn outcome_kind_against_expectation(#[case] expect: Expect, #[case] kind: OutcomeKind, #[case] pass: bool) {
        let v = super::probe(&scenario(), &probe(expect, None, None), &outcome(kind, None, None));
        assert_eq!(v.pass(), pass, "{v:?}");
        if !pass {
            assert!(v.problems[0].starts_with(&format!("expected {expect}, got {kind}")));
        }
    }

    #[rstest]
    #[case(Some("b"), true)]
    #[case(Some("a"), false)]
    #[case(None, false)]
    fn served_by(#[case] answered_by: Option<&str>, #[case] pass: bool) {
        let v = super::probe(
            &scenario(),
            &probe(Expect::Reached, Some(NodeId(2)), None),
            &outcome(OutcomeKind::Reached, answered_by, None),
        );
        assert_eq!(v.pass(), pass, "{v:?}");
    }

    #[rstest]
    #[case(SourceSeen::Node(NodeId(1)), Some("10.0.0.2"), true)]
    #[case(SourceSeen::Node(NodeId(1)), Some("10.0.0.1"), false)]
    #[case(SourceSeen::Node(NodeId::HOST), Some("10.0.0.1"), true)]
    #[case(SourceSeen::Address(Ipv4Addr::new(10, 0, 0, 1).into()), Some("10.0.0.1"), true)]
    #[case(SourceSeen::Address(Ipv4Addr::new(10, 0, 0, 1).into()), Some("10.0.0.2"), false)]
    #[case(SourceSeen::Address(Ipv4Addr::new(10, 0, 0, 1).into()), None, false)]
    fn source_seen(#[case] want: SourceSeen, #[case] seen: Option<&str>, #[case] pass: bool) {
        let v = super::probe(
            &scenario(),
            &probe(Expect::Reached, None, Some(want)),
            &outcome(OutcomeKind::Reached, Some("b"), seen),
        );
        assert_eq!(v.pass(), pass, "{v:?}");
        if let (false, Some(seen)) = (pass, seen) {
            assert!(v.problems[0].ends_with(&format!("it saw {seen}")), "{v:?}");
        }
    }

    #[test]
    fn a_request_that_arrived_is_not_dropped() {
        let mut out = outcome(OutcomeKind::Dropped, None, None);
        out.delivered_to = Some("b".into());
        let v = super::probe(&scenario(), &probe(Expect::Dropped, None, None), &out);
        assert!(!v.pass());
        assert!(v.problems[0].contains("the request reached b"), "{v:?}");
    }

    fn expectation(packets: Count, bytes: Option<Count>) -> CounterExpectation {
        CounterExpectation {
            location: Location::default(),
            family: None,
            table: "filter".into(),
            chain: "FORWARD".into(),
            rule: RuleSelector::Position(1),
            packets,
            bytes,
        }
    }

    #[rstest]
    #[case(Count::Exactly(3), None, 3, 180, true)]
    #[case(Count::Exactly(3), None, 4, 180, false)]
    #[case(Count::AtLeast(1), None, 4, 180, true)]
    #[case(Count::AtLeast(5), None, 4, 180, false)]
    #[case(Count::Exactly(3), Some(Count::Exactly(180)), 3, 180, true)]
    #[case(Count::Exactly(3), Some(Count::AtLeast(200)), 3, 180, false)]
    fn counters(
        #[case] packets: Count,
        #[case] bytes: Option<Count>,
        #[case] got_packets: u64,
        #[case] got_bytes: u64,
        #[case] pass: bool,
    ) {
        let delta = Ok(CounterDelta { position: 1, text: "-j ACCEPT".into(), packets: got_packets, bytes: got_bytes });
        assert_eq!(counter(&expectation(packets, bytes), &delta).pass(), pass);
    }

    #[test]
    fn a_missing_rule_fails_with_the_lookup_message() {
        let err = LookupError::NoRule {
            table: "filter".into(),
            chain: "FORWARD".into(),
            selector: "rule #9".into(),
            candidates: vec!["1: -j ACCEPT".into()],
        };
        let v = counter(&expectation(Count::Exactly(0), None), &Err(err.clone()));
        assert_eq!(v.problems, vec![err.to_string()]);
    }
}
