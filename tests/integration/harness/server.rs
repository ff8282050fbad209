//! An axum app on a fixed loopback port that a test can take down (connections refused) and
//! bring back on the same port: how a backend outage looks to the daemon.
use std::time::{Duration, Instant};

use tokio::task::JoinHandle;

/// The running (or stopped) server.
pub struct RestartableServer {
    pub url: String,
    pub port: u16,
    app: axum::Router,
    task: Option<JoinHandle<()>>,
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
        };
        server.serve(listener);
        server
    }

    fn serve(&mut self, listener: tokio::net::TcpListener) {
        let app = self.app.clone();
        self.task = Some(tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        }));
    }

    /// Closes the port: new connections are refused.
    pub fn stop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }

    /// Listens on the same port again.
    pub async fn restart(&mut self) {
        self.stop();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match tokio::net::TcpListener::bind(("127.0.0.1", self.port)).await {
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
