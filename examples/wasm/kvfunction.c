// A WebAssembly function with host services: stores the payload under "last" in its private key-value bucket
// and answers with the bucket's keys and the stored value as JSON.
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "nex_host.h"

int main(void) {
    char payload[1024];
    ssize_t n = read(0, payload, sizeof payload - 1);
    payload[n > 0 ? n : 0] = 0;

    char args[1200];
    snprintf(args, sizeof args, "[\"last\", \"%s\"]", payload);  // a string value is stored as its UTF-8 bytes
    char result[4096];
    int length = nex_call("kv", "set", args, result, sizeof result);
    if (length < 0) {
        fprintf(stderr, "kv.set failed: %.*s\n", -length, result);
        return 1;
    }
    length = nex_call("kv", "keys", "[]", result, sizeof result);
    if (length < 0) return 2;
    printf("{\"keys\":%.*s,", length, result);
    length = nex_call("kv", "get", "[\"last\"]", result, sizeof result);
    if (length < 0) return 3;
    printf("\"last\":%.*s}", length, result);
    return 0;
}
