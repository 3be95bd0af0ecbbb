// Escape attempts from inside a sandbox, for the sandbox tests. Built static (`cc -static`): the sandbox
// has no loader and no libraries. Each probe prints one line, "PROBE <name> blocked <why>" or
// "PROBE <name> ESCAPED <what>", then the program waits to be stopped (so that its processes can be seen).
//   escape probes HOST_PID HOST_PORT OTHER_IP   the file, process, signal, network and kernel probes
//   escape memory MIB                         touches MIB MiB, printing progress (the cgroup should kill it)
//   escape forkbomb                           forks until refused (the pids limit should stop it)
//   escape natsecho SUBJECT                   a NATS echo responder on $NATS_URL (the one server it may reach)
//   escape do STEP...                         a tiny script, for the node's scenarios in a sandbox: steps
//                                             `out TEXT`, `err TEXT`, `env KEY`, `sleep SECONDS`, `exit CODE`
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/ptrace.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

static void report(const char *name, int escaped, const char *detail) {
    printf("PROBE %s %s %s\n", name, escaped ? "ESCAPED" : "blocked", detail);
    fflush(stdout);
}

static void probe_open(const char *name, const char *path, int flags) {
    int fd = open(path, flags, 0644);
    if (fd >= 0) {
        report(name, 1, path);
        close(fd);
    } else {
        report(name, 0, strerror(errno));
    }
}

static void probe_connect(const char *name, const char *ip, int port) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((unsigned short)port)};
    inet_pton(AF_INET, ip, &a.sin_addr);
    if (connect(fd, (struct sockaddr *)&a, sizeof a) == 0) {
        report(name, 1, ip);
    } else {
        report(name, 0, strerror(errno));
    }
    close(fd);
}

static void probes(int host_pid, int host_port, const char *other_ip) {
    probe_open("read-host-file", "/etc/passwd", O_RDONLY);
    probe_open("read-root-home", "/root", O_RDONLY | O_DIRECTORY);
    probe_open("write-root", "/escape-test", O_WRONLY | O_CREAT);
    probe_open("write-workload", "/workload/escape-test", O_WRONLY | O_CREAT);
    int tmp = open("/tmp/escape-test", O_WRONLY | O_CREAT, 0644);
    printf("TMP %s\n", tmp >= 0 ? "writable" : strerror(errno));
    if (tmp >= 0) close(tmp);

    // Processes: only the sandbox's own are visible.
    int count = 0;
    char names[1024] = "";
    DIR *proc = opendir("/proc");
    struct dirent *e;
    while (proc && (e = readdir(proc))) {
        if (e->d_name[0] < '0' || e->d_name[0] > '9') continue;
        count++;
        char path[300], comm[64] = "";
        snprintf(path, sizeof path, "/proc/%s/comm", e->d_name);
        int fd = open(path, O_RDONLY);
        if (fd >= 0) {
            ssize_t n = read(fd, comm, sizeof comm - 1);
            comm[n > 0 ? n - 1 : 0] = 0;
            close(fd);
        }
        strncat(names, comm, sizeof names - strlen(names) - 2);
        strcat(names, ",");
    }
    if (proc) closedir(proc);
    printf("PROCESSES %d %s\n", count, names);
    report("signal-host", kill(host_pid, 0) == 0, kill(host_pid, 0) == 0 ? "the node is reachable" : strerror(errno));

    probe_connect("connect-loopback", "127.0.0.1", host_port);
    probe_connect("connect-other-host", other_ip, host_port);

    report("unshare", unshare(CLONE_NEWUSER) == 0, strerror(errno));
    report("mount", mount("tmpfs", "/tmp", "tmpfs", 0, NULL) == 0, strerror(errno));
    report("ptrace", ptrace(PTRACE_ATTACH, 1, NULL, NULL) == 0, strerror(errno));
    printf("UID %d\n", (int)getuid());
    printf("DONE\n");
    fflush(stdout);
}

static void memory(long mib) {
    for (long i = 1; i <= mib; i++) {
        char *chunk = mmap(NULL, 1 << 20, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (chunk == MAP_FAILED) {
            printf("MEMORY refused at %ld MiB: %s\n", i, strerror(errno));
            fflush(stdout);
            return;
        }
        memset(chunk, 1, 1 << 20);
        if (i % 64 == 0) {
            printf("MEMORY %ld MiB\n", i);
            fflush(stdout);
        }
    }
    printf("MEMORY ESCAPED all %ld MiB\n", mib);
    fflush(stdout);
}

static void forkbomb(void) {
    int made = 0;
    for (; made < 100000; made++) {
        pid_t pid = fork();
        if (pid == 0) {
            pause();
            _exit(0);
        }
        if (pid < 0) {
            printf("FORK refused after %d: %s\n", made, strerror(errno));
            fflush(stdout);
            break;
        }
    }
    if (made == 100000) printf("FORK ESCAPED %d processes\n", made);
    fflush(stdout);
    signal(SIGTERM, SIG_IGN);
    kill(0, SIGTERM);  // our own process group: the children
    while (wait(NULL) > 0) {
    }
}

// A minimal NATS client: CONNECT, SUB, answer PING and echo every request on `subject`.
static void natsecho(const char *subject) {
    const char *url = getenv("NATS_URL");
    if (!url) {
        printf("NATS no NATS_URL\n");
        return;
    }
    const char *hostport = strstr(url, "://") ? strstr(url, "://") + 3 : url;
    char host[64] = "";
    int port = 4222;
    sscanf(hostport, "%63[^:]:%d", host, &port);
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((unsigned short)port)};
    inet_pton(AF_INET, host, &a.sin_addr);
    if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
        printf("NATS cannot connect to %s:%d: %s\n", host, port, strerror(errno));
        fflush(stdout);
        return;
    }
    FILE *in = fdopen(fd, "r");
    char line[4096];
    if (!fgets(line, sizeof line, in) || strncmp(line, "INFO", 4) != 0) return;
    dprintf(fd, "CONNECT {\"verbose\":false,\"name\":\"natsecho\"}\r\nSUB %s 1\r\nPING\r\n", subject);
    printf("NATS connected to %s:%d\n", host, port);
    fflush(stdout);
    while (fgets(line, sizeof line, in)) {
        if (strncmp(line, "PING", 4) == 0) {
            dprintf(fd, "PONG\r\n");
        } else if (strncmp(line, "MSG ", 4) == 0) {
            char subj[256], sid[32], reply[256] = "";
            int size = 0;
            if (sscanf(line, "MSG %255s %31s %255s %d", subj, sid, reply, &size) != 4) continue;
            static char payload[1 << 16];
            if (size > (int)sizeof payload - 2 || fread(payload, 1, (size_t)size + 2, in) != (size_t)size + 2) break;
            dprintf(fd, "PUB %s %d\r\n", reply, size);
            if (write(fd, payload, (size_t)size + 2) < 0) break;
        }
    }
}

// Runs `do` steps in order; without an `exit` step it waits to be stopped.
static void steps(int argc, char **argv) {
    for (int i = 2; i + 1 < argc; i += 2) {
        const char *step = argv[i], *arg = argv[i + 1];
        if (strcmp(step, "out") == 0) printf("%s\n", arg);
        else if (strcmp(step, "err") == 0) fprintf(stderr, "%s\n", arg);
        else if (strcmp(step, "env") == 0) printf("%s=%s\n", arg, getenv(arg) ? getenv(arg) : "");
        else if (strcmp(step, "sleep") == 0) sleep((unsigned)atoi(arg));
        else if (strcmp(step, "exit") == 0) {
            fflush(stdout);
            exit(atoi(arg));
        }
        fflush(stdout);
        fflush(stderr);
    }
}

int main(int argc, char **argv) {
    if (argc >= 5 && strcmp(argv[1], "probes") == 0) probes(atoi(argv[2]), atoi(argv[3]), argv[4]);
    else if (argc >= 3 && strcmp(argv[1], "memory") == 0) memory(atol(argv[2]));
    else if (argc >= 2 && strcmp(argv[1], "forkbomb") == 0) forkbomb();
    else if (argc >= 3 && strcmp(argv[1], "natsecho") == 0) natsecho(argv[2]);
    else if (argc >= 2 && strcmp(argv[1], "do") == 0) steps(argc, argv);
    else {
        fprintf(stderr, "usage: escape probes HOST_PID HOST_PORT OTHER_IP | memory MIB | forkbomb | natsecho SUBJ\n");
        return 2;
    }
    for (;;) pause();
}
