//! A loopback TCP relay in front of the API server whose open connections
//! can be made to stop answering: still open, nothing relayed either way,
//! as a dead NAT entry or a vanished peer leaves them (half-open). New
//! connections work as before.

use std::{net::SocketAddr, path::Path, sync::Arc};

use tokio::{
    net::{TcpListener, TcpStream},
    sync::watch,
    task::JoinSet,
};

pub struct Relay {
    pub address: SocketAddr,
    /// Raised by [`Relay::hang_open_connections`]: connections opened
    /// before stop relaying.
    epoch: Arc<watch::Sender<u64>>,
    _connections: JoinSet<()>,
}

impl Relay {
    /// Relays `127.0.0.1:<new port>` to `upstream` until dropped.
    pub async fn start(upstream: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let epoch = Arc::new(watch::Sender::new(0u64));
        let mut connections = JoinSet::new();
        let accepting = epoch.clone();
        connections.spawn(async move {
            let mut relays = JoinSet::new();
            while let Ok((client, _)) = listener.accept().await {
                let hung = accepting.subscribe();
                relays.spawn(relay(client, upstream, hung));
            }
        });
        Self {
            address,
            epoch,
            _connections: connections,
        }
    }

    /// Every connection open now stops relaying for good; both ends stay
    /// open and hear nothing.
    pub fn hang_open_connections(&self) {
        self.epoch.send_modify(|epoch| *epoch += 1);
    }

    /// A copy of the kubeconfig at `kubeconfig` that reaches the API
    /// server through this relay, written to `into`.
    pub fn kubeconfig(&self, kubeconfig: &Path, upstream: SocketAddr, into: &Path) {
        let text = std::fs::read_to_string(kubeconfig).unwrap();
        let from = format!("https://{upstream}");
        assert!(
            text.contains(&from),
            "{from} not in {}",
            kubeconfig.display()
        );
        std::fs::write(
            into,
            text.replace(&from, &format!("https://{}", self.address)),
        )
        .unwrap();
    }
}

async fn relay(mut client: TcpStream, upstream: SocketAddr, mut hung: watch::Receiver<u64>) {
    let opened = { *hung.borrow_and_update() };
    let Ok(mut server) = TcpStream::connect(upstream).await else {
        return;
    };
    tokio::select! {
        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
        _ = async { hung.wait_for(|epoch| *epoch > opened).await.is_ok() } => {
            // Half-open: hold both ends without a byte either way.
            std::future::pending::<()>().await;
        }
    }
}
