//! Thread scheduling for the daemon: OCR may take every core, yet a request is answered
//! at once.
//!
//! Two Linux settings, both per thread and both best effort (an older kernel ignores them):
//! - CPU pool threads run at nice 10, so when they compete with the threads that serve HTTP
//!   for a core, the HTTP threads get ~90% of it.
//! - The async threads (HTTP and actors) ask the scheduler for a short time slice (EEVDF's
//!   custom slice, Linux 6.12 and later). A waking thread with a shorter slice than the one
//!   running may preempt it at once; with the default slice it waits until the running OCR
//!   thread's slice is used up, a few milliseconds later.

/// Nice value of pool threads.
const POOL_THREAD_NICE: libc::c_int = 10;

/// Time slice the async threads ask for: the smallest the kernel grants (0.1 ms).
const ASYNC_THREAD_SLICE_NANOS: u64 = 100_000;

/// Lowers the calling thread's scheduling priority to nice 10, with the default time slice
/// (a thread inherits its creator's slice, and the pool may be started from an async thread).
pub fn lower_this_thread_priority() {
    if set_this_thread(POOL_THREAD_NICE, 0) != 0 {
        // SAFETY: gettid has no preconditions; setpriority only changes this thread's nice.
        unsafe {
            let tid = libc::gettid();
            libc::setpriority(libc::PRIO_PROCESS, tid as libc::id_t, POOL_THREAD_NICE);
        }
    }
}

/// Asks for a short time slice for the calling thread (normal policy, nice 0), so that it
/// preempts CPU-bound threads as soon as it wakes up to serve a request.
pub fn request_short_slice_for_this_thread() {
    set_this_thread(0, ASYNC_THREAD_SLICE_NANOS);
}

/// Sets the calling thread's nice value and time slice (0: the kernel's default) under the
/// normal policy; returns sched_setattr's result (0 on success).
fn set_this_thread(nice: libc::c_int, slice_nanos: u64) -> libc::c_long {
    let attr = libc::sched_attr {
        size: std::mem::size_of::<libc::sched_attr>() as u32,
        sched_policy: libc::SCHED_OTHER as u32,
        sched_flags: 0,
        sched_nice: nice,
        sched_priority: 0,
        sched_runtime: slice_nanos,
        sched_deadline: 0,
        sched_period: 0,
    };
    // SAFETY: sched_setattr reads `attr` (whose size field is its true size) during the call;
    // pid 0 is the calling thread.
    unsafe {
        libc::syscall(
            libc::SYS_sched_setattr,
            0,
            &attr as *const libc::sched_attr,
            0,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn this_thread() -> libc::sched_attr {
        let mut attr: libc::sched_attr = unsafe { std::mem::zeroed() };
        // SAFETY: sched_getattr writes at most `size` bytes into `attr`.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_sched_getattr,
                0,
                &mut attr as *mut libc::sched_attr,
                std::mem::size_of::<libc::sched_attr>() as u32,
                0,
            )
        };
        assert_eq!(rc, 0);
        attr
    }

    #[test]
    fn pool_threads_drop_the_short_slice_they_inherit() {
        std::thread::spawn(|| {
            request_short_slice_for_this_thread();
            std::thread::spawn(|| {
                lower_this_thread_priority();
                let attr = this_thread();
                assert_eq!(attr.sched_nice, POOL_THREAD_NICE);
                // The kernel's default slice (reported as 0 or as its length), not ours.
                assert_ne!(attr.sched_runtime, ASYNC_THREAD_SLICE_NANOS);
            })
            .join()
            .unwrap();
        })
        .join()
        .unwrap();
    }

    #[test]
    fn the_short_slice_is_granted_on_this_kernel_or_ignored() {
        std::thread::spawn(|| {
            request_short_slice_for_this_thread();
            let attr = this_thread();
            assert_eq!(attr.sched_policy, libc::SCHED_OTHER as u32);
            assert_eq!(attr.sched_nice, 0);
            // Kernels before 6.12 report 0 (no custom slice); later ones the slice asked for.
            assert!(
                attr.sched_runtime == 0 || attr.sched_runtime == ASYNC_THREAD_SLICE_NANOS,
                "{}",
                attr.sched_runtime
            );
        })
        .join()
        .unwrap();
    }
}
