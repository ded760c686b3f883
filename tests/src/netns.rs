//! A network namespace of its own for one process under test, so that a test can cut that
//! process's connections while every other process keeps its own.
//!
//! The namespace has only its loopback. A port of the host's loopback is made reachable at the
//! same address inside ([`Namespace::reach_host`]) through a [`Proxy`] the test can cut or stall:
//! a Kafka broker's advertised `127.0.0.1:PORT` then means the same broker inside and outside,
//! and only this process's connections go through the proxy. A port inside is served on the
//! host's loopback the other way ([`Namespace::expose`]), for the daemon's admin API.
//!
//! Needs root (`ip netns add` from iproute2, `setns`): the README test command runs as root.

use std::fs::File;
use std::process::Command;
use std::sync::Mutex;
use std::thread::JoinHandle;

use anyhow::Context;
use nix::sched::{CloneFlags, setns};
use tokio::sync::oneshot;

use crate::{Proxy, unique};

/// A network namespace, removed when dropped (with the threads that serve its exposed ports).
pub struct Namespace {
    pub name: String,
    handle: File,
    exposed: Mutex<Vec<(oneshot::Sender<()>, JoinHandle<()>)>>,
}

impl Namespace {
    /// Creates a namespace with its loopback up.
    pub fn create() -> anyhow::Result<Self> {
        let name = unique("wcns");
        ip(&["netns", "add", &name])?;
        let created = (|| {
            ip(&["-n", &name, "link", "set", "lo", "up"])?;
            File::open(format!("/run/netns/{name}")).context("opening the namespace")
        })();
        match created {
            Ok(handle) => Ok(Namespace {
                name,
                handle,
                exposed: Mutex::new(Vec::new()),
            }),
            Err(e) => {
                let _ = ip(&["netns", "delete", &name]);
                Err(e)
            }
        }
    }

    /// The command prefix that runs a program inside.
    pub fn launcher(&self) -> Vec<String> {
        ["ip", "netns", "exec", &self.name]
            .map(String::from)
            .to_vec()
    }

    /// Makes `127.0.0.1:port` inside reach `127.0.0.1:port` of the host, through the returned
    /// proxy: cutting or stalling it cuts this namespace off from that port, and nothing else.
    pub fn reach_host(&self, port: u16) -> anyhow::Result<Proxy> {
        let listener = self.inside(|| std::net::TcpListener::bind(("127.0.0.1", port)))??;
        listener.set_nonblocking(true)?;
        let listener = tokio::net::TcpListener::from_std(listener)?;
        Ok(Proxy::serve(listener, format!("127.0.0.1:{port}")))
    }

    /// Serves `listener` (on the host) by connecting to the same port inside, from a thread of
    /// its own that lives in the namespace, until the namespace is dropped.
    pub fn expose(&self, listener: std::net::TcpListener) -> anyhow::Result<()> {
        let port = listener.local_addr()?.port();
        listener.set_nonblocking(true)?;
        let handle = self.handle.try_clone()?;
        let (stop, stopped) = oneshot::channel();
        let (ready, entered) = std::sync::mpsc::channel();
        let thread = std::thread::spawn(move || {
            let entered =
                setns(&handle, CloneFlags::CLONE_NEWNET).context("entering the namespace");
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .context("a runtime for the exposed port");
            let runtime = match (entered, runtime) {
                (Ok(()), Ok(runtime)) => {
                    let _ = ready.send(Ok(()));
                    runtime
                }
                (Err(e), _) | (_, Err(e)) => {
                    let _ = ready.send(Err(e));
                    return;
                }
            };
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).expect("a listener");
                let _proxy = Proxy::serve(listener, format!("127.0.0.1:{port}"));
                let _ = stopped.await;
            });
        });
        entered.recv().context("the exposing thread ended")??;
        self.exposed.lock().unwrap().push((stop, thread));
        Ok(())
    }

    /// Runs `f` on a thread inside the namespace: the sockets it creates belong to it.
    fn inside<T: Send>(&self, f: impl FnOnce() -> T + Send) -> anyhow::Result<T> {
        std::thread::scope(|scope| {
            scope
                .spawn(|| {
                    setns(&self.handle, CloneFlags::CLONE_NEWNET)
                        .context("entering the namespace")?;
                    Ok(f())
                })
                .join()
                .map_err(|_| anyhow::anyhow!("the thread inside the namespace panicked"))?
        })
    }
}

impl Drop for Namespace {
    fn drop(&mut self) {
        for (stop, thread) in self.exposed.lock().unwrap().drain(..) {
            let _ = stop.send(());
            let _ = thread.join();
        }
        let _ = ip(&["netns", "delete", &self.name]);
    }
}

fn ip(args: &[&str]) -> anyhow::Result<()> {
    let output = Command::new("ip")
        .args(args)
        .output()
        .context("running ip (Debian's iproute2, which the README test command installs)")?;
    anyhow::ensure!(
        output.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&output.stderr).trim()
    );
    Ok(())
}
