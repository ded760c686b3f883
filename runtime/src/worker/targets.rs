//! Target states a connector is put in through the API: stopped (no task runs, the config
//! stays), paused (the tasks keep their partitions and instances but neither poll nor write),
//! started. Each is stored (in a cluster, in its config topic, so every worker follows it),
//! so it holds across restarts.

use super::{Refused, Target, Worker};
use crate::status::State;

impl Worker {
    /// Stops a connector's tasks (they finish their batch and commit) and keeps its config:
    /// it is STOPPED until resumed, also across restarts.
    pub async fn stop_connector(&self, name: &str) -> Result<(), Refused> {
        self.set_target(name, Target::Stopped).await
    }

    /// Pauses a connector: its tasks keep their partitions and instances but neither poll nor
    /// write until resumed, also across restarts. A stopped connector starts paused.
    pub async fn pause(&self, name: &str) -> Result<(), Refused> {
        self.set_target(name, Target::Paused).await
    }

    /// Resumes a paused or stopped connector; a running one is left alone.
    pub async fn resume(&self, name: &str) -> Result<(), Refused> {
        self.set_target(name, Target::Started).await
    }

    /// Stores a connector's new target state, then applies it.
    async fn set_target(&self, name: &str, target: Target) -> Result<(), Refused> {
        self.caught_up().await?;
        let mut registry = self.registry.lock().await;
        if self.target(name)? == target {
            return Ok(());
        }
        registry.store.set_target(name, target).await?;
        tracing::info!(connector = %name, ?target, "target state set through the API");
        self.converge(&mut registry).await;
        Ok(())
    }

    /// Moves a running connector from target state `from` to `to`: to or from stopped, its
    /// tasks stop and it starts anew in `to`; between paused and started, its tasks are told.
    /// The registry is held by the caller.
    pub(super) async fn retarget(&self, name: &str, from: Target, to: Target) {
        if from == Target::Stopped || to == Target::Stopped {
            if let Some((config, _)) = self.halt(name).await {
                self.launch(&config, to).await;
            }
            return;
        }
        self.set_running_target(name, to);
        if to == Target::Paused {
            self.status.connector_state(name, State::Paused);
            return;
        }
        let failed = self
            .status
            .local(name)
            .is_some_and(|s| s.state == State::Failed);
        if !failed {
            self.status.connector_state(name, State::Running);
        }
    }

    /// Records a running connector's new target and tells its tasks.
    fn set_running_target(&self, name: &str, target: Target) {
        if let Some(running) = self.running.lock().expect("running lock").get_mut(name) {
            running.target = target;
            running.pause.send_replace(target == Target::Paused);
        }
    }
}
