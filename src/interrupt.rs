//! Ctrl-C during `mesh`. Every stage writes its folder under a temporary name and renames it when
//! complete, and the NeRF checkpoints as it trains, so the work folder can be resumed from at any
//! instant: the handler says so and ends the process at once, except while the pipeline publishes
//! a stage (between its `Publishing` event and the next: replacing a stage folder, writing the
//! output file), which it lets end first, so that no temporary file is left beside the output and
//! no stage folder is half replaced.

use std::path::Path;

use orbitmesh_pipeline::Event;

#[cfg(all(target_os = "linux", target_env = "gnu"))]
mod handler {
    use std::path::Path;
    use std::sync::OnceLock;
    use std::sync::atomic::{AtomicBool, Ordering};

    static MESSAGE: OnceLock<Vec<u8>> = OnceLock::new();
    static BUSY: AtomicBool = AtomicBool::new(false);
    static INTERRUPTED: AtomicBool = AtomicBool::new(false);

    /// Writes the message and exits with 128 + SIGINT, as a shell reports an interrupted command.
    fn stop() -> ! {
        if let Some(m) = MESSAGE.get() {
            // SAFETY: write(2) is async-signal-safe, and the message was built before the handler
            // was installed.
            unsafe { libc::write(2, m.as_ptr().cast(), m.len()) };
        }
        // SAFETY: _exit(2) is async-signal-safe; it skips destructors, which is the point.
        unsafe { libc::_exit(130) }
    }

    extern "C" fn on_sigint(_: libc::c_int) {
        INTERRUPTED.store(true, Ordering::SeqCst);
        if !BUSY.load(Ordering::SeqCst) {
            stop();
        }
    }

    pub fn install(work: &Path) {
        let message = format!(
            "\ninterrupted: {} keeps every finished stage; run the same command again to resume\n",
            work.display()
        );
        let _ = MESSAGE.set(message.into_bytes());
        let handler = on_sigint as extern "C" fn(libc::c_int);
        // SAFETY: the handler only touches atomics and async-signal-safe calls.
        unsafe { libc::signal(libc::SIGINT, handler as libc::sighandler_t) };
    }

    pub fn set_busy(busy: bool) {
        BUSY.store(busy, Ordering::SeqCst);
        if !busy && INTERRUPTED.load(Ordering::SeqCst) {
            stop();
        }
    }
}

/// From now on, Ctrl-C ends the process with a line saying `work` can be resumed from.
pub fn resume_hint_on_sigint(work: &Path) {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    handler::install(work);
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    let _ = work;
}

/// Holds Ctrl-C off from a `Publishing` event to the next event; an interruption meanwhile takes
/// effect then. (Only one run at a time may report here.)
pub fn hold_while_publishing(event: &Event) {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    handler::set_busy(matches!(event, Event::Publishing { .. }));
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    let _ = event;
}
