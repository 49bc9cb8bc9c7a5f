//! Why a scenario run could not be carried out, by the stage that stopped it. A run
//! with a [`RunError`] has no verdict: its status is `error`, and the message is the
//! stage's own words.

use std::path::PathBuf;

use crate::producer::ProducerError;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RunError {
    /// The lab's namespaces, links, addresses or routes could not be made.
    #[error("{0}")]
    Lab(String),
    /// The back end's tool refused a rule file of the scenario.
    #[error("{message}")]
    RulesRejected { file: PathBuf, message: String },
    /// The scenario asked its producer for something it cannot do.
    #[error("{0}")]
    ProducerInput(String),
    /// The producer's program, or its setup in the lab, failed.
    #[error("{0}")]
    Producer(String),
    /// A service could not listen.
    #[error("{0}")]
    Services(String),
    /// The arrival sockets could not be opened.
    #[error("watching for arrivals: {0}")]
    Arrivals(String),
    /// The rule set could not be dumped or read for its counters.
    #[error("{0}")]
    Counters(String),
    /// The run's task ended without a report (a panic, or the runtime went away).
    #[error("the run ended abnormally: {0}")]
    Abnormal(String),
}

impl RunError {
    /// The stage that stopped the run, for machine-readable reports.
    pub fn stage(&self) -> &'static str {
        match self {
            RunError::Lab(_) => "lab",
            RunError::RulesRejected { .. } => "rules",
            RunError::ProducerInput(_) | RunError::Producer(_) => "producer",
            RunError::Services(_) | RunError::Arrivals(_) => "traffic",
            RunError::Counters(_) => "counters",
            RunError::Abnormal(_) => "run",
        }
    }
}

impl From<ProducerError> for RunError {
    fn from(e: ProducerError) -> RunError {
        match e {
            ProducerError::Input(why) => RunError::ProducerInput(why),
            ProducerError::Failed(why) => RunError::Producer(why),
            ProducerError::Rejected { file, message } => RunError::RulesRejected { file, message },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refused_rule_file_stays_typed_from_the_producer_to_the_run() {
        let refused =
            ProducerError::Rejected { file: "rules/a.rules".into(), message: "loading rules/a.rules: line 3".into() };
        let e = RunError::from(refused);
        assert_eq!(
            e,
            RunError::RulesRejected { file: "rules/a.rules".into(), message: "loading rules/a.rules: line 3".into() }
        );
        assert_eq!((e.stage(), e.to_string().as_str()), ("rules", "loading rules/a.rules: line 3"));
        assert_eq!(RunError::from(ProducerError::Input("no".into())).stage(), "producer");
    }
}
