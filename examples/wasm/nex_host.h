// Host services for Nex WebAssembly functions: the `nex` import module (an extension of this project; Nex
// 0.x gave WebAssembly no host services). The node brokers every call, on resources private to the workload.
//
// One import does it all: nex_host_call(service, method, args_json) with a JSON array of arguments, and a
// JSON result written to the buffer you pass. Byte values travel as {"$bytes":[...]}; plain strings are
// taken as UTF-8 bytes where bytes are expected.
//   service "kv":        get [key] → {"$bytes":[...]} or null; set [key, value] → null; delete [key]; keys [] → [..]
//   service "messaging": publish [subject, payload]; request [subject, payload] → {"$bytes":[...]}
//   service "objectstore", "http": as for JavaScript functions (README).
// Returns the result's length; a negative length means the result is an error message; a value at or below
// -1000000000 means the buffer is too small (-(needed + 1000000000)).
#ifndef NEX_HOST_H
#define NEX_HOST_H

#include <string.h>

__attribute__((import_module("nex"), import_name("host_call")))
int nex_host_call(const char *service, int service_len, const char *method, int method_len, const char *args,
                  int args_len, char *result, int result_capacity);

// Convenience wrapper over NUL-terminated strings.
static inline int nex_call(const char *service, const char *method, const char *args_json, char *result,
                           int capacity) {
    return nex_host_call(service, (int)strlen(service), method, (int)strlen(method), args_json,
                         (int)strlen(args_json), result, capacity);
}

#endif
