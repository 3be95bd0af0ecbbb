#ifndef NEX_V8_H
#define NEX_V8_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/// A compiled JavaScript function in its own isolate (heap) and context. Not thread-safe: call it from one
/// thread at a time (each entry point takes the isolate's lock).
typedef struct nex_js_function nex_js_function;

/// A host call from JavaScript (`this.hostServices.<service>.<method>(...)`): `args_json` is a JSON array.
/// Returns a malloc'd JSON text (the result) and sets `*failed` to 1 when it is an error message instead.
typedef char *(*nex_js_host_fn)(void *context, const char *service, const char *method, const char *args_json,
                                size_t args_length, int *failed, size_t *result_length);
/// `console.log` (level 0) and `console.error` (level 8).
typedef void (*nex_js_log_fn)(void *context, int level, const char *text, size_t length);

/// Limits of one function.
typedef struct {
    size_t heap_bytes;         // V8 heap (old + young generation)
    size_t array_buffer_bytes; // ArrayBuffer backing stores
    uint64_t cpu_millis;       // CPU time of one call
} nex_js_limits;

/// What a call produced.
enum nex_js_result_kind {
    NEX_JS_BYTES = 0,     // the reply bytes (Uint8Array/ArrayBuffer raw, string UTF-8, other JSON)
    NEX_JS_EMPTY = 1,     // undefined or null: an empty reply
    NEX_JS_THREW = 2,     // a thrown error: message and stack
    NEX_JS_CPU_LIMIT = 3, // terminated at the CPU limit
    NEX_JS_HEAP_LIMIT = 4, // terminated at the heap limit (the function is rebuilt before its next call)
    NEX_JS_PERMANENT = 5   // a thrown error with `permanent: true` (retrying cannot help): message and stack
};

/// Starts V8 once per process (idempotent, thread-safe).
void nex_js_initialize(void);

/// Compiles `source`, whose completion value must be a function; `name` (may be NULL: `function.js`) is the file
/// its stacks and errors name. `data` (may be NULL) is handed to the script as the ArrayBuffer `__nexData`, for
/// a runtime written in JavaScript (the WebAssembly runner passes the module).
/// Returns NULL and a malloc'd `*error` on failure.
nex_js_function *nex_js_compile(const char *source, size_t length, const char *name, const uint8_t *data,
                                size_t data_length,
                                nex_js_limits limits, void *context, nex_js_host_fn host, nex_js_log_fn log,
                                char **error);

/// Calls the function with `(subject, payload)`, and a third argument `ctx` parsed from `context` (JSON of an
/// object, may be NULL or empty: no third argument); `*out` (malloc'd, may be NULL when empty) holds the reply or
/// the error text. Returns a `nex_js_result_kind`.
int nex_js_call(nex_js_function *function, const char *subject, const uint8_t *payload, size_t payload_length,
                const char *context, size_t context_length, uint8_t **out, size_t *out_length);

void nex_js_destroy(nex_js_function *function);

#ifdef __cplusplus
}
#endif

#endif
