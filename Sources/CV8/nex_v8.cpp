// The only file that sees V8: a function in its own isolate, with heap, ArrayBuffer and CPU limits.
#include "nex_v8.h"

#include <libplatform/libplatform.h>
#include <v8.h>

#include <pthread.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include <cxxabi.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

// libnode is built without RTTI, so it exports no type_info for V8's classes, yet the allocator below derives
// from one and this file is compiled with RTTI (SwiftPM has no safe flag to turn it off). The base's type_info is
// defined here, weakly, so the vtable links; nothing here uses typeid or dynamic_cast on V8 types.
extern const __cxxabiv1::__class_type_info v8_allocator_type_info __asm__("_ZTIN2v811ArrayBuffer9AllocatorE");
__attribute__((weak)) extern const __cxxabiv1::__class_type_info v8_allocator_type_info(
    "N2v811ArrayBuffer9AllocatorE");

namespace {

std::unique_ptr<v8::Platform> platform;  // never destroyed: V8 must outlive every isolate
std::once_flag initialized;

char *copy_string(const std::string &s, size_t *length = nullptr) {
    char *out = static_cast<char *>(malloc(s.size() + 1));
    memcpy(out, s.data(), s.size());
    out[s.size()] = 0;
    if (length) *length = s.size();
    return out;
}

// Counts ArrayBuffer memory so a function cannot allocate past its limit outside the V8 heap.
class CountingAllocator : public v8::ArrayBuffer::Allocator {
  public:
    explicit CountingAllocator(size_t limit) : limit_(limit) {}
    void *Allocate(size_t length) override { return reserve(length) ? calloc(length ? length : 1, 1) : nullptr; }
    void *AllocateUninitialized(size_t length) override {
        return reserve(length) ? malloc(length ? length : 1) : nullptr;
    }
    void Free(void *data, size_t length) override {
        used_ -= length;
        free(data);
    }

  private:
    bool reserve(size_t length) {
        size_t now = used_.fetch_add(length);
        if (now + length > limit_) {
            used_ -= length;
            return false;
        }
        return true;
    }
    std::atomic<size_t> used_{0};
    size_t limit_;
};

uint64_t thread_cpu_ns(clockid_t clock) {
    timespec ts{};
    clock_gettime(clock, &ts);
    return uint64_t(ts.tv_sec) * 1000000000ull + uint64_t(ts.tv_nsec);
}

// One watchdog thread for every running call: it reads each caller thread's CPU clock every 5 ms and
// terminates the calls past their limit.
struct Watch {
    v8::Isolate *isolate;
    clockid_t clock;
    uint64_t start_ns;
    uint64_t limit_ns;
    std::atomic<bool> fired{false};
};

class Watchdog {
  public:
    static Watchdog &shared() {
        static Watchdog *dog = new Watchdog();  // leaked on purpose: lives as long as the process
        return *dog;
    }
    void add(Watch *w) {
        std::lock_guard<std::mutex> lock(mutex_);
        watches_.push_back(w);
    }
    void remove(Watch *w) {
        std::lock_guard<std::mutex> lock(mutex_);
        for (size_t i = 0; i < watches_.size(); i++) {
            if (watches_[i] == w) {
                watches_.erase(watches_.begin() + long(i));
                break;
            }
        }
    }

  private:
    Watchdog() {
        std::thread([this] {
            while (true) {
                std::this_thread::sleep_for(std::chrono::milliseconds(5));
                std::lock_guard<std::mutex> lock(mutex_);
                for (Watch *w : watches_) {
                    if (!w->fired && thread_cpu_ns(w->clock) - w->start_ns > w->limit_ns) {
                        w->fired = true;
                        w->isolate->TerminateExecution();
                    }
                }
            }
        }).detach();
    }
    std::mutex mutex_;
    std::vector<Watch *> watches_;
};

const char *prelude = R"JS(
(function (host, log) {
  const show = (v) => typeof v === 'string' ? v : (() => { try { return JSON.stringify(v) } catch (e) { return String(v) } })();
  const line = (level) => (...values) => log(level, ...values.map(show));
  globalThis.console = { log: line(0), info: line(0), debug: line(-4), warn: line(4), error: line(8) };
  class TextEncoder {
    get encoding() { return 'utf-8'; }
    encode(text = '') {
      const s = unescape(encodeURIComponent(String(text)));
      const out = new Uint8Array(s.length);
      for (let i = 0; i < s.length; i++) out[i] = s.charCodeAt(i);
      return out;
    }
  }
  class TextDecoder {
    get encoding() { return 'utf-8'; }
    decode(bytes) {
      if (bytes === undefined) return '';
      const view = bytes instanceof ArrayBuffer ? new Uint8Array(bytes)
        : new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength);
      let s = '';
      for (let i = 0; i < view.length; i += 8192) s += String.fromCharCode.apply(null, view.subarray(i, i + 8192));
      try { return decodeURIComponent(escape(s)); } catch (e) { return s; }
    }
  }
  globalThis.TextEncoder = TextEncoder;
  globalThis.TextDecoder = TextDecoder;
  const encode = (value) => JSON.stringify(value, (key, v) => {
    if (v instanceof Uint8Array) return { $bytes: Array.from(v) };
    if (v instanceof ArrayBuffer) return { $bytes: Array.from(new Uint8Array(v)) };
    return v;
  });
  const decode = (text) => JSON.parse(text, (key, v) =>
    v && typeof v === 'object' && Array.isArray(v.$bytes) ? Uint8Array.from(v.$bytes) : v);
  const call = (service, method, args) => decode(host(service, method, encode(args)));
  const group = (service, methods) => Object.fromEntries(
    methods.map((m) => [m, (...args) => call(service, m, args)]));
  const http = group('http', ['get', 'post', 'put', 'patch', 'del', 'head']);
  http.delete = http.del;
  globalThis.hostServices = {
    kv: group('kv', ['get', 'set', 'delete', 'keys']),
    objectStore: group('objectstore', ['get', 'put', 'delete', 'list']),
    messaging: group('messaging', ['publish', 'request', 'requestMany']),
    http,
  };
})(__nexHost, __nexLog);
)JS";

}  // namespace

struct nex_js_function {
    std::string source;
    std::string name;  // the file stacks name
    std::vector<uint8_t> data;  // handed to the script as __nexData (kept to rebuild the isolate)
    nex_js_limits limits;
    void *context;
    nex_js_host_fn host;
    nex_js_log_fn log;
    CountingAllocator *allocator = nullptr;
    v8::Isolate *isolate = nullptr;
    v8::Global<v8::Context> js_context;
    v8::Global<v8::Function> function;
    std::atomic<bool> heap_exceeded{false};
};

namespace {

std::string describe(v8::Isolate *isolate, v8::Local<v8::Context> context, v8::TryCatch &tc) {
    std::string text;
    v8::Local<v8::Value> stack;
    if (tc.StackTrace(context).ToLocal(&stack) && stack->IsString()) {
        text = *v8::String::Utf8Value(isolate, stack);  // "Error: message\n    at …"
    } else if (!tc.Exception().IsEmpty()) {
        text = *v8::String::Utf8Value(isolate, tc.Exception());
    }
    // No stack (a syntax error): where it is, as file:line:column from the message.
    auto message = tc.Message();
    if (!message.IsEmpty() && text.find("\n    at ") == std::string::npos) {
        std::string where = *v8::String::Utf8Value(isolate, message->GetScriptResourceName());
        int line = message->GetLineNumber(context).FromMaybe(0);
        int column = message->GetStartColumn(context).FromMaybe(0) + 1;
        if (!where.empty() && line > 0) text += " (" + where + ":" + std::to_string(line) + ":" + std::to_string(column) + ")";
    }
    return text.empty() ? "unknown error" : text;
}

// Whether a thrown value is an object whose `permanent` property is true: the function says retrying cannot help.
bool is_permanent(v8::Isolate *isolate, v8::Local<v8::Context> context, v8::Local<v8::Value> thrown) {
    if (!thrown->IsObject()) return false;
    v8::TryCatch inner(isolate);  // a throwing getter leaves the first error as it was
    v8::Local<v8::Value> flag;
    return thrown.As<v8::Object>()->Get(context, v8::String::NewFromUtf8Literal(isolate, "permanent")).ToLocal(&flag) &&
           flag->IsTrue();
}

// __nexLog(level, ...values): the prelude's console methods end here.
void console(const v8::FunctionCallbackInfo<v8::Value> &info) {
    auto *f = static_cast<nex_js_function *>(info.Data().As<v8::External>()->Value());
    int level = info.Length() > 0 ? info[0]->Int32Value(info.GetIsolate()->GetCurrentContext()).FromMaybe(0) : 0;
    std::string line;
    for (int i = 1; i < info.Length(); i++) {
        if (i > 1) line += " ";
        line += *v8::String::Utf8Value(info.GetIsolate(), info[i]);
    }
    if (f->log) f->log(f->context, level, line.data(), line.size());
}

void host_call(const v8::FunctionCallbackInfo<v8::Value> &info) {
    v8::Isolate *isolate = info.GetIsolate();
    auto *f = static_cast<nex_js_function *>(info.Data().As<v8::External>()->Value());
    std::string service = *v8::String::Utf8Value(isolate, info[0]);
    std::string method = *v8::String::Utf8Value(isolate, info[1]);
    std::string args = *v8::String::Utf8Value(isolate, info[2]);
    if (!f->host) {
        isolate->ThrowError("host services are not available");
        return;
    }
    int failed = 0;
    size_t length = 0;
    char *result = f->host(f->context, service.c_str(), method.c_str(), args.data(), args.size(), &failed, &length);
    v8::Local<v8::String> text;
    if (!v8::String::NewFromUtf8(isolate, result ? result : "null", v8::NewStringType::kNormal,
                                 result ? int(length) : 4)
             .ToLocal(&text)) {
        free(result);
        return;
    }
    free(result);
    if (failed) {
        isolate->ThrowError(text);
    } else {
        info.GetReturnValue().Set(text);
    }
}

// __nexNow(clock): nanoseconds as a BigInt, realtime (0) or monotonic (else), for WASI's clock_time_get.
void now(const v8::FunctionCallbackInfo<v8::Value> &info) {
    v8::Isolate *isolate = info.GetIsolate();
    int clock = info.Length() > 0 ? info[0]->Int32Value(isolate->GetCurrentContext()).FromMaybe(0) : 0;
    timespec ts{};
    clock_gettime(clock == 0 ? CLOCK_REALTIME : CLOCK_MONOTONIC, &ts);
    uint64_t ns = uint64_t(ts.tv_sec) * 1000000000ull + uint64_t(ts.tv_nsec);
    info.GetReturnValue().Set(v8::BigInt::NewFromUnsigned(isolate, ns));
}

// __nexRandom(uint8Array): fills it from the kernel's generator, for WASI's random_get.
void random_fill(const v8::FunctionCallbackInfo<v8::Value> &info) {
    if (info.Length() < 1 || !info[0]->IsUint8Array()) return;
    auto view = info[0].As<v8::Uint8Array>();
    auto *bytes = static_cast<uint8_t *>(view->Buffer()->Data()) + view->ByteOffset();
    size_t length = view->ByteLength();
    for (size_t done = 0; done < length;) {
        ssize_t n = getrandom(bytes + done, length - done, 0);
        if (n <= 0) {
            info.GetIsolate()->ThrowError("the kernel's random generator failed");
            return;
        }
        done += size_t(n);
    }
}

size_t near_heap_limit(void *data, size_t current, size_t) {
    auto *f = static_cast<nex_js_function *>(data);
    f->heap_exceeded = true;
    f->isolate->TerminateExecution();
    return current + 32 * 1024 * 1024;  // room to unwind; the isolate is rebuilt before the next call
}

void teardown(nex_js_function *f) {
    if (!f->isolate) return;
    {
        v8::Locker locker(f->isolate);
        f->function.Reset();
        f->js_context.Reset();
    }
    f->isolate->Dispose();
    f->isolate = nullptr;
    delete f->allocator;
    f->allocator = nullptr;
}

bool build(nex_js_function *f, std::string *error) {
    f->allocator = new CountingAllocator(f->limits.array_buffer_bytes);
    v8::Isolate::CreateParams params;
    params.array_buffer_allocator = f->allocator;
    params.constraints.ConfigureDefaultsFromHeapSize(0, f->limits.heap_bytes);
    f->isolate = v8::Isolate::New(params);
    f->heap_exceeded = false;
    f->isolate->AddNearHeapLimitCallback(near_heap_limit, f);
    v8::Locker locker(f->isolate);
    v8::Isolate::Scope isolate_scope(f->isolate);
    v8::HandleScope handles(f->isolate);
    v8::Isolate *isolate = f->isolate;
    auto self = v8::External::New(isolate, f);
    auto global = v8::ObjectTemplate::New(isolate);
    global->Set(isolate, "__nexLog", v8::FunctionTemplate::New(isolate, console, self));
    global->Set(isolate, "__nexHost", v8::FunctionTemplate::New(isolate, host_call, self));
    global->Set(isolate, "__nexNow", v8::FunctionTemplate::New(isolate, now));
    global->Set(isolate, "__nexRandom", v8::FunctionTemplate::New(isolate, random_fill));
    auto context = v8::Context::New(isolate, nullptr, global);
    v8::Context::Scope context_scope(context);
    if (!f->data.empty()) {
        auto store = v8::ArrayBuffer::NewBackingStore(isolate, f->data.size());
        memcpy(store->Data(), f->data.data(), f->data.size());
        auto buffer = v8::ArrayBuffer::New(isolate, std::move(store));
        if (context->Global()->Set(context, v8::String::NewFromUtf8Literal(isolate, "__nexData"), buffer).IsNothing()) {
            *error = "cannot hand the data to the script";
            return false;
        }
    }
    v8::TryCatch tc(isolate);
    auto run = [&](const char *code, size_t length, const char *name) -> v8::MaybeLocal<v8::Value> {
        v8::Local<v8::String> text;
        if (!v8::String::NewFromUtf8(isolate, code, v8::NewStringType::kNormal, int(length)).ToLocal(&text))
            return {};
        v8::ScriptOrigin origin(isolate, v8::String::NewFromUtf8(isolate, name).ToLocalChecked());
        v8::Local<v8::Script> script;
        if (!v8::Script::Compile(context, text, &origin).ToLocal(&script)) return {};
        return script->Run(context);
    };
    v8::Local<v8::Value> value;
    if (!run(prelude, strlen(prelude), "nex-prelude.js").ToLocal(&value)) {
        *error = "prelude: " + describe(isolate, context, tc);
        return false;
    }
    if (!run(f->source.data(), f->source.size(), f->name.c_str()).ToLocal(&value)) {
        *error = describe(isolate, context, tc);
        return false;
    }
    if (!value->IsFunction()) {
        *error = "the script's value is not a function: it must end with (subject, payload) => { … } or a function";
        return false;
    }
    f->js_context.Reset(isolate, context);
    f->function.Reset(isolate, value.As<v8::Function>());
    return true;
}

int reply(const std::string &text, int kind, uint8_t **out, size_t *out_length) {
    *out = reinterpret_cast<uint8_t *>(copy_string(text, out_length));
    return kind;
}

}  // namespace

extern "C" {

void nex_js_initialize(void) {
    std::call_once(initialized, [] {
        platform = v8::platform::NewDefaultPlatform();
        v8::V8::InitializePlatform(platform.get());
        v8::V8::Initialize();
    });
}

nex_js_function *nex_js_compile(const char *source, size_t length, const char *name, const uint8_t *data,
                                size_t data_length, nex_js_limits limits, void *context, nex_js_host_fn host,
                                nex_js_log_fn log, char **error) {
    nex_js_initialize();
    auto *f = new nex_js_function();
    f->source.assign(source, length);
    f->name = name ? name : "function.js";
    if (data && data_length) f->data.assign(data, data + data_length);
    f->limits = limits;
    f->context = context;
    f->host = host;
    f->log = log;
    std::string message;
    if (!build(f, &message)) {
        teardown(f);
        delete f;
        *error = copy_string(message);
        return nullptr;
    }
    return f;
}

int nex_js_call(nex_js_function *f, const char *subject, const uint8_t *payload, size_t payload_length,
                const char *context_json, size_t context_length, uint8_t **out, size_t *out_length) {
    *out = nullptr;
    *out_length = 0;
    if (!f->isolate) {
        std::string message;
        if (!build(f, &message)) {
            teardown(f);
            return reply("cannot rebuild the function: " + message, NEX_JS_THREW, out, out_length);
        }
    }
    v8::Isolate *isolate = f->isolate;
    int kind;
    std::string text;
    {
        v8::Locker locker(isolate);
        v8::Isolate::Scope isolate_scope(isolate);
        v8::HandleScope handles(isolate);
        auto context = f->js_context.Get(isolate);
        v8::Context::Scope context_scope(context);
        v8::TryCatch tc(isolate);

        auto store = v8::ArrayBuffer::NewBackingStore(isolate, payload_length);
        if (payload_length) memcpy(store->Data(), payload, payload_length);
        auto buffer = v8::ArrayBuffer::New(isolate, std::move(store));
        v8::Local<v8::Value> args[3] = {
            v8::String::NewFromUtf8(isolate, subject).ToLocalChecked(),
            v8::Uint8Array::New(buffer, 0, payload_length),
            v8::Undefined(isolate),
        };
        int argc = 2;
        if (context_json && context_length && context_length < (1u << 30)) {
            // The node's own JSON: a parse failure leaves the function without its third argument.
            v8::Local<v8::String> json;
            v8::Local<v8::Value> parsed;
            if (v8::String::NewFromUtf8(isolate, context_json, v8::NewStringType::kNormal, (int)context_length)
                    .ToLocal(&json) &&
                v8::JSON::Parse(context, json).ToLocal(&parsed)) {
                args[2] = parsed;
                argc = 3;
            }
            tc.Reset();
        }
        Watch watch;
        watch.isolate = isolate;
        pthread_getcpuclockid(pthread_self(), &watch.clock);
        watch.start_ns = thread_cpu_ns(watch.clock);
        watch.limit_ns = f->limits.cpu_millis * 1000000ull;
        Watchdog::shared().add(&watch);
        v8::MaybeLocal<v8::Value> maybe = f->function.Get(isolate)->Call(context, context->Global(), argc, args);
        v8::Local<v8::Value> result;
        v8::Local<v8::Value> thrown;  // what the function threw or rejected with
        if (maybe.ToLocal(&result) && result->IsPromise()) {
            isolate->PerformMicrotaskCheckpoint();
            auto promise = result.As<v8::Promise>();
            if (promise->State() == v8::Promise::kFulfilled) {
                result = promise->Result();
            } else if (promise->State() == v8::Promise::kRejected) {
                tc.ReThrow();
                result = v8::Local<v8::Value>();
                thrown = promise->Result();
                text = *v8::String::Utf8Value(isolate, thrown);
            } else {
                text = "the function returned a promise that did not settle";
                result = v8::Local<v8::Value>();
            }
        } else if (result.IsEmpty() && tc.HasCaught()) {
            thrown = tc.Exception();
        }
        // Read while the watchdog still runs: `permanent` may be a getter of the function's own.
        bool permanent = !thrown.IsEmpty() && !tc.HasTerminated() && is_permanent(isolate, context, thrown);
        Watchdog::shared().remove(&watch);

        if (f->heap_exceeded) {
            kind = NEX_JS_HEAP_LIMIT;
            text = "the function exceeded its heap limit (" + std::to_string(f->limits.heap_bytes >> 20) + " MiB)";
        } else if (watch.fired || tc.HasTerminated()) {
            isolate->CancelTerminateExecution();
            kind = NEX_JS_CPU_LIMIT;
            text = "the function exceeded its CPU limit (" + std::to_string(f->limits.cpu_millis) + " ms)";
        } else if (result.IsEmpty()) {
            kind = permanent ? NEX_JS_PERMANENT : NEX_JS_THREW;
            if (text.empty()) text = describe(isolate, context, tc);
        } else if (result->IsNullOrUndefined()) {
            kind = NEX_JS_EMPTY;
        } else if (result->IsArrayBufferView()) {
            auto view = result.As<v8::ArrayBufferView>();
            text.resize(view->ByteLength());
            view->CopyContents(text.data(), text.size());
            kind = NEX_JS_BYTES;
        } else if (result->IsArrayBuffer()) {
            auto ab = result.As<v8::ArrayBuffer>();
            text.assign(static_cast<const char *>(ab->Data()), ab->ByteLength());
            kind = NEX_JS_BYTES;
        } else if (result->IsString()) {
            text = *v8::String::Utf8Value(isolate, result);
            kind = NEX_JS_BYTES;
        } else {
            v8::Local<v8::String> json;
            if (v8::JSON::Stringify(context, result).ToLocal(&json)) {
                text = *v8::String::Utf8Value(isolate, json);
                kind = NEX_JS_BYTES;
            } else {
                kind = NEX_JS_THREW;
                text = describe(isolate, context, tc);
            }
        }
    }
    if (kind == NEX_JS_HEAP_LIMIT) teardown(f);  // a heap at its limit is not reused
    return reply(text, kind, out, out_length);
}

void nex_js_destroy(nex_js_function *f) {
    teardown(f);
    delete f;
}
}
