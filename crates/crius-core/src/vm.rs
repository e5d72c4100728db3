//! Pods of `vm` runtime handlers: one containerd shim v2 per pod, the pause container and
//! every container of the pod a task of that shim (see `crius_oci::shim`).
//!
//! The shim's address and pid are kept in the pod record, so a restarted crius reconnects
//! to it; connections are made lazily and kept per pod. Container output goes through
//! fifos that crius copies into the CRI log files ([`crius_oci::shim::LogCopier`], the
//! monitor's own log writer): the monitor runs the OCI runtime itself, and a shim needs
//! only a reader on the fifos, as CRI-O reads them in-process for its VM runtimes. While
//! crius is down, output beyond the pipe's buffer (64 KiB) waits for it.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crius_oci::monitor::{ExecOutput, ExitStatus};
use crius_oci::shim::{self, LogCopier, Shim, ShimEvent, ShimStart, TaskIo};
use tracing::{debug, info, warn};

use crate::config::CoreConfig;
use crate::daemon::{ContainerEntry, Daemon};
use crate::error::{Error, Result};
use crate::model::{ContainerRecord, ContainerState, PodRecord};
use crate::undo::Undo;

/// How long a shim may take to exit after `Shutdown` before it is killed.
const SHIM_EXIT_TIMEOUT: Duration = Duration::from_secs(5);

/// How long a killed container may take to exit.
const KILL_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a killed pause task may take to exit.
const PAUSE_EXIT_TIMEOUT: Duration = Duration::from_secs(10);

/// The file in a vm pod's dir that holds its shim's address from the moment the shim
/// printed it: a restart after a crash that came before the pod's record finds the shim
/// by it, to delete its tasks and shut it down.
const SHIM_ADDRESS_FILE: &str = "shim-address";

/// A `vm` handler's settings.
#[derive(Debug, Clone)]
pub(crate) struct VmHandler {
    /// The handler's name.
    pub name: String,
    /// The shim v2 binary.
    pub binary: PathBuf,
    /// The VM runtime's own config file, passed in the task options.
    pub config_path: Option<PathBuf>,
}

/// The `vm` handler `name` of `config` ("" is the default), or `None` for an OCI one.
pub(crate) fn vm_handler(config: &CoreConfig, name: &str) -> Option<VmHandler> {
    let name = if name.is_empty() {
        config.default_runtime.as_str()
    } else {
        name
    };
    let h = config.runtimes.get(name)?;
    (h.runtime_type == "vm").then(|| VmHandler {
        name: name.to_string(),
        binary: h.runtime_path.clone(),
        config_path: h.runtime_config_path.clone(),
    })
}

/// What a container of a vm pod needs from crius while it runs: its log copier.
pub(crate) type Copiers = std::collections::HashMap<String, LogCopier>;

impl Daemon {
    /// The `vm` handler a pod runs with, if it is one.
    pub(crate) fn vm_of(&self, handler: &str) -> Option<VmHandler> {
        vm_handler(&self.config(), handler)
    }

    /// The socket shims publish their events to.
    pub(crate) fn shim_events_socket(&self) -> PathBuf {
        self.config().run_dir.join("shim-events.sock")
    }

    /// Serves the shims' event socket; TaskExit and TaskOOM reach the exit handling.
    pub(crate) async fn serve_shim_events(self: &Arc<Self>) -> Result<()> {
        let path = self.shim_events_socket();
        let (server, mut rx) = shim::EventServer::serve(&path).await?;
        *self.shim_events.lock().await = Some(server);
        let daemon = Arc::downgrade(self);
        tokio::spawn(async move {
            while let Some(event) = rx.recv().await {
                let Some(daemon) = daemon.upgrade() else {
                    return;
                };
                daemon.on_shim_event(event);
            }
        });
        Ok(())
    }

    fn on_shim_event(&self, event: ShimEvent) {
        match event {
            ShimEvent::Oom { id } => {
                info!(container_id = %id, "shim reports an OOM kill");
                self.shim_ooms
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(id);
            }
            ShimEvent::Exit {
                id,
                exec_id,
                status,
            } => {
                debug!(container_id = %id, exec_id, code = status.code, "shim reports an exit");
                // The exit of a container's init, when its Wait is not there to see it
                // (its connection broke): recorded once, the first report wins.
                if exec_id != id && !exec_id.is_empty() {
                    return;
                }
                if let Ok(ctr) = self.container_entry(&id) {
                    if ctr.entry.get().state == ContainerState::Running {
                        let oom = self.take_oom(&id);
                        self.record_exit(&ctr, Some(exit_status(status, oom)));
                    }
                }
            }
        }
    }

    /// Whether the shim reported an OOM kill in container `id` (forgetting it).
    fn take_oom(&self, id: &str) -> bool {
        self.shim_ooms
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(id)
    }

    /// The connection to a pod's shim: the kept one, or a new one to the recorded address.
    pub(crate) async fn shim_of(&self, pod: &PodRecord) -> Result<Shim> {
        if let Some(s) = self
            .shims
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&pod.id)
        {
            return Ok(s.clone());
        }
        let address = pod.shim_address.as_deref().ok_or_else(|| {
            Error::FailedPrecondition(format!(
                "pod {} of runtime handler {:?} has no shim",
                pod.id, pod.runtime_handler
            ))
        })?;
        let s = Shim::connect(&pod.runtime_handler, address, &pod.id).await?;
        self.shims
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(pod.id.clone(), s.clone());
        Ok(s)
    }

    /// Starts the pod's shim and creates the pause task in `dir` (its bundle); returns the
    /// pause pid, the shim's address and pid. Every step is undone on failure: the task
    /// deleted, the shim shut down (killed if it will not go), its socket removed.
    pub(crate) async fn vm_create_pause(
        &self,
        vm: &VmHandler,
        pod: &PodRecord,
        dir: &Path,
        undo: &mut Undo,
    ) -> Result<(u32, String, u32)> {
        let start = self.shim_start(&vm.name, &vm.binary, &pod.id, dir);
        let shim_log = shim::ShimLog::open(dir, &pod.id)?;
        let address = shim::start_shim(&start)
            .await
            .map_err(|e| Error::from(e).at_step("start shim"))?;
        let address_file = dir.join(SHIM_ADDRESS_FILE);
        // Written before the undo below, whose kill it does not need: a failure here
        // leaves the shim to that undo all the same.
        let written = std::fs::write(&address_file, &address)
            .map_err(|e| Error::io("write the shim's address", &address_file, e));
        // Until the shim answers Connect its pid is unknown: a shim that answers garbage,
        // hangs or dies is found by its command line, killed, and its socket removed.
        {
            let (address, events, id) =
                (address.clone(), start.events_socket.clone(), pod.id.clone());
            undo.push("kill shim processes", move || {
                for pid in shim::shim_processes(&events, &id) {
                    warn!(pod_id = %id, pid, "killing the pod's shim");
                    let _ = nix::sys::signal::kill(
                        nix::unistd::Pid::from_raw(pid as i32),
                        nix::sys::signal::Signal::SIGKILL,
                    );
                }
                if let Some(p) = shim::socket_path(&address) {
                    let _ = std::fs::remove_file(p);
                }
                Ok(())
            });
        }
        written?;
        let s = Shim::connect(&vm.name, &address, &pod.id)
            .await
            .map_err(|e| Error::from(e).at_step("connect to shim"))?;
        let shim_pid = s
            .shim_pid(&pod.id)
            .await
            .map_err(|e| Error::from(e).at_step("connect to shim"))?;
        shim_log.attached();
        {
            let (s, id) = (s.clone(), pod.id.clone());
            undo.push_async("stop shim", async move {
                stop_shim(&s, &id, Some(shim_pid)).await;
                Ok(())
            });
        }
        self.shims
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(pod.id.clone(), s.clone());
        {
            let id = pod.id.clone();
            let shims = self.shims_handle();
            undo.push("forget shim", move || {
                shims.lock().unwrap_or_else(|e| e.into_inner()).remove(&id);
                Ok(())
            });
        }
        let options = vm.config_path.as_deref().map(shim::config_path_options);
        let pid = s
            .create(&pod.id, dir, &TaskIo::default(), options)
            .await
            .map_err(|e| Error::from(e).at_step("create pause task"))?;
        {
            let (s, id) = (s.clone(), pod.id.clone());
            undo.push_async("delete pause task", async move {
                let _ = s.kill(&id, "", libc::SIGKILL as u32, true).await;
                s.delete(&id, "")
                    .await
                    .map(|_| ())
                    .map_err(|e| e.to_string())
            });
        }
        Ok((pid, address, shim_pid))
    }

    /// How a shim of pod `id` is run (its `start`, or its `delete` of a dead shim's task):
    /// in the pod's dir `bundle`, publishing to crius's event socket.
    fn shim_start(&self, handler: &str, binary: &Path, id: &str, bundle: &Path) -> ShimStart {
        ShimStart {
            handler: handler.to_string(),
            binary: binary.to_path_buf(),
            id: id.to_string(),
            bundle: bundle.to_path_buf(),
            events_socket: self.shim_events_socket(),
        }
    }

    /// Shuts a pod's shim down once its tasks are deleted, and removes its socket. A shim
    /// that had to be killed (it refuses to exit while a task remains, or did not answer)
    /// may leave the pause task running: the shim's own `delete` action then cleans what
    /// its runtime holds of it (process, state, cgroup), as containerd does for a dead shim.
    pub(crate) async fn vm_stop_shim(&self, pod: &PodRecord) {
        let s = match self.shim_of(pod).await {
            Ok(s) => Some(s),
            Err(e) => {
                warn!(pod_id = %pod.id, error = %e, "shim not reachable; killing it");
                None
            }
        };
        let exited_cleanly = match s {
            Some(s) => stop_shim(&s, &pod.id, pod.shim_pid).await,
            None => {
                if let Some(pid) = pod.shim_pid {
                    kill_shim(pid, &pod.id).await;
                }
                if let Some(p) = pod.shim_address.as_deref().and_then(shim::socket_path) {
                    let _ = std::fs::remove_file(p);
                }
                false
            }
        };
        if !exited_cleanly {
            if let Some(vm) = self.vm_of(&pod.runtime_handler) {
                let start = self.shim_start(&vm.name, &vm.binary, &pod.id, &self.pod_dir(&pod.id));
                if let Err(e) = shim::delete_dead_shim(&start).await {
                    warn!(pod_id = %pod.id, error = %e, "shim delete after a killed shim");
                }
            }
        }
        self.shims
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&pod.id);
    }

    /// After a restart: the shim of a pod that has no record (a crash cut RunPodSandbox
    /// after the shim started) is found by the address kept in the pod's dir, `dir`, and
    /// by its command line; its pause task is killed and deleted (so the shim removes the
    /// task's runtime state), the shim shut down or killed, and its socket removed.
    pub(crate) async fn vm_collect_orphan_shim(&self, id: &str, dir: &Path) {
        let address = std::fs::read_to_string(dir.join(SHIM_ADDRESS_FILE))
            .ok()
            .map(|a| a.trim().to_string())
            .filter(|a| !a.is_empty());
        let mut sockets: Vec<PathBuf> = address
            .iter()
            .filter_map(|a| shim::socket_path(a))
            .collect();
        // A task the shim was making when crius died is deleted once it is made.
        let deadline = tokio::time::Instant::now() + PAUSE_EXIT_TIMEOUT;
        while !shim::processes_naming(dir).is_empty() && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        if let Some(address) = &address {
            match Shim::connect("(a half-made pod's)", address, id).await {
                Ok(s) => {
                    info!(pod_id = %id, "shutting down the shim of a half-made pod");
                    kill_and_delete_task(&s, id, PAUSE_EXIT_TIMEOUT).await;
                    let pid = s.shim_pid(id).await.ok();
                    stop_shim(&s, id, pid).await;
                }
                Err(e) => {
                    debug!(pod_id = %id, error = %e, "no shim answers for a half-made pod");
                }
            }
        }
        // A crash before the shim's `start` printed its address leaves only its process:
        // the socket it serves is the one it bound.
        let events = self.shim_events_socket();
        let mut binaries: Vec<PathBuf> = Vec::new();
        for pid in shim::shim_processes(&events, id) {
            warn!(pod_id = %id, pid, "killing the shim of a half-made pod");
            sockets.extend(
                shim::bound_sockets(pid)
                    .into_iter()
                    .filter(|p| *p != events),
            );
            binaries.extend(std::fs::read_link(format!("/proc/{pid}/exe")));
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid as i32),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        for socket in sockets {
            let _ = std::fs::remove_file(socket);
        }
        // What the shim's runtime still holds of the pause task (one the shim could not
        // delete, or whose shim was gone) is the shim's own `delete` to clean: with the
        // binary of the shim found, else that of every vm handler.
        if binaries.is_empty() {
            let config = self.config();
            binaries.extend(
                config
                    .runtimes
                    .values()
                    .filter(|h| h.runtime_type == "vm")
                    .map(|h| h.runtime_path.clone()),
            );
        }
        binaries.sort();
        binaries.dedup();
        for binary in binaries {
            let start = self.shim_start("(a half-made pod's)", &binary, id, dir);
            if let Err(e) = shim::delete_dead_shim(&start).await {
                debug!(pod_id = %id, error = %e, "shim delete of a half-made pod");
            }
        }
    }

    /// After a restart: the task of container `id` that the shim of its pod made but
    /// crius did not record (a crash right after the shim's Create) is killed and
    /// deleted, so that neither its process nor its runtime state outlives it. Its pod
    /// is the one its bundle names; nothing is done for a pod that is not a vm pod.
    pub(crate) async fn vm_collect_orphan_task(&self, id: &str) {
        let bundle = self.container_dir(id).join("config.json");
        let Some(pod_id) = std::fs::read(&bundle)
            .ok()
            .and_then(|text| serde_json::from_slice::<serde_json::Value>(&text).ok())
            .and_then(|spec| {
                spec["annotations"][crius_oci::spec::annotations::SANDBOX_ID]
                    .as_str()
                    .map(str::to_string)
            })
        else {
            return;
        };
        let Some(pod) = self.pod_entry(&pod_id).ok().map(|p| p.get()) else {
            return;
        };
        if self.vm_of(&pod.runtime_handler).is_none() {
            return;
        }
        let Ok(s) = self.shim_of(&pod).await else {
            return;
        };
        if s.state(id, "").await.is_err() {
            return;
        }
        info!(container_id = %id, pod_id = %pod_id, "deleting a task no container record owns");
        kill_and_delete_task(&s, id, KILL_TIMEOUT).await;
    }

    /// Makes the fifos of a vm container in `run_dir` and starts copying them into its
    /// log; returns the task's stdio.
    pub(crate) fn vm_container_io(
        &self,
        id: &str,
        run_dir: &Path,
        tty: bool,
        stdin: bool,
        log_path: Option<PathBuf>,
    ) -> Result<TaskIo> {
        let mut io = TaskIo {
            terminal: tty,
            ..Default::default()
        };
        let mut fifos = vec![(false, run_dir.join("stdout"))];
        if !tty {
            fifos.push((true, run_dir.join("stderr")));
        }
        for (_, p) in &fifos {
            shim::make_fifo(p)?;
        }
        io.stdout = fifos[0].1.display().to_string();
        if let Some((_, p)) = fifos.get(1) {
            io.stderr = p.display().to_string();
        }
        if stdin {
            let p = run_dir.join("stdin");
            shim::make_fifo(&p)?;
            let fifo = crius_oci::shim_stream::open_stdin_fifo(&p)?;
            self.vm_stdins
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(
                    id.to_string(),
                    Arc::new(tokio::sync::Mutex::new(Some(fifo))),
                );
            io.stdin = p.display().to_string();
        }
        let copier = LogCopier::start(&fifos, log_path, self.config().log_size_max)?;
        self.log_copiers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id.to_string(), copier);
        Ok(io)
    }

    /// Lets a container's log copier end with its output (after a failed create), and
    /// closes crius's end of its stdin.
    pub(crate) fn vm_drop_copier(&self, id: &str) {
        self.vm_stdins
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(id);
        let copier = self
            .log_copiers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(id);
        if let Some(c) = copier {
            std::thread::spawn(move || c.join());
        }
    }

    /// The shim holds the container's fifos: the copier ends when it closes them.
    pub(crate) fn vm_io_attached(&self, id: &str) {
        if let Some(c) = self
            .log_copiers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get_mut(id)
        {
            c.writers_attached();
        }
    }

    /// Waits for a vm container's exit (its Wait), lets its log copier finish, and
    /// records the exit with the OOM kill the shim reported.
    pub(crate) async fn vm_watch_exit(&self, ctr: &ContainerEntry) {
        let rec = ctr.entry.get();
        let status = match self.pod_entry(&rec.pod_id) {
            Ok(pod) => {
                let pod = pod.get();
                match self.shim_of(&pod).await {
                    Ok(s) => s.wait(&rec.id, "").await.map_err(Error::from),
                    Err(e) => Err(e),
                }
            }
            Err(e) => Err(e),
        };
        let copier = self
            .log_copiers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&rec.id);
        if let Some(c) = copier {
            let _ = tokio::task::spawn_blocking(move || c.join()).await;
        }
        self.vm_stdins
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&rec.id);
        match status {
            Ok(st) => {
                let oom = self.take_oom(&rec.id);
                self.record_exit(ctr, Some(exit_status(st, oom)));
            }
            Err(e) => {
                warn!(container_id = %rec.id, error = %e, "lost the container's shim");
                self.record_exit(ctr, None);
            }
        }
    }

    /// Kills a vm pod's pause task and waits (bounded) for its exit. A shim that is gone
    /// is logged: the pod can still be stopped.
    pub(crate) async fn vm_stop_pause(&self, pod: &PodRecord) {
        let s = match self.shim_of(pod).await {
            Ok(s) => s,
            Err(e) => {
                warn!(pod_id = %pod.id, error = %e, "pod's shim is gone; stopping the pod without it");
                return;
            }
        };
        if let Err(e) = s.kill(&pod.id, "", libc::SIGKILL as u32, false).await {
            warn!(pod_id = %pod.id, error = %e, "kill pause task");
        }
        match tokio::time::timeout(PAUSE_EXIT_TIMEOUT, s.wait(&pod.id, "")).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => warn!(pod_id = %pod.id, error = %e, "wait for pause exit"),
            Err(_) => warn!(pod_id = %pod.id, "pause task did not exit in time"),
        }
    }

    /// Deletes a vm pod's pause task and stops its shim; what is gone already is fine. A
    /// task still running (its stop was cut short) is killed first.
    pub(crate) async fn vm_remove_pause(&self, pod: &PodRecord) {
        if let Ok(s) = self.shim_of(pod).await {
            if let Err(e) = s.delete(&pod.id, "").await {
                if !shim::is_not_found(&e) {
                    debug!(pod_id = %pod.id, error = %e, "pause task not deleted; killing it first");
                    kill_and_delete_task(&s, &pod.id, PAUSE_EXIT_TIMEOUT).await;
                }
            }
        }
        self.vm_stop_shim(pod).await;
    }

    /// Creates a vm container's task (fifos, log copier, `Create`); returns its pid.
    pub(crate) async fn vm_create_container(
        &self,
        pod: &PodRecord,
        rec: &ContainerRecord,
        dir: &Path,
        run_dir: &Path,
        undo: &mut Undo,
    ) -> Result<u32> {
        let vm = self
            .vm_of(&pod.runtime_handler)
            .ok_or_else(|| Error::Internal(format!("pod {} is not a vm pod", pod.id)))?;
        let s = self.shim_of(pod).await?;
        let io = self.vm_container_io(
            &rec.id,
            run_dir,
            rec.config.tty,
            rec.config.stdin,
            rec.log_path.clone(),
        )?;
        let options = vm.config_path.as_deref().map(shim::config_path_options);
        let pid = match s.create(&rec.id, dir, &io, options).await {
            Ok(pid) => pid,
            Err(e) => {
                self.vm_drop_copier(&rec.id);
                return Err(Error::from(e).at_step("create container task"));
            }
        };
        self.vm_io_attached(&rec.id);
        let (s, id) = (s.clone(), rec.id.clone());
        undo.push_async("delete container task", async move {
            let _ = s.kill(&id, "", libc::SIGKILL as u32, true).await;
            s.delete(&id, "")
                .await
                .map(|_| ())
                .map_err(|e| e.to_string())
        });
        crius_fault::point!("create_container.task_created");
        Ok(pid)
    }

    /// Stops a vm container: its stop signal, SIGKILL after `timeout` s, and its exit
    /// awaited. A container whose shim is gone is recorded exited (code unknown).
    pub(crate) async fn vm_stop_container(
        &self,
        pod: &PodRecord,
        ctr: &ContainerEntry,
        timeout: i64,
    ) -> Result<()> {
        let rec = ctr.entry.get();
        let s = match self.shim_of(pod).await {
            Ok(s) => s,
            Err(e) => {
                warn!(container_id = %rec.id, error = %e, "container's shim is gone");
                self.record_exit(ctr, None);
                return Ok(());
            }
        };
        let mut exited = ctr.exited.subscribe();
        if timeout > 0 && rec.state == ContainerState::Running {
            if let Err(e) = s.kill(&rec.id, "", rec.stop_signal as u32, false).await {
                warn!(container_id = %rec.id, error = %e, "stop signal not delivered");
            }
            let grace = Duration::from_secs(timeout as u64);
            if tokio::time::timeout(grace, exited.wait_for(|e| *e))
                .await
                .is_ok()
            {
                return Ok(());
            }
        }
        if let Err(e) = s.kill(&rec.id, "", libc::SIGKILL as u32, false).await {
            warn!(container_id = %rec.id, error = %e, "SIGKILL not delivered");
        }
        if tokio::time::timeout(KILL_TIMEOUT, exited.wait_for(|e| *e))
            .await
            .is_ok()
        {
            return Ok(());
        }
        match s.state(&rec.id, "").await {
            Ok(st) if st.status == "running" || st.status == "created" => {
                Err(Error::DeadlineExceeded(format!(
                    "container {} did not exit within {}s of SIGKILL",
                    rec.id,
                    KILL_TIMEOUT.as_secs()
                )))
            }
            Ok(st) => {
                let oom = self.take_oom(&rec.id);
                self.record_exit(ctr, st.exit.map(|x| exit_status(x, oom)));
                Ok(())
            }
            Err(e) => {
                warn!(container_id = %rec.id, error = %e, "container's shim is gone");
                self.record_exit(ctr, None);
                Ok(())
            }
        }
    }

    /// Deletes a vm container's task; one that is gone, or whose shim is, is fine.
    pub(crate) async fn vm_delete_container(&self, pod: &PodRecord, id: &str) -> Result<()> {
        let s = match self.shim_of(pod).await {
            Ok(s) => s,
            Err(e) => {
                warn!(container_id = %id, error = %e, "container's shim is gone; removing without it");
                return Ok(());
            }
        };
        match s.delete(id, "").await {
            Ok(_) => Ok(()),
            Err(e) if shim::is_not_found(&e) => Ok(()),
            Err(crius_oci::Error::ShimCall { msg, .. }) if shim::is_gone(&msg) => Ok(()),
            Err(e) => Err(Error::from(e).at_step("delete container task")),
        }
    }

    /// After a restart: whether a vm pod's pause task still runs (its shim answers).
    pub(crate) async fn vm_pause_alive(&self, pod: &PodRecord) -> bool {
        match self.shim_of(pod).await {
            Ok(s) => s
                .state(&pod.id, "")
                .await
                .is_ok_and(|st| st.status == "running"),
            Err(e) => {
                warn!(pod_id = %pod.id, error = %e, "pod's shim is gone");
                false
            }
        }
    }

    /// After a restart: a vm container's state from its shim. Its status (`created` or
    /// `running`) while it is there (its log copier reattached to the fifos), else the
    /// exit the shim kept (`None` when the shim is gone).
    pub(crate) async fn vm_restore_container(
        &self,
        pod: &PodRecord,
        rec: &ContainerRecord,
    ) -> std::result::Result<String, Option<ExitStatus>> {
        let s = match self.shim_of(pod).await {
            Ok(s) => s,
            Err(_) => return Err(None),
        };
        let st = match s.state(&rec.id, "").await {
            Ok(st) => st,
            Err(e) => {
                warn!(container_id = %rec.id, error = %e, "container's shim does not know it");
                return Err(None);
            }
        };
        if st.status != "running" && st.status != "created" {
            let oom = self.take_oom(&rec.id);
            return Err(st.exit.map(|x| exit_status(x, oom)));
        }
        let run_dir = self.container_run_dir(&rec.id);
        let mut fifos = vec![(false, run_dir.join("stdout"))];
        if !rec.config.tty {
            fifos.push((true, run_dir.join("stderr")));
        }
        match LogCopier::start(&fifos, rec.log_path.clone(), self.config().log_size_max) {
            Ok(mut c) => {
                c.writers_attached();
                self.log_copiers
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(rec.id.clone(), c);
            }
            Err(e) => warn!(container_id = %rec.id, error = %e, "container log not reattached"),
        }
        if rec.config.stdin {
            // Gone when the shim no longer reads it: its stdin was closed.
            if let Some(fifo) = crius_oci::shim_stream::reopen_stdin_fifo(&run_dir.join("stdin")) {
                self.vm_stdins
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(
                        rec.id.clone(),
                        Arc::new(tokio::sync::Mutex::new(Some(fifo))),
                    );
            }
        }
        Ok(st.status)
    }

    /// ExecSync in a vm container: an exec process of its task (the container's own process
    /// spec with `cmd` as args), its output through two fifos, killed after `timeout`.
    pub(crate) async fn vm_exec_sync(
        &self,
        pod: &PodRecord,
        rec: &ContainerRecord,
        cmd: &[String],
        timeout: Option<Duration>,
    ) -> Result<ExecOutput> {
        let process = self.vm_exec_process(&rec.id, cmd, false)?;
        let exec_id = new_exec_id();
        let run_dir = self.container_run_dir(&rec.id);
        let fifos = [
            run_dir.join(format!("{exec_id}-stdout")),
            run_dir.join(format!("{exec_id}-stderr")),
        ];
        for f in &fifos {
            shim::make_fifo(f)?;
        }
        let result = self
            .vm_exec_steps(pod, rec, &exec_id, &process, &fifos, timeout)
            .await;
        for f in &fifos {
            let _ = std::fs::remove_file(f);
        }
        result
    }

    async fn vm_exec_steps(
        &self,
        pod: &PodRecord,
        rec: &ContainerRecord,
        exec_id: &str,
        process: &[u8],
        fifos: &[PathBuf; 2],
        timeout: Option<Duration>,
    ) -> Result<ExecOutput> {
        let s = self.shim_of(pod).await?;
        let mut capture = shim::FifoCapture::start(fifos)?;
        let io = TaskIo {
            stdout: fifos[0].display().to_string(),
            stderr: fifos[1].display().to_string(),
            ..Default::default()
        };
        if let Err(e) = s.exec(&rec.id, exec_id, process, &io).await {
            std::thread::spawn(move || capture.join());
            return Err(Error::from(e).at_step("exec in container"));
        }
        // The shim opens an exec's fifos at Start: crius holds their write ends till then.
        let waited = async {
            s.start(&rec.id, exec_id).await?;
            capture.writers_attached();
            let wait = s.wait(&rec.id, exec_id);
            match timeout {
                None => wait.await.map(|st| (st, false)),
                Some(limit) => match tokio::time::timeout(limit, wait).await {
                    Ok(st) => st.map(|st| (st, false)),
                    Err(_) => {
                        let _ = s.kill(&rec.id, exec_id, libc::SIGKILL as u32, false).await;
                        s.wait(&rec.id, exec_id).await.map(|st| (st, true))
                    }
                },
            }
        }
        .await;
        let _ = s.delete(&rec.id, exec_id).await;
        let mut out = tokio::task::spawn_blocking(move || capture.join())
            .await
            .unwrap_or_default()
            .into_iter();
        let (status, timed_out) =
            waited.map_err(|e| Error::from(e).at_step("exec in container"))?;
        Ok(ExecOutput {
            stdout: out.next().unwrap_or_default(),
            stderr: out.next().unwrap_or_default(),
            exit_code: status.code as i32,
            timed_out,
        })
    }

    /// The process spec of an exec in container `id`: the container's own (user, env,
    /// cwd, capabilities, ...) with `cmd` as its args.
    pub(crate) fn vm_exec_process(&self, id: &str, cmd: &[String], tty: bool) -> Result<Vec<u8>> {
        let bundle = self.container_dir(id).join("config.json");
        let text =
            std::fs::read(&bundle).map_err(|e| Error::io("read container spec", &bundle, e))?;
        let spec: serde_json::Value = serde_json::from_slice(&text)
            .map_err(|e| Error::Internal(format!("container spec {}: {e}", bundle.display())))?;
        let mut process = spec["process"].clone();
        process["args"] = serde_json::json!(cmd);
        process["terminal"] = serde_json::json!(tty);
        if !tty {
            if let Some(p) = process.as_object_mut() {
                p.remove("consoleSize");
            }
        }
        serde_json::to_vec(&process).map_err(|e| Error::Internal(format!("exec process spec: {e}")))
    }

    /// A handle on the shim map for undo steps.
    fn shims_handle(&self) -> Arc<std::sync::Mutex<std::collections::HashMap<String, Shim>>> {
        self.shims.clone()
    }
}

/// A fresh id for an exec process.
pub(crate) fn new_exec_id() -> String {
    format!("exec-{}", &crate::model::new_id()[..12])
}

/// The monitor's exit status for a shim's exit.
fn exit_status(st: shim::TaskExitStatus, oom_killed: bool) -> ExitStatus {
    let ns = if st.at_ns > 0 {
        st.at_ns
    } else {
        crate::model::now_ns()
    };
    ExitStatus {
        exit_code: st.code as i32,
        exited_at: chrono::DateTime::from_timestamp_nanos(ns),
        oom_killed,
    }
}

/// Kills the shim's task `id` (a pod's pause, or a container), waits up to `exit` for it
/// to end and deletes it; what is gone already is fine.
async fn kill_and_delete_task(s: &Shim, id: &str, exit: Duration) {
    let _ = s.kill(id, "", libc::SIGKILL as u32, true).await;
    let _ = tokio::time::timeout(exit, s.wait(id, "")).await;
    if let Err(e) = s.delete(id, "").await {
        if !shim::is_not_found(&e) {
            warn!(task_id = %id, error = %e, "task not deleted");
        }
    }
}

/// Shutdown, then make sure the shim process is gone and its socket removed. False when
/// the shim had to be killed.
async fn stop_shim(s: &Shim, id: &str, pid: Option<u32>) -> bool {
    if let Err(e) = s.shutdown(id).await {
        warn!(pod_id = %id, error = %e, "shim shutdown");
    }
    let exited = match pid {
        Some(pid) => kill_shim(pid, id).await,
        None => true,
    };
    if let Some(p) = shim::socket_path(s.address()) {
        let _ = std::fs::remove_file(p);
    }
    exited
}

/// Waits up to [`SHIM_EXIT_TIMEOUT`] for the shim `pid` to exit, then kills it; true when
/// it exited by itself.
async fn kill_shim(pid: u32, id: &str) -> bool {
    let alive = || std::path::Path::new(&format!("/proc/{pid}")).exists() && !is_zombie(pid);
    let deadline = tokio::time::Instant::now() + SHIM_EXIT_TIMEOUT;
    while alive() && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    if !alive() {
        return true;
    }
    warn!(pod_id = %id, pid, "shim did not exit after shutdown; killing it");
    // SAFETY: kill(2) with a pid read from the shim itself; no memory is passed.
    unsafe { libc::kill(pid as i32, libc::SIGKILL) };
    false
}

fn is_zombie(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            s.rsplit(')')
                .next()
                .map(|r| r.trim_start().starts_with('Z'))
        })
        .unwrap_or(true)
}
