//! Target states a connector is put in through the API: stopped (no task runs, the config
//! stays), paused (the tasks keep their partitions and instances but neither poll nor write),
//! started. Each is stored, so it holds across restarts.

use super::{Refused, Target, Worker};
use crate::status::State;

impl Worker {
    /// Stops a connector's tasks (they finish their batch and commit) and keeps its config:
    /// it is STOPPED until resumed, also across restarts.
    pub async fn stop_connector(&self, name: &str) -> Result<(), Refused> {
        self.refuse_in_cluster("stopping a connector through the API")?;
        let mut registry = self.registry.lock().await;
        if self.target(name)? == Target::Stopped {
            return Ok(());
        }
        registry.store.set_target(name, Target::Stopped)?;
        if let Some((config, _)) = self.halt(name).await {
            tracing::info!(connector = %name, "stopped through the API");
            self.launch(&config, Target::Stopped).await;
        }
        Ok(())
    }

    /// Pauses a connector: its tasks keep their partitions and instances but neither poll nor
    /// write until resumed, also across restarts. A stopped connector starts paused.
    pub async fn pause(&self, name: &str) -> Result<(), Refused> {
        self.refuse_in_cluster("pausing a connector through the API")?;
        let mut registry = self.registry.lock().await;
        let target = self.target(name)?;
        if target == Target::Paused {
            return Ok(());
        }
        registry.store.set_target(name, Target::Paused)?;
        tracing::info!(connector = %name, "paused through the API");
        if target == Target::Stopped {
            if let Some((config, _)) = self.halt(name).await {
                self.launch(&config, Target::Paused).await;
            }
            return Ok(());
        }
        self.set_running_target(name, Target::Paused);
        self.status.connector_state(name, State::Paused);
        Ok(())
    }

    /// Resumes a paused or stopped connector; a running one is left alone.
    pub async fn resume(&self, name: &str) -> Result<(), Refused> {
        self.refuse_in_cluster("resuming a connector through the API")?;
        let mut registry = self.registry.lock().await;
        let target = self.target(name)?;
        if target == Target::Started {
            return Ok(());
        }
        registry.store.set_target(name, Target::Started)?;
        tracing::info!(connector = %name, "resumed through the API");
        if target == Target::Stopped {
            if let Some((config, _)) = self.halt(name).await {
                self.launch(&config, Target::Started).await;
            }
            return Ok(());
        }
        self.set_running_target(name, Target::Started);
        let failed = self
            .status
            .get(name)
            .is_some_and(|s| s.state == State::Failed);
        if !failed {
            self.status.connector_state(name, State::Running);
        }
        Ok(())
    }

    /// Records a running connector's new target and tells its tasks.
    fn set_running_target(&self, name: &str, target: Target) {
        if let Some(running) = self.running.lock().expect("running lock").get_mut(name) {
            running.target = target;
            running.pause.send_replace(target == Target::Paused);
        }
    }
}
