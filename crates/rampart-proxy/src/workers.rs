//! Data-plane worker threads, one single-threaded tokio runtime each (thread per core). Every
//! worker accepts on its own `SO_REUSEPORT` socket of each listener and serves its connections
//! to the end, so a request never changes threads: no work stealing, no cross-thread wake-ups,
//! and pooled upstream connections stay with the thread whose I/O driver they are registered
//! with. The control plane (reloads, health checks, admin API) runs on the caller's runtime.

use std::cell::Cell;
use std::future::Future;
use std::time::Duration;

use tokio::runtime::Handle;
use tokio::sync::watch;
use tokio::task::JoinHandle;

thread_local! {
    static WORKER_INDEX: Cell<Option<usize>> = const { Cell::new(None) };
}

/// Index of the worker running on this thread; `None` off the data plane.
pub fn current() -> Option<usize> {
    WORKER_INDEX.with(Cell::get)
}

/// The worker threads of one proxy. Dropping it stops them: their runtimes end and every
/// connection they still hold is closed.
pub struct Workers {
    handles: Vec<Handle>,
    stop: watch::Sender<bool>,
}

impl Workers {
    /// Starts `count` (at least one) worker threads.
    pub fn start(count: usize) -> std::io::Result<Workers> {
        let (stop, _) = watch::channel(false);
        crate::sharded::reserve_shards(count.max(1));
        let mut handles = Vec::with_capacity(count.max(1));
        for index in 0..count.max(1) {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            handles.push(runtime.handle().clone());
            let mut stopped = stop.subscribe();
            std::thread::Builder::new()
                .name(format!("rampart-worker-{index}"))
                .spawn(move || {
                    WORKER_INDEX.with(|w| w.set(Some(index)));
                    runtime.block_on(async move {
                        // A timer that is always due within half a second: timers the
                        // connections arm (seconds away) then never come before the timer
                        // driver's next wake-up, which would make each of them wake the
                        // driver through its eventfd (a system call per request).
                        let mut tick = tokio::time::interval(Duration::from_millis(500));
                        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
                        let stop = stopped.wait_for(|s| *s);
                        tokio::pin!(stop);
                        loop {
                            tokio::select! {
                                _ = &mut stop => break,
                                _ = tick.tick() => {}
                            }
                        }
                    });
                })?;
        }
        Ok(Workers { handles, stop })
    }

    pub fn len(&self) -> usize {
        self.handles.len()
    }

    pub fn is_empty(&self) -> bool {
        self.handles.is_empty()
    }

    /// Runs `task` on worker `index`.
    pub fn spawn<F>(&self, index: usize, task: F) -> JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.handles[index].spawn(task)
    }
}

impl Drop for Workers {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}
