//! The exit statuses of `netconform`, each class of outcome mapped to its status in this
//! one place, as the README documents them:
//!
//! | status | class |
//! |---|---|
//! | 0 | every run passed |
//! | 1 | a scenario failed, a run was flaky, or `--fail-on-ignored` found an ignored run |
//! | 2 | the input is wrong (a scenario, a rule file, an option), or this machine lacks what the runs need (root, a program, a kernel feature); nothing was judged |

use std::process::ExitCode;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    Passed,
    Failed,
    BadInput,
    Machine,
}

impl Exit {
    pub const fn status(self) -> u8 {
        match self {
            Exit::Passed => 0,
            Exit::Failed => 1,
            Exit::BadInput | Exit::Machine => 2,
        }
    }
}

impl From<Exit> for ExitCode {
    fn from(e: Exit) -> ExitCode {
        ExitCode::from(e.status())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_classes_keep_their_documented_statuses() {
        assert_eq!([Exit::Passed, Exit::Failed, Exit::BadInput, Exit::Machine].map(Exit::status), [0, 1, 2, 2]);
    }
}
