//! A planned switchover or an operator's failover, as the running primary and the electing
//! nodes see the request.

use std::collections::BTreeSet;

use zgres_schema::documents::{Switchover, SwitchoverKind};
use zgres_schema::NodeId;

use super::eligibility::peer_rank;
use super::{Action, Decider, Observation};

impl Decider {
    /// What the running primary does about an operator's request.
    pub(super) fn handle_request(&self, obs: &Observation) -> Vec<Action> {
        let Some(request) = &obs.switchover else {
            return vec![];
        };
        if request.stopped_lsn.is_some() {
            // Either we are the candidate that took over, or a hand-over timed out and this
            // node won the election after it: the request is over.
            return vec![Action::FinishSwitchover];
        }
        if request.from.is_some_and(|from| from != self.me) {
            return vec![Action::DropSwitchover {
                reason: "the request names another primary than the lock holder",
            }];
        }
        if request.scheduled_at_ms.is_some_and(|at| obs.wall_ms < at) {
            return vec![];
        }
        // Who streams from us right now: a node killed a moment ago still has its `/state`
        // until its session expires, and a hand-over to it would leave the group without a
        // primary until the request times out. Not read yet: the shell reads it next round.
        let Some(streaming) = &obs.postgres.streaming else {
            return vec![];
        };
        match self.switchover_candidate(obs, request.to, streaming) {
            Some(candidate) => vec![Action::StepDown { candidate }],
            None => vec![Action::DropSwitchover {
                reason: "no healthy replica streaming from this primary can take over (the named node is not one, or there is none)",
            }],
        }
    }

    /// The replica to hand over to: `to` if it qualifies, else the best qualifying one. Only
    /// a healthy peer on our timeline that is `streaming` from us qualifies.
    pub(super) fn switchover_candidate(
        &self,
        obs: &Observation,
        to: Option<NodeId>,
        streaming: &BTreeSet<NodeId>,
    ) -> Option<NodeId> {
        let my_timeline = obs.postgres.probe.and_then(|p| p.timeline);
        obs.peers
            .iter()
            .filter(|p| to.map_or(true, |to| p.state.node == to))
            .filter(|p| streaming.contains(&p.state.node))
            .filter(|p| p.state.timeline >= my_timeline)
            .filter_map(|p| Some((peer_rank(p, obs, u64::MAX, None)?, p.state.node)))
            .max()
            .map(|(_, node)| node)
    }

    /// The operator's request, while it still steers elections.
    pub(super) fn active_request<'a>(&self, obs: &'a Observation) -> Option<&'a Switchover> {
        let request = obs.switchover.as_ref()?;
        let handing_over =
            request.stopped_lsn.is_some() || request.kind == SwitchoverKind::Failover;
        // A named node whose `/state` is gone (its session ended: it died after the hand-over)
        // cannot take over: the request no longer holds the others back.
        let named_gone = request
            .to
            .is_some_and(|to| to != self.me && !obs.peers.iter().any(|p| p.state.node == to));
        if named_gone {
            return None;
        }
        let waited = self
            .takeover
            .lock_free_since
            .map(|since| obs.now.duration_since(since))
            .unwrap_or_default();
        (handing_over && waited < self.timing.request_timeout).then_some(request)
    }
}
