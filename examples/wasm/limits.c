// A test function for limits and failures: its trigger subject says what to do.
//   *.loop  spins forever (stopped by the CPU-time limit, cpu_ms)
//   *.grow  allocates until memory runs out (stopped by the memory cap), then exits 2
//   *.fail  writes to stderr and exits 3
//   *.bad   writes to stderr and exits 65: a permanent failure (a JetStream trigger dead-letters at once)
//   *.context  answers its trigger's context, NEX_TRIGGER_CONTEXT (empty without one)
//   *.state counts its calls in a static and leaves a mark in zeroed memory: a new instance per trigger
//           always answers "calls=1 memory=clean"
//   else    answers "ok"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

char *volatile last_block;
static int calls;
static char scratch[64];  // keeps the allocations observable, so the compiler cannot elide them

static int ends_with(const char *s, const char *suffix) {
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && strcmp(s + n - m, suffix) == 0;
}

int main(int argc, char **argv) {
    const char *subject = argc > 1 ? argv[1] : "";
    if (ends_with(subject, ".loop")) {
        volatile unsigned long spins = 0;
        for (;;) spins++;
    }
    if (ends_with(subject, ".grow")) {
        size_t total = 0;
        for (;;) {
            char *block = malloc(1 << 20);
            if (!block) {
                fprintf(stderr, "out of memory after %zu MiB\n", total >> 20);
                return 2;
            }
            for (size_t i = 0; i < (1 << 20); i += 4096) block[i] = 1;  // touch every page, cheaply
            last_block = block;
            total += 1 << 20;
        }
    }
    if (ends_with(subject, ".fail")) {
        fprintf(stderr, "failing on purpose\n");
        return 3;
    }
    if (ends_with(subject, ".bad")) {
        fprintf(stderr, "this input can never work\n");
        return 65;
    }
    if (ends_with(subject, ".context")) {
        const char *context = getenv("NEX_TRIGGER_CONTEXT");
        fputs(context ? context : "", stdout);
        return 0;
    }
    if (ends_with(subject, ".state")) {
        calls++;
        int dirty = scratch[0] != 0;
        strcpy(scratch, "used by an earlier trigger");
        printf("calls=%d memory=%s", calls, dirty ? "dirty" : "clean");
        return 0;
    }
    fputs("ok", stdout);
    return 0;
}
