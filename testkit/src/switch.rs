//! [`TcpSwitch`]: a TCP proxy that a test points at one server, then
//! another, cutting every connection to the first: the stand-in for a
//! database name that flips to a promoted standby (RDS's DNS at a
//! Multi-AZ failover), whose old primary is gone.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// A proxy on 127.0.0.1; stopped when dropped.
#[derive(Debug)]
pub struct TcpSwitch {
    port: u16,
    target: Arc<Mutex<SocketAddr>>,
    /// Bumped at each switch: connections of an older one end.
    generation: watch::Sender<u64>,
    task: tokio::task::JoinHandle<()>,
}

impl TcpSwitch {
    /// A proxy to `target`, on a free port.
    ///
    /// # Panics
    /// When no port can be bound.
    pub async fn start(target: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind the switch");
        let port = listener.local_addr().expect("local address").port();
        let target = Arc::new(Mutex::new(target));
        let (generation, _) = watch::channel(0u64);
        let task = {
            let (target, generation) = (target.clone(), generation.clone());
            tokio::spawn(async move {
                while let Ok((client, _)) = listener.accept().await {
                    // Subscribed first: a switch from here on cuts this one.
                    let mut changed = generation.subscribe();
                    let to = *target.lock().unwrap_or_else(PoisonError::into_inner);
                    tokio::spawn(async move {
                        let Ok(mut server) = TcpStream::connect(to).await else { return };
                        let mut client = client;
                        tokio::select! {
                            _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                            _ = changed.changed() => {}
                        }
                    });
                }
            })
        };
        Self { port, target, generation, task }
    }

    /// The port clients connect to.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// New connections go to `target` from now on; every open one is cut.
    pub fn switch_to(&self, target: SocketAddr) {
        *self.target.lock().unwrap_or_else(PoisonError::into_inner) = target;
        self.generation.send_modify(|g| *g += 1);
    }
}

impl Drop for TcpSwitch {
    fn drop(&mut self) {
        self.task.abort();
    }
}
