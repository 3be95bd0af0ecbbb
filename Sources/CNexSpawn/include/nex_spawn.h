#ifndef NEX_SPAWN_H
#define NEX_SPAWN_H

#include <sys/types.h>

/// The most descriptors a child can be given (0-2 and a few more).
#define NEX_SPAWN_MAX_FDS 8

/// Starts `path` with `argv` and `envp` (NULL-terminated) in a child process.
///
/// The child gets `fds[0..nfds-1]` as its descriptors 0..nfds-1 (3 <= nfds <= NEX_SPAWN_MAX_FDS; -1 means
/// /dev/null) and no other descriptor, default signal dispositions and an empty signal mask, its own process
/// group when `new_process_group` is non-zero, and `death_signal` (when non-zero) once the spawning thread
/// exits. The child first writes its pid into each file of `cgroup_procs` (NULL-terminated, or NULL), so it
/// runs in those cgroups from its first instruction. With `drop_capabilities` it executes with no capability
/// and no_new_privs (``nex_drop_capabilities``). `cwd` may be NULL. Returns the pid, or -errno when a step
/// failed (reported through a close-on-exec pipe, so a missing or non-executable file is an error here, not an
/// exit code later); `*failed_step` then says which: NEX_SPAWN_STEP_CGROUP, _CHDIR, _CAPABILITIES or _EXEC (0:
/// before the fork).
pid_t nex_spawn(const char *path, char *const argv[], char *const envp[], const char *cwd, const int *fds, int nfds,
                char *const cgroup_procs[], int new_process_group, int death_signal, int drop_capabilities,
                int *failed_step);

#define NEX_SPAWN_STEP_CGROUP 1
#define NEX_SPAWN_STEP_CHDIR 2
#define NEX_SPAWN_STEP_EXEC 3
#define NEX_SPAWN_STEP_CAPABILITIES 4

/// pipe2(fds, O_CLOEXEC): both ends close on exec, so no child inherits a pipe meant for another.
int nex_pipe_cloexec(int fds[2]);

/// setns(fd, CLONE_NEWNET): the calling thread joins the network namespace `fd` refers to.
int nex_setns_net(int fd);

/// A vsock stream connection to (cid, port), close-on-exec; -errno on failure. In a VM, CID 2 is the host.
int nex_vsock_connect(unsigned int cid, unsigned int port);

/// memfd_create(name, MFD_CLOEXEC): an anonymous in-memory file (a WebAssembly function's stdin/stdout).
int nex_memfd(const char *name);

/// eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK).
int nex_eventfd(void);

/// A close-on-exec epoll instance watching `a` and `b` for input, both EPOLLEXCLUSIVE (an event wakes one of
/// the threads waiting on such instances, not all); -1 with errno on failure.
int nex_epoll_exclusive(int a, int b);

/// epoll_wait for up to two events, at most `timeout_ms` (-1: no limit): 1 when `flagged` was among them, else 0
/// (also when the time ran out); or -1 with errno (EINTR included).
int nex_epoll_wait(int epfd, int flagged, int timeout_ms);

/// pidfd_open(pid, 0), close-on-exec: a descriptor that becomes readable when the process `pid` ends (also
/// when it has ended already and is not yet reaped); -1 with errno on failure.
int nex_pidfd_open(pid_t pid);

/// A close-on-exec epoll instance; -1 with errno on failure.
int nex_epoll_create(void);

/// Watches `fd` for input in `epfd`, tagged with `tag` (given back by nex_epoll_wait_tags); -1 with errno.
int nex_epoll_add(int epfd, int fd, long long tag);

/// Waits (no time limit) for input on `epfd` and writes the tags of up to `max` ready descriptors to `tags`:
/// their count, or -1 with errno (EINTR included).
int nex_epoll_wait_tags(int epfd, long long *tags, int max);

/// Names the calling thread for the kernel (PR_SET_NAME: 15 bytes and a NUL; longer names are cut).
void nex_set_thread_name(const char *name);

/// Drops every capability of the calling thread (bounding, ambient, effective, permitted, inheritable) and sets
/// no_new_privs: what is left of root is its user id. The bounding set is left as it is where it cannot be
/// shrunk (no CAP_SETPCAP: nothing to lose, and nothing an exec could gain). Async-signal-safe; -1 with errno on
/// failure.
int nex_drop_capabilities(void);

#endif
