//! An axum app on a fixed loopback port that a test can take down (connections refused) and
//! bring back on the same port: how a backend outage looks to the daemon.
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// The running (or stopped) server.
pub struct RestartableServer {
    pub url: String,
    pub port: u16,
    app: axum::Router,
    task: Option<JoinHandle<()>>,
    /// Set when stopped: connections already open (a client's keep-alive pool) fail too, as
    /// they would when the backend's process dies.
    killed: Arc<AtomicBool>,
}

/// A listener whose connections all fail once `killed` is set.
struct KillableListener {
    inner: TcpListener,
    killed: Arc<AtomicBool>,
}

impl axum::serve::Listener for KillableListener {
    type Io = KillableStream;
    type Addr = std::net::SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            if let Ok((stream, address)) = self.inner.accept().await {
                let stream = KillableStream {
                    inner: stream,
                    killed: Arc::clone(&self.killed),
                };
                return (stream, address);
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        self.inner.local_addr()
    }
}

struct KillableStream {
    inner: TcpStream,
    killed: Arc<AtomicBool>,
}

impl KillableStream {
    fn check(&self) -> std::io::Result<()> {
        if self.killed.load(Ordering::SeqCst) {
            Err(std::io::ErrorKind::ConnectionReset.into())
        } else {
            Ok(())
        }
    }
}

impl AsyncRead for KillableStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        self.check()?;
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for KillableStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        self.check()?;
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

impl RestartableServer {
    /// Serves `app` on a free loopback port.
    pub async fn start(app: axum::Router) -> RestartableServer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let mut server = RestartableServer {
            url: format!("http://127.0.0.1:{port}"),
            port,
            app,
            task: None,
            killed: Arc::new(AtomicBool::new(false)),
        };
        server.serve(listener);
        server
    }

    fn serve(&mut self, listener: TcpListener) {
        let app = self.app.clone();
        self.killed = Arc::new(AtomicBool::new(false));
        let listener = KillableListener {
            inner: listener,
            killed: Arc::clone(&self.killed),
        };
        self.task = Some(tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        }));
    }

    /// Closes the port: new connections are refused, open ones fail.
    pub fn stop(&mut self) {
        self.killed.store(true, Ordering::SeqCst);
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }

    /// Listens on the same port again.
    pub async fn restart(&mut self) {
        self.stop();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match TcpListener::bind(("127.0.0.1", self.port)).await {
                Ok(listener) => return self.serve(listener),
                Err(e) => {
                    assert!(
                        Instant::now() < deadline,
                        "cannot listen on port {} again: {e}",
                        self.port
                    );
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    }
}

impl Drop for RestartableServer {
    fn drop(&mut self) {
        self.stop();
    }
}
