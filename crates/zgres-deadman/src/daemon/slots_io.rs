//! Replication slots each round: feeds the pure [`crate::slots::SlotKeeper`] the local slots
//! and the group's states, and carries out its plan.

use zgres_schema::documents::{NodeState, Role};

use super::Daemon;
use crate::decision::{LockView, Observation};
use crate::slots::{DropReason, SlotInputs, SlotRole, SlotStep};

impl Daemon {
    /// As the running primary or a running standby of a known primary: creates, advances
    /// and drops local slots as the plan says. Failures are logged (once per distinct
    /// problem) and retried next round.
    pub(super) async fn keep_slots(&mut self, obs: &Observation) {
        // Before a valid config is known, whether member slots are wanted is unknown.
        if !self.core.config_in_force.is_known() {
            return;
        }
        let Some(probe) = obs.postgres.probe.filter(|_| self.pg.process.is_running()) else {
            self.core.slot_keeper.reset();
            return;
        };
        let holder_state: Option<&NodeState> = match obs.lock {
            LockView::Other(Some(holder)) => obs
                .peers
                .iter()
                .map(|p| &p.state)
                .find(|s| s.node == holder && s.role == Role::Primary),
            _ => None,
        };
        let role = match (obs.lock, probe.in_recovery, holder_state) {
            (LockView::Ours, false, _) => SlotRole::Primary,
            (_, true, Some(primary)) => SlotRole::Replica { primary },
            _ => {
                self.core.slot_keeper.reset();
                return;
            }
        };
        let members: Vec<&NodeState> = obs.peers.iter().map(|p| &p.state).collect();
        let local = self.pg.client.slots().to_vec();
        let steps = self.core.slot_keeper.plan(&SlotInputs {
            now: obs.now,
            me: self.config.node,
            role,
            members: &members,
            local: &local,
            config: &obs.config,
        });
        let mut failed = false;
        for step in steps {
            match self.pg.client.apply_slot_step(&step).await {
                Ok(()) => log_done(&step),
                Err(e) => {
                    failed = true;
                    let problem = format!("{}: {e}", describe(&step));
                    if self.core.slot_problem.as_deref() != Some(problem.as_str()) {
                        tracing::warn!(%problem, "cannot keep a replication slot; retrying every round");
                        self.core.slot_problem = Some(problem);
                    }
                    // A PostgreSQL that stopped answering would make every further step wait
                    // out its timeout too, and the round with it: the next probe sees it.
                    if e.is_unanswered() {
                        break;
                    }
                }
            }
        }
        if !failed && self.core.slot_problem.take().is_some() {
            tracing::info!("replication slots are kept again");
        }
    }
}

fn describe(step: &SlotStep) -> String {
    match step {
        SlotStep::CreatePhysical { name } => format!("creating physical slot {name}"),
        SlotStep::CreateLogical { name, plugin, .. } => {
            format!("creating logical slot {name} ({plugin})")
        }
        SlotStep::Advance { name, to } => format!("advancing slot {name} to {to}"),
        SlotStep::Drop { name, .. } => format!("dropping slot {name}"),
    }
}

fn log_done(step: &SlotStep) {
    match step {
        SlotStep::CreatePhysical { name } => {
            tracing::info!(slot = %name, "created a physical replication slot")
        }
        SlotStep::CreateLogical {
            name,
            plugin,
            database,
        } => tracing::info!(slot = %name, %plugin, %database, "created a logical replication slot"),
        SlotStep::Advance { name, to } => {
            tracing::debug!(slot = %name, %to, "advanced a replication slot")
        }
        SlotStep::Drop { name, reason } => match reason {
            DropReason::MemberAbsent { for_ms } => tracing::warn!(
                slot = %name,
                absent_ms = for_ms,
                "dropped the slot of a member absent longer than member_slots_ttl_ms: if it returns, it may need a re-clone"
            ),
            DropReason::MemberSlotsOff => {
                tracing::info!(slot = %name, "dropped a member slot (member_slots is off)")
            }
            DropReason::NotOnThePrimary => {
                tracing::info!(slot = %name, "dropped the copy of a slot the primary no longer has")
            }
        },
    }
}
