//! A fault-injecting TCP proxy on loopback, to put an outage between the daemon and a service:
//! it can cut every connection and refuse new ones, stall (hold every byte, connections open),
//! slow the traffic down to a byte rate, or delay it (a long link).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

/// What the proxy does to the bytes it forwards.
#[derive(Debug, Clone, Default)]
struct Faults {
    /// Hold every byte until released.
    stalled: bool,
    /// Forward at most this many bytes per second per direction and connection.
    bytes_per_second: Option<u64>,
    /// Forward every byte this long after it arrived (a long link: throughput stays).
    latency: Option<Duration>,
    /// Stall once a client sent a Kafka request with this API key whose bytes contain this
    /// text (a group id, say); the request is forwarded first.
    stall_after_request: Option<(i16, Arc<str>)>,
}

/// Forwards `address` to a target until dropped.
pub struct Proxy {
    pub address: String,
    open: Arc<AtomicBool>,
    /// Bumped by `cut`: every connection of an older generation closes.
    generation: watch::Sender<u64>,
    faults: Arc<watch::Sender<Faults>>,
    refused: Arc<AtomicUsize>,
    forwarded: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Proxy {
    /// Listens on a free loopback port and forwards every connection to `target`.
    pub async fn start(target: String) -> anyhow::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        Ok(Self::serve(listener, target))
    }

    /// Forwards connections accepted on `listener` to `target`.
    pub fn serve(listener: TcpListener, target: String) -> Self {
        let address = listener.local_addr().expect("bound").to_string();
        let open = Arc::new(AtomicBool::new(true));
        let refused = Arc::new(AtomicUsize::new(0));
        let forwarded = Arc::new(AtomicUsize::new(0));
        let (generation, _) = watch::channel(0u64);
        let faults = Arc::new(watch::channel(Faults::default()).0);
        let task = {
            let (open, refused, generation, faults, forwarded) = (
                open.clone(),
                refused.clone(),
                generation.clone(),
                faults.clone(),
                forwarded.clone(),
            );
            tokio::spawn(async move {
                while let Ok((client, _)) = listener.accept().await {
                    if !open.load(Ordering::SeqCst) {
                        refused.fetch_add(1, Ordering::SeqCst);
                        drop(client);
                        continue;
                    }
                    let mut cut = generation.subscribe();
                    let (target, trigger, forwarded) =
                        (target.clone(), faults.clone(), forwarded.clone());
                    let faults = trigger.subscribe();
                    tokio::spawn(async move {
                        let Ok(upstream) = TcpStream::connect(&target).await else {
                            return;
                        };
                        let (client_read, client_write) = client.into_split();
                        let (upstream_read, upstream_write) = upstream.into_split();
                        tokio::select! {
                            _ = pump(client_read, upstream_write, faults.clone(), Some(trigger), forwarded.clone()) => {}
                            _ = pump(upstream_read, client_write, faults, None, forwarded) => {}
                            _ = cut.changed() => {}
                        }
                    });
                }
            })
        };
        Proxy {
            address,
            open,
            generation,
            faults,
            refused,
            forwarded,
            task,
        }
    }

    /// Closes every open connection and refuses new ones until [`Proxy::restore`].
    pub fn cut(&self) {
        self.open.store(false, Ordering::SeqCst);
        self.generation.send_modify(|g| *g += 1);
    }

    /// Accepts and forwards connections again, at full speed.
    pub fn restore(&self) {
        self.open.store(true, Ordering::SeqCst);
        self.faults.send_replace(Faults::default());
    }

    /// Holds every byte, in both directions, on every connection (new ones are accepted and
    /// held too) until [`Proxy::restore`]: a peer that hangs rather than goes away.
    pub fn stall(&self) {
        self.faults.send_modify(|f| f.stalled = true);
    }

    /// Stalls (as [`Proxy::stall`]) as soon as a client has sent a Kafka request with
    /// `api_key` (JoinGroup is 11) that contains `text` (the group id, say), which is
    /// forwarded: a client cut off right after asking, waiting for an answer that does not
    /// come. Requests are recognised at the start of what a client wrote at once, as Kafka
    /// clients write them.
    pub fn stall_after_request(&self, api_key: i16, text: &str) {
        let text: Arc<str> = text.into();
        self.faults
            .send_modify(|f| f.stall_after_request = Some((api_key, text)));
    }

    /// Forwards at most `bytes_per_second` per direction and connection until
    /// [`Proxy::restore`]: a congested link.
    pub fn slow_down(&self, bytes_per_second: u64) {
        self.faults
            .send_modify(|f| f.bytes_per_second = Some(bytes_per_second.max(1)));
    }

    /// Delivers every byte `latency` after it arrived, in both directions, until
    /// [`Proxy::restore`]: a long link, whose round trips are slow while its throughput is
    /// not (bytes keep being read while earlier ones wait).
    pub fn delay(&self, latency: Duration) {
        self.faults.send_modify(|f| f.latency = Some(latency));
    }

    /// Connections refused while cut: proof that a client kept trying.
    pub fn refused(&self) -> usize {
        self.refused.load(Ordering::SeqCst)
    }

    /// Bytes forwarded so far, both directions: proof that traffic flows (or does not).
    pub fn forwarded(&self) -> usize {
        self.forwarded.load(Ordering::SeqCst)
    }
}

/// Copies `from` to `to` until either closes, holding bytes while stalled, delaying them
/// by the latency and pacing them when slowed down; with `trigger` (the client's direction),
/// stalls the proxy after a request it is asked to stall after. Reading runs ahead of writing
/// by at most [`AHEAD`] chunks, so a held peer still sees its writes back up.
async fn pump(
    mut from: OwnedReadHalf,
    mut to: OwnedWriteHalf,
    mut faults: watch::Receiver<Faults>,
    trigger: Option<Arc<watch::Sender<Faults>>>,
    forwarded: Arc<AtomicUsize>,
) -> std::io::Result<()> {
    let (chunks, mut arrived) = mpsc::channel::<(Instant, Vec<u8>)>(AHEAD);
    let read = async move {
        loop {
            let mut buf = vec![0u8; 16 * 1024];
            let n = from.read(&mut buf).await?;
            if n == 0 {
                return Ok::<(), std::io::Error>(());
            }
            buf.truncate(n);
            if chunks.send((Instant::now(), buf)).await.is_err() {
                return Ok(());
            }
        }
    };
    let write = async move {
        while let Some((at, chunk)) = arrived.recv().await {
            let now = match faults.wait_for(|f| !f.stalled).await {
                Ok(faults) => faults.clone(),
                Err(_) => return Ok(()),
            };
            if let Some(latency) = now.latency {
                tokio::time::sleep_until(at + latency).await;
            }
            match now.bytes_per_second {
                // Small chunks at the rate, so a slow link delivers bytes steadily.
                Some(rate) => {
                    let piece_len = (rate as usize / 10).clamp(1, chunk.len());
                    for piece in chunk.chunks(piece_len) {
                        tokio::time::sleep(Duration::from_secs_f64(
                            piece.len() as f64 / rate as f64,
                        ))
                        .await;
                        to.write_all(piece).await?;
                    }
                }
                None => to.write_all(&chunk).await?,
            }
            forwarded.fetch_add(chunk.len(), Ordering::SeqCst);
            if let (Some(trigger), Some((api_key, text))) = (&trigger, &now.stall_after_request)
                && chunk.len() >= 6
                && i16::from_be_bytes([chunk[4], chunk[5]]) == *api_key
                && chunk.windows(text.len()).any(|w| w == text.as_bytes())
            {
                trigger.send_modify(|f| {
                    f.stalled = true;
                    f.stall_after_request = None;
                });
            }
        }
        to.shutdown().await
    };
    tokio::try_join!(read, write).map(|_| ())
}

/// Chunks (of up to 16 KiB) a direction reads ahead of what it has written.
const AHEAD: usize = 1024;

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
        self.cut();
    }
}
