//! A progress line on stderr when it is a terminal: records in/out, rate,
//! dead letters, watermark delay. Results never go to stderr.

use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::Metrics;

/// The reporter thread; stops when dropped.
pub struct Progress {
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<()>>,
}

impl Progress {
    /// Starts reporting every second.
    #[must_use]
    pub fn start(metrics: Arc<Metrics>) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let handle = std::thread::Builder::new()
            .name("progress".into())
            .spawn(move || {
                let started = Instant::now();
                let mut last_in = 0;
                let mut last = Instant::now();
                while !flag.load(Ordering::Relaxed) {
                    std::thread::sleep(Duration::from_millis(200));
                    if last.elapsed() < Duration::from_secs(1) {
                        continue;
                    }
                    let rin = Metrics::get(&metrics.records_in);
                    #[allow(clippy::cast_precision_loss)]
                    let rate = (rin - last_in) as f64 / last.elapsed().as_secs_f64();
                    last_in = rin;
                    last = Instant::now();
                    let wm = metrics.watermark.load(Ordering::Relaxed);
                    let delay = if wm == i64::MIN || wm == i64::MAX {
                        "-".to_owned()
                    } else {
                        format!("{:.1}s", (crate::source::now_ms() - wm) as f64 / 1000.0)
                    };
                    eprint!(
                        "\r\x1b[2K[{:>5.0}s] in {} ({:.0}/s)  out {}  dropped {}  dead {}  state {}  wm delay {}",
                        started.elapsed().as_secs_f64(),
                        rin,
                        rate,
                        Metrics::get(&metrics.records_out),
                        Metrics::get(&metrics.dropped),
                        Metrics::get(&metrics.dead_letters),
                        Metrics::get(&metrics.state_size),
                        delay
                    );
                    let _ = std::io::stderr().flush();
                }
                eprint!("\r\x1b[2K");
            })
            .ok();
        Self { stop, handle }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}
