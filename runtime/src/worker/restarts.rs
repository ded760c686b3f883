//! Restarts through the API: a whole connector (its work split again), its failed tasks, or
//! one task alone. In a cluster the request goes through the config topic to every worker,
//! and each restarts what it runs ([`Worker::restart_here`], [`Worker::bounce_task`]).

use super::shared::Request;
use super::{Refused, Target, Worker};
use crate::status::{Counter, State};

impl Worker {
    /// Restarts a connector with the same config: its work split again and every task
    /// started anew; with `only_failed`, only its FAILED tasks, each alone (the whole
    /// connector when it failed before its tasks started), and nothing when none failed.
    /// Returns whether anything restarted (in a cluster: whether the request reached every
    /// worker). A stopped connector stays stopped, a paused one restarts paused.
    pub async fn restart(&self, name: &str, only_failed: bool) -> Result<bool, Refused> {
        if self.cluster.is_some() {
            self.caught_up().await?;
            self.target(name)?;
            self.request(name, Request::Restart { only_failed }).await?;
            return Ok(true);
        }
        self.restart_here(name, only_failed).await
    }

    /// [`Worker::restart`] of the tasks that run on this worker.
    pub(super) async fn restart_here(
        &self,
        name: &str,
        only_failed: bool,
    ) -> Result<bool, Refused> {
        let _registry = self.registry.lock().await;
        let target = self.target(name)?;
        let Some(status) = self.status.local(name) else {
            return Ok(false);
        };
        if target == Target::Stopped {
            return Ok(false);
        }
        if only_failed && status.state != State::Failed {
            let failed: Vec<u32> = status
                .tasks
                .iter()
                .filter(|t| t.state == State::Failed)
                .map(|t| t.id)
                .collect();
            for id in &failed {
                self.bounce_task(name, *id).await?;
            }
            return Ok(!failed.is_empty());
        }
        if let Some((config, target)) = self.halt(name).await {
            tracing::info!(connector = %name, "restarting through the API");
            self.launch(&config, target).await;
            if let Some(status) = self.status.local(name) {
                for task in &status.tasks {
                    self.status
                        .reporter(name, task.id)
                        .count(Counter::Restarts, 1);
                }
            }
        }
        Ok(true)
    }

    /// Restarts one task of a connector (POST /connectors/{name}/tasks/{id}/restart) with the
    /// config it had: it finishes its batch and commits, within the grace period, and starts
    /// again; the connector's other tasks are not touched. A stopped connector has no task to
    /// restart (nothing happens).
    pub async fn restart_task(&self, name: &str, id: u32) -> Result<(), Refused> {
        if self.cluster.is_some() {
            self.caught_up().await?;
            let tasks = self
                .status
                .local(name)
                .ok_or_else(|| Refused::NotFound(name.to_owned()))?
                .tasks
                .len();
            if id as usize >= tasks {
                return Err(Refused::TaskNotFound(name.to_owned(), id));
            }
            return self.request(name, Request::RestartTask { id }).await;
        }
        let _registry = self.registry.lock().await;
        self.bounce_task(name, id).await
    }

    /// [`Worker::restart_task`] on this worker, the registry held by the caller; refused when
    /// the task runs on another worker of the cluster.
    pub(super) async fn bounce_task(&self, name: &str, id: u32) -> Result<(), Refused> {
        let old = {
            let running = self.running.lock().expect("running lock");
            let r = running
                .get(name)
                .ok_or_else(|| Refused::NotFound(name.to_owned()))?;
            if r.target == Target::Stopped {
                return Ok(());
            }
            let slot = r
                .slots
                .get(id as usize)
                .cloned()
                .ok_or_else(|| Refused::TaskNotFound(name.to_owned(), id))?;
            if !slot.active {
                return Err(Refused::Cluster(format!(
                    "task {name}-{id} does not run on this worker: restart it through the \
                     worker it runs on"
                )));
            }
            slot
        };
        old.shutdown.cancel();
        old.tracker.close();
        self.finished(name, old.tracker.wait()).await;
        tracing::info!(connector = %name, task = id, "restarting the task through the API");
        if let Some(running) = self.running.lock().expect("running lock").get_mut(name) {
            self.restart_slot(running, id);
        }
        self.status.reporter(name, id).count(Counter::Restarts, 1);
        Ok(())
    }
}
