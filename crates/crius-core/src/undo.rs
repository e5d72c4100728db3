//! An undo stack for multi-step operations (RunPodSandbox, CreateContainer): every step that
//! leaves something behind pushes the action that removes it; if the operation does not reach
//! `commit`, dropping the stack runs the actions in reverse order.

use tracing::{debug, warn};

type Action = Box<dyn FnOnce() -> Result<(), String> + Send>;

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

    /// Remembers how to take back the step just taken.
    pub fn push<F>(&mut self, what: &'static str, action: F)
    where
        F: FnOnce() -> Result<(), String> + Send + 'static,
    {
        self.steps.push((what, Box::new(action)));
    }

    /// The operation is whole: forget the undo actions.
    pub fn commit(mut self) {
        self.steps.clear();
    }

    /// Runs the undo actions now, newest first, logging each failure.
    pub fn unwind(&mut self) {
        while let Some((what, action)) = self.steps.pop() {
            debug!(step = what, "undo");
            if let Err(e) = action() {
                warn!(step = what, error = %e, "undo step failed");
            }
        }
    }
}

impl Drop for Undo {
    fn drop(&mut self) {
        self.unwind();
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

    #[test]
    fn dropped_stack_unwinds_in_reverse_order() {
        let log = Arc::new(Mutex::new(Vec::new()));
        {
            let mut undo = Undo::new();
            for n in 1..=3 {
                let log = log.clone();
                undo.push("step", move || {
                    log.lock().unwrap().push(n);
                    Ok(())
                });
            }
        }
        assert_eq!(*log.lock().unwrap(), vec![3, 2, 1]);
    }

    #[test]
    fn committed_stack_runs_nothing_and_failures_do_not_stop_unwinding() {
        let log = Arc::new(Mutex::new(Vec::new()));
        let mut undo = Undo::new();
        let l = log.clone();
        undo.push("a", move || {
            l.lock().unwrap().push("a");
            Ok(())
        });
        undo.push("b", || Err("boom".into()));
        drop(undo);
        assert_eq!(*log.lock().unwrap(), vec!["a"]);

        let log2 = Arc::new(Mutex::new(0));
        let mut undo = Undo::new();
        let l = log2.clone();
        undo.push("c", move || {
            *l.lock().unwrap() += 1;
            Ok(())
        });
        undo.commit();
        assert_eq!(*log2.lock().unwrap(), 0);
    }
}
