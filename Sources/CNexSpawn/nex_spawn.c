#define _GNU_SOURCE
#include "nex_spawn.h"

#include <errno.h>
#include <string.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sched.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <linux/capability.h>
#include <linux/vm_sockets.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

// Closes every descriptor >= `low` except `keep`: close_range where the kernel has it, else one by one.
static void close_all_from(int low, int keep) {
#ifdef SYS_close_range
    if (keep > low && syscall(SYS_close_range, (unsigned)low, (unsigned)keep - 1, 0) != 0) goto slow;
    if (syscall(SYS_close_range, (unsigned)keep + 1, ~0U, 0) != 0) goto slow;
    return;
slow:
#endif
    for (int fd = low; fd < 65536; fd++) {
        if (fd != keep) close(fd);
    }
}

// Writes the calling process's pid into `file` (a cgroup's cgroup.procs); async-signal-safe.
static int join_cgroup(const char *file) {
    char digits[16];
    int n = 0;
    for (pid_t pid = getpid(); pid > 0 && n < 15; pid /= 10) digits[n++] = (char)('0' + pid % 10);
    char text[16];
    for (int i = 0; i < n; i++) text[i] = digits[n - 1 - i];
    int fd = open(file, O_WRONLY | O_CLOEXEC);
    if (fd < 0) return -1;
    ssize_t written = write(fd, text, (size_t)n);
    close(fd);
    return written == n ? 0 : -1;
}

// Only async-signal-safe calls between fork and exec: the parent is multi-threaded.
static void child(const char *path, char *const argv[], char *const envp[], const char *cwd, const int *fds,
                  int nfds, char *const cgroup_procs[], int new_process_group, int death_signal, int drop_capabilities,
                  pid_t parent, int report_fd) {
    if (death_signal) {
        prctl(PR_SET_PDEATHSIG, death_signal);
        if (getppid() != parent) _exit(127);  // the parent is already gone
    }
    if (new_process_group) setpgid(0, 0);
    int step = NEX_SPAWN_STEP_CGROUP;
    for (int i = 0; cgroup_procs && cgroup_procs[i]; i++) {
        if (join_cgroup(cgroup_procs[i]) != 0) goto fail;
    }
    for (int sig = 1; sig < NSIG; sig++) signal(sig, SIG_DFL);  // NIO ignores SIGPIPE; workloads must not inherit it
    sigset_t all;
    sigemptyset(&all);
    sigprocmask(SIG_SETMASK, &all, NULL);

    int null_fd = open("/dev/null", O_RDWR);
    // Move the sources above the targets first so that dup2 onto 0..nfds-1 never clobbers one still needed.
    int moved[NEX_SPAWN_MAX_FDS];
    for (int i = 0; i < nfds; i++) moved[i] = fcntl(fds[i] >= 0 ? fds[i] : null_fd, F_DUPFD, 16);
    for (int i = 0; i < nfds; i++) dup2(moved[i], i);
    // Close everything else except the report pipe (close-on-exec).
    close_all_from(nfds, report_fd);
    step = NEX_SPAWN_STEP_CHDIR;
    if (cwd && chdir(cwd) != 0) goto fail;
    step = NEX_SPAWN_STEP_CAPABILITIES;
    if (drop_capabilities && nex_drop_capabilities() != 0) goto fail;
    step = NEX_SPAWN_STEP_EXEC;
    execve(path, argv, envp);
fail:;
    int report[2] = {errno, step};
    ssize_t ignored = write(report_fd, report, sizeof report);
    (void)ignored;
    _exit(127);
}

pid_t nex_spawn(const char *path, char *const argv[], char *const envp[], const char *cwd, const int *fds, int nfds,
                char *const cgroup_procs[], int new_process_group, int death_signal, int drop_capabilities,
                int *failed_step) {
    *failed_step = 0;
    if (nfds < 3 || nfds > NEX_SPAWN_MAX_FDS) return -EINVAL;
    int report[2];
    if (pipe2(report, O_CLOEXEC) != 0) return -errno;
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid < 0) {
        int err = errno;
        close(report[0]);
        close(report[1]);
        return -err;
    }
    if (pid == 0) {
        child(path, argv, envp, cwd, fds, nfds, cgroup_procs, new_process_group, death_signal, drop_capabilities,
              parent, report[1]);
    }
    close(report[1]);
    int failure[2] = {0, 0};  // errno, step
    ssize_t n;
    do {
        n = read(report[0], failure, sizeof failure);
    } while (n < 0 && errno == EINTR);
    close(report[0]);
    if (n == sizeof failure) {
        int status;
        while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
        }
        *failed_step = failure[1];
        return -failure[0];
    }
    return pid;
}

int nex_pipe_cloexec(int fds[2]) { return pipe2(fds, O_CLOEXEC); }

int nex_setns_net(int fd) { return setns(fd, CLONE_NEWNET); }

int nex_vsock_connect(unsigned int cid, unsigned int port) {
    int fd = socket(AF_VSOCK, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return -errno;
    struct sockaddr_vm address = {.svm_family = AF_VSOCK, .svm_cid = cid, .svm_port = port};
    if (connect(fd, (struct sockaddr *)&address, sizeof address) != 0) {
        int err = errno;
        close(fd);
        return -err;
    }
    return fd;
}

int nex_memfd(const char *name) { return memfd_create(name, MFD_CLOEXEC); }

int nex_eventfd(void) { return eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK); }

int nex_epoll_exclusive(int a, int b) {
    int epfd = epoll_create1(EPOLL_CLOEXEC);
    if (epfd < 0) return -1;
    int fds[2] = {a, b};
    for (int i = 0; i < 2; i++) {
        struct epoll_event event = {.events = EPOLLIN | EPOLLEXCLUSIVE, .data.fd = fds[i]};
        if (epoll_ctl(epfd, EPOLL_CTL_ADD, fds[i], &event) != 0) {
            int saved = errno;
            close(epfd);
            errno = saved;
            return -1;
        }
    }
    return epfd;
}

int nex_epoll_wait(int epfd, int flagged, int timeout_ms) {
    struct epoll_event events[2];
    int count = epoll_wait(epfd, events, 2, timeout_ms);
    if (count < 0) return -1;
    for (int i = 0; i < count; i++) {
        if (events[i].data.fd == flagged) return 1;
    }
    return 0;
}

int nex_pidfd_open(pid_t pid) {
    // PIDFD_NONBLOCK is not needed: the descriptor is only waited on, never read.
    int fd = (int)syscall(SYS_pidfd_open, pid, 0);
    if (fd >= 0) fcntl(fd, F_SETFD, FD_CLOEXEC);
    return fd;
}

int nex_epoll_create(void) { return epoll_create1(EPOLL_CLOEXEC); }

int nex_epoll_add(int epfd, int fd, long long tag) {
    struct epoll_event event = {.events = EPOLLIN, .data.u64 = (unsigned long long)tag};
    return epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &event);
}

int nex_epoll_wait_tags(int epfd, long long *tags, int max) {
    struct epoll_event events[16];
    int count = epoll_wait(epfd, events, max < 16 ? max : 16, -1);
    for (int i = 0; i < count; i++) tags[i] = (long long)events[i].data.u64;
    return count;
}

void nex_set_thread_name(const char *name) {
    char cut[16];
    strncpy(cut, name, sizeof cut - 1);
    cut[sizeof cut - 1] = 0;
    prctl(PR_SET_NAME, cut, 0, 0, 0);
}

int nex_drop_capabilities(void) {
    // The bounding set first (it needs CAP_SETPCAP, which the capset below takes away). A process without
    // CAP_SETPCAP cannot shrink it (EPERM), and needs not: it holds no capability, and with no_new_privs no
    // exec can give it one.
    for (int cap = 0; cap <= 63; cap++) {
        int held = prctl(PR_CAPBSET_READ, cap, 0, 0, 0);
        if (held < 0 && errno == EINVAL) break;  // past the last capability this kernel knows
        if (held == 1 && prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0) {
            if (errno == EPERM) break;
            return -1;
        }
    }
    if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) != 0 && errno != EINVAL) return -1;
    struct __user_cap_header_struct header = {_LINUX_CAPABILITY_VERSION_3, 0};
    struct __user_cap_data_struct data[2];
    memset(data, 0, sizeof data);
    if (syscall(SYS_capset, &header, data) != 0) return -1;
    return prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
}
