//! containerd as a backend: the flow of nomad-driver-containerd (image,
//! container with a new snapshot, task with FIFOs or a log file, start,
//! wait, delete) over containerd's gRPC API.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use containerd_client::services::v1::containers_client::ContainersClient;
use containerd_client::services::v1::tasks_client::TasksClient;
use containerd_client::services::v1::{
    Container, CreateContainerRequest, CreateTaskRequest, DeleteContainerRequest, DeleteProcessRequest,
    DeleteTaskRequest, ExecProcessRequest, GetContainerRequest, GetRequest, KillRequest, ListContainersRequest,
    StartRequest, UpdateContainerRequest, WaitRequest,
};
use containerd_client::types::v1::Status;
use oci_spec::image::ImageConfiguration;
use oci_spec::runtime::Spec;

use crate::connect::Conn;
use crate::error::{Error, GrpcContext, Result};
use crate::layout::OciLayout;
use crate::runtime_options::RuntimeSelection;
use crate::stdio::{LOG_PATH_LABEL, Output, Stdio, TaskIo, log_path};
use crate::{DEFAULT_SNAPSHOTTER, images, lease, spec, unpack};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// The container label keeping the exit status once its task is deleted.
const EXIT_STATUS_LABEL: &str = "berth.io/exit-status";

/// What `run` (and `create`) need.
#[derive(Debug, Clone)]
pub struct RunRequest {
    pub id: String,
    /// An image record in containerd (see [`ContainerdBackend::import_image`]).
    pub image: String,
    /// The finished spec (berth's spec chain); `root` and the cgroup path
    /// are set for containerd by [`spec::prepare_for_containerd`].
    pub spec: Spec,
    /// containerd's snapshotter; [`DEFAULT_SNAPSHOTTER`] when None.
    pub snapshotter: Option<String>,
    pub runtime: RuntimeSelection,
    pub stdio: Stdio,
    /// Delete task, container and snapshot once the task exited.
    pub rm: bool,
    pub labels: HashMap<String, String>,
}

impl RunRequest {
    pub fn new(id: impl Into<String>, image: impl Into<String>, spec: Spec) -> Self {
        RunRequest {
            id: id.into(),
            image: image.into(),
            spec,
            snapshotter: None,
            runtime: RuntimeSelection::default(),
            stdio: Stdio::Null,
            rm: false,
            labels: HashMap::new(),
        }
    }

    fn snapshotter(&self) -> &str {
        self.snapshotter.as_deref().unwrap_or(DEFAULT_SNAPSHOTTER)
    }
}

/// How a task ended: its exit code, or 128+N when signal N killed it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExitStatus {
    pub code: u32,
    pub exited_at: Option<SystemTime>,
}

/// A task's state as containerd reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TaskState {
    /// The container has no task.
    None,
    Created,
    Running,
    Stopped { exit_code: u32 },
    Paused,
    Unknown,
}

/// One row of `berth ps`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerSummary {
    pub id: String,
    pub image: String,
    pub runtime: String,
    pub snapshotter: String,
    pub created: Option<SystemTime>,
    pub labels: HashMap<String, String>,
    pub state: TaskState,
    pub pid: Option<u32>,
}

/// A created task not yet started; holds its output readers (FIFOs):
/// keep it until the task exits and call [`CreatedTask::output`], which also
/// completes a `Stdio::LogDir` log.
pub struct CreatedTask {
    pub id: String,
    pub pid: u32,
    io: TaskIo,
}

impl CreatedTask {
    /// Waits until the task's output is drained (it exited) and returns what was captured.
    pub async fn output(self) -> Result<Output> {
        Ok(self.io.finish().await?)
    }
}

/// The result of `run`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunOutcome {
    pub status: ExitStatus,
    pub output: Output,
}

/// A client of one containerd, working in one namespace.
#[derive(Clone, Debug)]
pub struct ContainerdBackend {
    conn: Conn,
}

impl ContainerdBackend {
    /// Connects to the containerd socket at `address`, in `namespace`.
    pub async fn connect(address: impl AsRef<Path>, namespace: &str) -> Result<Self> {
        Self::connect_timeout(address, namespace, CONNECT_TIMEOUT).await
    }

    pub async fn connect_timeout(address: impl AsRef<Path>, namespace: &str, timeout: Duration) -> Result<Self> {
        Ok(ContainerdBackend { conn: Conn::open(address.as_ref(), namespace, timeout).await? })
    }

    pub fn address(&self) -> &Path {
        &self.conn.address
    }

    pub fn namespace(&self) -> &str {
        &self.conn.namespace
    }

    /// The gRPC channel, for calls this type does not wrap.
    pub fn channel(&self) -> tonic::transport::Channel {
        self.conn.channel.clone()
    }

    /// Pushes the image `name` of the OCI layout (directory or tar) at
    /// `layout` into containerd's content store and names it `name`.
    pub async fn import_image(&self, layout: &Path, name: &str) -> Result<()> {
        let layout = OciLayout::open(layout)?;
        let leased = lease::acquire(&self.conn).await?;
        let result = images::import(&leased, &layout, name).await;
        lease::release(&leased).await;
        result.map(|_| ())
    }

    /// Checks containerd has the image `name` with a manifest for this host
    /// (ImageNotFound / NamespaceNotFound otherwise).
    pub async fn ensure_image(&self, name: &str) -> Result<()> {
        images::resolve(&self.conn, name).await.map(|_| ())
    }

    /// The image's config (entrypoint, env, user...), for berth's spec chain.
    pub async fn image_config(&self, name: &str) -> Result<ImageConfiguration> {
        Ok(images::resolve(&self.conn, name).await?.config)
    }

    /// Unpacks the image into `snapshotter`; returns the top snapshot's
    /// name (its chain ID), None for an image without layers.
    pub async fn unpack(&self, name: &str, snapshotter: &str) -> Result<Option<String>> {
        let leased = lease::acquire(&self.conn).await?;
        let result = async {
            let image = images::resolve(&leased, name).await?;
            unpack::unpack(&leased, &image, snapshotter).await
        }
        .await;
        lease::release(&leased).await;
        result
    }

    /// Creates the container (image unpacked, a new active snapshot on it)
    /// and its task, not started.
    pub async fn create(&self, request: &RunRequest) -> Result<CreatedTask> {
        self.create_container(request).await?;
        match self.create_task(request).await {
            Ok(task) => Ok(task),
            Err(err) => {
                if let Err(cleanup) = self.delete(&request.id, true).await {
                    tracing::warn!(id = %request.id, "cleaning up after a failed task create: {cleanup}");
                }
                Err(err)
            }
        }
    }

    async fn create_container(&self, request: &RunRequest) -> Result<()> {
        let (id, snapshotter) = (request.id.as_str(), request.snapshotter());
        if self.get_container(id).await.is_ok() {
            return Err(Error::ContainerExists { id: id.to_string(), namespace: self.conn.namespace.clone() });
        }
        let mut spec = request.spec.clone();
        spec::prepare_for_containerd(&mut spec, &self.conn.namespace, id);
        let spec_any = spec::to_any(&spec)?;
        let mut labels = request.labels.clone();
        if let Stdio::LogDir(dir) = &request.stdio {
            labels.insert(LOG_PATH_LABEL.into(), log_path(dir, id)?.to_string_lossy().into_owned());
        }
        // The lease keeps the new snapshot until the container record references it.
        let leased = lease::acquire(&self.conn).await?;
        let result = async {
            let image = images::resolve(&leased, &request.image).await?;
            let parent = unpack::unpack(&leased, &image, snapshotter).await?.unwrap_or_default();
            unpack::prepare(&leased, snapshotter, id, &parent, HashMap::new()).await?;
            let container = Container {
                id: id.to_string(),
                labels,
                image: request.image.clone(),
                runtime: Some(request.runtime.to_proto()),
                spec: Some(spec_any),
                snapshotter: snapshotter.to_string(),
                snapshot_key: id.to_string(),
                ..Default::default()
            };
            let created =
                ContainersClient::new(leased.channel.clone()).create(leased.req(CreateContainerRequest { container: Some(container) })).await;
            match created {
                Ok(_) => Ok(()),
                Err(status) => {
                    unpack::remove(&leased, snapshotter, id).await.ok();
                    if status.code() == tonic::Code::AlreadyExists {
                        return Err(Error::ContainerExists { id: id.to_string(), namespace: leased.namespace.clone() });
                    }
                    Err(Error::grpc(format!("creating container {id}"), status))
                }
            }
        }
        .await;
        lease::release(&leased).await;
        result
    }

    async fn create_task(&self, request: &RunRequest) -> Result<CreatedTask> {
        let id = request.id.as_str();
        let rootfs = unpack::mounts(&self.conn, request.snapshotter(), id).await?;
        let io = TaskIo::open(&request.stdio, id)?;
        let create = CreateTaskRequest {
            container_id: id.to_string(),
            rootfs,
            stdout: io.stdout.clone(),
            stderr: io.stderr.clone(),
            ..Default::default()
        };
        let created = TasksClient::new(self.conn.channel.clone())
            .create(self.conn.req(create))
            .await
            .context(|| format!("creating the task of container {id}"))?;
        Ok(CreatedTask { id: id.to_string(), pid: created.pid, io })
    }

    /// Starts a created task; returns its pid.
    pub async fn start(&self, id: &str) -> Result<u32> {
        let request = StartRequest { container_id: id.to_string(), exec_id: String::new() };
        let started = TasksClient::new(self.conn.channel.clone()).start(self.conn.req(request)).await;
        Ok(self.not_found_as_container(id, started, "starting the task of")?.pid)
    }

    /// Waits for the task to exit.
    pub async fn wait(&self, id: &str) -> Result<ExitStatus> {
        let request = WaitRequest { container_id: id.to_string(), exec_id: String::new() };
        let waited = TasksClient::new(self.conn.channel.clone()).wait(self.conn.req(request)).await;
        let waited = self.not_found_as_container(id, waited, "waiting for the task of")?;
        Ok(ExitStatus { code: waited.exit_status, exited_at: waited.exited_at.and_then(|t| SystemTime::try_from(t).ok()) })
    }

    /// Sends `signal` to the task's init process (`all`: to every process).
    pub async fn kill(&self, id: &str, signal: u32, all: bool) -> Result<()> {
        let request = KillRequest { container_id: id.to_string(), exec_id: String::new(), signal, all };
        let killed = TasksClient::new(self.conn.channel.clone()).kill(self.conn.req(request)).await;
        self.not_found_as_container(id, killed, "signalling the task of").map(|_| ())
    }

    /// The spec container `id` was created with.
    pub async fn container_spec(&self, id: &str) -> Result<Spec> {
        let container = self.get_container(id).await?;
        let any = container.spec.ok_or_else(|| anyhow::anyhow!("container {id} has no spec"))?;
        Ok(spec::from_any(&any)?)
    }

    /// Runs `process` in the running task of container `id` as `exec_id`
    /// (Tasks.Exec, Start, Wait, then DeleteProcess), its output through
    /// `stdio`, as `ctr task exec` does.
    pub async fn exec(&self, id: &str, exec_id: &str, process: &oci_spec::runtime::Process, stdio: &Stdio) -> Result<RunOutcome> {
        let io = TaskIo::open(stdio, &format!("{id}-{exec_id}"))?;
        let tasks = TasksClient::new(self.conn.channel.clone());
        let request = ExecProcessRequest {
            container_id: id.to_string(),
            exec_id: exec_id.to_string(),
            stdout: io.stdout.clone(),
            stderr: io.stderr.clone(),
            terminal: false,
            spec: Some(spec::process_to_any(process)?),
            ..Default::default()
        };
        let added = tasks.clone().exec(self.conn.req(request)).await;
        self.not_found_as_container(id, added, "exec in the task of")?;
        let result = async {
            let waiter = {
                let (this, id, exec_id) = (self.clone(), id.to_string(), exec_id.to_string());
                tokio::spawn(async move {
                    let request = WaitRequest { container_id: id.clone(), exec_id };
                    let waited = TasksClient::new(this.conn.channel.clone()).wait(this.conn.req(request)).await;
                    this.not_found_as_container(&id, waited, "waiting for an exec in")
                })
            };
            let started = tasks
                .clone()
                .start(self.conn.req(StartRequest { container_id: id.to_string(), exec_id: exec_id.to_string() }))
                .await;
            if let Err(err) = self.not_found_as_container(id, started, "starting an exec in") {
                waiter.abort();
                return Err(err);
            }
            let waited = waiter.await.map_err(|e| anyhow::anyhow!("waiting for exec {exec_id} in {id}: {e}"))??;
            let status = ExitStatus {
                code: waited.exit_status,
                exited_at: waited.exited_at.and_then(|t| SystemTime::try_from(t).ok()),
            };
            Ok(RunOutcome { status, output: io.finish().await? })
        }
        .await;
        let deleted = tasks
            .clone()
            .delete_process(self.conn.req(DeleteProcessRequest { container_id: id.to_string(), exec_id: exec_id.to_string() }))
            .await;
        if let Err(status) = deleted
            && result.is_ok()
        {
            return Err(Error::grpc(format!("removing exec {exec_id} of container {id}"), status));
        }
        result
    }

    /// Creates, starts and waits for a container; with `rm`, deletes it after.
    pub async fn run(&self, request: RunRequest) -> Result<RunOutcome> {
        let task = self.create(&request).await?;
        let result = async {
            // Wait is issued before start, as containerd's clients do; the
            // shim keeps the exit status until the task is deleted anyway.
            let waiter = {
                let this = self.clone();
                let id = request.id.clone();
                tokio::spawn(async move { this.wait(&id).await })
            };
            if let Err(err) = self.start(&request.id).await {
                waiter.abort();
                return Err(err);
            }
            let status = waiter.await.map_err(|e| anyhow::anyhow!("waiting for {}: {e}", request.id))??;
            let output = task.output().await?;
            // The exited task's shim is of no further use: delete the task
            // (the shim exits) and keep the status on the container.
            self.delete_task(&request.id).await?;
            if !request.rm {
                self.record_exit(&request.id, status).await?;
            }
            Ok(RunOutcome { status, output })
        }
        .await;
        if request.rm
            && let Err(err) = self.delete(&request.id, true).await
        {
            tracing::warn!(id = %request.id, "removing the container: {err}");
            if result.is_ok() {
                return Err(err);
            }
        }
        result
    }

    /// Deletes the task (killing it first when `force`), the container and
    /// its snapshot. Returns the task's exit status if it had one. A log
    /// file (`Stdio::LogDir`) is kept.
    pub async fn delete(&self, id: &str, force: bool) -> Result<Option<ExitStatus>> {
        let container = self.get_container(id).await?;
        match self.task_state(id).await? {
            (TaskState::None, _) => {}
            (TaskState::Running | TaskState::Paused | TaskState::Created, _) if !force => {
                return Err(anyhow::anyhow!("container {id} has a live task; kill it first or delete with force").into());
            }
            (TaskState::Stopped { .. }, _) => {}
            _ => {
                self.kill(id, libc_sigkill(), true).await.ok();
                self.wait(id).await?;
            }
        }
        let status = self.delete_task(id).await?.or_else(|| recorded_exit(&container));
        ContainersClient::new(self.conn.channel.clone())
            .delete(self.conn.req(DeleteContainerRequest { id: id.to_string() }))
            .await
            .context(|| format!("deleting container {id}"))?;
        if !container.snapshot_key.is_empty() {
            match unpack::remove(&self.conn, &container.snapshotter, &container.snapshot_key).await {
                Ok(()) => {}
                Err(err) if err.code() == Some(tonic::Code::NotFound) => {}
                Err(err) => return Err(err),
            }
        }
        Ok(status)
    }

    /// Deletes the task of container `id` (it must have exited); returns its
    /// exit status, None when there was no task.
    pub async fn delete_task(&self, id: &str) -> Result<Option<ExitStatus>> {
        let deleted = TasksClient::new(self.conn.channel.clone())
            .delete(self.conn.req(DeleteTaskRequest { container_id: id.to_string() }))
            .await;
        match deleted {
            Ok(response) => {
                let response = response.into_inner();
                Ok(Some(ExitStatus {
                    code: response.exit_status,
                    exited_at: response.exited_at.and_then(|t| SystemTime::try_from(t).ok()),
                }))
            }
            Err(s) if s.code() == tonic::Code::NotFound => Ok(None),
            Err(s) => Err(Error::grpc(format!("deleting the task of container {id}"), s)),
        }
    }

    /// Keeps a finished task's exit status on its container, for `list`.
    async fn record_exit(&self, id: &str, status: ExitStatus) -> Result<()> {
        let container = Container {
            id: id.to_string(),
            labels: HashMap::from([(EXIT_STATUS_LABEL.to_string(), status.code.to_string())]),
            ..Default::default()
        };
        let request = UpdateContainerRequest {
            container: Some(container),
            update_mask: Some(prost_types::FieldMask { paths: vec![format!("labels.{EXIT_STATUS_LABEL}")] }),
        };
        ContainersClient::new(self.conn.channel.clone())
            .update(self.conn.req(request))
            .await
            .context(|| format!("recording the exit status of container {id}"))?;
        Ok(())
    }

    /// Every container of the namespace with its task's state.
    pub async fn list(&self) -> Result<Vec<ContainerSummary>> {
        let containers = ContainersClient::new(self.conn.channel.clone())
            .list(self.conn.req(ListContainersRequest { filters: vec![] }))
            .await
            .context(|| format!("listing containers in namespace {}", self.conn.namespace))?
            .containers;
        let mut summaries = Vec::with_capacity(containers.len());
        for container in containers {
            let (mut state, pid) = self.task_state(&container.id).await?;
            if let (TaskState::None, Some(exit)) = (state, recorded_exit(&container)) {
                state = TaskState::Stopped { exit_code: exit.code };
            }
            summaries.push(ContainerSummary {
                state,
                pid,
                image: container.image,
                runtime: container.runtime.map(|r| r.name).unwrap_or_default(),
                snapshotter: container.snapshotter,
                created: container.created_at.and_then(|t| SystemTime::try_from(t).ok()),
                labels: container.labels,
                id: container.id,
            });
        }
        Ok(summaries)
    }

    /// The log file of a container run with `Stdio::LogDir`.
    pub async fn logs(&self, id: &str) -> Result<Vec<u8>> {
        let container = self.get_container(id).await?;
        let path = container.labels.get(LOG_PATH_LABEL).map(PathBuf::from).ok_or_else(|| {
            anyhow::anyhow!("container {id} was not created with a log dir: its output was not kept")
        })?;
        match tokio::fs::read(&path).await {
            Ok(data) => Ok(data),
            // Created with the task's IO; absent if the task never was.
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
            Err(err) => Err(anyhow::anyhow!("reading the log of {id} at {}: {err}", path.display()).into()),
        }
    }

    async fn get_container(&self, id: &str) -> Result<Container> {
        let got = ContainersClient::new(self.conn.channel.clone())
            .get(self.conn.req(GetContainerRequest { id: id.to_string() }))
            .await;
        let got = match got {
            Err(status) if status.code() == tonic::Code::NotFound => {
                images::check_namespace(&self.conn).await?;
                return Err(Error::ContainerNotFound { id: id.to_string(), namespace: self.conn.namespace.clone() });
            }
            other => self.not_found_as_container(id, other, "looking up")?,
        };
        got.container.ok_or_else(|| anyhow::anyhow!("containerd returned no record for container {id}").into())
    }

    async fn task_state(&self, id: &str) -> Result<(TaskState, Option<u32>)> {
        let request = GetRequest { container_id: id.to_string(), exec_id: String::new() };
        match TasksClient::new(self.conn.channel.clone()).get(self.conn.req(request)).await {
            Ok(response) => {
                let Some(process) = response.into_inner().process else { return Ok((TaskState::Unknown, None)) };
                let state = match Status::try_from(process.status).unwrap_or(Status::Unknown) {
                    Status::Created => TaskState::Created,
                    Status::Running => TaskState::Running,
                    Status::Stopped => TaskState::Stopped { exit_code: process.exit_status },
                    Status::Paused | Status::Pausing => TaskState::Paused,
                    Status::Unknown => TaskState::Unknown,
                };
                Ok((state, (process.pid != 0).then_some(process.pid)))
            }
            Err(status) if status.code() == tonic::Code::NotFound => Ok((TaskState::None, None)),
            Err(status) => Err(Error::grpc(format!("looking up the task of container {id}"), status)),
        }
    }

    /// containerd's NotFound on a container call becomes ContainerNotFound
    /// (or NamespaceNotFound when the namespace is what is missing).
    fn not_found_as_container<T>(
        &self,
        id: &str,
        result: std::result::Result<tonic::Response<T>, tonic::Status>,
        what: &str,
    ) -> Result<T> {
        match result {
            Ok(response) => Ok(response.into_inner()),
            Err(status) if status.code() == tonic::Code::NotFound => {
                Err(Error::ContainerNotFound { id: id.to_string(), namespace: self.conn.namespace.clone() })
            }
            Err(status) => Err(Error::grpc(format!("{what} container {id}"), status)),
        }
    }
}

/// The exit status `run` recorded on a container whose task it deleted.
fn recorded_exit(container: &Container) -> Option<ExitStatus> {
    let code = container.labels.get(EXIT_STATUS_LABEL)?.parse().ok()?;
    Some(ExitStatus { code, exited_at: None })
}

fn libc_sigkill() -> u32 {
    rustix::process::Signal::KILL.as_raw() as u32
}
