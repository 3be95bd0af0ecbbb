// A Nex WebAssembly function (WASI preview1 command): the payload arrives on stdin, the real trigger subject
// as argv[1], and everything written to stdout is the reply. Request "hello" on wasm.echo → "hellowasm.echo".
#include <stdio.h>
#include <unistd.h>

int main(int argc, char **argv) {
    char buffer[4096];
    ssize_t n;
    while ((n = read(0, buffer, sizeof buffer)) > 0) fwrite(buffer, 1, (size_t)n, stdout);
    if (argc > 1) fputs(argv[1], stdout);
    return 0;
}
