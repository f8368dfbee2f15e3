//! The sync round of the catch-up protocol: one sync at a time, and one
//! more if something asked for it while a sync was out. No I/O; the actor
//! sends what this asks for. The order messages reach the application in
//! is [`crate::ordering`]'s.

/// A sync round: one sync at a time, and one more if something asked for
/// it while a sync was out (its answer may predate what prompted it).
#[derive(Debug, Default)]
pub(crate) struct SyncRound {
    out: bool,
    again: bool,
}

/// What to do after a sync answer.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum AfterSync {
    /// Ask for the next page.
    Next,
    /// The round is over: the device is caught up as of its start.
    Done,
}

impl SyncRound {
    /// Something wants a sync; returns whether to send one now.
    pub(crate) fn want(&mut self) -> bool {
        if self.out {
            self.again = true;
            false
        } else {
            self.out = true;
            true
        }
    }

    /// A sync answer arrived; `more` if it said more is left.
    pub(crate) fn answered(&mut self, more: bool) -> AfterSync {
        if more || std::mem::take(&mut self.again) {
            self.out = true;
            AfterSync::Next
        } else {
            self.out = false;
            AfterSync::Done
        }
    }

    /// The sync in flight is gone (timeout, disconnect).
    pub(crate) fn lost(&mut self) {
        self.out = false;
        self.again = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_round_runs_once_more_when_asked_during_it() {
        let mut r = SyncRound::default();
        assert!(r.want());
        assert!(!r.want(), "one at a time");
        assert_eq!(r.answered(false), AfterSync::Next, "asked meanwhile");
        assert_eq!(r.answered(true), AfterSync::Next, "more pages");
        assert_eq!(r.answered(false), AfterSync::Done);
        assert!(r.want());
    }
}
