//! `streamcart` roles as child processes of a test, each logging to a file of its own.

use std::path::PathBuf;
use std::time::Duration;

use crate::stack::{kafka_bootstrap, registry_url};

/// Path of the `streamcart` binary built beside the test executables.
pub fn streamcart_bin() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    // target/<profile>/deps/<test> → target/<profile>/streamcart
    let dir = exe.parent().and_then(|d| d.parent()).expect("target dir");
    let bin = dir.join("streamcart");
    assert!(
        bin.exists(),
        "{} is missing: build the workspace first (cargo build --workspace)",
        bin.display()
    );
    bin
}

/// Where the role started with `log_name` writes its log.
pub fn log_path(log_name: &str) -> PathBuf {
    streamcart_bin()
        .parent()
        .expect("target dir")
        .join("test-logs")
        .join(format!("{log_name}.log"))
}

/// The log of the role started with `log_name` so far (empty before it wrote anything).
pub fn read_log(log_name: &str) -> String {
    std::fs::read_to_string(log_path(log_name)).unwrap_or_default()
}

/// A child process that is killed when dropped.
#[derive(Debug)]
pub struct Child(pub std::process::Child);

impl Child {
    /// Kills the process without warning (SIGKILL) and reaps it.
    pub fn kill_hard(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }

    /// Sends SIGTERM and waits up to `timeout` for a clean exit; returns whether it exited 0.
    pub fn terminate(&mut self, timeout: Duration) -> bool {
        let pid = self.0.id().to_string();
        let _ = std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status();
        let deadline = std::time::Instant::now() + timeout;
        while std::time::Instant::now() < deadline {
            if let Ok(Some(status)) = self.0.try_wait() {
                return status.success();
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        self.kill_hard();
        false
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        self.kill_hard();
    }
}

/// Starts `streamcart <args>` with the stack's connection settings and `env` on top; its log goes
/// to [`log_path`]`(log_name)`.
pub fn spawn_streamcart(args: &[&str], env: &[(&str, String)], log_name: &str) -> Child {
    let bin = streamcart_bin();
    let path = log_path(log_name);
    std::fs::create_dir_all(path.parent().expect("log dir")).expect("log dir");
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .expect("log file");
    let mut cmd = std::process::Command::new(bin);
    cmd.args(args)
        .env("STREAMCART_KAFKA_BOOTSTRAP", kafka_bootstrap())
        .env("STREAMCART_REGISTRY_URL", registry_url())
        .env("RUST_LOG", "info,rdkafka=warn")
        .stdout(log.try_clone().expect("log"))
        .stderr(log);
    for (k, v) in env {
        cmd.env(k, v);
    }
    Child(cmd.spawn().expect("spawn streamcart"))
}
