//! An undo stack for multi-step operations (RunPodSandbox, CreateContainer): every step that
//! leaves something behind pushes the action that takes it back. On failure the caller awaits
//! [`Undo::unwind`], which runs the actions newest first; a stack dropped without `commit` or
//! `unwind` (a panic, a cancelled task) unwinds on a spawned task. Failures are logged, never
//! raised: undoing is best effort and must not hide the error that caused it.

use std::future::Future;
use std::pin::Pin;

use tracing::{debug, warn};

type Action = Pin<Box<dyn Future<Output = Result<(), String>> + Send>>;

/// Steps to take back if a multi-step operation fails part way.
#[derive(Default)]
pub struct Undo {
    steps: Vec<(&'static str, Action)>,
}

impl Undo {
    /// An empty stack.
    pub fn new() -> Self {
        Self::default()
    }

    /// Remembers how to take back the step just taken, as a synchronous action.
    pub fn push<F>(&mut self, what: &'static str, action: F)
    where
        F: FnOnce() -> Result<(), String> + Send + 'static,
    {
        self.steps.push((what, Box::pin(async move { action() })));
    }

    /// Remembers how to take back the step just taken, as an async action (run only when
    /// unwinding: futures are lazy).
    pub fn push_async<F>(&mut self, what: &'static str, action: F)
    where
        F: Future<Output = Result<(), String>> + Send + 'static,
    {
        self.steps.push((what, Box::pin(action)));
    }

    /// Takes over the steps of `other` (steps taken on a concurrent branch), as newer than
    /// every step here.
    pub fn append(&mut self, mut other: Undo) {
        self.steps.append(&mut other.steps);
    }

    /// The operation is whole: forget the undo actions.
    pub fn commit(mut self) {
        self.steps.clear();
    }

    /// Runs the undo actions now, newest first, logging each failure.
    pub async fn unwind(mut self) {
        run(std::mem::take(&mut self.steps)).await;
    }
}

async fn run(mut steps: Vec<(&'static str, Action)>) {
    while let Some((what, action)) = steps.pop() {
        debug!(step = what, "undo");
        if let Err(e) = action.await {
            warn!(step = what, error = %e, "undo step failed");
        }
    }
}

impl Drop for Undo {
    fn drop(&mut self) {
        if self.steps.is_empty() {
            return;
        }
        let steps = std::mem::take(&mut self.steps);
        match tokio::runtime::Handle::try_current() {
            Ok(handle) => {
                handle.spawn(run(steps));
            }
            Err(_) => warn!(
                steps = steps.len(),
                "undo stack dropped outside the runtime; leaving steps undone"
            ),
        }
    }
}

impl std::fmt::Debug for Undo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<_> = self.steps.iter().map(|(n, _)| *n).collect();
        f.debug_struct("Undo").field("steps", &names).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    #[tokio::test]
    async fn unwind_runs_sync_and_async_steps_newest_first() {
        let log = Arc::new(Mutex::new(Vec::new()));
        let mut undo = Undo::new();
        for n in 1..=2 {
            let log = log.clone();
            undo.push("sync", move || {
                log.lock().unwrap().push(n);
                Ok(())
            });
        }
        let l = log.clone();
        undo.push_async("async", async move {
            l.lock().unwrap().push(3);
            Ok(())
        });
        undo.push("fails", || Err("boom".into()));
        undo.unwind().await;
        assert_eq!(*log.lock().unwrap(), vec![3, 2, 1]);
    }

    #[tokio::test]
    async fn appended_branches_unwind_before_the_steps_they_followed() {
        let log = Arc::new(Mutex::new(Vec::new()));
        let step = |n: u32| {
            let log = log.clone();
            move || {
                log.lock().unwrap().push(n);
                Ok(())
            }
        };
        let mut undo = Undo::new();
        undo.push("before the branches", step(1));
        let (mut left, mut right) = (Undo::new(), Undo::new());
        left.push("left", step(2));
        right.push("right", step(3));
        right.push("right, later", step(4));
        undo.append(left);
        undo.append(right);
        undo.unwind().await;
        assert_eq!(*log.lock().unwrap(), vec![4, 3, 2, 1]);
    }

    #[tokio::test]
    async fn commit_forgets_and_drop_unwinds_in_the_background() {
        let log = Arc::new(Mutex::new(0));
        let mut undo = Undo::new();
        let l = log.clone();
        undo.push("c", move || {
            *l.lock().unwrap() += 1;
            Ok(())
        });
        undo.commit();
        assert_eq!(*log.lock().unwrap(), 0);

        let (tx, rx) = tokio::sync::oneshot::channel();
        let mut undo = Undo::new();
        undo.push_async("signal", async move {
            tx.send(()).map_err(|_| "closed".to_string())
        });
        drop(undo);
        tokio::time::timeout(std::time::Duration::from_secs(5), rx)
            .await
            .expect("dropped stack unwinds")
            .unwrap();
    }
}
