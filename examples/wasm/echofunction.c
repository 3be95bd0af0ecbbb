// A Nex WebAssembly function (WASI preview1 command): the payload arrives on stdin, the real trigger subject
// as argv[1], and everything written to stdout is the reply. Request "hello" on wasm.echo → "hellowasm.echo".
// Plain read/write rather than stdio: a smaller module is translated faster, and it is instantiated per call.
#include <string.h>
#include <unistd.h>

int main(int argc, char **argv) {
    char buffer[4096];
    ssize_t n;
    while ((n = read(0, buffer, sizeof buffer)) > 0) {
        for (ssize_t done = 0; done < n;) {
            ssize_t w = write(1, buffer + done, (size_t)(n - done));
            if (w <= 0) return 1;
            done += w;
        }
    }
    if (argc > 1 && write(1, argv[1], strlen(argv[1])) < 0) return 1;
    return 0;
}
